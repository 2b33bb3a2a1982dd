"""The one exception hierarchy of the WaveSpeed API core, in the API's own words.

No exception text ever contains the API key: messages are built from the API's reply, the
request path and our own words, never from headers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class WaveSpeedError(Exception):
    """Base class of every error raised by this provider's API layer."""


class WaveSpeedConfigError(WaveSpeedError):
    """The connection or a parameter is unusable before any request is sent (no key, bad base URL)."""


class WaveSpeedInputError(WaveSpeedError, ValueError):
    """Model inputs failed validation before submit: nothing was sent, nothing was billed."""

    def __init__(self, model: str, problems: Sequence[str]) -> None:
        self.model = model
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid inputs for model {model!r} (nothing was submitted):\n{listed}")


class WaveSpeedAPIError(WaveSpeedError):
    """The API answered with an error status (HTTP or envelope ``code``)."""

    def __init__(self, status_code: int, message: str, *, path: str = "") -> None:
        self.status_code = status_code
        self.api_message = message
        self.path = path
        where = f" on {path}" if path else ""
        super().__init__(f"WaveSpeed API error {status_code}{where}: {message}")


class WaveSpeedAuthError(WaveSpeedAPIError):
    """401/403: the key is wrong, not activated, or the account is suspended. Never retried."""

    def __init__(self, status_code: int, message: str, *, path: str = "") -> None:
        super().__init__(status_code, message, path=path)
        hint = (
            "check the API key in the connection's password field; keys are created at "
            "https://wavespeed.ai/accesskey and need a first top-up to activate"
            if status_code == 401
            else "the account may be suspended or the key lacks permission"
        )
        self.args = (f"{self.args[0]}. Next step: {hint}",)


class WaveSpeedRequestError(WaveSpeedAPIError):
    """An explicit 4xx rejection (bad or missing parameter, unknown model). Never retried."""


class WaveSpeedNotFoundError(WaveSpeedRequestError):
    """404: unknown model or prediction id (predictions are kept for 7 days)."""


class WaveSpeedRateLimitError(WaveSpeedAPIError):
    """429: the account's rate limit. Safe to retry, honouring ``retry_after`` when given."""

    def __init__(self, message: str, *, path: str = "", retry_after: float | None = None) -> None:
        super().__init__(429, message, path=path)
        self.retry_after = retry_after


class WaveSpeedServerError(WaveSpeedAPIError):
    """5xx: transient on the API side. Retried for reads; ambiguous for a submit."""

    def __init__(self, status_code: int, message: str, *, path: str = "", retry_after: float | None = None) -> None:
        super().__init__(status_code, message, path=path)
        self.retry_after = retry_after


class WaveSpeedConnectionError(WaveSpeedError):
    """The request did not get an answer (refused, reset, timed out)."""

    def __init__(self, message: str, *, path: str = "", request_sent: bool = True) -> None:
        self.path = path
        self.request_sent = request_sent
        super().__init__(f"{message} ({path})" if path else message)


class WaveSpeedSubmitRefused(WaveSpeedError):
    """The submit was not made and asking again will not change that (over max_cost, rate limited past
    rate_limit_timeout, a retry that cannot tell its earlier prediction apart). Nothing was billed."""


class WaveSpeedSubmitAmbiguousError(WaveSpeedError):
    """A submit may or may not have created a (billed) prediction, and history could not tell which.

    ``window`` is the span searched (``SubmitWindow.to_json()``), so a later try can search it again.
    """

    def __init__(
        self, model: str, message: str, candidate_ids: Sequence[str] = (), window: Mapping[str, Any] | None = None
    ) -> None:
        self.model = model
        self.candidate_ids = list(candidate_ids)
        self.window = dict(window) if window is not None else None
        super().__init__(message)


class WaveSpeedPredictionFailed(WaveSpeedError):
    """The prediction reached a terminal status other than ``completed``."""

    def __init__(
        self,
        prediction_id: str,
        *,
        model: str = "",
        status: str = "failed",
        error: str = "",
        code: int | None = None,
    ) -> None:
        self.prediction_id = prediction_id
        self.model = model
        self.status = status
        self.error = error
        self.code = code
        parts = [f"WaveSpeed prediction {prediction_id}"]
        if model:
            parts.append(f"(model {model})")
        parts.append(f"ended with status {status!r}")
        text = " ".join(parts)
        if code not in (None, 0):
            text += f", code {code}"
        if error:
            text += f": {error.rstrip().rstrip('.')}"  # the next step starts its own sentence
        text += _next_step(status, code)
        super().__init__(text)


class WaveSpeedDownloadError(WaveSpeedError):
    """An output could not be stored completely."""


class WaveSpeedIncompleteDownload(WaveSpeedDownloadError):
    """The connection ended before the announced number of bytes arrived: resumable, retry-safe."""


class WaveSpeedWebhookError(WaveSpeedError, ValueError):
    """A received webhook failed verification (format, signature or replay window): do not trust its body."""


def _next_step(status: str, code: int | None) -> str:
    if status == "deleted":
        return ". The prediction was deleted; its outputs are gone."
    if code is not None and 1400 <= code < 1500:
        return ". Fix the inputs named above and submit again."
    if code == 1200:
        return ". The content was flagged by moderation; change the inputs."
    if code is not None and code >= 5000:
        return ". This is a server-side error; submitting again later may succeed."
    return ". Look the prediction id up in the WaveSpeed console for details."
