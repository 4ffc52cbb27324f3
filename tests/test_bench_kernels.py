"""`tinyapprox bench kernels`: the report's structure on tiny sizes, never its speed.

Checks that every kernel row carries a positive rate, positive ratios against its
peers, its thread count and its peak entry; that the machine section names the CPU,
its features, the BLAS kernel and the peaks; that the JSON file holds the same; that
the OPENBLAS_CORETYPE warning fires exactly when the BLAS kernel is older than the
CPU; and that no environment variable is changed.
"""
import json
import os

import pytest

from tinyapprox import kernels
from tinyapprox.experiments import bench_kernels as bench
from tinyapprox.experiments import cli

pytestmark = pytest.mark.kernels

TINY = {"csr": [(9, 40, 70, 0.9), (5, 17, 3, 0.5)], "int8": [(5, 40, 33)], "xnor": [(7, 5, 130)]}
AVX512 = {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl"}


def _check_report(result, threads):
    machine = result["machine"]
    assert isinstance(machine["cpu"], str) and machine["cpu"]
    assert set(machine["cpu_features"]) >= {"avx2", "avx512f", "avx512vnni", "avx512vpopcntdq"}
    assert set(machine["kernels"]) >= {"csr_matmul", "gemm_int8", "xnor_gemm", "extension_loaded"}
    assert set(machine["blas"]) >= {"library", "architecture", "version", "source", "threads"}
    assert machine["threads"] == threads and isinstance(machine["warnings"], list)
    assert machine["usable_cores"] >= 1
    for kernel, peak in machine["peaks_per_thread"].items():
        assert peak["per_thread"] is None or peak["per_thread"] > 0, kernel
    if kernels.info()["extension_loaded"]:
        assert machine["peaks_per_thread"]["csr_matmul"]["per_thread"] > 0  # ta_fma_loop
    for group, kernel in (("csr", "csr_matmul"), ("int8", "gemm_int8"), ("xnor", "xnor_gemm")):
        assert len(result[group]) == len(TINY[group])
        takes_threads = bench._accepts_threads(getattr(kernels, kernel))
        for row in result[group]:
            assert row["kernel"] == kernel and row["path"] == kernels.info()[kernel]
            assert row["threads"] == (threads if takes_threads else 1)
            assert row["threads_requested"] == threads
            assert row["seconds"] > 0 and row["rate"] > 0 and row["unit"]
            assert row["peers"], f"{kernel}: no peer measured"
            for name, peer in row["peers"].items():
                assert peer["seconds"] > 0 and peer["ratio"] > 0 and peer["cpu_ratio"] > 0, name
                assert peer["threads"] == (1 if name == "scipy.sparse" else threads), name
            assert row["peak"]["fraction"] is None or row["peak"]["fraction"] > 0
            assert (row["peak"]["fraction"] is None) == (row["peak"]["per_thread"] is None)
    try:
        import scipy.sparse  # noqa: F401
        assert "scipy.sparse" in result["csr"][0]["peers"]
    except ImportError:
        assert "numpy fp32 dense" in result["csr"][0]["peers"]
    assert "numpy fp32" in result["int8"][0]["peers"]
    try:
        import torch  # noqa: F401
        assert "torch fbgemm quantized.Linear" in result["int8"][0]["peers"]
    except ImportError:
        assert "torch not importable" in result["int8"][0]["peers_missing"].values()


@pytest.mark.parametrize("threads", [1, 2])
def test_run_reports_every_kernel_and_writes_json(tmp_path, threads):
    for module in ("threadpoolctl", "torch"):  # threadpoolctl's import sets KMP_DUPLICATE_LIB_OK
        try:
            __import__(module)
        except ImportError:
            pass
    before = dict(os.environ)
    path = tmp_path / "bench.json"
    result = bench.run(json_path=str(path), threads=threads, shapes=TINY, budget=0.002,
                       peak_seconds=0.002)
    assert dict(os.environ) == before, "the benchmark changed the environment"
    _check_report(result, threads)
    assert json.loads(path.read_text()) == json.loads(json.dumps(result, default=str))


def test_run_over_several_thread_counts_reports_scaling():
    result = bench.run(threads="1,2", shapes={"csr": TINY["csr"][:1], "int8": TINY["int8"],
                                               "xnor": TINY["xnor"]}, budget=0.002, peak_seconds=0.002)
    assert result["machine"]["threads"] == [1, 2]
    for group in ("csr", "int8", "xnor"):
        rows = result[group]
        assert [r["threads_requested"] for r in rows] == [1, 2]
        assert rows[0]["scaling"] == 1.0 and rows[1]["scaling"] > 0
        assert rows[0]["shape"] == rows[1]["shape"]


def test_cli_bench_kernels_json(tmp_path, monkeypatch, capsys):
    for group, shapes in TINY.items():
        monkeypatch.setitem(bench.QUICK_SHAPES, group, shapes)
    path = tmp_path / "cli.json"
    assert cli.main(["bench", "kernels", "--quick", "--json", str(path)]) == 0
    report = json.loads(path.read_text())["kernels"]
    _check_report(report, 1)
    out = capsys.readouterr().out
    assert "CPU:" in out and "numpy BLAS:" in out and "peak" in out


def test_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="threads must be an int"):
        bench.run(threads=0)
    with pytest.raises(ValueError, match="threads must be an int"):
        bench.run(threads=True)
    with pytest.raises(ValueError, match="threads must be an int"):
        bench.run(threads="1,x")
    with pytest.raises(ValueError, match="unknown shape groups"):
        bench.run(shapes={"conv": []})


def test_coretype_warning_only_for_an_older_blas_kernel():
    warn = bench.coretype_warning
    assert "OPENBLAS_CORETYPE=Haswell forces it" in warn(AVX512, "Haswell", "Haswell")
    assert "AVX-512" in warn(AVX512, "Haswell", "Haswell")
    assert "BLAS build" in warn(AVX512, "Sandybridge", None)  # no variable, still older
    assert "Haswell" in warn(AVX512, "unknown", "Haswell")  # live kernel unknown: judge the variable
    assert warn(AVX512, "SkylakeX", None) is None
    assert warn(AVX512, "SkylakeX", "SkylakeX") is None
    assert warn({"avx", "avx2", "fma"}, "Haswell", "Haswell") is None  # what an AVX2 CPU can do
    assert warn({"avx", "avx2", "fma"}, "Zen", None) is None
    assert "Prescott" in warn({"avx", "avx2", "fma"}, "Prescott", "Prescott")
    assert warn(AVX512, "unknown", None) is None
    assert warn(AVX512, "NeoverseN1", None) is None  # not an x86 kernel: no claim


def test_cpu_rank_and_name():
    assert bench.cpu_rank(AVX512) == 3
    assert bench.cpu_rank({"avx", "avx2", "fma"}) == 2
    assert bench.cpu_rank({"avx"}) == 1 and bench.cpu_rank(set()) == 0
    assert isinstance(bench.cpu_name(), str) and bench.cpu_name()
    assert isinstance(bench.cpu_flags(), set)

