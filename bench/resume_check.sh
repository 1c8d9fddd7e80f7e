#!/bin/bash
# Bit-exact determinism and resume of ./train (GPU), at small shapes:
#   A1, A2: two uninterrupted K-step runs, same seed (A1 with --save-every K/2, as a long run would);
#   B:      the first K/2 steps (--stop-at K/2 --save), then --resume for the rest, into the same CSV.
# Asserts that A1 == A2 and A1 == B on every step's (train_loss, lr_mult) (train writes the loss
# in %.17g: equal text = equal double), on the final val_loss/val_bpb (live and EMA weights), and
# that the final checkpoints of A1 and B hold the same bytes after the header (params, Muon
# momentum, Adam moments, EMA, loader state; the header differs only in elapsed time).
# The lr schedule must be step-based for this: MAX_WALLCLOCK_SECONDS=0 makes lr_multiplier place
# the warmdown by ITERATIONS (optim/schedule.cpp); with a wall-clock cap it follows the measured
# elapsed time, which differs between runs. WARMDOWN_ITERS=K/2 puts the resume point at the
# warmdown's start and the Muon momentum is still warming up, so both schedules cross it.
#   bench/resume_check.sh BINDIR DATA_DIR TOKENIZER [OUTDIR]     (BINDIR holds `train`)
# Knobs (env): K (20 steps), TBT (65536 tokens/step), MBS (8 sequences per micro-batch), SEQ (4096).
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: bench/resume_check.sh BINDIR DATA_DIR TOKENIZER [OUTDIR]" >&2; exit 2; }
BIN=$1/train DATA=$2 TOK=$3 OUT=${4:-/tmp/resume_check}
[ -x "$BIN" ] || { echo "resume_check: no executable $BIN" >&2; exit 2; }
K=${K:-20}; H=$((K / 2))
mkdir -p "$OUT"; rm -f "$OUT"/*.csv "$OUT"/*.bin "$OUT"/*.log
export DATA_PATH=$DATA TOKENIZER_PATH=$TOK ITERATIONS=$K MAX_WALLCLOCK_SECONDS=0 WARMDOWN_ITERS=$H WARMUP_STEPS=2 \
       VAL_LOSS_EVERY=0 TRAIN_BATCH_TOKENS=${TBT:-65536} MICRO_BATCH_SEQS=${MBS:-8} TRAIN_SEQ_LEN=${SEQ:-4096} SEED=1337
fail=0
run() {  # name, train flags...
    local name=$1; shift
    timeout 120 "$BIN" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || { echo "resume_check: run $name exited $rc:"; tail -5 "$OUT/$name.log"; fail=1; }
}
run A1 --csv "$OUT/A1.csv" --save "$OUT/A1.bin" --save-every "$H"
run A2 --csv "$OUT/A2.csv"
run B1 --csv "$OUT/B.csv" --save "$OUT/B.bin" --stop-at "$H"
run B2 --csv "$OUT/B.csv" --save "$OUT/B.bin" --resume "$OUT/B.bin"
[ $fail -eq 0 ] || { echo "resume_check: FAIL (a run failed)"; exit 1; }

train_rows() { grep -v '^#' "$1" | awk -F, 'NR > 1 && $2 != "" { print $1 "," $2 "," $3 }'; }
final_val() { grep -v '^#' "$1" | awk -F, -v k=$K 'NR > 1 && $2 == "" && $1 == k { print $1 "," $7 "," $8 }'; }
same() {  # label, file a, file b, extractor
    local a b
    a=$($4 "$2"); b=$($4 "$3")
    local n=$(echo "$a" | grep -c .)
    if [ -n "$a" ] && [ "$a" == "$b" ]; then echo "  ok   $1: $n rows identical"
    else echo "  FAIL $1:"; diff <(echo "$a") <(echo "$b") | head -8; fail=1; fi
}
echo "resume_check: K=$K steps, resume at $H, $TRAIN_BATCH_TOKENS tokens/step, micro-batch $MICRO_BATCH_SEQS x $TRAIN_SEQ_LEN"
same "A1 vs A2 train_loss,lr_mult per step" "$OUT/A1.csv" "$OUT/A2.csv" train_rows
same "A1 vs A2 final val (live, EMA)" "$OUT/A1.csv" "$OUT/A2.csv" final_val
same "A1 vs resumed B train_loss,lr_mult per step" "$OUT/A1.csv" "$OUT/B.csv" train_rows
same "A1 vs resumed B final val (live, EMA)" "$OUT/A1.csv" "$OUT/B.csv" final_val
[ "$(train_rows "$OUT/B.csv" | wc -l)" -eq "$K" ] || { echo "  FAIL B.csv does not have $K step rows"; fail=1; }
if cmp -s <(tail -c +1025 "$OUT/A1.bin") <(tail -c +1025 "$OUT/B.bin"); then
    echo "  ok   A1 vs B final checkpoint payload identical ($(stat -c %s "$OUT/A1.bin") bytes)"
else echo "  FAIL A1 vs B final checkpoint payloads differ"; fail=1; fi
grep -h "^resumed:" "$OUT/B2.log" | sed 's/^/  /'
train_rows "$OUT/A1.csv" | sed -n "1p;${H}p;$((H + 1))p;${K}p" | sed 's/^/  A1 step,loss,lr_mult: /'
[ $fail -eq 0 ] && echo "resume_check: PASS" || echo "resume_check: FAIL"
exit $fail
