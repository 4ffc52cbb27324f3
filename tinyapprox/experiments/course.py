"""``tinyapprox course``: release the student version of the exercises, and grade a submission.

    tinyapprox course release OUT           write the student version into OUT
    tinyapprox course grade SUBMISSION      grade a student's copy; --json F writes the scores
    tinyapprox course list                  the exercises, their points and targets

An exercise (see ``exercises.py``) is one or more library functions whose body holds a
``# BEGIN SOLUTION`` / ``# END SOLUTION`` block. The release replaces every such block by a
stub that raises ``NotImplementedError`` with the exercise's one-line hint, strips the
solutions and hidden tests from the notebooks, and leaves out the hidden tests
(``tests/exercises/hidden``), the notebook generators and the instructors' notes.

Grading runs the instructor's visible and hidden exercise tests in ONE pytest process
against the instructor's own library; while the tests of exercise E run, only E's target
functions are replaced by the submission's versions (read from the submission's files with
``ast``, compiled in the library module's namespace). Every other exercise keeps the
reference implementation, so a missing ``Mul`` costs only ``Mul``'s points. Only the
target functions count: helpers a student adds elsewhere are not graded (put them inside
the function). An exercise scores its points when all its tests pass, else 0.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .exercises import BY_NAME, EXERCISES

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
HIDDEN_TESTS = Path("tests") / "exercises" / "hidden"
NOT_RELEASED = ("lectures/make_*.py", "lectures/nbbuild.py", "lectures/INSTRUCTORS.md", "lectures/*_check.sh",
                "tests/test_course.py",
                str(HIDDEN_TESTS))
_IGNORED = (".git", "__pycache__", "*.so", "*.o", "*.pyc", "*.egg-info", "build", "dist", ".hypothesis", ".pytest_cache",
            "runs", "out", ".ipynb_checkpoints", "_ckernels.c")


# ------------------------------------------------------------------- solution regions
def module_file(root: Path, module: str) -> Path:
    """The source file of a dotted module name under ``root``."""
    return Path(root) / (module.replace(".", "/") + ".py")


def split_target(target: str) -> tuple:
    """``"pkg.mod:Cls.meth"`` -> ``("pkg.mod", "Cls.meth")``; ValueError on a malformed target."""
    module, sep, qual = target.partition(":")
    if not sep or not module or not qual:
        raise ValueError(f"course: expected a target 'module:qualname', got {target!r}")
    return module, qual


def function_spans(source: str) -> dict:
    """Map qualname -> (first line, last line) (1-based, decorators included) of every def in ``source``."""
    spans = {}

    def walk(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = prefix + node.name
                if not isinstance(node, ast.ClassDef):
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    spans[qual] = (first, node.end_lineno)
                walk(node.body, qual + ".")

    walk(ast.parse(source).body, "")
    return spans


def solution_blocks(source: str, path="<source>") -> list:
    """Every solution block of ``source``: dicts ``{"begin", "end", "indent", "qualname"}`` (1-based lines).

    ``qualname`` is the innermost function holding the block. Raises ValueError for an
    unmatched or nested marker.
    """
    lines = source.splitlines()
    spans = function_spans(source)
    blocks, open_at = [], None
    for i, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if open_at is not None:
                raise ValueError(f"course: {path}:{i}: '{BEGIN}' inside the block opened at line {open_at}")
            open_at = i
        elif stripped == END:
            if open_at is None:
                raise ValueError(f"course: {path}:{i}: '{END}' without a '{BEGIN}'")
            holders = [(b - a, q) for q, (a, b) in spans.items() if a < open_at <= b]
            qual = min(holders)[1] if holders else None
            indent = lines[open_at - 1][:len(lines[open_at - 1]) - len(lines[open_at - 1].lstrip())]
            blocks.append({"begin": open_at, "end": i, "indent": indent, "qualname": qual})
            open_at = None
    if open_at is not None:
        raise ValueError(f"course: {path}:{open_at}: '{BEGIN}' is never closed")
    return blocks


def stub_line(exercise: dict) -> str:
    return f'raise NotImplementedError("{exercise["marker"]}: {exercise["hint"]}")'


def strip_solutions(source: str, stubs: dict, path="<source>") -> str:
    """Replace each solution block by its stub. ``stubs`` maps qualname -> exercise dict.

    Raises ValueError for a block outside every exercise's targets (it would ship a solution).
    """
    lines = source.splitlines(keepends=True)
    for block in reversed(solution_blocks(source, path)):
        ex = stubs.get(block["qualname"])
        if ex is None:
            raise ValueError(f"course: {path}:{block['begin']}: the solution block in {block['qualname']} "
                             "belongs to no exercise; add it to tinyapprox/experiments/exercises.py")
        lines[block["begin"] - 1:block["end"]] = [block["indent"] + stub_line(ex) + "\n"]
    return "".join(lines)


def targets_by_file(root: Path) -> dict:
    """Map source file -> {qualname: exercise} for every exercise target."""
    out = {}
    for ex in EXERCISES:
        for target in ex["targets"]:
            module, qual = split_target(target)
            out.setdefault(module_file(root, module), {})[qual] = ex
    return out


# ------------------------------------------------------------------------- notebooks
def strip_notebook_source(text: str) -> str:
    """nbgrader's rules on one cell: solution regions -> stub, hidden-test regions removed."""
    out, skipping = [], None
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if skipping == "solution":
            if s.endswith("END SOLUTION"):
                skipping = None
            continue
        if skipping == "hidden":
            if s == "### END HIDDEN TESTS":
                skipping = None
            continue
        if s.endswith("BEGIN SOLUTION") and s.startswith("#"):
            indent = line[:len(line) - len(line.lstrip())]
            out += [f"{indent}# YOUR CODE HERE\n", f"{indent}raise NotImplementedError()\n"]
            skipping = "solution"
        elif s == "### BEGIN HIDDEN TESTS":
            skipping = "hidden"
        else:
            out.append(line)
    return "".join(out)


def strip_notebook(path: Path) -> None:
    """Strip a notebook in place: solutions, hidden tests and outputs."""
    nb = json.loads(path.read_text())
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else src
        cell["source"] = strip_notebook_source(text)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- release
def instructor_root(root=None) -> Path:
    """The instructor's repository: ``root``, else the one this package was imported from."""
    root = Path(root) if root else Path(__file__).resolve().parents[2]
    if not (root / HIDDEN_TESTS).is_dir() or not (root / "tinyapprox").is_dir():
        raise FileNotFoundError(f"course: {root} is not the instructor's repository (no {HIDDEN_TESTS}); "
                                "pass --root with a checkout that has the hidden tests")
    return root


def release(out, root=None, force: bool = False) -> dict:
    """Write the student version of the repository ``root`` into ``out``.

    Returns ``{"out", "stubbed": [qualnames], "notebooks": [names]}``. Raises
    FileExistsError for a non-empty ``out`` unless ``force``; ValueError for a solution
    block that belongs to no exercise or an exercise target without a block.
    """
    root, out = instructor_root(root), Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"course release: {out} exists and is not empty (use --force to replace it)")
        shutil.rmtree(out)
    shutil.copytree(root, out, ignore=shutil.ignore_patterns(*_IGNORED), dirs_exist_ok=True)
    for pattern in NOT_RELEASED:
        for p in out.glob(pattern):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    wanted = targets_by_file(root)
    stubbed = []
    for src in sorted((root / "tinyapprox").rglob("*.py")):
        text = src.read_text()
        if BEGIN not in text and src not in wanted:
            continue
        quals = {b["qualname"] for b in solution_blocks(text, src)}
        missing = set(wanted.get(src, {})) - quals
        if missing:
            raise ValueError(f"course release: {src} has no solution block in {sorted(missing)}")
        (out / src.relative_to(root)).write_text(strip_solutions(text, wanted.get(src, {}), src))
        stubbed += sorted(f"{src.relative_to(root)}:{q}" for q in quals)
    notebooks = []
    for nb in sorted((out / "lectures").glob("*.ipynb")):
        strip_notebook(nb)
        notebooks.append(nb.name)
    return {"out": str(out), "stubbed": stubbed, "notebooks": notebooks}


# ----------------------------------------------------------------------------- grade
def grade(submission, root=None, json_path=None, names=None, timeout: float = 1800.0) -> dict:
    """Grade a student's copy with the instructor's visible and hidden exercise tests.

    Args:
        submission: the student's repository (the released tree, edited).
        root: the instructor's repository (default: the one this package comes from).
        json_path: also write the result there as JSON.
        names: grade only these exercises (default: all).

    Returns:
        ``{"total", "max", "exercises": [{"name", "points", "max", "passed", "failure"}]}``
        in the course's order; ``failure`` is the first failing test and, for a hypothesis
        test, the falsifying example (None when passed).
    """
    root, submission = instructor_root(root), Path(submission).resolve()
    if not (submission / "tinyapprox").is_dir():
        raise FileNotFoundError(f"course grade: {submission} holds no tinyapprox/ package")
    chosen = [BY_NAME[n] for n in names] if names else EXERCISES
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = dict(os.environ, TINYAPPROX_COURSE_SUBMISSION=str(submission), TINYAPPROX_COURSE_REPORT=str(report),
                   PYTHONPATH=os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
                   PYTHONDONTWRITEBYTECODE="1", HYPOTHESIS_PROFILE="grading")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
               "tinyapprox.experiments.course_plugin", "-o", "addopts=", "--no-header", "-rN", "--tb=short",
               "-m", " or ".join(e["marker"] for e in chosen), str(root / "tests" / "exercises")]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        if not report.exists():
            raise RuntimeError(f"course grade: the test run wrote no report (exit {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        tests = json.loads(report.read_text())["tests"]
    rows = []
    for ex in chosen:
        mine = [t for t in tests if t["exercise"] == ex["name"]]
        failed = [t for t in mine if t["outcome"] == "failed"]
        passed = any(t["outcome"] == "passed" for t in mine) and not failed
        failure = None if passed else (failed[0]["message"] if failed else "no test of this exercise ran")
        rows.append({"name": ex["name"], "points": ex["points"] if passed else 0, "max": ex["points"],
                     "passed": passed, "failure": failure})
    result = {"total": sum(r["points"] for r in rows), "max": sum(r["max"] for r in rows), "exercises": rows}
    if json_path:
        from .harness import write_json

        write_json(json_path, result)
    return result


def format_table(result: dict, width: int = 100) -> str:
    """The grade as a text table: exercise, points, passed, first failing example; then the total."""
    lines = [f"{'exercise':<22}{'points':>8}  {'passed':<7} first failure", "-" * width]
    for r in result["exercises"]:
        fail = (r["failure"] or "").replace("\n", " ")
        fail = fail if len(fail) <= width - 40 else fail[:width - 43] + "..."
        lines.append(f"{r['name']:<22}{r['points']:>4}/{r['max']:<3}  {'yes' if r['passed'] else 'no':<7} {fail}")
    lines += ["-" * width, f"{'total':<22}{result['total']:>4}/{result['max']:<3}"]
    return "\n".join(lines)


# ------------------------------------------------------------------------ the command
def add_arguments(parser) -> None:
    """Add ``tinyapprox course``'s actions (release, grade, list) and their options to ``parser``."""
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("release", help="write the student version (stubs, stripped notebooks, no hidden tests)")
    p.add_argument("out")
    p.add_argument("--root", default=None, help="the instructor's repository (default: this checkout)")
    p.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    p = sub.add_parser("grade", help="grade a student's copy with the hidden tests")
    p.add_argument("submission")
    p.add_argument("--root", default=None, help="the instructor's repository (default: this checkout)")
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.add_argument("--only", nargs="*", default=None, help="grade only these exercises")
    sub.add_parser("list", help="the exercises in order, with points and targets")


def run(args) -> int:
    """``tinyapprox course``: run the chosen action and print what it did; returns the exit code."""
    if args.action == "release":
        out = release(args.out, args.root, args.force)
        print(f"wrote the student version to {out['out']}: {len(out['stubbed'])} solution blocks stubbed, "
              f"{len(out['notebooks'])} notebooks stripped, hidden tests left out")
        return 0
    if args.action == "grade":
        result = grade(args.submission, args.root, args.json, args.only)
        print(format_table(result))
        if args.json:
            print(f"wrote {args.json}")
        return 0
    for ex in EXERCISES:
        print(f"{ex['marker']:<26}{ex['part']:<14}{ex['kind']:<9}{ex['points']:>3} pts {ex['minutes']:>3} min  "
              f"{', '.join(ex['targets'])}")
    return 0
