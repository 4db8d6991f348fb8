"""Staging: a snapshot's batches streamed with COPY into a temporary table, rejects beside it
(in a temporary table of their own, :mod:`.rejects`).

The staging table has the target's column types (numeric scale included), so what the merge
compares is exactly what would be stored; it is dropped at commit or rollback.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from template_pipeline.domain.batches import EntitySnapshot, Reject, ValidatedBatch
from template_pipeline.store.idents import idents, json_text
from template_pipeline.store.rejects import copy_rejects, create_reject_stage
from template_pipeline.store.results import SnapshotContractError, SyncResult
from template_pipeline.store.tables import TableSpec

PREVIEW_ROWS = 5
STAGE = sql.Identifier("template_stage")
ORD = "ord"
ORD_ID = sql.Identifier(ORD)
# Rejects wait in memory until this many are pending (see load_stage).
_REJECT_BUFFER = 5000


def create_stage(cur: psycopg.Cursor, spec: TableSpec) -> None:
    """The session's staging table for ``spec``: its data columns and an ordinal."""
    # temp_buffers is set when the connection opens (store.db.connect): it must be set before
    # the session's first temporary table. work_mem: room for the hash joins between staging
    # and target (the default 4MB spills to disk).
    cur.execute("SET LOCAL work_mem = '64MB'")
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
            "SELECT {cols}, 0::bigint AS {ord} FROM {table} WITH NO DATA"
        ).format(
            stage=STAGE,
            cols=idents(stage_columns(spec)),
            ord=ORD_ID,
            table=sql.Identifier(spec.name),
        )
    )


def stage_columns(spec: TableSpec) -> tuple[str, ...]:
    """The columns a staged row carries besides its ordinal: the data, and its content hash."""
    return (*spec.data_columns, "content_hash") if spec.hashed else spec.data_columns


def drop_superseded(cur: psycopg.Cursor, losers: Sequence[int]) -> int:
    """Delete the staged rows a later row with the same key supersedes; how many went."""
    if not losers:
        return 0
    cur.execute(
        sql.SQL("DELETE FROM {stage} WHERE {ord} = ANY(%s)").format(stage=STAGE, ord=ORD_ID),
        (list(losers),),
    )
    return cur.rowcount


def load_stage(
    cur: psycopg.Cursor,
    spec: TableSpec,
    snapshot: EntitySnapshot,
    result: SyncResult,
) -> Staged:
    """COPY the snapshot's rows into the staging table as the batches arrive.

    One COPY stays open across batches, fed through a queued writer: formatting rows here
    overlaps with the server parsing them, instead of each page waiting for the previous one.
    Rejects are buffered and written between two COPYs (a connection runs one COPY at a time),
    at the end or whenever ``_REJECT_BUFFER`` of them are waiting, which bounds the memory.

    Returns the staged keys, and the ordinals of the staged rows that a later row with the
    same key supersedes. Duplicates are found here, from a dict of key -> last ordinal (about
    100 bytes per key, never the rows themselves), because a self-join of the staging table to
    find them costs more than the rest of an unchanged re-sync.
    """
    stager = _Stager(spec, snapshot.site, result)
    copy_stage = sql.SQL("COPY {stage} ({cols}) FROM STDIN").format(
        stage=STAGE, cols=idents((*stage_columns(spec), ORD))
    )
    batches = iter(snapshot.batches)
    rejects_staged = False
    exhausted = False
    while not exhausted:
        exhausted = True
        with cur.copy(copy_stage, writer=QueuedLibpqWriter(cur)) as copy:
            for batch in batches:
                stager.stage(batch, copy.write_row)
                if len(stager.rejects) >= _REJECT_BUFFER:
                    exhausted = False
                    break
        if stager.rejects:
            if not rejects_staged:
                create_reject_stage(cur)
                rejects_staged = True
            copy_rejects(cur, stager.rejects)
            result.rejected += len(stager.rejects)
            stager.rejects.clear()
    result.valid = stager.ordinal
    result.new_fields = sorted(stager.new_fields)
    return Staged(keys=stager.last_seen.keys(), losers=stager.losers, rejects=rejects_staged)


@dataclass(frozen=True)
class Staged:
    """What the stage holds: its rows' keys, the ordinals superseded by a later duplicate, and
    whether any reject was staged (:func:`~template_pipeline.store.rejects.record_rejects`)."""

    keys: Iterable[Any]
    losers: list[int]
    rejects: bool = False


class _Stager:
    """Turns batches into COPY rows: JSON columns encoded, an ordinal each, duplicates noted."""

    def __init__(self, spec: TableSpec, site: str, result: SyncResult) -> None:
        self.spec = spec
        self.site = site
        self.result = result
        self.expected = frozenset(spec.data_columns)
        self.row_values = operator.itemgetter(*spec.data_columns)
        self.key_of = operator.itemgetter(*spec.keys) if spec.keys else None
        self.composite_key = len(spec.keys) > 1
        self.missing_key = f"missing key column(s): {', '.join(spec.keys)}"
        self.json_positions = [i for i, c in enumerate(spec.data_columns) if c in spec.json_columns]
        self.hashed = spec.hashed
        self.last_seen: dict[Any, int] = {}
        self.losers: list[int] = []
        self.new_fields: set[str] = set()
        self.rejects: list[Reject] = []
        self.ordinal = 0

    def stage(self, batch: ValidatedBatch, write_row: Callable[[Sequence[Any]], None]) -> None:
        result, spec = self.result, self.spec
        result.fetched += batch.fetched
        self.new_fields.update(batch.new_fields)
        self.rejects.extend(batch.rejects)
        if batch.rows:
            check_columns(batch.rows[0], self.expected, spec, self.site)
        # Locals: this loop runs once per row of the site.
        row_values, key_of, json_positions = self.row_values, self.key_of, self.json_positions
        hashed = self.hashed
        last_seen, losers, ordinal = self.last_seen, self.losers, self.ordinal
        for row in batch.rows:
            try:
                values = list(row_values(row))
                key = key_of(row) if key_of is not None else None
            except KeyError:
                check_columns(row, self.expected, spec, self.site)
                raise
            if key_of is not None and (key is None or (self.composite_key and None in key)):
                # A record without its key cannot be merged: quarantine it.
                self.rejects.append(Reject(None, self.missing_key, row))
                continue
            for i in json_positions:
                if values[i] is not None:
                    values[i] = json_text(values[i])
            if hashed:
                values.append(row.get("content_hash"))
            ordinal += 1
            values.append(ordinal)
            write_row(values)
            if key_of is not None:
                previous = last_seen.get(key)
                last_seen[key] = ordinal
                if previous is not None:
                    losers.append(previous)
            if len(result.preview) < PREVIEW_ROWS:
                result.preview.append({c: plain(row[c]) for c in spec.preview_columns})
        self.ordinal = ordinal


def check_columns(
    row: Mapping[str, Any], expected: frozenset[str], spec: TableSpec, site: str
) -> None:
    # content_hash is optional: rows validated without a ChangeFilter do not carry one.
    keys = frozenset(row) - {"content_hash"}
    if keys != expected:
        missing = ", ".join(sorted(expected - keys)) or "none"
        unexpected = ", ".join(sorted(keys - expected)) or "none"
        raise SnapshotContractError(
            f"{spec.entity} of site {site!r}: a row does not match the columns of {spec.name} "
            f"(missing: {missing}; unexpected: {unexpected})"
        )


def plain(value: Any) -> Any:
    """A preview value as JSON-friendly data (Decimal and dates as text)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
