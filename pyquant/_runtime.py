"""Process-wide settings of the native core: instruction set and thread count."""

from __future__ import annotations

import torch

from pyquant import _C

_threads_set_by_user = False


def cpu_info() -> dict:
    """What this CPU supports and which kernel each op uses.

    Returns:
        dict with ``detected_isa`` (the best the CPU and OS support), ``isa`` (the one in use),
        ``features`` (cpuid flags), ``kernels`` (op name -> kernel name) and ``num_threads``.
    """
    _sync_threads()
    return _C.cpu_info()


def set_isa(isa: str) -> None:
    """Use the kernels of ``isa`` ("scalar", "avx2", "avx512", "avx512vnni") from now on.

    Only a level the CPU supports can be chosen; this is how tests exercise lower paths.

    Raises:
        ValueError: unknown name, or a level above what the CPU supports.
    """
    _C.set_isa(str(isa))


def set_num_threads(n: int) -> None:
    """Run pyquant's kernels on ``n`` threads (default: ``torch.get_num_threads()``).

    Raises:
        ValueError: if ``n < 1``.
    """
    global _threads_set_by_user
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads must be an int >= 1, got {n!r}")
    _C.set_num_threads(n)
    _threads_set_by_user = True


def get_num_threads() -> int:
    """Threads pyquant's kernels run on."""
    _sync_threads()
    return _C.get_num_threads()


def _sync_threads() -> None:
    # Follow torch.set_num_threads until the user chooses a count for pyquant itself.
    if not _threads_set_by_user:
        n = torch.get_num_threads()
        if n != _C.get_num_threads():
            _C.set_num_threads(n)


_sync_threads()
