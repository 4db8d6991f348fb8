"""Validation of Template export records into Dashboard rows (``template_pipeline.domain.models``).

Under test: rows carry exactly the columns of the tables in ``tables.py``; the coercions of what
sites really send (numbers as text, blanks, naive and offset timestamps, MySQL zero dates, ids as
numbers); one rejection per rule with a reason naming the field (including values beyond the
column bounds and text PostgreSQL cannot store, with rejects that are themselves storable);
unknown fields kept in ``extra`` and reported in ``new_fields``; painting ``image_url`` joining;
masked and duplicate settings; order items (validation, JSON text, explosion into lines); the
stats row and its aliases; pages mixing valid and invalid records; non-Latin text kept intact.
"""

from __future__ import annotations

import gc
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin

import pytest

from template_pipeline.domain import models, validation
from template_pipeline.domain.batches import Reject, ValidatedBatch
from template_pipeline.domain.entities import KNOWN_FIELDS
from template_pipeline.domain.models import Painting
from template_pipeline.domain.models import rows as rows_module
from template_pipeline.domain.validation import (
    explode_order_items,
    validate_records,
    validate_stats,
)
from template_pipeline.domain.vocabulary import MASKED as MASKED_VALUE
from template_pipeline.store import tables

UTC = timezone.utc

# The smallest valid record of each entity (the specification's required fields).
BASE_RECORDS: dict[str, dict[str, Any]] = {
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
        "customer_name": "Zoé",
        "email": "zoe@example.fr",
        "total_price": "25.00",
        "order_date": "2024-03-01 10:22:00",
        "items": [{"painting_id": 3, "name": "Étude", "price": "12.50", "quantity": 2}],
    },
    "settings": {"key": "site_name", "value": "Atelier"},
    "exhibitions": {"id": 1, "title": "Printemps"},
    "custom_requests": {"id": 1, "name": "Zoé"},
}


def one_row(entity: str, base_url: str | None = None, **fields: Any) -> dict[str, Any]:
    """The row of one valid record: ``BASE_RECORDS[entity]`` updated with ``fields``."""
    batch = validate_records(entity, [{**BASE_RECORDS[entity], **fields}], base_url=base_url)
    assert batch.rejects == [], batch.rejects
    assert len(batch.rows) == 1
    return batch.rows[0]


def one_reject(entity: str, record: Any) -> Reject:
    batch = validate_records(entity, [record])
    assert batch.rows == []
    assert len(batch.rejects) == 1
    return batch.rejects[0]


# ---------------------------------------------------------------------------------------------
# Row shape


def data_columns(entity: str) -> set[str]:
    return set(tables.ENTITY_TABLES[entity].data_columns)


@pytest.mark.parametrize("entity", sorted(BASE_RECORDS))
def test_rows_have_exactly_the_table_columns(entity):
    row = one_row(entity)
    assert set(row) == data_columns(entity)
    batch = validate_records(entity, [BASE_RECORDS[entity]])
    assert isinstance(batch, ValidatedBatch)
    assert batch.fetched == 1
    assert batch.new_fields == set()


def test_order_item_and_stats_rows_have_exactly_the_table_columns():
    (item,) = explode_order_items([(1, [{"price": 1}])])
    assert set(item) == data_columns("order_items")
    assert set(validate_stats({"paintings": 1})) == data_columns("stats")


def test_painting_row_values():
    row = one_row(
        "paintings",
        base_url="https://atelier.example/",
        category=" Huile ",
        technique="Huile sur toile",
        year="1992",
        quantity="1",
        status="Disponible",
        image="Images/painting_123.jpg",
        display_order=4,
        site_name="Atelier Marie",
    )
    assert row == {
        "template_id": 1,
        "name": "Nymphéas",
        "price": Decimal("1200.00"),
        "category": "Huile",
        "technique": "Huile sur toile",
        "year": 1992,
        "quantity": 1,
        "status": "Disponible",
        "image": "Images/painting_123.jpg",
        "image_url": "https://atelier.example/Images/painting_123.jpg",
        "display_order": 4,
        "site_name": "Atelier Marie",
        "extra": {},
    }


# ---------------------------------------------------------------------------------------------
# Coercions


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1200.00", "1200.00"),
        (1200, "1200.00"),
        ("1200", "1200.00"),
        (1200.5, "1200.50"),
        (" 99.9 ", "99.90"),
        ("12.345", "12.35"),  # rounded half-up to cents
        ("0", "0.00"),
        ("1e3", "1000.00"),
    ],
)
def test_price_becomes_decimal_cents(raw, expected):
    price = one_row("paintings", price=raw)["price"]
    assert isinstance(price, Decimal)
    # str() and not ==: Decimal("1200") == Decimal("1200.00"), the exponent matters here.
    assert str(price) == expected


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("id", 12, 12),
        ("id", " 12 ", 12),
        ("year", "1992", 1992),
        ("year", 1992, 1992),
        ("year", 1992.0, 1992),
        ("year", " 1992 ", 1992),
        ("year", "", None),
        ("year", None, None),
        ("quantity", "3", 3),
        ("quantity", "0", 0),
        ("quantity", "", 1),
        ("display_order", "7", 7),
        ("display_order", "  ", None),
        ("category", "  Aquarelle ", "Aquarelle"),
        ("technique", 42, "42"),
        ("technique", "", None),
        ("status", "", "Disponible"),
        ("status", "Vendu", "Vendu"),
        ("site_name", "", None),
    ],
)
def test_painting_field_coercions(field, raw, expected):
    column = "template_id" if field == "id" else field
    assert one_row("paintings", **{field: raw})[column] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Naive: the export carries no offset; read as UTC.
        ("2024-03-01 10:22:00", datetime(2024, 3, 1, 10, 22, tzinfo=UTC)),
        ("2024-03-01T10:22:00", datetime(2024, 3, 1, 10, 22, tzinfo=UTC)),
        ("2024-03-01 10:22:00.5", datetime(2024, 3, 1, 10, 22, 0, 500000, tzinfo=UTC)),
        ("2024-03-01T10:22:00Z", datetime(2024, 3, 1, 10, 22, tzinfo=UTC)),
        ("2024-03-01T12:22:00+02:00", datetime(2024, 3, 1, 10, 22, tzinfo=UTC)),
        ("2024-03-01T05:22:00-05:00", datetime(2024, 3, 1, 10, 22, tzinfo=UTC)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        (1709288520, datetime(2024, 3, 1, 10, 22, tzinfo=UTC)),
        ("", None),
        (None, None),
        ("0000-00-00 00:00:00", None),  # MySQL's zero date: no date
        ("0000-00-00", None),
    ],
)
def test_create_date_becomes_aware_utc(raw, expected):
    value = one_row("users", create_date=raw)["create_date"]
    assert value == expected
    if value is not None:
        assert value.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("entity", "field", "column"),
    [
        ("users", "created_at", "create_date"),
        ("orders", "order_date", "order_date"),
        ("orders", "created_at", "order_date"),
        ("custom_requests", "created_at", "created_at"),
        ("custom_requests", "create_date", "created_at"),
    ],
)
def test_timestamp_fields_and_their_aliases(entity, field, column):
    # An alias stands in for its field: the base record's own spelling goes.
    record = {k: v for k, v in BASE_RECORDS[entity].items() if k != column}
    row = validate_records(entity, [{**record, field: "2024-03-01 10:22:00"}]).rows[0]
    assert row[column] == datetime(2024, 3, 1, 10, 22, tzinfo=UTC)
    assert row["extra"] == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-01", date(2024, 3, 1)),
        ("2024-03-01 18:00:00", date(2024, 3, 1)),
        ("2024-03-01T18:00:00+02:00", date(2024, 3, 1)),
        ("", None),
        ("0000-00-00", None),
    ],
)
def test_exhibition_dates(raw, expected):
    row = one_row("exhibitions", start_date=raw)
    assert row["start_date"] == expected
    assert row["end_date"] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("admin", "admin"), ("Admin", "admin"), (" USER ", "user"), ("", "user"), (None, "user")],
)
def test_role_is_matched_case_insensitively_and_defaults_to_user(raw, expected):
    assert one_row("users", role=raw)["role"] == expected


def test_missing_role_defaults_to_user():
    assert one_row("users")["role"] == "user"


@pytest.mark.parametrize(
    "email",
    ["zoe@example.fr", "zoé.müller@exämple.fr", "用户@例子.广告", "a+tag@sub.example.co.uk"],
)
def test_valid_emails_pass_including_accents_and_idn(email):
    assert one_row("users", email=email)["email"] == email


@pytest.mark.parametrize(
    ("entity", "field", "raw", "expected"),
    [
        ("orders", "total_price", 25, Decimal("25.00")),
        ("orders", "total", "25.5", Decimal("25.50")),
        ("custom_requests", "budget", "1500", Decimal("1500.00")),
        ("custom_requests", "budget", "", None),
        ("exhibitions", "name", "Printemps", "Printemps"),
    ],
)
def test_other_entity_coercions(entity, field, raw, expected):
    record = dict(BASE_RECORDS[entity])
    if field in ("total", "name"):
        # An alias replaces the field it stands for.
        record.pop({"total": "total_price", "name": "title"}[field])
    record[field] = raw
    row = validate_records(entity, [record]).rows[0]
    column = {"total": "total_price", "name": "title"}.get(field, field)
    assert row[column] == expected
    if isinstance(expected, Decimal):
        assert str(row[column]) == str(expected)


def test_order_items_are_json_compatible():
    row = one_row(
        "orders",
        items=[
            {
                "painting_id": 3,
                "name": "Étude",
                "image": "Images/e.jpg",
                "price": 12.5,
                "frame": "oak",
            },
            {"painting_id": None, "price": "3", "quantity": "2"},
        ],
    )
    assert row["items"] == [
        {
            "painting_id": 3,
            "name": "Étude",
            "image": "Images/e.jpg",
            "price": "12.50",
            "quantity": 1,
            "frame": "oak",
        },
        {"painting_id": None, "name": None, "image": None, "price": "3.00", "quantity": 2},
    ]
    assert row["item_count"] == 2
    assert json.loads(json.dumps(row["items"])) == row["items"]


@pytest.mark.parametrize(
    ("items", "count"),
    [
        ('[{"painting_id": "3", "price": "12.50", "quantity": 2}]', 1),
        ("", 0),
        (None, 0),
        ([], 0),
    ],
)
def test_order_items_as_json_text_or_blank(items, count):
    row = one_row("orders", items=items)
    assert row["item_count"] == count
    assert len(row["items"]) == count


def test_order_without_items_field_has_none():
    record = {k: v for k, v in BASE_RECORDS["orders"].items() if k != "items"}
    row = validate_records("orders", [record]).rows[0]
    assert (row["items"], row["item_count"]) == ([], 0)


# ---------------------------------------------------------------------------------------------
# Rejections: one case per rule, the reason names the field


PNT = BASE_RECORDS["paintings"]
USR = BASE_RECORDS["users"]
ORD = BASE_RECORDS["orders"]


def without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in fields}


@pytest.mark.parametrize(
    ("entity", "record", "template_id", "reason"),
    [
        ("paintings", without(PNT, "id"), None, "id: required (missing)"),
        ("paintings", {**PNT, "id": " "}, None, "id: required (empty)"),
        ("paintings", {**PNT, "id": None}, None, "id: required (null)"),
        ("paintings", {**PNT, "id": True}, None, "id: not an integer (got true)"),
        ("paintings", without(PNT, "name"), "1", "name: required (missing)"),
        ("paintings", {**PNT, "name": ""}, "1", "name: required (empty)"),
        ("paintings", without(PNT, "price"), "1", "price: required (missing)"),
        ("paintings", {**PNT, "price": ""}, "1", "price: required (empty)"),
        ("paintings", {**PNT, "price": -5}, "1", "price: must be >= 0 (got -5)"),
        ("paintings", {**PNT, "price": "abc"}, "1", "price: not a number (got 'abc')"),
        ("paintings", {**PNT, "price": "1 200,00"}, "1", "price: not a number (got '1 200,00')"),
        ("paintings", {**PNT, "price": "NaN"}, "1", "price: must be a finite number (got 'NaN')"),
        ("paintings", {**PNT, "price": "1e40"}, "1",
         "price: must be <= 9999999999.99 (got '1e40')"),
        ("paintings", {**PNT, "price": 9999999999.995}, "1",
         "price: must be <= 9999999999.99 (got 9999999999.995)"),
        ("paintings", {**PNT, "year": 10**12}, "1",
         "year: must be <= 2147483647 (got 1000000000000)"),
        ("paintings", {**PNT, "display_order": -(2**40)}, "1",
         "display_order: must be >= -2147483648 (got -1099511627776)"),
        ("paintings", {**PNT, "quantity": -1}, "1", "quantity: must be >= 0 (got -1)"),
        ("paintings", {**PNT, "year": "19x2"}, "1", "year: not an integer (got '19x2')"),
        ("paintings", {**PNT, "year": 1992.5}, "1", "year: not an integer (got 1992.5)"),
        ("paintings", {**PNT, "year": True}, "1", "year: not a number (got true)"),
        ("paintings", {**PNT, "category": ["a"]}, "1", "category: must be a string (got a list)"),
        ("paintings", {**PNT, "name": "A\x00B"}, "1", "name: contains a NUL character"),
        ("paintings", {**PNT, "note": {"x": ["\x00"]}}, "1", "note.x[0]: contains a NUL character"),
        ("paintings", {**PNT, "n\x00te": 1}, "1",
         "field 'n\\x00te': name contains a NUL character"),
        ("paintings", {**PNT, "name": "A\ud83d"}, "1",
         "name: contains invalid Unicode (a lone surrogate)"),
        ("paintings", {**PNT, "note": "\udc00"}, "1",
         "note: contains invalid Unicode (a lone surrogate)"),
        ("paintings", ["not", "an", "object"], None, "record: must be a JSON object (got a list)"),
        ("paintings", None, None, "record: must be a JSON object (got null)"),
        ("users", without(USR, "name"), "1", "name: required (missing)"),
        ("users", {**USR, "email": "not-an-email"}, "1",
         "email: not a valid email address (got 'not-an-email')"),
        ("users", {**USR, "email": "zoe @example.fr"}, "1",
         "email: not a valid email address (got 'zoe @example.fr')"),
        ("users", {**USR, "role": "editor"}, "1", "role: must be 'admin' or 'user' (got 'editor')"),
        ("users", {**USR, "create_date": "yesterday"}, "1",
         "create_date: not a valid date and time (got 'yesterday')"),
        ("users", {**USR, "created_at": "01/03/2024"}, "1",
         "created_at: not a valid date and time (got '01/03/2024')"),
        ("users", {**USR, "create_date": "0001-01-01T00:00:00+01:00"}, "1",
         "create_date: out of range (got 0001-01-01T00:00:00+01:00)"),
        ("orders", without(ORD, "total_price"), "1", "total_price: required (missing)"),
        ("orders", {**ORD, "total_price": "-1.00"}, "1", "total_price: must be >= 0 (got '-1.00')"),
        ("orders", {**ORD, "order_date": "2024-13-01"}, "1",
         "order_date: not a valid date and time (got '2024-13-01')"),
        ("orders", {**ORD, "items": [{"price": 1}, {"price": -2}]}, "1",
         "items[1].price: must be >= 0 (got -2)"),
        ("orders", {**ORD, "items": [{"name": "x"}]}, "1", "items[0].price: required (missing)"),
        ("orders", {**ORD, "items": [{"price": 1, "quantity": -1}]}, "1",
         "items[0].quantity: must be >= 0 (got -1)"),
        ("orders", {**ORD, "items": ["x"]}, "1", "items[0]: must be a JSON object (got 'x')"),
        ("orders", {**ORD, "items": {"price": 1}}, "1", "items: must be a list (got an object)"),
        ("orders", {**ORD, "items": "[{"}, "1", "items: not valid JSON"),
        ("orders", {**ORD, "items": [{"price": 1, "name": "\x00"}]}, "1",
         "items[0].name: contains a NUL character"),
        ("settings", {"value": "x"}, None, "key: required (missing)"),
        ("settings", {"key": "", "value": "x"}, None, "key: required (empty)"),
        ("settings", {"key": "k", "value": "a\x00b"}, "k", "value: contains a NUL character"),
        ("exhibitions", {"id": 4}, "4", "title: required (missing)"),
        ("exhibitions", {"id": 4, "title": "T", "start_date": "32/13/2024"}, "4",
         "start_date: not a valid date (got '32/13/2024')"),
        ("exhibitions", {"id": 4, "title": "T", "start_date": "2024-03-10",
                         "end_date": "2024-03-01"}, "4",
         "end_date: before start_date (2024-03-01 < 2024-03-10)"),
        ("custom_requests", {"name": "N"}, None, "id: required (missing)"),
        ("custom_requests", {"id": 5, "budget": -10}, "5", "budget: must be >= 0 (got -10)"),
        ("custom_requests", {"id": 5, "budget": "beaucoup"}, "5",
         "budget: not a number (got 'beaucoup')"),
    ],
)  # fmt: skip
def test_rejection_reasons(entity, record, template_id, reason):
    reject = one_reject(entity, record)
    assert reject.reason.startswith(reason), reject.reason
    assert reject.template_id == template_id


def test_several_errors_are_combined():
    reject = one_reject("paintings", {"id": 9, "name": "", "price": -1, "year": "x"})
    assert reject.reason == (
        "name: required (empty); price: must be >= 0 (got -1); category: required (missing); "
        "year: not an integer (got 'x'); image: required (missing)"
    )


def test_reason_is_bounded():
    record = {**BASE_RECORDS["paintings"], **{f"f{i}": f"\x00{i}" for i in range(20)}}
    reason = one_reject("paintings", record).reason
    assert reason.count("; ") == 5
    assert reason.endswith("... and 15 more")


def test_long_values_are_shortened_in_reasons():
    reason = one_reject("paintings", {**BASE_RECORDS["paintings"], "price": "x" * 500}).reason
    assert len(reason) < 100
    assert reason.startswith("price: not a number (got 'xxxx")


def test_backslash_u0000_text_is_not_a_nul_character():
    # JSON-escaped, this text looks like an escaped NUL: the page check must not reject it.
    row = one_row("paintings", name="C:\\u0000", note="\\u0000")
    assert row["name"] == "C:\\u0000"
    assert row["extra"] == {"note": "\\u0000"}


@pytest.mark.parametrize("bad", ["\x00", "\ud83d"])
def test_rejects_and_new_fields_are_storable(bad):
    record = {"id": f"7{bad}", "name": bad, "price": 1, f"k{bad}": {"x": [bad]}}
    batch = validate_records("paintings", [record])
    assert batch.rows == []
    (reject,) = batch.rejects
    assert reject.template_id == "7\ufffd"
    assert reject.payload == {
        "id": "7\ufffd", "name": "\ufffd", "price": 1, "k\ufffd": {"x": ["\ufffd"]}
    }  # fmt: skip
    stored = [reject.template_id, reject.reason, json.dumps(reject.payload, ensure_ascii=False)]
    stored += sorted(batch.new_fields)
    for text in stored:
        assert "\x00" not in text
        text.encode("utf-8")  # raises on a lone surrogate
    assert batch.new_fields == {"k\ufffd"}


def test_reject_payload_is_the_raw_record_and_storable():
    record = {"id": 1, "name": "A\x00", "price": 1, "tags": ["é", 2.5, None]}
    reject = one_reject("paintings", record)
    assert reject.payload == {"id": 1, "name": "A\ufffd", "price": 1, "tags": ["é", 2.5, None]}
    assert "\\u0000" not in json.dumps(reject.payload)
    assert record["name"] == "A\x00", "the caller's record must not be modified"


# ---------------------------------------------------------------------------------------------
# Unknown fields


def test_unknown_fields_are_kept_in_extra_and_reported():
    batch = validate_records(
        "paintings",
        [
            {**BASE_RECORDS["paintings"], "id": 1, "frame": "oak", "dims": {"w": 30, "h": 40}},
            {**BASE_RECORDS["paintings"], "id": 2, "signed": True},
            {**BASE_RECORDS["paintings"], "id": 3},
        ],
    )
    assert [row["extra"] for row in batch.rows] == [
        {"frame": "oak", "dims": {"w": 30, "h": 40}},
        {"signed": True},
        {},
    ]
    assert batch.new_fields == {"frame", "dims", "signed"}


def test_unknown_fields_of_rejected_records_are_reported():
    batch = validate_records(
        "paintings", [BASE_RECORDS["paintings"], {"id": 2, "price": 1, "artist_bio": "x"}]
    )
    assert len(batch.rows) == 1
    assert batch.new_fields == {"artist_bio"}


def test_unused_alias_is_kept_but_not_reported_as_new():
    row_batch = validate_records(
        "users",
        [{**BASE_RECORDS["users"], "create_date": "2024-03-01", "created_at": "2024-02-01"}],
    )
    row = row_batch.rows[0]
    assert row["create_date"] == datetime(2024, 3, 1, tzinfo=UTC)
    assert row["extra"] == {"created_at": "2024-02-01"}
    assert row_batch.new_fields == set()


def test_new_item_fields_are_reported_with_their_path():
    order = {**BASE_RECORDS["orders"], "items": [{"price": 1, "frame": "oak"}], "gift": True}
    batch = validate_records("orders", [order])
    assert batch.rows[0]["extra"] == {"gift": True}
    assert batch.new_fields == {"gift", "items[].frame"}


def test_settings_unknown_fields_are_reported():
    batch = validate_records("settings", [{"key": "k", "value": "v", "updated_at": "2024"}])
    assert batch.rows == [{"key": "k", "value": "v", "is_masked": False}]
    assert batch.new_fields == {"updated_at"}


@pytest.mark.parametrize(
    ("entity", "names"),
    [
        ("paintings", {"id", "name", "price", "image", "display_order", "site_name"}),
        ("users", {"create_date", "created_at", "role"}),
        ("orders", {"total_price", "total", "order_date", "created_at", "items"}),
        ("order_items", {"painting_id", "name", "image", "price", "quantity"}),
        ("settings", {"key", "value"}),
        ("exhibitions", {"title", "name", "start_date", "end_date", "location"}),
        ("custom_requests", {"budget", "message", "created_at", "create_date"}),
        ("stats", {"paintings", "total_paintings", "paintings_count", "nb_paintings", "revenue"}),
    ],
)
def test_known_fields_include_aliases(entity, names):
    assert names <= KNOWN_FIELDS[entity]


# ---------------------------------------------------------------------------------------------
# image_url


@pytest.mark.parametrize(
    ("base_url", "image", "expected"),
    [
        ("http://h/t/site-b/", "Images/p.jpg", "http://h/t/site-b/Images/p.jpg"),
        ("http://h/t/site-b", "Images/p.jpg", "http://h/t/site-b/Images/p.jpg"),
        ("https://marie.example/", "Images/painting_123.jpg",
         "https://marie.example/Images/painting_123.jpg"),
        ("http://h/t/site-b/", "/Images/p.jpg", "http://h/Images/p.jpg"),
        ("http://h/t/site-b/", "./Images/p.jpg", "http://h/t/site-b/Images/p.jpg"),
        ("http://h/t/site-b/", "../shared/p.jpg", "http://h/t/shared/p.jpg"),
        ("http://h/t/site-b/", "https://cdn.example/p.jpg", "https://cdn.example/p.jpg"),
        ("http://h/t/site-b/", "//cdn.example/p.jpg", "http://cdn.example/p.jpg"),
        ("http://h/t/site-b/", "Images/été 1.jpg", "http://h/t/site-b/Images/été 1.jpg"),
        (None, "https://cdn.example/p.jpg", "https://cdn.example/p.jpg"),
        (None, "Images/p.jpg", None),
        ("", "Images/p.jpg", None),
    ],
)  # fmt: skip
def test_image_url(base_url, image, expected):
    row = one_row("paintings", base_url=base_url, image=image)
    assert row["image"] == image
    assert row["image_url"] == expected


def test_a_relative_image_without_base_url_has_no_image_url():
    assert one_row("paintings", image="Images/p.jpg")["image_url"] is None


@pytest.mark.parametrize(
    "image",
    [
        "Images/p.jpg",
        "p.jpg",
        "a/b/c.jpg?v=2",
        "a/b/c.jpg#x",
        "a/./b.jpg",
        "a/../b.jpg",
        ".hidden/p.jpg",
        "a/.b/p.jpg",
        "/abs/p.jpg",
        "x:y.jpg",
        "mailto:a@b.fr",
        "a/p\t.jpg",
        "a b/ç 画.jpg",
    ],
)
@pytest.mark.parametrize("base_url", ["http://h/t/site-b/", "https://s.example/", "http://h/?q=1"])
def test_image_url_shortcut_equals_urljoin(base_url, image):
    assert rows_module.image_url_joiner(base_url)(image) == urljoin(base_url, image)


# ---------------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize("masked", [MASKED_VALUE, f" {MASKED_VALUE} "])
def test_masked_setting_never_keeps_its_value(masked):
    batch = validate_records("settings", [{"key": "stripe_secret_key", "value": masked}])
    assert batch.rows == [{"key": "stripe_secret_key", "value": None, "is_masked": True}]
    assert MASKED_VALUE not in repr(batch.rows)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Atelier Marie", "Atelier Marie"),
        ("1200.00", "1200.00"),  # saas_site_price_cache: a number sent as text stays text
        ("  <p>Bienvenue</p>\n", "  <p>Bienvenue</p>\n"),  # content is kept as sent
        ("", ""),
        (None, None),
        (12, "12"),
        (12.5, "12.5"),
        (True, "true"),
        ({"a": [1, "é"]}, '{"a":[1,"é"]}'),
        (["x"], '["x"]'),
    ],
)
def test_setting_values(value, expected):
    batch = validate_records("settings", [{"key": "k", "value": value}])
    assert batch.rows == [{"key": "k", "value": expected, "is_masked": False}]


def test_duplicate_setting_keys_last_wins_earlier_rejected():
    batch = validate_records(
        "settings",
        [
            {"key": "site_name", "value": "Old"},
            {"key": "site_logo", "value": "logo.png"},
            {"key": "site_name", "value": "New"},
        ],
    )
    assert batch.rows == [
        {"key": "site_logo", "value": "logo.png", "is_masked": False},
        {"key": "site_name", "value": "New", "is_masked": False},
    ]
    assert len(batch.rejects) == 1
    reject = batch.rejects[0]
    assert reject.template_id == "site_name"
    assert "duplicate key" in reject.reason
    assert reject.payload == {"key": "site_name", "value": "Old"}
    assert len(batch.rows) + len(batch.rejects) == batch.fetched


def test_duplicate_template_ids_are_left_to_the_io_manager():
    records = [BASE_RECORDS["paintings"], {**BASE_RECORDS["paintings"], "name": "Bis"}]
    batch = validate_records("paintings", records)
    assert [row["name"] for row in batch.rows] == ["Nymphéas", "Bis"]


# ---------------------------------------------------------------------------------------------
# Order items


def test_explode_order_items_numbers_lines_per_order():
    rows = explode_order_items(
        [
            (1, [{"painting_id": 3, "name": "A", "image": "i.jpg", "price": "12.50",
                  "quantity": 2, "frame": "oak"},
                 {"painting_id": None, "name": "B", "image": None, "price": "1",
                  "quantity": 1}]),
            (2, '[{"painting_id": "7", "name": "C", "image": null, "price": "3.00",'
                ' "quantity": 1}]'),
            (3, None),
            (4, []),
            (5, "[]"),
        ]
    )  # fmt: skip
    assert [(r["order_id"], r["line_no"]) for r in rows] == [(1, 1), (1, 2), (2, 1)]
    assert rows[0] == {
        "order_id": 1,
        "line_no": 1,
        "painting_id": 3,
        "name": "A",
        "image": "i.jpg",
        "price": Decimal("12.50"),
        "quantity": 2,
        "extra": {"frame": "oak"},
    }
    assert str(rows[1]["price"]) == "1.00"
    assert rows[1]["extra"] == {}
    assert rows[2]["painting_id"] == 7


def test_explode_accepts_the_items_of_validated_orders():
    order = one_row("orders")
    rows = explode_order_items([(order["template_id"], order["items"])])
    assert len(rows) == order["item_count"] == 1
    assert rows[0]["price"] == Decimal("12.50")
    assert rows[0]["quantity"] == 2


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("[{", "order 9: items are not valid JSON"),
        ({"price": 1}, "order 9: items must be a list (got an object)"),
        ([{"price": 1}, {"price": -1}], "order 9: items[1].price: must be >= 0 (got -1)"),
        ([{"price": 1, "painting_id": "x"}], "order 9: items[0].painting_id: not an integer"),
    ],
)
def test_explode_order_items_rejects_unusable_items(items, message):
    with pytest.raises(ValueError) as info:
        explode_order_items([(9, items)])
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------------------------------
# Stats


@pytest.mark.parametrize(
    "name", ["paintings", "total_paintings", "paintings_count", "nb_paintings"]
)
def test_stats_painting_count_aliases(name):
    assert validate_stats({name: "12"})["paintings"] == 12


@pytest.mark.parametrize("name", ["revenue", "total_revenue", "revenue_total"])
def test_stats_revenue_aliases(name):
    revenue = validate_stats({name: 1234.5})["revenue"]
    assert isinstance(revenue, Decimal)
    assert str(revenue) == "1234.50"


def test_stats_row():
    payload = {
        "total_paintings": 12,
        "total_users": "3",
        "orders_count": 4,
        "nb_exhibitions": 1,
        "custom_requests": 0,
        "total_revenue": "990.00",
        "top_category": "Huile",
    }
    assert validate_stats(payload) == {
        "paintings": 12,
        "users": 3,
        "orders": 4,
        "exhibitions": 1,
        "custom_requests": 0,
        "revenue": Decimal("990.00"),
        "payload": payload,
    }


def test_stats_envelope_is_unwrapped_and_missing_counters_are_none():
    row = validate_stats({"stats": {"paintings": 2}})
    assert row["paintings"] == 2
    assert row["users"] is None
    assert row["revenue"] is None
    assert row["payload"] == {"paintings": 2}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["x"], "stats: must be a JSON object (got a list)"),
        ({"paintings": -1}, "stats: paintings: must be >= 0 (got -1)"),
        ({"users": "many"}, "stats: users: not an integer (got 'many')"),
        ({"total_revenue": "a lot"}, "stats: total_revenue: not a number (got 'a lot')"),
        ({"revenue": 10**12}, "stats: revenue: must be <= 999999999999.99 (got 1000000000000)"),
        ({"visitors": 3}, "stats: none of paintings, users, orders"),
        ({"paintings": 1, "note": "\x00"}, "stats: note: contains a NUL character"),
    ],
)
def test_unusable_stats(payload, message):
    with pytest.raises(ValueError) as info:
        validate_stats(payload)
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------------------------------
# Pages


def test_mixed_page_returns_rows_and_rejects_adding_up_to_fetched():
    base = BASE_RECORDS["paintings"]
    records = [
        {**base, "id": 1, "name": "A", "price": "10"},
        {**base, "id": 2, "name": "B", "price": "-5"},
        "garbage",
        {**base, "id": 3, "name": "C", "price": 30, "year": ""},
        {"id": 4, "price": 1},
        {**base, "id": 5, "name": "E", "price": "5.5", "extra_field": 1},
    ]
    batch = validate_records("paintings", records, base_url="http://h/")
    assert batch.fetched == 6
    assert [row["template_id"] for row in batch.rows] == [1, 3, 5]
    assert [reject.template_id for reject in batch.rejects] == ["2", None, "4"]
    assert len(batch.rows) + len(batch.rejects) == batch.fetched
    assert batch.new_fields == {"extra_field"}


def test_large_page_keeps_every_record_in_order():
    # Longer than the chunks validate_records works in, with failures on their boundaries.
    size = 3 * validation._CHUNK + 5
    records = [
        {**BASE_RECORDS["paintings"], "id": i, "name": f"P{i}", "price": i} for i in range(size)
    ]
    bad = {0, validation._CHUNK - 1, validation._CHUNK, 2 * validation._CHUNK + 1, size - 1}
    for i in bad:
        records[i]["price"] = -1
    records[size // 2]["name"] = "nul\x00"
    bad.add(size // 2)
    batch = validate_records("paintings", records)
    assert [row["template_id"] for row in batch.rows] == [i for i in range(size) if i not in bad]
    assert [reject.template_id for reject in batch.rejects] == [str(i) for i in sorted(bad)]
    assert batch.rejects[-1].reason == "price: must be >= 0 (got -1)"
    assert len(batch.rows) + len(batch.rejects) == batch.fetched == size


def test_a_bad_record_does_not_change_the_rows_of_the_others():
    records = [
        {**BASE_RECORDS["orders"], "id": i, "order_date": "2024-03-01 10:22:00", "x": i}
        for i in range(5)
    ]
    clean = validate_records("orders", records)
    mixed = validate_records("orders", [*records, {"id": "bad"}])
    assert len(mixed.rejects) == 1
    assert mixed.rows == clean.rows
    assert mixed.new_fields == clean.new_fields == {"x"}


def test_empty_page():
    batch = validate_records("paintings", [])
    assert (batch.rows, batch.rejects, batch.fetched, batch.new_fields) == ([], [], 0, set())


@pytest.mark.parametrize(
    "text",
    ["Zoé Hélène Dupré-Çelik", "葛飾北斎 富嶽三十六景", "Ночь", "🎨 Couleurs 🌅", "عربي"],
)
def test_non_latin_text_is_preserved(text):
    row = one_row(
        "paintings", base_url="http://h/", name=text, category=text, image=f"Images/{text}.jpg",
        note=text,
    )  # fmt: skip
    assert row["name"] == row["category"] == text
    assert row["extra"] == {"note": text}
    assert row["image_url"] == f"http://h/Images/{text}.jpg"
    user = one_row("users", name=text)
    assert user["name"] == text


@pytest.mark.parametrize("enabled", [True, False])
def test_garbage_collector_state_is_restored(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        validate_records("paintings", [BASE_RECORDS["paintings"], {"id": 1}])
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_unknown_entity_and_bad_page_type_fail_loudly():
    with pytest.raises(ValueError, match="unknown entity 'artists'"):
        validate_records("artists", [])
    with pytest.raises(TypeError, match="paintings: records must be a list"):
        validate_records("paintings", {"paintings": []})


# ---------------------------------------------------------------------------------------------
# Models used directly


def test_models_coerce_blanks_and_keep_unknown_fields():
    painting = Painting.model_validate(
        {**BASE_RECORDS["paintings"], "id": "7", "name": " A ", "technique": "", "year": "", "x": 1}
    )
    assert painting.id == 7
    assert painting.name == "A"
    assert painting.technique is None
    assert painting.year is None
    assert painting.model_extra == {"x": 1}


def test_bounds_match_the_table_columns():
    def numeric_max(column) -> Decimal:
        integer_digits = column.type.precision - column.type.scale
        return Decimal(10**integer_digits) - Decimal(1).scaleb(-column.type.scale)

    assert numeric_max(tables.template_paintings.c.price) == models.MONEY_MAX
    for column in (
        tables.template_orders.c.total_price,
        tables.template_order_items.c.price,
        tables.template_custom_requests.c.budget,
    ):
        assert column.type.scale == 2
        assert numeric_max(column) == models.MONEY_MAX
    assert numeric_max(tables.template_stats.c.revenue) == models.REVENUE_MAX
    assert type(tables.template_paintings.c.year.type).__name__ == "Integer"  # int4
    assert (models.INT_MIN, models.INT_MAX) == (-(2**31), 2**31 - 1)


def test_masked_literal_matches_the_site_registry():
    from template_pipeline.domain import sites

    assert MASKED_VALUE == sites.MASKED
