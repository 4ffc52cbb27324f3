"""Layers and models: ``Module``, ``Parameter`` (with transforms), the layer zoo, initializers, and
model inspection (``trace_layers``, ``effective_weight``)."""
from . import init
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers_all
from .inference import InferenceModule, MaxPool2dNHWC
from .module import TRANSFORMS, Module, Parameter, ParamTransform, Sequential, is_weight_layer, weight_layers
from .tracing import effective_weight, trace_layers

__all__ = ["Module", "Parameter", "ParamTransform", "Sequential", "TRANSFORMS", "init", "is_weight_layer",
           "weight_layers", "trace_layers", "effective_weight", "InferenceModule", "MaxPool2dNHWC", *_layers_all]
