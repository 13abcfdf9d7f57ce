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
    const eng_t *g = cx->host_data;
    const feature_def_t *d = &g->rs->features[feat];
    const feature_ops_t *ops = feature_ops(d->kind);
    out->type = EXPR_T_NULL;
    if (ops) ops->query(d, &g->st->feats[feat].s, fn, args, n_args, cx->now_ms, out);
}

static int host_firing(const expr_ctx_t *cx, uint32_t rule) {
    const eng_t *g = cx->host_data;
    return g->st->rules[rule].status == RULE_FIRING;
}

static double risk_of(const ruleset_t *rs, const cstate_t *st) {
    double r = 0;
    for (size_t i = 0; i < rs->n_rules; i++)
        if (st->rules[i].status == RULE_FIRING) r += rs->rules[i].weight;
    return r > 100 ? 100 : r;
}

static double host_risk(const expr_ctx_t *cx) {
    const eng_t *g = cx->host_data;
    return risk_of(g->rs, g->st);
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

/* Append one alert for rule ri's transition. */
static int emit(const ruleset_t *rs, cstate_t *st, size_t ri,
                alert_status_t status, int64_t at_ms, const expr_ctx_t *cx,
                const event_t *ev, engine_out_t *out) {
    const rule_def_t *r = &rs->rules[ri];
    if (out->n_alerts == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 4;
        alert_t *v = realloc(out->alerts, cap * sizeof(alert_t));
        if (!v) return CHURN_ENOMEM;
        out->alerts = v;
        out->cap = cap;
    }
    alert_t a;
    memset(&a, 0, sizeof(a));
    a.rule = r->name;
    a.severity = r->severity;
    a.status = status;
    a.at_ms = at_ms;
    a.risk = risk_of(rs, st);
    buf_t b, tmp;
    buf_init(&b);
    buf_init(&tmp);
    char ts[TIME_RFC3339_MAX];
    time_format_rfc3339(st->rules[ri].fired_at_ms, ts, sizeof(ts));
    int rc = buf_printf(&b, "%s/", r->name);
    if (!rc) rc = buf_append(&b, st->client_id, st->client_len);
    if (!rc) rc = buf_printf(&b, "/%s", ts);
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
    if (rc) {
        alert_clear(&a);
        return rc;
    }
    out->alerts[out->n_alerts++] = a;
    return 0;
}

static int fire(const ruleset_t *rs, cstate_t *st, size_t ri, int64_t at_ms,
                const expr_ctx_t *cx, const event_t *ev, engine_out_t *out) {
    rule_state_t *s = &st->rules[ri];
    s->status = RULE_FIRING;
    s->fired_at_ms = at_ms;
    s->last_notified_ms = at_ms;
    s->since_ms = at_ms;
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
            return 0;
        }
        return fire(rs, st, ri, cx->now_ms, cx, ev, out);
    case RULE_PENDING:
        if (!holds) s->status = RULE_INACTIVE;
        return 0; /* due deadlines were fired before this event */
    case RULE_FIRING:
        if (holds) return 0;
        s->status = RULE_INACTIVE;
        if (!r->resolve) return 0;
        return emit(rs, st, ri, ALERT_RESOLVED, cx->now_ms, cx, ev, out);
    }
    return 0;
}

static int64_t deadline(const rule_def_t *r, const rule_state_t *s) {
    return s->since_ms > INT64_MAX - r->for_ms ? INT64_MAX : s->since_ms + r->for_ms;
}

/* Fire every pending deadline <= now_ms, earliest first. */
static int run_due(const ruleset_t *rs, cstate_t *st, int64_t now_ms,
                   engine_out_t *out) {
    eng_t g = {rs, st};
    for (;;) {
        size_t best = SIZE_MAX;
        int64_t best_t = INT64_MAX;
        for (size_t i = 0; i < rs->n_rules; i++) {
            if (st->rules[i].status != RULE_PENDING) continue;
            int64_t t = deadline(&rs->rules[i], &st->rules[i]);
            if (t <= now_ms && t < best_t) {
                best = i;
                best_t = t;
            }
        }
        if (best == SIZE_MAX) return 0;
        const rule_def_t *r = &rs->rules[best];
        expr_ctx_t cx;
        ctx_init(&cx, &g, NULL, best_t);
        int holds = !r->when || expr_uses_event(r->when) ||
                    expr_eval_bool(r->when, &cx);
        if (!holds) {
            st->rules[best].status = RULE_INACTIVE;
            continue;
        }
        int rc = fire(rs, st, best, best_t, &cx, NULL, out);
        if (rc) return rc;
    }
}

int engine_on_event(const ruleset_t *rs, const engine_opts_t *opts,
                    cstate_t *st, const event_t *ev, engine_out_t *out) {
    if (!ruleset_uses_type(rs, ev->type)) return ENGINE_IGNORED;
    uint64_t idh = 0;
    int dedup = ev->id && opts && opts->dedup_max_ids > 0 && opts->dedup_window_ms > 0;
    if (dedup) {
        idh = churn_hash64(ev->id, ev->id_len, CHURN_HASH_SEED);
        if (cstate_dedup_seen(st, idh)) return ENGINE_DUPLICATE;
    }
    int rc = cstate_bind(st, rs);
    if (!rc) rc = run_due(rs, st, ev->ts_ms, out);
    if (!rc && dedup) rc = cstate_dedup_add(st, idh, ev->ts_ms, opts);
    if (rc) return rc;

    eng_t g = {rs, st};
    expr_ctx_t cx;
    ctx_init(&cx, &g, ev, ev->ts_ms);
    for (size_t i = 0; i < rs->n_features; i++) {
        const feature_def_t *d = &rs->features[i];
        if (!feature_wants_type(d, ev->type)) continue;
        const feature_ops_t *ops = feature_ops(d->kind);
        if (!ops) continue;
        rc = ops->update(d, &st->feats[i].s, ev, &cx);
        if (rc < 0) return rc;
    }
    cx.vars = vars_of(rs, st); /* a client.updated may change the segment */
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        if (!type_set_match(&r->on, ev->type)) continue;
        int holds = !r->when || expr_eval_bool(r->when, &cx);
        rc = transition(rs, st, i, holds, &cx, ev, out);
        if (rc) return rc;
    }
    return ENGINE_APPLIED;
}

int engine_on_time(const ruleset_t *rs, const engine_opts_t *opts,
                   cstate_t *st, int64_t now_ms, engine_out_t *out) {
    (void)opts;
    int rc = cstate_bind(st, rs);
    return rc ? rc : run_due(rs, st, now_ms, out);
}
