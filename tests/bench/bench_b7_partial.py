"""B7: cost per token of partial structured parsing, as the output grows (1 KB, 10 KB, 100 KB).

Run: ``.venv/bin/python -m tests.bench.bench_b7_partial [--sizes 1,10,100] [--reps R] [--json FILE]``

Each row streams one JSON answer (an order with a list of items, fenced in
markdown as models write it) in 4-character tokens and asks for the partial
value after every token:

* ``rxkit``: :class:`rxkit.structured.StreamingParser` on the pydantic type
  (feed the token, build the typed partial);
* ``rxkit-dict``: the same parser with ``dict`` as the type (partials are
  plain dicts and lists, no model building);
* ``rxkit-parse``: the typed parser fed every token, the partial built only
  at the end (what a consumer that reads partials at its own pace, a UI at
  30 fps, pays per token);
* ``jiter-reparse``: the common approach: re-parse the accumulated text with
  ``jiter``'s partial mode at every token (a dict, not even validated);
* ``instructor``: ``instructor``'s partial streaming (``Partial[Order]``), where installed.

All run side by side in one process, interleaved per repetition; each row is
the best of the repetitions (the run least disturbed by other processes). Target:
flat per-token cost for rxkit as the output grows (100 KB within 2x of 1 KB),
and at least 10x faster than the jiter re-parse at 10 KB.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

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


def run_rxkit(target: object, partials: bool = True) -> Callable[[list[str]], None]:
    def run(toks: list[str]) -> None:
        parser = StreamingParser(target)
        for t in toks:
            if parser.feed(t) and partials:
                parser.partial()
        parser.finish()

    return run


def run_jiter(toks: list[str]) -> None:
    text = ""
    for t in toks:
        text += t
        start = text.find("{")
        if start >= 0:
            jiter.from_json(text[start:].encode(), partial_mode="trailing-strings")


def run_instructor() -> Callable[[list[str]], None] | None:
    try:
        from instructor.dsl.partial import Partial  # type: ignore[import-not-found]
    except ImportError:
        return None
    partial_order = Partial[Order]  # type: ignore[misc]

    def run(toks: list[str]) -> None:
        text = ""
        for t in toks:
            text += t
            start = text.find("{")
            if start >= 0:
                partial_order.model_validate_json(text[start:].rstrip("`\n"), strict=None)  # type: ignore[attr-defined]

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runners: dict[str, Callable[[list[str]], None]] = {
        "rxkit": run_rxkit(Order),
        "rxkit-dict": run_rxkit(dict),
        "rxkit-parse": run_rxkit(Order, partials=False),
        "jiter-reparse": run_jiter,
    }
    instructor = run_instructor()
    if instructor is not None:
        runners["instructor"] = instructor
    else:
        print("instructor: not installed here (pip install instructor to add its row)")
    rows = []
    for kb in (int(s) for s in args.sizes.split(",")):
        toks = tokens(answer(kb))
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.reps):
            for name, run in runners.items():
                if not name.startswith("rxkit") and kb >= 100 and times[name]:
                    continue  # the re-parses are quadratic: one run at 100 KB is enough
                t0 = time.perf_counter()
                run(toks)
                times[name].append(time.perf_counter() - t0)
        for name, samples in times.items():
            per_token = min(samples) / len(toks) * 1e6  # best of the repetitions: the least disturbed run
            rows.append({"kb": kb, "client": name, "tokens": len(toks), "us_per_token": round(per_token, 3)})
    print(f"{'KB':>5} {'client':<15} {'tokens':>7} {'µs/token':>10}")
    for r in rows:
        print(f"{r['kb']:>5} {r['client']:<15} {r['tokens']:>7} {r['us_per_token']:>10.2f}")

    def cost(kb: int, client: str) -> float | None:
        return next((r["us_per_token"] for r in rows if r["kb"] == kb and r["client"] == client), None)

    sizes = sorted({r["kb"] for r in rows})
    for client in ("rxkit", "rxkit-dict", "rxkit-parse"):
        small, large = cost(sizes[0], client), cost(sizes[-1], client)
        if small and large:
            flat = large / small
            verdict = "met" if flat <= 2 else "MISSED"
            print(f"{client} {sizes[-1]} KB / {sizes[0]} KB per token: {flat:.2f}x -> {verdict}")
        ours, theirs = cost(10, client), cost(10, "jiter-reparse")
        if ours and theirs:
            speedup = theirs / ours
            verdict = "met" if speedup >= 10 else "MISSED"
            print(f"10 KB: {client} {speedup:.1f}x faster than the jiter re-parse -> {verdict}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
