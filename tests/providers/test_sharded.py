"""ShardedProvider: calls run in real worker processes against a real loopback server.

The worker processes build the real OpenAI provider from the spec and talk
to :class:`OpenAIServer` over loopback; this process only relays. Checked:
the same elements as the provider run here, calls spread over the workers,
hot semantics across the process boundary (one request for two
subscribers, disposal aborting the request in the worker: the server sees
the client leave), typed errors, a worker killed mid-call, events and cost,
the API key kept off command lines and environments, and no process, task
or thread left after ``aclose``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psutil
import pytest
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import AuthenticationError, ConfigError, MalformedEventError, ProviderError, UnknownProviderError
from rxkit.providers.openai import OpenAIProvider
from rxkit.providers.registry import _factories, create_provider, register_provider
from rxkit.providers.sharded import ShardedProvider
from rxkit.telemetry.events import EventBus, ProviderCallCompleted, ProviderCallStarted
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, Message
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, chunk, recording, sse_body

REQUEST = ChatRequest(messages=[Message.user("What is the capital of France?")])
UNFINISHED = sse_body([chunk({"content": "Hel"}), chunk({"content": "lo"})])[: -len(b"data: [DONE]\n\n")]


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


def spec(server: OpenAIServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "openai",
        "model": "gpt-4o-mini",
        "base_url": server.url,
        "api_key": API_KEY,
        "extra": {"compatible": False, **extra},
    }


def summary(elements: list[Any]) -> tuple[str, list[tuple[str, str, str]], Any]:
    text = "".join(e.text for e in elements if isinstance(e, TextDelta))
    calls = [(e.call.id, e.call.name, e.call.arguments) for e in elements if isinstance(e, ToolCallElement)]
    end = elements[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None
    return text, calls, (end.response.finish_reason, end.response.usage, end.response.cost)


async def collect(provider: Any, request: ChatRequest = REQUEST) -> list[Any]:
    elements: list[Any] = await provider.stream(request).pipe(ops.to_list())
    return elements


async def test_the_same_answers_as_the_provider_here_spread_over_the_workers(server: OpenAIServer) -> None:
    names = ["text", "tools", "text", "tools"]
    direct = OpenAIProvider("gpt-4o-mini", base_url=server.url, api_key=API_KEY, compatible=False, bus=EventBus())
    try:
        expected = []
        for name in names:
            server.push(Reply(stream=recording(name)))
            expected.append(summary(await collect(direct)))
    finally:
        await direct.aclose()
    bus = EventBus()
    provider = ShardedProvider(spec(server), workers=2, bus=bus)
    try:
        server.push(*(Reply(stream=recording(name), event_delay=0.01) for name in names))
        results = await asyncio.gather(*(collect(provider) for _ in names))
        pids = provider.worker_pids()
    finally:
        await provider.aclose()
    assert sorted(map(repr, (summary(r) for r in results))) == sorted(map(repr, expected))
    assert any(s[1] for s in expected) and any(s[0] for s in expected)  # text and tool calls both went through
    assert provider.calls_served() == [2, 2]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    bus.flush()
    assert len(bus.events(ProviderCallStarted)) == 4
    done = bus.events(ProviderCallCompleted)
    assert len(done) == 4 and all(e.output_tokens for e in done)  # type: ignore[attr-defined]
    # Named after the provider the user called, not the one inside the workers.
    assert provider.name == "openai-sharded"
    assert {e.provider for e in bus.events()} == {"openai-sharded"}  # type: ignore[attr-defined]
    ends = [r[-1] for r in results]
    assert all(isinstance(e, EndOfTurn) and e.response and e.response.provider == "openai-sharded" for e in ends)


async def test_one_request_for_two_subscribers_and_a_late_one_gets_the_text_so_far(server: OpenAIServer) -> None:
    server.push(Reply(stream=recording("text"), event_delay=0.05))
    provider = ShardedProvider(spec(server), workers=1, bus=EventBus())
    try:
        stream = provider.stream(REQUEST)
        first: list[Any] = []
        done = asyncio.Event()
        stream.subscribe(first.append, lambda e: done.set(), done.set)
        while not any(isinstance(e, TextDelta) for e in first):
            await asyncio.sleep(0.01)
        late = await stream.pipe(ops.to_list())
        await done.wait()
    finally:
        await provider.aclose()
    assert len(server.requests) == 1
    assert summary(first)[0] == summary(late)[0] != ""


async def test_leaving_aborts_the_request_in_the_worker(server: OpenAIServer) -> None:
    server.push(Reply(stream=UNFINISHED, hang=True))
    provider = ShardedProvider(spec(server), workers=1, bus=EventBus())
    try:
        seen: list[Any] = []
        subscription = provider.stream(REQUEST).subscribe(seen.append)
        while not seen:
            await asyncio.sleep(0.01)
        subscription.dispose()
        await asyncio.wait_for(server.disconnected.wait(), 5)  # the server saw the worker's client leave
        assert server.disconnects == 1 and server.completed == 0
        server.push(Reply(stream=recording("text")))
        assert summary(await collect(provider))[0]  # the worker goes on serving
    finally:
        await provider.aclose()


async def test_errors_arrive_typed(server: OpenAIServer) -> None:
    server.push(
        Reply(status=401, body={"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
        Reply(stream=recording("malformed")),
    )
    provider = ShardedProvider(spec(server), workers=1, bus=EventBus())
    try:
        with pytest.raises(AuthenticationError) as auth:
            await collect(provider)
        with pytest.raises(MalformedEventError) as malformed:
            await collect(provider)
    finally:
        await provider.aclose()
    assert auth.value.status == 401 and API_KEY not in str(auth.value)
    assert malformed.value.provider == "openai-sharded" and malformed.value.partial == "Hello"
    assert str(malformed.value).startswith("openai-sharded: ")
    assert '"content":" wor' in malformed.value.line


async def test_a_worker_killed_mid_call_fails_the_call_and_is_replaced(server: OpenAIServer) -> None:
    server.push(Reply(stream=UNFINISHED, hang=True))
    provider = ShardedProvider(spec(server), workers=1, bus=EventBus())
    try:
        seen: list[Any] = []
        failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        provider.stream(REQUEST).subscribe(seen.append, failed.set_result)
        while not seen:
            await asyncio.sleep(0.01)
        (pid,) = provider.worker_pids()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        error = await asyncio.wait_for(failed, 10)
        assert type(error) is ProviderError and "worker 0 exited" in str(error)
        server.push(Reply(stream=recording("text")))
        assert summary(await collect(provider))[0]
        (new_pid,) = provider.worker_pids()
        assert new_pid is not None and new_pid != pid
    finally:
        await provider.aclose()


async def test_close_leaves_no_process_task_or_thread(server: OpenAIServer) -> None:
    async with ano_leaks():
        provider = ShardedProvider(spec(server), workers=2, bus=EventBus())
        server.push(Reply(stream=recording("text")))
        await collect(provider)
        pids = provider.worker_pids()
        await provider.aclose()
    assert provider.worker_pids() == [None, None]
    assert not any(p is not None and psutil.pid_exists(p) for p in pids)


async def test_the_api_key_is_neither_on_a_command_line_nor_in_an_environment(server: OpenAIServer) -> None:
    provider = ShardedProvider(spec(server), workers=1, bus=EventBus())
    try:
        await provider.start()
        (pid,) = provider.worker_pids()
        assert pid is not None
        process = psutil.Process(pid)
        assert API_KEY not in " ".join(process.cmdline())
        assert all(API_KEY not in value for value in process.environ().values())
        assert API_KEY not in repr(provider)
    finally:
        await provider.aclose()


async def test_bad_specs_are_refused_here_before_any_worker_starts(server: OpenAIServer) -> None:
    with pytest.raises(UnknownProviderError, match="no-such"):
        ShardedProvider({"type": "no-such"})
    with pytest.raises(ConfigError, match="at least one worker"):
        ShardedProvider(spec(server), workers=0)
    with pytest.raises(ConfigError, match="cannot be sharded"):
        ShardedProvider({"type": "sharded", "extra": {"provider": spec(server)}})
    with pytest.raises(ConfigError, match=r"extra\.provider"):
        create_provider({"type": "sharded"})
    built = create_provider({"type": "sharded", "name": "wide", "extra": {"workers": 3, "provider": spec(server)}})
    assert isinstance(built, ShardedProvider) and built.name == "wide" and built.workers == 3
    assert built.model == "gpt-4o-mini" and built.capabilities.tools
    await built.aclose()  # never started: nothing to stop


async def test_a_provider_the_worker_cannot_build_fails_the_start_and_the_call(server: OpenAIServer) -> None:
    """A type registered only in this process: the shadow here builds, the worker cannot."""
    register_provider("only-here", lambda s: OpenAIProvider(s.model, base_url=server.url, api_key=API_KEY))
    provider = ShardedProvider({"type": "only-here", "model": "gpt-4o-mini"}, workers=1, bus=EventBus())
    try:
        with pytest.raises(ProviderError, match="could not build the provider: unknown provider 'only-here'"):
            await collect(provider)
        assert provider.worker_pids() == [None]  # stopped, not left running
    finally:
        await provider.aclose()
        _factories.pop("only-here", None)


@contextlib.contextmanager
def server_on_a_thread(replies: int) -> Iterator[OpenAIServer]:
    """The loopback server on its own thread and loop, for tests that run several loops of their own."""
    ready, stop = threading.Event(), threading.Event()
    box: list[OpenAIServer] = []

    async def serve() -> None:
        async with OpenAIServer() as server:
            server.push(*(Reply(stream=recording("text")) for _ in range(replies)))
            box.append(server)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.02)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        yield box[0]
    finally:
        stop.set()
        thread.join(10)


def test_each_event_loop_gets_its_own_workers_and_none_outlives_its_loop() -> None:
    """``asyncio.run`` twice with one provider (a script calling ``graph.run()`` twice does that)."""
    with server_on_a_thread(2) as server:
        provider = ShardedProvider(spec(server), workers=1, bus=EventBus())

        async def one() -> tuple[str, int | None]:
            text = summary(await collect(provider))[0]
            return text, provider.worker_pids()[0]

        first_text, first_pid = asyncio.run(one())
        assert first_pid is not None and not psutil.pid_exists(first_pid)  # gone with its loop, and reaped
        second_text, second_pid = asyncio.run(one())
        assert first_text == second_text != "" and second_pid not in (None, first_pid)
        asyncio.run(provider.aclose())
        assert second_pid is not None and not psutil.pid_exists(second_pid)
        assert provider.worker_pids() == [None]
