"""The machinery every config section shares: typed fields checked where they are declared.

A section is a dataclass that derives from ``Section``. Its ``__post_init__`` first checks and
coerces every field against its type hint (an int where a float is declared becomes a float; a
str where an int is declared is refused), then runs the section's own ``check``. So a section
built in code (``TrainConfig(steps=0)``) is refused as early as one read from YAML, and with the
same one-line message. Errors name the field by its dotted key: a section knows its usual place
(``SECTION``); ``build`` puts the real one in when a section sits elsewhere (a judge endpoint).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, ClassVar, Literal


class ConfigError(ValueError):
    """A bad config file, key or value; the message names the culprit in one line."""


class FieldError(ConfigError):
    """A bad value of one field of a section. ``template`` holds ``{key}`` where the field's
    dotted key goes, so the section that holds this one can name it by its full path."""

    def __init__(self, key: str, template: str, prefix: str = "") -> None:
        self.key, self.template = key, template
        super().__init__(template.format(key=prefix + key))


class Section:
    """Base of every config dataclass: type checks on construction, then ``check``."""

    SECTION: ClassVar[str] = ""
    """The dotted place of this section in the whole config (``train``, ``curriculum.mix``)."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        prefix = f"{self.SECTION}." if self.SECTION else ""
        try:
            for f in dataclasses.fields(self):  # type: ignore[arg-type]
                setattr(self, f.name, coerce(hints[f.name], getattr(self, f.name), f.name))
            self.check()
        except FieldError as err:
            raise FieldError(err.key, err.template, prefix) from None

    def check(self) -> None:
        """The section's own value checks (ranges, cross-field rules); raise with ``require``."""


def require(ok: bool, key: str, problem: str) -> None:
    """Refuse field ``key`` of the current section unless ``ok``: "<dotted key> <problem>"."""
    if not ok:
        raise FieldError(key, "{key}" + ("" if problem.startswith(":") else " ") + _esc(problem))


def finite(x: float) -> bool:
    return math.isfinite(x)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def build(cls: type, raw: Any, prefix: str) -> Any:
    """Construct section ``cls`` from a mapping read from YAML, refusing unknown keys with the
    nearest valid one; field errors are named by their key under ``prefix``."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            valid = [prefix + n for n in names]
            close = difflib.get_close_matches(prefix + str(key), valid, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(names)})"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        kwargs[key] = _nested(hints[key], value, prefix + key)
    try:
        return cls(**kwargs)
    except FieldError as err:
        raise FieldError(err.key, err.template, prefix) from None


def _nested(tp: Any, value: Any, key: str) -> Any:
    """Sections inside ``value`` (directly, in a list, or in an optional) built from mappings;
    everything else is left to the section's own type check."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_section(tp):
        return build(tp, value if value is not None else {}, key + ".")
    if origin in (typing.Union, types.UnionType) and value is not None:
        sections = [a for a in args if _is_section(a)]
        if sections and isinstance(value, dict):
            return build(sections[0], value, key + ".")
    if origin is list and args and _is_section(args[0]) and isinstance(value, list):
        return [build(args[0], v, f"{key}[{i}].") for i, v in enumerate(value)]
    return value


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def coerce(tp: Any, value: Any, key: str) -> Any:
    """``value`` as type ``tp`` (ints widen to floats), or a ``FieldError`` naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_section(tp):
        if isinstance(value, tp):
            return value
        raise FieldError(key, "config key '{key}' must be a mapping, got " + _describe(value))
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, key)
            except FieldError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise FieldError(
            key, "config key '{key}' must be one of " + _esc(f"{list(args)}, got {value!r}{hint}")
        )
    if origin is list:
        if not isinstance(value, list):
            raise FieldError(key, "config key '{key}' must be a list, got " + _describe(value))
        return [_item(args[0], v, key, f"[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldError(key, "config key '{key}' must be a mapping, got " + _describe(value))
        return {coerce(args[0], k, key): _item(args[1], v, key, f".{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    name = getattr(tp, "__name__", str(tp))
    raise FieldError(key, "config key '{key}' must be " + f"{_esc(name)}, got {_describe(value)}")


def _item(tp: Any, value: Any, key: str, suffix: str) -> Any:
    """An element of a list or mapping field, named ``key[i]`` / ``key.name`` in errors."""
    try:
        return coerce(tp, value, key)
    except FieldError as err:
        if err.template.startswith("config key '{key}'"):
            raise FieldError(key, err.template.replace("{key}", "{key}" + suffix, 1)) from None
        raise


def _describe(value: Any) -> str:
    return _esc(f"{type(value).__name__} {value!r}")


def _esc(text: str) -> str:
    """``text`` safe inside a ``FieldError`` template."""
    return text.replace("{", "{{").replace("}", "}}")


def type_text(tp: Any) -> str:
    """A type hint as the config reference shows it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " / ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in args).replace("NoneType", "null")
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_text(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))
