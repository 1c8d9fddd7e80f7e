"""Fixtures for tests/test_mamba3.cpp: the Mamba-3 layer (tools/ref/mamba3.py) on seeded random
inputs and parameters, float64 autograd from float32-stored values.

Each case holds: cfg (float64: d_model, d_state, expand, headdim, ngroups, chunk, rope_fraction,
a_act (0 softplus, 1 heavytail), B, T, has_init), the input, every parameter, the initial states
(if any), the loss weights (loss = sum(out * w_out) + sum over final states of state * w_<state>),
and the outputs (out, fin_*) and gradients (g_<name>) PyTorch computes (stored as float64).
"""
import math

import numpy as np
import torch

from mamba3 import Mamba3

PARAMS = ["in_proj", "out_proj", "dt_bias", "B_bias", "C_bias", "B_norm_w", "C_norm_w", "D"]
STATES = ["angle", "ssm", "k", "v"]


def f64(x):
    """Outputs and gradients are stored in float64 so the C++ double run can be held tightly."""
    return x.detach().numpy().astype(np.float64)


def tensor(mod, name):
    """The parameter tensor named as in model/params.h (in_proj/out_proj are nn.Linear weights)."""
    return getattr(mod, name).weight if name in ("in_proj", "out_proj") else getattr(mod, name)


def layer_case(name, seed, d_model, d_state, expand, headdim, ngroups, chunk, rope_fraction, a_act,
               B, T, has_init, extreme=False):
    gen = torch.Generator().manual_seed(seed)

    def rn(*shape, s=1.0, m=0.0):
        return (m + s * torch.randn(*shape, generator=gen)).float()

    torch.manual_seed(seed)
    mod = Mamba3(d_model, d_state, expand, headdim, ngroups, rope_fraction, a_act, chunk_size=chunk)
    H, P, N, S, DI, R = mod.H, mod.P, mod.N, mod.S, mod.d_inner, sum(mod.split)
    # random parameters (not the init: every path must carry a gradient), stored as float32
    p = {
        "in_proj": rn(R, d_model, s=d_model ** -0.5), "out_proj": rn(d_model, DI, s=DI ** -0.5),
        "dt_bias": rn(H, s=0.5, m=-2.0), "B_bias": rn(H, N, s=0.3, m=1.0), "C_bias": rn(H, N, s=0.3, m=1.0),
        "B_norm_w": rn(N, s=0.3, m=1.0), "C_norm_w": rn(N, s=0.3, m=1.0), "D": rn(H, s=0.3, m=1.0),
    }
    if extreme:
        # large |dd_A| (A at the floor and A ~ -100), dt near 0 and large, theta deep in tanh's tails
        w = p["in_proj"].clone()
        o_dt, o_A = 2 * DI + 2 * ngroups * N, 2 * DI + 2 * ngroups * N + H
        w[o_A:o_A + H] *= 150.0
        w[o_dt:o_dt + H] *= 40.0
        w[R - S:R] *= 100.0
        p["in_proj"] = w
        p["dt_bias"] = torch.tensor([-25.0, -8.0, 3.0, 20.0] * (H // 4) + [0.0] * (H % 4))
    inp = rn(B, T, d_model)
    st = {"angle": rn(B, H, S, s=2.0), "ssm": rn(B, H, P, N, s=0.5), "k": rn(B, H, N), "v": rn(B, H, P)}
    w_out = rn(B, T, d_model)
    w_st = {"angle": rn(B, H, S), "ssm": rn(B, H, P, N), "k": rn(B, H, N), "v": rn(B, H, P)}

    mod = mod.double()
    with torch.no_grad():
        for k, v in p.items():
            tensor(mod, k).copy_(v.double())
    x = inp.double().requires_grad_(True)
    s64 = [st[k].double().requires_grad_(True) for k in STATES] if has_init else None
    out, fin = mod(x, s64)
    loss = (out * w_out.double()).sum() + sum((f * w_st[k].double()).sum() for k, f in zip(STATES, fin))
    loss.backward()

    t = {"cfg": np.array([d_model, d_state, expand, headdim, ngroups, chunk, rope_fraction,
                          0.0 if a_act == "softplus" else 1.0, B, T, float(has_init)], dtype=np.float64),
         "inp": inp, "w_out": w_out, "out": f64(out), "g_inp": f64(x.grad)}
    for k in PARAMS:
        t[k] = p[k]
        t["g_" + k] = f64(tensor(mod, k).grad)
    for i, k in enumerate(STATES):
        t["w_" + k] = w_st[k]
        t["fin_" + k] = f64(fin[i])
        if has_init:
            t["init_" + k] = st[k]
            t["g_init_" + k] = f64(s64[i].grad)
    return name, t


# (name, seed, d_model, d_state, expand, headdim, ngroups, chunk, rope_fraction, a_act, B, T, has_init, extreme)
CASES = [
    ("mamba3_layer_gqa_T11", 1, 16, 8, 2, 8, 2, 4, 0.5, "softplus", 2, 11, True, False),
    ("mamba3_layer_heavytail_T3", 2, 16, 8, 2, 8, 1, 4, 0.5, "heavytail", 2, 3, False, False),
    ("mamba3_layer_T1", 3, 16, 8, 2, 8, 1, 4, 0.5, "softplus", 1, 1, True, False),
    ("mamba3_layer_rope1_T9", 4, 32, 16, 2, 16, 1, 8, 1.0, "softplus", 2, 9, True, False),
    ("mamba3_layer_extreme_softplus", 5, 16, 8, 2, 4, 1, 4, 0.5, "softplus", 2, 10, True, True),
    ("mamba3_layer_extreme_heavytail", 6, 16, 8, 2, 4, 2, 4, 1.0, "heavytail", 2, 10, True, True),
]


def cases():
    for c in CASES:
        yield layer_case(*c[:13], extreme=c[13])
