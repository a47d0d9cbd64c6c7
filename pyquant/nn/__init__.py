"""Drop-in modules holding pre-packed weights: int8 (QuantLinear, QuantConv2d) and sparse
(SparseLinear, SparseQuantLinear). Each is registered with ``pyquant.io`` so that
``pyquant.save`` / ``pyquant.load`` store and rebuild it."""

from pyquant import io as _io
from pyquant.nn.quant_linear import QuantConv2d, QuantLinear
from pyquant.nn.sparse import SparseLinear, SparseQuantLinear

__all__ = ["QuantConv2d", "QuantLinear", "SparseLinear", "SparseQuantLinear"]

_io.register_module(QuantLinear, name="pyquant.nn.QuantLinear", get_config=lambda m: {
    "in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None,
    "act": m.act})
_io.register_module(QuantConv2d, name="pyquant.nn.QuantConv2d", get_config=lambda m: {
    "in_channels": m.in_channels, "out_channels": m.out_channels,
    "kernel_size": list(m.kernel_size), "stride": list(m.stride), "padding": list(m.padding),
    "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None, "act": m.act})
# The packed sparse tensors change size with the pattern; the modules resize on load.
for _cls in (SparseLinear, SparseQuantLinear):
    _io.register_module(_cls, name=f"pyquant.nn.{_cls.__name__}", get_config=lambda m: {
        "in_features": m.in_features, "out_features": m.out_features,
        "bias": m.bias is not None})
