"""Shared fixtures. Fixtures that need real peers (servers, audio) live beside their tests."""

from __future__ import annotations

import pytest

from rxkit.telemetry.events import EventBus

pytest_plugins = ["tests.local_model", "tests.audio.pulse", "tests.state.redis_server"]


@pytest.fixture
def bus() -> EventBus:
    """A private event bus, so tests do not see each other's events."""
    return EventBus()
