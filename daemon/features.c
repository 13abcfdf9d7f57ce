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
 * series and expect come next; their rows are NULL (the loader rejects
 * them with "not supported yet").
 *
 * Payloads (inside a cstate section, after the kind byte; see cstate.c):
 *   streak: varint count, svarint last_ms
 *   last/latest: svarint ts_ms, u8 value type, then per type: nothing
 *                (none), u8 (bool), u64be IEEE bits (number), bytes (string)
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
    return rc;
}

int feature_wants_type(const feature_def_t *d, const char *type) {
    return type_set_match(&d->on, type) || type_set_match(&d->reset_on, type);
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
                         const event_t *ev, const expr_ctx_t *cx) {
    if (type_set_match(&d->on, ev->type)) {
        if (!where_holds(d, cx)) return 0;
        s->u.streak.count++;
        s->u.streak.last_ms = ev->ts_ms;
        return 1;
    }
    if (type_set_match(&d->reset_on, ev->type)) {
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

static void last_clear(feat_state_t *s) {
    free(s->u.last.v.s);
    last_init(s);
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
                       const event_t *ev, const expr_ctx_t *cx) {
    if (!type_set_match(&d->on, ev->type) || !where_holds(d, cx)) return 0;
    if (d->kind == FEAT_LATEST) {
        const cJSON *j = ev->root ? event_path_segs(ev->root, d->segs, d->n_segs)
                                  : NULL;
        int rc = value_set_json(&s->u.last.v, j);
        if (rc <= 0) return rc;
        s->u.last.ts_ms = ev->ts_ms;
        return 1;
    }
    /* last: the time always, the value when the event carries one. */
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
    case EXPR_T_STR: return buf_put_bytes(out, v->s, v->len);
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
    case EXPR_T_NULL: v->type = EXPR_T_NULL; return 0;
    case EXPR_T_BOOL: {
        uint8_t b;
        if ((rc = reader_u8(r, &b))) return rc;
        if (b > 1) return CHURN_ECORRUPT;
        v->type = EXPR_T_BOOL;
        v->num = b;
        return 0;
    }
    case EXPR_T_NUM: {
        uint64_t bits;
        if ((rc = reader_u64be(r, &bits))) return rc;
        memcpy(&v->num, &bits, sizeof(bits));
        if (!isfinite(v->num)) return CHURN_ECORRUPT;
        v->type = EXPR_T_NUM;
        return 0;
    }
    case EXPR_T_STR: {
        const uint8_t *p;
        size_t n;
        if ((rc = reader_bytes(r, &p, &n))) return rc;
        if (n > FEAT_VALUE_MAX_STR) return CHURN_ECORRUPT;
        return value_set_str(v, (const char *)p, n);
    }
    }
    return CHURN_ECORRUPT;
}

static void last_query(const feature_def_t *d, const feat_state_t *s,
                       expr_fn_t fn, const expr_val_t *args, size_t n_args,
                       int64_t now_ms, expr_val_t *out) {
    (void)d;
    (void)args;
    (void)n_args;
    const feat_value_t *v = &s->u.last.v;
    switch (fn) {
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
    return rc ? rc : buf_putc(out, '}');
}

/* ---- The table ---------------------------------------------------------- */

static const feature_ops_t streak_ops = {
    FEAT_STREAK, streak_init, nothing_to_clear, streak_update,
    streak_encode, streak_decode, streak_query, no_wake, streak_describe,
};

static const feature_ops_t last_ops = {
    FEAT_LAST, last_init, last_clear, last_update,
    last_encode, last_decode, last_query, no_wake, last_describe,
};

static const feature_ops_t latest_ops = {
    FEAT_LATEST, last_init, last_clear, last_update,
    last_encode, last_decode, last_query, no_wake, last_describe,
};

const feature_ops_t *feature_ops(feature_kind_t kind) {
    switch (kind) {
    case FEAT_STREAK: return &streak_ops;
    case FEAT_LAST: return &last_ops;
    case FEAT_LATEST: return &latest_ops;
    case FEAT_SERIES:
    case FEAT_EXPECT: return NULL; /* next: see the file comment */
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
