"""Run one tool call the way every rxkit caller does: look-up, approval gate, timeout, events, errors as results.

The text tool loop (:func:`rxkit.operators.tool_loop`) and the duplex
sessions (:mod:`rxkit.duplex`) both run the model's calls through
:func:`execute_call`, so a tool behaves the same in a chat and in a
speech-to-speech conversation.
"""

from __future__ import annotations

import asyncio
import time

from rxkit.errors import ToolError, ToolExecutionError, ToolTimeoutError
from rxkit.telemetry.events import EventBus, ToolCallCompleted, ToolCallFailed, ToolCallPending, ToolCallStarted
from rxkit.tools.approval import Approver, ask_approval
from rxkit.tools.base import ToolResult
from rxkit.tools.registry import ToolRegistry
from rxkit.types import ToolCall

__all__ = ["execute_call"]


async def execute_call(
    registry: ToolRegistry, call: ToolCall, *, default_timeout: float, approver: Approver | None, bus: EventBus
) -> ToolResult:
    """Run ``call`` with the tool ``registry`` names; never raises a :class:`~rxkit.errors.ToolError`.

    An unknown tool, bad arguments, a refused approval, a failure or a
    timeout (the tool's own, else ``default_timeout`` seconds) come back as an error
    result for the model. Publishes ToolCallPending (when approval is asked),
    ToolCallStarted, then ToolCallCompleted or ToolCallFailed on ``bus``.
    Cancelling the caller cancels the tool.

    >>> from rxkit.tools import tool
    >>> from rxkit.telemetry import EventBus
    >>> @tool
    ... def add(a: int, b: int) -> int:
    ...     "Add."
    ...     return a + b
    >>> call = ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}')
    >>> asyncio.run(execute_call(ToolRegistry([add]), call, default_timeout=5, approver=None, bus=EventBus())).content
    '3'
    """
    start = time.monotonic()
    try:
        tool = registry.get(call.name)
        if tool.requires_approval:
            bus.publish(ToolCallPending(tool=call.name, call_id=call.id, arguments=call.arguments))
            approved, reason = await ask_approval(approver, call)
            if not approved:
                raise ToolExecutionError(f"tool {call.name!r} was not run: {reason}", tool=call.name)
        bus.publish(ToolCallStarted(tool=call.name, call_id=call.id))
        limit = tool.timeout if tool.timeout is not None else default_timeout
        try:
            result = await asyncio.wait_for(tool.run(call.arguments), limit)
        except TimeoutError:
            raise ToolTimeoutError(f"tool {call.name!r} timed out after {limit} s", tool=call.name) from None
    except ToolError as exc:
        elapsed = time.monotonic() - start
        bus.publish(ToolCallFailed(tool=call.name, call_id=call.id, error=str(exc), duration_s=elapsed))
        return ToolResult(f"error: {exc}", is_error=True)
    duration = time.monotonic() - start
    if result.is_error:
        bus.publish(ToolCallFailed(tool=call.name, call_id=call.id, error=result.content, duration_s=duration))
    else:
        bus.publish(ToolCallCompleted(tool=call.name, call_id=call.id, duration_s=duration))
    return result
