"""The simulator's invalid records: a share of each list, each breaking one validation rule.

A share of the records (``invalid_ratio``) is made invalid, each breaking one rule of the
pipeline's validation; their ids and kinds are recorded so tests can find them among the rejects.
The choice is deterministic (its own seeded stream per entity).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from template_pipeline.apps.simulator.config import SimSite
from template_pipeline.apps.simulator.generate import money, order_total, site_rng, to_decimal

# Kinds of invalid records, per entity; generation cycles through them. Each one breaks a rule
# of template_pipeline.domain.models (the Dashboard's required fields, integer ids, no negative
# money or count, no NUL character, user emails and roles), so every invalid record must end up
# among the rejects. Order and custom-request emails are display text there: only their absence
# is broken here. A non-integer id is the record's id plus a half (12.5), which keeps the lists
# in id order.
INVALID_KINDS: dict[str, tuple[str, ...]] = {
    "paintings": (
        "negative_price",
        "missing_name",
        "empty_name",
        "nul_in_name",
        "negative_quantity",
        "missing_category",
        "missing_image",
        "non_integer_id",
    ),
    "users": ("bad_email", "empty_name", "nul_in_name", "unknown_role", "missing_email"),
    "orders": (
        "negative_item_price",
        "missing_total_price",
        "nul_in_customer_name",
        "missing_customer_name",
        "missing_email",
        "missing_order_date",
        "non_integer_id",
    ),
    "exhibitions": ("missing_title", "nul_in_title", "non_integer_id"),
    "custom_requests": ("negative_budget", "nul_in_message", "non_integer_id"),
}
# Kinds that drop one field of the record.
_MISSING = {
    "missing_name": "name",
    "missing_category": "category",
    "missing_image": "image",
    "missing_email": "email",
    "missing_customer_name": "customer_name",
    "missing_order_date": "order_date",
    "missing_total_price": "total_price",
    "missing_title": "title",
}


def _negate(value: Any) -> Any:
    number = to_decimal(value)
    if number is None:
        return -1.0
    negative = -abs(number) if number else Decimal("-1")
    return f"{negative:.2f}" if isinstance(value, str) else float(negative)


def _insert_nul(text: Any) -> str:
    text = str(text or "x")
    cut = max(1, len(text) // 2)
    return text[:cut] + "\x00" + text[cut:]


def _corrupt(entity: str, kind: str, record: dict[str, Any]) -> None:
    if kind in _MISSING:
        record.pop(_MISSING[kind], None)
    elif kind == "non_integer_id":
        record["id"] = record["id"] + 0.5
    elif kind == "negative_price":
        record["price"] = _negate(record.get("price"))
    elif kind == "empty_name":
        record["name"] = ""
    elif kind == "nul_in_name":
        record["name"] = _insert_nul(record.get("name"))
    elif kind == "negative_quantity":
        record["quantity"] = -1
    elif kind == "bad_email":
        # No "@": wrong under any email rule, however lenient.
        record["email"] = str(record.get("email", "x@example.fr")).replace("@", ".")
    elif kind == "unknown_role":
        record["role"] = "superadmin"
    elif kind == "negative_item_price":
        items = record["items"]
        items[0]["price"] = _negate(items[0]["price"])
        # Keep the total arithmetic right: only the item price is wrong.
        record["total_price"] = money(
            order_total(items), as_text=isinstance(record["total_price"], str)
        )
    elif kind == "nul_in_customer_name":
        record["customer_name"] = _insert_nul(record.get("customer_name"))
    elif kind == "nul_in_title":
        record["title"] = _insert_nul(record.get("title"))
    elif kind == "negative_budget":
        record["budget"] = _negate(record.get("budget", 500.0))
    elif kind == "nul_in_message":
        record["message"] = _insert_nul(record.get("message"))
    else:  # pragma: no cover - INVALID_KINDS and this function are kept together
        raise ValueError(f"unknown invalid kind {kind!r} for {entity}")


def _invalid_count(n: int, ratio: float) -> int:
    if n == 0 or ratio <= 0:
        return 0
    # At least one as soon as the ratio is positive: small demo sites must show a reject.
    return min(n, max(1, round(n * ratio)))


def make_invalid(
    site: SimSite, entity: str, records: list[dict[str, Any]]
) -> dict[int | float, str]:
    rng = site_rng(site, f"{entity}:invalid")
    rows = sorted(rng.sample(range(len(records)), _invalid_count(len(records), site.invalid_ratio)))
    kinds = INVALID_KINDS[entity]
    offset = rng.randrange(len(kinds))
    # Keyed by the id as served (12.5 for a non-integer id).
    chosen: dict[int | float, str] = {}
    for j, row in enumerate(rows):
        kind = kinds[(j + offset) % len(kinds)]
        record = records[row]
        if kind == "negative_item_price" and not record["items"]:
            kind = "missing_total_price"  # an order without items has no item price to break
        _corrupt(entity, kind, record)
        chosen[record["id"]] = kind
    return chosen
