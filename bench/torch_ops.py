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
N = B * T
FH = 1536
if "gemm" in flt or not flt:
    for name, M, Nn, K in [("attn_qkv fwd", N, 1024, C), ("mlp_fc fwd", N, FH, C), ("mlp_proj fwd", N, C, FH),
                           ("in_proj fwd", N, 2240, C), ("head fwd", N, V, C), ("head dW", V, C, N)]:
        a = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
        b = torch.randn(K, Nn, device=dev, dtype=torch.bfloat16)
        row(f"matmul {name} {M}x{Nn}x{K}", bench(lambda: a @ b), 2.0 * M * Nn * K)
        del a, b
if "elementwise" in flt or not flt:
    x = torch.randn(N, C, device=dev, requires_grad=True)
    g = torch.randn(N, C, device=dev)
    row("rms_norm fwd (f32)", bench(lambda: F.rms_norm(x, (C,))), 0, 2 * N * C * 4)
    def rn():
        y = F.rms_norm(x, (C,)); y.backward(g)
    row("rms_norm fwd+bwd (f32)", bench(rn), 0, 5 * N * C * 4)
    h = torch.randn(N, FH, device=dev, dtype=torch.bfloat16, requires_grad=True)
    gh = torch.randn(N, FH, device=dev, dtype=torch.bfloat16)
    row("leaky_relu(0.5)^2 fwd", bench(lambda: F.leaky_relu(h, 0.5).square()), 0, 4.0 * N * FH)
    def act():
        F.leaky_relu(h, 0.5).square().backward(gh)
    row("leaky_relu(0.5)^2 fwd+bwd", bench(act), 0, 10.0 * N * FH)
    wte = torch.randn(V, C, device=dev, requires_grad=True)
    tok = torch.randint(0, V, (N,), device=dev)
    row("embedding fwd", bench(lambda: F.embedding(tok, wte)), 0, 2 * N * C * 4)
    def emb():
        F.embedding(tok, wte).backward(g)
    row("embedding fwd+bwd", bench(emb), 0, 4 * N * C * 4)
    z = (5 * torch.randn(N, V, device=dev, dtype=torch.bfloat16)).requires_grad_(True)
    def ce():
        s = 30 * torch.tanh(z.float() / 30)
        F.cross_entropy(s, tok).backward()
    row("softcap CE fwd+bwd (eager)", bench(ce), 0, 4.0 * N * V)
    try:
        cc = torch.compile(ce)
        row("softcap CE fwd+bwd (compile)", bench(cc), 0, 4.0 * N * V)
    except Exception as e:
        print("torch compile CE failed:", type(e).__name__, str(e)[:100])
