/* Float32 products with a CSR sparse matrix, and the fused sparse layer.
 *
 * CSR (R rows x K columns): indptr[R+1] int64, indices[nnz] int32 (column of
 * each stored value, any order, duplicates allowed and summed), data[nnz] float32.
 *
 * ta_csr_matmul_f32: Y (M x N) = A (M x K, CSR) X (K x N); X, Y row-major.
 * ta_csr_linear_f32: y (N x M) = x (N x K) W^T + bias, optional ReLU, W (M x K)
 *   in CSR; x, y row-major (one sample per row), as a layer sees them.
 *
 * Both run the same engine. The dense operand is cut into strips of S lanes
 * (AVX-512 128, AVX2 64, scalar 16): columns of X, or samples of x. For each CSR
 * row the strip of the result lives in registers while the row's values stream
 * past, each broadcast and multiplied into the matching row of a packed panel of
 * the strip (a broadcast-FMA stream). When the rows list their columns in order,
 * the columns are swept in blocks: the block's rows of the strip are packed into
 * a contiguous, 64-byte aligned buffer that stays in L1 (a copy of X's rows; for
 * the layer a transpose of S samples of x, in 8 x 8 blocks), zero-padded to a
 * whole number of vectors, and all CSR rows pass over it, each resuming where it
 * stopped with its partial sums parked in a buffer. The result strip (R x S) is
 * then copied out, or for the layer transposed into y with bias and ReLU.
 *
 * Each output element is summed by one thread, from zero, in the order of its
 * row's stored values (fused multiply-adds on the SIMD paths), then the bias is
 * added: the bits do not depend on the thread count or on the block sizes.
 * Threads take (strip, row range) tasks from a shared counter
 * (ta_parallel_units); every task packs the blocks of the panel it needs.
 */
#include <stdlib.h>

#include "ta_internal.h"

#define MAX_STRIP 128

typedef struct {
    int64_t R, K, N;                 /* CSR rows, columns, strip dimension */
    const int64_t *indptr;
    const int32_t *indices;
    const float *data;
    const float *X;                  /* matmul: K x N; layer: N x K */
    float *Y;                        /* matmul: R x N; layer: N x R */
    const float *bias;               /* layer: R floats or NULL */
    int layer, relu, level;
    int64_t S, kb;                   /* strip lanes, columns per block */
    int64_t nstrips, nparts;
    float *scratch;                  /* per-thread slices of `slice` floats */
    int64_t slice;
    int nthreads;
} csr_job;

/* Floats of work space one thread needs: panel K x S, result R x S, cursors
 * (R int64), alignment slack. */
static int64_t slice_floats(int64_t R, int64_t K, int64_t S) {
    int64_t a, b;
    if (R < 0 || K < 0 || K > TA_MAX_ELEMS || R > TA_MAX_ELEMS) return -1;
    if (!ta_mul_ok(K + R, S, TA_MAX_ELEMS / 4, &a) || !ta_mul_ok(R + 1, 2, TA_MAX_ELEMS / 4, &b))
        return -1;
    return a + b + 64;
}

/* ---- the row passes: rows [r0, r1) of the CSR matrix against a packed panel ----
 * ybuf row i - r0 (stride ldy) receives the S lanes of row i. With kb >= K one
 * sweep; else blocks of kb columns, `cursor` remembering where each row stopped. */

static void pass_scalar(const csr_job *job, const float *panel, int64_t r0, int64_t r1,
                        float *ybuf, int64_t ldy) {
    int64_t i, p;
    int t;
    for (i = r0; i < r1; i++) {
        float acc[16] = {0};
        for (p = job->indptr[i]; p < job->indptr[i + 1]; p++) {
            const float v = job->data[p];
            const float *x = panel + (int64_t)job->indices[p] * 16;
            for (t = 0; t < 16; t++) acc[t] += v * x[t];
        }
        memcpy(ybuf + (i - r0) * ldy, acc, sizeof acc);
    }
}

#if TA_X86

#define DEFINE_PASS(NAME, TARGET, VEC, LANES, SETZERO, SET1, LOAD, LOADU, STOREU, FMADD, NV)   \
    TARGET static void NAME(const csr_job *job, const float *panel, int64_t k0, int64_t k1,   \
                            int64_t r0, int64_t r1, float *ybuf, int64_t ldy,                 \
                            int64_t *cursor) {                                                \
        const int64_t *indptr = job->indptr, ld = (LANES) * (NV);                             \
        const int32_t *indices = job->indices;                                                \
        const float *data = job->data;                                                        \
        int64_t i, p;                                                                         \
        int v;                                                                                \
        for (i = r0; i < r1; i++) {                                                           \
            float *y = ybuf + (i - r0) * ldy;                                                 \
            const int64_t end = indptr[i + 1];                                                \
            VEC acc[NV];                                                                      \
            for (v = 0; v < NV; v++) acc[v] = k0 == 0 ? SETZERO() : LOADU(y + (LANES) * v);   \
            for (p = cursor[i - r0]; p < end && indices[p] < k1; p++) {                       \
                const VEC a = SET1(data[p]);                                                  \
                const float *x = panel + (indices[p] - k0) * ld;                              \
                for (v = 0; v < NV; v++) acc[v] = FMADD(a, LOAD(x + (LANES) * v), acc[v]);    \
            }                                                                                 \
            cursor[i - r0] = p;                                                               \
            for (v = 0; v < NV; v++) STOREU(y + (LANES) * v, acc[v]);                         \
        }                                                                                     \
    }

#define P512(NAME, NV) DEFINE_PASS(NAME, TA_TARGET_AVX512, __m512, 16, _mm512_setzero_ps, \
    _mm512_set1_ps, _mm512_load_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, NV)
#define P256(NAME, NV) DEFINE_PASS(NAME, TA_TARGET_AVX2, __m256, 8, _mm256_setzero_ps, \
    _mm256_set1_ps, _mm256_load_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, NV)

P512(pass512_1, 1) P512(pass512_2, 2) P512(pass512_3, 3) P512(pass512_4, 4)
P512(pass512_5, 5) P512(pass512_6, 6) P512(pass512_7, 7) P512(pass512_8, 8)
P256(pass256_1, 1) P256(pass256_2, 2) P256(pass256_3, 3) P256(pass256_4, 4)
P256(pass256_5, 5) P256(pass256_6, 6) P256(pass256_7, 7) P256(pass256_8, 8)

typedef void (*pass_fn)(const csr_job *, const float *, int64_t, int64_t, int64_t, int64_t,
                        float *, int64_t, int64_t *);
static const pass_fn PASS512[8] = {pass512_1, pass512_2, pass512_3, pass512_4,
                                   pass512_5, pass512_6, pass512_7, pass512_8};
static const pass_fn PASS256[8] = {pass256_1, pass256_2, pass256_3, pass256_4,
                                   pass256_5, pass256_6, pass256_7, pass256_8};

/* One 8 x 8 block: d[c * ldd + r] = s[r * lds + c]. */
TA_TARGET_AVX2 static inline void transpose8x8(const float *s, int64_t lds, float *d, int64_t ldd) {
    __m256 a0 = _mm256_loadu_ps(s), a1 = _mm256_loadu_ps(s + lds);
    __m256 a2 = _mm256_loadu_ps(s + 2 * lds), a3 = _mm256_loadu_ps(s + 3 * lds);
    __m256 a4 = _mm256_loadu_ps(s + 4 * lds), a5 = _mm256_loadu_ps(s + 5 * lds);
    __m256 a6 = _mm256_loadu_ps(s + 6 * lds), a7 = _mm256_loadu_ps(s + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
    __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
    __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
    __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols, in 8 x 8 blocks.
 * Columns go in bands of 16 (whole cache lines of src) and within a band the
 * rows are swept, so the band's 16 destination rows stay in L1 while filled. */
TA_TARGET_AVX2 static void transpose_avx2(const float *src, int64_t lds, float *dst, int64_t ldd,
                                          int64_t rows, int64_t cols) {
    int64_t c0, r0, r, c;
    for (c0 = 0; c0 < cols; c0 += 16) {
        const int64_t c1 = (cols - c0) < 16 ? cols : c0 + 16;
        for (r0 = 0; r0 + 8 <= rows; r0 += 8) {
            for (c = c0; c + 8 <= c1; c += 8) transpose8x8(src + r0 * lds + c, lds, dst + c * ldd + r0, ldd);
            for (r = r0; r < r0 + 8; r++) {
                int64_t cc;
                for (cc = c; cc < c1; cc++) dst[cc * ldd + r] = src[r * lds + cc];
            }
        }
        for (r = r0; r < rows; r++)
            for (c = c0; c < c1; c++) dst[c * ldd + r] = src[r * lds + c];
    }
}
#endif

static void transpose_scalar(const float *src, int64_t lds, float *dst, int64_t ldd,
                             int64_t rows, int64_t cols) {
    int64_t r, c;
    for (r = 0; r < rows; r++)
        for (c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
}

static void transpose(int level, const float *src, int64_t lds, float *dst, int64_t ldd,
                      int64_t rows, int64_t cols) {
#if TA_X86
    if (level >= TA_ISA_AVX2) {
        transpose_avx2(src, lds, dst, ldd, rows, cols);
        return;
    }
#endif
    (void)level;
    transpose_scalar(src, lds, dst, ldd, rows, cols);
}

/* Pack rows [k0, k1) of strip s (lanes [s*S, s*S + w)) into panel (k1 - k0 rows
 * of ld floats, ld = w rounded up to a vector, padding lanes zero). */
static void pack_block(const csr_job *job, int64_t s, int64_t w, int64_t ld, int64_t k0,
                       int64_t k1, float *panel) {
    const int64_t K = job->K, n0 = s * job->S;
    int64_t k;
    if (job->layer) {
        transpose(job->level, job->X + n0 * K + k0, K, panel, ld, w, k1 - k0);
    } else {
        for (k = k0; k < k1; k++) memcpy(panel + (k - k0) * ld, job->X + k * job->N + n0, (size_t)w * 4);
    }
    if (ld > w)
        for (k = 0; k < k1 - k0; k++) memset(panel + k * ld + w, 0, (size_t)(ld - w) * 4);
}

/* Write rows [r0, r1) of strip s from ybuf (stride ld) to the output; for the
 * layer, add the bias and apply ReLU to each row of ybuf (one output channel,
 * contiguous) first, then transpose it into y. */
static void store_strip(const csr_job *job, int64_t s, int64_t w, int64_t r0, int64_t r1,
                        float *ybuf, int64_t ld) {
    const int64_t n0 = s * job->S, R = job->R;
    int64_t i, n;
    if (!job->layer) {
        for (i = r0; i < r1; i++)
            memcpy(job->Y + i * job->N + n0, ybuf + (i - r0) * ld, (size_t)w * 4);
        return;
    }
    for (i = r0; i < r1; i++) {
        float *row = ybuf + (i - r0) * ld;
        if (job->bias != NULL) {
            const float b = job->bias[i];
            for (n = 0; n < w; n++) row[n] = row[n] + b;
        }
        if (job->relu)
            for (n = 0; n < w; n++) row[n] = row[n] < 0.0f ? 0.0f : row[n];
    }
    transpose(job->level, ybuf, ld, job->Y + n0 * R + r0, R, r1 - r0, w);
}

/* Task t (run by participant tid, which owns work space slice tid): rows part
 * (t % nparts) of strip (t / nparts). */
static void csr_task(void *ctx, int tid, int64_t t) {
    const csr_job *job = (const csr_job *)ctx;
    const int64_t R = job->R, S = job->S, K = job->K;
    const int64_t vec = job->level == TA_ISA_AVX2 ? 8 : 16;
    float *panel = (float *)(((uintptr_t)(job->scratch + tid * job->slice) + 63) & ~(uintptr_t)63);
    float *ybuf = panel + K * S;
    int64_t *cursor = (int64_t *)(ybuf + R * S);
    {
        const int64_t s = t / job->nparts, part = t % job->nparts;
        const int64_t r0 = R * part / job->nparts, r1 = R * (part + 1) / job->nparts;
        const int64_t w = (job->N - s * S) < S ? job->N - s * S : S;
        const int64_t nv = (w + vec - 1) / vec, ld = nv * vec;
        int64_t k0, i;
        if (r0 == r1) return;
        if (job->level == TA_ISA_SCALAR) {
            pack_block(job, s, w, ld, 0, K, panel);
            pass_scalar(job, panel, r0, r1, ybuf, ld);
            store_strip(job, s, w, r0, r1, ybuf, ld);
            return;
        }
        for (i = r0; i < r1; i++) cursor[i - r0] = job->indptr[i];
        for (k0 = 0; k0 == 0 || k0 < K; k0 += job->kb) {
            const int64_t k1 = (K - k0) > job->kb ? k0 + job->kb : K;
            pack_block(job, s, w, ld, k0, k1, panel);
#if TA_X86
            if (job->level == TA_ISA_AVX512)
                PASS512[nv - 1](job, panel, k0, k1, r0, r1, ybuf, ld, cursor);
            else
                PASS256[nv - 1](job, panel, k0, k1, r0, r1, ybuf, ld, cursor);
#endif
        }
        store_strip(job, s, w, r0, r1, ybuf, ld);
    }
}

/* Columns per block: at least `base` (base x S floats of the panel fill about
 * half of L1), doubled until a row has about 8 values per block on average,
 * since each visit of a row costs a load and store of its result strip and a
 * branch miss. K (a single block) when the rows are not sorted by column. */
static int64_t block_cols(int64_t R, int64_t K, int64_t nnz, int64_t base, int sorted) {
    int64_t kb = base;
    if (!sorted || R == 0 || K == 0) return K > 0 ? K : 1;
    while (kb < K && (double)nnz * (double)kb < 8.0 * (double)R * (double)K) kb *= 2;
    return kb;
}

/* Every check of the arguments shared by both entry points (CSR R x K, dense
 * operand of K * N floats, output of R * N floats), in the order sizes, SIMD
 * level, threads, pointers, alignment, indptr/indices; TA_OK or the first
 * TA_ERR_*. On TA_OK, *level is the resolved path and *sorted is 1 if every row
 * lists its columns in non-decreasing order. */
static int csr_check_args(int isa, int64_t R, int64_t K, int64_t N, int64_t nnz,
                          const int64_t *indptr, const int32_t *indices, const float *data,
                          const float *X, const float *Y, const float *scratch,
                          int64_t nscratch, int threads, int *level, int *sorted) {
    int64_t prod, i, p;
    int rc, bad = 0, unsorted = 0;
    if (R < 0 || K < 0 || N < 0 || nnz < 0) return TA_ERR_SIZE;
    if (K > INT32_MAX || R >= TA_MAX_ELEMS || nnz > TA_MAX_ELEMS) return TA_ERR_SIZE;
    if (!ta_mul_ok(R, N, TA_MAX_ELEMS, &prod) || !ta_mul_ok(K, N, TA_MAX_ELEMS, &prod))
        return TA_ERR_SIZE;
    if (slice_floats(R, K, MAX_STRIP) < 0) return TA_ERR_SIZE;
    rc = ta_resolve_isa(TA_KERNEL_CSR, isa, level);
    if (rc != TA_OK) return rc;
    if (threads < 1 || threads > TA_MAX_THREADS) return TA_ERR_THREADS;
    if (indptr == NULL) return TA_ERR_NULL;
    if (nnz > 0 && (indices == NULL || data == NULL)) return TA_ERR_NULL;
    if (R > 0 && N > 0 && Y == NULL) return TA_ERR_NULL;
    if (K > 0 && N > 0 && X == NULL) return TA_ERR_NULL;
    if (nscratch < 0 || (scratch == NULL && nscratch > 0)) return TA_ERR_NULL;
    if (!TA_ALIGNED(indptr, 8) || !TA_ALIGNED(indices, 4) || !TA_ALIGNED(data, 4) ||
        !TA_ALIGNED(X, 4) || !TA_ALIGNED(Y, 4) || !TA_ALIGNED(scratch, 8))
        return TA_ERR_ALIGN;
    if (indptr[0] != 0 || indptr[R] != nnz) return TA_ERR_INDEX;
    for (i = 0; i < R; i++) bad |= indptr[i + 1] < indptr[i];
    if (bad) return TA_ERR_INDEX;
    for (i = 0; i < R; i++) { /* one pass: range of every index, order within rows */
        const int64_t end = indptr[i + 1];
        if (indptr[i] < end) bad |= (uint32_t)indices[indptr[i]] >= (uint32_t)K;
        for (p = indptr[i] + 1; p < end; p++) {
            bad |= (uint32_t)indices[p] >= (uint32_t)K;
            unsorted |= indices[p] < indices[p - 1];
        }
    }
    if (bad) return TA_ERR_INDEX;
    *sorted = !unsorted;
    return TA_OK;
}

int64_t ta_csr_scratch_floats(int64_t R, int64_t K, int threads) {
    const int64_t one = slice_floats(R, K, MAX_STRIP);
    int64_t total;
    if (one < 0 || threads < 1 || threads > TA_MAX_THREADS) return -1;
    if (!ta_mul_ok(one, threads, TA_MAX_ELEMS, &total)) return -1;
    return total;
}

/* Split a checked job into tasks and run them on up to `threads` threads. */
static int csr_run(csr_job *job, int sorted, float *scratch, int64_t nscratch, int threads) {
    int64_t ntasks, work;
    void *owned = NULL;
    int rc;
    job->S = job->level == TA_ISA_AVX512 ? 128 : (job->level == TA_ISA_AVX2 ? 64 : 16);
    job->kb = job->level == TA_ISA_SCALAR ? job->K
                                          : block_cols(job->R, job->K, job->indptr[job->R],
                                                       job->level == TA_ISA_AVX512 ? 64 : 128, sorted);
    job->nstrips = (job->N + job->S - 1) / job->S;
    work = (job->indptr[job->R] + job->R + job->K) * job->S; /* lane operations per strip */
    job->nthreads = ta_threads_for(threads, job->nstrips * job->R, work / (job->R + 1) + 1, 1 << 21);
    job->nparts = 1; /* split rows only when there are fewer strips than threads */
    if (job->nthreads > job->nstrips) {
        job->nparts = (job->nthreads + job->nstrips - 1) / job->nstrips;
        if (job->nparts > job->R) job->nparts = job->R;
    }
    ntasks = job->nstrips * job->nparts;
    if (job->nthreads > ntasks) job->nthreads = (int)ntasks;
    job->slice = slice_floats(job->R, job->K, job->S);
    job->scratch = scratch;
    if (scratch == NULL || nscratch < job->slice * job->nthreads) {
        owned = malloc(sizeof(float) * (size_t)(job->slice * job->nthreads));
        if (owned == NULL) return TA_ERR_NOMEM;
        job->scratch = (float *)owned;
    }
    rc = ta_parallel_units(job->nthreads, ntasks, csr_task, job);
    free(owned);
    return rc;
}

int ta_csr_matmul_f32(int isa, int64_t M, int64_t K, int64_t N, int64_t nnz,
                      const int64_t *indptr, const int32_t *indices, const float *data,
                      const float *X, float *Y, float *scratch, int64_t nscratch, int threads) {
    csr_job job;
    int level, sorted;
    const int rc = csr_check_args(isa, M, K, N, nnz, indptr, indices, data, X, Y, scratch,
                                  nscratch, threads, &level, &sorted);
    if (rc != TA_OK) return rc;
    if (M == 0 || N == 0) return TA_OK;
    memset(&job, 0, sizeof job);
    job.R = M, job.K = K, job.N = N, job.indptr = indptr, job.indices = indices;
    job.data = data, job.X = X, job.Y = Y, job.level = level;
    return csr_run(&job, sorted, scratch, nscratch, threads);
}

int ta_csr_linear_f32(int isa, int64_t N, int64_t K, int64_t M, int64_t nnz,
                      const int64_t *indptr, const int32_t *indices, const float *data,
                      const float *x, const float *bias, int relu, float *y, float *scratch,
                      int64_t nscratch, int threads) {
    csr_job job;
    int level, sorted;
    const int rc = csr_check_args(isa, M, K, N, nnz, indptr, indices, data, x, y, scratch,
                                  nscratch, threads, &level, &sorted);
    if (rc != TA_OK) return rc;
    if (relu != 0 && relu != 1) return TA_ERR_SIZE;
    if (!TA_ALIGNED(bias, 4)) return TA_ERR_ALIGN;
    if (M == 0 || N == 0) return TA_OK;
    memset(&job, 0, sizeof job);
    job.R = M, job.K = K, job.N = N, job.indptr = indptr, job.indices = indices;
    job.data = data, job.X = x, job.Y = y, job.bias = bias, job.relu = relu;
    job.layer = 1, job.level = level;
    return csr_run(&job, sorted, scratch, nscratch, threads);
}
