"""The Postgres IO manager: streams an :class:`EntitySnapshot` into the Dashboard's tables.

One site partition of one entity is written per call, atomically, on one psycopg 3 connection:

1. the snapshot's batches are streamed (while the asset is still fetching pages) into a
   temporary staging table with ``COPY``; rejects go to ``template_rejects`` the same way;
2. a transaction-scoped advisory lock on ``(table, site)`` serialises writers of one site;
3. duplicate keys in the payload are resolved to their last occurrence;
4. set-based statements soft-delete rows the site no longer serves, restore rows that came back,
   update rows whose content changed and insert new keys. Unchanged rows are not written at
   all (no new row version), so a re-sync of an unchanged site is cheap and leaves no trace;
5. a mass-delete guard refuses a snapshot that would soft-delete too large a share of the site;
6. a ``template_sync_runs`` row records the outcome, in the same transaction on success and in
   a separate one when the sync failed or was refused (after the rollback, so the table is
   exactly as it was before).

The SQL names only identifiers from ``tables.py`` (through ``psycopg.sql.Identifier``); every
value is a bound parameter or travels through COPY.
"""

from __future__ import annotations

import json
import logging
import operator
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import dagster as dg
import orjson
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from pydantic import Field

from template_pipeline.domain.batches import EntitySnapshot, Reject, gc_paused
from template_pipeline.store import db
from template_pipeline.store.tables import (
    ENTITY_TABLES,
    SYNC_COUNT_COLUMNS,
    TableSpec,
    create_tables,
    template_rejects,
    template_sync_runs,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

PREVIEW_ROWS = 5
# Enough of an error for an operator to act on; a traceback belongs in the Dagster run logs.
_MAX_ERROR_CHARS = 2000
_STAGE = sql.Identifier("template_stage")
_ORD = "ord"
_ORD_ID = sql.Identifier(_ORD)
# Rejects wait in memory until this many are pending (see _load_stage).
_REJECT_BUFFER = 5000
_SITE_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(hashtextextended('template_pipeline:' || %s || ':' || %s, 0))"
)


class _Log(Protocol):
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


class MassDeleteRefusedError(dg.Failure):
    """A snapshot would soft-delete too large a share of a site's live rows; nothing was written.

    A site answering with a truncated or empty list (a broken deploy, a wrong database behind the
    API) must not empty the Dashboard. The sync is rolled back and recorded as ``refused`` in
    ``template_sync_runs``. A ``dagster.Failure`` that disallows retries: the assets'
    RetryPolicy would only fetch the same short list again, twice, minutes apart.
    """

    def __init__(
        self,
        *,
        site: str,
        entity: str,
        live_rows: int,
        to_delete: int,
        max_delete_fraction: float,
        min_rows_for_guard: int,
    ) -> None:
        self.site = site
        self.entity = entity
        self.live_rows = live_rows
        self.to_delete = to_delete
        self.max_delete_fraction = max_delete_fraction
        self.min_rows_for_guard = min_rows_for_guard
        if to_delete >= live_rows:
            what = f"all {live_rows} live rows (the site served no valid {entity})"
        else:
            what = f"{to_delete} of {live_rows} live rows ({to_delete / live_rows:.0%})"
        super().__init__(
            description=(
                f"refused to sync {entity} of site {site!r}: the snapshot would soft-delete "
                f"{what}, more than max_delete_fraction={max_delete_fraction:g} allows. Nothing "
                "was written. If the site really removed them, rerun with the IO manager's "
                "max_delete_fraction raised (1.0 disables the guard)."
            ),
            metadata={
                "site": site,
                "entity": entity,
                "live_rows": live_rows,
                "would_delete": to_delete,
            },
            allow_retries=False,
        )

    def __reduce__(self):  # keyword-only __init__: tell pickle how to rebuild the error
        return (
            _rebuild_refused,
            (
                self.site,
                self.entity,
                self.live_rows,
                self.to_delete,
                self.max_delete_fraction,
                self.min_rows_for_guard,
            ),
        )


def _rebuild_refused(*args: Any) -> MassDeleteRefusedError:
    site, entity, live_rows, to_delete, fraction, min_rows = args
    return MassDeleteRefusedError(
        site=site,
        entity=entity,
        live_rows=live_rows,
        to_delete=to_delete,
        max_delete_fraction=fraction,
        min_rows_for_guard=min_rows,
    )


class SnapshotContractError(ValueError):
    """A batch row does not carry exactly the data columns of the entity's table."""


@dataclass
class SyncResult:
    """What one ``write_snapshot`` did to one site's slice of one table."""

    site: str
    entity: str
    status: str
    fetched: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    restored: int = 0
    new_fields: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float = 0.0
    # Up to PREVIEW_ROWS staged rows, restricted to the entity's preview columns.
    preview: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    run_id: str = ""
    # Live (not soft-deleted) rows of the site after the sync.
    live_rows: int = 0

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in SYNC_COUNT_COLUMNS}


# --- public functions --------------------------------------------------------------------------


def table_spec(entity: str) -> TableSpec:
    try:
        return ENTITY_TABLES[entity]
    except KeyError:
        raise ValueError(
            f"unknown entity {entity!r}: expected one of {', '.join(ENTITY_TABLES)}"
        ) from None


_tables_ready: set[str] = set()
_tables_lock = threading.Lock()


def ensure_tables(database_url: str) -> None:
    """Create the schema once per process and database (cheap after the first call)."""
    if database_url in _tables_ready:
        return
    with _tables_lock:
        if database_url not in _tables_ready:
            create_tables(database_url)
            _tables_ready.add(database_url)


def write_snapshot(
    database_url: str,
    snapshot: EntitySnapshot,
    *,
    run_id: str,
    max_delete_fraction: float = 0.5,
    min_rows_for_guard: int = 10,
    log: _Log | None = None,
) -> SyncResult:
    """Write ``snapshot`` (one site, one entity) atomically and return what changed.

    The guard: a snapshot that would soft-delete more than ``max_delete_fraction`` of the site's
    live rows is refused when the site has at least ``min_rows_for_guard`` live rows. Whatever the
    site's size, a snapshot with no valid row never empties a site that has live rows (a site
    answering ``[]`` is far more often broken than emptied). ``max_delete_fraction >= 1``
    disables both rules.

    Raises :class:`MassDeleteRefusedError` when refused; any error rolls the transaction back
    (the table, the staging rows and this run's rejects disappear together), is recorded in
    ``template_sync_runs`` and re-raised.
    """
    spec = table_spec(snapshot.entity)
    if max_delete_fraction < 0:
        raise ValueError(f"max_delete_fraction must be >= 0, not {max_delete_fraction}")
    if min_rows_for_guard < 0:
        raise ValueError(f"min_rows_for_guard must be >= 0, not {min_rows_for_guard}")
    log = log or logger
    result = SyncResult(
        site=snapshot.site,
        entity=snapshot.entity,
        status="success",
        started_at=datetime.now(timezone.utc),
        table=spec.name,
        run_id=run_id,
    )
    clock = time.perf_counter()
    ensure_tables(database_url)

    with db.connect(database_url) as conn:
        try:
            with gc_paused():
                _write(
                    conn, spec, snapshot, result, run_id, max_delete_fraction, min_rows_for_guard
                )
            _finish(result, clock)
            _insert_sync_run(conn, result, error=None)
            conn.commit()
        except MassDeleteRefusedError as exc:
            _record_outcome(conn, database_url, result, "refused", exc, clock, log)
            raise
        except Exception as exc:
            _record_outcome(conn, database_url, result, "failed", exc, clock, log)
            raise
        except BaseException:
            # An interrupted run (Dagster termination, Ctrl-C): leave the table as it was.
            _rollback_quietly(conn)
            raise

    log.info(
        "%s of site %s: %d fetched, %d valid, %d rejected, %d duplicates, %d inserted, "
        "%d updated, %d unchanged, %d deleted, %d restored in %.2fs",
        result.entity,
        result.site,
        result.fetched,
        result.valid,
        result.rejected,
        result.duplicates,
        result.inserted,
        result.updated,
        result.unchanged,
        result.deleted,
        result.restored,
        result.duration_s,
    )
    if result.new_fields:
        log.warning(
            "%s of site %s: fields the models do not know yet (kept in extra): %s",
            result.entity,
            result.site,
            ", ".join(result.new_fields),
        )
    return result


def read_live_rows(
    database_url: str,
    entity: str,
    site: str,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The site's live rows of ``entity`` (all history rows for append-only ``stats``).

    Returns an empty frame with the requested columns when the table does not exist yet.
    """
    # pandas costs about a second of CPU to import: only the callers that want a frame pay it.
    import pandas as pd

    names, rows = _select_live_rows(database_url, entity, site, columns)
    with gc_paused():
        return pd.DataFrame.from_records(rows, columns=names)


def read_live_columns(
    database_url: str,
    entity: str,
    site: str,
    columns: Sequence[str] | None = None,
) -> dict[str, list[Any]]:
    """:func:`read_live_rows` as ``{column: [values]}``, in the same order, without pandas.

    ``result["template_id"]`` reads like a frame's column; a table that does not exist yet gives
    empty lists.
    """
    names, rows = _select_live_rows(database_url, entity, site, columns)
    if not rows:
        return {name: [] for name in names}
    values = zip(*rows, strict=True)  # rows to columns
    return {name: list(column) for name, column in zip(names, values, strict=True)}


def _select_live_rows(
    database_url: str, entity: str, site: str, columns: Sequence[str] | None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    spec = table_spec(entity)
    table = spec.table
    names = list(columns) if columns else [c.name for c in table.columns]
    unknown = [name for name in names if name not in table.c]
    if unknown:
        raise ValueError(f"{spec.name} has no column(s) {', '.join(unknown)}")
    order = spec.keys if spec.mode == "merge" else ("fetched_at", "id")
    query = sql.SQL("SELECT {cols} FROM {table} WHERE site = %s{live} ORDER BY {order}").format(
        cols=_idents(names),
        table=sql.Identifier(spec.name),
        live=sql.SQL(" AND deleted_at IS NULL" if spec.mode == "merge" else ""),
        order=_idents(order),
    )
    with db.connect(database_url) as conn, gc_paused():
        exists = conn.execute("SELECT to_regclass(%s)", (spec.name,)).fetchone()
        if exists is None or exists[0] is None:
            return names, []
        return names, conn.execute(query, (site,)).fetchall()


# --- the Dagster IO manager --------------------------------------------------------------------


class TemplatePostgresIOManager(dg.ConfigurableIOManager):
    """Writes each site partition of an entity asset into its Dashboard table, atomically."""

    database_url: str = Field(
        description="SQLAlchemy URL of the Dashboard's PostgreSQL (DASHBOARD_DATABASE_URL)."
    )
    max_delete_fraction: float = Field(
        default=0.5,
        description=(
            "Refuse a snapshot that would soft-delete more than this share of a site's live "
            "rows (1.0 disables the guard)."
        ),
    )
    min_rows_for_guard: int = Field(
        default=10,
        description="The share rule applies only to sites with at least this many live rows.",
    )

    def handle_output(self, context: dg.OutputContext, obj: EntitySnapshot) -> None:
        if not isinstance(obj, EntitySnapshot):
            raise TypeError(
                f"{_describe_asset(context)} returned {type(obj).__name__}; assets written by "
                "TemplatePostgresIOManager must return an EntitySnapshot"
            )
        site = _partition_key(context)
        if obj.site != site:
            raise ValueError(
                f"{_describe_asset(context)}: snapshot of site {obj.site!r} returned for "
                f"partition {site!r}"
            )
        if context.has_asset_key and context.asset_key.path[-1] != obj.entity:
            raise ValueError(
                f"{_describe_asset(context)}: snapshot of entity {obj.entity!r} returned by "
                f"asset {context.asset_key.to_user_string()!r}"
            )
        try:
            result = write_snapshot(
                self.database_url,
                obj,
                run_id=context.run_id,
                max_delete_fraction=self.max_delete_fraction,
                min_rows_for_guard=self.min_rows_for_guard,
                log=context.log,
            )
        except MassDeleteRefusedError as exc:
            # The step fails either way; this also shows the refusal as a failed blocking
            # mass_delete_guard check of the asset for the site (imported here: checks read what
            # this module writes, not the other way round).
            from template_pipeline.defs.checks import report_refused_sync

            report_refused_sync(context, exc)
            raise
        context.add_output_metadata(sync_metadata(result))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        if not context.has_asset_key:
            raise ValueError("TemplatePostgresIOManager loads assets only (the input has no key)")
        entity = context.asset_key.path[-1]
        if context.has_asset_partitions:
            site = context.asset_partition_key
        elif context.has_partition_key:
            site = context.partition_key
        else:
            raise ValueError(f"loading {entity!r} needs a site partition")
        # ``AssetIn(metadata={"columns": [...]})`` narrows the read (Dagster's database IO
        # managers' convention): order_items needs two columns of the orders, not their dates
        # and extras, and reading only those is most of the time of that step on a large site.
        columns = (
            context.definition_metadata.get("columns") if context.definition_metadata else None
        )
        if columns is not None and (
            isinstance(columns, str) or not all(isinstance(c, str) for c in columns)
        ):
            raise ValueError(
                f"input {entity!r}: the 'columns' metadata must be a list of column names"
            )
        return read_live_rows(self.database_url, entity, site, columns)


def sync_metadata(result: SyncResult) -> dict[str, Any]:
    """Dagster materialisation metadata for a sync: counts, duration, a safe preview."""
    return {
        **result.counts(),
        "new_fields": dg.MetadataValue.json(list(result.new_fields)),
        "duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
        "table": dg.MetadataValue.text(result.table),
        "dagster/table_name": result.table,
        "dagster/row_count": int(result.live_rows),
        "dagster/partition_row_count": int(result.live_rows),
        "preview": dg.MetadataValue.md(preview_markdown(result.preview)),
    }


def preview_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "_no rows_"
    columns = list(rows[0])

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 60 else text[:57] + "..."

    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows),
    ]
    return "\n".join(lines)


def _describe_asset(context: dg.OutputContext) -> str:
    if context.has_asset_key:
        return f"asset {context.asset_key.to_user_string()!r}"
    return "output"


def _partition_key(context: dg.OutputContext) -> str:
    if context.has_asset_partitions:
        return context.asset_partition_key
    if context.has_partition_key:
        return context.partition_key
    raise ValueError(f"{_describe_asset(context)} is written per site: it needs a partition key")


# --- the write path ----------------------------------------------------------------------------


def _idents(names: Iterable[str], prefix: str | None = None) -> sql.Composed:
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits, which orjson refuses
        return json.dumps(value, default=str, ensure_ascii=False)


def _write(
    conn: psycopg.Connection,
    spec: TableSpec,
    snapshot: EntitySnapshot,
    result: SyncResult,
    run_id: str,
    max_delete_fraction: float,
    min_rows_for_guard: int,
) -> None:
    site = snapshot.site
    table = sql.Identifier(spec.name)
    cur = conn.cursor()
    # Keep a big site's staging table in memory (it is read by several statements); this must
    # be set before the session's first use of a temporary table, hence session-level on the
    # connection this call owns and closes.
    cur.execute("SET temp_buffers = '128MB'")
    # Room for the hash joins between staging and target (the default 4MB spills to disk).
    cur.execute("SET LOCAL work_mem = '64MB'")
    # Same column types as the target (numeric scale included), so what is compared during the
    # merge is exactly what would be stored.
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
            "SELECT {cols}, 0::bigint AS {ord} FROM {table} WITH NO DATA"
        ).format(stage=_STAGE, cols=_idents(spec.data_columns), ord=_ORD_ID, table=table)
    )
    losers = _load_stage(cur, spec, snapshot, result, run_id)

    # Writers of one site queue here, after staging: the (slow, network-bound) stream only
    # touches this session's temporary table, so two runs of one site may fetch at the same
    # time and only their merges take turns. Every read of the target comes after the lock, so
    # each merge sees the previous one committed. A transaction-scoped lock cannot outlive a
    # rollback.
    cur.execute(_SITE_LOCK_SQL, (spec.name, site))

    if spec.mode == "append":
        # History of what the site reported: a snapshot identical to the site's latest row adds
        # nothing (an unchanged re-sync writes no row; freshness lives in template_sync_runs).
        cur.execute(
            sql.SQL(
                "INSERT INTO {table} (site, run_id, {cols}) "
                "SELECT %s, %s, {scols} FROM {stage} AS s "
                "WHERE NOT EXISTS ("
                " SELECT 1 FROM (SELECT {cols} FROM {table} WHERE site = %s"
                " ORDER BY id DESC LIMIT 1) AS latest"
                " WHERE ({lcols}) IS NOT DISTINCT FROM ({scols})) "
                "ORDER BY {ord}"
            ).format(
                table=table,
                cols=_idents(spec.data_columns),
                scols=_idents(spec.data_columns, "s"),
                lcols=_idents(spec.data_columns, "latest"),
                stage=_STAGE,
                ord=_ORD_ID,
            ),
            (site, run_id, site),
        )
        result.inserted = cur.rowcount
        result.unchanged = result.valid - result.inserted
        result.live_rows = _count(cur, table, site, live_only=False)
        return

    if losers:
        cur.execute(
            sql.SQL("DELETE FROM {stage} WHERE {ord} = ANY(%s)").format(stage=_STAGE, ord=_ORD_ID),
            (losers,),
        )
        result.duplicates = cur.rowcount
    _merge(cur, spec, site, result, run_id, max_delete_fraction, min_rows_for_guard)


def _load_stage(
    cur: psycopg.Cursor,
    spec: TableSpec,
    snapshot: EntitySnapshot,
    result: SyncResult,
    run_id: str,
) -> list[int]:
    """COPY the snapshot's rows into the staging table as the batches arrive.

    One COPY stays open across batches, fed through a queued writer: formatting rows here
    overlaps with the server parsing them, instead of each page waiting for the previous one.
    Rejects are buffered and written between two COPYs (a connection runs one COPY at a time),
    at the end or whenever ``_REJECT_BUFFER`` of them are waiting, which bounds the memory.

    Returns the ordinals of the staged rows that a later row with the same key supersedes.
    Duplicates are found here, from a dict of key -> last ordinal (about 100 bytes per key,
    never the rows themselves), because a self-join of the staging table to find them costs
    more than the rest of an unchanged re-sync.
    """
    site = snapshot.site
    columns = spec.data_columns
    expected = frozenset(columns)
    row_values = operator.itemgetter(*columns)
    key_of = operator.itemgetter(*spec.keys) if spec.keys else None
    composite_key = len(spec.keys) > 1
    missing_key = f"missing key column(s): {', '.join(spec.keys)}"
    json_positions = [i for i, c in enumerate(columns) if c in spec.json_columns]
    preview_columns = spec.preview_columns
    copy_stage = sql.SQL("COPY {stage} ({cols}) FROM STDIN").format(
        stage=_STAGE, cols=_idents((*columns, _ORD))
    )
    last_seen: dict[Any, int] = {}
    losers: list[int] = []
    new_fields: set[str] = set()
    rejects: list[Reject] = []
    ordinal = 0
    batches = iter(snapshot.batches)
    exhausted = False
    while not exhausted:
        exhausted = True
        with cur.copy(copy_stage, writer=QueuedLibpqWriter(cur)) as copy:
            write_row = copy.write_row
            for batch in batches:
                result.fetched += batch.fetched
                new_fields.update(batch.new_fields)
                rejects.extend(batch.rejects)
                if batch.rows:
                    _check_columns(batch.rows[0], expected, spec, site)
                for row in batch.rows:
                    try:
                        values = list(row_values(row))
                        key = key_of(row) if key_of is not None else None
                    except KeyError:
                        _check_columns(row, expected, spec, site)
                        raise
                    if key_of is not None and (key is None or (composite_key and None in key)):
                        # A record without its key cannot be merged: quarantine it.
                        rejects.append(Reject(None, missing_key, row))
                        continue
                    for i in json_positions:
                        if values[i] is not None:
                            values[i] = _json(values[i])
                    ordinal += 1
                    values.append(ordinal)
                    write_row(values)
                    if key_of is not None:
                        previous = last_seen.get(key)
                        last_seen[key] = ordinal
                        if previous is not None:
                            losers.append(previous)
                    if len(result.preview) < PREVIEW_ROWS:
                        result.preview.append({c: _plain(row[c]) for c in preview_columns})
                if len(rejects) >= _REJECT_BUFFER:
                    exhausted = False
                    break
        if rejects:
            _copy_rejects(cur, spec.entity, site, run_id, rejects)
            result.rejected += len(rejects)
            rejects.clear()
    result.valid = ordinal
    result.new_fields = sorted(new_fields)
    return losers


def _check_columns(
    row: Mapping[str, Any], expected: frozenset[str], spec: TableSpec, site: str
) -> None:
    keys = frozenset(row)
    if keys != expected:
        missing = ", ".join(sorted(expected - keys)) or "none"
        unexpected = ", ".join(sorted(keys - expected)) or "none"
        raise SnapshotContractError(
            f"{spec.entity} of site {site!r}: a row does not match the columns of {spec.name} "
            f"(missing: {missing}; unexpected: {unexpected})"
        )


_REJECT_COLUMNS = ("site", "entity", "template_id", "reason", "payload", "run_id")


def _copy_rejects(
    cur: psycopg.Cursor, entity: str, site: str, run_id: str, rejects: Sequence[Reject]
) -> None:
    statement = sql.SQL("COPY {table} ({cols}) FROM STDIN").format(
        table=sql.Identifier(template_rejects.name), cols=_idents(_REJECT_COLUMNS)
    )
    with cur.copy(statement) as copy:
        for reject in rejects:
            template_id = None if reject.template_id is None else str(reject.template_id)
            copy.write_row(
                (site, entity, template_id, reject.reason, _json(reject.payload), run_id)
            )


def _count(cur: psycopg.Cursor, table: sql.Identifier, site: str, *, live_only: bool) -> int:
    live = sql.SQL(" AND deleted_at IS NULL" if live_only else "")
    cur.execute(
        sql.SQL("SELECT count(*) FROM {table} WHERE site = %s{live}").format(
            table=table, live=live
        ),
        (site,),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _merge(
    cur: psycopg.Cursor,
    spec: TableSpec,
    site: str,
    result: SyncResult,
    run_id: str,
    max_delete_fraction: float,
    min_rows_for_guard: int,
) -> None:
    """Apply the deduplicated staging table to the site's rows, writing only what changed."""
    table = sql.Identifier(spec.name)
    key_match = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier("t", k), sql.Identifier("s", k)) for k in spec.keys
    )
    compared = spec.compared_columns
    changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
        _idents(compared, "t"), _idents(compared, "s")
    )
    assign = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in compared
    )
    t_key = sql.Identifier("t", spec.keys[0])
    s_ord = sql.Identifier("s", _ORD)

    # One pass over staging and the site's rows classifies every key. An unchanged re-sync
    # stops here; otherwise only the statements with work to do run, and the guard decides
    # before anything is written.
    cur.execute(
        sql.SQL(
            "SELECT "
            "count(*) FILTER (WHERE {t_key} IS NOT NULL AND t.deleted_at IS NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NULL AND t.deleted_at IS NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NOT NULL AND t.deleted_at IS NOT NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NOT NULL AND {t_key} IS NOT NULL "
            "AND t.deleted_at IS NULL AND {changed}), "
            "count(*) FILTER (WHERE {t_key} IS NULL) "
            "FROM {stage} s FULL JOIN "
            "(SELECT {cols}, deleted_at FROM {table} WHERE site = %s) t ON {match}"
        ).format(
            t_key=t_key,
            s_ord=s_ord,
            changed=changed,
            stage=_STAGE,
            cols=_idents(spec.data_columns),
            table=table,
            match=key_match,
        ),
        (site,),
    )
    row = cur.fetchone()
    assert row is not None  # an aggregate always returns one row
    live_before, to_delete, to_restore, to_update, to_insert = (int(n) for n in row)
    distinct_rows = result.valid - result.duplicates

    if _refuse(live_before, to_delete, distinct_rows, max_delete_fraction, min_rows_for_guard):
        result.deleted = to_delete
        raise MassDeleteRefusedError(
            site=site,
            entity=spec.entity,
            live_rows=live_before,
            to_delete=to_delete,
            max_delete_fraction=max_delete_fraction,
            min_rows_for_guard=min_rows_for_guard,
        )

    if to_delete:
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET deleted_at = now(), synced_at = now(), last_run_id = %s "
                "WHERE t.site = %s AND t.deleted_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE {match})"
            ).format(table=table, stage=_STAGE, match=key_match),
            (run_id, site),
        )
        result.deleted = cur.rowcount

    if to_restore:
        # Rows that come back take the new content; updated_at moves only if that content
        # differs from what was kept when the row was deleted.
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET {assign}, deleted_at = NULL, "
                "updated_at = CASE WHEN {changed} THEN now() ELSE t.updated_at END, "
                "synced_at = now(), last_run_id = %s "
                "FROM {stage} s WHERE t.site = %s AND {match} AND t.deleted_at IS NOT NULL"
            ).format(table=table, assign=assign, changed=changed, stage=_STAGE, match=key_match),
            (run_id, site),
        )
        result.restored = cur.rowcount

    if to_update:
        # The IS DISTINCT FROM filter is what keeps unchanged rows unwritten (no new row
        # version, no WAL); INSERT ... ON CONFLICT DO UPDATE would lock, so rewrite, each one.
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET {assign}, updated_at = now(), synced_at = now(), "
                "last_run_id = %s FROM {stage} s "
                "WHERE t.site = %s AND {match} AND t.deleted_at IS NULL AND {changed}"
            ).format(table=table, assign=assign, stage=_STAGE, match=key_match, changed=changed),
            (run_id, site),
        )
        result.updated = cur.rowcount

    if to_insert:
        cur.execute(
            sql.SQL(
                "INSERT INTO {table} "
                "(site, {cols}, first_seen_at, updated_at, synced_at, last_run_id) "
                "SELECT %s, {s_cols}, now(), now(), now(), %s FROM {stage} s "
                "WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.site = %s AND {match})"
            ).format(
                table=table,
                cols=_idents(spec.data_columns),
                s_cols=_idents(spec.data_columns, "s"),
                stage=_STAGE,
                match=key_match,
            ),
            (site, run_id, site),
        )
        result.inserted = cur.rowcount

    result.unchanged = distinct_rows - result.inserted - result.updated - result.restored
    result.live_rows = live_before - result.deleted + result.inserted + result.restored


def _refuse(
    live: int, to_delete: int, kept: int, max_delete_fraction: float, min_rows_for_guard: int
) -> bool:
    """The mass-delete guard (see ``write_snapshot``)."""
    if to_delete == 0 or max_delete_fraction >= 1:
        return False
    if kept == 0:
        return True
    if live < min_rows_for_guard:
        return False
    return to_delete > max_delete_fraction * live


def _plain(value: Any) -> Any:
    """A preview value as JSON-friendly data (Decimal and dates as text)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _finish(result: SyncResult, clock: float) -> None:
    result.finished_at = datetime.now(timezone.utc)
    result.duration_s = time.perf_counter() - clock


def _insert_sync_run(conn: psycopg.Connection, result: SyncResult, error: str | None) -> None:
    columns = (
        "site",
        "entity",
        "run_id",
        "status",
        *SYNC_COUNT_COLUMNS,
        "new_fields",
        "error",
        "started_at",
        "finished_at",
    )
    values = (
        result.site,
        result.entity,
        result.run_id,
        result.status,
        *result.counts().values(),
        _json(list(result.new_fields)),
        error,
        result.started_at,
        result.finished_at,
    )
    conn.execute(
        sql.SQL("INSERT INTO {table} ({cols}) VALUES ({params})").format(
            table=sql.Identifier(template_sync_runs.name),
            cols=_idents(columns),
            params=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        ),
        values,
    )


def _rollback_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.rollback()
    except psycopg.Error:  # a broken connection: closing it rolls back on the server anyway
        logger.debug("rollback failed; the connection is closed", exc_info=True)


def _record_outcome(
    conn: psycopg.Connection,
    database_url: str,
    result: SyncResult,
    status: str,
    exc: BaseException,
    clock: float,
    log: _Log,
) -> None:
    """Roll back, then record a failed or refused sync in its own short transaction.

    Only what is known without the rolled-back work is kept: the stream's counts and, for a
    refusal, the number of rows the snapshot would have deleted.
    """
    _rollback_quietly(conn)
    result.status = status
    result.inserted = result.updated = result.unchanged = result.restored = 0
    if status != "refused":
        result.deleted = 0
    result.live_rows = 0
    result.preview = []
    _finish(result, clock)
    error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
    try:
        if conn.broken or conn.closed:
            with db.connect(database_url) as fresh:
                _insert_sync_run(fresh, result, error)
        else:
            _insert_sync_run(conn, result, error)
            conn.commit()
    except Exception:
        # The original error matters more than its record: log this one and let that one raise.
        logger.exception(
            "could not record the %s sync of %s for site %s", status, result.entity, result.site
        )
        _rollback_quietly(conn)
    log.warning(
        "%s of site %s: sync %s after %.2fs: %s",
        result.entity,
        result.site,
        status,
        result.duration_s,
        error,
    )


__all__ = [
    "MassDeleteRefusedError",
    "SnapshotContractError",
    "SyncResult",
    "TemplatePostgresIOManager",
    "ensure_tables",
    "read_live_columns",
    "read_live_rows",
    "sync_metadata",
    "table_spec",
    "write_snapshot",
]
