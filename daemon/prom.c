/*
 * prom.c - see prom.h. Pure: the daemon's clock readings come in as
 * doubles of seconds, and everything goes out into a caller's buffer.
 */
#include "churnd/prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double prom_buckets_latency[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60,
};
const size_t prom_n_buckets_latency = CHURN_ARRAY_LEN(prom_buckets_latency);

const double prom_buckets_fast[] = {
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001,
    0.00025,  0.0005,    0.001,    0.0025,  0.005,    0.01,    0.1,
};
const size_t prom_n_buckets_fast = CHURN_ARRAY_LEN(prom_buckets_fast);

/* HELP text escapes backslash and newline; label values also quote. */
static int put_escaped(buf_t *out, const char *s, int quote) {
    int rc = 0;
    const char *run = s;
    for (const char *p = s; !rc && *p; p++) {
        const char *e = NULL;
        if (*p == '\\') e = "\\\\";
        else if (*p == '\n') e = "\\n";
        else if (*p == '"' && quote) e = "\\\"";
        if (!e) continue;
        rc = buf_append(out, run, (size_t)(p - run));
        if (!rc) rc = buf_append(out, e, 2);
        run = p + 1;
    }
    if (!rc) rc = buf_append(out, run, strlen(run));
    return rc;
}

int prom_family(buf_t *out, const char *name, const char *type,
                const char *help) {
    int rc = buf_printf(out, "# HELP %s ", name);
    if (!rc) rc = put_escaped(out, help ? help : "", 0);
    if (!rc) rc = buf_printf(out, "\n# TYPE %s %s\n", name, type);
    return rc;
}

int prom_label_value(buf_t *out, const char *s) {
    return put_escaped(out, s ? s : "", 1);
}

int prom_label(buf_t *out, const char *key, const char *value) {
    int rc = buf_printf(out, "%s=\"", key);
    if (!rc) rc = prom_label_value(out, value);
    if (!rc) rc = buf_putc(out, '"');
    return rc;
}

int prom_double(buf_t *out, double v) {
    if (isnan(v)) return buf_printf(out, "NaN");
    if (isinf(v)) return buf_printf(out, "%s", v > 0 ? "+Inf" : "-Inf");
    char tmp[40];
    /* 15 digits first: 0.1 stays "0.1" rather than 0.10000000000000001. */
    snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v) snprintf(tmp, sizeof(tmp), "%.17g", v);
    return buf_printf(out, "%s", tmp);
}

int prom_hist_init(prom_hist_t *h, const double *bounds, size_t n_bounds) {
    memset(h, 0, sizeof(*h));
    if (n_bounds > PROM_HIST_MAX_BUCKETS) return CHURN_EINVAL;
    for (size_t i = 0; i < n_bounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return CHURN_EINVAL;
    h->bounds = bounds;
    h->n_bounds = n_bounds;
    return 0;
}

void prom_hist_observe(prom_hist_t *h, double v) {
    if (isnan(v)) return;
    /* Binary search for the first bound >= v; n_bounds when none. */
    size_t lo = 0, hi = h->n_bounds;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    h->counts[lo]++;
    h->count++;
    h->sum += v;
}

static int bucket_line(buf_t *out, const char *name, const char *labels,
                       const char *le, double bound, uint64_t cum) {
    int rc = buf_printf(out, "%s_bucket{", name);
    if (!rc && labels && *labels) rc = buf_printf(out, "%s,", labels);
    if (!rc) rc = buf_printf(out, "le=\"");
    if (!rc) rc = le ? buf_printf(out, "%s", le) : prom_double(out, bound);
    if (!rc) rc = buf_printf(out, "\"} %llu\n", (unsigned long long)cum);
    return rc;
}

int prom_hist_render(const prom_hist_t *h, buf_t *out, const char *name,
                     const char *labels) {
    int rc = 0;
    uint64_t cum = 0;
    for (size_t i = 0; !rc && i < h->n_bounds; i++) {
        cum += h->counts[i];
        rc = bucket_line(out, name, labels, NULL, h->bounds[i], cum);
    }
    /* +Inf is the count itself, so the two always agree. */
    if (!rc) rc = bucket_line(out, name, labels, "+Inf", 0, h->count);
    int has = labels && *labels;
    if (!rc) rc = buf_printf(out, "%s_sum%s%s%s ", name, has ? "{" : "",
                             has ? labels : "", has ? "}" : "");
    if (!rc) rc = prom_double(out, h->sum);
    if (!rc) rc = buf_printf(out, "\n%s_count%s%s%s %llu\n", name,
                             has ? "{" : "", has ? labels : "", has ? "}" : "",
                             (unsigned long long)h->count);
    return rc;
}
