"""One probe of a site's export API: is it up, and if not, why (the health job and ``health``).

A probe that does not cry wolf: one transient failure (a 5xx or 429, a timeout, a connection
refused or reset: the errors marked ``retryable``) is tried again after a short pause before
the site is reported down. A refused key, a missing endpoint or an unusable document are
reported at once: waiting does not change them. Each attempt is one ``stats`` request bounded by
:data:`~.client.PROBE_SETTINGS` (short timeouts and deadlines), so a probe takes seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from template_pipeline.domain import config
from template_pipeline.domain.sites import Site
from template_pipeline.domain.vocabulary import ProbeOutcome
from template_pipeline.source.client import PROBE_SETTINGS, TemplateClient, client_for
from template_pipeline.source.errors import (
    TemplateAuthenticationError,
    TemplateConnectionError,
    TemplateError,
    TemplateNotFoundError,
)

ClientFactory = Callable[[Site], TemplateClient]
# Attempts of one probe beyond the first (each after ``pause`` seconds).
PROBE_RETRIES = 1


def retry_pause(value: float | None = None) -> float:
    """The pause before a probe's second attempt: ``value``, else its variable, else 2 s."""
    pause = value if value is not None else config.number(config.HEALTH_RETRY_PAUSE_S)
    if not 0 <= pause <= 60:
        raise ValueError(
            f"{config.HEALTH_RETRY_PAUSE_S.name} must be between 0 and 60 seconds, got {pause:g}"
        )
    return pause


def _outcome(exc: TemplateError, elapsed: float) -> tuple[ProbeOutcome, float | None, str]:
    if isinstance(exc, TemplateAuthenticationError):
        return "auth refused", elapsed, str(exc)
    if isinstance(exc, TemplateConnectionError):
        return "unreachable", None, str(exc)
    if isinstance(exc, TemplateNotFoundError):
        return "not found", elapsed, str(exc)
    return "bad response", elapsed, str(exc)


def probe_site(
    site: Site,
    client_factory: ClientFactory | None = None,
    *,
    retries: int = PROBE_RETRIES,
    pause: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ProbeOutcome, float | None, str]:
    """Probe one site's stats endpoint: (outcome, latency in seconds, detail).

    A retryable failure is tried again ``retries`` times, ``pause`` seconds apart (default
    :func:`retry_pause`); the detail of a site that answered at the second attempt says so.
    """
    factory = client_factory or (lambda s: client_for(s, PROBE_SETTINGS))
    wait = retry_pause(pause)
    start = time.perf_counter()
    first_failure = ""
    try:
        with factory(site) as client:
            for attempt in range(retries + 1):
                try:
                    latency = client.probe()
                except TemplateError as exc:
                    if not exc.retryable or attempt == retries:
                        raise
                    first_failure = first_failure or str(exc)
                    sleep(wait)
                    continue
                detail = (
                    f"answered after a retry; first attempt: {first_failure}" if attempt else ""
                )
                return "ok", latency, detail
    except TemplateError as exc:
        return _outcome(exc, time.perf_counter() - start)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
