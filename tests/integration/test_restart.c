/*
 * test_restart.c - exactness across crashes and drains.
 *
 * The stream: "calm" clients alternate meeting.postponed and meeting.held,
 * so the streak never reaches 2 unless an event is counted twice or a held
 * meeting is skipped; "streaky" clients do the same and end with two
 * postponements, so each must fire exactly one incident, which is lost if
 * an event is skipped. Event-id dedup is switched off (dedup_max_ids: 0):
 * only the atomic write of state with offsets can keep the counts exact.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../lib/harness.h"
#include "../lib/http_client.h"
#include "churnd/store.h"

#define WAIT_MS 90000
#define N_CALM 160
#define N_STREAKY 40
#define ROUNDS 8 /* postponed+held pairs per client */

static char rules_dir[1024];

typedef struct stream {
    char **json;
    char **key;
    size_t n;
} stream_t;

static void stream_add(stream_t *s, const char *client, const char *type,
                       int seq, int64_t minute) {
    char buf[512];
    int64_t day = 1 + minute / (24 * 60);
    int64_t hh = (minute / 60) % 24, mm = minute % 60;
    snprintf(buf, sizeof(buf),
             "{\"id\":\"%s-%d\",\"type\":\"%s\",\"client_id\":\"%s\","
             "\"ts\":\"2026-05-%02lldT%02lld:%02lld:00Z\","
             "\"data\":{\"meeting_id\":\"M-%d\"}}",
             client, seq, type, client, (long long)day, (long long)hh,
             (long long)mm, seq);
    s->json = realloc(s->json, (s->n + 1) * sizeof(char *));
    s->key = realloc(s->key, (s->n + 1) * sizeof(char *));
    assert_non_null(s->json);
    assert_non_null(s->key);
    s->json[s->n] = strdup(buf);
    s->key[s->n] = strdup(client);
    s->n++;
}

static void stream_build(stream_t *s) {
    memset(s, 0, sizeof(*s));
    char client[32];
    int64_t minute = 0;
    /* A round is every client's postponement, then every client's held
     * meeting: between the two, each client's streak is 1, so a crash in
     * a round that replays an already-counted postponement makes 2. */
    for (int r = 0; r < ROUNDS; r++) {
        for (int half = 0; half < 2; half++) {
            for (int c = 0; c < N_CALM + N_STREAKY; c++) {
                snprintf(client, sizeof(client), "%s-%03d",
                         c < N_CALM ? "CALM" : "STREAK", c);
                stream_add(s, client, half ? "meeting.held" : "meeting.postponed",
                           2 * r + half, minute++);
            }
        }
    }
    for (int c = N_CALM; c < N_CALM + N_STREAKY; c++) {
        snprintf(client, sizeof(client), "STREAK-%03d", c);
        stream_add(s, client, "meeting.postponed", 2 * ROUNDS, minute++);
    }
    for (int c = N_CALM; c < N_CALM + N_STREAKY; c++) {
        snprintf(client, sizeof(client), "STREAK-%03d", c);
        stream_add(s, client, "meeting.cancelled", 2 * ROUNDS + 1, minute++);
    }
}

static void stream_free(stream_t *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->json[i]);
        free(s->key[i]);
    }
    free(s->json);
    free(s->key);
}

static void send_range(th_env_t *e, const stream_t *s, size_t from, size_t to) {
    for (size_t i = from; i < to && i < s->n; i++)
        assert_int_equal(th_env_send(e, e->crm, s->key[i], s->json[i]), 0);
    assert_int_equal(th_flush(e->producer, WAIT_MS), 0);
}

/* Every streaky client fired exactly one incident (duplicates only with the
 * same alert_id), no calm client ever fired. */
static void verify_exact(th_env_t *e) {
    th_msgs_t raw = {0};
    assert_int_equal(th_consume_to_end(e->broker.bootstrap, e->alerts, WAIT_MS, &raw), 0);
    size_t calm_alerts = 0;
    char ids[N_CALM + N_STREAKY][256];
    memset(ids, 0, sizeof(ids));
    for (size_t i = 0; i < raw.n; i++) {
        th_alert_t a;
        assert_int_equal(th_alert_parse(&raw.v[i], &a), 0);
        assert_string_equal(a.rule, "meetings_postponed");
        int idx = atoi(strchr(a.client, '-') + 1);
        if (!strncmp(a.client, "CALM", 4)) {
            fprintf(stderr, "calm client fired: %s\n", raw.v[i].value);
            calm_alerts++;
            continue;
        }
        assert_string_equal(a.status, "firing");
        if (ids[idx][0])
            assert_string_equal(ids[idx], a.alert_id); /* a replayed duplicate */
        else
            snprintf(ids[idx], sizeof(ids[idx]), "%s", a.alert_id);
    }
    assert_int_equal(calm_alerts, 0);
    for (int c = N_CALM; c < N_CALM + N_STREAKY; c++) {
        if (!ids[c][0]) fail_msg("STREAK-%03d never fired: an event was skipped", c);
    }
    fprintf(stderr, "alerts: %zu messages for %d incidents\n", raw.n, N_STREAKY);
    th_msgs_free(&raw);
}

/* Produce in small chunks until this incarnation of churnd has committed
 * at least one batch, then a few chunks more without waiting, and kill -9
 * while those are being processed. Those last chunks are kept back from
 * the first loop, which waits for the commit once it has sent the rest:
 * on a fast broker the whole range can be out before churnd's first
 * commit. Returns the index of the next event. */
static size_t crash_mid_flow(th_env_t *e, rd_kafka_t *lagc, const stream_t *s,
                             size_t sent, size_t limit) {
    const char *topics[2] = {e->crm, e->helpdesk};
    int64_t lag0 = th_group_lag_with(lagc, topics, 2);
    assert_true(lag0 >= 0);
    int64_t committed0 = (int64_t)sent - lag0;
    int64_t deadline = th_now_ms() + WAIT_MS;
    const size_t chunk = 30;
    size_t upto = limit > sent + 5 * chunk ? limit - 4 * chunk : sent + chunk;
    if (upto > limit) upto = limit;
    int progressed = 0;
    while (!progressed) {
        if (sent < upto) {
            size_t to = sent + chunk < upto ? sent + chunk : upto;
            send_range(e, s, sent, to);
            sent = to;
        } else {
            th_pause_ms(10); /* all but the last chunks sent: poll the commit */
        }
        int64_t lag = th_group_lag_with(lagc, topics, 2);
        progressed = lag >= 0 && (int64_t)sent - lag > committed0;
        if (!progressed && th_now_ms() > deadline) {
            th_env_dump_log(e);
            fail_msg("churnd made no progress");
        }
    }
    assert_true(progressed);
    for (int k = 0; k < 4 && sent < limit; k++) { /* events in flight */
        for (size_t i = sent; i < sent + chunk && i < limit; i++)
            assert_int_equal(th_env_send(e, e->crm, s->key[i], s->json[i]), 0);
        sent = sent + chunk < limit ? sent + chunk : limit;
        rd_kafka_poll(e->producer, 0);
    }
    assert_int_equal(th_flush(e->producer, WAIT_MS), 0);
    assert_int_equal(th_proc_signal(&e->daemon, SIGKILL), 0);
    assert_int_equal(th_proc_wait(&e->daemon, 10000), 128 + SIGKILL);
    int64_t lag = th_group_lag_with(lagc, topics, 2);
    fprintf(stderr, "killed: %zu events sent, %lld committed before this run, "
            "%lld at the kill\n", sent, (long long)committed0,
            (long long)((int64_t)sent - lag));
    return sent;
}

static void test_kill_9_mid_stream_is_exact(void **state) {
    (void)state;
    th_env_t e;
    stream_t s;
    stream_build(&s);
    assert_int_equal(th_env_setup(&e, 4, rules_dir,
                                  "  max_events: 40\n  max_wait: 2ms\n",
                                  "event:\n  dedup_max_ids: 0\n"), 0);
    rd_kafka_t *lagc = th_group_client(e.broker.bootstrap, e.group);
    assert_non_null(lagc);
    size_t sent = 0;
    /* Three crashes, each while events are flowing and after the restarted
     * churnd has committed something of its own. */
    for (size_t k = 0; k < 3; k++) {
        int assigned = th_file_count(e.log, "msg=\"partition assigned\"");
        assert_int_equal(th_env_start_daemon(&e), 0);
        /* 2 topics x 4 partitions, once the dead member's session ends */
        int64_t deadline = th_now_ms() + WAIT_MS;
        while (th_file_count(e.log, "msg=\"partition assigned\"") < assigned + 8) {
            if (th_now_ms() > deadline) {
                th_env_dump_log(&e);
                fail_msg("churnd was never assigned its partitions");
            }
            th_pause_ms(20);
        }
        sent = crash_mid_flow(&e, lagc, &s, sent, s.n * (k + 1) / 4);
    }
    assert_int_equal(th_env_start_daemon(&e), 0);
    send_range(&e, &s, sent, s.n);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("did not catch up after the crashes");
    }
    verify_exact(&e);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    rd_kafka_destroy(lagc);
    stream_free(&s);
    th_env_teardown(&e);
}

static void test_sigterm_while_flowing_drains_and_loses_nothing(void **state) {
    (void)state;
    th_env_t e;
    stream_t s;
    stream_build(&s);
    assert_int_equal(th_env_setup(&e, 4, rules_dir,
                                  "  max_events: 40\n  max_wait: 2ms\n",
                                  "event:\n  dedup_max_ids: 0\n"), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    size_t half = s.n / 2;
    send_range(&e, &s, 0, half);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("did not process the first half");
    }
    /* SIGTERM while the second half is still arriving. */
    size_t quarter = half + s.n / 4;
    for (size_t i = half; i < quarter; i++)
        assert_int_equal(th_env_send(&e, e.crm, s.key[i], s.json[i]), 0);
    assert_int_equal(th_proc_signal(&e.daemon, SIGTERM), 0);
    send_range(&e, &s, quarter, s.n);
    int rc = th_proc_wait(&e.daemon, 30000);
    if (rc != 0) th_env_dump_log(&e);
    assert_int_equal(rc, 0);
    assert_true(th_file_count(e.log, "drained") >= 1);
    assert_int_equal(th_env_start_daemon(&e), 0);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("did not catch up after the drain");
    }
    verify_exact(&e);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    stream_free(&s);
    th_env_teardown(&e);
}

/* churnd resumes from the offsets in its state, whatever the group says;
 * on assignment it also commits them to the group, so lag tools see a
 * caught-up churnd as caught up even for a new group id (or one whose last
 * commit was lost), before any new event arrives. */
static void test_new_group_sees_the_stored_offsets(void **state) {
    (void)state;
    th_env_t e;
    stream_t s;
    stream_build(&s);
    assert_int_equal(th_env_setup(&e, 4, rules_dir, NULL, NULL), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    send_range(&e, &s, 0, s.n / 4);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("did not catch up");
    }
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    char group[160];
    snprintf(group, sizeof(group), "%s-renamed", e.group);
    assert_int_equal(setenv("CHURND_INPUT_GROUP_ID", group, 1), 0);
    int rc = th_env_start_daemon(&e);
    unsetenv("CHURND_INPUT_GROUP_ID");
    assert_int_equal(rc, 0);
    const char *topics[] = {e.crm, e.helpdesk};
    if (th_wait_caught_up(e.broker.bootstrap, group, topics, 2, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("the new group never saw churnd's stored offsets");
    }
    /* Nothing was read twice: the new group did not start from the
     * beginning (auto.offset.reset), it started where the state ends. */
    assert_int_equal(th_file_count(e.log, "from=\"auto.offset.reset\""), 0);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    stream_free(&s);
    th_env_teardown(&e);
}

/* The broker goes away while events are being processed and comes back:
 * churnd pauses (its consumer and producer reconnect by themselves, the
 * batch in hand waits for its acknowledgements) and resumes, exactly. */
static void test_broker_outage_pauses_and_resumes(void **state) {
    (void)state;
    th_env_t e;
    stream_t s;
    stream_build(&s);
    assert_int_equal(th_env_setup(&e, 4, rules_dir,
                                  "  max_events: 40\n  max_wait: 2ms\n",
                                  "event:\n  dedup_max_ids: 0\n"), 0);
    if (!e.broker.mock) { /* a real Kafka cannot be switched off from here */
        th_env_teardown(&e);
        stream_free(&s);
        skip();
    }
    assert_int_equal(th_env_start_daemon(&e), 0);
    size_t third = s.n / 3;
    send_range(&e, &s, 0, third);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("did not process the first third");
    }
    send_range(&e, &s, third, 2 * third);
    assert_int_equal(th_broker_set_up(&e.broker, 0), 0);
    /* down until churnd has noticed (a transport error in its log) */
    if (th_log_wait(e.log, "kafka error", WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("churnd never noticed the broker was gone");
    }
    assert_int_equal(th_broker_set_up(&e.broker, 1), 0);
    send_range(&e, &s, 2 * third, s.n);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("did not resume after the broker came back");
    }
    verify_exact(&e);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0); /* still running, drains */
    stream_free(&s);
    th_env_teardown(&e);
}

/* SIGTERM while the broker is unreachable: nothing is in flight, so the
 * drain commits, tries to leave the group for what is left of
 * shutdown.timeout (20s here) and exits 0 rather than hanging. */
static void test_sigterm_with_broker_down_is_bounded(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup(&e, 2, rules_dir, NULL, NULL), 0);
    if (!e.broker.mock) {
        th_env_teardown(&e);
        skip();
    }
    assert_int_equal(th_env_start_daemon(&e), 0);
    assert_int_equal(th_env_send(&e, e.crm, "A",
        "{\"id\":\"1\",\"type\":\"meeting.postponed\",\"client_id\":\"A\","
        "\"ts\":\"2026-05-01T10:00:00Z\"}"), 0);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("no catch-up");
    }
    assert_int_equal(th_broker_set_up(&e.broker, 0), 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(th_proc_signal(&e.daemon, SIGTERM), 0);
    int rc = th_proc_wait(&e.daemon, 40000);
    int64_t took = th_now_ms() - t0;
    fprintf(stderr, "drain with the broker down took %lld ms, exit %d\n",
            (long long)took, rc);
    if (rc != 0) th_env_dump_log(&e);
    assert_int_equal(rc, 0);
    assert_true(took < 30000);
    assert_int_equal(th_broker_set_up(&e.broker, 1), 0);
    th_env_teardown(&e);
}

static void send_detractor(th_env_t *e, const char *client) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s-1\",\"type\":\"survey.nps\",\"client_id\":\"%s\","
             "\"ts\":\"2026-05-01T10:00:00Z\",\"data\":{\"score\":2}}",
             client, client);
    assert_int_equal(th_env_send(e, e->crm, client, json), 0);
    assert_int_equal(th_flush(e->producer, WAIT_MS), 0);
}

/* SIGTERM while a batch waits for its alert's acknowledgement, with an
 * event fetched meanwhile that the drain no longer takes: when the
 * acknowledgement comes, the batch commits and the consumer leaves the
 * group with that event still in its queue. The close must drop it
 * (librdkafka aborted churnd there: a fetched message reached a queue
 * served for callbacks only), exit 0, and the next start reads it. */
static void test_sigterm_with_a_fetched_event_left_exits_cleanly(void **state) {
    (void)state;
    th_env_t e;
    /* crm alone: its one partition moves the watermark, and an event is
     * applied (and its alert produced) in the batch that took it. */
    assert_int_equal(th_env_setup_inputs(&e, 1, rules_dir, "  max_events: 1\n",
                                         "time:\n  allowed_lateness: 0s\n", 1), 0);
    /* A's alert cannot be acknowledged: its batch waits. */
    int rc = th_env_start_leaderless(&e, WAIT_MS);
    if (rc == 1) {
        th_env_teardown(&e);
        skip();
    }
    assert_int_equal(rc, 0);
    send_detractor(&e, "A");
    if (th_env_wait_metric(&e, "churnd_produce_in_flight", 1, WAIT_MS) < 1) {
        th_env_dump_log(&e);
        fail_msg("A's alert is not in flight");
    }
    assert_int_equal(th_proc_signal(&e.daemon, SIGTERM), 0);
    assert_int_equal(th_log_wait_from(e.log, e.log_from, "msg=draining", WAIT_MS), 0);
    /* B is fetched (the consumer's cached high watermark is past the
     * position) but not taken: the drain takes nothing new. */
    send_detractor(&e, "B");
    char lag[256];
    snprintf(lag, sizeof(lag), "churnd_consumer_lag{topic=\"%s\",partition=\"0\"}", e.crm);
    if (th_env_wait_metric(&e, lag, 1, WAIT_MS) < 1) {
        th_env_dump_log(&e);
        fail_msg("B was not fetched");
    }
    assert_int_equal(th_env_alerts_leader(&e, 1), 0);
    rc = th_proc_wait(&e.daemon, WAIT_MS);
    if (rc != 0) th_env_dump_log(&e);
    assert_int_equal(rc, 0);
    assert_int_equal(th_env_count_alerts(&e, "detractor", "B", NULL, NULL), 0);

    assert_int_equal(th_env_start_daemon(&e), 0);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("did not catch up after the drain");
    }
    assert_int_equal(th_env_count_alerts(&e, "detractor", "A", NULL, NULL), 1);
    assert_int_equal(th_env_count_alerts(&e, "detractor", "B", NULL, NULL), 1);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* A stored client record that churnd cannot decode (damaged, or from an
 * unknown future format) stops the daemon with a clear message and exit
 * code 2; the record is never silently replaced by an empty state. */
static void test_undecodable_state_stops_with_exit_2(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup(&e, 1, rules_dir, NULL, NULL), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    const char *ev = "{\"id\":\"1\",\"type\":\"meeting.postponed\",\"client_id\":\"A\","
                     "\"ts\":\"2026-05-01T10:00:00Z\"}";
    assert_int_equal(th_env_send(&e, e.crm, "A", ev), 0);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("no catch-up");
    }
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    /* damage A's record: a version byte no build knows */
    store_opts_t so = {.dir = e.state, .mode = STORE_READ_WRITE};
    store_t *st = NULL;
    churn_err_t err = {0};
    assert_int_equal(store_open(&so, &st, &err), 0);
    store_batch_t *b = store_batch_new();
    const unsigned char junk[] = {0xee, 0x01, 0x02};
    store_batch_put_client(b, 0, "A", 1, junk, sizeof(junk));
    assert_int_equal(store_commit(st, b, &err), 0);
    store_batch_free(b);
    store_close(st);

    assert_int_equal(th_env_start_daemon(&e), 0);
    const char *ev2 = "{\"id\":\"2\",\"type\":\"meeting.postponed\",\"client_id\":\"A\","
                      "\"ts\":\"2026-05-02T10:00:00Z\"}";
    assert_int_equal(th_env_send(&e, e.crm, "A", ev2), 0);
    assert_int_equal(th_flush(e.producer, WAIT_MS), 0);
    int rc = th_proc_wait(&e.daemon, WAIT_MS);
    if (rc != 2) th_env_dump_log(&e);
    assert_int_equal(rc, 2);
    assert_true(th_file_count(e.log, "stored state cannot be decoded") >= 1);
    /* and nothing was published for the event it could not apply */
    assert_int_equal(th_env_count_alerts(&e, NULL, "A", NULL, NULL), 0);
    th_env_teardown(&e);
}

int main(void) {
    if (!getcwd(rules_dir, sizeof(rules_dir) - 8)) return 1;
    strcat(rules_dir, "/rules");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_9_mid_stream_is_exact),
        cmocka_unit_test(test_sigterm_while_flowing_drains_and_loses_nothing),
        cmocka_unit_test(test_new_group_sees_the_stored_offsets),
        cmocka_unit_test(test_broker_outage_pauses_and_resumes),
        cmocka_unit_test(test_sigterm_with_broker_down_is_bounded),
        cmocka_unit_test(test_sigterm_with_a_fetched_event_left_exits_cleanly),
        cmocka_unit_test(test_undecodable_state_stops_with_exit_2),
    };
    return cmocka_run_group_tests_name("integration_restart", tests, NULL, NULL);
}
