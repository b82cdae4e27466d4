"""The local duplex peer: no key, real recorded speech, the embedded model, through duplex_graph("local")."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import pytest

from rxkit.elements import EndOfTurn, ErrorElement, Sentence, SpeechStarted, SpeechStopped, Transcript
from rxkit.graphs import duplex_graph

pytestmark = [pytest.mark.timeout(240), pytest.mark.local_model]


async def test_local_peer_hears_real_speech_and_answers_with_the_embedded_model(
    local_server: str, librivox: list[Path], tmp_path: Path
) -> None:
    from rxkit.providers.local import LocalProvider

    provider = LocalProvider(base_url=local_server, defaults={"max_tokens": 24})
    try:
        graph = duplex_graph("local", provider=provider, source=librivox[1], sink=tmp_path / "reply.wav")
        try:
            out: list[Any] = await graph.arun()
        finally:
            graph.close()  # type: ignore[attr-defined]
    finally:
        await provider.aclose()
    assert [x for x in out if isinstance(x, ErrorElement)] == []
    kinds = [type(x) for x in out]
    assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped) < kinds.index(Transcript) < kinds.index(EndOfTurn)
    heard = [x.text for x in out if isinstance(x, Transcript) and x.final]
    assert len(heard) == 1 and len(heard[0].split()) >= 3
    assert [x for x in out if isinstance(x, Sentence)]  # the model's answer, spoken
    with wave.open(str(tmp_path / "reply.wav"), "rb") as w:
        assert w.getnframes() > w.getframerate() * 0.3  # some reply audio was written
