"""cffi builder (API mode, out of line) for ``tinyapprox._ckernels``.

``setup.py`` uses it through ``cffi_modules=["c_kernels/build_ckernels.py:ffibuilder"]``.
It can also be run directly to build the extension into a directory of your choice::

    python c_kernels/build_ckernels.py [--outdir DIR]

which writes ``DIR/tinyapprox/_ckernels.<abi>.so`` (default DIR: the repository root,
i.e. next to the package sources). No ``-march=native``: each SIMD path carries its own
target attribute and is chosen at run time. ``TINYAPPROX_SANITIZE=1`` adds
AddressSanitizer and UndefinedBehaviorSanitizer instrumentation (see ``asan_check.sh``).
"""
import argparse
import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["dispatch.c", "csr.c", "gemm_int8.c", "xnor.c"]

CDEF = """
#define TA_ABI_VERSION ...
#define TA_OK ...
#define TA_ERR_SIZE ...
#define TA_ERR_INDEX ...
#define TA_ERR_ISA ...
#define TA_ERR_NOMEM ...
#define TA_ERR_PACKED ...
#define TA_ERR_KBOUND ...
#define TA_ERR_PADDING ...
#define TA_ERR_NULL ...
#define TA_ERR_ALIGN ...
#define TA_ISA_AUTO ...
#define TA_ISA_SCALAR ...
#define TA_ISA_AVX2 ...
#define TA_ISA_AVX512 ...
#define TA_KERNEL_CSR ...
#define TA_KERNEL_INT8 ...
#define TA_KERNEL_XNOR ...
#define TA_INT8_MAX_K ...
#define TA_INT8_LAYOUT_K4 ...
#define TA_INT8_LAYOUT_K2W ...

int ta_abi_version(void);
int ta_best_isa(int kernel);
void ta_cpu_features(int out[8]);
int ta_csr_matmul_f32(int isa, int64_t M, int64_t K, int64_t N, int64_t nnz,
                      const int64_t *indptr, const int32_t *indices, const float *data,
                      const float *X, float *Y, float *scratch, int64_t nscratch);
int ta_int8_has_min(const int8_t *x, int64_t n);
int ta_int8_choose_layout(int isa, int b_has_min);
int ta_int8_packed_size(int layout, int64_t K, int64_t N, int64_t *nbytes);
int ta_int8_pack(int layout, const int8_t *B, int64_t K, int64_t N, uint8_t *out, int64_t nbytes);
int ta_gemm_int8_packed(int isa, const int8_t *A, int64_t M, int64_t K, int64_t N,
                        int layout, const uint8_t *Bp, int64_t nbytes, int32_t *C);
int ta_xnor_gemm(int isa, const uint64_t *A, int64_t M, const uint64_t *B, int64_t N,
                 int64_t W, int64_t K, int32_t *C);
double ta_fma_loop(int isa, int64_t iters, float *sink);
"""


def _compile_args():
    if sys.platform == "win32":
        return ["/O2"], []
    args = ["-std=c99", "-O3", "-fno-strict-aliasing"]
    link = []
    if os.environ.get("TINYAPPROX_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer", "-g"]
        args = ["-std=c99", "-O1", "-fno-strict-aliasing"] + san
        link = san
    return args, link


def _source_paths(relative):
    paths = [os.path.join(HERE, name) for name in SOURCES]
    if not relative:
        return paths
    try:  # setuptools prefers paths relative to the directory it runs in
        return [os.path.relpath(p) for p in paths]
    except ValueError:  # different drive on Windows
        return paths


def make_builder(relative=True):
    """The FFI builder; `relative=False` for ``FFI.compile``, which changes directory."""
    builder = FFI()
    builder.cdef(CDEF)
    cflags, ldflags = _compile_args()
    builder.set_source(
        "tinyapprox._ckernels",
        '#include "ta_kernels.h"\n',
        sources=_source_paths(relative),
        include_dirs=[HERE],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    return builder


ffibuilder = make_builder()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=os.path.dirname(HERE),
                        help="directory that receives tinyapprox/_ckernels.*")
    ns = parser.parse_args(argv)
    path = make_builder(relative=False).compile(tmpdir=os.path.abspath(ns.outdir), verbose=True)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
