"""``python -m mnistlib …``: the command line lives in :mod:`mnistlib.apps.cli`.

``mnistlib/__init__`` has already made Ctrl-C quiet while this imports PyTorch (one line, exit 130);
:func:`~mnistlib.apps.cli.main` hands it back to the command once the arguments are parsed.
"""

import signal
import sys

from mnistlib.apps.cli import main

if __name__ == "__main__":
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done: a late Ctrl-C cannot cut the exit short
    sys.exit(code)
