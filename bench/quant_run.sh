#!/bin/bash
# The quant device call (notes/quant.md): GPU tests (gptq, hessians), a short training run through
# the whole quantization pipeline, --eval-artifact (good, mismatched, truncated), RTN on the same
# weights. Needs in .xfer-quant/: train, test_gpu, quantize, inspect (stripped), data/ (a cut made
# by tools/cut_dataset.py + the tokenizer) and src/ (the counted sources, for --code-root).
X=.xfer-quant
cd $(dirname $0)/..
export NCCL_NVLS_ENABLE=0 OMP_NUM_THREADS=16 DATA_PATH=$X/data TOKENIZER_PATH=$X/data/debian_8192_bpe.model
export TRAIN_BATCH_TOKENS=262144 WARMUP_STEPS=3 VAL_LOSS_EVERY=0 MAX_WALLCLOCK_SECONDS=${SECS:-30} WARMDOWN_ITERS=40
Q=/tmp/q; mkdir -p $Q
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
T0=$(date +%s); t() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
t "=== test_gpu gptq/hessians"
timeout 60 $X/test_gpu -tc='*gptq*,*hessian*' -s > $OUT/test_gpu.log 2>&1; echo "test_gpu rc $?"
grep -E "identical q|U rel err|rel err vs own|test cases|assertions|ERROR|FATAL" $OUT/test_gpu.log | head -40
t "=== train ${MAX_WALLCLOCK_SECONDS}s -> hessians -> GPTQ -> artifact -> verdict -> post-quant eval"
timeout 170 $X/train --csv $OUT/train.csv --save $Q/ckpt --artifact $Q/model.artifact --hessians $Q/hess.bin \
    --code-root $X/src > $OUT/train.log 2>&1; echo "train rc $?"
grep -vE "^step [0-9]+/.* train_loss" $OUT/train.log | grep -vE "^[a-z_]+ = " | tail -22
t "=== eval-artifact"
timeout 40 $X/train --eval-artifact $Q/model.artifact > $OUT/eval.log 2>&1; echo "eval rc $?"; grep -E "eval_artifact|error" $OUT/eval.log
timeout 20 $X/train --eval-artifact $Q/model.artifact --model-dim 256 2>&1 | grep -E "error"; echo "mismatch rc ${PIPESTATUS[0]}"
head -c 1000000 $Q/model.artifact > $Q/trunc.artifact
timeout 20 $X/train --eval-artifact $Q/trunc.artifact 2>&1 | grep -E "error"; echo "truncated rc ${PIPESTATUS[0]}"
t "=== bytes/param of the trained (short-run) artifact"
timeout 40 $X/inspect $Q/model.artifact --code-root $X/src > $OUT/inspect.log 2>&1; tail -25 $OUT/inspect.log
t "=== RTN on the same EMA weights (CPU tool), its post-quant bpb"
timeout 40 $X/quantize $Q/ckpt $Q/rtn.artifact --ema --code-root $X/src > $OUT/rtn.log 2>&1; echo "rtn rc $?"; grep -E "^artifact|size:" $OUT/rtn.log
timeout 30 $X/train --eval-artifact $Q/rtn.artifact > $OUT/eval_rtn.log 2>&1; grep -E "eval_artifact|error" $OUT/eval_rtn.log
t "=== summary"
grep -E "test cases|assertions" $OUT/test_gpu.log
grep -E "^trained|^hessians|^quantized|^size|^artifact:|^final|^done" $OUT/train.log
grep -E "eval_artifact" $OUT/eval.log $OUT/eval_rtn.log
ls -la $Q; rm -f $Q/hess.bin $Q/ckpt
