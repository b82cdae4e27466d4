"""Pins down rxkit.structured's shapes where mutation testing found them loose (issue 18).

``shape_of`` and ``Shape`` are public (``rxkit.structured``): each attribute a
shape documents is checked for each kind of type, and where an attribute
steers parsing, the parse that shows it.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from rxkit.structured import Shape, parse, shape_of


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(BaseModel):
    x: int


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


class Form(BaseModel):
    required: int
    maybe: int | None = 3
    made: list[int] = Field(default_factory=lambda: [1])
    anything: Any = 5
    nothing: None = None
    aliased: str = Field("z", alias="Other Name")
    at: Point
    at_most: Point | None = None


def test_a_new_shape_holds_nothing_yet() -> None:
    shape = Shape("int")
    assert (shape.kind, shape.tp, shape.item) == ("int", None, None)
    assert shape.fields == {} and shape.keys == {} and shape.wires == {} and shape.blank == {}
    assert shape.defaulted == frozenset() and shape.choices == {} and shape.arms == []
    assert shape.nullable is False and shape.plain is False
    assert [Shape(k).streams for k in ("str", "any", "int", "model", "list")] == [True, True, False, False, False]
    assert repr(Shape("list", list[int])) == "Shape(list, list[int])"


def test_a_shapes_adapter_validates_its_type_and_is_built_once() -> None:
    shape = shape_of(list[int])
    assert shape.adapter() is shape.adapter()
    assert shape.adapter().validate_python(["1", 2]) == [1, 2]


def test_a_model_shape_knows_its_fields_defaults_and_aliases() -> None:
    shape = shape_of(Form)
    assert (shape.kind, shape.tp, shape.nullable, shape.streams, shape.plain) == ("model", Form, False, False, True)
    assert {name: f.kind for name, f in shape.fields.items()} == {
        "required": "int", "maybe": "int", "made": "list", "anything": "any", "nothing": "none", "aliased": "str",
        "at": "model", "at_most": "model",
    }  # fmt: skip
    assert shape.blank == {
        "required": None, "maybe": 3, "made": [1], "anything": 5, "nothing": None, "aliased": "z", "at": None,
        "at_most": None,
    }  # fmt: skip
    # a default that takes no None: a null written for it means "left out" (strict mode writes that)
    assert shape.defaulted == frozenset({"made", "aliased"})
    assert shape.wires == {name: name for name in shape.fields} | {"aliased": "Other Name"}
    assert shape.keys == {name: name for name in shape.fields} | {"other_name": "aliased"}


def test_an_optional_model_is_a_nullable_copy_and_the_model_itself_stays_required() -> None:
    shape = shape_of(Form)
    at, at_most = shape.fields["at"], shape.fields["at_most"]
    assert at.nullable is False and at_most.nullable is True
    assert at_most is not at and at_most.fields == at.fields and at_most.tp is Point and at_most.plain
    assert shape_of(Point).nullable is False


def test_null_for_a_field_whose_default_takes_no_none_is_the_default() -> None:
    text = '{"required": 1, "maybe": null, "made": null, "Other Name": null, "anything": null, "at": {"x": 2}}'
    form = parse(text, Form)
    assert (form.maybe, form.made, form.aliased, form.anything) == (None, [1], "z", None)


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("required", "required"),
        ("REQUIRED", "required"),
        ("Other Name", "aliased"),  # the alias, as written
        ("other-name", "aliased"),
        (" OTHER \t-- NAME ", "aliased"),  # spaces, tabs and dashes run together into one _
        ("at_most", "at_most"),
        ("at most", "at_most"),
        ("atmost", None),
        ("other", None),
    ],
)
def test_a_key_finds_its_field_by_name_alias_or_normalised_spelling(key: str, field: str | None) -> None:
    shape = shape_of(Form)
    assert shape.field(key) == (None if field is None else (field, shape.fields[field]))


def test_an_exact_field_name_wins_over_a_normalised_match() -> None:
    class Two(BaseModel):
        a_b: int
        A_B: str  # normalises to a_b as well, and was listed last

    shape = shape_of(Two)
    assert shape.field("a_b") == ("a_b", shape.fields["a_b"])
    assert shape.field("A_B") == ("A_B", shape.fields["A_B"])
    assert shape.field("a-b") == ("A_B", shape.fields["A_B"])


def test_a_recursive_model_refers_to_its_own_shape() -> None:
    shape = shape_of(Tree)
    assert shape.fields["children"].item is shape


@pytest.mark.parametrize(
    ("model", "plain"),
    [
        (Point, True),
        (type("WithPrivate", (BaseModel,), {"__annotations__": {"x": int}, "_cache": PrivateAttr(0)}), False),
        (
            type("Extras", (BaseModel,), {"__annotations__": {"x": int}, "model_config": ConfigDict(extra="allow")}),
            False,
        ),
        (
            type("Forbid", (BaseModel,), {"__annotations__": {"x": int}, "model_config": ConfigDict(extra="forbid")}),
            True,
        ),
    ],
)
def test_a_model_is_plain_without_private_attributes_extras_or_post_init(model: type[BaseModel], plain: bool) -> None:
    assert shape_of(model).plain is plain


def test_a_model_with_post_init_is_not_plain() -> None:
    class Hooked(BaseModel):
        x: int

        def model_post_init(self, context: Any, /) -> None:
            pass

    assert shape_of(Hooked).plain is False


def test_annotated_is_its_inner_type() -> None:
    shape = shape_of(Annotated[list[int], "meta"])
    assert (shape.kind, shape.item.kind if shape.item else None) == ("list", "int")


def test_optional_scalars_are_nullable_and_unions_list_their_arms() -> None:
    optional = shape_of(int | None)
    assert (optional.kind, optional.nullable, optional.streams) == ("int", True, False)
    union = shape_of(int | str | None)
    assert (union.kind, [a.kind for a in union.arms], union.nullable, union.streams) == (
        "union", ["int", "str"], True, True,
    )  # fmt: skip
    numbers = shape_of(typing.Union[int, float])  # noqa: UP007  (typing.Union and | are two origins)
    assert ([a.kind for a in numbers.arms], numbers.nullable, numbers.streams) == (["int", "float"], False, False)
    assert shape_of(list[int] | Point).streams is False
    assert shape_of(Point | str).streams is True


def test_literals_and_enums_take_values_by_normalised_text() -> None:
    literal = shape_of(Literal["In Stock", 2, None])
    assert (literal.kind, literal.choices, literal.nullable) == (
        "literal",
        {"in_stock": "In Stock", "2": 2, "none": None},
        True,
    )
    assert shape_of(Literal["a"]).nullable is False

    class Swapped(enum.Enum):
        A = "b"  # a member whose name is another member's value: the value wins
        B = "a"
        LONG_NAME = "x"

    enum_shape = shape_of(Swapped)
    assert (enum_shape.kind, enum_shape.tp) == ("enum", Swapped)
    assert enum_shape.choices == {"a": "a", "b": "b", "x": "x", "long_name": "x"}
    assert parse('"Long Name"', Swapped) is Swapped.LONG_NAME
    assert parse('"A"', Swapped) is Swapped.B  # "A" is B's value (any case) before A's name


@pytest.mark.parametrize(
    ("tp", "kind", "item"),
    [
        (list[int], "list", "int"),
        (tuple[int, ...], "list", "int"),
        (set[str], "list", "str"),
        (frozenset[int], "list", "int"),
        (Sequence[float], "list", "float"),
        (typing.List[int], "list", "int"),  # noqa: UP006
        (typing.List, "list", "any"),  # noqa: UP006  (bare: an origin and no arguments)
        (typing.Sequence, "list", "any"),
        (list, "list", "any"),
        (tuple, "list", "any"),
        (set, "list", "any"),
        (frozenset, "list", "any"),
        (dict[str, int], "dict", "int"),
        (Mapping[str, bool], "dict", "bool"),
        (typing.Dict[str, str], "dict", "str"),  # noqa: UP006
        (dict, "dict", "any"),
    ],
)
def test_collections(tp: Any, kind: str, item: str) -> None:
    shape = shape_of(tp)
    assert (shape.kind, shape.tp, shape.item.kind if shape.item else None) == (kind, tp, item)


@pytest.mark.parametrize(
    ("tp", "kind"),
    [(None, "none"), (type(None), "none"), (bool, "bool"), (int, "int"), (float, "float"), (str, "str"),
     (Any, "any"), (bytes, "any")],
)  # fmt: skip
def test_scalars(tp: Any, kind: str) -> None:
    shape = shape_of(tp)
    assert (shape.kind, shape.tp) == (kind, tp)
    assert shape.streams is (kind in ("str", "any"))


class Chain(BaseModel):
    label: str
    tagged: list[Annotated[Chain, "a note"]] = []
    either: Chain | str | None = None
    named: dict[str, Chain] = {}


def test_a_model_that_recurs_through_annotated_a_union_or_a_map_refers_to_its_own_shape() -> None:
    shape = shape_of(Chain)
    assert shape.fields["tagged"].item is shape
    assert shape.fields["either"].arms[0] is shape
    assert shape.fields["named"].item is shape
    assert parse('{"label": "a", "either": {"label": "b", "tagged": [{"label": "c"}]}}', Chain) == Chain(
        label="a", either=Chain(label="b", tagged=[Chain(label="c")])
    )


def test_a_union_shape_keeps_its_type() -> None:
    assert shape_of(int | str).tp == int | str
    assert repr(shape_of(int | str)) == "Shape(union, int | str)"
