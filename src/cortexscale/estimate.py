"""Estimate a sweep's pretraining compute and GPU hours from its config, before submitting.

FLOPs per grid point = steps x batch_size x context x flops_per_token (models/gpt.py:
``6 N + 12 L H Q T`` per processed token position; ``context`` = t*h*w tokens of a clip, twice
that when conditioned), the steps those of :func:`cortexscale.grid.steps_for` (``pretrain.steps``,
or what an isoflop budget or a ``grid.tokens`` count buys): the count ``summary.json`` reports
as ``train_flops``. GPU hours = FLOPs / (MFU x the device's dense peak for the grid
point's precision, fp32 counted as TF32) / 3600. Only pretraining is counted: the tokenizer
is trained once, and features and ridge are small next to it at paper scale.
"""

from __future__ import annotations

from typing import Any

from cortexscale.errors import InputError

__all__ = ["estimate"]


#: the GPU and the model-FLOPs utilisation a sweep is costed at unless told otherwise
DEFAULT_DEVICE, DEFAULT_MFU = "H100 SXM", 0.35


def estimate(cfg: dict[str, Any], device: str = DEFAULT_DEVICE, mfu: float = DEFAULT_MFU,
             gpus_per_model: bool = True) -> list[dict[str, Any]]:
    """One row per grid point: params, tokens, FLOPs, GPUs, GPU hours and wall hours.

    ``cfg`` is a full config (defaults filled, e.g. by :func:`cortexscale.config.check_config`).
    """
    import torch

    from cortexscale.grid import expand, steps_for
    from cortexscale.models.gpt import GPT, GPTConfig, count_params, flops_per_token
    from cortexscale.policy import gpus_by_size
    from cortexscale.train.metrics import PEAK_TFLOPS

    if device not in PEAK_TFLOPS:
        raise InputError(f"device: expected one of {sorted(PEAK_TFLOPS)}, found {device!r}")
    if not 0 < mfu <= 1:
        raise InputError(f"mfu: expected a fraction in (0, 1], found {mfu!r}")
    corpus, tok, pre = cfg["corpus"], cfg["tokenizer"], cfg["pretrain"]
    ds = tok["downsample"]
    shape = (corpus["clip_len"] // ds[0], corpus["height"] // ds[1], corpus["width"] // ds[2])
    res = cfg.get("resources", {})
    rows, per_model = [], {}
    for p in expand(cfg["grid"]):
        if p.model_key not in per_model:  # one meta-device model per architecture
            mcfg = GPTConfig(vocab_size=tok["codebook_size"], shape=shape, hidden=p.hidden,
                             layers=p.layers, heads=p.heads, conditioned=pre["conditioned"])
            with torch.device("meta"):
                n = count_params(GPT(mcfg))
            per_model[p.model_key] = (n, mcfg.context, flops_per_token(mcfg))
        n, context, fpt = per_model[p.model_key]
        n_tok = context // (2 if pre["conditioned"] else 1)
        steps = steps_for(p, fpt, context, n_tok, pre["batch_size"], pre["steps"])
        tokens = steps * pre["batch_size"] * n_tok  # predicted tokens, as tokens_seen
        flops = steps * pre["batch_size"] * context * fpt
        # GPUs by model size as the workflow allocates them, counted on a GPU machine
        gpus = max(1, res.get("gpu", 0))
        if gpus_per_model:
            gpus = gpus_by_size(p, res.get("gpus_per_model", []), gpus)
        precision = "tf32" if p.precision == "fp32" else p.precision
        gpu_hours = flops / (mfu * PEAK_TFLOPS[device][precision] * 1e12) / 3600
        rows.append({"grid": p.name, "n_params": n, "steps": steps, "tokens": tokens,
                     "flops": float(flops),
                     "gpus": gpus, "gpu_hours": gpu_hours, "wall_hours": gpu_hours / gpus})
    return rows
