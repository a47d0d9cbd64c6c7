"""Index arithmetic past 2^31 elements: quantize / topk_threshold / prune on a float32 tensor and
dequantize / quantize on an int8 tensor just over 2^31 elements.

Marked slow and skipped unless /proc/meminfo's MemAvailable covers the tensors. The references
are computed chunk by chunk (``pyquant.reference`` on 4 Mi-element slices), so the extra memory
stays bounded; the elements past index 2^31 get their own assertions: a 32-bit index would
wrap them onto the start of the tensor (or write out of bounds) and these checks would fail.
"""

from __future__ import annotations

import pytest
import torch

from pyquant import ops, reference

pytestmark = pytest.mark.slow

TWO31 = 2**31
N_BIG = TWO31 + 4099          # just over 2^31, not a multiple of any vector width or chunk
BEYOND = TWO31 + 5            # 64 marked elements, all past 2^31
MARKED = 64
CHUNK = 1 << 22  # 16 MiB slices: temporaries are recycled by malloc, not re-faulted
GIB = 1 << 30


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _require_memory(nbytes: int) -> None:
    avail = _mem_available()
    if avail < nbytes:
        pytest.skip(f"needs {nbytes / GIB:.1f} GiB available, /proc/meminfo says "
                    f"{avail / GIB:.1f} GiB")


def _chunks(n: int):
    for a in range(0, n, CHUNK):
        yield a, min(n, a + CHUNK)


def _huge_empty(dtype: torch.dtype) -> torch.Tensor:
    # The ops' own allocator for big outputs (huge pages where the kernel allows them): with
    # 4 KiB pages, faulting in 8 GiB costs more system time than the ops themselves.
    return ops._empty((N_BIG,), dtype)


def _marked_values() -> torch.Tensor:
    # Distinct magnitudes far above the random data: they are the 64 largest |x|.
    return 1000.0 + 0.5 * torch.arange(MARKED, dtype=torch.float32)


def _big_float32() -> torch.Tensor:
    """Uniform in [-4, 4), each chunk from its own seed (so the data depend on the position),
    with the marked elements past 2^31, alternating in sign."""
    x = _huge_empty(torch.float32)
    for i, (a, b) in enumerate(_chunks(N_BIG)):
        torch.rand(b - a, generator=torch.Generator().manual_seed(i), out=x[a:b])
        x[a:b].mul_(8.0).sub_(4.0)
    signs = torch.tensor([1.0, -1.0]).repeat(MARKED // 2)
    x[BEYOND:BEYOND + MARKED] = _marked_values() * signs
    return x


def test_float32_past_2_31_quantize_topk_prune():
    # x (8 GiB) + q (2 GiB) + the selection's candidate buffer (< 4% of x) + chunk temporaries.
    _require_memory(12 * GIB)
    x = _big_float32()
    scale, zp = 0.03125, 5  # a power of two: x / scale is exact, so ties land on .5 exactly

    q = ops.quantize(x, scale, zp)
    for a, b in _chunks(N_BIG):
        assert torch.equal(q[a:b], reference.quantize(x[a:b], scale, zp)), f"chunk at {a}"
    # Past 2^31 specifically: around the boundary and the marked (saturating) elements.
    edge = slice(TWO31 - 16, TWO31 + 16)
    assert torch.equal(q[edge], reference.quantize(x[edge], scale, zp))
    assert q[BEYOND:BEYOND + MARKED].tolist() == [127, -128] * (MARKED // 2)
    assert torch.equal(q[-4099:], reference.quantize(x[-4099:], scale, zp))
    del q

    # The 64 largest magnitudes all live past 2^31.
    assert ops.topk_threshold(x, MARKED) == 1000.0
    assert ops.topk_threshold(x, 1) == 1000.0 + 0.5 * (MARKED - 1)
    assert ops.topk_threshold(x, MARKED + 1) <= 4.0
    # A threshold deep in the bulk, checked by counting chunk by chunk.
    k = N_BIG // 3
    t = ops.topk_threshold(x, k)
    above = at_least = 0
    for a, b in _chunks(N_BIG):
        ax = x[a:b].abs()
        above += int((ax > t).sum())
        at_least += int((ax >= t).sum())
    assert above < k <= at_least

    # Prune all but the 64 marked elements, in place.
    assert ops.magnitude_prune_tensors_(x, N_BIG - MARKED) == [MARKED]
    signs = torch.tensor([1.0, -1.0]).repeat(MARKED // 2)
    assert torch.equal(x[BEYOND:BEYOND + MARKED], _marked_values() * signs)
    nonzero = sum(int(torch.count_nonzero(x[a:b])) for a, b in _chunks(N_BIG))
    assert nonzero == MARKED


def test_int8_past_2_31_dequantize_quantize():
    # q (2 GiB) + its float32 image (8 GiB) + the round trip (2 GiB) + chunk temporaries.
    _require_memory(13 * GIB)
    q = _huge_empty(torch.int8)
    for i, (a, b) in enumerate(_chunks(N_BIG)):
        q[a:b] = torch.randint(-128, 128, (b - a,), generator=torch.Generator().manual_seed(i),
                               dtype=torch.int8)
    q[BEYOND:BEYOND + 256] = torch.arange(-128, 128, dtype=torch.int8)  # every value, past 2^31
    scale, zp = 0.1, -3

    y = ops.dequantize(q, scale, zp)
    for a, b in _chunks(N_BIG):
        assert torch.equal(y[a:b], reference.dequantize(q[a:b], scale, zp)), f"chunk at {a}"
    expected = (torch.arange(-128, 128, dtype=torch.float32) + 3.0) * torch.tensor(0.1)
    assert torch.equal(y[BEYOND:BEYOND + 256], expected)

    # Quantizing the dequantized values gives the integers back, everywhere.
    q2 = ops.quantize(y, scale, zp)
    for a, b in _chunks(N_BIG):
        assert torch.equal(q2[a:b], q[a:b]), f"chunk at {a}"
    assert q2[BEYOND:BEYOND + 256].tolist() == list(range(-128, 128))
