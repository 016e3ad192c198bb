#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds nanoquant and runs every test: a Release build with warnings as errors, then the same
# tests under AddressSanitizer + UndefinedBehaviorSanitizer (tests labelled `slow` run in the
# Release build only). This is exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --all
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNANOQUANT_WERROR=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

# The sanitizer stage builds the tests and the `nanoquant` tool: the CLI tests (tests/cli: every
# hostile-file case, quantize, the installed demo) run the ASan+UBSan binary, and any sanitizer
# report stops the program and fails its test (-fno-sanitize-recover, halt_on_error; cli_test.py
# also gives sanitizer exits their own exit code so they cannot pass for nanoquant's exit code 1).
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNANOQUANT_SANITIZE=ON \
      -DNANOQUANT_BUILD_TESTS=ON -DNANOQUANT_BUILD_TOOLS=ON \
      -DNANOQUANT_BUILD_BENCHMARKS=OFF -DNANOQUANT_BUILD_EXAMPLES=OFF
cmake --build build-asan -j"$jobs"
test -x build-asan/tools/nanoquant/nanoquant || { echo "check.sh: the sanitized nanoquant tool was not built" >&2; exit 1; }
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow

if [[ -x scripts/fuzz.sh ]]; then scripts/fuzz.sh; fi
