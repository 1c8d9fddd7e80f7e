// Config parsing: environment first, then flags; every value printed at start.
#include "model/config.h"
#include "model/common.h"
#include <cctype>
#include <cerrno>
#include <cstring>

bool Config::is_attn(int layer) const {
    // k attention layers among n: at round(i*n/(k+1)), i = 1..k (spec/model.md)
    // k = n would put none at layer 0 (round(n/(n+1)) = 1): n of n means every layer
    if (num_attn_layers >= num_layers) return true;
    for (int i = 1; i <= num_attn_layers; i++) {
        int at = (int)std::lround((double)i * num_layers / (num_attn_layers + 1));
        if (at == layer) return true;
    }
    return false;
}

void Config::validate() const {
    auto need = [](bool ok, const char* what) { if (!ok) fatal("config: %s", what); };
    need(vocab_size > 0 && vocab_size <= 65536, "vocab_size must be in 1..65536 (tokens are uint16)");
    need(model_dim > 0 && num_layers > 0, "model_dim and num_layers must be > 0");
    need(num_attn_layers >= 0 && num_attn_layers <= num_layers, "num_attn_layers must be in 0..num_layers");
    need(num_heads > 0 && model_dim % num_heads == 0, "model_dim must be a multiple of num_heads");
    need(num_kv_heads > 0 && num_heads % num_kv_heads == 0, "num_heads must be a multiple of num_kv_heads");
    need(head_dim() % 2 == 0, "head_dim must be even (RoPE pairs)");
    need(mlp_mult > 0, "mlp_mult must be > 0");
    need(logit_softcap > 0, "logit_softcap must be > 0");
    need(d_state > 0 && (d_state & (d_state - 1)) == 0, "d_state must be a power of two");
    need(ssm_headdim > 0 && (ssm_headdim & (ssm_headdim - 1)) == 0, "ssm_headdim must be a power of two");
    need(d_inner() % ssm_headdim == 0, "expand*model_dim must be a multiple of ssm_headdim");
    need(ssm_ngroups > 0 && ssm_heads() % ssm_ngroups == 0, "ssm heads must be a multiple of ssm_ngroups");
    need(chunk_size > 0 && (chunk_size & (chunk_size - 1)) == 0, "chunk_size must be a power of two");
    need(rope_fraction == 0.5 || rope_fraction == 1.0, "rope_fraction must be 0.5 or 1.0");
    need(num_angles() > 0, "d_state*rope_fraction must give at least one angle pair");
    need(a_act == "softplus" || a_act == "heavytail", "a_act must be softplus or heavytail");
    need(train_seq_len > 0 && micro_batch_seqs > 0, "train_seq_len and micro_batch_seqs must be > 0");
    need(train_batch_tokens > 0, "train_batch_tokens must be > 0");
    need(eval_mode == "plain" || eval_mode == "sliding" || eval_mode == "stateful" || eval_mode == "ttt" ||
             eval_mode == "all",
         "eval_mode must be plain, sliding, stateful, ttt or all");
    need(eval_stride >= 1 && eval_stride <= train_seq_len, "eval_stride must be in 1..train_seq_len");
    need(eval_overlap >= 0 && eval_overlap < train_seq_len, "eval_overlap must be in 0..train_seq_len-1");
    need(eval_streams >= 1, "eval_streams must be >= 1");
    need(eval_temperature > 0, "eval_temperature must be > 0");
    need(ttt_chunk_seqs >= 1 && ttt_epochs >= 0, "ttt_chunk_seqs must be >= 1 and ttt_epochs >= 0");
    need(hessian_batches >= 0 && quant_damp >= 0, "hessian_batches and quant_damp must be >= 0");
    need(ttt_freeze_blocks >= 0 && ttt_freeze_blocks <= num_layers, "ttt_freeze_blocks must be in 0..num_layers");
}

static std::string to_upper(const std::string& s) {
    std::string r = s;
    for (auto& c : r) c = (char)toupper((unsigned char)c);
    return r;
}
static std::string to_flag(const std::string& s) {
    std::string r = "--" + s;
    for (auto& c : r) if (c == '_') c = '-';
    return r;
}

static void set_int(int* dst, const char* v, const char* name, const char* src) {
    char* end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < -2147483647L || x > 2147483647L)
        fatal("%s: '%s' is not an integer (for %s)", src, v, name);
    *dst = (int)x;
}
static void set_float(double* dst, const char* v, const char* name, const char* src) {
    char* end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || end == v || !std::isfinite(x)) fatal("%s: '%s' is not a number (for %s)", src, v, name);
    *dst = x;
}
static void set_str(std::string* dst, const char* v, const char*, const char*) { *dst = v; }

#define HP_SET_INT set_int
#define HP_SET_FLOAT set_float
#define HP_SET_STR set_str

void config_from_env_and_args(Config* cfg, int argc, char** argv, std::vector<std::string>* rest) {
#define HP_ENV(type, name, def, help)                                          \
    {                                                                          \
        std::string env = to_upper(#name);                                     \
        if (const char* v = getenv(env.c_str())) HP_SET_##type(&cfg->name, v, #name, ("env " + env).c_str()); \
    }
    HPARAMS(HP_ENV)
#undef HP_ENV
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        std::string key = arg, val;
        bool has_val = false;
        size_t eq = arg.find('=');
        if (arg.rfind("--", 0) == 0 && eq != std::string::npos) { key = arg.substr(0, eq); val = arg.substr(eq + 1); has_val = true; }
        bool matched = false;
#define HP_FLAG(type, name, def, help)                                                   \
        if (!matched && key == to_flag(#name)) {                                         \
            matched = true;                                                              \
            if (!has_val) {                                                              \
                if (i + 1 >= argc) fatal("flag %s needs a value", key.c_str());          \
                val = argv[++i];                                                         \
            }                                                                            \
            HP_SET_##type(&cfg->name, val.c_str(), #name, ("flag " + key).c_str());      \
        }
        HPARAMS(HP_FLAG)
#undef HP_FLAG
        if (!matched) {
            if (!rest) fatal("unknown flag '%s' (see the settings printed by --help)", arg.c_str());
            rest->push_back(arg);
        }
    }
    cfg->validate();
}

void config_print(const Config& cfg, FILE* out) {
#define HP_PRINT_INT(name) fprintf(out, "  %-28s = %d\n", #name, cfg.name);
#define HP_PRINT_FLOAT(name) fprintf(out, "  %-28s = %g\n", #name, cfg.name);
#define HP_PRINT_STR(name) fprintf(out, "  %-28s = %s\n", #name, cfg.name.c_str());
#define HP_PRINT(type, name, def, help) HP_PRINT_##type(name)
    fprintf(out, "config:\n");
    HPARAMS(HP_PRINT)
#undef HP_PRINT
    fprintf(out, "  layers: ");
    for (int l = 0; l < cfg.num_layers; l++) fprintf(out, "%s%s", l ? " " : "", cfg.is_attn(l) ? "attn" : "mamba3");
    fprintf(out, "\n");
}
