"""Tools the model can call: a descriptor plus an async executor.

Derive a tool from a Python function's type hints and docstring::

    @tool
    def add(a: int, b: int) -> int:
        '''Add two numbers.

        Args:
            a: the first number
            b: the second number
        '''
        return a + b

    add.descriptor.input_schema["required"]  # ['a', 'b']
    await add.run('{"a": 1, "b": 2}')      # ToolResult(content='3', is_error=False)

Sync functions run in a worker thread of their own, off the event loop;
async ones run on it. A sync tool that outlasts its timeout cannot be
stopped (Python cannot kill a thread): the model is told it timed out, the
caller goes on (a blocking ``ask()`` or ``run()`` returns on time), and the
abandoned thread runs on until the function returns, its result dropped.
It is a daemon thread, so it never keeps the process alive at exit. Give
such a tool its own way out (a socket timeout, a deadline it checks).
Parameters may be pydantic models. Arguments from a model are checked
against the schema before the function runs: bad JSON or a schema violation
raises :class:`~rxkit.errors.ToolArgumentsError`, which the tool loop sends
back to the model as an error result.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

import jsonschema
from pydantic import BaseModel, ConfigDict, create_model

from rxkit.errors import ConfigError, ToolArgumentsError, ToolError, ToolExecutionError
from rxkit.types import ToolDescriptor

__all__ = ["Tool", "ToolResult", "tool"]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool returned, as text for the model."""

    content: str
    is_error: bool = False


Executor = Callable[[dict[str, Any]], Awaitable[Any]]


class Tool:
    """A callable tool: ``descriptor`` for the model, ``run`` to execute it."""

    def __init__(
        self,
        descriptor: ToolDescriptor,
        executor: Executor,
        *,
        requires_approval: bool = False,
        timeout: float | None = None,
        parse: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.executor = executor
        self.requires_approval = requires_approval
        self.timeout = timeout
        self._parse = parse
        try:
            self._validator: Any = jsonschema.Draft202012Validator(descriptor.input_schema)
            jsonschema.Draft202012Validator.check_schema(descriptor.input_schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"tool {descriptor.name!r} has an invalid input schema: {exc.message}") from None

    @property
    def name(self) -> str:
        return self.descriptor.name

    def parse_arguments(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Decode and check arguments; raises ToolArgumentsError with a reason the model can act on."""
        if isinstance(arguments, str):
            try:
                value = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolArgumentsError(
                    f"arguments for tool {self.name!r} are not valid JSON: {exc.msg} at position {exc.pos}",
                    tool=self.name,
                ) from None
        else:
            value = arguments
        if not isinstance(value, dict):
            raise ToolArgumentsError(f"arguments for tool {self.name!r} must be a JSON object", tool=self.name)
        errors = sorted(self._validator.iter_errors(value), key=lambda e: [str(p) for p in e.path])
        if errors:
            reasons = "; ".join(f"at {'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors[:3])
            raise ToolArgumentsError(f"arguments for tool {self.name!r} break its schema {reasons}", tool=self.name)
        return self._parse(value) if self._parse else value

    async def run(self, arguments: str | dict[str, Any]) -> ToolResult:
        """Check the arguments, execute, and render the result as text."""
        args = self.parse_arguments(arguments)
        try:
            result = await self.executor(args)
        except (ToolError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise ToolExecutionError(f"tool {self.name!r} failed: {type(exc).__name__}: {exc}", tool=self.name) from exc
        if isinstance(result, ToolResult):
            return result
        return ToolResult(_render(result))

    async def __call__(self, **kwargs: Any) -> ToolResult:
        return await self.run(kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


async def _in_daemon_thread(func: Callable[..., Any], kwargs: dict[str, Any], *, name: str = "rxkit-tool") -> Any:
    """Await ``func(**kwargs)`` run in a new daemon thread (with the caller's context variables).

    Unlike :func:`asyncio.to_thread` the thread is not one of the loop's
    default executor, which ``asyncio.run`` joins when it ends: a call
    abandoned by its awaiter (a tool timeout, a cancelled turn) never holds
    the loop's shutdown or the process's exit; it runs on until ``func``
    returns, and its result is dropped.

    >>> asyncio.run(_in_daemon_thread(pow, {"base": 2, "exp": 10}))
    1024
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # abandoned: the awaiter left (timeout, cancel)
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            outcome = (True, context.run(func, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the awaiter, which raises it
            outcome = (False, exc)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and the like cannot go into a future as they are
            outcome = (False, RuntimeError(f"{type(exc).__name__} raised in {name}"))
        with contextlib.suppress(RuntimeError):  # the loop has ended: nobody waits for this any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


_SECTION = re.compile(r"^(\w[\w ]*):\s*$")
_ARG_LINE = re.compile(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Description (text before any section) and Google-style ``Args:`` descriptions."""
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in inspect.cleandoc(doc).splitlines() if doc else []:
        header = _SECTION.match(line)
        if header:
            section, current = header.group(1).lower(), None
            continue
        if section is None:
            description.append(line)
        elif section in ("args", "arguments", "parameters"):
            m = _ARG_LINE.match(line)
            if m:
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    return " ".join(" ".join(description).split()), params


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    timeout: float | None = None,
) -> Any:
    """Make a :class:`Tool` of a function, from its type hints and docstring.

    A sync function runs in a daemon thread of its own per call. ``timeout``
    (seconds; else the tool loop's) bounds the wait: past it the model gets
    a "timed out" error result and the turn goes on, while the thread, which
    cannot be killed, runs on until the function returns, its result
    dropped; it never holds a blocking ``ask()``/``run()`` or the process's
    exit::

        @tool(timeout=5)
        def fetch(url: str) -> str:
            '''Fetch a page.'''
            return urllib.request.urlopen(url, timeout=5).read().decode()  # its own way out too
    """

    def build(func: Callable[..., Any]) -> Tool:
        sig = inspect.signature(func)
        hints = get_type_hints(func, include_extras=True)
        doc_description, doc_params = _parse_docstring(func.__doc__ or "")
        fields: dict[str, Any] = {}
        for pname, param in sig.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigError(f"tool {func.__name__!r}: *args and **kwargs cannot be described to a model")
            annotation = hints.get(pname, Any)
            default = ... if param.default is param.empty else param.default
            from pydantic import Field

            fields[pname] = (annotation, Field(default, description=doc_params.get(pname)))
        model = create_model(f"{func.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        descriptor = ToolDescriptor(
            name=name or func.__name__,
            description=description or doc_description,
            input_schema=schema,
        )

        def parse(args: dict[str, Any]) -> dict[str, Any]:
            try:
                validated = model.model_validate(args)
            except Exception as exc:  # noqa: BLE001 - pydantic's error text is the reason
                reason = f"arguments for tool {descriptor.name!r}: {exc}"
                raise ToolArgumentsError(reason, tool=descriptor.name) from None
            return {k: getattr(validated, k) for k in fields}

        if inspect.iscoroutinefunction(func):

            async def execute(args: dict[str, Any]) -> Any:
                return await func(**args)
        else:

            async def execute(args: dict[str, Any]) -> Any:
                return await _in_daemon_thread(func, args, name=f"rxkit-tool-{descriptor.name}")

        t = Tool(descriptor, execute, requires_approval=requires_approval, timeout=timeout, parse=parse)
        t.__doc__ = func.__doc__
        return t

    return build(fn) if fn is not None else build
