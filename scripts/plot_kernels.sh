#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates docs/img/kernels_4096.png: microseconds per 4096x4096 GEMV, 1 thread, weights streamed
# from DRAM, for every nanoquant path this machine runs (nanoquant bench-gemv --json, at 1.0 and
# 0.55 bits per weight, dense Eigen float32 in the same run) next to the low-bit CPU kernels that
# issue 3 lists for this kind of machine (2 vCPUs of an AMD EPYC Zen 5; their figures are quoted,
# not measured by this script). Plotted with gnuplot (Debian package gnuplot-nox).
#   scripts/plot_kernels.sh [build-dir] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-7}
dat=$(mktemp --suffix=.dat)
trap 'rm -f "$dat" "$dat".*' EXIT
cmake --build "$build" --target nanoquant_cli >/dev/null
cli="$build"/tools/nanoquant/nanoquant
for bpw in 1.0 0.55; do
  "$cli" bench-gemv --rows 4096 --cols 4096 --bpw "$bpw" --rounds "$rounds" --json > "$dat.$bpw"
done
python3 - "$dat" <<'PY'
import json, sys
dat = sys.argv[1]
rows = []  # (label, microseconds, kind): kind 0 = dense, 1 = quoted, 2 = nanoquant
one = json.load(open(dat + ".1.0"))
half = json.load(open(dat + ".0.55"))
rows.append(("dense Eigen f32 (measured)", one["dense_us"], 0))
# Issue 3's figures for this kind of machine, 1 thread (quoted).
for label, us in [("ggml IQ1_S 1.56 bpw", 976), ("ggml Q1_0 1.125 bpw", 476), ("ggml Q4_0 4.5 bpw, repacked", 442),
                  ("ggml TQ2_0 2.06 bpw", 297), ("bitnet.cpp I2_S 2 bpw", 231)]:
    rows.append((label + " (quoted)", us, 1))
for res, bpw in [(one, "1.0"), (half, "0.55")]:
    for p in res["paths"]:
        rows.append(("nanoquant %s %s bpw" % (p["name"], bpw), p["us"], 2))
with open(dat, "w") as f:
    for i, (label, us, kind) in enumerate(rows):
        f.write('%d "%s" %.1f %d\n' % (i, label, us, kind))
PY
mkdir -p docs/img
gnuplot <<GP
set terminal pngcairo size 1100,720 font ",11" noenhanced
set output "docs/img/kernels_4096.png"
set title "4096x4096 GEMV, 1 thread, weights from DRAM: microseconds per call (log scale, lower is better)"
set style fill solid 0.8 border -1
set boxwidth 0.7
set logscale y
set yrange [20:*]
set ylabel "us per GEMV"
set xtics rotate by 35 right nomirror
set bmargin 13
set lmargin 22
set grid ytics
set key off
set palette defined (0 "#888888", 1 "#d08c3f", 2 "#2f6fb0")
unset colorbox
plot "$dat" using 1:3:4:xtic(2) with boxes palette, \
     "" using 1:(\$3*1.12):(sprintf("%.0f", \$3)) with labels font ",9"
GP
echo "wrote docs/img/kernels_4096.png"
