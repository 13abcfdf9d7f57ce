/*
 * test_faults.c - churnd under injected faults: the broker refusing the
 * alerts (also while the group rebalances), an alerts topic that does not exist, a broker that is not there
 * at start, a state filesystem that fills up, a storm of rules reloads
 * (some broken), a flood of malformed input, and the group refusing
 * offset commits.
 *
 * Every test feeds the same kind of stream and checks it exactly (dedup is
 * off, so only churnd's delivery guarantee keeps the count right): "calm"
 * clients alternate a postponed and a held meeting, so their streak reaches
 * 2, and meetings_postponed fires, only if an event is counted twice or a
 * held meeting is skipped; "streak" clients end with a postponement and a
 * cancellation, so each must fire exactly one incident, which is missing if
 * an event was skipped. Alerts may be published more than once (at least
 * once), but always with the same alert_id.
 *
 * What test_restart already covers (kill -9 mid-stream, SIGTERM drains, the
 * broker going away while running) is not repeated here.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../lib/harness.h"

#define WAIT_MS 60000
#define N_CALM 40
#define N_STREAK 20
#define ROUNDS 4
#define N_EVENTS ((N_CALM + N_STREAK) * 2 * ROUNDS + 2 * N_STREAK)
#define API_PRODUCE 0 /* Kafka protocol ApiKey of Produce requests */
#define API_OFFSET_COMMIT 8 /* ... and of OffsetCommit requests */
#define BATCH_YAML "  max_events: 40\n  max_wait: 2ms\n"
#define NO_DEDUP "event:\n  dedup_max_ids: 0\n"

static char repo[1024];
static char rules_basic[1100]; /* detractor and meetings_postponed */

/* The stream every test feeds (built once by main). */
static struct {
    char key[32];
    char json[256];
} stream[N_EVENTS];
static size_t n_stream;

static void stream_add(const char *client, const char *type, int seq,
                       int minute) {
    if (n_stream >= N_EVENTS) abort();
    snprintf(stream[n_stream].key, sizeof(stream[n_stream].key), "%s", client);
    snprintf(stream[n_stream].json, sizeof(stream[n_stream].json),
             "{\"id\":\"%s/%d\",\"type\":\"%s\",\"client_id\":\"%s\","
             "\"ts\":\"2026-04-%02dT%02d:%02d:00Z\","
             "\"data\":{\"meeting_id\":\"M-%d\"}}",
             client, seq, type, client, 1 + minute / 1440, minute / 60 % 24,
             minute % 60, seq);
    n_stream++;
}

static void client_name(char *buf, size_t n, int c) {
    snprintf(buf, n, "%s-%03d", c < N_CALM ? "CALM" : "STREAK", c);
}

static void stream_build(void) {
    char client[32];
    int minute = 0;
    /* Round by round, every client's postponement, then every client's
     * held meeting: mid-round every streak is 1, so an event applied twice
     * anywhere shows. */
    for (int r = 0; r < ROUNDS; r++)
        for (int half = 0; half < 2; half++)
            for (int c = 0; c < N_CALM + N_STREAK; c++) {
                client_name(client, sizeof(client), c);
                stream_add(client, half ? "meeting.held" : "meeting.postponed",
                           2 * r + half, minute++);
            }
    for (int last = 0; last < 2; last++)
        for (int c = N_CALM; c < N_CALM + N_STREAK; c++) {
            client_name(client, sizeof(client), c);
            stream_add(client, last ? "meeting.cancelled" : "meeting.postponed",
                       2 * ROUNDS + last, minute++);
        }
}

static void send_range(th_env_t *e, size_t from, size_t to) {
    for (size_t i = from; i < to && i < n_stream; i++)
        assert_int_equal(th_env_send(e, e->crm, stream[i].key, stream[i].json), 0);
    assert_int_equal(th_flush(e->producer, WAIT_MS), 0);
}

static void must_settle(th_env_t *e, const char *what) {
    if (th_env_wait_caught_up(e, WAIT_MS) != 0) {
        th_env_dump_log(e);
        fail_msg("churnd did not settle: %s", what);
    }
}

static void setup(th_env_t *e, int partitions, const char *rules,
                  const char *extra) {
    assert_int_equal(th_env_setup_inputs(e, partitions, rules, BATCH_YAML,
                                         extra ? extra : NO_DEDUP, 1), 0);
}

/* setup on 2 partitions and start churnd, on the mock broker only: with a
 * real Kafka the faults cannot be injected from here, and the test is
 * skipped. */
static void start_on_mock(th_env_t *e) {
    setup(e, 2, rules_basic, NULL);
    if (!e->broker.mock) {
        th_env_teardown(e);
        skip();
    }
    assert_int_equal(th_env_start_daemon(e), 0);
}

/* The alerts topic holds exactly one incident per streak client (perhaps
 * published several times, always with the same id) and nothing else;
 * extra_client, when not NULL, must have fired once more. Returns the
 * number of alert messages. */
static size_t verify_exact(th_env_t *e, const char *extra_client) {
    th_msgs_t raw = {0};
    assert_int_equal(th_consume_to_end(e->broker.bootstrap, e->alerts, WAIT_MS,
                                       &raw), 0);
    static char ids[N_CALM + N_STREAK][256];
    memset(ids, 0, sizeof(ids));
    char extra_id[256] = "";
    for (size_t i = 0; i < raw.n; i++) {
        th_alert_t a;
        if (th_alert_parse(&raw.v[i], &a) != 0)
            fail_msg("not an alert: %s", raw.v[i].value);
        assert_string_equal(a.rule, "meetings_postponed");
        assert_string_equal(a.status, "firing");
        assert_string_equal(a.key, a.client);
        char *slot;
        if (extra_client && !strcmp(a.client, extra_client)) {
            slot = extra_id;
        } else if (!strncmp(a.client, "STREAK-", 7)) {
            int c = atoi(a.client + 7);
            assert_true(c >= N_CALM && c < N_CALM + N_STREAK);
            slot = ids[c];
        } else {
            fail_msg("an event was counted twice or skipped: %s", raw.v[i].value);
            return 0;
        }
        if (slot[0])
            assert_string_equal(slot, a.alert_id); /* a republished duplicate */
        else
            snprintf(slot, 256, "%s", a.alert_id);
    }
    for (int c = N_CALM; c < N_CALM + N_STREAK; c++)
        if (!ids[c][0])
            fail_msg("STREAK-%03d never fired: an event or alert was lost", c);
    if (extra_client && !extra_id[0]) fail_msg("%s never fired", extra_client);
    size_t n = raw.n;
    th_msgs_free(&raw);
    return n;
}

/* The daemon is still running (not exited). */
static int daemon_alive(th_env_t *e) {
    if (e->daemon.pid <= 0) return 0;
    int st;
    pid_t r = waitpid(e->daemon.pid, &st, WNOHANG);
    if (r == e->daemon.pid) {
        fprintf(stderr, "churnd exited: status 0x%x\n", st);
        e->daemon.pid = 0;
        return 0;
    }
    return r == 0;
}

/* Wait until the running daemon's log has at least n occurrences of needle
 * past `from`. */
static int log_count_from(const char *path, long from, const char *needle) {
    char *s = th_read_file(path);
    if (!s) return 0;
    int n = 0;
    if ((long)strlen(s) >= from)
        for (const char *p = s + from; (p = strstr(p, needle)); p += strlen(needle))
            n++;
    free(s);
    return n;
}

static void must_log(th_env_t *e, long from, const char *needle, const char *why) {
    if (th_log_wait_from(e->log, from, needle, WAIT_MS) != 0) {
        th_env_dump_log(e);
        fail_msg("no '%s' in the log: %s", needle, why);
    }
}

/* "msg=settled position=N " for the end of the input topic as of now. */
static void settled_needle(th_env_t *e, char *buf, size_t n) {
    const char *topics[1] = {e->crm};
    int64_t end = th_topics_end(e->broker.bootstrap, topics, 1);
    assert_true(end >= 0);
    snprintf(buf, n, "msg=settled position=%lld ", (long long)end);
}

/* Replace the first occurrence of `from` in the env's config file. */
static void cfg_replace(th_env_t *e, const char *from, const char *to) {
    char *s = th_read_file(e->cfg);
    assert_non_null(s);
    char *at = strstr(s, from);
    assert_non_null(at);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    assert_int_equal(th_write_file(e->cfg, out), 0);
    free(out);
    free(s);
}

/* The daemon that died without leaving the group holds its partitions
 * until its session ends: shorten it for tests that restart after a
 * crash or a fatal exit. */
static void short_session(th_env_t *e) {
    cfg_replace(e, "session.timeout.ms: \"6000\"", "session.timeout.ms: \"3000\"");
}

/* ---- 1. the broker refuses the alerts ---- */

/* Send stream[from, to) while churnd is stopped, so that it is on the
 * broker before Produce starts failing (the errors hit every producer of
 * the cluster, this test's too); then make the next n_errors Produce
 * requests fail (a mix of errors librdkafka retries by itself and
 * permanent ones it hands back to churnd), let churnd go on and wait for
 * its first failed delivery. */
#define MAX_PRODUCE_ERRORS 20000
static void send_while_produce_fails(th_env_t *e, size_t from, size_t to,
                                     size_t n_errors) {
    static rd_kafka_resp_err_t errs[MAX_PRODUCE_ERRORS];
    assert_true(n_errors <= MAX_PRODUCE_ERRORS);
    assert_int_equal(th_proc_signal(&e->daemon, SIGSTOP), 0);
    send_range(e, from, to);
    for (size_t i = 0; i < n_errors; i++)
        errs[i] = i % 2 ? RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
              : i % 4 ? RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS
                      : RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR;
    rd_kafka_mock_push_request_errors_array(e->broker.mock, API_PRODUCE, n_errors,
                                            errs);
    assert_int_equal(th_proc_signal(&e->daemon, SIGCONT), 0);
    must_log(e, e->log_from, "delivery failed", "Produce errors");
}

/* Produce requests fail (a mix of errors librdkafka retries by itself and
 * permanent ones it hands back to churnd) while the alerts of the stream
 * are due. No batch may commit past an alert that was not acknowledged:
 * churnd is killed -9 while the errors go on and restarted, and once they
 * stop every incident is on the alerts topic, exactly. */
static void test_produce_errors_hold_the_commit(void **state) {
    (void)state;
    th_env_t e;
    setup(&e, 2, rules_basic, NULL);
    if (!e.broker.mock) {
        th_env_teardown(&e);
        skip();
    }
    short_session(&e);
    assert_int_equal(th_env_start_daemon(&e), 0);
    size_t third = n_stream / 3;
    send_range(&e, 0, third);
    must_settle(&e, "first third");

    send_while_produce_fails(&e, third, n_stream, 4000);
    /* Nothing got through, so nothing may be settled at the end. */
    assert_int_equal(th_env_count_alerts(&e, NULL, NULL, NULL, NULL), 0);
    char needle[96];
    settled_needle(&e, needle, sizeof(needle));
    assert_int_equal(log_count_from(e.log, e.log_from, needle), 0);

    /* A crash now must lose nothing: the release batch that made the
     * alerts is not committed, so it is applied again after restart. */
    assert_int_equal(th_proc_signal(&e.daemon, SIGKILL), 0);
    assert_int_equal(th_proc_wait(&e.daemon, 10000), 128 + SIGKILL);
    assert_int_equal(th_env_start_daemon(&e), 0);
    /* The restarted churnd applies the uncommitted events again and its
     * alerts fail again; settling instead would mean that the batch had
     * been committed before its alerts were acknowledged. */
    int64_t deadline = th_now_ms() + WAIT_MS;
    while (log_count_from(e.log, e.log_from, "delivery failed") == 0) {
        if (log_count_from(e.log, e.log_from, needle) > 0)
            fail_msg("settled after restart with nothing to publish: a batch "
                     "was committed past alerts that were never acknowledged");
        if (th_now_ms() > deadline || !daemon_alive(&e)) {
            th_env_dump_log(&e);
            fail_msg("no delivery failure after the restart: nothing was "
                     "left to publish (a batch committed past alerts never "
                     "acknowledged?) or churnd stalled");
        }
        th_pause_ms(50);
    }
    assert_true(daemon_alive(&e));

    rd_kafka_mock_clear_request_errors(e.broker.mock, API_PRODUCE);
    must_settle(&e, "after the Produce errors stopped");
    size_t n = verify_exact(&e, NULL);
    fprintf(stderr, "produce errors: %zu alert messages for %d incidents\n", n,
            N_STREAK);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* A second member joins the group while churnd's batch waits for alerts
 * the broker keeps refusing; churnd goes on polling meanwhile (it may take
 * more events into that batch), so the rebalance reaches it then. It must
 * not give up a partition with state it has not committed: the revoke
 * waits for the commit, which waits for the alerts. Once they get through,
 * the newcomer gets its share; when it leaves, churnd takes the partitions
 * back from its own stored offsets and the stream comes out exact. */
static rd_kafka_t *cooperative_member(th_env_t *e) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", e->broker.bootstrap},
        {"group.id", e->group},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"enable.auto.commit", "false"},
        {"session.timeout.ms", "6000"},
        {"heartbeat.interval.ms", "500"},
        {"log_level", "3"},
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK)
            fail_msg("%s: %s", kv[i][0], errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) fail_msg("consumer: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, e->crm, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, t), 0);
    rd_kafka_topic_partition_list_destroy(t);
    return rk;
}

/* Partitions the member holds now. */
static int member_assigned(rd_kafka_t *rk) {
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(rk, &l) != 0 || !l) return 0;
    int n = l->cnt;
    rd_kafka_topic_partition_list_destroy(l);
    return n;
}

static void member_poll(rd_kafka_t *rk, int ms) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, ms);
    if (m) rd_kafka_message_destroy(m);
}

static void test_rebalance_waits_for_the_commit(void **state) {
    (void)state;
    th_env_t e;
    start_on_mock(&e);
    /* Everything up to the streak clients' cancellations: no alert yet. */
    size_t tail = n_stream - N_STREAK, some = tail + 5;
    send_range(&e, 0, tail);
    must_settle(&e, "before the cancellations");
    assert_int_equal(th_env_count_alerts(&e, NULL, NULL, NULL, NULL), 0);

    /* Five alerts, fewer events than batch.max_events: the batch stays
     * open and churnd keeps polling. */
    send_while_produce_fails(&e, tail, some, MAX_PRODUCE_ERRORS);

    rd_kafka_t *member = cooperative_member(&e);
    const char *waits = "rebalance waits for the batch in hand to commit";
    const char *revoked = "partition revoked";
    int64_t deadline = th_now_ms() + WAIT_MS;
    while (log_count_from(e.log, e.log_from, waits) == 0 &&
           log_count_from(e.log, e.log_from, revoked) == 0) {
        if (th_now_ms() > deadline || !daemon_alive(&e)) {
            rd_kafka_destroy(member);
            rd_kafka_mock_clear_request_errors(e.broker.mock, API_PRODUCE);
            th_env_dump_log(&e);
            fail_msg("no rebalance reached churnd while its batch was open");
        }
        member_poll(member, 50);
    }
    /* While the alerts fail, churnd gives nothing up. */
    for (int i = 0; i < 20; i++) member_poll(member, 50);
    if (log_count_from(e.log, e.log_from, revoked) > 0) {
        rd_kafka_destroy(member);
        rd_kafka_mock_clear_request_errors(e.broker.mock, API_PRODUCE);
        fail_msg("churnd gave up a partition before its batch committed");
    }
    assert_int_equal(member_assigned(member), 0);

    rd_kafka_mock_clear_request_errors(e.broker.mock, API_PRODUCE);
    deadline = th_now_ms() + WAIT_MS;
    while (member_assigned(member) == 0) {
        if (th_now_ms() > deadline) {
            rd_kafka_destroy(member);
            th_env_dump_log(&e);
            fail_msg("the newcomer never got a partition after the commit");
        }
        member_poll(member, 50);
    }
    assert_true(log_count_from(e.log, e.log_from, revoked) > 0);
    fprintf(stderr, "the newcomer got %d partition(s) after churnd committed\n",
            member_assigned(member));
    rd_kafka_consumer_close(member);
    rd_kafka_destroy(member);

    /* churnd takes everything back and finishes the stream. */
    send_range(&e, some, n_stream);
    must_settle(&e, "after the newcomer left");
    size_t n = verify_exact(&e, NULL);
    fprintf(stderr, "rebalance during a stalled batch: %zu alert messages for %d "
            "incidents\n", n, N_STREAK);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* ---- 2. the alerts topic does not exist ---- */

/* The broker says the alerts topic does not exist (as a Kafka without
 * topic auto-creation would). churnd keeps running, says in its log which
 * topic fails and why (retrying with back-off, as for any failed
 * delivery: SPEC 6 and the README's "the batch waits"), and commits
 * nothing past the alerts it could not deliver, as a kill -9 meanwhile
 * shows; once the topic is created, they are all delivered. */
static void test_missing_alerts_topic_waits_for_it(void **state) {
    (void)state;
    th_env_t e;
    setup(&e, 2, rules_basic, NULL);
    if (!e.broker.mock) {
        th_env_teardown(&e);
        skip();
    }
    char missing[sizeof(e.alerts)], from[200], to[220];
    assert_true(strlen(e.alerts) + sizeof("-missing") <= sizeof(missing));
    strcpy(missing, e.alerts);
    strcat(missing, "-missing");
    snprintf(from, sizeof(from), "alerts_topic: \"%s\"", e.alerts);
    snprintf(to, sizeof(to), "alerts_topic: \"%s\"", missing);
    cfg_replace(&e, from, to);
    short_session(&e);
    /* librdkafka gives up on an unknown topic after this (30s by default) */
    cfg_replace(&e, "kafka:\n",
                "kafka:\n  topic.metadata.propagation.max.ms: \"1000\"\n");
    rd_kafka_mock_topic_set_error(e.broker.mock, missing,
                                  RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    memcpy(e.alerts, missing, sizeof(missing));

    assert_int_equal(th_env_start_daemon(&e), 0);
    /* (consumption pauses while a batch's alerts wait: no lag wait here) */
    send_range(&e, 0, n_stream);
    /* the log names the topic and the error */
    char needle[300];
    snprintf(needle, sizeof(needle), " topic=%s error=", missing);
    must_log(&e, e.log_from, needle, "a failed delivery naming the topic");
    assert_true(log_count_from(e.log, e.log_from, "nknown topic") >= 1);
    /* a second round of retries: still running, still not settled */
    int failures = log_count_from(e.log, e.log_from, needle);
    int64_t deadline = th_now_ms() + WAIT_MS;
    while (log_count_from(e.log, e.log_from, needle) < failures + 2) {
        if (th_now_ms() > deadline) {
            th_env_dump_log(&e);
            fail_msg("churnd stopped retrying the missing topic");
        }
        th_pause_ms(50);
    }
    assert_true(daemon_alive(&e));
    char settled[96];
    settled_needle(&e, settled, sizeof(settled));
    assert_int_equal(log_count_from(e.log, e.log_from, settled), 0);

    /* Nothing was committed past the undelivered alerts: after kill -9 the
     * restarted churnd has them to publish again (and fails again). */
    assert_int_equal(th_proc_signal(&e.daemon, SIGKILL), 0);
    assert_int_equal(th_proc_wait(&e.daemon, 10000), 128 + SIGKILL);
    assert_int_equal(th_env_start_daemon(&e), 0);
    must_log(&e, e.log_from, needle, "the restarted churnd's failed delivery");
    assert_true(daemon_alive(&e));

    rd_kafka_mock_topic_set_error(e.broker.mock, missing, RD_KAFKA_RESP_ERR_NO_ERROR);
    must_settle(&e, "after the alerts topic appeared");
    verify_exact(&e, NULL);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* ---- 2b. restarted at the end of its input ---- */

/* Stopped with events still held (partitions never idle: an hour of
 * idle_timeout), restarted with nothing new to read: the restarted churnd
 * must see its partitions caught up from the offsets it resumes at, let
 * them go idle and release what is held. Before the fix it never did:
 * the consumer's position is unknown until a message is consumed. */
static void test_restart_at_end_releases_held_events(void **state) {
    (void)state;
    th_env_t e;
    setup(&e, 2, rules_basic, NO_DEDUP "time:\n  idle_timeout: 1h\n");
    assert_int_equal(th_env_start_daemon(&e), 0);
    send_range(&e, 0, n_stream);
    if (th_env_wait_consumed(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("churnd did not consume the stream");
    }
    /* the stream's last event (an incident's start) is beyond the
     * watermark: held, so at least one incident is not out yet */
    size_t before = th_env_count_alerts(&e, NULL, NULL, NULL, NULL);
    assert_true(before < N_STREAK);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    cfg_replace(&e, "idle_timeout: 1h", "idle_timeout: 1s");
    assert_int_equal(th_env_start_daemon(&e), 0);
    must_settle(&e, "restarted with nothing new to read");
    verify_exact(&e, NULL);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* ---- 3. no broker at start ---- */

/* churnd starts while the broker is down: it neither exits nor gives up;
 * once the broker is up it processes everything that was waiting. */
static void test_broker_down_at_start(void **state) {
    (void)state;
    th_env_t e;
    setup(&e, 2, rules_basic, NULL);
    if (!e.broker.mock) {
        th_env_teardown(&e);
        skip();
    }
    size_t half = n_stream / 2;
    send_range(&e, 0, half);
    assert_int_equal(th_broker_set_up(&e.broker, 0), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    must_log(&e, e.log_from, "kafka error", "the broker is unreachable");
    must_log(&e, e.log_from, "msg=started", "start-up without a broker");
    assert_true(daemon_alive(&e));
    assert_int_equal(th_broker_set_up(&e.broker, 1), 0);
    send_range(&e, half, n_stream);
    must_settle(&e, "after the broker came up");
    verify_exact(&e, NULL);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* ---- 4. the state filesystem fills up ---- */

/* A private mount namespace for this process (and its children), so the
 * tmpfs below disappears with it whatever happens. 0 or -1. */
static int private_mounts(void) {
    static int done = 0;
    if (done) return 0;
    if (unshare(CLONE_NEWNS) != 0) return -1;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
    done = 1;
    return 0;
}

/* Write a file until the filesystem has no room left. */
static void fill_fs(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[65536];
    memset(block, 'x', sizeof(block));
    size_t chunk = sizeof(block);
    for (;;) {
        ssize_t w = write(fd, block, chunk);
        if (w > 0) continue;
        if (w < 0 && errno == EINTR) continue;
        assert_true(w < 0 && errno == ENOSPC);
        if (chunk == 1) break;
        chunk /= 2; /* fill the last pages too */
    }
    close(fd);
}

/* RocksDB cannot write any more (its filesystem is full): churnd stops with
 * a fatal line naming the state directory and exit code 2, having
 * committed nothing it could not write. With room again, a restart picks
 * up where the last commit left off: nothing lost, nothing twice. */
static void test_full_state_disk_stops_with_exit_2(void **state) {
    (void)state;
    th_env_t e;
    setup(&e, 2, rules_basic, NULL);
    if (private_mounts() != 0 || mkdir(e.state, 0700) != 0 ||
        mount("tmpfs", e.state, "tmpfs", 0, "size=16m") != 0) {
        print_message("cannot mount a tmpfs here (not root?): skipped\n");
        th_env_teardown(&e);
        skip();
    }
    short_session(&e);
    assert_int_equal(th_env_start_daemon(&e), 0);
    size_t half = n_stream / 2;
    send_range(&e, 0, half);
    must_settle(&e, "first half");

    char filler[600];
    snprintf(filler, sizeof(filler), "%s/zz-filler", e.state);
    fill_fs(filler);
    send_range(&e, half, n_stream);
    int rc = th_proc_wait(&e.daemon, WAIT_MS);
    if (rc != 2) th_env_dump_log(&e);
    assert_int_equal(rc, 2);
    char needle[700];
    snprintf(needle, sizeof(needle), "state directory %s", e.state);
    assert_true(log_count_from(e.log, e.log_from, needle) >= 1);
    assert_true(log_count_from(e.log, e.log_from, "level=fatal") >= 1);
    assert_true(log_count_from(e.log, e.log_from, "exit_code=2") >= 1);

    assert_int_equal(unlink(filler), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    must_settle(&e, "restart with room on the disk");
    verify_exact(&e, NULL);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    assert_int_equal(umount2(e.state, MNT_DETACH), 0);
    th_env_teardown(&e);
}

/* ---- 5. a storm of reloads ---- */

static void copy_file(const char *from, const char *to, int generation) {
    char *s = th_read_file(from);
    assert_non_null(s);
    size_t n = strlen(s) + 64;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%s\n# generation %d\n", s, generation);
    assert_int_equal(th_write_file(to, out), 0);
    free(out);
    free(s);
}

/* Write generation g of the rules into its own directory (a valid copy of
 * rules-basic, plus a broken file when `broken`) and swap it in at once:
 * rules.dir is a symlink replaced by rename(2). */
static void rules_generation(const char *base, int g, int broken) {
    static const char *const breakage[] = {
        /* YAML that does not parse */
        "rules:\n  oops: [\n",
        /* a name already taken by another file */
        "rules:\n  meetings_postponed:\n    on: survey.nps\n    when: 'true'\n",
        /* an expression that does not compile */
        "rules:\n  bad:\n    on: survey.nps\n    when: 'data.score >>> 3'\n",
    };
    char dir[1400], path[1600], from[1600], link[1400], tmp[1400];
    snprintf(dir, sizeof(dir), "%s/gen-%d", base, g);
    assert_int_equal(mkdir(dir, 0700), 0);
    const char *files[] = {"detractor.yaml", "meetings_postponed.yaml"};
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof(from), "%s/%s", rules_basic, files[i]);
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        copy_file(from, path, g);
    }
    if (broken) {
        snprintf(path, sizeof(path), "%s/zz-broken.yaml", dir);
        assert_int_equal(th_write_file(path, breakage[g % 3]), 0);
    }
    snprintf(link, sizeof(link), "%s/rules", base);
    snprintf(tmp, sizeof(tmp), "%s/rules.tmp", base);
    unlink(tmp);
    assert_int_equal(symlink(dir, tmp), 0);
    assert_int_equal(rename(tmp, link), 0);
}

/* SIGHUP after SIGHUP while events flow, a third of them with a broken
 * set on disk: churnd keeps running on the last good set, rejects the
 * broken ones, and the stream's alerts are exact. The storm ends on a
 * broken set; a client fed after that still fires. */
static void test_reload_storm_keeps_the_last_good_set(void **state) {
    (void)state;
    char base[256], link[300];
    assert_int_equal(th_tmpdir(base, sizeof(base)), 0);
    snprintf(link, sizeof(link), "%s/rules", base);
    rules_generation(base, 0, 0);
    th_env_t e;
    setup(&e, 2, link, NULL);
    assert_int_equal(th_env_start_daemon(&e), 0);
    /* Until its handler is installed, SIGHUP's default action kills. */
    must_log(&e, e.log_from, "msg=started", "start-up");
    const int storm = 30;
    size_t sent = 0;
    for (int g = 1; g <= storm; g++) {
        rules_generation(base, g, g % 3 == 1 || g == storm);
        assert_int_equal(th_proc_signal(&e.daemon, SIGHUP), 0);
        size_t to = n_stream * (size_t)g / (size_t)storm;
        for (; sent < to; sent++)
            assert_int_equal(th_env_send(&e, e.crm, stream[sent].key,
                                         stream[sent].json), 0);
        rd_kafka_poll(e.producer, 0);
        if (g % 10 == 0) assert_int_equal(th_flush(e.producer, WAIT_MS), 0);
    }
    assert_int_equal(th_flush(e.producer, WAIT_MS), 0);
    /* Signals may merge; one more, after which a rejection must show: the
     * set on disk is broken now, whichever signal reads it. */
    long mark = th_file_size(e.log);
    assert_int_equal(th_proc_signal(&e.daemon, SIGHUP), 0);
    must_log(&e, mark, "reload rejected", "the final, broken set");
    must_settle(&e, "after the storm");
    assert_true(daemon_alive(&e));
    assert_true(log_count_from(e.log, e.log_from, "msg=reloaded") >= 1);
    fprintf(stderr, "reload storm: %d reloaded, %d rejected\n",
            log_count_from(e.log, e.log_from, "msg=reloaded"),
            log_count_from(e.log, e.log_from, "reload rejected"));
    /* the last good set is what runs now */
    assert_int_equal(th_env_send(&e, e.crm, "AFTER-STORM",
        "{\"id\":\"as1\",\"type\":\"meeting.postponed\",\"client_id\":\"AFTER-STORM\","
        "\"ts\":\"2026-04-20T10:00:00Z\"}"), 0);
    assert_int_equal(th_env_send(&e, e.crm, "AFTER-STORM",
        "{\"id\":\"as2\",\"type\":\"meeting.cancelled\",\"client_id\":\"AFTER-STORM\","
        "\"ts\":\"2026-04-20T11:00:00Z\"}"), 0);
    must_settle(&e, "the client after the storm");
    verify_exact(&e, "AFTER-STORM");
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
    th_rmtree(base);
}

/* ---- 6. a flood of malformed input ---- */

#define N_BAD (N_EVENTS / 2)
#define MAX_BYTES 2048

static struct {
    char key[32];
    unsigned char val[MAX_BYTES + 512];
    size_t len;
    int seen;
} bad[N_BAD];

/* The i-th malformed message: every reason churnd knows, in turn, each
 * made unique by i so its bytes can be found again. */
static void bad_build(size_t i) {
    unsigned char *v = bad[i].val;
    size_t cap = sizeof(bad[i].val);
    int n = 0;
    snprintf(bad[i].key, sizeof(bad[i].key), i % 5 ? "BAD-%zu" : "", i);
    switch (i % 10) {
    case 0: n = snprintf((char *)v, cap, "{\"id\": \"b%zu\", broken", i); break;
    case 1: /* not UTF-8 */
        n = snprintf((char *)v, cap,
                     "{\"id\":\"b%zu\",\"type\":\"meeting.held\",\"client_id\":"
                     "\"\xff\xfe\",\"ts\":\"2026-04-01T00:00:00Z\"}", i);
        break;
    case 2: n = snprintf((char *)v, cap, "[%zu, 2, 3]", i); break;
    case 3: { /* too deep */
        n = 0;
        for (int d = 0; d < 40; d++) n += snprintf((char *)v + n, cap - (size_t)n, "{\"a\":");
        n += snprintf((char *)v + n, cap - (size_t)n, "%zu", i);
        for (int d = 0; d < 40; d++) v[n++] = '}';
        break;
    }
    case 4: { /* too large, though valid */
        n = snprintf((char *)v, cap,
                     "{\"id\":\"b%zu\",\"type\":\"meeting.held\",\"client_id\":"
                     "\"BIG\",\"ts\":\"2026-04-01T00:00:00Z\",\"pad\":\"", i);
        while (n < MAX_BYTES + 100) v[n++] = 'p';
        n += snprintf((char *)v + n, cap - (size_t)n, "\"}");
        break;
    }
    case 5:
        n = snprintf((char *)v, cap, "{\"id\":\"b%zu\",\"type\":\"meeting.held\","
                     "\"ts\":\"2026-04-01T00:00:00Z\"}", i);
        break;
    case 6:
        n = snprintf((char *)v, cap, "{\"id\":\"b%zu\",\"client_id\":\"X\","
                     "\"ts\":\"2026-04-01T00:00:00Z\"}", i);
        break;
    case 7:
        n = snprintf((char *)v, cap, "{\"id\":\"b%zu\",\"type\":\"meeting.held\","
                     "\"client_id\":\"X\",\"ts\":\"yesterday\"}", i);
        break;
    case 8: /* binary, NUL bytes included */
        n = snprintf((char *)v, cap, "?%zu", i);
        v[n++] = '\0';
        v[n++] = 0x01;
        v[n++] = '\0';
        break;
    default: /* JSON with a NUL byte inside */
        n = snprintf((char *)v, cap, "{\"id\":\"b%zu\"", i);
        v[n++] = '\0';
        n += snprintf((char *)v + n, cap - (size_t)n, ",\"type\":\"x\"}");
        break;
    }
    bad[i].len = (size_t)n;
    bad[i].seen = 0;
}

/* Bad messages mixed into the good stream, one after every second good
 * event: each bad one is on the dead-letter topic once, with its original
 * bytes and key and a reason; the good ones give the exact alerts. */
static void test_malformed_flood_all_dead_lettered(void **state) {
    (void)state;
    th_env_t e;
    setup(&e, 2, rules_basic, NO_DEDUP "  max_bytes: 2KiB\n");
    assert_int_equal(th_env_start_daemon(&e), 0);
    size_t nb = 0;
    for (size_t i = 0; i < n_stream; i++) {
        assert_int_equal(th_env_send(&e, e.crm, stream[i].key, stream[i].json), 0);
        if (i % 2 && nb < N_BAD) {
            bad_build(nb);
            assert_int_equal(th_produce(e.producer, e.crm,
                                        bad[nb].key[0] ? bad[nb].key : NULL,
                                        bad[nb].val, bad[nb].len), 0);
            nb++;
        }
    }
    assert_int_equal(th_flush(e.producer, WAIT_MS), 0);
    must_settle(&e, "the flood");
    verify_exact(&e, NULL);

    th_msgs_t dl = {0};
    assert_int_equal(th_consume_to_end(e.broker.bootstrap, e.dlq, WAIT_MS, &dl), 0);
    fprintf(stderr, "malformed flood: %zu bad sent, %zu dead letters\n", nb, dl.n);
    assert_int_equal(dl.n, nb);
    for (size_t j = 0; j < dl.n; j++) {
        const th_msg_t *m = &dl.v[j];
        assert_non_null(th_header(m, "churnd.reason"));
        assert_non_null(th_header(m, "churnd.offset"));
        size_t k = 0;
        for (; k < nb; k++)
            if (!bad[k].seen && bad[k].len == m->value_len &&
                !memcmp(bad[k].val, m->value, m->value_len) &&
                !strcmp(bad[k].key, m->key))
                break;
        if (k == nb)
            fail_msg("dead letter %zu (reason %s) matches no message sent once",
                     j, th_header(m, "churnd.reason"));
        bad[k].seen = 1;
    }
    th_msgs_free(&dl);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* Each test's wall time on stderr: the file must stay well within the
 * time make check gives it. */
static int64_t t_start;

static int timer_start(void **state) {
    (void)state;
    t_start = th_now_ms();
    return 0;
}

static int timer_report(void **state) {
    (void)state;
    fprintf(stderr, "took %lld ms\n", (long long)(th_now_ms() - t_start));
    return 0;
}

/* The group's offsets mirror RocksDB's for lag tools. When the group
 * refuses them (its coordinator away, say) while the last events go by,
 * churnd commits them again once it can, instead of leaving the group
 * behind until the next event: here no event follows at all. */
static void test_failed_group_commit_is_retried(void **state) {
    (void)state;
    th_env_t e;
    start_on_mock(&e);
    size_t half = n_stream / 2;
    send_range(&e, 0, half);
    must_settle(&e, "first half");

    /* Every commit to the group fails while the second half goes by: a
     * non-retriable error, so librdkafka does not try again by itself. */
    rd_kafka_resp_err_t errs[64];
    for (size_t i = 0; i < 64; i++)
        errs[i] = RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE;
    for (int k = 0; k < 64; k++) /* 4,096: more than the run can use */
        rd_kafka_mock_push_request_errors_array(e.broker.mock,
                                                API_OFFSET_COMMIT, 64, errs);
    long from = th_file_size(e.log);
    send_range(&e, half, n_stream);
    char needle[96];
    settled_needle(&e, needle, sizeof(needle));
    if (th_log_wait_from(e.log, from, needle, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("churnd did not apply the second half");
    }
    if (th_log_wait_from(e.log, from, "group offset commit failed", WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("the injected errors never reached churnd");
    }
    /* Applied and stored, but the group has not been told. */
    const char *topics[] = {e.crm, e.helpdesk};
    assert_true(th_group_lag(e.broker.bootstrap, e.group, topics, 2) > 0);

    rd_kafka_mock_clear_request_errors(e.broker.mock, API_OFFSET_COMMIT);
    must_settle(&e, "after the group accepted commits again");
    verify_exact(&e, NULL);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

#define T(f) cmocka_unit_test_setup_teardown(f, timer_start, timer_report)

int main(void) {
    if (!getcwd(repo, sizeof(repo))) return 1;
    snprintf(rules_basic, sizeof(rules_basic), "%s/tests/data/rules-basic", repo);
    stream_build();
    if (n_stream != N_EVENTS) return 1;
    const char *only = getenv("CHURND_TEST_FILTER"); /* e.g. "*storm*" */
    if (only && *only) cmocka_set_test_filter(only);
    const struct CMUnitTest tests[] = {
        T(test_produce_errors_hold_the_commit),
        T(test_rebalance_waits_for_the_commit),
        T(test_missing_alerts_topic_waits_for_it),
        T(test_restart_at_end_releases_held_events),
        T(test_broker_down_at_start),
        T(test_full_state_disk_stops_with_exit_2),
        T(test_reload_storm_keeps_the_last_good_set),
        T(test_malformed_flood_all_dead_lettered),
        T(test_failed_group_commit_is_retried),
    };
    return cmocka_run_group_tests_name("integration_faults", tests, NULL, NULL);
}
