"""Derived tables built in SQL from what is already stored: order lines from the orders.

``template_order_items`` holds one row per item of each live order. The items were validated
with their order on the way in and are stored as JSON in ``template_orders.items``, so the lines
are staged by one ``INSERT ... SELECT`` on the server: nothing travels back to Python, and the
merge then writes only the lines that changed.
"""

from __future__ import annotations

from functools import cache

import psycopg
from psycopg import sql
from sqlalchemy.dialects import postgresql

from template_pipeline.store.idents import idents
from template_pipeline.store.staging import ORD, STAGE, create_stage
from template_pipeline.store.tables import table_spec, template_orders

# The item fields that have columns of their own; the others are kept in ``extra``.
_ITEM_FIELDS = ("painting_id", "name", "image", "price", "quantity")


@cache
def _cast(column: str) -> sql.Composable:
    """``CAST(e.item ->> '<column>' AS <the column's type>)``."""
    column_type = table_spec("order_items").table.c[column].type
    type_name = column_type.compile(dialect=postgresql.dialect())
    return sql.SQL("CAST(e.item ->> {field} AS {type})").format(
        field=sql.Literal(column), type=sql.SQL(type_name)
    )


def stage_order_items(cur: psycopg.Cursor, site: str) -> int:
    """Stage the lines of the site's live orders; how many lines there are.

    The staged columns are the table's in order: order_id, line_no, the item fields, extra (a
    test keeps them so).
    """
    spec = table_spec("order_items")
    create_stage(cur, spec)
    extra = sql.SQL("e.item")
    for name in _ITEM_FIELDS:
        extra = sql.SQL("{} - {}").format(extra, sql.Literal(name))
    cur.execute(
        sql.SQL(
            "INSERT INTO {stage} ({cols}) "
            "SELECT o.template_id, e.n, {painting_id}, e.item ->> 'name', e.item ->> 'image', "
            "{price}, COALESCE({quantity}, 1), {extra}, row_number() OVER () "
            "FROM {orders} o CROSS JOIN LATERAL jsonb_array_elements("
            "CASE WHEN jsonb_typeof(o.items) = 'array' THEN o.items ELSE '[]'::jsonb END"
            ") WITH ORDINALITY AS e(item, n) "
            "WHERE o.site = %s AND o.deleted_at IS NULL"
        ).format(
            stage=STAGE,
            cols=idents((*spec.data_columns, ORD)),
            painting_id=_cast("painting_id"),
            price=_cast("price"),
            quantity=_cast("quantity"),
            extra=extra,
            orders=sql.Identifier(template_orders.name),
        ),
        (site,),
    )
    return cur.rowcount
