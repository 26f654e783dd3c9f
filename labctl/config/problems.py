"""pydantic's validation errors turned into located messages: file, line, field, what is allowed."""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from labctl.config.documents import Document, Location
from labctl.core.errors import ConfigError


class FieldProblems(ValueError):
    """Raised by a model validator to blame particular fields, so each error points at their lines.

    Parameters
    ----------
    problems : list of (str, tuple of str, or None; str)
        ``(field, message)`` pairs; a tuple is a path into nested fields; ``None`` blames the model.
    """

    def __init__(self, problems: list[tuple[str | None, str]]):
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


def raise_problems(problems: list[tuple[str | None, str]]) -> None:
    """Raise :class:`FieldProblems` if there are any."""
    if problems:
        raise FieldProblems(problems)


def validate(model: type[BaseModel], document: Document) -> tuple[BaseModel | None, list[ConfigError]]:
    """Validate a document's data with ``model``; return the instance (None if refused) and every problem."""
    errors = list(document.problems)
    if document.data is None:
        return None, [*errors, document.error((), "the file is empty")]
    try:
        instance = model.model_validate(document.data)
    except ValidationError as err:
        problems = translate(err, document.data, model)
        return None, errors + [document.error(location, message) for location, message in problems]
    return instance, errors  # with reading problems (duplicate keys) too, so later checks still run


def translate(err: ValidationError, data: Any, model: type[BaseModel], extra_keys=()) -> list[tuple[Location, str]]:
    """Turn pydantic's errors into ``(location in data, message)``, one per problem, duplicates merged.

    ``extra_keys`` are keys that are allowed beside the model's fields (for unknown-key hints).
    """
    found: dict[Location, list[str]] = {}
    for error in err.errors():
        for location, message in _describe(error, data, model, extra_keys):
            if message not in found.setdefault(location, []):
                found[location].append(message)
    return [(location, " or ".join(messages)) for location, messages in found.items()]


def _describe(error: dict, data: Any, model: type[BaseModel], extra_keys) -> list[tuple[Location, str]]:
    location = _in_data(error["loc"], data, keep_missing=error["type"] == "missing")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblems):
        return [((*location, *_path(f)) if f else location, message) for f, message in cause.problems]
    if isinstance(cause, Exception):
        return [(location, str(cause))]  # our own messages (units, ranges) are already written for people
    if error["type"] == "extra_forbidden":
        allowed = [*_fields_at(model, location[:-1]), *extra_keys]
        return [(location, _unknown_key(location[-1], allowed))]
    return [(location, _message(error))]


def _path(field: str | tuple[str, ...]) -> tuple[str, ...]:
    return (field,) if isinstance(field, str) else field


def _message(error: dict) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of keys to values, got {value!r}"
    text = error["msg"][0].lower() + error["msg"][1:]
    if kind == "string_type" and isinstance(value, (int, float)):
        return f"{text}, got the number {value!r}: put it in quotes to keep it as written"
    if not isinstance(value, (dict, list)):
        text += f", got {value!r}"
    return text


def _unknown_key(key: Any, allowed: list[str]) -> str:
    guess = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    return f"unknown key {key!r}: {hint}(allowed: {', '.join(allowed)})"


def _in_data(loc: tuple, data: Any, keep_missing: bool) -> Location:
    """Return the part of a pydantic location that exists in the data (dropping union member tags)."""
    location, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            if keep_missing and isinstance(node, dict):
                location.append(part)
            break
        location.append(part)
    return tuple(location)


def _fields_at(model: Any, location: Location) -> list[str]:
    """Return the field names of the model found at ``location`` inside ``model`` (best effort)."""
    for part in location:
        model = _member_type(model, part)
    model = _model_in(model)
    return list(model.model_fields) if model is not None else []


def _member_type(annotation: Any, part: Any) -> Any:
    model = _model_in(annotation)
    if model is not None and part in model.model_fields:
        return model.model_fields[part].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) in (list, tuple) and typing.get_args(candidate):
            return typing.get_args(candidate)[0]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):  # X, or X | None
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
