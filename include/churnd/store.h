/*
 * store.h - the RocksDB adapter: per-client state records, the timer index
 * and consumed offsets, written together in one atomic WriteBatch per
 * micro-batch so that state and offsets never disagree, even after kill -9.
 *
 * Layout (format version 1, all integers big-endian so keys sort by them):
 *   'M' "format"                      -> u32 format version
 *   'C' u32 part | client             -> client state record (opaque here)
 *   'T' u32 part | u64 due | client   -> "" (wake this client at due)
 *   'O' u32 part | topic              -> u64 next offset to consume
 *   'B' u32 part | u64 ts | tag       -> an event held back until the
 *                                        watermark passes ts (opaque here)
 *   'S' u32 part                      -> the partition's counts (below)
 *   'F' u32 part                      -> how far its timers have fired
 *                                        (store_fired_t, below)
 * Everything of one input partition number shares the u32 prefix, so a
 * partition's state can be dropped or restored as a unit (SPEC section 9).
 * `due` is stored as (uint64)(ts_ms) ^ (1<<63) so negative times sort too.
 */
#ifndef CHURND_STORE_H
#define CHURND_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/common.h"

typedef struct store store_t;
typedef struct store_batch store_batch_t;

typedef enum store_mode {
    STORE_READ_WRITE = 0,
    STORE_READ_ONLY = 1, /* RocksDB read-only mode: a snapshot, safe beside
                            a running writer */
    STORE_SECONDARY = 2, /* follows a running writer (churnd state) */
} store_mode_t;

typedef struct store_opts {
    const char *dir;
    store_mode_t mode;
    size_t block_cache_bytes; /* 0: 32 MiB (an LRU cache of our own) */
    size_t write_buffer_bytes;/* 0: RocksDB's default */
    int sync;                 /* fsync the WAL on every commit */
} store_opts_t;

/* 0, or with err: CHURN_EIO (RocksDB refused; the message names the
 * directory, with a hint when another process holds its LOCK; read-write
 * also refuses a filesystem with less than 4 MiB free, where RocksDB would
 * abort instead of failing), CHURN_ECORRUPT (a format marker other than
 * version 1, or a non-empty RocksDB without one), CHURN_EINVAL, ENOMEM.
 * Read-write creates the directory (one level) and marks it. A secondary
 * keeps its own files in a fresh directory under $TMPDIR (else /tmp),
 * removed by store_close. One thread at a time per store. */
int store_open(const store_opts_t *opts, store_t **out, churn_err_t *err);
void store_close(store_t *s);

/* 0 and val filled (reset first), CHURN_ENOTFOUND, or CHURN_EIO with err. */
int store_get_client(store_t *s, uint32_t part, const char *client,
                     size_t client_len, buf_t *val, churn_err_t *err);
/* The client's record in whichever partition holds it (the lowest, should
 * several), for tools that know the client but not its partition (churnd
 * state): 0 with *part and val filled, CHURN_ENOTFOUND, or EIO with err. */
int store_find_client(store_t *s, const char *client, size_t client_len,
                      uint32_t *part, buf_t *val, churn_err_t *err);
/* Next offset to consume for topic/partition: 0, CHURN_ENOTFOUND or EIO. */
int store_get_offset(store_t *s, const char *topic, int32_t partition,
                     int64_t *next_offset, churn_err_t *err);

/* A batch of writes; nothing is visible until store_commit. */
store_batch_t *store_batch_new(void);
void store_batch_free(store_batch_t *b);
void store_batch_clear(store_batch_t *b);
size_t store_batch_count(const store_batch_t *b);
void store_batch_put_client(store_batch_t *b, uint32_t part,
                            const char *client, size_t client_len,
                            const void *val, size_t val_len);
void store_batch_del_client(store_batch_t *b, uint32_t part,
                            const char *client, size_t client_len);
void store_batch_put_timer(store_batch_t *b, uint32_t part, int64_t due_ms,
                           const char *client, size_t client_len);
void store_batch_del_timer(store_batch_t *b, uint32_t part, int64_t due_ms,
                           const char *client, size_t client_len);
void store_batch_put_offset(store_batch_t *b, const char *topic,
                            int32_t partition, int64_t next_offset);
/* Held events (the reorder buffer of time.allowed_lateness): tag orders
 * events of equal time and makes the key unique; val is opaque. */
void store_batch_put_held(store_batch_t *b, uint32_t part, int64_t ts_ms,
                          const void *tag, size_t tag_len, const void *val,
                          size_t val_len);
void store_batch_del_held(store_batch_t *b, uint32_t part, int64_t ts_ms,
                          const void *tag, size_t tag_len);
/* What one partition holds, for metrics: client states and their
 * expectations awaiting an event (before and past the deadline). Kept
 * by the runtime and written in the same batch as the states they count,
 * so they agree after any crash. Value: u8 version 1, then three varints. */
typedef struct store_counts {
    uint64_t clients, open_expectations, overdue_expectations;
} store_counts_t;
void store_batch_put_counts(store_batch_t *b, uint32_t part,
                            const store_counts_t *c);
void store_batch_del_counts(store_batch_t *b, uint32_t part);
/* 0 with c filled, CHURN_ENOTFOUND (never written: a state directory from
 * before the counts), CHURN_ECORRUPT or CHURN_EIO with err. */
int store_get_counts(store_t *s, uint32_t part, store_counts_t *c,
                     churn_err_t *err);
/* Every timer of the partition due at or before upto_ms has fired, under
 * the rule set whose hash is rules_hash. The daemon's look-ahead leaves
 * clients indexed past `every` ticks that change nothing and marks them
 * done only when it next touches the client; this record says up to where
 * they count as done across a restart (processor.c). Value: u8 version 1,
 * svarint upto_ms, u64 rules_hash. */
typedef struct store_fired {
    int64_t upto_ms;
    uint64_t rules_hash;
} store_fired_t;
void store_batch_put_fired(store_batch_t *b, uint32_t part,
                           const store_fired_t *f);
/* 0 with f filled, CHURN_ENOTFOUND (never written), CHURN_ECORRUPT or
 * CHURN_EIO with err. */
int store_get_fired(store_t *s, uint32_t part, store_fired_t *f,
                    churn_err_t *err);
/* Atomic: all of the batch or none of it. CHURN_EIO with err on failure
 * (a full or read-only disk, a store opened read-only or secondary);
 * CHURN_ENOMEM when a key of the batch could not be built (nothing is
 * written). The caller must treat either as fatal. The batch is left as it
 * was: clear it after a successful commit. */
int store_commit(store_t *s, store_batch_t *b, churn_err_t *err);

/* Call fn for each timer of partition part with due <= upto_ms, in due
 * order (ties in client byte order), at most limit entries (0: no limit).
 * fn returns 0 to go on, 1 to stop, negative to abort with that code, which
 * is returned as is with err untouched (fn may fill it through arg). */
typedef int (*store_timer_fn)(void *arg, uint32_t part, int64_t due_ms,
                              const char *client, size_t client_len);
int store_scan_timers(store_t *s, uint32_t part, int64_t upto_ms,
                      size_t limit, store_timer_fn fn, void *arg,
                      churn_err_t *err);

/* The same for the timers with from_ms <= due <= upto_ms: a caller that
 * knows no entry lies before from_ms skips the deleted ones there. */
int store_scan_timers_from(store_t *s, uint32_t part, int64_t from_ms,
                           int64_t upto_ms, size_t limit, store_timer_fn fn,
                           void *arg, churn_err_t *err);

/* The same from the key (from_ms, from_client) on, that key included: a
 * caller that knows no entry lies before it skips the deleted entries of
 * earlier rounds at from_ms itself (a daily tick puts every client of a
 * partition at one time, fired a limited round at a time). */
int store_scan_timers_after(store_t *s, uint32_t part, int64_t from_ms,
                            const char *from_client, size_t from_len,
                            int64_t upto_ms, size_t limit, store_timer_fn fn,
                            void *arg, churn_err_t *err);

/* Call fn for each held event of partition part with ts <= upto_ms, in
 * (ts, tag) order, at most limit entries (0: no limit); fn as above. */
typedef int (*store_held_fn)(void *arg, uint32_t part, int64_t ts_ms,
                             const void *tag, size_t tag_len, const void *val,
                             size_t val_len);
int store_scan_held(store_t *s, uint32_t part, int64_t upto_ms, size_t limit,
                    store_held_fn fn, void *arg, churn_err_t *err);
/* The same for the held events with from_ms <= ts <= upto_ms (a caller that
 * knows none lies before from_ms skips the deleted ones there). */
int store_scan_held_from(store_t *s, uint32_t part, int64_t from_ms,
                         int64_t upto_ms, size_t limit, store_held_fn fn,
                         void *arg, churn_err_t *err);

/* Call fn for each client record of partition part (part == UINT32_MAX:
 * every partition), in key order. fn returns 0/1/negative as above. */
typedef int (*store_client_fn)(void *arg, uint32_t part, const char *client,
                               size_t client_len, const void *val,
                               size_t val_len);
int store_scan_clients(store_t *s, uint32_t part, store_client_fn fn,
                       void *arg, churn_err_t *err);

/* Delete everything of one partition (clients, timers, offsets, held
 * events, counts). */
int store_drop_partition(store_t *s, uint32_t part, churn_err_t *err);

/* For a secondary instance: catch up with the writer. This reopens the
 * secondary (RocksDB 7.8's own catch-up can keep serving a value the writer
 * has overwritten once it flushed: rocksdb#15051); on failure the store
 * keeps its previous view and stays usable. Read-write: a no-op (0).
 * Read-only: CHURN_EINVAL, the snapshot cannot move. */
int store_catch_up(store_t *s, churn_err_t *err);

/* RocksDB figures for metrics, from its properties (named beside each);
 * unknown ones are left at 0. Cheap: in-memory figures, no I/O. s may be
 * NULL (all 0). */
typedef struct store_stats {
    uint64_t estimate_keys;     /* rocksdb.estimate-num-keys: every kind
                                   of key ('C', 'T', 'O', 'B'), estimated */
    uint64_t memtable_bytes;    /* rocksdb.cur-size-all-mem-tables */
    uint64_t block_cache_bytes; /* the block cache's usage */
    uint64_t live_sst_bytes;    /* rocksdb.live-sst-files-size */
    uint64_t total_sst_bytes;   /* rocksdb.total-sst-files-size (with
                                   files compaction has not deleted yet) */
    uint64_t delayed_write_rate;/* rocksdb.actual-delayed-write-rate, bytes
                                   per second; 0 when writes are not slowed */
    uint64_t write_stopped;     /* rocksdb.is-write-stopped: 1 or 0 */
    uint64_t pending_compaction_bytes; /* rocksdb.estimate-pending-compaction-bytes */
    uint64_t background_errors; /* rocksdb.background-errors */
} store_stats_t;
void store_get_stats(store_t *s, store_stats_t *st);

#endif
