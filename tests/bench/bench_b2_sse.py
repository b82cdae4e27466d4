"""B2: SSE decode throughput of rxkit against openai-python's and httpx-sse's decoders.

All three decode the same bytes, cut the same ways, and must produce the
same events; only decoding is timed (no sockets). Run it directly::

    .venv/bin/python tests/bench/bench_b2_sse.py [--quick] [--json out.json]

What each peer runs is what it runs in production:

* openai-python: ``openai._streaming.SSEDecoder().iter_bytes(chunks)``, the
  decoder behind ``AsyncStream`` (bytes split on CR/LF, one UTF-8 decode and
  one ``decode(line)`` call per line);
* httpx-sse: what ``EventSource.iter_sse`` does after httpx hands it bytes:
  httpx's ``TextDecoder`` (incremental UTF-8), ``SSELineDecoder.decode``,
  ``line.rstrip("\\n")`` and ``SSEDecoder.decode`` per line;
* rxkit: ``rxkit.sse.SSEDecoder().feed(chunk)``.

Targets (issue 3): at 1460-byte chunks at least 1.2x httpx-sse and 2.5x
openai-python; the cost of one 2 MiB event linear in its size.
Needs the ``bench`` extra: ``pip install openai httpx-sse``. openai-python's
decoder changed between major versions (2.x joins lines with ``data += line``,
quadratic for a big event; 3.x splits with a regex into a bytearray), and the
bench extra holds openai at 2.x (LiteLLM, a B4 peer, requires ``openai<3``).
So that the current release is measured too, put openai 3.x beside it::

    .venv/bin/pip install --no-deps --target .bench-peers/openai-3 'openai>=3'

and B2 runs once per openai it finds (the installed one, then the one in
``.bench-peers/openai-3`` in a second process, where it comes first on the
path), each table with its own version in the header. The verdict is taken
against the newest openai-python measured, and every ratio is printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rxkit.sse import SSEDecoder

Decoder = Callable[[Sequence[bytes]], list[tuple[str, str]]]


def openai_stream(events: int, ascii_only: bool = False) -> bytes:
    """A realistic Chat Completions stream: role chunk, text deltas, finish, usage, [DONE]."""
    base = {
        "id": "chatcmpl-AZ3kQ7xYbT0Lm9vR2cW8nP5eF1gHj",
        "object": "chat.completion.chunk",
        "created": 1732700000,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_0705bf87c0",
    }
    words = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", " — ", "café", " 🌍", "."]
    parts = []
    for i in range(events):
        delta = {"role": "assistant", "content": ""} if i == 0 else {"content": words[i % len(words)]}
        chunk = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
            "usage": None,
        }
        parts.append(b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=ascii_only).encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def by_event(raw: bytes) -> list[bytes]:
    return [e + b"\n\n" for e in raw.split(b"\n\n") if e]


def by_size(raw: bytes, size: int) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def rxkit_decoder(chunks: Sequence[bytes]) -> list[tuple[str, str]]:
    d = SSEDecoder()
    feed = d.feed
    return [(e.event, e.data) for c in chunks for e in feed(c)]


def openai_decoder(chunks: Sequence[bytes]) -> list[tuple[str, str]]:
    from openai._streaming import SSEDecoder as OpenAISSEDecoder

    return [(e.event or "message", e.data) for e in OpenAISSEDecoder().iter_bytes(iter(chunks))]


def httpx_sse_decoder(chunks: Sequence[bytes]) -> list[tuple[str, str]]:
    from httpx._decoders import TextDecoder
    from httpx_sse._decoders import SSEDecoder as HSSEDecoder
    from httpx_sse._decoders import SSELineDecoder

    text, lines, sse = TextDecoder("utf-8"), SSELineDecoder(), HSSEDecoder()
    out = []
    for c in chunks:
        for line in lines.decode(text.decode(c)):
            event = sse.decode(line.rstrip("\n"))
            if event is not None:
                out.append((event.event or "message", event.data))
    for line in lines.decode(text.flush()) + lines.flush():
        event = sse.decode(line.rstrip("\n"))
        if event is not None:
            out.append((event.event or "message", event.data))
    return out


DECODERS: dict[str, Decoder] = {"rxkit": rxkit_decoder, "httpx-sse": httpx_sse_decoder, "openai": openai_decoder}
PEERS = Path(__file__).resolve().parents[2] / ".bench-peers"


def best_times(chunks: Sequence[bytes], repeats: int) -> dict[str, float]:
    """Best time of each decoder; the decoders take turns in every round, so that load
    from elsewhere on the machine hits them alike."""
    best = dict.fromkeys(DECODERS, float("inf"))
    for _ in range(repeats):
        for name, fn in DECODERS.items():
            gc.collect()
            gc.disable()
            try:
                t = time.perf_counter()
                fn(chunks)
                best[name] = min(best[name], time.perf_counter() - t)
            finally:
                gc.enable()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--one", action="store_true", help="measure only the openai-python on the path")
    args = parser.parse_args()
    if args.one:
        results = measure(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return
    runs = [measure(args)]
    extra = PEERS / "openai-3"
    if extra.is_dir():
        print()
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "b2.json")
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(extra), os.environ.get("PYTHONPATH", "")])}
            cmd = [sys.executable, "-m", "tests.bench.bench_b2_sse", "--one", "--json", out]
            subprocess.run([*cmd, *(["--quick"] if args.quick else [])], env=env, check=True)
            with open(out) as f:
                runs.append(json.load(f))
    else:
        print(f"\n(openai-python 3.x not measured: install it beside the bench extra, see {Path(__file__).name})")
    verdict(runs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=2)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:3])


def verdict(runs: list[dict[str, Any]]) -> bool:
    """Targets at 1460-byte chunks against the newest openai-python measured; every ratio shown."""
    for run in runs:
        t = run["1460-byte chunks"]
        print(
            f"at 1460-byte chunks with openai {run['openai_version']}: {t['vs_httpx_sse']:.2f}x httpx-sse, "
            f"{t['vs_openai']:.2f}x openai-python"
        )
    newest = max(runs, key=lambda r: _version_key(r["openai_version"]))
    target = newest["1460-byte chunks"]
    linear = newest["linearity_8MiB_vs_2MiB_per_byte"]
    ok = target["vs_httpx_sse"] >= 1.2 and target["vs_openai"] >= 2.5 and linear < 1.5
    print(
        f"targets at 1460-byte chunks (>=1.2x httpx-sse, >=2.5x openai-python {newest['openai_version']}, the newest "
        f"measured) and linearity ({linear:.2f}): {'MET' if ok else 'MISSED'}"
    )
    return ok


def measure(args: argparse.Namespace) -> dict[str, Any]:
    repeats = 3 if args.quick else 7
    stream = openai_stream(4_000 if args.quick else 20_000)
    ascii_stream = openai_stream(4_000 if args.quick else 20_000, ascii_only=True)
    small = stream[: len(stream) // 5]  # 7-byte chunks: fewer bytes, same per-byte cost
    big_event = b"data: " + b"x" * (2 * 1024 * 1024) + b"\n\n"
    bigger_event = b"data: " + b"x" * (8 * 1024 * 1024) + b"\n\n"
    cases = {
        "one event per chunk": by_event(stream),
        "1460-byte chunks": by_size(stream, 1460),
        "1460-byte chunks, ASCII-only JSON": by_size(ascii_stream, 1460),
        "16 KiB chunks": by_size(stream, 16 * 1024),
        "7-byte chunks": by_size(small, 7),
        "one 2 MiB event, 1460-byte chunks": by_size(big_event, 1460),
        "one 8 MiB event, 1460-byte chunks": by_size(bigger_event, 1460),
    }
    import httpx_sse
    import openai

    print(
        f"B2 SSE decode throughput  python {platform.python_version()}  {platform.machine()}  best of {repeats}"
        f"  openai {openai.__version__}  httpx-sse {getattr(httpx_sse, '__version__', '?')}"
    )
    n = stream.count(b"data:")
    print(
        f"stream: {len(stream) / 1e6:.2f} MB, {n} chat.completion.chunk events of ~{len(stream) // n} bytes,"
        " raw UTF-8 text as OpenAI sends it (one row with \\u escapes instead)"
    )
    header = (
        f"{'chunking':36} {'rxkit MB/s':>11} {'httpx-sse':>10} {'openai':>10} {'vs httpx-sse':>13} {'vs openai':>10}"
    )
    print(header)
    print("-" * len(header))
    results: dict[str, Any] = {"openai_version": openai.__version__}
    for name, chunks in cases.items():
        size = sum(map(len, chunks))
        outputs = {k: fn(chunks) for k, fn in DECODERS.items()}
        reference = outputs["rxkit"]
        for k, out in outputs.items():
            if out != reference:
                sys.exit(f"{k} decoded {name!r} differently from rxkit ({len(out)} vs {len(reference)} events)")
        speed = {k: size / t / 1e6 for k, t in best_times(chunks, repeats).items()}
        ratio_h, ratio_o = speed["rxkit"] / speed["httpx-sse"], speed["rxkit"] / speed["openai"]
        results[name] = {
            "bytes": size,
            "events": len(reference),
            "MBps": speed,
            "vs_httpx_sse": ratio_h,
            "vs_openai": ratio_o,
        }
        print(
            f"{name:36} {speed['rxkit']:11.1f} {speed['httpx-sse']:10.1f} {speed['openai']:10.1f}"
            f" {ratio_h:12.2f}x {ratio_o:9.2f}x"
        )
    per_mib_2 = 1 / results["one 2 MiB event, 1460-byte chunks"]["MBps"]["rxkit"]
    per_mib_8 = 1 / results["one 8 MiB event, 1460-byte chunks"]["MBps"]["rxkit"]
    linear = per_mib_8 / per_mib_2
    results["linearity_8MiB_vs_2MiB_per_byte"] = linear
    print(f"linearity: cost per byte of an 8 MiB event / a 2 MiB event = {linear:.2f} (1.0 is linear)")
    return results


if __name__ == "__main__":
    main()
