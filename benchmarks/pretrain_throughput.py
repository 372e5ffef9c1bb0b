"""Pretraining throughput: tokens/s and MFU of the paper's base GPT per precision and compile.

The paper's base config: 576 hidden, 8 layers, 4 heads, a 2048-code vocabulary and a
4 x 8 x 8 = 256-token clip. Each case runs the training step of ``cortexscale pretrain``
(autocast, gradient scaler for fp16, clipping at 1.0, fused AdamW on CUDA) on random codes
held on the device, times ``--repeats`` windows of ``--steps`` steps after ``--warmup``
steps, and reports the median window's tokens/s (and the spread of the windows),
MFU (:mod:`cortexscale.train.metrics`; fp32 on a GPU counts as TF32 when TF32 matmuls are
on, which is cortexscale's default) and peak memory. ``--no-tf32`` turns TF32 off so that
fp32 is true fp32 (then scored against the fp32 peak). The residual stream follows
``pretrain.residual`` (``--residual``; default ``auto``: bf16 for bf16, float32 otherwise).

Last line: ``RESULT device=<name> bf16_vs_fp32=<x> mfu_bf16=<y>`` (best over compile on/off).

Examples::

    python benchmarks/pretrain_throughput.py                      # GPU if there is one
    python benchmarks/pretrain_throughput.py --device cpu --batch 2 --steps 2 --warmup 1 \\
        --compile off --precisions fp32
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from cortexscale.models.device import setup_device
from cortexscale.models.gpt import GPT, RESIDUALS, GPTConfig, flops_per_token, residual_dtype
from cortexscale.train.common import (
    autocast_context,
    grad_scaler,
    peak_memory_mb,
    reset_peak_memory,
)
from cortexscale.train.metrics import device_name, matmul_precision, mfu

BASE = {"vocab_size": 2048, "shape": (4, 8, 8), "hidden": 576, "layers": 8, "heads": 4}


# --sdpa choice -> the torch.backends.cuda.enable_*_sdp flag left on (auto: all as they are)
SDPA = {"auto": None, "flash": "flash", "cudnn": "cudnn", "efficient": "mem_efficient",
        "math": "math"}


def run_case(precision: str, compiled: bool, batch: int, steps: int, warmup: int,
             dev: torch.device, mode: str = "default", sdpa: str = "auto",
             residual: str = "auto", repeats: int = 1) -> dict:
    torch.manual_seed(0)
    cfg = GPTConfig(**BASE, residual=residual_dtype(residual, precision))
    model = GPT(cfg).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
        lr=3e-4, betas=(0.9, 0.95), fused=dev.type == "cuda" or None,
    )
    scaler = grad_scaler(precision, dev)
    if not compiled:
        fwd = model
    elif mode == "gemm-autotune":  # Inductor's GEMM templates (fused epilogues) only
        fwd = torch.compile(model, options={"max_autotune_gemm": True})

    else:
        fwd = torch.compile(model, mode=mode)
    codes = torch.randint(0, cfg.vocab_size, (steps + warmup, batch, *cfg.shape), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda _dev: None)

    def step(i: int) -> None:
        with autocast_context(precision, dev):
            _, loss = fwd(codes[i])
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    if SDPA[sdpa] is not None:  # allow one attention kernel only, for the whole case
        flags = [f for f in SDPA.values() if f is not None]
        enabled = {b: getattr(torch.backends.cuda, f"{b}_sdp_enabled")() for b in flags}
        for b in flags:
            getattr(torch.backends.cuda, f"enable_{b}_sdp")(b == SDPA[sdpa])
    for i in range(warmup):
        step(i)
    sync(dev)
    reset_peak_memory(dev)
    windows = []  # seconds of each timed window of `steps` steps
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(warmup, warmup + steps):
            step(i)
        sync(dev)
        windows.append(time.perf_counter() - t0)
    if SDPA[sdpa] is not None:
        for b, on in enabled.items():
            getattr(torch.backends.cuda, f"enable_{b}_sdp")(on)
    rates = sorted(steps * batch * cfg.n_tokens / w for w in windows)
    tok_s = rates[len(rates) // 2]  # the median window (the upper one of an even count)
    m = mfu(tok_s * flops_per_token(cfg), precision, dev)
    return {"precision": precision, "compile": compiled, "residual": cfg.residual,
            "tokens_per_s": tok_s, "mfu": m, "spread": (rates[-1] - rates[0]) / tok_s,
            "peak_mem_mb": peak_memory_mb(dev), "matmul": matmul_precision(precision, dev)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None,
                    help="clips per step (GPU 512 = 131k tokens, CPU 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (GPU 30, CPU 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (GPU 10, CPU 1)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed windows of --steps steps; the median is reported (GPU 3, CPU 1)")
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    ap.add_argument("--compile", choices=["on", "off", "both"], default="both")
    ap.add_argument("--no-tf32", action="store_true", help="true fp32 matmuls on a GPU")
    ap.add_argument("--compile-mode", default="default",
                    choices=["default", "reduce-overhead", "max-autotune",
                             "max-autotune-no-cudagraphs", "gemm-autotune"],
                    help="torch.compile mode; gemm-autotune tunes GEMMs only, without "
                         "max-autotune's coordinate-descent tuning of every kernel "
                         "(default: default)")
    ap.add_argument("--sdpa", choices=sorted(SDPA), default="auto",
                    help="attention kernel (default: torch's choice)")
    ap.add_argument("--residual", choices=["auto", *RESIDUALS], default="auto",
                    help="residual stream dtype under autocast, as pretrain.residual "
                         "(default: auto, a bf16 stream for bf16 and fp32 otherwise)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    dev = setup_device(args.device, args.threads)
    gpu = dev.type == "cuda"
    if gpu and args.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    batch = args.batch if args.batch is not None else (512 if gpu else 2)
    steps = args.steps if args.steps is not None else (30 if gpu else 2)
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    repeats = args.repeats if args.repeats is not None else (3 if gpu else 1)
    if min(batch, steps, repeats) < 1 or warmup < 0:
        ap.error("--batch, --steps and --repeats must be >= 1 and --warmup >= 0")
    compiles = {"on": [True], "off": [False], "both": [False, True]}[args.compile]
    name = device_name(dev)
    cfg = GPTConfig(**BASE)
    print(f"device {name}, torch {torch.__version__}, batch {batch} clips x {cfg.n_tokens} "
          f"tokens, median of {repeats} x {steps} timed steps after {warmup}, "
          f"{flops_per_token(cfg) / 1e9:.3f} "
          "GFLOP/token", flush=True)
    print("precision\tmatmul\tresidual\tcompile\ttokens_per_s\tspread\tmfu\tpeak_mem_mb",
          flush=True)
    results = []
    for compiled in compiles:
        for precision in args.precisions.split(","):
            try:
                r = run_case(precision, compiled, batch, steps, warmup, dev, args.compile_mode,
                             args.sdpa, args.residual, repeats)
            except Exception as err:  # report and go on: one failing case must not hide others
                print(f"{precision}\t-\t{compiled}\tfailed: {type(err).__name__}: {err}",
                      file=sys.stderr, flush=True)
                continue
            results.append(r)
            m = "null" if r["mfu"] is None else f"{r['mfu']:.3f}"
            print(f"{precision}\t{r['matmul']}\t{r['residual']}\t{compiled}\t"
                  f"{r['tokens_per_s']:.0f}\t{r['spread']:.3f}\t{m}\t"
                  f"{r['peak_mem_mb']:.0f}", flush=True)

    def best(p: str) -> dict | None:
        rs = [r for r in results if r["precision"] == p]
        return max(rs, key=lambda r: r["tokens_per_s"]) if rs else None

    b16, f32 = best("bf16"), best("fp32")
    ratio = f"{b16['tokens_per_s'] / f32['tokens_per_s']:.2f}" if b16 and f32 else "null"
    mfu_b = "null" if not b16 or b16["mfu"] is None else f"{b16['mfu']:.3f}"
    print(f"RESULT device={name.replace(' ', '_')} bf16_vs_fp32={ratio} mfu_bf16={mfu_b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
