"""The emulator's switches: one mutable dataclass, changeable at runtime in-process or over HTTP."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_API_KEY = "ws-emulator-key"

#: Terminal outcomes a test can ask for. ``nsfw`` means "completed, every output flagged NSFW".
OUTCOMES: tuple[str, ...] = ("completed", "failed", "cancelled", "timeout", "nsfw")


def new_webhook_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes, the shape the real API hands out."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def run_seconds_drawn(prediction_id: str, low: float, high: float) -> float:
    """A run time in ``[low, high]``, uniform over ids and the same every time for one id (its SHA-256)."""
    fraction = int.from_bytes(hashlib.sha256(prediction_id.encode()).digest()[:8], "big") / 2**64
    return low + (high - low) * fraction


class ConfigError(ValueError):
    """A switch update names an unknown switch or carries a value of the wrong type or range."""


@dataclass
class EmulatorConfig:
    """Every behaviour switch of the emulator.

    The running emulator reads these fields on every request, so assigning a field (in-process) or
    ``POST /_emulator/config`` (out-of-process) takes effect immediately. Queue/run times and output
    sizes are captured when a prediction is submitted, so changing them affects new predictions only.
    """

    api_key: str = DEFAULT_API_KEY
    #: Seconds a prediction stays ``created``.
    queue_seconds: float = 0.2
    #: Seconds a prediction stays ``processing`` after the queue phase.
    run_seconds: float = 1.0
    #: Per-model override of ``run_seconds`` (model id -> seconds).
    model_run_seconds: dict[str, float] = field(default_factory=dict)
    #: ``[low, high]``: each new prediction runs a time drawn uniformly from this range instead of
    #: ``run_seconds``, fixed by its id (``run_seconds_drawn``); a ``model_run_seconds`` entry still wins.
    run_seconds_range: list[float] | None = None
    #: Size in bytes of every output file (clamped up to the smallest valid file of its kind).
    output_size: int = 64 * 1024
    #: Per-model override of ``output_size`` (model id -> bytes).
    model_output_size: dict[str, int] = field(default_factory=dict)
    #: Delay added before every ``/api/v3`` response.
    latency_seconds: float = 0.0
    #: The next N ``/api/v3`` requests get HTTP 429 (counted down).
    rate_limit_next: int = 0
    #: Value of the ``Retry-After`` header on emulated 429 responses.
    rate_limit_retry_after: int = 1
    #: 0 = off; otherwise every Nth ``/api/v3`` request (counted from when the value was set) gets 503.
    fail_every_nth: int = 0
    #: The next N accepted submits create and bill the prediction, then drop the connection unanswered.
    lose_submit_replies: int = 0
    #: 0 = off; otherwise every Nth accepted submit (counted from when the value was set) creates and
    #: bills the prediction, then answers 502 (a gateway that lost the API's reply).
    lose_submit_reply_every_nth: int = 0
    #: History items carry the submitted ``input`` (the docs' history examples do not; webhooks do).
    history_includes_input: bool = False
    #: Other pipelines on the same account: predictions created per emulated minute (0 = none). Nobody
    #: polls them, but the history lists them among ours (``state.OtherTraffic``, ``BACKGROUND_MIX``:
    #: 3 % failed, 1 % timeout, 1 % cancelled, 1 % deleted, the rest completed).
    background_traffic_per_minute: float = 0.0
    #: Seconds each of them runs (after ``queue_seconds``).
    background_run_seconds: float = 30.0
    #: When the traffic is switched on, it also "was there" this many seconds before (older history pages).
    background_backfill_seconds: float = 0.0
    #: Their models, in turn; empty: every model of the catalogue in turn (ours included: the hard case).
    background_models: list[str] = field(default_factory=list)
    #: While true no prediction gets past ``processing``: a test holds a state until it has seen it,
    #: then sets this back to false and every held prediction moves on by its own clock.
    hold_predictions: bool = False
    #: The next N output GETs send full headers and then close after ``cut_after_bytes`` body bytes.
    cut_downloads: int = 0
    cut_after_bytes: int = 1024
    #: Honour ``Range`` requests on outputs and uploads (206). False: always 200 with the full body.
    range_support: bool = True
    #: Terminal outcomes for the next submits, popped in order (see ``OUTCOMES``).
    next_outcomes: list[str] = field(default_factory=list)
    #: Account balance in USD; every accepted submit subtracts the model's price.
    balance: float = 100.0
    #: HTTP status of ``GET /api/v3/models`` (anything but 200 answers with an error envelope).
    models_endpoint_status: int = 200
    #: False: ``POST /api/v3/media/uploads`` answers 404 so clients fall back to the legacy upload.
    upload_ticket_supported: bool = True
    #: How long a submit with ``enable_sync_mode`` waits for the result before answering the sync
    #: timeout (HTTP 200, status ``processing``, ``data.code`` 5004); the prediction keeps running.
    sync_window_seconds: float = 90.0
    #: 0 = off; otherwise accepted submits per API key in any 60 s window; more get 429.
    submits_per_minute: int = 0
    #: The length of that "minute" in seconds (60 like the API; tests shorten it).
    submit_window_seconds: float = 60.0
    #: The docs name no ``Retry-After`` on a 429: the emulator sends one only when this is true.
    submit_limit_retry_after: bool = False
    #: 0 = off; otherwise predictions running at once. Those over the limit stay ``created`` until a
    #: slot frees, then run for their full ``run_seconds``.
    max_concurrency: int = 0
    #: False: ``POST /api/v3/model/pricing`` answers 404.
    pricing_endpoint_enabled: bool = True
    #: False: ``POST /api/v3/model/price`` answers 404.
    price_endpoint_enabled: bool = True
    #: False: ``POST /api/v3/predictions/delete`` answers 404 (an API with only the older ``DELETE`` form).
    delete_endpoint_enabled: bool = True
    #: Served by ``GET /api/v3/webhook/secret``; webhooks are signed with it (``whsec_`` stripped).
    webhook_secret: str = field(default_factory=new_webhook_secret)
    #: Delivery attempts per webhook (a non-2xx answer or a network error is retried).
    webhook_max_attempts: int = 3
    #: Emulated seconds before retry N waits N times this.
    webhook_retry_seconds: float = 1.0
    #: Real seconds a webhook receiver has to answer one attempt.
    webhook_timeout_seconds: float = 5.0

    def run_seconds_for(self, model_id: str, prediction_id: str = "") -> float:
        """How long a new prediction of ``model_id`` runs: the model's override, else a time drawn from
        ``run_seconds_range`` for ``prediction_id``, else ``run_seconds``."""
        if model_id in self.model_run_seconds:
            return float(self.model_run_seconds[model_id])
        if self.run_seconds_range is not None:
            return run_seconds_drawn(prediction_id, self.run_seconds_range[0], self.run_seconds_range[1])
        return float(self.run_seconds)

    def output_size_for(self, model_id: str) -> int:
        return int(self.model_output_size.get(model_id, self.output_size))

    def copy(self) -> EmulatorConfig:
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def restore_from(self, other: EmulatorConfig) -> None:
        """Overwrite every field in place (so references to this object stay valid)."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, copy.deepcopy(getattr(other, f.name)))


_FLOAT_FIELDS = {
    "queue_seconds",
    "run_seconds",
    "latency_seconds",
    "balance",
    "sync_window_seconds",
    "submit_window_seconds",
    "webhook_retry_seconds",
    "webhook_timeout_seconds",
    "background_traffic_per_minute",
    "background_run_seconds",
    "background_backfill_seconds",
}
_COUNT_FIELDS = {
    "output_size",
    "rate_limit_next",
    "rate_limit_retry_after",
    "fail_every_nth",
    "lose_submit_replies",
    "lose_submit_reply_every_nth",
    "cut_downloads",
    "cut_after_bytes",
    "submits_per_minute",
    "max_concurrency",
    "webhook_max_attempts",
}
_BOOL_FIELDS = {
    "range_support",
    "upload_ticket_supported",
    "history_includes_input",
    "hold_predictions",
    "submit_limit_retry_after",
    "pricing_endpoint_enabled",
    "price_endpoint_enabled",
    "delete_endpoint_enabled",
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coerce(name: str, value: object) -> object:
    """Validate one switch value and return it in its canonical Python type."""
    if name in ("api_key", "webhook_secret"):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"Invalid switch '{name}': must be a non-empty string")
        return value
    if name in _FLOAT_FIELDS:
        if not _is_number(value):
            raise ConfigError(f"Invalid switch '{name}': must be a number")
        assert isinstance(value, int | float)
        if name != "balance" and value < 0:
            raise ConfigError(f"Invalid switch '{name}': must be >= 0")
        return float(value)
    if name in _COUNT_FIELDS:
        if not _is_int(value):
            raise ConfigError(f"Invalid switch '{name}': must be an integer")
        assert isinstance(value, int)
        minimum = 1 if name == "webhook_max_attempts" else 0
        if value < minimum:
            raise ConfigError(f"Invalid switch '{name}': must be >= {minimum}")
        return value
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ConfigError(f"Invalid switch '{name}': must be a boolean")
        return value
    if name == "models_endpoint_status":
        if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
            raise ConfigError("Invalid switch 'models_endpoint_status': must be an HTTP status (100-599)")
        return value
    if name == "next_outcomes":
        if not isinstance(value, list) or not all(isinstance(v, str) and v in OUTCOMES for v in value):
            raise ConfigError(f"Invalid switch 'next_outcomes': must be a list of {', '.join(OUTCOMES)}")
        return list(value)
    if name == "background_models":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError("Invalid switch 'background_models': must be a list of model ids")
        return list(value)
    if name == "run_seconds_range":
        if value is None:
            return None
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(_is_number(v) for v in value)
            or not 0 <= value[0] <= value[1]
        ):
            raise ConfigError("Invalid switch 'run_seconds_range': must be null or [low, high] with 0 <= low <= high")
        return [float(value[0]), float(value[1])]
    if name in ("model_run_seconds", "model_output_size"):
        check = _is_number if name == "model_run_seconds" else _is_int
        if not isinstance(value, dict) or not all(isinstance(k, str) and check(v) and v >= 0 for k, v in value.items()):
            raise ConfigError(f"Invalid switch '{name}': must map model ids to non-negative numbers")
        if name == "model_run_seconds":
            return {k: float(v) for k, v in value.items()}
        return {k: int(v) for k, v in value.items()}
    raise ConfigError(f"Unknown switch: {name}")


def apply_config_updates(config: EmulatorConfig, updates: Mapping[str, object]) -> list[str]:
    """Validate every update first, then apply them all; returns the names of the switches set.

    Raises ``ConfigError`` (and changes nothing) if any key is unknown or any value is invalid.
    """
    known = {f.name for f in dataclasses.fields(config)}
    coerced: dict[str, object] = {}
    for name, value in updates.items():
        if name not in known:
            raise ConfigError(f"Unknown switch: {name}")
        coerced[name] = _coerce(name, value)
    for name, value in coerced.items():
        setattr(config, name, value)
    return sorted(coerced)
