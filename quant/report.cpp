// Size reports by tensor kind; see quant/report.h.
#include "quant/report.h"
#include "model/common.h"
#include <map>

void measure_streams(ArtifactInfo* info) {
    const LzmaFilter f = info->filter;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < info->streams.size(); i++) {
        StreamInfo& s = info->streams[i];
        s.alone_bytes = (int64_t)lzma_raw_compress(info->payload.data() + s.offset, (size_t)s.bytes, f, lzma_dict_of(f, (size_t)s.bytes)).size();
    }
}

void print_kind_table(const ArtifactInfo& info, const QuantModel& qm, FILE* out) {
    struct Row { int64_t params = 0, raw = 0, z = 0; };
    std::map<std::string, Row> rows;  // sorted by name: "attn_proj", "in_proj.B", ...
    int64_t sum_z = 0, sum_raw = 0, sum_params = 0;
    for (auto& s : info.streams) {
        const QTensor& t = qm.tensors[s.tensor];
        std::string key = tensor_kind_name(t.plan.kind);
        if (t.plan.kind == TensorKind::in_proj) key += "." + s.group;  // ".scales" or the group ("all" when not split)
        Row& r = rows[key];
        if (s.what == 1) r.params += (s.row1 - s.row0) * t.plan.spec.cols;
        r.raw += s.bytes;
        r.z += s.alone_bytes;
        sum_z += s.alone_bytes;
        sum_raw += s.bytes;
        if (s.what == 1) sum_params += (s.row1 - s.row0) * t.plan.spec.cols;
    }
    fprintf(out, "%-18s %12s %12s %12s %10s %9s\n", "kind", "params", "raw bytes", "lzma bytes", "bytes/par", "bits/par");
    for (auto& kv : rows) {
        const Row& r = kv.second;
        if (r.params) fprintf(out, "%-18s %12lld %12lld %12lld %10.4f %9.3f\n", kv.first.c_str(), (long long)r.params, (long long)r.raw,
                              (long long)r.z, (double)r.z / r.params, 8.0 * r.z / r.params);
        else fprintf(out, "%-18s %12s %12lld %12lld\n", kv.first.c_str(), "-", (long long)r.raw, (long long)r.z);
    }
    fprintf(out, "%-18s %12lld %12lld %12lld %10.4f %9.3f   (streams compressed alone)\n", "sum", (long long)sum_params,
            (long long)sum_raw, (long long)sum_z, (double)sum_z / sum_params, 8.0 * sum_z / sum_params);
    fprintf(out, "%-18s %12lld %12lld %12lld %10.4f %9.3f   (the file: one LZMA2 stream + 1024-byte header)\n", "artifact",
            (long long)sum_params, (long long)info.payload_bytes, (long long)info.file_bytes, (double)info.file_bytes / sum_params,
            8.0 * info.file_bytes / sum_params);
}
