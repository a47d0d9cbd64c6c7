#!/usr/bin/env bash
# Build pyquant with AddressSanitizer + UndefinedBehaviorSanitizer and run the test suite on it.
# Usage: scripts/sanitize.sh [pytest args...]     (uses its own venv: .venv-asan)
# Python itself is not instrumented, so the sanitizer runtimes are preloaded; leak detection is
# off because CPython and torch keep allocations alive until exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d .venv-asan ]; then
  python -m venv .venv-asan
  .venv-asan/bin/pip install -q torch==2.13.0
fi
. .venv-asan/bin/activate
pip install -q ".[test]" -Ccmake.define.PYQUANT_SANITIZE=ON -Cbuild-dir=build/asan
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# Hypothesis examples and the emulated-ISA compile are slow under ASan and add no coverage of
# the instrumented module beyond the other tests.
pytest -q -p no:cacheprovider "$@"
