"""Retry policy and HTTP error mapping shared by the HTTP providers.

>>> policy = RetryPolicy(max_retries=2, backoff_base=0.5, jitter=0.0)
>>> policy.delay(0, None), policy.delay(1, None), policy.delay(0, 3.0)
(0.5, 1.0, 3.0)
>>> type(http_error("openai", 429, '{"error": {"message": "slow down"}}')).__name__
'RateLimitError'
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from rxkit.errors import AuthenticationError, ProviderHTTPError, ProviderServerError, RateLimitError, redact

__all__ = ["RetryPolicy", "error_message", "http_error", "is_retryable_status", "parse_retry_after"]

_NEVER_RETRY = frozenset({400, 401, 403, 404})


def is_retryable_status(status: int) -> bool:
    """429 and 5xx are retried (before the first chunk); 400/401/403/404 and other 4xx never."""
    return status not in _NEVER_RETRY and (status == 429 or status == 408 or status >= 500)


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``Retry-After`` (seconds or HTTP date), or None."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    import time

    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's Retry-After wins (up to ``max_retry_after``).

    Attempt ``n`` (0-based) waits ``min(backoff_max, backoff_base * 2**n)``,
    scaled by a random factor in ``[1 - jitter, 1]`` so that clients that
    failed together do not retry together.
    """

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 60.0
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        base = min(self.backoff_max, self.backoff_base * (2**attempt))
        return base * (1.0 - self.jitter * random.random()) if self.jitter else base


def _as_text(value: Any) -> str:
    """A message field as text: validation errors as a list (FastAPI's ``[{"loc": [...], "msg": ...}]``,
    which vLLM and other compatible servers send) become ``loc: msg; ...``, not a Python repr.

    >>> _as_text([{"loc": ["body", "messages"], "msg": "field required"}, "too long"])
    'body.messages: field required; too long'
    """
    if not isinstance(value, list):
        return str(value) if value else ""
    parts = []
    for item in value:
        if isinstance(item, dict) and item.get("msg"):
            loc = ".".join(str(p) for p in item.get("loc") or ())
            parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
        else:
            parts.append(str(item))
    return "; ".join(parts)


def error_message(body: str) -> str:
    """The provider's own error message from an error body (OpenAI, Anthropic, Gemini shapes)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if isinstance(data, list) and data:  # Gemini sometimes wraps the error in a list
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = _as_text(err.get("message") or err.get("detail") or err.get("msg"))
            if msg:
                kind = err.get("type") or err.get("status") or err.get("code")
                return (f"{msg} ({kind})" if isinstance(kind, str) and kind else msg)[:500]
        elif isinstance(err, str):
            return err[:500]
        if isinstance(data.get("detail"), str):
            return str(data["detail"])[:500]
    return body.strip()[:500]


def http_error(provider: str, status: int, body: str, retry_after: float | None = None) -> ProviderHTTPError:
    """The typed error for an HTTP error status, carrying the provider's message (redacted)."""
    cls: type[ProviderHTTPError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:
        cls = ProviderServerError
    else:
        cls = ProviderHTTPError
    message = error_message(body) or "(no message)"
    return cls(
        f"{provider}: HTTP {status}: {message}",
        provider=provider,
        status=status,
        retry_after=retry_after,
        body=redact(body[:2000]),
    )
