#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Reference token ids and embeddings of USE-Lite from Google's runtime (TF.js 4.22.0, pure
# JavaScript CPU backend, and the tokenizer of @tensorflow-models/universal-sentence-encoder 1.3.3).
#   scripts/use-lite-reference.sh IN OUT_PREFIX [--batch N] [--verify N] [--model model.json]
# IN: a .json array of strings (exact) or a text file, one sentence per line (see reference.mjs).
# Writes OUT_PREFIX.json (keys: sentences, token_ids, ...) and OUT_PREFIX_embeddings.npy
# (float32 [N,512]). The first run installs the pinned npm packages (package-lock.json) into
# ${NANOQUANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nanoquant}/use-lite-reference/ and fetches
# the model with scripts/fetch-use-lite.sh; later runs need no network.
set -euo pipefail

die() { echo "use-lite-reference: $*" >&2; exit 1; }

[[ $# -ge 2 ]] || die "usage: scripts/use-lite-reference.sh IN OUT_PREFIX [--batch N] [--verify N] [--model model.json]"
in="$1"
out="$2"
shift 2
[[ -f "$in" ]] || die "input '$in' is not a file"
out_dir="$(dirname "$out")"
[[ -d "$out_dir" ]] || die "output directory '$out_dir' (from OUT_PREFIX '$out') does not exist"

here="$(cd "$(dirname "$0")" && pwd -P)"
src="$here/use-lite-reference"
cache_root="${NANOQUANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nanoquant}"
work="$cache_root/use-lite-reference"
mkdir -p "$work" || die "cannot create '$work'"

command -v node > /dev/null || die "node is not installed (scripts/install-deps.sh installs it)"

# The packages are (re)installed only when the lock file changed since the last install.
stamp="$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)"
if [[ ! -d "$work/node_modules" || "$(cat "$work/.installed" 2> /dev/null || true)" != "$stamp" ]]; then
  command -v npm > /dev/null || die "npm is not installed (scripts/install-deps.sh installs it)"
  echo "use-lite-reference: installing the pinned TF.js packages into $work" >&2
  cp "$src/package.json" "$src/package-lock.json" "$src/.npmrc" "$work/"
  rm -f "$work/.installed"
  # legacy-peer-deps: the USE package asks for tfjs-core 3.x as a peer; tfjs 4.22's single core
  # is the one to use. No install scripts are needed (pure JavaScript).
  (cd "$work" && npm ci --legacy-peer-deps --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
    die "npm ci in $work failed"
  echo "$stamp" > "$work/.installed"
fi
cp "$src/reference.mjs" "$work/reference.mjs"

model=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) [[ $# -ge 2 ]] || die "--model needs a value"; model="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -n "$model" ]] || model="$("$here/fetch-use-lite.sh")"

# The tfjs banner about tfjs-node goes to stdout; keep stdout for nothing but our own output.
node "$work/reference.mjs" --model "$model" --in "$in" --out "$out" "${args[@]}" >&2
