"""The text-mode graph and Conversation, on the real event loop, with real SQLite files."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxkit.elements import EndOfTurn, Interrupt, TextDelta
from rxkit.errors import (
    ConfigError,
    InputValidationError,
    OutputValidationError,
    RxkitError,
    StateError,
    StreamInterruptedError,
)
from rxkit.graphs import Conversation, TextGraph, text_graph
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.providers.openai import OpenAIProvider
from rxkit.state import MemoryStore, SQLiteStore
from rxkit.telemetry.events import EventBus, StageStarted, StateLoaded, StateSaved
from rxkit.testing import ano_leaks, no_leaks
from rxkit.types import Message
from rxkit.validation import BannedWords, MaxLength, ValidJSON
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, chunk, sse_body

STAGES = ["load_state", "validate_input", "assemble_prompt", "llm", "validate_output", "save_state"]


def answer_texts(elements: list[Any]) -> list[str]:
    return [e.response.text for e in elements if isinstance(e, EndOfTurn)]


def stored(path: Path, session: str = "default") -> list[tuple[str, str]]:
    """What another connection sees in the file."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT message FROM rxkit_messages WHERE session = ? ORDER BY position", (session,))
        messages = [Message.model_validate_json(r[0]) for r in rows]
    finally:
        conn.close()
    return [(m.role, m.text) for m in messages]


def test_the_graph_is_the_six_stages_named_text() -> None:
    g = text_graph(MockProvider())
    assert isinstance(g, TextGraph) and g.name == "text"
    assert list(g.nodes) == STAGES
    assert g.edges == [("input", "load_state"), *itertools.pairwise(STAGES)]
    mermaid = g.to_mermaid()
    assert all(name in mermaid for name in STAGES)
    assert "<svg" in g._repr_html_()


async def test_turns_in_one_run_see_each_others_history(bus: EventBus) -> None:
    mock = MockProvider(["Hi Bob.", "You are Bob.", "Bye."])
    g = text_graph(mock, prompt="You are {{ style }}.", variables={"style": "terse"}, bus=bus)
    out = await g.arun(["I am Bob", "Who am I?", "Bye"])
    assert answer_texts(out) == ["Hi Bob.", "You are Bob.", "Bye."]
    second = mock.requests[1].messages
    assert [(m.role, m.text) for m in second] == [
        ("system", "You are terse."),
        ("user", "I am Bob"),
        ("assistant", "Hi Bob."),
        ("user", "Who am I?"),
    ]
    assert [len(r.messages) for r in mock.requests] == [2, 4, 6]
    assert [e.messages for e in bus.events(StateLoaded)] == [0, 2, 4]
    assert [e.messages for e in bus.events(StateSaved)] == [2, 2, 2]
    ends = [e for e in out if isinstance(e, EndOfTurn)]
    assert ends[1].turn is not None and ends[1].turn.user.text == "Who am I?"
    assert len([e for e in bus.events(StageStarted) if e.stage == "llm"]) == 3  # one chain run per turn


async def test_history_persists_across_runs_and_other_connections_see_it(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    async with ano_leaks():
        store = SQLiteStore(path)
        g = text_graph(MockProvider(["first", "second"]), store=store, session="alice")
        await g.arun(["one"])
        assert stored(path, "alice") == [("user", "one"), ("assistant", "first")]
        await g.arun(["two"])
        await store.aclose()
    again = SQLiteStore(path)
    history = await again.load("alice")
    await again.aclose()
    assert [m.text for m in history] == ["one", "first", "two", "second"]


async def test_provider_error_mid_stream_leaves_sqlite_history_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    mock = MockProvider(["fine", MockResponse("half an answer", error_at_chunk=2)])
    async with SQLiteStore(path) as store:
        g = text_graph(mock, store=store)
        await g.arun(["hello"])
        seen: list[Any] = []
        with pytest.raises(StreamInterruptedError):
            async for element in g.astream(["break please"]):
                seen.append(element)
        assert [e.text for e in seen if isinstance(e, TextDelta)] == ["half ", "an "]
    assert stored(path) == [("user", "hello"), ("assistant", "fine")]


async def test_output_validation_failure_leaves_history_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    mock = MockProvider(["ok", MockResponse("this is darn bad", chunk_latency=0.001), "not json"])
    async with SQLiteStore(path) as store:
        g = text_graph(mock, store=store, output_validators=[BannedWords(["darn"])])
        await g.arun(["first"])
        with pytest.raises(OutputValidationError) as info:
            await g.arun(["second"])
        assert info.value.partial.startswith("this is darn")
        strict = text_graph(mock, store=store, output_validators=[ValidJSON()])
        with pytest.raises(OutputValidationError):  # rejected at the end of the turn, before the save
            await strict.arun(["third"])
    assert stored(path) == [("user", "first"), ("assistant", "ok")]


async def test_input_validation_failure_never_calls_the_provider(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    mock = MockProvider(["never"])
    async with SQLiteStore(path) as store:
        g = text_graph(mock, store=store, input_validators=[MaxLength(5)])
        with pytest.raises(InputValidationError):
            await g.arun(["far too long"])
    assert mock.requests == [] and stored(path) == []


async def test_dispose_mid_stream_leaves_history_unchanged_and_leaks_nothing(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    mock = MockProvider(["kept", MockResponse("a slow answer that never ends", chunk_latency=0.05)])
    async with ano_leaks():
        store = SQLiteStore(path)
        g = text_graph(mock, store=store)
        await g.arun(["keep me"])
        seen: list[Any] = []
        async for element in g.astream(["cancel me"]):
            seen.append(element)
            if len(seen) == 2:
                break  # leaving the loop disposes the graph
        await asyncio.sleep(0.4)  # past the end of the answer, had it gone on
        assert len(seen) == 2
        await store.aclose()
    assert stored(path) == [("user", "keep me"), ("assistant", "kept")]


async def test_interrupt_cancels_the_turn_in_flight(tmp_path: Path) -> None:
    store = MemoryStore()
    mock = MockProvider([MockResponse("a b c d e", chunk_latency=0.05), "after"])
    g = text_graph(mock, store=store)
    loop = asyncio.get_running_loop()
    inputs: Subject[Any] = Subject()
    out: list[Any] = []
    done = loop.create_future()
    g(inputs).subscribe(out.append, done.set_exception, lambda: done.set_result(None), scheduler=AsyncIOScheduler(loop))
    inputs.on_next("long one")
    while not out:  # the long answer has begun
        await asyncio.sleep(0.005)
    inputs.on_next("short one")
    inputs.on_next(Interrupt("user"))
    inputs.on_completed()
    await asyncio.wait_for(done, 5)
    cut = next(i for i, e in enumerate(out) if isinstance(e, Interrupt))
    assert 1 <= cut < 5 and all(isinstance(e, TextDelta) for e in out[:cut])
    assert out[cut + 1 :] == [TextDelta("after"), out[-1]] and isinstance(out[-1], EndOfTurn)
    assert answer_texts(out) == ["after"]
    assert [m.text for m in await store.load("default")] == ["short one", "after"]  # the cancelled turn: nothing


def test_blocking_run_with_sqlite_leaks_no_thread(tmp_path: Path) -> None:
    with no_leaks():
        store = SQLiteStore(tmp_path / "chat.db")
        out = text_graph(MockProvider(["yes"]), store=store).run(["ok?"])
        assert answer_texts(out) == ["yes"]
        store.close()


# -- Conversation -----------------------------------------------------------------


async def test_conversation_ask_send_astream_and_history() -> None:
    mock = MockProvider(["one", "two", MockResponse("three four", chunk_latency=0.001)])
    async with Conversation(mock, prompt="Be brief.") as chat:
        assert await chat.aask("first") == "one"
        got: list[Any] = []
        done = asyncio.get_running_loop().create_future()
        chat.send("second").subscribe(got.append, done.set_exception, lambda: done.set_result(None))
        await done
        assert answer_texts(got) == ["two"]
        streamed = [e async for e in chat.astream("third")]
        assert [e.text for e in streamed if isinstance(e, TextDelta)] == ["three ", "four"]
        history = await chat.history()
        assert [m.text for m in history] == ["first", "one", "second", "two", "third", "three four"]
        assert chat.graph.name == "text"
        await chat.clear()
        assert await chat.history() == []


async def test_conversation_turns_never_overlap() -> None:
    mock = MockProvider([MockResponse("slow first", chunk_latency=0.02), "second"])
    async with Conversation(mock) as chat:
        a, b = await asyncio.gather(chat.aask("one"), chat.aask("two"))
        assert (a, b) == ("slow first", "second")
        # the second request was built after the first turn was saved
        assert [m.text for m in mock.requests[1].messages] == ["one", "slow first", "two"]


async def test_leaving_astream_early_cancels_that_turn_and_the_next_one_runs() -> None:
    mock = MockProvider([MockResponse("x y z w", chunk_latency=0.02), "next"])
    async with Conversation(mock) as chat:
        waiting = asyncio.ensure_future(chat.aask("queued"))
        async for _ in chat.astream("cancel me"):
            break
        assert await asyncio.wait_for(waiting, 5) == "next"
        assert [m.text for m in await chat.history()] == ["queued", "next"]


async def test_a_failed_turn_releases_the_conversation() -> None:
    mock = MockProvider([MockResponse(error=StreamInterruptedError("cut")), "fine"])
    async with Conversation(mock) as chat:
        with pytest.raises(StreamInterruptedError):
            await chat.aask("one")
        assert await chat.aask("two") == "fine"
        assert [m.text for m in await chat.history()] == ["two", "fine"]


def test_conversation_from_a_spec_and_a_path_is_blocking_friendly(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with no_leaks():
        chat = Conversation("mock", store=path, session="cli")
        assert chat.ask("echo this") == "echo this"  # no script: the mock echoes
        assert chat.ask("again") == "again"
        assert isinstance(chat.store, SQLiteStore)
        chat.close()
    assert stored(path, "cli") == [
        ("user", "echo this"),
        ("assistant", "echo this"),
        ("user", "again"),
        ("assistant", "again"),
    ]
    with pytest.raises(RxkitError, match="closed"):
        chat.ask("after close")


async def test_ask_inside_a_running_loop_runs_on_a_worker_thread() -> None:
    chat = Conversation(MockProvider(["from a thread"]))
    main = threading.current_thread()
    assert await asyncio.to_thread(lambda: threading.current_thread() is not main)
    assert chat.ask("hi") == "from a thread"  # like a Jupyter cell: the loop is running here
    await chat.aclose()


async def test_aclose_ends_running_and_waiting_turns_with_an_error() -> None:
    mock = MockProvider([MockResponse("never finished", chunk_latency=10.0)])
    chat = Conversation(mock)
    async with ano_leaks():
        running = asyncio.ensure_future(chat.aask("hi"))
        waiting = asyncio.ensure_future(chat.aask("me next"))
        while not mock.requests:  # the first turn reached the provider
            await asyncio.sleep(0.005)
        await chat.aclose()
        for task in (running, waiting):
            with pytest.raises(RxkitError, match="closed"):
                await asyncio.wait_for(task, 5)
    assert await chat.history() == []
    assert len(mock.requests) == 1


def test_conversation_rejects_nothing_silently() -> None:
    with pytest.raises(RxkitError):
        Conversation("no-such-provider")


async def test_tools_run_in_the_text_graph_and_the_whole_exchange_is_saved() -> None:
    from rxkit.providers.mock import MockResponse
    from rxkit.tools import tool
    from rxkit.types import ToolCall

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    store = MemoryStore()
    call = ToolCall(id="c1", name="add", arguments='{"a": 20, "b": 22}')
    mock = MockProvider([MockResponse(tool_calls=[call]), "The answer is 42."])
    graph = text_graph(mock, store=store, tools=[add])
    assert "tool_loop" in graph.nodes
    out = await graph.arun(["what is 20 + 22?"])
    assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "The answer is 42."
    history = await store.load("default")
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[2].tool_results[0].content == "42"


async def test_a_turn_stopped_at_the_tool_round_limit_leaves_a_history_the_next_turn_can_send() -> None:
    """The model asks for tools again after the last allowed round: those calls are not run, and the saved
    answer must not carry them (a tool call without a result makes Anthropic, and OpenAI, refuse every
    later request of the session). Checked by the loopback Anthropic server, which refuses such a history."""
    from rxkit.elements import ErrorElement
    from rxkit.providers.anthropic import AnthropicProvider
    from rxkit.tools import tool
    from tests.providers.anthropic_server import TEXT_STREAM, TEXT_STREAM_TEXT, AnthropicServer, Reply, tool_stream

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    store = MemoryStore()
    async with AnthropicServer() as server:
        server.push(
            Reply(events=tool_stream("", [("toolu_1", "add", '{"a": 1, "b": 2}')])),
            Reply(events=tool_stream("Let me add again.", [("toolu_2", "add", '{"a": 3, "b": 4}')])),
            Reply(events=TEXT_STREAM),
        )
        provider = AnthropicProvider(api_key=server.api_key, base_url=server.url, bus=EventBus())
        try:
            graph = text_graph(provider, store=store, tools=[add], max_tool_rounds=1)
            first = await graph.arun(["add things"])
            assert any(isinstance(e, ErrorElement) and "after 1 rounds" in str(e.error) for e in first)
            history = await store.load("default")
            assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
            assert history[-1].text == "Let me add again." and not history[-1].tool_calls
            second = await graph.arun(["and now?"])  # sends that history: refused before the fix
        finally:
            await provider.aclose()
    assert not [e for e in second if isinstance(e, ErrorElement)], second
    assert answer_texts(second) == [TEXT_STREAM_TEXT]
    assert len(server.requests) == 3


def test_blocking_asks_close_their_connections_when_their_loop_ends() -> None:
    """Each blocking ask() runs its own event loop; the provider's pooled connection must be closed on that
    loop as it ends (it used to stay open until garbage collection, with 'unclosed transport' warnings)."""
    import gc
    import os
    import warnings

    import psutil

    from tests.providers.openai_server import OpenAIServer, Reply, chunk, sse_body

    ready = threading.Event()
    stop: asyncio.Future[None] | None = None
    box: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            nonlocal stop
            stop = asyncio.get_running_loop().create_future()
            async with OpenAIServer(check_auth=False) as server:
                for word in ("one", "two"):
                    server.push(Reply(stream=sse_body([chunk({"content": word}, "stop")])))
                box["url"] = server.url
                box["loop"] = asyncio.get_running_loop()
                ready.set()
                await stop

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    port = int(box["url"].split(":")[2].split("/")[0])
    me = psutil.Process(os.getpid())

    def connections_to_server() -> int:
        return sum(1 for c in me.net_connections("tcp") if c.raddr and c.raddr.port == port)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            chat = Conversation({"type": "openai-compatible", "base_url": box["url"]})
            assert chat.ask("a") == "one"
            assert connections_to_server() == 0
            assert chat.ask("b") == "two"
            assert connections_to_server() == 0
            chat.close()
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
    finally:
        box["loop"].call_soon_threadsafe(lambda: stop is not None and stop.set_result(None))
        thread.join(10)


def test_an_approval_given_before_the_gate_waits_is_not_lost() -> None:
    """A ToolCallPending listener subscribed outside any loop runs inside publish(), before the gate waits
    for that call: its approve() used to be dropped and the turn waited forever."""
    import threading as _threading

    from rxkit.telemetry.events import ToolCallPending
    from rxkit.tools import tool
    from rxkit.tools.approval import ApprovalGate
    from rxkit.types import ToolCall

    @tool(requires_approval=True)
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    bus = EventBus()
    gate = ApprovalGate()
    bus.subscribe(lambda e: gate.approve(e.call_id), ToolCallPending)
    call = ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}')
    chat = Conversation(MockProvider([MockResponse(tool_calls=[call]), "three"]), tools=[add], approver=gate, bus=bus)
    try:
        assert chat.ask("add", timeout=10) == "three"
        # and from another thread, before the turn has even started
        call2 = ToolCall(id="c2", name="add", arguments='{"a": 2, "b": 2}')
        mock2 = MockProvider([MockResponse(tool_calls=[call2]), "four"])
        chat2 = Conversation(mock2, tools=[add], approver=gate)
        approver = _threading.Thread(target=gate.deny, args=("c2", "not now"))
        approver.start()
        approver.join()
        assert chat2.ask("add", timeout=10) == "four"
        (result,) = [p for m in mock2.requests[1].messages for p in m.tool_results]
        assert result.is_error and "not now" in result.content  # the early denial was the one applied
        assert gate.pending == []
        chat2.close()
    finally:
        chat.close()


async def test_output_validation_checks_the_final_answer_not_the_tool_rounds_before_it() -> None:
    """'Let me compute.' in the tool round, then the JSON answer: ValidJSON used to see both joined."""
    from rxkit.tools import tool
    from rxkit.types import ToolCall

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    call = ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}')
    mock = MockProvider([MockResponse("Let me compute.", tool_calls=[call]), '{"sum": 3}'])
    store = MemoryStore()
    graph = text_graph(mock, store=store, tools=[add], output_validators=[ValidJSON()])
    out = await graph.arun(["1 + 2 as JSON"])
    assert isinstance(out[-1], EndOfTurn) and out[-1].response.text == '{"sum": 3}'  # type: ignore[union-attr]
    assert (await store.load("default"))[-1].text == '{"sum": 3}'
    mock_bad = MockProvider([MockResponse("Let me compute.", tool_calls=[call]), "three"])
    with pytest.raises(OutputValidationError):
        await text_graph(mock_bad, tools=[add], output_validators=[ValidJSON()]).arun(["1 + 2 as JSON"])


@pytest.mark.parametrize("provider", ["mock", {"type": "mock"}])
def test_text_graph_refuses_a_provider_name_at_once(provider: Any) -> None:
    """A name or spec used to be accepted and fail at the first turn; Conversation is the one that takes names."""
    with pytest.raises(ConfigError, match=r"needs a provider object, not (str|dict).*Conversation"):
        text_graph(provider)


# -- concurrent turns on one session --------------------------------------------------------------


def _slow_answer(text: str) -> Reply:
    """A streamed answer, one word per event, 20 ms apart (slow enough for turns to overlap)."""
    words = [chunk({"content": w}) for w in text.split(" ")[:1]]
    words += [chunk({"content": f" {w}"}) for w in text.split(" ")[1:]]
    return Reply(
        stream=sse_body([chunk({"role": "assistant", "content": ""}), *words, chunk({}, "stop")]), event_delay=0.02
    )


async def test_two_conversations_on_one_session_queue_their_turns() -> None:
    """Two Conversation objects on one store and session, asked at once against a slowly streaming
    server: both get their answers and the history has both turns, in order (it was a StateError)."""
    async with OpenAIServer() as server:
        server.push(_slow_answer("Paris is the capital"), _slow_answer("Rome is"))
        provider = OpenAIProvider("gpt-4o-mini", base_url=server.url, api_key=API_KEY)
        store = MemoryStore()
        first, second = Conversation(provider, store, "s"), Conversation(provider, store, "s")
        try:
            answers = await asyncio.gather(first.aask("France?"), second.aask("Italy?"))
        finally:
            await provider.aclose()
    assert answers == ["Paris is the capital", "Rome is"]
    assert [m.text for m in await store.load("s")] == ["France?", "Paris is the capital", "Italy?", "Rome is"]
    # the second request was built from the saved first turn
    assert [m["content"] for m in server.requests[1].body["messages"]] == ["France?", "Paris is the capital", "Italy?"]


def test_blocking_asks_from_two_threads_queue_their_turns() -> None:
    """``ask`` runs each call on its own event loop: a waiting turn starts on its own loop (it hung)."""
    mock = MockProvider([MockResponse("slow first", chunk_latency=0.02), MockResponse("second", chunk_latency=0.02)])
    chat = Conversation(mock)
    answers: dict[str, str] = {}
    started = threading.Barrier(2)

    def ask(question: str) -> None:
        started.wait()
        answers[question] = chat.ask(question, timeout=20)

    threads = [threading.Thread(target=ask, args=(q,)) for q in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    history = [m.text for m in asyncio.run(chat.history())]
    chat.close()
    assert sorted(answers.values()) == ["second", "slow first"]
    first = history[0]
    assert history == [
        first,
        answers[first],
        "two" if first == "one" else "one",
        answers["two" if first == "one" else "one"],
    ]


async def test_a_turn_that_cannot_be_saved_keeps_its_answer() -> None:
    """Two runs of a bare text graph on one session (no Conversation to queue them): the loser's
    StateError carries the answer it streamed, so the caller does not lose it."""
    graph = text_graph(MockProvider([MockResponse("slow answer", chunk_latency=0.02), "quick answer"]))
    slow, quick = await asyncio.gather(graph.arun(["one"]), graph.arun(["two"]), return_exceptions=True)
    assert isinstance(slow, list) or isinstance(quick, list)
    [error] = [r for r in (slow, quick) if isinstance(r, BaseException)]
    assert isinstance(error, StateError) and "changed while the turn ran" in str(error)
    assert error.response is not None and error.response.text in ("slow answer", "quick answer")
