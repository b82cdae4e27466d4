"""The ``rxkit voice`` and ``rxkit devices`` commands (registered by :mod:`rxkit.cli`).

::

    rxkit devices                                   # audio inputs and outputs
    rxkit voice                                     # talk on the default mic and speaker; Ctrl-C quits
    rxkit voice --headphones                        # talk over the reply to interrupt it
    rxkit voice --no-preemptive                     # answer only once the turn is confirmed, not at its first pause
    rxkit voice --input question.wav --output reply.wav --provider mock
    rxkit voice --stt whisper --whisper-model base.en  # fetched once into your cache; or a model directory
    rxkit voice --stt vosk --vosk-model ~/models/vosk-model-small-en-us-0.15
    rxkit voice --settings voice.toml               # devices, turn detection, barge-in, prompt from a file

``--settings`` reads :class:`~rxkit.graphs.VoiceSettings` from a YAML, TOML or
JSON file (a table per group: ``audio``, ``turn_detection``, ``barge_in``,
``conversation``); the command's own options, where given, win over it.

Provider options are those of ``rxkit chat`` (the same provider selection).
Exit status: 0 on success (Ctrl-C ends a live conversation normally), 1
when a turn fails or a file holds no speech, 2 for bad usage or
configuration (a bad settings file or a missing vosk model directory is
reported before any audio device or model server is opened).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rxkit.cli.session import add_model_arguments
from rxkit.cli.signals import sigint_ignored
from rxkit.errors import ConfigError

if TYPE_CHECKING:  # the graphs load on use: `rxkit chat` and `rxkit devices` start without them
    from rxkit.graphs import VoiceSettings

__all__ = ["add_voice_commands", "voice_settings_from_args"]

_DESCRIPTION = """\
Talk with a model: the microphone's speech is transcribed, answered and spoken
sentence by sentence on the speaker; speaking while it talks interrupts it
(with --headphones; without, the mic is deaf while the reply plays). With
--input/--output, the same runs on WAV files and prints the transcript and the
reply. Ctrl-C ends a live conversation.
"""
_BARGE_IN = {"immediate": "immediate", "after-sentence": "after_sentence", "ignore": "ignore"}


def add_voice_commands(commands: Any) -> None:
    """Add ``devices`` and ``voice`` to the CLI's subparsers (``commands``: what ``add_subparsers`` returned)."""
    devices = commands.add_parser("devices", help="list the audio input and output devices")
    devices.set_defaults(run=run_devices)

    voice = commands.add_parser(
        "voice",
        help="talk with a model through the microphone and speaker (or WAV files)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audio = voice.add_argument_group("audio")
    voice.add_argument("--settings", metavar="FILE", type=Path,
                       help="voice settings file (YAML, TOML or JSON); options given here win over it")  # fmt: skip
    audio.add_argument("--input", metavar="WAV", type=Path, help="the user's speech from this WAV file, not the mic")
    audio.add_argument("--output", metavar="WAV", type=Path, help="write the reply audio to this WAV file, not play it")
    audio.add_argument("--realtime", action="store_true", help="read --input at its real pace, like a microphone")
    audio.add_argument("--input-device", metavar="DEV", help="microphone: index or part of its name ('rxkit devices')")
    audio.add_argument("--output-device", metavar="DEV", help="speaker: index or part of its name")
    audio.add_argument("--stt", choices=("pocketsphinx", "whisper", "vosk", "deepgram", "openai"),
                       help="speech recognition (default: pocketsphinx, English, no download; whisper hears "
                            "far better: pip install 'rxkit[whisper]'; deepgram and openai are cloud services, "
                            "keys in DEEPGRAM_API_KEY, OPENAI_API_KEY)")  # fmt: skip
    audio.add_argument("--tts", choices=("espeak", "openai", "elevenlabs"),
                       help="speech synthesis (default: espeak-ng, offline; openai and elevenlabs stream "
                            "from the cloud, keys in OPENAI_API_KEY, ELEVENLABS_API_KEY)")  # fmt: skip
    audio.add_argument("--whisper-model", metavar="NAME|DIR",
                       help="Whisper model for --stt whisper: a name (tiny.en, base.en, small.en; fetched once "
                            "into your cache) or a CTranslate2 model directory (default tiny.en)")  # fmt: skip
    audio.add_argument("--vad", choices=("silero", "webrtc"),
                       help="voice activity detection (default: silero, a neural VAD that ignores coughs and clicks; "
                            "webrtc is cheaper)")  # fmt: skip
    audio.add_argument("--vosk-model", metavar="DIR", type=Path, help="an unpacked vosk model directory (--stt vosk)")
    audio.add_argument("--voice", metavar="VOICE",
                       help="TTS voice: an espeak-ng voice or language (en-us, fr, ...); with --tts openai "
                            "or elevenlabs, the service's voice (coral; a voice id)")  # fmt: skip
    audio.add_argument("--rate", metavar="WPM", type=int, help="TTS speaking rate, words per minute")
    audio.add_argument("--headphones", action="store_true",
                       help="listen while the reply plays, to talk over it (with headphones)")  # fmt: skip
    audio.add_argument("--barge-in", choices=tuple(_BARGE_IN),
                       help="what speaking over the reply does (default: immediate)")  # fmt: skip
    audio.add_argument("--latency", action="store_true", help="print each turn's latency, split by component")
    audio.add_argument("--preemptive", action=argparse.BooleanOptionalAction,
                       help="start the reply at the first pause, before the turn is confirmed, and drop it "
                            "unheard if you speak on (default: on)")  # fmt: skip
    audio.add_argument("--prefill-partials", action=argparse.BooleanOptionalAction,
                       help="have the model read your words while you speak (the embedded model; "
                            "default: on)")  # fmt: skip
    audio.add_argument("--duplex", action="store_true",
                       help="talk with a speech-to-speech model over one WebSocket: --provider "
                       "openai-realtime (default), gemini-live or local")  # fmt: skip
    add_model_arguments(voice.add_argument_group("model (as in 'rxkit chat')"))
    voice.set_defaults(run=run_voice)


def run_devices(args: argparse.Namespace) -> int:
    from rxkit.audio.devices import format_devices

    listing = format_devices()  # first: without the voice extra, only the error is printed
    sys.stdout.write("  idx  device: input / output channels, default rate  (< default input, > default output)\n")
    sys.stdout.write(listing + "\n")
    return 0


def run_voice(args: argparse.Namespace) -> int:
    if args.duplex and args.provider != "local":  # --duplex --provider local: the speech engines below
        from rxkit.cli.duplex import run_duplex

        return run_duplex(args)
    from rxkit.cli.spoken import SpokenSession

    settings = voice_settings_from_args(args)  # first: bad settings or a missing model are reported
    stt = _stt(args, settings)  # before any device or server is opened
    engines: list[Any] = [stt]
    session = SpokenSession(args)
    live = args.input is None
    with asyncio.Runner() as runner:
        try:
            engines.append(_tts(args))
            runner.run(session.open())
            return runner.run(_converse(args, settings, session, stt, engines[1], sys.stdout))
        except KeyboardInterrupt:
            if not live:
                raise
            sys.stderr.write("\n")
            return 0  # Ctrl-C is how a live conversation ends
        finally:
            with sigint_ignored():
                runner.run(session.aclose())
                for engine in reversed(engines):
                    engine.close()


def _tts(args: argparse.Namespace) -> Any:
    """The synthesizer: espeak-ng (offline) unless --tts names a cloud service; a cloud one's key is checked now."""
    if args.tts in (None, "espeak"):
        from rxkit.audio.tts import Pyttsx3TTS

        return Pyttsx3TTS(voice=args.voice, rate=args.rate)
    if args.rate is not None:
        raise ConfigError("--rate goes with --tts espeak")
    from rxkit.speech import ElevenLabsTTS, OpenAITTS

    voice = {"voice": args.voice} if args.tts == "openai" else {"voice_id": args.voice}
    tts = (OpenAITTS if args.tts == "openai" else ElevenLabsTTS)(**{k: v for k, v in voice.items() if v})
    tts.service.key()
    return tts


def _stt(args: argparse.Namespace, settings: VoiceSettings) -> Any:
    """The recogniser: the options given, else the settings' ``speech`` group (pocketsphinx by default)."""
    if args.vosk_model is not None and args.stt not in (None, "vosk"):
        raise ConfigError("--vosk-model goes with --stt vosk")
    if args.whisper_model is not None and args.stt not in (None, "whisper"):
        raise ConfigError("--whisper-model goes with --stt whisper")
    engine = args.stt or ("vosk" if args.vosk_model else "whisper" if args.whisper_model else None)
    speech = settings.speech
    if engine is not None:
        model = args.vosk_model if engine == "vosk" else args.whisper_model
        if engine == "vosk" and model is None:
            raise ConfigError("--stt vosk needs --vosk-model DIR: an unpacked vosk model directory")
        speech = speech.replace(stt_engine=engine, stt_model=str(model) if model is not None else None)
    stt = speech.build()
    from rxkit.speech import CloudSTT

    if isinstance(stt, CloudSTT):
        stt.service.key()  # a missing key is said now, not at the first turn
    return stt


def voice_settings_from_args(args: argparse.Namespace) -> VoiceSettings:
    """The voice graph's settings: ``--settings``'s file (or the defaults), then the options given on the command line.

    The conversation's store is the CLI's own (``--session``/``--db``), given when the graph is built.
    """
    from rxkit.graphs import VoiceSettings

    settings = VoiceSettings.from_file(args.settings) if args.settings is not None else VoiceSettings()
    given = {
        "input_device": args.input_device,
        "output_device": args.output_device,
        "barge_in": _BARGE_IN[args.barge_in] if args.barge_in is not None else None,
        "headphones": True if args.headphones else None,
        "vad": args.vad,
        "preemptive": args.preemptive,
        "prefill_partials": args.prefill_partials,
        "session": args.session,
        "prompt": args.system,
    }
    return settings.with_options(**{name: value for name, value in given.items() if value is not None})


async def _converse(
    args: argparse.Namespace, settings: VoiceSettings, session: Any, stt: Any, tts: Any, out: TextIO
) -> int:
    from rxkit.cli.spoken import duplex_io, show_conversation

    store, talk = session.store, settings.conversation.session
    if args.duplex:  # the local duplex peer: these engines and this model behind the duplex protocol
        from rxkit.graphs.duplex import duplex_graph

        graph = duplex_graph(
            "local",
            **duplex_io(args),
            turn_detection=settings.turn_detection,
            provider=session.provider,
            stt=stt,
            tts=tts,
            instructions=args.system or "",
            store=store,
            session_id=talk,
        )
    else:
        from rxkit.graphs.voice import voice_graph

        graph = voice_graph(
            session.provider,
            settings.with_options(store=store),
            source=args.input,
            sink=args.output,
            stt=stt,
            tts=tts,
            realtime=args.realtime,
        )
    if args.input is None:
        mic = graph.nodes["microphone"].description
        sys.stderr.write(f"rxkit voice{' --duplex' if args.duplex else ''}: listening on {mic}. Speak; Ctrl-C quits.\n")
    from rxkit.audio.stt import WHISPER_HINT, PocketSphinxSTT

    if isinstance(stt, PocketSphinxSTT):  # the default: say how to get the better recogniser
        sys.stderr.write(f"rxkit voice: {WHISPER_HINT}\n")
    if getattr(graph, "end_of_turn", None) == "silence" and settings.turn_detection.end_of_turn is None:
        from rxkit.audio.turn_model import SMART_TURN_HINT  # turns end by silence alone: say how to end them sooner

        sys.stderr.write(f"rxkit voice: {SMART_TURN_HINT}\n")
    latency = _latency_line if args.latency else None
    return await show_conversation(graph, out, source=args.input, joiner="" if args.duplex else " ", latency=latency)


def _latency_line(event: Any) -> str:
    parts = (
        ("mic", event.audio_in_s),
        ("vad", event.vad_hangover_s),
        ("stt", event.stt_s),
        ("model", event.model_ttft_s),
        ("sentence", event.model_first_sentence_s),
        ("tts", event.tts_first_chunk_s),
        ("device", event.audio_out_s),
        ("rxkit", event.framework_s),
    )
    split = " + ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in parts)
    if event.preemptive or event.preemptive_wasted:  # the reply was started at a pause, before the verdict
        used = "preemptive reply" if event.preemptive else "no preemptive reply"
        split += f"; {used}, {event.preemptive_wasted} dropped"
    # Both starts: where the speech ended (the last voiced frame), and the turn detector's verdict after it.
    verdict = (event.total_s - event.audio_in_s - event.vad_hangover_s) * 1000
    return (
        f"(turn {event.turn}: {event.total_s * 1000:.0f} ms from end of speech to audio, "
        f"{verdict:.0f} ms from the end-of-turn verdict = {split})\n"
    )
