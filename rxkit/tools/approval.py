"""Human approval of tool calls.

A tool made with ``requires_approval=True`` does not run until the
application says so. The tool loop publishes a
:class:`~rxkit.events.ToolCallPending` event and awaits the approver::

    gate = ApprovalGate()
    bus.subscribe(lambda e: gate.approve(e.call_id), ToolCallPending)   # or show a button
    tool_loop(provider, tools, approver=gate)

An approver may also be any function ``(ToolCall) -> bool`` or an async one.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from ..types import ToolCall

__all__ = ["ApprovalGate", "Approver", "ask_approval"]


class ApprovalGate:
    """Pending approvals by call id, answered with :meth:`approve` / :meth:`deny` from anywhere."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[tuple[bool, str]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> list[str]:
        return list(self._pending)

    async def wait(self, call: ToolCall) -> tuple[bool, str]:
        self._loop = asyncio.get_running_loop()
        fut = self._pending.setdefault(call.id, self._loop.create_future())
        try:
            return await fut
        finally:
            self._pending.pop(call.id, None)

    def approve(self, call_id: str) -> None:
        self._answer(call_id, True, "")

    def deny(self, call_id: str, reason: str = "denied by the user") -> None:
        self._answer(call_id, False, reason)

    def _answer(self, call_id: str, ok: bool, reason: str) -> None:
        loop = self._loop
        if loop is None:
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
