/*
 * cli.h - the commands that evaluate rules over events given on the command
 * line rather than consumed from Kafka: `churnd replay` (replay.c) and
 * `churnd test` (ruletest.c), and the event-time driver both share.
 *
 * The driver runs the daemon's own processor (processor.h) on one input
 * partition, with the daemon's time model and nothing else: the watermark
 * is the largest event time seen minus the allowed lateness; after each
 * chunk of events the states are committed (by `churnd replay` in write-back
 * mode: kept in memory, written when evicted and at the end; processor.h),
 * then every timer the watermark passed fires, in deadline order. No wall
 * clock is read, so the same input always gives the same alerts, whatever
 * the chunk size.
 *
 * Like the daemon, the driver holds each event until the watermark passes
 * it and applies held events in event-time order (equal times in
 * processor_event_order), so input shuffled within the lateness gives the
 * alerts of the sorted input, in the daemon's order. Replay holds them in
 * memory (a run never stops between two commits it would have to resume
 * from). The end of the input is the end of the stream: replay_finish
 * applies whatever is still held.
 */
#ifndef CHURND_CLI_H
#define CHURND_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/common.h"
#include "churnd/engine.h"
#include "churnd/event.h"
#include "churnd/processor.h"
#include "churnd/store.h"

/* Entry points called by main.c; argv[0] is the command name. Each returns
 * the process exit status. */
int cmd_test(int argc, char **argv);
int cmd_replay(int argc, char **argv);
/* inspect.c: read a state directory, beside a running daemon or not. */
int cmd_state(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* ---- the event-time driver (replay.c) ----------------------------------- */

#define REPLAY_NONE INT64_MIN /* no event seen / no watermark yet */

/* What happened to the events given to the driver. */
typedef struct replay_counts {
    uint64_t applied, duplicate, ignored;
    uint64_t held;     /* waited for the watermark (every event in time) */
    uint64_t late;     /* behind the released watermark: applied at once */
} replay_counts_t;

/* An event waiting for the watermark, owned by the driver. The event is
 * boxed: the heap moves entries about, and a small one moves cheaply. */
typedef struct replay_held {
    int64_t ts_ms;
    uint64_t order;    /* processor_event_order */
    uint64_t seq;      /* arrival, for events equal in both */
    event_t *ev;       /* owned */
} replay_held_t;

typedef struct replay {
    processor_t *proc;
    engine_out_t out;        /* alerts not yet taken by the caller: read
                                them, then engine_out_reset() */
    int64_t lateness_ms;
    int64_t max_ts_ms;       /* largest event time seen, or REPLAY_NONE */
    int64_t watermark_ms;    /* timers fired up to here, or REPLAY_NONE */
    int64_t released_ms;     /* held events applied up to here */
    replay_held_t *held;     /* a min-heap on (ts, order, seq) */
    size_t n_held, cap_held;
    uint64_t seq;
    replay_counts_t counts;
} replay_t;

#define REPLAY_HELD 3 /* replay_event: held for reordering */

/* store and rs are borrowed and must outlive the driver. Returns 0 or
 * CHURN_ENOMEM. */
int replay_init(replay_t *r, store_t *store, const ruleset_t *rs,
                size_t cache_clients, const engine_opts_t *opts,
                int64_t lateness_ms);
void replay_close(replay_t *r);

/* Take one parsed event (input partition 0): hold it (REPLAY_HELD; ev is
 * moved into the driver and left empty), or apply it at once when it is
 * behind the released watermark. Returns REPLAY_HELD, an engine_result
 * (APPLIED, DUPLICATE, IGNORED), or a negative CHURN_E* with err: a state
 * error, fatal. Alerts are appended to r->out. raw/len are the bytes ev
 * was parsed from (only read for an event without id); replay_event
 * serialises ev's JSON instead. The caller still event_clear()s ev. */
int replay_event(replay_t *r, event_t *ev, churn_err_t *err);
int replay_event_raw(replay_t *r, event_t *ev, const char *raw, size_t len,
                     churn_err_t *err);

/* End of a chunk: commit what the events changed, then fire every timer
 * due at or before the watermark, max(largest event time - lateness,
 * floor_ms) (floor_ms is REPLAY_NONE, or the --until / until: time at the
 * end), committing between rounds. Alerts are appended to r->out. Returns
 * 0 or a negative CHURN_E* with err (fatal). */
int replay_settle(replay_t *r, int64_t floor_ms, churn_err_t *err);

/* The end of the input: apply every event still held, then settle with
 * floor_ms as replay_settle does. */
int replay_finish(replay_t *r, int64_t floor_ms, churn_err_t *err);

/* A fresh directory under $TMPDIR (else /tmp) named prefix-XXXXXX, into
 * path (size n). 0 or CHURN_EIO with err. */
int replay_mkdtemp(const char *prefix, char *path, size_t n, churn_err_t *err);
/* rm -rf path; quiet when it does not exist. */
void replay_rmtree(const char *path);

/* "2026-03-01T10:00:00Z" (RFC 3339) or integer epoch milliseconds, as
 * events accept them. 0 or CHURN_EINVAL. */
int replay_parse_time(const char *s, int64_t *ts_ms);

#endif
