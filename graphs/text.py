"""Text mode: load history, check the input, build the prompt, stream the answer, check it, save the turn.

::

    load_state -> validate_input -> assemble_prompt -> llm -> validate_output -> save_state

>>> from rxkit.providers.mock import MockProvider
>>> g = text_graph(MockProvider(["Hello!", "Bob."]))
>>> [type(e).__name__ for e in g.run(["Hi, I am Bob"])]
['TextDelta', 'EndOfTurn']

For scripts and the CLI, :class:`Conversation` keeps the session and runs
one turn at a time::

    chat = Conversation(provider, store=SQLiteStore("chat.db"), prompt="You are terse.")
    print(chat.ask("What is the capital of France?"))
    async for element in chat.astream("And of Italy?"): ...
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxkit.elements import Element, EndOfTurn, TextDelta
from rxkit.errors import BufferOverflowError, ConfigError, GraphError, RxkitError
from rxkit.graph import Graph, arun, astream, run
from rxkit.graphs._session_turns import session_turns
from rxkit.graphs._settings import ConversationSettings
from rxkit.operators import (
    assemble_prompt,
    llm,
    load_state,
    one_turn_at_a_time,
    save_state,
    tool_loop,
    validate_input,
    validate_output,
)
from rxkit.prompts import PromptSpec
from rxkit.providers.base import Provider
from rxkit.providers.registry import ProviderSpec, create_provider
from rxkit.scheduling import loop_of, run_blocking
from rxkit.state.base import StateStore
from rxkit.state.memory import MemoryStore
from rxkit.state.sqlite import SQLiteStore
from rxkit.telemetry.events import EventBus
from rxkit.tools import Tool, ToolRegistry
from rxkit.tools.approval import Approver
from rxkit.types import Message, ToolDescriptor
from rxkit.validation import Validator

__all__ = ["Conversation", "TextGraph", "text_graph"]


class TextGraph(Graph):
    """A chain that runs one turn at a time: each input passes through every
    stage, its turn saved, before the next input's history is loaded.

    Inputs that arrive meanwhile wait (at most
    :data:`~rxkit.operators.MAX_PENDING`); an urgent
    control element (:class:`~rxkit.elements.Interrupt`) cancels the turn in
    flight, which then saves nothing.
    """

    def __call__(self, source: Observable[Any]) -> Observable[Any]:
        whole_chain = super().__call__
        return one_turn_at_a_time(lambda item: whole_chain(reactivex.of(item)))(source)


def text_graph(
    provider: Provider,
    conversation: ConversationSettings | None = None,
    *,
    bus: EventBus | None = None,
    hold_tools: Callable[[], Awaitable[None]] | None = None,
    **options: Any,
) -> Graph:
    """The text-mode graph, named ``"text"``: inputs are user messages (str or Message), output is the answer's
    elements, each turn ending with ``EndOfTurn(response, turn)`` once it is saved.

    ``conversation`` (a :class:`~rxkit.graphs.ConversationSettings`) says where
    the history is kept and how the model is asked; any of its fields may
    also be given as a keyword (``store=``, ``session=``, ``prompt=``,
    ``variables=``, ``input_validators=``, ``output_validators=``,
    ``max_history_tokens=``, ``tools=``, ``max_tool_rounds=``,
    ``tool_timeout=``, ``approver=``, ``two_phase=``), applied last; a bad
    value is a :class:`~rxkit.errors.ConfigError` naming the field. Its
    ``provider`` is not read: the graph runs on ``provider``.

    With no ``store``, history is kept in a :class:`~rxkit.state.memory.MemoryStore`
    owned by the graph. ``variables`` fill the prompt template (and go on each turn).

    ``tools`` that can run (functions, :class:`~rxkit.tools.Tool` objects, a
    :class:`~rxkit.tools.ToolRegistry`) replace the ``llm`` stage by the
    :func:`~rxkit.operators.tool_loop` (``max_tool_rounds``, ``tool_timeout``,
    ``approver``, ``two_phase`` configure it); the tool calls and results of a
    turn are saved with it. Bare :class:`~rxkit.types.ToolDescriptor` objects
    are only shown to the model: its tool calls come out as elements.
    ``hold_tools`` is the tool loop's (the voice graph's preemptive replies).
    """
    if isinstance(provider, (str, Mapping, ProviderSpec)):  # a name or spec would fail only at the first turn
        raise ConfigError(
            f"text_graph needs a provider object, not {type(provider).__name__}: build one with "
            f"rxkit.providers.create_provider(...), or use Conversation(...), which takes a name or spec"
        )
    chat = (conversation if conversation is not None else ConversationSettings()).with_options(**options)
    store = chat.store if chat.store is not None else MemoryStore()
    tools = chat.tools
    descriptors = (
        [t for t in tools or () if isinstance(t, ToolDescriptor)] if not isinstance(tools, ToolRegistry) else []
    )
    runnable = (
        tools if isinstance(tools, ToolRegistry) else [t for t in tools or () if not isinstance(t, ToolDescriptor)]
    )
    answer = (
        tool_loop(
            provider,
            runnable,
            max_rounds=chat.max_tool_rounds,
            timeout=chat.tool_timeout,
            approver=chat.approver,
            two_phase=chat.two_phase,
            bus=bus,
            hold_tools=hold_tools,
        )
        if runnable
        else llm(provider)
    )
    graph = TextGraph.chain(
        load_state(store, chat.session, variables=chat.variables, bus=bus),
        validate_input(*chat.input_validators, bus=bus),
        assemble_prompt(chat.prompt, max_history_tokens=chat.max_history_tokens, tools=descriptors or None, bus=bus),
        answer,
        validate_output(*chat.output_validators, bus=bus),
        save_state(store, bus=bus),
        name="text",
        bus=bus,
    )
    assert isinstance(graph, TextGraph)
    return graph


class Conversation:
    """One session with a model, a turn at a time: for scripts, notebooks and the CLI.

    ``provider`` is a provider or a spec (a type name such as ``"mock"``, a
    mapping, a :class:`~rxkit.providers.registry.ProviderSpec`); ``store`` a
    state store or a SQLite file path (default: in memory). What the
    conversation builds from a spec or path it also closes in :meth:`aclose`.

    Turns on one session run one at a time, in order: a second ``aask`` (or
    ``ask`` from another thread, or a turn of another Conversation on the same
    store object and session) waits until the turn before it is saved, then
    runs on the history that includes it; at most ``max_waiting`` turns wait
    (more is a BufferOverflowError). Writers this process does not see
    (another process on the same SQLite file or Redis) are refused instead:
    the turn fails with :class:`~rxkit.errors.StateError` ("changed while the
    turn ran"), whose ``response`` is the answer that could not be saved; ask
    again to retry on the new history.

    >>> chat = Conversation("mock")
    >>> chat.ask("echo me")
    'echo me'
    >>> chat.close()
    """

    def __init__(
        self,
        provider: Provider | ProviderSpec | Mapping[str, Any] | str,
        store: StateStore | str | os.PathLike[str] | None = None,
        session: str = "default",
        prompt: PromptSpec | str | None = None,
        *,
        variables: dict[str, Any] | None = None,
        input_validators: Sequence[Validator] = (),
        output_validators: Sequence[Validator] = (),
        max_history_tokens: int | None = None,
        tools: ToolRegistry | Sequence[Tool | ToolDescriptor | Callable[..., Any]] | None = None,
        max_tool_rounds: int = 5,
        approver: Approver | None = None,
        two_phase: bool = False,
        bus: EventBus | None = None,
        max_waiting: int = 100,
    ) -> None:
        self._owned: list[Any] = []
        if isinstance(provider, (str, Mapping, ProviderSpec)):
            provider = create_provider(provider)
            self._owned.append(provider)
        if store is None:
            store = MemoryStore()
        elif isinstance(store, (str, os.PathLike)):
            store = SQLiteStore(store)
            self._owned.append(store)
        self.provider: Provider = provider
        self.store: StateStore = store
        self.session = session
        self.graph = text_graph(
            provider,
            store=store,
            session=session,
            prompt=prompt,
            variables=variables,
            input_validators=input_validators,
            output_validators=output_validators,
            max_history_tokens=max_history_tokens,
            tools=tools,
            max_tool_rounds=max_tool_rounds,
            approver=approver,
            two_phase=two_phase,
            bus=bus,
        )
        self._closed = False
        # Turns on this session queue here, shared with every Conversation on the same store and session.
        self._turns = session_turns(store, session, max_waiting)
        self._running: dict[object, Callable[[], None]] = {}  # turn -> abort, for turns running or waiting

    # -- running turns ------------------------------------------------------
    def send(self, text: str | Message) -> Observable[Element]:
        """One turn, as an observable of its elements (cold: the turn runs when subscribed).

        If another turn of this conversation is running, this one waits for it.
        """

        def subscribe(observer: abc.ObserverBase[Element], scheduler: abc.SchedulerBase | None = None) -> Any:
            state = {"started": False, "finished": False}
            graph_sub: list[abc.DisposableBase] = []

            def finish() -> bool:
                """Mark this turn over; True the first time. Frees the conversation for the next turn."""
                if state["finished"]:
                    return False
                state["finished"] = True
                self._running.pop(key, None)
                if state["started"]:
                    self._turns.leave()
                return True

            def on_error(error: Exception) -> None:
                if finish():
                    observer.on_error(error)

            def on_completed() -> None:
                if finish():
                    observer.on_completed()

            def abort() -> None:  # aclose: stop the turn and tell the subscriber
                for d in graph_sub:
                    d.dispose()
                on_error(RxkitError("the conversation was closed"))

            def start() -> None:
                if state["finished"]:  # disposed while it waited
                    self._turns.leave()
                    return
                if self._closed:
                    on_error(RxkitError("this conversation is closed"))
                    self._turns.leave()
                    return
                state["started"] = True
                sub = self.graph(reactivex.of(text)).subscribe(
                    observer.on_next, on_error, on_completed, scheduler=scheduler
                )
                graph_sub.append(sub)
                if state["finished"]:
                    sub.dispose()

            def dispose() -> None:
                for d in graph_sub:
                    d.dispose()
                finish()

            key = object()
            if self._closed:
                state["finished"] = True
                observer.on_error(RxkitError("this conversation is closed"))
                return Disposable()
            self._running[key] = abort
            try:
                loop = loop_of(scheduler)
            except GraphError:  # subscribed outside any loop: a waiting turn starts where the last one ended
                loop = None
            try:
                self._turns.enter(start, loop)
            except BufferOverflowError as exc:
                self._running.pop(key, None)
                state["finished"] = True
                observer.on_error(exc)
            return Disposable(dispose)

        return Observable(subscribe)

    def astream(self, text: str | Message) -> AsyncIterator[Element]:
        """``async for element in chat.astream("hi")``: one turn's elements; leaving early cancels the turn."""
        return astream(self.send(text))

    async def aask(self, text: str | Message) -> str:
        """Run one turn and return the answer's text."""
        return _answer(await arun(self.send(text)))

    def ask(self, text: str | Message, *, timeout: float | None = None) -> str:
        """Blocking :meth:`aask` for scripts (inside Jupyter it runs on a worker thread)."""
        return _answer(run(self.send(text), timeout=timeout))

    async def history(self) -> list[Message]:
        """The session's stored messages, oldest first."""
        return await self.store.load(self.session)

    async def clear(self) -> None:
        """Forget the session's history."""
        await self.store.delete(self.session)

    # -- closing --------------------------------------------------------------
    async def aclose(self) -> None:
        """Cancel turns in flight and close what this conversation built (provider from a spec, store from a path)."""
        if self._closed:
            return
        self._closed = True
        for abort in list(self._running.values()):
            abort()  # running and waiting turns end with an error saying so
        self._running.clear()
        for resource in reversed(self._owned):
            await resource.aclose()

    def close(self) -> None:
        """Blocking :meth:`aclose`, for scripts (inside a running loop it runs on a worker thread)."""
        run_blocking(self.aclose)

    async def __aenter__(self) -> Conversation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Conversation(provider={self.provider!r}, session={self.session!r}, store={self.store!r})"


def _answer(elements: list[Any]) -> str:
    for element in reversed(elements):
        if isinstance(element, EndOfTurn) and element.response is not None:
            return element.response.text
    return "".join(e.text for e in elements if isinstance(e, TextDelta))
