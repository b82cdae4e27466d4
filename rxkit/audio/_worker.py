"""One named thread that runs an engine's jobs in order (STT and TTS engines own one each).

Speech engines are not thread-safe and their calls block for milliseconds to
seconds, so every call on an engine goes through its own worker: the event
loop never blocks, and the engine is only ever touched by one thread.

>>> w = Worker("demo")
>>> w.submit(sum, [1, 2]).result()
3
>>> w.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from rxkit.errors import AudioError, BufferOverflowError

__all__ = ["Worker"]

_T = TypeVar("_T")
_STOP = object()


class Worker:
    """A single thread with a bounded job queue; :meth:`close` stops and joins it."""

    def __init__(self, name: str, maxsize: int = 64) -> None:
        self.name = name
        # Bounded: the operators keep at most a job or two in flight; more is a bug.
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize)
        self._closed = False
        self._lock = threading.Lock()  # guards start/close only, never a job
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., _T], *args: Any) -> concurrent.futures.Future[_T]:
        """Queue ``fn(*args)`` on the worker thread; returns its future."""
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise AudioError(f"{self.name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            try:
                self._jobs.put_nowait((future, fn, args))
            except queue.Full:
                raise BufferOverflowError(f"{self.name}: more than {self._jobs.maxsize} jobs queued") from None
        return future

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the worker and await it; cancelling drops it if it has not started."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the worker and block until it is done (for scripts and setup)."""
        return self.submit(fn, *args).result()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Let queued jobs finish, then stop the thread and join it. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self._jobs.put(_STOP, timeout=timeout)
        if thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
            else:
                future.set_result(result)
