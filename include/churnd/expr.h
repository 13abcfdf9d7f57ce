/*
 * expr.h - the rules' expression language: compiled once at load into a
 * typed tree, evaluated per event without heap allocation, loops or
 * unbounded recursion (SPEC section 2).
 *
 * Grammar, lowest precedence first:
 *
 *   expr    := or
 *   or      := and ("or" and)*
 *   and     := not ("and" not)*
 *   not     := "not" not | cmp
 *   cmp     := add [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") add]
 *   add     := mul (("+" | "-") mul)*
 *   mul     := unary (("*" | "/" | "%") unary)*
 *   unary   := "-" unary | primary
 *   primary := NUMBER | DURATION | STRING | "true" | "false" | "null"
 *            | "$" NAME                         a var (segment-aware)
 *            | "now" | "risk"
 *            | NAME ("." NAME)*                 field, envelope or streak
 *            | NAME "(" [expr ("," expr)*] ")"  function over a feature
 *            | "[" [literal ("," literal)*] "]" list (right of `in` only)
 *            | "(" expr ")"
 *
 * Comparisons do not chain (`a < b < c` is an error). Names:
 *   data.x.y      a field of the event's JSON (`data.` then the path)
 *   event.type    the type after the type map; event.id the event id;
 *   event.<path>  any other field of the envelope, from the root
 *   client.id     the client's id (also in timer evaluations)
 *   now           event time of the evaluation (type time)
 *   risk          the client's current risk score
 *   expectation.key, expectation.opened_at
 *                 in rules triggered by expired(f) only: the expired
 *                 expectation's match key (string) and opening time (time)
 *   <streak>      a streak feature's current count
 *
 * Types: null, bool, number, string, duration, time, and "any" for event
 * fields and latest values, whose type is only known per event. The static
 * rules (checked at load; an "any" operand defers the check to run time):
 *
 *   number  + - * / %  number    -> number
 *   duration + - duration        -> duration   (30d - 7d)
 *   duration * number, number * duration, duration / number -> duration
 *   duration / duration          -> number     (ratio: since(x) / 1d)
 *   duration % duration          -> duration
 *   time - time -> duration; time +/- duration -> time; duration + time -> time
 *   - number, - duration
 *   comparisons: both sides number, both duration, both time or both
 *   string (ordering is byte order); == and != also on bools. A duration is
 *   never compared with a bare number, whose unit would be a guess: write
 *   `since(x) > 30d`, not `> 30`. Comparing with the literal `null` is an
 *   error because it is always false (see below).
 *   x in [a, b]: literal list of scalars of x's type; x in data.roles: an
 *   array field, elements compared with ==.
 *   and, or, not: bool (or any) operands; `when:` must be bool (or any).
 *
 * Null and run time: a missing field, an unset feature, x / 0 and x % 0, an
 * operand of the wrong run-time type and NaN all give null. Arithmetic with
 * null is null. EVERY comparison involving null, or values of different
 * run-time types, is false -- including `!=` (`data.x != "a"` is false when
 * data.x is missing), as in SPEC section 2 and SQL's unknown-is-not-true.
 * and/or/not treat anything but boolean true as false, so they always give a
 * bool: `not (data.score > 6)` is true when there is no score. and/or
 * short-circuit left to right.
 *
 * Limits (so no rules file can crash or hang the engine): source 16 KiB,
 * 4096 nodes, tree depth 64, string literal 1024 bytes, 256 list elements,
 * 8 function arguments. Evaluation recurses at most to the tree depth.
 */
#ifndef CHURND_EXPR_H
#define CHURND_EXPR_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "churnd/common.h"
#include "churnd/event.h"

#define EXPR_MAX_SRC 16384
#define EXPR_MAX_NODES 4096
#define EXPR_MAX_DEPTH 64
#define EXPR_MAX_STR 1024
#define EXPR_MAX_LIST 256
#define EXPR_MAX_ARGS 8

typedef enum expr_type {
    EXPR_T_NULL = 0,
    EXPR_T_BOOL,
    EXPR_T_NUM,
    EXPR_T_STR,
    EXPR_T_DUR,   /* milliseconds in u.num; +inf for "never" */
    EXPR_T_TIME,  /* epoch milliseconds in u.num */
    EXPR_T_ARRAY, /* run time only: a JSON array field (u.arr, borrowed) */
    EXPR_T_ANY,   /* static only: known per event */
    EXPR_T_LIST,  /* static only: a list literal */
} expr_type_t;

const char *expr_type_name(expr_type_t t);

/* A value. Never owns memory: strings point into the compiled expression,
 * the event's JSON or the client state, all of which outlive the value's
 * use within one evaluation. */
typedef struct expr_val {
    uint8_t type; /* expr_type_t */
    union {
        double num;  /* NUM, DUR (ms), TIME (ms) */
        int b;       /* BOOL */
        struct {
            const char *p;
            size_t len;
        } s;         /* STR, not NUL-terminated */
        const cJSON *arr; /* ARRAY */
    } u;
} expr_val_t;

/* What a feature name can be asked in an expression. The kinds are the
 * ones SPEC section 2 lists; features.c implements them. */
typedef enum feature_kind {
    FEAT_SERIES = 1,
    FEAT_STREAK = 2,
    FEAT_EXPECT = 3,
    FEAT_LAST = 4,
    FEAT_LATEST = 5,
} feature_kind_t;

const char *feature_kind_name(feature_kind_t k);

/* Functions over features. The feature is the first argument (the bare
 * name for EXPR_FN_STREAK); the others are evaluated and passed along. */
typedef enum expr_fn {
    EXPR_FN_SUM = 1, /* (series, range[, offset]) -> number */
    EXPR_FN_COUNT,
    EXPR_FN_AVG,
    EXPR_FN_MIN,
    EXPR_FN_MAX,
    EXPR_FN_STREAK,  /* bare streak name -> number */
    EXPR_FN_SINCE,   /* (last|latest|streak) -> duration, +inf if never */
    EXPR_FN_SEEN,    /* (any feature) -> bool */
    EXPR_FN_VALUE,   /* (latest, or last with value:) -> any */
    EXPR_FN_OPEN,    /* (expect) -> number */
    EXPR_FN_OVERDUE, /* (expect) -> number */
    EXPR_FN_MEDIAN_GAP, /* (last with history:) -> duration, null below 3 */
} expr_fn_t;

/* Compile-time names. Plain arrays owned by the caller (the rule loader),
 * looked up linearly: a rule set has tens of names, not thousands. */
typedef struct expr_scope {
    const char *const *var_names;
    const uint8_t *var_types;     /* expr_type_t per var */
    size_t n_vars;
    const char *const *feature_names;
    const uint8_t *feature_kinds; /* feature_kind_t */
    const uint8_t *feature_has_value; /* value() allowed */
    const uint8_t *feature_has_history; /* median_gap() allowed */
    size_t n_features;
    const char *const *rule_names;
    size_t n_rules;
    unsigned allow;               /* EXPR_ALLOW_* */
} expr_scope_t;

enum {
    EXPR_ALLOW_FEATURES = 1, /* feature functions and streak names */
    EXPR_ALLOW_RULES = 2,    /* firing("rule") and risk */
    EXPR_ALLOW_EXPECTATION = 4, /* expectation.key, expectation.opened_at */
};

/* How a value found at now_ms would move if the same expression were
 * evaluated at a later time t with nothing else changed (no event, same
 * client state): v(t) = v(now_ms) + slope * (t - now_ms) for every t in
 * [now_ms, until). until == now_ms + 1 says nothing is known beyond now;
 * INT64_MAX, that the value never moves. For a boolean, slope is 0 and
 * until the earliest time its answer may differ. */
typedef struct expr_trend {
    double slope;
    int64_t until;
} expr_trend_t;

/* Evaluation-time services of the engine. */
typedef struct expr_ctx expr_ctx_t;
typedef struct expr_host {
    void (*feature)(const expr_ctx_t *cx, uint32_t feature, expr_fn_t fn,
                    const expr_val_t *args, size_t n_args, expr_val_t *out);
    int (*firing)(const expr_ctx_t *cx, uint32_t rule);
    double (*risk)(const expr_ctx_t *cx);
} expr_host_t;

/* One evaluation's context; all pointers borrowed. */
struct expr_ctx {
    const event_t *ev;        /* NULL in timer evaluations: fields are null */
    const char *client_id;
    size_t client_len;
    int64_t now_ms;           /* event time (or the deadline, for timers) */
    const expr_val_t *vars;   /* var table of the client's segment */
    const expr_host_t *host;  /* NULL: features null, firing false, risk 0 */
    void *host_data;          /* the engine's (rule set, client state) */
    /* Rules triggered by expired(f): the expectation in question (key
     * NULL elsewhere: expectation.* is then null). */
    const char *exp_key;
    size_t exp_key_len;
    int64_t exp_opened_ms;    /* INT64_MIN: unknown (null) */
    /* Set by expr_eval_bool_until only: before each feature or risk call
     * it holds "unknown beyond now" ({0, now_ms + 1}); a host that knows
     * how its answer moves with time says so here. NULL otherwise. */
    expr_trend_t *trend;
};

typedef struct expr expr_t;

/* Compile src[0..len). On error returns CHURN_EINVAL (or CHURN_ENOMEM),
 * fills err->msg and err->col (1-based column within src; line 0) and
 * sets *err_off to the byte offset of the problem, so the rule loader can
 * map it to file:line:column. */
int expr_compile(const char *src, size_t len, const expr_scope_t *sc,
                 expr_t **out, churn_err_t *err, size_t *err_off);
void expr_free(expr_t *e);

expr_type_t expr_result_type(const expr_t *e);
const char *expr_source(const expr_t *e);
/* Does the expression read the event (fields, event.*)? Timer evaluations
 * have no event. */
int expr_uses_event(const expr_t *e);
/* Mark in reads[f] (f < n) every feature the expression queries; the
 * rest of reads is left as it is. */
void expr_mark_features(const expr_t *e, uint8_t *reads, size_t n);
/* Normalised text (fully parenthesised, whitespace-free literals), for
 * stable definition ids: reformatting a rule does not change its id. */
int expr_canon(const expr_t *e, buf_t *out);

void expr_eval(const expr_t *e, const expr_ctx_t *cx, expr_val_t *out);
/* 1 only when the result is boolean true. */
int expr_eval_bool(const expr_t *e, const expr_ctx_t *cx);
/* expr_eval_bool, and in *until a time after cx->now_ms before which the
 * answer is sure to stay the same when evaluated later with nothing but
 * the time changed (INT64_MAX: at any later time). What it cannot follow
 * (a product of two moving values, an equality with a moving one, a host
 * that says nothing) gives now_ms + 1, so it is never wrong, only
 * sometimes short. */
int expr_eval_bool_until(const expr_t *e, const expr_ctx_t *cx, int64_t *until);

/* Value sites: the sub-expressions worth showing in an alert's "values"
 * (feature queries, risk, data.* fields), keyed by their source text with
 * whitespace collapsed, in order of appearance, without duplicates. */
size_t expr_n_sites(const expr_t *e);
const char *expr_site_key(const expr_t *e, size_t i);
void expr_eval_site(const expr_t *e, size_t i, const expr_ctx_t *cx,
                    expr_val_t *out);

/* Human text for summaries: integers without decimals, otherwise two
 * decimals (three significant digits below 1), trailing zeros dropped:
 * 1200, 0.6, 33.33, 0.125. Durations as duration_format ("2d", "1h30m"),
 * times RFC 3339, null as "n/a". */
size_t expr_num_format(double x, char *buf, size_t size);
int expr_val_format(const expr_val_t *v, buf_t *out);
/* JSON text of a value: numbers (shortest round-trip, non-finite -> null),
 * durations as their text ("48h"), times RFC 3339, arrays as null. */
int expr_val_json(const expr_val_t *v, buf_t *out);

/* ---- Templates: "text {{ expr }} text" -------------------------------- */

typedef struct expr_tmpl expr_tmpl_t;

int expr_tmpl_compile(const char *src, size_t len, const expr_scope_t *sc,
                      expr_tmpl_t **out, churn_err_t *err, size_t *err_off);
void expr_tmpl_free(expr_tmpl_t *t);
/* Appends the expanded text to out (not NUL-terminated). */
int expr_tmpl_render(const expr_tmpl_t *t, const expr_ctx_t *cx, buf_t *out);
size_t expr_tmpl_n_exprs(const expr_tmpl_t *t);
const expr_t *expr_tmpl_expr(const expr_tmpl_t *t, size_t i);
const char *expr_tmpl_source(const expr_tmpl_t *t);

/* ---- Helpers shared with the rule loader ------------------------------- */

/* Levenshtein distance, capped: returns max + 1 when larger. */
size_t expr_edit_distance(const char *a, size_t na, const char *b, size_t nb,
                          size_t max);
/* The closest of names within distance 2, or NULL. */
const char *expr_suggest(const char *name, size_t len,
                         const char *const *names, size_t n);

/* Glob over event type names: '*' matches any run of characters
 * (including dots), everything else literally. */
int expr_glob_match(const char *pat, const char *s);

#endif
