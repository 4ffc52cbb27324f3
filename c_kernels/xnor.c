/* XNOR / popcount product of bit-packed +-1 matrices.
 *
 * A: M x W uint64 (row stride W), B: N x W uint64 (rows of B^T, stride W),
 * C: M x N int32 (row stride N), W = ceil(K / 64). Element k of a row is bit
 * k % 64 of word k / 64; bit 1 means +1, bit 0 means -1; bits at k >= K are 0
 * in both operands. Then the +-1 dot product is
 *   C[i, j] = (#agreements) - (#disagreements) = K - 2 * popcount(A_i XOR B_j).
 *
 * AVX2 has no vector popcount: each byte is split into two nibbles that index a
 * 16-entry table with vpshufb; per-byte counts accumulate for up to 31 vectors
 * (31 * 8 < 256) before vpsadbw folds them into 64-bit lanes.
 * AVX-512 VPOPCNTDQ counts 64-bit lanes directly.
 */
#include "ta_internal.h"

static inline int64_t popcount64(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int64_t)((x * 0x0101010101010101ULL) >> 56);
}

static void xnor_scalar(const uint64_t *A, int64_t M, const uint64_t *B, int64_t N, int64_t W,
                        int64_t K, int32_t *C) {
    int64_t i, j, w;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            int64_t pop = 0;
            for (w = 0; w < W; w++) pop += popcount64(A[i * W + w] ^ B[j * W + w]);
            C[i * N + j] = (int32_t)(K - 2 * pop);
        }
}

#if TA_X86

/* Rows of B processed per cache block (then all rows of A sweep over it). */
static int64_t block_rows(int64_t W) {
    int64_t nb = (192 * 1024) / (W * 8 + 1);
    return nb < 2 ? 2 : nb;
}

/* popcount(a_r XOR b_c) for a 2 x 2 tile: rows a0, a1 of A and b0, b1 of B
 * (W words each) -> pop[0..3] = (a0,b0), (a0,b1), (a1,b0), (a1,b1). */
typedef void (*tile2x2_fn)(const uint64_t *a0, const uint64_t *a1, const uint64_t *b0,
                           const uint64_t *b1, int64_t W, int64_t pop[4]);

/* popcount of each byte of v, via two nibble lookups */
#define POP_BYTES(v) \
    _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256((v), low)), \
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16((v), 4), low)))

TA_TARGET_AVX2 static int64_t hsum_epi64_avx2(__m256i v) {
    int64_t t[4];
    _mm256_storeu_si256((__m256i *)t, v);
    return t[0] + t[1] + t[2] + t[3];
}

/* tile2x2_fn on AVX2 (nibble lookup) */
TA_TARGET_AVX2 static void tile2x2_avx2(const uint64_t *a0, const uint64_t *a1,
                                        const uint64_t *b0, const uint64_t *b1, int64_t W,
                                        int64_t pop[4]) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    __m256i w00 = zero, w01 = zero, w10 = zero, w11 = zero;
    const int64_t nv = W / 4;
    int64_t v = 0, w;
    while (v < nv) {
        const int64_t end = (nv - v) > 31 ? v + 31 : nv;
        __m256i s00 = zero, s01 = zero, s10 = zero, s11 = zero;
        for (; v < end; v++) {
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(a0 + 4 * v));
            const __m256i x1 = _mm256_loadu_si256((const __m256i *)(a1 + 4 * v));
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(b0 + 4 * v));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(b1 + 4 * v));
            __m256i t;
            t = _mm256_xor_si256(x0, y0);
            s00 = _mm256_add_epi8(s00, POP_BYTES(t));
            t = _mm256_xor_si256(x0, y1);
            s01 = _mm256_add_epi8(s01, POP_BYTES(t));
            t = _mm256_xor_si256(x1, y0);
            s10 = _mm256_add_epi8(s10, POP_BYTES(t));
            t = _mm256_xor_si256(x1, y1);
            s11 = _mm256_add_epi8(s11, POP_BYTES(t));
        }
        w00 = _mm256_add_epi64(w00, _mm256_sad_epu8(s00, zero));
        w01 = _mm256_add_epi64(w01, _mm256_sad_epu8(s01, zero));
        w10 = _mm256_add_epi64(w10, _mm256_sad_epu8(s10, zero));
        w11 = _mm256_add_epi64(w11, _mm256_sad_epu8(s11, zero));
    }
    pop[0] = hsum_epi64_avx2(w00);
    pop[1] = hsum_epi64_avx2(w01);
    pop[2] = hsum_epi64_avx2(w10);
    pop[3] = hsum_epi64_avx2(w11);
    for (w = 4 * nv; w < W; w++) {
        pop[0] += (int64_t)_mm_popcnt_u64(a0[w] ^ b0[w]);
        pop[1] += (int64_t)_mm_popcnt_u64(a0[w] ^ b1[w]);
        pop[2] += (int64_t)_mm_popcnt_u64(a1[w] ^ b0[w]);
        pop[3] += (int64_t)_mm_popcnt_u64(a1[w] ^ b1[w]);
    }
}

/* tile2x2_fn on AVX-512 VPOPCNTDQ; a masked load handles W % 8 */
TA_TARGET_VPOPCNT static void tile2x2_vpopcnt(const uint64_t *a0, const uint64_t *a1,
                                              const uint64_t *b0, const uint64_t *b1, int64_t W,
                                              int64_t pop[4]) {
    __m512i s00 = _mm512_setzero_si512(), s01 = s00, s10 = s00, s11 = s00;
    int64_t w;
    for (w = 0; w < W; w += 8) {
        const __mmask8 m = (W - w) >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (W - w)) - 1u);
        const __m512i x0 = _mm512_maskz_loadu_epi64(m, a0 + w);
        const __m512i x1 = _mm512_maskz_loadu_epi64(m, a1 + w);
        const __m512i y0 = _mm512_maskz_loadu_epi64(m, b0 + w);
        const __m512i y1 = _mm512_maskz_loadu_epi64(m, b1 + w);
        s00 = _mm512_add_epi64(s00, _mm512_popcnt_epi64(_mm512_xor_si512(x0, y0)));
        s01 = _mm512_add_epi64(s01, _mm512_popcnt_epi64(_mm512_xor_si512(x0, y1)));
        s10 = _mm512_add_epi64(s10, _mm512_popcnt_epi64(_mm512_xor_si512(x1, y0)));
        s11 = _mm512_add_epi64(s11, _mm512_popcnt_epi64(_mm512_xor_si512(x1, y1)));
    }
    pop[0] = _mm512_reduce_add_epi64(s00);
    pop[1] = _mm512_reduce_add_epi64(s01);
    pop[2] = _mm512_reduce_add_epi64(s10);
    pop[3] = _mm512_reduce_add_epi64(s11);
}

/* C = K - 2 * popcount(A_i XOR B_j), 2 x 2 tiles at a time, B in cache
 * blocks of rows. An odd last row or column repeats its neighbour in the tile
 * and the duplicate result is not stored. The SIMD work is all in `tile`. */
static void xnor_tiled(tile2x2_fn tile, const uint64_t *A, int64_t M, const uint64_t *B,
                       int64_t N, int64_t W, int64_t K, int32_t *C) {
    const int64_t nb = block_rows(W);
    int64_t j0, i, j;
    int64_t pop[4];
    for (j0 = 0; j0 < N; j0 += nb) {
        const int64_t j1 = (N - j0) < nb ? N : j0 + nb;
        for (i = 0; i < M; i += 2) {
            const int64_t i1 = i + 1 < M ? i + 1 : i;
            for (j = j0; j < j1; j += 2) {
                const int64_t jj = j + 1 < j1 ? j + 1 : j;
                tile(A + i * W, A + i1 * W, B + j * W, B + jj * W, W, pop);
                C[i * N + j] = (int32_t)(K - 2 * pop[0]);
                if (jj != j) C[i * N + jj] = (int32_t)(K - 2 * pop[1]);
                if (i1 != i) {
                    C[i1 * N + j] = (int32_t)(K - 2 * pop[2]);
                    if (jj != j) C[i1 * N + jj] = (int32_t)(K - 2 * pop[3]);
                }
            }
        }
    }
}
#endif

/* Every check of ta_xnor_gemm's arguments: sizes, SIMD level, pointers,
 * alignment, zero padding bits; TA_OK (with *level resolved) or a TA_ERR_*. */
static int xnor_check_args(int isa, const uint64_t *A, int64_t M, const uint64_t *B, int64_t N,
                           int64_t W, int64_t K, const int32_t *C, int *level) {
    int64_t prod, i;
    int rc;
    const int tail = (int)(K % 64);
    if (M < 0 || N < 0 || W < 0 || K < 0 || K > INT32_MAX) return TA_ERR_SIZE;
    if (W != (K + 63) / 64) return TA_ERR_SIZE;
    if (!ta_mul_ok(M, W, TA_MAX_ELEMS, &prod) || !ta_mul_ok(N, W, TA_MAX_ELEMS, &prod) ||
        !ta_mul_ok(M, N, TA_MAX_ELEMS, &prod))
        return TA_ERR_SIZE;
    rc = ta_resolve_isa(TA_KERNEL_XNOR, isa, level);
    if (rc != TA_OK) return rc;
    if (M > 0 && N > 0 && C == NULL) return TA_ERR_NULL;
    if ((M > 0 && W > 0 && A == NULL) || (N > 0 && W > 0 && B == NULL)) return TA_ERR_NULL;
    if (!TA_ALIGNED(A, 8) || !TA_ALIGNED(B, 8) || !TA_ALIGNED(C, 4)) return TA_ERR_ALIGN;
    if (tail != 0) {
        for (i = 0; i < M; i++)
            if (A[i * W + W - 1] >> tail) return TA_ERR_PADDING;
        for (i = 0; i < N; i++)
            if (B[i * W + W - 1] >> tail) return TA_ERR_PADDING;
    }
    return TA_OK;
}

int ta_xnor_gemm(int isa, const uint64_t *A, int64_t M, const uint64_t *B, int64_t N,
                 int64_t W, int64_t K, int32_t *C) {
    int level;
    const int rc = xnor_check_args(isa, A, M, B, N, W, K, C, &level);
    if (rc != TA_OK) return rc;
    if (M == 0 || N == 0) return TA_OK;
#if TA_X86
    if (level == TA_ISA_AVX512) {
        xnor_tiled(tile2x2_vpopcnt, A, M, B, N, W, K, C);
        return TA_OK;
    }
    if (level == TA_ISA_AVX2) {
        xnor_tiled(tile2x2_avx2, A, M, B, N, W, K, C);
        return TA_OK;
    }
#endif
    xnor_scalar(A, M, B, N, W, K, C);
    return TA_OK;
}
