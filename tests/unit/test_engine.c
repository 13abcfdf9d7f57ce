/*
 * test_engine.c - the engine end to end on real rules files: the default
 * pack's meetings_postponed and detractor, dedup, ignored types, `for:`
 * timers, risk, segments, the client-state record (round trip, damage,
 * rule-set changes) and the alert JSON text.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "churnd/engine.h"
#include "churnd/rules.h"
#include "churnd/timeutil.h"

static const char *data_dir(void) {
    const char *d = getenv("CHURND_TEST_DATA");
    return d ? d : "tests/data";
}

static event_config_t cfg;
static engine_opts_t opts = {7 * 86400000LL, 1000, 0, 0};

static int setup(void **state) {
    (void)state;
    return event_config_init(&cfg);
}

static int teardown(void **state) {
    (void)state;
    event_config_free(&cfg);
    return 0;
}

static ruleset_t *load(const char *dir) {
    char path[512];
    if (strcmp(dir, "rules") == 0)
        snprintf(path, sizeof(path), "rules");
    else
        snprintf(path, sizeof(path), "%s/%s", data_dir(), dir);
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    int rc = ruleset_load_dir(path, &rs, &errs);
    char line[1024];
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", churn_err_str(&errs.v[i], line, sizeof(line)));
    churn_errs_free(&errs);
    assert_int_equal(rc, 0);
    return rs;
}

/* The alerts of one step, as JSON lines (no emitted_at). */
static char got[16384];

static void collect(engine_out_t *out) {
    buf_t b;
    buf_init(&b);
    for (size_t i = 0; i < out->n_alerts; i++) {
        assert_int_equal(alert_format_json(&out->alerts[i], -1, &b), 0);
        assert_int_equal(buf_putc(&b, '\n'), 0);
    }
    assert_int_equal(buf_putc(&b, 0), 0);
    snprintf(got, sizeof(got), "%s", (const char *)b.data);
    buf_free(&b);
    engine_out_reset(out);
}

/* Apply {"id": id, "type": type, "client_id": client, "ts": ts, "data": data}
 * (id NULL: no id) with options o and return the engine's result; the
 * alerts are in got. */
static int step_with(const ruleset_t *rs, const engine_opts_t *o, cstate_t *st,
                     const char *client, const char *id, const char *type,
                     const char *ts, const char *data) {
    char js[4096], idf[128] = "";
    if (id) snprintf(idf, sizeof(idf), "\"id\":\"%s\",", id);
    snprintf(js, sizeof(js),
             "{%s\"type\":\"%s\",\"client_id\":\"%s\",\"ts\":\"%s\",\"data\":%s}",
             idf, type, client, ts, data ? data : "{}");
    event_t ev;
    char detail[128];
    assert_int_equal(event_parse(&cfg, js, strlen(js), &ev, detail, sizeof(detail)),
                     EVENT_OK);
    engine_out_t out;
    engine_out_init(&out);
    int rc = engine_on_event(rs, o, st, &ev, &out);
    collect(&out);
    engine_out_free(&out);
    event_clear(&ev);
    return rc;
}

static int step(const ruleset_t *rs, cstate_t *st, const char *client,
                const char *id, const char *type, const char *ts,
                const char *data) {
    return step_with(rs, &opts, st, client, id, type, ts, data);
}

static int64_t ts(const char *s) {
    int64_t ms;
    assert_int_equal(time_parse_rfc3339(s, strlen(s), &ms), 0);
    return ms;
}

static void tick(const ruleset_t *rs, cstate_t *st, const char *when) {
    engine_out_t out;
    engine_out_init(&out);
    assert_int_equal(engine_on_time(rs, &opts, st, ts(when), &out), 0);
    collect(&out);
    engine_out_free(&out);
}

/* Persist and reload the state, as the runtime does between batches. */
static cstate_t *reload(cstate_t *st) {
    buf_t b;
    buf_init(&b);
    assert_int_equal(cstate_encode(st, &b), 0);
    cstate_t *back = NULL;
    churn_err_t err;
    assert_int_equal(cstate_decode(b.data, b.len, st->client_id, st->client_len,
                                   &back, &err),
                     0);
    buf_t b2;
    buf_init(&b2);
    assert_int_equal(cstate_encode(back, &b2), 0);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);
    buf_free(&b);
    buf_free(&b2);
    cstate_free(st);
    return back;
}

static size_t encoded(const cstate_t *st, uint8_t *out, size_t cap) {
    buf_t b;
    buf_init(&b);
    assert_int_equal(cstate_encode(st, &b), 0);
    assert_true(b.len <= cap);
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    buf_free(&b);
    return n;
}

#define C "ACME-001"

/* A rule set from one file's text (written to a temporary directory). */
static ruleset_t *load_text(const char *yaml) {
    char dir[] = "/tmp/churnd-engine-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/rules.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(yaml, f);
    assert_int_equal(fclose(f), 0);
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    int rc = ruleset_load_dir(dir, &rs, &errs);
    char line[1024];
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", churn_err_str(&errs.v[i], line, sizeof(line)));
    churn_errs_free(&errs);
    unlink(path);
    rmdir(dir);
    assert_int_equal(rc, 0);
    return rs;
}

/* ---- The default pack ---------------------------------------------------- */

static void test_meetings_postponed(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-basic");
    cstate_t *st = cstate_new(C, strlen(C));
    /* The first postponement is not a pattern yet. */
    assert_int_equal(step(rs, st, C, "e1", "meeting.postponed",
                          "2026-03-01T10:00:00Z", "{\"meeting_id\":\"M1\"}"),
                     ENGINE_APPLIED);
    assert_string_equal(got, "");
    st = reload(st);
    /* The second in a row (a cancellation counts too) fires. */
    assert_int_equal(step(rs, st, C, "e2", "meeting.cancelled",
                          "2026-03-02T10:00:00Z", "{\"meeting_id\":\"M2\"}"),
                     ENGINE_APPLIED);
    assert_string_equal(
        got,
        "{\"alert_id\": \"meetings_postponed/ACME-001/2026-03-02T10:00:00Z\", "
        "\"rule\": \"meetings_postponed\", \"status\": \"firing\", "
        "\"severity\": \"warning\", \"client_id\": \"ACME-001\", "
        "\"at\": \"2026-03-02T10:00:00Z\", "
        "\"summary\": \"2 meetings postponed or cancelled in a row\", "
        "\"labels\": {\"category\": \"relationship\"}, "
        "\"values\": {\"postponements\": 2}, \"risk\": 20, "
        "\"trigger\": {\"event_id\": \"e2\"}}\n");
    st = reload(st);
    /* Still firing: no repeat. */
    step(rs, st, C, "e3", "meeting.postponed", "2026-03-03T10:00:00Z", NULL);
    assert_string_equal(got, "");
    /* A held meeting resets the streak and resolves the alert, same id. */
    step(rs, st, C, "e4", "meeting.held", "2026-03-04T10:00:00Z",
         "{\"meeting_id\":\"M3\",\"attendee_roles\":[\"decision_maker\"]}");
    assert_string_equal(
        got,
        "{\"alert_id\": \"meetings_postponed/ACME-001/2026-03-02T10:00:00Z\", "
        "\"rule\": \"meetings_postponed\", \"status\": \"resolved\", "
        "\"severity\": \"warning\", \"client_id\": \"ACME-001\", "
        "\"at\": \"2026-03-04T10:00:00Z\", "
        "\"summary\": \"0 meetings postponed or cancelled in a row\", "
        "\"labels\": {\"category\": \"relationship\"}, "
        "\"values\": {\"postponements\": 0}, \"risk\": 0, "
        "\"trigger\": {\"event_id\": \"e4\"}}\n");
    /* The count starts over: one is not enough, two fire a new alert. */
    step(rs, st, C, "e5", "meeting.postponed", "2026-03-05T10:00:00Z", NULL);
    assert_string_equal(got, "");
    st = reload(st);
    step(rs, st, C, "e6", "meeting.postponed", "2026-03-06T10:00:00Z", NULL);
    assert_non_null(strstr(got, "\"alert_id\": \"meetings_postponed/ACME-001/"
                                "2026-03-06T10:00:00Z\""));
    assert_non_null(strstr(got, "\"status\": \"firing\""));
    cstate_free(st);
    ruleset_free(rs);
}

static void test_detractor(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-basic");
    cstate_t *st = cstate_new(C, strlen(C));
    step(rs, st, C, "s1", "survey.nps", "2026-03-01T10:00:00Z", "{\"score\":7}");
    assert_string_equal(got, ""); /* a passive, not a detractor */
    step(rs, st, C, "s2", "survey.nps", "2026-03-02T10:00:00Z", "{\"score\":6}");
    assert_string_equal(
        got,
        "{\"alert_id\": \"detractor/ACME-001/2026-03-02T10:00:00Z\", "
        "\"rule\": \"detractor\", \"status\": \"firing\", "
        "\"severity\": \"critical\", \"client_id\": \"ACME-001\", "
        "\"at\": \"2026-03-02T10:00:00Z\", "
        "\"summary\": \"Unhappy client: latest NPS 6, latest CSAT n/a\", "
        "\"labels\": {\"category\": \"satisfaction\"}, "
        "\"values\": {\"value(nps_score)\": 6, \"value(csat_score)\": null}, "
        "\"risk\": 30, \"trigger\": {\"event_id\": \"s2\"}}\n");
    st = reload(st);
    step(rs, st, C, "s3", "survey.csat", "2026-03-03T10:00:00Z", "{\"score\":2}");
    assert_string_equal(got, ""); /* still firing */
    step(rs, st, C, "s4", "survey.nps", "2026-03-04T10:00:00Z", "{\"score\":9}");
    assert_string_equal(got, ""); /* the CSAT of 2 still holds it */
    step(rs, st, C, "s5", "survey.csat", "2026-03-05T10:00:00Z", "{\"score\":4}");
    assert_non_null(strstr(got, "\"status\": \"resolved\""));
    assert_non_null(strstr(got, "\"alert_id\": \"detractor/ACME-001/2026-03-02T10:00:00Z\""));
    assert_non_null(strstr(got, "latest NPS 9, latest CSAT 4"));
    cstate_free(st);
    /* CSAT alone: 3 is fine, 2 fires. */
    st = cstate_new("B2", 2);
    step(rs, st, "B2", "c1", "survey.csat", "2026-03-01T10:00:00Z", "{\"score\":3}");
    assert_string_equal(got, "");
    step(rs, st, "B2", "c2", "survey.csat", "2026-03-01T11:00:00Z", "{\"score\":2}");
    assert_non_null(strstr(got, "\"rule\": \"detractor\", \"status\": \"firing\""));
    /* A score that is not a number never compares. */
    cstate_free(st);
    st = cstate_new("B3", 2);
    step(rs, st, "B3", "c3", "survey.nps", "2026-03-01T10:00:00Z", "{\"score\":\"6\"}");
    assert_string_equal(got, "");
    cstate_free(st);
    ruleset_free(rs);
}

static void test_both_rules_risk(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-basic");
    cstate_t *st = cstate_new(C, strlen(C));
    step(rs, st, C, "e1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    step(rs, st, C, "e2", "meeting.postponed", "2026-03-02T10:00:00Z", NULL);
    assert_non_null(strstr(got, "\"risk\": 20"));
    step(rs, st, C, "e3", "survey.nps", "2026-03-03T10:00:00Z", "{\"score\":2}");
    assert_non_null(strstr(got, "\"risk\": 50")); /* 20 + 30 */
    step(rs, st, C, "e4", "meeting.held", "2026-03-04T10:00:00Z", NULL);
    assert_non_null(strstr(got, "\"risk\": 30"));
    cstate_free(st);
    ruleset_free(rs);
}

/* ---- Dedup and ignored types -------------------------------------------- */

static void test_duplicate_and_ignored(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-basic");
    cstate_t *st = cstate_new(C, strlen(C));
    uint8_t fresh[4096], before[4096], after[4096];
    size_t nf = encoded(st, fresh, sizeof(fresh));
    /* No rule or feature uses order.placed: nothing is touched. */
    assert_int_equal(step(rs, st, C, "o1", "order.placed", "2026-03-01T09:00:00Z",
                          "{\"amount\":10}"),
                     ENGINE_IGNORED);
    assert_int_equal(encoded(st, after, sizeof(after)), nf);
    assert_memory_equal(fresh, after, nf);
    assert_int_equal(step(rs, st, C, "e1", "meeting.postponed",
                          "2026-03-01T10:00:00Z", NULL),
                     ENGINE_APPLIED);
    size_t nb = encoded(st, before, sizeof(before));
    /* The same id again (at-least-once upstream): counted once. */
    assert_int_equal(step(rs, st, C, "e1", "meeting.postponed",
                          "2026-03-01T10:00:00Z", NULL),
                     ENGINE_DUPLICATE);
    assert_string_equal(got, "");
    assert_int_equal(encoded(st, after, sizeof(after)), nb);
    assert_memory_equal(before, after, nb);
    st = reload(st);
    /* ... also after the state was persisted and reloaded. */
    assert_int_equal(step(rs, st, C, "e1", "meeting.postponed",
                          "2026-03-01T10:00:00Z", NULL),
                     ENGINE_DUPLICATE);
    /* A different id is a different event: the second postponement fires. */
    assert_int_equal(step(rs, st, C, "e2", "meeting.postponed",
                          "2026-03-01T11:00:00Z", NULL),
                     ENGINE_APPLIED);
    assert_non_null(strstr(got, "\"status\": \"firing\""));
    /* Events without an id are never duplicates; the trigger says "". */
    cstate_free(st);
    st = cstate_new(C, strlen(C));
    assert_int_equal(step(rs, st, C, NULL, "survey.nps", "2026-03-01T10:00:00Z",
                          "{\"score\":1}"),
                     ENGINE_APPLIED);
    assert_non_null(strstr(got, "\"trigger\": {\"event_id\": \"\"}"));
    assert_int_equal(step(rs, st, C, NULL, "survey.nps", "2026-03-01T10:00:00Z",
                          "{\"score\":1}"),
                     ENGINE_APPLIED);
    cstate_free(st);
    ruleset_free(rs);
}

static void test_dedup_window_and_bound(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-basic");
    cstate_t *st = cstate_new(C, strlen(C));
    engine_opts_t saved = opts;
    opts.dedup_window_ms = 3600000; /* 1h */
    opts.dedup_max_ids = 2;
    step(rs, st, C, "a", "survey.nps", "2026-03-01T10:00:00Z", "{\"score\":9}");
    assert_int_equal(step(rs, st, C, "a", "survey.nps", "2026-03-01T10:30:00Z",
                          "{\"score\":9}"),
                     ENGINE_DUPLICATE);
    /* Once the client's event time is past the window, the id is forgotten. */
    step(rs, st, C, "b", "survey.nps", "2026-03-01T11:30:00Z", "{\"score\":9}");
    assert_int_equal(step(rs, st, C, "a", "survey.nps", "2026-03-01T11:31:00Z",
                          "{\"score\":9}"),
                     ENGINE_APPLIED);
    /* At most 2 ids: b, a remembered; c pushes b out. */
    step(rs, st, C, "c", "survey.nps", "2026-03-01T11:32:00Z", "{\"score\":9}");
    assert_int_equal(st->dd_n, 2);
    assert_int_equal(step(rs, st, C, "b", "survey.nps", "2026-03-01T11:33:00Z",
                          "{\"score\":9}"),
                     ENGINE_APPLIED);
    assert_int_equal(step(rs, st, C, "c", "survey.nps", "2026-03-01T11:34:00Z",
                          "{\"score\":9}"),
                     ENGINE_DUPLICATE);
    /* Dedup disabled. */
    opts.dedup_max_ids = 0;
    assert_int_equal(step(rs, st, C, "c", "survey.nps", "2026-03-01T11:35:00Z",
                          "{\"score\":9}"),
                     ENGINE_APPLIED);
    opts = saved;
    cstate_free(st);
    ruleset_free(rs);
}

/* ---- for: --------------------------------------------------------------- */

static void test_for_fires_at_deadline(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-for");
    cstate_t *st = cstate_new(C, strlen(C));
    assert_true(cstate_next_wake(st, rs) == INT64_MAX);
    step(rs, st, C, "e1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    assert_string_equal(got, ""); /* pending */
    assert_true(cstate_next_wake(st, rs) == ts("2026-03-01T12:00:00Z"));
    st = reload(st);
    assert_true(cstate_next_wake(st, rs) == ts("2026-03-01T12:00:00Z"));
    tick(rs, st, "2026-03-01T11:59:59Z");
    assert_string_equal(got, "");
    tick(rs, st, "2026-03-01T12:30:00Z");
    assert_string_equal(
        got,
        "{\"alert_id\": \"slow/ACME-001/2026-03-01T12:00:00Z\", "
        "\"rule\": \"slow\", \"status\": \"firing\", \"severity\": \"warning\", "
        "\"client_id\": \"ACME-001\", \"at\": \"2026-03-01T12:00:00Z\", "
        "\"summary\": \"1 postponed for 2h\", \"labels\": {}, "
        "\"values\": {\"quiet\": 1}, \"risk\": 0, \"trigger\": {\"timer\": true}}\n");
    assert_true(cstate_next_wake(st, rs) == INT64_MAX);
    tick(rs, st, "2026-03-01T13:00:00Z"); /* nothing twice */
    assert_string_equal(got, "");
    step(rs, st, C, "e2", "meeting.held", "2026-03-01T14:00:00Z", NULL);
    assert_non_null(strstr(got, "\"status\": \"resolved\", \"severity\": \"warning\""));
    assert_non_null(strstr(got, "slow/ACME-001/2026-03-01T12:00:00Z"));
    cstate_free(st);
    ruleset_free(rs);
}

static void test_for_cancelled_and_late_timer(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-for");
    cstate_t *st = cstate_new(C, strlen(C));
    /* Stops holding before the deadline: no alert, no wake. */
    step(rs, st, C, "e1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    step(rs, st, C, "e2", "meeting.held", "2026-03-01T11:00:00Z", NULL);
    assert_string_equal(got, "");
    assert_true(cstate_next_wake(st, rs) == INT64_MAX);
    tick(rs, st, "2026-03-02T00:00:00Z");
    assert_string_equal(got, "");
    /* The deadline passes but the watermark timer has not run when the
     * client's next event arrives: the firing comes first, at the deadline,
     * whatever the runtime's timing. */
    step(rs, st, C, "e3", "meeting.postponed", "2026-03-02T10:00:00Z", NULL);
    step(rs, st, C, "e4", "meeting.postponed", "2026-03-02T13:00:00Z", NULL);
    assert_string_equal(
        got,
        "{\"alert_id\": \"slow/ACME-001/2026-03-02T12:00:00Z\", "
        "\"rule\": \"slow\", \"status\": \"firing\", \"severity\": \"warning\", "
        "\"client_id\": \"ACME-001\", \"at\": \"2026-03-02T12:00:00Z\", "
        "\"summary\": \"1 postponed for 2h\", \"labels\": {}, "
        "\"values\": {\"quiet\": 1}, \"risk\": 0, \"trigger\": {\"timer\": true}}\n");
    tick(rs, st, "2026-03-02T14:00:00Z");
    assert_string_equal(got, "");
    /* A rule that reads event fields keeps the verdict of its event. */
    step(rs, st, C, "o1", "order.placed", "2026-03-03T10:00:00Z", "{\"amount\":5000}");
    assert_string_equal(got, "");
    tick(rs, st, "2026-03-03T11:00:00Z");
    assert_non_null(strstr(got, "\"rule\": \"big_order\", \"status\": \"firing\""));
    assert_non_null(strstr(got, "\"values\": {\"data.amount\": null}"));
    /* resolve: false -- no resolved alert when it stops holding. */
    step(rs, st, C, "o2", "order.placed", "2026-03-03T12:00:00Z", "{\"amount\":1}");
    assert_string_equal(got, "");
    cstate_free(st);
    ruleset_free(rs);
}

/* ---- risk, firing(), segments ------------------------------------------- */

static void test_risk_and_firing(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-risk");
    cstate_t *st = cstate_new(C, strlen(C));
    step(rs, st, C, "1", "sig.b", "2026-03-01T10:00:00Z", "{\"on\":true}");
    assert_non_null(strstr(got, "\"rule\": \"b\""));
    assert_non_null(strstr(got, "\"risk\": 40"));
    /* a fires (risk 90), then churn_risk sees risk 90 and a firing. */
    step(rs, st, C, "2", "sig.a", "2026-03-01T11:00:00Z", "{\"on\":true}");
    assert_string_equal(
        got,
        "{\"alert_id\": \"a/ACME-001/2026-03-01T11:00:00Z\", \"rule\": \"a\", "
        "\"status\": \"firing\", \"severity\": \"warning\", \"client_id\": "
        "\"ACME-001\", \"at\": \"2026-03-01T11:00:00Z\", \"summary\": \"a\", "
        "\"labels\": {}, \"values\": {\"data.on\": true}, \"risk\": 90, "
        "\"trigger\": {\"event_id\": \"2\"}}\n"
        "{\"alert_id\": \"churn_risk/ACME-001/2026-03-01T11:00:00Z\", "
        "\"rule\": \"churn_risk\", \"status\": \"firing\", \"severity\": "
        "\"critical\", \"client_id\": \"ACME-001\", \"at\": "
        "\"2026-03-01T11:00:00Z\", \"summary\": \"risk 90\", \"labels\": {}, "
        "\"values\": {\"risk\": 90}, \"risk\": 90, \"trigger\": {\"event_id\": "
        "\"2\"}}\n");
    /* The cap. */
    step(rs, st, C, "3", "sig.c", "2026-03-01T12:00:00Z", "{\"on\":true}");
    assert_non_null(strstr(got, "\"risk\": 100"));
    /* a resolves; churn_risk (needs firing("a")) resolves after it. */
    step(rs, st, C, "4", "sig.a", "2026-03-01T13:00:00Z", "{\"on\":false}");
    assert_non_null(strstr(got, "\"rule\": \"a\", \"status\": \"resolved\""));
    assert_non_null(strstr(got, "\"rule\": \"churn_risk\", \"status\": \"resolved\""));
    assert_non_null(strstr(got, "\"risk\": 70"));
    cstate_free(st);
    ruleset_free(rs);
}

static void test_segments(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-segments");
    cstate_t *ent = cstate_new("E", 1), *smb = cstate_new("S", 1);
    step(rs, ent, "E", "u1", "client.updated", "2026-03-01T09:00:00Z",
         "{\"tier\":\"enterprise\"}");
    step(rs, ent, "E", "p1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    step(rs, ent, "E", "p2", "meeting.postponed", "2026-03-01T11:00:00Z", NULL);
    assert_string_equal(got, ""); /* enterprise: limit 3 */
    ent = reload(ent);
    step(rs, ent, "E", "p3", "meeting.postponed", "2026-03-01T12:00:00Z", NULL);
    assert_non_null(strstr(got, "\"summary\": \"3 >= 3\""));
    step(rs, smb, "S", "p1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    step(rs, smb, "S", "p2", "meeting.postponed", "2026-03-01T11:00:00Z", NULL);
    assert_non_null(strstr(got, "\"summary\": \"2 >= 2\""));
    cstate_free(ent);
    cstate_free(smb);
    ruleset_free(rs);
}

/* ---- Client state -------------------------------------------------------- */

static void test_state_corrupt(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-basic");
    cstate_t *st = cstate_new(C, strlen(C));
    step(rs, st, C, "e1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    step(rs, st, C, "e2", "meeting.postponed", "2026-03-02T10:00:00Z", NULL);
    step(rs, st, C, "s1", "survey.nps", "2026-03-03T10:00:00Z", "{\"score\":3}");
    cstate_set_indexed_wake(st, 12345);
    uint8_t rec[4096];
    size_t n = encoded(st, rec, sizeof(rec) - 1);
    cstate_t *back = NULL;
    churn_err_t err;
    /* Every truncation is refused, never crashes. */
    for (size_t k = 0; k < n; k++) {
        back = (cstate_t *)1;
        assert_int_equal(cstate_decode(rec, k, C, strlen(C), &back, &err),
                         CHURN_ECORRUPT);
        assert_null(back);
    }
    /* Trailing garbage. */
    rec[n] = 0;
    assert_int_equal(cstate_decode(rec, n + 1, C, strlen(C), &back, &err),
                     CHURN_ECORRUPT);
    assert_non_null(strstr(err.msg, "trailing"));
    /* Versions this build does not know. */
    uint8_t v = rec[0];
    rec[0] = 4;
    assert_int_equal(cstate_decode(rec, n, C, strlen(C), &back, &err), CHURN_ECORRUPT);
    assert_string_equal(err.msg, "state record version 4; this build reads 1 to 3");
    rec[0] = 0;
    assert_int_equal(cstate_decode(rec, n, C, strlen(C), &back, &err), CHURN_ECORRUPT);
    rec[0] = v;
    /* Absurd counts are refused before any allocation. */
    static const uint8_t huge[] = {1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(cstate_decode(huge, sizeof(huge), C, strlen(C), &back, &err),
                     CHURN_ECORRUPT);
    /* An unknown rule status. */
    static const uint8_t status[] = {1, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8,
                                     9, 0, 0, 0};
    assert_int_equal(cstate_decode(status, sizeof(status), C, strlen(C), &back, &err),
                     CHURN_ECORRUPT);
    assert_non_null(strstr(err.msg, "unknown status 9"));
    assert_int_equal(cstate_decode(NULL, 0, C, strlen(C), &back, &err), CHURN_ECORRUPT);
    /* Every single-byte flip either decodes or is refused: never crashes. */
    for (size_t k = 0; k < n; k++) {
        for (int bit = 0; bit < 8; bit++) {
            rec[k] ^= (uint8_t)(1u << bit);
            back = NULL;
            if (cstate_decode(rec, n, C, strlen(C), &back, &err) == 0) {
                /* Whatever decoded must also be usable by the engine. */
                step(rs, back, C, "z", "meeting.postponed", "2026-03-05T10:00:00Z", NULL);
                cstate_free(back);
            }
            rec[k] ^= (uint8_t)(1u << bit);
        }
    }
    /* And the intact record still round-trips. */
    assert_int_equal(cstate_decode(rec, n, C, strlen(C), &back, &err), 0);
    assert_true(cstate_indexed_wake(back) == 12345);
    assert_string_equal(cstate_client_id(back), C);
    cstate_free(back);
    cstate_free(st);
    ruleset_free(rs);
}

static void test_state_across_rule_changes(void **state) {
    (void)state;
    ruleset_t *a = load("rules-evolve-a");
    ruleset_t *b = load("rules-evolve-b");
    assert_string_not_equal(ruleset_hash(a), ruleset_hash(b));
    cstate_t *st = cstate_new(C, strlen(C));
    step(a, st, C, "e1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    step(a, st, C, "e2", "email.sent", "2026-03-01T11:00:00Z", NULL);
    step(a, st, C, "s1", "survey.nps", "2026-03-01T12:00:00Z", "{\"score\":6}");
    assert_non_null(strstr(got, "\"rule\": \"detractor\", \"status\": \"firing\""));
    assert_int_equal(st->n_feats, 3);
    /* Decoded without a rule set, every section is kept, byte for byte. */
    st = reload(st);
    assert_int_equal(st->n_feats, 3);
    assert_int_equal(st->n_rules, 2);
    /* Under B: `postponements` (same definition, other position) keeps its
     * count, so the second postponement fires; `gone` is dropped; `fresh`
     * starts empty; detractor's condition changed, so it starts inactive. */
    step(b, st, C, "e3", "meeting.postponed", "2026-03-02T10:00:00Z", NULL);
    assert_non_null(strstr(got, "\"rule\": \"postponed\", \"status\": \"firing\""));
    assert_int_equal(st->n_feats, 3);
    assert_true(st->feats[0].id == b->features[0].id); /* fresh */
    for (size_t i = 0; i < st->n_feats; i++) assert_true(st->feats[i].id != a->features[2].id);
    step(b, st, C, "s2", "survey.nps", "2026-03-02T11:00:00Z", "{\"score\":6}");
    assert_string_equal(got, ""); /* 6 is not <= 5 under B; no stale firing */
    step(b, st, C, "s3", "survey.nps", "2026-03-02T12:00:00Z", "{\"score\":5}");
    assert_non_null(strstr(got, "\"alert_id\": \"detractor/ACME-001/2026-03-02T12:00:00Z\""));
    assert_non_null(strstr(got, "\"risk\": 10"));
    st = reload(st);
    /* Back to A: the nps value survived both changes. */
    step(a, st, C, "s4", "survey.nps", "2026-03-02T13:00:00Z", "{\"score\":6}");
    assert_non_null(strstr(got, "\"rule\": \"detractor\", \"status\": \"firing\""));
    cstate_free(st);
    ruleset_free(a);
    ruleset_free(b);
}

static void test_state_unknown_kind_kept(void **state) {
    (void)state;
    /* A record from a newer build: a section of a kind this build cannot
     * decode (kind 50), and one of an unassigned kind. */
    buf_t rec, again;
    buf_init(&rec);
    buf_init(&again);
    assert_int_equal(buf_putc(&rec, 1), 0);
    assert_int_equal(buf_put_svarint(&rec, INT64_MAX), 0);
    assert_int_equal(buf_put_svarint(&rec, INT64_MIN), 0);
    assert_int_equal(buf_put_varint(&rec, 0), 0);
    assert_int_equal(buf_put_varint(&rec, 2), 0);
    assert_int_equal(buf_put_u64be(&rec, 0x1234), 0);
    assert_int_equal(buf_putc(&rec, 50), 0);
    assert_int_equal(buf_put_bytes(&rec, "\x01\x02\x03", 3), 0);
    assert_int_equal(buf_put_u64be(&rec, 0x5678), 0);
    assert_int_equal(buf_putc(&rec, 200), 0);
    assert_int_equal(buf_put_bytes(&rec, "", 0), 0);
    assert_int_equal(buf_put_varint(&rec, 0), 0);
    cstate_t *st = NULL;
    churn_err_t err;
    assert_int_equal(cstate_decode(rec.data, rec.len, C, strlen(C), &st, &err), 0);
    assert_int_equal(cstate_encode(st, &again), 0);
    /* A version-1 record is written back as version 3 (same sections, the
     * rule fields v1 lacks added, an empty ledger after them), and that
     * round-trips byte for byte. */
    assert_int_equal(again.data[0], 3);
    buf_t ledger;
    buf_init(&ledger);
    assert_int_equal(ledger_encode(&st->ledger, &ledger), 0);
    assert_true(ledger_is_empty(&st->ledger));
    assert_int_equal(again.len, rec.len + ledger.len);
    assert_memory_equal(again.data + 1, rec.data + 1, rec.len - 1);
    assert_memory_equal(again.data + rec.len, ledger.data, ledger.len);
    buf_free(&ledger);
    cstate_free(st);
    st = NULL;
    assert_int_equal(cstate_decode(again.data, again.len, C, strlen(C), &st, &err), 0);
    buf_t third;
    buf_init(&third);
    assert_int_equal(cstate_encode(st, &third), 0);
    assert_int_equal(third.len, again.len);
    assert_memory_equal(third.data, again.data, again.len);
    buf_free(&third);
    /* A rule set without them: dropped at the first event. */
    ruleset_t *rs = load("rules-basic");
    step(rs, st, C, "e1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    assert_int_equal(st->n_feats, rs->n_features);
    for (size_t i = 0; i < st->n_feats; i++) assert_null(st->feats[i].raw);
    /* A known kind whose payload does not decode is still corrupt. */
    buf_reset(&rec);
    assert_int_equal(buf_putc(&rec, 1), 0);
    assert_int_equal(buf_put_svarint(&rec, INT64_MAX), 0);
    assert_int_equal(buf_put_svarint(&rec, INT64_MIN), 0);
    assert_int_equal(buf_put_varint(&rec, 0), 0);
    assert_int_equal(buf_put_varint(&rec, 1), 0);
    assert_int_equal(buf_put_u64be(&rec, 0x1234), 0);
    assert_int_equal(buf_putc(&rec, FEAT_STREAK), 0);
    assert_int_equal(buf_put_bytes(&rec, "\x01", 1), 0);
    assert_int_equal(buf_put_varint(&rec, 0), 0);
    cstate_t *bad = NULL;
    assert_int_equal(cstate_decode(rec.data, rec.len, C, strlen(C), &bad, &err),
                     CHURN_ECORRUPT);
    assert_string_equal(err.msg, "feature section 0 (kind 2) cannot be decoded");
    buf_free(&rec);
    buf_free(&again);
    cstate_free(st);
    ruleset_free(rs);
}

static void test_state_json(void **state) {
    (void)state;
    ruleset_t *rs = load("rules-basic");
    cstate_t *st = cstate_new(C, strlen(C));
    buf_t b;
    buf_init(&b);
    assert_int_equal(cstate_format_json(st, rs, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_string_equal(
        (const char *)b.data,
        "{\"client_id\": \"ACME-001\", \"features\": {"
        "\"nps_score\": {\"kind\": \"latest\", \"state\": {\"at\": null, \"value\": null}}, "
        "\"csat_score\": {\"kind\": \"latest\", \"state\": {\"at\": null, \"value\": null}}, "
        "\"postponements\": {\"kind\": \"streak\", \"state\": {\"count\": 0, \"last\": null}}}, "
        "\"rules\": {\"detractor\": {\"status\": \"inactive\"}, "
        "\"meetings_postponed\": {\"status\": \"inactive\"}}, "
        "\"risk\": 0, \"next_wake\": null, \"recent_event_ids\": 0, "
        "\"history\": {\"first_activity\": null, \"sales\": {\"days\": 0, \"orders\": 0, "
        "\"amount\": 0.00, \"last_order_day\": null}, \"contracts\": [], "
        "\"alerts_fired\": []}}");
    step(rs, st, C, "e1", "meeting.postponed", "2026-03-01T10:00:00Z", NULL);
    step(rs, st, C, "e2", "meeting.postponed", "2026-03-02T10:00:00Z", NULL);
    step(rs, st, C, "s1", "survey.nps", "2026-03-03T10:00:00Z", "{\"score\":8}");
    st = reload(st); /* unbound: read by id */
    buf_reset(&b);
    assert_int_equal(cstate_format_json(st, rs, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_string_equal(
        (const char *)b.data,
        "{\"client_id\": \"ACME-001\", \"features\": {"
        "\"nps_score\": {\"kind\": \"latest\", \"state\": {\"at\": "
        "\"2026-03-03T10:00:00Z\", \"value\": 8}}, "
        "\"csat_score\": {\"kind\": \"latest\", \"state\": {\"at\": null, \"value\": null}}, "
        "\"postponements\": {\"kind\": \"streak\", \"state\": {\"count\": 2, \"last\": "
        "\"2026-03-02T10:00:00Z\"}}}, "
        "\"rules\": {\"detractor\": {\"status\": \"inactive\"}, "
        "\"meetings_postponed\": {\"status\": \"firing\", \"fired_at\": "
        "\"2026-03-02T10:00:00Z\", \"alert_id\": "
        "\"meetings_postponed/ACME-001/2026-03-02T10:00:00Z\"}}, "
        "\"risk\": 20, \"next_wake\": null, \"recent_event_ids\": 3, "
        "\"history\": {\"first_activity\": null, \"sales\": {\"days\": 0, \"orders\": 0, "
        "\"amount\": 0.00, \"last_order_day\": null}, \"contracts\": [], "
        "\"alerts_fired\": [{\"rule\": \"meetings_postponed\", \"at\": \"2026-03-02T10:00:00Z\"}]}}");
    buf_reset(&b);
    assert_int_equal(cstate_format_json(st, NULL, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_string_equal((const char *)b.data,
                        "{\"client_id\": \"ACME-001\", \"features\": {}, \"rules\": {}, "
                        "\"risk\": 0, \"next_wake\": null, \"recent_event_ids\": 3, "
                        "\"history\": {\"first_activity\": null, \"sales\": {\"days\": 0, \"orders\": 0, "
        "\"amount\": 0.00, \"last_order_day\": null}, \"contracts\": [], "
        "\"alerts_fired\": [{\"rule\": \"meetings_postponed\", \"at\": \"2026-03-02T10:00:00Z\"}]}}");
    buf_free(&b);
    cstate_free(st);
    ruleset_free(rs);
}

/* ---- Alert JSON ---------------------------------------------------------- */

static void test_alert_json(void **state) {
    (void)state;
    alert_t a;
    memset(&a, 0, sizeof(a));
    a.alert_id = "complaint_unanswered/ACME-001/T-9/2026-03-03T10:00:00Z";
    a.rule = "complaint_unanswered";
    a.client_id = "ACME-001";
    a.status = ALERT_FIRING;
    a.severity = "critical";
    a.at_ms = ts("2026-03-03T10:00:00Z");
    a.summary = "Complaint T-9 unanswered for 48h";
    a.labels_json = "{\"category\": \"service\"}";
    a.values_json = "{\"open\": 1}";
    a.risk = 40;
    a.trigger_event_id = "evt-88";
    buf_t b;
    buf_init(&b);
    assert_int_equal(alert_format_json(&a, ts("2026-11-25T08:00:00.123Z"), &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    /* SPEC section 5's example, verbatim. */
    assert_string_equal(
        (const char *)b.data,
        "{\"alert_id\": \"complaint_unanswered/ACME-001/T-9/2026-03-03T10:00:00Z\", "
        "\"rule\": \"complaint_unanswered\", \"status\": \"firing\", "
        "\"severity\": \"critical\", \"client_id\": \"ACME-001\", "
        "\"at\": \"2026-03-03T10:00:00Z\", "
        "\"summary\": \"Complaint T-9 unanswered for 48h\", "
        "\"labels\": {\"category\": \"service\"}, \"values\": {\"open\": 1}, "
        "\"risk\": 40, \"trigger\": {\"event_id\": \"evt-88\"}, "
        "\"emitted_at\": \"2026-11-25T08:00:00.123Z\"}");
    /* Resolved, timer-triggered, escaped text, fractional risk, empty maps. */
    buf_reset(&b);
    a.status = ALERT_RESOLVED;
    a.trigger_event_id = NULL;
    a.summary = "say \"hi\"\n\\";
    a.labels_json = NULL;
    a.values_json = "{}";
    a.risk = 12.5;
    assert_int_equal(alert_format_json(&a, -1, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_string_equal(
        (const char *)b.data,
        "{\"alert_id\": \"complaint_unanswered/ACME-001/T-9/2026-03-03T10:00:00Z\", "
        "\"rule\": \"complaint_unanswered\", \"status\": \"resolved\", "
        "\"severity\": \"critical\", \"client_id\": \"ACME-001\", "
        "\"at\": \"2026-03-03T10:00:00Z\", "
        "\"summary\": \"say \\\"hi\\\"\\n\\\\\", "
        "\"labels\": {}, \"values\": {}, "
        "\"risk\": 12.5, \"trigger\": {\"timer\": true}}");
    buf_free(&b);
}

static void test_engine_out_reuse(void **state) {
    (void)state;
    /* Alerts accumulate across events until reset; reset keeps capacity. */
    ruleset_t *rs = load("rules-basic");
    cstate_t *st = cstate_new(C, strlen(C));
    engine_out_t out;
    engine_out_init(&out);
    const char *evs[] = {
        "{\"id\":\"1\",\"type\":\"survey.nps\",\"client_id\":\"ACME-001\","
        "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"score\":0}}",
        "{\"id\":\"2\",\"type\":\"survey.nps\",\"client_id\":\"ACME-001\","
        "\"ts\":\"2026-03-01T11:00:00Z\",\"data\":{\"score\":10}}",
    };
    for (size_t i = 0; i < 2; i++) {
        event_t ev;
        assert_int_equal(event_parse(&cfg, evs[i], strlen(evs[i]), &ev, NULL, 0),
                         EVENT_OK);
        assert_int_equal(engine_on_event(rs, &opts, st, &ev, &out), ENGINE_APPLIED);
        event_clear(&ev);
    }
    assert_int_equal(out.n_alerts, 2);
    assert_int_equal(out.alerts[0].status, ALERT_FIRING);
    assert_int_equal(out.alerts[1].status, ALERT_RESOLVED);
    assert_string_equal(out.alerts[0].alert_id, out.alerts[1].alert_id);
    assert_ptr_equal(out.alerts[0].rule, ruleset_rule_name(rs, 0));
    size_t cap = out.cap;
    engine_out_reset(&out);
    assert_int_equal(out.n_alerts, 0);
    assert_int_equal(out.cap, cap);
    engine_out_free(&out);
    cstate_free(st);
    ruleset_free(rs);
}

/* every: takes any duration up to INT64_MAX ms. With such a period the
 * catch-up bound (10000 ticks) and the distance from a tick before 1970 to
 * now overflowed int64 (UBSan in tests/fuzz/fuzz_rules.c); the ticks are
 * the multiples of the period since the epoch, so between an event in the
 * year 1000 and one in 2026 exactly one tick is due: 1970-01-01 (s missed
 * it when the arithmetic wrapped). */
static void test_every_huge_period(void **state) {
    (void)state;
    ruleset_t *rs = load_text("rules:\n"
                              "  r:\n    on: [every 15250284452w]\n"
                              "  s:\n    on: [every 1000000000w, order.placed]\n"
                              "    when: not (event.type == \"order.placed\")\n");
    cstate_t *st = cstate_new(C, strlen(C));
    assert_int_equal(step(rs, st, C, "e1", "order.placed", "1000-01-01T00:00:00Z",
                          NULL),
                     ENGINE_APPLIED);
    assert_string_equal(got, "");
    assert_int_equal(step(rs, st, C, "e2", "order.placed", "2026-03-01T00:00:00Z",
                          NULL),
                     ENGINE_APPLIED);
    assert_string_equal(
        got,
        "{\"alert_id\": \"r/ACME-001/1970-01-01T00:00:00Z\", \"rule\": \"r\", "
        "\"status\": \"firing\", \"severity\": \"warning\", \"client_id\": "
        "\"ACME-001\", \"at\": \"1970-01-01T00:00:00Z\", \"summary\": \"r\", "
        "\"labels\": {}, \"values\": {}, \"risk\": 0, \"trigger\": {\"timer\": true}}\n"
        "{\"alert_id\": \"s/ACME-001/1970-01-01T00:00:00Z\", \"rule\": \"s\", "
        "\"status\": \"firing\", \"severity\": \"warning\", \"client_id\": "
        "\"ACME-001\", \"at\": \"1970-01-01T00:00:00Z\", \"summary\": \"s\", "
        "\"labels\": {}, \"values\": {}, \"risk\": 0, \"trigger\": {\"timer\": true}}\n"
        "{\"alert_id\": \"s/ACME-001/1970-01-01T00:00:00Z\", \"rule\": \"s\", "
        "\"status\": \"resolved\", \"severity\": \"warning\", \"client_id\": "
        "\"ACME-001\", \"at\": \"2026-03-01T00:00:00Z\", \"summary\": \"s\", "
        "\"labels\": {}, \"values\": {}, \"risk\": 0, \"trigger\": {\"event_id\": "
        "\"e2\"}}\n");
    /* Nothing further is due for a very long time. */
    assert_true(cstate_next_wake(st, rs) > ts("9999-12-31T23:59:59Z"));
    tick(rs, st, "9999-12-31T23:59:59Z");
    assert_string_equal(got, "");
    cstate_free(st);
    ruleset_free(rs);
}

/* The daemon's look-ahead indexes a client past its quiet ticks; before
 * another rule set takes over, engine_settle_quiet brings the entry back to
 * where a run without look-ahead has it: the first tick after what has
 * fired. On a decoded state too (quiet_ms is not stored), by rule id. */
/* A rule set of one last feature on survey.nps and one daily rule `quiet`
 * with the given when:, and client C's state after one survey.nps at
 * 2026-06-01T10:00:00Z applied with look-ahead (returns its alerts). */
static ruleset_t *nps_rules(const char *when) {
    char text[512];
    snprintf(text, sizeof(text),
             "features:\n  last_nps:\n    last: survey.nps\n"
             "rules:\n  quiet:\n    on: [survey.nps, every 1d]\n    when: %s\n",
             when);
    return load_text(text);
}

static cstate_t *after_one_nps(const ruleset_t *rs, const engine_opts_t *look,
                               size_t *n_alerts) {
    cstate_t *st = cstate_new(C, strlen(C));
    char js[] = "{\"id\":\"n1\",\"type\":\"survey.nps\",\"client_id\":\"" C
                "\",\"ts\":\"2026-06-01T10:00:00Z\",\"data\":{\"score\":9}}";
    event_t ev;
    char detail[128];
    assert_int_equal(event_parse(&cfg, js, strlen(js), &ev, detail, sizeof(detail)),
                     EVENT_OK);
    engine_out_t out;
    engine_out_init(&out);
    assert_int_equal(engine_on_event(rs, look, st, &ev, &out), ENGINE_APPLIED);
    event_clear(&ev);
    *n_alerts = out.n_alerts;
    engine_out_free(&out);
    return st;
}

/* Client C after one survey.nps, looked ahead `ticks` ticks at commit
 * and indexed there; copies[0..n) are its state read back from a record. */
static cstate_t *indexed_nps(const ruleset_t *rs, engine_opts_t *look,
                             unsigned ticks, cstate_t **copies, size_t n) {
    *look = opts;
    look->lookahead_ticks = ticks;
    size_t n_alerts;
    cstate_t *st = after_one_nps(rs, look, &n_alerts);
    assert_int_equal(n_alerts, 0);
    assert_true(cstate_next_wake(st, rs) == ts("2026-06-02T00:00:00Z"));
    engine_look_ahead(rs, look, st);
    cstate_set_indexed_wake(st, cstate_next_wake(st, rs));
    uint8_t rec[4096];
    size_t len = encoded(st, rec, sizeof(rec));
    churn_err_t err;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cstate_decode(rec, len, C, strlen(C), &copies[i], &err), 0);
    return st;
}

static void test_settle_quiet(void **state) {
    (void)state;
    ruleset_t *rs = nps_rules("since(last_nps) > 100d");
    engine_opts_t look;
    cstate_t *dec[3];
    cstate_t *st = indexed_nps(rs, &look, 32, dec, 3);
    /* 32 quiet ticks from 06-02: the first one looked at no more. */
    assert_true(cstate_next_wake(st, rs) == ts("2026-07-04T00:00:00Z"));

    /* In memory, bound: fired up to 06-05 12:00, the next tick is 06-06. */
    engine_settle_quiet(rs, st, ts("2026-06-05T12:00:00Z"));
    assert_true(cstate_next_wake(st, rs) == ts("2026-06-06T00:00:00Z"));
    /* Decoded, not bound: the same. */
    engine_settle_quiet(rs, dec[0], ts("2026-06-05T12:00:00Z"));
    assert_true(cstate_next_wake(dec[0], rs) == ts("2026-06-06T00:00:00Z"));
    /* Nothing known to have fired: the ticks stay to do. */
    engine_settle_quiet(rs, dec[1], INT64_MIN);
    assert_true(cstate_next_wake(dec[1], rs) == ts("2026-06-02T00:00:00Z"));
    /* Fired past the entry: the ticks before it are done, not the entry. */
    engine_settle_quiet(rs, dec[2], ts("2026-08-01T00:00:00Z"));
    assert_true(cstate_next_wake(dec[2], rs) == ts("2026-07-04T00:00:00Z"));
    for (int i = 0; i < 3; i++) cstate_free(dec[i]);
    cstate_free(st);

    /* A runtime that looks ahead and reads a state back from the store
     * takes its entry back as what the look-ahead knew (the store keeps
     * the entry, not quiet_ms): the ticks before it are not woken for,
     * nor evaluated at the next event. */
    st = indexed_nps(rs, &look, 366, dec, 2);
    assert_true(cstate_indexed_wake(st) == ts("2026-09-10T00:00:00Z"));
    engine_resume_quiet(rs, &look, dec[0]);
    assert_true(cstate_next_wake(dec[0], rs) == ts("2026-09-10T00:00:00Z"));
    /* Without look-ahead there is nothing to take back. */
    engine_resume_quiet(rs, &opts, dec[1]);
    assert_true(cstate_next_wake(dec[1], rs) == ts("2026-06-02T00:00:00Z"));
    for (int i = 0; i < 2; i++) cstate_free(dec[i]);
    cstate_free(st);
    ruleset_free(rs);
}

/* The look-ahead steps over the ticks whose answer is known to stay: a
 * year ahead, it finds the first tick past a 100-day silence (not
 * reachable in 32 evaluations a tick each). An answer it cannot follow is
 * evaluated tick by tick, at most 32 of them. */
static void test_look_ahead_steps_over_known_ticks(void **state) {
    (void)state;
    static const struct { const char *when; const char *wake; } cases[] = {
        {"since(last_nps) > 100d", "2026-09-10T00:00:00Z"},
        {"since(last_nps) < 100d", "2026-09-10T00:00:00Z"},
        {"since(last_nps) / 1d > 100 and since(last_nps) < 200d", "2026-09-10T00:00:00Z"},
        {"since(last_nps) == 100d", "2026-07-04T00:00:00Z"},
        {"seen(last_nps) and 1 > 2", "2027-06-03T00:00:00Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ruleset_t *rs = nps_rules(cases[i].when);
        engine_opts_t look = opts;
        look.lookahead_ticks = 366;
        size_t n_alerts;
        cstate_t *st = after_one_nps(rs, &look, &n_alerts);
        engine_look_ahead(rs, &look, st);
        if (cstate_next_wake(st, rs) != ts(cases[i].wake))
            fail_msg("'%s': woken at %lld, not %s", cases[i].when,
                     (long long)cstate_next_wake(st, rs), cases[i].wake);
        cstate_free(st);
        ruleset_free(rs);
    }
}

/* Apply one event to client C with look-ahead, and look ahead as the
 * runtime does at commit. */
static void look_step(const ruleset_t *rs, cstate_t *st, const char *type,
                      const char *when, const char *data) {
    engine_opts_t look = opts;
    look.lookahead_ticks = 366;
    assert_int_equal(step_with(rs, &look, st, C, NULL, type, when, data),
                     ENGINE_APPLIED);
    engine_look_ahead(rs, &look, st);
}

static void expect_wake(const ruleset_t *rs, const cstate_t *st, const char *what,
                        const char *wake) {
    if (cstate_next_wake(st, rs) != ts(wake))
        fail_msg("%s: woken at %lld, not %s", what,
                 (long long)cstate_next_wake(st, rs), wake);
}

/* What a look-ahead learnt of a rule's ticks is kept across events only
 * while nothing the rule reads changes: a feature its `when` queries, the
 * segment that picks its vars, or any rule's status (risk reads them
 * all). Each step below makes a quiet rule's ticks matter sooner than
 * the last look-ahead found; kept knowledge would wake the client a year
 * out, and the rule would fire late. */
static void test_look_ahead_forgets_what_changed(void **state) {
    (void)state;
    ruleset_t *rs = load_text(
        "vars:\n  silence: 10d\n"
        "segments:\n  attribute: tier\n  overrides:\n    big: {silence: 30d}\n"
        "features:\n"
        "  last_nps:\n    last: survey.nps\n"
        "  last_note:\n    last: note.added\n"
        "rules:\n"
        "  quiet:\n    on: [every 1d]\n"
        "    when: seen(last_nps) and since(last_nps) > $silence\n"
        "  flag:\n    on: note.added\n    when: data.level > 5\n    weight: 10\n"
        "  risky:\n    on: [every 1d]\n    when: risk >= 10\n");

    /* A feature the rule reads. */
    cstate_t *st = cstate_new(C, strlen(C));
    look_step(rs, st, "note.added", "2026-06-01T10:00:00Z", "{\"level\":1}");
    expect_wake(rs, st, "nothing can happen", "2027-06-03T00:00:00Z");
    look_step(rs, st, "survey.nps", "2026-06-03T10:00:00Z", "{}");
    expect_wake(rs, st, "after the survey", "2026-06-14T00:00:00Z");
    /* A feature it does not read keeps what was learnt, correctly. */
    look_step(rs, st, "note.added", "2026-06-04T10:00:00Z", "{\"level\":1}");
    expect_wake(rs, st, "after an unrelated note", "2026-06-14T00:00:00Z");
    cstate_free(st);

    /* Another rule's firing: risk reads it. */
    st = cstate_new(C, strlen(C));
    look_step(rs, st, "note.added", "2026-06-01T10:00:00Z", "{\"level\":1}");
    expect_wake(rs, st, "no risk", "2027-06-03T00:00:00Z");
    look_step(rs, st, "note.added", "2026-06-05T10:00:00Z", "{\"level\":9}");
    expect_wake(rs, st, "after flag fired", "2026-06-06T00:00:00Z");
    engine_opts_t look = opts;
    look.lookahead_ticks = 366;
    engine_out_t out;
    engine_out_init(&out);
    assert_int_equal(engine_on_time(rs, &look, st, ts("2026-06-06T00:00:00Z"), &out), 0);
    collect(&out);
    engine_out_free(&out);
    assert_non_null(strstr(got, "\"rule\": \"risky\", \"status\": \"firing\""));
    /* ... and its resolution. */
    look_step(rs, st, "note.added", "2026-06-07T10:00:00Z", "{\"level\":1}");
    expect_wake(rs, st, "after flag resolved", "2026-06-08T00:00:00Z");
    cstate_free(st);

    /* The segment, which picks $silence. */
    st = cstate_new(C, strlen(C));
    look_step(rs, st, "client.updated", "2026-06-01T09:00:00Z", "{\"tier\":\"big\"}");
    look_step(rs, st, "survey.nps", "2026-06-01T10:00:00Z", "{}");
    expect_wake(rs, st, "30 days of silence", "2026-07-02T00:00:00Z");
    look_step(rs, st, "client.updated", "2026-06-02T09:00:00Z", "{\"tier\":\"small\"}");
    expect_wake(rs, st, "10 days of silence", "2026-06-12T00:00:00Z");
    cstate_free(st);
    ruleset_free(rs);
}

/* ---- Look-ahead against tick by tick ------------------------------------ */

static uint64_t rnd_state;

static unsigned rnd(unsigned n) {
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (unsigned)(rnd_state % n);
}

/* One random event of the catalog, with the fields the default pack
 * reads, into js. */
static void random_event(char *js, size_t size, int64_t t_ms) {
    static const char *const roles[] = {"decision_maker", "buyer", "user"};
    static const char *const cats[] = {"defect", "complaint", "question"};
    char when[TIME_RFC3339_MAX], data[256];
    assert_true(time_format_rfc3339(t_ms, when, sizeof(when)) > 0);
    const char *type;
    unsigned k = rnd(8); /* a small key space: replies meet their tickets */
    switch (rnd(16)) {
    case 0: case 1: case 2:
        type = "order.placed";
        snprintf(data, sizeof(data), "{\"order_id\":\"O-%u\",\"amount\":%u}", k,
                 50 + rnd(2000));
        break;
    case 3:
        type = rnd(2) ? "email.sent" : "call.logged";
        snprintf(data, sizeof(data), "{\"contact_role\":\"%s\"}", roles[rnd(3)]);
        break;
    case 4:
        type = "meeting.held";
        snprintf(data, sizeof(data), "{\"meeting_id\":\"M-%u\",\"attendee_roles\":[\"%s\"]}",
                 k, roles[rnd(3)]);
        break;
    case 5:
        type = rnd(3) ? "meeting.postponed" : "meeting.cancelled";
        snprintf(data, sizeof(data), "{\"meeting_id\":\"M-%u\"}", k);
        break;
    case 6: case 7:
        type = "ticket.opened";
        snprintf(data, sizeof(data),
                 "{\"ticket_id\":\"T-%u\",\"category\":\"%s\",\"priority\":\"%s\"}", k,
                 cats[rnd(3)], rnd(2) ? "high" : "low");
        break;
    case 8:
        type = "ticket.replied";
        snprintf(data, sizeof(data), "{\"ticket_id\":\"T-%u\",\"by\":\"%s\"}", k,
                 rnd(2) ? "agent" : "client");
        break;
    case 9:
        type = "ticket.resolved";
        snprintf(data, sizeof(data), "{\"ticket_id\":\"T-%u\",\"outcome\":\"%s\"}", k,
                 rnd(3) ? "fixed" : "rejected");
        break;
    case 10:
        type = rnd(2) ? "survey.nps" : "survey.csat";
        snprintf(data, sizeof(data), "{\"score\":%u}", rnd(11));
        break;
    case 11:
        type = rnd(2) ? "feedback.received" : "feedback.answered";
        snprintf(data, sizeof(data), "{\"feedback_id\":\"F-%u\"}", k);
        break;
    case 12:
        type = "contract.signed";
        snprintf(data, sizeof(data), "{}");
        break;
    case 13:
        type = "account.owner_changed";
        snprintf(data, sizeof(data), "{\"owner\":\"o%u\"}", k);
        break;
    case 14:
        type = "order.cancelled";
        snprintf(data, sizeof(data), "{\"order_id\":\"O-%u\"}", k);
        break;
    default:
        type = "client.updated";
        snprintf(data, sizeof(data), "{\"tier\":\"%s\"}", rnd(2) ? "enterprise" : "smb");
        break;
    }
    snprintf(js, size, "{\"type\":\"%s\",\"client_id\":\"" C "\",\"ts\":\"%s\",\"data\":%s}",
             type, when, data);
}

/* Wake the client at each of its deadlines up to until_ms (the runtime's
 * timer index), with look-ahead after each wake when look has it. */
static void wake_upto(const ruleset_t *rs, const engine_opts_t *look, cstate_t *st,
                      int64_t until_ms, engine_out_t *out) {
    int64_t w;
    while ((w = cstate_next_wake(st, rs)) <= until_ms)
        assert_int_equal(engine_on_time(rs, look, st, w, out), 0);
}

/* One random story, the same for both runs (the seed), through the
 * engine; every alert as JSON into b. */
static void run_story(const ruleset_t *rs, uint64_t seed, unsigned ticks, buf_t *b) {
    engine_opts_t look = opts;
    look.lookahead_ticks = ticks;
    rnd_state = seed;
    cstate_t *st = cstate_new(C, strlen(C));
    engine_out_t out;
    engine_out_init(&out);
    int64_t t = ts("2026-01-01T00:00:00Z");
    for (int i = 0; i < 150; i++) {
        /* Mostly busy days, sometimes weeks or months of silence. */
        unsigned gap = rnd(10) ? rnd(3 * 86400) : rnd(90 * 86400);
        t += (int64_t)gap * 1000;
        char js[512];
        random_event(js, sizeof(js), t);
        /* Timers between events, or not: a batch may bring several
         * events of the client before its timers run (a backlog). */
        if (rnd(2)) wake_upto(rs, &look, st, t - 1, &out);
        event_t ev;
        char detail[128];
        assert_int_equal(event_parse(&cfg, js, strlen(js), &ev, detail, sizeof(detail)),
                         EVENT_OK);
        int rc = engine_on_event(rs, &look, st, &ev, &out);
        assert_true(rc == ENGINE_APPLIED || rc == ENGINE_IGNORED);
        event_clear(&ev);
        /* The runtime looks ahead at commit: after each event here, or
         * after every few, as a batch would. */
        if (rnd(3)) engine_look_ahead(rs, &look, st);
    }
    wake_upto(rs, &look, st, t + 400 * 86400000LL, &out);
    for (size_t i = 0; i < out.n_alerts; i++) {
        assert_int_equal(alert_format_json(&out.alerts[i], -1, b), 0);
        assert_int_equal(buf_putc(b, '\n'), 0);
    }
    assert_int_equal(buf_putc(b, 0), 0);
    engine_out_free(&out);
    cstate_free(st);
}

/* The look-ahead and what it keeps between events only ever skip ticks
 * that change nothing: random stories through the default pack give the
 * same alerts, byte for byte, as waking the client at every tick. */
static void test_look_ahead_changes_no_alert(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    size_t total = 0;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        buf_t plain, ahead;
        buf_init(&plain);
        buf_init(&ahead);
        run_story(rs, seed * 0x9E3779B97F4A7C15ULL, 0, &plain);
        run_story(rs, seed * 0x9E3779B97F4A7C15ULL, 366, &ahead);
        if (strcmp((const char *)plain.data, (const char *)ahead.data) != 0)
            fail_msg("seed %llu: tick by tick:\n%s\nwith look-ahead:\n%s",
                     (unsigned long long)seed, (const char *)plain.data,
                     (const char *)ahead.data);
        for (const char *p = (const char *)plain.data; (p = strchr(p, '\n')); p++) total++;
        buf_free(&plain);
        buf_free(&ahead);
    }
    /* The stories must make the rules fire, or the comparison is empty. */
    if (total < 1000) fail_msg("only %zu alerts in 200 stories", total);
    ruleset_free(rs);
}

/* repeat: across a long jump of event time sends at most the last 100
 * missed repeats of a firing and of each incident. Before, every period
 * was an alert: an expectation opened by an event of 1000-01-01 and
 * expiring at the next event sent one per day up to then (3 million,
 * found by tests/fuzz/fuzz_rules.c as a hang). */
static void test_repeat_catch_up_bounded(void **state) {
    (void)state;
    ruleset_t *rs = load_text("features:\n"
                              "  c:\n    after: ticket.opened\n"
                              "    expect: ticket.replied\n"
                              "    match: data.ticket_id\n    within: 1d\n"
                              "rules:\n"
                              "  r:\n    on: order.placed\n    repeat: 1d\n"
                              "  u:\n    on: expired(c)\n    repeat: 1d\n");
    cstate_t *st = cstate_new(C, strlen(C));
    assert_int_equal(step(rs, st, C, "e1", "order.placed", "2026-01-01T00:00:00Z",
                          NULL),
                     ENGINE_APPLIED);
    assert_non_null(strstr(got, "\"status\": \"firing\""));
    /* A year later: 365 periods due, the last 100 sent, numbered 1..100. */
    engine_out_t out;
    engine_out_init(&out);
    assert_int_equal(engine_on_time(rs, &opts, st, ts("2027-01-01T00:00:00Z"), &out), 0);
    assert_int_equal(out.n_alerts, 100);
    assert_int_equal(out.alerts[0].repeat, 1);
    assert_true(out.alerts[0].at_ms == ts("2026-09-24T00:00:00Z"));
    assert_int_equal(out.alerts[99].repeat, 100);
    assert_true(out.alerts[99].at_ms == ts("2027-01-01T00:00:00Z"));
    engine_out_reset(&out);
    /* A ticket of 1990 arrives late; its incident fires at its deadline and
     * then repeats only the last 100 days before now. */
    assert_int_equal(step(rs, st, C, "e2", "ticket.opened", "1990-01-01T00:00:00Z",
                          "{\"ticket_id\": \"T1\"}"),
                     ENGINE_APPLIED);
    assert_int_equal(engine_on_time(rs, &opts, st, ts("2027-01-01T00:00:00Z"), &out), 0);
    assert_int_equal(out.n_alerts, 101);
    assert_string_equal(out.alerts[0].alert_id, "u/ACME-001/T1/1990-01-02T00:00:00Z");
    assert_int_equal(out.alerts[0].repeat, 0);
    assert_true(out.alerts[0].at_ms == ts("1990-01-02T00:00:00Z"));
    for (size_t i = 1; i < out.n_alerts; i++) {
        assert_string_equal(out.alerts[i].rule, "u");
        assert_int_equal(out.alerts[i].repeat, i);
    }
    assert_true(out.alerts[100].at_ms == ts("2027-01-01T00:00:00Z"));
    engine_out_free(&out);
    st = reload(st);
    cstate_free(st);
    ruleset_free(rs);
}

/* ---- The shipped pack (rules/): every rule fires, near misses do not ---- */

/* Alerts of one rule in got. */
static size_t n_of(const char *rule) {
    char want[160];
    snprintf(want, sizeof(want), "\"rule\": \"%s\"", rule);
    size_t n = 0;
    for (const char *p = got; (p = strstr(p, want)); p++) n++;
    return n;
}

static size_t n_lines(void) {
    size_t n = 0;
    for (const char *p = got; *p; p++) n += *p == '\n';
    return n;
}

/* Is there an alert with this id and status in got? */
static int has_alert(const char *id, const char *status) {
    char rule[128];
    const char *slash = strchr(id, '/');
    snprintf(rule, sizeof(rule), "%.*s", (int)(slash - id), id);
    char want[512];
    snprintf(want, sizeof(want),
             "\"alert_id\": \"%s\", \"rule\": \"%s\", \"status\": \"%s\"", id, rule,
             status);
    return strstr(got, want) != NULL;
}

#define ASSERT_ALERT(id, status)                                       \
    do {                                                               \
        if (!has_alert(id, status)) print_error("got: %s\n", got);     \
        assert_true(has_alert(id, status));                            \
    } while (0)

static void test_pack_order_decline(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "o1", "order.placed", "2026-01-01T10:00:00Z", "{\"amount\":300}");
    step(rs, st, "A", "o2", "order.placed", "2026-01-15T10:00:00Z", "{\"amount\":300}");
    step(rs, st, "A", "o3", "order.placed", "2026-02-01T10:00:00Z", "{\"amount\":300}");
    assert_string_equal(got, "");
    st = reload(st);
    /* Daily ticks: the baseline needs 500, the last 30 days drop to 0 on
     * 2026-03-03 (Feb 1 leaves the window, whole UTC days). */
    tick(rs, st, "2026-03-02T23:59:59Z");
    assert_int_equal(n_of("order_decline"), 0);
    tick(rs, st, "2026-03-03T00:00:00Z");
    assert_int_equal(n_of("order_decline"), 1);
    ASSERT_ALERT("order_decline/A/2026-03-03T00:00:00Z", "firing");
    assert_non_null(strstr(got, "\"trigger\": {\"timer\": true}"));
    assert_non_null(strstr(got, "\"values\": {\"sum(order_value, 90d, 30d)\": 900, "
                                "\"sum(order_value, 30d)\": 0}"));
    st = reload(st);
    /* repeat: 30d while firing: same id, "repeat": 1. */
    tick(rs, st, "2026-04-01T23:00:00Z");
    assert_int_equal(n_of("order_decline"), 0);
    tick(rs, st, "2026-04-02T00:00:00Z");
    assert_int_equal(n_of("order_decline"), 1);
    ASSERT_ALERT("order_decline/A/2026-03-03T00:00:00Z", "firing");
    assert_non_null(strstr(got, "\"repeat\": 1}"));
    /* 0.6 * 900 / 3 = 180: an order of 180 is not a decline any more. */
    step(rs, st, "A", "o4", "order.placed", "2026-04-02T10:00:00Z", "{\"amount\":180}");
    ASSERT_ALERT("order_decline/A/2026-03-03T00:00:00Z", "resolved");
    cstate_free(st);
    /* Near miss: 180 in the last 30 days is not a decline, 179 is. */
    st = cstate_new("B", 1);
    step(rs, st, "B", "o1", "order.placed", "2026-01-10T10:00:00Z", "{\"amount\":900}");
    step(rs, st, "B", "o2", "order.placed", "2026-02-05T10:00:00Z", "{\"amount\":180}");
    tick(rs, st, "2026-03-06T00:00:00Z");
    assert_int_equal(n_of("order_decline"), 0);
    cstate_free(st);
    st = cstate_new("C", 1);
    step(rs, st, "C", "o1", "order.placed", "2026-01-10T10:00:00Z", "{\"amount\":900}");
    step(rs, st, "C", "o2", "order.placed", "2026-02-05T10:00:00Z", "{\"amount\":179}");
    tick(rs, st, "2026-03-06T00:00:00Z");
    assert_int_equal(n_of("order_decline"), 1);
    ASSERT_ALERT("order_decline/C/2026-02-09T00:00:00Z", "firing");
    cstate_free(st);
    /* A small baseline (499) never fires. */
    st = cstate_new("D", 1);
    step(rs, st, "D", "o1", "order.placed", "2026-01-10T10:00:00Z", "{\"amount\":499}");
    tick(rs, st, "2026-04-10T00:00:00Z");
    assert_int_equal(n_of("order_decline"), 0);
    cstate_free(st);
    ruleset_free(rs);
}

static void test_pack_order_gap(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "o1", "order.placed", "2026-01-01T00:00:00Z", "{\"amount\":1}");
    step(rs, st, "A", "o2", "order.placed", "2026-01-11T00:00:00Z", "{\"amount\":1}");
    step(rs, st, "A", "o3", "order.placed", "2026-01-21T00:00:00Z", "{\"amount\":1}");
    st = reload(st);
    /* Median gap 10d: exactly 20d is not more than twice it; 21d is. */
    tick(rs, st, "2026-02-10T00:00:00Z");
    assert_int_equal(n_of("order_gap"), 0);
    tick(rs, st, "2026-02-11T00:00:00Z");
    assert_int_equal(n_of("order_gap"), 1);
    ASSERT_ALERT("order_gap/A/2026-02-11T00:00:00Z", "firing");
    assert_non_null(strstr(got, "No order for 3w; usually one every 10d"));
    step(rs, st, "A", "o4", "order.placed", "2026-02-12T09:00:00Z", "{\"amount\":1}");
    ASSERT_ALERT("order_gap/A/2026-02-11T00:00:00Z", "resolved");
    cstate_free(st);
    /* Two orders are not a rhythm yet. */
    st = cstate_new("B", 1);
    step(rs, st, "B", "o1", "order.placed", "2026-01-01T00:00:00Z", "{\"amount\":1}");
    step(rs, st, "B", "o2", "order.placed", "2026-01-02T00:00:00Z", "{\"amount\":1}");
    tick(rs, st, "2026-06-01T00:00:00Z");
    assert_int_equal(n_of("order_gap"), 0);
    cstate_free(st);
    ruleset_free(rs);
}

static void test_pack_decision_maker_silent(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "m1", "meeting.held", "2026-03-01T10:00:00Z",
         "{\"meeting_id\":\"M1\",\"attendee_roles\":[\"user\",\"decision_maker\"]}");
    step(rs, st, "A", "e1", "email.received", "2026-03-20T10:00:00Z",
         "{\"contact_role\":\"user\"}");
    tick(rs, st, "2026-03-31T00:00:00Z"); /* 29d14h */
    assert_int_equal(n_lines(), 0);
    tick(rs, st, "2026-04-01T00:00:00Z"); /* 30d14h */
    ASSERT_ALERT("decision_maker_silent/A/2026-04-01T00:00:00Z", "firing");
    st = reload(st);
    step(rs, st, "A", "e2", "email.sent", "2026-04-02T10:00:00Z",
         "{\"contact_role\":\"decision_maker\"}");
    ASSERT_ALERT("decision_maker_silent/A/2026-04-01T00:00:00Z", "resolved");
    cstate_free(st);
    /* No decision maker ever seen: nothing to miss. */
    st = cstate_new("B", 1);
    step(rs, st, "B", "e1", "email.received", "2026-03-01T10:00:00Z",
         "{\"contact_role\":\"user\"}");
    tick(rs, st, "2026-06-01T00:00:00Z");
    assert_int_equal(n_lines(), 0);
    cstate_free(st);
    ruleset_free(rs);
}

static void test_pack_complaints(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "t1", "ticket.opened", "2026-03-01T10:00:00Z",
         "{\"ticket_id\":\"T1\",\"category\":\"complaint\",\"priority\":\"high\"}");
    step(rs, st, "A", "t2", "ticket.opened", "2026-03-01T10:00:00Z",
         "{\"ticket_id\":\"T2\",\"category\":\"complaint\",\"priority\":\"normal\"}");
    step(rs, st, "A", "t3", "ticket.opened", "2026-03-01T10:00:00Z",
         "{\"ticket_id\":\"T3\",\"category\":\"question\",\"priority\":\"high\"}");
    step(rs, st, "A", "t4", "ticket.opened", "2026-03-01T10:00:00Z",
         "{\"ticket_id\":\"T4\",\"category\":\"complaint\",\"priority\":\"high\"}");
    /* The client's own reply is not an answer; an agent's after 23h is. */
    step(rs, st, "A", "r1", "ticket.replied", "2026-03-01T12:00:00Z",
         "{\"ticket_id\":\"T1\",\"by\":\"client\"}");
    step(rs, st, "A", "r4", "ticket.replied", "2026-03-02T09:00:00Z",
         "{\"ticket_id\":\"T4\",\"by\":\"agent\"}");
    assert_string_equal(got, "");
    st = reload(st);
    tick(rs, st, "2026-03-02T09:59:59Z");
    assert_int_equal(n_lines(), 0);
    tick(rs, st, "2026-03-02T10:00:00Z"); /* 24h for priority high */
    assert_int_equal(n_lines(), 1);
    ASSERT_ALERT("complaint_unanswered/A/T1/2026-03-02T10:00:00Z", "firing");
    assert_non_null(strstr(got, "Complaint T1 opened 2026-03-01T10:00:00Z has no agent reply"));
    st = reload(st);
    /* The late reply resolves that incident (same id). */
    step(rs, st, "A", "r1b", "ticket.replied", "2026-03-03T08:00:00Z",
         "{\"ticket_id\":\"T1\",\"by\":\"agent\"}");
    assert_int_equal(n_lines(), 1);
    ASSERT_ALERT("complaint_unanswered/A/T1/2026-03-02T10:00:00Z", "resolved");
    tick(rs, st, "2026-03-04T10:00:00Z"); /* 72h for the others */
    assert_int_equal(n_lines(), 1);
    ASSERT_ALERT("complaint_unanswered/A/T2/2026-03-04T10:00:00Z", "firing");
    /* Rejected: fires, and the next other outcome resolves it. */
    step(rs, st, "A", "x1", "ticket.resolved", "2026-03-05T10:00:00Z",
         "{\"ticket_id\":\"T2\",\"outcome\":\"rejected\"}");
    ASSERT_ALERT("complaint_rejected/A/2026-03-05T10:00:00Z", "firing");
    /* ... and T2's resolution was late: its unanswered alert resolves. */
    ASSERT_ALERT("complaint_unanswered/A/T2/2026-03-04T10:00:00Z", "resolved");
    step(rs, st, "A", "x2", "ticket.resolved", "2026-03-06T10:00:00Z",
         "{\"ticket_id\":\"T3\",\"outcome\":\"accepted\"}");
    ASSERT_ALERT("complaint_rejected/A/2026-03-05T10:00:00Z", "resolved");
    cstate_free(st);
    ruleset_free(rs);
}

static void test_pack_feedback_and_aftercare(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "f1", "feedback.received", "2026-03-01T00:00:00Z", "{\"feedback_id\":\"F1\"}");
    step(rs, st, "A", "f2", "feedback.received", "2026-03-01T00:00:00Z", "{\"feedback_id\":\"F2\"}");
    step(rs, st, "A", "a1", "feedback.answered", "2026-03-05T23:00:00Z", "{\"feedback_id\":\"F1\"}");
    tick(rs, st, "2026-03-06T00:00:00Z");
    assert_int_equal(n_lines(), 1);
    ASSERT_ALERT("feedback_ignored/A/F2/2026-03-06T00:00:00Z", "firing");
    step(rs, st, "A", "a2", "feedback.answered", "2026-03-07T00:00:00Z", "{\"feedback_id\":\"F2\"}");
    ASSERT_ALERT("feedback_ignored/A/F2/2026-03-06T00:00:00Z", "resolved");
    cstate_free(st);
    /* no_aftercare: an email within 14 days is enough ... */
    st = cstate_new("N", 1);
    step(rs, st, "N", "o1", "order.placed", "2026-03-01T00:00:00Z", "{\"amount\":10}");
    step(rs, st, "N", "e1", "email.sent", "2026-03-14T23:00:00Z", "{\"contact_role\":\"user\"}");
    tick(rs, st, "2026-04-01T00:00:00Z");
    assert_string_equal(got, "");
    cstate_free(st);
    /* ... silence is not; only the first order counts. */
    st = cstate_new("M", 1);
    step(rs, st, "M", "c1", "contract.signed", "2026-03-01T00:00:00Z", "{\"value\":10}");
    step(rs, st, "M", "o2", "order.placed", "2026-03-10T00:00:00Z", "{\"amount\":10}");
    tick(rs, st, "2026-03-15T00:00:00Z");
    assert_int_equal(n_lines(), 1);
    ASSERT_ALERT("no_aftercare/M/2026-03-15T00:00:00Z", "firing");
    st = reload(st);
    step(rs, st, "M", "k1", "call.logged", "2026-03-16T00:00:00Z", "{\"contact_role\":\"user\"}");
    ASSERT_ALERT("no_aftercare/M/2026-03-15T00:00:00Z", "resolved");
    tick(rs, st, "2026-05-01T00:00:00Z");
    assert_int_equal(n_lines(), 0); /* once: no second expectation */
    cstate_free(st);
    ruleset_free(rs);
}

static void test_pack_repeated_defects_and_owner(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "d1", "ticket.opened", "2026-03-01T10:00:00Z", "{\"ticket_id\":\"D1\",\"category\":\"defect\"}");
    step(rs, st, "A", "d2", "ticket.opened", "2026-03-10T10:00:00Z", "{\"ticket_id\":\"D2\",\"category\":\"defect\"}");
    step(rs, st, "A", "q1", "ticket.opened", "2026-03-12T10:00:00Z", "{\"ticket_id\":\"Q1\",\"category\":\"question\"}");
    assert_string_equal(got, "");
    step(rs, st, "A", "d3", "ticket.opened", "2026-03-20T10:00:00Z", "{\"ticket_id\":\"D3\",\"category\":\"defect\"}");
    ASSERT_ALERT("repeated_defects/A/2026-03-20T10:00:00Z", "firing");
    st = reload(st);
    tick(rs, st, "2026-03-30T00:00:00Z");
    assert_int_equal(n_lines(), 0);
    tick(rs, st, "2026-03-31T00:00:00Z"); /* March 1 leaves the 30 days */
    ASSERT_ALERT("repeated_defects/A/2026-03-20T10:00:00Z", "resolved");
    cstate_free(st);
    /* owner_changed: a meeting on day 20 is in time, none is not. */
    st = cstate_new("O", 1);
    step(rs, st, "O", "w1", "account.owner_changed", "2026-03-01T00:00:00Z", "{\"from\":\"a\",\"to\":\"b\"}");
    step(rs, st, "O", "m1", "meeting.held", "2026-03-21T00:00:00Z", "{\"meeting_id\":\"M\"}");
    tick(rs, st, "2026-05-01T00:00:00Z");
    assert_int_equal(n_lines(), 0);
    step(rs, st, "O", "w2", "account.owner_changed", "2026-05-01T00:00:00Z", "{\"from\":\"b\",\"to\":\"c\"}");
    tick(rs, st, "2026-05-21T23:59:59Z");
    assert_int_equal(n_lines(), 0);
    tick(rs, st, "2026-05-22T00:00:00Z");
    ASSERT_ALERT("owner_changed/O/2026-05-22T00:00:00Z", "firing");
    step(rs, st, "O", "m2", "meeting.held", "2026-05-25T00:00:00Z", "{\"meeting_id\":\"M2\"}");
    ASSERT_ALERT("owner_changed/O/2026-05-22T00:00:00Z", "resolved");
    cstate_free(st);
    ruleset_free(rs);
}

static void test_pack_churn_risk_decay(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "s1", "survey.nps", "2026-03-01T10:00:00Z", "{\"score\":3}");
    ASSERT_ALERT("detractor/A/2026-03-01T10:00:00Z", "firing");
    assert_int_equal(n_lines(), 1); /* 30 alone is not churn_risk */
    step(rs, st, "A", "t1", "ticket.opened", "2026-03-01T10:00:00Z",
         "{\"ticket_id\":\"T1\",\"category\":\"complaint\",\"priority\":\"high\"}");
    tick(rs, st, "2026-03-02T10:00:00Z");
    /* 30 * 2^(-1/30) + 40 = 69.31: churn_risk follows at once (on: alerts). */
    assert_int_equal(n_lines(), 2);
    ASSERT_ALERT("complaint_unanswered/A/T1/2026-03-02T10:00:00Z", "firing");
    ASSERT_ALERT("churn_risk/A/2026-03-02T10:00:00Z", "firing");
    assert_non_null(strstr(got, "Churn risk 69.31"));
    st = reload(st);
    /* Decay (half-life 30d): 60.93 on March 8, 59.54 on March 9. */
    tick(rs, st, "2026-03-08T00:00:00Z");
    assert_int_equal(n_lines(), 0);
    tick(rs, st, "2026-03-09T00:00:00Z");
    assert_int_equal(n_lines(), 1);
    ASSERT_ALERT("churn_risk/A/2026-03-02T10:00:00Z", "resolved");
    cstate_free(st);
    ruleset_free(rs);
}

static void test_pack_meetings_and_detractor(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "e1", "meeting.postponed", "2026-03-01T10:00:00Z", "{\"meeting_id\":\"M1\"}");
    assert_string_equal(got, "");
    step(rs, st, "A", "e2", "meeting.cancelled", "2026-03-02T10:00:00Z", "{\"meeting_id\":\"M2\"}");
    ASSERT_ALERT("meetings_postponed/A/2026-03-02T10:00:00Z", "firing");
    step(rs, st, "A", "e3", "meeting.held", "2026-03-03T10:00:00Z", "{\"meeting_id\":\"M3\"}");
    ASSERT_ALERT("meetings_postponed/A/2026-03-02T10:00:00Z", "resolved");
    step(rs, st, "A", "s1", "survey.nps", "2026-03-04T10:00:00Z", "{\"score\":7}");
    assert_string_equal(got, "");
    step(rs, st, "A", "s2", "survey.csat", "2026-03-05T10:00:00Z", "{\"score\":2}");
    ASSERT_ALERT("detractor/A/2026-03-05T10:00:00Z", "firing");
    step(rs, st, "A", "s3", "survey.csat", "2026-03-06T10:00:00Z", "{\"score\":3}");
    ASSERT_ALERT("detractor/A/2026-03-05T10:00:00Z", "resolved");
    cstate_free(st);
    ruleset_free(rs);
}

/* A state holding every feature kind: round trip, truncation, bit flips. */
static void test_pack_state_all_kinds(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    step(rs, st, "A", "o1", "order.placed", "2026-01-01T00:00:00Z", "{\"amount\":12.5}");
    step(rs, st, "A", "o2", "order.placed", "2026-01-11T00:00:00Z", "{\"amount\":-3}");
    step(rs, st, "A", "o3", "order.placed", "2026-01-21T00:00:00Z", "{\"amount\":100000}");
    step(rs, st, "A", "t1", "ticket.opened", "2026-01-21T00:00:00Z",
         "{\"ticket_id\":\"T1\",\"category\":\"complaint\"}");
    step(rs, st, "A", "t2", "ticket.opened", "2026-01-21T00:00:00Z",
         "{\"ticket_id\":\"T2\",\"category\":\"complaint\"}");
    tick(rs, st, "2026-01-25T00:00:00Z"); /* T1 and T2 expire: incidents */
    assert_int_equal(n_of("complaint_unanswered"), 2);
    assert_int_equal(n_of("churn_risk"), 1); /* 52.18 + 40 */
    step(rs, st, "A", "d1", "ticket.opened", "2026-01-25T00:00:00Z",
         "{\"ticket_id\":\"D1\",\"category\":\"defect\"}");
    st = reload(st);
    uint8_t rec[8192];
    size_t n = encoded(st, rec, sizeof(rec));
    churn_err_t err;
    cstate_t *back;
    for (size_t k = 0; k < n; k++) {
        back = (cstate_t *)1;
        assert_int_equal(cstate_decode(rec, k, "A", 1, &back, &err), CHURN_ECORRUPT);
        assert_null(back);
    }
    for (size_t k = 0; k < n; k++)
        for (int bit = 0; bit < 8; bit++) {
            rec[k] ^= (uint8_t)(1u << bit);
            back = NULL;
            if (cstate_decode(rec, n, "A", 1, &back, &err) == 0) {
                step(rs, back, "A", "z", "ticket.replied", "2026-01-26T00:00:00Z",
                     "{\"ticket_id\":\"T1\",\"by\":\"agent\"}");
                engine_out_t out;
                engine_out_init(&out);
                assert_int_equal(engine_on_time(rs, &opts, back, ts("2026-03-01T00:00:00Z"), &out), 0);
                engine_out_free(&out);
                cstate_free(back);
            }
            rec[k] ^= (uint8_t)(1u << bit);
        }
    /* The state JSON shows incidents and the open expectations. */
    buf_t b;
    buf_init(&b);
    assert_int_equal(cstate_format_json(st, rs, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_non_null(strstr((const char *)b.data,
                           "\"complaint_unanswered\": {\"status\": \"firing\", \"incidents\": "
                           "[{\"key\": \"T1\", \"fired_at\": \"2026-01-24T00:00:00Z\", "
                           "\"alert_id\": \"complaint_unanswered/A/T1/2026-01-24T00:00:00Z\"}"));
    assert_non_null(strstr((const char *)b.data, "\"order_times\": {\"kind\": \"last\", "
                           "\"state\": {\"at\": \"2026-01-21T00:00:00Z\", \"value\": null, "
                           "\"history\": [\"2026-01-01T00:00:00Z\""));
    buf_free(&b);
    cstate_free(st);
    ruleset_free(rs);
}

/* cstate_heap_bytes, the weight of a cached state, is what decoding the
 * state takes from the heap (glibc's own count, compared where the heap
 * is glibc's: not under AddressSanitizer), and it grows with the state. */
static void test_state_heap_bytes(void **state) {
    (void)state;
    ruleset_t *rs = load("rules");
    cstate_t *st = cstate_new("A", 1);
    size_t empty = cstate_heap_bytes(st);
    assert_true(empty >= sizeof(cstate_t));
    char id[32], day[32];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "o%d", i);
        snprintf(day, sizeof(day), "2026-01-%02dT00:00:00Z", 1 + i % 28);
        step(rs, st, "A", id, "order.placed", day, "{\"amount\":12.5}");
    }
    step(rs, st, "A", "t1", "ticket.opened", "2026-01-29T00:00:00Z",
         "{\"ticket_id\":\"T1\",\"category\":\"complaint\"}");
    st = reload(st);
    size_t full = cstate_heap_bytes(st);
    assert_true(full > empty + 40 * 16); /* 40 ids in the dedup ring at least */
    uint8_t rec[16384];
    size_t n = encoded(st, rec, sizeof(rec));
#if defined(__SANITIZE_ADDRESS__)
    (void)n;
#else
    churn_err_t err;
    cstate_t *back = NULL;
    struct mallinfo2 before = mallinfo2();
    assert_int_equal(cstate_decode(rec, n, "A", 1, &back, &err), 0);
    struct mallinfo2 after = mallinfo2();
    size_t used = after.uordblks - before.uordblks;
    size_t weighed = cstate_heap_bytes(back);
    fprintf(stderr, "decoded state: %zu heap bytes, weighed %zu\n", used, weighed);
    /* Under valgrind, whose malloc glibc does not see, the count is 0. */
    if (after.uordblks != 0)
        assert_true(weighed >= used - used / 10 && weighed <= used + used / 10);
    cstate_free(back);
#endif
    cstate_free(st);
    ruleset_free(rs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meetings_postponed),
        cmocka_unit_test(test_state_heap_bytes),
        cmocka_unit_test(test_detractor),
        cmocka_unit_test(test_both_rules_risk),
        cmocka_unit_test(test_duplicate_and_ignored),
        cmocka_unit_test(test_dedup_window_and_bound),
        cmocka_unit_test(test_for_fires_at_deadline),
        cmocka_unit_test(test_for_cancelled_and_late_timer),
        cmocka_unit_test(test_risk_and_firing),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_state_corrupt),
        cmocka_unit_test(test_state_across_rule_changes),
        cmocka_unit_test(test_state_unknown_kind_kept),
        cmocka_unit_test(test_state_json),
        cmocka_unit_test(test_alert_json),
        cmocka_unit_test(test_engine_out_reuse),
        cmocka_unit_test(test_pack_order_decline),
        cmocka_unit_test(test_pack_order_gap),
        cmocka_unit_test(test_pack_decision_maker_silent),
        cmocka_unit_test(test_pack_complaints),
        cmocka_unit_test(test_pack_feedback_and_aftercare),
        cmocka_unit_test(test_pack_repeated_defects_and_owner),
        cmocka_unit_test(test_pack_churn_risk_decay),
        cmocka_unit_test(test_pack_meetings_and_detractor),
        cmocka_unit_test(test_pack_state_all_kinds),
        cmocka_unit_test(test_every_huge_period),
        cmocka_unit_test(test_settle_quiet),
        cmocka_unit_test(test_look_ahead_steps_over_known_ticks),
        cmocka_unit_test(test_look_ahead_forgets_what_changed),
        cmocka_unit_test(test_look_ahead_changes_no_alert),
        cmocka_unit_test(test_repeat_catch_up_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
