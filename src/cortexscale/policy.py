"""The workflow's policies, in one place: output names, figures, GPUs per model, targets.

``workflow/rules/common.smk`` builds one :class:`Plan` of the study from the config and the
rule files pick their paths and settings from it; the stages that write the named files
import the names from here too, so a name is written once. Nothing here knows Snakemake: the
param functions (:func:`parent`, :meth:`Plan.mem_mb`, :func:`analyse_options`) take the
``wildcards``, ``input``, ``output`` and ``attempt`` arguments Snakemake passes by name.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cortexscale.config import check_config, read_yaml, section
from cortexscale.data.dataset_check import check_study_dataset
from cortexscale.grid import GridPoint, wildcard_regex
from cortexscale.grid import expand as expand_grid
from cortexscale.references import ReferencePoint, expand_references

__all__ = [
    "ALLOCATION_FIGURE", "ANALYSIS_FIGURES", "ANALYSIS_PAGES", "ANALYSIS_TABLES",
    "ENCODING_TABLE", "FITS_FIGURE", "FRONTIER_FIGURE", "IMAGE_SOURCES", "IMPORTED_SOURCES",
    "PARCEL_TABLE",
    "ISOFLOP_FIGURE", "NEVER", "PRETRAINED_FIGURE", "PRETRAINED_OPTIONS", "PRETRAINED_TABLES",
    "SCALING_FIGURES", "Plan", "analyse_options", "approx_params", "check_study", "device_for",
    "gpus_by_size", "has_test_images", "launcher", "one_of", "parent", "retry_scaled",
    "shell_words", "siblings", "threads_per_process",
]

#: the figures of the aggregate stage, in the order it draws them (under results/STUDY/figures)
SCALING_FIGURES = (
    "scaling_data_size.png", "scaling_params.png", "loss_curves.png", "precision.png",
    "factors.png",
)
#: the tables of the analyse stage (under results/STUDY/tables, each ``NAME.tsv`` with a
#: Parquet copy), in the order of its copies
ANALYSIS_TABLES = (
    "scaling_fits", "fit_curves", "frontier", "isoflop", "allocation", "comparisons",
)
#: the analyse tables shown as an HTML page in the report (every one but ``fit_curves``)
ANALYSIS_PAGES = ("scaling_fits", "frontier", "isoflop", "allocation", "comparisons")
#: the analyse stage's figures (``isoflop.png`` besides, when the study has IsoFLOP profiles)
FRONTIER_FIGURE, FITS_FIGURE, ALLOCATION_FIGURE = (
    "frontier.png", "scaling_fits.png", "allocation.png")
ANALYSIS_FIGURES = (FRONTIER_FIGURE, FITS_FIGURE, ALLOCATION_FIGURE)
#: the aggregate stage's tables (results/STUDY/tables/NAME.tsv)
ENCODING_TABLE, PARCEL_TABLE = "encoding", "parcels"
ISOFLOP_FIGURE = "isoflop.png"
#: the pretrained-model arm's tables (results/STUDY/tables) and figure (figures)
PRETRAINED_TABLES = ("pretrained.tsv", "pretrained_sample_size.tsv", "pretrained_fits.tsv")
PRETRAINED_FIGURE = "pretrained.png"
#: options of ``cortexscale analyse`` naming the pretrained tables, in PRETRAINED_TABLES order
PRETRAINED_OPTIONS = ("pretrained", "pretrained-sample-size", "pretrained-fits")
#: fMRI sources imported into results/ by rule ``fmri_import`` (another layout than ours)
IMPORTED_SOURCES = ("algonauts2025", "nifti")
#: image datasets: the pretrained arm reads them from ``fmri.root`` (no video, no fMRI check)
IMAGE_SOURCES = ("algonauts2023",)
#: a regex that matches nothing (a wildcard with no allowed value)
NEVER = r"(?!x)x"


# -- shell words and param functions ------------------------------------------------------


def shell_words(*values: Any) -> str:
    """Values as shell words, each quoted (names, paths): no config value reaches a shell
    unquoted. Every rule passes config-derived values through this, ``sections`` or
    :func:`parent`."""
    return " ".join(shlex.quote(str(v)) for v in values)


def one_of(names: Iterable[str]) -> str:
    """A regex that matches exactly ``names`` (for ``wildcard_constraints``); :data:`NEVER`
    when there are none."""
    return "|".join(re.escape(n) for n in names) or NEVER


def siblings(paths: Iterable[str], ext: str) -> list[str]:
    """The copies a stage writes beside each of ``paths`` under another suffix (a table's
    Parquet, a figure's SVG): declared as outputs, so that a failed job leaves none behind."""
    return [os.path.splitext(p)[0] + ext for p in paths]


def parent(name: str | int, levels: int = 1) -> Callable[..., str]:
    """A param function giving the folder of the named input or output file, shell-quoted.

    Parameters
    ----------
    name : str or int
        A key of the rule's inputs or outputs (a list: its first file), or an index into its
        outputs.
    levels : int
        Folders up (2: the grandparent).
    """

    def inner(wildcards: Any, input: Any, output: Any) -> str:  # noqa: A002 (Snakemake's name)
        if isinstance(name, int):
            path = output[name]
        else:
            path = {**dict(input.items()), **dict(output.items())}[name]
        if not isinstance(path, str):  # a named list of files
            path = path[0]
        for _ in range(levels):
            path = os.path.dirname(path)
        return shlex.quote(path)

    return inner


def analyse_options(wildcards: Any, input: Any, output: Any) -> str:  # noqa: A002
    """The optional arguments of ``cortexscale analyse``, from the rule's own files.

    ``--isoflop-figure`` for the ``isoflop_figure`` output (none: no IsoFLOP profiles), one
    option per pretrained table of the ``pretrained`` input (:data:`PRETRAINED_OPTIONS`), and
    ``--reference-summaries`` for the ``references`` input (when there are any).
    """
    words = [f"--isoflop-figure {shell_words(f)}" for f in output.isoflop_figure]
    words += [f"--{flag} {shell_words(path)}"  # the three tables, or none
              for flag, path in zip(PRETRAINED_OPTIONS, input.pretrained, strict=False)]
    if input.references:
        words.append(f"--reference-summaries {shell_words(*input.references)}")
    return " ".join(words)


def retry_scaled(base: float, factor: float = 1.0) -> Callable[[Any, int], int]:
    """A resource (memory in MB, time in minutes) that grows with the attempt number: the
    ``int(base x factor x attempt)`` of each retry."""
    return lambda wildcards, attempt: int(base * factor * attempt)


# -- devices and GPUs ---------------------------------------------------------------------


def device_for(cfg: Mapping[str, Any]) -> str:
    """Torch device string for training jobs: 'cuda' when the config asks for GPUs."""
    return "cuda" if cfg.get("resources", {}).get("gpu", 0) > 0 else "cpu"


def approx_params(point: GridPoint) -> int:
    """Approximate non-embedding parameter count of a grid point: 12 x layers x hidden^2."""
    return 12 * point.layers * point.hidden**2


def gpus_by_size(point: GridPoint, rules: Sequence[Mapping[str, int]], default: int) -> int:
    """GPUs of one grid point by ``resources.gpus_per_model``: the rule with the largest
    ``min_params`` that :func:`approx_params` reaches wins; ``default`` when none does."""
    gpus = default
    for rule in sorted(rules, key=lambda r: r["min_params"]):
        if approx_params(point) >= rule["min_params"]:
            gpus = rule["gpus"]
    return gpus


def launcher(gpus: int) -> str:
    """The command that runs ``cortexscale`` for a job with ``gpus`` GPUs: itself for one
    process, torchrun with one process per GPU for several."""
    if gpus > 1:
        return f"torchrun --standalone --nnodes 1 --nproc-per-node {gpus} -m cortexscale.cli"
    return "cortexscale"


def threads_per_process(threads: int, gpus: int) -> int:
    """Threads of each training process of a job (the job's threads are per GPU x GPUs)."""
    return max(1, threads // max(1, gpus))


# -- the study at start-up ----------------------------------------------------------------


def check_study(cfg: dict[str, Any], configfiles: Sequence[Any], read: Iterable[Any] = (),
                check_dataset: bool = True) -> dict[str, Any]:
    """The start-up checks of the workflow; return the full config (defaults filled).

    Every config file is read once more with :func:`cortexscale.config.read_yaml` (which
    names a malformed file and refuses a repeated key; Snakemake's reader does neither), the
    merged config is checked (:func:`cortexscale.config.check_config`) and, when
    ``check_dataset``, the dataset is checked against the study
    (:func:`cortexscale.data.dataset_check.check_study_dataset`).

    Parameters
    ----------
    cfg : dict
        The merged config, as Snakemake holds it.
    configfiles : sequence of path-likes
        The config files merged into it (``workflow.configfiles``); they name the study in
        messages.
    read : iterable of path-likes
        Files already read by :func:`~cortexscale.config.read_yaml` (the default config).
    check_dataset : bool
        False in the jobs that re-read the Snakefile (only the main process lists the
        dataset).

    Raises
    ------
    ConfigError, DatasetError
    """
    done = set(read)
    for path in configfiles:
        if path not in done:
            read_yaml(path)
    source = " + ".join(str(f) for f in configfiles) or "config"
    full = check_config(cfg, source)
    if check_dataset:
        check_study_dataset(full, source)
    return full


def has_test_images(root: str, subject: str) -> bool:
    """Whether an Algonauts 2023 release at ``root`` has the test images of ``subject``
    (``root/subject/test_split/test_images/*.png``): the challenge submission is made then."""
    folder = os.path.join(root, subject, "test_split", "test_images")
    return os.path.isdir(folder) and any(n.endswith(".png") for n in os.listdir(folder))


@dataclass(frozen=True)
class Plan:
    """What the workflow runs for one study: every path, name and setting its rules pick.

    Build it with :meth:`from_config` from the merged config, with defaults filled (as
    ``snakemake.utils.validate`` leaves it). Paths are relative to the working directory:
    ``results/STUDY/...`` and ``logs/STUDY/...``.
    """

    config: dict[str, Any]
    #: the ``pretrained_models`` section, validated, with defaults
    pretrained: dict[str, Any]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Plan:
        """The plan of the study ``config`` describes.

        Raises
        ------
        ConfigError
            If the ``pretrained_models`` section is invalid.
        """
        return cls(config, section("pretrained_models", config.get("pretrained_models")))

    # -- names, grid and references ---------------------------------------------------

    @property
    def study(self) -> str:
        return self.config["study"]

    @property
    def results(self) -> str:
        """One folder per study (config ``study``), so that studies never overwrite each other."""
        return f"results/{self.study}"

    @property
    def logs(self) -> str:
        return f"logs/{self.study}"

    @cached_property
    def points(self) -> list[GridPoint]:
        return expand_grid(self.config["grid"])

    @cached_property
    def grid_names(self) -> list[str]:
        return [p.name for p in self.points]

    @cached_property
    def point_by_name(self) -> dict[str, GridPoint]:
        return {p.name: p for p in self.points}

    @cached_property
    def references(self) -> list[ReferencePoint]:
        """Reference points of the synthetic world (config ``reference``)."""
        return expand_references(self.config)

    @cached_property
    def reference_names(self) -> list[str]:
        return [p.name for p in self.references]

    @property
    def reference_regex(self) -> str:
        return one_of(self.reference_names)

    @property
    def grid_regex(self) -> str:
        """The ``grid`` wildcard: a grid or a reference point."""
        return f"{wildcard_regex(self.points)}|{self.reference_regex}"

    @property
    def reference_summaries(self) -> list[str]:
        return [f"{self.results}/reference/{n}/summary.json" for n in self.reference_names]

    @property
    def subjects(self) -> list[str]:
        return list(self.config["subjects"])

    @property
    def rois(self) -> list[str]:
        return list(self.config["rois"])

    # -- resources ----------------------------------------------------------------------

    @property
    def threads(self) -> int:
        return self.config["resources"]["threads"]

    @property
    def gpus(self) -> int:
        return self.config["resources"]["gpu"]

    @property
    def device(self) -> str:
        return device_for(self.config)

    def gpus_for(self, name: str) -> int:
        """GPUs for one pretraining job: ``resources.gpus_per_model`` by model size, else
        ``gpu``. On the CPU (``gpu: 0``) every grid point trains in one process, whatever the
        table says."""
        if self.gpus == 0:
            return 0
        rules = self.config["resources"].get("gpus_per_model", [])
        return gpus_by_size(self.point_by_name[name], rules, self.gpus)

    def pretrain_threads(self, name: str) -> int:
        """Threads of one pretraining job: ``resources.threads`` per GPU (one on the CPU)."""
        return self.threads * max(1, self.gpus_for(name))

    def mem_mb(self, factor: float = 1.0) -> Callable[[Any, int], int]:
        """Memory request that grows with the attempt number (for retries)."""
        return retry_scaled(self.config["resources"]["mem_mb"], factor)

    def runtime(self, factor: float = 1.0) -> Callable[[Any, int], int]:
        """Time limit in minutes, growing with the attempt number."""
        return retry_scaled(self.config["resources"]["runtime"], factor)

    # -- config sections of the jobs --------------------------------------------------------

    def sections(self, *keys: str) -> str:
        """The config sections a job needs, as one shell-quoted JSON argument.

        Passing only these sections means a change to one stage's settings reruns only that
        stage (Snakemake's params trigger).
        """
        cfg = self.config
        return shlex.quote(json.dumps({k: cfg[k] for k in keys if k in cfg}, sort_keys=True))

    @property
    def corpus_sections(self) -> str:
        """Only what the corpus depends on (not all of grid and pretrain: a new seed, budget or
        learning rate must not rebuild the corpus and everything after it)."""
        cfg = self.config
        return shlex.quote(json.dumps(
            {"corpus": cfg["corpus"], "seed": cfg.get("seed", 0),
             "pretrain": {"eval_clips": cfg["pretrain"]["eval_clips"]}},
            sort_keys=True,
        ))

    @property
    def corpus_sizes(self) -> list[int]:
        """The corpus job's nested subsets: the grid's data sizes (none: an isoflop grid uses
        the pool)."""
        grid = self.config["grid"]
        return [] if grid["mode"] == "isoflop" else [int(s) for s in grid["data_sizes"]]

    @property
    def single_epoch_flag(self) -> str:
        return "--single-epoch" if self.config["grid"].get("single_epoch") else ""

    # -- data -------------------------------------------------------------------------------

    @property
    def corpus(self) -> str:
        return f"{self.results}/data/corpus/frames.h5"

    @property
    def fmri_source(self) -> str:
        return self.config["fmri"]["source"]

    @property
    def synthetic_fmri(self) -> bool:
        return self.fmri_source == "synthetic"

    @property
    def imported_fmri(self) -> bool:
        """Real datasets in another layout are imported into results/ (rule fmri_import)."""
        return self.fmri_source in IMPORTED_SOURCES

    @property
    def fmri_in_results(self) -> bool:
        return self.synthetic_fmri or self.imported_fmri

    @property
    def fmri_root(self) -> str:
        """The fMRI dataset of the video stages: under results/ when made or imported there,
        else the user's prepared dataset (``fmri.root``)."""
        return f"{self.results}/data/fmri" if self.fmri_in_results else self.config["fmri"]["root"]

    @property
    def fmri_runs(self) -> str:
        return f"{self.fmri_root}/runs.tsv"

    @property
    def fmri_root_arg(self) -> str:
        """The fMRI folder as one shell word: a prepared dataset's root is the user's own path."""
        return shlex.quote(self.fmri_root)

    @property
    def fmri_check_inputs(self) -> list[str]:
        """The dataset the fMRI check reads, when it is under results/ (a user's own dataset
        is a parameter, not an input: its folder lies outside results/)."""
        return [self.fmri_runs] if self.fmri_in_results else []

    @property
    def fmri_check_root(self) -> str | Callable[..., str]:
        """The ``--fmri-root`` of the fMRI check: the folder of its ``runs`` input, else the
        prepared dataset's root."""
        return parent("runs") if self.fmri_in_results else self.fmri_root_arg

    @property
    def atlas(self) -> list[str]:
        """Labels atlases of the brain maps (none: no map): the synthetic world's own in MNI
        space; each Algonauts 2025 subject's, copied from the release by fmri_import."""
        if self.synthetic_fmri:
            return [f"{self.fmri_root}/atlas.nii.gz"]
        if self.fmri_source == "algonauts2025":
            return [f"{self.fmri_root}/atlas/{s}.nii.gz" for s in self.subjects]
        return []

    @property
    def fmri_marker(self) -> str:
        return f"{self.results}/checks/fmri.json"

    @property
    def vqvae(self) -> str:
        return f"{self.results}/tokenizer/vqvae.pt"

    @property
    def tokens(self) -> str:
        return f"{self.results}/tokenizer/tokens.h5"

    # -- tables and figures -----------------------------------------------------------------

    def table(self, name: str) -> str:
        """``results/STUDY/tables/NAME.tsv``."""
        return f"{self.results}/tables/{name}.tsv"

    def figure(self, name: str) -> str:
        """``results/STUDY/figures/NAME`` (``name`` with its suffix)."""
        return f"{self.results}/figures/{name}"

    @property
    def encoding_table(self) -> str:
        return self.table(ENCODING_TABLE)

    @property
    def parcel_table(self) -> str:
        return self.table(PARCEL_TABLE)

    @property
    def summary(self) -> str:
        return f"{self.results}/summary.md"

    @property
    def frontier_figure(self) -> str:
        return self.figure("frontier.png")

    @property
    def brain_map(self) -> str:
        return self.figure("brain_map.png")

    @property
    def scaling_figures(self) -> list[str]:
        return [self.figure(n) for n in SCALING_FIGURES]

    @property
    def has_budgets(self) -> bool:
        """IsoFLOP profiles exist when the grid has budgets or a planted reference is run."""
        return self.config["grid"].get("mode") == "isoflop" or any(
            r.kind == "planted" for r in self.references
        )

    @property
    def isoflop_figures(self) -> list[str]:
        """The IsoFLOP figure when the study has profiles (:attr:`has_budgets`), else none."""
        return [self.figure(ISOFLOP_FIGURE)] * self.has_budgets

    @property
    def analysis_tables(self) -> list[str]:
        return [self.table(n) for n in ANALYSIS_TABLES]

    @property
    def analysis_figures(self) -> list[str]:
        return [self.figure(n) for n in ANALYSIS_FIGURES] + self.isoflop_figures

    @property
    def analysis_pages(self) -> list[str]:
        """The summary's and the tables' HTML pages (cortexscale.report.html)."""
        return [f"{self.results}/summary.html"] + [
            f"{self.results}/tables/{n}.html" for n in ANALYSIS_PAGES
        ]

    @property
    def analysis_pretrained(self) -> list[str]:
        """The pretrained arm's tables the summary covers, when the study has that arm."""
        return self.pretrained_tables[:3] if self.pre_models else []

    # -- the pretrained-model arm ------------------------------------------------------------

    @property
    def pre_root(self) -> str:
        return f"{self.results}/pretrained"

    @cached_property
    def pre_models(self) -> dict[str, dict[str, Any]]:
        """Models by name. Models given as a path or hub id are params, not inputs; models
        with ``build`` are made by the workflow."""
        return {m["name"]: m for m in self.pretrained["models"]}

    @property
    def pre_built(self) -> list[str]:
        return [n for n, m in self.pre_models.items() if m.get("build")]

    @cached_property
    def pre_ensembles(self) -> dict[str, list[str]]:
        return {e["name"]: e["members"] for e in self.pretrained["ensembles"]}

    @property
    def image_fmri(self) -> bool:
        return self.fmri_source in IMAGE_SOURCES

    @property
    def pre_fmri_inputs(self) -> list[str]:
        """The fMRI check the pretrained features wait for: a video dataset's (an image
        dataset is read from its release and not checked by the workflow)."""
        return [] if self.image_fmri else [self.fmri_marker]

    @property
    def pretrained_tables(self) -> list[str]:
        """The pretrained arm's three tables, then its figure."""
        return [f"{self.results}/tables/{n}" for n in PRETRAINED_TABLES] + [
            self.figure(PRETRAINED_FIGURE)
        ]

    def pre_model_dir(self, name: str) -> str:
        return f"{self.pre_root}/models/{name}"

    def pre_model_inputs(self, name: str) -> list[str]:
        """The folder of a model the workflow builds; none for a model given by path."""
        return [self.pre_model_dir(name)] if self.pre_models[name].get("build") else []

    def pre_source_arg(self, name: str) -> str:
        """The ``--model`` of a pretrained model, shell-quoted: its built folder or its path."""
        m = self.pre_models[name]
        return shlex.quote(self.pre_model_dir(name) if m.get("build") else m["path"])

    @property
    def pre_stimuli_arg(self) -> str:
        """Where the pretrained stages read the stimuli: an image dataset's release root, else
        the video fMRI dataset."""
        if self.image_fmri:
            return f"--nsd-root {shlex.quote(self.config['fmri'].get('root', ''))}"
        return f"--fmri-root {self.fmri_root_arg}"

    @cached_property
    def pre_submission(self) -> bool:
        """Whether the encode jobs write the Algonauts 2023 challenge submission: an image
        dataset whose every subject has the release's test images."""
        root = self.config["fmri"].get("root", "")
        return self.image_fmri and all(has_test_images(root, s) for s in self.subjects)

    def pre_submission_files(self, model: str = "{model}", subject: str = "{subject}") -> list[str]:
        """The submission of one model and subject (the rule's wildcards by default)."""
        if not self.pre_submission:
            return []
        return [f"{self.pre_root}/submission/{model}/{subject}/{h}_pred_test.npy"
                for h in ("lh", "rh")]

    def pre_submission_arg(self, model: str, subject: str) -> str:
        """``--submission-dir`` of one encode job (empty without a submission)."""
        files = self.pre_submission_files(model, subject)
        return f"--submission-dir {shlex.quote(os.path.dirname(files[0]))}" if files else ""

    @property
    def pre_submissions(self) -> list[str]:
        """Every challenge submission of the study (none without test images)."""
        return [f for m in self.pre_models for s in self.subjects
                for f in self.pre_submission_files(m, s)]

    # -- final targets -------------------------------------------------------------------------

    @property
    def videogpt_targets(self) -> list[str]:
        """The VideoGPT arm's results (none when ``pretrained_models.only``)."""
        if self.pretrained["only"]:
            return []
        return [self.encoding_table, *self.scaling_figures, self.summary, self.frontier_figure]

    @property
    def pretrained_targets(self) -> list[str]:
        """The pretrained arm's tables, figure and challenge submissions (none without models)."""
        return self.pretrained_tables + self.pre_submissions if self.pre_models else []

    @property
    def targets(self) -> list[str]:
        """What ``rule all`` asks for: the VideoGPT arm's results with the brain map (when the
        dataset has an atlas), then the pretrained arm's."""
        videogpt = self.videogpt_targets
        brain_map = [self.brain_map] if self.atlas and videogpt else []
        return videogpt + brain_map + self.pretrained_targets
