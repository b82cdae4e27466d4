"""Templates, prompt specs and history truncation."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rxkit.prompts
from rxkit.errors import ConfigError, PromptSpecError, TemplateError
from rxkit.prompts import (
    PromptSpec,
    PromptTemplate,
    approx_tokens,
    load_prompt_spec,
    render_template,
    truncate_history,
)
from rxkit.types import ImagePart, Message, ToolCall


def test_doctests() -> None:
    assert doctest.testmod(rxkit.prompts).failed == 0


# -- templates --------------------------------------------------------------


def test_template_renders_variables() -> None:
    assert PromptTemplate("You are {{ persona }}, speak {{ lang | upper }}.").render(
        {"persona": "Ada", "lang": "en"}
    ) == ("You are Ada, speak EN.")


def test_undefined_variable_names_the_variable_the_template_and_the_line() -> None:
    template = PromptTemplate("Hello.\nYou are {{ persona }}.", name="greeter")
    with pytest.raises(TemplateError) as info:
        template.render({})
    err = info.value
    assert isinstance(err, ConfigError)
    assert (err.variable, err.template, err.line) == ("persona", "greeter", 2)
    assert "'persona'" in str(err) and "'greeter'" in str(err) and "line 2" in str(err)


def test_undefined_attribute_is_named() -> None:
    with pytest.raises(TemplateError) as info:
        PromptTemplate("{{ user.name }}", name="t").render({"user": {}})
    assert info.value.variable == "name"
    assert "undefined attribute 'name'" in str(info.value)


def test_defined_checks_and_defaults_still_work_under_strict_undefined() -> None:
    text = "{% if tone is defined %}Tone: {{ tone }}.{% endif %}Lang: {{ lang | default('en') }}"
    assert render_template(text, {}) == "Lang: en"
    assert render_template(text, {"tone": "dry", "lang": "fr"}) == "Tone: dry.Lang: fr"


def test_block_lines_leave_no_blank_lines() -> None:
    text = "A\n{% if x %}\nB\n{% endif %}\nC"
    assert render_template(text, {"x": True}) == "A\nB\nC"


def test_syntax_error_raises_at_compile_time_with_the_line() -> None:
    with pytest.raises(TemplateError) as info:
        PromptTemplate("line one\nline two {% if %}", name="broken")
    assert info.value.line == 2
    assert info.value.template == "broken"
    assert "line 2" in str(info.value) and "'broken'" in str(info.value)


def test_sandbox_blocks_unsafe_access() -> None:
    with pytest.raises(TemplateError):
        render_template("{{ x.__class__.__mro__[1].__subclasses__() }}", {"x": ""})


def test_a_failing_expression_becomes_a_template_error() -> None:
    with pytest.raises(TemplateError) as info:
        render_template("ok\n{{ 1 / n }}", {"n": 0}, name="div")
    assert "ZeroDivisionError" in str(info.value)
    assert info.value.line == 2


# -- specs ------------------------------------------------------------------


def test_spec_renders_defaults_overridden_by_variables() -> None:
    spec = PromptSpec(name="p", system="{{ a }}-{{ b }}", variables={"a": 1, "b": 2})
    assert spec.render() == "1-2"
    assert spec.render({"b": 3}) == "1-3"
    assert PromptSpec(name="bare").render() is None


def test_spec_model_params_only_set_ones() -> None:
    spec = PromptSpec(name="p", temperature=0.0, max_tokens=50, stop=["\n"], extra={"logprobs": True})
    assert spec.model_params() == {"temperature": 0.0, "max_tokens": 50, "stop": ["\n"], "extra": {"logprobs": True}}


def test_spec_rejects_bad_values() -> None:
    with pytest.raises(pydantic.ValidationError):
        PromptSpec(name="p", temperature=-1)
    with pytest.raises(pydantic.ValidationError):
        PromptSpec(name="p", unknown_field=1)  # type: ignore[call-arg]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_yaml_spec(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "helper.yaml",
        "description: a helper\nsystem: |\n  Answer in {{ lang }}.\nvariables:\n  lang: English\n"
        "temperature: 0.3\nmax_tokens: 64\nmax_history_tokens: 500\n",
    )
    spec = load_prompt_spec(path)
    assert spec.name == "helper"  # from the file's stem
    assert spec.description == "a helper"
    assert spec.render() == "Answer in English."  # Jinja drops the block scalar's final newline
    assert spec.max_history_tokens == 500
    assert spec.model_params() == {"temperature": 0.3, "max_tokens": 64}


def test_load_json_spec(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.json", json.dumps({"name": "named", "system": "Hi {{ who }}", "top_p": 0.5}))
    spec = load_prompt_spec(str(path))
    assert spec.name == "named"
    assert spec.render({"who": "Ada"}) == "Hi Ada"
    assert spec.top_p == 0.5


def test_missing_file_is_a_prompt_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PromptSpecError) as info:
        load_prompt_spec(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value) and "does not exist" in str(info.value)


def test_directory_is_a_prompt_spec_error(tmp_path: Path) -> None:
    with pytest.raises(PromptSpecError, match="cannot read"):
        load_prompt_spec(tmp_path)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", "name: x\nsystem: [unclosed\ntemperature: 0.1\n")
    with pytest.raises(PromptSpecError) as info:
        load_prompt_spec(path)
    assert str(path) in str(info.value)
    assert "not valid YAML" in str(info.value)
    assert info.value.line is not None and info.value.line >= 2


def test_json_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.json", '{\n  "name": "x",\n  "system": oops\n}')
    with pytest.raises(PromptSpecError) as info:
        load_prompt_spec(path)
    assert info.value.line == 3
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_wrong_field_type_names_file_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "system: hi\ntemperature: hot\n")
    with pytest.raises(PromptSpecError) as info:
        load_prompt_spec(path)
    assert info.value.field == "temperature"
    assert str(path) in str(info.value) and "'temperature'" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_every_bad_field_is_listed_and_nested_fields_are_dotted(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "max_tokens: 0\nstop: [1, [2]]\nsurprise: true\n")
    with pytest.raises(PromptSpecError) as info:
        load_prompt_spec(path)
    fields = [f for f, _ in info.value.errors]
    assert "max_tokens" in fields and "stop.1" in fields and "surprise" in fields


def test_not_a_mapping_or_empty(tmp_path: Path) -> None:
    with pytest.raises(PromptSpecError, match="got a list"):
        load_prompt_spec(_write(tmp_path, "l.yaml", "- a\n- b\n"))
    with pytest.raises(PromptSpecError, match="got an empty file"):
        load_prompt_spec(_write(tmp_path, "e.yaml", ""))


def test_template_syntax_error_in_spec_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml", "system: |\n  fine\n  {{ broken\n")
    with pytest.raises(TemplateError) as info:
        load_prompt_spec(path)
    assert str(path) in str(info.value)
    assert info.value.line == 2


# -- tokens and history -----------------------------------------------------


def test_approx_tokens() -> None:
    assert approx_tokens("") == 0
    assert approx_tokens("abcde") == 2
    assert approx_tokens(Message.user("a" * 40)) == 14
    call = Message.assistant(tool_calls=[ToolCall(id="c1", name="get", arguments='{"q": 1}')])
    assert approx_tokens(call) > approx_tokens(Message.assistant())
    image = Message(role="user", content=[ImagePart(url="https://x/y.png")])
    assert approx_tokens(image) >= 85


def _conversation() -> list[Message]:
    return [
        Message.system("sys"),
        Message.user("u1 " * 20),
        Message.assistant(tool_calls=[ToolCall(id="a", name="t", arguments="{}"), ToolCall(id="b", name="t")]),
        Message.tool("a", "result a " * 10),
        Message.tool("b", "result b " * 10),
        Message.assistant("answer one " * 5),
        Message.user("u2"),
        Message.assistant("answer two"),
    ]


def test_truncate_none_or_fitting_keeps_everything() -> None:
    history = _conversation()
    assert truncate_history(history, None) == history
    assert truncate_history(history, 10_000) == history


def test_truncate_drops_oldest_and_keeps_system() -> None:
    history = _conversation()
    count = {id(m): approx_tokens(m) for m in history}
    budget = count[id(history[0])] + sum(count[id(m)] for m in history[5:])
    out = truncate_history(history, budget)
    assert out == [history[0], *history[5:]]


def test_truncate_drops_tool_call_and_results_together() -> None:
    history = _conversation()
    # Budget that would fit the last tool result alone, but not its call: both must go.
    budget = sum(approx_tokens(m) for m in [history[0], *history[4:]])
    out = truncate_history(history, budget)
    assert all(m.role != "tool" for m in out)
    assert out == [history[0], *history[5:]]


def test_truncate_with_a_custom_counter() -> None:
    history = [Message.user("x"), Message.assistant("y"), Message.user("z")]
    assert truncate_history(history, 2, count_tokens=lambda m: 1) == history[1:]
    assert truncate_history(history, 0, count_tokens=lambda m: 1) == []


def test_truncate_keeps_system_messages_even_over_budget() -> None:
    history = [Message.system("s" * 400), Message.user("hi"), Message.system("late"), Message.user("there")]
    assert truncate_history(history, 1) == [history[0], history[2]]


def test_truncate_rejects_negative_budget() -> None:
    with pytest.raises(ConfigError):
        truncate_history([], -1)


_roles = st.sampled_from(["system", "user", "assistant", "assistant_call", "tool"])


def _message(kind: str, n: int) -> Message:
    text = "w" * n
    if kind == "assistant_call":
        return Message.assistant(tool_calls=[ToolCall(id=f"c{n}", name="t")])
    if kind == "tool":
        return Message.tool(f"c{n}", text)
    return Message(role=kind, content=[{"type": "text", "text": text}])  # type: ignore[arg-type, list-item]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_roles, st.integers(0, 80)), max_size=25), st.integers(0, 200))
def test_truncate_properties(spec: list[tuple[str, int]], budget: int) -> None:
    history = [_message(kind, n) for kind, n in spec]
    out = truncate_history(history, budget)
    positions = [next(i for i, m in enumerate(history) if m is o) for o in out]
    assert positions == sorted(positions)  # order kept, nothing invented
    assert [m for m in history if m.role == "system"] == [m for m in out if m.role == "system"]
    kept = set(positions)
    non_system = [p for p in range(len(history)) if history[p].role != "system"]
    dropped = [p for p in non_system if p not in kept]
    assert all(d < k for d in dropped for k in kept if history[k].role != "system")  # oldest dropped first
    fits = sum(approx_tokens(m) for m in out) <= budget
    assert fits or all(m.role == "system" for m in out)
    for i, m in enumerate(history):  # a tool-call message and the tool results right after it share one fate
        if m.role == "assistant" and m.tool_calls:
            j = i + 1
            while j < len(history) and history[j].role == "tool":
                assert (j in kept) == (i in kept)
                j += 1
