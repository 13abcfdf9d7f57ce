/*
 * test_logs.c - the daemon's log lines of note as an operator reads them:
 * a flood of bad input is rate-limited with every dropped line accounted
 * for (suppressed=N, and a summary once the flood stops), and the lines
 * for dead letters, alerts and rebalances carry the fields to act on. And
 * librdkafka has nothing to warn about in how churnd configures it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../lib/harness.h"

#define WAIT_MS 60000
#define N_BAD 300

static char rules_dir[1024];

static const char DL_MSG[] = "invalid event sent to the dead-letter topic";

/* The daemon's own lines that mention what: lines written, and the lines
 * they account for (1 each, plus every suppressed=N they carry). */
static void count_lines(const char *log, const char *what, long *written,
                        long *accounted) {
    *written = *accounted = 0;
    for (const char *line = log; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[4096];
        snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) ? len : sizeof(buf) - 1),
                 line);
        if (strstr(buf, what)) {
            int summary = strstr(buf, "msg=\"repeated lines suppressed\"") != NULL;
            const char *sup = strstr(buf, " suppressed=");
            long n = sup ? strtol(sup + 12, NULL, 10) : 0;
            if (!summary) (*written)++;
            *accounted += n + (summary ? 0 : 1);
        }
        line = nl ? nl + 1 : NULL;
    }
}

/* One detractor survey (an alert), and wait until churnd has applied it. */
static void send_detractor(th_env_t *e) {
    assert_int_equal(th_env_send(e, e->crm, "HOOLI-1",
        "{\"id\":\"n1\",\"type\":\"survey.nps\",\"client_id\":\"HOOLI-1\","
        "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"score\":2}}"), 0);
    if (th_env_wait_caught_up(e, WAIT_MS) != 0) {
        th_env_dump_log(e);
        fail_msg("not caught up");
    }
}

static void test_a_flood_of_bad_input_is_rate_limited_and_accounted(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup_inputs(&e, 1, rules_dir, NULL, NULL, 1), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    for (int i = 0; i < N_BAD; i++) {
        char bad[64];
        snprintf(bad, sizeof(bad), "garbage %d", i);
        assert_int_equal(th_env_send(&e, e.crm, "k", bad), 0);
    }
    send_detractor(&e);
    /* Every bad message is accounted for: in a line of its own, in the
     * suppressed=N of the next line that got through, or, for those
     * dropped after the last one that did, in the summary written once
     * the flood has been quiet for a second. (Whether the flood ends with
     * dropped lines depends on when the bucket's tokens come.) */
    long written = 0, accounted = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        char *all = th_read_file(e.log);
        assert_non_null(all);
        count_lines(all + e.log_from, DL_MSG, &written, &accounted);
        free(all);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (accounted >= N_BAD || now.tv_sec - t0.tv_sec > 10) break;
        nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL);
    }
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    char *all = th_read_file(e.log);
    assert_non_null(all);
    const char *log = all + e.log_from;
    if (accounted != N_BAD) {
        fprintf(stderr, "%s\n", log);
        free(all);
        fail_msg("%ld of %d bad messages accounted for in the log", accounted, N_BAD);
    }
    count_lines(log, DL_MSG, &written, &accounted);
    /* 20 lines a second get through; the rest are counted, none lost */
    assert_true(written >= 20);
    assert_true(written < N_BAD / 3);
    assert_int_equal(accounted, N_BAD);
    /* a dead letter names where the message was and why */
    char want[512];
    snprintf(want, sizeof(want),
             "component=events msg=\"%s\" reason=not_json detail=", DL_MSG);
    assert_non_null(strstr(log, want));
    snprintf(want, sizeof(want), " topic=%s partition=0 offset=0", e.crm);
    assert_non_null(strstr(log, want));
    /* an alert names its rule, client, status, severity and id */
    assert_non_null(strstr(log, "component=alerts msg=alert rule=detractor "
                                "client=HOOLI-1 status=firing severity=critical "
                                "repeat=0 alert_id=detractor/HOOLI-1/"));
    /* a rebalance says which partitions moved */
    snprintf(want, sizeof(want), "msg=rebalance event=assign");
    assert_non_null(strstr(log, want));
    snprintf(want, sizeof(want), "count=1 partitions=\"%s[0]\"", e.crm);
    if (!strstr(log, want)) {
        snprintf(want, sizeof(want), "count=1 partitions=%s[0]", e.crm);
        assert_non_null(strstr(log, want));
    }
    free(all);
    th_env_teardown(&e);
}

/* kafka: properties go to both clients, except those librdkafka knows to
 * be the other one's: no CONFWARN ("a consumer property ... will be
 * ignored by this producer instance") at every start. The test config
 * already sets consumer-only ones (session.timeout.ms,
 * heartbeat.interval.ms); linger.ms is the producer's. */
static void test_each_client_gets_only_its_own_properties(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup_inputs(&e, 1, rules_dir, NULL, NULL, 1), 0);
    const char *env[] = {"CHURND_KAFKA_LINGER_MS=2", NULL};
    assert_int_equal(th_env_start_daemon_env(&e, env), 0);
    send_detractor(&e);
    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    if (th_file_count(e.log, "facility=CONFWARN") != 0) {
        th_env_dump_log(&e);
        fail_msg("a kafka property went to a client it is not for");
    }
    /* the alert went out: the producer works with its property */
    assert_true(th_file_count(e.log, "msg=alert rule=detractor client=HOOLI-1") >= 1);
    th_env_teardown(&e);
}

int main(void) {
    if (!getcwd(rules_dir, sizeof(rules_dir) - 8)) return 1;
    strcat(rules_dir, "/rules");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_flood_of_bad_input_is_rate_limited_and_accounted),
        cmocka_unit_test(test_each_client_gets_only_its_own_properties),
    };
    return cmocka_run_group_tests_name("integration_logs", tests, NULL, NULL);
}
