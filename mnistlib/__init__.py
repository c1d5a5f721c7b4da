"""mnistlib: the code behind the mnist-lessons notebooks — data, models, the training loop and its
callbacks, recipes, evaluation, drawing and explanation."""

__version__ = "0.1.0"
