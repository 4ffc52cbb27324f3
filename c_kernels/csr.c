/* CSR sparse (M x K) times dense (K x N) float32 product.
 *
 * Layout: indptr[M+1] int64, indices[nnz] int32 (column of each nonzero, any
 * order, duplicates allowed and summed), data[nnz] float32; X is K x N row-major
 * (row stride N), Y is M x N row-major (row stride N).
 *
 * The SIMD paths are register-tiled over N: the columns are cut into strips of
 * a few vectors; for one strip and one row the strip of Y lives in registers
 * while the row's nonzeros stream past, each one broadcast and multiplied into
 * the matching strip of an X row (a broadcast-FMA stream). For the main
 * strips, the K x strip panel of X is first copied to a contiguous aligned
 * buffer: rows of X that are a power-of-two apart would otherwise share a few
 * cache sets. The strip loop is outermost so the panel stays in cache while
 * all rows pass over it. (Regrouping the nonzeros by blocks of K, to keep the
 * panel in L1, measured no faster on the benchmark shapes, so it is not done.)
 */
#include <stdlib.h>

#include "ta_internal.h"

#define SCALAR_STRIP 16

static void csr_scalar(int64_t M, int64_t N, const int64_t *indptr, const int32_t *indices,
                       const float *data, const float *X, float *Y) {
    int64_t j0, i, p;
    int t;
    for (j0 = 0; j0 < N; j0 += SCALAR_STRIP) {
        int w = (int)((N - j0) < SCALAR_STRIP ? (N - j0) : SCALAR_STRIP);
        for (i = 0; i < M; i++) {
            float acc[SCALAR_STRIP] = {0};
            for (p = indptr[i]; p < indptr[i + 1]; p++) {
                const float v = data[p];
                const float *x = X + (int64_t)indices[p] * N + j0;
                for (t = 0; t < w; t++) acc[t] += v * x[t];
            }
            memcpy(Y + i * N + j0, acc, (size_t)w * sizeof(float));
        }
    }
}

#if TA_X86

/* One strip of NV vectors (8 floats each) for rows [0, M); the strip of X row
 * k starts at XS + k * LDX. */
#define CSR_AVX2_STRIP(NV, XS, LDX)                                                  \
    for (i = 0; i < M; i++) {                                                         \
        __m256 acc[NV];                                                               \
        int v;                                                                        \
        for (v = 0; v < NV; v++) acc[v] = _mm256_setzero_ps();                        \
        for (p = indptr[i]; p < indptr[i + 1]; p++) {                                 \
            const __m256 b = _mm256_broadcast_ss(data + p);                           \
            const float *x = (XS) + (int64_t)indices[p] * (LDX);                      \
            for (v = 0; v < NV; v++)                                                  \
                acc[v] = _mm256_fmadd_ps(b, _mm256_loadu_ps(x + 8 * v), acc[v]);      \
        }                                                                             \
        for (v = 0; v < NV; v++) _mm256_storeu_ps(Y + i * N + j0 + 8 * v, acc[v]);    \
    }

/* Copy the K x w strip of X starting at column j0 into a contiguous, 64-byte
 * aligned buffer: rows of X are N floats apart, and with N a multiple of a
 * large power of two the strip rows would all fall in a few cache sets. */
static void pack_strip(const float *X, int64_t K, int64_t N, int64_t j0, int64_t w, float *dst) {
    int64_t k;
    for (k = 0; k < K; k++) memcpy(dst + k * w, X + k * N + j0, (size_t)w * sizeof(float));
}

/* 64-byte aligned scratch of n floats inside a malloc'd block (NULL if none). */
static float *aligned_floats(int64_t n, void **block) {
    *block = malloc((size_t)n * sizeof(float) + 64);
    if (*block == NULL) return NULL;
    return (float *)(((uintptr_t)*block + 63) & ~(uintptr_t)63);
}

TA_TARGET_AVX2 static void csr_avx2(int64_t M, int64_t K, int64_t N,
                                    const int64_t *indptr, const int32_t *indices,
                                    const float *data, const float *X, float *Y) {
    int64_t j0 = 0, i, p;
    if (N >= 64) {
        void *block = NULL;
        float *panel = aligned_floats(K * 64, &block);
        for (; j0 + 64 <= N; j0 += 64) {
            if (panel != NULL) {
                pack_strip(X, K, N, j0, 64, panel);
                CSR_AVX2_STRIP(8, panel, 64)
            } else {
                CSR_AVX2_STRIP(8, X + j0, N)
            }
        }
        free(block);
    }
    for (; j0 + 32 <= N; j0 += 32) { CSR_AVX2_STRIP(4, X + j0, N) }
    for (; j0 + 8 <= N; j0 += 8) {
        /* one vector wide: two chains (even/odd nonzeros) to hide FMA latency */
        for (i = 0; i < M; i++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            const int64_t end = indptr[i + 1];
            for (p = indptr[i]; p + 1 < end; p += 2) {
                a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(data + p),
                                     _mm256_loadu_ps(X + (int64_t)indices[p] * N + j0), a0);
                a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(data + p + 1),
                                     _mm256_loadu_ps(X + (int64_t)indices[p + 1] * N + j0), a1);
            }
            if (p < end)
                a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(data + p),
                                     _mm256_loadu_ps(X + (int64_t)indices[p] * N + j0), a0);
            _mm256_storeu_ps(Y + i * N + j0, _mm256_add_ps(a0, a1));
        }
    }
    if (j0 < N) {
        /* fewer than 8 columns left: masked loads never touch memory past the row */
        const int w = (int)(N - j0);
        int32_t lanes[8];
        int t;
        __m256i mask;
        for (t = 0; t < 8; t++) lanes[t] = t < w ? -1 : 0;
        mask = _mm256_loadu_si256((const __m256i *)lanes);
        for (i = 0; i < M; i++) {
            __m256 acc = _mm256_setzero_ps();
            for (p = indptr[i]; p < indptr[i + 1]; p++)
                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(data + p),
                                      _mm256_maskload_ps(X + (int64_t)indices[p] * N + j0, mask),
                                      acc);
            _mm256_maskstore_ps(Y + i * N + j0, mask, acc);
        }
    }
}

#define CSR_AVX512_STRIP(NV, XS, LDX)                                                \
    for (i = 0; i < M; i++) {                                                         \
        __m512 acc[NV];                                                               \
        int v;                                                                        \
        for (v = 0; v < NV; v++) acc[v] = _mm512_setzero_ps();                        \
        for (p = indptr[i]; p < indptr[i + 1]; p++) {                                 \
            const __m512 b = _mm512_set1_ps(data[p]);                                 \
            const float *x = (XS) + (int64_t)indices[p] * (LDX);                      \
            for (v = 0; v < NV; v++)                                                  \
                acc[v] = _mm512_fmadd_ps(b, _mm512_loadu_ps(x + 16 * v), acc[v]);     \
        }                                                                             \
        for (v = 0; v < NV; v++) _mm512_storeu_ps(Y + i * N + j0 + 16 * v, acc[v]);   \
    }

TA_TARGET_AVX512 static void csr_avx512(int64_t M, int64_t K, int64_t N,
                                        const int64_t *indptr, const int32_t *indices,
                                        const float *data, const float *X, float *Y) {
    int64_t j0 = 0, i, p;
    if (N >= 128) {
        void *block = NULL;
        float *panel = aligned_floats(K * 128, &block);
        for (; j0 + 128 <= N; j0 += 128) {
            if (panel != NULL) {
                pack_strip(X, K, N, j0, 128, panel);
                CSR_AVX512_STRIP(8, panel, 128)
            } else {
                CSR_AVX512_STRIP(8, X + j0, N)
            }
        }
        free(block);
    }
    for (; j0 + 32 <= N; j0 += 32) { CSR_AVX512_STRIP(2, X + j0, N) }
    for (; j0 < N; j0 += 16) {
        const int w = (int)((N - j0) < 16 ? (N - j0) : 16);
        const __mmask16 mask = (__mmask16)((1u << w) - 1u);
        for (i = 0; i < M; i++) {
            __m512 acc = _mm512_setzero_ps();
            for (p = indptr[i]; p < indptr[i + 1]; p++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(data[p]),
                                      _mm512_maskz_loadu_ps(mask, X + (int64_t)indices[p] * N + j0),
                                      acc);
            _mm512_mask_storeu_ps(Y + i * N + j0, mask, acc);
        }
    }
}
#endif

int ta_csr_matmul_f32(int isa, int64_t M, int64_t K, int64_t N, int64_t nnz,
                      const int64_t *indptr, const int32_t *indices, const float *data,
                      const float *X, float *Y) {
    int64_t prod, i, p;
    int level, rc, bad;
    if (M < 0 || K < 0 || N < 0 || nnz < 0) return TA_ERR_SIZE;
    if (K > INT32_MAX || M >= TA_MAX_ELEMS || nnz > TA_MAX_ELEMS) return TA_ERR_SIZE;
    if (!ta_mul_ok(M, N, TA_MAX_ELEMS, &prod) || !ta_mul_ok(K, N, TA_MAX_ELEMS, &prod))
        return TA_ERR_SIZE;
    rc = ta_resolve_isa(TA_KERNEL_CSR, isa, &level);
    if (rc != TA_OK) return rc;
    if (indptr == NULL) return TA_ERR_NULL;
    if (nnz > 0 && (indices == NULL || data == NULL)) return TA_ERR_NULL;
    if (M > 0 && N > 0 && Y == NULL) return TA_ERR_NULL;
    if (K > 0 && N > 0 && nnz > 0 && X == NULL) return TA_ERR_NULL;
    if (!TA_ALIGNED(indptr, 8) || !TA_ALIGNED(indices, 4) || !TA_ALIGNED(data, 4) ||
        !TA_ALIGNED(X, 4) || !TA_ALIGNED(Y, 4))
        return TA_ERR_ALIGN;
    if (indptr[0] != 0 || indptr[M] != nnz) return TA_ERR_INDEX;
    bad = 0;
    for (i = 0; i < M; i++) bad |= indptr[i + 1] < indptr[i];
    for (p = 0; p < nnz; p++) bad |= (uint32_t)indices[p] >= (uint32_t)K;
    if (bad) return TA_ERR_INDEX;
    if (M == 0 || N == 0) return TA_OK;
#if TA_X86
    if (level == TA_ISA_AVX512) {
        csr_avx512(M, K, N, indptr, indices, data, X, Y);
        return TA_OK;
    }
    if (level == TA_ISA_AVX2) {
        csr_avx2(M, K, N, indptr, indices, data, X, Y);
        return TA_OK;
    }
#endif
    (void)level;
    csr_scalar(M, N, indptr, indices, data, X, Y);
    return TA_OK;
}
