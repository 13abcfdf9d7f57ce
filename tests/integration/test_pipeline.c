/*
 * test_pipeline.c - churnd as a separate process against a broker on
 * loopback (the mock cluster in this process, or CHURND_TEST_BOOTSTRAP):
 * events in over Kafka, exact alerts and dead letters out over Kafka.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "../lib/harness.h"

#define WAIT_MS 60000

static char rules_dir[1024];

static size_t read_alerts(th_env_t *e, th_alert_t **out, th_msgs_t *raw) {
    assert_int_equal(th_consume_to_end(e->broker.bootstrap, e->alerts, WAIT_MS, raw), 0);
    th_alert_t *v = calloc(raw->n + 1, sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < raw->n; i++) {
        if (th_alert_parse(&raw->v[i], &v[i]) != 0)
            fail_msg("alert is not valid JSON with rule/client_id/alert_id: %s",
                     raw->v[i].value);
    }
    *out = v;
    return raw->n;
}

static void must_catch_up(th_env_t *e) {
    if (th_env_wait_caught_up(e, WAIT_MS) != 0) {
        th_env_dump_log(e);
        fail_msg("churnd did not commit every event within %d ms", WAIT_MS);
    }
}

/* The bundled demo stream: the alerts a person expects from its stories,
 * exactly, and its three malformed lines as dead letters. */
static void test_demo_stream_alerts_and_dead_letters(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup(&e, 3, rules_dir, NULL, NULL), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    assert_true(th_env_send_file(&e, e.crm, "tests/data/demo/crm.jsonl") > 0);
    assert_true(th_env_send_file(&e, e.helpdesk, "tests/data/demo/helpdesk.jsonl") > 0);
    must_catch_up(&e);

    th_msgs_t raw = {0};
    th_alert_t *a = NULL;
    size_t n_all = read_alerts(&e, &a, &raw);
    /* Once every partition is idle the watermark follows the wall clock:
     * the stories' silences after the stream's last event (2026-03-25)
     * then fire too (aftercare, decision maker, order decline). Those are
     * right, but depend on today's date; the stream's own alerts are the
     * ones up to its end, and nothing after it may be event-triggered. */
    const char *horizon = "2026-03-25T09:00:00Z";
    size_t n = 0;
    for (size_t i = 0; i < n_all; i++) {
        fprintf(stderr, "alert: %s %s %s %s %s\n", a[i].rule, a[i].client,
                a[i].status, a[i].at, a[i].alert_id);
        if (strcmp(a[i].at, horizon) <= 0)
            a[n++] = a[i];
        else
            assert_null(strstr(raw.v[i].value, "\"event_id\""));
    }
    /* GLOBEX-002: postponed, then cancelled (the duplicate delivery of the
     * cancellation counts once), then a held meeting resolves it. */
    assert_int_equal(th_alerts_count(a, n, "meetings_postponed", "GLOBEX-002",
                                     "firing", "2026-03-10T10:00:00Z"), 1);
    assert_int_equal(th_alerts_count(a, n, "meetings_postponed", "GLOBEX-002",
                                     "resolved", "2026-03-20T10:00:00Z"), 1);
    /* UMBRELLA-004: a held meeting in between resets the streak. */
    assert_int_equal(th_alerts_count(a, n, NULL, "UMBRELLA-004", NULL, NULL), 0);
    assert_int_equal(th_alerts_count(a, n, "detractor", "INITECH-003", "firing",
                                     "2026-03-08T12:00:00Z"), 1);
    assert_int_equal(th_alerts_count(a, n, "detractor", "HOOLI-005", "firing",
                                     "2026-03-09T12:00:00Z"), 1);
    assert_int_equal(th_alerts_count(a, n, "detractor", "HOOLI-005", "resolved",
                                     "2026-03-16T12:00:00Z"), 1);
    assert_int_equal(th_alerts_count(a, n, NULL, "ACME-001", NULL, NULL), 0);
    assert_int_equal(th_alerts_count(a, n, NULL, "STARK-006", NULL, NULL), 0);
    /* WAYNE-007: a complaint left unanswered, then a detractor score; the
     * two together put its risk over churn_risk's bar until the complaint's
     * weight has decayed. It cancels its contract on 03-23 (no alert: the
     * report tells that story, test_inspect). */
    assert_int_equal(th_alerts_count(a, n, "complaint_unanswered", "WAYNE-007", "firing",
                                     "2026-03-06T08:00:00Z"), 1);
    assert_int_equal(th_alerts_count(a, n, "detractor", "WAYNE-007", "firing",
                                     "2026-03-12T12:00:00Z"), 1);
    assert_int_equal(th_alerts_count(a, n, "churn_risk", "WAYNE-007", "firing",
                                     "2026-03-12T12:00:00Z"), 1);
    assert_int_equal(th_alerts_count(a, n, "churn_risk", "WAYNE-007", "resolved",
                                     "2026-03-16T00:00:00Z"), 1);
    assert_int_equal(n, 9);
    for (size_t i = 0; i < n; i++) {
        /* keyed by client; a resolution carries its firing's id */
        assert_string_equal(a[i].key, a[i].client);
        if (!strcmp(a[i].status, "resolved")) {
            size_t same = 0;
            for (size_t j = 0; j < n; j++)
                if (!strcmp(a[j].alert_id, a[i].alert_id) &&
                    !strcmp(a[j].status, "firing"))
                    same++;
            assert_int_equal(same, 1);
        }
    }
    free(a);
    th_msgs_free(&raw);

    th_msgs_t dl = {0};
    assert_int_equal(th_consume_to_end(e.broker.bootstrap, e.dlq, WAIT_MS, &dl), 0);
    assert_int_equal(dl.n, 3);
    int bad_time = 0, not_json = 0, no_client = 0;
    for (size_t i = 0; i < dl.n; i++) {
        const char *r = th_header(&dl.v[i], "churnd.reason");
        assert_non_null(r);
        if (!strcmp(r, "bad_time")) {
            bad_time++;
            assert_string_equal(th_header(&dl.v[i], "churnd.topic"), e.crm);
            assert_non_null(strstr(dl.v[i].value, "\"yesterday\""));
        } else if (!strcmp(r, "not_json")) {
            not_json++;
            assert_string_equal(dl.v[i].value, "this is not JSON at all");
            assert_string_equal(th_header(&dl.v[i], "churnd.topic"), e.helpdesk);
        } else if (!strcmp(r, "no_client")) {
            no_client++;
        }
        assert_non_null(th_header(&dl.v[i], "churnd.partition"));
        assert_non_null(th_header(&dl.v[i], "churnd.offset"));
        assert_non_null(th_header(&dl.v[i], "churnd.detail"));
    }
    assert_int_equal(bad_time, 1);
    assert_int_equal(not_json, 1);
    assert_int_equal(no_client, 1);
    th_msgs_free(&dl);

    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* Every kind of malformed input is a dead letter with its original bytes
 * and exact source coordinates; the good events around it still count. */
static void test_every_malformed_kind_is_a_dead_letter(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup(&e, 1, rules_dir,
                                  "  max_events: 3\n  max_wait: 5ms\n",
                                  "event:\n  max_bytes: 2048\n  max_depth: 8\n"), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    char big[4096];
    memset(big, 'x', sizeof(big));
    const char *head = "{\"id\":\"big\",\"type\":\"survey.nps\",\"client_id\":\"B\",\"pad\":\"";
    memcpy(big, head, strlen(head));
    memcpy(big + sizeof(big) - 3, "\"}", 3);
    struct { const char *json; const char *reason; } bad[] = {
        {"not json", "not_json"},
        {"[1,2,3]", "not_object"},
        {"{\"id\":\"1\",\"type\":\"survey.nps\",\"ts\":\"2026-03-01T00:00:00Z\"}", "no_client"},
        {"{\"id\":\"2\",\"client_id\":\"X\",\"ts\":\"2026-03-01T00:00:00Z\"}", "no_type"},
        {"{\"id\":\"3\",\"client_id\":\"X\",\"type\":\"survey.nps\"}", "no_time"},
        {"{\"id\":\"4\",\"client_id\":\"X\",\"type\":\"survey.nps\",\"ts\":\"2026-02-30T00:00:00Z\"}", "bad_time"},
        {"{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{\"i\":1}}}}}}}}}", "too_deep"},
        {big, "too_large"},
        {"{\"id\":\"5\",\"client_id\":\"X\",\"type\":\"survey.nps\",\"ts\":\"2026-03-01T00:00:00Z\",\"data\":{\"score\":3}} trailing", "not_json"},
    };
    const size_t n_bad = sizeof(bad) / sizeof(bad[0]);
    /* good, bad, good, bad, ... : one partition, so offsets are known */
    int64_t off = 0;
    char good[512];
    for (size_t i = 0; i < n_bad; i++) {
        snprintf(good, sizeof(good),
                 "{\"id\":\"g%zu\",\"type\":\"survey.nps\",\"client_id\":\"C%zu\","
                 "\"ts\":\"2026-03-01T10:00:%02zuZ\",\"data\":{\"score\":2}}",
                 i, i, i);
        assert_int_equal(th_env_send(&e, e.helpdesk, "k", good), 0);
        off++;
        assert_int_equal(th_env_send(&e, e.helpdesk, "k", bad[i].json), 0);
        off++;
    }
    must_catch_up(&e);
    th_msgs_t dl = {0};
    assert_int_equal(th_consume_to_end(e.broker.bootstrap, e.dlq, WAIT_MS, &dl), 0);
    assert_int_equal(dl.n, n_bad);
    for (size_t i = 0; i < n_bad; i++) {
        const th_msg_t *m = &dl.v[i];
        assert_string_equal(th_header(m, "churnd.reason"), bad[i].reason);
        assert_string_equal(th_header(m, "churnd.topic"), e.helpdesk);
        assert_string_equal(th_header(m, "churnd.partition"), "0");
        char want_off[32];
        snprintf(want_off, sizeof(want_off), "%zu", 2 * i + 1);
        assert_string_equal(th_header(m, "churnd.offset"), want_off);
        assert_int_equal(m->value_len, strlen(bad[i].json));
        assert_memory_equal(m->value, bad[i].json, m->value_len);
        assert_string_equal(m->key, "k");
    }
    th_msgs_free(&dl);
    /* every good event (an NPS of 2) fired for its own client */
    th_msgs_t raw = {0};
    th_alert_t *a = NULL;
    size_t n = read_alerts(&e, &a, &raw);
    assert_int_equal(n, n_bad);
    for (size_t i = 0; i < n_bad; i++) {
        char client[16];
        snprintf(client, sizeof(client), "C%zu", i);
        assert_int_equal(th_alerts_count(a, n, "detractor", client, "firing", NULL), 1);
    }
    free(a);
    th_msgs_free(&raw);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    assert_true(th_file_count(e.log, "invalid event sent to the dead-letter topic") > 0);
    th_env_teardown(&e);
}

/* An upstream that delivers twice: the same id for the same client counts
 * once, so one postponement sent twice is not "two in a row". The same id
 * under another client is a different event. */
static void test_duplicate_event_ids_count_once(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup(&e, 2, rules_dir, NULL, NULL), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    const char *p1 = "{\"id\":\"p-1\",\"type\":\"meeting.postponed\",\"client_id\":\"DUP-1\",\"ts\":\"2026-04-01T09:00:00Z\",\"data\":{\"meeting_id\":\"M1\"}}";
    const char *p1_other = "{\"id\":\"p-1\",\"type\":\"meeting.postponed\",\"client_id\":\"DUP-2\",\"ts\":\"2026-04-01T09:00:00Z\",\"data\":{\"meeting_id\":\"M1\"}}";
    const char *p2_other = "{\"id\":\"p-2\",\"type\":\"meeting.postponed\",\"client_id\":\"DUP-2\",\"ts\":\"2026-04-02T09:00:00Z\",\"data\":{\"meeting_id\":\"M1\"}}";
    assert_int_equal(th_env_send(&e, e.crm, "DUP-1", p1), 0);
    assert_int_equal(th_env_send(&e, e.crm, "DUP-1", p1), 0);
    assert_int_equal(th_env_send(&e, e.crm, "DUP-2", p1_other), 0);
    assert_int_equal(th_env_send(&e, e.crm, "DUP-2", p2_other), 0);
    must_catch_up(&e);
    th_msgs_t raw = {0};
    th_alert_t *a = NULL;
    size_t n = read_alerts(&e, &a, &raw);
    assert_int_equal(th_alerts_count(a, n, NULL, "DUP-1", NULL, NULL), 0);
    assert_int_equal(th_alerts_count(a, n, "meetings_postponed", "DUP-2", "firing",
                                     "2026-04-02T09:00:00Z"), 1);
    assert_int_equal(n, 1);
    free(a);
    th_msgs_free(&raw);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* The helpdesk topic runs ahead of the CRM topic: a client's survey of
 * 03-03 arrives before its postponements of 03-01 and 03-02. Rules must
 * see them in event time, so the postponement alert (03-02) carries the
 * risk of the postponements alone, not that of the detractor alert that
 * only comes a day later. */
static void send_ord(th_env_t *e, const char *topic, const char *id,
                     const char *type, const char *ts, const char *data) {
    char json[512];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s\",\"type\":\"%s\",\"client_id\":\"ORD-1\","
             "\"ts\":\"%s\",\"data\":%s}", id, type, ts, data);
    assert_int_equal(th_env_send(e, topic, "ORD-1", json), 0);
}

static void test_topics_meet_in_event_time_order(void **state) {
    (void)state;
    th_env_t e;
    /* Partitions never go idle here: the quiet CRM topic holds the
     * watermark, as a slow topic of a live pipeline would. */
    assert_int_equal(th_env_setup(&e, 1, rules_dir, NULL,
                                  "time:\n  idle_timeout: 1h\n"), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    send_ord(&e, e.helpdesk, "s1", "survey.nps", "2026-03-03T10:00:00Z", "{\"score\":2}");
    assert_int_equal(th_env_wait_consumed(&e, WAIT_MS), 0);
    send_ord(&e, e.crm, "p1", "meeting.postponed", "2026-03-01T10:00:00Z",
             "{\"meeting_id\":\"M1\"}");
    send_ord(&e, e.crm, "p2", "meeting.postponed", "2026-03-02T10:00:00Z",
             "{\"meeting_id\":\"M2\"}");
    /* CRM reaches 03-04: the watermark passes the survey too. */
    send_ord(&e, e.crm, "o1", "order.placed", "2026-03-04T10:00:00Z",
             "{\"order_id\":\"O1\",\"amount\":10}");
    assert_int_equal(th_env_wait_consumed(&e, WAIT_MS), 0);
    th_msgs_t raw = {0};
    th_alert_t *a = NULL;
    size_t n = 0;
    int64_t deadline = th_now_ms() + WAIT_MS;
    for (;;) {
        n = read_alerts(&e, &a, &raw);
        if (n >= 2 || th_now_ms() > deadline) break;
        free(a);
        th_msgs_free(&raw);
        th_pause_ms(50);
    }
    assert_int_equal(th_alerts_count(a, n, "detractor", "ORD-1", "firing",
                                     "2026-03-03T10:00:00Z"), 1);
    double risk = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(a[i].rule, "meetings_postponed") || strcmp(a[i].status, "firing"))
            continue;
        assert_string_equal(a[i].at, "2026-03-02T10:00:00Z");
        cJSON *j = cJSON_Parse(raw.v[i].value);
        assert_non_null(j);
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "risk");
        assert_true(cJSON_IsNumber(r));
        risk = r->valuedouble;
        cJSON_Delete(j);
    }
    /* meetings_postponed weighs 20; with the detractor (30) already
     * counted, as arrival order would have it, it would be 50. */
    if (risk != 20) th_env_dump_log(&e);
    assert_true(risk == 20);
    assert_int_equal(n, 2);
    free(a);
    th_msgs_free(&raw);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

/* A CRM whose events look different is mapped by configuration alone:
 * another client path, another time field holding epoch milliseconds, and
 * a type map onto churnd's catalog. */
static void test_configured_envelope_paths_and_type_map(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup(&e, 1, rules_dir, NULL,
                                  "event:\n"
                                  "  client_path: account.id\n"
                                  "  ts_path: occurred_at\n"
                                  "  type_path: kind\n"
                                  "  type_map: {NpsSubmitted: survey.nps}\n"), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    /* 1772359200000 ms = 2026-03-01T10:00:00Z */
    assert_int_equal(th_env_send(&e, e.helpdesk, "MAP-1",
        "{\"id\":\"n1\",\"kind\":\"NpsSubmitted\",\"account\":{\"id\":\"MAP-1\"},"
        "\"occurred_at\":1772359200000,\"data\":{\"score\":2}}"), 0);
    /* the default envelope is now malformed: no account.id */
    assert_int_equal(th_env_send(&e, e.helpdesk, "X",
        "{\"id\":\"n2\",\"type\":\"survey.nps\",\"client_id\":\"X\","
        "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"score\":2}}"), 0);
    must_catch_up(&e);
    th_msgs_t raw = {0};
    th_alert_t *a = NULL;
    size_t n = read_alerts(&e, &a, &raw);
    assert_int_equal(n, 1);
    assert_int_equal(th_alerts_count(a, n, "detractor", "MAP-1", "firing",
                                     "2026-03-01T10:00:00Z"), 1);
    free(a);
    th_msgs_free(&raw);
    th_msgs_t dl = {0};
    assert_int_equal(th_consume_to_end(e.broker.bootstrap, e.dlq, WAIT_MS, &dl), 0);
    assert_int_equal(dl.n, 1);
    assert_string_equal(th_header(&dl.v[0], "churnd.reason"), "no_client");
    th_msgs_free(&dl);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
}

int main(void) {
    if (!getcwd(rules_dir, sizeof(rules_dir) - 8)) return 1;
    strcat(rules_dir, "/rules");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_stream_alerts_and_dead_letters),
        cmocka_unit_test(test_every_malformed_kind_is_a_dead_letter),
        cmocka_unit_test(test_duplicate_event_ids_count_once),
        cmocka_unit_test(test_topics_meet_in_event_time_order),
        cmocka_unit_test(test_configured_envelope_paths_and_type_map),
    };
    return cmocka_run_group_tests_name("integration_pipeline", tests, NULL, NULL);
}
