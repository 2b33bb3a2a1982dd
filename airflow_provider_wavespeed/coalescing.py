"""``[wavespeed] coalesced_polling``: whether deferred waits of one account share history sweeps
(``api.coordinator``) instead of each polling its prediction by id. Declared in ``get_provider_info``."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import conf

#: Default of ``[wavespeed] coalesced_polling``.
DEFAULT_COALESCED_POLLING = True


def coalesced_polling() -> bool:
    """``[wavespeed] coalesced_polling`` (default True); a trigger's own ``coalesce=`` wins over it."""
    return conf.getboolean("wavespeed", "coalesced_polling", fallback=DEFAULT_COALESCED_POLLING)
