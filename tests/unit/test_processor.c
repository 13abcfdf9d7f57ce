/*
 * test_processor.c - timer rounds of the processor over a real RocksDB
 * state, as the daemon runs them: at most a limited number of clients per
 * round, each round committed before the next, events applied between
 * rounds. A daily tick puts every client of a partition at one due time,
 * so a burst takes many rounds; each round resumes at the index key where
 * the previous one stopped. The alerts must be those of one unlimited
 * round per tick, whatever the limit and whatever the events in between
 * put into the index (including entries before the resume key).
 *
 * And the reorder buffer: a release merges what is committed with what
 * the batch at hand held, in order, within its limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../lib/harness.h"
#include "churnd/config.h"
#include "churnd/engine.h"
#include "churnd/event.h"
#include "churnd/processor.h"
#include "churnd/rules.h"
#include "churnd/store.h"

#define DAY_MS (24 * 3600 * 1000LL)
#define T0_MS 1772323200000LL /* 2026-03-01T00:00:00Z */
#define N_CLIENTS 240
#define N_DAYS 6

static char tmp[256];

/* Silence fires at the first daily tick that finds a contact over two
 * days old; a new contact resolves it. */
static const char RULES[] =
    "features:\n"
    "  contact:\n"
    "    last: [email.sent]\n"
    "rules:\n"
    "  silence:\n"
    "    on: [every 1d, email.sent]\n"
    "    when: seen(contact) and since(contact) > 2d\n"
    "    severity: warning\n"
    "    summary: \"silent for {{ since(contact) }}\"\n";

typedef struct world {
    config_t cfg;
    ruleset_t *rules;
    store_t *store;
    processor_t *proc;
    engine_out_t out;
    engine_opts_t opts;
    char **alerts; /* "rule client status alert_id" */
    size_t n_alerts, cap_alerts;
    size_t rounds;
    size_t n_progress, progress_done, progress_n; /* on_progress */
} world_t;

static void take_alerts(world_t *w) {
    for (size_t i = 0; i < w->out.n_alerts; i++) {
        const alert_t *a = &w->out.alerts[i];
        if (w->n_alerts == w->cap_alerts) {
            w->cap_alerts = w->cap_alerts ? 2 * w->cap_alerts : 256;
            w->alerts = realloc(w->alerts, w->cap_alerts * sizeof(*w->alerts));
            assert_non_null(w->alerts);
        }
        char line[512];
        snprintf(line, sizeof(line), "%s %s %d %s", a->rule, a->client_id,
                 (int)a->status, a->alert_id);
        w->alerts[w->n_alerts] = strdup(line);
        assert_non_null(w->alerts[w->n_alerts]);
        w->n_alerts++;
    }
    engine_out_reset(&w->out);
}

static void world_open(world_t *w, const char *name) {
    memset(w, 0, sizeof(*w));
    churn_err_t err = {0};
    assert_int_equal(config_init(&w->cfg, &err), 0);
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/rules", tmp);
    snprintf(path, sizeof(path), "%s/silence.yaml", dir);
    if (mkdir(dir, 0755) != 0) assert_int_equal(errno, EEXIST);
    assert_int_equal(th_write_file(path, RULES), 0);
    churn_errs_t errs;
    churn_errs_init(&errs);
    assert_int_equal(ruleset_load_dir(dir, &w->rules, &errs), 0);
    churn_errs_free(&errs);
    snprintf(path, sizeof(path), "%s/%s", tmp, name);
    store_opts_t so = {.dir = path, .mode = STORE_READ_WRITE};
    assert_int_equal(store_open(&so, &w->store, &err), 0);
    /* A cache smaller than the clients: rounds load states from RocksDB. */
    w->proc = processor_new(w->store, 50, &w->opts);
    assert_non_null(w->proc);
    processor_set_rules(w->proc, w->rules);
    engine_out_init(&w->out);
}

static void world_close(world_t *w) {
    for (size_t i = 0; i < w->n_alerts; i++) free(w->alerts[i]);
    free(w->alerts);
    engine_out_free(&w->out);
    processor_free(w->proc);
    store_close(w->store);
    ruleset_free(w->rules);
    config_free(&w->cfg);
}

static void apply_contact(world_t *w, const char *client, int64_t ts_ms) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s-%lld\",\"type\":\"email.sent\",\"client_id\":\"%s\","
             "\"ts\":%lld}",
             client, (long long)ts_ms, client, (long long)ts_ms);
    event_t ev;
    char detail[256];
    assert_int_equal(event_parse(&w->cfg.event, json, strlen(json), &ev, detail,
                                 sizeof(detail)),
                     EVENT_OK);
    churn_err_t err = {0};
    assert_int_equal(processor_event(w->proc, 0, &ev, &w->out, &err),
                     ENGINE_APPLIED);
    event_clear(&ev);
}

static void contact(world_t *w, const char *client, int64_t ts_ms) {
    apply_contact(w, client, ts_ms);
    take_alerts(w);
    churn_err_t err = {0};
    assert_int_equal(processor_commit(w->proc, NULL, 0, &err), 0);
}

/* Rounds of at most limit clients (0: one round) up to upto_ms, each
 * committed; between two rounds, between(w, k) runs with the round's
 * number. */
static void fire_until(world_t *w, int64_t upto_ms, size_t limit,
                       void (*between)(world_t *, size_t, int64_t)) {
    churn_err_t err = {0};
    for (size_t k = 0;; k++) {
        size_t n = 0;
        int rc = processor_fire_timers(w->proc, 0, upto_ms, limit, &w->out, &n, &err);
        assert_true(rc >= 0);
        take_alerts(w);
        assert_int_equal(processor_commit(w->proc, NULL, 0, &err), 0);
        w->rounds++;
        if (rc == 0) break;
        if (between) between(w, k, upto_ms);
    }
}

/* Between rounds of a tick's burst: a contact of a client that is not due
 * now, and a new client whose first contact, a moment before the tick,
 * schedules its own first tick at this very due time, with an id that
 * sorts before every client already fired ("a-" < "c-"), so its entry lies
 * before the key the next round resumes at. */
static void events_between(world_t *w, size_t k, int64_t tick_ms) {
    char id[64];
    if (k % 3 == 0) {
        snprintf(id, sizeof(id), "a-late-%lld-%zu", (long long)((tick_ms - T0_MS) / DAY_MS), k);
        contact(w, id, tick_ms - 1);
    }
    if (k % 3 == 1) {
        snprintf(id, sizeof(id), "c-%04zu", (k * 37) % N_CLIENTS);
        contact(w, id, tick_ms);
    }
}

/* The reference: the same events, in the same event-time order, with one
 * unlimited round per tick. The events that came between rounds of the
 * limited run come here before the tick's round (they are at or before
 * the tick), which per client is the same order. */
static void events_before(world_t *w, size_t n_rounds, int64_t tick_ms) {
    for (size_t k = 0; k < n_rounds; k++) events_between(w, k, tick_ms);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_limited_rounds_fire_what_one_round_fires(void **state) {
    (void)state;
    static world_t lim, ref;
    world_open(&lim, "limited");
    world_open(&ref, "reference");
    char id[32];
    for (int i = 0; i < N_CLIENTS; i++) {
        snprintf(id, sizeof(id), "c-%04d", i);
        /* Spread over the first day: every client's tick is at the same
         * midnights after it. */
        contact(&lim, id, T0_MS + (int64_t)i * 1000 * 60);
        contact(&ref, id, T0_MS + (int64_t)i * 1000 * 60);
    }
    size_t limit = 7, total_between = 0;
    for (int d = 1; d <= N_DAYS; d++) {
        int64_t tick = T0_MS + d * DAY_MS;
        size_t before = lim.rounds;
        fire_until(&lim, tick, limit, events_between);
        size_t rounds = lim.rounds - before;
        /* The burst took many rounds: the limit was in force. */
        assert_true(rounds > N_CLIENTS / limit);
        total_between += rounds - 1;
        events_before(&ref, rounds - 1, tick);
        fire_until(&ref, tick, 0, NULL);
    }
    assert_true(total_between > 0);
    /* Every client, the late ones included, fell silent and was alerted. */
    assert_true(ref.n_alerts >= N_CLIENTS);
    int late_fired = 0;
    for (size_t i = 0; i < ref.n_alerts; i++)
        if (strstr(ref.alerts[i], " a-late-1-0 ")) late_fired = 1;
    assert_true(late_fired);
    qsort(lim.alerts, lim.n_alerts, sizeof(*lim.alerts), cmp_str);
    qsort(ref.alerts, ref.n_alerts, sizeof(*ref.alerts), cmp_str);
    for (size_t i = 0; i < lim.n_alerts && i < ref.n_alerts; i++)
        assert_string_equal(lim.alerts[i], ref.alerts[i]);
    assert_int_equal(lim.n_alerts, ref.n_alerts);
    world_close(&lim);
    world_close(&ref);
}

/* ---- the reorder buffer ---- */

/* Hold an email.sent of client at ts_ms, as consumed from crm.events
 * partition 0 at offset. */
static void hold(world_t *w, const char *client, int64_t ts_ms, int64_t offset) {
    char json[256];
    int n = snprintf(json, sizeof(json),
                     "{\"id\":\"%s-%lld\",\"type\":\"email.sent\","
                     "\"client_id\":\"%s\",\"ts\":%lld}",
                     client, (long long)ts_ms, client, (long long)ts_ms);
    event_t ev;
    char detail[256];
    assert_int_equal(event_parse(&w->cfg.event, json, (size_t)n, &ev, detail,
                                 sizeof(detail)),
                     EVENT_OK);
    held_event_t h = {"crm.events", 0, offset, client, strlen(client),
                      json, (size_t)n, ts_ms};
    churn_err_t err = {0};
    assert_int_equal(processor_hold(w->proc, 0, &h, &ev, &err), 0);
    event_clear(&ev);
}

/* What a release hands over: "offset@time" of each event, in order. */
typedef struct released {
    char seen[1024];
    size_t n;
    size_t n_parsed; /* handed over parsed: held by the batch at hand */
} released_t;

static int note_release(void *arg, uint32_t part, const held_event_t *h,
                        event_t *ev) {
    released_t *r = arg;
    assert_int_equal(part, 0);
    if (ev) { /* the parse of the very message */
        assert_non_null(ev->root);
        assert_int_equal(ev->client_len, h->key_len);
        assert_memory_equal(ev->client_id, h->key, h->key_len);
        assert_int_equal(ev->ts_ms, h->ts_ms);
        r->n_parsed++;
    }
    size_t at = strlen(r->seen);
    snprintf(r->seen + at, sizeof(r->seen) - at, "%s%lld@%lld", at ? " " : "",
             (long long)h->offset, (long long)(h->ts_ms - T0_MS));
    r->n++;
    return 0;
}

static int release(world_t *w, int64_t upto, size_t limit, released_t *r) {
    size_t n = 0;
    churn_err_t err = {0};
    int rc = processor_release(w->proc, 0, T0_MS + upto, limit, note_release, r,
                               &n, &err);
    assert_true(rc >= 0);
    return rc;
}

static void commit(world_t *w) {
    churn_err_t err = {0};
    assert_int_equal(processor_commit(w->proc, NULL, 0, &err), 0);
}

static int has_held(world_t *w) {
    int held = -1;
    churn_err_t err = {0};
    assert_int_equal(processor_has_held(w->proc, 0, &held, &err), 0);
    return held;
}

/* A release merges the committed buffer with the holds of the batch at
 * hand, in (time, content) order, one event per message even when the
 * message was held again (a redelivery); what the batch released itself
 * is not written by its commit, what it kept is. The batch's own holds are
 * handed over as parsed when held, the store's are not. */
static void test_release_merges_the_batch_holds_with_the_store(void **state) {
    (void)state;
    static world_t w;
    world_open(&w, "held");
    hold(&w, "c-1", T0_MS + 10, 1);
    hold(&w, "c-3", T0_MS + 30, 3);
    commit(&w); /* 1 and 3 in the store */
    hold(&w, "c-2", T0_MS + 20, 2);
    hold(&w, "c-4", T0_MS + 40, 4);
    hold(&w, "c-5", T0_MS + 25, 5);
    hold(&w, "c-3", T0_MS + 30, 3); /* delivered again */
    assert_int_equal(has_held(&w), 1);

    released_t r = {{0}, 0, 0};
    assert_int_equal(release(&w, 30, 0, &r), 0);
    assert_string_equal(r.seen, "1@10 2@20 5@25 3@30");
    /* 2 and 5 as parsed when held; 1 and 3 (the redelivery is the stored
     * copy) from the store, to be parsed again */
    assert_int_equal(r.n_parsed, 2);
    commit(&w); /* writes 4 only */

    released_t again = {{0}, 0, 0};
    assert_int_equal(release(&w, 35, 0, &again), 0);
    assert_string_equal(again.seen, "");
    assert_int_equal(has_held(&w), 1);
    assert_int_equal(release(&w, 40, 0, &again), 0);
    assert_string_equal(again.seen, "4@40");
    assert_int_equal(again.n_parsed, 0); /* written by the commit */
    commit(&w);
    assert_int_equal(has_held(&w), 0);

    /* Held and released in one batch: the commit leaves nothing held,
     * and a later release finds nothing more. */
    hold(&w, "c-6", T0_MS + 50, 6);
    released_t six = {{0}, 0, 0};
    assert_int_equal(release(&w, 60, 0, &six), 0);
    assert_string_equal(six.seen, "6@50");
    assert_int_equal(six.n_parsed, 1);
    commit(&w);
    assert_int_equal(has_held(&w), 0);
    assert_int_equal(release(&w, 100, 0, &six), 0);
    assert_int_equal(six.n, 1);
    world_close(&w);
}

/* With a limit, the merge stops at it: nothing of the batch's holds goes
 * past an event of the store it did not read; the rest follows, after a
 * commit, once each. */
static void test_a_limited_release_goes_on_after_the_commit(void **state) {
    (void)state;
    static world_t w;
    world_open(&w, "held-limit");
    for (int i = 0; i < 6; i++) hold(&w, "c-s", T0_MS + 10 * (2 * i + 1), 100 + i);
    commit(&w); /* 10, 30, 50, 70, 90, 110 in the store */
    for (int i = 0; i < 6; i++) hold(&w, "c-b", T0_MS + 10 * (2 * i + 2), 200 + i);
    released_t r = {{0}, 0, 0};
    int rounds = 0;
    while (release(&w, 1000, 4, &r) == 1) {
        commit(&w);
        rounds++;
        assert_true(rounds < 10);
    }
    commit(&w);
    assert_int_equal(rounds, 3);
    assert_string_equal(r.seen, "100@10 200@20 101@30 201@40 102@50 202@60 103@70 "
                                "203@80 104@90 204@100 105@110 205@120");
    assert_int_equal(has_held(&w), 0);
    world_close(&w);
}

/* A reload walks every client with a timer (processor_settle_partition):
 * the states it reads and leaves as they were must not pile up in the
 * cache until a commit that only changed states bring (at 1,000,000
 * clients a reload peaked at 2.4 GiB). */
static void test_settling_keeps_the_cache_within_its_capacity(void **state) {
    (void)state;
    static world_t w;
    world_open(&w, "settle");
    processor_free(w.proc);
    w.opts.lookahead_ticks = 64;
    w.proc = processor_new(w.store, 50, &w.opts);
    assert_non_null(w.proc);
    processor_set_live(w.proc);
    processor_set_rules(w.proc, w.rules);
    char id[32];
    for (int i = 0; i < N_CLIENTS; i++) {
        snprintf(id, sizeof(id), "c-%04d", i);
        contact(&w, id, T0_MS + (int64_t)i * 1000 * 60);
    }
    processor_stats_t st;
    processor_get_stats(w.proc, &st);
    assert_true(st.cache_peak <= 51); /* one loaded, then the commit evicts */
    churn_err_t err = {0};
    assert_int_equal(processor_settle_partition(w.proc, 0, &err), 0);
    /* What moved stays in memory until a commit; a second walk, by a
     * fresh processor on the same store, finds nothing to move. */
    processor_free(w.proc);
    w.proc = processor_new(w.store, 50, &w.opts);
    assert_non_null(w.proc);
    processor_set_live(w.proc);
    processor_set_rules(w.proc, w.rules);
    assert_int_equal(processor_settle_partition(w.proc, 0, &err), 0);
    processor_get_stats(w.proc, &st);
    assert_int_equal(st.cache_capacity, 50);
    assert_true(st.cache_peak <= 51);
    assert_true(st.cache_misses >= N_CLIENTS); /* it did read them all */
    world_close(&w);
}

/* The rule set of RULES with one more rule: another hash, the same
 * silence rule. */
static ruleset_t *load_more_rules(void) {
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/rules-more", tmp);
    snprintf(path, sizeof(path), "%s/silence.yaml", dir);
    if (mkdir(dir, 0755) != 0) assert_int_equal(errno, EEXIST);
    char text[sizeof(RULES) + 256];
    snprintf(text, sizeof(text),
             "%s"
             "  bounce:\n"
             "    on: [email.bounced]\n"
             "    severity: info\n"
             "    summary: \"bounced\"\n",
             RULES);
    assert_int_equal(th_write_file(path, text), 0);
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    assert_int_equal(ruleset_load_dir(dir, &rs, &errs), 0);
    churn_errs_free(&errs);
    return rs;
}

/* Counts the timer entries of a partition: all of them, and those due at
 * `at`. */
typedef struct timer_count {
    int64_t at;
    size_t n, n_at;
} timer_count_t;

static int count_timer(void *arg, uint32_t part, int64_t due_ms,
                       const char *client, size_t client_len) {
    (void)part, (void)client, (void)client_len;
    timer_count_t *c = arg;
    c->n++;
    if (due_ms == c->at) c->n_at++;
    return 0;
}

static timer_count_t timers_at(world_t *w, uint32_t part, int64_t at) {
    timer_count_t c = {at, 0, 0};
    churn_err_t err = {0};
    assert_true(store_scan_timers(w->store, part, INT64_MAX, 0, count_timer,
                                  &c, &err) >= 0);
    return c;
}

static void on_progress(void *arg, uint32_t part, size_t done, size_t n) {
    world_t *w = arg;
    assert_int_equal(part, 0);
    assert_true(done > w->progress_done || w->n_progress == 0);
    w->n_progress++;
    w->progress_done = done;
    w->progress_n = n;
}

/* A live processor on w's store under rs, partition 0 assigned as the
 * daemon assigns it; the resume's result. */
static int live_open(world_t *w, const ruleset_t *rs) {
    w->opts.lookahead_ticks = 64;
    w->proc = processor_new(w->store, 50, &w->opts);
    assert_non_null(w->proc);
    processor_set_live(w->proc);
    processor_set_progress(w->proc, on_progress, w);
    w->n_progress = w->progress_done = w->progress_n = 0;
    processor_set_rules(w->proc, rs);
    churn_err_t err = {0};
    assert_int_equal(processor_count_partition(w->proc, 0, &err), 0);
    int rc = processor_resume_partition(w->proc, 0, &err);
    if (rc == 0) assert_int_equal(processor_commit(w->proc, NULL, 0, &err), 0);
    return rc;
}

static void put_raw_client(world_t *w, const char *client, const char *val,
                           int64_t due_ms, int del) {
    store_batch_t *b = store_batch_new();
    assert_non_null(b);
    size_t len = strlen(client);
    if (del) {
        store_batch_del_client(b, 0, client, len);
        store_batch_del_timer(b, 0, due_ms, client, len);
    } else {
        store_batch_put_client(b, 0, client, len, val, strlen(val));
        store_batch_put_timer(b, 0, due_ms, client, len);
    }
    churn_err_t err = {0};
    assert_int_equal(store_commit(w->store, b, &err), 0);
    store_batch_free(b);
}

/* A start under changed rules re-indexes every client of a partition
 * (processor_resume_partition), committing as it goes. Those commits must
 * not record the new rule set for the partition before the walk is over:
 * after a crash in between, the next start would take it as walked, and
 * the clients not reached would stay indexed past ticks only the old set
 * found quiet. The walk here stops half-way at a record it cannot read. */
#define WALK_CLIENTS (PROCESSOR_SETTLE_BATCH + 100)
static void test_a_start_cut_short_in_its_walk_walks_again(void **state) {
    (void)state;
    static world_t w;
    world_open(&w, "cut");
    processor_free(w.proc);
    assert_int_equal(live_open(&w, w.rules), 0);
    char id[32];
    churn_err_t err = {0};
    for (int i = 0; i < WALK_CLIENTS; i++) {
        snprintf(id, sizeof(id), "c-%05d", i);
        apply_contact(&w, id, T0_MS + 60 * 1000);
    }
    take_alerts(&w);
    assert_int_equal(processor_commit(w.proc, NULL, 0, &err), 0);
    /* Looked ahead: the ticks of days 1 and 2 change nothing, the one of
     * day 3 fires. */
    timer_count_t c = timers_at(&w, 0, T0_MS + 3 * DAY_MS);
    assert_int_equal(c.n, WALK_CLIENTS);
    assert_int_equal(c.n_at, WALK_CLIENTS);
    /* Indexed after every one of them ("z" > "c-"): an unreadable state. */
    put_raw_client(&w, "z", "\xff\xff\xff", T0_MS + 3 * DAY_MS, 0);
    processor_free(w.proc);

    ruleset_t *more = load_more_rules();
    assert_true(live_open(&w, more) < 0);
    processor_free(w.proc);
    /* It did commit part of the walk. */
    c = timers_at(&w, 0, T0_MS + DAY_MS);
    assert_true(c.n_at >= PROCESSOR_SETTLE_BATCH && c.n_at < WALK_CLIENTS);

    put_raw_client(&w, "z", NULL, T0_MS + 3 * DAY_MS, 1);
    assert_int_equal(live_open(&w, more), 0);
    c = timers_at(&w, 0, T0_MS + DAY_MS);
    assert_int_equal(c.n, WALK_CLIENTS);
    assert_int_equal(c.n_at, WALK_CLIENTS);
    /* It said how far it was once the index was scanned (0 done), then
     * every PROCESSOR_PROGRESS_EVERY clients. */
    assert_int_equal(w.n_progress, 1 + (WALK_CLIENTS - 1) / PROCESSOR_PROGRESS_EVERY);
    assert_int_equal(w.progress_done, (w.n_progress - 1) * PROCESSOR_PROGRESS_EVERY);
    assert_int_equal(w.progress_n, WALK_CLIENTS);
    ruleset_free(more);
    world_close(&w);
}

static int setup(void **state) {
    (void)state;
    return th_tmpdir(tmp, sizeof(tmp));
}

static int teardown(void **state) {
    (void)state;
    th_rmtree(tmp);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_limited_rounds_fire_what_one_round_fires,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_merges_the_batch_holds_with_the_store,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_limited_release_goes_on_after_the_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_settling_keeps_the_cache_within_its_capacity,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_start_cut_short_in_its_walk_walks_again,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
