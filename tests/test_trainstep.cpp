// The whole training step (optim/train_step_cpu.h) against the PyTorch reference trainer
// (tools/ref/train_ref.py, float64; fixture from tools/ref/ref_trainstep.py): same initial arena,
// same batches, 8 steps of a tiny hybrid (2 Mamba-3 + 1 attention layer, 2 micro batches a step,
// lr warmup, momentum warmup and warmdown inside the 8 steps) -> same loss curve and parameters.
// And the reference trainer's val-bpb evaluator (train_ref.py --val) against train's validation.
#include "data/loader.h"           // defines: ValData, val_load
#include "data/shard.h"            // defines: shard_write
#include "data/tokenizer.h"        // defines: Tokenizer, tokenizer_parse
#include "eval/eval.h"             // defines: eval_cpu, EvalOpts
#include "optim/train_step_cpu.h"  // defines: TrainCpu, train_cpu_init, train_step_cpu
#include "optim/schedule.h"        // defines: lr_multiplier, muon_momentum_at
#include "tests/fixture.h"
#include <omp.h>
#include <unistd.h>
#include <string>
#include <vector>

static Config config_from_flags(const Fixture& fx) {
    const FixTensor& t = fx.get("cfg_flags");
    std::string flags(t.i.begin(), t.i.end());
    std::vector<std::string> words;
    for (size_t a = 0, b; a < flags.size(); a = b + 1) {
        b = flags.find(' ', a);
        if (b == std::string::npos) b = flags.size();
        if (b > a) words.push_back(flags.substr(a, b - a));
    }
    std::vector<char*> argv{(char*)"test"};
    for (auto& w : words) argv.push_back(&w[0]);
    Config c;
    config_from_env_and_args(&c, (int)argv.size(), argv.data(), nullptr);
    return c;
}

// max over steps of |loss - ref| / |ref|
static double loss_curve_err(const std::vector<double>& got, const FixTensor& want) {
    double e = 0;
    for (size_t s = 0; s < got.size(); s++) e = fmax(e, fabs(got[s] - want.d[s]) / fabs(want.d[s]));
    return e;
}

// Worst per-tensor rel_err (max|diff| / max|ref| within each tensor) of an arena against a float64 one.
template <typename F>
static double arena_err(const std::vector<TensorSpec>& specs, const std::vector<F>& got, const FixTensor& want,
                        std::string* worst) {
    double e = 0;
    for (auto& s : specs) {
        double md = 0, mr = 0;
        for (int64_t k = 0; k < s.numel(); k++) {
            double d = fabs((double)got[s.offset + k] - want.d[s.offset + k]);
            if (!(d <= md)) md = d;
            mr = fmax(mr, fabs(want.d[s.offset + k]));
        }
        double te = mr > 0 ? md / mr : md;
        if (!(te <= e)) { e = te; *worst = s.name; }
    }
    return e;
}

template <typename F>
static void run_case(const char* name, double tol_loss, double tol_params) {
    Fixture fx = load_fixture(name);
    Config c = config_from_flags(fx);
    const FixTensor& win = fx.get("windows");  // (steps, micro, B, T+1)
    REQUIRE(win.shape.size() == 4);
    const int steps = (int)win.shape[0], micro = (int)win.shape[1], B = (int)win.shape[2], T = (int)win.shape[3] - 1;

    // both sides split the arena the same way: offsets and optimizer groups
    auto specs = param_specs(c);
    const FixTensor& offs = fx.get("arena_offsets");
    const FixTensor& groups = fx.get("arena_groups");
    REQUIRE(offs.numel() == (int64_t)specs.size() + 1);
    for (size_t k = 0; k < specs.size(); k++) {
        INFO(specs[k].name);
        CHECK(offs.i[k] == specs[k].offset);
        CHECK(groups.i[k] == (int)specs[k].group);
    }
    REQUIRE(offs.i[specs.size()] == param_arena_size(c));
    REQUIRE(fx.get("arena_init").numel() == param_arena_size(c));

    // one thread: at these sizes OpenMP's fork/join per row costs 10-20x the math on a shared box
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    TrainCpu<F> tr;
    train_cpu_init(&tr, c, B, T, fx.f("arena_init"));
    std::vector<double> losses;
    std::string worst;
    for (int s = 0; s < steps; s++) {
        // the schedule twins agree (Python's lr_multiplier / muon_momentum_at vs optim/schedule.cpp)
        CHECK(fabs(lr_multiplier(c, s, 0.0) - fx.get("lr_mult").d[s]) < 1e-15);
        CHECK(fabs(muon_momentum_at(c, s) - fx.get("momentum").d[s]) < 1e-15);
        losses.push_back(train_step_cpu(&tr, win.i.data() + (int64_t)s * micro * B * (T + 1), micro, 0.0));
        if (s == 0) {
            double e1 = arena_err(specs, tr.params, fx.get("arena_step1"), &worst);
            INFO(name << " params after step 1: worst rel err " << e1 << " (" << worst << "), tol " << tol_params);
            CHECK(e1 <= tol_params);
        }
    }
    double el = loss_curve_err(losses, fx.get("losses"));
    double ep = arena_err(specs, tr.params, fx.get("arena_final"), &worst);
    MESSAGE(std::string(name) << (sizeof(F) == 4 ? " fp32" : " fp64") << ": loss curve max rel err " << el << " (tol " << tol_loss
                 << "), final params worst rel err " << ep << " (" << worst << ", tol " << tol_params << "); losses "
                 << losses.front() << " -> " << losses.back());
    omp_set_num_threads(threads);
    CHECK(el <= tol_loss);
    CHECK(ep <= tol_params);
    // the model learned something: the curve is not flat (guards against a no-op optimizer)
    CHECK(losses.back() < losses.front() - 0.5);
}

TEST_CASE("trainstep: CPU training loop == PyTorch reference trainer (float32)") {
    run_case<float>("trainstep_hybrid_v64_d32_l3", 1e-5, 3e-5);
}

TEST_CASE("trainstep: CPU training loop == PyTorch reference trainer (float64)") {
    run_case<double>("trainstep_hybrid_v64_d32_l3", 1e-10, 1e-8);
}

// train_ref.py --val scores what train's validate() scores: the fixture's val stream written as a
// shard, read by val_load (whole sequences of T; the tail dropped), the tiny SentencePiece model's
// byte tables (byte-fallback pieces included), eval_cpu's plain windows (validate()'s GPU twin).
TEST_CASE("trainstep: reference trainer's val bpb == val_load + eval_cpu plain") {
    Fixture fx = load_fixture("trainstep_valbpb_v400_d32_l3");
    Config c = config_from_flags(fx);
    const FixTensor& vt = fx.get("val_tokens");
    const std::vector<uint16_t> stream(vt.i.begin(), vt.i.end());
    char dir[] = "/tmp/golf_test_valbpb_XXXXXX";
    REQUIRE(mkdtemp(dir));
    const std::string shard = std::string(dir) + "/t_val_000000.bin";
    shard_write(shard, stream.data(), (int64_t)stream.size());
    ValData val;
    val_load(&val, dir, c.train_seq_len, 0, 1, c.vocab_size);
    unlink(shard.c_str());
    rmdir(dir);
    const FixTensor& mb = fx.get("model_bytes");
    const std::vector<uint8_t> model(mb.i.begin(), mb.i.end());
    Tokenizer tok;
    tokenizer_parse(&tok, "tiny.model", model.data(), model.size());
    std::vector<float> w(fx.get("arena").f);
    REQUIRE((int64_t)w.size() == param_arena_size(c));
    ModelTensors<float> P;
    model_tensors_bind(c, w.data(), &P);
    EvalOpts o;
    o.mode = EvalMode::plain;
    o.T = c.train_seq_len;
    const EvalOut r = eval_cpu(P, c, tok, val.tokens.data(), (int64_t)val.tokens.size(),
                               EvalSpan{0, val.num_seqs * c.train_seq_len}, o);
    const BpbResult b = bpb_result(r.sum);
    const FixTensor& want = fx.get("result");  // val_loss, val_bpb, tokens, bytes (float64)
    MESSAGE("val bpb: eval_cpu " << b.val_bpb << " vs train_ref " << want.d[1] << " (rel "
            << fabs(b.val_bpb - want.d[1]) / want.d[1] << "), tokens " << r.sum.tokens << ", bytes " << r.sum.bytes);
    CHECK(r.sum.tokens == want.d[2]);
    CHECK(r.sum.bytes == want.d[3]);
    CHECK(fabs(b.val_loss - want.d[0]) <= 1e-5 * want.d[0]);
    CHECK(fabs(b.val_bpb - want.d[1]) <= 1e-5 * want.d[1]);
}
