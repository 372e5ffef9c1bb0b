"""Stage 2 (``workflow/rules/tokenizer.smk``): train the VQ-VAE, tokenise the corpus once.

Command: ``tokenizer``. Reads ``frames.h5`` (``clips`` uint8 ``(n_clips, T, H, W, 3)``), trains
with :mod:`cortexscale.train.tokenizer` and writes the checkpoint ``vqvae.pt``, ``tokens.h5``
(``codes`` int16 ``(n_clips, t, h, w)``) and ``summary.json`` (formats in
``docs/formats.md``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cortexscale.config import load_schema, section
from cortexscale.errors import InputError
from cortexscale.logs import get_logger
from cortexscale.stages.common import settings

if TYPE_CHECKING:
    import h5py
    import numpy as np

__all__ = ["cmd_tokenizer", "register", "train_tokenizer"]

log = get_logger(__name__)


def _open_clips(f: h5py.File, path: str | os.PathLike) -> h5py.Dataset:
    import numpy as np

    if "clips" not in f:
        raise InputError(f"{path}: missing dataset 'clips'; found keys {sorted(f.keys())}")
    clips = f["clips"]
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise InputError(
            f"{path}: 'clips' must be uint8 (n_clips, T, H, W, 3), found "
            f"{clips.dtype} {clips.shape}"
        )
    if clips.shape[0] == 0:
        raise InputError(f"{path}: 'clips' is empty (n_clips = 0)")
    return clips


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
    from dataclasses import asdict

    import h5py
    import numpy as np

    from cortexscale.data.corpus import FRAMES_EXPECTED
    from cortexscale.io.atomic import atomic_path, prepare_outputs, write_json
    from cortexscale.io.hdf5 import open_h5
    from cortexscale.io.provenance import provenance
    from cortexscale.models.device import setup_device
    from cortexscale.train.common import set_seed
    from cortexscale.train.tokenizer import (
        ENCODE_BATCH,
        ClipSampler,
        check_train_clips,
        model_config,
        tokenise,
        train_vqvae,
    )

    t_start = time.perf_counter()
    cfg = section("tokenizer", cfg)
    prepare_outputs([out_ckpt, out_tokens, out_summary], "tokenizer")
    dev = setup_device(device, threads)
    set_seed(seed)
    model_cfg = model_config(cfg)
    # plain Python values, so the checkpoint loads with weights_only=True
    model_args = asdict(model_cfg)
    keys = load_schema()["properties"]["tokenizer"]["properties"]
    clean_cfg = {k: model_args[k] for k in keys if k in model_args}
    clean_cfg.update(downsample=list(model_cfg.downsample), steps=int(cfg["steps"]),
                     batch_size=int(cfg["batch_size"]), lr=float(cfg["lr"]))
    steps, bs = int(cfg["steps"]), int(cfg["batch_size"])

    with open_h5(frames_h5, FRAMES_EXPECTED) as f:
        clips = _open_clips(f, frames_h5)
        n_clips, T, H, W, _ = clips.shape
        try:
            latent = model_cfg.latent_shape((T, H, W))
        except ValueError as err:
            raise InputError(f"{frames_h5}: {err}") from err
        idx = check_train_clips(train_clips, n_clips, frames_h5)
        sampler = ClipSampler(clips, idx, np.random.default_rng(seed))
        model, final_train_loss, train_time = train_vqvae(model_cfg, sampler, steps, bs,
                                                          float(cfg["lr"]), dev)
        usage = model.codebook_usage()
        model.save_checkpoint(out_ckpt, step=steps, seed=int(seed), config=clean_cfg)

        t_tok = time.perf_counter()
        prov = provenance(clean_cfg, seed, stage="tokenizer", frames_h5=os.fspath(frames_h5))
        with atomic_path(out_tokens) as tmp, h5py.File(tmp, "w") as g:
            codes_ds = g.create_dataset(
                "codes", shape=(n_clips, *latent), dtype=np.int16,
                chunks=(min(n_clips, ENCODE_BATCH), *latent),
            )
            stats = tokenise(model, clips, codes_ds, dev)
            g.attrs["codebook_size"] = model_cfg.codebook_size
            g.attrs["downsample"] = np.asarray(model_cfg.downsample, dtype=np.int64)
            g.attrs["perplexity"] = stats["perplexity"]
            g.attrs["used_codes"] = stats["used"]
            g.attrs["clip_shape"] = np.asarray([T, H, W], dtype=np.int64)
            for k, v in prov.items():
                g.attrs[k] = v
        tok_time = time.perf_counter() - t_tok

    summary = {
        "recon_mse": stats["recon_mse"],
        "recon_mse_clips": stats["recon_mse_clips"],
        "final_train_loss": final_train_loss,
        "perplexity": stats["perplexity"],
        "used_codes": stats["used"],
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
    log.info(
        f"recon_mse {summary['recon_mse']:.5f} perplexity {stats['perplexity']:.1f} "
        f"used {stats['used']}/{model_cfg.codebook_size} codes, {n_clips} clips tokenised, "
        f"wall {summary['wall_time_s']:.1f}s"
    )
    return summary


def cmd_tokenizer(args: argparse.Namespace) -> None:
    """Train the VQ-VAE on ``--frames`` and tokenise every clip."""
    s = settings(args, ["tokenizer", "seed"])
    train_tokenizer(
        args.frames, args.checkpoint, args.tokens, args.summary, s["tokenizer"],
        seed=s["seed"], threads=args.threads, device=args.device,
    )


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the tokenizer stage's command (``add`` as in :func:`cortexscale.cli.build_parser`)."""
    p = add("tokenizer", cmd_tokenizer, "train the VQ-VAE and tokenise the corpus",
            threads=True, device=True)
    p.add_argument("--frames", required=True, type=Path)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--tokens", required=True, type=Path)
    p.add_argument("--summary", required=True, type=Path)

