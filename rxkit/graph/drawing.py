"""Self-contained drawing of graphs: an SVG made here, no scripts, no network.

Nodes are laid out in columns by their depth from the input; edges are
straight lines with arrow heads. Jupyter shows it through ``Graph._repr_html_``.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from rxkit.graph.stage import INPUT


class Drawable(Protocol):
    """What a drawing needs of a graph: its stages in topological order, their parents and edges."""

    @property
    def name(self) -> str: ...

    @property
    def nodes(self) -> Mapping[str, Any]: ...

    @property
    def parents(self) -> Mapping[str, Sequence[str]]: ...

    @property
    def edges(self) -> Iterable[tuple[str, str]]: ...


__all__ = ["graph_html", "graph_svg"]

_FILL = {
    "input": "#e8eef7",
    "transform": "#eef7e8",
    "accumulate": "#f7f0e8",
    "generate": "#e8f7f5",
    "sink": "#f7e8ee",
    "bidirectional": "#f3e8f7",
}
_W, _H, _GX, _GY = 150, 44, 50, 22


_drawings = itertools.count(1)


def graph_svg(graph: Drawable) -> str:
    """The graph drawn as an SVG document."""

    depth = {INPUT: 0}
    for node in graph.nodes:  # insertion order is topological
        depth[node] = 1 + max(depth[p] for p in graph.parents[node])
    columns: dict[int, list[str]] = {}
    for node, d in depth.items():
        columns.setdefault(d, []).append(node)
    rows = max(len(c) for c in columns.values())
    pos = {}
    for d, nodes in columns.items():
        offset = (rows - len(nodes)) * (_H + _GY) / 2
        for i, node in enumerate(nodes):
            pos[node] = (10 + d * (_W + _GX), 10 + offset + i * (_H + _GY))
    # Each drawing's own arrowhead id: SVGs inlined in one notebook share one id space, and a repeated id
    # points every drawing at the first one's marker (gone when that output is cleared or hidden).
    marker = f"rxkit-arrow-{next(_drawings)}"
    width = 20 + len(columns) * (_W + _GX) - _GX
    height = 20 + rows * (_H + _GY) - _GY
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<defs><marker id="{marker}" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
    ]
    for parent, child in graph.edges:
        x1, y1 = pos[parent]
        x2, y2 = pos[child]
        parts.append(
            f'<line x1="{x1 + _W}" y1="{y1 + _H / 2}" x2="{x2}" y2="{y2 + _H / 2}" stroke="#555" '
            f'marker-end="url(#{marker})"/>'
        )
    for node, (x, y) in pos.items():
        kind = "input" if node == INPUT else graph.nodes[node].kind.value
        parts.append(
            f"<g><title>{html.escape(node)} ({kind})</title>"
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="8" fill="{_FILL[kind]}" stroke="#666"/>'
            f'<text x="{x + _W / 2}" y="{y + 19}" text-anchor="middle">{html.escape(node[:22])}</text>'
            f'<text x="{x + _W / 2}" y="{y + 34}" text-anchor="middle" fill="#777" font-size="10">{kind}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def graph_html(graph: Drawable) -> str:
    return f'<div class="rxkit-graph" title="{html.escape(graph.name)}">{graph_svg(graph)}</div>'
