"""The Dashboard's tables: the one schema definition (SQLAlchemy Core).

Table and column names are a contract with the Dashboard application (the README's tables): rename
nothing here without the Dashboard. Every other module takes table and column names from this
file, never from string literals, so the SQL the IO manager builds only ever names identifiers
defined here.

Two kinds of tables:

* merged (``mode="merge"``): the current state of each site, one row per upstream record, keyed
  by ``(site, <keys>)``. Rows deleted upstream keep their row with ``deleted_at`` set. The
  bookkeeping columns say when a row was first seen, when its content last changed
  (``updated_at``), when it was last written (``synced_at``) and by which run.
* history (``template_stats`` append-only, ``template_sync_runs``), ``template_rejects`` (one
  row per distinct bad record, resolved when it goes away) and ``template_sync_state``, the
  latest outcome per site and entity.

The database's schema changes only through the Alembic revisions of ``store/migrations``: a
change here needs a revision that makes the same change (a test compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from template_pipeline.domain.entities import BY_NAME, ENTITIES
from template_pipeline.domain.vocabulary import SYNC_STATUSES
from template_pipeline.store.base import MONEY, TIMESTAMPTZ, check_in, metadata

Mode = Literal["merge", "append"]

# Leave room in each heap page so that an update of a row can stay on its page (a HOT update:
# no new index entries), which is most of the work of a re-sync where part of a site changed.
_MERGED_TABLE_STORAGE = {"fillfactor": 85}


def _bookkeeping_columns() -> list[sa.Column]:
    return [
        sa.Column("first_seen_at", TIMESTAMPTZ, nullable=False),
        # When the row's content last changed (not when it was last fetched).
        sa.Column("updated_at", TIMESTAMPTZ, nullable=False),
        # When the pipeline last wrote the row (insert, change, soft delete or restore).
        sa.Column("synced_at", TIMESTAMPTZ, nullable=False),
        # Set when the site stopped serving the record; cleared if it comes back.
        sa.Column("deleted_at", TIMESTAMPTZ, nullable=True),
        sa.Column("last_run_id", sa.Text, nullable=True),
    ]


def _merged_table(
    name: str,
    keys: tuple[str, ...],
    *data_columns: sa.Column,
    hashed: bool = True,
) -> sa.Table:
    """A merged table: ``site`` + data columns + bookkeeping, primary key ``(site, *keys)``.

    No extra index on ``site``: the primary key starts with it and already serves the
    Dashboard's per-site reads, and a second index would slow down the first load of a site.
    ``hashed`` tables keep the hash of the raw record each row was built from
    (``content_hash``, see ``domain.changes``): an unchanged record is then neither validated
    nor copied again. Derived tables have no raw record. Tables of entities with personal
    fields (the registry's ``personal_fields``) keep when those were erased (``erased_at``, see
    ``store.personal_data``).
    """
    hash_column = [sa.Column("content_hash", sa.BigInteger)] if hashed else []
    # Added by revision 0007, after content_hash.
    personal = bool(BY_NAME[name.removeprefix("template_")].personal_fields)
    erased_column = [sa.Column("erased_at", TIMESTAMPTZ)] if personal else []
    return sa.Table(
        name,
        metadata,
        sa.Column("site", sa.Text, nullable=False),
        *data_columns,
        *_bookkeeping_columns(),
        # Last: revision 0005 added it to tables that existed, and a column added goes last.
        *hash_column,
        *erased_column,
        sa.PrimaryKeyConstraint("site", *keys, name=f"{name}_pkey"),
        postgresql_with=_MERGED_TABLE_STORAGE,
    )


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text)


def _key(name: str) -> sa.Column:
    return sa.Column(name, sa.Text, nullable=False)


def _id(name: str, *, nullable: bool = False) -> sa.Column:
    # The sites' ids are integers: bigint, so the Dashboard's `WHERE template_id = 5` works.
    return sa.Column(name, sa.BigInteger, nullable=nullable)


template_paintings = _merged_table(
    "template_paintings",
    ("template_id",),
    _id("template_id"),
    _text("name"),
    sa.Column("price", MONEY),
    _text("category"),
    _text("technique"),
    sa.Column("year", sa.Integer),
    sa.Column("quantity", sa.Integer),
    _text("status"),
    _text("image"),
    _text("image_url"),
    sa.Column("display_order", sa.Integer),
    _text("site_name"),
    sa.Column("extra", JSONB),
)

template_users = _merged_table(
    "template_users",
    ("template_id",),
    _id("template_id"),
    _text("name"),
    _text("email"),
    sa.Column("create_date", TIMESTAMPTZ),
    _text("role"),
    _text("site_name"),
    sa.Column("extra", JSONB),
)

template_orders = _merged_table(
    "template_orders",
    ("template_id",),
    _id("template_id"),
    _text("customer_name"),
    _text("email"),
    sa.Column("total_price", MONEY),
    sa.Column("order_date", TIMESTAMPTZ),
    _text("status"),
    sa.Column("items", JSONB),
    sa.Column("item_count", sa.Integer),
    _text("site_name"),
    sa.Column("extra", JSONB),
)

template_order_items = _merged_table(
    "template_order_items",
    ("order_id", "line_no"),
    _id("order_id"),
    sa.Column("line_no", sa.Integer, nullable=False),
    _id("painting_id", nullable=True),
    _text("name"),
    _text("image"),
    sa.Column("price", MONEY),
    sa.Column("quantity", sa.Integer),
    sa.Column("extra", JSONB),
    hashed=False,
)

template_settings = _merged_table(
    "template_settings",
    ("key",),
    _key("key"),
    _text("value"),
    sa.Column("is_masked", sa.Boolean),
)

template_exhibitions = _merged_table(
    "template_exhibitions",
    ("template_id",),
    _id("template_id"),
    _text("title"),
    _text("description"),
    sa.Column("start_date", sa.Date),
    sa.Column("end_date", sa.Date),
    _text("location"),
    sa.Column("extra", JSONB),
)

template_custom_requests = _merged_table(
    "template_custom_requests",
    ("template_id",),
    _id("template_id"),
    _text("name"),
    _text("email"),
    _text("message"),
    sa.Column("budget", MONEY),
    _text("status"),
    sa.Column("created_at", TIMESTAMPTZ),
    sa.Column("extra", JSONB),
)

# Append-only: one row per stats fetch, so the Dashboard can chart a site over time.
template_stats = sa.Table(
    "template_stats",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("fetched_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("paintings", sa.Integer),
    sa.Column("users", sa.Integer),
    sa.Column("orders", sa.Integer),
    sa.Column("exhibitions", sa.Integer),
    sa.Column("custom_requests", sa.Integer),
    sa.Column("revenue", sa.Numeric(14, 2)),
    sa.Column("payload", JSONB),
    sa.Index("ix_template_stats_site_fetched_at", "site", "fetched_at"),
)

# Records that failed validation, with the reason: quarantined, never silently dropped. State,
# not a log (store.rejects): one row per distinct bad record of a site and entity, identified by
# ``content_hash`` (its id and payload), with when it was first and last seen, in how many
# successful syncs, and ``resolved_at`` once a successful sync no longer saw it (the site serves
# a valid version, or stopped serving the record). ``template_id`` is the id as the site sent it
# (text), so a reject for a non-integer id can still show it.
template_rejects = sa.Table(
    "template_rejects",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("template_id", sa.Text, nullable=True),
    sa.Column("content_hash", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", JSONB),
    sa.Column("first_seen_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("last_seen_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("times_seen", sa.Integer, nullable=False, server_default="1"),
    sa.Column("last_run_id", sa.Text),
    sa.Column("resolved_at", TIMESTAMPTZ),
    sa.UniqueConstraint(
        "site", "entity", "content_hash", name="template_rejects_site_entity_content_hash_key"
    ),
    # The open rejects of a site and entity: what each sync resolves, and the checks read.
    sa.Index(
        "ix_template_rejects_open",
        "site",
        "entity",
        postgresql_where=sa.text("resolved_at IS NULL"),
    ),
)

SYNC_COUNT_COLUMNS = (
    "fetched",
    "valid",
    "rejected",
    "duplicates",
    "inserted",
    "updated",
    "unchanged",
    "deleted",
    "restored",
)

# One row per (site, entity) sync attempt, whatever its outcome: the audit trail checks and
# the Dashboard read ("when did this site last sync, and what changed"). A 'failed' or
# 'refused' row wrote nothing: its inserted/updated/unchanged/restored are 0, and for
# 'refused' ``deleted`` is the number of rows the snapshot would have soft-deleted.
template_sync_runs = sa.Table(
    "template_sync_runs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    *(
        sa.Column(name, sa.Integer, nullable=False, server_default="0")
        for name in SYNC_COUNT_COLUMNS
    ),
    sa.Column("new_fields", JSONB),
    sa.Column("error", sa.Text),
    sa.Column("started_at", TIMESTAMPTZ, nullable=False),
    sa.Column("finished_at", TIMESTAMPTZ, nullable=False),
    # Why a failed or refused attempt failed (domain.vocabulary.FailureKind, or 'check': a
    # blocking check kept it from running); NULL for a success. Added by revision 0007.
    sa.Column("error_kind", sa.Text),
    check_in("template_sync_runs", "status", SYNC_STATUSES),
    sa.Index("ix_template_sync_runs_site_entity_finished_at", "site", "entity", "finished_at"),
)

# One row per (site, entity): the latest outcome, kept in the transaction of the sync it
# describes. ``last_success_at`` is when the site's data was last confirmed by a successful
# sync: the Dashboard's ``sync_timestamp`` (the dashboard_* views). It lives here, not on the
# entity rows, so that an unchanged re-sync still rewrites no entity row.
template_sync_state = sa.Table(
    "template_sync_state",
    metadata,
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("last_success_at", TIMESTAMPTZ),
    sa.Column("last_run_id", sa.Text),
    sa.Column("last_attempt_at", TIMESTAMPTZ, nullable=False),
    sa.Column("last_status", sa.Text, nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    # The kind of last_error (template_sync_runs.error_kind). Added by revision 0007.
    sa.Column("last_error_kind", sa.Text),
    sa.PrimaryKeyConstraint("site", "entity", name="template_sync_state_pkey"),
    check_in("template_sync_state", "last_status", SYNC_STATUSES),
)

# Columns the IO manager fills in itself (a batch row never carries them).
MERGE_BOOKKEEPING_COLUMNS = (
    "site",
    "content_hash",
    "first_seen_at",
    "updated_at",
    "synced_at",
    "deleted_at",
    "last_run_id",
    "erased_at",
)
APPEND_BOOKKEEPING_COLUMNS = ("id", "site", "run_id", "fetched_at")


@dataclass(frozen=True)
class TableSpec:
    """How one entity is stored: its table, key columns and the columns a batch row carries.

    ``keys`` are the data key columns without ``site``; ``data_columns`` are exactly the keys of
    ``ValidatedBatch.rows`` dicts for the entity (keys included). ``preview_columns`` are the
    columns safe to show in Dagster metadata (no e-mail addresses, no setting values).
    """

    entity: str
    table: sa.Table
    keys: tuple[str, ...]
    data_columns: tuple[str, ...]
    mode: Mode
    preview_columns: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def json_columns(self) -> frozenset[str]:
        """Data columns stored as JSONB (the IO manager serialises them)."""
        return frozenset(c for c in self.data_columns if isinstance(self.table.c[c].type, JSONB))

    @property
    def hashed(self) -> bool:
        """Whether rows keep the hash of their raw record (``content_hash``)."""
        return "content_hash" in self.table.c

    @property
    def compared_columns(self) -> tuple[str, ...]:
        """Data columns whose change is a content change (every data column except the keys)."""
        return tuple(c for c in self.data_columns if c not in self.keys)


# Never shown in previews besides each entity's personal fields: setting values (a site may
# publish a key it should not) and JSON blobs (they may hold anything).
_NEVER_PREVIEWED = frozenset({"value", "extra", "items", "payload"})


def _spec(
    entity_name: str, keys: tuple[str, ...], mode: Mode, personal: tuple[str, ...]
) -> TableSpec:
    table = metadata.tables[f"template_{entity_name}"]
    bookkeeping = MERGE_BOOKKEEPING_COLUMNS if mode == "merge" else APPEND_BOOKKEEPING_COLUMNS
    data_columns = tuple(c.name for c in table.columns if c.name not in bookkeeping)
    hidden = _NEVER_PREVIEWED | set(personal)
    preview = tuple(c for c in data_columns if c not in hidden)
    return TableSpec(entity_name, table, keys, data_columns, mode, preview)


# Entity -> how it is stored, for every entity of the registry (in its order).
ENTITY_TABLES: dict[str, TableSpec] = {
    entity.name: _spec(
        entity.name, entity.keys, "merge" if entity.merged else "append", entity.personal_fields
    )
    for entity in ENTITIES
}


def table_spec(entity: str) -> TableSpec:
    try:
        return ENTITY_TABLES[entity]
    except KeyError:
        raise ValueError(
            f"unknown entity {entity!r}: expected one of {', '.join(ENTITY_TABLES)}"
        ) from None
