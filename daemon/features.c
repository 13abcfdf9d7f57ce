/*
 * features.c - the feature kinds: what each keeps per client, how an event
 * updates it, how it is encoded in the client's state record and what an
 * expression can ask of it.
 *
 *   streak  count of matching events in a row; a reset_on event sets it to
 *           0. An event type in both lists is rejected at load.
 *   last    event time of the last matching event, plus an optional value
 *           (value: data.field).
 *   latest  the latest value of a field among the on: events; an event
 *           where the field is missing, null or not a scalar leaves the
 *           previous value (a partial client.updated does not erase it).
 *
 *   series  a numeric field (or a constant: `series: 1` counts events)
 *           summed into time buckets of bucket_ms, keeping the buckets of
 *           the last retain_ms before the newest one (at most max_buckets,
 *           so a client's series never grows past retain / bucket). An
 *           event older than the retained window is not counted.
 *   expect  an after: event opens an expectation keyed by its match:
 *           field, due within a duration (possibly chosen per event by
 *           within: branches); an awaited (expect:) event with the same key
 *           closes it, open or overdue. At most max_open are kept; the
 *           oldest is dropped (and counted) to make room.
 *
 * Payloads (inside a cstate section, after the kind byte; see cstate.c):
 *   streak: varint count, svarint last_ms
 *   last/latest: svarint ts_ms, u8 value type, then per type: nothing
 *                (none), u8 (bool), u64be IEEE bits (number), bytes
 *                (string); then, only when history: keeps times, varint n
 *                and n svarint deltas (first from 0). A payload that ends
 *                after the value has no history (what builds before history:
 *                wrote), so old records decode unchanged.
 *   series: varint n, then n x { varint idx delta (the first: svarint
 *           idx), varint (count << 1 | is_float), then the sum as svarint
 *           (whole numbers) or u64be IEEE bits }
 *   expect: varint opened, varint dropped, varint n, then n x { bytes key,
 *           u8 expired, svarint opened_ms, svarint (deadline - opened) }
 *
 * Must not: do I/O, read a clock, allocate per event (a latest string is
 * copied into a buffer reused across updates).
 */
#include "churnd/features.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/timeutil.h"

void type_set_free(type_set_t *ts) {
    for (size_t i = 0; i < ts->n; i++) free(ts->v[i]);
    free(ts->v);
    ts->v = NULL;
    ts->n = 0;
}

int type_set_match(const type_set_t *ts, const char *type) {
    if (!type) return 0;
    for (size_t i = 0; i < ts->n; i++)
        if (expr_glob_match(ts->v[i], type)) return 1;
    return 0;
}

void feature_def_free(feature_def_t *d) {
    free(d->name);
    type_set_free(&d->on);
    type_set_free(&d->reset_on);
    expr_free(d->where);
    expr_free(d->expect_where);
    for (size_t i = 0; i < d->n_within; i++) expr_free(d->within[i].when);
    free(d->within);
    free(d->path);
    free(d->segs);
    free(d->seg_buf);
    memset(d, 0, sizeof(*d));
}

int feature_def_set_path(feature_def_t *d, const char *path) {
    size_t n = strlen(path);
    char *copy = strdup(path);
    char *buf = malloc(n + 1);
    size_t n_segs = 1;
    for (size_t i = 0; i < n; i++) n_segs += path[i] == '.';
    const char **segs = malloc(n_segs * sizeof(char *));
    if (!copy || !buf || !segs) {
        free(copy);
        free(buf);
        free(segs);
        return CHURN_ENOMEM;
    }
    memcpy(buf, path, n + 1);
    size_t k = 0;
    segs[k++] = buf;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '.') {
            buf[i] = '\0';
            segs[k++] = buf + i + 1;
        }
    free(d->path);
    free(d->segs);
    free(d->seg_buf);
    d->path = copy;
    d->seg_buf = buf;
    d->segs = segs;
    d->n_segs = k;
    return 0;
}

static int canon_types(const type_set_t *ts, const char *key, buf_t *out) {
    int rc = buf_printf(out, "|%s:", key);
    for (size_t i = 0; i < ts->n && !rc; i++)
        rc = buf_printf(out, "%s%s", i ? "," : "", ts->v[i]);
    return rc;
}

int feature_def_canon(const feature_def_t *d, buf_t *out) {
    int rc = buf_printf(out, "feature|%s|%s", d->name,
                        feature_kind_name(d->kind));
    if (!rc) rc = canon_types(&d->on, "on", out);
    if (!rc && d->reset_on.n) rc = canon_types(&d->reset_on, "reset_on", out);
    if (!rc && d->path) rc = buf_printf(out, "|path:%s", d->path);
    if (!rc && d->where) {
        rc = buf_printf(out, "|where:");
        if (!rc) rc = expr_canon(d->where, out);
    }
    if (!rc && d->kind == FEAT_SERIES)
        rc = buf_printf(out, "|bucket:%lld|retain:%lld|const:%d:%.17g",
                        (long long)d->bucket_ms, (long long)d->retain_ms,
                        d->has_const, d->has_const ? d->const_val : 0.0);
    if (!rc && d->kind == FEAT_EXPECT) {
        /* within:, max_open and expect_where: decide what is counted too. */
        if (d->expect_where) {
            rc = buf_printf(out, "|expect_where:");
            if (!rc) rc = expr_canon(d->expect_where, out);
        }
        for (size_t i = 0; i < d->n_within && !rc; i++) {
            rc = buf_printf(out, "|within:");
            if (!rc && d->within[i].when) rc = expr_canon(d->within[i].when, out);
            if (!rc) rc = buf_printf(out, "=%lld", (long long)d->within[i].within_ms);
        }
        if (!rc) rc = buf_printf(out, "|max_open:%u|once:%d", d->max_open, d->once);
    }
    if (!rc && d->kind == FEAT_LAST && d->history)
        rc = buf_printf(out, "|history:%u", d->history);
    return rc;
}

unsigned feature_type_match(const feature_def_t *d, const char *type) {
    return (type_set_match(&d->on, type) ? FEAT_MATCH_ON : 0u) |
           (type_set_match(&d->reset_on, type) ? FEAT_MATCH_RESET : 0u);
}

int feature_wants_type(const feature_def_t *d, const char *type) {
    return feature_type_match(d, type) != 0;
}

static int where_holds(const feature_def_t *d, const expr_ctx_t *cx) {
    return !d->where || expr_eval_bool(d->where, cx);
}

/* ---- streak ------------------------------------------------------------- */

static void streak_init(feat_state_t *s) {
    s->u.streak.count = 0;
    s->u.streak.last_ms = INT64_MIN;
}

static void nothing_to_clear(feat_state_t *s) { (void)s; }

static int streak_update(const feature_def_t *d, feat_state_t *s,
                         const event_t *ev, const expr_ctx_t *cx, unsigned match) {
    if (match & FEAT_MATCH_ON) {
        if (!where_holds(d, cx)) return 0;
        s->u.streak.count++;
        s->u.streak.last_ms = ev->ts_ms;
        return 1;
    }
    if (match & FEAT_MATCH_RESET) {
        if (s->u.streak.count == 0) return 0;
        s->u.streak.count = 0;
        return 1;
    }
    return 0;
}

static int streak_encode(const feat_state_t *s, buf_t *out) {
    int rc = buf_put_varint(out, s->u.streak.count);
    return rc ? rc : buf_put_svarint(out, s->u.streak.last_ms);
}

static int streak_decode(reader_t *r, feat_state_t *s) {
    int rc = reader_varint(r, &s->u.streak.count);
    return rc ? rc : reader_svarint(r, &s->u.streak.last_ms);
}

static void since(int64_t ts_ms, int64_t now_ms, expr_val_t *out) {
    out->type = EXPR_T_DUR;
    out->u.num = ts_ms == INT64_MIN ? INFINITY : (double)now_ms - (double)ts_ms;
}

/* Streaks and last/latest features: since() is now - ts, one
 * millisecond per millisecond (infinite, and fixed, when nothing
 * happened); everything else they answer (counts, seen(), values, the
 * median gap) is what the state holds, fixed. */
static void since_or_fixed(expr_fn_t fn, int64_t ts_ms, expr_trend_t *tr) {
    tr->slope = fn == EXPR_FN_SINCE && ts_ms != INT64_MIN ? 1 : 0;
    tr->until = INT64_MAX;
}

static void streak_trend(const feature_def_t *d, const feat_state_t *s,
                         expr_fn_t fn, const expr_val_t *args, size_t n_args,
                         int64_t now_ms, expr_trend_t *tr) {
    (void)d, (void)args, (void)n_args, (void)now_ms;
    since_or_fixed(fn, s->u.streak.last_ms, tr);
}

static void streak_query(const feature_def_t *d, const feat_state_t *s,
                         expr_fn_t fn, const expr_val_t *args, size_t n_args,
                         int64_t now_ms, expr_val_t *out) {
    (void)d;
    (void)args;
    (void)n_args;
    switch (fn) {
    case EXPR_FN_STREAK:
        out->type = EXPR_T_NUM;
        out->u.num = (double)s->u.streak.count;
        return;
    case EXPR_FN_SINCE: since(s->u.streak.last_ms, now_ms, out); return;
    case EXPR_FN_SEEN:
        out->type = EXPR_T_BOOL;
        out->u.b = s->u.streak.last_ms != INT64_MIN;
        return;
    default: out->type = EXPR_T_NULL; return;
    }
}

static int64_t no_wake(const feature_def_t *d, const feat_state_t *s) {
    (void)d;
    (void)s;
    return INT64_MAX;
}

/* ---- last and latest ---------------------------------------------------- */

static void last_init(feat_state_t *s) {
    s->u.last.ts_ms = INT64_MIN;
    memset(&s->u.last.v, 0, sizeof(s->u.last.v));
    s->u.last.v.type = EXPR_T_NULL;
}

static void last_init_all(feat_state_t *s) {
    last_init(s);
    s->u.last.hist = NULL;
    s->u.last.n_hist = s->u.last.cap_hist = 0;
}

static void last_clear(feat_state_t *s) {
    free(s->u.last.v.s);
    free(s->u.last.hist);
    last_init_all(s);
}

/* Remember t among the last d->history times (kept in time order; a late
 * event is inserted in place, and the oldest falls out). */
static int hist_add(const feature_def_t *d, feat_state_t *s, int64_t t) {
    uint32_t cap = d->history;
    if (!cap) return 0;
    if (s->u.last.cap_hist < cap) {
        int64_t *h = realloc(s->u.last.hist, cap * sizeof(int64_t));
        if (!h) return CHURN_ENOMEM;
        s->u.last.hist = h;
        s->u.last.cap_hist = cap;
    }
    int64_t *h = s->u.last.hist;
    uint32_t n = s->u.last.n_hist;
    if (n > cap) n = cap; /* a record from a definition with more history */
    uint32_t pos = n;
    while (pos > 0 && h[pos - 1] > t) pos--;
    if (n == cap) {
        if (pos == 0) return 0; /* older than everything kept */
        memmove(h, h + 1, (pos - 1) * sizeof(int64_t));
        h[pos - 1] = t;
    } else {
        memmove(h + pos + 1, h + pos, (n - pos) * sizeof(int64_t));
        h[pos] = t;
        n++;
    }
    s->u.last.n_hist = n;
    return 0;
}

static int value_set_str(feat_value_t *v, const char *p, size_t n) {
    if (n > FEAT_VALUE_MAX_STR) n = FEAT_VALUE_MAX_STR; /* documented: truncated */
    if (n + 1 > v->cap) {
        char *q = realloc(v->s, n + 1);
        if (!q) return CHURN_ENOMEM;
        v->s = q;
        v->cap = (uint32_t)(n + 1);
    }
    memcpy(v->s, p, n);
    v->s[n] = '\0';
    v->len = (uint32_t)n;
    v->type = EXPR_T_STR;
    return 0;
}

/* Store a JSON scalar; returns 1 if stored, 0 if not a scalar, or ENOMEM. */
static int value_set_json(feat_value_t *v, const cJSON *j) {
    if (!j) return 0;
    if (cJSON_IsNumber(j) && isfinite(j->valuedouble)) {
        v->type = EXPR_T_NUM;
        v->num = j->valuedouble;
        return 1;
    }
    if (cJSON_IsBool(j)) {
        v->type = EXPR_T_BOOL;
        v->num = cJSON_IsTrue(j);
        return 1;
    }
    if (cJSON_IsString(j) && j->valuestring) {
        int rc = value_set_str(v, j->valuestring, strlen(j->valuestring));
        return rc ? rc : 1;
    }
    return 0;
}

static int last_update(const feature_def_t *d, feat_state_t *s,
                       const event_t *ev, const expr_ctx_t *cx, unsigned match) {
    if (!(match & FEAT_MATCH_ON) || !where_holds(d, cx)) return 0;
    if (d->kind == FEAT_LATEST) {
        const cJSON *j = ev->root ? event_path_segs(ev->root, d->segs, d->n_segs)
                                  : NULL;
        int rc = value_set_json(&s->u.last.v, j);
        if (rc <= 0) return rc;
        s->u.last.ts_ms = ev->ts_ms;
        return 1;
    }
    /* last: the time always, the value when the event carries one. */
    if (hist_add(d, s, ev->ts_ms)) return CHURN_ENOMEM;
    if (ev->ts_ms < s->u.last.ts_ms) return 1; /* late: history only */
    s->u.last.ts_ms = ev->ts_ms;
    if (d->n_segs && ev->root) {
        int rc = value_set_json(&s->u.last.v,
                                event_path_segs(ev->root, d->segs, d->n_segs));
        if (rc < 0) return rc;
    }
    return 1;
}

static int last_encode(const feat_state_t *s, buf_t *out) {
    const feat_value_t *v = &s->u.last.v;
    int rc = buf_put_svarint(out, s->u.last.ts_ms);
    if (!rc) rc = buf_putc(out, v->type);
    if (rc) return rc;
    switch (v->type) {
    case EXPR_T_BOOL: return buf_putc(out, v->num != 0);
    case EXPR_T_NUM: {
        uint64_t bits;
        memcpy(&bits, &v->num, sizeof(bits));
        return buf_put_u64be(out, bits);
    }
    case EXPR_T_STR: rc = buf_put_bytes(out, v->s, v->len); break;
    }
    if (!rc && s->u.last.n_hist) {
        rc = buf_put_varint(out, s->u.last.n_hist);
        int64_t prev = 0;
        for (uint32_t i = 0; i < s->u.last.n_hist && !rc; i++) {
            rc = buf_put_svarint(out, s->u.last.hist[i] - prev);
            prev = s->u.last.hist[i];
        }
    }
    return rc;
}

static int hist_decode(reader_t *r, feat_state_t *s) {
    if (reader_left(r) == 0) return 0; /* no history (or an older record) */
    uint64_t n;
    int rc = reader_varint(r, &n);
    if (rc) return rc;
    if (n == 0 || n > LAST_MAX_HISTORY) return CHURN_ECORRUPT;
    s->u.last.hist = malloc(n * sizeof(int64_t));
    if (!s->u.last.hist) return CHURN_ENOMEM;
    s->u.last.cap_hist = (uint32_t)n;
    int64_t prev = 0;
    for (uint64_t i = 0; i < n; i++) {
        int64_t d;
        if ((rc = reader_svarint(r, &d))) return rc;
        if (i > 0 && d < 0) return CHURN_ECORRUPT;
        if ((d > 0 && prev > INT64_MAX - d) || (d < 0 && prev < INT64_MIN - d))
            return CHURN_ECORRUPT;
        prev += d;
        s->u.last.hist[i] = prev;
        s->u.last.n_hist = (uint32_t)i + 1;
    }
    return 0;
}

static int last_decode(reader_t *r, feat_state_t *s) {
    uint8_t t;
    int rc = reader_svarint(r, &s->u.last.ts_ms);
    if (!rc) rc = reader_u8(r, &t);
    if (rc) return rc;
    feat_value_t *v = &s->u.last.v;
    switch (t) {
    case EXPR_T_NULL: v->type = EXPR_T_NULL; return hist_decode(r, s);
    case EXPR_T_BOOL: {
        uint8_t b;
        if ((rc = reader_u8(r, &b))) return rc;
        if (b > 1) return CHURN_ECORRUPT;
        v->type = EXPR_T_BOOL;
        v->num = b;
        return hist_decode(r, s);
    }
    case EXPR_T_NUM: {
        uint64_t bits;
        if ((rc = reader_u64be(r, &bits))) return rc;
        memcpy(&v->num, &bits, sizeof(bits));
        if (!isfinite(v->num)) return CHURN_ECORRUPT;
        v->type = EXPR_T_NUM;
        return hist_decode(r, s);
    }
    case EXPR_T_STR: {
        const uint8_t *p;
        size_t n;
        if ((rc = reader_bytes(r, &p, &n))) return rc;
        if (n > FEAT_VALUE_MAX_STR) return CHURN_ECORRUPT;
        if ((rc = value_set_str(v, (const char *)p, n))) return rc;
        return hist_decode(r, s);
    }
    }
    return CHURN_ECORRUPT;
}

/* Insertion sort: at most LAST_MAX_HISTORY - 1 values, usually a
 * handful, and called at every evaluation of median_gap (each `every`
 * tick replay looks ahead at), where qsort's setup cost more than the
 * sorting. */
static void sort_i64(int64_t *v, uint32_t n) {
    for (uint32_t i = 1; i < n; i++) {
        int64_t x = v[i];
        uint32_t j = i;
        for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Median of the gaps between the kept times; null with fewer than 3
 * times (2 gaps). At most LAST_MAX_HISTORY - 1 gaps: a stack array. */
static void median_gap(const feat_state_t *s, expr_val_t *out) {
    uint32_t n = s->u.last.n_hist;
    out->type = EXPR_T_NULL;
    if (n < 3 || n > LAST_MAX_HISTORY) return;
    int64_t gaps[LAST_MAX_HISTORY];
    for (uint32_t i = 1; i < n; i++) gaps[i - 1] = s->u.last.hist[i] - s->u.last.hist[i - 1];
    uint32_t g = n - 1;
    sort_i64(gaps, g);
    out->type = EXPR_T_DUR;
    out->u.num = g % 2 ? (double)gaps[g / 2]
                       : ((double)gaps[g / 2 - 1] + (double)gaps[g / 2]) / 2;
}

static void last_query(const feature_def_t *d, const feat_state_t *s,
                       expr_fn_t fn, const expr_val_t *args, size_t n_args,
                       int64_t now_ms, expr_val_t *out) {
    (void)d;
    (void)args;
    (void)n_args;
    const feat_value_t *v = &s->u.last.v;
    switch (fn) {
    case EXPR_FN_MEDIAN_GAP: median_gap(s, out); return;
    case EXPR_FN_COUNT:
        out->type = EXPR_T_NUM;
        out->u.num = s->u.last.n_hist;
        return;
    case EXPR_FN_SINCE: since(s->u.last.ts_ms, now_ms, out); return;
    case EXPR_FN_SEEN:
        out->type = EXPR_T_BOOL;
        out->u.b = s->u.last.ts_ms != INT64_MIN;
        return;
    case EXPR_FN_VALUE:
        out->type = v->type;
        if (v->type == EXPR_T_STR) {
            out->u.s.p = v->s;
            out->u.s.len = v->len;
        } else if (v->type == EXPR_T_BOOL) {
            out->u.b = v->num != 0;
        } else {
            out->u.num = v->num;
        }
        return;
    default: out->type = EXPR_T_NULL; return;
    }
}

static void last_trend(const feature_def_t *d, const feat_state_t *s,
                       expr_fn_t fn, const expr_val_t *args, size_t n_args,
                       int64_t now_ms, expr_trend_t *tr) {
    (void)d, (void)args, (void)n_args, (void)now_ms;
    since_or_fixed(fn, s->u.last.ts_ms, tr);
}

/* ---- describe ----------------------------------------------------------- */

static int put_time_or_null(buf_t *out, int64_t ts_ms) {
    if (ts_ms == INT64_MIN) return buf_printf(out, "null");
    char t[TIME_RFC3339_MAX];
    size_t n = time_format_rfc3339(ts_ms, t, sizeof(t));
    return buf_put_json_str(out, t, n);
}

static int streak_describe(const feature_def_t *d, const feat_state_t *s,
                           buf_t *out) {
    (void)d;
    int rc = buf_printf(out, "{\"count\": %llu, \"last\": ",
                        (unsigned long long)s->u.streak.count);
    if (!rc) rc = put_time_or_null(out, s->u.streak.last_ms);
    return rc ? rc : buf_putc(out, '}');
}

static int last_describe(const feature_def_t *d, const feat_state_t *s,
                         buf_t *out) {
    (void)d;
    const feat_value_t *v = &s->u.last.v;
    int rc = buf_printf(out, "{\"at\": ");
    if (!rc) rc = put_time_or_null(out, s->u.last.ts_ms);
    if (!rc) rc = buf_printf(out, ", \"value\": ");
    if (rc) return rc;
    expr_val_t x;
    x.type = v->type;
    if (v->type == EXPR_T_STR) {
        x.u.s.p = v->s;
        x.u.s.len = v->len;
    } else if (v->type == EXPR_T_BOOL) {
        x.u.b = v->num != 0;
    } else {
        x.u.num = v->num;
    }
    rc = expr_val_json(&x, out);
    if (!rc && s->u.last.n_hist) {
        rc = buf_printf(out, ", \"history\": [");
        for (uint32_t i = 0; i < s->u.last.n_hist && !rc; i++) {
            if (i) rc = buf_printf(out, ", ");
            if (!rc) rc = put_time_or_null(out, s->u.last.hist[i]);
        }
        if (!rc) rc = buf_putc(out, ']');
    }
    return rc ? rc : buf_putc(out, '}');
}

/* ---- series ------------------------------------------------------------- */

static void series_init(feat_state_t *s) {
    s->u.series.b = NULL;
    s->u.series.n = s->u.series.cap = 0;
}

static void series_clear(feat_state_t *s) {
    free(s->u.series.b);
    series_init(s);
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Drop the buckets that fell out of the window ending at bucket newest. */
static void series_trim(const feature_def_t *d, feat_state_t *s) {
    uint32_t n = s->u.series.n;
    if (!n) return;
    series_bucket_t *b = s->u.series.b;
    int64_t newest = b[n - 1].idx;
    uint32_t k = 0;
    while (k < n && newest - b[k].idx >= (int64_t)d->max_buckets) k++;
    if (k) {
        memmove(b, b + k, (n - k) * sizeof(*b));
        s->u.series.n = n - k;
    }
}

static int series_update(const feature_def_t *d, feat_state_t *s,
                         const event_t *ev, const expr_ctx_t *cx, unsigned match) {
    if (!(match & FEAT_MATCH_ON) || !where_holds(d, cx)) return 0;
    double x;
    if (d->has_const) {
        x = d->const_val;
    } else {
        const cJSON *j = ev->root ? event_path_segs(ev->root, d->segs, d->n_segs) : NULL;
        if (!j || !cJSON_IsNumber(j) || !isfinite(j->valuedouble)) return 0;
        x = j->valuedouble;
    }
    int64_t idx = floor_div(ev->ts_ms, d->bucket_ms);
    series_bucket_t *b = s->u.series.b;
    uint32_t n = s->u.series.n;
    if (n && b[n - 1].idx - idx >= (int64_t)d->max_buckets) return 0; /* too old */
    uint32_t pos = n;
    while (pos > 0 && b[pos - 1].idx > idx) pos--;
    if (pos > 0 && b[pos - 1].idx == idx) {
        b[pos - 1].sum += x;
        if (b[pos - 1].count < UINT32_MAX) b[pos - 1].count++;
        return 1;
    }
    /* A new bucket: room for max_buckets + 1 (trimmed right after). */
    if (n == s->u.series.cap) {
        uint32_t cap = s->u.series.cap ? s->u.series.cap * 2 : 4;
        if (cap > d->max_buckets + 1) cap = d->max_buckets + 1;
        if (cap <= n) cap = n + 1;
        series_bucket_t *nb = realloc(b, cap * sizeof(*nb));
        if (!nb) return CHURN_ENOMEM;
        s->u.series.b = b = nb;
        s->u.series.cap = cap;
    }
    memmove(b + pos + 1, b + pos, (n - pos) * sizeof(*b));
    b[pos].idx = idx;
    b[pos].sum = x;
    b[pos].count = 1;
    s->u.series.n = n + 1;
    series_trim(d, s);
    return 1;
}

static int series_encode(const feat_state_t *s, buf_t *out) {
    const series_bucket_t *b = s->u.series.b;
    int rc = buf_put_varint(out, s->u.series.n);
    for (uint32_t i = 0; i < s->u.series.n && !rc; i++) {
        rc = i ? buf_put_varint(out, (uint64_t)(b[i].idx - b[i - 1].idx))
               : buf_put_svarint(out, b[i].idx);
        double x = b[i].sum;
        int is_float = !(x == trunc(x) && fabs(x) < 9e15);
        if (!rc) rc = buf_put_varint(out, (uint64_t)b[i].count << 1 | (uint64_t)is_float);
        if (!rc && is_float) {
            uint64_t bits;
            memcpy(&bits, &x, sizeof(bits));
            rc = buf_put_u64be(out, bits);
        } else if (!rc) {
            rc = buf_put_svarint(out, (int64_t)x);
        }
    }
    return rc;
}

static int series_decode(reader_t *r, feat_state_t *s) {
    uint64_t n;
    int rc = reader_varint(r, &n);
    if (rc) return rc;
    /* Each bucket takes at least 3 bytes. */
    if (n > SERIES_MAX_BUCKETS + 1 || n > reader_left(r) / 3) return CHURN_ECORRUPT;
    if (!n) return 0;
    s->u.series.b = malloc(n * sizeof(series_bucket_t));
    if (!s->u.series.b) return CHURN_ENOMEM;
    s->u.series.cap = (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        series_bucket_t *b = &s->u.series.b[i];
        uint64_t delta, cf;
        if (i == 0) {
            rc = reader_svarint(r, &b->idx);
        } else {
            rc = reader_varint(r, &delta);
            if (!rc && (delta == 0 || delta > (uint64_t)INT64_MAX ||
                        b[-1].idx > INT64_MAX - (int64_t)delta))
                rc = CHURN_ECORRUPT;
            if (!rc) b->idx = b[-1].idx + (int64_t)delta;
        }
        if (!rc) rc = reader_varint(r, &cf);
        if (rc) return rc;
        if ((cf >> 1) == 0 || (cf >> 1) > UINT32_MAX) return CHURN_ECORRUPT;
        b->count = (uint32_t)(cf >> 1);
        if (cf & 1) {
            uint64_t bits;
            if ((rc = reader_u64be(r, &bits))) return rc;
            memcpy(&b->sum, &bits, sizeof(bits));
            if (!isfinite(b->sum)) return CHURN_ECORRUPT;
        } else {
            int64_t v;
            if ((rc = reader_svarint(r, &v))) return rc;
            b->sum = (double)v;
        }
        s->u.series.n = (uint32_t)i + 1;
    }
    return 0;
}

/* A query's window: offset and range (ms) from its arguments, and the
 * bucket indexes (blo, bhi] it covers at now_ms. 0 when the arguments
 * are not two durations in bounds (the answer is null). */
typedef struct series_win {
    int64_t off, range, blo, bhi;
} series_win_t;

static int series_window(const feature_def_t *d, const expr_val_t *args,
                         size_t n_args, int64_t now_ms, series_win_t *w) {
    if (n_args < 1 || args[0].type != EXPR_T_DUR) return 0;
    double range = args[0].u.num, off = 0;
    if (n_args > 1) {
        if (args[1].type != EXPR_T_DUR) return 0;
        off = args[1].u.num;
    }
    if (!(range > 0) || !(off >= 0) || range > 4e14 || off > 4e14) return 0;
    w->off = (int64_t)off;
    w->range = (int64_t)range;
    int64_t hi = now_ms - w->off, lo = hi - w->range;
    w->bhi = floor_div(hi, d->bucket_ms);
    w->blo = floor_div(lo, d->bucket_ms);
    return 1;
}

/* The first bucket whose index is above idx (n when none): buckets are
 * kept in ascending index order, up to SERIES_MAX_BUCKETS of them. */
static uint32_t series_first_after(const feat_state_t *s, int64_t idx) {
    uint32_t lo = 0, hi = s->u.series.n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->u.series.b[mid].idx <= idx) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Buckets whose index lies in (floor(lo / bucket), floor(hi / bucket)],
 * lo = now - offset - range, hi = now - offset: the range rounded to
 * whole buckets. Empty buckets count as 0 for min and max. */
static void series_query(const feature_def_t *d, const feat_state_t *s,
                         expr_fn_t fn, const expr_val_t *args, size_t n_args,
                         int64_t now_ms, expr_val_t *out) {
    out->type = EXPR_T_NULL;
    if (fn == EXPR_FN_SEEN) {
        out->type = EXPR_T_BOOL;
        out->u.b = s->u.series.n > 0;
        return;
    }
    series_win_t w;
    if (!series_window(d, args, n_args, now_ms, &w)) return;
    int64_t bhi = w.bhi, blo = w.blo;
    double sum = 0, mn = INFINITY, mx = -INFINITY;
    uint64_t cnt = 0, nb = 0;
    for (uint32_t i = series_first_after(s, blo); i < s->u.series.n; i++) {
        const series_bucket_t *b = &s->u.series.b[i];
        if (b->idx > bhi) break;
        sum += b->sum;
        cnt += b->count;
        nb++;
        if (b->sum < mn) mn = b->sum;
        if (b->sum > mx) mx = b->sum;
    }
    if ((uint64_t)(bhi - blo) > nb) { /* some buckets of the range are empty */
        if (mn > 0) mn = 0;
        if (mx < 0) mx = 0;
    }
    out->type = EXPR_T_NUM;
    switch (fn) {
    case EXPR_FN_SUM: out->u.num = sum; return;
    case EXPR_FN_COUNT: out->u.num = (double)cnt; return;
    case EXPR_FN_AVG:
        if (!cnt) out->type = EXPR_T_NULL;
        else out->u.num = sum / (double)cnt;
        return;
    case EXPR_FN_MIN: out->u.num = mn; return;
    case EXPR_FN_MAX: out->u.num = mx; return;
    default: out->type = EXPR_T_NULL; return;
    }
}

/* The first time after now_ms at which bucket j enters the window
 * (bhi reaches j: now - off >= j * bucket), or leaves it (blo reaches j:
 * now - off - range >= j * bucket). Saturating: far bounds are far. */
static int64_t series_edge_time(const feature_def_t *d, const series_win_t *w,
                                int64_t j, int leaves) {
    double t = (double)j * (double)d->bucket_ms + (double)w->off +
               (leaves ? (double)w->range : 0);
    if (!(t < 9e18)) return INT64_MAX;
    return (int64_t)j * d->bucket_ms + w->off + (leaves ? w->range : 0);
}

/* The window moves with now; the answer changes only as buckets enter or
 * leave it. sum, count and avg read only the buckets that exist, so the
 * answer holds until the next existing one enters or the oldest one in
 * the window leaves; min and max also see the empty ones, so they hold
 * until either edge next moves. */
static void series_trend(const feature_def_t *d, const feat_state_t *s,
                         expr_fn_t fn, const expr_val_t *args, size_t n_args,
                         int64_t now_ms, expr_trend_t *tr) {
    tr->slope = 0;
    tr->until = INT64_MAX;
    series_win_t w;
    if (fn == EXPR_FN_SEEN || !series_window(d, args, n_args, now_ms, &w)) return;
    if (fn == EXPR_FN_MIN || fn == EXPR_FN_MAX) {
        int64_t a = series_edge_time(d, &w, w.bhi + 1, 0);
        int64_t b = series_edge_time(d, &w, w.blo + 1, 1);
        tr->until = a < b ? a : b;
        return;
    }
    /* Buckets are kept oldest first: the first one past blo leaves first
     * (if it is in the window), the first one past bhi enters first. */
    const series_bucket_t *b = s->u.series.b;
    uint32_t i = series_first_after(s, w.blo), n = s->u.series.n;
    if (i < n && b[i].idx <= w.bhi) {
        tr->until = series_edge_time(d, &w, b[i].idx, 1);
        i = series_first_after(s, w.bhi);
    }
    if (i < n) {
        int64_t t = series_edge_time(d, &w, b[i].idx, 0);
        if (t < tr->until) tr->until = t;
    }
}

static int series_describe(const feature_def_t *d, const feat_state_t *s,
                           buf_t *out) {
    double sum = 0;
    uint64_t cnt = 0;
    for (uint32_t i = 0; i < s->u.series.n; i++) {
        sum += s->u.series.b[i].sum;
        cnt += s->u.series.b[i].count;
    }
    expr_val_t v = {.type = EXPR_T_NUM, .u.num = sum};
    int rc = buf_printf(out, "{\"buckets\": %u, \"events\": %llu, \"sum\": ",
                        s->u.series.n, (unsigned long long)cnt);
    if (!rc) rc = expr_val_json(&v, out);
    if (!rc) rc = buf_printf(out, ", \"newest_bucket\": ");
    if (!rc) rc = put_time_or_null(out, s->u.series.n
                                   ? s->u.series.b[s->u.series.n - 1].idx * d->bucket_ms
                                   : INT64_MIN);
    return rc ? rc : buf_putc(out, '}');
}

/* ---- expect ------------------------------------------------------------- */

static void expect_init(feat_state_t *s) {
    memset(&s->u.expect, 0, sizeof(s->u.expect));
}

static void expect_clear(feat_state_t *s) {
    for (uint32_t i = 0; i < s->u.expect.n; i++) free(s->u.expect.v[i].key);
    free(s->u.expect.v);
    expect_init(s);
}

int feature_event_key(const feature_def_t *d, const event_t *ev, char *buf,
                      size_t cap, size_t *len) {
    *len = 0;
    if (!d->n_segs) return 1;
    const cJSON *j = ev->root ? event_path_segs(ev->root, d->segs, d->n_segs) : NULL;
    if (!j) return 0;
    size_t n;
    if (cJSON_IsString(j) && j->valuestring) {
        n = strlen(j->valuestring);
        if (n >= cap) n = cap - 1;
        memcpy(buf, j->valuestring, n);
    } else if (cJSON_IsNumber(j) && isfinite(j->valuedouble)) {
        n = expr_num_format(j->valuedouble, buf, cap);
    } else {
        return 0; /* null, bool, object, array: no key */
    }
    buf[n] = '\0';
    *len = n;
    return 1;
}

int feature_is_awaited(const feature_def_t *d, const expr_ctx_t *cx,
                       unsigned match) {
    return d->kind == FEAT_EXPECT && (match & FEAT_MATCH_RESET) &&
           (!d->expect_where || expr_eval_bool(d->expect_where, cx));
}

static void expect_remove(feat_state_t *s, uint32_t i) {
    free(s->u.expect.v[i].key);
    memmove(s->u.expect.v + i, s->u.expect.v + i + 1,
            (s->u.expect.n - i - 1) * sizeof(expectation_t));
    s->u.expect.n--;
}

static int expect_update(const feature_def_t *d, feat_state_t *s,
                         const event_t *ev, const expr_ctx_t *cx, unsigned match) {
    char key[EXPECT_MAX_KEY + 1];
    size_t klen;
    int changed = 0;
    if (feature_is_awaited(d, cx, match)) {
        if (!feature_event_key(d, ev, key, sizeof(key), &klen)) return 0;
        /* Close every expectation with this key, open or overdue. */
        for (uint32_t i = 0; i < s->u.expect.n;) {
            expectation_t *x = &s->u.expect.v[i];
            if (x->key_len == klen && memcmp(x->key, key, klen) == 0) {
                expect_remove(s, i);
                changed = 1;
            } else {
                i++;
            }
        }
        return changed;
    }
    if (!(match & FEAT_MATCH_ON) || !where_holds(d, cx)) return 0;
    if (d->once && s->u.expect.opened) return 0;
    if (!feature_event_key(d, ev, key, sizeof(key), &klen)) return 0;
    for (uint32_t i = 0; i < s->u.expect.n; i++) {
        const expectation_t *x = &s->u.expect.v[i];
        if (x->key_len == klen && memcmp(x->key, key, klen) == 0)
            return 0; /* already awaited: the first deadline stands */
    }
    int64_t within = d->n_within ? d->within[d->n_within - 1].within_ms : 0;
    for (size_t i = 0; i < d->n_within; i++)
        if (!d->within[i].when || expr_eval_bool(d->within[i].when, cx)) {
            within = d->within[i].within_ms;
            break;
        }
    char *k = malloc(klen + 1);
    if (!k) return CHURN_ENOMEM;
    memcpy(k, key, klen + 1);
    if (s->u.expect.n >= d->max_open) {
        expect_remove(s, 0); /* the oldest */
        s->u.expect.dropped++;
    }
    if (s->u.expect.n == s->u.expect.cap) {
        uint32_t cap = s->u.expect.cap ? s->u.expect.cap * 2 : 4;
        if (cap > d->max_open) cap = d->max_open;
        if (cap <= s->u.expect.n) cap = s->u.expect.n + 1;
        expectation_t *v = realloc(s->u.expect.v, cap * sizeof(*v));
        if (!v) {
            free(k);
            return CHURN_ENOMEM;
        }
        s->u.expect.v = v;
        s->u.expect.cap = cap;
    }
    expectation_t *x = &s->u.expect.v[s->u.expect.n++];
    x->key = k;
    x->key_len = (uint32_t)klen;
    x->expired = 0;
    x->opened_ms = ev->ts_ms;
    x->deadline_ms = ev->ts_ms > INT64_MAX - within ? INT64_MAX : ev->ts_ms + within;
    s->u.expect.opened++;
    return 1;
}

static int expect_encode(const feat_state_t *s, buf_t *out) {
    int rc = buf_put_varint(out, s->u.expect.opened);
    if (!rc) rc = buf_put_varint(out, s->u.expect.dropped);
    if (!rc) rc = buf_put_varint(out, s->u.expect.n);
    for (uint32_t i = 0; i < s->u.expect.n && !rc; i++) {
        const expectation_t *x = &s->u.expect.v[i];
        rc = buf_put_bytes(out, x->key, x->key_len);
        if (!rc) rc = buf_putc(out, x->expired);
        if (!rc) rc = buf_put_svarint(out, x->opened_ms);
        if (!rc) rc = buf_put_svarint(out, x->deadline_ms - x->opened_ms);
    }
    return rc;
}

static int expect_decode(reader_t *r, feat_state_t *s) {
    uint64_t n;
    int rc = reader_varint(r, &s->u.expect.opened);
    if (!rc) rc = reader_varint(r, &s->u.expect.dropped);
    if (!rc) rc = reader_varint(r, &n);
    if (rc) return rc;
    /* Each expectation takes at least 4 bytes. */
    if (n > EXPECT_MAX_OPEN || n > reader_left(r) / 4) return CHURN_ECORRUPT;
    if (!n) return 0;
    s->u.expect.v = calloc(n, sizeof(expectation_t));
    if (!s->u.expect.v) return CHURN_ENOMEM;
    s->u.expect.cap = (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        expectation_t *x = &s->u.expect.v[i];
        const uint8_t *p;
        size_t kl;
        int64_t within;
        if ((rc = reader_bytes(r, &p, &kl))) return rc;
        if (kl > EXPECT_MAX_KEY) return CHURN_ECORRUPT;
        if (!(x->key = malloc(kl + 1))) return CHURN_ENOMEM;
        s->u.expect.n = (uint32_t)i + 1; /* owned from here: freed on error */
        memcpy(x->key, p, kl);
        x->key[kl] = '\0';
        x->key_len = (uint32_t)kl;
        if ((rc = reader_u8(r, &x->expired))) return rc;
        if (x->expired > 1) return CHURN_ECORRUPT;
        if ((rc = reader_svarint(r, &x->opened_ms))) return rc;
        if ((rc = reader_svarint(r, &within))) return rc;
        if (within < 0 || x->opened_ms > INT64_MAX - within) return CHURN_ECORRUPT;
        x->deadline_ms = x->opened_ms + within;
    }
    return 0;
}

static void expect_query(const feature_def_t *d, const feat_state_t *s,
                         expr_fn_t fn, const expr_val_t *args, size_t n_args,
                         int64_t now_ms, expr_val_t *out) {
    (void)d;
    (void)args;
    (void)n_args;
    uint32_t open = 0, overdue = 0;
    for (uint32_t i = 0; i < s->u.expect.n; i++) {
        if (s->u.expect.v[i].deadline_ms <= now_ms) overdue++;
        else open++;
    }
    switch (fn) {
    case EXPR_FN_OPEN: out->type = EXPR_T_NUM; out->u.num = open; return;
    case EXPR_FN_OVERDUE: out->type = EXPR_T_NUM; out->u.num = overdue; return;
    case EXPR_FN_SEEN:
        out->type = EXPR_T_BOOL;
        out->u.b = s->u.expect.opened > 0;
        return;
    default: out->type = EXPR_T_NULL; return;
    }
}

/* open() and overdue() move as deadlines pass. */
static void expect_trend(const feature_def_t *d, const feat_state_t *s,
                         expr_fn_t fn, const expr_val_t *args, size_t n_args,
                         int64_t now_ms, expr_trend_t *tr) {
    (void)d, (void)args, (void)n_args;
    tr->slope = 0;
    tr->until = INT64_MAX;
    if (fn != EXPR_FN_OPEN && fn != EXPR_FN_OVERDUE) return;
    for (uint32_t i = 0; i < s->u.expect.n; i++) {
        int64_t t = s->u.expect.v[i].deadline_ms;
        if (t > now_ms && t < tr->until) tr->until = t;
    }
}

static int64_t expect_next_wake(const feature_def_t *d, const feat_state_t *s) {
    (void)d;
    int64_t next = INT64_MAX;
    for (uint32_t i = 0; i < s->u.expect.n; i++)
        if (!s->u.expect.v[i].expired && s->u.expect.v[i].deadline_ms < next)
            next = s->u.expect.v[i].deadline_ms;
    return next;
}

static int expect_describe(const feature_def_t *d, const feat_state_t *s,
                           buf_t *out) {
    (void)d;
    int rc = buf_printf(out, "{\"opened\": %llu, \"dropped\": %llu, \"awaiting\": [",
                        (unsigned long long)s->u.expect.opened,
                        (unsigned long long)s->u.expect.dropped);
    for (uint32_t i = 0; i < s->u.expect.n && !rc; i++) {
        const expectation_t *x = &s->u.expect.v[i];
        rc = buf_printf(out, "%s{\"key\": ", i ? ", " : "");
        if (!rc) rc = buf_put_json_str(out, x->key, x->key_len);
        if (!rc) rc = buf_printf(out, ", \"opened_at\": ");
        if (!rc) rc = put_time_or_null(out, x->opened_ms);
        if (!rc) rc = buf_printf(out, ", \"deadline\": ");
        if (!rc) rc = put_time_or_null(out, x->deadline_ms);
        if (!rc) rc = buf_printf(out, ", \"expired\": %s}", x->expired ? "true" : "false");
    }
    return rc ? rc : buf_printf(out, "]}");
}

/* ---- The table ---------------------------------------------------------- */

static const feature_ops_t series_ops = {
    FEAT_SERIES, series_init, series_clear, series_update,
    series_encode, series_decode, series_query, series_trend, no_wake,
    series_describe,
};

static const feature_ops_t expect_ops = {
    FEAT_EXPECT, expect_init, expect_clear, expect_update,
    expect_encode, expect_decode, expect_query, expect_trend, expect_next_wake,
    expect_describe,
};

static const feature_ops_t streak_ops = {
    FEAT_STREAK, streak_init, nothing_to_clear, streak_update,
    streak_encode, streak_decode, streak_query, streak_trend, no_wake,
    streak_describe,
};

static const feature_ops_t last_ops = {
    FEAT_LAST, last_init_all, last_clear, last_update,
    last_encode, last_decode, last_query, last_trend, no_wake, last_describe,
};

static const feature_ops_t latest_ops = {
    FEAT_LATEST, last_init_all, last_clear, last_update,
    last_encode, last_decode, last_query, last_trend, no_wake, last_describe,
};

const feature_ops_t *feature_ops(feature_kind_t kind) {
    switch (kind) {
    case FEAT_STREAK: return &streak_ops;
    case FEAT_LAST: return &last_ops;
    case FEAT_LATEST: return &latest_ops;
    case FEAT_SERIES: return &series_ops;
    case FEAT_EXPECT: return &expect_ops;
    }
    return NULL;
}

void feat_state_init(feat_state_t *s, feature_kind_t kind) {
    memset(s, 0, sizeof(*s));
    s->kind = (uint8_t)kind;
    const feature_ops_t *ops = feature_ops(kind);
    if (ops) ops->init(s);
}

void feat_state_clear(feat_state_t *s) {
    const feature_ops_t *ops = feature_ops((feature_kind_t)s->kind);
    if (ops) ops->clear(s);
}

size_t feat_state_heap_bytes(const feat_state_t *s) {
    size_t n = 0;
    switch ((feature_kind_t)s->kind) {
    case FEAT_SERIES:
        n = churn_heap_cost((size_t)s->u.series.cap * sizeof(series_bucket_t));
        break;
    case FEAT_EXPECT:
        n = churn_heap_cost((size_t)s->u.expect.cap * sizeof(expectation_t));
        for (uint32_t i = 0; i < s->u.expect.n; i++)
            n += churn_heap_cost((size_t)s->u.expect.v[i].key_len + 1);
        break;
    case FEAT_LAST:
    case FEAT_LATEST:
        n = churn_heap_cost(s->u.last.v.cap) +
            churn_heap_cost((size_t)s->u.last.cap_hist * sizeof(int64_t));
        break;
    case FEAT_STREAK:
        break;
    }
    return n;
}

int feat_state_encode(const feat_state_t *s, buf_t *out) {
    const feature_ops_t *ops = feature_ops((feature_kind_t)s->kind);
    return ops ? ops->encode(s, out) : CHURN_EINVAL;
}

int feat_state_decode(feature_kind_t kind, const void *p, size_t n,
                      feat_state_t *s) {
    const feature_ops_t *ops = feature_ops(kind);
    if (!ops) return CHURN_ECORRUPT;
    feat_state_init(s, kind);
    reader_t r;
    reader_init(&r, p, n);
    int rc = ops->decode(&r, s);
    if (!rc && reader_left(&r) != 0) rc = CHURN_ECORRUPT;
    if (rc) {
        ops->clear(s);
        feat_state_init(s, kind);
        return rc == CHURN_ENOMEM ? rc : CHURN_ECORRUPT;
    }
    return 0;
}
