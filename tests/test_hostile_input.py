"""Hostile input, table driven: every public op of ``pyquant.ops``, the ``pyquant.nn`` layers and
``pyquant.load`` fed wrong dtypes, devices ('meta': no GPU here), ranks, non-contiguous and
expanded (stride 0) tensors, ``out=`` buffers aliasing an input, zero-size tensors, NaN / Inf,
scale <= 0, out-of-range zero points, k / amount out of range, and packed weights that do not
match the input.

Two tables (the README's "Hostile input" section is the prose version):

* ``REJECTED``: the call must raise the given exception type (TypeError for a dtype, ValueError
  for everything else) with a message that names the argument, and leave every tensor it was
  given (inputs, ``out=`` buffers and a layer's own buffers) byte-identical.
* ``ACCEPTED``: inputs with a defined, documented behaviour (a non-contiguous input copied, a
  zero-size input giving an empty result, Inf saturating, ...), each checked against what the
  behaviour says.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

import pyquant
from pyquant import ops
from pyquant.nn import QuantConv2d, QuantLinear, SparseLinear, SparseQuantLinear

NAN, INF = float("nan"), float("inf")


# ----------------------------------------------------------------------------- inputs


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def f32(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed))


def u8(*shape, seed=0):
    return torch.randint(0, 256, shape, generator=_gen(seed), dtype=torch.uint8)


def s8(*shape, seed=0):
    return torch.randint(-128, 128, shape, generator=_gen(seed), dtype=torch.int8)


def meta(t):
    return t.to("meta")


def with_value(t, value, index=-1):
    t = t.clone()
    t.view(-1)[index] = value
    return t


def alias(base: torch.Tensor, dtype: torch.dtype, shape) -> torch.Tensor:
    """A contiguous tensor of ``dtype``/``shape`` living inside ``base``'s bytes."""
    n = int(np.prod(shape))
    return base.view(-1).view(torch.uint8).view(dtype)[:n].view(shape)


def pruned_weight(n=6, k=40, seed=1):
    w = f32(n, k, seed=seed)
    w[w.abs() < 0.7] = 0
    return w


def linear(k=40, n=6, seed=2):
    torch.manual_seed(seed)
    return nn.Linear(k, n)


_TMP = None


def tmpdir() -> str:
    global _TMP
    if _TMP is None:
        _TMP = tempfile.mkdtemp(prefix="pyquant-hostile-")
        atexit.register(shutil.rmtree, _TMP, True)
    return _TMP


def saved_file(name: str, module: nn.Module) -> str:
    path = os.path.join(tmpdir(), name)
    pyquant.save(module, path)
    return path


# ----------------------------------------------------------------------------- the call wrapper


class Call:
    """A deferred call plus every tensor it touches (to check nothing was modified)."""

    def __init__(self, fn, *args, watch=(), **kwargs):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.watched = [t for t in _tensors(args) + _tensors(kwargs) + list(watch)]
        if isinstance(fn, nn.Module):
            self.watched += list(fn.state_dict().values())

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)


def _tensors(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    if isinstance(obj, ops.SparsePacked):
        return [t for t in (obj.row_ptr, obj.col_idx, obj.values, obj.scale, obj.block_ptr)
                if t is not None]
    return []


def _storage_bytes(t):
    """A copy of every byte of t's storage (covers expanded / strided views), or None (meta)."""
    if isinstance(t, np.ndarray):
        return torch.frombuffer(bytearray(t.tobytes()), dtype=torch.uint8) if t.size else None
    if t.device.type != "cpu":
        return None
    raw = torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())
    return raw.clone()


# ----------------------------------------------------------------------------- rejected inputs

REJECTED = []


def rej(case_id: str, exc: type, names: str, make) -> None:
    """make() -> Call. ``names``: what the message must name (the argument)."""
    REJECTED.append(pytest.param(make, exc, names, id=case_id))


X = lambda: f32(4, 8)  # noqa: E731
Q = lambda: s8(4, 8)  # noqa: E731
SC = lambda: torch.full((8,), 0.05)  # noqa: E731  per-axis scales for axis=1

# --- quantize (per tensor, per axis, blocked)
rej("quantize/x float64", TypeError, "x", lambda: Call(ops.quantize, X().double(), 0.1))
rej("quantize/x int8", TypeError, "x", lambda: Call(ops.quantize, Q(), 0.1))
rej("quantize/x list", TypeError, "x", lambda: Call(ops.quantize, [1.0, 2.0], 0.1))
rej("quantize/x numpy object", TypeError, "x",
    lambda: Call(ops.quantize, np.array([1.0, None], dtype=object), 0.1))
rej("quantize/x numpy negative stride", ValueError, "x",
    lambda: Call(ops.quantize, np.arange(8, dtype=np.float32)[::-1], 0.1))
rej("quantize/x meta", ValueError, "x", lambda: Call(ops.quantize, meta(X()), 0.1))
rej("quantize/x transposed", ValueError, "x", lambda: Call(ops.quantize, X().t(), 0.1))
rej("quantize/x expanded", ValueError, "x", lambda: Call(ops.quantize, f32(1, 8).expand(4, 8), 0.1))
rej("quantize/x NaN", ValueError, "x", lambda: Call(ops.quantize, with_value(X(), NAN), 0.1))
rej("quantize/x NaN per axis", ValueError, "x",
    lambda: Call(ops.quantize, with_value(X(), NAN, 3), SC(), axis=1))
rej("quantize/scale 0", ValueError, "scale", lambda: Call(ops.quantize, X(), 0.0))
rej("quantize/scale negative", ValueError, "scale", lambda: Call(ops.quantize, X(), -0.1))
rej("quantize/scale NaN", ValueError, "scale", lambda: Call(ops.quantize, X(), NAN))
rej("quantize/scale Inf", ValueError, "scale", lambda: Call(ops.quantize, X(), INF))
rej("quantize/scale underflows float32", ValueError, "scale", lambda: Call(ops.quantize, X(), 1e-50))
rej("quantize/scale tensor negative", ValueError, "scale",
    lambda: Call(ops.quantize, X(), with_value(SC(), -1.0, 2), axis=1))
rej("quantize/scale tensor 0-d zero", ValueError, "scale",
    lambda: Call(ops.quantize, X(), torch.tensor(0.0)))
rej("quantize/scale int tensor", TypeError, "scale", lambda: Call(ops.quantize, X(), torch.tensor(1)))
rej("quantize/scale str", TypeError, "scale", lambda: Call(ops.quantize, X(), "0.1"))
rej("quantize/scale None", TypeError, "scale", lambda: Call(ops.quantize, X(), None))
rej("quantize/scale meta", ValueError, "scale", lambda: Call(ops.quantize, X(), meta(SC()), axis=1))
rej("quantize/scale meta 0-d", ValueError, "scale",
    lambda: Call(ops.quantize, X(), meta(torch.tensor(0.1))))
rej("quantize/scale many without axis", ValueError, "scale", lambda: Call(ops.quantize, X(), SC()))
rej("quantize/scale wrong length", ValueError, "scale",
    lambda: Call(ops.quantize, X(), SC()[:7], axis=1))
rej("quantize/scale 2-d per axis", ValueError, "scale",
    lambda: Call(ops.quantize, X(), SC().reshape(2, 4), axis=1))
rej("quantize/zero_point 128 int8", ValueError, "zero_point", lambda: Call(ops.quantize, X(), 0.1, 128))
rej("quantize/zero_point -1 uint8", ValueError, "zero_point",
    lambda: Call(ops.quantize, X(), 0.1, -1, dtype=torch.uint8))
rej("quantize/zero_point 256 uint8", ValueError, "zero_point",
    lambda: Call(ops.quantize, X(), 0.1, 256, dtype=torch.uint8))
rej("quantize/zero_point float", TypeError, "zero_point", lambda: Call(ops.quantize, X(), 0.1, 0.5))
rej("quantize/zero_point bool", TypeError, "zero_point", lambda: Call(ops.quantize, X(), 0.1, True))
rej("quantize/zero_point float tensor", TypeError, "zero_point",
    lambda: Call(ops.quantize, X(), SC(), torch.zeros(8), axis=1))
rej("quantize/zero_point tensor out of range", ValueError, "zero_point",
    lambda: Call(ops.quantize, X(), SC(), torch.full((8,), 200, dtype=torch.int32), axis=1))
rej("quantize/zero_point tensor wrong shape", ValueError, "zero_point",
    lambda: Call(ops.quantize, X(), SC(), torch.zeros(7, dtype=torch.int32), axis=1))
rej("quantize/zero_point meta", ValueError, "zero_point",
    lambda: Call(ops.quantize, X(), SC(), meta(torch.zeros(8, dtype=torch.int32)), axis=1))
rej("quantize/zero_point meta 0-d", ValueError, "zero_point",
    lambda: Call(ops.quantize, X(), 0.1, meta(torch.tensor(0))))
rej("quantize/dtype float32", TypeError, "dtype", lambda: Call(ops.quantize, X(), 0.1, dtype=torch.float32))
rej("quantize/axis out of range", ValueError, "axis", lambda: Call(ops.quantize, X(), SC(), axis=2))
rej("quantize/axis float", TypeError, "axis", lambda: Call(ops.quantize, X(), SC(), axis=1.0))
rej("quantize/axis on 0-d", ValueError, "axis",
    lambda: Call(ops.quantize, torch.tensor(1.0), torch.ones(1), axis=0))
rej("quantize/block_size 0", ValueError, "block_size",
    lambda: Call(ops.quantize, X(), torch.ones(4, 1), axis=1, block_size=0))
rej("quantize/block_size without axis", ValueError, "block_size",
    lambda: Call(ops.quantize, X(), torch.ones(4, 1), block_size=8))
rej("quantize/blocked scale shape", ValueError, "scale",
    lambda: Call(ops.quantize, X(), torch.ones(4, 3), axis=1, block_size=4))
rej("quantize/out float32", TypeError, "out",
    lambda: Call(ops.quantize, X(), 0.1, out=torch.zeros(4, 8)))
rej("quantize/out wrong shape", ValueError, "out",
    lambda: Call(ops.quantize, X(), 0.1, out=torch.zeros(32, dtype=torch.int8)))
rej("quantize/out expanded", ValueError, "out",
    lambda: Call(ops.quantize, X(), 0.1, out=torch.zeros(1, 8, dtype=torch.int8).expand(4, 8)))
rej("quantize/out transposed", ValueError, "out",
    lambda: Call(ops.quantize, X(), 0.1, out=torch.zeros(8, 4, dtype=torch.int8).t()))
rej("quantize/out meta", ValueError, "out",
    lambda: Call(ops.quantize, X(), 0.1, out=meta(torch.zeros(4, 8, dtype=torch.int8))))
rej("quantize/out numpy", TypeError, "out",
    lambda: Call(ops.quantize, X(), 0.1, out=np.zeros((4, 8), np.int8)))


def _q_out_aliases_x(**kw):
    x = X()
    return Call(ops.quantize, x, kw.pop("scale", 0.1), out=alias(x, torch.int8, (4, 8)), **kw)


def _q_out_aliases_scale():
    s = torch.full((64,), 0.05)  # scale: bytes 32..64; out: bytes 16..48
    return Call(ops.quantize, X(), s[8:16], axis=1, out=alias(s[4:], torch.int8, (4, 8)))


rej("quantize/out aliases x", ValueError, "out", _q_out_aliases_x)
rej("quantize/out aliases x per axis", ValueError, "out",
    lambda: _q_out_aliases_x(scale=SC(), axis=1))
rej("quantize/out aliases scale", ValueError, "out", _q_out_aliases_scale)

# --- dequantize
rej("dequantize/q float32", TypeError, "q", lambda: Call(ops.dequantize, X(), 0.1))
rej("dequantize/q int32", TypeError, "q", lambda: Call(ops.dequantize, Q().int(), 0.1))
rej("dequantize/q meta", ValueError, "q", lambda: Call(ops.dequantize, meta(Q()), 0.1))
rej("dequantize/q transposed", ValueError, "q", lambda: Call(ops.dequantize, Q().t(), 0.1))
rej("dequantize/q expanded", ValueError, "q",
    lambda: Call(ops.dequantize, s8(1, 8).expand(4, 8), 0.1))
rej("dequantize/scale 0", ValueError, "scale", lambda: Call(ops.dequantize, Q(), 0.0))
rej("dequantize/scale NaN", ValueError, "scale", lambda: Call(ops.dequantize, Q(), NAN))
rej("dequantize/scale -Inf", ValueError, "scale", lambda: Call(ops.dequantize, Q(), -INF))
rej("dequantize/scale per axis negative", ValueError, "scale",
    lambda: Call(ops.dequantize, Q(), with_value(SC(), -0.5), axis=1))
rej("dequantize/scale meta", ValueError, "scale", lambda: Call(ops.dequantize, Q(), meta(SC()), axis=1))
rej("dequantize/zero_point out of range", ValueError, "zero_point",
    lambda: Call(ops.dequantize, Q(), 0.1, -129))
rej("dequantize/zero_point uint8 range", ValueError, "zero_point",
    lambda: Call(ops.dequantize, u8(4, 8), 0.1, 300))
rej("dequantize/out int8", TypeError, "out",
    lambda: Call(ops.dequantize, Q(), 0.1, out=torch.zeros(4, 8, dtype=torch.int8)))
rej("dequantize/out wrong shape", ValueError, "out",
    lambda: Call(ops.dequantize, Q(), 0.1, out=torch.zeros(8, 4)))


def _dq_out_aliases_q():
    buf = torch.zeros(64)
    q = alias(buf, torch.int8, (4, 8))
    q.copy_(Q())
    return Call(ops.dequantize, q, 0.1, out=buf[:32].view(4, 8))


rej("dequantize/out aliases q", ValueError, "out", _dq_out_aliases_q)

# --- dynamic_quantize
rej("dynamic_quantize/x float16", TypeError, "x", lambda: Call(ops.dynamic_quantize, X().half()))
rej("dynamic_quantize/x meta", ValueError, "x", lambda: Call(ops.dynamic_quantize, meta(X())))
rej("dynamic_quantize/x expanded", ValueError, "x",
    lambda: Call(ops.dynamic_quantize, f32(1, 8).expand(4, 8)))
rej("dynamic_quantize/x NaN", ValueError, "x", lambda: Call(ops.dynamic_quantize, with_value(X(), NAN)))
rej("dynamic_quantize/x Inf", ValueError, "x", lambda: Call(ops.dynamic_quantize, with_value(X(), INF)))
rej("dynamic_quantize/x -Inf per row", ValueError, "x",
    lambda: Call(ops.dynamic_quantize, with_value(X(), -INF, 5), axis=0))
rej("dynamic_quantize/x NaN strided axis", ValueError, "x",
    lambda: Call(ops.dynamic_quantize, with_value(X(), NAN, 5), axis=1))
rej("dynamic_quantize/dtype int32", TypeError, "dtype",
    lambda: Call(ops.dynamic_quantize, X(), dtype=torch.int32))
rej("dynamic_quantize/axis out of range", ValueError, "axis",
    lambda: Call(ops.dynamic_quantize, X(), axis=-3))
rej("dynamic_quantize/axis on 0-d", ValueError, "axis",
    lambda: Call(ops.dynamic_quantize, torch.tensor(1.0), axis=0))
rej("dynamic_quantize/out wrong dtype", TypeError, "out",
    lambda: Call(ops.dynamic_quantize, X(), out=torch.zeros(4, 8, dtype=torch.int8)))
rej("dynamic_quantize/out aliases x", ValueError, "out",
    lambda: (lambda x: Call(ops.dynamic_quantize, x, out=alias(x, torch.uint8, (4, 8))))(X()))

# --- choose_qparams
rej("choose_qparams/x int8", TypeError, "x", lambda: Call(ops.choose_qparams, Q()))
rej("choose_qparams/x meta", ValueError, "x", lambda: Call(ops.choose_qparams, meta(X())))
rej("choose_qparams/x non-contiguous", ValueError, "x", lambda: Call(ops.choose_qparams, X().t()))
rej("choose_qparams/x empty", ValueError, "x", lambda: Call(ops.choose_qparams, torch.empty(0, 4)))
rej("choose_qparams/x NaN", ValueError, "x", lambda: Call(ops.choose_qparams, with_value(X(), NAN)))
rej("choose_qparams/x Inf", ValueError, "x", lambda: Call(ops.choose_qparams, with_value(X(), INF)))
rej("choose_qparams/x range overflows", ValueError, "x",
    lambda: Call(ops.choose_qparams, torch.tensor([-3e38, 3e38]), dtype=torch.uint8, symmetric=False))
rej("choose_qparams/dtype", TypeError, "dtype", lambda: Call(ops.choose_qparams, X(), dtype=torch.int16))
rej("choose_qparams/method", ValueError, "method", lambda: Call(ops.choose_qparams, X(), method="max"))
rej("choose_qparams/percentile 0", ValueError, "percentile",
    lambda: Call(ops.choose_qparams, X(), method="percentile", percentile=0))
rej("choose_qparams/percentile 101", ValueError, "percentile",
    lambda: Call(ops.choose_qparams, X(), method="percentile", percentile=101))
rej("choose_qparams/percentile NaN", ValueError, "percentile",
    lambda: Call(ops.choose_qparams, X(), method="percentile", percentile=NAN))
rej("choose_qparams/percentile str", TypeError, "percentile",
    lambda: Call(ops.choose_qparams, X(), method="percentile", percentile="99"))
rej("choose_qparams/num_candidates 0", ValueError, "num_candidates",
    lambda: Call(ops.choose_qparams, X(), method="mse", num_candidates=0))
rej("choose_qparams/num_candidates float", TypeError, "num_candidates",
    lambda: Call(ops.choose_qparams, X(), method="mse", num_candidates=2.5))
rej("choose_qparams/symmetric str", TypeError, "symmetric",
    lambda: Call(ops.choose_qparams, X(), symmetric="no"))
rej("choose_qparams/axis out of range", ValueError, "axis", lambda: Call(ops.choose_qparams, X(), axis=2))

# --- topk_threshold, magnitude_mask, magnitude_prune_tensors_, pruning_count
for _name, _fn, _extra in (("topk_threshold", ops.topk_threshold, (3,)),
                           ("magnitude_mask", ops.magnitude_mask, (0.5,)),
                           ("magnitude_prune_tensors_", ops.magnitude_prune_tensors_, (0.5,))):
    rej(f"{_name}/x float64", TypeError, "x", lambda f=_fn, e=_extra: Call(f, X().double(), *e))
    rej(f"{_name}/x int8", TypeError, "x", lambda f=_fn, e=_extra: Call(f, Q(), *e))
    rej(f"{_name}/x meta", ValueError, "x", lambda f=_fn, e=_extra: Call(f, meta(X()), *e))
    rej(f"{_name}/x transposed", ValueError, "x", lambda f=_fn, e=_extra: Call(f, X().t(), *e))
    rej(f"{_name}/x expanded", ValueError, "x",
        lambda f=_fn, e=_extra: Call(f, f32(1, 8).expand(4, 8), *e))
    rej(f"{_name}/x NaN", ValueError, "x", lambda f=_fn, e=_extra: Call(f, with_value(X(), NAN), *e))
    rej(f"{_name}/x Inf", ValueError, "x", lambda f=_fn, e=_extra: Call(f, with_value(X(), INF), *e))
    rej(f"{_name}/x -Inf large", ValueError, "x",
        lambda f=_fn, e=_extra: Call(f, with_value(f32(3_000_000, seed=5), -INF, 2_999_000), *e))
    rej(f"{_name}/x list NaN in 2nd", ValueError, "x",
        lambda f=_fn, e=_extra: Call(f, [X(), with_value(f32(5, seed=3), NAN, 0)], *e))
    rej(f"{_name}/x list mixed dtypes", TypeError, "x",
        lambda f=_fn, e=_extra: Call(f, [X(), X().double()], *e))
    rej(f"{_name}/x list mixed devices", TypeError, "x",
        lambda f=_fn, e=_extra: Call(f, [X(), meta(X())], *e))
    rej(f"{_name}/x list 2nd non-contiguous", ValueError, "x[1]",
        lambda f=_fn, e=_extra: Call(f, [X(), X().t()], *e))
    rej(f"{_name}/x not a tensor", TypeError, "x", lambda f=_fn, e=_extra: Call(f, 3.0, *e))
rej("topk_threshold/k -1", ValueError, "k", lambda: Call(ops.topk_threshold, X(), -1))
rej("topk_threshold/k > n", ValueError, "k", lambda: Call(ops.topk_threshold, X(), 33))
rej("topk_threshold/k > n empty", ValueError, "k", lambda: Call(ops.topk_threshold, torch.empty(0), 1))
rej("topk_threshold/k float", TypeError, "k", lambda: Call(ops.topk_threshold, X(), 2.0))
rej("topk_threshold/k bool", TypeError, "k", lambda: Call(ops.topk_threshold, X(), True))
for _name, _fn in (("magnitude_mask", ops.magnitude_mask),
                   ("magnitude_prune_tensors_", ops.magnitude_prune_tensors_)):
    rej(f"{_name}/amount 1.5", ValueError, "amount", lambda f=_fn: Call(f, X(), 1.5))
    rej(f"{_name}/amount -0.1", ValueError, "amount", lambda f=_fn: Call(f, X(), -0.1))
    rej(f"{_name}/amount NaN", ValueError, "amount", lambda f=_fn: Call(f, X(), NAN))
    rej(f"{_name}/amount count > n", ValueError, "amount", lambda f=_fn: Call(f, X(), 33))
    rej(f"{_name}/amount count -1", ValueError, "amount", lambda f=_fn: Call(f, X(), -1))
    rej(f"{_name}/amount str", TypeError, "amount", lambda f=_fn: Call(f, X(), "half"))
    rej(f"{_name}/amount bool", TypeError, "amount", lambda f=_fn: Call(f, X(), True))
rej("magnitude_mask/out float32", TypeError, "out",
    lambda: Call(ops.magnitude_mask, X(), 0.5, out=torch.zeros(4, 8)))
rej("magnitude_mask/out wrong size", ValueError, "out",
    lambda: Call(ops.magnitude_mask, X(), 0.5, out=torch.zeros(31, dtype=torch.bool)))
rej("magnitude_mask/out meta", ValueError, "out",
    lambda: Call(ops.magnitude_mask, X(), 0.5, out=meta(torch.zeros(4, 8, dtype=torch.bool))))
rej("magnitude_mask/out expanded", ValueError, "out",
    lambda: Call(ops.magnitude_mask, X(), 0.5,
                 out=torch.zeros(1, 8, dtype=torch.bool).expand(4, 8)))
rej("magnitude_mask/out list too short", ValueError, "out",
    lambda: Call(ops.magnitude_mask, [X(), X()], 0.5, out=[torch.zeros(32, dtype=torch.bool)]))
rej("magnitude_mask/out aliases x", ValueError, "out",
    lambda: (lambda x: Call(ops.magnitude_mask, x, 0.5, out=alias(x, torch.bool, (4, 8))))(X()))
rej("magnitude_mask/out list aliases itself", ValueError, "out[0]",
    lambda: (lambda m: Call(ops.magnitude_mask, [X(), X()], 0.5, out=[m, m]))(
        torch.zeros(32, dtype=torch.bool)))
rej("magnitude_prune_tensors_/same tensor twice", ValueError, "x[0]",
    lambda: (lambda x: Call(ops.magnitude_prune_tensors_, [x, x], 0.5))(f32(10)))
rej("magnitude_prune_tensors_/overlapping views", ValueError, "x[0]",
    lambda: (lambda x: Call(ops.magnitude_prune_tensors_, [x[:6], x[4:]], 0.5))(f32(10)))
rej("magnitude_prune_tensors_/read-only numpy", ValueError, "x[0]",
    lambda: Call(ops.magnitude_prune_tensors_,
                 np.frombuffer(np.arange(1, 9, dtype=np.float32).tobytes(), np.float32), 0.5))
rej("pruning_count/amount > 1", ValueError, "amount", lambda: Call(ops.pruning_count, 1.01, 10))
rej("pruning_count/amount count > n", ValueError, "amount", lambda: Call(ops.pruning_count, 11, 10))
rej("pruning_count/amount None", TypeError, "amount", lambda: Call(ops.pruning_count, None, 10))

# --- int8_matmul, pack_int8_weight, unpack_int8_weight
A = lambda: u8(4, 8)  # noqa: E731
B = lambda: s8(8, 5, seed=1)  # noqa: E731
rej("int8_matmul/a float32", TypeError, "a", lambda: Call(ops.int8_matmul, A().float(), B()))
rej("int8_matmul/b int32", TypeError, "b", lambda: Call(ops.int8_matmul, A(), B().int()))
rej("int8_matmul/a meta", ValueError, "a", lambda: Call(ops.int8_matmul, meta(A()), B()))
rej("int8_matmul/b meta", ValueError, "b", lambda: Call(ops.int8_matmul, A(), meta(B())))
rej("int8_matmul/a 3-d", ValueError, "a", lambda: Call(ops.int8_matmul, A()[None], B()))
rej("int8_matmul/b 1-d", ValueError, "b", lambda: Call(ops.int8_matmul, A(), B()[:, 0].contiguous()))
rej("int8_matmul/a transposed", ValueError, "a", lambda: Call(ops.int8_matmul, u8(8, 4).t(), B()))
rej("int8_matmul/a expanded", ValueError, "a",
    lambda: Call(ops.int8_matmul, u8(1, 8).expand(4, 8), B()))
rej("int8_matmul/b expanded", ValueError, "b",
    lambda: Call(ops.int8_matmul, A(), s8(1, 5).expand(8, 5)))
rej("int8_matmul/K mismatch", ValueError, "b", lambda: Call(ops.int8_matmul, A(), B()[:7]))
rej("int8_matmul/a_zero_point 256", ValueError, "a_zero_point", lambda: Call(ops.int8_matmul, A(), B(), 256))
rej("int8_matmul/a_zero_point -1 uint8", ValueError, "a_zero_point",
    lambda: Call(ops.int8_matmul, A(), B(), -1))
rej("int8_matmul/a_zero_point 128 int8", ValueError, "a_zero_point",
    lambda: Call(ops.int8_matmul, s8(4, 8), B(), 128))
rej("int8_matmul/a_zero_point float", TypeError, "a_zero_point", lambda: Call(ops.int8_matmul, A(), B(), 3.5))
rej("int8_matmul/a_zero_point float tensor", TypeError, "a_zero_point",
    lambda: Call(ops.int8_matmul, A(), B(), torch.tensor(3.5)))
rej("int8_matmul/a_zero_point meta", ValueError, "a_zero_point",
    lambda: Call(ops.int8_matmul, A(), B(), meta(torch.tensor(3))))
rej("int8_matmul/a_zero_point 2 values", ValueError, "a_zero_point",
    lambda: Call(ops.int8_matmul, A(), B(), torch.tensor([1, 2])))
rej("int8_matmul/b_zero_point 128", ValueError, "b_zero_point", lambda: Call(ops.int8_matmul, A(), B(), 0, 128))
rej("int8_matmul/b_zero_point vector out of range", ValueError, "b_zero_point",
    lambda: Call(ops.int8_matmul, A(), B(), 0, torch.full((5,), -200, dtype=torch.int32)))
rej("int8_matmul/b_zero_point wrong length", ValueError, "b_zero_point",
    lambda: Call(ops.int8_matmul, A(), B(), 0, torch.zeros(4, dtype=torch.int32)))
rej("int8_matmul/b_zero_point float tensor", TypeError, "b_zero_point",
    lambda: Call(ops.int8_matmul, A(), B(), 0, torch.zeros(5)))
rej("int8_matmul/b_zero_point meta", ValueError, "b_zero_point",
    lambda: Call(ops.int8_matmul, A(), B(), 0, meta(torch.zeros(5, dtype=torch.int32))))
rej("int8_matmul/out int64", TypeError, "out",
    lambda: Call(ops.int8_matmul, A(), B(), out=torch.zeros(4, 5, dtype=torch.int64)))
rej("int8_matmul/out wrong shape", ValueError, "out",
    lambda: Call(ops.int8_matmul, A(), B(), out=torch.zeros(5, 4, dtype=torch.int32)))


def _mm_out_aliases(which):
    buf = torch.zeros(64, dtype=torch.int32)
    a, b = alias(buf, torch.uint8, (4, 8)), alias(buf[32:], torch.int8, (8, 5))
    a.copy_(A())
    b.copy_(B())
    if which == "a":
        return Call(ops.int8_matmul, a, B(), out=buf[:20].view(4, 5))
    return Call(ops.int8_matmul, A(), b, out=buf[32:52].view(4, 5))


rej("int8_matmul/out aliases a", ValueError, "out", lambda: _mm_out_aliases("a"))
rej("int8_matmul/out aliases b", ValueError, "out", lambda: _mm_out_aliases("b"))
rej("pack_int8_weight/w float32", TypeError, "w", lambda: Call(ops.pack_int8_weight, B().float()))
rej("pack_int8_weight/w meta", ValueError, "w", lambda: Call(ops.pack_int8_weight, meta(B())))
rej("pack_int8_weight/w 1-d", ValueError, "w", lambda: Call(ops.pack_int8_weight, B().flatten()))
rej("pack_int8_weight/w transposed", ValueError, "w", lambda: Call(ops.pack_int8_weight, B().t()))
rej("unpack_int8_weight/packed float32", TypeError, "packed",
    lambda: Call(ops.unpack_int8_weight, torch.zeros(128), 8, 5))
rej("unpack_int8_weight/packed list", TypeError, "packed",
    lambda: Call(ops.unpack_int8_weight, [0] * 128, 8, 5))
rej("unpack_int8_weight/packed meta", ValueError, "packed",
    lambda: Call(ops.unpack_int8_weight, meta(torch.zeros(128, dtype=torch.int8)), 8, 5))
rej("unpack_int8_weight/packed wrong size", ValueError, "packed",
    lambda: Call(ops.unpack_int8_weight, torch.zeros(127, dtype=torch.int8), 8, 5))
rej("unpack_int8_weight/k negative", ValueError, "k",
    lambda: Call(ops.unpack_int8_weight, torch.zeros(0, dtype=torch.int8), -4, 5))
rej("unpack_int8_weight/n float", TypeError, "n",
    lambda: Call(ops.unpack_int8_weight, torch.zeros(128, dtype=torch.int8), 8, 5.0))

# --- sparse_pack, SparsePacked, sparse_linear, sparse_q8_accumulate
W = pruned_weight
P32 = lambda: ops.sparse_pack(W())  # noqa: E731
P8 = lambda: ops.sparse_pack(W(), dtype=torch.int8)  # noqa: E731
XS = lambda: f32(3, 40, seed=4)  # noqa: E731
rej("sparse_pack/w float64", TypeError, "w", lambda: Call(ops.sparse_pack, W().double()))
rej("sparse_pack/w int8", TypeError, "w", lambda: Call(ops.sparse_pack, s8(6, 40)))
rej("sparse_pack/w meta", ValueError, "w", lambda: Call(ops.sparse_pack, meta(W())))
rej("sparse_pack/w 1-d", ValueError, "w", lambda: Call(ops.sparse_pack, W()[0].contiguous()))
rej("sparse_pack/w 3-d", ValueError, "w", lambda: Call(ops.sparse_pack, W()[None]))
rej("sparse_pack/w transposed", ValueError, "w", lambda: Call(ops.sparse_pack, W().t()))
rej("sparse_pack/w expanded", ValueError, "w", lambda: Call(ops.sparse_pack, f32(1, 40).expand(6, 40)))
rej("sparse_pack/w NaN", ValueError, "w", lambda: Call(ops.sparse_pack, with_value(W(), NAN)))
rej("sparse_pack/w Inf int8", ValueError, "w",
    lambda: Call(ops.sparse_pack, with_value(W(), INF), dtype=torch.int8))
rej("sparse_pack/dtype", TypeError, "dtype", lambda: Call(ops.sparse_pack, W(), dtype=torch.float16))
rej("sparse_pack/k_block 4", ValueError, "k_block", lambda: Call(ops.sparse_pack, W(), k_block=4))
rej("sparse_pack/k_block bool", ValueError, "k_block", lambda: Call(ops.sparse_pack, W(), k_block=True))


def _packed_with(**changes):
    p = P8() if changes.pop("int8", False) else P32()
    fields = dict(out_features=p.out_features, in_features=p.in_features, row_ptr=p.row_ptr,
                  col_idx=p.col_idx, values=p.values, scale=p.scale, dtype=p.dtype)
    fields.update(changes)
    return Call(ops.SparsePacked, **fields)


rej("SparsePacked/row_ptr lies about nnz", ValueError, "row_ptr",
    lambda: _packed_with(row_ptr=torch.tensor([0, 1, 2, 3, 4, 5, 10_000])))
rej("SparsePacked/row_ptr decreasing", ValueError, "row_ptr",
    lambda: (lambda p: _packed_with(row_ptr=torch.cat([p.row_ptr[:1], p.row_ptr[2:3], p.row_ptr[1:2],
                                                       p.row_ptr[3:]])))(P32()))
rej("SparsePacked/row_ptr int32", TypeError, "row_ptr",
    lambda: (lambda p: _packed_with(row_ptr=p.row_ptr.int()))(P32()))
rej("SparsePacked/row_ptr meta", ValueError, "row_ptr", lambda: _packed_with(row_ptr=meta(P32().row_ptr)))
rej("SparsePacked/col_idx out of range", ValueError, "col_idx",
    lambda: (lambda p: _packed_with(col_idx=with_value(p.col_idx, 40, 0)))(P32()))
rej("SparsePacked/col_idx int64", TypeError, "col_idx",
    lambda: (lambda p: _packed_with(col_idx=p.col_idx.long()))(P32()))
rej("SparsePacked/values float64", TypeError, "values",
    lambda: (lambda p: _packed_with(values=p.values.double()))(P32()))
rej("SparsePacked/values too few", ValueError, "values",
    lambda: (lambda p: _packed_with(values=p.values[:-1].clone()))(P32()))
rej("SparsePacked/int8 values 200", ValueError, "values",
    lambda: (lambda p: _packed_with(int8=True, values=with_value(p.values, 200, 0)))(P8()))
rej("SparsePacked/int8 scale negative", ValueError, "scale",
    lambda: (lambda p: _packed_with(int8=True, scale=-p.scale))(P8()))
rej("SparsePacked/int8 scale 0", ValueError, "scale",
    lambda: (lambda p: _packed_with(int8=True, scale=with_value(p.scale, 0.0, 0)))(P8()))
rej("SparsePacked/int8 scale NaN", ValueError, "scale",
    lambda: (lambda p: _packed_with(int8=True, scale=with_value(p.scale, NAN, 0)))(P8()))
rej("SparsePacked/int8 scale meta", ValueError, "scale",
    lambda: (lambda p: _packed_with(int8=True, scale=meta(p.scale)))(P8()))
rej("SparsePacked/int8 scale wrong length", ValueError, "scale",
    lambda: (lambda p: _packed_with(int8=True, scale=p.scale[:-1].clone()))(P8()))
rej("SparsePacked/int8 scale missing", TypeError, "scale", lambda: _packed_with(int8=True, scale=None))
rej("SparsePacked/out_features negative", ValueError, "out_features", lambda: _packed_with(out_features=-1))
rej("SparsePacked/out_features str", TypeError, "out_features", lambda: _packed_with(out_features="6"))
rej("SparsePacked/in_features too small", ValueError, "col_idx", lambda: _packed_with(in_features=3))
rej("sparse_linear/x float64", TypeError, "x", lambda: Call(ops.sparse_linear, XS().double(), P32()))
rej("sparse_linear/x meta", ValueError, "x", lambda: Call(ops.sparse_linear, meta(XS()), P32()))
rej("sparse_linear/x 0-d", ValueError, "x", lambda: Call(ops.sparse_linear, torch.tensor(1.0), P32()))
rej("sparse_linear/x transposed", ValueError, "x", lambda: Call(ops.sparse_linear, f32(40, 3).t(), P32()))
rej("sparse_linear/x expanded", ValueError, "x",
    lambda: Call(ops.sparse_linear, f32(1, 40).expand(3, 40), P32()))
rej("sparse_linear/x wrong in_features", ValueError, "x",
    lambda: Call(ops.sparse_linear, f32(3, 39), P32()))
rej("sparse_linear/x NaN int8 pack", ValueError, "x",
    lambda: Call(ops.sparse_linear, with_value(XS(), NAN), P8()))
rej("sparse_linear/x Inf int8 pack", ValueError, "x",
    lambda: Call(ops.sparse_linear, with_value(XS(), INF), P8()))
rej("sparse_linear/packed dense tensor", TypeError, "packed", lambda: Call(ops.sparse_linear, XS(), W()))
rej("sparse_linear/bias float64", TypeError, "bias",
    lambda: Call(ops.sparse_linear, XS(), P32(), torch.zeros(6, dtype=torch.float64)))
rej("sparse_linear/bias meta", ValueError, "bias", lambda: Call(ops.sparse_linear, XS(), P32(), meta(torch.zeros(6))))
rej("sparse_linear/bias wrong length", ValueError, "bias",
    lambda: Call(ops.sparse_linear, XS(), P32(), torch.zeros(5)))
rej("sparse_linear/bias expanded", ValueError, "bias",
    lambda: Call(ops.sparse_linear, XS(), P32(), torch.zeros(1).expand(6)))
rej("sparse_linear/out wrong shape", ValueError, "out",
    lambda: Call(ops.sparse_linear, XS(), P32(), out=torch.zeros(3, 5)))
rej("sparse_linear/out int32", TypeError, "out",
    lambda: Call(ops.sparse_linear, XS(), P32(), out=torch.zeros(3, 6, dtype=torch.int32)))
rej("sparse_linear/out aliases x", ValueError, "out",
    lambda: (lambda x: Call(ops.sparse_linear, x, P32(), out=x.view(-1)[:18].view(3, 6)))(XS()))
rej("sparse_linear/out aliases bias", ValueError, "out",
    lambda: (lambda buf: Call(ops.sparse_linear, XS(), P32(), buf[:6], out=buf[:18].view(3, 6)))(
        torch.zeros(32)))
rej("sparse_linear/out aliases packed values", ValueError, "out",
    lambda: (lambda p: Call(ops.sparse_linear, XS()[:1], p, out=p.values[:6].view(1, 6)))(P32()))
XQ = lambda: u8(3, 40, seed=6)  # noqa: E731
ZP = lambda: torch.tensor([0, 128, 255], dtype=torch.int32)  # noqa: E731
rej("sparse_q8_accumulate/xq int8", TypeError, "xq",
    lambda: Call(ops.sparse_q8_accumulate, s8(3, 40), ZP(), P8()))
rej("sparse_q8_accumulate/xq meta", ValueError, "xq",
    lambda: Call(ops.sparse_q8_accumulate, meta(XQ()), ZP(), P8()))
rej("sparse_q8_accumulate/xq 1-d", ValueError, "xq",
    lambda: Call(ops.sparse_q8_accumulate, XQ()[0].contiguous(), ZP(), P8()))
rej("sparse_q8_accumulate/xq transposed", ValueError, "xq",
    lambda: Call(ops.sparse_q8_accumulate, u8(40, 3).t(), ZP(), P8()))
rej("sparse_q8_accumulate/xq wrong in_features", ValueError, "xq",
    lambda: Call(ops.sparse_q8_accumulate, u8(3, 41), ZP(), P8()))
rej("sparse_q8_accumulate/zero_point int64", TypeError, "zero_point",
    lambda: Call(ops.sparse_q8_accumulate, XQ(), ZP().long(), P8()))
rej("sparse_q8_accumulate/zero_point 256", ValueError, "zero_point",
    lambda: Call(ops.sparse_q8_accumulate, XQ(), with_value(ZP(), 256), P8()))
rej("sparse_q8_accumulate/zero_point -1", ValueError, "zero_point",
    lambda: Call(ops.sparse_q8_accumulate, XQ(), with_value(ZP(), -1), P8()))
rej("sparse_q8_accumulate/zero_point wrong length", ValueError, "zero_point",
    lambda: Call(ops.sparse_q8_accumulate, XQ(), ZP()[:2], P8()))
rej("sparse_q8_accumulate/zero_point meta", ValueError, "zero_point",
    lambda: Call(ops.sparse_q8_accumulate, XQ(), meta(ZP()), P8()))
rej("sparse_q8_accumulate/packed float32", TypeError, "packed",
    lambda: Call(ops.sparse_q8_accumulate, XQ(), ZP(), P32()))
rej("sparse_q8_accumulate/out wrong shape", ValueError, "out",
    lambda: Call(ops.sparse_q8_accumulate, XQ(), ZP(), P8(), out=torch.zeros(3, 5, dtype=torch.int32)))
rej("sparse_q8_accumulate/out aliases xq", ValueError, "out",
    lambda: (lambda buf: Call(ops.sparse_q8_accumulate, alias(buf, torch.uint8, (3, 40)).copy_(XQ()),
                              ZP(), P8(), out=buf[:18].view(3, 6)))(torch.zeros(64, dtype=torch.int32)))

# --- nn layers
QL = lambda: QuantLinear.from_float(linear())  # noqa: E731
SL = lambda: SparseLinear.from_float(linear())  # noqa: E731
SQL = lambda: SparseQuantLinear.from_float(linear())  # noqa: E731
QC = lambda: QuantConv2d.from_float(nn.Conv2d(3, 4, 3, padding=1))  # noqa: E731
XL = lambda: f32(3, 40, seed=7)  # noqa: E731
XC = lambda: f32(2, 3, 6, 6, seed=8)  # noqa: E731
for _name, _mk in (("QuantLinear", QL), ("SparseLinear", SL), ("SparseQuantLinear", SQL)):
    rej(f"{_name}/input int64", TypeError, "input", lambda m=_mk: Call(m(), XL().long()))
    rej(f"{_name}/input bool", TypeError, "input", lambda m=_mk: Call(m(), XL() > 0))
    rej(f"{_name}/input complex", TypeError, "input", lambda m=_mk: Call(m(), XL().to(torch.complex64)))
    rej(f"{_name}/input numpy", TypeError, "input", lambda m=_mk: Call(m(), XL().numpy()))
    rej(f"{_name}/input meta", ValueError, "input|x", lambda m=_mk: Call(m(), meta(XL())))
    rej(f"{_name}/input 0-d", ValueError, "input|x", lambda m=_mk: Call(m(), torch.tensor(1.0)))
    rej(f"{_name}/input wrong in_features", ValueError, "input|x", lambda m=_mk: Call(m(), f32(3, 39)))
    rej(f"{_name}/from_float not a Linear", TypeError, "linear|nn.Linear",
        lambda m=_mk: Call(type(m()).from_float, nn.ReLU()))
    rej(f"{_name}/from_float NaN weight", ValueError, "weight|w",
        lambda m=_mk: (lambda lin: (lin.weight.data.view(-1).__setitem__(3, NAN),
                                    Call(type(m()).from_float, lin))[1])(linear()))
    rej(f"{_name}/from_float meta weight", ValueError, "weight|w",
        lambda m=_mk: Call(type(m()).from_float, nn.Linear(40, 6, device="meta")))
    rej(f"{_name}/constructor negative size", ValueError, "in_features",
        lambda m=_mk: Call(type(m()), -1, 6))
rej("QuantLinear/input float64 NaN", ValueError, "input", lambda: Call(QL(), with_value(XL(), NAN).double()))
rej("QuantLinear/input NaN", ValueError, "input", lambda: Call(QL(), with_value(XL(), NAN)))
rej("QuantLinear/input -Inf", ValueError, "input", lambda: Call(QL(), with_value(XL(), -INF)))
rej("QuantLinear/constructor str size", TypeError, "in_features", lambda: Call(QuantLinear, "40", 6))
rej("QuantLinear/act unknown", ValueError, "act", lambda: Call(QuantLinear, 40, 6, act="int4"))
rej("QuantLinear/static input_scale 0", ValueError, "input_scale",
    lambda: Call(QuantLinear.from_float, linear(), pyquant.Int8StaticConfig(), input_scale=0.0))
rej("QuantLinear/static input_zero_point 256", ValueError, "input_zero_point",
    lambda: Call(QuantLinear.from_float, linear(), pyquant.Int8StaticConfig(), input_scale=0.1,
                 input_zero_point=256))
rej("SparseLinear/input float64", TypeError, "input", lambda: Call(SL(), XL().double()))
rej("SparseQuantLinear/input float16", TypeError, "input", lambda: Call(SQL(), XL().half()))
rej("SparseQuantLinear/input NaN", ValueError, "x", lambda: Call(SQL(), with_value(XL(), NAN)))
rej("QuantConv2d/input int64", TypeError, "input", lambda: Call(QC(), XC().long()))
rej("QuantConv2d/input numpy", TypeError, "input", lambda: Call(QC(), XC().numpy()))
rej("QuantConv2d/input meta", ValueError, "input", lambda: Call(QC(), meta(XC())))
rej("QuantConv2d/input 3-d", ValueError, "input", lambda: Call(QC(), XC()[0]))
rej("QuantConv2d/input wrong channels", ValueError, "input", lambda: Call(QC(), f32(2, 2, 6, 6)))
rej("QuantConv2d/input smaller than kernel", ValueError, "input",
    lambda: Call(QuantConv2d.from_float(nn.Conv2d(3, 4, 5)), f32(1, 3, 4, 4)))
rej("QuantConv2d/input NaN", ValueError, "input", lambda: Call(QC(), with_value(XC(), NAN)))
rej("QuantConv2d/input Inf", ValueError, "input", lambda: Call(QC(), with_value(XC(), INF)))
rej("QuantConv2d/from_float not a Conv2d", TypeError, "nn.Conv2d", lambda: Call(QuantConv2d.from_float, linear()))
rej("QuantConv2d/from_float NaN weight", ValueError, "conv.weight",
    lambda: (lambda c: (c.weight.data.view(-1).__setitem__(0, NAN), Call(QuantConv2d.from_float, c))[1])(
        nn.Conv2d(3, 4, 3)))
rej("QuantConv2d/from_float padding_mode", ValueError, "padding_mode",
    lambda: Call(QuantConv2d.from_float, nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")))
rej("QuantConv2d/constructor groups 0", ValueError, "groups", lambda: Call(QuantConv2d, 3, 4, 3, groups=0))
rej("QuantConv2d/constructor groups not dividing", ValueError, "groups",
    lambda: Call(QuantConv2d, 3, 4, 3, groups=2))
rej("QuantConv2d/constructor stride 0", ValueError, "stride", lambda: Call(QuantConv2d, 3, 4, 3, stride=0))
rej("QuantConv2d/constructor kernel_size 0", ValueError, "kernel_size",
    lambda: Call(QuantConv2d, 3, 4, 0))


def _ql_after_load(name, value):
    m = QL()
    sd = dict(m.state_dict())
    sd[name] = value(sd[name])
    return Call(m.load_state_dict, sd, assign=True, watch=list(m.state_dict().values()))


rej("QuantLinear/load weight_packed float32", TypeError, "weight_packed",
    lambda: _ql_after_load("weight_packed", lambda t: t.float()))
rej("QuantLinear/load weight_scale negative", ValueError, "weight_scale",
    lambda: _ql_after_load("weight_scale", lambda t: -t))
rej("QuantLinear/load bias NaN", ValueError, "bias", lambda: _ql_after_load("bias", lambda t: with_value(t, NAN, 0)))


# --- pyquant.load
def _tampered_file(name, tamper):
    m = QL()
    tamper(m)
    return Call(pyquant.load, saved_file(name, nn.Sequential(m)))


def _sparse_file_bad_col_idx():
    m = SL()
    m.col_idx.view(-1)[0] = 40  # == in_features: out of range
    return Call(pyquant.load, saved_file("bad_col_idx.pyq", nn.Sequential(m)))


def _empty_file():
    path = os.path.join(tmpdir(), "empty.pyq")
    open(path, "wb").close()
    return Call(pyquant.load, path)


rej("load/path int (would be an fd)", TypeError, "path", lambda: Call(pyquant.load, 0))
rej("load/path None", TypeError, "path", lambda: Call(pyquant.load, None))
rej("load/model not a Module", TypeError, "model",
    lambda: Call(pyquant.load, saved_file("ok.pyq", nn.Sequential(QL())), model=3))
rej("load/strict str", TypeError, "strict",
    lambda: Call(pyquant.load, saved_file("ok2.pyq", nn.Sequential(QL())), strict="no"))
rej("load/zero-size file", ValueError, "empty.pyq", _empty_file)
rej("load/weight_packed stored as float32", ValueError, "weight_packed",
    lambda: _tampered_file("f32_packed.pyq",
                           lambda m: setattr(m, "weight_packed", m.weight_packed.float())))
rej("load/weight_packed wrong size", ValueError, "weight_packed",
    lambda: _tampered_file("short_packed.pyq",
                           lambda m: setattr(m, "weight_packed", m.weight_packed[:-16].clone())))
rej("load/weight_scale 0", ValueError, "weight_scale",
    lambda: _tampered_file("zero_scale.pyq", lambda m: m.weight_scale.view(-1).__setitem__(0, 0.0)))
rej("load/config in_features negative", ValueError, "in_features",
    lambda: _tampered_file("neg_config.pyq", lambda m: setattr(m, "in_features", -1)))
rej("load/sparse col_idx out of range", ValueError, "col_idx", _sparse_file_bad_col_idx)


@pytest.mark.parametrize("make,exc,names", REJECTED)
def test_rejected(make, exc, names):
    call = make()
    before = [_storage_bytes(t) for t in call.watched]
    with pytest.raises(exc) as info:  # TypeError for dtypes, ValueError for everything else
        call()
    msg = str(info.value)
    pattern = "|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in names.split("|"))
    assert re.search(pattern, msg), f"message does not name {names!r}: {msg}"
    for t, b in zip(call.watched, before):
        if b is not None:
            assert torch.equal(_storage_bytes(t), b), "a failed call modified its input"


# ----------------------------------------------------------------------------- accepted inputs

ACCEPTED = []


def acc(case_id: str):
    def deco(check):
        ACCEPTED.append(pytest.param(check, id=case_id))
        return check
    return deco


@acc("quantize/x 0-d")
def _():
    assert torch.equal(ops.quantize(torch.tensor(0.26), 0.1), torch.tensor(3, dtype=torch.int8))


@acc("quantize/x zero-size returns empty")
def _():
    for axis, scale in ((None, 0.1), (1, torch.ones(0)), (0, torch.ones(3))):
        q = ops.quantize(torch.empty(3, 0), scale, axis=axis)
        assert q.shape == (3, 0) and q.dtype == torch.int8


@acc("quantize/+-Inf saturates")
def _():
    q = ops.quantize(torch.tensor([INF, -INF, 1.0]), 0.1, 3)
    assert q.tolist() == [127, -128, 13]
    q = ops.quantize(torch.tensor([INF, -INF]), torch.tensor([0.1, 0.1]), axis=0, dtype=torch.uint8)
    assert q.tolist() == [255, 0]


@acc("quantize/x read-only numpy")
def _():
    x = np.frombuffer(np.array([0.5, -0.25], np.float32).tobytes(), np.float32)
    with pytest.warns(UserWarning, match="not writable"):  # torch's own warning on from_numpy
        q = ops.quantize(x, 0.25)
    assert q.tolist() == [2, -1]


@acc("quantize/out reused, every byte written")
def _():
    out = torch.full((4, 8), 99, dtype=torch.int8)
    assert torch.equal(ops.quantize(X(), 0.1, out=out), ops.quantize(X(), 0.1)) and out.data_ptr()


@acc("quantize/scale and zero_point as 1-element tensors")
def _():
    a = ops.quantize(X(), torch.tensor([0.1]), torch.tensor([3], dtype=torch.int64))
    assert torch.equal(a, ops.quantize(X(), 0.1, 3))


@acc("dequantize/zero-size returns empty")
def _():
    assert ops.dequantize(torch.empty(0, 5, dtype=torch.uint8), 0.1, 7).shape == (0, 5)


@acc("dynamic_quantize/zero-size: empty q, all-zero range (scale 1, zero point 0)")
def _():
    for shape, axis in (((0,), None), ((3, 0), 0), ((0, 4), 1), ((2, 0, 3), 2)):
        for dtype in (torch.uint8, torch.int8):
            q, s, z = ops.dynamic_quantize(torch.empty(shape), axis=axis, dtype=dtype)
            n = 1 if axis is None else shape[axis]
            assert q.shape == shape and q.dtype == dtype
            assert s.reshape(-1).tolist() == [1.0] * n and z.reshape(-1).tolist() == [0] * n


@acc("topk_threshold/k = 0 and empty input give inf")
def _():
    assert ops.topk_threshold(torch.empty(0), 0) == INF
    assert ops.topk_threshold([], 0) == INF
    assert ops.topk_threshold(X(), 0) == INF


@acc("topk_threshold/same tensor twice in a list ranks both copies")
def _():
    x = torch.tensor([3.0, -1.0, 2.0])
    assert ops.topk_threshold([x, x], 2) == 3.0 and ops.topk_threshold([x, x], 3) == 2.0


@acc("magnitude_mask/zero-size gives an empty mask")
def _():
    m = ops.magnitude_mask(torch.empty(0, 3), 0.5)
    assert m.shape == (0, 3) and m.dtype == torch.bool


@acc("magnitude_prune_tensors_/requires_grad leaf is pruned in place (documented)")
def _():
    w = torch.tensor([0.1, -3.0, 0.2, 4.0], requires_grad=True)
    assert ops.magnitude_prune_tensors_(w, 0.5) == [2]
    assert w.detach().tolist() == [0.0, -3.0, 0.0, 4.0]


@acc("int8_matmul/M, N or K = 0")
def _():
    assert ops.int8_matmul(A()[:0], B()).shape == (0, 5)
    assert ops.int8_matmul(A(), B()[:, :0], 0, torch.zeros(0, dtype=torch.int32)).shape == (4, 0)
    assert torch.equal(ops.int8_matmul(A()[:, :0], B()[:0], 7, 3), torch.zeros(4, 5, dtype=torch.int32))


@acc("pack_int8_weight/zero-size")
def _():
    packed, col_sum = ops.pack_int8_weight(torch.empty(0, 8, dtype=torch.int8))
    assert packed.numel() == 0 and col_sum.numel() == 0


@acc("sparse_pack/zero-size weights")
def _():
    for shape in ((0, 8), (6, 0)):
        for dtype in (torch.float32, torch.int8):
            p = ops.sparse_pack(torch.empty(shape), dtype=dtype)
            assert p.shape == shape and p.nnz == 0
            x = torch.ones(2, shape[1])
            y = ops.sparse_linear(x, p, torch.arange(float(shape[0])))
            assert torch.equal(y, torch.arange(float(shape[0])).expand(2, -1))


@acc("sparse_linear/M = 0 gives an empty result")
def _():
    assert ops.sparse_linear(XS()[:0], P32()).shape == (0, 6)
    assert ops.sparse_linear(XS()[:0], P8()).shape == (0, 6)


@acc("sparse_linear/NaN and Inf propagate through the stored nonzeros of a float32 pack")
def _():
    # Like nn.Linear, except that a pruned weight is absent, not 0: 0 * NaN is never formed.
    x = with_value(XS(), NAN, 0)
    x.view(-1)[45] = INF
    w = W()
    y = ops.sparse_linear(x, ops.sparse_pack(w))
    terms = torch.where(w[None] != 0, x[:, None, :].double() * w[None].double(), 0.0)
    ref = terms.sum(-1)
    assert bool(torch.isnan(ref).any()) and bool(torch.isinf(ref).any())
    assert torch.equal(torch.isnan(y), torch.isnan(ref)) and torch.equal(torch.isinf(y), torch.isinf(ref))


@acc("sparse_q8_accumulate/M = 0")
def _():
    assert ops.sparse_q8_accumulate(XQ()[:0], ZP()[:0], P8()).shape == (0, 6)


def _layer_cases():
    return (("QuantLinear", QL), ("SparseLinear", SL), ("SparseQuantLinear", SQL))


@acc("layers/non-contiguous and expanded input are copied: same result as contiguous")
def _():
    for _name, mk in _layer_cases():
        m = mk()
        base = f32(40, 3, seed=9)
        assert torch.equal(m(base.t()), m(base.t().contiguous()))
        e = f32(1, 40, seed=10).expand(3, 40)
        assert torch.equal(m(e), m(e.contiguous()))


@acc("layers/zero-size batch returns empty")
def _():
    for _name, mk in _layer_cases():
        assert mk()(f32(0, 40)).shape == (0, 6)
        assert mk()(f32(2, 0, 40)).shape == (2, 0, 6)


@acc("layers/1-d input is one row")
def _():
    for _name, mk in _layer_cases():
        m = mk()
        assert torch.equal(m(XL()[1]), m(XL()[1:2])[0])


@acc("QuantLinear/float64 and float16 input are converted to float32")
def _():
    m = QL()
    x = XL()
    assert torch.equal(m(x.double()), m(x.double().float()))
    assert torch.equal(m(x.half()), m(x.half().float()))


@acc("SparseLinear/NaN input propagates (float32 kernel, like nn.Linear)")
def _():
    y = SL()(with_value(XL(), NAN, 0))
    assert bool(torch.isnan(y[0]).any()) and not bool(torch.isnan(y[1:]).any())


@acc("QuantConv2d/channels_last, expanded and float64 input")
def _():
    m = QC()
    x = XC()
    ref = m(x)
    assert torch.equal(m(x.to(memory_format=torch.channels_last)), ref)
    e = f32(1, 3, 6, 6, seed=11).expand(2, 3, 6, 6)
    assert torch.equal(m(e), m(e.contiguous()))
    assert torch.equal(m(x.double()), ref)


@acc("QuantConv2d/zero-size batch returns empty")
def _():
    assert QC()(f32(0, 3, 6, 6)).shape == (0, 4, 6, 6)


@acc("QuantLinear/load_state_dict with a wrong-size buffer: torch's RuntimeError (nn.Module contract)")
def _():
    m = QL()
    sd = dict(m.state_dict())
    sd["weight_packed"] = sd["weight_packed"][:-16].clone()
    with pytest.raises(RuntimeError, match="weight_packed"):
        m.load_state_dict(sd)


@acc("load/missing file and directory: OSError as open() raises it")
def _():
    with pytest.raises(FileNotFoundError):
        pyquant.load(os.path.join(tmpdir(), "does-not-exist.pyq"))
    with pytest.raises(IsADirectoryError):
        pyquant.load(tmpdir())


@acc("load/template on the meta device is filled with the stored tensors")
def _():
    src = nn.Sequential(QL(), nn.ReLU(), SL.__call__().__class__.from_float(nn.Linear(6, 3)))
    path = saved_file("meta_template.pyq", src)
    template = nn.Sequential(QuantLinear(40, 6), nn.ReLU(), SparseLinear(6, 3)).to("meta")
    loaded = pyquant.load(path, model=template)
    x = XL()
    assert torch.equal(loaded(x), src(x))


@pytest.mark.parametrize("check", ACCEPTED)
def test_accepted(check):
    check()


def test_case_count():
    """The README's "Hostile input" section quotes this count: keep them in step."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    m = re.search(r"(\d+) hostile-input cases \((\d+) rejected, (\d+) accepted", readme)
    assert m, "README.md must state the hostile-input case count"
    assert (int(m.group(2)), int(m.group(3))) == (len(REJECTED), len(ACCEPTED))
    assert int(m.group(1)) == len(REJECTED) + len(ACCEPTED)
