#!/usr/bin/env bash
# The Otter-Grader round trip on every lecture notebook: each generator writes its Otter
# variant (python make_NN_x.py --otter DIR), `otter assign` builds the student notebook and
# the autograder zip, and `otter run` (no container) grades the student notebook (must
# score 0) and the solution notebook (must score full marks). Quick mode.
# Needs `pip install otter-grader`. Usage: bash lectures/otter_check.sh [WORKDIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
cd "$WORK"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" TINYAPPROX_QUICK=1 MPLBACKEND=Agg OPENBLAS_NUM_THREADS=1

rm -rf master dist results
mkdir -p master dist results
for script in "$ROOT"/lectures/make_*.py; do
    python "$script" --otter master >/dev/null
done
for nb in master/*.ipynb; do
    stem="$(basename "$nb" .ipynb)"
    otter assign "$nb" "dist/$stem" >/dev/null
    zip=$(ls "dist/$stem"/autograder/*.zip)
    mkdir -p "results/$stem/blank" "results/$stem/solution"
    otter run --no-logo -a "$zip" -o "results/$stem/blank" "dist/$stem/student/$stem.ipynb" >/dev/null
    otter run --no-logo -a "$zip" -o "results/$stem/solution" "dist/$stem/autograder/$stem.ipynb" >/dev/null
done

python - <<'PY'
import json
import sys
from pathlib import Path

failed = False
for folder in sorted(Path("results").iterdir()):
    scores = {}
    for who in ("blank", "solution"):
        tests = [t for t in json.loads((folder / who / "results.json").read_text())["tests"] if t.get("max_score")]
        scores[who] = (sum(t["score"] for t in tests), sum(t["max_score"] for t in tests))
    ok = scores["blank"][0] == 0 and scores["solution"][0] == scores["solution"][1] > 0
    failed |= not ok
    print(f"{folder.name:<32} blank {scores['blank'][0]:g}/{scores['blank'][1]:g}   solution "
          f"{scores['solution'][0]:g}/{scores['solution'][1]:g}   {'ok' if ok else 'WRONG'}")
sys.exit(1 if failed else 0)
PY
