"""Reconciliation within a site: order totals against their items, items against paintings."""

from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from template_pipeline.defs.checks.facts import CheckTarget, check_result, md_table
from template_pipeline.defs.resources import TemplateCheckSettings
from template_pipeline.store.tables import template_order_items, template_orders, template_paintings


def _order_totals(site: str) -> sa.Subquery:
    """Per live order of ``site``: its total_price, its number of lines, the sum of its lines."""
    orders = template_orders
    items = (
        sa.func.jsonb_array_elements(
            sa.case(
                (sa.func.jsonb_typeof(orders.c["items"]) == "array", orders.c["items"]),
                else_=sa.cast("[]", JSONB),
            )
        )
        .table_valued(sa.column("value", JSONB))
        .lateral("item")
    )
    line_total = sa.cast(items.c.value["price"].astext, sa.Numeric) * sa.func.coalesce(
        sa.cast(items.c.value["quantity"].astext, sa.Numeric), 1
    )
    return (
        sa.select(
            orders.c.template_id,
            orders.c.total_price,
            sa.func.count(items.c.value).label("lines"),
            sa.func.round(sa.func.coalesce(sa.func.sum(line_total), 0), 2).label("items_total"),
        )
        .select_from(orders.outerjoin(items, sa.true()))
        .where(orders.c.site == site, orders.c.deleted_at.is_(None))
        .group_by(orders.c.template_id, orders.c.total_price)
        .subquery()
    )


def evaluate_order_totals(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    per_order = _order_totals(target.site)
    mismatch = sa.and_(per_order.c.lines > 0, per_order.c.items_total != per_order.c.total_price)
    counts = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(per_order.c.lines == 0),
            sa.func.count().filter(mismatch),
        ).select_from(per_order)
    ).one()
    n_orders, without_items, n_mismatches = (int(v) for v in counts)
    metadata: dict[str, Any] = {
        "orders": n_orders,
        "orders_checked": n_orders - without_items,
        "orders_without_items": without_items,
        "mismatches": n_mismatches,
    }
    if n_mismatches == 0:
        return check_result(True, f"every order total of site {target.site!r} adds up", metadata)
    first = conn.execute(
        sa.select(per_order.c.template_id, per_order.c.total_price, per_order.c.items_total)
        .where(mismatch)
        .order_by(per_order.c.template_id)
        .limit(settings.max_listed)
    ).all()
    metadata["first_mismatches"] = md_table(
        ("order", "total_price", "sum of items", "difference"),
        (
            (oid, total, items_total, Decimal(total) - Decimal(items_total))
            for oid, total, items_total in first
        ),
    )
    shown = ", ".join(str(oid) for oid, _, _ in first)
    return check_result(
        False,
        f"{n_mismatches} order(s) of site {target.site!r} have a total_price that differs from "
        f"the sum of their items (first: {shown})",
        metadata,
        dg.AssetCheckSeverity.WARN,
    )


def _item_reference_counts(conn: sa.Connection, site: str) -> dict[str, int]:
    """How the live order items of ``site`` relate to the paintings the site serves."""
    items, paintings = template_order_items, template_paintings
    elsewhere = sa.alias(paintings, "elsewhere")
    in_other_site = (
        sa.select(sa.literal(1))
        .where(elsewhere.c.template_id == items.c.painting_id, elsewhere.c.site != items.c.site)
        .exists()
    )
    counts = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(items.c.painting_id.is_(None)),
            sa.func.count().filter(_UNKNOWN),
            sa.func.count().filter(sa.and_(_UNKNOWN, in_other_site)),
            sa.func.count().filter(paintings.c.deleted_at.is_not(None)),
        )
        .select_from(_ITEMS_JOINED)
        .where(items.c.site == site, items.c.deleted_at.is_(None))
    ).one()
    n_items, without_ref, n_unknown, n_other_site, n_deleted = (int(v) for v in counts)
    return {
        "items": n_items,
        "referenced": n_items - without_ref - n_unknown,
        "unknown_painting": n_unknown,
        "painting_of_another_site": n_other_site,
        "painting_deleted_upstream": n_deleted,
        "without_painting_id": without_ref,
    }


# An item whose painting_id names no painting of its own site.
_ITEMS_JOINED = template_order_items.outerjoin(
    template_paintings,
    sa.and_(
        template_paintings.c.site == template_order_items.c.site,
        template_paintings.c.template_id == template_order_items.c.painting_id,
    ),
)
_UNKNOWN = sa.and_(
    template_order_items.c.painting_id.is_not(None), template_paintings.c.template_id.is_(None)
)


def evaluate_items_reference_paintings(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = _item_reference_counts(conn, target.site)
    n_unknown = metadata["unknown_painting"]
    if n_unknown == 0:
        return check_result(
            True,
            f"every order item of site {target.site!r} references a known painting",
            metadata,
        )
    items = template_order_items
    first = (
        conn.execute(
            sa.select(items.c.painting_id)
            .select_from(_ITEMS_JOINED)
            .where(items.c.site == target.site, items.c.deleted_at.is_(None), _UNKNOWN)
            .group_by(items.c.painting_id)
            .order_by(items.c.painting_id)
            .limit(settings.max_listed)
        )
        .scalars()
        .all()
    )
    metadata["first_unknown_paintings"] = dg.MetadataValue.json(list(first))
    return check_result(
        False,
        f"{n_unknown} order item(s) of site {target.site!r} reference paintings the site does "
        f"not serve ({metadata['painting_of_another_site']} of them exist on another site); "
        f"first: {', '.join(str(painting_id) for painting_id in first)}",
        metadata,
        dg.AssetCheckSeverity.WARN,
    )
