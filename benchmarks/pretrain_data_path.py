"""The data path of ``cortexscale pretrain`` at the paper's scale (issue #17).

What a pretraining job does besides its training steps, measured on the code the job runs
(:mod:`cortexscale.train.pretrain` and :mod:`cortexscale.stages.pretrain`, imported, not
copied):

1. **read**: ``read_corpus`` of a ``tokens.h5`` of the paper's shape (6M source frames at time
   stride 4 in 16-frame clips = 93,750 clips, plus the 512 reserved validation clips; 4 x 8 x 8
   = 256 int16 codes per clip; the tokenizer's layout: ``codes`` chunked 64 clips at a time)
   and of its ``frames.h5`` (``source``/``start_frame`` -> each clip's preceding clip);
2. **loader**: ``ClipStream.next`` + ``_batch`` for one micro-batch (the paper's 64 clips,
   conditioned on the preceding clip, and the throughput benchmark's 512 unconditioned), as
   tokens/s against a target of 10x the GPU's training tokens/s; on CUDA also whether the
   per-step index upload blocks the host while the GPU is busy (pageable vs pinned memory);
3. **checkpoint**: one save of the base model (576 hidden, 8 layers, 4 heads, 2048 codes,
   conditioned) with its AdamW state, the dict ``pretrain`` checkpoints, written the way it
   writes it (:func:`cortexscale.io.atomic.atomic_path` + ``torch.save``);
4. **eval**: ``evaluate`` over validation clips with the base model, per clip.

Every timing is repeated (``--repeats``); min and median are printed. Last line:
``RESULT device=<name> read_s=<median> loader_tok_s=<paper micro-batch, median>
loader_vs_target=<x> ckpt_s=<median> ckpt_mb=<size> eval_s_per_clip=<median>``.

Two helper modes serve ``benchmarks/gpu_session.sh``: ``--write-only DIR`` writes the two
files and prints their paths; ``--job-sections STUDY`` prints the ``--sections`` JSON of a
``cortexscale pretrain`` run with the study's ``pretrain:`` section (``--steps``, compile on);
``--project OUT_DIR`` reads a finished job's ``summary.json`` and ``log.tsv`` and projects its
wall time to the study's step count.

Examples::

    python benchmarks/pretrain_data_path.py                      # CPU, ~2 minutes
    python benchmarks/pretrain_data_path.py --device cuda         # on a GPU machine
    python benchmarks/pretrain_data_path.py --write-only /tmp/paper
    python benchmarks/pretrain_data_path.py --project /tmp/paper/job --wall 312.5 --eval-s 0.4
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch

from cortexscale.data.corpus import (
    ORDERS,
    n_clips_for,
    read_subset,
    read_validation,
    subset_order,
    validation_clips,
)
from cortexscale.io.atomic import atomic_path
from cortexscale.models.device import setup_device
from cortexscale.models.gpt import GPT, GPTConfig, flops_per_token
from cortexscale.stages.pretrain import read_corpus
from cortexscale.train.common import rng_state
from cortexscale.train.metrics import device_name
from cortexscale.train.pretrain import (
    BETAS,
    ClipStream,
    _batch,
    evaluate,
    lr_at,
)

#: The paper's corpus and base model (config/studies/ahmadi2024.yaml).
PAPER = {
    "frames": 6_000_000, "clip_len": 16, "time_stride": 4, "height": 128, "width": 128,
    "latent": (4, 8, 8), "codebook_size": 2048, "eval_clips": 512, "batch_size": 64,
    "data_sizes": (10_000, 100_000, 1_000_000, 6_000_000), "hidden": 576, "layers": 8,
    "heads": 4, "steps": 116_000, "eval_every": 2000, "checkpoint_every": 500,
}
#: Best recorded H100 rate of the compiled bf16 training step (docs/benchmarks.md, batch 512
#: unconditioned, 2026-11-23), training tokens/s.
H100_TOKENS_PER_S = 1_651_000
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM (and an H200)
TARGET_MFU = 0.45


def paper_clips() -> int:
    """Clips of the paper's corpus: the 6M-frame training pool plus the validation clips."""
    return n_clips_for(PAPER["frames"], PAPER["clip_len"], PAPER["time_stride"]) \
        + PAPER["eval_clips"]


def write_paper_corpus(folder: str | os.PathLike, n_clips: int | None = None,
                       n_sources: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """Write a ``tokens.h5`` and a ``frames.h5`` of the paper's shape, with random codes.

    ``tokens.h5`` has the tokenizer's layout (``codes`` int16 ``(n_clips, 4, 8, 8)``, chunks of
    64 clips, uncompressed; the tokenizer's attributes). ``frames.h5`` has every dataset and
    attribute that ``cortexscale corpus`` writes (validation, source, start_frame, sources,
    ``pool/{order}``, ``subsets/{order}/{size}``), but its ``clips`` dataset, shaped
    ``(n_clips, 16, 128, 128, 3)``, is left unwritten (HDF5 stores no chunk of it): pretraining
    reads only its shape.

    Parameters
    ----------
    folder : path-like
        Created if needed.
    n_clips : int, optional
        Default :func:`paper_clips` (94,262); smaller for tests (the data sizes that do not
        fit are left out).
    n_sources : int
        Recordings the clips come from (equal lengths); each source's first clip has no
        preceding clip.
    seed : int

    Returns
    -------
    tokens_h5, frames_h5 : Path
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = paper_clips() if n_clips is None else int(n_clips)
    if not 0 < n_sources <= n:
        raise ValueError(f"n_sources: expected 1..{n} (the clips), found {n_sources}")
    per = np.full(n_sources, n // n_sources)
    per[: n % n_sources] += 1
    source = np.repeat(np.arange(n_sources), per).astype(np.int32)
    span = PAPER["clip_len"] * PAPER["time_stride"]
    start = np.concatenate([np.arange(k) * span for k in per]).astype(np.int64)
    rng = np.random.default_rng(seed)
    latent, cb = PAPER["latent"], PAPER["codebook_size"]
    tokens = folder / "tokens.h5"
    with h5py.File(tokens, "w") as g:
        ds = g.create_dataset("codes", shape=(n, *latent), dtype=np.int16,
                              chunks=(min(n, 64), *latent))  # as cortexscale tokenizer
        for lo in range(0, n, 8192):
            hi = min(n, lo + 8192)
            ds[lo:hi] = rng.integers(0, cb, (hi - lo, *latent), dtype=np.int16)
        g.attrs.update({
            "codebook_size": cb, "downsample": np.asarray([4, 16, 16], dtype=np.int64),
            "perplexity": float(cb), "used_codes": cb,
            "clip_shape": np.asarray([PAPER["clip_len"], PAPER["height"], PAPER["width"]],
                                     dtype=np.int64),
        })
    frames = folder / "frames.h5"
    val = validation_clips(source, PAPER["eval_clips"])
    pool = n - val.size
    sizes = [s for s in PAPER["data_sizes"]
             if 0 < n_clips_for(s, PAPER["clip_len"], PAPER["time_stride"]) <= pool]
    with h5py.File(frames, "w") as f:
        shape = (PAPER["clip_len"], PAPER["height"], PAPER["width"], 3)
        f.create_dataset("clips", shape=(n, *shape), maxshape=(None, *shape), dtype=np.uint8,
                         chunks=(1, *shape), compression="gzip")
        f.create_dataset("validation", data=val)
        f.create_dataset("source", data=source)
        f.create_dataset("start_frame", data=start)
        f.create_dataset("sources", data=[f"source{i:03d}" for i in range(n_sources)],
                         dtype=h5py.string_dtype("utf-8"))
        for order in ORDERS:
            index = subset_order(source, order, seed)
            index = index[~np.isin(index, val)]
            f.create_dataset(f"pool/{order}", data=index)
            for size in sizes:
                k = n_clips_for(size, PAPER["clip_len"], PAPER["time_stride"])
                f.create_dataset(f"subsets/{order}/{size}", data=index[:k])
        f.attrs.update({
            "clip_len": PAPER["clip_len"], "height": PAPER["height"], "width": PAPER["width"],
            "fps": 60.0, "time_stride": PAPER["time_stride"],
            "data_sizes": np.asarray(sizes, dtype=np.int64), "eval_clips": PAPER["eval_clips"],
        })
    return tokens, frames


def _times(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] = lambda: None
           ) -> list[float]:
    out = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def _fmt(ts: list[float], unit: float = 1.0, digits: int = 3) -> str:
    return (f"min {min(ts) * unit:.{digits}f} median {statistics.median(ts) * unit:.{digits}f} "
            f"(n={len(ts)})")


def base_config(conditioned: bool = True) -> GPTConfig:
    """The paper's base GPT (conditioned as in config/studies/ahmadi2024.yaml)."""
    return GPTConfig(vocab_size=PAPER["codebook_size"], shape=PAPER["latent"],
                     hidden=PAPER["hidden"], layers=PAPER["layers"], heads=PAPER["heads"],
                     conditioned=conditioned)


def gpu_tokens_per_s(cfg: GPTConfig, mfu: float) -> float:
    """Training tokens/s of ``cfg`` at ``mfu`` of the bf16 peak (predicted tokens)."""
    return mfu * H100_BF16_PEAK / (flops_per_token(cfg) * cfg.context / cfg.n_tokens)


def checkpoint_dict(model: GPT, opt: torch.optim.Optimizer, step: int) -> dict[str, Any]:
    """The dict ``pretrain`` saves (``Run.save``): model, AdamW, schedule, scaler, RNG, loop."""
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    cfg = {"steps": PAPER["steps"], "batch_size": PAPER["batch_size"], "lr": 3e-4,
           "min_lr": 3e-5, "warmup_steps": 2000}
    rows = [{"step": s, "tokens_seen": s * 16384, "train_loss": 7.0, "val_loss": math.nan,
             "lr": lr_at(s, cfg), "tokens_per_s": 8e5, "peak_mem_mb": 1e4}
            for s in range(1160, step + 1, 1160)]  # log rows so far (log_every = steps/100)
    return {
        "model_args": model.config.to_dict(), "model": model.state_dict(),
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(), "rng": rng_state(), "step": step,
        "data_position": step * PAPER["batch_size"], "grid": "d6000000_h576_l8_a4_bf16_s0",
        "precision": "bf16", "order": "corpus", "seed": 0, "pretrain_cfg": cfg,
        "run_args": {"grid": "d6000000_h576_l8_a4_bf16_s0"},
        "loop": {"rows": rows, "val_loss": math.nan, "train_time": 1.0, "skipped": 0,
                 "loss_sum": 0.0, "loss_n": 0, "tok_since": 0, "start": 0},
    }


def model_with_state(dev: torch.device) -> tuple[GPT, torch.optim.AdamW]:
    """The base model and its AdamW after one step (so both moments exist)."""
    torch.manual_seed(0)
    model = GPT(base_config()).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": other, "weight_decay": 0.0}], lr=3e-4, betas=BETAS,
                            fused=dev.type == "cuda" or None)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    opt.zero_grad(set_to_none=True)
    return model, opt


def measure(args: argparse.Namespace) -> int:
    dev = setup_device(args.device, args.threads)
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    name = device_name(dev)
    r = args.repeats
    print(f"device {name}, torch {torch.__version__}, h5py {h5py.__version__} "
          f"(HDF5 {h5py.version.hdf5_version}), threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        tokens, frames = write_paper_corpus(tmp, args.clips)
        print(f"wrote {tokens} ({tokens.stat().st_size / 2**20:.1f} MiB) and {frames} "
              f"({frames.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s",
              flush=True)

        # 1. read ----------------------------------------------------------------------
        def read_codes() -> np.ndarray:
            with h5py.File(tokens, "r") as f:
                return f["codes"][...]

        def evict() -> None:  # drop this file (only) from the page cache: a cold read
            fd = os.open(tokens, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

        def read_cold() -> None:
            evict()
            t = time.perf_counter()
            read_codes()
            cold.append(time.perf_counter() - t)

        cold: list[float] = []
        for _ in range(r):
            read_cold()
        t_codes = _times(read_codes, r)
        t_read = _times(lambda: read_corpus(tokens, frames), r)
        codes_np, _, prev_np = read_corpus(tokens, frames)
        n = codes_np.shape[0]
        print(f"read: {n} clips x {codes_np[0].size} codes ({codes_np.nbytes / 1e6:.1f} MB)",
              flush=True)
        print(f"  h5py codes[...] alone      s: {_fmt(t_codes)}  "
              f"({codes_np.nbytes / 1e6 / statistics.median(t_codes):.0f} MB/s)", flush=True)
        print(f"  h5py codes[...], cold      s: {_fmt(cold)}  (page cache dropped for the "
              f"file: {codes_np.nbytes / 1e6 / statistics.median(cold):.0f} MB/s)", flush=True)
        print(f"  read_corpus (codes+prev)   s: {_fmt(t_read)}", flush=True)
        if cuda:
            t_up = _times(lambda: torch.from_numpy(codes_np).to(dev), r, sync)
            print(f"  codes to the device        s: {_fmt(t_up)}", flush=True)

        # 2. loader --------------------------------------------------------------------
        codes = torch.from_numpy(codes_np).to(dev)
        prev = torch.from_numpy(prev_np).to(dev)
        train = read_subset(frames, 0, "corpus")  # the training pool, as the job's d6000000
        cases = [("paper", PAPER["batch_size"], True), ("benchmark", 512, False)]
        loader = {}
        # one torch thread, as a loader thread would have: on a loaded 2-core VM, two
        # intra-op threads stalled the gather (20+ ms for 512 clips instead of 0.4 ms)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        for label, micro, cond in cases:
            stream = ClipStream(train, seed=0)
            k = max(1, args.loader_clips // micro)  # micro-batches per window

            def window(stream=stream, micro=micro, cond=cond, k=k) -> None:
                for _ in range(k):
                    x, c = _batch(codes, prev, stream.next(micro), cond)

            def indices(stream=stream, micro=micro, k=k) -> None:
                for _ in range(k):
                    stream.next(micro)

            window()  # warm-up
            t_all = [t / k for t in _times(window, r, sync)]
            t_idx = [t / k for t in _times(indices, r)]
            tok = micro * codes_np[0].size
            cfg = base_config(cond)
            rec = H100_TOKENS_PER_S * (1.0 if not cond else
                                       gpu_tokens_per_s(cfg, 1) / gpu_tokens_per_s(
                                           base_config(False), 1))
            at45 = gpu_tokens_per_s(cfg, TARGET_MFU)
            loader[label] = tok / statistics.median(t_all)
            print(f"loader [{label}: micro-batch {micro} clips, conditioned {cond}] on {dev}, "
                  "1 torch thread", flush=True)
            print(f"  ClipStream.next + _batch  ms: {_fmt(t_all, 1e3)}  -> "
                  f"{tok / statistics.median(t_all) / 1e6:.1f} M tokens/s (best "
                  f"{tok / min(t_all) / 1e6:.1f} M)", flush=True)
            print(f"  ClipStream.next alone     ms: {_fmt(t_idx, 1e3)}  -> "
                  f"{tok / statistics.median(t_idx) / 1e6:.1f} M tokens/s", flush=True)
            print(f"  target 10x GPU: {10 * rec / 1e6:.1f} M tokens/s at the recorded H100 "
                  f"rate ({rec / 1e6:.2f} M), {10 * at45 / 1e6:.1f} M at {TARGET_MFU:.0%} MFU "
                  f"({at45 / 1e6:.2f} M); headroom {tok / statistics.median(t_all) / rec:.1f}x "
                  f"and {tok / statistics.median(t_all) / at45:.1f}x", flush=True)
        torch.set_num_threads(threads)
        head_paper = loader["paper"] / gpu_tokens_per_s(base_config(True), TARGET_MFU)
        if cuda:
            blocking_checks(codes, prev, train, dev, r)

        # 3. checkpoint ----------------------------------------------------------------
        model, opt = model_with_state(dev)
        ckpt = checkpoint_dict(model, opt, step=58_000)
        path = Path(tmp) / "checkpoint.pt"

        def save() -> None:
            with atomic_path(path) as t:
                torch.save(ckpt, t)

        def save_mem() -> None:
            torch.save(ckpt, io.BytesIO())

        t_mem = _times(save_mem, r, sync)
        t_save = _times(save, r, sync)
        mb = path.stat().st_size / 1e6
        print(f"checkpoint: base model {sum(p.numel() for p in model.parameters()):,} params + "
              f"AdamW, {mb:.0f} MB, to {path.parent}", flush=True)
        print(f"  torch.save to memory       s: {_fmt(t_mem)}", flush=True)
        print(f"  atomic_path + torch.save   s: {_fmt(t_save)}  "
              f"({mb / statistics.median(t_save):.0f} MB/s)", flush=True)
        n_ckpt = PAPER["steps"] // PAPER["checkpoint_every"] - 1
        print(f"  the paper's job saves {n_ckpt} checkpoints + model.pt: "
              f"{(n_ckpt + 1) * statistics.median(t_save) / 60:.1f} min at this rate", flush=True)

        # 4. eval ----------------------------------------------------------------------
        m_eval = read_validation(frames)[: args.eval_clips]
        prec = "bf16" if cuda else "fp32"
        bs = min(PAPER["batch_size"], m_eval.size)
        evaluate(model, codes, prev, m_eval[:bs], bs, True, prec, dev)  # warm-up
        t_eval = _times(lambda: evaluate(model, codes, prev, m_eval, bs, True, prec, dev), r,
                        sync)
        per = [t / m_eval.size for t in t_eval]
        fwd = flops_per_token(base_config()) / 3 * base_config().context  # per clip
        print(f"eval: {m_eval.size} clips, batch {bs}, {prec}, eager (as pretrain's evaluate)",
              flush=True)
        print(f"  per clip                  ms: {_fmt(per, 1e3, 2)}  "
              f"({fwd / statistics.median(per) / 1e9:.0f} GFLOP/s)", flush=True)
        n_eval = math.ceil(PAPER["steps"] / PAPER["eval_every"])
        print(f"  one eval of {PAPER['eval_clips']} clips: "
              f"{PAPER['eval_clips'] * statistics.median(per):.2f} s; the paper's job runs "
              f"{n_eval}: {n_eval * PAPER['eval_clips'] * statistics.median(per) / 60:.2f} min "
              f"at this rate ({PAPER['eval_clips'] * fwd / 1e12:.1f} TFLOP each)", flush=True)
    print(f"RESULT device={name.replace(' ', '_')} read_s={statistics.median(t_read):.3f} "
          f"loader_tok_s={loader['paper']:.3g} loader_vs_target={head_paper / 10:.2f} "
          f"ckpt_s={statistics.median(t_save):.3f} ckpt_mb={mb:.0f} "
          f"eval_s_per_clip={statistics.median(per):.4g}")
    return 0


def blocking_checks(codes: torch.Tensor, prev: torch.Tensor, train: np.ndarray,
                    dev: torch.device, repeats: int) -> None:
    """How long the host waits in the per-step data calls while the GPU is busy.

    ``pretrain`` uploads each micro-batch's indices with ``torch.from_numpy(idx).to(dev)``
    from pageable memory; CUDA performs a stream synchronisation before such a copy, which
    stops the host from queueing the next step while the GPU still runs this one. Here the
    GPU is given ~``busy`` ms of matmuls, then the host times each call.
    """
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize(dev)
    per_mm = (time.perf_counter() - t0) / 20
    k = max(1, int(0.2 / per_mm))  # ~200 ms of queued GPU work
    idx = ClipStream(train, seed=1).next(PAPER["batch_size"])
    pinned = torch.from_numpy(idx).pin_memory()

    def host_wait(call: Callable[[], Any]) -> float:
        torch.cuda.synchronize(dev)
        for _ in range(k):
            a @ a
        t0 = time.perf_counter()
        call()
        t = time.perf_counter() - t0
        torch.cuda.synchronize(dev)
        return t

    i_dev = torch.from_numpy(idx).to(dev)  # e.g. a slice of an epoch permutation on the device

    def gather_mask() -> None:  # _batch's body from device-held indices
        p = prev[i_dev]
        c = codes[p.clamp(min=0)].long()
        c[p < 0] = -1

    def gather_where() -> None:  # the same without boolean-mask assignment
        p = prev[i_dev]
        torch.where((p < 0)[:, None, None, None], -1, codes[p.clamp(min=0)].long())

    busy = k * per_mm
    calls = {
        "idx upload, pageable (pretrain today)": lambda: torch.from_numpy(idx).to(dev),
        "idx upload, pinned + non_blocking": lambda: pinned.to(dev, non_blocking=True),
        "_batch (upload + gather), conditioned": lambda: _batch(codes, prev, idx, True),
        "device indices, gather + c[p < 0] = -1": gather_mask,
        "device indices, gather + torch.where": gather_where,
    }
    print(f"host blocking while the GPU runs {busy * 1e3:.0f} ms of queued matmuls:",
          flush=True)
    for label, call in calls.items():
        ts = [host_wait(call) for _ in range(repeats)]
        verdict = "BLOCKS (waits for the GPU)" if statistics.median(ts) > 0.5 * busy \
            else "does not block"
        print(f"  {label:<40} host ms: {_fmt(ts, 1e3, 2)}  {verdict}", flush=True)


def project(out_dir: Path, wall_s: float, eval_s: float | None, target_steps: int,
            eval_every: int | None = None) -> dict[str, float]:
    """Project a finished ``cortexscale pretrain`` job's wall time to ``target_steps``.

    ``projected = wall + (target_steps - steps) x steady_step_s + (evals(target) - evals run)
    x eval_s``. ``steady_step_s`` is the time per step over the log windows past the first
    quarter of the run (after compilation; the windows include the checkpoint saves at their
    rate and exclude the evaluations); ``wall`` is the job's whole wall time (start-up,
    reading, compilation, evaluations, checkpoints and the final save included).

    Parameters
    ----------
    out_dir : Path
        The job's ``--out-dir`` (``summary.json``, ``log.tsv``).
    wall_s : float
        Seconds the whole ``cortexscale pretrain`` command took.
    eval_s : float, optional
        Seconds of one evaluation; default: ``(wall_time_s - train_time_s) / evals run`` from
        ``summary.json``, an upper bound (it also holds start-up and the final save).
    target_steps : int
    eval_every : int, optional
        ``pretrain.eval_every`` of the full job (default the study's, 2000).

    Returns
    -------
    dict with ``steps``, ``steady_step_s``, ``eval_s``, ``projected_s``, ``projected_min``,
    ``tokens_per_s`` (steady), ``target_tokens``.
    """
    summary = json.loads((out_dir / "summary.json").read_text())
    log = pd.read_csv(out_dir / "log.tsv", sep="\t")
    for key in ("step", "tokens_seen", "tokens_per_s", "val_loss"):
        if key not in log:
            raise ValueError(f"{out_dir / 'log.tsv'}: no column {key!r}; found {list(log)}")
    steps = int(summary["steps"])
    d_tok = log["tokens_seen"].diff().fillna(log["tokens_seen"].iloc[0])
    d_step = log["step"].diff().fillna(log["step"].iloc[0])
    secs = d_tok / log["tokens_per_s"]
    late = log["step"] > steps / 4
    if late.sum() < 2:
        raise ValueError(f"{out_dir / 'log.tsv'}: fewer than 2 log windows past step "
                         f"{steps / 4:g}; run more steps")
    steady = float(secs[late].sum() / d_step[late].sum())
    evals_run = int(np.isfinite(log["val_loss"]).sum())
    if eval_s is None:
        eval_s = (float(summary["wall_time_s"]) - float(summary["train_time_s"])) \
            / max(1, evals_run)
    every = eval_every or PAPER["eval_every"]
    evals_target = math.ceil(target_steps / every)
    projected = wall_s + (target_steps - steps) * steady + (evals_target - evals_run) * eval_s
    tok_per_step = float(log["tokens_seen"].iloc[-1]) / float(log["step"].iloc[-1])
    return {"steps": steps, "steady_step_s": steady, "eval_s": eval_s,
            "evals_run": evals_run, "evals_target": evals_target, "projected_s": projected,
            "projected_min": projected / 60, "tokens_per_s": tok_per_step / steady,
            "target_tokens": tok_per_step * target_steps}


def job_sections(study: Path, steps: int, compile_: bool = True,
                 **overrides: int | None) -> str:
    """``--sections`` JSON: the study's pretrain/corpus/seed, ``steps`` steps, compiled.

    ``overrides`` (``eval_every``, ``checkpoint_every``) replace the study's where not None.
    """
    from cortexscale.config import load_config

    cfg = load_config(study)
    pre = {**cfg["pretrain"], "steps": int(steps), "compile": bool(compile_),
           **{k: int(v) for k, v in overrides.items() if v is not None}}
    corpus = {"source": "synthetic", "subset_order": cfg["corpus"]["subset_order"]}
    return json.dumps({"pretrain": pre, "corpus": corpus, "seed": cfg.get("seed", 0)})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clips", type=int, default=None,
                    help=f"clips in the corpus (default the paper's, {paper_clips()})")
    ap.add_argument("--loader-clips", type=int, default=16384,
                    help="clips drawn per timed loader window (default 16384)")
    ap.add_argument("--eval-clips", type=int, default=None,
                    help="validation clips per timed eval (default 4 on CPU, 512 on CUDA)")
    ap.add_argument("--workdir", default=None, help="folder of the temporary files")
    ap.add_argument("--write-only", type=Path, metavar="DIR",
                    help="write tokens.h5 and frames.h5 of the paper's shape into DIR and stop")
    ap.add_argument("--job-sections", type=Path, metavar="STUDY",
                    help="print the --sections JSON of a pretrain job with STUDY's settings")
    ap.add_argument("--steps", type=int, default=3000, help="steps of --job-sections")
    ap.add_argument("--eval-every", type=int, default=None,
                    help="--job-sections: replace the study's pretrain.eval_every")
    ap.add_argument("--checkpoint-every", type=int, default=None,
                    help="--job-sections: replace the study's pretrain.checkpoint_every")
    ap.add_argument("--no-compile", action="store_true", help="--job-sections: compile off")
    ap.add_argument("--project", type=Path, metavar="OUT_DIR",
                    help="project a finished job's wall time to --target-steps")
    ap.add_argument("--wall", type=float, help="--project: the job's wall seconds")
    ap.add_argument("--eval-s", type=float, default=None,
                    help="--project: seconds per evaluation (default: an upper bound)")
    ap.add_argument("--target-steps", type=int, default=PAPER["steps"],
                    help=f"--project: steps of the full job (default {PAPER['steps']})")
    ap.add_argument("--target-eval-every", type=int, default=PAPER["eval_every"],
                    help="--project: pretrain.eval_every of the full job (default "
                         f"{PAPER['eval_every']})")
    args = ap.parse_args(argv)
    if args.write_only is not None:
        for p in write_paper_corpus(args.write_only, args.clips):
            print(p)
        return 0
    if args.job_sections is not None:
        print(job_sections(args.job_sections, args.steps, not args.no_compile,
                           eval_every=args.eval_every, checkpoint_every=args.checkpoint_every))
        return 0
    if args.project is not None:
        if args.wall is None:
            ap.error("--project needs --wall SECONDS")
        p = project(args.project, args.wall, args.eval_s, args.target_steps,
                    args.target_eval_every)
        print(f"job: {p['steps']} steps in {args.wall:.1f} s; steady {p['steady_step_s'] * 1e3:.2f}"
              f" ms/step ({p['tokens_per_s'] / 1e6:.3f} M training tokens/s, checkpoints "
              f"included), {p['evals_run']} evals, {p['eval_s']:.2f} s each", flush=True)
        print(f"projected to {args.target_steps} steps ({p['target_tokens']:.3g} tokens, "
              f"{p['evals_target']} evals): {p['projected_s']:.0f} s = "
              f"{p['projected_min']:.1f} min")
        print(f"RESULT budget_minutes={p['projected_min']:.1f} "
              f"steady_tokens_per_s={p['tokens_per_s']:.4g}")
        return 0
    if args.eval_clips is None:
        args.eval_clips = 512 if args.device.startswith("cuda") else 4
    if min(args.repeats, args.loader_clips, args.eval_clips) < 1:
        ap.error("--repeats, --loader-clips and --eval-clips must be >= 1")
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
