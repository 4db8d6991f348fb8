"""One probe of a site's export API: is it up, and if not, why (the health job and ``health``)."""

from __future__ import annotations

import time
from collections.abc import Callable

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


def probe_site(
    site: Site, client_factory: ClientFactory | None = None
) -> tuple[ProbeOutcome, float | None, str]:
    """Probe one site's stats endpoint: (outcome, latency in seconds, detail)."""
    factory = client_factory or (lambda s: client_for(s, PROBE_SETTINGS))
    start = time.perf_counter()
    try:
        with factory(site) as client:
            latency = client.probe()
        return "ok", latency, ""
    except TemplateAuthenticationError as exc:
        return "auth refused", time.perf_counter() - start, str(exc)
    except TemplateConnectionError as exc:
        return "unreachable", None, str(exc)
    except TemplateNotFoundError as exc:
        return "not found", time.perf_counter() - start, str(exc)
    except TemplateError as exc:
        return "bad response", time.perf_counter() - start, str(exc)
