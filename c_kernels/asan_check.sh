#!/usr/bin/env bash
# Rebuild the C kernels with AddressSanitizer + UndefinedBehaviorSanitizer into a
# temporary directory and run tests/test_kernels*.py against that build.
#
#   bash c_kernels/asan_check.sh [VENV]
#
# VENV (optional): a virtual environment to activate first. Exits non-zero on any
# build failure, sanitizer report or test failure. Needs gcc (or clang) with libasan.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -ge 1 ] && [ -f "$1/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "$1/bin/activate"
fi
CC_BIN="${CC:-gcc}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "building sanitized extension in $TMP"
if ! TINYAPPROX_SANITIZE=1 python "$ROOT/c_kernels/build_ckernels.py" --outdir "$TMP" >"$TMP/build.log" 2>&1; then
    cat "$TMP/build.log"
    echo "asan_check: sanitized build failed" >&2
    exit 1
fi
SO="$(ls "$TMP"/tinyapprox/_ckernels*.so | head -n 1)"
LIBASAN="$("$CC_BIN" -print-file-name=libasan.so)"
if [ ! -e "$LIBASAN" ]; then
    echo "asan_check: libasan not found (got '$LIBASAN')" >&2
    exit 1
fi

export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TINYAPPROX_CKERNELS_PATH="$SO"
export TINYAPPROX_KERNELS=""
cd "$ROOT"
python -c "
from tinyapprox.kernels import _ext
import sys
if _ext.path != sys.argv[1]:
    sys.exit('asan_check: sanitized module not loaded: %r (%s)' % (_ext.path, _ext.load_error))
print('sanitized module loaded:', _ext.path)
" "$SO"
timeout 400 python -m pytest -p no:cacheprovider -q tests/test_kernels*.py
echo "asan_check: OK"
