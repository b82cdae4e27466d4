"""Progress display for long work: a rich progress bar in terminals and Jupyter, silence elsewhere.

In Jupyter the bar is a plain cell output updated in place (no widget), so an executed and saved
notebook shows its final count.

>>> with progress("warming up", total=3, enabled=False) as advance:
...     for _ in range(3):
...         advance()
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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
    # And a widget needs a front end that serves its comm: a notebook executed by nbclient or nbconvert
    # kept an empty widget ("No such comm" once opened). The bar goes to a plain output of the cell,
    # updated in place, as text and HTML: the same live and in the saved notebook; rich draws to nothing.
    cell = None if threaded else _cell_output()
    if cell is not None:
        console = Console(file=io.StringIO(), force_jupyter=False)
    with Progress(*columns, console=console, transient=True, auto_refresh=threaded) as bar:
        task = bar.add_task(description, total=total)
        if threaded:
            yield lambda amount=1: bar.advance(task, amount)
            return

        def draw() -> None:
            bar.refresh()
            if cell is not None:
                cell(_bundle(bar))

        def advance(amount: float = 1) -> None:
            bar.advance(task, amount)
            draw()

        draw()
        try:
            yield advance
        finally:
            if cell is not None:  # the final count stays in the cell
                cell(_bundle(bar))


def _cell_output() -> Callable[[dict[str, str]], None] | None:
    """Draws a MIME bundle into one output of the running cell, in place; None without an IPython shell."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    if get_ipython() is None:
        return None
    from IPython.display import display

    handle: Any = None

    def draw(bundle: dict[str, str]) -> None:
        nonlocal handle
        if handle is None:
            handle = display(bundle, raw=True, display_id=True)
        else:
            handle.update(bundle, raw=True)

    return draw


def _bundle(bar: Any) -> dict[str, str]:
    from rich.console import Console

    out = Console(file=io.StringIO(), record=True, width=100, force_terminal=True, force_jupyter=False)
    out.print(bar.get_renderable())
    text = out.export_text(clear=False).rstrip()
    html = out.export_html(inline_styles=True, code_format='<pre style="margin:0;line-height:1.3">{code}</pre>')
    return {"text/plain": text, "text/html": html}
