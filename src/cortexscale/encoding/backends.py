"""The torch backend of :func:`cortexscale.encoding.ridge.ridge_cv` (CPU and CUDA).

The same algorithm as the numpy backend (see :mod:`cortexscale.encoding.ridge`): per fold
one float64 eigendecomposition (downdated Gram matrix, or kernel sub-block when features
outnumber samples), targets projected once, every penalty scored by one stacked GEMM in
the compute dtype, score reductions in float64, refit with a per-target spectral
diagonal. torch is imported lazily; ``cortexscale.encoding`` never needs it otherwise.
TF32 is disabled for the duration of the call, so float32 means float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_tensor", "resolve_backend", "ridge_cv_torch", "torch_available"]

BACKENDS = ("numpy", "torch", "auto")


def torch_available() -> bool:
    """Whether torch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def is_tensor(a: Any) -> bool:
    """Whether ``a`` is a torch tensor (without importing torch)."""
    return type(a).__module__.startswith("torch")


def resolve_backend(backend: str, device: str | None, *arrays: Any) -> tuple[str, str | None]:
    """Pick the backend and device.

    ``'auto'`` is torch when an input is already a tensor or CUDA is available, numpy
    otherwise. ``device`` defaults to the inputs' device, else ``'cuda'`` when available,
    else ``'cpu'``.

    Returns
    -------
    backend : {'numpy', 'torch'}
    device : str or None
        None for numpy.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    tensors = [a for a in arrays if is_tensor(a)]
    if backend == "numpy":
        if tensors:
            raise ValueError("backend='numpy' got torch tensors; pass numpy arrays or "
                             "backend='torch'")
        if device not in (None, "cpu"):
            raise ValueError(f"backend='numpy' runs on device 'cpu', got device={device!r}")
        return "numpy", None
    if backend == "auto":
        if not tensors and not torch_available():
            return "numpy", None
        import torch

        if not tensors and device is None and not torch.cuda.is_available():
            return "numpy", None
    elif not torch_available():
        raise ImportError("backend='torch' needs torch, which is not installed")
    import torch

    if device is None:
        if tensors:
            device = str(tensors[0].device)
        else:
            device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"device {device!r} is not usable by torch: {err}") from err
    return "torch", str(device)


def _eigh_psd(M):
    """Eigendecomposition of a float64 PSD tensor, dropping the numerically null space."""
    import torch

    lam, vec = torch.linalg.eigh(M)
    tol = max(M.shape[0], 1) * torch.finfo(torch.float64).eps * lam.max().clamp(min=0)
    keep = lam > tol
    return lam[keep], vec[:, keep]


def _fold_factors(X64, folds, primal: bool, dt):
    """Per fold: (train, val, drop, lam, basis, a_c, a_mean), tensors on the device."""
    import torch

    dev = X64.device
    n = X64.shape[0]
    out = []
    full = X64.T @ X64 if primal else X64 @ X64.T  # (p, p) or (n, n)
    for train, val in folds:
        keep = np.zeros(n, dtype=bool)
        keep[train] = True
        drop = torch.as_tensor(np.flatnonzero(~keep), device=dev)
        tr = torch.as_tensor(train, device=dev)
        va = torch.as_tensor(val, device=dev)
        if primal:
            xd = X64[drop]
            lam, basis = _eigh_psd(full - xd.T @ xd)  # (r,), (p, r)
            A = X64[va] @ basis  # (n_val, r)
        else:
            lam, basis = _eigh_psd(full[tr][:, tr])  # (r,), (n_train, r)
            A = full[va][:, tr] @ basis  # (n_val, r)
        a_mean = A.mean(0)
        out.append((tr, va, drop, lam, basis.to(dt), (A - a_mean).to(dt), a_mean))
    return out


def _fold_scores(factors, B, y_val, alphas64, score: str):
    """Scores (k, vc) float64 of every penalty on one fold (one stacked GEMM)."""
    import torch

    _, _, _, lam, _, a_c, a_mean = factors
    k, (n_val, r) = alphas64.shape[0], a_c.shape
    d = 1.0 / (lam[None, :] + alphas64[:, None])  # (k, r) float64
    stacked = (a_c[None] * d[:, None, :].to(a_c.dtype)).reshape(k * n_val, r)
    pred_c = (stacked @ B).reshape(k, n_val, -1)  # (k, n_val, vc)
    y64 = y_val.to(torch.float64)
    y_mean = y64.mean(0)  # (vc,)
    y64 -= y_mean
    ss_y = (y64 * y64).sum(0)  # (vc,)
    y_c = y64.to(B.dtype)
    vc = B.shape[1]
    ss_p = torch.empty((k, vc), dtype=torch.float64, device=B.device)
    cross = torch.empty_like(ss_p)
    for i in range(k):
        ss_p[i] = torch.sum(pred_c[i] * pred_c[i], 0, dtype=torch.float64)
        cross[i] = torch.sum(pred_c[i] * y_c, 0, dtype=torch.float64)
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=B.device)
    if score == "pearson":
        den = torch.sqrt(ss_p * ss_y)
        return torch.where(den > 0, cross / den, nan)
    pred_mean = (a_mean[None, :] * d) @ B.to(torch.float64)  # (k, vc)
    ss_res = ss_y - 2 * cross + ss_p + n_val * (y_mean - pred_mean) ** 2
    return torch.where(ss_y > 0, 1.0 - ss_res / ss_y, nan)


def ridge_cv_torch(X, Y, folds, alphas: np.ndarray, score: str, dtype: np.dtype,
                   chunk_size: int, device: str):
    """Torch implementation behind :func:`~cortexscale.encoding.ridge.ridge_cv`.

    Parameters
    ----------
    X : ndarray or tensor, shape (n, p)
        Checked to be finite.
    Y : ndarray or tensor, shape (n, v)
    folds : list of (train, val) int64 ndarrays
    alphas : ndarray of float64, shape (k,)
    score : {'pearson', 'r2'}
    dtype : numpy dtype, float32 or float64
    chunk_size : int
    device : str

    Returns
    -------
    best_alpha (v,), cv_scores (k, v), coef (p, v), valid (v,) : ndarrays
    """
    import torch

    dt = getattr(torch, str(dtype))
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            return _ridge_cv_torch(torch, X, Y, folds, alphas, score, dt, chunk_size, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def _ridge_cv_torch(torch, X, Y, folds, alphas, score, dt, chunk_size, device):
    X = torch.as_tensor(X, device=device)
    Y = torch.as_tensor(Y, device=device)
    (n, p), v, k = X.shape, Y.shape[1], alphas.size
    X64 = X.to(torch.float64)
    Xd = X.to(dt)
    primal = p <= n
    factors = _fold_factors(X64, folds, primal, dt)
    lam_all, basis_all = _eigh_psd(X64.T @ X64 if primal else X64 @ X64.T)
    basis_all = basis_all.to(dt)
    del X64
    alphas64 = torch.as_tensor(alphas, dtype=torch.float64, device=device)

    # outputs stay on the device until the end: one transfer each
    cv_scores = torch.full((k, v), float("nan"), dtype=torch.float64, device=device)
    best_alpha = torch.full((v,), float("nan"), dtype=torch.float64, device=device)
    coef = torch.zeros((p, v), dtype=dt, device=device)
    valid = torch.zeros(v, dtype=torch.bool, device=device)
    for start in range(0, v, chunk_size):
        stop = min(start + chunk_size, v)
        Yc = Y[:, start:stop]
        ok = torch.isfinite(Yc).all(0) & ((Yc.amax(0) - Yc.amin(0)) > 0)
        valid[start:stop] = ok
        if not bool(ok.any()):
            continue
        Yc = Yc[:, ok].to(dt)  # (n, vc) valid targets
        XtY = Xd.T @ Yc if primal else None  # (p, vc)
        total = torch.zeros((k, Yc.shape[1]), dtype=torch.float64, device=device)
        count = torch.zeros_like(total)
        for f in factors:
            tr, va, drop, _, basis, _, _ = f
            if primal:
                B = basis.T @ (XtY - Xd[drop].T @ Yc[drop])  # (r, vc)
            else:
                B = basis.T @ Yc[tr]  # (r, vc)
            s = _fold_scores(f, B, Yc[va], alphas64, score)
            seen = ~torch.isnan(s)
            total += torch.where(seen, s, 0.0)
            count += seen
        mean = torch.where(count > 0, total / count.clamp(min=1), float("nan"))
        filled = torch.where(torch.isnan(mean), -torch.inf, mean)
        idx = torch.argmax(filled, 0)  # first maximum: ties go to the smaller penalty
        idx[torch.isnan(mean).all(0)] = k - 1
        alpha = alphas64[idx]  # (vc,)
        D = (1.0 / (lam_all[:, None] + alpha[None, :])).to(dt)  # (r, vc)
        if primal:
            c = basis_all @ ((basis_all.T @ XtY) * D)  # (p, vc)
        else:
            c = Xd.T @ (basis_all @ ((basis_all.T @ Yc) * D))  # (p, vc)
        if bool(ok.all()):
            cv_scores[:, start:stop] = mean
            best_alpha[start:stop] = alpha
            coef[:, start:stop] = c
        else:
            cols = torch.arange(start, stop, device=device)[ok]
            cv_scores[:, cols] = mean
            best_alpha[cols] = alpha
            coef[:, cols] = c
    return (best_alpha.cpu().numpy(), cv_scores.cpu().numpy(), coef.cpu().numpy(),
            valid.cpu().numpy())
