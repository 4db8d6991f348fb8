"""The records a simulated site serves: generated from its seed, then mutable by tests.

The data imitates what Template sites send in the field: French titles and names with accents,
numbers sometimes sent as text, two date formats, optional fields sometimes absent, extra fields
the models do not know, and a share of invalid records (``invalid_ratio``) whose ids and kinds
are recorded in :attr:`SiteData.invalid_kinds` so tests can find them among the rejects.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from template_pipeline.apps.simulator.config import SimSite
from template_pipeline.apps.simulator.generate import (
    gen_custom_requests,
    gen_exhibitions,
    gen_orders,
    gen_paintings,
    gen_settings,
    gen_users,
    iso_utc,
    order_total,
    to_decimal,
)
from template_pipeline.apps.simulator.invalid import make_invalid
from template_pipeline.apps.simulator.vocabulary import CENT, GENERATED_AT

# Record entities in the order of the ``full`` export (settings are key/value pairs, not records).
RECORD_ENTITIES: tuple[str, ...] = (
    "paintings",
    "users",
    "orders",
    "exhibitions",
    "custom_requests",
)


TABLES: tuple[str, ...] = ("settings", *RECORD_ENTITIES)


class SiteData:
    """The records one simulated site serves, as the plain dicts that are serialised.

    Lists are kept ordered by ``id`` (pagination slices them); the mutators keep that order.
    Tests may also edit the dicts directly and then call :meth:`touch`. ``lock`` is held by the
    server while it reads a response, and by the mutators, so a test thread never changes a
    list halfway through a page.
    """

    def __init__(
        self,
        *,
        site_key: str,
        site_name: str,
        settings: list[dict[str, Any]],
        paintings: list[dict[str, Any]],
        users: list[dict[str, Any]],
        orders: list[dict[str, Any]],
        exhibitions: list[dict[str, Any]],
        custom_requests: list[dict[str, Any]],
        invalid_kinds: dict[str, dict[int | float, str]] | None = None,
        last_updated: datetime = GENERATED_AT,
    ) -> None:
        self.site_key = site_key
        self.site_name = site_name
        self.settings = settings
        self.paintings = paintings
        self.users = users
        self.orders = orders
        self.exhibitions = exhibitions
        self.custom_requests = custom_requests
        # entity -> {id as served: kind} of the records generated invalid on purpose.
        self.invalid_kinds: dict[str, dict[int | float, str]] = {
            entity: dict((invalid_kinds or {}).get(entity, {})) for entity in RECORD_ENTITIES
        }
        self.lock = threading.RLock()
        self._last_updated = last_updated

    def __repr__(self) -> str:
        sizes = ", ".join(f"{entity}={len(self.records(entity))}" for entity in RECORD_ENTITIES)
        return f"SiteData({self.site_key!r}, {sizes})"

    # -- reading --

    @property
    def invalid_ids(self) -> dict[str, set[int | float]]:
        """entity -> ids of the records generated invalid (they must end up in rejects).

        An id is as served: a float (12.5) for a record whose id is the thing broken.
        """
        return {entity: set(kinds) for entity, kinds in self.invalid_kinds.items()}

    @property
    def last_updated(self) -> str:
        return iso_utc(self._last_updated)

    def records(self, entity: str) -> list[dict[str, Any]]:
        if entity not in TABLES:
            raise KeyError(
                f"simulated site {self.site_key!r}: unknown entity {entity!r} "
                f"(known: {', '.join(TABLES)})"
            )
        return getattr(self, entity)

    def total_records(self) -> int:
        return sum(len(self.records(table)) for table in TABLES)

    def stats(self) -> dict[str, Any]:
        """The ``stats`` export, computed from the lists as they are now."""
        with self.lock:
            statuses = Counter(p.get("status") for p in self.paintings)
            revenue = Decimal(0)
            for order in self.orders:
                # A real site's revenue sums what customers paid: the deliberately broken orders
                # (negative totals) would make it negative, which no site reports.
                total = to_decimal(order.get("total_price"))
                if total is not None and total > 0:
                    revenue += total
            return {
                "paintings": len(self.paintings),
                "users": len(self.users),
                "orders": len(self.orders),
                "exhibitions": len(self.exhibitions),
                "custom_requests": len(self.custom_requests),
                "revenue": f"{revenue.quantize(CENT):.2f}",
                "available_paintings": statuses["Disponible"],
                "sold_paintings": statuses["Vendu"],
                "last_updated": self.last_updated,
            }

    def get_record(self, entity: str, record_id: int) -> dict[str, Any]:
        with self.lock:
            records = self.records(entity)
            return records[self._index(entity, records, record_id)]

    # -- mutators (each bumps last_updated) --

    def touch(self) -> str:
        """Mark the site as changed now; returns the new ``last_updated``.

        Strictly increasing, even for several changes within one second, so a client polling
        ``stats`` always sees a change.
        """
        with self.lock:
            now = datetime.now(timezone.utc).replace(microsecond=0)
            self._last_updated = max(now, self._last_updated + timedelta(seconds=1))
            return self.last_updated

    def update_record(self, entity: str, record_id: int, **fields: Any) -> dict[str, Any]:
        with self.lock:
            record = self.get_record(entity, record_id)
            if "id" in fields and fields["id"] != record_id:
                raise ValueError(
                    f"simulated site {self.site_key!r}: the id of {entity} {record_id} "
                    "cannot be changed (delete and add instead)"
                )
            record.update(fields)
            self.touch()
            return record

    def delete_record(self, entity: str, record_id: int) -> dict[str, Any]:
        with self.lock:
            records = self.records(entity)
            record = records.pop(self._index(entity, records, record_id))
            self.invalid_kinds.get(entity, {}).pop(record_id, None)
            self.touch()
            return record

    def add_record(self, entity: str, **fields: Any) -> dict[str, Any]:
        """Insert a record (``id`` defaults to the largest id + 1), keeping the id order."""
        with self.lock:
            records = self.records(entity)
            if entity == "settings":
                raise ValueError("use set_setting(key, value) for settings")
            record_id = fields.pop("id", None)
            if record_id is None:
                # int(): the last record may have been given a non-integer id on purpose.
                record_id = (int(records[-1]["id"]) + 1) if records else 1
            if not isinstance(record_id, int) or isinstance(record_id, bool):
                raise ValueError(f"{entity} id must be an integer, got {record_id!r}")
            position = bisect.bisect_left(records, record_id, key=_record_id)
            if position < len(records) and records[position]["id"] == record_id:
                raise ValueError(
                    f"simulated site {self.site_key!r}: {entity} {record_id} already exists"
                )
            record = {"id": record_id, **fields}
            records.insert(position, record)
            self.touch()
            return record

    def set_setting(self, key: str, value: Any) -> None:
        with self.lock:
            for entry in self.settings:
                if entry["key"] == key:
                    entry["value"] = value
                    break
            else:
                self.settings.append({"key": key, "value": value})
            self.touch()

    def delete_setting(self, key: str) -> None:
        with self.lock:
            before = len(self.settings)
            self.settings[:] = [entry for entry in self.settings if entry["key"] != key]
            if len(self.settings) == before:
                raise KeyError(f"simulated site {self.site_key!r}: no setting {key!r}")
            self.touch()

    def update_painting(self, painting_id: int, **fields: Any) -> dict[str, Any]:
        return self.update_record("paintings", painting_id, **fields)

    def delete_painting(self, painting_id: int) -> dict[str, Any]:
        return self.delete_record("paintings", painting_id)

    def add_painting(self, **fields: Any) -> dict[str, Any]:
        """A new, valid painting; ``fields`` override the defaults (``id`` included)."""
        with self.lock:
            record_id = fields.pop("id", None)
            if record_id is None:
                record_id = (int(self.paintings[-1]["id"]) + 1) if self.paintings else 1
            defaults: dict[str, Any] = {
                "name": f"Nouvelle œuvre n°{record_id}",
                "price": 800.0,
                "category": "Paysage",
                "technique": "Huile sur toile",
                "year": 2025,
                "quantity": 1,
                "status": "Disponible",
                "image": f"Images/painting_{record_id}.jpg",
                "display_order": record_id,
                "site_name": self.site_name,
            }
            return self.add_record("paintings", id=record_id, **{**defaults, **fields})

    def add_order(
        self, items: list[tuple[int, int]] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A new order of ``(painting_id, quantity)`` pairs with the matching total.

        Without ``items``: one copy of the first painting. ``fields`` override anything,
        ``total_price`` included (to serve an order whose total does not add up).
        """
        with self.lock:
            if items is None:
                if not self.paintings:
                    raise ValueError(f"simulated site {self.site_key!r} has no painting to order")
                items = [(self.paintings[0]["id"], 1)]
            lines = []
            for painting_id, quantity in items:
                painting = self.get_record("paintings", painting_id)
                lines.append(
                    {
                        "painting_id": painting_id,
                        "name": painting.get("name"),
                        "image": painting.get("image"),
                        "price": float(to_decimal(painting.get("price")) or 0),
                        "quantity": quantity,
                    }
                )
            defaults: dict[str, Any] = {
                "customer_name": "Hélène Moreau",
                "email": "helene.moreau@example.fr",
                "total_price": f"{order_total(lines):.2f}",
                "order_date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                "status": "En attente",
                "items": lines,
                "site_name": self.site_name,
            }
            return self.add_record("orders", **{**defaults, **fields})

    def _index(self, entity: str, records: list[dict[str, Any]], record_id: int) -> int:
        try:
            position = bisect.bisect_left(records, record_id, key=_record_id)
            if position < len(records) and records[position]["id"] == record_id:
                return position
        except (KeyError, TypeError):
            pass  # a test broke the id order or an id: fall back to a scan
        for position, record in enumerate(records):
            if record.get("id") == record_id:
                return position
        raise KeyError(f"simulated site {self.site_key!r}: no {entity} with id {record_id!r}")


def _record_id(record: dict[str, Any]) -> Any:
    return record["id"]


def generate_site_data(site: SimSite) -> SiteData:
    """The records of ``site``, the same for the same site definition (seed, key, sizes)."""
    site_name = site.display_name
    paintings = gen_paintings(site, site_name)
    invalid = {"paintings": make_invalid(site, "paintings", paintings)}
    # Orders reference valid paintings only: an order is invalid only where it is made so.
    valid_rows = [row for row, p in enumerate(paintings) if p["id"] not in invalid["paintings"]]
    generators: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "users": lambda: gen_users(site, site_name),
        "orders": lambda: gen_orders(site, site_name, paintings, valid_rows),
        "exhibitions": lambda: gen_exhibitions(site),
        "custom_requests": lambda: gen_custom_requests(site),
    }
    lists: dict[str, list[dict[str, Any]]] = {"paintings": paintings}
    for entity, generate in generators.items():
        lists[entity] = generate()
        invalid[entity] = make_invalid(site, entity, lists[entity])
    return SiteData(
        site_key=site.key,
        site_name=site_name,
        settings=gen_settings(site),
        invalid_kinds=invalid,
        last_updated=GENERATED_AT,
        **lists,
    )
