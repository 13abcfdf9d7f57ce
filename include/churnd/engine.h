/*
 * engine.h - the boundary between the pure rule engine and the runtime.
 *
 * Given a loaded rule set, one client's state and an event (or the passage
 * of event time), the engine updates the state in place and appends alerts
 * to an output buffer. It does no I/O, reads no clock, and knows nothing of
 * Kafka, RocksDB or libuv: the daemon, `churnd replay` and `churnd test` all
 * drive it the same way, which is what makes replay and tests exact.
 *
 * Time: "now" is always event time, passed in. Every pending deadline of a
 * client (expectation deadlines, `for` durations, `every` ticks) lives in
 * its state; the engine reports the earliest one through cstate_next_wake()
 * and the runtime keeps one timer-index entry per client at that time, then
 * calls engine_on_time() when the watermark passes it.
 */
#ifndef CHURND_ENGINE_H
#define CHURND_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/common.h"
#include "churnd/event.h"

/* ---- Rule sets ---------------------------------------------------------- */

typedef struct ruleset ruleset_t;

/* A list of errors, so `churnd check` can report every one, not the first. */
typedef struct churn_errs {
    churn_err_t *v;
    size_t n;
    size_t cap;
} churn_errs_t;

void churn_errs_init(churn_errs_t *e);
void churn_errs_free(churn_errs_t *e);
/* Append one error (copied). Returns CHURN_ENOMEM or 0. */
int churn_errs_push(churn_errs_t *e, const churn_err_t *err);

/* Load every *.yaml / *.yml file of dir, in name order, as one rule set and
 * validate it as a whole. On success *out owns the set and errs is empty.
 * On failure returns CHURN_EINVAL, *out is NULL and errs holds every error
 * found, each with file:line:column. */
int ruleset_load_dir(const char *dir, ruleset_t **out, churn_errs_t *errs);
void ruleset_free(ruleset_t *rs);

size_t ruleset_n_rules(const ruleset_t *rs);
size_t ruleset_n_features(const ruleset_t *rs);
const char *ruleset_rule_name(const ruleset_t *rs, size_t i);
/* Hex digest of the set's normalised definition; equal sets, equal hash. */
const char *ruleset_hash(const ruleset_t *rs);
/* The same digest as a number (as the store records it: store_fired_t). */
uint64_t ruleset_hash64(const ruleset_t *rs);
/* One line for logs and `churnd check`: "2 rules, 3 features, 4 vars in 2
 * files", or "no rules: ..." for an empty (valid) directory. */
const char *ruleset_summary(const ruleset_t *rs);
/* Does any feature or rule consume events of this type? Events no one uses
 * are kept out of state entirely. */
int ruleset_uses_type(const ruleset_t *rs, const char *type);

/* ---- Client state ------------------------------------------------------- */

typedef struct cstate cstate_t;

/* An empty state for a client seen for the first time (id copied). */
cstate_t *cstate_new(const char *client_id, size_t len);
void cstate_free(cstate_t *st);
/* Memory the decoded state takes on the heap, its own struct included
 * (churn_heap_cost per allocation): the weight of a cached state. */
size_t cstate_heap_bytes(const cstate_t *st);
/* A hint: start loading the parts of the state an event reads first (its
 * feature and rule sections). Changes nothing. */
void cstate_prefetch(const cstate_t *st);
const char *cstate_client_id(const cstate_t *st);

/* The record format is versioned (first byte) and self-describing per
 * feature and rule section, keyed by a stable hash of the definition, so a
 * state written under an older rule set loads under a newer one: sections
 * whose definition changed or vanished are dropped, that feature or rule
 * alone starts fresh. Returns CHURN_ECORRUPT for a record it cannot read. */
int cstate_encode(const cstate_t *st, buf_t *out);
int cstate_decode(const void *data, size_t len, const char *client_id,
                  size_t client_len, cstate_t **out, churn_err_t *err);

/* Earliest pending deadline of this client under rs, or INT64_MAX. */
int64_t cstate_next_wake(const cstate_t *st, const ruleset_t *rs);
/* The first `every` tick of the state after pos_ms and after each rule's
 * last tick done, or INT64_MAX (no rule scheduled).
 * With lookahead_ticks the runtime uses it to wake clients in the order it
 * would without (processor.c). */
int64_t cstate_next_tick_after(const cstate_t *st, const ruleset_t *rs,
                               int64_t pos_ms);
/* The client's expectations still awaiting their event: before their
 * deadline (open) and past it (overdue), over every expect feature the
 * state holds. For the runtime's churnd_expectations figure. */
void cstate_count_expectations(const cstate_t *st, uint64_t *open,
                               uint64_t *overdue);
/* The wake time the runtime last indexed for this client (persisted in the
 * state so the old index entry can be deleted); INT64_MAX when none. */
int64_t cstate_indexed_wake(const cstate_t *st);
void cstate_set_indexed_wake(cstate_t *st, int64_t ts_ms);
/* A slot the runtime may use to find the state in an index of its own
 * (processor.c's in-memory timer heap): 0 on a new or decoded state, never
 * persisted, never read by the engine. */
size_t cstate_wake_slot(const cstate_t *st);
void cstate_set_wake_slot(cstate_t *st, size_t slot);
/* The state as one JSON object, for `churnd state CLIENT` and the HTTP
 * /clients/{id} endpoint: {"client_id", "features": {name: {"kind",
 * "state"}}, "rules": {name: {"status"[, "since" | "fired_at",
 * "alert_id"]}}, "risk", "next_wake", "recent_event_ids"}. Read as rs
 * would see it (features rs has but the state lacks show as fresh); rs
 * may be NULL (then only the client id, risk 0). Appends to out. */
int cstate_format_json(const cstate_t *st, const ruleset_t *rs, buf_t *out);

/* ---- Alerts ------------------------------------------------------------- */

typedef enum alert_status { ALERT_FIRING = 1, ALERT_RESOLVED = 2 } alert_status_t;

typedef struct alert {
    char *alert_id;        /* owned: rule/client[/key]/at-of-firing */
    const char *rule;      /* borrowed from the rule set */
    char *client_id;       /* owned */
    alert_status_t status;
    const char *severity;  /* "info" | "warning" | "critical" */
    int64_t at_ms;         /* event time of this transition */
    char *summary;         /* owned, templates expanded */
    char *labels_json;     /* owned JSON object text, "{}" when none */
    char *values_json;     /* owned JSON object text, "{}" when none */
    double risk;           /* the client's risk after this transition */
    char *trigger_event_id;/* owned; NULL for timer-triggered alerts */
    unsigned repeat;       /* 0; n for the n-th repeat notification of a
                              firing (repeat:), published as "repeat": n */
} alert_t;

typedef struct engine_out {
    alert_t *alerts;
    size_t n_alerts;
    size_t cap;
} engine_out_t;

void engine_out_init(engine_out_t *o);
void engine_out_reset(engine_out_t *o); /* frees the alerts, keeps capacity */
void engine_out_free(engine_out_t *o);

/* One alert as the JSON published on the alerts topic (SPEC section 5).
 * emitted_at_ms < 0 leaves "emitted_at" out (replay output is then exactly
 * reproducible). Pure. */
int alert_format_json(const alert_t *a, int64_t emitted_at_ms, buf_t *out);

/* ---- Applying ----------------------------------------------------------- */

typedef struct engine_opts {
    int64_t dedup_window_ms; /* event ids remembered per client this long */
    unsigned dedup_max_ids;  /* ... and at most this many */
    /* After a timer wake-up, look this many `every` ticks ahead and skip
     * waking the client for those that provably change nothing (0: off).
     * Exact only when the runtime passes, with each event, the time up to
     * which it has fired every due timer (engine_on_event_settled), and,
     * before the rule set changes under a state, settles its quiet ticks
     * (engine_settle_quiet): `churnd replay` on a fresh state (one rule
     * set, one run) and the daemon (processor.h, processor_set_live). */
    unsigned lookahead_ticks;
    /* Keep each client's commercial ledger (ledger.h) for `churnd report`:
     * orders and contract events are then applied even when no rule uses
     * their type. Alert firings are recorded whatever this says. */
    int ledger;
} engine_opts_t;

/* Does an event of this type reach the engine's state under rs and opts
 * (a rule or feature uses it, or the ledger keeps it)? The runtime skips
 * loading a state for the others. */
int engine_keeps_type(const ruleset_t *rs, const engine_opts_t *opts,
                      const char *type);

enum engine_result {
    ENGINE_APPLIED = 0,    /* state may have changed: persist it */
    ENGINE_DUPLICATE = 1,  /* id seen recently for this client: nothing done */
    ENGINE_IGNORED = 2,    /* no feature or rule uses this event type */
};

/* Apply one event to one client's state. Returns an engine_result, or a
 * negative CHURN_E* code (only ENOMEM: no rules file can make evaluation
 * fail). Alerts are appended to out. */
int engine_on_event(const ruleset_t *rs, const engine_opts_t *opts,
                    cstate_t *st, const event_t *ev, engine_out_t *out);

/* engine_on_event for a runtime that has fired every deadline due at or
 * before settled_ms (INT64_MIN: none known): an event behind it (late)
 * first brings the state to settled_ms as those timers would have, so the
 * ticks skipped by lookahead_ticks are seen as done, as they were. */
int engine_on_event_settled(const ruleset_t *rs, const engine_opts_t *opts,
                            cstate_t *st, const event_t *ev,
                            int64_t settled_ms, engine_out_t *out);

/* With opts->lookahead_ticks, engine_on_event leaves the look-ahead of
 * the state it changed to this call, so that a client with several events
 * between two timer rounds looks ahead once, not after each of them. The
 * runtime calls it for every client it applied events to before it reads
 * cstate_next_wake to index the client (processor.c does so at commit).
 * Skipping it is safe, only slower: ticks not proven quiet are evaluated
 * when they come. A no-op when nothing is pending. */
void engine_look_ahead(const ruleset_t *rs, const engine_opts_t *opts,
                       cstate_t *st);

/* Before a state leaves a run with lookahead for good (replay's final
 * flush): count the quiet ticks up to settled_ms (every timer due by then
 * has fired, really or virtually) as done, and forget the rest, so that
 * cstate_next_wake is the client's natural next deadline. A later run,
 * which wakes it at every tick, then continues as this run would have. */
void engine_drop_quiet(const ruleset_t *rs, cstate_t *st, int64_t settled_ms);

/* For a runtime that looks ahead but cannot keep what it knows of quiet
 * ticks (the daemon: its rule set changes on reload, its memory is lost on
 * restart): the state is indexed at cstate_indexed_wake, every timer due
 * at or before settled_ms has fired, and the state has not changed since
 * it was indexed. Count the ticks before both as done (the entry lies past
 * them only because they change nothing) and forget quiet_ms, so that
 * cstate_next_wake under rs is where a runtime without look-ahead would
 * index the client. The state need not be bound to rs; it is not bound by
 * this call. */
void engine_settle_quiet(const ruleset_t *rs, cstate_t *st, int64_t settled_ms);

/* A state read back from the store by a runtime that looks ahead under rs
 * and keeps every index entry either where a look-ahead under rs put it
 * or at the client's natural next deadline (processor.c: the index is
 * settled whenever the rule set changes): every tick before the entry
 * changes nothing, as the look-ahead found when it indexed the client,
 * and nothing changed the state since. Take that back as quiet_ms, which
 * the store does not keep, so that the ticks between the client's last
 * change and its next event or wake-up are not evaluated again. Binds the
 * state to rs; on a failed bind (out of memory) nothing is taken. */
void engine_resume_quiet(const ruleset_t *rs, const engine_opts_t *opts,
                         cstate_t *st);

/* Event time has reached now_ms for this client: fire every deadline of its
 * state that is <= now_ms, in deadline order. Returns 0 or CHURN_ENOMEM. */
int engine_on_time(const ruleset_t *rs, const engine_opts_t *opts,
                   cstate_t *st, int64_t now_ms, engine_out_t *out);

#endif
