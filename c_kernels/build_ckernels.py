"""cffi builder (API mode, out of line) for ``tinyapprox._ckernels``.

``setup.py`` uses it through ``cffi_modules=["c_kernels/build_ckernels.py:ffibuilder"]``.
It can also be run directly to build the extension into a directory of your choice::

    python c_kernels/build_ckernels.py [--outdir DIR]

which writes ``DIR/tinyapprox/_ckernels.<abi>.so`` (default DIR: the repository root,
i.e. next to the package sources). No ``-march=native``: each SIMD path carries its own
target attribute and is chosen at run time. ``TINYAPPROX_SANITIZE=1`` adds
AddressSanitizer and UndefinedBehaviorSanitizer instrumentation (see ``asan_check.sh``).

``TINYAPPROX_SIMDE=1`` builds the test-only emulated copy (see ``simde_check.sh``):
every x86 intrinsic comes from SIMDe's portable headers (Debian ``libsimde-dev``;
``SIMDE_INCLUDE`` names another include directory), no target attributes, and the
dispatch level is read from ``TINYAPPROX_SIMDE_ISA`` at run time instead of the
CPU, so every SIMD path runs on any CPU. It is slow and never installed.
"""
import argparse
import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["dispatch.c", "parallel.c", "csr.c", "gemm_int8.c", "xnor.c", "im2col.c"]

HEADER = "ta_kernels.h"


def cdef_from_header(path=os.path.join(HERE, HEADER)):
    """The cffi declarations, read from the public header so the two cannot drift.

    cffi's parser takes plain C declarations but no comments or preprocessor
    lines, so comments are removed, the include guard and ``#include`` lines
    dropped, and each ``#define NAME value`` becomes ``#define NAME ...`` (cffi
    then reads the value from the compiled header). Returns the text for
    ``FFI.cdef``; raises ValueError if the header declares no function.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        define = re.match(r"#define\s+(\w+)\s+\S", stripped)
        if define:
            lines.append(f"#define {define.group(1)} ...")
        elif stripped and not stripped.startswith("#"):
            lines.append(line.rstrip())
    cdef = "\n".join(lines) + "\n"
    if "(" not in cdef:
        raise ValueError(f"build_ckernels: no function declarations found in {path}")
    return cdef


def _compile_args():
    if sys.platform == "win32":
        return ["/O2"], []
    args = ["-std=c99", "-O3", "-fno-strict-aliasing", "-pthread"]
    link = ["-pthread"]
    if os.environ.get("TINYAPPROX_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer", "-g"]
        args = ["-std=c99", "-O1", "-fno-strict-aliasing", "-pthread"] + san
        link = san + ["-pthread"]
    if os.environ.get("TINYAPPROX_SIMDE") == "1":
        args = args + ["-DTA_SIMDE=1"]
        if os.environ.get("SIMDE_INCLUDE"):
            args.append("-I" + os.environ["SIMDE_INCLUDE"])
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
    builder.cdef(cdef_from_header())
    cflags, ldflags = _compile_args()
    builder.set_source(
        "tinyapprox._ckernels",
        f'#include "{HEADER}"\n',
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
