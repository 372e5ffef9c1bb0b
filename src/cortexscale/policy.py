"""The workflow's policies, in one place: output names, figures, GPUs per model, targets.

``workflow/rules/common.smk`` imports these; the stages that write the named files import
them too, so a name is written once.
"""

from __future__ import annotations

__all__ = ["SCALING_FIGURES"]

#: the figures of the aggregate stage, in the order it draws them (under results/STUDY/figures)
SCALING_FIGURES = (
    "scaling_data_size.png", "scaling_params.png", "loss_curves.png", "precision.png",
    "factors.png",
)
