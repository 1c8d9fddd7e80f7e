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

# TRITON_PIN=1: give each autotuned kernel only the config its autotuner picked on an H100 in the
# 2026-11-23 session-4 run (full autotuning takes ~5 minutes of device time per fresh machine)
PICKED = {"mamba3_siso_fwd_kernel": ({}, 4, 3, 256), "mamba3_siso_bwd_kernel_dzdo": ({"CHUNK_SIZE": 64}, 4, 2, 128),
          "mamba3_siso_bwd_kernel_dqkv": ({}, 4, 2, None), "mamba3_siso_bwd_kernel_rotary_bias_angles": ({}, 4, 2, None),
          "mamba3_siso_bwd_kernel_ddt_dtrap_dinput_states": ({"CHUNK_SIZE": 256}, 4, 3, 128),
          "angle_dt_fwd_kernel": ({}, 8, 1, None), "angle_dt_bwd_kernel": ({}, 8, 2, None)}
def autotuned():
    for name, mod in list(sys.modules.items()):
        if name.startswith("mamba_ssm.ops.triton.mamba3"):
            for k, obj in vars(mod).items():
                if isinstance(obj, triton.runtime.autotuner.Autotuner):
                    yield k, obj
if os.environ.get("TRITON_PIN") == "1":
    for k, obj in autotuned():
        kw, w, st, r = PICKED[k]
        obj.configs = [c for c in obj.configs if c.kwargs == kw and c.num_warps == w and c.num_stages == st
                       and getattr(c, "maxnreg", None) == r]
        assert len(obj.configs) == 1, k
tf = triton.testing.do_bench(fwd_nograd, warmup=200, rep=1000, return_mode="median")
# grad_to_none: each rep starts without .grad (else autograd adds every gradient into the last one,
# ~0.8 GB of extra traffic for v and z alone, which is not the scan's work)
leaves = [Q, K, V, Z, DT, ADT, Trap, Angles, qb, kb, D]
tfb = triton.testing.do_bench(fwdbwd, warmup=200, rep=1000, grad_to_none=leaves, return_mode="median")
# the configs upstream's autotuner picked on this GPU (they move between machines: notes/scan.md)
for k, obj in autotuned():
    if getattr(obj, "best_config", None):
        print(f"autotuned {k}: {obj.best_config}")
print(f"triton B {B} T {T} H {H}: forward {tf:.3f} ms  forward+backward {tfb:.3f} ms  ({torch.cuda.get_device_name()})")

# The GPU's work alone: do_bench's figure is wall time, which includes the host's launches (~30 per
# forward+backward through autograd and Triton's launcher) wherever the GPU outruns them. Sum the
# device durations of every kernel a rep runs (torch.profiler / CUPTI), per kernel name.
def kernels_alone(fn, reps=20):
    from torch.profiler import profile, ProfilerActivity
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            for x in leaves:
                x.grad = None
            fn()
        torch.cuda.synchronize()
    per = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            t = getattr(e, "device_time", None)
            t = e.cuda_time if t is None else t  # older torch
            per[e.name] = per.get(e.name, 0.0) + t / 1e3 / reps  # us -> ms per rep
    return sum(per.values()), per
kf, _ = kernels_alone(fwd_nograd)
kfb, per = kernels_alone(fwdbwd)
print(f"triton kernels alone: forward {kf:.3f} ms  forward+backward {kfb:.3f} ms")
for name, ms in sorted(per.items(), key=lambda x: -x[1])[:12]:
    print(f"  {ms:7.3f} ms  {name[:90]}")
