"""Running any observable: ``astream`` (``async for``), ``arun`` (await every output) and ``run`` (blocking).

:class:`~rxkit.graph.Graph` runs by these; they take any observable (or
what :func:`as_observable` turns into one), so nothing needs a graph to be run.

>>> import reactivex, reactivex.operators as ops
>>> run(reactivex.of(1, 2, 3).pipe(ops.map(lambda x: x * 10)))
[10, 20, 30]
>>> run(["a", "b"], through=ops.map(str.upper))
['A', 'B']
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import reactivex
from reactivex import Observable
from reactivex.disposable import SingleAssignmentDisposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxkit.buffering import BoundedBuffer, OverflowPolicy, backpressure
from rxkit.errors import RxkitError
from rxkit.scheduling import from_async_iterable, from_iterable_paced, run_blocking

__all__ = ["arun", "as_observable", "astream", "run"]

Through = Callable[[Observable[Any]], Observable[Any]]  # an operator, a stage or a graph

_UNBOUNDED = 1 << 60  # arun() keeps every output: its buffer never makes a producer wait or fail


def as_observable(inputs: Any) -> Observable[Any]:
    """Turn inputs into an observable: an Observable, an iterable, an async iterable, or None (empty)."""
    if inputs is None:
        return reactivex.empty()
    if isinstance(inputs, Observable):
        return inputs
    if isinstance(inputs, (str, bytes)):
        return reactivex.of(inputs)
    if isinstance(inputs, AsyncIterable):
        return from_async_iterable(lambda: aiter(inputs))
    if isinstance(inputs, Iterable):
        return reactivex.from_iterable(inputs)
    return reactivex.of(inputs)


async def astream(
    source: Any = None,
    *,
    through: Through | None = None,
    maxsize: int = 65_536,
    overflow: OverflowPolicy | str = OverflowPolicy.WAIT,
) -> AsyncIterator[Any]:
    """Iterate an observable's output with ``async for``, on the running loop.

    ``source`` is an observable or anything :func:`as_observable` takes;
    ``through`` an operator (a stage, a graph) to run it through. Give the
    operator here rather than applying it first when ``source`` is a plain
    iterable: under ``wait`` the iterable is then paced by the buffer.

    Output waits in a :class:`~rxkit.buffering.BoundedBuffer` (``maxsize``,
    ``overflow`` policy) until the consumer takes it, by the same rules as
    the ``bounded_buffer`` operator. With ``wait`` (the default) the
    producers wait: plain and async iterables given as ``source``, and
    sources built with :func:`rxkit.scheduling.from_async_iterable`, pause
    while the buffer is full, so a slow consumer keeps memory flat; a push
    source that cannot pause fails with ``BufferOverflowError`` instead.
    ``drop_oldest``/``drop_newest`` drop data (never controls) and count
    them; ``error`` fails with ``BufferOverflowError``. Leaving the loop
    early disposes the subscription, which cancels everything it started.

    >>> async def main():
    ...     async for x in astream(["a", "b"], through=ops.map(str.upper)):
    ...         print(x)
    """
    loop = asyncio.get_running_loop()
    buffer: BoundedBuffer[Any] = BoundedBuffer(maxsize, overflow)
    waits = buffer.policy is OverflowPolicy.WAIT
    done: list[BaseException | None] = []
    wake = asyncio.Event()
    upstream = SingleAssignmentDisposable()

    def on_next(x: Any) -> None:
        if done:
            return
        try:
            buffer.offer(x)
        except RxkitError as exc:
            done.append(exc)
            upstream.dispose()
        wake.set()

    def on_error(exc: Exception) -> None:
        if not done:
            done.append(exc)
        wake.set()

    def on_completed() -> None:
        if not done:
            done.append(None)
        wake.set()

    if waits and isinstance(source, Iterable) and not isinstance(source, (str, bytes, Observable)):
        observable = from_iterable_paced(source)
    else:
        observable = as_observable(source)
    if through is not None:
        observable = through(observable)
    with backpressure(buffer if waits else None):
        upstream.disposable = observable.subscribe(on_next, on_error, on_completed, scheduler=AsyncIOScheduler(loop))
    try:
        while True:
            ok, item = buffer.poll()
            if ok:
                yield item
                continue
            if done:
                if done[0] is not None:
                    raise done[0]
                return
            wake.clear()
            await wake.wait()
    finally:
        upstream.dispose()


async def arun(source: Any = None, *, through: Through | None = None) -> list[Any]:
    """Run to completion on the running loop and return every output.

    Everything is kept anyway, so nothing is bounded here: a push source or a one-to-many stage
    may produce any number of elements (``astream``'s buffer would fail past its ``maxsize``)."""
    return [x async for x in astream(source, through=through, maxsize=_UNBOUNDED)]


def run(source: Any = None, *, through: Through | None = None, timeout: float | None = None) -> list[Any]:
    """Blocking run for scripts: returns every output, raises the stream's error.

    Inside a running event loop (Jupyter), it runs on a fresh loop in a
    worker thread so that this call can block.
    """
    return run_blocking(lambda: asyncio.wait_for(arun(source, through=through), timeout))
