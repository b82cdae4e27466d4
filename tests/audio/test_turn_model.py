"""SmartTurn: Pipecat's Smart Turn v3.2 on real recorded speech, its features against Pipecat's own, its packaging."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rxkit.audio.turn_model import (
    SMART_TURN_HINT,
    SmartTurn,
    smart_turn_available,
    smart_turn_model_path,
    whisper_features,
)
from rxkit.errors import AudioError, ConfigError, MissingExtraError, ModelNotFoundError
from rxkit.notebook.samples import speech_sample

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
PAUSE = bytes(6400)  # the 200 ms of silence after which the turn detector asks the model


def librivox(n: str) -> bytes:
    with wave.open(str(LIBRIVOX / f"sense_and_sensibility_01_austen_64kb-{n}.wav")) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)
        return w.readframes(w.getnframes())


def cut(pcm: bytes, fraction: float) -> bytes:
    """The recording cut in the middle of a clause, then the short pause that makes the detector ask."""
    return pcm[: int(len(pcm) // 2 * fraction) * 2] + PAUSE


@pytest.fixture(scope="module")
def model() -> Iterator[SmartTurn]:
    m = SmartTurn()
    yield m
    m.close()


def test_features_match_pipecats_own_on_real_speech() -> None:
    from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

    for pcm in (librivox("0870"), speech_sample("something")):
        x = np.zeros(128000, dtype=np.float32)
        a = np.frombuffer(pcm, dtype=np.int16)[-128000:].astype(np.float32) / 32768
        x[-len(a) :] = a  # zero-padded at the start, as Pipecat pads a short turn
        ours, theirs = whisper_features(x), compute_whisper_log_mel_features(x)
        assert ours.shape == theirs.shape == (80, 800) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_whisper_features_refuses_a_window_of_another_length() -> None:
    with pytest.raises(ConfigError, match="128000 samples"):
        whisper_features(np.zeros(16000, dtype=np.float32))


def test_complete_sentences_are_judged_complete_and_cut_ones_incomplete(model: SmartTurn) -> None:
    complete = {
        "0870": librivox("0870"),  # "... how much there might be prudently in his power to do for them"
        "0890": librivox("0890"),  # "unless to be rather cold hearted and rather selfish is to be ill disposed"
        "0920": librivox("0920"),  # "had he married a more amiable woman he might have been made ... than he was"
        "goforward": speech_sample("goforward"),
        "something": speech_sample("something"),
    }
    cuts = {"0870": 0.6, "0890": 0.5, "0920": 0.6, "something": 0.6}  # "... go somewhere and do some-"
    whole = {name: model.probability(pcm) for name, pcm in complete.items()}
    cut_short = {name: model.probability(cut(complete[name], f)) for name, f in cuts.items()}
    assert all(p >= model.threshold for p in whole.values()), whole
    assert all(p < model.threshold for p in cut_short.values()), cut_short
    assert all(cut_short[name] < whole[name] - 0.5 for name in cuts), (whole, cut_short)


def test_other_rates_and_stereo_are_converted_for_the_model(model: SmartTurn) -> None:
    from rxkit.audio.convert import resample

    pcm = librivox("0890")
    at_16k = model.probability(pcm)
    at_48k = model.probability(resample(pcm, 16000, 48000).tobytes(), 48000)
    stereo = np.repeat(np.frombuffer(pcm, dtype=np.int16), 2).tobytes()
    assert at_48k == pytest.approx(at_16k, abs=0.05)
    assert model.probability(stereo, 16000, 2) == pytest.approx(at_16k, abs=1e-4)


def test_a_long_turn_is_judged_on_its_last_eight_seconds(model: SmartTurn) -> None:
    tail = librivox("0890")
    long_turn = librivox("0870") + librivox("0920") + tail  # about 18 s; the last 8 s hold only the end
    assert model.probability(long_turn) == pytest.approx(model.probability(long_turn[-256000:]), abs=1e-6)


def test_submit_returns_at_once_and_judges_on_a_thread_that_then_ends(model: SmartTurn) -> None:
    before = set(threading.enumerate())
    future = model.submit(speech_sample("goforward"), 16000, 1)
    assert any(t.name == "rxkit-turn-model" for t in set(threading.enumerate()) - before) or future.done()
    assert 0.5 <= future.result(timeout=60) <= 1.0
    for t in set(threading.enumerate()) - before:
        t.join(5)
    assert {t for t in threading.enumerate() if t.is_alive()} <= before


def test_a_failure_is_a_typed_error_and_a_closed_model_says_so() -> None:
    m = SmartTurn()
    future = m.submit(b"\x00", 16000, 1)  # half a sample
    with pytest.raises(ConfigError, match="even number of bytes"):
        future.result(timeout=60)
    m.close()
    with pytest.raises(AudioError, match="closed"):
        m.probability(speech_sample("goforward"))


def test_the_model_is_found_in_the_wheel_without_importing_pipecat() -> None:
    code = (
        "import sys; from rxkit.audio.turn_model import SmartTurn, smart_turn_model_path\n"
        "m = SmartTurn(); m.close()\n"
        "print(smart_turn_model_path().name, any(n.startswith('pipecat') for n in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["smart-turn-v3.2-cpu.onnx", "False"]
    assert smart_turn_model_path().is_file() and smart_turn_available()


def test_without_the_turn_extra_a_clear_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    with pytest.raises(MissingExtraError, match=r"pip install 'rxkit\[turn\]'") as info:
        SmartTurn()
    assert info.value.extra == "turn" and str(info.value) == SMART_TURN_HINT
    assert not smart_turn_available()


def test_a_bad_model_path_or_threshold_is_a_clear_error(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with pytest.raises(ModelNotFoundError, match="smart-turn model file not found"):
        SmartTurn(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelNotFoundError, match="cannot load the smart-turn model"):
        SmartTurn(junk)
    with pytest.raises(ConfigError, match="threshold"):
        SmartTurn(threshold=1.5)
    assert {t for t in threading.enumerate() if t.is_alive()} <= before  # a failed load leaves no thread


def test_an_explicit_model_path_is_used_and_no_thread_is_left() -> None:
    before = set(threading.enumerate())
    with SmartTurn(model_path=smart_turn_model_path(), threshold=0.7) as m:
        assert m.threshold == 0.7 and 0.0 <= m.probability(speech_sample("goforward")) <= 1.0
    m.close()  # idempotent
    assert {t for t in threading.enumerate() if t.is_alive()} <= before
