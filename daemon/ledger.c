/*
 * ledger.c - a client's commercial history for `churnd report`
 * (include/churnd/ledger.h).
 *
 * Encoding (inside the client's state record, after the rule sections):
 *   svar first_ms
 *   var  n_days,      n x { svar day, u64be amount bits, var orders, var signs }
 *   var  n_contracts, n x { svar ts_ms, u64be value bits, u8 kind, u8 reason }
 *   var  n_firings,   n x { svar ts_ms, bytes rule }
 * Days, contracts and firings are written in ascending time; the decoder
 * rejects anything out of order, out of range or over the bounds, so a
 * record never makes the report guess.
 *
 * Must not: do I/O or read a clock.
 */
#include "churnd/ledger.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "churnd/timeutil.h"

static const char *const reason_names[LEDGER_N_REASONS] = {
    "unknown", "moved", "closed", "acquired", "price", "quality", "service", "other",
};

const char *ledger_reason_name(ledger_reason_t r) {
    return (unsigned)r < LEDGER_N_REASONS ? reason_names[r] : "other";
}

int ledger_reason_objective(ledger_reason_t r) {
    return r == LEDGER_REASON_MOVED || r == LEDGER_REASON_CLOSED ||
           r == LEDGER_REASON_ACQUIRED;
}

void ledger_init(ledger_t *l) {
    memset(l, 0, sizeof(*l));
    l->first_ms = INT64_MAX;
}

void ledger_clear(ledger_t *l) {
    for (uint32_t i = 0; i < l->n_firings; i++) free(l->firings[i].rule);
    free(l->days);
    free(l->contracts);
    free(l->firings);
    ledger_init(l);
}

size_t ledger_heap_bytes(const ledger_t *l) {
    size_t n = churn_heap_cost((size_t)l->cap_days * sizeof(ledger_day_t)) +
               churn_heap_cost((size_t)l->cap_contracts * sizeof(ledger_contract_t)) +
               churn_heap_cost((size_t)l->cap_firings * sizeof(ledger_firing_t));
    for (uint32_t i = 0; i < l->n_firings; i++)
        n += churn_heap_cost(strlen(l->firings[i].rule) + 1);
    return n;
}

int ledger_is_empty(const ledger_t *l) {
    return l->first_ms == INT64_MAX && !l->n_days && !l->n_contracts &&
           !l->n_firings;
}

typedef enum kind { K_NONE, K_ORDER, K_ORDER_CANCEL, K_SIGN, K_CANCEL } kind_t;

static kind_t kind_of(const char *type) {
    if (!type) return K_NONE;
    if (!strcmp(type, "order.placed")) return K_ORDER;
    if (!strcmp(type, "order.cancelled")) return K_ORDER_CANCEL;
    if (!strcmp(type, "contract.signed")) return K_SIGN;
    if (!strcmp(type, "contract.cancelled")) return K_CANCEL;
    return K_NONE;
}

int ledger_wants_type(const char *type) { return kind_of(type) != K_NONE; }

/* A finite number at path, else 0: a missing or odd amount still counts
 * as activity, it adds nothing. */
static double number_at(const event_t *ev, const char *path) {
    const cJSON *v = ev->root ? event_path(ev->root, path) : NULL;
    if (!v || !cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return 0;
    return v->valuedouble;
}

static ledger_reason_t reason_of(const event_t *ev) {
    const cJSON *v = ev->root ? event_path(ev->root, "data.reason") : NULL;
    if (!v || !cJSON_IsString(v) || !v->valuestring[0]) return LEDGER_REASON_NONE;
    for (unsigned i = 1; i < LEDGER_N_REASONS; i++)
        if (!strcmp(v->valuestring, reason_names[i])) return (ledger_reason_t)i;
    return LEDGER_REASON_OTHER;
}

/* Grow an array of elements of size sz to hold one more. */
static int grow(void **v, uint32_t *cap, uint32_t n, size_t sz) {
    if (n < *cap) return 0;
    uint32_t c = *cap ? *cap * 2 : 4;
    void *p = realloc(*v, (size_t)c * sz);
    if (!p) return CHURN_ENOMEM;
    *v = p;
    *cap = c;
    return 0;
}

static int64_t floor_day(int64_t ts_ms) {
    int64_t d = ts_ms / LEDGER_DAY_MS;
    return (ts_ms % LEDGER_DAY_MS < 0) ? d - 1 : d;
}

/* Drop the days that fell out of retention behind the newest one. */
static void prune_days(ledger_t *l) {
    if (!l->n_days) return;
    int64_t oldest = l->days[l->n_days - 1].day - LEDGER_RETAIN_DAYS;
    uint32_t k = 0;
    while (k < l->n_days && l->days[k].day < oldest) k++;
    if (!k) return;
    memmove(l->days, l->days + k, (l->n_days - k) * sizeof(ledger_day_t));
    l->n_days -= k;
}

static int add_day(ledger_t *l, int64_t ts_ms, double amount, kind_t k) {
    int64_t day = floor_day(ts_ms);
    /* Late events are rare: search from the end. */
    uint32_t i = l->n_days;
    while (i > 0 && l->days[i - 1].day > day) i--;
    if (i == 0 || l->days[i - 1].day != day) {
        if (l->n_days && day < l->days[l->n_days - 1].day - LEDGER_RETAIN_DAYS)
            return 0; /* already out of retention */
        if (grow((void **)&l->days, &l->cap_days, l->n_days, sizeof(ledger_day_t)))
            return CHURN_ENOMEM;
        memmove(l->days + i + 1, l->days + i, (l->n_days - i) * sizeof(ledger_day_t));
        l->days[i] = (ledger_day_t){.day = day};
        l->n_days++;
    } else {
        i--;
    }
    ledger_day_t *d = &l->days[i];
    if (k == K_ORDER) {
        d->amount += amount;
        d->orders++;
    } else if (k == K_ORDER_CANCEL) {
        d->amount -= amount;
    } else if (k == K_SIGN) {
        d->signs++;
    }
    prune_days(l);
    return 0;
}

static int add_contract(ledger_t *l, const ledger_contract_t *c) {
    if (l->n_contracts == LEDGER_MAX_CONTRACTS) {
        if (c->ts_ms < l->contracts[0].ts_ms) return 0; /* older than all kept */
        memmove(l->contracts, l->contracts + 1,
                (l->n_contracts - 1) * sizeof(ledger_contract_t));
        l->n_contracts--;
    } else if (grow((void **)&l->contracts, &l->cap_contracts, l->n_contracts,
                    sizeof(ledger_contract_t))) {
        return CHURN_ENOMEM;
    }
    uint32_t i = l->n_contracts;
    while (i > 0 && l->contracts[i - 1].ts_ms > c->ts_ms) i--;
    memmove(l->contracts + i + 1, l->contracts + i,
            (l->n_contracts - i) * sizeof(ledger_contract_t));
    l->contracts[i] = *c;
    l->n_contracts++;
    return 0;
}

int ledger_on_event(ledger_t *l, const event_t *ev) {
    kind_t k = kind_of(ev->type);
    if (k == K_NONE) return 0;
    if (k == K_CANCEL) {
        ledger_contract_t c = {.ts_ms = ev->ts_ms, .value = number_at(ev, "data.value"),
                               .kind = LEDGER_CANCELLED, .reason = (uint8_t)reason_of(ev)};
        return add_contract(l, &c);
    }
    if (k == K_SIGN) {
        ledger_contract_t c = {.ts_ms = ev->ts_ms, .value = number_at(ev, "data.value"),
                               .kind = LEDGER_SIGNED};
        int rc = add_contract(l, &c);
        if (!rc) rc = add_day(l, ev->ts_ms, 0, k);
        if (!rc && ev->ts_ms < l->first_ms) l->first_ms = ev->ts_ms;
        return rc;
    }
    int rc = add_day(l, ev->ts_ms, number_at(ev, "data.amount"), k);
    if (!rc && k == K_ORDER && ev->ts_ms < l->first_ms) l->first_ms = ev->ts_ms;
    return rc;
}

int ledger_on_firing(ledger_t *l, const char *rule, int64_t ts_ms) {
    size_t n = strnlen(rule, LEDGER_MAX_RULE + 1);
    if (n > LEDGER_MAX_RULE) n = LEDGER_MAX_RULE;
    if (l->n_firings == LEDGER_MAX_FIRINGS && ts_ms < l->firings[0].ts_ms) return 0;
    char *name = malloc(n + 1);
    if (!name) return CHURN_ENOMEM;
    memcpy(name, rule, n);
    name[n] = '\0';
    if (l->n_firings == LEDGER_MAX_FIRINGS) {
        free(l->firings[0].rule);
        memmove(l->firings, l->firings + 1,
                (l->n_firings - 1) * sizeof(ledger_firing_t));
        l->n_firings--;
    } else if (grow((void **)&l->firings, &l->cap_firings, l->n_firings,
                    sizeof(ledger_firing_t))) {
        free(name);
        return CHURN_ENOMEM;
    }
    uint32_t i = l->n_firings;
    while (i > 0 && l->firings[i - 1].ts_ms > ts_ms) i--;
    memmove(l->firings + i + 1, l->firings + i,
            (l->n_firings - i) * sizeof(ledger_firing_t));
    l->firings[i] = (ledger_firing_t){.ts_ms = ts_ms, .rule = name};
    l->n_firings++;
    return 0;
}

/* ---- encoding ---- */

static int put_f64(buf_t *b, double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof(bits));
    return buf_put_u64be(b, bits);
}

static int get_f64(reader_t *r, double *x) {
    uint64_t bits;
    if (reader_u64be(r, &bits)) return CHURN_ECORRUPT;
    memcpy(x, &bits, sizeof(bits));
    return isfinite(*x) ? 0 : CHURN_ECORRUPT;
}

int ledger_encode(const ledger_t *l, buf_t *out) {
    int rc = buf_put_svarint(out, l->first_ms);
    if (!rc) rc = buf_put_varint(out, l->n_days);
    for (uint32_t i = 0; i < l->n_days && !rc; i++) {
        const ledger_day_t *d = &l->days[i];
        rc = buf_put_svarint(out, d->day);
        if (!rc) rc = put_f64(out, d->amount);
        if (!rc) rc = buf_put_varint(out, d->orders);
        if (!rc) rc = buf_put_varint(out, d->signs);
    }
    if (!rc) rc = buf_put_varint(out, l->n_contracts);
    for (uint32_t i = 0; i < l->n_contracts && !rc; i++) {
        const ledger_contract_t *c = &l->contracts[i];
        rc = buf_put_svarint(out, c->ts_ms);
        if (!rc) rc = put_f64(out, c->value);
        if (!rc) rc = buf_putc(out, c->kind);
        if (!rc) rc = buf_putc(out, c->reason);
    }
    if (!rc) rc = buf_put_varint(out, l->n_firings);
    for (uint32_t i = 0; i < l->n_firings && !rc; i++) {
        const ledger_firing_t *f = &l->firings[i];
        rc = buf_put_svarint(out, f->ts_ms);
        if (!rc) rc = buf_put_bytes(out, f->rule, strlen(f->rule));
    }
    return rc;
}

static int decode(reader_t *r, ledger_t *l) {
    uint64_t n;
    if (reader_svarint(r, &l->first_ms) || reader_varint(r, &n)) return CHURN_ECORRUPT;
    /* Each day takes at least 11 bytes; retention bounds the count. */
    if (n > LEDGER_RETAIN_DAYS + 1 || n > reader_left(r) / 11) return CHURN_ECORRUPT;
    if (n && !(l->days = calloc(n, sizeof(ledger_day_t)))) return CHURN_ENOMEM;
    l->cap_days = (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        ledger_day_t *d = &l->days[i];
        uint64_t orders, signs;
        if (reader_svarint(r, &d->day) || get_f64(r, &d->amount) ||
            reader_varint(r, &orders) || reader_varint(r, &signs) ||
            orders > UINT32_MAX || signs > UINT32_MAX ||
            (i && d->day <= l->days[i - 1].day))
            return CHURN_ECORRUPT;
        d->orders = (uint32_t)orders;
        d->signs = (uint32_t)signs;
        l->n_days++;
    }
    if (reader_varint(r, &n) || n > LEDGER_MAX_CONTRACTS || n > reader_left(r) / 11)
        return CHURN_ECORRUPT;
    if (n && !(l->contracts = calloc(n, sizeof(ledger_contract_t)))) return CHURN_ENOMEM;
    l->cap_contracts = (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        ledger_contract_t *c = &l->contracts[i];
        if (reader_svarint(r, &c->ts_ms) || get_f64(r, &c->value) ||
            reader_u8(r, &c->kind) || reader_u8(r, &c->reason) ||
            (c->kind != LEDGER_SIGNED && c->kind != LEDGER_CANCELLED) ||
            c->reason >= LEDGER_N_REASONS ||
            (i && c->ts_ms < l->contracts[i - 1].ts_ms))
            return CHURN_ECORRUPT;
        l->n_contracts++;
    }
    if (reader_varint(r, &n) || n > LEDGER_MAX_FIRINGS || n > reader_left(r) / 2)
        return CHURN_ECORRUPT;
    if (n && !(l->firings = calloc(n, sizeof(ledger_firing_t)))) return CHURN_ENOMEM;
    l->cap_firings = (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        ledger_firing_t *f = &l->firings[i];
        const uint8_t *p;
        size_t len;
        if (reader_svarint(r, &f->ts_ms) || reader_bytes(r, &p, &len) || !len ||
            len > LEDGER_MAX_RULE || memchr(p, '\0', len) ||
            (i && f->ts_ms < l->firings[i - 1].ts_ms))
            return CHURN_ECORRUPT;
        if (!(f->rule = malloc(len + 1))) return CHURN_ENOMEM;
        memcpy(f->rule, p, len);
        f->rule[len] = '\0';
        l->n_firings++;
    }
    return 0;
}

int ledger_decode(reader_t *r, ledger_t *l) {
    ledger_init(l);
    int rc = decode(r, l);
    if (rc) ledger_clear(l);
    return rc;
}

/* ---- inspection ---- */

static int put_time(buf_t *out, int64_t ts_ms) {
    char t[TIME_RFC3339_MAX];
    time_format_rfc3339(ts_ms, t, sizeof(t));
    return buf_printf(out, "\"%s\"", t);
}

int ledger_format_json(const ledger_t *l, buf_t *out) {
    int rc = buf_printf(out, "{\"first_activity\": ");
    if (!rc) rc = l->first_ms == INT64_MAX ? buf_printf(out, "null") : put_time(out, l->first_ms);
    double amount = 0;
    uint64_t orders = 0;
    int64_t last_order = INT64_MIN;
    for (uint32_t i = 0; i < l->n_days; i++) {
        amount += l->days[i].amount;
        orders += l->days[i].orders;
        if (l->days[i].orders) last_order = l->days[i].day;
    }
    if (!rc) rc = buf_printf(out, ", \"sales\": {\"days\": %u, \"orders\": %llu, \"amount\": %.2f, "
                             "\"last_order_day\": ",
                             l->n_days, (unsigned long long)orders, amount);
    if (!rc) {
        if (last_order == INT64_MIN) {
            rc = buf_printf(out, "null");
        } else {
            char t[TIME_RFC3339_MAX];
            time_format_rfc3339(last_order * LEDGER_DAY_MS, t, sizeof(t));
            rc = buf_printf(out, "\"%.10s\"", t);
        }
    }
    if (!rc) rc = buf_printf(out, "}, \"contracts\": [");
    for (uint32_t i = 0; i < l->n_contracts && !rc; i++) {
        const ledger_contract_t *c = &l->contracts[i];
        rc = buf_printf(out, "%s{\"event\": \"%s\", \"at\": ", i ? ", " : "",
                        c->kind == LEDGER_SIGNED ? "signed" : "cancelled");
        if (!rc) rc = put_time(out, c->ts_ms);
        if (!rc) rc = buf_printf(out, ", \"value\": %.2f", c->value);
        if (!rc && c->kind == LEDGER_CANCELLED)
            rc = buf_printf(out, ", \"reason\": \"%s\"",
                            ledger_reason_name((ledger_reason_t)c->reason));
        if (!rc) rc = buf_putc(out, '}');
    }
    if (!rc) rc = buf_printf(out, "], \"alerts_fired\": [");
    for (uint32_t i = 0; i < l->n_firings && !rc; i++) {
        const ledger_firing_t *f = &l->firings[i];
        rc = buf_printf(out, "%s{\"rule\": ", i ? ", " : "");
        if (!rc) rc = buf_put_json_str(out, f->rule, strlen(f->rule));
        if (!rc) rc = buf_printf(out, ", \"at\": ");
        if (!rc) rc = put_time(out, f->ts_ms);
        if (!rc) rc = buf_putc(out, '}');
    }
    if (!rc) rc = buf_printf(out, "]}");
    return rc;
}
