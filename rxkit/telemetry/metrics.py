"""Metrics built from the event bus: TTFT, tokens per second, latency percentiles, tool durations, cost.

>>> from rxkit.telemetry.events import EventBus, ProviderCallCompleted
>>> bus = EventBus()
>>> m = Metrics(bus)
>>> bus.publish(ProviderCallCompleted(provider="mock", duration_s=1.0, ttft_s=0.2, output_tokens=40, cost=0.01))
>>> bus.flush(); m.providers()[0]["ttft_p50_s"], m.providers()[0]["tokens_per_s_p50"]
(0.2, 50.0)

``Metrics.table()`` gives a pandas DataFrame when pandas is installed, else a
rich Table for the terminal; in Jupyter the object displays itself.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rxkit.telemetry.events import (
    Event,
    EventBus,
    ProviderCallCompleted,
    ProviderCallFailed,
    StageCompleted,
    StageFailed,
    StructuredResult,
    StructuredRetry,
    ToolCallCompleted,
    ToolCallFailed,
    default_bus,
)

__all__ = ["Metrics", "percentile"]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation, as numpy's default; None if empty."""
    data = sorted(values)
    if not data:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass
class _Series:
    """Bounded samples of one measure, plus exact counters."""

    maxlen: int
    samples: deque[float] = field(init=False)
    count: int = 0
    total: float = 0.0

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=self.maxlen)

    def add(self, value: float) -> None:
        self.samples.append(value)
        self.count += 1
        self.total += value

    def p(self, q: float) -> float | None:
        return percentile(self.samples, q)


class Metrics:
    """Collects events from a bus into per-provider, per-stage and per-tool statistics.

    Samples are bounded (``max_samples`` per series); counts and totals are exact.
    """

    def __init__(self, bus: EventBus | None = None, *, max_samples: int = 10_000) -> None:
        self.bus = bus if bus is not None else default_bus
        self.max_samples = max_samples
        new = self._series
        self.provider_latency: defaultdict[str, _Series] = defaultdict(new)
        self.provider_ttft: defaultdict[str, _Series] = defaultdict(new)
        self.provider_tps: defaultdict[str, _Series] = defaultdict(new)
        self.provider_calls: defaultdict[str, int] = defaultdict(int)
        self.provider_errors: defaultdict[str, int] = defaultdict(int)
        self.provider_tokens: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.provider_cost: defaultdict[str, float] = defaultdict(float)
        self.conversation_cost: defaultdict[str, float] = defaultdict(float)
        self.stage_duration: defaultdict[str, _Series] = defaultdict(new)
        self.stage_failures: defaultdict[str, int] = defaultdict(int)
        self.tool_duration: defaultdict[str, _Series] = defaultdict(new)
        self.tool_failures: defaultdict[str, int] = defaultdict(int)
        # typed functions: [valid results, failed results, retries] per function
        self.structured: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.started = time.monotonic()
        self._handlers: dict[type, Callable[[Any], None]] = {
            ProviderCallCompleted: self._provider_completed,
            ProviderCallFailed: self._provider_failed,
            StageCompleted: self._stage_completed,
            StageFailed: self._stage_failed,
            ToolCallCompleted: self._tool_completed,
            ToolCallFailed: self._tool_failed,
            StructuredResult: self._structured_result,
            StructuredRetry: self._structured_retry,
        }
        self._unsubscribe: Callable[[], None] | None = self.bus.subscribe(self.observe)

    def _series(self) -> _Series:
        return _Series(self.max_samples)

    def observe(self, event: Event) -> None:
        """Take one event into account (called by the bus; call it yourself to replay events)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def replay(self, events: Iterable[Event]) -> Metrics:
        for e in events:
            self.observe(e)
        return self

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- event handlers -------------------------------------------------
    def _provider_completed(self, e: ProviderCallCompleted) -> None:
        p = e.provider
        self.provider_calls[p] += 1
        self.provider_latency[p].add(e.duration_s)
        if e.ttft_s is not None:
            self.provider_ttft[p].add(e.ttft_s)
            generating = e.duration_s - e.ttft_s
            if e.output_tokens and generating > 0:
                self.provider_tps[p].add(e.output_tokens / generating)
        tokens = self.provider_tokens[p]
        tokens[0] += e.input_tokens
        tokens[1] += e.output_tokens
        tokens[2] += e.cached_input_tokens
        if e.cost is not None:  # None: no known price (not $0)
            self.provider_cost[p] += e.cost
            self.conversation_cost[e.conversation or "default"] += e.cost

    def _provider_failed(self, e: ProviderCallFailed) -> None:
        self.provider_calls[e.provider] += 1
        self.provider_errors[e.provider] += 1

    def _stage_completed(self, e: StageCompleted) -> None:
        self.stage_duration[e.stage].add(e.duration_s)

    def _stage_failed(self, e: StageFailed) -> None:
        self.stage_duration[e.stage].add(e.duration_s)
        if not e.upstream:  # counted where it happened, not at every stage it passed through
            self.stage_failures[e.stage] += 1

    def _tool_completed(self, e: ToolCallCompleted) -> None:
        self.tool_duration[e.tool].add(e.duration_s)

    def _tool_failed(self, e: ToolCallFailed) -> None:
        self.tool_duration[e.tool].add(e.duration_s)
        self.tool_failures[e.tool] += 1

    def _structured_result(self, e: StructuredResult) -> None:
        self.structured[e.function][0 if e.ok else 1] += 1

    def _structured_retry(self, e: StructuredRetry) -> None:
        self.structured[e.function][2] += 1

    # -- reading --------------------------------------------------------
    @property
    def session_cost(self) -> float:
        """Cost of every call seen, in US dollars."""
        return sum(self.provider_cost.values())

    def providers(self) -> list[dict[str, Any]]:
        rows = []
        for p in sorted(self.provider_calls):
            lat, ttft, tps = self.provider_latency[p], self.provider_ttft[p], self.provider_tps[p]
            tin, tout, tcached = self.provider_tokens[p]
            rows.append(
                {
                    "provider": p,
                    "calls": self.provider_calls[p],
                    "errors": self.provider_errors[p],
                    "ttft_p50_s": ttft.p(50),
                    "ttft_p95_s": ttft.p(95),
                    "ttft_p99_s": ttft.p(99),
                    "latency_p50_s": lat.p(50),
                    "latency_p95_s": lat.p(95),
                    "latency_p99_s": lat.p(99),
                    "tokens_per_s_p50": tps.p(50),
                    "input_tokens": tin,
                    "output_tokens": tout,
                    "cached_input_tokens": tcached,
                    "cost_usd": self.provider_cost[p],
                }
            )
        return rows

    def stages(self) -> list[dict[str, Any]]:
        return [
            {
                "stage": s,
                "runs": d.count,
                "failures": self.stage_failures[s],
                "p50_s": d.p(50),
                "p95_s": d.p(95),
                "p99_s": d.p(99),
            }
            for s, d in sorted(self.stage_duration.items())
        ]

    def tools(self) -> list[dict[str, Any]]:
        return [
            {
                "tool": t,
                "calls": d.count,
                "failures": self.tool_failures[t],
                "p50_s": d.p(50),
                "p95_s": d.p(95),
                "max_s": max(d.samples) if d.samples else None,
            }
            for t, d in sorted(self.tool_duration.items())
        ]

    def typed_functions(self) -> list[dict[str, Any]]:
        """Per typed function: valid and failed results, and retries with feedback."""
        return [
            {"function": f, "valid": ok, "failed": failed, "retries": retries}
            for f, (ok, failed, retries) in sorted(self.structured.items())
        ]

    def costs(self) -> dict[str, float]:
        """Cost per conversation, plus ``"session"`` for the total."""
        return {**dict(self.conversation_cost), "session": self.session_cost}

    def table(self, kind: str = "providers") -> Any:
        """A pandas DataFrame of ``providers``, ``stages`` or ``tools`` (a rich Table without pandas)."""
        rows = {"providers": self.providers, "stages": self.stages, "tools": self.tools}[kind]()
        try:
            import pandas as pd
        except ImportError:
            return _rich_table(kind, rows)
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        parts = []
        for kind in ("providers", "stages", "tools"):
            table = self.table(kind)
            if hasattr(table, "to_html") and len(table):
                parts.append(f"<h4>{kind}</h4>" + table.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        parts.append(f"<p>session cost: ${self.session_cost:.6f}</p>")
        return "".join(parts)

    def __rich__(self) -> Any:
        return _rich_table("providers", self.providers())


def _rich_table(title: str, rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    if not rows:
        return table
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*(_fmt(v) for v in row.values()))
    return table


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
