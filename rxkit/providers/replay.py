"""Record element streams to JSON Lines, and play them back as a provider.

Record a real provider once, replay it in tests at any speed::

    elements = await record(provider.stream(request), "answer.jsonl").pipe(ops.to_list())
    replay = ReplayProvider("answer.jsonl", speed=0)       # 0: as fast as possible
    elements_again = await replay.stream(request).pipe(ops.to_list())

A recording has one JSON object a line: an optional header
``{"rxkit": "recording", "version": 1}``, then one line per element with its
time offset ``t`` in seconds from the start of its turn::

    {"t": 0.21, "type": "text", "text": "Hel"}
    {"t": 0.25, "type": "tool_call", "call": {"id": "c1", "name": "add", "arguments": "{}"}}
    {"t": 0.30, "type": "end_of_turn", "response": {...}}
    {"t": 0.10, "type": "error", "error_type": "StreamInterruptedError", "message": "..."}

An ``end_of_turn`` or ``error`` line ends a turn; each ``stream()`` call plays
the next turn. Also ``message``, ``error_element``, ``interrupt``,
``end_of_stream`` and ``audio`` (base64 ``pcm``) lines.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable, SerialDisposable

from rxkit import errors as _errors
from rxkit.elements import (
    AudioFrame,
    Element,
    EndOfStream,
    EndOfTurn,
    ErrorElement,
    Interrupt,
    MessageElement,
    ReasoningDelta,
    TextDelta,
    ToolCallElement,
)
from rxkit.errors import ConfigError, ProviderError, RxkitError
from rxkit.providers._timed import Step, TimedStream
from rxkit.providers.base import BaseProvider, Capabilities, Provider
from rxkit.providers.registry import ProviderSpec, register_provider
from rxkit.telemetry.events import EventBus
from rxkit.types import ChatRequest, ChatResponse, CostInfo, Message, ToolCall, Usage

__all__ = ["Recorder", "RecordingProvider", "ReplayProvider", "load_recording", "record", "recording"]

_HEADER = {"rxkit": "recording", "version": 1}


class ReplayProvider(BaseProvider):
    """Plays a recording's turns, one per ``stream()`` call, at ``speed`` times the recorded pace.

    ``speed=0`` plays as fast as possible (synchronously on subscribe).
    With ``loop=True`` it starts over after the last turn; otherwise a call
    past the end fails with a :class:`ProviderError`.
    """

    type = "replay"
    capabilities = Capabilities(tools=True, vision=True, audio=True, json_mode=True)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float = 1.0,
        loop: bool = False,
        model: str = "replay",
        name: str | None = None,
        bus: EventBus | None = None,
        scheduler: abc.SchedulerBase | None = None,
    ) -> None:
        super().__init__(model, name=name, bus=bus)
        if speed < 0:
            raise ConfigError(f"replay speed must be 0 (as fast as possible) or more, not {speed}")
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.scheduler = scheduler
        self.turns = load_recording(path)
        self.played = 0
        self.requests: list[ChatRequest] = []

    def stream(self, request: ChatRequest) -> Observable[Element]:
        """A hot stream of the next recorded turn."""
        picked: list[list[tuple[float, Element | Exception]]] = []

        def begin() -> list[Step]:
            if len(self.requests) < 1_000:  # a bounded record, for assertions
                self.requests.append(request)
            if not picked:
                picked.append(self._next_turn())
            return _paced(picked[0], self.speed)

        return TimedStream(self, begin, scheduler=self.scheduler)

    def _next_turn(self) -> list[tuple[float, Element | Exception]]:
        if self.played >= len(self.turns) and not (self.loop and self.turns):
            return [(0.0, ProviderError(f"recording {self.path} has no more turns ({self.played} played)"))]
        turn = self.turns[self.played % len(self.turns)]
        self.played += 1
        return turn


def _paced(turn: list[tuple[float, Element | Exception]], speed: float) -> list[Step]:
    steps: list[Step] = []
    last = 0.0
    for t, item in turn:
        steps.append(((t - last) / speed if speed else 0.0, item))
        last = t
    return steps


def load_recording(path: str | os.PathLike[str]) -> list[list[tuple[float, Element | Exception]]]:
    """Parse a recording into turns of ``(offset, element or error)``; a bad line raises ConfigError naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read recording {p}: {exc}", path=str(p)) from None
    turns: list[list[tuple[float, Element | Exception]]] = []
    current: list[tuple[float, Element | Exception]] = []
    last = 0.0
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{p}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON: {exc}", path=str(p), line=number) from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: each line must be a JSON object", path=str(p), line=number)
        if obj.get("rxkit") == "recording":
            if obj.get("version") != 1:
                raise ConfigError(f"{where}: unsupported recording version {obj.get('version')!r}", line=number)
            continue
        t = obj.get("t")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or t < 0:
            raise ConfigError(f"{where}: 't' must be a number of seconds >= 0, not {t!r}", path=str(p), line=number)
        if t < last:
            raise ConfigError(f"{where}: time goes backwards ({t} after {last})", path=str(p), line=number)
        try:
            item = _decode(obj)
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise ConfigError(
                f"{where}: invalid {obj.get('type')!r} line: {detail}", path=str(p), line=number
            ) from None
        current.append((float(t), item))
        last = float(t)
        if isinstance(item, (EndOfTurn, Exception)):
            turns.append(current)
            current, last = [], 0.0
    if current:
        turns.append(current)
    return turns


def _decode(obj: dict[str, Any]) -> Element | Exception:
    kind = obj.get("type")
    if kind == "text":
        return TextDelta(_str(obj["text"]))
    if kind == "reasoning":
        return ReasoningDelta(_str(obj["text"]))
    if kind == "tool_call":
        return ToolCallElement(ToolCall.model_validate(obj["call"]))
    if kind == "end_of_turn":
        raw = obj.get("response")
        return EndOfTurn(None if raw is None else ChatResponse.model_validate(raw))
    if kind == "message":
        return MessageElement(Message.model_validate(obj["message"]))
    if kind == "error":
        return _error(_str(obj["error_type"]), _str(obj.get("message", "")))
    if kind == "error_element":
        return ErrorElement(_error(_str(obj["error_type"]), _str(obj.get("message", ""))), _str(obj.get("stage", "")))
    if kind == "interrupt":
        return Interrupt(_str(obj.get("reason", "")))
    if kind == "end_of_stream":
        return EndOfStream()
    if kind == "audio":
        pcm = base64.b64decode(_str(obj["pcm"]), validate=True)
        return AudioFrame(pcm, int(obj["sample_rate"]), int(obj.get("channels", 1)), float(obj.get("timestamp", 0.0)))
    raise ValueError(f"unknown element type {kind!r}")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value


def _error(error_type: str, message: str) -> Exception:
    cls = getattr(_errors, error_type, None)
    if isinstance(cls, type) and issubclass(cls, RxkitError):
        return cls(message, provider="replay") if issubclass(cls, ProviderError) else cls(message)
    return ProviderError(f"{error_type}: {message}", provider="replay")


def encode(element: Element, t: float) -> dict[str, Any]:
    """One recording line for ``element`` at offset ``t`` (raises ConfigError for unknown elements)."""
    line: dict[str, Any] = {"t": round(t, 6)}
    if type(element) is TextDelta:
        line.update(type="text", text=element.text)
    elif isinstance(element, ReasoningDelta):
        line.update(type="reasoning", text=element.text)
    elif isinstance(element, ToolCallElement):
        line.update(type="tool_call", call=element.call.model_dump())
    elif isinstance(element, EndOfTurn):
        response = element.response.model_dump(mode="json") if element.response is not None else None
        line.update(type="end_of_turn", response=response)
    elif isinstance(element, MessageElement):
        line.update(type="message", message=element.message.model_dump(mode="json"))
    elif isinstance(element, ErrorElement):
        line.update(
            type="error_element",
            error_type=type(element.error).__name__,
            message=str(element.error),
            stage=element.stage,
        )
    elif isinstance(element, Interrupt):
        line.update(type="interrupt", reason=element.reason)
    elif isinstance(element, EndOfStream):
        line.update(type="end_of_stream")
    elif isinstance(element, AudioFrame):
        pcm = element.pcm if isinstance(element.pcm, (bytes, bytearray, memoryview)) else element.pcm.tobytes()
        line.update(
            type="audio",
            pcm=base64.b64encode(bytes(pcm)).decode("ascii"),
            sample_rate=element.sample_rate,
            channels=element.channels,
            timestamp=element.timestamp,
        )
    else:
        raise ConfigError(f"cannot record an element of type {type(element).__name__}")
    return line


class Recorder:
    """Writes elements to a recording file, one JSON line each, with their offsets from the turn start.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.jsonl")
    >>> with Recorder(path) as rec:
    ...     rec.write(TextDelta("hi"), 0.5)
    ...     rec.write(EndOfTurn(), 0.6)
    >>> [type(x).__name__ for _, x in load_recording(path)[0]]
    ['TextDelta', 'EndOfTurn']
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self.path = Path(path)
        fresh = not append or not self.path.exists() or self.path.stat().st_size == 0
        self._file: IO[str] | None = self.path.open("a" if append else "w", encoding="utf-8")
        if fresh:
            self._line(_HEADER)

    def write(self, element: Element, t: float) -> None:
        self._line(encode(element, t))

    def write_error(self, error: BaseException, t: float) -> None:
        self._line({"t": round(t, 6), "type": "error", "error_type": type(error).__name__, "message": str(error)})

    def _line(self, obj: dict[str, Any]) -> None:
        if self._file is None:
            raise ConfigError(f"recorder for {self.path} is closed")
        self._file.write(json.dumps(obj, ensure_ascii=False) + "\n")

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record(
    source: Observable[Element],
    path: str | os.PathLike[str],
    *,
    append: bool = False,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[Element]:
    """Pass ``source`` through unchanged while writing it to ``path`` as a recording.

    Offsets are measured on ``scheduler`` (else the subscribe-time one, else
    the monotonic clock) and restart at each EndOfTurn. The file is opened
    on subscribe and closed on completion, error or dispose.
    """

    def subscribe(observer: abc.ObserverBase[Element], sub_scheduler: abc.SchedulerBase | None = None) -> Any:
        clock_source = scheduler or sub_scheduler

        def clock() -> float:
            return clock_source.now.timestamp() if clock_source is not None else time.monotonic()

        try:
            recorder = Recorder(path, append=append)
        except OSError as exc:
            observer.on_error(ConfigError(f"cannot write recording {path}: {exc.strerror}"))
            return Disposable()
        start = [clock()]
        subscription = SerialDisposable()

        def on_next(element: Element) -> None:
            if recorder.closed:
                return
            try:
                recorder.write(element, clock() - start[0])
            except (ConfigError, OSError) as exc:
                recorder.close()
                subscription.dispose()
                observer.on_error(exc if isinstance(exc, ConfigError) else ConfigError(f"recording failed: {exc}"))
                return
            if isinstance(element, EndOfTurn):
                start[0] = clock()
            observer.on_next(element)

        def on_error(error: Exception) -> None:
            if recorder.closed:
                return
            try:
                recorder.write_error(error, clock() - start[0])
            finally:
                recorder.close()
            observer.on_error(error)

        def on_completed() -> None:
            if recorder.closed:
                return
            recorder.close()
            observer.on_completed()

        subscription.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=sub_scheduler)

        def dispose() -> None:
            subscription.dispose()
            recorder.close()

        return Disposable(dispose)

    return Observable(subscribe)


def recording(
    path: str | os.PathLike[str], *, append: bool = False
) -> Callable[[Observable[Element]], Observable[Element]]:
    """:func:`record` as an operator: ``stream.pipe(recording("out.jsonl"))``."""
    return lambda source: record(source, path, append=append)


class RecordingProvider(BaseProvider):
    """Wraps a provider and appends every call's stream to a recording, for later replay."""

    type = "recording"

    def __init__(self, provider: Provider, path: str | os.PathLike[str]) -> None:
        super().__init__(provider.model, name=provider.name)
        self.inner = provider
        self.path = Path(path)
        self.capabilities = provider.capabilities

    def cost(self, usage: Usage, model: str | None = None) -> CostInfo | None:
        return self.inner.cost(usage, model)

    def stream(self, request: ChatRequest) -> Observable[Element]:
        # share(): one recorded call however many subscribe
        return record(self.inner.stream(request), self.path, append=True).pipe(ops.share())

    async def aclose(self) -> None:
        await self.inner.aclose()


def _from_spec(spec: ProviderSpec) -> ReplayProvider:
    extra = dict(spec.extra)
    path = extra.pop("path", None) or spec.base_url
    if not path:
        raise ConfigError("a replay provider needs extra={'path': 'recording.jsonl'}")
    unknown = set(extra) - {"speed", "loop"}
    if unknown:
        raise ConfigError(f"unknown replay provider options {sorted(unknown)}; known: path, speed, loop")
    return ReplayProvider(path, model=spec.model or "replay", name=spec.name, **extra)


register_provider("replay", _from_spec)
