#!/bin/bash
# Device run for branch `trainer` (one call, from /work/main with .xfer-trainer/ carried):
# the trainer GPU tests (NaN/Inf flags, watchdog) and the optimizer tests (dist.cu changed), the
# 40 steps of the seed config at 262,144 tokens/step with PROFILE_EVERY=10, then the bit-exact
# resume check (bench/resume_check.sh). Expects .xfer-trainer/{train,test_gpu,bench_gpu,resume_check.sh,dist_dead_rank.sh} and
# .xfer-trainer/data/ (a tools/cut_dataset.py cut: 1.5 M train tokens, 16 val sequences of 4096,
# + debian_8192_bpe.model). The resume check runs K=30 steps of 2 micro-batches of 8 sequences:
# 45 draws per epoch on that cut, so the resumed half (from step 15) crosses an epoch.
# Last, bench/dist_dead_rank.sh (its lone-rank case; the kill case needs 2 GPUs).
X=.xfer-trainer
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
echo "=== test_gpu -tc='gpu trainer*,gpu optim*'"
timeout 60 $X/test_gpu -tc="gpu trainer*,gpu optim*" > $OUT/test.log 2>&1; echo "test rc $?"
grep -E "first flagged|hung kernel|test cases|assertions|ERROR|error" $OUT/test.log | sed 's/^.*MESSAGE: //' | head -30
echo "=== bench_gpu finite (measured peaks + the NaN/Inf check's time)"
timeout 30 $X/bench_gpu finite 2>&1 | tee $OUT/bench_finite.log | tail -4
echo "=== 40 steps, seed config, 262144 tokens/step, PROFILE_EVERY=10"
DATA_PATH=$X/data TOKENIZER_PATH=$X/data/debian_8192_bpe.model TRAIN_BATCH_TOKENS=262144 ITERATIONS=40 \
  MAX_WALLCLOCK_SECONDS=0 WARMUP_STEPS=5 WARMDOWN_ITERS=20 VAL_LOSS_EVERY=0 PROFILE_EVERY=10 \
  timeout 90 $X/train --csv $OUT/profile.csv > $OUT/profile.log 2>&1; echo "profile rc $?"
grep -E "^train: git|^profile|^step (1|9|10|11|20|30|39|40)/|^trained|^final|^device|^memory|^batch|^warm-up|error" $OUT/profile.log
echo "=== bench/resume_check.sh"
K=30 timeout 100 bash $X/resume_check.sh $X $X/data $X/data/debian_8192_bpe.model /tmp/rc > $OUT/resume_check.log 2>&1; echo "resume_check rc $?"
mkdir -p $OUT/rc; cp /tmp/rc/*.csv /tmp/rc/*.log $OUT/rc/ 2>/dev/null
cat $OUT/resume_check.log
grep -hE "^warm-up|ms/step" /tmp/rc/A1.log | head -3
echo "=== bench/dist_dead_rank.sh on 1 GPU (the lone-rank case; the kill case needs 2 GPUs)"
DIST_TIMEOUT_S=5 timeout 40 bash $X/dist_dead_rank.sh $X $X/data $X/data/debian_8192_bpe.model 1 /tmp/dr > $OUT/dead_rank.log 2>&1
echo "dist_dead_rank rc $?"; cat $OUT/dead_rank.log; mkdir -p $OUT/dr; cp /tmp/dr/*.log $OUT/dr/ 2>/dev/null
echo "=== per-kernel summary (nsys, if the machine has it): 1 warm-up + 4 steps + final eval"
if command -v nsys > /dev/null; then
  DATA_PATH=$X/data TOKENIZER_PATH=$X/data/debian_8192_bpe.model TRAIN_BATCH_TOKENS=262144 ITERATIONS=4 \
    MAX_WALLCLOCK_SECONDS=0 WARMUP_STEPS=1 VAL_LOSS_EVERY=0 EMA_DECAY=0 \
    timeout 60 nsys profile --trace=cuda --sample=none --cpuctxsw=none --force-overwrite=true -o /tmp/nsys_train \
    $X/train --csv /tmp/nsys.csv > $OUT/nsys_run.log 2>&1; echo "nsys rc $?"
  timeout 30 nsys stats --report cuda_gpu_kern_sum --format csv --output $OUT/kern /tmp/nsys_train.nsys-rep > /dev/null 2>&1
  f=$(ls $OUT/kern*.csv 2>/dev/null | head -1)
  [ -n "$f" ] && python3 -c "
import csv,sys
rows=list(csv.DictReader(open('$f')))
col=lambda k: [c for c in rows[0] if c.startswith(k)][0]
T,N,I=col('Total Time'),col('Name'),col('Instances')
tot=sum(float(r[T]) for r in rows)
print('kernels: %d, total %.1f ms over the run' % (len(rows), tot/1e6))
for r in rows[:30]: print('%5.1f%% %9.2f ms %6s x  %s' % (100*float(r[T])/tot, float(r[T])/1e6, r[I], r[N][:90]))
"
else
  echo "nsys: not on this machine"
fi
