#!/bin/bash
# Issue 9: the full run, one command. For each seed: train for the 600 s cap on NGPU GPUs of this
# host (tools/launch: one process per GPU, NCCL, NVLink multicast off), which then collects the GPTQ
# Hessians, quantizes, writes the artifact, prints the size verdict and evaluates the artifact in
# every mode; then the per-seed table with mean and std (tools/runs_table.py).
#   bench/golf_run.sh NGPU [train flags ...]       e.g. bench/golf_run.sh 8
# Env: SEEDS (default "1337 42 2025"), OUTDIR (default logs/golf_<NGPU>gpu); other settings as for train.
set -euo pipefail
n=${1:?usage: bench/golf_run.sh NGPU [train flags ...]}; shift
cd "$(dirname "$0")/.."
out=${OUTDIR:-logs/golf_${n}gpu}
mkdir -p "$out"
logs=()
for seed in ${SEEDS:-1337 42 2025}; do
    echo "=== seed $seed on $n GPU(s) -> $out/seed$seed.log"
    SEED=$seed EVAL_MODE=${EVAL_MODE:-all} tools/launch "$n" --csv "$out/seed$seed.csv" \
        --artifact "$out/seed$seed.artifact" "$@" > "$out/seed$seed.log" 2>&1 || echo "seed $seed: train failed (see the log)"
    grep -E "^(trained|final|artifact|eval mode|done)" "$out/seed$seed.log" || true
    logs+=("$out/seed$seed.log")
done
python3 tools/runs_table.py "${logs[@]}" | tee "$out/table.md"
