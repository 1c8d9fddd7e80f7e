#!/usr/bin/env bash
# Our trainer vs the PyTorch reference trainer at equal steps on val bpb (issue 6 item 7(c),
# notes/reftrain.md).
#   bash tools/ref/compare_bpb.sh XDIR OUTDIR STEPS
# XDIR holds: train, dump_run (built binaries), bpb_sp8192/ (tools/cut_dataset.py output: both
# sides train on its train shard and validate on its whole val shard), debian_8192_bpe.model,
# ref/ (a copy of tools/ref, if the checkout has not got compare_bpb's train_ref.py).
# Same init and batches on both sides (dump_run), seed model shape, T 1024, 32 sequences a step,
# EMA on (the seed's 0.997), late QAT off (the reference has none), step-based 30% warmdown.
# Reported, for the live (final) and EMA (final_ema) weights:
#   ours (train)        train's own final / final_ema lines (its GPU bf16 forward)
#   ours (PyTorch eval) train's checkpoint scored by train_ref.py's fp32 evaluator
#   reference fp32      train_ref.py, fp32, the same STEPS, scored by the same evaluator
#   reference bf16      the same with bf16 autocast + bf16 Newton-Schulz (REF_BF16=0 skips it)
# Verdict: max over live and EMA of |ours (train) - reference fp32| <= 0.005 bpb. Both evaluators
# must also agree on the scored token and byte counts (train's "eval mode=plain" line).
# Big files (dump, checkpoint, artifact) stay in $TMPDIR; OUTDIR gets the logs and compare_bpb.txt.
set -euo pipefail
X=$1
OUT=$2
STEPS=$3
REF=tools/ref
grep -q -- "--eval-ckpt" "$REF/train_ref.py" 2>/dev/null || REF=$X/ref
PY=${PYTHON:-python3}
T=${TMPDIR:-/tmp}/refbpb_cmp
BOUND=0.005
rm -rf "$T"
mkdir -p "$T/run" "$OUT"
DATA=$X/bpb_sp8192
TOK=$X/debian_8192_bpe.model
# eval_mode plain and RTN without quant_fit's retries: train's tail after the final validation
# (eval report, quantization, artifact) is not what is compared here, so keep it short
CFG="--data-path $DATA --tokenizer-path $TOK --vocab-size 8192
     --train-seq-len 1024 --eval-overlap 256 --micro-batch-seqs 16 --train-batch-tokens 32768
     --iterations $STEPS --warmdown-iters $((STEPS * 3 / 10)) --max-wallclock-seconds 0 --warmup-steps 0
     --val-loss-every 0 --seed 1337 --late-qat-threshold 0 --eval-mode plain --hessian-batches 0 --quant-fit 0
     ${CMP_EXTRA:-}"
EVAL="--val $DATA --tokenizer $TOK"
t0=$(date +%s)
stamp() { echo "compare_bpb: $1 ($(($(date +%s) - t0)) s)"; }

$X/dump_run --out "$T/run" --steps "$STEPS" $CFG
stamp "dumped $STEPS steps"
$X/train $CFG --csv "$OUT/train.csv" --save "$T/train.ckpt" --artifact "$T/ours.artifact" > "$OUT/train.log" 2>&1
stamp "train done"
"$PY" "$REF/train_ref.py" "$T/run" $EVAL --eval-ckpt "$T/train.ckpt" > "$OUT/ours_pteval.log"
stamp "train's checkpoint scored by the PyTorch evaluator"
"$PY" "$REF/train_ref.py" "$T/run" $EVAL --losses "$OUT/ref32.losses" > "$OUT/ref32.log"
stamp "reference fp32 done"
if [ "${REF_BF16:-1}" != 0 ]; then
    "$PY" "$REF/train_ref.py" "$T/run" $EVAL --bf16 --muon-bf16 --losses "$OUT/refbf16.losses" > "$OUT/refbf16.log"
    stamp "reference bf16 done"
fi

# bpb FILE LABEL: the val_bpb of a "LABEL val_loss X val_bpb Y" (train) or "ref LABEL ..." line
bpb() {
    [ -f "$1" ] || { echo "-"; return; }
    awk -v l="$2" '($1 == l && $2 == "val_loss") { v = $5 } ($1 == "ref" && $2 == l) { v = $6 }
                   END { print (v == "" ? "-" : v) }' "$1"
}
{
    echo "compare_bpb: $STEPS steps x $(awk '$1 == "train_batch_tokens" { print $3 }' "$T/run/run.txt") tokens;" \
         "val bpb over $DATA's val split"
    printf "%-22s %12s %12s\n" "" "final" "final_ema"
    printf "%-22s %12s %12s\n" "ours (train)" "$(bpb "$OUT/train.log" final)" "$(bpb "$OUT/train.log" final_ema)"
    printf "%-22s %12s %12s\n" "ours (PyTorch eval)" "$(bpb "$OUT/ours_pteval.log" ckpt)" "$(bpb "$OUT/ours_pteval.log" ckpt_ema)"
    printf "%-22s %12s %12s\n" "reference fp32" "$(bpb "$OUT/ref32.log" final)" "$(bpb "$OUT/ref32.log" final_ema)"
    printf "%-22s %12s %12s\n" "reference bf16" "$(bpb "$OUT/refbf16.log" final)" "$(bpb "$OUT/refbf16.log" final_ema)"
    # the scored set: train's plain eval line vs the reference evaluator's
    ours_set=$(awk '$1 == "eval" && $2 == "mode=plain" { print $8, $10; exit }' "$OUT/train.log")
    ref_set=$(awk '$1 == "ref" && $2 == "final" { print $8, $10; exit }' "$OUT/ref32.log")
    echo "scored tokens bytes: train $ours_set, reference $ref_set"
    awk -v a="$(bpb "$OUT/train.log" final)" -v b="$(bpb "$OUT/ref32.log" final)" \
        -v c="$(bpb "$OUT/train.log" final_ema)" -v d="$(bpb "$OUT/ref32.log" final_ema)" \
        -v same="$([ -n "$ours_set" ] && [ "$ours_set" = "$ref_set" ] && echo 1 || echo 0)" -v bound=$BOUND 'BEGIN {
        if (a == "-" || b == "-" || c == "-" || d == "-") { print "compare_bpb: FAIL (a bpb is missing: see the logs)"; exit 1 }
        D = a - b; D = D < 0 ? -D : D; E = c - d; E = E < 0 ? -E : E; if (E > D) D = E
        ok = D <= bound && same
        printf "compare_bpb: %s |ours - ref32| = %.6f (bound %s)%s\n", ok ? "ok" : "FAIL", D, bound,
               same ? "" : "; the scored tokens/bytes differ"
        exit !ok }'
} | tee "$OUT/compare_bpb.txt"
