"""Shared fixtures: every kernel test runs on every ISA path this CPU supports."""

from __future__ import annotations

import pathlib

import pytest

import pyquant

SUPPORTED_ISAS = pyquant.supported_isas()


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


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = pyquant.get_num_threads()
    pyquant.set_num_threads(request.param)
    yield request.param
    pyquant.set_num_threads(old)
