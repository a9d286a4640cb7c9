"""Typed values from mappings a user wrote (YAML): one checker for every file the kit reads settings from.

A study plan, a trainer config and a task spec all go through `typed` or `expected`, so a misspelled key, a
missing field or a value of the wrong type is reported the same way everywhere: the file, the field's path,
what was expected and what was found.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

WORDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
_NOTHING = object()  # a value of no type: `expected(_NOTHING, hint)` is the hint in words
PLURALS = {str: "texts", int: "whole numbers", float: "numbers", bool: "true or false values"}


def typed(cls: type, data: Any, source: str, error: type[Exception], prefix: str = "", coerce: bool = False) -> Any:
    """The dataclass `cls` from a mapping; see `typed_values`."""
    return cls(**typed_values(cls, data, source, error, prefix, coerce))


def typed_values(cls: type, data: Any, source: str, error: type[Exception], prefix: str = "",
                 coerce: bool = False) -> dict[str, Any]:
    """The mapping's values checked against `cls`'s fields: an unknown key, a missing required field or a value of
    the wrong type raises `error` naming `source` (the file) and the field (after `prefix`, e.g. "race.").
    `coerce` also takes what YAML reads as text or numbers where another type is meant (`lr: 1e-4` is text)."""
    where = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise error(f"{where}field '{prefix.rstrip('.') or '(top level)'}': expected a mapping, got {shown(data)}")
    allowed = tuple(f.name for f in dataclasses.fields(cls))
    for key in data:
        if key not in allowed:
            raise error(f"{where}field '{prefix}{key}': {unknown_key(key, allowed)}")
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in data:
            raise error(f"{where}field '{prefix}{f.name}': missing")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        try:
            values[name] = coerced(value, hints[name]) if coerce else value
            problem = expected(values[name], hints[name])
        except ValueError:
            problem = expected(_NOTHING, hints[name])
        if problem:
            raise error(f"{where}field '{prefix}{name}': expected {problem}, got {shown(value)}")
    return values


def expected(value: Any, hint: Any) -> str | None:
    """What `hint` asks for, in words, when `value` is not of that type; None when it is."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    words = []
    for option in options:
        if option is type(None):
            if value is None:
                return None
            words.append("null")
            continue
        origin, args = typing.get_origin(option) or option, typing.get_args(option)
        if origin is list:
            item = args[0] if args else Any
            if isinstance(value, list) and (item is Any or all(expected(v, item) is None for v in value)):
                return None
            words.append("a list" if item is Any else f"a list of {PLURALS.get(item, _words(item))}")
        elif origin is dict:
            if isinstance(value, dict) and all(isinstance(k, str) for k in value):
                return None
            words.append("a mapping")
        elif _is(value, origin):
            return None
        else:
            words.append(_words(origin))
    return " or ".join(words)


def coerced(value: Any, hint: Any) -> Any:
    """`value` converted to the scalar type `hint` names where YAML read it as another (text `1e-4`, `2` for a text
    setting, `4.0` for a whole number); ValueError where it cannot be, as `true` for a number cannot."""
    wanted = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    kind = wanted[0]
    if value is None or (isinstance(value, bool) and bool not in wanted) or kind not in WORDS:
        return value  # `expected` judges these as they are
    if isinstance(value, tuple(wanted)) and not (kind is float and isinstance(value, int)):
        return value
    if kind is str:
        if not isinstance(value, (int, float)):
            raise ValueError(value)
        return str(value)
    if kind is bool:
        flags = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if str(value).lower() not in flags:
            raise ValueError(value)
        return flags[str(value).lower()]
    try:
        number = float(value)
        if kind is int and number != int(number):
            raise ValueError(value)
        return int(number) if kind is int else number
    except (TypeError, OverflowError):
        raise ValueError(value) from None


def unknown_key(key: Any, allowed: tuple[str, ...]) -> str:
    """A misspelled key would otherwise be ignored silently and its default used: say so, and what was meant."""
    close = difflib.get_close_matches(str(key), allowed, n=1)
    return "unknown key" + (f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(allowed)})")


def shown(value: object) -> str:
    """A value as an error message quotes it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2 ** 63
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _words(kind: Any) -> str:
    return WORDS.get(kind, "a mapping" if dataclasses.is_dataclass(kind) else getattr(kind, "__name__", str(kind)))
