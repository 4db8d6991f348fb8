"""``template_changes_sensor`` (every 5 min): sync only what the sites' own stats say changed.

Reads each registered site's ``stats`` (one request, short timeouts) and requests a run of only
the entities whose numbers changed since the last look (derived entities with their source,
``stats`` with anything). A change it cannot attribute to an entity (only ``last_updated``
moved: a record was edited) syncs the whole site, which is cheap when little changed; other
fields (a server time) are ignored. The cursor holds the last numbers of each site; the first
look at a site only records them (its first sync was requested by the sites sensor).
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from decimal import Decimal
from typing import Any

import dagster as dg

from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import TemplateClientResource
from template_pipeline.defs.run_requests import ordered_sites, sync_request, windows
from template_pipeline.domain.entities import ENTITIES, NAMES, sync_closure
from template_pipeline.domain.sites import Site, SiteConfigError
from template_pipeline.domain.validation import validate_stats
from template_pipeline.source.client import SENSOR_SETTINGS, client_for

CHANGES_INTERVAL_S = 300


_STATS_WORKERS = 8


# All sites' stats within this, so a tick ends well before Dagster's 60 s sensor timeout.
_STATS_BUDGET_S = 40.0


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
    for entity in (e.name for e in ENTITIES if e.counted_by_stats):
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
        wanted = set(NAMES)
    # Other fields (a server time, say) may change on every request: they mean nothing.
    return sync_closure(wanted)


def _read_numbers(site: Site) -> dict[str, Any]:
    with client_for(site, SENSOR_SETTINGS) as client:
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


# Unchanged sites a window of changed ones may take along: syncing them costs little more than
# their fetch (unchanged records are neither validated nor written), less than a run of its own.
CHANGES_MAX_GAP = 5


def _change_requests(
    ordered: list[str], changed: dict[str, list[str]], state: dict[str, Any]
) -> list[dg.RunRequest]:
    """One run per window of changed sites, for the entities any of them changed."""
    requests = []
    for window in windows(ordered, changed, max_gap=CHANGES_MAX_GAP):
        wanted = {entity for site in window for entity in changed.get(site, ())}
        entities = [entity for entity in NAMES if entity in wanted]
        stamp = _fingerprint(
            {site: state.get(site, {}).get("fingerprint") for site in window if site in changed}
        )
        requests.append(
            sync_request(
                window,
                run_key=f"changes:{window[0]}..{window[-1]}:{stamp}",
                trigger="changes",
                entities=entities,
            )
        )
    return requests


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
    changed: dict[str, list[str]] = {}
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
            changed[key] = entities
            context.log.info(f"site {key}: stats changed, syncing {', '.join(entities)}")
        state[key] = {"numbers": reading, "requests": count, "fingerprint": _fingerprint(reading)}
    run_requests = _change_requests(ordered_sites(context.instance), changed, state)
    cursor = json.dumps({"sites": state}, sort_keys=True, default=str)
    if run_requests:
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)
    note = f"; unreachable: {', '.join(unreachable)}" if unreachable else ""
    first = [key for key in readings if key not in previous and key not in unreachable]
    seen = f"; first look at {', '.join(first)}" if first else ""
    return dg.SensorResult(
        skip_reason=f"no change in the stats of {len(sites)} site(s){seen}{note}", cursor=cursor
    )
