"""Integration tests: a real Docker Engine and a real Airflow deployment (see conftest.py)."""
