"""Drop-in quantized modules holding pre-packed int8 weights."""

from pyquant.nn.quant_linear import QuantConv2d, QuantLinear

__all__ = ["QuantConv2d", "QuantLinear"]
