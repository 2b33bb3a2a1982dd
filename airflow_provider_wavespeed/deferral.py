"""Deferral settings shared by every operator and sensor here: the ``deferrable`` default, and how soon
a deferred task may be resumed."""

from __future__ import annotations

import configparser
import os

from airflow.providers.common.compat.sdk import conf

#: Default of ``[wavespeed] min_deferral_seconds``.
MIN_DEFERRAL_SECONDS = 10.0


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
    """``[operators] default_deferrable`` when the deployment sets it (as official providers read it), else True.

    Airflow's own default for that option is false; waiting in the triggerer is what this provider is
    built for, so only an explicit setting (environment or airflow.cfg) turns it off.
    """
    explicit = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE" in os.environ or configparser.ConfigParser.has_option(
        conf, "operators", "default_deferrable"
    )
    return conf.getboolean("operators", "default_deferrable") if explicit else True
