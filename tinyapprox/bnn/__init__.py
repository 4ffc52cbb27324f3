"""Binarized neural networks (Courbariaux, Hubara et al. 2016), end to end.

* ``sign_ste`` / ``stochastic_sign``: +-1 binarization with the straight-through
  estimator (0 maps to +1, as ``kernels.pack_bits``);
* ``Binarize``: the parameter transform that gives a layer binary weights while the
  optimizer updates latent real weights, clipped to [-1, 1] after each step;
* ``BinaryLinear`` / ``BinaryConv2d``; ``models.bnn_mlp`` / ``models.bnn_conv`` and their
  float twins ``float_mlp`` / ``float_conv``; ``train_bnn`` (the paper's recipe);
* ``pack(model)``: bit-packed inference on the XNOR/popcount kernel with batch norm +
  sign folded into integer thresholds, equal to the float sign path exactly.
"""
from . import models
from .binarize import Binarize, SignSTE, StochasticSignSTE, binarize, binarize_probability, sign_ste, stochastic_sign
from .layers import BinaryConv2d, BinaryLinear
from .models import bnn_conv, bnn_mlp, float_conv, float_mlp
from .training import RECIPE, squared_hinge, train_bnn
from .packing import (KERNELS, PackedBinaryConv2d, PackedBinaryLinear, PackedBinaryModel, apply_threshold,
                      calibrate_threshold, float_thresholds, fold_threshold, int8_matmul, pack, pack_bool, sign_path,
                      xnor_dot)

__all__ = ["Binarize", "SignSTE", "StochasticSignSTE", "binarize", "binarize_probability", "sign_ste",
           "stochastic_sign", "BinaryLinear", "BinaryConv2d", "models", "bnn_mlp", "bnn_conv", "float_mlp",
           "float_conv", "RECIPE", "squared_hinge", "train_bnn", "KERNELS", "PackedBinaryModel", "PackedBinaryLinear", "PackedBinaryConv2d",
           "apply_threshold", "calibrate_threshold", "float_thresholds", "fold_threshold",
           "pack", "pack_bool", "int8_matmul", "sign_path", "xnor_dot"]
