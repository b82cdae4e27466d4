"""Hot provider streams: one call shared by every subscriber.

:class:`StreamAccumulator` is the state of one call. A provider's parser
writes into it (``text``, ``reasoning``, ``reasoning_done``, ``tool``, ``tool_done``, ``set_usage``,
``finish_reason``) and it emits elements to the subscribers as it goes,
keeping what a late subscriber must be given first.

:class:`HotStream` is the observable: the first subscriber starts the call
(a task on the asyncio loop), later ones join it (they first get one
:class:`~rxkit.elements.TextDelta` of the text so far and the tool calls
already finished, then the live elements), and when the last one leaves
before the end the task is cancelled, which aborts the HTTP request. A
subscriber arriving after the end gets the whole answer replayed.

>>> import asyncio
>>> async def call(acc):
...     acc.text("Hel"); acc.text("lo")
...     acc.finish(None)
>>> async def main():
...     return await HotStream(call).pipe(ops.to_list())
>>> asyncio.run(main())
[TextDelta(text='Hel'), TextDelta(text='lo'), EndOfTurn(response=None, turn=None)]
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from reactivex import Observable, abc
from reactivex import operators as ops  # noqa: F401 - used by the doctest
from reactivex.disposable import Disposable

from rxkit.elements import Element, EndOfTurn, ReasoningDelta, TextDelta, ToolCallDelta, ToolCallElement
from rxkit.errors import ProviderError, StreamError
from rxkit.scheduling import loop_of
from rxkit.types import ChatResponse, ReasoningPart, ToolCall

__all__ = ["HotStream", "StreamAccumulator"]

_ids = itertools.count(1)


class StreamAccumulator:
    """What one provider call has produced so far; parsers write into it.

    Hot-path methods (:meth:`text`, :meth:`tool`) do a list append and a
    loop over the subscribers, nothing more. ``state`` is a scratch dict for
    a parser's own per-call bookkeeping (e.g. Anthropic block types).
    """

    __slots__ = (
        "_replay",
        "_run_start",
        "_thinking",
        "_tools",
        "cache_write_tokens",
        "cached_input_tokens",
        "estimated_input_tokens",
        "final",
        "finish_reason",
        "first_token_at",
        "input_tokens",
        "model",
        "observers",
        "on_first_token",
        "output_tokens",
        "parts",
        "provider",
        "reasoning_parts",
        "reasoning_tokens",
        "response_id",
        "state",
        "task",
        "tool_calls",
    )

    def __init__(self, provider: str = "", model: str = "") -> None:
        self.provider = provider
        self.model = model
        self.observers: list[abc.ObserverBase[Element]] = []
        self.parts: list[str] = []
        self.tool_calls: list[ToolCall] = []
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cached_input_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.reasoning_parts: list[ReasoningPart] = []  # finished reasoning blocks, for the answer's message
        self._thinking: list[str] = []  # the open reasoning block's fragments
        # Input tokens counted before the call, used if the server reports none (kept across retries).
        self.estimated_input_tokens: int | None = None
        self.state: dict[str, Any] = {}
        self.first_token_at: float | None = None
        self.on_first_token: Callable[[], None] | None = None
        self.final: tuple[str, Any] | None = None  # ("completed", EndOfTurn) or ("error", exc)
        self.task: asyncio.Task[None] | None = None
        self._tools: dict[Any, list[Any]] = {}  # key -> [id, name, [argument fragments]]
        self._replay: list[Element] = []  # finished text runs and tool calls, for late subscribers
        self._run_start = 0  # index in parts where the current text run starts

    # -- what parsers call -------------------------------------------------

    def text(self, text: str) -> None:
        """A piece of answer text: record it and send a TextDelta to every subscriber."""
        if not text:
            return
        if self.first_token_at is None:
            self._first()
        self.parts.append(text)
        self.emit(TextDelta(text))

    def reasoning(self, text: str) -> None:
        """A piece of the model's reasoning: a ReasoningDelta to every subscriber (not answer text)."""
        if not text:
            return
        if self.first_token_at is None:
            self._first()
        self._thinking.append(text)
        self.emit(ReasoningDelta(text))

    def reasoning_done(
        self,
        source: str,
        *,
        signature: str | None = None,
        data: str | None = None,
        id: str | None = None,
        text: str | None = None,
    ) -> None:
        """The open reasoning block is complete: keep it, with its signature or opaque ``data``, for the
        answer's message (``text`` replaces what streamed, for APIs that send the block whole)."""
        body = "".join(self._thinking) if text is None else text
        self._thinking = []
        if not (body or signature or data):
            return
        if body:
            self._cut_text_run()
            self._replay.append(ReasoningDelta(body))
        self.reasoning_parts.append(ReasoningPart(text=body, signature=signature, data=data, id=id, source=source))

    def finish_reasoning(self, source: str = "") -> None:
        """Close a reasoning block still open (an API that marks no block end), if any."""
        if self._thinking:
            self.reasoning_done(source)

    def tool(
        self, key: Any, id: str | None = None, name: str | None = None, arguments: str = "", delta: bool = False
    ) -> None:
        """A fragment of tool call ``key`` (an index or block id). Id and name are taken once.

        ``delta=True`` also sends the fragment on as a :class:`~rxkit.elements.ToolCallDelta`, for
        consumers that parse the arguments as they stream (typed functions on a forced tool).
        """
        entry = self._tools.get(key)
        if entry is None:
            if self.first_token_at is None:
                self._first()
            entry = self._tools[key] = [id or "", name or "", []]
        else:
            if id and not entry[0]:
                entry[0] = id
            if name and not entry[1]:
                entry[1] = name
        if arguments:
            entry[2].append(arguments)
            if delta:
                self.emit(ToolCallDelta(entry[0], entry[1], arguments))

    def tool_done(self, key: Any) -> ToolCall | None:
        """Tool call ``key`` is complete: emit it as a ToolCallElement."""
        entry = self._tools.pop(key, None)
        if entry is None:
            return None
        call_id, name, fragments = entry
        arguments = "".join(fragments).strip() or "{}"
        call = ToolCall(id=call_id or f"call_{next(_ids)}", name=name, arguments=arguments)
        self.tool_calls.append(call)
        self._cut_text_run()
        element = ToolCallElement(call)
        self._replay.append(element)
        self.emit(element)
        return call

    def finish_tools(self) -> None:
        """Emit every tool call still being assembled, in the order they started."""
        for key in list(self._tools):
            self.tool_done(key)

    def set_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
    ) -> None:
        """Record token counts; ``None`` leaves a count as it was (providers report in pieces)."""
        if input_tokens is not None:
            self.input_tokens = input_tokens
        if output_tokens is not None:
            self.output_tokens = output_tokens
        if cached_input_tokens is not None:
            self.cached_input_tokens = cached_input_tokens
        if cache_write_tokens is not None:
            self.cache_write_tokens = cache_write_tokens

    def stream_error(self, message: str, cls: type[StreamError] = StreamError, **context: Any) -> StreamError:
        """A typed stream error naming the provider and keeping the partial text (raise it)."""
        return cls(f"{self.provider}: {message}", provider=self.provider, partial=self.partial, **context)

    @property
    def partial(self) -> str:
        """The text received so far."""
        return "".join(self.parts)

    @property
    def emitted(self) -> bool:
        """True once any text or tool call arrived (after that, a call is never retried)."""
        return self.first_token_at is not None

    # -- what the runner calls ---------------------------------------------

    def finish(self, response: ChatResponse | None) -> None:
        """Emit EndOfTurn and complete every subscriber."""
        if self.final is not None:
            return
        self.finish_tools()
        end = EndOfTurn(response)
        self.final = ("completed", end)
        observers, self.observers = self.observers, []
        for o in observers:
            try:
                o.on_next(end)
                o.on_completed()
            except Exception:  # noqa: BLE001 - a failing subscriber does not stop the others
                pass

    def fail(self, error: Exception) -> None:
        """Send ``error`` to every subscriber."""
        if self.final is not None:
            return
        self.final = ("error", error)
        observers, self.observers = self.observers, []
        for o in observers:
            try:
                o.on_error(error)
            except Exception:  # noqa: BLE001 - as above
                pass

    def reset(self) -> None:
        """Forget a failed attempt that emitted nothing (before a retry)."""
        self._tools.clear()
        self.finish_reason = None
        self.input_tokens = self.output_tokens = self.cached_input_tokens = self.cache_write_tokens = None
        self.reasoning_tokens = None
        self.reasoning_parts = []
        self._thinking = []
        self.state.clear()

    def replay_to(self, observer: abc.ObserverBase[Element]) -> None:
        """Give a late subscriber what the others already got, compacted."""
        for element in self._replay:
            observer.on_next(element)
        if len(self.parts) > self._run_start:
            observer.on_next(TextDelta("".join(self.parts[self._run_start :])))
        if self.final is not None:
            kind, value = self.final
            if kind == "completed":
                observer.on_next(value)
                observer.on_completed()
            else:
                observer.on_error(value)

    def _cut_text_run(self) -> None:
        if len(self.parts) > self._run_start:
            self._replay.append(TextDelta("".join(self.parts[self._run_start :])))
            self._run_start = len(self.parts)

    def _first(self) -> None:
        try:
            self.first_token_at = asyncio.get_running_loop().time()
        except RuntimeError:  # fed outside a loop (a parser's unit test)
            self.first_token_at = 0.0
        if self.on_first_token is not None:
            self.on_first_token()

    def emit(self, element: Element) -> None:
        """Send ``element`` to every subscriber as it is (not kept for late ones: text and tool calls go
        through :meth:`text` and :meth:`tool`)."""
        for o in self.observers:
            try:
                o.on_next(element)
            except Exception as exc:  # noqa: BLE001 - a subscriber that raises is dropped, not the call
                self._drop(o, exc)

    def _drop(self, observer: abc.ObserverBase[Element], exc: Exception) -> None:
        self.observers = [o for o in self.observers if o is not observer]
        try:
            observer.on_error(exc)
        except Exception:  # noqa: BLE001 - nothing more can be done for it
            pass


Runner = Callable[..., Coroutine[Any, Any, Any]]


def _noop(*_: Any) -> None:
    pass


def _default_error(error: Exception) -> NoReturn:
    raise error


class _Callbacks:
    """An observer made of the three callbacks given to :meth:`HotStream.subscribe`."""

    __slots__ = ("on_completed", "on_error", "on_next")

    def __init__(
        self,
        on_next: Callable[[Any], None] | None,
        on_error: Callable[[Exception], None] | None,
        on_completed: Callable[[], None] | None,
    ) -> None:
        self.on_next = on_next or _noop
        self.on_error = on_error or _default_error
        self.on_completed = on_completed or _noop


class _Subscription(abc.DisposableBase):
    """One subscriber's hold on a call: ``dispose()`` removes it, and aborts the call if it was the last."""

    __slots__ = ("acc", "observer", "stream")

    def __init__(self, stream: HotStream, acc: StreamAccumulator, observer: abc.ObserverBase[Element]) -> None:
        self.stream: HotStream | None = stream
        self.acc = acc
        self.observer = observer

    def dispose(self) -> None:
        stream, self.stream = self.stream, None
        if stream is None:
            return
        acc, observer = self.acc, self.observer
        if any(o is observer for o in acc.observers):
            acc.observers = [o for o in acc.observers if o is not observer]
        if not acc.observers and acc.final is None:
            # The last subscriber left before the end: abort the request; a
            # new subscriber will start a new call.
            if stream._acc is acc:
                stream._acc = None
            if acc.task is not None and not acc.task.done():
                acc.task.cancel()


class HotStream(Observable[Element]):
    """A hot observable around one provider call run by ``runner(acc)``.

    The runner (called as ``runner(*args, acc)``) must call
    ``acc.finish(response)`` (or raise); what it raises goes to every
    subscriber's ``on_error``. Subscribe on the event loop's thread (as every
    asyncio-driven graph does). It is an Observable itself (not a holder of
    one), so a finished call leaves no reference cycle.

    :meth:`subscribe` is lighter than ``Observable.subscribe`` (which wraps
    every observer in an auto-detaching one, with locks, and goes through the
    trampoline): the accumulator already gives each subscriber at most one
    ``on_completed``/``on_error``, drops one whose ``on_next`` raises, and
    forgets it at the end, which is what that wrapper is for.
    """

    def __init__(self, runner: Runner, provider: str = "", args: tuple[Any, ...] = ()) -> None:
        super().__init__()
        self._runner = runner
        self._args = args
        self._provider = provider
        self._acc: StreamAccumulator | None = None

    def subscribe(
        self,
        on_next: abc.ObserverBase[Element] | Callable[[Element], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_completed: Callable[[], None] | None = None,
        *,
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        if isinstance(on_next, abc.ObserverBase) or callable(getattr(on_next, "on_next", None)):
            observer: Any = on_next
        else:
            observer = _Callbacks(on_next, on_error, on_completed)
        try:
            return self._attach(observer, scheduler)
        except Exception as exc:  # noqa: BLE001 - as Observable.subscribe does: the error goes to on_error
            observer.on_error(exc)
            return Disposable()

    def _subscribe_core(
        self, observer: abc.ObserverBase[Element], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return self._attach(observer, scheduler)

    @property
    def accumulator(self) -> StreamAccumulator | None:
        """The current call's state (None before the first subscriber)."""
        return self._acc

    def _attach(
        self, observer: abc.ObserverBase[Element], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        acc = self._acc
        if acc is None:
            loop = loop_of(scheduler)
            acc = self._acc = StreamAccumulator(self._provider)
            acc.observers = [observer]
            acc.task = loop.create_task(self._drive(acc))
        else:
            acc.replay_to(observer)
            if acc.final is not None:
                return Disposable()
            acc.observers = [*acc.observers, observer]
        return _Subscription(self, acc, observer)

    async def _drive(self, acc: StreamAccumulator) -> None:
        try:
            await self._runner(*self._args, acc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - becomes on_error
            acc.fail(exc)
            return
        if acc.final is None:
            acc.fail(ProviderError(f"{self._provider}: the stream ended without an answer", provider=self._provider))
