"""The store layer: the Dashboard schema, its migrations, staging + merge, reads, locks.

No Dagster here: the IO manager in :mod:`template_pipeline.defs` calls
:func:`~template_pipeline.store.writer.write_snapshot` and the readers of :mod:`.reads`.
"""
