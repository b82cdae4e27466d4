"""The one exception hierarchy of rxkit.

Every error rxkit raises, or sends to ``on_error``, is an instance of one of
these classes, so ``except rxkit.RxkitError`` catches them all::

    RxkitError
    ├── ConfigError                 bad configuration given by the user
    │   ├── TemplateError           a prompt template failed (undefined variable, syntax)
    │   ├── PromptSpecError         a prompt spec file is missing or invalid
    │   ├── UnknownProviderError    no provider factory registered under that name
    │   ├── ModelNotFoundError      an LLM/STT/TTS model file or directory is missing
    │   └── MissingExtraError       an optional dependency is not installed (names the extra)
    ├── GraphError                  a graph is wired wrongly (cycle, unknown node)
    ├── StageError                  a user callback inside a stage raised
    ├── BackpressureError
    │   └── BufferOverflowError     a bounded buffer with policy "error" overflowed
    ├── ValidationFailed            a validator rejected content
    │   ├── InputValidationError    ... the user's input, before the provider is called
    │   ├── OutputValidationError   ... the model's output, possibly mid-stream
    │   └── StructuredOutputError   ... a typed function's answer did not fit its type, after retries
    ├── StateError                  a state store failed
    │   └── StateCorruptedError     the store's file is not a valid store
    ├── ProviderError               a model provider failed (carries ``provider``)
    │   ├── ProviderHTTPError       the provider answered with an HTTP error status
    │   │   ├── AuthenticationError 401 / 403: never retried
    │   │   ├── RateLimitError      429: retried, honouring Retry-After
    │   │   └── ProviderServerError 5xx: retried
    │   ├── ProviderTimeoutError    time to first token or idle time exceeded
    │   ├── StreamError             the stream broke; ``partial`` keeps what arrived
    │   │   ├── MalformedEventError an event could not be parsed (names the line)
    │   │   └── StreamInterruptedError  the connection dropped mid-stream
    │   └── ContentBlockedError     the provider refused or blocked the content
    ├── ToolError                   a tool could not be run
    │   ├── ToolNotFoundError
    │   ├── ToolArgumentsError      arguments are not valid JSON or break the schema
    │   ├── ToolTimeoutError
    │   └── ToolExecutionError      the tool itself raised or its server crashed
    └── AudioError
        └── AudioDeviceError        no such device, or it could not be opened

Messages never contain secrets: :func:`redact` scrubs API keys from any text
that goes into an error, a log line or an event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

__all__ = [
    "describe_validation",
    "names_a_secret",
    "AudioDeviceError",
    "AudioError",
    "AuthenticationError",
    "BackpressureError",
    "BufferOverflowError",
    "ConfigError",
    "ContentBlockedError",
    "GraphError",
    "InputValidationError",
    "MalformedEventError",
    "MissingExtraError",
    "ModelNotFoundError",
    "OutputValidationError",
    "PromptSpecError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderServerError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RxkitError",
    "StageError",
    "StateCorruptedError",
    "StateError",
    "StreamError",
    "StreamInterruptedError",
    "TemplateError",
    "ToolArgumentsError",
    "ToolError",
    "ToolExecutionError",
    "ToolNotFoundError",
    "ToolTimeoutError",
    "UnknownProviderError",
    "StructuredOutputError",
    "ValidationFailed",
    "redact",
    "register_secret",
    "safe_url",
]

# Known key shapes (OpenAI sk-..., Anthropic sk-ant-..., Google AIza...), plus
# anything registered at run time through ``register_secret``.
# A key starts a word: "task-12345678" is not an "sk-" key.
_KEY_PATTERN = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|Bearer\s+[A-Za-z0-9._\-]{8,})"
)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` scrubs it wherever it appears."""
    if value and len(value) >= 4:
        _secrets.add(value)


_SECRET_WORDS = ("auth", "key", "token", "secret", "cookie", "pass", "signature", "credential")


def names_a_secret(name: str) -> bool:
    """True when a header, query parameter or field called ``name`` holds a credential (by its name)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def safe_url(url: str) -> str:
    """``url`` as it may be shown: a password in the user part (or a bare token there) and query values
    whose names say they are credentials (``api-key``, ``token``, ...) become ``***``, and each is
    registered as a secret, so that :func:`redact` also scrubs it from any message that quotes the raw URL.

    >>> safe_url("https://user:hunter22@example.test/v1?api-key=abcd1234&x=1")
    'https://user:***@example.test/v1?api-key=***&x=1'
    >>> redact("cannot reach https://user:hunter22@example.test/v1")
    'cannot reach https://user:***@example.test/v1'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")  # the host never holds '@'; a password may
        user, colon, password = userinfo.partition(":")
        register_secret(unquote(password) if colon else unquote(user))
        register_secret(password if colon else user)  # as it appears in the URL, percent-encoded
        netloc = f"{user}:***@{host}" if colon and user else f"***@{host}"
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if names_a_secret(name):
            register_secret(value)
            value = "***"
        query.append((name, value))
    safe = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        safe += "?" + urlencode(query, safe="*")
    return safe + (f"#{parts.fragment}" if parts.fragment else "")


def redact(text: str) -> str:
    """Return ``text`` with every known secret and key-shaped string replaced."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


def describe_validation(exc: Any, known: Iterable[str] = ()) -> str:
    """A pydantic ``ValidationError`` on one line, field by field, without the values given.

    pydantic's own message quotes each bad input, and in a config that can be
    a key under a misspelt name (``apikey: ...``) or of the wrong type.
    ``known`` (the valid field names) is listed when a field is not one of them.
    """
    problems = []
    unknown = False
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        unknown = unknown or err["type"] == "extra_forbidden"
        problems.append(f"{where}: {err['msg'][:1].lower()}{err['msg'][1:]}")
    text = "; ".join(problems) or str(type(exc).__name__)
    names = list(known)
    if unknown and names:
        text += f" (known fields: {', '.join(names)})"
    return text


class RxkitError(Exception):
    """Base of every rxkit error. The message is redacted of secrets."""

    def __init__(self, message: str = "", **context: Any) -> None:
        message = redact(str(message))
        super().__init__(message)
        self.message = message
        for key, value in context.items():
            setattr(self, key, redact(value) if isinstance(value, str) else value)


class ConfigError(RxkitError):
    """Bad configuration given by the user."""


class TemplateError(ConfigError):
    """A prompt template failed to render (undefined variable, bad syntax)."""

    template: str = ""
    variable: str | None = None
    line: int | None = None


class PromptSpecError(ConfigError):
    """A prompt spec file is missing, unreadable or invalid."""

    path: str = ""
    field: str | None = None
    line: int | None = None
    errors: tuple[tuple[str, str], ...] = ()


class UnknownProviderError(ConfigError):
    """No provider factory is registered under the requested name."""


class ModelNotFoundError(ConfigError):
    """A model file or directory is missing or invalid."""


class MissingExtraError(ConfigError):
    """An optional dependency is not installed; the message says which extra brings it
    (``pip install 'rxkit[voice]'``). See :mod:`rxkit.extras`."""

    package: str = ""
    extra: str = ""


class GraphError(RxkitError):
    """A graph is wired wrongly."""


class StageError(RxkitError):
    """A user callback inside a stage raised; ``stage`` names the stage."""

    stage: str = ""


class BackpressureError(RxkitError):
    """Backpressure could not be applied."""


class BufferOverflowError(BackpressureError):
    """A bounded buffer whose overflow policy is ``error`` was full."""


class ValidationFailed(RxkitError):
    """A validator rejected content; ``validator`` names it, ``reason`` says why."""

    validator: str = ""
    reason: str = ""
    phase: str = ""


class InputValidationError(ValidationFailed):
    """The user's input was rejected before the provider was called."""


class OutputValidationError(ValidationFailed):
    """The model's output was rejected; ``partial`` holds the text so far."""

    partial: str = ""


class StructuredOutputError(ValidationFailed):
    """A typed function's answer still did not fit its type after every retry.

    ``raw`` is the last answer's text, ``errors`` the validation errors (one
    line each, without the values), ``attempts`` how many answers were asked for.
    """

    raw: str = ""
    errors: list[str] = []  # noqa: RUF012 - a default only; instances set their own
    attempts: int = 0


class StateError(RxkitError):
    """A conversation state store failed. When a finished turn could not be saved (another writer
    changed the session meanwhile), ``response`` is its answer, which the caller would otherwise lose."""

    session: str = ""
    response: Any = None


class StateCorruptedError(StateError):
    """The store's backing file is not a valid store; nothing was changed."""


class ProviderError(RxkitError):
    """A model provider failed; ``provider`` names it."""

    provider: str = ""


class ProviderHTTPError(ProviderError):
    """The provider answered with an HTTP error; ``status`` holds the code."""

    status: int = 0


class AuthenticationError(ProviderHTTPError):
    """401 or 403: the key is missing, wrong or not allowed. Never retried."""


class RateLimitError(ProviderHTTPError):
    """429: too many requests. Retried after Retry-After."""


class ProviderServerError(ProviderHTTPError):
    """5xx: the provider failed. Retried with backoff."""


class ProviderTimeoutError(ProviderError):
    """No first token, or no data for too long."""


class StreamError(ProviderError):
    """The stream broke; ``partial`` holds the text received before."""

    partial: str = ""


class MalformedEventError(StreamError):
    """A stream event could not be parsed; ``line`` holds the offending data."""


class StreamInterruptedError(StreamError):
    """The connection dropped before the stream finished."""


class ContentBlockedError(ProviderError):
    """The provider blocked the prompt or the response."""


class ToolError(RxkitError):
    """A tool could not be run; ``tool`` names it."""


class ToolNotFoundError(ToolError):
    """The model asked for a tool that is not registered."""


class ToolArgumentsError(ToolError):
    """The model's arguments are not valid JSON or break the tool's schema."""


class ToolTimeoutError(ToolError):
    """The tool ran past its timeout and was cancelled."""


class ToolExecutionError(ToolError):
    """The tool raised, or its server crashed mid-call."""


class AudioError(RxkitError):
    """Audio input or output failed."""


class AudioDeviceError(AudioError):
    """No such audio device, or it could not be opened."""
