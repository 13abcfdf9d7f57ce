/*
 * test_reload.c - SIGHUP reloads the rules directory: a broken set is
 * rejected with its errors logged and the running set keeps working; a
 * valid set takes over for the events that follow.
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

#define WAIT_MS 60000

static char repo[1024];

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return -1;
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    return fclose(out);
}

static void send_nps(th_env_t *e, const char *client, const char *id, int score,
                     const char *ts) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s\",\"type\":\"survey.nps\",\"client_id\":\"%s\","
             "\"ts\":\"%s\",\"data\":{\"score\":%d}}", id, client, ts, score);
    assert_int_equal(th_env_send(e, e->helpdesk, client, json), 0);
}

static void send_postponed(th_env_t *e, const char *client, const char *id,
                           const char *ts) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s\",\"type\":\"meeting.postponed\",\"client_id\":\"%s\","
             "\"ts\":\"%s\",\"data\":{\"meeting_id\":\"M\"}}", id, client, ts);
    assert_int_equal(th_env_send(e, e->crm, client, json), 0);
}

static void caught_up(th_env_t *e) {
    if (th_env_wait_caught_up(e, WAIT_MS) != 0) {
        th_env_dump_log(e);
        fail_msg("churnd did not catch up");
    }
}

static void test_sighup_keeps_old_set_on_error_and_takes_a_valid_one(void **state) {
    (void)state;
    char rules[1200], path[1400], from[1400];
    th_env_t e;
    /* rules dir of the test's own: detractor only, at first */
    char tmp[256];
    assert_int_equal(th_tmpdir(tmp, sizeof(tmp)), 0);
    snprintf(rules, sizeof(rules), "%s", tmp);
    snprintf(from, sizeof(from), "%s/rules/detractor.yaml", repo);
    snprintf(path, sizeof(path), "%s/detractor.yaml", rules);
    assert_int_equal(copy_file(from, path), 0);

    assert_int_equal(th_env_setup(&e, 2, rules, NULL, NULL), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    send_nps(&e, "A", "a1", 3, "2026-06-01T10:00:00Z");
    caught_up(&e);
    assert_int_equal(th_env_count_alerts(&e, "detractor", "A", NULL, NULL), 1);

    /* 1. a broken file: rejected, the old set keeps running */
    snprintf(path, sizeof(path), "%s/zz-broken.yaml", rules);
    assert_int_equal(th_write_file(path, "rules:\n  oops:\n    on: survey.nps\n    when: 'score >>> 3'\n"), 0);
    assert_int_equal(th_proc_signal(&e.daemon, SIGHUP), 0);
    if (th_log_wait(e.log, "reload rejected", WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("no 'reload rejected' in the log");
    }
    assert_true(th_file_count(e.log, "zz-broken.yaml:4:") >= 1);
    send_nps(&e, "B", "b1", 2, "2026-06-01T11:00:00Z");
    send_postponed(&e, "C", "c1", "2026-06-01T12:00:00Z");
    send_postponed(&e, "C", "c2", "2026-06-01T13:00:00Z");
    caught_up(&e);
    assert_int_equal(th_env_count_alerts(&e, "detractor", "B", NULL, NULL), 1);
    assert_int_equal(th_env_count_alerts(&e, "meetings_postponed", "C", NULL, NULL), 0);

    /* 2. fixed, and a new rule added: the new set takes over */
    assert_int_equal(unlink(path), 0);
    snprintf(from, sizeof(from), "%s/rules/meetings_postponed.yaml", repo);
    snprintf(path, sizeof(path), "%s/meetings_postponed.yaml", rules);
    assert_int_equal(copy_file(from, path), 0);
    assert_int_equal(th_proc_signal(&e.daemon, SIGHUP), 0);
    if (th_log_wait(e.log, "msg=reloaded", WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("no 'reloaded' in the log");
    }
    send_postponed(&e, "D", "d1", "2026-06-02T12:00:00Z");
    send_postponed(&e, "D", "d2", "2026-06-02T13:00:00Z");
    caught_up(&e);
    assert_int_equal(th_env_count_alerts(&e, "meetings_postponed", "D", NULL, NULL), 1);

    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
    th_rmtree(rules);
}

int main(void) {
    if (!getcwd(repo, sizeof(repo))) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sighup_keeps_old_set_on_error_and_takes_a_valid_one),
    };
    return cmocka_run_group_tests_name("integration_reload", tests, NULL, NULL);
}
