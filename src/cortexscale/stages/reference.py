"""The reference stage (``workflow/rules/reference.smk``): ``results/features/{name}.h5`` and
its summary for one reference point (planted law, true latents, random features) of the
synthetic world; the maths is :mod:`cortexscale.features.planted`.

The features file has the layout of the VideoGPT features stage (docs/formats.md,
"Features"): ``/{stimulus}/layer0`` float32 ``(n_TR, 17)`` for every stimulus of the fMRI
dataset's ``runs.tsv``, root attrs ``layers = [0]``, ``tr``, ``grid`` (the reference name),
``pooling = "none"`` and provenance; so the ``encode`` stage reads it unchanged.
``results/reference/{name}/summary.json`` has the keys of a pretraining summary that the
tables read (``n_params``, ``train_flops``, ``tokens_seen``, ``final_val_loss``,
``wall_time_s``, ``grid``, ``seed``, ``budget``), the reference's ``as_dict()`` columns, and
``planted``: the law's constants and its allocation (``a``, ``b``, ``G``, and ``N*``, ``D*``
at this point's budget).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexscale.errors import ConfigError, InputError, MissingInputError
from cortexscale.logs import get_logger
from cortexscale.stages.common import settings

if TYPE_CHECKING:
    import numpy as np

    from cortexscale.data.fmri import FmriDataset

__all__ = ["cmd_reference_features", "register", "write_reference"]

log = get_logger(__name__)


def _check_world_truth(ds: FmriDataset, fine: dict[str, np.ndarray]) -> None:
    """Every subject's recorded signal must come from these latents."""
    from cortexscale.features.planted import check_world
    from cortexscale.io.hdf5 import open_h5

    for subject in ds.subjects:
        path = ds.root / "truth" / f"{subject}.h5"
        if not path.is_file():
            raise MissingInputError(
                f"{path} does not exist: reference features need the synthetic world's truth "
                "(fmri.source synthetic)"
            )
        runs = ds.runs[ds.runs["subject"] == subject]
        with open_h5(path, "the synthetic world's truth (cortexscale fmri)") as f:
            check_world(fine, f, dict(zip(runs["run"], runs["stimulus"], strict=True)), ds.tr,
                        source=str(path))


def write_reference(
    name: str,
    sections: dict[str, Any],
    fmri_root: str | os.PathLike,
    out_h5: str | os.PathLike,
    out_summary: str | os.PathLike,
) -> dict[str, Any]:
    """Write the features and the summary of one reference point.

    Parameters
    ----------
    name : str
        A reference name (:mod:`cortexscale.references`), e.g. ``planted_c1e11_n20000_s0``.
    sections : dict
        Checked config sections ``fmri``, ``corpus`` (stimulus frame rate and size),
        ``seed`` (optional, default 0) and ``reference`` (its ``planted`` constants).
    fmri_root : path-like
        The synthetic fMRI dataset (``runs.tsv``, ``truth/``).
    out_h5, out_summary : path-like
        ``results/features/{name}.h5`` and ``results/reference/{name}/summary.json``.

    Returns
    -------
    summary : dict
        What was written to ``out_summary``.

    Raises
    ------
    ConfigError
        If ``name`` is not a reference name or the fMRI source is not synthetic.
    InputError
        If the dataset was not made by these sections
        (:func:`~cortexscale.features.planted.check_world`).
    MissingInputError
        If a subject's truth file (``truth/{subject}.h5``) is missing.
    """
    import h5py
    import numpy as np

    from cortexscale.data.fmri import FmriDataset
    from cortexscale.features.planted import (
        PlantedLaw,
        noise_rng,
        planted_features,
        random_features,
        tr_latents,
        world_latents,
    )
    from cortexscale.io.atomic import atomic_path, write_json
    from cortexscale.io.provenance import provenance
    from cortexscale.references import PLANTED_DEFAULTS, parse_reference

    t0 = time.perf_counter()
    point = parse_reference(name)
    if point is None:
        raise ConfigError(f"{name!r} is not a reference name: expected "
                         "'planted_c<budget>_n<n_params>_s<seed>', 'latents_s<seed>' or "
                         "'random_s<seed>'")
    fmri, corpus = sections["fmri"], sections["corpus"]
    if fmri.get("source") != "synthetic":
        raise ConfigError(f"reference features exist only for fmri.source synthetic; "
                         f"found {fmri.get('source')!r}")
    seed = int(sections.get("seed", 0))
    ref = sections.get("reference") or {}
    law = PlantedLaw.from_config({**PLANTED_DEFAULTS, **(ref.get("planted") or {})})

    ds = FmriDataset(fmri_root)
    fine = world_latents(fmri, seed, corpus["fps"] / corpus["time_stride"], corpus["height"],
                         corpus["width"])
    missing = sorted(set(ds.stimuli) - set(fine))
    if missing:
        raise InputError(f"{ds.root / 'runs.tsv'} names stimuli {missing} that the synthetic "
                         f"world of this config does not have ({sorted(fine)})")
    _check_world_truth(ds, fine)
    z = {s: tr_latents(fine[s], ds.stimulus_n_tr(s)) for s in ds.stimuli}  # (n_TR, 17)

    rng = noise_rng(seed, name)
    if point.kind == "planted":
        n, d = point.n_params, point.tokens
        loss = law.loss(n, d)
        feats = planted_features(z, loss - law.E, rng)
    elif point.kind == "latents":
        loss, feats = math.nan, planted_features(z, 0.0, rng)
    else:
        loss, feats = math.nan, random_features(z, rng)

    prov = provenance({"fmri": fmri, "corpus": corpus, "reference": ref}, stage="reference",
                      grid=name, study_seed=seed)
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["layers"] = np.asarray([0], dtype=np.int64)
        f.attrs["tr"] = ds.tr
        f.attrs["grid"] = name
        f.attrs["pooling"] = "none"
        f.attrs["kind"] = point.kind
        f.attrs.update(prov)
        for stim, x in feats.items():
            f.create_group(stim).create_dataset("layer0", data=x)

    n_opt, d_opt = law.optimum(point.budget) if point.kind == "planted" else (None, None)
    summary = {
        **point.as_dict(),
        "n_params": int(point.n_params),
        "tokens_seen": float(point.tokens),
        "train_flops": float(point.budget),
        "final_val_loss": loss,
        "wall_time_s": time.perf_counter() - t0,
        "n_features": int(next(iter(feats.values())).shape[1]),
        # exponent_n / exponent_d: a and b under the names of allocation.tsv's columns
        "planted": {**law.summary(), "exponent_n": law.a, "exponent_d": law.b,
                    "n_opt": n_opt, "d_opt": d_opt,
                    "excess": None if math.isnan(loss) else loss - law.E,
                    "law": "L(N, D) = E + A / N^alpha + B / D^beta; features = latents + "
                           "sqrt(L - E) * N(0, 1); N*(C) = G (C/6)^a, D*(C) = (C/6)^b / G"},
        **prov,
    }
    write_json(out_summary, summary)
    log.info(f"{name}: {point.kind}: {len(feats)} stimuli, loss {loss:.4g}, "
             f"{summary['wall_time_s']:.1f}s")
    return summary


def cmd_reference_features(args: argparse.Namespace) -> None:
    """Write the features and the summary of the reference point ``--name``."""
    s = settings(args, ["fmri", "corpus", "seed", "reference"])
    from cortexscale.io.atomic import prepare_outputs

    prepare_outputs([args.out, args.summary], "reference-features")
    write_reference(args.name, s, args.fmri_root, args.out, args.summary)


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the ``reference-features`` command (``add`` as in
    :func:`cortexscale.cli.build_parser`)."""
    p = add("reference-features", cmd_reference_features,
            "features of a reference point of the synthetic world (planted law, latents, random)")
    p.add_argument("--name", required=True, help="e.g. planted_c1e11_n20000_s0, latents_s0")
    p.add_argument("--fmri-root", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="results/features/NAME.h5")
    p.add_argument("--summary", required=True, type=Path,
                   help="results/reference/NAME/summary.json")
