/*
 * features.h - per-client state that events update and rules read:
 * series, streak, expect, last and latest (SPEC section 2; docs/rules.md).
 *
 * Each kind is one row of a table of operations (init, clear, update,
 * encode, decode, query, next_wake), so adding a kind means one new row
 * and its functions, not edits all over the engine. A feature's state is a
 * feat_state_t; its on-disk payload is the kind's own encoding inside a
 * client-state section keyed by the feature's id (see cstate.c).
 *
 * Ids: a feature's id is churn_hash64 of its normalised definition (name,
 * kind, every parameter that decides what it counts), so editing one
 * feature resets that feature alone and reformatting a file resets nothing.
 */
#ifndef CHURND_FEATURES_H
#define CHURND_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/common.h"
#include "churnd/event.h"
#include "churnd/expr.h"

/* Event type patterns (exact names or globs such as "meeting.*"). */
typedef struct type_set {
    char **v; /* owned */
    size_t n;
} type_set_t;

void type_set_free(type_set_t *ts);
int type_set_match(const type_set_t *ts, const char *type);

/* Bounds. A rules file asking for more is rejected at load. */
#define SERIES_MAX_BUCKETS 4096   /* retain / bucket */
#define EXPECT_DEFAULT_MAX_OPEN 100
#define EXPECT_MAX_OPEN 10000     /* max_open */
#define EXPECT_MAX_KEY 256        /* longer match values are truncated */
#define EXPECT_MAX_CASES 16       /* within: branches */
#define LAST_MAX_HISTORY 64       /* last ... history: */

/* One branch of an expect feature's within: (when NULL: the default). */
typedef struct within_case {
    expr_t *when;     /* owned; evaluated on the after: event */
    int64_t within_ms;
} within_case_t;

typedef struct feature_def {
    char *name;          /* owned */
    feature_kind_t kind;
    uint64_t id;
    const char *file;    /* borrowed from the rule set */
    int line, col;
    type_set_t on;       /* streak: counted types; last: types; latest and
                            series: on:; expect: after: */
    type_set_t reset_on; /* streak: reset_on:; expect: expect: */
    expr_t *where;       /* optional filter on the event, owned */
    char *path;          /* latest: the field; last: value: (optional);
                            series: the summed field; expect: match: */
    const char **segs;   /* path split for event_path_segs, owned array */
    char *seg_buf;       /* owned storage of segs */
    size_t n_segs;
    /* series */
    int64_t bucket_ms, retain_ms;
    uint32_t max_buckets;  /* retain_ms / bucket_ms, <= SERIES_MAX_BUCKETS */
    int has_const;         /* series: <number>: every event adds it */
    double const_val;
    /* expect */
    expr_t *expect_where;  /* optional filter on the awaited event, owned */
    within_case_t *within; /* owned; the last one has when NULL */
    size_t n_within;
    uint32_t max_open;
    int once;              /* only the first after: event ever opens one */
    /* last */
    uint32_t history;      /* event times kept (0: only the last) */
} feature_def_t;

void feature_def_free(feature_def_t *d);
/* Split d->path into segments. Returns 0 or CHURN_ENOMEM. */
int feature_def_set_path(feature_def_t *d, const char *path);
/* Normalised definition text, hashed into d->id. */
int feature_def_canon(const feature_def_t *d, buf_t *out);

/* A scalar kept in state (latest, last with value:). Strings are copied
 * into a buffer owned by the state and reused across updates. */
#define FEAT_VALUE_MAX_STR 1024

typedef struct feat_value {
    uint8_t type; /* EXPR_T_NULL (none yet), EXPR_T_BOOL, _NUM or _STR */
    double num;   /* NUM; BOOL as 0/1 */
    char *s;      /* owned */
    uint32_t len, cap;
} feat_value_t;

/* A series bucket: the events whose time falls in
 * [idx * bucket_ms, (idx + 1) * bucket_ms). */
typedef struct series_bucket {
    int64_t idx;
    double sum;
    uint32_t count;
} series_bucket_t;

/* One expectation: opened by an after: event, closed by an awaited one. */
typedef struct expectation {
    char *key;           /* owned, NUL-terminated ("" without match:) */
    uint32_t key_len;
    uint8_t expired;     /* its deadline was processed (overdue now) */
    int64_t opened_ms;
    int64_t deadline_ms;
} expectation_t;

typedef struct feat_state {
    uint8_t kind; /* feature_kind_t */
    union {
        struct {             /* ascending idx, at most max_buckets */
            series_bucket_t *b;
            uint32_t n, cap;
        } series;
        struct {             /* in opening order */
            expectation_t *v;
            uint32_t n, cap;
            uint64_t opened;  /* ever opened (once:) */
            uint64_t dropped; /* pushed out by max_open */
        } expect;
        struct {
            uint64_t count;  /* matching events since the last reset */
            int64_t last_ms; /* event time of the last counted event, or INT64_MIN */
        } streak;
        struct {             /* last and latest */
            int64_t ts_ms;   /* event time of the last update, or INT64_MIN */
            feat_value_t v;
            int64_t *hist;   /* last with history: recent times, oldest first */
            uint32_t n_hist, cap_hist;
        } last;
    } u;
} feat_state_t;

typedef struct feature_ops {
    feature_kind_t kind;
    void (*init)(feat_state_t *s);
    void (*clear)(feat_state_t *s); /* release what the state owns */
    /* Apply one event; match is feature_type_match(d, ev->type), which
     * the caller has (0: the type does not concern the feature). Returns
     * 1 when the state changed, 0 when not, or CHURN_ENOMEM. */
    int (*update)(const feature_def_t *d, feat_state_t *s, const event_t *ev,
                  const expr_ctx_t *cx, unsigned match);
    int (*encode)(const feat_state_t *s, buf_t *out);
    /* Reads exactly the payload written by encode; CHURN_ECORRUPT otherwise. */
    int (*decode)(reader_t *r, feat_state_t *s);
    void (*query)(const feature_def_t *d, const feat_state_t *s, expr_fn_t fn,
                  const expr_val_t *args, size_t n_args, int64_t now_ms,
                  expr_val_t *out);
    /* How query's answer for the same arguments moves as now_ms goes on
     * with the state unchanged (expr_trend_t; the caller has set *tr to
     * "unknown beyond now"). Within [now_ms, tr->until) the answer's type
     * does not change either. NULL: nothing known beyond now. */
    void (*trend)(const feature_def_t *d, const feat_state_t *s, expr_fn_t fn,
                  const expr_val_t *args, size_t n_args, int64_t now_ms,
                  expr_trend_t *tr);
    /* Earliest deadline this state holds (expectations), or INT64_MAX. */
    int64_t (*next_wake)(const feature_def_t *d, const feat_state_t *s);
    /* The state as a JSON object, for `churnd state` and /clients/{id}. */
    int (*describe)(const feature_def_t *d, const feat_state_t *s, buf_t *out);
} feature_ops_t;

/* The operations of a kind, or NULL when the kind is not implemented yet. */
const feature_ops_t *feature_ops(feature_kind_t kind);

/* Which of d's type lists the event's type matches (before where:):
 * FEAT_MATCH_ON for on: (after: of an expect), FEAT_MATCH_RESET for
 * reset_on: (expect: of an expect); 0 when the type does not concern d. */
enum { FEAT_MATCH_ON = 1, FEAT_MATCH_RESET = 2 };
unsigned feature_type_match(const feature_def_t *d, const char *type);
/* Does the event's type concern d at all (before where:)? */
int feature_wants_type(const feature_def_t *d, const char *type);

/* Expect features: the match key an event carries (its match: field as
 * text; "" without match:). Returns 1 with the key in buf[0..*len), or 0
 * when the event carries no usable key. */
int feature_event_key(const feature_def_t *d, const event_t *ev, char *buf,
                      size_t cap, size_t *len);
/* Is the event of cx an awaited event of expect feature d (type and
 * expect_where)? match: feature_type_match(d, the event's type). */
int feature_is_awaited(const feature_def_t *d, const expr_ctx_t *cx,
                       unsigned match);

/* Convenience wrappers over the table, for cstate and engine. */
void feat_state_init(feat_state_t *s, feature_kind_t kind);
void feat_state_clear(feat_state_t *s);
/* Heap bytes the state owns beyond the feat_state_t itself (buckets,
 * expectations and their keys, values, history): churn_heap_cost each. */
size_t feat_state_heap_bytes(const feat_state_t *s);
int feat_state_encode(const feat_state_t *s, buf_t *out);
int feat_state_decode(feature_kind_t kind, const void *p, size_t n,
                      feat_state_t *s);

#endif
