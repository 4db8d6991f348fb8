"""What every command shares: output helpers and the exit codes."""

from __future__ import annotations

import sys

# 0 all good; 1 a site (or part of one) could not be synced; 2 a configuration error (nothing
# was contacted); 3 every site synced but a blocking check failed (the data landed, and what
# depends on it was kept as it was).
EXIT_OK, EXIT_SITE_FAILED, EXIT_CONFIG, EXIT_CHECK_FAILED = 0, 1, 2, 3


def sync_exit_code(status: str) -> int:
    """The exit code of ``sync`` and ``demo`` for ``apps.summary.exit_status``."""
    return {"ok": EXIT_OK, "check failed": EXIT_CHECK_FAILED}.get(status, EXIT_SITE_FAILED)


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(f"template-pipeline: {text}\n")
