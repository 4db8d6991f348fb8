"""SIGINT and SIGTERM during ``template-pipeline sync``: stop promptly, roll back, exit non-zero.

The runs execute in a thread of their own (see :mod:`.sync`), so the main thread keeps the
signals: the handler only asks every sync of the process to stop (:mod:`~template_pipeline.
domain.stop`); the main thread then marks the run being executed canceling, cancels the
statements the sync's connections are running, gives the run ``GRACE_S`` to roll back and end
as canceled, and marks it canceled itself if it did not. The exit code is 128 + the signal's
number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process killed by it. A second
signal while stopping raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from template_pipeline.domain import stop

# How long an interrupted run may take to roll back and end before the CLI marks it itself.
GRACE_S = 10.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Interruption:
    """The signal that stopped the sync, if any."""

    signum: int | None = None
    runs: list[str] = field(default_factory=list)  # the runs it stopped

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


class SyncInterrupted(Exception):
    """The sync was stopped by a signal; what was synced before it is in ``outcomes``."""

    def __init__(self, interruption: Interruption, outcomes: list) -> None:
        runs = ", ".join(interruption.runs) or "none"
        super().__init__(
            f"interrupted by {interruption.name}: the sites being written were rolled back; "
            f"run(s) marked canceled: {runs}"
        )
        self.interruption = interruption
        self.outcomes = outcomes


@contextmanager
def stop_on_signals() -> Iterator[Interruption]:
    """While the body runs, SIGINT and SIGTERM ask the sync to stop (main thread only)."""
    state = Interruption()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: object) -> None:
        if state.signum is not None:
            raise KeyboardInterrupt  # a second signal: stop waiting for the rollback
        state.signum = signum
        stop.request(f"stopped by {signal.Signals(signum).name}")

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield state
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
