#!/bin/bash
# A dead rank must make the others exit with a named error within dist_timeout_s, never hang
# (optim/dist.cuh). Two cases, each bounded by `timeout`:
#   lone:   WORLD_SIZE=2 with only rank 0 started: rank 0 ends in the rendezvous
#           ("only 1 of 2 ranks arrived") after DIST_TIMEOUT_S (runs on one GPU);
#   killed: ranks 0 and 1 train together, rank 1 is SIGKILLed after step 3: rank 0 ends with
#           "dist: rank 0 of 2: ..." (an NCCL async error or the collective timeout) within
#           DIST_TIMEOUT_S + a few seconds. Needs 2 GPUs (NCCL refuses two ranks on one GPU;
#           with NGPU=1 the script runs it anyway and shows what NCCL says).
#   bench/dist_dead_rank.sh BINDIR DATA_DIR TOKENIZER NGPU [OUTDIR]
set -uo pipefail
[ $# -ge 4 ] || { echo "usage: bench/dist_dead_rank.sh BINDIR DATA_DIR TOKENIZER NGPU [OUTDIR]" >&2; exit 2; }
BIN=$1/train NGPU=$4 OUT=${5:-/tmp/dead_rank}
mkdir -p "$OUT"
export DATA_PATH=$2 TOKENIZER_PATH=$3 DIST_TIMEOUT_S=${DIST_TIMEOUT_S:-10} WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 \
       NCCL_NVLS_ENABLE=0 ITERATIONS=100000 MAX_WALLCLOCK_SECONDS=0 WARMUP_STEPS=1 VAL_LOSS_EVERY=0 \
       TRAIN_BATCH_TOKENS=65536 MICRO_BATCH_SEQS=8
fail=0

echo "--- lone rank 0 of 2 (DIST_TIMEOUT_S=$DIST_TIMEOUT_S)"
t0=$(date +%s.%N)
MASTER_PORT=29531 RANK=0 LOCAL_RANK=0 timeout $((DIST_TIMEOUT_S + 30)) "$BIN" --csv "$OUT/lone.csv" > "$OUT/lone.log" 2>&1
rc=$?; dt=$(awk "BEGIN { print $(date +%s.%N) - $t0 }")
echo "rc $rc after ${dt} s: $(grep -m1 '^error' "$OUT/lone.log")"
grep -q "only 1 of 2 ranks arrived" "$OUT/lone.log" && [ $rc -eq 1 ] || fail=1

echo "--- rank 1 killed after step 3"
t0=$(date +%s.%N)
MASTER_PORT=29532 RANK=0 LOCAL_RANK=0 timeout $((DIST_TIMEOUT_S + 90)) "$BIN" --csv "$OUT/r0.csv" > "$OUT/r0.log" 2>&1 &
p0=$!
MASTER_PORT=29532 RANK=1 LOCAL_RANK=$((1 % NGPU)) "$BIN" --csv "$OUT/r1.csv" > "$OUT/r1.log" 2>&1 &
p1=$!
trap 'kill $p0 $p1 2>/dev/null' EXIT  # no rank outlives the script
for i in $(seq 600); do  # up to 60 s for step 3, or for either rank to end
    grep -q "^step 3/" "$OUT/r0.log" 2>/dev/null && break
    kill -0 $p0 2>/dev/null && kill -0 $p1 2>/dev/null || break
    sleep 0.1
done
if grep -q "^step 3/" "$OUT/r0.log"; then
    kill -9 $p1; tk=$(date +%s.%N)
    wait $p0; rc=$?; dt=$(awk "BEGIN { print $(date +%s.%N) - $tk }")
    echo "rank 0: rc $rc, ${dt} s after the kill: $(grep -m1 '^error' "$OUT/r0.log")"
    [ $rc -eq 1 ] && grep -q "^error: dist: rank 0 of 2" "$OUT/r0.log" || fail=1
else
    echo "the two ranks did not reach step 3 together; rank 0 / rank 1 logs end with:"
    tail -3 "$OUT/r0.log"; tail -3 "$OUT/r1.log"
    kill $p0 $p1 2>/dev/null; wait $p0 $p1 2>/dev/null
    fail=1
fi
[ $fail -eq 0 ] && echo "dist_dead_rank: PASS" || echo "dist_dead_rank: FAIL"
exit $fail
