"""Check model inputs against the model's schema from ``GET /api/v3/models``, before any money is spent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


def request_schema(model_entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request schema of one ``/api/v3/models`` entry, in either shape the API has used."""
    api_schema = model_entry.get("api_schema") or {}
    if not isinstance(api_schema, Mapping):
        return None
    for item in api_schema.get("api_schemas") or []:
        if isinstance(item, Mapping) and isinstance(item.get("request_schema"), Mapping):
            return dict(item["request_schema"])
    openapi = ((api_schema.get("components") or {}).get("schemas") or {}).get("Request")
    return dict(openapi) if isinstance(openapi, Mapping) else None


def _type_ok(value: Any, expected: str) -> bool:
    types = _JSON_TYPES.get(expected)
    if types is None:
        return True
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False
    if expected == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, types)


def _check_value(name: str, value: Any, spec: Mapping[str, Any]) -> str | None:
    expected = spec.get("type")
    if isinstance(expected, str) and not _type_ok(value, expected):
        return f"{name}: expected {expected}, got {type(value).__name__} {value!r}"
    enum = spec.get("enum")
    if isinstance(enum, list) and enum and value not in enum:
        allowed = ", ".join(repr(v) for v in enum)
        return f"{name}: {value!r} is not allowed; use one of {allowed}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = spec.get("minimum"), spec.get("maximum")
        if (isinstance(low, int | float) and value < low) or (isinstance(high, int | float) and value > high):
            bounds = f"{low if low is not None else '-inf'} .. {high if high is not None else 'inf'}"
            return f"{name}: {value!r} is out of range; allowed {bounds}"
    return None


def validate_inputs(schema: Mapping[str, Any], inputs: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Return ``(problems, unknown_fields)``. Problems block the submit; unknown fields only warn,
    since whether the API rejects or ignores them differs between models."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    problems: list[str] = []
    for name in schema.get("required") or []:
        value = inputs.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            spec = properties.get(name) or {}
            what = spec.get("description") or spec.get("type") or "a value"
            problems.append(f"{name}: required but missing ({what})")
    for name, value in inputs.items():
        spec = properties.get(name)
        if isinstance(spec, Mapping) and value is not None:
            problem = _check_value(name, value, spec)
            if problem:
                problems.append(problem)
    unknown = sorted(name for name in inputs if properties and name not in properties)
    return problems, unknown
