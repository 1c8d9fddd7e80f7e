#!/usr/bin/env bash
# Installs what a fresh Debian 12 box needs to build, test and make data.
# Idempotent: packages already present are skipped. apt packages only.
# The CUDA toolkit (nvcc, cuBLAS, NCCL) is expected at /usr/local/cuda or on PATH.
set -euo pipefail
pkgs=(build-essential doctest-dev liblzma-dev python3 python3-numpy python3-torch
      python3-sentencepiece sentencepiece python3-matplotlib dpkg-dev ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "deps: all ${#pkgs[@]} packages present"; exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
