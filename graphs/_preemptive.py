"""Preemptive replies: the voice assistant starts answering at a pause, before the turn is confirmed.

LiveKit Agents' ``preemptive_generation``: at a :class:`~rxkit.elements.TentativeEnd`
the assistant starts the reply (model call and all), but holds back what it
sends, its tool calls and its save, until the turn is confirmed with the same
transcript; then what was held goes out at once. If the user speaks on, or
the final transcript differs, the reply is dropped through the usual cancel
path (the model call cancelled, no tool run, nothing played or saved).

:class:`Preemption` is the gate shared by one assistant stage, its text
graph's store (:class:`HeldStore`) and its tool loop (``hold_tools``);
:class:`HeldReply` is the reply it holds. Everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from reactivex import abc
from reactivex.disposable import SerialDisposable

from rxkit.state.base import StateStore
from rxkit.types import Message

__all__ = ["MAX_HELD", "HeldReply", "HeldStore", "Preemption"]

MAX_HELD = 4_096
"""Elements a held reply may send before it is confirmed (a spoken reply is a few hundred); past that it is
dropped, and the turn is answered afresh once confirmed."""


class HeldReply:
    """A reply started before its turn was confirmed; what it sends waits here until :meth:`release`."""

    def __init__(self, message: Message, turn: int, preemption: Preemption) -> None:
        self.message = message
        self.turn = turn  # the number the floor will give the turn if it is confirmed
        self.preemption = preemption
        self.started = time.monotonic()
        self.marks: dict[str, float] = {}  # the floor's steps it took while held (message_in, first_token)
        self.released = False
        self.over = False  # released, or dropped
        self.waiting: deque[Any] = deque()  # bounded: past MAX_HELD elements _Holding drops the reply
        self.completed = False
        self.observer: abc.ObserverBase[Any] | None = None
        self.inner = SerialDisposable()
        self.gate: asyncio.Future[None] | None = None  # what its tool calls and its save wait on

    @property
    def text(self) -> str:
        return self.message.text

    def wrap(self, observer: abc.ObserverBase[Any]) -> abc.ObserverBase[Any]:
        """The observer the reply sends to: it holds everything until released."""
        self.observer = observer
        return _Holding(self)

    def release(self) -> None:
        """The turn is confirmed: send what waited, and let the rest through."""
        if self.over:
            return
        self.released = self.over = True
        if self.gate is not None and not self.gate.done():
            self.gate.set_result(None)
        observer, waiting = self.observer, self.waiting
        self.waiting = deque()
        if observer is None:
            return
        while waiting:
            observer.on_next(waiting.popleft())
        if self.completed:
            observer.on_completed()

    def drop(self) -> None:
        """Not this turn after all: cancel the reply (model call, tools, save) and end it with nothing sent."""
        if self.over:
            return
        self.over = True
        self.inner.dispose()  # first: its tasks are cancelled before the gate they may wait on
        if self.gate is not None and not self.gate.done():
            self.gate.cancel()
        self.waiting.clear()
        if self.observer is not None:
            self.observer.on_completed()  # the turn machine moves on (a turn it cancelled itself ignores it)

    async def wait(self) -> None:
        if self.released:
            return
        if self.over:
            raise asyncio.CancelledError  # dropped: nothing it still does may have an effect
        if self.gate is None:
            self.gate = asyncio.get_running_loop().create_future()
        await self.gate


class _Holding(abc.ObserverBase[Any]):
    """A held reply's elements, kept until it is released (bounded: MAX_HELD), then passed straight on."""

    def __init__(self, held: HeldReply) -> None:
        self.held = held

    def on_next(self, value: Any) -> None:
        held = self.held
        if held.released:
            assert held.observer is not None
            held.observer.on_next(value)
        elif not held.over:
            if len(held.waiting) >= MAX_HELD:
                held.preemption.drop("overflow")
                return
            held.waiting.append(value)

    def on_error(self, error: Exception) -> None:
        held = self.held
        if held.observer is not None and (held.released or not held.over):
            held.over = True
            held.observer.on_error(error)  # not a turn error (those come in-band): the stream fails either way

    def on_completed(self) -> None:
        held = self.held
        if held.released:
            assert held.observer is not None
            held.observer.on_completed()
        elif not held.over:
            held.completed = True  # the answer is all here: it goes out when released


class Preemption:
    """The gate of one assistant stage's preemptive replies: at most one held at a time.

    ``on_over(text, used, reason, held_s)`` is told each held reply's fate
    (:meth:`~rxkit.floor.Floor.preemptive_over`).
    """

    def __init__(self) -> None:
        self.held: HeldReply | None = None
        self.on_over: Callable[[str, bool, str, float], None] | None = None

    def hold(self, message: Message, turn: int) -> HeldReply:
        held = self.held = HeldReply(message, turn, self)
        return held

    def release(self) -> HeldReply | None:
        """Let the held reply out (the turn is confirmed with its transcript); returns it."""
        held, self.held = self.held, None
        if held is not None:
            self._over(held, True, "confirmed")
            held.release()
        return held

    def drop(self, reason: str) -> None:
        """Throw the held reply away, if there is one (``reason``: see PreemptiveReply)."""
        held, self.held = self.held, None
        if held is not None:
            self._over(held, False, reason)
            held.drop()

    async def wait(self) -> None:
        """Return once the reply running now may act (tool calls, its save): at once unless it is held."""
        held = self.held
        if held is not None:
            await held.wait()

    def _over(self, held: HeldReply, used: bool, reason: str) -> None:
        if self.on_over is not None:
            self.on_over(held.text, used, reason, time.monotonic() - held.started)


class HeldStore:
    """``store``, whose saves wait while the reply running is held (a dropped one's save never happens)."""

    def __init__(self, store: StateStore, preemption: Preemption) -> None:
        self.store = store
        self.preemption = preemption

    async def load(self, session: str) -> list[Message]:
        return await self.store.load(session)

    async def append_turn(self, session: str, messages: list[Message], *, expected_length: int | None = None) -> int:
        await self.preemption.wait()
        return await self.store.append_turn(session, messages, expected_length=expected_length)

    async def replace_last(self, session: str, message: Message, *, expected_length: int) -> None:
        await self.preemption.wait()
        await self.store.replace_last(session, message, expected_length=expected_length)

    async def metadata(self, session: str) -> dict[str, Any]:
        return await self.store.metadata(session)

    async def set_metadata(self, session: str, values: dict[str, Any]) -> None:
        await self.store.set_metadata(session, values)

    async def delete(self, session: str) -> None:
        await self.store.delete(session)

    async def sessions(self) -> list[str]:
        return await self.store.sessions()

    async def aclose(self) -> None:
        await self.store.aclose()

    def __repr__(self) -> str:
        return f"HeldStore({self.store!r})"
