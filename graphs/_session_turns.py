"""Turns of one session, one at a time and in order, whoever starts them.

Every :class:`~rxkit.graphs.Conversation` on the same store and session
shares one :class:`SessionTurns` (see :func:`session_turns`), so concurrent
turns queue instead of failing with "changed while the turn ran", also when
they come from several Conversation objects, threads (blocking ``ask``) or
event loops. A waiting turn is started on its own event loop. This is a
queue of whole turns (a lock taken once per turn, never per element).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any

from rxkit.buffering import BoundedBuffer, OverflowPolicy

__all__ = ["SessionTurns", "session_turns"]


class SessionTurns:
    """A FIFO of turns: :meth:`enter` starts a turn now or queues it; :meth:`leave` starts the next.

    >>> turns, log = SessionTurns(10), []
    >>> turns.enter(lambda: log.append("first")); turns.enter(lambda: log.append("second")); log
    ['first']
    >>> turns.leave(); log
    ['first', 'second']
    """

    def __init__(self, max_waiting: int) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._waiting: BoundedBuffer[Callable[[], None]] = BoundedBuffer(max_waiting, OverflowPolicy.ERROR)

    def enter(self, start: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run ``start`` now if no turn runs, else when the turns before it have left (on ``loop`` if given).

        Raises :class:`~rxkit.errors.BufferOverflowError` when ``max_waiting`` turns already wait.
        """
        with self._lock:
            if self._busy:
                self._waiting.offer(start if loop is None else _on_loop(loop, start, self.leave))
                return
            self._busy = True
        start()

    def leave(self) -> None:
        """The running turn is over: start the next one waiting, if any."""
        with self._lock:
            ok, start = self._waiting.poll()
            if not ok:
                self._busy = False
                return
        start()


def _on_loop(
    loop: asyncio.AbstractEventLoop, start: Callable[[], None], skip: Callable[[], None]
) -> Callable[[], None]:
    """``start`` run on ``loop`` (its turn's loop), called from any thread; if that loop is gone, ``skip``."""

    def run() -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            start()
            return
        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # its loop closed while it waited (a blocking ask gave up): next turn
            skip()

    return run


_lock = threading.Lock()
# store -> session -> its queue, held by the Conversations using it: gone with the last of them
_by_store: weakref.WeakKeyDictionary[Any, weakref.WeakValueDictionary[str, SessionTurns]] = weakref.WeakKeyDictionary()


def session_turns(store: Any, session: str, max_waiting: int) -> SessionTurns:
    """The turn queue of ``session`` in ``store``, shared by everyone using that store object in this process."""
    with _lock:
        try:
            sessions = _by_store.setdefault(store, weakref.WeakValueDictionary())
        except TypeError:  # a store that cannot be weakly referenced: a queue of its own
            return SessionTurns(max_waiting)
        turns = sessions.get(session)
        if turns is None:
            turns = sessions[session] = SessionTurns(max_waiting)
        return turns
