"""cortexscale: compute-optimal scaling studies of brain encoding models."""

__version__ = "0.1.0"
