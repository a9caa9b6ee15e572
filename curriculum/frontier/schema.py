"""Frontier reply schemas as pydantic models, sent as OpenAI structured outputs (strict mode).

Frontier output is data, never code: every reply is parsed as JSON and validated by the pydantic
model the request named before anything reads it. A reply model is strict (no coercion: ``"3"`` is
not an integer, ``true`` is not a number) and forbids keys it does not declare; every constraint
a field declares (lengths, bounds, enums, patterns) is enforced, by pydantic, on the reply.

The request carries the model's JSON schema as the ``openai`` client's structured-output support
makes it (``type_to_response_format_param``: every property required, no additional ones), with
its ``$ref``s written out in place, so a server that reads the schema sees plain nested objects.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Reply(BaseModel):
    """Base of every reply model: strict types, no undeclared keys."""

    model_config = ConfigDict(extra="forbid", strict=True)


def text(max_length: int) -> Any:
    """A string field of at most ``max_length`` characters."""
    return Annotated[str, Field(max_length=max_length)]


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The strict JSON schema the ``openai`` client makes of ``model``, ``$ref``s written out."""
    from openai.lib._parsing._completions import type_to_response_format_param

    made = type_to_response_format_param(model)["json_schema"]["schema"]
    defs = made.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(copy.deepcopy(defs[ref.split("/")[-1]]))
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(made)


def response_format(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The ``response_format`` of a chat request whose reply must validate as ``model``."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": json_schema(model), "strict": True},
    }


def _path(loc: tuple[Any, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def errors(value: Any, model: type[BaseModel]) -> list[str]:
    """Every way ``value`` (parsed JSON) breaks ``model``, each naming its JSON path; empty when
    it validates."""
    try:
        model.model_validate(value, strict=True)
    except ValidationError as err:
        out = []
        for e in err.errors(include_url=False):
            loc = tuple(e["loc"])
            if e["type"] == "missing":
                out.append(f"{_path(loc[:-1])}: missing required key {loc[-1]!r}")
            elif e["type"] == "extra_forbidden":
                out.append(f"{_path(loc[:-1])}: unexpected key {loc[-1]!r}")
            else:
                out.append(f"{_path(loc)}: {e['msg']}")
        return out
    return []


def validated(value: Any, model: type[BaseModel]) -> dict[str, Any]:
    """``value`` as ``model`` reads it, as plain JSON data (raises ``ValidationError``)."""
    return model.model_validate(value, strict=True).model_dump(mode="json")
