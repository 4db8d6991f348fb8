"""Sensors: the pipeline follows its registry, its sites' changes and its webhooks by itself.

``template_sites_sensor`` (every 30 s)
    Reconciles the ``template_sites`` dynamic partitions with the site registry through
    ``SensorResult(dynamic_partitions_requests=...)``: a new site gets its partition and a first
    full sync run, a site no longer configured loses its partition (its rows in the Dashboard
    are kept). Nothing changed: ``SkipReason``. An unusable registry (a typo in the sites file,
    a missing key variable): ``SkipReason`` naming the problem, partitions left as they are.
``template_changes_sensor`` (every 5 min)
    Reads each registered site's ``stats`` (one request, short timeouts) and requests a run of
    only the entities whose numbers changed since the last look (``order_items`` with
    ``orders``, ``stats`` with anything). A change it cannot attribute to an entity (only
    ``last_updated`` moved: a record was edited) syncs the whole site, which is cheap when
    little changed; other fields (a server time) are ignored. The cursor holds the last
    numbers of each site; the first look at a site only records them (its first sync was
    requested by the sites sensor).
``template_webhook_sensor`` (every 30 s)
    Turns pending ``template_webhook_events`` into one run per site for the entities the
    events name, and marks them consumed (with the run key).
``template_alerts_sensor`` (every 30 s)
    Sends alerts for failed checks of the template assets and failed pipeline runs, once each
    (see ``alerts.py``).

Run requests carry the ``template/site`` tag (one run per site at a time in the queue) and a
``template/trigger`` tag saying which sensor asked.
"""

# No ``from __future__ import annotations``: Dagster reads the sensors' annotations (context and
# resource types) when they are defined.
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa

from template_pipeline.apps.webhooks import entities_for_events
from template_pipeline.defs.alerts import AlertCursor, AlertSinks, alerts_summary, scan_for_alerts
from template_pipeline.defs.assets import ALL_ENTITIES, site_run_tags, template_site_sync_job
from template_pipeline.defs.checks import COUNTED_ENTITIES, DashboardDatabase
from template_pipeline.defs.schedules import HEALTH_JOB_NAME, TRIGGER_TAG
from template_pipeline.domain.models import validate_stats
from template_pipeline.domain.sites import Site, SiteConfigError, sites_partitions
from template_pipeline.source.client import TemplateClient, TemplateClientResource
from template_pipeline.store.ops_tables import template_webhook_events

logger = logging.getLogger(__name__)

CHANGES_INTERVAL_S = 300
# Stats reads of the changes sensor: a sensor tick must finish well within its 60 s budget.
_STATS_CONNECT_TIMEOUT = 3.0
_STATS_READ_TIMEOUT = 10.0
_STATS_WORKERS = 8
# All sites' stats within this, so a tick ends well before Dagster's 60 s sensor timeout.
_STATS_BUDGET_S = 40.0
WEBHOOK_BATCH = 500
ALERT_JOB_NAMES = (template_site_sync_job.name, HEALTH_JOB_NAME)


def _sync_request(
    site: str, entities: Sequence[str] | None, run_key: str, trigger: str
) -> dg.RunRequest:
    """A run of ``template_site_sync`` for one site (``entities=None``: all of its assets)."""
    return dg.RunRequest(
        run_key=run_key,
        partition_key=site,
        asset_selection=None if entities is None else [dg.AssetKey(e) for e in entities],
        tags={**site_run_tags(site), TRIGGER_TAG: trigger},
    )


# --------------------------------------------------------------------------------------------
# Registry -> partitions


@dataclass(frozen=True)
class SitesCursor:
    """The registry's keys at the last change, and how many changes were applied (run keys)."""

    sites: tuple[str, ...] = ()
    generation: int = 0

    def to_json(self) -> str:
        return json.dumps({"sites": list(self.sites), "generation": self.generation})

    @classmethod
    def from_json(cls, raw: str | None) -> "SitesCursor":
        try:
            data = json.loads(raw) if raw else {}
            return cls(tuple(data.get("sites", ())), int(data.get("generation", 0)))
        except (ValueError, TypeError, AttributeError):
            return cls()


@dg.sensor(
    name="template_sites_sensor",
    job=template_site_sync_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a partition and a first full sync for each new site of the registry; "
    "removes the partitions of sites no longer configured (their data is kept).",
)
def template_sites_sensor(
    context: dg.SensorEvaluationContext, template_client: TemplateClientResource
):
    try:
        wanted = template_client.registry().keys()
    except SiteConfigError as exc:
        return dg.SkipReason(f"site registry unusable, partitions left unchanged: {exc}")
    existing = set(context.instance.get_dynamic_partitions(sites_partitions.name))
    added = [key for key in wanted if key not in existing]
    removed = sorted(existing - set(wanted))
    cursor = SitesCursor.from_json(context.cursor)
    if not added and not removed:
        return dg.SensorResult(
            skip_reason=f"{len(wanted)} site(s) in the registry, partitions up to date",
            cursor=SitesCursor(tuple(sorted(wanted)), cursor.generation).to_json(),
        )
    generation = cursor.generation + 1
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(sites_partitions.build_add_request(added))
    if removed:
        # Only the partition goes: the Dashboard rows of the site stay where they are.
        requests.append(sites_partitions.build_delete_request(removed))
    context.log.info(
        f"sites added: {', '.join(added) or 'none'}; removed: {', '.join(removed) or 'none'}"
    )
    return dg.SensorResult(
        # The generation in the key: a site removed and added back gets a first sync again.
        run_requests=[
            _sync_request(site, None, f"first-sync:{site}:{generation}", "new-site")
            for site in added
        ],
        dynamic_partitions_requests=requests,
        cursor=SitesCursor(tuple(sorted(wanted)), generation).to_json(),
    )


# --------------------------------------------------------------------------------------------
# Stats -> changed entities


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def stats_numbers(stats: Mapping[str, Any]) -> dict[str, Any]:
    """What the sensor compares: the normalised counters of a ``stats`` document, plus its
    other scalar fields (``available_paintings``, ``last_updated``, ...)."""
    row = validate_stats(stats)
    payload = row.pop("payload", None) or {}
    numbers = {key: _jsonable(value) for key, value in row.items()}
    for key, value in payload.items():
        if key not in numbers and (value is None or isinstance(value, (str, int, float, bool))):
            numbers[str(key)] = value
    return numbers


# Stats fields that say "something changed" without saying what (the simulator and Template
# send last_updated).
CHANGE_MARKERS = frozenset(
    {"last_updated", "updated_at", "last_update", "last_modified", "modified_at"}
)


def _field_entity(field: str) -> str | None:
    """The entity a stats field counts (``total_paintings``, ``sold_paintings``), if any."""
    if field == "revenue" or field.startswith("revenue_") or field.endswith("_revenue"):
        return "orders"
    for entity in COUNTED_ENTITIES:
        if field == entity or field.endswith("_" + entity) or field.startswith(entity + "_"):
            return entity
    return None


def entities_to_sync(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The assets to sync after the stats moved from ``previous`` to ``current``, in lineage
    order; empty when nothing changed."""
    changed = {k for k in set(previous) | set(current) if previous.get(k) != current.get(k)}
    wanted = {entity for entity in map(_field_entity, changed) if entity is not None}
    if not wanted and changed & CHANGE_MARKERS:
        # Only the site's change marker moved: some record was edited, which one is unknown.
        # A sync of an unchanged entity writes nothing, so sync them all.
        wanted = set(ALL_ENTITIES)
    if not wanted:
        # Other fields (a server time, say) may change on every request: they mean nothing.
        return []
    if "orders" in wanted:
        wanted.add("order_items")
    wanted.add("stats")
    return [entity for entity in ALL_ENTITIES if entity in wanted]


def _read_numbers(site: Site) -> dict[str, Any]:
    with TemplateClient(
        site=site.key,
        base_url=site.base_url,
        api_key=site.api_key,
        api_key_env=site.api_key_env,
        max_retries=0,
        connect_timeout=_STATS_CONNECT_TIMEOUT,
        read_timeout=_STATS_READ_TIMEOUT,
    ) as client:
        return stats_numbers(client.fetch_stats())


def read_site_numbers(
    sites: Sequence[Site], budget_s: float = _STATS_BUDGET_S
) -> dict[str, dict[str, Any] | Exception]:
    """Each site's numbers, or why they could not be read, within ``budget_s`` in all.

    Sites are read in parallel; one that is down (or slow) never stops the others, and sites
    not read within the budget count as unreachable this time (their requests finish in the
    background, bounded by the client's timeouts).
    """

    def read(site: Site) -> dict[str, Any] | Exception:
        try:
            return _read_numbers(site)
        except Exception as exc:
            return exc

    pool = ThreadPoolExecutor(max_workers=min(_STATS_WORKERS, len(sites)))
    try:
        futures = {site.key: pool.submit(read, site) for site in sites}
        wait(futures.values(), timeout=budget_s)
        return {
            key: future.result()
            if future.done()
            else TimeoutError(f"no answer within the sensor's {budget_s:g} s budget")
            for key, future in futures.items()
        }
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _fingerprint(numbers: Mapping[str, Any]) -> str:
    encoded = json.dumps(numbers, sort_keys=True, default=str).encode()
    return hashlib.blake2b(encoded, digest_size=6).hexdigest()


@dg.sensor(
    name="template_changes_sensor",
    job=template_site_sync_job,
    minimum_interval_seconds=CHANGES_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 minutes: reads each site's stats and syncs only the entities whose "
    "numbers changed since the last look.",
)
def template_changes_sensor(
    context: dg.SensorEvaluationContext, template_client: TemplateClientResource
):
    try:
        registry = template_client.registry()
    except SiteConfigError as exc:
        return dg.SkipReason(f"site registry unusable: {exc}")
    registered = set(context.instance.get_dynamic_partitions(sites_partitions.name))
    sites = [site for site in registry if site.key in registered]
    if not sites:
        return dg.SkipReason("no registered site to look at")
    try:
        previous: dict[str, Any] = json.loads(context.cursor or "{}").get("sites", {})
    except (ValueError, AttributeError):
        previous = {}

    readings = read_site_numbers(sites)

    state: dict[str, Any] = {}
    run_requests: list[dg.RunRequest] = []
    unreachable: list[str] = []
    for key, reading in readings.items():
        before = previous.get(key) if isinstance(previous.get(key), dict) else None
        if isinstance(reading, Exception):
            unreachable.append(key)
            context.log.warning(f"site {key}: stats unreadable, kept its last numbers: {reading}")
            if before is not None:
                state[key] = before
            continue
        count = int(before.get("requests", 0)) if before else 0
        entities = entities_to_sync(before.get("numbers", {}), reading) if before else []
        if entities:
            count += 1
            run_requests.append(
                _sync_request(
                    key, entities, f"changes:{key}:{count}:{_fingerprint(reading)}", "changes"
                )
            )
            context.log.info(f"site {key}: stats changed, syncing {', '.join(entities)}")
        state[key] = {"numbers": reading, "requests": count}
    cursor = json.dumps({"sites": state}, sort_keys=True, default=str)
    if run_requests:
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)
    note = f"; unreachable: {', '.join(unreachable)}" if unreachable else ""
    first = [key for key in readings if key not in previous and key not in unreachable]
    seen = f"; first look at {', '.join(first)}" if first else ""
    return dg.SensorResult(
        skip_reason=f"no change in the stats of {len(sites)} site(s){seen}{note}", cursor=cursor
    )


# --------------------------------------------------------------------------------------------
# Webhook events -> runs


@dataclass(frozen=True)
class WebhookBatch:
    """The pending events of one site, claimed by one sensor tick."""

    site: str
    event_ids: tuple[int, ...]
    events: tuple[str, ...]
    entities: tuple[str, ...]
    run_key: str | None  # None: consumed without a run (see ``claim_webhook_events``)


def claim_webhook_events(
    engine: sa.Engine, registered: Iterable[str], limit: int = WEBHOOK_BATCH
) -> list[WebhookBatch]:
    """Mark up to ``limit`` pending events consumed and return them grouped by site.

    Events of a site that is not a partition (yet) are consumed without a run: the site's first
    full sync, requested by the sites sensor, covers them. If the tick fails after this commit,
    the runs it asked for are lost; the changes sensor and the nightly sync catch up.
    """
    events = template_webhook_events
    registered = set(registered)
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(events.c.id, events.c.site, events.c.event)
            .where(events.c.consumed_at.is_(None))
            .order_by(events.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        by_site: dict[str, list[sa.Row]] = {}
        for row in rows:
            by_site.setdefault(row.site, []).append(row)
        batches = []
        for site, site_rows in by_site.items():
            ids = tuple(row.id for row in site_rows)
            names = tuple(row.event for row in site_rows)
            entities = tuple(entities_for_events(names))
            run_key = (
                f"webhook:{site}:{ids[0]}-{ids[-1]}" if entities and site in registered else None
            )
            conn.execute(
                sa.update(events)
                .where(events.c.id.in_(ids))
                .values(consumed_at=sa.func.now(), run_key=run_key)
            )
            batches.append(WebhookBatch(site, ids, names, entities, run_key))
    return batches


@dg.sensor(
    name="template_webhook_sensor",
    job=template_site_sync_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns pending template_webhook_events into sync runs of the site and "
    "entities they name, and marks them consumed.",
)
def template_webhook_sensor(
    context: dg.SensorEvaluationContext, dashboard_database: DashboardDatabase
):
    registered = context.instance.get_dynamic_partitions(sites_partitions.name)
    batches = claim_webhook_events(dashboard_database.engine(), registered)
    if not batches:
        return dg.SkipReason("no pending webhook event")
    run_requests = []
    for batch in batches:
        if batch.run_key is None:
            why = "no partition yet" if batch.entities else "no entity to sync"
            context.log.info(
                f"site {batch.site}: {len(batch.event_ids)} webhook event(s) consumed without a "
                f"run ({why})"
            )
            continue
        run_requests.append(_sync_request(batch.site, batch.entities, batch.run_key, "webhook"))
    cursor = str(max(batch.event_ids[-1] for batch in batches))
    if not run_requests:
        return dg.SensorResult(
            skip_reason="the pending webhook events needed no run", cursor=cursor
        )
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)


# --------------------------------------------------------------------------------------------
# Alerts


@dg.sensor(
    name="template_alerts_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends each new failed check of the template assets and each failed pipeline "
    "run, once, to the Dagster log, template_alerts and ALERT_WEBHOOK_URL.",
)
def template_alerts_sensor(
    context: dg.SensorEvaluationContext,
    dashboard_database: DashboardDatabase,
    alert_sinks: AlertSinks,
):
    try:
        engine = dashboard_database.engine()
    except Exception as exc:  # the table sink is down: the log and the webhook still work
        context.log.error(f"alerts: the Dashboard database is unreachable ({type(exc).__name__})")
        engine = None
    result = scan_for_alerts(
        context.instance,
        AlertCursor.from_json(context.cursor),
        sinks=alert_sinks,
        engine=engine,
        log=context.log,
        job_names=ALERT_JOB_NAMES,
    )
    counts = alerts_summary(result.deliveries)
    summary = (
        f"{counts['sent']} alert(s) sent from {result.evaluations_read} check evaluation(s) "
        f"and {result.run_failures_read} run failure(s)"
    )
    if counts["webhook_failed"] or counts["sink_errors"]:
        summary += f"; sink errors: {counts['sink_errors']}"
    return dg.SensorResult(skip_reason=summary, cursor=result.cursor.to_json())


template_sensors = [
    template_sites_sensor,
    template_changes_sensor,
    template_webhook_sensor,
    template_alerts_sensor,
]

__all__ = [
    "WebhookBatch",
    "claim_webhook_events",
    "entities_to_sync",
    "read_site_numbers",
    "stats_numbers",
    "template_alerts_sensor",
    "template_changes_sensor",
    "template_sensors",
    "template_sites_sensor",
    "template_webhook_sensor",
]
