"""Hot-path stream elements: what flows through a graph.

These are plain slotted classes, built for speed: creating a ``TextDelta``
costs about 0.2 µs, with no validation. Treat them as immutable (Python
cannot enforce that without doubling the cost of every construction).
pydantic models (:mod:`rxkit.types`) are used only at the edges.

Every element type rxkit streams is defined here, in four groups:

- text and model output: :class:`TextDelta` (and :class:`Sentence`, a whole
  sentence for TTS), :class:`ReasoningDelta` (what the model thinks before
  it answers: not a ``TextDelta``, so text, sentence and speech stages let it
  pass unspoken), :class:`MessageElement`, :class:`ToolCallElement`,
  :class:`ErrorElement`, and typed answers: :class:`PartialValue` (so far)
  and :class:`TypedValue` (validated);
- duplex (speech-to-speech sessions): :class:`ImageFrame` in;
  :class:`ReplyTranscript` and :class:`ToolCallDelta` out;
- audio and voice: :class:`AudioFrame`, :class:`VadFrame`,
  :class:`Utterance`, :class:`Transcript`, and the voice markers
  :class:`SpeechStarted`, :class:`SpeechStopped`, :class:`ReplyStarted`,
  :class:`PlaybackStarted`, :class:`PlaybackFinished`;
- control: :class:`EndOfTurn`, :class:`Interrupt`, :class:`EndOfStream`
  and the voice markers above carry ``control = True``: every stage passes
  them through untouched and no buffer overflow policy ever drops them.
  :class:`Interrupt` is also *urgent* (:func:`is_urgent`): it overtakes
  queued work instead of keeping its place.

Audio elements carry 16-bit little-endian interleaved PCM as ``bytes`` (an
int16 numpy array is turned into bytes once, at the edge): ``bytes`` is what
PortAudio, webrtcvad, WAV files and the STT engines all take, so no
conversion sits on the per-frame path.

Telemetry (what a graph says about itself) is not an element: see
:mod:`rxkit.telemetry.events`.

>>> TextDelta("Hel").text
'Hel'
>>> is_control(EndOfTurn())
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rxkit.turn import Turn
    from rxkit.types import ChatResponse, Message, ToolCall

__all__ = [
    "AudioFrame",
    "Control",
    "Element",
    "EndOfStream",
    "EndOfTurn",
    "ErrorElement",
    "ImageFrame",
    "Interrupt",
    "MessageElement",
    "PartialValue",
    "PlaybackFinished",
    "PlaybackStarted",
    "ReasoningDelta",
    "ReplyStarted",
    "ReplyTranscript",
    "Sentence",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStopped",
    "TentativeEnd",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallElement",
    "Transcript",
    "TypedValue",
    "Utterance",
    "VadFrame",
    "is_control",
    "is_urgent",
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


class ReasoningDelta(Element):
    """A piece of the model's reasoning (Anthropic thinking, Gemini thoughts, OpenAI reasoning summaries).

    Deliberately not a :class:`TextDelta`: it is not the answer, so stages that
    collect, chunk or speak answer text pass it through untouched. Shown dimmed
    by ``rxkit chat`` and the notebook view; kept (with its signature) in the
    answer's message as a :class:`~rxkit.types.ReasoningPart`.

    >>> ReasoningDelta("Let me think").text, isinstance(ReasoningDelta(""), TextDelta)
    ('Let me think', False)
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class PartialValue(Element):
    """A typed answer so far (``parse_structured``): built without validation, fields not seen yet are None."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class TypedValue(Element):
    """A typed answer, complete and validated (``parse_structured``, at the end of the turn)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


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


class Sentence(TextDelta):
    """One whole sentence of model output, markdown stripped: what a TTS stage speaks."""

    __slots__ = ()


# --- voice: audio tagged by the VAD, turn markers, utterances, transcripts, replies and playback ---


class VadFrame(AudioFrame):
    """An audio frame tagged by the VAD: ``speech`` is True when it holds voice.

    It is an :class:`AudioFrame`, so stages that take audio take it too.
    """

    __slots__ = ("speech",)

    def __init__(self, pcm: Any, sample_rate: int, channels: int, timestamp: float, speech: bool) -> None:
        self.pcm = pcm
        self.sample_rate = sample_rate
        self.channels = channels
        self.timestamp = timestamp
        self.speech = speech

    # Element compares and prints the class's own slots; name the inherited ones too.
    _all_slots = ("pcm", "sample_rate", "channels", "timestamp", "speech")

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self._all_slots)

    def __repr__(self) -> str:
        return (
            f"VadFrame({self.duration * 1000:.0f} ms, {self.sample_rate} Hz, {self.channels} ch, "
            f"t={self.timestamp:.3f}, speech={self.speech})"
        )


class SpeechStarted(Control):
    """The user started speaking; ``timestamp`` is the first speech frame's time (audio clock)."""

    __slots__ = ("timestamp",)

    def __init__(self, timestamp: float = 0.0) -> None:
        self.timestamp = timestamp


class SpeechStopped(Control):
    """The user stopped speaking.

    ``timestamp`` is where speech ended (the first frame of the closing
    silence, audio clock); ``speech_s`` the seconds tagged as speech in the
    turn; ``reason`` is ``"silence"``, ``"end_of_turn_model"`` (the
    end-of-turn model judged the turn complete at a short pause),
    ``"max_turn"``, ``"stalled"`` (no frames came for ``stop_ms``) or
    ``"end_of_stream"``; ``discarded`` is True
    when the turn was shorter than ``min_speech_ms`` and no
    :class:`Utterance` follows.
    """

    __slots__ = ("timestamp", "speech_s", "reason", "discarded")

    def __init__(
        self, timestamp: float = 0.0, speech_s: float = 0.0, reason: str = "silence", discarded: bool = False
    ) -> None:
        self.timestamp = timestamp
        self.speech_s = speech_s
        self.reason = reason
        self.discarded = discarded


class TentativeEnd(Control):
    """The user went quiet in a turn that may be over (the turn detector has not decided yet).

    ``timestamp`` is where the speech stopped (audio clock). The turn
    detector sends it with ``text`` empty; :func:`~rxkit.operators.transcribe`
    replaces it by one whose ``text`` is the transcript of the turn so far,
    which the voice assistant starts answering at once, holding the reply
    back until :class:`SpeechStopped` confirms the turn (preemptive
    generation). A :class:`SpeechResumed` withdraws it.
    """

    __slots__ = ("timestamp", "text")

    def __init__(self, timestamp: float = 0.0, text: str = "") -> None:
        self.timestamp = timestamp
        self.text = text


class SpeechResumed(Control):
    """The user spoke again after a :class:`TentativeEnd`: the turn goes on, and that end is void."""

    __slots__ = ("timestamp",)

    def __init__(self, timestamp: float = 0.0) -> None:
        self.timestamp = timestamp


class Utterance(Element):
    """The audio of one user turn, pre-roll included, as one PCM block.

    Not an :class:`AudioFrame` on purpose: a stage that consumes frames must
    not count a turn's audio twice. ``frame`` gives it as one.
    """

    __slots__ = ("pcm", "sample_rate", "channels", "timestamp", "reason")

    def __init__(
        self, pcm: bytes, sample_rate: int, channels: int = 1, timestamp: float = 0.0, reason: str = "silence"
    ) -> None:
        self.pcm = pcm
        self.sample_rate = sample_rate
        self.channels = channels
        self.timestamp = timestamp
        self.reason = reason

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.pcm) / (2 * self.sample_rate * self.channels)

    @property
    def frame(self) -> AudioFrame:
        """The utterance as a single :class:`AudioFrame`."""
        return AudioFrame(self.pcm, self.sample_rate, self.channels, self.timestamp)


class PlaybackStarted(Control):
    """The first sample of a reply left the device; ``time`` is ``time.monotonic()`` then."""

    __slots__ = ("time",)

    def __init__(self, time: float = 0.0) -> None:
        self.time = time


class PlaybackFinished(Control):
    """The last sample of a reply left the device (or playback was cut short).

    ``time`` is ``time.monotonic()`` then; ``played_s`` the seconds of audio
    played in this reply; ``interrupted`` is True when an
    :class:`~rxkit.elements.Interrupt` (or ``flush()``) cut it short.
    """

    __slots__ = ("time", "played_s", "interrupted")

    def __init__(self, time: float = 0.0, played_s: float = 0.0, interrupted: bool = False) -> None:
        self.time = time
        self.played_s = played_s
        self.interrupted = interrupted


class Transcript(Element):
    """Recognised text of an utterance: partial (``final=False``) while the user speaks, then final."""

    __slots__ = ("text", "final")

    def __init__(self, text: str, final: bool = True) -> None:
        self.text = text
        self.final = final


class ReplyStarted(Control):
    """The assistant starts replying to user turn ``turn`` (``text``: what the user said).

    Sent ahead of the reply's elements, so that every later stage knows which
    turn the elements after it belong to.
    """

    __slots__ = ("turn", "text")

    def __init__(self, turn: int, text: str = "") -> None:
        self.turn = turn
        self.text = text


# --- duplex: what a speech-to-speech session takes besides audio and text, and gives besides audio ---


class ImageFrame(Element):
    """An image sent into a duplex session (a camera frame, a screenshot): encoded bytes and their MIME type."""

    __slots__ = ("data", "mime_type")

    def __init__(self, data: bytes, mime_type: str = "image/jpeg") -> None:
        self.data = data
        self.mime_type = mime_type


class ReplyTranscript(TextDelta):
    """A piece of the transcript of the model's spoken reply (what its audio says), as it streamed.

    A :class:`TextDelta`, so text stages take it; the user's side comes as :class:`Transcript`.
    """

    __slots__ = ()


class ToolCallDelta(Element):
    """A fragment of a tool call's arguments as the model streams them (the whole call follows as
    :class:`ToolCallElement`)."""

    __slots__ = ("call_id", "name", "arguments")

    def __init__(self, call_id: str, name: str, arguments: str) -> None:
        self.call_id = call_id
        self.name = name
        self.arguments = arguments


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
    """True for control elements (they are never dropped). Anything may flow in a graph, not only elements."""
    return getattr(element, "control", False) is True


def is_urgent(element: object) -> bool:
    """True for urgent control elements (:class:`Interrupt`): they overtake queued work and cancel a running turn.

    >>> is_urgent(Interrupt()), is_urgent(EndOfTurn()), is_urgent("text")
    (True, False, False)
    """
    return getattr(element, "urgent", False) is True
