"""The Alembic migrations of the Dashboard schema (``env.py``, ``versions/``).

Applied by :func:`template_pipeline.store.migrate.upgrade` (``template-pipeline migrate``);
Alembic loads these files by path, nothing imports them.
"""
