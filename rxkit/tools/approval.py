"""Human approval of tool calls.

A tool made with ``requires_approval=True`` does not run until the
application says so. The tool loop publishes a
:class:`~rxkit.telemetry.events.ToolCallPending` event and awaits the approver::

    gate = ApprovalGate()
    bus.subscribe(lambda e: gate.approve(e.call_id), ToolCallPending)   # or show a button
    tool_loop(provider, tools, approver=gate)

An approver may also be any function ``(ToolCall) -> bool`` or an async one.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable

from rxkit.types import ToolCall

__all__ = ["ApprovalGate", "Approver", "ask_approval"]


class ApprovalGate:
    """Pending approvals by call id, answered with :meth:`approve` / :meth:`deny` from anywhere."""

    _KEEP_EARLY = 1000  # answers kept for calls not waited on yet

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[tuple[bool, str]]] = {}
        # Answers that came before the call was waited on: a listener of ToolCallPending may answer
        # inside publish(), before wait() registered the call (and from any thread).
        self._early: dict[str, tuple[bool, str]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> list[str]:
        return list(self._pending)

    async def wait(self, call: ToolCall) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._loop = loop
            early = self._early.pop(call.id, None)
            if early is not None:
                return early
            fut = self._pending.setdefault(call.id, loop.create_future())
        try:
            return await fut
        finally:
            with self._lock:
                self._pending.pop(call.id, None)

    def approve(self, call_id: str) -> None:
        self._answer(call_id, True, "")

    def deny(self, call_id: str, reason: str = "denied by the user") -> None:
        self._answer(call_id, False, reason)

    def _answer(self, call_id: str, ok: bool, reason: str) -> None:
        with self._lock:
            loop = self._loop
            if call_id not in self._pending or loop is None or loop.is_closed():
                self._early[call_id] = (ok, reason)  # taken by wait() when the call gets there
                while len(self._early) > self._KEEP_EARLY:
                    del self._early[next(iter(self._early))]
                return

        def settle() -> None:
            fut = self._pending.get(call_id)
            if fut is not None and not fut.done():
                fut.set_result((ok, reason))

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            settle()
        else:
            loop.call_soon_threadsafe(settle)


Approver = ApprovalGate | Callable[[ToolCall], bool | Awaitable[bool]]


async def ask_approval(approver: Approver | None, call: ToolCall) -> tuple[bool, str]:
    """``(approved, reason)`` from whatever kind of approver was given."""
    if approver is None:
        return False, "this tool requires approval and no approver is configured"
    if isinstance(approver, ApprovalGate):
        return await approver.wait(call)
    answer = approver(call)
    if inspect.isawaitable(answer):
        answer = await answer
    return (True, "") if answer else (False, "denied by the user")
