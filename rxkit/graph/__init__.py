"""The graph core: stages, graphs of stages, and how a graph is wired, run and drawn.

- :mod:`rxkit.graph.stage`: :class:`Stage`, an Rx operator with a name and a kind.
- :class:`Graph`: stages composed into a DAG (``chain``, ``add`` with ``after=``),
  with fan-out shared and fan-in merged; runs as an observable, ``astream``,
  ``run`` or ``arun``.
- :mod:`rxkit.graph.running`: :func:`astream`, :func:`arun` and :func:`run` for
  any observable (a graph runs by them), and :func:`as_observable`.
- :mod:`rxkit.graph.drawing`: the self-contained SVG Jupyter shows.

>>> import reactivex.operators as ops
>>> Graph.chain(ops.map(str.upper)).run(["hi"])
['HI']
>>> run(["hi"], through=ops.map(str.upper))
['HI']
"""

from rxkit.graph._graph import Graph
from rxkit.graph.running import arun, as_observable, astream, run
from rxkit.graph.stage import INPUT, Stage, StageKind, as_stage, stage

__all__ = ["INPUT", "Graph", "Stage", "StageKind", "arun", "as_observable", "as_stage", "astream", "run", "stage"]
