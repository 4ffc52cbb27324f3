"""What the lecture generators share: collect cells, write the notebook with no outputs.

Each ``make_NN_*.py`` script builds one notebook of this folder. Run it to regenerate the
notebook after editing the script; ``python make_NN_x.py DIR`` writes into DIR instead
(the tests use that to check that every committed notebook matches its generator).

``python make_NN_x.py --otter DIR`` writes the Otter-Grader variant of the same notebook
into DIR instead (see ``otter_cells``).

Exercises carry nbgrader metadata so ``nbgrader generate_assignment`` / ``autograde`` work
on the notebooks as they are: ``solution_cell`` holds the student's code between
``### BEGIN SOLUTION`` / ``### END SOLUTION``; ``grade_cell`` is locked, worth ``points``,
and holds visible asserts plus ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``.
"""
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

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


def otter_cells(cells, name):
    """The same notebook in Otter-Grader's format (``otter assign``).

    An ``# ASSIGNMENT CONFIG`` raw cell first; each nbgrader solution cell and the grade cell
    after it become one question (``# BEGIN QUESTION`` with the grade cell's points, the
    solution cell inside a ``# BEGIN SOLUTION`` / ``# END SOLUTION`` block with its own
    markers as comments, then ``# BEGIN TESTS``): a
    public test made of the visible asserts and a hidden test (first line ``# HIDDEN``)
    made of the visible asserts followed by the hidden ones. ``print`` lines of grade cells
    are dropped (Otter's doctest-style tests compare printed output).
    """
    config = (f"# ASSIGNMENT CONFIG\nname: {name}\nrun_tests: false\ninit_cell: false\ncheck_all_cell: false\n"
              "export_cell: false\nsolutions_pdf: false\ntemplate_pdf: false\ngenerate: true")
    out = [new_raw_cell(config)]
    pending = None
    for cell in cells:
        meta = cell.metadata.get("nbgrader")
        if meta and meta["solution"]:
            pending = cell
            continue
        if meta and meta["grade"]:
            if pending is None:
                raise ValueError(f"otter: grade cell {meta['grade_id']} follows no solution cell")
            visible, _, rest = cell.source.partition("### BEGIN HIDDEN TESTS")
            hidden = rest.partition("### END HIDDEN TESTS")[0]
            keep = lambda text: "\n".join(ln for ln in text.strip().splitlines() if not ln.startswith("print("))
            solution = pending.source.replace("### BEGIN SOLUTION", "# BEGIN SOLUTION").replace(
                "### END SOLUTION", "# END SOLUTION")
            out += [new_raw_cell(f"# BEGIN QUESTION\nname: {pending.metadata['nbgrader']['grade_id']}\n"
                                 f"points: {meta['points']}"),
                    new_raw_cell("# BEGIN SOLUTION"), new_code_cell(solution), new_raw_cell("# END SOLUTION"),
                    new_raw_cell("# BEGIN TESTS"),
                    new_code_cell(keep(visible)), new_code_cell("# HIDDEN\n" + keep(visible) + "\n" + keep(hidden)),
                    new_raw_cell("# END TESTS"), new_raw_cell("# END QUESTION")]
            pending = None
            continue
        plain = cell.copy()
        plain.metadata = {k: v for k, v in cell.metadata.items() if k != "nbgrader"}
        out.append(plain)
    return out


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
        """Write ``name`` next to the generators, or into the folder given as argv[1].

        With ``--otter DIR`` as arguments, write the Otter-Grader variant into DIR.
        """
        args = sys.argv[1:]
        otter = args[:1] == ["--otter"]
        if otter:
            args = args[1:]
        folder = Path(args[0]) if args else Path(__file__).parent
        path = folder / name
        cells = otter_cells(self.cells, Path(name).stem.replace("_", "-")) if otter else self.cells
        for i, cell in enumerate(cells):
            cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating changes nothing
        nbformat.write(new_notebook(cells=cells, metadata=KERNELSPEC), path)
        print(f"wrote {path}")
        return path
