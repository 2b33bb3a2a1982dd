"""The emulated model catalogue: schemas as ``GET /api/v3/models`` reports them, and input validation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_wavespeed.emulator.media import OutputKind

JsonType = Literal["string", "integer", "number", "boolean", "array"]

SEED_MIN = -1
SEED_MAX = 2147483647

_NO_DEFAULT: Any = object()


class InputError(ValueError):
    """Submitted inputs do not match the model schema; the message names the field (HTTP 400)."""


@dataclass(frozen=True)
class ParamSpec:
    """One model input, rendered as a JSON-schema property."""

    name: str
    type: JsonType
    description: str
    required: bool = False
    default: Any = _NO_DEFAULT
    enum: tuple[str, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    pattern: str | None = None
    #: The value is a media URL the (emulated) server downloads; a non-http(s) value fails the run (1402).
    media: bool = False

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    def schema(self) -> dict[str, Any]:
        prop: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.enum is not None:
            prop["enum"] = list(self.enum)
        if self.minimum is not None:
            prop["minimum"] = self.minimum
        if self.maximum is not None:
            prop["maximum"] = self.maximum
        if self.pattern is not None:
            prop["pattern"] = self.pattern
        if self.has_default:
            prop["default"] = self.default
        if self.media:
            prop["x-ui-component"] = "uploader"
        return prop


@dataclass(frozen=True)
class ModelSpec:
    """One emulated model: identity, price, input schema and what it outputs."""

    model_id: str
    name: str
    description: str
    type: str
    base_price: float
    params: tuple[ParamSpec, ...]
    output_kind: OutputKind
    #: Input that sets how many outputs a run produces (``None``: always one).
    count_param: str | None = None

    def request_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "x-order-properties": [p.name for p in self.params],
        }

    def to_api(self) -> dict[str, Any]:
        """The model object of ``GET /api/v3/models``."""
        return {
            "model_id": self.model_id,
            "name": self.name,
            "description": self.description,
            "type": self.type,
            "base_price": self.base_price,
            "api_schema": {"api_schemas": [{"type": "model_run", "request_schema": self.request_schema()}]},
        }

    def output_count(self, inputs: Mapping[str, Any]) -> int:
        if self.count_param is None:
            return 1
        value = inputs.get(self.count_param, 1)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else 1


def _json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_matches(expected: JsonType, value: object) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    return isinstance(value, list)


def _fmt(number: int | float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _check_value(param: ParamSpec, value: object) -> None:
    if not _type_matches(param.type, value):
        raise InputError(f"Invalid parameter '{param.name}': expected {param.type}, got {_json_type_name(value)}")
    if param.enum is not None and value not in param.enum:
        raise InputError(f"Invalid parameter '{param.name}': must be one of {', '.join(param.enum)}")
    if isinstance(value, int | float) and (param.minimum is not None or param.maximum is not None):
        low_ok = param.minimum is None or value >= param.minimum
        high_ok = param.maximum is None or value <= param.maximum
        if not (low_ok and high_ok):
            if param.minimum is not None and param.maximum is not None:
                bounds = f"must be between {_fmt(param.minimum)} and {_fmt(param.maximum)}"
            elif param.minimum is not None:
                bounds = f"must be >= {_fmt(param.minimum)}"
            else:
                assert param.maximum is not None
                bounds = f"must be <= {_fmt(param.maximum)}"
            raise InputError(f"Invalid parameter '{param.name}': {bounds}")
    if param.pattern is not None and isinstance(value, str) and not re.fullmatch(param.pattern, value):
        raise InputError(f"Invalid parameter '{param.name}': does not match the pattern {param.pattern}")


def validate_inputs(spec: ModelSpec, body: Mapping[str, Any]) -> dict[str, Any]:
    """Check a submit body against the model schema; return the inputs with defaults filled in.

    Unknown extra fields are ignored (kept in the result untouched). ``null`` counts as absent.
    Raises ``InputError`` naming the first offending field, in schema order.
    """
    result: dict[str, Any] = dict(body)
    for param in spec.params:
        value = body.get(param.name)
        if value is None or (param.required and value == ""):
            if param.required:
                raise InputError(f"Missing required parameter: {param.name}")
            result.pop(param.name, None)
            if param.has_default:
                result[param.name] = param.default
            continue
        _check_value(param, value)
    return result


def media_problem(spec: ModelSpec, inputs: Mapping[str, Any]) -> str | None:
    """Name of the first media input that the emulated server cannot "download" (not an http(s) URL)."""
    for param in spec.params:
        if not param.media:
            continue
        value = inputs.get(param.name)
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            return param.name
    return None


_SEED = ParamSpec(
    "seed",
    "integer",
    "The random seed to use for the generation. -1 means a random seed will be used.",
    minimum=SEED_MIN,
    maximum=SEED_MAX,
)


def _avatar_params() -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("image", "string", "The image for generating the output.", required=True, media=True),
        ParamSpec("audio", "string", "The audio for generating the output.", required=True, media=True),
        ParamSpec("prompt", "string", "The positive prompt for the generation."),
        ParamSpec(
            "resolution",
            "string",
            "The resolution of the output video.",
            default="480p",
            enum=("480p", "720p"),
        ),
        _SEED,
    )


HUNYUAN_AVATAR = ModelSpec(
    model_id="wavespeed-ai/hunyuan-avatar",
    name="Hunyuan Avatar",
    description=(
        "Hunyuan Avatar is an audio-driven conversational AI video generation model. Create talking or "
        "singing videos from a single image and audio input."
    ),
    type="image-to-video",
    base_price=0.15,
    params=_avatar_params(),
    output_kind="mp4",
)

INFINITETALK = ModelSpec(
    model_id="wavespeed-ai/infinitetalk",
    name="InfiniteTalk",
    description="Audio-driven talking-avatar video from a single portrait image and an audio track.",
    type="image-to-video",
    base_price=0.15,
    params=_avatar_params(),
    output_kind="mp4",
)

FLUX_DEV = ModelSpec(
    model_id="wavespeed-ai/flux-dev",
    name="FLUX.1 [dev]",
    description="A 12 billion parameter rectified flow transformer that generates images from text.",
    type="text-to-image",
    base_price=0.025,
    params=(
        ParamSpec("prompt", "string", "The positive prompt for the generation.", required=True),
        ParamSpec(
            "size",
            "string",
            "The size of the generated media in pixels (width*height).",
            default="1024*1024",
            pattern=r"[0-9]+\*[0-9]+",
        ),
        ParamSpec("num_images", "integer", "The number of images to generate.", default=1, minimum=1, maximum=4),
        _SEED,
        ParamSpec(
            "output_format",
            "string",
            "The format of the output image.",
            default="jpeg",
            enum=("jpeg", "png", "webp"),
        ),
        ParamSpec(
            "enable_safety_checker",
            "boolean",
            "If set to true, the safety checker will be enabled.",
            default=True,
        ),
    ),
    output_kind="png",
    count_param="num_images",
)

CATALOGUE: dict[str, ModelSpec] = {m.model_id: m for m in (HUNYUAN_AVATAR, INFINITETALK, FLUX_DEV)}


def get_model(model_id: str) -> ModelSpec | None:
    return CATALOGUE.get(model_id)


def catalogue_json() -> list[dict[str, Any]]:
    return [spec.to_api() for spec in CATALOGUE.values()]
