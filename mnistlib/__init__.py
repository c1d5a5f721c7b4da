"""mnistlib: the code behind the mnist-lessons notebooks (data, models, training, evaluation,
drawing, explanation). Importing it registers every model, the fast and record ones included,
so a checkpoint of any of them loads in a fresh process."""

from . import fast as _fast  # noqa: F401  (registers "classic-bn" and "record")

__version__ = "0.1.0"
