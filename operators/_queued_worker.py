"""Shared plumbing of the stages that work through their input in a task on the loop (transcribe, synthesize).

Upstream callbacks queue elements in ``items`` (each stage bounds it its own way,
with ``maxlen`` as a backstop); a pump task works through them; ``fail``,
``cancel`` and ``emit`` are the same everywhere.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from reactivex import abc

__all__ = ["QueuedWorker"]


class QueuedWorker:
    """Holds the queue, the wake-up event and the pump task of one subscription."""

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
