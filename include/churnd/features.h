/*
 * features.h - per-client state that events update and rules read:
 * streak, last and latest now; series and expect next (SPEC section 2).
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

typedef struct feature_def {
    char *name;          /* owned */
    feature_kind_t kind;
    uint64_t id;
    const char *file;    /* borrowed from the rule set */
    int line, col;
    type_set_t on;       /* streak: counted types; last: types; latest: on: */
    type_set_t reset_on; /* streak only */
    expr_t *where;       /* optional filter on the event, owned */
    char *path;          /* latest: the field; last: value: (optional) */
    const char **segs;   /* path split for event_path_segs, owned array */
    char *seg_buf;       /* owned storage of segs */
    size_t n_segs;
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

typedef struct feat_state {
    uint8_t kind; /* feature_kind_t */
    union {
        struct {
            uint64_t count;  /* matching events since the last reset */
            int64_t last_ms; /* event time of the last counted event, or INT64_MIN */
        } streak;
        struct {             /* last and latest */
            int64_t ts_ms;   /* event time of the last update, or INT64_MIN */
            feat_value_t v;
        } last;
    } u;
} feat_state_t;

typedef struct feature_ops {
    feature_kind_t kind;
    void (*init)(feat_state_t *s);
    void (*clear)(feat_state_t *s); /* release what the state owns */
    /* Apply one event (whose type may or may not concern the feature).
     * Returns 1 when the state changed, 0 when not, or CHURN_ENOMEM. */
    int (*update)(const feature_def_t *d, feat_state_t *s, const event_t *ev,
                  const expr_ctx_t *cx);
    int (*encode)(const feat_state_t *s, buf_t *out);
    /* Reads exactly the payload written by encode; CHURN_ECORRUPT otherwise. */
    int (*decode)(reader_t *r, feat_state_t *s);
    void (*query)(const feature_def_t *d, const feat_state_t *s, expr_fn_t fn,
                  const expr_val_t *args, size_t n_args, int64_t now_ms,
                  expr_val_t *out);
    /* Earliest deadline this state holds (expectations), or INT64_MAX. */
    int64_t (*next_wake)(const feature_def_t *d, const feat_state_t *s);
    /* The state as a JSON object, for `churnd state` and /clients/{id}. */
    int (*describe)(const feature_def_t *d, const feat_state_t *s, buf_t *out);
} feature_ops_t;

/* The operations of a kind, or NULL when the kind is not implemented yet. */
const feature_ops_t *feature_ops(feature_kind_t kind);

/* Does the event's type concern d at all (before where:)? */
int feature_wants_type(const feature_def_t *d, const char *type);

/* Convenience wrappers over the table, for cstate and engine. */
void feat_state_init(feat_state_t *s, feature_kind_t kind);
void feat_state_clear(feat_state_t *s);
int feat_state_encode(const feat_state_t *s, buf_t *out);
int feat_state_decode(feature_kind_t kind, const void *p, size_t n,
                      feat_state_t *s);

#endif
