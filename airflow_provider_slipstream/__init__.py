"""Apache Airflow provider for Slipstream AudioVerify music recognition."""

__version__ = "0.1.0"
