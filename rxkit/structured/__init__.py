"""Structured output: parse what a model writes into a typed value, as it streams.

>>> from pydantic import BaseModel
>>> class City(BaseModel):
...     city: str
...     country: str
>>> parse('Here you go: {city: "Paris", country: \\'France\\',}', City)
City(city='Paris', country='France')
"""

from rxkit.structured._format import output_format
from rxkit.structured._parser import StreamingParser, parse
from rxkit.structured._shape import Shape, shape_of
from rxkit.structured._strict import strict_json_schema

__all__ = ["Shape", "StreamingParser", "output_format", "parse", "shape_of", "strict_json_schema"]
