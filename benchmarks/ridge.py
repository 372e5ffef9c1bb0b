"""Ridge engine benchmark: cortexscale ``ridge_cv`` against himalaya and scikit-learn.

Every method runs in its own child process on the same seeded data, so wall time and
peak resident memory (``ru_maxrss`` of the child, which sees BLAS buffers) are measured
in isolation. The parent also measures the BLAS GEMM peak (a large float32 matmul) and
the rate our dominant GEMM (the stacked alpha scoring, ``(k * n_val, r) @ (r, chunk)``)
reaches on this machine, in the same run.

    python benchmarks/ridge.py                       # 3000 x 1000 x 20000, 11 alphas, 5 folds
    python benchmarks/ridge.py --targets 5000 --skip sklearn
    python benchmarks/ridge.py --samples 4000 --features 1500 --targets 12000 --alphas 11 50 \
        --score pearson r2 --features-kind correlated --unequal-runs --skip sklearn \
        --before /path/to/old/src                   # issue 18: both scores, 11 and 50 alphas

Each score is measured separately; himalaya, scikit-learn and ``--before`` (the package at
another path, e.g. a ``git archive`` of an older commit, run with the same data) at the first
penalty count, cortexscale at every count.

The alpha agreement is measured against himalaya run in float64 on the same data
(``himalaya64``): in float32, himalaya's own choice flips between neighbouring penalties
on about 0.25% of voxels whose scores tie to 1e-6 (near-zero predictions at the largest
penalties), so float32 against float32 measures rounding, not the engine.
Agreement with himalaya float32 is printed too.

The last line is ``RESULT speedup_vs_himalaya=<x> memory_vs_himalaya=<y>
alpha_agreement=<z> gemm_peak_fraction=<f>`` for the first score (one ``RESULT_<score>``
line per score before it, with the time ratio of the largest to the first penalty count
and the speed against ``--before``); memory is the child's peak RSS above its RSS once the
data is built (the data and imports are common to every method).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

METHODS = ("cortexscale", "himalaya", "sklearn", "himalaya64")


def _rss_mb() -> float:
    """Current resident memory of this process in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_data(n: int, p: int, v: int, n_runs: int, seed: int = 0, kind: str = "iid",
              unequal: bool = False):
    """Seeded synthetic encoding data: X (n, p), Y (n, v) float32, groups (n,).

    ``kind='correlated'``: features with a power-law spectrum (variance of the i-th
    principal axis ~ 1/i, random axes), delayed copies of smooth signals would look alike;
    ``unequal``: run lengths cycling through 0.5x .. 1.5x the mean.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p), dtype=np.float32)
    if kind == "correlated":
        Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
        X = (X / np.sqrt(np.arange(1, p + 1, dtype=np.float32))) @ Q.T.astype(np.float32)
        X /= X.std(0)
    X -= X.mean(0)
    Y = np.empty((n, v), dtype=np.float32)
    step = 2000
    for s in range(0, v, step):  # targets with a spread of signal-to-noise ratios
        vc = min(step, v - s)
        W = rng.standard_normal((p, vc), dtype=np.float32) / np.sqrt(p)
        snr = np.logspace(-1.5, 0.5, vc, dtype=np.float32)
        Y[:, s:s + vc] = (X @ W) * snr + rng.standard_normal((n, vc), dtype=np.float32)
    Y -= Y.mean(0)
    if unequal:
        sizes = 0.5 + (np.arange(n_runs) % 5) / 4  # 0.5, 0.75, ..., 1.5
        edges = np.round(np.cumsum(sizes) / sizes.sum() * n).astype(int)
        groups = np.searchsorted(edges, np.arange(n), side="right")
    else:
        groups = np.repeat(np.arange(n_runs), int(np.ceil(n / n_runs)))[:n]
    return X, Y, groups


def child(args) -> None:
    """Run one method, write its result JSON and best alphas."""
    X, Y, groups = make_data(args.samples, args.features, args.targets, args.runs,
                             kind=args.features_kind, unequal=args.unequal_runs)
    alphas = np.logspace(-2, 8, args.alphas[0])
    from cortexscale.encoding.ridge import group_kfold

    folds = group_kfold(groups, args.folds)
    base = _rss_mb()
    t0 = time.perf_counter()
    if args.child in ("cortexscale", "before"):
        from cortexscale.encoding.ridge import ridge_cv

        res = ridge_cv(X, Y, groups, alphas, n_folds=args.folds, score=args.score[0],
                       dtype="float32", chunk_size=args.chunk)
        best = res.best_alpha
    elif args.child in ("himalaya", "himalaya64"):
        from himalaya.ridge import RidgeCV
        from himalaya.scoring import correlation_score, r2_score

        if args.child == "himalaya64":  # the float64 reference for the alpha agreement
            X, Y = X.astype(np.float64), Y.astype(np.float64)
        scorer = r2_score if args.score[0] == "r2" else correlation_score
        model = RidgeCV(alphas=alphas, fit_intercept=False, cv=folds,
                        solver_params=dict(score_func=scorer))
        model.fit(X, Y)
        best = np.asarray(model.best_alphas_)
    else:
        from sklearn.linear_model import RidgeCV

        model = RidgeCV(alphas=alphas, fit_intercept=False, alpha_per_target=True)
        model.fit(X, Y)  # efficient leave-one-out (GCV): sklearn has no grouped per-target CV
        best = np.asarray(model.alpha_)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB
    name = f"{args.child}-{args.score[0]}-{args.alphas[0]}"
    np.save(os.path.join(args.out, f"{name}.npy"), best)
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump({"wall_s": wall, "peak_mb": peak, "base_mb": base}, f)


def gemm_rate(m: int, k: int, n: int, repeat: int = 3) -> float:
    """Best float32 GEMM rate in GFLOP/s for (m, k) @ (k, n)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    a @ b
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * n / best / 1e9


def gpu(args) -> None:
    """torch backend on CUDA: float32 timed, float64 for the alpha agreement."""
    import torch

    from cortexscale.encoding.ridge import ridge_cv

    g = torch.Generator(device="cuda").manual_seed(0)
    n, p, v = args.samples, args.features, args.targets
    X = torch.randn(n, p, device="cuda", generator=g)
    X -= X.mean(0)
    Y = torch.empty(n, v, device="cuda")
    for s in range(0, v, 20000):
        vc = min(20000, v - s)
        W = torch.randn(p, vc, device="cuda", generator=g) / p ** 0.5
        snr = torch.logspace(-1.5, 0.5, vc, device="cuda")
        Y[:, s:s + vc] = (X @ W) * snr + torch.randn(n, vc, device="cuda", generator=g)
    Y -= Y.mean(0)
    groups = np.repeat(np.arange(args.runs), int(np.ceil(n / args.runs)))[:n]
    alphas = np.logspace(-2, 8, args.alphas[0])
    print(f"GPU {torch.cuda.get_device_name()}: {n} samples x {p} features x {v} targets, "
          f"{args.alphas} alphas, {args.folds} folds", flush=True)
    res = {}
    for dtype in ("float32", "float32", "float64"):  # first float32 run warms up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res[dtype] = ridge_cv(X, Y, groups, alphas, n_folds=args.folds, score="r2",
                              dtype=dtype, chunk_size=args.chunk, backend="torch")
        torch.cuda.synchronize()
        print(f"{dtype}: {time.perf_counter() - t0:.2f} s, peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
    agree = np.mean(res["float32"].best_alpha == res["float64"].best_alpha)
    print(f"RESULT gpu_alpha_agreement_float32_vs_float64={agree:.5f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--targets", type=int, default=20000)
    ap.add_argument("--alphas", type=int, nargs="+", default=[11],
                    help="penalty counts (logspace(-2, 8, count)); others at the first only")
    ap.add_argument("--score", nargs="+", default=["r2"], choices=("pearson", "r2"))
    ap.add_argument("--features-kind", default="iid", choices=("iid", "correlated"))
    ap.add_argument("--unequal-runs", action="store_true",
                    help="run lengths cycling through 0.5x .. 1.5x the mean")
    ap.add_argument("--before", help="src directory of another cortexscale to time as "
                                     "'before' (PYTHONPATH), same data and folds")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="runs (CV groups)")
    ap.add_argument("--chunk", type=int, default=5000, help="cortexscale chunk_size")
    ap.add_argument("--skip", nargs="*", default=[], choices=METHODS + ("before",))
    ap.add_argument("--gpu", action="store_true",
                    help="time the torch backend on CUDA only (e.g. --samples 10000 "
                         "--features 2000 --targets 300000 --chunk 20000)")
    ap.add_argument("--child", choices=METHODS + ("before",), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.gpu:
        return gpu(args)

    from threadpoolctl import threadpool_info

    blas = [f"{i['internal_api']} {i['version']} ({i.get('architecture')}, "
            f"{i['num_threads']} threads)" for i in threadpool_info()
            if i["user_api"] == "blas"]
    print(f"machine: {os.cpu_count()} cores; BLAS: {'; '.join(blas)}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!r}")
    print(f"data: {args.samples} samples x {args.features} features ({args.features_kind}) x "
          f"{args.targets} targets, alphas {args.alphas}, scores {args.score}, {args.folds} "
          f"folds over {args.runs} runs{' of unequal length' if args.unequal_runs else ''}")
    results = {}
    k0 = args.alphas[0]
    with tempfile.TemporaryDirectory() as out:
        for score in args.score:
            runs = [("cortexscale", k) for k in args.alphas]
            runs += [(m, k0) for m in METHODS[1:] + ("before",) if m not in args.skip]
            for method, k in runs:
                if method == "before" and not args.before:
                    continue
                cmd = [sys.executable, __file__, "--child", method, "--out", out,
                       "--score", score, "--alphas", str(k),
                       "--features-kind", args.features_kind]
                cmd += ["--unequal-runs"] if args.unequal_runs else []
                for key in ("samples", "features", "targets", "folds", "runs", "chunk"):
                    cmd += [f"--{key}", str(getattr(args, key))]
                env = dict(os.environ)
                if method == "before":
                    env["PYTHONPATH"] = os.path.abspath(args.before)
                subprocess.run(cmd, check=True, env=env)
                name = f"{method}-{score}-{k}"
                with open(os.path.join(out, f"{name}.json")) as f:
                    results[name] = json.load(f)
                results[name]["best"] = np.load(os.path.join(out, f"{name}.npy"))
                r = results[name]
                print(f"{score:8s} {k:3d} alphas {method:12s} wall {r['wall_s']:8.2f} s   peak "
                      f"RSS {r['peak_mb']:8.0f} MB (+{r['peak_mb'] - r['base_mb']:.0f} MB over "
                      f"the data)", flush=True)

    n_val = args.samples // args.folds
    peak = ours = 0.0
    for _ in range(3):  # interleaved, best of each: robust to load from elsewhere
        peak = max(peak, gemm_rate(4096, 4096, 4096))
        ours = max(ours, gemm_rate(k0 * n_val, min(args.features, args.samples - n_val),
                                   min(args.chunk, args.targets)))
    frac = ours / peak
    print(f"BLAS float32 GEMM peak (4096^3): {peak:.1f} GFLOP/s; the direct path's GEMM "
          f"({k0 * n_val} x {args.features}) @ ({args.features} x {args.chunk}): "
          f"{ours:.1f} GFLOP/s = {frac:.2f} of peak")

    def agreement(a: str, b: str) -> float:
        if a not in results or b not in results:
            return float("nan")
        return float(np.mean(np.isclose(results[a]["best"], results[b]["best"], rtol=1e-5)))

    lines = []
    for score in args.score:
        c, h = results[f"cortexscale-{score}-{k0}"], results.get(f"himalaya-{score}-{k0}")
        speed = mem = float("nan")
        if h:
            speed = h["wall_s"] / c["wall_s"]
            mem = (c["peak_mb"] - c["base_mb"]) / (h["peak_mb"] - h["base_mb"])
            print(f"{score}: himalaya / cortexscale wall: {speed:.2f}x; memory ratio (over the "
                  f"data) {mem:.2f}; total peak ratio {c['peak_mb'] / h['peak_mb']:.2f}")
        ours_k, him_k = f"cortexscale-{score}-{k0}", f"himalaya-{score}-{k0}"
        ref = f"himalaya64-{score}-{k0}"
        agree = agreement(ours_k, ref)
        print(f"{score}: alpha agreement with himalaya float64: cortexscale float32 {agree:.4f}, "
              f"himalaya float32 {agreement(him_k, ref):.4f}; both float32: "
              f"{agreement(ours_k, him_k):.4f}")
        kmax = f"cortexscale-{score}-{args.alphas[-1]}"
        ratio = results[kmax]["wall_s"] / c["wall_s"]
        print(f"{score}: cortexscale {args.alphas[-1]} / {k0} alphas wall: {ratio:.2f}")
        before = results.get(f"before-{score}-{k0}")
        vs_before = before["wall_s"] / c["wall_s"] if before else float("nan")
        if before:
            print(f"{score}: before / cortexscale wall: {vs_before:.2f}x; alpha agreement "
                  f"{agreement(f'before-{score}-{k0}', ours_k):.4f}")
        s = results.get(f"sklearn-{score}-{k0}")
        if s:
            print(f"{score}: sklearn / cortexscale wall: {s['wall_s'] / c['wall_s']:.2f}x; alpha "
                  f"agreement with sklearn's leave-one-out choice (not the same CV): "
                  f"{np.mean(np.isclose(c['best'], s['best'])):.3f}")
        lines.append(f"RESULT_{score} speedup_vs_himalaya={speed:.2f} memory_vs_himalaya="
                     f"{mem:.2f} alpha_agreement={agree:.4f} time_{args.alphas[-1]}_vs_{k0}="
                     f"{ratio:.2f} speedup_vs_before={vs_before:.2f}")
    print("\n".join(lines))
    first = lines[0].split(" ", 1)[1].split(" time_")[0]
    print(f"RESULT {first} gemm_peak_fraction={frac:.2f}")


if __name__ == "__main__":
    main()
