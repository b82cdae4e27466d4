"""Plots for notebooks (matplotlib, imported only when a plot is asked for); each returns a ``Figure``.

* :func:`plot_vad`: a waveform with per-frame VAD decisions, speech segments and turn boundaries;
* :func:`plot_latency`: time to first token, latency and tokens/s per provider from
  :class:`~rxkit.telemetry.metrics.Metrics`;
* :func:`plot_backpressure`: what a buffer's overflow policy kept and dropped, from
  :class:`FlowTrace` records made by :func:`trace_flow`.

Figures are made without pyplot (no global figure state); in a Jupyter kernel a
returned figure shows as a PNG.

>>> import numpy as np
>>> fig = plot_vad(np.zeros(1600, dtype=np.int16), 16_000, frames=[False] * 3, frame_ms=30)
>>> len(fig.axes)
2
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rxkit.errors import BufferOverflowError
from rxkit.extras import require_extra
from rxkit.graph import astream
from rxkit.scheduling import from_async_iterable

__all__ = ["FlowTrace", "plot_backpressure", "plot_latency", "plot_vad", "trace_flow"]


@dataclass
class FlowTrace:
    """When each item was produced and consumed (seconds), to see what a buffer kept and dropped.

    At most ``limit`` records of each kind are kept. Items must be hashable.
    """

    produced: list[tuple[float, Any]] = field(default_factory=list)
    consumed: list[tuple[float, Any]] = field(default_factory=list)
    error: str | None = None
    error_at: float | None = None
    limit: int = 100_000

    def produce(self, t: float, item: Any) -> None:
        if len(self.produced) < self.limit:
            self.produced.append((t, item))

    def consume(self, t: float, item: Any) -> None:
        if len(self.consumed) < self.limit:
            self.consumed.append((t, item))

    @property
    def dropped(self) -> list[tuple[float, Any]]:
        """Produced items never consumed (those after an error included)."""
        kept = {item for _, item in self.consumed}
        return [(t, item) for t, item in self.produced if item not in kept]


async def trace_flow(
    stage: Any,
    n: int = 200,
    *,
    produce_every: float = 0.001,
    consume_every: float = 0.005,
    consumer_buffer: int = 1,
) -> FlowTrace:
    """Push ``n`` numbers every ``produce_every`` s through ``stage`` to a consumer taking ``consume_every`` s each.

    The producer is an async generator (it can pause under a ``wait``
    policy); the consumer reads the graph with ``astream(maxsize=consumer_buffer)``,
    so the stage's own buffer is what fills. A ``BufferOverflowError`` ends the
    trace with ``error`` set.

    >>> # trace = await trace_flow(bounded_buffer(8, "drop_oldest"))
    """
    trace = FlowTrace()
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def numbers() -> Any:
        for i in range(n):
            trace.produce(loop.time() - t0, i)
            yield i
            await asyncio.sleep(produce_every)

    try:
        async for item in astream(from_async_iterable(numbers), through=stage, maxsize=consumer_buffer):
            trace.consume(loop.time() - t0, item)
            await asyncio.sleep(consume_every)
    except BufferOverflowError as exc:
        trace.error, trace.error_at = str(exc), loop.time() - t0
    return trace


# -- plots -----------------------------------------------------------------
def _figure(rows: int, cols: int = 1, *, height: float = 2.4, width: float = 10.0, **kw: Any) -> Any:
    Figure = require_extra("matplotlib.figure", "notebook", "rxkit.notebook plots").Figure
    _enable_inline_figures(Figure)
    fig = Figure(figsize=(width, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes


def _enable_inline_figures(figure_class: type) -> None:
    """In a kernel, show a returned ``Figure`` as PNG (pyplot would register this; we do not use pyplot)."""
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    png = getattr(getattr(shell, "display_formatter", None), "formatters", {}).get("image/png")
    if png is None:
        return
    try:
        png.lookup_by_type(figure_class)
    except KeyError:
        from IPython.core.pylabtools import print_figure

        png.for_type(figure_class, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def plot_vad(
    samples: Any,
    sample_rate: int = 16_000,
    *,
    frames: Sequence[bool] | None = None,
    frame_ms: int = 30,
    speech: Sequence[tuple[float, float]] = (),
    turns: Sequence[float] = (),
    title: str = "",
) -> Any:
    """Plot a waveform with speech segments, turn boundaries and (below) per-frame VAD decisions.

    ``samples``: 16-bit PCM bytes, an integer array (int16, int32, 8-bit
    unsigned PCM...: scaled by its type's range) or floats in -1..1.
    ``frames``: one VAD decision per ``frame_ms`` frame. ``speech``:
    ``(start_s, end_s)`` segments (shaded). ``turns``: times (s) where a turn
    ended (dashed red lines). Returns the matplotlib ``Figure``.
    """
    np = require_extra("numpy", "notebook", "plot_vad")
    if isinstance(samples, (bytes, bytearray, memoryview)):
        wave = np.frombuffer(samples, dtype=np.int16).astype(np.float32) / 32768.0
    else:
        raw: Any = np.asarray(samples)
        if raw.dtype.kind in "iu":  # full scale is the type's own: int16 / 32768, int32 / 2**31, uint8 around 128
            info = np.iinfo(raw.dtype)
            middle = (int(info.max) + int(info.min) + 1) / 2
            raw = (raw.astype(np.float64) - middle) / (int(info.max) + 1 - middle)
        wave = raw.astype(np.float32)
    t = np.arange(len(wave)) / sample_rate
    fig, axes = _figure(2 if frames is not None else 1, sharex=True, height=2.2)
    ax = axes[0][0]
    ax.plot(t, wave, linewidth=0.5, color="#345")
    for i, (start, end) in enumerate(speech):
        ax.axvspan(start, end, color="#4a4", alpha=0.2, label="speech" if i == 0 else None)
    for i, at in enumerate(turns):
        ax.axvline(at, color="#c22", linestyle="--", label="end of turn" if i == 0 else None)
    ax.set_ylabel("amplitude")
    ax.set_title(title or f"{len(wave) / sample_rate:.2f} s at {sample_rate} Hz")
    if speech or turns:
        ax.legend(loc="upper right")
    if frames is not None:
        vad_ax = axes[1][0]
        starts = np.arange(len(frames)) * frame_ms / 1000
        vad_ax.step(starts, np.asarray(frames, dtype=float), where="post", color="#4a4")
        vad_ax.set_ylim(-0.1, 1.1)
        vad_ax.set_yticks([0, 1], ["silence", "speech"])
        vad_ax.set_ylabel("VAD")
    axes[-1][0].set_xlabel("time (s)")
    return fig


def plot_latency(metrics: Any) -> Any:
    """Bars per provider: time to first token and latency (p50, with p95 whiskers), and tokens/s.

    ``metrics`` is a :class:`~rxkit.telemetry.metrics.Metrics` or its ``providers()`` rows.
    Returns the matplotlib ``Figure``.
    """
    rows = metrics.providers() if hasattr(metrics, "providers") else list(metrics)
    names = [r["provider"] for r in rows]
    fig, axes = _figure(1, 2, height=3.2)
    ax, tps_ax = axes[0]
    x = list(range(len(rows)))
    width = 0.38

    def values(key: str) -> list[float]:
        return [r[key] if r[key] is not None else 0.0 for r in rows]

    bars = [
        (-width / 2, "first token", "ttft_p50_s", "ttft_p95_s"),
        (width / 2, "latency", "latency_p50_s", "latency_p95_s"),
    ]
    for offset, label, p50, p95 in bars:
        mid, high = values(p50), values(p95)
        whiskers = [[0.0] * len(mid), [max(0.0, h - m) for m, h in zip(mid, high, strict=True)]]
        ax.bar([i + offset for i in x], mid, width, yerr=whiskers, capsize=3, label=f"{label} p50")
    ax.set_xticks(x, names)
    ax.set_ylabel("seconds")
    ax.set_title("time to first token and latency (whiskers: p95)")
    ax.legend(loc="upper left", fontsize="small")
    tps_ax.bar(x, values("tokens_per_s_p50"), 0.6, color="#4a4")
    for i, row in enumerate(rows):
        if row["tokens_per_s_p50"] is None:  # the provider reported no token counts
            tps_ax.annotate("n/a", (i, 0), ha="center", va="bottom", color="#777")
    tps_ax.set_xticks(x, names)
    tps_ax.set_ylabel("tokens / s")
    cost = sum(r["cost_usd"] for r in rows)
    tps_ax.set_title(f"output speed (p50) · total cost ${cost:.6f}")
    return fig


def plot_backpressure(traces: Mapping[str, FlowTrace]) -> Any:
    """One panel per policy: items produced (grey), consumed (green) and dropped (red x) over time.

    ``traces`` maps a label (the policy) to a :class:`FlowTrace`. Returns the
    matplotlib ``Figure``.
    """
    if not traces:  # like the other plots on empty data: an empty panel, not matplotlib's error
        fig, axes = _figure(1, sharex=True, height=2.0)
        axes[0][0].set_title("no traces", loc="left")
        axes[0][0].set_xlabel("time (s)")
        return fig
    fig, axes = _figure(len(traces), sharex=True, height=2.0)
    for (label, trace), (ax,) in zip(traces.items(), axes, strict=True):
        dropped = trace.dropped
        for points, style in (
            (trace.produced, {"color": "#bbb", "marker": ".", "label": "produced"}),
            (trace.consumed, {"color": "#2a2", "marker": "o", "label": "consumed"}),
            (dropped, {"color": "#d22", "marker": "x", "label": "dropped"}),
        ):
            if points:
                ax.scatter([p[0] for p in points], [p[1] for p in points], s=10, **style)
        if trace.error_at is not None:
            ax.axvline(trace.error_at, color="#d22", label="overflow error")
        status = f" · failed: {trace.error.split(':')[0][:60]}" if trace.error else ""
        ax.set_title(f"{label}: kept {len(trace.consumed)}, dropped {len(dropped)}{status}", loc="left")
        ax.set_ylabel("item")
        ax.legend(loc="lower right", fontsize="small")
    axes[-1][0].set_xlabel("time (s)")
    return fig
