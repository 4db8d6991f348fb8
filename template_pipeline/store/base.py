"""The one ``MetaData`` of the Dashboard schema, and the column types its tables share."""

from __future__ import annotations

import sqlalchemy as sa

from template_pipeline.domain.vocabulary import sql_in

metadata = sa.MetaData()

MONEY = sa.Numeric(12, 2)
TIMESTAMPTZ = sa.DateTime(timezone=True)


def check_in(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    """The CHECK constraint ``<table>_<column>_check`` keeping ``column`` in a vocabulary."""
    return sa.CheckConstraint(sql_in(column, values), name=f"{table}_{column}_check")
