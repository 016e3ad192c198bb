#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Stands in for a sanitized nanoquant that hits a bug: prints an AddressSanitizer-style report and
# exits with the exit code that ASAN_OPTIONS asks for (the last exitcode=N wins, as in the
# sanitizer runtimes; 1 when none is given, ASan's default, which is also nanoquant's "bad file").
# The ctest cli.selftest.sanitizer_report requires cli_test.py to fail on it.
code=$(printf '%s\n' "${ASAN_OPTIONS:-}" | tr ':' '\n' | sed -n 's/^exitcode=//p' | tail -n 1)
echo "=================================================================" >&2
echo "==4242==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000010" >&2
echo "SUMMARY: AddressSanitizer: heap-buffer-overflow safetensors.hpp:1 in parse" >&2
exit "${code:-1}"
