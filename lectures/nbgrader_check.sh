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
cp source/lectures/*.ipynb submitted/solution/lectures/
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
