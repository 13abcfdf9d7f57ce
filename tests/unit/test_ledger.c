/*
 * test_ledger.c - the commercial ledger of a client (ledger.c) and its
 * place in the state record (cstate.c) and the engine (engine.c): what
 * each catalog event records, out-of-order events, retention and bounds,
 * the encoding's round trip and its refusals, version 2 records, and the
 * engine's opt-in (engine_opts.ledger) and firing history.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/engine.h"
#include "churnd/ledger.h"
#include "churnd/rules.h"
#include "churnd/timeutil.h"

#define DAY LEDGER_DAY_MS

static event_config_t ecfg;

static int setup(void **state) {
    (void)state;
    return event_config_init(&ecfg);
}

static int teardown(void **state) {
    (void)state;
    event_config_free(&ecfg);
    return 0;
}

static int64_t ts(const char *s) {
    int64_t t = 0;
    assert_int_equal(time_parse_rfc3339(s, strlen(s), &t), 0);
    return t;
}

/* Parse one event; the caller clears it. */
static void parse(event_t *ev, const char *type, const char *when, const char *data) {
    char js[1024];
    snprintf(js, sizeof(js),
             "{\"id\": \"e-%s-%s\", \"type\": \"%s\", \"client_id\": \"C-1\", "
             "\"ts\": \"%s\", \"data\": %s}", type, when, type, when, data ? data : "{}");
    memset(ev, 0, sizeof(*ev));
    char detail[160];
    assert_int_equal(event_parse(&ecfg, js, strlen(js), ev, detail, sizeof(detail)), EVENT_OK);
}

static void feed(ledger_t *l, const char *type, const char *when, const char *data) {
    event_t ev;
    parse(&ev, type, when, data);
    assert_int_equal(ledger_on_event(l, &ev), 0);
    event_clear(&ev);
}

static void test_events_recorded_by_kind(void **state) {
    (void)state;
    ledger_t l;
    ledger_init(&l);
    assert_true(ledger_is_empty(&l));
    assert_true(ledger_wants_type("order.placed"));
    assert_true(ledger_wants_type("contract.cancelled"));
    assert_false(ledger_wants_type("meeting.held"));
    assert_false(ledger_wants_type(NULL));

    feed(&l, "order.placed", "2026-03-02T10:00:00Z", "{\"amount\": 100.5}");
    feed(&l, "order.placed", "2026-03-02T15:00:00Z", "{\"amount\": 20}");
    feed(&l, "order.cancelled", "2026-03-04T09:00:00Z", "{\"amount\": 20}");
    feed(&l, "contract.signed", "2026-03-01T09:00:00Z", "{\"value\": 5000}");
    feed(&l, "contract.cancelled", "2026-05-01T09:00:00Z",
         "{\"value\": 5000, \"reason\": \"price\"}");
    /* Types the ledger does not read leave it alone. */
    feed(&l, "meeting.held", "2026-05-02T09:00:00Z", NULL);

    assert_int_equal(l.first_ms, ts("2026-03-01T09:00:00Z"));
    /* One day per calendar day, ascending, whatever the arrival order. */
    assert_int_equal(l.n_days, 3);
    assert_int_equal(l.days[0].day, ts("2026-03-01T00:00:00Z") / DAY);
    assert_int_equal(l.days[0].signs, 1);
    assert_int_equal(l.days[0].orders, 0);
    assert_int_equal(l.days[1].orders, 2);
    assert_true(l.days[1].amount == 120.5);
    assert_int_equal(l.days[2].orders, 0); /* a cancelled order is no activity */
    assert_true(l.days[2].amount == -20);
    assert_int_equal(l.n_contracts, 2);
    assert_int_equal(l.contracts[0].kind, LEDGER_SIGNED);
    assert_true(l.contracts[0].value == 5000);
    assert_int_equal(l.contracts[1].kind, LEDGER_CANCELLED);
    assert_int_equal(l.contracts[1].reason, LEDGER_REASON_PRICE);
    ledger_clear(&l);
    assert_true(ledger_is_empty(&l));
}

static void test_reasons_and_odd_amounts(void **state) {
    (void)state;
    ledger_t l;
    ledger_init(&l);
    feed(&l, "contract.cancelled", "2026-01-01T00:00:00Z", "{\"reason\": \"moved\"}");
    feed(&l, "contract.cancelled", "2026-01-02T00:00:00Z", "{\"reason\": \"bankrupt\"}");
    feed(&l, "contract.cancelled", "2026-01-03T00:00:00Z", "{}");
    feed(&l, "contract.cancelled", "2026-01-04T00:00:00Z", "{\"reason\": 7}");
    assert_int_equal(l.contracts[0].reason, LEDGER_REASON_MOVED);
    assert_int_equal(l.contracts[1].reason, LEDGER_REASON_OTHER);
    assert_int_equal(l.contracts[2].reason, LEDGER_REASON_NONE);
    assert_int_equal(l.contracts[3].reason, LEDGER_REASON_NONE);
    assert_true(ledger_reason_objective(LEDGER_REASON_MOVED));
    assert_true(ledger_reason_objective(LEDGER_REASON_ACQUIRED));
    assert_false(ledger_reason_objective(LEDGER_REASON_PRICE));
    assert_false(ledger_reason_objective(LEDGER_REASON_NONE));
    assert_string_equal(ledger_reason_name(LEDGER_REASON_SERVICE), "service");
    /* An order without a usable amount is activity worth nothing. */
    feed(&l, "order.placed", "2026-01-05T00:00:00Z", "{\"amount\": \"lots\"}");
    feed(&l, "order.placed", "2026-01-05T01:00:00Z", NULL);
    assert_int_equal(l.n_days, 1);
    assert_int_equal(l.days[0].orders, 2);
    assert_true(l.days[0].amount == 0);
    ledger_clear(&l);
}

static void test_retention_and_bounds(void **state) {
    (void)state;
    ledger_t l;
    ledger_init(&l);
    char when[40];
    int64_t t0 = ts("2024-01-01T12:00:00Z");
    /* 800 order days, one a day: only the newest 732 are kept. */
    for (int i = 0; i < 800; i++) {
        time_format_rfc3339(t0 + (int64_t)i * DAY, when, sizeof(when));
        feed(&l, "order.placed", when, "{\"amount\": 1}");
    }
    assert_int_equal(l.n_days, LEDGER_RETAIN_DAYS + 1);
    assert_int_equal(l.days[l.n_days - 1].day - l.days[0].day, LEDGER_RETAIN_DAYS);
    assert_int_equal(l.first_ms, t0); /* the first order is not forgotten */
    /* A late order older than retention is not recorded... */
    feed(&l, "order.placed", "2024-01-02T00:00:00Z", "{\"amount\": 1}");
    assert_int_equal(l.n_days, LEDGER_RETAIN_DAYS + 1);
    /* ...one inside it lands in its day. */
    time_format_rfc3339(t0 + 700 * DAY, when, sizeof(when));
    feed(&l, "order.placed", when, "{\"amount\": 5}");
    assert_int_equal(l.n_days, LEDGER_RETAIN_DAYS + 1);

    /* Firings: the newest LEDGER_MAX_FIRINGS, in time order. */
    for (int i = 0; i < LEDGER_MAX_FIRINGS + 10; i++)
        assert_int_equal(ledger_on_firing(&l, i % 2 ? "odd" : "even", t0 + (int64_t)i * DAY), 0);
    assert_int_equal(l.n_firings, LEDGER_MAX_FIRINGS);
    assert_int_equal(l.firings[0].ts_ms, t0 + 10 * DAY);
    /* An older firing than all kept is dropped; a newer one in between is
     * placed in order. */
    assert_int_equal(ledger_on_firing(&l, "old", t0), 0);
    assert_int_equal(l.firings[0].ts_ms, t0 + 10 * DAY);
    assert_int_equal(ledger_on_firing(&l, "mid", t0 + 20 * DAY + 1), 0);
    for (uint32_t i = 1; i < l.n_firings; i++)
        assert_true(l.firings[i - 1].ts_ms <= l.firings[i].ts_ms);
    /* Contracts: the newest LEDGER_MAX_CONTRACTS. */
    for (int i = 0; i < LEDGER_MAX_CONTRACTS + 3; i++) {
        time_format_rfc3339(t0 + (int64_t)i * DAY, when, sizeof(when));
        feed(&l, "contract.signed", when, NULL);
    }
    assert_int_equal(l.n_contracts, LEDGER_MAX_CONTRACTS);
    assert_int_equal(l.contracts[0].ts_ms, t0 + 3 * DAY);
    ledger_clear(&l);
}

static void test_encoding_round_trip_and_refusals(void **state) {
    (void)state;
    ledger_t l, back;
    ledger_init(&l);
    feed(&l, "contract.signed", "2026-03-01T09:00:00Z", "{\"value\": 5000}");
    feed(&l, "order.placed", "2026-03-02T10:00:00Z", "{\"amount\": 100.25}");
    feed(&l, "contract.cancelled", "2026-05-01T09:00:00Z", "{\"reason\": \"quality\"}");
    assert_int_equal(ledger_on_firing(&l, "detractor", ts("2026-04-01T00:00:00Z")), 0);
    buf_t a, b;
    buf_init(&a);
    buf_init(&b);
    assert_int_equal(ledger_encode(&l, &a), 0);
    reader_t r;
    reader_init(&r, a.data, a.len);
    assert_int_equal(ledger_decode(&r, &back), 0);
    assert_int_equal(reader_left(&r), 0);
    assert_int_equal(ledger_encode(&back, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_string_equal(back.firings[0].rule, "detractor");
    assert_int_equal(back.contracts[1].reason, LEDGER_REASON_QUALITY);
    ledger_clear(&back);

    /* Every strict prefix is refused, never half-read. */
    for (size_t n = 0; n < a.len; n++) {
        reader_init(&r, a.data, n);
        assert_int_not_equal(ledger_decode(&r, &back), 0);
        assert_true(ledger_is_empty(&back));
    }
    /* Days out of order are refused. */
    ledger_t bad;
    ledger_init(&bad);
    feed(&bad, "order.placed", "2026-03-01T00:00:00Z", NULL);
    feed(&bad, "order.placed", "2026-03-05T00:00:00Z", NULL);
    bad.days[1].day = bad.days[0].day;
    buf_reset(&b);
    assert_int_equal(ledger_encode(&bad, &b), 0);
    reader_init(&r, b.data, b.len);
    assert_int_equal(ledger_decode(&r, &back), CHURN_ECORRUPT);
    ledger_clear(&bad);
    /* An unknown contract kind or reason is refused. */
    ledger_init(&bad);
    feed(&bad, "contract.cancelled", "2026-03-01T00:00:00Z", NULL);
    bad.contracts[0].reason = LEDGER_N_REASONS;
    buf_reset(&b);
    assert_int_equal(ledger_encode(&bad, &b), 0);
    reader_init(&r, b.data, b.len);
    assert_int_equal(ledger_decode(&r, &back), CHURN_ECORRUPT);
    ledger_clear(&bad);

    buf_free(&a);
    buf_free(&b);
    ledger_clear(&l);
}

/* The state record carries the ledger (version 3); a version 2 record,
 * written before the ledger existed, still reads, with an empty one. */
static void test_state_record_versions(void **state) {
    (void)state;
    cstate_t *st = cstate_new("C-1", 3);
    assert_non_null(st);
    event_t ev;
    parse(&ev, "order.placed", "2026-03-02T10:00:00Z", "{\"amount\": 10}");
    assert_int_equal(ledger_on_event(&st->ledger, &ev), 0);
    event_clear(&ev);
    buf_t v3;
    buf_init(&v3);
    assert_int_equal(cstate_encode(st, &v3), 0);
    assert_int_equal(v3.data[0], 3);
    cstate_t *back = NULL;
    churn_err_t err = {0};
    assert_int_equal(cstate_decode(v3.data, v3.len, "C-1", 3, &back, &err), 0);
    assert_int_equal(back->ledger.n_days, 1);
    assert_int_equal(back->ledger.days[0].orders, 1);
    cstate_free(back);

    /* The same state as version 2 wrote it: no ledger bytes at the end. */
    cstate_t *empty = cstate_new("C-1", 3);
    buf_t e3;
    buf_init(&e3);
    assert_int_equal(cstate_encode(empty, &e3), 0);
    buf_t led;
    buf_init(&led);
    assert_int_equal(ledger_encode(&empty->ledger, &led), 0);
    size_t v2_len = e3.len - led.len;
    e3.data[0] = 2;
    assert_int_equal(cstate_decode(e3.data, v2_len, "C-1", 3, &back, &err), 0);
    assert_true(ledger_is_empty(&back->ledger));
    cstate_free(back);
    /* A version 2 record with trailing ledger bytes is not a thing. */
    assert_int_equal(cstate_decode(e3.data, e3.len, "C-1", 3, &back, &err), CHURN_ECORRUPT);
    /* A version 3 record with a damaged ledger is refused with a reason. */
    v3.data[v3.len - 1] = 0xff;
    assert_int_equal(cstate_decode(v3.data, v3.len, "C-1", 3, &back, &err), CHURN_ECORRUPT);
    assert_non_null(strstr(err.msg, "ledger"));
    buf_free(&v3);
    buf_free(&e3);
    buf_free(&led);
    cstate_free(empty);
    cstate_free(st);
}

static ruleset_t *load_default_rules(void) {
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    assert_int_equal(ruleset_load_dir("rules", &rs, &errs), 0);
    churn_errs_free(&errs);
    return rs;
}

/* The engine keeps the ledger only when asked (engine_opts.ledger), and
 * records every new firing, not its repeats or resolutions. */
static void test_engine_keeps_ledger_and_firings(void **state) {
    (void)state;
    ruleset_t *rs = load_default_rules();
    engine_opts_t off = {7 * DAY, 64, 0, 0}, on = {7 * DAY, 64, 0, 1};
    /* No default rule reads contract.cancelled: ignored without the
     * ledger, kept with it. */
    assert_false(engine_keeps_type(rs, &off, "contract.cancelled"));
    assert_true(engine_keeps_type(rs, &on, "contract.cancelled"));
    assert_true(engine_keeps_type(rs, &off, "survey.nps"));
    assert_false(engine_keeps_type(rs, &on, "no.such.type"));

    cstate_t *st = cstate_new("C-1", 3);
    engine_out_t out;
    engine_out_init(&out);
    event_t ev;
    parse(&ev, "contract.cancelled", "2026-03-01T10:00:00Z", "{\"reason\": \"price\"}");
    assert_int_equal(engine_on_event(rs, &off, st, &ev, &out), ENGINE_IGNORED);
    assert_true(ledger_is_empty(&st->ledger));
    assert_int_equal(engine_on_event(rs, &on, st, &ev, &out), ENGINE_APPLIED);
    assert_int_equal(st->ledger.n_contracts, 1);
    /* The same event again is a duplicate: recorded once. */
    assert_int_equal(engine_on_event(rs, &on, st, &ev, &out), ENGINE_DUPLICATE);
    assert_int_equal(st->ledger.n_contracts, 1);
    event_clear(&ev);

    /* A detractor score fires (recorded), a good one resolves (not). */
    parse(&ev, "survey.nps", "2026-03-02T10:00:00Z", "{\"score\": 2}");
    assert_int_equal(engine_on_event(rs, &off, st, &ev, &out), ENGINE_APPLIED);
    event_clear(&ev);
    size_t fired = 0;
    for (size_t i = 0; i < out.n_alerts; i++) fired += out.alerts[i].status == ALERT_FIRING;
    assert_true(fired >= 1);
    assert_int_equal(st->ledger.n_firings, fired);
    assert_string_equal(st->ledger.firings[0].rule, "detractor");
    assert_int_equal(st->ledger.firings[0].ts_ms, ts("2026-03-02T10:00:00Z"));
    engine_out_reset(&out);
    parse(&ev, "survey.nps", "2026-03-03T10:00:00Z", "{\"score\": 10}");
    assert_int_equal(engine_on_event(rs, &off, st, &ev, &out), ENGINE_APPLIED);
    event_clear(&ev);
    assert_true(out.n_alerts >= 1);
    assert_int_equal(st->ledger.n_firings, fired);

    /* The state's JSON shows the history. */
    buf_t js;
    buf_init(&js);
    assert_int_equal(cstate_format_json(st, rs, &js), 0);
    assert_int_equal(buf_putc(&js, 0), 0);
    assert_non_null(strstr((const char *)js.data, "\"history\": {\"first_activity\": null"));
    assert_non_null(strstr((const char *)js.data,
                           "\"alerts_fired\": [{\"rule\": \"detractor\", "
                           "\"at\": \"2026-03-02T10:00:00Z\"}"));
    assert_non_null(strstr((const char *)js.data, "\"reason\": \"price\""));
    buf_free(&js);
    engine_out_free(&out);
    cstate_free(st);
    ruleset_free(rs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_recorded_by_kind),
        cmocka_unit_test(test_reasons_and_odd_amounts),
        cmocka_unit_test(test_retention_and_bounds),
        cmocka_unit_test(test_encoding_round_trip_and_refusals),
        cmocka_unit_test(test_state_record_versions),
        cmocka_unit_test(test_engine_keeps_ledger_and_firings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
