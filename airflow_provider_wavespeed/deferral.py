"""Deferral settings shared by every operator and sensor here: the ``deferrable`` default, and how soon
a deferred task may be resumed. Both live in the provider's own ``[wavespeed]`` config section
(declared in ``get_provider_info``, so ``airflow config list`` shows them with their descriptions)."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.common.compat.sdk import conf

#: Default of ``[wavespeed] min_deferral_seconds``.
MIN_DEFERRAL_SECONDS = 10.0
#: Default of ``[wavespeed] default_deferrable``.
DEFAULT_DEFERRABLE = True
#: Added to the wait's own limit in ``defer(timeout=...)``: Airflow's deferral timeout is a backstop behind
#: the trigger's deadline (which ends the wait with a clear message), never the first to fire.
DEFER_TIMEOUT_GRACE = timedelta(minutes=5)


def min_deferral_seconds() -> float:
    """The shortest time a task stays deferred (``[wavespeed] min_deferral_seconds``, default 10 s).

    Resuming sooner races Airflow itself (seen on 3.1 and 3.3 with the LocalExecutor): the worker that
    deferred needs a few seconds to exit, and when the scheduler learns of that exit only after the
    resumed try has started, it marks the running try failed ("task state changed externally"). So
    a trigger holds an early event until then; fast jobs that must not wait use ``enable_sync_mode``
    or ``deferrable=False``.
    """
    return max(0.0, conf.getfloat("wavespeed", "min_deferral_seconds", fallback=MIN_DEFERRAL_SECONDS))


def default_deferrable() -> bool:
    """``[wavespeed] default_deferrable`` (default True): whether WaveSpeed waits defer to the triggerer.

    Deliberately not ``[operators] default_deferrable``: Airflow writes that option, set to ``false``,
    into every ``airflow.cfg`` it generates (``airflow db migrate``, ``airflow standalone``, the first
    start of any component), so its presence says nothing about what a deployment chose, and reading it
    would make every wait of a standard deployment hold a worker slot. The provider's own option is
    declared with the default ``True``, so a generated file says ``True`` too, and only a deployment
    that writes ``False`` (or sets ``AIRFLOW__WAVESPEED__DEFAULT_DEFERRABLE=False``) turns deferral off.
    """
    return conf.getboolean("wavespeed", "default_deferrable", fallback=DEFAULT_DEFERRABLE)
