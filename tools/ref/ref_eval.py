"""Evaluation-mode fixtures (eval/eval.h), float64: the loss sums of plain, sliding and
stateful-overlap windows over a token stream, on a small hybrid model (tools/ref/model.py with
the Mamba-3 mixer of tools/ref/mamba3.py, recurrent form), written independently of the C++
window bookkeeping. Stateful windows: a Mamba layer's output comes from one pass over the
window from its initial state; the state handed to the next window comes from a separate pass
over the window's first fin_at tokens (the C++ side splits one pass instead)."""
import math

import numpy as np
import torch

import mamba3
import model as M
from ref_model import random_params

CFG = dict(vocab_size=64, model_dim=16, num_layers=3, num_attn_layers=1, num_heads=2, num_kv_heads=1,
           mlp_mult=2, d_state=8, expand=2, ssm_headdim=8, ssm_ngroups=1, chunk_size=4)
T, NSEQ = 16, 8


def window(gpt, tokens, init, fin_at):
    """tokens (n,) -> raw logits (n, V) and, if fin_at, each Mamba layer's state after fin_at tokens."""
    cfg = gpt.cfg
    eps = cfg.norm_eps
    x = M.rms_norm(gpt.wte[tokens.long()][None], eps)
    x0, nenc, skips, fin = x, cfg.num_encoder_layers(), [], {}
    for l, blk in enumerate(gpt.blocks):
        if l >= nenc and skips:
            x = x + gpt.skip_weight[l - nenc] * skips.pop()
        if blk.attn:
            x = blk(x, x0)
        else:
            xm = blk.resid_mix[0] * x + blk.resid_mix[1] * x0
            u = M.rms_norm(xm, eps)
            st = init.get(l) if init else None
            mix, _ = mamba3.forward_with_states(blk, u, cfg, st)
            if fin_at:
                _, fin[l] = mamba3.forward_with_states(blk, u[:, :fin_at], cfg, st)
            x = xm + blk.mixer_scale[0] * mix
            h = M.rms_norm(x, eps) @ blk.mlp_fc.t()
            x = x + blk.mlp_scale[0] * (M.mlp_act(h) @ blk.mlp_proj.t())
        if l < nenc:
            skips.append(x)
    return (M.rms_norm(x, eps) @ gpt.wte.t())[0], fin


def losses(logits, targets, cap, tau):
    s = cap * torch.tanh(logits / cap) / tau
    return torch.logsumexp(s, dim=-1) - s.gather(-1, targets.long()[:, None])[:, 0]


def score(gpt, toks, ws, we, s0, s1, tau, init=None, fin_at=0):
    logits, fin = window(gpt, toks[ws:we], init, fin_at)
    l = losses(logits, toks[ws + 1:we + 1], gpt.cfg.logit_softcap, tau)
    return float(l[s0 - ws:s1 - ws].sum()), fin


def plain(gpt, toks, tau):
    npos = len(toks) - 1
    return sum(score(gpt, toks, ws, min(ws + T, npos), ws, min(ws + T, npos), tau)[0] for ws in range(0, npos, T))


def sliding(gpt, toks, s, tau):
    npos, total, k = len(toks) - 1, 0.0, 0
    while True:
        first = 0 if k == 0 else k * s + T - s
        if first >= npos:
            return total
        we = min(k * s + T, npos)
        total += score(gpt, toks, k * s, we, first, we, tau)[0]
        k += 1


def stateful(gpt, toks, o, tau, b, e, seed_carry=False):
    """Positions [b, e); prewarm T tokens."""
    S, total = T - o, 0.0
    start = lambda s0: max(s0 - o, 0)
    ts = b if seed_carry else start(b)
    state = score(gpt, toks, max(ts - T, 0), ts, ts, ts, tau, None, ts - max(ts - T, 0))[1] if ts > 0 else None
    for s0 in range(b, e, S):
        s1 = min(s0 + S, e)
        ts = start(s0)
        fin_at = 0 if s1 >= e else (s1 - ts if seed_carry else start(s1) - ts)
        part, fin = score(gpt, toks, ts, s1, s0, s1, tau, state, fin_at)
        total += part
        if fin_at:
            state = fin
    return total


def cases():
    gen = torch.Generator().manual_seed(2468)
    torch.manual_seed(2468)
    cfg = M.Config(**CFG)
    gpt = M.GPT(cfg).double()
    random_params(gpt, gen)
    toks = torch.randint(0, cfg.vocab_size, (NSEQ * T + 1,), generator=gen, dtype=torch.int32)
    npos = NSEQ * T
    spans3 = [(T * (NSEQ * r // 3), npos if r == 2 else T * (NSEQ * (r + 1) // 3)) for r in range(3)]
    with torch.no_grad():
        res = {"tokens": toks, "arena_params": M.to_arena(gpt),
               "plain": np.array([plain(gpt, toks, 1.0)]),
               "plain_t09": np.array([plain(gpt, toks, 0.9)]),
               "sliding5": np.array([sliding(gpt, toks, 5, 1.0)]),
               "stateful5": np.array([stateful(gpt, toks, 5, 1.0, 0, npos)]),
               "stateful11_t09": np.array([stateful(gpt, toks, 11, 0.9, 0, npos)]),
               "stateful5_seed": np.array([stateful(gpt, toks, 5, 1.0, 0, npos, seed_carry=True)]),
               "stateful5_ranks3": np.array([sum(stateful(gpt, toks, 5, 1.0, b, e) for b, e in spans3)])}
    yield "eval_hybrid", res
