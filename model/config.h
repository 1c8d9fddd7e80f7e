// The one source of truth for model shapes and run settings.
// Every entry of HPARAMS is a field of Config, settable by environment variable
// (NAME in upper case, the parameter-golf convention) and by flag (--name-with-dashes);
// a flag wins over the environment. Defaults are the seed's model (spec/model.md).
// Derived sizes (head_dim, in_proj rows, attention layer positions, ...) are
// methods, never stored, so they cannot drift from the fields they come from.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

// X(type, name, default, help)   type: INT, FLOAT or STR
#define HPARAMS(X)                                                                                 \
    /* ---- model shape */                                                                         \
    X(INT, vocab_size, 8192, "vocabulary size (must match the tokenizer)")                         \
    X(INT, model_dim, 512, "d_model")                                                              \
    X(INT, num_layers, 7, "blocks")                                                                \
    X(INT, num_attn_layers, 2, "attention blocks, at round(i*n/(k+1)), i=1..k; Mamba-3 elsewhere") \
    X(INT, num_heads, 8, "attention query heads")                                                  \
    X(INT, num_kv_heads, 4, "attention key/value heads (GQA)")                                     \
    X(INT, mlp_mult, 3, "MLP hidden = mlp_mult * model_dim")                                       \
    X(FLOAT, logit_softcap, 30.0, "logits = cap * tanh(z / cap)")                                  \
    X(FLOAT, rope_base, 10000.0, "attention RoPE base")                                            \
    X(FLOAT, qk_gain_init, 1.5, "initial per-head q gain")                                         \
    X(FLOAT, tied_embed_init_std, 0.005, "embedding init std")                                     \
    X(FLOAT, norm_eps, 1.1920929e-07, "RMSNorm eps (F.rms_norm default for fp32)")                           \
    /* ---- Mamba-3 */                                                                             \
    X(INT, d_state, 64, "Mamba-3 state size N")                                                    \
    X(INT, expand, 2, "d_inner = expand * model_dim")                                              \
    X(INT, ssm_headdim, 64, "Mamba-3 head dim P")                                                  \
    X(INT, ssm_ngroups, 1, "B/C groups G")                                                         \
    X(INT, chunk_size, 64, "scan chunk L")                                                         \
    X(FLOAT, rope_fraction, 0.5, "fraction of d_state rotated (0.5 or 1.0)")                       \
    X(STR, a_act, "softplus", "A activation: softplus or heavytail")                               \
    X(FLOAT, a_floor, 1e-4, "A = -max(act(dd_A), a_floor)")                                        \
    X(FLOAT, dt_min, 1e-3, "dt_bias init: log-uniform lower bound")                                \
    X(FLOAT, dt_max, 1e-1, "dt_bias init: log-uniform upper bound")                                \
    X(FLOAT, dt_init_floor, 1e-4, "dt_bias init: floor")                                           \
    /* ---- data */                                                                                \
    X(STR, data_path, "data/datasets/debian_sp8192", "folder of *_train_*.bin / *_val_*.bin")      \
    X(STR, tokenizer_path, "data/tokenizers/debian_8192_bpe.model", "SentencePiece model")         \
    X(INT, train_seq_len, 4096, "training sequence length T")                                      \
    X(INT, train_batch_tokens, 1048576, "tokens per optimizer step, all ranks")                    \
    X(INT, micro_batch_seqs, 32, "sequences per forward/backward per GPU")                         \
    X(INT, seed, 1337, "random seed (init, data order)")                                           \
    /* ---- schedule */                                                                            \
    X(INT, iterations, 20000, "step cap (the wall-clock cap usually ends the run first)")           \
    X(FLOAT, max_wallclock_seconds, 600.0, "training wall-clock cap; 0 = none")                    \
    X(INT, warmup_steps, 20, "compile/warm-up steps, then weights and loader are reset")           \
    X(INT, warmdown_iters, 2600, "linear lr warmdown length in steps (placed by elapsed time)")     \
    X(INT, lr_warmup_steps, 0, "linear lr warmup from 0 over these steps (0 = none, the seed)")     \
    X(INT, val_loss_every, 1000, "validate every n steps (0 = only at the end)")                   \
    X(INT, train_log_every, 50, "log every n steps")                                               \
    X(INT, profile_every, 0, "time the step's phases with CUDA events every n steps (0 = never)")  \
    X(FLOAT, dist_timeout_s, 120.0, "multi-GPU: rendezvous and collective timeout, then exit 1")   \
    /* ---- optimizers */                                                                          \
    X(FLOAT, matrix_lr, 0.025, "Muon lr")                                                          \
    X(FLOAT, scalar_lr, 0.02, "Adam lr for vectors and scalars")                                   \
    X(FLOAT, tied_embed_lr, 0.05, "Adam lr for the tied embedding")                                \
    X(FLOAT, muon_momentum, 0.99, "Muon momentum")                                                 \
    X(FLOAT, muon_momentum_warmup_start, 0.85, "Muon momentum at step 0")                          \
    X(INT, muon_momentum_warmup_steps, 500, "steps to warm Muon momentum")                         \
    X(INT, muon_backend_steps, 5, "Newton-Schulz iterations")                                      \
    X(FLOAT, muon_wd, 0.04, "Muon decoupled weight decay")                                         \
    X(INT, muoneq_r, 1, "MuonEq-R: unit-norm rows before Newton-Schulz")                           \
    X(INT, muon_nesterov, 1, "Muon Nesterov momentum (g + momentum*buf)")                          \
    X(FLOAT, beta1, 0.9, "Adam beta1")                                                             \
    X(FLOAT, beta2, 0.95, "Adam beta2")                                                            \
    X(FLOAT, adam_eps, 1e-8, "Adam eps")                                                           \
    X(FLOAT, adam_wd, 0.0, "Adam decoupled weight decay (AdamW; the seed: 0)")                     \
    X(FLOAT, ema_decay, 0.997, "EMA of weights decay (0 = off)")                                   \
    X(INT, ema_warmup, 1, "EMA decay min(ema_decay, (1+t)/(10+t)) at step t; 0 = constant (seed)") \
    X(FLOAT, late_qat_threshold, 0.15, "late QAT: fake-quant matrices once lr mult < this (0 = off)")           \
    /* ---- quantization (quant/plan.h decides bits per tensor and row group from these) */        \
    X(INT, quant_bits_matrix, 6, "bits for matrix rows (2..8)")                                    \
    X(FLOAT, quant_matrix_step, 1.0, "those rows' absmax scale x this (>= 1; quant_fit raises it)")\
    X(INT, quant_auto_step, 1, "with quant_fit: matrix step from an estimate at QAT start/quant")  \
    X(INT, quant_bits_embed, 8, "bits for the tied embedding (2..8)")                              \
    X(INT, quant_bits_ssm_dyn, 8, "bits for in_proj's dd_dt and dd_A rows (2..8)")                 \
    X(INT, quant_bits_scalar, 16, "scalars and vectors: 16 = fp16, 32 = fp32")                     \
    X(FLOAT, quant_damp, 0.01, "GPTQ damping, fraction of mean diag(H)")                           \
    X(INT, quant_act_order, 1, "GPTQ: columns in order of decreasing diag(H)")                     \
    X(INT, quant_clip_search, 1, "row scales: 1 = percentile clip search, 0 = absmax")             \
    X(INT, quant_fit, 1, "over 16,000,000: absmax, fewer matrix bits as needed (>= 4)")            \
    X(INT, hessian_batches, 1, "GPTQ Hessians: training micro-batches per GPU after training (0 = RTN)") \
    X(INT, quant_ema, 1, "quantize the EMA weights (when ema_decay > 0); 0 = the live weights")     \
    /* ---- evaluation */                                                                          \
    X(STR, eval_mode, "stateful", "final eval: plain | sliding | stateful | ttt | all (eval/eval.h)")\
    X(INT, eval_stride, 64, "sliding eval: scored positions per window of train_seq_len")          \
    X(INT, eval_overlap, 1024, "stateful-overlap eval: overlap tokens")                            \
    X(INT, eval_streams, 1, "stateful-overlap eval: sub-spans per rank, run side by side (seed: 1)") \
    X(FLOAT, eval_temperature, 1.0, "logit temperature at eval, after the softcap (seed: 0.9)")    \
    X(INT, ttt_chunk_seqs, 32, "score-first TTT: sequences of train_seq_len per chunk")            \
    X(INT, ttt_epochs, 2, "score-first TTT: SGD steps on each chunk after scoring it")             \
    X(FLOAT, ttt_lr, 0.01, "score-first TTT: SGD lr")                                              \
    X(FLOAT, ttt_momentum, 0.9, "score-first TTT: SGD momentum")                                   \
    X(INT, ttt_freeze_blocks, 0, "score-first TTT: blocks 0..n-1 are not updated")

enum class AAct { softplus, heavytail };

struct Config {
#define HP_FIELD_INT(name, def) int name = def;
#define HP_FIELD_FLOAT(name, def) double name = def;
#define HP_FIELD_STR(name, def) std::string name = def;
#define HP_FIELD(type, name, def, help) HP_FIELD_##type(name, def)
    HPARAMS(HP_FIELD)
#undef HP_FIELD

    // ---- derived shapes (one place each)
    int head_dim() const { return model_dim / num_heads; }
    int qkv_rows() const { return (num_heads + 2 * num_kv_heads) * head_dim(); }
    int mlp_hidden() const { return mlp_mult * model_dim; }
    int num_encoder_layers() const { return num_layers / 2; }
    int num_decoder_layers() const { return num_layers - num_encoder_layers(); }
    int num_skips() const { return num_encoder_layers() < num_decoder_layers() ? num_encoder_layers() : num_decoder_layers(); }
    bool is_attn(int layer) const;  // layer uses attention (else Mamba-3)
    int d_inner() const { return expand * model_dim; }
    int ssm_heads() const { return d_inner() / ssm_headdim; }
    int num_angles() const { return (((int)(d_state * rope_fraction)) / 2 * 2) / 2; }  // S
    // in_proj rows, split in this order: z | x | B | C | dd_dt | dd_A | trap | angles
    int in_proj_rows() const { return 2 * d_inner() + 2 * ssm_ngroups * d_state + 3 * ssm_heads() + num_angles(); }
    int ip_z() const { return 0; }
    int ip_x() const { return d_inner(); }
    int ip_B() const { return 2 * d_inner(); }
    int ip_C() const { return ip_B() + ssm_ngroups * d_state; }
    int ip_dd_dt() const { return ip_C() + ssm_ngroups * d_state; }
    int ip_dd_A() const { return ip_dd_dt() + ssm_heads(); }
    int ip_trap() const { return ip_dd_A() + ssm_heads(); }
    int ip_angles() const { return ip_trap() + ssm_heads(); }
    AAct a_activation() const { return a_act == "heavytail" ? AAct::heavytail : AAct::softplus; }

    void validate() const;  // fatal() on inconsistent shapes, naming the fields
};

// Fill cfg from the environment, then from argv (--name value or --name=value).
// Unknown flags, bad numbers and inconsistent shapes are fatal with a message.
// Flags not in HPARAMS (the trainer's own, like --resume) are returned in `rest`.
void config_from_env_and_args(Config* cfg, int argc, char** argv, std::vector<std::string>* rest);
// One line per setting, "name = value", for the top of every log.
void config_print(const Config& cfg, FILE* out);
