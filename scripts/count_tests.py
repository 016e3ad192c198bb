#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks that ctest runs every Catch2 test case exactly once (called by scripts/check.sh).

usage: scripts/count_tests.py BUILD_DIR

Each Catch2 test case is one ctest entry (catch_discover_tests) that runs the binary with the test's
name as its only test spec and `--warn NoTests` (tests/CMakeLists.txt: a spec that matches nothing
fails). This script lists every test binary's cases (`--list-test-names-only`), reads the entries
ctest would run (`ctest --show-only=json-v1`), and fails unless the two agree: every listed case has
exactly one entry whose spec is its name, every entry's spec is a listed name, every entry passes
`--warn NoTests`, and every test_* executable of the build is discovered. It prints the counts.
"""
import json
import os
import subprocess
import sys

build = sys.argv[1]
show = subprocess.run(["ctest", "--test-dir", build, "--show-only=json-v1"], capture_output=True, text=True,
                      check=True)
tests = json.loads(show.stdout)["tests"]


def unescape(spec):
    """catch_discover_tests escapes ',', '[' and ']' with a backslash in the spec it passes."""
    out, i = [], 0
    while i < len(spec):
        if spec[i] == "\\" and i + 1 < len(spec):
            i += 1
        out.append(spec[i])
        i += 1
    return "".join(out)


errors = []
entries = {}  # binary -> list of specs
for t in tests:
    cmd = t.get("command") or []
    if len(cmd) >= 2 and os.path.basename(cmd[0]).startswith("test_"):
        if cmd[2:4] != ["--warn", "NoTests"]:
            errors.append(f"ctest entry '{t['name']}' runs {cmd[0]} without --warn NoTests: {cmd[1:]}")
        # discovered entries are named after their test case; others (e.g. a rerun under another
        # environment) only need a spec that matches
        spec = unescape(cmd[1])
        entries.setdefault(os.path.realpath(cmd[0]), []).append((spec, t["name"] == spec))

# Every Catch2 test executable in the build must have been discovered.
for root, _, files in os.walk(build):
    for f in files:
        p = os.path.join(root, f)
        if f.startswith("test_") and "." not in f and os.access(p, os.X_OK) and "CMakeFiles" not in root:
            if os.path.realpath(p) not in entries:
                errors.append(f"{p}: a test executable with no ctest entries")

listed_total = run_total = extra_total = 0
for exe, specs in sorted(entries.items()):
    out = subprocess.run([exe, "--list-test-names-only"], capture_output=True, text=True)
    names = [line for line in out.stdout.split("\n") if line.strip()]
    listed_total += len(names)
    discovered = [s for s, d in specs if d]
    run_total += len(discovered)
    extra_total += len(specs) - len(discovered)
    for bad in [n for n in names if ";" in n or "," in n]:
        errors.append(f"{exe}: test name contains ';' or ',': {bad!r}")
    for n in names:
        if discovered.count(n) != 1:
            errors.append(f"{exe}: test case {n!r} has {discovered.count(n)} ctest entries (expected 1)")
    for s, _ in specs:
        if s not in names:
            errors.append(f"{exe}: ctest entry with spec {s!r} matches no listed test case")
    print(f"count_tests.py: {os.path.basename(exe)}: {len(names)} test cases listed, {len(discovered)} ctest entries"
          + (f" (+{len(specs) - len(discovered)} reruns)" if len(specs) > len(discovered) else ""))

print(f"count_tests.py: Catch2 test cases listed {listed_total}, ctest entries running them {run_total}, "
      f"reruns of a test case {extra_total}, other ctest entries {len(tests) - run_total - extra_total}")
if errors:
    for e in errors:
        print("count_tests.py: ERROR: " + e)
    sys.exit(1)
