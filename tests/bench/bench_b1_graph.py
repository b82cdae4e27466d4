"""B1: per-element cost of a 10-stage rxkit Graph vs the same 10 maps in raw reactivex vs async generators.

Run: ``.venv/bin/python -m tests.bench.bench_b1_graph [--elements N] [--reps R]``

All variants run side by side in one process, interleaved per repetition so
that drift hits them alike. The rxkit graph runs with instrumentation on (the
default: stage events on a private bus). Target: rxkit within 1.2x of raw
reactivex. The async generator chain is the plain-Python reference for
the same work done with ``async for``; the astream row adds the bounded output
buffer and the event loop that ``async for x in graph.astream(...)`` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import reactivex
import reactivex.operators as ops

from rxkit.graph import Graph
from rxkit.telemetry.events import EventBus

STAGES = 10
TARGET = 1.2


def inc(x: int) -> int:
    return x + 1


def raw_reactivex(n: int) -> float:
    count = [0]

    def sink(_: Any) -> None:
        count[0] += 1

    source = reactivex.from_iterable(range(n)).pipe(*[ops.map(inc) for _ in range(STAGES)])
    t0 = time.perf_counter()
    source.subscribe(sink)
    elapsed = time.perf_counter() - t0
    assert count[0] == n
    return elapsed


def rxkit_graph(n: int) -> float:
    count = [0]

    def sink(_: Any) -> None:
        count[0] += 1

    graph = Graph.chain(*[ops.map(inc) for _ in range(STAGES)], bus=EventBus())
    t0 = time.perf_counter()
    graph.subscribe(range(n), sink)
    elapsed = time.perf_counter() - t0
    assert count[0] == n
    return elapsed


def async_generators(n: int) -> float:
    async def numbers() -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def stage(source: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in source:
            yield inc(x)

    async def main() -> float:
        chain = numbers()
        for _ in range(STAGES):
            chain = stage(chain)
        count = 0
        t0 = time.perf_counter()
        async for _ in chain:
            count += 1
        elapsed = time.perf_counter() - t0
        assert count == n
        return elapsed

    return asyncio.run(main())


def rxkit_astream(n: int) -> float:
    graph = Graph.chain(*[ops.map(inc) for _ in range(STAGES)], bus=EventBus())

    async def main() -> float:
        count = 0
        t0 = time.perf_counter()
        async for _ in graph.astream(range(n)):
            count += 1
        elapsed = time.perf_counter() - t0
        assert count == n
        return elapsed

    return asyncio.run(main())


VARIANTS: list[tuple[str, Callable[[int], float]]] = [
    ("raw reactivex, 10 maps (subscribe)", raw_reactivex),
    ("rxkit Graph, 10 stages (subscribe)", rxkit_graph),
    ("async generator chain, 10 stages", async_generators),
    ("rxkit Graph, 10 stages (astream)", rxkit_astream),
]


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--elements", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    n = args.elements
    for _, fn in VARIANTS:  # warm up
        fn(min(n, 10_000))
    results: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    for _ in range(args.reps):
        for name, fn in VARIANTS:
            results[name].append(fn(n) / n * 1e6)

    raw = results[VARIANTS[0][0]]
    base_min, base_med = min(raw), statistics.median(raw)
    print(f"B1: {STAGES}-stage chain, {n} elements, {args.reps} repetitions (µs per element)")
    print(f"{'variant':<38} {'min':>7} {'median':>7} {'max':>7} {'vs raw (min)':>13} {'(median)':>9}")
    for name, _ in VARIANTS:
        xs = results[name]
        med = statistics.median(xs)
        print(f"{name:<38} {min(xs):7.3f} {med:7.3f} {max(xs):7.3f} {min(xs) / base_min:12.2f}x {med / base_med:8.2f}x")
    ours = results[VARIANTS[1][0]]
    ratio = min(ours) / base_min
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"target: rxkit Graph within {TARGET}x of raw reactivex (best of {args.reps}): {ratio:.2f}x, {verdict}")
    return results


if __name__ == "__main__":
    main()
