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

from collections.abc import AsyncIterator, Sequence
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable

from rxkit.buffering import OverflowPolicy
from rxkit.errors import GraphError
from rxkit.graph import running
from rxkit.graph._wiring import Fanout, disposable_of, instrumented, merge_now
from rxkit.graph.running import as_observable
from rxkit.graph.stage import INPUT, Stage, as_stage
from rxkit.telemetry.events import EventBus, StageStarted, default_bus

__all__ = ["INPUT", "Graph"]


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
        nodes = list(self.nodes.items())
        if not fanout:  # a chain: no sharing, no per-element cost beyond the stages
            out = source
            for node, st in nodes:
                out = self._wrap(node, st, out)
            if not self.instrument:
                return out
            chain = out

            def subscribe_chain(
                observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
            ) -> abc.DisposableBase:
                self._announce(nodes)
                return disposable_of(chain._subscribe_core(observer, scheduler))

            return Observable(subscribe_chain)

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if self.instrument:
                self._announce(nodes)
            fanouts: list[Fanout] = []
            outputs: dict[str, Observable[Any]] = {}

            def output_of(node: str, obs: Observable[Any]) -> Observable[Any]:
                if node in fanout:  # one upstream subscription, connected once every branch is subscribed
                    f = Fanout(obs)
                    fanouts.append(f)
                    return f.branch
                return obs

            outputs[INPUT] = output_of(INPUT, source)
            for node, st in nodes:  # insertion order is topological
                upstream = merge_now([outputs[p] for p in self.parents[node]])
                outputs[node] = output_of(node, self._wrap(node, st, upstream))
            result = merge_now([outputs[n] for n in self.leaves])
            # Subscribed eagerly (no trampoline queue, unlike reactivex.merge), so that
            # every branch listens before the source is connected: a synchronous source
            # that emits inside subscribe reaches all branches.
            disposables = [disposable_of(result._subscribe_core(observer, scheduler))]
            disposables += [f.connect(scheduler) for f in reversed(fanouts)]
            return CompositeDisposable(*disposables)

        return Observable(subscribe)

    def _announce(self, nodes: list[tuple[str, Stage[Any, Any]]]) -> None:
        # Stages are subscribed from the output back to the input; announce them in
        # the order data flows, before any of them can emit.
        for node, st in nodes:
            self.bus.publish(StageStarted(stage=node, kind=st.kind.value))

    def _wrap(self, node: str, st: Stage[Any, Any], upstream: Observable[Any]) -> Observable[Any]:
        out = st(upstream)
        if not isinstance(out, Observable):
            raise GraphError(f"stage {node!r} returned {type(out).__name__}, not an Observable")
        return instrumented(node, out, self.bus) if self.instrument else out

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

    def astream(
        self,
        inputs: Any = None,
        *,
        maxsize: int = 65_536,
        overflow: OverflowPolicy | str = OverflowPolicy.WAIT,
    ) -> AsyncIterator[Any]:
        """Iterate the graph's output with ``async for``: :func:`rxkit.graph.astream` through this graph.

        Output waits in a bounded buffer (``maxsize``, ``overflow`` policy; with
        ``wait``, the default, iterable inputs are paced by it). Leaving the
        loop early disposes the graph, which cancels everything it started.

        >>> async def main():
        ...     async for x in Graph.chain(ops.map(str.upper)).astream(["a", "b"]):
        ...         print(x)
        """
        return running.astream(inputs, through=self, maxsize=maxsize, overflow=overflow)

    async def arun(self, inputs: Any = None) -> list[Any]:
        """Run to completion on the running loop and return every output (:func:`rxkit.graph.arun`)."""
        return await running.arun(inputs, through=self)

    def run(self, inputs: Any = None, *, timeout: float | None = None) -> list[Any]:
        """Blocking run for scripts: returns every output, raises the graph's error (:func:`rxkit.graph.run`).

        Inside a running event loop (Jupyter), the graph runs on a fresh loop
        in a worker thread so that this call can block.
        """
        return running.run(inputs, through=self, timeout=timeout)

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
            lines.append(f'    {ids[node]}{left}"{_mermaid_text(node)}<br/><small>{st.kind.value}</small>"{right}')
        for p, n in self.edges:
            lines.append(f"    {ids[p]} --> {ids[n]}")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return f"```mermaid\n{self.to_mermaid()}\n```"

    def _repr_html_(self) -> str:
        from rxkit.graph.drawing import graph_html

        return graph_html(self)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, stages={list(self.nodes)})"


# Mermaid entity codes: a stage name is text, never markup, quotes or the end of a fenced block.
_MERMAID_ESCAPES = str.maketrans(
    {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;", "\n": " ", "\r": " "}
)


def _mermaid_text(text: str) -> str:
    return text.translate(_MERMAID_ESCAPES)
