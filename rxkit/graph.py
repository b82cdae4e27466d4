"""Graphs: stages composed in a chain or a DAG, and three ways to run them.

>>> import reactivex.operators as ops
>>> g = Graph.chain(ops.map(lambda x: x + 1), ops.filter(lambda x: x % 2 == 0))
>>> g.run([1, 2, 3])
[2, 4]

Fan-out and fan-in::

    g = Graph("split")
    up = g.add(stage("upper")(ops.map(str.upper)))
    low = g.add(stage("lower")(ops.map(str.lower)))
    g.add(stage("join")(ops.map(lambda s: s)), after=[up, low])

A graph is itself an operator, so ``source.pipe(graph)`` works; ``astream``
gives an async iterator and ``run`` a blocking call for scripts (it also
works inside Jupyter, whose event loop is already running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import Any, cast

import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import CompositeDisposable, Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .buffering import BoundedBuffer, OverflowPolicy
from .errors import GraphError, RxkitError, StageError
from .events import EventBus, StageCompleted, StageDisposed, StageFailed, StageStarted, default_bus
from .stage import Stage, as_stage

__all__ = ["INPUT", "Graph", "as_observable"]

INPUT = "input"
"""The name of a graph's input node."""


class Graph:
    """A DAG of stages with one input and the merged output of its leaves."""

    def __init__(self, name: str = "graph", *, bus: EventBus | None = None, instrument: bool = True) -> None:
        self.name = name
        self.bus = bus if bus is not None else default_bus
        self.instrument = instrument
        self.nodes: dict[str, Stage[Any, Any]] = {}
        self.parents: dict[str, list[str]] = {}

    # -- building -------------------------------------------------------
    @classmethod
    def chain(cls, *stages: Any, name: str = "graph", bus: EventBus | None = None, instrument: bool = True) -> Graph:
        """A linear graph: each stage feeds the next."""
        g = cls(name, bus=bus, instrument=instrument)
        prev = INPUT
        for s in stages:
            prev = g.add(s, after=prev)
        return g

    def add(self, stage: Any, *, after: str | Sequence[str] | None = None, name: str | None = None) -> str:
        """Add a stage fed by ``after`` (node names; default: the last node added, or the input)."""
        st = as_stage(stage)
        node = name or st.name
        base, i = node, 2
        while node in self.nodes or node == INPUT:
            node, i = f"{base}_{i}", i + 1
        if after is None:
            parents = [next(reversed(self.nodes))] if self.nodes else [INPUT]
        elif isinstance(after, str):
            parents = [after]
        else:
            parents = list(after)
        if not parents:
            raise GraphError(f"stage {node!r} needs at least one input")
        for p in parents:
            if p != INPUT and p not in self.nodes:
                raise GraphError(f"stage {node!r} comes after unknown stage {p!r}; known: {[INPUT, *self.nodes]}")
        self.nodes[node] = st
        self.parents[node] = parents
        return node

    def then(self, *stages: Any) -> Graph:
        """Append stages after the last one; returns the graph for chaining."""
        for s in stages:
            self.add(s)
        return self

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(p, n) for n, ps in self.parents.items() for p in ps]

    def children(self, node: str) -> list[str]:
        return [n for n, ps in self.parents.items() if node in ps]

    @property
    def leaves(self) -> list[str]:
        return [n for n in self.nodes if not self.children(n)]

    # -- wiring ---------------------------------------------------------
    def __call__(self, source: Observable[Any]) -> Observable[Any]:
        """Apply the graph to ``source``: the graph is an operator."""
        if not self.nodes:
            return source
        fanout = {n for n in [INPUT, *self.nodes] if len(self.children(n)) > 1}
        if not fanout and len(self.leaves) == 1:
            out = source  # a chain: no sharing, no per-element cost beyond the stages
            for node, st in self.nodes.items():
                out = self._wrap(node, st, out)
            return out

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            connectables: list[Any] = []
            outputs: dict[str, Observable[Any]] = {}

            def output_of(node: str, obs: Observable[Any]) -> Observable[Any]:
                if node in fanout:  # publish, connected once every branch is subscribed
                    conn = obs.pipe(ops.publish())
                    connectables.append(conn)
                    return conn
                return obs

            outputs[INPUT] = output_of(INPUT, source)
            for node, st in self.nodes.items():  # insertion order is topological
                ins = [outputs[p] for p in self.parents[node]]
                upstream = ins[0] if len(ins) == 1 else reactivex.merge(*ins)
                outputs[node] = output_of(node, self._wrap(node, st, upstream))
            leaves = [outputs[n] for n in self.leaves]
            result = leaves[0] if len(leaves) == 1 else reactivex.merge(*leaves)
            sub = result.subscribe(observer, scheduler=scheduler)
            connections = [c.connect(scheduler) for c in reversed(connectables)]
            return CompositeDisposable(sub, *[c for c in connections if c is not None])

        return Observable(subscribe)

    def _wrap(self, node: str, st: Stage[Any, Any], upstream: Observable[Any]) -> Observable[Any]:
        out = st(upstream)
        if not isinstance(out, Observable):
            raise GraphError(f"stage {node!r} returned {type(out).__name__}, not an Observable")
        return _instrumented(node, st.kind.value, out, self.bus) if self.instrument else out

    # -- running --------------------------------------------------------
    def subscribe(
        self,
        inputs: Any = None,
        on_next: Any = None,
        on_error: Any = None,
        on_completed: Any = None,
        *,
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        """Rx-native: subscribe to the graph applied to ``inputs``."""
        return self(as_observable(inputs)).subscribe(on_next, on_error, on_completed, scheduler=scheduler)

    async def astream(
        self,
        inputs: Any = None,
        *,
        maxsize: int = 65_536,
        overflow: OverflowPolicy | str = OverflowPolicy.ERROR,
    ) -> AsyncIterator[Any]:
        """Iterate the graph's output with ``async for``.

        Output waits in a bounded buffer (``maxsize``, ``overflow`` policy)
        until the consumer takes it. Leaving the loop early disposes the
        graph, which cancels everything it started.
        """
        loop = asyncio.get_running_loop()
        buffer: BoundedBuffer[Any] = BoundedBuffer(maxsize, overflow)
        done: list[BaseException | None] = []
        wake = asyncio.Event()

        def on_next(x: Any) -> None:
            try:
                buffer.offer(x)
            except RxkitError as exc:
                done.append(exc)
                disposable.dispose()
            wake.set()

        def on_error(exc: Exception) -> None:
            done.append(exc)
            wake.set()

        def on_completed() -> None:
            done.append(None)
            wake.set()

        disposable = self(as_observable(inputs)).subscribe(
            on_next, on_error, on_completed, scheduler=AsyncIOScheduler(loop)
        )
        try:
            while True:
                ok, item = buffer.poll()
                if ok:
                    yield item
                    continue
                if done:
                    if done[0] is not None:
                        raise done[0]
                    return
                wake.clear()
                await wake.wait()
        finally:
            disposable.dispose()

    async def arun(self, inputs: Any = None) -> list[Any]:
        """Run to completion on the running loop and return every output."""
        return [x async for x in self.astream(inputs)]

    def run(self, inputs: Any = None, *, timeout: float | None = None) -> list[Any]:
        """Blocking run for scripts: returns every output, raises the graph's error.

        Inside a running event loop (Jupyter), the graph runs on a fresh loop
        in a worker thread so that this call can block.
        """
        coro_factory: Callable[[], Any] = lambda: asyncio.wait_for(self.arun(inputs), timeout)  # noqa: E731
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro_factory())
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rxkit-run") as pool:
            return pool.submit(lambda: asyncio.run(coro_factory())).result()

    # -- drawing --------------------------------------------------------
    def to_mermaid(self) -> str:
        """The graph as Mermaid flowchart text."""
        shapes = {
            "generate": ("([", "])"),
            "sink": ("[/", "/]"),
            "accumulate": ("[[", "]]"),
            "bidirectional": ("{{", "}}"),
        }
        ids = {INPUT: "n0", **{n: f"n{i + 1}" for i, n in enumerate(self.nodes)}}
        lines = ["flowchart LR", f"    n0(({INPUT}))"]
        for node, st in self.nodes.items():
            left, right = shapes.get(st.kind.value, ("[", "]"))
            lines.append(f'    {ids[node]}{left}"{node}<br/><small>{st.kind.value}</small>"{right}')
        for p, n in self.edges:
            lines.append(f"    {ids[p]} --> {ids[n]}")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return f"```mermaid\n{self.to_mermaid()}\n```"

    def _repr_html_(self) -> str:
        from .display import graph_html

        return graph_html(self)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, stages={list(self.nodes)})"


class _StageObserver:
    """Forwards on_next with zero added calls; reports completion and failure."""

    __slots__ = ("on_next", "_obv", "_node", "_bus", "_t0", "done")

    def __init__(self, obv: abc.ObserverBase[Any], node: str, bus: EventBus) -> None:
        self.on_next = obv.on_next  # the downstream's method itself: no wrapper per element
        self._obv = obv
        self._node = node
        self._bus = bus
        self._t0 = time.monotonic()
        self.done = False

    def on_error(self, error: Exception) -> None:
        if self.done:
            return
        self.done = True
        if not isinstance(error, RxkitError):
            wrapped = StageError(f"stage {self._node!r} failed: {type(error).__name__}: {error}", stage=self._node)
            wrapped.__cause__ = error
            error = wrapped
        self._bus.publish(
            StageFailed(
                stage=self._node,
                error=str(error),
                error_type=type(error).__name__,
                duration_s=time.monotonic() - self._t0,
            )
        )
        self._obv.on_error(error)

    def on_completed(self) -> None:
        if self.done:
            return
        self.done = True
        self._bus.publish(StageCompleted(stage=self._node, duration_s=time.monotonic() - self._t0))
        self._obv.on_completed()


def _instrumented(node: str, kind: str, inner: Observable[Any], bus: EventBus) -> Observable[Any]:
    def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        bus.publish(StageStarted(stage=node, kind=kind))
        watcher = _StageObserver(observer, node, bus)
        # _subscribe_core skips the AutoDetachObserver that subscribe() adds: the
        # downstream observer already is one, so nothing is lost and no call is added.
        sub = inner._subscribe_core(cast(abc.ObserverBase[Any], watcher), scheduler)
        if not isinstance(sub, abc.DisposableBase):
            sub = Disposable(sub) if callable(sub) else Disposable()

        def dispose() -> None:
            if not watcher.done:
                watcher.done = True
                bus.publish(StageDisposed(stage=node, duration_s=time.monotonic() - watcher._t0))
            sub.dispose()

        return Disposable(dispose)

    return Observable(subscribe)


def as_observable(inputs: Any) -> Observable[Any]:
    """Turn inputs into an observable: an Observable, an iterable, an async iterable, or None (empty)."""
    if inputs is None:
        return reactivex.empty()
    if isinstance(inputs, Observable):
        return inputs
    if isinstance(inputs, (str, bytes)):
        return reactivex.of(inputs)
    if isinstance(inputs, AsyncIterable):
        from .scheduling import from_async_iterable

        return from_async_iterable(lambda: aiter(inputs))
    if isinstance(inputs, Iterable):
        return reactivex.from_iterable(inputs)
    return reactivex.of(inputs)
