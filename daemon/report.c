/*
 * report.c - churn economics and the symptoms before each loss, from the
 * clients' ledgers (include/churnd/report.h has the definitions).
 *
 * Each client is reduced to a timeline of transitions (acquired, lost with
 * a reason) by one walk over its activity days and cancellations; the
 * report's figures are read off that timeline. Only the lost clients and
 * the per-rule tallies are kept, so memory grows with losses, not clients.
 *
 * Must not: do I/O or read a clock.
 */
#include "churnd/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/timeutil.h"

/* A lapse is reported as a reason of its own, after the ledger's. */
#define REASON_LAPSED LEDGER_N_REASONS
#define N_REASONS (LEDGER_N_REASONS + 1)

typedef struct symptom {
    const char *rule; /* borrowed from the report's rule table */
    int64_t first_ms; /* its first firing in the look-back window */
} symptom_t;

typedef struct loss {
    char *client;     /* owned */
    int64_t at_ms;
    unsigned reason;  /* ledger_reason_t or REASON_LAPSED */
    int new_client;   /* won in the period, lost in it too */
    double lost_sales;
    symptom_t *sym;   /* owned */
    size_t n_sym;
} loss_t;

typedef struct rule_acc {
    char *name;       /* owned */
    uint64_t losses;  /* losses it preceded */
    double *leads;    /* owned: days before each of those losses */
    size_t n_leads, cap_leads;
    uint64_t alerts, followed, not_followed, too_recent;
} rule_acc_t;

struct report {
    report_opts_t o;
    int64_t data_end_ms;
    uint64_t at_start, new_clients, lost, lost_new;
    double sales, lost_sales;
    uint64_t n_by_reason[N_REASONS];
    double sales_by_reason[N_REASONS];
    loss_t *losses;
    size_t n_losses, cap_losses;
    rule_acc_t *rules;
    size_t n_rules, cap_rules;
};

report_t *report_new(const report_opts_t *opts) {
    report_t *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->o = *opts;
    r->data_end_ms = INT64_MIN;
    return r;
}

void report_free(report_t *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_losses; i++) {
        free(r->losses[i].client);
        free(r->losses[i].sym);
    }
    for (size_t i = 0; i < r->n_rules; i++) {
        free(r->rules[i].name);
        free(r->rules[i].leads);
    }
    free(r->losses);
    free(r->rules);
    free(r);
}

static int grow(void **v, size_t *cap, size_t n, size_t sz) {
    if (n < *cap) return 0;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(*v, c * sz);
    if (!p) return CHURN_ENOMEM;
    *v = p;
    *cap = c;
    return 0;
}

static rule_acc_t *rule_of(report_t *r, const char *name) {
    for (size_t i = 0; i < r->n_rules; i++)
        if (!strcmp(r->rules[i].name, name)) return &r->rules[i];
    if (grow((void **)&r->rules, &r->cap_rules, r->n_rules, sizeof(rule_acc_t)))
        return NULL;
    rule_acc_t *a = &r->rules[r->n_rules];
    memset(a, 0, sizeof(*a));
    if (!(a->name = strdup(name))) return NULL;
    r->n_rules++;
    return a;
}

/* ---- one client's timeline ---- */

enum { T_ACQUIRED = 1, T_LOST = 2 };

typedef struct trans {
    int64_t t;
    int kind;
    unsigned reason;    /* T_LOST */
    int64_t anchor_ms;  /* T_LOST: end of the day of the last activity */
} trans_t;

typedef struct timeline {
    trans_t *v;
    size_t n, cap;
} timeline_t;

static int push(timeline_t *tl, trans_t t) {
    if (grow((void **)&tl->v, &tl->cap, tl->n, sizeof(trans_t))) return CHURN_ENOMEM;
    tl->v[tl->n++] = t;
    return 0;
}

static int64_t sat_add(int64_t a, int64_t b) {
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* Walk activity days and cancellations in time order (activity first
 * within a day: a day's start precedes any cancellation on it). */
static int build_timeline(const ledger_t *l, int64_t lapse_ms, int64_t data_end_ms,
                          timeline_t *tl) {
    uint32_t di = 0, ci = 0;
    int active = 0;
    int64_t last = 0;
    for (;;) {
        while (di < l->n_days && !l->days[di].orders && !l->days[di].signs) di++;
        while (ci < l->n_contracts && l->contracts[ci].kind != LEDGER_CANCELLED) ci++;
        int64_t td = di < l->n_days ? l->days[di].day * LEDGER_DAY_MS : INT64_MAX;
        int64_t tc = ci < l->n_contracts ? l->contracts[ci].ts_ms : INT64_MAX;
        if (td == INT64_MAX && tc == INT64_MAX) break;
        int64_t t = td <= tc ? td : tc;
        int rc = 0;
        if (active && t > sat_add(last, lapse_ms)) {
            active = 0;
            rc = push(tl, (trans_t){sat_add(last, lapse_ms), T_LOST, REASON_LAPSED,
                                    last + LEDGER_DAY_MS});
        }
        if (!rc && td <= tc) {
            if (!active) rc = push(tl, (trans_t){td, T_ACQUIRED, 0, 0});
            active = 1;
            last = td;
            di++;
        } else if (!rc) {
            if (active)
                rc = push(tl, (trans_t){tc, T_LOST, l->contracts[ci].reason,
                                        last + LEDGER_DAY_MS});
            active = 0;
            ci++;
        }
        if (rc) return rc;
    }
    if (active && sat_add(last, lapse_ms) <= data_end_ms)
        return push(tl, (trans_t){last + lapse_ms, T_LOST, REASON_LAPSED,
                                  last + LEDGER_DAY_MS});
    return 0;
}

static double sales_between(const ledger_t *l, int64_t from_ms, int64_t to_ms) {
    double s = 0;
    for (uint32_t i = 0; i < l->n_days; i++) {
        int64_t t = l->days[i].day * LEDGER_DAY_MS;
        if (t >= from_ms && t < to_ms) s += l->days[i].amount;
    }
    return s;
}

static double days_of(int64_t ms) { return (double)ms / (double)LEDGER_DAY_MS; }

static int add_lead(rule_acc_t *a, double d) {
    if (grow((void **)&a->leads, &a->cap_leads, a->n_leads, sizeof(double)))
        return CHURN_ENOMEM;
    a->leads[a->n_leads++] = d;
    return 0;
}

static int record_loss(report_t *r, const char *client, size_t len,
                       const ledger_t *l, const trans_t *t, int new_client) {
    const report_opts_t *o = &r->o;
    if (grow((void **)&r->losses, &r->cap_losses, r->n_losses, sizeof(loss_t)))
        return CHURN_ENOMEM;
    loss_t *x = &r->losses[r->n_losses];
    memset(x, 0, sizeof(*x));
    if (!(x->client = strndup(client, len))) return CHURN_ENOMEM;
    r->n_losses++;
    x->at_ms = t->t;
    x->reason = t->reason;
    x->new_client = new_client;
    x->lost_sales = sales_between(l, t->anchor_ms - (o->to_ms - o->from_ms), t->anchor_ms);
    /* Symptoms: each rule's first firing in [loss - horizon, loss). */
    if (l->n_firings && !(x->sym = calloc(l->n_firings, sizeof(symptom_t))))
        return CHURN_ENOMEM;
    int64_t since = t->t - o->horizon_ms;
    for (uint32_t i = 0; i < l->n_firings; i++) {
        const ledger_firing_t *f = &l->firings[i];
        if (f->ts_ms < since || f->ts_ms >= t->t) continue;
        size_t k = 0;
        while (k < x->n_sym && strcmp(x->sym[k].rule, f->rule)) k++;
        if (k < x->n_sym) continue; /* firings are in time order: first kept */
        rule_acc_t *a = rule_of(r, f->rule);
        if (!a) return CHURN_ENOMEM;
        x->sym[x->n_sym++] = (symptom_t){a->name, f->ts_ms};
        a->losses++;
        if (add_lead(a, days_of(t->t - f->ts_ms))) return CHURN_ENOMEM;
    }
    r->n_by_reason[t->reason]++;
    r->sales_by_reason[t->reason] += x->lost_sales;
    r->lost_sales += x->lost_sales;
    return 0;
}

int report_add_client(report_t *r, const char *client, size_t client_len,
                      const ledger_t *l, int64_t data_end_ms) {
    const report_opts_t *o = &r->o;
    if (data_end_ms > r->data_end_ms) r->data_end_ms = data_end_ms;
    timeline_t tl = {0};
    int rc = build_timeline(l, o->lapse_ms, data_end_ms, &tl);
    if (rc) {
        free(tl.v);
        return rc;
    }
    int at_start = 0;
    const trans_t *acq = NULL, *loss = NULL;
    for (size_t i = 0; i < tl.n; i++) {
        const trans_t *t = &tl.v[i];
        if (t->t < o->from_ms) {
            at_start = t->kind == T_ACQUIRED;
        } else if (t->t < o->to_ms) {
            if (t->kind == T_ACQUIRED && !acq) acq = t;
            if (t->kind == T_LOST && !loss && (at_start || acq)) loss = t;
        }
    }
    r->sales += sales_between(l, o->from_ms, o->to_ms);
    if (at_start) r->at_start++;
    if (acq && !at_start) r->new_clients++;
    if (loss && at_start) {
        r->lost++;
        rc = record_loss(r, client, client_len, l, loss, 0);
    } else if (loss) {
        r->lost_new++;
        rc = record_loss(r, client, client_len, l, loss, 1);
    }
    /* Each firing in the period: was a loss within the horizon after it? */
    for (uint32_t i = 0; i < l->n_firings && !rc; i++) {
        const ledger_firing_t *f = &l->firings[i];
        if (f->ts_ms < o->from_ms || f->ts_ms >= o->to_ms) continue;
        rule_acc_t *a = rule_of(r, f->rule);
        if (!a) {
            rc = CHURN_ENOMEM;
            break;
        }
        a->alerts++;
        const trans_t *next = NULL;
        for (size_t k = 0; k < tl.n && !next; k++)
            if (tl.v[k].kind == T_LOST && tl.v[k].t >= f->ts_ms) next = &tl.v[k];
        int64_t until = sat_add(f->ts_ms, o->horizon_ms);
        if (next && next->t <= until) a->followed++;
        else if (until <= data_end_ms) a->not_followed++;
        else a->too_recent++;
    }
    free(tl.v);
    return rc;
}

/* ---- formatting ---- */

static const char *reason_name(unsigned reason) {
    return reason == REASON_LAPSED ? "lapsed" : ledger_reason_name((ledger_reason_t)reason);
}

static const char *category(unsigned reason) {
    return reason != REASON_LAPSED && ledger_reason_objective((ledger_reason_t)reason)
               ? "objective"
               : "preventable";
}

static int cmp_loss(const void *a, const void *b) {
    const loss_t *x = a, *y = b;
    if (x->at_ms != y->at_ms) return x->at_ms < y->at_ms ? -1 : 1;
    return strcmp(x->client, y->client);
}

static int cmp_sym(const void *a, const void *b) {
    const symptom_t *x = a, *y = b;
    if (x->first_ms != y->first_ms) return x->first_ms < y->first_ms ? -1 : 1;
    return strcmp(x->rule, y->rule);
}

static int cmp_rule(const void *a, const void *b) {
    const rule_acc_t *x = *(rule_acc_t *const *)a, *y = *(rule_acc_t *const *)b;
    if (x->losses != y->losses) return x->losses > y->losses ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* qsort, except that an empty array may be NULL, which qsort must not be
 * given even with no elements: only what has two or more is sorted. */
static void sort_n(void *v, size_t n, size_t size,
                   int (*cmp)(const void *, const void *)) {
    if (n > 1) qsort(v, n, size, cmp);
}

/* Sort the losses (and their symptoms) in place and list the rules in
 * report order; the caller frees *rules. */
static int prepare(report_t *r, rule_acc_t ***rules) {
    sort_n(r->losses, r->n_losses, sizeof(loss_t), cmp_loss);
    for (size_t i = 0; i < r->n_losses; i++)
        sort_n(r->losses[i].sym, r->losses[i].n_sym, sizeof(symptom_t), cmp_sym);
    for (size_t i = 0; i < r->n_rules; i++)
        sort_n(r->rules[i].leads, r->rules[i].n_leads, sizeof(double), cmp_double);
    *rules = malloc((r->n_rules ? r->n_rules : 1) * sizeof(rule_acc_t *));
    if (!*rules) return CHURN_ENOMEM;
    for (size_t i = 0; i < r->n_rules; i++) (*rules)[i] = &r->rules[i];
    sort_n(*rules, r->n_rules, sizeof(rule_acc_t *), cmp_rule);
    return 0;
}

static double median(const rule_acc_t *a) {
    if (!a->n_leads) return 0;
    size_t m = a->n_leads / 2;
    return a->n_leads % 2 ? a->leads[m] : (a->leads[m - 1] + a->leads[m]) / 2;
}

static double churn_pct(const report_t *r) {
    return r->at_start ? 100.0 * (double)r->lost / (double)r->at_start : 0;
}

static double avg_sales(const report_t *r) {
    uint64_t n = r->at_start + r->new_clients;
    return n ? r->sales / (double)n : 0;
}

static void date_of(int64_t ts_ms, char *buf, size_t n) {
    char t[TIME_RFC3339_MAX];
    time_format_rfc3339(ts_ms, t, sizeof(t));
    /* A time at midnight reads as its date alone. */
    if (ts_ms % LEDGER_DAY_MS == 0) snprintf(buf, n, "%.10s", t);
    else snprintf(buf, n, "%s", t);
}

static void time_of(int64_t ts_ms, char *buf, size_t n) {
    if (ts_ms == INT64_MIN) snprintf(buf, n, "none");
    else time_format_rfc3339(ts_ms, buf, n);
}

int report_format_text(report_t *r, buf_t *out) {
    rule_acc_t **rules;
    if (prepare(r, &rules)) return CHURN_ENOMEM;
    const report_opts_t *o = &r->o;
    char a[TIME_RFC3339_MAX], b[TIME_RFC3339_MAX], c[TIME_RFC3339_MAX];
    date_of(o->from_ms, a, sizeof(a));
    date_of(o->to_ms, b, sizeof(b));
    time_of(r->data_end_ms, c, sizeof(c));
    int rc = buf_printf(out, "churn report %s .. %s (%.0f days; data until %s)\n\n", a, b,
                        days_of(o->to_ms - o->from_ms), c);
    if (!rc) rc = buf_printf(out,
                             "clients at start          %12llu\n"
                             "new clients               %12llu\n"
                             "lost clients              %12llu   churn %.1f%%\n"
                             "lost new clients          %12llu\n"
                             "sales in period           %12.2f\n"
                             "average sales per client  %12.2f\n"
                             "lost sales                %12.2f\n",
                             (unsigned long long)r->at_start,
                             (unsigned long long)r->new_clients,
                             (unsigned long long)r->lost, churn_pct(r),
                             (unsigned long long)r->lost_new, r->sales, avg_sales(r),
                             r->lost_sales);
    if (!rc && o->margin >= 0) {
        char label[64];
        snprintf(label, sizeof(label), "lost profit (margin %g%%)", o->margin * 100);
        rc = buf_printf(out, "%-26s%12.2f\n", label, r->lost_sales * o->margin);
    }
    uint64_t objective = 0, preventable = 0;
    for (unsigned i = 0; i < N_REASONS; i++) {
        if (!strcmp(category(i), "objective")) objective += r->n_by_reason[i];
        else preventable += r->n_by_reason[i];
    }
    if (!rc) rc = buf_printf(out, "\nlosses by reason (objective %llu, preventable %llu; "
                             "lapsed: no order for %.0f days)\n"
                             "  %-10s %-12s %8s %14s\n", (unsigned long long)objective,
                             (unsigned long long)preventable, days_of(o->lapse_ms),
                             "reason", "category", "clients", "lost sales");
    for (unsigned i = 0; i < N_REASONS && !rc; i++) {
        if (!r->n_by_reason[i]) continue;
        rc = buf_printf(out, "  %-10s %-12s %8llu %14.2f\n", reason_name(i), category(i),
                        (unsigned long long)r->n_by_reason[i], r->sales_by_reason[i]);
    }
    if (!rc) rc = buf_printf(out, "\nlost clients (symptoms that fired within %.0f days "
                             "before the loss, days earlier)\n"
                             "  %-20s %-20s %-10s %12s  %s\n", days_of(o->horizon_ms),
                             "client", "lost at", "reason", "lost sales", "symptoms");
    for (size_t i = 0; i < r->n_losses && !rc; i++) {
        const loss_t *x = &r->losses[i];
        date_of(x->at_ms, a, sizeof(a));
        rc = buf_printf(out, "  %-20s %-20s %-10s %12.2f  ", x->client, a,
                        reason_name(x->reason), x->lost_sales);
        for (size_t k = 0; k < x->n_sym && !rc; k++)
            rc = buf_printf(out, "%s%s %.1fd", k ? ", " : "", x->sym[k].rule,
                            days_of(x->at_ms - x->sym[k].first_ms));
        if (!rc && !x->n_sym) rc = buf_printf(out, "none");
        if (!rc && x->new_client) rc = buf_printf(out, "  (new in period)");
        if (!rc) rc = buf_putc(out, '\n');
    }
    if (!rc) rc = buf_printf(out, "\nrules (alerts fired in the period; followed by a loss "
                             "within %.0f days or not)\n"
                             "  %-24s %8s %12s %8s %9s %8s %11s\n", days_of(o->horizon_ms),
                             "rule", "preceded", "median lead", "alerts", "followed",
                             "no loss", "too recent");
    for (size_t i = 0; i < r->n_rules && !rc; i++) {
        const rule_acc_t *x = rules[i];
        rc = buf_printf(out, "  %-24s %8llu %11.1fd %8llu %9llu %8llu %11llu\n", x->name,
                        (unsigned long long)x->losses, median(x),
                        (unsigned long long)x->alerts, (unsigned long long)x->followed,
                        (unsigned long long)x->not_followed,
                        (unsigned long long)x->too_recent);
    }
    free(rules);
    return rc;
}

static int put_time_json(buf_t *out, int64_t ts_ms) {
    char t[TIME_RFC3339_MAX];
    if (ts_ms == INT64_MIN) return buf_printf(out, "null");
    time_format_rfc3339(ts_ms, t, sizeof(t));
    return buf_printf(out, "\"%s\"", t);
}

int report_format_json(report_t *r, buf_t *out) {
    rule_acc_t **rules;
    if (prepare(r, &rules)) return CHURN_ENOMEM;
    const report_opts_t *o = &r->o;
    int rc = buf_printf(out, "{\"from\": ");
    if (!rc) rc = put_time_json(out, o->from_ms);
    if (!rc) rc = buf_printf(out, ", \"to\": ");
    if (!rc) rc = put_time_json(out, o->to_ms);
    if (!rc) rc = buf_printf(out, ", \"data_end\": ");
    if (!rc) rc = put_time_json(out, r->data_end_ms);
    if (!rc) rc = buf_printf(out, ", \"lapse_days\": %g, \"horizon_days\": %g, \"margin\": ",
                             days_of(o->lapse_ms), days_of(o->horizon_ms));
    if (!rc) rc = o->margin >= 0 ? buf_printf(out, "%g", o->margin) : buf_printf(out, "null");
    if (!rc) rc = buf_printf(out,
                             ", \"clients_at_start\": %llu, \"new_clients\": %llu, "
                             "\"lost_clients\": %llu, \"lost_new_clients\": %llu, "
                             "\"churn_pct\": %.2f, \"sales\": %.2f, "
                             "\"avg_sales_per_client\": %.2f, \"lost_sales\": %.2f, "
                             "\"lost_profit\": ",
                             (unsigned long long)r->at_start,
                             (unsigned long long)r->new_clients,
                             (unsigned long long)r->lost, (unsigned long long)r->lost_new,
                             churn_pct(r), r->sales, avg_sales(r), r->lost_sales);
    if (!rc) rc = o->margin >= 0 ? buf_printf(out, "%.2f", r->lost_sales * o->margin)
                                 : buf_printf(out, "null");
    if (!rc) rc = buf_printf(out, ", \"losses_by_reason\": [");
    int first = 1;
    for (unsigned i = 0; i < N_REASONS && !rc; i++) {
        if (!r->n_by_reason[i]) continue;
        rc = buf_printf(out, "%s{\"reason\": \"%s\", \"category\": \"%s\", "
                        "\"clients\": %llu, \"lost_sales\": %.2f}", first ? "" : ", ",
                        reason_name(i), category(i), (unsigned long long)r->n_by_reason[i],
                        r->sales_by_reason[i]);
        first = 0;
    }
    if (!rc) rc = buf_printf(out, "], \"lost\": [");
    for (size_t i = 0; i < r->n_losses && !rc; i++) {
        const loss_t *x = &r->losses[i];
        rc = buf_printf(out, "%s{\"client_id\": ", i ? ", " : "");
        if (!rc) rc = buf_put_json_str(out, x->client, strlen(x->client));
        if (!rc) rc = buf_printf(out, ", \"lost_at\": ");
        if (!rc) rc = put_time_json(out, x->at_ms);
        if (!rc) rc = buf_printf(out, ", \"reason\": \"%s\", \"category\": \"%s\", "
                                 "\"new_client\": %s, \"lost_sales\": %.2f, \"symptoms\": [",
                                 reason_name(x->reason), category(x->reason),
                                 x->new_client ? "true" : "false", x->lost_sales);
        for (size_t k = 0; k < x->n_sym && !rc; k++) {
            rc = buf_printf(out, "%s{\"rule\": ", k ? ", " : "");
            if (!rc) rc = buf_put_json_str(out, x->sym[k].rule, strlen(x->sym[k].rule));
            if (!rc) rc = buf_printf(out, ", \"fired_at\": ");
            if (!rc) rc = put_time_json(out, x->sym[k].first_ms);
            if (!rc) rc = buf_printf(out, ", \"days_before\": %.2f}",
                                     days_of(x->at_ms - x->sym[k].first_ms));
        }
        if (!rc) rc = buf_printf(out, "]}");
    }
    if (!rc) rc = buf_printf(out, "], \"rules\": [");
    for (size_t i = 0; i < r->n_rules && !rc; i++) {
        const rule_acc_t *x = rules[i];
        rc = buf_printf(out, "%s{\"rule\": ", i ? ", " : "");
        if (!rc) rc = buf_put_json_str(out, x->name, strlen(x->name));
        if (!rc) rc = buf_printf(out, ", \"losses_preceded\": %llu, \"median_lead_days\": %.2f, "
                                 "\"alerts\": %llu, \"followed_by_loss\": %llu, "
                                 "\"followed_by_no_loss\": %llu, \"too_recent\": %llu}",
                                 (unsigned long long)x->losses, median(x),
                                 (unsigned long long)x->alerts, (unsigned long long)x->followed,
                                 (unsigned long long)x->not_followed,
                                 (unsigned long long)x->too_recent);
    }
    if (!rc) rc = buf_printf(out, "]}\n");
    free(rules);
    return rc;
}
