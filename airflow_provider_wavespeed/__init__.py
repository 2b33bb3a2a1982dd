"""Apache Airflow provider for the WaveSpeedAI inference API."""

__version__ = "0.2.0"
