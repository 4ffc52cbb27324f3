/* Run-time CPU dispatch and the FMA calibration loop.
 *
 * Each SIMD path is compiled for its own target with a function attribute;
 * which one runs is decided here from what the CPU (and the OS, which must
 * save the wide registers) reports at run time. */
#include "ta_internal.h"

int ta_abi_version(void) { return TA_ABI_VERSION; }

void ta_cpu_features(int out[8]) {
    int i;
    for (i = 0; i < 8; i++) out[i] = 0;
#if TA_X86
    __builtin_cpu_init();
    out[0] = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    out[1] = __builtin_cpu_supports("popcnt") ? 1 : 0;
    out[2] = __builtin_cpu_supports("avx2") ? 1 : 0;
    out[3] = __builtin_cpu_supports("fma") ? 1 : 0;
    out[4] = __builtin_cpu_supports("avx512f") ? 1 : 0;
    out[5] = __builtin_cpu_supports("avx512bw") ? 1 : 0;
    out[6] = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
    out[7] = __builtin_cpu_supports("avx512vpopcntdq") ? 1 : 0;
#endif
}

int ta_best_isa(int kernel) {
    int f[8];
    int avx2, avx512;
    ta_cpu_features(f);
    avx2 = f[1] && f[2] && f[3];
    avx512 = avx2 && f[4] && f[5];
    switch (kernel) {
    case TA_KERNEL_CSR:
        return avx512 ? TA_ISA_AVX512 : (avx2 ? TA_ISA_AVX2 : TA_ISA_SCALAR);
    case TA_KERNEL_INT8:
        return avx512 ? TA_ISA_AVX512 : (avx2 ? TA_ISA_AVX2 : TA_ISA_SCALAR); /* VNNI or BW */
    case TA_KERNEL_XNOR:
        return (avx512 && f[7]) ? TA_ISA_AVX512 : (avx2 ? TA_ISA_AVX2 : TA_ISA_SCALAR);
    default:
        return TA_ISA_SCALAR;
    }
}

/* ---- calibration: independent multiply-add chains, enough to hide latency ---- */

static double fma_scalar(int64_t iters, float *sink) {
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const float m = 0.999999f, c = 1e-7f;
    int64_t it;
    int j;
    for (it = 0; it < iters; it++)
        for (j = 0; j < 8; j++) a[j] = a[j] * m + c;
    *sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    return (double)iters * 8.0 * 2.0;
}

#if TA_X86
#define TA_FMA_CHAINS 10

TA_TARGET_AVX2 static double fma_avx2(int64_t iters, float *sink) {
    __m256 a[TA_FMA_CHAINS];
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    float tmp[8];
    int64_t it;
    int j;
    for (j = 0; j < TA_FMA_CHAINS; j++) a[j] = _mm256_set1_ps((float)j);
    for (it = 0; it < iters; it++) {
        for (j = 0; j < TA_FMA_CHAINS; j++) a[j] = _mm256_fmadd_ps(a[j], m, c);
    }
    for (j = 1; j < TA_FMA_CHAINS; j++) a[0] = _mm256_add_ps(a[0], a[j]);
    _mm256_storeu_ps(tmp, a[0]);
    *sink = tmp[0] + tmp[7];
    return (double)iters * TA_FMA_CHAINS * 8.0 * 2.0;
}

TA_TARGET_AVX512 static double fma_avx512(int64_t iters, float *sink) {
    __m512 a[TA_FMA_CHAINS];
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    int64_t it;
    int j;
    for (j = 0; j < TA_FMA_CHAINS; j++) a[j] = _mm512_set1_ps((float)j);
    for (it = 0; it < iters; it++) {
        for (j = 0; j < TA_FMA_CHAINS; j++) a[j] = _mm512_fmadd_ps(a[j], m, c);
    }
    for (j = 1; j < TA_FMA_CHAINS; j++) a[0] = _mm512_add_ps(a[0], a[j]);
    *sink = _mm512_reduce_add_ps(a[0]);
    return (double)iters * TA_FMA_CHAINS * 16.0 * 2.0;
}
#endif

double ta_fma_loop(int isa, int64_t iters, float *sink) {
    int level;
    if (sink == NULL || iters < 0) return -1.0;
    if (ta_resolve_isa(TA_KERNEL_CSR, isa, &level) != TA_OK) return -1.0;
#if TA_X86
    if (level == TA_ISA_AVX512) return fma_avx512(iters, sink);
    if (level == TA_ISA_AVX2) return fma_avx2(iters, sink);
#endif
    return fma_scalar(iters, sink);
}
