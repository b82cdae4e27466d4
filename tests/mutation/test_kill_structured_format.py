"""Pins down rxkit.structured's ``output_format`` where mutation testing found it loose (issue 18).

The whole rendered instruction is compared, character for character: what a
model is told is the behaviour, so a changed word, indent or separator is a
change a user would see in every prompt.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from rxkit.structured import output_format


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


class Point(BaseModel):
    x: int


class Everything(BaseModel):
    name: str = Field(description="What it is called.\nShort, please.")
    qty: int = Field(alias="quantity")
    price: float | None = None
    color: Color
    tags: list[Color | None]
    kinds: list[Literal["a", "b"]]
    mix: list[int | str]
    plain: list[str]
    maybe: list[str | None]
    flags: dict[str, bool]
    loose: dict  # type: ignore[type-arg]
    nothing: None
    lit: Literal["x", 2, True, False, None]
    picked: Literal[Color.RED]
    level: Level
    tree: Tree
    start: Point
    end: Point
    whatever: Any


EVERYTHING = """Answer in JSON using this schema:
{
  // What it is called.
  // Short, please.
  name: string,
  quantity: int,
  price: float or null,
  color: "red" or "green",
  tags: ("red" or "green" or null)[],
  kinds: ("a" or "b")[],
  mix: (int or string)[],
  plain: string[],
  maybe: (string or null)[],
  flags: map<string, bool>,
  loose: map<string, any>,
  nothing: null,
  lit: "x" or 2 or true or false or null,
  picked: "red",
  level: 1 or 2,
  tree: {
    label: string,
    children: Tree[],
  },
  start: {
    x: int,
  },
  end: {
    x: int,
  },
  whatever: any,
}"""


def test_a_model_with_every_kind_of_field() -> None:
    # descriptions as // lines, the alias as the key, a recursive model named where it recurs, the same
    # model in two sibling fields written out in both, nested models indented one step further
    assert output_format(Everything) == EVERYTHING


def test_a_list_of_models_indents_the_model_as_the_top_level() -> None:
    assert output_format(list[Point]) == "Answer with a JSON array using this schema:\n{\n  x: int,\n}[]"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (list[int], "Answer with a JSON array using this schema:\nint[]"),
        (list, "Answer with a JSON array using this schema:\nany[]"),
        (list[Literal["a"] | None], 'Answer with a JSON array using this schema:\n("a" or null)[]'),
        (dict[str, int], "Answer in JSON using this schema:\nmap<string, int>"),
        (dict[str, list[int]], "Answer in JSON using this schema:\nmap<string, int[]>"),
        (Color, 'Answer with one of these values:\n"red" or "green"'),
        (Level, "Answer with one of these values:\n1 or 2"),
        (Literal["a", "b"], 'Answer with one of these values:\n"a" or "b"'),
        (str, "Answer with a string: string"),
        (int, "Answer as an int"),
        (int | None, "Answer as an int or null"),
        (float, "Answer as a float"),
        (bool, "Answer as a bool"),
        (int | str, "Answer as a int or string"),
        (None, "Answer as a null"),
        (Any, "Answer as a any"),
    ],
)
def test_each_kind_of_target_gets_its_own_prefix_and_body(target: Any, expected: str) -> None:
    assert output_format(target) == expected


def test_a_prefix_given_replaces_the_default_even_when_empty() -> None:
    assert output_format(list[int], prefix="Return: ") == "Return: int[]"
    assert output_format(list[int], prefix="") == "int[]"


class Inner(BaseModel):
    y: Point


class Box(BaseModel):
    colors: list[Color]
    where: Point | list[int]
    named: dict[str, Inner]


def test_models_inside_unions_and_maps_and_a_list_of_enum_values() -> None:
    # an enum's values are alternatives: its list wraps them in parentheses; a model in a union arm or as a
    # map's value is written out at its own depth
    assert output_format(Box) == (
        "Answer in JSON using this schema:\n{\n"
        '  colors: ("red" or "green")[],\n'
        "  where: {\n    x: int,\n  } or int[],\n"
        "  named: map<string, {\n    y: {\n      x: int,\n    },\n  }>,\n"
        "}"
    )
