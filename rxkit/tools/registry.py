"""A registry of tools by name.

>>> from rxkit.tools import tool
>>> reg = ToolRegistry()
>>> @reg.register
... def echo(text: str) -> str:
...     '''Say it back.'''
...     return text
>>> [d.name for d in reg.descriptors()]
['echo']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from rxkit.errors import ConfigError, ToolNotFoundError
from rxkit.tools.base import Tool, tool
from rxkit.types import ToolDescriptor

__all__ = ["ToolRegistry"]


class ToolRegistry:
    """Tools by name; functions are turned into tools with :func:`~rxkit.tools.tool`."""

    def __init__(self, tools: list[Tool | Callable[..., Any]] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools or ():
            self.add(t)

    def add(self, item: Tool | Callable[..., Any], *, replace: bool = False) -> Tool:
        if not isinstance(item, Tool) and not callable(item):
            raise ConfigError(
                f"a tool must be a Tool (an MCP or HTTP tool, say) or a function to wrap, not {type(item).__name__} "
                f"{item!r:.80}"
            )
        t = item if isinstance(item, Tool) else tool(item)
        if t.name in self._tools and not replace:
            raise ConfigError(f"a tool named {t.name!r} is already registered")
        self._tools[t.name] = t
        return t

    def register(self, fn: Callable[..., Any]) -> Tool:
        """Decorator form of :meth:`add`."""
        return self.add(fn)

    def remove(self, name: str) -> None:
        self._tools.pop(name, None)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "none"
            raise ToolNotFoundError(f"no tool named {name!r}; available tools: {known}", tool=name) from None

    def descriptors(self) -> list[ToolDescriptor]:
        return [t.descriptor for t in self._tools.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)
