/*
 * test_inspect.c - `churnd state CLIENT` and `churnd report` as operators
 * use them: against the state directory of a daemon that is running on
 * the embedded broker (read as a RocksDB secondary, beside the writer),
 * and against a state `churnd replay --state` left behind, where event
 * time alone decides and the report's figures are exact. Plus every way
 * the commands refuse: bad arguments, a missing directory, an unknown
 * client, an unreadable record.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "churnd/store.h"
#include "../lib/harness.h"
#include "../lib/http_client.h"

#define WAIT_MS 60000

static char rules_dir[1024], bin[1024], out[1024], err_out[1024];

/* Run churnd with args (NULL-terminated), stdout and stderr apart. */
static int churnd(const char *const *args) {
    char *argv[32];
    size_t n = 0;
    argv[n++] = bin;
    for (size_t i = 0; args[i] && n < 31; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return th_run_io(argv, NULL, out, err_out, 60000);
}

static cJSON *out_json(void) {
    char *s = th_read_file(out);
    assert_non_null(s);
    cJSON *j = cJSON_Parse(s);
    if (!j) fail_msg("not JSON: %s", s);
    free(s);
    return j;
}

static int file_has(const char *path, const char *needle) {
    char *s = th_read_file(path);
    int yes = s && strstr(s, needle);
    if (!yes) fprintf(stderr, "%s has no \"%s\":\n%s\n", path, needle, s ? s : "(none)");
    free(s);
    return yes;
}

static const cJSON *get(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const cJSON *lost_client(const cJSON *report, const char *id) {
    const cJSON *x;
    cJSON_ArrayForEach(x, get(report, "lost")) {
        const cJSON *c = get(x, "client_id");
        if (cJSON_IsString(c) && !strcmp(c->valuestring, id)) return x;
    }
    return NULL;
}

static double symptom_days(const cJSON *loss, const char *rule) {
    const cJSON *x;
    cJSON_ArrayForEach(x, get(loss, "symptoms"))
        if (!strcmp(get(x, "rule")->valuestring, rule))
            return get(x, "days_before")->valuedouble;
    return -1;
}

static const char *const demo_clients[] = {"ACME-001", "GLOBEX-002", "INITECH-003",
                                           "UMBRELLA-004", "HOOLI-005", "STARK-006",
                                           "WAYNE-007"};
#define N_DEMO_CLIENTS (sizeof(demo_clients) / sizeof(demo_clients[0]))

/* /metrics' churnd_clients and churnd_expectations must equal what the
 * states themselves say, read one by one with churnd state. */
static void counts_match_states(th_env_t *e) {
    uint64_t clients = 0, open = 0, overdue = 0;
    for (size_t i = 0; i < N_DEMO_CLIENTS; i++) {
        const char *args[] = {"state", "-c", e->cfg, "--json", demo_clients[i], NULL};
        int rc = churnd(args);
        if (rc == 3) continue; /* no state: the stream gave it no kept event */
        assert_int_equal(rc, 0);
        clients++;
        cJSON *st = out_json();
        const cJSON *f;
        cJSON_ArrayForEach(f, get(st, "features")) {
            const cJSON *x;
            cJSON_ArrayForEach(x, get(get(f, "state"), "awaiting")) {
                if (cJSON_IsTrue(get(x, "expired"))) overdue++;
                else open++;
            }
        }
        cJSON_Delete(st);
    }
    assert_true(overdue > 0);
    int port = th_env_http_port(e, WAIT_MS);
    assert_true(port > 0);
    th_http_resp_t r = {0};
    assert_int_equal(th_http_request(port, "GET", "/metrics", NULL, &r, 10000), 0);
    assert_int_equal(r.status, 200);
    assert_true(th_prom_sample(r.body, "churnd_clients") == (double)clients);
    assert_true(th_prom_sample(r.body, "churnd_expectations{state=\"open\"}") == (double)open);
    assert_true(th_prom_sample(r.body, "churnd_expectations{state=\"overdue\"}") == (double)overdue);
    th_http_resp_free(&r);
}

/* The demo stream through a running daemon; then, while it runs, state
 * and report read its directory, and it goes on and drains cleanly. */
static void test_state_and_report_beside_a_running_daemon(void **state) {
    (void)state;
    th_env_t e;
    assert_int_equal(th_env_setup(&e, 3, rules_dir, NULL, NULL), 0);
    assert_int_equal(th_env_start_daemon(&e), 0);
    assert_true(th_env_send_file(&e, e.crm, "tests/data/demo/crm.jsonl") > 0);
    assert_true(th_env_send_file(&e, e.helpdesk, "tests/data/demo/helpdesk.jsonl") > 0);
    if (th_env_wait_caught_up(&e, WAIT_MS) != 0) {
        th_env_dump_log(&e);
        fail_msg("churnd did not settle");
    }

    const char *js[] = {"state", "-c", e.cfg, "--json", "WAYNE-007", NULL};
    assert_int_equal(churnd(js), 0);
    cJSON *st = out_json();
    assert_string_equal(get(st, "client_id")->valuestring, "WAYNE-007");
    assert_string_equal(get(get(get(st, "rules"), "detractor"), "status")->valuestring,
                        "firing");
    const cJSON *hist = get(st, "history");
    assert_string_equal(get(hist, "first_activity")->valuestring, "2026-03-02T09:00:00Z");
    assert_int_equal(get(get(hist, "sales"), "orders")->valueint, 1);
    const cJSON *contracts = get(hist, "contracts");
    assert_int_equal(cJSON_GetArraySize(contracts), 2);
    const cJSON *cancel = cJSON_GetArrayItem(contracts, 1);
    assert_string_equal(get(cancel, "event")->valuestring, "cancelled");
    assert_string_equal(get(cancel, "reason")->valuestring, "service");
    const cJSON *fired = cJSON_GetArrayItem(get(hist, "alerts_fired"), 0);
    assert_string_equal(get(fired, "rule")->valuestring, "complaint_unanswered");
    assert_string_equal(get(fired, "at")->valuestring, "2026-03-06T08:00:00Z");
    cJSON_Delete(st);

    /* The same for a person; and an open expectation shows as such. */
    const char *txt[] = {"state", "-c", e.cfg, "WAYNE-007", NULL};
    assert_int_equal(churnd(txt), 0);
    assert_true(file_has(out, "client WAYNE-007 (partition "));
    assert_true(file_has(out, "contract cancelled  at 2026-03-23T15:00:00Z, value 24000.00, "
                              "reason service"));
    assert_true(file_has(out, "complaint_reply          key T-71"));
    assert_true(file_has(out, "alert fired: complaint_unanswered"));

    const char *nobody[] = {"state", "-c", e.cfg, "NOBODY-999", NULL};
    assert_int_equal(churnd(nobody), 3);
    assert_true(file_has(err_out, "client NOBODY-999 has no state in "));

    /* The report while the daemon runs. Its watermark follows the wall
     * clock once the topics are idle, so the data ends about now: months
     * after the stream, ACME-001 and INITECH-003 have lapsed too. */
    const char *rep[] = {"report", "-c", e.cfg, "--from", "2026-03-01", "--to", "2026-12-01",
                         "--margin", "25%", "--json", NULL};
    assert_int_equal(churnd(rep), 0);
    cJSON *r = out_json();
    const cJSON *wayne = lost_client(r, "WAYNE-007");
    assert_non_null(wayne);
    assert_string_equal(get(wayne, "lost_at")->valuestring, "2026-03-23T15:00:00Z");
    assert_string_equal(get(wayne, "reason")->valuestring, "service");
    assert_true(get(wayne, "lost_sales")->valuedouble == 2000.0);
    /* 03-06 08:00 and 03-12 12:00 before 03-23 15:00: 17.2917 and 11.125
     * days, printed to two decimals. */
    assert_true(fabs(symptom_days(wayne, "complaint_unanswered") - 17.2917) < 0.006);
    assert_true(fabs(symptom_days(wayne, "detractor") - 11.125) < 0.006);
    const cJSON *acme = lost_client(r, "ACME-001");
    assert_non_null(acme);
    assert_string_equal(get(acme, "reason")->valuestring, "lapsed");
    assert_string_equal(get(acme, "lost_at")->valuestring, "2026-06-23T00:00:00Z");
    assert_non_null(lost_client(r, "INITECH-003"));
    assert_int_equal(get(r, "lost_new_clients")->valueint, 3);
    assert_true(get(r, "lost_profit")->valuedouble == get(r, "lost_sales")->valuedouble * 0.25);
    cJSON_Delete(r);

    /* Reading did not disturb the writer: it takes new events and drains. */
    assert_int_equal(th_env_send(&e, e.crm, "WAYNE-007",
                                 "{\"id\": \"late-1\", \"type\": \"order.placed\", "
                                 "\"client_id\": \"WAYNE-007\", \"ts\": \"2026-03-24T10:00:00Z\", "
                                 "\"data\": {\"amount\": 75}}"), 0);
    assert_int_equal(th_env_wait_caught_up(&e, WAIT_MS), 0);
    assert_int_equal(churnd(js), 0);
    st = out_json();
    assert_int_equal(get(get(get(st, "history"), "sales"), "orders")->valueint, 2);
    cJSON_Delete(st);

    /* The exact state figures of /metrics, before and after a kill -9: the
     * counts are stored in the batches that change the states. */
    counts_match_states(&e);
    assert_int_equal(th_proc_signal(&e.daemon, SIGKILL), 0);
    assert_int_equal(th_proc_wait(&e.daemon, 10000), 128 + SIGKILL);
    assert_int_equal(th_env_start_daemon(&e), 0);
    assert_int_equal(th_env_wait_caught_up(&e, WAIT_MS), 0);
    counts_match_states(&e);
    assert_int_equal(th_env_stop_daemon(&e, WAIT_MS), 0);
    th_env_teardown(&e);
}

/* A replayed state: event time only, so every figure is known. */
static void test_report_on_a_replayed_state(void **state) {
    (void)state;
    char dir[512], st_dir[600], events[600];
    assert_int_equal(th_tmpdir(dir, sizeof(dir)), 0);
    snprintf(st_dir, sizeof(st_dir), "%s/state", dir);
    snprintf(events, sizeof(events), "%s/events.jsonl", dir);
    char *crm = th_read_file("tests/data/demo/crm.jsonl");
    char *hd = th_read_file("tests/data/demo/helpdesk.jsonl");
    assert_non_null(crm);
    assert_non_null(hd);
    size_t n = strlen(crm) + strlen(hd) + 2;
    char *all = malloc(n);
    snprintf(all, n, "%s%s", crm, hd);
    assert_int_equal(th_write_file(events, all), 0);
    free(all);
    free(crm);
    free(hd);
    const char *replay[] = {"replay", "-r", rules_dir, "--state", st_dir,
                            "--until", "2026-09-01T00:00:00Z", events, NULL};
    assert_int_equal(churnd(replay), 0);

    const char *rep[] = {"report", "--state", st_dir, "--from", "2026-04-01", "--to",
                         "2026-07-01", "--lapse", "60d", "--json", NULL};
    assert_int_equal(churnd(rep), 0);
    cJSON *r = out_json();
    /* At 04-01: ACME-001 (orders 03-02, 03-25) and INITECH-003 (03-12) are
     * clients; WAYNE-007 has cancelled. With a 60-day lapse both go in the
     * period: INITECH on 05-11, ACME on 05-24. */
    assert_int_equal(get(r, "clients_at_start")->valueint, 2);
    assert_int_equal(get(r, "new_clients")->valueint, 0);
    assert_int_equal(get(r, "lost_clients")->valueint, 2);
    assert_true(get(r, "churn_pct")->valuedouble == 100.0);
    const cJSON *l0 = cJSON_GetArrayItem(get(r, "lost"), 0);
    assert_string_equal(get(l0, "client_id")->valuestring, "INITECH-003");
    assert_string_equal(get(l0, "lost_at")->valuestring, "2026-05-11T00:00:00Z");
    const cJSON *acme = lost_client(r, "ACME-001");
    assert_string_equal(get(acme, "lost_at")->valuestring, "2026-05-24T00:00:00Z");
    /* 1200 on 03-02 and 1350 on 03-25, within 91 days before 03-26. */
    assert_true(get(acme, "lost_sales")->valuedouble == 2550.0);
    assert_true(symptom_days(acme, "decision_maker_silent") == 48.0);
    assert_true(cJSON_IsNull(get(r, "lost_profit")));
    cJSON_Delete(r);

    /* The same as text. */
    const char *txt[] = {"report", "--state", st_dir, "--from", "2026-04-01", "--to",
                         "2026-07-01", "--lapse", "60d", NULL};
    assert_int_equal(churnd(txt), 0);
    assert_true(file_has(out, "churn report 2026-04-01 .. 2026-07-01 (91 days;"));
    assert_true(file_has(out, "  ACME-001             2026-05-24           lapsed     "));
    assert_true(file_has(err_out, "7 clients read from "));

    /* One unreadable record: the report still comes, the record is named,
     * and the exit status says something is wrong. */
    store_t *s = NULL;
    churn_err_t err = {0};
    store_opts_t so = {.dir = st_dir};
    assert_int_equal(store_open(&so, &s, &err), 0);
    /* Replay left the counts the daemon's metrics start from, and they
     * agree with the states (churnd replay writes them with its final
     * flush). */
    store_counts_t counts;
    assert_int_equal(store_get_counts(s, 0, &counts, &err), 0);
    assert_int_equal(counts.clients, N_DEMO_CLIENTS);
    store_batch_t *b = store_batch_new();
    store_batch_put_client(b, 0, "BROKEN-1", 8, "\x09garbage", 8);
    assert_int_equal(store_commit(s, b, &err), 0);
    store_batch_free(b);
    store_close(s);
    assert_int_equal(churnd(rep), 2);
    r = out_json();
    assert_int_equal(get(r, "lost_clients")->valueint, 2);
    cJSON_Delete(r);
    assert_true(file_has(err_out, "1 client records could not be read and are left out "
                                  "(first: BROKEN-1: state record version 9"));
    const char *broken[] = {"state", "--state", st_dir, "BROKEN-1", NULL};
    assert_int_equal(churnd(broken), 2);
    assert_true(file_has(err_out, "BROKEN-1: state record version 9"));
    th_rmtree(dir);
}

static void test_bad_arguments(void **state) {
    (void)state;
    static const struct {
        const char *args[12];
        int code;
        const char *says;
    } cases[] = {
        {{"report", "--to", "2026-07-01", NULL}, 1, "--from and --to are required"},
        {{"report", "--from", "2026-07-01", "--to", "2026-04-01", NULL}, 1,
         "--to must come after --from"},
        {{"report", "--from", "2026-13-01", "--to", "2026-04-01", NULL}, 1,
         "--from 2026-13-01: expected a date"},
        {{"report", "--from", "2026-01-01", "--to", "2026-04-01", "--margin", "1.5", NULL}, 1,
         "--margin 1.5: expected a margin between 0 and 1"},
        {{"report", "--from", "2026-01-01", "--to", "2026-04-01", "--lapse", "soon", NULL}, 1,
         "--lapse soon: expected a positive duration"},
        {{"report", "--from", "2026-01-01", "--to", "2026-04-01", "--state",
          "/nonexistent/churnd-state", NULL}, 2, "/nonexistent/churnd-state"},
        {{"state", NULL}, 1, "expected one client id"},
        {{"state", "--state", "/nonexistent/churnd-state", "X", NULL}, 2,
         "/nonexistent/churnd-state"},
        {{"state", "-c", "/nonexistent/churnd.yaml", "X", NULL}, 1, "config"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = churnd(cases[i].args);
        if (rc != cases[i].code)
            fail_msg("case %zu (%s %s): exit %d, expected %d", i, cases[i].args[0],
                     cases[i].args[1] ? cases[i].args[1] : "", rc, cases[i].code);
        assert_true(file_has(err_out, cases[i].says));
    }
}

int main(void) {
    const char *b = getenv("CHURND_BIN");
    char cwd[900];
    if (!getcwd(cwd, sizeof(cwd))) return 1;
    snprintf(bin, sizeof(bin), "%s", b ? b : "build/churnd");
    snprintf(rules_dir, sizeof(rules_dir), "%s/rules", cwd);
    char tmp[512];
    if (th_tmpdir(tmp, sizeof(tmp)) != 0) return 1;
    snprintf(out, sizeof(out), "%s/out", tmp);
    snprintf(err_out, sizeof(err_out), "%s/err", tmp);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_report_on_a_replayed_state),
        cmocka_unit_test(test_state_and_report_beside_a_running_daemon),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    th_rmtree(tmp);
    return rc;
}
