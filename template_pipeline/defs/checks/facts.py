"""What the checks share: the evaluation target, the facts they read, how they report.

Checks read their facts from the Dashboard's database: the assets stream their records into
PostgreSQL, so nothing of the payload is in memory once the asset step is done. What the IO
manager saw (fetched, rejected, duplicate, deleted records) is in the ``template_sync_runs`` row
it writes in the same transaction as the data; a check reads the row of its own run, or the
latest one when it is run on its own.
"""

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.resources import TemplateCheckSettings
from template_pipeline.store.tables import ENTITY_TABLES, template_sync_runs

MASS_DELETE_GUARD = "mass_delete_guard"


FRESHNESS = "freshness"


# "(got 'x@y')" parts of reject reasons quote record values; metadata shows the reasons only.
QUOTED_VALUE_RE = re.compile(r"\s*\(got [^)]*\)")


@dataclass(frozen=True)
class CheckTarget:
    """One evaluation: a site partition of an entity, in a run.

    Evaluated right after a sync wrote the entity, ``sync`` is that write's result and
    ``stats`` the stats row the same sync stored: the evaluations read them instead of
    querying for them. On its own (the UI's "Execute check"), both are read from the tables.
    """

    site: str
    entity: str
    run_id: str | None = None
    sync: Any = None  # a store.results.SyncResult of this run
    stats: Mapping[str, Any] | None = None  # the template_stats row this run wrote

    def __str__(self) -> str:
        return f"{self.entity} of site {self.site!r}"


Evaluate = Callable[[sa.Connection, CheckTarget, TemplateCheckSettings], dg.AssetCheckResult]


def check_result(
    passed: bool,
    description: str,
    metadata: Mapping[str, Any],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=passed, severity=severity, description=description, metadata=dict(metadata)
    )


def no_sync(target: CheckTarget) -> dg.AssetCheckResult:
    # Nothing to judge yet (the check was launched before the first sync): a soft failure, so
    # the check does not turn green on no data, and nothing downstream is blocked for it.
    return check_result(
        False,
        f"no successful sync of {target} is recorded yet",
        {"site": target.site},
        dg.AssetCheckSeverity.WARN,
    )


def latest_sync(conn: sa.Connection, target: CheckTarget, *, success_only: bool) -> Any:
    """The ``template_sync_runs`` row of the target's own run if any, else its latest row."""
    if target.sync is not None and (not success_only or target.sync.status == "success"):
        return target.sync
    runs = template_sync_runs
    query = sa.select(runs).where(runs.c.site == target.site, runs.c.entity == target.entity)
    if success_only:
        query = query.where(runs.c.status == "success")
    own_run_first = sa.case((runs.c.run_id == (target.run_id or ""), 0), else_=1)
    query = query.order_by(own_run_first, runs.c.finished_at.desc(), runs.c.id.desc()).limit(1)
    return conn.execute(query).first()


def target_live_count(conn: sa.Connection, target: CheckTarget) -> int:
    """The target's live rows: counted by its sync when there is one, else in the table."""
    if target.sync is not None and target.sync.status == "success":
        return int(target.sync.live_rows)
    return live_count(conn, target.entity, target.site)


def live_count(conn: sa.Connection, entity: str, site: str) -> int:
    table = ENTITY_TABLES[entity].table
    query = sa.select(sa.func.count()).select_from(table).where(table.c.site == site)
    if "deleted_at" in table.c:
        query = query.where(table.c.deleted_at.is_(None))
    return int(conn.execute(query).scalar_one())


def pct(part: int | float, whole: int | float) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return dg.MetadataValue.md("\n".join(lines))
