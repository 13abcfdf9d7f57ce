/*
 * test_features.c - the feature kinds on their own: streak counting,
 * resets, where: filters and globs; latest and last values; every kind's
 * payload round trip and the decoder's refusal of damaged payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/features.h"
#include "churnd/timeutil.h"

static event_config_t cfg;

static int setup(void **state) {
    (void)state;
    return event_config_init(&cfg);
}

static int teardown(void **state) {
    (void)state;
    event_config_free(&cfg);
    return 0;
}

/* An event of `type` at day `day` of March 2026 with data `data` (JSON). */
static void mkev(event_t *ev, const char *type, int day, const char *data) {
    char js[8192];
    snprintf(js, sizeof(js),
             "{\"id\":\"e-%s-%d\",\"type\":\"%s\",\"client_id\":\"C1\","
             "\"ts\":\"2026-03-%02dT10:00:00Z\",\"data\":%s}",
             type, day, type, day, data ? data : "{}");
    char detail[128];
    assert_int_equal(event_parse(&cfg, js, strlen(js), ev, detail, sizeof(detail)),
                     EVENT_OK);
}

static void add_types(type_set_t *ts, const char *const *v) {
    for (; v && *v; v++) {
        ts->v = realloc(ts->v, (ts->n + 1) * sizeof(char *));
        ts->v[ts->n++] = strdup(*v);
    }
}

static void mkdef(feature_def_t *d, feature_kind_t kind, const char *name,
                  const char *const *on, const char *const *reset,
                  const char *where, const char *path) {
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->name = strdup(name);
    add_types(&d->on, on);
    add_types(&d->reset_on, reset);
    if (where) {
        churn_err_t err;
        expr_scope_t sc;
        memset(&sc, 0, sizeof(sc));
        assert_int_equal(expr_compile(where, strlen(where), &sc, &d->where, &err, NULL), 0);
    }
    if (path) assert_int_equal(feature_def_set_path(d, path), 0);
}

/* Apply an event through the kind's update, as the engine does. */
static int apply(const feature_def_t *d, feat_state_t *s, const event_t *ev) {
    unsigned match = feature_type_match(d, ev->type);
    if (!match) return 0;
    expr_ctx_t cx;
    memset(&cx, 0, sizeof(cx));
    cx.ev = ev;
    cx.now_ms = ev->ts_ms;
    return feature_ops(d->kind)->update(d, s, ev, &cx, match);
}

static void feed(const feature_def_t *d, feat_state_t *s, const char *type,
                 int day, const char *data, int want_changed) {
    event_t ev;
    mkev(&ev, type, day, data);
    assert_int_equal(apply(d, s, &ev), want_changed);
    event_clear(&ev);
}

static expr_val_t query(const feature_def_t *d, const feat_state_t *s,
                        expr_fn_t fn, int64_t now_ms) {
    expr_val_t v;
    v.type = EXPR_T_NULL;
    feature_ops(d->kind)->query(d, s, fn, NULL, 0, now_ms, &v);
    return v;
}

static uint64_t count_of(const feature_def_t *d, const feat_state_t *s) {
    expr_val_t v = query(d, s, EXPR_FN_STREAK, 0);
    assert_int_equal(v.type, EXPR_T_NUM);
    return (uint64_t)v.u.num;
}

/* Encode, decode, encode again: same bytes; every shorter prefix and a
 * longer payload are refused. */
static void round_trip(const feat_state_t *s, feat_state_t *back) {
    buf_t a, b;
    buf_init(&a);
    buf_init(&b);
    assert_int_equal(feat_state_encode(s, &a), 0);
    assert_int_equal(feat_state_decode((feature_kind_t)s->kind, a.data, a.len, back), 0);
    assert_int_equal(feat_state_encode(back, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    for (size_t n = 0; n < a.len; n++) {
        feat_state_t x;
        assert_int_equal(feat_state_decode((feature_kind_t)s->kind, a.data, n, &x),
                         CHURN_ECORRUPT);
        feat_state_clear(&x);
    }
    assert_int_equal(buf_putc(&a, 0), 0);
    feat_state_t x;
    assert_int_equal(feat_state_decode((feature_kind_t)s->kind, a.data, a.len, &x),
                     CHURN_ECORRUPT);
    feat_state_clear(&x);
    buf_free(&a);
    buf_free(&b);
}

#define DAY(d) ((int64_t)(1772359200000LL + ((d) - 1) * 86400000LL)) /* 2026-03-d 10:00Z */

/* ---- streak ------------------------------------------------------------- */

static void test_streak_counts_and_resets(void **state) {
    (void)state;
    static const char *const on[] = {"meeting.postponed", "meeting.cancelled", NULL};
    static const char *const reset[] = {"meeting.held", NULL};
    feature_def_t d;
    mkdef(&d, FEAT_STREAK, "postponements", on, reset, NULL, NULL);
    feat_state_t s;
    feat_state_init(&s, FEAT_STREAK);
    assert_int_equal(count_of(&d, &s), 0);
    assert_false(query(&d, &s, EXPR_FN_SEEN, 0).u.b);
    expr_val_t never = query(&d, &s, EXPR_FN_SINCE, DAY(1));
    assert_int_equal(never.type, EXPR_T_DUR);
    assert_true(never.u.num > 1e300); /* infinite */
    feed(&d, &s, "meeting.postponed", 1, NULL, 1);
    assert_int_equal(count_of(&d, &s), 1);
    feed(&d, &s, "meeting.cancelled", 2, NULL, 1);
    assert_int_equal(count_of(&d, &s), 2);
    feed(&d, &s, "meeting.scheduled", 3, NULL, 0); /* not its business */
    assert_int_equal(count_of(&d, &s), 2);
    assert_true(query(&d, &s, EXPR_FN_SEEN, 0).u.b);
    assert_true(query(&d, &s, EXPR_FN_SINCE, DAY(4)).u.num == 2 * 86400000.0);
    feed(&d, &s, "meeting.held", 4, NULL, 1);
    assert_int_equal(count_of(&d, &s), 0);
    feed(&d, &s, "meeting.held", 5, NULL, 0); /* already 0: unchanged */
    feed(&d, &s, "meeting.postponed", 6, NULL, 1);
    assert_int_equal(count_of(&d, &s), 1);
    assert_true(feature_ops(FEAT_STREAK)->next_wake(&d, &s) == INT64_MAX);
    feat_state_clear(&s);
    feature_def_free(&d);
}

static void test_streak_glob_and_where(void **state) {
    (void)state;
    static const char *const on[] = {"ticket.*", NULL};
    static const char *const reset[] = {"ticket.resolved", NULL};
    feature_def_t d;
    /* The counted glob also matches ticket.resolved: counting wins. */
    mkdef(&d, FEAT_STREAK, "client_replies", on, reset,
          "data.by == \"client\"", NULL);
    feat_state_t s;
    feat_state_init(&s, FEAT_STREAK);
    feed(&d, &s, "ticket.replied", 1, "{\"by\":\"client\"}", 1);
    feed(&d, &s, "ticket.replied", 2, "{\"by\":\"agent\"}", 0); /* where: false */
    feed(&d, &s, "ticket.opened", 3, "{}", 0);                  /* no data.by */
    feed(&d, &s, "ticket.replied", 4, "{\"by\":\"client\"}", 1);
    assert_int_equal(count_of(&d, &s), 2);
    feed(&d, &s, "tickets.replied", 5, "{\"by\":\"client\"}", 0); /* glob is exact */
    assert_int_equal(count_of(&d, &s), 2);
    feat_state_clear(&s);
    feature_def_free(&d);
}

static void test_streak_round_trip(void **state) {
    (void)state;
    static const char *const on[] = {"meeting.postponed", NULL};
    feature_def_t d;
    mkdef(&d, FEAT_STREAK, "p", on, NULL, NULL, NULL);
    feat_state_t s, back;
    feat_state_init(&s, FEAT_STREAK);
    round_trip(&s, &back); /* fresh */
    for (int i = 1; i <= 3; i++) feed(&d, &s, "meeting.postponed", i, NULL, 1);
    round_trip(&s, &back);
    assert_int_equal(count_of(&d, &back), 3);
    assert_true(back.u.streak.last_ms == DAY(3));
    s.u.streak.count = UINT64_MAX; /* extremes survive */
    s.u.streak.last_ms = INT64_MIN + 1;
    round_trip(&s, &back);
    assert_true(back.u.streak.count == UINT64_MAX);
    feat_state_clear(&s);
    feat_state_clear(&back);
    feature_def_free(&d);
}

/* ---- latest and last ---------------------------------------------------- */

static void test_latest(void **state) {
    (void)state;
    static const char *const on[] = {"client.updated", NULL};
    feature_def_t d;
    mkdef(&d, FEAT_LATEST, "tier", on, NULL, NULL, "data.tier");
    feat_state_t s, back;
    feat_state_init(&s, FEAT_LATEST);
    assert_int_equal(query(&d, &s, EXPR_FN_VALUE, 0).type, EXPR_T_NULL);
    assert_false(query(&d, &s, EXPR_FN_SEEN, 0).u.b);
    round_trip(&s, &back);
    feat_state_clear(&back);
    feed(&d, &s, "client.updated", 1, "{\"tier\":\"gold\"}", 1);
    expr_val_t v = query(&d, &s, EXPR_FN_VALUE, 0);
    assert_int_equal(v.type, EXPR_T_STR);
    assert_int_equal(v.u.s.len, 4);
    assert_memory_equal(v.u.s.p, "gold", 4);
    /* Missing, null or non-scalar values leave the previous one. */
    feed(&d, &s, "client.updated", 2, "{\"owner\":\"bob\"}", 0);
    feed(&d, &s, "client.updated", 3, "{\"tier\":null}", 0);
    feed(&d, &s, "client.updated", 4, "{\"tier\":{\"x\":1}}", 0);
    feed(&d, &s, "order.placed", 5, "{\"tier\":\"ignored\"}", 0);
    v = query(&d, &s, EXPR_FN_VALUE, 0);
    assert_memory_equal(v.u.s.p, "gold", 4);
    assert_true(query(&d, &s, EXPR_FN_SINCE, DAY(3)).u.num == 2 * 86400000.0);
    round_trip(&s, &back);
    v = query(&d, &back, EXPR_FN_VALUE, 0);
    assert_int_equal(v.u.s.len, 4);
    assert_memory_equal(v.u.s.p, "gold", 4);
    feat_state_clear(&back);
    /* Type changes: number, bool. */
    feed(&d, &s, "client.updated", 6, "{\"tier\":3.25}", 1);
    v = query(&d, &s, EXPR_FN_VALUE, 0);
    assert_int_equal(v.type, EXPR_T_NUM);
    assert_true(v.u.num == 3.25);
    round_trip(&s, &back);
    assert_true(query(&d, &back, EXPR_FN_VALUE, 0).u.num == 3.25);
    feat_state_clear(&back);
    feed(&d, &s, "client.updated", 7, "{\"tier\":false}", 1);
    v = query(&d, &s, EXPR_FN_VALUE, 0);
    assert_int_equal(v.type, EXPR_T_BOOL);
    assert_false(v.u.b);
    round_trip(&s, &back);
    assert_int_equal(query(&d, &back, EXPR_FN_VALUE, 0).type, EXPR_T_BOOL);
    feat_state_clear(&back);
    /* A long string is kept up to FEAT_VALUE_MAX_STR bytes. */
    char data[4096];
    int n = snprintf(data, sizeof(data), "{\"tier\":\"");
    memset(data + n, 'x', 2000);
    snprintf(data + n + 2000, sizeof(data) - (size_t)n - 2000, "\"}");
    feed(&d, &s, "client.updated", 8, data, 1);
    assert_int_equal(query(&d, &s, EXPR_FN_VALUE, 0).u.s.len, FEAT_VALUE_MAX_STR);
    round_trip(&s, &back);
    feat_state_clear(&back);
    feat_state_clear(&s);
    feature_def_free(&d);
}

static void test_last(void **state) {
    (void)state;
    static const char *const on[] = {"meeting.held", "email.*", NULL};
    feature_def_t d, dv;
    mkdef(&d, FEAT_LAST, "dm_contact", on, NULL,
          "\"decision_maker\" in data.attendee_roles or "
          "data.contact_role == \"decision_maker\"",
          NULL);
    mkdef(&dv, FEAT_LAST, "last_order", (const char *const[]){"order.placed", NULL},
          NULL, NULL, "data.amount");
    feat_state_t s, sv, back;
    feat_state_init(&s, FEAT_LAST);
    feat_state_init(&sv, FEAT_LAST);
    feed(&d, &s, "meeting.held", 1, "{\"attendee_roles\":[\"engineer\"]}", 0);
    assert_false(query(&d, &s, EXPR_FN_SEEN, 0).u.b);
    feed(&d, &s, "meeting.held", 2,
         "{\"attendee_roles\":[\"engineer\",\"decision_maker\"]}", 1);
    feed(&d, &s, "email.sent", 5, "{\"contact_role\":\"buyer\"}", 0);
    assert_true(query(&d, &s, EXPR_FN_SINCE, DAY(5)).u.num == 3 * 86400000.0);
    feed(&d, &s, "email.received", 6, "{\"contact_role\":\"decision_maker\"}", 1);
    assert_true(query(&d, &s, EXPR_FN_SINCE, DAY(6)).u.num == 0);
    assert_int_equal(query(&d, &s, EXPR_FN_VALUE, 0).type, EXPR_T_NULL);
    round_trip(&s, &back);
    assert_true(back.u.last.ts_ms == DAY(6));
    feat_state_clear(&back);
    /* last with value: keeps the time always, the value when present. */
    feed(&dv, &sv, "order.placed", 1, "{\"amount\":1200}", 1);
    feed(&dv, &sv, "order.placed", 2, "{}", 1);
    assert_true(sv.u.last.ts_ms == DAY(2));
    assert_true(query(&dv, &sv, EXPR_FN_VALUE, 0).u.num == 1200);
    round_trip(&sv, &back);
    assert_true(query(&dv, &back, EXPR_FN_VALUE, 0).u.num == 1200);
    feat_state_clear(&back);
    feat_state_clear(&s);
    feat_state_clear(&sv);
    feature_def_free(&d);
    feature_def_free(&dv);
}

static void test_damaged_payloads(void **state) {
    (void)state;
    feat_state_t s;
    /* latest: svarint ts, type byte 9 (unknown) */
    static const uint8_t bad_type[] = {0x02, 0x09};
    assert_int_equal(feat_state_decode(FEAT_LATEST, bad_type, sizeof(bad_type), &s),
                     CHURN_ECORRUPT);
    /* bool 2 */
    static const uint8_t bad_bool[] = {0x02, EXPR_T_BOOL, 0x02};
    assert_int_equal(feat_state_decode(FEAT_LATEST, bad_bool, sizeof(bad_bool), &s),
                     CHURN_ECORRUPT);
    /* NaN number */
    static const uint8_t nan[] = {0x02, EXPR_T_NUM, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    assert_int_equal(feat_state_decode(FEAT_LATEST, nan, sizeof(nan), &s),
                     CHURN_ECORRUPT);
    /* string length beyond the payload */
    static const uint8_t long_str[] = {0x02, EXPR_T_STR, 0x7f, 'a'};
    assert_int_equal(feat_state_decode(FEAT_LATEST, long_str, sizeof(long_str), &s),
                     CHURN_ECORRUPT);
    /* streak: a varint that never ends */
    static const uint8_t runaway[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(feat_state_decode(FEAT_STREAK, runaway, sizeof(runaway), &s),
                     CHURN_ECORRUPT);
    /* unknown kinds cannot be decoded */
    assert_int_equal(feat_state_decode((feature_kind_t)99, bad_type, 2, &s),
                     CHURN_ECORRUPT);
    assert_non_null(feature_ops(FEAT_SERIES));
    assert_non_null(feature_ops(FEAT_EXPECT));
}

static void test_canon_ids(void **state) {
    (void)state;
    static const char *const a[] = {"meeting.postponed", NULL};
    static const char *const b[] = {"meeting.held", NULL};
    feature_def_t d1, d2, d3;
    mkdef(&d1, FEAT_STREAK, "p", a, b, NULL, NULL);
    mkdef(&d2, FEAT_STREAK, "p", a, b, "data.x > 1", NULL);
    mkdef(&d3, FEAT_STREAK, "p", a, NULL, NULL, NULL);
    buf_t c1, c2, c3;
    buf_init(&c1);
    buf_init(&c2);
    buf_init(&c3);
    assert_int_equal(feature_def_canon(&d1, &c1), 0);
    assert_int_equal(feature_def_canon(&d2, &c2), 0);
    assert_int_equal(feature_def_canon(&d3, &c3), 0);
    assert_int_equal(buf_putc(&c1, 0), 0);
    assert_string_equal((const char *)c1.data,
                        "feature|p|streak|on:meeting.postponed|reset_on:meeting.held");
    assert_true(c1.len != c2.len - 1 || memcmp(c1.data, c2.data, c1.len - 1) != 0);
    assert_true(churn_hash64(c1.data, c1.len - 1, CHURN_HASH_SEED) !=
                churn_hash64(c3.data, c3.len, CHURN_HASH_SEED));
    buf_free(&c1);
    buf_free(&c2);
    buf_free(&c3);
    feature_def_free(&d1);
    feature_def_free(&d2);
    feature_def_free(&d3);
}

/* ---- trends: how an answer moves with the time, the state fixed -------- */

#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)

static int same_val(const expr_val_t *a, const expr_val_t *b) {
    if (a->type != b->type) return 0;
    if (a->type == EXPR_T_BOOL) return a->u.b == b->u.b;
    return a->type == EXPR_T_NULL || a->u.num == b->u.num;
}

static expr_val_t query_at(const feature_def_t *d, const feat_state_t *s, expr_fn_t fn,
                           const expr_val_t *args, size_t n_args, int64_t t) {
    expr_val_t v;
    v.type = EXPR_T_NULL;
    feature_ops(d->kind)->query(d, s, fn, args, n_args, t, &v);
    return v;
}

/* At t, the answer is v0 moved by the trend's slope. */
static void check_moved(const feature_def_t *d, const feat_state_t *s, expr_fn_t fn,
                        const expr_val_t *args, size_t n_args, int64_t now,
                        const expr_trend_t *tr, const expr_val_t *v0, int64_t t) {
    expr_val_t v = query_at(d, s, fn, args, n_args, t), want = *v0;
    if (want.type == EXPR_T_DUR || want.type == EXPR_T_NUM)
        want.u.num += tr->slope * (double)(t - now);
    if (!same_val(&v, &want))
        fail_msg("fn %d at %lld: claimed until %lld, changed at %lld", (int)fn,
                 (long long)now, (long long)tr->until, (long long)t);
}

/* The trend's claim, checked at every hour of its first 10 days and at
 * its last millisecond: a moving answer moves by slope exactly. */
static expr_trend_t check_trend(const feature_def_t *d, const feat_state_t *s,
                                expr_fn_t fn, const expr_val_t *args,
                                size_t n_args, int64_t now) {
    expr_trend_t tr = {0, now + 1};
    feature_ops(d->kind)->trend(d, s, fn, args, n_args, now, &tr);
    assert_true(tr.until > now);
    expr_val_t v0 = query_at(d, s, fn, args, n_args, now);
    int64_t end = tr.until - now > 10 * DAY_MS ? now + 10 * DAY_MS : tr.until - 1;
    for (int64_t t = now; t < end; t += HOUR_MS)
        check_moved(d, s, fn, args, n_args, now, &tr, &v0, t);
    check_moved(d, s, fn, args, n_args, now, &tr, &v0, end);
    return tr;
}

static void feed_at(const feature_def_t *d, feat_state_t *s, const char *type,
                    int64_t ts, const char *data) {
    char t[TIME_RFC3339_MAX], js[512], detail[128];
    time_format_rfc3339(ts, t, sizeof(t));
    snprintf(js, sizeof(js),
             "{\"id\":\"e-%lld\",\"type\":\"%s\",\"client_id\":\"C1\","
             "\"ts\":\"%s\",\"data\":%s}", (long long)ts, type, t, data);
    event_t ev;
    assert_int_equal(event_parse(&cfg, js, strlen(js), &ev, detail, sizeof(detail)),
                     EVENT_OK);
    assert_true(apply(d, s, &ev) >= 0);
    event_clear(&ev);
}

/* sum, count and avg hold until an existing bucket enters or leaves the
 * window, which is exactly when the first of them does (checked against
 * the buckets themselves); min and max at least until an edge moves. */
static void test_series_trend(void **state) {
    (void)state;
    feature_def_t d;
    static const char *const on[] = {"order.placed", NULL};
    mkdef(&d, FEAT_SERIES, "orders", on, NULL, NULL, "data.amount");
    d.bucket_ms = 6 * HOUR_MS;
    d.retain_ms = 120 * DAY_MS;
    d.max_buckets = (uint32_t)(d.retain_ms / d.bucket_ms);
    feat_state_t s;
    feat_state_init(&s, FEAT_SERIES);
    const int64_t base = DAY(1);
    uint64_t x = 42;
    for (int i = 0; i < 40; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        char data[64];
        snprintf(data, sizeof(data), "{\"amount\": %d}", (int)((x >> 40) % 100) + 1);
        feed_at(&d, &s, "order.placed", base + (int64_t)((x >> 8) % (60 * DAY_MS)), data);
    }
    assert_true(s.u.series.n > 10);
    static const struct { int64_t range, off; } win[] = {
        {30 * DAY_MS, 0}, {7 * DAY_MS, 0}, {90 * DAY_MS, 30 * DAY_MS},
        {36 * HOUR_MS, 0}, {DAY_MS, 12 * HOUR_MS}, {5 * HOUR_MS, 0},
    };
    static const expr_fn_t fns[] = {EXPR_FN_SUM, EXPR_FN_COUNT, EXPR_FN_AVG,
                                    EXPR_FN_MIN, EXPR_FN_MAX};
    int moved = 0;
    for (int64_t now = base - 2 * DAY_MS; now < base + 200 * DAY_MS;
         now += DAY_MS + 7 * HOUR_MS + 13 * 60000) {
        for (size_t w = 0; w < sizeof(win) / sizeof(win[0]); w++) {
            expr_val_t args[2];
            args[0].type = args[1].type = EXPR_T_DUR;
            args[0].u.num = (double)win[w].range;
            args[1].u.num = (double)win[w].off;
            size_t n_args = win[w].off ? 2 : 1;
            for (size_t f = 0; f < sizeof(fns) / sizeof(fns[0]); f++) {
                expr_trend_t tr = check_trend(&d, &s, fns[f], args, n_args, now);
                assert_true(tr.slope == 0);
                if (fns[f] != EXPR_FN_SUM && fns[f] != EXPR_FN_COUNT) continue;
                /* The first time after now that the set of buckets in the
                 * window differs: only a bucket's edges can change it. */
                int64_t first = INT64_MAX;
                for (uint32_t i = 0; i < s.u.series.n; i++) {
                    int64_t j = s.u.series.b[i].idx;
                    int64_t edges[2] = {j * d.bucket_ms + win[w].off,
                                        j * d.bucket_ms + win[w].off + win[w].range};
                    for (int k = 0; k < 2; k++)
                        if (edges[k] > now && edges[k] < first) first = edges[k];
                }
                assert_int_equal(tr.until, first);
                moved += first != INT64_MAX;
            }
        }
    }
    assert_true(moved > 100);
    expr_val_t bad = {.type = EXPR_T_NUM};
    assert_int_equal(check_trend(&d, &s, EXPR_FN_SUM, &bad, 1, base).until, INT64_MAX);
    assert_int_equal(check_trend(&d, &s, EXPR_FN_SEEN, NULL, 0, base).until, INT64_MAX);
    feat_state_clear(&s);
    feature_def_free(&d);
}

/* since() moves one millisecond per millisecond, or is infinite for good;
 * what a state holds (counts, seen, values, median gap) does not move. */
static void test_since_and_fixed_trends(void **state) {
    (void)state;
    feature_def_t d;
    static const char *const on[] = {"order.placed", NULL};
    mkdef(&d, FEAT_LAST, "orders", on, NULL, NULL, NULL);
    d.history = 8;
    feat_state_t s;
    feat_state_init(&s, FEAT_LAST);
    expr_trend_t tr = check_trend(&d, &s, EXPR_FN_SINCE, NULL, 0, DAY(1));
    assert_true(tr.slope == 0 && tr.until == INT64_MAX); /* never: infinite */
    for (int day = 1; day <= 9; day += 2) feed(&d, &s, "order.placed", day, NULL, 1);
    tr = check_trend(&d, &s, EXPR_FN_SINCE, NULL, 0, DAY(12));
    assert_true(tr.slope == 1 && tr.until == INT64_MAX);
    static const expr_fn_t fixed[] = {EXPR_FN_COUNT, EXPR_FN_SEEN, EXPR_FN_MEDIAN_GAP};
    for (size_t i = 0; i < 3; i++) {
        tr = check_trend(&d, &s, fixed[i], NULL, 0, DAY(12));
        assert_true(tr.slope == 0 && tr.until == INT64_MAX);
    }
    feat_state_clear(&s);
    feature_def_free(&d);

    static const char *const counted[] = {"meeting.postponed", NULL};
    mkdef(&d, FEAT_STREAK, "postponed", counted, NULL, NULL, NULL);
    feat_state_init(&s, FEAT_STREAK);
    feed(&d, &s, "meeting.postponed", 3, NULL, 1);
    tr = check_trend(&d, &s, EXPR_FN_SINCE, NULL, 0, DAY(4));
    assert_true(tr.slope == 1 && tr.until == INT64_MAX);
    tr = check_trend(&d, &s, EXPR_FN_STREAK, NULL, 0, DAY(4));
    assert_true(tr.slope == 0 && tr.until == INT64_MAX);
    feat_state_clear(&s);
    feature_def_free(&d);
}

/* open() and overdue() hold until the next deadline passes. */
static void test_expect_trend(void **state) {
    (void)state;
    feature_def_t d;
    mkdef(&d, FEAT_EXPECT, "reply", NULL, NULL, NULL, NULL);
    feat_state_t s;
    feat_state_init(&s, FEAT_EXPECT);
    s.u.expect.v = calloc(3, sizeof(expectation_t));
    assert_non_null(s.u.expect.v);
    s.u.expect.cap = 3;
    static const int deadline_days[] = {5, 2, 9};
    for (uint32_t i = 0; i < 3; i++) {
        s.u.expect.v[i].key = strdup("");
        s.u.expect.v[i].opened_ms = DAY(1);
        s.u.expect.v[i].deadline_ms = DAY(deadline_days[i]);
        s.u.expect.n = i + 1;
    }
    static const struct { int day; int until_day; } want[] = {
        {1, 2}, {2, 5}, {4, 5}, {5, 9}, {9, 0},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int64_t until = want[i].until_day ? DAY(want[i].until_day) : INT64_MAX;
        assert_int_equal(check_trend(&d, &s, EXPR_FN_OPEN, NULL, 0, DAY(want[i].day)).until,
                         until);
        assert_int_equal(
            check_trend(&d, &s, EXPR_FN_OVERDUE, NULL, 0, DAY(want[i].day)).until, until);
        /* It does move there. */
        if (want[i].until_day)
            assert_false(query_at(&d, &s, EXPR_FN_OPEN, NULL, 0, until).u.num ==
                         query_at(&d, &s, EXPR_FN_OPEN, NULL, 0, until - 1).u.num);
    }
    assert_int_equal(check_trend(&d, &s, EXPR_FN_SEEN, NULL, 0, DAY(1)).until, INT64_MAX);
    feat_state_clear(&s);
    feature_def_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streak_counts_and_resets),
        cmocka_unit_test(test_streak_glob_and_where),
        cmocka_unit_test(test_streak_round_trip),
        cmocka_unit_test(test_latest),
        cmocka_unit_test(test_last),
        cmocka_unit_test(test_damaged_payloads),
        cmocka_unit_test(test_canon_ids),
        cmocka_unit_test(test_series_trend),
        cmocka_unit_test(test_since_and_fixed_trends),
        cmocka_unit_test(test_expect_trend),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
