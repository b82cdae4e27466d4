"""B4: many simultaneous streams: added time to first token, event-loop lag, memory per stream.

Run: ``.venv/bin/python -m tests.bench.bench_b4_concurrency [--quick] [--mode burst|steady]
[--gc default|deferred] [--window S] [--sizes 10,100,500,1000]
[--clients aiohttp,rxkit,openai,litellm] [--no-trace] [--json FILE]``
(about 3-5 minutes on 2 cores; ``--quick``: 100 and 1000 streams, no tracemalloc round, about 70 s).

A loopback server (:mod:`tests.bench._server`, its own process) answers
every request with a realistic profile: headers at once, the first chunk
200 ms after the request arrived, then 30 chunks 30 ms apart (stamped with
the server's ``time.monotonic_ns()`` at the write and at the request's
arrival). For each client and each N, a fresh client process launches N
streams at once (one task each, as user code would) and reads every one to
the end, with a ticker task measuring its own scheduling delay. With
``--mode steady`` it runs N workers instead, started evenly over one stream
lifetime, each opening a stream as soon as its previous one ended: N streams
are in flight at every moment (a service under constant load rather than a
burst), and the streams started during the second lifetime (or ``--window``
seconds from then) are measured. The clients:

* raw aiohttp: the floor, as in B3 (``readany``, split lines, ``json.loads``);

* rxkit: ``OpenAIProvider(...).stream(request).subscribe(...)`` with
  ``max_concurrency`` raised to N (its default, 64, would queue the rest:
  it is a per-provider limit on purpose);
* AsyncOpenAI: one ``AsyncOpenAI`` client, defaults (httpx, up to 1000
  connections), ``async for chunk in stream``;
* LiteLLM: ``litellm.acompletion(model="openai/...", api_base=..., stream=True)``,
  defaults (its aiohttp transport, up to 1000 connections).

Columns (p99 over the N streams, ms unless said):

* added TTFT: first token in user code - the stream's own start - the
  server's 200 ms; it splits exactly into request (start -> the server has
  the request), server lateness (should be ~0: the server is not the
  bottleneck) and delivery (server wrote the first chunk -> user code has it);
* from launch: first token - the moment all N were launched - 200 ms (what
  the last of N users waits);
* loop lag: how late a 10 ms ticker woke, while the streams ran;
* RSS/stream: (peak RSS while the N streams ran - RSS before) / N, KiB;
* traced/stream: tracemalloc's peak of Python allocations during a second
  round of min(N, 250) streams (warm connections) / streams, KiB (not timed:
  tracing slows a client 2-3x);
* CPU: the client process's CPU seconds for the timed round;
* GC max: the longest garbage collection in the timed round, ms (a pause
  every stream in flight waits through);
* conns: TCP connections the server accepted during the client's run (a
  client that reuses its pooled connections opens about N).

``--gc deferred`` runs every client (the floor and the peers too, so the
comparison stays fair) under :class:`rxkit.gcpolicy.DeferredGC`, started
after the warm-up stream: what exists then is frozen, and the cyclic
collector runs every ``--gc-interval`` seconds (default 60, its default)
instead of whenever CPython's allocation counters say. With CPython's
default collector a full collection over 1000 streams' objects takes ~80 ms
and comes every couple of seconds; that pause, not the client, then bounds
every client's p99. A deferred collection that falls inside the timed round
shows in the GC max column (``--window 30 --gc-interval 10`` makes sure
some do).

Target: at 1000 streams, rxkit's p99 added TTFT under 5 ms and the least
memory per stream. The first round of every N opens fresh connections (a
burst); each client runs in its own process so that memory and lag are its
own. Needs the ``bench`` extra (``openai``, ``litellm``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ._server import parse_stamp, raise_fd_limit, running_server, server_stats

FIRST_US, CHUNKS, GAP_US = 200_000, 30, 30_000
API_KEY = "sk-bench-0000000000000000"
MODEL = "gpt-4o-mini"
PROMPT = "Tell me a story."
LIFETIME_NS = (FIRST_US + (CHUNKS - 1) * GAP_US) * 1000  # one stream, request to last chunk
TICK = 0.010
TARGET_TTFT_MS = 5.0
CHILD_TIMEOUT = {"burst": 200, "steady": 90}  # s (steady: plus the window), then the client is killed and reported
BURST_DEADLINE = 120.0  # s for one round of streams; what has not finished by then is reported unfinished
STEADY_DEADLINE = 45.0
TRACED_STREAMS = 250  # the tracemalloc round: tracing slows a client 2-3x, and per-stream memory hardly moves with N

Stream = Callable[["Record"], Coroutine[Any, Any, None]]


class Record:
    """What one stream saw (monotonic ns)."""

    __slots__ = ("arrived", "end", "error", "first", "sent", "start", "tokens")

    def __init__(self) -> None:
        self.start = self.first = self.sent = self.arrived = self.end = 0
        self.tokens = 0
        self.error = ""

    def token(self, content: str) -> None:
        if not self.tokens:
            self.first = time.monotonic_ns()
            self.sent, self.arrived = parse_stamp(content)
        self.tokens += 1


# -- the clients (run in the child process) ----------------------------------------------------


async def make_aiohttp(url: str, n: int) -> tuple[Stream, Callable[[], Coroutine[Any, Any, None]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(n, 100)))
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": True})
    headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}

    async def stream(rec: Record) -> None:
        rec.start = time.monotonic_ns()
        async with session.post(f"{url}/chat/completions", data=body, headers=headers) as resp:
            resp.raise_for_status()
            tail = b""
            while True:
                chunk = await resp.content.readany()
                if not chunk:
                    break
                lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if line.startswith(b"data: ") and line != b"data: [DONE]":
                        choices = json.loads(line[6:])["choices"]
                        if choices and choices[0]["delta"].get("content"):
                            rec.token(choices[0]["delta"]["content"])

    return stream, session.close


def _rxkit_client(provider: Any) -> tuple[Stream, Callable[[], Coroutine[Any, Any, None]]]:
    """Streams through an rxkit provider, subscribed as user code would."""
    from rxkit.elements import Element, TextDelta
    from rxkit.types import ChatRequest, Message

    request = ChatRequest(messages=[Message.user(PROMPT)])

    async def stream(rec: Record) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_next(element: Element) -> None:
            if type(element) is TextDelta:
                rec.token(element.text)

        rec.start = time.monotonic_ns()
        provider.stream(request).subscribe(on_next, done.set_exception, lambda: done.set_result(None))
        await done

    return stream, provider.aclose


async def make_rxkit(url: str, n: int) -> tuple[Stream, Callable[[], Coroutine[Any, Any, None]]]:
    from rxkit.providers.openai import OpenAIProvider
    from rxkit.telemetry.events import EventBus

    return _rxkit_client(
        OpenAIProvider(MODEL, base_url=url, api_key=API_KEY, bus=EventBus(), max_concurrency=max(n, 64))
    )


async def make_openai(url: str, n: int) -> tuple[Stream, Callable[[], Coroutine[Any, Any, None]]]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key=API_KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": PROMPT}]

    async def stream(rec: Record) -> None:
        rec.start = time.monotonic_ns()
        response = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        async for chunk in response:
            if chunk.choices and chunk.choices[0].delta.content:
                rec.token(chunk.choices[0].delta.content)

    return stream, client.close


async def make_litellm(url: str, n: int) -> tuple[Stream, Callable[[], Coroutine[Any, Any, None]]]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    messages = [{"role": "user", "content": PROMPT}]

    async def stream(rec: Record) -> None:
        rec.start = time.monotonic_ns()
        response = await litellm.acompletion(
            model=f"openai/{MODEL}", api_base=url, api_key=API_KEY, messages=messages, stream=True, max_retries=0
        )
        async for chunk in response:
            if chunk.choices and chunk.choices[0].delta.content:
                rec.token(chunk.choices[0].delta.content)

    async def close() -> None:
        closer = getattr(litellm, "close_litellm_async_clients", None)
        if closer is not None:
            await closer()

    return stream, close


CLIENTS = {
    "aiohttp": make_aiohttp,
    "rxkit": make_rxkit,
    "openai": make_openai,
    "litellm": make_litellm,
}
LABELS = {
    "aiohttp": "raw aiohttp",
    "rxkit": "rxkit",
    "openai": "AsyncOpenAI",
    "litellm": "LiteLLM",
}


class Ticker:
    """Wakes every TICK s and records how late it woke; samples RSS as it goes."""

    def __init__(self) -> None:
        import psutil

        self._rss = psutil.Process().memory_info
        self.lags: list[float] = []
        self.peak_rss = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + TICK
        while True:
            await asyncio.sleep(due - loop.time())
            now = loop.time()
            self.lags.append(max(0.0, now - due))
            self.peak_rss = max(self.peak_rss, self._rss().rss)
            due = max(due + TICK, now)  # a late tick does not make the next ones look late

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class GCPauses:
    """A ``gc.callbacks`` entry that records how long each collection held the loop."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._t)


async def _guarded(stream: Stream, rec: Record) -> None:
    try:
        await stream(rec)
    except Exception as exc:  # counted and reported; the other streams go on
        rec.error = f"{type(exc).__name__}: {exc}"[:200]
    rec.end = time.monotonic_ns()


async def _round(stream: Stream, n: int) -> tuple[list[Record], int]:
    records = [Record() for _ in range(n)]
    launch = time.monotonic_ns()
    tasks = [asyncio.ensure_future(_guarded(stream, r)) for r in records]
    await _finish(tasks, records, BURST_DEADLINE)
    return records, launch


async def _finish(tasks: Sequence[asyncio.Future[None]], records: list[Record], deadline: float) -> None:
    """Wait for every stream, at most ``deadline`` s: the rest are cancelled and reported as unfinished."""
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=10)  # a client that does not even cancel in time is left behind
        for r in records:
            if not r.end:
                r.error = f"unfinished after {deadline:g} s"
                r.end = time.monotonic_ns()


async def _steady(stream: Stream, n: int, ticker: Ticker, window_ns: int) -> tuple[list[Record], int]:
    """n workers, started evenly over one stream lifetime, each running streams back to back,
    so that n are in flight at every moment (never more: a client's connection limit of n is
    never what makes a stream wait). Returns the streams started during the ``window_ns`` after
    the first lifetime (the measured ones) and when that began."""
    interval = LIFETIME_NS / n
    launch = time.monotonic_ns()
    second, third = launch + LIFETIME_NS, launch + LIFETIME_NS + window_ns
    stop = third + FIRST_US * 1000 + 100_000_000  # keep the load on until the last measured first token
    records: list[Record] = []

    async def worker(i: int) -> None:
        await asyncio.sleep(i * interval / 1e9)
        while time.monotonic_ns() < stop:
            rec = Record()
            records.append(rec)
            await _guarded(stream, rec)

    async def clear_lags() -> None:
        await asyncio.sleep(LIFETIME_NS / 1e9)
        ticker.lags.clear()  # lag while n streams are in flight, not during the ramp

    tasks = [asyncio.ensure_future(worker(i)) for i in range(n)]
    await clear_lags()
    await _finish(tasks, records, STEADY_DEADLINE + window_ns / 1e9)
    return [r for r in records if second <= r.start < third], second


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


async def child(
    name: str,
    n: int,
    url: str,
    trace: bool,
    steady: bool,
    gc_mode: str = "default",
    gc_interval: float = 60.0,
    window: float = 0.0,
) -> dict[str, Any]:
    import psutil

    from rxkit.gcpolicy import DeferredGC

    proc = psutil.Process()
    stream, close = await CLIENTS[name](url, n)
    try:
        warm = Record()  # imports, sessions, caches: one stream before anything is measured
        await _guarded(stream, warm)
        if warm.error:
            return {"error": f"warm-up stream failed: {warm.error}"}
        gc.collect()
        deferred = DeferredGC(interval=gc_interval).start() if gc_mode == "deferred" else None
        pauses = GCPauses()
        gc.callbacks.append(pauses)
        rss0 = proc.memory_info().rss
        ticker = Ticker()
        ticker.peak_rss = rss0
        ticker.start()
        await asyncio.sleep(0.2)  # idle lag, for reference
        idle = list(ticker.lags)
        ticker.lags.clear()
        cpu0 = time.process_time()
        if steady:
            records, launch = await _steady(stream, n, ticker, int((window or LIFETIME_NS / 1e9) * 1e9))
        else:
            records, launch = await _round(stream, n)
        cpu = time.process_time() - cpu0
        gc.callbacks.remove(pauses)
        if deferred is not None:
            deferred.stop()
        await ticker.stop()
        traced = None
        if trace and not steady:
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            traced_n = min(n, TRACED_STREAMS)
            await _round(stream, traced_n)
            traced = (tracemalloc.get_traced_memory()[1] - base) / traced_n
            tracemalloc.stop()
    finally:
        try:
            await asyncio.wait_for(close(), 10)
        except TimeoutError:
            pass  # reported through the unfinished streams; the process exits anyway
    ok = [r for r in records if not r.error and r.tokens == CHUNKS]
    errors = sorted({r.error or f"{r.tokens} of {CHUNKS} tokens" for r in records if r.error or r.tokens != CHUNKS})
    ms = 1e6
    added = [(r.first - r.start) / ms - FIRST_US / 1e3 for r in ok]
    return {
        "client": name,
        "streams": n,
        "measured": len(records),
        "completed": len(ok),
        "errors": errors[:5],
        "added_ttft_ms": {"p50": _pct(added, 50), "p99": _pct(added, 99), "max": max(added, default=float("nan"))},
        "from_launch_ms": {
            q: None if steady else _pct([(r.first - launch) / ms - FIRST_US / 1e3 for r in ok], q) for q in (50, 99)
        },
        "request_ms": {q: _pct([(r.arrived - r.start) / ms for r in ok], q) for q in (50, 99)},
        "server_late_ms": {q: _pct([(r.sent - r.arrived) / ms - FIRST_US / 1e3 for r in ok], q) for q in (50, 99)},
        "delivery_ms": {q: _pct([(r.first - r.sent) / ms for r in ok], q) for q in (50, 99)},
        "lag_ms": {
            "p50": _pct(ticker.lags, 50) * 1e3,
            "p99": _pct(ticker.lags, 99) * 1e3,
            "max": max(ticker.lags, default=0.0) * 1e3,
            "idle_p50": _pct(idle, 50) * 1e3,
        },
        "rss_kib_per_stream": None if steady else (ticker.peak_rss - rss0) / 1024 / n,
        "traced_kib_per_stream": traced / 1024 if traced is not None else None,
        "cpu_s": cpu,
        "gc_ms": {
            "total": sum(pauses.pauses) * 1e3,
            "max": max(pauses.pauses, default=0.0) * 1e3,
            "count": len(pauses.pauses),
        },
        "gc_mode": gc_mode,
        "wall_s": (max(r.end for r in records) - launch) / 1e9,
    }


def child_main(args: argparse.Namespace) -> None:
    raise_fd_limit(args.streams * 2 + 1024)
    main = child(
        args.child,
        args.streams,
        args.url,
        not args.no_trace,
        args.mode == "steady",
        args.gc,
        args.gc_interval,
        args.window or 0.0,
    )
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(main)
    else:
        result = asyncio.run(main)
    print("RESULT " + json.dumps(result), flush=True)


# -- the orchestrator ---------------------------------------------------------------------------


def run_child(
    name: str,
    n: int,
    url: str,
    trace: bool,
    mode: str,
    loop: str = "asyncio",
    gc_mode: str = "default",
    gc_interval: float = 60.0,
    window: float | None = None,
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tests.bench.bench_b4_concurrency", "--child", name, "--streams", str(n), "--url", url]
    cmd += ["--mode", mode, "--loop", loop, "--gc", gc_mode, "--gc-interval", str(gc_interval)]
    if window:
        cmd += ["--window", str(window)]
    if not trace:
        cmd.append("--no-trace")
    timeout = CHILD_TIMEOUT[mode] + (window or 0.0)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"client": name, "streams": n, "error": f"killed after {timeout:g} s (still busy)"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            result.setdefault("client", name)
            result.setdefault("streams", n)
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"client": name, "streams": n, "error": f"exit {proc.returncode}: {' | '.join(tail)}"}


def _f(x: Any, spec: str = "8.1f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else format("-", ">" + spec.split(".")[0])


def _label(r: dict[str, Any]) -> str:
    label = LABELS.get(r["client"], r["client"])
    return f"{label} #{r['run']}" if r.get("runs", 1) > 1 else label


def print_table(results: list[dict[str, Any]], trace: bool) -> None:
    header = (
        f"{'N':>5} {'client':14} {'added TTFT p50':>14} {'p99':>7} {'from launch p99':>15} {'request p99':>11}"
        f" {'server late':>11} {'delivery p99':>12} {'lag p99':>8} {'lag max':>8} {'RSS KiB/st':>10}"
        f" {'traced KiB/st':>13} {'CPU s':>6} {'GC max':>6} {'conns':>6} {'done':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        label = _label(r)
        if "error" in r:
            print(f"{r['streams']:>5} {label:14} FAILED: {r['error']}")
            continue
        a, lag = r["added_ttft_ms"], r["lag_ms"]
        done = f"{r['completed']}/{r.get('measured', r['streams'])}"
        print(
            f"{r['streams']:>5} {label:14} {_f(a['p50'], '14.2f')} {_f(a['p99'], '7.2f')}"
            f" {_f(r['from_launch_ms']['99'], '15.1f')} {_f(r['request_ms']['99'], '11.2f')}"
            f" {_f(r['server_late_ms']['99'], '11.2f')} {_f(r['delivery_ms']['99'], '12.2f')}"
            f" {_f(lag['p99'], '8.2f')} {_f(lag['max'], '8.1f')} {_f(r['rss_kib_per_stream'], '10.1f')}"
            f" {_f(r['traced_kib_per_stream'] if trace else None, '13.1f')} {_f(r['cpu_s'], '6.2f')}"
            f" {_f(r.get('gc_ms', {}).get('max'), '6.1f')} {_f(r.get('server', {}).get('connections'), '6.0f')}"
            f" {done:>9}"
        )
        if r["errors"]:
            print(f"      errors: {'; '.join(r['errors'])}")


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the target lines for the largest N (medians over the runs); returns the figures."""
    top = max((r["streams"] for r in results), default=0)
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r["streams"] == top and "error" not in r:
            runs.setdefault(r["client"], []).append(r)
    ours = runs.get("rxkit")
    if not ours:
        print(f"target: no rxkit result at {top} streams")
        return {}
    p99 = {k: statistics.median([r["added_ttft_ms"]["p99"] for r in v]) for k, v in runs.items()}
    complete = all(r["completed"] == r.get("measured", top) for r in ours)
    n_runs = len(ours)
    shown = ", ".join(f"{LABELS.get(k, k)} {v:.2f}" for k, v in p99.items())
    collector = ours[0].get("gc_mode", "default")
    collector = "CPython's default collector" if collector == "default" else "collector deferred (DeferredGC)"
    print(
        f"at {top} streams, {collector}, p99 added TTFT (ms, median of {n_runs} run{'s' if n_runs > 1 else ''}): "
        f"{shown}"
    )
    met = p99["rxkit"] < TARGET_TTFT_MS and complete
    line = f"target: rxkit p99 added TTFT under {TARGET_TTFT_MS:g} ms: {p99['rxkit']:.2f} ms, "
    line += "met" if met else "MISSED"
    figures: dict[str, Any] = {"streams": top, "p99": p99, "met": met}
    floor = p99.get("aiohttp")
    if floor is not None:
        over = p99["rxkit"] - floor
        figures["over_floor"] = over
        line += f" (the raw aiohttp floor: {floor:.2f} ms; rxkit minus the floor: {over:+.2f} ms)"
    print(line)
    for key, label in (("traced_kib_per_stream", "traced"), ("rss_kib_per_stream", "RSS")):
        # The peers are the libraries; the raw aiohttp reader is the floor, not a peer.
        values = {
            k: statistics.median([r[key] for r in v])
            for k, v in runs.items()
            if k != "aiohttp" and all(r.get(key) is not None for r in v)
        }
        if "rxkit" in values and len(values) > 1:
            least = min(values, key=lambda k: values[k])
            others = ", ".join(f"{LABELS[k]} {v:.1f}" for k, v in values.items() if k != "rxkit")
            figures[f"least_{label}"] = least == "rxkit"
            print(
                f"target at {top} streams: least memory per stream ({label}): rxkit {values['rxkit']:.1f} KiB vs "
                f"{others}: {'met' if least == 'rxkit' else 'MISSED'}"
            )
    return figures


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100 and 1000 streams only, no tracemalloc round")
    parser.add_argument("--sizes", help="comma-separated stream counts (default 10,100,500,1000)")
    parser.add_argument(
        "--clients",
        default="aiohttp,rxkit,openai,litellm",
        help="comma-separated: aiohttp,rxkit,openai,litellm",
    )
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc round")
    parser.add_argument(
        "--mode",
        choices=("burst", "steady"),
        default="burst",
        help="burst: N launched at once (default); steady: N workers streaming back to back (N in flight)",
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the clients' event loop (default asyncio)"
    )
    parser.add_argument(
        "--gc",
        choices=("default", "deferred"),
        default="default",
        help="default: CPython's collector; deferred: every client under rxkit.gcpolicy.DeferredGC",
    )
    parser.add_argument(
        "--gc-interval", type=float, default=60.0, help="--gc deferred: seconds between collections (default 60)"
    )
    parser.add_argument(
        "--window", type=float, help="steady mode: seconds of stream starts to measure (default: one lifetime, 1.07 s)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per client and N; the verdict takes medians")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args)
        return []
    sizes = [int(s) for s in (args.sizes or ("100,1000" if args.quick else "10,100,500,1000")).split(",")]
    clients = [c for c in args.clients.split(",") if c]
    for c in clients:
        if c not in CLIENTS:
            parser.error(f"unknown client {c!r}; known: {', '.join(CLIENTS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.window is not None and (args.mode != "steady" or args.window <= 0):
        parser.error("--window needs --mode steady and a positive number of seconds")
    if args.gc_interval <= 0:
        parser.error("--gc-interval must be positive")
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401 - only checking that it is there
        except ImportError:
            parser.error("--loop uvloop needs uvloop (the bench extra installs it)")
    trace = not (args.no_trace or args.quick)
    gc_label = "CPython default" if args.gc == "default" else f"deferred (every {args.gc_interval:g} s)"
    raise_fd_limit(max(sizes) * 2 + 1024)
    print(
        f"B4 concurrency  python {platform.python_version()}  {os.cpu_count()} CPUs  loop {args.loop}  gc {gc_label}"
        "  profile: "
        f"first chunk after {FIRST_US // 1000} ms, {CHUNKS} chunks {GAP_US // 1000} ms apart; server and each client "
        "in its own process"
    )
    if args.mode == "steady":
        print(
            "mode steady: N workers started evenly over a stream lifetime, each streaming back to back "
            "(N in flight); the streams started in the second lifetime are measured"
        )
    else:
        print("mode burst: N streams launched at once")
    results: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with running_server() as server:
        url = server.url(FIRST_US, CHUNKS, GAP_US)
        for n in sizes:
            for run in range(1, args.repeat + 1):
                for c in clients:  # interleaved, so that a slow spell of the machine hits every client
                    before = server_stats(server.port)
                    result = run_child(c, n, url, trace, args.mode, args.loop, args.gc, args.gc_interval, args.window)
                    after = server_stats(server.port)
                    result["server"] = {k: after[k] - before[k] for k in before}
                    result.update(run=run, runs=args.repeat)
                    results.append(result)
    print("(ms; added TTFT = request + server late + delivery; RSS and traced in KiB per stream)")
    print_table(results, trace)
    verdict(results)
    print(f"total {time.monotonic() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
