"""Optimizer references for tests/test_optim.cpp.

Muon: written the way parameter-golf's train_gpt.py does it (momentum buffer, Nesterov, Newton-Schulz
with (3.4445, -4.7750, 2.0315), sqrt(max(1, R/C)) scale) with the seed's additions (MuonEq-R row
normalization before the Frobenius normalization, decoupled weight decay with the scheduled lr),
but in float64 instead of bf16 so the C++ reference can be held to 1e-5.
Adam: torch.optim.Adam (wd = 0) and torch.optim.AdamW (wd > 0) themselves, in float64.
muon_step / adam are also the optimizers of the reference trainer (tools/ref/train_ref.py).
Each case runs 3 steps with a different lr (and Muon momentum) per step, as the schedules do.
"""
import numpy as np
import torch

A_, B_, C_ = 3.4445, -4.7750, 2.0315
EPS = 1e-7
STEPS = 3


def newton_schulz(G, steps, eq_r, bf16=False):
    """bf16: run the products in bfloat16 as the seed (and our GPU) does; else in G's dtype."""
    X = G.clone()
    if eq_r:
        X = X / X.norm(dim=-1, keepdim=True).clamp(min=EPS)
    X = X / (X.norm() + EPS)
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    if bf16:
        X = X.bfloat16()
    for _ in range(steps):
        A = X @ X.T
        B = B_ * A + C_ * A @ A
        X = A_ * X + B @ X
    X = X.to(G.dtype)
    return X.T if transposed else X


def muon_step(P, buf, g, lr, momentum, wd, nesterov, eq_r, ns_steps=5, bf16=False):
    """One Muon step on matrix P (R, C) in place (optim/muon.h's order); buf is the momentum.
    Returns the orthogonalized update (before lr)."""
    buf.mul_(momentum).add_(g)
    u = g + momentum * buf if nesterov else buf
    upd = newton_schulz(u, ns_steps, eq_r, bf16) * max(1, P.shape[0] / P.shape[1]) ** 0.5
    P.mul_(1 - lr * wd)
    P.sub_(lr * upd)
    return upd


def adam(param_groups, beta1, beta2, eps, wd):
    """optim/adam.h's update is torch.optim.AdamW's (wd = 0: torch.optim.Adam's, the seed's).
    param_groups: [{"params": [...], "lr": lr}, ...]; set each group's lr before every step."""
    if wd > 0:
        return torch.optim.AdamW(param_groups, betas=(beta1, beta2), eps=eps, weight_decay=wd)
    return torch.optim.Adam(param_groups, betas=(beta1, beta2), eps=eps)


def muon_case(rows, cols, eq_r, nesterov, seed):
    gen = torch.Generator().manual_seed(seed)
    p = (torch.randn(rows, cols, generator=gen) / cols ** 0.5).float()
    grads = [torch.randn(rows, cols, generator=gen).float() for _ in range(STEPS)]
    lrs = [0.025, 0.02, 0.01]
    moms = [0.85, 0.9, 0.95]
    wd = 0.04
    t = {"p0": p, "hyper": np.array(lrs + moms + [wd, float(eq_r), float(nesterov)], dtype=np.float64)}
    for k, g in enumerate(grads):
        t[f"g{k}"] = g
    P = p.double()
    buf = torch.zeros_like(P)
    for k in range(STEPS):
        upd = muon_step(P, buf, grads[k].double(), lrs[k], moms[k], wd, nesterov, eq_r)
        if k == 0:
            t["upd0"] = upd.numpy()
        t[f"p{k + 1}"] = P.numpy().copy()
        t[f"buf{k + 1}"] = buf.numpy().copy()
    return t


def adam_case(shape, wd, seed):
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(*shape, generator=gen).float()
    grads = [torch.randn(*shape, generator=gen).float() for _ in range(STEPS)]
    lrs = [0.05, 0.03, 0.02]
    P = torch.nn.Parameter(p.double().clone())
    opt = adam([{"params": [P], "lr": lrs[0]}], 0.9, 0.95, 1e-8, wd)
    t = {"p0": p, "hyper": np.array(lrs + [0.9, 0.95, 1e-8, wd], dtype=np.float64)}
    for k in range(STEPS):
        t[f"g{k}"] = grads[k]
        for grp in opt.param_groups:
            grp["lr"] = lrs[k]
        P.grad = grads[k].double()
        opt.step()
        st = opt.state[P]
        t[f"p{k + 1}"] = P.detach().numpy().copy()
        t[f"m{k + 1}"] = st["exp_avg"].numpy().copy()
        t[f"v{k + 1}"] = st["exp_avg_sq"].numpy().copy()
    return t


def cases():
    seed = 100
    for rows, cols in [(24, 40), (40, 24), (32, 32)]:
        for eq_r in (0, 1):
            seed += 1
            yield f"optim_muon_{rows}x{cols}_eqr{eq_r}", muon_case(rows, cols, eq_r, True, seed)
    yield "optim_muon_24x40_plain", muon_case(24, 40, 1, False, 200)
    yield "optim_adam_vec37", adam_case((37,), 0.0, 300)
    yield "optim_adam_8x16", adam_case((8, 16), 0.0, 301)
    yield "optim_adamw_vec37", adam_case((37,), 0.1, 302)
