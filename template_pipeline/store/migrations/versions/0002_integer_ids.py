"""Ids become bigint: ``template_id``, ``order_id``, ``painting_id`` (and items' painting_id).

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-02

Release 0.1.0 stored ids as text, so a site could have sent ``"P-7"`` and been stored. No row
is lost: a row whose id is not an integer in the bigint range, or an order one of whose items
has such a ``painting_id``, is moved to ``template_rejects`` (``run_id`` ``migration-0002``, the
whole row as the payload, a reason naming the field), which is also where this release puts
such a record when a site sends it. So are rows that the conversion would make duplicates
(``"012"`` beside ``"12"``): the live, most recently synced one, in its canonical spelling
first, is kept. The counts are logged. Then the columns are converted in place.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

logger = logging.getLogger("template_pipeline.store.migrations")

MARK = "migration-0002"
# (table, entity, id columns): the first column is the key the rejects show as template_id.
_TABLES = (
    ("template_paintings", "paintings", ("template_id",)),
    ("template_users", "users", ("template_id",)),
    ("template_orders", "orders", ("template_id",)),
    ("template_exhibitions", "exhibitions", ("template_id",)),
    ("template_custom_requests", "custom_requests", ("template_id",)),
    ("template_order_items", "order_items", ("order_id", "painting_id")),
)
_NULLABLE = frozenset({"painting_id"})
_KEYS = {"template_order_items": ("order_id", "line_no")}


def _is_bigint(expr: str) -> str:
    # CASE, not AND: SQL does not promise to test the pattern before the cast.
    return (
        f"(CASE WHEN btrim({expr}) ~ '^[+-]?[0-9]{{1,40}}$' THEN btrim({expr})::numeric "
        "BETWEEN -9223372036854775808 AND 9223372036854775807 ELSE false END)"
    )


def _items_elements(column: str = "items") -> str:
    return (
        f"jsonb_array_elements(CASE WHEN jsonb_typeof({column}) = 'array' THEN {column} "
        "ELSE '[]'::jsonb END)"
    )


_ITEM_PAINTING_ID = "(e ->> 'painting_id')"
_BAD_ITEM = (
    f"EXISTS (SELECT 1 FROM {_items_elements()} AS e WHERE jsonb_typeof(e) = 'object' "
    "AND jsonb_typeof(e -> 'painting_id') IN ('string', 'number') "
    f"AND NOT {_is_bigint(_ITEM_PAINTING_ID)})"
)


def _run(statement: str) -> int | None:
    if context.is_offline_mode():
        op.execute(statement)
        return None
    return op.get_bind().execute(sa.text(statement)).rowcount


def _quarantine(table: str, entity: str, id_column: str, where: str, reason: str) -> int | None:
    """Move the rows of ``table`` matching ``where`` to template_rejects, whole."""
    return _run(
        f"WITH moved AS (DELETE FROM {table} AS t WHERE {where} RETURNING t.*) "
        "INSERT INTO template_rejects (site, entity, template_id, reason, payload, run_id) "
        f"SELECT site, '{entity}', {id_column}::text, {reason}, to_jsonb(moved), '{MARK}' "
        "FROM moved"
    )


def _reason(text_sql: str, table: str) -> str:
    return f"'migration 0002: ' || {text_sql} || '; the row was moved here from {table}'"


def _not_integer(column: str, table: str) -> str:
    shown = f"'{column}: not an integer (got ' || quote_literal(left({column}, 40)) || ')'"
    return _reason(shown, table)


def _quarantine_non_integers(table: str, entity: str, columns: tuple[str, ...]) -> int:
    moved = 0
    for column in columns:
        where = f"NOT {_is_bigint(f't.{column}')}"
        if column in _NULLABLE:
            where = f"t.{column} IS NOT NULL AND {where}"
        moved += _quarantine(table, entity, columns[0], where, _not_integer(column, table)) or 0
    if table == "template_orders":
        reason = _reason("'items: a painting_id is not an integer'", table)
        moved += _quarantine(table, entity, columns[0], _BAD_ITEM, reason) or 0
    return moved


def _quarantine_duplicates(table: str, entity: str, id_column: str) -> int:
    keys = _KEYS.get(table, (id_column,))
    partition = ", ".join(f"btrim({k})::bigint" if k == id_column else k for k in keys)
    canonical = f"({id_column} = (btrim({id_column})::bigint)::text)"
    ranked = (
        f"SELECT ctid AS row_ctid, row_number() OVER (PARTITION BY site, {partition} "
        f"ORDER BY (deleted_at IS NULL) DESC, synced_at DESC, {canonical} DESC, {id_column}) "
        f"AS n FROM {table}"
    )
    shown = (
        f"'{id_column}: ' || quote_literal({id_column}) || ' is the same integer as the id "
        "of another row of the site, which was kept'"
    )
    where = f"t.ctid IN (SELECT row_ctid FROM ({ranked}) AS r WHERE r.n > 1)"
    return _quarantine(table, entity, id_column, where, _reason(shown, table)) or 0


def _convert_items_painting_ids() -> None:
    converted = (
        "CASE WHEN jsonb_typeof(e) = 'object' AND jsonb_typeof(e -> 'painting_id') = 'string' "
        "THEN jsonb_set(e, '{painting_id}', to_jsonb(btrim(e ->> 'painting_id')::bigint)) "
        "ELSE e END"
    )
    _run(
        f"UPDATE template_orders SET items = (SELECT jsonb_agg({converted} ORDER BY n) "
        "FROM jsonb_array_elements(items) WITH ORDINALITY AS x(e, n)) "
        f"WHERE EXISTS (SELECT 1 FROM {_items_elements()} AS e "
        "WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e -> 'painting_id') = 'string')"
    )


def upgrade() -> None:
    total = 0
    for table, entity, columns in _TABLES:
        moved = _quarantine_non_integers(table, entity, columns)
        moved += _quarantine_duplicates(table, entity, columns[0])
        if moved:
            logger.warning(
                "0002: %s: %d row(s) whose id is not a distinct integer moved to "
                "template_rejects (run_id %s)",
                table,
                moved,
                MARK,
            )
        total += moved
        for column in columns:
            op.alter_column(
                table,
                column,
                type_=sa.BigInteger,
                existing_type=sa.Text,
                existing_nullable=column in _NULLABLE,
                postgresql_using=f"btrim({column})::bigint",
            )
    _convert_items_painting_ids()
    if not context.is_offline_mode():
        logger.info("0002: ids are bigint; %d row(s) moved to template_rejects in all", total)


def downgrade() -> None:
    # The quarantined rows stay in template_rejects: they were not valid ids of either release.
    for table, _entity, columns in _TABLES:
        for column in columns:
            op.alter_column(
                table,
                column,
                type_=sa.Text,
                existing_type=sa.BigInteger,
                existing_nullable=column in _NULLABLE,
                postgresql_using=f"{column}::text",
            )
    op.execute(
        "UPDATE template_orders SET items = (SELECT jsonb_agg(CASE WHEN jsonb_typeof(e) = "
        "'object' AND jsonb_typeof(e -> 'painting_id') = 'number' THEN jsonb_set(e, "
        "'{painting_id}', to_jsonb(e ->> 'painting_id')) ELSE e END ORDER BY n) "
        "FROM jsonb_array_elements(items) WITH ORDINALITY AS x(e, n)) "
        "WHERE jsonb_typeof(items) = 'array' AND jsonb_array_length(items) > 0"
    )
