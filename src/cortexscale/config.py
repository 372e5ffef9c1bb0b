"""Study configuration: load, fill defaults, validate against the JSON schema, check semantics.

The same checks run when the workflow starts (the Snakefile calls :func:`check_config`
after ``snakemake.utils.validate``) and when the CLI starts, so a bad config stops a run
before any job with a message that names the key, what is allowed and what was given.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cortexscale.errors import ConfigError, MissingInputError
from cortexscale.grid import (
    MIN_STEPS,
    expand,
    flops_per_token,
    format_budget,
    model_configs,
    steps_for,
)
from cortexscale.labels import POOLED

SCHEMA_PATH = Path(str(resources.files("cortexscale") / "resources" / "config.schema.yaml"))




def _is_number(checker: Any, instance: Any) -> bool:
    """JSON-schema ``number``: finite ints and floats only (YAML's .nan and .inf are not)."""
    return (
        isinstance(instance, int | float)
        and not isinstance(instance, bool)
        and math.isfinite(instance)
    )


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON-schema ``integer``: Python ints only (``20.0`` is not a count of steps)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


# Draft 2020-12 with two stricter types: the standard admits NaN and infinity as numbers
# (they pass every bound, since comparisons with NaN are false) and 20.0 as an integer.
StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_number, "integer": _is_integer}
    ),
)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"key {key!r} is given twice in one mapping (lines {seen[key]} and {line}); "
                f"expected each key once",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML config file safely, refusing duplicated keys.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ConfigError
        If the file is not valid YAML or repeats a key; the message names the file, the
        line and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"config file {path} does not exist")
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)  # a SafeLoader: no objects built
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None


@functools.cache
def load_schema() -> dict[str, Any]:
    """Return the config JSON schema as a dict, parsed once per process.

    Shared by every caller: read it, never modify it (validation fills defaults into deep
    copies).
    """
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _key(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<root>"


def _describe(error: jsonschema.ValidationError) -> str:
    """Turn a jsonschema error into 'key: allowed ...; found ...'."""
    key = _key(error.absolute_path)
    v = error.validator
    given = json.dumps(error.instance, default=str)
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return (
            f"unknown key(s) {', '.join(repr(e) for e in extra)} in '{key}'; "
            f"allowed keys: {', '.join(allowed)}"
        )
    if v == "required":
        return f"'{key}' lacks a required key: {error.message}"
    if v == "enum":
        return f"'{key}' must be one of {error.validator_value}; found {given}"
    if v == "type":
        inst = error.instance
        if isinstance(inst, float) and not math.isfinite(inst):
            return f"'{key}' must be a finite {error.validator_value}; found {inst}"
        if isinstance(inst, float) and error.validator_value == "integer":
            return f"'{key}' must be an integer (no decimal point); found {inst!r}"
        return f"'{key}' must be of type {error.validator_value}; found {given}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"'{key}' must satisfy {v} {error.validator_value}; found {given}"
    if v == "pattern":
        return f"'{key}' must match the pattern {error.validator_value!r}; found {given}"
    return f"'{key}': {error.message}"


def _fill_defaults(instance: Any, schema: dict[str, Any]) -> None:
    """Insert schema defaults for missing keys, recursively (in place)."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub)


def validate_schema(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``cfg`` against the schema and return a copy with defaults filled.

    Parameters
    ----------
    cfg : dict
        The study configuration as loaded from YAML.
    source : str
        What to call the config in messages (usually its file name).

    Raises
    ------
    ConfigError
        Listing every violation, each naming the key, what is allowed and what was given.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: the config must be a mapping of keys; found {type(cfg).__name__}")
    return _validate_with(load_schema(), cfg, source)


def _check_grid(cfg: dict[str, Any], problems: list[str]) -> None:
    grid = cfg["grid"]
    isoflop = grid.get("mode") == "isoflop"
    for hidden, _layers, heads in model_configs(grid):
        if hidden < heads:
            problems.append(
                f"grid: hidden size {hidden} with {heads} heads gives an empty attention head "
                f"(hidden // heads = 0); hidden must be at least the number of heads"
            )
    corpus = cfg["corpus"]
    frames_per_clip = corpus["clip_len"] * corpus["time_stride"]
    sizes = [] if isoflop else grid["data_sizes"]
    for size in sizes:
        if size < frames_per_clip:
            problems.append(
                f"grid.data_sizes: {size} frames is less than one clip "
                f"(corpus.clip_len x corpus.time_stride = {frames_per_clip} frames)"
            )
    eval_clips = cfg["pretrain"]["eval_clips"]
    pool = None  # training clips of the synthetic corpus (the rest is the validation set)
    if corpus["source"] == "synthetic":
        clips_per_source = corpus["frames_per_source"] // frames_per_clip
        available = corpus["n_sources"] * clips_per_source
        pool = available - eval_clips
        for size in sizes:
            needed = size // frames_per_clip
            if needed > available:
                problems.append(
                    f"grid.data_sizes: {size} frames needs {needed} clips but the synthetic "
                    f"corpus (corpus.n_sources x corpus.frames_per_source = "
                    f"{corpus['n_sources']} x {corpus['frames_per_source']}) holds {available}"
                )
            elif needed > pool:
                problems.append(
                    f"grid.data_sizes: {size} frames needs {needed} clips but the training "
                    f"pool holds {max(pool, 0)}: the synthetic corpus's {available} clips less "
                    f"the pretrain.eval_clips = {eval_clips} validation clips reserved before "
                    f"the subsets are drawn; allowed: at most {max(pool, 0) * frames_per_clip} "
                    "frames (or a larger corpus)"
                )
        if available < eval_clips + 1:
            problems.append(
                f"pretrain.eval_clips: {eval_clips} validation clips need a corpus of more "
                f"than {eval_clips} clips; the synthetic corpus holds {available}"
            )
    else:
        if "path" not in corpus:
            problems.append(f"corpus.path is required when corpus.source is {corpus['source']!r}")
    _check_lengths(cfg, pool, problems)
    n_layers_min = min(layers for _, layers, _ in model_configs(grid))
    for k in cfg["features"]["layers"]:
        if not -n_layers_min <= k < n_layers_min:
            problems.append(
                f"features.layers: block {k} does not exist in every model; the smallest "
                f"grid model has {n_layers_min} blocks (allowed {-n_layers_min}..{n_layers_min - 1})"
            )


def _check_lengths(cfg: dict[str, Any], pool: int | None, problems: list[str]) -> None:
    """Budgets and token counts: representable in names, enough steps, single epoch.

    ``pool`` is the training pool in clips (synthetic corpus; ``None`` when only the corpus
    stage can count it: the pretrain stage then checks ``single_epoch``).
    """
    grid, pre, corpus, tok = cfg["grid"], cfg["pretrain"], cfg["corpus"], cfg["tokenizer"]
    isoflop = grid.get("mode") == "isoflop"
    if isoflop:
        for b in grid["budgets"]:
            value = float(b)
            if value < 1:
                problems.append(f"grid.budgets: expected FLOPs >= 1; found {b!r}")
            elif not math.isclose(float(format_budget(value)), value, rel_tol=1e-12):
                problems.append(
                    f"grid.budgets: {value:.6g} has more than 3 significant digits; grid-point names "
                    f"carry 3, so write {format_budget(value)} (or another 3-digit value)"
                )
    shape = [n // max(1, d) for n, d in zip(
        (corpus["clip_len"], corpus["height"], corpus["width"]), tok["downsample"], strict=True)]
    n_tok = shape[0] * shape[1] * shape[2]
    if n_tok < 1:
        return  # _check_tokenizer names the factor that does not divide
    context = n_tok * (2 if pre["conditioned"] else 1)
    batch, warmup = pre["batch_size"], pre["warmup_steps"]
    least = max(warmup + 1, MIN_STEPS)
    frames_per_clip = corpus["clip_len"] * corpus["time_stride"]
    seen: set[tuple[Any, ...]] = set()
    for point in expand(grid):
        if point.budget and point.budget < 1:
            continue
        key = (point.budget, point.tokens, point.data_size,
               point.model_key if point.budget else None)
        if key in seen or not (point.budget or point.tokens or grid["single_epoch"]):
            continue
        seen.add(key)
        fpt = flops_per_token(point.hidden, point.layers, point.heads, tok["codebook_size"],
                              context)
        steps = steps_for(point, fpt, context, n_tok, batch, pre["steps"])
        model = (f"model h{point.hidden}_l{point.layers}_a{point.heads}" if point.budget
                 else "every model")
        if point.budget:
            what = (f"budget {format_budget(point.budget)} gives {model} {steps} steps "
                    f"({format_budget(point.budget)} FLOPs / (pretrain.batch_size {batch} "
                    f"clips x {context} positions x {fpt:,} FLOPs per position), rounded)")
            where = "grid.budgets"
        else:
            what = (f"{point.tokens} tokens give {model} {steps} steps ({point.tokens} / "
                    f"(pretrain.batch_size {batch} clips x {n_tok} tokens), rounded)")
            where = "grid.tokens"
        if (point.budget or point.tokens) and steps < least:
            problems.append(
                f"{where}: {what}; allowed: at least {least} (more than pretrain.warmup_steps "
                f"= {warmup}, and at least {MIN_STEPS}); raise it, or lower pretrain.batch_size "
                "or pretrain.warmup_steps"
            )
        if grid["single_epoch"] and pool is not None:
            have = pool if point.budget else min(pool, point.data_size // frames_per_clip)
            clips = steps * batch
            if clips > have:
                data = ("the training pool" if point.budget
                        else f"data size {point.data_size} frames")
                asked = (f"budget {format_budget(point.budget)}" if point.budget
                         else f"{point.tokens} tokens" if point.tokens
                         else f"pretrain.steps = {steps}")
                problems.append(
                    f"grid.single_epoch: {asked} trains {model} on {clips} clips "
                    f"({steps} steps x {batch}; {clips * n_tok:,} tokens) but {data} holds "
                    f"{have} clips ({have * n_tok:,} tokens); allowed: at most {have} clips in "
                    "one epoch; lower it, enlarge the corpus, or set grid.single_epoch: false"
                )


def _check_tokenizer(cfg: dict[str, Any], problems: list[str]) -> None:
    corpus, tok = cfg["corpus"], cfg["tokenizer"]
    dims = {"clip_len": corpus["clip_len"], "height": corpus["height"], "width": corpus["width"]}
    for (name, size), factor in zip(dims.items(), tok["downsample"], strict=True):
        if size % factor:
            problems.append(
                f"tokenizer.downsample: factor {factor} does not divide corpus.{name} = {size}"
            )


def _check_fmri(cfg: dict[str, Any], problems: list[str]) -> None:
    fmri = cfg["fmri"]
    if fmri["source"] == "synthetic":
        n_train = fmri["n_runs"] - fmri["repeated_runs"]
        if n_train < 2:
            problems.append(
                f"fmri.repeated_runs: {fmri['repeated_runs']} test runs out of fmri.n_runs = "
                f"{fmri['n_runs']} leaves {n_train} training run(s); cross-validation needs 2"
            )
        if fmri["n_parcels"] < len(cfg["rois"]):
            problems.append(
                f"fmri.n_parcels: {fmri['n_parcels']} parcels cannot cover the "
                f"{len(cfg['rois'])} ROIs in 'rois'"
            )
    elif "root" not in fmri:
        problems.append(f"fmri.root is required when fmri.source is {fmri['source']!r}")
    if fmri["source"] == "algonauts2023" and not cfg.get("pretrained_models", {}).get("only"):
        problems.append(
            "fmri.source: 'algonauts2023' holds still images, which only the pretrained-model "
            "arm encodes; expected pretrained_models.only: true, found "
            f"{cfg.get('pretrained_models', {}).get('only', False)!r}")
    enc = cfg["encoding"]
    if fmri["source"] == "synthetic":
        # the other sources' run lengths are known from the data: the encode stage checks them
        _check_run_windows(enc, fmri["trs_per_run"], "fmri.trs_per_run", problems)
    if enc["alphas"]["min"] > enc["alphas"]["max"]:
        problems.append(
            f"encoding.alphas: min ({enc['alphas']['min']}) is larger than max "
            f"({enc['alphas']['max']})"
        )
    if cfg["pretrain"]["min_lr"] > cfg["pretrain"]["lr"]:
        problems.append(
            f"pretrain.min_lr ({cfg['pretrain']['min_lr']}) is larger than pretrain.lr "
            f"({cfg['pretrain']['lr']})"
        )


def _check_pretrained(pre: dict[str, Any], problems: list[str]) -> None:
    """Names, sources and ensemble members of a filled ``pretrained_models`` section."""
    names = [m["name"] for m in pre.get("models", [])]
    ens = [e["name"] for e in pre.get("ensembles", [])]
    for n in sorted({n for n in names + ens if (names + ens).count(n) > 1}):
        problems.append(f"pretrained_models: name {n!r} is used more than once (models and "
                        "ensembles)")
    for m in pre.get("models", []):
        if bool(m.get("path")) == bool(m.get("build")):
            problems.append(f"pretrained_models: model {m['name']!r}: give exactly one of "
                            "'path' (a folder or a cached hub id) or 'build' (a tiny random "
                            "model)")
    for e in pre.get("ensembles", []):
        unknown = [x for x in e["members"] if x not in names]
        if unknown:
            problems.append(f"pretrained_models: ensemble {e['name']!r}: member(s) {unknown} "
                            f"are not in pretrained_models.models {names}")


def check_models_config(pre: dict[str, Any]) -> None:
    """Semantic checks of a filled ``pretrained_models`` section (names, sources, members).

    Raises
    ------
    ConfigError
        Listing every problem.
    """
    problems: list[str] = []
    _check_pretrained(pre, problems)
    if problems:
        raise ConfigError("\n".join(f"  - {p}" for p in problems))


def _check_run_windows(enc: dict[str, Any], n_trs: int, what: str, problems: list[str]) -> None:
    """FIR delays must leave samples in the shortest run (``n_trs`` TRs, named ``what``)."""
    longest = max(abs(int(d)) for d in enc["delays"])
    if longest >= n_trs:
        problems.append(
            f"encoding.delays: a delay of {longest} TRs does not fit runs of {n_trs} TRs "
            f"({what}); expected delays shorter than the shortest run"
        )


def check_semantics(cfg: dict[str, Any], source: str = "config") -> None:
    """Check what the schema cannot: combinations that cannot run.

    Raises
    ------
    ConfigError
        Listing every problem found.
    """
    problems: list[str] = []
    _check_pretrained(cfg.get("pretrained_models", {}), problems)
    _check_grid(cfg, problems)
    _check_tokenizer(cfg, problems)
    _check_fmri(cfg, problems)
    for key in ("rois", "subjects"):
        if POOLED in cfg.get(key, []):
            problems.append(f"{key}: {POOLED!r} is the label of the tables' pooled rows; "
                            "name the ROI or subject otherwise")
    from cortexscale.references import check_reference

    problems.extend(check_reference(cfg))
    if not expand(cfg["grid"]):
        problems.append("grid: the grid expands to no grid point")
    if problems:
        lines = "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
        raise ConfigError(f"{source} describes a study that cannot run:\n{lines}")


def check_config(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate against the schema, fill defaults, check semantics; return the full config."""
    full = validate_schema(cfg, source)
    check_semantics(full, source)
    return full


def load_config(path: str | Path) -> dict[str, Any]:
    """Load a YAML study config and return it validated, with defaults filled.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ConfigError
        If the YAML cannot be parsed or the config is invalid.
    """
    cfg = read_yaml(path)
    return check_config(cfg if cfg is not None else {}, str(path))


def default_config_path() -> Path:
    """``config/config.yaml`` of the repository this package runs from: the study that the
    Snakefile loads before any ``--configfile``."""
    return Path(__file__).resolve().parents[2] / "config" / "config.yaml"


def load_study(path: str | Path, base: str | Path | None = None) -> dict[str, Any]:
    """Load a study file as Snakemake runs it: merged over ``base`` (default
    :func:`default_config_path`), exactly as ``--configfile`` merges, then validated with every
    semantic check, every problem listed at once.

    Parameters
    ----------
    path : path-like
        The study file (``config/studies/*.yaml`` or the user's own).
    base : path-like, optional
        The config it extends; the study itself when it is the default config.

    Raises
    ------
    FileNotFoundError, ConfigError
    """
    path = Path(path)
    base = Path(base) if base is not None else default_config_path()
    study = read_yaml(path)
    if study is None:
        study = {}
    if not isinstance(study, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys; found "
                          f"{type(study).__name__}")
    if base.resolve() == path.resolve():
        return check_config(study, str(path))
    default = read_yaml(base) or {}
    return check_config(merge(default, study), f"{path} (merged over {base})")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` onto ``base`` (as Snakemake merges ``--configfile``)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def validate_sections(sections: dict[str, Any], source: str = "sections") -> dict[str, Any]:
    """Validate some top-level sections of a config, each against its part of the schema.

    The workflow passes each job only the sections it needs (so that changing one
    stage's settings reruns only that stage); the CLI checks them with this.

    Returns
    -------
    sections : dict
        A copy with defaults filled.
    """
    schema = load_schema()
    props = schema["properties"]
    unknown = sorted(set(sections) - set(props))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed keys: {', '.join(sorted(props))}"
        )
    sub_schema = {**schema, "required": [], "properties": {k: props[k] for k in sections}}
    return _validate_with(sub_schema, sections, source)


def section(name: str, cfg: dict[str, Any] | None) -> dict[str, Any]:
    """Validate one top-level section (e.g. ``pretrain``) and return it with defaults.

    Every stage checks its settings with this, against the same schema as the workflow.

    Raises
    ------
    ConfigError
        Naming the key, what is allowed and what was given.
    """
    return validate_sections({name: {} if cfg is None else cfg}, f"config section {name!r}")[name]


def _validate_with(schema: dict[str, Any], cfg: dict[str, Any], source: str) -> dict[str, Any]:
    validator = StrictValidator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(f"{source} is not a valid cortexscale config:\n{lines}")
    out = copy.deepcopy(cfg)
    _fill_defaults(out, schema)
    return out

