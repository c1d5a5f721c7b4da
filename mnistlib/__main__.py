"""``python -m mnistlib …``: the command line lives in :mod:`mnistlib.apps.cli`."""

import sys

from mnistlib.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
