"""Pure-PyTorch model of the trainer's architecture (parameter-golf's GPT with our hybrid mixer).

The reference the CPU code (model/model.cpp) is checked against, and usable as a reference
trainer: parameters are named exactly as model/params.h's param_specs() names them
("wte", "skip_weight", "blocks.2.attn_qkv", ...), so a state_dict maps one to one onto the
C++ parameter arena. No Triton, no fused kernels: every op is the plain math.

Mixers: attention at cfg.is_attn(l). Other layers are Mamba-3: tools/ref/mamba3.py provides
    add_params(block, cfg)      registers in_proj, out_proj, dt_bias, ... on the block
    forward(block, x, cfg)      (B, T, C) -> (B, T, C), the mixer between rmsnorm and mixer_scale
and is imported only when a config has Mamba-3 layers.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:  # the model-shape fields of model/config.h HPARAMS, same names and defaults
    vocab_size: int = 8192
    model_dim: int = 512
    num_layers: int = 7
    num_attn_layers: int = 2
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: int = 3
    logit_softcap: float = 30.0
    rope_base: float = 10000.0
    qk_gain_init: float = 1.5
    tied_embed_init_std: float = 0.005
    norm_eps: float = 1.1920929e-07
    d_state: int = 64
    expand: int = 2
    ssm_headdim: int = 64
    ssm_ngroups: int = 1
    chunk_size: int = 64
    rope_fraction: float = 0.5
    a_act: str = "softplus"
    a_floor: float = 1e-4

    def head_dim(self): return self.model_dim // self.num_heads
    def qkv_rows(self): return (self.num_heads + 2 * self.num_kv_heads) * self.head_dim()
    def mlp_hidden(self): return self.mlp_mult * self.model_dim
    def num_encoder_layers(self): return self.num_layers // 2
    def num_decoder_layers(self): return self.num_layers - self.num_encoder_layers()
    def num_skips(self): return min(self.num_encoder_layers(), self.num_decoder_layers())

    def is_attn(self, layer):
        # round(i*n/(k+1)), i = 1..k, rounding halves away from zero like C's lround
        n, k = self.num_layers, self.num_attn_layers
        if k >= n:  # as in config.cpp: n of n means every layer (the formula skips layer 0)
            return True
        return any(math.floor(i * n / (k + 1) + 0.5) == layer for i in range(1, k + 1))


def rms_norm(x, eps):
    """x / sqrt(mean(x^2) + eps) over the last dim, no weight (model/rmsnorm.h)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rope(x, base):
    """Half-split RoPE over the last dim of x (B, T, H, D), angle(t, i) = t * base^(-2i/D)."""
    T, D = x.shape[1], x.shape[3]
    half = D // 2
    inv_freq = base ** (-torch.arange(0, half, dtype=torch.float64, device=x.device) * 2.0 / D)
    ang = torch.arange(T, dtype=torch.float64, device=x.device)[:, None] * inv_freq[None, :]
    cos = ang.cos().to(x.dtype)[None, :, None, :]
    sin = ang.sin().to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos), dim=-1)


def attn_qkv_prep(qkv, q_gain, cfg):
    """(B, T, qkv_rows) -> q (B,T,NH,HD), k, v (B,T,NKV,HD): SiLU(v), qk-RMSNorm, RoPE, q gain."""
    B, T, _ = qkv.shape
    NH, NKV, HD = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim()
    q, k, v = qkv.split([NH * HD, NKV * HD, NKV * HD], dim=-1)
    q = q.reshape(B, T, NH, HD)
    k = k.reshape(B, T, NKV, HD)
    v = v.reshape(B, T, NKV, HD)
    v = v * torch.sigmoid(v)
    q = rope(rms_norm(q, cfg.norm_eps), cfg.rope_base)
    k = rope(rms_norm(k, cfg.norm_eps), cfg.rope_base)
    q = q * q_gain.reshape(NH)[None, None, :, None]
    return q, k, v


def causal_attention(q, k, v):
    """q (B,T,NH,HD), k, v (B,T,NKV,HD) -> y (B,T,NH,HD); query head h reads kv head h // (NH/NKV)."""
    B, T, NH, HD = q.shape
    rep = NH // k.shape[2]
    k = k.repeat_interleave(rep, dim=2)
    v = v.repeat_interleave(rep, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(HD)
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bhij,bjhd->bihd", p, v)


def mlp_act(h):
    return F.leaky_relu(h, 0.5).square()


def softcap_ce(logits, targets, cap):
    """Mean cross-entropy of cap * tanh(logits / cap) (model/loss.h)."""
    s = cap * torch.tanh(logits / cap)
    return F.cross_entropy(s.reshape(-1, s.shape[-1]), targets.reshape(-1).long(), reduction="mean")


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.cfg, self.layer, self.attn = cfg, layer, cfg.is_attn(layer)
        C = cfg.model_dim
        # order and shapes as BLOCK_TENSORS / ATTN_TENSORS in model/params.h
        self.resid_mix = nn.Parameter(torch.stack([torch.ones(C), torch.zeros(C)]))
        self.mixer_scale = nn.Parameter(torch.ones(1, C))
        self.mlp_scale = nn.Parameter(torch.ones(1, C))
        self.mlp_fc = nn.Parameter(torch.empty(cfg.mlp_hidden(), C))
        self.mlp_proj = nn.Parameter(torch.zeros(C, cfg.mlp_hidden()))
        nn.init.uniform_(self.mlp_fc, -1 / math.sqrt(C), 1 / math.sqrt(C))
        if self.attn:
            self.attn_qkv = nn.Parameter(torch.empty(cfg.qkv_rows(), C))
            nn.init.uniform_(self.attn_qkv, -1 / math.sqrt(C), 1 / math.sqrt(C))
            self.attn_proj = nn.Parameter(torch.zeros(C, cfg.num_heads * cfg.head_dim()))
            self.q_gain = nn.Parameter(torch.full((1, cfg.num_heads), cfg.qk_gain_init))
        else:
            import mamba3  # tools/ref/mamba3.py (branch mamba3)
            mamba3.add_params(self, cfg)

    def mixer(self, x):
        if not self.attn:
            import mamba3
            return mamba3.forward(self, x, self.cfg)
        B, T, _ = x.shape
        q, k, v = attn_qkv_prep(x @ self.attn_qkv.t(), self.q_gain, self.cfg)
        y = causal_attention(q, k, v).reshape(B, T, -1)
        return y @ self.attn_proj.t()

    def forward(self, x, x0):
        eps = self.cfg.norm_eps
        x = self.resid_mix[0] * x + self.resid_mix[1] * x0
        x = x + self.mixer_scale[0] * self.mixer(rms_norm(x, eps))
        h = rms_norm(x, eps) @ self.mlp_fc.t()
        return x + self.mlp_scale[0] * (mlp_act(h) @ self.mlp_proj.t())


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Parameter(torch.randn(cfg.vocab_size, cfg.model_dim) * cfg.tied_embed_init_std)
        self.skip_weight = nn.Parameter(torch.ones(cfg.num_skips(), cfg.model_dim))
        self.blocks = nn.ModuleList([Block(cfg, l) for l in range(cfg.num_layers)])

    def logits(self, tokens):
        """tokens (B, T) -> raw logits (B, T, V), before the softcap."""
        cfg = self.cfg
        x = rms_norm(self.wte[tokens.long()], cfg.norm_eps)
        x0 = x
        nenc = cfg.num_encoder_layers()
        skips = []
        for l, block in enumerate(self.blocks):
            if l >= nenc and skips:
                x = x + self.skip_weight[l - nenc] * skips.pop()
            x = block(x, x0)
            if l < nenc:
                skips.append(x)
        return rms_norm(x, cfg.norm_eps) @ self.wte.t()

    def forward(self, tokens, targets):
        """Mean cross-entropy over the B*T tokens (softcapped logits)."""
        return softcap_ce(self.logits(tokens), targets, self.cfg.logit_softcap)
