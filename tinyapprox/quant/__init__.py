"""Quantization: number formats, fake quantization for PTQ and QAT, and integer inference.

* ``formats``: FP16, affine integers, dynamic fixed point, minifloat, power-of-two — each a
  quantize / dequantize pair on NumPy arrays with documented rounding and saturation.
* ``observers``: min-max, moving-average min-max and percentile range observers.
* ``fake``: the straight-through ``FakeQuant`` op, the ``WeightQuant`` parameter transform,
  ``AccumulatorBias`` and the ``ActQuant`` module.
* ``pipeline``: prepare / calibrate / finetune / qat whole models, Ristretto's bit-width search,
  per-layer sensitivity, honest size accounting, export of integer codes.
* ``lowered``: ``convert(qmodel)`` lowers a calibrated model to integer inference layers
  (``QuantizedLinear`` / ``QuantizedConv2d`` on the fused int8 kernel, shift-add layers for
  power-of-two weights, integer max pooling) with ``check()`` for accumulator overflow.
* ``integer``: the integer arithmetic they use: requantization, rounding shifts, wrap-around,
  accumulator bounds, shift-add products.
* ``compress``: Deep Compression's k-means weight sharing for pruned models.
* ``lowprec``: ``StoredLowPrecision``, weights kept only on a format's grid while training
  (against the shadow weights of QAT), and ``apply_variant`` for the low-precision recipes.
"""
from .fake import SCHEMES, AccumulatorBias, ActQuant, FakeQuant, WeightQuant, fake_quant, make_format
from .formats import (FP16, Affine, DynamicFixedPoint, FP16OverflowError, FP16OverflowWarning, Format, Minifloat,
                      PowerOfTwo, get_format, round_values)
from .compress import KMeansQuant, deep_compression, kmeans_1d, sparse_size
from .integer import accumulator_bound, pow2_matmul, requantize, round_shift
from .lowered import IntMaxPool2d, QuantizedConv2d, QuantizedLinear, QuantizedModel, QuantizeInput, convert
from .pipeline import (calibrate, evaluate, export_npz, finalize, finetune, load_npz, model_size, prepare, ptq, qat,
                  search_bitwidths, sensitivity)
from .lowprec import LossScaler, LowPrecisionTensors, StoredLowPrecision, TensorRounding, apply_variant, round_tensors
from .observers import MinMaxObserver, MovingAverageMinMaxObserver, Observer, PercentileObserver, get_observer

__all__ = ["LossScaler", "LowPrecisionTensors", "TensorRounding", "round_tensors", "SCHEMES", "AccumulatorBias", "ActQuant", "FakeQuant", "WeightQuant", "fake_quant", "make_format",
           "FP16", "Affine", "DynamicFixedPoint", "FP16OverflowError", "FP16OverflowWarning", "Format", "Minifloat",
           "PowerOfTwo", "get_format", "round_values", "MinMaxObserver", "MovingAverageMinMaxObserver", "Observer",
           "PercentileObserver", "get_observer", "convert", "QuantizedModel", "QuantizeInput", "QuantizedLinear",
           "QuantizedConv2d", "IntMaxPool2d", "accumulator_bound", "pow2_matmul", "requantize",
           "round_shift", "calibrate", "evaluate", "export_npz", "finalize", "finetune", "load_npz", "model_size",
           "prepare", "ptq", "qat", "search_bitwidths", "sensitivity", "KMeansQuant",
           "deep_compression", "kmeans_1d", "sparse_size", "StoredLowPrecision", "apply_variant"]
