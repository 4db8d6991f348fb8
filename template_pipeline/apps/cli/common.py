"""What every command shares: output helpers and the exit codes."""

from __future__ import annotations

import sys

EXIT_OK, EXIT_SITE_FAILED, EXIT_CONFIG = 0, 1, 2


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(f"template-pipeline: {text}\n")
