"""The commands no rule calls: ``validate``, ``estimate`` and ``install-profile``.

They work on a study as a whole (its config file, its cost, the Snakemake profile it runs
with) and print their answer on stdout; they take the config as a positional argument, not
``--config``/``--sections``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from cortexscale.errors import ConfigError
from cortexscale.estimate import DEFAULT_DEVICE, DEFAULT_MFU

__all__ = ["cmd_estimate", "cmd_install_profile", "cmd_validate", "register"]


def cmd_validate(args: argparse.Namespace) -> None:
    """Validate a study config as Snakemake runs it, and its dataset when fmri.root exists."""
    from cortexscale.config import load_config, load_study
    from cortexscale.data.dataset_check import check_study_dataset
    from cortexscale.grid import expand

    cfg = load_config(args.config) if args.standalone else load_study(args.config, args.base)
    # subjects, ROIs and stimuli against the dataset, when fmri.root exists
    checked = check_study_dataset(cfg, str(args.config))
    points = expand(cfg["grid"])
    print(
        f"{args.config}: valid; {len(points)} grid points x {len(cfg['subjects'])} subjects "
        f"x {len(cfg['rois'])} ROIs"
        + (f"; dataset {cfg['fmri']['root']} checked" if checked else "")
    )


def cmd_estimate(args: argparse.Namespace) -> None:
    """Print the pretraining GPU hours of every grid point of a study."""
    from cortexscale.config import load_config
    from cortexscale.estimate import estimate

    rows = estimate(load_config(args.config), device=args.device, mfu=args.mfu)
    print(f"{'grid point':<28} {'params':>12} {'tokens':>12} {'PFLOPs':>10} {'gpus':>4} "
          f"{'GPU h':>9} {'wall h':>8}")
    for r in rows:
        print(f"{r['grid']:<28} {r['n_params']:>12,} {r['tokens']:>12,} "
              f"{r['flops'] / 1e15:>10.3g} {r['gpus']:>4} {r['gpu_hours']:>9.3g} "
              f"{r['wall_hours']:>8.3g}")
    total = sum(r["gpu_hours"] for r in rows)
    print(f"total: {len(rows)} pretraining runs, {total:.3g} GPU hours on {args.device} at "
          f"MFU {args.mfu:g} (pretraining only)")


def cmd_install_profile(args: argparse.Namespace) -> None:
    """Copy a Snakemake profile (``profiles/NAME/config.yaml``) to the user's profiles."""
    import shutil

    src = Path(args.source) if args.source else repo_profiles() / args.name
    if not (src / "config.yaml").is_file():
        raise ConfigError(f"no profile at {src} (expected {src / 'config.yaml'})")
    dest = Path(args.dest or Path.home() / ".config" / "snakemake") / args.name
    if dest.exists() and not args.force:
        raise ConfigError(f"{dest} exists; pass --force to replace it")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "config.yaml", dest / "config.yaml")
    print(f"installed {src} as {dest}; use: snakemake --profile {args.name}")


def repo_profiles() -> Path:
    """`profiles/` of the repository this package was installed from (editable installs)."""
    return Path(__file__).resolve().parents[3] / "profiles"


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the study commands (``add`` as in :func:`cortexscale.cli.build_parser`)."""
    p = add("validate", cmd_validate,
            "validate a study config as Snakemake runs it (merged over config/config.yaml)",
            common=False)
    p.add_argument("config", type=Path)
    p.add_argument("--base", type=Path, default=None,
                   help="the config the study extends (default: the repository's "
                        "config/config.yaml, as the Snakefile loads it)")
    p.add_argument("--standalone", action="store_true",
                   help="validate the file alone, merged over nothing")

    p = add("estimate", cmd_estimate, "estimate a sweep's pretraining GPU hours from a config",
            common=False)
    p.add_argument("config", type=Path)
    p.add_argument("--device", default=DEFAULT_DEVICE,
                   help=f"peak-FLOPs table entry (train/metrics.py), default {DEFAULT_DEVICE!r}")
    p.add_argument("--mfu", type=float, default=DEFAULT_MFU,
                   help=f"assumed MFU (default {DEFAULT_MFU})")

    p = add("install-profile", cmd_install_profile,
            "copy a Snakemake profile to ~/.config/snakemake/NAME", common=False)
    p.add_argument("name", help="profile name: slurm or local (from the repository's profiles/)")
    p.add_argument("--source", help="profile folder to install (default profiles/NAME)")
    p.add_argument("--dest", help="profiles folder (default ~/.config/snakemake)")
    p.add_argument("--force", action="store_true", help="replace an installed profile")
