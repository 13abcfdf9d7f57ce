/*
 * cache.h - the hot-client cache: (input partition, client id) -> the
 * runtime's in-memory client state (an opaque pointer; the runtime stores
 * cstate_t * there), least recently used first out, with a dirty flag per
 * entry.
 *
 * A pure data structure: no RocksDB, no clock, no I/O, one thread at a time.
 * What it holds is always "RocksDB plus the micro-batch in flight": an entry
 * marked dirty has changes that are not committed yet, so it is never
 * evicted. The runtime's cycle is
 *
 *     get (else load from RocksDB and put) -> mark_dirty -> ...
 *     each_dirty (build the WriteBatch) -> store_commit
 *     -> clear_dirty -> evict
 *
 * Capacity bounds the entries kept *between* batches: put never evicts (a
 * pointer returned by get stays valid until the next evict, drop_partition,
 * remove, put on the same key or free), evict trims clean entries down to
 * capacity. Capacity 0 keeps nothing clean. With a weigher
 * (cache_set_weigher) evict also trims them down to a number of bytes:
 * each value is weighed when it is put and again when its batch is
 * committed (clear_dirty), the only times the runtime changes it.
 *
 * Values are owned by the cache once put succeeds and are released with
 * free_val (when not NULL) exactly once: on replace by a different pointer,
 * evict, remove, drop_partition or cache_free.
 *
 * Memory, values not included: a 48-byte entry per client (ids up to 16
 * bytes stored inline, longer ones in one extra allocation) plus 4 bytes
 * per hash slot at a load factor between 3/8 and 3/4. Measured resident,
 * with the 40-byte entry the cache had before entries carried their
 * weight: 46-49 bytes per client with 12-byte ids (1 to 3 million
 * clients), 97 with 36-byte UUID ids; 8 more per client now.
 * cache_memory_bytes reports what is allocated, which right after the
 * entry array doubles is up to 84 bytes per client with short ids
 * (glibc's realloc of large blocks leaves the untouched half
 * non-resident).
 */
#ifndef CHURND_CACHE_H
#define CHURND_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache cache_t;
typedef void (*cache_free_fn)(void *val);

/* Longest client id accepted (bytes). */
#define CACHE_KEY_MAX ((size_t)1 << 30)

/* NULL when out of memory. free_val may be NULL (values are then borrowed). */
cache_t *cache_new(size_t capacity, cache_free_fn free_val);
/* Releases every value, dirty ones included. NULL is accepted. */
void cache_free(cache_t *c);

/* The value, or NULL. Counts as a use (moves the entry to the most recently
 * used end). client[0..len) is not NUL-terminated; it is copied by put. */
void *cache_get(cache_t *c, uint32_t part, const char *client, size_t len);
/* Keys cache_prefetch looks at, at most. */
#define CACHE_PREFETCH_MAX 16

/* A hint, for a caller about to cache_get the keys (client[i], len[i]) of
 * one partition: start loading the memory the lookups will touch, the
 * table's slot, the entry, then the value, a stage for all keys at a
 * time, so that the cache misses of several lookups overlap instead of
 * following one another. vals[i] is the value found at the key's first
 * slot, or NULL (absent, or further along the probe: the lookup will
 * tell). Changes nothing. */
void cache_prefetch(const cache_t *c, uint32_t part, const char *const *client,
                    const size_t *len, size_t n, void **vals);
/* Insert, or replace the value of an existing entry (the old value is
 * released unless it is val itself; the dirty flag is kept, since what is
 * dirty is the client, not the pointer). A new entry is clean. Counts as a
 * use. 0, CHURN_EINVAL (val NULL, id too long) or CHURN_ENOMEM; on error
 * the cache did not take val. */
int cache_put(cache_t *c, uint32_t part, const char *client, size_t len,
              void *val);
/* The entry has changes to commit: 0, or CHURN_ENOTFOUND. */
int cache_mark_dirty(cache_t *c, uint32_t part, const char *client,
                     size_t len);
/* Forget one entry, dirty or not, releasing its value: 0 or
 * CHURN_ENOTFOUND. */
int cache_remove(cache_t *c, uint32_t part, const char *client, size_t len);

/* Call fn for each dirty entry (in the order they were last used); the
 * client pointer is borrowed for the call. fn must not change the cache.
 * Returns 0, or the first nonzero value fn returned (iteration stops). */
typedef int (*cache_dirty_fn)(void *arg, uint32_t part, const char *client,
                              size_t len, void *val);
int cache_each_dirty(cache_t *c, cache_dirty_fn fn, void *arg);
/* The batch is committed: every dirty entry becomes clean and most recently
 * used (after the clean entries used during the batch). */
void cache_clear_dirty(cache_t *c);
/* Release least recently used clean entries while size > capacity.
 * Returns how many were released. */
size_t cache_evict(cache_t *c);
/* cache_evict for a cache that writes back (replay's write-back mode,
 * processor.h): call fn for each victim, before it is released, with the
 * same arguments as cache_each_dirty. fn must not change the cache. Stops
 * at the first nonzero value fn returns, which is returned (that victim
 * stays); 0 when the cache is down to capacity or only dirty entries are
 * left. */
int cache_evict_each(cache_t *c, cache_dirty_fn fn, void *arg);
/* Call fn for every entry, dirty or not, in no particular order; fn as
 * for cache_each_dirty. Returns 0 or fn's first nonzero value. */
int cache_each(cache_t *c, cache_dirty_fn fn, void *arg);
/* Release every entry of input partition part, dirty ones included (the
 * partition was revoked: its uncommitted changes replay elsewhere). Returns
 * how many were released. O(size). */
size_t cache_drop_partition(cache_t *c, uint32_t part);

/* Weigh values with weigh (bytes a value holds) and keep the clean
 * entries within max_bytes as well as within the capacity (0: no byte
 * bound). Every entry is weighed now. */
typedef size_t (*cache_weigh_fn)(const void *val);
void cache_set_weigher(cache_t *c, cache_weigh_fn weigh, size_t max_bytes);
/* The entries' weights summed (0 without a weigher), and the bound. */
size_t cache_value_bytes(const cache_t *c);
size_t cache_max_bytes(const cache_t *c);
size_t cache_size(const cache_t *c);
/* The most entries the cache has held at once. */
size_t cache_peak(const cache_t *c);
size_t cache_dirty_count(const cache_t *c);
size_t cache_capacity(const cache_t *c);
/* Bytes the cache itself holds (entries, table, long ids), values not
 * included: for metrics. */
size_t cache_memory_bytes(const cache_t *c);

#endif
