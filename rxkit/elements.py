"""Hot-path stream elements: what flows through a graph.

These are plain slotted classes, built for speed: creating a ``TextDelta``
costs about 0.2 µs, with no validation. Treat them as immutable (Python
cannot enforce that without doubling the cost of every construction).
pydantic models (:mod:`rxkit.types`) are used only at the edges.

Control elements (:class:`EndOfTurn`, :class:`Interrupt`, :class:`EndOfStream`)
carry ``control = True``: every stage passes them through untouched and no
buffer overflow policy ever drops them.

>>> TextDelta("Hel").text
'Hel'
>>> is_control(EndOfTurn())
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .turn import Turn
    from .types import ChatResponse, Message, ToolCall

__all__ = [
    "AudioFrame",
    "Control",
    "Element",
    "EndOfStream",
    "EndOfTurn",
    "ErrorElement",
    "Interrupt",
    "MessageElement",
    "TextDelta",
    "ToolCallElement",
    "is_control",
]


class Element:
    """Base of every stream element."""

    __slots__ = ()
    control = False

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _slots(self))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Element) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in _slots(self))
        return f"{type(self).__name__}({args})"


class TextDelta(Element):
    """A piece of model output text, as it streamed."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class AudioFrame(Element):
    """A block of 16-bit PCM audio (``pcm`` is bytes or an int16 numpy array)."""

    __slots__ = ("pcm", "sample_rate", "channels", "timestamp")

    def __init__(self, pcm: Any, sample_rate: int, channels: int = 1, timestamp: float = 0.0) -> None:
        self.pcm = pcm
        self.sample_rate = sample_rate
        self.channels = channels
        self.timestamp = timestamp

    @property
    def duration(self) -> float:
        """Length of the frame in seconds."""
        n = len(self.pcm) // 2 if isinstance(self.pcm, (bytes, bytearray, memoryview)) else len(self.pcm)
        return n / (self.sample_rate * self.channels)


class MessageElement(Element):
    """A whole conversation message (for example the user's input)."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message


class ToolCallElement(Element):
    """A tool call the model asked for, with its arguments fully assembled."""

    __slots__ = ("call",)

    def __init__(self, call: ToolCall) -> None:
        self.call = call


class ErrorElement(Element):
    """An in-band error, where the stream must go on (a tool failed, a chunk was rejected)."""

    __slots__ = ("error", "stage")

    def __init__(self, error: Exception, stage: str = "") -> None:
        self.error = error
        self.stage = stage


class Control(Element):
    """Base of control elements: never dropped, passed through by every stage."""

    __slots__ = ()
    control = True
    urgent = False


class EndOfTurn(Control):
    """The end of one conversation turn; carries the final response and the turn when known."""

    __slots__ = ("response", "turn")

    def __init__(self, response: ChatResponse | None = None, turn: Turn | None = None) -> None:
        self.response = response
        self.turn = turn


class Interrupt(Control):
    """Stop what is in flight (barge-in, user cancel). Passes ahead of queued data."""

    __slots__ = ("reason",)
    urgent = True

    def __init__(self, reason: str = "") -> None:
        self.reason = reason


class EndOfStream(Control):
    """No more input will come."""

    __slots__ = ()


_FIELDS: dict[type, tuple[str, ...]] = {}


def _slots(element: Element) -> tuple[str, ...]:
    """Every slot of the element's class and its bases, base first (cached per class)."""
    cls = type(element)
    names = _FIELDS.get(cls)
    if names is None:
        found: list[str] = []
        for klass in reversed(cls.__mro__):
            slots = klass.__dict__.get("__slots__", ())
            found += [slots] if isinstance(slots, str) else [n for n in slots if n not in found]
        names = _FIELDS[cls] = tuple(found)
    return names


def is_control(element: object) -> bool:
    """True for control elements (they are never dropped)."""
    return getattr(element, "control", False) is True
