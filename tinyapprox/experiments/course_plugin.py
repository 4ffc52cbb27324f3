"""pytest plugin behind ``tinyapprox course grade`` (loaded with ``-p``; idle unless asked).

With ``TINYAPPROX_COURSE_SUBMISSION=DIR`` set, each test marked ``ex_<name>`` runs with the
target functions of exercise ``name`` replaced by DIR's versions (every other exercise
keeps the instructor's reference). With ``TINYAPPROX_COURSE_REPORT=FILE`` the outcome of
every exercise test, with its first error line and hypothesis's falsifying example, is
written to FILE as JSON at the end of the session.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from .course import function_spans, module_file, split_target
from .exercises import BY_NAME

_SUBMISSION = os.environ.get("TINYAPPROX_COURSE_SUBMISSION")
_REPORT = os.environ.get("TINYAPPROX_COURSE_REPORT")
_results: dict = {}
_exercise_of: dict = {}
_cache: dict = {}


def exercise_of(item):
    """The exercise name a test item is marked with (``ex_<name>``), or None if it belongs to none."""
    for mark in item.iter_markers():
        if mark.name.startswith("ex_") and mark.name[3:] in BY_NAME:
            return mark.name[3:]
    return None


def load_submitted(root: Path, target: str):
    """Compile the submission's version of ``target`` in the library module's namespace.

    Returns (module, qualname, object) where object is what the class or module attribute
    should hold (a function, or a staticmethod/classmethod wrapper). Raises RuntimeError
    naming the file and function when the submission's copy is missing or does not parse.
    """
    if target in _cache:
        return _cache[target]
    module_name, qual = split_target(target)
    path = module_file(root, module_name)
    try:
        source = path.read_text()
        spans = function_spans(source)
    except (OSError, SyntaxError) as exc:
        raise RuntimeError(f"submission: cannot read {path.relative_to(root)}: {exc}") from None
    if qual not in spans:
        raise RuntimeError(f"submission: {path.relative_to(root)} has no function {qual}")
    first, last = spans[qual]
    code = textwrap.dedent("".join(source.splitlines(keepends=True)[first - 1:last]))
    module = importlib.import_module(module_name)
    namespace: dict = {}
    exec(compile("\n" * (first - 1) + code, str(path), "exec"), module.__dict__, namespace)  # noqa: S102
    _cache[target] = (module, qual, namespace[qual.rsplit(".", 1)[-1]])
    return _cache[target]


def _patch(module, qual, obj, test_module):
    """Install obj at module:qual; return a function that undoes it."""
    *owners, attr = qual.split(".")
    if owners:
        owner = module
        for name in owners:
            owner = getattr(owner, name)
        original = owner.__dict__[attr]
        setattr(owner, attr, obj)
        return lambda: setattr(owner, attr, original)
    original = getattr(module, attr)
    places = [m for name, m in list(sys.modules.items()) if m is not None and
              (name == "tinyapprox" or name.startswith("tinyapprox.")) and getattr(m, attr, None) is original]
    if test_module is not None and getattr(test_module, attr, None) is original:
        places.append(test_module)
    for m in places:
        setattr(m, attr, obj)

    def undo():
        for m in places:
            setattr(m, attr, original)
    return undo


@pytest.fixture(autouse=True)
def _course_submission(request):
    """Swap in the submission's targets of this test's exercise for the test's duration."""
    name = exercise_of(request.node)
    if not _SUBMISSION or name is None:
        yield
        return
    undo = []
    try:
        for target in BY_NAME[name]["targets"]:
            module, qual, obj = load_submitted(Path(_SUBMISSION), target)
            undo.append(_patch(module, qual, obj, getattr(request, "module", None)))
        yield
    finally:
        for u in reversed(undo):
            u()


def pytest_collection_modifyitems(items):
    for item in items:
        _exercise_of[item.nodeid] = exercise_of(item)


def _message(report) -> str:
    text = report.longreprtext or ""
    errors = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    error = next((e for e in errors if e), "failed")
    example = ""
    # hypothesis names the counterexample "Falsifying example" (older) or "Failing test case" (newer)
    marker = next((m for m in ("Falsifying example", "Failing test case") if m in text), None)
    if marker is not None:
        block = text[text.index(marker):].splitlines()
        taken = []
        for ln in block:
            ln = ln[1:].strip() if ln.startswith("E ") else ln.strip()
            taken.append(ln)
            if ln == ")":
                break
        example = " " + " ".join(taken)[:300]
    short = report.nodeid.split("::")[-1]
    return f"{short}: {error[:300]}{example}"


def pytest_runtest_logreport(report):
    name = _exercise_of.get(report.nodeid)
    if name is None:
        return
    rec = _results.setdefault(report.nodeid, {"exercise": name, "outcome": "passed", "message": None})
    if report.failed and rec["outcome"] == "passed":
        rec["outcome"], rec["message"] = "failed", _message(report)
    elif report.skipped and report.when != "teardown" and rec["outcome"] == "passed":
        rec["outcome"], rec["message"] = "skipped", f"{report.nodeid.split('::')[-1]}: skipped"


def pytest_sessionfinish(session):
    if _REPORT:
        order = {nodeid: i for i, nodeid in enumerate(_exercise_of)}
        tests = [dict(nodeid=k, **v) for k, v in sorted(_results.items(), key=lambda kv: order.get(kv[0], 0))]
        Path(_REPORT).write_text(json.dumps({"tests": tests}, indent=1))
