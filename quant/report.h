// Artifact size reports: bytes per parameter by tensor kind (attention, in_proj by row group,
// out_proj, MLP, embedding, scalars). A single LZMA stream cannot be split by tensor, so each
// stream is measured compressed on its own (same filter, preset 9e): the per-kind numbers add up
// to about the real total, which is printed beside them.
#pragma once
#include "quant/artifact.h"
#include <cstdio>

// Fills alone_bytes of every stream from info->payload (as artifact_load leaves it).
void measure_streams(ArtifactInfo* info);
// One line per kind (and per in_proj row group): parameters, raw bytes, compressed bytes,
// bytes/param, bits/param; then the sum and the real compressed size.
void print_kind_table(const ArtifactInfo& info, const QuantModel& qm, FILE* out);
