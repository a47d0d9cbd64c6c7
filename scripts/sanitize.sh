#!/usr/bin/env bash
# Build pyquant with AddressSanitizer + UndefinedBehaviorSanitizer and run the test suite on it.
# Usage: scripts/sanitize.sh [pytest args...]     (uses its own venv: .venv-asan)
# With no pytest args it runs the whole suite (minus the deselections below).
#
# Python itself is not instrumented, so the sanitizer runtimes are preloaded; leak detection is
# off because CPython and torch keep allocations alive until exit by design. Any ASan or UBSan
# report aborts the process (abort_on_error / halt_on_error), so it fails the test run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d .venv-asan ]; then
  python -m venv .venv-asan
  .venv-asan/bin/pip install -q torch==2.13.0
fi
. .venv-asan/bin/activate
pip install -q ".[test]" -Ccmake.define.PYQUANT_SANITIZE=ON -Cbuild-dir=build/asan
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# Speed (measured, see README "Sanitizers"): every malloc/free of torch and CPython goes through
# ASan's allocator once it is preloaded. malloc_context_size=5 keeps five frames of the
# allocation / free stacks (the faulting access keeps its full stack); a 64 MB quarantine still
# catches a use after free of any recent buffer while large tensors are recycled instead of
# being re-faulted page by page.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:check_initialization_order=1:malloc_context_size=5:quarantine_size_mb=64}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
# torch's OpenMP workers spin between ops; under ASan's allocator that spinning doubled torch's
# CPU time in a training loop (measured: 2.7 -> 1.8 s CPU with PASSIVE; plain torch 0.65 s).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# Deselected under ASan, each for a reason (none of them runs the instrumented module):
#  - tests/test_threadpool_tsan.py, test_emulated_isa.py, test_emulated_abs_select.py compile
#    and run their own binaries from the C++ sources (TSan / SIMDe emulation); the compiler
#    would run with libasan preloaded, and TSan cannot share a process with ASan anyway.
#  - the `slow` tests: the 2^31-element tensors (12 GiB, plus 1.5 GiB of shadow memory) and the
#    long training runs; run them with `scripts/sanitize.sh -m slow` when there is time.
if [ "$#" -eq 0 ]; then
  set -- -m "not slow" \
    --deselect tests/test_threadpool_tsan.py \
    --deselect tests/test_emulated_isa.py \
    --deselect tests/test_emulated_abs_select.py
fi
# -P: the source tree must not shadow the installed, instrumented package.
python -P -m pytest -q -p no:cacheprovider "$@"
