"""Pins down rxkit.sse where mutation testing found it loose (issue 18).

Exact event-size limits on every path a byte can take, the decoder's state
after close() and after an overflow, SSEEvent compared field by field, and
invalid UTF-8 in the fields other than data.
"""

from __future__ import annotations

import pytest

from rxkit.errors import MalformedEventError
from rxkit.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent


def test_event_fields_are_what_was_given() -> None:
    ev = SSEEvent("d", "e", "i", 5)
    assert (ev.data, ev.event, ev.id, ev.retry) == ("d", "e", "i", 5)
    assert (SSEEvent("d").event, SSEEvent("d").id, SSEEvent("d").retry) == ("message", "", None)
    assert repr(ev) == "SSEEvent(data='d', event='e', id='i', retry=5)"


@pytest.mark.parametrize(
    "other",
    [SSEEvent("x", "e", "i", 5), SSEEvent("d", "x", "i", 5), SSEEvent("d", "e", "x", 5), SSEEvent("d", "e", "i", 6)],
)
def test_events_differing_in_one_field_are_not_equal(other: SSEEvent) -> None:
    assert SSEEvent("d", "e", "i", 5) == SSEEvent("d", "e", "i", 5)
    assert SSEEvent("d", "e", "i", 5) != other


def test_an_event_is_not_equal_to_other_types_and_not_hashable() -> None:
    assert SSEEvent("d") != "d"
    assert SSEEvent("d").__eq__(("d", "message", "", None)) is False
    with pytest.raises(TypeError):
        hash(SSEEvent("d"))


def test_default_limit_is_64_mib() -> None:
    assert DEFAULT_MAX_EVENT_BYTES == 64 * 1024 * 1024
    assert SSEDecoder().max_event_bytes == DEFAULT_MAX_EVENT_BYTES


# -- exact limits: each `data` line costs its value's length plus one (the \n joining it) ----------


@pytest.mark.parametrize("prefix", [b"data: ", b"data:"])
def test_data_line_exactly_at_the_limit_passes_one_more_byte_fails(prefix: bytes) -> None:
    d = SSEDecoder(max_event_bytes=10)
    assert d.feed(prefix + b"x" * 9 + b"\n\n") == [SSEEvent("x" * 9)]
    with pytest.raises(MalformedEventError, match="larger than 10 bytes"):
        SSEDecoder(max_event_bytes=10).feed(prefix + b"x" * 10 + b"\n")


@pytest.mark.parametrize("prefix", [b"data: ", b"data:"])
def test_data_lines_add_up_within_one_event_and_restart_after_dispatch(prefix: bytes) -> None:
    d = SSEDecoder(max_event_bytes=10)
    assert d.feed(prefix + b"abcd\n" + prefix + b"efgh\n\n") == [SSEEvent("abcd\nefgh")]  # 5 + 5
    assert d.feed(prefix + b"x" * 9 + b"\n\n") == [SSEEvent("x" * 9)]  # the count restarted at 0
    with pytest.raises(MalformedEventError):
        d.feed(prefix + b"abcd\n" + prefix + b"efghi\n")  # 5 + 6


def test_size_counted_across_chunks() -> None:
    d = SSEDecoder(max_event_bytes=10)
    d.feed(b"data: abcd\n")
    with pytest.raises(MalformedEventError):
        d.feed(b"data: efghi\n")


def test_bare_data_field_costs_one_byte_each() -> None:
    d = SSEDecoder(max_event_bytes=3)
    assert d.feed(b"data\ndata\ndata\n\n") == [SSEEvent("\n\n")]
    with pytest.raises(MalformedEventError):
        SSEDecoder(max_event_bytes=3).feed(b"data\ndata\ndata\ndata\n")


def test_bare_data_field_adds_to_data_lines() -> None:
    d = SSEDecoder(max_event_bytes=4)
    assert d.feed(b"data: ab\ndata\n\n") == [SSEEvent("ab\n")]
    with pytest.raises(MalformedEventError):
        SSEDecoder(max_event_bytes=4).feed(b"data: abc\ndata\n")


def test_unended_line_exactly_at_the_limit_passes() -> None:
    d = SSEDecoder(max_event_bytes=10)
    assert d.feed(b"data: xxxx") == []  # 10 bytes, no line end
    assert d.feed(b"\n\n") == [SSEEvent("xxxx")]
    with pytest.raises(MalformedEventError):
        SSEDecoder(max_event_bytes=10).feed(b"data: xxxxx")


def test_unended_line_grows_across_chunks() -> None:
    d = SSEDecoder(max_event_bytes=10)
    d.feed(b"data: ")
    d.feed(b"xxxx")  # 10 in all
    with pytest.raises(MalformedEventError):
        d.feed(b"y")


def test_unended_tail_after_a_line_end_exactly_at_the_limit() -> None:
    d = SSEDecoder(max_event_bytes=10)
    assert d.feed(b"\ndata: xxxx") == []
    assert d.feed(b"\n\n") == [SSEEvent("xxxx")]
    with pytest.raises(MalformedEventError):
        SSEDecoder(max_event_bytes=10).feed(b"\ndata: xxxxx")


def test_tail_count_restarts_when_its_line_ends() -> None:
    d = SSEDecoder(max_event_bytes=10)
    d.feed(b"data: xx")  # 8 pending
    assert d.feed(b"\n\ndata: xxx") == [SSEEvent("xx")]  # 9 pending now, not 17
    assert d.feed(b"\n\n") == [SSEEvent("xxx")]


# -- state after an overflow ------------------------------------------------------------------------


def test_after_an_overflow_nothing_of_the_dropped_event_remains() -> None:
    d = SSEDecoder(max_event_bytes=10)
    with pytest.raises(MalformedEventError):
        d.feed(b"event: big\nretry: 7\ndata: abcd\ndata: efghijk\n")
    assert not d.pending
    assert d.feed(b"data: ok\n\n") == [SSEEvent("ok", "message", "", None)]  # not "big", no retry 7


def test_after_an_overflow_of_an_unended_line_nothing_remains() -> None:
    d = SSEDecoder(max_event_bytes=10)
    d.feed(b"event: big\n")
    with pytest.raises(MalformedEventError):
        d.feed(b"data: " + b"x" * 20)
    assert not d.pending
    assert d.feed(b"\ndata: ok\n\n") == [SSEEvent("ok")]


def test_after_an_overflow_of_a_field_line_nothing_remains() -> None:
    d = SSEDecoder(max_event_bytes=4)
    with pytest.raises(MalformedEventError):
        d.feed(b"data: abc\ndata\n")  # the bare field tips it over
    assert not d.pending
    assert d.feed(b"data: ok\n\n") == [SSEEvent("ok")]


# -- state after close -------------------------------------------------------------------------------


def test_close_discards_everything_but_last_event_id_and_retry() -> None:
    d = SSEDecoder()
    d.feed(b"id: 42\nretry: 3000\ndata: a\n\nevent: cut\nretry: 5\ndata: b\ndata: par")
    assert d.pending
    assert d.close() == []
    assert not d.pending
    assert (d.last_event_id, d.retry) == ("42", 5)
    # The next stream: no "cut" type, no "b" or "par" data, no per-event retry; the id carries over.
    assert d.feed(b"data: c\n\n") == [SSEEvent("c", "message", "42", None)]


def test_close_then_a_new_stream_may_start_with_a_byte_order_mark() -> None:
    d = SSEDecoder()
    assert d.feed(b"\xef\xbb\xbfdata: a\n\n") == [SSEEvent("a")]
    d.close()
    assert d.feed(b"\xef\xbb\xbfdata: b\n\n") == [SSEEvent("b")]


def test_close_forgets_a_cr_that_ended_the_old_stream() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\r\r") == [SSEEvent("a")]
    d.close()
    # The LF opening the new stream is a line end of its own, not the second half of a CRLF.
    assert d.feed(b"\ndata: b\n\n") == [SSEEvent("b")]
    d.close()
    assert d.feed(b"data: c\r") == []
    d.close()
    assert d.feed(b"\n\ndata: d\n\n") == [SSEEvent("d")]


def test_a_bom_only_prefix_then_close_is_not_pending() -> None:
    d = SSEDecoder()
    assert d.feed(b"\xef\xbb") == []
    assert d.pending
    d.close()
    assert not d.pending


# -- invalid UTF-8 outside data ---------------------------------------------------------------------


def test_invalid_utf8_in_event_and_id_becomes_replacement_character() -> None:
    d = SSEDecoder()
    assert d.feed(b"event: a\xffb\nid: 1\xfe2\ndata: x\xff\n\n") == [SSEEvent("x\ufffd", "a\ufffdb", "1\ufffd2")]


def test_an_id_with_nul_is_ignored_and_the_old_one_kept() -> None:
    d = SSEDecoder()
    assert d.feed(b"id: 7\ndata: a\n\nid: 8\x009\ndata: b\n\n") == [SSEEvent("a", id="7"), SSEEvent("b", id="7")]


def test_retry_only_on_the_event_that_set_it_and_only_digits() -> None:
    d = SSEDecoder()
    out = d.feed(b"retry: 100\ndata: a\n\ndata: b\n\nretry: 1x\ndata: c\n\nretry\ndata: e\n\n")
    assert out == [SSEEvent("a", retry=100), SSEEvent("b"), SSEEvent("c"), SSEEvent("e")]
    assert d.retry == 100


def test_event_type_without_data_then_retry_event() -> None:
    d = SSEDecoder()
    assert d.feed(b"retry: 9\n\ndata: a\n\n") == [SSEEvent("a")]  # a data-less event dispatches nothing
    assert d.retry == 9


def test_a_new_decoder_has_no_retry_and_nothing_pending() -> None:
    d = SSEDecoder()
    assert d.retry is None and d.last_event_id == "" and not d.pending


@pytest.mark.parametrize("how", ["close", "overflow"])
def test_after_close_or_overflow_partial_lines_limits_and_fields_work(how: str) -> None:
    d = SSEDecoder(max_event_bytes=10)
    if how == "close":
        d.feed(b"data: x")
        d.close()
    else:
        with pytest.raises(MalformedEventError):
            d.feed(b"data: " + b"x" * 20)
    assert d.feed(b"data: ") == []  # a partial line is kept again
    assert d.feed(b"x" * 9 + b"\n\n") == [SSEEvent("x" * 9)]  # exactly at the limit: the count restarted at 0
    assert d.feed(b"event: e\ndata: y\n\n") == [SSEEvent("y", "e", "", None)]


def test_the_retry_of_one_event_does_not_reach_the_next_typed_one() -> None:
    d = SSEDecoder()
    out = d.feed(b"event: a\nretry: 5\ndata: 1\n\nevent: b\ndata: 2\n\n")
    assert out == [SSEEvent("1", "a", "", 5), SSEEvent("2", "b", "", None)]


def test_a_lone_byte_order_mark_leaves_nothing_pending() -> None:
    d = SSEDecoder()
    assert d.feed(b"\xef\xbb\xbf") == []
    assert not d.pending
    assert d.feed(b"data: x\n\n") == [SSEEvent("x")]


def test_the_unended_line_count_restarts_after_a_joined_line() -> None:
    d = SSEDecoder(max_event_bytes=10)
    d.feed(b"data: x")
    assert d.feed(b"\n") == []  # the pieces joined; nothing unended now
    assert d.feed(b"data: xxxx") == []  # 10 bytes unended: at the limit, not past it
