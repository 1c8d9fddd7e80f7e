// Small helpers every file may use: fatal errors that name the place, checked
// file I/O, and a seeded random generator that gives the same numbers on every
// machine (the CPU reference, the GPU tests and the PyTorch fixtures never share
// an RNG: fixtures carry their inputs, so this one only has to be reproducible).
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstdarg>
#include <string>

// Print "error: <message>" and exit(1). Every bad file, flag or shape ends here,
// with the file name and the problem in the message.
[[noreturn]] inline void fatal(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    exit(1);
}

inline FILE* fopen_check(const char* path, const char* mode) {
    FILE* f = fopen(path, mode);
    if (!f) fatal("cannot open '%s' (mode %s)", path, mode);
    return f;
}
inline void fread_check(void* dst, size_t size, size_t n, FILE* f, const char* path) {
    if (fread(dst, size, n, f) != n) fatal("'%s': unexpected end of file or read error", path);
}
inline void fwrite_check(const void* src, size_t size, size_t n, FILE* f, const char* path) {
    if (fwrite(src, size, n, f) != n) fatal("'%s': write failed (disk full?)", path);
}
inline void* malloc_check(size_t bytes) {
    void* p = malloc(bytes ? bytes : 1);
    if (!p) fatal("out of host memory allocating %zu bytes", bytes);
    return p;
}

// splitmix64: tiny, seedable, identical everywhere.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
    double normal() {  // Box-Muller; one value per call keeps the stream simple
        double u1 = uniform(), u2 = uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    }
};
