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


def forward_with_states(mod, u, cfg, states=None, chunked=False):
    """u (b, l, C). states: None or (angle (b,H,S), ssm (b,H,P,N), k (b,H,N), v (b,H,P)).
    Returns out (b, l, C) and the final states (same four; the angle reduced mod 2*pi).
    chunked: the chunk-L form (fast) instead of the per-step recurrence (the fixtures' reference)."""
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
    step = _scan_chunked if chunked else _scan_recurrent
    y, h_state = step(q, k, qb, kb, x, A * dt, dt, lam, Dh, h_state, k_prev, v_prev, cfg.chunk_size)
    o = y * F.silu(z)  # y (b, l, H, P) is the pre-gate output
    out = o.reshape(b, l, d.DI) @ mod.out_proj.t()
    fin = (torch.remainder(phi[:, -1], 2 * math.pi), h_state, k[:, -1], x[:, -1])
    return out, fin


def _scan_recurrent(q, k, qb, kb, x, adt, dt, lam, Dh, h_state, k_prev, v_prev, L):
    """§3.2, one step at a time. q, k, qb, kb (b,l,H,N); x (b,l,H,P); adt, dt, lam (b,l,H)."""
    alpha = torch.exp(adt)
    ys = []
    for t in range(q.shape[1]):
        # H_t = alpha_t H_{t-1} + (1-lam_t) dt_t alpha_t v_{t-1} k_{t-1}^T + lam_t dt_t v_t k_t^T
        a_t = alpha[:, t, :, None, None]
        g_t = (lam[:, t] * dt[:, t])[:, :, None, None]
        be_t = ((1 - lam[:, t]) * dt[:, t])[:, :, None, None] * a_t
        h_state = (a_t * h_state + be_t * v_prev[..., :, None] * k_prev[..., None, :]
                   + g_t * x[:, t, :, :, None] * k[:, t, :, None, :])
        ys.append(torch.einsum("bhpn,bhn->bhp", h_state, q[:, t]) + Dh[:, None] * x[:, t])
        k_prev, v_prev = k[:, t], x[:, t]
    return torch.stack(ys, dim=1), h_state


def _scan_chunked(q, k, qb, kb, x, adt, dt, lam, Dh, h_state, k_prev, v_prev, L):
    """§3.3/§3.4, chunk L: quadratic inside a chunk, the state passed between chunks. Same math
    as _scan_recurrent (checked by ref_mamba3.py), ~L times fewer sequential steps."""
    b, l, H, N = q.shape
    gamma = lam * dt
    # s_t = gamma_t + dt_{t+1} (1 - lam_{t+1}), the look-ahead term 0 at the end
    sig = torch.cat([(dt * (1 - lam))[:, 1:], dt.new_zeros(b, 1, H)], dim=1)
    ks = (gamma + sig)[..., None] * k
    qkd = gamma * (qb * kb).sum(-1)  # the diagonal uses gamma, not s
    # H_init' = H_in + dt_0 (1 - lam_0) v_{-1} k_{-1}^T, without alpha_0
    c0 = (dt[:, 0] * (1 - lam[:, 0]))[:, :, None, None]
    h_state = h_state + c0 * v_prev[..., :, None] * k_prev[..., None, :]
    ys = []
    for t0 in range(0, l, L):
        sl = slice(t0, min(t0 + L, l))
        qc, kc, vc = q[:, sl], ks[:, sl], x[:, sl]
        acs = torch.cumsum(adt[:, sl], dim=1)  # (b, n, H)
        n = acs.shape[1]
        diff = acs[:, :, None, :] - acs[:, None, :, :]  # (b, i, j, H) = Acs_i - Acs_j
        causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril(-1)[None, :, :, None]
        decay = torch.exp(diff.masked_fill(~causal, float("-inf")))
        scores = torch.einsum("bihn,bjhn->bijh", qc, kc) * decay
        y = (torch.einsum("bijh,bjhp->bihp", scores, vc)
             + torch.exp(acs)[..., None] * torch.einsum("bhpn,bihn->bihp", h_state, qc)
             + (Dh + qkd[:, sl])[..., None] * vc)
        ys.append(y)
        last = acs[:, -1]  # (b, H)
        w = torch.exp(last[:, None] - acs)  # (b, n, H)
        h_state = (torch.exp(last)[:, :, None, None] * h_state
                   + torch.einsum("bjh,bjhp,bjhn->bhpn", w, vc, kc))
    return torch.cat(ys, dim=1), h_state


def forward(mod, x, cfg):
    """The mixer hook of tools/ref/model.py: (B, T, C) -> (B, T, C), zero initial states.
    Chunked when cfg.mamba3_chunked is set (a reference trainer at T = 4096), else recurrent."""
    return forward_with_states(mod, x, cfg, chunked=getattr(cfg, "mamba3_chunked", False))[0]


class Mamba3(nn.Module):
    """The layer alone: parameters as add_params registers them."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        add_params(self, cfg)

    def forward(self, u, states=None, chunked=False):
        return forward_with_states(self, u, self.cfg, states, chunked)
