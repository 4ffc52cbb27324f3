"""Every notebook in lectures/ runs top to bottom in quick mode, and every Python block of
the README runs, so neither can drift from the code."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "lectures").glob("*.ipynb"))

pytestmark = pytest.mark.lectures


def _quick(nb):
    """Replace the cell tagged ``parameters`` by ``QUICK = True``; refuse a notebook without one."""
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1 or "QUICK = False" not in tagged[0].source:
        raise AssertionError("a lecture notebook needs exactly one cell tagged 'parameters' holding QUICK = False")
    tagged[0].source = "QUICK = True"
    return nb


# Under Agg, plt.show() draws nothing: draw every figure left open, so a broken plot fails the test.
RENDER_FIGURES = """
import matplotlib.pyplot as plt
for number in plt.get_fignums():
    plt.figure(number).canvas.draw()
plt.close("all")
"""

# Notebooks whose every plot must carry axis labels and (unless it shows an image, or its y tick
# labels name the series) a legend;
# checked on the open figures before they are drawn.
LABELLED = {"02_pruning", "03_quantization", "04_binarized", "06_costs_and_claims"}
CHECK_LABELS = """
import matplotlib.pyplot as plt
for number in plt.get_fignums():
    for ax in plt.figure(number).axes:
        if getattr(ax, "_colorbar", None) is not None or not ax.get_visible():
            continue
        where = f"figure {number}, axes {ax.get_title()!r}"
        assert ax.get_xlabel() and ax.get_ylabel(), where + ": missing an axis label"
        named_rows = any(t.get_text() and not t.get_text().lstrip("-\u2212").replace(".", "").isdigit()
                         for t in ax.get_yticklabels())
        if (ax.lines or ax.collections or ax.patches) and not ax.images and not named_rows:
            assert ax.get_legend() is not None, where + ": missing a legend (or y ticks naming the series)"
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TINYAPPROX_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _quick(nbformat.read(path, as_version=4))
    if path.stem in LABELLED:
        nb.cells.append(nbformat.v4.new_code_cell(CHECK_LABELS))
    nb.cells.append(nbformat.v4.new_code_cell(RENDER_FIGURES))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_notebooks_are_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


GENERATORS = sorted((ROOT / "lectures").glob("make_*.py"))


@pytest.mark.parametrize("script", GENERATORS, ids=[p.stem for p in GENERATORS])
def test_notebook_matches_its_generator(script, tmp_path):
    """Each committed notebook is exactly what its make_*.py script writes (cells and tags)."""
    import subprocess
    import sys

    nbformat = pytest.importorskip("nbformat")
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    (written,) = list(tmp_path.glob("*.ipynb"))
    fresh = nbformat.read(written, as_version=4)
    committed = nbformat.read(ROOT / "lectures" / written.name, as_version=4)

    def cells(nb):
        return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]

    assert cells(fresh) == cells(committed), f"regenerate lectures/{written.name} with {script.name}"


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert blocks, "the README shows at least one Python example"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the docs must run
