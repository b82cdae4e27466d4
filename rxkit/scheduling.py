"""Time and threads: schedulers, asyncio bridges, thread-safe hand-off.

Production graphs run on the running asyncio loop (which is also how they
work inside Jupyter, whose loop is already running); tests pass a
``reactivex.testing.TestScheduler`` for virtual time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxkit.buffering import current_backpressure
from rxkit.errors import GraphError

__all__ = [
    "QueuedWorker",
    "call_threadsafe",
    "from_async_iterable",
    "from_iterable_paced",
    "close_when_loop_ends",
    "loop_of",
    "resolve_scheduler",
    "run_blocking",
]

_T = TypeVar("_T")
_UNWIND_S = 10.0  # how long an interrupted run_blocking waits for the cancelled work to unwind


def loop_of(scheduler: abc.SchedulerBase | None) -> asyncio.AbstractEventLoop:
    """The asyncio loop behind ``scheduler``, else the running loop."""
    if isinstance(scheduler, AsyncIOScheduler):
        # reactivex has no public accessor for the loop; pinned by tests/test_dependency_internals.py.
        loop = getattr(scheduler, "_loop", None)  # a reactivex that renamed it: fall back to the running loop
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
    ``finally`` blocks (closing sockets, stopping processes). Subscribed under
    a backpressure gate (:func:`rxkit.buffering.backpressure`, as the ``wait``
    policy of ``bounded_buffer`` and ``Graph.astream`` do), it stops pulling
    from the generator while the gate's buffer is full.

    >>> async def numbers():
    ...     yield 1
    >>> source = from_async_iterable(numbers)
    """

    def subscribe(observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        loop = loop_of(scheduler)
        gate = current_backpressure()

        async def pump() -> None:
            try:
                agen = factory()
            except Exception as exc:  # noqa: BLE001 - becomes on_error
                observer.on_error(exc)
                return
            try:
                anext_ = agen.__anext__
                while True:
                    if gate is not None and gate.full:
                        await gate.wait_for_room()  # the producer itself waits: nothing is pulled meanwhile
                    try:
                        item = await anext_()
                    except StopAsyncIteration:
                        break
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

        return _start(loop, pump())

    return reactivex.create(subscribe)


def from_iterable_paced(iterable: Iterable[_T]) -> Observable[_T]:
    """Emit a plain iterable from a task on the loop, pausing while the backpressure gate is full.

    Unlike ``reactivex.from_iterable``, a long list fed to a graph whose
    output buffer waits (``Graph.astream(overflow="wait")``, the default)
    never overflows it: the task yields to the consumer whenever the buffer
    is full. Disposing the subscription cancels the task.
    """

    def subscribe(observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        loop = loop_of(scheduler)
        gate = current_backpressure()

        async def pump() -> None:
            try:
                for item in iterable:
                    if gate is not None and gate.full:
                        await gate.wait_for_room()
                    observer.on_next(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - becomes on_error
                observer.on_error(exc)
                return
            observer.on_completed()

        return _start(loop, pump())

    return reactivex.create(subscribe)


def _start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> abc.DisposableBase:
    """Run ``coro`` as a task; the returned disposable cancels it (from any thread)."""
    task = loop.create_task(coro)

    def cancel() -> None:
        if not task.done():
            if _on_loop_thread(loop):
                task.cancel()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)

    return Disposable(cancel)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def run_blocking(coro_factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``coro_factory()`` to completion and return its result, from sync code.

    Without a running loop it uses :func:`asyncio.run`; inside one (Jupyter,
    an async app) it runs on a fresh loop in a worker thread so the caller can block.
    An interrupt of the waiting caller (Ctrl-C, Jupyter's interrupt button: a
    KeyboardInterrupt in this thread) cancels the work on that loop, waits for
    it to unwind, and is raised: nothing keeps running behind the caller.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    started: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = (
        concurrent.futures.Future()
    )

    async def main() -> _T:
        task = asyncio.current_task()
        assert task is not None
        started.set_result((asyncio.get_running_loop(), task))
        return await coro_factory()

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rxkit-blocking")
    stuck = False  # the cancelled work did not unwind in time: do not wait for its thread
    try:
        done = pool.submit(asyncio.run, main())
        try:
            return done.result()
        except BaseException:
            if not done.done() and started.done():  # interrupted while waiting: stop the work too
                loop, task = started.result()
                with contextlib.suppress(RuntimeError):  # its loop has just ended
                    loop.call_soon_threadsafe(task.cancel)
                try:
                    done.result(timeout=_UNWIND_S)
                except concurrent.futures.TimeoutError:
                    stuck = True
                except BaseException:  # noqa: BLE001 - its cancellation (or error): the interrupt is what is raised
                    pass
            raise
    finally:
        pool.shutdown(wait=not stuck)


def call_threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop``'s thread (used by PortAudio callbacks)."""
    if not loop.is_closed():
        loop.call_soon_threadsafe(fn, *args)


def close_when_loop_ends(close: Callable[[], Coroutine[Any, Any, Any]]) -> AsyncGenerator[None, None]:
    """Run ``close()`` on the running loop when ``asyncio.run`` (or ``asyncio.Runner``) shuts it down.

    Returns an async generator, already started, whose ``finally`` awaits ``close()``: the runner
    closes every started async generator before it closes the loop. Keep the returned object (the
    loop holds it weakly); drop it once closed by other means. For resources bound to one loop (pooled
    sockets) used from blocking calls, each of which runs its own loop.
    """

    async def closer() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await close()

    gen = closer()
    step = gen.__anext__()  # runs to the yield at once: nothing before it waits
    try:
        step.send(None)
    except StopIteration:
        pass
    return gen


class QueuedWorker:
    """The queue, wake-up event and pump task of a stage that works through its input on the loop.

    Shared by the stages that do so (transcribe, synthesize): upstream
    callbacks queue elements in ``items`` (each stage bounds it its own way,
    with ``maxlen`` as a backstop); a subclass's ``pump`` task works through
    them; ``fail``, ``cancel`` and ``emit`` are the same everywhere.
    """

    items: deque[Any]
    completed: bool
    stopped: bool
    task: asyncio.Task[None]

    def __init__(self, observer: abc.ObserverBase[Any], loop: asyncio.AbstractEventLoop, maxlen: int) -> None:
        self.observer = observer
        self.items: deque[Any] = deque(maxlen=maxlen)  # the stage checks its own bound before appending
        self.completed = False
        self.stopped = False
        self.wake = asyncio.Event()
        self.loop = loop

    def start(self) -> None:
        self.task = self.loop.create_task(self.pump())

    async def pump(self) -> None:
        raise NotImplementedError

    def on_error(self, error: Exception) -> None:
        self.fail(error)

    def on_completed(self) -> None:
        self.completed = True
        self.wake.set()

    def fail(self, error: Exception) -> None:
        if not self.stopped:
            self.cancel()
            self.observer.on_error(error)

    def cancel(self) -> None:
        self.stopped = True
        self.items.clear()
        self.task.cancel()

    def emit(self, x: Any) -> None:
        if not self.stopped:  # a downstream that disposes while we emit hears nothing more
            self.observer.on_next(x)
