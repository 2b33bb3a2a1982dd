"""``python -m airflow_provider_wavespeed.emulator``."""

import sys

from airflow_provider_wavespeed.emulator.cli import main

sys.exit(main())
