/*
 * fuzz_expr.c - libFuzzer target for the expression compiler and evaluator
 * (daemon/expr.c). The input is the source text of one expression; it is
 * compiled three ways: in a rule's scope (features, rules, expectation.*),
 * in a feature where:'s scope (event and vars only), and as a template.
 *
 * Compiling must return an expression or an error whose offset lies inside
 * the source. A compiled expression is evaluated against a few synthetic
 * events and client states, and what the engine relies on is checked:
 *   - the value's type is the compiled type (or null), never NaN, never a
 *     static-only type;
 *   - an expression that reads no event gives the same value with and
 *     without one (the engine re-evaluates such a `for:` at its deadline);
 *   - the host is only asked what the compiler allowed (feature index in
 *     range, a function the feature's kind supports, at most EXPR_MAX_ARGS);
 *   - expr_val_json writes valid JSON; canon text, value sites and
 *     templates render without error;
 *   - against a host whose answers move with the time, the answer
 *     expr_eval_bool_until gives holds at later times before its bound.
 *
 * Run by scripts/fuzz.sh (seeds: tests/fuzz/corpus/expr).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "churnd/common.h"
#include "churnd/event.h"
#include "churnd/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- Scope: the default pack's names, one feature of each kind at least */

/* The names of the default pack and of tests/unit/test_expr.c, so the
 * seed expressions taken from both compile. */
enum { N_VARS = 13, N_FEATS = 11, N_RULES = 3 };

static const char *const var_names[N_VARS] = {
    "decline_ratio", "min_baseline", "dm_silence", "max_postponements",
    "gap_factor",    "churn_risk_min", "defects_min", "tier_name",
    "flag",          "untyped",        "threshold",   "window",
    "on",
};
static const uint8_t var_types[N_VARS] = {
    EXPR_T_NUM, EXPR_T_NUM, EXPR_T_DUR, EXPR_T_NUM,  EXPR_T_NUM,
    EXPR_T_NUM, EXPR_T_NUM, EXPR_T_STR, EXPR_T_BOOL, EXPR_T_ANY,
    EXPR_T_NUM, EXPR_T_DUR, EXPR_T_BOOL,
};
static const char *const feat_names[N_FEATS] = {
    "order_value", "defect_tickets", "postponements", "complaint_reply",
    "dm_contact",  "order_times",    "nps_score",     "csat_score",
    "tier",        "last_payment",   "reply",
};
static const uint8_t feat_kinds[N_FEATS] = {
    FEAT_SERIES, FEAT_SERIES, FEAT_STREAK, FEAT_EXPECT, FEAT_LAST,  FEAT_LAST,
    FEAT_LATEST, FEAT_LATEST, FEAT_LATEST, FEAT_LAST,   FEAT_EXPECT,
};
static const uint8_t feat_has_value[N_FEATS] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0};
static const uint8_t feat_has_history[N_FEATS] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0};
static const char *const rule_names[N_RULES] = {"order_decline", "detractor",
                                                "churn_risk"};

static expr_scope_t make_scope(unsigned allow) {
    expr_scope_t sc;
    memset(&sc, 0, sizeof(sc));
    sc.var_names = var_names;
    sc.var_types = var_types;
    sc.n_vars = N_VARS;
    sc.feature_names = feat_names;
    sc.feature_kinds = feat_kinds;
    sc.feature_has_value = feat_has_value;
    sc.feature_has_history = feat_has_history;
    sc.n_features = N_FEATS;
    sc.rule_names = rule_names;
    sc.n_rules = N_RULES;
    sc.allow = allow;
    return sc;
}

/* ---- Synthetic events ---------------------------------------------------- */

static const char *const event_json[] = {
    "{\"id\":\"e-1\",\"type\":\"meeting.held\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"amount\":1200.5,\"score\":6,"
    "\"tier\":\"gold\",\"flag\":true,\"s\":\"3\",\"empty\":\"\","
    "\"attendee_roles\":[\"engineer\",\"decision_maker\"],"
    "\"mixed\":[1,\"a\",true,null,[2],{\"k\":1}],"
    "\"nested\":{\"x\":{\"y\":42}},\"nul\":null,\"big\":1e308,\"neg\":-3}}",
    "{\"type\":\"ticket.opened\",\"client_id\":42,\"ts\":0,"
    "\"data\":{\"category\":\"complaint\",\"priority\":\"high\","
    "\"ticket_id\":\"T-9\",\"amount\":\"12\",\"score\":-0.0}}",
    ("{\"id\":7,\"type\":\"x\",\"client_id\":\"c\","
     "\"ts\":\"9999-12-31T23:59:59.999Z\",\"data\":[1,2]}"),
};
enum { N_EVENTS = sizeof(event_json) / sizeof(event_json[0]) };

static event_config_t ev_cfg;
static event_t events[N_EVENTS];

static void init_events(void) {
    if (event_config_init(&ev_cfg) != 0) abort();
    for (size_t i = 0; i < N_EVENTS; i++) {
        char detail[128];
        if (event_parse(&ev_cfg, event_json[i], strlen(event_json[i]), &events[i],
                        detail, sizeof(detail)) != EVENT_OK)
            abort();
    }
}

/* ---- Var tables ----------------------------------------------------------- */

static expr_val_t num(int type, double x) {
    expr_val_t v;
    v.type = (uint8_t)type;
    v.u.num = x;
    return v;
}

static expr_val_t str(const char *s) {
    expr_val_t v;
    v.type = EXPR_T_STR;
    v.u.s.p = s;
    v.u.s.len = strlen(s);
    return v;
}

static expr_val_t boolean(int b) {
    expr_val_t v;
    v.type = EXPR_T_BOOL;
    v.u.b = b;
    return v;
}

static expr_val_t vars_typical[N_VARS], vars_extreme[N_VARS];

static void init_vars(void) {
    expr_val_t none;
    memset(&none, 0, sizeof(none));
    none.type = EXPR_T_NULL;
    const expr_val_t t[N_VARS] = {
        num(EXPR_T_NUM, 0.6), num(EXPR_T_NUM, 500), num(EXPR_T_DUR, 30 * 86400000.0),
        num(EXPR_T_NUM, 2),   num(EXPR_T_NUM, 2),   num(EXPR_T_NUM, 60),
        num(EXPR_T_NUM, 3),   str("enterprise"),    boolean(1),
        none,                 num(EXPR_T_NUM, 500), num(EXPR_T_DUR, 30 * 86400000.0),
        boolean(1),
    };
    const expr_val_t x[N_VARS] = {
        num(EXPR_T_NUM, -0.0),   num(EXPR_T_NUM, 1e308), num(EXPR_T_DUR, INFINITY),
        num(EXPR_T_NUM, -1e308), num(EXPR_T_NUM, 0),     num(EXPR_T_NUM, INFINITY),
        num(EXPR_T_NUM, -INFINITY), str(""),             boolean(0),
        str("any"),              num(EXPR_T_NUM, 1e-300), num(EXPR_T_DUR, 0),
        boolean(0),
    };
    memcpy(vars_typical, t, sizeof(t));
    memcpy(vars_extreme, x, sizeof(x));
}

/* ---- A fake host that checks what it is asked ----------------------------- */

typedef struct state {
    int extreme; /* 0: ordinary values, 1: zeros, infinities, empties */
    int moving;  /* answers that move with now, with their trends */
} state_t;

/* The moving state: since() counts from T0, series are whole weeks since
 * T0 (a staircase), expectations fall due at DUE, risk decays (and says
 * nothing of its trend). */
#define DAY_MS 86400000LL
static const int64_t T0 = 1769904000000;  /* 2026-02-01T00:00:00Z */
static const int64_t DUE = 1772542800000; /* 2026-03-03T13:00:00Z */

static void moving_feature(const expr_ctx_t *cx, expr_fn_t fn, const expr_val_t *args,
                           size_t n_args, expr_val_t *out) {
    int64_t now = cx->now_ms;
    expr_trend_t tr = {0, INT64_MAX};
    switch (fn) {
    case EXPR_FN_SUM:
    case EXPR_FN_COUNT:
    case EXPR_FN_AVG:
    case EXPR_FN_MIN:
    case EXPR_FN_MAX: {
        if (n_args < 1 || args[0].type != EXPR_T_DUR) break;
        int64_t weeks = now < T0 ? 0 : (now - T0) / (7 * DAY_MS);
        *out = num(EXPR_T_NUM, (double)weeks * (args[0].u.num / DAY_MS));
        tr.until = now < T0 ? T0
                   : weeks >= (INT64_MAX - T0) / (7 * DAY_MS) - 1
                       ? INT64_MAX /* the last step: no next one */
                       : T0 + (weeks + 1) * 7 * DAY_MS;
        break;
    }
    case EXPR_FN_STREAK: *out = num(EXPR_T_NUM, 3); break;
    case EXPR_FN_SINCE:
        *out = num(EXPR_T_DUR, (double)(now - T0));
        tr.slope = 1;
        break;
    case EXPR_FN_SEEN: *out = boolean(1); break;
    case EXPR_FN_VALUE: *out = num(EXPR_T_NUM, 4); break;
    case EXPR_FN_OPEN:
    case EXPR_FN_OVERDUE:
        *out = num(EXPR_T_NUM, (now < DUE) == (fn == EXPR_FN_OPEN));
        if (now < DUE) tr.until = DUE;
        break;
    case EXPR_FN_MEDIAN_GAP: *out = num(EXPR_T_DUR, 10 * DAY_MS); break;
    }
    if (cx->trend) *cx->trend = tr;
}

static unsigned kinds_of(expr_fn_t fn) {
    switch (fn) {
    case EXPR_FN_SUM:
    case EXPR_FN_COUNT:
    case EXPR_FN_AVG:
    case EXPR_FN_MIN:
    case EXPR_FN_MAX: return 1u << FEAT_SERIES;
    case EXPR_FN_STREAK: return 1u << FEAT_STREAK;
    case EXPR_FN_SINCE:
        return 1u << FEAT_LAST | 1u << FEAT_LATEST | 1u << FEAT_STREAK;
    case EXPR_FN_SEEN: return 0x3eu; /* every kind */
    case EXPR_FN_VALUE: return 1u << FEAT_LAST | 1u << FEAT_LATEST;
    case EXPR_FN_OPEN:
    case EXPR_FN_OVERDUE: return 1u << FEAT_EXPECT;
    case EXPR_FN_MEDIAN_GAP: return 1u << FEAT_LAST;
    }
    return 0;
}

static void fake_feature(const expr_ctx_t *cx, uint32_t feat, expr_fn_t fn,
                         const expr_val_t *args, size_t n_args, expr_val_t *out) {
    const state_t *st = cx->host_data;
    if (feat >= N_FEATS || !(kinds_of(fn) & (1u << feat_kinds[feat]))) abort();
    if (n_args > EXPR_MAX_ARGS) abort();
    if (fn == EXPR_FN_VALUE && !feat_has_value[feat]) abort();
    if (fn == EXPR_FN_MEDIAN_GAP && !feat_has_history[feat]) abort();
    for (size_t i = 0; i < n_args; i++)
        if (args[i].type > EXPR_T_ARRAY) abort();
    out->type = EXPR_T_NULL;
    if (st->moving) {
        if (fn == EXPR_FN_VALUE && feat == 8) *out = str("enterprise");
        else moving_feature(cx, fn, args, n_args, out);
        return;
    }
    switch (fn) {
    case EXPR_FN_SUM:
    case EXPR_FN_COUNT:
    case EXPR_FN_AVG:
    case EXPR_FN_MIN:
    case EXPR_FN_MAX:
        /* Like the real series: null unless the range is a duration. */
        if (n_args < 1 || args[0].type != EXPR_T_DUR) return;
        *out = num(EXPR_T_NUM, st->extreme ? 0 : args[0].u.num / 86400000.0 * 10);
        return;
    case EXPR_FN_STREAK: *out = num(EXPR_T_NUM, st->extreme ? 0 : 3); return;
    case EXPR_FN_SINCE:
        *out = num(EXPR_T_DUR, st->extreme ? INFINITY : 36 * 3600000.0);
        return;
    case EXPR_FN_SEEN: *out = boolean(!st->extreme); return;
    case EXPR_FN_VALUE:
        if (st->extreme) return; /* never set */
        *out = feat == 8 ? str("enterprise") : num(EXPR_T_NUM, 4);
        return;
    case EXPR_FN_OPEN:
    case EXPR_FN_OVERDUE: *out = num(EXPR_T_NUM, st->extreme ? 0 : 1); return;
    case EXPR_FN_MEDIAN_GAP:
        if (!st->extreme) *out = num(EXPR_T_DUR, 10 * 86400000.0);
        return;
    }
    abort(); /* a function the compiler should not have produced */
}

static int fake_firing(const expr_ctx_t *cx, uint32_t rule) {
    const state_t *st = cx->host_data;
    if (rule >= N_RULES) abort();
    return st->extreme ? 0 : rule == 1;
}

static double fake_risk(const expr_ctx_t *cx) {
    const state_t *st = cx->host_data;
    if (st->moving) return 45.5 * exp2(-(double)(cx->now_ms - T0) / (30.0 * DAY_MS));
    return st->extreme ? 100 : 45.5;
}

static const expr_host_t host = {fake_feature, fake_firing, fake_risk};

/* ---- Checks ---------------------------------------------------------------- */

static void check_value(const expr_val_t *v, expr_type_t want) {
    if (v->type == EXPR_T_ANY || v->type == EXPR_T_LIST || v->type > EXPR_T_LIST)
        abort();
    if (want != EXPR_T_ANY && v->type != want && v->type != EXPR_T_NULL) abort();
    if ((v->type == EXPR_T_NUM || v->type == EXPR_T_DUR || v->type == EXPR_T_TIME) &&
        isnan(v->u.num))
        abort();
    if (v->type == EXPR_T_STR && v->u.s.len && !v->u.s.p) abort();
    if (v->type == EXPR_T_BOOL && v->u.b != 0 && v->u.b != 1) abort();
}

static int same_value(const expr_val_t *a, const expr_val_t *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case EXPR_T_NUM:
    case EXPR_T_DUR:
    case EXPR_T_TIME:
        return a->u.num == b->u.num || (isnan(a->u.num) && isnan(b->u.num));
    case EXPR_T_BOOL: return a->u.b == b->u.b;
    case EXPR_T_STR:
        return a->u.s.len == b->u.s.len &&
               (a->u.s.len == 0 || memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0);
    case EXPR_T_ARRAY: return a->u.arr == b->u.arr;
    }
    return 1;
}

/* The JSON of a value must parse, on its own, as one JSON value. */
static void check_json(const expr_val_t *v, buf_t *b) {
    buf_reset(b);
    if (expr_val_json(v, b) != 0) abort();
    if (buf_putc(b, '\0') != 0) abort();
    cJSON *j = cJSON_ParseWithOpts((const char *)b->data, NULL, 1);
    if (!j) abort();
    cJSON_Delete(j);
    buf_reset(b);
    if (expr_val_format(v, b) != 0) abort();
}

static void ctx_for(expr_ctx_t *cx, const event_t *ev, const expr_val_t *vars,
                    const state_t *st, int with_host, int with_exp) {
    memset(cx, 0, sizeof(*cx));
    cx->ev = ev;
    cx->client_id = ev ? ev->client_id : "ACME-001";
    cx->client_len = ev ? ev->client_len : 8;
    cx->now_ms = ev ? ev->ts_ms : 1772359200000; /* 2026-03-01T10:00:00Z */
    cx->vars = vars;
    cx->host = with_host ? &host : NULL;
    cx->host_data = (void *)st;
    cx->exp_opened_ms = INT64_MIN;
    if (with_exp) {
        cx->exp_key = "T-9";
        cx->exp_key_len = 3;
        cx->exp_opened_ms = cx->now_ms - 86400000;
    }
}

/* expr_eval_bool_until's claim: the same answer at later times before
 * the time it gives, with the state and the event unchanged. */
static void check_until(const expr_t *e, const expr_val_t *vars) {
    static const state_t moving = {0, 1};
    const event_t *evs[2] = {NULL, &events[0]};
    for (int k = 0; k < 2; k++) {
        expr_ctx_t cx;
        ctx_for(&cx, evs[k], vars, &moving, 1, 1);
        cx.now_ms = 1772359200000; /* 2026-03-01T10:00:00Z */
        int64_t now = cx.now_ms, until = 0;
        int v = expr_eval_bool_until(e, &cx, &until);
        if (v != expr_eval_bool(e, &cx) || until <= now) abort();
        const int64_t later[] = {0, 1, 3600000, DAY_MS, 2 * DAY_MS + 3, 7 * DAY_MS,
                                 30 * DAY_MS, 365 * DAY_MS, 100000 * DAY_MS};
        for (size_t i = 0; i < sizeof(later) / sizeof(later[0]) + 2; i++) {
            int64_t t = i < sizeof(later) / sizeof(later[0]) ? now + later[i]
                        : i == sizeof(later) / sizeof(later[0]) ? until - 1
                        : now + (until - now) / 2;
            if (t < now || t >= until) continue;
            cx.now_ms = t;
            if (expr_eval_bool(e, &cx) != v) abort();
        }
    }
}

static void exercise(const expr_t *e, buf_t *b) {
    static const state_t typical = {0, 0}, extreme = {1, 0};
    expr_type_t want = expr_result_type(e);
    if (want == EXPR_T_LIST || want > EXPR_T_LIST) abort();
    buf_reset(b);
    if (expr_canon(e, b) != 0) abort();
    for (size_t i = 0; i < expr_n_sites(e); i++)
        if (!expr_site_key(e, i) || !expr_site_key(e, i)[0]) abort();

    check_until(e, vars_typical);
    for (int s = 0; s < 3; s++) {
        const state_t *st = s == 1 ? &extreme : &typical;
        const expr_val_t *vars = s == 1 ? vars_extreme : vars_typical;
        int with_host = s != 2;
        /* Without an event first: the timer evaluation. */
        expr_ctx_t cx;
        ctx_for(&cx, NULL, vars, st, with_host, s == 0);
        expr_val_t no_ev;
        expr_eval(e, &cx, &no_ev);
        check_value(&no_ev, want);
        for (size_t k = 0; k < N_EVENTS; k++) {
            ctx_for(&cx, &events[k], vars, st, with_host, s == 0);
            expr_val_t v;
            expr_eval(e, &cx, &v);
            check_value(&v, want);
            check_json(&v, b);
            int t = expr_eval_bool(e, &cx);
            if (t != (v.type == EXPR_T_BOOL && v.u.b)) abort();
            if (!expr_uses_event(e)) {
                /* Same client, time and vars; only the event differs. */
                expr_ctx_t cx2 = cx;
                cx2.ev = NULL;
                expr_val_t w;
                expr_eval(e, &cx2, &w);
                if (!same_value(&v, &w)) abort();
            }
            for (size_t i = 0; i < expr_n_sites(e); i++) {
                expr_eval_site(e, i, &cx, &v);
                check_value(&v, EXPR_T_ANY);
                check_json(&v, b);
            }
        }
    }
}

static void check_error(int rc, const churn_err_t *err, size_t off, size_t size) {
    if (rc != CHURN_EINVAL) abort();
    if (!err->msg[0] || strlen(err->msg) >= sizeof(err->msg)) abort();
    if (off > size) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        init_events();
        init_vars();
        ready = 1;
    }
    const char *src = (const char *)data;
    buf_t b;
    buf_init(&b);

    /* A rule's when:, with everything in scope. */
    expr_scope_t rule_sc =
        make_scope(EXPR_ALLOW_FEATURES | EXPR_ALLOW_RULES | EXPR_ALLOW_EXPECTATION);
    expr_t *e = NULL;
    churn_err_t err;
    size_t off = (size_t)-1;
    int rc = expr_compile(src, size, &rule_sc, &e, &err, &off);
    if (rc == 0) {
        if (!e || off != 0) abort();
        if (strlen(expr_source(e)) != size) abort(); /* NULs are refused */
        exercise(e, &b);
        expr_free(e);
    } else {
        if (e) abort();
        check_error(rc, &err, off, size);
        if (err.col != (int)off + 1) abort();
    }

    /* A feature's where:, which sees only the event and vars. A narrower
     * scope never accepts what the wider one refused. */
    expr_scope_t where_sc = make_scope(0);
    e = NULL;
    int rc2 = expr_compile(src, size, &where_sc, &e, &err, &off);
    if (rc2 == 0) {
        if (rc != 0) abort();
        exercise(e, &b);
        expr_free(e);
    } else {
        check_error(rc2, &err, off, size);
    }

    /* The same text as a summary template. */
    expr_tmpl_t *t = NULL;
    rc = expr_tmpl_compile(src, size, &rule_sc, &t, &err, &off);
    if (rc == 0) {
        for (size_t i = 0; i < expr_tmpl_n_exprs(t); i++)
            if (!expr_tmpl_expr(t, i)) abort();
        for (size_t k = 0; k < N_EVENTS; k++) {
            static const state_t typical = {0, 0};
            expr_ctx_t cx;
            ctx_for(&cx, &events[k], vars_typical, &typical, 1, 1);
            buf_reset(&b);
            if (expr_tmpl_render(t, &cx, &b) != 0) abort();
        }
        expr_tmpl_free(t);
    } else {
        if (t) abort();
        check_error(rc, &err, off, size);
    }
    buf_free(&b);
    return 0;
}
