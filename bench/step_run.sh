#!/bin/bash
# Device run for branch `step`: the whole-model GPU test, then ~150 s of training with the seed config.
X=.xfer-step
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "=== test_gpu -tc='gpu model*'"
timeout 80 $X/test_gpu -tc="gpu model*" > $OUT/test_model.log 2>&1; echo "test rc $?"
grep -E "rel err|worst|arena|test cases|assertions|ERROR|error|FATAL" $OUT/test_model.log | sed 's/^.*MESSAGE: //' | head -60
echo "=== train"
export DATA_PATH=$X/data TOKENIZER_PATH=$X/data/debian_8192_bpe.model
TRAIN_BATCH_TOKENS=${TBT:-262144} MAX_WALLCLOCK_SECONDS=${SECS:-150} VAL_LOSS_EVERY=${VAL_EVERY:-100} WARMUP_STEPS=${WARM:-5} WARMDOWN_ITERS=${WD:-250} \
  timeout ${TLIM:-220} $X/train --csv $OUT/train.csv --save /tmp/ckpt.bin > $OUT/train.log 2>&1; echo "train rc $?"
grep -vE "^step [0-9]+/[0-9]+ train_loss" $OUT/train.log | grep -vE " = " | tail -25
grep -E "^step [0-9]+/[0-9]+ train_loss" $OUT/train.log | awk "NR<=3 || NR%25==0" | tail -30
grep -E "^step [0-9]+/[0-9]+ train_loss" $OUT/train.log | tail -2
if [ -n "$RESUME" ] && [ -f /tmp/ckpt.bin ]; then
  echo "=== resume"
  S=$(grep -E "^step [0-9]+/" $OUT/train.log | tail -1 | sed -E 's/^step ([0-9]+).*/\1/')
  MAX_WALLCLOCK_SECONDS=100000 TRAIN_BATCH_TOKENS=${TBT:-262144} ITERATIONS=$((S+2)) WARMUP_STEPS=1 WARMDOWN_ITERS=${WD:-250} VAL_LOSS_EVERY=0 EMA_DECAY=${EMA:-0.997} \
    timeout 50 $X/train --resume /tmp/ckpt.bin --csv $OUT/resume.csv > $OUT/resume.log 2>&1; echo "resume rc $?"
  grep -vE " = " $OUT/resume.log | tail -8
fi
