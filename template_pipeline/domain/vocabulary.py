"""The closed vocabularies of the project, each defined once.

The ``Literal`` types are what the code is typed with; the tuples derived from them are what the
tables' CHECK constraints, the CLI and the alerts use, so a new status is added in one place.
"""

from __future__ import annotations

from typing import Literal, get_args

# The literal the Template API sends in place of a secret setting: never stored as a value.
MASKED = "***MASKED***"

# A painting's status when the site sends none (the Dashboard's specification).
DEFAULT_PAINTING_STATUS = "Disponible"

# template_sync_runs.status: what one (site, entity) sync attempt became. A 'failed' or
# 'refused' sync wrote nothing.
SyncStatus = Literal["success", "failed", "refused"]
SYNC_STATUSES: tuple[str, ...] = get_args(SyncStatus)

# template_alerts
AlertSource = Literal["check", "run", "health"]
ALERT_SOURCES: tuple[str, ...] = get_args(AlertSource)
Severity = Literal["INFO", "WARN", "ERROR"]
ALERT_SEVERITIES: tuple[str, ...] = get_args(Severity)  # in increasing order of gravity
WebhookStatus = Literal["sent", "failed", "disabled"]

# Why a site or an entity could not be synced, in the words the CLI, the alerts and the fleet
# view use: the key was refused, the site could not be reached, the endpoint does not exist, the
# site answered nonsense, the data broke a rule as a whole, the mass-delete guard refused it,
# the database failed, the configuration is wrong, another run holds the site, time ran out.
FailureKind = Literal[
    "auth",
    "unreachable",
    "not found",
    "bad response",
    "bad data",
    "refused",
    "database",
    "config",
    "busy",
    "deadline",
    "internal",
]
FAILURE_KINDS: tuple[str, ...] = get_args(FailureKind)

# template_site_health
HealthStatus = Literal["up", "down"]
HEALTH_STATUSES: tuple[str, ...] = get_args(HealthStatus)
# What a probe of a site's export API found ("probe failed": the probe itself crashed).
ProbeOutcome = Literal[
    "ok", "auth refused", "unreachable", "not found", "bad response", "probe failed"
]


def sql_in(column: str, values: tuple[str, ...]) -> str:
    """``column IN ('a', 'b')`` for a CHECK constraint over a vocabulary (values are constants)."""
    for item in values:
        if "'" in item:
            raise ValueError(f"vocabulary value {item!r} cannot be quoted in a constraint")
    return f"{column} IN ({', '.join(repr(item) for item in values)})"
