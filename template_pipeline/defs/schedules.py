"""Schedules: the nightly sync of every site, and the hourly health job.

``nightly_template_sync`` (02:00 Europe/Paris) asks for one run of ``template_site_sync`` per
registered site partition: a site that fails fails its own run only, and the run queue
(``dagster.yaml``) runs at most one run per ``template/site`` tag value at a time.

``hourly_template_health`` (every hour at :10, Europe/Paris) launches ``template_health``, a
small op job rather than doing the work inside the schedule: a schedule tick must stay quick
and has no run to show its logs in, while a job run is visible in the UI, retried by the
instance and alerted on like any other run. The job probes each configured site
(``stats`` endpoint, no retries, short timeouts), appends the result to
``template_site_health`` and alerts when a site goes down and when it comes back (the previous
state is the site's latest row there). It also evaluates the ``freshness`` checks of every site
partition: evaluated in a sync run they pass by definition, so this is where stale data shows.
"""

# No ``from __future__ import annotations``: Dagster reads the ops' annotations (context and
# resource types) when the job is defined.
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.alerts import (
    AlertLog,
    AlertSinks,
    Delivery,
    health_alert,
    resolve_alerts,
)
from template_pipeline.defs.assets import TRIGGER_TAG, site_run_tags, template_site_sync_job
from template_pipeline.defs.checks import (
    DashboardDatabase,
    TemplateCheckSettings,
    freshness_evaluations,
)
from template_pipeline.domain.sites import Site, SiteConfigError, sites_partitions
from template_pipeline.source.client import TemplateClientResource
from template_pipeline.store.ops_tables import template_site_health

SCHEDULE_TIMEZONE = "Europe/Paris"
NIGHTLY_CRON = "0 2 * * *"
# Ten past the hour: away from the top of the hour, when the nightly runs start.
HOURLY_HEALTH_CRON = "10 * * * *"
HEALTH_JOB_NAME = "template_health"
# Why a run was requested (nightly, new-site, changes, webhook, cli): filterable in the UI.
# Probes run in parallel; each is bounded by its timeouts, so the job takes seconds.
_PROBE_WORKERS = 8

# (site) -> (probe, latency in seconds or None, detail); ``cli.probe_site`` by default.
Prober = Callable[[Site], tuple[str, float | None, str]]


def _default_prober(site: Site) -> tuple[str, float | None, str]:
    from template_pipeline.apps.cli import probe_site

    return probe_site(site)


# --------------------------------------------------------------------------------------------
# The nightly sync


def nightly_run_requests(sites: Sequence[str], scheduled: datetime) -> list[dg.RunRequest]:
    """One run request per site; the run key makes a re-evaluated tick ask for nothing new."""
    day = scheduled.astimezone(ZoneInfo(SCHEDULE_TIMEZONE)).date().isoformat()
    return [
        dg.RunRequest(
            run_key=f"nightly:{day}:{site}",
            partition_key=site,
            tags={**site_run_tags(site), TRIGGER_TAG: "nightly"},
        )
        for site in sorted(sites)
    ]


@dg.schedule(
    name="nightly_template_sync",
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job=template_site_sync_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 02:00 Europe/Paris: one full sync run per registered site.",
)
def nightly_template_sync(
    context: dg.ScheduleEvaluationContext,
) -> list[dg.RunRequest] | dg.SkipReason:
    sites = context.instance.get_dynamic_partitions(sites_partitions.name)
    if not sites:
        return dg.SkipReason(
            "no site partition is registered yet: template_sites_sensor adds them from the "
            "site registry"
        )
    scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
    return nightly_run_requests(sites, scheduled)


# --------------------------------------------------------------------------------------------
# The health job


@dataclass
class SiteHealth:
    """One probe of one site, as recorded, with the alert it caused if any."""

    site: str
    status: str  # up | down
    probe: str
    latency_ms: float | None
    detail: str
    previous: str | None
    changed: bool
    probe_id: int
    delivery: Delivery | None = None


def _record_probe(
    engine: sa.Engine,
    site: str,
    probe: str,
    latency: float | None,
    detail: str,
    run_id: str | None,
) -> SiteHealth:
    health = template_site_health
    status = "up" if probe == "ok" else "down"
    with engine.begin() as conn:
        # One writer per site at a time, so two overlapping health runs agree on what changed.
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
            {"name": f"template_pipeline:site_health:{site}"},
        )
        previous = conn.execute(
            sa.select(health.c.status)
            .where(health.c.site == site)
            .order_by(health.c.checked_at.desc(), health.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        # A site seen for the first time "changes" only if it is down: that is worth an alert.
        changed = previous != status if previous is not None else status == "down"
        probe_id = conn.execute(
            sa.insert(health)
            .values(
                site=site,
                status=status,
                probe=probe,
                latency_ms=None if latency is None else round(latency * 1000, 1),
                detail=detail or None,
                changed=changed,
                run_id=run_id,
            )
            .returning(health.c.id)
        ).scalar_one()
    return SiteHealth(
        site=site,
        status=status,
        probe=probe,
        latency_ms=None if latency is None else round(latency * 1000, 1),
        detail=detail,
        previous=previous,
        changed=changed,
        probe_id=probe_id,
    )


def check_site_health(
    sites: Sequence[Site],
    *,
    engine: sa.Engine,
    sinks: AlertSinks,
    log: AlertLog,
    run_id: str | None = None,
    prober: Prober = _default_prober,
) -> list[SiteHealth]:
    """Probe ``sites``, record each result, alert on each change of state."""
    if not sites:
        return []

    def probe(site: Site) -> tuple[str, float | None, str]:
        try:
            return prober(site)
        except Exception as exc:  # one site's surprise never hides the others' health
            return "probe failed", None, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=min(_PROBE_WORKERS, len(sites))) as pool:
        probes = list(pool.map(probe, sites))
    results = []
    for site, (probe, latency, detail) in zip(sites, probes, strict=True):
        health = _record_probe(engine, site.key, probe, latency, detail, run_id)
        if health.changed:
            up = health.status == "up"
            if up:
                resolve_alerts(engine, "health", site.key, None, None)
            health.delivery = sinks.deliver(
                health_alert(site.key, health.probe_id, up=up, probe=probe, detail=detail),
                engine=engine,
                log=log,
            )
        results.append(health)
    return results


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Probe every configured site, record template_site_health, alert on changes.",
)
def probe_template_sites(
    context: dg.OpExecutionContext,
    template_client: TemplateClientResource,
    dashboard_database: DashboardDatabase,
    alert_sinks: AlertSinks,
) -> None:
    try:
        registry = template_client.registry()
    except SiteConfigError as exc:
        raise dg.Failure(
            description=f"site registry unusable: {exc}", allow_retries=False
        ) from None
    results = check_site_health(
        list(registry),
        engine=dashboard_database.engine(),
        sinks=alert_sinks,
        log=context.log,
        run_id=context.run_id,
    )
    down = [r.site for r in results if r.status == "down"]
    context.add_output_metadata(
        {
            "sites": len(results),
            "up": len(results) - len(down),
            "down": dg.MetadataValue.json(down),
            "changed": dg.MetadataValue.json([r.site for r in results if r.changed]),
        }
    )
    for result in results:
        took = "-" if result.latency_ms is None else f"{result.latency_ms:.0f} ms"
        context.log.info(f"site {result.site}: {result.probe} ({took})")


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Evaluate the freshness check of every site partition and asset.",
)
def evaluate_template_freshness(
    context: dg.OpExecutionContext,
    dashboard_database: DashboardDatabase,
    template_check_settings: TemplateCheckSettings,
):
    sites = sorted(context.instance.get_dynamic_partitions(sites_partitions.name))
    window = template_check_settings.freshness_window()
    with dashboard_database.engine().connect() as conn:
        evaluations = list(freshness_evaluations(conn, sites, window))
    stale = sorted({e.partition for e in evaluations if not e.passed})
    context.log.info(
        f"freshness of {len(sites)} site(s): {len(stale)} with stale data"
        + (f" ({', '.join(s for s in stale if s)})" if stale else "")
    )
    yield from evaluations


@dg.job(
    name=HEALTH_JOB_NAME,
    description="Probe every site and record its health; evaluate every site's freshness.",
    tags={TRIGGER_TAG: "health"},
)
def template_health_job() -> None:
    probe_template_sites()
    evaluate_template_freshness()


@dg.schedule(
    name="hourly_template_health",
    cron_schedule=HOURLY_HEALTH_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job=template_health_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour: probe each site (alerting when one goes down or comes back) and "
    "evaluate the freshness checks.",
)
def hourly_template_health(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
    return dg.RunRequest(
        run_key=f"health:{scheduled.astimezone(timezone.utc).isoformat()}",
        tags={TRIGGER_TAG: "hourly-health"},
    )


template_schedules = [nightly_template_sync, hourly_template_health]

__all__ = [
    "HEALTH_JOB_NAME",
    "SCHEDULE_TIMEZONE",
    "TRIGGER_TAG",
    "SiteHealth",
    "check_site_health",
    "hourly_template_health",
    "nightly_run_requests",
    "nightly_template_sync",
    "template_health_job",
    "template_schedules",
]
