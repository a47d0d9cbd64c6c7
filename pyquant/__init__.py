"""pyquant: C++-accelerated model compression for PyTorch.

Kernels are chosen once at import for the best instruction set this CPU supports;
``PYQUANT_ISA=scalar|avx2|avx512|avx512vnni`` may force a lower one.
"""

from __future__ import annotations

import os as _os
import warnings as _warnings

from pyquant import _C
from pyquant import ops, reference
from pyquant import prune
from pyquant._runtime import cpu_info, get_num_threads, set_isa, set_num_threads, supported_isas

__all__ = ["cpu_info", "get_num_threads", "ops", "prune", "reference", "set_isa", "set_num_threads",
           "supported_isas"]
__version__ = "0.1.0"

if "PYQUANT_ISA" in _os.environ:
    try:
        set_isa(_os.environ["PYQUANT_ISA"])
    except ValueError as _err:
        _warnings.warn(f"PYQUANT_ISA ignored: {_err}", RuntimeWarning, stacklevel=2)

# Sparse kernels (issue 5): pyquant.nn.SparseLinear / SparseQuantLinear and sparsify_.
from pyquant import nn  # noqa: E402
from pyquant.api_sparse import sparsify_  # noqa: E402

__all__ += ["nn", "sparsify_"]
