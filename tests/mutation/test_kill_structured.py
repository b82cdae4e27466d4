"""Pins down rxkit.structured's parser where mutation testing found it loose (issue 18).

Recorded-looking model outputs, fed a character at a time as the slowest
stream would: the sequence of partial values a caller sees (``feed`` says
True, then ``partial()``), then the final value. Public behaviour only:
``feed``, ``partial``, ``finish``, ``value``, ``text`` and ``parse``.
"""

from __future__ import annotations

import enum
import itertools
from typing import Annotated, Any, Union

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rxkit.structured import Shape, StreamingParser, parse


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Item(BaseModel):
    name: str
    qty: int


class Tagged(BaseModel):
    name: str
    color: Color | None = None


def shown(value: Any) -> Any:
    """A partial as plain data: models as their fields' dict (recursively)."""
    if isinstance(value, BaseModel):
        return {k: shown(v) for k, v in value.__dict__.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    return value


def partials(text: str, target: Any, size: int = 1) -> tuple[list[Any], StreamingParser]:
    """Each partial a caller sees, chunk by chunk, and the parser (to finish)."""
    parser: StreamingParser = StreamingParser(target)
    seen = []
    for i in range(0, len(text), size):
        if parser.feed(text[i : i + size]):
            seen.append(shown(parser.partial()))
    return seen, parser


# -- scalar targets: the answer is the whole text ---------------------------------------------


def test_a_string_answer_streams_as_the_text_so_far() -> None:
    seen, parser = partials("Paris is the capital.", str, size=6)
    assert seen == ["Paris ", "Paris is the", "Paris is the capit", "Paris is the capital."]
    assert parser.finish() == "Paris is the capital."


def test_a_number_answer_shows_nothing_until_it_is_complete() -> None:
    seen, parser = partials("```\n42\n```", int)
    assert seen == []
    assert parser.partial() is None
    assert parser.finish() == 42


def test_before_the_value_opens_the_partial_is_none() -> None:
    parser = StreamingParser(Item)
    assert parser.feed("Sure! Here is the item you asked for: ") is False
    assert parser.partial() is None


# -- strings: escapes ------------------------------------------------------------------------


def test_a_lone_surrogate_escape_becomes_the_replacement_character() -> None:
    # a model cut a \\ud83d\\ude00 pair in half; the half left must not fail the parse
    assert parse('{"name": "smile \\ud83d please", "qty": 1}', Item).name == "smile \ufffd please"
    assert parse('{"name": "\\ud83d\\ude00 ok", "qty": 1}', Item).name == "\U0001f600 ok"


def test_escapes_in_a_streamed_string() -> None:
    seen, parser = partials('{"name": "say \\"hi\\"\\n\\tnow", "qty": 1}', Item)
    names = [s["name"] for s in seen if s["name"]]
    assert names[:9] == ["s", "sa", "say", "say ", 'say "', 'say "h', 'say "hi', 'say "hi"', 'say "hi"\n']  # fmt: skip
    assert names[9:] == ['say "hi"\n\t', 'say "hi"\n\tn', 'say "hi"\n\tno', 'say "hi"\n\tnow', 'say "hi"\n\tnow']
    assert parser.finish().name == 'say "hi"\n\tnow'


# -- objects: keys the model invents -------------------------------------------------------------


REASONING = '{"reasoning": "the user wants fruit", "name": "fig", "qty": 2}'


def test_unknown_keys_are_neither_shown_nor_kept() -> None:
    seen, parser = partials(REASONING, Item)
    assert all(set(s) == {"name", "qty"} for s in seen)  # "reasoning" never appears in a partial
    assert seen[-1] == {"name": "fig", "qty": 2}
    final = parser.finish()
    assert final == Item(name="fig", qty=2) and not hasattr(final, "reasoning")


def test_a_dict_target_shows_its_keys_as_they_come() -> None:
    seen, parser = partials('{"a": 1, "b": "xy"}', dict[str, Any])
    assert seen == [{}, {"a": 1}, {"a": 1, "b": ""}, {"a": 1, "b": "x"}, {"a": 1, "b": "xy"}]
    assert parser.finish() == {"a": 1, "b": "xy"}


# -- values that do not fit ----------------------------------------------------------------------


def test_a_value_that_does_not_fit_shows_as_written_once_complete_and_fails_validation() -> None:
    seen, parser = partials('{"name": "fig", "qty": "a few"}', Item)
    assert seen[-2:] == [{"name": "fig", "qty": None}, {"name": "fig", "qty": "a few"}]
    with pytest.raises(ValidationError) as caught:
        parser.finish()
    assert caught.value.errors()[0]["loc"] == ("qty",)


# -- lists where one value was expected, and the other way round ------------------------------


def test_a_one_item_list_where_one_value_was_expected_is_that_value() -> None:
    seen, parser = partials('{"name": ["fig"], "qty": [5]}', Item)
    assert seen[-1] == {"name": "fig", "qty": 5}
    assert parser.finish() == Item(name="fig", qty=5)
    seen, parser = partials('{"name": ["fig", "kiwi"], "qty": 5}', Item)
    assert seen[-1] == {"name": ["fig", "kiwi"], "qty": 5}  # two values for one: left as written...
    with pytest.raises(ValidationError):  # ... for validation to refuse
        parser.finish()


# -- unions: an object or a list opens as the one arm it can be ---------------------------------


class Answer(BaseModel):
    result: Item | list[Item] | str


def test_an_object_in_a_union_streams_as_its_one_model_arm() -> None:
    parser: StreamingParser = StreamingParser(Answer)
    types = []
    for c in '{"result": {"name": "fig", "qty": 2}}':
        if parser.feed(c) and parser.partial().result is not None:
            types.append(type(parser.partial().result))
    assert types and set(types) == {Item}  # a partial Item from its "{" on, never a dict or a list
    assert parser.finish() == Answer(result=Item(name="fig", qty=2))


def test_a_list_in_a_union_streams_as_its_one_list_arm() -> None:
    seen, parser = partials('{"result": [{"name": "fig", "qty": 2}]}', Answer)
    assert seen[1:3] == [{"result": []}, {"result": [{"name": None, "qty": None}]}]
    assert parser.finish() == Answer(result=[Item(name="fig", qty=2)])


class Either(BaseModel):
    value: Item | Tagged | list[int] | int


def test_an_object_that_could_be_two_models_streams_as_plain_data_and_validates_as_one() -> None:
    seen, parser = partials('{"value": {"name": "fig", "color": "red"}}', Either)
    assert seen[1:3] == [{"value": {}}, {"value": {"name": ""}}]  # which model it is shows only at the end
    assert parser.finish() == Either(value=Tagged(name="fig", color=Color.RED))
    assert parse('{"value": [5]}', Either) == Either(value=[5])  # one list arm: [5] stays a list


class Scores(BaseModel):
    scores: dict[str, int] | list[int] | str


def test_an_object_in_a_union_with_a_dict_arm_aligns_its_values_as_they_come() -> None:
    seen, parser = partials('{"scores": {"math": "5", "art": "4"}}', Scores)
    assert seen[-2:] == [{"scores": {"math": 5}}, {"scores": {"math": 5, "art": 4}}]  # "5" shown as the int 5
    assert parser.finish() == Scores(scores={"math": 5, "art": 4})


def test_one_object_where_a_list_of_dicts_was_expected_streams_as_a_one_item_list() -> None:
    seen, parser = partials('{"math": "5", "art": "4"}', list[dict[str, int]])
    assert seen == [[{}], [{"math": 5}], [{"math": 5, "art": 4}]]  # values aligned to int as they complete
    assert parser.finish() == [{"math": 5, "art": 4}]


# -- feed says True whenever the partial changed, whatever a chunk holds ---------------------


def test_each_chunk_that_changes_the_partial_says_so() -> None:
    # a model's tokens often hold the end of one value and the start of the next
    parser: StreamingParser = StreamingParser(dict)
    steps = []
    for chunk in ['{"a": "', 'x", "b": ', '1, "c": "', 'y"}', "\n```"]:
        steps.append((parser.feed(chunk), shown(parser.partial())))
    assert steps == [
        (True, {"a": ""}),
        (True, {"a": "x"}),
        (True, {"a": "x", "b": 1, "c": ""}),
        (True, {"a": "x", "b": 1, "c": "y"}),
        (False, {"a": "x", "b": 1, "c": "y"}),  # the fence after the value changes nothing
    ]
    parser = StreamingParser(dict)
    assert parser.feed('{"n": 12') is True  # the object opened; the number is not complete yet
    assert shown(parser.partial()) == {}
    assert parser.feed("3") is False  # still not complete: nothing new to show
    assert parser.feed("4}") is True and parser.finish() == {"n": 1234}


# -- aliases -----------------------------------------------------------------------------------


class Person(BaseModel):
    full_name: str = Field(alias="fullName")
    age: int


class Pet(BaseModel):
    pet_name: str = Field(alias="petName")


class Holder(BaseModel):
    who: Person | Pet


def test_a_model_in_a_union_takes_its_fields_by_name_or_by_alias() -> None:
    # two model arms: the object is kept as written, and validation picks the arm
    assert parse('{"who": {"full_name": "Ada", "age": 36}}', Holder).who == Person(fullName="Ada", age=36)
    assert parse('{"who": {"fullName": "Ada", "age": 36}}', Holder).who == Person(fullName="Ada", age=36)
    assert parse('{"who": {"petName": "Rex"}}', Holder).who == Pet(petName="Rex")


def test_a_model_validated_by_name_only_still_takes_the_alias_the_model_wrote() -> None:
    class Out(BaseModel):
        model_config = ConfigDict(validate_by_alias=False, validate_by_name=True)
        full_name: str = Field(alias="fullName")  # the alias names it in dumps only

    assert parse('{"fullName": "Ada"}', Out).full_name == "Ada"
    assert parse('{"full name": "Ada"}', Out).full_name == "Ada"


# -- output cut short --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ('{"name": "fig", "qty": 12', Item, Item(name="fig", qty=12)),  # cut after a number
        ("[1, 2, 3", list[int], [1, 2, 3]),
        ("[1, 2, 3,", list[int], [1, 2, 3]),  # cut after a comma: no empty last item
        ('{"name": "fig", "qty": 1, "colo', Tagged, Tagged(name="fig")),  # cut in a key: the key goes
        ('{"name": "fig", "qty": 1, colo', Tagged, Tagged(name="fig")),  # in an unquoted key
        ('{"name": "fig", "color": "gre', Tagged, None),  # in a value that cannot be cut: validation says so
    ],
)
def test_output_cut_short_keeps_what_is_complete(text: str, target: Any, expected: Any) -> None:
    if expected is None:
        with pytest.raises(ValidationError):
            parse(text, target)
    else:
        assert parse(text, target) == expected


def test_with_nothing_parsed_the_value_is_none() -> None:
    parser = StreamingParser(Item)
    parser.feed("I'm sorry, I can't help with that.")
    assert parser.value() is None
    assert parser.target is Item
    assert parser.text() == "I'm sorry, I can't help with that."


def test_the_work_counter_counts_the_work() -> None:
    """test_parser.py bounds the work from above; a counter that did not count would pass it vacuously."""

    def work(text: str) -> int:
        parser = StreamingParser(list[Item])
        for i in range(0, len(text), 4):
            parser.feed(text[i : i + 4])
        return parser.steps

    one = '{"name": "fig", "qty": 1}, '
    small, large = work("[" + one * 10 + "]"), work("[" + one * 100 + "]")
    assert small >= 10 * 4  # at least the structural characters of each item: { : , }
    assert 8 < large / small < 12  # ten times the items, about ten times the work


# -- commas and colons a model forgot ------------------------------------------------------------


def test_missing_commas_between_fields_and_items() -> None:
    seen, parser = partials('{"name": "fig"\n  "qty": 5}', Item)
    assert seen[-2:] == [{"name": "fig", "qty": None}, {"name": "fig", "qty": 5}]
    assert parser.finish() == Item(name="fig", qty=5)
    assert parse('["a" "b"\n"c"]', list[str]) == ["a", "b", "c"]


def test_doubled_commas_and_keys_without_a_value_are_skipped() -> None:
    assert parse("[1,, 2,]", list[int]) == [1, 2]
    assert parse('{"name": "fig",, "qty": 5,}', Item) == Item(name="fig", qty=5)
    text = '[{"name": "fig", "color": }, {"name": "kiwi", "color": ]'
    assert parse(text, list[Tagged]) == [Tagged(name="fig"), Tagged(name="kiwi")]


def test_compact_json_missing_colons_and_comments_between_key_and_colon() -> None:
    assert parse('{"name":"fig","qty":5}', Item) == Item(name="fig", qty=5)  # no spaces at all
    assert parse('{"name" "fig", "qty" 5}', Item) == Item(name="fig", qty=5)  # colons forgotten
    assert parse('{"name" /* c */ : "x" // the count\n , qty: 3 /* end */ }', Item) == Item(name="x", qty=3)
    assert parse('{"name": "fig", "qty": 1, "color"}', Tagged) == Tagged(name="fig")  # a key without a value
    text = '[{"name": "fig", color}, {"name": "kiwi"}]'  # an unquoted key without a value
    assert parse(text, list[Tagged]) == [Tagged(name="fig"), Tagged(name="kiwi")]
    text = '[{"name": "fig", ], {"name": "kiwi"}]'  # an object closed with the wrong bracket
    assert parse(text, list[Tagged]) == [Tagged(name="fig"), Tagged(name="kiwi")]


def test_escapes_change_the_partial_only_in_values_and_whatever_the_chunking() -> None:
    parser: StreamingParser = StreamingParser(dict)
    assert parser.feed('{"s": "x", ') is True
    assert [parser.feed(c) for c in '"k\\"ey": '] == [False] * 9  # a key being read shows nothing yet
    assert parser.feed('"a') is True
    assert parser.feed('\\"b') is True  # an escape and more text in one chunk
    assert parser.finish() == {"s": "x", 'k"ey': 'a"b'}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["\\ud800", "\\udfff", "\\ud800\\udc00"]', ["\ufffd", "\ufffd", "\U00010000"]),  # the surrogate range's ends
        ('["bad \\uZZZZ here", "\\ue000"]', ["bad \\uZZZZ here", "\ue000"]),  # not hex: kept as written
    ],
)
def test_unicode_escapes(text: str, expected: list[str]) -> None:
    assert parse(text, list[str]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, /2, 3]", [1, 2, 3]),  # a stray slash is not a comment
        ("[1, / 2]", [1, 2]),
        ("[1 /* a/b, 2*3 */, 4]", [1, 4]),  # a block comment ends at */ only
        ("[1 /* ** */, 5]", [1, 5]),
    ],
)
def test_slashes_and_block_comments(text: str, expected: list[int]) -> None:
    assert parse(text, list[int]) == expected


def test_a_key_the_model_lacks_changes_no_partial_however_long_its_value() -> None:
    """Models add keys the type has no field for ("reasoning", "extra"): what comes under them is kept for
    validation (extra="forbid" would refuse it) but no partial shows it, so none is sent for it."""
    text = (
        '{"reasoning": "let me think [1, {\\"a\\": 2}] carefully", "extra": {"x": [1, "yy", {"z": null}]}, '
        '"name": "Ada", "more": 7, "qty": 36}'
    )
    for size in (1, 3):
        seen, parser = partials(text, Item, size=size)
        assert seen[0] == {"name": None, "qty": None}
        streamed = [s["name"] for s in seen[1:-1]]
        assert streamed == (["", "A", "Ad", "Ada"] if size == 1 else ["", "Ada"])
        assert seen[-1] == {"name": "Ada", "qty": 36}
        assert all(a != b for a, b in itertools.pairwise(seen))  # every partial sent shows something new
        assert parser.finish() == Item(name="Ada", qty=36)


def test_an_escaped_character_shows_as_soon_as_its_escape_is_complete() -> None:
    """``\\u00e9`` in a streamed string shows when its fourth hex digit arrives, not with the next change."""
    text = '{"name": "caf\\u00e9", "qty": 2}'
    cut = text.index("\\u00e9") + len("\\u00e9")
    parser: StreamingParser = StreamingParser(Item)
    assert parser.feed(text[: cut - 1]) and parser.partial().name == "caf"
    assert parser.feed(text[cut - 1 : cut]) and parser.partial().name == "café"  # no closing quote yet
    parser.feed(text[cut:])
    assert parser.finish() == Item(name="café", qty=2)


@pytest.mark.parametrize("size", [1, 4, 100])
def test_a_comment_between_an_unquoted_key_and_its_colon_is_not_part_of_the_key(size: int) -> None:
    text = '{name /* the item */ : "bolt", qty // how many\n : 3, note/x: 1}'
    seen, parser = partials(text, dict[str, Any], size=size)
    assert seen[-1] == {"name": "bolt", "qty": 3, "note/x": 1}
    assert parser.finish() == {"name": "bolt", "qty": 3, "note/x": 1}  # a slash inside a key stays in it


def test_each_chunk_inside_a_string_costs_one_step() -> None:
    """The hot path: a token inside an open string is one step of work, whatever its length."""
    parser: StreamingParser = StreamingParser(dict)
    parser.feed('{"a": "')
    before = parser.steps
    for chunk in ["xyz", "a much longer token than that", "q"]:
        assert parser.feed(chunk) is True
    assert parser.steps - before == 3
    assert parser.finish() == {"a": "xyza much longer token than thatq"}


def test_outside_strings_each_character_is_one_step() -> None:
    text = "[" + "[]," * 100 + "]"  # brackets and commas only: one loop pass each, plus one to find the start
    parser: StreamingParser = StreamingParser(list)
    parser.feed(text)
    assert parser.steps == len(text) + 1
    assert parser.finish() == [[]] * 100


def test_characters_written_as_they_are_come_out_as_they_are() -> None:
    """Only \\u escapes are decoded (a surrogate pair joined, half a pair replaced); a character the text holds
    itself is kept, even a lone surrogate, in a string before or after one with escaped surrogates."""
    raw = "\ud800"  # a lone surrogate in the text itself, not an escape
    assert parse(f'["a{raw}b"]', list[str]) == [f"a{raw}b"]
    assert parse(f'["\\ud83d\\ude00", "a{raw}b"]', list[str]) == ["\U0001f600", f"a{raw}b"]


def test_a_number_too_long_for_an_int_is_a_validation_error_not_a_crash() -> None:
    """CPython refuses to convert more than 4300 digits to an int; the parser leaves such a number to
    validation, as it does when the same digits are quoted, and never raises from ``feed``."""
    digits = "1" * 5000
    for text in (f'{{"name": "x", "qty": {digits}}}', f'{{"name": "x", "qty": "{digits}"}}'):
        parser: StreamingParser = StreamingParser(Item)
        parser.feed(text)
        with pytest.raises(ValidationError) as caught:
            parser.finish()
        assert caught.value.errors()[0]["loc"] == ("qty",)
    assert parse('{"name": "x", "qty": 00042}', Item) == Item(name="x", qty=42)
    many = "9" * 400  # past a float's range, within an int's: kept exact
    assert parse(f'{{"name": "x", "qty": {many}}}', Item).qty == int(many)
    assert parse(f'{{"name": "x", "qty": "{many}"}}', Item).qty == int(many)  # quoted too (no OverflowError)


def test_an_int_past_a_floats_range_for_a_float_field_is_a_validation_error() -> None:
    class Reading(BaseModel):
        value: float

    for text in (f'{{"value": "{"9" * 400}"}}', f'{{"value": {"9" * 400}}}'):
        parser: StreamingParser = StreamingParser(Reading)
        parser.feed(text)
        with pytest.raises(ValidationError) as caught:
            parser.finish()
        assert caught.value.errors()[0]["loc"] == ("value",)


def feeds(parser: StreamingParser, text: str) -> list[bool]:
    return [parser.feed(c) for c in text]


def test_a_u_escape_shows_when_complete_unless_it_is_half_a_surrogate_pair() -> None:
    parser: StreamingParser = StreamingParser(list[str])
    parser.feed('["')
    assert feeds(parser, "\\ue000") == [False] * 5 + [True]  # the first code point past the surrogates
    assert parser.partial() == ["\ue000"]
    assert feeds(parser, "\\uZZZZ") == [False] * 5 + [True]  # not hex: shown as written, at once
    assert parser.partial() == ["\ue000\\uZZZZ"]
    assert feeds(parser, "\\ud83d") == [False] * 6  # half a pair: nothing to show until the other half
    assert feeds(parser, "\\ude00") == [False] * 5 + [True]
    assert feeds(parser, '"]') == [False, False]
    assert parser.finish() == ["\ue000\\uZZZZ\U0001f600"]


def test_a_key_being_read_changes_no_partial_whatever_it_holds() -> None:
    for key in ("k\\u0065y", "k\\ud83d\\ude00y", "it's"):
        parser: StreamingParser = StreamingParser(dict)
        assert parser.feed("{'s': 'x', ") is True  # a streamed string value came last
        assert feeds(parser, f"'{key}'") == [False] * (len(key) + 2)
        assert feeds(parser, ": 1}") == [False, False, False, True]  # the 1 is complete at the }


def test_an_apostrophe_shows_as_soon_as_what_follows_says_it_is_one() -> None:
    parser: StreamingParser = StreamingParser(list[str])
    assert parser.feed("['x'") is True  # the quote may close the string: the partial shows "x" so far
    assert parser.partial() == ["x"]
    assert parser.feed("\\") is True  # an escape follows: the quote was an apostrophe
    assert parser.partial() == ["x'"]
    assert parser.feed("n']") is True
    assert parser.finish() == ["x'\n"]
    parser = StreamingParser(list[str])
    assert parser.feed("[") is True
    assert parser.feed("'x'\\") is True  # the string, its apostrophe and the escape after it in one chunk
    assert parser.partial() == ["x'"]


def test_a_quote_straight_after_a_single_quote_is_inside_the_string_and_a_spaced_one_starts_the_next() -> None:
    assert parse("['it''s']", list[str]) == ["it''s"]
    assert parse("['a' \"b\", 'c'  'd']", list[str]) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("escapes", "expected", "pair"),
    [
        ("\\ud800\\udc00", "\U00010000", True),  # the pair ranges' ends
        ("\\udbff\\udfff", "\U0010ffff", True),
        ("\\ud83d\\ue000", "\ufffd\ue000", False),  # a high half, then a character past the low halves
        ("a\\udc00", "a\ufffd", False),  # a low half after an ordinary character
    ],
)
def test_a_surrogate_pair_is_one_character_as_soon_as_it_is_complete(escapes: str, expected: str, pair: bool) -> None:
    parser: StreamingParser = StreamingParser(list[str])
    parser.feed('["')
    changed = feeds(parser, escapes)
    if pair:
        assert changed[-1] is True and parser.partial() == [expected]  # shown at the pair's last hex digit
    parser.feed('"]')
    assert parser.finish() == [expected]


def test_a_chunk_that_closes_the_value_and_holds_text_after_it_says_it_changed() -> None:
    parser: StreamingParser = StreamingParser(list[int])
    assert parser.feed("[1, 2") is True
    assert parser.feed("]\n```\nDone.") is True  # the 2 completes here, then the fence and prose
    assert parser.partial() == [1, 2]
    assert parser.feed(" more") is False
    assert parser.finish() == [1, 2]


# -- parsers share their target's shape and validator ------------------------------------------


def test_parsers_of_one_target_share_its_shape_and_validator_and_an_unhashable_one_builds_its_own() -> None:
    first, second = StreamingParser(list[Item]), StreamingParser(list[Item])
    assert first.shape is second.shape and first.adapter is second.adapter  # built once for the type
    unhashable = Annotated[list[int], ["metadata"]]  # a list in Annotated's metadata: no hash, no cache
    seen, parser = partials('[1, "2", 3', unhashable)
    assert seen == [[], [1], [1, 2]]  # aligned to list[int] as it streams: its own shape
    assert parser.finish() == [1, 2, 3]
    with pytest.raises(ValidationError):  # and its own validator
        parse('["x"]', unhashable)


def test_unions_in_another_order_do_not_share_and_a_model_waiting_for_a_reference_is_not_kept() -> None:
    """``Union[float, int] == Union[int, float]`` (one hash), but the order of the arms decides what "2" becomes:
    each order gets its own shape and validator, whichever was parsed first."""
    floats_first, ints_first = list[Union[float, int]], list[Union[int, float]]  # noqa: UP007 (the order is the point)
    assert floats_first == ints_first
    first = parse('[1, "2"]', floats_first)
    assert parse('[1, "2"]', ints_first) == [1, 2] and parse('[1, "2"]', floats_first) == first
    assert StreamingParser(floats_first).shape is not StreamingParser(ints_first).shape

    # A model whose field names a class not defined yet: its parser's validator waits for it, and is not kept,
    # so that once the class exists (model_rebuild) the next parser sees it in its partials too.
    class Outer(BaseModel):
        inner: Inner | None = None
        n: int = 0

    early = StreamingParser(Outer)
    early.feed('{"inner": {"x": 5}, "n": 1}')
    with pytest.raises(Exception, match="not fully defined"):
        early.finish()

    class Inner(BaseModel):
        x: int | None = None

    Outer.model_rebuild()
    parser = StreamingParser(Outer)
    parser.feed('{"inner": {"x": 5')
    assert parser.partial().inner == Inner(x=None)  # shaped as the model now is
    parser.feed('}, "n": 1}')
    assert parser.finish() == Outer(inner=Inner(x=5), n=1)


def test_the_compiled_classes_refuse_subclasses_in_both_builds() -> None:
    """A native class cannot make an interpreted subclass's instances; the pure build refuses them the same way."""
    with pytest.raises(TypeError, match=r"Parser: StreamingParser is not meant to be subclassed .* wrap one"):

        class Parser(StreamingParser):  # type: ignore[misc]
            pass

    with pytest.raises(TypeError, match="Kind: Shape is not meant to be subclassed"):

        class Kind(Shape):  # type: ignore[misc]
            pass
