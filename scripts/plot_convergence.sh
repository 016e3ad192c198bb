#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates docs/img/admm_convergence.png: the ADMM trace of example_admm_convergence on a real
# matrix (default tests/data/use_lite_L0_attn_q.npy at 1.0 bpw, 400 iterations), plotted with
# gnuplot (Debian package gnuplot-nox).
#   scripts/plot_convergence.sh [build-dir] [W.npy] [bpw]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
npy=${2:-tests/data/use_lite_L0_attn_q.npy}
bpw=${3:-1.0}
csv=$(mktemp --suffix=.csv)
trap 'rm -f "$csv"' EXIT
cmake --build "$build" --target example_admm_convergence >/dev/null
"$build"/examples/admm_convergence "$npy" "$bpw" 400 "$csv"
mkdir -p docs/img
gnuplot <<GP
set datafile separator ","
set terminal pngcairo size 1000,640 font ",11"
set output "docs/img/admm_convergence.png"
set multiplot layout 2,1 title "NanoQuant ADMM on $(basename "$npy" .npy | tr _ -), ${bpw} bpw (linear rho schedule, seed 0)"
set key top right
set xlabel "iteration"
set ylabel "objective = ||W~ - A_z D_b B_z||^2 / ||W~||^2"
set grid
plot "$csv" every ::1 using 1:2 with lines lw 2 title "objective", \
     "$csv" every ::1 using 1:5 with lines dt 2 title "rho"
set logscale y
set ylabel "residual"
plot "$csv" every ::1 using 1:3 with lines lw 2 title "primal ||A_x-A_z||+||B_x-B_z||", \
     "$csv" every ::1 using 1:4 with lines lw 2 title "dual rho(||dA_z||+||dB_z||)"
unset multiplot
GP
echo "wrote docs/img/admm_convergence.png"
