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

/* An event no rule uses: it moves the watermark and nothing else. */
static void send_tick(th_env_t *e, const char *id, const char *ts) {
    char json[256];
    for (int i = 0; i < 2; i++) {
        snprintf(json, sizeof(json),
                 "{\"id\":\"%s-%d\",\"type\":\"x.clock\",\"client_id\":\"CLOCK\","
                 "\"ts\":\"%s\",\"data\":{}}", id, i, ts);
        assert_int_equal(th_env_send(e, i ? e->helpdesk : e->crm, "CLOCK", json), 0);
    }
}

static const char silence_rules[] =
    "features:\n"
    "  last_nps:\n"
    "    last: survey.nps\n"
    "rules:\n"
    "  nps_silence:\n"
    "    on: [survey.nps, every 1d]\n"
    "    when: since(last_nps) > 100d\n"
    "    severity: warning\n";

/* The daemon looks ahead at a client's daily ticks and, when they cannot
 * change anything, does not wake it for them. A new rule set must not
 * leave the client asleep: without look-ahead it would be woken at its
 * next tick (the new rule's schedule starts there) and the new rule fire
 * the day after; so it must with look-ahead, whether the set comes by
 * SIGHUP or with a restart (restart != 0). */
static void new_set_wakes_sleeping_clients(int restart) {
    char dir[256], path[400];
    th_env_t e;
    assert_int_equal(th_tmpdir(dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/silence.yaml", dir);
    assert_int_equal(th_write_file(path, silence_rules), 0);
    assert_int_equal(th_env_setup(&e, 1, dir, NULL,
                                  "time:\n  allowed_lateness: 0s\n  idle_timeout: 1h\n"), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    send_nps(&e, "A", "a1", 9, "2026-06-01T10:00:00Z");
    send_tick(&e, "t1", "2026-06-01T10:00:00Z");
    caught_up(&e);
    /* Four daily ticks of A pass, none changing anything. */
    send_tick(&e, "t2", "2026-06-05T12:00:00Z");
    caught_up(&e);
    assert_int_equal(th_env_count_alerts(&e, NULL, "A", NULL, NULL), 0);

    char text[1024];
    snprintf(text, sizeof(text), "%s"
             "  nps_silence_short:\n"
             "    on: [every 1d]\n"
             "    when: since(last_nps) > 2d\n"
             "    severity: warning\n", silence_rules);
    assert_int_equal(th_write_file(path, text), 0);
    if (restart) {
        assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
        assert_int_equal(th_env_start_daemon(&e), 0);
    } else {
        assert_int_equal(th_proc_signal(&e.daemon, SIGHUP), 0);
        if (th_log_wait(e.log, "msg=reloaded", WAIT_MS) != 0) {
            th_env_dump_log(&e);
            fail_msg("no 'reloaded' in the log");
        }
    }
    send_tick(&e, "t3", "2026-06-10T12:00:00Z");
    caught_up(&e);
    /* A's next tick was 06-06: the new rule starts there, first evaluated
     * at 06-07, when the last NPS is more than 2 days old. */
    assert_int_equal(th_env_count_alerts(&e, "nps_silence_short", "A", "firing",
                                         "2026-06-07T00:00:00Z"), 1);
    assert_int_equal(th_env_count_alerts(&e, NULL, "A", NULL, NULL), 1);

    assert_int_equal(th_env_stop_daemon(&e, 30000), 0);
    th_env_teardown(&e);
    th_rmtree(dir);
}

static void test_reload_wakes_clients_the_new_set_needs(void **state) {
    (void)state;
    new_set_wakes_sleeping_clients(0);
}

static void test_restart_under_a_new_set_wakes_clients_it_needs(void **state) {
    (void)state;
    new_set_wakes_sleeping_clients(1);
}

int main(void) {
    if (!getcwd(repo, sizeof(repo))) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sighup_keeps_old_set_on_error_and_takes_a_valid_one),
        cmocka_unit_test(test_reload_wakes_clients_the_new_set_needs),
        cmocka_unit_test(test_restart_under_a_new_set_wakes_clients_it_needs),
    };
    return cmocka_run_group_tests_name("integration_reload", tests, NULL, NULL);
}
