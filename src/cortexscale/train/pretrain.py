"""Pretrain the GPT of one grid point on the cached VQ-VAE codes of a corpus, in memory.

:func:`train` takes the codes and the clips to train and validate on as arrays
(:class:`Corpus`), trains, and returns the :class:`Run`; the pretrain stage
(:mod:`cortexscale.stages.pretrain`) reads the files and writes ``model.pt``, ``log.tsv`` and
``summary.json``. A run is resumable: its ``checkpoint.pt`` (:mod:`cortexscale.train.resume`)
is written on SIGTERM/SIGUSR2 and every ``pretrain.checkpoint_every`` steps.

Choices worth knowing:

- **Training length.** ``pretrain.steps``, unless the grid point asks for a FLOP budget
  (isoflop) or a token count (``grid.tokens``): then :func:`cortexscale.grid.steps_for`,
  rounded to the nearest whole step; the run's ``cfg["steps"]`` is the steps trained.
- **Seeds.** The run's seed (:func:`cortexscale.grid.training_seed` of the study seed and the
  point's replicate seed) seeds initialisation, dropout and the data order.
- **Data order.** Epoch ``e`` visits the training clips in the permutation drawn from
  ``numpy.random.default_rng([seed, e])``; the position in the stream (``data_position``,
  clips consumed) is all a resume needs to continue it exactly.
- **Conditioning.** A conditioned model sees the codes of the clip that precedes each clip
  in its source (``Corpus.prev``); a clip without one (a source's first clip) gets an empty
  condition (codes ``-1``, see :class:`cortexscale.models.gpt.GPT`).
- **Memory.** The codes of the whole corpus are held on the device as int16 (the paper's 6M
  frames: about 94k clips x 256 tokens, 48 MB); batches are gathered there, with no
  host-to-device copy per step.
- **Precision.** ``fp32``; ``bf16``/``fp16`` autocast (:func:`~cortexscale.train.common.
  autocast_context`), with a gradient scaler that is a no-op unless fp16; a step the fp16
  scaler skips (overflow) lowers its scale, which is how it is counted.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cortexscale.errors import ConfigError
from cortexscale.grid import GridPoint, steps_for
from cortexscale.logs import Progress, get_logger
from cortexscale.models.device import setup_device
from cortexscale.models.gpt import GPT, GPTConfig, count_params, flops_per_token, residual_dtype
from cortexscale.train import ddp
from cortexscale.train.common import (
    autocast_context,
    grad_scaler,
    peak_memory_mb,
    reset_peak_memory,
    set_seed,
)
from cortexscale.train.resume import (
    EXIT_REQUEUE,
    Interrupted,
    StopSignals,
    TrainingError,
    restore_checkpoint,
    save_checkpoint,
)

__all__ = ["CHECKPOINT", "LOG_COLUMNS", "ClipStream", "Corpus", "Run", "TrainState", "evaluate",
           "log_row", "lr_at", "new_run", "train", "train_step"]

log = get_logger(__name__)

LOG_COLUMNS = ("step", "tokens_seen", "train_loss", "val_loss", "lr", "tokens_per_s", "peak_mem_mb")
GRAD_CLIP = 1.0  # max global gradient norm (nanoGPT's default)
BETAS = (0.9, 0.95)
#: Resumable checkpoint in the run's folder (removed when the run completes; model.pt remains).
CHECKPOINT = "checkpoint.pt"


def lr_at(step: int, cfg: dict[str, Any]) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, cosine to min_lr."""
    lr, min_lr, warmup, steps = cfg["lr"], cfg["min_lr"], cfg["warmup_steps"], cfg["steps"]
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


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


@dataclass
class Corpus:
    """The cached codes of a corpus and the clips a run trains and is validated on."""

    codes: np.ndarray  #: int16 (n_clips, t, h, w)
    codebook_size: int
    prev: np.ndarray  #: int64 (n_clips,): the preceding clip of the same source, -1: none
    train: np.ndarray  #: int64 (n_train,): training clips
    val: np.ndarray  #: int64 (n_val,): validation clips
    val_from: str = "reserved"  #: where the validation clips come from


@dataclass
class TrainState:
    """Where a run stands; :meth:`loop` is what a checkpoint keeps of it (plain values).

    The loss sum and the first non-finite step stay on the device between log rows: the
    only host sync per step is the fp16 scaler's ``get_scale()``, once, after its update
    (``scale``; none for fp32/bf16, whose scaler is disabled).
    """

    loss_sum: torch.Tensor  #: train-loss sum of the micro-steps since the last log row
    bad_step: torch.Tensor  #: first step with a non-finite loss, -1 if none
    start: int = 0  #: the step this process began at (> 0: resumed)
    rows: list[dict[str, float]] = field(default_factory=list)  #: log.tsv
    val_loss: float = float("nan")  #: the last validation loss
    train_time: float = 0.0  #: seconds of the logged training windows
    skipped: int = 0  #: steps the fp16 gradient scaler skipped
    loss_n: int = 0  #: micro-steps in ``loss_sum``
    tok_since: int = 0  #: tokens trained since the last log row
    #: the gradient scaler's scale after the last step (``get_scale()``); not checkpointed:
    #: a resumed run reads it from the restored scaler
    scale: float = 1.0

    @classmethod
    def begin(cls, dev: torch.device, loop: dict[str, Any] | None = None,
              step: int = 0, scale: float = 1.0) -> TrainState:
        """A fresh state, or the one of a checkpoint (its ``loop`` and ``step``).

        ``scale`` is the gradient scaler's ``get_scale()`` (fresh or restored).
        """
        loop = dict(loop or {})
        loss_sum = torch.tensor(float(loop.pop("loss_sum", 0.0)), device=dev)
        loop.pop("start", None)
        return cls(loss_sum, torch.tensor(-1, device=dev), start=step, scale=scale, **loop)

    def loop(self) -> dict[str, Any]:
        return {"rows": self.rows, "val_loss": self.val_loss, "train_time": self.train_time,
                "skipped": self.skipped, "loss_sum": float(self.loss_sum),
                "loss_n": self.loss_n, "tok_since": self.tok_since, "start": self.start}


@dataclass
class Run:
    """One pretraining run: its settings, its model and what trains it, and its state."""

    point: GridPoint
    order: str
    cfg: dict[str, Any]  #: the checked ``pretrain:`` section; ``steps``: the steps trained
    seed: int  #: the run's seed
    dist: ddp.DistInfo
    dev: torch.device
    mcfg: GPTConfig
    model: GPT
    opt: torch.optim.AdamW
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    stream: ClipStream
    codes: torch.Tensor  #: int16 (n_clips, t, h, w), on the device
    prev: torch.Tensor  #: int64 (n_clips,), on the device
    val: np.ndarray
    state: TrainState

    @property
    def steps(self) -> int:
        return self.cfg["steps"]

    @property
    def tokens_per_step(self) -> int:
        return self.cfg["batch_size"] * self.mcfg.n_tokens

    @property
    def micro_global(self) -> int:
        """Clips per micro-step, all processes together."""
        return self.cfg["batch_size"] // self.cfg["grad_accum"]

    @property
    def identity(self) -> dict[str, Any]:
        """The grid point, precision, subset order and seed (in the checkpoint and run_args)."""
        return {"grid": self.point.name, "precision": self.point.precision,
                "order": self.order, "seed": int(self.seed)}

    @property
    def run_args(self) -> dict[str, Any]:
        """What a checkpoint must match to resume this run (checkpoint_every may change)."""
        return {**self.mcfg.to_dict(), **self.identity, "world_size": self.dist.world,
                **{f"pretrain.{k}": v for k, v in self.cfg.items() if k != "checkpoint_every"}}

    def objects(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.opt, "scheduler": self.sched,
                "scaler": self.scaler}

    def save(self, path: str | os.PathLike, step: int) -> None:
        """Checkpoint the run after ``step`` steps (``checkpoint.pt``, ``model.pt``)."""
        save_checkpoint(path, self.objects(), {
            "model_args": self.mcfg.to_dict(), "step": step,
            "data_position": self.stream.position, **self.identity,
            "pretrain_cfg": self.cfg, "run_args": self.run_args, "loop": self.state.loop(),
        }, self.dist.rank)

    def resume(self, path: str | os.PathLike) -> None:
        """Continue from the checkpoint ``path`` if there is one."""
        ck = restore_checkpoint(path, self.objects(), self.run_args, self.dev)
        if ck is None:
            return
        self.stream.position = int(ck["data_position"])
        self.state = TrainState.begin(self.dev, ck["loop"], int(ck["step"]),
                                      self.scaler.get_scale())
        self.info(f"resuming from {path} at step {self.state.start}")

    def info(self, msg: str) -> None:
        """Log ``msg`` on rank 0, after the run's name."""
        if self.dist.rank == 0:
            log.info(f"{self.point.name}: {msg}")


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


def new_run(corpus: Corpus, point: GridPoint, order: str, cfg: dict[str, Any], seed: int,
            threads: int = 1, device: str = "cpu", single_epoch: bool = False) -> Run:
    """Join the processes, seed, and build the model, optimizer, schedule and data stream.

    Raises
    ------
    ConfigError
        If the batch does not split over the processes, the point's budget or tokens buy
        less than half a step, or (``single_epoch``) the run would repeat training clips.
    """
    dist = ddp.setup(device)
    dev = setup_device(dist.device, threads)
    set_seed(seed)
    name = point.name
    if cfg["batch_size"] % (cfg["grad_accum"] * dist.world):
        raise ConfigError(
            f"pretrain.batch_size ({cfg['batch_size']}) must be a multiple of grad_accum "
            f"({cfg['grad_accum']}) x processes ({dist.world})"
        )
    codes = torch.from_numpy(corpus.codes).to(dev)  # (n_clips, t, h, w) int16, on the device
    prev = torch.from_numpy(corpus.prev).to(dev)  # (n_clips,)
    mcfg = GPTConfig(
        vocab_size=corpus.codebook_size,
        shape=tuple(corpus.codes.shape[1:]),
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
        raise ConfigError(
            f"{name}: " + (f"budget {point.budget:g} FLOPs" if point.budget else
                           f"{point.tokens} tokens")
            + f" buys less than half a step (one step: {cfg['batch_size']} clips x "
            f"{mcfg.context} positions x {fpt:,} FLOPs); expected at least one step"
        )
    if single_epoch and steps * cfg["batch_size"] > corpus.train.size:
        raise ConfigError(
            f"{name}: grid.single_epoch: {steps} steps x {cfg['batch_size']} clips "
            f"= {steps * cfg['batch_size']} clips but the training data holds "
            f"{corpus.train.size}; lower the budget or tokens, or enlarge the corpus"
        )
    cfg = {**cfg, "steps": steps}  # the schedule and the checkpoint see the steps trained
    model = GPT(mcfg).to(dev)
    opt = _optimizer(model, cfg, dev)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg) / cfg["lr"])
    scaler = grad_scaler(point.precision, dev)
    return Run(point, order, cfg, seed, dist, dev, mcfg, model, opt, sched, scaler,
               ClipStream(corpus.train, seed), codes, prev, corpus.val,
               TrainState.begin(dev, scale=scaler.get_scale()))


def train_step(run: Run, fwd: torch.nn.Module, step: int) -> float:
    """One optimizer step (``grad_accum`` micro-steps) of step index ``step``; its lr.

    Raises
    ------
    TrainingError
        Out of memory, naming the micro-batch to try.
    """
    cfg, st, dev, world = run.cfg, run.state, run.dev, run.dist.world
    accum, micro_global = cfg["grad_accum"], run.micro_global
    micro = micro_global // world  # clips per micro-step of this process
    lo = run.dist.rank * micro
    try:
        for k in range(accum):
            idx = run.stream.next(micro_global)[lo : lo + micro]
            x, c = _batch(run.codes, run.prev, idx, run.mcfg.conditioned)
            with ddp.no_sync(fwd, k < accum - 1), autocast_context(run.point.precision, dev):
                _, loss = fwd(x, c)
            run.scaler.scale(loss / accum).backward()
            st.loss_sum += loss.detach()
            st.bad_step = torch.where((st.bad_step < 0) & ~torch.isfinite(loss.detach()),
                                      step + 1, st.bad_step)
    except torch.OutOfMemoryError as err:
        raise TrainingError(_oom_message(cfg, micro, world, dev)) from err
    st.loss_n += accum
    run.scaler.unscale_(run.opt)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), GRAD_CLIP)
    run.scaler.step(run.opt)
    run.scaler.update()
    if run.scaler.is_enabled():  # the one host sync of a step: the scale after the update
        scale = run.scaler.get_scale()
        if scale < st.scale:  # lowered: the step was skipped
            st.skipped += 1
        st.scale = scale
    run.opt.zero_grad(set_to_none=True)
    lr = run.opt.param_groups[0]["lr"]
    run.sched.step()  # a step the fp16 scaler skipped still counts (warning muted in train)
    st.tok_since += run.tokens_per_step
    return lr


def log_row(run: Run, done: int, lr: float, is_eval: bool, elapsed: float,
            progress: Progress) -> None:
    """Append the log row of step ``done`` (validating if ``is_eval``); on rank 0, pass it
    to ``progress`` (every tenth row and the last reach stderr, with elapsed time and ETA).

    ``elapsed`` is the wall time since the last row; the sums since then are reset.
    """
    st, dev = run.state, run.dev
    st.train_time += elapsed
    row = {
        "step": done,
        "tokens_seen": done * run.tokens_per_step,
        "train_loss": ddp.mean(float(st.loss_sum) / st.loss_n, dev),
        "val_loss": float("nan"),
        "lr": lr,
        "tokens_per_s": st.tok_since / elapsed,
        "peak_mem_mb": peak_memory_mb(dev),
    }
    if is_eval:
        st.val_loss = evaluate(run.model, run.codes, run.prev, run.val, run.micro_global,
                               run.mcfg.conditioned, run.point.precision, dev)
        row["val_loss"] = st.val_loss
    st.rows.append(row)
    if run.dist.rank == 0:
        val = f"{st.val_loss:.4f}" if math.isfinite(st.val_loss) else "-"
        progress.update(done, f"train_loss {row['train_loss']:.4f} val_loss {val} "
                              f"lr {lr:.2e} {row['tokens_per_s']:,.0f} tok/s")
    st.loss_sum.zero_()
    st.loss_n, st.tok_since = 0, 0


def _check_finite(run: Run, lr: float) -> None:
    if int(run.state.bad_step) >= 0:
        raise TrainingError(
            f"{run.point.name}: the training loss is not finite (NaN/inf) at step "
            f"{int(run.state.bad_step)} of {run.steps} (lr {lr:.2e}, precision "
            f"{run.point.precision}); try a lower pretrain.lr or fp32/bf16"
        )


def train(
    corpus: Corpus,
    point: GridPoint,
    order: str,
    cfg: dict[str, Any],
    seed: int,
    checkpoint: str | os.PathLike,
    threads: int = 1,
    device: str = "cpu",
    on_step: Callable[[int], None] | None = None,
    single_epoch: bool = False,
) -> Run:
    """Train the GPT of ``point`` on ``corpus``, resuming from ``checkpoint`` if it exists.

    Parameters
    ----------
    corpus : Corpus
        The codes and the training and validation clips.
    point : GridPoint
        Hidden, layers, heads, precision, and the budget or tokens that set the steps.
    order : {"corpus", "stratified"}
        The subset order ``corpus.train`` comes from (the checkpoint records it).
    cfg : dict
        The checked ``pretrain:`` section (:func:`cortexscale.stages.pretrain.check_cfg`).
    seed : int
        The run's seed: initialisation, dropout and the data order.
    checkpoint : path-like
        ``checkpoint.pt`` of the run: resumed from if it exists, written on SIGTERM/SIGUSR2
        and every ``pretrain.checkpoint_every`` steps.
    threads, device : CPU threads; ``"cpu"`` or ``"cuda[:N]"`` (under torchrun each process
        uses ``cuda:LOCAL_RANK``, or gloo on the CPU).
    on_step : callable, optional
        Called with the number of completed steps after each step (tests, progress hooks).
    single_epoch : bool
        Refuse a run that would see more clips than it trains on, before any step.

    Returns
    -------
    run : Run
        Trained; its process group is still joined (:func:`cortexscale.train.ddp.teardown`
        after writing the outputs).

    Raises
    ------
    Interrupted
        ``SystemExit(75)`` after SIGTERM/SIGUSR2: the step in flight finished and
        ``checkpoint`` holds the state; the same call resumes it bit-exactly.
    TrainingError
        NaN loss (naming the step), out of memory (naming a micro-batch to try), or a
        checkpoint made for another configuration (naming what differs).
    """
    run = new_run(corpus, point, order, cfg, seed, threads, device, single_epoch)
    run.resume(checkpoint)
    cfg, st, dev, steps = run.cfg, run.state, run.dev, run.steps
    log_every, ckpt_every = max(1, steps // 100), cfg["checkpoint_every"]
    fwd = torch.compile(run.model) if cfg["compile"] else run.model
    if run.dist.world > 1:
        fwd = ddp.wrap(fwd, dev)
    reset_peak_memory(dev)
    if point.precision != "fp32" and dev.type == "cpu" and not _native_cpu_half(point.precision):
        run.info(f"note: this CPU has no native {point.precision} matmuls; autocast emulates "
                 "them and runs slower than fp32")
    run.info(f"{count_params(run.model):,} params (no emb), {corpus.train.size} train clips, "
             f"{corpus.val.size} val clips ({corpus.val_from}), {steps} steps on {dev}"
             + (f" x {run.dist.world} processes" if run.dist.world > 1 else ""))
    # every tenth log row (rows come every log_every steps), and the last
    progress = Progress(log, steps, f"{point.name}: step", every=10 * log_every, start=st.start)
    run.model.train()
    tick = time.perf_counter()
    with StopSignals() as stop, warnings.catch_warnings():
        # the schedule advances on a step the fp16 scaler skipped: not the misuse PyTorch's
        # "lr_scheduler.step() before optimizer.step()" warning is about
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler")
        for step in range(st.start, steps):
            lr = train_step(run, fwd, step)
            done = step + 1
            is_eval = done % cfg["eval_every"] == 0 or done == steps
            stopping = ddp.any_flag(stop.received is not None, dev)
            if done % log_every == 0 or is_eval or stopping:
                _check_finite(run, lr)
            if done % log_every == 0 or is_eval:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                log_row(run, done, lr, is_eval, time.perf_counter() - tick, progress)
                tick = time.perf_counter()
            if stopping:
                run.save(checkpoint, done)
                msg = (f"signal received: checkpointed step {done}/{steps} to {checkpoint}; "
                       f"exiting with code {EXIT_REQUEUE} to be resumed")
                run.info(msg)
                ddp.teardown()
                stop.forward()  # e.g. submitit's checkpoint-and-requeue handler
                raise Interrupted(f"{point.name}: {msg}")
            if ckpt_every and done % ckpt_every == 0 and done < steps:
                run.save(checkpoint, done)
            if on_step is not None:
                on_step(done)
    if st.skipped:
        run.info(f"fp16: the gradient scaler skipped {st.skipped} of {steps} steps (overflow)")
    return run


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
