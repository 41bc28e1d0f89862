/* radraft — a node's own measurements for /metrics: latency histograms that the listener and
 * the pipeline's workers update from their threads (lock-free: one atomic counter per
 * bucket) and that the web server reads. The owner (rd_serve) keeps them for its lifetime;
 * nothing here is global. A C header only (C11 atomics). */
#ifndef RADRAFT_METRICS_H
#define RADRAFT_METRICS_H

#include <stdatomic.h>

/* Upper bounds (seconds) of the buckets, Prometheus' `le`, increasing; one more bucket
 * counts everything above (`+Inf`). */
#define RD_HISTOGRAM_BUCKETS 12
extern const double rd_histogram_bounds[RD_HISTOGRAM_BUCKETS];

typedef struct rd_histogram {
    atomic_ulong counts[RD_HISTOGRAM_BUCKETS + 1]; /* not cumulative: one bucket each */
    atomic_ulong sum_us;                           /* the observations' sum, microseconds */
} rd_histogram;

typedef struct rd_metrics {
    rd_histogram draft;  /* a study's drafting, read to record (a drafted study) */
    rd_histogram cstore; /* one C-STORE: the file durable and its row committed */
} rd_metrics;

void rd_metrics_init(rd_metrics *m);
/* Counts one observation of `seconds` (negative or not a number: counted as 0). Thread-safe;
 * accepts a NULL histogram. */
void rd_histogram_observe(rd_histogram *h, double seconds);

#endif
