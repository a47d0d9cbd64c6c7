"""Drop-in modules holding pre-packed weights."""

from pyquant.nn.sparse import SparseLinear, SparseQuantLinear

__all__ = ["SparseLinear", "SparseQuantLinear"]
