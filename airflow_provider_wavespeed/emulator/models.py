"""The emulated model catalogue: schemas as ``GET /api/v3/models`` reports them, and input validation.

Users extend it with model objects of that same shape (``wavespeed-emulator --models FILE``,
``WaveSpeedEmulator(models=...)``); see ``ModelSpec.from_api`` for what is read. An optional
``x-emulator`` object on a model says what the emulator makes of it (output kind, count input,
pricing); without it the output kind follows the model ``type`` and the price is ``base_price``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from airflow_provider_wavespeed.emulator.media import OutputKind
from airflow_provider_wavespeed.emulator.pricing import PerSecondsPricing

JsonType = Literal["string", "integer", "number", "boolean", "array", "object"]
JSON_TYPES: tuple[str, ...] = get_args(JsonType)
OUTPUT_KINDS: tuple[str, ...] = get_args(OutputKind)
#: Optional body flags a model may declare (wavespeed-api.md 3.2); the emulator honours them only then.
SYNC_FLAG = "enable_sync_mode"
BASE64_FLAG = "enable_base64_output"

SEED_MIN = -1
SEED_MAX = 2147483647

_NO_DEFAULT: Any = object()


class InputError(ValueError):
    """Submitted inputs do not match the model schema; the message names the field (HTTP 400)."""


class ModelCatalogueError(ValueError):
    """A user-supplied model object cannot be read; the message names the model and the field."""


@dataclass(frozen=True)
class ParamSpec:
    """One model input, rendered as a JSON-schema property."""

    name: str
    type: JsonType
    description: str
    required: bool = False
    default: Any = _NO_DEFAULT
    enum: tuple[Any, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    pattern: str | None = None
    #: The value is a media URL the (emulated) server downloads; a non-http(s) value fails the run (1402).
    media: bool = False

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    @classmethod
    def from_schema(cls, name: str, prop: Mapping[str, Any], required: bool) -> ParamSpec:
        kind = prop.get("type", "string")
        if kind not in JSON_TYPES:
            raise ValueError(f"property {name!r}: type must be one of {', '.join(JSON_TYPES)}, got {kind!r}")
        enum = prop.get("enum")
        if enum is not None and not isinstance(enum, list):
            raise ValueError(f"property {name!r}: enum must be a list")
        bounds = {key: prop.get(key) for key in ("minimum", "maximum")}
        for key, bound in bounds.items():
            if bound is not None and (not isinstance(bound, int | float) or isinstance(bound, bool)):
                raise ValueError(f"property {name!r}: {key} must be a number")
        pattern = prop.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError(f"property {name!r}: pattern must be a string")
        return cls(
            name=name,
            type=cast(JsonType, kind),
            description=str(prop.get("description", "")),
            required=required,
            default=prop.get("default", _NO_DEFAULT),
            enum=tuple(enum) if enum is not None else None,
            minimum=bounds["minimum"],
            maximum=bounds["maximum"],
            pattern=pattern,
            media=prop.get("x-ui-component") == "uploader",
        )

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
    #: None: every run costs ``base_price``.
    pricing: PerSecondsPricing | None = None

    def declares(self, flag: str) -> bool:
        """Whether the schema declares ``flag`` (e.g. ``enable_sync_mode``)."""
        return any(p.name == flag for p in self.params)

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
            "x-emulator": {
                "output_kind": self.output_kind,
                "count_param": self.count_param,
                "pricing": self.pricing.to_json() if self.pricing is not None else None,
            },
        }

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> ModelSpec:
        """Read a model object as ``GET /api/v3/models`` lists it. Raises ``ModelCatalogueError``."""
        if not isinstance(entry, Mapping):
            raise ModelCatalogueError("a model must be a JSON object")
        model_id = entry.get("model_id")
        if not isinstance(model_id, str) or not model_id.strip("/") or " " in model_id:
            raise ModelCatalogueError(f"model_id must be a non-empty path like 'owner/name', got {model_id!r}")
        try:
            return cls._from_api(model_id.strip("/"), entry)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelCatalogueError(f"model {model_id!r}: {exc}") from None

    @classmethod
    def _from_api(cls, model_id: str, entry: Mapping[str, Any]) -> ModelSpec:
        price = entry.get("base_price", 0.0)
        if not isinstance(price, int | float) or isinstance(price, bool) or price < 0:
            raise ValueError("base_price must be a number >= 0")
        schemas = (entry.get("api_schema") or {}).get("api_schemas") or []
        request = next((s["request_schema"] for s in schemas if isinstance(s, Mapping) and "request_schema" in s), None)
        if not isinstance(request, Mapping):
            raise ValueError("api_schema.api_schemas[0].request_schema is missing")
        properties = request.get("properties") or {}
        required = set(request.get("required") or [])
        if not isinstance(properties, Mapping):
            raise ValueError("request_schema.properties must be an object")
        order = [n for n in request.get("x-order-properties") or [] if n in properties]
        order += [n for n in properties if n not in order]
        params = tuple(ParamSpec.from_schema(n, properties[n], n in required) for n in order)
        kind = str(entry.get("type") or "text-to-image")
        extra = entry.get("x-emulator") or {}
        output_kind = extra.get("output_kind") or _output_kind_for(kind)
        if output_kind not in OUTPUT_KINDS:
            raise ValueError(f"x-emulator.output_kind must be one of {', '.join(OUTPUT_KINDS)}")
        pricing = extra.get("pricing")
        return cls(
            model_id=model_id,
            name=str(entry.get("name") or model_id),
            description=str(entry.get("description") or ""),
            type=kind,
            base_price=float(price),
            params=params,
            output_kind=cast(OutputKind, output_kind),
            count_param=extra.get("count_param"),
            pricing=PerSecondsPricing.from_json(pricing) if pricing else None,
        )

    def output_count(self, inputs: Mapping[str, Any]) -> int:
        if self.count_param is None:
            return 1
        value = inputs.get(self.count_param, 1)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else 1


def _output_kind_for(model_type: str) -> OutputKind:
    if "video" in model_type:
        return "mp4"
    if "audio" in model_type or "speech" in model_type:
        return "wav"
    return "png"


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
    if expected == "object":
        return isinstance(value, dict)
    return isinstance(value, list)


def _fmt(number: int | float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _check_value(param: ParamSpec, value: object) -> None:
    if not _type_matches(param.type, value):
        raise InputError(f"Invalid parameter '{param.name}': expected {param.type}, got {_json_type_name(value)}")
    if param.enum is not None and value not in param.enum:
        allowed = ", ".join(str(v) for v in param.enum)
        raise InputError(f"Invalid parameter '{param.name}': must be one of {allowed}")
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


def _seed(default: Any = _NO_DEFAULT) -> ParamSpec:
    return ParamSpec(
        "seed",
        "integer",
        "The random seed to use for the generation. -1 means a random seed will be used.",
        default=default,
        minimum=SEED_MIN,
        maximum=SEED_MAX,
    )


def _size(default: str) -> ParamSpec:
    return ParamSpec(
        "size",
        "string",
        "The size of the generated media in pixels (width*height).",
        default=default,
        pattern=r"[0-9]+\*[0-9]+",
    )


def _output_format() -> ParamSpec:
    return ParamSpec(
        "output_format", "string", "The format of the output image.", default="jpeg", enum=("jpeg", "png", "webp")
    )


_SYNC = ParamSpec(
    SYNC_FLAG,
    "boolean",
    "If set to true, the function will wait for the result to be generated and uploaded before returning the "
    "response. It allows you to get the result directly in the response. This property is only available "
    "through the API.",
    default=False,
)
_BASE64 = ParamSpec(
    BASE64_FLAG,
    "boolean",
    "If enabled, the output will be encoded into a BASE64 string instead of a URL. This property is only "
    "available through the API.",
    default=False,
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
        _seed(),
    )


# As documented (wavespeed-api.md 9.1): no sync or base64 flags; $0.15 per 5 s of audio, up to 120 s.
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
    pricing=PerSecondsPricing("audio", unit_seconds=5.0, max_seconds=120.0),
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
        _size("1024*1024"),
        ParamSpec("num_images", "integer", "The number of images to generate.", default=1, minimum=1, maximum=4),
        _seed(),
        _output_format(),
        ParamSpec(
            "enable_safety_checker",
            "boolean",
            "If set to true, the safety checker will be enabled.",
            default=True,
        ),
        _BASE64,
        _SYNC,
    ),
    output_kind="png",
    count_param="num_images",
)

# The official Python SDK's README model.
Z_IMAGE_TURBO = ModelSpec(
    model_id="wavespeed-ai/z-image/turbo",
    name="Z-Image Turbo",
    description="Z-Image-Turbo is a 6 billion parameter text-to-image model that generates photorealistic images.",
    type="text-to-image",
    base_price=0.005,
    params=(
        ParamSpec("prompt", "string", "The positive prompt for the generation.", required=True),
        _size("1024*1024"),
        _seed(-1),
        _output_format(),
        _SYNC,
        _BASE64,
    ),
    output_kind="png",
)

SEEDREAM_V45 = ModelSpec(
    model_id="bytedance/seedream-v4.5",
    name="Seedream v4.5",
    description="ByteDance image generation model with strong typography and poster design.",
    type="text-to-image",
    base_price=0.04,
    params=(
        ParamSpec("prompt", "string", "The positive prompt for the generation.", required=True),
        _size("2048*2048"),
        _SYNC,
        _BASE64,
    ),
    output_kind="png",
)

WAN_T2V_480P = ModelSpec(
    model_id="wavespeed-ai/wan-2.2/t2v-480p",
    name="Wan 2.2 Text-to-Video 480p",
    description="Text-to-video generation at 480p with cinematic motion.",
    type="text-to-video",
    base_price=0.15,
    params=(
        ParamSpec("prompt", "string", "The positive prompt for the generation.", required=True),
        ParamSpec("negative_prompt", "string", "The negative prompt for the generation."),
        ParamSpec(
            "size",
            "string",
            "The size of the generated media in pixels (width*height).",
            default="832*480",
            enum=("832*480", "480*832"),
        ),
        ParamSpec("duration", "integer", "The duration of the generated video in seconds.", default=5, enum=(5, 8)),
        _seed(-1),
    ),
    output_kind="mp4",
)

# Text to speech: its WAV outputs have a known duration, so they can drive an avatar model's price.
SPEECH_02_HD = ModelSpec(
    model_id="minimax/speech-02-hd",
    name="MiniMax Speech 02 HD",
    description="Text-to-speech with natural voices.",
    type="text-to-audio",
    base_price=0.05,
    params=(
        ParamSpec("text", "string", "The text to speak.", required=True),
        ParamSpec("voice_id", "string", "The voice to use.", default="Wise_Woman"),
        ParamSpec("speed", "number", "Speech speed.", default=1.0, minimum=0.5, maximum=2.0),
    ),
    output_kind="wav",
)

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    HUNYUAN_AVATAR,
    INFINITETALK,
    FLUX_DEV,
    Z_IMAGE_TURBO,
    SEEDREAM_V45,
    WAN_T2V_480P,
    SPEECH_02_HD,
)

#: The built-in catalogue (each emulator copies it and adds the user's models).
CATALOGUE: dict[str, ModelSpec] = {m.model_id: m for m in BUILTIN_MODELS}

ModelsSource = str | Path | Iterable[ModelSpec | Mapping[str, Any]]


def load_models(source: ModelsSource) -> list[ModelSpec]:
    """Model specs from a JSON file (a list of model objects) or from objects / specs in memory."""
    if isinstance(source, str | Path):
        try:
            entries = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelCatalogueError(f"cannot read models file {str(source)!r}: {exc}") from None
        if isinstance(entries, Mapping) and isinstance(entries.get("data"), list):
            entries = entries["data"]  # a saved GET /api/v3/models reply
        if not isinstance(entries, list):
            raise ModelCatalogueError(f"models file {str(source)!r} must hold a JSON list of model objects")
        source = entries
    return [item if isinstance(item, ModelSpec) else ModelSpec.from_api(item) for item in source]


def build_catalogue(extra: Iterable[ModelSpec] = ()) -> dict[str, ModelSpec]:
    """The built-in models plus ``extra`` (which replace built-ins of the same id)."""
    catalogue = dict(CATALOGUE)
    catalogue.update((spec.model_id, spec) for spec in extra)
    return catalogue


def get_model(model_id: str) -> ModelSpec | None:
    """A built-in model (emulators look models up in their own catalogue, which may hold more)."""
    return CATALOGUE.get(model_id)


def catalogue_json(catalogue: Mapping[str, ModelSpec] | None = None) -> list[dict[str, Any]]:
    return [spec.to_api() for spec in (catalogue if catalogue is not None else CATALOGUE).values()]
