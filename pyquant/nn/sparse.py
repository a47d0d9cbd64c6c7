"""Drop-in sparse replacements for ``nn.Linear`` holding a pre-packed pruned weight.

``SparseLinear`` keeps the nonzeros in float32; ``SparseQuantLinear`` keeps them as symmetric
per-output-channel int8 and quantizes activations per row at every call (uint8, dynamic), with
int32 accumulation. Both are inference modules: forward runs without autograd (the output
never requires grad) and takes float32 input of shape ``[..., in_features]``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pyquant import _C, _alloc, _runtime, ops
from pyquant.nn._native_cache import NativeArgsCache
from pyquant.ops_sparse import SparsePacked

__all__ = ["SparseLinear", "SparseQuantLinear"]

_PACK_KEYS = ("row_ptr", "col_idx", "values", "scale", "block_ptr")


class _SparseLinearBase(NativeArgsCache):
    _dtype = torch.float32

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self._native = None
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        self.in_features = in_features
        self.out_features = out_features
        # An all-zero weight until from_float or load_state_dict fills it.
        w = torch.zeros(out_features, in_features)
        self._set_packed(ops.sparse_pack(w, dtype=self._dtype))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    def __setattr__(self, name, value):
        # Replacing a buffer (bias, packed tensors) invalidates the cached native arguments.
        if name in _PACK_KEYS or name in ("bias", "_packed"):
            self.__dict__["_native"] = None
        super().__setattr__(name, value)

    def _native_args(self) -> tuple:
        """The per-layer arguments of the native call, built once: the kernel entry point and
        numpy views of the packed tensors and bias (rebuilding them cost ~15 us per forward,
        more than the kernel of a small layer). Reset whenever the buffers change
        (``from_float``, ``load_state_dict``, assigning ``bias``, ``.to()`` and friends)."""
        if self._native is None:
            p = self._packed
            rp, ci, vals, scale, bp, nb = p._arrays()
            bias = None if self.bias is None else self.bias.detach().numpy()
            n, k = self.out_features, self.in_features
            if p.dtype == torch.float32:
                # The 16 x 1 tile view (a second copy of the weights) only runs for M >= 2:
                # built on the first such call (forward), never for a layer run at M = 1.
                fn, pre, post = _C.sparse_linear_f32, (rp, ci, vals, n, k, bias), None
            else:
                fn, pre = _C.sparse_linear_q8, (rp, ci, vals, scale, n, k, bias)
                post = (p._quad_args(),)
            self._native = (fn, pre, bp, nb, post)
        return self._native

    def _set_packed(self, packed: SparsePacked) -> None:
        self._native = None
        self._packed = packed
        for key in _PACK_KEYS:
            t = getattr(packed, key)
            if t is not None:
                self.register_buffer(key, t)
            elif key in self._buffers:
                del self._buffers[key]

    @classmethod
    def from_float(cls, linear: nn.Module, *, rows: Optional[int] = None):
        """Build from an ``nn.Linear`` (pruned or not; exact zeros are skipped).

        Works on modules pruned with ``torch.nn.utils.prune`` (their ``weight`` is the
        masked one).

        Args:
            linear: a module with a 2-d floating ``weight`` ``[out, in]`` and ``bias`` (or None).
            rows: the rows of input (batch x tokens) the layer will mostly run at, which tunes
                the pack's K blocks (``ops.sparse_pack``); None: a compromise for any M.

        Returns:
            The sparse module (the input is not modified).

        Raises:
            TypeError: linear has no floating 2-d weight.
            ValueError: the weight has NaN or Inf, or rows is not None or an int >= 1.
        """
        w = getattr(linear, "weight", None)
        if not isinstance(w, torch.Tensor) or w.ndim != 2 or not w.is_floating_point():
            raise TypeError(f"linear must have a 2-d floating-point weight, got "
                            f"{type(linear).__name__}")
        out_f, in_f = w.shape
        b = getattr(linear, "bias", None)
        mod = cls(in_f, out_f, bias=b is not None)
        with torch.no_grad():
            mod._set_packed(ops.sparse_pack(w.detach().to(torch.float32).contiguous(),
                                            dtype=cls._dtype, rows=rows))
            if b is not None:
                mod.bias = b.detach().to(torch.float32).clone().contiguous()
        return mod

    @property
    def packed(self) -> SparsePacked:
        """The packed weight the kernel uses."""
        return self._packed

    @property
    def sparsity(self) -> float:
        """Fraction of the dense weight that is not stored."""
        return 1.0 - self._packed.density

    def dense_weight(self) -> torch.Tensor:
        """The float32 dense weight this module computes with (int8: dequantized)."""
        return self._packed.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W^T + bias`` over the last dimension of float32 ``x`` (no autograd)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.float32:
            raise TypeError(f"input must be float32, got {x.dtype}")
        k = self.in_features
        if x.ndim == 0 or x.shape[-1] != k:
            raise ValueError(f"input must have last dimension in_features={k}, got shape "
                             f"{tuple(x.shape)}")
        if not x.is_cpu:
            raise ValueError(f"input must be on the CPU, got device {x.device}")
        if k == 0 or self.out_features == 0:
            return ops.sparse_linear(x.detach().contiguous(), self._packed, self.bias)
        x = x.detach()
        if not x.is_contiguous():
            x = x.contiguous()
        fn, pre, bp, nb, post = self._native or self._native_args()
        rows = x.numel() // k
        if post is None:  # fp32, tile view not built yet
            if rows == 1:
                post = (None,)
            else:
                post = (self._packed._f32_tile_args(),)
                self._native = (fn, pre, bp, nb, post)
        y = _alloc.empty(tuple(x.shape[:-1]) + (self.out_features,), torch.float32)
        _runtime._sync_threads()
        # One native call; shapes and dtypes were checked above and the pack at build time.
        fn(x.numpy(), rows, *pre, y.numpy(), bp, nb, *post)
        return y

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # The packed tensors change size with the sparsity pattern, so they are replaced,
        # not copied into, and the pack is validated again.
        present = {k: state_dict[prefix + k] for k in _PACK_KEYS if prefix + k in state_dict}
        for k in ("row_ptr", "col_idx", "values") + (("scale",) if self._dtype == torch.int8 else ()):
            if k not in present:
                missing_keys.append(prefix + k)
        if all(k in present for k in ("row_ptr", "col_idx", "values")):
            try:
                bp = present.get("block_ptr")
                nb = 0 if bp is None else (int(bp.shape[0]) if bp.ndim == 2 else 0)
                k_block = 0 if bp is None else max(1, -(-self.in_features // max(nb, 1)))
                packed = SparsePacked(
                    self.out_features, self.in_features,
                    present["row_ptr"].detach().clone().contiguous(),
                    present["col_idx"].detach().clone().contiguous(),
                    present["values"].detach().clone().contiguous(),
                    None if "scale" not in present else present["scale"].detach().clone().contiguous(),
                    self._dtype,
                    None if bp is None else bp.detach().clone().contiguous(), k_block)
                self._set_packed(packed)
            except (TypeError, ValueError) as err:
                error_msgs.append(f"{prefix}: invalid packed sparse weight: {err}")
        if self.bias is not None:
            if prefix + "bias" in state_dict:
                b = state_dict[prefix + "bias"]
                if b.shape != self.bias.shape:
                    error_msgs.append(f"{prefix}bias: expected shape {tuple(self.bias.shape)}, "
                                      f"got {tuple(b.shape)}")
                else:
                    self.bias = b.detach().to(torch.float32).clone().contiguous()
            else:
                missing_keys.append(prefix + "bias")
        if strict:
            known = {prefix + k for k in _PACK_KEYS} | {prefix + "bias"}
            for key in state_dict:
                if key.startswith(prefix) and key not in known and "." not in key[len(prefix):]:
                    unexpected_keys.append(key)

    def extra_repr(self) -> str:
        p = self._packed
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, sparsity={self.sparsity:.3f}, nnz={p.nnz}, "
                f"{p.bytes_per_nonzero} B/nonzero")


class SparseLinear(_SparseLinearBase):
    """``nn.Linear`` with a pruned float32 weight stored as CSR (see ``pyquant.ops.sparse_pack``).

    Args:
        in_features, out_features: as ``nn.Linear``.
        bias: whether the module has a bias.

    Build with :meth:`from_float`; a fresh module computes with an all-zero weight.
    Results are within ``1e-5 * (|x| @ |W|^T)`` of ``nn.Linear`` with the same (pruned) weight.
    """

    _dtype = torch.float32


class SparseQuantLinear(_SparseLinearBase):
    """Sparse + int8 ``nn.Linear``: int8 per-output-channel weights (zeros not stored), uint8
    activations quantized per row at each call, exact int32 accumulation, float32 output.

    Args:
        in_features, out_features: as ``nn.Linear``.
        bias: whether the module has a bias.
    """

    _dtype = torch.int8
