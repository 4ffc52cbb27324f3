"""The applications floor: commands and benchmarks built on the library (nothing imports it).

``bench_inference``: ``tinyapprox bench inference --model ...``, the end-to-end speed of
every lowered model (``prune.to_sparse``, ``quant.convert``, ``bnn.pack``) in one table.
"""
