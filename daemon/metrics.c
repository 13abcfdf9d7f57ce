/*
 * metrics.c - the daemon's figures in the Prometheus text exposition
 * format (version 0.0.4), rendered on demand for GET /metrics from what
 * the daemon already counts. Rendering reads the daemon and writes text:
 * no I/O, no allocation beyond the output buffer.
 */
#include <inttypes.h>

#include "churnd/event.h"
#include "internal.h"

static int counter(buf_t *b, const char *name, const char *help,
                   uint64_t v) {
    return buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n",
                      name, help, name, name, v);
}

int metrics_render(daemon_t *d, buf_t *out) {
    const daemon_stats_t *s = &d->stats;
    int rc = 0;
    rc |= counter(out, "churnd_events_consumed_total",
                  "Messages taken from the input topics.", s->n_consumed);
    rc |= buf_printf(out, "# HELP churnd_events_invalid_total Messages "
                          "dead-lettered, by reason.\n"
                          "# TYPE churnd_events_invalid_total counter\n");
    for (int r = 1; r < EVENT__N; r++)
        rc |= buf_printf(out, "churnd_events_invalid_total{reason=\"%s\"} %" PRIu64 "\n",
                         event_reason_name((event_reason_t)r), s->n_invalid[r]);
    rc |= counter(out, "churnd_events_applied_total",
                  "Events applied to client state.", s->n_applied);
    rc |= counter(out, "churnd_alerts_total", "Alerts published.", s->n_alerts);
    return rc ? CHURN_ENOMEM : 0;
}
