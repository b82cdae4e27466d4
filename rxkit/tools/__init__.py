"""Tools the model can call: descriptors from functions, a registry, HTTP and MCP executors.

The provider formats (``to_openai``, ``from_gemini``, ...) are the ones the
providers send; they live in :mod:`rxkit.toolformats` and are re-exported here.
"""

from rxkit.toolformats import from_anthropic, from_gemini, from_openai, to_anthropic, to_gemini, to_openai
from rxkit.tools.base import Tool, ToolResult, tool
from rxkit.tools.execute import execute_call
from rxkit.tools.http import http_tool
from rxkit.tools.registry import ToolRegistry

__all__ = [
    "Tool",
    "ToolRegistry",
    "ToolResult",
    "execute_call",
    "from_anthropic",
    "from_gemini",
    "from_openai",
    "http_tool",
    "to_anthropic",
    "to_gemini",
    "to_openai",
    "tool",
]
