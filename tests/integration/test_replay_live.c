/*
 * test_replay_live.c - the contract between `churnd replay` and the live
 * daemon (SPEC sections 4 and 7): for the same stream of events, replay
 * prints the alerts the daemon publishes.
 *
 * Each case generates a stream (build/tests/gen, deterministic per seed,
 * or fixed files), produces it line by line, keyed by client id, to input
 * topics of several partitions on the mock cluster while churnd run (the
 * default rules/) consumes it, and runs churnd replay over the same file,
 * in the order it was produced, with the daemon's config (-c: the same
 * allowed lateness) and a fresh state directory. The idle timeout is
 * longer than any test, so only event time moves the daemon's watermark.
 *
 * The daemon fires timers only as its watermark passes them: the smallest
 * over the input partitions of the largest event time seen on each, minus
 * the allowed lateness. The test reads the input topics back and computes
 * that instant, T_cut, exactly; replay runs with --until T_cut, and the
 * alerts at or before T_cut are compared on both sides as multisets of
 * their JSON without emitted_at (both may have later ones: replay's
 * watermark follows the largest event time overall).
 *
 * When is the daemon done? Its committed offsets reach the topics' ends
 * before the timers the last batch's watermark passed are fired (a timer
 * batch follows the event batch), so lag 0 is not enough, and the daemon
 * has no watermark to query. The test waits, under a deadline, until the
 * daemon's alerts equal replay's; then stops it with SIGTERM (a drain that
 * must exit 0), reads the topic again and compares once more, so an alert
 * published late, or twice, still fails. A real divergence shows as a
 * timeout followed by the alerts found on one side only.
 *
 * With a lateness of 0s the daemon applies events as they arrive, so the
 * 0s cases put every event on one topic: a client's events then reach it
 * in the file's order, as in replay. Events on two topics are applied in
 * event-time order only with a lateness above 0 (the reorder buffer),
 * which the two-topic case uses, on a shuffled stream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "churnd/event.h"
#include "churnd/timeutil.h"
#include "../lib/harness.h"

#define WAIT_MS 60000
#define SHOW_MAX 8 /* alerts listed per side on a mismatch */

static char rules_dir[1024];
static char gen_bin[1024];
static const char *churnd_bin;

/* One stream: gen's arguments, or fixed files when gen_events is 0. */
typedef struct stream_case {
    const char *name;
    unsigned seed;
    int clients, gen_events, days;
    const char *disorder;     /* gen --disorder, or NULL */
    const char *const *files; /* fixed stream: these files, in order */
    int partitions;
    int n_inputs;             /* 1: every event to crm; 2: helpdesk's to helpdesk */
    const char *lateness;     /* time.allowed_lateness, for both sides */
    size_t min_alerts;        /* compared alerts needed for a meaningful test */
    size_t min_rules;
    int pieces;               /* > 1: produce slowly, in this many pieces,
                                 each consumed before the next is sent */
    int kill_after;           /* 1..pieces-1: kill -9 and restart the daemon
                                 after that piece (0: never) */
    int replay_sorted;        /* replay the sorted stream (gen without
                                 --disorder), not the shuffled copy */
} stream_case_t;

typedef struct alert_set alert_set_t;

/* ---- alerts as compared: canonical JSON lines ------------------------------ */

struct alert_set {
    char **v; /* owned: cJSON_PrintUnformatted of the alert without emitted_at */
    size_t n, cap;
};

/* One test's resources, released by teardown even when an assertion
 * fails half-way (which also stops the daemon). */
typedef struct live_ctx {
    th_env_t env;
    int env_up;
    event_config_t ecfg;
    alert_set_t want, got;
} live_ctx_t;

static void set_free(alert_set_t *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static void set_push(alert_set_t *s, char *line) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        assert_non_null(s->v);
    }
    s->v[s->n++] = line;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add one alert if its "at" is at or before cut. 0, or -1 when it is not
 * an alert (not JSON, or no parseable "at"). */
static int set_add(alert_set_t *s, const char *json, size_t len, int64_t cut) {
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o) return -1;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "at");
    int64_t at_ms = 0;
    if (!cJSON_IsString(at) ||
        time_parse_rfc3339(at->valuestring, strlen(at->valuestring), &at_ms) != 0) {
        cJSON_Delete(o);
        return -1;
    }
    if (at_ms <= cut) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, "emitted_at");
        char *line = cJSON_PrintUnformatted(o);
        assert_non_null(line);
        set_push(s, line);
    }
    cJSON_Delete(o);
    return 0;
}

static void set_sort(alert_set_t *s) {
    if (s->n) qsort(s->v, s->n, sizeof(*s->v), cmp_str);
}

/* Drop repeated entries of a sorted set. After a kill -9 the daemon may
 * publish an alert again (at least once, same alert_id: SPEC section 6);
 * what must hold then is that nothing is missing and nothing differs. */
static size_t set_unique(alert_set_t *s) {
    size_t w = 0, dropped = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (w && !strcmp(s->v[w - 1], s->v[i])) {
            free(s->v[i]);
            dropped++;
            continue;
        }
        s->v[w++] = s->v[i];
    }
    s->n = w;
    return dropped;
}

/* Replay's stdout: one alert per line. */
static void set_from_file(alert_set_t *s, const char *path, int64_t cut) {
    char *text = th_read_file(path);
    assert_non_null(text);
    char *save = NULL, bad[256] = "";
    for (char *l = strtok_r(text, "\n", &save); l && !bad[0]; l = strtok_r(NULL, "\n", &save))
        if (set_add(s, l, strlen(l), cut) != 0) snprintf(bad, sizeof(bad), "%s", l);
    free(text);
    if (bad[0]) fail_msg("replay printed a line that is not an alert: %s", bad);
    set_sort(s);
}

/* The daemon's alerts topic, read to its end as of now; also copied to
 * copy_path as published (per partition, in order) for a post-mortem. */
static int set_from_topic(alert_set_t *s, th_env_t *e, int64_t cut,
                          const char *copy_path) {
    th_msgs_t raw = {0};
    if (th_consume_to_end(e->broker.bootstrap, e->alerts, WAIT_MS, &raw) != 0) {
        th_msgs_free(&raw);
        return -1;
    }
    FILE *copy = fopen(copy_path, "w");
    char bad[256] = "";
    for (size_t i = 0; i < raw.n; i++) {
        if (copy) fprintf(copy, "%s\n", raw.v[i].value);
        if (!bad[0] && set_add(s, raw.v[i].value, raw.v[i].value_len, cut) != 0)
            snprintf(bad, sizeof(bad), "%s", raw.v[i].value);
    }
    int copied = copy && fclose(copy) == 0;
    th_msgs_free(&raw);
    if (bad[0]) fail_msg("the daemon published something that is not an alert: %s", bad);
    if (!copied) fail_msg("cannot write %s", copy_path);
    set_sort(s);
    return 0;
}

static int sets_equal(const alert_set_t *a, const alert_set_t *b) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i])) return 0;
    return 1;
}

/* Print the alerts found on one side only (a merge of the sorted sets, so
 * duplicates count) and how many there are. */
static void print_diff(const alert_set_t *live, const alert_set_t *replay) {
    size_t i = 0, j = 0, n_live = 0, n_replay = 0;
    fprintf(stderr, "daemon %zu alerts, replay %zu alerts (at <= T_cut)\n",
            live->n, replay->n);
    while (i < live->n || j < replay->n) {
        int c = i == live->n ? 1 : j == replay->n ? -1 : strcmp(live->v[i], replay->v[j]);
        if (c == 0) {
            i++;
            j++;
        } else if (c < 0) {
            if (n_live++ < SHOW_MAX)
                fprintf(stderr, "  only from the daemon: %s\n", live->v[i]);
            i++;
        } else {
            if (n_replay++ < SHOW_MAX)
                fprintf(stderr, "  only from replay:     %s\n", replay->v[j]);
            j++;
        }
    }
    fprintf(stderr, "%zu alerts only from the daemon, %zu only from replay\n",
            n_live, n_replay);
}

/* How many alerts of each rule: printed, and the number of rules. */
static size_t rule_histogram(const alert_set_t *s, const char *label) {
    char seen[64][64];
    size_t count[64], n = 0;
    for (size_t i = 0; i < s->n; i++) {
        cJSON *o = cJSON_Parse(s->v[i]);
        const cJSON *r = o ? cJSON_GetObjectItemCaseSensitive(o, "rule") : NULL;
        const char *name = cJSON_IsString(r) ? r->valuestring : "?";
        size_t k = 0;
        while (k < n && strcmp(seen[k], name)) k++;
        if (k == n && n < 64) {
            snprintf(seen[n], sizeof(seen[n]), "%s", name);
            count[n++] = 0;
        }
        if (k < n) count[k]++;
        cJSON_Delete(o);
    }
    fprintf(stderr, "%s: %zu alerts compared:", label, s->n);
    for (size_t k = 0; k < n; k++) fprintf(stderr, " %s=%zu", seen[k], count[k]);
    fprintf(stderr, "\n");
    return n;
}

/* ---- the stream ------------------------------------------------------------ */

static void write_stream(const stream_case_t *c, const char *dir, char *path,
                         size_t n, int sorted) {
    snprintf(path, n, "%s/%s.jsonl", dir, sorted ? "sorted" : "events");
    if (c->gen_events) {
        if (access(gen_bin, X_OK) != 0)
            fail_msg("%s is not built (make tools builds it; CHURND_TEST_GEN names "
                     "another)", gen_bin);
        char seed[32], clients[32], events[32], days[32], err[600];
        snprintf(seed, sizeof(seed), "%u", c->seed);
        snprintf(clients, sizeof(clients), "%d", c->clients);
        snprintf(events, sizeof(events), "%d", c->gen_events);
        snprintf(days, sizeof(days), "%d", c->days);
        snprintf(err, sizeof(err), "%s/gen.err", dir);
        char *argv[] = {gen_bin, "--seed", seed, "--clients", clients, "--events",
                        events, "--days", days,
                        c->disorder && !sorted ? "--disorder" : NULL,
                        (char *)c->disorder, NULL};
        int rc = th_run_io(argv, NULL, path, err, WAIT_MS);
        if (rc != 0) {
            char *msg = th_read_file(err);
            fail_msg("gen exited with %d: %s", rc, msg ? msg : "");
        }
        return;
    }
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    for (const char *const *f = c->files; *f; f++) {
        char *text = th_read_file(*f);
        assert_non_null(text);
        size_t len = strlen(text);
        assert_int_equal(fwrite(text, 1, len, out), len);
        if (len && text[len - 1] != '\n') fputc('\n', out);
        free(text);
    }
    assert_int_equal(fclose(out), 0);
}

/* Helpdesk's types, for the two-topic case. */
static int helpdesk_type(const char *type) {
    return !strncmp(type, "ticket.", 7) || !strncmp(type, "feedback.", 9) ||
           !strncmp(type, "survey.", 7);
}

/* Produce every line, in order, keyed by its client (no key when the line
 * is not an event: it becomes a dead letter, and an invalid line for
 * replay). Returns the number of lines sent. */
static size_t produce_lines(th_env_t *e, const event_config_t *ecfg,
                            const char *path, int n_inputs, size_t from,
                            size_t count) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0, n = 0, seen = 0;
    ssize_t len;
    while (n < count && (len = getline(&line, &cap, f)) > 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len) continue;
        if (seen++ < from) continue;
        event_t ev;
        memset(&ev, 0, sizeof(ev));
        char key[EVENT_CLIENT_MAX] = "";
        const char *topic = e->crm;
        if (event_parse(ecfg, line, (size_t)len, &ev, NULL, 0) == EVENT_OK) {
            snprintf(key, sizeof(key), "%s", ev.client_id);
            if (n_inputs == 2 && helpdesk_type(ev.type)) topic = e->helpdesk;
            event_clear(&ev);
        }
        assert_int_equal(th_produce(e->producer, topic, key[0] ? key : NULL, line,
                                    (size_t)len), 0);
        n++;
    }
    free(line);
    fclose(f);
    assert_int_equal(th_flush(e->producer, WAIT_MS), 0);
    return n;
}

static size_t produce_stream(th_env_t *e, const event_config_t *ecfg,
                             const char *path, int n_inputs) {
    return produce_lines(e, ecfg, path, n_inputs, 0, SIZE_MAX);
}

/* The slow way: in pieces, each consumed before the next goes out (so the
 * daemon's batches and watermark steps differ from a burst), with a kill
 * -9 and a restart after piece c->kill_after: what was held in the reorder
 * buffer must survive it. */
static size_t produce_slowly(th_env_t *e, const event_config_t *ecfg,
                             const char *path, const stream_case_t *c) {
    size_t total = 0;
    char *text = th_read_file(path);
    assert_non_null(text);
    for (char *p = text; *p; p++) total += *p == '\n';
    free(text);
    size_t sent = 0;
    for (int k = 0; k < c->pieces; k++) {
        size_t end = total * (size_t)(k + 1) / (size_t)c->pieces;
        sent += produce_lines(e, ecfg, path, c->n_inputs, sent, end - sent);
        if (th_env_wait_consumed(e, WAIT_MS) != 0) {
            th_env_dump_log(e);
            fail_msg("%s: piece %d was not consumed", c->name, k + 1);
        }
        if (k + 1 == c->kill_after) {
            assert_int_equal(th_proc_signal(&e->daemon, SIGKILL), 0);
            assert_int_equal(th_proc_wait(&e->daemon, 10000), 128 + SIGKILL);
            assert_int_equal(th_env_start_daemon(e), 0);
        }
    }
    return sent;
}

/* The daemon's final watermark, from what the input topics hold: the
 * smallest over their partitions of the largest event time on each, minus
 * the allowed lateness. Every partition must have an event, or the
 * watermark would never move. */
static int64_t input_cut(th_env_t *e, const event_config_t *ecfg,
                         const stream_case_t *c, int64_t lateness_ms) {
    int64_t cut = INT64_MAX;
    int empty = -1;
    const char *topics[2] = {e->crm, e->helpdesk};
    for (int t = 0; t < c->n_inputs; t++) {
        th_msgs_t raw = {0};
        assert_int_equal(th_consume_to_end(e->broker.bootstrap, topics[t], WAIT_MS, &raw), 0);
        int64_t *top = calloc((size_t)c->partitions, sizeof(*top));
        assert_non_null(top);
        for (int p = 0; p < c->partitions; p++) top[p] = INT64_MIN;
        for (size_t i = 0; i < raw.n; i++) {
            event_t ev;
            memset(&ev, 0, sizeof(ev));
            if (event_parse(ecfg, raw.v[i].value, raw.v[i].value_len, &ev, NULL, 0) !=
                EVENT_OK)
                continue;
            int32_t p = raw.v[i].partition;
            assert_true(p >= 0 && p < c->partitions);
            if (ev.ts_ms > top[p]) top[p] = ev.ts_ms;
            event_clear(&ev);
        }
        for (int p = 0; p < c->partitions; p++) {
            if (top[p] == INT64_MIN && empty < 0) empty = p;
            if (top[p] < cut) cut = top[p];
        }
        free(top);
        th_msgs_free(&raw);
        if (empty >= 0)
            fail_msg("%s: partition %d of %s has no event: its watermark would never "
                     "move (more clients, or fewer partitions)", c->name, empty, topics[t]);
    }
    return cut - lateness_ms;
}

/* Replay reads the daemon's own config file (-c): the same envelope,
 * dedup window and allowed lateness. */
static void run_replay(const stream_case_t *c, const th_env_t *e, const char *events,
                       const char *until, const char *out) {
    char state[600], err[600];
    snprintf(state, sizeof(state), "%s/replay-state", e->dir);
    snprintf(err, sizeof(err), "%s/replay.err", e->dir);
    char *argv[] = {(char *)churnd_bin, "replay", "-r", rules_dir, "-c", (char *)e->cfg,
                    "--state", state, "--until", (char *)until, (char *)events, NULL};
    int rc = th_run_io(argv, NULL, out, err, WAIT_MS);
    char *msg = th_read_file(err);
    if (rc != 0) fail_msg("%s: churnd replay exited with %d:\n%s", c->name, rc, msg ? msg : "");
    fprintf(stderr, "%s: %s", c->name, msg ? msg : "(no summary)\n");
    free(msg);
}

/* ---- the property ------------------------------------------------------------ */

static void check_case(live_ctx_t *x, const stream_case_t *c) {
    int64_t t0 = th_now_ms();
    th_env_t *e = &x->env;
    int64_t lateness_ms = 0;
    assert_int_equal(duration_parse(c->lateness, strlen(c->lateness), &lateness_ms), 0);
    /* Only event time moves the watermark: no test lasts the idle timeout. */
    char time_yaml[128];
    snprintf(time_yaml, sizeof(time_yaml),
             "time:\n  allowed_lateness: %s\n  idle_timeout: 24h\n", c->lateness);
    x->env_up = 1; /* teardown copes with a half-made env */
    assert_int_equal(th_env_setup_inputs(e, c->partitions, rules_dir, NULL, time_yaml,
                                         c->n_inputs), 0);
    char events[600], replay_out[600], live_out[600];
    snprintf(replay_out, sizeof(replay_out), "%s/replay.jsonl", e->dir);
    snprintf(live_out, sizeof(live_out), "%s/live.jsonl", e->dir);

    /* The daemon runs while the stream arrives, as it would live (and
     * joins its group meanwhile, which takes the mock cluster 3 s). */
    assert_int_equal(th_env_start_daemon(e), 0);
    write_stream(c, e->dir, events, sizeof(events), 0);
    size_t n_lines = c->pieces > 1 ? produce_slowly(e, &x->ecfg, events, c)
                                   : produce_stream(e, &x->ecfg, events, c->n_inputs);
    char sorted[600];
    if (c->replay_sorted) write_stream(c, e->dir, sorted, sizeof(sorted), 1);
    int64_t cut = input_cut(e, &x->ecfg, c, lateness_ms);
    char until[TIME_RFC3339_MAX];
    time_format_rfc3339(cut, until, sizeof(until));
    fprintf(stderr, "%s: %zu lines on %d partition(s) of %d topic(s), lateness %s; "
            "T_cut %s\n", c->name, n_lines, c->partitions, c->n_inputs, c->lateness, until);

    run_replay(c, e, c->replay_sorted ? sorted : events, until, replay_out);
    set_from_file(&x->want, replay_out, cut);
    size_t n_rules = rule_histogram(&x->want, c->name);

    /* Events past the watermark stay held (idle_timeout is 24h here), so
     * the daemon never settles: wait for the consumer lag alone. */
    if (th_env_wait_consumed(e, WAIT_MS) != 0) {
        th_env_dump_log(e);
        fail_msg("%s: churnd did not commit every event within %d ms", c->name, WAIT_MS);
    }
    /* Caught up; the timers its last watermark passed may still be on the
     * way: wait for them, under a deadline. */
    int64_t deadline = th_now_ms() + WAIT_MS / 2;
    for (;;) {
        set_free(&x->got);
        assert_int_equal(set_from_topic(&x->got, e, cut, live_out), 0);
        if (c->kill_after) set_unique(&x->got);
        if (sets_equal(&x->got, &x->want) || th_now_ms() > deadline) break;
        th_pause_ms(200);
    }
    /* A drain publishes nothing new below T_cut: read everything again. */
    int rc = th_env_stop_daemon(e, 30000);
    if (rc != 0) th_env_dump_log(e);
    assert_int_equal(rc, 0);
    set_free(&x->got);
    assert_int_equal(set_from_topic(&x->got, e, cut, live_out), 0);
    if (c->kill_after)
        fprintf(stderr, "%s: %zu alerts published again after the kill -9\n", c->name,
                set_unique(&x->got));
    if (!sets_equal(&x->got, &x->want)) {
        fprintf(stderr, "%s: the daemon and churnd replay disagree on the alerts at "
                        "or before T_cut %s\n", c->name, until);
        print_diff(&x->got, &x->want);
        fprintf(stderr, "CHURND_TEST_KEEP=1 keeps %s: events.jsonl (the stream), "
                        "replay.jsonl, live.jsonl (as published), churnd.log\n", e->dir);
        fail_msg("%s: replay and the live daemon published different alerts", c->name);
    }
    /* A property over nothing proves nothing. */
    if (x->want.n < c->min_alerts || n_rules < c->min_rules)
        fail_msg("%s: only %zu alerts of %zu rules at or before T_cut (want at least "
                 "%zu of %zu): the stream no longer exercises the rules",
                 c->name, x->want.n, n_rules, c->min_alerts, c->min_rules);
    fprintf(stderr, "%s: %zu alerts identical in %.1f s\n", c->name, x->want.n,
            (double)(th_now_ms() - t0) / 1000.0);
}

static int setup(void **state) {
    live_ctx_t *x = calloc(1, sizeof(*x));
    if (!x || event_config_init(&x->ecfg) != 0) {
        free(x);
        return -1;
    }
    *state = x;
    return 0;
}

static int teardown(void **state) {
    live_ctx_t *x = *state;
    if (x->env_up) th_env_teardown(&x->env); /* kills a daemon still running */
    set_free(&x->want);
    set_free(&x->got);
    event_config_free(&x->ecfg);
    free(x);
    return 0;
}

static const char *const demo_files[] = {"tests/data/demo/crm.jsonl",
                                         "tests/data/demo/helpdesk.jsonl", NULL};

/* The bundled demo: dead letters, a duplicate delivery, few alerts; crm
 * and helpdesk on their own topics. */
static void test_demo_stream(void **state) {
    const stream_case_t c = {.name = "demo", .files = demo_files, .partitions = 2,
                             .n_inputs = 2, .lateness = "0s", .min_alerts = 3,
                             .min_rules = 2};
    check_case(*state, &c);
}

/* gen's stories fire every default rule; its healthy clients (the other
 * 96%) are the noise the rules must stay quiet in. */
static void test_gen_seed1_four_partitions(void **state) {
    const stream_case_t c = {.name = "seed 1", .seed = 1, .clients = 300,
                             .gen_events = 3000, .days = 150, .partitions = 4,
                             .n_inputs = 1, .lateness = "0s", .min_alerts = 15,
                             .min_rules = 8};
    check_case(*state, &c);
}

/* Two topics without lateness: each client's crm and helpdesk events
 * still meet in event-time order, as in replay's single file (every event
 * waits for the watermark over both topics). */
static void test_gen_seed2_eight_partitions(void **state) {
    const stream_case_t c = {.name = "seed 2", .seed = 2, .clients = 400,
                             .gen_events = 4000, .days = 150, .partitions = 8,
                             .n_inputs = 2, .lateness = "0s", .min_alerts = 15,
                             .min_rules = 8};
    check_case(*state, &c);
}

/* crm and helpdesk events on their own topics, shuffled within 30m: with a
 * lateness of 1h both sides apply each client's events in event-time
 * order (the reorder buffer), whatever the interleaving of the topics. */
static void test_gen_seed3_two_topics_shuffled(void **state) {
    const stream_case_t c = {.name = "seed 3", .seed = 3, .clients = 300,
                             .gen_events = 3000, .days = 150, .disorder = "30m",
                             .partitions = 4, .n_inputs = 2, .lateness = "1h",
                             .min_alerts = 15,
                             .min_rules = 8};
    check_case(*state, &c);
}

/* The test of the reorder buffer: a slow copy of a stream,
 * shuffled within the lateness (gen --disorder 2h, lateness 3h), over two
 * topics, with a kill -9 half-way, gives the alerts of the sorted stream
 * replayed. */
static void test_slow_shuffled_copy_gives_the_sorted_alerts(void **state) {
    const stream_case_t c = {.name = "slow shuffled", .seed = 4, .clients = 300,
                             .gen_events = 3000, .days = 150, .disorder = "2h",
                             .partitions = 4, .n_inputs = 2, .lateness = "3h",
                             .min_alerts = 15, .min_rules = 8, .pieces = 6,
                             .kill_after = 3, .replay_sorted = 1};
    check_case(*state, &c);
}

/* The daemon looks ahead at daily ticks and sleeps through the quiet
 * ones: over six months of 3000 clients on 16 partitions (more clients
 * due at once than one timer round takes), it must publish what replay,
 * and the daemon without look-ahead, publish. */
static void test_gen_seed5_many_clients_sixteen_partitions(void **state) {
    const stream_case_t c = {.name = "seed 5", .seed = 5, .clients = 3000,
                             .gen_events = 15000, .days = 180, .disorder = "30m",
                             .partitions = 16, .n_inputs = 2, .lateness = "1h",
                             .min_alerts = 100, .min_rules = 10};
    check_case(*state, &c);
}

/* The same in pieces, with a kill -9 half-way: clients asleep past their
 * quiet ticks when the daemon dies find them done after the restart. */
static void test_slow_many_clients_killed_half_way(void **state) {
    const stream_case_t c = {.name = "slow seed 6", .seed = 6, .clients = 3000,
                             .gen_events = 15000, .days = 180, .disorder = "2h",
                             .partitions = 16, .n_inputs = 2, .lateness = "3h",
                             .min_alerts = 100, .min_rules = 10, .pieces = 4,
                             .kill_after = 2, .replay_sorted = 1};
    check_case(*state, &c);
}

int main(void) {
    if (!getcwd(rules_dir, sizeof(rules_dir) - 16)) return 1;
    strcat(rules_dir, "/rules");
    churnd_bin = getenv("CHURND_BIN");
    if (!churnd_bin) churnd_bin = "build/churnd";
    th_gen_path(gen_bin, sizeof(gen_bin));
    /* CHURND_TEST_FILTER=NAME runs the cases whose name matches (cmocka's
     * pattern), to look at one by hand. */
    if (getenv("CHURND_TEST_FILTER")) cmocka_set_test_filter(getenv("CHURND_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_demo_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gen_seed1_four_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gen_seed2_eight_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gen_seed3_two_topics_shuffled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slow_shuffled_copy_gives_the_sorted_alerts,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_gen_seed5_many_clients_sixteen_partitions,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_many_clients_killed_half_way,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("integration_replay_live", tests, NULL, NULL);
}
