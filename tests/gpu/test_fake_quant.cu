// Late-QAT fake quantization on the GPU against its CPU reference (quant/fake_quant.h):
// bit-exact bf16 values on the matrix rows (the same float64 scale and code arithmetic), the
// plain bf16 cast everywhere else; two configs, weights at init scale and at 50x (wider rows).
#include "model/gemm.cuh"         // defines: cast_f32_to_bf16
#include "model/params.h"         // defines: param_arena_size, param_init
#include "quant/fake_quant.cuh"   // defines: FakeQuantGpu, fake_quant_bf16
#include "tests/gpu/gpu_util.h"
#include "tests/quant_config.h"

TEST_CASE("gpu fake quant == CPU reference, bit-exact") {
    Config seedlike;  // the default config: the real row table (25 M parameters)
    for (Config c : {quant_test_config(), seedlike}) {
        struct Case { double scale, step; };  // weights x scale; quant_fit's matrix step
        for (Case k : {Case{1.0, 1.0}, Case{50.0, 1.0}, Case{1.0, 1.84}}) {
            const double scale = k.scale;
            c.quant_matrix_step = k.step;
            const int64_t n = param_arena_size(c);
            std::vector<float> arena(n);
            param_init(c, arena.data(), 3);
            Rng rng(9);
            for (float& v : arena) v = (float)scale * (v + 0.02f * (float)rng.normal());
            std::vector<float> want(n);
            fake_quant_cpu(want.data(), arena.data(), c);
            float* d_arena = gt::to_dev(arena);
            __nv_bfloat16* d_out = gt::dev_alloc<__nv_bfloat16>(n);  // poisoned
            FakeQuantGpu f;
            fake_quant_gpu_create(&f, c);
            cast_f32_to_bf16(d_out, d_arena, n, 0);
            fake_quant_bf16(d_out, d_arena, f, 0);
            std::vector<__nv_bfloat16> got(n);
            cudaCheck(cudaMemcpy(got.data(), d_out, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost));
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) {
                const float w = __bfloat162float(__float2bfloat16(want[i]));
                const float g = __bfloat162float(got[i]);
                bad += !(g == w);  // also catches NaN left by the poison
            }
            INFO("config d " << c.model_dim << " scale " << scale << " step " << c.quant_matrix_step << ": " << bad << " of "
                 << n << " values differ");
            CHECK(bad == 0);
            fake_quant_gpu_destroy(&f);
            cudaCheck(cudaFree(d_arena));
            cudaCheck(cudaFree(d_out));
        }
    }
}
