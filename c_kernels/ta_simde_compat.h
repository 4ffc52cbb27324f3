/* The x86 intrinsics of the SIMDe test build (TA_SIMDE) that SIMDe's native
 * aliases lack or get wrong in the versions distributions ship (Debian 12 has
 * 0.7.4). Each is defined only if SIMDe has not defined it, in plain C over
 * SIMDe's types, and reads or writes only the lanes its mask selects, like the
 * instruction. A kernel that starts using another intrinsic SIMDe 0.7.4 lacks
 * fails to build in simde_check.sh: add it here. Included by ta_internal.h. */
#ifndef TA_SIMDE_COMPAT_H
#define TA_SIMDE_COMPAT_H

#include <stdint.h>
#include <string.h>

/* Mask types: SIMDe names them simde__mmask*; 0.7.4 has no __mmask* aliases. */
#define __mmask8 simde__mmask8
#define __mmask16 simde__mmask16

/* Rounding-mode flags: 0.7.4 aliases _MM_FROUND_TO_NEAREST_INT but not these. */
#if !defined(_MM_FROUND_NO_EXC)
#define _MM_FROUND_NO_EXC SIMDE_MM_FROUND_NO_EXC
#endif

/* 0.7.4 aliases _mm512_madd_epi16 with the four arguments of its masked form. */
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)

#if !defined(_mm512_maskz_loadu_ps)
static inline simde__m512 ta_simde_maskz_loadu_ps(simde__mmask16 k, const void *p) {
    float lanes[16] = {0};
    int i;
    for (i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy(&lanes[i], (const float *)p + i, sizeof(float));
    return simde_mm512_loadu_ps(lanes);
}
#define _mm512_maskz_loadu_ps(k, p) ta_simde_maskz_loadu_ps((k), (p))
#endif

#if !defined(_mm512_mask_storeu_ps)
static inline void ta_simde_mask_storeu_ps(void *p, simde__mmask16 k, simde__m512 v) {
    float lanes[16];
    int i;
    simde_mm512_storeu_ps(lanes, v);
    for (i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy((float *)p + i, &lanes[i], sizeof(float));
}
#define _mm512_mask_storeu_ps(p, k, v) ta_simde_mask_storeu_ps((p), (k), (v))
#endif

#if !defined(_mm512_maskz_loadu_epi64)
static inline simde__m512i ta_simde_maskz_loadu_epi64(simde__mmask8 k, const void *p) {
    int64_t lanes[8] = {0};
    int i;
    for (i = 0; i < 8; i++)
        if ((k >> i) & 1) memcpy(&lanes[i], (const int64_t *)p + i, sizeof(int64_t));
    return simde_mm512_loadu_si512(lanes);
}
#define _mm512_maskz_loadu_epi64(k, p) ta_simde_maskz_loadu_epi64((k), (p))
#endif

#if !defined(_mm512_reduce_add_epi64)
static inline int64_t ta_simde_reduce_add_epi64(simde__m512i v) {
    uint64_t lanes[8], sum = 0;
    int i;
    simde_mm512_storeu_si512(lanes, v);
    for (i = 0; i < 8; i++) sum += lanes[i];
    return (int64_t)sum;
}
#define _mm512_reduce_add_epi64(v) ta_simde_reduce_add_epi64(v)
#endif

#if !defined(_mm512_reduce_add_ps)
static inline float ta_simde_reduce_add_ps(simde__m512 v) {
    float lanes[16];
    int width, i;
    simde_mm512_storeu_ps(lanes, v);
    for (width = 8; width >= 1; width /= 2) /* pairwise, as the instruction sequence */
        for (i = 0; i < width; i++) lanes[i] += lanes[i + width];
    return lanes[0];
}
#define _mm512_reduce_add_ps(v) ta_simde_reduce_add_ps(v)
#endif

#if !defined(_mm_popcnt_u64)
static inline long long ta_simde_popcnt_u64(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (long long)((x * 0x0101010101010101ULL) >> 56);
}
#define _mm_popcnt_u64(x) ta_simde_popcnt_u64(x)
#endif

#endif
