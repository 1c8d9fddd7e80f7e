"""Fixtures for each CPU reference layer (model/*.h): seeded float32 inputs, PyTorch float64
autograd outputs and gradients. Each case backpropagates loss = sum(out * dout) for a stored
random dout (the loss layer backpropagates its own mean). Shapes include odd sizes."""
import torch

import model as M

EPS = 1.1920929e-07


def _rand(gen, *shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift).float()


def _grad_case(fn, inputs, grad_names, gen):
    """fn(**float64 inputs) -> dict of outputs. Returns {inputs, outputs, dout_<o>, d<input>}."""
    x64 = {n: (t.double().requires_grad_(n in grad_names) if t.is_floating_point() else t) for n, t in inputs.items()}
    outs = fn(**x64)
    res = dict(inputs)
    loss = 0
    for name, o in outs.items():
        w = _rand(gen, *o.shape)
        res[name] = o.detach()
        res["dout_" + name] = w
        loss = loss + (o * w.double()).sum()
    loss.backward()
    for n in grad_names:
        res["d" + n] = x64[n].grad
    return res


def cases():
    gen = torch.Generator().manual_seed(1234)

    for N, C, V in [(7, 5, 11), (18, 16, 64)]:
        tokens = torch.randint(0, V, (N,), generator=gen, dtype=torch.int32)
        tokens[1] = tokens[0]  # a repeated token: the scatter-add must sum
        res = _grad_case(lambda wte, tokens: {"out": wte[tokens.long()]},
                         {"wte": _rand(gen, V, C), "tokens": tokens}, ["wte"], gen)
        yield f"layer_embedding_{N}x{C}x{V}", res

    for N, C in [(5, 7), (6, 32), (1, 3)]:
        inp = _rand(gen, N, C, scale=2.0, shift=0.3)
        res = _grad_case(lambda inp: {"out": M.rms_norm(inp, EPS)}, {"inp": inp}, ["inp"], gen)
        res["rstd"] = torch.rsqrt(inp.double().pow(2).mean(-1) + EPS)
        yield f"layer_rmsnorm_{N}x{C}", res

    for N, IC, OC in [(5, 7, 3), (9, 16, 24)]:
        res = _grad_case(lambda inp, weight: {"out": inp @ weight.t()},
                         {"inp": _rand(gen, N, IC), "weight": _rand(gen, OC, IC, scale=0.3)}, ["inp", "weight"], gen)
        yield f"layer_linear_{N}x{IC}x{OC}", res

    for N, C, FH in [(5, 6, 18), (7, 8, 24)]:
        def mlp(inp, fc, proj):
            h = inp @ fc.t()
            a = M.mlp_act(h)
            return {"out": a @ proj.t()}
        res = _grad_case(mlp, {"inp": _rand(gen, N, C), "fc": _rand(gen, FH, C, scale=0.4),
                               "proj": _rand(gen, C, FH, scale=0.2)}, ["inp", "fc", "proj"], gen)
        yield f"layer_mlp_{N}x{C}x{FH}", res

    for N, V in [(5, 11), (8, 64)]:
        logits = _rand(gen, N, V, scale=25.0)  # large: the softcap (30) bends them
        targets = torch.randint(0, V, (N,), generator=gen, dtype=torch.int32)
        z = logits.double().requires_grad_(True)
        s = 30.0 * torch.tanh(z / 30.0)
        losses = torch.nn.functional.cross_entropy(s, targets.long(), reduction="none")
        loss = losses.mean()
        loss.backward()
        yield f"layer_loss_{N}x{V}", {"logits": logits, "targets": targets, "losses": losses.detach(),
                                      "loss": loss.detach().reshape(1).numpy(), "dlogits": z.grad}

    for B, T, NH, NKV, HD in [(1, 5, 2, 1, 4), (2, 7, 4, 2, 6), (2, 9, 6, 3, 8)]:
        cfg = M.Config(model_dim=NH * HD, num_heads=NH, num_kv_heads=NKV, norm_eps=EPS, rope_base=10000.0)
        dims = torch.tensor([B, T, NH, NKV, HD], dtype=torch.int32)

        def prep(qkv, q_gain):
            q, k, v = M.attn_qkv_prep(qkv, q_gain, cfg)
            return {"q": q, "k": k, "v": v}
        res = _grad_case(prep, {"qkv": _rand(gen, B, T, cfg.qkv_rows(), scale=1.5),
                                "q_gain": _rand(gen, NH, scale=0.3, shift=1.5)}, ["qkv", "q_gain"], gen)
        res["dims"] = dims
        yield f"layer_attn_prep_{B}x{T}x{NH}x{NKV}x{HD}", res

        res = _grad_case(lambda q, k, v: {"y": M.causal_attention(q, k, v)},
                         {"q": _rand(gen, B, T, NH, HD, scale=1.5), "k": _rand(gen, B, T, NKV, HD, scale=1.5),
                          "v": _rand(gen, B, T, NKV, HD)}, ["q", "k", "v"], gen)
        q, k = res["q"].double(), res["k"].double().repeat_interleave(NH // NKV, dim=2)
        s = torch.einsum("bihd,bjhd->bhij", q, k) / HD ** 0.5
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        res["lse"] = torch.logsumexp(s, dim=-1)  # (B, NH, T)
        res["dims"] = dims
        yield f"layer_attention_{B}x{T}x{NH}x{NKV}x{HD}", res

    for N, C in [(5, 7), (4, 16)]:
        res = _grad_case(lambda x, x0, mix: {"out": mix[0] * x + mix[1] * x0},
                         {"x": _rand(gen, N, C), "x0": _rand(gen, N, C), "mix": _rand(gen, 2, C, shift=0.5)},
                         ["x", "x0", "mix"], gen)
        yield f"layer_resid_mix_{N}x{C}", res
        res = _grad_case(lambda x, y, scale: {"out": x + scale * y},
                         {"x": _rand(gen, N, C), "y": _rand(gen, N, C), "scale": _rand(gen, C, shift=1.0)},
                         ["x", "y", "scale"], gen)
        yield f"layer_scale_add_{N}x{C}", res
