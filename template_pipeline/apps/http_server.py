"""An ASGI app served by uvicorn in a background thread (the simulator, the webhook intake).

The socket is bound before uvicorn starts, so ``port=0`` gives a free port that is known at once
and free of races. Dagster is not imported here: the simulator must stay light.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0


def client_host(host: str) -> str:
    """The address a client connects to for a server bound on ``host``."""
    # A wildcard bind address is not one a client can connect to; loopback is.
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class BackgroundServer:
    """Serve ``app`` on ``host:port`` from a daemon thread; a context manager."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.app = app
        self.name = name
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"the {self.name} is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{client_host(self.host)}:{self.port}"

    def start(self):
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"the {self.name} cannot listen on {self.host}:{self._requested_port}: {exc}"
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
        port = sock.getsockname()[1]
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"{self.name.replace(' ', '-')}-{port}",
            daemon=True,
        )
        self._server, self._thread, self._socket, self._port = server, thread, sock, port
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.name} failed to start on {self.host}")
            time.sleep(0.005)
        logger.info("%s listening at %s", self.name, self.url)
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

    def __enter__(self):
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
