// quantize_checkpoint (tools/quantize): a tiny trainer checkpoint written with checkpoint_write,
// quantized to an artifact, read back: every dequantized weight within its bit width's error
// of the checkpoint's (the chosen arena's) weights; EMA selection; Hessians; named errors.
#include "model/common.h"      // defines: Rng, fopen_check
#include "model/params.h"      // defines: param_specs, param_arena_size, param_init
#include "optim/checkpoint.h"  // defines: checkpoint_write
#include "quant/artifact.h"    // defines: artifact_read
#include "quant/export.h"      // defines: quantize_checkpoint, hessians_write
#include "quant/pack.h"        // defines: half_to_float
#include "tests/expect_fatal.h"
#include "tests/quant_config.h"
#include <cmath>
#include <unistd.h>

static std::string qtool_tmp(const char* tag) { return std::string("/tmp/test_qtool_") + std::to_string(getpid()) + "_" + tag; }

// A checkpoint with train.cu's arenas; arena a holds weights drawn with seed 10 + a.
static std::vector<std::vector<float>> write_ckpt(const std::string& path, const Config& c, int narenas) {
    const int64_t n = param_arena_size(c);
    std::vector<std::vector<float>> ar((size_t)narenas, std::vector<float>((size_t)n));
    CkptState st;
    st.step = 123;
    st.loader.assign(24, 7);
    static const char* names[] = {"params", "muon_momentum", "adam_m", "adam_v", "ema"};
    for (int a = 0; a < narenas; a++) {
        param_init(c, ar[a].data(), 10 + a);
        Rng rng(100 + a);
        for (auto& s : param_specs(c))
            for (int64_t r = 0; r < s.rows; r++) {
                const double rs = 0.02 * exp(0.5 * rng.normal());
                for (int64_t k = 0; k < s.cols; k++) ar[a][s.offset + r * s.cols + k] += (float)(rs * rng.normal());
            }
        st.arenas.push_back({names[a], ar[a].data(), n});
    }
    checkpoint_write(path.c_str(), c, st);
    return ar;
}

// Every weight of `w` against the artifact's: a matrix row at b bits is off by at most half a
// step, or by what the clip search cut off the row's largest values; fp16 scalars by 2^-11 relative.
static void check_artifact(const std::string& art, const std::vector<float>& w) {
    Config back;
    QuantModel qm;
    artifact_read(art.c_str(), &back, &qm, nullptr);
    int64_t bad = 0, checked = 0;
    for (auto& t : qm.tensors) {
        const TensorSpec& s = t.plan.spec;
        if (!t.plan.is_matrix()) {
            for (int64_t i = 0; i < s.numel(); i++, checked++)
                if (fabs((double)w[s.offset + i] - t.values[i]) > fabs(w[s.offset + i]) * 0x1p-11 + 1e-7) bad++;
            continue;
        }
        auto bits = plan_row_bits(t.plan);
        for (int64_t r = 0; r < s.rows; r++) {
            const double sc = half_to_float(t.scale[r]), qmax = (1 << (bits[r] - 1)) - 1;
            double mx = 0;
            for (int64_t k = 0; k < s.cols; k++) mx = fmax(mx, fabs(w[s.offset + r * s.cols + k]));
            const double tol = fmax(0.5 * sc, mx - qmax * sc) * (1 + 1e-6) + 1e-9;
            for (int64_t k = 0; k < s.cols; k++, checked++)
                if (fabs(w[s.offset + r * s.cols + k] - t.q[r * s.cols + k] * sc) > tol) bad++;
        }
    }
    CHECK(checked == param_count(quant_test_config()));
    CHECK(bad == 0);
}

TEST_CASE("qtool: checkpoint -> artifact, dequantized weights within the bit width's error") {
    const Config c = quant_test_config();
    const std::string ck = qtool_tmp("ema.ckpt"), art = qtool_tmp("a.art");
    auto ar = write_ckpt(ck, c, 5);
    Config cfg;  // defaults: the shapes must come from the checkpoint's header
    ExportOptions opt;
    ExportResult res;
    quantize_checkpoint(ck.c_str(), art.c_str(), &cfg, opt, &res, nullptr);
    CHECK(cfg.model_dim == c.model_dim);
    CHECK(cfg.num_layers == c.num_layers);
    CHECK(res.step == 123);
    CHECK(res.names.size() == param_specs(c).size());
    for (size_t k = 0; k < res.names.size(); k++) {
        INFO(res.names[k] << " rel_err " << res.rel_err[k]);
        CHECK(res.rel_err[k] < 0.05);  // INT6 on Gaussian rows: ~1.5e-2
    }
    check_artifact(art, ar[0]);

    Config cfg2;
    opt.ema = true;
    quantize_checkpoint(ck.c_str(), art.c_str(), &cfg2, opt, &res, nullptr);
    check_artifact(art, ar[4]);
    {  // and the EMA artifact is not the live weights' (the check above could not tell otherwise)
        Config b;
        QuantModel qm;
        artifact_read(art.c_str(), &b, &qm, nullptr);
        std::vector<float> deq((size_t)param_arena_size(c));
        dequantize_model(deq.data(), c, qm);
        double d0 = 0, d4 = 0;
        for (size_t i = 0; i < deq.size(); i++) { d0 += fabs(deq[i] - ar[0][i]); d4 += fabs(deq[i] - ar[4][i]); }
        CHECK(d4 < 0.1 * d0);
    }

    // with a Hessian for one matrix: GPTQ there, and the artifact still within the error bound
    // (GPTQ moves values by the same grid; its errors are bounded like RTN's plus the clip)
    auto plan = quant_plan(c);
    std::vector<std::vector<double>> hs(plan.size());
    size_t kq = 0;
    for (size_t k = 0; k < plan.size(); k++)
        if (plan[k].kind == TensorKind::out_proj) { kq = k; break; }
    const int64_t C = plan[kq].spec.cols;
    hs[kq].assign((size_t)(C * C), 0.0);
    for (int64_t i = 0; i < C; i++) hs[kq][i * C + i] = 1.0 + i;  // diagonal: GPTQ = RTN, errors unchanged
    const std::string hp = qtool_tmp("h.bin");
    hessians_write(hp.c_str(), c, hs);
    Config cfg3;
    ExportOptions o3;
    o3.hessians = hp.c_str();
    quantize_checkpoint(ck.c_str(), art.c_str(), &cfg3, o3, &res, nullptr);
    check_artifact(art, ar[0]);

    // row groups as streams (the default is one integer stream per tensor): same weights, another file
    ExportOptions o1 = o3;
    o1.artifact.split_groups = true;
    ExportResult r1;
    Config cfg4;
    quantize_checkpoint(ck.c_str(), art.c_str(), &cfg4, o1, &r1, nullptr);
    check_artifact(art, ar[0]);
    {
        Config b;
        QuantModel qm;
        ArtifactInfo info;
        artifact_read(art.c_str(), &b, &qm, &info);
        int in_proj_int_streams = 0;
        for (auto& st : info.streams)
            if (st.what == 1 && qm.tensors[st.tensor].plan.kind == TensorKind::in_proj) in_proj_int_streams++;
        CHECK(in_proj_int_streams == 8 * (c.num_layers - c.num_attn_layers));  // 8 row groups per Mamba layer
    }

    // size verdict from the repository root (make test runs there)
    o3.code_root = ".";
    quantize_checkpoint(ck.c_str(), art.c_str(), &cfg3, o3, &res, nullptr);
    CHECK(res.has_size);
    CHECK(res.size.model_bytes == res.artifact_bytes);
    CHECK(res.size.ok());
    unlink(ck.c_str());
    unlink(art.c_str());
    unlink(hp.c_str());
}

TEST_CASE("qtool: bad checkpoints and Hessians end in named errors") {
    const Config c = quant_test_config();
    const std::string ck = qtool_tmp("bad.ckpt"), art = qtool_tmp("bad.art"), hp = qtool_tmp("bad.h");
    write_ckpt(ck, c, 4);
    Config cfg;
    ExportOptions opt;
    ExportResult res;
    EXPECT_FATAL(quantize_checkpoint("/nonexistent/x.ckpt", art.c_str(), &cfg, opt, &res, nullptr), "cannot open '/nonexistent/x.ckpt'");
    opt.ema = true;
    EXPECT_FATAL(quantize_checkpoint(ck.c_str(), art.c_str(), &cfg, opt, &res, nullptr), "no EMA weights");
    opt.ema = false;
    {  // a flipped payload byte
        FILE* f = fopen_check(ck.c_str(), "r+b");
        fseek(f, 1024 + 24 + 4 * 1000, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, -1, SEEK_CUR);
        fputc(ch ^ 0x10, f);
        fclose(f);
    }
    EXPECT_FATAL(quantize_checkpoint(ck.c_str(), art.c_str(), &cfg, opt, &res, nullptr), "checksum mismatch");
    CHECK(access(art.c_str(), F_OK) != 0);  // nothing written from a corrupt checkpoint
    {  // truncated
        FILE* f = fopen_check(ck.c_str(), "r+b");
        CHECK(ftruncate(fileno(f), 5000) == 0);
        fclose(f);
    }
    EXPECT_FATAL(quantize_checkpoint(ck.c_str(), art.c_str(), &cfg, opt, &res, nullptr), "truncated");
    {  // not a checkpoint
        FILE* f = fopen_check(ck.c_str(), "wb");
        int32_t junk[256] = {42};
        fwrite(junk, 4, 256, f);
        fclose(f);
    }
    EXPECT_FATAL(quantize_checkpoint(ck.c_str(), art.c_str(), &cfg, opt, &res, nullptr), "wrong magic 42");

    write_ckpt(ck, c, 4);
    {  // a Hessian of the wrong size
        FILE* f = fopen_check(hp.c_str(), "wb");
        int32_t m = 0;
        while (!quant_plan(c)[m].is_matrix()) m++;
        int32_t h[5] = {kHessMagic, kHessVersion, 1, m, 7};
        fwrite(h, 4, 5, f);
        fclose(f);
    }
    opt.hessians = hp.c_str();
    EXPECT_FATAL(quantize_checkpoint(ck.c_str(), art.c_str(), &cfg, opt, &res, nullptr), "size mismatch");
    unlink(ck.c_str());
    unlink(art.c_str());
    unlink(hp.c_str());
}
