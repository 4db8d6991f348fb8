"""The Dashboard's validation rules (DESIGN.md) and the id rules, record by record.

Under test: every required field of paintings, users and orders is a reject naming the field
when it is missing, null or blank; the painting defaults (quantity 1, status ``Disponible``) for
absent, null and blank values; ids (record ids and order items' ``painting_id``) accepted as
JSON integers, integral numbers and integer text, refused as booleans, fractions, exponents,
other text and values beyond the bigint range, with the raw id kept on the reject; and the id
columns' type and the bounds the models apply.
"""

from __future__ import annotations

from typing import Any

import pytest

from template_pipeline.domain.models import fields
from template_pipeline.domain.validation import validate_records
from template_pipeline.domain.vocabulary import DEFAULT_PAINTING_STATUS
from template_pipeline.store import tables

VALID: dict[str, dict[str, Any]] = {
    "paintings": {
        "id": 1,
        "name": "Nymphéas",
        "price": "1200.00",
        "category": "Paysage",
        "image": "Images/painting_1.jpg",
    },
    "users": {"id": 1, "name": "Zoé", "email": "zoe@example.fr"},
    "orders": {
        "id": 1,
        "customer_name": "Zoé Martin",
        "email": "zoe@example.fr",
        "total_price": "12.50",
        "order_date": "2024-03-01 10:22:00",
        "items": [{"painting_id": 3, "name": "Étude", "image": "i.jpg", "price": "12.50"}],
    },
}

REQUIRED = [
    ("paintings", "id"),
    ("paintings", "name"),
    ("paintings", "price"),
    ("paintings", "category"),
    ("paintings", "image"),
    ("users", "id"),
    ("users", "name"),
    ("users", "email"),
    ("orders", "id"),
    ("orders", "customer_name"),
    ("orders", "email"),
    ("orders", "total_price"),
    ("orders", "order_date"),
]


def _only(entity: str, record: dict[str, Any]):
    batch = validate_records(entity, [record], base_url="https://atelier.example/")
    assert len(batch.rows) + len(batch.rejects) == 1
    return batch


def _reason(entity: str, record: dict[str, Any]) -> str:
    batch = _only(entity, record)
    assert batch.rows == [], f"{entity} {record} was accepted"
    return batch.rejects[0].reason


@pytest.mark.parametrize("entity", sorted(VALID))
def test_the_smallest_valid_record_is_accepted(entity):
    assert len(_only(entity, VALID[entity]).rows) == 1


@pytest.mark.parametrize(("entity", "field"), REQUIRED)
@pytest.mark.parametrize(
    ("how", "expected"),
    [("absent", "required (missing)"), (None, "required (null)"), ("  ", "required (empty)")],
)
def test_required_fields(entity, field, how, expected):
    record = dict(VALID[entity])
    if how == "absent":
        del record[field]
    else:
        record[field] = how
    assert _reason(entity, record) == f"{field}: {expected}"


def test_a_zero_order_date_is_no_date():
    reason = _reason("orders", {**VALID["orders"], "order_date": "0000-00-00 00:00:00"})
    assert reason == "order_date: required (got the zero date '0000-00-00 00:00:00')"


def test_order_date_accepts_its_alias():
    record = {k: v for k, v in VALID["orders"].items() if k != "order_date"}
    row = _only("orders", {**record, "created_at": "2024-03-01"}).rows[0]
    assert row["order_date"].isoformat() == "2024-03-01T00:00:00+00:00"


def test_order_email_is_display_text_user_email_is_checked():
    assert _only("orders", {**VALID["orders"], "email": "Zoé (par téléphone)"}).rows
    assert _reason("users", {**VALID["users"], "email": "Zoé (par téléphone)"}).startswith(
        "email: not a valid email address"
    )


@pytest.mark.parametrize("how", ["absent", None, "", "  "])
def test_painting_defaults(how):
    record = dict(VALID["paintings"])
    if how != "absent":
        record.update(quantity=how, status=how)
    row = _only("paintings", record).rows[0]
    assert (row["quantity"], row["status"]) == (1, DEFAULT_PAINTING_STATUS) == (1, "Disponible")


def test_painting_values_sent_are_kept():
    row = _only("paintings", {**VALID["paintings"], "quantity": 0, "status": "Vendu"}).rows[0]
    assert (row["quantity"], row["status"]) == (0, "Vendu")
    assert row["image_url"] == "https://atelier.example/Images/painting_1.jpg"


@pytest.mark.parametrize(("raw", "role"), [("absent", "user"), ("admin", "admin"), ("", "user")])
def test_user_role_defaults_to_user(raw, role):
    record = dict(VALID["users"])
    if raw != "absent":
        record["role"] = raw
    assert _only("users", record).rows[0]["role"] == role


def test_other_roles_are_rejected():
    assert _reason("users", {**VALID["users"], "role": "editor"}).startswith("role: must be")


# --- ids -----------------------------------------------------------------------------------------

ACCEPTED_IDS = [
    (12, 12),
    ("12", 12),
    (" 12 ", 12),
    ("012", 12),
    ("+12", 12),
    ("-3", -3),
    (0, 0),
    (12.0, 12),
    (2**53, 2**53),
    (2**63 - 1, 2**63 - 1),
    (str(-(2**63)), -(2**63)),
]

REFUSED_IDS = [
    (12.5, "not an integer (got 12.5)"),
    ("12.5", "not an integer (got '12.5')"),
    ("12.0", "not an integer (got '12.0')"),
    (True, "not an integer (got true)"),
    (False, "not an integer (got false)"),
    ("1e3", "not an integer (got '1e3')"),
    ("1e400", "not an integer (got '1e400')"),
    (float("inf"), "not an integer (got inf)"),
    ("1_000", "not an integer (got '1_000')"),
    ("P-7", "not an integer (got 'P-7')"),
    ("١٢", "not an integer (got '١٢')"),
    ("0x10", "not an integer (got '0x10')"),
    ([1], "not an integer (got a list)"),
    ({"id": 1}, "not an integer (got an object)"),
    (2.0**60, "not an integer (got 1.152921504606847e+18)"),
    (2**63, "out of range for a 64-bit integer (got 9223372036854775808)"),
    (str(-(2**63) - 1), "out of range for a 64-bit integer (got '-9223372036854775809')"),
    ("9" * 5000, "out of range for a 64-bit integer (got '9999999999"),
]
# A record's own id is screened before validation (domain.screening): an id no column can hold
# is named for what it is, and the record quarantined alone.
SCREENED_IDS = {
    "inf": "not a finite number (got inf)",
    "9" * 5000: "5000 characters, longer than any id (at most 255)",
}


@pytest.mark.parametrize("entity", sorted(VALID))
@pytest.mark.parametrize(("raw", "expected"), ACCEPTED_IDS)
def test_accepted_ids(entity, raw, expected):
    row = _only(entity, {**VALID[entity], "id": raw}).rows[0]
    assert row["template_id"] == expected
    assert type(row["template_id"]) is int


@pytest.mark.parametrize("entity", ["paintings", "users", "orders", "exhibitions"])
@pytest.mark.parametrize(("raw", "message"), REFUSED_IDS)
def test_refused_ids_are_rejects_naming_the_field(entity, raw, message):
    base = VALID.get(entity, {"id": 1, "title": "Printemps"})
    batch = _only(entity, {**base, "id": raw})
    assert batch.rows == []
    [reject] = batch.rejects
    message = SCREENED_IDS.get(str(raw), message)
    assert reject.reason.startswith(f"id: {message}"), reject.reason
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        # The id as the site sent it, so the Dashboard can show which record it was (an id
        # longer than any id is kept shortened, with its length).
        assert reject.template_id.startswith(str(raw).strip()[:40])


@pytest.mark.parametrize(("raw", "expected"), [*ACCEPTED_IDS, (None, None), ("", None)])
def test_item_painting_ids(raw, expected):
    items = [{"painting_id": raw, "price": "12.50"}]
    row = _only("orders", {**VALID["orders"], "items": items}).rows[0]
    assert row["items"][0]["painting_id"] == expected


def test_an_item_without_painting_id_is_valid():
    row = _only("orders", {**VALID["orders"], "items": [{"price": "12.50"}]}).rows[0]
    assert row["items"][0]["painting_id"] is None


@pytest.mark.parametrize(("raw", "message"), REFUSED_IDS)
def test_refused_item_painting_ids(raw, message):
    items = [{"price": "1"}, {"painting_id": raw, "price": "12.50"}]
    reason = _reason("orders", {**VALID["orders"], "items": items})
    assert reason.startswith(f"items[1].painting_id: {message}"), reason


def test_id_columns_are_bigint_and_the_bounds_match():
    for table in (tables.template_paintings, tables.template_users, tables.template_orders):
        assert type(table.c.template_id.type).__name__ == "BigInteger"
    items = tables.template_order_items
    assert type(items.c.order_id.type).__name__ == "BigInteger"
    assert type(items.c.painting_id.type).__name__ == "BigInteger"
    assert (fields.BIGINT_MIN, fields.BIGINT_MAX) == (-(2**63), 2**63 - 1)
    # Rejects keep the id as it was sent: text.
    assert type(tables.template_rejects.c.template_id.type).__name__ == "Text"
