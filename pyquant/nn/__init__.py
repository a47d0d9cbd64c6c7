"""Drop-in modules holding pre-packed weights: int8 (QuantLinear, QuantConv2d) and sparse
(SparseLinear, SparseQuantLinear)."""

from pyquant.nn.quant_linear import QuantConv2d, QuantLinear
from pyquant.nn.sparse import SparseLinear, SparseQuantLinear

__all__ = ["QuantConv2d", "QuantLinear", "SparseLinear", "SparseQuantLinear"]
