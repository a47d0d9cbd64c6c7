"""Shared fixtures: every kernel test runs on every ISA path this CPU supports."""

from __future__ import annotations

import pathlib

import pytest

import pyquant

SUPPORTED_ISAS = pyquant.supported_isas()
# The sparse M = 1 kernels gather: at the AVX-512 levels with the hardware gather or the AVX2
# insert-gather code, by vendor. Both run here, whichever the CPU picks by default.
_FAST_GATHER = pyquant.cpu_info()["features"]["fast_gather"]
GATHER_CHOICES = [(isa, None) for isa in SUPPORTED_ISAS] + [
    (isa, not _FAST_GATHER) for isa in SUPPORTED_ISAS if isa in ("avx512", "avx512vnni", "amx")]

# The property tests draw whole arrays (up to ~40 x 100 values): hypothesis's health checks on
# the size and speed of generation are about the strategies' cost, not the code under test, and
# failed one CI run at random (data_too_large, seed-dependent). Correctness checks stay on.
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "pyquant", suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow])
    settings.load_profile("pyquant")
except ImportError:  # hypothesis is a test extra; the tests that need it skip without it
    pass


def pytest_report_header(config):
    info = pyquant.cpu_info()
    return (f"pyquant {pyquant.__file__}: detected isa {info['detected_isa']}, "
            f"testing {', '.join(SUPPORTED_ISAS)}")


def pytest_configure(config):
    # Tests must exercise the installed, compiled package, not a shadowing source tree.
    src = pathlib.Path(__file__).resolve().parents[1] / "pyquant"
    installed = pathlib.Path(pyquant.__file__).resolve().parent
    if installed == src and not any(src.glob("_C*.so")):
        raise pytest.UsageError("pyquant is imported from the source tree without its _C module: "
                                "pip install . first")


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request):
    """Run the test with the kernels of one ISA, then restore the best one."""
    pyquant.set_isa(request.param)
    yield request.param
    pyquant.set_isa(SUPPORTED_ISAS[-1])


@pytest.fixture(params=GATHER_CHOICES,
                ids=[i if g is None else f"{i}-{'hw' if g else 'avx2'}gather"
                     for i, g in GATHER_CHOICES])
def gather_isa(request):
    """As ``isa``, and at the AVX-512 levels also with the M = 1 gather kernels the CPU does not
    pick by default. Yields (isa, hw_gather) with hw_gather None for the default."""
    isa, hw_gather = request.param
    pyquant.set_isa(isa, hw_gather=hw_gather)
    yield request.param
    pyquant.set_isa(SUPPORTED_ISAS[-1])


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = pyquant.get_num_threads()
    pyquant.set_num_threads(request.param)
    yield request.param
    pyquant.set_num_threads(old)
