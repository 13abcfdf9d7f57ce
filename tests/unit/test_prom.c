/*
 * test_prom.c - the exposition primitives byte for byte: escaping of label
 * values and help text, numbers as Prometheus parses them, and the
 * fixed-bucket histogram (inclusive le, cumulative buckets, +Inf, _sum,
 * _count).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/prom.h"

static char *text(buf_t *b) {
    assert_int_equal(buf_putc(b, '\0'), 0);
    b->len--;
    return (char *)b->data;
}

static void test_label_values_are_escaped(void **state) {
    (void)state;
    buf_t b;
    buf_init(&b);
    assert_int_equal(prom_label(&b, "rule", "a\\b\"c\nd"), 0);
    assert_string_equal(text(&b), "rule=\"a\\\\b\\\"c\\nd\"");
    buf_reset(&b);
    assert_int_equal(prom_label(&b, "topic", NULL), 0);
    assert_string_equal(text(&b), "topic=\"\"");
    buf_reset(&b);
    /* UTF-8 and other punctuation pass through untouched */
    assert_int_equal(prom_label_value(&b, "caf\xc3\xa9 {x=1,y='2'}\t"), 0);
    assert_string_equal(text(&b), "caf\xc3\xa9 {x=1,y='2'}\t");
    buf_reset(&b);
    assert_int_equal(prom_label_value(&b, "\\\\\"\"\n\n"), 0);
    assert_string_equal(text(&b), "\\\\\\\\\\\"\\\"\\n\\n");
    buf_free(&b);
}

static void test_help_escapes_backslash_and_newline_only(void **state) {
    (void)state;
    buf_t b;
    buf_init(&b);
    assert_int_equal(prom_family(&b, "churnd_x_total", "counter",
                                 "Say \"hi\"\\ twice\nplease"), 0);
    assert_string_equal(text(&b),
                        "# HELP churnd_x_total Say \"hi\"\\\\ twice\\nplease\n"
                        "# TYPE churnd_x_total counter\n");
    buf_free(&b);
}

static void test_numbers(void **state) {
    (void)state;
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},           {1, "1"},
        {0.1, "0.1"},       {0.000001, "1e-06"},
        {1234567, "1234567"}, {-2.5, "-2.5"},
        {1.0 / 3, "0.33333333333333331"},
        {1767225600.123, "1767225600.123"},
    };
    buf_t b;
    buf_init(&b);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&b);
        assert_int_equal(prom_double(&b, cases[i].v), 0);
        assert_string_equal(text(&b), cases[i].want);
    }
    buf_reset(&b);
    assert_int_equal(prom_double(&b, INFINITY), 0);
    assert_string_equal(text(&b), "+Inf");
    buf_reset(&b);
    assert_int_equal(prom_double(&b, -INFINITY), 0);
    assert_string_equal(text(&b), "-Inf");
    buf_reset(&b);
    assert_int_equal(prom_double(&b, NAN), 0);
    assert_string_equal(text(&b), "NaN");
    buf_free(&b);
}

static void test_histogram_buckets_are_cumulative_and_inclusive(void **state) {
    (void)state;
    static const double bounds[] = {0.1, 1, 10};
    prom_hist_t h;
    assert_int_equal(prom_hist_init(&h, bounds, 3), 0);
    prom_hist_observe(&h, 0.05);
    prom_hist_observe(&h, 0.1); /* on the bound: le is inclusive */
    prom_hist_observe(&h, 0.5);
    prom_hist_observe(&h, 5);
    prom_hist_observe(&h, 50); /* past every bound: +Inf only */
    prom_hist_observe(&h, NAN); /* ignored */
    assert_int_equal(h.count, 5);
    buf_t b;
    buf_init(&b);
    assert_int_equal(prom_hist_render(&h, &b, "x_seconds", NULL), 0);
    assert_string_equal(text(&b),
                        "x_seconds_bucket{le=\"0.1\"} 2\n"
                        "x_seconds_bucket{le=\"1\"} 3\n"
                        "x_seconds_bucket{le=\"10\"} 4\n"
                        "x_seconds_bucket{le=\"+Inf\"} 5\n"
                        "x_seconds_sum 55.65\n"
                        "x_seconds_count 5\n");
    buf_reset(&b);
    assert_int_equal(prom_hist_render(&h, &b, "x_seconds", "rule=\"r\""), 0);
    assert_non_null(strstr(text(&b), "x_seconds_bucket{rule=\"r\",le=\"1\"} 3\n"));
    assert_non_null(strstr(text(&b), "x_seconds_sum{rule=\"r\"} 55.65\n"));
    assert_non_null(strstr(text(&b), "x_seconds_count{rule=\"r\"} 5\n"));
    buf_free(&b);
}

static void test_histogram_empty_and_edges(void **state) {
    (void)state;
    prom_hist_t h;
    assert_int_equal(prom_hist_init(&h, prom_buckets_latency,
                                    prom_n_buckets_latency), 0);
    buf_t b;
    buf_init(&b);
    assert_int_equal(prom_hist_render(&h, &b, "e", ""), 0);
    char *s = text(&b);
    assert_non_null(strstr(s, "e_bucket{le=\"0.0001\"} 0\n"));
    assert_non_null(strstr(s, "e_bucket{le=\"60\"} 0\n"));
    assert_non_null(strstr(s, "e_bucket{le=\"+Inf\"} 0\ne_sum 0\ne_count 0\n"));
    /* below the first bound and exactly on the last */
    prom_hist_observe(&h, -1);
    prom_hist_observe(&h, 60);
    assert_int_equal(h.counts[0], 1);
    assert_int_equal(h.counts[prom_n_buckets_latency - 1], 1);
    assert_int_equal(h.counts[prom_n_buckets_latency], 0);
    buf_free(&b);
}

static void test_histogram_rejects_bad_bounds(void **state) {
    (void)state;
    prom_hist_t h;
    static const double unsorted[] = {1, 0.5};
    static const double dup[] = {1, 1};
    static const double inf[] = {1, INFINITY};
    double many[PROM_HIST_MAX_BUCKETS + 1];
    for (size_t i = 0; i < PROM_HIST_MAX_BUCKETS + 1; i++) many[i] = (double)i;
    assert_int_equal(prom_hist_init(&h, unsorted, 2), CHURN_EINVAL);
    assert_int_equal(prom_hist_init(&h, dup, 2), CHURN_EINVAL);
    assert_int_equal(prom_hist_init(&h, inf, 2), CHURN_EINVAL);
    assert_int_equal(prom_hist_init(&h, many, PROM_HIST_MAX_BUCKETS + 1),
                     CHURN_EINVAL);
    /* left usable: everything lands in +Inf */
    prom_hist_observe(&h, 3);
    assert_int_equal(h.n_bounds, 0);
    assert_int_equal(h.counts[0], 1);
    assert_int_equal(prom_hist_init(&h, many, PROM_HIST_MAX_BUCKETS), 0);
    /* the shipped tables are valid */
    assert_int_equal(prom_hist_init(&h, prom_buckets_fast, prom_n_buckets_fast), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_help_escapes_backslash_and_newline_only),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_histogram_buckets_are_cumulative_and_inclusive),
        cmocka_unit_test(test_histogram_empty_and_edges),
        cmocka_unit_test(test_histogram_rejects_bad_bounds),
    };
    return cmocka_run_group_tests_name("prom", tests, NULL, NULL);
}
