"""The WaveSpeed Airflow UI plugin: a run tab with the outputs and their cost, a spend page, a media endpoint.

Served by the api-server (``plugin.py`` registers it through the ``airflow.plugins`` entry point). Nothing
here runs on workers: importing this package or ``plugin.py`` imports no FastAPI code.
"""
