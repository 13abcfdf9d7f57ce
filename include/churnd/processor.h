/*
 * processor.h - the Kafka-free heart shared by the daemon, `churnd replay`
 * and `churnd test`: client states (hot cache over the RocksDB store), the
 * engine, the timer index and the atomic commit. The daemon wraps it with
 * Kafka batches and acknowledgements; replay and test feed it lines of a
 * file. Because all three run this code, replay gives the daemon's alerts.
 *
 * Flow of one batch:
 *   processor_event() for each event      (alerts appended to out)
 *   processor_commit(offsets)             (one WriteBatch: states, timer
 *                                          index changes, offsets)
 *   processor_fire_timers(part, W)        (clients whose earliest deadline
 *                                          is <= watermark W, in deadline
 *                                          order, alerts appended to out)
 *   processor_commit(NULL)                (the states the timers changed)
 * Timers are read from the committed index, so fire timers only between
 * commits. Nothing here reads a clock or touches Kafka.
 */
#ifndef CHURND_PROCESSOR_H
#define CHURND_PROCESSOR_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/cache.h"
#include "churnd/common.h"
#include "churnd/engine.h"
#include "churnd/event.h"
#include "churnd/store.h"

typedef struct processor processor_t;

/* store is borrowed and must outlive the processor. */
processor_t *processor_new(store_t *store, size_t cache_clients,
                           const engine_opts_t *opts);
void processor_free(processor_t *p);
/* The rule set to evaluate with (borrowed; swap only between batches). */
void processor_set_rules(processor_t *p, const ruleset_t *rs);

/* Apply one parsed event of input partition part. Returns an
 * engine_result (APPLIED, DUPLICATE, IGNORED) or a negative CHURN_E* with
 * err filled (a state record that cannot be read, a store error): fatal. */
int processor_event(processor_t *p, uint32_t part, const event_t *ev,
                    engine_out_t *out, churn_err_t *err);

/* Fire the timers of partition part that are due at or before upto_ms, in
 * deadline order, at most limit clients (0: no limit). *n_fired gets how
 * many clients were woken. Returns 0, 1 when more may be due (call again
 * after committing), or a negative CHURN_E* with err. */
int processor_fire_timers(processor_t *p, uint32_t part, int64_t upto_ms,
                          size_t limit, engine_out_t *out, size_t *n_fired,
                          churn_err_t *err);

/* Next offsets to store with the batch. */
typedef struct processor_offset {
    const char *topic;
    int32_t partition;
    int64_t next_offset;
} processor_offset_t;

/* Write every changed state, the timer-index changes and the offsets in one
 * atomic WriteBatch. CHURN_EIO with err when RocksDB refuses: fatal. */
int processor_commit(processor_t *p, const processor_offset_t *offs,
                     size_t n_offs, churn_err_t *err);

/* Forget the cached clients of a partition (revoked). Only between
 * commits. */
void processor_drop_partition(processor_t *p, uint32_t part);

/* Clients changed since the last commit (for tests and metrics). */
size_t processor_dirty(const processor_t *p);

#endif
