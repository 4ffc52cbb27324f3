"""Dispatch of the C kernels: the SIMD level each kernel runs, native and emulated.

In the native build the level comes from the CPU and ``TINYAPPROX_SIMDE_ISA`` is
ignored; in the SIMDe test build (``c_kernels/simde_check.sh``) that variable
alone sets it, so each level can be forced on any CPU. Run against either build.
"""
import os
import subprocess
import sys

import pytest

from tinyapprox import kernels
from tinyapprox.kernels import _ext

pytestmark = [pytest.mark.kernels,
              pytest.mark.skipif(_ext.lib is None, reason="C extension not loaded")]

_PATHS = {"scalar": ("scalar", "scalar", "scalar"), "avx2": ("avx2", "avx2", "avx2"),
          "avx512": ("avx512", "avx512-vnni", "avx512-vpopcntdq")}


def _paths_with(level):
    """(info paths, c_paths, an xnor product) in a fresh process with TINYAPPROX_SIMDE_ISA=level."""
    code = ("import numpy as np; from tinyapprox import kernels as k; i = k.info(); "
            "b = k.pack_bits(np.array([[1.0, -1.0, 2.0]])); "
            "print(i['csr_matmul'], i['gemm_int8'], i['xnor_gemm'], ','.join(k.c_paths()), "
            "int(k.xnor_gemm(b, b, 3, backend='c')[0, 0]), i['simd_emulated'])")
    env = {**os.environ, "TINYAPPROX_SIMDE_ISA": level, "TINYAPPROX_KERNELS": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    fields = out.stdout.split()
    return tuple(fields[:3]), fields[3].split(","), int(fields[4]), fields[5] == "True"


@pytest.mark.skipif(kernels.info()["simd_emulated"], reason="native build only")
def test_native_build_ignores_the_emulation_level():
    info = kernels.info()
    native = (info["csr_matmul"], info["gemm_int8"], info["xnor_gemm"])
    for level in ("scalar", "avx512"):
        paths, c_paths, dot, emulated = _paths_with(level)
        assert paths == native and c_paths == kernels.c_paths() and dot == 3 and not emulated


@pytest.mark.skipif(not kernels.info()["simd_emulated"], reason="SIMDe test build only")
def test_emulated_build_runs_the_forced_level():
    for level, expected in _PATHS.items():
        paths, c_paths, dot, emulated = _paths_with(level)
        assert emulated and paths == expected and dot == 3
        assert c_paths[-1] == f"c-{level}"
    assert _paths_with("")[0] == _PATHS["avx512"]  # unset: every emulated path
    assert _paths_with("sse9")[0] == _PATHS["scalar"]  # unknown: the safe one


def test_calibration_loops_count_their_work_and_refuse_bad_arguments():
    lib, ffi = _ext.lib, _ext.ffi
    best = int(lib.ta_best_isa(0))
    lanes = {0: 8, 1: 10 * 32, 2: 16 * 64}  # scalar lanes; 10 or 16 chains of 32 / 64 products
    sink = ffi.new("int32_t *")
    for level in range(best + 1):
        assert lib.ta_int8_chain_loop(level, 1000, sink) == 1000 * lanes[level] * 2
    assert lib.ta_int8_chain_loop(-1, 10, sink) == 10 * lanes[best] * 2
    assert lib.ta_int8_chain_loop(-1, 0, sink) == 0
    assert lib.ta_int8_chain_loop(-1, -1, sink) == -1
    assert lib.ta_int8_chain_loop(-1, 10, ffi.NULL) == -1
    assert lib.ta_int8_chain_loop(best + 1, 10, sink) == -1
    fsink = ffi.new("float *")
    assert lib.ta_fma_loop(0, 100, fsink) == 100 * 8 * 2
    assert lib.ta_fma_loop(best + 1, 10, fsink) == -1  # above the best level: refused, not run
    assert lib.ta_fma_loop(-7, 10, fsink) == -1
