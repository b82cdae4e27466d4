"""Tools that are HTTP endpoints: the arguments are POSTed as JSON.

>>> weather = http_tool("weather", "http://127.0.0.1:8080/weather",
...                     {"type": "object", "properties": {"city": {"type": "string"}}})
>>> weather.descriptor.name
'weather'
"""

from __future__ import annotations

from typing import Any

import aiohttp

from rxkit.errors import ToolExecutionError, ToolTimeoutError
from rxkit.tools.base import Tool, ToolResult
from rxkit.types import ToolDescriptor

__all__ = ["http_tool"]


def http_tool(
    name: str,
    url: str,
    input_schema: dict[str, Any],
    *,
    description: str = "",
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
    requires_approval: bool = False,
) -> Tool:
    """A tool that POSTs its arguments as JSON to ``url`` and returns the response body."""

    async def execute(args: dict[str, Any]) -> ToolResult:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=client_timeout) as session,
                session.post(url, json=args, headers=headers) as resp,
            ):
                body = await resp.text()
                if resp.status >= 400:
                    return ToolResult(f"HTTP {resp.status}: {body[:2000]}", is_error=True)
                return ToolResult(body)
        except TimeoutError:
            raise ToolTimeoutError(f"tool {name!r} timed out after {timeout} s", tool=name) from None
        except aiohttp.ClientError as exc:
            raise ToolExecutionError(f"tool {name!r} could not reach its endpoint: {exc}", tool=name) from exc

    descriptor = ToolDescriptor(name=name, description=description, input_schema=input_schema)
    return Tool(descriptor, execute, requires_approval=requires_approval, timeout=timeout)
