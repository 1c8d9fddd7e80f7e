// Whole-model CPU forward/backward (model/model.h): loss, logits and every parameter gradient
// against tools/ref/model.py (fixtures from tools/ref/ref_model.py, float64 autograd) in
// float32 within 1e-5 relative; float64 finite differences of the whole model on a tiny config;
// arena binding against param_bind.
#include "model/model.h"   // defines: ModelTensors, ModelActs, model_*_cpu, model_acts_size
#include "model/params.h"  // defines: param_specs, param_bind, param_arena_size
#include "tests/fd.h"
#include "tests/fixture.h"
#include <cstring>
#include <omp.h>
#include <vector>

static Config config_from_fixture(const Fixture& fx, int* B, int* T) {
    const int32_t* ci = fx.i("cfg_int");
    const double* cf = fx.get("cfg_f64").d.data();
    Config c;
    c.vocab_size = ci[0];
    c.model_dim = ci[1];
    c.num_layers = ci[2];
    c.num_attn_layers = ci[3];
    c.num_heads = ci[4];
    c.num_kv_heads = ci[5];
    c.mlp_mult = ci[6];
    *B = ci[7];
    *T = ci[8];
    c.logit_softcap = cf[0];
    c.rope_base = cf[1];
    c.norm_eps = cf[2];
    c.ssm_headdim = 16;  // unused without Mamba-3 layers, but validate() checks it divides d_inner
    c.validate();
    return c;
}

TEST_CASE("model: all-attention configs vs PyTorch (loss, logits, every gradient)") {
    for (const char* name : {"model_v64_d32_l3", "model_v96_d48_l4"}) {
        Fixture fx = load_fixture(name);
        int B, T;
        Config c = config_from_fixture(fx, &B, &T);
        for (int l = 0; l < c.num_layers; l++) REQUIRE(c.is_attn(l));
        int64_t n = param_arena_size(c);
        std::vector<float> params(n, 0.f), grads(n, 0.f), acts(model_acts_size(c, B, T));
        auto specs = param_specs(c);
        for (auto& s : specs) {
            const FixTensor& t = fx.get(s.name);
            REQUIRE(t.numel() == s.numel());
            memcpy(params.data() + s.offset, t.f.data(), s.numel() * sizeof(float));
        }
        // model.py's arena_layout (the reference trainer's checkpoint view) is param_specs' layout
        const FixTensor& offs = fx.get("arena_offsets");
        REQUIRE(offs.numel() == (int64_t)specs.size() + 1);
        for (size_t k = 0; k < specs.size(); k++) CHECK(offs.i[k] == specs[k].offset);
        CHECK(offs.i[specs.size()] == n);
        CHECK(memcmp(fx.f("arena_params"), params.data(), n * sizeof(float)) == 0);
        ModelTensors<float> p, g;
        ModelActs<float> a;
        model_tensors_bind(c, params.data(), &p);
        model_tensors_bind(c, grads.data(), &g);
        model_acts_bind(c, B, T, acts.data(), &a);
        double loss = model_forward_cpu(a, fx.i("tokens"), fx.i("targets"), p, c, B, T);
        model_backward_cpu(g, a, fx.i("tokens"), fx.i("targets"), p, c, B, T);
        float lossf = (float)loss;
        CHECK_CLOSE((std::string(name) + " loss"), &lossf, fx.f("loss"), 1, 1e-5);
        CHECK_CLOSE((std::string(name) + " logits"), a.logits, fx.f("logits"), (int64_t)B * T * c.vocab_size, 1e-5);
        CHECK_CLOSE((std::string(name) + " gradient arena"), grads.data(), fx.f("arena_grads"), n, 1e-5);
        for (auto& s : specs)
            CHECK_CLOSE((std::string(name) + " grad." + s.name), grads.data() + s.offset, fx.f("grad." + s.name),
                        s.numel(), 1e-5);
    }
}

// A tiny config with an odd-length sequence, 3 layers (one skip; the last decoder has none).
static Config tiny_config() {
    Config c;
    c.vocab_size = 11;
    c.model_dim = 8;
    c.num_layers = 3;
    c.num_attn_layers = 3;
    c.num_heads = 2;
    c.num_kv_heads = 1;
    c.mlp_mult = 2;
    c.ssm_headdim = 16;  // validate() checks it divides d_inner
    c.validate();
    return c;
}

TEST_CASE("model: whole-model backward vs float64 finite differences") {
    Config c = tiny_config();
    const int B = 2, T = 5;
    int64_t n = param_arena_size(c);
    std::vector<double> params(n, 0.0), grads(n, 0.0), acts(model_acts_size(c, B, T));
    Rng rng(99);
    auto specs = param_specs(c);
    for (auto& s : specs)  // random around each init's scale, so no path is zeroed out
        for (int64_t k = 0; k < s.numel(); k++) {
            double r = rng.normal();
            double v = s.init == ONE ? 1.0 + 0.3 * r : s.init == QGAIN ? 1.5 + 0.3 * r
                     : s.init == RESID_MIX ? (k < s.cols ? 1.0 + 0.3 * r : 0.5 * r)
                     : s.init == NORMAL_EMBED ? 0.5 * r : r / sqrt((double)s.cols);
            params[s.offset + k] = v;
        }
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (int k = 0; k < B * T; k++) {
        tokens[k] = (int32_t)(rng.next() % c.vocab_size);
        targets[k] = (int32_t)(rng.next() % c.vocab_size);
    }
    ModelTensors<double> p, g;
    ModelActs<double> a;
    model_tensors_bind(c, params.data(), &p);
    model_tensors_bind(c, grads.data(), &g);
    model_acts_bind(c, B, T, acts.data(), &a);
    auto loss = [&] { return model_forward_cpu(a, tokens.data(), targets.data(), p, c, B, T); };
    loss();
    model_backward_cpu(g, a, tokens.data(), targets.data(), p, c, B, T);
    for (auto& s : specs)
        CHECK_FD(s.name, params.data() + s.offset, s.numel(), grads.data() + s.offset, loss, 1e-6);
}

TEST_CASE("model: gradients accumulate; float tensors bind where param_bind points") {
    Config c = tiny_config();
    std::vector<float> arena(param_arena_size(c));
    ModelParams mp;
    ModelTensors<float> mt;
    param_bind(c, arena.data(), &mp);
    model_tensors_bind(c, arena.data(), &mt);
    CHECK(mt.wte == mp.wte);
    CHECK(mt.skip_weight == mp.skip_weight);
    for (int l = 0; l < c.num_layers; l++) {
        CHECK(mt.blocks[l].resid_mix == mp.blocks[l].resid_mix);
        CHECK(mt.blocks[l].mlp_proj == mp.blocks[l].mlp_proj);
        CHECK(mt.blocks[l].attn_qkv == mp.blocks[l].attn_qkv);
        CHECK(mt.blocks[l].q_gain == mp.blocks[l].q_gain);
        CHECK(mt.blocks[l].in_proj == nullptr);
    }

    // two backward calls on the same step give exactly twice the gradient (+= contract)
    const int B = 1, T = 4;
    param_init(c, arena.data(), 7);
    std::vector<float> g1(arena.size(), 0.f), acts(model_acts_size(c, B, T));
    ModelTensors<float> g;
    ModelActs<float> a;
    model_tensors_bind(c, g1.data(), &g);
    model_acts_bind(c, B, T, acts.data(), &a);
    std::vector<int32_t> tok = {1, 5, 2, 9}, tgt = {5, 2, 9, 3};
    model_forward_cpu(a, tok.data(), tgt.data(), mt, c, B, T);
    model_backward_cpu(g, a, tok.data(), tgt.data(), mt, c, B, T);
    std::vector<float> once = g1;
    model_backward_cpu(g, a, tok.data(), tgt.data(), mt, c, B, T);
    double maxdiff = 0, maxg = 0;
    for (size_t k = 0; k < g1.size(); k++) {
        maxdiff = fmax(maxdiff, fabs(g1[k] - 2 * once[k]));
        maxg = fmax(maxg, fabs(once[k]));
    }
    CHECK(maxg > 0);
    CHECK(maxdiff <= 1e-6 * maxg);
}

TEST_CASE("model: forward and backward are bitwise the same for any thread count") {
    Config c = tiny_config();
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.validate();
    const int B = 3, T = 7;
    std::vector<float> params(param_arena_size(c)), acts(model_acts_size(c, B, T));
    param_init(c, params.data(), 11);
    for (auto& v : params) v += 0.01f;  // no zero projections
    std::vector<int32_t> tok(B * T), tgt(B * T);
    for (int k = 0; k < B * T; k++) {
        tok[k] = (k * 7 + 3) % c.vocab_size;
        tgt[k] = (k * 5 + 1) % c.vocab_size;
    }
    ModelTensors<float> p, g;
    ModelActs<float> a;
    model_tensors_bind(c, params.data(), &p);
    model_acts_bind(c, B, T, acts.data(), &a);
    std::vector<std::vector<float>> grads;
    std::vector<double> losses;
    int saved = omp_get_max_threads();
    for (int threads : {1, 4}) {
        omp_set_num_threads(threads);
        grads.emplace_back(params.size(), 0.f);
        model_tensors_bind(c, grads.back().data(), &g);
        losses.push_back(model_forward_cpu(a, tok.data(), tgt.data(), p, c, B, T));
        model_backward_cpu(g, a, tok.data(), tgt.data(), p, c, B, T);
    }
    omp_set_num_threads(saved);
    CHECK(losses[0] == losses[1]);
    CHECK(memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)) == 0);
}
