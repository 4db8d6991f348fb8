"""The Dagster layer: partitions, resources, assets, the IO manager, checks, schedules, sensors.

Everything Dagster sees is defined here and gathered by :mod:`template_pipeline.definitions`.
"""
