"""Fixtures for tests/test_mamba3.cpp: the Mamba-3 layer (tools/ref/mamba3.py) on seeded random
inputs and parameters, float64 autograd from float32-stored values.

Each case holds: cfg (float64: d_model, d_state, expand, headdim, ngroups, chunk, rope_fraction,
a_act (0 softplus, 1 heavytail), B, T, has_init), the input, every parameter, the initial states
(if any), the loss weights (loss = sum(out * w_out) + sum over final states of state * w_<state>),
and the outputs (out, fin_*) and gradients (g_<name>) PyTorch computes (stored as float64).
Model cases (mamba3_model_*): the whole hybrid (tools/ref/model.py with tools/ref/mamba3.py as its
mixer) at two small configs: cfg, tokens, targets, raw logits, mean loss, every parameter under its
param_specs name and its gradient as "grad.<name>".
"""
import math

import numpy as np
import torch

import model as M
from mamba3 import Mamba3, STATES
from ref_model import random_params as model_random_params

PARAMS = ["in_proj", "out_proj", "dt_bias", "B_bias", "C_bias", "B_norm_w", "C_norm_w", "D"]


def f64(x):
    """Outputs and gradients are stored in float64 so the C++ double run can be held tightly."""
    return x.detach().numpy().astype(np.float64)


def mamba_random(mod, rn, d_model, DI):
    """Random Mamba-3 parameters around their init (not the init: every path must carry a gradient),
    float32 values, params.h shapes."""
    H, N = mod.D.shape[1], mod.B_bias.shape[1]
    p = {"in_proj": rn(*mod.in_proj.shape, s=d_model ** -0.5), "out_proj": rn(*mod.out_proj.shape, s=DI ** -0.5),
         "dt_bias": rn(1, H, s=0.5, m=-2.0), "B_bias": rn(H, N, s=0.3, m=1.0), "C_bias": rn(H, N, s=0.3, m=1.0),
         "B_norm_w": rn(1, N, s=0.3, m=1.0), "C_norm_w": rn(1, N, s=0.3, m=1.0), "D": rn(1, H, s=0.3, m=1.0)}
    with torch.no_grad():
        for k, v in p.items():
            getattr(mod, k).copy_(v.double())
    return p


def layer_case(name, seed, d_model, d_state, expand, headdim, ngroups, chunk, rope_fraction, a_act,
               B, T, has_init, extreme=False):
    gen = torch.Generator().manual_seed(seed)

    def rn(*shape, s=1.0, m=0.0):
        return (m + s * torch.randn(*shape, generator=gen)).float()

    cfg = M.Config(model_dim=d_model, d_state=d_state, expand=expand, ssm_headdim=headdim, ssm_ngroups=ngroups,
                   chunk_size=chunk, rope_fraction=rope_fraction, a_act=a_act)
    torch.manual_seed(seed)
    mod = Mamba3(cfg).double()
    H, P, N, DI = mod.D.shape[1], headdim, d_state, expand * d_model
    R = mod.in_proj.shape[0]
    S = R - (2 * DI + 2 * ngroups * N + 3 * H)
    p = mamba_random(mod, rn, d_model, DI)
    if extreme:
        # large |dd_A| (A at the floor and A ~ -100), dt near 0 and large, theta deep in tanh's tails
        w = p["in_proj"].clone()
        o_dt, o_A = 2 * DI + 2 * ngroups * N, 2 * DI + 2 * ngroups * N + H
        w[o_A:o_A + H] *= 150.0
        w[o_dt:o_dt + H] *= 40.0
        w[R - S:R] *= 100.0
        p["in_proj"] = w
        p["dt_bias"] = torch.tensor([[-25.0, -8.0, 3.0, 20.0] * (H // 4) + [0.0] * (H % 4)])
        with torch.no_grad():
            mod.in_proj.copy_(p["in_proj"].double())
            mod.dt_bias.copy_(p["dt_bias"].double())
    inp = rn(B, T, d_model)
    st = {"angle": rn(B, H, S, s=2.0), "ssm": rn(B, H, P, N, s=0.5), "k": rn(B, H, N), "v": rn(B, H, P)}
    w_out = rn(B, T, d_model)
    w_st = {"angle": rn(B, H, S), "ssm": rn(B, H, P, N), "k": rn(B, H, N), "v": rn(B, H, P)}

    def run(chunked):
        mod.zero_grad()
        x = inp.double().requires_grad_(True)
        s64 = [st[k].double().requires_grad_(True) for k in STATES] if has_init else None
        out, fin = mod(x, s64, chunked=chunked)
        loss = (out * w_out.double()).sum() + sum((f * w_st[k].double()).sum() for k, f in zip(STATES, fin))
        loss.backward()
        return x, s64, out, fin

    # the PyTorch chunked form (the reference trainer's fast path) must agree with the recurrence
    x, s64, out, fin = run(True)
    chunked = [out, x.grad] + list(fin) + [getattr(mod, k).grad.clone() for k in PARAMS] + (
        [s.grad for s in s64] if has_init else [])
    x, s64, out, fin = run(False)
    recurrent = [out, x.grad] + list(fin) + [getattr(mod, k).grad for k in PARAMS] + (
        [s.grad for s in s64] if has_init else [])
    for i, (a, b) in enumerate(zip(chunked, recurrent)):
        err = float((a - b).abs().max() / b.abs().max().clamp(min=1e-300))
        if i == 2:  # final angle: compare on the circle
            err = float(torch.remainder(a - b + math.pi, 2 * math.pi).sub(math.pi).abs().max())
        assert err < 1e-9, f"{name}: PyTorch chunked != recurrent (tensor {i}, rel err {err:.2e})"

    t = {"cfg": np.array([d_model, d_state, expand, headdim, ngroups, chunk, rope_fraction,
                          0.0 if a_act == "softplus" else 1.0, B, T, float(has_init)], dtype=np.float64),
         "inp": inp, "w_out": w_out, "out": f64(out), "g_inp": f64(x.grad)}
    for k in PARAMS:
        t[k] = p[k]
        t["g_" + k] = f64(getattr(mod, k).grad)
    for i, k in enumerate(STATES):
        t["w_" + k] = w_st[k]
        t["fin_" + k] = f64(fin[i])
        if has_init:
            t["init_" + k] = st[k]
            t["g_init_" + k] = f64(s64[i].grad)
    return name, t


# (name, seed, d_model, d_state, expand, headdim, ngroups, chunk, rope_fraction, a_act, B, T, has_init, extreme)
LAYER_CASES = [
    ("mamba3_layer_gqa_T11", 1, 16, 8, 2, 8, 2, 4, 0.5, "softplus", 2, 11, True, False),
    ("mamba3_layer_heavytail_T3", 2, 16, 8, 2, 8, 1, 4, 0.5, "heavytail", 2, 3, False, False),
    ("mamba3_layer_T1", 3, 16, 8, 2, 8, 1, 4, 0.5, "softplus", 1, 1, True, False),
    ("mamba3_layer_rope1_T9", 4, 32, 16, 2, 16, 1, 8, 1.0, "softplus", 2, 9, True, False),
    ("mamba3_layer_extreme_softplus", 5, 16, 8, 2, 4, 1, 4, 0.5, "softplus", 2, 10, True, True),
    ("mamba3_layer_extreme_heavytail", 6, 16, 8, 2, 4, 2, 4, 1.0, "heavytail", 2, 10, True, True),
]

# Whole hybrid models (tools/ref/model.py with this file's mixer): name, Config fields, B, T
MODEL_CASES = [
    ("mamba3_model_v64_d32_l3", dict(vocab_size=64, model_dim=32, num_layers=3, num_attn_layers=1, num_heads=4,
                                     num_kv_heads=2, mlp_mult=3, d_state=8, expand=2, ssm_headdim=8, ssm_ngroups=1,
                                     chunk_size=4, rope_fraction=0.5, a_act="softplus"), 2, 11),
    ("mamba3_model_v96_d48_l5", dict(vocab_size=96, model_dim=48, num_layers=5, num_attn_layers=2, num_heads=6,
                                     num_kv_heads=3, mlp_mult=2, d_state=16, expand=2, ssm_headdim=16, ssm_ngroups=2,
                                     chunk_size=8, rope_fraction=1.0, a_act="heavytail"), 2, 13),
]
MODEL_CFG_FIELDS = ["vocab_size", "model_dim", "num_layers", "num_attn_layers", "num_heads", "num_kv_heads",
                    "mlp_mult", "d_state", "expand", "ssm_headdim", "ssm_ngroups", "chunk_size", "rope_fraction"]


def model_case(name, fields, B, T, seed):
    gen = torch.Generator().manual_seed(seed)

    def rn(*shape, s=1.0, m=0.0):
        return (m + s * torch.randn(*shape, generator=gen)).float()

    cfg = M.Config(**fields)
    torch.manual_seed(seed)
    gpt = M.GPT(cfg).double()
    model_random_params(gpt, gen)
    for blk in gpt.blocks:
        if not blk.attn:
            mamba_random(blk, rn, cfg.model_dim, cfg.expand * cfg.model_dim)
    tokens = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int32)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int32)
    logits = gpt.logits(tokens)
    loss = M.softcap_ce(logits, targets, cfg.logit_softcap)
    loss.backward()
    t = {"cfg": np.array([float(getattr(cfg, f)) for f in MODEL_CFG_FIELDS]
                         + [0.0 if cfg.a_act == "softplus" else 1.0, B, T], dtype=np.float64),
         "tokens": tokens, "targets": targets, "logits": f64(logits), "loss": f64(loss.reshape(1))}
    for pname, p in gpt.named_parameters():
        t[pname] = p.detach().float()
        t["grad." + pname] = f64(p.grad)
    return name, t


def cases():
    for c in LAYER_CASES:
        yield layer_case(*c[:13], extreme=c[13])
    for i, (name, fields, B, T) in enumerate(MODEL_CASES):
        yield model_case(name, fields, B, T, 100 + i)
