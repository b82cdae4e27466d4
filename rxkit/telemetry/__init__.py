"""Telemetry: what a running graph tells about itself, off the hot path.

- :mod:`rxkit.telemetry.events`: typed events (stage, provider, tool, state and
  voice-turn events) and the bounded, non-blocking :class:`EventBus` they go on.
  These are the only "events" in rxkit; what flows through a graph are
  *elements* (:mod:`rxkit.elements`).
- :mod:`rxkit.telemetry.metrics`: :class:`Metrics` aggregates the bus into
  counters and latency percentiles.
- :mod:`rxkit.telemetry.exporters`: Prometheus and OpenTelemetry exporters.
- :mod:`rxkit.telemetry.progress`: a progress line for long batch work.
"""

from rxkit.telemetry.events import Event, EventBus, default_bus
from rxkit.telemetry.metrics import Metrics

__all__ = ["Event", "EventBus", "Metrics", "default_bus"]
