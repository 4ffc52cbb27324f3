"""The floors of the package, read from the source: each floor imports only what lies below it.

The rules are data (``FLOORS``, ``RULES``, ``IMPORTLIB_ALLOWED``); the tests read every
import of every module of ``tinyapprox/`` with ``ast`` (top-level and inside functions,
absolute and relative) and name each import that breaks a rule.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tinyapprox"

#: Every part of the package (a top-level module or subpackage) and its floor.
FLOORS = {
    "tensor": "core", "functional": "core", "conv": "core", "fileio": "core",
    "kernels": "kernels", "_ckernels": "kernels",
    "nn": "base", "optim": "base", "data": "base", "metrics": "base", "train": "base", "cost": "base",
    "models": "base", "testing": "base",
    "sparse": "technique", "prune": "technique", "quant": "technique", "bnn": "technique",
    "experiments": "applications",
}
TECHNIQUES = {part for part, floor in FLOORS.items() if floor == "technique"}

#: (rule, parts it applies to, parts they must not import, exceptions {part: {parts allowed}}).
RULES = [
    ("the core (tensor, functional, conv, fileio) imports nothing above it",
     {"tensor", "functional", "conv", "fileio"}, set(FLOORS) - {"tensor", "functional", "conv", "fileio"}, {}),
    ("nn, optim, data, metrics, train, cost and models import no technique (testing, the exercise "
     "support, may use the formats its property exercises are about)",
     {p for p, f in FLOORS.items() if f == "base"}, TECHNIQUES, {"testing": TECHNIQUES}),
    ("the kernels import no technique and nothing above the core",
     {"kernels"}, TECHNIQUES | {p for p, f in FLOORS.items() if f in ("base", "applications")}, {}),
    ("a technique imports no other technique (prune may use sparse)",
     TECHNIQUES, TECHNIQUES, {"prune": {"sparse"}}),
    ("nothing in the library imports the applications",
     set(FLOORS) - {"experiments"}, {"experiments"}, {}),
]

#: The only uses of importlib, each with its reason. No module is imported through it.
IMPORTLIB_ALLOWED = {
    ("__init__.py", "importlib"): "lazy attribute access to the fixed list _SUBMODULES (checked below)",
    ("data/datasets.py", "importlib.resources"): "reads the bundled data files, imports no module",
    ("kernels/_ext.py", "importlib"): "loads the compiled extension (optionally a test build from a file)",
    ("kernels/_ext.py", "importlib.util"): "loads the compiled extension from a file path",
    ("experiments/course_plugin.py", "importlib"): "the grader swaps a submission's functions into the module "
                                                   "an exercise lives in (applications floor, not the library)",
}


def _part(dotted):
    """``tinyapprox.prune.mask`` -> ``prune``; None outside the package or for the package itself."""
    names = dotted.split(".")
    return names[1] if names[0] == "tinyapprox" and len(names) > 1 else None


def imports_of(path: Path, root: Path = PACKAGE):
    """[(line, imported dotted name)] of one source file: ``from a import b`` gives ``a`` and ``a.b``
    (``b`` may be a module); relative imports are resolved against the file's package."""
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _sources(root: Path = PACKAGE):
    return sorted(root.rglob("*.py"))


def _source_part(path: Path, root: Path = PACKAGE):
    rel = path.relative_to(root)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else None


def violations(root: Path = PACKAGE) -> list:
    """Every import breaking a rule of ``RULES`` or ``IMPORTLIB_ALLOWED``, as readable lines."""
    out = []
    for path in _sources(root):
        src = _source_part(path, root)
        rel = path.relative_to(root).as_posix()
        for line, name in imports_of(path, root):
            if name.split(".")[0] == "importlib" and (rel, name) not in IMPORTLIB_ALLOWED:
                out.append(f"{rel}:{line} imports {name}: no module is imported through importlib")
            dst = _part(name)
            if src is None or dst is None or dst == src:
                continue
            if dst not in FLOORS:
                out.append(f"{rel}:{line} imports tinyapprox.{dst}, which has no floor in FLOORS")
            for rule, applies, forbidden, allowed in RULES:
                if src in applies and dst in forbidden and dst not in allowed.get(src, set()):
                    out.append(f"{rel}:{line} imports {name}: {rule}")
    return out


def test_every_part_of_the_package_has_a_floor():
    parts = {_source_part(p) for p in _sources()} - {None}
    assert parts <= set(FLOORS), f"parts without a floor: {sorted(parts - set(FLOORS))}"


def test_the_layering_rules_hold():
    found = violations()
    assert not found, "layering broken:\n" + "\n".join(found)


def test_the_lazy_submodules_do_not_include_the_applications():
    import tinyapprox

    assert "experiments" not in tinyapprox._SUBMODULES
    assert set(tinyapprox._SUBMODULES) <= set(FLOORS)


@pytest.mark.parametrize("planted, line", [
    ("tinyapprox/nn/module.py", "from ..prune import magnitude"),
    ("tinyapprox/prune/mask.py", "def _planted():\n    from tinyapprox.quant import ptq"),
    ("tinyapprox/conv.py", "from .nn import Module"),
    ("tinyapprox/cost.py", "from .experiments import harness"),
    ("tinyapprox/quant/fake.py", "import importlib"),
])
def test_a_planted_violation_is_named(tmp_path, planted, line):
    """The checker itself: a copy of the package with one bad import fails, naming the file."""
    import shutil

    root = tmp_path / "tinyapprox"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    assert violations(root) == []
    target = tmp_path / planted
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")
    found = violations(root)
    where = Path(planted).relative_to("tinyapprox").as_posix()
    assert found and all(f.startswith(where + ":") for f in found), found
