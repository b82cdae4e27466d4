"""pydantic models for the edges: messages, requests, responses, tools, cost.

These validate what comes in from users and providers. Hot-path stream
elements are in :mod:`rxkit.elements` instead.

>>> m = Message.user("hi")
>>> m.text
'hi'
"""

from __future__ import annotations

import base64
import mimetypes
import os
import pathlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rxkit.errors import ConfigError

__all__ = [
    "AudioPart",
    "ChatRequest",
    "ChatResponse",
    "ContentPart",
    "CostInfo",
    "DocumentPart",
    "ImagePart",
    "Message",
    "ReasoningPart",
    "Role",
    "StreamChunk",
    "TextPart",
    "ToolCall",
    "ToolCallPart",
    "ToolDescriptor",
    "ToolResultPart",
    "Usage",
    "VideoPart",
    "attach",
]

Role = Literal["system", "user", "assistant", "tool"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str


class ImagePart(_Model):
    """An image given by URL (``https:`` or ``data:``) or as base64 data."""

    type: Literal["image"] = "image"
    url: str | None = None
    data: str | None = None
    mime_type: str = "image/png"


class AudioPart(_Model):
    """Audio given as base64 data in a named format (``wav``, ``mp3``)."""

    type: Literal["audio"] = "audio"
    data: str
    format: str = "wav"


class DocumentPart(_Model):
    """A document (a PDF, or plain text) given by URL or as base64 data.

    >>> DocumentPart(data="JVBERi0=", filename="a.pdf").mime_type
    'application/pdf'
    """

    type: Literal["document"] = "document"
    url: str | None = None
    data: str | None = None
    mime_type: str = "application/pdf"
    filename: str | None = None


class VideoPart(_Model):
    """A video given by URL (Gemini: a File API or YouTube URI) or as base64 data (Gemini only).

    >>> VideoPart(url="https://www.youtube.com/watch?v=9hE5-98ZeCg").mime_type
    'video/mp4'
    """

    type: Literal["video"] = "video"
    url: str | None = None
    data: str | None = None
    mime_type: str = "video/mp4"


class ReasoningPart(_Model):
    """What a model thought before it answered, kept so a tool loop can hand it back.

    ``text`` is the reasoning (or its summary) as shown to the user;
    ``signature`` the provider's proof that it is unaltered (Anthropic's
    thinking ``signature``, Gemini's ``thoughtSignature``); ``data`` opaque
    reasoning the user cannot read (Anthropic ``redacted_thinking`` data,
    OpenAI Responses ``encrypted_content``); ``id`` the provider's item id
    (OpenAI Responses). ``source`` names the API it came from
    (``"anthropic"``, ``"gemini"``, ``"openai"``, ``"openai-responses"``):
    signatures are only valid there, so other APIs are not sent it.
    :attr:`Message.text` leaves reasoning out.

    >>> m = Message(role="assistant", content=[ReasoningPart(text="2+2 is 4", source="anthropic"), TextPart(text="4")])
    >>> m.text, m.reasoning
    ('4', '2+2 is 4')
    """

    type: Literal["reasoning"] = "reasoning"
    text: str = ""
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    source: str = ""


class ToolCall(_Model):
    """A call the model asked for; ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str = "{}"


class ToolCallPart(_Model):
    type: Literal["tool_call"] = "tool_call"
    call: ToolCall


class ToolResultPart(_Model):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    name: str = ""
    content: str
    is_error: bool = False


ContentPart = Annotated[
    TextPart | ImagePart | AudioPart | DocumentPart | VideoPart | ReasoningPart | ToolCallPart | ToolResultPart,
    Field(discriminator="type"),
]


class Message(_Model):
    """One conversation message made of content parts."""

    role: Role
    content: list[ContentPart] = Field(default_factory=list)
    name: str | None = None

    @property
    def text(self) -> str:
        """The concatenated text parts."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def reasoning(self) -> str:
        """The concatenated reasoning parts (not part of :attr:`text`)."""
        return "".join(p.text for p in self.content if isinstance(p, ReasoningPart))

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [p.call for p in self.content if isinstance(p, ToolCallPart)]

    @property
    def tool_results(self) -> list[ToolResultPart]:
        return [p for p in self.content if isinstance(p, ToolResultPart)]

    @classmethod
    def system(cls, text: str) -> Message:
        return cls(role="system", content=[TextPart(text=text)])

    @classmethod
    def user(cls, text: str, *attachments: Any) -> Message:
        """A user message: ``text``, then any media parts (see :func:`attach`).

        >>> [p.type for p in Message.user("Summarise it", attach(b"%PDF-1.4 ...")).content]
        ['text', 'document']
        """
        return cls(role="user", content=[TextPart(text=text), *attachments])

    @classmethod
    def assistant(cls, text: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
        parts: list[Any] = [TextPart(text=text)] if text else []
        parts += [ToolCallPart(call=c) for c in tool_calls or ()]
        return cls(role="assistant", content=parts)

    @classmethod
    def tool(cls, call_id: str, content: str, name: str = "", is_error: bool = False) -> Message:
        part = ToolResultPart(call_id=call_id, name=name, content=content, is_error=is_error)
        return cls(role="tool", content=[part])


class ToolDescriptor(_Model):
    """A tool the model may call: name, description and JSON schemas."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    output_schema: dict[str, Any] | None = None


class Usage(_Model):
    """Tokens a call used. ``estimated`` is True when the server did not report them and rxkit
    counted them itself (streamed chunks, a tokenizer), so they may be off by a few.

    >>> (Usage(input_tokens=3) + Usage(output_tokens=2, estimated=True)).estimated
    True
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0  # input written to a prompt cache (Anthropic bills it above the input rate)
    reasoning_tokens: int = 0  # of output_tokens, those spent reasoning (billed as output; already counted there)
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            estimated=self.estimated or other.estimated,
        )


class CostInfo(_Model):
    """Cost of a call in US dollars; ``estimated`` when priced from estimated usage."""

    input_cost: float = 0.0
    output_cost: float = 0.0
    cached_input_cost: float = 0.0
    currency: str = "USD"
    estimated: bool = False

    @property
    def total(self) -> float:
        return self.input_cost + self.output_cost + self.cached_input_cost

    def __add__(self, other: CostInfo) -> CostInfo:
        return CostInfo(
            input_cost=self.input_cost + other.input_cost,
            output_cost=self.output_cost + other.output_cost,
            cached_input_cost=self.cached_input_cost + other.cached_input_cost,
            estimated=self.estimated or other.estimated,
        )


class ChatRequest(_Model):
    """What a provider is asked. ``None`` parameters fall back to provider defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[Message]
    model: str | None = None
    tools: list[ToolDescriptor] = Field(default_factory=list)
    tool_choice: Literal["auto", "none", "required"] | str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ChatResponse(_Model):
    """A finished answer: the assistant message, usage, cost and timing.

    ``cost`` is None when the model has no known price (see :mod:`rxkit.providers.pricing`).
    """

    message: Message
    model: str = ""
    provider: str = ""
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost: CostInfo | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    response_id: str | None = None  # the provider's id of this answer (OpenAI Responses: previous_response_id)

    @property
    def text(self) -> str:
        return self.message.text


class StreamChunk(_Model):
    """One parsed piece of a provider stream, before it becomes elements."""

    text: str = ""
    tool_call_index: int | None = None
    tool_call_id: str | None = None
    tool_call_name: str | None = None
    tool_call_arguments: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


_MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"ID3", "audio/mpeg"),
    (b"\xff\xfb", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
)


def _sniff(data: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if data[8:12] == b"WEBP" else "audio/wav"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    return None


def attach(
    source: bytes | str | os.PathLike[str], mime_type: str | None = None, *, filename: str | None = None
) -> ImagePart | AudioPart | DocumentPart | VideoPart:
    """A media part from bytes, a file path or a URL, its kind told by ``mime_type`` or guessed.

    Bytes are base64-encoded here; a path is read; an ``http(s):``,
    ``gs:`` or ``data:`` URL is passed as a URL (the API fetches it, where
    it can). The type comes from ``mime_type``, else the bytes' signature,
    else the name's suffix. Each provider checks sizes against its API's
    limits before sending (:mod:`rxkit.providers.media`).

    >>> attach(b"%PDF-1.7 ...", filename="report.pdf")
    DocumentPart(type='document', url=None, data='JVBERi0xLjcgLi4u', mime_type='application/pdf', filename='report.pdf')
    >>> attach("https://example.com/cat.jpg").mime_type
    'image/jpeg'
    """
    url = data = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        guess = mime_type or _sniff(raw) or (mimetypes.guess_type(filename)[0] if filename else None)
        data = base64.b64encode(raw).decode("ascii")
    elif isinstance(source, str) and source.split(":", 1)[0] in ("http", "https", "gs", "data"):
        url = source
        if source.startswith("data:"):
            guess = mime_type or source[5:].split(";", 1)[0].split(",", 1)[0] or None
        else:
            guess = mime_type or mimetypes.guess_type(source.split("?", 1)[0])[0]
    else:
        path = pathlib.Path(source)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"attach: cannot read {str(path)!r} ({exc.strerror or exc})") from None
        guess = mime_type or _sniff(raw) or mimetypes.guess_type(path.name)[0]
        data = base64.b64encode(raw).decode("ascii")
        filename = filename or path.name
    if not guess:
        what = filename or url or "these bytes"
        raise ConfigError(f"attach: cannot tell the media type of {what}; pass mime_type=...")
    kind = guess.split("/", 1)[0]
    if kind == "image":
        return ImagePart(url=url, data=data, mime_type=guess)
    if kind == "video":
        return VideoPart(url=url, data=data, mime_type=guess)
    if kind == "audio":
        if data is None:
            raise ConfigError(f"attach: audio goes as data (bytes or a path), not as a URL: {url}")
        fmt = {"audio/mpeg": "mp3", "audio/x-wav": "wav", "audio/wave": "wav"}.get(guess, guess.split("/", 1)[1])
        return AudioPart(data=data, format=fmt)
    return DocumentPart(url=url, data=data, mime_type=guess, filename=filename)
