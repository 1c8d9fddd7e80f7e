// dump_run: what a training run starts from, as files the PyTorch reference trainer reads
// (tools/ref/train_ref.py), so `train` and the reference see the same initial parameters and the
// same batches in the same order.
//
//   build/dump_run --out DIR --steps K [--world W] [--cpu-train [--save-arena FILE]] [train settings]
//
// --cpu-train then runs the K steps with the CPU reference step (optim/train_step_cpu.h, float32)
// from those files' numbers and logs "step N/K train_loss X" as train and train_ref.py do, and
// with --save-arena writes the final parameters (raw float32 arena). Small configs only: it is
// the plain CPU reference (Newton-Schulz in float64 loops).
// writes (little-endian):
//   DIR/run.txt     every HPARAMS setting, "name = value" a line, floats with 17 digits
//   DIR/init.f32    param_init(cfg, arena, cfg.seed): raw float32, param_arena_size(cfg)
//                   elements in param_specs order (what `train --init-arena` loads)
//   DIR/tokens.i32  int32 header [20261125, 1, K, micro, W, B, T, 0], then int32 tokens
//                   (K, micro, W, B, T+1): for step s, micro step m, rank r the (B, T+1) windows
//                   rank r's train_loader_next hands out at that point, B = micro_batch_seqs,
//                   T = train_seq_len, micro = train_batch_tokens / (W * B * T)
// The loaders are train_loader_init(data_path, B, T, r, W, seed, vocab_size), one draw per micro
// step, as the trainer's; a warm-up that ends in train_loader_reset starts the same sequence again.
#include "data/loader.h"   // defines: TrainLoader, train_loader_init, train_loader_next
#include "model/common.h"  // defines: fatal, fopen_check, fwrite_check
#include "model/config.h"  // defines: Config, config_from_env_and_args, HPARAMS
#include "model/params.h"  // defines: param_init, param_arena_size
#include "optim/train_step_cpu.h"  // defines: TrainCpu, train_cpu_init, train_step_cpu
#include <string>
#include <vector>

static const int32_t kTokensMagic = 20261125;

static void write_run_txt(const Config& c, const std::string& path) {
    FILE* f = fopen_check(path.c_str(), "w");
#define RT_INT(name) fprintf(f, "%s = %d\n", #name, c.name);
#define RT_FLOAT(name) fprintf(f, "%s = %.17g\n", #name, c.name);
#define RT_STR(name) fprintf(f, "%s = %s\n", #name, c.name.c_str());
#define RT(type, name, def, help) RT_##type(name)
    HPARAMS(RT)
#undef RT
    if (fclose(f) != 0) fatal("'%s': write failed", path.c_str());
}

int main(int argc, char** argv) {
    Config c;
    std::vector<std::string> rest;
    config_from_env_and_args(&c, argc, argv, &rest);
    std::string out;
    int steps = 0, world = 1;
    bool cpu_train = false;
    std::string save_arena;
    for (size_t i = 0; i < rest.size(); i++) {
        auto value = [&](const char* flag) {
            if (i + 1 >= rest.size()) fatal("flag %s needs a value", flag);
            return rest[++i];
        };
        if (rest[i] == "--out") out = value("--out");
        else if (rest[i] == "--steps") steps = atoi(value("--steps").c_str());
        else if (rest[i] == "--world") world = atoi(value("--world").c_str());
        else if (rest[i] == "--cpu-train") cpu_train = true;
        else if (rest[i] == "--save-arena") save_arena = value("--save-arena");
        else fatal("dump_run: unknown flag '%s' (dump_run --out DIR --steps K [--world W] [train settings])",
                   rest[i].c_str());
    }
    if (out.empty() || steps <= 0 || world <= 0) fatal("dump_run: need --out DIR and --steps K > 0 (and --world W > 0)");
    const int B = c.micro_batch_seqs, T = c.train_seq_len;
    const int64_t per_micro = (int64_t)world * B * T;
    if (c.train_batch_tokens % per_micro != 0)
        fatal("train_batch_tokens %d is not a multiple of world*micro_batch_seqs*train_seq_len = %lld",
              c.train_batch_tokens, (long long)per_micro);
    const int micro = (int)(c.train_batch_tokens / per_micro);

    write_run_txt(c, out + "/run.txt");

    std::vector<float> arena(param_arena_size(c), 0.f);
    param_init(c, arena.data(), (uint64_t)c.seed);
    std::string ip = out + "/init.f32";
    FILE* f = fopen_check(ip.c_str(), "wb");
    fwrite_check(arena.data(), sizeof(float), arena.size(), f, ip.c_str());
    if (fclose(f) != 0) fatal("'%s': write failed", ip.c_str());

    std::vector<TrainLoader> loaders(world);
    for (int r = 0; r < world; r++)
        train_loader_init(&loaders[r], c.data_path, B, T, r, world, (uint64_t)c.seed, c.vocab_size);
    std::string tp = out + "/tokens.i32";
    f = fopen_check(tp.c_str(), "wb");
    int32_t header[8] = {kTokensMagic, 1, steps, micro, world, B, T, 0};
    fwrite_check(header, sizeof(int32_t), 8, f, tp.c_str());
    const size_t win_size = (size_t)B * (T + 1);
    std::vector<int32_t> all((size_t)steps * micro * world * win_size);
    for (int s = 0; s < steps; s++)
        for (int m = 0; m < micro; m++)
            for (int r = 0; r < world; r++)
                train_loader_next(&loaders[r], all.data() + (((size_t)s * micro + m) * world + r) * win_size);
    fwrite_check(all.data(), sizeof(int32_t), all.size(), f, tp.c_str());
    if (fclose(f) != 0) fatal("'%s': write failed", tp.c_str());
    for (auto& L : loaders) train_loader_free(&L);
    printf("dump_run: %s: %lld parameters (arena %lld floats), %d steps x %d micro x %d ranks x (%d, %d+1) tokens\n",
           out.c_str(), (long long)param_count(c), (long long)arena.size(), steps, micro, world, B, T);
    if (cpu_train) {
        if (c.max_wallclock_seconds > 0)
            printf("dump_run: warning: max_wallclock_seconds = %g: --cpu-train runs the schedule at elapsed 0 "
                   "(no warmdown); use --max-wallclock-seconds 0 to compare schedules\n", c.max_wallclock_seconds);
        TrainCpu<float> tr;
        train_cpu_init(&tr, c, B, T, arena.data());
        for (int s = 0; s < steps; s++) {
            double loss = train_step_cpu(&tr, all.data() + (size_t)s * micro * world * win_size, micro * world, 0.0);
            printf("step %d/%d train_loss %.9f\n", s + 1, steps, loss);
            fflush(stdout);
        }
        if (!save_arena.empty()) {
            f = fopen_check(save_arena.c_str(), "wb");
            fwrite_check(tr.params.data(), sizeof(float), tr.params.size(), f, save_arena.c_str());
            if (fclose(f) != 0) fatal("'%s': write failed", save_arena.c_str());
        }
    }
    return 0;
}
