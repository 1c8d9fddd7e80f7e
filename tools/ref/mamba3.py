"""Mamba-3 SISO mixer in plain PyTorch, written from the math of spec/mamba3.md (§2.3, §3.1, §3.2).

The recurrent (per-step) form: slow but plainly the paper's exponential-trapezoidal rule, so
autograd gives an independent backward to check the hand-derived CUDA/C++ one against.
Parameters carry model/params.h's MAMBA_TENSORS names AND shapes (in_proj (R, C), out_proj (C, DI),
dt_bias (1, H), B_bias / C_bias (H, N), B_norm_w / C_norm_w (1, N), D (1, H)), so a state_dict maps
one to one onto the C++ parameter arena. No bf16 anywhere: everything runs in the parameters' dtype.

Used two ways:
  - the hook of tools/ref/model.py: add_params(block, cfg) and forward(block, x, cfg);
  - standalone: Mamba3(cfg)(u, states) -> (out, final states).
`cfg` is a tools/ref/model.py Config (or anything with its Mamba-3 fields).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NORM_EPS = 1e-5  # B/C RMSNorm eps (upstream's RMSNorm default), not the model's norm_eps
STATES = ("angle", "ssm", "k", "v")


class Dims:
    """Derived sizes, the same formulas as model/config.h's methods."""

    def __init__(self, cfg):
        self.C = cfg.model_dim
        self.N, self.P, self.G = cfg.d_state, cfg.ssm_headdim, cfg.ssm_ngroups
        self.DI = cfg.expand * cfg.model_dim
        self.H = self.DI // self.P
        self.S = (int(self.N * cfg.rope_fraction) // 2 * 2) // 2
        assert self.S > 0 and self.H % self.G == 0 and self.DI % self.P == 0
        # in_proj rows, in this order: z | x | B | C | dd_dt | dd_A | trap | angles
        self.split = [self.DI, self.DI, self.G * self.N, self.G * self.N, self.H, self.H, self.H, self.S]
        self.R = sum(self.split)


def a_activation(x, act):
    """softplus (the seed) or heavy_tail(x) = 1+x (x >= 0), 1/(1-x) (x < 0)."""
    if act == "softplus":
        return F.softplus(x)
    if act == "heavytail":
        return torch.where(x >= 0, 1 + x, 1 / (1 - torch.clamp(x, max=0)))
    raise ValueError(f"unknown A activation {act!r}")


def rotate(x, phi):
    """Interleaved RoPE on the first 2S dims: pairs (2i, 2i+1) turned by phi[..., i]; rest unchanged.
    x (..., N), phi (..., S)."""
    S = phi.shape[-1]
    x0, x1 = x[..., 0:2 * S:2], x[..., 1:2 * S:2]
    c, s = torch.cos(phi), torch.sin(phi)
    rot = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2)
    return torch.cat([rot, x[..., 2 * S:]], dim=-1)


def add_params(mod, cfg):
    """Register the Mamba-3 parameters on `mod` with spec §2.2's init."""
    d = Dims(cfg)
    bound_in, bound_out = 1 / math.sqrt(d.C), 1 / math.sqrt(d.DI)  # nn.Linear default
    mod.in_proj = nn.Parameter(torch.empty(d.R, d.C).uniform_(-bound_in, bound_in))
    mod.out_proj = nn.Parameter(torch.empty(d.C, d.DI).uniform_(-bound_out, bound_out))
    # dt log-uniform in [dt_min, dt_max], floored, stored as its inverse softplus
    dt_min, dt_max = getattr(cfg, "dt_min", 1e-3), getattr(cfg, "dt_max", 1e-1)
    dt = torch.exp(torch.rand(1, d.H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = torch.clamp(dt, min=getattr(cfg, "dt_init_floor", 1e-4))
    mod.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
    mod.B_bias = nn.Parameter(torch.ones(d.H, d.N))
    mod.C_bias = nn.Parameter(torch.ones(d.H, d.N))
    mod.B_norm_w = nn.Parameter(torch.ones(1, d.N))
    mod.C_norm_w = nn.Parameter(torch.ones(1, d.N))
    mod.D = nn.Parameter(torch.ones(1, d.H))


def forward_with_states(mod, u, cfg, states=None):
    """u (b, l, C). states: None or (angle (b,H,S), ssm (b,H,P,N), k (b,H,N), v (b,H,P)).
    Returns out (b, l, C) and the final states (same four; the angle reduced mod 2*pi)."""
    d = Dims(cfg)
    b, l, _ = u.shape
    H, P, N, G, S = d.H, d.P, d.N, d.G, d.S
    z, x, Bm, Cm, dd_dt, dd_A, trap, theta = torch.split(u @ mod.in_proj.t(), d.split, dim=-1)
    z, x = z.reshape(b, l, H, P), x.reshape(b, l, H, P)

    def rms(t, w):
        t = t.reshape(b, l, G, N)
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + NORM_EPS) * w.reshape(N)

    Bm, Cm = rms(Bm, mod.B_norm_w), rms(Cm, mod.C_norm_w)
    A = -torch.clamp(a_activation(dd_A, cfg.a_act), min=cfg.a_floor)  # (b, l, H)
    dt = F.softplus(dd_dt + mod.dt_bias.reshape(H))
    alpha = torch.exp(A * dt)
    lam = torch.sigmoid(trap)
    # head h reads group h // (H/G); the biases are per head, added before the rotation
    qb = Cm.repeat_interleave(H // G, dim=2) + mod.C_bias
    kb = Bm.repeat_interleave(H // G, dim=2) + mod.B_bias
    # rotary angles: pi tanh(theta) (shared by heads) times the head's dt, accumulated
    omega = math.pi * torch.tanh(theta)[:, :, None, :] * dt[..., None]  # (b, l, H, S)
    phi0 = states[0] if states is not None else torch.zeros(b, H, S, dtype=u.dtype, device=u.device)
    phi = phi0[:, None] + torch.cumsum(omega, dim=1)
    q, k = rotate(qb, phi), rotate(kb, phi)

    if states is not None:
        h_state, k_prev, v_prev = states[1], states[2], states[3]
    else:
        h_state = u.new_zeros(b, H, P, N)
        k_prev, v_prev = u.new_zeros(b, H, N), u.new_zeros(b, H, P)
    Dh = mod.D.reshape(H)
    ys = []
    for t in range(l):
        # H_t = alpha_t H_{t-1} + (1-lam_t) dt_t alpha_t v_{t-1} k_{t-1}^T + lam_t dt_t v_t k_t^T
        a_t = alpha[:, t, :, None, None]
        g_t = (lam[:, t] * dt[:, t])[:, :, None, None]
        be_t = ((1 - lam[:, t]) * dt[:, t])[:, :, None, None] * a_t
        h_state = (a_t * h_state + be_t * v_prev[..., :, None] * k_prev[..., None, :]
                   + g_t * x[:, t, :, :, None] * k[:, t, :, None, :])
        ys.append(torch.einsum("bhpn,bhn->bhp", h_state, q[:, t]) + Dh[:, None] * x[:, t])
        k_prev, v_prev = k[:, t], x[:, t]
    y = torch.stack(ys, dim=1)  # (b, l, H, P), pre-gate
    o = y * F.silu(z)
    out = o.reshape(b, l, d.DI) @ mod.out_proj.t()
    fin = (torch.remainder(phi[:, -1], 2 * math.pi), h_state, k_prev, v_prev)
    return out, fin


def forward(mod, x, cfg):
    """The mixer hook of tools/ref/model.py: (B, T, C) -> (B, T, C), zero initial states."""
    return forward_with_states(mod, x, cfg)[0]


class Mamba3(nn.Module):
    """The layer alone: parameters as add_params registers them."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        add_params(self, cfg)

    def forward(self, u, states=None):
        return forward_with_states(self, u, self.cfg, states)
