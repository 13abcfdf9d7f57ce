/*
 * test_timers.c - deadlines in the live daemon: a `for: 1h` rule fires
 * when the watermark (slowest non-idle partition's event time minus the
 * lateness) passes its deadline, not before, and the deadline survives a
 * kill -9 because it lives in RocksDB's timer index.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "../lib/harness.h"
#include "../lib/http_client.h"

#define WAIT_MS 60000

static char rules_dir[1024];

static void send_event(th_env_t *e, const char *topic, const char *client,
                 const char *id, const char *type, const char *ts) {
    char json[512];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s\",\"type\":\"%s\",\"client_id\":\"%s\",\"ts\":\"%s\","
             "\"data\":{\"meeting_id\":\"M\",\"score\":9}}", id, type, client, ts);
    assert_int_equal(th_env_send(e, topic, client, json), 0);
}

static void test_for_deadline_fires_on_watermark_and_survives_kill(void **state) {
    (void)state;
    th_env_t e;
    /* one partition per topic, no lateness, partitions never idle here */
    assert_int_equal(th_env_setup(&e, 1, rules_dir, NULL,
                                  "time:\n  allowed_lateness: 0s\n  idle_timeout: 1h\n"), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    send_event(&e, e.crm, "A", "a1", "meeting.postponed", "2026-07-01T10:00:00Z");
    send_event(&e, e.helpdesk, "X", "x1", "survey.nps", "2026-07-01T10:00:00Z");
    if (th_env_wait_caught_up(&e, WAIT_MS)) {
        th_env_dump_log(&e);
        fail_msg("no catch-up");
    }
    /* watermark 10:00 < deadline 11:00: nothing yet */
    assert_int_equal(th_env_count_alerts(&e, NULL, "A", NULL, NULL), 0);

    /* crash: the pending deadline is only in RocksDB now */
    assert_int_equal(th_proc_signal(&e.daemon, SIGKILL), 0);
    assert_int_equal(th_proc_wait(&e.daemon, 10000), 128 + SIGKILL);
    assert_int_equal(th_env_start_daemon(&e), 0);

    /* crm moves to 12:00 but helpdesk still holds the watermark at 10:30 */
    send_event(&e, e.crm, "B", "b1", "meeting.postponed", "2026-07-01T12:00:00Z");
    send_event(&e, e.helpdesk, "X", "x2", "survey.nps", "2026-07-01T10:30:00Z");
    /* B's 12:00 event stays held behind the watermark: consumed is all
     * there is to wait for. */
    if (th_env_wait_consumed(&e, WAIT_MS)) {
        th_env_dump_log(&e);
        fail_msg("no catch-up after restart");
    }
    assert_int_equal(th_env_count_alerts(&e, NULL, "A", NULL, NULL), 0);

    /* helpdesk reaches 11:30: the watermark passes A's 11:00 deadline */
    send_event(&e, e.helpdesk, "X", "x3", "survey.nps", "2026-07-01T11:30:00Z");
    int64_t deadline = th_now_ms() + WAIT_MS;
    while (th_env_count_alerts(&e, NULL, "A", NULL, "2026-07-01T11:00:00Z") < 1) {
        if (th_now_ms() > deadline) {
            th_env_dump_log(&e);
            fail_msg("A's deadline never fired");
        }
        th_pause_ms(50);
    }
    assert_int_equal(th_env_wait_consumed(&e, WAIT_MS), 0); /* B still held */
    assert_int_equal(th_env_count_alerts(&e, NULL, "A", NULL, "2026-07-01T11:00:00Z"), 1);
    /* B's deadline (13:00) is still ahead of the watermark (11:30) */
    assert_int_equal(th_env_count_alerts(&e, NULL, "B", NULL, NULL), 0);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* A burst of due timers: clients replayed into the state 31.5 days ago,
 * each with a decision maker's last contact then, so the daemon's catch-up
 * of their daily ticks (some 32 per client) ends with every one of them
 * firing decision_maker_silent (30 days). An event produced once the burst
 * has begun must not wait for its end: the timer batches and the event
 * batches take turns. On the alerts topic (one partition, in publication
 * order) some of the burst's alerts come after the event's detractor
 * alert; without the turns all of them came first. (With the look-ahead
 * most of each client's quiet ticks are skipped, and the burst is the
 * clients' wake-ups at the ticks that fire, 1,000 a batch once an event
 * came, more before.) */
#define BURST_CLIENTS 10000

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The burst's clients replayed into e's state, the daemon started on it
 * (debug log: one "msg=fired clients=N" line per timer batch). */
/* The default rule pack's directory (the tests run from the top). */
static void default_rules(char *dir, size_t n) {
    if (!getcwd(dir, n - 16)) fail_msg("getcwd");
    strcat(dir, "/rules");
}

static void start_burst(th_env_t *e) {
    char defaults[1024];
    default_rules(defaults, sizeof(defaults));
    assert_int_equal(th_env_setup_inputs(e, 1, defaults, NULL,
                                         "log:\n  level: debug\n", 1), 0);
    char stream[600], out[600];
    snprintf(stream, sizeof(stream), "%s/burst.jsonl", e->dir);
    snprintf(out, sizeof(out), "%s/replay.out", e->dir);
    FILE *f = fopen(stream, "w");
    assert_non_null(f);
    int64_t then = wall_ms() - (int64_t)(31.5 * 86400000.0);
    for (int i = 0; i < BURST_CLIENTS; i++)
        fprintf(f, "{\"id\":\"m%d\",\"type\":\"meeting.held\",\"client_id\":"
                   "\"q-%05d\",\"ts\":%lld,\"data\":{\"meeting_id\":\"M%d\","
                   "\"attendee_roles\":[\"decision_maker\"]}}\n",
                i, i, (long long)(then + i), i);
    assert_int_equal(fclose(f), 0);
    const char *b = getenv("CHURND_BIN");
    char *argv[] = {(char *)(b ? b : "build/churnd"), "replay", "-r", defaults,
                    "--state", e->state, stream, NULL};
    assert_int_equal(th_run(argv, out, 120000), 0);

    /* The test's producer learns the topic's leader and opens its
     * connection now, with an event the daemon reads at its start (a
     * promoter's score: no alert). Else the event sent during the burst
     * paid for that, on a loaded machine 0.8 s, and could arrive after
     * the burst's last batch (CI, under ASan). */
    char warm[256];
    snprintf(warm, sizeof(warm),
             "{\"id\":\"w1\",\"type\":\"survey.nps\",\"client_id\":\"WARM\","
             "\"ts\":%lld,\"data\":{\"score\":9}}", (long long)wall_ms());
    assert_int_equal(th_env_send(e, e->crm, "WARM", warm), 0);
    assert_int_equal(th_flush(e->producer, WAIT_MS), 0);
    const char *env[] = {"CHURND_KAFKA_FETCH_WAIT_MAX_MS=10", NULL};
    assert_int_equal(th_env_start_daemon_env(e, env), 0);
}

static void test_an_event_during_a_burst_of_timers_waits_for_no_burst(void **state) {
    (void)state;
    th_env_t e;
    start_burst(&e);
    if (th_log_wait_from(e.log, e.log_from, "msg=fired", WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("no timer batch");
    }
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"n1\",\"type\":\"survey.nps\",\"client_id\":\"NEW\","
             "\"ts\":%lld,\"data\":{\"score\":2}}", (long long)wall_ms());
    int64_t sent = wall_ms();
    assert_int_equal(th_env_send(&e, e.crm, "NEW", json), 0);
    assert_int_equal(th_flush(e.producer, WAIT_MS), 0);
    int64_t delivered = wall_ms();
    if (th_env_wait_caught_up(&e, 4 * WAIT_MS)) {
        th_env_dump_log(&e);
        fail_msg("no catch-up");
    }
    th_msgs_t m = {0};
    assert_int_equal(th_consume_to_end(e.broker.bootstrap, e.alerts, WAIT_MS, &m), 0);
    long new_at = -1, silent_after = 0, silent_n = 0;
    for (size_t i = 0; i < m.n; i++) {
        th_alert_t a;
        if (th_alert_parse(&m.v[i], &a) != 0) continue;
        if (!strcmp(a.client, "NEW") && !strcmp(a.rule, "detractor") && new_at < 0)
            new_at = (long)i;
        if (!strcmp(a.rule, "decision_maker_silent") && !strncmp(a.client, "q-", 2)) {
            if (new_at >= 0) silent_after++;
            silent_n++;
        }
    }
    th_msgs_free(&m);
    /* The burst ran to its end: every client fell silent once. */
    assert_int_equal(silent_n, BURST_CLIENTS);
    if (new_at < 0 || silent_after == 0) {
        th_env_dump_log(&e);
        fail_msg("the event's alert is at %ld, with %ld of the burst's after it"
                 " (its delivery to the broker took %lld ms)",
                 new_at, silent_after, (long long)(delivered - sent));
    }
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* The clients (timer batch sizes) of the daemon log's "msg=fired" lines,
 * in order; how many there were. */
static size_t fired_batches(const th_env_t *e, long *v, size_t cap) {
    char *log = th_read_file(e->log);
    assert_non_null(log);
    size_t n = 0;
    for (const char *p = log; (p = strstr(p, "msg=fired clients=")); p++)
        if (n < cap) v[n++] = strtol(p + strlen("msg=fired clients="), NULL, 10);
    free(log);
    return n;
}

/* With no event waiting, timer batches grow (doubling from 1,000 up to
 * 8,000 clients), so that a burst's commits and waits for the broker's
 * acknowledgements are shared by more clients: the burst's 20,000
 * wake-ups (two per client) take five batches, where fixed batches of
 * 1,000 took twenty. */
static void test_timer_batches_grow_while_no_event_waits(void **state) {
    (void)state;
    th_env_t e;
    start_burst(&e);
    if (th_env_wait_caught_up(&e, 4 * WAIT_MS)) {
        th_env_dump_log(&e);
        fail_msg("the burst did not settle");
    }
    assert_int_equal(th_env_count_alerts(&e, "decision_maker_silent", NULL, "firing", NULL),
                     BURST_CLIENTS);
    long v[64];
    size_t n = fired_batches(&e, v, 64);
    long total = 0, largest = 0;
    for (size_t i = 0; i < n && i < 64; i++) {
        total += v[i];
        if (v[i] > largest) largest = v[i];
    }
    if (total < BURST_CLIENTS || largest < 4000 || n > 6) {
        th_env_dump_log(&e);
        fail_msg("%zu timer batches, %ld clients in all, the largest of %ld", n,
                 total, largest);
    }
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* Wait until series reaches at least min; fail with why otherwise. */
static void wait_metric(th_env_t *e, const char *series, double min, const char *why) {
    double v = th_env_wait_metric(e, series, min, WAIT_MS / 3);
    if (v < min) {
        th_env_dump_log(e);
        fail_msg("%s: %s is %g, not %g, after %d ms", why, series, v, min, WAIT_MS / 3);
    }
}

static void send_score(th_env_t *e, const char *client, const char *id) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s\",\"type\":\"survey.nps\",\"client_id\":\"%s\","
             "\"ts\":%lld,\"data\":{\"score\":2}}", id, client, (long long)wall_ms());
    assert_int_equal(th_env_send(e, e->crm, client, json), 0);
}

/* A batch that released held events waits for its alert's
 * acknowledgement, which does not come (the alerts partition has no
 * leader). An event that arrives meanwhile is taken into that batch and
 * evaluated at once; it used to wait in the consumer's queue for the
 * whole round trip, and a slow acknowledgement stopped consumption. Once
 * the partition has a leader again both alerts go out, once each. */
static void test_an_event_does_not_wait_for_a_release_batch_acknowledgement(void **state) {
    (void)state;
    char defaults[1024];
    default_rules(defaults, sizeof(defaults));
    th_env_t e;
    /* crm alone, one partition: A's event is held behind the 2 s lateness
     * and released by the idle path, in a batch of its own. */
    assert_int_equal(th_env_setup_inputs(&e, 1, defaults, NULL,
                                         "time:\n  allowed_lateness: 2s\n"
                                         "  idle_timeout: 300ms\n", 1), 0);
    int rc = th_env_start_leaderless(&e, WAIT_MS);
    if (rc == 1) {
        th_env_teardown(&e);
        skip();
    }
    assert_int_equal(rc, 0);
    send_score(&e, "A", "a1");
    wait_metric(&e, "churnd_events_released_total", 1, "A's event was not released");
    wait_metric(&e, "churnd_produce_in_flight", 1, "A's alert is not in flight");
    send_score(&e, "B", "b1");
    char consumed[256];
    snprintf(consumed, sizeof(consumed), "churnd_events_consumed_total{topic=\"%s\"}",
             e.crm);
    wait_metric(&e, consumed, 2, "B's event waited for the acknowledgement of A's batch");
    /* A's batch is still waiting: B was not taken between two batches. */
    assert_true(th_env_metric(&e, "churnd_produce_in_flight", WAIT_MS) >= 1);

    assert_int_equal(th_env_alerts_leader(&e, 1), 0);
    int64_t deadline = th_now_ms() + WAIT_MS;
    while (th_env_count_alerts(&e, "detractor", "B", NULL, NULL) < 1) {
        if (th_now_ms() > deadline) {
            th_env_dump_log(&e);
            fail_msg("B's alert never came");
        }
        th_pause_ms(50);
    }
    assert_int_equal(th_env_wait_caught_up(&e, WAIT_MS), 0);
    assert_int_equal(th_env_count_alerts(&e, "detractor", "A", NULL, NULL), 1);
    assert_int_equal(th_env_count_alerts(&e, "detractor", "B", NULL, NULL), 1);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* Both topics' watermark to ts: an event no rule uses, on each. */
static void send_clock(th_env_t *e, const char *id, const char *ts) {
    send_event(e, e->crm, "CLOCK", id, "x.clock", ts);
    char id2[64];
    snprintf(id2, sizeof(id2), "%s-h", id);
    send_event(e, e->helpdesk, "CLOCK", id2, "x.clock", ts);
}

/* The daemon looks ahead at daily ticks and does not wake a client for
 * those that cannot change anything; they count as done once the
 * watermark passes them, which it records with the commit. After a kill
 * -9, an event behind that watermark (held again, as the restarted daemon
 * has not released anything yet) must meet those ticks done, as it would
 * without look-ahead: here the 06-04 tick ran before the low score came,
 * so the first tick to see it is 06-05's. */
static void test_quiet_ticks_stay_done_across_kill(void **state) {
    (void)state;
    char dir[256], path[400];
    assert_int_equal(th_tmpdir(dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/low.yaml", dir);
    assert_int_equal(th_write_file(path,
                                   "features:\n"
                                   "  nps:\n    latest: data.score\n    on: survey.nps\n"
                                   "rules:\n"
                                   "  nps_low:\n    on: [every 1d]\n"
                                   "    when: value(nps) <= 6\n    severity: warning\n"),
                     0);
    th_env_t e;
    assert_int_equal(th_env_setup(&e, 1, dir, NULL,
                                  "time:\n  allowed_lateness: 0s\n  idle_timeout: 1h\n"), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    send_event(&e, e.helpdesk, "A", "a1", "survey.nps", "2026-06-01T10:00:00Z");
    send_clock(&e, "k1", "2026-06-01T10:00:00Z");
    send_clock(&e, "k2", "2026-06-04T12:00:00Z");
    if (th_env_wait_caught_up(&e, WAIT_MS)) {
        th_env_dump_log(&e);
        fail_msg("no catch-up");
    }
    assert_int_equal(th_proc_signal(&e.daemon, SIGKILL), 0);
    assert_int_equal(th_proc_wait(&e.daemon, 10000), 128 + SIGKILL);
    assert_int_equal(th_env_start_daemon(&e), 0);

    /* {"score": 9} in send_event's data: another event of A carries 3. */
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"a2\",\"type\":\"survey.nps\",\"client_id\":\"A\","
             "\"ts\":\"2026-06-03T00:00:00Z\",\"data\":{\"score\":3}}");
    assert_int_equal(th_env_send(&e, e.helpdesk, "A", json), 0);
    send_clock(&e, "k3", "2026-06-10T12:00:00Z");
    if (th_env_wait_caught_up(&e, WAIT_MS)) {
        th_env_dump_log(&e);
        fail_msg("no catch-up after restart");
    }
    assert_int_equal(th_env_count_alerts(&e, "nps_low", "A", "firing",
                                         "2026-06-05T00:00:00Z"), 1);
    assert_int_equal(th_env_count_alerts(&e, NULL, "A", NULL, NULL), 1);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
    th_rmtree(dir);
}

int main(void) {
    if (!getcwd(rules_dir, sizeof(rules_dir) - 64)) return 1;
    strcat(rules_dir, "/tests/data/daemon-timers");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_for_deadline_fires_on_watermark_and_survives_kill),
        cmocka_unit_test(test_an_event_during_a_burst_of_timers_waits_for_no_burst),
        cmocka_unit_test(test_timer_batches_grow_while_no_event_waits),
        cmocka_unit_test(test_an_event_does_not_wait_for_a_release_batch_acknowledgement),
        cmocka_unit_test(test_quiet_ticks_stay_done_across_kill),
    };
    return cmocka_run_group_tests_name("integration_timers", tests, NULL, NULL);
}
