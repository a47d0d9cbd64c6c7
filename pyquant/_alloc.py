"""Fresh outputs of the ops and layers: one allocator, sized so a call does not pay page faults.

A fresh multi-megabyte output costs a page fault per 4 KB page whenever the allocator has handed
the previous one back to the kernel (glibc trims and unmaps freely): a 1024 x 3072 float32
output took 3072 faults, ~6 ms on this VM, for a 2.5 ms layer. So:

* up to ``_POOL_MAX_BYTES``, outputs come from a small pool: a buffer returns to the pool only
  when the numpy array that owns the tensor's storage is garbage collected, i.e. after the
  returned tensor and every view of it are gone, so no caller ever sees its output overwritten.
  Safety rests on one fact: the leased array is never exposed. ``torch.from_numpy`` keeps a
  reference to it in the tensor's storage, and every torch view shares that storage.
* above that (keeping such buffers would hold hundreds of MB), the output is backed by
  transparent huge pages (``csrc/include/pyquant/memory.h``): one fault per 2 MB.
  (Huge pages were tried for the layers' outputs too and stalled forwards by 15-40 ms under
  THP ``defrag=madvise``, which compacts memory at the fault.)
"""

from __future__ import annotations

import collections
import math
import weakref

import numpy as np
import torch

from pyquant import _C

# Below this an allocation is a few pages and the lease bookkeeping is not worth it.
_POOL_MIN_BYTES = 1 << 20
_POOL_MAX_BYTES = 64 << 20
# Buffers kept per size, and in all: enough for a model's distinct layer outputs of one batch
# size, not a cache of everything ever allocated.
_PER_SIZE = 2
_MAX_HELD_BYTES = 512 << 20

_NUMPY = {torch.float32: np.float32, torch.int32: np.int32, torch.int8: np.int8,
          torch.uint8: np.uint8}

_free: collections.defaultdict[int, collections.deque] = collections.defaultdict(collections.deque)
_held = [0]  # bytes in _free


def _give_back(buf: np.ndarray) -> None:
    # Runs from the garbage collector, possibly while another thread is in empty(): deque
    # append/pop are atomic under the GIL, and nothing here takes a lock.
    q = _free[buf.nbytes]
    if len(q) < _PER_SIZE and _held[0] + buf.nbytes <= _MAX_HELD_BYTES:
        q.append(buf)
        _held[0] += buf.nbytes


def empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor of ``shape`` and ``dtype`` for a fresh output."""
    shape = tuple(int(d) for d in shape)
    np_dtype = _NUMPY.get(dtype)
    if np_dtype is None:
        return torch.empty(shape, dtype=dtype)
    nbytes = math.prod(shape) * np.dtype(np_dtype).itemsize
    if nbytes < _POOL_MIN_BYTES:
        # numpy allocates in ~1 us where torch.empty(shape, dtype=) takes 4-6 us.
        return torch.from_numpy(np.empty(shape, dtype=np_dtype))
    if nbytes > _POOL_MAX_BYTES:
        t = torch.empty(shape, dtype=dtype)
        _C.advise_huge_pages(t.view(-1).view(torch.uint8).numpy())
        return t
    try:
        buf = _free[nbytes].pop()
        _held[0] -= nbytes
    except IndexError:
        buf = np.empty(nbytes, dtype=np.uint8)
    arr = buf.view(np_dtype).reshape(shape)
    weakref.finalize(arr, _give_back, buf)
    return torch.from_numpy(arr)


def pooled_bytes() -> int:
    """Bytes currently held for reuse (for tests and diagnostics)."""
    return _held[0]


def clear() -> None:
    """Drop every pooled buffer (their memory goes back to the allocator)."""
    _free.clear()
    _held[0] = 0
