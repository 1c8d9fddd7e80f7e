#!/bin/bash
# Side by side, one run, same GPU: our CUDA scan (bench/scan_bench) and upstream's Triton kernels
# (bench/scan_triton.py, with the upstream files under $MAMBA_UPSTREAM; fetched, never committed).
# Usage: bench/scan.sh [path-to-scan_bench-binary]
# Environment: TRITON_PIN=1 runs upstream's kernels on the configs its autotuner picked on an H100
# (listed in scan_triton.py; full autotuning takes ~5 minutes), TRITON_TIMEOUT (s, default 420).
set -e -o pipefail
BIN=${1:-build/bench/scan_bench}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader || true
$BIN 16 4096
PYTHONUNBUFFERED=1 timeout ${TRITON_TIMEOUT:-420} python3 "$(dirname "$0")/scan_triton.py" || echo "triton bench failed or timed out"
$BIN 16 4096
