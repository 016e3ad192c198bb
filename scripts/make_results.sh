#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates the numbers and plots of docs/results.md:
#   scripts/make_results.sh [build-dir]   (default: build)
# 1. runs examples/results_report.cpp (CSV files in docs/results_data/),
# 2. draws docs/img/results_*.png with gnuplot (Debian gnuplot-nox).
# Extra arguments to results_report can be passed in RESULTS_ARGS; the default (none) is the run of
# docs/results.md: all six matrices, 400 ADMM iterations, reconstruction at every bpw (17 min on the
# 2-core Zen 5 VM).
# A quicker look: RESULTS_ARGS="--matrices use_lite_L0_attn_q,use_lite_L1_attn_q --iterations 100 --recon-bpw 0.55,1.0"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
data=$root/docs/results_data
img=$root/docs/img
mkdir -p "$data" "$img"
args=${RESULTS_ARGS-}
if [[ "${SKIP_RUN:-0}" != 1 ]]; then
  cmake --build "$build" --target example_results_report -j2
  # shellcheck disable=SC2086
  "$build/examples/results_report" --out "$data" $args 2> "$data/log.txt"
fi
command -v gnuplot >/dev/null || { echo "make_results.sh: gnuplot not found (scripts/install-deps.sh --all)" >&2; exit 1; }
methods="admm-2scale admm-3scale admm-3scale+recon dbf svd16 sign residual-2"
for metric in weight_err:4 weighted_err:5 out_err:6; do
  name=${metric%%:*}; col=${metric##*:}
  for mat in $(tail -n +2 "$data/errors.csv" | cut -d, -f1 | sort -u); do
    for meth in $methods; do
      awk -F, -v m="$mat" -v me="$meth" -v c="$col" 'NR>1 && $1==m && $2==me {print $4, $(c+1)}' "$data/errors.csv" \
        > "$data/.plot_${mat}_${meth}.dat"
    done
    plot=""
    for meth in $methods; do
      f="$data/.plot_${mat}_${meth}.dat"
      [[ -s $f ]] && plot+="'$f' using 1:2 with linespoints title '$meth',"
    done
    gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output '$img/results_${name}_${mat}.png'
set title '$name vs bits per weight: $mat'
set xlabel 'bits per weight (actual)'
set ylabel '$name'
set logscale y
set grid
set key outside right
plot ${plot%,}
GP
  done
done
rm -f "$data"/.plot_*.dat
# ADMM convergence (objective per iteration) for every matrix at every bpw.
for mat in $(tail -n +2 "$data/convergence.csv" | cut -d, -f1 | sort -u); do
  plot=""
  for b in $(awk -F, -v m="$mat" 'NR>1 && $1==m {print $2}' "$data/convergence.csv" | sort -u); do
    awk -F, -v m="$mat" -v b="$b" 'NR>1 && $1==m && $2==b {print $3, $4}' "$data/convergence.csv" > "$data/.conv_$b.dat"
    plot+="'$data/.conv_$b.dat' using 1:2 with lines title '$b bpw',"
  done
  gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output '$img/results_admm_convergence_${mat}.png'
set title 'ADMM objective (weighted, squared, relative): $mat'
set xlabel 'iteration'
set ylabel 'objective'
set logscale y
set grid
plot ${plot%,}
GP
  rm -f "$data"/.conv_*.dat
done
# Layer reconstruction: output error (calibration tokens) at the start (0), after each epoch, and of
# the returned layer after the sign polish ("polish"), one line per bpw.
if [[ -s "$data/recon_curve.csv" ]]; then
  for mat in $(tail -n +2 "$data/recon_curve.csv" | cut -d, -f1 | sort -u); do
    plot=""
    last=$(awk -F, -v m="$mat" 'NR>1 && $1==m && $3!="final" && $3+0>e {e=$3+0} END {print e}' "$data/recon_curve.csv")
    for b in $(awk -F, -v m="$mat" 'NR>1 && $1==m {print $2}' "$data/recon_curve.csv" | sort -u); do
      awk -F, -v m="$mat" -v b="$b" -v f=$((last + 2)) \
        'NR>1 && $1==m && $2==b {print ($3=="final" ? f : $3), $4}' "$data/recon_curve.csv" > "$data/.rc_$b.dat"
      plot+="'$data/.rc_$b.dat' using 1:2 with linespoints title '$b bpw',"
    done
    gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output '$img/results_recon_curve_${mat}.png'
set title 'Layer reconstruction, output error on the calibration tokens: $mat'
set xlabel 'epoch (0 = ADMM init; last point = returned layer after the sign polish)'
set ylabel 'output error ||X(W-What)^T|| / ||XW^T||'
set xrange [-0.5:$((last + 2)).5]
set xtics 0,5,$last
set xtics add ("polish" $((last + 2)))
set key outside right
set grid
plot ${plot%,}
GP
    rm -f "$data"/.rc_*.dat
  done
fi
echo "make_results.sh: wrote $data/*.csv and $img/results_*.png"
# Markdown tables (pasted into docs/results.md).
{
  echo "| matrix | bpw target | method | bpw | weight err | weighted err | out err (calib) | out err (held-out) |"
  echo "|---|---|---|---|---|---|---|---|"
  tail -n +2 "$data/errors.csv" | sort -t, -k1,1 -k3,3n -s | awk -F, '{printf "| %s | %s | %s | %.3f | %.4f | %.4f | %.4f | %.4f |\n", $1, $3, $2, $4, $5, $6, $7, $8}'
} > "$data/tables.md"
echo "make_results.sh: wrote $data/tables.md"
