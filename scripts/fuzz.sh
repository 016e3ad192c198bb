#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Bounded libFuzzer run of the file readers and the checkpoint index reader (the three targets at
# the same time, 25 s each by default), called by
# scripts/check.sh. Needs clang++ with libFuzzer (Debian: clang, libclang-rt-14-dev); skipped with
# a message when they are missing. The seed corpus lives in fuzz/corpus/<target>/ and is only
# read; new inputs go to a temporary directory. Crashes are saved in build-fuzz/crashes/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-${NANOQUANT_FUZZ_SECONDS:-25}}
cxx=${CLANGXX:-$(command -v clang++ || true)}
if [[ -z "$cxx" ]]; then
  echo "fuzz.sh: clang++ not found; skipping the fuzz run (install clang libclang-rt-14-dev)"
  exit 0
fi
out=build-fuzz
mkdir -p "$out/crashes"
probe="$out/probe.cpp"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe"
if ! "$cxx" -fsanitize=fuzzer "$probe" -o "$out/probe" 2>/dev/null; then
  echo "fuzz.sh: $cxx cannot link libFuzzer; skipping the fuzz run (install libclang-rt-14-dev)"
  exit 0
fi
eigen=$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)
targets=(npy safetensors checkpoint_index)
builds=()
for target in "${targets[@]}"; do
  src="fuzz/fuzz_${target}.cpp"
  bin="$out/fuzz_${target}"
  if [[ ! -x "$bin" || "$src" -nt "$bin" || -n "$(find include/nanoquant/io -newer "$bin" -name '*.hpp')" ]]; then
    echo "fuzz.sh: building $bin"
    "$cxx" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -Iinclude $eigen "$src" -o "$bin" &
    builds+=($!)
  fi
done
for pid in "${builds[@]}"; do
  wait "$pid" || { echo "fuzz.sh: building a fuzz target failed" >&2; exit 1; }
done
# The targets fuzz at the same time (each for SECONDS of wall time, one process each).
fuzz_one() {
  local target=$1 work rc=0
  work=$(mktemp -d)
  # -timeout: an input that runs for 10 s is a hang, reported (and saved) like a crash.
  "$out/fuzz_${target}" "$work" "fuzz/corpus/$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$out/crashes/${target}-" -print_final_stats=1 2> "$out/${target}.log" || rc=$?
  rm -rf "$work"
  return $rc
}
declare -A pids
for target in "${targets[@]}"; do
  test -x "$out/fuzz_${target}" || { echo "fuzz.sh: $out/fuzz_${target} was not built" >&2; exit 1; }
  echo "fuzz.sh: fuzzing $target for ${secs}s (seed corpus fuzz/corpus/$target)"
  fuzz_one "$target" &
  pids[$target]=$!
done
status=0
for target in "${targets[@]}"; do
  if ! wait "${pids[$target]}"; then
    echo "fuzz.sh: $target FAILED; see $out/${target}.log and $out/crashes/"
    tail -40 "$out/${target}.log"
    status=1
  else
    echo "fuzz.sh: $target: $(grep -E "stat::number_of_executed_units|stat::new_units_added" "$out/${target}.log" | tr '\n' ' ')"
  fi
done
exit $status
