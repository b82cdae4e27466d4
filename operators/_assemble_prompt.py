"""The ``assemble_prompt`` stage: turn a :class:`~rxkit.turn.Turn` into a chat request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reactivex import Observable
from reactivex import operators as ops

from rxkit.errors import ConfigError, RxkitError, StageError
from rxkit.graph.stage import Stage, StageKind
from rxkit.prompts import PromptSpec, approx_tokens, plan_prompt
from rxkit.telemetry.events import EventBus, PromptAssembled, default_bus
from rxkit.turn import Turn
from rxkit.types import ChatRequest, Message, ToolDescriptor

__all__ = ["assemble_prompt"]


def assemble_prompt(
    prompt: PromptSpec | str | None = None,
    *,
    variables: dict[str, Any] | None = None,
    max_history_tokens: int | None = None,
    tools: list[ToolDescriptor] | None = None,
    bus: EventBus | None = None,
    count_tokens: Callable[[Message], int] = approx_tokens,
) -> Stage[Turn, Turn]:
    """Set ``turn.request`` to ``[system, *history that fits, user]`` plus tools and model parameters.

    ``prompt`` is a :class:`~rxkit.prompts.PromptSpec` or a template text (the
    system message). Template variables: the spec's defaults, overridden by
    ``variables``, overridden by ``turn.variables``. ``max_history_tokens``
    (else the spec's) caps the history, oldest messages dropped first
    (:func:`~rxkit.prompts.truncate_history`). A template syntax error raises
    here; an undefined variable at run time is ``on_error(TemplateError)``.
    Elements other than turns pass through.

    >>> stage = assemble_prompt("You are {{ persona }}.", variables={"persona": "terse"})
    """
    if prompt is not None and not isinstance(prompt, (PromptSpec, str)):
        raise ConfigError(f"assemble_prompt takes a PromptSpec or a template text, not {type(prompt).__name__}")
    plan = plan_prompt(prompt, variables, max_history_tokens)  # the template compiled now: a syntax error raises
    spec = plan.spec
    params = spec.model_params() if spec is not None else {}
    tool_list = list(tools or ())
    name = spec.name if spec is not None else "prompt"
    events = bus if bus is not None else default_bus

    def assemble(item: Any) -> Any:
        if not isinstance(item, Turn):
            return item
        try:
            messages = plan.opening(item.history, item.variables, count_tokens)
            kept = len(messages) - (1 if plan.template is not None else 0)  # the history that fit
            messages.append(item.user)
            item.request = ChatRequest(messages=messages, tools=tool_list, **params)
        except RxkitError:
            raise
        except Exception as exc:  # a bad counter or message becomes a typed error
            raise StageError(f"assemble_prompt failed: {type(exc).__name__}: {exc}", stage="assemble_prompt") from exc
        events.publish(
            PromptAssembled(prompt=name, session=item.session, messages=len(messages), dropped=len(item.history) - kept)
        )
        return item

    def operator(source: Observable[Any]) -> Observable[Any]:
        return source.pipe(ops.map(assemble))  # map sends what `assemble` raises to on_error

    return Stage("assemble_prompt", operator, StageKind.TRANSFORM, "build the chat request for a turn")
