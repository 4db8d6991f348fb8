"""Generating a simulated site's records from its seed, invalid ones included.

Generation is deterministic (one ``random.Random`` per entity, seeded from the site's seed and
key: string seeds are hashed with SHA-512, so they do not depend on ``PYTHONHASHSEED``) and fast
enough for benchmark sites of a few hundred thousand records: one pass per entity, no per-record
objects besides the dicts that are served.

A share of the records (``invalid_ratio``) is then made invalid (:mod:`.invalid`).
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from template_pipeline.apps.simulator.config import MASKED, SimSite
from template_pipeline.apps.simulator.vocabulary import (
    CATEGORIES,
    CENT,
    DAYS,
    DIMENSIONS,
    DOMAINS,
    EXHIBITION_DESCRIPTIONS,
    EXHIBITION_TITLES,
    LOCATIONS,
    ORDER_STATUSES,
    PAINTING_STATUSES,
    PAYMENT_METHODS,
    PEOPLE,
    PRICES,
    REQUEST_MESSAGES,
    REQUEST_STATUSES,
    TECHNIQUES,
    TITLES,
    ascii_slug,
)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def site_rng(site: SimSite, entity: str) -> random.Random:
    # One stream per entity: growing one entity does not reshuffle the others.
    return random.Random(f"template-simulator:{site.seed}:{site.key}:{entity}")


class _Picker:
    """Draws from one seeded stream (``random.choice`` costs several times more).

    The loops over large entities (paintings, orders) inline these draws instead: a method
    call per field is most of their cost.
    """

    __slots__ = ("random",)

    def __init__(self, rng: random.Random) -> None:
        self.random = rng.random

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[int(self.random() * len(options))]

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def chance(self, p: float) -> bool:
        return self.random() < p

    def timestamp(self) -> str:
        """A record date, in one of the two formats Template sites send."""
        rnd = self.random
        day = DAYS[int(rnd() * len(DAYS))]
        seconds = int(rnd() * 86400)
        clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return f"{day} {clock}" if rnd() < 0.6 else f"{day}T{clock}Z"


def money(value: Decimal, as_text: bool) -> str | float:
    value = value.quantize(CENT)
    return f"{value:.2f}" if as_text else float(value)


def to_decimal(value: Any) -> Decimal | None:
    """A price as a Decimal, from a number or numeric text; None when it is neither."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(value) if isinstance(value, (str, Decimal)) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def gen_settings(site: SimSite) -> list[dict[str, Any]]:
    rng = site_rng(site, "settings")
    slug = ascii_slug(site.display_name) or "site"
    values: list[tuple[str, Any]] = [
        ("site_name", site.display_name),
        ("site_logo", "Images/logo.png"),
        ("site_description", "Peintures originales, aquarelles et commandes sur mesure."),
        ("contact_email", f"contact@{slug}.example.fr"),
        ("contact_phone", "01 23 45 67 89"),
        ("primary_color", rng.choice(("#8B4513", "#2F4F4F", "#6A5ACD", "#B22222"))),
        ("currency", "EUR"),
        ("language", "fr"),
        ("stripe_publishable_key", f"pk_test_{rng.getrandbits(96):024x}"),
        ("stripe_secret_key", MASKED),
        ("smtp_host", "smtp.example.fr"),
        ("smtp_password", MASKED),
        ("saas_site_price_cache", rng.choice(("19.90", "29.90", "49.00"))),
        ("instagram_url", f"https://instagram.example/{slug}"),
    ]
    return [{"key": key, "value": value} for key, value in values]


def gen_paintings(site: SimSite, site_name: str) -> list[dict[str, Any]]:
    rnd = site_rng(site, "paintings").random
    titles, prices, statuses = TITLES, PRICES, PAINTING_STATUSES
    categories, techniques, dimensions = CATEGORIES, TECHNIQUES, DIMENSIONS
    records = []
    append = records.append
    for pid in range(1, site.paintings + 1):
        price = prices[int(rnd() * len(prices))]
        record: dict[str, Any] = {
            "id": pid,
            "name": titles[int(rnd() * len(titles))],
            "price": f"{price:.2f}" if rnd() < 0.4 else price,
        }
        # Required by the Dashboard: every valid painting has one.
        record["category"] = categories[int(rnd() * len(categories))]
        if rnd() >= 0.05:
            record["technique"] = techniques[int(rnd() * len(techniques))]
        year = 1975 + int(rnd() * 51)
        year_form = rnd()
        if year_form < 0.6:
            record["year"] = year
        elif year_form < 0.9:
            record["year"] = str(year)
        status = statuses[int(rnd() * len(statuses))]
        if status == "Vendu":
            record["quantity"] = 0
        else:
            # Originals are unique; prints come in small series.
            record["quantity"] = 1 if rnd() < 0.8 else 2 + int(rnd() * 9)
        record["status"] = status
        record["image"] = f"Images/painting_{pid}.jpg"
        record["display_order"] = pid
        record["site_name"] = site_name
        if rnd() < 0.3:
            # Not in the documented fields: models must keep it, not fail on it.
            record["dimensions"] = dimensions[int(rnd() * len(dimensions))]
        append(record)
    return records


def _person(r: _Picker, seen: dict[str, int] | None) -> tuple[str, str]:
    """A name and its e-mail; with ``seen``, e-mails are unique (``marie.dupont2@...``)."""
    name, local = r.pick(PEOPLE)
    email = f"{local}@{r.pick(DOMAINS)}"
    if seen is not None:
        # Numbered suffixes never collide with plain addresses (those have no digit).
        count = seen.get(email, 0) + 1
        seen[email] = count
        if count > 1:
            email = email.replace("@", f"{count}@")
    return name, email


def gen_users(site: SimSite, site_name: str) -> list[dict[str, Any]]:
    r = _Picker(site_rng(site, "users"))
    seen: dict[str, int] = {}
    records = []
    for uid in range(1, site.users + 1):
        name, email = _person(r, seen)
        record: dict[str, Any] = {
            "id": uid,
            "name": name,
            "email": email,
            "create_date": r.timestamp(),
        }
        role_draw = r.random()
        if uid == 1 or role_draw < 0.05:
            record["role"] = "admin"
        elif role_draw < 0.85:
            record["role"] = "user"
        # else: no role at all, which means "user"
        record["site_name"] = site_name
        if r.chance(0.25):
            record["phone"] = f"06 {r.below(100):02d} {r.below(100):02d} {r.below(100):02d} 00"
        records.append(record)
    return records


def order_total(items: list[dict[str, Any]]) -> Decimal:
    """Sum of price x quantity over an order's items (the total of a valid order)."""
    total = Decimal(0)
    for item in items:
        price = to_decimal(item.get("price")) or Decimal(0)
        total += price * int(item.get("quantity") or 0)
    return total.quantize(CENT)


def gen_orders(
    site: SimSite, site_name: str, paintings: list[dict[str, Any]], valid_painting_rows: list[int]
) -> list[dict[str, Any]]:
    r = _Picker(site_rng(site, "orders"))
    rnd = r.random
    # Item fields of each orderable painting, prices as floats: every price is a multiple of
    # 0.5, so float sums are exact and the total is the Decimal sum too.
    offers = [
        (p["id"], p["name"], p["image"], float(p["price"]))
        for p in (paintings[row] for row in valid_painting_rows)
    ]
    records = []
    for oid in range(1, site.orders + 1):
        name, email = _person(r, None)
        items = []
        total = 0.0
        if offers:
            for _ in range(1 + (rnd() < 0.3) + (rnd() < 0.1)):
                painting_id, title, image, price = offers[int(rnd() * len(offers))]
                quantity = 1 if rnd() < 0.85 else 2
                total += price * quantity
                items.append(
                    {
                        "painting_id": painting_id,
                        "name": title,
                        "image": image,
                        "price": price,
                        "quantity": quantity,
                    }
                )
        record: dict[str, Any] = {
            "id": oid,
            "customer_name": name,
            "email": email,
            "total_price": f"{total:.2f}" if rnd() < 0.5 else total,
            "order_date": r.timestamp(),
            "status": r.pick(ORDER_STATUSES),
            "items": items,
            "site_name": site_name,
        }
        if rnd() < 0.5:
            record["payment_method"] = r.pick(PAYMENT_METHODS)
        records.append(record)
    return records


def gen_exhibitions(site: SimSite) -> list[dict[str, Any]]:
    r = _Picker(site_rng(site, "exhibitions"))
    records = []
    for eid in range(1, site.exhibitions + 1):
        start = date(2024, 1, 1) + timedelta(days=r.below(700))
        record: dict[str, Any] = {
            "id": eid,
            "title": r.pick(EXHIBITION_TITLES),
            "description": r.pick(EXHIBITION_DESCRIPTIONS),
            "start_date": start.isoformat(),
            "end_date": (start + timedelta(days=14 + r.below(80))).isoformat(),
            "location": r.pick(LOCATIONS),
        }
        if r.chance(0.5):
            record["vernissage"] = f"{start.isoformat()} 18:30"
        records.append(record)
    return records


def gen_custom_requests(site: SimSite) -> list[dict[str, Any]]:
    r = _Picker(site_rng(site, "custom_requests"))
    records = []
    for rid in range(1, site.custom_requests + 1):
        name, email = _person(r, None)
        record: dict[str, Any] = {"id": rid, "name": name, "email": email}
        record["message"] = r.pick(REQUEST_MESSAGES)
        budget_form = r.random()
        budget = 200.0 + 50 * r.below(60)
        if budget_form < 0.5:
            record["budget"] = budget
        elif budget_form < 0.85:
            record["budget"] = f"{budget:.2f}"
        record["status"] = r.pick(REQUEST_STATUSES)
        record["created_at"] = r.timestamp()
        records.append(record)
    return records
