#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds nanoquant and runs every test: a Release build of everything (tests, benchmarks, examples,
# tools) with warnings as errors and every test, the slow ones included; then the tests of the code
# that parses untrusted bytes and touches raw memory (core, io, kernels, and the CLI tests, which run
# factorize/quantize/demo end to end) under AddressSanitizer + UndefinedBehaviorSanitizer; then a
# bounded fuzz run of the file and index readers. This is exactly what CI runs (.ci/run).
# docs/testing.md says what each stage covers and why the sanitizer stage builds a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --all
jobs=$(nproc)

start=$SECONDS
stage_start=$SECONDS
stages=""
stage_done() {
  local t=$((SECONDS - stage_start))
  stages="${stages}check.sh: stage $(printf '%-28s' "$1") ${t} s"$'\n'
  echo "check.sh: stage $1 took ${t} s"
  stage_start=$SECONDS
}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNANOQUANT_WERROR=ON
cmake --build build -j"$jobs"
stage_done "release build"
ctest --test-dir build --output-on-failure -j"$jobs"
# Every Catch2 test case has exactly one ctest entry (names with ';' were once split into entries
# that matched nothing and passed); prints the counts.
python3 scripts/count_tests.py build
# Which kernel variants this CPU ran (the test fails if one it supports was not tested).
build/tests/kernels/test_kernels "kernel variants: every variant this CPU can run is tested here" \
  | grep "kernel variants tested"
stage_done "release tests"

# The sanitizer stage builds the core, io and kernels tests and the `nanoquant` tool: the CLI tests
# (tests/cli: every hostile-file case, factorize with every method and --calib, quantize, the
# installed demo) run the ASan+UBSan binary, and any sanitizer report stops the program and fails its
# test (-fno-sanitize-recover, halt_on_error; cli_test.py also gives sanitizer exits their own exit
# code so they cannot pass for nanoquant's exit code 1).
# -Og -g1 (line tables only, enough for the sanitizers' stack traces): on these Eigen-heavy files
# under ASan+UBSan it compiles in a third of the time of RelWithDebInfo's -O2 -g (docs/testing.md).
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-Og -g1 -DNDEBUG" \
      -DNANOQUANT_SANITIZE=ON \
      -DNANOQUANT_BUILD_TESTS=ON -DNANOQUANT_BUILD_TOOLS=ON \
      -DNANOQUANT_BUILD_BENCHMARKS=OFF -DNANOQUANT_BUILD_EXAMPLES=OFF -DNANOQUANT_BUILD_PYTHON=OFF \
      "-DNANOQUANT_TEST_AREAS=core;kernels;io;cli;model"
cmake --build build-asan -j"$jobs"
test -x build-asan/tools/nanoquant/nanoquant || { echo "check.sh: the sanitized nanoquant tool was not built" >&2; exit 1; }
stage_done "sanitizer build"
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow
stage_done "sanitizer tests"

if [[ -x scripts/fuzz.sh ]]; then scripts/fuzz.sh; fi
stage_done "fuzz"
printf '%s' "$stages"
echo "check.sh: all stages passed in $((SECONDS - start)) s"
