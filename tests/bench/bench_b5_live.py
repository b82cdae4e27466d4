"""B5 live: end of the user's speech to the first reply audio, on PulseAudio's virtual mic and speaker.

Run: ``.venv/bin/python -m tests.bench.bench_b5_live [--quick] [--turns N] [--config NAME] [--json FILE]``

The real voice graph (:func:`rxkit.graphs.voice_graph`, default STT and TTS
engines, made fresh for each configuration so its first turn is a cold one)
listens on the virtual microphone and speaks on the virtual speaker of a
private PulseAudio server (tests/audio/pulse.py); the model is the embedded
SmolLM2-135M-Instruct on its llama.cpp server (as tests/local_model.py
starts it). Each turn plays real recorded speech (Debian's LibriVox
sentences and pocketsphinx's own test recordings) with a -59 dBFS noise
floor, 0.5 s of it before the speech and 2.5 s after.

One clock: the question is played into a combined sink whose two slaves are
the mic feed and the speaker, so the speaker's monitor recording holds the
question, in step with what the mic heard, and then the reply. End of speech
is taken from the input signal: the last 10 ms block of the played file above
the noise floor (4x the floor's RMS, and no more than 35 dB below the file's
loudest block), at its place in that recording; first audio out is the first
10 ms block of the reply there (peak above 500). The latency is the time
between the two, per turn: p50 and p10 .. p90 over the turns, beside the
graph's own :class:`~rxkit.telemetry.events.VoiceTurnLatency` breakdown (its
end of speech is the VAD's last voiced frame).

The configurations (``CONFIGS``, one line each) run the same turns one after
the other in one process: by default the defaults (preemptive replies), the
defaults without them, and the previous defaults; ``--config NAME`` (repeatable)
runs others, each one knob away from the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rxkit.audio.wav import read_wav, write_wav
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    ErrorElement,
    PlaybackFinished,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from rxkit.graphs import TurnDetection, transcript_and_reply, voice_graph
from rxkit.providers.local import LocalModelServer, LocalProvider
from rxkit.telemetry.events import (
    EventBus,
    FirstAudioOut,
    FirstModelToken,
    FirstTTSAudio,
    UserSpeechEnded,
    VoiceTurnEvent,
    VoiceTurnLatency,
)
from tests.audio.noise import noise_floor
from tests.audio.pulse import CAPTURE_RATE, PulseAudio, running_pulse
from tests.bench.bench_b5_voice import COMPONENTS

DATA = Path("/usr/share/pocketsphinx/test/data")
RATE = 16000
FLOOR_DBFS = -59.0
BEFORE_S, AFTER_S = 0.5, 2.5
TARGET_S = 0.8
PROMPT = "Answer in one short sentence."
# The graph's own events, each turn: when the step happened after the end of speech (its VAD's last voiced frame).
TIMELINE: dict[str, type] = {
    "verdict": UserSpeechEnded, "first token": FirstModelToken, "first TTS audio": FirstTTSAudio,
    "audio out": FirstAudioOut,
}  # fmt: skip

# name, voice_graph options. A new knob (or a new default) is one more line or one more key.
PREVIOUS: dict[str, Any] = {
    "vad": "webrtc", "stop_ms": 700, "first_clause_words": 0, "preemptive": False, "prefill_partials": False,
}  # fmt: skip
if "end_of_turn" in TurnDetection.model_fields:  # the end-of-turn model (issue 14): before it, silence alone
    PREVIOUS["end_of_turn"] = "silence"
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("defaults, no preemptive", {"preemptive": False}),  # the reply started only once the turn is confirmed
    ("vad_stop_ms 100", {"vad_stop_ms": 100}),  # the pause that starts a preemptive reply and asks the model
    ("no partial prefill", {"prefill_partials": False}),  # the prompt evaluated only once the turn ends
    ("preemptive_ms 200", {"preemptive_ms": 200}),  # the reply started at the end-of-turn model's pause (200 ms)
    ("previous defaults", PREVIOUS),
]

MAIN = ("defaults", "defaults, no preemptive", "previous defaults")  # what a run without --config runs


def recordings() -> list[tuple[str, np.ndarray]]:
    """Real recorded speech, 16 kHz mono int16: five LibriVox sentences (the 7 s one last), then pocketsphinx's
    own recordings."""
    librivox = sorted((DATA / "librivox").glob("*.wav"), key=lambda p: (p.stem.endswith("0870"), p.stem))
    found = [(p.stem[-4:], np.frombuffer(read_wav(p).pcm, dtype=np.int16)) for p in librivox]
    for raw in ("goforward", "something", "numbers"):
        path = DATA / f"{raw}.raw"
        if path.is_file():
            found.append((raw, np.frombuffer(path.read_bytes(), dtype="<i2")))
    if len(found) < 5:
        sys.exit("pocketsphinx-testdata is not installed (/usr/share/pocketsphinx/test/data)")
    return found


def with_floor(speech: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """(the file to play: speech with the noise floor around and under it, where the speech ends in it, seconds)."""
    before, after = int(RATE * BEFORE_S), int(RATE * AFTER_S)
    out = noise_floor(before + len(speech) + after, FLOOR_DBFS, seed)
    out[before : before + len(speech)] += speech
    played = np.clip(out, -32768, 32767).astype(np.int16)
    return played, speech_end(played, speech)


def block_levels(samples: np.ndarray, block: int = RATE // 100) -> np.ndarray:
    blocks = samples[: len(samples) // block * block].astype(np.float64).reshape(-1, block)
    return np.sqrt((blocks**2).mean(axis=1))


def speech_end(played: np.ndarray, speech: np.ndarray) -> float:
    """Seconds into ``played`` where its last 10 ms block above the noise floor ends.

    Above the floor: 4x the added floor's RMS, 10 dB above the recording's own floor (its 10th-percentile
    block: LibriVox's is at -47..-44 dBFS) and at most 35 dB below its loudest block. A fading word end
    makes this uncertain by up to about 0.2 s (2x the recording's floor instead of 3x moves it 0.03-0.25 s).
    """
    rms = block_levels(played)
    own = block_levels(speech)
    floor = 32768 * 10 ** (FLOOR_DBFS / 20)
    threshold = max(4 * floor, 3 * float(np.percentile(own, 10)), own.max() * 10 ** (-35 / 20))
    return float((np.flatnonzero(rms > threshold)[-1] + 1) / 100)


def measured(captured: np.ndarray, played: np.ndarray, end_in_file: float) -> float | None:
    """Seconds from the end of speech to the first reply audio in the speaker's recording (one clock), or None.

    The end of speech is found in the recording by cross-correlation with the played file's last second of
    speech (a local match: the combined sink may stretch a long file by a few ms); the reply is the first
    10 ms block from 20 ms after it louder than anything the file holds after the end of speech (and 1000).
    """
    end_at = int(end_in_file * RATE)
    begin = max(0, end_at - RATE)
    piece = played[begin : end_at + RATE // 5].astype(np.float64)
    size = 1 << (len(captured) + len(piece) - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(captured.astype(np.float64), size) * np.conj(np.fft.rfft(piece, size)), size)
    end = int(np.argmax(corr[: len(captured)])) + end_at - begin
    threshold = max(1000, 2 * int(np.abs(played[end_at:].astype(np.int32)).max(initial=0)))
    block = CAPTURE_RATE // 100
    after = captured[end:].astype(np.int32)
    peaks = np.abs(after[: len(after) // block * block].reshape(-1, block)).max(axis=1)
    # From 20 ms on: the speech's own fading tail (quieter than the floor's threshold by RMS, not always by peak)
    # sits right at the end; no reply comes that soon.
    loud = np.flatnonzero(peaks[2:] > threshold) + 2
    if not len(loud) or loud[0] == 2:  # none, or a reply was already playing when the speech ended: not this one's
        return None
    return float(loud[0] * block / CAPTURE_RATE)


class Combined:
    """A sink whose slaves are the mic feed and the speaker: a file played into it reaches both in step."""

    def __init__(self, pulse: PulseAudio) -> None:
        self.pulse = pulse
        self.module = subprocess.run(
            ["pactl", "load-module", "module-combine-sink", "sink_name=feed", "slaves=micfeed,spk", "channels=1",
             f"rate={RATE}"], env=pulse.env(), check=True, capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip

    async def warm_up(self, tmp: Path) -> None:
        """Play half a second of the noise floor through it: the first stream into a new combined sink reaches
        one of its slaves late."""
        wav = tmp / "warm-up.wav"
        write_wav(wav, AudioFrame(noise_floor(RATE // 2, FLOOR_DBFS).astype(np.int16).tobytes(), RATE, 1))
        await self.play(wav)

    async def play(self, wav: Path) -> None:
        proc = await asyncio.create_subprocess_exec(
            "paplay", "--device=feed", "--latency-msec=20", os.fspath(wav), env=self.pulse.env(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"paplay failed: {err.decode()}")

    def close(self) -> None:
        subprocess.run(["pactl", "unload-module", self.module], env=self.pulse.env(), check=False, timeout=30)


async def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Turn(NamedTuple):
    """One question: which recording, the file played, its samples, where its speech ends (seconds)."""

    key: str
    wav: Path
    played: np.ndarray
    speech_end: float


async def one_config(
    name: str, options: dict[str, Any], turns: list[Turn], pulse: PulseAudio, feed: Combined, base_url: str
) -> dict[str, Any]:
    bus = EventBus()
    # The prefill after each reply is on where rxkit starts the server itself (the default); not before it.
    provider = LocalProvider(base_url=base_url, defaults={"max_tokens": 24}, prefill=options is not PREVIOUS)
    graph = voice_graph(provider, bus=bus, prompt=PROMPT, **options)
    out: list[Any] = []

    async def collect() -> None:
        async for x in graph.astream():
            out.append(x)

    def count(kind: type) -> int:
        return sum(isinstance(x, kind) for x in out)

    floor = graph.floor
    task = asyncio.create_task(collect())
    rows: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(1.0)  # the mic is open and the VAD has seen the quiet
        for i, (key, wav, played, end_in_file) in enumerate(turns, 1):
            ends, finished, errors = count(EndOfTurn), count(PlaybackFinished), count(ErrorElement)
            seen, seen_ends, at = len(bus.events(VoiceTurnLatency)), len(bus.events(UserSpeechEnded)), len(out)
            marks = {kind: len(bus.events(kind)) for kind in TIMELINE.values()}
            mark = pulse.capture_position()
            started = time.monotonic()
            await feed.play(wav)
            # The reply is over when its EndOfTurn is out and nothing plays or waits to (a slow model leaves gaps
            # in a reply, each ending a stretch of playback); the mic is deaf while a reply plays.
            done = await wait_until(
                lambda e=ends, f=finished: count(EndOfTurn) > e and count(PlaybackFinished) > f and not floor.busy, 90
            )
            await asyncio.sleep(0.6)  # the echo tail, and the monitor recorder's own latency
            summaries = [e for e in bus.events(VoiceTurnLatency)[seen:] if isinstance(e, VoiceTurnLatency)]
            # One reply to this question; more is a question cut in two at a pause (answered before its end).
            # The turn detector ending it well before the speech ended (its end of speech is on the mic's clock,
            # the file's on paplay's, which starts some tens of ms after ``started``) is also a cut question.
            ends_heard = [e for e in bus.events(UserSpeechEnded)[seen_ends:] if isinstance(e, UserSpeechEnded)]
            early = bool(ends_heard) and ends_heard[0].speech_end < started + end_in_file - 0.3
            split = len(summaries) > 1 or early
            answered = done and count(ErrorElement) == errors and len(summaries) == 1 and not split
            row: dict[str, Any] = {"turn": i, "recording": key, "answered": answered, "split": split}
            row["measured_s"] = measured(pulse.captured_since(mark), played, end_in_file) if row["answered"] else None
            if row["answered"] and summaries:
                row.update({field: getattr(summaries[-1], field) for field, _ in COMPONENTS})
                row["transcript"] = summaries[-1].transcript
                row["preemptive"] = summaries[-1].preemptive
                row["preemptive_wasted"] = summaries[-1].preemptive_wasted
            # Why the turn ended: the end-of-turn model's verdict, or silence (the model heard it as unfinished)
            row["ended_by"] = [x.reason for x in out[at:] if isinstance(x, SpeechStopped) and not x.discarded]
            # When each step happened, after the end of speech (the graph's: its VAD's last voiced frame); a
            # preemptive reply's first token may come before the verdict.
            row["timeline_s"] = {
                step: e.since_speech_end_s
                for step, kind in TIMELINE.items()
                for e in bus.events(kind)[marks[kind] :]
                if isinstance(e, VoiceTurnEvent)
            }
            rows.append(row)
            if not answered:  # say where the turn stopped
                new = out[at:]
                row["why"] = {
                    k.__name__: sum(isinstance(x, k) for x in new) for k in (SpeechStarted, Transcript, EndOfTurn)
                }
                row["errors"] = [str(x.error) for x in new if isinstance(x, ErrorElement)]
                row["why"]["cut short"] = split
            got = (
                f"{row['measured_s'] * 1000:6.0f} ms" if row["measured_s"] is not None else f"no reply {row.get('why')}"
            )
            hang = " ".join(f"{k} {v * 1000:4.0f}" for k, v in row["timeline_s"].items())
            ended = ",".join(row["ended_by"]) + (f", {row['preemptive_wasted']} dropped" if row.get("preemptive_wasted")
                                                else "")  # fmt: skip
            print(f"  {name:<18} turn {i:2} ({key:>9}): {got}  {hang} by {ended} heard {row.get('transcript', '')!r}",
                  flush=True)  # fmt: skip
            await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        graph.close()
        await provider.aclose()
    replies = [reply for _, reply in transcript_and_reply(out)]
    return {"name": name, "options": options, "turns": rows, "replies": replies}


def spread(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return {"p10": v, "p50": v, "p90": v}
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return {"p10": deciles[0], "p50": statistics.median(values), "p90": deciles[-1]}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    good = [r for r in result["turns"] if r.get("measured_s") is not None and "total_s" in r]
    summary: dict[str, Any] = {"turns": len(result["turns"]), "answered": len(good)}
    summary["split"] = sum(bool(r.get("split")) for r in result["turns"])
    summary["preemptive_wasted"] = sum(r.get("preemptive_wasted", 0) for r in result["turns"])
    summary["measured_s"] = spread([r["measured_s"] for r in good])
    for field, _ in COMPONENTS:
        summary[field] = spread([r[field] for r in good])
    # The speaker's own output latency, plus how late the VAD put the end of speech (its last voiced frame).
    summary["measured_minus_total_s"] = spread([r["measured_s"] - r["total_s"] for r in good])
    # When each step happened after the (graph's) end of speech, over the turns that have it.
    summary["timeline_s"] = {
        step: spread([r["timeline_s"][step] for r in good if step in r.get("timeline_s", {})]) for step in TIMELINE
    }
    # Cold engines: the first turn against the last, which plays the same recording again.
    first = next((r for r in good if r["turn"] == 1), None)
    last = next((r for r in good if r["turn"] == len(result["turns"]) > 1), None)
    summary["first_turn"] = {k: first[k] for k in ("measured_s", *dict(COMPONENTS))} if first else None
    summary["last_turn"] = {k: last[k] for k in ("measured_s", *dict(COMPONENTS))} if last else None
    return summary


def table(summaries: list[tuple[str, dict[str, Any]]]) -> None:
    width = 26
    print("\nms, p50 (p10 .. p90)".ljust(22) + "".join(f"{name:>{width}}" for name, _ in summaries))

    def cell(s: dict[str, float]) -> str:
        return f"{s['p50'] * 1000:.0f} ({s['p10'] * 1000:.0f} .. {s['p90'] * 1000:.0f})"

    rows = [("measured (input signal)", "measured_s"), *[(label, field) for field, label in COMPONENTS]]
    for label, field in [*rows, ("measured - total", "measured_minus_total_s")]:
        print(f"{label:<22}" + "".join(f"{cell(s[field]):>{width}}" for _, s in summaries))
    print("after the end of speech (the graph's own clock), ms:")
    for step in TIMELINE:
        print(f"  {step:<20}" + "".join(f"{cell(s['timeline_s'][step]):>{width}}" for _, s in summaries))
    print("first turn / last turn (the same recording), ms:")
    for label, field in rows:

        def pair(s: dict[str, Any], field: str = field) -> str:
            first, last = s["first_turn"], s["last_turn"]
            return f"{_ms(first and first[field])} / {_ms(last and last[field])}"

        print(f"  {label:<20}" + "".join(f"{pair(s):>{width}}" for _, s in summaries))
    print(f"{'turns answered':<22}" + "".join(f"{s['answered']:>{width - 3}}/{s['turns']:<2}" for _, s in summaries))
    print(f"{'questions cut short':<22}" + "".join(f"{s['split']:>{width}}" for _, s in summaries))
    print(
        f"{'preemptive replies dropped':<22}" + "".join(f"{s['preemptive_wasted']:>{width - 4}}" for _, s in summaries)
    )
    for name, s in summaries:
        p50 = s["measured_s"]["p50"]
        verdict = "met" if p50 <= TARGET_S else "MISSED"
        print(f"target: {name}, end of speech -> first audio <= {TARGET_S * 1000:.0f} ms p50: {verdict}")


def _ms(value: float | None) -> str:
    return "-" if not isinstance(value, float) else f"{value * 1000:.0f}"


async def run(n_turns: int, configs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    speech = recordings()
    with tempfile.TemporaryDirectory() as tmp:
        turns: list[Turn] = []
        for i in range(n_turns):
            key, pcm = speech[i % len(speech) if i < n_turns - 1 else 0]  # the last turn repeats the first
            played, end = with_floor(pcm, seed=100 + i)
            wav = Path(tmp) / f"turn{i:02}-{key}.wav"
            write_wav(wav, AudioFrame(played.tobytes(), RATE, 1))
            turns.append(Turn(key, wav, played, end))
        server = LocalModelServer(progress=False)
        server.start()
        try:
            with running_pulse(Path(tmp) / "pulse") as pulse:
                feed = Combined(pulse)
                try:
                    await feed.warm_up(Path(tmp))
                    results = [await one_config(name, options, turns, pulse, feed, server.base_url)
                               for name, options in configs]  # fmt: skip
                finally:
                    feed.close()
        finally:
            server.stop()
    summaries = [(r["name"], summarize(r)) for r in results]
    table(summaries)
    return {"configs": results, "summaries": dict(summaries)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 turns per configuration (a smoke test)")
    parser.add_argument("--turns", type=int, default=12, help="turns per configuration (default 12)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    names = [name for name, _ in CONFIGS]
    parser.add_argument("--config", action="append", choices=names, help="run only this configuration (repeatable)")
    args = parser.parse_args(argv)
    n = 3 if args.quick else max(1, args.turns)
    configs = [c for c in CONFIGS if c[0] in (args.config or MAIN)]
    print(f"B5 live on {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; {n} turns x {len(configs)} configurations")  # fmt: skip
    results = asyncio.run(run(n, configs))
    results["load_average"] = {"end": os.getloadavg()[0]}
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
