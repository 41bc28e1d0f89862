/* radraft — latency histograms (radraft/metrics.h): atomic bucket counters, so that the
 * listener's and the workers' threads record without a lock and the web server reads at
 * any time. */
#include "radraft/metrics.h"

/* From 5 ms (a C-STORE) to 30 s (a study drafted on a loaded machine). */
const double rd_histogram_bounds[RD_HISTOGRAM_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                          0.5,   1,    2.5,   5,    10,  30};

static void histogram_init(rd_histogram *h)
{
    for (int i = 0; i <= RD_HISTOGRAM_BUCKETS; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_us, 0);
}

void rd_metrics_init(rd_metrics *m)
{
    histogram_init(&m->draft);
    histogram_init(&m->cstore);
}

void rd_histogram_observe(rd_histogram *h, double seconds)
{
    int b = 0;
    if (!h)
        return;
    if (!(seconds >= 0))
        seconds = 0;
    while (b < RD_HISTOGRAM_BUCKETS && seconds > rd_histogram_bounds[b])
        b++;
    atomic_fetch_add(&h->counts[b], 1);
    /* A day of observations in microseconds stays far below the counter's range. */
    atomic_fetch_add(&h->sum_us, (unsigned long)(seconds * 1e6 + 0.5));
}
