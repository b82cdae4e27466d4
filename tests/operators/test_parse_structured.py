"""parse_structured and field_text on virtual time; a voice graph speaking one field while the others stream."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from rxkit.audio.tts import TTS
from rxkit.elements import AudioFrame, EndOfTurn, Interrupt, PartialValue, Sentence, TextDelta, TypedValue
from rxkit.errors import ConfigError, StructuredOutputError
from rxkit.graph import Graph
from rxkit.operators import field_text, parse_structured, sentence_chunker, synthesize
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.telemetry.events import EventBus, StructuredResult
from rxkit.testing import run_virtual
from rxkit.types import ChatRequest, Message


class Reply(BaseModel):
    answer: str
    confidence: float
    sources: list[str] = []


def timed(text: str, step: int = 4, start: float = 0.1, gap: float = 0.1) -> list[tuple[float, TextDelta]]:
    return [(round(start + gap * n, 3), TextDelta(text[i : i + step])) for n, i in enumerate(range(0, len(text), step))]


def test_partials_then_the_validated_value_before_the_end_of_turn(bus: EventBus) -> None:
    events = [*timed('{"answer": "Hi there", "confidence": 0.75}'), (2.0, EndOfTurn())]
    result = run_virtual(parse_structured(Reply, bus=bus), events, complete_at=3.0)
    out = result.timeline()
    values = [(t, e.value.model_dump()) for t, e in out if isinstance(e, PartialValue)]
    assert values[0] == (0.1, {"answer": None, "confidence": None, "sources": []})  # "{" opened the object
    answers = [v["answer"] for _, v in values]
    assert answers[:4] == [None, "", "Hi t", "Hi there"]  # the string streams, token by token
    confidences = {v["confidence"] for _, v in values}
    assert confidences == {None, 0.75}  # the number appears only once complete
    assert out[-2:] == [(2.0, TypedValue(Reply(answer="Hi there", confidence=0.75))), (2.0, EndOfTurn())]
    assert not any(isinstance(e, TextDelta) for _, e in out)  # keep_text=False: the text became values
    assert result.completed_at == 3.0 and result.subscription == (0.0, 3.0)
    bus.flush()
    assert [e.ok for e in bus.events(StructuredResult)] == [True]  # type: ignore[attr-defined]


def test_a_turn_that_does_not_fit_ends_the_stream_with_a_typed_error_and_unsubscribes(bus: EventBus) -> None:
    events = [*timed('{"answer": "Hi"}'), (2.0, EndOfTurn()), (2.5, TextDelta("never read"))]
    result = run_virtual(parse_structured(Reply, bus=bus), events, complete_at=3.0)
    assert isinstance(result.error, StructuredOutputError)
    assert result.error.raw == '{"answer": "Hi"}' and result.error.errors == ["confidence: field required"]
    assert result.subscription == (0.0, 2.0)  # upstream disposed at the failure


def test_interrupt_drops_the_turn_and_keep_text_passes_deltas() -> None:
    events = [
        (0.1, TextDelta('{"answer": "abandoned')),
        (0.2, Interrupt()),
        *timed('{"answer": "ok", "confidence": 1}', start=0.3),
    ]
    result = run_virtual(parse_structured(Reply, keep_text=True), [*events, (5.0, EndOfTurn())], complete_at=6.0)
    kinds = [type(e).__name__ for _, e in result.timeline()]
    assert "Interrupt" in kinds and kinds.count("TextDelta") == len(events) - 1
    assert result.timeline()[-2][1] == TypedValue(Reply(answer="ok", confidence=1.0))


def test_completion_without_end_of_turn_still_validates() -> None:
    result = run_virtual(
        parse_structured(list[int]), [(0.1, TextDelta("[1, 2")), (0.2, TextDelta(", 3]"))], complete_at=1.0
    )
    assert [e for _, e in result.timeline()][-1] == TypedValue([1, 2, 3])


def test_field_text_speaks_one_field_while_the_others_still_stream() -> None:
    answer = "Paris is the capital. It is on the Seine."
    text = f'{{"answer": "{answer}", "confidence": 0.9, "sources": ["an atlas", "a encyclopedia"]}}'
    events = [*timed(text, step=3, gap=0.05), (10.0, EndOfTurn())]
    stages = Graph.chain(parse_structured(Reply), field_text("answer"), sentence_chunker())
    result = run_virtual(stages, events, complete_at=11.0)
    sentences = [(t, e) for t, e in result.timeline() if isinstance(e, Sentence)]
    assert [s.text for _, s in sentences] == ["Paris is the capital.", "It is on the Seine."]
    sources_at = next(
        t
        for t, d in events
        if isinstance(d, TextDelta)
        and "sour" in "".join(x.text for tt, x in events if isinstance(x, TextDelta) and tt <= t)
    )
    assert sentences[0][0] < sources_at  # the first sentence is out before the model wrote "sources"
    assert sentences[1][0] <= sources_at
    assert result.timeline()[-1] == (10.0, EndOfTurn())


def test_field_text_rejects_an_empty_path() -> None:
    with pytest.raises(ConfigError, match="field name"):
        field_text("answer.")


class InstantTTS(TTS):
    name = "instant"

    def _synthesize(self, text: str) -> bytes:
        return b"\x00\x00" * 2205  # 100 ms of silence per sentence


async def test_a_voice_graph_speaks_the_answer_field_before_the_model_finishes() -> None:
    answer = "Paris is the capital. It is on the Seine."
    text = f'{{"answer": "{answer}", "confidence": 0.9, "sources": ["an atlas", "an encyclopedia", "a guide"]}}'
    mock = MockProvider([MockResponse(text, chunk_size=4, chunk_latency=0.02)])
    log: list[str] = []
    tts = InstantTTS()

    def note_model(element: object) -> object:
        if isinstance(element, TextDelta):
            log.append(f"model:{element.text}")
        return element

    def note_speech(element: object) -> object:
        if isinstance(element, AudioFrame):
            log.append("audio")
        return element

    from reactivex import operators as ops

    graph = Graph.chain(
        ops.map(note_model),
        parse_structured(Reply),
        field_text("answer"),
        sentence_chunker(),
        synthesize(tts),
        ops.map(note_speech),
    )
    try:
        out = await graph.arun(mock.stream(ChatRequest(messages=[Message.user("Where?")])))
    finally:
        tts.close()
    assert any(isinstance(e, AudioFrame) for e in out)
    first_audio = log.index("audio")
    model_text = "".join(x[6:] for x in log[:first_audio] if x.startswith("model:"))
    assert "Paris is the capital." in model_text and "sources" not in model_text  # spoken while sources stream
    assert any(x.startswith("model:") for x in log[first_audio:])
