// train: the Parameter Golf trainer (Mamba-3 + attention hybrid), one process per GPU.
//
// The run, as the challenge's rules order it (spec/golf.md, spec/model.md):
//   1. config (env + flags), data and tokenizer checked before any GPU work; parameters from
//      param_init(cfg.seed);
//   2. warmup_steps full training steps (cuBLASLt plans, first launches), then weights, optimizer
//      state and data loader are reset: the clock starts after them;
//   3. steps until `iterations` or the wall-clock cap: gradient accumulation over micro-batches of
//      micro_batch_seqs x train_seq_len up to train_batch_tokens (all ranks), gradients all-reduced
//      (optim/dist, no-op on one GPU) and averaged, Muon on the matrices, Adam on the embedding and
//      scalars, lr multiplier by elapsed time (optim/schedule), EMA of the weights; once the
//      multiplier is below late_qat_threshold, late QAT (quant/fake_quant.h);
//   4. validation bpb over this rank's share of the whole val split every val_loss_every steps and
//      at the end (the end also with the EMA weights when ema_decay > 0; those are then the
//      weights that get quantized, unless quant_ema = 0);
//   5. the final evaluation mode(s) eval_mode (eval/eval.cuh; "all" = plain, sliding, stateful,
//      ttt) on the weights validated last (the EMA weights when ema_decay > 0);
//   6. quantization (issue 7): GPTQ Hessians from hessian_batches forward passes per GPU over the
//      training loader's next micro-batches (counted in the training time: they read training
//      data; the loop stops early enough to leave room for them), GPTQ on the GPU, the artifact
//      written atomically, the size verdict (code + artifact <= 16,000,000), then the artifact
//      read back from disk, dequantized and evaluated (plain bpb, then the eval mode(s)).
// Training time excludes validation and checkpoint writing.
// Flags beyond the HPARAMS settings: --resume PATH, --save PATH (at the end), --save-every N,
// --stop-at N (end after step N as if interrupted; the lr schedule still counts to `iterations`),
// --csv PATH (default logs/train.csv; its first line "# git <commit>", train_loss in %.17g so two
// runs compare bit for bit), --artifact PATH (default logs/model.artifact), --hessians PATH (also
// write the Hessians, quant/export.h format), --code-root DIR (the counted sources, default .),
// --eval-artifact FILE (no training: load, dequantize, evaluate).
// Log: "train: git <commit>", the config table, then one line per step
//   step N/M train_loss X ms/step Y tok/s Z left Ws
// and one per evaluation
//   step N/M val_loss X val_bpb Y          (final: "final val_loss X val_bpb Y", "final_ema ...")
// with profile_every > 0, once the phases' floors and every n steps one line (optim/phases.cuh)
//   profile step N fwd X bwd Y allreduce Z muon M adam A other O ms
// and one per final evaluation mode (before quantization, and again on the artifact)
//   eval mode=<m> val_loss X val_bpb Y tokens N bytes M seconds S windows W
// then "size: ..." and "artifact: code C + model M = T bytes; <= 16,000,000: yes|no",
//   "final_quant val_loss X val_bpb Y (pre-quant Y0, delta Z)" and last "done: ...".
// A NaN or Inf training loss, or a NaN/Inf in the all-reduced gradients (checked per tensor on the
// GPU, optim/finite.cuh), stops the run with an error naming the step (and the tensor).
#include "model/config.h"       // defines: Config, config_from_env_and_args, config_print
#include "model/params.h"       // defines: param_specs, param_count, param_arena_size, param_init
#include "model/cuda_common.cuh"  // defines: cudaCheck
#include "model/model.cuh"      // defines: GpuModel, gpu_model_create/forward/backward/..., gpu_scale
#include "data/loader.h"        // defines: TrainLoader, train_loader_*, ValData, val_load
#include "data/tokenizer.h"     // defines: Tokenizer, tokenizer_load (byte tables)
#include "data/bpb.h"           // defines: BpbResult, bpb_result
#include "optim/muon.cuh"       // defines: muon_matrices, MuonWorkspace, muon_step_sharded
#include "optim/adam.cuh"       // defines: adam_tensors, AdamPlan, adam_step
#include "optim/schedule.h"     // defines: lr_multiplier, muon_momentum_at, ema_decay_at
#include "optim/schedule.cuh"   // defines: ema_update
#include "optim/checkpoint.h"   // defines: checkpoint_write, checkpoint_read
#include "optim/dist.cuh"       // defines: Dist, dist_init, dist_all_reduce, dist_check_same
#include "optim/finite.cuh"     // defines: FiniteCheck, finite_check_create/launch/first
#include "optim/phases.cuh"     // defines: PhaseTimer, phase_start, phase_mark, phase_sums, phase_floors
#include "quant/artifact.h"     // defines: artifact_write, artifact_read, artifact_config_diff
#include "quant/export.h"       // defines: hessians_write
#include "quant/gptq.cuh"       // defines: gptq_quantize_gpu
#include "quant/hessian.cuh"    // defines: GpuHessians, hessians_*
#include "quant/size.h"         // defines: code_report, size_report, size_print, kSizeLimit
#include "quant/plan.h"         // defines: quantize_model, quant_fit_next, quant_step_for_budget
#include "quant/fake_quant.cuh" // defines: FakeQuantGpu, fake_quant_gpu_create, fake_quant_bf16
#include "eval/eval.cuh"        // defines: eval_gpu, eval_gpu_report
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

#ifndef GIT_HASH
#define GIT_HASH "unknown"  // the Makefile passes `git describe --always --dirty`
#endif

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The artifact's weights: read (every problem a named fatal), checked against this run's config,
// dequantized into a parameter arena.
static void artifact_weights(const std::string& path, const Config& cfg, std::vector<float>* arena) {
    Config acfg = cfg;
    QuantModel qm;
    artifact_read(path.c_str(), &acfg, &qm, nullptr);
    // the bit widths are the artifact's own (quant_fit may have lowered them); the shape must match
    Config want = cfg;
    want.quant_bits_matrix = acfg.quant_bits_matrix;
    want.quant_bits_embed = acfg.quant_bits_embed;
    want.quant_bits_ssm_dyn = acfg.quant_bits_ssm_dyn;
    want.quant_bits_scalar = acfg.quant_bits_scalar;
    const std::string diff = artifact_config_diff(acfg, want);
    if (!diff.empty())
        fatal("artifact '%s' was made for another config: %s (set the model's settings by flag or environment)",
              path.c_str(), diff.c_str());
    arena->assign((size_t)param_arena_size(want), 0.f);
    dequantize_model(arena->data(), want, qm);
}

struct Optim {
    std::vector<MuonMatrix> mats;
    MuonWorkspace ws;
    AdamPlan plan;
    float *muon_buf = nullptr, *adam_m = nullptr, *adam_v = nullptr, *ema = nullptr;  // arena-sized
};

int main(int argc, char** argv) {
    Config cfg;
    std::vector<std::string> rest;
    config_from_env_and_args(&cfg, argc, argv, &rest);
    std::string resume, save, csv_path = "logs/train.csv", artifact_path = "logs/model.artifact", hessians_path,
        code_root = ".", eval_path;
    int64_t save_every = 0, stop_at = -1;
    for (size_t i = 0; i < rest.size(); i++) {
        const std::string& r = rest[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= rest.size()) fatal("flag '%s' needs a value", r.c_str());
            return rest[++i];
        };
        if (r == "--help" || r == "-h") {
            printf("usage: train [--name value ...] [--resume PATH] [--save PATH] [--save-every N] [--stop-at N] [--csv PATH]\n"
                   "             [--artifact PATH] [--hessians PATH] [--code-root DIR] [--eval-artifact FILE]\n"
                   "every setting below is a flag (--model-dim 512) and an environment variable (MODEL_DIM=512);\n"
                   "flags win.\n");
            config_print(cfg, stdout);
            return 0;
        } else if (r == "--resume") resume = value();
        else if (r == "--save") save = value();
        else if (r == "--save-every" || r == "--stop-at") {
            std::string v = value();
            char* end;
            int64_t n = strtoll(v.c_str(), &end, 10);
            if (v.empty() || *end || n < 0) fatal("flag %s: '%s' is not a step count >= 0", r.c_str(), v.c_str());
            (r == "--save-every" ? save_every : stop_at) = n;
        }
        else if (r == "--csv") csv_path = value();
        else if (r == "--artifact") artifact_path = value();
        else if (r == "--hessians") hessians_path = value();
        else if (r == "--code-root") code_root = value();
        else if (r == "--eval-artifact") eval_path = value();
        else fatal("unknown flag '%s' (train --help lists the settings)", r.c_str());
    }

    Dist dist;
    dist_init(&dist, cfg.dist_timeout_s);
    const bool master = dist.rank == 0;
    if (master) {
        printf("train: git %s\n", GIT_HASH);
        config_print(cfg, stdout);
        printf("parameters: %lld (arena %lld floats)\n", (long long)param_count(cfg), (long long)param_arena_size(cfg));
    }

    // Artifact and sources first too: a bad artifact, or sources the size verdict cannot count,
    // should fail before any GPU work (not after 600 s of training).
    std::vector<float> eval_weights;
    // The counted code's bytes (xz of the sources, quant/size.h): the model gets what is left of
    // 16,000,000, less 0.2% for quant_bytes_estimate's error (quant_fit checks the real size).
    SizeReport code;  // the counted sources, once: every size verdict below reuses it
    int64_t model_budget = 0;
    if (!eval_path.empty()) artifact_weights(eval_path, cfg, &eval_weights);
    else {
        code = code_report(code_root);
        model_budget = kSizeLimit - code.code_bytes - kSizeLimit / 500;
    }

    // Data first: a bad path or tokenizer should fail before any GPU work.
    Tokenizer tok;
    tokenizer_load(&tok, cfg.tokenizer_path);
    if (tok.vocab_size() > cfg.vocab_size)
        fatal("tokenizer '%s' has %d pieces but vocab_size is %d", cfg.tokenizer_path.c_str(), tok.vocab_size(), cfg.vocab_size);
    const int B = cfg.micro_batch_seqs, T = cfg.train_seq_len;
    const int64_t micro_tokens = (int64_t)B * T * dist.world;
    if (cfg.train_batch_tokens % micro_tokens != 0)
        fatal("train_batch_tokens %d is not a multiple of micro_batch_seqs %d x train_seq_len %d x %d GPUs",
              cfg.train_batch_tokens, B, T, dist.world);
    const int accum = (int)(cfg.train_batch_tokens / micro_tokens);
    TrainLoader train;  // not opened by --eval-artifact: evaluation reads no training data
    if (eval_path.empty())
        train_loader_init(&train, cfg.data_path, B, T, dist.rank, dist.world, (uint64_t)cfg.seed, cfg.vocab_size);
    ValData val;
    val_load(&val, cfg.data_path, T, dist.rank, dist.world, cfg.vocab_size);
    if (master) {
        printf("data: %s: %lld train windows of %d+1, %lld val sequences\n", cfg.data_path.c_str(),
               (long long)(eval_path.empty() ? train.num_windows() : 0), T, (long long)val.num_seqs);
        printf("tokenizer: %s: %d pieces\n", cfg.tokenizer_path.c_str(), tok.vocab_size());
        printf("batch: %d tokens/step = %d GPUs x %d micro-batches x %d x %d\n", cfg.train_batch_tokens, dist.world,
               accum, B, T);
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, dist.local_rank));
    if (master) printf("device: %s, %d SMs, %d GPU(s)\n", prop.name, prop.multiProcessorCount, dist.world);

    cudaStream_t stream;
    cudaCheck(cudaStreamCreate(&stream));
    GpuModel m;
    gpu_model_create(&m, cfg, B, T, stream);
    const int64_t arena = m.arena;
    if (master) printf("memory: params+grads %.2f GB, activations %.2f GB\n", arena * 10.0 / 1e9, m.acts_bytes / 1e9);
    std::vector<int32_t> windows((size_t)B * (T + 1));
    double* d_red = nullptr;  // all-reduce staging for scalars
    cudaCheck(cudaMalloc(&d_red, 4 * sizeof(double)));
    FiniteCheck grad_check;  // per-tensor NaN/Inf flags of the all-reduced gradients
    finite_check_create(&grad_check, param_specs(cfg));
    PhaseTimer timer;
    phase_timer_create(&timer, 3 * accum + 8, stream);
    if (master && cfg.profile_every > 0) {
        double floor_ms[PH_COUNT];  // H100 SXM: 780 TFLOP/s bf16 reached by large GEMMs, 3.35 TB/s HBM3
        phase_floors(cfg, (int64_t)cfg.train_batch_tokens / dist.world, dist.world, 780e12, 3.35e12, floor_ms);
        phase_print(stdout, "profile floor (780 TFLOP/s, 3.35 TB/s)", floor_ms);
    }

    // Validation bpb: plain windows of train_seq_len over the whole val split (each rank its share,
    // sums all-reduced: eval/eval.cuh), at temperature 1 (eval_temperature is for the final modes).
    Config val_cfg = cfg;
    val_cfg.eval_temperature = 1.0;
    auto validate = [&]() -> BpbResult {
        return bpb_result(eval_gpu(&m, val_cfg, tok, val.tokens.data(), (int64_t)val.tokens.size(), dist, "plain").sum);
    };

    // The one evaluation of a quantized model (eval/'s GPU modes replace validate() here).
    auto evaluate_weights = [&](const std::vector<float>& weights) -> BpbResult {
        gpu_model_upload_params(&m, weights.data());
        const BpbResult r = validate();  // plain bpb: the final_quant line
        eval_gpu_report(&m, cfg, tok, val.tokens.data(), (int64_t)val.tokens.size(), dist);
        return r;
    };
    if (!eval_path.empty()) {
        const double t0 = now_s();
        const BpbResult r = evaluate_weights(eval_weights);
        if (master) printf("eval_artifact %s: val_loss %.6f val_bpb %.6f (%.1f s)\n", eval_path.c_str(), r.val_loss, r.val_bpb, now_s() - t0);
        gpu_model_destroy(&m);
        dist_destroy(&dist);
        return 0;
    }

    std::vector<float> init_params(arena, 0.f);
    param_init(cfg, init_params.data(), (uint64_t)cfg.seed);

    Optim o;
    o.mats = muon_matrices(cfg);
    muon_workspace_create(&o.ws, o.mats, arena);
    adam_plan_create(&o.plan, adam_tensors(cfg));
    for (float** b : {&o.muon_buf, &o.adam_m, &o.adam_v}) cudaCheck(cudaMalloc(b, arena * sizeof(float)));
    const bool use_ema = cfg.ema_decay > 0;
    if (use_ema) cudaCheck(cudaMalloc(&o.ema, arena * sizeof(float)));
    float* d_step_loss = nullptr;  // (accum) micro-batch mean losses of one step
    cudaCheck(cudaMalloc(&d_step_loss, accum * sizeof(float)));

    // weights from param_init, optimizer state zero, EMA = weights
    auto reset_all = [&]() {
        gpu_model_upload_params(&m, init_params.data());
        for (float* b : {o.muon_buf, o.adam_m, o.adam_v}) cudaCheck(cudaMemsetAsync(b, 0, arena * sizeof(float), stream));
        if (use_ema) cudaCheck(cudaMemcpyAsync(o.ema, m.params, arena * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        train_loader_reset(&train);
        cudaCheck(cudaStreamSynchronize(stream));
    };

    const bool use_qat = cfg.late_qat_threshold > 0;
    const bool quant_ema = use_ema && cfg.quant_ema;  // the weights that get quantized
    FakeQuantGpu fq;
    if (use_qat) fake_quant_gpu_create(&fq, cfg);
    // The matrix step late QAT trains with (0 until QAT starts; a checkpoint keeps it). With
    // quant_auto_step it is chosen once, at the first QAT step, from the weights that will be
    // quantized: the step at which their artifact is estimated to fill model_budget
    // (quant_step_for_budget), so QAT trains on the grid the artifact will have. A pure function of
    // the weights: every rank, and a rerun, choose the same step. Only with quant_fit (which sizes
    // the artifact at all); otherwise the configured quant_matrix_step.
    double qat_step = 0;
    auto choose_qat_step = [&](int64_t step, double mult) {
        qat_step = cfg.quant_matrix_step;
        int64_t est = 0;  // at the configured step
        if (cfg.quant_auto_step && cfg.quant_fit) {
            std::vector<float> w((size_t)arena);
            cudaCheck(cudaMemcpy(w.data(), quant_ema ? o.ema : m.params, arena * sizeof(float), cudaMemcpyDeviceToHost));
            qat_step = quant_step_for_budget(cfg, w.data(), model_budget, &est);
        }
        if (master)
            printf("late QAT: on from step %lld (lr multiplier %.4f), matrix step x%.4f (model estimated at %lld bytes "
                   "at x%.4f, budget %lld)\n", (long long)step, mult, qat_step, (long long)est, cfg.quant_matrix_step,
                   (long long)model_budget);
        fq.step = qat_step;
    };

    // One optimizer step; returns the mean training loss over all micro-batches and ranks. The
    // gradients' NaN/Inf flags are in grad_check.host_flags when it returns. profile: time the
    // phases (phase_sums after it returns).
    auto train_step = [&](int64_t step, double elapsed, bool profile) -> double {
        phase_start(&timer, profile);
        const double mult = lr_multiplier(cfg, step, elapsed);
        // late QAT: this step's forward/backward read the matrices on the artifact's grid; decided
        // from (step, elapsed) alone so a resumed run makes the same choice
        if (use_qat && mult < cfg.late_qat_threshold) {
            if (qat_step == 0) choose_qat_step(step, mult);
            fake_quant_bf16(m.params_bf16, m.params, fq, stream);
        }
        gpu_model_zero_grads(&m);
        for (int k = 0; k < accum; k++) {
            train_loader_next(&train, windows.data());
            gpu_model_load_batch(&m, windows.data());
            phase_mark(&timer, PH_OTHER);
            gpu_model_forward(&m, true);
            phase_mark(&timer, PH_FWD);
            gpu_model_backward(&m);
            phase_mark(&timer, PH_BWD);
            cudaCheck(cudaMemcpyAsync(d_step_loss + k, m.a.loss, sizeof(float), cudaMemcpyDeviceToDevice, stream));
        }
        dist_all_reduce(dist, m.grads, arena, ncclFloat, ncclSum, stream);
        phase_mark(&timer, PH_ALLREDUCE);
        // each micro-batch's gradient is that of its mean loss: average over micro-batches and ranks
        gpu_scale(m.grads, arena, 1.f / (float)(accum * dist.world), stream);
        finite_check_launch(&grad_check, m.grads, stream);  // same on every rank: all stop together
        phase_mark(&timer, PH_OTHER);
        MuonHyper mh{cfg.matrix_lr * mult, muon_momentum_at(cfg, step), cfg.muon_wd, cfg.muon_backend_steps,
                     cfg.muon_nesterov != 0, cfg.muoneq_r != 0};
        muon_step_sharded(m.params, o.muon_buf, m.grads, o.mats, mh, &o.ws, dist, stream);
        phase_mark(&timer, PH_MUON);
        AdamHyper ah[2] = {{cfg.tied_embed_lr * mult, cfg.beta1, cfg.beta2, cfg.adam_eps, cfg.adam_wd},
                           {cfg.scalar_lr * mult, cfg.beta1, cfg.beta2, cfg.adam_eps, cfg.adam_wd}};
        adam_step(m.params, o.adam_m, o.adam_v, m.grads, o.plan, ah, 2, step + 1, stream);
        phase_mark(&timer, PH_ADAM);
        if (use_ema) ema_update(o.ema, m.params, arena, ema_decay_at(cfg, step), stream);
        gpu_model_refresh_bf16(&m);
        phase_mark(&timer, PH_OTHER);
        std::vector<float> losses(accum);
        cudaCheck(cudaMemcpyAsync(losses.data(), d_step_loss, accum * sizeof(float), cudaMemcpyDeviceToHost, stream));
        cudaCheck(cudaStreamSynchronize(stream));
        double sum = 0;
        for (float l : losses) sum += l;
        if (dist.world > 1) {
            cudaCheck(cudaMemcpyAsync(d_red, &sum, sizeof(double), cudaMemcpyHostToDevice, stream));
            dist_all_reduce(dist, d_red, 1, ncclFloat64, ncclSum, stream);
            cudaCheck(cudaMemcpyAsync(&sum, d_red, sizeof(double), cudaMemcpyDeviceToHost, stream));
            cudaCheck(cudaStreamSynchronize(stream));
        }
        return sum / (accum * dist.world);
    };

    // checkpoint arenas: the device buffers, staged through host copies
    std::vector<std::vector<float>> host_arenas;
    std::vector<std::pair<const char*, float*>> dev_arenas = {
        {"params", m.params}, {"muon_momentum", o.muon_buf}, {"adam_m", o.adam_m}, {"adam_v", o.adam_v}};
    if (use_ema) dev_arenas.push_back({"ema", o.ema});
    auto ckpt_state = [&](CkptState* st) {
        host_arenas.assign(dev_arenas.size(), std::vector<float>(arena));
        st->arenas.clear();
        for (size_t i = 0; i < dev_arenas.size(); i++)
            st->arenas.push_back({dev_arenas[i].first, host_arenas[i].data(), arena});
        LoaderState ls = train_loader_state(train);
        st->loader.assign((const uint8_t*)&ls, (const uint8_t*)&ls + sizeof(ls));
    };
    // Called by every rank (same step, same condition); rank 0 alone writes.
    auto save_ckpt = [&](const std::string& path, int64_t step, double elapsed) {
        if (master) {
            CkptState st;
            ckpt_state(&st);
            for (size_t i = 0; i < dev_arenas.size(); i++)
                cudaCheck(cudaMemcpy(host_arenas[i].data(), dev_arenas[i].second, arena * sizeof(float), cudaMemcpyDeviceToHost));
            st.step = step;
            st.elapsed_s = elapsed;
            st.qat_step = qat_step;
            st.git_hash = GIT_HASH;
            checkpoint_write(path.c_str(), cfg, st);
            printf("checkpoint: %s (step %lld)\n", path.c_str(), (long long)step);
        }
        // Multi-GPU: the other ranks wait here, under a long watchdog timeout, while rank 0 writes
        // (~0.5 GB): otherwise they wait inside the next step's gradient all-reduce (or
        // validation's barrier) under dist_timeout_s, and a slow disk kills the run.
        dist_barrier(dist, stream, cfg.dist_timeout_s + 1800);
    };

    // A NaN/Inf loss, then a NaN/Inf gradient (the first tensor in table order), ends the run.
    auto check_finite = [&](const char* what, int64_t s, double loss) {
        if (!std::isfinite(loss)) fatal("%s %lld: train loss is %f (NaN/Inf): stopping", what, (long long)s, loss);
        int bad = finite_check_first(grad_check);
        if (bad >= 0) fatal("%s %lld: gradient of %s has NaN/Inf: stopping", what, (long long)s, grad_check.names[bad].c_str());
    };

    // ---- warm-up, then reset (the clock starts after it)
    reset_all();
    const double tw = now_s();
    for (int i = 0; i < cfg.warmup_steps; i++) check_finite("warm-up step", i, train_step(i, 0.0, false));
    if (master && cfg.warmup_steps > 0) printf("warm-up: %d steps in %.1f s, state reset\n", cfg.warmup_steps, now_s() - tw);
    reset_all();

    int64_t step = 0;
    double elapsed = 0;  // training seconds (validation and checkpoints excluded)
    if (!resume.empty()) {
        CkptState st;
        ckpt_state(&st);
        st.loader.assign(sizeof(LoaderState), 0);
        checkpoint_read(resume.c_str(), cfg, &st);
        for (size_t i = 0; i < dev_arenas.size(); i++)
            cudaCheck(cudaMemcpy(dev_arenas[i].second, host_arenas[i].data(), arena * sizeof(float), cudaMemcpyHostToDevice));
        LoaderState ls;
        memcpy(&ls, st.loader.data(), sizeof(ls));
        train_loader_restore(&train, ls);
        gpu_model_refresh_bf16(&m);
        cudaCheck(cudaStreamSynchronize(stream));
        step = st.step;
        elapsed = st.elapsed_s;
        qat_step = st.qat_step;
        if (use_qat) fq.step = qat_step > 0 ? qat_step : cfg.quant_matrix_step;
        if (master)
            printf("resumed: %s at step %lld, %.1f s trained (written by git %s)\n", resume.c_str(), (long long)step, elapsed,
                   st.git_hash.c_str());
    }

    FILE* csv = nullptr;
    if (master) {
        size_t slash = csv_path.rfind('/');
        if (slash != std::string::npos) mkdir(csv_path.substr(0, slash).c_str(), 0755);
        csv = fopen_check(csv_path.c_str(), resume.empty() ? "w" : "a");
        if (resume.empty()) fprintf(csv, "# git %s\nstep,train_loss,lr_mult,step_ms,tok_s,elapsed_s,val_loss,val_bpb\n", GIT_HASH);
        else fprintf(csv, "# resumed at step %lld by git %s\n", (long long)step, GIT_HASH);
    }
    auto log_val = [&](const char* label, int64_t s, BpbResult r) {
        if (!master) return;
        printf("%s val_loss %.6f val_bpb %.6f\n", label, r.val_loss, r.val_bpb);
        fprintf(csv, "%lld,,,,,%.3f,%.6f,%.6f\n", (long long)s, elapsed, r.val_loss, r.val_bpb);
        fflush(csv);
        fflush(stdout);
    };

    const double cap = cfg.max_wallclock_seconds;
    // room left in the cap for the Hessians' forward passes: costed as full micro-batches of the
    // last step (forward + backward), an overestimate of a forward plus the H GEMMs
    double hess_reserve = 0;
    // Multi-GPU: rank 0's step time, the same double on every rank. elapsed decides when the loop
    // stops (train_continues: ranks that disagree deadlock), the lr multiplier and late QAT (ranks
    // that disagree update the Adam tensors and apply Muon with different lrs: weights drift apart);
    // each rank's own clock differs by jitter, and a rank's step after a checkpoint would include
    // rank 0's writing time. One 8-byte broadcast a step (~tens of us; the step ends in a sync anyway).
    auto shared_seconds = [&](double t) -> double {
        if (dist.world == 1) return t;
        const int64_t off = 0, count = 1;
        const int root = 0;
        cudaCheck(cudaMemcpyAsync(d_red, &t, sizeof(double), cudaMemcpyHostToDevice, stream));
        dist_broadcast_many(dist, d_red, ncclFloat64, &off, &count, &root, 1, stream);
        cudaCheck(cudaMemcpyAsync(&t, d_red, sizeof(double), cudaMemcpyDeviceToHost, stream));
        cudaCheck(cudaStreamSynchronize(stream));
        return t;
    };
    while (train_continues(cfg, step, stop_at, elapsed, hess_reserve)) {
        const double mult = lr_multiplier(cfg, step, elapsed);
        const bool profile = cfg.profile_every > 0 && (step + 1) % cfg.profile_every == 0;
        const double t0 = now_s();
        const double loss = train_step(step, elapsed, profile);
        const double dt = shared_seconds(now_s() - t0);
        elapsed += dt;
        hess_reserve = cfg.hessian_batches * dt / accum;
        step++;
        check_finite("step", step, loss);
        double phase_ms[PH_COUNT];
        if (phase_sums(&timer, phase_ms) && master) {
            char label[64];
            snprintf(label, sizeof(label), "profile step %lld", (long long)step);
            phase_print(stdout, label, phase_ms);
        }
        if (master) {
            const double tok_s = cfg.train_batch_tokens / dt;
            printf("step %lld/%d train_loss %.4f ms/step %.1f tok/s %.0f left %.0fs\n", (long long)step, cfg.iterations,
                   loss, dt * 1e3, tok_s, cap > 0 ? std::max(cap - elapsed, 0.0) : 0.0);
            fprintf(csv, "%lld,%.17g,%.6f,%.3f,%.0f,%.3f,,\n", (long long)step, loss, mult, dt * 1e3, tok_s, elapsed);
            fflush(csv);
            fflush(stdout);
        }
        if (cfg.val_loss_every > 0 && step % cfg.val_loss_every == 0) {
            char label[64];
            snprintf(label, sizeof(label), "step %lld/%d", (long long)step, cfg.iterations);
            dist_check_same(dist, m.params, arena, "parameters", step, stream);  // multi-GPU: a silent divergence
            log_val(label, step, validate());
        }
        if (save_every > 0 && step % save_every == 0 && !save.empty()) save_ckpt(save, step, elapsed);
    }
    if (master)
        printf("trained: %lld steps in %.1f s (%.1f ms/step, %.0f tok/s)\n", (long long)step, elapsed,
               1e3 * elapsed / std::max<int64_t>(step, 1), step * (double)cfg.train_batch_tokens / std::max(elapsed, 1e-9));
    if (!save.empty()) save_ckpt(save, step, elapsed);
    dist_check_same(dist, m.params, arena, "parameters", step, stream);
    if (use_ema) dist_check_same(dist, o.ema, arena, "EMA weights", step, stream);
    const BpbResult final_live = validate();
    log_val("final", step, final_live);
    BpbResult pre_quant = final_live;
    float* backup = nullptr;  // the live weights while the EMA weights are evaluated, when the live ones get quantized
    if (use_ema) {  // evaluate the EMA weights in place of the live ones
        if (!quant_ema) {
            cudaCheck(cudaMalloc(&backup, arena * sizeof(float)));
            cudaCheck(cudaMemcpyAsync(backup, m.params, arena * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        }
        cudaCheck(cudaMemcpyAsync(m.params, o.ema, arena * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        gpu_model_refresh_bf16(&m);
        const BpbResult r = validate();
        log_val("final_ema", step, r);
        if (quant_ema) pre_quant = r;
    }
    eval_gpu_report(&m, cfg, tok, val.tokens.data(), (int64_t)val.tokens.size(), dist);  // pre-quant modes
    if (backup) {  // back to the live weights: those get quantized
        cudaCheck(cudaMemcpyAsync(m.params, backup, arena * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        gpu_model_refresh_bf16(&m);
        cudaCheck(cudaStreamSynchronize(stream));
        cudaCheck(cudaFree(backup));
    }

    // ---- quantization: Hessians (training data, so inside the cap), GPTQ, artifact, size verdict
    const double th = now_s();
    GpuHessians hs;
    hessians_create(&hs, cfg);
    for (int i = 0; i < cfg.hessian_batches; i++) {  // the training loader's next micro-batches
        train_loader_next(&train, windows.data());
        gpu_model_load_batch(&m, windows.data());
        gpu_model_forward(&m, false);
        hessians_accumulate(&hs, m);
    }
    hessians_all_reduce(&hs, dist, stream);
    cudaCheck(cudaStreamSynchronize(stream));
    elapsed += now_s() - th;
    if (master)
        printf("hessians: %d micro-batches x %d GPUs, %lld tokens, %.2f s; training + hessians %.1f s (cap %.0f s)\n",
               cfg.hessian_batches, dist.world, (long long)hs.tokens, now_s() - th, elapsed, cap);
    if (master) {
        const double tq = now_s();
        if (!hessians_path.empty() && cfg.hessian_batches > 0) {
            hessians_write(hessians_path.c_str(), cfg, hessians_to_host(hs, stream));
            printf("hessians written: %s\n", hessians_path.c_str());
        }
        std::vector<float> weights((size_t)arena);
        cudaCheck(cudaMemcpy(weights.data(), m.params, arena * sizeof(float), cudaMemcpyDeviceToHost));
        std::vector<const double*> dh;
        if (cfg.hessian_batches > 0) dh = hessians_to_device_f64(hs, stream);
        GptqOptions go;
        go.damp = cfg.quant_damp;
        go.act_order = cfg.quant_act_order != 0;
        go.clip_search = cfg.quant_clip_search != 0;
        size_t slash = artifact_path.rfind('/');
        if (slash != std::string::npos) mkdir(artifact_path.substr(0, slash).c_str(), 0755);
        // quant_fit: while code + model > 16,000,000, absmax scales (fewer distinct codes) and a
        // coarser step on the matrix rows, as much as the overshoot asks for (quant_fit_next); the
        // row scales carry the step, so the artifact needs no new field
        // the first try's step: the one QAT trained on, or coarser when the final weights are
        // estimated not to fit at it (then absmax scales: the clip search picks scales for step 1)
        Config qcfg = cfg;
        if (qat_step > 0) qcfg.quant_matrix_step = qat_step;
        if (cfg.quant_auto_step && cfg.quant_fit)
            qcfg.quant_matrix_step = std::max(qcfg.quant_matrix_step, quant_step_for_budget(qcfg, weights.data(), model_budget));
        if (qcfg.quant_matrix_step > 1) go.clip_search = false;
        for (;;) {
            QuantModel qm;
            const double tg = now_s();
            quantize_model(&qm, qcfg, weights.data(), dh.empty() ? nullptr : &dh, go, gptq_quantize_gpu);
            const double gptq_s = now_s() - tg;
            ArtifactInfo info;
            artifact_write(artifact_path.c_str(), qcfg, qm, ArtifactOptions(), &info);
            printf("quantized: %s weights, %s, INT%d matrices, %s scales x%.4f, %.1f s, all %.1f s; artifact %s: %lld bytes\n",
                   quant_ema ? "EMA" : "live", dh.empty() ? "round-to-nearest (no Hessians)" : "GPTQ",
                   qcfg.quant_bits_matrix, go.clip_search ? "clip-search" : "absmax", qcfg.quant_matrix_step, gptq_s, now_s() - tq,
                   artifact_path.c_str(), (long long)info.file_bytes);
            const SizeReport sr = size_report(code, artifact_path.c_str());
            size_print(sr, stdout);
            printf("artifact: code %lld + model %lld = %lld bytes; <= 16,000,000: %s\n", (long long)sr.code_bytes,
                   (long long)sr.model_bytes, (long long)sr.total(), sr.ok() ? "yes" : "no");
            fflush(stdout);
            QuantFitTry next{go.clip_search, qcfg.quant_matrix_step};
            if (sr.ok() || !cfg.quant_fit ||
                !quant_fit_next(&next, qcfg.quant_bits_matrix, sr.total() - kSizeLimit, sr.model_bytes, matrix_values(qcfg)))
                break;
            qcfg.quant_matrix_step = next.step;
            go.clip_search = next.clip_search;
            printf("quant_fit: over by %lld bytes: again with absmax scales, matrix step x%.4f\n",
                   (long long)(sr.total() - kSizeLimit), qcfg.quant_matrix_step);
        }
        for (const double* p : dh)
            if (p) cudaCheck(cudaFree((void*)p));
    }
    hessians_destroy(&hs);
    // the artifact is on disk for every rank; rank 0 quantized alone (GPTQ, LZMA, quant_fit's
    // retries), so the others may wait here longer than dist_timeout_s
    dist_barrier(dist, stream, cfg.dist_timeout_s + 1800);

    // ---- post-quantization evaluation: the artifact as written, read back from disk
    std::vector<float> qweights;
    artifact_weights(artifact_path, cfg, &qweights);
    const BpbResult post = evaluate_weights(qweights);
    if (master) {
        printf("final_quant val_loss %.6f val_bpb %.6f (pre-quant %.6f, delta %+.6f)\n", post.val_loss, post.val_bpb,
               pre_quant.val_bpb, post.val_bpb - pre_quant.val_bpb);
        fprintf(csv, "%lld,,,,,%.3f,%.6f,%.6f\n", (long long)step, elapsed, post.val_loss, post.val_bpb);
        printf("done: %lld steps, artifact %s\n", (long long)step, artifact_path.c_str());
    }
    if (csv) fclose(csv);
    if (use_qat) fake_quant_gpu_destroy(&fq);
    gpu_model_destroy(&m);
    dist_destroy(&dist);
    return 0;
}
