/*
 * rules.h - the rule engine's internal structures, shared by rules_load.c
 * (which builds a rule set from YAML), engine.c (which applies it),
 * cstate.c (client state) and alert.c. Not for the runtime: it sees only
 * engine.h.
 *
 * A loaded rule set is immutable: the engine reads it from any number of
 * evaluations and the loader builds a new one on reload.
 */
#ifndef CHURND_RULES_H
#define CHURND_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/engine.h"
#include "churnd/expr.h"
#include "churnd/features.h"
#include "churnd/ledger.h"

/* Limits on what one rules directory may declare. */
#define RULES_MAX_FILES 256
#define RULES_MAX_FILE_BYTES (4u << 20)
#define RULES_MAX_ERRORS 100
#define RULES_MAX_NAME 128

typedef struct rule_label {
    char *name;         /* owned */
    expr_tmpl_t *tmpl;  /* owned */
} rule_label_t;

/* A sub-expression reported in an alert's "values". */
typedef struct rule_site {
    const expr_t *e;  /* borrowed from the rule's when/summary/labels */
    size_t i;         /* site index within e */
    const char *key;  /* borrowed from e */
} rule_site_t;

typedef struct rule_def {
    char *name;            /* owned */
    uint64_t id;
    const char *file;      /* borrowed from the rule set */
    int line, col;
    type_set_t on;         /* event types (globs) */
    expr_t *when;          /* owned; NULL: holds on every trigger */
    const char *severity;  /* static: "info", "warning", "critical" */
    double weight;
    int64_t for_ms;        /* must hold this long before firing (0: at once) */
    int64_t every_ms;      /* on: every <d>: evaluated at each multiple of
                              d since the epoch (0: no schedule) */
    int64_t repeat_ms;     /* re-notify while firing this often (0: once) */
    int32_t expired_feat;  /* on: expired(f): f's index, else -1. Such a
                              rule is keyed: one incident per expectation */
    int on_alerts;         /* on: alerts: evaluated after another rule of
                              the client fired or resolved */
    int resolve;           /* publish "resolved" when it stops holding */
    rule_label_t *labels;
    size_t n_labels;
    expr_tmpl_t *summary;  /* owned; NULL: the rule's name */
    rule_site_t *sites;    /* owned array */
    size_t n_sites;
} rule_def_t;

/* An event type that the set's type lists name literally (not by a glob),
 * with what each feature and rule makes of it: an event's type is looked
 * up once (ruleset_type_of) instead of matched against every list. */
typedef struct type_info {
    char *name;       /* owned */
    uint8_t used;     /* ruleset_uses_type */
    uint8_t *feat;    /* n_features: feature_type_match; owns the block */
    uint8_t *rule_on; /* n_rules: the rule's on: matches (in feat's block) */
} type_info_t;

struct ruleset {
    char **files;          /* owned paths, in load order */
    size_t n_files;
    /* Vars: names and static types; value tables, one per segment. Table
     * 0 is the base; table 1 + s applies segment_names[s]'s overrides. */
    char **var_names;
    uint8_t *var_types;
    size_t n_vars;
    expr_val_t *var_tables; /* (1 + n_segments) * n_vars */
    char **var_strs;        /* owned string storage for the tables */
    size_t n_var_strs;
    char *segment_attr;     /* owned; NULL without segments: */
    char **segment_names;
    size_t n_segments;
    feature_def_t *features;
    size_t n_features;
    rule_def_t *rules;
    size_t n_rules;
    /* risk: {half_life, cap} (one per set; no decay by default). */
    int64_t risk_half_life_ms; /* 0: weights do not decay */
    double risk_cap;
    uint64_t hash;
    char hash_hex[17];
    char summary[160];
    type_info_t *types;     /* sorted by name */
    size_t n_types;
    /* n_rules * n_features: reads[i * n_features + f] when rule i's `when`
     * depends on feature f's state (the hidden segment feature counts for
     * every rule: it picks the vars). NULL: not known, every change counts
     * for every rule. */
    uint8_t *reads;
};

/* The set's entry for an event type, or NULL when no list names it
 * literally (globs may still match it: ask feature_type_match and
 * type_set_match). */
const type_info_t *ruleset_type_of(const ruleset_t *rs, const char *type);

int rule_def_canon(const rule_def_t *r, buf_t *out);
void rule_def_free(rule_def_t *r);

/* The var table for a client in a segment (NULL or unknown: the base). */
const expr_val_t *ruleset_vars_for(const ruleset_t *rs, const char *segment);

/* ---- Client state internals (cstate.c, engine.c) ----------------------- */

enum rule_status {
    RULE_INACTIVE = 0,
    RULE_PENDING = 1,
    RULE_FIRING = 2,
};

/* Bounds of one rule's keyed incidents per client (expired() rules). */
#define RULE_MAX_INCIDENTS 100

/* One open keyed alert of an expired(f) rule: the expectation's key. */
typedef struct rule_incident {
    char *key;                /* owned, NUL-terminated */
    uint32_t key_len;
    uint32_t repeats;         /* repeat notifications sent */
    int64_t opened_ms;        /* the expectation's opening time */
    int64_t fired_at_ms;      /* its deadline: the alert id's time */
    int64_t last_notified_ms;
} rule_incident_t;

typedef struct rule_state {
    uint64_t id;
    uint8_t status;
    /* every: what the last look-ahead learnt of this rule's ticks, kept
     * while nothing the rule reads changes (engine.c, look_ahead): every
     * tick before la_quiet_ms changes nothing; la_final says the tick at
     * la_quiet_ms does. Only valid when la_known; in memory only, like
     * cstate.quiet_ms: a decoded or rebound state starts without it. The
     * small fields sit together: a client holds one of these per rule. */
    uint8_t la_known, la_final;
    uint32_t repeats;         /* repeat notifications of this firing */
    int64_t since_ms;         /* PENDING: when `when` started to hold */
    int64_t fired_at_ms;      /* FIRING: event time of the firing (alert id) */
    int64_t last_notified_ms; /* last firing notification (repeat:) */
    int64_t tick_ms;          /* every: the last tick done (INT64_MIN: not
                                 scheduled yet) */
    int64_t la_quiet_ms;
    rule_incident_t *inc;     /* owned; keyed rules only */
    uint32_t n_inc, cap_inc;
} rule_state_t;

void rule_state_clear(rule_state_t *s); /* frees the incidents */

/* The earliest deadline of one rule's state: a `for` deadline, an every
 * tick, a repeat; INT64_MAX when none. */
int64_t rule_next_due(const rule_def_t *r, const rule_state_t *s);

typedef struct feat_slot {
    uint64_t id;
    feat_state_t s;  /* s.kind is the section's kind byte */
    /* A section of a kind this build cannot decode (written by a newer
     * build) is kept as its payload bytes, re-encoded unchanged, and
     * dropped at the first bind. NULL for decoded sections. */
    uint8_t *raw;
    size_t raw_len;
} feat_slot_t;

struct cstate {
    char *client_id;        /* owned, NUL-terminated */
    size_t client_len;
    int64_t indexed_wake;
    /* Every tick of every `every` rule before quiet_ms is known to change
     * nothing under the state as it is (engine.c, look_ahead), so the
     * client need not be woken for them. INT64_MIN: nothing known. Only a
     * hint: kept in memory, never persisted, dropped at any change; a
     * state without it evaluates those ticks and gets the same result. */
    int64_t quiet_ms;
    /* An event changed the state and the runtime has not called
     * engine_look_ahead since (engine.h): quiet_ms is not known yet. In
     * memory only, like quiet_ms. */
    int look_pending;
    /* The runtime's own bookkeeping (cstate_wake_slot): where the state
     * sits in an in-memory timer index, 0 when it is in none. Never
     * persisted. */
    size_t wake_slot;
    /* Dedup ring: hashes of recent event ids with their event times, in
     * arrival order. */
    uint64_t *dd_ids;
    int64_t *dd_ts;
    size_t dd_n, dd_cap;
    int64_t dd_max_ts;      /* newest event time recorded */
    int64_t dd_min_ts;      /* a lower bound of the oldest (INT64_MIN:
                               unknown); not persisted */
    /* Sections. When `bound`, feats[i]/rules[i] belong to the rule set's
     * features[i]/rules[i] (the set whose hash is bound_hash); otherwise
     * they are as decoded, in record order, possibly of features the
     * current set no longer has. */
    feat_slot_t *feats;
    size_t n_feats;
    rule_state_t *rules;
    size_t n_rules;
    int bound;
    uint64_t bound_hash;
    /* Commercial history for `churnd report`, independent of the rule set
     * (ledger.h); empty unless engine_opts.ledger is on or a rule fired. */
    ledger_t ledger;
};

/* Align the state's sections with rs: keep the sections whose id rs has,
 * start the others fresh, drop the rest. Returns 0 or CHURN_ENOMEM (the
 * state is then unchanged). */
int cstate_bind(cstate_t *st, const ruleset_t *rs);

/* Dedup: is the id recent? record it (dropping expired and excess ids). */
int cstate_dedup_seen(const cstate_t *st, uint64_t id_hash);
int cstate_dedup_add(cstate_t *st, uint64_t id_hash, int64_t ts_ms,
                     const engine_opts_t *opts);

/* The risk a rule's state contributes at now_ms: its weight per firing
 * (one per keyed incident), each halved every rs->risk_half_life_ms after
 * it fired. Uncapped; the caller caps the sum at rs->risk_cap. */
double rule_risk_part(const ruleset_t *rs, const rule_def_t *r,
                      const rule_state_t *s, int64_t now_ms);

/* ---- Alerts (alert.c) -------------------------------------------------- */

void alert_clear(alert_t *a);
/* "<rule>/<client>[/<key>]/<fired_at RFC 3339>": key NULL or empty
 * leaves the key segment out. Appends to b. */
int alert_id_format(buf_t *b, const char *rule, const char *client,
                    size_t client_len, const char *key, size_t key_len,
                    int64_t fired_at_ms);

#endif
