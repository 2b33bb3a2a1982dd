"""The WaveSpeed API core: HTTP, JSON and WaveSpeed, no Airflow."""
