#!/usr/bin/env bash
# The GPU trainer vs the PyTorch reference trainer on the same init and batches (notes/reftrain.md).
#   bash tools/ref/compare_gpu.sh XDIR OUTDIR [STEPS]
# XDIR holds: train, dump_run (built binaries), cmp_sp8192/ (tools/cut_dataset.py output),
# debian_8192_bpe.model, ref/ (a copy of tools/ref, if the checkout has not got train_ref.py).
# Big files (arenas, checkpoints: ~100 MB each at the seed shape) stay in $TMPDIR; OUTDIR gets
# logs, loss files and the comparison tables (compare.txt). Two checks, each against the fp32
# reference with the bf16 reference's own distance from it as the floor (compare_run.py --floor-*):
# train may differ by 1e-3 (+ 2e-3 for the 50-step loss curve) + 2 x the floor, per tensor:
#   1. one step from init (no schedule): step-1 loss, parameters and EMA after one update;
#   2. STEPS (50) steps with a 30% warmdown: loss curve, final parameters and EMA.
set -euo pipefail
X=$1
OUT=$2
STEPS=${3:-50}
REF=tools/ref
[ -f "$REF/train_ref.py" ] || REF=$X/ref
PY=${PYTHON:-python3}
T=${TMPDIR:-/tmp}/reftrain_cmp
rm -rf "$T"
mkdir -p "$T/one" "$T/run" "$OUT"
BASE="--data-path $X/cmp_sp8192 --tokenizer-path $X/debian_8192_bpe.model --vocab-size 8192
      --train-seq-len 1024 --eval-overlap 256 --micro-batch-seqs 8 --train-batch-tokens 16384 --max-wallclock-seconds 0
      --warmup-steps 0 --val-loss-every 0 --seed 1337 --late-qat-threshold 0 ${CMP_EXTRA:-}"
# late QAT off: the reference trainer has none (CMP_EXTRA: e.g. a smaller shape)
ONE="$BASE --iterations 1 --warmdown-iters 0"
RUN="$BASE --iterations $STEPS --warmdown-iters $((STEPS * 3 / 10))"

# refs DIR NAME: fp32 and bf16 (autocast forward + bf16 Newton-Schulz) reference runs
refs() {
    "$PY" "$REF/train_ref.py" "$1" --losses "$OUT/$2_ref32.losses" --save-arena "$1/ref32.f32" \
        --save-ema "$1/ref32.ema.f32" > "$OUT/$2_ref32.log"
    "$PY" "$REF/train_ref.py" "$1" --bf16 --muon-bf16 --losses "$OUT/$2_refbf16.losses" \
        --save-arena "$1/refbf16.f32" --save-ema "$1/refbf16.ema.f32" > "$OUT/$2_refbf16.log"
}
# cmp DIR NAME TOL_LOSS TOL_PARAMS: train vs the fp32 reference, gated at tol + 2 x the floor (the
# bf16 reference's own difference from the fp32 one, per tensor); then train vs the bf16 one (info)
cmp() {
    local rc=0
    echo "== $2: train vs reference fp32 [floor: reference bf16 vs fp32]" | tee -a "$OUT/compare.txt"
    "$PY" "$REF/compare_run.py" "$1" --run "$OUT/$2_train.csv" --ckpt "$1/train.ckpt" \
        --ref-losses "$OUT/$2_ref32.losses" --ref-arena "$1/ref32.f32" --ref-ema "$1/ref32.ema.f32" \
        --floor-losses "$OUT/$2_refbf16.losses" --floor-arena "$1/refbf16.f32" --floor-ema "$1/refbf16.ema.f32" \
        --tol-loss "$3" --tol-params "$4" | tee -a "$OUT/compare.txt" || rc=1
    echo "== $2: train vs reference bf16 (information)" | tee -a "$OUT/compare.txt"
    "$PY" "$REF/compare_run.py" "$1" --run "$OUT/$2_train.csv" --ckpt "$1/train.ckpt" \
        --ref-losses "$OUT/$2_refbf16.losses" --ref-arena "$1/refbf16.f32" --ref-ema "$1/refbf16.ema.f32" \
        --tol-loss 1 --tol-params 10 | tee -a "$OUT/compare.txt"
    return $rc
}

status=0
$X/dump_run --out "$T/one" --steps 1 $ONE
$X/train $ONE --csv "$OUT/one_train.csv" --save "$T/one/train.ckpt" > "$OUT/one_train.log" 2>&1
refs "$T/one" one
cmp "$T/one" one 1e-3 1e-3 || status=1

$X/dump_run --out "$T/run" --steps "$STEPS" $RUN
$X/train $RUN --csv "$OUT/run_train.csv" --save "$T/run/train.ckpt" > "$OUT/run_train.log" 2>&1
refs "$T/run" run
cmp "$T/run" run 2e-3 1e-3 || status=1
echo "compare_gpu: $([ $status = 0 ] && echo ok || echo FAIL) (tables in $OUT/compare.txt)"
exit $status
