#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The USE-Lite results of docs/use-lite.md, from one command:
#   scripts/use-lite-results.sh [build-dir]        (default: build)
# 1. fetches the model (scripts/fetch-use-lite.sh) and writes the WordNet calibration (2000) and
#    evaluation (500) sentences (scripts/make-sentences.py);
# 2. runs examples/use_lite_results.cpp: the data-free baselines and every pipeline stage at each
#    bit budget (RESULTS_BPW, default 0.55,0.8,1.0,2.0), evaluated on the evaluation sentences
#    (docs/use_lite_data/results.csv, the log beside it);
# 3. plots mean cosine and recall@10 against bits per weight (docs/img/use_lite_results.png, gnuplot).
# Extra arguments for use_lite_results in RESULTS_ARGS (e.g. "--threads 2 --admm-iters 400").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
data=$root/docs/use_lite_data
img=$root/docs/img
mkdir -p "$data" "$img"
model=$("$root/scripts/fetch-use-lite.sh")
python3 "$root/scripts/make-sentences.py" --calib 2000 --eval 500 "$data/calib.txt" "$data/eval.txt"
if [[ "${SKIP_RUN:-0}" != 1 ]]; then
  cmake --build "$build" --target example_use_lite_results -j"$(nproc)"
  # shellcheck disable=SC2086
  "$build/examples/use_lite_results" "$model" "$data/calib.txt" "$data/eval.txt" "$data/results.csv" \
    --bpw "${RESULTS_BPW:-0.55,0.8,1.0,2.0}" ${RESULTS_ARGS-} 2> "$data/log.txt"
fi
command -v gnuplot > /dev/null || { echo "use-lite-results.sh: gnuplot not found (scripts/install-deps.sh --all)" >&2; exit 1; }
for m in admm layer block full; do
  awk -F, -v m="$m" 'NR > 1 && $1 == m {print $3, $4, $5}' "$data/results.csv" | sort -n > "$data/.plot_$m.dat"
done
awk -F, 'NR > 1 && $1 != "float" && $1 != "admm" && $1 != "layer" && $1 != "block" && $1 != "full" {print $3, $4, $5, $1}' \
  "$data/results.csv" > "$data/.plot_baselines.dat"
gnuplot <<GP
set terminal pngcairo size 1100,450 font ",10"
set output "$img/use_lite_results.png"
set multiplot layout 1,2 title "USE-Lite: agreement with the float model on 500 WordNet sentences (every matmul weight compressed)"
set xlabel "average bits per matmul weight"
set grid
set key bottom right
set ylabel "mean cosine to float embeddings"
set yrange [0:1]
plot for [m in "admm layer block full"] "$data/.plot_".m.".dat" using 1:2 with linespoints title m, \
     "$data/.plot_baselines.dat" using 1:2 with points pt 7 ps 1.2 notitle, \
     "$data/.plot_baselines.dat" using 1:2:4 with labels offset 0,1 notitle
set ylabel "recall@10 (neighbourhood agreement)"
plot for [m in "admm layer block full"] "$data/.plot_".m.".dat" using 1:3 with linespoints title m, \
     "$data/.plot_baselines.dat" using 1:3 with points pt 7 ps 1.2 notitle, \
     "$data/.plot_baselines.dat" using 1:3:4 with labels offset 0,1 notitle
unset multiplot
GP
rm -f "$data"/.plot_*.dat
echo "use-lite-results.sh: wrote $data/results.csv and $img/use_lite_results.png" >&2
