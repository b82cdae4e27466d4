"""Jupyter helpers: stream tokens live into the cell output, look at events, plot what happened.

The kernel's event loop is already running, so top-level ``await`` works::

    from rxkit.notebook import show, stream
    elements = await stream(graph, ["Tell me a joke"])   # the text appears as it streams
    live = show(chat.send("And another"))                # returns at once; the output keeps updating
    elements = await live                                # ... until it is done

The output is one display updated in place (IPython ``display_id``), refreshed
at most every ``refresh`` seconds however fast tokens arrive, and once more at
the end with usage, cost, tool calls and errors. Outside IPython the text is
written to stdout as it arrives.

:func:`events_table` shows what the event bus recorded. The plots of
:mod:`rxkit.notebook.plots` are re-exported here: :func:`plot_vad` (waveform, VAD
decisions, turn boundaries), :func:`plot_latency` (time to first token,
latency, tokens/s per provider) and :func:`plot_backpressure` (what an
overflow policy kept and dropped, from :func:`trace_flow`). :func:`speech_sample` is
real recorded speech shipped with rxkit (:mod:`rxkit.notebook.samples`), for the voice notebook.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import html
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import SerialDisposable, SingleAssignmentDisposable
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.scheduler.scheduler import Scheduler

from rxkit.elements import EndOfTurn, ErrorElement, MessageElement, ReasoningDelta, TextDelta, ToolCallElement
from rxkit.errors import ConfigError
from rxkit.graph import Graph, as_observable
from rxkit.notebook.plots import FlowTrace, plot_backpressure, plot_latency, plot_vad, trace_flow
from rxkit.notebook.samples import SPEECH_RATE, SPEECH_SAMPLES, speech_sample
from rxkit.telemetry.events import Event, EventBus, default_bus
from rxkit.types import ChatResponse

__all__ = [
    "SPEECH_RATE",
    "SPEECH_SAMPLES",
    "FlowTrace",
    "LiveView",
    "events_table",
    "plot_backpressure",
    "plot_latency",
    "plot_vad",
    "show",
    "speech_sample",
    "stream",
    "trace_flow",
]

Display = Callable[[dict[str, str]], None]
"""Takes each new MIME bundle of a live view (the first one creates the output)."""


class LiveView:
    """An observer that renders a stream into one display, refreshed at most every ``refresh`` seconds.

    Made by :func:`show`; await it for the elements (it raises the stream's
    error). ``text`` is the streamed text, ``updates`` how many times the
    display was drawn, ``ttft`` the seconds until the first text arrived.
    """

    def __init__(
        self,
        *,
        refresh: float = 0.1,
        display: Display | None = None,
        scheduler: abc.SchedulerBase | None = None,
        title: str = "",
        max_chars: int = 20_000,
    ) -> None:
        if not refresh >= 0:
            raise ConfigError(f"refresh must be a number of seconds >= 0, not {refresh!r}")
        self.refresh = refresh
        self.title = title
        self.max_chars = max_chars
        self.elements: list[Any] = []
        self.tool_calls: list[str] = []
        self.notes: list[str] = []  # in-band errors and tool results, shown under the text
        self.responses: list[ChatResponse] = []
        self.status = "waiting"
        self.error: Exception | None = None
        self.ttft: float | None = None
        self.updates = 0
        self.display_error: Exception | None = None  # the display failed; the stream went on undrawn
        self.subscription = SingleAssignmentDisposable()
        self._parts: list[str] = []
        self._reasoning: list[str] = []  # the model's reasoning, shown apart from the answer (collapsible)
        self._turn_ended = False
        self._scheduler = scheduler
        self._timer = SerialDisposable()
        self._timer_pending = False
        self._last = -math.inf
        self._t0 = self._clock()
        self._ended_at: float | None = None
        self._waiters: list[asyncio.Future[list[Any]]] = []
        self._display = display if display is not None else _ipython_display()
        self._final = getattr(self._display, "final", None)  # a cell output's last drawing: see _CellOutput
        self._printed = 0  # terminal mode: characters of text already written

    # -- the observer ---------------------------------------------------
    def on_next(self, x: Any) -> None:
        self.elements.append(x)
        if isinstance(x, TextDelta):
            if self.ttft is None:
                self.ttft = self.elapsed
            if self._turn_ended and self._parts:
                self._parts.append("\n\n")
            self._turn_ended = False
            self._parts.append(x.text)
        elif isinstance(x, ReasoningDelta):
            if self.ttft is None:
                self.ttft = self.elapsed
            self._reasoning.append(x.text)
        elif isinstance(x, str):
            self._parts.append(x)
        elif isinstance(x, EndOfTurn):
            self._turn_ended = True
            if x.response is not None:
                self.responses.append(x.response)
        elif isinstance(x, ToolCallElement):
            self.tool_calls.append(f"{x.call.name}({x.call.arguments})")
        elif isinstance(x, ErrorElement):
            self.notes.append(f"error in {x.stage or 'a stage'}: {x.error}")
        elif isinstance(x, MessageElement) and x.message.role == "tool":
            for r in x.message.tool_results:
                self.notes.append(f"{r.name or 'tool'} -> {r.content[:200]}")
        self.status = "streaming"
        self._touch()

    def on_error(self, error: Exception) -> None:
        self.error = error
        self._finish(f"failed: {type(error).__name__}: {error}")

    def on_completed(self) -> None:
        self._finish("done")

    def dispose(self) -> None:
        """Stop the stream (cancelling what it started) and mark the output cancelled."""
        self.subscription.dispose()
        if self._ended_at is None:
            self._finish("cancelled")

    # -- reading ----------------------------------------------------------
    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def reasoning(self) -> str:
        """The model's reasoning so far (shown dimmed, in a collapsible block, above the answer)."""
        return "".join(self._reasoning)

    @property
    def done(self) -> bool:
        return self._ended_at is not None

    @property
    def elapsed(self) -> float:
        end = self._ended_at if self._ended_at is not None else self._clock()
        return end - self._t0

    def __await__(self) -> Any:
        return self._wait().__await__()

    async def _wait(self) -> list[Any]:
        if not self.done:
            waiter: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        if self.error is not None:
            raise self.error
        if self.status == "cancelled":
            raise asyncio.CancelledError
        return self.elements

    # -- drawing ----------------------------------------------------------
    def bundle(self) -> dict[str, str]:
        """The current output as a MIME bundle (``text/plain`` and ``text/html``)."""
        text, footer = self.text, self.footer()
        if len(text) > self.max_chars:
            text = "…" + text[-self.max_chars :]
        extra = [f"tool call: {c}" for c in self.tool_calls] + self.notes
        thought = self.reasoning
        if len(thought) > self.max_chars:
            thought = "…" + thought[-self.max_chars :]
        shown = [f"(reasoning) {thought}"] if thought else []
        plain = "\n".join([*shown, *([text] if text else []), *extra, f"[{footer}]"])
        color = "#b00" if self.error is not None else "#777"
        parts = ['<div class="rxkit-live">']
        if self.title:
            parts.append(f"<b>{html.escape(self.title)}</b>")
        if thought:  # collapsible, dimmed; open while the model is still thinking
            state = " open" if not text and not self.done else ""
            parts.append(
                f'<details{state} class="rxkit-reasoning" style="opacity:0.6"><summary>reasoning</summary>'
                f'<pre style="white-space:pre-wrap;margin:0;font-style:italic">{html.escape(thought)}</pre></details>'
            )
        parts.append(f'<pre style="white-space:pre-wrap;margin:0">{html.escape(text)}</pre>')
        parts += [f'<div style="color:#35a">&#128295; {html.escape(c)}</div>' for c in self.tool_calls]
        parts += [f'<div style="color:#a60">{html.escape(n)}</div>' for n in self.notes]
        parts.append(f'<div style="color:{color};font-size:smaller">{html.escape(footer)}</div></div>')
        return {"text/plain": plain, "text/html": "".join(parts)}

    def footer(self) -> str:
        bits = [self.status, f"{self.elapsed:.2f} s"]
        if self.ttft is not None:
            bits.append(f"first token {self.ttft:.2f} s")
        bits.append(f"{len(self.elements)} elements")
        if self.responses:
            tin = sum(r.usage.input_tokens for r in self.responses)
            tout = sum(r.usage.output_tokens for r in self.responses)
            costs = [r.cost for r in self.responses if r.cost is not None]
            if len(costs) < len(self.responses):
                price = "cost unknown"  # a model with no known price: not $0
            else:
                price = f"${sum(c.total for c in costs):.6f}"
                price += " (estimated)" if any(c.estimated for c in costs) else ""
            thought = sum(r.usage.reasoning_tokens for r in self.responses)
            reasoning = f" ({thought} reasoning)" if thought else ""
            bits.append(f"{len(self.responses)} turns, {tin} in / {tout} out tokens{reasoning}, {price}")
        return " · ".join(bits)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return self.bundle()

    def begin(self) -> None:
        """Draw the first (waiting) state; :func:`show` calls it before subscribing."""
        self._render(throttled=False)

    def _clock(self) -> float:
        if self._scheduler is not None:
            return Scheduler.to_seconds(self._scheduler.now)
        return time.monotonic()

    def _touch(self) -> None:
        if self._timer_pending:
            return
        wait = self._last + self.refresh - self._clock()
        if wait <= 0:
            self._render()
        elif self._scheduler is not None:  # a trailing refresh, so a pause in the stream shows what came
            self._timer_pending = True
            self._timer.disposable = self._scheduler.schedule_relative(wait, self._on_timer)

    def _on_timer(self, _: abc.SchedulerBase, __: Any = None) -> None:
        self._timer_pending = False
        self._render()

    def _render(self, *, throttled: bool = True) -> None:
        if throttled:  # the first and the final drawings do not delay the next one
            self._last = self._clock()
        self.updates += 1
        try:
            if self._display is not None:
                self._display(self.bundle())
            else:
                self._write_terminal()
        except Exception as exc:  # noqa: BLE001 - a broken front end must not break the stream it shows
            self.display_error = exc
            self._display = _ignore

    def _write_terminal(self) -> None:
        text = self.text
        sys.stdout.write(text[self._printed :])
        self._printed = len(text)
        if self.done:
            sys.stdout.write(f"\n[{self.footer()}]\n")
        sys.stdout.flush()

    def _finish(self, status: str) -> None:
        if self._ended_at is not None:
            return
        self._ended_at = self._clock()
        self.status = status
        self._timer.dispose()
        self._timer_pending = False
        self._render(throttled=False)
        if self._final is not None and self._display is not _ignore:
            try:
                self._final(self.bundle())
            except Exception as exc:  # noqa: BLE001 - as in _render
                self.display_error = exc
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(self.elements)


def _ignore(bundle: dict[str, str]) -> None:
    return None


def _ipython_display() -> Display | None:
    """One IPython output updated in place, or None outside an IPython shell (and in the terminal IPython)."""
    if "IPython" not in sys.modules:  # not imported: certainly not in a notebook; keep the import light
        return None
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or type(shell).__name__ == "TerminalInteractiveShell":  # a console: stream text instead
        return None
    return _CellOutput(shell)


class _CellOutput:
    """One output of the cell that made it, updated in place (a ``display_id``), whose final state reaches
    a saved notebook.

    The kernel tags each output with the request (cell) it belongs to, and a view's updates with the cell
    that started it, even once that cell has ended; a client that executes and saves notebooks (nbclient,
    nbconvert) stops listening to a cell when it ends, so it would keep an early drawing ("waiting").
    Front ends apply an update wherever its display is, whatever cell it is tagged with; so when the view
    outlives its cell, :meth:`final` sends the last drawing again tagged with the cell running now (a new,
    empty context falls back to the kernel's latest request), and once more at the start of the next cell,
    in case none was running.
    """

    def __init__(self, shell: Any) -> None:
        self._events = shell.events
        self._handle: Any = None
        self._cell_ended = False
        self._events.register("post_run_cell", self._cell_end)

    def _cell_end(self, *_: Any) -> None:
        self._cell_ended = True
        self._events.unregister("post_run_cell", self._cell_end)

    def __call__(self, bundle: dict[str, str]) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def final(self, bundle: dict[str, str]) -> None:
        if not self._cell_ended:  # ended within its cell, whose outputs the client records
            self._cell_end()
            return
        contextvars.Context().run(self, bundle)

        def next_cell(*_: Any) -> None:
            self._events.unregister("pre_run_cell", next_cell)
            self(bundle)

        self._events.register("pre_run_cell", next_cell)


def _observable(source: Any, inputs: Any) -> Observable[Any]:
    if isinstance(source, Observable):
        if inputs is not None:
            raise ConfigError("an observable takes no inputs; pass the inputs to a graph or stage instead")
        return source
    if isinstance(source, Graph):
        return source(as_observable(inputs))
    send = getattr(source, "send", None)
    if callable(send) and hasattr(source, "graph"):  # a Conversation: one turn per input
        if inputs is None:
            raise ConfigError("streaming a conversation needs what to say: show(chat, 'hello')")
        texts = [inputs] if isinstance(inputs, str) or not isinstance(inputs, Iterable) else list(inputs)
        return reactivex.concat(*(send(t) for t in texts))
    if callable(source):  # a stage or any operator
        return source(as_observable(inputs))
    if inputs is None:
        return as_observable(source)  # an iterable or async iterable of elements
    raise ConfigError(f"cannot stream a {type(source).__name__} with inputs; give a graph, stage or observable")


def show(
    source: Any,
    inputs: Any = None,
    *,
    refresh: float = 0.1,
    title: str = "",
    display: Display | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> LiveView:
    """Start streaming ``source`` into one live output and return at once.

    ``source`` is a graph or stage (fed ``inputs``), a
    :class:`~rxkit.graphs.text.Conversation` (``inputs``: what to say, one turn
    per string), an observable, or an (async) iterable. It runs on the running
    loop; ``await`` the returned :class:`LiveView` for the elements, or call
    its ``dispose()`` to stop it. ``display`` replaces the IPython output
    (it gets each MIME bundle), for tests and other front ends.

    >>> import reactivex.operators as ops
    >>> view = show(Graph.chain(ops.map(str.upper)), ["a", "b"], display=lambda bundle: None)
    >>> view.text, view.status
    ('AB', 'done')
    """
    if scheduler is None:
        try:
            scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        except RuntimeError:
            scheduler = None  # no loop: only synchronous sources can run; no trailing refresh
    view = LiveView(refresh=refresh, display=display, scheduler=scheduler, title=title)
    view.begin()
    try:
        observable = _observable(source, inputs)
        view.subscription.disposable = observable.subscribe(
            view.on_next, view.on_error, view.on_completed, scheduler=scheduler
        )
    except Exception as exc:
        view.on_error(exc)
        raise
    return view


async def stream(
    source: Any,
    inputs: Any = None,
    *,
    refresh: float = 0.1,
    title: str = "",
    display: Display | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> list[Any]:
    """Stream ``source`` live into the cell output and return every element it emitted.

    Takes what :func:`show` takes. Raises the stream's error; interrupting the
    cell cancels the stream and what it started.

    >>> # in a notebook cell:
    >>> # elements = await stream(text_graph(provider), ["What is 2+2?"])
    """
    view = show(source, inputs, refresh=refresh, title=title, display=display, scheduler=scheduler)
    try:
        return await view
    except BaseException:
        view.dispose()  # interrupted or cancelled: stop the graph too (no-op once it ended)
        raise


# -- events ----------------------------------------------------------------
_SUBJECT = ("stage", "provider", "tool", "validator", "session", "prompt")


def events_table(source: EventBus | Iterable[Event] | None = None, *types: type[Event]) -> Any:
    """The events of a bus (default: the global one) as a table: a pandas DataFrame, else a list of dicts.

    Columns: ``t_s`` (seconds since the first event shown), ``event``,
    ``subject`` (the stage, provider, tool... it is about), ``duration_s`` and
    ``detail`` (the other fields, numbers with their units: ``ttft_s=7.15 µs``,
    ``output_tokens=7 tokens``, ``cost=$0.000012``). The table shows each
    detail whole (pandas would cut it at 50 characters).

    >>> bus = EventBus()
    >>> from rxkit.telemetry.events import StageStarted
    >>> bus.publish(StageStarted(stage="upper", kind="transform"))
    >>> rows = events_table(bus); rows["event"][0] if hasattr(rows, "iloc") else rows[0]["event"]
    'StageStarted'
    """
    bus = default_bus if source is None else source
    events = bus.events(*types) if isinstance(bus, EventBus) else [e for e in bus if not types or isinstance(e, types)]
    t0 = events[0].time if events else 0.0
    rows = []
    for e in events:
        values = {f.name: getattr(e, f.name) for f in fields(e) if f.name != "time"}
        subject = next((str(values.pop(k)) for k in _SUBJECT if k in values), "")
        duration = values.pop("duration_s", None)
        detail = ", ".join(f"{k}={_with_unit(k, v)}" for k, v in values.items() if v not in ("", None, 0, 0.0))
        rows.append(
            {
                "t_s": e.time - t0,
                "event": type(e).__name__,
                "subject": subject,
                "duration_s": duration,
                "detail": detail,
            }
        )
    try:
        frame = _events_frame()
    except ImportError:
        return rows
    return frame(rows, columns=["t_s", "event", "subject", "duration_s", "detail"])


def _with_unit(name: str, value: Any) -> str:
    """An event field's value as a reader needs it: seconds in s, ms or µs, tokens, dollars."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    if name.endswith("_s"):
        return _seconds(value)
    if name.endswith("tokens"):
        return f"{value} tokens"
    if name == "cost" or name.endswith("_usd"):
        return _dollars(value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _seconds(value: float) -> str:
    """A duration with a unit a reader takes in at a glance.

    >>> _seconds(7.152557373046875e-06), _seconds(0.0123), _seconds(2.5), _seconds(0)
    ('7.15 µs', '12.3 ms', '2.50 s', '0 s')
    """
    size = abs(value)
    if size == 0:
        return "0 s"
    if size < 1e-3:
        return f"{value * 1e6:.3g} µs"
    if size < 1:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.2f} s"


def _dollars(value: float) -> str:
    """A cost in dollars, with the digits that matter however small it is.

    >>> _dollars(1.2345e-7), _dollars(0.000123), _dollars(1.5)
    ('$0.000000123', '$0.000123', '$1.50')
    """
    if value == 0 or abs(value) >= 0.01:
        return f"${value:.2f}"
    return f"${value:.{2 - math.floor(math.log10(abs(value)))}f}"


@functools.cache
def _events_frame() -> Any:
    """A DataFrame that shows its cells whole (the events' details are longer than pandas' 50 characters)."""
    import pandas as pd

    class EventsTable(pd.DataFrame):
        @property
        def _constructor(self) -> Any:
            return pd.DataFrame  # a slice or a computed frame is a plain one

        def __repr__(self) -> str:
            with pd.option_context("display.max_colwidth", None):
                return super().__repr__()

        def _repr_html_(self) -> str | None:
            with pd.option_context("display.max_colwidth", None):
                return super()._repr_html_()

    return EventsTable
