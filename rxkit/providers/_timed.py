"""A hot provider stream that plays timed steps: the engine of the mock and replay providers.

Unlike a provider call over HTTP, nothing here needs an event loop unless a
step waits: steps with zero delay are emitted synchronously on subscribe,
and waits use a scheduler, so tests run on virtual time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxkit.elements import Element, EndOfTurn, TextDelta, ToolCallElement
from rxkit.providers.base import BaseProvider
from rxkit.scheduling import resolve_scheduler
from rxkit.telemetry.events import ProviderCallCompleted, ProviderCallFailed, ProviderCallStarted, ProviderFirstToken

__all__ = ["Step", "TimedStream"]

Step = tuple[float, Element | Exception]
"""A delay in seconds, then what to emit (an exception fails the stream)."""


class TimedStream(Observable[Element]):
    """A hot provider stream that plays timed steps once for all its subscribers.

    The first subscription starts the call (``begin()`` returns the steps);
    later subscribers first get what was already emitted (the text so far as
    one :class:`TextDelta`, then the other elements) and then follow live.
    When the last subscriber leaves before the end, the call is cancelled; a
    new subscriber then starts it again. Steps with zero delay are emitted
    synchronously; waits use the provider's scheduler, else the one given at
    subscribe time, else the running asyncio loop. Publishes the provider
    call events on ``provider.bus``.
    """

    _ids = itertools.count(1)

    def __init__(
        self, provider: BaseProvider, begin: Callable[[], list[Step]], *, scheduler: abc.SchedulerBase | None = None
    ) -> None:
        super().__init__()
        self.provider = provider
        self._begin = begin
        self._scheduler_arg = scheduler
        self._observers: tuple[abc.ObserverBase[Element], ...] = ()
        self._running = False
        self._done = False
        self._reset()

    def _reset(self) -> None:
        self._text: list[str] = []
        self._others: list[Element] = []
        self._error: Exception | None = None
        self._steps: list[Step] = []
        self._index = 0
        self._pending: abc.DisposableBase | None = None
        self._scheduler: abc.SchedulerBase | None = None
        self._t0 = 0.0
        self._ttft: float | None = None
        self._call_id = ""

    def _subscribe_core(
        self, observer: abc.ObserverBase[Element], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        if self._done or self._running:
            self._catch_up(observer)
            if self._done:
                return Disposable()
            self._observers = (*self._observers, observer)
            return Disposable(lambda: self._leave(observer))
        self._observers = (observer,)
        self._start(scheduler)
        return Disposable(lambda: self._leave(observer))

    def _catch_up(self, observer: abc.ObserverBase[Element]) -> None:
        if self._text:
            observer.on_next(TextDelta("".join(self._text)))
        for element in self._others:
            observer.on_next(element)
        if self._done:
            if self._error is not None:
                observer.on_error(self._error)
            else:
                observer.on_completed()

    def _leave(self, observer: abc.ObserverBase[Element]) -> None:
        self._observers = tuple(o for o in self._observers if o is not observer)
        if not self._observers and self._running:
            self._running = False  # cancelled: nothing more is emitted, a new subscriber restarts
            if self._pending is not None:
                self._pending.dispose()
            self._reset()

    def _start(self, subscribe_scheduler: abc.SchedulerBase | None) -> None:
        self._reset()
        self._running = True
        self._call_id = f"{self.provider.name}-{next(self._ids)}"
        self.provider.bus.publish(
            ProviderCallStarted(provider=self.provider.name, model=self.provider.model, call_id=self._call_id)
        )
        try:
            self._steps = self._begin()
            if any(delay > 0 for delay, _ in self._steps):
                self._scheduler = resolve_scheduler(self._scheduler_arg, subscribe_scheduler)
        except Exception as exc:  # noqa: BLE001 - becomes on_error
            self._steps = [(0.0, exc)]
        self._t0 = self._clock()
        self._advance(waited=False)

    def _clock(self) -> float:
        if self._scheduler is not None:
            return self._scheduler.now.timestamp()
        return time.monotonic()

    def _tick(self, call_id: str) -> Callable[..., None]:
        def action(*_: Any) -> None:
            if self._running and call_id == self._call_id:  # a tick of a cancelled call is stale
                self._pending = None
                self._advance(waited=True)

        return action

    def _advance(self, waited: bool) -> None:
        steps = self._steps
        while self._running and self._index < len(steps):
            delay, item = steps[self._index]
            if delay > 0 and not waited:
                assert self._scheduler is not None
                self._pending = self._scheduler.schedule_relative(delay, self._tick(self._call_id))
                return
            waited = False
            self._index += 1
            self._emit(item)
        if self._running:  # steps ran out without an EndOfTurn
            self._finish(None)

    def _emit(self, item: Element | Exception) -> None:
        if isinstance(item, Exception):
            self._fail(item)
            return
        if isinstance(item, EndOfTurn):
            self._finish(item)
            return
        if type(item) is TextDelta:
            self._text.append(item.text)
        else:
            self._others.append(item)
        if self._ttft is None and isinstance(item, (TextDelta, ToolCallElement)):
            self._ttft = self._clock() - self._t0
            self.provider.bus.publish(
                ProviderFirstToken(
                    provider=self.provider.name, model=self.provider.model, call_id=self._call_id, ttft_s=self._ttft
                )
            )
        for observer in self._observers:
            observer.on_next(item)

    def _finish(self, end: EndOfTurn | None) -> None:
        elapsed = self._clock() - self._t0
        if end is not None and end.response is not None:
            response = end.response
            if response.latency_s is None:
                response = response.model_copy(update={"latency_s": elapsed, "ttft_s": self._ttft})
                end = EndOfTurn(response, end.turn)
            usage = response.usage
            self.provider.bus.publish(
                ProviderCallCompleted(
                    provider=self.provider.name,
                    model=response.model or self.provider.model,
                    call_id=self._call_id,
                    duration_s=elapsed,
                    ttft_s=self._ttft,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    cost=response.cost.total if response.cost is not None else None,
                    cost_estimated=response.usage.estimated,
                )
            )
        observers = self._observers
        self._running, self._done, self._observers = False, True, ()
        if end is not None:
            self._others.append(end)
            for observer in observers:
                observer.on_next(end)
        for observer in observers:
            observer.on_completed()

    def _fail(self, error: Exception) -> None:
        self.provider.bus.publish(
            ProviderCallFailed(
                provider=self.provider.name,
                model=self.provider.model,
                call_id=self._call_id,
                error=str(error),
                error_type=type(error).__name__,
                duration_s=self._clock() - self._t0,
            )
        )
        observers = self._observers
        self._running, self._done, self._observers, self._error = False, True, (), error
        for observer in observers:
            observer.on_error(error)
