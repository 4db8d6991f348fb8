"""Every environment variable the project reads, in one place: its default and whether it is secret.

Code reads the environment through :func:`value` (or the ``Variable`` objects below), never with
``os.environ`` lookups of its own, so this table is the whole configuration surface: the README's
configuration table and the tests' environment reset are checked against it.

Two families are named by pattern, because their names depend on the sites: the per-site API key
variables (``api_key_env`` in the sites file) and ``TEMPLATE_WEBHOOK_SECRET_<KEY>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Who reads a variable: the pipeline at run time, the deployment scripts, or the test suite.
Scope = Literal["runtime", "deploy", "tests"]

# The repository root: ``.local/`` beside the package holds embedded servers and demo state.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Variable:
    """One environment variable (or, with a ``*`` in ``name``, a family of them)."""

    name: str
    default: str | None
    secret: bool
    scope: Scope
    meaning: str

    # Tests start without it (the developer's own value would leak into them).
    reset_in_tests: bool = True

    @property
    def is_family(self) -> bool:
        return "*" in self.name or self.name.startswith("<")

    def get(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The variable's value, stripped, or its default when unset or blank."""
        if self.is_family:
            raise TypeError(f"{self.name} names a family of variables, not one variable")
        env = os.environ if environ is None else environ
        raw = env.get(self.name, "").strip()
        return raw or self.default


def _var(
    name: str,
    default: str | None,
    meaning: str,
    *,
    secret: bool = False,
    scope: Scope = "runtime",
    reset_in_tests: bool = True,
) -> Variable:
    return Variable(name, default, secret, scope, meaning, reset_in_tests and scope == "runtime")


SITES_FILE = _var(
    "TEMPLATE_SITES_FILE",
    None,
    "YAML site registry; without it one site comes from TEMPLATE_BASE_URL + TEMPLATE_API_KEY",
)
BASE_URL = _var(
    "TEMPLATE_BASE_URL", None, "base URL of the one Template site of the single-site setup"
)
API_KEY = _var("TEMPLATE_API_KEY", None, "export API key of that site", secret=True)
SITE_KEY = _var("TEMPLATE_SITE_KEY", "default", "partition key of that site")
SITE_API_KEYS = _var(
    "<api_key_env of each site>",
    None,
    "each site's export API key, in the variable its api_key_env names",
    secret=True,
)
DASHBOARD_DATABASE_URL = _var(
    "DASHBOARD_DATABASE_URL", None, "SQLAlchemy URL of the Dashboard's PostgreSQL", secret=True
)
DAGSTER_HOME = _var(
    "DAGSTER_HOME",
    None,
    "folder holding the repo's dagster.yaml (the Dagster instance)",
    scope="deploy",
)
DAGSTER_POSTGRES_URL = _var(
    "DAGSTER_POSTGRES_URL",
    None,
    "PostgreSQL URL of the Dagster instance's storage (read by dagster.yaml)",
    secret=True,
    scope="deploy",
)
ALERT_WEBHOOK_URL = _var(
    "ALERT_WEBHOOK_URL", None, "Slack-compatible incoming webhook for alerts", secret=True
)
ALERT_MIN_SEVERITY = _var(
    "ALERT_MIN_SEVERITY", "WARN", "WARN or ERROR: failed checks below it are not alerted"
)
MAX_REJECT_RATE = _var(
    "TEMPLATE_MAX_REJECT_RATE", "0.05", "reject share above which reject_rate is an ERROR"
)
MIN_REJECTS_FOR_ERROR = _var(
    "TEMPLATE_MIN_REJECTS_FOR_ERROR", "3", "fewer rejected records stay a WARN"
)
FRESHNESS_HOURS = _var(
    "TEMPLATE_FRESHNESS_HOURS", "26", "freshness window of the freshness checks, in hours"
)
SITES_PER_RUN = _var(
    "TEMPLATE_SITES_PER_RUN",
    "50",
    "sites synced by one Dagster run (nightly, sensors, template-pipeline sync)",
)
RUN_MAX_RUNTIME_S = _var(
    "TEMPLATE_RUN_MAX_RUNTIME_S",
    "14400",
    "run monitoring fails a sync run running longer than this (frees its queue slot)",
)
RUN_DEAD_AFTER_S = _var(
    "TEMPLATE_RUN_DEAD_AFTER_S",
    "300",
    "a started sync run whose heartbeat is older than this is failed as dead (frees its queue)",
)
SYNC_WORKERS = _var("TEMPLATE_SYNC_WORKERS", "4", "sites synced side by side within one run")
FULL_EXPORT_MAX_RECORDS = _var(
    "TEMPLATE_FULL_EXPORT_MAX_RECORDS",
    "2000",
    "a site announcing at most this many records is read through its full export (one request)",
)
SITE_LOCK_WAIT_S = _var(
    "TEMPLATE_SITE_LOCK_WAIT_S",
    "600",
    "how long a run waits for a site that another run is writing before failing it",
)
DB_CONNECT_TIMEOUT_S = _var(
    "TEMPLATE_DB_CONNECT_TIMEOUT_S",
    "10",
    "seconds a connection to the Dashboard database may take to open",
)
DB_STATEMENT_TIMEOUT_S = _var(
    "TEMPLATE_DB_STATEMENT_TIMEOUT_S",
    "900",
    "seconds one statement on the Dashboard database may run (a COPY spans an endpoint's pages)",
)
DB_LOCK_TIMEOUT_S = _var(
    "TEMPLATE_DB_LOCK_TIMEOUT_S",
    "60",
    "seconds a statement may wait for a table, row or advisory lock of the Dashboard database",
)
DB_IDLE_TX_TIMEOUT_S = _var(
    "TEMPLATE_DB_IDLE_TX_TIMEOUT_S",
    "120",
    "seconds a Dashboard session may sit idle inside a transaction before the server ends it",
)
REQUEST_DEADLINE_S = _var(
    "TEMPLATE_REQUEST_DEADLINE_S",
    "60",
    "seconds one HTTP attempt to a site may take: connect, headers and the whole body",
)
ENDPOINT_DEADLINE_S = _var(
    "TEMPLATE_ENDPOINT_DEADLINE_S",
    "600",
    "seconds one endpoint of a site may take: all its pages, retries and waits",
)
SITE_DEADLINE_S = _var(
    "TEMPLATE_SITE_DEADLINE_S",
    "1200",
    "seconds everything a client does for one site may take",
)
MAX_RESPONSE_BYTES = _var(
    "TEMPLATE_MAX_RESPONSE_BYTES",
    str(64 * 1024 * 1024),
    "largest response body accepted, counted after decompression",
)
MAX_RECORD_BYTES = _var(
    "TEMPLATE_MAX_RECORD_BYTES",
    str(1024 * 1024),
    "largest record accepted (serialised); a larger one is quarantined alone",
)
HEALTH_RETRY_PAUSE_S = _var(
    "TEMPLATE_HEALTH_RETRY_PAUSE_S",
    "2",
    "seconds a health probe waits before trying a transient failure again",
)
HEALTH_FAILURES_BEFORE_ALERT = _var(
    "TEMPLATE_HEALTH_FAILURES_BEFORE_ALERT",
    "2",
    "consecutive failed health probes before a site-down alert",
)
PERSONAL_DATA_ERASE_DAYS = _var(
    "TEMPLATE_PERSONAL_DATA_ERASE_DAYS",
    "30",
    "days after its deletion upstream before a record's personal fields are erased",
)
RETENTION_REJECTS_DAYS = _var(
    "TEMPLATE_RETENTION_REJECTS_DAYS",
    "30",
    "days a resolved reject is kept after it was resolved (open rejects are always kept)",
)
RETENTION_HEALTH_DAYS = _var(
    "TEMPLATE_RETENTION_HEALTH_DAYS",
    "14",
    "days health probes are kept (each site's latest probe is always kept)",
)
RETENTION_WEBHOOK_EVENTS_DAYS = _var(
    "TEMPLATE_RETENTION_WEBHOOK_EVENTS_DAYS",
    "7",
    "days a consumed webhook event is kept after it was consumed (pending ones are kept)",
)
RETENTION_ALERTS_DAYS = _var(
    "TEMPLATE_RETENTION_ALERTS_DAYS",
    "90",
    "days an alert is kept (open check and health alerts are always kept)",
)
RETENTION_DAGSTER_RUNS_DAYS = _var(
    "TEMPLATE_RETENTION_DAGSTER_RUNS_DAYS",
    "30",
    "days a finished Dagster run and its event log are kept after its last update",
)
WEBHOOK_SECRETS = _var(
    "TEMPLATE_WEBHOOK_SECRET_*",
    None,
    "per-site HMAC secret of the webhook intake (key upper-cased, '-' as '_')",
    secret=True,
)
LOCAL_DIR = _var(
    "TEMPLATE_PIPELINE_LOCAL_DIR",
    None,
    "where the embedded PostgreSQL and the demo state live (default .local/)",
    reset_in_tests=False,
)
TEST_DATABASE_URL = _var(
    "TEMPLATE_PIPELINE_TEST_DATABASE_URL",
    None,
    "a PostgreSQL server for the tests (unset: the embedded server)",
    scope="tests",
)
BENCH_DATABASE_URL = _var(
    "TEMPLATE_PIPELINE_BENCH_DATABASE_URL",
    None,
    "a PostgreSQL server for the benchmarks (else DASHBOARD_DATABASE_URL's server, else the "
    "embedded one)",
    scope="tests",
)
REQUESTS_CA_BUNDLE = _var(
    "REQUESTS_CA_BUNDLE",
    None,
    "CA bundle for HTTPS to the sites (CURL_CA_BUNDLE is read too)",
    reset_in_tests=False,
)
CURL_CA_BUNDLE = _var(
    "CURL_CA_BUNDLE", None, "CA bundle, when REQUESTS_CA_BUNDLE is unset", reset_in_tests=False
)

VARIABLES: tuple[Variable, ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, Variable)
)


def value(variable: Variable, environ: Mapping[str, str] | None = None) -> str | None:
    """``variable``'s value (stripped) or its default."""
    return variable.get(environ)


def number(variable: Variable, environ: Mapping[str, str] | None = None) -> float:
    """``variable`` as a number; a clear error naming it when it is not one."""
    raw = variable.get(environ)
    try:
        return float(raw) if raw is not None else float("nan")
    except ValueError:
        raise ValueError(f"{variable.name} must be a number, got {raw!r}") from None


def local_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the embedded PostgreSQL and the demo state live."""
    raw = LOCAL_DIR.get(environ)
    return Path(raw) if raw else PROJECT_ROOT / ".local"


def webhook_secret_env(site_key: str) -> str:
    """``atelier-marie`` -> ``TEMPLATE_WEBHOOK_SECRET_ATELIER_MARIE``."""
    return WEBHOOK_SECRETS.name.replace("*", site_key.upper().replace("-", "_"))


def reset_in_tests() -> tuple[str, ...]:
    """The variables a test must not inherit from the developer's shell (runtime ones)."""
    return tuple(v.name for v in VARIABLES if v.reset_in_tests and not v.is_family)
