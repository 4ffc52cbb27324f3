"""What the lecture generators share: collect cells, write the notebook with no outputs.

Each ``make_NN_*.py`` script builds one notebook of this folder. Run it to regenerate the
notebook after editing the script; ``python make_NN_x.py DIR`` writes into DIR instead
(the tests use that to check that every committed notebook matches its generator).
"""
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


class Notebook:
    """An ordered list of cells; ``md`` and ``code`` append, ``write`` saves."""

    def __init__(self, cells=None):
        self.cells = list(cells or [])

    def md(self, text):
        self.cells.append(new_markdown_cell(text.strip()))

    def code(self, text, **metadata):
        cell = new_code_cell(text.strip())
        cell.metadata.update(metadata)
        self.cells.append(cell)

    def write(self, name: str) -> Path:
        """Write ``name`` next to the generators, or into the folder given as argv[1]."""
        folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
        path = folder / name
        for i, cell in enumerate(self.cells):
            cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating changes nothing
        nbformat.write(new_notebook(cells=self.cells, metadata=KERNELSPEC), path)
        print(f"wrote {path}")
        return path
