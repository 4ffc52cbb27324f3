"""What the lecture generators share: collect cells, write the notebook with no outputs.

Each ``make_NN_*.py`` script builds one notebook of this folder. Run it to regenerate the
notebook after editing the script; ``python make_NN_x.py DIR`` writes into DIR instead
(the tests use that to check that every committed notebook matches its generator).

Exercises carry nbgrader metadata so ``nbgrader generate_assignment`` / ``autograde`` work
on the notebooks as they are: ``solution_cell`` holds the student's code between
``### BEGIN SOLUTION`` / ``### END SOLUTION``; ``grade_cell`` is locked, worth ``points``,
and holds visible asserts plus ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``.
"""
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def solution_cell(text, grade_id):
    """A code cell the student completes (nbgrader: solution, not graded)."""
    cell = new_code_cell(text.strip())
    cell.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": grade_id, "locked": False,
                                 "schema_version": 3}
    return cell


def grade_cell(text, grade_id, points):
    """A locked code cell of asserts worth ``points`` (nbgrader: autograded tests)."""
    if "### BEGIN HIDDEN TESTS" not in text:
        raise ValueError(f"grade cell {grade_id}: expected hidden tests between ### BEGIN/END HIDDEN TESTS")
    cell = new_code_cell(text.strip())
    cell.metadata["nbgrader"] = {"solution": False, "grade": True, "grade_id": grade_id, "locked": True,
                                 "points": points, "schema_version": 3}
    return cell


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

    def solution(self, text, grade_id):
        self.cells.append(solution_cell(text, grade_id))

    def tests(self, text, grade_id, points):
        self.cells.append(grade_cell(text, grade_id, points))

    def write(self, name: str) -> Path:
        """Write ``name`` next to the generators, or into the folder given as argv[1]."""
        folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
        path = folder / name
        for i, cell in enumerate(self.cells):
            cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating changes nothing
        nbformat.write(new_notebook(cells=self.cells, metadata=KERNELSPEC), path)
        print(f"wrote {path}")
        return path
