"""Metrics against known event sequences, and the Prometheus / OpenTelemetry exporters."""

from __future__ import annotations

import numpy as np
import pytest

from rxkit.telemetry.events import (
    EventBus,
    ProviderCallCompleted,
    ProviderCallFailed,
    ProviderCallStarted,
    StageCompleted,
    StageFailed,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallStarted,
)
from rxkit.telemetry.exporters import OpenTelemetryExporter, PrometheusExporter
from rxkit.telemetry.metrics import Metrics, percentile


@pytest.mark.parametrize("q", [0, 10, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [0.3, 0.1, 0.7, 0.2, 0.9, 0.5, 0.4]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_none_and_bad_q_is_an_error() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def _calls(bus: EventBus) -> None:
    for i in range(1, 101):  # ttft 0.01..1.00 s, duration ttft + 1 s, 50 tokens each
        ttft = i / 100
        bus.publish(
            ProviderCallCompleted(
                provider="a",
                model="m",
                call_id=str(i),
                duration_s=ttft + 1.0,
                ttft_s=ttft,
                input_tokens=10,
                output_tokens=50,
                cached_input_tokens=2,
                cost=0.001,
                conversation="c1" if i <= 60 else "c2",
            )
        )
    bus.publish(ProviderCallFailed(provider="a", call_id="x", error="boom", error_type="ProviderServerError"))
    bus.publish(ProviderCallCompleted(provider="b", duration_s=2.0, ttft_s=None, output_tokens=0, cost=0.5))


def test_provider_metrics_from_known_events() -> None:
    bus = EventBus()
    m = Metrics(bus)
    _calls(bus)
    bus.flush()
    rows = {r["provider"]: r for r in m.providers()}
    a = rows["a"]
    assert a["calls"] == 101 and a["errors"] == 1
    assert a["ttft_p50_s"] == pytest.approx(0.505)
    assert a["ttft_p95_s"] == pytest.approx(0.9505)
    assert a["ttft_p99_s"] == pytest.approx(0.9901)
    assert a["latency_p50_s"] == pytest.approx(1.505)
    assert a["tokens_per_s_p50"] == pytest.approx(50.0)
    assert (a["input_tokens"], a["output_tokens"], a["cached_input_tokens"]) == (1000, 5000, 200)
    assert a["cost_usd"] == pytest.approx(0.1)
    assert rows["b"]["ttft_p50_s"] is None
    costs = m.costs()
    assert costs["c1"] == pytest.approx(0.06)
    assert costs["c2"] == pytest.approx(0.04)
    assert costs["session"] == pytest.approx(0.6)
    m.close()
    bus.publish(ProviderCallCompleted(provider="a", duration_s=1.0, cost=1.0))
    bus.flush()
    assert m.session_cost == pytest.approx(0.6), "closed metrics ignore later events"


def test_calls_with_no_known_price_are_counted_but_not_costed() -> None:
    """cost=None (a model with no known price) is neither $0 nor an error in totals."""
    m = Metrics(EventBus())
    m.replay(
        [
            ProviderCallCompleted(provider="a", duration_s=1.0, output_tokens=5, cost=0.25, conversation="c1"),
            ProviderCallCompleted(provider="a", duration_s=1.0, output_tokens=5, cost=None, conversation="c1"),
        ]
    )
    assert m.session_cost == pytest.approx(0.25) and m.costs()["c1"] == pytest.approx(0.25)
    assert m.provider_tokens["a"][1] == 10


def test_stage_and_tool_metrics() -> None:
    m = Metrics(EventBus())
    m.replay(
        [
            StageCompleted(stage="llm", duration_s=1.0),
            StageCompleted(stage="llm", duration_s=3.0),
            StageFailed(stage="llm", duration_s=2.0, error="x"),
            ToolCallCompleted(tool="add", duration_s=0.1),
            ToolCallFailed(tool="add", duration_s=0.3, error="bad"),
        ]
    )
    (stage,) = m.stages()
    assert (stage["runs"], stage["failures"], stage["p50_s"]) == (3, 1, 2.0)
    (tool,) = m.tools()
    assert (tool["calls"], tool["failures"], tool["max_s"]) == (2, 1, 0.3)


def test_samples_are_bounded_but_counts_exact() -> None:
    m = Metrics(EventBus(), max_samples=10)
    m.replay(StageCompleted(stage="s", duration_s=float(i)) for i in range(1000))
    series = m.stage_duration["s"]
    assert series.count == 1000 and len(series.samples) == 10
    assert series.p(0) == 990.0


def test_table_is_a_dataframe_and_html_renders() -> None:
    bus = EventBus()
    m = Metrics(bus)
    _calls(bus)
    bus.flush()
    df = m.table()
    assert list(df["provider"]) == ["a", "b"]
    assert "session cost" in m._repr_html_()


def test_prometheus_exporter_counts_calls() -> None:
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    bus = EventBus()
    exporter = PrometheusExporter(bus, registry=registry)
    _calls(bus)
    bus.publish(StageCompleted(stage="llm", duration_s=0.5))
    bus.flush()
    value = registry.get_sample_value
    assert value("rxkit_provider_calls_total", {"provider": "a", "outcome": "ok"}) == 100
    assert value("rxkit_provider_calls_total", {"provider": "a", "outcome": "error"}) == 1
    assert value("rxkit_provider_tokens_total", {"provider": "a", "direction": "output"}) == 5000
    assert value("rxkit_provider_ttft_seconds_count", {"provider": "a"}) == 100
    assert value("rxkit_stage_duration_seconds_count", {"stage": "llm", "outcome": "ok"}) == 1
    exporter.close()


def test_opentelemetry_spans_follow_genai_conventions() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    bus = EventBus()
    exporter = OpenTelemetryExporter(bus, provider)
    bus.publish(ProviderCallStarted(provider="openai", model="gpt-4o", call_id="1"))
    bus.publish(ProviderCallCompleted(provider="openai", model="gpt-4o", call_id="1", input_tokens=7, output_tokens=9))
    bus.publish(ProviderCallStarted(provider="openai", model="gpt-4o", call_id="2"))
    failed = ProviderCallFailed(provider="openai", model="gpt-4o", call_id="2", error="x", error_type="RateLimitError")
    bus.publish(failed)
    bus.publish(ToolCallStarted(tool="add", call_id="t1"))
    bus.publish(ToolCallCompleted(tool="add", call_id="t1", duration_s=0.1))
    bus.flush()
    spans = {s.name + ":" + str(i): s for i, s in enumerate(memory.get_finished_spans())}
    ok, failed, tool = spans["chat gpt-4o:0"], spans["chat gpt-4o:1"], spans["execute_tool add:2"]
    assert ok.attributes["gen_ai.operation.name"] == "chat"
    assert ok.attributes["gen_ai.provider.name"] == "openai"
    assert ok.attributes["gen_ai.usage.input_tokens"] == 7
    assert ok.attributes["gen_ai.usage.output_tokens"] == 9
    assert failed.attributes["error.type"] == "RateLimitError"
    assert tool.attributes["gen_ai.tool.name"] == "add"
    assert ok.end_time >= ok.start_time
    exporter.close()
    provider.shutdown()


def test_table_falls_back_to_a_rich_table_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    bus = EventBus()
    m = Metrics(bus)
    _calls(bus)
    bus.flush()
    table = m.table()
    assert isinstance(table, Table) and table.row_count == 2
    console = Console(record=True, width=300)
    console.print(table)
    text = console.export_text()
    assert "ttft_p50_s" in text and "0.505" in text


async def test_a_failure_counts_once_at_the_stage_where_it_happened() -> None:
    """An error passes through every later stage, each of which reports StageFailed: only the first is the
    stage that failed (five stages used to count one input-validation rejection as five failures)."""
    import reactivex.operators as ops

    from rxkit.errors import RxkitError
    from rxkit.graph import Graph
    from rxkit.telemetry.events import EventBus, StageFailed

    def reject(x: int) -> int:
        raise ValueError(f"no {x}")

    bus = EventBus()
    metrics = Metrics(bus)
    graph = Graph.chain(ops.map(lambda x: x + 1), ops.map(reject), ops.map(str), ops.map(str.upper), bus=bus)
    with pytest.raises(RxkitError):
        await graph.arun([1])
    bus.flush()
    failed = bus.events(StageFailed)
    assert len(failed) == 3  # the failing stage and the two after it
    assert [e.upstream for e in failed] == [False, True, True]  # type: ignore[attr-defined]
    assert sum(metrics.stage_failures.values()) == 1
    ((stage, count),) = [(s, n) for s, n in metrics.stage_failures.items() if n]
    assert count == 1 and stage == failed[0].stage  # type: ignore[attr-defined]
