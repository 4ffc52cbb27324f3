/* XNOR / popcount product of bit-packed +-1 matrices, and the fused binary layer.
 *
 * A: M x W uint64 (row stride W), B: N x W uint64 (rows of B^T, stride W),
 * C: M x N int32 (row stride N), W = ceil(K / 64). Element k of a row is bit
 * k % 64 of word k / 64; bit 1 means +1, bit 0 means -1; bits at k >= K are 0
 * in both operands. Then the +-1 dot product is
 *   C[i, j] = (#agreements) - (#disagreements) = K - 2 * popcount(A_i XOR B_j).
 * The binary layer thresholds C[i, j] per column j and packs the signs into
 * bits (M x ceil(N/64) uint64, same bit order) for the next layer.
 *
 * Register blocking: a tile of MR rows of A times several rows of B is computed
 * at once, so each loaded vector serves several dot products and the counts stay
 * in registers until the tile is done. Cache blocking: a block of rows of A
 * (about 256 KiB, in L2) meets a strip of rows of B (AVX-512: 32 rows, in L1;
 * otherwise about 384 KiB, in L2) and every tile of the pair is computed before
 * moving on, so each operand is fetched from memory a bounded number of times.
 *
 * AVX-512 VPOPCNTDQ: 4 rows of A x 32 rows of B per tile, B interleaved in
 * groups of 8 rows so that the lanes of the accumulators are 8 finished dot
 * products (see strip_vpopcnt). AVX2 has no vector popcount: 2 x 2 tiles, each
 * byte split into two nibbles that index a 16-entry table with vpshufb; byte
 * counts accumulate for up to 31 vectors (31 * 8 < 256) before vpsadbw folds
 * them into 64-bit lanes. Threads split the rows of A (tiles of MR rows); every
 * output is computed by exactly one thread, exactly.
 */
#include <stdlib.h>

#include "ta_internal.h"

#define MAX_MR 4 /* rows of A per tile, at most */

/* One call's work, shared read-only by the threads (each writes its own rows). */
typedef struct xnor_job xnor_job;
/* Dots of rows [i, i + rows) of A (rows <= the path's MR) against rows [j0, j1)
 * of B: dst[r * ldd + (j - j0)] = K - 2 * popcount(A_{i+r} XOR B_j). */
typedef void (*strip_fn)(const xnor_job *job, int64_t i, int rows, int64_t j0, int64_t j1,
                         int32_t *dst, int64_t ldd);

struct xnor_job {
    const uint64_t *A, *B;
    int64_t M, N, W, K;
    int32_t *C;                  /* dots, or NULL in threshold mode */
    const int32_t *thr;          /* threshold mode: thresholds[N], flip[N], */
    const uint8_t *flip;         /* output bits (M x ow words)               */
    uint64_t *bits;
    int64_t ow;
    int mr, nr;
    strip_fn strip;
    int64_t jt, mb;              /* columns per strip call, rows of A per cache block */
    int64_t groups, units;       /* tiles of mr rows of A; work units handed to threads */
    uint64_t *Bi;                /* AVX-512: B interleaved in groups of 8 rows */
};

static inline int64_t popcount64(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int64_t)((x * 0x0101010101010101ULL) >> 56);
}

static void strip_scalar(const xnor_job *job, int64_t i, int rows, int64_t j0, int64_t j1,
                         int32_t *dst, int64_t ldd) {
    const int64_t W = job->W;
    const uint64_t *a = job->A + i * W;
    int64_t j, w;
    (void)rows;
    for (j = j0; j < j1; j++) {
        const uint64_t *b = job->B + j * W;
        int64_t s = 0;
        for (w = 0; w < W; w++) s += popcount64(a[w] ^ b[w]);
        dst[j - j0] = (int32_t)(job->K - 2 * s);
    }
    (void)ldd;
}

/* Store the valid rows x cols of a tile of int32 dots held as t[r * 4 + c]. */
static void store_tile(const int32_t *t, int rows, int cols, int32_t *dst, int64_t ldd) {
    int r;
    for (r = 0; r < rows; r++) memcpy(dst + r * ldd, t + 4 * r, (size_t)cols * sizeof(int32_t));
}

#if TA_X86

/* VPOPCNTDQ tiles: 4 rows of A x 32 rows of B (4 groups of 8). B is interleaved
 * in groups of 8 rows (Bi[g][w][l] = B[8g + l][w]), so lane l of a vector holds
 * word w of row 8g + l: a broadcast word of A xor one vector gives 8 dot-product
 * terms at once, and the lanes end up holding 8 finished counts -- no
 * horizontal sums. Short tiles repeat their last row of A and drop it; groups
 * past N hold zero rows whose results are not stored. */
#define VP_GROUPS 4
TA_TARGET_VPOPCNT static void strip_vpopcnt(const xnor_job *job, int64_t i, int rows,
                                            int64_t j0, int64_t j1, int32_t *dst, int64_t ldd) {
    const int64_t W = job->W;
    const uint64_t *a[4];
    const __m512i kk = _mm512_set1_epi64(job->K);
    int64_t j, w;
    int r, g;
    for (r = 0; r < 4; r++) a[r] = job->A + (i + (r < rows ? r : rows - 1)) * W;
    for (j = j0; j < j1; j += 8 * VP_GROUPS) {
        const int64_t ngroups = ((j1 - j) + 7) / 8;
        const uint64_t *b = job->Bi + (j / 8) * W * 8;
        __m512i acc[4][VP_GROUPS];
        int32_t out[8];
        if (ngroups >= VP_GROUPS) {
            for (r = 0; r < 4; r++)
                for (g = 0; g < VP_GROUPS; g++) acc[r][g] = _mm512_setzero_si512();
            for (w = 0; w < W; w++) {
                __m512i y[VP_GROUPS];
                for (g = 0; g < VP_GROUPS; g++) y[g] = _mm512_loadu_si512((const void *)(b + (g * W + w) * 8));
                for (r = 0; r < 4; r++) {
                    const __m512i x = _mm512_set1_epi64((long long)a[r][w]);
                    for (g = 0; g < VP_GROUPS; g++)
                        acc[r][g] = _mm512_add_epi64(acc[r][g], _mm512_popcnt_epi64(_mm512_xor_si512(x, y[g])));
                }
            }
        } else {
            for (r = 0; r < 4; r++) acc[r][0] = _mm512_setzero_si512();
            for (g = 0; g < ngroups; g++) {
                __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
                for (w = 0; w < W; w++) {
                    const __m512i y = _mm512_loadu_si512((const void *)(b + (g * W + w) * 8));
                    s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64((long long)a[0][w]), y)));
                    s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64((long long)a[1][w]), y)));
                    s2 = _mm512_add_epi64(s2, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64((long long)a[2][w]), y)));
                    s3 = _mm512_add_epi64(s3, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64((long long)a[3][w]), y)));
                }
                acc[0][g] = s0, acc[1][g] = s1, acc[2][g] = s2, acc[3][g] = s3;
            }
        }
        for (r = 0; r < rows; r++)
            for (g = 0; g < VP_GROUPS && g < ngroups; g++) {
                const int64_t jg = j + 8 * g, cols = (j1 - jg) < 8 ? (j1 - jg) : 8;
                const __m256i d = _mm512_cvtepi64_epi32(_mm512_sub_epi64(kk, _mm512_add_epi64(acc[r][g], acc[r][g])));
                if (cols == 8) {
                    _mm256_storeu_si256((__m256i *)(dst + r * ldd + (jg - j0)), d);
                } else {
                    _mm256_storeu_si256((__m256i *)out, d);
                    memcpy(dst + r * ldd + (jg - j0), out, (size_t)cols * sizeof(int32_t));
                }
            }
    }
}

/* Few rows of A (a batch of a handful of samples): one row of A against 4 rows of
 * B at a time, horizontal sums per dot product; B is read as it is (interleaving
 * it would cost as much as the product). */
TA_TARGET_VPOPCNT static void strip_vpopcnt_row(const xnor_job *job, int64_t i, int rows,
                                                int64_t j0, int64_t j1, int32_t *dst,
                                                int64_t ldd) {
    const int64_t W = job->W;
    const uint64_t *a = job->A + i * W;
    int64_t j, w;
    (void)rows;
    (void)ldd;
    for (j = j0; j < j1; j += 4) {
        const int cols = (int)((j1 - j) < 4 ? (j1 - j) : 4);
        const uint64_t *b[4];
        __m512i acc[4];
        int c;
        for (c = 0; c < 4; c++) {
            b[c] = job->B + (j + (c < cols ? c : cols - 1)) * W;
            acc[c] = _mm512_setzero_si512();
        }
        for (w = 0; w < W; w += 8) {
            const __mmask8 m = (W - w) >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (W - w)) - 1u);
            const __m512i x = _mm512_maskz_loadu_epi64(m, a + w);
            for (c = 0; c < 4; c++)
                acc[c] = _mm512_add_epi64(acc[c], _mm512_popcnt_epi64(_mm512_xor_si512(
                                                      x, _mm512_maskz_loadu_epi64(m, b[c] + w))));
        }
        for (c = 0; c < cols; c++)
            dst[j - j0 + c] = (int32_t)(job->K - 2 * _mm512_reduce_add_epi64(acc[c]));
    }
}

/* Interleave rows [8 g, 8 g + 8) of B into group g (zero rows past N). */
static void interleave_group(void *ctx, int tid, int64_t g) {
    const xnor_job *job = (const xnor_job *)ctx;
    const int64_t W = job->W;
    uint64_t *dst = job->Bi + g * W * 8;
    int64_t w, l;
    (void)tid;
    for (l = 0; l < 8; l++) {
        const int64_t row = 8 * g + l;
        const uint64_t *src = job->B + row * W;
        for (w = 0; w < W; w++) dst[w * 8 + l] = row < job->N ? src[w] : 0;
    }
}

/* popcount of each byte of v: two nibble lookups */
#define POP_BYTES(v)                                                                  \
    _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256((v), low)),             \
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16((v), 4), low)))

TA_TARGET_AVX2 static int64_t hsum_epi64(__m256i v) {
    int64_t t[4];
    _mm256_storeu_si256((__m256i *)t, v);
    return t[0] + t[1] + t[2] + t[3];
}

/* 2 x 2 tiles with nibble lookups (see the file comment); W % 4 words by popcnt. */
TA_TARGET_AVX2 static void strip_avx2(const xnor_job *job, int64_t i, int rows, int64_t j0,
                                      int64_t j1, int32_t *dst, int64_t ldd) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const int64_t W = job->W, nv = W / 4;
    const uint64_t *a0 = job->A + i * W, *a1 = a0 + (rows > 1 ? W : 0);
    int64_t j;
    for (j = j0; j < j1; j += 2) {
        const int cols = (j1 - j) < 2 ? 1 : 2;
        const uint64_t *b0 = job->B + j * W, *b1 = b0 + (cols > 1 ? W : 0);
        __m256i w00 = zero, w01 = zero, w10 = zero, w11 = zero;
        int64_t v = 0, w, pop[4];
        int32_t tile[16];
        int r, c;
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
        pop[0] = hsum_epi64(w00), pop[1] = hsum_epi64(w01);
        pop[2] = hsum_epi64(w10), pop[3] = hsum_epi64(w11);
        for (w = 4 * nv; w < W; w++) {
            pop[0] += (int64_t)_mm_popcnt_u64(a0[w] ^ b0[w]);
            pop[1] += (int64_t)_mm_popcnt_u64(a0[w] ^ b1[w]);
            pop[2] += (int64_t)_mm_popcnt_u64(a1[w] ^ b0[w]);
            pop[3] += (int64_t)_mm_popcnt_u64(a1[w] ^ b1[w]);
        }
        for (r = 0; r < 2; r++)
            for (c = 0; c < 2; c++) tile[4 * r + c] = (int32_t)(job->K - 2 * pop[2 * r + c]);
        store_tile(tile, rows, cols, dst + (j - j0), ldd);
    }
}
#endif

#define THRESHOLD_BLOCK 1024

/* Rows of a W-word matrix that fill about `bytes`, a multiple of `mult`
 * (at least one multiple), at most `cap`. */
static int64_t block_rows(int64_t W, int64_t bytes, int64_t mult, int64_t cap) {
    int64_t nb = bytes / (W * 8 + 1);
    nb -= nb % mult;
    nb = nb < mult ? mult : nb;
    return nb < cap ? nb : cap;
}

/* Threshold the dots d[0 .. j1-j0) of one output row for columns [j0, j1)
 * (j0 a multiple of 64) into that row's words. */
static void threshold_row(const xnor_job *job, const int32_t *d, int64_t j0, int64_t j1,
                          uint64_t *out) {
    int64_t j;
    for (j = j0; j < j1; j++) {
        const int32_t t = job->thr[j], v = d[j - j0];
        const uint64_t on = job->flip[j] ? (v <= t) : (v >= t);
        out[j >> 6] |= on << (j & 63);
    }
}

/* Unit u: row groups [groups * u / units, groups * (u + 1) / units) of A against
 * all of B: C rows, or threshold bits (the dots of one strip go through a small
 * buffer first). Blocks of mb rows of A (L2) meet strips of jt rows of B (L1 for
 * AVX-512, L2 otherwise). */
static void xnor_unit(void *ctx, int tid, int64_t u) {
    const xnor_job *job = (const xnor_job *)ctx;
    const int mr = job->mr;
    const int64_t g0 = job->groups * u / job->units, g1 = job->groups * (u + 1) / job->units;
    const int64_t i0 = g0 * mr, i1 = (g1 * mr < job->M) ? g1 * mr : job->M;
    const int64_t N = job->N, jt = job->jt;
    int32_t buf[MAX_MR * THRESHOLD_BLOCK];
    int64_t ib, j0, i;
    int r;
    (void)tid;
    if (job->bits != NULL && i1 > i0) memset(job->bits + i0 * job->ow, 0, (size_t)((i1 - i0) * job->ow) * 8);
    for (ib = i0; ib < i1; ib += job->mb) {
        const int64_t ie = (i1 - ib) < job->mb ? i1 : ib + job->mb;
        for (j0 = 0; j0 < N; j0 += jt) {
            const int64_t j1 = (N - j0) < jt ? N : j0 + jt;
            for (i = ib; i < ie; i += mr) {
                const int rows = (int)((ie - i) < mr ? (ie - i) : mr);
                if (job->bits == NULL) {
                    job->strip(job, i, rows, j0, j1, job->C + i * N + j0, N);
                    continue;
                }
                job->strip(job, i, rows, j0, j1, buf, jt);
                for (r = 0; r < rows; r++)
                    threshold_row(job, buf + r * jt, j0, j1, job->bits + (i + r) * job->ow);
            }
        }
    }
}

/* Checks shared by the entry points: sizes, SIMD level, pointers, alignment,
 * zero padding bits, thread count; TA_OK (with *level resolved) or a TA_ERR_*. */
static int xnor_check_args(int isa, const uint64_t *A, int64_t M, const uint64_t *B, int64_t N,
                           int64_t W, int64_t K, int threads, int *level) {
    int64_t prod, i;
    int rc;
    const int tail = (int)(K % 64);
    if (M < 0 || N < 0 || W < 0 || K < 0 || K > INT32_MAX) return TA_ERR_SIZE;
    if (W != (K + 63) / 64) return TA_ERR_SIZE;
    if (!ta_mul_ok(M, W + 4, TA_MAX_ELEMS, &prod) || !ta_mul_ok(N, W + 4, TA_MAX_ELEMS, &prod) ||
        !ta_mul_ok(M, N, TA_MAX_ELEMS, &prod))
        return TA_ERR_SIZE;
    rc = ta_resolve_isa(TA_KERNEL_XNOR, isa, level);
    if (rc != TA_OK) return rc;
    if (threads < 1 || threads > TA_MAX_THREADS) return TA_ERR_THREADS;
    if ((M > 0 && W > 0 && A == NULL) || (N > 0 && W > 0 && B == NULL)) return TA_ERR_NULL;
    if (!TA_ALIGNED(A, 8) || !TA_ALIGNED(B, 8)) return TA_ERR_ALIGN;
    if (tail != 0) {
        for (i = 0; i < M; i++)
            if (A[i * W + W - 1] >> tail) return TA_ERR_PADDING;
        for (i = 0; i < N; i++)
            if (B[i * W + W - 1] >> tail) return TA_ERR_PADDING;
    }
    return TA_OK;
}

/* Run a checked job on `level` with up to `threads` threads. */
static int xnor_run(xnor_job *job, int level, int threads) {
    int64_t groups, planes;
    const int64_t cap = job->bits != NULL ? THRESHOLD_BLOCK : INT64_MAX;
    int nt, rc;
    void *mem = NULL;
    job->mr = 1;
    job->strip = strip_scalar;
    job->jt = block_rows(job->W, 384 * 1024, 64, cap);
    job->mb = job->M;
#if TA_X86
    if (level == TA_ISA_AVX512 && job->M < 8) {
        job->strip = strip_vpopcnt_row;
        job->jt = block_rows(job->W, 384 * 1024, 64, cap);
    } else if (level == TA_ISA_AVX512) {
        job->mr = 4;
        job->strip = strip_vpopcnt;
        job->jt = 8 * VP_GROUPS;
        job->mb = block_rows(job->W, 256 * 1024, 4, INT64_MAX);
        groups = (job->N + 7) / 8;
        if (!ta_mul_ok(groups * 8, job->W * 8, TA_MAX_ELEMS, &planes)) return TA_ERR_SIZE;
        mem = malloc((size_t)planes + 64);
        if (mem == NULL) return TA_ERR_NOMEM;
        job->Bi = (uint64_t *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
        nt = ta_threads_for(threads, groups, 8 * job->W, 1 << 18);
        if (ta_parallel_units(nt, groups, interleave_group, job) != TA_OK) {
            free(mem);
            return TA_ERR_NOMEM;
        }
    } else if (level == TA_ISA_AVX2) {
        job->mr = 2;
        job->strip = strip_avx2;
    }
#endif
    job->groups = (job->M + job->mr - 1) / job->mr;
    nt = ta_threads_for(threads, job->groups, job->mr * job->N * (job->W + 1), 1 << 20);
    job->units = nt == 1 ? 1 : (job->groups < 8 * (int64_t)nt ? job->groups : 8 * (int64_t)nt);
    rc = ta_parallel_units(nt, job->units, xnor_unit, job);
    free(mem);
    return rc;
}

int ta_xnor_gemm(int isa, const uint64_t *A, int64_t M, const uint64_t *B, int64_t N,
                 int64_t W, int64_t K, int32_t *C, int threads) {
    xnor_job job;
    int level;
    int rc = xnor_check_args(isa, A, M, B, N, W, K, threads, &level);
    if (rc != TA_OK) return rc;
    if (M > 0 && N > 0 && C == NULL) return TA_ERR_NULL;
    if (!TA_ALIGNED(C, 4)) return TA_ERR_ALIGN;
    if (M == 0 || N == 0) return TA_OK;
    memset(&job, 0, sizeof job);
    job.A = A, job.B = B, job.M = M, job.N = N, job.W = W, job.K = K, job.C = C;
    return xnor_run(&job, level, threads);
}

int ta_binary_threshold(int isa, const uint64_t *X, int64_t N, const uint64_t *Wb, int64_t M,
                        int64_t W, int64_t K, const int32_t *thresholds, const uint8_t *flip,
                        uint64_t *out, int64_t out_words, int threads) {
    xnor_job job;
    int64_t j;
    int level;
    int rc = xnor_check_args(isa, X, N, Wb, M, W, K, threads, &level);
    if (rc != TA_OK) return rc;
    if (out_words != (M + 63) / 64) return TA_ERR_SIZE;
    if (M > 0 && (thresholds == NULL || flip == NULL)) return TA_ERR_NULL;
    if (N > 0 && out_words > 0 && out == NULL) return TA_ERR_NULL;
    if (!TA_ALIGNED(thresholds, 4) || !TA_ALIGNED(out, 8)) return TA_ERR_ALIGN;
    for (j = 0; j < M; j++)
        if (flip[j] > 1) return TA_ERR_SIZE;
    if (N == 0 || out_words == 0) return TA_OK;
    memset(&job, 0, sizeof job);
    job.A = X, job.B = Wb, job.M = N, job.N = M, job.W = W, job.K = K;
    job.thr = thresholds, job.flip = flip, job.bits = out, job.ow = out_words;
    return xnor_run(&job, level, threads);
}

/* ---- calibration: the instruction chain each path relies on, from registers ---- */

#define POP_CHAINS 12

static double popcnt_scalar(int64_t iters, int64_t *sink) {
    uint64_t a[POP_CHAINS];
    int64_t s[POP_CHAINS], it, total = 0;
    int j;
    for (j = 0; j < POP_CHAINS; j++) a[j] = 0x9E3779B97F4A7C15ULL * (uint64_t)(j + 1), s[j] = 0;
    for (it = 0; it < iters; it++)
        for (j = 0; j < POP_CHAINS; j++) {
            s[j] += popcount64(a[j] ^ (uint64_t)it);
        }
    for (j = 0; j < POP_CHAINS; j++) total += s[j];
    *sink = total;
    return (double)iters * POP_CHAINS * 64.0;
}

#if TA_X86

TA_TARGET_VPOPCNT static double popcnt_avx512(int64_t iters, int64_t *sink) {
    __m512i a[POP_CHAINS], s[POP_CHAINS];
    __m512i y = _mm512_set1_epi64(0x5555);
    int64_t it;
    int j;
    for (j = 0; j < POP_CHAINS; j++) a[j] = _mm512_set1_epi64(j), s[j] = _mm512_setzero_si512();
    for (it = 0; it < iters; it++) {
        TA_OPAQUE(y);
        for (j = 0; j < POP_CHAINS; j++)
            s[j] = _mm512_add_epi64(s[j], _mm512_popcnt_epi64(_mm512_xor_si512(a[j], y)));
    }
    for (j = 1; j < POP_CHAINS; j++) s[0] = _mm512_add_epi64(s[0], s[j]);
    *sink = _mm512_reduce_add_epi64(s[0]);
    return (double)iters * POP_CHAINS * 512.0;
}

/* AVX2 chain of its kernel: per 256 bits, xor, two nibble lookups (and, shift,
 * vpshufb), byte adds; vpsadbw every 31 rounds. */
TA_TARGET_AVX2 static double popcnt_avx2(int64_t iters, int64_t *sink) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i a[POP_CHAINS / 2], s[POP_CHAINS / 2];
    __m256i y = _mm256_set1_epi8(5), wide = _mm256_setzero_si256();
    int64_t it = 0, t[4];
    int j;
    for (j = 0; j < POP_CHAINS / 2; j++) a[j] = _mm256_set1_epi8((char)(j * 37));
    while (it < iters) {
        const int64_t end = (iters - it) > 31 ? it + 31 : iters;
        for (j = 0; j < POP_CHAINS / 2; j++) s[j] = _mm256_setzero_si256();
        for (; it < end; it++) {
            TA_OPAQUE(y);
            for (j = 0; j < POP_CHAINS / 2; j++) {
                const __m256i x = _mm256_xor_si256(a[j], y);
                s[j] = _mm256_add_epi8(s[j], POP_BYTES(x));
            }
        }
        for (j = 0; j < POP_CHAINS / 2; j++)
            wide = _mm256_add_epi64(wide, _mm256_sad_epu8(s[j], _mm256_setzero_si256()));
    }
    _mm256_storeu_si256((__m256i *)t, wide);
    *sink = t[0] + t[1] + t[2] + t[3];
    return (double)iters * (POP_CHAINS / 2) * 256.0;
}
#endif

double ta_popcnt_loop(int isa, int64_t iters, int64_t *sink) {
    int level;
    if (sink == NULL || iters < 0) return -1.0;
    if (ta_resolve_isa(TA_KERNEL_XNOR, isa, &level) != TA_OK) return -1.0;
#if TA_X86
    if (level == TA_ISA_AVX512) return popcnt_avx512(iters, sink);
    if (level == TA_ISA_AVX2) return popcnt_avx2(iters, sink);
#endif
    return popcnt_scalar(iters, sink);
}
