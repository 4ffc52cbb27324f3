"""Find and load the compiled extension ``tinyapprox._ckernels``, if there is one.

Environment variables, read once at import:

* ``TINYAPPROX_KERNELS``: ``numpy`` forces the NumPy twins; ``scalar``, ``avx2`` or
  ``avx512`` caps the SIMD level the C kernels may use; empty or ``auto`` = best available.
* ``TINYAPPROX_CKERNELS_PATH``: load the extension from this file instead of the
  installed one (used to test a sanitizer build).

A missing or unloadable extension is not an error: the twins take over and one
``RuntimeWarning`` says why.
"""
import importlib
import importlib.util
import os
import warnings

EXPECTED_ABI = 7
ISA_NAMES = ("scalar", "avx2", "avx512")

lib = None
ffi = None
path = None
load_error = None
forced_numpy = False
isa_cap = None  # index into ISA_NAMES, or None for no cap


def _load_from_file(file_path):
    spec = importlib.util.spec_from_file_location("tinyapprox._ckernels", file_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not an extension module: {file_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load():
    global lib, ffi, path, load_error, forced_numpy, isa_cap
    choice = os.environ.get("TINYAPPROX_KERNELS", "").strip().lower()
    if choice == "numpy":
        forced_numpy = True
        return
    if choice in ISA_NAMES:
        isa_cap = ISA_NAMES.index(choice)
    elif choice not in ("", "auto", "c"):
        warnings.warn(f"tinyapprox.kernels: ignoring unknown TINYAPPROX_KERNELS={choice!r} "
                      f"(expected numpy, auto, {', '.join(ISA_NAMES)})", RuntimeWarning, stacklevel=3)
    file_path = os.environ.get("TINYAPPROX_CKERNELS_PATH")
    try:
        if file_path:
            module = _load_from_file(file_path)
        else:
            module = importlib.import_module("tinyapprox._ckernels")
        abi = module.lib.ta_abi_version()
        if abi != EXPECTED_ABI:
            raise ImportError(f"extension ABI {abi} does not match the Python side ({EXPECTED_ABI}); "
                              "rebuild with `pip install -e .`")
    except Exception as exc:  # noqa: BLE001 - any failure means: use the NumPy twins
        load_error = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"tinyapprox.kernels: C extension not available ({load_error}); "
                      "using the NumPy twins", RuntimeWarning, stacklevel=3)
        return
    lib, ffi = module.lib, module.ffi
    path = getattr(module, "__file__", file_path)


_load()
