#!/bin/bash
# Device run for branch `eval` (notes/eval.md "GPU measurements"): GPU eval tests, a 60 s training
# run with every eval mode at the end, then eval variants on the saved weights (resume with no
# steps left), then the model test. .xfer-eval/ holds train, test_gpu and data/: the Debian val
# shard, the tokenizer model and the first 6 M tokens of the train shard (header count rewritten,
# to stay under the carry limit), run as `bash .xfer-eval/run.sh` with carry [".xfer-eval"].
X=.xfer-eval
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "=== test_gpu eval/ttt ($SECONDS s)"
timeout 80 $X/test_gpu -tc="gpu eval*,gpu ttt*" > $OUT/test_eval.log 2>&1; echo "test rc $?"
grep -E "worst|chunk|TTT weight|test cases|assertions|ERROR|FATAL|error:" $OUT/test_eval.log | sed 's/^.*MESSAGE: //' | head -30
grep -B3 -A12 "ERROR" $OUT/test_eval.log | head -60
export DATA_PATH=$X/data TOKENIZER_PATH=$X/data/debian_8192_bpe.model
COMMON="TRAIN_BATCH_TOKENS=262144 MAX_WALLCLOCK_SECONDS=60 VAL_LOSS_EVERY=0 WARMDOWN_ITERS=100 EMA_DECAY=0"
echo "=== train 60 s, EVAL_MODE=all ($SECONDS s)"
env $COMMON WARMUP_STEPS=3 EVAL_MODE=all timeout 150 $X/train --csv $OUT/train.csv --save /tmp/ck.bin > $OUT/train.log 2>&1; echo "train rc $?"
grep -E "^(trained|final|eval|error)" $OUT/train.log
grep -E "^step [0-9]+/[0-9]+ train_loss" $OUT/train.log | tail -1
v=0
for VAR in "EVAL_MODE=stateful EVAL_STREAMS=32" "EVAL_MODE=stateful EVAL_OVERLAP=0" "EVAL_MODE=stateful EVAL_OVERLAP=2048" \
           "EVAL_MODE=stateful EVAL_TEMPERATURE=0.9" "EVAL_MODE=sliding EVAL_STRIDE=512" "EVAL_MODE=ttt TTT_EPOCHS=1"; do
  [ $SECONDS -gt 225 ] && { echo "skipped: $VAR (time)"; continue; }
  [ -f /tmp/ck.bin ] || break
  v=$((v+1)); echo "=== $VAR ($SECONDS s)"
  env $COMMON WARMUP_STEPS=0 $VAR timeout 35 $X/train --resume /tmp/ck.bin --csv $OUT/v$v.csv > $OUT/v$v.log 2>&1; echo "rc $?"
  grep -E "^(eval|error)" $OUT/v$v.log
done
R=$((262 - SECONDS))
if [ $R -gt 15 ]; then
  echo "=== test_gpu model ($SECONDS s, ${R}s left)"
  timeout $R $X/test_gpu -tc="gpu model*" > $OUT/test_model.log 2>&1; echo "model test rc $?"
  grep -E "test cases|assertions|ERROR" $OUT/test_model.log | head
fi
echo "=== done ($SECONDS s)"
