"""Tokenizer stage: train the VQ-VAE on the corpus, then tokenise every clip once.

Reads ``frames.h5`` (``clips`` uint8 ``(n_clips, T, H, W, 3)``), writes the checkpoint
``vqvae.pt``, ``tokens.h5`` (``codes`` int16 ``(n_clips, t, h, w)``) and ``summary.json``
(formats in ``docs/formats.md``). The GPT trains from the cached codes, so the VQ-VAE never
runs inside the pretraining loop (see "Cost model" in the design).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict
from typing import Any

import h5py
import numpy as np
import torch

from cortexscale.config import load_schema, section
from cortexscale.data.corpus import FRAMES_EXPECTED
from cortexscale.io.atomic import atomic_path, prepare_outputs, write_json
from cortexscale.io.hdf5 import open_h5
from cortexscale.io.provenance import provenance
from cortexscale.models.vqvae import VQVAE, VQVAEConfig
from cortexscale.train.common import set_seed, setup_device

#: Keys of the ``tokenizer:`` config section.
TOKENIZER_KEYS: tuple[str, ...] = tuple(load_schema()["properties"]["tokenizer"]["properties"])
#: Corpora up to this many bytes of clips are read into memory for training.
IN_MEMORY_BYTES = 1 << 30
#: Clips per batch when tokenising (bounds memory).
ENCODE_BATCH = 64
#: At most this many clips are decoded to measure the final reconstruction MSE.
MAX_EVAL_CLIPS = 2048


def _check_cfg(cfg: dict | None) -> dict:
    """The ``tokenizer`` section, validated against the config schema, with defaults."""
    return section("tokenizer", cfg)


def _open_clips(f: h5py.File, path: str | os.PathLike) -> h5py.Dataset:
    if "clips" not in f:
        raise ValueError(f"{path}: missing dataset 'clips'; found keys {sorted(f.keys())}")
    clips = f["clips"]
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(
            f"{path}: 'clips' must be uint8 (n_clips, T, H, W, 3), found "
            f"{clips.dtype} {clips.shape}"
        )
    if clips.shape[0] == 0:
        raise ValueError(f"{path}: 'clips' is empty (n_clips = 0)")
    return clips


def _check_train_clips(train_clips: Any, n_clips: int, path: str | os.PathLike) -> np.ndarray:
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


class _ClipSampler:
    """Random batches of training clips, from memory (small corpora) or from the HDF5 file."""

    def __init__(self, clips: h5py.Dataset, idx: np.ndarray, rng: np.random.Generator) -> None:
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


def train_tokenizer(
    frames_h5: str | os.PathLike,
    out_ckpt: str | os.PathLike,
    out_tokens: str | os.PathLike,
    out_summary: str | os.PathLike,
    cfg: dict,
    seed: int,
    threads: int = 1,
    device: str = "cpu",
    train_clips: np.ndarray | None = None,
) -> dict:
    """Train the VQ-VAE on ``frames_h5`` and tokenise every clip.

    Parameters
    ----------
    frames_h5 : path
        Corpus with ``clips`` uint8 ``(n_clips, T, H, W, 3)``.
    out_ckpt, out_tokens, out_summary : path
        Where to write ``vqvae.pt``, ``tokens.h5`` and ``summary.json`` (atomically).
    cfg : dict
        The ``tokenizer:`` config section: exactly the keys ``codebook_size, embedding_dim,
        hidden, n_res_layers, downsample, steps, batch_size, lr, commitment, ema_decay``.
    seed : int
        Seeds model initialisation, codebook restarts and batch sampling.
    threads : int
        CPU threads for torch.
    device : str
        ``"cpu"`` or ``"cuda[:N]"``.
    train_clips : int array (n_train,), optional
        Clip indices to train on (default: all clips). Every clip is tokenised regardless.

    Returns
    -------
    summary : dict
        The contents of ``summary.json``.
    """
    t_start = time.perf_counter()
    cfg = _check_cfg(cfg)
    prepare_outputs([out_ckpt, out_tokens, out_summary], "tokenizer")
    dev = setup_device(device, threads)
    set_seed(seed)
    try:
        model_cfg = VQVAEConfig(
            codebook_size=cfg["codebook_size"], embedding_dim=cfg["embedding_dim"],
            hidden=cfg["hidden"], n_res_layers=cfg["n_res_layers"],
            downsample=cfg["downsample"], ema_decay=cfg["ema_decay"],
            commitment=cfg["commitment"],
        )
    except (ValueError, TypeError) as err:
        raise ValueError(f"tokenizer config: {err}") from err
    # plain Python values, so the checkpoint loads with weights_only=True
    model_args = asdict(model_cfg)
    clean_cfg = {k: model_args[k] for k in TOKENIZER_KEYS if k in model_args}
    clean_cfg.update(downsample=list(model_cfg.downsample), steps=int(cfg["steps"]),
                     batch_size=int(cfg["batch_size"]), lr=float(cfg["lr"]))
    steps, bs = int(cfg["steps"]), int(cfg["batch_size"])
    log_every = max(1, math.ceil(steps / 10))

    with open_h5(frames_h5, FRAMES_EXPECTED) as f:
        clips = _open_clips(f, frames_h5)
        n_clips, T, H, W, _ = clips.shape
        try:
            latent = model_cfg.latent_shape((T, H, W))
        except ValueError as err:
            raise ValueError(f"{frames_h5}: {err}") from err
        idx = _check_train_clips(train_clips, n_clips, frames_h5)
        sampler = _ClipSampler(clips, idx, np.random.default_rng(seed))

        # ------------------------------------------------------------ training
        model = VQVAE(model_cfg).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
        model.train()
        t_train = time.perf_counter()
        for step in range(1, steps + 1):
            x = VQVAE.preprocess(sampler.batch(bs)).to(dev)  # (B, 3, T, H, W)
            out = model(x)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            if step % log_every == 0 or step == steps:
                use = model.codebook_usage()
                print(
                    f"tokenizer step {step}/{steps} loss {out['loss'].item():.5f} "
                    f"recon_mse {out['recon_loss'].item():.5f} "
                    f"perplexity {out['perplexity'].item():.1f} "
                    f"codes_used {use['used']}/{model_cfg.codebook_size} "
                    f"restarts {use['restarts']} ({time.perf_counter() - t_train:.1f}s)",
                    file=sys.stderr, flush=True,
                )
        train_time = time.perf_counter() - t_train
        final_train_loss = float(out["loss"].item())
        usage = model.codebook_usage()
        model.eval()
        model.save_checkpoint(out_ckpt, step=steps, seed=int(seed), config=clean_cfg)

        # ------------------------------------------------------------ tokenising
        t_tok = time.perf_counter()
        n_batches = math.ceil(n_clips / ENCODE_BATCH)
        eval_stride = max(1, math.ceil(n_batches * ENCODE_BATCH / MAX_EVAL_CLIPS))
        counts = torch.zeros(model_cfg.codebook_size, dtype=torch.float64)
        sq_err, n_eval, n_eval_clips = 0.0, 0, 0
        prov = provenance(clean_cfg, seed, stage="tokenizer", frames_h5=os.fspath(frames_h5))
        with atomic_path(out_tokens) as tmp, h5py.File(tmp, "w") as g:
            codes_ds = g.create_dataset(
                "codes", shape=(n_clips, *latent), dtype=np.int16,
                chunks=(min(n_clips, ENCODE_BATCH), *latent),
            )
            with torch.no_grad():
                for b in range(n_batches):
                    lo, hi = b * ENCODE_BATCH, min(n_clips, (b + 1) * ENCODE_BATCH)
                    x = VQVAE.preprocess(clips[lo:hi]).to(dev)  # (b, 3, T, H, W)
                    codes = model.encode(x)  # (b, t, h, w)
                    counts += torch.bincount(codes.flatten().cpu(),
                                             minlength=model_cfg.codebook_size).double()
                    if b % eval_stride == 0:
                        recon = model.decode_codes(codes)  # (b, 3, T, H, W)
                        sq_err += float((recon.float() - x).pow(2).sum(dtype=torch.float64))
                        n_eval += x.numel()
                        n_eval_clips += hi - lo
                    codes_ds[lo:hi] = codes.cpu().numpy().astype(np.int16)
            p = counts / counts.sum()
            perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
            used = int((counts > 0).sum())
            g.attrs["codebook_size"] = model_cfg.codebook_size
            g.attrs["downsample"] = np.asarray(model_cfg.downsample, dtype=np.int64)
            g.attrs["perplexity"] = perplexity
            g.attrs["used_codes"] = used
            g.attrs["clip_shape"] = np.asarray([T, H, W], dtype=np.int64)
            for k, v in prov.items():
                g.attrs[k] = v
        tok_time = time.perf_counter() - t_tok

    summary = {
        "recon_mse": sq_err / max(n_eval, 1),
        "recon_mse_clips": n_eval_clips,
        "final_train_loss": final_train_loss,
        "perplexity": perplexity,
        "used_codes": used,
        "codebook_size": model_cfg.codebook_size,
        "ema_used_codes": usage["used"],
        "restarts": usage["restarts"],
        "n_params": model.n_params(),
        "n_clips": int(n_clips),
        "n_train_clips": int(len(idx)),
        "clip_shape": [int(T), int(H), int(W)],
        "latent_shape": list(latent),
        "steps": steps,
        "batch_size": bs,
        "train_time_s": train_time,
        "tokenize_time_s": tok_time,
        "wall_time_s": time.perf_counter() - t_start,
        "device": str(dev),
        "threads": threads,
        **prov,
    }
    write_json(out_summary, summary)
    print(
        f"tokenizer done: recon_mse {summary['recon_mse']:.5f} perplexity {perplexity:.1f} "
        f"used {used}/{model_cfg.codebook_size} codes, {n_clips} clips tokenised, "
        f"wall {summary['wall_time_s']:.1f}s",
        file=sys.stderr, flush=True,
    )
    return summary
