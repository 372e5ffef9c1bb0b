"""Labels that several layers write or read in tables (a bottom-layer module: no imports)."""

from __future__ import annotations

__all__ = ["POOLED"]

#: the subject and ROI label of the pooled rows of every table (pooled over subjects, over
#: the study's ROIs); the ROI and subject patterns of the schema cannot produce it
POOLED = "(pooled)"
