"""Process-wide settings of the native core: instruction set and thread count."""

from __future__ import annotations

from typing import Optional

import torch

from pyquant import _C

_threads_set_by_user = False


def cpu_info() -> dict:
    """What this CPU supports and which kernel each op uses.

    Returns:
        dict with ``detected_isa`` (the best the CPU and OS support), ``isa`` (the one in use),
        ``supported_isas`` (every level that can be forced),
        ``features`` (cpuid flags), ``kernels`` (op name -> kernel name), ``num_threads`` and
        ``threadpool`` (``"own"`` or the OpenMP library whose team runs the work).
    """
    _sync_threads()
    info = _C.cpu_info()
    info["supported_isas"] = supported_isas()
    return info


ISA_LEVELS = ("scalar", "avx2", "avx512", "avx512vnni", "amx")


def supported_isas() -> list:
    """The ISA levels this CPU can run, lowest first (any of them can be passed to set_isa)."""
    return list(ISA_LEVELS[: ISA_LEVELS.index(_C.detected_isa()) + 1])


def set_isa(isa: str, *, hw_gather: Optional[bool] = None) -> None:
    """Use the kernels of ``isa`` ("scalar", "avx2", "avx512", "avx512vnni", "amx") from now on.

    Only a level the CPU supports can be chosen; this is how tests exercise lower paths.

    Args:
        isa: the level.
        hw_gather: at the AVX-512 levels, the sparse M = 1 kernels (fp32 and int8 pairs) gather
            with the hardware gather instructions (True) or with AVX2 scalar loads and inserts
            (False). None (default): hardware gathers except on AMD, whose Zen 4 microcodes
            them (``cpu_info()["features"]["fast_gather"]``). Also a choice for Intel CPUs
            whose microcode slows gathers down (the Gather Data Sampling mitigation).

    Raises:
        ValueError: unknown name, or a level above what the CPU supports.
        TypeError: hw_gather is not None or a bool.
    """
    if hw_gather is not None and not isinstance(hw_gather, bool):
        raise TypeError(f"hw_gather must be None or a bool, got {hw_gather!r}")
    _C.set_isa(str(isa), -1 if hw_gather is None else int(hw_gather))


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


def set_threadpool(kind: str) -> None:
    """Choose who runs pyquant's parallel work.

    ``"openmp"`` (the default): when the process has an OpenMP runtime loaded (torch's), run on
    its thread team. Its workers spin for a while after every torch op; pyquant's own workers
    would compete with them for the same cores, so borrowing them is much faster in models that
    mix torch ops and pyquant layers. Without a loaded runtime this falls back to ``"own"``.
    ``"own"``: pyquant's persistent workers. ``PYQUANT_THREADPOOL=own`` sets this at import.
    ``cpu_info()["threadpool"]`` tells which one runs.

    Raises:
        ValueError: any other name.
    """
    if kind not in ("openmp", "own"):
        raise ValueError(f"threadpool must be 'openmp' or 'own', got {kind!r}")
    _C.set_threadpool(kind)


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
