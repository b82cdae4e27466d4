"""rxkit.testing: run_virtual records values, times and the subscription; the leak checks catch leaks."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest
import reactivex
import reactivex.operators as ops
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.testing import TestScheduler

from rxkit.errors import RxkitError
from rxkit.testing import LeakError, Snapshot, ano_leaks, no_leaks, run_virtual, snapshot


def test_run_virtual_records_values_times_and_subscription() -> None:
    run = run_virtual(ops.map(lambda x: x * 2), [(1.0, 1), (2.5, 2)], complete_at=3.0)
    assert run.values == [2, 4]
    assert run.times == [1.0, 2.5]
    assert run.timeline() == [(1.0, 2), (2.5, 4)]
    assert run.completed and run.completed_at == 3.0
    assert run.subscription == (0.0, 3.0)
    assert run.error is None


def test_run_virtual_plain_values_arrive_at_zero() -> None:
    run = run_virtual(ops.map(str.upper), ["a", "b"], complete_at=1.0)
    assert run.timeline() == [(0.0, "A"), (0.0, "B")]


def test_run_virtual_time_based_operator() -> None:
    run = run_virtual(ops.delay(0.5), [(1.0, "a")], complete_at=2.0)
    assert run.timeline() == [(1.5, "a")]
    assert run.completed_at == 2.5


def test_run_virtual_error_and_dispose() -> None:
    boom = ValueError("boom")
    run = run_virtual(ops.map(lambda x: x), [(1.0, 1)], error_at=(2.0, boom))
    assert run.error is boom and not run.completed
    assert run.subscription == (0.0, 2.0)
    run = run_virtual(ops.map(lambda x: x), [(1.0, 1), (3.0, 2)], complete_at=4.0, dispose_at=2.0)
    assert run.values == [1] and not run.completed
    assert run.subscription == (0.0, 2.0)


def test_run_virtual_exposes_a_leaked_subscription() -> None:
    def leaky(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            def first(x: Any) -> None:
                observer.on_next(x)
                observer.on_completed()

            source.subscribe(first, scheduler=scheduler)  # the subscription is dropped: a leak
            return Disposable()

        return reactivex.create(subscribe)

    run = run_virtual(leaky, [(1.0, "a"), (2.0, "b")])
    assert run.values == ["a"] and run.completed_at == 1.0
    assert run.subscription == (0.0, None)  # never unsubscribed from its input
    run = run_virtual(leaky, [(1.0, "a"), (2.0, "b")], complete_at=5.0)
    assert run.subscription == (0.0, 5.0)  # held until the input itself ended, long after the output
    assert run_virtual(ops.take(1), [(1.0, "a"), (2.0, "b")], complete_at=5.0).subscription == (0.0, 1.0)


def test_run_virtual_on_a_given_scheduler() -> None:
    sch = TestScheduler()
    run = run_virtual(ops.map(lambda x: x), [(1.0, 1)], complete_at=2.0, until=1.5, scheduler=sch)
    assert run.values == [1] and not run.completed
    assert sch.clock == 1.5


def test_no_leaks_catches_a_leaked_thread() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="leaky-worker")
    try:
        with pytest.raises(LeakError, match="leaky-worker"), no_leaks(grace=0.1):
            thread.start()
    finally:
        release.set()
        thread.join()


def test_no_leaks_waits_for_a_thread_that_is_winding_down() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    with no_leaks(grace=2.0):
        thread.start()
        threading.Timer(0.05, release.set).start()
    thread.join()


def test_no_leaks_catches_a_leaked_subprocess() -> None:
    proc = None
    try:
        with pytest.raises(LeakError, match="subprocesses still running"), no_leaks(grace=0.1):
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    with no_leaks(grace=2.0):  # a subprocess that was waited for is no leak
        subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_no_leaks_catches_an_open_socket() -> None:
    sock = socket.socket()
    try:
        with pytest.raises(LeakError, match="sockets still open"), no_leaks(grace=0.1):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
    finally:
        sock.close()


def test_no_leaks_can_count_file_descriptors(tmp_path: Any) -> None:
    f = None
    try:
        with pytest.raises(LeakError, match="file descriptor"), no_leaks(grace=0.1, check_fds=True):
            f = open(tmp_path / "x", "w")  # noqa: SIM115 - the point is that it stays open
    finally:
        if f is not None:
            f.close()


async def test_ano_leaks_catches_a_pending_task() -> None:
    task = None
    try:
        with pytest.raises(LeakError, match="1 asyncio task"):
            async with ano_leaks(grace=0.1):
                task = asyncio.ensure_future(asyncio.sleep(30))
    finally:
        assert task is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_ano_leaks_lets_a_cancelled_task_finish() -> None:
    async with ano_leaks(grace=1.0):
        task = asyncio.ensure_future(asyncio.sleep(30))
        await asyncio.sleep(0)
        task.cancel()  # done on the next loop turn, within the grace period


def test_snapshot_and_leak_error_types() -> None:
    assert isinstance(snapshot(), Snapshot)
    assert issubclass(LeakError, RxkitError) and issubclass(LeakError, AssertionError)
