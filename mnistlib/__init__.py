"""mnistlib."""
