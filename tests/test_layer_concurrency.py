"""The same layer called from several Python threads at once gives the serial results.

Forward releases the GIL inside the native call, so calls from different threads overlap in
the kernels, share the layer's packed weights and cached native arguments, and share the
thread pool; the quantized activations go to per-thread scratch buffers. Every output must be
bit-identical to the one the same input gives when the calls run one after another.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

import pyquant
from pyquant.nn import QuantConv2d, QuantLinear, SparseLinear, SparseQuantLinear


def _linear(k: int, n: int, seed: int, sparsity: float = 0.0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(k, n)
    if sparsity:
        pyquant.prune.magnitude_prune_(lin, sparsity)
    return lin


def _layers():
    lin = _linear(384, 320, 0)
    sparse = _linear(384, 320, 1, sparsity=0.8)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    return {
        "QuantLinear-auto": (QuantLinear.from_float(lin), (48, 384)),
        "QuantLinear-per_row": (QuantLinear.from_float(lin, pyquant.Int8DynamicConfig(act="per_row")),
                                (48, 384)),
        "QuantLinear-per_tensor": (
            QuantLinear.from_float(lin, pyquant.Int8DynamicConfig(act="per_tensor")), (48, 384)),
        "QuantLinear-static": (QuantLinear.from_float(lin, pyquant.Int8StaticConfig(),
                                                      input_scale=0.03, input_zero_point=120),
                               (48, 384)),
        "QuantConv2d": (QuantConv2d.from_float(conv), (4, 8, 12, 12)),
        "SparseLinear": (SparseLinear.from_float(sparse), (48, 384)),
        "SparseQuantLinear": (SparseQuantLinear.from_float(sparse), (48, 384)),
    }


LAYERS = _layers()


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_concurrent_calls_match_serial(name, threads):
    layer, shape = LAYERS[name]
    # Different inputs per call (different row ranges, so per-row scales differ too): a call
    # that read another thread's scratch buffer or output would give a wrong answer.
    xs = [torch.randn(*shape, generator=torch.Generator().manual_seed(100 + i)) * (1 + i)
          for i in range(8)]
    with torch.no_grad():
        serial = [layer(x) for x in xs]
        with ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(layer, xs * 6))
    for i, y in enumerate(parallel):
        assert torch.equal(y, serial[i % len(xs)]), f"call {i} differs from the serial result"
