"""B3: added latency per token, loopback server to final subscriber, rxkit vs a raw aiohttp reader vs AsyncOpenAI.

Run: ``.venv/bin/python -m tests.bench.bench_b3_latency [--quick] [--reps R] [--tokens T] [--json FILE]``

The server (:mod:`tests.bench._server`) runs in its own process and stamps
every chunk with ``time.monotonic_ns()`` just before writing it, pacing the
chunks ``--gap`` µs apart (1 ms by default) so that each one is a separate
read. Every client takes ``time.monotonic_ns()`` when the token is in the
hands of its final consumer and records receive - send:

* floor: aiohttp, ``resp.content.readany()``, split lines, ``json.loads``
  the chunk, take ``choices[0].delta.content``: the least any Python client on
  aiohttp can do;
* rxkit: ``OpenAIProvider`` (openai-compatible, pointed at the server) feeding
  ``Graph.chain`` of 10 light stages (``ops.map`` passing the element on),
  instrumentation on, final subscriber = ``graph.subscribe(..., on_next)``;
* rxkit astream: the same graph consumed with ``async for`` (adds the bounded
  output buffer and a task wake-up per token);
* AsyncOpenAI: ``client.chat.completions.create(stream=True)``, ``async for``;
* LiteLLM: ``litellm.acompletion(stream=True)`` against the same server as an
  openai-compatible base (context, no target).

Each client runs in its own process (so that one library's imports and
garbage do not lengthen another's GC pauses: LiteLLM alone leaves ~300k
GC-tracked objects, a 250 ms full collection here), and the clients take
turns stream by stream (order rotated each round), each keeping its own warm
connection, so load from elsewhere on the machine hits them alike.
Target: rxkit p50 within 50 µs and p99 within 500 µs of the floor.
``CPU µs/token`` is the client process's CPU time per token over whole
streams (request set-up included, spread over the tokens).
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
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import reactivex.operators as ops

from rxkit.elements import Element, TextDelta
from rxkit.graph import Graph
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import EventBus
from rxkit.types import ChatRequest, Message

from ._server import raise_fd_limit, running_server

STAGES = 10
TARGET_P50_US = 50.0
TARGET_P99_US = 500.0
API_KEY = "sk-bench-0000000000000000"
MODEL = "gpt-4o-mini"
PROMPT = "Count slowly."

Client = Callable[[str], Awaitable[list[int]]]


def _same(element: Element) -> Element:
    return element


def _sent(content: str) -> int:
    return int(content.partition(",")[0])


class Floor:
    """Raw aiohttp: read, split lines, json.loads, pick the content."""

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession()

    async def __call__(self, url: str) -> list[int]:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": True})
        headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
        out: list[int] = []
        async with self.session.post(f"{url}/chat/completions", data=body, headers=headers) as resp:
            resp.raise_for_status()
            content = resp.content
            tail = b""
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if not line.startswith(b"data: ") or line == b"data: [DONE]":
                        continue
                    choices = json.loads(line[6:])["choices"]
                    if choices:
                        text = choices[0]["delta"].get("content")
                        if text:
                            now = time.monotonic_ns()
                            out.append(now - _sent(text))
        return out

    async def aclose(self) -> None:
        await self.session.close()


class RxkitSubscribe:
    """OpenAIProvider -> Graph.chain(10 stages) -> subscribe(on_next)."""

    def __init__(self) -> None:
        self.providers: dict[str, OpenAIProvider] = {}
        self.graph = Graph.chain(*[ops.map(_same) for _ in range(STAGES)], bus=EventBus())
        self.request = ChatRequest(messages=[Message.user(PROMPT)])

    def provider(self, url: str) -> OpenAIProvider:
        p = self.providers.get(url)
        if p is None:
            p = self.providers[url] = OpenAIProvider(MODEL, base_url=url, api_key=API_KEY, bus=EventBus())
        return p

    async def __call__(self, url: str) -> list[int]:
        out: list[int] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_next(element: Element) -> None:
            now = time.monotonic_ns()
            if type(element) is TextDelta:
                out.append(now - _sent(element.text))

        self.graph.subscribe(
            self.provider(url).stream(self.request),
            on_next,
            lambda exc: done.set_exception(exc),
            lambda: done.set_result(None),
        )
        await done
        return out

    async def aclose(self) -> None:
        for p in self.providers.values():
            await p.aclose()


class RxkitAstream(RxkitSubscribe):
    """The same graph, consumed with ``async for x in graph.astream(...)``."""

    async def __call__(self, url: str) -> list[int]:
        out: list[int] = []
        async for element in self.graph.astream(self.provider(url).stream(self.request)):
            now = time.monotonic_ns()
            if type(element) is TextDelta:
                out.append(now - _sent(element.text))
        return out


class OpenAIClient:
    """openai-python's AsyncOpenAI, streaming."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}

    async def __call__(self, url: str) -> list[int]:
        from openai import AsyncOpenAI

        client = self.clients.get(url)
        if client is None:
            client = self.clients[url] = AsyncOpenAI(base_url=url, api_key=API_KEY, max_retries=0)
        out: list[int] = []
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        async for chunk in stream:
            now = time.monotonic_ns()
            if chunk.choices and chunk.choices[0].delta.content:
                out.append(now - _sent(chunk.choices[0].delta.content))
        return out

    async def aclose(self) -> None:
        for c in self.clients.values():
            await c.close()


class LiteLLMClient:
    """litellm.acompletion(stream=True) against the server as an openai-compatible base."""

    async def __call__(self, url: str) -> list[int]:
        import litellm

        out: list[int] = []
        response = await litellm.acompletion(
            model=f"openai/{MODEL}",
            api_base=url,
            api_key=API_KEY,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            max_retries=0,
        )
        async for chunk in response:
            now = time.monotonic_ns()
            if chunk.choices and chunk.choices[0].delta.content:
                out.append(now - _sent(chunk.choices[0].delta.content))
        return out

    async def aclose(self) -> None:
        import litellm

        close = getattr(litellm, "close_litellm_async_clients", None)
        if close is not None:
            await close()


def import_litellm() -> bool:
    """Import LiteLLM without it reaching for the network (its price map) or logging."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    try:
        import litellm
    except ImportError:
        return False
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return True


def pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


CLIENTS: dict[str, tuple[str, Callable[[], Any]]] = {
    "floor": ("raw aiohttp (floor)", Floor),
    "rxkit": ("rxkit 10 stages (subscribe)", RxkitSubscribe),
    "rxkit-astream": ("rxkit 10 stages (astream)", RxkitAstream),
    "openai": ("AsyncOpenAI", OpenAIClient),
    "litellm": ("LiteLLM acompletion", LiteLLMClient),
}


async def child(name: str, url: str, warm: str) -> None:
    """One client in its own process, running a stream each time the parent says ``go``."""
    if name == "litellm":
        import_litellm()
    client = CLIENTS[name][1]()
    loop = asyncio.get_running_loop()
    try:
        await client(warm)  # connections, imports, caches
        print("READY", flush=True)
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
            c0 = time.process_time()
            got = await client(url)
            print(json.dumps({"lat": got, "cpu": time.process_time() - c0}), flush=True)
    finally:
        await client.aclose()


class Child:
    """A client process driven over its standard input and output."""

    def __init__(self, name: str, url: str, warm: str) -> None:
        cmd = [sys.executable, "-m", "tests.bench.bench_b3_latency", "--child", name, "--url", url, "--warm", warm]
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._line("READY")

    def _line(self, start: str) -> str:
        """The next line starting with ``start`` (a library may print its own lines)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(start):
                return line
        raise RuntimeError(f"client process {self.name} ended (exit {self.proc.wait()})")

    def stream(self) -> tuple[list[int], float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        reply = json.loads(self._line("{"))
        return reply["lat"], reply["cpu"]

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    keys = [k for k in CLIENTS if not (k == "litellm" and args.no_litellm)]
    labels = {k: CLIENTS[k][0] for k in keys}
    samples: dict[str, list[int]] = {k: [] for k in keys}
    stream_p99: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, float] = dict.fromkeys(keys, 0.0)
    children: dict[str, Child] = {}
    with running_server() as server:
        url = server.url(2_000, args.tokens, args.gap)
        warm = server.url(1_000, 20, args.gap)
        try:
            for k in keys:
                children[k] = Child(k, url, warm)
            for rep in range(args.reps):
                for i in range(len(keys)):
                    k = keys[(rep + i) % len(keys)]
                    got, used = children[k].stream()
                    if len(got) != args.tokens:
                        sys.exit(f"{labels[k]} received {len(got)} of {args.tokens} tokens")
                    cpu[k] += used
                    samples[k] += got
                    stream_p99[k].append(pct(got, 99))
        finally:
            for c in children.values():
                c.stop()
    names = keys

    floor = samples[names[0]]
    f50, f99 = pct(floor, 50) / 1e3, pct(floor, 99) / 1e3
    f99s = statistics.median(stream_p99[names[0]]) / 1e3
    n = args.reps * args.tokens
    print(
        f"B3 added latency per token  python {platform.python_version()}  {os.cpu_count()} CPUs  "
        f"{args.reps} streams x {args.tokens} tokens per client, {args.gap} µs apart"
    )
    print(
        "latency = client's final consumer has the token - server wrote it (µs, CLOCK_MONOTONIC); p99s = median over"
        " streams of each stream's p99 (robust to another process taking the CPU for a moment)"
    )
    header = (
        f"{'client':30} {'p50':>7} {'p90':>7} {'p99':>8} {'p99s':>7} {'max':>8} {'p50-floor':>10} {'p99-floor':>10}"
        f" {'p99s-floor':>10} {'p50 ratio':>10} {'CPU µs/token':>13}"
    )
    print(header)
    print("-" * len(header))
    results: dict[str, Any] = {}
    for name in names:
        xs = samples[name]
        label = labels[name]
        p50, p90, p99, top = (pct(xs, 50) / 1e3, pct(xs, 90) / 1e3, pct(xs, 99) / 1e3, max(xs) / 1e3)
        p99s = statistics.median(stream_p99[name]) / 1e3
        per_token = cpu[name] / n * 1e6
        results[label] = {
            "p50_us": p50,
            "p90_us": p90,
            "p99_us": p99,
            "max_us": top,
            "p50_minus_floor_us": p50 - f50,
            "p99_minus_floor_us": p99 - f99,
            "cpu_us_per_token": per_token,
            "p99_streams_median_us": p99s,
            "p99_streams_median_minus_floor_us": p99s - f99s,
            "min_us": min(xs) / 1e3,
            "mean_us": statistics.fmean(xs) / 1e3,
        }
        print(
            f"{label:30} {p50:7.1f} {p90:7.1f} {p99:8.1f} {p99s:7.1f} {top:8.1f} {p50 - f50:+10.1f} {p99 - f99:+10.1f}"
            f" {p99s - f99s:+10.1f} {p50 / f50:9.2f}x {per_token:13.1f}"
        )
    ours = results[labels["rxkit"]]
    p50_ok = ours["p50_minus_floor_us"] <= TARGET_P50_US
    for label, key in (("pooled p99", "p99_minus_floor_us"), ("p99s", "p99_streams_median_minus_floor_us")):
        ok = p50_ok and ours[key] <= TARGET_P99_US
        print(
            f"target: rxkit (subscribe) p50 within {TARGET_P50_US:g} µs and p99 within {TARGET_P99_US:g} µs of the"
            f" floor, on the {label}: {ours['p50_minus_floor_us']:+.1f} / {ours[key]:+.1f} µs,"
            f" {'met' if ok else 'MISSED'}"
        )
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="4 streams per client instead of 20")
    parser.add_argument("--reps", type=int, help="streams per client (default 20, --quick 4)")
    parser.add_argument("--tokens", type=int, default=300, help="tokens per stream")
    parser.add_argument("--gap", type=int, default=1_000, help="µs between chunks")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--warm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 4 if args.quick else 20
    raise_fd_limit()
    if args.child:
        asyncio.run(child(args.child, args.url, args.warm))
        return {}
    results = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
