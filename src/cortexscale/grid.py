"""The sweep grid: its points, their stable readable names, and their training lengths.

Three modes (``grid.mode``):

- ``one_at_a_time`` / ``product``: data sizes x model configs (the base with each factor
  varied alone, or every combination) x training lengths (``grid.tokens``; none: every
  point trains ``pretrain.steps`` steps) x precisions x seeds. Names
  ``d{data_size}_h{hidden}_l{layers}_a{heads}_{precision}[_t{tokens}]_s{seed}``, e.g.
  ``d100000_h576_l8_a4_fp16_s0`` or ``d2048_h64_l2_a2_fp32_t409600_s1``.
- ``isoflop`` (Hoffmann et al. 2022, approach 2): compute budgets x models x precisions x
  seeds; each point trains on the whole training pool for as many steps as its budget buys
  (:func:`steps_for`). Names ``c{budget}_h{hidden}_l{layers}_a{heads}_{precision}_s{seed}``,
  the budget in training FLOPs with 3 significant digits and no ``+``: ``c1e11_...``,
  ``c3.16e12_...``.

The name is the Snakemake wildcard that identifies a pretrained model; :func:`parse_name`
inverts :attr:`GridPoint.name` exactly. Nothing here imports torch: the config checks use
:func:`flops_per_token`, the same count as :func:`cortexscale.models.gpt.flops_per_token`
(a test keeps the two equal).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PRECISIONS = ("fp32", "fp16", "bf16")
FACTORS = ("hidden", "layers", "heads")
MODES = ("one_at_a_time", "product", "isoflop")
FAMILY = "videogpt"
#: Fewest optimizer steps a budget or token count may buy (the config checks; see also
#: ``pretrain.warmup_steps``, which every such point must exceed).
MIN_STEPS = 10
_NUM = r"[1-9](?:\.\d{1,2})?e\d+"
_NAME_RE = re.compile(
    rf"^(?:c(?P<budget>{_NUM})|d(?P<data>\d+))_h(?P<hidden>\d+)_l(?P<layers>\d+)"
    r"_a(?P<heads>\d+)_(?P<precision>fp32|fp16|bf16)(?:_t(?P<tokens>\d+))?_s(?P<seed>\d+)$"
)
_NAME_FORMS = (
    "'d<data_size>_h<hidden>_l<layers>_a<heads>_<fp32|fp16|bf16>[_t<tokens>]_s<seed>' or "
    "'c<budget, e.g. 3.16e12>_h<hidden>_l<layers>_a<heads>_<fp32|fp16|bf16>_s<seed>'"
)


def format_budget(budget: float) -> str:
    """A FLOP budget as it appears in names: 3 significant digits, no ``+`` (``3.16e12``)."""
    if not (math.isfinite(budget) and budget >= 1):
        raise ValueError(f"budget: expected a finite number of FLOPs >= 1, found {budget!r}")
    mantissa, exponent = f"{float(budget):.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True, order=True)
class GridPoint:
    """One pretraining run of the sweep.

    Attributes
    ----------
    data_size : int
        Source frames of the training subset; 0 (isoflop) = the whole training pool.
    hidden, layers, heads : int
        The architecture.
    precision : {"fp32", "fp16", "bf16"}
    seed : int
        Replicate: its own initialisation and data order (:func:`training_seed`).
    budget : float
        isoflop: the training-FLOP budget; 0.0 otherwise.
    tokens : int
        Training tokens asked for (0: ``pretrain.steps`` decides; isoflop: the budget does).
    """

    data_size: int
    hidden: int
    layers: int
    heads: int
    precision: str
    seed: int = 0
    budget: float = 0.0
    tokens: int = 0

    @property
    def family(self) -> str:
        """The model family of every grid point, ``"videogpt"`` (reference points differ)."""
        return FAMILY

    @property
    def name(self) -> str:
        """Readable, stable name, used as the ``grid`` wildcard."""
        head = f"c{format_budget(self.budget)}" if self.budget else f"d{self.data_size}"
        tail = f"_t{self.tokens}" if self.tokens and not self.budget else ""
        return (f"{head}_h{self.hidden}_l{self.layers}_a{self.heads}_{self.precision}"
                f"{tail}_s{self.seed}")

    @property
    def model_key(self) -> tuple[int, int, int]:
        """(hidden, layers, heads): the model architecture without data or precision."""
        return (self.hidden, self.layers, self.heads)

    def as_dict(self) -> dict[str, Any]:
        """Parameters as a flat dict: ``grid`` (the name), ``family``, then every field."""
        return {"grid": self.name, "family": self.family, **asdict(self)}


def parse_name(name: str) -> GridPoint:
    """Parse a grid-point name back into a :class:`GridPoint` (exact inverse of ``name``).

    Raises
    ------
    ValueError
        If ``name`` follows neither form, or is not written the way :attr:`GridPoint.name`
        writes it (leading zeros, ``3.10e12`` for ``3.1e12``, ``_t`` on a budget point).
    """
    m = _NAME_RE.match(name)
    if m is None:
        raise ValueError(f"grid-point name {name!r} does not match {_NAME_FORMS}")
    g = m.groupdict()
    point = GridPoint(
        data_size=int(g["data"] or 0), hidden=int(g["hidden"]), layers=int(g["layers"]),
        heads=int(g["heads"]), precision=g["precision"], seed=int(g["seed"]),
        budget=float(g["budget"]) if g["budget"] else 0.0, tokens=int(g["tokens"] or 0),
    )
    if point.name != name:
        raise ValueError(
            f"grid-point name {name!r} does not match {_NAME_FORMS} as written by "
            f"cortexscale: the same point is named {point.name!r}"
        )
    return point


def training_seed(study_seed: int, point_seed: int) -> int:
    """The seed of one run: the study's ``seed`` and the point's replicate ``seed`` combined.

    ``numpy.random.SeedSequence([study_seed, point_seed]).generate_state(1)[0]`` (a uint32):
    every (study seed, replicate) pair gets its own, statistically independent stream, and
    the same pair always the same one. It seeds the initialisation, dropout and data order.
    """
    if int(study_seed) < 0 or int(point_seed) < 0:
        raise ValueError(
            f"seeds must be >= 0; found study seed {study_seed!r}, point seed {point_seed!r}"
        )
    return int(np.random.SeedSequence([int(study_seed), int(point_seed)]).generate_state(1)[0])


def gpt_params(hidden: int, layers: int, heads: int, vocab_size: int) -> int:
    """Parameters of a :class:`cortexscale.models.gpt.GPT` without input embeddings.

    The ``N`` of :func:`cortexscale.models.gpt.count_params` (biases on, output head in):
    per block two layer norms (``4 h``), qkv and the attention projection
    (``4 h i + 3 i + h``, ``i = heads x (hidden // heads)``), the MLP (``8 h^2 + 5 h``); then
    the final layer norm (``2 h``) and the head (``h V``).
    """
    h, inner = int(hidden), int(heads) * (int(hidden) // int(heads))
    per_block = 4 * h + (4 * h * inner + 3 * inner + h) + (8 * h * h + 5 * h)
    return int(layers) * per_block + 2 * h + h * int(vocab_size)


def flops_per_token(hidden: int, layers: int, heads: int, vocab_size: int,
                    context: int) -> int:
    """Training FLOPs per processed token position, ``6 N + 12 L H Q T``.

    The count of :func:`cortexscale.models.gpt.flops_per_token` (``N`` = :func:`gpt_params`,
    ``Q = hidden // heads``, ``T`` = ``context``, the positions the transformer sees).
    """
    n = gpt_params(hidden, layers, heads, vocab_size)
    return int(6 * n + 12 * int(layers) * int(heads) * (int(hidden) // int(heads)) * int(context))


def _round_steps(x: float) -> int:
    """Nearest whole step, halves rounded up (``floor(x + 0.5)``)."""
    return int(math.floor(x + 0.5))


def steps_for(point: GridPoint, fpt: int, context: int, n_tokens: int, batch_size: int,
              default_steps: int) -> int:
    """Optimizer steps of one grid point.

    Parameters
    ----------
    point : GridPoint
    fpt : int
        FLOPs per processed position (:func:`flops_per_token`).
    context : int
        Positions processed per clip (``t*h*w``, twice that when conditioned).
    n_tokens : int
        Predicted (training) tokens per clip, ``t*h*w``.
    batch_size : int
        Clips per optimizer step.
    default_steps : int
        ``pretrain.steps``: the length of a point that asks for neither budget nor tokens.

    Returns
    -------
    steps : int
        isoflop: ``budget / (batch_size x context x fpt)``; tokens: ``tokens / (batch_size x
        n_tokens)``; each rounded to the nearest whole step (halves up), so the FLOPs
        (``steps x batch_size x context x fpt``, the ``train_flops`` of ``summary.json``) or
        tokens actually trained differ from what was asked by at most half a step's worth.
        May be 0 for a budget below half a step (the callers reject it).
    """
    if point.budget:
        return _round_steps(point.budget / (batch_size * context * fpt))
    if point.tokens:
        return _round_steps(point.tokens / (batch_size * n_tokens))
    return int(default_steps)


def model_configs(grid: dict[str, Any]) -> list[tuple[int, int, int]]:
    """Expand the model part of the grid into (hidden, layers, heads) triples.

    Parameters
    ----------
    grid : dict
        The config's ``grid`` section: ``base`` (hidden, layers, heads), ``vary``
        (lists per factor) and ``mode`` (``one_at_a_time`` or ``product``); or, for
        ``mode: isoflop``, ``models`` (a list of {hidden, layers, heads}).

    Returns
    -------
    configs : list of (hidden, layers, heads)
        Unique, in a stable order: the base first, then each factor's values in
        the order given (``one_at_a_time``), the lexicographic product (``product``), or
        the models in the order given (``isoflop``).
    """
    mode = grid.get("mode", "one_at_a_time")
    out: list[tuple[int, int, int]] = []
    if mode == "isoflop":
        out.extend(tuple(int(m[f]) for f in FACTORS) for m in grid.get("models") or [])
    elif mode == "one_at_a_time":
        base = grid["base"]
        vary = grid.get("vary", {}) or {}
        out.append(tuple(int(base[f]) for f in FACTORS))
        for factor in FACTORS:
            for value in vary.get(factor, []):
                cfg = {f: int(base[f]) for f in FACTORS}
                cfg[factor] = int(value)
                out.append(tuple(cfg[f] for f in FACTORS))
    elif mode == "product":
        base = grid["base"]
        vary = grid.get("vary", {}) or {}
        axes = [vary.get(f) or [base[f]] for f in FACTORS]
        out.extend(tuple(int(v) for v in combo) for combo in itertools.product(*axes))
    else:
        raise ValueError(f"grid.mode must be one of {list(MODES)}, found {mode!r}")
    seen: set[tuple[int, int, int]] = set()
    unique = []
    for c in out:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def expand(grid: dict[str, Any]) -> list[GridPoint]:
    """Expand the config's ``grid`` section into grid points.

    Returns
    -------
    points : list of GridPoint
        isoflop: budgets x models x precisions x seeds (``data_size`` 0: the whole pool);
        otherwise data sizes x tokens (``grid.tokens``, or 0) x model configs x precisions
        x seeds; in a stable order.
    """
    seeds = [int(s) for s in grid.get("seeds") or [0]]
    precisions = [str(p) for p in grid["precision"]]
    models = model_configs(grid)
    if grid.get("mode") == "isoflop":
        return [
            GridPoint(0, h, layers, a, p, seed=s, budget=float(c))
            for c in grid.get("budgets") or []
            for (h, layers, a) in models
            for p in precisions
            for s in seeds
        ]
    return [
        GridPoint(int(d), h, layers, a, p, seed=s, tokens=int(t))
        for d in grid.get("data_sizes") or []
        for t in grid.get("tokens") or [0]
        for (h, layers, a) in models
        for p in precisions
        for s in seeds
    ]


def wildcard_regex(points: list[GridPoint]) -> str:
    """A regex that matches exactly the names of ``points`` (for ``wildcard_constraints``)."""
    if not points:
        return r"(?!x)x"
    return "|".join(re.escape(p.name) for p in points)
