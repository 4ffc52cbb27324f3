#!/usr/bin/env bash
# The nbgrader round trip on every lecture notebook, as an instructor would run it:
#   generate_assignment (strip solutions and hidden tests) -> autograde the blank student
#   version (must score 0) and the instructor's solution (must score full marks).
# Notebooks run in quick mode (TINYAPPROX_QUICK=1). Needs `pip install nbgrader`.
# Usage: bash lectures/nbgrader_check.sh [WORKDIR]   (default: a fresh temporary folder)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
cd "$WORK"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" TINYAPPROX_QUICK=1 MPLBACKEND=Agg OPENBLAS_NUM_THREADS=1

cat > nbgrader_config.py <<CONFIG
c = get_config()
c.CourseDirectory.root = "$WORK"
c.CourseDirectory.course_id = "tinyapprox"
c.CourseDirectory.db_url = "sqlite:///$WORK/gradebook.db"
c.Execute.timeout = 900
CONFIG

rm -rf source release submitted autograded gradebook.db
mkdir -p source/lectures submitted/blank/lectures submitted/solution/lectures
cp "$ROOT"/lectures/*.ipynb source/lectures/
nbgrader generate_assignment lectures --force --log-level=WARN
cp release/lectures/*.ipynb submitted/blank/lectures/
# the "solution" student: the released notebooks with each solution cell filled in from the source
python - <<'PY'
import json
from pathlib import Path

for released in sorted(Path("release/lectures").glob("*.ipynb")):
    nb = json.loads(released.read_text())
    source = json.loads((Path("source/lectures") / released.name).read_text())
    answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in source["cells"]
               if c["metadata"].get("nbgrader", {}).get("solution")}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            text = "".join(answers[meta["grade_id"]])
            cell["source"] = "".join(line for line in text.splitlines(keepends=True)
                                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    (Path("submitted/solution/lectures") / released.name).write_text(json.dumps(nb, indent=1))
PY
nbgrader autograde lectures --force --log-level=WARN

python - <<'PY'
import sys
from nbgrader.api import Gradebook

failed = False
with Gradebook("sqlite:///gradebook.db") as gb:
    assignment = gb.find_assignment("lectures")
    for nb in assignment.notebooks:
        blank = gb.find_submission_notebook(nb.name, "lectures", "blank")
        solution = gb.find_submission_notebook(nb.name, "lectures", "solution")
        ok = blank.score == 0 and solution.score == solution.max_score > 0
        failed |= not ok
        print(f"{nb.name:<32} blank {blank.score:g}/{blank.max_score:g}   solution "
              f"{solution.score:g}/{solution.max_score:g}   {'ok' if ok else 'WRONG'}")
sys.exit(1 if failed else 0)
PY
