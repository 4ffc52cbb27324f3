#!/usr/bin/env bash
# Build the test-only copy of the C kernels whose x86 intrinsics are emulated by
# SIMDe (portable C, no target attributes) and run every tests/test_kernels*.py
# against it once per SIMD level, the level forced through TINYAPPROX_SIMDE_ISA.
# So the AVX2, AVX-512, VNNI and VPOPCNTDQ paths run (and are held to their
# NumPy twins) on any CPU, including one that has none of these instructions.
#
#   bash c_kernels/simde_check.sh [VENV] [LEVEL ...]
#
# VENV (optional; "" for none): a virtual environment to activate first. LEVELs:
# scalar, avx2, avx512 (default: all three). Needs gcc or clang and the SIMDe headers (Debian:
# apt-get install libsimde-dev; or SIMDE_INCLUDE=/path/to/simde's parent). Tests
# marked slow (benchmarks) are skipped: emulated timings mean nothing. Exits
# non-zero on a build failure, a level that is not live, or a failing test.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -ge 1 ] && [ -n "$1" ] && [ -f "$1/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "$1/bin/activate"
    shift
elif [ $# -ge 1 ] && [ -z "$1" ]; then
    shift
fi
LEVELS=("$@")
if [ ${#LEVELS[@]} -eq 0 ]; then
    LEVELS=(scalar avx2 avx512)
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "building the SIMDe-emulated extension in $TMP"
if ! TINYAPPROX_SIMDE=1 python "$ROOT/c_kernels/build_ckernels.py" --outdir "$TMP" >"$TMP/build.log" 2>&1; then
    cat "$TMP/build.log"
    echo "simde_check: emulated build failed (SIMDe headers installed? see ta_simde_compat.h)" >&2
    exit 1
fi
SO="$(ls "$TMP"/tinyapprox/_ckernels*.so | head -n 1)"
if command -v objdump >/dev/null 2>&1 && objdump -d "$SO" | grep -qE '%[yz]mm[0-9]'; then
    echo "simde_check: $SO contains AVX instructions; the emulated build must have none" >&2
    exit 1
fi

cd "$ROOT"
mapfile -t TESTS < <(ls tests/test_kernels*.py)
export TINYAPPROX_CKERNELS_PATH="$SO"
export TINYAPPROX_KERNELS=""
for level in "${LEVELS[@]}"; do
    echo "== SIMDe-emulated level: $level (${TESTS[*]}) =="
    start=$SECONDS
    TINYAPPROX_SIMDE_ISA="$level" python - "$SO" "$level" <<'EOF'
import sys
from tinyapprox import kernels
from tinyapprox.kernels import _ext

so, level = sys.argv[1], sys.argv[2]
if _ext.path != so:
    sys.exit(f"simde_check: emulated module not loaded: {_ext.path!r} ({_ext.load_error})")
info = kernels.info()
if not info.get("simd_emulated"):
    sys.exit(f"simde_check: {so} is not the SIMDe build")
live = {k: info[k] for k in ("csr_matmul", "gemm_int8", "xnor_gemm")}
if any(not path.startswith(level) for path in live.values()) or kernels.c_paths()[-1] != "c-" + level:
    sys.exit(f"simde_check: forced level {level!r} is not live: {live}, c_paths {kernels.c_paths()}")
print(f"live paths: {live}")
EOF
    TINYAPPROX_SIMDE_ISA="$level" timeout 600 \
        python -m pytest -p no:cacheprovider -q -m "not slow" "${TESTS[@]}"
    echo "simde_check: level $level passed in $((SECONDS - start)) s"
done
echo "simde_check: OK"
