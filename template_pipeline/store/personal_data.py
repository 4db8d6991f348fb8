"""Personal data: erased from records deleted upstream after a delay, and one person on request.

Which columns are personal is the entity registry's ``personal_fields`` (names, emails, free
text, and ``extra``: a person's unknown fields, a phone number or an address); which column
names the person is its ``person_field``. Erasing sets those columns to NULL and stamps
``erased_at``: the rest of the row (ids, amounts, dates, status) stays for history, and the
``dashboard_*`` views keep working (a forgotten live row shows NULL where the person was).

:func:`erase_deleted` erases the rows a site deleted (``deleted_at``) longer ago than the delay.
:func:`forget` erases one address everywhere it is stored: the rows it names (the person's
fields all go), the address wherever else it appears in text or JSON (replaced by
``[erased]``), and the payloads of the rejects holding it. A row erased while its site still
serves the record is written again by the next sync (its content hash is cleared): the pipeline
mirrors the sites, so a person is erased at the source first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from psycopg import sql
from sqlalchemy.dialects.postgresql import JSONB

from template_pipeline.domain.entities import ENTITIES, PERSONAL
from template_pipeline.store.tables import ENTITY_TABLES, template_rejects

ERASED = "[erased]"
# An address to forget: something@something, without what would need escaping in JSON text.
_ADDRESS_RE = re.compile(r"^[^\s\"\\@]+@[^\s\"\\@]+$")


class ForgetError(ValueError):
    """The address cannot be forgotten as given (it names the problem)."""


@dataclass
class Erased:
    """What an erasure changed: rows per table, and how many of them are still live."""

    tables: dict[str, int] = field(default_factory=dict)
    live: int = 0  # rows their site still serves: the next sync brings them back

    @property
    def total(self) -> int:
        return sum(self.tables.values())

    def add(self, table: str, count: int) -> None:
        if count:
            self.tables[table] = self.tables.get(table, 0) + count


def _nulls(columns: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in columns)


def erase_deleted(
    conn: psycopg.Connection, older_than: timedelta, *, site: str | None = None
) -> Erased:
    """Erase the personal fields of rows deleted upstream more than ``older_than`` ago.

    Rows already erased are left alone; a row deleted more recently keeps its data (it may come
    back). Runs on the caller's transaction.
    """
    erased = Erased()
    for entity in PERSONAL:
        spec = ENTITY_TABLES[entity.name]
        cur = conn.execute(
            sql.SQL(
                "UPDATE {table} SET {nulls}, erased_at = now() "
                "WHERE deleted_at IS NOT NULL AND deleted_at < now() - %(age)s "
                "AND erased_at IS NULL AND (%(site)s::text IS NULL OR site = %(site)s)"
            ).format(table=sql.Identifier(spec.name), nulls=_nulls(entity.personal_fields)),
            {"age": older_than, "site": site},
        )
        erased.add(spec.name, cur.rowcount)
    return erased


def check_address(address: str) -> str:
    """``address`` stripped, or :class:`ForgetError` when it does not look like one."""
    cleaned = address.strip()
    if not _ADDRESS_RE.match(cleaned):
        raise ForgetError(
            f"{address!r} is not an e-mail address (local@domain, no spaces, quotes or backslashes)"
        )
    return cleaned


def _like(address: str) -> str:
    escaped = address.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _forget_person(
    conn: psycopg.Connection, entity_name: str, address: str, site: str | None
) -> tuple[int, int]:
    """Erase the rows whose person field is ``address``: (rows, of which live)."""
    entity = next(e for e in ENTITIES if e.name == entity_name)
    spec = ENTITY_TABLES[entity_name]
    assert entity.person_field is not None
    cur = conn.execute(
        sql.SQL(
            "UPDATE {table} SET {nulls}, erased_at = now(), content_hash = NULL "
            "WHERE lower(btrim({person})) = lower(%(address)s) "
            "AND (%(site)s::text IS NULL OR site = %(site)s) "
            "RETURNING deleted_at IS NULL"
        ).format(
            table=sql.Identifier(spec.name),
            nulls=_nulls(entity.personal_fields),
            person=sql.Identifier(entity.person_field),
        ),
        {"address": address, "site": site},
    )
    live = [row[0] for row in cur.fetchall()]
    return len(live), sum(live)


def _mention_columns(entity_name: str) -> list[tuple[str, bool]]:
    """(column, is JSON) of the text and JSON data columns of an entity's table."""
    spec = ENTITY_TABLES[entity_name]
    columns = []
    for name in spec.data_columns:
        if name in spec.keys:
            continue
        kind = spec.table.c[name].type
        if isinstance(kind, JSONB):
            columns.append((name, True))
        elif kind.python_type is str:
            columns.append((name, False))
    return columns


def _forget_mentions(
    conn: psycopg.Connection, entity_name: str, address: str, site: str | None
) -> tuple[int, int]:
    """Replace ``address`` by ``[erased]`` in every text and JSON column that holds it."""
    spec = ENTITY_TABLES[entity_name]
    columns = _mention_columns(entity_name)
    if not columns:
        return 0, 0
    # JSON text of an address without quotes or backslashes is the address itself, so the
    # replacement keeps the document valid.
    assigns, holds = [], []
    for name, is_json in columns:
        col = sql.Identifier(name)
        text = sql.SQL("{}::text").format(col) if is_json else col
        replaced = sql.SQL("regexp_replace({text}, %(pattern)s, %(erased)s, 'gi')").format(
            text=text
        )
        value = sql.SQL("{}::jsonb").format(replaced) if is_json else replaced
        assigns.append(sql.SQL("{col} = {value}").format(col=col, value=value))
        holds.append(sql.SQL("{text} ILIKE %(like)s").format(text=text))
    hash_reset = sql.SQL(", content_hash = NULL") if spec.hashed else sql.SQL("")
    # History rows (template_stats) are never written again by a sync.
    live = "deleted_at IS NULL" if spec.mode == "merge" else "false"
    cur = conn.execute(
        sql.SQL(
            "UPDATE {table} SET {assigns}{hash_reset} WHERE ({holds}) "
            "AND (%(site)s::text IS NULL OR site = %(site)s) RETURNING {live}"
        ).format(
            table=sql.Identifier(spec.name),
            assigns=sql.SQL(", ").join(assigns),
            hash_reset=hash_reset,
            holds=sql.SQL(" OR ").join(holds),
            live=sql.SQL(live),
        ),
        {"pattern": re.escape(address), "erased": ERASED, "like": _like(address), "site": site},
    )
    flags = [row[0] for row in cur.fetchall()]
    return len(flags), sum(flags)


def _forget_rejects(conn: psycopg.Connection, address: str, site: str | None) -> int:
    # A reject's payload is the record as the site sent it, whole: it goes whole.
    cur = conn.execute(
        sql.SQL(
            "UPDATE {table} SET payload = NULL WHERE payload::text ILIKE %(like)s "
            "AND (%(site)s::text IS NULL OR site = %(site)s)"
        ).format(table=sql.Identifier(template_rejects.name)),
        {"like": _like(address), "site": site},
    )
    return cur.rowcount


def forget(conn: psycopg.Connection, address: str, *, site: str | None = None) -> Erased:
    """Erase ``address`` (case-insensitive) everywhere it is stored, for one site or all.

    Runs on the caller's transaction: commit it, or roll it back to erase nothing.
    """
    address = check_address(address)
    erased = Erased()
    for entity in PERSONAL:
        rows, live = _forget_person(conn, entity.name, address, site)
        erased.add(ENTITY_TABLES[entity.name].name, rows)
        erased.live += live
    for entity in ENTITIES:
        rows, live = _forget_mentions(conn, entity.name, address, site)
        erased.add(ENTITY_TABLES[entity.name].name, rows)
        erased.live += live
    erased.add(template_rejects.name, _forget_rejects(conn, address, site))
    return erased
