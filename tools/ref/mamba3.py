"""Mamba-3 SISO mixer in plain PyTorch, written from the math of spec/mamba3.md (§2.3, §3.1, §3.2).

The recurrent (per-step) form: slow but plainly the paper's exponential-trapezoidal rule, so
autograd gives an independent backward to check the hand-derived CUDA/C++ one against.
Parameter names follow model/params.h MAMBA_TENSORS (in_proj, out_proj, dt_bias, B_bias, C_bias,
B_norm_w, C_norm_w, D); shapes are flat where params.h has a leading 1 (dt_bias (H,), D (H,),
norm weights (N,)). No bf16 anywhere: everything runs in the parameters' dtype.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NORM_EPS = 1e-5  # B/C RMSNorm eps


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
    r0, r1 = x0 * c - x1 * s, x0 * s + x1 * c
    rot = torch.stack([r0, r1], dim=-1).flatten(-2)
    return torch.cat([rot, x[..., 2 * S:]], dim=-1)


class Mamba3(nn.Module):
    def __init__(self, d_model, d_state=64, expand=2, headdim=64, ngroups=1, rope_fraction=0.5,
                 a_act="softplus", a_floor=1e-4, dt_min=1e-3, dt_max=1e-1, dt_init_floor=1e-4,
                 chunk_size=64):
        super().__init__()
        self.d_model, self.N, self.P, self.G = d_model, d_state, headdim, ngroups
        self.d_inner = expand * d_model
        self.H = self.d_inner // headdim
        self.S = (int(d_state * rope_fraction) // 2 * 2) // 2
        assert self.S > 0 and self.H % self.G == 0
        self.a_act, self.a_floor, self.chunk_size = a_act, a_floor, chunk_size
        # z | x | B | C | dd_dt | dd_A | trap | angles
        self.split = [self.d_inner, self.d_inner, self.G * self.N, self.G * self.N, self.H, self.H, self.H, self.S]
        self.in_proj = nn.Linear(d_model, sum(self.split), bias=False)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # dt log-uniform in [dt_min, dt_max], floored, stored as its inverse softplus
        dt = torch.exp(torch.rand(self.H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = torch.clamp(dt, min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.B_bias = nn.Parameter(torch.ones(self.H, self.N))
        self.C_bias = nn.Parameter(torch.ones(self.H, self.N))
        self.B_norm_w = nn.Parameter(torch.ones(self.N))
        self.C_norm_w = nn.Parameter(torch.ones(self.N))
        self.D = nn.Parameter(torch.ones(self.H))

    def forward(self, u, states=None):
        """u (b, l, d_model). states: None or (angle (b,H,S), ssm (b,H,P,N), k (b,H,N), v (b,H,P)).
        Returns out (b, l, d_model) and the final states (same four; angle reduced mod 2*pi)."""
        b, l, _ = u.shape
        H, P, N, G, S = self.H, self.P, self.N, self.G, self.S
        z, x, Bm, Cm, dd_dt, dd_A, trap, theta = torch.split(self.in_proj(u), self.split, dim=-1)
        z, x = z.reshape(b, l, H, P), x.reshape(b, l, H, P)

        def rms(t, w):
            t = t.reshape(b, l, G, N)
            return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + NORM_EPS) * w

        Bm, Cm = rms(Bm, self.B_norm_w), rms(Cm, self.C_norm_w)
        A = -torch.clamp(a_activation(dd_A, self.a_act), min=self.a_floor)  # (b, l, H)
        dt = F.softplus(dd_dt + self.dt_bias)
        alpha = torch.exp(A * dt)
        lam = torch.sigmoid(trap)
        # head h reads group h // (H/G); the biases are per head, added before the rotation
        qb = Cm.repeat_interleave(H // G, dim=2) + self.C_bias
        kb = Bm.repeat_interleave(H // G, dim=2) + self.B_bias
        # rotary angles: pi tanh(theta) (shared by heads) times the head's dt, accumulated
        omega = math.pi * torch.tanh(theta)[:, :, None, :] * dt[..., None]  # (b, l, H, S)
        phi0 = states[0] if states is not None else torch.zeros(b, H, S, dtype=u.dtype)
        phi = phi0[:, None] + torch.cumsum(omega, dim=1)
        q, k = rotate(qb, phi), rotate(kb, phi)

        if states is not None:
            h_state, k_prev, v_prev = states[1], states[2], states[3]
        else:
            h_state = torch.zeros(b, H, P, N, dtype=u.dtype)
            k_prev, v_prev = torch.zeros(b, H, N, dtype=u.dtype), torch.zeros(b, H, P, dtype=u.dtype)
        ys = []
        for t in range(l):
            # H_t = alpha_t H_{t-1} + (1-lam_t) dt_t alpha_t v_{t-1} k_{t-1}^T + lam_t dt_t v_t k_t^T
            a_t, g_t = alpha[:, t, :, None, None], (lam[:, t] * dt[:, t])[:, :, None, None]
            be_t = ((1 - lam[:, t]) * dt[:, t])[:, :, None, None] * a_t
            h_state = (a_t * h_state + be_t * v_prev[..., :, None] * k_prev[..., None, :]
                       + g_t * x[:, t, :, :, None] * k[:, t, :, None, :])
            ys.append(torch.einsum("bhpn,bhn->bhp", h_state, q[:, t]) + self.D[:, None] * x[:, t])
            k_prev, v_prev = k[:, t], x[:, t]
        y = torch.stack(ys, dim=1)  # (b, l, H, P)
        o = y * F.silu(z)
        out = self.out_proj(o.reshape(b, l, self.d_inner))
        fin = (torch.remainder(phi[:, -1], 2 * math.pi), h_state, k_prev, v_prev)
        return out, fin
