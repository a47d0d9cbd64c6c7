"""Sparse linear ops (re-exported by :mod:`pyquant.ops`).

A pruned weight ``W [N, K]`` is packed once by :func:`sparse_pack` into :class:`SparsePacked`
(CSR over the N output rows with narrow column indices, stored K-block-major when rows are long
enough; the layout and its bytes per nonzero are documented in ``pyquant/sparse_format.md``),
then :func:`sparse_linear` computes
``y = x @ W^T + bias`` touching only the nonzeros. Two value types:

* ``torch.float32``: the nonzeros as they are; results within ``1e-5 * (|x| @ |W|^T)`` of the
  float64 dense product (the usual bound for a reordered float sum).
* ``torch.int8``: symmetric per-output-channel int8 weights (``scale = absmax / 127``), the
  activations quantized per row at every call (uint8, ONNX DynamicQuantizeLinear, the core's
  ``dynamic_quantize``), exact int32 accumulation, then ``acc * (x_scale * w_scale) + bias``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch

from pyquant import _C, _runtime
from pyquant.ops import (TensorLike, _all_finite, _as_tensor, _check_cpu, _check_disjoint,
                         _check_input, _np, _out_tensor)

__all__ = ["SparsePacked", "sparse_linear", "sparse_mm", "sparse_pack", "sparse_q8_accumulate"]

# |acc| <= nnz_row * 255 * 127 must stay below 2^31 (x_q - zp in [-255, 255], |w_q| <= 127).
_MAX_INT8_ROW_NNZ = (2**31 - 1) // (255 * 127)
# K blocks: walking the activation panel one K block at a time inside row-major CSR (block
# pointers per row) measured ~2x SLOWER than whole rows: every (row, block) run starts at a
# cache miss in the weight stream. Storing the entries block-major keeps the weight stream
# sequential, and then blocking pays (sparse_format.md has the numbers).


@dataclasses.dataclass
class SparsePacked:
    """A packed sparse weight ``W [out_features, in_features]`` (CSR over output rows).

    Attributes:
        out_features, in_features: N and K of the dense weight.
        row_ptr: int64 ``[N + 1]``; row n holds ``row_ptr[n + 1] - row_ptr[n]`` entries, at
            ``row_ptr[n]:row_ptr[n + 1]`` when there is one K block (else see block_ptr).
        col_idx: column (K) index of each entry: int16 holding uint16 bits when
            ``K <= 65536``, else int32.
        values: float32 entries (fp32 packs), or int16 holding int8-range values (int8 packs,
            every run padded to an even count with zero entries so pairs feed ``vpmaddwd``).
        scale: int8 packs: float32 ``[N]`` per-output-channel weight scales; else None.
        dtype: ``torch.float32`` or ``torch.int8``.
        block_ptr: int64 ``[num_blocks, N + 1]`` when there are several K blocks, else None.
            The entries are then stored block-major: row n's entries with columns in
            ``[b * k_block, (b + 1) * k_block)`` are ``block_ptr[b, n]:block_ptr[b, n + 1]``, and
            ``block_ptr[b, N]`` (= ``block_ptr[b + 1, 0]``) ends block b.
        k_block: columns per K block (0 when block_ptr is None).

    Building one from tensors (e.g. a loaded ``state_dict``) validates the structure once
    (O(nnz)); the op trusts it afterwards, so do not modify the tensors in place.
    """

    out_features: int
    in_features: int
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    values: torch.Tensor
    scale: Optional[torch.Tensor] = None
    dtype: torch.dtype = torch.float32
    block_ptr: Optional[torch.Tensor] = None
    k_block: int = 0

    def __post_init__(self):
        for name in ("out_features", "in_features"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {v!r}")
        n, k = int(self.out_features), int(self.in_features)
        if n < 0 or k < 0:
            raise ValueError(f"out_features and in_features must be >= 0, got {n}, {k}")
        self.out_features, self.in_features = n, k
        if self.dtype not in (torch.float32, torch.int8):
            raise TypeError(f"dtype must be torch.float32 or torch.int8, got {self.dtype}")
        for name, t, dts in (("row_ptr", self.row_ptr, (torch.int64,)),
                             ("col_idx", self.col_idx, (torch.int16, torch.int32)),
                             ("values", self.values,
                              (torch.float32,) if self.dtype == torch.float32 else (torch.int16,))):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            _check_input(t, name, dts)
        if self.col_idx.dtype == torch.int16 and k > 65536:
            raise ValueError(f"col_idx must be int32 when in_features > 65536, got int16 (k={k})")
        if self.values.numel() != self.col_idx.numel():
            raise ValueError(f"values has {self.values.numel()} entries but col_idx "
                             f"{self.col_idx.numel()}")
        if self.dtype == torch.int8:
            if not isinstance(self.scale, torch.Tensor) or self.scale.dtype != torch.float32:
                raise TypeError("int8 packs need scale: a float32 tensor of out_features scales")
            _check_cpu(self.scale, "scale")
            if self.scale.shape != (n,) or not self.scale.is_contiguous():
                raise ValueError(f"scale must be contiguous with shape ({n},), got "
                                 f"{tuple(self.scale.shape)}")
            if n and not bool(torch.all(torch.isfinite(self.scale) & (self.scale > 0))):
                raise ValueError("scale must be finite and > 0")
            if self.values.numel() and int(self.values.abs().max()) > 127:
                raise ValueError("int8 pack values must be in [-127, 127]")
        if self.row_ptr.ndim != 1 or self.row_ptr.numel() != n + 1:
            raise ValueError(f"row_ptr must be 1-d with out_features + 1 = {n + 1} elements, got "
                             f"shape {tuple(self.row_ptr.shape)}")
        nb = 1
        if self.block_ptr is not None:
            if not isinstance(self.k_block, int) or self.k_block < 1:
                raise ValueError(f"k_block must be an int >= 1 with block_ptr, got {self.k_block!r}")
            nb = max(1, -(-k // self.k_block))
            if not isinstance(self.block_ptr, torch.Tensor):
                raise TypeError("block_ptr must be a torch.Tensor")
            _check_input(self.block_ptr, "block_ptr", (torch.int64,))
            if self.block_ptr.shape != (nb, n + 1):
                raise ValueError(f"block_ptr must have shape ({nb}, {n + 1}), got "
                                 f"{tuple(self.block_ptr.shape)}")
        else:
            self.k_block = 0
        _C.sparse_check(_np(self.row_ptr), _np(self.col_idx.reshape(-1)), n, k,
                        self.dtype == torch.int8,
                        None if self.block_ptr is None else _np(self.block_ptr).reshape(-1), nb)
        if self.dtype == torch.int8 and n:
            longest = int((self.row_ptr[1:] - self.row_ptr[:-1]).max())
            if longest > _MAX_INT8_ROW_NNZ:
                raise ValueError(f"a row has {longest} entries: int32 accumulation is exact only "
                                 f"up to {_MAX_INT8_ROW_NNZ}")

    @property
    def num_blocks(self) -> int:
        """K blocks the kernels walk (1 without block_ptr)."""
        return 1 if self.block_ptr is None else int(self.block_ptr.shape[0])

    def _block_args(self):
        if self.block_ptr is None:
            return None, 1
        return _np(self.block_ptr).reshape(-1), self.num_blocks

    def _arrays(self):
        """numpy views of the packed tensors for _C, made once (each .numpy() costs ~2 us,
        a tenth of a small layer's call). Views share memory with the tensors; the cache is
        dropped on pickling / deepcopy and rebuilt from the copied tensors."""
        cache = self.__dict__.get("_np_cache")
        if cache is None:
            cache = (_np(self.row_ptr), _np(self.col_idx.reshape(-1)), _np(self.values),
                     None if self.scale is None else _np(self.scale)) + self._block_args()
            self.__dict__["_np_cache"] = cache
        return cache

    @property
    def is_quads(self) -> bool:
        """True for an int8 pack made of aligned 1 x 4 blocks along K (every run a sequence of
        quads, entries 4i..4i+3 at columns 4q..4q+3; ``sparse_pack(..., block=4)`` builds
        them). Detected from the structure, so a loaded ``state_dict`` keeps it; VNNI CPUs
        run such packs with one ``vpdpbusd`` per quad."""
        return self._quad_args() is not None

    def _quad_args(self):
        """(quad_w, quad_col, row_sum) int32 numpy arrays for _C, or None: built once."""
        if "_quad_cache" not in self.__dict__:
            self.__dict__["_quad_cache"] = self._make_quads()
        return self.__dict__["_quad_cache"]

    def _make_quads(self):
        n, k, nnz = self.out_features, self.in_features, self.values.numel()
        if self.dtype != torch.int8 or k % 4 or nnz % 4 or nnz == 0:
            return None
        if bool((self._runs() % 4 != 0).any()):
            return None
        cols = self._entry_cols().reshape(-1, 4)
        if bool((cols[:, 0] % 4 != 0).any()) or not bool(
                (cols == cols[:, :1] + torch.arange(4)).all()):
            return None
        quad_w = self.values.to(torch.int8).view(torch.int32)  # entry 4i in the low byte
        rows = self._entry_rows()
        row_sum = torch.zeros(n, dtype=torch.int64).index_add_(0, rows, self.values.to(torch.int64))
        quad_col = cols[:, 0] // 4
        quads = (_np(quad_w), _np(quad_col.to(torch.int32)), _np(row_sum.to(torch.int32)))
        return quads + self._make_tiles(rows[::4], quad_col, quad_w, k // 4)

    def _make_tiles(self, row: torch.Tensor, col: torch.Tensor, w: torch.Tensor,
                    kq: int) -> tuple:
        """The 16-row group view of the pack's units (int8 quads: 16 x 4 tiles; fp32 entries:
        16 x 1 tiles), ``(group_ptr, group_col, group_w)`` (see kernels.h), when each 16-row
        group's units (the union over its rows, ``kq`` possible columns) are at least
        _AUTO_QUAD_FILL filled by its rows' own units (1.0 for ``prune.block_mask(...,
        block=(16, 4))`` or ``(16, 1)``); else ``()``. ``w`` holds one unit's weight per
        entry (int32 for a quad's four int8, float32 for fp32)."""
        n = self.out_features
        groups = -(-n // 16)
        union, slot = _group_quads(row, col, kq)
        if not _fills_tiles(row.numel(), union, n, kq):
            return ()
        group_of = union // kq
        group_w = torch.zeros(union.numel(), 16, dtype=w.dtype)
        group_w[slot, row % 16] = w
        group_ptr = torch.zeros(groups + 1, dtype=torch.int64)
        group_ptr[1:] = torch.cumsum(torch.bincount(group_of, minlength=groups), 0)
        return (_np(group_ptr), _np((union % kq).to(torch.int32)), _np(group_w.reshape(-1)))

    def _f32_tile_args(self):
        """An fp32 pack's 16 x 1 tile view ``(group_ptr, group_col, group_w)`` as numpy arrays
        for _C, or None (int8, or the rows of its 16-row groups do not share their columns):
        built once."""
        if "_tile_cache" not in self.__dict__:
            view = ()
            if self.dtype == torch.float32 and self.nnz and _rows_may_share_columns(
                    self.row_ptr[1:] - self.row_ptr[:-1]):
                view = self._make_tiles(self._entry_rows(), self._entry_cols(), self.values,
                                        self.in_features)
            self.__dict__["_tile_cache"] = view or None
        return self.__dict__["_tile_cache"]

    @property
    def is_tiles(self) -> bool:
        """True for a pack whose 16-row groups share their columns: an int8 quad pack of 16 x 4
        tiles (``prune.block_mask(w, amount, block=(16, 4))``; VNNI CPUs run it for M >= 2) or
        an fp32 pack of 16 x 1 tiles (``block=(16, 1)``; AVX-512 CPUs run it for M >= 2), each
        activation load serving 16 rows (``sparse_format.md``). Detected from the structure."""
        if self.dtype == torch.float32:
            return self._f32_tile_args() is not None
        q = self._quad_args()
        return q is not None and len(q) == 6

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_np_cache", None)
        state.pop("_quad_cache", None)
        state.pop("_tile_cache", None)
        return state

    @property
    def shape(self) -> torch.Size:
        """The dense weight's shape ``(out_features, in_features)``."""
        return torch.Size((self.out_features, self.in_features))

    @property
    def nnz(self) -> int:
        """Stored entries (int8 packs include the zero pads that make rows even)."""
        return int(self.values.numel())

    @property
    def density(self) -> float:
        """Stored entries over ``N * K`` (0 for an empty shape)."""
        total = self.out_features * self.in_features
        return self.nnz / total if total else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the packed tensors."""
        ts = [self.row_ptr, self.col_idx, self.values]
        ts += [t for t in (self.scale, self.block_ptr) if t is not None]
        return sum(t.numel() * t.element_size() for t in ts)

    @property
    def bytes_per_nonzero(self) -> int:
        """Index plus value bytes per stored entry: 6 (fp32, uint16 idx), 4 (int8), +2 for int32 idx."""
        return self.col_idx.element_size() + self.values.element_size()

    def _runs(self) -> torch.Tensor:
        """Entries per run in storage order: per row, or per (block, row) when block-major."""
        if self.block_ptr is None:
            return self.row_ptr[1:] - self.row_ptr[:-1]
        return (self.block_ptr[:, 1:] - self.block_ptr[:, :-1]).reshape(-1)

    def _entry_rows(self) -> torch.Tensor:
        """The output row of every stored entry (int64 [nnz])."""
        rows = torch.arange(self.out_features).repeat(self.num_blocks)
        return torch.repeat_interleave(rows, self._runs())

    def _entry_cols(self) -> torch.Tensor:
        """The K column of every stored entry (int64 [nnz]; int16 indices hold uint16 bits)."""
        cols = self.col_idx.to(torch.int64)
        return cols & 0xFFFF if self.col_idx.dtype == torch.int16 else cols

    def to_dense(self) -> torch.Tensor:
        """The float32 dense weight this pack represents (int8: dequantized)."""
        n, k = self.out_features, self.in_features
        rows, cols = self._entry_rows(), self._entry_cols()
        vals = self.values.to(torch.float32)
        if self.scale is not None:
            vals = vals * self.scale[rows]
        dense = torch.zeros(n, k, dtype=torch.float32)
        dense.index_put_((rows, cols), vals, accumulate=True)  # int8 pads add zero
        return dense

    def __repr__(self) -> str:
        idx = "uint16" if self.col_idx.dtype == torch.int16 else "int32"
        quads = (", 16x1 blocks" if self.dtype == torch.float32 and self.is_tiles else
                 ", 16x4 blocks" if self.is_tiles else ", 1x4 blocks" if self.is_quads else "")
        return (f"SparsePacked({self.out_features}x{self.in_features}, dtype={self.dtype}, "
                f"nnz={self.nnz}, density={self.density:.4f}, idx={idx}, "
                f"{self.bytes_per_nonzero} B/nonzero{quads})")


def _narrow_idx(cols: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 65536:  # uint16 bit patterns in an int16 tensor (torch's uint16 support is thin)
        return torch.where(cols >= 32768, cols - 65536, cols).to(torch.int16).contiguous()
    return cols.to(torch.int32).contiguous()


# Auto K block: each (row, block) run reads about this many bytes of the 32-column activation
# panel (100 fp32 entries of 128 bytes). Fewer blocks leave the panel (K * 128 bytes for fp32)
# to L2, where its random row loads cost ~3 ns per nonzero on Zen 4 (512 KB panel) against
# ~1.3-1.9 ns for a panel block of <= 128 KB; more blocks pay a branch miss and a tile
# load/store per (row, block). Counted in panel bytes, not entries, because int8 reads less per
# entry: a pair entry's int16 panel row is 64 bytes, a quad's 128-byte row serves 4 entries.
# Measured on 4096 x 4096, one thread (see sparse_format.md).
_AUTO_BLOCK_PANEL_BYTES = 100 * 128
_PANEL_BYTES_PER_ENTRY = {"f32": 128, "pairs": 64, "quads": 32}
# fp32 blocks of 256 columns ran 20-40% slower than 512 at 50-70% density (M = 32 and 256),
# and no faster at M = 1; int8 keeps 256 (not measured against 512).
_MIN_K_BLOCK = {"f32": 512, "pairs": 256, "quads": 256}
# rows >= 2 (fp32): the shortest blocks of >= 512 columns whose runs hold ~20 entries. The
# M >= 2 kernel keeps paying for shorter blocks where the M = 1 kernel, one branch miss per
# run and no panel, does not (sparse_format.md): 90% / 95%, M = 32 and 256: 3-7% faster than
# the ~100-entry rule, M = 1 ~16% (90%) to ~45% (95%) slower.
_MIN_RUN_ENTRIES = 20
# rows >= 2 (fp32) on AMD (Zen 4, 32 KB L1d): blocks of 128 columns, a 16 KB panel block that
# stays in L1, wherever their runs still hold >= 24 entries (density >= 0.19). 4096 x 4096, one
# thread, against 512: 50% M = 32 9.8 against 15.6 ms, M = 256 63 against 112; 70% and 80%
# 10-20% faster; at 85% no better, at 90-95% 15-60% slower (runs of 13 and 6 entries). On the
# Intel machine of session 9 (48 KB L1d), 256 ran 20-40% slower than 512 at 50-70%.
_SHORT_K_BLOCK = 128
_SHORT_RUN_ENTRIES = 24
_SHORT_F32_BLOCKS = _C.cpu_info()["vendor"] == "AuthenticAMD"


def auto_k_block(n: int, k: int, nnz: int, kind: str = "f32",
                 rows: Optional[int] = None, *,
                 short_blocks: Optional[bool] = None) -> Optional[int]:
    """The K block :func:`sparse_pack` picks by default, or None (one block).

    rows None: a power of two >= 512 (fp32; 256 for int8) giving each (row, block) run about
    12.8 KB of activation-panel reads (fp32: ~100 entries; int8 pairs: ~200; int8 quads: ~400),
    a compromise between the M = 1 kernel (fewest blocks) and M >= 2 (shorter blocks).
    rows 1: one block. rows >= 2, fp32: the smallest power of two >= 512 whose runs hold
    ~20 entries (int8: as rows None); with short_blocks, 128 where its runs hold >= 24 entries.
    None whenever the block would be K or more.

    Args:
        n, k: the weight's shape [N, K].
        nnz: its stored entries.
        kind: the pack's entries, ``"f32"``, ``"pairs"`` (int8 entry by entry) or ``"quads"``
            (int8 1 x 4 blocks).
        rows: the rows of x the pack will mostly run at (None: unknown).
        short_blocks: allow the 128-column fp32 blocks (None: where they were measured
            faster, on AMD CPUs).

    Returns:
        int or None.
    """
    kb = _MIN_K_BLOCK[kind]  # first: an unknown kind raises KeyError even for an empty weight
    if n == 0 or k == 0 or nnz == 0 or rows == 1:
        return None
    density = nnz / (n * k)
    if short_blocks is None:
        short_blocks = _SHORT_F32_BLOCKS
    if rows is not None and kind == "f32":
        if short_blocks and _SHORT_K_BLOCK * density >= _SHORT_RUN_ENTRIES:
            kb = _SHORT_K_BLOCK
        while kb * density < _MIN_RUN_ENTRIES:
            kb *= 2
    else:
        target = _AUTO_BLOCK_PANEL_BYTES / _PANEL_BYTES_PER_ENTRY[kind] / density
        while kb * 1.5 < target:  # the power of two nearest the target (in ratio)
            kb *= 2
    return kb if kb < k else None


_RUN_STEP = 8  # the fp32 M >= 2 kernel's entries per step


def _aligned_blocks(rows, cols, n: int, k_block: int, nb: int, even: bool) -> torch.Tensor:
    """Each entry's K block. int8 packs: its column's block. fp32: a row's block boundaries
    move to the nearest multiple of _RUN_STEP entries (up to 4 entries cross into the
    neighbouring block), so only a row's last run ends in a part step, whose dead lanes
    otherwise cost as much as live ones (4096 x 4096, 90%, K block 256, M = 256: 12.9 -> 10.6
    ms; runs of exactly 24 entries ran 24% faster than random ones of the same density; with
    the default ~100-entry runs the gain is within noise at 90%, ~5% at 95%, M = 256). The
    kernels read any column of the panel, so where an entry's block ends does not matter for
    the result."""
    natural = cols // k_block
    if even or rows.numel() == 0:
        return natural
    lens = torch.bincount(rows, minlength=n)
    counts = torch.bincount(rows * nb + natural, minlength=n * nb).reshape(n, nb)
    start = torch.cumsum(counts, 1) - counts  # entries of the row before block b
    bound = torch.minimum((start + _RUN_STEP // 2) // _RUN_STEP * _RUN_STEP, lens[:, None])
    run_start = ((torch.cumsum(lens, 0) - lens)[:, None] + bound).flatten()  # non-decreasing
    run = torch.searchsorted(run_start, torch.arange(rows.numel()), right=True) - 1
    return run % nb  # entries are row-major, so entry i is the i-th of the stream


def _layout(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int, k: int,
            k_block: Optional[int], even: bool):
    """Order the entries (given row-major, ascending columns) for the kernels.

    One block: CSR. Several: block-major (all rows' entries of K block 0, then block 1, ...),
    ``block_ptr[b, r]`` the start of row r in block b. ``even`` pads every (row, block) run to an
    even count with a zero entry repeating the run's last column (int8 pairs).

    Returns:
        (row_ptr [N + 1], block_ptr [nb, N + 1] or None, cols int64, vals).
    """
    nb = 1 if k_block is None or k <= k_block else -(-k // k_block)
    group = rows if nb == 1 else _aligned_blocks(rows, cols, n, k_block, nb, even) * n + rows
    if nb > 1:
        order = torch.argsort(group * k + cols)
        group, cols, vals = group[order], cols[order], vals[order]
    counts = torch.bincount(group, minlength=n * nb)
    if even and vals.numel():
        pads = counts % 2
        new_counts = counts + pads
        new_ptr = torch.zeros(n * nb + 1, dtype=torch.int64)
        torch.cumsum(new_counts, 0, out=new_ptr[1:])
        old_ptr = torch.zeros(n * nb + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=old_ptr[1:])
        pos = torch.arange(vals.numel()) - old_ptr[group] + new_ptr[group]
        out_cols = torch.zeros(int(new_ptr[-1]), dtype=torch.int64)
        out_vals = torch.zeros(int(new_ptr[-1]), dtype=vals.dtype)
        out_cols[pos] = cols
        out_vals[pos] = vals
        odd = torch.nonzero(pads).flatten()
        if odd.numel():
            out_cols[new_ptr[odd + 1] - 1] = cols[old_ptr[odd + 1] - 1]
        cols, vals, counts = out_cols, out_vals, new_counts
    per_row = counts.reshape(nb, n).sum(0)
    row_ptr = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(per_row, 0, out=row_ptr[1:])
    block_ptr = None
    if nb > 1:
        flat = torch.zeros(n * nb + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=flat[1:])
        # [nb, N + 1]: row N of block b is where block b + 1 starts.
        block_ptr = torch.cat([flat[:-1].reshape(nb, n), flat[n::n].reshape(nb, 1)], 1)
    return row_ptr, (None if block_ptr is None else block_ptr.contiguous()), cols, vals


# block="auto" stores an int8 weight as 1 x 4 blocks when at least this fraction of the
# entries of its nonzero quads is nonzero (zero fill costs at most a third more entries).
_AUTO_QUAD_FILL = 0.75


def _nonzero_quads(mask: torch.Tensor) -> torch.Tensor:
    """bool [N, K / 4]: the aligned 1 x 4 groups (quads) of mask [N, K] holding a nonzero."""
    return mask.reshape(mask.shape[0], mask.shape[1] // 4, 4).any(-1)


def _fills_quads(mask: torch.Tensor, quads: torch.Tensor) -> bool:
    """block="auto"'s rule: the nonzero quads are at least _AUTO_QUAD_FILL full (1.0 for a
    block-pruned weight, ~0.3 for 90% unstructured sparsity)."""
    return int(torch.count_nonzero(mask)) >= _AUTO_QUAD_FILL * 4 * max(
        1, int(torch.count_nonzero(quads)))


def stores_quads(w: torch.Tensor) -> bool:
    """Whether ``sparse_pack(w, dtype=torch.int8)`` (block="auto") stores the 2-d weight w as
    1 x 4 blocks, by the pack's rule applied to w's exact zeros (the pack applies it after
    quantization, whose extra zeros only matter for weights near the threshold)."""
    if w.ndim != 2 or w.shape[1] == 0 or w.shape[1] % 4:
        return False
    mask = w != 0
    return _fills_quads(mask, _nonzero_quads(mask))


def _group_quads(quad_row: torch.Tensor, quad_col: torch.Tensor, kq: int):
    """The 16-row groups' units (int8 quads, or fp32 entries with kq = K): ``(union, slot)``,
    the sorted distinct ``group * kq + col`` keys of the groups' units and each unit's index
    among them."""
    return torch.unique((quad_row // 16) * kq + quad_col, sorted=True, return_inverse=True)


def _fills_tiles(units: int, union: torch.Tensor, n: int, kq: int) -> bool:
    """The tile fill rule: ``units`` units (int8 quads or fp32 entries) whose 16-row groups
    have the columns ``union`` (from :func:`_group_quads`) are tiles (16 x 4 or 16 x 1) when
    they fill at least _AUTO_QUAD_FILL of the groups' row x column slots (the last group has
    n % 16 rows)."""
    group_rows = torch.clamp(n - 16 * (union // kq), max=16)
    return units >= _AUTO_QUAD_FILL * max(1, int(group_rows.sum()))


def _rows_may_share_columns(counts: torch.Tensor) -> bool:
    """The first half of the fp32 tile rule, on the entries per row: in 16 x 1 tiles the rows
    of a group hold the same columns, so in the first 8 groups at least _AUTO_QUAD_FILL of the
    rows are to hold as many entries as the fullest row of their group. Not implied by the fill
    rule (:func:`_fills_tiles`, the second half): a weight whose first groups are ragged is not
    tiles even if it fills 75% overall. An unstructured weight fails it in ~1 ms, where the
    fill rule's O(nnz log nnz) takes ~70 ms (4096 x 4096, 90%). The pack and
    :func:`stores_f32_tiles` apply both halves."""
    head = counts[:16 * min(8, counts.numel() // 16)].reshape(-1, 16)
    if head.numel() == 0:
        return True
    full = head == head.max(dim=1, keepdim=True).values
    return float(full.float().mean()) >= _AUTO_QUAD_FILL


def may_store_f32_tiles(w: torch.Tensor) -> bool:
    """The cheap half of :func:`stores_f32_tiles` on the 2-d weight w (its first 8 groups'
    entry counts, ~1 ms): False means the fp32 pack of w is certainly not 16 x 1 tiles."""
    return w.ndim == 2 and w.numel() > 0 and _rows_may_share_columns((w[:128] != 0).sum(1))


def stores_f32_tiles(w: torch.Tensor) -> bool:
    """Whether ``sparse_pack(w)`` (fp32) of the 2-d weight w is 16 x 1 tiles
    (``SparsePacked.is_tiles``: its 16-row groups share their columns, as
    ``prune.block_mask(w, amount, block=(16, 1))`` prunes), by the pack's rules on w's zeros."""
    if not may_store_f32_tiles(w):
        return False
    mask = w != 0
    rows, cols = mask.nonzero(as_tuple=True)
    union, _ = _group_quads(rows, cols, w.shape[1])
    return _fills_tiles(rows.numel(), union, w.shape[0], w.shape[1])


def stores_quads_and_tiles(w: torch.Tensor) -> tuple:
    """``(quads, tiles)``: whether ``sparse_pack(w, dtype=torch.int8)`` of the 2-d weight w
    stores quads (:func:`stores_quads`), and whether their 16-row groups share them (16 x 4
    tiles, ``SparsePacked.is_tiles``), by the pack's rules applied to w's exact zeros."""
    if not stores_quads(w):
        return False, False
    quad_row, quad_col = _nonzero_quads(w != 0).nonzero(as_tuple=True)
    kq = w.shape[1] // 4
    union, _ = _group_quads(quad_row, quad_col, kq)
    return True, _fills_tiles(quad_row.numel(), union, w.shape[0], kq)


def stores_tiles(w: torch.Tensor) -> bool:
    """Whether ``sparse_pack(w, dtype=torch.int8)`` of the 2-d weight w stores 16 x 4 tiles
    (see :func:`stores_quads_and_tiles`)."""
    return stores_quads_and_tiles(w)[1]


def sparse_pack(w: TensorLike, *, dtype: torch.dtype = torch.float32,
                k_block="auto", block="auto", rows: Optional[int] = None) -> SparsePacked:
    """Pack a pruned dense weight ``w [N, K]`` for :func:`sparse_linear`.

    Exact zeros are dropped; everything else is kept. Build once per layer.

    Args:
        w: float32 ``[out_features, in_features]``, finite (e.g. ``linear.weight`` after pruning).
        dtype: ``torch.float32`` (values as they are) or ``torch.int8`` (symmetric per-row
            ``scale = absmax / 127``, values ``round_half_even(w / scale)`` in [-127, 127];
            entries that round to 0 are dropped, odd runs get one zero pad).
        k_block: K block size (an int >= 8), None for one block, or ``"auto"`` (default:
            :func:`auto_k_block`, ~100 fp32 entries per row and block). With several blocks the
            entries are stored block-major so the kernels stream them while one block of the
            activation panel stays in L1/L2 (see ``sparse_format.md``).
        block: int8 only. 4: store every aligned group of 4 columns of a row (a quad) that
            holds a nonzero whole, zeros included (``prune.block_prune_`` makes such weights),
            so VNNI CPUs run one ``vpdpbusd`` per quad; needs ``in_features % 4 == 0``. 1:
            entries one by one. ``"auto"`` (default): 4 when the nonzero quads are at least
            75% filled, else 1. fp32 packs store entries; one whose 16-row groups share their
            columns (``prune.block_mask(..., block=(16, 1))``) is detected as 16 x 1 tiles
            (``SparsePacked.is_tiles``), which AVX-512 CPUs run with vectors along the rows.
        rows: with ``k_block="auto"``, the rows of x (batch, tokens) the pack will mostly run
            at: 1 packs one block (the M = 1 kernel's fastest layout), >= 2 shorter fp32 blocks
            (the M >= 2 kernel's), None (default) a compromise; see :func:`auto_k_block`. Any
            pack runs at any M; only the speed differs.

    Returns:
        SparsePacked.

    Raises:
        TypeError: w not float32 / dtype not float32 or int8.
        ValueError: w not 2-d, not contiguous, on another device, or not finite; bad k_block
            or block (block=4 with fp32, with in_features % 4 != 0, or with a k_block that is
            not a multiple of 4); rows not None or an int >= 1.
    """
    w = _as_tensor(w, "w").detach()
    _check_input(w, "w", (torch.float32,))
    if w.ndim != 2:
        raise ValueError(f"w must be 2-d [out_features, in_features], got shape {tuple(w.shape)}")
    if dtype not in (torch.float32, torch.int8):
        raise TypeError(f"dtype must be torch.float32 or torch.int8, got {dtype}")
    if not _all_finite(w):
        raise ValueError("w must be finite (found NaN or Inf)")
    if not (k_block is None or (isinstance(k_block, str) and k_block == "auto")
            or (isinstance(k_block, int) and not isinstance(k_block, bool) and k_block >= 8)):
        raise ValueError(f"k_block must be None, 'auto' or an int >= 8, got {k_block!r}")
    if not (block in (1, 4) and not isinstance(block, bool)
            or isinstance(block, str) and block == "auto"):
        raise ValueError(f"block must be 1, 4 or 'auto', got {block!r}")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise ValueError(f"rows must be None or an int >= 1, got {rows!r}")
    n, k = w.shape
    if block == 4 and (dtype != torch.int8 or k % 4):
        raise ValueError("block=4 needs dtype=torch.int8 and in_features % 4 == 0, got "
                         f"{dtype} and in_features={k}")
    if block == 4 and isinstance(k_block, int) and k_block % 4:
        raise ValueError(f"block=4 needs k_block to be a multiple of 4, got {k_block}")
    if dtype == torch.float32:
        q, scale = w, None
    else:
        absmax = w.abs().amax(dim=1) if k else torch.zeros(n)
        scale = absmax / 127.0
        # 1 where the row is zero or its absmax / 127 underflows (subnormal weights round to 0)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(torch.float32)
        q = torch.clamp(torch.round(w / scale[:, None]), -127, 127)
    mask = q != 0
    kind = "f32" if dtype == torch.float32 else "pairs"
    if dtype == torch.int8 and k % 4 == 0 and k and block != 1:
        quads = _nonzero_quads(mask)
        if block == 4 or _fills_quads(mask, quads):
            mask = quads.repeat_interleave(4, dim=1)  # whole quads, zeros included
            kind = "quads"
    nz = mask.nonzero()  # row-major: ascending columns within a row
    nz_rows, cols = nz[:, 0], nz[:, 1]
    vals = q[mask] if dtype == torch.float32 else q[mask].to(torch.int16)
    if k_block == "auto":
        k_block = auto_k_block(n, k, int(vals.numel()), kind, rows)
    row_ptr, bp, cols, vals = _layout(nz_rows, cols, vals, n, k, k_block, dtype == torch.int8)
    return SparsePacked(n, k, row_ptr, _narrow_idx(cols, k), vals.contiguous(),
                        None if scale is None else scale.contiguous(), dtype, bp,
                        k_block if bp is not None else 0)


def _check_packed(packed) -> None:
    if not isinstance(packed, SparsePacked):
        raise TypeError(f"packed must be a SparsePacked (from sparse_pack), got "
                        f"{type(packed).__name__}")


def sparse_linear(x: TensorLike, packed: SparsePacked, bias: Optional[TensorLike] = None, *,
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``y = x @ W^T + bias`` with W packed by :func:`sparse_pack`.

    Args:
        x: float32 ``[..., in_features]``, contiguous, CPU.
        packed: the packed weight; int8 packs quantize x per row (uint8, dynamic).
        bias: optional float32 ``[out_features]``.
        out: optional float32 ``[..., out_features]`` buffer.

    Returns:
        float32 ``[..., out_features]`` (``out`` if given).

    Raises:
        TypeError: packed is not a SparsePacked; x / bias / out not float32.
        ValueError: x's last dimension is not in_features, x is 0-d or non-contiguous, bias
            has the wrong shape, out has the wrong shape or shares memory with x, bias or the
            packed tensors, an input is on another device, or (int8) x contains NaN / Inf.
            A float32 pack propagates NaN / Inf in x through the stored nonzeros only.
    """
    _check_packed(packed)
    x = _as_tensor(x, "x")
    _check_input(x, "x", (torch.float32,))
    if x.ndim == 0 or x.shape[-1] != packed.in_features:
        raise ValueError(f"x must have last dimension in_features={packed.in_features}, got "
                         f"shape {tuple(x.shape)}")
    b = None
    if bias is not None:
        b = _as_tensor(bias, "bias")
        _check_input(b, "bias", (torch.float32,))
        if b.shape != (packed.out_features,):
            raise ValueError(f"bias must have shape ({packed.out_features},), got "
                             f"{tuple(b.shape)}")
        b = _np(b)
    # out vs x, bias and the packed tensors: checked by the binding (ValueError), which costs
    # ~0.1 us there against ~6 us for the same check here (M = 1 calls at 99% take ~70 us).
    y = _out_tensor(out, x.shape[:-1] + (packed.out_features,), torch.float32)
    rows = x.numel() // packed.in_features if packed.in_features else int(np.prod(x.shape[:-1]))
    _runtime._sync_threads()
    if packed.in_features == 0:
        y.zero_()
        if bias is not None:
            y += torch.from_numpy(b)
        return y
    rp, ci, vals, scale, bp, nb = packed._arrays()
    xn = _np(x)  # the binding checks sizes only: no reshape needed
    yn = _np(y)
    if packed.dtype == torch.float32:
        _C.sparse_linear_f32(xn, rows, rp, ci, vals, packed.out_features, packed.in_features, b,
                             yn, bp, nb, packed._f32_tile_args() if rows > 1 else None)
    else:
        _C.sparse_linear_q8(xn, rows, rp, ci, vals, scale, packed.out_features,
                            packed.in_features, b, yn, bp, nb, packed._quad_args())
    return y


def sparse_mm(packed: SparsePacked, b: TensorLike, *,
              out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``W @ b`` with W packed by :func:`sparse_pack`: the op of ``torch.sparse.mm(W, b)``.

    For activations kept feature-major (``b = x^T``, one column per sample): full 32-column
    slabs of b are read in place and the result written in place, where :func:`sparse_linear`
    transposes x into panels and its result back into ``[M, out_features]``.

    Args:
        packed: a float32 packed weight.
        b: float32 ``[in_features, M]``, contiguous, CPU.
        out: optional float32 ``[out_features, M]`` buffer.

    Returns:
        float32 ``[out_features, M]`` (``out`` if given), within the same bound of the dense
        product as :func:`sparse_linear`.

    Raises:
        TypeError: packed is not a float32 SparsePacked; b / out not float32.
        ValueError: b is not 2-D with in_features rows or is non-contiguous, out has the
            wrong shape or shares memory with b or the packed tensors, or an input is on
            another device.
    """
    _check_packed(packed)
    if packed.dtype != torch.float32:
        raise TypeError("sparse_mm takes a float32 pack; int8 packs run through sparse_linear, "
                        "which quantizes x per row")
    b = _as_tensor(b, "b")
    _check_input(b, "b", (torch.float32,))
    if b.ndim != 2 or b.shape[0] != packed.in_features:
        raise ValueError(f"b must be [in_features={packed.in_features}, M], got shape "
                         f"{tuple(b.shape)}")
    y = _out_tensor(out, torch.Size((packed.out_features, b.shape[1])), torch.float32)
    _runtime._sync_threads()
    rp, ci, vals, _, bp, nb = packed._arrays()
    _C.sparse_mm_f32(_np(b), b.shape[1], rp, ci, vals, packed.out_features, packed.in_features,
                     _np(y), bp, nb)
    return y


def sparse_q8_accumulate(xq: TensorLike, zero_point: TensorLike, packed: SparsePacked, *,
                         out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The int32 accumulators of the int8 sparse kernel: ``sum_k (xq[m,k] - zp[m]) * Wq[n,k]``.

    Exposed so tests can check them bit-exactly against an int64 reference.

    Args:
        xq: uint8 ``[M, in_features]``.
        zero_point: int32 ``[M]`` (one per row of xq), each in [0, 255].
        packed: an int8 SparsePacked.
        out: optional int32 ``[M, out_features]``.

    Returns:
        int32 ``[M, out_features]``.

    Raises:
        TypeError: wrong dtypes or packed not an int8 SparsePacked.
        ValueError: wrong shapes, another device, zero points out of range, or out sharing
            memory with xq / zero_point.
    """
    _check_packed(packed)
    if packed.dtype != torch.int8:
        raise TypeError("packed must be an int8 pack (sparse_pack(w, dtype=torch.int8))")
    xq = _as_tensor(xq, "xq")
    zp = _as_tensor(zero_point, "zero_point")
    _check_input(xq, "xq", (torch.uint8,))
    _check_input(zp, "zero_point", (torch.int32,))
    if xq.ndim != 2 or xq.shape[1] != packed.in_features:
        raise ValueError(f"xq must be [M, {packed.in_features}], got {tuple(xq.shape)}")
    if zp.shape != (xq.shape[0],):
        raise ValueError(f"zero_point must have shape ({xq.shape[0]},), got {tuple(zp.shape)}")
    if zp.numel() and (int(zp.min()) < 0 or int(zp.max()) > 255):
        raise ValueError("zero_point must be in [0, 255]")
    y = _out_tensor(out, torch.Size((xq.shape[0], packed.out_features)), torch.int32)
    if out is not None:
        _check_disjoint([(y, "out")], [(xq, "xq"), (zp, "zero_point")])
    _runtime._sync_threads()
    _C.sparse_q8_accumulate(_np(xq).reshape(-1), _np(zp), xq.shape[0], _np(packed.row_ptr),
                            _np(packed.col_idx), _np(packed.values), packed.out_features,
                            packed.in_features, _np(y).reshape(-1), *packed._block_args(),
                            packed._quad_args())
    return y
