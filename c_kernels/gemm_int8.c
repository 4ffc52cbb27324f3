/* Exact int8 x int8 -> int32 matrix product C (M x N) = A (M x K) B (K x N), and the
 * fused int8 layer built on it: requantization, ReLU and int8 / int32 / float32 output.
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
 * int32 flags[4] (flags[0] = 1 if B contains -128). In both layouts one k-group of
 * one panel is 64 bytes (16 dwords, one per column), and A is packed to match:
 * row tiles of MR rows, k-group g, row r at dword g*MR + r of the tile.
 *
 * The product is a blocked GEMM (GotoBLAS order): per thread, a block of MC rows
 * of A is packed (L2), then for each column tile of up to 3 panels (48 columns)
 * and each k block of KB groups (B micro-panel <= 24 KB, L1) every MR-row tile
 * runs the register-tiled microkernel. Paths:
 *
 * VNNI (AVX-512, layout K4), 8 x 48 tile, 24 zmm accumulators: vpdpbusd on
 *   (a + 128) as unsigned times b; the accumulators start at -128 * colsum(B), so
 *   the int32 sums wrap but the final result is exact.
 * AVX-512BW without VNNI (layout K2W), 8 x 48 tile: vpmaddwd on sign-extended
 *   int16 pairs, vpaddd.
 * AVX2, 4 x 16 tile. Layout K4 (B without -128): vpmaddubsw multiplies unsigned
 *   by signed bytes and adds pairs with int16 saturation. We feed it |a| (as
 *   unsigned, so a = -128 gives 128) and sign(b, a) = b * sign(a); each pair sum is
 *   at most 2 * 128 * 127 = 32512 < 32767, so nothing saturates; vpmaddwd with ones
 *   widens to int32. Layout K2W (B with -128): vpmaddwd on int16 pairs, exact.
 * Scalar, 4 x 16 tile, either layout.
 * int32 accumulation is exact for K <= TA_INT8_MAX_K (K * 128 * 128 < 2^31).
 *
 * Threads: the work is cut into units (a row block of packed A times one column
 * tile, or row chunks when there are few columns) handed out by ta_parallel_units
 * (parallel.c): an atomic counter shared by the caller and detached helper threads,
 * so that a thread that starts late on a busy machine takes fewer. Every output
 * element is computed whole by one unit with the same integer operations, so the
 * result does not depend on the thread count or on who took which unit.
 *
 * Output stage (per element, column j; acc an int32 with wrapping addition):
 *   acc = (A B)[i, j] + bias[j]
 *   int32  : relu ? max(acc, 0) : acc
 *   float32: (float)((double)(relu ? max(acc, 0) : acc) * scale[j])
 *   int8   : v = acc * m[j] (int64, |v| < 2^62), q = round_half_even(v / 2^s[j]),
 *            clipped to [relu ? max(lo, 0) : lo, hi]
 * The rounding shift, for s > 0: (v + 2^(s-1) - 1 + ((v >> s) & 1)) >> s.
 */
#include <stdlib.h>

#include "ta_internal.h"


#define NR 16          /* columns of B per packed panel */
#define NV_MAX 3       /* panels per column tile of the AVX-512 kernels */
#ifndef KB_BYTES
#define KB_BYTES 24576 /* B micro-panel budget (L1) */
#endif
#ifndef MC_BYTES
#define MC_BYTES 262144 /* packed A block budget (L2) */
#endif
#define MIN_MACS_PER_THREAD (1 << 23) /* a thread start costs ~10-50 us */
#ifndef UNITS_PER_THREAD
#define UNITS_PER_THREAD 4
#endif
#define QUANT_BLOCK 16384 /* elements per task of ta_quantize_int8 */

enum { PATH_SCALAR, PATH_AVX2, PATH_BW, PATH_VNNI };

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

/* ---------------------------------------------------------------- paths */

/* 1 if the VNNI kernel may run: the CPU has AVX512-VNNI (the emulated test build
 * always has it). */
static int int8_has_vnni(void) {
#if defined(TA_SIMDE)
    return 1;
#else
    int f[8];
    ta_cpu_features(f);
    return f[6];
#endif
}

/* The kernel that runs for a resolved level, layout and B (see the file comment). */
static int int8_path(int level, int no_vnni, int layout, int b_has_min) {
#if TA_X86
    if (level == TA_ISA_AVX512) {
        if (layout == TA_INT8_LAYOUT_K4 && !no_vnni && int8_has_vnni()) return PATH_VNNI;
        if (layout == TA_INT8_LAYOUT_K2W) return PATH_BW;
    }
    if (level >= TA_ISA_AVX2 && (layout == TA_INT8_LAYOUT_K2W || !b_has_min)) return PATH_AVX2;
#else
    (void)level, (void)no_vnni, (void)layout, (void)b_has_min;
#endif
    return PATH_SCALAR;
}

/* Split the TA_INT8_NO_VNNI flag off `isa` and resolve the level; TA_OK or TA_ERR_ISA. */
static int int8_resolve(int isa, int *level, int *no_vnni) {
    *no_vnni = 0;
    if (isa != TA_ISA_AUTO && isa >= 0 && (isa & TA_INT8_NO_VNNI)) {
        *no_vnni = 1;
        isa &= ~TA_INT8_NO_VNNI;
    }
    return ta_resolve_isa(TA_KERNEL_INT8, isa, level);
}

int ta_int8_choose_layout(int isa, int b_has_min) {
    int level, no_vnni;
    if (int8_resolve(isa, &level, &no_vnni) != TA_OK) level = TA_ISA_SCALAR;
#if TA_X86
    if (level == TA_ISA_AVX512)
        return (!no_vnni && int8_has_vnni()) ? TA_INT8_LAYOUT_K4 : TA_INT8_LAYOUT_K2W;
#endif
    if (level == TA_ISA_AVX2 && b_has_min) return TA_INT8_LAYOUT_K2W;
    return TA_INT8_LAYOUT_K4;
}

/* ---------------------------------------------------------------- A packing */

#if TA_X86
/* K4 packing of 8 full rows, 8 k-groups (32 bytes of each row) at a time: an 8 x 8
 * transpose of dwords; returns the number of groups done (the rest is scalar). */
TA_TARGET_AVX2 static int64_t pack_a8_k4_avx2(const int8_t *src, int64_t K, uint8_t flip, uint8_t *d) {
    const __m256i f = _mm256_set1_epi8((char)flip);
    int64_t g;
    for (g = 0; 4 * (g + 8) <= K; g += 8) {
        __m256i r[8], t[8], u[8];
        int i;
        for (i = 0; i < 8; i++)
            r[i] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + i * K + 4 * g)), f);
        for (i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
        }
        for (i = 0; i < 8; i += 4) {
            u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
            u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
            u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
            u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
        }
        for (i = 0; i < 4; i++) {
            _mm256_storeu_si256((__m256i *)(d + (g + i) * 32), _mm256_permute2x128_si256(u[i], u[i + 4], 0x20));
            _mm256_storeu_si256((__m256i *)(d + (g + i + 4) * 32), _mm256_permute2x128_si256(u[i], u[i + 4], 0x31));
        }
    }
    return g;
}
#endif

/* Rows [0, rows) of A (row stride K) into tiles of mr rows: tile t, group g, row r is
 * dword (t * ng + g) * mr + r of dst. K4: the 4 bytes A[r, 4g..4g+3], XORed with
 * `flip` (0x80 turns int8 a into unsigned a + 128); K2W: A[r, 2g], A[r, 2g+1] as
 * int16. Rows and k beyond A are 0 (0 ^ flip for K4); they meet zero weights or
 * land in output rows that are never stored. */
static void pack_a(const int8_t *A, int64_t K, int64_t rows, int64_t ng, int mr, int layout,
                   uint8_t flip, int simd, uint8_t *dst) {
    const int64_t tiles = (rows + mr - 1) / mr;
    int64_t t, g, g0;
    int r;
    for (t = 0; t < tiles; t++) {
        uint8_t *tile = dst + t * ng * mr * 4;
        g0 = 0;
#if TA_X86
        if (simd && mr == 8 && layout == TA_INT8_LAYOUT_K4 && (t + 1) * mr <= rows)
            g0 = pack_a8_k4_avx2(A + t * mr * K, K, flip, tile);
#else
        (void)simd;
#endif
        for (r = 0; r < mr; r++) {
            const int64_t i = t * mr + r;
            uint8_t *d = tile + r * 4;
            if (i >= rows) {
                for (g = 0; g < ng; g++) memset(d + g * mr * 4, layout == TA_INT8_LAYOUT_K4 ? flip : 0, 4);
                continue;
            }
            if (layout == TA_INT8_LAYOUT_K4) {
                const int8_t *src = A + i * K;
                const int64_t full = K / 4;
                const uint32_t f32 = 0x01010101u * flip;
                for (g = g0; g < full; g++) {
                    uint32_t w;
                    memcpy(&w, src + 4 * g, 4);
                    w ^= f32;
                    memcpy(d + g * mr * 4, &w, 4);
                }
                for (; g < ng; g++) {
                    int u;
                    for (u = 0; u < 4; u++) {
                        const int64_t k = 4 * g + u;
                        d[g * mr * 4 + u] = (uint8_t)((k < K ? (uint8_t)src[k] : 0) ^ flip);
                    }
                }
            } else {
                const int8_t *src = A + i * K;
                for (g = 0; g < ng; g++) {
                    int16_t pair[2];
                    pair[0] = 2 * g < K ? src[2 * g] : 0;
                    pair[1] = 2 * g + 1 < K ? src[2 * g + 1] : 0;
                    memcpy(d + g * mr * 4, pair, 4);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- microkernels
 *
 * Every kernel computes a full mr x (nv * 16) tile over ng k-groups: ap is the
 * tile's packed A at its first group, bp the first panel's first group, pstride
 * the bytes between panels; the tile goes to dst (row stride ld int32). first:
 * start from init (the VNNI column correction, else 0) instead of dst. */

static void tile_scalar(int layout, int64_t ng, const uint8_t *ap, const uint8_t *bp,
                        int32_t *dst, int64_t ld, int first) {
    int32_t acc[4][NR];
    int64_t g;
    int r, j, t;
    for (r = 0; r < 4; r++)
        for (j = 0; j < NR; j++) acc[r][j] = first ? 0 : dst[r * ld + j];
    for (g = 0; g < ng; g++)
        for (r = 0; r < 4; r++) {
            if (layout == TA_INT8_LAYOUT_K4) {
                const int8_t *a = (const int8_t *)ap + (g * 4 + r) * 4;
                const int8_t *b = (const int8_t *)bp + g * 64;
                for (t = 0; t < 4; t++) {
                    if (a[t] == 0) continue;
                    for (j = 0; j < NR; j++)
                        acc[r][j] = (int32_t)((uint32_t)acc[r][j] + (uint32_t)(a[t] * (int32_t)b[j * 4 + t]));
                }
            } else {
                int16_t a[2], b[2];
                memcpy(a, ap + (g * 4 + r) * 4, 4);
                for (j = 0; j < NR; j++) {
                    memcpy(b, bp + g * 64 + j * 4, 4);
                    acc[r][j] = (int32_t)((uint32_t)acc[r][j] + (uint32_t)(a[0] * b[0] + a[1] * b[1]));
                }
            }
        }
    for (r = 0; r < 4; r++)
        for (j = 0; j < NR; j++) dst[r * ld + j] = acc[r][j];
}

#if TA_X86

/* AVX2: the accumulators are named variables so that all eight stay in registers. */
#define AVX2_K4_ROW(R, C0, C1)                                                           \
    do {                                                                                 \
        int32_t a32;                                                                     \
        __m256i a, au;                                                                   \
        memcpy(&a32, ap + g * 16 + (R) * 4, 4);                                          \
        a = _mm256_set1_epi32(a32);                                                      \
        au = _mm256_abs_epi8(a);                                                         \
        C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(b0, a)), ones)); \
        C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(b1, a)), ones)); \
    } while (0)

#define AVX2_K2_ROW(R, C0, C1)                                                           \
    do {                                                                                 \
        int32_t a32;                                                                     \
        __m256i a;                                                                       \
        memcpy(&a32, ap + g * 16 + (R) * 4, 4);                                          \
        a = _mm256_set1_epi32(a32);                                                      \
        C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(a, b0));                             \
        C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(a, b1));                             \
    } while (0)

#define AVX2_LOAD(R, C0, C1)                                                             \
    do {                                                                                 \
        C0 = first ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(dst + (R) * ld)); \
        C1 = first ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(dst + (R) * ld + 8)); \
    } while (0)

#define AVX2_STORE(R, C0, C1)                                                            \
    do {                                                                                 \
        _mm256_storeu_si256((__m256i *)(dst + (R) * ld), C0);                            \
        _mm256_storeu_si256((__m256i *)(dst + (R) * ld + 8), C1);                        \
    } while (0)

TA_TARGET_AVX2 static void tile_avx2(int layout, int64_t ng, const uint8_t *ap, const uint8_t *bp,
                                     int32_t *dst, int64_t ld, int first) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c00, c01, c10, c11, c20, c21, c30, c31;
    int64_t g;
    AVX2_LOAD(0, c00, c01);
    AVX2_LOAD(1, c10, c11);
    AVX2_LOAD(2, c20, c21);
    AVX2_LOAD(3, c30, c31);
    if (layout == TA_INT8_LAYOUT_K4) {
        for (g = 0; g < ng; g++) {
            const __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + g * 64));
            const __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + g * 64 + 32));
            AVX2_K4_ROW(0, c00, c01);
            AVX2_K4_ROW(1, c10, c11);
            AVX2_K4_ROW(2, c20, c21);
            AVX2_K4_ROW(3, c30, c31);
        }
    } else {
        for (g = 0; g < ng; g++) {
            const __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + g * 64));
            const __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + g * 64 + 32));
            AVX2_K2_ROW(0, c00, c01);
            AVX2_K2_ROW(1, c10, c11);
            AVX2_K2_ROW(2, c20, c21);
            AVX2_K2_ROW(3, c30, c31);
        }
    }
    AVX2_STORE(0, c00, c01);
    AVX2_STORE(1, c10, c11);
    AVX2_STORE(2, c20, c21);
    AVX2_STORE(3, c30, c31);
}

/* AVX-512: 8 rows x NV panels. One zmm holds a k-group of a panel (16 columns x
 * one dword); each row's dword of A is broadcast and meets every panel. VNNI
 * uses vpdpbusd, BW vpmaddwd + vpaddd. The 8 * NV accumulators are named
 * variables (ZACC_*), so the compiler keeps them in registers. */
#define VNNI_OP(c, a, b) _mm512_dpbusd_epi32(c, a, b)
#define BW_OP(c, a, b) _mm512_add_epi32(c, _mm512_madd_epi16(a, b))
#define ZLOAD(C, R, V)                                                                   \
    C = first ? (init ? _mm512_loadu_si512((const void *)(init + 16 * (V))) : _mm512_setzero_si512()) \
              : _mm512_loadu_si512((const void *)(dst + (R) * ld + 16 * (V)))
#define ZSTORE(C, R, V) _mm512_storeu_si512((void *)(dst + (R) * ld + 16 * (V)), C)
#define ZBCAST(R) (memcpy(&a32, ap + g * 32 + (R) * 4, 4), _mm512_set1_epi32(a32))

#define ZROW1(OP, R, C0)  \
    do {  \
        const __m512i a = ZBCAST(R);  \
        C0 = OP(C0, a, b0);  \
    } while (0)

#define ZKERNEL1(NAME, TARGET, OP)  \
    TARGET static void NAME(int64_t ng, const uint8_t *ap, const uint8_t *bp, int64_t pstride,  \
                            const int32_t *init, int32_t *dst, int64_t ld, int first) {  \
        __m512i c00, c10, c20, c30, c40, c50, c60, c70;  \
        int64_t g;  \
        int32_t a32;  \
        (void)pstride;  \
        ZLOAD(c00, 0, 0);  \
        ZLOAD(c10, 1, 0);  \
        ZLOAD(c20, 2, 0);  \
        ZLOAD(c30, 3, 0);  \
        ZLOAD(c40, 4, 0);  \
        ZLOAD(c50, 5, 0);  \
        ZLOAD(c60, 6, 0);  \
        ZLOAD(c70, 7, 0);  \
        for (g = 0; g < ng; g++) {  \
            const __m512i b0 = _mm512_loadu_si512((const void *)(bp + 0 * pstride + g * 64));  \
            ZROW1(OP, 0, c00);  \
            ZROW1(OP, 1, c10);  \
            ZROW1(OP, 2, c20);  \
            ZROW1(OP, 3, c30);  \
            ZROW1(OP, 4, c40);  \
            ZROW1(OP, 5, c50);  \
            ZROW1(OP, 6, c60);  \
            ZROW1(OP, 7, c70);  \
        }  \
        ZSTORE(c00, 0, 0);  \
        ZSTORE(c10, 1, 0);  \
        ZSTORE(c20, 2, 0);  \
        ZSTORE(c30, 3, 0);  \
        ZSTORE(c40, 4, 0);  \
        ZSTORE(c50, 5, 0);  \
        ZSTORE(c60, 6, 0);  \
        ZSTORE(c70, 7, 0);  \
    }

#define ZROW2(OP, R, C0, C1)  \
    do {  \
        const __m512i a = ZBCAST(R);  \
        C0 = OP(C0, a, b0);  \
        C1 = OP(C1, a, b1);  \
    } while (0)

#define ZKERNEL2(NAME, TARGET, OP)  \
    TARGET static void NAME(int64_t ng, const uint8_t *ap, const uint8_t *bp, int64_t pstride,  \
                            const int32_t *init, int32_t *dst, int64_t ld, int first) {  \
        __m512i c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;  \
        int64_t g;  \
        int32_t a32;  \
        (void)pstride;  \
        ZLOAD(c00, 0, 0); ZLOAD(c01, 0, 1);  \
        ZLOAD(c10, 1, 0); ZLOAD(c11, 1, 1);  \
        ZLOAD(c20, 2, 0); ZLOAD(c21, 2, 1);  \
        ZLOAD(c30, 3, 0); ZLOAD(c31, 3, 1);  \
        ZLOAD(c40, 4, 0); ZLOAD(c41, 4, 1);  \
        ZLOAD(c50, 5, 0); ZLOAD(c51, 5, 1);  \
        ZLOAD(c60, 6, 0); ZLOAD(c61, 6, 1);  \
        ZLOAD(c70, 7, 0); ZLOAD(c71, 7, 1);  \
        for (g = 0; g < ng; g++) {  \
            const __m512i b0 = _mm512_loadu_si512((const void *)(bp + 0 * pstride + g * 64));  \
            const __m512i b1 = _mm512_loadu_si512((const void *)(bp + 1 * pstride + g * 64));  \
            ZROW2(OP, 0, c00, c01);  \
            ZROW2(OP, 1, c10, c11);  \
            ZROW2(OP, 2, c20, c21);  \
            ZROW2(OP, 3, c30, c31);  \
            ZROW2(OP, 4, c40, c41);  \
            ZROW2(OP, 5, c50, c51);  \
            ZROW2(OP, 6, c60, c61);  \
            ZROW2(OP, 7, c70, c71);  \
        }  \
        ZSTORE(c00, 0, 0); ZSTORE(c01, 0, 1);  \
        ZSTORE(c10, 1, 0); ZSTORE(c11, 1, 1);  \
        ZSTORE(c20, 2, 0); ZSTORE(c21, 2, 1);  \
        ZSTORE(c30, 3, 0); ZSTORE(c31, 3, 1);  \
        ZSTORE(c40, 4, 0); ZSTORE(c41, 4, 1);  \
        ZSTORE(c50, 5, 0); ZSTORE(c51, 5, 1);  \
        ZSTORE(c60, 6, 0); ZSTORE(c61, 6, 1);  \
        ZSTORE(c70, 7, 0); ZSTORE(c71, 7, 1);  \
    }

#define ZROW3(OP, R, C0, C1, C2)  \
    do {  \
        const __m512i a = ZBCAST(R);  \
        C0 = OP(C0, a, b0);  \
        C1 = OP(C1, a, b1);  \
        C2 = OP(C2, a, b2);  \
    } while (0)

#define ZKERNEL3(NAME, TARGET, OP)  \
    TARGET static void NAME(int64_t ng, const uint8_t *ap, const uint8_t *bp, int64_t pstride,  \
                            const int32_t *init, int32_t *dst, int64_t ld, int first) {  \
        __m512i c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32, c40, c41, c42, c50, c51, c52, c60, c61, c62, c70, c71, c72;  \
        int64_t g;  \
        int32_t a32;  \
        (void)pstride;  \
        ZLOAD(c00, 0, 0); ZLOAD(c01, 0, 1); ZLOAD(c02, 0, 2);  \
        ZLOAD(c10, 1, 0); ZLOAD(c11, 1, 1); ZLOAD(c12, 1, 2);  \
        ZLOAD(c20, 2, 0); ZLOAD(c21, 2, 1); ZLOAD(c22, 2, 2);  \
        ZLOAD(c30, 3, 0); ZLOAD(c31, 3, 1); ZLOAD(c32, 3, 2);  \
        ZLOAD(c40, 4, 0); ZLOAD(c41, 4, 1); ZLOAD(c42, 4, 2);  \
        ZLOAD(c50, 5, 0); ZLOAD(c51, 5, 1); ZLOAD(c52, 5, 2);  \
        ZLOAD(c60, 6, 0); ZLOAD(c61, 6, 1); ZLOAD(c62, 6, 2);  \
        ZLOAD(c70, 7, 0); ZLOAD(c71, 7, 1); ZLOAD(c72, 7, 2);  \
        for (g = 0; g < ng; g++) {  \
            const __m512i b0 = _mm512_loadu_si512((const void *)(bp + 0 * pstride + g * 64));  \
            const __m512i b1 = _mm512_loadu_si512((const void *)(bp + 1 * pstride + g * 64));  \
            const __m512i b2 = _mm512_loadu_si512((const void *)(bp + 2 * pstride + g * 64));  \
            ZROW3(OP, 0, c00, c01, c02);  \
            ZROW3(OP, 1, c10, c11, c12);  \
            ZROW3(OP, 2, c20, c21, c22);  \
            ZROW3(OP, 3, c30, c31, c32);  \
            ZROW3(OP, 4, c40, c41, c42);  \
            ZROW3(OP, 5, c50, c51, c52);  \
            ZROW3(OP, 6, c60, c61, c62);  \
            ZROW3(OP, 7, c70, c71, c72);  \
        }  \
        ZSTORE(c00, 0, 0); ZSTORE(c01, 0, 1); ZSTORE(c02, 0, 2);  \
        ZSTORE(c10, 1, 0); ZSTORE(c11, 1, 1); ZSTORE(c12, 1, 2);  \
        ZSTORE(c20, 2, 0); ZSTORE(c21, 2, 1); ZSTORE(c22, 2, 2);  \
        ZSTORE(c30, 3, 0); ZSTORE(c31, 3, 1); ZSTORE(c32, 3, 2);  \
        ZSTORE(c40, 4, 0); ZSTORE(c41, 4, 1); ZSTORE(c42, 4, 2);  \
        ZSTORE(c50, 5, 0); ZSTORE(c51, 5, 1); ZSTORE(c52, 5, 2);  \
        ZSTORE(c60, 6, 0); ZSTORE(c61, 6, 1); ZSTORE(c62, 6, 2);  \
        ZSTORE(c70, 7, 0); ZSTORE(c71, 7, 1); ZSTORE(c72, 7, 2);  \
    }

ZKERNEL1(tile_vnni1, TA_TARGET_VNNI, VNNI_OP)
ZKERNEL2(tile_vnni2, TA_TARGET_VNNI, VNNI_OP)
ZKERNEL3(tile_vnni3, TA_TARGET_VNNI, VNNI_OP)
ZKERNEL1(tile_bw1, TA_TARGET_AVX512, BW_OP)
ZKERNEL2(tile_bw2, TA_TARGET_AVX512, BW_OP)
ZKERNEL3(tile_bw3, TA_TARGET_AVX512, BW_OP)
#endif

/* ---------------------------------------------------------------- output stage */

/* Parameters of the output stage; per-column arrays have N entries. */
typedef struct {
    int kind, relu, lo, hi;   /* kind: TA_INT8_OUT_*; lo already max(lo, 0) with relu */
    const int32_t *bias;      /* N or NULL */
    const int32_t *mult;      /* N (int8 output) */
    const int32_t *shift;     /* N (int8 output) */
    const double *scale;      /* N (float32 output) */
    int per_tensor;           /* mult/shift/scale are all one value */
    void *Y;                  /* M x N of the output type */
    int64_t N;
} out_stage;

static int32_t requant_one(int32_t acc, int32_t m, int s, int lo, int hi) {
    int64_t v = (int64_t)acc * m;
    if (s > 0) v = (v + (((int64_t)1 << (s - 1)) - 1) + ((v >> s) & 1)) >> s;
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int32_t)v;
}

/* Columns [j0, cols) of one row: src (int32 accumulators of columns col0...) -> Y row. */
static void out_row_scalar(const out_stage *o, const int32_t *src, int64_t row, int64_t col0,
                           int j0, int cols) {
    int j;
    for (j = j0; j < cols; j++) {
        const int64_t c = col0 + j;
        int32_t acc = src[j];
        if (o->bias) acc = (int32_t)((uint32_t)acc + (uint32_t)o->bias[c]);
        if (o->kind == TA_INT8_OUT_INT8) {
            ((int8_t *)o->Y)[row * o->N + c] = (int8_t)requant_one(acc, o->mult[c], o->shift[c], o->lo, o->hi);
        } else {
            if (o->relu && acc < 0) acc = 0;
            if (o->kind == TA_INT8_OUT_INT32) ((int32_t *)o->Y)[row * o->N + c] = acc;
            else ((float *)o->Y)[row * o->N + c] = (float)((double)acc * o->scale[c]);
        }
    }
}

#if TA_X86
/* int8 requantization of 16 accumulators. vpmuldq multiplies the low dwords of the
 * qwords, so even and odd columns are two halves of 8 int64 products v (|v| < 2^62).
 * The rounding shift uses logical shifts on u = v + 2^63 (nonnegative, < 2^64):
 * 2^63 / 2^s is an even integer for s <= 62, so floor parity and ties are those of v,
 * and q = round(u / 2^s) - 2^(63 - s). rq_consts holds what depends on s only. */
typedef struct {
    __m512i s, pos, half, offs; /* shift, s > 0, 2^(s-1) - (s > 0), 2^(63-s) */
} rq_consts;

TA_TARGET_AVX512 static inline rq_consts rq_prepare(__m512i s) {
    const __m512i one = _mm512_set1_epi64(1);
    rq_consts c;
    c.s = s;
    c.pos = _mm512_min_epi64(s, one);
    c.half = _mm512_sub_epi64(_mm512_srli_epi64(_mm512_sllv_epi64(one, s), 1), c.pos);
    c.offs = _mm512_sllv_epi64(one, _mm512_sub_epi64(_mm512_set1_epi64(63), s));
    return c;
}

TA_TARGET_AVX512 static inline __m512i rq_half(__m512i a, __m512i m, const rq_consts *c, __m512i lo,
                                               __m512i hi) {
    const __m512i u = _mm512_add_epi64(_mm512_mul_epi32(a, m), _mm512_set1_epi64(INT64_MIN));
    const __m512i odd = _mm512_and_si512(_mm512_srlv_epi64(u, c->s), c->pos);
    __m512i r = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_add_epi64(u, c->half), odd), c->s);
    r = _mm512_sub_epi64(r, c->offs);
    return _mm512_min_epi64(_mm512_max_epi64(r, lo), hi);
}

/* even/odd halves back into 16 int8 (values already in [-128, 127]) */
TA_TARGET_AVX512 static inline __m128i rq_join(__m512i qe, __m512i qo) {
    const __m512i low32 = _mm512_set1_epi64(0xffffffffLL);
    return _mm512_cvtsepi32_epi8(_mm512_or_si512(_mm512_and_si512(qe, low32), _mm512_slli_epi64(qo, 32)));
}

TA_TARGET_AVX512 static void out_row_avx512(const out_stage *o, const int32_t *src, int64_t row,
                                            int64_t col0, int cols) {
    const __m512i lo = _mm512_set1_epi64(o->lo), hi = _mm512_set1_epi64(o->hi);
    const __m512i zero = _mm512_setzero_si512(), low32 = _mm512_set1_epi64(0xffffffffLL);
    __m512i m1 = zero;
    rq_consts ce, co;
    __m256d sc1 = _mm256_setzero_pd();
    int j = 0;
    if (o->kind == TA_INT8_OUT_INT8 && o->per_tensor) {
        m1 = _mm512_set1_epi64(o->mult[0]);
        ce = rq_prepare(_mm512_set1_epi64(o->shift[0]));
        co = ce;
    }
    if (o->kind == TA_INT8_OUT_F32 && o->per_tensor) sc1 = _mm256_set1_pd(o->scale[0]);
    for (; j + 16 <= cols; j += 16) {
        const int64_t c = col0 + j;
        __m512i acc = _mm512_loadu_si512((const void *)(src + j));
        if (o->bias) acc = _mm512_add_epi32(acc, _mm512_loadu_si512((const void *)(o->bias + c)));
        if (o->kind == TA_INT8_OUT_INT8) {
            __m128i q;
            if (o->per_tensor) {
                q = rq_join(rq_half(acc, m1, &ce, lo, hi), rq_half(_mm512_srli_epi64(acc, 32), m1, &co, lo, hi));
            } else {
                const __m512i m = _mm512_loadu_si512((const void *)(o->mult + c));
                const __m512i sv = _mm512_loadu_si512((const void *)(o->shift + c));
                const rq_consts pe = rq_prepare(_mm512_and_si512(sv, low32));
                const rq_consts po = rq_prepare(_mm512_srli_epi64(sv, 32));
                q = rq_join(rq_half(acc, m, &pe, lo, hi),
                            rq_half(_mm512_srli_epi64(acc, 32), _mm512_srli_epi64(m, 32), &po, lo, hi));
            }
            _mm_storeu_si128((__m128i *)((int8_t *)o->Y + row * o->N + c), q);
            continue;
        }
        if (o->relu) acc = _mm512_max_epi32(acc, zero);
        if (o->kind == TA_INT8_OUT_INT32) {
            _mm512_storeu_si512((void *)((int32_t *)o->Y + row * o->N + c), acc);
        } else {
            float *y = (float *)o->Y + row * o->N + c;
            int h;
            for (h = 0; h < 2; h++) {
                const __m256d sc = o->per_tensor ? sc1 : _mm256_loadu_pd(o->scale + c + 8 * h);
                const __m256d sc2 = o->per_tensor ? sc1 : _mm256_loadu_pd(o->scale + c + 8 * h + 4);
                const __m256i a8 = h ? _mm512_extracti64x4_epi64(acc, 1) : _mm512_castsi512_si256(acc);
                const __m256d d0 = _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(a8)), sc);
                const __m256d d1 = _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(a8, 1)), sc2);
                _mm_storeu_ps(y + 8 * h, _mm256_cvtpd_ps(d0));
                _mm_storeu_ps(y + 8 * h + 4, _mm256_cvtpd_ps(d1));
            }
        }
    }
    out_row_scalar(o, src, row, col0, j, cols);
}
#endif

/* rows x cols accumulators at src (row stride lds) -> output rows row0..., columns col0... */
static void out_block(const out_stage *o, int use_avx512, const int32_t *src, int64_t lds,
                      int64_t row0, int rows, int64_t col0, int cols) {
    int r;
    for (r = 0; r < rows; r++) {
#if TA_X86
        if (use_avx512) {
            out_row_avx512(o, src + r * lds, row0 + r, col0, cols);
            continue;
        }
#else
        (void)use_avx512;
#endif
        out_row_scalar(o, src + r * lds, row0 + r, col0, 0, cols);
    }
}

/* ---------------------------------------------------------------- driver */

typedef struct {
    int path, layout, mr, nvmax, use_avx512_out;
    int64_t M, K, N, ng, np, kbg, mc_tiles;
    int64_t row_tiles, col_tiles, nru, ncu; /* work units: nru row groups x ncu column groups */
    const int8_t *A;
    const uint8_t *Bp;
    int64_t pstride;
    const int32_t *corr;       /* VNNI: -128 * colsum, np * 16 */
    uint8_t *abuf;             /* per thread: mc_tiles * mr * ng * 4 bytes */
    int32_t *sbuf;             /* per thread: mc_tiles * mr * nvmax * 16 int32 */
    int direct;                /* int32 output straight into Y for full tiles */
    int64_t *packed_rows;      /* per thread: first and end row tile now in its abuf (or -1) */
    out_stage out;
} gemm_job;

static void run_tile(const gemm_job *jb, int64_t ngb, const uint8_t *ap, const uint8_t *bp,
                     int nv, const int32_t *init, int32_t *dst, int64_t ld, int first) {
    switch (jb->path) {
#if TA_X86
    case PATH_VNNI:
        if (nv == 3) tile_vnni3(ngb, ap, bp, jb->pstride, init, dst, ld, first);
        else if (nv == 2) tile_vnni2(ngb, ap, bp, jb->pstride, init, dst, ld, first);
        else tile_vnni1(ngb, ap, bp, jb->pstride, init, dst, ld, first);
        return;
    case PATH_BW:
        if (nv == 3) tile_bw3(ngb, ap, bp, jb->pstride, NULL, dst, ld, first);
        else if (nv == 2) tile_bw2(ngb, ap, bp, jb->pstride, NULL, dst, ld, first);
        else tile_bw1(ngb, ap, bp, jb->pstride, NULL, dst, ld, first);
        return;
    case PATH_AVX2:
        tile_avx2(jb->layout, ngb, ap, bp, dst, ld, first);
        return;
#endif
    default:
        (void)nv, (void)init;
        tile_scalar(jb->layout, ngb, ap, bp, dst, ld, first);
    }
}

/* One unit of work on thread `tid`: row tiles [rt0, rt1) x column tiles [ct0, ct1),
 * every output element of it complete (all of K, then the output stage). */
static void gemm_unit(const gemm_job *jb, int64_t tid, int64_t rt0, int64_t rt1, int64_t ct0,
                      int64_t ct1) {
    const int mr = jb->mr, ncols = jb->nvmax * NR;
    uint8_t *abuf = jb->abuf + tid * jb->mc_tiles * mr * jb->ng * 4;
    int32_t *sbuf = jb->sbuf + tid * jb->mc_tiles * mr * ncols;
    int64_t mt0, ct, kb, rt;
    for (mt0 = rt0; mt0 < rt1; mt0 += jb->mc_tiles) {
        const int64_t mt1 = (rt1 - mt0) < jb->mc_tiles ? rt1 : mt0 + jb->mc_tiles;
        const int64_t row_lo = mt0 * mr;
        const int64_t rows_blk = ((mt1 * mr) < jb->M ? mt1 * mr : jb->M) - row_lo;
        int64_t *have = jb->packed_rows + 2 * tid;
        if (have[0] != mt0 || have[1] != mt1) { /* a unit of the same row block reuses it */
            pack_a(jb->A + row_lo * jb->K, jb->K, rows_blk, jb->ng, mr, jb->layout,
                   jb->path == PATH_VNNI ? 0x80 : 0, jb->path >= PATH_AVX2, abuf);
            have[0] = mt0, have[1] = mt1;
        }
        for (ct = ct0; ct < ct1; ct++) {
            const int64_t p0 = ct * jb->nvmax, col0 = p0 * NR;
            const int nv = (int)((jb->np - p0) < jb->nvmax ? jb->np - p0 : jb->nvmax);
            const int cols = (int)((jb->N - col0) < nv * NR ? jb->N - col0 : nv * NR);
            for (kb = 0; kb < jb->ng; kb += jb->kbg) {
                const int64_t ngb = (jb->ng - kb) < jb->kbg ? jb->ng - kb : jb->kbg;
                const uint8_t *bp = jb->Bp + p0 * jb->pstride + kb * 64;
                for (rt = mt0; rt < mt1; rt++) {
                    const int rows = (int)((jb->M - rt * mr) < mr ? jb->M - rt * mr : mr);
                    const uint8_t *ap = abuf + (rt - mt0) * jb->ng * mr * 4 + kb * mr * 4;
                    const int32_t *init = jb->corr ? jb->corr + col0 : NULL;
                    if (jb->direct && rows == mr && cols == nv * NR)
                        run_tile(jb, ngb, ap, bp, nv, init, (int32_t *)jb->out.Y + rt * mr * jb->N + col0,
                                 jb->N, kb == 0);
                    else
                        run_tile(jb, ngb, ap, bp, nv, init, sbuf + (rt - mt0) * mr * ncols, ncols, kb == 0);
                }
            }
            for (rt = mt0; rt < mt1; rt++) {
                const int rows = (int)((jb->M - rt * mr) < mr ? jb->M - rt * mr : mr);
                if (jb->direct && rows == mr && cols == nv * NR) {
                    int32_t *y = (int32_t *)jb->out.Y + rt * mr * jb->N + col0;
                    if (jb->out.bias || jb->out.relu)
                        out_block(&jb->out, jb->use_avx512_out, y, jb->N, rt * mr, rows, col0, cols);
                } else {
                    out_block(&jb->out, jb->use_avx512_out, sbuf + (rt - mt0) * mr * ncols, ncols,
                              rt * mr, rows, col0, cols);
                }
            }
        }
    }
}

static void run_unit(const gemm_job *jb, int64_t tid, int64_t u) {
    const int64_t ru = u / jb->ncu, cu = u % jb->ncu;
    gemm_unit(jb, tid, jb->row_tiles * ru / jb->nru, jb->row_tiles * (ru + 1) / jb->nru,
              jb->col_tiles * cu / jb->ncu, jb->col_tiles * (cu + 1) / jb->ncu);
}

static void gemm_unit_fn(void *ctx, int tid, int64_t u) {
    run_unit((const gemm_job *)ctx, tid, u);
}

/* Run all units of jb on nt threads (ta_parallel_units); TA_OK or TA_ERR_NOMEM. */
static int run_units(const gemm_job *jb, int nt) {
    gemm_job job = *jb;
    int64_t have[2 * TA_MAX_THREADS];
    int i;
    for (i = 0; i < 2 * TA_MAX_THREADS; i++) have[i] = -1;
    job.packed_rows = have;
    return ta_parallel_units(nt, job.nru * job.ncu, gemm_unit_fn, &job);
}

/* Everything checked; M, N, K > 0. Plans, allocates and runs the product + output stage. */
static int gemm_run(int level, int no_vnni, int threads, const int8_t *A, int64_t M, int64_t K,
                    int64_t N, int layout, const uint8_t *Bp, int64_t kp, int64_t np, int64_t db,
                    out_stage *out) {
    gemm_job jb;
    int32_t flags[4];
    int64_t work, mc_rows, unit_tiles;
    int nt, rc;
    void *araw, *sraw;
    memset(&jb, 0, sizeof(jb));
    memcpy(flags, Bp + db + 4 * np * NR, sizeof(flags));
    jb.path = int8_path(level, no_vnni, layout, flags[0]);
    jb.layout = layout;
    jb.mr = (jb.path == PATH_VNNI || jb.path == PATH_BW) ? 8 : 4;
    jb.nvmax = (jb.path == PATH_VNNI || jb.path == PATH_BW) ? NV_MAX : 1;
    jb.use_avx512_out = level == TA_ISA_AVX512;
    jb.M = M, jb.K = K, jb.N = N, jb.np = np, jb.A = A, jb.Bp = Bp;
    jb.ng = layout == TA_INT8_LAYOUT_K4 ? kp / 4 : kp / 2;
    jb.pstride = jb.ng * 64;
    jb.kbg = KB_BYTES / (64 * jb.nvmax);
    if (jb.kbg >= jb.ng) jb.kbg = jb.ng;
    else jb.kbg = (jb.ng + (jb.ng + jb.kbg - 1) / jb.kbg - 1) / ((jb.ng + jb.kbg - 1) / jb.kbg);
    mc_rows = MC_BYTES / (jb.ng * 4);
    jb.mc_tiles = mc_rows / jb.mr < 1 ? 1 : mc_rows / jb.mr;
    jb.row_tiles = (M + jb.mr - 1) / jb.mr;
    jb.col_tiles = (np + jb.nvmax - 1) / jb.nvmax;
    jb.out = *out;
    jb.direct = out->kind == TA_INT8_OUT_INT32;

    /* Units of work, small enough that the last one taken adds little: a row block of
     * packed A (MC rows) times one column tile. A thread packs a row block once and
     * keeps it for its next units of the same block, and each unit reads only its
     * columns of B. With too few such units (few columns), the rows are cut into
     * UNITS_PER_THREAD chunks per thread instead. */
    work = (int64_t)jb.mr * jb.nvmax * NR * K; /* MACs per tile */
    nt = ta_threads_for(threads, jb.row_tiles * jb.col_tiles, work, MIN_MACS_PER_THREAD);
    jb.nru = (jb.row_tiles + jb.mc_tiles - 1) / jb.mc_tiles;
    jb.ncu = 1;
    if (nt > 1 && jb.nru * jb.col_tiles >= 2 * (int64_t)nt) {
        jb.ncu = jb.col_tiles;
    } else if (nt > 1) {
        jb.nru = jb.row_tiles < UNITS_PER_THREAD * nt ? jb.row_tiles : UNITS_PER_THREAD * nt;
    }
    unit_tiles = (jb.row_tiles + jb.nru - 1) / jb.nru;
    if (unit_tiles < jb.mc_tiles) jb.mc_tiles = unit_tiles;

    araw = malloc((size_t)(nt * jb.mc_tiles * jb.mr * jb.ng * 4 + 64));
    sraw = malloc((size_t)(nt * jb.mc_tiles * jb.mr * jb.nvmax * NR) * sizeof(int32_t) + 64);
    if (jb.path == PATH_VNNI) jb.corr = (const int32_t *)malloc(sizeof(int32_t) * (size_t)(np * NR));
    if (araw == NULL || sraw == NULL || (jb.path == PATH_VNNI && jb.corr == NULL)) {
        free(araw), free(sraw), free((void *)jb.corr);
        return TA_ERR_NOMEM;
    }
    jb.abuf = (uint8_t *)araw + (64 - (uintptr_t)araw % 64) % 64;
    jb.sbuf = (int32_t *)(void *)((uint8_t *)sraw + (64 - (uintptr_t)sraw % 64) % 64);
    if (jb.corr) {
        int32_t *corr = (int32_t *)jb.corr;
        int64_t j;
        memcpy(corr, Bp + db, sizeof(int32_t) * (size_t)(np * NR));
        for (j = 0; j < np * NR; j++) corr[j] = (int32_t)(0u - 128u * (uint32_t)corr[j]);
    }
    rc = run_units(&jb, nt);
    free(araw), free(sraw), free((void *)jb.corr);
    return rc;
}

/* Checks shared by the GEMM entry points; fills the packed geometry. */
static int check_gemm(int isa, int threads, const int8_t *A, int64_t M, int64_t K, int64_t N,
                      int layout, const uint8_t *Bp, int64_t nbytes, const void *C, int c_align,
                      int *level, int *no_vnni, int64_t *kp, int64_t *np, int64_t *db) {
    int64_t total, prod;
    int rc;
    if (M < 0 || K < 0 || N < 0) return TA_ERR_SIZE;
    if (K > TA_INT8_MAX_K) return TA_ERR_KBOUND;
    if (!ta_mul_ok(M, K, TA_MAX_ELEMS, &prod) || !ta_mul_ok(M, N, TA_MAX_ELEMS, &prod) ||
        M > TA_MAX_ELEMS - 64)
        return TA_ERR_SIZE;
    if (!packed_geometry(layout, K, N, kp, np, db, &total)) return TA_ERR_SIZE;
    if (!ta_mul_ok(M + 64, *kp, TA_MAX_ELEMS / 4, &prod)) return TA_ERR_SIZE;
    if (nbytes != total) return TA_ERR_PACKED;
    rc = int8_resolve(isa, level, no_vnni);
    if (rc != TA_OK) return rc;
    if (threads < 1 || threads > TA_MAX_THREADS) return TA_ERR_THREADS;
    if (Bp == NULL || (M > 0 && N > 0 && C == NULL) || (M > 0 && K > 0 && A == NULL))
        return TA_ERR_NULL;
    if (!TA_ALIGNED(Bp, 4) || !TA_ALIGNED(C, c_align)) return TA_ERR_ALIGN;
    return TA_OK;
}

int ta_int8_linear(int isa, int threads, const int8_t *A, int64_t M, int64_t K, int64_t N,
                   int layout, const uint8_t *Bp, int64_t nbytes, const int32_t *bias,
                   const int32_t *multiplier, const int32_t *shift, int64_t nq,
                   const double *scale, int64_t nscale, int lo, int hi, int relu, int out_kind,
                   void *Y) {
    int64_t kp, np, db, j;
    int level, no_vnni, rc;
    out_stage o;
    int32_t *mbuf = NULL, *sbuf = NULL;
    double *cbuf = NULL;
    rc = check_gemm(isa, threads, A, M, K, N, layout, Bp, nbytes, Y, out_kind == TA_INT8_OUT_INT8 ? 1 : 4,
                    &level, &no_vnni, &kp, &np, &db);
    if (rc != TA_OK) return rc;
    if (out_kind != TA_INT8_OUT_INT8 && out_kind != TA_INT8_OUT_INT32 && out_kind != TA_INT8_OUT_F32)
        return TA_ERR_VALUE;
    if (out_kind == TA_INT8_OUT_INT8) {
        if (nq != 1 && nq != N) return TA_ERR_SIZE;
        if (multiplier == NULL || shift == NULL) return TA_ERR_NULL;
        if (lo < -128 || hi > 127 || lo > hi) return TA_ERR_VALUE;
        for (j = 0; j < nq; j++)
            if (multiplier[j] < 1 || shift[j] < 0 || shift[j] > 62) return TA_ERR_VALUE;
    }
    if (out_kind == TA_INT8_OUT_F32) {
        if (nscale != 1 && nscale != N) return TA_ERR_SIZE;
        if (scale == NULL) return TA_ERR_NULL;
        for (j = 0; j < nscale; j++)
            if (!(scale[j] > 0.0 && scale[j] <= 1.7976931348623157e308)) return TA_ERR_VALUE;
    }
    if (!TA_ALIGNED(bias, 4) || !TA_ALIGNED(multiplier, 4) || !TA_ALIGNED(shift, 4) ||
        !TA_ALIGNED(scale, 8))
        return TA_ERR_ALIGN;
    if (M == 0 || N == 0) return TA_OK;

    memset(&o, 0, sizeof(o));
    o.kind = out_kind;
    o.relu = relu != 0;
    o.lo = (relu && lo < 0) ? 0 : lo;
    o.hi = hi;
    o.bias = bias;
    o.Y = Y;
    o.N = N;
    o.per_tensor = 1;
    if (out_kind == TA_INT8_OUT_INT8) {
        o.per_tensor = nq == 1;
        mbuf = (int32_t *)malloc(sizeof(int32_t) * (size_t)N);
        sbuf = (int32_t *)malloc(sizeof(int32_t) * (size_t)N);
        if (mbuf == NULL || sbuf == NULL) {
            free(mbuf), free(sbuf);
            return TA_ERR_NOMEM;
        }
        for (j = 0; j < N; j++) {
            mbuf[j] = multiplier[nq == 1 ? 0 : j];
            sbuf[j] = shift[nq == 1 ? 0 : j];
        }
        o.mult = mbuf, o.shift = sbuf;
    } else if (out_kind == TA_INT8_OUT_F32) {
        o.per_tensor = nscale == 1;
        cbuf = (double *)malloc(sizeof(double) * (size_t)N);
        if (cbuf == NULL) return TA_ERR_NOMEM;
        for (j = 0; j < N; j++) cbuf[j] = scale[nscale == 1 ? 0 : j];
        o.scale = cbuf;
    }
    if (K == 0) { /* acc = 0 (+ bias): the output stage on zero accumulators */
        const int32_t zeros[NR] = {0};
        int64_t i, c;
        for (i = 0; i < M; i++)
            for (c = 0; c < N; c += NR) out_row_scalar(&o, zeros, i, c, 0, (int)((N - c) < NR ? N - c : NR));
    } else {
        rc = gemm_run(level, no_vnni, threads, A, M, K, N, layout, Bp, kp, np, db, &o);
    }
    free(mbuf), free(sbuf), free(cbuf);
    return rc;
}

int ta_gemm_int8_packed(int isa, const int8_t *A, int64_t M, int64_t K, int64_t N, int layout,
                        const uint8_t *Bp, int64_t nbytes, int32_t *C) {
    return ta_int8_linear(isa, 1, A, M, K, N, layout, Bp, nbytes, NULL, NULL, NULL, 0, NULL, 0,
                          -128, 127, 0, TA_INT8_OUT_INT32, C);
}

/* ---------------------------------------------------------------- quantize */

typedef struct {
    const float *x;
    int8_t *out;
    int64_t n;
    double scale;
    double inv;        /* 1 / scale when that is exact (scale a power of two), else 0 */
    int lo, hi, simd;
    uint8_t *nan_seen; /* one flag per task */
} quant_job;

/* Round-half-even of |v| <= 2^51 by the 2^52 trick (default rounding mode). */
static double rint_small(double v) {
    const double big = 4503599627370496.0;
    return v >= 0 ? (v + big) - big : (v - big) + big;
}

static int quant_scalar(const quant_job *q, int64_t i0, int64_t i1) {
    int64_t i;
    int nan = 0;
    for (i = i0; i < i1; i++) {
        double v = q->inv != 0.0 ? (double)q->x[i] * q->inv : (double)q->x[i] / q->scale;
        if (v != v) {
            nan = 1;
            q->out[i] = 0;
            continue;
        }
        if (v < q->lo) v = q->lo;
        if (v > q->hi) v = q->hi;
        q->out[i] = (int8_t)rint_small(v);
    }
    return nan;
}

#if TA_X86
TA_TARGET_AVX2 static int quant_avx2(const quant_job *q, int64_t i0, int64_t i1) {
    const __m256d sc = _mm256_set1_pd(q->scale), inv = _mm256_set1_pd(q->inv);
    const __m256d lo = _mm256_set1_pd(q->lo), hi = _mm256_set1_pd(q->hi);
    const int by_mul = q->inv != 0.0;
    __m256d bad = _mm256_setzero_pd();
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const __m256 x = _mm256_loadu_ps(q->x + i);
        const __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
        const __m256d x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
        const __m256d v0 = by_mul ? _mm256_mul_pd(x0, inv) : _mm256_div_pd(x0, sc);
        const __m256d v1 = by_mul ? _mm256_mul_pd(x1, inv) : _mm256_div_pd(x1, sc);
        const __m256d r0 = _mm256_round_pd(_mm256_min_pd(_mm256_max_pd(v0, lo), hi),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256d r1 = _mm256_round_pd(_mm256_min_pd(_mm256_max_pd(v1, lo), hi),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m128i w = _mm_packs_epi32(_mm256_cvtpd_epi32(r0), _mm256_cvtpd_epi32(r1));
        bad = _mm256_or_pd(bad, _mm256_or_pd(_mm256_cmp_pd(v0, v0, _CMP_UNORD_Q), _mm256_cmp_pd(v1, v1, _CMP_UNORD_Q)));
        _mm_storel_epi64((__m128i *)(q->out + i), _mm_packs_epi16(w, w));
    }
    return quant_scalar(q, i, i1) | (_mm256_movemask_pd(bad) != 0);
}
#endif

static void quant_range(void *ctx, int64_t begin, int64_t end) {
    const quant_job *q = (const quant_job *)ctx;
    int64_t t;
    for (t = begin; t < end; t++) {
        const int64_t i0 = t * QUANT_BLOCK, i1 = (q->n - i0) < QUANT_BLOCK ? q->n : i0 + QUANT_BLOCK;
#if TA_X86
        if (q->simd) {
            q->nan_seen[t] = (uint8_t)quant_avx2(q, i0, i1);
            continue;
        }
#endif
        q->nan_seen[t] = (uint8_t)quant_scalar(q, i0, i1);
    }
}

int ta_quantize_int8(int isa, int threads, const float *x, int64_t n, double scale, int lo, int hi,
                     int8_t *out) {
    quant_job q;
    int64_t ntasks, t;
    int level, rc, nt;
    if (n < 0 || n > TA_MAX_ELEMS) return TA_ERR_SIZE;
    rc = ta_resolve_isa(TA_KERNEL_INT8, isa, &level);
    if (rc != TA_OK) return rc;
    if (threads < 1 || threads > TA_MAX_THREADS) return TA_ERR_THREADS;
    if (!(scale > 0.0 && scale <= 1.7976931348623157e308) || lo < -128 || hi > 127 || lo > hi)
        return TA_ERR_VALUE;
    if (n > 0 && (x == NULL || out == NULL)) return TA_ERR_NULL;
    if (!TA_ALIGNED(x, 4)) return TA_ERR_ALIGN;
    if (n == 0) return TA_OK;
    ntasks = (n + QUANT_BLOCK - 1) / QUANT_BLOCK;
    q.x = x, q.out = out, q.n = n, q.scale = scale, q.lo = lo, q.hi = hi;
    q.simd = level >= TA_ISA_AVX2;
    q.inv = 0.0;
    { /* a power of two in the normal range: x * (1 / scale) is x / scale exactly */
        const double inv = 1.0 / scale;
        uint64_t bits;
        memcpy(&bits, &scale, 8);
        if ((bits & 0x000fffffffffffffULL) == 0 && inv < 8.98846567431158e307 && inv > 2.2250738585072014e-308)
            q.inv = inv;
    }
    q.nan_seen = (uint8_t *)malloc((size_t)ntasks);
    if (q.nan_seen == NULL) return TA_ERR_NOMEM;
    nt = ta_threads_for(threads, ntasks, QUANT_BLOCK, 4 * QUANT_BLOCK);
    ta_parallel_for(nt, ntasks, quant_range, &q);
    rc = TA_OK;
    for (t = 0; t < ntasks; t++)
        if (q.nan_seen[t]) rc = TA_ERR_VALUE;
    free(q.nan_seen);
    return rc;
}

/* ---------------------------------------------------------------- VNNI peak */

#if TA_X86
#define VNNI_CHAINS 16

TA_TARGET_VNNI static double vnni_loop(int64_t iters, int32_t *sink) {
    __m512i acc[VNNI_CHAINS];
    const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x05fa07f9);
    int32_t tmp[16];
    int64_t it;
    int j;
    for (j = 0; j < VNNI_CHAINS; j++) acc[j] = _mm512_set1_epi32(j);
    for (it = 0; it < iters; it++)
        for (j = 0; j < VNNI_CHAINS; j++) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
    for (j = 1; j < VNNI_CHAINS; j++) acc[0] = _mm512_xor_si512(acc[0], acc[j]);
    _mm512_storeu_si512((void *)tmp, acc[0]);
    *sink = tmp[0] ^ tmp[15];
    return (double)iters * VNNI_CHAINS * 64.0 * 2.0;
}
#endif

double ta_vnni_loop(int isa, int64_t iters, int32_t *sink) {
    int level, no_vnni;
    if (sink == NULL || iters < 0) return -1.0;
    if (int8_resolve(isa, &level, &no_vnni) != TA_OK) return -1.0;
#if TA_X86
    if (level == TA_ISA_AVX512 && !no_vnni && int8_has_vnni()) return vnni_loop(iters, sink);
#endif
    return -1.0;
}
