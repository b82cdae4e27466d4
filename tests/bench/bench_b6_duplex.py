"""B6: duplex mode, added latency per audio block through rxkit, against a raw aiohttp WebSocket loop (the floor).

Run: ``.venv/bin/python -m tests.bench.bench_b6_duplex [--quick] [--blocks N] [--json FILE]``

A loopback aiohttp WebSocket server takes ``input_audio_buffer.append``
events and, at the same time, streams ``response.output_audio.delta`` events
(OpenAI Realtime's GA shapes), one 20 ms block every 20 ms each way, paced
like a microphone and a model. Two clients run the same conversation, one
after the other, on the same loop:

* rxkit: a paced mic source -> ``operators.duplex(OpenAIRealtime(...))`` ->
  a sink stage (the speaker's place);
* the floor: a raw ``aiohttp`` loop doing the same work by hand: each 16 kHz
  block resampled to 24 kHz (:class:`rxkit.audio.FrameConverter`), base64,
  the JSON text, ``await ws.send_str``; each received delta parsed and
  base64-decoded, then handed to the sink.

In: mic block handed over -> its append event read by the server. Out: the
server's ``send_str`` of a delta -> the decoded block at the sink. Both clocks
are ``time.perf_counter`` in one process; the first half second of each run
is left out (rxkit's mic starts while its socket opens; the floor connects
first). CPU: the process's CPU seconds per
minute of conversation, server included (the same for both). Target: rxkit
within 100 µs of the floor at p50 and 1 ms at p99, both directions.

``--allocs``: memory allocated per block on each path, with no socket (a
stand-in does what aiohttp's client does with a frame: encode a str, copy
the payload as it masks it): tracemalloc's peak above the start of the block
(the transient bytes one block holds at once), and CPU µs per block in a
second pass without tracemalloc. In: a 16 kHz mic block converted, queued,
encoded and written by the session's writer task; out: one
``response.output_audio.delta`` parsed and handled into an AudioFrame.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import platform
import statistics
import sys
import time
import tracemalloc
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from reactivex import operators as ops

from rxkit.audio.convert import FrameConverter
from rxkit.duplex import OpenAIRealtime
from rxkit.elements import AudioFrame
from rxkit.graph import astream
from rxkit.operators import duplex
from rxkit.scheduling import from_async_iterable

BLOCK_S = 0.02
IN_BLOCK = bytes(16000 * 2 // 50)  # 20 ms of 16 kHz silence
OUT_DELTA = base64.b64encode(bytes(24000 * 2 // 50)).decode()  # 20 ms at 24 kHz
TARGET_P50_US, TARGET_P99_US = 100.0, 1000.0


class Server:
    """Reads appends (stamping each) and streams ``blocks`` deltas (stamping each send)."""

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks
        self.appended: list[float] = []
        self.sent: list[float] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/realtime", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.appended, self.sent = [], []
        sender = asyncio.get_running_loop().create_task(self.stream(ws))
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT and msg.data.startswith('{"type":"input_audio_buffer.append"'):
                    self.appended.append(time.perf_counter())
        finally:
            sender.cancel()
        return ws

    async def stream(self, ws: web.WebSocketResponse) -> None:
        await ws.send_str(json.dumps({"type": "response.created", "event_id": "e0", "response": {"id": "r1"}}))
        head = '{"type":"response.output_audio.delta","event_id":"e","response_id":"r1","item_id":"i1",'
        start = time.perf_counter()
        for k in range(self.blocks):
            await asyncio.sleep(max(0.0, start + k * BLOCK_S - time.perf_counter()))
            text = head + f'"output_index":0,"content_index":0,"delta":"{OUT_DELTA}"}}'
            self.sent.append(time.perf_counter())
            await ws.send_str(text)
        done = {"type": "response.done", "event_id": "e1", "response": {"id": "r1", "status": "completed"}}
        await ws.send_str(json.dumps(done))


async def paced_mic(blocks: int, stamps: list[float]) -> Any:
    start = time.perf_counter()
    for k in range(blocks):
        await asyncio.sleep(max(0.0, start + k * BLOCK_S - time.perf_counter()))
        stamps.append(time.perf_counter())
        yield AudioFrame(IN_BLOCK, 16000)


async def run_rxkit(server: Server, blocks: int) -> tuple[list[float], list[float]]:
    mic: list[float] = []
    heard: list[float] = []
    session = OpenAIRealtime(
        base_url=server.url, api_key="sk-bench-00000000", transcription_model=None, finish_grace_s=0.3
    )

    def sink(x: Any) -> None:
        if type(x) is AudioFrame:
            heard.append(time.perf_counter())

    source = from_async_iterable(lambda: paced_mic(blocks, mic))
    async for _ in astream(source, through=lambda o: duplex(session)(o).pipe(ops.do_action(sink))):
        pass
    return _pairs(mic, server.appended), _pairs(server.sent, heard)


async def run_floor(server: Server, blocks: int) -> tuple[list[float], list[float]]:
    mic: list[float] = []
    heard: list[float] = []
    convert = FrameConverter(24000, 1)
    prefix = '{"type":"input_audio_buffer.append","audio":"'
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.url}/realtime?model=m") as ws:

        async def send() -> None:
            async for frame in paced_mic(blocks, mic):
                pcm = convert(frame).pcm
                await ws.send_str(prefix + base64.b64encode(pcm).decode("ascii") + '"}')

        async def receive() -> None:
            async for msg in ws:
                event = orjson.loads(msg.data)
                if event["type"] == "response.output_audio.delta":
                    AudioFrame(base64.b64decode(event["delta"]), 24000)
                    heard.append(time.perf_counter())
                elif event["type"] == "response.done":
                    return

        await asyncio.gather(send(), receive())
        await asyncio.sleep(0.3)
    return _pairs(mic, server.appended), _pairs(server.sent, heard)


class _Socket:
    """Does with a frame what aiohttp's client does: encodes a str, copies the payload as it masks it."""

    closed = False

    async def send_str(self, data: str, compress: int | None = None) -> None:
        bytearray(data.encode("utf-8"))

    async def send_frame(self, message: bytes, opcode: Any, compress: int | None = None) -> None:
        bytearray(message)

    async def close(self) -> None:
        pass


async def hot_path(blocks: int, traced: bool) -> dict[str, tuple[float, float]]:
    """Per path: (median transient bytes per block, CPU µs per block)."""
    session = OpenAIRealtime(api_key="sk-bench-00000000", transcription_model=None)
    out: list[Any] = []
    session.emit = out.append
    convert = FrameConverter(24000, 1)
    session.outbox.open()
    writer = asyncio.get_running_loop().create_task(session.outbox.write(_Socket()))  # type: ignore[arg-type]
    session.reply_started()
    frame = AudioFrame(IN_BLOCK, 16000)
    text = '{"type":"response.output_audio.delta","event_id":"e","response_id":"r1","item_id":"i1",'
    text += f'"output_index":0,"content_index":0,"delta":"{OUT_DELTA}"}}'
    results = {}
    for name in ("in", "out"):
        peaks: list[int] = []
        cpu = 0.0
        for k in range(blocks + 50):  # the first 50 warm up (buffers, plans)
            if traced:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
            t = time.process_time()
            if name == "in":
                session.send_audio(convert(frame).pcm)
                for _ in range(3):  # the writer's turn
                    await asyncio.sleep(0)
            else:
                session.handle(orjson.loads(text))
                out.clear()
            if k >= 50:
                cpu += time.process_time() - t
                if traced:
                    peaks.append(tracemalloc.get_traced_memory()[1] - base)
        results[name] = (statistics.median(peaks) if peaks else float("nan"), cpu / blocks * 1e6)
    writer.cancel()
    return results


def allocs(blocks: int) -> None:
    cpu = asyncio.run(hot_path(blocks, traced=False))
    tracemalloc.start()
    try:
        mem = asyncio.run(hot_path(blocks, traced=True))
    finally:
        tracemalloc.stop()
    print(f"B6 hot path, no socket: {blocks} blocks of 20 ms; {platform.python_version()}")
    for name in ("in", "out"):
        print(f"{name:4} {mem[name][0]:8.0f} bytes held at once per block   {cpu[name][1]:7.1f} µs CPU per block")


WARMUP = 25  # blocks left out of each run: the first half second (rxkit's mic starts while its socket opens)


def _pairs(start: list[float], end: list[float]) -> list[float]:
    n = min(len(start), len(end))
    return [(b - a) * 1e6 for a, b in zip(start[WARMUP:n], end[WARMUP:n], strict=True)]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main_async(blocks: int) -> dict[str, Any]:
    server = Server(blocks)
    await server.start()
    results: dict[str, Any] = {}
    try:
        for name, runner in (("floor", run_floor), ("rxkit", run_rxkit), ("floor", run_floor), ("rxkit", run_rxkit)):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            lat_in, lat_out = await runner(server, blocks)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            r = results.setdefault(name, {"in": [], "out": [], "cpu_s_per_min": []})
            r["in"] += lat_in
            r["out"] += lat_out
            r["cpu_s_per_min"].append(cpu / wall * 60)
    finally:
        await server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 blocks (3 s) per run instead of 1500 (30 s)")
    parser.add_argument("--blocks", type=int, help="20 ms blocks per run (each client runs twice)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers")
    parser.add_argument("--allocs", action="store_true", help="memory and CPU per block on each path, no socket")
    args = parser.parse_args(argv)
    blocks = args.blocks or (150 if args.quick else 1500)
    if args.allocs:
        allocs(blocks)
        return 0
    results = asyncio.run(main_async(blocks))
    print(f"B6 duplex: {blocks} blocks of 20 ms each way per run, 2 runs per client; {platform.python_version()}")
    print(f"{'':8} {'in p50':>9} {'in p99':>9} {'out p50':>9} {'out p99':>9}  {'CPU s/min':>9}   (µs)")
    table: dict[str, dict[str, float]] = {}
    for name in ("floor", "rxkit"):
        r = results[name]
        row = {
            "in_p50": _pct(r["in"], 0.5),
            "in_p99": _pct(r["in"], 0.99),
            "out_p50": _pct(r["out"], 0.5),
            "out_p99": _pct(r["out"], 0.99),
            "cpu_s_per_min": statistics.median(r["cpu_s_per_min"]),
        }
        table[name] = row
        print(f"{name:8} {row['in_p50']:9.0f} {row['in_p99']:9.0f} {row['out_p50']:9.0f} {row['out_p99']:9.0f}  "
              f"{row['cpu_s_per_min']:9.2f}")  # fmt: skip
    added = {k: table["rxkit"][k] - table["floor"][k] for k in ("in_p50", "in_p99", "out_p50", "out_p99")}
    met = (
        max(added["in_p50"], added["out_p50"]) <= TARGET_P50_US
        and max(added["in_p99"], added["out_p99"]) <= TARGET_P99_US
    )
    print("added by rxkit: " + ", ".join(f"{k} {v:+.0f} µs" for k, v in added.items()))
    print(f"target (p50 +{TARGET_P50_US:.0f} µs, p99 +{TARGET_P99_US:.0f} µs): {'met' if met else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"blocks": blocks, "table": table, "added_us": added, "met": met}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
