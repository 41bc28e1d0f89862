/* radraft — private to src/retrieval (and its tests and benchmark): the scan kernels of the
 * archive index (scan.c), one set per instruction set, chosen at run time.
 *
 * A kernel scores `n` consecutive rows of `dim` elements against one query. Every row is
 * computed by the same sequence of operations wherever it sits in the call (first, last,
 * in a group of four or alone) and whatever the thread, so that equal rows give bit-equal
 * scores: ties are real ties, broken by id, and a scan split across threads returns what
 * one thread returns. Different instruction sets may round differently (a different
 * summation order); an index uses one set for all its scans.
 *
 * int8 rows are scored in integers (int8 row x int16 query, exact int32 sums), so that
 * every instruction set gives the same sums. */
#ifndef RADRAFT_INDEX_INT_H
#define RADRAFT_INDEX_INT_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/error.h"
#include "radraft/index.h"

typedef enum rd__index_isa {
    RD__ISA_SCALAR = 0, /* portable C */
    RD__ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    RD__ISA_AVX512 = 2  /* AVX-512 F + BW + VL (+ F16C) */
} rd__index_isa;
#define RD__ISA_COUNT 3

/* The largest magnitude of a query quantized to int16 for int8 rows of `dim` elements:
 * 16383, or less for long rows, so that no int32 sum can overflow (127 * max * dim < 2^31;
 * 4128 at RD_INDEX_MAX_DIM). */
static inline int rd__query_i16_max(size_t dim)
{
    size_t m = (size_t)2147483647 / (127u * (dim ? dim : 1));
    return m < 16383 ? (int)m : 16383;
}

typedef struct rd__scan_ops {
    /* Scores `n` rows of each of `ns` (1..4) streams: stream s's rows of `dim` elements
     * start at rows[s], and out[s * n + j] = sum_d rows[s][j * dim + d] * q[d]. */
    void (*dot_f32)(const float *const rows[], int ns, size_t n, size_t dim, const float *q,
                    float *out);
    /* the same over IEEE half-precision rows */
    void (*dot_f16)(const uint16_t *const rows[], int ns, size_t n, size_t dim, const float *q,
                    float *out);
    /* the same over int8 rows and an int16 query, exactly (int32 sums) */
    void (*dot_i8)(const int8_t *const rows[], int ns, size_t n, size_t dim, const int16_t *q,
                   int32_t *out);
} rd__scan_ops;

/* "scalar", "avx2", "avx512". */
const char *rd__index_isa_name(rd__index_isa isa);
/* 1 when this CPU runs `isa`'s kernels. */
int rd__index_isa_supported(rd__index_isa isa);
/* The widest instruction set this CPU supports. */
rd__index_isa rd__index_isa_best(void);
/* The kernels of `isa` (which the CPU must support). */
const rd__scan_ops *rd__scan_ops_of(rd__index_isa isa);

/* IEEE binary16 conversions, round to nearest even (portable; the kernels convert rows back
 * with the CPU's instructions where it has them, to the same values). */
uint16_t rd__f32_to_f16(float f);
float rd__f16_to_f32(uint16_t h);

/* Makes `ix` scan with `isa`'s kernels from now on (tests and the benchmark compare the
 * instruction sets); RD_E_INVALID when the CPU lacks it. */
rd_status rd__index_set_isa(rd_index *ix, rd__index_isa isa, rd_error *err);
rd__index_isa rd__index_get_isa(rd_index *ix);

#endif
