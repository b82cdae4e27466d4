"""Duplex mode: a spoken conversation with a speech-to-speech model over one WebSocket.

::

    microphone (or a WAV file) -> duplex(session) -> speaker (or a WAV file) -> heard(session)

The session (:class:`~rxkit.duplex.OpenAIRealtime`, :class:`~rxkit.duplex.GeminiLive`)
hears the audio, takes turns (the model's own VAD by default), answers in
audio, and reports both sides' transcripts, tool calls and each reply's
usage. A barge-in (the user speaking over the reply) flushes the speaker's
queued audio, and the speaker's report of what was played truncates the
model's reply there, so the history holds what the user heard.

``"local"`` runs the same conversation offline: a :class:`~rxkit.graphs.LocalDuplex`
session (the VAD-mode pieces, STT, the embedded model and TTS, behind the
same protocol), with rxkit's VAD and turn detector taking the turns, as they
do for any session whose ``server_vad`` is off::

    source -> vad -> turn_detector -> duplex(session) -> sink -> heard(session)

>>> import reactivex
>>> g = duplex_graph("openai-realtime", source=reactivex.empty(), sink="reply.wav", api_key="sk-test-000000000")
>>> list(g.nodes)
['audio_source', 'duplex', 'wav_sink', 'heard']
"""

from __future__ import annotations

import os
from typing import Any

import reactivex.operators as ops
from reactivex import Observable

from rxkit.duplex import DuplexSession, GeminiLive, OpenAIRealtime
from rxkit.elements import AudioFrame
from rxkit.errors import ConfigError
from rxkit.graph import Graph
from rxkit.graph.stage import Stage
from rxkit.graphs._local_duplex import LocalDuplex
from rxkit.graphs._settings import TurnDetection
from rxkit.graphs._voice_stages import audio_source
from rxkit.operators import duplex, heard, turn_detector, vad
from rxkit.telemetry.events import EventBus

__all__ = ["DUPLEX_PEERS", "duplex_graph", "duplex_session"]

DUPLEX_PEERS = ("openai-realtime", "gemini-live", "local")
"""The peers ``rxkit voice --duplex --provider`` takes."""

_VAD_RATE = 16000  # rxkit's own turn taking runs at the VAD's rate


def duplex_session(peer: str, *, model: str | None = None, api_key: str | None = None, **options: Any) -> DuplexSession:
    """A session with ``peer`` (``"openai-realtime"``, ``"gemini-live"`` or ``"local"``); the key defaults to
    the provider's environment variable (``OPENAI_API_KEY``; ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``).
    ``"local"`` takes ``provider``, ``stt`` and ``tts`` (see :class:`~rxkit.graphs.LocalDuplex`).

    >>> duplex_session("gemini-live", api_key="k").name
    'gemini-live'
    """
    if options.get("base_url") is None:
        options.pop("base_url", None)
    if peer == "openai-realtime":
        key = api_key or os.environ.get("OPENAI_API_KEY")
        return OpenAIRealtime(model or "gpt-realtime", api_key=key, **options)
    if peer == "gemini-live":
        key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        return GeminiLive(model or "gemini-live-2.5-flash-preview", api_key=key, **options)
    if peer == "local":
        if api_key is not None:
            raise ConfigError("local: api_key is for a remote peer; the local peer needs none")
        return LocalDuplex(model=model, **options)
    raise ConfigError(f"duplex peer must be one of {', '.join(DUPLEX_PEERS)}, not {peer!r}")


def duplex_graph(
    session: DuplexSession | str,
    *,
    source: Observable[Any] | str | os.PathLike[str] | None = None,
    sink: Stage[Any, Any] | str | os.PathLike[str] | None = None,
    realtime: bool = False,
    input_device: int | str | None = None,
    output_device: int | str | None = None,
    block_ms: int = 20,
    turn_detection: TurnDetection | None = None,
    bus: EventBus | None = None,
    **session_options: Any,
) -> Graph:
    """The duplex graph, named ``"duplex"``; run it with ``run()``, ``astream()`` or ``subscribe()``.

    ``session``: a :class:`~rxkit.duplex.DuplexSession`, or a peer's name
    (then ``session_options`` such as ``model``, ``api_key``, ``base_url``,
    ``instructions``, ``tools``, ``server_vad`` build it). ``source``: None
    for the microphone (at the session's input rate), a WAV file (any rate:
    converted; read as fast as the graph takes it, or in real time with
    ``realtime=True``), or an observable of audio frames. ``sink``: None for
    the speaker (at the session's output rate), a WAV file path, or a sink
    stage. The graph completes when the input ended and the last reply is done.

    A session whose ``server_vad`` is off (``"local"`` always) has its turns
    taken by rxkit: the VAD and the turn detector (``turn_detection``, a
    :class:`~rxkit.graphs.TurnDetection`; the voice mode's defaults) go before
    it, on 16 kHz audio; their SpeechStarted and SpeechStopped come out too.
    ``"local"`` needs no key: ``provider`` (default: the embedded local
    model, started by rxkit), ``stt`` and ``tts`` go in ``session_options``.
    """
    if isinstance(session, str):
        session = duplex_session(session, **session_options)
    elif session_options:
        raise ConfigError(f"session options ({', '.join(session_options)}) go with a peer's name, not a session")
    local_turns = not session.server_vad
    if turn_detection is not None and not local_turns:
        raise ConfigError("turn_detection goes with a session whose server_vad is off (the server takes turns)")
    in_rate = _VAD_RATE if local_turns else session.input_rate
    if source is None:
        from rxkit.audio.mic import microphone

        mic = microphone(input_device, sample_rate=in_rate, block_ms=block_ms)
        first = audio_source(mic, "microphone", repr(mic))
    else:
        if isinstance(source, Observable):
            frames: Observable[Any] = source
            name, description = "audio_source", "audio frames"
        else:
            from rxkit.audio.wav import wav_source

            frames = wav_source(source, block_ms, realtime=realtime)
            name, description = "wav_source", f"{os.fspath(source)} ({'paced' if realtime else 'fast'})"
        if local_turns:  # the VAD takes 16 kHz mono; frames already so pass untouched
            from rxkit.audio.convert import FrameConverter

            convert = FrameConverter(_VAD_RATE, 1)
            frames = frames.pipe(ops.map(lambda x: convert(x) if isinstance(x, AudioFrame) else x))
        first = audio_source(frames, name, description)
    if sink is None:
        from rxkit.audio.speaker import speaker

        out: Stage[Any, Any] = speaker(output_device, sample_rate=session.output_rate)
    elif isinstance(sink, Stage):
        out = sink
    else:
        from rxkit.audio.wav import wav_sink

        out = wav_sink(sink, session.output_rate, 1)
    turns: list[Stage[Any, Any]] = []
    if local_turns:
        t = turn_detection or TurnDetection()
        turns = [
            vad(t.vad_aggressiveness, engine=t.vad, threshold=t.vad_threshold),
            turn_detector(t.start_ms, t.stop_ms, t.min_speech_ms, t.max_turn_s, t.pre_roll_ms, frames=True),
        ]
    return Graph.chain(first, *turns, duplex(session), out, heard(session), name="duplex", bus=bus)
