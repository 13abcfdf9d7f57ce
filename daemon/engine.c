/*
 * engine.c - applying events and the passage of event time to one
 * client's state under a rule set, producing alerts (engine.h).
 *
 * Per event, in this order:
 *   1. a type no feature or rule uses: ENGINE_IGNORED, state untouched;
 *   2. an id seen recently for this client: ENGINE_DUPLICATE, untouched;
 *   3. align the state with the rule set (cstate_bind);
 *   4. fire the state's deadlines at or before the event's time, so the
 *      result does not depend on when the runtime's watermark timer runs;
 *   5. record the id; update every feature the type concerns;
 *   6. evaluate, in rule-set order, every rule whose on: matches the type,
 *      and apply the lifecycle below. firing("r") and risk see the rules
 *      evaluated before in the same event already updated.
 *
 * Lifecycle of a rule (per client):
 *   inactive --holds, for: 0--------> firing   (alert "firing", at = now)
 *   inactive --holds, for: D--------> pending  (deadline = now + D)
 *   pending  --stops holding--------> inactive (nothing published)
 *   pending  --deadline passes------> firing   (alert at the deadline,
 *                                               trigger {"timer": true})
 *   firing   --still holds----------> firing   (nothing: sent once)
 *   firing   --stops holding--------> inactive (alert "resolved" with the
 *                                               firing's alert_id, when
 *                                               resolve: true)
 * A rule is only evaluated on its on: triggers: a rule meant to resolve
 * when some event arrives must list that event type (meetings_postponed
 * lists meeting.held). At a `for` deadline, a `when` that reads no event
 * field is evaluated again at the deadline's time (state may have changed
 * with time); one that reads event fields cannot be (there is no event),
 * so the last evaluation, which held, stands.
 *
 * alert_id = "<rule>/<client>/<fired_at RFC 3339>", the same for the
 * firing and its resolution. Risk = sum of the weights of the client's
 * firing rules, capped at 100 (decay comes with the full risk model).
 *
 * Must not: do I/O, read a clock, allocate on the steady path (alerts are
 * allocated only on transitions, the state only when it grows).
 */
#include "churnd/rules.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/timeutil.h"

typedef struct eng {
    const ruleset_t *rs;
    cstate_t *st;
} eng_t;

static void host_feature(const expr_ctx_t *cx, uint32_t feat, expr_fn_t fn,
                         const expr_val_t *args, size_t n_args, expr_val_t *out) {
    eng_t *g = cx->host_data;
    const feature_def_t *d = &g->rs->features[feat];
    const feature_ops_t *ops = feature_ops(d->kind);
    out->type = EXPR_T_NULL;
    if (!ops) return;
    const feat_state_t *s = &g->st->feats[feat].s;
    ops->query(d, s, fn, args, n_args, cx->now_ms, out);
    if (cx->trend && ops->trend)
        ops->trend(d, s, fn, args, n_args, cx->now_ms, cx->trend);
}

static int host_firing(const expr_ctx_t *cx, uint32_t rule) {
    const eng_t *g = cx->host_data;
    return g->st->rules[rule].status == RULE_FIRING || g->st->rules[rule].n_inc > 0;
}

/* Sum of the decayed weights of the client's firing alerts at now_ms,
 * capped (rules.h, rule_risk_part). */
static double risk_of(const ruleset_t *rs, const cstate_t *st, int64_t now_ms) {
    double r = 0;
    /* Most rules of most clients neither fire nor hold incidents: skip
     * the call for them (their part is 0, and r + 0 is r). `risk` is read
     * at every look-ahead tick of churn_risk. */
    for (size_t i = 0; i < rs->n_rules; i++)
        if (st->rules[i].status == RULE_FIRING || st->rules[i].n_inc > 0)
            r += rule_risk_part(rs, &rs->rules[i], &st->rules[i], now_ms);
    return r > rs->risk_cap ? rs->risk_cap : r;
}

static double host_risk(const expr_ctx_t *cx) {
    eng_t *g = cx->host_data;
    /* Risk decays with time; with no firing and no incident it is 0 for
     * good (the trend stays "unknown" otherwise). */
    if (cx->trend) {
        int moves = 0;
        for (size_t i = 0; i < g->rs->n_rules && !moves; i++)
            moves = g->st->rules[i].status == RULE_FIRING || g->st->rules[i].n_inc > 0;
        if (!moves) *cx->trend = (expr_trend_t){0, INT64_MAX};
    }
    return risk_of(g->rs, g->st, cx->now_ms);
}

static const expr_host_t host = {host_feature, host_firing, host_risk};

/* The var table for this client's segment (hidden last feature). */
static const expr_val_t *vars_of(const ruleset_t *rs, const cstate_t *st) {
    if (!rs->segment_attr || rs->n_features == 0) return rs->var_tables;
    const feat_state_t *s = &st->feats[rs->n_features - 1].s;
    if (s->u.last.v.type != EXPR_T_STR) return rs->var_tables;
    return ruleset_vars_for(rs, s->u.last.v.s);
}

static void ctx_init(expr_ctx_t *cx, eng_t *g, const event_t *ev,
                     int64_t now_ms) {
    memset(cx, 0, sizeof(*cx));
    cx->ev = ev;
    cx->client_id = g->st->client_id;
    cx->client_len = g->st->client_len;
    cx->now_ms = now_ms;
    cx->vars = vars_of(g->rs, g->st);
    cx->host = &host;
    cx->host_data = g;
    cx->exp_opened_ms = INT64_MIN;
}

/* ---- Output ------------------------------------------------------------- */

void engine_out_init(engine_out_t *o) {
    o->alerts = NULL;
    o->n_alerts = 0;
    o->cap = 0;
}

void engine_out_reset(engine_out_t *o) {
    for (size_t i = 0; i < o->n_alerts; i++) alert_clear(&o->alerts[i]);
    o->n_alerts = 0;
}

void engine_out_free(engine_out_t *o) {
    engine_out_reset(o);
    free(o->alerts);
    engine_out_init(o);
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static char *buf_take(buf_t *b) {
    return dup_n(b->len ? (const char *)b->data : "", b->len);
}

static int render_labels(const rule_def_t *r, const expr_ctx_t *cx, buf_t *b,
                         buf_t *tmp) {
    int rc = buf_putc(b, '{');
    for (size_t i = 0; i < r->n_labels && !rc; i++) {
        buf_reset(tmp);
        if (i) rc = buf_append(b, ", ", 2);
        if (!rc) rc = buf_put_json_str(b, r->labels[i].name, strlen(r->labels[i].name));
        if (!rc) rc = buf_append(b, ": ", 2);
        if (!rc) rc = expr_tmpl_render(r->labels[i].tmpl, cx, tmp);
        if (!rc) rc = buf_put_json_str(b, (const char *)tmp->data, tmp->len);
    }
    return rc ? rc : buf_putc(b, '}');
}

static int render_values(const rule_def_t *r, const expr_ctx_t *cx, buf_t *b) {
    int rc = buf_putc(b, '{');
    for (size_t i = 0; i < r->n_sites && !rc; i++) {
        expr_val_t v;
        expr_eval_site(r->sites[i].e, r->sites[i].i, cx, &v);
        if (i) rc = buf_append(b, ", ", 2);
        if (!rc) rc = buf_put_json_str(b, r->sites[i].key, strlen(r->sites[i].key));
        if (!rc) rc = buf_append(b, ": ", 2);
        if (!rc) rc = expr_val_json(&v, b);
    }
    return rc ? rc : buf_putc(b, '}');
}

/* Append one alert for rule ri's transition. The id is that of the
 * rule's current firing (fired_at_ms), keyed by key when not NULL. */
static int emit_keyed(const ruleset_t *rs, cstate_t *st, size_t ri,
                      alert_status_t status, int64_t at_ms, const expr_ctx_t *cx,
                      const event_t *ev, engine_out_t *out, const char *key,
                      size_t key_len, int64_t fired_at_ms, unsigned repeat) {
    const rule_def_t *r = &rs->rules[ri];
    alert_t *v = churn_grow(out->alerts, out->n_alerts, &out->cap, sizeof(*v), 4);
    if (!v) return CHURN_ENOMEM;
    out->alerts = v;
    alert_t a;
    memset(&a, 0, sizeof(a));
    a.rule = r->name;
    a.severity = r->severity;
    a.status = status;
    /* A late event (behind the watermark that fired the rule) can resolve
     * it: the resolution is then stamped at the firing, never before. */
    if (status == ALERT_RESOLVED && at_ms < fired_at_ms) at_ms = fired_at_ms;
    a.at_ms = at_ms;
    a.risk = risk_of(rs, st, at_ms);
    a.repeat = repeat;
    buf_t b, tmp;
    buf_init(&b);
    buf_init(&tmp);
    int rc = alert_id_format(&b, r->name, st->client_id, st->client_len, key,
                             key_len, fired_at_ms);
    if (!rc && !(a.alert_id = buf_take(&b))) rc = CHURN_ENOMEM;
    if (!rc && !(a.client_id = dup_n(st->client_id, st->client_len))) rc = CHURN_ENOMEM;
    if (!rc) {
        buf_reset(&b);
        rc = r->summary ? expr_tmpl_render(r->summary, cx, &b)
                        : buf_printf(&b, "%s", r->name);
        if (!rc && !(a.summary = buf_take(&b))) rc = CHURN_ENOMEM;
    }
    if (!rc) {
        buf_reset(&b);
        rc = render_labels(r, cx, &b, &tmp);
        if (!rc && !(a.labels_json = buf_take(&b))) rc = CHURN_ENOMEM;
    }
    if (!rc) {
        buf_reset(&b);
        rc = render_values(r, cx, &b);
        if (!rc && !(a.values_json = buf_take(&b))) rc = CHURN_ENOMEM;
    }
    if (!rc && ev) {
        /* An event without an id is named by "" (no id to give). */
        a.trigger_event_id = dup_n(ev->id ? ev->id : "", ev->id ? ev->id_len : 0);
        if (!a.trigger_event_id) rc = CHURN_ENOMEM;
    }
    buf_free(&b);
    buf_free(&tmp);
    /* The report's history: a new firing, not its repeats (for a keyed
     * rule, each incident is a firing of its own). */
    if (!rc && status == ALERT_FIRING && repeat == 0)
        rc = ledger_on_firing(&st->ledger, r->name, at_ms);
    if (rc) {
        alert_clear(&a);
        return rc;
    }
    out->alerts[out->n_alerts++] = a;
    return 0;
}

static int emit(const ruleset_t *rs, cstate_t *st, size_t ri,
                alert_status_t status, int64_t at_ms, const expr_ctx_t *cx,
                const event_t *ev, engine_out_t *out) {
    return emit_keyed(rs, st, ri, status, at_ms, cx, ev, out, NULL, 0,
                      st->rules[ri].fired_at_ms, 0);
}

/* ---- What a look-ahead learnt, and what makes it stale ------------------ */

/* A rule's status, firing time or incidents changed: `risk` and firing()
 * read those of every rule, and each rule's ticks are judged against its
 * own status, so what every rule's look-ahead learnt is stale. */
static void forget_all(cstate_t *st) {
    for (size_t i = 0; i < st->n_rules; i++) st->rules[i].la_known = 0;
}

/* Feature f's state changed: stale for the rules whose `when` reads it. */
static void forget_readers(const ruleset_t *rs, cstate_t *st, size_t f) {
    if (!rs->reads) {
        forget_all(st);
        return;
    }
    for (size_t i = 0; i < rs->n_rules; i++)
        if (rs->reads[i * rs->n_features + f]) st->rules[i].la_known = 0;
}

static int fire(const ruleset_t *rs, cstate_t *st, size_t ri, int64_t at_ms,
                const expr_ctx_t *cx, const event_t *ev, engine_out_t *out) {
    rule_state_t *s = &st->rules[ri];
    forget_all(st);
    s->status = RULE_FIRING;
    s->fired_at_ms = at_ms;
    s->last_notified_ms = at_ms;
    s->since_ms = at_ms;
    s->repeats = 0;
    return emit(rs, st, ri, ALERT_FIRING, at_ms, cx, ev, out);
}

/* Apply one evaluation's result to rule ri. */
static int transition(const ruleset_t *rs, cstate_t *st, size_t ri, int holds,
                      const expr_ctx_t *cx, const event_t *ev,
                      engine_out_t *out) {
    const rule_def_t *r = &rs->rules[ri];
    rule_state_t *s = &st->rules[ri];
    switch (s->status) {
    case RULE_INACTIVE:
        if (!holds) return 0;
        if (r->for_ms > 0) {
            s->status = RULE_PENDING;
            s->since_ms = cx->now_ms;
            forget_all(st);
            return 0;
        }
        return fire(rs, st, ri, cx->now_ms, cx, ev, out);
    case RULE_PENDING:
        if (holds) return 0; /* due deadlines were fired before this event */
        s->status = RULE_INACTIVE;
        forget_all(st);
        return 0;
    case RULE_FIRING:
        if (holds) return 0;
        s->status = RULE_INACTIVE;
        forget_all(st);
        if (!r->resolve) return 0;
        return emit(rs, st, ri, ALERT_RESOLVED, cx->now_ms, cx, ev, out);
    }
    return 0;
}

/* ---- Keyed incidents (expired() rules) ---------------------------------- */

static rule_incident_t *find_incident(rule_state_t *s, const char *key, size_t len) {
    for (uint32_t i = 0; i < s->n_inc; i++)
        if (s->inc[i].key_len == len && memcmp(s->inc[i].key, key, len) == 0)
            return &s->inc[i];
    return NULL;
}

static void drop_incident(rule_state_t *s, uint32_t i) {
    free(s->inc[i].key);
    memmove(s->inc + i, s->inc + i + 1, (s->n_inc - i - 1) * sizeof(rule_incident_t));
    s->n_inc--;
}

/* Rule ri holds for the expired expectation x: open its keyed incident
 * (at most RULE_MAX_INCIDENTS per client: the oldest is forgotten, without
 * a resolution, to make room) and publish it. */
static int fire_incident(const ruleset_t *rs, cstate_t *st, size_t ri,
                         const expectation_t *x, const expr_ctx_t *cx,
                         engine_out_t *out) {
    rule_state_t *s = &st->rules[ri];
    if (find_incident(s, x->key, x->key_len)) return 0;
    forget_all(st);
    if (s->n_inc >= RULE_MAX_INCIDENTS) drop_incident(s, 0);
    if (s->n_inc == s->cap_inc) {
        uint32_t cap = s->cap_inc ? s->cap_inc * 2 : 2;
        if (cap > RULE_MAX_INCIDENTS) cap = RULE_MAX_INCIDENTS;
        rule_incident_t *v = realloc(s->inc, cap * sizeof(*v));
        if (!v) return CHURN_ENOMEM;
        s->inc = v;
        s->cap_inc = cap;
    }
    char *k = malloc(x->key_len + 1);
    if (!k) return CHURN_ENOMEM;
    memcpy(k, x->key, x->key_len + 1);
    rule_incident_t *in = &s->inc[s->n_inc++];
    memset(in, 0, sizeof(*in));
    in->key = k;
    in->key_len = x->key_len;
    in->opened_ms = x->opened_ms;
    in->fired_at_ms = x->deadline_ms;
    in->last_notified_ms = x->deadline_ms;
    return emit_keyed(rs, st, ri, ALERT_FIRING, x->deadline_ms, cx, NULL, out,
                      in->key, in->key_len, in->fired_at_ms, 0);
}

/* An awaited event of expect feature fi arrived: the incidents its key
 * names (expectations that expired before it came) are resolved. */
static int resolve_late(const ruleset_t *rs, cstate_t *st, size_t fi,
                        const event_t *ev, expr_ctx_t *cx, unsigned match,
                        engine_out_t *out) {
    const feature_def_t *d = &rs->features[fi];
    char key[EXPECT_MAX_KEY + 1];
    size_t klen;
    if (!feature_is_awaited(d, cx, match) ||
        !feature_event_key(d, ev, key, sizeof(key), &klen))
        return 0;
    for (size_t ri = 0; ri < rs->n_rules; ri++) {
        if (rs->rules[ri].expired_feat != (int32_t)fi) continue;
        rule_state_t *s = &st->rules[ri];
        for (uint32_t i = 0; i < s->n_inc;) {
            rule_incident_t *in = &s->inc[i];
            if (in->key_len != klen || memcmp(in->key, key, klen) != 0) {
                i++;
                continue;
            }
            /* Take it out first: the resolved alert's risk no longer has it. */
            forget_all(st);
            rule_incident_t gone = *in;
            memmove(s->inc + i, s->inc + i + 1, (s->n_inc - i - 1) * sizeof(*in));
            s->n_inc--;
            int rc = 0;
            if (rs->rules[ri].resolve) {
                cx->exp_key = gone.key;
                cx->exp_key_len = gone.key_len;
                cx->exp_opened_ms = gone.opened_ms;
                rc = emit_keyed(rs, st, ri, ALERT_RESOLVED, cx->now_ms, cx, ev, out,
                                gone.key, gone.key_len, gone.fired_at_ms, 0);
                cx->exp_key = NULL;
                cx->exp_key_len = 0;
                cx->exp_opened_ms = INT64_MIN;
            }
            free(gone.key);
            if (rc) return rc;
        }
    }
    return 0;
}

/* ---- alerts: rules evaluated after another rule's transition ------------ */

static int eval_alert_rules(const ruleset_t *rs, cstate_t *st, size_t from,
                            const expr_ctx_t *cx, const event_t *ev,
                            engine_out_t *out) {
    int other = 0;
    for (size_t a = from; a < out->n_alerts && !other; a++)
        for (size_t i = 0; i < rs->n_rules; i++)
            if (out->alerts[a].rule == rs->rules[i].name && !rs->rules[i].on_alerts &&
                out->alerts[a].repeat == 0)
                other = 1;
    if (!other) return 0;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        if (!r->on_alerts) continue;
        int holds = !r->when || expr_eval_bool(r->when, cx);
        int rc = transition(rs, st, i, holds, cx, ev, out);
        if (rc) return rc;
    }
    return 0;
}

/* ---- Timers ------------------------------------------------------------- */

/* `every` after a long silence: at most this many ticks are caught up per
 * rule (the older ones are skipped), so a client idle for years does not
 * cost millions of evaluations. */
#define EVERY_MAX_CATCHUP 10000

/* The largest multiple of step (> 0) at or before t; INT64_MIN when that
 * multiple is below the range (t near INT64_MIN and step huge). */
static int64_t floor_to(int64_t t, int64_t step) {
    int64_t q = t / step;
    if (t % step != 0 && t < 0) {
        if (q - 1 < INT64_MIN / step) return INT64_MIN;
        q--;
    }
    return q * step;
}

/* Schedule `every` rules the state has no tick for yet, from now_ms.
 * every: accepts any duration up to INT64_MAX ms, so the catch-up span
 * saturates and the distance to the last tick is taken unsigned. */
static void schedule_ticks(const ruleset_t *rs, cstate_t *st, int64_t now_ms,
                           int schedule_new) {
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        rule_state_t *s = &st->rules[i];
        if (!r->every_ms) continue;
        if (s->tick_ms == INT64_MIN) {
            if (schedule_new) s->tick_ms = floor_to(now_ms, r->every_ms);
            continue;
        }
        int64_t span = r->every_ms > INT64_MAX / EVERY_MAX_CATCHUP
                           ? INT64_MAX
                           : EVERY_MAX_CATCHUP * r->every_ms;
        /* now_ms - span > tick_ms >= INT64_MIN: no overflow below. */
        if (s->tick_ms < now_ms &&
            (uint64_t)now_ms - (uint64_t)s->tick_ms > (uint64_t)span)
            s->tick_ms = floor_to(now_ms - span, r->every_ms);
    }
}

enum due_kind { DUE_EXPIRE, DUE_FOR, DUE_REPEAT, DUE_INC_REPEAT, DUE_TICK };

typedef struct due {
    int64_t t;
    int kind;
    size_t i;   /* feature or rule */
    uint32_t j; /* expectation or incident */
} due_t;

static void consider(due_t *best, int64_t t, int kind, size_t i, uint32_t j) {
    if (t < best->t) {
        best->t = t;
        best->kind = kind;
        best->i = i;
        best->j = j;
    }
}

static int64_t plus(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }

/* The earliest deadline of the state; ties: expectations, then rules in
 * rule-set order, each in the order for, repeat, incident repeats, tick. */
static due_t next_due_of(const ruleset_t *rs, const cstate_t *st, int ticks) {
    due_t best = {INT64_MAX, 0, 0, 0};
    for (size_t i = 0; i < rs->n_features; i++) {
        const feat_state_t *s = &st->feats[i].s;
        if (rs->features[i].kind != FEAT_EXPECT) continue;
        for (uint32_t j = 0; j < s->u.expect.n; j++)
            if (!s->u.expect.v[j].expired)
                consider(&best, s->u.expect.v[j].deadline_ms, DUE_EXPIRE, i, j);
    }
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        const rule_state_t *s = &st->rules[i];
        if (s->status == RULE_PENDING) consider(&best, plus(s->since_ms, r->for_ms), DUE_FOR, i, 0);
        if (r->repeat_ms && s->status == RULE_FIRING)
            consider(&best, plus(s->last_notified_ms, r->repeat_ms), DUE_REPEAT, i, 0);
        for (uint32_t j = 0; r->repeat_ms && j < s->n_inc; j++)
            consider(&best, plus(s->inc[j].last_notified_ms, r->repeat_ms), DUE_INC_REPEAT, i, j);
        if (ticks && r->every_ms && s->tick_ms != INT64_MIN)
            consider(&best, plus(s->tick_ms, r->every_ms), DUE_TICK, i, 0);
    }
    return best;
}

static due_t next_due(const ruleset_t *rs, const cstate_t *st) {
    return next_due_of(rs, st, 1);
}

static int run_one(const ruleset_t *rs, cstate_t *st, const due_t *d,
                   engine_out_t *out) {
    eng_t g = {rs, st};
    expr_ctx_t cx;
    ctx_init(&cx, &g, NULL, d->t);
    switch (d->kind) {
    case DUE_EXPIRE: {
        expectation_t *x = &st->feats[d->i].s.u.expect.v[d->j];
        x->expired = 1;
        forget_readers(rs, st, d->i);
        cx.exp_key = x->key;
        cx.exp_key_len = x->key_len;
        cx.exp_opened_ms = x->opened_ms;
        for (size_t ri = 0; ri < rs->n_rules; ri++) {
            const rule_def_t *r = &rs->rules[ri];
            if (r->expired_feat != (int32_t)d->i) continue;
            if (r->when && !expr_eval_bool(r->when, &cx)) continue;
            int rc = fire_incident(rs, st, ri, x, &cx, out);
            if (rc) return rc;
        }
        return 0;
    }
    case DUE_FOR: {
        const rule_def_t *r = &rs->rules[d->i];
        int holds = !r->when || expr_uses_event(r->when) || expr_eval_bool(r->when, &cx);
        if (!holds) {
            st->rules[d->i].status = RULE_INACTIVE;
            forget_all(st);
            return 0;
        }
        return fire(rs, st, d->i, d->t, &cx, NULL, out);
    }
    case DUE_REPEAT: {
        rule_state_t *s = &st->rules[d->i];
        s->last_notified_ms = d->t;
        s->repeats++;
        return emit_keyed(rs, st, d->i, ALERT_FIRING, d->t, &cx, NULL, out, NULL, 0,
                          s->fired_at_ms, s->repeats);
    }
    case DUE_INC_REPEAT: {
        rule_incident_t *in = &st->rules[d->i].inc[d->j];
        in->last_notified_ms = d->t;
        in->repeats++;
        cx.exp_key = in->key;
        cx.exp_key_len = in->key_len;
        cx.exp_opened_ms = in->opened_ms;
        return emit_keyed(rs, st, d->i, ALERT_FIRING, d->t, &cx, NULL, out, in->key,
                          in->key_len, in->fired_at_ms, in->repeats);
    }
    case DUE_TICK: {
        const rule_def_t *r = &rs->rules[d->i];
        st->rules[d->i].tick_ms = d->t;
        /* No event at a tick: data.* and event.* are null. */
        int holds = !r->when || expr_eval_bool(r->when, &cx);
        return transition(rs, st, d->i, holds, &cx, NULL, out);
    }
    }
    return 0;
}

/* repeat: after a long silence (an old expectation expiring only now, a
 * late event, a replay across a gap) every missed period would be an alert
 * of its own: millions for `repeat: 1d` across centuries, all held in
 * memory at once. As with every's catch-up, only the last this many
 * periods up to now are sent; the older ones are skipped. */
#define REPEAT_MAX_CATCHUP 100

/* The due repeat d (last notified at *last) when more than
 * REPEAT_MAX_CATCHUP periods are due by now_ms: move *last on by whole
 * periods so that exactly that many remain, and return 1. */
static int skip_old_repeats(int64_t *last, int64_t period, int64_t now_ms) {
    if (*last >= now_ms) return 0;
    uint64_t n = ((uint64_t)now_ms - (uint64_t)*last) / (uint64_t)period;
    if (n <= REPEAT_MAX_CATCHUP) return 0;
    /* At most now_ms - *last: no overflow. */
    *last += (int64_t)((n - REPEAT_MAX_CATCHUP) * (uint64_t)period);
    return 1;
}

/* Ticks before st->quiet_ms and at or before now_ms are done: they were
 * shown to change nothing (look_ahead), and nothing changed since. */
static void skip_quiet_ticks(const ruleset_t *rs, cstate_t *st, int64_t now_ms) {
    if (st->quiet_ms == INT64_MIN) return;
    int64_t lim = now_ms < st->quiet_ms ? now_ms : st->quiet_ms - 1;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        rule_state_t *s = &st->rules[i];
        if (!r->every_ms || s->tick_ms == INT64_MIN) continue;
        int64_t f = floor_to(lim, r->every_ms);
        if (f > s->tick_ms) s->tick_ms = f;
    }
}

/* Would rule ri's tick at t_ms change anything? Its evaluation there, as
 * run_one does it, leaves the status as it is exactly when it holds for a
 * pending or firing rule and does not hold for an inactive one; then no
 * alert is emitted either. *same_until: with the state unchanged, the
 * answer is the same at any tick before it (expr_eval_bool_until). Pure:
 * the state is only read. */
static int tick_changes(const ruleset_t *rs, cstate_t *st, size_t ri,
                        int64_t t_ms, int64_t *same_until) {
    const rule_def_t *r = &rs->rules[ri];
    eng_t g = {rs, st};
    expr_ctx_t cx;
    ctx_init(&cx, &g, NULL, t_ms);
    int holds = 1;
    *same_until = INT64_MAX;
    if (r->when) holds = expr_eval_bool_until(r->when, &cx, same_until);
    return st->rules[ri].status == RULE_INACTIVE ? holds : !holds;
}

/* Evaluations of one rule's `when` in one look-ahead: ticks whose answer
 * is known to stay are stepped over for free, but an answer that cannot
 * be followed (risk while something fires, an equality with a moving
 * value) costs one evaluation per tick. */
#define LOOK_AHEAD_MAX_EVALS 32

/* The ticks *t, *t + every, ... before bound, at most max of them: how
 * many, with *t moved past them (to INT64_MAX past the end of time). */
static unsigned ticks_before(int64_t *t, int64_t every, int64_t bound,
                             unsigned max) {
    if (*t >= bound || max == 0) return 0;
    /* Differences of int64 values below 2^64, exact in uint64. */
    uint64_t gap = (uint64_t)bound - (uint64_t)*t, e = (uint64_t)every;
    uint64_t m = gap / e + (gap % e != 0);
    if (m > max) m = max;
    uint64_t room = (uint64_t)INT64_MAX - (uint64_t)*t;
    *t = m > room / e ? INT64_MAX : (int64_t)((uint64_t)*t + m * e);
    return (unsigned)m;
}

/* After a wake-up: find how far, at most n ticks of each `every` rule
 * ahead and LOOK_AHEAD_MAX_EVALS evaluations of it, nothing can happen.
 * Up to the earliest deadline that is not a tick (an expectation, a
 * `for`, a repeat, a feature's own wake), the state does not change
 * unless a tick changes it, and until then each tick sees the same state
 * at its own time; so every tick before the first one that would change
 * something is a no-op, and quiet_ms is that first one (or the earliest
 * deadline, or the first tick not looked at). The runtime indexes the
 * client there instead of at the next tick. */
static void look_ahead(const ruleset_t *rs, cstate_t *st, unsigned n) {
    st->quiet_ms = INT64_MIN;
    st->look_pending = 0;
    int64_t h = next_due_of(rs, st, 0).t;
    for (size_t i = 0; i < rs->n_features; i++) {
        const feature_def_t *d = &rs->features[i];
        const feature_ops_t *ops = feature_ops(d->kind);
        if (!ops) continue;
        int64_t w = ops->next_wake(d, &st->feats[i].s);
        if (w < h) h = w;
    }
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        rule_state_t *s = &st->rules[i];
        if (!r->every_ms || s->tick_ms == INT64_MIN) continue;
        int64_t t = plus(s->tick_ms, r->every_ms);
        if (t < first) first = t;
        unsigned k = 0;
        int changes = 0;
        /* What an earlier look-ahead learnt still holds while nothing the
         * rule reads has changed (forget_readers, forget_all). If it still
         * reaches half the ticks ahead, take it as it is; otherwise go on
         * from where it stopped, its ticks counting against n. */
        if (s->la_known && s->la_quiet_ms >= t) {
            uint64_t m = s->la_quiet_ms == INT64_MAX
                             ? n
                             : ((uint64_t)s->la_quiet_ms - (uint64_t)t) /
                                   (uint64_t)r->every_ms;
            k = m < n ? (unsigned)m : n;
            if (k >= n / 2) k = n;
            t = s->la_quiet_ms;
            changes = s->la_final;
        }
        unsigned evals = 0;
        for (; !changes && k < n && t < h && t != INT64_MAX; k++) {
            int64_t same_until;
            if (evals++ == LOOK_AHEAD_MAX_EVALS) break; /* t: not looked at */
            if ((changes = tick_changes(rs, st, i, t, &same_until))) break;
            t = plus(t, r->every_ms);
            /* The ticks before same_until would answer the same: step
             * over them as this loop would, without evaluating. */
            k += ticks_before(&t, r->every_ms, same_until < h ? same_until : h,
                              n - 1 - k);
        }
        s->la_quiet_ms = t;
        s->la_final = (uint8_t)changes;
        s->la_known = 1;
        if (t < h) h = t;
    }
    if (first != INT64_MAX && h > first && h != INT64_MAX) st->quiet_ms = h;
}

/* Fire every deadline <= now_ms, earliest first. Each step consumes a
 * deadline (marks an expectation expired, moves a tick or a repeat on, or
 * leaves the pending state), so the loop ends. */
static int run_due(const ruleset_t *rs, cstate_t *st, int64_t now_ms,
                   int schedule_new, engine_out_t *out) {
    schedule_ticks(rs, st, now_ms, schedule_new);
    skip_quiet_ticks(rs, st, now_ms);
    for (;;) {
        due_t d = next_due(rs, st);
        if (d.t > now_ms || d.t == INT64_MAX) return 0;
        st->quiet_ms = INT64_MIN; /* this deadline may change the state */
        /* Checked here rather than up front: an incident or a firing may
         * start within this very loop, far before now_ms. */
        if (d.kind == DUE_REPEAT &&
            skip_old_repeats(&st->rules[d.i].last_notified_ms,
                             rs->rules[d.i].repeat_ms, now_ms))
            continue;
        if (d.kind == DUE_INC_REPEAT &&
            skip_old_repeats(&st->rules[d.i].inc[d.j].last_notified_ms,
                             rs->rules[d.i].repeat_ms, now_ms))
            continue;
        size_t before = out->n_alerts;
        int rc = run_one(rs, st, &d, out);
        if (!rc && out->n_alerts > before) {
            eng_t g = {rs, st};
            expr_ctx_t cx;
            ctx_init(&cx, &g, NULL, d.t);
            rc = eval_alert_rules(rs, st, before, &cx, NULL, out);
        }
        if (rc) return rc;
    }
}

int engine_keeps_type(const ruleset_t *rs, const engine_opts_t *opts,
                      const char *type) {
    return (opts && opts->ledger && ledger_wants_type(type)) ||
           ruleset_uses_type(rs, type);
}

int engine_on_event(const ruleset_t *rs, const engine_opts_t *opts,
                    cstate_t *st, const event_t *ev, engine_out_t *out) {
    return engine_on_event_settled(rs, opts, st, ev, INT64_MIN, out);
}

int engine_on_event_settled(const ruleset_t *rs, const engine_opts_t *opts,
                            cstate_t *st, const event_t *ev,
                            int64_t settled_ms, engine_out_t *out) {
    int led = opts && opts->ledger && ledger_wants_type(ev->type);
    /* What the rule set makes of the type, once (NULL: only globs can
     * match it, each list is asked). */
    const type_info_t *ti = ruleset_type_of(rs, ev->type);
    if (!led && !(ti ? ti->used : ruleset_uses_type(rs, ev->type)))
        return ENGINE_IGNORED;
    uint64_t idh = 0;
    int dedup = ev->id && opts && opts->dedup_max_ids > 0 && opts->dedup_window_ms > 0;
    if (dedup) {
        idh = churn_hash64(ev->id, ev->id_len, CHURN_HASH_SEED);
        if (cstate_dedup_seen(st, idh)) return ENGINE_DUPLICATE;
    }
    int rc = cstate_bind(st, rs);
    /* The state changed at an earlier event of the same batch (the
     * runtime looks ahead once per batch, at commit) and ticks fall
     * between that event and this one: look ahead now, as a commit
     * between the two would have, so that run_due steps over the quiet
     * ticks instead of evaluating each. A batch may hold a client's whole
     * history (a backlog released partition by partition). */
    if (!rc && opts && opts->lookahead_ticks && st->look_pending &&
        cstate_next_tick_after(st, rs, INT64_MIN) <=
            (settled_ms > ev->ts_ms ? settled_ms : ev->ts_ms))
        look_ahead(rs, st, opts->lookahead_ticks);
    /* A late event: the runtime fired every deadline up to settled_ms
     * already, except the ticks look_ahead let it skip (no-ops, no
     * alerts). Mark those done first, as they were for the clients it did
     * wake; a rule not scheduled yet starts from the event, as ever. */
    if (!rc && opts && opts->lookahead_ticks && settled_ms > ev->ts_ms)
        rc = run_due(rs, st, settled_ms, 0, out);
    if (!rc) rc = run_due(rs, st, ev->ts_ms, 1, out);
    st->quiet_ms = INT64_MIN; /* the event changes the state */
    if (!rc && dedup) rc = cstate_dedup_add(st, idh, ev->ts_ms, opts);
    if (!rc && led) rc = ledger_on_event(&st->ledger, ev);
    if (rc) return rc;

    eng_t g = {rs, st};
    expr_ctx_t cx;
    ctx_init(&cx, &g, ev, ev->ts_ms);
    for (size_t i = 0; i < rs->n_features; i++) {
        const feature_def_t *d = &rs->features[i];
        unsigned match = ti ? ti->feat[i] : feature_type_match(d, ev->type);
        if (!match) continue;
        const feature_ops_t *ops = feature_ops(d->kind);
        if (!ops) continue;
        forget_readers(rs, st, i);
        rc = ops->update(d, &st->feats[i].s, ev, &cx, match);
        if (rc < 0) return rc;
        if (d->kind == FEAT_EXPECT &&
            (rc = resolve_late(rs, st, i, ev, &cx, match, out)))
            return rc;
    }
    cx.vars = vars_of(rs, st); /* a client.updated may change the segment */
    size_t before = out->n_alerts;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        if (!(ti ? ti->rule_on[i] : type_set_match(&r->on, ev->type))) continue;
        int holds = !r->when || expr_eval_bool(r->when, &cx);
        rc = transition(rs, st, i, holds, &cx, ev, out);
        if (rc) return rc;
    }
    if (out->n_alerts > before && (rc = eval_alert_rules(rs, st, before, &cx, ev, out)))
        return rc;
    /* Look past the client's quiet ticks before it is indexed, so that it
     * is woken at the first tick that can change something rather than at
     * the next one; but once per batch (engine_look_ahead, called by the
     * runtime at commit), not after each event: a busy client's next event
     * would make this event's look-ahead moot, and the ticks between two
     * events of one batch are few and evaluated for real at the next one. */
    if (opts && opts->lookahead_ticks) st->look_pending = 1;
    return ENGINE_APPLIED;
}

void engine_drop_quiet(const ruleset_t *rs, cstate_t *st, int64_t settled_ms) {
    if (st->quiet_ms == INT64_MIN) return;
    /* quiet_ms is only set on a state bound to the rule set at hand. */
    if (settled_ms != INT64_MIN && st->bound && st->bound_hash == rs->hash)
        skip_quiet_ticks(rs, st, settled_ms);
    st->quiet_ms = INT64_MIN;
}

void engine_settle_quiet(const ruleset_t *rs, cstate_t *st, int64_t settled_ms) {
    st->quiet_ms = INT64_MIN;
    int64_t idx = st->indexed_wake;
    if (settled_ms == INT64_MIN || idx == INT64_MAX || idx == INT64_MIN) return;
    /* Every deadline of the state before its index entry is a tick that
     * changes nothing: look_ahead put the entry there, or there is none
     * (the entry is the natural next deadline). Those at or before
     * settled_ms have passed the runtime's timers: done. This holds
     * whatever rule set indexed the state, since a rule's id names its
     * definition (every included); so the state need not be bound. */
    int64_t lim = settled_ms < idx - 1 ? settled_ms : idx - 1;
    int aligned = st->bound && st->bound_hash == rs->hash;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        if (!r->every_ms) continue;
        rule_state_t *s = NULL;
        if (aligned) {
            s = &st->rules[i];
        } else { /* as decoded: by id, as cstate_next_wake */
            for (size_t j = 0; j < st->n_rules && !s; j++)
                if (st->rules[j].id == r->id) s = &st->rules[j];
        }
        if (!s || s->tick_ms == INT64_MIN) continue;
        int64_t f = floor_to(lim, r->every_ms);
        if (f > s->tick_ms) s->tick_ms = f;
    }
}

void engine_resume_quiet(const ruleset_t *rs, const engine_opts_t *opts,
                         cstate_t *st) {
    if (!opts || !opts->lookahead_ticks || cstate_bind(st, rs) != 0) return;
    int64_t idx = st->indexed_wake;
    if (idx != INT64_MAX && idx != INT64_MIN) st->quiet_ms = idx;
}

void engine_look_ahead(const ruleset_t *rs, const engine_opts_t *opts,
                       cstate_t *st) {
    if (!st->look_pending) return;
    st->look_pending = 0;
    /* Only a bound state can be looked at; engine_on_event bound it. */
    if (opts && opts->lookahead_ticks && st->bound && st->bound_hash == rs->hash)
        look_ahead(rs, st, opts->lookahead_ticks);
}

int engine_on_time(const ruleset_t *rs, const engine_opts_t *opts,
                   cstate_t *st, int64_t now_ms, engine_out_t *out) {
    int rc = cstate_bind(st, rs);
    if (!rc) rc = run_due(rs, st, now_ms, 1, out);
    if (!rc && opts && opts->lookahead_ticks)
        look_ahead(rs, st, opts->lookahead_ticks);
    return rc;
}
