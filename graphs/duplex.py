"""Duplex mode: a spoken conversation with a speech-to-speech model over one WebSocket.

::

    microphone (or a WAV file) -> duplex(session) -> speaker (or a WAV file) -> heard(session)

The session (:class:`~rxkit.duplex.OpenAIRealtime`, :class:`~rxkit.duplex.GeminiLive`)
hears the audio, takes turns (the model's own VAD by default), answers in
audio, and reports both sides' transcripts, tool calls and each reply's
usage. A barge-in (the user speaking over the reply) flushes the speaker's
queued audio, and the speaker's report of what was played truncates the
model's reply there, so the history holds what the user heard.

``"local"`` runs the same conversation offline with the VAD-mode pieces
(turn detector, STT, the embedded model, TTS): :func:`~rxkit.graphs.voice_graph`,
whose output has the same element types (it is that graph, not a
:class:`~rxkit.duplex.DuplexSession`).

>>> import reactivex
>>> g = duplex_graph("openai-realtime", source=reactivex.empty(), sink="reply.wav", api_key="sk-test-000000000")
>>> list(g.nodes)
['audio_source', 'duplex', 'wav_sink', 'heard']
"""

from __future__ import annotations

import os
from typing import Any

from reactivex import Observable

from rxkit.duplex import DuplexSession, GeminiLive, OpenAIRealtime
from rxkit.errors import ConfigError
from rxkit.graph import Graph
from rxkit.graph.stage import Stage
from rxkit.graphs._voice_stages import audio_source
from rxkit.operators import duplex, heard
from rxkit.telemetry.events import EventBus

__all__ = ["DUPLEX_PEERS", "duplex_graph", "duplex_session"]

DUPLEX_PEERS = ("openai-realtime", "gemini-live", "local")
"""The peers ``rxkit voice --duplex --provider`` takes."""


def duplex_session(peer: str, *, model: str | None = None, api_key: str | None = None, **options: Any) -> DuplexSession:
    """A session with ``peer`` (``"openai-realtime"`` or ``"gemini-live"``); the key defaults to the
    provider's environment variable (``OPENAI_API_KEY``; ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``).

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
    raise ConfigError(f"duplex peer must be one of {', '.join(DUPLEX_PEERS[:2])} (or 'local'), not {peer!r}")


def duplex_graph(
    session: DuplexSession | str,
    *,
    source: Observable[Any] | str | os.PathLike[str] | None = None,
    sink: Stage[Any, Any] | str | os.PathLike[str] | None = None,
    realtime: bool = False,
    input_device: int | str | None = None,
    output_device: int | str | None = None,
    block_ms: int = 20,
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

    ``"local"`` needs no key: the VAD-mode graph (:func:`~rxkit.graphs.voice_graph`)
    with ``provider`` (default: the embedded local model, started by rxkit)
    and the voice graph's other keywords (``stt``, ``tts``, ``headphones``, ...)
    in ``session_options``; its output carries the same element types.
    """
    if isinstance(session, str):
        if session == "local":
            return _local(source, sink, realtime, input_device, output_device, block_ms, bus, session_options)
        session = duplex_session(session, **session_options)
    elif session_options:
        raise ConfigError(f"session options ({', '.join(session_options)}) go with a peer's name, not a session")
    if source is None:
        from rxkit.audio.mic import microphone

        mic = microphone(input_device, sample_rate=session.input_rate, block_ms=block_ms)
        first = audio_source(mic, "microphone", repr(mic))
    elif isinstance(source, Observable):
        first = audio_source(source, "audio_source", "audio frames")
    else:
        from rxkit.audio.wav import wav_source

        frames: Observable[Any] = wav_source(source, block_ms, realtime=realtime)
        first = audio_source(frames, "wav_source", f"{os.fspath(source)} ({'paced' if realtime else 'fast'})")
    if sink is None:
        from rxkit.audio.speaker import speaker

        out: Stage[Any, Any] = speaker(output_device, sample_rate=session.output_rate)
    elif isinstance(sink, Stage):
        out = sink
    else:
        from rxkit.audio.wav import wav_sink

        out = wav_sink(sink, session.output_rate, 1)
    return Graph.chain(first, duplex(session), out, heard(session), name="duplex", bus=bus)


def _local(
    source: Any,
    sink: Any,
    realtime: bool,
    input_device: int | str | None,
    output_device: int | str | None,
    block_ms: int,
    bus: EventBus | None,
    options: dict[str, Any],
) -> Graph:
    """The local duplex peer: the VAD-mode pieces behind the same graph entry point."""
    from rxkit.graphs.voice import voice_graph

    provider = options.pop("provider", None)
    if provider is None:
        from rxkit.providers.local import LocalProvider

        provider = LocalProvider()
    given = {"input_device": input_device, "output_device": output_device}
    options.update({k: v for k, v in given.items() if v is not None})
    if block_ms != 20:
        options["block_ms"] = block_ms
    return voice_graph(provider, source=source, sink=sink, realtime=realtime, bus=bus, **options)
