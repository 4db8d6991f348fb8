"""The hourly health job: probe every site, record its health, alert on changes; freshness.

``template_health`` is a small op job rather than work inside the schedule: a schedule tick must
stay quick and has no run to show its logs in, while a job run is visible in the UI, retried by
the instance and alerted on like any other run. The job probes each configured site (``stats``
endpoint, short timeouts, one transient failure tried again after a pause: ``probe_site``),
appends the result to ``template_site_health`` and alerts without crying wolf: a site is
reported down only once ``failures_before_alert`` consecutive probes failed (counted from its
rows there, since its latest ``up`` row), saying since when; and back up only if that down
alert was sent. It also evaluates the ``freshness`` checks of every site partition: evaluated in
a sync run they pass by definition, so this is where stale data shows. Last, it refreshes the
``fleet_status`` asset (:mod:`template_pipeline.defs.fleet`).
"""

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.alerts.sinks import (
    AlertLog,
    Delivery,
    health_alert,
    open_alert_severity,
    resolve_alerts,
)
from template_pipeline.defs.checks.freshness import freshness_evaluations
from template_pipeline.defs.fleet import refresh_fleet_status
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import (
    AlertSinks,
    DashboardDatabase,
    TemplateCheckSettings,
    TemplateClientResource,
)
from template_pipeline.defs.tags import TRIGGER_TAG
from template_pipeline.domain.sites import Site, SiteConfigError
from template_pipeline.source.probe import probe_site
from template_pipeline.store.locks import xact_lock_sa
from template_pipeline.store.ops_tables import template_site_health

HEALTH_JOB_NAME = "template_health"


# Why a run was requested (nightly, new-site, changes, webhook, cli): filterable in the UI.
# Probes run in parallel; each is bounded by its timeouts, so the job takes seconds.
_PROBE_WORKERS = 8


# (site) -> (probe, latency in seconds or None, detail); ``probe_site`` by default.
Prober = Callable[[Site], tuple[str, float | None, str]]


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
    # Consecutive failed probes up to this one (0 when up), and when that streak began; for an
    # up probe, the streak it ended.
    failures: int = 0
    down_since: datetime | None = None


def _streak(conn: sa.Connection, site: str, before: int) -> tuple[int, datetime | None]:
    """Failed probes of ``site`` with an id below ``before``, since its last ``up`` one."""
    health = template_site_health
    last_up = (
        sa.select(sa.func.max(health.c.id))
        .where(health.c.site == site, health.c.status == "up", health.c.id < before)
        .scalar_subquery()
    )
    count, since = conn.execute(
        sa.select(sa.func.count(), sa.func.min(health.c.checked_at)).where(
            health.c.site == site,
            health.c.status == "down",
            health.c.id < before,
            health.c.id > sa.func.coalesce(last_up, 0),
        )
    ).one()
    return int(count), since


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
    latency_ms = None if latency is None else round(latency * 1000, 1)
    with engine.begin() as conn:
        # One writer per site at a time, so two overlapping health runs agree on what changed.
        xact_lock_sa(conn, "site_health", site)
        previous = conn.execute(
            sa.select(health.c.status)
            .where(health.c.site == site)
            .order_by(health.c.checked_at.desc(), health.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        # A site seen for the first time "changes" only if it is down.
        changed = previous != status if previous is not None else status == "down"
        probe_id = conn.execute(
            sa.insert(health)
            .values(
                site=site,
                status=status,
                probe=probe,
                latency_ms=latency_ms,
                detail=detail or None,
                changed=changed,
                run_id=run_id,
            )
            .returning(health.c.id)
        ).scalar_one()
        # Down: the streak this probe belongs to; up: the one it ended.
        failures, since = _streak(conn, site, probe_id + 1 if status == "down" else probe_id)
    return SiteHealth(
        site=site,
        status=status,
        probe=probe,
        latency_ms=latency_ms,
        detail=detail,
        previous=previous,
        changed=changed,
        probe_id=probe_id,
        failures=failures,
        down_since=since,
    )


def _alert(
    health: SiteHealth, *, engine: sa.Engine, sinks: AlertSinks, log: AlertLog, threshold: int
) -> Delivery | None:
    """Down once the streak reaches ``threshold`` probes; back up only after a down alert."""
    alerted = open_alert_severity(engine, "health", health.site, None, None) is not None
    up = health.status == "up"
    if up and alerted:
        resolve_alerts(engine, "health", health.site, None, None)
    elif up or alerted or health.failures < threshold:
        return None
    alert = health_alert(
        health.site,
        health.probe_id,
        up=up,
        probe=health.probe,
        detail=health.detail,
        since=health.down_since,
        failures=health.failures,
    )
    return sinks.deliver(alert, engine=engine, log=log)


def check_site_health(
    sites: Sequence[Site],
    *,
    engine: sa.Engine,
    sinks: AlertSinks,
    log: AlertLog,
    run_id: str | None = None,
    prober: Prober = probe_site,
    failures_before_alert: int | None = None,
) -> list[SiteHealth]:
    """Probe ``sites``, record each result, alert as :func:`_alert` decides.

    ``failures_before_alert`` defaults to the sinks' setting
    (``TEMPLATE_HEALTH_FAILURES_BEFORE_ALERT``, 2).
    """
    if not sites:
        return []
    threshold = failures_before_alert or sinks.failures_before_alert()

    def probe(site: Site) -> tuple[str, float | None, str]:
        try:
            return prober(site)
        except Exception as exc:  # one site's surprise never hides the others' health
            return "probe failed", None, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=min(_PROBE_WORKERS, len(sites))) as pool:
        probes = list(pool.map(probe, sites))
    results = []
    for site, (probe_name, latency, detail) in zip(sites, probes, strict=True):
        health = _record_probe(engine, site.key, probe_name, latency, detail, run_id)
        health.delivery = _alert(health, engine=engine, sinks=sinks, log=log, threshold=threshold)
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
    pause = template_client.probe_retry_pause()
    results = check_site_health(
        list(registry),
        engine=dashboard_database.engine(),
        sinks=alert_sinks,
        log=context.log,
        run_id=context.run_id,
        prober=lambda site: probe_site(site, pause=pause),
    )
    down = [r.site for r in results if r.status == "down"]
    context.add_output_metadata(
        {
            "sites": len(results),
            "up": len(results) - len(down),
            "down": dg.MetadataValue.json(down),
            "changed": dg.MetadataValue.json([r.site for r in results if r.changed]),
            "alerted": dg.MetadataValue.json([r.site for r in results if r.delivery]),
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
    description="Probe every site and record its health; evaluate every site's freshness; "
    "refresh fleet_status.",
    tags={TRIGGER_TAG: "health"},
)
def template_health_job() -> None:
    probe_template_sites()
    evaluate_template_freshness()
    refresh_fleet_status()
