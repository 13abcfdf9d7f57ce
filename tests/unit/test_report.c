/*
 * test_report.c - the churn report (report.c) over hand-made client
 * ledgers whose figures are worked out in the comments: who is a client at
 * the start, who is new, who is lost and why (cancellation with a reason,
 * lapse), lost sales over the period-long window before the loss, the
 * symptoms before each loss, and each rule's firings followed by a loss,
 * by none, or too recent to tell. Then the formats: JSON read back, text,
 * and output independent of the order clients are fed in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "churnd/ledger.h"
#include "churnd/report.h"
#include "churnd/timeutil.h"

#define DAY LEDGER_DAY_MS

static event_config_t ecfg;

static int64_t at(const char *date) {
    char s[40];
    snprintf(s, sizeof(s), "%sT00:00:00Z", date);
    int64_t t = 0;
    assert_int_equal(time_parse_rfc3339(s, strlen(s), &t), 0);
    return t;
}

static void ev(ledger_t *l, const char *type, const char *date, const char *data) {
    char js[512], detail[160];
    snprintf(js, sizeof(js), "{\"type\": \"%s\", \"client_id\": \"x\", "
             "\"ts\": \"%sT00:00:00Z\", \"data\": %s}", type, date, data ? data : "{}");
    event_t e;
    memset(&e, 0, sizeof(e));
    assert_int_equal(event_parse(&ecfg, js, strlen(js), &e, detail, sizeof(detail)), EVENT_OK);
    assert_int_equal(ledger_on_event(l, &e), 0);
    event_clear(&e);
}

static void order(ledger_t *l, const char *date, const char *amount) {
    char d[64];
    snprintf(d, sizeof(d), "{\"amount\": %s}", amount);
    ev(l, "order.placed", date, d);
}

static void fired(ledger_t *l, const char *rule, const char *date) {
    assert_int_equal(ledger_on_firing(l, rule, at(date)), 0);
}

enum { N_CLIENTS = 8 };
static const char *const names[N_CLIENTS] = {"A-PRICE", "B-LAPSED", "C-MOVED", "D-LOYAL",
                                             "E-NEW-LOST", "F-OLD-GONE", "G-WON-BACK",
                                             "H-RECENT"};
static ledger_t ledgers[N_CLIENTS];

/* The period is [2026-04-01, 2026-07-01): 91 days. Lapse 90d, horizon
 * 60d, the data ends 2026-08-01, margin 20%. */
static int setup(void **state) {
    (void)state;
    if (event_config_init(&ecfg)) return -1;
    for (int i = 0; i < N_CLIENTS; i++) ledger_init(&ledgers[i]);
    ledger_t *l = ledgers;
    /* A: a client since January; cancels on 05-01 for price. Lost sales:
     * the 91 days before the day after its last order (04-10), so
     * [01-10, 04-11): 1000 * 3 + 500. detractor 11 days before; its
     * order_decline of 02-15 is outside the 60-day look-back. */
    order(&l[0], "2026-01-10", "1000");
    order(&l[0], "2026-02-10", "1000");
    order(&l[0], "2026-03-10", "1000");
    order(&l[0], "2026-04-10", "500");
    ev(&l[0], "contract.cancelled", "2026-05-01", "{\"reason\": \"price\"}");
    fired(&l[0], "order_decline", "2026-02-15");
    fired(&l[0], "detractor", "2026-04-20");
    /* B: last order 02-20, lapsed 90 days later on 05-21; lost sales over
     * [2025-11-22, 02-21): 200 + 300. order_gap fired 36 days before. */
    order(&l[1], "2026-01-05", "200");
    order(&l[1], "2026-02-20", "300");
    fired(&l[1], "order_gap", "2026-04-15");
    /* C: signed in December, moved away on 06-01 (objective). Lost sales:
     * the 91 days before 05-16, [02-14, 05-16): 1000 + 200. (Without the
     * order of 05-15 it would have lapsed on 05-30, before cancelling.) */
    ev(&l[2], "contract.signed", "2025-12-01", "{\"value\": 9000}");
    order(&l[2], "2026-03-01", "1000");
    order(&l[2], "2026-05-15", "200");
    ev(&l[2], "contract.cancelled", "2026-06-01", "{\"reason\": \"moved\"}");
    /* D: orders every month, never lost. Its detractor of 05-01 saw no
     * loss within 60 days (06-30 is before the data's end); the one of
     * 06-20 is too recent to tell (08-19 is after it). */
    order(&l[3], "2026-01-15", "100");
    order(&l[3], "2026-02-15", "100");
    order(&l[3], "2026-03-15", "100");
    order(&l[3], "2026-04-15", "100");
    order(&l[3], "2026-05-15", "100");
    order(&l[3], "2026-06-15", "100");
    fired(&l[3], "detractor", "2026-05-01");
    fired(&l[3], "detractor", "2026-06-20");
    /* E: new on 04-05, cancels on 06-10 (service): lost new client. */
    order(&l[4], "2026-04-05", "400");
    ev(&l[4], "contract.cancelled", "2026-06-10", "{\"reason\": \"service\"}");
    /* F: gone before the period (lapsed 2025-12-30): counts nowhere. */
    order(&l[5], "2025-10-01", "700");
    /* G: lapsed before the period, won back on 05-01: new. It lapses
     * again on 07-30, after the period. */
    order(&l[6], "2025-11-01", "50");
    order(&l[6], "2026-05-01", "250");
    /* H: first order 06-01; its lapse (08-30) is after the data's end. */
    order(&l[7], "2026-06-01", "600");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < N_CLIENTS; i++) ledger_clear(&ledgers[i]);
    event_config_free(&ecfg);
    return 0;
}

static report_t *build(int reverse) {
    report_opts_t o = {.from_ms = at("2026-04-01"), .to_ms = at("2026-07-01"),
                       .lapse_ms = 90 * DAY, .horizon_ms = 60 * DAY, .margin = 0.2};
    report_t *r = report_new(&o);
    assert_non_null(r);
    for (int k = 0; k < N_CLIENTS; k++) {
        int i = reverse ? N_CLIENTS - 1 - k : k;
        assert_int_equal(report_add_client(r, names[i], strlen(names[i]), &ledgers[i],
                                           at("2026-08-01")), 0);
    }
    return r;
}

static cJSON *as_json(report_t *r) {
    buf_t b;
    buf_init(&b);
    assert_int_equal(report_format_json(r, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    cJSON *j = cJSON_Parse((const char *)b.data);
    if (!j) fail_msg("not JSON: %s", (const char *)b.data);
    buf_free(&b);
    return j;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) fail_msg("%s is not a number", k);
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v)) fail_msg("%s is not a string", k);
    return v->valuestring;
}

static const cJSON *rule_row(const cJSON *j, const char *name) {
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(j, "rules"))
        if (!strcmp(str(x, "rule"), name)) return x;
    return NULL;
}

static void test_economics(void **state) {
    (void)state;
    report_t *r = build(0);
    cJSON *j = as_json(r);
    assert_int_equal((int)num(j, "clients_at_start"), 4);   /* A B C D */
    assert_int_equal((int)num(j, "new_clients"), 3);        /* E G H */
    assert_int_equal((int)num(j, "lost_clients"), 3);       /* A B C */
    assert_int_equal((int)num(j, "lost_new_clients"), 1);   /* E */
    assert_true(num(j, "churn_pct") == 75.0);
    /* 500 (A) + 200 (C) + 300 (D) + 400 (E) + 250 (G) + 600 (H) */
    assert_true(num(j, "sales") == 2250.0);
    assert_true(num(j, "avg_sales_per_client") == 321.43); /* 2250 / 7 */
    /* 3500 (A) + 500 (B) + 1200 (C) + 400 (E) */
    assert_true(num(j, "lost_sales") == 5600.0);
    assert_true(num(j, "lost_profit") == 1120.0);
    assert_string_equal(str(j, "data_end"), "2026-08-01T00:00:00Z");

    /* Reasons, in the ledger's order, the lapse last. */
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(j, "losses_by_reason");
    assert_int_equal(cJSON_GetArraySize(by), 4);
    const char *want[][3] = {{"moved", "objective", "1200"}, {"price", "preventable", "3500"},
                             {"service", "preventable", "400"}, {"lapsed", "preventable", "500"}};
    for (int i = 0; i < 4; i++) {
        const cJSON *x = cJSON_GetArrayItem(by, i);
        assert_string_equal(str(x, "reason"), want[i][0]);
        assert_string_equal(str(x, "category"), want[i][1]);
        assert_int_equal((int)num(x, "clients"), 1);
        assert_true(num(x, "lost_sales") == atof(want[i][2]));
    }
    cJSON_Delete(j);
    report_free(r);
}

static void test_losses_and_symptoms(void **state) {
    (void)state;
    report_t *r = build(0);
    cJSON *j = as_json(r);
    const cJSON *lost = cJSON_GetObjectItemCaseSensitive(j, "lost");
    assert_int_equal(cJSON_GetArraySize(lost), 4);
    /* In loss order: A 05-01, B 05-21, C 06-01, E 06-10. */
    const char *ids[] = {"A-PRICE", "B-LAPSED", "C-MOVED", "E-NEW-LOST"};
    const char *when[] = {"2026-05-01T00:00:00Z", "2026-05-21T00:00:00Z",
                          "2026-06-01T00:00:00Z", "2026-06-10T00:00:00Z"};
    for (int i = 0; i < 4; i++) {
        const cJSON *x = cJSON_GetArrayItem(lost, i);
        assert_string_equal(str(x, "client_id"), ids[i]);
        assert_string_equal(str(x, "lost_at"), when[i]);
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "new_client")),
                         i == 3);
    }
    const cJSON *a = cJSON_GetArrayItem(lost, 0);
    const cJSON *sym = cJSON_GetObjectItemCaseSensitive(a, "symptoms");
    assert_int_equal(cJSON_GetArraySize(sym), 1); /* order_decline is too old */
    assert_string_equal(str(cJSON_GetArrayItem(sym, 0), "rule"), "detractor");
    assert_true(num(cJSON_GetArrayItem(sym, 0), "days_before") == 11.0);
    const cJSON *b = cJSON_GetArrayItem(lost, 1);
    assert_string_equal(str(b, "reason"), "lapsed");
    sym = cJSON_GetObjectItemCaseSensitive(b, "symptoms");
    assert_string_equal(str(cJSON_GetArrayItem(sym, 0), "rule"), "order_gap");
    assert_true(num(cJSON_GetArrayItem(sym, 0), "days_before") == 36.0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
                         cJSON_GetArrayItem(lost, 2), "symptoms")), 0);

    /* Per rule. */
    const cJSON *det = rule_row(j, "detractor");
    assert_non_null(det);
    assert_int_equal((int)num(det, "losses_preceded"), 1);
    assert_true(num(det, "median_lead_days") == 11.0);
    assert_int_equal((int)num(det, "alerts"), 3);              /* A 04-20, D 05-01, 06-20 */
    assert_int_equal((int)num(det, "followed_by_loss"), 1);    /* A */
    assert_int_equal((int)num(det, "followed_by_no_loss"), 1); /* D 05-01 */
    assert_int_equal((int)num(det, "too_recent"), 1);          /* D 06-20 */
    const cJSON *gap = rule_row(j, "order_gap");
    assert_non_null(gap);
    assert_int_equal((int)num(gap, "losses_preceded"), 1);
    assert_int_equal((int)num(gap, "alerts"), 1);
    assert_int_equal((int)num(gap, "followed_by_loss"), 1);
    /* order_decline fired before the period and outside every look-back. */
    assert_null(rule_row(j, "order_decline"));
    cJSON_Delete(j);
    report_free(r);
}

static void test_formats_do_not_depend_on_feed_order(void **state) {
    (void)state;
    report_t *r1 = build(0), *r2 = build(1);
    buf_t a, b;
    buf_init(&a);
    buf_init(&b);
    assert_int_equal(report_format_json(r1, &a), 0);
    assert_int_equal(report_format_json(r2, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    buf_reset(&a);
    buf_reset(&b);
    assert_int_equal(report_format_text(r1, &a), 0);
    assert_int_equal(report_format_text(r2, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_int_equal(buf_putc(&a, 0), 0);
    const char *t = (const char *)a.data;
    assert_non_null(strstr(t, "churn report 2026-04-01 .. 2026-07-01 (91 days; "
                              "data until 2026-08-01T00:00:00Z)"));
    assert_non_null(strstr(t, "lost clients                         3   churn 75.0%"));
    assert_non_null(strstr(t, "lost profit (margin 20%)       1120.00"));
    assert_non_null(strstr(t, "  A-PRICE              2026-05-01           price      "
                              "     3500.00  detractor 11.0d\n"));
    assert_non_null(strstr(t, "(new in period)"));
    buf_free(&a);
    buf_free(&b);
    report_free(r1);
    report_free(r2);
}

/* Nothing to report: zeros, no division by zero, no margin given. */
static void test_empty(void **state) {
    (void)state;
    report_opts_t o = {.from_ms = at("2026-04-01"), .to_ms = at("2026-07-01"),
                       .lapse_ms = 90 * DAY, .horizon_ms = 60 * DAY, .margin = -1};
    report_t *r = report_new(&o);
    cJSON *j = as_json(r);
    assert_true(num(j, "churn_pct") == 0);
    assert_true(num(j, "avg_sales_per_client") == 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "lost_profit")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "data_end")));
    cJSON_Delete(j);
    buf_t b;
    buf_init(&b);
    assert_int_equal(report_format_text(r, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_null(strstr((const char *)b.data, "lost profit"));
    buf_free(&b);
    report_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_economics),
        cmocka_unit_test(test_losses_and_symptoms),
        cmocka_unit_test(test_formats_do_not_depend_on_feed_order),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
