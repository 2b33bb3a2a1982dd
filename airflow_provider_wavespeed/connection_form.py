"""The ``wavespeed`` connection form, written once.

Airflow 3.2+ reads it from provider info (``connection-types[].ui-field-behaviour``, kebab-case keys);
Airflow 3.1 calls ``WaveSpeedHook.get_ui_field_behaviour()`` (snake_case keys). Both are built here from
the same three values. No imports: ``get_provider_info`` imports this and must stay cheap.
"""

from __future__ import annotations

#: What a new connection's Base URL defaults to (``api.client.DEFAULT_BASE_URL``; a test keeps them equal).
BASE_URL_PLACEHOLDER = "https://api.wavespeed.ai"

HIDDEN_FIELDS: tuple[str, ...] = ("schema", "port", "login", "extra")
RELABELING: dict[str, str] = {"password": "API Key", "host": "Base URL"}
PLACEHOLDERS: dict[str, str] = {"host": BASE_URL_PLACEHOLDER, "password": "your WaveSpeed API key"}


def provider_info_form() -> dict[str, object]:
    """``ui-field-behaviour`` for provider info (read by Airflow 3.2+)."""
    return {"hidden-fields": list(HIDDEN_FIELDS), "relabeling": dict(RELABELING), "placeholders": dict(PLACEHOLDERS)}


def hook_form() -> dict[str, object]:
    """``get_ui_field_behaviour()``'s answer (read by Airflow 3.1)."""
    return {"hidden_fields": list(HIDDEN_FIELDS), "relabeling": dict(RELABELING), "placeholders": dict(PLACEHOLDERS)}
