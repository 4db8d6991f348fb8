"""A process-wide request to stop: SIGINT and SIGTERM end a sync promptly, without a retry.

The CLI's signal handler (or a run worker's interrupted step) asks for the stop; the sync's
threads look at it between sites, entities and pages and raise :class:`Interrupted`, which
rolls the entity being written back. It is a ``BaseException``, like ``KeyboardInterrupt``: the
``except Exception`` that keeps a failing site from stopping the others never swallows it, and
nothing classifies it as a failure that may heal (an interrupt is not a reason to retry).
"""

from __future__ import annotations

import threading

_requested = threading.Event()
_reason = {"text": ""}


class Interrupted(BaseException):
    """The process was asked to stop; what it was doing was abandoned (and rolled back)."""


def request(reason: str) -> None:
    """Ask every sync of this process to stop (idempotent: the first reason is kept)."""
    if not _requested.is_set():
        _reason["text"] = reason
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def reason() -> str:
    return _reason["text"] if _requested.is_set() else ""


def check() -> None:
    """Raise :class:`Interrupted` when a stop was asked for."""
    if _requested.is_set():
        raise Interrupted(_reason["text"] or "interrupted")


def clear() -> None:
    """Forget a stop request (a new command in the same process, the tests)."""
    _requested.clear()
    _reason["text"] = ""
