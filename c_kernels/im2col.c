/* im2col of a channels-last map: the patch matrix the fused row-major kernels take.
 *
 * x is (N, H, W, C) row-major with `elem` bytes per value (1, 2, 4 or 8: int8 codes,
 * float32, packed uint64 words all use it). Row r = (n*OH + oy)*OW + ox of the output
 * (N*OH*OW, kh*kw*C) holds the window whose top-left corner is padded pixel
 * (oy*sh, ox*sw) of image n; column (u*kw + v)*C + c holds its channel c at offset
 * (u, v); positions in the zero padding are 0. For each (row, u) the kw*C values of
 * a window row are contiguous in x (when fully inside the image), so the copy is one
 * memcpy per window row, and rows are split over threads (each output row is written
 * by one thread: the result never depends on the thread count). */
#include "ta_internal.h"

typedef struct {
    const unsigned char *x;
    unsigned char *out;
    int64_t elem, N, H, W, C, kh, kw, sh, sw, ph, pw, OH, OW;
} im2col_ctx;

/* Copy n bytes; short copies move whole 8-byte words (ceil(n/8) of them) when both the
 * source and the destination may be over-run: the extra bytes land in the part of the
 * output this thread writes next (and are overwritten by it), never past dlim or slim.
 * A variable-length memcpy of a few bytes costs more than the bytes themselves. */
static inline void copy_strip(unsigned char *d, const unsigned char *s, int64_t n,
                              const unsigned char *dlim, const unsigned char *slim) {
    const int64_t nr = (n + 7) & ~(int64_t)7;
    if (n < 64 && d + nr <= dlim && s + nr <= slim) {
        for (int64_t i = 0; i < nr; i += 8) memcpy(d + i, s + i, 8);
    } else {
        memcpy(d, s, (size_t)n);
    }
}

/* Tasks are (n, oy) pairs: one output row of windows, OW patch rows. */
static void im2col_range(void *arg, int64_t begin, int64_t end) {
    const im2col_ctx *c = (const im2col_ctx *)arg;
    const int64_t pix = c->C * c->elem;            /* bytes of one pixel */
    const int64_t strip = c->kw * pix;             /* bytes of one window row */
    const int64_t rowb = c->kh * strip;            /* bytes of one patch row */
    const unsigned char *dlim = c->out + end * c->OW * rowb;      /* end of this thread's rows */
    const unsigned char *slim = c->x + c->N * c->H * c->W * pix;    /* end of the input */
    for (int64_t t = begin; t < end; t++) {
        const int64_t n = t / c->OH, oy = t % c->OH;
        const unsigned char *img = c->x + n * c->H * c->W * pix;
        unsigned char *dst = c->out + t * c->OW * rowb;
        for (int64_t ox = 0; ox < c->OW; ox++, dst += rowb) {
            const int64_t x0 = ox * c->sw - c->pw;
            const int inside_x = x0 >= 0 && x0 + c->kw <= c->W;
            for (int64_t u = 0; u < c->kh; u++) {
                const int64_t y = oy * c->sh - c->ph + u;
                unsigned char *d = dst + u * strip;
                if (y < 0 || y >= c->H) {
                    memset(d, 0, (size_t)strip);
                } else if (inside_x) {
                    copy_strip(d, img + (y * c->W + x0) * pix, strip, dlim, slim);
                } else {
                    for (int64_t v = 0; v < c->kw; v++) {
                        const int64_t xx = x0 + v;
                        if (xx < 0 || xx >= c->W)
                            memset(d + v * pix, 0, (size_t)pix);
                        else
                            memcpy(d + v * pix, img + (y * c->W + xx) * pix, (size_t)pix);
                    }
                }
            }
        }
    }
}

int ta_im2col_nhwc(const void *x, int64_t elem, int64_t N, int64_t H, int64_t W, int64_t C,
                   int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                   void *out, int64_t out_elems, int threads) {
    int64_t in_elems, hw, OH, OW, rows, K, need;
    if (elem != 1 && elem != 2 && elem != 4 && elem != 8) return TA_ERR_SIZE;
    if (N < 0 || H < 0 || W < 0 || C < 0 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0)
        return TA_ERR_SIZE;
    if (threads < 1 || threads > TA_MAX_THREADS) return TA_ERR_THREADS;
    if (H + 2 * ph < kh || W + 2 * pw < kw) return TA_ERR_SIZE;
    OH = (H + 2 * ph - kh) / sh + 1;
    OW = (W + 2 * pw - kw) / sw + 1;
    if (!ta_mul_ok(H, W, TA_MAX_ELEMS, &hw) || !ta_mul_ok(hw, C, TA_MAX_ELEMS, &in_elems) ||
        !ta_mul_ok(in_elems, N, TA_MAX_ELEMS, &in_elems))
        return TA_ERR_SIZE;
    if (!ta_mul_ok(N, OH, TA_MAX_ELEMS, &rows) || !ta_mul_ok(rows, OW, TA_MAX_ELEMS, &rows) ||
        !ta_mul_ok(kh * kw, C, TA_MAX_ELEMS, &K) || !ta_mul_ok(rows, K, TA_MAX_ELEMS, &need))
        return TA_ERR_SIZE;
    if (need != out_elems) return TA_ERR_SIZE;
    if (need == 0) return TA_OK;
    if (x == NULL || out == NULL) return TA_ERR_NULL;
    {
        im2col_ctx ctx = {(const unsigned char *)x, (unsigned char *)out, elem, N, H, W, C, kh, kw,
                          sh, sw, ph, pw, OH, OW};
        int64_t tasks = N * OH;
        int nt = ta_threads_for(threads, tasks, OW * K * elem, 1 << 16);
        ta_parallel_for(nt, tasks, im2col_range, &ctx);
    }
    return TA_OK;
}
