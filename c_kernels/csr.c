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
 * strips the K x strip panel of X is copied to a contiguous aligned buffer, the
 * strip of Y is accumulated in another and copied out at the end (rows of X or
 * Y that are a power-of-two apart would otherwise crowd into a few cache
 * sets), and the nonzeros are regrouped by blocks of K so that the part of the
 * panel in use stays in L1 while all rows pass over it. On the benchmark shapes
 * the two buffers and the K blocks together roughly halve the time per nonzero.
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

/* Scratch of the main strips: the packed X panel (K x w) and Y strip (M x w),
 * each 64-byte aligned, carved from `scratch` (the caller's, if big enough) or
 * from one malloc, and the per-row cursors (M + 1 int64). get_scratch returns
 * 0 if there is no memory for them; free_scratch releases what it allocated. */
typedef struct {
    float *panel, *ybuf;
    int64_t *cursor;
    void *owned;
} csr_scratch;

static int get_scratch(int64_t M, int64_t K, int64_t w, float *scratch, int64_t nscratch,
                       csr_scratch *sc) {
    int64_t need;
    float *base = scratch;
    if (!ta_mul_ok(K + M, w, TA_MAX_ELEMS - 32, &need)) return 0;
    need += 32;
    sc->owned = NULL;
    sc->cursor = (int64_t *)malloc(sizeof(int64_t) * (size_t)(M + 1));
    if (sc->cursor == NULL) return 0;
    if (scratch == NULL || nscratch < need) {
        sc->owned = malloc(sizeof(float) * (size_t)need);
        if (sc->owned == NULL) {
            free(sc->cursor);
            return 0;
        }
        base = (float *)sc->owned;
    }
    sc->panel = (float *)(((uintptr_t)base + 63) & ~(uintptr_t)63);
    sc->ybuf = (float *)(((uintptr_t)(sc->panel + K * w) + 63) & ~(uintptr_t)63);
    return 1;
}

static void free_scratch(csr_scratch *sc) {
    free(sc->owned);
    free(sc->cursor);
}

/* Columns per block: at least `base` (a block of the panel fits L1), doubled
 * until a row has about 32 nonzeros per block on average, since each visit of
 * a row costs a load and store of its Y strip and a branch miss. K (a single
 * block) when the rows are not sorted by column. */
static int64_t block_cols(int64_t M, int64_t K, int64_t nnz, int64_t base, int sorted) {
    int64_t kb = base;
    if (!sorted || M == 0 || K == 0) return K > 0 ? K : 1;
    while (kb < K && (double)nnz * (double)kb < 32.0 * (double)M * (double)K) kb *= 2;
    return kb;
}

/* Main strip, 8 vectors = 64 columns, X panel and Y strip packed (row strides
 * 64). The columns are swept in blocks of kb: each row's nonzeros with column
 * in the block (rows sorted by column; with kb >= K any order) are applied
 * while that block of the panel sits in L1. cursor[i] remembers where row i
 * stopped. The first block writes Y, later ones update it. */
TA_TARGET_AVX2 static void strip64_avx2(int64_t M, int64_t K, int64_t kb, const int64_t *indptr,
                                        const int32_t *indices, const float *data,
                                        const float *panel, float *ybuf, int64_t ldy,
                                        int64_t *cursor) {
    int64_t k0, i, p;
    int v;
    if (kb < 1) kb = 1;
    for (i = 0; i < M; i++) cursor[i] = indptr[i];
    for (k0 = 0; k0 == 0 || k0 < K; k0 += kb) { /* at least once: writes Y when K = 0 */
        const int64_t limit = (K - k0) > kb ? k0 + kb : K;
        for (i = 0; i < M; i++) {
            const int64_t end = indptr[i + 1];
            float *yi = ybuf + i * ldy;
            __m256 acc[8];
            p = cursor[i];
            if (p == end || indices[p] >= limit) {
                if (k0 == 0)
                    for (v = 0; v < 8; v++) _mm256_storeu_ps(yi + 8 * v, _mm256_setzero_ps());
                continue;
            }
            for (v = 0; v < 8; v++)
                acc[v] = k0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(yi + 8 * v);
            for (; p < end && indices[p] < limit; p++) {
                const __m256 a = _mm256_broadcast_ss(data + p);
                const float *x = panel + (int64_t)indices[p] * 64;
                for (v = 0; v < 8; v++) acc[v] = _mm256_fmadd_ps(a, _mm256_load_ps(x + 8 * v), acc[v]);
            }
            cursor[i] = p;
            for (v = 0; v < 8; v++) _mm256_storeu_ps(yi + 8 * v, acc[v]);
        }
    }
}

TA_TARGET_AVX2 static void csr_avx2(int64_t M, int64_t K, int64_t N, int sorted,
                                    const int64_t *indptr, const int32_t *indices,
                                    const float *data, const float *X, float *Y,
                                    float *scratch, int64_t nscratch) {
    int64_t j0 = 0, i, p;
    csr_scratch sc;
    const int64_t kb = block_cols(M, K, indptr[M], 64, sorted);
    if (N >= 64 && get_scratch(M, K, 64, scratch, nscratch, &sc)) {
        for (; j0 + 64 <= N; j0 += 64) {
            pack_strip(X, K, N, j0, 64, sc.panel);
            if (kb >= K) { /* one pass over each row: write Y directly */
                strip64_avx2(M, K, kb, indptr, indices, data, sc.panel, Y + j0, N, sc.cursor);
                continue;
            }
            strip64_avx2(M, K, kb, indptr, indices, data, sc.panel, sc.ybuf, 64, sc.cursor);
            for (i = 0; i < M; i++) memcpy(Y + i * N + j0, sc.ybuf + i * 64, 64 * sizeof(float));
        }
        free_scratch(&sc);
    }
    for (; j0 + 64 <= N; j0 += 64) { CSR_AVX2_STRIP(8, X + j0, N) }
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

TA_TARGET_AVX512 static void strip128_avx512(int64_t M, int64_t K, int64_t kb,
                                             const int64_t *indptr, const int32_t *indices,
                                             const float *data, const float *panel, float *ybuf,
                                             int64_t ldy, int64_t *cursor) {
    int64_t k0, i, p;
    int v;
    if (kb < 1) kb = 1;
    for (i = 0; i < M; i++) cursor[i] = indptr[i];
    for (k0 = 0; k0 == 0 || k0 < K; k0 += kb) { /* at least once: writes Y when K = 0 */
        const int64_t limit = (K - k0) > kb ? k0 + kb : K;
        for (i = 0; i < M; i++) {
            const int64_t end = indptr[i + 1];
            float *yi = ybuf + i * ldy;
            __m512 acc[8];
            p = cursor[i];
            if (p == end || indices[p] >= limit) {
                if (k0 == 0)
                    for (v = 0; v < 8; v++) _mm512_storeu_ps(yi + 16 * v, _mm512_setzero_ps());
                continue;
            }
            for (v = 0; v < 8; v++)
                acc[v] = k0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(yi + 16 * v);
            for (; p < end && indices[p] < limit; p++) {
                const __m512 a = _mm512_set1_ps(data[p]);
                const float *x = panel + (int64_t)indices[p] * 128;
                for (v = 0; v < 8; v++) acc[v] = _mm512_fmadd_ps(a, _mm512_load_ps(x + 16 * v), acc[v]);
            }
            cursor[i] = p;
            for (v = 0; v < 8; v++) _mm512_storeu_ps(yi + 16 * v, acc[v]);
        }
    }
}

TA_TARGET_AVX512 static void csr_avx512(int64_t M, int64_t K, int64_t N, int sorted,
                                        const int64_t *indptr, const int32_t *indices,
                                        const float *data, const float *X, float *Y,
                                        float *scratch, int64_t nscratch) {
    int64_t j0 = 0, i, p;
    csr_scratch sc;
    const int64_t kb = block_cols(M, K, indptr[M], 32, sorted);
    if (N >= 128 && get_scratch(M, K, 128, scratch, nscratch, &sc)) {
        for (; j0 + 128 <= N; j0 += 128) {
            pack_strip(X, K, N, j0, 128, sc.panel);
            if (kb >= K) {
                strip128_avx512(M, K, kb, indptr, indices, data, sc.panel, Y + j0, N, sc.cursor);
                continue;
            }
            strip128_avx512(M, K, kb, indptr, indices, data, sc.panel, sc.ybuf, 128, sc.cursor);
            for (i = 0; i < M; i++) memcpy(Y + i * N + j0, sc.ybuf + i * 128, 128 * sizeof(float));
        }
        free_scratch(&sc);
    }
    for (; j0 + 128 <= N; j0 += 128) { CSR_AVX512_STRIP(8, X + j0, N) }
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

/* Every check of ta_csr_matmul_f32's arguments, in the order sizes, SIMD
 * level, pointers, alignment, indptr/indices; TA_OK or the first TA_ERR_*.
 * On TA_OK, *level is the resolved path and *sorted is 1 if every row lists
 * its columns in non-decreasing order (the SIMD paths then block over K). */
static int csr_check_args(int isa, int64_t M, int64_t K, int64_t N, int64_t nnz,
                          const int64_t *indptr, const int32_t *indices, const float *data,
                          const float *X, const float *Y, const float *scratch,
                          int64_t nscratch, int *level, int *sorted) {
    int64_t prod, i, p;
    int rc, bad = 0, unsorted = 0;
    if (M < 0 || K < 0 || N < 0 || nnz < 0) return TA_ERR_SIZE;
    if (K > INT32_MAX || M >= TA_MAX_ELEMS || nnz > TA_MAX_ELEMS) return TA_ERR_SIZE;
    if (!ta_mul_ok(M, N, TA_MAX_ELEMS, &prod) || !ta_mul_ok(K, N, TA_MAX_ELEMS, &prod))
        return TA_ERR_SIZE;
    rc = ta_resolve_isa(TA_KERNEL_CSR, isa, level);
    if (rc != TA_OK) return rc;
    if (indptr == NULL) return TA_ERR_NULL;
    if (nnz > 0 && (indices == NULL || data == NULL)) return TA_ERR_NULL;
    if (M > 0 && N > 0 && Y == NULL) return TA_ERR_NULL;
    if (K > 0 && N > 0 && nnz > 0 && X == NULL) return TA_ERR_NULL;
    if (nscratch < 0 || (scratch == NULL && nscratch > 0)) return TA_ERR_NULL;
    if (!TA_ALIGNED(indptr, 8) || !TA_ALIGNED(indices, 4) || !TA_ALIGNED(data, 4) ||
        !TA_ALIGNED(X, 4) || !TA_ALIGNED(Y, 4) || !TA_ALIGNED(scratch, 4))
        return TA_ERR_ALIGN;
    if (indptr[0] != 0 || indptr[M] != nnz) return TA_ERR_INDEX;
    for (i = 0; i < M; i++) bad |= indptr[i + 1] < indptr[i];
    for (p = 0; p < nnz; p++) bad |= (uint32_t)indices[p] >= (uint32_t)K;
    if (bad) return TA_ERR_INDEX;
    for (i = 0; i < M; i++)
        for (p = indptr[i] + 1; p < indptr[i + 1]; p++) unsorted |= indices[p] < indices[p - 1];
    *sorted = !unsorted;
    return TA_OK;
}

int ta_csr_matmul_f32(int isa, int64_t M, int64_t K, int64_t N, int64_t nnz,
                      const int64_t *indptr, const int32_t *indices, const float *data,
                      const float *X, float *Y, float *scratch, int64_t nscratch) {
    int level, sorted;
    const int rc = csr_check_args(isa, M, K, N, nnz, indptr, indices, data, X, Y, scratch,
                                  nscratch, &level, &sorted);
    if (rc != TA_OK) return rc;
    if (M == 0 || N == 0) return TA_OK;
#if TA_X86
    if (level == TA_ISA_AVX512) {
        csr_avx512(M, K, N, sorted, indptr, indices, data, X, Y, scratch, nscratch);
        return TA_OK;
    }
    if (level == TA_ISA_AVX2) {
        csr_avx2(M, K, N, sorted, indptr, indices, data, X, Y, scratch, nscratch);
        return TA_OK;
    }
#endif
    csr_scalar(M, N, indptr, indices, data, X, Y);
    return TA_OK;
}
