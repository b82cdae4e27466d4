"""rxkit.notebook and its plots: live display updates (virtual time, IPython's publisher), events table, plots."""

from __future__ import annotations

import asyncio
import builtins
import io
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import matplotlib
import numpy as np
import pytest
import reactivex
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxkit.elements import EndOfTurn, ErrorElement, MessageElement, TextDelta, ToolCallElement
from rxkit.errors import ConfigError, ProviderError
from rxkit.graphs.text import Conversation, text_graph
from rxkit.notebook import LiveView, events_table, show, stream
from rxkit.notebook.plots import FlowTrace, plot_backpressure, plot_latency, plot_vad, trace_flow
from rxkit.operators import bounded_buffer
from rxkit.providers.mock import MockProvider
from rxkit.scheduling import from_async_iterable
from rxkit.telemetry.events import EventBus, ProviderCallCompleted, StageCompleted, StageStarted
from rxkit.telemetry.metrics import Metrics
from rxkit.testing import ano_leaks
from rxkit.types import ChatResponse, CostInfo, Message, ToolCall, Usage

matplotlib.use("Agg")


class FakeDisplay:
    """Records each bundle a live view draws, with the scheduler's time."""

    def __init__(self, scheduler: TestScheduler | None = None) -> None:
        self.scheduler = scheduler
        self.bundles: list[dict[str, str]] = []
        self.times: list[float] = []

    def __call__(self, bundle: dict[str, str]) -> None:
        self.bundles.append(bundle)
        self.times.append(self.scheduler.clock if self.scheduler else 0.0)

    @property
    def last(self) -> dict[str, str]:
        return self.bundles[-1]


def _response(text: str, tokens_in: int = 3, tokens_out: int = 5, cost: float = 0.25) -> ChatResponse:
    return ChatResponse(
        message=Message.assistant(text),
        provider="mock",
        usage=Usage(input_tokens=tokens_in, output_tokens=tokens_out),
        cost=CostInfo(output_cost=cost),
    )


def _timed(sch: TestScheduler, items: list[tuple[float, Any]], complete_at: float) -> reactivex.Observable[Any]:
    def subscribe(observer: Any, scheduler: Any = None) -> Any:
        for at, item in items:
            sch.schedule_absolute(at, lambda *_, x=item: observer.on_next(x))
        return sch.schedule_absolute(complete_at, lambda *_: observer.on_completed())

    return reactivex.create(subscribe)


# -- live display ------------------------------------------------------------
def test_a_fast_stream_is_drawn_at_most_once_per_refresh_on_virtual_time() -> None:
    sch = TestScheduler()
    tokens = [(0.01 * (i + 1), TextDelta(f"t{i} ")) for i in range(100)]  # 100 tokens/s for 1 s
    end = EndOfTurn(_response("..."))
    source = _timed(sch, [*tokens, (1.0, end)], complete_at=1.0)
    shown = FakeDisplay(sch)
    view = show(source, display=shown, refresh=0.1, scheduler=sch)
    assert shown.times == [0.0] and "waiting" in shown.last["text/plain"]
    sch.start()
    assert view.status == "done" and view.done
    assert view.elements == [t for _, t in tokens] + [end]
    assert view.text == "".join(t.text for _, t in tokens)
    assert shown.times[1] == pytest.approx(0.01)  # the first token shows at once
    assert view.ttft == pytest.approx(0.01)
    throttled = shown.times[1:-1]
    gaps = [b - a for a, b in itertools.pairwise(throttled)]
    assert min(gaps) >= 0.1 - 1e-6  # never more than one drawing per refresh period...
    assert 10 <= len(shown.bundles) <= 13  # ... and the display kept up (about one per 0.1 s, not 100)
    assert view.updates == len(shown.bundles)
    final = shown.last["text/plain"]
    assert final.startswith("t0 t1 ") and "t99" in final
    assert "done" in final and "3 in / 5 out tokens" in final and "$0.250000" in final


@pytest.mark.parametrize(
    ("costs", "shown"),
    [
        ([CostInfo(output_cost=0.25), None], "cost unknown"),  # a model with no known price is not $0
        ([CostInfo(output_cost=0.25), CostInfo(output_cost=0.5, estimated=True)], "$0.750000 (estimated)"),
    ],
)
def test_the_footer_says_when_a_cost_is_unknown_or_estimated(costs: list[CostInfo | None], shown: str) -> None:
    sch = TestScheduler()
    ends = [(0.1 * (i + 1), EndOfTurn(_response("a").model_copy(update={"cost": c}))) for i, c in enumerate(costs)]
    view = show(_timed(sch, ends, complete_at=1.0), display=FakeDisplay(sch), refresh=0.1, scheduler=sch)
    sch.start()
    assert view.footer().endswith(f"2 turns, 6 in / 10 out tokens, {shown}")


def test_a_synchronous_flood_draws_three_times() -> None:
    shown = FakeDisplay()
    view = show(reactivex.from_iterable([TextDelta("x")] * 10_000), display=shown)
    assert view.status == "done"
    assert len(shown.bundles) == 3  # waiting, first token, final
    assert shown.last["text/plain"].startswith("x" * 10_000)


def test_a_pause_in_the_stream_still_shows_what_came() -> None:
    sch = TestScheduler()
    items = [(0.01 * (i + 1), TextDelta(str(i))) for i in range(5)]
    shown = FakeDisplay(sch)
    show(_timed(sch, items, complete_at=5.0), display=shown, refresh=0.1, scheduler=sch)
    sch.advance_to(1.0)  # long before completion
    assert shown.last["text/plain"].startswith("01234")  # the trailing refresh drew the last tokens
    assert "streaming" in shown.last["text/plain"]
    assert shown.times[-1] == pytest.approx(0.11)
    sch.start()
    assert "done" in shown.last["text/plain"]


async def test_tool_calls_errors_and_markup_are_shown_and_the_error_is_raised() -> None:
    subject: Subject[Any] = Subject()
    shown = FakeDisplay()
    view = show(subject, display=shown, refresh=0)
    subject.on_next(TextDelta("<b>bold</b> "))
    subject.on_next(ToolCallElement(ToolCall(id="c1", name="get_time", arguments='{"tz": "UTC"}')))
    subject.on_next(MessageElement(Message.tool("c1", "12:00", name="get_time")))
    subject.on_next(ErrorElement(ValueError("bad chunk"), "validate_output"))
    subject.on_error(ProviderError("the server went away", provider="mock"))
    html, plain = shown.last["text/html"], shown.last["text/plain"]
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert 'get_time({"tz": "UTC"})' in plain and "get_time -> 12:00" in plain
    assert "error in validate_output: bad chunk" in plain
    assert "failed: ProviderError" in plain and "#b00" in html
    with pytest.raises(ProviderError, match="went away"):
        await view
    assert len(view.elements) == 4


async def test_stream_runs_a_text_graph_on_the_running_loop() -> None:
    shown = FakeDisplay()
    async with ano_leaks():
        graph = text_graph(MockProvider(["Paris is the capital."], chunk_latency=0.001))
        elements = await stream(graph, ["Capital of France?"], display=shown, refresh=0.05)
    assert [type(e).__name__ for e in elements][-1] == "EndOfTurn"
    assert "".join(e.text for e in elements if isinstance(e, TextDelta)) == "Paris is the capital."
    final = shown.last["text/plain"]
    assert final.startswith("Paris is the capital.") and "done" in final and "1 turns" in final


async def test_a_conversation_streams_one_turn_per_input() -> None:
    shown = FakeDisplay()
    chat = Conversation(MockProvider(["first answer", "second answer"]))
    try:
        view = show(chat, ["one", "two"], display=shown)
        elements = await view
    finally:
        await chat.aclose()
    assert sum(isinstance(e, EndOfTurn) for e in elements) == 2
    assert view.text == "first answer\n\nsecond answer"
    assert "2 turns" in shown.last["text/plain"]
    assert [m.text for m in await chat.history()] == ["one", "first answer", "two", "second answer"]


async def test_dispose_and_cancel_stop_the_stream_and_what_it_started() -> None:
    closed: list[str] = []

    def endless(name: str) -> Any:
        async def gen() -> AsyncIterator[TextDelta]:
            try:
                while True:
                    yield TextDelta("x")
                    await asyncio.sleep(0)
            finally:
                closed.append(name)

        return from_async_iterable(gen)

    async with ano_leaks():
        view = show(endless("show"), display=FakeDisplay())
        while len(view.elements) < 5:
            await asyncio.sleep(0)
        view.dispose()
        with pytest.raises(asyncio.CancelledError):
            await view
        assert view.status == "cancelled"

        task = asyncio.ensure_future(stream(endless("stream"), display=FakeDisplay()))
        for _ in range(10):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
    assert closed == ["show", "stream"]


def test_a_failing_display_does_not_break_the_stream() -> None:
    def broken(bundle: dict[str, str]) -> None:
        raise OSError("the front end went away")

    view = show(reactivex.from_iterable([TextDelta("still "), TextDelta("here")]), display=broken)
    assert view.status == "done" and view.text == "still here"
    assert isinstance(view.display_error, OSError)


@pytest.fixture
def shell() -> Iterator[Any]:
    """An in-process IPython shell (no history database or thread), removed afterwards."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    names = set(vars(builtins))
    instance = InteractiveShell.instance(config=config)
    try:
        yield instance
    finally:
        InteractiveShell.clear_instance()
        for name in set(vars(builtins)) - names:  # IPython adds `display` and `__IPYTHON__`
            delattr(builtins, name)


def test_ipython_display_is_one_output_updated_in_place(shell: Any) -> None:
    from IPython.core.displaypub import CapturingDisplayPublisher

    shell.display_pub = CapturingDisplayPublisher()
    show(reactivex.from_iterable([TextDelta("Hello"), TextDelta(" world")]))
    outputs = shell.display_pub.outputs
    ids = {o["transient"]["display_id"] for o in outputs}
    assert len(ids) == 1  # one output...
    assert [o["update"] for o in outputs] == [False, True, True]  # ... created once, then updated
    assert outputs[-1]["data"]["text/plain"].startswith("Hello world")
    assert "text/html" in outputs[-1]["data"]


def test_a_returned_figure_shows_as_png_in_ipython(shell: Any) -> None:
    fig = plot_vad(np.zeros(1600, dtype=np.int16))  # made without pyplot: we register the PNG formatter
    data, _ = shell.display_formatter.format(fig)
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_outside_ipython_the_text_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    view = show(reactivex.from_iterable([TextDelta("plain "), TextDelta("terminal")]))
    out = capsys.readouterr().out
    assert out.startswith("plain terminal\n[done")
    assert view.text == "plain terminal"


def test_sources_and_bad_inputs() -> None:
    import reactivex.operators as ops

    from rxkit.graph import Graph

    shown = FakeDisplay()
    assert show(Graph.chain(ops.map(str.upper)), ["a", "b"], display=shown).text == "AB"
    assert show(ops.map(lambda s: s * 2), ["ab"], display=shown).text == "abab"  # a bare operator
    assert show([TextDelta("it"), TextDelta("erable")], display=shown).text == "iterable"
    with pytest.raises(ConfigError, match="takes no inputs"):
        show(reactivex.of(1), ["x"], display=shown)
    with pytest.raises(ConfigError, match="refresh"):
        LiveView(refresh=-1, display=shown)


# -- events table --------------------------------------------------------------
def test_events_table_names_the_subject_and_times_from_the_first_event() -> None:
    bus = EventBus()
    bus.publish(StageStarted(stage="upper", kind="transform", time=10.0))
    bus.publish(StageCompleted(stage="upper", duration_s=0.5, time=10.5))
    bus.publish(ProviderCallCompleted(provider="mock", model="m", duration_s=1.0, output_tokens=7, time=11.0))
    table = events_table(bus)
    assert list(table.columns) == ["t_s", "event", "subject", "duration_s", "detail"]
    assert list(table["event"]) == ["StageStarted", "StageCompleted", "ProviderCallCompleted"]
    assert list(table["subject"]) == ["upper", "upper", "mock"]
    assert list(table["t_s"]) == [0.0, 0.5, 1.0]
    assert table["detail"][0] == "kind='transform'"
    assert "output_tokens=7" in table["detail"][2] and "model='m'" in table["detail"][2]
    only = events_table(bus.events(), StageCompleted)
    assert list(only["event"]) == ["StageCompleted"] and only["duration_s"][0] == 0.5


def test_events_table_gives_numbers_their_units_and_shows_details_whole() -> None:
    bus = EventBus()
    long = "a conversation whose name is longer than fifty characters"
    call = ProviderCallCompleted(
        provider="mock", ttft_s=7.152557373046875e-06, duration_s=0.0123, output_tokens=7, cost=1.23e-5, time=1.0
    )
    bus.publish(call)
    bus.publish(ProviderCallCompleted(provider="mock", ttft_s=2.5, input_tokens=3, conversation=long, time=2.0))
    table = events_table(bus)
    assert table["detail"][0] == "ttft_s=7.15 µs, output_tokens=7 tokens, cost=$0.0000123"
    assert table["detail"][1] == f"ttft_s=2.50 s, input_tokens=3 tokens, conversation={long!r}"
    assert table["duration_s"][0] == 0.0123  # the columns stay numbers
    assert f"conversation={long!r}" in repr(table) and f"conversation={long!r}" in table._repr_html_()
    assert type(table[table["t_s"] > 0]).__name__ == "DataFrame"  # what is computed from it is a plain frame


# -- plots ---------------------------------------------------------------------
def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def test_plot_vad_draws_waveform_speech_turns_and_decisions() -> None:
    pcm = (np.sin(np.arange(16_000) / 5) * 8000).astype(np.int16)
    frames = [False] * 10 + [True] * 20 + [False] * 3
    fig = plot_vad(pcm.tobytes(), 16_000, frames=frames, frame_ms=30, speech=[(0.3, 0.9)], turns=[0.95])
    wave_ax, vad_ax = fig.axes
    wave, turn = wave_ax.lines
    assert len(wave.get_xdata()) == 16_000 and max(wave.get_ydata()) == pytest.approx(8000 / 32768, rel=1e-3)
    assert list(turn.get_xdata()) == [0.95, 0.95]
    (span,) = wave_ax.patches
    assert span.get_x() == pytest.approx(0.3) and span.get_width() == pytest.approx(0.6)
    (step,) = vad_ax.lines
    assert list(step.get_ydata()) == [float(f) for f in frames]
    assert [t.get_text() for t in wave_ax.get_legend().get_texts()] == ["speech", "end of turn"]
    assert _png(fig).startswith(b"\x89PNG")
    assert len(plot_vad(np.zeros(800, dtype=np.float32)).axes) == 1  # floats, no decisions: one panel


@pytest.mark.parametrize(
    ("dtype", "peak", "silence"),
    [(np.int16, 16_384, 0), (np.int32, 2**30, 0), (np.uint8, 192, 128), (np.int8, 64, 0)],
)
def test_plot_vad_scales_integer_audio_by_its_own_range(dtype: Any, peak: int, silence: int) -> None:
    """Every integer type used to be divided by 32768: int32 audio plotted at +-32768, 8-bit PCM as a flat line."""
    samples = np.array([silence, peak, silence], dtype=dtype)
    (wave,) = plot_vad(samples, 8_000).axes[0].lines
    assert list(wave.get_ydata()) == pytest.approx([0.0, 0.5, 0.0], abs=1e-3)  # half of full scale, either way


def test_plot_latency_bars_come_from_metrics_percentiles() -> None:
    bus = EventBus()
    metrics = Metrics(bus)
    for d, t in [(1.0, 0.2), (2.0, 0.4), (3.0, 0.6)]:
        bus.publish(ProviderCallCompleted(provider="local", duration_s=d, ttft_s=t, output_tokens=40, cost=0.0))
    bus.publish(ProviderCallCompleted(provider="mock", duration_s=0.1, ttft_s=0.05, output_tokens=5, cost=0.5))
    bus.flush()
    fig = plot_latency(metrics)
    ax, tps_ax = fig.axes
    ttft_bars, latency_bars = ax.containers[1::2] if len(ax.containers) > 2 else ax.containers
    assert [b.get_height() for b in ttft_bars] == pytest.approx([0.4, 0.05])
    assert [b.get_height() for b in latency_bars] == pytest.approx([2.0, 0.1])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["local", "mock"]
    rows = {r["provider"]: r for r in metrics.providers()}
    assert [b.get_height() for b in tps_ax.patches] == pytest.approx(
        [rows["local"]["tokens_per_s_p50"], rows["mock"]["tokens_per_s_p50"]]
    )
    assert "$0.500000" in tps_ax.get_title()
    assert not tps_ax.texts  # both providers reported tokens: no "n/a"
    assert _png(fig).startswith(b"\x89PNG")
    bus.publish(ProviderCallCompleted(provider="quiet", duration_s=1.0, ttft_s=0.5))  # no token counts
    bus.flush()
    (_, quiet_tps) = plot_latency(metrics.providers()).axes
    assert [t.get_text() for t in quiet_tps.texts] == ["n/a"]
    metrics.close()


def test_plot_backpressure_marks_kept_and_dropped() -> None:
    kept = FlowTrace(produced=[(i * 0.1, i) for i in range(6)], consumed=[(0.2, 0), (0.6, 4), (0.7, 5)])
    failed = FlowTrace(produced=[(0.0, 0), (0.1, 1)], consumed=[(0.1, 0)], error="buffer full: x", error_at=0.15)
    assert [i for _, i in kept.dropped] == [1, 2, 3]
    fig = plot_backpressure({"drop_oldest": kept, "error": failed})
    top, bottom = fig.axes
    produced, consumed, dropped = top.collections
    assert [tuple(p) for p in dropped.get_offsets()] == [(0.1, 1), (0.2, 2), (0.30000000000000004, 3)]
    assert len(produced.get_offsets()) == 6 and len(consumed.get_offsets()) == 3
    assert top.get_title(loc="left") == "drop_oldest: kept 3, dropped 3"
    assert "failed: buffer full" in bottom.get_title(loc="left")
    assert [line.get_xdata()[0] for line in bottom.lines] == [0.15]
    assert _png(fig).startswith(b"\x89PNG")


def test_plot_backpressure_with_no_traces_draws_an_empty_panel() -> None:
    fig = plot_backpressure({})  # matplotlib's 'Number of rows must be a positive integer' before
    (ax,) = fig.axes
    assert ax.get_title(loc="left") == "no traces" and not ax.collections
    assert _png(fig).startswith(b"\x89PNG")


async def test_trace_flow_records_what_a_real_buffer_kept() -> None:
    async with ano_leaks():
        dropping = bounded_buffer(4, "drop_oldest")
        trace = await trace_flow(dropping, 40, produce_every=0, consume_every=0.001)
        waiting = await trace_flow(bounded_buffer(4, "wait"), 40, produce_every=0, consume_every=0.001)
        failing = await trace_flow(bounded_buffer(4, "error"), 40, produce_every=0, consume_every=0.001)
    assert [i for _, i in trace.produced] == list(range(40))
    kept = [i for _, i in trace.consumed]
    assert kept == sorted(kept) and kept[-1] == 39  # order kept; drop_oldest keeps the latest
    assert len(trace.dropped) == dropping.dropped > 0
    assert [i for _, i in waiting.consumed] == list(range(40)) and not waiting.dropped
    assert failing.error is not None and "buffer full" in failing.error and failing.error_at is not None


def test_flowtrace_is_bounded() -> None:
    trace = FlowTrace(limit=3)
    for i in range(10):
        trace.produce(i, i)
        trace.consume(i, i)
    assert len(trace.produced) == len(trace.consumed) == 3
