/*
 * processor.c - see processor.h. Client states live in the hot cache over
 * RocksDB; the cache never evicts a state changed since the last commit,
 * so what it holds is always "the store plus the batch in hand". The timer
 * index holds one entry per client at its earliest deadline; entries are
 * moved in the same WriteBatch as the state that moved them.
 */
#include "churnd/processor.h"
#include "churnd/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Client -> time, open addressing; keys are copied. */
typedef struct vpos_slot {
    char *client; /* NULL: empty */
    size_t len;
    uint64_t hash;
    int64_t pos_ms;
} vpos_slot_t;

typedef struct vpos_map {
    vpos_slot_t *v;
    size_t n, cap; /* cap: 0 or a power of two */
} vpos_map_t;

static vpos_slot_t *vpos_find(vpos_map_t *m, const char *c, size_t len,
                              uint64_t h) {
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        vpos_slot_t *s = &m->v[i];
        if (!s->client ||
            (s->hash == h && s->len == len && memcmp(s->client, c, len) == 0))
            return s;
    }
}

static int64_t vpos_get(vpos_map_t *m, const char *c, size_t len) {
    if (!m->n) return INT64_MIN;
    vpos_slot_t *s = vpos_find(m, c, len, churn_hash64(c, len, 0));
    return s->client ? s->pos_ms : INT64_MIN;
}

static int vpos_set(vpos_map_t *m, const char *c, size_t len, int64_t pos) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        vpos_slot_t *v = calloc(cap, sizeof(*v));
        if (!v) return CHURN_ENOMEM;
        vpos_map_t nm = {v, m->n, cap};
        for (size_t i = 0; i < m->cap; i++)
            if (m->v[i].client)
                *vpos_find(&nm, m->v[i].client, m->v[i].len, m->v[i].hash) = m->v[i];
        free(m->v);
        *m = nm;
    }
    uint64_t h = churn_hash64(c, len, 0);
    vpos_slot_t *s = vpos_find(m, c, len, h);
    if (!s->client) {
        char *k = malloc(len + 1);
        if (!k) return CHURN_ENOMEM;
        memcpy(k, c, len);
        *s = (vpos_slot_t){k, len, h, pos};
        m->n++;
    }
    s->pos_ms = pos;
    return 0;
}

static void vpos_clear(vpos_map_t *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->v[i].client);
    free(m->v);
    *m = (vpos_map_t){0};
}

typedef struct part_held {
    int64_t from; /* no held event in the store before this (INT64_MIN: unknown) */
} part_held_t;

/* A held event: read back from the store, or held in the batch at hand
 * (processor_t.pend). Its tag and its value share one allocation, tag
 * first, after the event's parse when the batch holds it (held_push). */
typedef struct held_copy {
    int64_t ts_ms;
    event_t *ev;  /* pend only: the parse at hold time; starts the block */
    uint8_t *tag; /* starts the block when ev is NULL */
    size_t tag_len;
    uint8_t *val;
    size_t val_len;
    uint32_t part;
    int taken; /* pend only: released before its commit */
} held_copy_t;

typedef struct held_list {
    held_copy_t *v;
    size_t n, cap;
    int sorted; /* pend only: in (part, time, tag) order */
} held_list_t;

static void held_copy_free(held_copy_t *c) {
    event_clear(c->ev);
    free(c->ev ? (void *)c->ev : (void *)c->tag);
}

static void held_clear(held_list_t *l) {
    for (size_t i = 0; i < l->n; i++) held_copy_free(&l->v[i]);
    l->n = 0;
}

typedef struct part_counts {
    int loaded; /* counting this partition (its record was read) */
    int dirty;  /* changed since the last commit */
    store_counts_t c;
} part_counts_t;

/* ---- the in-memory timer index of write-back mode ---- */

/* One cached client's earliest deadline. The state is the cache's; the
 * entry is removed before the cache lets the state go (evict_one, drop). */
typedef struct wake_entry {
    int64_t due_ms;
    cstate_t *st;
    uint32_t part;
} wake_entry_t;

/* A binary min-heap on due_ms; each state knows its index + 1
 * (cstate_wake_slot), so moving or removing a client's entry is
 * O(log n) without a search. Only the due time orders it: a round sorts
 * what it takes out by (due, client) as the store's keys would be. */
typedef struct wake_heap {
    wake_entry_t *v;
    size_t n, cap;
} wake_heap_t;

static void wake_place(wake_heap_t *h, size_t i, wake_entry_t e) {
    h->v[i] = e;
    cstate_set_wake_slot(e.st, i + 1);
}

static void wake_sift_up(wake_heap_t *h, size_t i) {
    wake_entry_t e = h->v[i];
    while (i > 0 && e.due_ms < h->v[(i - 1) / 2].due_ms) {
        wake_place(h, i, h->v[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    wake_place(h, i, e);
}

static void wake_sift_down(wake_heap_t *h, size_t i) {
    wake_entry_t e = h->v[i];
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= h->n) break;
        if (l + 1 < h->n && h->v[l + 1].due_ms < h->v[l].due_ms) m = l + 1;
        if (h->v[m].due_ms >= e.due_ms) break;
        wake_place(h, i, h->v[m]);
        i = m;
    }
    wake_place(h, i, e);
}

static void wake_remove(wake_heap_t *h, cstate_t *st) {
    size_t slot = cstate_wake_slot(st);
    if (!slot) return;
    cstate_set_wake_slot(st, 0);
    size_t i = slot - 1;
    if (i == --h->n) return;
    wake_entry_t last = h->v[h->n];
    int64_t was = h->v[i].due_ms;
    wake_place(h, i, last);
    if (last.due_ms < was) wake_sift_up(h, i);
    else wake_sift_down(h, i);
}

/* Index st at due_ms (INT64_MAX: nowhere). */
static int wake_set(wake_heap_t *h, uint32_t part, cstate_t *st,
                    int64_t due_ms) {
    size_t slot = cstate_wake_slot(st);
    if (due_ms == INT64_MAX) {
        wake_remove(h, st);
        return 0;
    }
    if (slot) {
        size_t i = slot - 1;
        int64_t was = h->v[i].due_ms;
        h->v[i].due_ms = due_ms;
        if (due_ms < was) wake_sift_up(h, i);
        else wake_sift_down(h, i);
        return 0;
    }
    wake_entry_t *v = churn_grow(h->v, h->n, &h->cap, sizeof(*v), 1024);
    if (!v) return CHURN_ENOMEM;
    h->v = v;
    h->n++;
    wake_place(h, h->n - 1, (wake_entry_t){due_ms, st, part});
    wake_sift_up(h, h->n - 1);
    return 0;
}

/* Forget the entries of partition part (its states are being dropped). */
static void wake_drop_part(wake_heap_t *h, uint32_t part) {
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i].part == part) cstate_set_wake_slot(h->v[i].st, 0);
        else h->v[k++] = h->v[i];
    }
    h->n = k;
    for (size_t i = 0; i < h->n; i++) cstate_set_wake_slot(h->v[i].st, i + 1);
    for (size_t i = h->n / 2; i-- > 0;) wake_sift_down(h, i);
}

typedef struct scan_key {
    char *client;    /* owned; NULL: from the start of scan_from's time */
    size_t len;
    int64_t min_put; /* the earliest entry put during the current round */
} scan_key_t;

struct processor {
    store_t *store;          /* borrowed */
    cache_t *cache;
    store_batch_t *wb;
    const ruleset_t *rules;  /* borrowed */
    uint64_t rules_hash;     /* its ruleset_hash64 */
    engine_opts_t opts;
    buf_t enc;
    buf_t tag;
    /* Per partition number: every timer due at or before this time has
     * fired (the last processor_fire_timers round that left nothing due);
     * INT64_MIN: none. What engine_on_event_settled needs for
     * opts.lookahead_ticks. Replay keeps it in memory (a fresh run); the
     * daemon (live) writes it with the next commit when fired_dirty. */
    int64_t *settled;
    unsigned char *fired_dirty;
    /* Per partition number: no timer-index entry lies before this time
     * (INT64_MIN: unknown), so scans start there rather than stepping over
     * the deleted entries of every earlier round. Lowered by any entry put
     * before it; raised past a round that left nothing due. */
    int64_t *scan_from;
    /* Per partition number: within scan_from's time, the client key the
     * next scan starts at (NULL: the time's start). A daily tick puts every
     * client of a partition at one time, fired a limited round at a time;
     * without it each round would step over the deleted entries of all the
     * earlier rounds of that time. */
    scan_key_t *scan_key;
    /* Per partition number, the same for the held events ('B' keys, a
     * queue too: put on hold, deleted on release): none lies before
     * held[part].from (INT64_MIN: unknown). A release raises it past what
     * it took; writing a held event at a commit lowers it. */
    part_held_t *held;
    /* The events held since the last commit. A release takes them along
     * with the store's, in order; the commit writes only those still
     * held, so an event released in the batch that consumed it never
     * reaches the store (no put, no delete, no scan). */
    held_list_t pend;
    /* Per partition number: timer-index entries (clients with a pending
     * deadline), counted by processor_count_partition and kept by reindex. */
    int64_t *n_timers;
    /* Per partition number: its client states and their waiting
     * expectations, once processor_count_partition has loaded them (from
     * the store's 'S' record, or by one scan when it has none); kept as
     * states change and written with every commit that changed them. */
    part_counts_t *counts;
    size_t n_settled;
    /* During one timer round sequence with lookahead: how far each client
     * woken (really or virtually) in it has got, in its own time. */
    vpos_map_t vpos;
    uint64_t n_hits, n_misses, n_new; /* processor_get_stats */
    processor_progress_fn progress; /* processor_set_progress */
    void *progress_arg;
    /* Write-back mode (processor_set_write_back): the timer entries of the
     * cached clients, which the store does not have. */
    int write_back;
    wake_heap_t wakes;
    int live; /* processor_set_live */
};

static void free_state(void *p) { cstate_free(p); }

/* Expectations of a state as the counts see them. */
typedef struct exp_count {
    uint64_t open, overdue;
} exp_count_t;

static exp_count_t exp_of(const cstate_t *st) {
    exp_count_t c;
    cstate_count_expectations(st, &c.open, &c.overdue);
    return c;
}

static int counting(const processor_t *p, uint32_t part) {
    return part < p->n_settled && p->counts[part].loaded;
}

/* The expectations before a change, when part is counted (the per-event
 * path walks the state's features only then). */
static exp_count_t exp_before(const processor_t *p, uint32_t part,
                              const cstate_t *st) {
    return counting(p, part) ? exp_of(st) : (exp_count_t){0, 0};
}

static size_t state_weight(const void *val) {
    return cstate_heap_bytes(val) + PROCESSOR_CACHE_ENTRY_BYTES;
}

void processor_set_cache_memory(processor_t *p, size_t max_bytes) {
    cache_set_weigher(p->cache, state_weight, max_bytes);
}

processor_t *processor_new(store_t *store, size_t cache_clients,
                           const engine_opts_t *opts) {
    processor_t *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->store = store;
    p->opts = *opts;
    p->cache = cache_new(cache_clients, free_state);
    p->wb = store_batch_new();
    buf_init(&p->enc);
    buf_init(&p->tag);
    if (!p->cache || !p->wb) {
        processor_free(p);
        return NULL;
    }
    return p;
}

void processor_free(processor_t *p) {
    if (!p) return;
    if (p->cache) cache_free(p->cache);
    if (p->wb) store_batch_free(p->wb);
    buf_free(&p->enc);
    buf_free(&p->tag);
    free(p->settled);
    free(p->fired_dirty);
    free(p->scan_from);
    for (size_t i = 0; i < p->n_settled; i++) free(p->scan_key[i].client);
    free(p->scan_key);
    free(p->held);
    held_clear(&p->pend);
    free(p->pend.v);
    free(p->n_timers);
    free(p->counts);
    vpos_clear(&p->vpos);
    free(p->wakes.v);
    free(p);
}

static int64_t settled_of(const processor_t *p, uint32_t part) {
    return part < p->n_settled ? p->settled[part] : INT64_MIN;
}

/* Note that every timer of part due by upto_ms has fired. A failed
 * allocation only loses the note: it is needed for lookahead alone. */
static int64_t scan_from_of(const processor_t *p, uint32_t part) {
    return part < p->n_settled ? p->scan_from[part] : INT64_MIN;
}

static void scan_key_clear(scan_key_t *k) {
    free(k->client);
    k->client = NULL;
    k->len = 0;
}

/* Client bytes in the store's key order (RocksDB's bytewise). */
static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : an < bn ? -1 : an > bn;
}

/* A timer entry (due, client) is put: the next scan must not start past
 * it. */
static void lower_scan(processor_t *p, uint32_t part, int64_t due,
                       const char *client, size_t len) {
    if (part >= p->n_settled) return;
    scan_key_t *k = &p->scan_key[part];
    if (due < k->min_put) k->min_put = due;
    if (due < p->scan_from[part]) {
        p->scan_from[part] = due;
        scan_key_clear(k);
    } else if (due == p->scan_from[part] && k->client &&
               bytes_cmp(client, len, k->client, k->len) < 0) {
        scan_key_clear(k);
    }
}

static int grow_parts(processor_t *p, uint32_t part) {
    if (part < p->n_settled) return 0;
    size_t n = (size_t)part + 1;
    int64_t *v = realloc(p->settled, n * sizeof(*v));
    if (!v) return CHURN_ENOMEM;
    p->settled = v;
    unsigned char *fd = realloc(p->fired_dirty, n * sizeof(*fd));
    if (!fd) return CHURN_ENOMEM;
    p->fired_dirty = fd;
    int64_t *f = realloc(p->scan_from, n * sizeof(*f));
    if (!f) return CHURN_ENOMEM;
    p->scan_from = f;
    scan_key_t *sk = realloc(p->scan_key, n * sizeof(*sk));
    if (!sk) return CHURN_ENOMEM;
    p->scan_key = sk;
    int64_t *t = realloc(p->n_timers, n * sizeof(*t));
    if (!t) return CHURN_ENOMEM;
    p->n_timers = t;
    part_counts_t *c = realloc(p->counts, n * sizeof(*c));
    if (!c) return CHURN_ENOMEM;
    p->counts = c;
    part_held_t *h = realloc(p->held, n * sizeof(*h));
    if (!h) return CHURN_ENOMEM;
    p->held = h;
    for (size_t i = p->n_settled; i < n; i++) {
        v[i] = f[i] = INT64_MIN;
        fd[i] = 0;
        t[i] = 0;
        memset(&c[i], 0, sizeof(c[i]));
        h[i] = (part_held_t){INT64_MIN};
        sk[i] = (scan_key_t){NULL, 0, INT64_MAX};
    }
    p->n_settled = n;
    return 0;
}

/* Does an `every` tick (a multiple of a rule's period since the epoch)
 * lie in (from_ms, to_ms]? Only then can the fired record's value change
 * what a later event finds done. */
static int passes_tick(const ruleset_t *rs, int64_t from_ms, int64_t to_ms) {
    if (!rs || from_ms == INT64_MIN) return 1;
    for (size_t i = 0; i < rs->n_rules; i++) {
        int64_t e = rs->rules[i].every_ms;
        if (e <= 0) continue;
        /* Floor division: the ticks at or before a time. */
        int64_t a = from_ms / e - (from_ms % e < 0);
        int64_t b = to_ms / e - (to_ms % e < 0);
        if (b != a) return 1;
    }
    return 0;
}

static int note_settled(processor_t *p, uint32_t part, int64_t upto_ms) {
    if (grow_parts(p, part)) return CHURN_ENOMEM;
    if (p->opts.lookahead_ticks && upto_ms > p->settled[part]) {
        /* With the watermark following the wall clock this runs at every
         * round; writing the record each time made the daemon commit in a
         * loop. Between two ticks it changes nothing an event could see. */
        if (passes_tick(p->rules, p->settled[part], upto_ms))
            p->fired_dirty[part] = 1;
        p->settled[part] = upto_ms;
    }
    /* Every entry at or before upto_ms is gone (deleted in the batch at
     * hand, which the next scan follows): the next one starts after. */
    if (upto_ms != INT64_MAX && upto_ms + 1 > p->scan_from[part]) {
        p->scan_from[part] = upto_ms + 1;
        scan_key_clear(&p->scan_key[part]);
    }
    return 0;
}

void processor_set_rules(processor_t *p, const ruleset_t *rs) {
    /* The fired records of the partitions at hand name the rule set: the
     * next commit writes the new one's (a crash before it only costs a
     * needless re-index at the next start). The old set may be freed
     * already: its hash was kept. */
    uint64_t h = rs ? ruleset_hash64(rs) : 0;
    if (p->live && p->rules && rs && h != p->rules_hash)
        for (size_t i = 0; i < p->n_settled; i++)
            if (counting(p, (uint32_t)i)) p->fired_dirty[i] = 1;
    p->rules = rs;
    p->rules_hash = h;
}

void processor_set_live(processor_t *p) { p->live = 1; }

void processor_set_progress(processor_t *p, processor_progress_fn fn, void *arg) {
    p->progress = fn;
    p->progress_arg = arg;
}

/* The client's state: hot cache, else RocksDB, else a new one. resume:
 * a state read from the store takes back what the look-ahead knew
 * (engine_resume_quiet, which binds it); 0 for a caller that settles the
 * state itself (processor_settle_partition), which would only pay for the
 * bind. */
static int client_state(processor_t *p, uint32_t part, const char *client,
                        size_t len, int resume, cstate_t **out, churn_err_t *err) {
    cstate_t *st = cache_get(p->cache, part, client, len);
    if (st) {
        p->n_hits++;
        *out = st;
        return 0;
    }
    p->n_misses++;
    int rc = store_get_client(p->store, part, client, len, &p->enc, err);
    if (rc == 0) {
        churn_err_t derr = {0};
        rc = cstate_decode(p->enc.data, p->enc.len, client, len, &st, &derr);
        if (rc != 0)
            /* Refusing to guess: a record we cannot read stops the daemon
             * rather than being silently replaced by an empty state. */
            return churn_err_set(err, CHURN_ECORRUPT,
                                 "client %.*s: stored state cannot be decoded: %s",
                                 (int)len, client, derr.msg);
        /* Look-ahead runs (the daemon, a fresh replay) keep every entry
         * where the look-ahead under p->rules put it or at the natural
         * deadline (processor_settle_partition on a rule change). */
        if (resume && p->rules) engine_resume_quiet(p->rules, &p->opts, st);
    } else if (rc == CHURN_ENOTFOUND) {
        p->n_new++;
        st = cstate_new(client, len);
        /* Every state made here is written at the next commit: the runtime
         * only asks for the clients of events and timers it applies. */
        if (counting(p, part)) {
            p->counts[part].c.clients++;
            p->counts[part].dirty = 1;
        }
    } else {
        return rc;
    }
    if (!st) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    if (p->write_back && cstate_indexed_wake(st) != INT64_MAX &&
        wake_set(&p->wakes, part, st, cstate_indexed_wake(st)) != 0) {
        cstate_free(st);
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    if (cache_put(p->cache, part, client, len, st) != 0) {
        wake_remove(&p->wakes, st);
        cstate_free(st);
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    /* Write-back: while cached, the client's entry is the heap's; the
     * store's goes with the next commit and comes back at eviction. */
    if (p->write_back && cstate_indexed_wake(st) != INT64_MAX)
        store_batch_del_timer(p->wb, part, cstate_indexed_wake(st), client, len);
    *out = st;
    return 0;
}

/* Account for the change of one state's expectations. */
static void note_expectations(processor_t *p, uint32_t part, exp_count_t before,
                              const cstate_t *st) {
    if (!counting(p, part)) return;
    exp_count_t after = exp_of(st);
    if (after.open == before.open && after.overdue == before.overdue) return;
    store_counts_t *c = &p->counts[part].c;
    c->open_expectations += after.open - before.open; /* modular: exact */
    c->overdue_expectations += after.overdue - before.overdue;
    p->counts[part].dirty = 1;
}

/* Keep the timer-index entry of this client at its earliest deadline. */
static int reindex(processor_t *p, uint32_t part, cstate_t *st,
                   const char *client, size_t len) {
    int64_t next = cstate_next_wake(st, p->rules);
    int64_t old = cstate_indexed_wake(st);
    if (next == old) return 0;
    /* The count is only a figure: a failed allocation leaves it behind. */
    if ((old == INT64_MAX) != (next == INT64_MAX) && grow_parts(p, part) == 0)
        p->n_timers[part] += old == INT64_MAX ? 1 : -1;
    if (p->write_back) {
        if (wake_set(&p->wakes, part, st, next) != 0) return CHURN_ENOMEM;
        cstate_set_indexed_wake(st, next);
        return 0;
    }
    if (old != INT64_MAX) store_batch_del_timer(p->wb, part, old, client, len);
    if (next != INT64_MAX) {
        store_batch_put_timer(p->wb, part, next, client, len);
        lower_scan(p, part, next, client, len);
    }
    cstate_set_indexed_wake(st, next);
    return 0;
}

void processor_prefetch(processor_t *p, uint32_t part, const char *const *client,
                        const size_t *len, size_t n) {
    void *vals[CACHE_PREFETCH_MAX];
    if (n > CACHE_PREFETCH_MAX) n = CACHE_PREFETCH_MAX;
    cache_prefetch(p->cache, part, client, len, n, vals);
    for (size_t i = 0; i < n; i++)
        if (vals[i]) cstate_prefetch(vals[i]);
}

int processor_event(processor_t *p, uint32_t part, const event_t *ev,
                    engine_out_t *out, churn_err_t *err) {
    if (!engine_keeps_type(p->rules, &p->opts, ev->type)) return ENGINE_IGNORED;
    cstate_t *st = NULL;
    int rc = client_state(p, part, ev->client_id, ev->client_len, 1, &st, err);
    if (rc) return rc;
    exp_count_t before = exp_before(p, part, st);
    rc = engine_on_event_settled(p->rules, &p->opts, st, ev,
                                 settled_of(p, part), out);
    if (rc < 0) return churn_err_set(err, rc, "out of memory in the engine");
    if (rc == ENGINE_APPLIED) {
        note_expectations(p, part, before, st);
        if (cache_mark_dirty(p->cache, part, ev->client_id, ev->client_len))
            return churn_err_set(err, CHURN_EINVAL,
                                 "client state vanished from the cache");
        /* With lookahead the engine looks ahead, and the client is
         * indexed, once per batch at commit (engine_look_ahead): the index
         * is only read between commits. */
        if (!p->opts.lookahead_ticks &&
            reindex(p, part, st, ev->client_id, ev->client_len) != 0)
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    return rc;
}

/* ---- the reorder buffer ---- */

#define HELD_FORMAT 1

/* Value: u8 format | bytes topic | svarint partition | svarint offset |
 * bytes key | svarint ts | payload (the rest). */
static int held_encode(buf_t *b, const held_event_t *h) {
    buf_reset(b);
    int rc = buf_putc(b, HELD_FORMAT);
    if (!rc) rc = buf_put_bytes(b, h->topic, strlen(h->topic));
    if (!rc) rc = buf_put_svarint(b, h->partition);
    if (!rc) rc = buf_put_svarint(b, h->offset);
    if (!rc) rc = buf_put_bytes(b, h->key, h->key ? h->key_len : 0);
    if (!rc) rc = buf_put_svarint(b, h->ts_ms);
    if (!rc) rc = buf_append(b, h->payload, h->len);
    return rc;
}

/* Tag: the order of events of equal time, then uniqueness. Order by a
 * hash of client and event id (of the payload when there is no id), not by
 * arrival, so that two arrival orders of the same events give one
 * processing order; the origin after it keeps redeliveries apart (the
 * engine's deduplication drops them on release). */
uint64_t processor_event_order(const event_t *ev, const void *payload,
                               size_t len) {
    uint64_t k = churn_hash64(ev->client_id, ev->client_len, 0);
    return ev->id ? churn_hash64(ev->id, ev->id_len, k)
                  : churn_hash64(payload, len, k ^ 1);
}

static int held_tag(buf_t *b, const held_event_t *h, const event_t *ev) {
    buf_reset(b);
    int rc = buf_put_u64be(b, processor_event_order(ev, h->payload, h->len));
    if (!rc) rc = buf_put_u64be(b, (uint64_t)h->offset);
    if (!rc) rc = buf_put_u32be(b, (uint32_t)h->partition);
    if (!rc) rc = buf_append(b, h->topic, strlen(h->topic));
    return rc;
}

/* Copy a held event into l; ev (the batch's own holds) moves into the
 * same block, so that a release in this batch need not parse it again. */
static int held_push(held_list_t *l, uint32_t part, int64_t ts_ms,
                     const void *tag, size_t tag_len, const void *val,
                     size_t val_len, event_t *ev) {
    held_copy_t *v = churn_grow(l->v, l->n, &l->cap, sizeof(*v), 64);
    if (!v) return CHURN_ENOMEM;
    l->v = v;
    size_t head = ev ? sizeof(event_t) : 0;
    uint8_t *mem = malloc(head + tag_len + val_len + 1);
    if (!mem) return CHURN_ENOMEM;
    event_t *own = NULL;
    if (ev) {
        own = (event_t *)(void *)mem;
        event_move(own, ev);
    }
    memcpy(mem + head, tag, tag_len);
    memcpy(mem + head + tag_len, val, val_len);
    l->v[l->n++] = (held_copy_t){ts_ms,   own,  mem + head, tag_len,
                                 mem + head + tag_len, val_len, part, 0};
    l->sorted = 0;
    return 0;
}

/* The store's order of held events within a partition: time, then tag. */
static int held_cmp(const held_copy_t *a, const held_copy_t *b) {
    if (a->ts_ms != b->ts_ms) return a->ts_ms < b->ts_ms ? -1 : 1;
    return bytes_cmp((const char *)a->tag, a->tag_len, (const char *)b->tag,
                     b->tag_len);
}

static int pend_cmp(const void *a, const void *b) {
    const held_copy_t *x = a, *y = b;
    if (x->part != y->part) return x->part < y->part ? -1 : 1;
    return held_cmp(x, y);
}

int processor_hold(processor_t *p, uint32_t part, const held_event_t *h,
                   event_t *ev, churn_err_t *err) {
    if (!engine_keeps_type(p->rules, &p->opts, ev->type)) return ENGINE_IGNORED;
    if (held_tag(&p->tag, h, ev) || held_encode(&p->enc, h) ||
        grow_parts(p, part) ||
        held_push(&p->pend, part, ev->ts_ms, p->tag.data, p->tag.len,
                  p->enc.data, p->enc.len, ev))
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    return 0;
}

static int64_t held_from_of(const processor_t *p, uint32_t part) {
    return part < p->n_settled ? p->held[part].from : INT64_MIN;
}

static int collect_held(void *arg, uint32_t part, int64_t ts_ms,
                        const void *tag, size_t tag_len, const void *val,
                        size_t val_len) {
    return held_push(arg, part, ts_ms, tag, tag_len, val, val_len, NULL);
}

/* Decode a held value; the topic is copied to topic (NUL-terminated). */
static int held_decode(const held_copy_t *c, held_event_t *h, buf_t *topic) {
    reader_t r;
    reader_init(&r, c->val, c->val_len);
    uint8_t fmt = 0;
    const uint8_t *t = NULL, *k = NULL;
    size_t tn = 0, kn = 0;
    int64_t part = 0, off = 0, ts = 0;
    int rc = reader_u8(&r, &fmt);
    if (!rc && fmt != HELD_FORMAT) rc = CHURN_ECORRUPT;
    if (!rc) rc = reader_bytes(&r, &t, &tn);
    if (!rc) rc = reader_svarint(&r, &part);
    if (!rc) rc = reader_svarint(&r, &off);
    if (!rc) rc = reader_bytes(&r, &k, &kn);
    if (!rc) rc = reader_svarint(&r, &ts);
    if (rc) return CHURN_ECORRUPT;
    buf_reset(topic);
    if (buf_append(topic, t, tn) || buf_putc(topic, '\0')) return CHURN_ENOMEM;
    const uint8_t *rest = NULL;
    size_t rest_n = reader_left(&r);
    if (reader_raw(&r, rest_n, &rest)) return CHURN_ECORRUPT;
    *h = (held_event_t){(const char *)topic->data, (int32_t)part, off,
                        kn ? k : NULL, kn, rest, rest_n, ts};
    return 0;
}

/* The batch's own held events of part, in order: [*lo, *hi) of pend,
 * sorted first if a hold came since the last sort. */
static void pend_range(processor_t *p, uint32_t part, size_t *lo, size_t *hi) {
    held_list_t *l = &p->pend;
    if (!l->sorted && l->n > 1) qsort(l->v, l->n, sizeof(*l->v), pend_cmp);
    l->sorted = 1;
    size_t a = 0, b = l->n;
    while (a < b) { /* the first entry of part */
        size_t m = a + (b - a) / 2;
        if (l->v[m].part < part) a = m + 1;
        else b = m;
    }
    *lo = a;
    while (a < l->n && l->v[a].part == part) a++;
    *hi = a;
}

int processor_release(processor_t *p, uint32_t part, int64_t upto_ms,
                      size_t limit, processor_held_fn fn, void *arg,
                      size_t *n_released, churn_err_t *err) {
    held_list_t l = {0};
    *n_released = 0;
    int rc = store_scan_held_from(p->store, part, held_from_of(p, part), upto_ms,
                                  limit, collect_held, &l, err);
    if (rc == CHURN_ENOMEM) churn_err_set(err, rc, "out of memory");
    size_t j = 0, j_end = 0;
    pend_range(p, part, &j, &j_end);
    /* Merge the store's events and the batch's, in key order. When the
     * store gave limit events, the limit stops the merge before any of
     * the batch's could pass one the store did not give. */
    size_t i = 0;
    int64_t last_ts = INT64_MIN;
    buf_t topic;
    buf_init(&topic);
    while (rc >= 0 && (!limit || *n_released < limit)) {
        while (j < j_end && p->pend.v[j].taken) j++;
        int mine = j < j_end && p->pend.v[j].ts_ms <= upto_ms;
        if (i == l.n && !mine) break;
        held_copy_t *c;
        if (!mine || (i < l.n && held_cmp(&l.v[i], &p->pend.v[j]) <= 0)) {
            c = &l.v[i++];
            /* The same message held again (a redelivery) is one event. */
            if (mine && held_cmp(c, &p->pend.v[j]) == 0) p->pend.v[j].taken = 1;
            store_batch_del_held(p->wb, part, c->ts_ms, c->tag, c->tag_len);
        } else {
            c = &p->pend.v[j];
            c->taken = 1;
        }
        held_event_t h;
        rc = held_decode(c, &h, &topic);
        if (rc == CHURN_ENOMEM) {
            churn_err_set(err, rc, "out of memory");
            break;
        }
        if (rc) {
            churn_err_set(err, rc, "a held event of partition %u cannot be "
                          "decoded", part);
            break;
        }
        last_ts = c->ts_ms;
        rc = fn(arg, part, &h, c->ev);
        event_clear(c->ev); /* whether fn took it or not */
        if (rc < 0) break;
        rc = 0;
        (*n_released)++;
    }
    buf_free(&topic);
    int more = limit && *n_released >= limit;
    /* Everything taken from the store is deleted in the batch at hand,
     * which the next scan follows: it can start past it (at the last time
     * taken when the limit stopped this one, as more events of that time
     * may wait). */
    if (rc >= 0 && part < p->n_settled) {
        part_held_t *ph = &p->held[part];
        int64_t past = more ? last_ts
                            : upto_ms == INT64_MAX ? INT64_MIN : upto_ms + 1;
        if (past > ph->from) ph->from = past;
    }
    held_clear(&l);
    free(l.v);
    if (rc < 0) return rc;
    return more;
}

static int note_any(void *arg, uint32_t part, int64_t ts_ms, const void *tag,
                    size_t tag_len, const void *val, size_t val_len) {
    (void)part, (void)ts_ms, (void)tag, (void)tag_len, (void)val, (void)val_len;
    *(int *)arg = 1;
    return 1;
}

int processor_has_held(processor_t *p, uint32_t part, int *held,
                       churn_err_t *err) {
    *held = 0;
    for (size_t i = 0; i < p->pend.n; i++)
        if (p->pend.v[i].part == part && !p->pend.v[i].taken) {
            *held = 1;
            return 0;
        }
    int rc = store_scan_held_from(p->store, part, held_from_of(p, part), INT64_MAX,
                                  1, note_any, held, err);
    return rc < 0 ? rc : 0;
}

/* ---- timers ---- */

typedef struct due {
    int64_t due_ms;
    const char *client; /* own, or a cached state's id (write-back) */
    size_t len;
    int64_t v_ms; /* with lookahead: when the client would be woken */
    char *own;    /* the copy to free; NULL when borrowed */
} due_t;

/* The index's order: due time, then client bytes (RocksDB's bytewise
 * order); by v_ms, the time the client would be woken without lookahead. */
static int due_cmp(const void *a, const void *b) {
    const due_t *x = a, *y = b;
    if (x->v_ms != y->v_ms) return x->v_ms < y->v_ms ? -1 : 1;
    int c = bytes_cmp(x->client, x->len, y->client, y->len);
    if (c) return c;
    return x->due_ms < y->due_ms ? -1 : x->due_ms > y->due_ms;
}

typedef struct due_list {
    due_t *v;
    size_t n, cap, limit;
    processor_t *wb; /* write-back mode: the processor, else NULL */
} due_list_t;

static int due_grow(due_list_t *l) {
    due_t *v = churn_grow(l->v, l->n, &l->cap, sizeof(*v), 64);
    if (!v) return CHURN_ENOMEM;
    l->v = v;
    return 0;
}

static int collect_due(void *arg, uint32_t part, int64_t due_ms,
                       const char *client, size_t len) {
    due_list_t *l = arg;
    if (l->limit && l->n >= l->limit) return 1;
    /* Write-back: a cached client's live entry is in the heap; one in the
     * store is left over (its own was deleted when it was loaded). */
    if (l->wb && cache_get(l->wb->cache, part, client, len)) {
        store_batch_del_timer(l->wb->wb, part, due_ms, client, len);
        return 0;
    }
    if (due_grow(l)) return CHURN_ENOMEM;
    char *c = malloc(len + 1);
    if (!c) return CHURN_ENOMEM;
    memcpy(c, client, len);
    c[len] = '\0';
    l->v[l->n++] = (due_t){due_ms, c, len, due_ms, c};
    return 0;
}

/* Write-back: add the heap's entries of partition part due by upto_ms. A
 * walk from the root that stops at any entry later than upto_ms (all of
 * its subtree is later too): the cost is what is due, not the heap. */
static int collect_wakes(processor_t *p, uint32_t part, int64_t upto_ms,
                         due_list_t *l) {
    const wake_heap_t *h = &p->wakes;
    if (h->n == 0 || h->v[0].due_ms > upto_ms) return 0;
    size_t *stack = malloc(h->n * sizeof(*stack));
    if (!stack) return CHURN_ENOMEM;
    size_t top = 0;
    stack[top++] = 0;
    int rc = 0;
    while (top > 0 && !rc) {
        size_t i = stack[--top];
        const wake_entry_t *e = &h->v[i];
        if (e->due_ms > upto_ms) continue;
        if (e->part == part) {
            if ((rc = due_grow(l)) != 0) break;
            const cstate_t *st = e->st;
            l->v[l->n++] = (due_t){e->due_ms, cstate_client_id(st),
                                   strlen(cstate_client_id(st)), e->due_ms,
                                   NULL};
        }
        if (2 * i + 1 < h->n) stack[top++] = 2 * i + 1;
        if (2 * i + 2 < h->n) stack[top++] = 2 * i + 2;
    }
    free(stack);
    return rc;
}

int processor_fire_timers(processor_t *p, uint32_t part, int64_t upto_ms,
                          size_t limit, engine_out_t *out, size_t *n_fired,
                          churn_err_t *err) {
    /* Write-back: the store's entries (evicted clients) and the heap's
     * (cached ones), merged in the store's order, then cut to limit. */
    due_list_t l = {.limit = p->write_back ? 0 : limit,
                    .wb = p->write_back ? p : NULL};
    *n_fired = 0;
    scan_key_t *key = NULL;
    if (grow_parts(p, part) == 0) {
        key = &p->scan_key[part];
        key->min_put = INT64_MAX;
    }
    int rc = store_scan_timers_after(p->store, part, scan_from_of(p, part),
                                     key ? key->client : NULL, key ? key->len : 0,
                                     upto_ms, limit && !p->write_back ? limit + 1 : 0,
                                     collect_due, &l, err);
    if (rc == CHURN_ENOMEM) churn_err_set(err, rc, "out of memory");
    /* The last entry scanned, in the index's order (before any sort):
     * every entry from the scan's start up to it is handled below. */
    int64_t last_due = l.n ? l.v[l.n - 1].due_ms : INT64_MIN;
    char *last_client = l.n ? l.v[l.n - 1].own : NULL;
    size_t last_len = l.n ? l.v[l.n - 1].len : 0;
    int skipped = 0;
    if (rc >= 0 && p->write_back) {
        rc = collect_wakes(p, part, upto_ms, &l);
        if (rc) churn_err_set(err, rc, "out of memory");
        if (!rc && l.n > 1) qsort(l.v, l.n, sizeof(*l.v), due_cmp);
        for (; !rc && limit && l.n > limit; l.n--) free(l.v[l.n - 1].own);
    }
    int more = limit && l.n >= limit;
    /* With lookahead a client's entry may lie past ticks it skips (no-ops).
     * Without, it would have been woken at each, one per round (a client
     * is fired up to its own deadline only), and the rounds decide the
     * order of the alerts. So each round wakes every client at the time it
     * would have been woken, virtually (nothing to do) before its entry.
     * Replay does, with no limit; the daemon (live) does not: its order
     * across clients is not defined, and its rounds are cut to a limit
     * that a virtual wake-up would not advance. */
    int virt = p->opts.lookahead_ticks && !p->live;
    int64_t settled = settled_of(p, part);
    for (size_t i = 0; virt && rc >= 0 && i < l.n; i++) {
        cstate_t *st = NULL;
        rc = client_state(p, part, l.v[i].client, l.v[i].len, 1, &st, err);
        if (rc) break;
        if (cstate_indexed_wake(st) != l.v[i].due_ms) continue;
        int64_t pos = vpos_get(&p->vpos, l.v[i].client, l.v[i].len);
        if (settled > pos) pos = settled;
        int64_t v = cstate_next_tick_after(st, p->rules, pos);
        if (v < l.v[i].v_ms) l.v[i].v_ms = v;
    }
    if (virt && rc >= 0 && l.n > 1)
        qsort(l.v, l.n, sizeof(*l.v), due_cmp);
    for (size_t i = 0; rc >= 0 && i < l.n; i++) {
        cstate_t *st = NULL;
        rc = client_state(p, part, l.v[i].client, l.v[i].len, 1, &st, err);
        if (rc) break;
        /* Only the entry the state itself last indexed is live. */
        if (cstate_indexed_wake(st) != l.v[i].due_ms) {
            store_batch_del_timer(p->wb, part, l.v[i].due_ms, l.v[i].client,
                                  l.v[i].len);
            if (part < p->n_settled && p->n_timers[part] > 0)
                p->n_timers[part]--; /* a stale entry, counted by the scan */
            continue;
        }
        if (virt) {
            int64_t at = l.v[i].v_ms;
            if (vpos_set(&p->vpos, l.v[i].client, l.v[i].len, at)) {
                rc = churn_err_set(err, CHURN_ENOMEM, "out of memory");
                break;
            }
            if (at < l.v[i].due_ms) { /* a skipped tick: a no-op */
                more = 1;
                skipped = 1;
                continue;
            }
        }
        /* Fire this client up to its own deadline only: a later deadline
         * of the same client is re-indexed and fired in global deadline
         * order on the next call. */
        exp_count_t before = exp_before(p, part, st);
        rc = engine_on_time(p->rules, &p->opts, st, l.v[i].due_ms, out);
        if (rc < 0) {
            churn_err_set(err, rc, "out of memory in the engine");
            break;
        }
        note_expectations(p, part, before, st);
        if (cache_mark_dirty(p->cache, part, l.v[i].client, l.v[i].len)) {
            rc = churn_err_set(err, CHURN_EINVAL,
                               "client state vanished from the cache");
            break;
        }
        if (reindex(p, part, st, l.v[i].client, l.v[i].len) != 0) {
            rc = churn_err_set(err, CHURN_ENOMEM, "out of memory");
            break;
        }
        int64_t next = cstate_indexed_wake(st);
        if (next <= l.v[i].due_ms) {
            /* The engine must move a woken client's deadline forward; if
             * it did not, stop rather than wake it forever. */
            rc = churn_err_set(err, CHURN_EINVAL,
                               "client %s: deadline %lld did not advance after firing",
                               l.v[i].client, (long long)l.v[i].due_ms);
            break;
        }
        if (next <= upto_ms) more = 1;
        (*n_fired)++;
    }
    /* A round cut short by the limit: the next one starts at the last
     * entry scanned (deleted in this round's batch, which the next scan
     * follows), unless an entry was put at or before it meanwhile or one
     * was left in place. Write-back merges the heap's entries and cuts
     * the list after sorting, so it keeps to time granularity. */
    if (rc >= 0 && more && key && !p->write_back && !skipped && last_client &&
        key->min_put > last_due && last_due >= p->scan_from[part]) {
        char *c = malloc(last_len ? last_len : 1);
        if (c) {
            memcpy(c, last_client, last_len);
            scan_key_clear(key);
            p->scan_from[part] = last_due;
            key->client = c;
            key->len = last_len;
        }
    }
    for (size_t i = 0; i < l.n; i++) free(l.v[i].own);
    free(l.v);
    if (rc < 0) return rc;
    if (!more) {
        vpos_clear(&p->vpos);
        if (note_settled(p, part, upto_ms))
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    return more;
}

static int put_dirty(void *arg, uint32_t part, const char *client,
                     size_t len, void *val) {
    processor_t *p = arg;
    if (p->opts.lookahead_ticks) { /* deferred by processor_event */
        engine_look_ahead(p->rules, &p->opts, val);
        if (reindex(p, part, val, client, len) != 0) return CHURN_ENOMEM;
    }
    if (p->write_back) return 0; /* written when it leaves the cache */
    buf_reset(&p->enc);
    int rc = cstate_encode(val, &p->enc);
    if (rc) return rc;
    store_batch_put_client(p->wb, part, client, len, p->enc.data, p->enc.len);
    return 0;
}

/* Write-back: a state leaving memory goes to the store with its timer
 * entry, which moves from the heap back to the store. */
static int write_state(processor_t *p, uint32_t part, const char *client,
                       size_t len, cstate_t *st) {
    buf_reset(&p->enc);
    int rc = cstate_encode(st, &p->enc);
    if (rc) return rc;
    store_batch_put_client(p->wb, part, client, len, p->enc.data, p->enc.len);
    int64_t due = cstate_indexed_wake(st);
    if (due != INT64_MAX) {
        store_batch_put_timer(p->wb, part, due, client, len);
        lower_scan(p, part, due, client, len);
    }
    return 0;
}

static int evict_one(void *arg, uint32_t part, const char *client,
                     size_t len, void *val) {
    processor_t *p = arg;
    int rc = write_state(p, part, client, len, val);
    if (!rc) wake_remove(&p->wakes, val);
    return rc;
}

int processor_commit(processor_t *p, const processor_offset_t *offs,
                     size_t n_offs, churn_err_t *err) {
    int rc = cache_each_dirty(p->cache, put_dirty, p);
    if (rc) return churn_err_set(err, rc, "cannot encode a client state");
    /* Write-back leaves states in memory past the commit: the stored counts
     * would run ahead of the stored states, so the record goes until the
     * flush writes it again (a run killed before that leaves none, and the
     * next churnd run counts the partition by decoding its states). */
    for (size_t i = 0; i < p->n_settled; i++) {
        if (!p->counts[i].dirty) continue;
        if (p->write_back) store_batch_del_counts(p->wb, (uint32_t)i);
        else store_batch_put_counts(p->wb, (uint32_t)i, &p->counts[i].c);
    }
    for (size_t i = 0; p->live && p->rules && i < p->n_settled; i++) {
        if (!p->fired_dirty[i]) continue;
        store_fired_t f = {.upto_ms = p->settled[i], .rules_hash = p->rules_hash};
        store_batch_put_fired(p->wb, (uint32_t)i, &f);
    }
    for (size_t i = 0; i < n_offs; i++)
        store_batch_put_offset(p->wb, offs[i].topic, offs[i].partition,
                               offs[i].next_offset);
    if (p->write_back) {
        /* Evict before writing: what leaves the cache is the batch. */
        cache_clear_dirty(p->cache);
        rc = cache_evict_each(p->cache, evict_one, p);
        if (rc) return churn_err_set(err, rc, "cannot encode a client state");
    }
    for (size_t i = 0; i < p->pend.n; i++) {
        const held_copy_t *c = &p->pend.v[i];
        if (c->taken) continue;
        store_batch_put_held(p->wb, c->part, c->ts_ms, c->tag, c->tag_len,
                             c->val, c->val_len);
        if (c->ts_ms < p->held[c->part].from) p->held[c->part].from = c->ts_ms;
    }
    if (store_batch_count(p->wb) > 0) {
        rc = store_commit(p->store, p->wb, err);
        if (rc) return rc;
    }
    store_batch_clear(p->wb);
    held_clear(&p->pend);
    if (!p->write_back) {
        cache_clear_dirty(p->cache);
        cache_evict(p->cache);
    }
    for (size_t i = 0; i < p->n_settled; i++) {
        p->counts[i].dirty = 0;
        p->fired_dirty[i] = 0;
    }
    return 0;
}

void processor_set_write_back(processor_t *p) { p->write_back = 1; }

/* Batches of this many writes while flushing: one WriteBatch of a whole
 * cache would double the memory the states already take. */
#define FLUSH_BATCH 4096

/* One cached state to flush. */
typedef struct flush_item {
    uint32_t part;
    const char *client; /* the cache's key, borrowed */
    size_t len;
    cstate_t *st;
} flush_item_t;

typedef struct flush_list {
    flush_item_t *v;
    size_t n, cap;
} flush_list_t;

static int flush_collect(void *arg, uint32_t part, const char *client,
                         size_t len, void *val) {
    flush_list_t *l = arg;
    flush_item_t *v = churn_grow(l->v, l->n, &l->cap, sizeof(*v), 1024);
    if (!v) return CHURN_ENOMEM;
    l->v = v;
    l->v[l->n++] = (flush_item_t){part, client, len, val};
    return 0;
}

/* The store's order of client keys: partition, then client bytes. */
static int flush_client_cmp(const void *a, const void *b) {
    const flush_item_t *x = a, *y = b;
    if (x->part != y->part) return x->part < y->part ? -1 : 1;
    return bytes_cmp(x->client, x->len, y->client, y->len);
}

/* ... and of timer keys: partition, due time, client bytes. */
static int flush_timer_cmp(const void *a, const void *b) {
    const flush_item_t *x = a, *y = b;
    if (x->part != y->part) return x->part < y->part ? -1 : 1;
    int64_t dx = cstate_indexed_wake(x->st), dy = cstate_indexed_wake(y->st);
    if (dx != dy) return dx < dy ? -1 : 1;
    return bytes_cmp(x->client, x->len, y->client, y->len);
}

static int flush_batch(processor_t *p, size_t at_least, churn_err_t *err) {
    if (store_batch_count(p->wb) < at_least) return 0;
    int rc = store_commit(p->store, p->wb, err);
    if (!rc) store_batch_clear(p->wb);
    return rc;
}

/* Every cached state, then every timer entry, each in key order: RocksDB
 * inserts a run of ascending keys into its memtable (a skip list) from
 * where the previous one went, instead of searching from the top. */
int processor_flush(processor_t *p, churn_err_t *err) {
    if (!p->write_back) return 0;
    if (cache_dirty_count(p->cache) > 0)
        return churn_err_set(err, CHURN_EINVAL,
                             "flush before commit: %zu client states not committed",
                             cache_dirty_count(p->cache));
    flush_list_t l = {0};
    int rc = cache_each(p->cache, flush_collect, &l);
    if (rc) rc = churn_err_set(err, rc, "out of memory");
    for (size_t i = 0; !rc && i < l.n; i++) {
        /* The next run on this store has no lookahead (not fresh): leave
         * the client indexed at its natural next deadline, as a run
         * without lookahead would, not past ticks only this run knows are
         * quiet. Otherwise the next run would wake it later than the one
         * run over both parts of the stream does (virtually), and alerts
         * of one round would come out in another order. */
        if (p->opts.lookahead_ticks) {
            engine_drop_quiet(p->rules, l.v[i].st, settled_of(p, l.v[i].part));
            if (reindex(p, l.v[i].part, l.v[i].st, l.v[i].client, l.v[i].len))
                rc = churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
    }
    if (!rc && l.n > 1) qsort(l.v, l.n, sizeof(*l.v), flush_client_cmp);
    for (size_t i = 0; !rc && i < l.n; i++) {
        buf_reset(&p->enc);
        rc = cstate_encode(l.v[i].st, &p->enc);
        if (rc) {
            churn_err_set(err, rc, "cannot encode a client state");
            break;
        }
        store_batch_put_client(p->wb, l.v[i].part, l.v[i].client, l.v[i].len,
                               p->enc.data, p->enc.len);
        rc = flush_batch(p, FLUSH_BATCH, err);
    }
    if (!rc) rc = flush_batch(p, 1, err);
    if (!rc && l.n > 1) qsort(l.v, l.n, sizeof(*l.v), flush_timer_cmp);
    for (size_t i = 0; !rc && i < l.n; i++) {
        int64_t due = cstate_indexed_wake(l.v[i].st);
        if (due == INT64_MAX) continue;
        store_batch_put_timer(p->wb, l.v[i].part, due, l.v[i].client, l.v[i].len);
        lower_scan(p, l.v[i].part, due, l.v[i].client, l.v[i].len);
        rc = flush_batch(p, FLUSH_BATCH, err);
    }
    for (size_t i = 0; !rc && i < p->n_settled; i++)
        if (p->counts[i].loaded)
            store_batch_put_counts(p->wb, (uint32_t)i, &p->counts[i].c);
    if (!rc) rc = flush_batch(p, 1, err);
    free(l.v);
    return rc;
}

void processor_drop_partition(processor_t *p, uint32_t part) {
    /* Write-back would lose the dropped states' changes; replay, its only
     * user, has one partition and never drops it. The heap must not keep
     * pointers to them all the same. */
    if (p->write_back) wake_drop_part(&p->wakes, part);
    cache_drop_partition(p->cache, part);
    if (part < p->n_settled) {
        p->settled[part] = p->scan_from[part] = INT64_MIN;
        scan_key_clear(&p->scan_key[part]);
        p->fired_dirty[part] = 0;
        p->held[part] = (part_held_t){INT64_MIN};
        p->n_timers[part] = 0;
        memset(&p->counts[part], 0, sizeof(p->counts[part]));
    }
    /* Revocations come between batches, when nothing is pending; should
     * one come inside a batch, the partition's holds go with it. */
    size_t w = 0;
    for (size_t i = 0; i < p->pend.n; i++) {
        if (p->pend.v[i].part == part) held_copy_free(&p->pend.v[i]);
        else p->pend.v[w++] = p->pend.v[i];
    }
    p->pend.n = w;
}

static int count_one(void *arg, uint32_t part, int64_t due_ms,
                     const char *client, size_t client_len) {
    (void)part, (void)due_ms, (void)client, (void)client_len;
    (*(int64_t *)arg)++;
    return 0;
}

/* A state directory from before the counts: count once, by decoding every
 * client state of the partition; the next commit writes the record. */
static int count_client(void *arg, uint32_t part, const char *client,
                        size_t len, const void *val, size_t val_len) {
    (void)part;
    store_counts_t *c = arg;
    cstate_t *st = NULL;
    churn_err_t derr = {0};
    int rc = cstate_decode(val, val_len, client, len, &st, &derr);
    if (rc) return rc;
    exp_count_t e = exp_of(st);
    cstate_free(st);
    c->clients++;
    c->open_expectations += e.open;
    c->overdue_expectations += e.overdue;
    return 0;
}

int processor_count_partition(processor_t *p, uint32_t part, churn_err_t *err) {
    int64_t n = 0;
    int rc = store_scan_timers(p->store, part, INT64_MAX, 0, count_one, &n, err);
    if (rc < 0) return rc;
    if (grow_parts(p, part)) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    p->n_timers[part] = n;
    part_counts_t *pc = &p->counts[part];
    memset(pc, 0, sizeof(*pc));
    rc = store_get_counts(p->store, part, &pc->c, err);
    if (rc == CHURN_ENOTFOUND) {
        memset(&pc->c, 0, sizeof(pc->c));
        rc = store_scan_clients(p->store, part, count_client, &pc->c, err);
        if (rc == CHURN_ECORRUPT || rc == CHURN_ENOMEM)
            rc = churn_err_set(err, rc, "partition %u: cannot count its client states", part);
        pc->dirty = 1;
    }
    if (rc < 0) {
        memset(pc, 0, sizeof(*pc));
        return rc;
    }
    /* States changed since the last commit are not in the record yet:
     * counting starts between commits only. */
    pc->loaded = 1;
    return 0;
}

/* The walk commits every PROCESSOR_SETTLE_BATCH re-indexed states, so
 * that the cache (which keeps changed states until a commit) stays
 * bounded on a large store; the states read and left as they were are
 * let go as the walk goes (a reload on 1,000,000 clients peaked at
 * 2.4 GiB while they waited for a commit that only changed ones bring). */

int processor_settle_partition(processor_t *p, uint32_t part, churn_err_t *err) {
    if (!p->live || !p->opts.lookahead_ticks || !p->rules) return 0;
    if (processor_dirty(p) > 0)
        return churn_err_set(err, CHURN_EINVAL,
                             "settle before commit: %zu client states not committed",
                             processor_dirty(p));
    int64_t settled = settled_of(p, part);
    due_list_t l = {0};
    int rc = store_scan_timers_from(p->store, part, scan_from_of(p, part),
                                    INT64_MAX, 0, collect_due, &l, err);
    if (rc == CHURN_ENOMEM) churn_err_set(err, rc, "out of memory");
    size_t moved = 0;
    for (size_t i = 0; rc >= 0 && i < l.n; i++) {
        /* From i 0: the scan took a while on its own. */
        if (p->progress && i % PROCESSOR_PROGRESS_EVERY == 0)
            p->progress(p->progress_arg, part, i, l.n);
        /* Unchanged states of the clients before, over the capacity. */
        if (!p->write_back) cache_evict(p->cache);
        cstate_t *st = NULL;
        rc = client_state(p, part, l.v[i].client, l.v[i].len, 0, &st, err);
        if (rc) break;
        if (cstate_indexed_wake(st) != l.v[i].due_ms) continue; /* stale */
        engine_settle_quiet(p->rules, st, settled);
        if (cstate_next_wake(st, p->rules) >= l.v[i].due_ms) continue;
        /* Re-indexed by the commit (put_dirty), as any changed state. */
        if (cache_mark_dirty(p->cache, part, l.v[i].client, l.v[i].len)) {
            rc = churn_err_set(err, CHURN_EINVAL, "client state vanished from the cache");
            break;
        }
        if (++moved % PROCESSOR_SETTLE_BATCH == 0) rc = processor_commit(p, NULL, 0, err);
    }
    for (size_t i = 0; i < l.n; i++) free(l.v[i].own);
    free(l.v);
    if (rc >= 0) rc = processor_commit(p, NULL, 0, err);
    return rc < 0 ? rc : 0;
}

int processor_resume_partition(processor_t *p, uint32_t part, churn_err_t *err) {
    if (!p->live || !p->opts.lookahead_ticks || !p->rules) return 0;
    if (grow_parts(p, part)) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    store_fired_t f;
    int rc = store_get_fired(p->store, part, &f, err);
    if (rc == CHURN_ENOTFOUND) {
        /* None yet: clients indexed from now on are looked ahead under
         * this rule set, which the next commit records. */
        p->fired_dirty[part] = 1;
        return 0;
    }
    if (rc < 0) return rc;
    p->settled[part] = f.upto_ms;
    /* Under the rule set at hand, nothing to write. Under another, the
     * record keeps naming that one until the walk is over: the walk's own
     * commits (every PROCESSOR_SETTLE_BATCH moved states) leave it out, so
     * a start killed half-way leaves the next one the walk to do. (A
     * reload walks under the old set, before processor_set_rules: its
     * commits name the old set, rightly.) */
    p->fired_dirty[part] = 0;
    if (f.rules_hash == p->rules_hash) return 0;
    rc = processor_settle_partition(p, part, err);
    if (rc < 0) return rc;
    p->fired_dirty[part] = 1;
    return processor_commit(p, NULL, 0, err);
}

int processor_fired_pending(const processor_t *p) {
    for (size_t i = 0; p->live && i < p->n_settled; i++)
        if (p->fired_dirty[i]) return 1;
    return 0;
}

size_t processor_dirty(const processor_t *p) {
    return cache_dirty_count(p->cache);
}

void processor_get_stats(const processor_t *p, processor_stats_t *st) {
    *st = (processor_stats_t){
        .cached_clients = cache_size(p->cache),
        .cache_peak = cache_peak(p->cache),
        .cache_capacity = cache_capacity(p->cache),
        .cache_bytes = cache_memory_bytes(p->cache),
        .cache_state_bytes = cache_value_bytes(p->cache),
        .cache_max_bytes = cache_max_bytes(p->cache),
        .cache_hits = p->n_hits,
        .cache_misses = p->n_misses,
        .new_clients = p->n_new,
    };
    for (size_t i = 0; i < p->n_settled; i++) {
        st->pending_timers += (uint64_t)(p->n_timers[i] > 0 ? p->n_timers[i] : 0);
        st->clients += p->counts[i].c.clients;
        st->open_expectations += p->counts[i].c.open_expectations;
        st->overdue_expectations += p->counts[i].c.overdue_expectations;
    }
}
