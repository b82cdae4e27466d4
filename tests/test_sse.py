"""The SSE decoder against the WHATWG rules, every split point, and random chunkings."""

from __future__ import annotations

import itertools
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxkit.errors import MalformedEventError
from rxkit.sse import SSEDecoder, SSEEvent


def decode(*chunks: bytes) -> list[SSEEvent]:
    d = SSEDecoder()
    out: list[SSEEvent] = []
    for c in chunks:
        out += d.feed(c)
    return out + d.close()


def reference(raw: bytes) -> list[SSEEvent]:
    """The spec's algorithm, written plainly over the whole stream (slow, obviously right)."""
    text = raw.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # what follows the last line end is an unfinished line: discarded at EOF
    events, data, event_type, last_id, retry = [], "", "", "", None
    for line in lines:
        if line == "":
            if data == "":
                event_type = ""
                retry = None
                continue
            events.append(SSEEvent(data.removesuffix("\n"), event_type or "message", last_id, retry))
            data, event_type, retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data += value + "\n"
        elif name == "event":
            event_type = value
        elif name == "id":
            if "\0" not in value:
                last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


SAMPLE = (
    "\ufeff: a comment\r\n"
    "event: greet\r\n"
    "id: 1\r\n"
    "data: héllo\r\n"
    "data: wörld 🌍\r\r"
    "data\n"
    "data:\n"
    "\n"
    "retry: 1500\n"
    "data:  two spaces\n"
    "\n"
    "event: ignored-no-data\n"
    "\n"
    "id\n"
    'data: {"choices": [{"delta": {"content": "日本語"}}]}\n'
    "\n"
    "data: [DONE]\n\n"
).encode()


def test_sample_matches_the_reference() -> None:
    expected = [
        SSEEvent("héllo\nwörld 🌍", "greet", "1"),
        SSEEvent("\n", "message", "1"),
        SSEEvent(" two spaces", "message", "1", 1500),
        SSEEvent('{"choices": [{"delta": {"content": "日本語"}}]}', "message", ""),
        SSEEvent("[DONE]", "message", ""),
    ]
    assert reference(SAMPLE) == expected
    assert decode(SAMPLE) == expected


@pytest.mark.parametrize("split", range(len(SAMPLE) + 1))
def test_every_split_point(split: int) -> None:
    assert decode(SAMPLE[:split], SAMPLE[split:]) == reference(SAMPLE)


def test_every_pair_of_split_points_around_crlf_and_utf8() -> None:
    raw = "data: é\r\ndata: 🌍\r\rdata: x\r\n\r\n".encode()
    want = reference(raw)
    assert want == [SSEEvent("é\n🌍", "message"), SSEEvent("x", "message")]
    for i in range(len(raw) + 1):
        for j in range(i, len(raw) + 1):
            assert decode(raw[:i], raw[i:j], raw[j:]) == want, (i, j)


def test_byte_by_byte() -> None:
    assert decode(*(SAMPLE[i : i + 1] for i in range(len(SAMPLE)))) == reference(SAMPLE)


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_each_line_ending(end: bytes) -> None:
    raw = b"event: e" + end + b"data: a" + end + b"data: b" + end + end
    assert decode(raw) == [SSEEvent("a\nb", "e")]


def test_cr_then_lf_across_chunks_is_one_line_end() -> None:
    # If the CR and the LF counted as two line ends, the blank line would dispatch "a" alone.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent("a\nb")]
    assert decode(b"data: a\r", b"", b"\ndata: b\n\n") == [SSEEvent("a\nb")]
    # ...but a CR and an LF with a line between them are two line ends.
    assert decode(b"data: a\r", b"\r\n") == [SSEEvent("a")]


def test_comments_are_ignored_and_dispatch_nothing() -> None:
    assert decode(b": keep-alive\n\n: x\n\n:\n\n") == []
    assert decode(b"data: a\n: in the middle\ndata: b\n\n") == [SSEEvent("a\nb")]


def test_fields() -> None:
    d = SSEDecoder()
    assert d.feed(b"id: 7\nretry: 3000\nevent: upd\ndata: x\n\n") == [SSEEvent("x", "upd", "7", 3000)]
    assert d.retry == 3000 and d.last_event_id == "7"
    # id persists; the event type and retry do not
    assert d.feed(b"data: y\n\n") == [SSEEvent("y", "message", "7")]
    assert d.feed(b"id: a\x00b\nretry: 12x\nretry: -1\ndata: z\n\n") == [SSEEvent("z", "message", "7")]
    assert d.retry == 3000
    assert d.feed(b"id\ndata: w\n\n") == [SSEEvent("w", "message", "")]  # colon-less id: empty value


def test_field_without_colon_and_unknown_fields() -> None:
    assert decode(b"data\n\n") == [SSEEvent("")]
    assert decode(b"data\ndata\n\n") == [SSEEvent("\n")]
    assert decode(b"event\ndata: x\n\n") == [SSEEvent("x", "message")]
    assert decode(b"foo: bar\nDATA: no\ndata : no\ndata: yes\n\n") == [SSEEvent("yes")]


def test_only_one_space_is_removed() -> None:
    assert decode(b"data:x\n\n") == [SSEEvent("x")]
    assert decode(b"data: x\n\n") == [SSEEvent("x")]
    assert decode(b"data:  x \n\n") == [SSEEvent(" x ")]
    assert decode(b"event:  e\ndata:\tx\n\n") == [SSEEvent("\tx", " e")]


def test_dispatch_only_on_blank_line() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\ndata: b\n") == []
    assert d.pending
    assert d.feed(b"\n") == [SSEEvent("a\nb")]
    assert not d.pending


def test_unfinished_event_is_discarded_at_end_of_stream() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: done\n\ndata: cut") == [SSEEvent("done")]
    assert d.pending
    assert d.close() == []
    assert decode(b"data: a\n") == []


def test_event_without_data_is_not_dispatched_and_its_type_does_not_leak() -> None:
    assert decode(b"event: ping\n\ndata: x\n\n") == [SSEEvent("x", "message")]


def test_bom_is_stripped_once_even_when_split() -> None:
    bom = b"\xef\xbb\xbf"
    assert decode(bom + b"data: a\n\n") == [SSEEvent("a")]
    assert decode(bom[:1], bom[1:2], bom[2:] + b"data: a\n\n") == [SSEEvent("a")]
    assert decode(bom[:2], bom[2:], b"data: a\n\n") == [SSEEvent("a")]
    # A second BOM is data: here it makes the field name "\ufeffdata", which is ignored.
    assert decode(bom + bom + b"data: a\n\ndata: b\n\n") == [SSEEvent("b")]
    assert decode(b"data: a\n\n" + bom + b"data: b\n\n") == [SSEEvent("a")]
    # Short first chunks that are not a BOM are not held back for long.
    assert decode(b"da", b"ta: x\n\n") == [SSEEvent("x")]
    assert decode(b"\xef", b"\n", b"data: y\n\n") == [SSEEvent("y")]


@pytest.mark.parametrize("split", range(1, 4))
def test_utf8_sequence_split_inside(split: int) -> None:
    raw = "data: 🌍\n\n".encode()
    cut = raw.index(b"\xf0") + split
    assert decode(raw[:cut], raw[cut:]) == [SSEEvent("🌍")]


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert decode(b"data: a\xffb\xe2\x82\n\n") == [SSEEvent("a\ufffdb\ufffd")]


def test_only_cr_lf_crlf_end_lines() -> None:
    # str.splitlines would split on these; SSE must not.
    odd = "data: a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i\n\n"
    assert decode(odd.encode()) == [SSEEvent(odd[6:-2])]


def test_event_size_is_bounded() -> None:
    d = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(MalformedEventError, match="larger than 1000 bytes"):
        for _ in range(20):
            d.feed(b"x" * 100)
    d = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(MalformedEventError):
        for _ in range(20):
            d.feed(b"data: " + b"x" * 100 + b"\n")
    d = SSEDecoder(max_event_bytes=1000)
    assert d.feed(b"data: " + b"x" * 900 + b"\n\n")[0].data == "x" * 900


def test_a_2_mib_event_in_small_chunks_is_linear() -> None:
    def cost(size: int) -> float:
        payload = b"data: " + b"y" * size + b"\n\n"
        chunks = [payload[i : i + 1460] for i in range(0, len(payload), 1460)]
        best = float("inf")
        for _ in range(3):
            d = SSEDecoder()
            t = time.process_time()  # CPU time: other processes on the machine do not count
            out = [e for c in chunks for e in d.feed(c)]
            best = min(best, time.process_time() - t)
            assert len(out) == 1 and len(out[0].data) == size
        return best

    small, big = cost(2 * 1024 * 1024), cost(8 * 1024 * 1024)
    assert big / small < 10  # linear: about 4; quadratic buffering would be about 16


# -- random streams, random chunkings ----------------------------------------

_values = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=12)
_line = st.one_of(
    st.builds(lambda v: f"data: {v}", _values),
    st.builds(lambda v: f"data:{v}", _values),
    st.just("data"),
    st.builds(lambda v: f"event: {v}", _values),
    st.builds(lambda v: f"id: {v}", _values),
    st.builds(lambda v: f"retry: {v}", st.one_of(st.integers(0, 10**6).map(str), _values)),
    st.builds(lambda v: f": {v}", _values),
    st.builds(lambda v: f"{v}: x", _values),
    st.just(""),
)
_end = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(_line, _end), max_size=30))
    bom = "\ufeff" if draw(st.booleans()) else ""
    text = bom + "".join(line + end for line, end in lines) + draw(_values)  # maybe an unfinished tail
    return text.encode()


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    raw = draw(streams())
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    bounds = [0, *cuts, len(raw)]
    return raw, [raw[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(chunked())
def test_random_streams_and_chunkings_match_the_reference(case: tuple[bytes, list[bytes]]) -> None:
    raw, chunks = case
    assert decode(*chunks) == reference(raw)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=8))
def test_arbitrary_bytes_never_crash_and_match_the_reference(raw: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(min(c, len(raw)) for c in cuts), len(raw)]
    chunks = [raw[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(*chunks) == reference(raw)
