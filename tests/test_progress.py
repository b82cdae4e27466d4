"""rxkit.telemetry.progress: a rich bar in terminals; in a Jupyter kernel, redrawn on the caller's thread only."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import rich.console
import rich.live

from rxkit.telemetry.progress import progress


def _refresh_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if type(t).__name__ == "_RefreshThread" and t.is_alive()]


@pytest.fixture
def refreshes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which thread redraws the bar (the drawing itself is skipped)."""
    seen: list[str] = []
    monkeypatch.setattr(rich.live.Live, "refresh", lambda self: seen.append(threading.current_thread().name))
    return seen


def test_in_a_jupyter_kernel_no_thread_draws(monkeypatch: pytest.MonkeyPatch, refreshes: list[str]) -> None:
    """ipywidgets' Output is not thread-safe: a refresh thread racing the kernel's output broke it."""
    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    with progress("calls", total=3, enabled=True) as advance:
        assert _refresh_threads() == []
        for _ in range(3):
            advance()
    assert _refresh_threads() == []
    main = threading.current_thread().name
    assert len(refreshes) >= 4 and set(refreshes) == {main}  # drawn at the start and at every advance


def test_in_a_terminal_the_refresh_thread_animates(monkeypatch: pytest.MonkeyPatch, refreshes: list[str]) -> None:
    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: False)
    threads: list[Any] = []
    with progress("calls", total=2, enabled=True) as advance:
        threads = _refresh_threads()
        advance()
        advance()
    assert len(threads) == 1  # rich's own, stopped with the bar
    threads[0].join(timeout=2)
    assert not threads[0].is_alive()


def test_disabled_shows_nothing(refreshes: list[str]) -> None:
    with progress("quiet", total=2, enabled=False) as advance:
        advance()
        advance(1)
    assert refreshes == [] and _refresh_threads() == []
