"""The entity registry: every entity the pipeline syncs, described once.

Each :class:`Entity` says where its records come from (export endpoint, envelope keys), what
validates them (its model), where they land (table, keys) and how it relates to the others
(``derived_from``, counted by the site's stats, named by webhook events). The client, the
validation, the tables, the assets, the checks, the CLI, the webhook intake and the sensors all
read this table: adding an endpoint is one entry here, one model and one table.

The order of :data:`ENTITIES` is the lineage order (an entity after the one it derives from),
used wherever entities are listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from template_pipeline.domain.models.records import (
    CustomRequest,
    Exhibition,
    Order,
    OrderItem,
    Painting,
    Setting,
    Stats,
    TemplateRecord,
    User,
    field_names,
)

# list: a paginated export endpoint of records; settings: key/value records in one document;
# stats: one document (appended as history); derived: computed from another entity's rows.
Kind = Literal["settings", "list", "stats", "derived"]


@dataclass(frozen=True)
class Entity:
    """One synced entity: its source, its model, its table and its relations."""

    name: str  # the asset name, and the table's suffix: template_<name>
    kind: Kind
    model: type[TemplateRecord]
    description: str
    endpoint: str | None = None  # path segment under /api/export/ (None: derived)
    # Keys holding the records in the named envelope ({"paintings": [...]}) and in the ``full``
    # document, the first one preferred.
    envelope_keys: tuple[str, ...] = ()
    keys: tuple[str, ...] = ("template_id",)  # the table's key columns besides ``site``
    id_field: str = "id"  # the record field the first key comes from
    derived_from: str | None = None
    # Whether the site's stats document counts this entity (the matches_site_stats check and the
    # changes sensor read that counter).
    counted_by_stats: bool = False
    # Webhook events: <noun>_created / _updated / _deleted for records, <noun>_updated for settings.
    webhook_noun: str | None = None
    # Columns holding personal data (names, emails, free text, and ``extra``: the unknown
    # fields of a record about a person, a phone number or an address, are personal too):
    # never shown in previews, erased once the record has been deleted upstream for
    # TEMPLATE_PERSONAL_DATA_ERASE_DAYS, and by ``template-pipeline forget``.
    personal_fields: tuple[str, ...] = ()
    # The column naming the person a record is about (``forget --email`` matches it).
    person_field: str | None = None
    known_fields: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "known_fields", field_names(self.model))

    @property
    def table(self) -> str:
        return f"template_{self.name}"

    @property
    def has_records(self) -> bool:
        """Served as records one by one: rejects and duplicate keys are possible."""
        return self.kind in ("list", "settings")

    @property
    def merged(self) -> bool:
        """Its table holds the site's current state (soft deletes, the mass-delete guard)."""
        return self.kind != "stats"

    @property
    def webhook_events(self) -> tuple[str, ...]:
        if self.webhook_noun is None:
            return ()
        verbs = ("updated",) if self.kind == "settings" else ("created", "updated", "deleted")
        return tuple(f"{self.webhook_noun}_{verb}" for verb in verbs)


ENTITIES: tuple[Entity, ...] = (
    Entity(
        "settings",
        "settings",
        Setting,
        "Site settings (secrets masked upstream, never stored).",
        endpoint="settings",
        envelope_keys=("settings",),
        keys=("key",),
        id_field="key",
        webhook_noun="settings",
    ),
    Entity(
        "paintings",
        "list",
        Painting,
        "Paintings of the site's catalogue, with absolute image URLs.",
        endpoint="paintings",
        envelope_keys=("paintings",),
        counted_by_stats=True,
        webhook_noun="painting",
    ),
    Entity(
        "users",
        "list",
        User,
        "Registered users of the site.",
        endpoint="users",
        envelope_keys=("users",),
        counted_by_stats=True,
        webhook_noun="user",
        personal_fields=("name", "email", "extra"),
        person_field="email",
    ),
    Entity(
        "orders",
        "list",
        Order,
        "Orders with their items as sent by the site.",
        endpoint="orders",
        envelope_keys=("orders",),
        counted_by_stats=True,
        webhook_noun="order",
        personal_fields=("customer_name", "email", "extra"),
        person_field="email",
    ),
    Entity(
        "exhibitions",
        "list",
        Exhibition,
        "Exhibitions announced on the site.",
        endpoint="exhibitions",
        envelope_keys=("exhibitions",),
        counted_by_stats=True,
        webhook_noun="exhibition",
    ),
    Entity(
        "custom_requests",
        "list",
        CustomRequest,
        "Custom painting requests from visitors.",
        endpoint="custom-requests",
        envelope_keys=("custom_requests", "custom-requests", "customRequests"),
        counted_by_stats=True,
        webhook_noun="custom_request",
        personal_fields=("name", "email", "message", "extra"),
        person_field="email",
    ),
    Entity(
        "stats",
        "stats",
        Stats,
        "The site's own statistics, appended as history on every sync.",
        endpoint="stats",
        keys=(),
    ),
    Entity(
        "order_items",
        "derived",
        OrderItem,
        "Order lines: one row per item of each live order, derived from orders.",
        keys=("order_id", "line_no"),
        derived_from="orders",
    ),
)

BY_NAME: Mapping[str, Entity] = {entity.name: entity for entity in ENTITIES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
# Entities read from an export endpoint, in lineage order.
FETCHED: tuple[Entity, ...] = tuple(e for e in ENTITIES if e.endpoint is not None)
# Record endpoints read page by page.
LIST_ENTITIES: tuple[Entity, ...] = tuple(e for e in ENTITIES if e.kind == "list")
# The tables of the ``full`` export document: every entity served as records.
FULL_EXPORT: tuple[Entity, ...] = tuple(e for e in ENTITIES if e.has_records)
# Entities whose rows hold personal data, in lineage order.
PERSONAL: tuple[Entity, ...] = tuple(e for e in ENTITIES if e.personal_fields)
# Webhook event name -> the entity it is about.
EVENT_ENTITIES: Mapping[str, str] = {
    event: entity.name for entity in ENTITIES for event in entity.webhook_events
}


def entity(name: str) -> Entity:
    """The entity called ``name`` (``-`` accepted for ``_``); a clear error for an unknown one."""
    found = BY_NAME.get(name.replace("-", "_"))
    if found is None:
        raise ValueError(f"unknown entity {name}; choose among {', '.join(NAMES)}")
    return found


def by_endpoint(endpoint: str) -> Entity:
    for candidate in FETCHED:
        if candidate.endpoint == endpoint:
            return candidate
    raise ValueError(f"unknown export endpoint {endpoint!r}")


def sync_closure(names: Iterable[str]) -> list[str]:
    """The entities a sync of ``names`` must cover, in lineage order; empty for none.

    Derived entities follow their source (``order_items`` with ``orders``), and ``stats`` comes
    with anything, so that the site's counts match the rows they are checked against.
    """
    wanted = set(names)
    if not wanted:
        return []
    wanted.add("stats")
    for candidate in ENTITIES:
        if candidate.derived_from in wanted:
            wanted.add(candidate.name)
    return [name for name in NAMES if name in wanted]


def entities_for_events(events: Iterable[str]) -> list[str]:
    """The entities to sync for webhook ``events`` (unknown events contribute nothing)."""
    return sync_closure(EVENT_ENTITIES[e] for e in events if e in EVENT_ENTITIES)


# Entity -> the field names its model reads, aliases included ("order_items": the fields of an
# order's item). Anything else is an unknown field: kept in ``extra`` and reported as new.
KNOWN_FIELDS: Mapping[str, frozenset[str]] = {e.name: e.known_fields for e in ENTITIES}
