"""The incremental schema-aligned parser, on recorded model outputs: the sequence of partials, then the value."""

from __future__ import annotations

import enum
import itertools
import json
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from rxkit.structured import StreamingParser, parse


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Item(BaseModel):
    name: str
    qty: int
    color: Color | None = None


class Order(BaseModel):
    id: str
    items: list[Item]
    urgent: bool = False


class City(BaseModel):
    city: str
    country: str


def partials(text: str, target: object, size: int = 1, finish: bool = True) -> tuple[list[object], object]:
    """Feed ``text`` in chunks of ``size``; each changed partial (as a plain dump), then the final value."""
    parser = StreamingParser(target)
    seen: list[object] = []
    for i in range(0, len(text), size):
        if parser.feed(text[i : i + size]):
            value = parser.partial()
            seen.append(value.model_dump() if isinstance(value, BaseModel) else value)
    return seen, parser.finish() if finish else None


# Recorded (hand-transcribed) answers of real chat models asked for JSON.
FENCED_PROSE = (
    'Sure! Here is the city:\n```json\n{"city": "Paris", "country": "France"}\n```\nLet me know if you need more.'
)
TRUNCATED = '{"id": "A1", "items": [{"name": "apple", "qty": 3}, {"name": "pe'
WRONG_TYPES = "{'id': 7, items: {name: 'fig', qty: '5', color: ' Green '}, urgent: 'yes',}"
NESTED = """```
{
  "id": "B2", // the order id
  "items": [
    {"name": "kiwi", "qty": 1, "color": "RED"},
    {"name": "lime", "qty": 2},
  ],
  /* done */ "urgent": false
}
```"""


def test_fences_and_prose_partials_in_text_order() -> None:
    seen, final = partials(FENCED_PROSE, City, size=4)
    assert final == City(city="Paris", country="France")
    assert seen == [
        {"city": None, "country": None},  # the object opened (the prose and the fence are skipped)
        {"city": "Pa", "country": None},
        {"city": "Paris", "country": None},
        {"city": "Paris", "country": "Fr"},
        {"city": "Paris", "country": "France"},  # the closing fence and the prose after it change nothing
    ]


def test_strings_stream_but_numbers_and_enums_show_only_when_complete() -> None:
    text = '{"name": "fig", "qty": 1234, "color": "green"}'
    seen, final = partials(text, Item, size=1)
    assert final == Item(name="fig", qty=1234, color=Color.GREEN)
    qtys = {s["qty"] for s in seen}
    assert qtys == {None, 1234}  # never 1, 12 or 123
    colors = {s["color"] for s in seen}
    assert colors == {None, Color.GREEN}  # never "gr"
    names = [s["name"] for s in seen if s["name"] is not None]
    assert names[:4] == ["", "f", "fi", "fig"]
    assert len(seen) == len({json.dumps(s, default=str) for s in seen})  # no partial repeats the previous one


def test_truncated_output_keeps_what_is_complete() -> None:
    seen, _ = partials(TRUNCATED, Order, size=5, finish=False)
    none = {"name": None, "qty": None, "color": None}
    apple = {"name": "apple", "qty": 3, "color": None}
    assert seen == [
        {"id": None, "items": None, "urgent": False},
        {"id": "A1", "items": None, "urgent": False},
        {"id": "A1", "items": [none], "urgent": False},
        {"id": "A1", "items": [{**none, "name": "ap"}], "urgent": False},
        {"id": "A1", "items": [{**none, "name": "apple"}], "urgent": False},
        {"id": "A1", "items": [apple], "urgent": False},  # qty shows once "3" is complete
        {"id": "A1", "items": [apple, none], "urgent": False},
        {"id": "A1", "items": [apple, {**none, "name": "pe"}], "urgent": False},  # where the output was cut
    ]
    with pytest.raises(ValidationError) as caught:  # the cut-off item has no qty
        parse(TRUNCATED, Order)
    assert caught.value.errors()[0]["loc"] == ("items", 1, "qty")


def test_wrong_but_coercible_types() -> None:
    order = parse(WRONG_TYPES, Order)
    assert order == Order(id="7", items=[Item(name="fig", qty=5, color=Color.GREEN)], urgent=True)


def test_nested_lists_of_objects_with_comments_and_trailing_commas() -> None:
    seen, final = partials(NESTED, Order, size=3)
    assert final == Order(id="B2", items=[Item(name="kiwi", qty=1, color=Color.RED), Item(name="lime", qty=2)])
    none = {"name": None, "qty": None, "color": None}
    kiwi = {"name": "kiwi", "qty": 1, "color": Color.RED}
    items = [s["items"] for s in seen]
    assert [s["id"] for s in seen[:3]] == [None, "", "B2"]
    assert items[3:] == [
        [],
        [none],
        [{**none, "name": ""}],
        [{**none, "name": "kiw"}],
        [{**none, "name": "kiwi"}],
        [{**none, "name": "kiwi", "qty": 1}],
        [kiwi],  # the enum "RED" shows once complete, as Color.RED
        [kiwi, none],
        [kiwi, {**none, "name": ""}],
        [kiwi, {**none, "name": "lim"}],
        [kiwi, {**none, "name": "lime"}],
        [kiwi, {**none, "name": "lime", "qty": 2}],
        [kiwi, {**none, "name": "lime", "qty": 2}],  # "urgent": false, the same as its default
    ]


def test_unquoted_keys_single_quotes_and_aliases() -> None:
    class Person(BaseModel):
        full_name: str = Field(alias="fullName")
        age: int

    assert parse("{'Full Name': 'Ada', AGE: 36}", Person).full_name == "Ada"
    assert parse('{"fullName": "Ada", "age": "36"}', Person).age == 36


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ("```\n42\n```", int, 42),
        ("The answer is GREEN.", Color, Color.GREEN),
        ('"Paris"', str, "Paris"),
        ("  spaced  ", Literal["spaced", "other"], "spaced"),
        ('{"a": 1}', list[dict[str, int]], [{"a": 1}]),
        ("[3]", int, 3),
        ("[1, 2, 3,]", list[int], [1, 2, 3]),
        ('{"x": "1,250.5"}', dict[str, float], {"x": 1250.5}),
        ("{x: null, y: True}", dict[str, bool | None], {"x": None, "y": True}),
        ("[null /* none */, 2024/01/05, 7 // seven\n]", list, [None, "2024/01/05", 7]),
    ],
)
def test_alignment_table(text: str, target: object, expected: object) -> None:
    assert parse(text, target) == expected


def test_nothing_parseable_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        parse("I cannot help with that.", City)


# -- linear cost ------------------------------------------------------------


def long_answer(items: int) -> str:
    rows = ", ".join(
        f'{{"name": "item number {i} with a longer name", "qty": {i}, "color": "red"}}' for i in range(items)
    )
    return f'```json\n{{"id": "X", "items": [{rows}], "urgent": true}}\n```'


def work(text: str) -> int:
    parser = StreamingParser(Order)
    for i in range(0, len(text), 4):  # about one token
        parser.feed(text[i : i + 4])
        parser.partial()
    assert len(parser.finish().items) > 0
    return parser.steps


def test_work_grows_linearly_with_the_output() -> None:
    small, large = long_answer(20), long_answer(200)
    ratio = work(large) / work(small)
    length_ratio = len(large) / len(small)
    # re-parsing the prefix at every token would make this ratio ~length_ratio² (~100)
    assert ratio < length_ratio * 1.2
    assert work(large) < len(large)  # string bodies are skipped in one search, not per character


# -- properties --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=json_values, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_json_in_any_chunks_parses_to_itself(value: object, cuts: list[int]) -> None:
    text = json.dumps({"v": value}, ensure_ascii=bool(cuts and cuts[0] % 2))
    points = sorted({c % (len(text) + 1) for c in cuts})
    parser = StreamingParser(dict)
    start = 0
    for point in [*points, len(text)]:
        parser.feed(text[start:point])
        start = point
    assert parser.finish() == {"v": value}


@settings(max_examples=100, deadline=None)
@given(names=st.lists(st.text(alphabet='abcdefgh é"\\', max_size=10), min_size=1, max_size=4), size=st.integers(1, 7))
def test_partials_only_grow(names: list[str], size: int) -> None:
    text = json.dumps({"id": "o", "items": [{"name": n, "qty": i} for i, n in enumerate(names)]})
    seen, final = partials(text, Order, size=size)
    assert [i.name for i in final.items] == names
    for before, after in itertools.pairwise(seen):  # each partial extends the previous one
        a, b = before["items"] or [], after["items"] or []
        assert len(b) >= len(a)
        for x, y in zip(a, b, strict=False):
            assert (y["name"] or "").startswith(x["name"] or "")
            assert x["qty"] is None or x["qty"] == y["qty"]


def test_partial_models_are_what_model_construct_builds() -> None:
    """Partials skip model_construct for speed (B7); this fails loudly if a pydantic upgrade changes what it sets."""
    parser = StreamingParser(Item)
    parser.feed('{"name": "fig", "qty": 2')
    fast = parser.partial()
    slow = Item.model_construct(_fields_set={"name"}, name="fig", qty=None, color=None)
    assert type(fast) is Item
    assert fast.__dict__ == slow.__dict__
    assert fast.model_fields_set == slow.model_fields_set == {"name"}
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    assert fast == slow and fast.model_dump() == slow.model_dump()

    class Private(BaseModel):
        name: str
        _cache: int = 0

    private = StreamingParser(Private)
    private.feed('{"name": "x"')
    assert private.partial()._cache == 0  # not plain: built by model_construct


def loosen(value: object, draw_flags: list[bool]) -> str:
    """``value`` as a sloppy model might write it: trailing commas, comments, unquoted keys (flags choose where)."""
    flags = iter(draw_flags * 50)

    def write(v: object) -> str:
        if isinstance(v, dict):
            items = []
            for k, x in v.items():
                key = k if k.isidentifier() and next(flags, False) else json.dumps(k)
                items.append(f"{key}: {write(x)}")
            tail = "," if next(flags, False) and items else ""
            comment = " // note\n" if next(flags, False) else " "
            return "{" + comment + ", ".join(items) + tail + "}"
        if isinstance(v, list):
            tail = "," if next(flags, False) and v else ""
            return "[" + ", ".join(write(x) for x in v) + tail + " /* end */]"
        return json.dumps(v)

    return write(value)


@settings(max_examples=150, deadline=None)
@given(value=json_values, flags=st.lists(st.booleans(), min_size=1, max_size=6), size=st.integers(1, 9))
def test_sloppy_json_in_any_chunking_parses_to_the_value(value: object, flags: list[bool], size: int) -> None:
    text = "Here it is:\n```json\n" + loosen({"v": value}, flags) + "\n```\nDone."
    parser = StreamingParser(dict)
    for i in range(0, len(text), size):
        parser.feed(text[i : i + size])
    assert parser.finish() == {"v": value}


def test_a_parser_type_may_still_be_written_with_its_target_as_when_it_was_generic() -> None:
    class Point(BaseModel):
        x: int

    typed: Any = StreamingParser[Point]  # annotations and aliases written for the generic class keep working
    assert typed is StreamingParser
    parser = typed(Point)
    parser.feed('{"x": "3"}')
    assert parser.finish() == Point(x=3)
