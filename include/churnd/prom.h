/*
 * prom.h - the Prometheus text exposition format (version 0.0.4), the
 * pieces metrics.c builds /metrics from: family headers, escaped label
 * values, numbers as Prometheus reads them, and a fixed-bucket histogram.
 * Pure: no clock, no I/O, no allocation beyond the output buffer, so the
 * daemon can observe on its hot path and tests can check every byte.
 */
#ifndef CHURND_PROM_H
#define CHURND_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/common.h"

/* "# HELP name help\n# TYPE name type\n"; help is escaped (\\ and \n). */
int prom_family(buf_t *out, const char *name, const char *type,
                const char *help);

/* A label value between its quotes: backslash, double quote and newline
 * escaped as \\, \" and \n; everything else as is (the format is UTF-8).
 * s may be NULL (written as an empty value). */
int prom_label_value(buf_t *out, const char *s);

/* key="value" with the value escaped. */
int prom_label(buf_t *out, const char *key, const char *value);

/* A sample value: shortest text that reads back as the same double,
 * +Inf, -Inf or NaN. */
int prom_double(buf_t *out, double v);

/* ---- histograms --------------------------------------------------------- */

#define PROM_HIST_MAX_BUCKETS 24

/* Upper bounds (le) are borrowed, ascending, finite, at most
 * PROM_HIST_MAX_BUCKETS; +Inf is implicit. counts[i] is the number of
 * observations in bucket i alone (counts[n_bounds] is the +Inf one); they
 * are made cumulative when rendered, so observing is one search and one
 * increment. */
typedef struct prom_hist {
    const double *bounds;
    size_t n_bounds;
    uint64_t counts[PROM_HIST_MAX_BUCKETS + 1];
    uint64_t count;
    double sum;
} prom_hist_t;

/* CHURN_EINVAL when bounds are too many, not ascending or not finite (the
 * histogram is then left empty, with no buckets but +Inf). */
int prom_hist_init(prom_hist_t *h, const double *bounds, size_t n_bounds);
/* v <= bound goes to that bucket (le is inclusive); NaN is ignored. */
void prom_hist_observe(prom_hist_t *h, double v);

/* The samples of one histogram series (no HELP/TYPE): name_bucket{le=...}
 * for every bound and +Inf, cumulative, then name_sum and name_count.
 * labels is preformatted text such as `rule="x",status="firing"` to put
 * before le, or NULL/"" for none. */
int prom_hist_render(const prom_hist_t *h, buf_t *out, const char *name,
                     const char *labels);

/* Bucket bounds in seconds for the daemon's latencies. */
extern const double prom_buckets_latency[]; /* 100us .. 60s */
extern const size_t prom_n_buckets_latency;
extern const double prom_buckets_fast[];    /* 1us .. 100ms */
extern const size_t prom_n_buckets_fast;

#endif
