/* Exact int8 x int8 -> int32 matrix product, C (M x N) = A (M x K) B (K x N).
 *
 * B is packed once (it is usually a layer's weight) into column panels of 16:
 *
 *   TA_INT8_LAYOUT_K4  int8 : panel p, k-group g, column c, t in 0..3 at byte
 *                             p*16*K4 + g*64 + c*4 + t  holds B[4g+t, 16p+c]
 *   TA_INT8_LAYOUT_K2W int16: panel p, k-pair g, column c, t in 0..1 at element
 *                             p*16*K2 + g*32 + c*2 + t  holds B[2g+t, 16p+c]
 *
 * with K4 = K rounded up to 4, K2 = K rounded up to 2, missing rows/columns 0.
 * After the panels comes a trailer: int32 colsum[16*P] (column sums of B) and
 * int32 flags[4] (flags[0] = 1 if B contains -128).
 *
 * AVX2, layout K4 (B without -128): vpmaddubsw multiplies unsigned by signed
 * bytes and adds pairs with int16 saturation. We feed it |a| (as unsigned,
 * so a = -128 gives 128) and sign(b, a) = b * sign(a); each pair sum is at
 * most 2 * 128 * 127 = 32512 < 32767, so nothing saturates. vpmaddwd with ones
 * then widens to int32. If B contains -128, B is packed as int16 (K2W) and
 * vpmaddwd multiplies sign-extended pairs directly; also exact.
 * AVX-512 VNNI, layout K4: vpdpbusd on (a + 128) as unsigned times b, minus
 * 128 * colsum(B); the int32 sums wrap but the final result is in range.
 * int32 accumulation is exact for K <= TA_INT8_MAX_K (K * 128 * 128 < 2^31).
 */
#include <stdlib.h>

#include "ta_internal.h"

#define MR 4   /* rows of A per micro-tile */
#define NR 16  /* columns of B per panel */
#define KC 1024 /* k values per cache block */

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

int ta_int8_has_min(const int8_t *x, int64_t n) {
    int64_t i0, i;
    if (x == NULL || n <= 0) return 0;
    for (i0 = 0; i0 < n; i0 += 4096) { /* branch-free chunks vectorize */
        const int64_t end = (n - i0) < 4096 ? n : i0 + 4096;
        int found = 0;
        for (i = i0; i < end; i++) found |= x[i] == INT8_MIN;
        if (found) return 1;
    }
    return 0;
}

int ta_int8_choose_layout(int isa, int b_has_min) {
    int level;
    if (ta_resolve_isa(TA_KERNEL_INT8, isa, &level) != TA_OK) level = TA_ISA_SCALAR;
    if (level == TA_ISA_AVX2 && b_has_min) return TA_INT8_LAYOUT_K2W;
    return TA_INT8_LAYOUT_K4;
}

/* Geometry of a packed buffer; 0 on a bad layout or sizes that overflow. */
static int packed_geometry(int layout, int64_t K, int64_t N, int64_t *kpad, int64_t *panels,
                           int64_t *data_bytes, int64_t *total) {
    int64_t kp, np, elems, bytes, trailer;
    if (K < 0 || N < 0 || K > TA_INT8_MAX_K || N > TA_MAX_ELEMS / 64) return 0;
    if (layout != TA_INT8_LAYOUT_K4 && layout != TA_INT8_LAYOUT_K2W) return 0;
    kp = round_up(K, layout == TA_INT8_LAYOUT_K4 ? 4 : 2);
    np = (N + NR - 1) / NR;
    if (!ta_mul_ok(np * NR, kp, TA_MAX_ELEMS, &elems)) return 0;
    bytes = layout == TA_INT8_LAYOUT_K4 ? elems : 2 * elems;
    trailer = 4 * (np * NR + 4);
    *kpad = kp;
    *panels = np;
    *data_bytes = bytes;
    *total = bytes + trailer;
    return 1;
}

int ta_int8_packed_size(int layout, int64_t K, int64_t N, int64_t *nbytes) {
    int64_t kp, np, db;
    if (nbytes == NULL) return TA_ERR_NULL;
    if (K > TA_INT8_MAX_K) return TA_ERR_KBOUND;
    if (!packed_geometry(layout, K, N, &kp, &np, &db, nbytes)) return TA_ERR_SIZE;
    return TA_OK;
}

int ta_int8_pack(int layout, const int8_t *B, int64_t K, int64_t N, uint8_t *out, int64_t nbytes) {
    int64_t kp, np, db, total, p, k, c, prod, gs;
    int32_t *colsum, flags[4] = {0, 0, 0, 0}, has_min = 0;
    if (K > TA_INT8_MAX_K) return TA_ERR_KBOUND;
    if (!packed_geometry(layout, K, N, &kp, &np, &db, &total)) return TA_ERR_SIZE;
    if (!ta_mul_ok(K, N, TA_MAX_ELEMS, &prod)) return TA_ERR_SIZE;
    if (nbytes != total) return TA_ERR_PACKED;
    if (out == NULL || (prod > 0 && B == NULL)) return TA_ERR_NULL;
    if (!TA_ALIGNED(out, 4)) return TA_ERR_ALIGN;
    memset(out, 0, (size_t)total);
    colsum = (int32_t *)malloc(sizeof(int32_t) * (size_t)(np * NR + 1));
    if (colsum == NULL) return TA_ERR_NOMEM;
    memset(colsum, 0, sizeof(int32_t) * (size_t)(np * NR + 1));
    /* one k-group (K4: 4 rows of B, K2W: 2 rows) at a time, so B is read row
     * by row; each panel's 64-byte block is assembled locally, then copied */
    gs = layout == TA_INT8_LAYOUT_K4 ? 4 : 2;
    for (k = 0; k < K; k += gs) {
        for (p = 0; p < np; p++) {
            const int64_t w = (N - p * NR) < NR ? (N - p * NR) : NR;
            uint8_t blk[64];
            int t;
            memset(blk, 0, sizeof(blk));
            for (t = 0; t < gs && k + t < K; t++) {
                const int8_t *src = B + (k + t) * N + p * NR;
                if (layout == TA_INT8_LAYOUT_K4) {
                    for (c = 0; c < w; c++) blk[c * 4 + t] = (uint8_t)src[c];
                } else {
                    for (c = 0; c < w; c++) {
                        const int16_t v = src[c];
                        memcpy(blk + 4 * c + 2 * t, &v, 2);
                    }
                }
            }
            memcpy(out + p * NR * kp * (layout == TA_INT8_LAYOUT_K4 ? 1 : 2) + (k / gs) * 64, blk, 64);
        }
    }
    for (k = 0; k < K; k++) {
        const int8_t *row = B + k * N;
        for (c = 0; c < N; c++) {
            colsum[c] += row[c];
            has_min |= row[c] == INT8_MIN;
        }
    }
    flags[0] = has_min;
    memcpy(out + db, colsum, sizeof(int32_t) * (size_t)(np * NR));
    memcpy(out + db + 4 * np * NR, flags, sizeof(flags));
    free(colsum);
    return TA_OK;
}

/* ---------------------------------------------------------------- A packing */

/* A (M x K int8) into row panels of MR: panel m, k-group g, row r, t at
 * m*MR*K4 + g*16 + r*4 + t (K4 layout), zero-padded. */
static void pack_a_k4(const int8_t *A, int64_t M, int64_t K, int64_t k4, int8_t *ap) {
    int64_t i, k;
    memset(ap, 0, (size_t)(round_up(M, MR) * k4));
    for (i = 0; i < M; i++) {
        const int8_t *src = A + i * K;
        int8_t *dst = ap + (i / MR) * MR * k4 + (i % MR) * 4;
        for (k = 0; k + 4 <= K; k += 4) memcpy(dst + k * 4, src + k, 4);
        for (; k < K; k++) dst[(k / 4) * 16 + (k % 4)] = src[k];
    }
}

/* As above with int16 and pairs: m*MR*K2 + g*8 + r*2 + t. */
static void pack_a_k2(const int8_t *A, int64_t M, int64_t K, int64_t k2, int16_t *ap) {
    int64_t i, k;
    memset(ap, 0, sizeof(int16_t) * (size_t)(round_up(M, MR) * k2));
    for (i = 0; i < M; i++) {
        const int8_t *src = A + i * K;
        int16_t *dst = ap + (i / MR) * MR * k2 + (i % MR) * 2;
        for (k = 0; k + 2 <= K; k += 2) {
            dst[k * 4] = src[k];
            dst[k * 4 + 1] = src[k + 1];
        }
        if (k < K) dst[k * 4] = src[k];
    }
}

/* Write (or add) an MR x NR tile of results, clipped to rows x cols. */
static void store_tile(int32_t tile[MR][NR], int32_t *c, int64_t ldc, int rows, int cols,
                       int accumulate) {
    int r, j;
    for (r = 0; r < rows; r++)
        for (j = 0; j < cols; j++) {
            if (accumulate)
                c[r * ldc + j] = (int32_t)((uint32_t)c[r * ldc + j] + (uint32_t)tile[r][j]);
            else
                c[r * ldc + j] = tile[r][j];
        }
}

/* ---------------------------------------------------------------- scalar */

static void tile_k4_scalar(int64_t ng, const int8_t *ap, const int8_t *bp, int32_t *c,
                           int64_t ldc, int rows, int cols, int accumulate) {
    int32_t tile[MR][NR];
    int64_t g;
    int r, j, t;
    memset(tile, 0, sizeof(tile));
    for (g = 0; g < ng; g++)
        for (r = 0; r < MR; r++)
            for (t = 0; t < 4; t++) {
                const int32_t a = ap[g * 16 + r * 4 + t];
                if (a == 0) continue;
                for (j = 0; j < NR; j++) tile[r][j] += a * (int32_t)bp[g * 64 + j * 4 + t];
            }
    store_tile(tile, c, ldc, rows, cols, accumulate);
}

static void tile_k2_scalar(int64_t ng, const int16_t *ap, const int16_t *bp, int32_t *c,
                           int64_t ldc, int rows, int cols, int accumulate) {
    int32_t tile[MR][NR];
    int64_t g;
    int r, j, t;
    memset(tile, 0, sizeof(tile));
    for (g = 0; g < ng; g++)
        for (r = 0; r < MR; r++)
            for (t = 0; t < 2; t++) {
                const int32_t a = ap[g * 8 + r * 2 + t];
                if (a == 0) continue;
                for (j = 0; j < NR; j++) tile[r][j] += a * (int32_t)bp[g * 32 + j * 2 + t];
            }
    store_tile(tile, c, ldc, rows, cols, accumulate);
}

/* ---------------------------------------------------------------- AVX2 */
#if TA_X86

TA_TARGET_AVX2 static void finish_avx2(__m256i acc[MR][2], int32_t *c, int64_t ldc, int rows,
                                       int cols, int accumulate) {
    int r;
    if (rows == MR && cols == NR) {
        for (r = 0; r < MR; r++) {
            __m256i *dst0 = (__m256i *)(c + r * ldc), *dst1 = (__m256i *)(c + r * ldc + 8);
            if (accumulate) {
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_loadu_si256(dst0));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_loadu_si256(dst1));
            }
            _mm256_storeu_si256(dst0, acc[r][0]);
            _mm256_storeu_si256(dst1, acc[r][1]);
        }
    } else {
        int32_t tile[MR][NR];
        for (r = 0; r < MR; r++) {
            _mm256_storeu_si256((__m256i *)&tile[r][0], acc[r][0]);
            _mm256_storeu_si256((__m256i *)&tile[r][8], acc[r][1]);
        }
        store_tile(tile, c, ldc, rows, cols, accumulate);
    }
}

/* The accumulators are named variables, not an array, so that the compiler
 * keeps all eight in registers through the loop. */
#define K4_ROW(R, C0, C1)                                                                \
    do {                                                                                 \
        int32_t a32;                                                                     \
        __m256i a, au;                                                                   \
        memcpy(&a32, ap + g * 16 + (R) * 4, 4);                                          \
        a = _mm256_set1_epi32(a32);                                                      \
        au = _mm256_abs_epi8(a);                                                         \
        C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(b0, a)), ones)); \
        C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(b1, a)), ones)); \
    } while (0)

TA_TARGET_AVX2 static void tile_k4_avx2(int64_t ng, const int8_t *ap, const int8_t *bp,
                                        int32_t *c, int64_t ldc, int rows, int cols,
                                        int accumulate) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
    __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m256i acc[MR][2];
    int64_t g;
    for (g = 0; g < ng; g++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + g * 64));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + g * 64 + 32));
        K4_ROW(0, c00, c01);
        K4_ROW(1, c10, c11);
        K4_ROW(2, c20, c21);
        K4_ROW(3, c30, c31);
    }
    acc[0][0] = c00, acc[0][1] = c01, acc[1][0] = c10, acc[1][1] = c11;
    acc[2][0] = c20, acc[2][1] = c21, acc[3][0] = c30, acc[3][1] = c31;
    finish_avx2(acc, c, ldc, rows, cols, accumulate);
}

#define K2_ROW(R, C0, C1)                                                                \
    do {                                                                                 \
        int32_t a32;                                                                     \
        __m256i a;                                                                       \
        memcpy(&a32, ap + g * 8 + (R) * 2, 4);                                           \
        a = _mm256_set1_epi32(a32);                                                      \
        C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(a, b0));                             \
        C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(a, b1));                             \
    } while (0)

TA_TARGET_AVX2 static void tile_k2_avx2(int64_t ng, const int16_t *ap, const int16_t *bp,
                                        int32_t *c, int64_t ldc, int rows, int cols,
                                        int accumulate) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
    __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m256i acc[MR][2];
    int64_t g;
    for (g = 0; g < ng; g++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + g * 32));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + g * 32 + 16));
        K2_ROW(0, c00, c01);
        K2_ROW(1, c10, c11);
        K2_ROW(2, c20, c21);
        K2_ROW(3, c30, c31);
    }
    acc[0][0] = c00, acc[0][1] = c01, acc[1][0] = c10, acc[1][1] = c11;
    acc[2][0] = c20, acc[2][1] = c21, acc[3][0] = c30, acc[3][1] = c31;
    finish_avx2(acc, c, ldc, rows, cols, accumulate);
}

/* ---------------------------------------------------------------- AVX-512 VNNI */

/* One zmm holds a whole k-group of a panel (16 columns x 4 k). `corr` is the
 * -128 * colsum term, added once (in the first k block). */
TA_TARGET_VNNI static void tile_k4_vnni(int64_t ng, const int8_t *ap, const int8_t *bp,
                                        const int32_t *corr, int32_t *c, int64_t ldc,
                                        int rows, int cols, int accumulate) {
    const __m512i flip = _mm512_set1_epi32((int32_t)0x80808080u);
    __m512i acc[MR];
    int32_t tile[MR][NR];
    int64_t g;
    int r;
    for (r = 0; r < MR; r++)
        acc[r] = accumulate ? _mm512_setzero_si512() : _mm512_loadu_si512((const void *)corr);
    for (g = 0; g < ng; g++) {
        const __m512i b = _mm512_loadu_si512((const void *)(bp + g * 64));
        for (r = 0; r < MR; r++) {
            int32_t a32;
            memcpy(&a32, ap + g * 16 + r * 4, 4);
            acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_xor_si512(_mm512_set1_epi32(a32), flip), b);
        }
    }
    if (rows == MR && cols == NR) {
        for (r = 0; r < MR; r++) {
            int32_t *dst = c + r * ldc;
            if (accumulate) acc[r] = _mm512_add_epi32(acc[r], _mm512_loadu_si512((const void *)dst));
            _mm512_storeu_si512((void *)dst, acc[r]);
        }
    } else {
        for (r = 0; r < MR; r++) _mm512_storeu_si512((void *)&tile[r][0], acc[r]);
        store_tile(tile, c, ldc, rows, cols, accumulate);
    }
}
#endif

/* ---------------------------------------------------------------- driver */

enum { PATH_SCALAR, PATH_AVX2, PATH_VNNI };

int ta_gemm_int8_packed(int isa, const int8_t *A, int64_t M, int64_t K, int64_t N, int layout,
                        const uint8_t *Bp, int64_t nbytes, int32_t *C) {
    int64_t kp, np, db, total, prod, mp, mpanels, g0, gtotal, gblock, p;
    int32_t flags[4];
    int32_t *corr = NULL;
    void *apbuf;
    int level, rc, path;
    if (M < 0 || K < 0 || N < 0) return TA_ERR_SIZE;
    if (K > TA_INT8_MAX_K) return TA_ERR_KBOUND;
    if (!ta_mul_ok(M, K, TA_MAX_ELEMS, &prod) || !ta_mul_ok(M, N, TA_MAX_ELEMS, &prod) ||
        M > TA_MAX_ELEMS - MR)
        return TA_ERR_SIZE;
    if (!packed_geometry(layout, K, N, &kp, &np, &db, &total)) return TA_ERR_SIZE;
    if (!ta_mul_ok(round_up(M, MR), kp, TA_MAX_ELEMS / 2, &prod)) return TA_ERR_SIZE;
    if (nbytes != total) return TA_ERR_PACKED;
    rc = ta_resolve_isa(TA_KERNEL_INT8, isa, &level);
    if (rc != TA_OK) return rc;
    if (Bp == NULL || (M > 0 && N > 0 && C == NULL) || (M > 0 && K > 0 && A == NULL))
        return TA_ERR_NULL;
    if (!TA_ALIGNED(Bp, 4) || !TA_ALIGNED(C, 4)) return TA_ERR_ALIGN;
    if (M == 0 || N == 0) return TA_OK;
    if (K == 0) {
        memset(C, 0, sizeof(int32_t) * (size_t)(M * N));
        return TA_OK;
    }
    memcpy(flags, Bp + db + 4 * np * NR, sizeof(flags));

    path = PATH_SCALAR;
#if TA_X86
    if (level == TA_ISA_AVX512 && layout == TA_INT8_LAYOUT_K4) path = PATH_VNNI;
    else if (level >= TA_ISA_AVX2 && (layout == TA_INT8_LAYOUT_K2W || !flags[0])) path = PATH_AVX2;
#endif

    mpanels = (M + MR - 1) / MR;
    apbuf = malloc((size_t)(mpanels * MR * kp * (layout == TA_INT8_LAYOUT_K4 ? 1 : 2)));
    if (apbuf == NULL) return TA_ERR_NOMEM;
    if (path == PATH_VNNI) {
        int64_t j;
        corr = (int32_t *)malloc(sizeof(int32_t) * (size_t)(np * NR));
        if (corr == NULL) {
            free(apbuf);
            return TA_ERR_NOMEM;
        }
        memcpy(corr, Bp + db, sizeof(int32_t) * (size_t)(np * NR));
        for (j = 0; j < np * NR; j++) corr[j] = (int32_t)(0u - 128u * (uint32_t)corr[j]);
    }
    if (layout == TA_INT8_LAYOUT_K4) pack_a_k4(A, M, K, kp, (int8_t *)apbuf);
    else pack_a_k2(A, M, K, kp, (int16_t *)apbuf);

    gtotal = layout == TA_INT8_LAYOUT_K4 ? kp / 4 : kp / 2;
    gblock = layout == TA_INT8_LAYOUT_K4 ? KC / 4 : KC / 2;
    for (g0 = 0; g0 < gtotal; g0 += gblock) {
        const int64_t ng = (gtotal - g0) < gblock ? (gtotal - g0) : gblock;
        const int accumulate = g0 > 0;
        for (p = 0; p < np; p++) {
            const int cols = (int)((N - p * NR) < NR ? (N - p * NR) : NR);
            for (mp = 0; mp < mpanels; mp++) {
                const int rows = (int)((M - mp * MR) < MR ? (M - mp * MR) : MR);
                int32_t *ct = C + mp * MR * N + p * NR;
                if (layout == TA_INT8_LAYOUT_K4) {
                    const int8_t *ap = (const int8_t *)apbuf + mp * MR * kp + g0 * 16;
                    const int8_t *bp = (const int8_t *)Bp + p * NR * kp + g0 * 64;
#if TA_X86
                    if (path == PATH_VNNI) {
                        tile_k4_vnni(ng, ap, bp, corr + p * NR, ct, N, rows, cols, accumulate);
                        continue;
                    }
                    if (path == PATH_AVX2) {
                        tile_k4_avx2(ng, ap, bp, ct, N, rows, cols, accumulate);
                        continue;
                    }
#endif
                    tile_k4_scalar(ng, ap, bp, ct, N, rows, cols, accumulate);
                } else {
                    const int16_t *ap = (const int16_t *)apbuf + mp * MR * kp + g0 * 8;
                    const int16_t *bp = (const int16_t *)(const void *)Bp + p * NR * kp + g0 * 32;
#if TA_X86
                    if (path == PATH_AVX2) {
                        tile_k2_avx2(ng, ap, bp, ct, N, rows, cols, accumulate);
                        continue;
                    }
#endif
                    tile_k2_scalar(ng, ap, bp, ct, N, rows, cols, accumulate);
                }
            }
        }
    }
    free(corr);
    free(apbuf);
    return TA_OK;
}
