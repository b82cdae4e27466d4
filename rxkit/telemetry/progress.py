"""Progress display for long work: a rich progress bar in terminals and Jupyter, silence elsewhere.

>>> with progress("warming up", total=3, enabled=False) as advance:
...     for _ in range(3):
...         advance()
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["interactive", "progress"]


def interactive() -> bool:
    """True in a terminal or a Jupyter kernel, where a progress display helps."""
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def progress(
    description: str, total: float | None = None, *, enabled: bool | None = None
) -> Iterator[Callable[..., None]]:
    """Show a bar (or a spinner when ``total`` is None); yields ``advance(amount=1)``."""
    if enabled is None:
        enabled = interactive()
    if not enabled:
        yield lambda amount=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    console = Console(stderr=True)
    # In a Jupyter kernel rich draws into an ipywidgets Output, whose context manager is not
    # thread-safe: its auto-refresh thread racing the kernel's own output corrupted the kernel's
    # display hooks ("pop from empty list") and once stalled a kernel for two minutes. There the
    # bar is redrawn on each advance, on the caller's thread; terminals keep the refresh thread.
    threaded = not console.is_jupyter
    with Progress(*columns, console=console, transient=True, auto_refresh=threaded) as bar:
        task = bar.add_task(description, total=total)
        if threaded:
            yield lambda amount=1: bar.advance(task, amount)
            return
        bar.refresh()

        def advance(amount: float = 1) -> None:
            bar.advance(task, amount)
            bar.refresh()

        yield advance
