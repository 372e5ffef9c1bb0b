"""Train the VQ-VAE on a corpus's clips, then tokenise every clip once.

:func:`train_vqvae` trains on random batches of the training clips (:class:`ClipSampler`);
:func:`tokenise` turns every clip into its codes, batch by batch, and measures the
reconstruction error and the codebook's use. The tokenizer stage
(:mod:`cortexscale.stages.tokenizer`) reads ``frames.h5`` and writes ``vqvae.pt``,
``tokens.h5`` and ``summary.json``. The GPT trains from the cached codes, so the VQ-VAE never
runs inside the pretraining loop (see "Cost model" in the design).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from cortexscale.errors import ConfigError
from cortexscale.logs import Progress, get_logger
from cortexscale.models.vqvae import VQVAE, VQVAEConfig

__all__ = ["ClipSampler", "check_train_clips", "model_config", "tokenise", "train_vqvae"]

log = get_logger(__name__)

#: Corpora up to this many bytes of clips are read into memory for training.
IN_MEMORY_BYTES = 1 << 30
#: Clips per batch when tokenising (bounds memory).
ENCODE_BATCH = 64
#: At most this many clips are decoded to measure the final reconstruction MSE.
MAX_EVAL_CLIPS = 2048


def model_config(cfg: dict[str, Any]) -> VQVAEConfig:
    """The VQ-VAE of the checked ``tokenizer:`` section.

    Raises
    ------
    ConfigError
        ``tokenizer config: ...`` if the settings do not make a model.
    """
    try:
        return VQVAEConfig(
            codebook_size=cfg["codebook_size"], embedding_dim=cfg["embedding_dim"],
            hidden=cfg["hidden"], n_res_layers=cfg["n_res_layers"],
            downsample=cfg["downsample"], ema_decay=cfg["ema_decay"],
            commitment=cfg["commitment"],
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(f"tokenizer config: {err}") from err


def check_train_clips(train_clips: Any, n_clips: int, path: Any) -> np.ndarray:
    """The training clip indices (default: every clip), checked against ``n_clips``.

    Returns
    -------
    idx : int64 (n_train,)
    """
    if train_clips is None:
        return np.arange(n_clips, dtype=np.int64)
    idx = np.asarray(train_clips)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"train_clips: expected a non-empty 1-D integer array, found {idx.dtype} {idx.shape}"
        )
    if idx.min() < 0 or idx.max() >= n_clips:
        raise ValueError(
            f"train_clips: indices must lie in [0, {n_clips}) (n_clips of {path}), found range "
            f"[{idx.min()}, {idx.max()}]"
        )
    return idx.astype(np.int64)


class ClipSampler:
    """Random batches of training clips, from memory (small corpora) or from the clips array.

    Parameters
    ----------
    clips : uint8 array-like (n_clips, T, H, W, 3)
        E.g. an ``h5py.Dataset`` (read only as needed).
    idx : int64 (n_train,)
        The training clips.
    rng : numpy.random.Generator
    """

    def __init__(self, clips: Any, idx: np.ndarray, rng: np.random.Generator) -> None:
        self.clips, self.idx, self.rng = clips, idx, rng
        clip_bytes = int(np.prod(clips.shape[1:]))
        self.memory = None
        if clip_bytes * len(idx) <= IN_MEMORY_BYTES:
            uniq = np.unique(idx)
            self.memory = clips[uniq] if len(uniq) < clips.shape[0] else clips[:]
            self.pos = np.searchsorted(uniq, idx) if len(uniq) < clips.shape[0] else idx

    def batch(self, n: int) -> np.ndarray:
        """Uint8 clips (n, T, H, W, 3), drawn uniformly with replacement."""
        j = self.rng.integers(0, len(self.idx), size=n)
        if self.memory is not None:
            return self.memory[self.pos[j]]
        rows = self.idx[j]
        uniq, inv = np.unique(rows, return_inverse=True)  # h5py needs increasing indices
        return self.clips[uniq][inv]


def train_vqvae(model_cfg: VQVAEConfig, sampler: ClipSampler, steps: int, batch_size: int,
                lr: float, dev: torch.device) -> tuple[VQVAE, float, float]:
    """Train a new VQ-VAE with Adam on ``steps`` batches of ``sampler``.

    Returns
    -------
    model : VQVAE
        In eval mode.
    final_loss : float
        The loss of the last step.
    train_time : float
        Seconds.
    """
    model = VQVAE(model_cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    every = max(1, math.ceil(steps / 10))  # checked here: usage is computed only when due
    progress = Progress(log, steps, "step")
    t_train = time.perf_counter()
    for step in range(1, steps + 1):
        x = VQVAE.preprocess(sampler.batch(batch_size)).to(dev)  # (B, 3, T, H, W)
        out = model(x)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if step % every == 0 or step == steps:
            use = model.codebook_usage()
            log.info(
                f"{progress.line(step)}; loss {out['loss'].item():.5f} "
                f"recon_mse {out['recon_loss'].item():.5f} "
                f"perplexity {out['perplexity'].item():.1f} "
                f"codes_used {use['used']}/{model_cfg.codebook_size} "
                f"restarts {use['restarts']}"
            )
    train_time = time.perf_counter() - t_train
    final_loss = float(out["loss"].item())
    model.eval()
    return model, final_loss, train_time


@torch.no_grad()
def tokenise(model: VQVAE, clips: Any, codes_out: Any, dev: torch.device) -> dict[str, Any]:
    """Write the codes of every clip into ``codes_out``; measure reconstruction and use.

    Parameters
    ----------
    model : VQVAE
        In eval mode.
    clips : uint8 array-like (n_clips, T, H, W, 3)
        Read ``ENCODE_BATCH`` clips at a time.
    codes_out : int16 array-like (n_clips, t, h, w)
        Written slice by slice (e.g. an ``h5py.Dataset``).
    dev : torch.device

    Returns
    -------
    stats : dict
        ``recon_mse`` (over every ``eval_stride``-th batch, at most about ``MAX_EVAL_CLIPS``
        clips), ``recon_mse_clips``, ``perplexity`` and ``used`` (codes used at least once).
    """
    n_clips = clips.shape[0]
    n_batches = math.ceil(n_clips / ENCODE_BATCH)
    eval_stride = max(1, math.ceil(n_batches * ENCODE_BATCH / MAX_EVAL_CLIPS))
    counts = torch.zeros(model.config.codebook_size, dtype=torch.float64)
    sq_err, n_eval, n_eval_clips = 0.0, 0, 0
    for b in range(n_batches):
        lo, hi = b * ENCODE_BATCH, min(n_clips, (b + 1) * ENCODE_BATCH)
        x = VQVAE.preprocess(clips[lo:hi]).to(dev)  # (b, 3, T, H, W)
        codes = model.encode(x)  # (b, t, h, w)
        codes_cpu = codes.cpu()
        counts += torch.bincount(codes_cpu.flatten(),
                                 minlength=model.config.codebook_size).double()
        if b % eval_stride == 0:
            recon = model.decode_codes(codes)  # (b, 3, T, H, W)
            sq_err += float((recon.float() - x).pow(2).sum(dtype=torch.float64))
            n_eval += x.numel()
            n_eval_clips += hi - lo
        codes_out[lo:hi] = codes_cpu.numpy().astype(np.int16)
    p = counts / counts.sum()
    return {
        "recon_mse": sq_err / max(n_eval, 1),
        "recon_mse_clips": n_eval_clips,
        "perplexity": float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())),
        "used": int((counts > 0).sum()),
    }
