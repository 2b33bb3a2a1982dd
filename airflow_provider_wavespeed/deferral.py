"""The ``deferrable`` default of every operator and sensor here."""

from __future__ import annotations

import configparser
import os

from airflow.providers.common.compat.sdk import conf


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` when the deployment sets it (as official providers read it), else True.

    Airflow's own default for that option is false; waiting in the triggerer is what this provider is
    built for, so only an explicit setting (environment or airflow.cfg) turns it off.
    """
    explicit = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE" in os.environ or configparser.ConfigParser.has_option(
        conf, "operators", "default_deferrable"
    )
    return conf.getboolean("operators", "default_deferrable") if explicit else True
