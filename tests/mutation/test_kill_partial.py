"""Pins down rxkit.structured's partial values and schema alignment where mutation testing found them loose.

Issue 18, for ``rxkit.structured._partial`` and ``rxkit.structured._align``.
Public behaviour only: ``StreamingParser`` (``feed``, ``partial``, ``value``:
the aligned data before validation, ``finish``) and ``parse``. Values are
compared with their types (``7`` and ``7.0``, ``1`` and ``True`` are equal in
Python but not the same partial).
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ValidationError

from rxkit.structured import StreamingParser, parse


class Color(enum.Enum):
    RED = "red"
    LIGHT_GREEN = "light green"
    BLUE = "blue"
    DARK = "black"  # named apart from its value


class Row(BaseModel):
    """One field per kind of position alignment knows."""

    i: int | None = None
    f: float | None = None
    s: str | None = None
    b: bool | None = None
    c: Color | None = None
    lit: Literal["a-b", "c", "x"] | None = None
    tags: list[str] | None = None
    nums: list[int] | None = None
    bag: list | None = None  # type: ignore[type-arg]  # a list of anything
    either: int | str | None = None
    flag: int | bool | None = None
    many: list[int] | int | None = None
    listy: list[int] | bool | None = None
    counts: dict[str, int] | None = None


def aligned(text: str) -> Any:
    """What the parser made of ``text`` for ``Row`` before validation, the field values with their types."""
    parser: StreamingParser[Any] = StreamingParser(Row)
    parser.feed(text)
    value = parser.value()
    return {k: (v, type(v)) for k, v in value.items()}


# -- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{i: "50 %"}', 50),  # a percent sign after the number
        ('{i: " 42 "}', 42),
        ('{i: "1_000"}', 1000),
        ('{i: "1__000"}', 1000),  # underscores dropped (int() alone takes single ones only)
        ('{i: "1,200"}', 1200),
        ('{i: "+4"}', 4),
        ("{i: -3}", -3),
        ('{i: "5.0"}', 5),  # a whole float for an int: the int
        ('{i: "3e2"}', 300),
        ("{i: 1e3}", 1000),
        ("{i: [7]}", 7),  # one value, in a list
        ('{i: "5.5"}', 5.5),  # not whole: left as a float for validation to report
        ('{i: ","}', ","),  # no digit: not a number
        ('{i: "12abc"}', "12abc"),
        ('{i: "5X"}', "5X"),
        ("{i: true}", True),  # a boolean is not a number
        ("{i: null}", None),
        ("{i: NULL}", None),
        ("{i: nil}", None),
        ('{f: "1,200.5"}', 1200.5),
        ("{f: 7}", 7.0),
        ('{f: "7"}', 7.0),
        ('{f: ".5"}', 0.5),
        ('{f: "-2.5e1"}', -25.0),
    ],
)
def test_numbers_are_read_from_what_models_write(text: str, expected: Any) -> None:
    (key,) = aligned(text)
    assert aligned(text)[key] == (expected, type(expected))


def test_a_number_that_is_not_whole_fails_validation_for_an_int() -> None:
    with pytest.raises(ValidationError):
        parse('{i: "5.5"}', Row)
    assert parse('{i: "5.0", f: "2"}', Row) == Row(i=5, f=2.0)


# -- strings, booleans, choices ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{s: 5}", "5"),
        ("{s: 2.5}", "2.5"),
        ("{s: true}", "true"),
        ("{s: false}", "false"),
        ('{s: ["x"]}', "x"),
        ("{s: hello}", "hello"),
        ("{s: 0x10}", "0x10"),
        ('{b: " Yes "}', True),
        ('{b: "y"}', True),
        ('{b: "1"}', True),
        ('{b: "TRUE"}', True),
        ('{b: "n"}', False),
        ('{b: "No"}', False),
        ('{b: "0"}', False),
        ('{b: "false"}', False),
        ("{b: True}", True),
        ('{b: "maybe"}', "maybe"),  # left for validation to report
        ("{b: 1}", 1),
        ("{c: \" 'Light-Green' \"}", "light green"),  # by value, any case, spaces and dashes, quoted
        ('{c: "RED"}', "red"),
        ('{c: "LIGHT_GREEN"}', "light green"),  # by name
        ('{c: "pink"}', "pink"),
        ('{lit: "A B"}', "a-b"),
        ('{lit: " c "}', "c"),
        ('{lit: "X"}', "x"),
    ],
)
def test_scalars_are_coerced_to_the_field_type(text: str, expected: Any) -> None:
    (key,) = aligned(text)
    assert aligned(text)[key] == (expected, type(expected))


def test_a_dict_where_a_string_is_expected_is_left_for_validation() -> None:
    assert aligned('{s: {"a": 1}}')["s"] == ({"a": 1}, dict)
    with pytest.raises(ValidationError):
        parse('{s: {"a": 1}}', Row)


def test_enum_members_show_in_partials_and_unknown_values_as_written() -> None:
    parser: StreamingParser[Any] = StreamingParser(Row)
    parser.feed('{c: "Light Green", s: "x"')
    assert parser.partial().c is Color.LIGHT_GREEN
    unknown: StreamingParser[Any] = StreamingParser(Row)
    unknown.feed('{c: "pink", s: "x"')
    assert unknown.partial().c == "pink"


# -- lists and unions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{tags: "a"}', ["a"]),  # one value where a list is expected
        ('{tags: ["a"]}', ["a"]),
        ('{nums: "5"}', [5]),  # ... aligned to the item type
        ("{nums: 5}", [5]),
        ("{bag: 3}", [3]),
        ('{bag: "3"}', ["3"]),
        ('{either: "5"}', "5"),  # an arm takes it as it is (str): kept
        ("{either: 5}", 5),
        ('{flag: "yes"}', True),  # no arm takes it as it is: the first that coerces it (int cannot, bool can)
        ("{flag: 1}", 1),
        ('{many: "5"}', [5]),
        ("{many: [5]}", [5]),
        ("{many: 5}", 5),
        ('{listy: "yes"}', True),  # list[int] coerces it to ["yes"], which does not validate: the next arm
        ('{counts: [{"a": 1}]}', {"a": 1}),
    ],
)
def test_lists_and_unions(text: str, expected: Any) -> None:
    (key,) = aligned(text)
    assert aligned(text)[key] == (expected, type(expected))


def test_unions_validate_to_the_coerced_arm() -> None:
    assert parse('{flag: "yes", many: "5", either: "5", listy: "no"}', Row) == Row(
        flag=True, many=[5], either="5", listy=False
    )


# -- whole answers for scalar types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ('```\n"hi there"\n```', str, "hi there"),
        ('"a\\nb"', str, "a\nb"),  # a JSON string: decoded
        ('"broken', str, '"broken'),
        ('"a" and "b"', str, '"a" and "b"'),  # quoted at both ends but not one JSON string
        ('"', str, '"'),
        ('""', str, ""),
        ("", str, ""),
        ("  plain words  ", str, "plain words"),
        ("```json\n7\n```", int, 7),
        ("[5]", int, 5),  # one value, in a list
        ("[true]", bool, True),
        ("42 apples", int, 42),
        ("3.5 or so", float, 3.5),  # not JSON: the first word, as a bare value
        ("TRUE", bool, True),
        ("yes", bool, True),
        ("The answer is RED.", Color, Color.RED),
        ("light green", Color, Color.LIGHT_GREEN),
        ("Dark, as in black.", Color, Color.DARK),  # its name and its value: one category
        ("'c'", Literal["a-b", "c"], "c"),
        ("I pick c, definitely", Literal["a-b", "c"], "c"),
        ("Option X.", Literal["a-b", "c", "x"], "x"),
    ],
)
def test_whole_answers_for_scalar_types(text: str, target: Any, expected: Any) -> None:
    value = parse(text, target)
    assert (value, type(value)) == (expected, type(expected))


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("red or blue", Color),  # two categories named: no guess
        ("none of them", Color),
        ("", int),
        ("   ", int),
    ],
)
def test_whole_answers_that_name_no_single_value_fail(text: str, target: Any) -> None:
    with pytest.raises(ValidationError):
        parse(text, target)


# -- partial values: what each shows, and what later tokens leave alone ------------------------------


class Line(BaseModel):
    name: str
    qty: int


class Cart(BaseModel):
    id: str
    lines: list[Line]


class Note(BaseModel):
    text: str


class Secret(BaseModel):
    """Not a plain model (a private attribute): its partials come from ``model_construct``."""

    name: str
    qty: int = 0
    _seen: int = 0


def test_the_field_a_string_streams_into_counts_as_set() -> None:
    parser: StreamingParser[Any] = StreamingParser(Line)
    parser.feed('{"name": "fi')
    partial = parser.partial()
    assert (partial.name, partial.qty) == ("fi", None)
    assert partial.model_fields_set == {"name"}


def test_an_object_read_in_one_chunk_shows_the_fields_it_set() -> None:
    parser: StreamingParser[Any] = StreamingParser(Cart)
    parser.feed('{"id": "c", "lines": [{"name": "a", "qty": 1}], "extra": 1')  # no partial before the item closed
    line = parser.partial().lines[0]
    assert (line.name, line.qty) == ("a", 1)
    assert line.model_fields_set == {"name", "qty"}


def test_a_finished_item_is_the_same_object_in_later_partials() -> None:
    parser: StreamingParser[Any] = StreamingParser(Cart)
    parser.feed('{"id": "c", "lines": [{"name": "a", "qty": 1,')  # the item's values are complete, it is open
    first = parser.partial().lines[0]
    parser.feed('}, {"name": "b"')
    later = parser.partial()
    assert later.lines[0] is first  # shared, not built again
    assert [line.name for line in later.lines] == ["a", "b"]


def test_a_partial_is_a_snapshot_that_later_tokens_leave_alone() -> None:
    parser: StreamingParser[Any] = StreamingParser(Cart)
    parser.feed('{"id": "c", "lines": [{"name": "a", "qty": 1}')
    before = parser.partial()
    assert [line.name for line in before.lines] == ["a"]
    parser.feed(', {"name": "b", "qty": 2}]}')
    assert [line.name for line in before.lines] == ["a"]
    assert [line.name for line in parser.partial().lines] == ["a", "b"]


def test_a_list_where_one_string_was_expected_streams_its_only_item() -> None:
    parser: StreamingParser[Any] = StreamingParser(Note)
    parser.feed('{"text": ["hel')
    assert parser.partial().text == "hel"
    parser.feed('lo"]}')
    assert parser.finish() == Note(text="hello")


def test_a_model_that_is_not_plain_gets_what_model_construct_builds() -> None:
    parser: StreamingParser[Any] = StreamingParser(Secret)
    parser.feed('{"name": "fi')
    partial = parser.partial()
    assert type(partial) is Secret
    assert (partial.name, partial.qty, partial._seen) == ("fi", 0, 0)
    assert partial.model_fields_set == {"name"}
    parser.feed('g", "qty": 2,')
    done = parser.partial()
    assert (done.name, done.qty) == ("fig", 2)
    assert done.model_fields_set == {"name", "qty"}
