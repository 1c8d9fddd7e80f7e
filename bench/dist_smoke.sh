#!/bin/bash
# The first multi-GPU call (notes/multigpu.md): every collective of a training run in about two
# minutes, before any long multi-GPU run.
#   bash bench/dist_smoke.sh XDIR [NGPU]        (NGPU default 2; NCCL_NVLS_ENABLE=0 throughout)
# XDIR as for bench/smoke_run.sh: stripped `train` and `test_gpu`, a corpus cut in XDIR/data, the
# tokenizer XDIR/debian_8192_bpe.model. Steps:
#   1. test_gpu -tc="gpu dist*" on NGPU ranks (sharded Muon over NCCL == the single-GPU step);
#   2. tools/launch NGPU: 60 s of training with validation and a checkpoint every 50 steps, every
#      eval mode, Hessians, quantization on rank 0, the artifact read back by every rank (each rank's
#      weights checksummed against the others' at every validation: dist_check_same);
#   3. bench/dist_dead_rank.sh: a killed rank makes the others exit with a named error.
X=${1:?usage: bench/dist_smoke.sh XDIR [NGPU]}
N=${2:-2}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
cd "$(dirname "$0")/.." || exit 2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "=== test_gpu 'gpu dist*' on $N ranks ($SECONDS s)"
for ((r = 0; r < N; r++)); do
    WORLD_SIZE=$N RANK=$r LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 \
        timeout 120 "$X/test_gpu" -tc="gpu dist*" > "$OUT/dist_test$r.log" 2>&1 &
done
wait
grep -hE "test cases|assertions|ERROR|skipped" "$OUT"/dist_test*.log | sort | uniq -c
echo "=== tools/launch $N: 60 s, val + checkpoint every 50 steps, EVAL_MODE=all ($SECONDS s)"
cp "$X/train" ./train
DATA_PATH=$X/data TOKENIZER_PATH=$X/debian_8192_bpe.model MAX_WALLCLOCK_SECONDS=60 WARMUP_STEPS=3 \
    VAL_LOSS_EVERY=50 EVAL_MODE=all timeout 420 tools/launch "$N" --save /tmp/dist_smoke.ckpt --save-every 50 \
    --csv "$OUT/launch.csv" --artifact /tmp/dist_smoke.artifact > "$OUT/launch.log" 2>&1
echo "launch rc $?"
for ((r = 0; r < N; r++)); do
    cp "logs/rank$r.log" "$OUT/rank$r.log" 2>/dev/null
    echo "--- rank $r: $(grep -cE '^step [0-9]+/' "logs/rank$r.log") step lines (rank 0 logs them)"
    grep -E "^(error|warning|trained|final|eval mode|artifact|done)|dist:" "logs/rank$r.log" | head -14
done
echo "=== bench/dist_dead_rank.sh ($SECONDS s)"
DIST_TIMEOUT_S=10 timeout 120 bash bench/dist_dead_rank.sh "$X" "$X/data" "$X/debian_8192_bpe.model" "$N" /tmp/dead_rank \
    > "$OUT/dead_rank.log" 2>&1
echo "dead_rank rc $?"; tail -6 "$OUT/dead_rank.log"
echo "=== done ($SECONDS s)"
