/*
 * test_cache.c - the hot-client cache: LRU order, dirty entries never
 * evicted, partitions kept apart and dropped, growth, every value released
 * exactly once, and a randomized run against a naive model of the same
 * contract (which exercises the hash table's deletion under collisions).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/cache.h"
#include "churnd/common.h"

/* Values are counted allocations: each knows its id and whether it was
 * released; n_freed counts releases. */
typedef struct tval {
    int id;
    int freed;
} tval_t;

static size_t n_freed;
static size_t n_made;

static tval_t *tv(int id) {
    tval_t *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    v->id = id;
    n_made++;
    return v;
}

static void tv_free(void *p) {
    tval_t *v = p;
    assert_int_equal(v->freed, 0);
    v->freed = 1;
    n_freed++;
    free(v);
}

static int setup(void **state) {
    (void)state;
    n_freed = n_made = 0;
    return 0;
}

#define K(s) (s), strlen(s)

static int get_id(cache_t *c, uint32_t part, const char *k) {
    tval_t *v = cache_get(c, part, k, strlen(k));
    return v ? v->id : -1;
}

static void put_id(cache_t *c, uint32_t part, const char *k, int id) {
    assert_int_equal(cache_put(c, part, K(k), tv(id)), 0);
}

static void test_get_put_replace(void **state) {
    (void)state;
    cache_t *c = cache_new(10, tv_free);
    assert_non_null(c);
    assert_null(cache_get(c, 0, K("a")));
    put_id(c, 0, "a", 1);
    assert_int_equal(get_id(c, 0, "a"), 1);
    assert_int_equal(cache_size(c), 1);
    /* Replacing by another value releases the old one once. */
    put_id(c, 0, "a", 2);
    assert_int_equal(n_freed, 1);
    assert_int_equal(get_id(c, 0, "a"), 2);
    assert_int_equal(cache_size(c), 1);
    /* Replacing by the same pointer releases nothing. */
    void *same = cache_get(c, 0, K("a"));
    assert_int_equal(cache_put(c, 0, K("a"), same), 0);
    assert_int_equal(n_freed, 1);
    /* The dirty flag belongs to the client, not the pointer. */
    assert_int_equal(cache_mark_dirty(c, 0, K("a")), 0);
    put_id(c, 0, "a", 3);
    assert_int_equal(cache_dirty_count(c), 1);
    /* Errors leave ownership with the caller. */
    assert_int_equal(cache_put(c, 0, K("b"), NULL), CHURN_EINVAL);
    assert_int_equal(cache_mark_dirty(c, 0, K("zz")), CHURN_ENOTFOUND);
    assert_int_equal(cache_remove(c, 0, K("zz")), CHURN_ENOTFOUND);
    /* Ids are byte strings: not NUL-terminated, may hold NUL, may be empty. */
    const char bin[] = {'x', '\0', 'y'};
    assert_int_equal(cache_put(c, 0, bin, 3, tv(4)), 0);
    assert_int_equal(cache_put(c, 0, bin, 1, tv(5)), 0);
    assert_int_equal(cache_put(c, 0, "", 0, tv(6)), 0);
    assert_int_equal(((tval_t *)cache_get(c, 0, bin, 3))->id, 4);
    assert_int_equal(((tval_t *)cache_get(c, 0, bin, 1))->id, 5);
    assert_int_equal(((tval_t *)cache_get(c, 0, "", 0))->id, 6);
    assert_int_equal(cache_size(c), 4);
    cache_free(c);
    assert_int_equal(n_freed, n_made);
}

static void test_partitions_are_distinct(void **state) {
    (void)state;
    cache_t *c = cache_new(10, tv_free);
    put_id(c, 1, "ACME-001", 1);
    put_id(c, 2, "ACME-001", 2);
    assert_int_equal(get_id(c, 1, "ACME-001"), 1);
    assert_int_equal(get_id(c, 2, "ACME-001"), 2);
    assert_int_equal(get_id(c, 3, "ACME-001"), -1);
    assert_int_equal(cache_size(c), 2);
    cache_free(c);
    assert_int_equal(n_freed, 2);
}

static void test_lru_order(void **state) {
    (void)state;
    cache_t *c = cache_new(2, tv_free);
    put_id(c, 0, "a", 1);
    put_id(c, 0, "b", 2);
    put_id(c, 0, "c", 3);
    /* Put never evicts: the runtime may hold pointers until the commit. */
    assert_int_equal(cache_size(c), 3);
    assert_int_equal(n_freed, 0);
    assert_int_equal(get_id(c, 0, "a"), 1); /* order now b, c, a */
    assert_int_equal(cache_evict(c), 1);
    assert_int_equal(cache_size(c), 2);
    assert_int_equal(get_id(c, 0, "b"), -1);
    assert_int_equal(get_id(c, 0, "c"), 3); /* order a, c */
    put_id(c, 0, "d", 4);                   /* a, c, d */
    put_id(c, 0, "a", 5);                   /* replacing is a use: c, d, a */
    assert_int_equal(cache_evict(c), 1);
    assert_int_equal(get_id(c, 0, "c"), -1);
    assert_int_equal(get_id(c, 0, "d"), 4);
    assert_int_equal(get_id(c, 0, "a"), 5);
    assert_int_equal(n_freed, 3); /* b, c, and the replaced a */
    cache_free(c);
    assert_int_equal(n_freed, n_made);
}

/* cache_prefetch finds what a lookup at the key's first slot finds, and
 * is no use: the order of eviction stays as the gets and puts made it. */
static void test_prefetch_is_only_a_hint(void **state) {
    (void)state;
    cache_t *c = cache_new(2, tv_free);
    const char *keys[64];
    char names[64][16];
    size_t lens[64];
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof(names[i]), "k%d", i);
        keys[i] = names[i];
        lens[i] = strlen(names[i]);
        put_id(c, 0, names[i], i);
    }
    void *vals[CACHE_PREFETCH_MAX];
    size_t found = 0;
    for (int from = 0; from < 64; from += CACHE_PREFETCH_MAX) {
        cache_prefetch(c, 0, keys + from, lens + from, CACHE_PREFETCH_MAX, vals);
        for (int i = 0; i < CACHE_PREFETCH_MAX; i++) {
            if (!vals[i]) continue; /* further along its probe */
            assert_int_equal(((tval_t *)vals[i])->id, from + i);
            found++;
        }
    }
    assert_true(found > 32); /* a table at most 3/4 full: most at home */
    /* Absent keys, another partition, no table. */
    const char *absent[2] = {"nope", "k1"};
    size_t alen[2] = {4, 2};
    cache_prefetch(c, 0, absent, alen, 1, vals);
    assert_null(vals[0]);
    cache_prefetch(c, 7, absent + 1, alen + 1, 1, vals);
    assert_null(vals[0]);
    /* k0 is the least recently used still; prefetching it changed nothing. */
    assert_int_equal(cache_evict(c), 62);
    assert_int_equal(get_id(c, 0, "k0"), -1);
    assert_int_equal(get_id(c, 0, "k62"), 62);
    assert_int_equal(get_id(c, 0, "k63"), 63);
    cache_free(c);
    cache_t *empty = cache_new(2, tv_free);
    vals[0] = &found;
    cache_prefetch(empty, 0, absent, alen, 1, vals);
    assert_null(vals[0]);
    cache_free(empty);
}

static int collect(void *arg, uint32_t part, const char *client, size_t len,
                   void *val) {
    buf_t *b = arg;
    (void)part;
    (void)val;
    assert_int_equal(buf_append(b, client, len), 0);
    assert_int_equal(buf_putc(b, ','), 0);
    return 0;
}

static int stop_at_second(void *arg, uint32_t part, const char *client,
                          size_t len, void *val) {
    (void)part;
    (void)client;
    (void)len;
    (void)val;
    int *n = arg;
    return ++*n == 2 ? 42 : 0;
}

static void test_dirty_never_evicted(void **state) {
    (void)state;
    cache_t *c = cache_new(0, tv_free); /* keep nothing clean */
    put_id(c, 0, "a", 1);
    put_id(c, 0, "b", 2);
    put_id(c, 0, "c", 3);
    put_id(c, 7, "d", 4);
    assert_int_equal(cache_mark_dirty(c, 0, K("c")), 0);
    assert_int_equal(cache_mark_dirty(c, 0, K("a")), 0);
    assert_int_equal(cache_mark_dirty(c, 0, K("a")), 0); /* idempotent */
    assert_int_equal(cache_mark_dirty(c, 7, K("d")), 0);
    assert_int_equal(cache_dirty_count(c), 3);
    assert_int_equal(cache_evict(c), 1); /* only b */
    assert_int_equal(cache_size(c), 3);
    assert_int_equal(get_id(c, 0, "b"), -1);
    /* Still there after an evict, in the order they were last used. */
    assert_int_equal(get_id(c, 0, "c"), 3);
    buf_t seen;
    buf_init(&seen);
    assert_int_equal(cache_each_dirty(c, collect, &seen), 0);
    assert_int_equal(seen.len, 6);
    assert_memory_equal(seen.data, "a,d,c,", 6);
    int n = 0;
    assert_int_equal(cache_each_dirty(c, stop_at_second, &n), 42);
    assert_int_equal(n, 2);
    /* Committed: now they may go. */
    cache_clear_dirty(c);
    assert_int_equal(cache_dirty_count(c), 0);
    buf_reset(&seen);
    assert_int_equal(cache_each_dirty(c, collect, &seen), 0);
    assert_int_equal(seen.len, 0);
    assert_int_equal(cache_evict(c), 3);
    assert_int_equal(cache_size(c), 0);
    buf_free(&seen);
    cache_free(c);
    assert_int_equal(n_freed, 4);
}

static void test_cleared_dirty_become_most_recent(void **state) {
    (void)state;
    cache_t *c = cache_new(2, tv_free);
    put_id(c, 0, "a", 1);
    put_id(c, 0, "b", 2);
    put_id(c, 0, "c", 3);                            /* clean: a b c */
    assert_int_equal(cache_mark_dirty(c, 0, K("a")), 0); /* clean: b c */
    assert_int_equal(get_id(c, 0, "b"), 2);              /* clean: c b */
    cache_clear_dirty(c);                                /* clean: c b a */
    assert_int_equal(cache_evict(c), 1);
    assert_int_equal(get_id(c, 0, "c"), -1);
    assert_int_equal(get_id(c, 0, "a"), 1);
    assert_int_equal(get_id(c, 0, "b"), 2);
    cache_free(c);
    assert_int_equal(n_freed, 3);
}

static void test_dirty_beyond_capacity(void **state) {
    (void)state;
    cache_t *c = cache_new(2, tv_free);
    char k[16];
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        put_id(c, 0, k, i);
        assert_int_equal(cache_mark_dirty(c, 0, K(k)), 0);
    }
    put_id(c, 0, "clean", 9);
    /* Over capacity with dirty entries alone: every clean one goes. */
    assert_int_equal(cache_evict(c), 1);
    assert_int_equal(cache_size(c), 5);
    cache_clear_dirty(c);
    assert_int_equal(cache_evict(c), 3);
    assert_int_equal(get_id(c, 0, "k3"), 3);
    assert_int_equal(get_id(c, 0, "k4"), 4);
    cache_free(c);
    assert_int_equal(n_freed, n_made);
}

static void test_remove(void **state) {
    (void)state;
    cache_t *c = cache_new(10, tv_free);
    put_id(c, 0, "a", 1);
    put_id(c, 0, "a-long-client-identifier-0001", 2);
    assert_int_equal(cache_mark_dirty(c, 0, K("a")), 0);
    assert_int_equal(cache_remove(c, 0, K("a")), 0);
    assert_int_equal(cache_dirty_count(c), 0);
    assert_int_equal(cache_remove(c, 0, K("a-long-client-identifier-0001")), 0);
    assert_int_equal(cache_size(c), 0);
    assert_int_equal(n_freed, 2);
    /* Slots are reused. */
    put_id(c, 0, "b", 3);
    assert_int_equal(get_id(c, 0, "b"), 3);
    cache_free(c);
    assert_int_equal(n_freed, 3);
}

static void test_drop_partition(void **state) {
    (void)state;
    cache_t *c = cache_new(100, tv_free);
    char k[64];
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "client-%d%s", i,
                 i % 3 ? "" : "-with-a-long-identifier");
        put_id(c, 1, k, i);
        put_id(c, 2, k, 100 + i);
        if (i % 2) {
            assert_int_equal(cache_mark_dirty(c, 1, K(k)), 0);
            assert_int_equal(cache_mark_dirty(c, 2, K(k)), 0);
        }
    }
    assert_int_equal(cache_dirty_count(c), 50);
    assert_int_equal(cache_drop_partition(c, 1), 50);
    assert_int_equal(cache_drop_partition(c, 3), 0);
    assert_int_equal(cache_size(c), 50);
    assert_int_equal(cache_dirty_count(c), 25);
    assert_int_equal(n_freed, 50);
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "client-%d%s", i,
                 i % 3 ? "" : "-with-a-long-identifier");
        assert_int_equal(get_id(c, 1, k), -1);
        assert_int_equal(get_id(c, 2, k), 100 + i);
    }
    /* The lists survived the removals: the rest commits and evicts. */
    int n = 0;
    assert_int_equal(cache_each_dirty(c, stop_at_second, &n), 42);
    cache_clear_dirty(c);
    assert_int_equal(cache_evict(c), 0);
    cache_free(c);
    assert_int_equal(n_freed, 100);
}

static void key_of(char *k, size_t n, int i) {
    /* Short ids stay inline, every seventh is long and goes to the heap. */
    if (i % 7)
        snprintf(k, n, "ACME-%07d", i);
    else
        snprintf(k, n, "00000000-0000-4000-8000-%012d", i);
}

/* The weight of a tval: its id, so a test sets what a value weighs. */
static size_t tv_weight(const void *p) { return (size_t)((const tval_t *)p)->id; }

/* With a weigher, evict trims clean entries by bytes as well as by count,
 * least recently used first; a dirty entry's new weight counts from the
 * commit on, and a dirty one is never evicted, however heavy. */
static void test_byte_bound(void **state) {
    (void)state;
    cache_t *c = cache_new(100, tv_free);
    assert_non_null(c);
    cache_set_weigher(c, tv_weight, 1000);
    assert_int_equal(cache_max_bytes(c), 1000);
    assert_int_equal(cache_put(c, 0, K("a"), tv(300)), 0);
    assert_int_equal(cache_put(c, 0, K("b"), tv(300)), 0);
    assert_int_equal(cache_put(c, 0, K("c"), tv(300)), 0);
    assert_int_equal(cache_value_bytes(c), 900);
    assert_int_equal(cache_evict(c), 0); /* within both bounds */
    assert_int_equal(cache_put(c, 0, K("d"), tv(300)), 0);
    assert_int_equal(cache_value_bytes(c), 1200);
    assert_int_equal(cache_evict(c), 1); /* a, the least recently used */
    assert_int_equal(get_id(c, 0, "a"), -1);
    assert_int_equal(cache_value_bytes(c), 900);

    /* b grows during a batch: counted at the commit, not before */
    tval_t *b = cache_get(c, 0, K("b"));
    assert_int_equal(cache_mark_dirty(c, 0, K("b")), 0);
    b->id = 800;
    assert_int_equal(cache_value_bytes(c), 900);
    assert_int_equal(cache_evict(c), 0);
    cache_clear_dirty(c);
    assert_int_equal(cache_value_bytes(c), 1400);
    /* c, then d, go (b is now the most recently used) */
    assert_int_equal(cache_evict(c), 2);
    assert_int_equal(get_id(c, 0, "b"), 800);
    assert_int_equal(cache_value_bytes(c), 800);

    /* a dirty entry over the bound stays */
    assert_int_equal(cache_put(c, 1, K("huge"), tv(5000)), 0);
    assert_int_equal(cache_mark_dirty(c, 1, K("huge")), 0);
    assert_int_equal(cache_evict(c), 1); /* b, the only clean one */
    assert_int_equal(get_id(c, 1, "huge"), 5000);
    /* replacing a value weighs the new one */
    assert_int_equal(cache_put(c, 1, K("huge"), tv(10)), 0);
    assert_int_equal(cache_value_bytes(c), 10);
    assert_int_equal(cache_remove(c, 1, K("huge")), 0);
    assert_int_equal(cache_value_bytes(c), 0);
    cache_free(c);
    assert_int_equal(n_freed, n_made);
}

static void test_growth_100k(void **state) {
    (void)state;
    enum { N = 100000 };
    cache_t *c = cache_new(N / 2, tv_free);
    char k[64];
    for (int i = 0; i < N; i++) {
        key_of(k, sizeof(k), i);
        put_id(c, (uint32_t)(i % 12), k, i);
        if (i % 10 == 0) assert_int_equal(cache_mark_dirty(c, i % 12, K(k)), 0);
    }
    assert_int_equal(cache_size(c), N);
    assert_int_equal(cache_dirty_count(c), N / 10);
    for (int i = 0; i < N; i++) {
        key_of(k, sizeof(k), i);
        assert_int_equal(get_id(c, (uint32_t)(i % 12), k), i);
        assert_int_equal(get_id(c, (uint32_t)(i % 12 + 1), k), -1);
    }
    /* Everything was just used in order 0..N-1: evict takes the oldest
     * clean entries until N/2 remain, and never a dirty one. */
    assert_int_equal(cache_evict(c), N / 2);
    assert_int_equal(cache_size(c), N / 2);
    int n_clean_seen = 0;
    for (int i = 0; i < N; i++) {
        int dirty = i % 10 == 0;
        int evicted = !dirty && ++n_clean_seen <= N / 2;
        key_of(k, sizeof(k), i);
        assert_int_equal(get_id(c, (uint32_t)(i % 12), k), evicted ? -1 : i);
    }
    cache_free(c);
    assert_int_equal(n_freed, N);
}

static void test_memory_per_entry(void **state) {
    (void)state;
    enum { N = 1000000 };
    cache_t *c = cache_new(N, NULL); /* values borrowed: nothing to free */
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "ACME-%07d", i); /* 12 bytes: inline */
        assert_int_equal(
            cache_put(c, (uint32_t)(i % 16), K(k), (void *)(uintptr_t)(i + 1)),
            0);
    }
    assert_int_equal(cache_size(c), N);
    size_t bytes = cache_memory_bytes(c);
    print_message("cache: %d clients with 12-byte ids: %zu bytes, %.1f bytes "
                  "per client\n", N, bytes, (double)bytes / N);
    assert_true(bytes / N <= 64);
    for (int i = 0; i < N; i += 997) {
        snprintf(k, sizeof(k), "ACME-%07d", i);
        assert_true(cache_get(c, (uint32_t)(i % 16), K(k)) ==
                    (void *)(uintptr_t)(i + 1));
    }
    cache_free(c);
}

/* ---- a randomized run against a naive model ---- */

enum { MK = 48, MP = 3, MN = MK * MP };

typedef struct model {
    int val[MN]; /* id or -1 */
    int dirty[MN];
    int clean[MN]; /* clean keys, LRU first */
    int n_clean;
    int dirtyl[MN]; /* dirty keys, in last-use order */
    int n_dirty;
} model_t;

static void ml_remove(int *l, int *n, int x) {
    for (int i = 0; i < *n; i++)
        if (l[i] == x) {
            memmove(l + i, l + i + 1, (size_t)(*n - i - 1) * sizeof(int));
            (*n)--;
            return;
        }
}

static void ml_use(model_t *m, int x) {
    if (m->dirty[x]) {
        ml_remove(m->dirtyl, &m->n_dirty, x);
        m->dirtyl[m->n_dirty++] = x;
    } else {
        ml_remove(m->clean, &m->n_clean, x);
        m->clean[m->n_clean++] = x;
    }
}

static void ml_forget(model_t *m, int x) {
    if (m->dirty[x]) ml_remove(m->dirtyl, &m->n_dirty, x);
    else ml_remove(m->clean, &m->n_clean, x);
    m->val[x] = -1;
    m->dirty[x] = 0;
}

static void mkey(int x, char *k, size_t n, uint32_t *part) {
    *part = (uint32_t)(x / MK);
    /* Lengths around the inline limit. */
    snprintf(k, n, "%0*d", 10 + x % 12, x % MK);
}

typedef struct dirty_walk {
    const model_t *m;
    int i;
} dirty_walk_t;

static int check_dirty_order(void *arg, uint32_t part, const char *client,
                             size_t len, void *val) {
    dirty_walk_t *w = arg;
    assert_true(w->i < w->m->n_dirty);
    int x = w->m->dirtyl[w->i++];
    char k[32];
    uint32_t want_part;
    mkey(x, k, sizeof(k), &want_part);
    assert_int_equal(part, want_part);
    assert_int_equal(len, strlen(k));
    assert_memory_equal(client, k, len);
    assert_int_equal(((tval_t *)val)->id, w->m->val[x]);
    return 0;
}

static void test_against_model(void **state) {
    (void)state;
    const size_t cap = 20;
    cache_t *c = cache_new(cap, tv_free);
    model_t m;
    memset(&m, 0, sizeof(m));
    for (int i = 0; i < MN; i++) m.val[i] = -1;
    srand(12345);
    int next_id = 0;
    char k[32];
    uint32_t part;
    for (int step = 0; step < 200000; step++) {
        int x = rand() % MN;
        mkey(x, k, sizeof(k), &part);
        int op = rand() % 100;
        if (op < 35) {
            int id = get_id(c, part, k);
            assert_int_equal(id, m.val[x]);
            if (id >= 0) ml_use(&m, x);
        } else if (op < 60) {
            int id = next_id++;
            put_id(c, part, k, id);
            if (m.val[x] < 0) m.clean[m.n_clean++] = x;
            else ml_use(&m, x);
            m.val[x] = id;
        } else if (op < 75) {
            int rc = cache_mark_dirty(c, part, K(k));
            assert_int_equal(rc, m.val[x] >= 0 ? 0 : CHURN_ENOTFOUND);
            if (m.val[x] >= 0 && !m.dirty[x]) {
                ml_remove(m.clean, &m.n_clean, x);
                m.dirty[x] = 1;
                m.dirtyl[m.n_dirty++] = x;
            }
        } else if (op < 82) {
            int rc = cache_remove(c, part, K(k));
            assert_int_equal(rc, m.val[x] >= 0 ? 0 : CHURN_ENOTFOUND);
            if (m.val[x] >= 0) ml_forget(&m, x);
        } else if (op < 92) {
            cache_clear_dirty(c);
            for (int i = 0; i < m.n_dirty; i++) {
                m.dirty[m.dirtyl[i]] = 0;
                m.clean[m.n_clean++] = m.dirtyl[i];
            }
            m.n_dirty = 0;
        } else if (op < 99) {
            size_t size = (size_t)(m.n_clean + m.n_dirty);
            size_t want = 0;
            while (size > cap && m.n_clean > 0) {
                ml_forget(&m, m.clean[0]);
                size--;
                want++;
            }
            assert_int_equal(cache_evict(c), want);
        } else {
            size_t want = 0;
            for (int y = 0; y < MN; y++)
                if ((uint32_t)(y / MK) == part && m.val[y] >= 0) {
                    ml_forget(&m, y);
                    want++;
                }
            assert_int_equal(cache_drop_partition(c, part), want);
        }
        assert_int_equal(cache_size(c), (size_t)(m.n_clean + m.n_dirty));
        assert_int_equal(cache_dirty_count(c), (size_t)m.n_dirty);
    }
    /* Full agreement at the end, dirty order included. */
    dirty_walk_t w = {&m, 0};
    assert_int_equal(cache_each_dirty(c, check_dirty_order, &w), 0);
    assert_int_equal(w.i, m.n_dirty);
    for (int x = 0; x < MN; x++) {
        mkey(x, k, sizeof(k), &part);
        tval_t *v = cache_get(c, part, K(k));
        assert_int_equal(v ? v->id : -1, m.val[x]);
    }
    cache_free(c);
    assert_int_equal(n_freed, n_made);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_get_put_replace, setup),
        cmocka_unit_test_setup(test_partitions_are_distinct, setup),
        cmocka_unit_test_setup(test_lru_order, setup),
        cmocka_unit_test_setup(test_prefetch_is_only_a_hint, setup),
        cmocka_unit_test_setup(test_dirty_never_evicted, setup),
        cmocka_unit_test_setup(test_cleared_dirty_become_most_recent, setup),
        cmocka_unit_test_setup(test_dirty_beyond_capacity, setup),
        cmocka_unit_test_setup(test_remove, setup),
        cmocka_unit_test_setup(test_drop_partition, setup),
        cmocka_unit_test_setup(test_byte_bound, setup),
        cmocka_unit_test_setup(test_growth_100k, setup),
        cmocka_unit_test_setup(test_memory_per_entry, setup),
        cmocka_unit_test_setup(test_against_model, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
