"""Whole-model fixtures: tools/ref/model.py at small random all-attention configs, float64
autograd. Parameters are random (not the init: zero-initialised projections would hide
gradients), stored under their param_specs names; gradients as "grad.<name>"."""
import numpy as np
import torch

import model as M

CONFIGS = [  # name, fields, B, T
    ("model_v64_d32_l3", dict(vocab_size=64, model_dim=32, num_layers=3, num_attn_layers=3, num_heads=4,
                              num_kv_heads=2, mlp_mult=3), 2, 9),
    ("model_v96_d48_l4", dict(vocab_size=96, model_dim=48, num_layers=4, num_attn_layers=4, num_heads=6,
                              num_kv_heads=3, mlp_mult=2), 2, 17),
]


def random_params(gpt, gen):
    """Every parameter random around its init's scale, so no gradient path is zeroed out."""
    with torch.no_grad():
        for name, p in gpt.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            leaf = name.split(".")[-1]
            if leaf == "wte":
                v = 0.5 * r
            elif leaf == "resid_mix":
                v = torch.stack([1.0 + 0.3 * r[0], 0.5 * r[1]])
            elif leaf in ("mixer_scale", "mlp_scale", "skip_weight"):
                v = 1.0 + 0.3 * r
            elif leaf == "q_gain":
                v = 1.5 + 0.3 * r
            else:  # matrices (out, in): the fan-in scale of their init, for the zero-initialised ones too
                v = r / p.shape[1] ** 0.5
            p.copy_(v.float().double())  # float32 values, so the C++ side starts from the same numbers


def cases():
    gen = torch.Generator().manual_seed(4321)
    for case, fields, B, T in CONFIGS:
        cfg = M.Config(**fields)
        gpt = M.GPT(cfg).double()
        random_params(gpt, gen)
        tokens = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int32)
        targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int32)
        logits = gpt.logits(tokens)
        loss = M.softcap_ce(logits, targets, cfg.logit_softcap)
        loss.backward()
        res = {"cfg_int": np.array([cfg.vocab_size, cfg.model_dim, cfg.num_layers, cfg.num_attn_layers,
                                    cfg.num_heads, cfg.num_kv_heads, cfg.mlp_mult, B, T], dtype=np.int32),
               "cfg_f64": np.array([cfg.logit_softcap, cfg.rope_base, cfg.norm_eps], dtype=np.float64),
               "tokens": tokens, "targets": targets, "logits": logits.detach(),
               "loss": loss.detach().reshape(1).numpy()}
        for name, p in gpt.named_parameters():
            res[name] = p.detach()
            res["grad." + name] = p.grad
        yield case, res
