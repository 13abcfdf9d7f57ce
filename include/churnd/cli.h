/*
 * cli.h - the commands that evaluate rules over events given on the command
 * line rather than consumed from Kafka: `churnd replay` (replay.c) and
 * `churnd test` (ruletest.c), and the event-time driver both share.
 *
 * The driver runs the daemon's own processor (processor.h) on one input
 * partition, with the daemon's time model and nothing else: the watermark
 * is the largest event time seen minus the allowed lateness; after each
 * chunk of events the states are committed, then every timer the watermark
 * passed fires, in deadline order. No wall clock is read, so the same input
 * always gives the same alerts, whatever the chunk size.
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

/* ---- the event-time driver (replay.c) ----------------------------------- */

#define REPLAY_NONE INT64_MIN /* no event seen / no watermark yet */

typedef struct replay {
    processor_t *proc;
    engine_out_t out;        /* alerts not yet taken by the caller: read
                                them, then engine_out_reset() */
    int64_t lateness_ms;
    int64_t max_ts_ms;       /* largest event time seen, or REPLAY_NONE */
    int64_t watermark_ms;    /* timers fired up to here, or REPLAY_NONE */
} replay_t;

/* store and rs are borrowed and must outlive the driver. Returns 0 or
 * CHURN_ENOMEM. */
int replay_init(replay_t *r, store_t *store, const ruleset_t *rs,
                size_t cache_clients, const engine_opts_t *opts,
                int64_t lateness_ms);
void replay_close(replay_t *r);

/* Apply one parsed event (input partition 0). Returns an engine_result
 * (APPLIED, DUPLICATE, IGNORED) or a negative CHURN_E* with err: a state
 * error, fatal. Alerts are appended to r->out. */
int replay_event(replay_t *r, const event_t *ev, churn_err_t *err);

/* End of a chunk: commit what the events changed, then fire every timer
 * due at or before the watermark, max(largest event time - lateness,
 * floor_ms) (floor_ms is REPLAY_NONE, or the --until / until: time at the
 * end), committing between rounds. Alerts are appended to r->out. Returns
 * 0 or a negative CHURN_E* with err (fatal). */
int replay_settle(replay_t *r, int64_t floor_ms, churn_err_t *err);

/* A fresh directory under $TMPDIR (else /tmp) named prefix-XXXXXX, into
 * path (size n). 0 or CHURN_EIO with err. */
int replay_mkdtemp(const char *prefix, char *path, size_t n, churn_err_t *err);
/* rm -rf path; quiet when it does not exist. */
void replay_rmtree(const char *path);

/* "2026-03-01T10:00:00Z" (RFC 3339) or integer epoch milliseconds, as
 * events accept them. 0 or CHURN_EINVAL. */
int replay_parse_time(const char *s, int64_t *ts_ms);

#endif
