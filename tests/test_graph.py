"""Graph: wiring (chains and DAGs), events, errors, cancellation, the three ways to run, drawing, backpressure."""

from __future__ import annotations

import asyncio
import sys
import threading
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex
import reactivex.operators as ops
from reactivex import abc
from reactivex.disposable import Disposable

import rxkit
from rxkit.elements import EndOfTurn, Interrupt, TextDelta
from rxkit.errors import BufferOverflowError, ConfigError, GraphError, RxkitError, StageError
from rxkit.graph import INPUT, Graph, arun, as_observable, astream, run, running
from rxkit.graph.drawing import graph_svg
from rxkit.graph.stage import StageKind, as_stage, stage
from rxkit.operators import bounded_buffer
from rxkit.scheduling import from_async_iterable
from rxkit.telemetry.events import EventBus, StageCompleted, StageDisposed, StageFailed, StageStarted
from rxkit.testing import ano_leaks, no_leaks


def sync_source(*values: Any) -> reactivex.Observable[Any]:
    """Emits inside subscribe, with no scheduler: the hardest case for fan-out."""

    def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
        for v in values:
            observer.on_next(v)
        observer.on_completed()

    return reactivex.create(subscribe)


def diamond(bus: EventBus) -> Graph:
    g = Graph("diamond", bus=bus)
    up = g.add(stage("upper")(ops.map(str.upper)))
    low = g.add(stage("lower")(ops.map(str.lower)), after=INPUT)
    g.add(stage("join")(ops.map(lambda s: f"<{s}>")), after=[up, low])
    return g


# -- building and chains -------------------------------------------------------------


def test_chain_runs_stages_in_order(bus: EventBus) -> None:
    g = Graph.chain(ops.map(lambda x: x + 1), ops.filter(lambda x: x % 2 == 0), bus=bus)
    assert g.run([1, 2, 3]) == [2, 4]
    assert list(g.nodes) == ["map", "filter"]
    assert g.edges == [(INPUT, "map"), ("map", "filter")]
    assert g.leaves == ["filter"]


def test_then_and_add_default_to_after_the_last_node(bus: EventBus) -> None:
    g = Graph("g", bus=bus).then(ops.map(lambda x: x * 10), ops.map(lambda x: x + 1))
    assert list(g.nodes) == ["map", "map_2"]  # duplicate names get a suffix
    assert g.parents["map_2"] == ["map"]
    assert g.run([1, 2]) == [11, 21]


def test_empty_graph_passes_input_through(bus: EventBus) -> None:
    assert Graph(bus=bus).run([1, 2]) == [1, 2]


def test_wiring_errors_are_graph_errors(bus: EventBus) -> None:
    g = Graph(bus=bus)
    with pytest.raises(GraphError, match="unknown stage 'nope'"):
        g.add(ops.map(str), after="nope")
    with pytest.raises(GraphError, match="at least one input"):
        g.add(ops.map(str), after=[])
    with pytest.raises(GraphError, match="not int"):
        g.add(42)
    bad = Graph.chain(stage("bad")(lambda source: [1, 2]), bus=bus)
    with pytest.raises(GraphError, match="'bad' returned list"):
        bad.run([1])


def test_a_graph_is_an_operator(bus: EventBus) -> None:
    g = Graph.chain(ops.map(lambda x: x * 2), bus=bus)
    assert reactivex.of(1, 2, 3).pipe(g, ops.to_list()).run() == [2, 4, 6]


def test_as_observable_accepts_the_usual_inputs() -> None:
    assert as_observable(None).pipe(ops.to_list()).run() == []
    assert as_observable("hi").pipe(ops.to_list()).run() == ["hi"]
    assert as_observable(b"hi").pipe(ops.to_list()).run() == [b"hi"]
    assert as_observable([1, 2]).pipe(ops.to_list()).run() == [1, 2]
    assert as_observable(7).pipe(ops.to_list()).run() == [7]
    obs = reactivex.of(1)
    assert as_observable(obs) is obs


def test_instrumented_chain_adds_no_call_per_stage() -> None:
    """The stage observer forwards on_next as the downstream's own method: same stack depth as plain Rx."""

    def depth_at_sink(build: Any) -> int:
        depths: list[int] = []

        def sink(_: Any) -> None:
            frame, n = sys._getframe(), 0
            while frame is not None:
                frame, n = frame.f_back, n + 1
            depths.append(n)

        build().subscribe(sink)
        return depths[0]

    maps = [ops.map(lambda x: x) for _ in range(10)]
    raw = depth_at_sink(lambda: reactivex.of(1).pipe(*maps))
    bus = EventBus()
    assert depth_at_sink(lambda: Graph.chain(*maps, bus=bus)(reactivex.of(1))) == raw
    assert depth_at_sink(lambda: Graph.chain(*maps, bus=bus, instrument=False)(reactivex.of(1))) == raw


# -- DAGs --------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["list", "sync"])
def test_fan_out_and_fan_in_every_branch_sees_every_item(bus: EventBus, source: str) -> None:
    g = diamond(bus)
    inputs = ["aB", "cD"] if source == "list" else sync_source("aB", "cD")
    assert g.run(inputs) == ["<AB>", "<ab>", "<CD>", "<cd>"]


def test_fan_out_with_a_synchronous_source_through_subscribe(bus: EventBus) -> None:
    out: list[str] = []
    done: list[bool] = []
    diamond(bus).subscribe(sync_source("aB"), out.append, on_completed=lambda: done.append(True))
    assert out == ["<AB>", "<ab>"] and done == [True]


def test_two_leaves_are_merged_and_the_source_is_subscribed_once(bus: EventBus) -> None:
    subscriptions = [0]

    def counting(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
        subscriptions[0] += 1
        for v in (1, 2):
            observer.on_next(v)
        observer.on_completed()

    g = Graph("two", bus=bus)
    g.add(stage("double")(ops.map(lambda x: x * 2)))
    g.add(stage("negate")(ops.map(lambda x: -x)), after=INPUT)
    assert sorted(g.run(reactivex.create(counting))) == [-2, -1, 2, 4]
    assert subscriptions == [1]
    assert sorted(g.leaves) == ["double", "negate"]


def test_deep_dag_with_fan_out_inside(bus: EventBus) -> None:
    g = Graph("deep", bus=bus)
    a = g.add(stage("a")(ops.map(lambda x: x + 1)))
    b = g.add(stage("b")(ops.map(lambda x: x * 10)), after=a)
    c = g.add(stage("c")(ops.map(lambda x: x * 100)), after=a)
    d = g.add(stage("d")(ops.map(lambda x: -x)), after=a)
    g.add(stage("sum")(ops.scan(lambda acc, x: acc + x, 0)), after=[b, c, d])
    assert g.run(sync_source(1)) == [20, 220, 218]


def test_fan_in_completes_only_when_every_branch_has(bus: EventBus) -> None:
    g = Graph("late", bus=bus)
    fast = g.add(stage("fast")(ops.take(1)))
    slow = g.add(stage("slow")(ops.map(lambda x: x)), after=INPUT)
    g.add(stage("out")(ops.map(lambda x: x)), after=[fast, slow])
    assert g.run(sync_source(1, 2, 3)) == [1, 1, 2, 3]


def test_an_error_in_one_branch_fails_the_graph_once(bus: EventBus) -> None:
    def fail(x: int) -> int:
        raise ValueError("branch broke")

    g = Graph("broken", bus=bus)
    ok = g.add(stage("ok")(ops.map(lambda x: x)))
    bad = g.add(stage("bad")(ops.map(fail)), after=INPUT)
    g.add(stage("out")(ops.map(lambda x: x)), after=[ok, bad])
    errors: list[Exception] = []
    out: list[int] = []
    g.subscribe(sync_source(1, 2), out.append, errors.append)
    assert out == [1]
    assert len(errors) == 1 and isinstance(errors[0], StageError) and errors[0].stage == "bad"


# -- errors and events -------------------------------------------------------------


def test_user_callback_error_becomes_stage_error_with_event(bus: EventBus) -> None:
    def explode(x: int) -> int:
        raise ValueError(f"cannot handle {x}")

    g = Graph.chain(stage("explode")(ops.map(explode)), bus=bus)
    with pytest.raises(StageError) as info:
        g.run([1])
    err = info.value
    assert err.stage == "explode"
    assert "stage 'explode' failed: ValueError: cannot handle 1" in str(err)
    assert isinstance(err.__cause__, ValueError)
    bus.flush()
    failed = bus.events(StageFailed)
    assert [(e.stage, e.error_type) for e in failed] == [("explode", "StageError")]
    assert "cannot handle 1" in failed[0].error


def test_typed_rxkit_errors_pass_unwrapped(bus: EventBus) -> None:
    def refuse(x: int) -> int:
        raise ConfigError("no such model")

    g = Graph.chain(stage("refuse")(ops.map(refuse)), bus=bus)
    with pytest.raises(ConfigError, match="no such model"):
        g.run([1])
    assert [e.error_type for e in bus.events(StageFailed)] == ["ConfigError"]


def test_error_messages_are_redacted(bus: EventBus) -> None:
    def leak(x: int) -> int:
        raise ValueError("bad key sk-abcdefghijklmnop1234")

    g = Graph.chain(stage("leak")(ops.map(leak)), bus=bus)
    with pytest.raises(StageError) as info:
        g.run([1])
    assert "sk-abcdefghijklmnop1234" not in str(info.value)
    assert all("sk-abcdefghijklmnop1234" not in e.error for e in bus.events(StageFailed))


def test_stage_events_in_order(bus: EventBus) -> None:
    g = Graph.chain(stage("a")(ops.map(str)), stage("b", StageKind.ACCUMULATE)(ops.to_list()), bus=bus)
    assert g.run([1, 2]) == [["1", "2"]]
    got = [(type(e).__name__, e.stage) for e in bus.events()]  # type: ignore[attr-defined]
    assert got == [
        ("StageStarted", "a"),
        ("StageStarted", "b"),
        ("StageCompleted", "a"),
        ("StageCompleted", "b"),
    ]
    started = bus.events(StageStarted)
    assert [e.kind for e in started] == ["transform", "accumulate"]  # type: ignore[attr-defined]
    assert all(e.duration_s >= 0 for e in bus.events(StageCompleted))  # type: ignore[attr-defined]


def test_dag_events_in_topological_order(bus: EventBus) -> None:
    diamond(bus).run(sync_source("x"))
    got = [(type(e).__name__, e.stage) for e in bus.events()]  # type: ignore[attr-defined]
    assert got[:3] == [("StageStarted", "upper"), ("StageStarted", "lower"), ("StageStarted", "join")]
    assert got[3:] == [("StageCompleted", "upper"), ("StageCompleted", "lower"), ("StageCompleted", "join")]


def test_uninstrumented_graph_publishes_nothing(bus: EventBus) -> None:
    Graph.chain(ops.map(str), bus=bus, instrument=False).run([1])
    diamond_g = diamond(bus)
    diamond_g.instrument = False
    diamond_g.run(["a"])
    assert bus.events() == []


def test_events_reach_a_listener_on_the_loop(bus: EventBus) -> None:
    async def main() -> list[str]:
        seen: list[str] = []
        unsubscribe = bus.subscribe(lambda e: seen.append(type(e).__name__), StageStarted, StageCompleted)
        await Graph.chain(ops.map(str), bus=bus).arun([1])
        await asyncio.sleep(0)
        unsubscribe()
        return seen

    assert asyncio.run(main()) == ["StageStarted", "StageCompleted"]


# -- cancellation --------------------------------------------------------------------


def endless(log: list[str]) -> Any:
    async def gen() -> AsyncIterator[int]:
        i = 0
        log.append("started")
        try:
            while True:
                yield i
                i += 1
                await asyncio.sleep(0)
        finally:
            log.append("closed")

    return gen


async def test_leaving_astream_early_cancels_the_async_upstream(bus: EventBus) -> None:
    log: list[str] = []
    g = Graph.chain(stage("double")(ops.map(lambda x: x * 2)), bus=bus)
    got = []
    async with ano_leaks():
        stream = g.astream(from_async_iterable(endless(log)))
        async for x in stream:
            got.append(x)
            if len(got) == 5:
                break
        await stream.aclose()
    assert got == [0, 2, 4, 6, 8]
    assert log == ["started", "closed"]
    assert [e.stage for e in bus.events(StageDisposed)] == ["double"]  # type: ignore[attr-defined]


async def test_disposing_a_subscription_cancels_the_task_and_runs_finally(bus: EventBus) -> None:
    log: list[str] = []
    got: list[int] = []
    g = Graph.chain(ops.map(lambda x: x), ops.filter(lambda x: True), bus=bus)
    async with ano_leaks():
        sub = g.subscribe(from_async_iterable(endless(log)), got.append)
        while len(got) < 3:
            await asyncio.sleep(0)
        tasks_before = len(asyncio.all_tasks())
        sub.dispose()
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) < tasks_before  # the pump task is gone, not merely idle
    assert log == ["started", "closed"]
    assert sorted(e.stage for e in bus.events(StageDisposed)) == ["filter", "map"]  # type: ignore[attr-defined]


async def test_async_iterable_inputs_are_cancelled_too(bus: EventBus) -> None:
    log: list[str] = []
    async with ano_leaks():
        async for x in Graph.chain(ops.map(lambda x: x), bus=bus).astream(endless(log)()):
            if x == 3:
                break
    assert log == ["started", "closed"]


# -- three ways to run -------------------------------------------------------------


def test_three_ways_give_the_same_output(bus: EventBus) -> None:
    g = Graph.chain(ops.map(lambda x: x * 3), ops.filter(lambda x: x > 3), bus=bus)
    via_subscribe: list[int] = []
    g.subscribe([1, 2, 3], via_subscribe.append)

    async def via_astream() -> list[int]:
        return [x async for x in g.astream([1, 2, 3])]

    assert via_subscribe == asyncio.run(via_astream()) == g.run([1, 2, 3]) == [6, 9]


def test_run_raises_the_graph_error_and_honours_timeout(bus: EventBus) -> None:
    async def forever() -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 1

    with no_leaks(), pytest.raises(TimeoutError):
        Graph.chain(ops.map(lambda x: x), bus=bus).run(forever(), timeout=0.05)


async def test_run_inside_a_running_loop_like_jupyter(bus: EventBus) -> None:
    g = Graph.chain(ops.map(str.upper), bus=bus)
    with no_leaks():  # the worker thread is gone afterwards
        assert g.run(["a", "b"]) == ["A", "B"]
    assert threading.current_thread() is threading.main_thread()


async def test_run_inside_a_running_loop_raises_errors(bus: EventBus) -> None:
    with pytest.raises(StageError):
        Graph.chain(stage("x")(ops.map(lambda x: 1 / 0)), bus=bus).run([1])


# -- the running functions, for any observable ---------------------------------------


def _watched(log: list[str], *values: Any) -> reactivex.Observable[Any]:
    """A cold source that logs when it is subscribed and disposed."""

    def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
        log.append("subscribed")
        for v in values:
            observer.on_next(v)
        observer.on_completed()
        return Disposable(lambda: log.append("disposed"))

    return reactivex.create(subscribe)


def test_run_arun_and_astream_take_any_observable_without_a_graph() -> None:
    log: list[str] = []
    tripled = _watched(log, 1, 2, 3).pipe(ops.map(lambda x: x * 3))

    async def both() -> tuple[list[int], list[int]]:
        return await arun(tripled), [x async for x in astream(tripled)]

    assert run(tripled) == [3, 6, 9]
    assert asyncio.run(both()) == ([3, 6, 9], [3, 6, 9])
    assert log == ["subscribed", "disposed"] * 3  # each run subscribed once and let go
    assert run(None) == [] and run("hi") == ["hi"] and run([1, 2]) == [1, 2]
    assert rxkit.run is run and rxkit.arun is arun and rxkit.astream is astream


def test_run_through_an_operator() -> None:
    assert run(["a", "b"], through=ops.map(str.upper)) == ["A", "B"]
    assert run(reactivex.of(1, 2), through=stage("double")(ops.map(lambda x: x * 2))) == [2, 4]


async def test_astream_through_paces_a_plain_iterable_that_a_pushed_source_would_overflow() -> None:
    plus_one = ops.map(lambda x: x + 1)
    got = [x async for x in astream(range(10_000), through=plus_one, maxsize=8)]
    assert got == list(range(1, 10_001))
    with pytest.raises(BufferOverflowError):  # the same data, pushed: it cannot wait for the consumer
        async for _ in astream(reactivex.from_iterable(range(10_000)).pipe(plus_one), maxsize=8):
            pass


async def test_leaving_the_astream_function_early_cancels_the_upstream() -> None:
    log: list[str] = []
    got = []
    async with ano_leaks():
        stream = astream(from_async_iterable(endless(log)))
        async for x in stream:
            got.append(x)
            if len(got) == 3:
                break
        await stream.aclose()
    assert got == [0, 1, 2] and log == ["started", "closed"]


def test_run_raises_the_observables_error_and_honours_timeout() -> None:
    with pytest.raises(ConfigError, match="bad"):
        run(reactivex.throw(ConfigError("bad")))

    async def forever() -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 1

    with no_leaks(), pytest.raises(TimeoutError):
        run(forever(), timeout=0.05)


def test_graph_runs_by_the_running_functions(monkeypatch: pytest.MonkeyPatch, bus: EventBus) -> None:
    calls: list[Any] = []
    real = running.astream

    def spy(source: Any = None, **options: Any) -> AsyncIterator[Any]:
        calls.append(options["through"])
        return real(source, **options)

    monkeypatch.setattr(running, "astream", spy)
    g = Graph.chain(ops.map(str.upper), bus=bus)

    async def both() -> tuple[list[str], list[str]]:
        return await g.arun(["b"]), [x async for x in g.astream(["c"])]

    assert g.run(["a"]) == ["A"] and asyncio.run(both()) == (["B"], ["C"])
    assert calls == [g, g, g]


# -- astream backpressure ----------------------------------------------------------


async def test_astream_wait_paces_a_long_list(bus: EventBus) -> None:
    g = Graph.chain(ops.map(lambda x: x), bus=bus)
    got = [x async for x in g.astream(range(50_000), maxsize=64)]
    assert got == list(range(50_000))


async def test_astream_wait_paces_an_async_producer(bus: EventBus) -> None:
    produced = [0]

    async def numbers() -> AsyncIterator[int]:
        for i in range(3_000):
            produced[0] += 1
            yield i

    ahead = []
    count = 0
    async for _ in Graph.chain(ops.map(lambda x: x), bus=bus).astream(numbers(), maxsize=32):
        count += 1
        ahead.append(produced[0] - count)
        await asyncio.sleep(0)
    assert count == 3_000
    assert 16 <= max(ahead) <= 32


async def test_astream_wait_with_a_push_source_fails_cleanly(bus: EventBus) -> None:
    g = Graph.chain(ops.map(lambda x: x), bus=bus)
    with pytest.raises(BufferOverflowError, match="from_async_iterable"):
        async for _ in g.astream(sync_source(*range(10)), maxsize=4):
            pass


async def test_astream_error_policy(bus: EventBus) -> None:
    g = Graph.chain(ops.map(lambda x: x), bus=bus)
    with pytest.raises(BufferOverflowError, match="'error'"):
        async for _ in g.astream(list(range(10)), maxsize=4, overflow="error"):
            pass


async def test_astream_drop_policies_keep_controls(bus: EventBus) -> None:
    g = Graph.chain(ops.map(lambda x: x), bus=bus)
    eot = EndOfTurn()
    items = [*range(10), eot, Interrupt("stop")]
    newest = [x async for x in g.astream(reactivex.from_iterable(items), maxsize=3, overflow="drop_oldest")]
    assert newest == [Interrupt("stop"), 7, 8, 9, eot]
    oldest = [x async for x in g.astream(reactivex.from_iterable(items), maxsize=3, overflow="drop_newest")]
    assert oldest == [Interrupt("stop"), 0, 1, 2, eot]


async def test_astream_rejects_a_bad_policy(bus: EventBus) -> None:
    with pytest.raises(ConfigError):
        async for _ in Graph(bus=bus).astream([1], overflow="maybe"):
            pass


@pytest.mark.slow
async def test_slow_consumer_memory_stays_flat_behind_a_bounded_buffer(bus: EventBus) -> None:
    n = 200_000

    async def peak_bytes(maxsize: int) -> int:
        async def fast_producer() -> AsyncIterator[TextDelta]:
            for i in range(n):
                yield TextDelta(str(i))

        g = Graph.chain(ops.map(lambda d: d), bus=bus)
        count = 0
        tracemalloc.start()
        try:
            async for _ in g.astream(fast_producer(), maxsize=maxsize):
                count += 1
                if count % 16 == 0:
                    await asyncio.sleep(0)  # the consumer is slower than the producer
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert count == n

    bounded = await peak_bytes(1_000)
    unbounded = await peak_bytes(n + 1)  # a queue that can hold everything: what an unbounded one does
    assert bounded < 2_000_000
    assert unbounded > 10_000_000  # the same run without a real bound does grow: the test can fail


async def test_bounded_buffer_stage_inside_astream_counts_drops(bus: EventBus) -> None:
    buf = bounded_buffer(4, "drop_oldest")
    g = Graph.chain(buf, ops.map(lambda x: x), bus=bus)
    got = [x async for x in g.astream(reactivex.from_iterable(range(100)))]
    assert got == [96, 97, 98, 99]
    assert buf.dropped == 96


# -- drawing -------------------------------------------------------------------------


def test_mermaid_text(bus: EventBus) -> None:
    g = diamond(bus)
    g.add(stage("speak", StageKind.SINK)(ops.map(str)))
    assert g.to_mermaid() == "\n".join(
        [
            "flowchart LR",
            "    n0((input))",
            '    n1["upper<br/><small>transform</small>"]',
            '    n2["lower<br/><small>transform</small>"]',
            '    n3["join<br/><small>transform</small>"]',
            '    n4[/"speak<br/><small>sink</small>"/]',
            "    n0 --> n1",
            "    n0 --> n2",
            "    n1 --> n3",
            "    n2 --> n3",
            "    n3 --> n4",
        ]
    )
    assert g._repr_markdown_().startswith("```mermaid\nflowchart LR")


def test_svg_drawing_is_well_formed_and_complete(bus: EventBus) -> None:
    g = diamond(bus)
    g.add(stage("a<b & c", StageKind.GENERATE)(ops.map(str)))
    svg = graph_svg(g)
    root = ET.fromstring(svg)  # well-formed XML, names escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert len(root.findall(f".//{ns}rect")) == 5  # input + 4 stages
    assert len(root.findall(f".//{ns}line")) == len(g.edges) == 5
    labels = [t.text for t in root.findall(f".//{ns}text")]
    for name in ["input", "upper", "lower", "join", "a<b & c", "generate"]:
        assert name in labels
    # every drawing its own arrowhead: SVGs inlined in one notebook share one id space
    (marker,) = root.findall(f".//{ns}marker")
    other = ET.fromstring(graph_svg(g)).find(f".//{ns}marker")
    assert other is not None and other.get("id") != marker.get("id")
    assert {line.get("marker-end") for line in root.findall(f".//{ns}line")} == {f"url(#{marker.get('id')})"}
    html = g._repr_html_()
    assert html.startswith('<div class="rxkit-graph"') and "<svg" in html and "<script" not in html


def test_repr(bus: EventBus) -> None:
    assert repr(diamond(bus)) == "Graph('diamond', stages=['upper', 'lower', 'join'])"


def test_rxkit_errors_are_one_family() -> None:
    assert issubclass(StageError, RxkitError) and issubclass(GraphError, RxkitError)


# -- stages ----------------------------------------------------------------------------


def test_stage_naming_and_kinds() -> None:
    named = stage("upper", "accumulate", "makes it loud")(ops.map(str.upper))
    assert (named.name, named.kind, named.description) == ("upper", StageKind.ACCUMULATE, "makes it loud")
    assert as_stage(named) is named
    assert as_stage(ops.filter(bool)).name == "filter"

    def my_operator(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
        return source

    assert as_stage(my_operator).name == "my_operator"
    assert as_stage(my_operator, name="custom").name == "custom"
    assert repr(named) == "Stage('upper', kind='accumulate')"
    with pytest.raises(ConfigError, match="unknown kind 'sideways'"):
        stage("x", "sideways")(ops.map(str))


def test_run_returns_any_number_of_outputs_from_a_push_source_or_a_one_to_many_stage() -> None:
    """run()/arun() keep every output anyway; they used astream's 65,536-element buffer and failed with
    BufferOverflowError past it when the source could not pause."""
    import reactivex as rx

    pushed = Graph.chain(rx.operators.map(lambda x: x * 2)).run(rx.from_iterable(range(70_000)))
    assert len(pushed) == 70_000 and pushed[-1] == 139_998
    fanned = Graph.chain(rx.operators.flat_map(lambda x: rx.from_iterable(range(1000)))).run([1] * 100)
    assert len(fanned) == 100_000


_INTERRUPTED_CELL = """
import asyncio, json, signal, threading, time
import reactivex, reactivex.operators as ops
from rxkit import Graph

ticks = []
main = threading.get_ident()

async def cell():
    graph = Graph.chain(ops.do_action(ticks.append))
    threading.Timer(0.5, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
    start = time.monotonic()
    try:
        graph.run(reactivex.interval(0.02), timeout=20)
        outcome = "returned"
    except KeyboardInterrupt:
        outcome = "interrupted"
    took = time.monotonic() - start
    seen = len(ticks)
    await asyncio.sleep(0.3)
    threads = [t.name for t in threading.enumerate() if t.name.startswith("rxkit-blocking")]
    print(json.dumps({"outcome": outcome, "took": took, "ticks_after": len(ticks) - seen, "threads": threads}))

asyncio.new_event_loop().run_until_complete(cell())  # as in a kernel: SIGINT raises KeyboardInterrupt
"""


def test_interrupting_a_blocking_run_inside_a_running_loop_stops_the_graph() -> None:
    """Jupyter's interrupt button during graph.run (which runs the graph on a worker thread's loop, since
    the kernel's loop is busy) used to leave the cell busy until the graph ended, and the graph running."""
    import json
    import subprocess

    result = subprocess.run([sys.executable, "-c", _INTERRUPTED_CELL], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["outcome"] == "interrupted"
    assert seen["took"] < 5.0, "the interrupt waited for the graph"
    assert seen["ticks_after"] == 0 and seen["threads"] == [], seen


def test_mermaid_text_escapes_what_a_stage_name_may_hold(bus: EventBus) -> None:
    """A name with quotes, markup, '&', '#', a newline or backticks ended the label, injected HTML, split the
    node line or closed the Markdown fence around the diagram."""
    name = 'say "hi" <b>&amp; #1\n```'
    g = Graph.chain(stage(name, StageKind.TRANSFORM)(ops.map(str)), bus=bus)
    text = g.to_mermaid()
    (line,) = [x for x in text.splitlines() if x.startswith("    n1")]
    assert line == '    n1["say #quot;hi#quot; #lt;b#gt;#amp;amp; #35;1 #96;#96;#96;<br/><small>transform</small>"]'
    assert len(text.splitlines()) == 4  # flowchart, input, the stage, one edge: the newline split nothing
    assert g._repr_markdown_().count("```") == 2  # only the fence itself
