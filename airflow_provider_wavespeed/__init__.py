"""Apache Airflow provider for the WaveSpeedAI inference API."""

__version__ = "0.4.0"
