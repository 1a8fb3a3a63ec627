"""Errors a user can cause and fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import re

from pydantic import ValidationError

# pydantic adds the member type of a union to an error's location ("lr", "list[float]", 1);
# those entries are not field names, so they are dropped when the location is printed.
_TYPE_TAG = re.compile(r"^(float|int|str|bool|none|dict|list|.*\[.*\]|function-.*|constrained-.*)$")


class UserError(Exception):
    """A problem in what the user asked for: ``where`` names the field (or option), ``problem`` says why.

    Printed by the CLI as ``error: <where>: <problem>``, before any work starts."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where, self.problem = where, problem


def format_loc(loc: tuple, prefix: str = "") -> str:
    """('grid', 'hidden', 0) -> 'grid.hidden[0]' (union member tags dropped)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _TYPE_TAG.match(str(part)):
            out += f".{part}" if out else str(part)
    return out


def from_validation_error(err: ValidationError, prefix: str = "") -> UserError:
    """The first error of a pydantic ValidationError as a UserError naming its field."""
    first = err.errors()[0]
    message = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "required field is missing"
    return UserError(format_loc(first["loc"], prefix) or prefix or "config", message)
