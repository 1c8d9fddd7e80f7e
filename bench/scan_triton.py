"""Upstream Triton Mamba-3 SISO scan (state-spaces/mamba, mamba_ssm/ops/triton/mamba3/) at the seed's
shape, forward and forward+backward, median of do_bench. The upstream files are NOT in this repo:
bench/scan.sh expects them under $MAMBA_UPSTREAM (fetched separately, never committed)."""
import os, sys, types
sys.path.insert(0, os.environ.get("MAMBA_UPSTREAM", ".xfer-scan/upstream"))
try:
    import einops  # noqa: F401  (imported, unused, by the upstream kernels)
except ImportError:
    sys.modules["einops"] = types.SimpleNamespace(rearrange=None, repeat=None)
import torch
import triton
from mamba_ssm.ops.triton.mamba3.mamba3_siso_combined import mamba3_siso_combined

B, T, H, G, N, P, S = int(os.environ.get("B", 16)), int(os.environ.get("T", 4096)), 16, 1, 64, 64, 16
dev = "cuda"
torch.manual_seed(0)
Q = torch.randn(B, T, G, N, device=dev, dtype=torch.bfloat16, requires_grad=True)
K = torch.randn(B, T, G, N, device=dev, dtype=torch.bfloat16, requires_grad=True)
V = torch.randn(B, T, H, P, device=dev, dtype=torch.bfloat16, requires_grad=True)
Z = torch.randn(B, T, H, P, device=dev, dtype=torch.bfloat16, requires_grad=True)
DT = (0.1 + 0.05 * torch.randn(B, H, T, device=dev)).abs().requires_grad_()
ADT = -(0.01 + 0.2 * torch.rand(B, H, T, device=dev)).requires_grad_()
Trap = torch.randn(B, H, T, device=dev, dtype=torch.bfloat16, requires_grad=True)
Ang = torch.randn(B, T, S, device=dev, dtype=torch.bfloat16)
Angles = Ang.unsqueeze(2).expand(B, T, H, S).detach().requires_grad_()
qb = (1 + 0.1 * torch.randn(H, N, device=dev)).requires_grad_()
kb = (1 + 0.1 * torch.randn(H, N, device=dev)).requires_grad_()
D = (1 + 0.1 * torch.randn(H, device=dev)).requires_grad_()
dout = torch.randn(B, T, H, P, device=dev, dtype=torch.bfloat16)

def fwd():
    return mamba3_siso_combined(Q, K, V, ADT, DT, Trap, qb, kb, Angles, D, Z, chunk_size=64, return_final_states=True)
def fwd_nograd():
    with torch.no_grad():
        return fwd()
def fwdbwd():
    out = fwd()[0]
    out.backward(dout)

tf = triton.testing.do_bench(fwd_nograd, warmup=200, rep=1000, return_mode="median")
tfb = triton.testing.do_bench(fwdbwd, warmup=200, rep=1000, return_mode="median")
print(f"triton B {B} T {T} H {H}: forward {tf:.3f} ms  forward+backward {tfb:.3f} ms  ({torch.cuda.get_device_name()})")
