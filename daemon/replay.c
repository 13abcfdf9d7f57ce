/*
 * replay.c - `churnd replay`: evaluate a rules directory over a file of
 * events (JSON lines, or stdin) without Kafka, and print the alerts as the
 * daemon would publish them; plus the event-time driver that `churnd test`
 * shares (see cli.h).
 *
 * The daemon's processor does the work, so the alerts are the daemon's for
 * the same events. Time is event time only, never the wall clock: the
 * watermark is the largest event time seen minus --lateness, timers fire at
 * chunk boundaries (every --chunk lines and at the end), and --until pushes
 * the watermark to a given time at the end so that what is due by then
 * fires. The engine brings a client's own deadlines up to each event's
 * time before applying it, which is why the output does not depend on the
 * chunk size (only the order of lines between two chunk boundaries can).
 *
 * Bad lines never stop a replay: they are counted and listed on stderr with
 * their line numbers and the reason the daemon would give its dead letter.
 * Only a bad rules directory, an unreadable file (exit 1) or a state error
 * (exit 2) do.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "churnd/cli.h"
#include "churnd/config.h"
#include "churnd/timeutil.h"

/* ---- the driver ----------------------------------------------------------- */

/* `every` ticks looked ahead after a wake-up (engine_opts.lookahead_ticks):
 * a daily rule then wakes a quiet client at the first tick that changes
 * something, or yearly, for a few evaluations of its `when` per wake-up
 * (at most 32): the look-ahead steps over the ticks before which the
 * answer is known not to change (expr_eval_bool_until, engine.c), and
 * keeps what it learnt until something the rule reads changes. With 32
 * ticks, most of those evaluations only pushed a client's horizon on by
 * the days since its last event. callgrind, 200,000 events of 20,000
 * clients: 6.43G instructions with 32 ticks, 5.57G with 366; the same
 * alerts. */
#define REPLAY_LOOKAHEAD_TICKS 366

static int note_client(void *arg, uint32_t part, const char *client,
                       size_t client_len, const void *val, size_t val_len) {
    (void)part, (void)client, (void)client_len, (void)val, (void)val_len;
    *(int *)arg = 0;
    return 1;
}

int replay_init(replay_t *r, store_t *store, const ruleset_t *rs,
                size_t cache_clients, const engine_opts_t *opts,
                int64_t lateness_ms) {
    memset(r, 0, sizeof(*r));
    engine_out_init(&r->out);
    r->lateness_ms = lateness_ms < 0 ? 0 : lateness_ms;
    r->max_ts_ms = REPLAY_NONE;
    r->watermark_ms = REPLAY_NONE;
    r->released_ms = REPLAY_NONE;
    r->proc = processor_new(store, cache_clients ? cache_clients : 1, opts);
    if (!r->proc) return CHURN_ENOMEM;
    processor_set_rules(r->proc, rs);
    return 0;
}

void replay_close(replay_t *r) {
    processor_free(r->proc);
    r->proc = NULL;
    engine_out_free(&r->out);
    for (size_t i = 0; i < r->cap_held; i++) {
        if (i < r->n_held) event_clear(r->held[i].ev);
        free(r->held[i].ev);
    }
    free(r->held);
    r->held = NULL;
    r->n_held = r->cap_held = 0;
}

/* ---- the held events: a binary min-heap on (ts, order, seq) ---- */

static int held_less(const replay_held_t *a, const replay_held_t *b) {
    if (a->ts_ms != b->ts_ms) return a->ts_ms < b->ts_ms;
    if (a->order != b->order) return a->order < b->order;
    return a->seq < b->seq;
}

static void held_swap(replay_held_t *a, replay_held_t *b) {
    replay_held_t t = *a;
    *a = *b;
    *b = t;
}

static int held_push(replay_t *r, event_t *ev, uint64_t order) {
    if (r->n_held == r->cap_held) {
        size_t cap = r->cap_held ? r->cap_held * 2 : 256;
        replay_held_t *v = realloc(r->held, cap * sizeof(*v));
        if (!v) return CHURN_ENOMEM;
        for (size_t k = r->cap_held; k < cap; k++) v[k].ev = NULL;
        r->held = v;
        r->cap_held = cap;
    }
    /* The slots past the heap keep the boxes of popped events. */
    event_t *box = r->held[r->n_held].ev;
    if (!box && !(box = malloc(sizeof(*box)))) return CHURN_ENOMEM;
    size_t i = r->n_held++;
    replay_held_t *h = &r->held[i];
    h->ts_ms = ev->ts_ms;
    h->order = order;
    h->seq = r->seq++;
    h->ev = box;
    event_move(box, ev);
    while (i > 0 && held_less(&r->held[i], &r->held[(i - 1) / 2])) {
        held_swap(&r->held[i], &r->held[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    return 0;
}

/* Move the earliest held event out to ev. */
static void held_pop(replay_t *r, event_t *ev) {
    event_move(ev, r->held[0].ev);
    r->n_held--;
    /* The last entry takes the root, the emptied box its slot. */
    held_swap(&r->held[0], &r->held[r->n_held]);
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < r->n_held && held_less(&r->held[l], &r->held[m])) m = l;
        if (l + 1 < r->n_held && held_less(&r->held[l + 1], &r->held[m])) m = l + 1;
        if (m == i) break;
        held_swap(&r->held[i], &r->held[m]);
        i = m;
    }
}

static int apply(replay_t *r, const event_t *ev, churn_err_t *err) {
    int rc = processor_event(r->proc, 0, ev, &r->out, err);
    if (rc == ENGINE_DUPLICATE) r->counts.duplicate++;
    else if (rc == ENGINE_IGNORED) r->counts.ignored++;
    else if (rc == ENGINE_APPLIED) r->counts.applied++;
    return rc;
}

int replay_event_raw(replay_t *r, event_t *ev, const char *raw, size_t len,
                     churn_err_t *err) {
    if (ev->ts_ms > r->max_ts_ms) r->max_ts_ms = ev->ts_ms;
    if (ev->ts_ms < r->released_ms) { /* at the edge is not late */
        r->counts.late++;
        return apply(r, ev, err);
    }
    uint64_t order;
    if (ev->id || raw) {
        order = processor_event_order(ev, raw, len);
    } else {
        char *text = cJSON_PrintUnformatted(ev->root);
        if (!text) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        order = processor_event_order(ev, text, strlen(text));
        cJSON_free(text);
    }
    if (held_push(r, ev, order) != 0)
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    r->counts.held++;
    return REPLAY_HELD;
}

int replay_event(replay_t *r, event_t *ev, churn_err_t *err) {
    return replay_event_raw(r, ev, NULL, 0, err);
}

/* Events taken off the heap at once, their states prefetched together. */
#define RELEASE_GROUP 8

/* Apply the held events up to upto_ms, in order. */
static int release_upto(replay_t *r, int64_t upto_ms, churn_err_t *err) {
    while (r->n_held > 0 && r->held[0].ts_ms <= upto_ms) {
        event_t ev[RELEASE_GROUP];
        const char *client[RELEASE_GROUP];
        size_t len[RELEASE_GROUP], n = 0;
        while (n < RELEASE_GROUP && r->n_held > 0 && r->held[0].ts_ms <= upto_ms) {
            held_pop(r, &ev[n]);
            client[n] = ev[n].client_id;
            len[n] = ev[n].client_len;
            n++;
        }
        processor_prefetch(r->proc, 0, client, len, n);
        int rc = 0;
        for (size_t i = 0; i < n; i++) {
            if (rc >= 0) rc = apply(r, &ev[i], err);
            event_clear(&ev[i]);
        }
        if (rc < 0) return rc;
    }
    if (upto_ms > r->released_ms) r->released_ms = upto_ms;
    return 0;
}

int replay_settle(replay_t *r, int64_t floor_ms, churn_err_t *err) {
    int64_t w = REPLAY_NONE;
    if (r->max_ts_ms != REPLAY_NONE)
        /* Saturating: a huge lateness must not wrap around. */
        w = r->max_ts_ms < INT64_MIN + r->lateness_ms
                ? REPLAY_NONE : r->max_ts_ms - r->lateness_ms;
    if (floor_ms > w) w = floor_ms;
    int rc = 0;
    /* Held events first: every client then meets its events and its
     * deadlines in time order. */
    if (w != REPLAY_NONE) rc = release_upto(r, w, err);
    if (!rc) rc = processor_commit(r->proc, NULL, 0, err);
    if (rc) return rc;
    if (w == REPLAY_NONE || w < r->watermark_ms) return 0; /* never backwards */
    r->watermark_ms = w;
    /* The timer index is read from committed state, so commit between
     * rounds; a round returns 1 while a woken client has a later deadline
     * that is also due. */
    for (;;) {
        size_t n_fired = 0;
        int more = processor_fire_timers(r->proc, 0, w, 0, &r->out, &n_fired, err);
        if (more < 0) return more;
        rc = processor_commit(r->proc, NULL, 0, err);
        if (rc) return rc;
        if (more == 0) return 0;
    }
}

int replay_finish(replay_t *r, int64_t floor_ms, churn_err_t *err) {
    int rc = replay_settle(r, floor_ms, err);
    /* What is left is later than the watermark: apply it in order; the
     * engine brings each client's own deadlines up to its events. */
    if (!rc) rc = release_upto(r, INT64_MAX, err);
    if (!rc) rc = processor_commit(r->proc, NULL, 0, err);
    return rc;
}

int replay_mkdtemp(const char *prefix, char *path, size_t n, churn_err_t *err) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    int len = snprintf(path, n, "%s/%s-XXXXXX", base, prefix);
    if (len < 0 || (size_t)len >= n)
        return churn_err_set(err, CHURN_EINVAL, "temporary directory name too long");
    if (!mkdtemp(path))
        return churn_err_set(err, CHURN_EIO, "cannot create a temporary directory in %s: %s",
                             base, strerror(errno));
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path); /* best effort: what cannot be removed stays */
    return 0;
}

void replay_rmtree(const char *path) {
    if (path && *path) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int replay_parse_time(const char *s, int64_t *ts_ms) {
    size_t n = strlen(s);
    size_t i = (n > 0 && s[0] == '-') ? 1 : 0;
    int digits = n > i;
    for (size_t j = i; j < n; j++)
        if (s[j] < '0' || s[j] > '9') digits = 0;
    if (digits) {
        errno = 0;
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (errno || *end || v < TIME_MIN_MS || v > TIME_MAX_MS) return CHURN_EINVAL;
        *ts_ms = v;
        return 0;
    }
    return time_parse_rfc3339(s, n, ts_ms);
}

/* ---- churnd replay -------------------------------------------------------- */

#define REPLAY_CHUNK_DEFAULT 1000
/* Replay keeps its working set decoded and writes a state back only when
 * it is evicted (write-back mode), so a cache smaller than the stream's
 * active clients costs a write and a read per eviction: on the benchmark's
 * 100,000-client stream 12.5-13.9 s with 100,000 states against 30.5-35.5 s
 * with 20,000 (peak RSS 341 vs 192 MiB). A batch run may spend that
 * memory; the daemon's default (state.cache_clients) is kept lower. */
#define REPLAY_CACHE_DEFAULT 100000
#define REPLAY_LIST_INVALID 20

enum {
    EXIT_REPLAY_OK = 0,
    EXIT_REPLAY_INPUT = 1,   /* usage, rules, config, unreadable input, output */
    EXIT_REPLAY_STATE = 2,   /* the state directory could not be opened or written */
    EXIT_REPLAY_SIGNAL = 130 /* interrupted (as a shell reports SIGINT) */
};

typedef struct replay_stats {
    uint64_t n_read, n_invalid, n_alerts;
} replay_stats_t;

static void replay_usage(FILE *f) {
    fprintf(f,
            "usage: churnd replay -r RULES_DIR [--until TS] [--state DIR]\n"
            "                     [--lateness D] [--chunk N] [--cache-clients N]\n"
            "                     [-c FILE] EVENTS.jsonl|-\n"
            "\n"
            "Evaluates the rules over one JSON event per line (- for stdin) in event\n"
            "time, without Kafka; prints each alert as a JSON line on stdout and a\n"
            "summary (counts, invalid lines with their numbers) on stderr.\n"
            "\n"
            "  -r, --rules DIR    the rules directory (required)\n"
            "  --until TS         at the end, advance event time to TS (RFC 3339 or\n"
            "                     epoch ms) so that timers due by then fire\n"
            "  --state DIR        keep the state in DIR (reused by the next run);\n"
            "                     default: a temporary directory, removed at exit\n"
            "  --lateness D       the watermark trails the largest event time by D\n"
            "                     (default 0s, or time.allowed_lateness with -c)\n"
            "  --chunk N          events per commit and timer round (default 1000);\n"
            "                     the alerts do not depend on it\n"
            "  --cache-clients N  client states kept in memory, written to the state\n"
            "                     only when evicted and at the end (default 100000;\n"
            "                     the daemon's state.cache_clients does not apply);\n"
            "                     the alerts do not depend on it\n"
            "  -c, --config FILE  the daemon's config: envelope paths, type map,\n"
            "                     dedup window, lateness\n"
            "\n"
            "exit: 0 done (invalid lines included), 1 bad usage, rules, config or\n"
            "input/output file, 2 state directory error, 130 interrupted\n");
}

/* Why the replay stopped before the end of its input. */
typedef enum stop {
    STOP_NONE = 0,
    STOP_STATE,  /* a store error, in err: exit 2 */
    STOP_WRITE,  /* stdout is gone (a closed pipe, a full disk) */
    STOP_NOMEM,
    STOP_SIGNAL, /* SIGINT/SIGTERM: stop cleanly so the temporary state goes */
} stop_t;

/* Set by SIGINT/SIGTERM; the loop checks it between lines. The one global
 * of this file: a signal handler has nowhere else to write. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read of stdin returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A closed stdout (`| head`) becomes a write error, not a silent death
     * that would leave the temporary state directory behind. */
    signal(SIGPIPE, SIG_IGN);
}

/* Print and forget the alerts the driver collected. */
static stop_t print_alerts(replay_t *r, buf_t *b, replay_stats_t *st) {
    for (size_t i = 0; i < r->out.n_alerts; i++) {
        buf_reset(b);
        if (alert_format_json(&r->out.alerts[i], -1, b) != 0 || buf_putc(b, '\n') != 0)
            return STOP_NOMEM;
        if (fwrite(b->data, 1, b->len, stdout) != b->len) return STOP_WRITE;
        st->n_alerts++;
    }
    engine_out_reset(&r->out);
    return ferror(stdout) ? STOP_WRITE : STOP_NONE;
}

static void print_errs(const churn_errs_t *errs) {
    char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", churn_err_str(&errs->v[i], line, sizeof(line)));
}

typedef struct replay_args {
    const char *rules_dir;
    const char *state_dir;
    const char *config;
    const char *input;
    int64_t until_ms;        /* REPLAY_NONE when not given */
    int64_t lateness_ms;     /* -1 when not given */
    size_t chunk;
    size_t cache_clients;
} replay_args_t;

static int parse_args(int argc, char **argv, replay_args_t *a) {
    static const struct option opts[] = {
        {"rules", required_argument, NULL, 'r'},
        {"until", required_argument, NULL, 'u'},
        {"state", required_argument, NULL, 's'},
        {"lateness", required_argument, NULL, 'l'},
        {"chunk", required_argument, NULL, 'n'},
        {"cache-clients", required_argument, NULL, 'k'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (replay_args_t){.until_ms = REPLAY_NONE, .lateness_ms = -1,
                         .chunk = REPLAY_CHUNK_DEFAULT,
                         .cache_clients = REPLAY_CACHE_DEFAULT};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "r:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': a->rules_dir = optarg; break;
        case 's': a->state_dir = optarg; break;
        case 'c': a->config = optarg; break;
        case 'u':
            if (replay_parse_time(optarg, &a->until_ms) != 0) {
                fprintf(stderr, "churnd replay: --until %s: not RFC 3339 or epoch ms\n",
                        optarg);
                return -1;
            }
            break;
        case 'l':
            if (duration_parse(optarg, strlen(optarg), &a->lateness_ms) != 0) {
                fprintf(stderr, "churnd replay: --lateness %s: not a duration "
                                "such as 0s, 5m or 1h\n", optarg);
                return -1;
            }
            break;
        case 'n':
        case 'k': {
            const char *name = c == 'n' ? "--chunk" : "--cache-clients";
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || !*optarg || *end || v == 0 || v > SIZE_MAX / 2 ||
                optarg[0] == '-') {
                fprintf(stderr, "churnd replay: %s %s: not a positive integer\n",
                        name, optarg);
                return -1;
            }
            if (c == 'n') a->chunk = (size_t)v;
            else a->cache_clients = (size_t)v;
            break;
        }
        case 'h': replay_usage(stdout); return 1;
        default: replay_usage(stderr); return -1;
        }
    }
    if (!a->rules_dir) {
        fprintf(stderr, "churnd replay: -r RULES_DIR is required\n");
        replay_usage(stderr);
        return -1;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "churnd replay: expected one events file (or - for stdin)\n");
        replay_usage(stderr);
        return -1;
    }
    a->input = argv[optind];
    return 0;
}

/* Is the line only blanks? Blank lines (a trailing one, say) are not events. */
static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

typedef struct bad_line {
    uint64_t line;
    event_reason_t why;
    char detail[160];
} bad_line_t;

static void print_summary(const replay_stats_t *st, const replay_t *r,
                          const bad_line_t *bad, size_t n_bad) {
    char wm[TIME_RFC3339_MAX] = "none";
    if (r->watermark_ms != REPLAY_NONE)
        time_format_rfc3339(r->watermark_ms, wm, sizeof(wm));
    const replay_counts_t *c = &r->counts;
    fprintf(stderr,
            "churnd replay: %" PRIu64 " events read: %" PRIu64 " applied, %" PRIu64
            " duplicates, %" PRIu64 " ignored, %" PRIu64 " invalid; %" PRIu64
            " alerts; watermark %s\n",
            st->n_read, c->applied, c->duplicate, c->ignored,
            st->n_invalid, st->n_alerts, wm);
    if (r->lateness_ms > 0 || c->late > 0)
        fprintf(stderr,
                "  lateness %" PRId64 " ms: %" PRIu64 " held and applied in "
                "event-time order, %" PRIu64 " late (behind the watermark, "
                "applied on arrival)\n", r->lateness_ms, c->held, c->late);
    for (size_t i = 0; i < n_bad; i++)
        fprintf(stderr, "  line %" PRIu64 ": %s: %s\n", bad[i].line,
                event_reason_name(bad[i].why), bad[i].detail);
    if (st->n_invalid > n_bad)
        fprintf(stderr, "  ... and %" PRIu64 " more invalid lines\n",
                st->n_invalid - n_bad);
}

int cmd_replay(int argc, char **argv) {
    replay_args_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc > 0 ? EXIT_REPLAY_OK : EXIT_REPLAY_INPUT;

    char line_err[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
    churn_err_t err = {0};
    /* The daemon's defaults (dedup window, envelope paths, cache size), or
     * its config file's values with -c, so replay sees events as it does. */
    config_t cfg;
    if (config_init(&cfg, &err) != 0 ||
        (a.config && config_load(&cfg, a.config, NULL, &err) != 0)) {
        fprintf(stderr, "churnd replay: config: %s\n",
                churn_err_str(&err, line_err, sizeof(line_err)));
        config_free(&cfg);
        return EXIT_REPLAY_INPUT;
    }
    int64_t lateness = a.lateness_ms >= 0 ? a.lateness_ms
                       : a.config ? cfg.allowed_lateness_ms : 0;
    engine_opts_t eopts = {.dedup_window_ms = cfg.dedup_window_ms,
                           .dedup_max_ids = (unsigned)cfg.dedup_max_ids,
                           .ledger = cfg.state_ledger};

    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    if (ruleset_load_dir(a.rules_dir, &rs, &errs) != 0) {
        print_errs(&errs);
        fprintf(stderr, "churnd replay: %s: %zu error%s in the rules\n", a.rules_dir,
                errs.n, errs.n == 1 ? "" : "s");
        churn_errs_free(&errs);
        config_free(&cfg);
        return EXIT_REPLAY_INPUT;
    }
    churn_errs_free(&errs);

    catch_signals();
    FILE *in = stdin;
    if (strcmp(a.input, "-") != 0 && !(in = fopen(a.input, "r"))) {
        fprintf(stderr, "churnd replay: %s: %s\n", a.input, strerror(errno));
        ruleset_free(rs);
        config_free(&cfg);
        return EXIT_REPLAY_INPUT;
    }

    int status = EXIT_REPLAY_OK;
    char tmp[512] = "";
    const char *dir = a.state_dir;
    store_t *store = NULL;
    replay_t r;
    int have_r = 0;
    if (!dir) {
        if (replay_mkdtemp("churnd-replay", tmp, sizeof(tmp), &err) != 0) goto state_error;
        dir = tmp;
    }
    store_opts_t so = {.dir = dir, .mode = STORE_READ_WRITE};
    if (store_open(&so, &store, &err) != 0) goto state_error;
    /* On a fresh state the processor sees every event and every timer
     * round from the start, under one rule set: what the engine's lookahead
     * needs to be exact (engine.h). Not on a state carried over from
     * another run, whose clients were not woken this way. */
    int fresh = 1;
    if (store_scan_clients(store, UINT32_MAX, note_client, &fresh, &err) < 0)
        goto state_error;
    if (fresh) eopts.lookahead_ticks = REPLAY_LOOKAHEAD_TICKS;
    if (replay_init(&r, store, rs, a.cache_clients, &eopts, lateness) != 0) {
        churn_err_set(&err, CHURN_ENOMEM, "out of memory");
        goto state_error;
    }
    have_r = 1;
    /* Keep the counts the daemon reads for its metrics (client states,
     * expectations) in step with what this run changes: a directory that
     * goes back to `churnd run` must not carry stale ones. */
    if (processor_count_partition(r.proc, 0, &err) < 0) goto state_error;
    /* One process, no reader beside it and nothing to resume from between
     * two commits (held events are in memory too): states need to reach
     * the store only when they leave the cache and at the end, not with
     * every chunk (processor.h, write-back mode). */
    processor_set_write_back(r.proc);

    replay_stats_t st = {0};
    bad_line_t bad[REPLAY_LIST_INVALID];
    size_t n_bad = 0, in_chunk = 0;
    uint64_t lineno = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    buf_t b;
    buf_init(&b);
    stop_t stop = STOP_NONE;
    while (stop == STOP_NONE && !interrupted &&
           (got = getline(&line, &line_cap, in)) >= 0) {
        size_t n = (size_t)got;
        lineno++;
        if (n > 0 && line[n - 1] == '\n') n--;
        if (n > 0 && line[n - 1] == '\r') n--;
        if (blank(line, n)) continue;
        st.n_read++;
        event_t ev;
        char detail[160];
        event_reason_t why = event_parse(&cfg.event, line, n, &ev, detail, sizeof(detail));
        if (why != EVENT_OK) {
            if (n_bad < REPLAY_LIST_INVALID) {
                bad[n_bad] = (bad_line_t){.line = lineno, .why = why};
                snprintf(bad[n_bad].detail, sizeof(bad[n_bad].detail), "%s", detail);
                n_bad++;
            }
            st.n_invalid++;
            continue;
        }
        ev.topic = a.input;
        ev.partition = 0;
        ev.offset = (int64_t)lineno;
        rc = replay_event_raw(&r, &ev, line, n, &err);
        event_clear(&ev);
        if (rc < 0) {
            stop = STOP_STATE;
            break;
        }
        if (++in_chunk >= a.chunk) {
            in_chunk = 0;
            if (replay_settle(&r, REPLAY_NONE, &err) < 0) stop = STOP_STATE;
        }
        if (stop == STOP_NONE) stop = print_alerts(&r, &b, &st);
    }
    int read_failed = stop == STOP_NONE && !interrupted && ferror(in);
    free(line);
    if (interrupted) stop = STOP_SIGNAL;
    if (stop == STOP_NONE && replay_finish(&r, a.until_ms, &err) < 0) stop = STOP_STATE;
    if (stop == STOP_NONE) stop = print_alerts(&r, &b, &st);
    buf_free(&b);
    /* Write-back: the states still in memory go to --state DIR now, also
     * after an interruption or a closed stdout, so that the directory holds
     * every event applied so far, consistently. A temporary state is
     * removed anyway. */
    if (a.state_dir && stop != STOP_STATE &&
        (processor_commit(r.proc, NULL, 0, &err) < 0 ||
         processor_flush(r.proc, &err) < 0))
        stop = STOP_STATE;
    if (stop != STOP_WRITE && (fflush(stdout) != 0 || ferror(stdout))) stop = STOP_WRITE;
    print_summary(&st, &r, bad, n_bad);
    switch (stop) {
    case STOP_NONE:
        if (read_failed) {
            fprintf(stderr, "churnd replay: %s: read error after line %" PRIu64 "\n",
                    a.input, lineno);
            status = EXIT_REPLAY_INPUT;
        }
        break;
    case STOP_STATE: goto state_error;
    case STOP_WRITE:
        fprintf(stderr, "churnd replay: cannot write the alerts; stopped after line %"
                        PRIu64 "\n", lineno);
        status = EXIT_REPLAY_INPUT;
        break;
    case STOP_NOMEM:
        fprintf(stderr, "churnd replay: out of memory\n");
        status = EXIT_REPLAY_INPUT;
        break;
    case STOP_SIGNAL:
        fprintf(stderr, "churnd replay: interrupted after line %" PRIu64 "\n", lineno);
        status = EXIT_REPLAY_SIGNAL;
        break;
    }
    goto done;

state_error:
    fprintf(stderr, "churnd replay: state: %s\n", churn_err_str(&err, line_err, sizeof(line_err)));
    status = EXIT_REPLAY_STATE;
done:
    if (have_r) replay_close(&r);
    if (store) store_close(store);
    if (tmp[0]) replay_rmtree(tmp);
    if (in != stdin) fclose(in);
    ruleset_free(rs);
    config_free(&cfg);
    return status;
}
