"""strict_json_schema (OpenAI's strict structured outputs) and the parser's side of it: null means the default."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from rxkit.errors import ConfigError
from rxkit.structured import StreamingParser, parse, strict_json_schema


class Address(BaseModel):
    street: str
    zip: str | None = None


class Person(BaseModel):
    name: str = Field(description="Full name")
    home: Address
    work: Address | None = None
    tags: list[str] = []
    age: int = 0


def objects(schema: object) -> list[dict[str, object]]:
    """Every object schema inside ``schema``."""
    found: list[dict[str, object]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found += objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += objects(value)
    return found


def test_every_object_is_closed_and_requires_all_its_properties() -> None:
    schema = strict_json_schema(Person)
    assert len(objects(schema)) == 2  # Person and Address (in $defs)
    for obj in objects(schema):
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])  # type: ignore[call-overload]
    props = schema["properties"]
    assert props["name"] == {"description": "Full name", "title": "Name", "type": "string"}  # required: as it was
    assert props["tags"] == {
        "anyOf": [{"items": {"type": "string"}, "type": "array"}, {"type": "null"}],
        "title": "Tags",
    }
    assert props["age"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "Age"}  # default 0: nullable
    assert props["work"] == {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]}  # default None dropped
    assert schema["$defs"]["Address"]["properties"]["zip"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "title": "Zip",
    }
    assert "default" not in str(schema)
    assert strict_json_schema(Person) == schema  # the model's own schema is not mutated


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (dict[str, int], "(root) is a free-form object"),
        (list[Address], "the root must be an object, not array"),
        (int | str, "the root must be an object, not a union"),
    ],
)
def test_a_type_that_cannot_be_strict_says_where(target: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        strict_json_schema(target)
    assert problem in str(caught.value)


def test_a_dict_field_deep_inside_names_its_path() -> None:
    class Inner(BaseModel):
        extra: dict[str, str]

    class Outer(BaseModel):
        inner: list[Inner]

    with pytest.raises(ConfigError, match=r"\$defs/Inner/properties/extra is a free-form object"):
        strict_json_schema(Outer)


def test_null_for_a_field_with_a_default_that_takes_no_none_is_the_default() -> None:
    answer = '{"name": "Ada", "home": {"street": "1 Main", "zip": null}, "work": null, "tags": null, "age": null}'
    assert parse(answer, Person) == Person(name="Ada", home=Address(street="1 Main"), tags=[], age=0)
    parser = StreamingParser(Person)
    parser.feed(answer[: answer.index('"age"')])
    partial = parser.partial()
    assert partial.tags == [] and partial.work is None and "tags" not in partial.model_fields_set
    with pytest.raises(ValueError, match="name"):  # a required field keeps failing on null
        parse('{"name": null, "home": {"street": "x"}}', Person)
