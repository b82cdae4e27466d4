"""The graph builders' settings: typed groups, loadable from a file, with today's keywords still accepted."""

from __future__ import annotations

import asyncio
import doctest
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex
import reactivex.operators as ops
import yaml
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

import rxkit.graphs._settings
from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.tts import Pyttsx3TTS
from rxkit.elements import AudioFrame, EndOfTurn, ReplyStarted, Transcript
from rxkit.errors import ConfigError
from rxkit.floor import Floor
from rxkit.graph.stage import Stage
from rxkit.graphs import (
    AudioDevices,
    BargeInPolicy,
    ConversationSettings,
    TurnDetection,
    VoiceAssistant,
    VoiceSettings,
    text_graph,
    transcript_and_reply,
    voice_graph,
    voice_settings,
)
from rxkit.graphs._voice_stages import assistant
from rxkit.operators import BargeIn
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.providers.registry import ProviderSpec
from rxkit.state.memory import MemoryStore
from tests.audio.pulse import PulseAudio

TOML = """\
[audio]
output_device = "spk"
block_ms = 30

[turn_detection]
vad_aggressiveness = 3
stop_ms = 500
min_speech_ms = 200

[barge_in]
strategy = "after_sentence"
echo_tail_ms = 150

[conversation]
provider = { type = "mock", model = "m" }
session = "kitchen"
prompt = "You are terse."
max_tool_rounds = 2
"""
KEYWORDS: dict[str, Any] = dict(
    output_device="spk",
    block_ms=30,
    vad_aggressiveness=3,
    stop_ms=500,
    min_speech_ms=200,
    barge_in="after_sentence",
    echo_tail_ms=150,
    session="kitchen",
    prompt="You are terse.",
    max_tool_rounds=2,
)


@pytest.fixture(scope="module")
def tts() -> Iterator[Pyttsx3TTS]:
    engine = Pyttsx3TTS()
    yield engine
    engine.close()


def recording(key: str) -> Path:
    """A LibriVox sentence (16 kHz mono WAV), as in test_voice."""
    path = Path(f"/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-{key}.wav")
    if not path.is_file():
        pytest.fail("pocketsphinx-testdata is not installed: run `bash .ci/setup`")
    return path


async def drive(stage: Stage[Any, Any], *items: Any, until: type) -> tuple[Subject[Any], list[Any]]:
    """Feed ``items`` to ``stage`` on the loop; return the feed and the output once an ``until`` came out."""
    feed: Subject[Any] = Subject()
    out: list[Any] = []
    stage(feed).subscribe(out.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
    for x in items:
        feed.on_next(x)
    deadline = time.monotonic() + 10
    while not any(isinstance(x, until) for x in out):
        assert time.monotonic() < deadline, f"no {until.__name__} in {out}"
        await asyncio.sleep(0.01)
    return feed, out


def write(tmp_path: Path, name: str) -> Path:
    """TOML as that file kind (``voice.toml``, ``voice.yaml``, ``voice.json``)."""
    import tomllib

    path = tmp_path / name
    data = tomllib.loads(TOML)
    suffix = path.suffix
    path.write_text(TOML if suffix == ".toml" else yaml.safe_dump(data) if suffix == ".yaml" else json.dumps(data))
    return path


def test_doctests() -> None:
    assert doctest.testmod(rxkit.graphs._settings).failed == 0


@pytest.mark.parametrize("name", ["voice.toml", "voice.yaml", "voice.json"])
def test_a_file_holds_the_same_settings_as_the_keywords(tmp_path: Path, name: str) -> None:
    from_file = VoiceSettings.from_file(write(tmp_path, name))
    assert from_file.audio == AudioDevices(output_device="spk", block_ms=30)
    assert from_file.barge_in == BargeInPolicy(strategy="after_sentence", echo_tail_ms=150)
    assert from_file.conversation.provider == ProviderSpec(type="mock", model="m")
    without_provider = from_file.replace(conversation=from_file.conversation.replace(provider=None))
    assert without_provider == voice_settings(**KEYWORDS)
    assert VoiceSettings().with_options(**KEYWORDS) == voice_settings(**KEYWORDS)


async def test_settings_from_a_file_build_the_same_graph_as_keywords(tmp_path: Path, tts: Pyttsx3TTS) -> None:
    runs = []
    for settings, options in ((VoiceSettings.from_file(write(tmp_path, "voice.toml")), {}), (None, KEYWORDS)):
        provider, store = MockProvider(), MemoryStore()
        with PocketSphinxSTT() as stt:  # a fresh decoder each: a warm one hears the same audio differently
            graph = voice_graph(
                provider, settings, source=recording("0930"), sink=tmp_path / "r.wav", stt=stt, tts=tts, store=store,
                **options,
            )  # fmt: skip
            descriptions = {name: stage.description for name, stage in graph.nodes.items()}
            out = await graph.arun()
        request = [(m.role, m.text) for m in provider.requests[0].messages]
        runs.append((descriptions, transcript_and_reply(out), request, await store.load("kitchen")))
    assert runs[0] == runs[1]
    descriptions, turns, request, history = runs[0]
    assert descriptions["vad"] == "webrtcvad, aggressiveness 3, 20 ms"
    assert descriptions["duplex_gate"] == "half duplex, echo tail 150 ms"
    assert descriptions["barge_in"].endswith("after_sentence")
    ((heard, answered),) = turns
    assert heard and answered == heard  # the mock echoes
    assert request == [("system", "You are terse."), ("user", heard)]
    assert [m.text for m in history] == [heard, heard]  # saved in the given store, under the file's session


def test_groups_given_one_by_one_replace_theirs_and_keywords_come_last() -> None:
    base = VoiceSettings(turn_detection=TurnDetection(stop_ms=500, start_ms=100))
    settings = voice_settings(base, turn_detection=TurnDetection(stop_ms=900), barge_in="ignore", headphones=True)
    assert settings.turn_detection == TurnDetection(stop_ms=900)  # the group replaced whole
    assert settings.barge_in == BargeInPolicy(strategy="ignore", headphones=True)
    assert voice_settings(base, stop_ms=600).turn_detection == TurnDetection(stop_ms=600, start_ms=100)
    assert base.turn_detection.stop_ms == 500  # settings are frozen: applying keywords makes a copy
    with pytest.raises(ValueError, match="frozen"):
        base.turn_detection.stop_ms = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[turn_detection]\nstop_ms = -5\n", "turn_detection.stop_ms"),
        ("[turn_detection]\nvad_aggressiveness = 7\n", "turn_detection.vad_aggressiveness"),
        ('[audio]\ninput_devise = "Secret Mic"\n', "audio.input_devise"),
        ("[audio]\ninput_rate = 44100\n", "audio.input_rate"),
        ('[barge_in]\nstrategy = "politely"\n', "barge_in.strategy"),
        ('[conversation]\nstore = "chat.db"\n', "conversation.store"),
        ('[conversation]\nsession = ""\n', "conversation.session"),
        ("turn_detection = 5\n", "turn_detection"),
        ('[extra]\nx = "y"\n', "extra"),
    ],
)
def test_a_bad_field_in_a_file_is_a_config_error_naming_it_and_not_its_value(
    tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "voice.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        VoiceSettings.from_file(path)
    message = str(caught.value)
    assert f"invalid VoiceSettings in {path}: {field}:" in message
    for value in ("-5", "7", "Secret Mic", "44100", "politely", "chat.db"):
        assert value not in message.replace(str(path), "")
    if "input_devise" in field:
        assert "known fields: input_device, output_device" in message


def test_a_file_that_is_no_mapping_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "voice.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"VoiceSettings in .* must be a mapping"):
        VoiceSettings.from_file(tmp_path / "voice.json")


def test_bad_keywords_are_config_errors_naming_the_field_and_unknown_ones_type_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"turn_detection\.stop_ms: input should be greater than 0"):
        voice_graph(MockProvider(), source=recording("0880"), sink=tmp_path / "r.wav", stop_ms=-1)
    with pytest.raises(ConfigError, match=r"barge_in\.strategy"):
        voice_graph(MockProvider(), barge_in="sometimes")
    with pytest.raises(ConfigError, match=r"preemptive_ms \(300.0\) must be at most vad_stop_ms \(200"):
        voice_graph(MockProvider(), preemptive_ms=300)
    with pytest.raises(TypeError, match="stop_msec"):
        voice_graph(MockProvider(), stop_msec=500)
    with pytest.raises(ConfigError, match="max_tool_rounds"):
        text_graph(MockProvider(), max_tool_rounds="many")
    with pytest.raises(TypeError, match="stop_ms"):
        text_graph(MockProvider(), stop_ms=500)  # a voice setting, not a conversation's


def test_the_text_graph_takes_conversation_settings_and_keywords() -> None:
    store = MemoryStore()
    chat = ConversationSettings(store=store, session="s", prompt="Be brief.")
    provider = MockProvider(["One.", "Two."])
    text_graph(provider, chat).run(["hi"])
    text_graph(provider, chat, prompt="Be long.").run(["again"])
    assert [m.messages[0].text for m in provider.requests] == ["Be brief.", "Be long."]
    assert len(asyncio.run(store.load("s"))) == 4


async def test_a_cut_turn_is_saved_in_the_store_and_session_it_was_handed() -> None:
    store = MemoryStore()
    provider = MockProvider([MockResponse("never heard", first_token_latency=5.0), "Fresh."])
    text = text_graph(provider, ConversationSettings(store=store, session="kitchen"))
    feed, out = await drive(
        assistant(text, Floor(), store=store, session="kitchen"), Transcript("one"), until=ReplyStarted
    )
    while not provider.requests:
        await asyncio.sleep(0.01)
    feed.on_next(BargeIn())
    feed.on_next(Transcript("two"))
    while not any(isinstance(x, EndOfTurn) for x in out):
        await asyncio.sleep(0.01)
    assert [(m.role, m.text) for m in await store.load("kitchen")] == [
        ("user", "one"),
        ("user", "two"),
        ("assistant", "Fresh."),
    ]
    assert await store.load("default") == []


async def test_voice_assistant_builds_the_provider_the_settings_name(tmp_path: Path) -> None:
    settings = VoiceSettings.from_data({"conversation": {"provider": "mock"}})
    async with VoiceAssistant(settings=settings, source=recording("0930"), sink=tmp_path / "r.wav") as va:
        assert va.provider.name == "mock"
        ((heard, answered),) = transcript_and_reply(await va.arun())
    assert heard and answered == heard
    with pytest.raises(ConfigError, match=r"conversation\.provider"):
        VoiceAssistant(source=recording("0930"))


class _SilentTTS:
    sample_rate = 22050  # the graph reads only this while it is built


async def source_frames(graph: Any) -> list[AudioFrame]:
    first = next(iter(graph.nodes.values()))
    frames: list[AudioFrame] = await first(reactivex.empty()).pipe(ops.to_list())
    return frames


async def test_the_audio_settings_shape_what_the_source_sends(tmp_path: Path) -> None:
    from rxkit.audio.wav import write_wav

    options: dict[str, Any] = dict(sink=tmp_path / "r.wav", stt=object(), tts=_SilentTTS())
    speech = recording("0880")  # 16 kHz mono: passes as it is, cut into blocks
    graph = voice_graph(MockProvider(), source=speech, block_ms=30, **options)
    blocks = {round(f.duration * 1000) for f in (await source_frames(graph))[:-1]}
    assert blocks == {30}
    stereo = tmp_path / "stereo.wav"
    write_wav(stereo, AudioFrame(np.zeros(44100 * 2, dtype=np.int16).tobytes(), 44100, 2))
    graph = voice_graph(MockProvider(), source=stereo, audio=AudioDevices(input_rate=32000), **options)
    assert {(f.sample_rate, f.channels) for f in await source_frames(graph)} == {(32000, 1)}  # converted to it


@pytest.mark.audio
def test_the_devices_open_at_the_audio_settings_rates(pulse: PulseAudio, tmp_path: Path) -> None:
    mic = voice_graph(MockProvider(), sink=tmp_path / "r.wav", stt=object(), tts=_SilentTTS(), input_rate=32000,
                      block_ms=10).nodes["microphone"]  # fmt: skip
    assert mic.description.endswith(", 32000 Hz, 1 ch, 10 ms)")
    options: dict[str, Any] = dict(source=recording("0880"), stt=object(), tts=_SilentTTS())
    voice_graph(MockProvider(), output_rate=48000, **options)
    with pytest.raises(ConfigError, match="at 11025 Hz"):  # the speaker's 20 ms blocks are no whole samples there
        voice_graph(MockProvider(), output_rate=11025, **options)
    with pytest.raises(ConfigError, match="at 11025 Hz"):
        voice_graph(MockProvider(), **{**options, "tts": type("TTS", (), {"sample_rate": 11025})()})


def test_the_speech_group_picks_the_recogniser_and_checks_its_model(tmp_path: Path) -> None:
    from rxkit.errors import ModelNotFoundError
    from rxkit.graphs import SpeechRecognition

    assert VoiceSettings().speech == SpeechRecognition(stt_engine="pocketsphinx")  # offline, no model to fetch
    with pytest.raises(ConfigError, match=r"needs speech\.stt_model"):
        SpeechRecognition(stt_engine="vosk").build()
    with pytest.raises(ConfigError, match="goes with stt_engine"):
        SpeechRecognition(stt_model="tiny.en").build()
    with pytest.raises(ModelNotFoundError, match="not a CTranslate2 Whisper model directory"):
        voice_settings(stt_engine="whisper", stt_model=str(tmp_path)).speech.build()
    with SpeechRecognition().build() as stt:
        assert isinstance(stt, PocketSphinxSTT)


def test_the_preemptive_pause_is_100_ms_or_vad_stop_ms_if_shorter_or_as_set() -> None:
    assert TurnDetection().preemptive_pause_ms() == 100
    assert TurnDetection(vad_stop_ms=80).preemptive_pause_ms() == 80
    assert TurnDetection(preemptive_ms=150).preemptive_pause_ms() == 150
