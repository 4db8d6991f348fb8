"""Alerts: failed checks, failed runs and site outages, sent once each to the configured sinks.

:mod:`.sinks` stores, logs and posts one alert; :mod:`.scan` reads the event log for new ones.
"""
