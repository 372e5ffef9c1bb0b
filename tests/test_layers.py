"""The package's layer order (docs/decisions.md, "Layers"), held by an AST walk over src/.

Every module of ``src/cortexscale`` belongs to one layer; a module may import its own
layer and the layers below, never one above, never a sibling it is declared independent
of, and never a private name (``_x``) of another module. Imports inside functions count
the same as those at the top. ``encoding`` and ``scaling`` see arrays only: besides the
bottom layer they import nothing of the package but their own layer and the ones between.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cortexscale"

#: bottom to top; a name is a sub-package or a top-level module of cortexscale. Names in
#: one inner tuple form one layer whose members must not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "logs", "labels", "grid"),
    ("io",),
    ("data",),
    ("models",),
    ("train", "features"),
    ("encoding",),
    ("scaling",),
    ("report",),
    ("references",),
    ("config",),
    ("policy",),
    ("estimate",),
    ("stages",),
    ("cli", "__main__"),
)

#: layers that must see arrays only: they may import the bottom layer and themselves
ARRAYS_ONLY = {"encoding": {"encoding"}, "scaling": {"encoding", "scaling"}}

RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
BOTTOM = set(LAYERS[0])


def _unit(module: str) -> str:
    """The layer unit of a dotted module name: ``cortexscale.encoding.ridge`` -> ``encoding``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1] if len(parts) > 2 else parts
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every cortexscale import in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cortexscale":
                    found.append((node.lineno, alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # a package's own name is its __init__'s base: cortexscale.__init__ -> cortexscale
                base = module.removesuffix(".__init__").split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "cortexscale":
                found.append((node.lineno, target, [a.name for a in node.names]))
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of ``source`` (the text of ``module``) against the layer order."""
    unit = _unit(module)
    if unit not in RANK:
        return [f"{module}: belongs to no layer (add it to LAYERS in tests/test_layers.py "
                f"and to docs/decisions.md)"]
    problems = []
    for line, target, names in _imports(ast.parse(source), module, is_package):
        if target == "cortexscale" and names:  # from cortexscale import grid, __version__
            targets = [(f"cortexscale.{n}", []) for n in names]
        else:
            targets = [(target, names)]
        for tgt, imported in targets:
            other = _unit(tgt)
            where = f"{module}:{line} imports {tgt}"
            if other not in RANK:
                if tgt.count(".") == 1 and other.startswith("__"):
                    continue  # cortexscale.__version__
                problems.append(f"{where}: {other!r} belongs to no layer")
                continue
            if RANK[other] > RANK[unit]:
                problems.append(f"{where}: a higher layer ({other} above {unit})")
            elif RANK[other] == RANK[unit] and other != unit:
                problems.append(f"{where}: {other} and {unit} are independent siblings")
            if unit in ARRAYS_ONLY and other not in BOTTOM | ARRAYS_ONLY[unit]:
                problems.append(f"{where}: {unit} sees arrays only (no {other})")
            private = [n for n in imported if n.startswith("_") and not n.startswith("__")]
            if private and tgt != module:
                problems.append(f"{where}: private name(s) {', '.join(private)}")
    return problems


def package_violations(root: Path = SRC) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        problems += violations(path.read_text(), module, path.name == "__init__.py")
    return problems


def test_the_package_keeps_its_layer_order():
    problems = package_violations()
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_every_layer_is_documented_in_decisions():
    text = (SRC.parents[1] / "docs" / "decisions.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    for layer in LAYERS:
        for name in layer:
            if not name.startswith("__"):
                assert f"`{name}`" in section, f"docs/decisions.md, Layers: {name} missing"


# the imports issue 16 found against the order, as they were written: each must be refused
REFUSED = [
    ("cortexscale.scaling.table", "from cortexscale.report.figures import plot_scaling"),
    ("cortexscale.scaling.analyse", "from cortexscale.report import figures"),
    ("cortexscale.scaling.summary", "from cortexscale.config import POOLED"),
    ("cortexscale.encoding.stage", "from cortexscale.config import section"),
    ("cortexscale.encoding.stage", "from cortexscale.data.fmri import FmriDataset"),
    ("cortexscale.encoding.pretrained", "from cortexscale.data.nsd import NsdRelease"),
    ("cortexscale.encoding.pretrained", "from cortexscale.features.pretrained import x"),
    ("cortexscale.encoding.pretrained", "from cortexscale.encoding.stage import _align"),
    ("cortexscale.encoding.pretrained",
     "from cortexscale.encoding.design import _average_repeats, _design, _repeat_stack"),
    ("cortexscale.encoding.ridge", "from cortexscale.io.hdf5 import open_h5"),
    ("cortexscale.features.extract", "from cortexscale.train.common import setup_device"),
    ("cortexscale.train.pretrain", "from cortexscale.features.extract import x"),
    ("cortexscale.data.corpus", "from cortexscale.config import section"),
    ("cortexscale.io.video", "import cortexscale.models.vqvae"),
    ("cortexscale.models.gpt", "from ..train import common"),
    ("cortexscale.report.figures", "from cortexscale.stages.aggregate import x"),
    ("cortexscale.stages.encoding", "from cortexscale.cli import main"),
    ("cortexscale.grid", "from cortexscale import config"),
    ("cortexscale.newthing", "import numpy"),
]


@pytest.mark.parametrize(("module", "source"), REFUSED)
def test_an_import_against_the_order_is_refused(module, source):
    # a function-local import counts as much as one at the top
    nested = "def f():\n    " + source + "\n"
    assert violations(source, module), source
    assert violations(nested, module), nested


ALLOWED = [
    ("cortexscale.stages.encoding", "from cortexscale.encoding.ridge import RidgeCV"),
    ("cortexscale.stages.encoding", "from cortexscale.config import section"),
    ("cortexscale.cli", "from cortexscale.stages import encoding"),
    ("cortexscale.scaling.fits", "from cortexscale.scaling.bootstrap import draws"),
    ("cortexscale.scaling.summary", "from cortexscale.labels import POOLED"),
    ("cortexscale.encoding.ridge", "from .backends import NumpyBackend"),
    ("cortexscale.features.extract", "from cortexscale.models.device import setup_device"),
    ("cortexscale.io.provenance", "from cortexscale import __version__"),
]


@pytest.mark.parametrize(("module", "source"), ALLOWED)
def test_an_import_along_the_order_is_allowed(module, source):
    assert violations(source, module) == []


def test_a_relative_import_in_a_package_init_is_resolved():
    # the top-level __init__ sits in the bottom layer: a stage, however spelled, is refused
    (problem,) = violations("from .stages import study", "cortexscale.__init__", True)
    assert "imports cortexscale.stages" in problem
    # a sub-package's __init__ (data/__init__.py is module cortexscale.data)
    (problem,) = violations("from ..stages import data", "cortexscale.data", True)
    assert "imports cortexscale.stages" in problem
