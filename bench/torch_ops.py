"""PyTorch timings of the ops bench_gpu times, same shapes, same GPU, same run.
Median of CUDA-event timings after warm-up. Prints one line per op."""
import sys, torch, torch.nn.functional as F

def bench(fn, iters=30):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]

def row(name, ms, flops=0.0, bytes_=0.0):
    print(f"torch {name:<28} {ms:9.3f} ms {flops / ms * 1e-9:8.1f} TFLOP/s {bytes_ / ms * 1e-6:8.0f} GB/s")

flt = sys.argv[1] if len(sys.argv) > 1 else ""
dev = "cuda"
print("torch", torch.__version__, torch.cuda.get_device_name())
B, T, NH, NKV, HD, C, V = 16, 4096, 8, 4, 64, 512, 8192
if "gemm" in flt or not flt:
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    ms = bench(lambda: a @ b, 10)
    row("matmul 8192^3 bf16", ms, 2 * 8192**3)
if "attention" in flt or not flt:
    q = torch.randn(B, NH, T, HD, device=dev, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(B, NKV, T, HD, device=dev, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(B, NKV, T, HD, device=dev, dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(B, NH, T, HD, device=dev, dtype=torch.bfloat16)
    from torch.nn.attention import sdpa_kernel, SDPBackend
    fl = 4.0 * B * NH * T * T * HD / 2
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        try:
            with sdpa_kernel(backend):
                f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                ms_f = bench(lambda: f())
                def fb():
                    o = f()
                    o.backward(g)
                ms_fb = bench(fb)
            row(f"sdpa {name} fwd", ms_f, fl)
            row(f"sdpa {name} fwd+bwd", ms_fb, 3.5 * fl)
        except Exception as e:
            print(f"torch sdpa {name}: unavailable ({type(e).__name__}: {str(e)[:80]})")
