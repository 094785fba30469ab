"""Tools as functions, pydantic classes and dicts: one spec shape, and arguments checked against it."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from imagine.engine import normalize_tools
from imagine.errors import InputError
from imagine.tools import Tool, as_tool, check_arguments


def get_weather(city: str, unit: str = "celsius") -> str:
    """The weather now in a city.

    Longer notes that are not part of the description."""
    return f"{city}: 21 {unit}"


class Lookup(BaseModel):
    """Look up a word in the dictionary."""

    word: str
    language: str = "en"


def test_every_shape_becomes_the_same_spec():
    specs = normalize_tools([get_weather, Lookup, as_tool(get_weather),
                             {"type": "function", "function": {"name": "get_weather", "parameters":
                                                               as_tool(get_weather).parameters}}])
    assert specs[0] == specs[2] and specs[0]["parameters"] == specs[3]["parameters"]
    assert specs[0]["description"] == "The weather now in a city."
    assert specs[0]["parameters"]["required"] == ["city"]
    assert specs[1]["name"] == "Lookup" and specs[1]["parameters"]["required"] == ["word"]


def test_arguments_are_checked_against_the_schema():
    tool = as_tool(get_weather)
    assert check_arguments(tool, {"city": "Oslo"}) == {"city": "Oslo"}
    with pytest.raises(InputError, match="city"):
        check_arguments(tool, {"town": "Oslo"})
    with pytest.raises(InputError, match="JSON object"):
        check_arguments(tool, ["Oslo"])
    bare = Tool("add", "", {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    with pytest.raises(InputError, match="a: 'x' is not of type 'integer'"):
        check_arguments(bare, {"a": "x"})


def test_bad_tools_are_named():
    with pytest.raises(InputError, match="lambda"):
        as_tool(lambda city: city)

    def varargs(*cities: str) -> None:
        """Many cities."""

    with pytest.raises(InputError, match=r"\*cities"):
        normalize_tools([varargs])
    with pytest.raises(InputError, match=r"tools\[0\]\.name is missing"):
        normalize_tools([{"description": "no name"}])
