"""Optional exporters of bus events: Prometheus metrics and OpenTelemetry spans.

Prometheus (``pip install 'rxkit[metrics]'``)::

    exporter = PrometheusExporter(bus)          # registers rxkit_* metrics
    prometheus_client.start_http_server(9464)   # scrape them

OpenTelemetry spans follow the GenAI semantic conventions: one ``chat {model}``
span per provider call with ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` /
``gen_ai.usage.output_tokens``, and ``error.type`` on failure; one
``execute_tool {name}`` span per tool call::

    exporter = OpenTelemetryExporter(bus, tracer_provider)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rxkit.extras import require_extra
from rxkit.telemetry.events import (
    Event,
    EventBus,
    ProviderCallCompleted,
    ProviderCallFailed,
    ProviderCallStarted,
    StageCompleted,
    StageFailed,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallStarted,
    default_bus,
)

__all__ = ["OpenTelemetryExporter", "PrometheusExporter"]


class PrometheusExporter:
    """Keeps ``rxkit_*`` Prometheus metrics up to date from bus events."""

    def __init__(self, bus: EventBus | None = None, *, registry: Any = None, namespace: str = "rxkit") -> None:
        prom = require_extra("prometheus_client", "metrics", "the Prometheus exporter")
        kw: dict[str, Any] = {"namespace": namespace}
        if registry is not None:
            kw["registry"] = registry
        self.calls = prom.Counter("provider_calls", "Provider calls", ["provider", "outcome"], **kw)
        self.latency = prom.Histogram("provider_latency_seconds", "Provider call duration", ["provider"], **kw)
        self.ttft = prom.Histogram("provider_ttft_seconds", "Provider time to first token", ["provider"], **kw)
        self.tokens = prom.Counter("provider_tokens", "Tokens", ["provider", "direction"], **kw)
        self.cost = prom.Counter("provider_cost_usd", "Cost in US dollars", ["provider"], **kw)
        self.stage = prom.Histogram("stage_duration_seconds", "Stage run time", ["stage", "outcome"], **kw)
        self.tool = prom.Histogram("tool_duration_seconds", "Tool call duration", ["tool", "outcome"], **kw)
        self._bus = bus if bus is not None else default_bus
        self._unsubscribe: Callable[[], None] | None = self._bus.subscribe(self.observe)

    def observe(self, e: Event) -> None:
        if isinstance(e, ProviderCallCompleted):
            self.calls.labels(e.provider, "ok").inc()
            self.latency.labels(e.provider).observe(e.duration_s)
            if e.ttft_s is not None:
                self.ttft.labels(e.provider).observe(e.ttft_s)
            self.tokens.labels(e.provider, "input").inc(e.input_tokens)
            self.tokens.labels(e.provider, "output").inc(e.output_tokens)
            if e.cost is not None:  # None: no known price
                self.cost.labels(e.provider).inc(e.cost)
        elif isinstance(e, ProviderCallFailed):
            self.calls.labels(e.provider, "error").inc()
        elif isinstance(e, StageCompleted):
            self.stage.labels(e.stage, "ok").observe(e.duration_s)
        elif isinstance(e, StageFailed):
            self.stage.labels(e.stage, "upstream_error" if e.upstream else "error").observe(e.duration_s)
        elif isinstance(e, ToolCallCompleted):
            self.tool.labels(e.tool, "ok").observe(e.duration_s)
        elif isinstance(e, ToolCallFailed):
            self.tool.labels(e.tool, "error").observe(e.duration_s)

    def close(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None


def _epoch_ns(monotonic_t: float) -> int:
    """An event's monotonic time as wall-clock nanoseconds."""
    return time.time_ns() - int((time.monotonic() - monotonic_t) * 1e9)


class OpenTelemetryExporter:
    """Turns provider and tool calls into OpenTelemetry spans (GenAI semantic conventions)."""

    def __init__(self, bus: EventBus | None = None, tracer_provider: Any = None, *, max_open: int = 10_000) -> None:
        trace = require_extra("opentelemetry.trace", "metrics", "the OpenTelemetry exporter")
        self._trace = trace
        self.tracer = trace.get_tracer("rxkit", tracer_provider=tracer_provider)
        self._open: OrderedDict[str, Any] = OrderedDict()  # bounded by max_open, oldest dropped
        self._max_open = max_open
        self._bus = bus if bus is not None else default_bus
        self._unsubscribe: Callable[[], None] | None = self._bus.subscribe(self.observe)

    def _start(self, key: str, name: str, t: float, attributes: dict[str, Any]) -> None:
        span = self.tracer.start_span(name, start_time=_epoch_ns(t), attributes=attributes)
        self._open[key] = span
        while len(self._open) > self._max_open:
            _, old = self._open.popitem(last=False)
            old.end()

    def observe(self, e: Event) -> None:
        if isinstance(e, ProviderCallStarted):
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": e.provider,
                "gen_ai.request.model": e.model,
            }
            self._start("call:" + e.call_id, f"chat {e.model}".strip(), e.time, attributes)
        elif isinstance(e, ProviderCallCompleted | ProviderCallFailed):
            span = self._open.pop("call:" + e.call_id, None)
            if span is None:
                return
            if isinstance(e, ProviderCallCompleted):
                span.set_attribute("gen_ai.usage.input_tokens", e.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", e.output_tokens)
                span.set_attribute("gen_ai.response.model", e.model)
            else:
                span.set_attribute("error.type", e.error_type or "error")
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, e.error))
            span.end(end_time=_epoch_ns(e.time))
        elif isinstance(e, ToolCallStarted):
            attributes = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": e.tool,
                "gen_ai.tool.call.id": e.call_id,
            }
            self._start("tool:" + e.call_id, f"execute_tool {e.tool}", e.time, attributes)
        elif isinstance(e, ToolCallCompleted | ToolCallFailed):
            span = self._open.pop("tool:" + e.call_id, None)
            if span is None:
                return
            if isinstance(e, ToolCallFailed):
                span.set_attribute("error.type", "tool_error")
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, e.error))
            span.end(end_time=_epoch_ns(e.time))

    def close(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        for span in self._open.values():
            span.end()
        self._open.clear()
