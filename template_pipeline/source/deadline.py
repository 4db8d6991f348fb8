"""Deadlines: how long a request, an endpoint and a site may take, over all retries and waits.

A :class:`Deadline` is a point on a monotonic clock (injectable, so tests need no real waits).
The client checks three of them: the **request** deadline (one HTTP attempt: connect, headers
and the whole body, read in chunks so that a trickled body cannot outlive it), the **endpoint**
deadline (every page, retry and backoff sleep of one endpoint) and the **site** deadline
(everything one client does: the caller creates it once per site and may share it between the
clients of that site). The tightest of them bounds every socket timeout and every sleep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Clock = Callable[[], float]

# The variable that configures each scope, named in the errors so an operator knows the knob.
SCOPE_VARIABLES = {
    "request": "TEMPLATE_REQUEST_DEADLINE_S",
    "endpoint": "TEMPLATE_ENDPOINT_DEADLINE_S",
    "site": "TEMPLATE_SITE_DEADLINE_S",
}


@dataclass
class Deadline:
    """``seconds`` from now on ``clock`` (None: no limit), for one ``scope``."""

    seconds: float | None
    scope: str = "request"
    clock: Clock = time.monotonic
    started: float = field(default=math.nan)

    def __post_init__(self) -> None:
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"the {self.scope} deadline must be positive, got {self.seconds!r}")
        if math.isnan(self.started):
            self.started = self.clock()

    @classmethod
    def at_epoch(
        cls, epoch_seconds: float, scope: str = "site", clock: Clock = time.monotonic
    ) -> Deadline:
        """A deadline at a wall-clock time (``time.time()`` scale), e.g. a run's start + 20 min.

        Lets processes that cannot share a :class:`Deadline` object (one per Dagster step) agree
        on one site deadline; from then on it runs on the monotonic ``clock``.
        """
        seconds = max(epoch_seconds - time.time(), 1e-6)
        return cls(seconds, scope, clock)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        if self.seconds is None:
            return math.inf
        return self.seconds - self.elapsed()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def describe(self) -> str:
        """``the endpoint deadline (600 s, TEMPLATE_ENDPOINT_DEADLINE_S)``."""
        variable = SCOPE_VARIABLES.get(self.scope)
        knob = f", {variable}" if variable else ""
        return f"the {self.scope} deadline ({self.seconds:g} s{knob})"


class Budget:
    """Several deadlines at once: what remains is what the tightest one leaves."""

    __slots__ = ("deadlines",)

    def __init__(self, deadlines: Iterable[Deadline | None]) -> None:
        self.deadlines = tuple(d for d in deadlines if d is not None and d.seconds is not None)

    def remaining(self) -> float:
        return min((d.remaining() for d in self.deadlines), default=math.inf)

    def tightest(self) -> Deadline | None:
        """The deadline that leaves the least time (the one to blame when time is up)."""
        return min(self.deadlines, key=Deadline.remaining, default=None)

    def expired(self) -> Deadline | None:
        """The first deadline that has passed, or None."""
        deadline = self.tightest()
        return deadline if deadline is not None and deadline.expired() else None

    def bound(self, seconds: float) -> float:
        """``seconds``, shortened to what remains (never below a millisecond)."""
        return max(min(seconds, self.remaining()), 0.001)

    def __add__(self, other: Deadline | None) -> Budget:
        return Budget((*self.deadlines, other))
