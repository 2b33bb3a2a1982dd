"""Predictions and their statuses, as the WaveSpeed v3 API reports them."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    def output_urls(self) -> list[str]:
        """Output URLs in order; structured outputs count when they carry a ``url``."""
        urls = []
        for item in self.outputs:
            if isinstance(item, str):
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
