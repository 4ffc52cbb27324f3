/* Run-time CPU dispatch and the calibration loops (FMA, int8 multiply-add chain).
 *
 * Each SIMD path is compiled for its own target with a function attribute;
 * which one runs is decided here from what the CPU (and the OS, which must
 * save the wide registers) reports at run time. In the SIMDe test build every
 * path is plain C, and the level comes from TINYAPPROX_SIMDE_ISA instead. */
#include <stdlib.h>

#include "ta_internal.h"

int ta_abi_version(void) { return TA_ABI_VERSION; }

void ta_cpu_features(int out[8]) {
    int i;
    for (i = 0; i < 8; i++) out[i] = 0;
#if TA_CPU_X86
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

int ta_simd_emulated(void) {
#if defined(TA_SIMDE)
    return 1;
#else
    return 0;
#endif
}

#if defined(TA_SIMDE)
/* Emulated build: every kernel's best level is TINYAPPROX_SIMDE_ISA ("scalar",
 * "avx2", "avx512"; unset or empty = avx512), whatever the CPU; anything else
 * gives scalar. Read on every call so a test can change it. */
int ta_best_isa(int kernel) {
    const char *level = getenv("TINYAPPROX_SIMDE_ISA");
    (void)kernel;
    if (level == NULL || level[0] == '\0' || strcmp(level, "avx512") == 0) return TA_ISA_AVX512;
    if (strcmp(level, "avx2") == 0) return TA_ISA_AVX2;
    return TA_ISA_SCALAR;
}
#else
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
#endif

/* ---- calibration: independent u8 x s8 multiply-add chains (vpmaddubsw, vpmaddwd
 * with ones, vpaddd), the instruction sequence of the AVX2 int8 GEMM. Each chain
 * feeds its accumulator back in as the next byte operand, so no step can be
 * hoisted out of the loop; 32 (AVX2) or 64 (AVX-512BW) u8 x s8 products per step
 * and chain, 2 operations each. ---- */

static double int8_chain_scalar(int64_t iters, int32_t *sink) {
    uint32_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t it;
    int j;
    for (it = 0; it < iters; it++)
        for (j = 0; j < 8; j++) a[j] += (uint32_t)((int32_t)(uint8_t)a[j] * (int32_t)(int8_t)(j - 3));
    *sink = (int32_t)(a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7]);
    return (double)iters * 8.0 * 2.0;
}

#if TA_X86
#define TA_INT8_CHAINS 10     /* AVX2: 16 ymm registers */
#define TA_INT8_CHAINS_512 16 /* AVX-512: 32 zmm registers */

TA_TARGET_AVX2 static double int8_chain_avx2(int64_t iters, int32_t *sink) {
    __m256i a[TA_INT8_CHAINS];
    const __m256i b = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    int32_t tmp[8];
    int64_t it;
    int j;
    for (j = 0; j < TA_INT8_CHAINS; j++) a[j] = _mm256_set1_epi32(j + 1);
    for (it = 0; it < iters; it++) {
        for (j = 0; j < TA_INT8_CHAINS; j++)
            a[j] = _mm256_add_epi32(a[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a[j], b), ones));
    }
    for (j = 1; j < TA_INT8_CHAINS; j++) a[0] = _mm256_xor_si256(a[0], a[j]);
    _mm256_storeu_si256((__m256i *)tmp, a[0]);
    *sink = tmp[0] ^ tmp[7];
    return (double)iters * TA_INT8_CHAINS * 32.0 * 2.0;
}

TA_TARGET_AVX512 static double int8_chain_avx512(int64_t iters, int32_t *sink) {
    __m512i a[TA_INT8_CHAINS_512];
    const __m512i b = _mm512_set1_epi8(3), ones = _mm512_set1_epi16(1);
    int32_t tmp[16];
    int64_t it;
    int j;
    for (j = 0; j < TA_INT8_CHAINS_512; j++) a[j] = _mm512_set1_epi32(j + 1);
    for (it = 0; it < iters; it++) {
        for (j = 0; j < TA_INT8_CHAINS_512; j++)
            a[j] = _mm512_add_epi32(a[j], _mm512_madd_epi16(_mm512_maddubs_epi16(a[j], b), ones));
    }
    for (j = 1; j < TA_INT8_CHAINS_512; j++) a[0] = _mm512_xor_si512(a[0], a[j]);
    _mm512_storeu_si512((void *)tmp, a[0]);
    *sink = tmp[0] ^ tmp[15];
    return (double)iters * TA_INT8_CHAINS_512 * 64.0 * 2.0;
}
#endif

double ta_int8_chain_loop(int isa, int64_t iters, int32_t *sink) {
    int level;
    if (sink == NULL || iters < 0) return -1.0;
    if (ta_resolve_isa(TA_KERNEL_CSR, isa, &level) != TA_OK) return -1.0;
#if TA_X86
    if (level == TA_ISA_AVX512) return int8_chain_avx512(iters, sink);
    if (level == TA_ISA_AVX2) return int8_chain_avx2(iters, sink);
#endif
    return int8_chain_scalar(iters, sink);
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
