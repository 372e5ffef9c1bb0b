"""Model FLOPs utilisation (MFU) against a table of device peaks.

MFU = achieved model FLOPs per second / the device's dense peak for the precision the
matmuls ran in (no sparsity). ``fp32`` on a GPU runs its matmuls in TF32 when
``torch.backends.cuda.matmul.allow_tf32`` is on (cortexscale turns it on), so it is scored
against the TF32 peak then. On a CPU or an unknown GPU the MFU is ``None``.
"""

from __future__ import annotations

import torch

__all__ = ["PEAK_TFLOPS", "device_name", "mfu", "peak_flops"]

#: Dense peak TFLOP/s per device and matmul precision (vendor data sheets, no sparsity).
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 SXM": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100 NVL": {"bf16": 835.0, "fp16": 835.0, "tf32": 417.5, "fp32": 60.0},
    "H200": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}


def device_name(device: str | torch.device) -> str:
    """The accelerator's name (``torch.cuda.get_device_name``), or ``"cpu"``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return "cpu"


def _table_key(name: str) -> str | None:
    n = name.upper()
    if "H200" in n:
        return "H200"
    if "H100" in n:
        if "PCIE" in n:
            return "H100 PCIe"
        return "H100 NVL" if "NVL" in n else "H100 SXM"
    if "A100" in n:
        return "A100"
    return None


def matmul_precision(precision: str, device: str | torch.device) -> str:
    """The precision the matmuls of a ``precision`` run use: fp32 on a GPU may be tf32."""
    if precision == "fp32" and torch.device(device).type == "cuda" \
            and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return precision


def peak_flops(name: str, precision: str) -> float | None:
    """Dense peak FLOP/s of device ``name`` in ``precision`` (bf16, fp16, tf32, fp32), or None.

    >>> peak_flops("NVIDIA H100 80GB HBM3", "bf16")
    989400000000000.0
    >>> peak_flops("cpu", "fp32") is None
    True
    """
    key = _table_key(name)
    if key is None:
        return None
    return PEAK_TFLOPS[key][precision] * 1e12


def mfu(flops_per_s: float, precision: str, device: str | torch.device) -> float | None:
    """Fraction of the device peak reached by ``flops_per_s`` model FLOP/s (None on CPU)."""
    peak = peak_flops(device_name(device), matmul_precision(precision, device))
    return None if peak is None else flops_per_s / peak
