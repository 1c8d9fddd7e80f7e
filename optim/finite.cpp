// CPU twin of the non-finite check; see optim/finite.h.
#include "optim/finite.h"
#include <cmath>

void nonfinite_flags_cpu(int32_t* flags, const float* x, const std::vector<TensorSpec>& specs) {
    for (size_t i = 0; i < specs.size(); i++) {
        flags[i] = 0;
        for (int64_t j = 0; j < specs[i].numel(); j++)
            if (!std::isfinite(x[specs[i].offset + j])) { flags[i] = 1; break; }
    }
}
