"""Predictions and their statuses, as the WaveSpeed v3 API reports them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from airflow_provider_wavespeed.api.errors import WaveSpeedPredictionFailed
from airflow_provider_wavespeed.api.timestamps import parse_iso


class PredictionStatus(StrEnum):
    CREATED = "created"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    DELETED = "deleted"


TERMINAL_FAILURE_STATUSES = frozenset(
    {PredictionStatus.FAILED, PredictionStatus.CANCELLED, PredictionStatus.TIMEOUT, PredictionStatus.DELETED}
)
TERMINAL_STATUSES = TERMINAL_FAILURE_STATUSES | {PredictionStatus.COMPLETED}

#: Stands in for a base64 output wherever a prediction travels through Airflow's metadata DB
#: (trigger events, XCom): the task that stores the outputs fetches the bytes from the API itself.
INLINE_OUTPUT_MARKER = "wavespeed:base64-output-left-out"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MIN_INLINE_LENGTH = 64


def is_inline_output(item: Any) -> bool:
    """An ``enable_base64_output`` output: naked base64 (no ``data:`` prefix), not a URL or short text."""
    return (
        isinstance(item, str)
        and len(item) >= _MIN_INLINE_LENGTH
        and len(item) % 4 == 0
        and not item.startswith(("http://", "https://"))
        and _BASE64.fullmatch(item) is not None
    )


def is_terminal(status: str) -> bool:
    """Unknown strings are treated as still running, like the official SDKs do."""
    return status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Prediction:
    """One prediction (``data`` of a submit or result reply). ``raw`` keeps every field the API sent."""

    id: str
    model: str
    status: str
    outputs: list[Any] = field(default_factory=list)
    error: str = ""
    code: int | None = None
    has_nsfw_contents: list[bool] = field(default_factory=list)
    created_at: str = ""
    result_url: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Prediction:
        code = data.get("code")
        return cls(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or ""),
            status=str(data.get("status") or ""),
            outputs=list(data.get("outputs") or []),
            error=str(data.get("error") or ""),
            code=code if isinstance(code, int) else None,
            has_nsfw_contents=[bool(x) for x in data.get("has_nsfw_contents") or []],
            created_at=str(data.get("created_at") or ""),
            result_url=str((data.get("urls") or {}).get("get") or ""),
            raw=dict(data),
        )

    @property
    def created_epoch(self) -> float | None:
        """``created_at`` in epoch seconds (None when the API did not say)."""
        return parse_iso(self.created_at)

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)

    @property
    def succeeded(self) -> bool:
        return self.status == PredictionStatus.COMPLETED

    @property
    def has_left_out_outputs(self) -> bool:
        """True when base64 outputs were replaced by :data:`INLINE_OUTPUT_MARKER` on the way."""
        return INLINE_OUTPUT_MARKER in self.outputs

    def without_inline_outputs(self) -> Prediction:
        """This prediction with every base64 output replaced by a marker: small enough for the metadata DB."""
        if not any(is_inline_output(item) for item in self.outputs):
            return self
        outputs = [INLINE_OUTPUT_MARKER if is_inline_output(item) else item for item in self.outputs]
        return replace(self, outputs=outputs, raw={**self.raw, "outputs": outputs})

    def output_urls(self) -> list[str]:
        """Output URLs in order; structured outputs count when they carry a ``url``."""
        urls = []
        for item in self.outputs:
            if isinstance(item, str) and item.startswith(("http://", "https://")):
                urls.append(item)
            elif isinstance(item, dict) and isinstance(item.get("url"), str):
                urls.append(item["url"])
        return urls

    def raise_for_status(self) -> None:
        """Raise :class:`WaveSpeedPredictionFailed` if the prediction ended in a failure status."""
        if self.status in TERMINAL_FAILURE_STATUSES:
            raise self.failure()

    def failure(self) -> WaveSpeedPredictionFailed:
        return WaveSpeedPredictionFailed(
            self.id, model=self.model, status=self.status, error=self.error, code=self.code
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON dict for XCom and trigger events: the API's own fields, unchanged."""
        return dict(self.raw) if self.raw else {"id": self.id, "model": self.model, "status": self.status}
