"""Prompt templates, prompt specs and history truncation.

Templates are Jinja2, rendered in a sandbox with strict undefined variables:
a missing variable is a :class:`~rxkit.errors.TemplateError` that names it,
never a silently empty string.

>>> PromptTemplate("You are {{ persona }}.").render({"persona": "terse"})
'You are terse.'
>>> spec = PromptSpec(name="helper", system="Answer in {{ lang }}.", variables={"lang": "English"}, temperature=0.2)
>>> spec.render(), spec.model_params()
('Answer in English.', {'temperature': 0.2})

A spec usually lives in a YAML (or JSON) file::

    # prompts/helper.yaml
    name: helper
    system: |
      You are a helpful assistant. Answer in {{ lang }}.
    variables: {lang: English}
    temperature: 0.3
    max_history_tokens: 2000

    spec = load_prompt_spec("prompts/helper.yaml")
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rxkit.errors import ConfigError, PromptSpecError, TemplateError
from rxkit.types import AudioPart, ImagePart, Message, TextPart, ToolCallPart, ToolResultPart

__all__ = [
    "PromptSpec",
    "PromptTemplate",
    "approx_tokens",
    "PromptPlan",
    "load_prompt_spec",
    "plan_prompt",
    "prompt_opening",
    "render_template",
    "truncate_history",
]

# One shared sandbox: rendering is thread-safe. trim/lstrip blocks keep
# ``{% if %}`` lines from leaving blank lines in prompts.
_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)
_UNDEFINED = re.compile(r"^'(?P<name>[^']+)' is undefined$")
_NO_ATTRIBUTE = re.compile(r"has no attribute '(?P<name>[^']+)'")


class PromptTemplate:
    """A compiled Jinja2 template; a syntax error raises :class:`TemplateError` at once.

    >>> PromptTemplate("Hi {{ who }}", name="greeting").render({"who": "Ada"})
    'Hi Ada'
    """

    __slots__ = ("name", "source", "_template")

    def __init__(self, source: str, name: str = "template") -> None:
        self.name = name
        self.source = source
        try:
            self._template = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {name!r} has a syntax error at line {exc.lineno}: {exc.message}",
                template=name,
                line=exc.lineno,
                variable=None,
            ) from exc

    def render(self, variables: Mapping[str, Any] | None = None) -> str:
        """Render with ``variables``; an undefined one raises :class:`TemplateError` naming it."""
        try:
            return self._template.render(dict(variables or {}))
        except jinja2.UndefinedError as exc:
            message = str(exc)
            line = _template_line(exc)
            where = f" (line {line})" if line else ""
            variable, what = None, f"undefined value: {message}"
            if found := _UNDEFINED.match(message):
                variable = found.group("name")
                what = f"undefined variable {variable!r}"
            elif found := _NO_ATTRIBUTE.search(message):
                variable = found.group("name")
                what = f"undefined attribute {variable!r} ({message})"
            raise TemplateError(
                f"template {self.name!r}{where}: {what}", template=self.name, line=line, variable=variable
            ) from exc
        except Exception as exc:  # sandbox violations, filters that raise
            line = _template_line(exc)
            where = f" (line {line})" if line else ""
            raise TemplateError(
                f"template {self.name!r}{where} failed: {type(exc).__name__}: {exc}",
                template=self.name,
                line=line,
                variable=None,
            ) from exc

    def __repr__(self) -> str:
        return f"PromptTemplate(name={self.name!r})"


def _template_line(exc: BaseException) -> int | None:
    # Jinja rewrites tracebacks so template frames carry the template's line.
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@functools.lru_cache(maxsize=256)
def _compiled(source: str, name: str) -> PromptTemplate:
    return PromptTemplate(source, name)


def render_template(source: str, variables: Mapping[str, Any] | None = None, *, name: str = "template") -> str:
    """Render template text once (compiled templates are cached).

    >>> render_template("{{ a }} + {{ b }}", {"a": 1, "b": 2})
    '1 + 2'
    """
    return _compiled(source, name).render(variables)


class PromptSpec(BaseModel):
    """A named prompt: a system template, default variables and model parameters.

    ``None`` parameters are left to the provider's defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str | None = None
    system: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    seed: int | None = None
    tool_choice: str | None = None
    response_format: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    max_history_tokens: int | None = Field(default=None, ge=0)

    def template(self) -> PromptTemplate | None:
        """The compiled system template (``None`` without one)."""
        return _compiled(self.system, self.name) if self.system is not None else None

    def render(self, variables: Mapping[str, Any] | None = None) -> str | None:
        """The system text, from the spec's defaults overridden by ``variables``."""
        template = self.template()
        if template is None:
            return None
        return template.render({**self.variables, **(variables or {})})

    def model_params(self) -> dict[str, Any]:
        """The set model parameters, as :class:`~rxkit.types.ChatRequest` fields."""
        names = ("model", "temperature", "max_tokens", "top_p", "stop", "seed", "tool_choice", "response_format")
        params = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.extra:
            params["extra"] = dict(self.extra)
        return params


def load_prompt_spec(path: str | os.PathLike[str]) -> PromptSpec:
    """Load a :class:`PromptSpec` from a YAML (``.yaml``/``.yml``) or JSON (``.json``) file.

    ``name`` defaults to the file's stem. A missing or unreadable file, bad
    YAML/JSON or a field that breaks the schema raises :class:`PromptSpecError`
    naming the file (and the field, the line where known); a template syntax
    error in ``system`` raises :class:`TemplateError`.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptSpecError(f"prompt spec file {str(file)!r} does not exist", path=str(file), field=None) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"cannot read prompt spec file {str(file)!r}: {reason}"
        raise PromptSpecError(message, path=str(file), field=None) from exc
    data = _parse(file, text)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise PromptSpecError(
            f"prompt spec file {str(file)!r} must hold a mapping of fields, got {got}", path=str(file), field=None
        )
    data.setdefault("name", file.stem)
    try:
        spec = PromptSpec.model_validate(data)
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in err["loc"]) or "(root)", err["msg"]) for err in exc.errors()]
        listed = "; ".join(f"field {f!r}: {m}" for f, m in problems)
        message = f"prompt spec file {str(file)!r} is invalid: {listed}"
        raise PromptSpecError(message, path=str(file), field=problems[0][0], errors=tuple(problems)) from None
    if spec.system is not None:
        PromptTemplate(spec.system, name=f"{file}: system")  # a syntax error surfaces now, naming the file
    return spec


def _parse(file: Path, text: str) -> Any:
    if file.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptSpecError(
                f"prompt spec file {str(file)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
                path=str(file),
                field=None,
                line=exc.lineno,
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f" (line {line}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PromptSpecError(
            f"prompt spec file {str(file)!r} is not valid YAML{where}: {problem}", path=str(file), field=None, line=line
        ) from None


# -- history --------------------------------------------------------------

_MESSAGE_OVERHEAD = 4  # role and separators, roughly what chat formats add per message
_IMAGE_TOKENS = 85  # a low-detail image, as OpenAI counts it


def approx_tokens(item: Message | str) -> int:
    """A cheap token estimate: about 4 characters a token, plus a little per message.

    >>> approx_tokens("abcdefgh")
    2
    >>> approx_tokens(Message.user("abcdefgh"))
    6
    """
    if isinstance(item, str):
        return math.ceil(len(item) / 4)
    chars = 0
    extra = _MESSAGE_OVERHEAD
    for part in item.content:
        if isinstance(part, TextPart):
            chars += len(part.text)
        elif isinstance(part, ToolCallPart):
            chars += len(part.call.name) + len(part.call.arguments) + len(part.call.id)
        elif isinstance(part, ToolResultPart):
            chars += len(part.content) + len(part.call_id)
        elif isinstance(part, ImagePart):
            extra += _IMAGE_TOKENS
        elif isinstance(part, AudioPart):
            chars += len(part.data) // 8  # base64 audio is billed by duration, not by its text
    return math.ceil(chars / 4) + extra


def prompt_opening(
    template: PromptTemplate | None,
    variables: Mapping[str, Any],
    history: Sequence[Message],
    max_history_tokens: int | None = None,
    count_tokens: Callable[[Message], int] = approx_tokens,
) -> list[Message]:
    """What a turn's prompt holds before the user's message: the system message (``template`` rendered with
    ``variables``, none without a template) and the history that fits ``max_history_tokens``.

    >>> spec = PromptSpec(name="p", system="You are {{ mood }}.")
    >>> [m.text for m in prompt_opening(spec.template(), {"mood": "terse"}, [Message.user("hi")])]
    ['You are terse.', 'hi']
    """
    messages = [Message.system(template.render(variables))] if template is not None else []
    messages += truncate_history(history, max_history_tokens, count_tokens)
    return messages


class PromptPlan(NamedTuple):
    """A prompt as a turn reads it (:func:`plan_prompt`): the spec, its compiled template, its variables
    (the spec's defaults overridden by the ones given) and the history budget."""

    spec: PromptSpec | None
    template: PromptTemplate | None
    variables: dict[str, Any]
    max_history_tokens: int | None

    def opening(
        self,
        history: Sequence[Message],
        variables: Mapping[str, Any] | None = None,
        count_tokens: Callable[[Message], int] = approx_tokens,
    ) -> list[Message]:
        """:func:`prompt_opening` for this prompt, ``variables`` (a turn's own) over its own."""
        merged = {**self.variables, **(variables or {})}
        return prompt_opening(self.template, merged, history, self.max_history_tokens, count_tokens)


def plan_prompt(
    prompt: PromptSpec | str | None, variables: Mapping[str, Any] | None = None, max_history_tokens: int | None = None
) -> PromptPlan:
    """``prompt`` (a spec, or a template text: the system message) as every turn reads it: the template
    compiled now (a syntax error raises here), ``variables`` over the spec's defaults, ``max_history_tokens``
    or else the spec's.

    >>> plan_prompt("You are {{ mood }}.", {"mood": "terse"}).opening([Message.user("hi")])[0].text
    'You are terse.'
    """
    spec = PromptSpec(name="prompt", system=prompt) if isinstance(prompt, str) else prompt
    if spec is None:
        return PromptPlan(None, None, dict(variables or {}), max_history_tokens)
    budget = max_history_tokens if max_history_tokens is not None else spec.max_history_tokens
    return PromptPlan(spec, spec.template(), {**spec.variables, **(variables or {})}, budget)


def truncate_history(
    messages: Sequence[Message],
    max_tokens: int | None,
    count_tokens: Callable[[Message], int] = approx_tokens,
) -> list[Message]:
    """Drop the oldest messages until the history fits ``max_tokens``.

    System messages are always kept (in place). An assistant message that
    calls tools and the tool-result messages right after it are one unit:
    they are kept or dropped together, so a provider never sees a tool
    result without its call. ``count_tokens`` counts one message (default
    :func:`approx_tokens`); pass a real tokenizer's count for exact budgets.
    If the system messages alone are over budget, only they remain.

    >>> history = [Message.system("be brief"), Message.user("a" * 400), Message.assistant("ok"), Message.user("hi")]
    >>> [m.role for m in truncate_history(history, 20)]
    ['system', 'assistant', 'user']
    """
    if max_tokens is None:
        return list(messages)
    if max_tokens < 0:
        raise ConfigError(f"max_tokens must be >= 0, got {max_tokens}")
    units = _units(messages)
    costs = [sum(count_tokens(m) for m in unit) for unit in units]
    total = sum(costs)
    keep = [True] * len(units)
    for i, unit in enumerate(units):
        if total <= max_tokens:
            break
        if unit[0].role != "system":
            keep[i] = False
            total -= costs[i]
    return [m for i, unit in enumerate(units) if keep[i] for m in unit]


def _units(messages: Sequence[Message]) -> list[list[Message]]:
    units: list[list[Message]] = []
    i, n = 0, len(messages)
    while i < n:
        message = messages[i]
        unit = [message]
        i += 1
        if message.role == "assistant" and message.tool_calls:
            while i < n and messages[i].role == "tool":
                unit.append(messages[i])
                i += 1
        units.append(unit)
    return units
