"""B7: cost per token of partial structured parsing, as the output grows (1 KB, 10 KB, 100 KB).

Run: ``.venv/bin/python -m tests.bench.bench_b7_partial [--sizes 1,10,100] [--reps R] [--clock wall|cpu]
[--no-instructor] [--json FILE]``

Each row streams one JSON answer (an order with a list of items, fenced in
markdown as models write it) in 4-character tokens and asks for the partial
value after every token. What each does per token, and what its user gets:

* ``rxkit``: :class:`rxkit.structured.StreamingParser` on the pydantic type:
  feed the token; when it changed the value (about 70% of the tokens here:
  every string character shows), build the typed partial, a fresh ``Order``
  (the open ``Item`` and the list of items new, finished items shared with
  the previous partial), the value ``parse_structured`` and ``stream()`` hand
  out. Coerced to the schema; numbers and booleans shown only once complete;
* ``rxkit-dict``: the same parser with ``dict`` as the type (partials are
  fresh plain dicts and lists, no model building): the like-for-like row
  against jiter's dicts;
* ``rxkit-parse``: the typed parser fed every token, the partial built only
  at the end: the parse alone, what a ``StreamingParser`` user that builds a
  partial only when it wants one (a UI at 30 fps) pays per token, plus the
  partials it builds (``parse_structured`` and ``stream()`` build one at
  every change, as the ``rxkit`` row does);
* ``jiter-reparse``: the common approach: re-parse the accumulated text (from
  its first ``{``) with ``jiter``'s partial mode at every token: a fresh dict
  of the whole JSON so far, untyped, not validated, numbers shown as they
  grow (``12`` before ``123``);
* ``instructor``: ``instructor``'s partial streaming (``Partial[Order]`` over a
  fake OpenAI stream of tool-call argument chunks, its default mode), in a
  throwaway venv under ``~/.cache/rxkit/bench-instructor`` (created on first
  use with ``pip install instructor``: instructor pins openai and jiter to
  versions that conflict with rxkit's, so it never enters rxkit's venv; see
  ``_instructor_worker.py``). It gets the same tokens without the markdown
  fence (its tool mode streams bare JSON); above ``--instructor-whole-kb``
  (10) its quadratic run would take minutes, so its per-chunk step is timed
  on evenly spaced prefixes instead (``instructor~``). ``--no-instructor``
  skips it.

The rxkit rows run on the compiled parser where the install built it (see
``setup.py``; the first line printed says which); ``RXKIT_PURE_PYTHON=1`` runs
them on the pure Python modules, for a before/after in back-to-back runs.

Every row's last value is checked against the answer (after its clock stopped).
All run side by side, interleaved per repetition (the rxkit and jiter rows in
this process, instructor's in its worker process); each row is the best of
the repetitions (the run least disturbed by other processes). ``--clock cpu``
times CPU time instead of wall time (steadier on a loaded machine). Targets
(issue 16): the parse's cost per token flat as the output grows (it keeps its
state, never re-reads the prefix: ``rxkit-parse`` at 100 KB within 2x of 1 KB),
and the typed partial at every token at least 10x faster than the jiter
re-parse at 10 KB. The partial rows' growth is printed beside: a partial is a
fresh snapshot, and its list of finished items (1230 at the end of 100 KB) is
copied into it, about 1.7 ns an item, which no snapshot can avoid.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jiter
from pydantic import BaseModel

from rxkit.structured import StreamingParser

TOKEN = 4


class Item(BaseModel):
    name: str
    qty: int
    note: str


class Order(BaseModel):
    id: str
    items: list[Item]
    urgent: bool


def answer(kb: int) -> str:
    rows: list[str] = []
    size = 0
    i = 0
    while size < kb * 1000:
        row = json.dumps({"name": f"item {i}", "qty": i, "note": f"deliver before noon, gate {i % 7}"})
        rows.append(row)
        size += len(row) + 2
        i += 1
    return '```json\n{"id": "X-1", "items": [' + ", ".join(rows) + '], "urgent": true}\n```'


def tokens(text: str) -> list[str]:
    return [text[i : i + TOKEN] for i in range(0, len(text), TOKEN)]


# Runs once over the tokens; returns the seconds it took and the last value it built (checked against the
# answer after the clock stopped, so that every row is known to have done the whole work).
Runner = Callable[[list[str]], tuple[float, object]]


def run_rxkit(target: object, partials: bool = True, clock: Callable[[], float] = time.perf_counter) -> Runner:
    def run(toks: list[str]) -> tuple[float, object]:
        t0 = clock()
        parser = StreamingParser(target)
        for t in toks:
            if parser.feed(t) and partials:
                parser.partial()
        final = parser.finish()
        return clock() - t0, final

    return run


def run_jiter(clock: Callable[[], float] = time.perf_counter) -> Runner:
    def run(toks: list[str]) -> tuple[float, object]:
        t0 = clock()
        text = ""
        value = None
        for t in toks:
            text += t
            start = text.find("{")
            if start >= 0:
                value = jiter.from_json(text[start:].encode(), partial_mode="trailing-strings")
        return clock() - t0, value

    return run


INSTRUCTOR_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rxkit" / "bench-instructor"
WORKER = Path(__file__).with_name("_instructor_worker.py")


def instructor_python(venv: Path = INSTRUCTOR_VENV) -> Path | None:
    """The throwaway venv's interpreter, with instructor installed (created on first use); None if that fails."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import instructor"], capture_output=True).returncode == 0:
        return python
    print(f"instructor: creating {venv} (python -m venv, pip install instructor); once, it takes a minute")
    steps = [[sys.executable, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", "instructor"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            print(f"instructor: row skipped: {' '.join(step[:4])} failed: {' | '.join(tail)}")
            return None
    return python


class InstructorWorker:
    """instructor's row, timed inside its own process (``_instructor_worker.py``) on the tokens it is sent."""

    def __init__(self, python: Path, clock: str) -> None:
        self.clock = clock
        self.proc = subprocess.Popen(
            [str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._read()  # {"ready": true} once instructor is imported

    def _read(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the instructor worker exited ({self.proc.wait()})")
        answer: dict[str, object] = json.loads(line)
        return answer

    def runner(self, sample: int, expected: dict[str, object]) -> Runner:
        def run(toks: list[str]) -> tuple[float, object]:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"tokens": toks, "sample": sample, "clock": self.clock}) + "\n")
            answer = self._read()
            if answer["final"] != expected:
                raise RuntimeError("instructor's last partial differs from the answer: not the same work")
            return float(answer["seconds"]), expected  # type: ignore[arg-type]

        return run

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _compiled() -> bool:
    """Whether rxkit.structured's parser runs compiled (setup.py builds it with mypyc where it can)."""
    import importlib.machinery

    import rxkit.structured

    return str(rxkit.structured._parser.__file__).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--no-instructor", action="store_true", help="skip instructor's row (and its venv)")
    ap.add_argument("--instructor-whole-kb", type=int, default=10, help="above this, instructor's step is sampled")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    runners: dict[str, Runner] = {
        "rxkit": run_rxkit(Order, clock=clock),
        "rxkit-dict": run_rxkit(dict, clock=clock),
        "rxkit-parse": run_rxkit(Order, partials=False, clock=clock),
        "jiter-reparse": run_jiter(clock),
    }
    python = None if args.no_instructor else instructor_python()
    worker = InstructorWorker(python, args.clock) if python is not None else None
    rows = []
    try:
        for kb in (int(s) for s in args.sizes.split(",")):
            text = answer(kb)
            toks = tokens(text)
            body = text[text.index("{") : text.rindex("}") + 1]  # instructor's tool mode streams bare JSON
            sized = dict(runners)
            if worker is not None:
                sample = 0 if kb <= args.instructor_whole_kb else 200
                sized["instructor~" if sample else "instructor"] = worker.runner(sample, json.loads(body))
            times: dict[str, list[float]] = {name: [] for name in sized}
            counts = {name: len(tokens(body)) if name.startswith("instructor") else len(toks) for name in sized}
            data = json.loads(body)
            typed = Order.model_validate(data)
            expected = {name: data if name in ("rxkit-dict", "jiter-reparse") else typed for name in sized}
            expected.update({name: data for name in sized if name.startswith("instructor")})
            for _ in range(args.reps):
                for name, run in sized.items():
                    if not name.startswith("rxkit") and kb >= 100 and times[name]:
                        continue  # the re-parses are quadratic: one run at 100 KB is enough
                    seconds, final = run(toks if not name.startswith("instructor") else tokens(body))
                    if final != expected[name]:
                        raise RuntimeError(f"{name}: the last value differs from the answer: not the same work")
                    times[name].append(seconds)
            for name, samples in times.items():
                per_token = min(samples) / counts[name] * 1e6  # best of the repetitions: the least disturbed run
                rows.append({"kb": kb, "client": name, "tokens": counts[name], "us_per_token": round(per_token, 3)})
    finally:
        if worker is not None:
            worker.close()
    build = "compiled (mypyc)" if _compiled() else "pure Python"
    for row in rows:
        row["build"] = build if str(row["client"]).startswith("rxkit") else ""
    print(f"rxkit.structured: {build} (RXKIT_PURE_PYTHON=1 runs the pure modules)")
    print(f"{'KB':>5} {'client':<15} {'tokens':>7} {'µs/token':>10}   ({args.clock} clock)")
    for r in rows:
        print(f"{r['kb']:>5} {r['client']:<15} {r['tokens']:>7} {r['us_per_token']:>10.2f}")

    def cost(kb: int, client: str) -> float | None:
        return next((r["us_per_token"] for r in rows if r["kb"] == kb and r["client"] == client), None)

    sizes = sorted({r["kb"] for r in rows})
    for client in ("rxkit", "rxkit-dict", "rxkit-parse"):
        small, large = cost(sizes[0], client), cost(sizes[-1], client)
        if small and large:
            flat = large / small
            if client == "rxkit-parse":  # the target: the parse never re-reads what it has read
                verdict = "-> met" if flat <= 2 else "-> MISSED"
            else:  # a snapshot per partial: its list of finished items is copied into it
                verdict = f"(+{large - small:.2f} µs: the partial's list of finished items, copied per partial)"
            print(f"{client} {sizes[-1]} KB / {sizes[0]} KB per token: {flat:.2f}x {verdict}")
        ours, theirs = cost(10, client), cost(10, "jiter-reparse")
        if ours and theirs:
            speedup = theirs / ours
            verdict = "met" if speedup >= 10 else "MISSED"
            target = " (the target)" if client == "rxkit" else ""
            print(f"10 KB: {client} {speedup:.1f}x faster than the jiter re-parse{target} -> {verdict}")
        peer = cost(10, "instructor")
        if ours and peer:
            print(f"10 KB: {client} {peer / ours:.0f}x faster than instructor's partial streaming")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
