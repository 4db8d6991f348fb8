"""Running the simulator: in a background thread (tests, demo, benchmarks) or blocking (CLI)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from template_pipeline.simulator.app import SiteRuntime, build_app
from template_pipeline.simulator.config import SimSite
from template_pipeline.simulator.data import SiteData

logger = logging.getLogger(__name__)

DEFAULT_ENV_PREFIX = "TEMPLATE_KEY_"
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0


def api_key_env_name(key: str, env_prefix: str = DEFAULT_ENV_PREFIX) -> str:
    """``atelier-marie`` -> ``TEMPLATE_KEY_ATELIER_MARIE``."""
    return env_prefix + key.upper().replace("-", "_")


def _client_host(host: str) -> str:
    # A wildcard bind address is not one a client can connect to; loopback is.
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class SimulatorServer:
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
        self.host = host
        self.app = build_app(self.sites)
        self._requested_port = port
        self._log_level = log_level
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def __repr__(self) -> str:
        state = self.url if self._port is not None else "stopped"
        return f"SimulatorServer({', '.join(s.key for s in self.sites)}; {state})"

    # -- lifecycle --

    def start(self) -> SimulatorServer:
        if self._thread is not None:
            raise RuntimeError(f"{self!r} is already started")
        # Binding here, before uvicorn starts, makes the port known at once and race-free.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"template simulator cannot listen on {self.host}:{self._requested_port}: {exc}"
            ) from exc
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            # None: do not let uvicorn reconfigure the host process's logging.
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"template-simulator-{sock.getsockname()[1]}",
            daemon=True,
        )
        self._server, self._thread, self._socket = server, thread, sock
        self._port = sock.getsockname()[1]
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"template simulator failed to start on {self.host}")
            time.sleep(0.005)
        logger.info("template simulator listening at %s (%d sites)", self.url, len(self.sites))
        return self

    def stop(self) -> None:
        """Stop serving and close the port; safe to call twice."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        self._port = None
        if server is not None:
            server.should_exit = True
        if thread is not None and thread.is_alive():
            thread.join(_STOP_TIMEOUT_S)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(_STOP_TIMEOUT_S)
        if sock is not None:
            sock.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and data --

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the template simulator is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{_client_host(self.host)}:{self.port}"

    def base_url(self, key: str) -> str:
        self._runtime(key)
        return f"{self.url}/t/{key}/"

    def data(self, key: str) -> SiteData:
        return self._runtime(key).data

    def request_count(self, key: str) -> int:
        """Requests of site ``key`` that reached the fault logic (authenticated, well-formed)."""
        return self._runtime(key).requests

    def sites_file_entries(self, env_prefix: str = DEFAULT_ENV_PREFIX) -> list[dict[str, str]]:
        """Entries for ``template_pipeline.sites.write_sites_file``."""
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
    base = f"http://{_client_host(host)}:{port}"
    for site in sites:
        logger.info("simulated site %s at %s/t/%s/", site.key, base, site.key)
    logger.info("site %s is also served at %s/ (single-site setup)", sites[0].key, base)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C once it has shut down gracefully: stopping is the normal end.
        logger.info("template simulator stopped")
