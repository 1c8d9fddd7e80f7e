// Reader for fixture files written by tools/ref/fixture.py (PyTorch reference
// inputs, outputs and gradients), and the comparison every test uses.
#pragma once
#include "model/common.h"
#include <doctest/doctest.h>
#include <cstring>
#include <map>
#include <string>
#include <vector>

struct FixTensor {
    int dtype = 0;               // 0 f32, 1 i32, 2 f64
    std::vector<int64_t> shape;
    std::vector<float> f;        // dtype 0 (and 2, converted)
    std::vector<double> d;       // dtype 2
    std::vector<int32_t> i;      // dtype 1
    int64_t numel() const { int64_t n = 1; for (auto s : shape) n *= s; return n; }
};

struct Fixture {
    std::string path;
    std::map<std::string, FixTensor> t;
    const FixTensor& get(const std::string& name) const {
        auto it = t.find(name);
        if (it == t.end()) FAIL("fixture " << path << " has no tensor '" << name << "'");
        return it->second;
    }
    const float* f(const std::string& name) const { return get(name).f.data(); }
    const int32_t* i(const std::string& name) const { return get(name).i.data(); }
    bool has(const std::string& name) const { return t.count(name) > 0; }
};

// Loads $FIXTURES/<case>.bin (FIXTURES is set by `make test`).
inline Fixture load_fixture(const std::string& case_name) {
    const char* dir = getenv("FIXTURES");
    Fixture fx;
    fx.path = std::string(dir ? dir : "build/fixtures") + "/" + case_name + ".bin";
    FILE* fp = fopen(fx.path.c_str(), "rb");
    if (!fp) FAIL("missing fixture " << fx.path << " (run `make fixtures`)");
    char magic[4];
    uint32_t count;
    fread_check(magic, 1, 4, fp, fx.path.c_str());
    if (memcmp(magic, "FIXT", 4) != 0) FAIL("bad fixture magic in " << fx.path);
    fread_check(&count, 4, 1, fp, fx.path.c_str());
    for (uint32_t k = 0; k < count; k++) {
        uint32_t len, dtype, ndim;
        fread_check(&len, 4, 1, fp, fx.path.c_str());
        std::string name(len, '\0');
        fread_check(&name[0], 1, len, fp, fx.path.c_str());
        fread_check(&dtype, 4, 1, fp, fx.path.c_str());
        fread_check(&ndim, 4, 1, fp, fx.path.c_str());
        FixTensor ft;
        ft.dtype = (int)dtype;
        ft.shape.resize(ndim);
        if (ndim) fread_check(ft.shape.data(), 8, ndim, fp, fx.path.c_str());
        int64_t n = ft.numel();
        if (dtype == 0) { ft.f.resize(n); fread_check(ft.f.data(), 4, n, fp, fx.path.c_str()); }
        else if (dtype == 1) { ft.i.resize(n); fread_check(ft.i.data(), 4, n, fp, fx.path.c_str()); }
        else if (dtype == 2) {
            ft.d.resize(n);
            fread_check(ft.d.data(), 8, n, fp, fx.path.c_str());
            ft.f.assign(ft.d.begin(), ft.d.end());
        } else FAIL("bad dtype in " << fx.path);
        fx.t[name] = std::move(ft);
    }
    fclose(fp);
    return fx;
}

// Relative error of `got` against `want`: max|got - want| / max|want|.
// Scaling by the tensor's largest magnitude (not elementwise) keeps near-zero
// entries from dominating; a tensor that should be all zeros is compared absolutely.
inline double rel_err(const float* got, const float* want, int64_t n) {
    double maxdiff = 0, maxref = 0;
    for (int64_t k = 0; k < n; k++) {
        double d = fabs((double)got[k] - (double)want[k]);
        if (!(d <= maxdiff)) maxdiff = d;  // NaN propagates
        maxref = fmax(maxref, fabs((double)want[k]));
    }
    return maxref > 0 ? maxdiff / maxref : maxdiff;
}

#define CHECK_CLOSE(name, got, want, n, tol)                                             \
    do {                                                                                 \
        double _e = rel_err((got), (want), (n));                                         \
        INFO(name << ": rel err " << _e << " (tol " << (tol) << ")");                    \
        CHECK(_e <= (tol));                                                              \
    } while (0)
