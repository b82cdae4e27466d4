"""``python -m rxkit`` runs the ``rxkit`` command line."""

import sys

from rxkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
