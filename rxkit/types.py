"""pydantic models for the edges: messages, requests, responses, tools, cost.

These validate what comes in from users and providers. Hot-path stream
elements are in :mod:`rxkit.elements` instead.

>>> m = Message.user("hi")
>>> m.text
'hi'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AudioPart",
    "ChatRequest",
    "ChatResponse",
    "ContentPart",
    "CostInfo",
    "ImagePart",
    "Message",
    "Role",
    "StreamChunk",
    "TextPart",
    "ToolCall",
    "ToolCallPart",
    "ToolDescriptor",
    "ToolResultPart",
    "Usage",
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
    TextPart | ImagePart | AudioPart | ToolCallPart | ToolResultPart,
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
    def tool_calls(self) -> list[ToolCall]:
        return [p.call for p in self.content if isinstance(p, ToolCallPart)]

    @property
    def tool_results(self) -> list[ToolResultPart]:
        return [p for p in self.content if isinstance(p, ToolResultPart)]

    @classmethod
    def system(cls, text: str) -> Message:
        return cls(role="system", content=[TextPart(text=text)])

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(role="user", content=[TextPart(text=text)])

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
