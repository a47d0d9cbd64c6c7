"""pyquant: C++-accelerated model compression for PyTorch.

Kernels are chosen once at import for the best instruction set this CPU supports;
``PYQUANT_ISA=scalar|avx2|avx512|avx512vnni|amx`` may force a lower one.
"""

from __future__ import annotations

import os as _os
import warnings as _warnings

from pyquant import _C
from pyquant._runtime import (cpu_info, get_num_threads, set_isa, set_num_threads, set_threadpool,
                              supported_isas)
from pyquant import ops, reference
from pyquant import nn, prune
from pyquant.api import Int8DynamicConfig, Int8StaticConfig, quantize_
from pyquant.api_sparse import sparsify_

__all__ = ["cpu_info", "get_num_threads", "ops", "reference", "set_isa", "set_num_threads",
           "set_threadpool", "supported_isas", "nn", "prune", "Int8DynamicConfig", "Int8StaticConfig", "quantize_",
           "sparsify_"]
__version__ = "0.1.0"

# end-to-end compression (issue 6): model files, distillation, report, recipes, pipeline
from pyquant import distill
from pyquant.compress import compress
from pyquant.io import load, save
from pyquant.recipe import DistillRecipe, PruneRecipe, QuantizeRecipe, Recipe, SparseRecipe
from pyquant.report import Report, report, sweep

__all__ += ["DistillRecipe", "PruneRecipe", "QuantizeRecipe", "Recipe",
            "Report", "SparseRecipe", "compress", "distill", "load", "report", "save", "sweep"]

if "PYQUANT_ISA" in _os.environ:
    try:
        set_isa(_os.environ["PYQUANT_ISA"])
    except ValueError as _err:
        _warnings.warn(f"PYQUANT_ISA ignored: {_err}", RuntimeWarning, stacklevel=2)
