"""Validators: streaming and final checks."""

from __future__ import annotations

import doctest
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import rxkit.validation
from rxkit.errors import ConfigError
from rxkit.validation import (
    BannedWords,
    JSONSchema,
    MaxLength,
    Regex,
    RunningText,
    Validator,
    ValidJSON,
    as_validators,
    validator,
)


def test_doctests() -> None:
    assert doctest.testmod(rxkit.validation).failed == 0


def stream(v: Validator, deltas: list[str]) -> tuple[int, str] | None:
    """Feed deltas to ``v.check_chunk``; the index and reason of the first rejection."""
    text = RunningText()
    for i, delta in enumerate(deltas):
        text.append(delta)
        reason = v.check_chunk(delta, text)
        if reason is not None:
            return i, reason
    return None


class NoWholeText(RunningText):
    """A running text that fails the test if a chunk check asks for all of it."""

    def __str__(self) -> str:
        raise AssertionError("a chunk check materialised the whole running text")


# -- running text ---------------------------------------------------------


def test_running_text_tail_and_whole() -> None:
    t = RunningText()
    assert (len(t), str(t), t.tail(3)) == (0, "", "")
    for part in ["ab", "", "cde", "f", "ghij"]:
        t.append(part)
    assert len(t) == 10
    tails = [t.tail(n) for n in (0, 1, 4, 5, 7, 10, 50)]
    assert tails == ["", "j", "ghij", "fghij", "defghij", "abcdefghij", "abcdefghij"]
    assert str(t) == "abcdefghij" and str(t) == "abcdefghij"
    t.append("k")
    assert t.tail(2) == "jk" and str(t) == "abcdefghijk"
    t.clear()
    assert (len(t), str(t)) == (0, "")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.text(max_size=12)),
            st.tuples(st.just("tail"), st.integers(0, 60)),
            st.tuples(st.just("str"), st.none()),
            st.tuples(st.just("clear"), st.none()),
        ),
        max_size=60,
    )
)
def test_running_text_matches_a_plain_string(steps: list[tuple[str, object]]) -> None:
    t, ref = RunningText(), ""
    for op, arg in steps:
        if op == "append":
            assert isinstance(arg, str)
            t.append(arg)
            ref += arg
        elif op == "tail":
            assert isinstance(arg, int)
            expected = ref[max(0, len(ref) - arg) :] if arg else ""
            assert t.tail(arg) == expected
        elif op == "str":
            assert str(t) == ref
        else:
            t.clear()
            ref = ""
        assert len(t) == len(ref)


# -- banned words ---------------------------------------------------------


def test_banned_words_final_is_case_insensitive_with_word_boundaries() -> None:
    v = BannedWords(["darn", "heck no"])
    assert v.check_final("Oh DARN.") == "contains the banned word 'DARN'"
    assert v.check_final("darn") is not None
    assert v.check_final("well, Heck No!") is not None
    assert v.check_final("darned darnit undarn") is None
    assert v.check_final("heck nope") is None
    assert v.streaming


def test_banned_word_split_across_deltas_is_caught_when_confirmed() -> None:
    v = BannedWords(["darn"])
    assert stream(v, ["oh d", "ar", "n", "!", " more"]) == (3, "contains the banned word 'darn'")
    assert stream(v, ["oh d", "ar", "n", "ed it"]) is None  # "darned" is not "darn"
    assert stream(v, ["oh darn"]) is None  # not yet certain: it could become "darned"
    assert v.check_final("oh darn") is not None  # ...the final check settles it


def test_banned_word_inside_a_long_delta_and_after_a_word_prefix() -> None:
    v = BannedWords(["bad"])
    assert stream(v, ["x" * 300 + " bad " + "y" * 300]) is not None
    assert stream(v, ["x" * 300, "bad thing"]) is None  # "xxx...bad" is one word
    assert stream(v, ["x" * 300, " bad thing"]) is not None
    # The window starts right at "bad" here: the character before it ("x") must still count.
    assert stream(v, ["xbad.", "zz"]) is None


def test_banned_words_chunk_check_only_reads_the_tail() -> None:
    v = BannedWords(["darn"])
    text = NoWholeText()
    for _ in range(1000):
        text.append("fine words ")
        assert v.check_chunk("fine words ", text) is None


def test_banned_words_needs_words() -> None:
    with pytest.raises(ConfigError):
        BannedWords([])
    with pytest.raises(ConfigError):
        BannedWords(["ok", "  "])


_alphabet = st.sampled_from(list("ab d.\n"))
_pieces = st.sampled_from(["bad", "ba", "d", "a", "b", " ", ".", "\n", "a d", "d.d", "x"])


@st.composite
def _split_text(draw: st.DrawFn) -> list[str]:
    # Built from pieces that often form the banned words and patterns, then cut anywhere.
    text = "".join(draw(st.lists(_pieces, max_size=12)))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(_split_text(), st.text(_alphabet, max_size=5))
def test_banned_words_streaming_agrees_with_final(deltas: list[str], continuation: str) -> None:
    v = BannedWords(["bad", "a d"])
    hit = stream(v, deltas)
    text = "".join(deltas)
    if hit is not None:  # no false alarm: whatever follows, the whole text is rejected
        assert v.check_final(text + continuation) is not None
    if v.check_final(text + ".") is not None:  # nothing missed once a non-word character follows
        assert stream(v, [*deltas, "."]) is not None


# -- max length -----------------------------------------------------------


def test_max_length() -> None:
    v = MaxLength(5)
    assert stream(v, ["abc", "de"]) is None
    assert stream(v, ["abc", "de", "f"]) == (2, "longer than 5 characters")
    assert v.check_final("abcde") is None and v.check_final("abcdef") is not None
    with pytest.raises(ConfigError):
        MaxLength(-1)


# -- regex ----------------------------------------------------------------


def test_regex_must_match_is_final_only() -> None:
    v = Regex(must_match=r"^\{.*\}$", flags=re.S)
    assert not v.streaming
    assert stream(v, ["no braces"]) is None
    assert v.check_final("{}") is None
    assert v.check_final("nope") == "does not match the required pattern '^\\\\{.*\\\\}$'"


def test_regex_must_not_match_aborts_at_once_for_a_greedy_pattern() -> None:
    v = Regex(must_not_match=r"password: \S+")
    assert v.streaming
    assert stream(v, ["your password", ": hun", "ter2"]) == (1, "matches the forbidden pattern 'password: \\\\S+'")


def test_regex_must_not_match_waits_while_a_match_could_still_vanish() -> None:
    v = Regex(must_not_match=r"\bfoo\b")
    assert stream(v, ["a foo"]) is None  # could become "food"
    assert stream(v, ["a foo", "d is good"]) is None
    assert stream(v, ["a foo", " bar"]) == (1, "matches the forbidden pattern '\\\\bfoo\\\\b'")
    assert v.check_final("a foo") is not None


def test_regex_window_does_not_fake_a_start_anchor() -> None:
    v = Regex(must_not_match=r"^secret", window=8)
    assert stream(v, ["x" * 50, "secret stuff"]) is None
    assert stream(v, ["x" * 50 + "secretabc", " and more"]) is None  # the window starts right at "secret"
    assert stream(v, ["secret stuff"]) is not None


def test_regex_chunk_check_only_reads_the_tail() -> None:
    v = Regex(must_not_match=r"forbidden")
    text = NoWholeText()
    for _ in range(1000):
        text.append("harmless ")
        assert v.check_chunk("harmless ", text) is None


def test_regex_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs must_match or must_not_match"):
        Regex()
    with pytest.raises(ConfigError, match="invalid regular expression"):
        Regex(must_match="(unclosed")
    assert Regex(must_not_match=re.compile("x", re.I)).check_final("X") is not None


@settings(max_examples=300, deadline=None)
@given(_split_text(), st.text(_alphabet, max_size=5))
def test_regex_streaming_never_rejects_text_the_final_check_accepts(deltas: list[str], continuation: str) -> None:
    v = Regex(must_not_match=r"\bb+a\b|d\.d")
    if stream(v, deltas) is not None:
        assert v.check_final("".join(deltas) + continuation) is not None


# -- JSON -----------------------------------------------------------------


def test_valid_json() -> None:
    v = ValidJSON()
    assert not v.streaming
    assert v.check_final('{"a": [1, 2]}') is None
    assert v.check_final('{"a": [1, 2}') == "not valid JSON: Expecting ',' delimiter (line 1, column 12)"
    assert v.check_final("") is not None


def test_json_schema() -> None:
    v = JSONSchema({"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]})
    assert v.check_final('{"age": 3}') is None
    assert v.check_final('{"age": "3"}') == "does not match the schema at $.age: '3' is not of type 'integer'"
    assert v.check_final("{}") == "does not match the schema at $: 'age' is a required property"
    assert v.check_final("{") is not None and "not valid JSON" in (v.check_final("{") or "")


def test_json_schema_is_checked_when_built() -> None:
    with pytest.raises(ConfigError, match="invalid JSON schema"):
        JSONSchema({"type": "nonsense"})
    with pytest.raises(ConfigError, match="invalid JSON schema"):
        JSONSchema({"properties": {"a": {"minimum": "zero"}}})
    with pytest.raises(ConfigError, match="must be an object"):
        JSONSchema("not a schema")  # type: ignore[arg-type]


def test_json_schema_from_pydantic_model() -> None:
    class Point(BaseModel):
        x: int
        y: int

    v = JSONSchema.from_model(Point)
    assert v.name == "json_schema:Point"
    assert v.check_final('{"x": 1, "y": 2}') is None
    assert v.check_final('{"x": 1}') is not None


# -- custom validators ------------------------------------------------------


def test_function_validator() -> None:
    def no_questions(text: str) -> bool:
        return "?" not in text

    v = validator(no_questions)
    assert v.name == "no_questions" and not v.streaming
    assert v.check_final("fine") is None
    assert v.check_final("why?") == "rejected by no_questions"
    reasons = validator(lambda t: None if t else "empty")
    assert reasons.name == "validator"
    assert reasons.check_final("") == "empty" and reasons.check_final("x") is None


def test_subclass_with_a_streaming_hook() -> None:
    class NoDigits(Validator):
        name = "no_digits"

        def check_chunk(self, delta: str, text: RunningText) -> str | None:
            return "has a digit" if any(c.isdigit() for c in delta) else None

    assert NoDigits().streaming and not Validator().streaming
    assert stream(NoDigits(), ["a", "b1"]) == (1, "has a digit")


def test_as_validators_rejects_classes_and_other_things() -> None:
    assert as_validators([MaxLength(1)], "s")[0].name == "max_length"
    with pytest.raises(ConfigError, match="validator instances"):
        as_validators([MaxLength], "s")
    with pytest.raises(ConfigError):
        as_validators(["banned"], "s")
