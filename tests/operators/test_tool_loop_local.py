"""The tool loop with the real embedded model (llama.cpp) and a forced tool_choice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reactivex import Observable

from rxkit.elements import Element, EndOfTurn, MessageElement, ToolCallElement
from rxkit.graph import Graph
from rxkit.operators import tool_loop
from rxkit.providers.local import LocalProvider
from rxkit.telemetry.events import EventBus, ToolCallCompleted
from rxkit.tools import tool
from rxkit.turn import Turn
from rxkit.types import ChatRequest, Message

pytestmark = pytest.mark.local_model


class _Recorded(LocalProvider):
    """The local provider, remembering the requests of every round."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests: list[ChatRequest] = []

    def stream(self, request: ChatRequest) -> Observable[Element]:
        self.requests.append(request)
        return super().stream(request)


async def test_the_tool_runs_and_its_result_reaches_the_next_round(local_server: str) -> None:
    calls: list[str] = []

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return "sunny, 21 degrees"

    provider = _Recorded(base_url=local_server)
    turn = Turn(Message.user("What is the weather in Paris?"))
    turn.request = ChatRequest(messages=[turn.user], tool_choice="get_weather", max_tokens=48, temperature=0.0)
    bus = EventBus()
    try:
        out = await Graph.chain(tool_loop(provider, [get_weather], max_rounds=1, bus=bus)).arun([turn])
    finally:
        await provider.aclose()
    assert len(calls) == 1 and isinstance(calls[0], str), "the model's forced call ran the Python function"
    call = next(e.call for e in out if isinstance(e, ToolCallElement))
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] == calls[0]
    assert any(isinstance(e, MessageElement) and e.message.role == "tool" for e in out)
    assert len(provider.requests) == 2, "a second round was asked"
    second = provider.requests[1]
    assert second.tool_choice == "auto"
    results = [m for m in second.messages if m.role == "tool"]
    assert results and results[0].tool_results[0].content == "sunny, 21 degrees"
    assert results[0].tool_results[0].call_id == call.id
    assert isinstance(out[-1], EndOfTurn)
    bus.flush()
    assert len(bus.events(ToolCallCompleted)) == 1
