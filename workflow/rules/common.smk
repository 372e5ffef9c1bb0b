# Shared names, the expanded grid, wildcard constraints and input functions.
# No stage logic lives here: every rule calls `cortexscale STAGE`.

import json
import os
import re
import shlex

from cortexscale.config import device_for
from cortexscale.grid import expand as expand_grid
from cortexscale.grid import wildcard_regex

RESULTS = "results"
LOGS = "logs"
POINTS = expand_grid(config["grid"])
GRID_NAMES = [p.name for p in POINTS]
SUBJECTS = list(config["subjects"])
ROIS = list(config["rois"])
THREADS = config["resources"]["threads"]
GPUS = config["resources"]["gpu"]
DEVICE = device_for(config)

CORPUS = f"{RESULTS}/data/corpus/frames.h5"
SYNTHETIC_FMRI = config["fmri"]["source"] == "synthetic"
# real datasets in another layout are imported into results/ (rule fmri_import)
IMPORTED_FMRI = config["fmri"]["source"] in ("algonauts2025", "nifti", "algonauts2023")
FMRI_IN_RESULTS = SYNTHETIC_FMRI or IMPORTED_FMRI
FMRI_ROOT = f"{RESULTS}/data/fmri" if FMRI_IN_RESULTS else config["fmri"]["root"]
FMRI_RUNS = f"{FMRI_ROOT}/runs.tsv"
# the synthetic world ships a labels atlas in MNI space, so its results can be mapped
ATLAS = f"{FMRI_ROOT}/atlas.nii.gz" if SYNTHETIC_FMRI else None
FMRI_MARKER = f"{RESULTS}/checks/fmri.json"
VQVAE = f"{RESULTS}/tokenizer/vqvae.pt"
TOKENS = f"{RESULTS}/tokenizer/tokens.h5"
ENCODING_TABLE = f"{RESULTS}/tables/encoding.tsv"
PARCEL_TABLE = f"{RESULTS}/tables/parcels.tsv"
SUMMARY = f"{RESULTS}/summary.md"
FRONTIER_FIGURE = f"{RESULTS}/figures/frontier.png"
BRAIN_MAP = f"{RESULTS}/figures/brain_map.png"
SCALING_FIGURES = [
    f"{RESULTS}/figures/scaling_data_size.png",
    f"{RESULTS}/figures/scaling_params.png",
    f"{RESULTS}/figures/loss_curves.png",
    f"{RESULTS}/figures/precision.png",
]


wildcard_constraints:
    grid=wildcard_regex(POINTS),
    subject="|".join(re.escape(s) for s in SUBJECTS),
    roi="|".join(re.escape(r) for r in ROIS),


def sections(*keys):
    """The config sections a job needs, as one shell-quoted JSON argument.

    Passing only these sections means a change to one stage's settings reruns
    only that stage (Snakemake's params trigger).
    """
    return shlex.quote(json.dumps({k: config[k] for k in keys if k in config}, sort_keys=True))


def mem_mb(factor=1.0):
    """Memory request that grows with the attempt number (for retries)."""
    base = config["resources"]["mem_mb"]
    return lambda wildcards, attempt: int(base * factor * attempt)


def runtime(factor=1.0):
    """Time limit in minutes, growing with the attempt number."""
    base = config["resources"]["runtime"]
    return lambda wildcards, attempt: int(base * factor * attempt)


def encoding_outputs(ext):
    """Every encoding output of the study (one per grid point x subject x ROI)."""
    return expand(
        f"{RESULTS}/encoding/{{grid}}/{{subject}}/{{roi}}.{ext}",
        grid=GRID_NAMES,
        subject=SUBJECTS,
        roi=ROIS,
    )


def parent(name):
    """A param function giving the folder of the named input or output file."""

    def inner(wildcards, input, output):
        files = {**dict(input.items()), **dict(output.items())}
        return os.path.dirname(files[name])

    return inner
