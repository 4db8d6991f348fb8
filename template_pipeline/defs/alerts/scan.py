"""Reading the event log for alerts: failed checks of the template assets and failed runs.

Dagster open source does not alert on failed asset checks by itself. The alerts sensor calls
:func:`scan_for_alerts`, which reads the instance's event log after a cursor: every asset check
evaluation of the template assets, and every failure of the pipeline's runs.

What is "new": a failed check alerts when the same check on the same site has no open alert of
that severity or higher; a passing evaluation resolves the open alerts of its check and site
(``resolved_at``). A check that keeps failing night after night therefore alerts once, and again
after it has passed in between. Every failed run alerts once, unless all of its failed steps are
explained by a failed ERROR check of the same run (that check already alerted, or is known to
be failing). ``ALERT_MIN_SEVERITY=ERROR`` keeps WARN check failures out of the sinks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.alerts.sinks import (
    SEVERITY_RANK,
    Alert,
    AlertLog,
    Delivery,
    first_line,
    open_alert_severity,
    resolve_alerts,
)
from template_pipeline.defs.resources import AlertSinks
from template_pipeline.defs.tags import SITE_TAG
from template_pipeline.domain.entities import NAMES

logger = logging.getLogger(__name__)


# Events read per tick and kind; a backlog is worked off over the next ticks.
SCAN_BATCH = 500


# How far back a sensor without a cursor (first start, or reset) looks for failures.
FIRST_SCAN_LOOKBACK = timedelta(hours=24)


_TEMPLATE_ASSETS = frozenset(NAMES)


@dataclass(frozen=True)
class AlertCursor:
    """Where the last scan stopped.

    ``checks`` and ``runs`` are the storage ids of the last check evaluation and the last run
    failure read. ``checks_ts`` is the timestamp of the last check evaluation: the default
    SQLite instance (``dagster dev`` without the repo's dagster.yaml) shards its event log per
    run, where storage ids are not global, so there evaluations are read by time instead.
    """

    checks: int | None = None
    runs: int | None = None
    checks_ts: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"checks": self.checks, "runs": self.runs, "checks_ts": self.checks_ts},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | None) -> AlertCursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)

            def number(name: str, kind: type) -> Any:
                return None if data.get(name) is None else kind(data[name])

            return cls(
                checks=number("checks", int),
                runs=number("runs", int),
                checks_ts=number("checks_ts", float),
            )
        except (ValueError, TypeError, AttributeError):
            # An unreadable cursor (a sensor from an older version): start over; the dedupe
            # keys keep what was already sent from being sent again.
            logger.warning("alerts sensor: unreadable cursor, starting over")
            return cls()


@dataclass
class ScanResult:
    cursor: AlertCursor
    deliveries: list[Delivery] = field(default_factory=list)
    evaluations_read: int = 0
    run_failures_read: int = 0
    resolved: int = 0


def _template_entity(asset_key: dg.AssetKey) -> str | None:
    path = asset_key.path
    return path[0] if len(path) == 1 and path[0] in _TEMPLATE_ASSETS else None


def _step_error(event: dg.DagsterEvent) -> str:
    data = event.step_failure_data
    user = getattr(data, "user_failure_data", None)
    if user is not None and user.description:
        return first_line(user.description)
    error = data.error if data is not None else None
    # The innermost cause is the user's exception; the outer ones are Dagster's wrappers.
    while error is not None and error.cause is not None:
        error = error.cause
    return first_line(error.message if error is not None else "step failed")


def _failed_sites(event: dg.DagsterEvent) -> dict[str, dict[str, str]]:
    """The sites a batch step failed for (its Failure's ``failed_sites`` metadata), if any."""
    user = getattr(event.step_failure_data, "user_failure_data", None)
    value = (user.metadata or {}).get("failed_sites") if user is not None else None
    data = getattr(value, "data", None)
    return data if isinstance(data, dict) else {}


def _run_failure_alerts(instance: dg.DagsterInstance, record: dg.EventLogRecord) -> list[Alert]:
    """The alerts of a failed run: one per site it failed for, or one for the run itself."""
    entry = record.event_log_entry
    run_id = entry.run_id
    run = instance.get_run_by_id(run_id)
    tags = run.tags if run is not None else {}
    failed: dict[str, str] = {}
    sites: dict[str, dict[str, str]] = {}
    explained: set[str] = set()
    for step_record in instance.get_records_for_run(
        run_id,
        of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION},
    ).records:
        event = step_record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            failed[event.step_key] = _step_error(event)
            sites.update(_failed_sites(event))
        else:
            evaluation = event.asset_check_evaluation_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                explained.add(event.step_key)
    if sites:
        # A refusal of the mass-delete guard is already alerted as its failed check.
        return [
            Alert(
                dedupe_key=f"run:{run_id}:site:{site}",
                source="run",
                severity="ERROR",
                site=site,
                run_id=run_id,
                message=f"site {site} could not be synced ({info.get('kind')}): "
                f"{first_line(info.get('reason'))} (run {run_id})",
            )
            for site, info in sites.items()
            if info.get("kind") != "refused"
        ]
    if failed and set(failed) <= explained:
        return []
    if failed:
        shown = "; ".join(f"{step}: {error}" for step, error in list(failed.items())[:3])
        more = f" (and {len(failed) - 3} more step(s))" if len(failed) > 3 else ""
        reason = shown + more
    else:  # the run failed outside any step (it could not start, or its process died)
        reason = first_line(entry.dagster_event.message if entry.dagster_event else None)
    job = entry.job_name or (run.job_name if run is not None else "?")
    site = tags.get(SITE_TAG) or tags.get("dagster/partition")
    where = f" for site {site}" if site else ""
    return [
        Alert(
            dedupe_key=f"run:{run_id}",
            source="run",
            severity="ERROR",
            site=site,
            run_id=run_id,
            message=f"run {run_id} of job {job}{where} failed: {reason or 'no detail recorded'}",
        )
    ]


def _check_alert(
    record: dg.EventLogRecord, evaluation: dg.AssetCheckEvaluation, entity: str
) -> Alert:
    site = evaluation.partition
    where = f" of site {site!r}" if site else ""
    description = evaluation.description or (
        f"check {evaluation.check_name} did not pass on {entity}{where}"
    )
    entry = record.event_log_entry
    run_id = entry.run_id or None
    return Alert(
        # Storage ids alone are not enough: they are per run where the event log is sharded by
        # run, and start over with a new instance database; run id and time make it unique.
        dedupe_key=f"check:{run_id or 'runless'}:{record.storage_id}:{entry.timestamp:.6f}",
        source="check",
        severity=evaluation.severity.value,  # type: ignore[arg-type]
        site=site,
        asset=entity,
        check_name=evaluation.check_name,
        run_id=run_id,
        message=description,
    )


def scan_for_alerts(
    instance: dg.DagsterInstance,
    cursor: AlertCursor,
    *,
    sinks: AlertSinks,
    engine: sa.Engine | None,
    log: AlertLog,
    job_names: Sequence[str],
    now: datetime | None = None,
) -> ScanResult:
    """Read the events after ``cursor``, send the alerts they call for, return the new cursor.

    ``engine`` is the Dashboard database (``None`` when it cannot be reached: alerts are then
    logged and posted only, and open-alert bookkeeping is skipped).
    """
    now = now or datetime.now(timezone.utc)
    since = (now - FIRST_SCAN_LOOKBACK).timestamp()
    result = ScanResult(cursor=cursor)
    records, next_checks = _check_evaluation_records(instance, cursor, since)
    floor = SEVERITY_RANK[sinks.check_severity_floor()]
    for record in records:
        result.evaluations_read += 1
        alert = _alert_for_evaluation(record, floor, engine, log, result)
        if alert is not None:
            result.deliveries.append(sinks.deliver(alert, engine=engine, log=log))
    last_run = _scan_run_failures(instance, cursor, since, job_names, sinks, engine, log, result)
    result.cursor = replace(next_checks, runs=last_run)
    return result


def _alert_for_evaluation(
    record: dg.EventLogRecord,
    floor: int,
    engine: sa.Engine | None,
    log: AlertLog,
    result: ScanResult,
) -> Alert | None:
    """The alert a check evaluation calls for, if any; a passing one resolves open alerts."""
    event = record.event_log_entry.dagster_event
    if event is None:
        return None
    evaluation = event.asset_check_evaluation_data
    entity = _template_entity(evaluation.asset_key)
    if entity is None:
        return None
    site, check = evaluation.partition, evaluation.check_name
    try:
        if evaluation.passed:
            if engine is not None:
                result.resolved += resolve_alerts(engine, "check", site, entity, check)
            return None
        rank = SEVERITY_RANK[evaluation.severity.value]
        if rank < floor:
            return None
        if engine is not None:
            open_severity = open_alert_severity(engine, "check", site, entity, check)
            if open_severity is not None and SEVERITY_RANK[open_severity] >= rank:
                return None  # still failing: alerted already
    except Exception as exc:  # the table is unreachable: alert rather than stay silent
        log.error("alerts: open-alert lookup failed (%s)", type(exc).__name__)
        if evaluation.passed:
            return None
    return _check_alert(record, evaluation, entity)


def _scan_run_failures(
    instance: dg.DagsterInstance,
    cursor: AlertCursor,
    since: float,
    job_names: Sequence[str],
    sinks: AlertSinks,
    engine: sa.Engine | None,
    log: AlertLog,
    result: ScanResult,
) -> int | None:
    """Alert on the failed runs of ``job_names`` after the cursor; the new runs cursor."""
    run_filter = dg.RunStatusChangeRecordsFilter(
        event_type=dg.DagsterEventType.RUN_FAILURE,
        after_storage_id=cursor.runs,
        after_timestamp=since if cursor.runs is None else None,
        # No job_names here: not every storage supports that filter; it is applied below.
    )
    last_run = cursor.runs
    for record in instance.fetch_run_status_changes(
        run_filter, limit=SCAN_BATCH, ascending=True
    ).records:
        last_run = record.storage_id
        if record.event_log_entry.job_name not in job_names:
            continue
        result.run_failures_read += 1
        try:
            alerts = _run_failure_alerts(instance, record)
        except Exception as exc:  # never lose the failure itself to a detail we could not read
            log.error("alerts: could not read the failed run's steps (%s)", type(exc).__name__)
            run_id = record.event_log_entry.run_id
            alerts = [
                Alert(
                    dedupe_key=f"run:{run_id}",
                    source="run",
                    severity="ERROR",
                    run_id=run_id,
                    message=f"run {run_id} failed",
                )
            ]
        for alert in alerts:
            result.deliveries.append(sinks.deliver(alert, engine=engine, log=log))
    return last_run


# Where the event log is sharded by run, evaluations are read again from a little before the
# last one seen: events of a second are not ordered across shards. Dedupe keys absorb the overlap.
_SHARDED_OVERLAP_S = 1.0


def _check_evaluation_records(
    instance: dg.DagsterInstance, cursor: AlertCursor, since: float
) -> tuple[list[dg.EventLogRecord], AlertCursor]:
    """The check evaluations after ``cursor`` in event order, and the cursor after them."""
    # The storage's own query: DagsterInstance.get_event_records is deprecated in Dagster 1.13.
    event_type = dg.DagsterEventType.ASSET_CHECK_EVALUATION
    if not instance.event_log_storage.is_run_sharded:
        records = list(
            instance.event_log_storage.get_event_records(
                dg.EventRecordsFilter(
                    event_type=event_type,
                    after_cursor=cursor.checks,
                    after_timestamp=since if cursor.checks is None else None,
                ),
                limit=SCAN_BATCH,
                ascending=True,
            )
        )
        if not records:
            return records, cursor
        last = records[-1]
        return records, replace(
            cursor, checks=last.storage_id, checks_ts=last.event_log_entry.timestamp
        )
    after = (cursor.checks_ts if cursor.checks_ts is not None else since) - _SHARDED_OVERLAP_S
    records = sorted(
        instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(
                event_type=event_type,
                after_cursor=dg.RunShardedEventsCursor(
                    id=0, run_updated_after=datetime.fromtimestamp(after, tz=timezone.utc)
                ),
                after_timestamp=after,
            ),
            ascending=True,
        ),
        key=lambda record: record.event_log_entry.timestamp,
    )
    if not records:
        return records, cursor
    return records, replace(cursor, checks_ts=records[-1].event_log_entry.timestamp)
