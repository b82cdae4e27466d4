"""Typed LLM functions: a prompt template and a return type; calling one returns a validated value.

>>> from pydantic import BaseModel
>>> class City(BaseModel):
...     city: str
...     country: str
>>> from rxkit.providers.mock import MockProvider
>>> locate = TypedFunction(
...     "Where is {{ landmark }}? {{ output_format }}",
...     returns=City,
...     provider=MockProvider(['{"city": "Paris", "country": "France"}']),
... )
>>> locate(landmark="the Eiffel Tower")
City(city='Paris', country='France')

``stream`` (and ``astream``) yield partial values as the answer arrives
(strings fill in; numbers, booleans and enums appear once complete), then
the validated value last. The provider is an object or a name
(``"openai"``, ``"local"``, ...). Where the provider has a native structured
mode (``Capabilities.structured_output``: OpenAI's strict JSON schema, Gemini's
JSON schema, llama.cpp's schema grammar, Anthropic's forced tool) it is used,
and the answer is still parsed leniently; elsewhere, or if the server rejects
the native request (HTTP 400), the prompt carries the format and the answer is
parsed. On OpenAI the schema is sent with ``"strict": true``, made strict-compatible
(:func:`rxkit.structured.strict_json_schema`); a type that cannot be strict (a
``dict`` field, a root that is not an object) is sent without it: ``fn.strict``
is then False and ``fn.strict_problem`` says why, and the
:class:`~rxkit.telemetry.events.StructuredResult` events say ``json_schema``
instead of ``json_schema_strict``. An answer that does not validate goes back
to the model with the errors, up to ``retries`` times; then
:class:`~rxkit.errors.StructuredOutputError` carries the last raw answer and
the errors.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar, get_type_hints

from pydantic import TypeAdapter, ValidationError, create_model

from rxkit.elements import TextDelta, ToolCallDelta, ToolCallElement
from rxkit.errors import ConfigError, ProviderHTTPError, StructuredOutputError, describe_validation
from rxkit.graph.running import astream as _astream
from rxkit.prompts import PromptTemplate
from rxkit.providers.base import Provider
from rxkit.providers.registry import create_provider
from rxkit.scheduling import run_blocking
from rxkit.structured import StreamingParser, output_format, strict_json_schema
from rxkit.telemetry.events import EventBus, StructuredResult, StructuredRetry, default_bus
from rxkit.types import ChatRequest, Message, ToolDescriptor

__all__ = ["TypedFunction", "typed_function"]

T = TypeVar("T")
_MODES = ("auto", "native", "prompt")
_NAME = re.compile(r"[^A-Za-z0-9_-]")


class TypedFunction(Generic[T]):
    """A prompt (sandboxed Jinja) and a return type, run on a provider.

    ``{{ output_format }}`` in the prompt inserts the type written compactly
    (:func:`rxkit.structured.output_format`); in prompt-and-parse mode it is
    appended when the prompt does not use it. ``system`` is an optional system
    template. ``mode``: ``"auto"`` (native where the provider has it),
    ``"native"`` (fail without it), ``"prompt"`` (always prompt-and-parse).
    ``params`` are request parameters (``temperature``, ``max_tokens``, ...).
    ``strict=False`` sends OpenAI's JSON schema without strict mode.
    """

    def __init__(
        self,
        prompt: str,
        *,
        returns: Any,
        provider: Provider | str = "mock",
        system: str | None = None,
        retries: int = 2,
        mode: str = "auto",
        strict: bool = True,
        name: str | None = None,
        bus: EventBus | None = None,
        **params: Any,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(f"TypedFunction mode must be one of {', '.join(_MODES)}, not {mode!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"TypedFunction retries must be an integer >= 0, not {retries!r}")
        self.name = name or "typed_function"
        self.returns = returns
        self.prompt = PromptTemplate(prompt, name=self.name)
        self.system = PromptTemplate(system, name=f"{self.name}.system") if system else None
        self.retries = retries
        self.mode = mode
        self.params = params
        self.bus = bus if bus is not None else default_bus
        self.format = output_format(returns)
        self.schema = TypeAdapter(returns).json_schema()
        self._owned = isinstance(provider, str)
        self.provider: Provider = create_provider(provider) if isinstance(provider, str) else provider
        native = self.provider.capabilities.structured_output
        if mode == "native" and not native:
            raise ConfigError(f"provider {self.provider.name!r} has no native structured output mode")
        self.native = native if mode != "prompt" else ""
        self.strict_schema: dict[str, Any] | None = None
        self.strict_problem: str | None = None  # why the schema goes without strict mode, where it could not be strict
        if self.native == "json_schema_strict":
            try:
                self.strict_schema = strict_json_schema(returns) if strict else None
            except ConfigError as exc:
                self.strict_problem = str(exc)
            if self.strict_schema is None:
                self.native = "json_schema"
        self.strict = self.strict_schema is not None
        self._uses_format = "output_format" in prompt or (system is not None and "output_format" in system)
        # A forced tool takes an object: another type is wrapped as {"value": ...}, parsed as such and unwrapped.
        self._wrapped = self.native == "forced_tool" and self.schema.get("type") != "object"
        self._tool_type: Any = create_model("Answer", value=(returns, ...)) if self._wrapped else returns

    # -- calling ---------------------------------------------------------------

    def __call__(self, **variables: Any) -> T:
        """Blocking call: the validated value (inside Jupyter it runs on a worker thread)."""
        return run_blocking(lambda: self.acall(**variables))

    async def acall(self, **variables: Any) -> T:
        """The validated value."""
        final: Any = None
        async for kind, value in self._run(variables):
            if kind == "final":
                final = value
        return final

    async def astream(self, **variables: Any) -> AsyncIterator[Any]:
        """Partial values in text order, then the validated value last.

        After a retry, partials start again from the new answer.
        """
        async for _, value in self._run(variables):
            yield value

    def stream(self, **variables: Any) -> Iterator[Any]:
        """Blocking :meth:`astream`: runs the call on a worker thread; leaving the loop early cancels it."""
        return _iterate_blocking(lambda: self.astream(**variables))

    async def aclose(self) -> None:
        """Close the provider if this function built it from a name."""
        if self._owned:
            await self.provider.aclose()

    def close(self) -> None:
        """Blocking :meth:`aclose`."""
        run_blocking(self.aclose)

    def render(self, **variables: Any) -> list[Message]:
        """The messages a call sends (first attempt)."""
        values = {**variables, "output_format": self.format}
        text = self.prompt.render(values)
        if not self.native and not self._uses_format:
            text = f"{text}\n\n{self.format}"
        messages = [Message.system(self.system.render(values))] if self.system else []
        return [*messages, Message.user(text)]

    def __repr__(self) -> str:
        return f"TypedFunction(name={self.name!r}, returns={self.returns!r}, provider={self.provider.name!r})"

    # -- the loop ----------------------------------------------------------------

    def _request(self, messages: list[Message], native: str) -> ChatRequest:
        params = dict(self.params)
        name = _NAME.sub("_", self.name)[:64]
        if native == "json_schema_strict":
            spec = {"name": name, "schema": self.strict_schema, "strict": True}
            params["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif native == "json_schema":
            params["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": self.schema}}
        elif native == "json_object_schema":
            params["response_format"] = {"type": "json_object", "schema": self.schema}
        elif native == "forced_tool":
            tool = ToolDescriptor(name=name, description="Give the answer.", input_schema=self._tool_schema())
            return ChatRequest(messages=messages, tools=[tool], tool_choice=name, **params)
        return ChatRequest(messages=messages, **params)

    def _tool_schema(self) -> dict[str, Any]:
        if self.schema.get("type") == "object":
            return self.schema
        defs = self.schema.get("$defs")
        inner = {k: v for k, v in self.schema.items() if k != "$defs"}
        wrapped: dict[str, Any] = {"type": "object", "properties": {"value": inner}, "required": ["value"]}
        if defs:
            wrapped["$defs"] = defs
        return wrapped

    async def _run(self, variables: dict[str, Any]) -> AsyncIterator[tuple[str, Any]]:
        messages = self.render(**variables)
        native = self.native
        attempt = 0
        tool = _NAME.sub("_", self.name)[:64]
        while True:
            attempt += 1
            forced = native == "forced_tool"
            parser: StreamingParser = StreamingParser(self._tool_type if forced else self.returns)
            streamed = False  # the tool's arguments came as deltas (parsed as they came)
            try:
                async for element in _astream(self.provider.stream(self._request(messages, native))):
                    if not forced:
                        if isinstance(element, TextDelta) and parser.feed(element.text):
                            yield "partial", parser.partial()
                    elif isinstance(element, ToolCallDelta) and element.name == tool:
                        streamed = True
                        if parser.feed(element.arguments):
                            yield "partial", self._unwrap(parser.partial())
                    elif isinstance(element, ToolCallElement) and not streamed:  # the arguments whole, at once
                        parser.feed(element.call.arguments)
                        yield "partial", self._unwrap(parser.partial())
            except ProviderHTTPError as exc:
                if native and exc.status == 400 and self.mode == "auto":
                    native = ""  # the server rejects the native mode: prompt and parse instead
                    messages = self._with_format(messages)
                    attempt -= 1
                    continue
                raise
            raw = parser.text()
            try:
                value = parser.finish()
                if forced and self._wrapped:
                    value = value.value
            except ValidationError as exc:
                errors = describe_validation(exc).split("; ")
                if attempt > self.retries:
                    self.bus.publish(StructuredResult(function=self.name, ok=False, attempts=attempt, mode=native))
                    raise StructuredOutputError(
                        f"typed function {self.name!r}: the answer did not fit {_type_name(self.returns)} after "
                        f"{attempt} attempt(s): {'; '.join(errors)}",
                        validator=self.name,
                        reason="; ".join(errors),
                        phase="output",
                        raw=raw,
                        errors=errors,
                        attempts=attempt,
                    ) from None
                self.bus.publish(StructuredRetry(function=self.name, attempt=attempt + 1, errors="; ".join(errors)))
                feedback = "\n".join(f"- {e}" for e in errors)
                messages = [
                    *messages,
                    Message.assistant(raw or "(no answer)"),
                    Message.user(
                        f"That answer does not fit the schema:\n{feedback}\n"
                        f"Answer again, only the JSON.\n\n{self.format}"
                    ),
                ]
                continue
            self.bus.publish(StructuredResult(function=self.name, ok=True, attempts=attempt, mode=native or "prompt"))
            yield "final", value
            return

    def _unwrap(self, partial: Any) -> Any:
        if not self._wrapped:
            return partial
        return None if partial is None else partial.value

    def _with_format(self, messages: list[Message]) -> list[Message]:
        if self._uses_format:
            return messages
        last = messages[-1]
        return [*messages[:-1], Message.user(f"{last.text}\n\n{self.format}")]


def typed_function(
    fn: Callable[..., Any] | None = None, **options: Any
) -> TypedFunction[Any] | Callable[[Callable[..., Any]], TypedFunction[Any]]:
    """Declare a typed function from a Python stub: the docstring is the prompt, the return annotation the type.

    >>> from rxkit.providers.mock import MockProvider
    >>> @typed_function(provider=MockProvider(["[3, 5]"]))
    ... def primes_between(low: int, high: int) -> list[int]:
    ...     '''List the primes between {{ low }} and {{ high }}. {{ output_format }}'''
    >>> primes_between(low=2, high=6)
    [3, 5]
    """

    def build(stub: Callable[..., Any]) -> TypedFunction[Any]:
        hints = get_type_hints(stub)
        if "return" not in hints:
            raise ConfigError(f"typed function {stub.__name__!r} needs a return annotation (the output type)")
        if not stub.__doc__:
            raise ConfigError(f"typed function {stub.__name__!r} needs a docstring (the prompt template)")
        import inspect

        return TypedFunction(
            inspect.cleandoc(stub.__doc__), returns=hints["return"], name=options.pop("name", stub.__name__), **options
        )

    return build(fn) if fn is not None else build


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


_DONE = object()


def _iterate_blocking(factory: Callable[[], AsyncIterator[Any]], maxsize: int = 64) -> Iterator[Any]:
    """Iterate an async iterator from sync code: it runs on its own loop in a worker thread.

    The hand-off queue is bounded (the worker waits when it is full); leaving
    the loop early cancels the work and joins the thread.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize)
    state: dict[str, Any] = {}
    stop = threading.Event()

    async def pump() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["task"] = asyncio.current_task()
        try:
            async for item in factory():
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        await asyncio.sleep(0)
                if stop.is_set():
                    return
        except asyncio.CancelledError:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            state["error"] = exc
        finally:
            _put_final(items, stop)

    worker = threading.Thread(target=asyncio.run, args=(pump(),), name="rxkit-typed-stream", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                break
            yield item
        if "error" in state:
            raise state["error"]
    finally:
        stop.set()
        loop, task = state.get("loop"), state.get("task")
        if loop is not None and task is not None and not task.done():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop already closed
                pass
        while worker.is_alive():
            try:
                items.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def _put_final(items: queue.Queue[Any], stop: threading.Event) -> None:
    while True:
        try:
            items.put(_DONE, timeout=0.05)
            return
        except queue.Full:
            if stop.is_set():
                return
