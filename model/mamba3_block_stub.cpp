// Stand-in for the Mamba-3 mixer hook of model.h until branch mamba3 provides it (that
// branch deletes this file). Configs with Mamba-3 layers stop here with a message.
#include "model/common.h"
#include "model/model.h"

int64_t mamba3_block_act_size(const Config&, int, int) { fatal("Mamba-3 CPU layer not built yet"); }
template <typename F>
void mamba3_block_forward_cpu(F*, F*, const F*, const BlockTensors<F>&, const Config&, int, int) {
    fatal("Mamba-3 CPU layer not built yet");
}
template <typename F>
void mamba3_block_backward_cpu(F*, const BlockTensors<F>&, const F*, F*, const F*, const BlockTensors<F>&,
                               const Config&, int, int) {
    fatal("Mamba-3 CPU layer not built yet");
}
template void mamba3_block_forward_cpu<float>(float*, float*, const float*, const BlockTensors<float>&, const Config&, int, int);
template void mamba3_block_forward_cpu<double>(double*, double*, const double*, const BlockTensors<double>&, const Config&, int, int);
template void mamba3_block_backward_cpu<float>(float*, const BlockTensors<float>&, const float*, float*, const float*,
                                               const BlockTensors<float>&, const Config&, int, int);
template void mamba3_block_backward_cpu<double>(double*, const BlockTensors<double>&, const double*, double*, const double*,
                                                const BlockTensors<double>&, const Config&, int, int);
