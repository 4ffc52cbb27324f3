/* Shared helpers of the kernel sources: SIMD availability, checked arithmetic. */
#ifndef TA_INTERNAL_H
#define TA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ta_kernels.h"

/* SIMD paths exist only for x86 with GCC or Clang, which provide per-function
 * target attributes and __builtin_cpu_supports. Elsewhere only the scalar
 * paths are compiled. Define TA_NO_SIMD to force that.
 *
 * TA_SIMDE (the test-only build of simde_check.sh): the same SIMD paths with
 * the x86 intrinsics taken from SIMDe (portable C) and TA_TARGET() empty, so
 * every path runs on any CPU; dispatch.c then takes the level from the
 * environment instead of the CPU. TA_CPU_X86: __builtin_cpu_supports works. */
#if (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__clang__) ? (__clang_major__ >= 8) : (defined(__GNUC__) && __GNUC__ >= 8))
#define TA_CPU_X86 1
#else
#define TA_CPU_X86 0
#endif

#if defined(TA_SIMDE)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/fma.h>
#include "ta_simde_compat.h"
#define TA_X86 1
#define TA_TARGET(features)
#elif !defined(TA_NO_SIMD) && TA_CPU_X86
#include <immintrin.h>
#define TA_X86 1
#define TA_TARGET(features) __attribute__((target(features)))
#else
#define TA_X86 0
#endif

#if TA_X86
#define TA_TARGET_AVX2 TA_TARGET("avx2,fma,popcnt")
#define TA_TARGET_AVX512 TA_TARGET("avx512f,avx512bw,avx512vl,fma,popcnt")
#define TA_TARGET_VNNI TA_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,popcnt")
#define TA_TARGET_VPOPCNT TA_TARGET("avx512f,avx512bw,avx512vpopcntdq,popcnt")
/* An empty asm after which the compiler no longer knows what SIMD value v holds,
 * so calibration loops cannot hoist work. SIMDe's vector types do not fit the "v"
 * register constraint, so the emulated build passes v through memory instead. */
#if defined(TA_SIMDE)
#define TA_OPAQUE(v) __asm__ volatile("" : : "r"(&(v)) : "memory")
#else
#define TA_OPAQUE(v) __asm__ volatile("" : "+v"(v))
#endif
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

/* One unit of a kernel's work, run by participant `tid` (0 = the caller, 1.. helpers;
 * each tid is used by one thread at a time, so it can index per-thread work space). */
typedef void (*ta_unit_fn)(void *ctx, int tid, int64_t unit);

/* Run fn on units [0, nunits) handed out one at a time by an atomic counter to the
 * caller and threads - 1 detached helpers started for this call. A helper that
 * starts late (a busy machine) finds fewer units or none; the caller waits only for
 * units in progress, never for a helper to start, so a busy second core costs at
 * most the units already taken. Each unit runs exactly once; a kernel whose units
 * write disjoint outputs gives the same bits for any thread count. A helper that
 * outlives the call touches only the pool it shares (freed by its last holder),
 * never ctx. TA_OK, or TA_ERR_NOMEM (then nothing has run). */
int ta_parallel_units(int threads, int64_t nunits, ta_unit_fn fn, void *ctx);

/* Threads worth using: at most `threads` (clamped to 1..TA_MAX_THREADS), at most
 * ntasks, and at most (ntasks * work_per_task) / min_work so that each thread gets
 * at least min_work units of work (a thread start costs ~20-50 us). */
int ta_threads_for(int threads, int64_t ntasks, int64_t work_per_task, int64_t min_work);

#endif
