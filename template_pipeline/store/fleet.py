"""The fleet at a glance: every site's last sync, failure streak and error kind, in one table.

Read from ``template_sync_state`` (one row per site and entity: the last success, the streak,
the last error and its kind) and ``template_sync_runs`` (the records the last successful sync
of each entity received, and how long the site's latest run took), for the sites of the
registry. The ``fleet_status`` asset's metadata and ``template-pipeline status`` show the same
:func:`markdown`, failing sites first.

A site is ``failing`` when the last attempt of any of its entities failed, ``stale`` when it is
not failing but its latest successful sync is older than the freshness window (or it never
synced), ``ok`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

import sqlalchemy as sa

from template_pipeline.domain.entities import ENTITIES

SiteState = Literal["failing", "stale", "ok"]
_ORDER: dict[str, int] = {"failing": 0, "stale": 1, "ok": 2}
# Entities whose record counts are shown (stats is one document a sync).
COUNTED: tuple[str, ...] = tuple(e.name for e in ENTITIES if e.kind != "stats")

_STATE = sa.text(
    "SELECT site, entity, last_success_at, last_attempt_at, last_status, "
    "consecutive_failures, last_error, last_error_kind FROM template_sync_state"
)
# The records each entity's last successful sync (the state's last_run_id) received.
_RECORDS = sa.text(
    "SELECT s.site, s.entity, r.fetched FROM template_sync_state s "
    "JOIN LATERAL (SELECT fetched FROM template_sync_runs r WHERE r.site = s.site "
    "AND r.entity = s.entity AND r.run_id = s.last_run_id AND r.status = 'success' "
    "ORDER BY r.id DESC LIMIT 1) r ON true WHERE s.last_success_at IS NOT NULL"
)
# How long each site's latest run took: from its first entity's start to its last one's end.
_DURATIONS = sa.text(
    "WITH latest AS (SELECT DISTINCT ON (s.site) s.site, s.last_attempt_at AS at, r.run_id "
    "FROM template_sync_state s JOIN LATERAL (SELECT run_id FROM template_sync_runs r "
    "WHERE r.site = s.site AND r.entity = s.entity AND r.finished_at = s.last_attempt_at "
    "ORDER BY r.id DESC LIMIT 1) r ON true ORDER BY s.site, s.last_attempt_at DESC) "
    "SELECT l.site, extract(epoch FROM max(r.finished_at) - min(r.started_at)) AS seconds "
    "FROM latest l JOIN template_sync_runs r ON r.site = l.site AND r.run_id = l.run_id "
    "AND r.finished_at >= l.at - interval '1 day' GROUP BY l.site"
)


@dataclass(frozen=True)
class SiteStatus:
    """One site's line of the fleet table."""

    site: str
    state: SiteState
    last_success_at: datetime | None
    consecutive_failures: int
    last_error_kind: str | None
    last_error: str | None
    records: Mapping[str, int] = field(default_factory=dict)
    last_duration_s: float | None = None


@dataclass(frozen=True)
class FleetStatus:
    """Every site of the registry, failing ones first."""

    sites: list[SiteStatus]
    at: datetime

    def count(self, state: SiteState) -> int:
        return sum(1 for s in self.sites if s.state == state)

    @property
    def records_synced(self) -> int:
        """Records the latest successful sync of each site and entity received, summed."""
        return sum(sum(s.records.values()) for s in self.sites)

    @property
    def refused_keys(self) -> int:
        """Failing sites whose last error is a refused key."""
        return sum(1 for s in self.sites if s.state == "failing" and s.last_error_kind == "auth")

    def numbers(self) -> dict[str, int]:
        return {
            "sites": len(self.sites),
            "sites_ok": self.count("ok"),
            "sites_failing": self.count("failing"),
            "sites_stale": self.count("stale"),
            "records_synced": self.records_synced,
            "refused_keys": self.refused_keys,
        }


def _site_status(
    site: str,
    states: list[Mapping],
    records: Mapping[str, int],
    duration: float | None,
    stale_before: datetime,
) -> SiteStatus:
    failing = [s for s in states if s["last_status"] != "success"]
    successes = [s["last_success_at"] for s in states if s["last_success_at"] is not None]
    last_success = max(successes) if successes else None
    latest_failure = max(failing, key=lambda s: s["last_attempt_at"]) if failing else None
    if failing:
        state: SiteState = "failing"
    elif last_success is None or last_success < stale_before:
        state = "stale"
    else:
        state = "ok"
    return SiteStatus(
        site=site,
        state=state,
        last_success_at=last_success,
        consecutive_failures=max((int(s["consecutive_failures"]) for s in states), default=0),
        last_error_kind=latest_failure["last_error_kind"] if latest_failure else None,
        last_error=latest_failure["last_error"] if latest_failure else None,
        records=dict(records),
        last_duration_s=duration,
    )


def read_fleet(
    conn: sa.Connection,
    sites: Iterable[str],
    *,
    stale_after: timedelta,
    now: datetime | None = None,
) -> FleetStatus:
    """The status of ``sites`` (the registry's keys), failing first, then stale, then ok."""
    now = now or datetime.now(timezone.utc)
    wanted = list(dict.fromkeys(sites))
    keep = set(wanted)
    states: dict[str, list[Mapping]] = {}
    for row in conn.execute(_STATE).mappings():
        if row["site"] in keep:
            states.setdefault(row["site"], []).append(row)
    records: dict[str, dict[str, int]] = {}
    for site, entity, fetched in conn.execute(_RECORDS):
        if site in keep:
            records.setdefault(site, {})[entity] = int(fetched)
    durations = {
        site: float(seconds)
        for site, seconds in conn.execute(_DURATIONS)
        if site in keep and seconds is not None
    }
    lines = [
        _site_status(
            site,
            states.get(site, []),
            records.get(site, {}),
            durations.get(site),
            now - stale_after,
        )
        for site in wanted
    ]
    lines.sort(key=lambda s: (_ORDER[s.state], -s.consecutive_failures, s.site))
    return FleetStatus(sites=lines, at=now)


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    hours = (now - at).total_seconds() / 3600
    ago = f"{hours:.1f} h ago" if hours < 48 else f"{hours / 24:.0f} d ago"
    return f"{at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC ({ago})"


def table_rows(fleet: FleetStatus) -> list[list[str]]:
    """The fleet table's header and lines, as text cells."""
    header = [
        "site",
        "status",
        "last successful sync",
        "consecutive failures",
        "last error kind",
        *COUNTED,
        "last duration",
    ]
    rows = [header]
    for s in fleet.sites:
        duration = "-" if s.last_duration_s is None else f"{s.last_duration_s:.1f} s"
        rows.append(
            [
                s.site,
                s.state,
                _when(s.last_success_at, fleet.at),
                str(s.consecutive_failures),
                s.last_error_kind or "-",
                *(str(s.records[e]) if e in s.records else "-" for e in COUNTED),
                duration,
            ]
        )
    return rows


def markdown(fleet: FleetStatus) -> str:
    """The fleet table in Markdown (the asset's metadata, and the CLI's output)."""
    if not fleet.sites:
        return "_no site is configured_"

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = table_rows(fleet)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)
