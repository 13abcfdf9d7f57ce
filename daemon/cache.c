/*
 * cache.c - the hot-client cache (see include/churnd/cache.h for the
 * contract). Pure: no RocksDB, no clock, no I/O.
 *
 * Layout, chosen for millions of clients at a few tens of bytes each:
 *  - entries live in one array and are named by a uint32 index, so list
 *    links and hash slots are 4 bytes instead of 8-byte pointers; removed
 *    entries go on a free list and indices never move (the array grows by
 *    realloc, which glibc does with mremap for large blocks: no copy, and
 *    the untouched tail is not resident);
 *  - the hash table is open addressing with linear probing over those
 *    indices and backward-shift deletion (no tombstones to clean up). It
 *    keeps no hash per slot or entry: a probe compares partition and length
 *    first, and a rehash or deletion recomputes the hash of the few keys it
 *    moves. Storing 4 more bytes per slot would save that work; at our key
 *    sizes (ids of 8-40 bytes) hashing is cheaper than the cache misses the
 *    bigger table costs;
 *  - one pair of links serves two lists: clean entries in LRU order (head is
 *    the next victim) and dirty entries, which are simply not on the LRU
 *    list, so eviction never has to step over them and clear_dirty is a
 *    flag reset plus an O(1) splice;
 *  - ids up to 16 bytes are stored inside the entry.
 */
#include "churnd/cache.h"

#include <stdlib.h>
#include <string.h>

#include "churnd/common.h"

#define NIL UINT32_MAX          /* no entry: list ends, empty slots */
#define KEY_INLINE 16
#define META_DIRTY 0x80000000u
#define META_LEN 0x7fffffffu
#define MAX_ENTRIES (UINT32_MAX - 1u)

typedef struct centry {
    void *val; /* NULL: on the free list */
    union {
        char inl[KEY_INLINE];
        char *ptr;
    } key;
    uint32_t prev; /* clean or dirty list, by META_DIRTY */
    uint32_t next; /* also the free-list link */
    uint32_t part;
    uint32_t meta;   /* key length | META_DIRTY */
    uint32_t weight; /* the value's bytes as last weighed (cache_set_weigher) */
} centry_t;

_Static_assert(sizeof(centry_t) == 48, "a cache entry should stay 48 bytes");

struct cache {
    centry_t *e;
    uint32_t e_cap;     /* entries allocated */
    uint32_t e_used;    /* entries ever handed out (high-water mark) */
    uint32_t free_head; /* removed entries to reuse */
    uint32_t *slot;     /* entry index or NIL */
    size_t n_slots;     /* 0 or a power of two */
    size_t size;
    size_t peak; /* the most entries at once */
    size_t n_dirty;
    size_t capacity;
    size_t key_heap_bytes;
    uint32_t clean_head, clean_tail; /* LRU .. MRU */
    uint32_t dirty_head, dirty_tail;
    cache_free_fn free_val;
    cache_weigh_fn weigh; /* NULL: values weigh nothing */
    size_t max_bytes;     /* 0: no byte bound */
    size_t bytes;         /* sum of the entries' weights */
};

/* FNV-1a seeded with the partition, then a 64-bit finalizer (murmur3's
 * fmix64): FNV alone leaves the low bits, which pick the slot, weak. */
static uint64_t key_hash(uint32_t part, const char *client, size_t len) {
    uint64_t h = churn_hash64(client, len,
                              CHURN_HASH_SEED ^
                                  ((uint64_t)part * 0x9e3779b97f4a7c15ULL));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline size_t key_len(const centry_t *e) { return e->meta & META_LEN; }
static inline int is_dirty(const centry_t *e) {
    return (e->meta & META_DIRTY) != 0;
}
static inline const char *key_ptr(const centry_t *e) {
    return key_len(e) <= KEY_INLINE ? e->key.inl : e->key.ptr;
}

static size_t home_of(const cache_t *c, uint32_t idx) {
    const centry_t *e = &c->e[idx];
    return (size_t)key_hash(e->part, key_ptr(e), key_len(e)) & (c->n_slots - 1);
}

/* Weigh entry idx's value again and keep the sum in step. */
static void reweigh(cache_t *c, centry_t *e) {
    size_t w = c->weigh ? c->weigh(e->val) : 0;
    if (w > UINT32_MAX) w = UINT32_MAX;
    c->bytes = c->bytes - e->weight + w;
    e->weight = (uint32_t)w;
}

/* Over a bound: more entries than the capacity, or more bytes. */
static int over(const cache_t *c) {
    return c->size > c->capacity || (c->max_bytes && c->bytes > c->max_bytes);
}

/* Index of the entry, NIL if absent; *pos gets its slot. */
static uint32_t find(const cache_t *c, uint32_t part, const char *client,
                     size_t len, size_t *pos) {
    if (c->n_slots == 0) return NIL;
    size_t mask = c->n_slots - 1;
    size_t i = (size_t)key_hash(part, client, len) & mask;
    for (;;) {
        uint32_t idx = c->slot[i];
        if (idx == NIL) return NIL;
        const centry_t *e = &c->e[idx];
        if (e->part == part && key_len(e) == len &&
            (len == 0 || memcmp(key_ptr(e), client, len) == 0)) {
            if (pos) *pos = i;
            return idx;
        }
        i = (i + 1) & mask;
    }
}

static size_t slot_of(const cache_t *c, uint32_t idx) {
    size_t mask = c->n_slots - 1;
    size_t i = home_of(c, idx);
    while (c->slot[i] != idx) i = (i + 1) & mask;
    return i;
}

static void slot_insert(cache_t *c, uint32_t idx) {
    size_t mask = c->n_slots - 1;
    size_t i = home_of(c, idx);
    while (c->slot[i] != NIL) i = (i + 1) & mask;
    c->slot[i] = idx;
}

/* Backward-shift deletion: pull later members of the probe run into the
 * hole unless their home lies cyclically in (hole, their slot]. */
static void slot_delete(cache_t *c, size_t i) {
    size_t mask = c->n_slots - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint32_t idx = c->slot[j];
        if (idx == NIL) break;
        size_t k = home_of(c, idx);
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        c->slot[i] = idx;
        i = j;
    }
    c->slot[i] = NIL;
}

static int table_grow(cache_t *c) {
    size_t n = c->n_slots ? c->n_slots * 2 : 16;
    if (n > SIZE_MAX / sizeof(uint32_t)) return CHURN_ENOMEM;
    uint32_t *s = malloc(n * sizeof(uint32_t));
    if (!s) return CHURN_ENOMEM;
    memset(s, 0xff, n * sizeof(uint32_t)); /* NIL everywhere */
    free(c->slot);
    c->slot = s;
    c->n_slots = n;
    for (uint32_t i = 0; i < c->e_used; i++)
        if (c->e[i].val) slot_insert(c, i);
    return 0;
}

/* ---- the two lists ---- */

static void list_unlink(cache_t *c, uint32_t idx) {
    centry_t *e = &c->e[idx];
    uint32_t *head = is_dirty(e) ? &c->dirty_head : &c->clean_head;
    uint32_t *tail = is_dirty(e) ? &c->dirty_tail : &c->clean_tail;
    if (e->prev != NIL) c->e[e->prev].next = e->next;
    else *head = e->next;
    if (e->next != NIL) c->e[e->next].prev = e->prev;
    else *tail = e->prev;
    e->prev = e->next = NIL;
}

static void list_push_tail(cache_t *c, uint32_t idx) {
    centry_t *e = &c->e[idx];
    uint32_t *head = is_dirty(e) ? &c->dirty_head : &c->clean_head;
    uint32_t *tail = is_dirty(e) ? &c->dirty_tail : &c->clean_tail;
    e->next = NIL;
    e->prev = *tail;
    if (*tail != NIL) c->e[*tail].next = idx;
    else *head = idx;
    *tail = idx;
}

static void touch(cache_t *c, uint32_t idx) {
    uint32_t tail = is_dirty(&c->e[idx]) ? c->dirty_tail : c->clean_tail;
    if (tail == idx) return;
    list_unlink(c, idx);
    list_push_tail(c, idx);
}

/* ---- entries ---- */

static uint32_t entry_alloc(cache_t *c) {
    if (c->free_head != NIL) {
        uint32_t idx = c->free_head;
        c->free_head = c->e[idx].next;
        return idx;
    }
    if (c->e_used == c->e_cap) {
        if (c->e_cap >= MAX_ENTRIES) return NIL;
        uint64_t n = c->e_cap ? (uint64_t)c->e_cap * 2 : 16;
        if (n > MAX_ENTRIES) n = MAX_ENTRIES;
        if (n > SIZE_MAX / sizeof(centry_t)) return NIL;
        centry_t *p = realloc(c->e, (size_t)n * sizeof(centry_t));
        if (!p) return NIL;
        c->e = p;
        c->e_cap = (uint32_t)n;
    }
    return c->e_used++;
}

/* Take entry idx out of the table and its list, release its value and key,
 * and put it on the free list. pos is its slot. */
static void entry_remove(cache_t *c, uint32_t idx, size_t pos) {
    slot_delete(c, pos); /* needs the key: before it is freed */
    list_unlink(c, idx);
    centry_t *e = &c->e[idx];
    if (is_dirty(e)) c->n_dirty--;
    c->bytes -= e->weight;
    e->weight = 0;
    void *val = e->val;
    if (key_len(e) > KEY_INLINE) {
        c->key_heap_bytes -= churn_heap_cost(key_len(e));
        free(e->key.ptr);
    }
    e->val = NULL;
    e->meta = 0;
    e->next = c->free_head;
    c->free_head = idx;
    c->size--;
    if (c->free_val) c->free_val(val);
}

/* ---- public ---- */

cache_t *cache_new(size_t capacity, cache_free_fn free_val) {
    cache_t *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->capacity = capacity;
    c->free_val = free_val;
    c->free_head = NIL;
    c->clean_head = c->clean_tail = NIL;
    c->dirty_head = c->dirty_tail = NIL;
    return c;
}

void cache_free(cache_t *c) {
    if (!c) return;
    for (uint32_t i = 0; i < c->e_used; i++) {
        centry_t *e = &c->e[i];
        if (!e->val) continue;
        if (key_len(e) > KEY_INLINE) free(e->key.ptr);
        if (c->free_val) c->free_val(e->val);
    }
    free(c->e);
    free(c->slot);
    free(c);
}

void cache_prefetch(const cache_t *c, uint32_t part, const char *const *client,
                    const size_t *len, size_t n, void **vals) {
    if (c->n_slots == 0) {
        for (size_t i = 0; i < n; i++) vals[i] = NULL;
        return;
    }
    size_t mask = c->n_slots - 1;
    size_t at[CACHE_PREFETCH_MAX];
    if (n > CACHE_PREFETCH_MAX) n = CACHE_PREFETCH_MAX;
    for (size_t i = 0; i < n; i++) {
        at[i] = (size_t)key_hash(part, client[i], len[i]) & mask;
        __builtin_prefetch(&c->slot[at[i]]);
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t idx = c->slot[at[i]];
        at[i] = idx;
        if (idx != NIL) __builtin_prefetch(&c->e[idx]);
    }
    for (size_t i = 0; i < n; i++) {
        const centry_t *e = at[i] != NIL ? &c->e[at[i]] : NULL;
        vals[i] = e && e->part == part && key_len(e) == len[i] &&
                          memcmp(key_ptr(e), client[i], len[i]) == 0
                      ? e->val
                      : NULL;
        if (vals[i]) __builtin_prefetch(vals[i]);
    }
}

void *cache_get(cache_t *c, uint32_t part, const char *client, size_t len) {
    uint32_t idx = find(c, part, client, len, NULL);
    if (idx == NIL) return NULL;
    touch(c, idx);
    return c->e[idx].val;
}

int cache_put(cache_t *c, uint32_t part, const char *client, size_t len,
              void *val) {
    if (!val || len > CACHE_KEY_MAX) return CHURN_EINVAL;
    uint32_t idx = find(c, part, client, len, NULL);
    if (idx != NIL) {
        void *old = c->e[idx].val;
        c->e[idx].val = val;
        reweigh(c, &c->e[idx]);
        touch(c, idx);
        if (old != val && c->free_val) c->free_val(old);
        return 0;
    }
    if (c->size + 1 > c->n_slots / 4 * 3) {
        if (table_grow(c)) return CHURN_ENOMEM;
    }
    char *heap = NULL;
    if (len > KEY_INLINE) {
        heap = malloc(len);
        if (!heap) return CHURN_ENOMEM;
        memcpy(heap, client, len);
    }
    idx = entry_alloc(c);
    if (idx == NIL) {
        free(heap);
        return CHURN_ENOMEM;
    }
    centry_t *e = &c->e[idx];
    e->val = val;
    e->part = part;
    e->meta = (uint32_t)len; /* clean */
    e->weight = 0;
    reweigh(c, e);
    if (heap) {
        e->key.ptr = heap;
        c->key_heap_bytes += churn_heap_cost(len);
    } else if (len) {
        memcpy(e->key.inl, client, len);
    }
    slot_insert(c, idx);
    list_push_tail(c, idx);
    c->size++;
    if (c->size > c->peak) c->peak = c->size;
    return 0;
}

int cache_mark_dirty(cache_t *c, uint32_t part, const char *client,
                     size_t len) {
    uint32_t idx = find(c, part, client, len, NULL);
    if (idx == NIL) return CHURN_ENOTFOUND;
    centry_t *e = &c->e[idx];
    if (is_dirty(e)) return 0;
    list_unlink(c, idx);
    e->meta |= META_DIRTY;
    list_push_tail(c, idx);
    c->n_dirty++;
    return 0;
}

int cache_remove(cache_t *c, uint32_t part, const char *client, size_t len) {
    size_t pos = 0;
    uint32_t idx = find(c, part, client, len, &pos);
    if (idx == NIL) return CHURN_ENOTFOUND;
    entry_remove(c, idx, pos);
    return 0;
}

int cache_each_dirty(cache_t *c, cache_dirty_fn fn, void *arg) {
    for (uint32_t idx = c->dirty_head; idx != NIL;) {
        const centry_t *e = &c->e[idx];
        uint32_t next = e->next;
        int rc = fn(arg, e->part, key_ptr(e), key_len(e), e->val);
        if (rc) return rc;
        idx = next;
    }
    return 0;
}

void cache_clear_dirty(cache_t *c) {
    if (c->dirty_head == NIL) return;
    /* The batch's changes are done: what they weigh now counts. */
    for (uint32_t idx = c->dirty_head; idx != NIL; idx = c->e[idx].next) {
        c->e[idx].meta &= ~META_DIRTY;
        reweigh(c, &c->e[idx]);
    }
    /* Splice the whole dirty list onto the MRU end of the clean list. */
    if (c->clean_tail == NIL) {
        c->clean_head = c->dirty_head;
    } else {
        c->e[c->clean_tail].next = c->dirty_head;
        c->e[c->dirty_head].prev = c->clean_tail;
    }
    c->clean_tail = c->dirty_tail;
    c->dirty_head = c->dirty_tail = NIL;
    c->n_dirty = 0;
}

size_t cache_evict(cache_t *c) {
    size_t n = 0;
    while (over(c) && c->clean_head != NIL) {
        uint32_t idx = c->clean_head;
        entry_remove(c, idx, slot_of(c, idx));
        n++;
    }
    return n;
}

int cache_evict_each(cache_t *c, cache_dirty_fn fn, void *arg) {
    while (over(c) && c->clean_head != NIL) {
        uint32_t idx = c->clean_head;
        const centry_t *e = &c->e[idx];
        int rc = fn(arg, e->part, key_ptr(e), key_len(e), e->val);
        if (rc) return rc;
        entry_remove(c, idx, slot_of(c, idx));
    }
    return 0;
}

int cache_each(cache_t *c, cache_dirty_fn fn, void *arg) {
    /* Indices are stable and fn changes nothing: a walk of the array. */
    for (uint32_t i = 0; i < c->e_used; i++) {
        const centry_t *e = &c->e[i];
        if (!e->val) continue;
        int rc = fn(arg, e->part, key_ptr(e), key_len(e), e->val);
        if (rc) return rc;
    }
    return 0;
}

size_t cache_drop_partition(cache_t *c, uint32_t part) {
    size_t n = 0;
    /* Indices are stable under removal, so a walk of the array is safe. */
    for (uint32_t i = 0; i < c->e_used; i++) {
        if (!c->e[i].val || c->e[i].part != part) continue;
        entry_remove(c, i, slot_of(c, i));
        n++;
    }
    return n;
}

void cache_set_weigher(cache_t *c, cache_weigh_fn weigh, size_t max_bytes) {
    c->weigh = weigh;
    c->max_bytes = max_bytes;
    for (uint32_t i = 0; i < c->e_used; i++)
        if (c->e[i].val) reweigh(c, &c->e[i]);
}

size_t cache_value_bytes(const cache_t *c) { return c->bytes; }
size_t cache_max_bytes(const cache_t *c) { return c->max_bytes; }

size_t cache_size(const cache_t *c) { return c->size; }
size_t cache_peak(const cache_t *c) { return c->peak; }
size_t cache_dirty_count(const cache_t *c) { return c->n_dirty; }
size_t cache_capacity(const cache_t *c) { return c->capacity; }

size_t cache_memory_bytes(const cache_t *c) {
    return sizeof(*c) + (size_t)c->e_cap * sizeof(centry_t) +
           c->n_slots * sizeof(uint32_t) + c->key_heap_bytes;
}
