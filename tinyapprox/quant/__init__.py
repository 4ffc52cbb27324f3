"""Quantization: number formats, fake quantization for PTQ and QAT, and integer inference.

* ``formats``: FP16, affine integers, dynamic fixed point, minifloat, power-of-two — each a
  quantize / dequantize pair on NumPy arrays with documented rounding and saturation.
* ``observers``: min-max, moving-average min-max and percentile range observers.
* ``fake``: the straight-through ``FakeQuant`` op, the ``WeightQuant`` parameter transform,
  ``AccumulatorBias`` and the ``ActQuant`` module.
"""
from .fake import SCHEMES, AccumulatorBias, ActQuant, FakeQuant, WeightQuant, fake_quant, make_format
from .formats import (FP16, Affine, DynamicFixedPoint, FP16OverflowError, FP16OverflowWarning, Format, Minifloat,
                      PowerOfTwo, get_format, round_values)
from .observers import MinMaxObserver, MovingAverageMinMaxObserver, Observer, PercentileObserver, get_observer

__all__ = ["SCHEMES", "AccumulatorBias", "ActQuant", "FakeQuant", "WeightQuant", "fake_quant", "make_format",
           "FP16", "Affine", "DynamicFixedPoint", "FP16OverflowError", "FP16OverflowWarning", "Format", "Minifloat",
           "PowerOfTwo", "get_format", "round_values", "MinMaxObserver", "MovingAverageMinMaxObserver", "Observer",
           "PercentileObserver", "get_observer"]
