"""The course kit end to end: release the student version, grade it blank (0), grade the
instructor's copy (full marks), and grade a planted submission with exactly two exercises
right (exactly those two score). Also: gradcheck survives a missing op, and every exercise
has its marker, a visible test and a hidden test."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tinyapprox import functional as F
from tinyapprox.experiments import course
from tinyapprox.experiments.exercises import BY_NAME, EXERCISES
from tinyapprox.testing import gradcheck

ROOT = Path(__file__).resolve().parents[1]
PLANTED = ("csr", "mul")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "student"
    info = course.release(out, ROOT)
    return out, info


def test_exercise_list_is_complete_and_ordered():
    assert len(EXERCISES) >= 25 and len({e["name"] for e in EXERCISES}) == len(EXERCISES)
    for part in ("autograd", "pruning", "quantization", "binarization", "training"):
        assert sum(e["part"] == part for e in EXERCISES) >= 3, part
    assert sum(e["kind"] == "property" for e in EXERCISES) >= 3
    engine = [i for i, e in enumerate(EXERCISES) if e["part"] in ("autograd", "layers") or e["name"].endswith("_ste")]
    numpy_only = [i for i, e in enumerate(EXERCISES) if i not in engine]
    assert max(numpy_only) < min(engine), "pure-NumPy exercises come before those that need the engine"
    registered = (ROOT / "pyproject.toml").read_text()
    visible = (ROOT / "tests/exercises/test_ex_visible.py").read_text()
    hidden = "".join(p.read_text() for p in (ROOT / course.HIDDEN_TESTS).glob("test_*.py"))
    for e in EXERCISES:
        assert f'"{e["marker"]}:' in registered, f"register {e['marker']} in pyproject.toml"
        assert f"mark.{e['marker']}\n" in visible or f"mark.{e['marker']}(" in visible, f"{e['name']}: no visible test"
        assert re.search(rf"mark\.{e['marker']}\b", hidden), f"{e['name']}: no hidden test"
        assert e["points"] > 0 and e["hint"] and e["targets"]


def test_gradcheck_survives_a_missing_mul(monkeypatch):
    def missing(ctx, g):
        raise NotImplementedError("Mul.backward")
    monkeypatch.setattr(F.Mul, "backward", staticmethod(missing))
    x = np.random.default_rng(0).standard_normal((2, 3))
    assert gradcheck(F.exp, [x]) and gradcheck(lambda t: F.softmax(t, axis=1), [x], name="softmax")
    with pytest.raises(NotImplementedError):
        gradcheck(F.mul, [x, x])


def test_release_strips_every_solution(released):
    out, info = released
    assert len(info["stubbed"]) >= len(EXERCISES)
    for path in (out / "tinyapprox").rglob("*.py"):
        assert not course.solution_blocks(path.read_text(), path), path
    assert not (out / course.HIDDEN_TESTS).exists()
    assert (out / "tests/exercises/test_ex_visible.py").exists()
    assert not list((out / "lectures").glob("make_*.py")) and not (out / "lectures/INSTRUCTORS.md").exists()
    assert not (out / "tests/test_course.py").exists()
    for nb in (out / "lectures").glob("*.ipynb"):
        text = nb.read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, nb.name
    stub = (out / "tinyapprox/sparse/formats.py").read_text()
    assert f'raise NotImplementedError("ex_csr: {BY_NAME["csr"]["hint"]}")' in stub
    with pytest.raises(FileExistsError):
        course.release(out, ROOT)


@pytest.mark.slow
def test_blank_release_scores_zero(released, tmp_path):
    out, _ = released
    result = course.grade(out, ROOT, json_path=tmp_path / "blank.json")
    assert result["total"] == 0 and result["max"] == sum(e["points"] for e in EXERCISES)
    assert all(r["failure"] and "NotImplementedError" in r["failure"] for r in result["exercises"])
    assert json.loads((tmp_path / "blank.json").read_text()) == result


@pytest.mark.slow
def test_instructor_copy_scores_full_marks():
    result = course.grade(ROOT, ROOT)
    assert result["total"] == result["max"], [r for r in result["exercises"] if not r["passed"]]


def _splice(dst_file: Path, src_file: Path, qual: str, text=None):
    """Replace function ``qual`` in dst_file by its version in src_file (or by ``text``)."""
    dst = dst_file.read_text()
    a, b = course.function_spans(dst)[qual]
    if text is None:
        src = src_file.read_text()
        c, d = course.function_spans(src)[qual]
        text = "".join(src.splitlines(keepends=True)[c - 1:d])
    lines = dst.splitlines(keepends=True)
    lines[a - 1:b] = [text]
    dst_file.write_text("".join(lines))


@pytest.mark.slow
def test_planted_submission_scores_exactly_its_two_exercises(released, tmp_path):
    out, _ = released
    sub = tmp_path / "submission"
    shutil.copytree(out, sub)
    for name in PLANTED:
        for target in BY_NAME[name]["targets"]:
            module, qual = course.split_target(target)
            _splice(course.module_file(sub, module), course.module_file(ROOT, module), qual)
    module, qual = course.split_target(BY_NAME["agp_sparsity"]["targets"][0])
    wrong = ("def agp_sparsity(step, final_sparsity, start_step, end_step, initial_sparsity=0.0):\n"
             "    return final_sparsity * min(max(step - start_step, 0) / (end_step - start_step), 1.0)\n")
    _splice(course.module_file(sub, module), None, qual, wrong)
    broken = course.module_file(sub, "tinyapprox.quant.integer")  # a file that no longer parses
    broken.write_text(broken.read_text() + "\ndef unfinished(:\n")
    result = course.grade(sub, ROOT)
    passed = {r["name"] for r in result["exercises"] if r["passed"]}
    assert passed == set(PLANTED)
    assert result["total"] == sum(BY_NAME[n]["points"] for n in PLANTED)
    agp = next(r for r in result["exercises"] if r["name"] == "agp_sparsity")
    assert ("Falsifying example" in agp["failure"] or "Failing test case" in agp["failure"])
    assert "NotImplementedError" not in agp["failure"]
    requant = next(r for r in result["exercises"] if r["name"] == "requantize")
    assert "cannot read" in requant["failure"] and "integer.py" in requant["failure"]
    assert "total" in course.format_table(result)


def test_instructors_guide_lists_every_exercise():
    guide = (ROOT / "lectures/INSTRUCTORS.md").read_text()
    for e in EXERCISES:
        assert f"`{e['name']}`" in guide, f"lectures/INSTRUCTORS.md does not describe {e['name']}"


def test_notebook_exercises_have_nbgrader_cells():
    for path in sorted((ROOT / "lectures").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for c in cells:
            c["source"] = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        meta = [c["metadata"].get("nbgrader") for c in cells]
        solutions = [m for m in meta if m and m["solution"]]
        grades = [m for m in meta if m and m["grade"]]
        assert solutions and len(grades) == len(solutions), path.name
        assert all(m["locked"] and m["points"] > 0 for m in grades)
        for c, m in zip(cells, meta):
            has_region = "BEGIN SOLUTION" in c["source"]
            assert has_region == bool(m and m["solution"]), f"{path.name}: solution region outside a solution cell"
            if m and m["grade"]:
                assert "### BEGIN HIDDEN TESTS" in c["source"] and "assert" in c["source"]


def test_otter_variant_has_one_question_per_grade_cell(tmp_path):
    import subprocess
    import sys

    nbformat = pytest.importorskip("nbformat")
    script = ROOT / "lectures" / "make_04_binarized.py"
    subprocess.run([sys.executable, str(script), "--otter", str(tmp_path)], check=True, capture_output=True)
    cells = nbformat.read(tmp_path / "04_binarized.ipynb", as_version=4).cells
    raw = [c.source.splitlines()[0] for c in cells if c.cell_type == "raw"]
    assert raw[0] == "# ASSIGNMENT CONFIG"
    assert raw.count("# BEGIN QUESTION") == raw.count("# END QUESTION") == 2
    assert raw.count("# BEGIN TESTS") == raw.count("# BEGIN SOLUTION") == 2
    hidden = [c.source for c in cells if c.cell_type == "code" and c.source.startswith("# HIDDEN")]
    assert len(hidden) == 2 and all("assert" in h and "HIDDEN TESTS" not in h for h in hidden)
    assert not any("nbgrader" in c.metadata for c in cells)
