/*
 * report.h - the churn report of `churnd report` (SPEC section 7): a
 * period's churn economics computed from every client's ledger (ledger.h),
 * and, for each loss, the symptoms that came before it.
 *
 * Definitions (docs/report.md says the same for operators):
 *  - A client's relationship starts with its first order or contract
 *    signing. It is lost when it cancels a contract (reason from the
 *    event), or when it lapses: no order or signing for `lapse` after its
 *    last one (lost at that last activity + lapse). An order or signing
 *    after a loss wins it back.
 *  - Clients at the start: in a relationship at `from`. New clients:
 *    relationships that start (or restart) in [from, to).
 *  - Lost clients: clients at the start whose first loss in [from, to)
 *    happened by the end of the data; churn % = lost / clients at start.
 *    Clients both won and lost in the period are counted apart (lost_new).
 *  - Sales: order amounts (minus cancelled orders) on days in [from, to);
 *    average sales per client = sales / (clients at start + new clients).
 *  - Lost sales of a lost client: what it bought in the period-long window
 *    that ends with its last order or signing before the loss, that is,
 *    what a period like this one brought from it; lost profit = lost sales
 *    x margin.
 *  - Symptoms before a loss: the rules that fired for the client within
 *    `horizon` before the loss, each with how many days earlier it first
 *    fired in that window.
 *  - Per rule: the losses it preceded (as above), and its firings in
 *    [from, to): followed by a loss within `horizon`, followed by none
 *    (the horizon has passed without one), or too recent to tell.
 * "The end of the data" is the newest event time in the state: a lapse
 * after it has not happened yet.
 *
 * Pure: no I/O, no clock. The caller feeds every client, then formats.
 */
#ifndef CHURND_REPORT_H
#define CHURND_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/common.h"
#include "churnd/ledger.h"

typedef struct report_opts {
    int64_t from_ms, to_ms; /* the period [from, to) */
    int64_t lapse_ms;       /* no order this long: lapsed (default 90d) */
    int64_t horizon_ms;     /* symptom look-back and look-ahead (90d) */
    double margin;          /* profit margin, 0..1; < 0: not given */
} report_opts_t;

typedef struct report report_t;

/* NULL when out of memory. opts is copied. */
report_t *report_new(const report_opts_t *opts);
void report_free(report_t *r);

/* One client's ledger; data_end_ms is the end of the data (the newest
 * event time over all clients). 0 or CHURN_ENOMEM. */
int report_add_client(report_t *r, const char *client, size_t client_len,
                      const ledger_t *l, int64_t data_end_ms);

/* The report as text tables for a person, or as one JSON object. Both
 * first sort the report's lost clients by loss time (then id) and list
 * rules by losses preceded (then name), so the same clients in any order
 * give the same output. Appends to out. */
int report_format_text(report_t *r, buf_t *out);
int report_format_json(report_t *r, buf_t *out);

#endif
