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
 *
 * The reorder buffer: instead of applying an event at once, the runtime
 * holds it (processor_hold; persisted with the batch that consumed it
 * unless released within that batch) and releases held events in
 * event-time order once the watermark passes them (processor_release),
 * before firing the timers of that watermark. Every client then sees its
 * events and deadlines in time order whatever order the events arrived
 * in, within the lateness bound.
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
/* Bound the cached states by memory too: what each decoded state holds
 * (cstate_heap_bytes) plus PROCESSOR_CACHE_ENTRY_BYTES of index, summed,
 * at most max_bytes between commits (0: no such bound). */
#define PROCESSOR_CACHE_ENTRY_BYTES 64
void processor_set_cache_memory(processor_t *p, size_t max_bytes);
processor_t *processor_new(store_t *store, size_t cache_clients,
                           const engine_opts_t *opts);
void processor_free(processor_t *p);
/* The rule set to evaluate with (borrowed; swap only between batches).
 * With processor_set_live, call processor_settle_partition for every
 * partition, and commit, before changing it. */
void processor_set_rules(processor_t *p, const ruleset_t *rs);

/* The daemon's look-ahead (opts.lookahead_ticks in a runtime that
 * restarts, reloads its rules and takes partitions over), not replay's:
 *  - a timer round wakes clients at their own index entries only. Replay
 *    also wakes them virtually at each tick they skip, so that alerts of
 *    different clients come out in the order a run without look-ahead
 *    gives; the daemon's order across clients is not defined (it depends
 *    on how its rounds are cut), and each client's own alerts do not
 *    depend on it;
 *  - how far each partition's timers have fired is written with the
 *    commits (store_fired_t), so that after a restart an event behind it
 *    still finds the ticks the look-ahead skipped done (engine.h,
 *    engine_on_event_settled), and read back by processor_resume_partition.
 * Not with processor_set_write_back. */
void processor_set_live(processor_t *p);
/* Live look-ahead: partition part was assigned. Reads how far its timers
 * had fired; when that was under another rule set (the rules changed
 * while the daemon was down), the clients are re-indexed as by
 * processor_settle_partition, and the fired record names the rule set at
 * hand only once that walk is over (a start killed half-way leaves the
 * walk to the next one). Commits what it changed. 0 or a negative
 * CHURN_E* with err. Between commits only. */
int processor_resume_partition(processor_t *p, uint32_t part, churn_err_t *err);
/* Live look-ahead: a client indexed past ticks the look-ahead found quiet
 * under the rule set at hand may need them under another. Index every
 * client of partition part at the deadline a run without look-ahead would
 * have indexed it at (engine_settle_quiet): the first one after what the
 * partition's timers have fired, under the rule set at hand. Commits what
 * it changed. 0 or a negative CHURN_E* with err. Between commits only. */
int processor_settle_partition(processor_t *p, uint32_t part, churn_err_t *err);
/* The walk commits after every this many clients it re-indexed. A commit
 * holds the thread without progress calls: 4096 took up to 56 ms here on
 * 48,756 clients (a walk of 751 ms), 1024 up to 18 ms (679-868 ms), 512
 * up to 10 ms but 945-975 ms in all (each commit syncs the WAL). */
#define PROCESSOR_SETTLE_BATCH 1024
/* A walk takes the thread for as long as it lasts: about 6.5 s on
 * 1,000,000 clients. fn, when set, is called at the walk's first client
 * (done 0, once the partition's timer index is scanned), then every
 * PROCESSOR_PROGRESS_EVERY clients with how many of the partition's n it
 * has seen, so that the runtime can
 * tell its supervisor it is busy, not stuck. fn must not call back into
 * the processor. 64 clients are under 1 ms of a walk here; a call costs
 * a clock read. */
#define PROCESSOR_PROGRESS_EVERY 64
typedef void (*processor_progress_fn)(void *arg, uint32_t part, size_t done,
                                      size_t n);
void processor_set_progress(processor_t *p, processor_progress_fn fn, void *arg);
/* Live look-ahead: has how far some partition's timers fired changed since
 * the last commit (to be written by the next one)? */
int processor_fired_pending(const processor_t *p);

/* Apply one parsed event of input partition part. Returns an
 * engine_result (APPLIED, DUPLICATE, IGNORED) or a negative CHURN_E* with
 * err filled (a state record that cannot be read, a store error): fatal. */
/* A hint before applying events of clients client[i] (n at most
 * CACHE_PREFETCH_MAX) of one partition: start loading their cached states
 * at once, so that the memory latencies overlap. Changes nothing. */
void processor_prefetch(processor_t *p, uint32_t part, const char *const *client,
                        const size_t *len, size_t n);

int processor_event(processor_t *p, uint32_t part, const event_t *ev,
                    engine_out_t *out, churn_err_t *err);

/* Fire the timers of partition part that are due at or before upto_ms, in
 * deadline order, at most limit clients (0: no limit). *n_fired gets how
 * many clients were woken. Returns 0, 1 when more may be due (call again
 * after committing), or a negative CHURN_E* with err. */
int processor_fire_timers(processor_t *p, uint32_t part, int64_t upto_ms,
                          size_t limit, engine_out_t *out, size_t *n_fired,
                          churn_err_t *err);

/* An event as it arrived, for the reorder buffer: enough to parse it
 * again on release and to dead-letter it then if it no longer parses. */
typedef struct held_event {
    const char *topic; /* NUL-terminated */
    int32_t partition;
    int64_t offset;
    const void *key;   /* the Kafka message key; may be NULL */
    size_t key_len;
    const void *payload;
    size_t len;
    int64_t ts_ms;     /* its event time, as parsed on arrival */
} held_event_t;

/* Where an event goes among events of the same time: a hash of its
 * client and id (of payload when it has no id), never its arrival. The
 * daemon's buffer and replay's order events by (time, this). */
uint64_t processor_event_order(const event_t *ev, const void *payload,
                               size_t len);

/* Hold h (ev is its parse) in state partition part until
 * processor_release passes ev's time. Returns ENGINE_IGNORED for a type
 * no rule uses (nothing held, ev left as it was), 0 when held (ev's parse
 * moved in: ev then holds nothing), or CHURN_ENOMEM with err.
 * Kept in memory until the next processor_commit, which writes it unless
 * a release took it first; a release before then hands the parse over. */
int processor_hold(processor_t *p, uint32_t part, const held_event_t *h,
                   event_t *ev, churn_err_t *err);

/* Release the held events of partition part with time <= upto_ms, in
 * (time, content) order, at most limit (0: no limit), calling fn for each
 * (it applies the event, through processor_event). ev is the event as
 * parsed when this batch held it, or NULL when it comes from the store
 * (fn parses h's payload then); fn may move it out, and the processor
 * clears whatever is left. Each one
 * leaves the buffer with the next commit. *n_released gets the count.
 * Returns 0, 1 when more may be due (commit, then call again), fn's
 * negative code, or a negative CHURN_E* with err. The events come from
 * the committed buffer and from the holds of the batch at hand, merged in
 * order, so a batch may release what it held itself. */
typedef int (*processor_held_fn)(void *arg, uint32_t part,
                                 const held_event_t *h, event_t *ev);
int processor_release(processor_t *p, uint32_t part, int64_t upto_ms,
                      size_t limit, processor_held_fn fn, void *arg,
                      size_t *n_released, churn_err_t *err);

/* Does partition part hold any event (committed or in the batch at
 * hand)? 0 with *held set, or
 * a negative CHURN_E* with err. */
int processor_has_held(processor_t *p, uint32_t part, int *held,
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

/* Write-back mode, for `churnd replay` alone (one process, no reader
 * beside it, nothing acknowledged to anyone before the end): states stay
 * in the cache and reach the store only when the cache evicts them (down
 * to cache_clients, at each commit) and at processor_flush; the timer
 * entries of cached clients live in an in-memory heap, those of evicted
 * clients in the store as always. processor_commit then writes evicted
 * states only, so a store left without processor_flush (a crash) holds an
 * arbitrary mix of old and new states: never for the daemon, whose
 * per-batch atomic commit is what its crash guarantees rest on. Memory
 * stays bounded by the cache's capacity, as in the default mode. Turn it
 * on before the first event; it stays on. */
void processor_set_write_back(processor_t *p);

/* Write-back mode: write every cached state and its timer entry, so that
 * the store is complete and consistent (a later replay or `churnd run`
 * continues from it). Call after the last commit; if more events follow,
 * flush again before closing. 0, or a negative CHURN_E* with err. A no-op
 * returning 0 in the default mode, where every commit is complete. */
int processor_flush(processor_t *p, churn_err_t *err);

/* Forget the cached clients of a partition (revoked). Only between
 * commits. */
void processor_drop_partition(processor_t *p, uint32_t part);

/* Clients changed since the last commit (for tests and metrics). */
size_t processor_dirty(const processor_t *p);

/* Figures for metrics: the hot-client cache and how client states were
 * found (in the cache, loaded from the store, or new to this state). */
typedef struct processor_stats {
    size_t cached_clients;
    size_t cache_capacity;
    size_t cache_peak;      /* the most clients cached at once */
    size_t cache_bytes;     /* the cache's own memory, states not included */
    size_t cache_state_bytes; /* the cached states as weighed (index included) */
    size_t cache_max_bytes; /* state.cache_memory; 0: none */
    uint64_t cache_hits;
    uint64_t cache_misses;  /* loaded from the store or created */
    uint64_t new_clients;   /* no stored state: seen for the first time */
    uint64_t pending_timers;/* timer-index entries of the partitions
                               counted (processor_count_partition), kept
                               up to date as states move their deadline */
    /* Of the partitions counted: client states, and their expectations
     * awaiting an event before and past the deadline (exact). */
    uint64_t clients, open_expectations, overdue_expectations;
} processor_stats_t;
void processor_get_stats(const processor_t *p, processor_stats_t *st);

/* Start counting partition part (on an assignment): its timer-index
 * entries (one scan of its keys), and its client states and waiting
 * expectations (the store's counts record; a directory written before
 * that record existed is counted once by decoding every state, and the
 * record written at the next commit). From then on the figures of
 * processor_get_stats cover it, and every commit that changes its counts
 * writes them in the same batch as the states. 0 or a negative CHURN_E*
 * with err. Between commits only. */
int processor_count_partition(processor_t *p, uint32_t part, churn_err_t *err);

#endif
