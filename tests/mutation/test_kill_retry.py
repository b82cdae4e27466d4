"""Pins down rxkit.providers._retry where mutation testing found it loose (issue 18).

Exact limits (which statuses retry, 500 itself), Retry-After in every form the
header takes, the backoff curve, and error messages checked whole so that a
message from the raw body cannot pass for the parsed one.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from rxkit.errors import AuthenticationError, ProviderHTTPError, ProviderServerError, RateLimitError
from rxkit.providers._retry import RetryPolicy, error_message, http_error, is_retryable_status, parse_retry_after


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (400, False), (401, False), (403, False), (404, False), (405, False), (409, False),
        (422, False), (499, False), (408, True), (429, True), (499 + 1, True), (502, True),
        (503, True), (599, True), (200, False), (399, False),
    ],
)  # fmt: skip
def test_which_statuses_retry(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_retry_after_ms_wins_over_seconds_and_is_in_milliseconds() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "-20"}) == 0.0


def test_bad_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "", "retry-after": "3"}) == 3.0


def test_retry_after_seconds_absent_negative_and_garbage() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": ""}) is None
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "-7"}) == 0.0
    assert parse_retry_after({"retry-after": "not a date"}) is None


def test_retry_after_http_date_against_explicit_now() -> None:
    when = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    header = {"retry-after": format_datetime(when, usegmt=True)}
    assert parse_retry_after(header, now=now) == 30.0
    assert parse_retry_after(header, now=now + 60) == 0.0  # a date in the past: no wait


def test_retry_after_http_date_without_now_uses_the_clock() -> None:
    when = datetime.fromtimestamp(int(time.time()) + 120, tz=UTC)
    wait = parse_retry_after({"retry-after": format_datetime(when, usegmt=True)})
    assert wait is not None
    assert 100.0 < wait <= 120.0


def test_backoff_doubles_and_caps_without_jitter() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=3.0, jitter=0.0)
    assert [policy.delay(n, None) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(3, 0.25) == 0.25  # the server's word wins, even below the backoff


def test_jitter_scales_into_one_minus_jitter_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=20.0, jitter=0.5)
    monkeypatch.setattr(random, "random", lambda: 1.0)
    assert policy.delay(1, None) == 1.0  # 2 * (1 - 0.5 * 1.0)
    monkeypatch.setattr(random, "random", lambda: 0.0)
    assert policy.delay(1, None) == 2.0


def test_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.backoff_base, policy.backoff_max) == (2, 0.5, 20.0)
    assert (policy.max_retry_after, policy.jitter) == (60.0, 0.5)


def test_error_message_openai_anthropic_gemini_shapes() -> None:
    openai = {"error": {"message": "Incorrect key", "type": "invalid_request_error", "code": "bad_key"}}
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    gemini = [{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}]
    assert error_message(json.dumps(openai)) == "Incorrect key (invalid_request_error)"
    assert error_message(json.dumps(anthropic)) == "Overloaded (overloaded_error)"
    assert error_message(json.dumps(gemini)) == "Quota exceeded (RESOURCE_EXHAUSTED)"


def test_error_message_kind_falls_back_in_order_and_only_strings_count() -> None:
    assert error_message(json.dumps({"error": {"message": "m", "status": "S", "code": "C"}})) == "m (S)"
    assert error_message(json.dumps({"error": {"message": "m", "code": "C"}})) == "m (C)"
    assert error_message(json.dumps({"error": {"message": "m", "code": 500}})) == "m"
    assert error_message(json.dumps({"error": {"message": "m", "type": ""}})) == "m"


def test_error_message_detail_and_msg_keys() -> None:
    assert error_message(json.dumps({"error": {"detail": "d"}})) == "d"
    assert error_message(json.dumps({"error": {"msg": "x"}})) == "x"
    assert error_message(json.dumps({"detail": "not found"})) == "not found"  # FastAPI, vLLM
    assert error_message(json.dumps({"error": "plain words"})) == "plain words"
    assert error_message(json.dumps({"error": "e" * 600})) == "e" * 500
    assert error_message(json.dumps({"error": {}, "detail": "d" * 600})) == "d" * 500


def test_error_message_reads_validation_error_lists_and_caps_parsed_messages() -> None:
    """FastAPI-style ``detail`` lists (vLLM, other compatible servers) read as ``loc: msg``, not a repr;
    a parsed message is capped at 500 characters like the raw body."""
    fastapi = {"detail": [{"loc": ["body", "messages", 0], "msg": "field required", "type": "missing"}]}
    assert error_message(json.dumps(fastapi)) == "body.messages.0: field required"
    two = {"detail": [{"msg": "a"}, {"loc": [], "msg": "b"}, "c", {"loc": ["x"]}]}
    assert error_message(json.dumps(two)) == "a; b; c; {'loc': ['x']}"
    assert error_message(json.dumps({"error": {"message": "m" * 600, "type": "t"}})) == "m" * 500
    assert error_message(json.dumps({"error": {"message": "m" * 600}})) == "m" * 500
    assert error_message(json.dumps({"error": {"message": [], "detail": "d"}})) == "d"


def test_error_message_falls_back_to_the_body_trimmed_and_capped() -> None:
    assert error_message("  upstream broke  ") == "upstream broke"
    assert error_message("x" * 700) == "x" * 500
    assert error_message(json.dumps({"error": {"nothing": 1}})) == '{"error": {"nothing": 1}}'
    assert error_message("[]") == "[]"
    assert error_message(" " + json.dumps([1]) + " ") == "[1]"
    assert error_message(json.dumps({"other": ["a"]}) + " ") == '{"other": ["a"]}'
    assert len(error_message(json.dumps({"error": {"nothing": "y" * 600}}))) == 500


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError), (403, AuthenticationError), (429, RateLimitError),
        (499 + 1, ProviderServerError), (503, ProviderServerError), (404, ProviderHTTPError),
        (408, ProviderHTTPError),
    ],
)  # fmt: skip
def test_http_error_class_per_status(status: int, cls: type[ProviderHTTPError]) -> None:
    assert type(http_error("p", status, "")) is cls


def test_http_error_carries_fields_and_the_parsed_message() -> None:
    body = json.dumps({"error": {"message": "slow down", "type": "rate_limit"}})
    err = http_error("openai", 429, body, retry_after=4.0)
    assert str(err) == "openai: HTTP 429: slow down (rate_limit)"
    assert (err.provider, err.status, err.retry_after, err.body) == ("openai", 429, 4.0, body)  # type: ignore[attr-defined]
    assert http_error("openai", 500, "").retry_after is None  # type: ignore[attr-defined]


def test_http_error_empty_body_says_no_message_and_body_is_capped_and_redacted() -> None:
    assert str(http_error("p", 500, "")) == "p: HTTP 500: (no message)"
    key = "sk-" + "a" * 30
    err = http_error("p", 400, key + " " + "b" * 3000)
    assert len(err.body) == 2000 - len(key) + 3  # type: ignore[attr-defined]
    assert err.body.startswith("*** bbb")  # type: ignore[attr-defined]


def test_error_message_top_level_message_without_an_error_key() -> None:
    assert error_message(json.dumps({"message": "Not Found", "code": "404"})) == "Not Found (404)"
