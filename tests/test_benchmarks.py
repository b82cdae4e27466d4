"""The B4 benchmark still runs end to end (small N, the clients CI has), and its verdict reads its numbers right.

The benchmarks are scripts, not tests (speed is not asserted in the suite);
this keeps them from rotting: a real server process, real client processes,
every stream accounted for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bench import bench_b4_concurrency as b4

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "gc"), [("burst", "default"), ("steady", "default"), ("steady", "deferred")])
def test_b4_runs_rxkit_and_the_floor_and_accounts_for_every_stream(mode: str, gc: str, tmp_path: Path) -> None:
    out = tmp_path / "b4.json"
    clients = ["aiohttp", "rxkit"]
    cmd = [sys.executable, "-m", "tests.bench.bench_b4_concurrency", "--sizes", "20", "--clients", ",".join(clients)]
    cmd += ["--mode", mode, "--gc", gc, "--no-trace", "--json", str(out)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "target: rxkit p99 added TTFT under 5 ms" in result.stdout
    rows = json.loads(out.read_text())
    assert {r["client"] for r in rows} == set(clients)
    for r in rows:
        assert "error" not in r, r
        assert r["completed"] == r["measured"] > 0, r
        assert r["errors"] == []
        assert r["request_ms"]["50"] > 0 and r["delivery_ms"]["50"] > 0  # the server's stamps were read
        assert r["gc_ms"]["max"] >= 0
        assert r["gc_mode"] == gc
        if gc == "deferred":  # no collection in a round of a few seconds: the collector waits for its minute
            assert r["gc_ms"]["count"] == 0, r["gc_ms"]
        # The server counted the client's connections: the pool is reused (at most one per stream in flight).
        assert 1 <= r["server"]["connections"] <= 20 + 1
        assert r["server"]["completed"] >= r["completed"]
        assert r["server"]["disconnects"] == 0


def _row(client: str, p99: float, run: int, completed: int = 1000) -> dict[str, Any]:
    return {
        "client": client,
        "streams": 1000,
        "measured": 1000,
        "completed": completed,
        "run": run,
        "runs": 3,
        "added_ttft_ms": {"p50": p99 / 2, "p99": p99, "max": p99},
        "rss_kib_per_stream": 30.0 if client == "rxkit" else 45.0,
        "traced_kib_per_stream": None,
    }


def test_b4_verdict_takes_medians_and_compares_with_the_floor(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_row("rxkit", p, i) for i, p in enumerate((3.0, 90.0, 4.0))]
    rows += [_row("aiohttp", p, i) for i, p in enumerate((10.0, 12.0, 300.0))]
    rows += [_row("openai", 50.0, i) for i in range(3)]
    figures = b4.verdict(rows)
    text = capsys.readouterr().out
    assert figures["p99"]["rxkit"] == 4.0 and figures["p99"]["aiohttp"] == 12.0
    assert figures["met"] is True
    assert figures["over_floor"] == pytest.approx(-8.0)
    assert figures["least_RSS"] is True
    assert "rxkit 4.00" in text and "met" in text


def test_b4_verdict_misses_when_a_stream_did_not_finish() -> None:
    rows = [_row("rxkit", 1.0, 0, completed=999)]
    assert b4.verdict(rows)["met"] is False


def test_b7_runs_every_client_and_gives_its_verdicts(tmp_path: Path) -> None:
    out = tmp_path / "b7.json"
    # --no-instructor: the suite never creates instructor's throwaway venv (that needs the package index)
    cmd = [sys.executable, "-m", "tests.bench.bench_b7_partial", "--sizes", "1,2", "--reps", "1", "--no-instructor"]
    cmd += ["--json", str(out)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {r["client"] for r in rows} >= {"rxkit", "rxkit-dict", "rxkit-parse", "jiter-reparse"}
    assert all(r["us_per_token"] > 0 and r["tokens"] > 200 for r in rows)
    assert "rxkit 2 KB / 1 KB per token" in result.stdout
