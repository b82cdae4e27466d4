"""Voice mode: a spoken conversation through a microphone and a speaker (or WAV files), with barge-in.

::

    microphone -> duplex_gate -> vad -> turn_detector -> barge_in -> transcribe
               -> text (the text-mode graph: state, prompt, provider, tools)
               -> sentence_chunker -> synthesize -> speaker

The user's turn is found by the VAD (Silero by default, or webrtcvad) and
the turn detector, transcribed while it is spoken (pocketsphinx by default,
or vosk), answered by the text-mode graph, cut into sentences and spoken sentence by sentence, so the
first sentence plays while the model is still writing the rest (the very first chunk is
its first clause, ``first_clause_words``, 4 words or more, by default).

Barge-in: the user speaking while the assistant is busy (thinking or
speaking) pauses the reply, and once it is confirmed speech (``confirm_ms``,
500 ms by default) interrupts it; a cough or a click resumes the reply
instead (a :class:`~rxkit.operators.FalseInterruption`). The interrupt:
``barge_in="immediate"`` (default) stops playback at once, cancels the
model call, tools and synthesis and drops queued audio;
``"after_sentence"`` lets the sentence playing finish first; ``"ignore"``
answers the new turn afterwards. A desktop has no echo cancellation, so by
default the mic is deaf while the reply plays (half duplex); with
``headphones=True`` it listens all the time and the user can talk over the
reply.

Preemptive generation (``preemptive=True``; off by default): at the first
pause that may end the turn, the reply is started at once and held
(nothing played, no tool run, nothing saved) until the turn is confirmed
with the same transcript; if the user speaks on, it is dropped unheard.
Each one used or dropped is a :class:`~rxkit.telemetry.events.PreemptiveReply`.

Latency: each turn publishes :class:`~rxkit.telemetry.events.UserSpeechEnded`,
:class:`~rxkit.telemetry.events.FinalTranscript`, :class:`~rxkit.telemetry.events.FirstModelToken`,
:class:`~rxkit.telemetry.events.FirstTTSAudio`, :class:`~rxkit.telemetry.events.FirstAudioOut` and
a :class:`~rxkit.telemetry.events.VoiceTurnLatency` summary on the graph's bus.

From a script::

    with VoiceAssistant("local") as va:          # the default mic and speaker
        va.run()                                 # until Ctrl-C

    with VoiceAssistant("mock", source="question.wav", sink="reply.wav") as va:
        elements = va.run()                      # the files in, the reply out; returns when done

Or as a graph, to compose or draw: ``voice_graph(provider, source=..., sink=...)``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import reactivex.operators as ops
from reactivex import Observable, abc
from reactivex.subject import Subject

from rxkit.audio.stt import STT
from rxkit.audio.tts import TTS
from rxkit.audio.vad import VAD_SAMPLE_RATES
from rxkit.elements import AudioFrame, EndOfTurn, ErrorElement, Interrupt, TextDelta, Transcript
from rxkit.errors import ConfigError
from rxkit.floor import Floor
from rxkit.graph import Graph
from rxkit.graph.stage import Stage
from rxkit.graphs._preemptive import HeldStore, Preemption
from rxkit.graphs._settings import AudioDevices, BargeInPolicy, ConversationSettings, TurnDetection, VoiceSettings
from rxkit.graphs._voice_stages import assistant, audio_source, timed
from rxkit.graphs.text import text_graph
from rxkit.operators import barge_in as barge_in_stage
from rxkit.operators import (
    duplex_gate,
    playout,
    sentence_chunker,
    synthesize,
    transcribe,
    turn_detector,
    vad,
)
from rxkit.prompts import plan_prompt
from rxkit.providers.base import Provider
from rxkit.providers.registry import ProviderSpec, create_provider
from rxkit.scheduling import run_blocking
from rxkit.state.memory import MemoryStore
from rxkit.telemetry.events import EventBus, TurnModelMissing, default_bus
from rxkit.types import Message

__all__ = ["VoiceAssistant", "VoiceGraph", "transcript_and_reply", "voice_graph", "voice_settings"]


class VoiceGraph(Graph):
    """The voice graph: runs on its own source (the graph's input may add Interrupts or typed Transcripts).

    ``floor`` is its shared conversation state; :meth:`close` closes the
    speech engines it created (engines passed in stay yours).
    """

    floor: Floor
    owned: list[Any]
    end_of_turn: str  # what ends a user turn: "smart-turn" or "silence"
    turn_model: Any = None  # the end-of-turn model it built (closed by close()), or None

    def __call__(self, source: Observable[Any]) -> Observable[Any]:
        wired = super().__call__(source)

        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            self.floor.reset()  # a new conversation
            return wired.subscribe(observer, scheduler=scheduler)

        return Observable(subscribe)

    def close(self) -> None:
        """Close the speech engines this graph created (their worker threads). Idempotent."""
        owned, self.owned = self.owned, []
        for engine in reversed(owned):
            engine.close()
        if self.turn_model is not None:
            self.turn_model.close()


def voice_graph(
    provider: Provider,
    settings: VoiceSettings | None = None,
    *,
    source: Observable[Any] | str | os.PathLike[str] | None = None,
    sink: Stage[Any, Any] | str | os.PathLike[str] | None = None,
    stt: STT | None = None,
    tts: TTS | None = None,
    realtime: bool = False,
    partials: bool = False,
    audio: AudioDevices | None = None,
    turn_detection: TurnDetection | None = None,
    barge_in: BargeInPolicy | str | None = None,
    conversation: ConversationSettings | None = None,
    bus: EventBus | None = None,
    **options: Any,
) -> VoiceGraph:
    """The voice graph, named ``"voice"``. Run it with ``run()``, ``astream()`` or ``subscribe()`` (no input needed).

    ``source``: None for the microphone, a WAV file path (read as fast as
    the graph takes it, or in real time with ``realtime=True``; other rates
    and stereo are converted), or any observable of
    :class:`~rxkit.elements.AudioFrame`. ``sink``: None for the speaker, a
    WAV file path for the reply audio, or a sink stage. ``stt``/``tts``:
    speech engines (default: ``PocketSphinxSTT()`` and ``Pyttsx3TTS()``,
    created here and closed by :meth:`VoiceGraph.close`). ``partials=True``
    also emits partial transcripts while the user speaks.

    The rest is tuned by :class:`~rxkit.graphs.VoiceSettings` (``settings``,
    for example from :meth:`~rxkit.graphs.VoiceSettings.from_file`), whose
    groups may also be given one by one: ``audio`` (devices, rates, block
    size), ``turn_detection`` (the VAD and the turn detector), ``barge_in``
    (a :class:`~rxkit.graphs.BargeInPolicy`, or just its strategy's name;
    see the module docstring) and ``conversation`` (the text-mode graph:
    :func:`~rxkit.graphs.text_graph`; ``two_phase=True`` keeps tool rounds
    silent and speaks only the final answer). Any field of a group is also
    a keyword of its own (``stop_ms=500``, ``headphones=True``,
    ``store=...``), applied last. A bad value is a
    :class:`~rxkit.errors.ConfigError` naming the field.

    What comes out, per turn: ``SpeechStarted``, ``SpeechStopped``, the
    final ``Transcript``, ``ReplyStarted``, each ``Sentence`` as it is
    synthesized, ``PlaybackStarted`` / ``PlaybackFinished`` (speaker only),
    then ``EndOfTurn(response)``; a ``BargeIn`` (or your ``Interrupt``) when
    a reply is cut; an ``ErrorElement`` (then ``EndOfTurn``) when a turn fails.
    One conversation at a time per graph (they share its :class:`Floor`).

    >>> g = voice_graph(MockProvider(), source="question.wav", sink="reply.wav", stop_ms=500)  # doctest: +SKIP
    >>> [e.text for e in g.run() if isinstance(e, Transcript)]                                  # doctest: +SKIP
    ['what is the capital of france']
    """
    settings = voice_settings(settings, audio, turn_detection, barge_in, conversation, **options)
    devices, turns, policy = settings.audio, settings.turn_detection, settings.barge_in
    owned: list[Any] = []
    try:
        if stt is None:  # first: a missing model is reported before any device is looked at
            stt = settings.speech.build()
            owned.append(stt)
        if tts is None:
            from rxkit.audio.tts import Pyttsx3TTS

            tts = Pyttsx3TTS()
            owned.append(tts)
        end_of_turn = turns.end_of_turn_model()  # holds no thread: not an owned engine, closed with the graph
        if end_of_turn is None and turns.end_of_turn is None:  # the default without the turn extra: say how to get it
            from rxkit.audio.turn_model import SMART_TURN_HINT

            (bus or default_bus).publish(TurnModelMissing(hint=SMART_TURN_HINT))
        seconds, audio_stage = _source(source, realtime, devices)
        out, device = _sink(sink, devices.output_device, devices.output_rate or tts.sample_rate)
        floor = Floor(bus, getattr(provider, "bus", None))
        chat = settings.conversation
        if chat.store is None:  # the text graph's history, where the cut turns are saved too
            chat = chat.replace(store=MemoryStore())
        assert chat.store is not None
        preemption = Preemption() if turns.preemptive else None
        # The model evaluates the prompt with the partial transcript while the user speaks (the local model can),
        # and the first turn's opening (system prompt, stored history) when the graph starts. Not with tools,
        # which change the prompt the model's template makes.
        anticipate = getattr(provider, "anticipate", None) if turns.prefill_partials else None
        expect = getattr(provider, "expect", None) if turns.prefill_partials and not chat.tools else None
        if preemption is None:
            text = text_graph(provider, chat, bus=bus)
        else:  # a reply started before the turn is confirmed saves nothing and runs no tool until it is
            held = chat.replace(store=HeldStore(chat.store, preemption))
            text = text_graph(provider, held, bus=bus, hold_tools=preemption.wait)
        graph = VoiceGraph.chain(
            audio_stage,
            duplex_gate(floor, headphones=policy.headphones, echo_tail_ms=policy.echo_tail_ms),
            vad(turns.vad_aggressiveness, engine=turns.vad, threshold=turns.vad_threshold),
            turn_detector(
                turns.start_ms,
                turns.stop_ms,
                turns.min_speech_ms,
                turns.max_turn_s,
                turns.pre_roll_ms,
                frames=True,
                end_of_turn=end_of_turn,
                vad_stop_ms=turns.vad_stop_ms,
                incomplete_stop_ms=turns.incomplete_stop_ms,
                wait_for_model=isinstance(source, (str, os.PathLike)) and not realtime,  # a file read fast
                tentative=turns.preemptive,
                tentative_ms=turns.preemptive_pause_ms(),
            ),
            barge_in_stage(floor, policy.strategy, confirm_ms=policy.confirm_ms, resume_ms=policy.resume_ms),
            transcribe(stt, partials=partials or anticipate is not None, max_pending_s=max(30.0, seconds + 5)),
            assistant(
                text,
                floor,
                store=chat.store,
                session=chat.session,
                preemption=preemption,
                anticipate=anticipate,
                partials=partials,
                opening=_opening(expect, chat) if expect is not None else None,
            ),
            timed(
                sentence_chunker(first_clause_words=settings.speech.first_clause_words),
                floor,
                "first_sentence",
                TextDelta,
            ),
            timed(synthesize(tts, keep_text=True), floor, "first_tts_audio", AudioFrame),
            playout(out, floor, device=device, **_speaker_controls(out)),
            name="voice",
            bus=bus,
        )
    except BaseException:  # engines are threads with models loaded: none may outlive a failed build
        for engine in reversed(owned):
            engine.close()
        raise
    assert isinstance(graph, VoiceGraph)
    graph.floor = floor
    graph.owned = owned
    graph.end_of_turn = "silence" if end_of_turn is None else end_of_turn.name
    graph.turn_model = end_of_turn
    return graph


def voice_settings(
    settings: VoiceSettings | None = None,
    audio: AudioDevices | None = None,
    turn_detection: TurnDetection | None = None,
    barge_in: BargeInPolicy | str | None = None,
    conversation: ConversationSettings | None = None,
    **options: Any,
) -> VoiceSettings:
    """The settings :func:`voice_graph` runs with: ``settings`` (or the defaults), the groups given
    replacing theirs, then the flat keywords (``barge_in`` may be a strategy name)."""
    settings = settings if settings is not None else VoiceSettings()
    groups: dict[str, object] = {"audio": audio, "turn_detection": turn_detection, "conversation": conversation}
    if isinstance(barge_in, BargeInPolicy):
        groups["barge_in"] = barge_in
    elif barge_in is not None:
        options = {"barge_in": barge_in, **options}
    given = {name: group for name, group in groups.items() if group is not None}
    return (settings.replace(**given) if given else settings).with_options(**options)


def _opening(expect: Callable[[list[Message]], object], chat: ConversationSettings) -> Callable[[], Awaitable[None]]:
    """The first turn's opening (the system prompt and the stored history, as the text graph builds them), handed
    to the provider's ``expect`` to prefill."""
    plan = plan_prompt(chat.prompt, chat.variables, chat.max_history_tokens)

    async def opening() -> None:
        assert chat.store is not None
        expect(plan.opening(await chat.store.load(chat.session)))

    return opening


def _source(
    source: Observable[Any] | str | os.PathLike[str] | None, realtime: bool, devices: AudioDevices
) -> tuple[float, Stage[Any, Any]]:
    """(seconds of audio known up front, the source stage)."""
    if source is None:
        from rxkit.audio.mic import microphone

        mic = microphone(devices.input_device, sample_rate=devices.input_rate, block_ms=devices.block_ms)
        return 0.0, audio_source(mic, "microphone", repr(mic))
    if isinstance(source, Observable):
        return 0.0, audio_source(source, "audio_source", "audio frames")
    from rxkit.audio.convert import FrameConverter
    from rxkit.audio.wav import wav_info, wav_source

    info = wav_info(source)
    frames: Observable[Any] = wav_source(source, devices.block_ms, realtime=realtime)
    if info.sample_rate not in VAD_SAMPLE_RATES or info.channels != 1:
        frames = frames.pipe(ops.map(FrameConverter(devices.input_rate, 1)))
    return info.duration, audio_source(frames, "wav_source", f"{os.fspath(source)} ({'paced' if realtime else 'fast'})")


def _sink(
    sink: Stage[Any, Any] | str | os.PathLike[str] | None, device: int | str | None, sample_rate: int
) -> tuple[Stage[Any, Any], bool]:
    """(the sink stage, whether it is a sound device)."""
    from rxkit.audio.speaker import Speaker, speaker

    if sink is None:
        return speaker(device, sample_rate=sample_rate), True
    if isinstance(sink, Stage):
        return sink, isinstance(sink, Speaker)
    from rxkit.audio.wav import wav_sink

    return wav_sink(sink), False


def _speaker_controls(sink: Stage[Any, Any]) -> dict[str, Any]:
    """``playout``'s hooks into a speaker: hold and resume its playback (a suspected barge-in), where the
    reply playing is and where to stop it (for ``after_sentence``). None for a file."""
    from rxkit.audio.speaker import Speaker

    if not isinstance(sink, Speaker):
        return {}

    def pause(held: bool) -> None:
        if held:
            sink.pause()
        else:
            sink.resume()

    return {"pause": pause, "position": sink.played_s, "stop_after": sink.stop_after}


class VoiceAssistant:
    """A spoken conversation for scripts: a provider, speech engines and the voice graph, closed together.

    ``provider`` is a provider or a spec (``"local"``, ``"mock"``, a mapping,
    a :class:`~rxkit.providers.registry.ProviderSpec`), by default the one
    the settings name (``conversation.provider``); what is built from a
    spec is closed by :meth:`close`. ``settings`` and keyword options are
    those of :func:`voice_graph`.

    >>> with VoiceAssistant(settings=VoiceSettings.from_file("voice.toml")) as va:  # doctest: +SKIP
    ...     va.run()

    >>> with VoiceAssistant("mock", source="question.wav", sink="reply.wav") as va:  # doctest: +SKIP
    ...     for element in va.run():
    ...         print(element)
    """

    def __init__(
        self,
        provider: Provider | ProviderSpec | Mapping[str, Any] | str | None = None,
        settings: VoiceSettings | None = None,
        **options: Any,
    ) -> None:
        self._owned: list[Any] = []
        if provider is None:
            chat = options.get("conversation") or (settings or VoiceSettings()).conversation
            if not isinstance(chat, ConversationSettings) or chat.provider is None:
                raise ConfigError("VoiceAssistant needs a provider: pass one, or name it in conversation.provider")
            provider = chat.provider
        if isinstance(provider, (str, Mapping, ProviderSpec)):
            provider = create_provider(provider)
            self._owned.append(provider)
        self.provider: Provider = provider
        try:
            self.graph = voice_graph(provider, settings, **options)
        except BaseException:
            self._close_owned_sync()
            raise
        self._controls: Subject[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def floor(self) -> Floor:
        return self.graph.floor

    async def astream(self) -> AsyncIterator[Any]:
        """The conversation's elements as they come; leaving the loop stops it (devices closed)."""
        controls: Subject[Any] = Subject()
        self._controls, self._loop = controls, asyncio.get_running_loop()
        try:
            async for element in self.graph.astream(controls):
                yield element
        finally:
            self._controls = None

    async def arun(self, *, duration: float | None = None) -> list[Any]:
        """Run until the source ends (a file) or for ``duration`` seconds, and return every element."""
        out: list[Any] = []

        async def collect() -> None:
            async for element in self.astream():
                out.append(element)

        try:
            await asyncio.wait_for(collect(), duration)
        except TimeoutError:
            pass  # a live conversation ends there: what was said so far is the result
        return out

    def run(self, *, duration: float | None = None) -> list[Any]:
        """Blocking :meth:`arun` for scripts; a live mic runs until Ctrl-C or for ``duration`` seconds."""
        return run_blocking(lambda: self.arun(duration=duration))

    def interrupt(self, reason: str = "user") -> None:
        """Stop the reply now, as a barge-in would (thread-safe)."""
        controls, loop = self._controls, self._loop
        if controls is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(controls.on_next, Interrupt(reason))

    def say(self, text: str) -> None:
        """Answer ``text`` as if the user had said it (thread-safe)."""
        controls, loop = self._controls, self._loop
        if controls is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(controls.on_next, Transcript(text, final=True))

    async def aclose(self) -> None:
        """Close the speech engines and what was built from a spec."""
        self.graph.close()
        owned, self._owned = self._owned, []
        for resource in reversed(owned):
            await resource.aclose()

    def _close_owned_sync(self) -> None:
        owned, self._owned = self._owned, []
        for resource in reversed(owned):
            run_blocking(resource.aclose)

    def close(self) -> None:
        """Blocking :meth:`aclose`."""
        run_blocking(self.aclose)

    async def __aenter__(self) -> VoiceAssistant:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> VoiceAssistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def transcript_and_reply(elements: Sequence[Any]) -> list[tuple[str, str]]:
    """``(what the user said, what the assistant answered)`` per turn, from a voice graph's output."""
    turns: list[tuple[str, str]] = []
    user: str | None = None
    for e in elements:
        if isinstance(e, Transcript) and e.final:
            user = e.text
        elif isinstance(e, EndOfTurn) and user is not None:
            reply = e.response.text if e.response is not None else ""
            turns.append((user, reply))
            user = None
        elif isinstance(e, ErrorElement) and user is not None:
            turns.append((user, ""))
            user = None
    return turns
