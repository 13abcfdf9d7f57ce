/*
 * test_watermark.c - SPEC section 4's time rules, driven with explicit
 * wall-clock readings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "churnd/watermark.h"

#define MIN 60000LL

static void test_slowest_active_partition_minus_lateness(void **state) {
    (void)state;
    watermark_t w;
    wm_init(&w, 5 * MIN, 30000);
    wm_assign(&w, "crm", 0, 0);
    wm_assign(&w, "crm", 1, 0);
    assert_true(wm_compute(&w, 0) == WM_NONE);
    wm_observe(&w, "crm", 0, 100 * MIN, 10);
    /* partition 1 has no time yet and is not idle: it holds everything */
    assert_true(wm_compute(&w, 10) == WM_NONE);
    wm_observe(&w, "crm", 1, 40 * MIN, 20);
    assert_true(wm_compute(&w, 20) == 35 * MIN);
    wm_observe(&w, "crm", 1, 30 * MIN, 30); /* out of order: stream time stays */
    assert_true(wm_compute(&w, 30) == 35 * MIN);
    wm_observe(&w, "crm", 1, 200 * MIN, 40);
    assert_true(wm_compute(&w, 40) == 95 * MIN);
    wm_free(&w);
}

static void test_idle_partition_stops_holding_back(void **state) {
    (void)state;
    watermark_t w;
    wm_init(&w, 0, 30000);
    wm_assign(&w, "crm", 0, 0);
    wm_assign(&w, "helpdesk", 0, 0);
    wm_observe(&w, "crm", 0, 1000 * MIN, 1000);
    wm_observe(&w, "helpdesk", 0, 10 * MIN, 1000);
    assert_true(wm_compute(&w, 1000) == 10 * MIN);
    /* quiet but not caught up: still holds (it may have a backlog) */
    assert_true(wm_compute(&w, 100000) == 10 * MIN);
    wm_set_caught_up(&w, "helpdesk", 0, 1);
    /* caught up, but not quiet for idle_timeout yet */
    assert_true(wm_compute(&w, 20000) == 10 * MIN);
    assert_true(wm_compute(&w, 31000) == 1000 * MIN);
    /* a new event makes it active again; the watermark never goes back */
    wm_observe(&w, "helpdesk", 0, 20 * MIN, 32000);
    assert_true(wm_compute(&w, 32000) == 1000 * MIN);
    wm_free(&w);
}

static void test_all_idle_follows_wall_clock(void **state) {
    (void)state;
    watermark_t w;
    wm_init(&w, 5 * MIN, 30000);
    wm_assign(&w, "crm", 0, 0);
    wm_observe(&w, "crm", 0, 1000, 0);
    wm_set_caught_up(&w, "crm", 0, 1);
    int64_t wall = 1795000000000LL;
    assert_true(wm_compute(&w, wall) == wall - 5 * MIN);
    assert_true(wm_compute(&w, wall + 1000) == wall + 1000 - 5 * MIN);
    wm_free(&w);
}

static void test_revoke_and_nothing_assigned(void **state) {
    (void)state;
    watermark_t w;
    wm_init(&w, 0, 30000);
    assert_true(wm_compute(&w, 123) == WM_NONE);
    wm_assign(&w, "crm", 0, 0);
    wm_assign(&w, "crm", 1, 0);
    wm_observe(&w, "crm", 0, 50, 1);
    wm_observe(&w, "crm", 1, 10, 1);
    assert_true(wm_compute(&w, 1) == 10);
    wm_revoke(&w, "crm", 1);
    assert_true(wm_compute(&w, 2) == 50);
    assert_int_equal(w.n, 1);
    wm_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slowest_active_partition_minus_lateness),
        cmocka_unit_test(test_idle_partition_stops_holding_back),
        cmocka_unit_test(test_all_idle_follows_wall_clock),
        cmocka_unit_test(test_revoke_and_nothing_assigned),
    };
    return cmocka_run_group_tests_name("watermark", tests, NULL, NULL);
}
