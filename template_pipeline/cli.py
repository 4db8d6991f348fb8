"""``python -m template_pipeline.cli``: the command line's historical entry point (the contract).

The command line itself lives in :mod:`template_pipeline.apps.cli`.
"""

import sys

from template_pipeline.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
