"""Running the simulator: in a background thread (tests, demo, benchmarks) or blocking (CLI)."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from template_pipeline.apps.http_server import BackgroundServer, client_host
from template_pipeline.apps.simulator.app import SiteRuntime, build_app, fault_counts
from template_pipeline.apps.simulator.config import SimSite
from template_pipeline.apps.simulator.data import SiteData

logger = logging.getLogger(__name__)

DEFAULT_ENV_PREFIX = "TEMPLATE_KEY_"


def api_key_env_name(key: str, env_prefix: str = DEFAULT_ENV_PREFIX) -> str:
    """``atelier-marie`` -> ``TEMPLATE_KEY_ATELIER_MARIE``."""
    return env_prefix + key.upper().replace("-", "_")


class SimulatorServer(BackgroundServer):
    """The simulator served by uvicorn in a daemon thread; ``port=0`` picks a free port.

    The data is generated in the constructor, so tests can read and change it before
    ``start()``. Usable as a context manager::

        with SimulatorServer(demo_sites()) as server:
            requests.get(server.base_url("atelier-marie") + "api/export/stats", ...)
    """

    def __init__(
        self,
        sites: list[SimSite],
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.sites = list(sites)
        super().__init__(
            build_app(self.sites),
            name="template simulator",
            host=host,
            port=port,
            log_level=log_level,
        )

    def __repr__(self) -> str:
        state = self.url if self._port is not None else "stopped"
        return f"SimulatorServer({', '.join(s.key for s in self.sites)}; {state})"

    # -- addresses and data --

    def base_url(self, key: str) -> str:
        self._runtime(key)
        return f"{self.url}/t/{key}/"

    def data(self, key: str) -> SiteData:
        return self._runtime(key).data

    def request_count(self, key: str) -> int:
        """Requests of site ``key`` that reached the fault logic (authenticated, well-formed)."""
        return self._runtime(key).requests

    def fault_counts(self) -> dict[str, dict[str, Any]]:
        """Per site: requests, faulted answers, faults by kind (``/_simulator/faults``)."""
        return fault_counts(self.app.state.runtime)

    def sites_file_entries(self, env_prefix: str = DEFAULT_ENV_PREFIX) -> list[dict[str, str]]:
        """Entries for ``template_pipeline.domain.sites.write_sites_file``."""
        return [
            {
                "key": site.key,
                "base_url": self.base_url(site.key),
                "api_key_env": api_key_env_name(site.key, env_prefix),
                "name": site.display_name,
            }
            for site in self.sites
        ]

    def api_key_env(self, env_prefix: str = DEFAULT_ENV_PREFIX) -> dict[str, str]:
        """``{environment variable: API key}`` matching :meth:`sites_file_entries`."""
        return {api_key_env_name(site.key, env_prefix): site.api_key for site in self.sites}

    def _runtime(self, key: str) -> SiteRuntime:
        runtimes: dict[str, SiteRuntime] = self.app.state.runtime
        try:
            return runtimes[key]
        except KeyError:
            raise KeyError(
                f"site {key!r} is not simulated here (sites: {', '.join(runtimes)})"
            ) from None


def serve(
    sites: list[SimSite], host: str = "127.0.0.1", port: int = 8765, log_level: str = "info"
) -> None:
    """Serve ``sites`` until interrupted (Ctrl-C, SIGTERM), for ``template-pipeline simulate``.

    Returns normally once stopped; raises ``SystemExit`` if the port cannot be bound.
    """
    app = build_app(sites)
    base = f"http://{client_host(host)}:{port}"
    for site in sites:
        logger.info("simulated site %s at %s/t/%s/", site.key, base, site.key)
    logger.info("site %s is also served at %s/ (single-site setup)", sites[0].key, base)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C once it has shut down gracefully: stopping is the normal end.
        logger.info("template simulator stopped")
