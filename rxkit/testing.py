"""Helpers for testing graphs and operators, yours included.

Run an operator on virtual time and see what came out, and when::

    from rxkit.testing import run_virtual
    result = run_virtual(my_operator, [(0.1, "a"), (0.2, "b")], complete_at=0.3)
    assert result.values == ["A", "B"]
    assert result.subscription == (0.0, 0.3)

Check that nothing leaked (tasks, threads, sockets, subprocesses)::

    with no_leaks():
        graph.run(["hi"])
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.testing import TestScheduler

from rxkit.errors import RxkitError

__all__ = ["LeakError", "Snapshot", "VirtualRun", "ano_leaks", "no_leaks", "run_virtual", "snapshot"]


@dataclass
class VirtualRun:
    """What an operator emitted on virtual time (times in seconds)."""

    values: list[Any] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    error: Exception | None = None
    completed_at: float | None = None
    subscription: tuple[float, float | None] = (0.0, None)

    @property
    def completed(self) -> bool:
        return self.completed_at is not None

    def timeline(self) -> list[tuple[float, Any]]:
        return list(zip(self.times, self.values, strict=True))


def run_virtual(
    operator: Callable[[Observable[Any]], Observable[Any]],
    events: Sequence[tuple[float, Any]] | Sequence[Any] = (),
    *,
    complete_at: float | None = None,
    error_at: tuple[float, Exception] | None = None,
    dispose_at: float | None = None,
    until: float = 1_000.0,
    scheduler: TestScheduler | None = None,
) -> VirtualRun:
    """Feed ``events`` (``(time, value)`` pairs, or plain values all at time 0)
    through ``operator`` on a :class:`TestScheduler` and record the output.

    ``subscription`` is when the operator's subscription to its input began and
    ended (``None``: never ended, which is a leak once the output finished).
    """
    sch = scheduler or TestScheduler()
    timed = [e if isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], (int, float)) else (0.0, e) for e in events]
    run = VirtualRun()
    span: list[float | None] = [None, None]

    def source_subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
        span[0] = sch.clock

        def emit(value: Any) -> Callable[..., None]:
            return lambda *_: observer.on_next(value)

        disposables = [sch.schedule_absolute(t, emit(v)) for t, v in timed]
        if complete_at is not None:
            disposables.append(sch.schedule_absolute(complete_at, lambda *_: observer.on_completed()))
        if error_at is not None:
            disposables.append(sch.schedule_absolute(error_at[0], lambda *_: observer.on_error(error_at[1])))

        def end() -> None:
            span[1] = sch.clock
            for d in disposables:
                d.dispose()

        return Disposable(end)

    source = reactivex.create(source_subscribe)

    def on_next(v: Any) -> None:
        run.values.append(v)
        run.times.append(sch.clock)

    def on_error(e: Exception) -> None:
        run.error = e
        run.completed_at = None

    def on_completed() -> None:
        run.completed_at = sch.clock

    sub = operator(source).subscribe(on_next, on_error, on_completed, scheduler=sch)
    if dispose_at is not None:
        sch.schedule_absolute(dispose_at, lambda *_: sub.dispose())
    sch.advance_to(until)
    run.subscription = (span[0] if span[0] is not None else -1.0, span[1])
    return run


class LeakError(RxkitError, AssertionError):
    """Something a graph started is still running after it finished."""


@dataclass(frozen=True)
class Snapshot:
    threads: frozenset[int]
    tasks: frozenset[int]
    fds: int
    sockets: frozenset[tuple[Any, ...]]
    children: frozenset[int]


def snapshot(loop: asyncio.AbstractEventLoop | None = None) -> Snapshot:
    """What this process has open now."""
    import psutil

    proc = psutil.Process()
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
    tasks = frozenset(id(t) for t in asyncio.all_tasks(loop)) if loop is not None else frozenset()
    current = asyncio.current_task(loop) if loop is not None else None
    if current is not None:
        tasks = tasks - {id(current)}
    socks = frozenset(
        (c.fd, c.laddr, c.raddr, c.status) for c in proc.net_connections(kind="inet") if c.status != "TIME_WAIT"
    )
    return Snapshot(
        threads=frozenset(t.ident or 0 for t in threading.enumerate() if t.is_alive()),
        tasks=tasks,
        fds=proc.num_fds() if os.name == "posix" else 0,
        sockets=socks,
        children=frozenset(p.pid for p in proc.children(recursive=True) if _alive(p)),
    )


def _alive(child: Any) -> bool:
    import psutil

    try:
        return bool(child.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:  # it exited between listing and asking
        return False


def _diff(before: Snapshot, after: Snapshot, check_fds: bool) -> list[str]:
    problems = []
    new_threads = after.threads - before.threads
    if new_threads:
        names = [t.name for t in threading.enumerate() if t.ident in new_threads]
        problems.append(f"threads still running: {names}")
    if after.tasks - before.tasks:
        problems.append(f"{len(after.tasks - before.tasks)} asyncio task(s) still pending")
    if after.sockets - before.sockets:
        problems.append(f"sockets still open: {sorted(map(str, after.sockets - before.sockets))}")
    if after.children - before.children:
        problems.append(f"subprocesses still running: {sorted(after.children - before.children)}")
    if check_fds and after.fds > before.fds:
        problems.append(f"{after.fds - before.fds} file descriptor(s) more than before")
    return problems


@contextmanager
def no_leaks(grace: float = 2.0, *, check_fds: bool = False) -> Iterator[None]:
    """Fail with :class:`LeakError` if the block leaves threads, sockets or subprocesses behind.

    For asyncio tasks use :func:`ano_leaks` inside the loop. Things are given
    ``grace`` seconds to wind down before they count as leaked.
    """
    before = snapshot()
    yield
    deadline = time.monotonic() + grace
    while True:
        problems = _diff(before, snapshot(), check_fds)
        if not problems:
            return
        if time.monotonic() > deadline:
            raise LeakError("; ".join(problems))
        time.sleep(0.02)


class ano_leaks:
    """Async form of :func:`no_leaks` that also checks asyncio tasks on the running loop."""

    def __init__(self, grace: float = 2.0, *, check_fds: bool = False) -> None:
        self.grace = grace
        self.check_fds = check_fds

    async def __aenter__(self) -> None:
        self.before = snapshot()

    async def __aexit__(self, *exc: object) -> None:
        deadline = time.monotonic() + self.grace
        while True:
            problems = _diff(self.before, snapshot(), self.check_fds)
            if not problems:
                return
            if time.monotonic() > deadline:
                raise LeakError("; ".join(problems))
            await asyncio.sleep(0.02)
