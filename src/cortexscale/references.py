"""Reference points of the synthetic world: the planted law, the true latents, chance.

Besides its VideoGPT grid points, a study on the synthetic world can encode three kinds of
reference features (config ``reference``; :mod:`cortexscale.features.planted`):

- ``planted``: the world's latents with noise of variance ``L(N, D) - E``, for a virtual
  model of ``n_params`` parameters trained on ``D = budget / (6 n_params)`` tokens; one point
  per budget x n_params x seed. Name ``planted_c{budget}_n{n_params}_s{seed}``, the budget
  written as grid points write it (:func:`cortexscale.grid.format_budget`: ``1e11``,
  ``3.16e12``).
- ``latents``: the noise-free latents, the best any model can do; ``latents_s{seed}``.
- ``random``: independent normal features of the same width, chance; ``random_s{seed}``.

Names are Snakemake wildcards beside the grid names (the ``encode`` rule consumes
``results/features/{name}.h5`` unchanged); :func:`parse_reference` inverts
:attr:`ReferencePoint.name` exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cortexscale.grid import format_budget

__all__ = [
    "KINDS",
    "PLANTED_DEFAULTS",
    "ReferencePoint",
    "check_reference",
    "expand_references",
    "parse_reference",
]

KINDS = ("planted", "latents", "random")
#: defaults of ``reference.planted`` (the schema holds the same numbers)
PLANTED_DEFAULTS = {"E": 1.5, "A": 1500.0, "alpha": 0.8, "B": 2000.0, "beta": 0.6}
_NUM = r"[1-9](?:\.\d{1,2})?e\d+"
_NAME_RE = re.compile(
    rf"^(?:planted_c(?P<budget>{_NUM})_n(?P<n>[1-9]\d*)|(?P<kind>latents|random))"
    r"_s(?P<seed>\d+)$"
)


@dataclass(frozen=True, order=True)
class ReferencePoint:
    """One reference feature source.

    Attributes
    ----------
    kind : {"planted", "latents", "random"}
    budget : float
        planted: the training-FLOP budget ``C``; 0.0 otherwise.
    n_params : int
        planted: the virtual parameter count ``N``; 0 otherwise.
    seed : int
        The noise realisation (planted, random); latents have no noise, their seeds are
        replicates of the same features (the encoding is deterministic).
    """

    kind: str
    budget: float = 0.0
    n_params: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"reference kind: expected one of {KINDS}, found {self.kind!r}")
        if self.kind == "planted" and (self.budget <= 0 or self.n_params <= 0):
            raise ValueError(f"a planted reference needs budget > 0 and n_params > 0, found "
                             f"budget={self.budget!r}, n_params={self.n_params!r}")
        if self.kind != "planted" and (self.budget or self.n_params):
            raise ValueError(f"a {self.kind} reference has no budget or n_params, found "
                             f"budget={self.budget!r}, n_params={self.n_params!r}")

    @property
    def family(self) -> str:
        """The family of the tables: the kind (``planted``, ``latents``, ``random``)."""
        return self.kind

    @property
    def tokens(self) -> float:
        """planted: the virtual training tokens ``D = budget / (6 n_params)``; 0 otherwise."""
        return self.budget / (6.0 * self.n_params) if self.kind == "planted" else 0.0

    @property
    def name(self) -> str:
        """Readable, stable name, used as the ``grid`` wildcard."""
        if self.kind == "planted":
            return f"planted_c{format_budget(self.budget)}_n{self.n_params}_s{self.seed}"
        return f"{self.kind}_s{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        """The columns of :meth:`cortexscale.grid.GridPoint.as_dict`, so tables stack both.

        ``tokens`` is the integer token count asked for, as for grid points
        (``round(budget / (6 n_params))`` for planted points).
        """
        return {
            "grid": self.name, "family": self.family, "data_size": 0, "hidden": 0,
            "layers": 0, "heads": 0, "precision": "none", "seed": self.seed,
            "budget": float(self.budget), "tokens": int(round(self.tokens)),
        }


def parse_reference(name: str) -> ReferencePoint | None:
    """The reference point named ``name``, or None when ``name`` is not a reference name.

    Raises
    ------
    ValueError
        If ``name`` has a reference form but is not written as :attr:`ReferencePoint.name`
        writes it (``planted_c1.00e11_...``, leading zeros).
    """
    m = _NAME_RE.match(name)
    if m is None:
        return None
    g = m.groupdict()
    if g["kind"]:
        point = ReferencePoint(g["kind"], seed=int(g["seed"]))
    else:
        point = ReferencePoint("planted", float(g["budget"]), int(g["n"]), int(g["seed"]))
    if point.name != name:
        raise ValueError(f"reference name {name!r} is not written as cortexscale writes it: "
                         f"the same point is named {point.name!r}")
    return point


def _resolved(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The ``reference`` section with its defaults from the grid, or None when it is off."""
    ref = cfg.get("reference") or {}
    if not ref or not ref.get("enabled", True):
        return None
    grid = cfg.get("grid", {}) or {}
    budgets = ref.get("budgets")
    if budgets is None:
        budgets = grid.get("budgets", []) if grid.get("mode") == "isoflop" else []
    seeds = ref.get("seeds")
    if seeds is None:
        seeds = grid.get("seeds", [0])
    return {
        "planted": {**PLANTED_DEFAULTS, **(ref.get("planted") or {})},
        "n_params": [int(n) for n in ref.get("n_params", [])],
        "budgets": [float(b) for b in budgets],
        "seeds": [int(s) for s in seeds],
        "latents": bool(ref.get("latents", True)),
        "random": bool(ref.get("random", True)),
    }


def expand_references(cfg: dict[str, Any]) -> list[ReferencePoint]:
    """The reference points of a study config (the whole config, defaults filled).

    Planted points: budgets x ``n_params`` x seeds (none when ``n_params`` is empty), then
    ``latents`` and ``random`` per seed. Empty when the study has no ``reference`` section,
    when ``reference.enabled`` is false, or when ``fmri.source`` is not ``synthetic``
    (:func:`check_reference` makes asking for it there a config error).
    """
    if (cfg.get("fmri") or {}).get("source") != "synthetic":
        return []
    ref = _resolved(cfg)
    if ref is None:
        return []
    points = [ReferencePoint("planted", b, n, s)
              for b in ref["budgets"] for n in ref["n_params"] for s in ref["seeds"]]
    for kind in ("latents", "random"):
        if ref[kind]:
            points += [ReferencePoint(kind, seed=s) for s in ref["seeds"]]
    return points


def check_reference(cfg: dict[str, Any]) -> list[str]:
    """What the schema cannot check in the ``reference`` section; one message per problem.

    A reference on a dataset that is not the synthetic world, a budget not written with 3
    significant digits (names could not tell it apart), ``n_params`` without budgets, and a
    budget whose planted optimum ``N*(C)`` lies outside the range of ``n_params`` (the
    analysis could not find it) are problems.
    """
    ref = _resolved(cfg)
    if ref is None:
        return []
    problems = []
    source = (cfg.get("fmri") or {}).get("source")
    if source != "synthetic":
        return [f"reference: the reference features (planted law, latents, random) exist "
                f"only for the synthetic world; fmri.source is {source!r} (remove the "
                "'reference' section or set reference.enabled: false)"]
    for b in ref["budgets"]:
        if b < 1 or float(format_budget(b)) != b:
            problems.append(f"reference.budgets: {b:g} is not a budget >= 1 written with at "
                            f"most 3 significant digits (names write {format_budget(max(b, 1))})")
    if ref["n_params"] and not ref["budgets"]:
        problems.append(
            "reference.n_params is given but there are no budgets: give reference.budgets "
            "(it defaults to grid.budgets only when grid.mode is isoflop), or n_params: [] "
            "for no planted points"
        )
    if ref["budgets"] and ref["n_params"] and not problems:
        from cortexscale.features.planted import PlantedLaw

        try:
            law = PlantedLaw.from_config(ref["planted"])
        except ValueError as exc:
            return [str(exc)]
        lo, hi = min(ref["n_params"]), max(ref["n_params"])
        for b in ref["budgets"]:
            n_opt, _ = law.optimum(b)
            if not lo < n_opt < hi:
                problems.append(
                    f"reference.n_params: at budget {format_budget(b)} the planted optimum is "
                    f"N* = {n_opt:.4g}, outside the range of n_params [{lo}, {hi}]; the "
                    "IsoFLOP analysis could not find it (widen n_params or change "
                    "reference.planted)"
                )
    return problems
