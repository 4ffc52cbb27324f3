/* Shared helpers of the kernel sources: SIMD availability, checked arithmetic. */
#ifndef TA_INTERNAL_H
#define TA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ta_kernels.h"

/* SIMD paths exist only for x86 with GCC or Clang, which provide per-function
 * target attributes and __builtin_cpu_supports. Elsewhere only the scalar
 * paths are compiled. Define TA_NO_SIMD to force that. */
#if !defined(TA_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__clang__) ? (__clang_major__ >= 8) : (defined(__GNUC__) && __GNUC__ >= 8))
#define TA_X86 1
#include <immintrin.h>
#define TA_TARGET_AVX2 __attribute__((target("avx2,fma,popcnt")))
#define TA_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,popcnt")))
#define TA_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,popcnt")))
#define TA_TARGET_VPOPCNT __attribute__((target("avx512f,avx512bw,avx512vpopcntdq,popcnt")))
#else
#define TA_X86 0
#endif

/* a * b for nonnegative a, b; 0 if the product would exceed limit. */
static inline int ta_mul_ok(int64_t a, int64_t b, int64_t limit, int64_t *out) {
    if (a < 0 || b < 0) return 0;
    if (a != 0 && b > limit / a) return 0;
    *out = a * b;
    return 1;
}

/* Largest element count we accept for one array: its byte size must fit
 * ptrdiff_t even for 8-byte elements. */
#define TA_MAX_ELEMS ((int64_t)(PTRDIFF_MAX / 8))

/* 1 if pointer p is a multiple of n bytes (NULL counts as aligned). */
#define TA_ALIGNED(p, n) (((uintptr_t)(const void *)(p)) % (n) == 0)

/* Resolve TA_ISA_AUTO and refuse a level above what the CPU supports. */
static inline int ta_resolve_isa(int kernel, int isa, int *out) {
    int best = ta_best_isa(kernel);
    if (isa == TA_ISA_AUTO) isa = best;
    if (isa < TA_ISA_SCALAR || isa > best) return TA_ERR_ISA;
    *out = isa;
    return TA_OK;
}

/* ---- threads (parallel.c) ---- */

/* A piece of a kernel's work: process tasks [begin, end) of the kernel's context. */
typedef void (*ta_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Run fn over [0, ntasks) split into `threads` contiguous chunks, one per thread
 * (the caller runs the first). Chunk boundaries depend only on ntasks and threads;
 * each task is processed by exactly one thread, so a kernel whose tasks write
 * disjoint outputs gives the same bits for any thread count. */
void ta_parallel_for(int threads, int64_t ntasks, ta_range_fn fn, void *ctx);

/* Threads worth using: at most `threads` (clamped to 1..TA_MAX_THREADS), at most
 * ntasks, and at most (ntasks * work_per_task) / min_work so that each thread gets
 * at least min_work units of work (a thread start costs ~20-50 us). */
int ta_threads_for(int threads, int64_t ntasks, int64_t work_per_task, int64_t min_work);

#endif
