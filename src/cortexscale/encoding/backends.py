"""Array backends of the ridge engine: the few primitives :mod:`cortexscale.encoding.ridge`
is written over (the way himalaya does it), for numpy and for torch (CPU or CUDA).

The algorithm itself uses only what numpy arrays and torch tensors share (``@``, ``.T``,
slicing, integer-array indexing, ``+ - * /``, ``.sum(0)``, ``.mean(0)``) plus the methods of
a backend object below: array creation and casts, a float64 eigendecomposition, column sums
of products (computed in the compute dtype and returned in float64, the one point where
float64 enters the score reductions on every backend), masks and transfers. torch is
imported lazily; ``cortexscale.encoding`` never needs it otherwise.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_info, threadpool_limits

__all__ = [
    "BACKENDS",
    "NumpyBackend",
    "TorchBackend",
    "get_backend",
    "is_tensor",
    "resolve_backend",
    "torch_available",
]

BACKENDS = ("numpy", "torch", "auto")
_SINGLE_THREAD_EIGH = 4096  # numpy: matrices up to this size are decomposed on one BLAS thread


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
        raise ValueError(f"backend must be one of {list(BACKENDS)}, found {backend!r}")
    tensors = [a for a in arrays if is_tensor(a)]
    if backend == "numpy":
        if tensors:
            raise ValueError("backend='numpy' found torch tensors; pass numpy arrays or "
                             "backend='torch'")
        if device not in (None, "cpu"):
            raise ValueError(f"backend='numpy' runs on device 'cpu', found device={device!r}")
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


def get_backend(backend: str, device: str | None = None):
    """The backend object for a resolved name (:func:`resolve_backend`)."""
    return NumpyBackend() if backend == "numpy" else TorchBackend(device or "cpu")


class NumpyBackend:
    """numpy arrays; large products run on threads, one BLAS thread each (see ``workers``)."""

    name = "numpy"
    float64 = np.dtype(np.float64)

    def dtype(self, name: str | np.dtype) -> np.dtype:
        """The backend's dtype for a numpy dtype or its name."""
        return np.dtype(name)

    def asarray(self, a, dtype=None):
        """``a`` (array-like) as an array, in ``dtype`` when given (a view when possible)."""
        a = np.asarray(a)
        return a if dtype is None else a.astype(dtype, copy=False)

    def index(self, idx: np.ndarray) -> np.ndarray:
        """Sample indices (int64 ndarray) in the backend's form."""
        return np.asarray(idx, dtype=np.int64)

    def cast(self, a, dtype):
        return a.astype(dtype, copy=False)

    def copy(self, a):
        return a.copy()

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype=dtype)

    def empty(self, size: int, dtype):
        return np.empty(size, dtype=dtype)

    def arange(self, start: int, stop: int):
        return np.arange(start, stop)

    def eigh_psd(self, M):
        """Eigendecomposition of a float64 PSD matrix (m, m), overwritten, dropping the
        numerically null space: ``lam`` (r,) above ``m * eps * max(lam)``, ``vec`` (m, r)."""
        # LAPACK syevd; its tridiagonal reduction is memory-bound level-2 BLAS that threads
        # badly on small matrices (1000 x 1000 on 2 cores: 0.45 s with 1 thread, 0.9-8 s
        # with 2 under load), so small matrices are decomposed on one thread.
        limit = 1 if M.shape[0] <= _SINGLE_THREAD_EIGH else None
        with threadpool_limits(limits=limit, user_api="blas"):
            lam, vec = scipy.linalg.eigh(M, driver="evd", overwrite_a=True, check_finite=False)
        tol = max(M.shape[0], 1) * np.finfo(np.float64).eps * max(lam.max(initial=0.0), 0.0)
        keep = lam > tol
        return lam[keep], vec[:, keep]

    def matmul(self, a, b, out=None):
        """``a @ b``, into the flat buffer ``out`` when given."""
        if out is None:
            return a @ b
        return np.matmul(a, b, out=out[: a.shape[0] * b.shape[1]].reshape(a.shape[0], -1))

    def colsum_products(self, a, b):
        """``sum_n a[k, n, v] * b[(k,) n, v]`` (k, v) of ``a`` (k, n, v) and ``b`` (k, n, v)
        or (n, v), in the compute dtype, returned in float64."""
        spec = "knv,knv->kv" if b.ndim == 3 else "knv,nv->kv"
        return np.einsum(spec, a, b).astype(np.float64)

    def valid_targets(self, Y):
        """Targets (columns) that are finite and not constant: bool (v,)."""
        finite = np.isfinite(Y).all(axis=0)
        with np.errstate(invalid="ignore"):
            spread = np.ptp(Y, axis=0) if Y.shape[0] else np.zeros(Y.shape[1])
        return finite & (spread > 0)

    def isnan(self, a):
        return np.isnan(a)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def sqrt(self, a):
        with np.errstate(invalid="ignore"):
            return np.sqrt(a)

    def argmax0(self, a):
        return np.argmax(a, axis=0)

    def nonzero(self, mask):
        """Row and column indices of the True entries of a 2-D mask."""
        return np.nonzero(mask)

    def any(self, a) -> bool:
        return bool(a.any())

    def all(self, a) -> bool:
        return bool(a.all())

    def errstate(self):
        return np.errstate(divide="ignore", invalid="ignore")

    def workers(self) -> int:
        """Threads to split the targets over: the cores this process may use (CPU
        affinity), capped by the BLAS thread setting (``OMP_NUM_THREADS``/
        ``OPENBLAS_NUM_THREADS``, as set by schedulers)."""
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count())
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        return max(1, min([cores or 1, *blas]))

    def single_thread_blas(self):
        """Context in which BLAS runs on one thread (around the worker threads)."""
        return threadpool_limits(limits=1, user_api="blas")

    def compute_context(self):
        return contextlib.nullcontext()


class TorchBackend:
    """torch tensors on one device; TF32 is off during ``compute_context``, so float32 means
    float32; one worker (torch threads its own kernels)."""

    name = "torch"

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.float64 = torch.float64

    def dtype(self, name):
        return getattr(self.torch, str(np.dtype(name)))

    def asarray(self, a, dtype=None):
        t = self.torch.as_tensor(a, device=self.device)
        return t if dtype is None else t.to(dtype)

    def index(self, idx: np.ndarray):
        return self.torch.as_tensor(np.asarray(idx, dtype=np.int64), device=self.device)

    def cast(self, a, dtype):
        return a.to(dtype)

    def copy(self, a):
        return a.clone()

    def to_numpy(self, a) -> np.ndarray:
        return a.cpu().numpy()

    def zeros(self, shape, dtype):
        return self.torch.zeros(shape, dtype=dtype, device=self.device)

    def full(self, shape, value, dtype):
        return self.torch.full(shape, value, dtype=dtype, device=self.device)

    def empty(self, size: int, dtype):
        return self.torch.empty(size, dtype=dtype, device=self.device)

    def arange(self, start: int, stop: int):
        return self.torch.arange(start, stop, device=self.device)

    def eigh_psd(self, M):
        """As :meth:`NumpyBackend.eigh_psd`, with ``torch.linalg.eigh``."""
        lam, vec = self.torch.linalg.eigh(M)
        tol = max(M.shape[0], 1) * self.torch.finfo(self.torch.float64).eps
        keep = lam > tol * lam.max().clamp(min=0)
        return lam[keep], vec[:, keep]

    def matmul(self, a, b, out=None):
        if out is None:
            return a @ b
        res = out[: a.shape[0] * b.shape[1]].view(a.shape[0], b.shape[1])
        return self.torch.matmul(a, b, out=res)

    def colsum_products(self, a, b):
        """As :meth:`NumpyBackend.colsum_products`: products and sums in the compute dtype
        (one penalty at a time, to bound the temporary), float64 result."""
        out = self.torch.empty((a.shape[0], a.shape[2]), dtype=self.torch.float64,
                               device=a.device)
        for i in range(a.shape[0]):
            out[i] = (a[i] * (b[i] if b.ndim == 3 else b)).sum(0)
        return out

    def valid_targets(self, Y):
        return self.torch.isfinite(Y).all(0) & ((Y.amax(0) - Y.amin(0)) > 0)

    def isnan(self, a):
        return self.torch.isnan(a)

    def where(self, cond, a, b):
        t = self.torch
        a = a if t.is_tensor(a) else t.tensor(a, dtype=t.float64, device=self.device)
        b = b if t.is_tensor(b) else t.tensor(b, dtype=t.float64, device=self.device)
        return t.where(cond, a, b)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def argmax0(self, a):
        return self.torch.argmax(a, 0)

    def nonzero(self, mask):
        rows, cols = self.torch.nonzero(mask, as_tuple=True)
        return rows, cols

    def any(self, a) -> bool:
        return bool(a.any())

    def all(self, a) -> bool:
        return bool(a.all())

    def errstate(self):
        return contextlib.nullcontext()

    def workers(self) -> int:
        return 1

    def single_thread_blas(self):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def compute_context(self):
        """No autograd, TF32 off for the duration."""
        torch = self.torch
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with torch.no_grad():
                yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
