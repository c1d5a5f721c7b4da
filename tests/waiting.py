"""How long a test waits before it calls something a hang.

Tests wait for what they can observe (a file, a line, a health check, a page state) and move on the
moment it is there; these limits only stop a run that hangs. They are generous on purpose: a busy
machine — a learner's laptop with other work on it, a shared CI runner — must never fail a test.
"""

HANG_S = 1800  #: a subprocess (one that imports PyTorch, trains a little, or serves a page) that takes longer hangs
PAGE_S = 300  #: a page, a server or a notebook that needs longer to answer is broken, not slow
