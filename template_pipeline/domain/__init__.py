"""The domain layer: entities (the one registry), sites, models, validation, batches.

Nothing here imports Dagster, the HTTP client or the database: the simulator, the validation
benchmarks and every layer above use it as plain Python.
"""
