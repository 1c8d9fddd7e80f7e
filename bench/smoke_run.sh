#!/bin/bash
# One device call that checks a build of main end to end (about 3 minutes on one H100): every GPU
# test, then a short run to an artifact: step time and phase profile, final live/EMA validation,
# quant_fit, every eval mode before and after quantization.
#   bash bench/smoke_run.sh XDIR [SECONDS]
# XDIR holds stripped `train` and `test_gpu` built here (-gencode sm_90a), a tools/cut_dataset.py
# cut of the corpus in XDIR/data/ (e.g. 10 M train tokens, the whole val split) and the tokenizer
# model XDIR/debian_8192_bpe.model; carry XDIR (an ignored .xfer-* folder). Logs go to $OUT.
X=${1:?usage: bench/smoke_run.sh XDIR [SECONDS]}
SECS=${2:-60}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
echo "=== test_gpu ($SECONDS s)"
timeout 150 "$X/test_gpu" > "$OUT/test_gpu.log" 2>&1; echo "rc $?"
grep -E "test cases|assertions|ERROR|FATAL" "$OUT/test_gpu.log" | head -20
grep -B3 -A10 "ERROR" "$OUT/test_gpu.log" | head -30
echo "=== train ${SECS} s to an artifact, EVAL_MODE=all ($SECONDS s)"
DATA_PATH=$X/data TOKENIZER_PATH=$X/debian_8192_bpe.model TRAIN_BATCH_TOKENS=262144 MAX_WALLCLOCK_SECONDS=$SECS \
  WARMDOWN_ITERS=$((SECS * 2)) VAL_LOSS_EVERY=0 WARMUP_STEPS=3 EVAL_MODE=all PROFILE_EVERY=50 \
  timeout $((SECS + 300)) "$X/train" --csv "$OUT/train.csv" --artifact /tmp/smoke.artifact > "$OUT/train.log" 2>&1
echo "train rc $?"
grep -E "^(profile step 100|trained|final|eval mode|quantized|quant_fit|artifact|late|error|done)" "$OUT/train.log"
echo "=== done ($SECONDS s)"
