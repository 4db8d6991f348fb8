"""What a simulated Template site is: its size, its envelope, its faults.

The simulator deliberately imports nothing of the project but its domain layer (no Dagster, no
client): it also runs standalone (``template-pipeline simulate``, benchmarks) where a one-second
Dagster import would be pure overhead. Its endpoints are its own table, not the entity
registry's: it stands for the sites, which the pipeline does not define.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A simulated site's key is a partition key; MASKED is how Template exports secret settings.
from template_pipeline.domain.sites import SLUG_RE
from template_pipeline.domain.vocabulary import MASKED

ENVELOPES = ("success", "named")
# The Faults fields that are counts (non-negative integers, 0 = off).
_COUNTS = (
    "rate_limit_every",
    "html_every",
    "truncate_every",
    "slow_ms",
    "revoke_after",
    "fail_after",
    "rotate_ignoring_offset",
    "poison_bytes",
    "deep_levels",
    "trickle_bytes",
    "trickle_interval_ms",
    "stall_after_bytes",
    "stall_ms",
    "reset_after_bytes",
    "gzip_bomb_bytes",
    "slow_fault_ms",
)
# What ``Faults.fault_rates`` may inject at random: a 5xx, a 429 with ``Retry-After``, an answer
# held ``slow_fault_ms`` before it starts (past a short read timeout), a connection cut mid-body
# (short of its Content-Length), a 200 whose JSON is cut in the middle.
RANDOM_FAULT_KINDS = ("5xx", "429", "slow", "reset", "truncated")
# Sizes of a poison, not switches of their own.
_SIZES = ("poison_bytes", "deep_levels", "slow_fault_ms")
# What ``Faults.poison`` may make of a record (see hostile.py for each).
POISON_KINDS = (
    "huge-id",
    "id-1e400",
    "huge-int",
    "price-nan",
    "price-infinity",
    "price-1e400",
    "surrogate",
    "long-id",
    "text-id",
    "price-text-1e9999",
    "price-negative",
    "price-absurd",
    "nul",
    "field-name",
    "deep",
    "duplicate",
)


def _scriptable(status: int) -> bool:
    # 200 means "serve normally"; other 1xx-3xx answers would need headers or no body at all.
    return status == 200 or 400 <= status <= 599


@dataclass
class Faults:
    """Deterministic misbehaviour of one site (default: none).

    Only well-formed, authenticated requests count (401/400/404 answers never do), one counter
    per site starting at 1. For request number ``n`` the first matching rule wins:

    1. ``script``: the first ``len(script)`` requests are answered with these statuses, in
       order (200 = serve normally, 429 comes with ``Retry-After``);
    2. ``rate_limit_every``: every Nth request is answered 429 with ``Retry-After``;
    3. ``error_rate``: that share of requests, drawn from a RNG seeded by the site, is answered
       500, 502 or 503;
    4. ``html_every``: every Nth request is answered 200 with an HTML proxy error page;
    5. ``truncate_every``: every Nth request is answered 200 with its JSON cut in the middle;
    6. ``fault_rates``: each kind of ``RANDOM_FAULT_KINDS`` injected at random into that share
       of the requests (a RNG seeded by the site; the kinds' shares add up to at most 1).

    ``slow_ms`` delays every counted request; ``ignore_offset`` makes list endpoints always
    serve their first page (a buggy server a client must detect instead of looping forever).
    ``max_consecutive_faults`` (0 = unlimited) serves a request normally once that many
    faulted answers in a row were given (``script`` ones count, but ``script`` itself is always
    honoured): a client that retries that many times is then sure to succeed. Every faulted
    answer is counted by kind (``SiteRuntime.injected``, the simulator's ``/_simulator/faults``).

    Hostile servers (:mod:`.hostile`), each off by default: ``revoke_after`` / ``fail_after``
    answer 401 / 500 to every request after the Nth (a key revoked, a site failing half-way);
    ``rotate_ignoring_offset`` ignores ``offset`` and starts each page that many records further
    on; ``never_empty`` serves new records past the end, forever; ``poison`` maps record ids to
    a kind of poison (see ``hostile.POISON_KINDS``: huge or long ids, NaN and 1e400 prices, a
    ``poison_bytes`` field name, ``deep_levels`` of nesting, ...); ``trickle_bytes`` every
    ``trickle_interval_ms``, ``stall_after_bytes`` then ``stall_ms`` of silence, or
    ``reset_after_bytes`` then a cut connection shape every answered body; ``gzip_bomb_bytes``
    answers list and stats requests with gzip inflating to that size; ``echo_key`` quotes the
    API key (raw, URL-encoded, JSON-escaped) in error bodies and HTML pages;
    ``redirect_with_key`` first redirects each request to itself with the key in its query.
    """

    error_rate: float = 0.0
    rate_limit_every: int = 0
    retry_after: float = 1.0
    slow_ms: int = 0
    html_every: int = 0
    truncate_every: int = 0
    ignore_offset: bool = False
    script: list[int] = field(default_factory=list)
    max_consecutive_faults: int = 0
    revoke_after: int = 0
    fail_after: int = 0
    rotate_ignoring_offset: int = 0
    never_empty: bool = False
    poison: dict[int, str] = field(default_factory=dict)
    poison_bytes: int = 2_000_000
    deep_levels: int = 10_000
    trickle_bytes: int = 0
    trickle_interval_ms: int = 0
    stall_after_bytes: int = 0
    stall_ms: int = 0
    reset_after_bytes: int = 0
    gzip_bomb_bytes: int = 0
    echo_key: bool = False
    redirect_with_key: bool = False
    fault_rates: dict[str, float] = field(default_factory=dict)
    slow_fault_ms: int = 3000

    def validate(self, site_key: str) -> None:
        problems = []
        if not 0.0 <= self.error_rate <= 1.0:
            problems.append(f"error_rate must be within [0, 1], got {self.error_rate!r}")
        for name in _COUNTS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                problems.append(f"{name} must be a non-negative integer, got {value!r}")
        if not isinstance(self.max_consecutive_faults, int) or self.max_consecutive_faults < 0:
            problems.append(
                "max_consecutive_faults must be a non-negative integer, "
                f"got {self.max_consecutive_faults!r}"
            )
        if self.retry_after < 0:
            problems.append(f"retry_after must be >= 0, got {self.retry_after!r}")
        bad = [s for s in self.script if not isinstance(s, int) or not _scriptable(s)]
        if bad:
            problems.append(f"script statuses must be 200 or within 400-599, got {bad!r}")
        unknown = sorted({kind for kind in self.poison.values() if kind not in POISON_KINDS})
        if unknown:
            problems.append(f"poison kinds must be among {', '.join(POISON_KINDS)}, got {unknown}")
        problems += _rate_problems(self.fault_rates)
        if problems:
            raise ValueError(f"simulated site {site_key!r}: faults: " + "; ".join(problems))

    @property
    def active(self) -> bool:
        """Whether any fault rule is active (the fast path skips all fault logic otherwise)."""
        return bool(
            self.error_rate
            or self.script
            or self.ignore_offset
            or self.never_empty
            or self.poison
            or self.echo_key
            or self.redirect_with_key
            or any(self.fault_rates.values())
            or any(getattr(self, name) for name in _COUNTS if name not in _SIZES)
        )

    @property
    def shapes_body(self) -> bool:
        """Whether answered bodies are trickled, stalled or cut."""
        return bool(self.trickle_bytes or self.stall_after_bytes or self.reset_after_bytes)


def _rate_problems(rates: dict[str, float]) -> list[str]:
    problems = []
    unknown = sorted(kind for kind in rates if kind not in RANDOM_FAULT_KINDS)
    if unknown:
        problems.append(
            f"fault_rates kinds must be among {', '.join(RANDOM_FAULT_KINDS)}, got {unknown}"
        )
    bad = {k: v for k, v in rates.items() if not isinstance(v, int | float) or not 0 <= v <= 1}
    if bad:
        problems.append(f"fault_rates must be shares within [0, 1], got {bad!r}")
    elif sum(rates.values()) > 1:
        problems.append(f"fault_rates must add up to at most 1, got {sum(rates.values()):g}")
    return problems


@dataclass
class SimSite:
    """One simulated Template site: its records are generated from ``seed`` (deterministic)."""

    key: str
    api_key: str = field(repr=False)
    name: str = ""
    seed: int = 0
    paintings: int = 40
    users: int = 15
    orders: int = 25
    exhibitions: int = 4
    custom_requests: int = 6
    envelope: str = "success"
    page_cap: int = 100
    invalid_ratio: float = 0.03
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not SLUG_RE.match(self.key):
            raise ValueError(
                f"simulated site key must be a slug (lowercase letters, digits and '-'), "
                f"got {self.key!r}"
            )
        problems = []
        if not isinstance(self.api_key, str) or not self.api_key or self.api_key == MASKED:
            problems.append("api_key must be a non-empty string (not the masked placeholder)")
        for entity in ("paintings", "users", "orders", "exhibitions", "custom_requests"):
            value = getattr(self, entity)
            if not isinstance(value, int) or value < 0:
                problems.append(f"{entity} must be a non-negative integer, got {value!r}")
        if self.envelope not in ENVELOPES:
            problems.append(f"envelope must be one of {ENVELOPES}, got {self.envelope!r}")
        if not isinstance(self.page_cap, int) or self.page_cap < 1:
            problems.append(f"page_cap must be a positive integer, got {self.page_cap!r}")
        if not 0.0 <= self.invalid_ratio <= 1.0:
            problems.append(f"invalid_ratio must be within [0, 1], got {self.invalid_ratio!r}")
        if problems:
            raise ValueError(f"simulated site {self.key!r}: " + "; ".join(problems))
        self.faults.validate(self.key)

    @property
    def display_name(self) -> str:
        return self.name or self.key


def demo_sites() -> list[SimSite]:
    """The three sites of the demo: one per envelope, and one that misbehaves but recovers.

    The API keys are fixed, public demo values: the demo's sites file points at environment
    variables holding them, exactly as with real sites.
    """
    return [
        SimSite(
            key="atelier-marie",
            api_key="demo-key-atelier-marie",
            name="Atelier Marie",
            seed=1,
            envelope="success",
        ),
        SimSite(
            key="galerie-lumiere",
            api_key="demo-key-galerie-lumiere",
            name="Galerie Lumière",
            seed=2,
            paintings=60,
            users=20,
            orders=30,
            envelope="named",
            page_cap=25,
        ),
        SimSite(
            key="studio-ombre",
            api_key="demo-key-studio-ombre",
            name="Studio Ombre",
            seed=3,
            paintings=30,
            users=10,
            orders=15,
            envelope="success",
            faults=Faults(
                script=[500],
                error_rate=0.15,
                rate_limit_every=11,
                retry_after=1.0,
                slow_ms=50,
                # Never more than two failures in a row: a client retrying 3 times succeeds.
                max_consecutive_faults=2,
            ),
        ),
    ]
