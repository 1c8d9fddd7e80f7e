"""Reference trainer: the whole training step of `train` in plain PyTorch, to check it against.

Model: tools/ref/model.py with tools/ref/mamba3.py's pure-PyTorch Mamba-3 (chunked form), no Triton.
Optimizers: tools/ref/ref_optim.py's muon_step (Group::matrix tensors) and adam (the tied
embedding at tied_embed_lr, Group::scalar tensors at scalar_lr), with the lr multiplier and the
Muon momentum warmup of optim/schedule.cpp (lr_multiplier, muon_momentum_at) written again below.
One step: gradient of the mean loss over all micro batches (each micro batch's mean loss / count),
then Muon and Adam with the step's scheduled lr, then (ema_decay > 0) the EMA of the weights,
ema = d*ema + (1-d)*w from the initial weights with d = ema_decay_at(step), as train keeps it. Not modelled: late QAT
(quant/fake_quant.h): compare with --late-qat-threshold 0, as tools/ref/compare_gpu.sh does.

Inputs come from build/dump_run (tools/dump_run.cpp), so both trainers start from the same numbers:
  DIR/run.txt     every HPARAMS setting, one "name = value" a line (floats with 17 digits)
  DIR/init.f32    the initial parameter arena: raw little-endian float32, param_arena_size
                  elements in param_specs order (64-element aligned, zero padding), i.e.
                  param_init(cfg, arena, cfg.seed)
  DIR/tokens.i32  int32 header [magic 20261125, version 1, steps, micro, world, B, T, 0], then
                  int32 tokens (steps, micro, world, B, T+1): step s, micro step m, rank r gets
                  what its train_loader_next handed out (inputs [:T], targets [1:])
Usage:
  python3 tools/ref/train_ref.py DIR [--steps K] [--device cuda|cpu] [--fp64] [--bf16]
          [--muon-bf16] [--losses FILE] [--save-arena FILE] [--save-ema FILE]
          [--val DATA [--tokenizer MODEL] [--val-tokens N] [--val-batch B] [--eval-bf16]
           [--eval-arena FILE | --eval-ckpt CKPT]]
Compare with train's CSV and checkpoint: tools/ref/compare_run.py (commands in notes/reftrain.md).
Log (what `train` prints, greppable): "step N/M train_loss X lr_mult Y step_ms Z" after each step.

--val DATA: after training, the exact val bpb of the final weights (and of their EMA when
ema_decay > 0) over DATA's *_val_* shards, as train's validate() scores them (data/loader.cpp
val_load: shards in name order, concatenated, cut to num_seqs*T + 1 tokens with num_seqs =
(n-1) // T, T = train_seq_len; sequence q = tokens [q*T, q*T + T]; the tail past the last whole
sequence is not scored), bytes from the tokenizer's byte tables (ref_tokenizer.byte_tables; the
tokenizer defaults to run.txt's tokenizer_path). Logit temperature 1 (validate()'s). Lines:
  ref final val_loss X val_bpb Y tokens N bytes M        (live weights)
  ref final_ema val_loss X val_bpb Y tokens N bytes M    (EMA weights)
--eval-arena FILE (a raw float32 arena) or --eval-ckpt CKPT (train's --save checkpoint: its params
and, if kept, its EMA) score those weights instead of training (tokens.i32 is not read): lines
"ref arena ...", "ref ckpt ..." and "ref ckpt_ema ...".
"""
import argparse
import glob
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import ref_optim  # noqa: E402
import ref_tokenizer  # noqa: E402

TOKENS_MAGIC = 20261125
CKPT_MAGIC = 20261123
SHARD_MAGIC = 20240520
# model/params.h's groups by tensor name (the last component of the param_specs name)
MATRIX = {"mlp_fc", "mlp_proj", "attn_qkv", "attn_proj", "in_proj", "out_proj"}
EMBED = {"wte"}
GROUP_ID = {"matrix": 0, "embed": 1, "scalar": 2}  # enum class Group order


def group_of(name):
    leaf = name.split(".")[-1]
    return "matrix" if leaf in MATRIX else "embed" if leaf in EMBED else "scalar"


def read_run_txt(path):
    """run.txt -> {name: int | float | str}."""
    hp = {}
    with open(path) as f:
        for line in f:
            if "=" not in line:
                continue
            k, v = (s.strip() for s in line.split("=", 1))
            for conv in (int, float):
                try:
                    v = conv(v)
                    break
                except ValueError:
                    pass
            hp[k] = v
    return hp


def read_tokens(path):
    """tokens.i32 -> int32 array (steps, micro * world, B, T+1)."""
    raw = np.fromfile(path, dtype="<i4")
    if raw.size < 8 or raw[0] != TOKENS_MAGIC or raw[1] != 1:
        raise SystemExit(f"error: '{path}': not a dump_run tokens file (magic/version)")
    steps, micro, world, B, T = (int(x) for x in raw[2:7])
    n = steps * micro * world * B * (T + 1)
    if raw.size != 8 + n:
        raise SystemExit(f"error: '{path}': {raw.size - 8} tokens, header says {n}")
    return raw[8:].reshape(steps, micro * world, B, T + 1)


def read_ckpt_arenas(path):
    """The arenas of an optim/checkpoint.h file, in their order (params, muon_momentum, adam_m,
    adam_v[, ema])."""
    raw = open(path, "rb").read()
    head = np.frombuffer(raw[:1024], dtype="<i4")
    if head[0] != CKPT_MAGIC or head[1] != 1:
        raise SystemExit(f"error: '{path}': not a version-1 checkpoint")
    loader_bytes = int(head[38:40].view("<i8")[0])
    count = int(head[40])
    sizes = [int(head[41 + 2 * i:43 + 2 * i].view("<i8")[0]) for i in range(count)]
    off = 1024 + loader_bytes
    arenas = []
    for n in sizes:
        arenas.append(np.frombuffer(raw, dtype="<f4", count=n, offset=off))
        off += 4 * n
    if off != len(raw):
        raise SystemExit(f"error: '{path}': {len(raw)} bytes, the header accounts for {off}")
    return arenas


def read_val_windows(data_dir, T, max_tokens=0):
    """data/loader.cpp val_load on one rank: (num_seqs, T+1) int64 windows of the val stream
    (max_tokens > 0: of its first max_tokens tokens only)."""
    paths = sorted(glob.glob(os.path.join(data_dir, "*_val_*.bin")))
    if not paths:
        raise SystemExit(f"error: '{data_dir}': no *_val_*.bin shards")
    parts = []
    for p in paths:  # data/shard.h: 256 x int32 header (magic, version, n), then n uint16
        head = np.fromfile(p, dtype="<i4", count=256)
        if head.size != 256 or head[0] != SHARD_MAGIC or head[1] != 1 or os.path.getsize(p) != 1024 + 2 * int(head[2]):
            raise SystemExit(f"error: '{p}': not a shard (magic, version or size)")
        parts.append(np.fromfile(p, dtype="<u2", offset=1024))
    tok = np.concatenate(parts).astype(np.int64)
    if max_tokens > 0:
        tok = tok[:max_tokens]
    nseq = (len(tok) - 1) // T
    if nseq < 1:
        raise SystemExit(f"error: '{data_dir}': {len(tok)} val tokens make no sequence of {T}")
    idx = np.arange(nseq)[:, None] * T + np.arange(T + 1)[None, :]
    return tok[idx]


def window_bytes(windows, tables):
    """Decoded-text bytes of each window's targets (data/bpb.cpp bpb_count_bytes): (num_seqs,) int64.
    Ids past the tokenizer's pieces count as boundary tokens of 0 bytes (Tokenizer::token_bytes)."""
    base, lead, boundary = tables
    V = len(base)
    prev, tgt = windows[:, :-1], windows[:, 1:]
    inside = tgt < V
    t = np.where(inside, tgt, 0)
    prev_boundary = (prev >= V) | boundary[np.where(prev < V, prev, 0)]
    return np.where(inside, base[t] + (lead[t] & ~prev_boundary), 0).sum(axis=1)


def val_bpb(gpt, windows, nbytes, batch, device, bf16=False):
    """Plain val bpb of gpt over windows (num_seqs, T+1): (val_loss, val_bpb, tokens, bytes).
    Per-token losses of the softcapped logits (model.py softcap_ce) in the model's dtype; sums
    in float64, as train's validate() and data/bpb.cpp."""
    loss_sum = 0.0
    cap = gpt.cfg.logit_softcap
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            w = torch.as_tensor(windows[i:i + batch], device=device)
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                logits = gpt.logits(w[:, :-1])
            s = cap * torch.tanh(logits.to(next(gpt.parameters()).dtype) / cap)
            loss = torch.nn.functional.cross_entropy(s.reshape(-1, s.shape[-1]), w[:, 1:].reshape(-1),
                                                     reduction="none")
            loss_sum += loss.double().sum().item()
    tokens = windows.shape[0] * (windows.shape[1] - 1)
    total_bytes = int(nbytes.sum())
    val_loss = loss_sum / tokens
    return val_loss, val_loss / np.log(2.0) * tokens / total_bytes, tokens, total_bytes


def lr_multiplier(hp, step, elapsed_s):
    """optim/schedule.cpp lr_multiplier: optional linear warmup, then the warmdown (by steps when
    max_wallclock_seconds <= 0, else placed by elapsed time)."""
    warm = 1.0
    if hp["lr_warmup_steps"] > 0 and step < hp["lr_warmup_steps"]:
        warm = (step + 1) / hp["lr_warmup_steps"]
    down = 1.0
    wd_iters = hp["warmdown_iters"]
    if wd_iters > 0:
        if hp["max_wallclock_seconds"] <= 0:
            it = hp["iterations"]
            start = max(it - wd_iters, 0)
            if start <= step < it:
                down = (it - step) / wd_iters
            if step >= it:
                down = 0.0
        else:
            step_s = elapsed_s / max(step, 1)
            warmdown_s = wd_iters * step_s
            remaining_s = max(hp["max_wallclock_seconds"] - elapsed_s, 0.0)
            if remaining_s <= warmdown_s:
                down = remaining_s / max(warmdown_s, 1e-12)
    return min(warm, down)


def muon_momentum_at(hp, step):
    n = hp["muon_momentum_warmup_steps"]
    frac = min(step / n, 1.0) if n > 0 else 1.0
    return (1 - frac) * hp["muon_momentum_warmup_start"] + frac * hp["muon_momentum"]


def ema_decay_at(hp, step):
    """optim/schedule.cpp's ema_decay_at: min(ema_decay, (1+t)/(10+t)) with ema_warmup, else ema_decay."""
    d = float(hp.get("ema_decay", 0.0))
    return min(d, (1.0 + step) / (10.0 + step)) if hp.get("ema_warmup", 0) else d


def model_config(hp):
    """The model-shape fields of hp as tools/ref/model.py's Config, Mamba-3 in its chunked form."""
    fields = {k: hp[k] for k in M.Config.__dataclass_fields__ if k in hp}
    cfg = M.Config(**fields)
    cfg.mamba3_chunked = True
    return cfg


def load_gpt(hp, arena, device="cpu", dtype=torch.float32):
    """model.py's GPT of run.txt's shape holding a float32 arena's weights."""
    gpt = M.GPT(model_config(hp)).to(device=device, dtype=dtype)
    M.load_arena(gpt, torch.from_numpy(np.array(arena, dtype=np.float32)))  # a copy: arena may be read-only
    return gpt


class RefTrainer:
    def __init__(self, hp, arena, device="cpu", dtype=torch.float32, bf16=False, muon_bf16=False):
        self.hp, self.device, self.bf16, self.muon_bf16 = hp, device, bf16, muon_bf16
        self.cfg = model_config(hp)
        self.gpt = load_gpt(hp, arena, device, dtype)
        named = list(self.gpt.named_parameters())
        self.matrices = [p for n, p in named if group_of(n) == "matrix"]
        self.bufs = [torch.zeros_like(p) for p in self.matrices]
        self.adam_groups = [{"params": [p for n, p in named if group_of(n) == "embed"], "lr": hp["tied_embed_lr"],
                             "base_lr": hp["tied_embed_lr"]},
                            {"params": [p for n, p in named if group_of(n) == "scalar"], "lr": hp["scalar_lr"],
                             "base_lr": hp["scalar_lr"]}]
        self.adam = ref_optim.adam(self.adam_groups, hp["beta1"], hp["beta2"], hp["adam_eps"], hp["adam_wd"])
        self.ema_decay = float(hp.get("ema_decay", 0.0))
        self.ema = [p.detach().clone() for p in self.gpt.parameters()] if self.ema_decay > 0 else None
        self.step_count = 0

    def step(self, windows, elapsed_s=0.0):
        """windows: int array (micro, B, T+1). Returns (mean loss, lr multiplier, momentum)."""
        hp = self.hp
        w = torch.as_tensor(np.asarray(windows), device=self.device).long()
        for p in self.gpt.parameters():
            p.grad = None
        total = 0.0
        for m in range(w.shape[0]):
            x, y = w[m, :, :-1], w[m, :, 1:]
            with torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16,
                                enabled=self.bf16):
                loss = self.gpt(x, y)
            (loss / w.shape[0]).backward()
            total += loss.item()
        mult = lr_multiplier(hp, self.step_count, elapsed_s)
        mom = muon_momentum_at(hp, self.step_count)
        with torch.no_grad():
            for P, buf in zip(self.matrices, self.bufs):
                g = P.grad if P.grad is not None else torch.zeros_like(P)
                ref_optim.muon_step(P, buf, g, hp["matrix_lr"] * mult, mom, hp["muon_wd"],
                                    bool(hp["muon_nesterov"]), bool(hp["muoneq_r"]), hp["muon_backend_steps"],
                                    self.muon_bf16)
        for g in self.adam_groups:
            g["lr"] = g["base_lr"] * mult
        self.adam.step()
        if self.ema is not None:
            d = ema_decay_at(hp, self.step_count)
            with torch.no_grad():
                for e, p in zip(self.ema, self.gpt.parameters()):
                    e.mul_(d).add_(p, alpha=1 - d)
        self.step_count += 1
        return total / w.shape[0], mult, mom

    def arena(self, ema=False):
        """The parameters (or their EMA) as a float32 arena in the C++ layout."""
        layout, size = M.arena_layout(self.gpt)
        a = torch.zeros(size, dtype=torch.float32)
        for (_, off, n), t in zip(layout, self.ema if ema else self.gpt.parameters()):
            a[off:off + n] = t.detach().reshape(-1).float().cpu()
        return a


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="folder written by build/dump_run (run.txt, init.f32, tokens.i32)")
    ap.add_argument("--steps", type=int, default=0, help="steps to run (default: all in tokens.i32)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fp64", action="store_true", help="parameters and math in float64 (default fp32)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast around the forward")
    ap.add_argument("--muon-bf16", action="store_true", help="Newton-Schulz in bf16, as the seed and our GPU")
    ap.add_argument("--losses", help="write one full-precision loss a line here")
    ap.add_argument("--save-arena", help="write the final parameter arena (raw float32) here")
    ap.add_argument("--save-ema", help="write the final EMA arena (raw float32) here (needs ema_decay > 0)")
    ap.add_argument("--val", help="data folder: val bpb of the final (and EMA) weights over its *_val_* shards")
    ap.add_argument("--tokenizer", help="SentencePiece .model for the byte tables (default: run.txt's tokenizer_path)")
    ap.add_argument("--val-tokens", type=int, default=0, help="only the first N val tokens (default: all)")
    ap.add_argument("--val-batch", type=int, default=32, help="sequences per evaluation forward")
    ap.add_argument("--eval-bf16", action="store_true", help="bf16 autocast in the evaluation forward")
    ap.add_argument("--eval-arena", help="no training: score this raw float32 arena (needs --val)")
    ap.add_argument("--eval-ckpt", help="no training: score train's --save checkpoint, params and EMA (needs --val)")
    args = ap.parse_args()

    hp = read_run_txt(os.path.join(args.dir, "run.txt"))
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
        torch.backends.cudnn.allow_tf32 = False
    dtype = torch.float64 if args.fp64 else torch.float32
    if (args.eval_arena or args.eval_ckpt) and not args.val:
        raise SystemExit("error: --eval-arena / --eval-ckpt need --val DATA")
    if args.val:
        T = hp["train_seq_len"]
        windows = read_val_windows(args.val, T, args.val_tokens)
        nbytes = window_bytes(windows, ref_tokenizer.byte_tables(args.tokenizer or hp["tokenizer_path"]))

    def report(label, gpt):
        t0 = time.time()
        loss, bpb, ntok, nb = val_bpb(gpt, windows, nbytes, args.val_batch, args.device, args.eval_bf16)
        print(f"ref {label} val_loss {loss:.6f} val_bpb {bpb:.6f} tokens {ntok} bytes {nb} "
              f"seconds {time.time() - t0:.1f}", flush=True)

    if args.eval_arena or args.eval_ckpt:
        if args.eval_arena:
            todo = [("arena", np.fromfile(args.eval_arena, dtype="<f4"))]
        else:
            arenas = read_ckpt_arenas(args.eval_ckpt)
            todo = [("ckpt", arenas[0])] + ([("ckpt_ema", arenas[4])] if len(arenas) > 4 else [])
        for label, arena in todo:
            report(label, load_gpt(hp, arena, args.device, dtype))
        return

    arena = np.fromfile(os.path.join(args.dir, "init.f32"), dtype="<f4")
    tokens = read_tokens(os.path.join(args.dir, "tokens.i32"))
    steps = args.steps or tokens.shape[0]
    if steps > tokens.shape[0]:
        raise SystemExit(f"error: {args.dir}/tokens.i32 holds {tokens.shape[0]} steps, asked for {steps}")
    print(f"train_ref: {args.dir}: {steps} steps of {tokens.shape[1]} x ({tokens.shape[2]}, {tokens.shape[3] - 1}) "
          f"tokens, device {args.device}, {'fp64' if args.fp64 else 'fp32'}{' bf16-autocast' if args.bf16 else ''}"
          f"{' muon-bf16' if args.muon_bf16 else ''}", flush=True)
    if hp["max_wallclock_seconds"] > 0:
        print(f"train_ref: warning: max_wallclock_seconds = {hp['max_wallclock_seconds']:g}: the warmdown follows this "
              "process's own clock, so the lr differs from train's; dump with --max-wallclock-seconds 0 to compare",
              flush=True)
    tr = RefTrainer(hp, arena, args.device, dtype, args.bf16, args.muon_bf16)
    losses = []
    t_start = time.time()
    for s in range(steps):
        t0 = time.time()
        loss, mult, _ = tr.step(tokens[s], elapsed_s=time.time() - t_start)
        if args.device == "cuda":
            torch.cuda.synchronize()
        losses.append(loss)
        print(f"step {s + 1}/{steps} train_loss {loss:.6f} lr_mult {mult:.6f} step_ms {1000 * (time.time() - t0):.1f}",
              flush=True)
    if args.losses:
        with open(args.losses, "w") as f:
            f.writelines(f"{x!r}\n" for x in losses)
    if args.save_arena:
        tr.arena().numpy().astype("<f4").tofile(args.save_arena)
    if args.save_ema:
        if tr.ema is None:
            raise SystemExit("error: --save-ema: ema_decay is 0 in run.txt")
        tr.arena(ema=True).numpy().astype("<f4").tofile(args.save_ema)
    if args.val:
        report("final", tr.gpt)
        if tr.ema is not None:  # training is over: the model's tensors may take the EMA weights
            with torch.no_grad():
                for p, e in zip(tr.gpt.parameters(), tr.ema):
                    p.copy_(e)
            report("final_ema", tr.gpt)


if __name__ == "__main__":
    main()
