"""Alembic's environment: run the revisions on the connection :mod:`..migrate` hands over.

Online, the revisions run on ``config.attributes["connection"]``, inside the transaction (and
under the advisory lock) that :func:`template_pipeline.store.migrate.upgrade` holds, so two
processes migrating at once apply each revision once. Offline (``template-pipeline migrate
--sql``) they print their SQL to ``config.attributes["output_buffer"]``.

The version table is ``template_alembic_version`` (the Dashboard application may run an Alembic
of its own in the same database), and only this project's tables are compared by autogenerate:
the Dashboard's other tables are not ours to drop.
"""

from __future__ import annotations

from alembic import context

from template_pipeline.store.migrate import include_name, target_metadata
from template_pipeline.store.schema_version import VERSION_TABLE

config = context.config
_options = {
    "target_metadata": target_metadata(),
    "version_table": VERSION_TABLE,
    "include_name": include_name,
    "compare_type": True,
}

if context.is_offline_mode():
    context.configure(
        url="postgresql+psycopg://",
        literal_binds=True,
        output_buffer=config.attributes.get("output_buffer"),
        **_options,
    )
else:
    context.configure(connection=config.attributes["connection"], **_options)

with context.begin_transaction():
    context.run_migrations()
