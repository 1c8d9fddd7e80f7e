// inspect: print a model artifact's header, tensors, bit widths, stream layouts, sizes
// (bytes/param by tensor kind) and checksum status; with --code-root DIR (default: the current
// directory when it holds train.cu) also the code + model total against 16,000,000.
// Exit status 1 when the artifact does not validate (the error names the problem).
//   build/inspect FILE [--code-root DIR] [--quick]   (--quick: skip measuring streams alone)
#include "model/common.h"   // defines: fatal
#include "quant/artifact.h" // defines: artifact_load, ArtifactInfo, layout_name
#include "quant/report.h"   // defines: measure_streams, print_kind_table
#include "quant/size.h"     // defines: size_report, size_print
#include <cstring>
#include <sys/stat.h>

int main(int argc, char** argv) {
    const char* path = nullptr;
    std::string code_root;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--code-root") && i + 1 < argc) code_root = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else fatal("usage: inspect FILE [--code-root DIR] [--quick]");
    }
    if (!path) fatal("usage: inspect FILE [--code-root DIR] [--quick]");
    struct stat st;
    if (code_root.empty() && stat("train.cu", &st) == 0) code_root = ".";

    // the raw header first, so that even a broken file shows what it claims
    FILE* f = fopen_check(path, "rb");
    int32_t h[256] = {0};
    size_t got = fread(h, 4, 256, f);
    fclose(f);
    printf("artifact: %s\n", path);
    if (got == 256) printf("header: magic %d (%s), version %d (this build reads %d)\n", h[0], h[0] == kArtifactMagic ? "ok" : "WRONG", h[1], kArtifactVersion);

    Config cfg;
    QuantModel qm;
    ArtifactInfo info;
    std::string err;
    if (!artifact_load(path, &cfg, &qm, &info, &err)) {
        printf("checksum/validation: FAILED: %s\n", err.c_str());
        return 1;
    }
    printf("config: vocab_size %d, model_dim %d, num_layers %d (%d attention), heads %d/%d, mlp_mult %d, d_state %d, expand %d, "
           "ssm_headdim %d, ngroups %d, chunk %d, rope_fraction %g, a_act %s\n",
           cfg.vocab_size, cfg.model_dim, cfg.num_layers, cfg.num_attn_layers, cfg.num_heads, cfg.num_kv_heads, cfg.mlp_mult, cfg.d_state,
           cfg.expand, cfg.ssm_headdim, cfg.ssm_ngroups, cfg.chunk_size, cfg.rope_fraction, cfg.a_act.c_str());
    printf("quant: matrix %d bits, embedding %d, in_proj dd_dt/dd_A %d, scalars %s\n", cfg.quant_bits_matrix, cfg.quant_bits_embed,
           cfg.quant_bits_ssm_dyn, cfg.quant_bits_scalar == 16 ? "fp16" : "fp32");
    printf("payload: %lld bytes, LZMA2 9e lc %d lp %d pb %d delta %d dict %u -> %lld bytes; file %lld bytes\n", (long long)info.payload_bytes,
           info.filter.lc, info.filter.lp, info.filter.pb, info.filter.delta, info.filter.dict, (long long)info.compressed_bytes, (long long)info.file_bytes);
    printf("checksum: header CRC32 ok, payload CRC32 %08x ok; %zu tensors, %zu streams validated against the config\n",
           info.payload_crc, qm.tensors.size(), info.streams.size());
    if (!quick) measure_streams(&info);
    printf("\n%-26s %-9s %11s  %s\n", "tensor", "kind", "shape", "streams: rows@bits layout raw->alone bytes");
    size_t si = 0;
    for (int t = 0; t < (int)qm.tensors.size(); t++) {
        const QTensor& q = qm.tensors[t];
        char shape[64];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)q.plan.spec.rows, (long long)q.plan.spec.cols);
        printf("%-26s %-9s %11s ", q.plan.spec.name.c_str(), tensor_kind_name(q.plan.kind), shape);
        for (; si < info.streams.size() && info.streams[si].tensor == t; si++) {
            const StreamInfo& s = info.streams[si];
            int bits = 16;
            for (auto& g : q.plan.groups)
                if (s.what == 1 && g.row0 <= s.row0 && s.row0 < g.row1) bits = g.bits;
            printf(" %s[%lld,%lld)@%d %s %lld", s.group.c_str(), (long long)s.row0, (long long)s.row1, bits, layout_name(s.layout),
                   (long long)s.bytes);
            if (!quick) printf("->%lld", (long long)s.alone_bytes);
        }
        printf("\n");
    }
    printf("\n");
    if (!quick) print_kind_table(info, qm, stdout);
    if (!code_root.empty()) size_print(size_report(code_root, path), stdout);
    return 0;
}
