"""Personal data on the real tables: erased after a delay once deleted upstream, or on request.

Behaviour under test: a user the site deleted keeps name, email and unknown fields for the
delay and loses them after it (the rest of the row, and the rows of others, stay; a second pass
erases nothing more); a record that comes back holds its data again; ``forget`` removes an
address from every table and reject that held it (case-insensitive) and from nothing else,
``site=`` restricts it to one site, and the ``dashboard_*`` views still read the erased rows.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from template_pipeline.domain.entities import BY_NAME, PERSONAL
from template_pipeline.store import db
from template_pipeline.store.personal_data import ERASED, ForgetError, erase_deleted, forget
from template_pipeline_tests.fixtures.helpers import query, unique_site, write_records

# Unique to this session: the simulator's people (other modules' rows) are never matched.
MARIE = f"Marie.Dupont.{uuid.uuid4().hex[:6]}@Example.fr"


def user(i: int, email: str | None = None, **extra) -> dict:
    return {
        "id": i,
        "name": f"Person {i}",
        "email": email or f"person{i}@example.fr",
        "role": "user",
        "create_date": "2025-01-02T10:00:00Z",
        **extra,
    }


def order(i: int, email: str, **extra) -> dict:
    return {
        "id": i,
        "customer_name": f"Customer {i}",
        "email": email,
        "total_price": "100.00",
        "order_date": "2025-02-03T10:00:00Z",
        "status": "pending",
        "items": [{"painting_id": 1, "name": "Aube", "price": 100, "quantity": 1}],
        **extra,
    }


def request(i: int, email: str, message: str) -> dict:
    return {"id": i, "name": f"Visitor {i}", "email": email, "message": message, "budget": 500}


def rows(url: str, table: str, site: str) -> dict[int, dict]:
    found = query(url, f"SELECT * FROM {table} WHERE site = %s ORDER BY template_id", site)
    return {r["template_id"]: r for r in found}


def age_deletions(url: str, site: str, days: int) -> None:
    with db.connect(url) as conn:
        conn.execute(
            "UPDATE template_users SET deleted_at = now() - %s WHERE site = %s "
            "AND deleted_at IS NOT NULL",
            (timedelta(days=days), site),
        )


def test_registry_declares_the_personal_fields_once():
    assert {e.name for e in PERSONAL} == {"users", "orders", "custom_requests"}
    assert BY_NAME["users"].personal_fields == ("name", "email", "extra")
    assert all(e.person_field == "email" for e in PERSONAL)


def test_a_user_deleted_upstream_loses_name_and_email_after_the_delay_not_before(url):
    site = unique_site("erase")
    write_records(url, site, "users", [user(1, phone="06 12"), user(2), user(3)])
    write_records(url, site, "users", [user(2), user(3)], run_id="run-2")  # 1 deleted upstream
    with db.connect(url) as conn:
        assert erase_deleted(conn, timedelta(days=30), site=site).total == 0  # deleted now
    assert rows(url, "template_users", site)[1]["email"] == "person1@example.fr"

    age_deletions(url, site, 29)
    with db.connect(url) as conn:
        assert erase_deleted(conn, timedelta(days=30), site=site).total == 0
    assert rows(url, "template_users", site)[1]["name"] == "Person 1"

    age_deletions(url, site, 31)
    with db.connect(url) as conn:
        erased = erase_deleted(conn, timedelta(days=30), site=site)
    assert erased.tables == {"template_users": 1}
    stored = rows(url, "template_users", site)
    gone = stored[1]
    assert gone["name"] is None and gone["email"] is None and gone["extra"] is None
    assert gone["erased_at"] is not None and gone["deleted_at"] is not None
    # The rest of the row stays for history; live users are untouched.
    assert gone["role"] == "user" and gone["create_date"] is not None
    assert stored[2]["email"] == "person2@example.fr" and stored[2]["erased_at"] is None
    with db.connect(url) as conn:
        assert erase_deleted(conn, timedelta(days=30), site=site).total == 0  # once only

    # The site serves the user again: the row holds its data again.
    write_records(url, site, "users", [user(1), user(2), user(3)], run_id="run-3")
    back = rows(url, "template_users", site)[1]
    assert back["email"] == "person1@example.fr" and back["erased_at"] is None
    assert back["deleted_at"] is None


@pytest.fixture
def two_sites(url):
    """Marie on two sites (a user, an order, a custom request, a reject, a mention); others."""
    one, two = unique_site("forget-a"), unique_site("forget-b")
    for site in (one, two):
        write_records(url, site, "users", [user(1, MARIE.lower(), phone="06 11"), user(2)])
        write_records(
            url,
            site,
            "orders",
            [
                order(1, MARIE.upper()),
                order(2, "paul@example.fr", gift_for=f"for {MARIE}"),
                # A reject (negative total): its payload holds the address.
                order(3, MARIE, total_price="-5"),
            ],
        )
        write_records(
            url,
            site,
            "custom_requests",
            [request(1, MARIE, "A portrait please"), request(2, "lea@example.fr", "Hello")],
        )
    return one, two


def test_forget_removes_an_address_from_every_table_and_reject_and_nothing_else(url, two_sites):
    one, two = two_sites
    with db.connect(url) as conn:
        erased = forget(conn, f"  {MARIE.lower()} ", site=None)
    for site in (one, two):
        users = rows(url, "template_users", site)
        assert users[1]["email"] is None and users[1]["name"] is None
        assert users[1]["extra"] is None and users[1]["erased_at"] is not None
        assert users[1]["content_hash"] is None  # a site still serving Marie writes her again
        assert users[2]["email"] == "person2@example.fr" and users[2]["erased_at"] is None
        orders = rows(url, "template_orders", site)
        assert orders[1]["email"] is None and orders[1]["customer_name"] is None
        assert orders[1]["total_price"] is not None and orders[1]["items"]  # history stays
        # Paul's order mentioned her: the mention goes, Paul stays.
        assert orders[2]["email"] == "paul@example.fr" and orders[2]["erased_at"] is None
        assert orders[2]["extra"]["gift_for"] == f"for {ERASED}"
        requests = rows(url, "template_custom_requests", site)
        assert requests[1]["message"] is None and requests[1]["email"] is None
        assert requests[2]["message"] == "Hello" and requests[2]["email"] == "lea@example.fr"
        [reject] = query(url, "SELECT payload FROM template_rejects WHERE site = %s", site)
        assert reject["payload"] is None
    assert erased.tables == {
        "template_users": 2,
        "template_orders": 4,
        "template_custom_requests": 2,
        "template_rejects": 2,
    }
    assert erased.live == 8  # every erased row is still served by its site
    for table in ("template_users", "template_orders", "template_custom_requests"):
        for site in (one, two):
            [left] = query(
                url,
                f"SELECT count(*) AS n FROM {table} t WHERE site = %s AND t::text ILIKE %s",
                site,
                f"%{MARIE}%",
            )
            assert left["n"] == 0, table


def test_forget_with_a_site_erases_only_that_site(url, two_sites):
    one, two = two_sites
    with db.connect(url) as conn:
        erased = forget(conn, MARIE, site=one)
    assert erased.tables["template_users"] == 1
    assert rows(url, "template_users", one)[1]["email"] is None
    assert rows(url, "template_users", two)[1]["email"] == MARIE.lower()
    [kept] = query(url, "SELECT payload FROM template_rejects WHERE site = %s", two)
    assert kept["payload"]["email"] == MARIE


def test_dashboard_views_read_erased_rows(url, two_sites):
    one, _ = two_sites
    with db.connect(url) as conn:
        forget(conn, MARIE, site=one)
    shown = query(url, "SELECT * FROM dashboard_users WHERE site = %s ORDER BY id", one)
    assert [(r["id"], r["email"]) for r in shown] == [(1, None), (2, "person2@example.fr")]
    orders = query(url, "SELECT * FROM dashboard_orders WHERE site = %s ORDER BY id", one)
    assert orders[0]["customer_name"] is None and orders[0]["items"][0]["name"] == "Aube"
    assert query(url, "SELECT * FROM dashboard_custom_requests WHERE site = %s", one)


@pytest.mark.parametrize("address", ["", "no-at-sign", "two words@x.fr", 'a"b@x.fr'])
def test_forget_refuses_what_is_not_an_address(url, address):
    with db.connect(url) as conn, pytest.raises(ForgetError, match="not an e-mail address"):
        forget(conn, address)
