"""template-pipeline: keeps the Dashboard's PostgreSQL in sync with every Template artist site."""

__version__ = "0.1.0"
