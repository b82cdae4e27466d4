"""Partial transcripts prefill the model while the user speaks (``prefill_partials``).

The assistant's side on virtual time (who is asked to anticipate, and when); then the voice graph on real
recorded speech with the embedded model on its llama.cpp server, whose own log says how many prompt tokens
the answering request evaluated.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.tts import Pyttsx3TTS
from rxkit.audio.wav import read_wav
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    Interrupt,
    ReplyStarted,
    SpeechResumed,
    SpeechStopped,
    TentativeEnd,
    Transcript,
)
from rxkit.errors import StateError
from rxkit.floor import Floor
from rxkit.graphs import ConversationSettings, text_graph, transcript_and_reply, voice_graph
from rxkit.graphs._preemptive import HeldStore, Preemption
from rxkit.graphs._voice_stages import assistant
from rxkit.graphs.voice import _opening
from rxkit.prompts import PromptSpec
from rxkit.providers.local import LocalModelServer, LocalProvider
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.scheduling import from_async_iterable
from rxkit.state.memory import MemoryStore
from rxkit.testing import ano_leaks, run_virtual
from rxkit.types import Message
from tests.graphs.test_preemptive import LIBRIVOX, ScriptedText


def anticipating(sch: TestScheduler, partials: bool) -> tuple[Any, ScriptedText, list[tuple[float, str]]]:
    asked: list[tuple[float, str]] = []
    text = ScriptedText(sch)
    st = assistant(
        text, Floor(), preemption=Preemption(), anticipate=lambda t: asked.append((round(sch.clock, 6), t)),
        partials=partials,
    )  # fmt: skip
    return st, text, asked


def test_each_partial_transcript_is_anticipated_only_while_the_assistant_is_idle() -> None:
    sch = TestScheduler()
    st, text, asked = anticipating(sch, partials=True)
    run = run_virtual(st, [
        (0.1, Transcript("what", final=False)), (0.2, Transcript("what is", final=False)),
        (0.3, TentativeEnd(0.25, "what is")),  # a held reply: not idle
        (0.4, Transcript("what is it", final=False)),
        (0.5, SpeechResumed(0.45)), (0.6, Transcript("what is it like", final=False)),  # dropped: idle again
        (0.7, Transcript("what is it like", final=True)),  # answered: busy until its reply is played (never here)
        (0.8, Transcript("and", final=False)), (2.0, Transcript("and you", final=False)),
    ], complete_at=3.0, scheduler=sch)  # fmt: skip
    assert asked == [(0.1, "what"), (0.2, "what is"), (0.6, "what is it like")]
    assert [r for _, r in text.asked] == ["what is", "what is it like"]
    shown = [v.text for v in run.values if isinstance(v, Transcript) and not v.final]
    assert shown == ["what", "what is", "what is it", "what is it like", "and", "and you"]  # partials=True
    assert [v.text for v in run.values if isinstance(v, ReplyStarted)] == ["what is it like"]


def test_partials_made_only_to_anticipate_end_in_the_assistant() -> None:
    sch = TestScheduler()
    st, _, asked = anticipating(sch, partials=False)
    run = run_virtual(st, [
        (0.1, Transcript("hello", final=False)), (0.2, Transcript("hello there", final=True)),
    ], complete_at=2.0, scheduler=sch)  # fmt: skip
    assert asked == [(0.1, "hello")]
    assert [(v.text, v.final) for v in run.values if isinstance(v, Transcript)] == [("hello there", True)]
    assert isinstance(run.values[-1], EndOfTurn)


# -- the voice graph, the embedded model ----------------------------------------------------------------------


class Spy(LocalProvider):
    """The local provider, noting each partial it was asked to anticipate and whether it took it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.anticipated: list[tuple[str, bool]] = []

    def anticipate(self, text: str) -> bool:
        took = super().anticipate(text)
        self.anticipated.append((text, took))
        return took


async def until(condition: Any, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def answers(log: str) -> list[int]:
    """The prompt tokens each answering request evaluated, from the verbose server's log (prompt eval, then
    eval: the prefills generate one token or none, the answers more)."""
    pairs = re.findall(r"prompt eval time = .*/ *(\d+) tokens.*\n.*eval time = .*/ *(\d+) runs", log)
    return [int(n) for n, runs in pairs if int(runs) > 1]


async def test_each_turn_is_prefilled_while_spoken_and_evaluates_fewer_tokens_than_its_words(
    tmp_path: Path, engines: tuple[PocketSphinxSTT, Pyttsx3TTS]
) -> None:
    """Two spoken turns, paced in 20 ms frames at about 4x real time; the second is fed only once the first
    reply and its prefill are done. The system prompt is prefilled when the graph starts, and while each turn
    is spoken its partial transcripts are anticipated: the request that answers a turn then evaluates fewer
    prompt tokens than its own user message holds (without any of it, the first would also evaluate the system
    prompt, and each its message and the reply header: see test_local.py)."""
    quiet = np.random.default_rng(3).normal(0, 33, 16000 * 2).astype(np.int16).tobytes()
    first, second = (read_wav(LIBRIVOX.format(k)).pcm for k in ("0890", "0930"))
    step = 640
    stt, tts = engines
    async with LocalModelServer(progress=False, extra_args=["--verbose", "True"]) as server:
        provider = Spy(base_url=server.base_url, prefill=True, defaults={"max_tokens": 12})
        marks: dict[str, int] = {}

        async def microphone() -> AsyncIterator[AudioFrame]:
            t = 0.0
            for pcm in (quiet[:16000], first, quiet):
                for i in range(0, len(pcm), step):
                    yield AudioFrame(pcm[i : i + step], 16000, 1, t)
                    t += 0.02
                    await asyncio.sleep(0.005)
            await until(lambda: answers(server.output()), "no first reply", 120)
            await until(lambda: provider._prefilling is not None and provider._prefilling.done(), "prefill", 60)
            marks["before"] = len(server.output())
            for pcm in (second, quiet):
                for i in range(0, len(pcm), step):
                    yield AudioFrame(pcm[i : i + step], 16000, 1, t)
                    t += 0.02
                    await asyncio.sleep(0.005)  # about 4x real time: the partials come while it is "spoken"
            await until(lambda: len(answers(server.output())) == 2, "no second reply", 120)

        async with ano_leaks():
            try:
                graph = voice_graph(
                    provider, source=from_async_iterable(microphone), sink=tmp_path / "r.wav", stt=stt, tts=tts,
                    end_of_turn="silence", stop_ms=700, vad_stop_ms=200, preemptive=False,
                    prompt="Answer in one short sentence.",
                )  # fmt: skip
                out = await graph.arun()
                graph.close()
            finally:
                await provider.aclose()
        log = server.output()
        turns = transcript_and_reply(out)
        assert len(turns) == 2, turns
        counts = [await _count(server.base_url, said) for said, _ in turns]
    for said, _ in turns:
        took = [t for t, ok in provider.anticipated if ok and said.startswith(t.rsplit(" ", 1)[0])]
        assert took, (provider.anticipated, said)
    evaluated = answers(log[: marks["before"]]) + answers(log[marks["before"] :])
    assert len(evaluated) == 2, log[-3000:]
    assert all(n < count for n, count in zip(evaluated, counts, strict=True)), (evaluated, counts, turns)


async def _count(base_url: str, said: str) -> int:
    """Tokens of the user's message alone, as the server's tokenizer counts them."""
    provider = LocalProvider(base_url=base_url)
    try:
        n = await provider.count_input_tokens([Message.user(said)])
    finally:
        await provider.aclose()
    assert n is not None
    return n - 2 - 3  # less the user header ("<|im_start|>user", "\n") and the reply header's 3 tokens


async def test_no_partial_is_anticipated_after_a_cut_reply_until_a_reply_ends_whole_again() -> None:
    """A reply cut by an interrupt leaves a history that ends with what was heard, not with what the model
    wrote: what the provider would prefill is not the next prompt, so partials wait for the next whole reply."""
    slow = MockResponse("A long answer that is cut.", chunk_size=4, chunk_latency=0.2)
    provider = MockProvider(["First answer.", slow, "Third answer."])
    store, floor = MemoryStore(), Floor()
    asked: list[str] = []
    st = assistant(text_graph(provider, store=store), floor, store=store, anticipate=asked.append, partials=False)
    feed: Subject[Any] = Subject()
    out: list[Any] = []

    def ends() -> list[EndOfTurn]:
        return [x for x in out if isinstance(x, EndOfTurn)]

    async with ano_leaks():
        sub = st(feed).subscribe(out.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
        feed.on_next(Transcript("one"))
        await until(lambda: len(ends()) == 1, "no first answer", 10)
        floor.reply_over(ends()[0])  # played (what the speaker's playout does)
        feed.on_next(Transcript("and", final=False))
        feed.on_next(Transcript("two"))
        await until(lambda: any(isinstance(x, ReplyStarted) and x.text == "two" for x in out), "no second", 10)
        await asyncio.sleep(0.3)
        feed.on_next(Interrupt("barge-in"))  # cut while the model writes
        await until(lambda: not floor.busy, "the cut reply still holds the floor", 10)
        feed.on_next(Transcript("so", final=False))  # the history ends with what was heard: not anticipated
        feed.on_next(Transcript("three"))
        await until(lambda: any(e.response is not None and e.response.text == "Third answer." for e in ends()),
                    "no third answer", 10)  # fmt: skip
        floor.reply_over(ends()[-1])
        feed.on_next(Transcript("then", final=False))  # a whole reply again: anticipated
        sub.dispose()
    assert asked == ["and", "then"]


async def test_the_opening_is_the_first_prompt_the_text_graph_builds_less_the_users_message() -> None:
    """What the voice graph hands the provider to prefill at its start is exactly what the text graph's first
    request holds before the user's message: the rendered system template and the stored history that fits."""
    store = MemoryStore()
    history = [Message.user("a" * 400), Message.assistant("long ago"), Message.user("hi"), Message.assistant("hello")]
    await store.append_turn("s", history)
    spec = PromptSpec(name="p", system="You are {{ mood }} with {{ name }}.", variables={"mood": "calm", "name": "x"})
    chat = ConversationSettings(store=store, session="s", prompt=spec, variables={"name": "Ann"}, max_history_tokens=30)
    got: list[list[Message]] = []
    await _opening(got.append, chat)()
    provider = MockProvider(["fine"])
    text_graph(provider, chat).run(["how are you"])
    assert got == [provider.requests[0].messages[:-1]]
    assert got[0][0].text == "You are calm with Ann." and got[0][1].text == "long ago"  # the oldest did not fit


async def test_the_opening_runs_once_at_the_start_and_is_cancelled_when_the_stage_is_disposed() -> None:
    started: list[float] = []
    cancelled: list[bool] = []

    async def opening() -> None:
        started.append(time.monotonic())
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def failing() -> None:
        raise StateError("the store is down")

    feed: Subject[Any] = Subject()
    async with ano_leaks():
        loop_scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        sub = assistant(ScriptedText(TestScheduler()), Floor(), opening=opening)(feed).subscribe(
            scheduler=loop_scheduler
        )
        await until(lambda: started, "the opening did not start", 5)
        sub.dispose()
        await until(lambda: cancelled, "the opening was not cancelled", 5)
        out: list[Any] = []
        sub = assistant(ScriptedText(TestScheduler()), Floor(), opening=failing)(feed).subscribe(
            out.append, out.append, scheduler=loop_scheduler
        )
        await asyncio.sleep(0.05)  # a failed head start is not the stage's error: the first turn reports it
        sub.dispose()
    assert len(started) == 1 and out == []


async def test_a_dropped_held_reply_runs_the_opening_again_and_a_used_one_does_not() -> None:
    """A held reply the model finished and the user then spoke over is the provider's idea of the conversation's
    end, which the store never saw: the opening (store history, system prompt) is prefilled again."""
    calls: list[float] = []

    async def opening() -> None:
        calls.append(time.monotonic())

    store, preemption = MemoryStore(), Preemption()
    provider = MockProvider(["Held and dropped.", "The answer."])
    text = text_graph(provider, store=HeldStore(store, preemption), hold_tools=preemption.wait)
    st = assistant(text, Floor(), store=store, preemption=preemption, opening=opening)
    feed: Subject[Any] = Subject()
    out: list[Any] = []
    async with ano_leaks():
        sub = st(feed).subscribe(out.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
        await until(lambda: len(calls) == 1, "the opening did not run at the start", 5)
        feed.on_next(TentativeEnd(1.0, "who is"))
        await until(lambda: provider.requests, "no held reply", 5)
        await asyncio.sleep(0.2)  # the model finished it, held
        feed.on_next(SpeechResumed(1.5))
        await until(lambda: len(calls) == 2, "the opening did not run again after the drop", 5)
        feed.on_next(TentativeEnd(2.0, "who is she"))
        await until(lambda: len(provider.requests) == 2, "no second held reply", 5)
        feed.on_next(SpeechStopped(2.0, 1.0))
        feed.on_next(Transcript("who is she"))  # confirmed: used, no new opening
        await until(lambda: any(isinstance(x, EndOfTurn) for x in out), "no answer", 5)
        await asyncio.sleep(0.1)
        sub.dispose()
    assert len(calls) == 2
    assert [m.text for m in await store.load("default")] == ["who is she", "The answer."]
