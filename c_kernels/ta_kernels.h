/* tinyapprox C kernels: public declarations.
 *
 * Every entry point validates its own arguments (sizes, overflow, index ranges)
 * and returns a TA_ERR_* code instead of trusting the caller. All matrices are
 * dense, row-major and C-contiguous unless a comment says otherwise.
 *
 * The `isa` argument of a kernel selects its instruction-set path: TA_ISA_AUTO
 * picks the best path the running CPU supports; an explicit level is honoured
 * only if the CPU supports it (else TA_ERR_ISA), so no input can make the
 * library execute an instruction the processor lacks.
 */
#ifndef TA_KERNELS_H
#define TA_KERNELS_H

#include <stdint.h>

#define TA_ABI_VERSION 7

#define TA_OK 0
#define TA_ERR_SIZE 1       /* negative size or a size product that overflows */
#define TA_ERR_INDEX 2      /* CSR indptr/indices out of range or not monotone */
#define TA_ERR_ISA 3        /* requested path not supported by this CPU/build */
#define TA_ERR_NOMEM 4      /* scratch allocation failed */
#define TA_ERR_PACKED 5     /* packed int8 weights do not match K, N or layout */
#define TA_ERR_KBOUND 6     /* K too large for an exact int32 accumulator */
#define TA_ERR_PADDING 7    /* XNOR operand has nonzero bits beyond K */
#define TA_ERR_NULL 8       /* NULL pointer for a non-empty array */
#define TA_ERR_ALIGN 9      /* pointer not aligned for its element type */
#define TA_ERR_THREADS 10   /* thread count < 1 or > TA_MAX_THREADS */
#define TA_ERR_VALUE 11     /* argument value out of range (multiplier, shift, lo/hi, scale,
                               output kind) or NaN in an input that has no code for it */

/* Most threads one kernel call may use. */
#define TA_MAX_THREADS 64

#define TA_ISA_AUTO (-1)
#define TA_ISA_SCALAR 0
#define TA_ISA_AVX2 1
#define TA_ISA_AVX512 2

#define TA_KERNEL_CSR 0
#define TA_KERNEL_INT8 1
#define TA_KERNEL_XNOR 2

/* Largest K for which an int8 x int8 dot product fits int32 exactly:
 * K * 128 * 128 <= 2^31 - 1. */
#define TA_INT8_MAX_K 131071

/* Packed int8 weight layouts (see gemm_int8.c). */
#define TA_INT8_LAYOUT_K4 1   /* int8, groups of 4 consecutive k per column */
#define TA_INT8_LAYOUT_K2W 2  /* int16, groups of 2 consecutive k per column */

/* OR-ed into the `isa` of an int8 entry point: at TA_ISA_AVX512 use the
 * AVX-512BW kernel (layout K2W) even if the CPU has AVX512-VNNI (tests, benchmarks). */
#define TA_INT8_NO_VNNI 256

/* Output kinds of ta_int8_linear. */
#define TA_INT8_OUT_INT8 0
#define TA_INT8_OUT_INT32 1
#define TA_INT8_OUT_F32 2

int ta_abi_version(void);

/* 1 if this build can split a kernel over threads (pthreads), else 0. */
int ta_threads_supported(void);

/* 1 in the test-only build whose SIMD paths are emulated by SIMDe (levels then
 * come from TINYAPPROX_SIMDE_ISA, not the CPU), else 0. */
int ta_simd_emulated(void);

/* Calibration: run `iters` rounds of independent u8 x s8 multiply-add chains
 * (vpmaddubsw + vpmaddwd + vpaddd, the AVX2 int8 GEMM's sequence) on path `isa`
 * and return the number of integer operations (2 per multiply-add), or -1 if
 * the path is unavailable. *sink receives a value depending on all work. */
double ta_int8_chain_loop(int isa, int64_t iters, int32_t *sink);

/* Best path of `kernel` (TA_KERNEL_*) on this CPU and build: TA_ISA_*. */
int ta_best_isa(int kernel);

/* CPU feature bits as seen at run time: out[0..7] = sse4.2, popcnt, avx2, fma,
 * avx512f, avx512bw, avx512vnni, avx512vpopcntdq (1 = present). */
void ta_cpu_features(int out[8]);

/* Y (M x N, float32) = A (M x K, CSR: indptr[M+1] int64, indices[nnz] int32,
 * data[nnz] float32) times X (K x N, float32). Y is fully overwritten.
 * scratch[nscratch] (may be NULL, 0): reusable work space; with at least
 * ta_csr_scratch_floats(M, K, threads) floats no memory is allocated.
 * threads: 1..TA_MAX_THREADS; each Y element is summed by one thread in the
 * order of its row's values, so the result does not depend on it. */
int ta_csr_matmul_f32(int isa, int64_t M, int64_t K, int64_t N, int64_t nnz,
                      const int64_t *indptr, const int32_t *indices, const float *data,
                      const float *X, float *Y, float *scratch, int64_t nscratch, int threads);

/* Fused sparse layer: y (N x M, float32) = x (N x K, float32) W^T + bias, then
 * max(y, 0) if relu == 1 (relu must be 0 or 1). W: M x K in CSR as above;
 * bias: M floats or NULL. Row-major x and y (one sample per row). y[n, j] is
 * summed by one thread in the order of row j's values, then the bias is added.
 * scratch, threads: as for ta_csr_matmul_f32 (with R = M rows of W). */
int ta_csr_linear_f32(int isa, int64_t N, int64_t K, int64_t M, int64_t nnz,
                      const int64_t *indptr, const int32_t *indices, const float *data,
                      const float *x, const float *bias, int relu, float *y, float *scratch,
                      int64_t nscratch, int threads);

/* Floats of scratch that spare a CSR call with R CSR rows, K columns and
 * `threads` threads any allocation; -1 for invalid arguments. */
int64_t ta_csr_scratch_floats(int64_t R, int64_t K, int threads);

/* 1 if any of the n bytes equals -128, else 0. */
int ta_int8_has_min(const int8_t *x, int64_t n);

/* Layout chosen for weights B on path `isa`, given whether B contains -128. */
int ta_int8_choose_layout(int isa, int b_has_min);

/* Bytes needed to hold B (K x N int8) packed in `layout`. */
int ta_int8_packed_size(int layout, int64_t K, int64_t N, int64_t *nbytes);

/* Pack B (K x N, int8, row-major) into out[nbytes]. */
int ta_int8_pack(int layout, const int8_t *B, int64_t K, int64_t N, uint8_t *out, int64_t nbytes);

/* C (M x N, int32) = A (M x K, int8) times packed B (K x N). Exact. One thread. */
int ta_gemm_int8_packed(int isa, const int8_t *A, int64_t M, int64_t K, int64_t N,
                        int layout, const uint8_t *Bp, int64_t nbytes, int32_t *C);

/* Fused int8 layer on `threads` threads (1..TA_MAX_THREADS; results do not depend
 * on it): acc = A (M x K, int8) times packed B (K x N) + bias (N int32, or NULL),
 * an int32 sum with wrap-around; then into Y (M x N) by out_kind:
 *   TA_INT8_OUT_INT32: relu ? max(acc, 0) : acc                        (int32)
 *   TA_INT8_OUT_F32  : (float)((double)(relu ? max(acc, 0) : acc) * scale[j]) (float)
 *   TA_INT8_OUT_INT8 : round_half_even(acc * multiplier[j] / 2^shift[j]), in int64,
 *                      clipped to [relu ? max(lo, 0) : lo, hi]            (int8)
 * multiplier, shift: nq = 1 (per tensor) or N values, multiplier in [1, 2^31 - 1],
 * shift in [0, 62]; -128 <= lo <= hi <= 127 (used by TA_INT8_OUT_INT8 only).
 * scale: nscale = 1 or N finite values > 0 (TA_INT8_OUT_F32 only). Arrays an
 * output kind does not use may be NULL. */
int ta_int8_linear(int isa, int threads, const int8_t *A, int64_t M, int64_t K, int64_t N,
                   int layout, const uint8_t *Bp, int64_t nbytes, const int32_t *bias,
                   const int32_t *multiplier, const int32_t *shift, int64_t nq,
                   const double *scale, int64_t nscale, int lo, int hi, int relu, int out_kind,
                   void *Y);

/* out[i] = clip(round_half_even((double)x[i] / scale), lo, hi) for n float32 values
 * (+-inf saturate); scale finite > 0, -128 <= lo <= hi <= 127. TA_ERR_VALUE if any
 * x[i] is NaN (out then holds 0 there). `isa`: TA_ISA_AVX2 or above uses AVX2. */
int ta_quantize_int8(int isa, int threads, const float *x, int64_t n, double scale, int lo,
                     int hi, int8_t *out);

/* Calibration: `iters` rounds of independent vpdpbusd (AVX512-VNNI, 64 u8 x s8
 * products each); returns the operations executed (2 per product), or -1 if the
 * CPU or `isa` has no VNNI. *sink receives a value depending on all work. */
double ta_vnni_loop(int isa, int64_t iters, int32_t *sink);

/* C (M x N, int32) = K - 2 * popcount(A_i XOR B_j) over W = ceil(K/64) words.
 * A: M x W uint64, B: N x W uint64 (rows of B^T); bits beyond K must be 0.
 * threads: 1..TA_MAX_THREADS (rows of A are split; the result is exact). */
int ta_xnor_gemm(int isa, const uint64_t *A, int64_t M, const uint64_t *B, int64_t N,
                 int64_t W, int64_t K, int32_t *C, int threads);

/* Fused binary layer: X (N x W uint64, packed inputs, one sample per row),
 * Wb (M x W uint64, packed weights, one output channel per row), bits beyond K
 * zero. dot[n, j] = K - 2 * popcount(X_n XOR Wb_j); out (N x out_words uint64,
 * out_words = ceil(M/64)) gets bit j % 64 of word j / 64 of row n set iff
 * dot >= thresholds[j] (flip[j] == 0) or dot <= thresholds[j] (flip[j] == 1);
 * other bits 0. thresholds[M] int32, flip[M] uint8 in {0, 1} (else TA_ERR_SIZE). */
int ta_binary_threshold(int isa, const uint64_t *X, int64_t N, const uint64_t *Wb, int64_t M,
                        int64_t W, int64_t K, const int32_t *thresholds, const uint8_t *flip,
                        uint64_t *out, int64_t out_words, int threads);

/* Calibration of the XNOR paths: `iters` rounds of independent xor + popcount +
 * add chains from registers (AVX2: the nibble-table chain its kernel uses) on
 * path `isa`; returns the bit-MACs executed (bits of +-1 products counted), or
 * -1 if the path is unavailable. *sink receives a value depending on all work. */
double ta_popcnt_loop(int isa, int64_t iters, int64_t *sink);

/* Calibration: run `iters` rounds of independent FMAs on path `isa` and return
 * the number of floating-point operations executed (2 per multiply-add), or
 * -1 if the path is unavailable. *sink receives a value depending on all work. */
double ta_fma_loop(int isa, int64_t iters, float *sink);

/* Patch matrix of a channels-last map (im2col.c): x (N, H, W, C) row-major with `elem`
 * bytes per value (1, 2, 4 or 8) -> out (N*OH*OW, kh*kw*C) row-major, out_elems values,
 * OH = (H + 2*ph - kh)/sh + 1 (same for W); row (n*OH + oy)*OW + ox, column
 * (u*kw + v)*C + c = x[n, oy*sh - ph + u, ox*sw - pw + v, c], 0 in the padding.
 * Rows are split over `threads` threads (1..TA_MAX_THREADS); the result does not
 * depend on it. TA_ERR_SIZE for bad sizes, a window larger than the padded map or
 * out_elems != N*OH*OW*kh*kw*C. */
int ta_im2col_nhwc(const void *x, int64_t elem, int64_t N, int64_t H, int64_t W, int64_t C,
                   int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                   void *out, int64_t out_elems, int threads);

#endif
