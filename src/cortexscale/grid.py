"""The sweep grid: data sizes x model configs x precisions, with stable readable names.

A grid point is named ``d{data_size}_h{hidden}_l{layers}_a{heads}_{precision}``,
for example ``d100000_h576_l8_a4_fp16``. The name is the Snakemake wildcard that
identifies a pretrained model; :func:`parse_name` turns it back into parameters.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass
from typing import Any

PRECISIONS = ("fp32", "fp16", "bf16")
FACTORS = ("hidden", "layers", "heads")
_NAME_RE = re.compile(r"^d(\d+)_h(\d+)_l(\d+)_a(\d+)_(fp32|fp16|bf16)$")


@dataclass(frozen=True, order=True)
class GridPoint:
    """One pretraining run of the sweep."""

    data_size: int
    hidden: int
    layers: int
    heads: int
    precision: str

    @property
    def name(self) -> str:
        """Readable, stable name, used as the ``grid`` wildcard."""
        return (
            f"d{self.data_size}_h{self.hidden}_l{self.layers}_a{self.heads}_{self.precision}"
        )

    @property
    def model_key(self) -> tuple[int, int, int]:
        """(hidden, layers, heads): the model architecture without data or precision."""
        return (self.hidden, self.layers, self.heads)

    def as_dict(self) -> dict[str, Any]:
        """Parameters as a flat dict, with the name under ``grid``."""
        return {"grid": self.name, **asdict(self)}


def parse_name(name: str) -> GridPoint:
    """Parse a grid-point name back into a :class:`GridPoint`.

    Raises
    ------
    ValueError
        If ``name`` does not follow ``d{size}_h{hidden}_l{layers}_a{heads}_{precision}``.
    """
    m = _NAME_RE.match(name)
    if m is None:
        raise ValueError(
            f"grid-point name {name!r} does not match "
            "'d<data_size>_h<hidden>_l<layers>_a<heads>_<fp32|fp16|bf16>'"
        )
    d, h, layers, a, p = m.groups()
    return GridPoint(int(d), int(h), int(layers), int(a), p)


def model_configs(grid: dict[str, Any]) -> list[tuple[int, int, int]]:
    """Expand the model part of the grid into (hidden, layers, heads) triples.

    Parameters
    ----------
    grid : dict
        The config's ``grid`` section: ``base`` (hidden, layers, heads), ``vary``
        (lists per factor) and ``mode`` (``one_at_a_time`` or ``product``).

    Returns
    -------
    configs : list of (hidden, layers, heads)
        Unique, in a stable order: the base first, then each factor's values in
        the order given (``one_at_a_time``), or the lexicographic product.
    """
    base = grid["base"]
    vary = grid.get("vary", {}) or {}
    mode = grid.get("mode", "one_at_a_time")
    out: list[tuple[int, int, int]] = []
    if mode == "one_at_a_time":
        out.append(tuple(int(base[f]) for f in FACTORS))
        for factor in FACTORS:
            for value in vary.get(factor, []):
                cfg = {f: int(base[f]) for f in FACTORS}
                cfg[factor] = int(value)
                out.append(tuple(cfg[f] for f in FACTORS))
    elif mode == "product":
        axes = [vary.get(f) or [base[f]] for f in FACTORS]
        out.extend(tuple(int(v) for v in combo) for combo in itertools.product(*axes))
    else:
        raise ValueError(
            f"grid.mode must be 'one_at_a_time' or 'product', got {mode!r}"
        )
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
        data sizes x model configs x precisions, in a stable order.
    """
    return [
        GridPoint(int(d), h, layers, a, str(p))
        for d in grid["data_sizes"]
        for (h, layers, a) in model_configs(grid)
        for p in grid["precision"]
    ]


def wildcard_regex(points: list[GridPoint]) -> str:
    """A regex that matches exactly the names of ``points`` (for ``wildcard_constraints``)."""
    if not points:
        return r"(?!x)x"
    return "|".join(re.escape(p.name) for p in points)
