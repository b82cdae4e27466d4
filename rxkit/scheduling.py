"""Time and threads: schedulers, asyncio bridges, thread-safe hand-off.

Production graphs run on the running asyncio loop (which is also how they
work inside Jupyter, whose loop is already running); tests pass a
``reactivex.testing.TestScheduler`` for virtual time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .errors import GraphError

__all__ = ["from_async_iterable", "loop_of", "resolve_scheduler"]

_T = TypeVar("_T")


def loop_of(scheduler: abc.SchedulerBase | None) -> asyncio.AbstractEventLoop:
    """The asyncio loop behind ``scheduler``, else the running loop."""
    loop = getattr(scheduler, "_loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop):
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise GraphError(
            "this stage needs a running asyncio event loop: run the graph with "
            "graph.run(...) or `async for x in graph.astream(...)`, or pass an AsyncIOScheduler"
        ) from None


def resolve_scheduler(
    scheduler: abc.SchedulerBase | None, subscribe_scheduler: abc.SchedulerBase | None
) -> abc.SchedulerBase:
    """Pick the scheduler a time-based operator uses.

    The operator's own argument wins, then the scheduler given at subscribe
    time, then an :class:`AsyncIOScheduler` on the running loop.
    """
    if scheduler is not None:
        return scheduler
    if subscribe_scheduler is not None:
        return subscribe_scheduler
    return AsyncIOScheduler(loop_of(None))


def from_async_iterable(factory: Callable[[], AsyncIterator[_T]]) -> Observable[_T]:
    """A cold observable that runs ``factory()`` as a task on the loop for each subscriber.

    Disposing the subscription cancels the task, which runs the generator's
    ``finally`` blocks (closing sockets, stopping processes).
    """

    def subscribe(observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        loop = loop_of(scheduler)

        async def pump() -> None:
            agen = factory()
            try:
                async for item in agen:
                    observer.on_next(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - becomes on_error
                observer.on_error(exc)
                return
            finally:
                aclose = getattr(agen, "aclose", None)
                if aclose is not None:
                    await aclose()
            observer.on_completed()

        task = loop.create_task(pump())

        def cancel() -> None:
            if not task.done():
                if _on_loop_thread(loop):
                    task.cancel()
                else:
                    loop.call_soon_threadsafe(task.cancel)

        return Disposable(cancel)

    return reactivex.create(subscribe)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def call_threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop``'s thread (used by PortAudio callbacks)."""
    if not loop.is_closed():
        loop.call_soon_threadsafe(fn, *args)
