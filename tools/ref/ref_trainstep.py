"""Whole training step fixtures: tools/ref/train_ref.py's RefTrainer (float64) for a few steps on a
tiny hybrid config, for tests/test_trainstep.cpp (optim/train_step_cpu.h must give the same losses
and parameters from the same initial arena and the same batches).

Stored: cfg_flags (the HPARAMS settings as `--name value` flags, bytes in an int32 array),
arena_init (float32, the C++ arena layout), windows (steps, micro, B, T+1) int32, and from the
float64 run: losses, lr_mult, momentum (steps,), arena_step1 and arena_final (float64);
arena_offsets (tensor starts + size) and arena_groups (0 matrix, 1 embed, 2 scalar) per tensor, to
check that both sides split the arena the same way.

A second case checks the reference trainer's val-bpb evaluator (train_ref.py --val) against what
train validates: a tiny SentencePiece model (ref_tokenizer.train_tiny; ref_tokenizer's non-ASCII
lines reach its byte-fallback pieces), a val stream written as a shard and read back by
read_val_windows (VAL_SEQS whole sequences of T and a VAL_TAIL that val_load drops), random
weights; scored in float64, VAL_BATCH sequences a forward (the last batch partial). Stored:
cfg_flags, model_bytes, val_tokens, arena (float32) and result = (val_loss, val_bpb, tokens,
bytes); tests/test_trainstep.cpp writes the shard and scores it with val_load + eval_cpu (plain).
"""
import os
import sys
import tempfile

import numpy as np
import torch

import model as M
import ref_model
import ref_tokenizer
import train_ref

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/
import cut_dataset  # noqa: E402

# The tiny hybrid: layers 0, 1 Mamba-3, layer 2 attention (round(1*3/2) = 2); 4 chunks of 4 per
# sequence; 2 micro batches per step (gradient accumulation); the schedule's warmup, momentum
# warmup and warmdown all change within the 8 steps. B, T and the micro-batch count come from the
# windows' shape: train_seq_len & co. keep their defaults, so Config::validate's checks that tie
# other settings to train_seq_len (eval windows) hold whatever they become.
HP = dict(vocab_size=64, model_dim=32, num_layers=3, num_attn_layers=1, num_heads=4, num_kv_heads=2, mlp_mult=2,
          d_state=8, expand=2, ssm_headdim=8, ssm_ngroups=1, chunk_size=4, rope_fraction=0.5, a_act="softplus",
          iterations=8, max_wallclock_seconds=0.0, warmup_steps=0, warmdown_iters=4, lr_warmup_steps=2,
          matrix_lr=0.025, scalar_lr=0.02, tied_embed_lr=0.05, muon_momentum=0.99, muon_momentum_warmup_start=0.85,
          muon_momentum_warmup_steps=4, muon_backend_steps=5, muon_wd=0.04, muoneq_r=1, muon_nesterov=1,
          beta1=0.9, beta2=0.95, adam_eps=1e-8, adam_wd=0.0)
STEPS, MICRO, B, T = 8, 2, 2, 16
VAL_SEQS, VAL_TAIL, VAL_BATCH = 12, 7, 5


def markov_windows(rng, shape, vocab):
    """Learnable token streams: next = (5*prev + 3) mod V, a random token 25% of the time."""
    out = np.empty(shape, dtype=np.int32)
    flat = out.reshape(-1, shape[-1])
    for row in flat:
        row[0] = rng.randint(vocab)
        for t in range(1, len(row)):
            row[t] = rng.randint(vocab) if rng.rand() < 0.25 else (5 * row[t - 1] + 3) % vocab
    return out


def arena64(gpt):
    layout, size = M.arena_layout(gpt)
    a = np.zeros(size, dtype=np.float64)
    for (name, off, n), p in zip(layout, gpt.parameters()):
        a[off:off + n] = p.detach().reshape(-1).double().numpy()
    return a


def cases():
    torch.manual_seed(2468)  # model.py / mamba3.py init from the global generator
    cfg = train_ref.model_config(HP)
    arena_init = M.to_arena(M.GPT(cfg)).numpy()  # float32: both sides start from these numbers
    windows = markov_windows(np.random.RandomState(1357), (STEPS, MICRO, B, T + 1), HP["vocab_size"])
    tr = train_ref.RefTrainer(HP, arena_init, "cpu", torch.float64)
    losses, mults, moms = [], [], []
    for s in range(STEPS):
        loss, mult, mom = tr.step(windows[s])
        losses.append(loss)
        mults.append(mult)
        moms.append(mom)
        if s == 0:
            arena_step1 = arena64(tr.gpt)
    layout, size = M.arena_layout(tr.gpt)
    flags = " ".join(f"--{k.replace('_', '-')} {v!r}" if isinstance(v, float) else f"--{k.replace('_', '-')} {v}"
                     for k, v in HP.items())
    yield "trainstep_hybrid_v64_d32_l3", {
        "cfg_flags": np.frombuffer(flags.encode(), dtype=np.uint8).astype(np.int32),
        "arena_init": arena_init,
        "windows": windows,
        "losses": np.array(losses, dtype=np.float64),
        "lr_mult": np.array(mults, dtype=np.float64),
        "momentum": np.array(moms, dtype=np.float64),
        "arena_step1": arena_step1,
        "arena_final": arena64(tr.gpt),
        "arena_offsets": np.array([off for _, off, _ in layout] + [size], dtype=np.int32),
        "arena_groups": np.array([train_ref.GROUP_ID[train_ref.group_of(n)] for n, _, _ in layout], dtype=np.int32),
    }
    yield "trainstep_valbpb_v400_d32_l3", valbpb_case()


def valbpb_case():
    import sentencepiece as spm
    with tempfile.TemporaryDirectory() as tmp:
        model_path = ref_tokenizer.train_tiny(tmp)
        sp = spm.SentencePieceProcessor(model_file=model_path)
        tables = ref_tokenizer.byte_tables(model_path)
        with open(model_path, "rb") as f:
            model_bytes = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int32)
        with open(ref_tokenizer.GPL3, encoding="utf-8") as f:
            lines = ref_tokenizer.NON_ASCII + ref_tokenizer.paragraphs(f.read(), 10)
        # BOS before each document, and before every 4th "\u2581"-led piece: the space such a piece
        # carries is not counted after a boundary token, and that rule must be seen to count
        ids, led = [], 0
        for line in lines:
            ids.append(sp.bos_id())
            for i in sp.encode(line, out_type=int):
                led += int(tables[1][i])
                if tables[1][i] and led % 4 == 0:
                    ids.append(sp.bos_id())
                ids.append(i)
        val_tokens = np.array(ids[:VAL_SEQS * T + 1 + VAL_TAIL], dtype=np.uint16)
        assert len(val_tokens) == VAL_SEQS * T + 1 + VAL_TAIL
        cut_dataset.write_shard(os.path.join(tmp, "t_val_000000.bin"), val_tokens)
        windows = train_ref.read_val_windows(tmp, T)
    hp = dict(HP, vocab_size=sp.get_piece_size(), train_seq_len=T, eval_overlap=T // 2, eval_stride=T // 2)
    gpt = M.GPT(train_ref.model_config(hp)).double()
    ref_model.random_params(gpt, torch.Generator().manual_seed(97531))
    arena = M.to_arena(gpt).numpy()  # float32: both sides score these numbers
    gpt = train_ref.load_gpt(hp, arena, "cpu", torch.float64)
    result = train_ref.val_bpb(gpt, windows, train_ref.window_bytes(windows, tables), VAL_BATCH, "cpu")
    flags = " ".join(f"--{k.replace('_', '-')} {v!r}" if isinstance(v, float) else f"--{k.replace('_', '-')} {v}"
                     for k, v in hp.items())
    return {
        "cfg_flags": np.frombuffer(flags.encode(), dtype=np.uint8).astype(np.int32),
        "model_bytes": model_bytes,
        "val_tokens": val_tokens.astype(np.int32),
        "arena": arena,
        "result": np.array(result, dtype=np.float64),
    }
