"""Base-URL environment variables, read as the official SDKs read them, against loopback servers.

``OPENAI_BASE_URL`` (openai-python), ``ANTHROPIC_BASE_URL`` (anthropic-sdk-python) and
``GOOGLE_GEMINI_BASE_URL`` (google-genai's ``_base_url.get_base_url``) apply when no
``base_url`` is given; an explicit ``base_url`` wins.
"""

from __future__ import annotations

import pytest
from reactivex import operators as ops

from rxkit.providers import ProviderSpec, create_provider
from rxkit.providers.http import HTTPProvider
from rxkit.telemetry.events import EventBus
from rxkit.types import ChatRequest, Message
from tests.providers import anthropic_server, gemini_server
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, recording

QUESTION = ChatRequest(messages=[Message.user("What is the capital of France?")])
DEAD = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


async def test_openai_base_url_env_sends_the_turn_there(monkeypatch: pytest.MonkeyPatch, bus: EventBus) -> None:
    async with OpenAIServer() as server:
        server.push(Reply(stream=recording("text")))
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        provider = create_provider(ProviderSpec(type="openai", model="gpt-4o-mini"))
        assert isinstance(provider, HTTPProvider)
        provider.bus = bus
        try:
            response = await provider.chat(QUESTION)
        finally:
            await provider.aclose()
    assert response.text and len(server.requests) == 1
    assert server.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"  # still OpenAI: the key goes along


async def test_anthropic_base_url_env_sends_the_turn_there(monkeypatch: pytest.MonkeyPatch) -> None:
    async with anthropic_server.AnthropicServer() as server:
        server.push(anthropic_server.Reply(events=anthropic_server.TEXT_STREAM))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", server.api_key)
        provider = create_provider(ProviderSpec(type="anthropic", model="claude-sonnet-4-5"))
        try:
            out = await provider.stream(QUESTION).pipe(ops.to_list())
        finally:
            await provider.aclose()
    assert out[-1].response.text == anthropic_server.TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert [r.path for r in server.requests] == ["/v1/messages"]


async def test_gemini_base_url_env_sends_the_turn_there(monkeypatch: pytest.MonkeyPatch) -> None:
    async with gemini_server.GeminiServer() as server:
        server.push(gemini_server.Reply(events=gemini_server.TEXT_STREAM))
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        monkeypatch.setenv("GEMINI_API_KEY", server.api_key)
        provider = create_provider(ProviderSpec(type="gemini", model="gemini-2.5-flash"))
        try:
            out = await provider.stream(QUESTION).pipe(ops.to_list())
        finally:
            await provider.aclose()
    assert out[-1].response.text == gemini_server.TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert [r.path for r in server.requests] == ["/v1beta/models/gemini-2.5-flash:streamGenerateContent"]


@pytest.mark.parametrize(
    ("kind", "env"),
    [("openai", "OPENAI_BASE_URL"), ("anthropic", "ANTHROPIC_BASE_URL"), ("gemini", "GOOGLE_GEMINI_BASE_URL")],
)
def test_explicit_base_url_wins_and_unset_means_the_default(
    monkeypatch: pytest.MonkeyPatch, kind: str, env: str
) -> None:
    monkeypatch.setenv(env, DEAD)
    explicit = create_provider(ProviderSpec(type=kind, model="m", api_key="k-000000000000", base_url="http://h:1/x"))
    from_env = create_provider(ProviderSpec(type=kind, model="m", api_key="k-000000000000"))
    monkeypatch.delenv(env)
    default = create_provider(ProviderSpec(type=kind, model="m", api_key="k-000000000000"))
    assert isinstance(explicit, HTTPProvider) and isinstance(from_env, HTTPProvider)
    assert isinstance(default, HTTPProvider)
    assert explicit.base_url == "http://h:1/x"
    assert from_env.base_url == DEAD
    assert default.base_url == type(default).default_base_url
