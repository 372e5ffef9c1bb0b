"""Pretrain the GPT of one grid point on the cached VQ-VAE codes of a data-size subset.

The VQ-VAE never runs here: every clip was tokenised once into ``tokens.h5`` (see
DESIGN.md, "Cost model"). One call trains one grid point and writes, atomically,
``model.pt``, ``log.tsv`` and ``summary.json`` into ``out_dir`` (docs/formats.md).

Choices worth knowing:

- **Validation clips.** ``frames.h5/validation``: ``eval_clips`` clips reserved by the corpus
  stage before any subset was drawn, evenly from every source
  (:func:`cortexscale.data.corpus.validation_clips`). Every grid point, whatever its data
  size, is scored on the same clips, none of which any point trains on, and each trains on
  all the clips of its subset (``val_from`` = ``"reserved"`` in ``summary.json``).
- **Training length.** ``pretrain.steps``, unless the grid point asks for a FLOP budget
  (isoflop) or a token count (``grid.tokens``): then :func:`cortexscale.grid.steps_for`,
  rounded to the nearest whole step; ``summary.json`` reports the steps, tokens and FLOPs
  actually trained.
- **Seeds.** The run's seed is :func:`cortexscale.grid.training_seed` of the study seed and
  the point's replicate seed: it seeds initialisation, dropout and the data order.
- **Data order.** Epoch ``e`` visits the training clips in the permutation drawn from
  ``numpy.random.default_rng([train_seed, e])``; the position in the stream
  (``data_position``, clips consumed) is all a resume needs to continue it exactly.
- **Conditioning.** A conditioned model sees the codes of the clip that precedes each clip
  in its source (same source, ``start_frame`` one clip earlier), looked up in the whole
  corpus; a clip without one (a source's first clip) gets an empty condition (codes ``-1``,
  see :class:`cortexscale.models.gpt.GPT`).
- **Memory.** The codes of the whole corpus are held on the device as int16 (the paper's 6M
  frames: about 94k clips x 256 tokens, 48 MB); batches are gathered there, with no
  host-to-device copy per step.
- **Precision.** ``fp32``; ``bf16``/``fp16`` autocast (:func:`~cortexscale.train.common.
  autocast_context`), with a gradient scaler that is a no-op unless fp16 on CUDA.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cortexscale.config import load_schema, section
from cortexscale.data.corpus import FRAMES_EXPECTED, read_subset, read_validation
from cortexscale.grid import GridPoint, steps_for, training_seed
from cortexscale.io.atomic import atomic_path, prepare_outputs, write_json, write_tsv
from cortexscale.io.checkpoint import load_checkpoint
from cortexscale.io.hdf5 import open_h5
from cortexscale.io.provenance import provenance
from cortexscale.models.gpt import GPT, GPTConfig, count_params, flops_per_token, residual_dtype
from cortexscale.train import ddp
from cortexscale.train.common import (
    autocast_context,
    grad_scaler,
    peak_memory_mb,
    reset_peak_memory,
    rng_state,
    set_rng_state,
    set_seed,
    setup_device,
)
from cortexscale.train.metrics import device_name, mfu
from cortexscale.train.resume import (
    EXIT_REQUEUE,
    Interrupted,
    StopSignals,
    TrainingError,
    check_compatible,
)

__all__ = ["CFG_KEYS", "LOG_COLUMNS", "check_cfg", "pretrain"]

#: Keys of the config's ``pretrain:`` section.
CFG_KEYS: tuple[str, ...] = tuple(load_schema()["properties"]["pretrain"]["properties"])
LOG_COLUMNS = ("step", "tokens_seen", "train_loss", "val_loss", "lr", "tokens_per_s", "peak_mem_mb")
GRAD_CLIP = 1.0  # max global gradient norm (nanoGPT's default)
BETAS = (0.9, 0.95)
ORDERS = ("corpus", "stratified")
#: Resumable checkpoint in ``out_dir`` (removed when the run completes; model.pt remains).
CHECKPOINT = "checkpoint.pt"


def check_cfg(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the ``pretrain:`` config section and return it with defaults filled.

    The schema checks each key; this adds what it cannot express across keys.

    Raises
    ------
    ValueError
        Naming the key, what was expected and what was found.
    """
    cfg = section("pretrain", cfg)
    if cfg["batch_size"] % cfg["grad_accum"]:
        raise ValueError(
            f"pretrain.batch_size ({cfg['batch_size']}) must be a multiple of "
            f"pretrain.grad_accum ({cfg['grad_accum']})"
        )
    if not 0 < cfg["min_lr"] <= cfg["lr"]:
        raise ValueError(
            f"pretrain.min_lr: expected 0 < min_lr <= lr ({cfg['lr']}), found {cfg['min_lr']!r}"
        )
    return cfg


def lr_at(step: int, cfg: dict[str, Any]) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, cosine to min_lr."""
    lr, min_lr, warmup, steps = cfg["lr"], cfg["min_lr"], cfg["warmup_steps"], cfg["steps"]
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def _read_corpus(tokens_h5: Path, frames_h5: Path) -> tuple[np.ndarray, int, np.ndarray]:
    """Load the codes and, per clip, the index of the clip before it in its source.

    Returns
    -------
    codes : int16 (n_clips, t, h, w)
    codebook_size : int
    prev : int64 (n_clips,)
        Index of the preceding clip of the same source, ``-1`` where there is none.
    """
    with open_h5(tokens_h5, "the tokenizer's tokens.h5 (cortexscale tokenizer)") as f:
        if "codes" not in f:
            raise ValueError(f"{tokens_h5}: no dataset 'codes'; found keys {sorted(f)}")
        if "codebook_size" not in f.attrs:
            raise ValueError(f"{tokens_h5}: root attribute 'codebook_size' is missing")
        codes = f["codes"][...]  # (n_clips, t, h, w)
        codebook_size = int(f.attrs["codebook_size"])
    if codes.ndim != 4 or codes.dtype.kind not in "iu":
        raise ValueError(
            f"{tokens_h5}/codes: expected integer (n_clips, t, h, w), "
            f"found {codes.dtype} {codes.shape}"
        )
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(
            f"{tokens_h5}/codes: expected values in [0, {codebook_size}) (codebook_size), "
            f"found [{codes.min()}, {codes.max()}]"
        )
    with open_h5(frames_h5, FRAMES_EXPECTED) as f:
        for key in ("clips", "source", "start_frame"):
            if key not in f:
                raise ValueError(f"{frames_h5}: no dataset {key!r}; found keys {sorted(f)}")
        n_frames_clips = f["clips"].shape[0]
        source = f["source"][...]
        start = f["start_frame"][...]
        step = int(f.attrs["clip_len"]) * int(f.attrs.get("time_stride", 1))
    if n_frames_clips != codes.shape[0]:
        raise ValueError(
            f"{tokens_h5}/codes has {codes.shape[0]} clips but {frames_h5}/clips has "
            f"{n_frames_clips}; the tokens must be computed from this corpus"
        )
    where = {(int(s), int(b)): i for i, (s, b) in enumerate(zip(source, start, strict=True))}
    prev = np.array(
        [where.get((int(s), int(b) - step), -1) for s, b in zip(source, start, strict=True)],
        dtype=np.int64,
    )
    return codes, codebook_size, prev


def split_clips(
    frames_h5: Path, subset: np.ndarray, order: str, eval_clips: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """The training clips (the whole subset) and the corpus's reserved validation clips.

    Returns
    -------
    train : int64 (n_train,)
        Training clip indices: ``subset``, in subset order.
    val : int64 (eval_clips,)
        Validation clip indices (``frames.h5/validation``), sorted.
    val_from : str
        ``"reserved"``.

    Raises
    ------
    ValueError
        If the file reserves another number of clips than ``eval_clips`` (the corpus was
        built for another ``pretrain.eval_clips``), or a validation clip lies in ``subset``.
    """
    del order  # the reserve is the same for both orders
    val = read_validation(frames_h5)
    if val.size != eval_clips:
        raise ValueError(
            f"pretrain.eval_clips is {eval_clips} but {frames_h5} reserves {val.size} "
            "validation clips; rebuild the corpus with the same pretrain.eval_clips "
            "(`cortexscale corpus`)"
        )
    overlap = np.intersect1d(subset, val)
    if overlap.size:
        raise ValueError(
            f"{frames_h5}: {overlap.size} validation clip(s) (e.g. clip {int(overlap[0])}) lie "
            "in the training subset; the file is inconsistent, rebuild it with "
            "`cortexscale corpus`"
        )
    if subset.size == 0:
        raise ValueError(f"{frames_h5}: the training subset is empty")
    return subset, val, "reserved"


class ClipStream:
    """Endless, seeded stream of training-clip batches, resumable from a position.

    Epoch ``e`` visits ``clips`` in ``default_rng([seed, e]).permutation``; ``position`` counts
    the clips consumed so far (the checkpoint's ``data_position``).
    """

    def __init__(self, clips: np.ndarray, seed: int, position: int = 0) -> None:
        self.clips, self.seed, self.position = clips, seed, int(position)
        self._epoch, self._perm = -1, clips

    def next(self, n: int) -> np.ndarray:
        out = []
        while len(out) < n:
            epoch, offset = divmod(self.position, self.clips.size)
            if epoch != self._epoch:
                rng = np.random.default_rng([self.seed, epoch])
                self._epoch, self._perm = epoch, self.clips[rng.permutation(self.clips.size)]
            take = min(n - len(out), self.clips.size - offset)
            out.extend(self._perm[offset : offset + take].tolist())
            self.position += take
        return np.asarray(out, dtype=np.int64)


def _batch(
    codes: torch.Tensor, prev: torch.Tensor, idx: np.ndarray, conditioned: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gather clips ``idx`` (and their conditions) as int64, on the device of ``codes``."""
    i = torch.from_numpy(idx).to(codes.device)  # (B,)
    x = codes[i].long()  # (B, t, h, w)
    if not conditioned:
        return x, None
    p = prev[i]  # (B,)
    c = codes[p.clamp(min=0)].long()  # (B, t, h, w)
    c[p < 0] = -1  # no preceding clip: empty condition
    return x, c


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    codes: torch.Tensor,
    prev: torch.Tensor,
    val: np.ndarray,
    batch_size: int,
    conditioned: bool,
    precision: str,
    device: torch.device,
) -> float:
    """Mean cross-entropy per token over the validation clips."""
    model.eval()
    total, n = 0.0, 0
    for s in range(0, val.size, batch_size):
        idx = val[s : s + batch_size]
        x, c = _batch(codes, prev, idx, conditioned)
        with autocast_context(precision, device):
            _, loss = model(x, c)
        total += float(loss) * idx.size
        n += idx.size
    model.train()
    return total / n


def _native_cpu_half(precision: str) -> bool:
    """Whether oneDNN has native CPU kernels for ``bf16``/``fp16`` (AVX512-BF16, AMX...)."""
    try:
        ops = torch.ops.mkldnn
        check = ops._is_mkldnn_bf16_supported if precision == "bf16" \
            else ops._is_mkldnn_fp16_supported
        return bool(check())
    except (AttributeError, RuntimeError):  # private API: assume the best if it moved
        return True


def _optimizer(model: GPT, cfg: dict[str, Any], device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embedding tables only (nanoGPT)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": float(cfg["weight_decay"])},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=float(cfg["lr"]), betas=BETAS, fused=device.type == "cuda" or None
    )


def pretrain(
    tokens_h5: str | os.PathLike,
    frames_h5: str | os.PathLike,
    point: GridPoint,
    order: str,
    cfg: dict[str, Any],
    out_dir: str | os.PathLike,
    seed: int,
    threads: int = 1,
    device: str = "cpu",
    on_step: Callable[[int], None] | None = None,
    single_epoch: bool = False,
) -> dict[str, Any]:
    """Train the GPT of one grid point and write ``model.pt``, ``log.tsv``, ``summary.json``.

    Parameters
    ----------
    tokens_h5 : path-like
        ``tokens.h5``: ``codes`` int16 (n_clips, t, h, w) and attr ``codebook_size``.
    frames_h5 : path-like
        ``frames.h5`` of the same corpus: subsets, ``source``, ``start_frame``, attrs.
    point : GridPoint
        Data size (source frames; 0: the whole training pool), hidden, layers, heads,
        precision, replicate seed, and the budget or tokens that set the steps (if any).
    order : {"corpus", "stratified"}
        Which nested subsets to train on.
    cfg : dict
        The config's ``pretrain:`` section (see :data:`CFG_KEYS`).
    out_dir : path-like
        Folder of the outputs (created).
    seed : int
        The study seed; with ``point.seed`` it gives the run's seed
        (:func:`cortexscale.grid.training_seed`), which seeds initialisation, dropout and the
        data order.
    threads : int
        CPU threads for torch.
    device : str
        ``"cpu"`` or ``"cuda[:N]"``; under torchrun (``WORLD_SIZE`` > 1) each process uses
        ``cuda:LOCAL_RANK`` when ``device`` is ``"cuda"``, and gloo on the CPU.
    on_step : callable, optional
        Called with the number of completed steps after each step (tests, progress hooks).
    single_epoch : bool
        ``grid.single_epoch``: refuse a run that would see more clips than it trains on
        (``steps x batch_size > train clips``), before any step.

    Returns
    -------
    summary : dict
        The content of ``summary.json``.

    Raises
    ------
    Interrupted
        ``SystemExit(75)`` after SIGTERM/SIGUSR2: the step in flight finished and
        ``out_dir/checkpoint.pt`` holds the state; the same call resumes it bit-exactly.
    TrainingError
        NaN loss (naming the step), out of memory (naming a micro-batch to try), or a
        ``checkpoint.pt`` made for another configuration (naming what differs).
    """
    t0 = time.perf_counter()
    cfg = check_cfg(cfg)
    if not isinstance(point, GridPoint):
        raise ValueError(f"point: expected a cortexscale.grid.GridPoint, found {point!r}")
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {list(ORDERS)}, found {order!r}")
    tokens_h5, frames_h5, out_dir = Path(tokens_h5), Path(frames_h5), Path(out_dir)
    for path in (tokens_h5, frames_h5):
        if not path.is_file():
            raise FileNotFoundError(f"pretrain input not found: {path}")
    # before any work (and before any rank can write): writable, no stale temporaries
    prepare_outputs([out_dir / n for n in (CHECKPOINT, "model.pt", "log.tsv", "summary.json")],
                    "pretrain")
    dist_info = ddp.setup(device)
    rank, world = dist_info.rank, dist_info.world
    dev = setup_device(dist_info.device, threads)
    train_seed = training_seed(seed, point.seed)
    set_seed(train_seed)
    name = point.name
    if cfg["batch_size"] % (cfg["grad_accum"] * world):
        raise ValueError(
            f"pretrain.batch_size ({cfg['batch_size']}) must be a multiple of grad_accum "
            f"({cfg['grad_accum']}) x processes ({world})"
        )

    codes_np, codebook_size, prev_np = _read_corpus(tokens_h5, frames_h5)
    subset = read_subset(frames_h5, point.data_size, order)
    train_idx, val_idx, val_from = split_clips(frames_h5, subset, order, cfg["eval_clips"])
    codes = torch.from_numpy(codes_np).to(dev)  # (n_clips, t, h, w) int16, on the device
    prev = torch.from_numpy(prev_np).to(dev)  # (n_clips,)

    mcfg = GPTConfig(
        vocab_size=codebook_size,
        shape=tuple(codes_np.shape[1:]),
        hidden=point.hidden,
        layers=point.layers,
        heads=point.heads,
        dropout=float(cfg["dropout"]),
        conditioned=cfg["conditioned"],
        residual=residual_dtype(cfg.get("residual", "auto"), point.precision),
    )
    fpt = flops_per_token(mcfg)
    steps = steps_for(point, fpt, mcfg.context, mcfg.n_tokens, cfg["batch_size"], cfg["steps"])
    if steps < 1:
        raise ValueError(
            f"[pretrain {name}] " + (f"budget {point.budget:g} FLOPs" if point.budget else
                                     f"{point.tokens} tokens")
            + f" buys less than half a step (one step: {cfg['batch_size']} clips x "
            f"{mcfg.context} positions x {fpt:,} FLOPs); expected at least one step"
        )
    if single_epoch and steps * cfg["batch_size"] > train_idx.size:
        raise ValueError(
            f"[pretrain {name}] grid.single_epoch: {steps} steps x {cfg['batch_size']} clips "
            f"= {steps * cfg['batch_size']} clips but the training data holds "
            f"{train_idx.size}; lower the budget or tokens, or enlarge the corpus"
        )
    cfg = {**cfg, "steps": steps}  # the schedule and the checkpoint see the steps trained
    model = GPT(mcfg).to(dev)
    opt = _optimizer(model, cfg, dev)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg) / cfg["lr"])
    scaler = grad_scaler(point.precision, dev)
    stream = ClipStream(train_idx, train_seed)
    # what a checkpoint must match to resume this run (checkpoint_every may change)
    run_args = {**mcfg.to_dict(), "grid": name, "precision": point.precision, "order": order,
                "seed": int(train_seed), "world_size": world,
                **{f"pretrain.{k}": v for k, v in cfg.items() if k != "checkpoint_every"}}

    steps, accum = cfg["steps"], cfg["grad_accum"]
    micro_global = cfg["batch_size"] // accum  # clips per micro-step, all processes
    micro = micro_global // world  # clips per micro-step of this process
    n_tok = mcfg.n_tokens
    tokens_per_step = cfg["batch_size"] * n_tok
    log_every = max(1, steps // 100)
    report_every = max(1, steps // 10)
    ckpt_every = cfg["checkpoint_every"]
    state = {"rows": [], "val_loss": float("nan"), "train_time": 0.0, "skipped": 0,
             "loss_sum": 0.0, "loss_n": 0, "tok_since": 0, "start": 0}
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path, "the checkpoint of an interrupted run (delete it to "
                             "start afresh)", dev)
        check_compatible(ck.get("run_args", {}), run_args, ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        stream.position = int(ck["data_position"])
        state.update(ck["loop"])
        state["start"] = int(ck["step"])
        if rank == 0:
            print(f"[pretrain {name}] resuming from {ckpt_path} at step {state['start']}",
                  file=sys.stderr)
    fwd = torch.compile(model) if cfg["compile"] else model
    if world > 1:
        fwd = ddp.wrap(fwd, dev)
    loss_sum = torch.tensor(state["loss_sum"], device=dev)
    bad_step = torch.tensor(-1, device=dev)  # first step with a non-finite loss (no sync)
    skipped = torch.zeros((), dtype=torch.long, device=dev)  # fp16 steps the scaler skipped
    loss_n, tok_since = state["loss_n"], state["tok_since"]
    reset_peak_memory(dev)
    if point.precision != "fp32" and dev.type == "cpu" and not _native_cpu_half(point.precision):
        if rank == 0:
            print(
                f"[pretrain {name}] note: this CPU has no native {point.precision} matmuls; "
                "autocast emulates them and runs slower than fp32",
                file=sys.stderr,
            )
    if rank == 0:
        print(
            f"[pretrain {name}] {count_params(model):,} params (no emb), {train_idx.size} "
            f"train clips, {val_idx.size} val clips ({val_from}), {steps} steps on {dev}"
            + (f" x {world} processes" if world > 1 else ""),
            file=sys.stderr,
        )

    def save(path: Path, done: int) -> None:
        loop = {**state, "loss_sum": float(loss_sum), "loss_n": loss_n, "tok_since": tok_since,
                "skipped": state["skipped"] + int(skipped)}
        ckpt = {
            "model_args": mcfg.to_dict(),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "step": done,
            "data_position": stream.position,
            "grid": name,
            "precision": point.precision,
            "order": order,
            "seed": int(train_seed),
            "pretrain_cfg": cfg,
            "run_args": run_args,
            "loop": loop,
        }
        if rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(ckpt, tmp)
        ddp.barrier()

    model.train()
    tick = time.perf_counter()
    done = state["start"]
    with StopSignals() as stop, warnings.catch_warnings():
        # the schedule advances on a step the fp16 scaler skipped: not the misuse PyTorch's
        # "lr_scheduler.step() before optimizer.step()" warning is about
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler")
        for step in range(state["start"], steps):
            try:
                for k in range(accum):
                    idx = stream.next(micro_global)[rank * micro : (rank + 1) * micro]
                    x, c = _batch(codes, prev, idx, mcfg.conditioned)
                    with ddp.no_sync(fwd, k < accum - 1), \
                            autocast_context(point.precision, dev):
                        _, loss = fwd(x, c)
                    scaler.scale(loss / accum).backward()
                    loss_sum += loss.detach()
                    bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()),
                                           step + 1, bad_step)
            except torch.OutOfMemoryError as err:
                raise TrainingError(_oom_message(cfg, micro, world, dev)) from err
            loss_n += accum
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            scale_before = scaler._scale.clone() if scaler.is_enabled() else None
            scaler.step(opt)
            scaler.update()
            if scale_before is not None:  # the scaler lowers its scale when it skips a step
                skipped += (scaler._scale < scale_before).long().sum()
            opt.zero_grad(set_to_none=True)
            lr = opt.param_groups[0]["lr"]
            sched.step()  # a step the fp16 scaler skipped still counts (warning muted below)
            tok_since += tokens_per_step
            done = step + 1
            is_eval = done % cfg["eval_every"] == 0 or done == steps
            stopping = ddp.any_flag(stop.received is not None, dev)
            if done % log_every == 0 or is_eval or stopping:
                if int(bad_step) >= 0:
                    raise TrainingError(
                        f"[pretrain {name}] the training loss is not finite (NaN/inf) at step "
                        f"{int(bad_step)} of {steps} (lr {lr:.2e}, precision "
                        f"{point.precision}); try a lower pretrain.lr or fp32/bf16"
                    )
            if done % log_every == 0 or is_eval:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                elapsed = time.perf_counter() - tick
                state["train_time"] += elapsed
                row = {
                    "step": done,
                    "tokens_seen": done * tokens_per_step,
                    "train_loss": ddp.mean(float(loss_sum) / loss_n, dev),
                    "val_loss": float("nan"),
                    "lr": lr,
                    "tokens_per_s": tok_since / elapsed,
                    "peak_mem_mb": peak_memory_mb(dev),
                }
                if is_eval:
                    state["val_loss"] = evaluate(
                        model, codes, prev, val_idx, micro_global, mcfg.conditioned,
                        point.precision, dev,
                    )
                    row["val_loss"] = state["val_loss"]
                state["rows"].append(row)
                if rank == 0 and (done % report_every == 0 or done == steps):
                    v = state["val_loss"]
                    val = f"{v:.4f}" if math.isfinite(v) else "-"
                    print(
                        f"[pretrain {name}] step {done}/{steps} train_loss "
                        f"{row['train_loss']:.4f} val_loss {val} lr {lr:.2e} "
                        f"{row['tokens_per_s']:,.0f} tok/s",
                        file=sys.stderr,
                    )
                loss_sum.zero_()
                loss_n, tok_since = 0, 0
                tick = time.perf_counter()
            if stopping:
                save(ckpt_path, done)
                msg = (f"[pretrain {name}] signal received: checkpointed step {done}/{steps} "
                       f"to {ckpt_path}; exiting with code {EXIT_REQUEUE} to be resumed")
                if rank == 0:
                    print(msg, file=sys.stderr, flush=True)
                ddp.teardown()
                stop.forward()  # e.g. submitit's checkpoint-and-requeue handler
                raise Interrupted(msg)
            if ckpt_every and done % ckpt_every == 0 and done < steps:
                save(ckpt_path, done)
            if on_step is not None:
                on_step(done)

    state["skipped"] += int(skipped)
    if state["skipped"] and rank == 0:
        print(f"[pretrain {name}] fp16: the gradient scaler skipped {state['skipped']} of "
              f"{steps} steps (overflow)", file=sys.stderr)
    tokens_seen = steps * tokens_per_step
    save(out_dir / "model.pt", steps)
    train_time = state["train_time"]
    tokens_per_s = tokens_seen / train_time if train_time > 0 else float("nan")
    total_flops = fpt * tokens_seen * mcfg.context // n_tok
    summary = {
        **point.as_dict(),
        "n_params": count_params(model, embeddings=True),
        "n_params_no_emb": count_params(model),
        "flops_per_token": fpt,
        # every processed position costs fpt; a conditioned model also processes the prefix
        "train_flops": total_flops,
        "tokens_seen": tokens_seen,
        "wall_time_s": time.perf_counter() - t0,
        "train_time_s": train_time,
        "tokens_per_s": tokens_per_s,
        # MFU of all processes together against the peak of all their devices
        "mfu": _mfu(total_flops / train_time / world if train_time > 0 else 0.0,
                    point.precision, dev),
        "device_name": device_name(dev),
        "world_size": world,
        "skipped_steps": state["skipped"],
        "resumed": state["start"] > 0,
        "final_val_loss": state["val_loss"],
        "steps": steps,
        # passes over the training clips (> 1: repeated data)
        "epochs": steps * cfg["batch_size"] / train_idx.size,
        "order": order,
        "conditioned": mcfg.conditioned,
        "train_clips": int(train_idx.size),
        "val_clips": int(val_idx.size),
        "val_from": val_from,
        "device": str(dev),
        "threads": threads,
        # "seed" is the point's replicate (from as_dict); the run's seed combines it with the
        # study's (cortexscale.grid.training_seed)
        **provenance(cfg, stage="pretrain", study_seed=int(seed), train_seed=train_seed),
    }
    if rank == 0:
        write_tsv(out_dir / "log.tsv", pd.DataFrame(state["rows"], columns=list(LOG_COLUMNS)))
        write_json(out_dir / "summary.json", summary)
        ckpt_path.unlink(missing_ok=True)  # model.pt holds the same state
    ddp.teardown()
    return summary


def _oom_message(cfg: dict[str, Any], micro: int, world: int, dev: torch.device) -> str:
    """Out-of-memory advice: the micro-batch to try and the grad_accum that gives it."""
    accum = cfg["grad_accum"]
    per_step = cfg["batch_size"] // world
    for new_accum in range(accum + 1, per_step + 1):
        if per_step % new_accum == 0 and cfg["batch_size"] % (new_accum * world) == 0:
            new_micro = per_step // new_accum
            if new_micro <= micro // 2 or new_micro == 1:
                return (
                    f"out of memory on {dev} with a micro-batch of {micro} clips "
                    f"(pretrain.batch_size {cfg['batch_size']} / grad_accum {accum}"
                    + (f" / {world} processes" if world > 1 else "")
                    + f"); try a micro-batch of {new_micro}: pretrain.grad_accum: {new_accum} "
                    "(same global batch, same results)"
                )
    return (f"out of memory on {dev} with a micro-batch of {micro} clip(s); it cannot be "
            "smaller: use a smaller model, fewer tokens per clip or a larger device")


def _mfu(flops_per_s: float, precision: str, dev: torch.device) -> float | None:
    return mfu(flops_per_s, precision, dev)
