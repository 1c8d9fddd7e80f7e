"""GPTQ reference (Frantar et al. 2022, Algorithm 1, with lazy batches and the Cholesky of the
inverse Hessian, as in the paper's reference code) in float64 PyTorch, for quant/gptq.cpp.

Each case: W (R, C) with Gaussian rows of spread-out scales and a few outliers, H = 2/N XᵀX
from X with correlated columns (one column never active, to exercise the dead-column rule),
per-row bit widths (4, 6 and 8 mixed), absmax fp16 per-row scales. Stored: the inputs, the
reference's q and its error tr((W−Q)H(W−Q)ᵀ), and round-to-nearest's error on the same scales.
"""
import numpy as np
import torch


def scales_absmax(W, bits):
    qmax = (2.0 ** (bits - 1) - 1)
    s = W.abs().amax(dim=1) / qmax
    return torch.from_numpy(s.numpy().astype(np.float16).astype(np.float64))  # fp16-rounded, as stored


def quant(w, s, qmax):
    return torch.clamp(torch.round(w / s), -qmax, qmax)


def gptq_ref(W, H, s, bits, damp, block, act_order):
    W = W.clone()
    H = H.clone()
    R, C = W.shape
    s = s.reshape(-1)  # (R): one column at a time
    qmax = 2.0 ** (bits.reshape(-1) - 1) - 1
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.arange(C)
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]
        H = H[perm][:, perm]
    H = H + damp * torch.mean(torch.diag(H)) * torch.eye(C, dtype=H.dtype)
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, C, block):
        i2 = min(i1 + block, C)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            q = quant(w, s, qmax)
            Q1[:, i] = q
            err = (w - q * s) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    out = torch.zeros_like(Q)
    out[:, perm] = Q
    return out


def err_of(W, q, s, H):
    D = W - q * s.unsqueeze(1)
    return torch.trace(D @ H @ D.T).item()


def make_case(seed, R, C, damp, block, act_order):
    g = torch.Generator().manual_seed(seed)
    N = 4 * C
    M = torch.eye(C, dtype=torch.float64) + 0.6 * torch.randn(C, C, generator=g, dtype=torch.float64) / C ** 0.5
    colscale = torch.exp(0.7 * torch.randn(C, generator=g, dtype=torch.float64))
    X = (torch.randn(N, C, generator=g, dtype=torch.float64) @ M) * colscale
    X = X.float().double()
    X[:, C // 3] = 0  # an input that is never active
    H = 2.0 / N * X.T @ X
    rowscale = torch.exp(0.5 * torch.randn(R, 1, generator=g, dtype=torch.float64)) * 0.02
    W = (torch.randn(R, C, generator=g, dtype=torch.float64) * rowscale)
    W[torch.randint(0, R, (4,), generator=g), torch.randint(0, C, (4,), generator=g)] *= 6.0  # outliers
    W = W.float().double()
    bits = torch.tensor([(4, 6, 8, 6, 6)[r % 5] for r in range(R)], dtype=torch.float64)
    s = torch.stack([scales_absmax(W[r:r + 1], bits[r].item())[0] for r in range(R)])
    q = gptq_ref(W, H, s, bits, damp, block, act_order)
    q_rtn = quant(W, s.unsqueeze(1), (2.0 ** (bits - 1) - 1).unsqueeze(1))
    return {
        "W": W.float(), "H": H.numpy(), "bits": bits.int(), "scale": s.float(), "q": q.int(),
        "err": np.array([err_of(W, q, s, H)]), "err_rtn": np.array([err_of(W, q_rtn, s, H)]),
        "opts": np.array([damp, float(block), float(act_order)]),
    }


def cases():
    yield "gptq_40x160_block128", make_case(1, 40, 160, 0.01, 128, False)
    yield "gptq_40x160_block32_actorder", make_case(2, 40, 160, 0.01, 32, True)
    yield "gptq_24x96_damp0.1_actorder", make_case(3, 24, 96, 0.1, 128, True)
