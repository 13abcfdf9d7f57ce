/*
 * test_ruletest.c - the event-time driver that `churnd replay` and
 * `churnd test` share (cli.h): the watermark follows the events minus the
 * lateness, never goes backwards, --until / until: pushes it, and times
 * are read as events read them. The commands themselves are exercised end
 * to end in tests/integration/test_replay.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/cli.h"
#include "churnd/timeutil.h"

typedef struct world {
    char dir[512];
    store_t *store;
    ruleset_t *rs;
    event_config_t ecfg;
    engine_opts_t opts;
} world_t;

static int64_t ts(const char *s) {
    int64_t v = 0;
    assert_int_equal(time_parse_rfc3339(s, strlen(s), &v), 0);
    return v;
}

static int setup(void **state) {
    world_t *w = calloc(1, sizeof(*w));
    churn_err_t err = {0};
    if (!w || replay_mkdtemp("churnd-unit", w->dir, sizeof(w->dir), &err)) return -1;
    store_opts_t so = {.dir = w->dir, .mode = STORE_READ_WRITE};
    if (store_open(&so, &w->store, &err)) return -1;
    churn_errs_t errs;
    churn_errs_init(&errs);
    int rc = ruleset_load_dir("tests/data/replay-for/rules", &w->rs, &errs);
    churn_errs_free(&errs);
    if (rc || event_config_init(&w->ecfg)) return -1;
    w->opts = (engine_opts_t){.dedup_window_ms = 86400000, .dedup_max_ids = 64};
    *state = w;
    return 0;
}

static int teardown(void **state) {
    world_t *w = *state;
    store_close(w->store);
    ruleset_free(w->rs);
    event_config_free(&w->ecfg);
    replay_rmtree(w->dir);
    free(w);
    return 0;
}

static void feed(world_t *w, replay_t *r, const char *json) {
    event_t ev;
    memset(&ev, 0, sizeof(ev)); /* topic, partition, offset: the caller's */
    char detail[128];
    assert_int_equal(event_parse(&w->ecfg, json, strlen(json), &ev, detail, sizeof(detail)),
                     EVENT_OK);
    churn_err_t err = {0};
    assert_true(replay_event(r, &ev, &err) >= 0);
    event_clear(&ev);
}

static void test_watermark_follows_events_minus_lateness(void **state) {
    world_t *w = *state;
    replay_t r;
    churn_err_t err = {0};
    assert_int_equal(replay_init(&r, w->store, w->rs, 16, &w->opts, 30 * 60000), 0);
    /* Nothing seen: no watermark, nothing fires. */
    assert_int_equal(replay_settle(&r, REPLAY_NONE, &err), 0);
    assert_true(r.watermark_ms == REPLAY_NONE);
    feed(w, &r, "{\"id\":\"p1\",\"type\":\"meeting.postponed\",\"client_id\":\"A\","
                "\"ts\":\"2026-03-01T10:00:00Z\"}");
    assert_int_equal(replay_settle(&r, REPLAY_NONE, &err), 0);
    assert_true(r.watermark_ms == ts("2026-03-01T09:30:00Z"));
    assert_int_equal(r.out.n_alerts, 0);
    /* An event of another client at 11:30 moves it to 11:00: A's hour. */
    feed(w, &r, "{\"id\":\"q1\",\"type\":\"meeting.postponed\",\"client_id\":\"B\","
                "\"ts\":\"2026-03-01T11:30:00Z\"}");
    assert_int_equal(replay_settle(&r, REPLAY_NONE, &err), 0);
    assert_int_equal(r.out.n_alerts, 1);
    assert_string_equal(r.out.alerts[0].client_id, "A");
    assert_true(r.out.alerts[0].at_ms == ts("2026-03-01T11:00:00Z"));
    engine_out_reset(&r.out);
    /* A late event does not move the watermark back. */
    feed(w, &r, "{\"id\":\"x1\",\"type\":\"order.placed\",\"client_id\":\"C\","
                "\"ts\":\"2026-02-01T00:00:00Z\"}");
    assert_int_equal(replay_settle(&r, ts("2026-01-01T00:00:00Z"), &err), 0);
    assert_true(r.watermark_ms == ts("2026-03-01T11:00:00Z"));
    /* until: pushes it: B's hour ends at 12:30. */
    assert_int_equal(replay_settle(&r, ts("2026-03-01T12:30:00Z"), &err), 0);
    assert_int_equal(r.out.n_alerts, 1);
    assert_string_equal(r.out.alerts[0].client_id, "B");
    replay_close(&r);
}

static void test_huge_lateness_saturates(void **state) {
    world_t *w = *state;
    replay_t r;
    churn_err_t err = {0};
    assert_int_equal(replay_init(&r, w->store, w->rs, 16, &w->opts, INT64_MAX), 0);
    feed(w, &r, "{\"id\":\"z1\",\"type\":\"meeting.held\",\"client_id\":\"Z\","
                "\"ts\":\"0001-01-01T00:00:00Z\"}");
    assert_int_equal(replay_settle(&r, REPLAY_NONE, &err), 0);
    assert_true(r.watermark_ms == REPLAY_NONE);
    replay_close(&r);
}

static void test_parse_time(void **state) {
    (void)state;
    int64_t v = 0;
    assert_int_equal(replay_parse_time("2026-03-01T10:00:00Z", &v), 0);
    assert_true(v == INT64_C(1772359200000));
    assert_int_equal(replay_parse_time("1772359200000", &v), 0);
    assert_true(v == INT64_C(1772359200000));
    assert_int_equal(replay_parse_time("-1000", &v), 0);
    assert_true(v == -1000);
    assert_int_equal(replay_parse_time("", &v), CHURN_EINVAL);
    assert_int_equal(replay_parse_time("-", &v), CHURN_EINVAL);
    assert_int_equal(replay_parse_time("yesterday", &v), CHURN_EINVAL);
    assert_int_equal(replay_parse_time("99999999999999999999", &v), CHURN_EINVAL);
    assert_int_equal(replay_parse_time("253402300800000", &v), CHURN_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watermark_follows_events_minus_lateness),
        cmocka_unit_test(test_huge_lateness_saturates),
        cmocka_unit_test(test_parse_time),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
