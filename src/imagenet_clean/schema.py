"""Typed construction of a frozen dataclass tree from a YAML mapping, with errors that name the dotted key.

:func:`build` walks a dataclass's fields: nested dataclasses and ``dict[str, <dataclass>]`` sections are
built recursively, every other value is type-checked against the field's annotation and, when the field's
metadata carries a ``check`` (see ``config._check``), range-checked. Unknown keys, wrong types and
out-of-range values raise :class:`~imagenet_clean.errors.ConfigError` naming the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from .errors import ConfigError


def _type_ok(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return isinstance(value, tp)


def _describe(tp) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def build(cls, data, path: str):
    """The dataclass ``cls`` built from the mapping ``data`` found at the dotted ``path`` (``""`` at the top)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'params'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=repr)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown key {where}{unknown[0]!r}; allowed keys: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        tp = hints[name]
        kwargs[name] = _convert(value, tp, key, fields[name])
    return cls(**kwargs)


def _convert(value, tp, key: str, f=None):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is dict and typing.get_args(tp) and dataclasses.is_dataclass(typing.get_args(tp)[1]):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of names to sections, got {value!r}")
        sub = typing.get_args(tp)[1]
        return {str(k): build(sub, v, f"{key}.{k}") for k, v in value.items()}
    if not _type_ok(value, tp):
        raise ConfigError(f"{key}: {value!r} has the wrong type; expected {_describe(tp)}")
    if f is not None and value is not None and "check" in f.metadata:
        try:
            ok = f.metadata["check"](value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"{key}: {value!r} is out of range; allowed: {f.metadata['allowed']}")
    if isinstance(value, list) and _accepts_tuple(tp):
        return tuple(value)
    return value


def _accepts_tuple(tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_accepts_tuple(a) for a in typing.get_args(tp))
    return origin is tuple

