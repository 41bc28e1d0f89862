/* radraft — the scan kernels of the archive index (see index_int.h): dot products of one
 * query with consecutive rows, in portable C and, on x86-64, with AVX2 / AVX-512 chosen at
 * run time (each function compiled for its instruction set with a target attribute, so the
 * build needs no -march and runs on any x86-64).
 *
 * The scan is bound by memory bandwidth, not arithmetic: a row of 512 floats is 2 KiB to
 * read and 32 AVX-512 FMAs to score. What matters is how many reads are in flight: a scan
 * takes its rows from several streams far apart (index.c: SCAN_STREAMS slices of a
 * thread's share), one row of each of four at a time, so that several hardware prefetch
 * streams run at once. On the Xeon this was measured on, one sequential stream read at
 * 12-13 GB/s and four or eight at 14-16 GB/s; four adjacent rows at a time scanned at 1.2x
 * the time of the four-stream read, four far-apart rows at 1.05x. Four rows share each
 * load of the query, one accumulator per row (two measured no better), no software prefetch
 * (measured no better). */
#include "retrieval/index_int.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define RD_SCAN_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ---- IEEE half precision ---- */

uint16_t rd__f32_to_f16(float f)
{
    uint32_t x, sign, ax, h;
    memcpy(&x, &f, sizeof x);
    sign = (x >> 16) & 0x8000u;
    ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* infinity, NaN (kept quiet) */
        return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (ax >= 0x477ff000u) /* rounds to above 65504: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {
        /* Below 2^-14: a subnormal half, m * 2^-24, or zero. */
        uint32_t e = ax >> 23, m, shift, rem, halfway;
        if (ax <= 0x33000000u) /* at most 2^-25: rounds to zero (the tie to even, 0) */
            return (uint16_t)sign;
        m = (ax & 0x7fffffu) | 0x800000u;
        shift = 126u - e; /* 14..24 */
        h = m >> shift;
        rem = m & ((1u << shift) - 1u);
        halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (h & 1u)))
            h++; /* may carry into the smallest normal, which is its right encoding */
        return (uint16_t)(sign | h);
    }
    h = (ax >> 13) - (112u << 10); /* exponent rebiased from 127 to 15 */
    {
        uint32_t rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++; /* a carry into the exponent is the right rounding too */
    }
    return (uint16_t)(sign | h);
}

float rd__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    float f;
    if (e == 0) {
        f = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
        memcpy(&x, &f, sizeof x);
        x |= sign;
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    memcpy(&f, &x, sizeof f);
    return f;
}

/* ---- the drivers ----
 * A kernel set is made of row1 (one row) and row4 (one row of each of four streams, the
 * query's loads shared); the driver walks n rows of 1..4 streams with them. row4 must do
 * for each of its rows exactly what row1 does. */

#define SCAN_DRIVER(attr, name, T, Q, O, row1, row4)                                               \
    attr static void name(const T *const rows[], int ns, size_t n, size_t dim, const Q *q, O *out) \
    {                                                                                              \
        if (ns == 4) {                                                                             \
            for (size_t j = 0; j < n; j++)                                                         \
                row4(rows[0] + j * dim, rows[1] + j * dim, rows[2] + j * dim, rows[3] + j * dim,   \
                     dim, q, out + j, n);                                                          \
            return;                                                                                \
        }                                                                                          \
        for (int s = 0; s < ns; s++)                                                               \
            for (size_t j = 0; j < n; j++)                                                         \
                out[(size_t)s * n + j] = row1(rows[s] + j * dim, dim, q);                          \
    }

/* ---- portable kernels ----
 * Eight partial sums, combined pairwise: the same for every row. */

static float row1_f32_scalar(const float *r, size_t dim, const float *q)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s;
    size_t d = 0;
    for (; d + 8 <= dim; d += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += r[d + l] * q[d + l];
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; d < dim; d++)
        s += r[d] * q[d];
    return s;
}

static float row1_f16_scalar(const uint16_t *r, size_t dim, const float *q)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s;
    size_t d = 0;
    for (; d + 8 <= dim; d += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += rd__f16_to_f32(r[d + l]) * q[d + l];
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; d < dim; d++)
        s += rd__f16_to_f32(r[d]) * q[d];
    return s;
}

static int32_t row1_i8_scalar(const int8_t *r, size_t dim, const int16_t *q)
{
    int32_t s = 0;
    for (size_t d = 0; d < dim; d++)
        s += (int32_t)r[d] * q[d];
    return s;
}

#define SCALAR_ROW4(name, T, Q, O, row1)                                                           \
    static void name(const T *r0, const T *r1, const T *r2, const T *r3, size_t dim, const Q *q,   \
                     O *out, size_t stride)                                                        \
    {                                                                                              \
        out[0] = row1(r0, dim, q);                                                                 \
        out[stride] = row1(r1, dim, q);                                                            \
        out[2 * stride] = row1(r2, dim, q);                                                        \
        out[3 * stride] = row1(r3, dim, q);                                                        \
    }
SCALAR_ROW4(row4_f32_scalar, float, float, float, row1_f32_scalar)
SCALAR_ROW4(row4_f16_scalar, uint16_t, float, float, row1_f16_scalar)
SCALAR_ROW4(row4_i8_scalar, int8_t, int16_t, int32_t, row1_i8_scalar)
SCAN_DRIVER(, dot_f32_scalar, float, float, float, row1_f32_scalar, row4_f32_scalar)
SCAN_DRIVER(, dot_f16_scalar, uint16_t, float, float, row1_f16_scalar, row4_f16_scalar)
SCAN_DRIVER(, dot_i8_scalar, int8_t, int16_t, int32_t, row1_i8_scalar, row4_i8_scalar)

static const rd__scan_ops ops_scalar = {dot_f32_scalar, dot_f16_scalar, dot_i8_scalar};

#ifdef RD_SCAN_X86

/* ---- AVX2 + FMA + F16C ---- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline int32_t hsum256_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* The lanes of the last dim % 8 elements (a maskload reads nothing beyond them). */
AVX2 static inline __m256i tail_mask8(size_t left)
{
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - left));
}

AVX2 static inline float row1_f32_avx2(const float *r, size_t dim, const float *q)
{
    size_t d8 = dim & ~(size_t)7;
    __m256 a = _mm256_setzero_ps();
    for (size_t d = 0; d < d8; d += 8)
        a = _mm256_fmadd_ps(_mm256_loadu_ps(r + d), _mm256_loadu_ps(q + d), a);
    if (d8 < dim) {
        __m256i tm = tail_mask8(dim - d8);
        a = _mm256_fmadd_ps(_mm256_maskload_ps(r + d8, tm), _mm256_maskload_ps(q + d8, tm), a);
    }
    return hsum256(a);
}

AVX2 static inline void row4_f32_avx2(const float *r0, const float *r1, const float *r2,
                                      const float *r3, size_t dim, const float *q, float *out,
                                      size_t stride)
{
    size_t d8 = dim & ~(size_t)7;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t d = 0; d < d8; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + d), qv, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + d), qv, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + d), qv, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r3 + d), qv, a3);
    }
    if (d8 < dim) {
        __m256i tm = tail_mask8(dim - d8);
        __m256 qv = _mm256_maskload_ps(q + d8, tm);
        a0 = _mm256_fmadd_ps(_mm256_maskload_ps(r0 + d8, tm), qv, a0);
        a1 = _mm256_fmadd_ps(_mm256_maskload_ps(r1 + d8, tm), qv, a1);
        a2 = _mm256_fmadd_ps(_mm256_maskload_ps(r2 + d8, tm), qv, a2);
        a3 = _mm256_fmadd_ps(_mm256_maskload_ps(r3 + d8, tm), qv, a3);
    }
    out[0] = hsum256(a0);
    out[stride] = hsum256(a1);
    out[2 * stride] = hsum256(a2);
    out[3 * stride] = hsum256(a3);
}

/* The f16 and int8 kernels end with a scalar tail (AVX2 has no masked 16-bit or 8-bit
 * loads); it is the same for every row. */
#define LOADH8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))

AVX2 static inline float f16_tail(const uint16_t *r, const float *q, size_t d, size_t dim, float s)
{
    for (; d < dim; d++)
        s += _cvtsh_ss(r[d]) * q[d];
    return s;
}

AVX2 static inline float row1_f16_avx2(const uint16_t *r, size_t dim, const float *q)
{
    size_t d8 = dim & ~(size_t)7;
    __m256 a = _mm256_setzero_ps();
    for (size_t d = 0; d < d8; d += 8)
        a = _mm256_fmadd_ps(LOADH8(r + d), _mm256_loadu_ps(q + d), a);
    return f16_tail(r, q, d8, dim, hsum256(a));
}

AVX2 static inline void row4_f16_avx2(const uint16_t *r0, const uint16_t *r1, const uint16_t *r2,
                                      const uint16_t *r3, size_t dim, const float *q, float *out,
                                      size_t stride)
{
    size_t d8 = dim & ~(size_t)7;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t d = 0; d < d8; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
        a0 = _mm256_fmadd_ps(LOADH8(r0 + d), qv, a0);
        a1 = _mm256_fmadd_ps(LOADH8(r1 + d), qv, a1);
        a2 = _mm256_fmadd_ps(LOADH8(r2 + d), qv, a2);
        a3 = _mm256_fmadd_ps(LOADH8(r3 + d), qv, a3);
    }
    out[0] = f16_tail(r0, q, d8, dim, hsum256(a0));
    out[stride] = f16_tail(r1, q, d8, dim, hsum256(a1));
    out[2 * stride] = f16_tail(r2, q, d8, dim, hsum256(a2));
    out[3 * stride] = f16_tail(r3, q, d8, dim, hsum256(a3));
}

/* 16 int8 of a row widened to int16, times 16 int16 of the query, summed in pairs. */
#define LOADB16(p) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p)))
#define LOADQ16(p) _mm256_loadu_si256((const __m256i *)(p))

AVX2 static inline int32_t row1_i8_avx2(const int8_t *r, size_t dim, const int16_t *q)
{
    size_t d16 = dim & ~(size_t)15;
    __m256i a = _mm256_setzero_si256();
    for (size_t d = 0; d < d16; d += 16)
        a = _mm256_add_epi32(a, _mm256_madd_epi16(LOADB16(r + d), LOADQ16(q + d)));
    int32_t s = hsum256_epi32(a);
    for (size_t d = d16; d < dim; d++)
        s += (int32_t)r[d] * q[d];
    return s;
}

AVX2 static inline void row4_i8_avx2(const int8_t *r0, const int8_t *r1, const int8_t *r2,
                                     const int8_t *r3, size_t dim, const int16_t *q, int32_t *out,
                                     size_t stride)
{
    size_t d16 = dim & ~(size_t)15;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t d = 0; d < d16; d += 16) {
        __m256i qv = LOADQ16(q + d);
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(LOADB16(r0 + d), qv));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(LOADB16(r1 + d), qv));
        a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(LOADB16(r2 + d), qv));
        a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(LOADB16(r3 + d), qv));
    }
    int32_t s0 = hsum256_epi32(a0), s1 = hsum256_epi32(a1), s2 = hsum256_epi32(a2),
            s3 = hsum256_epi32(a3);
    for (size_t d = d16; d < dim; d++) {
        s0 += (int32_t)r0[d] * q[d];
        s1 += (int32_t)r1[d] * q[d];
        s2 += (int32_t)r2[d] * q[d];
        s3 += (int32_t)r3[d] * q[d];
    }
    out[0] = s0;
    out[stride] = s1;
    out[2 * stride] = s2;
    out[3 * stride] = s3;
}

SCAN_DRIVER(AVX2, dot_f32_avx2, float, float, float, row1_f32_avx2, row4_f32_avx2)
SCAN_DRIVER(AVX2, dot_f16_avx2, uint16_t, float, float, row1_f16_avx2, row4_f16_avx2)
SCAN_DRIVER(AVX2, dot_i8_avx2, int8_t, int16_t, int32_t, row1_i8_avx2, row4_i8_avx2)

static const rd__scan_ops ops_avx2 = {dot_f32_avx2, dot_f16_avx2, dot_i8_avx2};

/* ---- AVX-512 F + BW + VL ---- */

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c")))

AVX512 static inline __mmask16 tail_mask16(size_t dim)
{
    return (__mmask16)((1u << (dim & 15)) - 1u);
}

AVX512 static inline float row1_f32_avx512(const float *r, size_t dim, const float *q)
{
    size_t d16 = dim & ~(size_t)15;
    __m512 a = _mm512_setzero_ps();
    for (size_t d = 0; d < d16; d += 16)
        a = _mm512_fmadd_ps(_mm512_loadu_ps(r + d), _mm512_loadu_ps(q + d), a);
    if (d16 < dim) {
        __mmask16 tm = tail_mask16(dim);
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, r + d16), _mm512_maskz_loadu_ps(tm, q + d16),
                            a);
    }
    return _mm512_reduce_add_ps(a);
}

AVX512 static inline void row4_f32_avx512(const float *r0, const float *r1, const float *r2,
                                          const float *r3, size_t dim, const float *q, float *out,
                                          size_t stride)
{
    size_t d16 = dim & ~(size_t)15;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t d = 0; d < d16; d += 16) {
        __m512 qv = _mm512_loadu_ps(q + d);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + d), qv, a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + d), qv, a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + d), qv, a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(r3 + d), qv, a3);
    }
    if (d16 < dim) {
        __mmask16 tm = tail_mask16(dim);
        __m512 qv = _mm512_maskz_loadu_ps(tm, q + d16);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, r0 + d16), qv, a0);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, r1 + d16), qv, a1);
        a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, r2 + d16), qv, a2);
        a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, r3 + d16), qv, a3);
    }
    out[0] = _mm512_reduce_add_ps(a0);
    out[stride] = _mm512_reduce_add_ps(a1);
    out[2 * stride] = _mm512_reduce_add_ps(a2);
    out[3 * stride] = _mm512_reduce_add_ps(a3);
}

#define LOADH16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define LOADH16T(tm, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((tm), (p)))

AVX512 static inline float row1_f16_avx512(const uint16_t *r, size_t dim, const float *q)
{
    size_t d16 = dim & ~(size_t)15;
    __m512 a = _mm512_setzero_ps();
    for (size_t d = 0; d < d16; d += 16)
        a = _mm512_fmadd_ps(LOADH16(r + d), _mm512_loadu_ps(q + d), a);
    if (d16 < dim) {
        __mmask16 tm = tail_mask16(dim);
        a = _mm512_fmadd_ps(LOADH16T(tm, r + d16), _mm512_maskz_loadu_ps(tm, q + d16), a);
    }
    return _mm512_reduce_add_ps(a);
}

AVX512 static inline void row4_f16_avx512(const uint16_t *r0, const uint16_t *r1,
                                          const uint16_t *r2, const uint16_t *r3, size_t dim,
                                          const float *q, float *out, size_t stride)
{
    size_t d16 = dim & ~(size_t)15;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t d = 0; d < d16; d += 16) {
        __m512 qv = _mm512_loadu_ps(q + d);
        a0 = _mm512_fmadd_ps(LOADH16(r0 + d), qv, a0);
        a1 = _mm512_fmadd_ps(LOADH16(r1 + d), qv, a1);
        a2 = _mm512_fmadd_ps(LOADH16(r2 + d), qv, a2);
        a3 = _mm512_fmadd_ps(LOADH16(r3 + d), qv, a3);
    }
    if (d16 < dim) {
        __mmask16 tm = tail_mask16(dim);
        __m512 qv = _mm512_maskz_loadu_ps(tm, q + d16);
        a0 = _mm512_fmadd_ps(LOADH16T(tm, r0 + d16), qv, a0);
        a1 = _mm512_fmadd_ps(LOADH16T(tm, r1 + d16), qv, a1);
        a2 = _mm512_fmadd_ps(LOADH16T(tm, r2 + d16), qv, a2);
        a3 = _mm512_fmadd_ps(LOADH16T(tm, r3 + d16), qv, a3);
    }
    out[0] = _mm512_reduce_add_ps(a0);
    out[stride] = _mm512_reduce_add_ps(a1);
    out[2 * stride] = _mm512_reduce_add_ps(a2);
    out[3 * stride] = _mm512_reduce_add_ps(a3);
}

/* 32 int8 of a row widened to int16, times 32 int16 of the query, summed in pairs; the
 * last dim % 32 through masked loads (zeros add nothing to an integer sum). */
#define LOADB32(p) _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(p)))
#define LOADB32T(tm, p) _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8((tm), (p)))

AVX512 static inline __mmask32 tail_mask32(size_t dim)
{
    return (__mmask32)((1ull << (dim & 31)) - 1u);
}

AVX512 static inline int32_t row1_i8_avx512(const int8_t *r, size_t dim, const int16_t *q)
{
    size_t d32 = dim & ~(size_t)31;
    __m512i a = _mm512_setzero_si512();
    for (size_t d = 0; d < d32; d += 32)
        a = _mm512_add_epi32(
            a, _mm512_madd_epi16(LOADB32(r + d), _mm512_loadu_si512((const void *)(q + d))));
    if (d32 < dim) {
        __mmask32 tm = tail_mask32(dim);
        a = _mm512_add_epi32(
            a, _mm512_madd_epi16(LOADB32T(tm, r + d32), _mm512_maskz_loadu_epi16(tm, q + d32)));
    }
    return _mm512_reduce_add_epi32(a);
}

AVX512 static inline void row4_i8_avx512(const int8_t *r0, const int8_t *r1, const int8_t *r2,
                                         const int8_t *r3, size_t dim, const int16_t *q,
                                         int32_t *out, size_t stride)
{
    size_t d32 = dim & ~(size_t)31;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t d = 0; d < d32; d += 32) {
        __m512i qv = _mm512_loadu_si512((const void *)(q + d));
        a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(LOADB32(r0 + d), qv));
        a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(LOADB32(r1 + d), qv));
        a2 = _mm512_add_epi32(a2, _mm512_madd_epi16(LOADB32(r2 + d), qv));
        a3 = _mm512_add_epi32(a3, _mm512_madd_epi16(LOADB32(r3 + d), qv));
    }
    if (d32 < dim) {
        __mmask32 tm = tail_mask32(dim);
        __m512i qv = _mm512_maskz_loadu_epi16(tm, q + d32);
        a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(LOADB32T(tm, r0 + d32), qv));
        a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(LOADB32T(tm, r1 + d32), qv));
        a2 = _mm512_add_epi32(a2, _mm512_madd_epi16(LOADB32T(tm, r2 + d32), qv));
        a3 = _mm512_add_epi32(a3, _mm512_madd_epi16(LOADB32T(tm, r3 + d32), qv));
    }
    out[0] = _mm512_reduce_add_epi32(a0);
    out[stride] = _mm512_reduce_add_epi32(a1);
    out[2 * stride] = _mm512_reduce_add_epi32(a2);
    out[3 * stride] = _mm512_reduce_add_epi32(a3);
}

SCAN_DRIVER(AVX512, dot_f32_avx512, float, float, float, row1_f32_avx512, row4_f32_avx512)
SCAN_DRIVER(AVX512, dot_f16_avx512, uint16_t, float, float, row1_f16_avx512, row4_f16_avx512)
SCAN_DRIVER(AVX512, dot_i8_avx512, int8_t, int16_t, int32_t, row1_i8_avx512, row4_i8_avx512)

static const rd__scan_ops ops_avx512 = {dot_f32_avx512, dot_f16_avx512, dot_i8_avx512};

static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

#endif /* RD_SCAN_X86 */

const char *rd__index_isa_name(rd__index_isa isa)
{
    switch (isa) {
    case RD__ISA_SCALAR:
        return "scalar";
    case RD__ISA_AVX2:
        return "avx2";
    case RD__ISA_AVX512:
        return "avx512";
    }
    return "?";
}

int rd__index_isa_supported(rd__index_isa isa)
{
    switch (isa) {
    case RD__ISA_SCALAR:
        return 1;
#ifdef RD_SCAN_X86
    /* __builtin_cpu_supports also checks that the operating system saves the wide
     * registers (XGETBV), not only that the CPU has them. */
    case RD__ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case RD__ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && cpu_has_f16c();
#else
    case RD__ISA_AVX2:
    case RD__ISA_AVX512:
        break;
#endif
    }
    return 0;
}

rd__index_isa rd__index_isa_best(void)
{
    if (rd__index_isa_supported(RD__ISA_AVX512))
        return RD__ISA_AVX512;
    if (rd__index_isa_supported(RD__ISA_AVX2))
        return RD__ISA_AVX2;
    return RD__ISA_SCALAR;
}

const rd__scan_ops *rd__scan_ops_of(rd__index_isa isa)
{
#ifdef RD_SCAN_X86
    if (isa == RD__ISA_AVX512)
        return &ops_avx512;
    if (isa == RD__ISA_AVX2)
        return &ops_avx2;
#else
    (void)isa;
#endif
    return &ops_scalar;
}
