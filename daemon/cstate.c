/*
 * cstate.c - one client's state: recent event ids (dedup), feature
 * sections, rule sections, the indexed wake time; and its record format.
 *
 * Record format, version 3 (all integers LEB128 varints, s = zigzag,
 * u64be = 8 bytes big-endian):
 *
 *   u8     version = 3
 *   svar   indexed_wake_ms              (INT64_MAX: none)
 *   svar   dedup newest event time
 *   var    n_dedup, then n x { u64be id_hash, svar ts_ms }
 *   var    n_features, then n x { u64be feature_id, u8 kind, bytes payload }
 *   var    n_rules, then n x { u64be rule_id, u8 status, svar since_ms,
 *                              svar fired_at_ms, svar last_notified_ms,
 *                              var repeats, svar tick_ms,
 *                              var n_incidents, then n x { bytes key,
 *                                var repeats, svar opened_ms,
 *                                svar fired_at_ms, svar last_notified_ms } }
 *   ledger (ledger.c): the client's commercial history for `churnd report`
 *
 * Version 2 is the same without the ledger (it decodes with an empty one).
 * Version 1 (before every:, repeat: and keyed incidents) is the same
 * without the fields after last_notified_ms; it still decodes (repeats 0,
 * no tick yet, no incidents) and is written back as version 3. Why a new
 * version rather than another section kind: rule sections are not length
 * prefixed, so v1 readers could not skip the new fields. A build that
 * reads only v1 refuses v2 records (rolling back past this change needs
 * the state rebuilt).
 *
 * The decoder checks everything it can without the rule set: the version,
 * every length against what is left, each feature payload against its
 * kind's decoder, statuses in range, no trailing bytes. Any violation is
 * CHURN_ECORRUPT and nothing is guessed.
 *
 * A feature section of a kind this build has no decoder for (a newer
 * build wrote it; this one was rolled back) is kept as opaque bytes: it is
 * re-encoded unchanged and dropped at the first bind, like any section the
 * rule set does not have. A section of a known kind that does not decode
 * is corrupt.
 *
 * Sections and rule sets: cstate_decode has no rule set, so decoded
 * sections are kept as they are, including those of features and rules the
 * running set no longer has. The first time the engine applies a set to
 * the state, cstate_bind aligns the sections with the set by id: matching
 * ones are kept, new ones start fresh, the rest are dropped then (and so
 * vanish from the next record). A state decoded and re-encoded without
 * being bound keeps every section, so a tool that only reads states loses
 * nothing.
 *
 * Must not: do I/O or read a clock.
 */
#include "churnd/rules.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/timeutil.h"

#define CSTATE_VERSION 3
#define CSTATE_VERSION_2 2
#define CSTATE_VERSION_1 1
/* Defensive bounds on what a record may claim. */
#define CSTATE_MAX_DEDUP (1u << 20)
#define CSTATE_MAX_SECTIONS (1u << 16)

cstate_t *cstate_new(const char *client_id, size_t len) {
    cstate_t *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    st->client_id = malloc(len + 1);
    if (!st->client_id) {
        free(st);
        return NULL;
    }
    memcpy(st->client_id, client_id, len);
    st->client_id[len] = '\0';
    st->client_len = len;
    st->indexed_wake = INT64_MAX;
    st->dd_max_ts = INT64_MIN;
    st->dd_min_ts = INT64_MIN;
    st->quiet_ms = INT64_MIN;
    ledger_init(&st->ledger);
    return st;
}

static void free_feats(feat_slot_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (v[i].raw) free(v[i].raw);
        else feat_state_clear(&v[i].s);
    }
    free(v);
}

void rule_state_clear(rule_state_t *s) {
    for (uint32_t i = 0; i < s->n_inc; i++) free(s->inc[i].key);
    free(s->inc);
    s->inc = NULL;
    s->n_inc = s->cap_inc = 0;
}

static void free_rules(rule_state_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) rule_state_clear(&v[i]);
    free(v);
}

void cstate_free(cstate_t *st) {
    if (!st) return;
    free(st->client_id);
    free(st->dd_ids);
    free(st->dd_ts);
    free_feats(st->feats, st->n_feats);
    free_rules(st->rules, st->n_rules);
    ledger_clear(&st->ledger);
    free(st);
}

size_t cstate_heap_bytes(const cstate_t *st) {
    size_t n = churn_heap_cost(sizeof(*st)) + churn_heap_cost(st->client_len + 1) +
               2 * churn_heap_cost(st->dd_cap * sizeof(uint64_t)) +
               churn_heap_cost(st->n_feats * sizeof(feat_slot_t)) +
               churn_heap_cost(st->n_rules * sizeof(rule_state_t)) +
               ledger_heap_bytes(&st->ledger);
    for (size_t i = 0; i < st->n_feats; i++)
        n += st->feats[i].raw ? churn_heap_cost(st->feats[i].raw_len)
                              : feat_state_heap_bytes(&st->feats[i].s);
    for (size_t i = 0; i < st->n_rules; i++) {
        const rule_state_t *r = &st->rules[i];
        n += churn_heap_cost((size_t)r->cap_inc * sizeof(rule_incident_t));
        for (uint32_t j = 0; j < r->n_inc; j++)
            n += churn_heap_cost((size_t)r->inc[j].key_len + 1);
    }
    return n;
}

static int64_t add_sat(int64_t a, int64_t b) {
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

int64_t rule_next_due(const rule_def_t *r, const rule_state_t *s) {
    int64_t next = INT64_MAX, t;
    if (s->status == RULE_PENDING) next = add_sat(s->since_ms, r->for_ms);
    if (r->repeat_ms && s->status == RULE_FIRING &&
        (t = add_sat(s->last_notified_ms, r->repeat_ms)) < next)
        next = t;
    if (r->repeat_ms)
        for (uint32_t i = 0; i < s->n_inc; i++)
            if ((t = add_sat(s->inc[i].last_notified_ms, r->repeat_ms)) < next) next = t;
    if (r->every_ms && s->tick_ms != INT64_MIN &&
        (t = add_sat(s->tick_ms, r->every_ms)) < next)
        next = t;
    return next;
}

const char *cstate_client_id(const cstate_t *st) { return st->client_id; }

void cstate_count_expectations(const cstate_t *st, uint64_t *open,
                               uint64_t *overdue) {
    *open = *overdue = 0;
    for (size_t i = 0; i < st->n_feats; i++) {
        const feat_slot_t *f = &st->feats[i];
        if (f->raw || f->s.kind != FEAT_EXPECT) continue;
        for (uint32_t k = 0; k < f->s.u.expect.n; k++) {
            if (f->s.u.expect.v[k].expired) (*overdue)++;
            else (*open)++;
        }
    }
}

void cstate_prefetch(const cstate_t *st) {
    const char *f = (const char *)st->feats, *r = (const char *)st->rules;
    size_t nf = st->n_feats * sizeof(*st->feats), nr = st->n_rules * sizeof(*st->rules);
    for (size_t o = 0; f && o < nf; o += 64) __builtin_prefetch(f + o);
    for (size_t o = 0; r && o < nr; o += 64) __builtin_prefetch(r + o);
    if (st->dd_n) {
        __builtin_prefetch(&st->dd_ids[st->dd_n - 1]);
        __builtin_prefetch(&st->dd_ts[st->dd_n - 1]);
    }
}

int64_t cstate_indexed_wake(const cstate_t *st) { return st->indexed_wake; }
void cstate_set_indexed_wake(cstate_t *st, int64_t ts_ms) {
    st->indexed_wake = ts_ms;
}
size_t cstate_wake_slot(const cstate_t *st) { return st->wake_slot; }
void cstate_set_wake_slot(cstate_t *st, size_t slot) { st->wake_slot = slot; }

/* ---- Dedup -------------------------------------------------------------- */

/* An id is remembered while the client's newest event time is within
 * dedup_window_ms of the time it was recorded at, and among the newest
 * dedup_max_ids ids; only event time counts, so replay is exact. */
int cstate_dedup_seen(const cstate_t *st, uint64_t id_hash) {
    for (size_t i = 0; i < st->dd_n; i++)
        if (st->dd_ids[i] == id_hash) return 1;
    return 0;
}

int cstate_dedup_add(cstate_t *st, uint64_t id_hash, int64_t ts_ms,
                     const engine_opts_t *opts) {
    if (opts->dedup_max_ids == 0 || opts->dedup_window_ms <= 0) return 0;
    if (ts_ms > st->dd_max_ts) st->dd_max_ts = ts_ms;
    /* Drop what left the window (in place, keeping arrival order); skip
     * the pass while the oldest remembered id is still inside it. */
    int64_t horizon = st->dd_max_ts < INT64_MIN + opts->dedup_window_ms
                          ? INT64_MIN
                          : st->dd_max_ts - opts->dedup_window_ms;
    if (st->dd_n && st->dd_min_ts < horizon) {
        size_t k = 0;
        int64_t min = INT64_MAX;
        for (size_t i = 0; i < st->dd_n; i++)
            if (st->dd_ts[i] >= horizon) {
                st->dd_ids[k] = st->dd_ids[i];
                st->dd_ts[k] = st->dd_ts[i];
                if (st->dd_ts[i] < min) min = st->dd_ts[i];
                k++;
            }
        st->dd_n = k;
        st->dd_min_ts = min;
    }
    if (ts_ms < horizon) return 0; /* already too old to be remembered */
    if (st->dd_n >= opts->dedup_max_ids) {
        size_t drop = st->dd_n - opts->dedup_max_ids + 1;
        memmove(st->dd_ids, st->dd_ids + drop, (st->dd_n - drop) * sizeof(uint64_t));
        memmove(st->dd_ts, st->dd_ts + drop, (st->dd_n - drop) * sizeof(int64_t));
        st->dd_n -= drop;
    }
    if (st->dd_n == st->dd_cap) {
        size_t cap = st->dd_cap ? st->dd_cap * 2 : 8;
        if (cap > opts->dedup_max_ids) cap = opts->dedup_max_ids;
        if (cap <= st->dd_n) cap = st->dd_n + 1;
        uint64_t *ids = realloc(st->dd_ids, cap * sizeof(uint64_t));
        if (!ids) return CHURN_ENOMEM;
        st->dd_ids = ids;
        int64_t *ts = realloc(st->dd_ts, cap * sizeof(int64_t));
        if (!ts) return CHURN_ENOMEM;
        st->dd_ts = ts;
        st->dd_cap = cap;
    }
    st->dd_ids[st->dd_n] = id_hash;
    st->dd_ts[st->dd_n] = ts_ms;
    if (st->dd_n == 0 || ts_ms < st->dd_min_ts) st->dd_min_ts = ts_ms;
    st->dd_n++;
    return 0;
}

/* ---- Binding to a rule set ---------------------------------------------- */

int cstate_bind(cstate_t *st, const ruleset_t *rs) {
    if (st->bound && st->bound_hash == rs->hash) return 0;
    st->quiet_ms = INT64_MIN; /* known under another rule set */
    feat_slot_t *nf = calloc(rs->n_features ? rs->n_features : 1, sizeof(*nf));
    rule_state_t *nr = calloc(rs->n_rules ? rs->n_rules : 1, sizeof(*nr));
    if (!nf || !nr) {
        free(nf);
        free(nr);
        return CHURN_ENOMEM;
    }
    /* Move matching sections; mark moved ones by clearing their id slot
     * (id 0 is never produced for a real definition in practice, and a
     * collision would only reset that one section). */
    for (size_t i = 0; i < rs->n_features; i++) {
        const feature_def_t *d = &rs->features[i];
        nf[i].id = d->id;
        size_t j;
        for (j = 0; j < st->n_feats; j++)
            if (st->feats[j].id == d->id && st->feats[j].s.kind == d->kind &&
                !st->feats[j].raw)
                break;
        if (j < st->n_feats) {
            nf[i].s = st->feats[j].s;
            /* The old slot no longer owns it. */
            feat_state_init(&st->feats[j].s, (feature_kind_t)st->feats[j].s.kind);
            st->feats[j].id = 0;
            st->feats[j].s.kind = 0;
        } else {
            feat_state_init(&nf[i].s, d->kind);
        }
    }
    for (size_t i = 0; i < rs->n_rules; i++) {
        nr[i].id = rs->rules[i].id;
        nr[i].tick_ms = INT64_MIN;
        for (size_t j = 0; j < st->n_rules; j++)
            if (st->rules[j].id == rs->rules[i].id) {
                nr[i] = st->rules[j];
                nr[i].la_known = 0; /* learnt under another rule set */
                /* moved: the old slot no longer owns the incidents */
                st->rules[j].inc = NULL;
                st->rules[j].n_inc = st->rules[j].cap_inc = 0;
                st->rules[j].id = 0;
                break;
            }
    }
    free_feats(st->feats, st->n_feats);
    free_rules(st->rules, st->n_rules);
    st->feats = nf;
    st->n_feats = rs->n_features;
    st->rules = nr;
    st->n_rules = rs->n_rules;
    st->bound = 1;
    st->bound_hash = rs->hash;
    return 0;
}

int64_t cstate_next_wake(const cstate_t *st, const ruleset_t *rs) {
    if (!rs) return INT64_MAX;
    int64_t next = INT64_MAX;
    int aligned = st->bound && st->bound_hash == rs->hash;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        const rule_state_t *s = NULL;
        if (aligned) {
            s = &st->rules[i];
        } else {
            for (size_t j = 0; j < st->n_rules && !s; j++)
                if (st->rules[j].id == r->id) s = &st->rules[j];
        }
        if (!s) continue;
        int64_t due = rule_next_due(r, s);
        if (due < next) next = due;
    }
    for (size_t i = 0; i < rs->n_features; i++) {
        const feature_def_t *d = &rs->features[i];
        const feature_ops_t *ops = feature_ops(d->kind);
        const feat_state_t *s = NULL;
        if (aligned) {
            s = &st->feats[i].s;
        } else {
            for (size_t j = 0; j < st->n_feats && !s; j++)
                if (st->feats[j].id == d->id && st->feats[j].s.kind == d->kind &&
                    !st->feats[j].raw)
                    s = &st->feats[j].s;
        }
        if (!s || !ops) continue;
        int64_t due = ops->next_wake(d, s);
        if (due < next) next = due;
    }
    /* Ticks before quiet_ms change nothing: no need to wake for them (no
     * other deadline comes before it, engine.c look_ahead). */
    if (aligned && st->quiet_ms != INT64_MIN && next < st->quiet_ms)
        next = st->quiet_ms;
    return next;
}

int64_t cstate_next_tick_after(const cstate_t *st, const ruleset_t *rs,
                               int64_t pos_ms) {
    if (!rs) return INT64_MAX;
    int aligned = st->bound && st->bound_hash == rs->hash;
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_def_t *r = &rs->rules[i];
        const rule_state_t *s = NULL;
        if (aligned) {
            s = &st->rules[i];
        } else { /* as decoded: by id, as cstate_next_wake */
            for (size_t j = 0; j < st->n_rules && !s; j++)
                if (st->rules[j].id == r->id) s = &st->rules[j];
        }
        if (!s || !r->every_ms || s->tick_ms == INT64_MIN) continue;
        int64_t p = pos_ms > s->tick_ms ? pos_ms : s->tick_ms;
        /* The last multiple of every_ms at or before p, then the next. */
        int64_t q = p / r->every_ms;
        if (p % r->every_ms != 0 && p < 0) q--;
        if (q > INT64_MAX / r->every_ms - 1) continue;
        int64_t t = (q + 1) * r->every_ms;
        if (t < next) next = t;
    }
    return next;
}

/* ---- Encoding ----------------------------------------------------------- */

int cstate_encode(const cstate_t *st, buf_t *out) {
    buf_t tmp;
    buf_init(&tmp);
    int rc = buf_putc(out, CSTATE_VERSION);
    if (!rc) rc = buf_put_svarint(out, st->indexed_wake);
    if (!rc) rc = buf_put_svarint(out, st->dd_max_ts);
    if (!rc) rc = buf_put_varint(out, st->dd_n);
    for (size_t i = 0; i < st->dd_n && !rc; i++) {
        rc = buf_put_u64be(out, st->dd_ids[i]);
        if (!rc) rc = buf_put_svarint(out, st->dd_ts[i]);
    }
    if (!rc) rc = buf_put_varint(out, st->n_feats);
    for (size_t i = 0; i < st->n_feats && !rc; i++) {
        const feat_slot_t *f = &st->feats[i];
        buf_reset(&tmp);
        rc = buf_put_u64be(out, f->id);
        if (!rc) rc = buf_putc(out, f->s.kind);
        if (!rc && f->raw) {
            rc = buf_put_bytes(out, f->raw, f->raw_len);
            continue;
        }
        if (!rc) rc = feat_state_encode(&f->s, &tmp);
        if (!rc) rc = buf_put_bytes(out, tmp.data, tmp.len);
    }
    if (!rc) rc = buf_put_varint(out, st->n_rules);
    for (size_t i = 0; i < st->n_rules && !rc; i++) {
        const rule_state_t *r = &st->rules[i];
        rc = buf_put_u64be(out, r->id);
        if (!rc) rc = buf_putc(out, r->status);
        if (!rc) rc = buf_put_svarint(out, r->since_ms);
        if (!rc) rc = buf_put_svarint(out, r->fired_at_ms);
        if (!rc) rc = buf_put_svarint(out, r->last_notified_ms);
        if (!rc) rc = buf_put_varint(out, r->repeats);
        if (!rc) rc = buf_put_svarint(out, r->tick_ms);
        if (!rc) rc = buf_put_varint(out, r->n_inc);
        for (uint32_t k = 0; k < r->n_inc && !rc; k++) {
            const rule_incident_t *x = &r->inc[k];
            rc = buf_put_bytes(out, x->key, x->key_len);
            if (!rc) rc = buf_put_varint(out, x->repeats);
            if (!rc) rc = buf_put_svarint(out, x->opened_ms);
            if (!rc) rc = buf_put_svarint(out, x->fired_at_ms);
            if (!rc) rc = buf_put_svarint(out, x->last_notified_ms);
        }
    }
    if (!rc) rc = ledger_encode(&st->ledger, out);
    buf_free(&tmp);
    return rc;
}

__attribute__((format(printf, 3, 4)))
static int corrupt(cstate_t *st, churn_err_t *err, const char *fmt, ...) {
    cstate_free(st);
    va_list ap;
    va_start(ap, fmt);
    churn_err_setv(err, CHURN_ECORRUPT, fmt, ap);
    va_end(ap);
    return CHURN_ECORRUPT;
}

int cstate_decode(const void *data, size_t len, const char *client_id,
                  size_t client_len, cstate_t **out, churn_err_t *err) {
    *out = NULL;
    cstate_t *st = cstate_new(client_id, client_len);
    if (!st) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    if (!data || len == 0) return corrupt(st, err, "empty state record");
    reader_t r;
    reader_init(&r, data, len);
    uint8_t ver;
    uint64_t n;
    if (reader_u8(&r, &ver)) return corrupt(st, err, "empty state record");
    if (ver != CSTATE_VERSION && ver != CSTATE_VERSION_2 && ver != CSTATE_VERSION_1)
        return corrupt(st, err, "state record version %u; this build reads %u to %u",
                       ver, CSTATE_VERSION_1, CSTATE_VERSION);
    if (reader_svarint(&r, &st->indexed_wake) ||
        reader_svarint(&r, &st->dd_max_ts) || reader_varint(&r, &n))
        return corrupt(st, err, "state record truncated in its header");
    /* Each dedup entry takes at least 9 bytes. */
    if (n > CSTATE_MAX_DEDUP || n > reader_left(&r) / 9)
        return corrupt(st, err, "state record claims %llu event ids",
                       (unsigned long long)n);
    if (n) {
        st->dd_ids = malloc(n * sizeof(uint64_t));
        st->dd_ts = malloc(n * sizeof(int64_t));
        if (!st->dd_ids || !st->dd_ts) {
            cstate_free(st);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
        st->dd_cap = n;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (reader_u64be(&r, &st->dd_ids[i]) || reader_svarint(&r, &st->dd_ts[i]))
            return corrupt(st, err, "state record truncated in its event ids");
        st->dd_n++;
    }
    if (reader_varint(&r, &n))
        return corrupt(st, err, "state record truncated before its features");
    /* Each feature section takes at least 10 bytes. */
    if (n > CSTATE_MAX_SECTIONS || n > reader_left(&r) / 10)
        return corrupt(st, err, "state record claims %llu feature sections",
                       (unsigned long long)n);
    if (n) {
        st->feats = calloc(n, sizeof(feat_slot_t));
        if (!st->feats) {
            cstate_free(st);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        feat_slot_t *f = &st->feats[i];
        uint8_t kind;
        const uint8_t *p;
        size_t pl;
        if (reader_u64be(&r, &f->id) || reader_u8(&r, &kind) ||
            reader_bytes(&r, &p, &pl))
            return corrupt(st, err, "state record truncated in feature section %llu",
                           (unsigned long long)i);
        if (!feature_ops((feature_kind_t)kind)) {
            /* Not ours to read: keep it opaque (see the file comment). */
            f->s.kind = kind;
            f->raw = malloc(pl ? pl : 1);
            if (!f->raw) {
                cstate_free(st);
                return churn_err_set(err, CHURN_ENOMEM, "out of memory");
            }
            if (pl) memcpy(f->raw, p, pl);
            f->raw_len = pl;
            st->n_feats++;
            continue;
        }
        int rc = feat_state_decode((feature_kind_t)kind, p, pl, &f->s);
        if (rc == CHURN_ENOMEM) {
            cstate_free(st);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
        if (rc)
            return corrupt(st, err,
                           "feature section %llu (kind %u) cannot be decoded",
                           (unsigned long long)i, kind);
        st->n_feats++;
    }
    if (reader_varint(&r, &n))
        return corrupt(st, err, "state record truncated before its rules");
    /* Each rule section takes at least 12 bytes (v1; v2 more). */
    if (n > CSTATE_MAX_SECTIONS || n > reader_left(&r) / 12)
        return corrupt(st, err, "state record claims %llu rule sections",
                       (unsigned long long)n);
    if (n) {
        st->rules = calloc(n, sizeof(rule_state_t));
        if (!st->rules) {
            cstate_free(st);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        rule_state_t *rs = &st->rules[i];
        if (reader_u64be(&r, &rs->id) || reader_u8(&r, &rs->status) ||
            reader_svarint(&r, &rs->since_ms) ||
            reader_svarint(&r, &rs->fired_at_ms) ||
            reader_svarint(&r, &rs->last_notified_ms))
            return corrupt(st, err, "state record truncated in rule section %llu",
                           (unsigned long long)i);
        if (rs->status > RULE_FIRING)
            return corrupt(st, err, "rule section %llu has unknown status %u",
                           (unsigned long long)i, rs->status);
        rs->tick_ms = INT64_MIN;
        st->n_rules++;
        if (ver == CSTATE_VERSION_1) continue;
        uint64_t rep, ni;
        if (reader_varint(&r, &rep) || reader_svarint(&r, &rs->tick_ms) ||
            reader_varint(&r, &ni))
            return corrupt(st, err, "state record truncated in rule section %llu",
                           (unsigned long long)i);
        if (rep > UINT32_MAX || ni > RULE_MAX_INCIDENTS || ni > reader_left(&r) / 5)
            return corrupt(st, err, "rule section %llu claims %llu incidents",
                           (unsigned long long)i, (unsigned long long)ni);
        rs->repeats = (uint32_t)rep;
        if (ni && !(rs->inc = calloc(ni, sizeof(rule_incident_t)))) {
            cstate_free(st);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
        rs->cap_inc = (uint32_t)ni;
        for (uint64_t k = 0; k < ni; k++) {
            rule_incident_t *x = &rs->inc[k];
            const uint8_t *p;
            size_t kl;
            if (reader_bytes(&r, &p, &kl) || kl > EXPECT_MAX_KEY)
                return corrupt(st, err, "rule section %llu has a bad incident key",
                               (unsigned long long)i);
            if (!(x->key = malloc(kl + 1))) {
                cstate_free(st);
                return churn_err_set(err, CHURN_ENOMEM, "out of memory");
            }
            rs->n_inc = (uint32_t)k + 1;
            memcpy(x->key, p, kl);
            x->key[kl] = '\0';
            x->key_len = (uint32_t)kl;
            if (reader_varint(&r, &rep) || rep > UINT32_MAX ||
                reader_svarint(&r, &x->opened_ms) ||
                reader_svarint(&r, &x->fired_at_ms) ||
                reader_svarint(&r, &x->last_notified_ms))
                return corrupt(st, err, "state record truncated in rule section %llu",
                               (unsigned long long)i);
            x->repeats = (uint32_t)rep;
        }
    }
    if (ver == CSTATE_VERSION) {
        int rc = ledger_decode(&r, &st->ledger);
        if (rc == CHURN_ENOMEM) {
            cstate_free(st);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
        if (rc) return corrupt(st, err, "state record has a malformed ledger");
    }
    if (reader_left(&r) != 0)
        return corrupt(st, err, "state record has %zu unexpected trailing bytes",
                       reader_left(&r));
    *out = st;
    return 0;
}

/* ---- Inspection --------------------------------------------------------- */

static const char *const status_names[] = {"inactive", "pending", "firing"};

double rule_risk_part(const ruleset_t *rs, const rule_def_t *r,
                      const rule_state_t *s, int64_t now_ms) {
    double sum = 0;
    int n = s->status == RULE_FIRING;
    for (uint32_t i = 0; i <= s->n_inc; i++) {
        int64_t at;
        if (i < s->n_inc) at = s->inc[i].fired_at_ms;
        else if (n) at = s->fired_at_ms;
        else break;
        double w = r->weight;
        if (rs->risk_half_life_ms > 0 && now_ms > at)
            w *= exp2(-((double)now_ms - (double)at) / (double)rs->risk_half_life_ms);
        sum += w;
    }
    return sum;
}

/* The time the state was last touched, for a risk read outside any
 * evaluation (churnd state): the newest event or alert time it holds. */
static int64_t state_now(const cstate_t *st) {
    int64_t t = st->dd_max_ts;
    for (size_t i = 0; i < st->n_rules; i++) {
        const rule_state_t *s = &st->rules[i];
        if (s->status == RULE_FIRING && s->last_notified_ms > t) t = s->last_notified_ms;
        for (uint32_t k = 0; k < s->n_inc; k++)
            if (s->inc[k].last_notified_ms > t) t = s->inc[k].last_notified_ms;
    }
    return t;
}

int cstate_format_json(const cstate_t *st, const ruleset_t *rs, buf_t *out) {
    int aligned = rs && st->bound && st->bound_hash == rs->hash;
    double risk = 0;
    int64_t now = state_now(st);
    int rc = buf_printf(out, "{\"client_id\": ");
    if (!rc) rc = buf_put_json_str(out, st->client_id, st->client_len);
    if (!rc) rc = buf_printf(out, ", \"features\": {");
    size_t shown = 0;
    for (size_t i = 0; rs && i < rs->n_features && !rc; i++) {
        const feature_def_t *d = &rs->features[i];
        const feature_ops_t *ops = feature_ops(d->kind);
        const feat_state_t *s = NULL;
        feat_state_t fresh;
        if (aligned) {
            s = &st->feats[i].s;
        } else {
            for (size_t j = 0; j < st->n_feats && !s; j++)
                if (st->feats[j].id == d->id && st->feats[j].s.kind == d->kind &&
                    !st->feats[j].raw)
                    s = &st->feats[j].s;
        }
        if (!ops) continue;
        if (!s) { /* what the engine would start from */
            feat_state_init(&fresh, d->kind);
            s = &fresh;
        }
        rc = buf_printf(out, "%s", shown++ ? ", " : "");
        if (!rc) rc = buf_put_json_str(out, d->name, strlen(d->name));
        if (!rc) rc = buf_printf(out, ": {\"kind\": \"%s\", \"state\": ",
                                 feature_kind_name(d->kind));
        if (!rc) rc = ops->describe(d, s, out);
        if (!rc) rc = buf_putc(out, '}');
        if (s == &fresh) feat_state_clear(&fresh);
    }
    if (!rc) rc = buf_printf(out, "}, \"rules\": {");
    shown = 0;
    for (size_t i = 0; rs && i < rs->n_rules && !rc; i++) {
        const rule_def_t *r = &rs->rules[i];
        const rule_state_t *s = NULL;
        if (aligned) {
            s = &st->rules[i];
        } else {
            for (size_t j = 0; j < st->n_rules && !s; j++)
                if (st->rules[j].id == r->id) s = &st->rules[j];
        }
        uint8_t status = s ? s->status : RULE_INACTIVE;
        if (s) risk += rule_risk_part(rs, r, s, now);
        if (s && s->n_inc) status = RULE_FIRING; /* keyed: see incidents */
        rc = buf_printf(out, "%s", shown++ ? ", " : "");
        if (!rc) rc = buf_put_json_str(out, r->name, strlen(r->name));
        if (!rc) rc = buf_printf(out, ": {\"status\": \"%s\"", status_names[status]);
        char t[TIME_RFC3339_MAX];
        if (!rc && status == RULE_PENDING) {
            time_format_rfc3339(s->since_ms, t, sizeof(t));
            rc = buf_printf(out, ", \"since\": \"%s\"", t);
        }
        if (!rc && status == RULE_FIRING && !s->n_inc) {
            time_format_rfc3339(s->fired_at_ms, t, sizeof(t));
            rc = buf_printf(out, ", \"fired_at\": \"%s\", \"alert_id\": ", t);
            if (!rc) {
                buf_t id;
                buf_init(&id);
                rc = alert_id_format(&id, r->name, st->client_id, st->client_len,
                                     NULL, 0, s->fired_at_ms);
                if (!rc) rc = buf_put_json_str(out, (const char *)id.data, id.len);
                buf_free(&id);
            }
        }
        if (!rc && s && s->n_inc) {
            rc = buf_printf(out, ", \"incidents\": [");
            for (uint32_t k = 0; k < s->n_inc && !rc; k++) {
                const rule_incident_t *x = &s->inc[k];
                time_format_rfc3339(x->fired_at_ms, t, sizeof(t));
                rc = buf_printf(out, "%s{\"key\": ", k ? ", " : "");
                if (!rc) rc = buf_put_json_str(out, x->key, x->key_len);
                if (!rc) rc = buf_printf(out, ", \"fired_at\": \"%s\", \"alert_id\": ", t);
                buf_t id;
                buf_init(&id);
                if (!rc) rc = alert_id_format(&id, r->name, st->client_id, st->client_len,
                                              x->key, x->key_len, x->fired_at_ms);
                if (!rc) rc = buf_put_json_str(out, (const char *)id.data, id.len);
                buf_free(&id);
                if (!rc) rc = buf_putc(out, '}');
            }
            if (!rc) rc = buf_putc(out, ']');
        }
        if (!rc) rc = buf_putc(out, '}');
    }
    if (!rc) {
        expr_val_t v;
        v.type = EXPR_T_NUM;
        double cap = rs ? rs->risk_cap : 100;
        v.u.num = risk > cap ? cap : risk;
        rc = buf_printf(out, "}, \"risk\": ");
        if (!rc) rc = expr_val_json(&v, out);
    }
    if (!rc) {
        int64_t wake = cstate_next_wake(st, rs);
        rc = buf_printf(out, ", \"next_wake\": ");
        if (!rc && wake == INT64_MAX) rc = buf_printf(out, "null");
        else if (!rc) {
            char t[TIME_RFC3339_MAX];
            time_format_rfc3339(wake, t, sizeof(t));
            rc = buf_printf(out, "\"%s\"", t);
        }
    }
    if (!rc) rc = buf_printf(out, ", \"recent_event_ids\": %zu, \"history\": ", st->dd_n);
    if (!rc) rc = ledger_format_json(&st->ledger, out);
    if (!rc) rc = buf_putc(out, '}');
    return rc;
}
