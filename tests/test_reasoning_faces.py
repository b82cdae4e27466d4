"""Reasoning where people see it (the CLI, dimmed; a notebook, collapsible) and where they must not hear it
(the voice path: sentence_chunker and synthesize pass it through unspoken)."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxkit.audio.tts import TTS
from rxkit.cli.session import DIM, RESET, ChatSession, add_model_arguments
from rxkit.elements import AudioFrame, EndOfTurn, ReasoningDelta, Sentence, TextDelta
from rxkit.notebook import show
from rxkit.operators import sentence_chunker, synthesize
from rxkit.types import ChatResponse, Message, Usage

THINKING = [ReasoningDelta("The user greets me. "), ReasoningDelta("I should greet back. Politely.")]
ANSWER = [TextDelta("Hello there. "), TextDelta("How are you?"), EndOfTurn()]


class RecordingTTS(TTS):
    """Says what it was asked to say, as 10 ms of silence per sentence."""

    name = "recording"
    sample_rate = 16_000

    def __init__(self) -> None:
        super().__init__()
        self.spoken: list[str] = []

    def _synthesize(self, text: str) -> bytes:
        self.spoken.append(text)
        return b"\x00\x00" * 160


async def test_voice_path_never_speaks_reasoning() -> None:
    tts = RecordingTTS()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    out: list[Any] = []
    try:
        reactivex.from_iterable([*THINKING, *ANSWER]).pipe(sentence_chunker(), synthesize(tts)).subscribe(
            out.append, done.set_exception, lambda: done.set_result(out), scheduler=AsyncIOScheduler(loop)
        )
        await asyncio.wait_for(done, 10)
    finally:
        tts.close()
    assert tts.spoken == ["Hello there.", "How are you?"]  # the reasoning was not spoken
    assert [e for e in out if isinstance(e, ReasoningDelta)] == THINKING  # it passed through, untouched
    assert not [e for e in out if isinstance(e, Sentence) and "greet" in e.text]
    assert any(isinstance(e, AudioFrame) for e in out)


class _Conversation:
    def __init__(self, elements: list[Any]) -> None:
        self.elements = elements

    async def astream(self, text: str) -> AsyncIterator[Any]:
        for element in self.elements:
            yield element


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _session(elements: list[Any]) -> ChatSession:
    session = ChatSession.__new__(ChatSession)  # no provider: only answer() is exercised
    session.conversation = _Conversation(elements)
    return session


async def test_cli_shows_reasoning_dimmed_on_a_terminal_and_not_in_a_pipe() -> None:
    terminal = _Terminal()
    await _session([*THINKING, *ANSWER]).answer("hi", terminal)
    thought = "The user greets me. I should greet back. Politely."
    assert terminal.getvalue() == f"{DIM}{thought}{RESET}\nHello there. How are you?\n"
    pipe = io.StringIO()
    await _session([*THINKING, *ANSWER]).answer("hi", pipe)
    assert pipe.getvalue() == "Hello there. How are you?\n"  # a script gets the answer alone


def test_cli_reasoning_option() -> None:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert parser.parse_args(["--reasoning", "high"]).reasoning == "high"
    assert parser.parse_args(["--reasoning", "2048"]).reasoning == 2048
    with pytest.raises(SystemExit):
        parser.parse_args(["--reasoning", "a lot!"])


def test_notebook_shows_reasoning_collapsible_and_apart_from_the_answer() -> None:
    shown: list[dict[str, str]] = []
    view = show(reactivex.from_iterable([*THINKING, *ANSWER]), display=shown.append)
    assert view.text == "Hello there. How are you?"
    assert view.reasoning == "The user greets me. I should greet back. Politely."
    html = shown[-1]["text/html"]
    assert '<details class="rxkit-reasoning" style="opacity:0.6"><summary>reasoning</summary>' in html
    assert html.index("I should greet back") < html.index("Hello there.")
    assert shown[-1]["text/plain"].startswith("(reasoning) The user greets me.")


def test_notebook_footer_counts_reasoning_tokens() -> None:
    usage = Usage(input_tokens=10, output_tokens=50, reasoning_tokens=38)
    response = ChatResponse(message=Message.assistant("Hi"), usage=usage)
    view = show(reactivex.from_iterable([TextDelta("Hi"), EndOfTurn(response)]), display=lambda bundle: None)
    assert "10 in / 50 out tokens (38 reasoning)" in view.footer()
