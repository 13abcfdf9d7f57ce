/*
 * store.c - the RocksDB adapter (include/churnd/store.h has the key layout).
 *
 * Owns the state directory: opening it in one of three modes, the format
 * marker, turning every RocksDB error into a sentence that names the
 * directory and what was being done, and the key encoding. It knows nothing
 * of what a client record contains, and never logs or exits: callers decide.
 *
 * Settings, and why:
 *  - WAL on, point-in-time recovery: after kill -9 the directory holds
 *    exactly the batches that were committed, a torn last WAL record is
 *    dropped (that batch was never acknowledged as committed).
 *  - A fixed 5-byte prefix extractor (tag byte + u32 partition) so the
 *    bloom filters also hold prefixes and a timer scan of a partition with
 *    no timers in an SST file skips it. Scans that stay in one partition set
 *    prefix_same_as_start; the all-partition client scan sets
 *    total_order_seek, as RocksDB requires once a prefix extractor exists.
 *  - The memtable's bloom filter holds whole keys too, so looking up a
 *    client that is not in the memtable (a new one, or one only in SST
 *    files) skips its skip list, which is as long as the memtable holds
 *    writes.
 *  - Timers are a queue (put, fire, delete in due order), the case where
 *    tombstones pile up in front of the live keys; the compact-on-deletion
 *    collector asks RocksDB to compact SST files dense in deletions.
 *  - Failing disks must stop churnd with a sentence, not abort or crawl:
 *    RocksDB's info LOG is kept to fatal lines (make_options), a writer
 *    will not open on a nearly full filesystem (check_free_space), and
 *    writes stop after any background error (check_background).
 *  - A secondary catches up by reopening (store_catch_up), working around
 *    RocksDB 7.8's stale reads after the writer flushes.
 *  - A store is used by one thread at a time (the daemon's loop).
 */
#include "churnd/store.h"

#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <rocksdb/c.h>

#define FORMAT_VERSION 1u
#define PREFIX_LEN 5 /* tag byte + u32 partition */
#define DUE_FLIP ((uint64_t)1 << 63)
#define DEFAULT_BLOCK_CACHE ((size_t)32 << 20)
/* Room a writer needs to open: info-log header, OPTIONS, MANIFEST, WAL. */
#define MIN_FREE_BYTES ((uint64_t)4 << 20)

static const char FORMAT_KEY[] = "Mformat"; /* 'M' "format" */
#define FORMAT_KEY_LEN (sizeof(FORMAT_KEY) - 1)

struct store {
    rocksdb_t *db;
    rocksdb_options_t *opts; /* kept to reopen a secondary */
    rocksdb_cache_t *block_cache;
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts; /* point reads */
    store_mode_t mode;
    char *dir;
    char *secondary_dir; /* our temporary directory, removed on close */
    unsigned sec_gen;    /* the secondary uses <secondary_dir>/<sec_gen> */
    buf_t key;           /* reused for point-read keys */
};

/* A batch keeps its operations itself and hands them to RocksDB in key
 * order at the commit (store_commit). The memtable is a skip list that
 * inserts each key starting from where the previous one went: keys that
 * come in order are found a few steps away, keys in the order the cache
 * happened to hold them are searched for from the top. In the daemon's
 * profile (latency row, 100,000 cached clients) that search was 15% of
 * churnd's CPU. Operations on one key keep the order they were made in. */
typedef struct batch_op {
    size_t at;       /* offset of the op's key in ops */
    uint32_t klen;
    uint32_t vlen;   /* the value follows the key */
    uint8_t del;
} batch_op_t;

struct store_batch {
    rocksdb_writebatch_t *wb; /* rebuilt, sorted, by each commit */
    buf_t key; /* reused for every key of the batch */
    buf_t ops; /* keys and values, in the order they came */
    batch_op_t *v;
    size_t n, cap;
    int failed; /* a key could not be built (out of memory): refuse commit */
};

/* ---- errors ---- */

/* "cannot <what> state directory <dir>: <rocksdb message>", and the
 * RocksDB message freed. */
static int rocks_err(churn_err_t *err, int code, char **rerr,
                     const char *what, const char *dir) {
    const char *msg = *rerr ? *rerr : "unknown RocksDB error";
    const char *hint = "";
    if (*rerr && strstr(*rerr, "LOCK"))
        hint = " (another process holds it: is churnd running on it? "
               "a reader can use read-only or secondary mode)";
    churn_err_set(err, code, "cannot %s state directory %s: %s%s", what, dir,
                  msg, hint);
    if (*rerr) rocksdb_free(*rerr);
    *rerr = NULL;
    return code;
}

/* ---- keys ---- */

static void put_u32be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_u64be(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint32_t get_u32be(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static uint64_t get_u64be(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static int key_prefix(buf_t *k, char tag, uint32_t part) {
    buf_reset(k);
    int rc = buf_putc(k, (uint8_t)tag);
    if (!rc) rc = buf_put_u32be(k, part);
    return rc;
}

static int key_client(buf_t *k, uint32_t part, const char *client,
                      size_t len) {
    int rc = key_prefix(k, 'C', part);
    if (!rc) rc = buf_append(k, client, len);
    return rc;
}

static int key_timer(buf_t *k, uint32_t part, int64_t due_ms,
                     const char *client, size_t len) {
    int rc = key_prefix(k, 'T', part);
    if (!rc) rc = buf_put_u64be(k, (uint64_t)due_ms ^ DUE_FLIP);
    if (!rc) rc = buf_append(k, client, len);
    return rc;
}

static int key_held(buf_t *k, uint32_t part, int64_t ts_ms, const void *tag,
                    size_t tag_len) {
    int rc = key_prefix(k, 'B', part);
    if (!rc) rc = buf_put_u64be(k, (uint64_t)ts_ms ^ DUE_FLIP);
    if (!rc) rc = buf_append(k, tag, tag_len);
    return rc;
}

static int key_offset(buf_t *k, const char *topic, int32_t partition) {
    int rc = key_prefix(k, 'O', (uint32_t)partition);
    if (!rc) rc = buf_append(k, topic, strlen(topic));
    return rc;
}

/* The smallest key greater than every key starting with p[0..*n): drop
 * trailing 0xff bytes and increment the last one. 0, or -1 when every byte
 * is 0xff (no bound: not reachable with our tag bytes). */
static int prefix_successor(uint8_t *p, size_t *n) {
    while (*n > 0 && p[*n - 1] == 0xff) (*n)--;
    if (*n == 0) return -1;
    p[*n - 1]++;
    return 0;
}

/* ---- open / close ---- */

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *path) {
    /* Best effort: a leftover temporary directory is harmless, and
     * store_close has no one to tell. */
    (void)nftw(path, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* A private directory for the secondary instance's own files (its info
 * log). Under $TMPDIR rather than inside the state directory: a reader such
 * as `churnd state` may not be allowed to write there. */
static char *make_secondary_dir(churn_err_t *err) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + sizeof("/churnd-secondary-XXXXXX");
    char *p = malloc(n);
    if (!p) {
        churn_err_set(err, CHURN_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(p, n, "%s/churnd-secondary-XXXXXX", base);
    if (!mkdtemp(p)) {
        churn_err_set(err, CHURN_EIO,
                      "cannot create a directory for a secondary instance "
                      "under %s: %s", base, strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

static rocksdb_options_t *make_options(const store_opts_t *o,
                                       rocksdb_cache_t **cache) {
    rocksdb_options_t *opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opt, o->mode == STORE_READ_WRITE);
    rocksdb_options_set_wal_recovery_mode(
        opt, rocksdb_point_in_time_recovery);
    rocksdb_options_set_max_open_files(opt, -1); /* secondary requires it */
    rocksdb_options_set_level_compaction_dynamic_level_bytes(opt, 1);
    rocksdb_options_set_max_background_jobs(opt, 2);
    /* Flushes and compactions run at nice 19. They only need to keep up on
     * average, while the event loop's batches wait for every CPU slice it
     * loses: on a busy 2-core machine, a flush at the loop's priority held
     * the latency row's p99 at 42.6 ms (median of 8 runs), at nice 19 at
     * 25.1 ms (docs/bench.md). Should they fall behind, RocksDB stalls the
     * writes, the loop waits, and they get the CPU back. The setting is
     * the process's default Env, shared by every store opened here; each
     * pool thread applies it before its next job. */
    rocksdb_env_t *env = rocksdb_create_default_env();
    rocksdb_env_lower_high_priority_thread_pool_cpu_priority(env);
    rocksdb_env_lower_thread_pool_cpu_priority(env);
    rocksdb_options_set_env(opt, env);
    rocksdb_env_destroy(env); /* the wrapper only: the default Env stays */
    /* RocksDB's own info LOG (in the state directory) gets only its header
     * and fatal lines. Debian's librocksdb is built with assertions on, and
     * its LOG writer asserts on the first line after a failed one: with a
     * full disk, INFO/WARN/ERROR lines abort() the process before our commit
     * can report ENOSPC (measured on a 2 MiB tmpfs). Our own errors carry
     * RocksDB's message; store_get_stats has the figures. */
    rocksdb_options_set_info_log_level(opt, 4 /* FATAL_LEVEL */);
    rocksdb_options_set_keep_log_file_num(opt, 5);
    rocksdb_options_set_max_log_file_size(opt, (size_t)16 << 20);
    if (o->write_buffer_bytes)
        rocksdb_options_set_write_buffer_size(opt, o->write_buffer_bytes);
    rocksdb_options_set_prefix_extractor(
        opt, rocksdb_slicetransform_create_fixed_prefix(PREFIX_LEN));
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(opt, 0.02);
    rocksdb_options_set_memtable_whole_key_filtering(opt, 1);
    rocksdb_options_add_compact_on_deletion_collector_factory(opt, 128 * 1024,
                                                              32 * 1024);

    rocksdb_block_based_table_options_t *t =
        rocksdb_block_based_options_create();
    *cache = rocksdb_cache_create_lru(
        o->block_cache_bytes ? o->block_cache_bytes : DEFAULT_BLOCK_CACHE);
    rocksdb_block_based_options_set_block_cache(t, *cache);
    /* The table options take ownership of the policy. */
    rocksdb_block_based_options_set_filter_policy(
        t, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_whole_key_filtering(t, 1);
    rocksdb_options_set_block_based_table_factory(opt, t); /* copies t */
    rocksdb_block_based_options_destroy(t);
    return opt;
}

/* Refuse to open for writing on a (nearly) full filesystem. RocksDB writes
 * its info-log header while opening, and Debian's assertion-enabled build
 * aborts on the line after a failed one: on a full disk churnd would die of
 * SIGABRT at every restart instead of saying why. Read-only and secondary
 * opens write nothing there and need no check. A directory that does not
 * exist yet is checked through its parent; if neither can be examined,
 * RocksDB reports the real problem. */
static int check_free_space(const char *dir, churn_err_t *err) {
    struct statvfs v;
    if (statvfs(dir, &v) != 0) {
        char *copy = dup_str(dir);
        if (!copy) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        int rc = statvfs(dirname(copy), &v);
        free(copy);
        if (rc != 0) return 0;
    }
    /* Blocks reserved for root count only for root. */
    uint64_t blocks = geteuid() == 0 ? (uint64_t)v.f_bfree
                                     : (uint64_t)v.f_bavail;
    uint64_t avail = blocks * (uint64_t)v.f_frsize;
    if (avail >= MIN_FREE_BYTES) return 0;
    return churn_err_set(err, CHURN_EIO,
                         "cannot open state directory %s: its filesystem "
                         "has %llu KiB free, less than the %llu KiB needed "
                         "to open it; free some space",
                         dir, (unsigned long long)(avail >> 10),
                         (unsigned long long)(MIN_FREE_BYTES >> 10));
}

/* Is there any key at all? 1, 0, or a negative code with err. */
static int db_has_keys(store_t *s, churn_err_t *err) {
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_total_order_seek(ro, 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, ro);
    rocksdb_iter_seek_to_first(it);
    int any = rocksdb_iter_valid(it);
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (e) return rocks_err(err, CHURN_EIO, &e, "read", s->dir);
    return any;
}

/* Check the format marker; in read-write mode write it into a new, empty
 * directory. Refuse a marker we do not understand and a non-empty directory
 * without one (some other program's RocksDB). */
static int check_format(store_t *s, churn_err_t *err) {
    char *e = NULL;
    size_t n = 0;
    char *v = rocksdb_get(s->db, s->ropts, FORMAT_KEY, FORMAT_KEY_LEN, &n, &e);
    if (e) return rocks_err(err, CHURN_EIO, &e, "read", s->dir);
    if (v) {
        uint32_t version = n == 4 ? get_u32be((const uint8_t *)v) : 0;
        rocksdb_free(v);
        if (n != 4)
            return churn_err_set(err, CHURN_ECORRUPT,
                                 "state directory %s has an unreadable format "
                                 "marker (%zu bytes, expected 4); refusing "
                                 "to use it", s->dir, n);
        if (version != FORMAT_VERSION)
            return churn_err_set(err, CHURN_ECORRUPT,
                                 "state directory %s has format version %u; "
                                 "this churnd understands only version %u "
                                 "(was it written by a newer churnd?); "
                                 "refusing to use it", s->dir, version,
                                 FORMAT_VERSION);
        return 0;
    }
    int any = db_has_keys(s, err);
    if (any < 0) return any;
    if (any)
        return churn_err_set(err, CHURN_ECORRUPT,
                             "state directory %s holds a RocksDB database "
                             "without churnd's format marker; refusing to "
                             "use it", s->dir);
    /* Empty. A reader just sees nothing yet; a writer marks it as ours. */
    if (s->mode != STORE_READ_WRITE) return 0;
    uint8_t val[4];
    put_u32be(val, FORMAT_VERSION);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    rocksdb_put(s->db, wo, FORMAT_KEY, FORMAT_KEY_LEN, (const char *)val,
                sizeof(val), &e);
    rocksdb_writeoptions_destroy(wo);
    if (e) return rocks_err(err, CHURN_EIO, &e, "write to", s->dir);
    return 0;
}

static void secondary_path(const store_t *s, unsigned gen, char *p,
                           size_t n) {
    snprintf(p, n, "%s/%u", s->secondary_dir, gen);
}

/* Open the secondary instance of generation gen in its own subdirectory
 * (see store_catch_up for why there are generations). */
static rocksdb_t *open_secondary(store_t *s, unsigned gen, char **e) {
    char path[PATH_MAX];
    secondary_path(s, gen, path, sizeof(path));
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        char msg[PATH_MAX + 128];
        snprintf(msg, sizeof(msg), "cannot create %s: %s", path,
                 strerror(errno));
        /* Shaped like a RocksDB error (rocksdb_free is free) so one path
         * reports both. */
        size_t n = strlen(msg) + 1;
        *e = malloc(n);
        if (*e) memcpy(*e, msg, n);
        return NULL;
    }
    rocksdb_t *db = rocksdb_open_as_secondary(s->opts, s->dir, path, e);
    /* The open reads the MANIFEST, then lists the WALs: a flush that ends
     * in between deletes a WAL whose data the MANIFEST we read does not
     * cover yet, a hole in the view (seen in test_secondary_follows_writer).
     * The writer records the flush in the MANIFEST before deleting the WAL,
     * so tailing the MANIFEST once more fills it. */
    if (db) {
        rocksdb_try_catch_up_with_primary(db, e);
        if (*e) {
            rocksdb_close(db);
            db = NULL;
        }
    }
    if (!db) remove_tree(path);
    return db;
}

int store_open(const store_opts_t *opts, store_t **out, churn_err_t *err) {
    *out = NULL;
    if (!opts->dir || !*opts->dir)
        return churn_err_set(err, CHURN_EINVAL, "no state directory given");
    if (opts->mode != STORE_READ_WRITE && opts->mode != STORE_READ_ONLY &&
        opts->mode != STORE_SECONDARY)
        return churn_err_set(err, CHURN_EINVAL, "unknown store mode %d",
                             (int)opts->mode);
    store_t *s = calloc(1, sizeof(*s));
    if (!s) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    buf_init(&s->key);
    s->mode = opts->mode;
    s->dir = dup_str(opts->dir);
    if (!s->dir) {
        free(s);
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    if (s->mode == STORE_READ_WRITE) {
        int rc = check_free_space(s->dir, err);
        if (rc) {
            free(s->dir);
            free(s);
            return rc;
        }
    }
    if (s->mode == STORE_SECONDARY) {
        s->secondary_dir = make_secondary_dir(err);
        if (!s->secondary_dir) {
            int code = err ? err->code : CHURN_EIO;
            free(s->dir);
            free(s);
            return code;
        }
    }
    s->opts = make_options(opts, &s->block_cache);
    char *e = NULL;
    switch (s->mode) {
    case STORE_READ_WRITE:
        s->db = rocksdb_open(s->opts, s->dir, &e);
        break;
    case STORE_READ_ONLY:
        /* A WAL left by a running (or crashed) writer is replayed into
         * memory, so the snapshot includes its last commits. */
        s->db = rocksdb_open_for_read_only(s->opts, s->dir, 0, &e);
        break;
    case STORE_SECONDARY:
        s->db = open_secondary(s, s->sec_gen, &e);
        break;
    }
    s->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopts, opts->sync ? 1 : 0);
    s->ropts = rocksdb_readoptions_create();
    int rc = 0;
    if (e || !s->db) {
        if (s->db) {
            rocksdb_close(s->db);
            s->db = NULL;
        }
        rc = rocks_err(err, CHURN_EIO, &e, "open", s->dir);
    } else {
        rc = check_format(s, err);
    }
    if (rc) {
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(store_t *s) {
    if (!s) return;
    if (s->db) rocksdb_close(s->db);
    if (s->opts) rocksdb_options_destroy(s->opts);
    if (s->block_cache) rocksdb_cache_destroy(s->block_cache);
    if (s->wopts) rocksdb_writeoptions_destroy(s->wopts);
    if (s->ropts) rocksdb_readoptions_destroy(s->ropts);
    if (s->secondary_dir) {
        remove_tree(s->secondary_dir);
        free(s->secondary_dir);
    }
    buf_free(&s->key);
    free(s->dir);
    free(s);
}

/* ---- point reads ---- */

static int get_key(store_t *s, const buf_t *k, buf_t *val, churn_err_t *err) {
    char *e = NULL;
    rocksdb_pinnableslice_t *p = rocksdb_get_pinned(
        s->db, s->ropts, (const char *)k->data, k->len, &e);
    if (e) {
        if (p) rocksdb_pinnableslice_destroy(p);
        return rocks_err(err, CHURN_EIO, &e, "read", s->dir);
    }
    if (!p) return CHURN_ENOTFOUND;
    size_t n = 0;
    const char *v = rocksdb_pinnableslice_value(p, &n);
    buf_reset(val);
    int rc = buf_append(val, v, n);
    rocksdb_pinnableslice_destroy(p);
    if (rc) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    return 0;
}

int store_get_client(store_t *s, uint32_t part, const char *client,
                     size_t client_len, buf_t *val, churn_err_t *err) {
    if (key_client(&s->key, part, client, client_len))
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    return get_key(s, &s->key, val, err);
}

int store_get_offset(store_t *s, const char *topic, int32_t partition,
                     int64_t *next_offset, churn_err_t *err) {
    if (key_offset(&s->key, topic, partition))
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    buf_t v;
    buf_init(&v);
    int rc = get_key(s, &s->key, &v, err);
    if (rc == 0) {
        if (v.len != 8 || get_u64be(v.data) > (uint64_t)INT64_MAX)
            rc = churn_err_set(err, CHURN_ECORRUPT,
                               "state directory %s: the stored offset of "
                               "%s [%d] is not a valid offset (%zu bytes)",
                               s->dir, topic, (int)partition, v.len);
        else
            *next_offset = (int64_t)get_u64be(v.data);
    }
    buf_free(&v);
    return rc;
}

/* ---- batches ---- */

store_batch_t *store_batch_new(void) {
    store_batch_t *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->wb = rocksdb_writebatch_create();
    buf_init(&b->key);
    buf_init(&b->ops);
    return b;
}

void store_batch_free(store_batch_t *b) {
    if (!b) return;
    rocksdb_writebatch_destroy(b->wb);
    buf_free(&b->key);
    buf_free(&b->ops);
    free(b->v);
    free(b);
}

void store_batch_clear(store_batch_t *b) {
    rocksdb_writebatch_clear(b->wb);
    buf_reset(&b->ops);
    b->n = 0;
    b->failed = 0;
}

size_t store_batch_count(const store_batch_t *b) { return b->n; }

/* Record one operation on the key in b->key (rc: whether building the key
 * failed). */
static void batch_op(store_batch_t *b, int rc, int del, const void *val,
                     size_t val_len) {
    if (rc || b->key.len > UINT32_MAX || val_len > UINT32_MAX) {
        b->failed = 1;
        return;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        batch_op_t *v = realloc(b->v, cap * sizeof(*v));
        if (!v) {
            b->failed = 1;
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    size_t at = b->ops.len;
    if (buf_append(&b->ops, b->key.data, b->key.len) ||
        (val_len && buf_append(&b->ops, val, val_len))) {
        b->ops.len = at;
        b->failed = 1;
        return;
    }
    b->v[b->n++] = (batch_op_t){at, (uint32_t)b->key.len, (uint32_t)val_len,
                                (uint8_t)del};
}

static void batch_put(store_batch_t *b, int rc, const void *val,
                      size_t val_len) {
    batch_op(b, rc, 0, val, val_len);
}

static void batch_del(store_batch_t *b, int rc) { batch_op(b, rc, 1, NULL, 0); }

/* qsort_r's comparison; ctx is the ops buffer. */
static int op_cmp(const void *pa, const void *pb, void *ctx) {
    const batch_op_t *a = pa, *b = pb;
    const uint8_t *base = ctx;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(base + a->at, base + b->at, n);
    if (c) return c;
    if (a->klen != b->klen) return a->klen < b->klen ? -1 : 1;
    /* One key: in the order the operations were made (offsets grow). */
    return a->at < b->at ? -1 : a->at > b->at;
}

/* b's operations into b->wb, in key order. */
static void batch_build(store_batch_t *b) {
    rocksdb_writebatch_clear(b->wb);
    if (b->n > 1) qsort_r(b->v, b->n, sizeof(*b->v), op_cmp, b->ops.data);
    for (size_t i = 0; i < b->n; i++) {
        const batch_op_t *o = &b->v[i];
        const char *k = (const char *)b->ops.data + o->at;
        if (o->del) rocksdb_writebatch_delete(b->wb, k, o->klen);
        else rocksdb_writebatch_put(b->wb, k, o->klen, k + o->klen, o->vlen);
    }
}

void store_batch_put_client(store_batch_t *b, uint32_t part,
                            const char *client, size_t client_len,
                            const void *val, size_t val_len) {
    batch_put(b, key_client(&b->key, part, client, client_len), val, val_len);
}

void store_batch_del_client(store_batch_t *b, uint32_t part,
                            const char *client, size_t client_len) {
    batch_del(b, key_client(&b->key, part, client, client_len));
}

void store_batch_put_timer(store_batch_t *b, uint32_t part, int64_t due_ms,
                           const char *client, size_t client_len) {
    batch_put(b, key_timer(&b->key, part, due_ms, client, client_len), "", 0);
}

void store_batch_del_timer(store_batch_t *b, uint32_t part, int64_t due_ms,
                           const char *client, size_t client_len) {
    batch_del(b, key_timer(&b->key, part, due_ms, client, client_len));
}

void store_batch_put_held(store_batch_t *b, uint32_t part, int64_t ts_ms,
                          const void *tag, size_t tag_len, const void *val,
                          size_t val_len) {
    batch_put(b, key_held(&b->key, part, ts_ms, tag, tag_len), val, val_len);
}

void store_batch_del_held(store_batch_t *b, uint32_t part, int64_t ts_ms,
                          const void *tag, size_t tag_len) {
    batch_del(b, key_held(&b->key, part, ts_ms, tag, tag_len));
}

void store_batch_put_offset(store_batch_t *b, const char *topic,
                            int32_t partition, int64_t next_offset) {
    uint8_t v[8];
    put_u64be(v, (uint64_t)next_offset);
    batch_put(b, key_offset(&b->key, topic, partition), v, sizeof(v));
}

#define COUNTS_VERSION 1

void store_batch_put_counts(store_batch_t *b, uint32_t part,
                            const store_counts_t *c) {
    buf_t v;
    buf_init(&v);
    int rc = buf_putc(&v, COUNTS_VERSION);
    if (!rc) rc = buf_put_varint(&v, c->clients);
    if (!rc) rc = buf_put_varint(&v, c->open_expectations);
    if (!rc) rc = buf_put_varint(&v, c->overdue_expectations);
    if (rc) b->failed = 1; /* store_commit refuses the batch */
    else batch_put(b, key_prefix(&b->key, 'S', part), v.data, v.len);
    buf_free(&v);
}

void store_batch_del_counts(store_batch_t *b, uint32_t part) {
    batch_del(b, key_prefix(&b->key, 'S', part));
}

/* A partition's one-key record (tag + partition) into v: 0,
 * CHURN_ENOTFOUND or an error with err. */
static int get_part_record(store_t *s, char tag, uint32_t part, buf_t *v,
                           churn_err_t *err) {
    if (key_prefix(&s->key, tag, part))
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    return get_key(s, &s->key, v, err);
}

int store_get_counts(store_t *s, uint32_t part, store_counts_t *c,
                     churn_err_t *err) {
    buf_t v;
    buf_init(&v);
    int rc = get_part_record(s, 'S', part, &v, err);
    if (rc == 0) {
        reader_t r;
        reader_init(&r, v.data, v.len);
        uint8_t ver = 0;
        if (reader_u8(&r, &ver) || ver != COUNTS_VERSION ||
            reader_varint(&r, &c->clients) ||
            reader_varint(&r, &c->open_expectations) ||
            reader_varint(&r, &c->overdue_expectations) || reader_left(&r))
            rc = churn_err_set(err, CHURN_ECORRUPT,
                               "state directory %s: the counts of partition %u "
                               "are not a record this build reads", s->dir, part);
    }
    buf_free(&v);
    return rc;
}

#define FIRED_VERSION 1

void store_batch_put_fired(store_batch_t *b, uint32_t part,
                           const store_fired_t *f) {
    buf_t v;
    buf_init(&v);
    int rc = buf_putc(&v, FIRED_VERSION);
    if (!rc) rc = buf_put_svarint(&v, f->upto_ms);
    if (!rc) rc = buf_put_u64be(&v, f->rules_hash);
    if (rc) b->failed = 1; /* store_commit refuses the batch */
    else batch_put(b, key_prefix(&b->key, 'F', part), v.data, v.len);
    buf_free(&v);
}

int store_get_fired(store_t *s, uint32_t part, store_fired_t *f,
                    churn_err_t *err) {
    buf_t v;
    buf_init(&v);
    int rc = get_part_record(s, 'F', part, &v, err);
    if (rc == 0) {
        reader_t r;
        reader_init(&r, v.data, v.len);
        uint8_t ver = 0;
        if (reader_u8(&r, &ver) || ver != FIRED_VERSION ||
            reader_svarint(&r, &f->upto_ms) ||
            reader_u64be(&r, &f->rules_hash) || reader_left(&r))
            rc = churn_err_set(err, CHURN_ECORRUPT,
                               "state directory %s: how far the timers of "
                               "partition %u fired is not a record this build "
                               "reads", s->dir, part);
    }
    buf_free(&v);
    return rc;
}

/* Refuse to write once a background flush or compaction has failed.
 * RocksDB treats a compaction that hits ENOSPC as a "soft" error: writes
 * are still accepted but throttled down to its minimum delayed-write rate
 * (16 KiB/s) until space appears, so churnd would crawl on without a word
 * (measured on a 16 MiB tmpfs). The error text itself is not reachable
 * through the C API (and the info LOG is at FATAL level), so the message
 * carries the filesystem's free space, the usual cause. Any background
 * error counts, including ones RocksDB might retry: stopping with a reason
 * is what SPEC section 6 asks for. */
static int check_background(store_t *s, const char *what, churn_err_t *err) {
    uint64_t n = 0;
    if (rocksdb_property_int(s->db, "rocksdb.background-errors", &n) != 0 ||
        n == 0)
        return 0;
    char space[128] = "";
    struct statvfs v;
    if (statvfs(s->dir, &v) == 0) {
        uint64_t blocks = geteuid() == 0 ? (uint64_t)v.f_bfree
                                         : (uint64_t)v.f_bavail;
        snprintf(space, sizeof(space),
                 "; its filesystem has %llu MiB free of %llu MiB",
                 (unsigned long long)(blocks * v.f_frsize >> 20),
                 (unsigned long long)((uint64_t)v.f_blocks * v.f_frsize >>
                                      20));
    }
    return churn_err_set(err, CHURN_EIO,
                         "cannot %s state directory %s: a RocksDB background "
                         "flush or compaction failed (%llu errors since "
                         "open)%s", what, s->dir, (unsigned long long)n,
                         space);
}

static int db_write(store_t *s, rocksdb_writebatch_t *wb, const char *what,
                    churn_err_t *err) {
    int rc = check_background(s, what, err);
    if (rc) return rc;
    char *e = NULL;
    rocksdb_write(s->db, s->wopts, wb, &e);
    if (e) return rocks_err(err, CHURN_EIO, &e, what, s->dir);
    return 0;
}

int store_commit(store_t *s, store_batch_t *b, churn_err_t *err) {
    if (b->failed)
        return churn_err_set(err, CHURN_ENOMEM,
                             "cannot write to state directory %s: out of "
                             "memory while building the batch; nothing "
                             "written", s->dir);
    batch_build(b);
    return db_write(s, b->wb, "write to", err);
}

/* ---- scans ---- */

/* Iterate [lo, hi) calling each(arg, key, klen, val, vlen) until it
 * returns nonzero. Returns 0, the callback's negative code, or EIO. */
typedef int (*kv_fn)(void *arg, const uint8_t *k, size_t kn, const char *v,
                     size_t vn);

static int scan_range(store_t *s, const uint8_t *lo, size_t lo_n,
                      const uint8_t *hi, size_t hi_n, int one_prefix,
                      kv_fn each, void *arg, churn_err_t *err) {
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    /* The bound is referenced, not copied: hi outlives the iterator. */
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, hi_n);
    if (one_prefix)
        rocksdb_readoptions_set_prefix_same_as_start(ro, 1);
    else
        rocksdb_readoptions_set_total_order_seek(ro, 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, ro);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, lo_n); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn = 0, vn = 0;
        const char *k = rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        rc = each(arg, (const uint8_t *)k, kn, v, vn);
        if (rc) break;
    }
    if (rc >= 0) { /* finished or stopped: was the data all readable? */
        char *e = NULL;
        rocksdb_iter_get_error(it, &e);
        rc = e ? rocks_err(err, CHURN_EIO, &e, "scan", s->dir) : 0;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* A time-ordered key space of one partition ('T' timers, 'B' held
 * events): tag | u32 part | u64 time | rest. */
typedef struct timed_scan {
    store_t *s;
    const char *what;
    store_timer_fn timer_fn;
    store_held_fn held_fn;
    void *arg;
    size_t limit;
    size_t n;
    churn_err_t *err;
} timed_scan_t;

static int timed_each(void *arg, const uint8_t *k, size_t kn, const char *v,
                      size_t vn) {
    timed_scan_t *t = arg;
    if (t->limit && t->n >= t->limit) return 1;
    if (kn < PREFIX_LEN + 8)
        return churn_err_set(t->err, CHURN_ECORRUPT,
                             "state directory %s: a %s key of %zu bytes "
                             "is too short", t->s->dir, t->what, kn);
    int64_t at = (int64_t)(get_u64be(k + PREFIX_LEN) ^ DUE_FLIP);
    const uint8_t *rest = k + PREFIX_LEN + 8;
    size_t rest_n = kn - PREFIX_LEN - 8;
    t->n++;
    if (t->timer_fn)
        return t->timer_fn(t->arg, get_u32be(k + 1), at, (const char *)rest,
                           rest_n);
    return t->held_fn(t->arg, get_u32be(k + 1), at, rest, rest_n, v, vn);
}

static int scan_timed(store_t *s, timed_scan_t *t, char tag, uint32_t part,
                      int64_t from_ms, const char *from_rest, size_t from_n,
                      int64_t upto_ms) {
    uint8_t stack_lo[PREFIX_LEN + 8 + 64], hi[PREFIX_LEN + 8];
    uint8_t *lo = stack_lo;
    if (from_n > sizeof(stack_lo) - PREFIX_LEN - 8 &&
        !(lo = malloc(PREFIX_LEN + 8 + from_n)))
        return churn_err_set(t->err, CHURN_ENOMEM, "out of memory");
    lo[0] = hi[0] = (uint8_t)tag;
    put_u32be(lo + 1, part);
    put_u32be(hi + 1, part);
    /* From the partition's start, or from from_ms (and the rest of a key
     * at from_ms): the deleted entries before it (a queue's tombstones)
     * are then not stepped over. */
    size_t lo_n = PREFIX_LEN;
    if (from_ms != INT64_MIN) {
        put_u64be(lo + PREFIX_LEN, (uint64_t)from_ms ^ DUE_FLIP);
        lo_n += 8;
        if (from_n) memcpy(lo + lo_n, from_rest, from_n);
        lo_n += from_n;
    }
    put_u64be(hi + PREFIX_LEN, (uint64_t)upto_ms ^ DUE_FLIP);
    /* Every key at upto_ms has hi as a prefix: bound just above them. */
    size_t hi_n = sizeof(hi);
    int rc = 0;
    /* With upto_ms = INT64_MAX the bound is the next partition's prefix;
     * prefix_same_as_start keeps the scan inside this one either way. */
    if (!prefix_successor(hi, &hi_n))
        rc = scan_range(s, lo, lo_n, hi, hi_n, 1, timed_each, t, t->err);
    if (lo != stack_lo) free(lo);
    return rc > 0 ? 0 : rc;
}

int store_scan_timers(store_t *s, uint32_t part, int64_t upto_ms,
                      size_t limit, store_timer_fn fn, void *arg,
                      churn_err_t *err) {
    return store_scan_timers_from(s, part, INT64_MIN, upto_ms, limit, fn,
                                  arg, err);
}

int store_scan_timers_from(store_t *s, uint32_t part, int64_t from_ms,
                           int64_t upto_ms, size_t limit, store_timer_fn fn,
                           void *arg, churn_err_t *err) {
    timed_scan_t t = {s, "timer", fn, NULL, arg, limit, 0, err};
    return scan_timed(s, &t, 'T', part, from_ms, NULL, 0, upto_ms);
}

int store_scan_timers_after(store_t *s, uint32_t part, int64_t from_ms,
                            const char *from_client, size_t from_len,
                            int64_t upto_ms, size_t limit, store_timer_fn fn,
                            void *arg, churn_err_t *err) {
    timed_scan_t t = {s, "timer", fn, NULL, arg, limit, 0, err};
    return scan_timed(s, &t, 'T', part, from_ms,
                      from_ms == INT64_MIN ? NULL : from_client,
                      from_ms == INT64_MIN ? 0 : from_len, upto_ms);
}

int store_scan_held(store_t *s, uint32_t part, int64_t upto_ms, size_t limit,
                    store_held_fn fn, void *arg, churn_err_t *err) {
    return store_scan_held_from(s, part, INT64_MIN, upto_ms, limit, fn, arg, err);
}

int store_scan_held_from(store_t *s, uint32_t part, int64_t from_ms,
                         int64_t upto_ms, size_t limit, store_held_fn fn,
                         void *arg, churn_err_t *err) {
    timed_scan_t t = {s, "held event", NULL, fn, arg, limit, 0, err};
    return scan_timed(s, &t, 'B', part, from_ms, NULL, 0, upto_ms);
}

typedef struct client_scan {
    store_t *s;
    store_client_fn fn;
    void *arg;
    churn_err_t *err;
} client_scan_t;

static int client_each(void *arg, const uint8_t *k, size_t kn, const char *v,
                       size_t vn) {
    client_scan_t *c = arg;
    if (kn < PREFIX_LEN)
        return churn_err_set(c->err, CHURN_ECORRUPT,
                             "state directory %s: a client key of %zu bytes "
                             "is too short", c->s->dir, kn);
    return c->fn(c->arg, get_u32be(k + 1), (const char *)k + PREFIX_LEN,
                 kn - PREFIX_LEN, v, vn);
}

int store_scan_clients(store_t *s, uint32_t part, store_client_fn fn,
                       void *arg, churn_err_t *err) {
    client_scan_t c = {s, fn, arg, err};
    int rc;
    if (part == UINT32_MAX) {
        const uint8_t lo[1] = {'C'}, hi[1] = {'C' + 1};
        rc = scan_range(s, lo, 1, hi, 1, 0, client_each, &c, err);
    } else {
        uint8_t lo[PREFIX_LEN], hi[PREFIX_LEN];
        lo[0] = 'C';
        put_u32be(lo + 1, part);
        memcpy(hi, lo, sizeof(hi));
        size_t hi_n = sizeof(hi);
        if (prefix_successor(hi, &hi_n)) return 0;
        rc = scan_range(s, lo, sizeof(lo), hi, hi_n, 1, client_each, &c, err);
    }
    return rc > 0 ? 0 : rc;
}

/* The partition of the first client key at or after the seek key. */
static int first_part_each(void *arg, const uint8_t *k, size_t kn, const char *v,
                           size_t vn) {
    (void)v;
    (void)vn;
    int64_t *part = arg;
    *part = kn >= PREFIX_LEN ? (int64_t)get_u32be(k + 1) : -1;
    return 1;
}

/* One seek per partition that holds clients, and one point read in it:
 * the number of partitions, not of clients, bounds the cost. */
int store_find_client(store_t *s, const char *client, size_t client_len,
                      uint32_t *part, buf_t *val, churn_err_t *err) {
    const uint8_t hi[1] = {'C' + 1};
    uint32_t from = 0;
    for (;;) {
        uint8_t lo[PREFIX_LEN];
        lo[0] = 'C';
        put_u32be(lo + 1, from);
        int64_t found = -1;
        int rc = scan_range(s, lo, sizeof(lo), hi, sizeof(hi), 0, first_part_each,
                            &found, err);
        if (rc < 0) return rc;
        if (found < 0) return CHURN_ENOTFOUND;
        rc = store_get_client(s, (uint32_t)found, client, client_len, val, err);
        if (rc != CHURN_ENOTFOUND) {
            if (rc == 0) *part = (uint32_t)found;
            return rc;
        }
        if (found == UINT32_MAX) return CHURN_ENOTFOUND;
        from = (uint32_t)found + 1;
    }
}

/* ---- partitions, followers, figures ---- */

int store_drop_partition(store_t *s, uint32_t part, churn_err_t *err) {
    /* One batch of range deletions: the partition goes as a unit. */
    static const char tags[] = {'C', 'T', 'O', 'B', 'S', 'F'};
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (size_t i = 0; i < sizeof(tags); i++) {
        uint8_t lo[PREFIX_LEN], hi[PREFIX_LEN];
        lo[0] = (uint8_t)tags[i];
        put_u32be(lo + 1, part);
        memcpy(hi, lo, sizeof(hi));
        size_t hi_n = sizeof(hi);
        if (prefix_successor(hi, &hi_n)) continue;
        rocksdb_writebatch_delete_range(wb, (const char *)lo, sizeof(lo),
                                        (const char *)hi, hi_n);
    }
    char what[64];
    snprintf(what, sizeof(what), "drop partition %u from", part);
    int rc = db_write(s, wb, what, err);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

/* RocksDB 7.8's TryCatchUpWithPrimary can go on serving a value replayed
 * from a WAL after the writer flushed that WAL and overwrote the value: the
 * secondary's memtable shadows the newer SST forever (rocksdb#15051, fixed
 * long after 7.8; our test_secondary_follows_writer hit it 3 runs in 4).
 * Opening a secondary is consistent, so catching up reopens it: open the
 * new instance beside the old one (each in its own generation directory),
 * then swap. If the reopen fails the old instance stays, so the store is
 * still usable, only not newer. Cost: one open, which reads the MANIFEST
 * and the live WALs and opens every SST file (max_open_files = -1). */
int store_catch_up(store_t *s, churn_err_t *err) {
    if (s->mode == STORE_READ_WRITE) return 0; /* always current */
    if (s->mode == STORE_READ_ONLY)
        return churn_err_set(err, CHURN_EINVAL,
                             "state directory %s is open read-only, a fixed "
                             "snapshot: reopen it, or open it as a "
                             "secondary, to see newer commits", s->dir);
    char *e = NULL;
    unsigned gen = s->sec_gen + 1;
    rocksdb_t *db = NULL;
    /* The writer may delete a file between our reading of the MANIFEST
     * and opening it: try again a few times. */
    for (int attempt = 0; attempt < 3 && !db; attempt++) {
        if (e) rocksdb_free(e);
        e = NULL;
        db = open_secondary(s, gen, &e);
    }
    if (!db)
        return rocks_err(err, CHURN_EIO, &e, "catch up with the writer of",
                         s->dir);
    rocksdb_t *old = s->db;
    s->db = db;
    int rc = check_format(s, err);
    if (rc) { /* a newer churnd took the directory over: keep what we had */
        rocksdb_close(db);
        s->db = old;
        char path[PATH_MAX];
        secondary_path(s, gen, path, sizeof(path));
        remove_tree(path);
        return rc;
    }
    rocksdb_close(old);
    char path[PATH_MAX];
    secondary_path(s, s->sec_gen, path, sizeof(path));
    remove_tree(path);
    s->sec_gen = gen;
    return 0;
}

void store_get_stats(store_t *s, store_stats_t *st) {
    memset(st, 0, sizeof(*st));
    if (!s || !s->db) return;
    static const struct {
        const char *name;
        size_t off;
    } props[] = {
        {"rocksdb.estimate-num-keys", offsetof(store_stats_t, estimate_keys)},
        {"rocksdb.cur-size-all-mem-tables", offsetof(store_stats_t, memtable_bytes)},
        {"rocksdb.live-sst-files-size", offsetof(store_stats_t, live_sst_bytes)},
        {"rocksdb.total-sst-files-size", offsetof(store_stats_t, total_sst_bytes)},
        {"rocksdb.actual-delayed-write-rate",
         offsetof(store_stats_t, delayed_write_rate)},
        {"rocksdb.is-write-stopped", offsetof(store_stats_t, write_stopped)},
        {"rocksdb.estimate-pending-compaction-bytes",
         offsetof(store_stats_t, pending_compaction_bytes)},
        {"rocksdb.background-errors", offsetof(store_stats_t, background_errors)},
    };
    for (size_t i = 0; i < CHURN_ARRAY_LEN(props); i++) {
        uint64_t v = 0;
        if (rocksdb_property_int(s->db, props[i].name, &v) == 0)
            *(uint64_t *)((char *)st + props[i].off) = v;
    }
    if (s->block_cache)
        st->block_cache_bytes = rocksdb_cache_get_usage(s->block_cache);
}
