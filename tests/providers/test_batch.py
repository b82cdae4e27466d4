"""Batches of prompts through a provider, a few at a time."""

from __future__ import annotations

import pytest

from rxkit.errors import ProviderServerError
from rxkit.providers.batch import abatch, batch
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.types import ChatRequest


async def test_answers_keep_the_prompts_order_and_the_concurrency_limit_holds() -> None:
    mock = MockProvider([MockResponse(f"answer {i}", first_token_latency=0.02 * (5 - i)) for i in range(5)])
    answers = await abatch(mock, [f"q{i}" for i in range(5)], concurrency=2, progress=False, temperature=0.1)
    assert [a.text for a in answers] == [f"answer {i}" for i in range(5)]
    assert [r.messages[0].text for r in mock.requests] == [f"q{i}" for i in range(5)]
    assert all(r.temperature == 0.1 for r in mock.requests)


async def test_failures_raise_or_come_back_in_place() -> None:
    error = ProviderServerError("down", provider="mock", status=500)
    mock = MockProvider(["a", error, "c"])
    out = await abatch(mock, ["1", "2", "3"], return_exceptions=True, progress=False, concurrency=1)
    assert out[0].text == "a" and out[1] is error and out[2].text == "c"
    with pytest.raises(ProviderServerError):
        await abatch(MockProvider([error]), ["1"], progress=False)


def test_blocking_batch_accepts_requests_and_shows_progress_when_asked() -> None:
    mock = MockProvider(["x", "y"])
    request = ChatRequest(messages=[])
    out = batch(mock, [request, "second"], progress=True)
    assert [a.text for a in out] == ["x", "y"]
