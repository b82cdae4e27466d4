"""Fallback, round-robin and weighted balancing across providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from reactivex import Observable
from reactivex import operators as ops

from rxkit.elements import Element, EndOfTurn, TextDelta
from rxkit.errors import ConfigError, ProviderServerError, StreamInterruptedError
from rxkit.providers import BaseProvider, Capabilities, Price, Provider, create_provider
from rxkit.providers._hot import HotStream, StreamAccumulator
from rxkit.providers.balancing import FallbackProvider, RoundRobinProvider, WeightedProvider
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import EventBus
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, ChatResponse, Message, Usage
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, recording

REQUEST = ChatRequest(messages=[Message.user("hi")])
ERR_500 = {"error": {"message": "overloaded", "type": "server_error"}}


class Fake(BaseProvider):
    """A provider that answers its own name, or fails (before or after its first token)."""

    type = "fake"

    def __init__(
        self,
        name: str,
        *,
        fail: Exception | None = None,
        fail_after_token: bool = False,
        capabilities: Capabilities = Capabilities(tools=True, vision=True),
    ) -> None:
        super().__init__(model=f"{name}-model", name=name)
        self.fail = fail
        self.fail_after_token = fail_after_token
        self.capabilities = capabilities
        self.calls = 0
        self.closed = False

    def stream(self, request: ChatRequest) -> Observable[Element]:
        async def run(acc: StreamAccumulator) -> None:
            self.calls += 1
            await asyncio.sleep(0)
            if self.fail is not None and not self.fail_after_token:
                raise self.fail
            acc.text(self.name)
            if self.fail is not None:
                raise self.fail
            acc.finish(ChatResponse(message=Message.assistant(self.name), provider=self.name))

        return HotStream(run, self.name)

    async def aclose(self) -> None:
        self.closed = True


async def texts(provider: Provider, n: int = 1) -> list[str]:
    out = []
    for _ in range(n):
        elements = await provider.stream(REQUEST).pipe(ops.to_list())
        out.append("".join(e.text for e in elements if isinstance(e, TextDelta)))
    return out


@pytest.fixture
async def servers() -> AsyncIterator[tuple[OpenAIServer, OpenAIServer]]:
    async with OpenAIServer() as a, OpenAIServer() as b:
        yield a, b


async def test_fallback_to_the_next_provider_on_failure_before_first_token(
    servers: tuple[OpenAIServer, OpenAIServer], bus: EventBus
) -> None:
    a, b = servers
    a.push(Reply(status=500, body=ERR_500))
    b.push(Reply(stream=recording("text")))
    first = OpenAIProvider(
        "gpt-4o-mini", name="primary", base_url=a.url, api_key=API_KEY, compatible=False, bus=bus, max_retries=0
    )
    second = OpenAIProvider("gpt-4o-mini", name="backup", base_url=b.url, api_key=API_KEY, compatible=False, bus=bus)
    provider = FallbackProvider([first, second])
    async with ano_leaks():
        out = await provider.stream(REQUEST).pipe(ops.to_list())
        await provider.aclose()
    assert len(a.requests) == 1 and len(b.requests) == 1
    assert isinstance(out[-1], EndOfTurn) and out[-1].response.provider == "backup"
    assert out[-1].response.text.startswith("The capital of France is Paris")
    assert first.client.closed and second.client.closed  # both closed


async def test_no_fallback_after_the_first_token(servers: tuple[OpenAIServer, OpenAIServer], bus: EventBus) -> None:
    a, b = servers
    a.push(Reply(stream=recording("text"), cut_after=4))
    first = OpenAIProvider("m", base_url=a.url, api_key=API_KEY, bus=bus)
    second = OpenAIProvider("m", base_url=b.url, api_key=API_KEY, bus=bus)
    provider = FallbackProvider([first, second])
    seen: list[Any] = []
    try:
        with pytest.raises(StreamInterruptedError):
            await provider.stream(REQUEST).pipe(ops.do_action(seen.append), ops.to_list())
    finally:
        await provider.aclose()
    assert b.requests == []
    assert "".join(e.text for e in seen) == "The capital of"


async def test_all_failing_gives_the_last_error() -> None:
    provider = FallbackProvider(
        [Fake("a", fail=ProviderServerError("a down")), Fake("b", fail=ProviderServerError("b down"))]
    )
    with pytest.raises(ProviderServerError, match="b down"):
        await provider.stream(REQUEST).pipe(ops.to_list())
    with pytest.raises(ProviderServerError, match="b down"):
        await provider.chat(REQUEST)


async def test_errors_outside_fallback_on_are_not_swallowed() -> None:
    b = Fake("b")
    provider = FallbackProvider([Fake("a", fail=ValueError("bug")), b])
    with pytest.raises(ValueError, match="bug"):
        await provider.stream(REQUEST).pipe(ops.to_list())
    assert b.calls == 0
    only_5xx = FallbackProvider([Fake("a", fail=StreamInterruptedError("cut")), b], fallback_on=(ProviderServerError,))
    with pytest.raises(StreamInterruptedError):
        await only_5xx.chat(REQUEST)


async def test_fallback_stream_is_hot_and_shared() -> None:
    a, b = Fake("a", fail=ProviderServerError("down")), Fake("b")
    stream = FallbackProvider([a, b]).stream(REQUEST)
    results = await asyncio.gather(stream.pipe(ops.to_list()), stream.pipe(ops.to_list()))
    assert results[0] == results[1]
    assert a.calls == 1 and b.calls == 1  # one call per provider for both subscribers
    late = await stream.pipe(ops.to_list())  # after the end: replayed, no new call
    assert late == results[0] and b.calls == 1


async def test_fallback_chat() -> None:
    provider = FallbackProvider([Fake("a", fail=ProviderServerError("down")), Fake("b")])
    assert (await provider.chat(REQUEST)).text == "b"


def test_round_robin_spreads_calls_in_turn() -> None:
    providers = [Fake("a"), Fake("b"), Fake("c")]
    rr = RoundRobinProvider(providers)
    assert [rr.pick().name for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


async def test_round_robin_streams_and_chats() -> None:
    rr = RoundRobinProvider([Fake("a"), Fake("b")])
    assert await texts(rr, 3) == ["a", "b", "a"]
    assert (await rr.chat(REQUEST)).text == "b"


def test_weighted_is_smooth_and_proportional() -> None:
    w = WeightedProvider([Fake("a"), Fake("b")], weights=[3, 1])
    assert [w.pick().name for _ in range(8)] == ["a", "a", "b", "a"] * 2
    w = WeightedProvider([Fake("x"), Fake("y"), Fake("z")], weights=[5, 1, 1])
    picks = [w.pick().name for _ in range(700)]
    assert (picks.count("x"), picks.count("y"), picks.count("z")) == (500, 100, 100)
    assert "xxxxx" not in "".join(picks[:7])  # interleaved, not in bursts
    zero = WeightedProvider([Fake("a"), Fake("b")], weights=[0, 2])
    assert {zero.pick().name for _ in range(5)} == {"b"}


def test_weighted_rejects_bad_weights() -> None:
    for weights in ([1], [0, 0], [-1, 2]):
        with pytest.raises(ConfigError):
            WeightedProvider([Fake("a"), Fake("b")], weights=weights)
    with pytest.raises(ConfigError):
        RoundRobinProvider([])


async def test_group_identity_capabilities_cost_and_close() -> None:
    a = Fake("a", capabilities=Capabilities(tools=True, vision=True))
    b = Fake("b", capabilities=Capabilities(tools=True, vision=False))
    a.pricing = {"a-model": Price(1.0, 2.0)}
    b.pricing = {"b-model": Price(10.0, 20.0)}
    group = FallbackProvider([a, b])
    assert isinstance(group, Provider)
    assert group.model == "a-model"
    assert group.capabilities == Capabilities(tools=True, vision=False)
    native = Capabilities(structured_output="json_schema")
    both = FallbackProvider([Fake("c", capabilities=native), Fake("d", capabilities=native)])
    assert both.capabilities.structured_output == "json_schema"  # typed functions use it only if all share it
    mixed = FallbackProvider([Fake("e", capabilities=native), Fake("f")])
    assert mixed.capabilities.structured_output == ""
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert group.cost(usage, "b-model").total == pytest.approx(30.0)
    assert group.cost(usage).total == pytest.approx(3.0)
    await group.aclose()
    assert a.closed and b.closed


async def test_built_from_config(servers: tuple[OpenAIServer, OpenAIServer]) -> None:
    a, b = servers
    a.push(Reply(status=503, body=ERR_500))
    spec = {
        "type": "fallback",
        "name": "resilient",
        "extra": {
            "providers": [
                {
                    "type": "openai-compatible",
                    "name": "a",
                    "base_url": a.url,
                    "api_key": API_KEY,
                    "extra": {"max_retries": 0},
                },
                {"type": "openai-compatible", "name": "b", "base_url": b.url, "api_key": API_KEY},
            ]
        },
    }
    provider = create_provider(spec)
    try:
        assert isinstance(provider, FallbackProvider) and provider.name == "resilient"
        response = await provider.chat(REQUEST)
    finally:
        await provider.aclose()
    assert response.provider == "b" and response.text == "ok"
    weighted = create_provider(
        {
            "type": "weighted",
            "extra": {
                "weights": [1, 1],
                "providers": [
                    {"type": "openai-compatible", "base_url": a.url},
                    {"type": "openai-compatible", "base_url": b.url},
                ],
            },
        }
    )
    assert isinstance(weighted, WeightedProvider)
    await weighted.aclose()
    with pytest.raises(ConfigError, match=r"extra\.providers"):
        create_provider({"type": "round-robin"})
    with pytest.raises(ConfigError, match="weights"):
        create_provider(
            {"type": "weighted", "extra": {"providers": [{"type": "openai-compatible", "base_url": a.url}]}}
        )
