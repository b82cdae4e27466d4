"""Single-quoted strings that hold apostrophes, as models write them when they drift from JSON to Python repr."""

from __future__ import annotations

import itertools

import pytest
from pydantic import BaseModel

from rxkit.structured import StreamingParser, parse


class Answer(BaseModel):
    answer: str
    city: str


class Review(BaseModel):
    title: str
    stars: int
    tags: list[str]


# Recorded-looking answers: small models asked for JSON often write Python's repr style instead.
APOSTROPHE = "Sure:\n{'answer': 'It's the capital of France', 'city': 'Paris'}"
PLURAL_POSSESSIVE = "{'answer': 'the users' data stays local', 'city': 'Oslo'}"
SEVERAL = "```python\n{'title': 'Don't miss Rick's café', 'stars': 5, 'tags': ['kids' menu', 'it's cheap',]}\n```"
NEWLINES = "{\n  'answer': 'We're here'\n  'city': 'Lyon'\n}"  # a missing comma, the next key on its own line


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        (APOSTROPHE, Answer, Answer(answer="It's the capital of France", city="Paris")),
        (PLURAL_POSSESSIVE, Answer, Answer(answer="the users' data stays local", city="Oslo")),
        (SEVERAL, Review, Review(title="Don't miss Rick's café", stars=5, tags=["kids' menu", "it's cheap"])),
        (NEWLINES, Answer, Answer(answer="We're here", city="Lyon")),
        ("{'answer': 'x' 'city': 'y'}", Answer, Answer(answer="x", city="y")),  # a missing comma, same line
        ("{'answer': '', 'city': 'y' /* done */}", Answer, Answer(answer="", city="y")),
        ("{'it's': 'fine'}", dict[str, str], {"it's": "fine"}),  # keys too
    ],
)
def test_an_apostrophe_does_not_end_a_single_quoted_string(text: str, target: object, expected: object) -> None:
    assert parse(text, target) == expected
    for size in (1, 2, 3, 7):  # the quote and what tells its role may come in different chunks
        parser = StreamingParser(target)
        for i in range(0, len(text), size):
            parser.feed(text[i : i + size])
        assert parser.finish() == expected


def test_partials_stream_through_the_apostrophe() -> None:
    parser = StreamingParser(Answer)
    seen = []
    for c in APOSTROPHE:
        if parser.feed(c):
            seen.append(parser.partial().answer)
    texts = [s for s in seen if s]
    assert texts[:3] == ["I", "It", "It's"]  # the quote shows once the "s" says it is an apostrophe
    assert texts[-1] == "It's the capital of France"
    for before, after in itertools.pairwise(texts):
        assert after.startswith(before)  # never shorter, never a string cut at the apostrophe


def test_output_cut_right_after_a_quote_closes_the_string() -> None:
    parser = StreamingParser(dict)
    parser.feed("{'answer': 'Don'")
    assert parser.partial() == {"answer": "Don"}
    assert parser.finish() == {"answer": "Don"}
