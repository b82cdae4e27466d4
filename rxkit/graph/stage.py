"""Stages: Rx operators with a name and a kind.

A stage is callable like any operator, so it goes straight into ``pipe()``;
its metadata is what graph drawing, events and metrics use.

>>> import reactivex, reactivex.operators as ops
>>> double = stage("double")(ops.map(lambda x: x * 2))
>>> reactivex.of(1, 2).pipe(double).run()
4
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Generic, TypeVar

from reactivex import Observable

__all__ = ["INPUT", "Stage", "StageKind", "as_stage", "stage"]

INPUT = "input"  # the name of a graph's input node: stages with no parent named hang off it

_A = TypeVar("_A")
_B = TypeVar("_B")


class StageKind(StrEnum):
    """How a stage maps inputs to outputs."""

    TRANSFORM = "transform"  # 1:1 or 1:N
    ACCUMULATE = "accumulate"  # N:1
    GENERATE = "generate"  # 0:N, a source
    SINK = "sink"  # N:0
    BIDIRECTIONAL = "bidirectional"


class Stage(Generic[_A, _B]):
    """An operator ``Observable[A] -> Observable[B]`` plus a name and a kind."""

    __slots__ = ("name", "kind", "operator", "description")

    def __init__(
        self,
        name: str,
        operator: Callable[[Observable[_A]], Observable[_B]],
        kind: StageKind | str = StageKind.TRANSFORM,
        description: str = "",
    ) -> None:
        self.name = name
        self.operator = operator
        try:
            self.kind = StageKind(kind)
        except ValueError:
            from rxkit.errors import ConfigError

            kinds = ", ".join(k.value for k in StageKind)
            raise ConfigError(f"stage {name!r} has unknown kind {kind!r}; use one of: {kinds}") from None
        self.description = description

    def __call__(self, source: Observable[_A]) -> Observable[_B]:
        return self.operator(source)

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, kind={self.kind.value!r})"


def stage(
    name: str, kind: StageKind | str = StageKind.TRANSFORM, description: str = ""
) -> Callable[[Callable[[Observable[Any]], Observable[Any]]], Stage[Any, Any]]:
    """Name an operator: ``stage("upper")(ops.map(str.upper))``."""

    def wrap(operator: Callable[[Observable[Any]], Observable[Any]]) -> Stage[Any, Any]:
        return Stage(name, operator, kind, description)

    return wrap


def as_stage(value: Any, name: str | None = None) -> Stage[Any, Any]:
    """Return ``value`` as a Stage, naming a bare operator after its function."""
    if isinstance(value, Stage):
        return value
    if not callable(value):
        from rxkit.errors import GraphError

        raise GraphError(f"a graph stage must be an operator (a callable), not {type(value).__name__}")
    return Stage(name or _operator_name(value), value)


def _operator_name(value: Any) -> str:
    fn = getattr(value, "__wrapped__", value)
    label: str = getattr(fn, "__qualname__", None) or type(value).__name__
    if label.startswith("curry_flip."):  # reactivex operators: name them after the operator
        for cell in getattr(fn, "__closure__", None) or ():
            inner = cell.cell_contents
            if callable(inner) and getattr(inner, "__module__", "").startswith("reactivex.operators"):
                return str(inner.__name__).rstrip("_")
    parts = [p for p in label.split(".") if p != "<locals>"]
    # A closure made by a factory is named after the factory when its own name says nothing.
    while len(parts) > 1 and parts[-1].strip("_") in _GENERIC_NAMES:
        parts.pop()
    return parts[-1]


_GENERIC_NAMES = frozenset({"<lambda>", "", "op", "operator", "apply", "inner", "wrapper", "wrapped", "stage", "call"})
