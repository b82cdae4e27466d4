"""The tool loop: model -> tool calls -> execute -> results appended -> model again.

``tool_loop`` takes the place of the ``llm`` stage when the model may call
tools. Per turn, up to ``max_rounds`` rounds: the model's text streams out as
it comes; the tool calls of a round run in parallel (at most ``parallel`` at
once, each within ``timeout`` seconds); their results are appended to the
conversation as tool messages and the model is asked again. Unknown tools,
arguments that are not valid JSON or break the schema, tool failures and
timeouts go back to the model as error results, never as crashes. Disposal,
or an :class:`~rxkit.elements.Interrupt` from upstream, cancels the running
round, tools included; nothing of a cancelled round is acted on.

A forced ``tool_choice`` (``"required"`` or a tool's name) applies to the
first round only; later rounds use ``"auto"``.

``two_phase=True`` is for voice: the tool rounds are silent, then the final
answer is streamed from a call without tools (as LLMRTC's playbooks do).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import reactivex
from reactivex import Observable

from rxkit.elements import Element, EndOfTurn, ErrorElement, MessageElement, ToolCallElement
from rxkit.errors import ConfigError, GraphError, ToolError, ToolExecutionError
from rxkit.graph import astream
from rxkit.graph.stage import Stage, StageKind
from rxkit.operators._one_turn_at_a_time import one_turn_at_a_time
from rxkit.providers.base import Provider
from rxkit.scheduling import from_async_iterable
from rxkit.telemetry.events import EventBus, default_bus
from rxkit.tools.approval import Approver
from rxkit.tools.base import Tool, ToolResult
from rxkit.tools.execute import execute_call
from rxkit.tools.registry import ToolRegistry
from rxkit.turn import Turn
from rxkit.types import ChatRequest, ChatResponse, Message, ToolCall, ToolCallPart

__all__ = ["tool_loop"]


def tool_loop(
    provider: Provider,
    tools: ToolRegistry | list[Tool | Any],
    *,
    max_rounds: int = 5,
    parallel: int = 4,
    timeout: float = 30.0,
    approver: Approver | None = None,
    two_phase: bool = False,
    bus: EventBus | None = None,
    hold_tools: Callable[[], Awaitable[None]] | None = None,
) -> Stage[Any, Element]:
    """Run each turn's model calls and tool calls until the model answers in text.

    ``hold_tools``: awaited before each round's tool calls run, for a caller
    that may not let them run yet (the voice graph holds a reply it started
    before the user's turn was confirmed there); cancelling the turn cancels
    the wait, and no tool runs.
    """
    if max_rounds < 1 or parallel < 1:
        raise ConfigError("tool_loop needs max_rounds >= 1 and parallel >= 1")
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(list(tools))
    loop = _Loop(provider, registry, max_rounds, parallel, timeout, approver, two_phase, bus or default_bus, hold_tools)

    def per_element(x: Any) -> Observable[Any]:
        if isinstance(x, Turn):
            return from_async_iterable(lambda: loop.run(x))
        if isinstance(x, Element):
            return reactivex.of(x)  # controls and other elements pass through, in order
        return reactivex.throw(GraphError(f"tool_loop expects a Turn, not {type(x).__name__}", stage="tool_loop"))

    # Turns run one at a time; an urgent control (Interrupt) cancels the turn in flight, tools included.
    operator = one_turn_at_a_time(per_element)
    return Stage("tool_loop", operator, StageKind.TRANSFORM, "model and tool calls, round after round")


class _Loop:
    def __init__(
        self,
        provider: Provider,
        registry: ToolRegistry,
        max_rounds: int,
        parallel: int,
        timeout: float,
        approver: Approver | None,
        two_phase: bool,
        bus: EventBus,
        hold_tools: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.hold_tools = hold_tools
        self.provider = provider
        self.registry = registry
        self.max_rounds = max_rounds
        self.parallel = parallel
        self.timeout = timeout
        self.approver = approver
        self.two_phase = two_phase
        self.bus = bus

    async def run(self, turn: Turn) -> AsyncIterator[Element]:
        if turn.request is None:
            raise ConfigError("tool_loop needs turn.request: put assemble_prompt before it")
        base = turn.request.model_copy(update={"tools": [*turn.request.tools, *self.registry.descriptors()]})
        response: ChatResponse | None = None
        called_tools = False
        for round_no in range(self.max_rounds + 1):
            update: dict[str, Any] = {"messages": [*base.messages, *turn.new_messages]}
            if round_no and base.tool_choice not in (None, "auto", "none"):
                update["tool_choice"] = "auto"  # a forced choice holds for the first round only, or it never ends
            request = base.model_copy(update=update)
            held: list[Element] = []
            response = None  # this round's own: a round that ends without one must not reuse the last
            async for element in self._call(request):
                if isinstance(element, EndOfTurn):
                    response = element.response
                elif self.two_phase:
                    held.append(element)  # silent until we know whether this round calls tools
                else:
                    yield element
            if response is None:
                raise ToolExecutionError("the model ended a round without a response")
            calls = response.message.tool_calls
            if not calls:
                if self.two_phase and called_tools:  # phase two: stream the answer from a call without tools
                    final = request.model_copy(update={"tools": [], "tool_choice": None})
                    async for element in self._call(final):
                        if isinstance(element, EndOfTurn):
                            response = element.response
                        else:
                            yield element
                else:
                    for element in held:
                        yield element
                break
            if round_no == self.max_rounds:
                yield ErrorElement(
                    ToolError(f"the model still asked for tools after {self.max_rounds} rounds; stopping"), "tool_loop"
                )
                # Its calls are not run: keep only the answer's text, so that the saved history has no tool
                # call without a result (which every provider rejects, failing each later turn of the session).
                response = response.model_copy(update={"message": Message.assistant(response.message.text)})
                break
            called_tools = True
            if self.two_phase:
                for element in held:
                    if isinstance(element, ToolCallElement):
                        yield element
            turn.new_messages.append(_with_sendable_arguments(response.message))
            if self.hold_tools is not None:
                await self.hold_tools()
            results = await self._execute_all(calls)
            for call, result in zip(calls, results, strict=True):
                message = Message.tool(call.id, result.content, name=call.name, is_error=result.is_error)
                turn.new_messages.append(message)
                yield MessageElement(message)
        assert response is not None
        turn.response = response
        yield EndOfTurn(response, turn)

    async def _call(self, request: ChatRequest) -> AsyncIterator[Element]:
        async for element in astream(self.provider.stream(request)):
            yield element

    async def _execute_all(self, calls: list[ToolCall]) -> list[ToolResult]:
        limit = asyncio.Semaphore(self.parallel)

        async def one(call: ToolCall) -> ToolResult:
            async with limit:
                return await self._execute(call)

        async with asyncio.TaskGroup() as group:  # cancelling the turn cancels every tool
            tasks = [group.create_task(one(c)) for c in calls]
        return [t.result() for t in tasks]

    async def _execute(self, call: ToolCall) -> ToolResult:
        return await execute_call(
            self.registry, call, default_timeout=self.timeout, approver=self.approver, bus=self.bus
        )


def _with_sendable_arguments(message: Message) -> Message:
    """``message`` with every tool call's arguments a JSON object. A model can send broken arguments (cut
    off by max_tokens, say): the tool result tells it so, but the call itself goes back in the next
    request, and Anthropic and Gemini take only an object there (the request would fail, not the call).
    The raw text is kept under ``_unparsed_arguments`` so the model still sees what it sent."""
    calls = message.tool_calls
    fixed = []
    for call in calls:
        try:
            ok = isinstance(json.loads(call.arguments or "{}"), dict)
        except ValueError:
            ok = False
        fixed.append(
            call if ok else call.model_copy(update={"arguments": json.dumps({"_unparsed_arguments": call.arguments})})
        )
    if all(a is b for a, b in zip(fixed, calls, strict=True)):
        return message
    # Replace only the calls: the other parts (signed reasoning a provider needs back) stay where they were.
    replaced = iter(fixed)
    content = [ToolCallPart(call=next(replaced)) if isinstance(p, ToolCallPart) else p for p in message.content]
    return message.model_copy(update={"content": content})
