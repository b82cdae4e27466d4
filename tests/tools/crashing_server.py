"""A tiny real MCP server (stdio) for tests: one tool that works, one that kills the process."""

from __future__ import annotations

import os
import time

from mcp.server.mcpserver import MCPServer

app = MCPServer("crashing")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def crash() -> str:
    """Exit the server process in the middle of the call."""
    os._exit(3)


@app.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "done"


if __name__ == "__main__":
    app.run()
