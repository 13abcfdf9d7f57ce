/*
 * test_metrics.c - metrics_render over a daemon context built by hand
 * (no Kafka): real rules, a real RocksDB state and processor, events
 * parsed and applied the way the pipeline does, then the text is checked
 * by `promtool check metrics` (the contract of SPEC section 7) and for
 * the exact series the events must have produced. A daemon still starting,
 * with nothing but zeroes, must render valid text too: /metrics is served
 * from start-up on.
 *
 * CHURND_METRICS_PRINT=1 prints the full rendering (docs/metrics.md's
 * sample comes from it). PROMTOOL overrides the promtool binary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../lib/harness.h"
#include "churnd/config.h"
#include "churnd/engine.h"
#include "churnd/timeutil.h"
#include "../../daemon/internal.h"

static char tmp[256];

/* Run promtool check metrics on text; its exit status (output shown on
 * failure). */
static int promtool_check(const char *text, size_t len) {
    char in[512], out[512];
    snprintf(in, sizeof(in), "%s/metrics.txt", tmp);
    snprintf(out, sizeof(out), "%s/promtool.txt", tmp);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    const char *tool = getenv("PROMTOOL");
    char *argv[] = {(char *)(tool ? tool : "/usr/bin/promtool"), "check",
                    "metrics", NULL};
    int rc = th_run_io(argv, in, out, NULL, 30000);
    if (rc != 0) {
        char *s = th_read_file(out);
        fprintf(stderr, "promtool exited %d:\n%s\n", rc, s ? s : "");
        free(s);
    }
    return rc;
}

static char *render(daemon_t *d) {
    buf_t b;
    buf_init(&b);
    assert_int_equal(metrics_render(d, &b), 0);
    assert_int_equal(buf_putc(&b, '\0'), 0);
    if (getenv("CHURND_METRICS_PRINT")) fputs((char *)b.data, stdout);
    assert_int_equal(promtool_check((char *)b.data, b.len - 1), 0);
    return (char *)b.data; /* the caller frees */
}

static void has_line(const char *text, const char *line) {
    char want[512];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr(text, want)) {
        fprintf(stderr, "%s", text);
        fail_msg("no line \"%s\" in the rendering above", line);
    }
}

/* The value of the first sample whose text starts with prefix. */
static double value_of(const char *text, const char *prefix) {
    char want[256];
    snprintf(want, sizeof(want), "\n%s", prefix);
    const char *p = strstr(text, want);
    if (!p) fail_msg("no sample %s", prefix);
    p = strchr(p + 1, ' ');
    assert_non_null(p);
    return strtod(p + 1, NULL);
}

static void test_a_starting_daemon_renders_valid_text(void **state) {
    (void)state;
    daemon_t d;
    memset(&d, 0, sizeof(d)); /* no config, consumer, store or rules */
    char *s = render(&d);
    has_line(s, "churnd_events_invalid_total{reason=\"not_json\"} 0");
    has_line(s, "churnd_rules_loaded 0");
    has_line(s, "churnd_rules_last_reload_successful 0");
    assert_non_null(strstr(s, "churnd_build_info{version=\"" CHURND_VERSION "\""));
    assert_true(value_of(s, "process_resident_memory_bytes ") > 0);
    assert_true(value_of(s, "process_open_fds ") > 0);
    assert_true(value_of(s, "process_start_time_seconds ") > 1.7e9);
    free(s);

    /* configured but nothing started yet */
    config_t cfg;
    churn_err_t err = {0};
    assert_int_equal(config_init(&cfg, &err), 0);
    d.cfg = &cfg;
    assert_int_equal(metrics_init(&d), 0);
    assert_int_equal(metrics_init(&d), 0); /* idempotent */
    s = render(&d);
    has_line(s, "churnd_events_consumed_total{topic=\"crm.events\"} 0");
    has_line(s, "churnd_events_consumed_total{topic=\"helpdesk.events\"} 0");
    has_line(s, "churnd_batch_duration_seconds_bucket{le=\"+Inf\"} 0");
    has_line(s, "churnd_partitions_assigned 0");
    free(s);
    metrics_free(&d);
    metrics_free(&d);
    config_free(&cfg);
}

typedef struct world {
    config_t cfg;
    daemon_t d;
    char state[512];
} world_t;

/* One message as process_one takes it: counted by topic, parsed, dead-
 * lettered or applied, its alerts counted. */
static void feed(world_t *w, const char *topic, int64_t wall_ms,
                 const char *json) {
    daemon_t *d = &w->d;
    d->stats.n_consumed++;
    metrics_note_consumed(d, topic);
    event_t ev;
    char detail[256];
    event_reason_t why = event_parse(&w->cfg.event, json, strlen(json), &ev,
                                     detail, sizeof(detail));
    if (why != EVENT_OK) {
        d->stats.n_invalid[why]++;
        d->stats.n_deadletters++;
        return;
    }
    wm_observe(&d->wm, topic, 0, ev.ts_ms, wall_ms);
    churn_err_t err = {0};
    int rc = processor_event(d->proc, 0, &ev, &d->out, &err);
    assert_true(rc >= 0);
    if (rc == ENGINE_DUPLICATE) d->stats.n_duplicate++;
    else if (rc == ENGINE_IGNORED) d->stats.n_ignored++;
    else d->stats.n_applied++;
    for (size_t i = 0; i < d->out.n_alerts; i++) {
        d->stats.n_alerts++;
        metrics_note_alert(d, &d->out.alerts[i]);
    }
    engine_out_reset(&d->out);
    event_clear(&ev);
}

static world_t *world_open(const char *rules, const char *state_name) {
    world_t *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    daemon_t *d = &w->d;
    churn_err_t err = {0};
    assert_int_equal(config_init(&w->cfg, &err), 0);
    d->cfg = &w->cfg;
    assert_int_equal(metrics_init(d), 0);
    churn_errs_t errs;
    churn_errs_init(&errs);
    assert_int_equal(ruleset_load_dir(rules, &d->rules, &errs), 0);
    churn_errs_free(&errs);
    snprintf(w->state, sizeof(w->state), "%s/%s", tmp, state_name);
    store_opts_t so = {.dir = w->state, .mode = STORE_READ_WRITE};
    assert_int_equal(store_open(&so, &d->store, &err), 0);
    d->engine_opts.dedup_window_ms = w->cfg.dedup_window_ms;
    d->engine_opts.dedup_max_ids = (unsigned)w->cfg.dedup_max_ids;
    d->proc = processor_new(d->store, 100, &d->engine_opts);
    assert_non_null(d->proc);
    processor_set_rules(d->proc, d->rules);
    engine_out_init(&d->out);
    wm_init(&d->wm, 0, 30000);
    assert_int_equal(wm_assign(&d->wm, "crm.events", 0, 1000), 0);
    assert_int_equal(wm_assign(&d->wm, "helpdesk.events", 0, 1000), 0);
    return w;
}

static void world_close(world_t *w) {
    daemon_t *d = &w->d;
    engine_out_free(&d->out);
    processor_free(d->proc);
    store_close(d->store);
    ruleset_free(d->rules);
    wm_free(&d->wm);
    metrics_free(d);
    config_free(&w->cfg);
    free(w);
}

static void test_figures_of_a_working_daemon(void **state) {
    (void)state;
    world_t *w = world_open("tests/data/rules-basic", "state");
    daemon_t *d = &w->d;
    churn_err_t err = {0};

    feed(w, "crm.events", 2000,
         "{\"id\":\"e1\",\"type\":\"survey.nps\",\"client_id\":\"ACME\","
         "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"score\":3}}");
    feed(w, "crm.events", 2000, /* a redelivery */
         "{\"id\":\"e1\",\"type\":\"survey.nps\",\"client_id\":\"ACME\","
         "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"score\":3}}");
    feed(w, "crm.events", 2000,
         "{\"id\":\"e2\",\"type\":\"survey.nps\",\"client_id\":\"ACME\","
         "\"ts\":\"2026-03-02T10:00:00Z\",\"data\":{\"score\":9}}");
    feed(w, "crm.events", 2000,
         "{\"id\":\"e3\",\"type\":\"order.placed\",\"client_id\":\"ACME\","
         "\"ts\":\"2026-03-02T11:00:00Z\",\"data\":{\"amount\":5}}");
    feed(w, "crm.events", 2000, "this is not json");
    feed(w, "crm.events", 2000, "{\"type\":\"survey.nps\",\"ts\":0}");
    feed(w, "helpdesk.events", 2000,
         "{\"id\":\"h1\",\"type\":\"meeting.postponed\",\"client_id\":\"GLOBEX\","
         "\"ts\":\"2026-03-01T12:00:00Z\",\"data\":{\"meeting_id\":\"M1\"}}");
    /* a repeat notification, as a rule with repeat: publishes it */
    alert_t rep = {.rule = "detractor", .severity = "critical",
                   .status = ALERT_FIRING, .repeat = 2};
    metrics_note_alert(d, &rep);
    assert_int_equal(processor_commit(d->proc, NULL, 0, &err), 0);
    (void)wm_compute(&d->wm, 3000);

    prom_hist_observe(&d->stats.h_batch, 0.003);
    prom_hist_observe(&d->stats.h_alert, 0.2);
    prom_hist_observe(&d->stats.h_alert, 2);
    d->stats.reload_ok_ms = 1767225600000LL;
    d->stats.n_reloads_ok = 2;
    d->stats.n_reloads_failed = 1;
    d->stats.reload_failed = 1;
    d->stats.n_produce_retries = 4;

    char *s = render(d);
    has_line(s, "churnd_events_consumed_total{topic=\"crm.events\"} 6");
    has_line(s, "churnd_events_consumed_total{topic=\"helpdesk.events\"} 1");
    has_line(s, "churnd_events_invalid_total{reason=\"not_json\"} 1");
    has_line(s, "churnd_events_invalid_total{reason=\"no_client\"} 1");
    has_line(s, "churnd_events_invalid_total{reason=\"bad_time\"} 0");
    has_line(s, "churnd_deadletters_total 2");
    has_line(s, "churnd_events_duplicate_total 1");
    has_line(s, "churnd_events_ignored_total 1");
    has_line(s, "churnd_events_applied_total 3");
    has_line(s, "churnd_alerts_total{rule=\"detractor\",severity=\"critical\",status=\"firing\"} 1");
    has_line(s, "churnd_alerts_total{rule=\"detractor\",severity=\"critical\",status=\"resolved\"} 1");
    has_line(s, "churnd_alerts_total{rule=\"detractor\",severity=\"critical\",status=\"repeat\"} 1");
    assert_null(strstr(s, "rule=\"meetings_postponed\"")); /* never alerted */
    has_line(s, "churnd_produce_retries_total 4");
    has_line(s, "churnd_batch_duration_seconds_bucket{le=\"0.0025\"} 0");
    has_line(s, "churnd_batch_duration_seconds_bucket{le=\"0.005\"} 1");
    has_line(s, "churnd_batch_duration_seconds_count 1");
    has_line(s, "churnd_event_to_alert_seconds_bucket{le=\"0.25\"} 1");
    has_line(s, "churnd_event_to_alert_seconds_bucket{le=\"2.5\"} 2");
    has_line(s, "churnd_event_to_alert_seconds_sum 2.2");
    /* the processor was timed by the pipeline, not here */
    has_line(s, "churnd_rule_eval_seconds_count 0");
    /* 2026-03-02T11:00:00Z and 2026-03-01T12:00:00Z */
    has_line(s, "churnd_stream_time_seconds{topic=\"crm.events\",partition=\"0\"} 1772449200");
    has_line(s, "churnd_stream_time_seconds{topic=\"helpdesk.events\",partition=\"0\"} 1772366400");
    has_line(s, "churnd_watermark_seconds 1772366400");
    has_line(s, "churnd_partition_idle{topic=\"crm.events\",partition=\"0\"} 0");
    has_line(s, "churnd_cache_clients 2");
    has_line(s, "churnd_clients_new_total 2");
    has_line(s, "churnd_cache_capacity_clients 100");
    assert_true(value_of(s, "churnd_state_keys ") >= 2);
    assert_true(value_of(s, "churnd_rocksdb_memtable_bytes ") > 0);
    has_line(s, "churnd_rocksdb_write_stopped 0");
    has_line(s, "churnd_rules_loaded 2");
    has_line(s, "churnd_rules_reloads_total{result=\"ok\"} 2");
    has_line(s, "churnd_rules_reloads_total{result=\"failed\"} 1");
    has_line(s, "churnd_rules_last_reload_successful 0");
    has_line(s, "churnd_rules_last_reload_success_timestamp_seconds 1767225600");
    char info[160];
    snprintf(info, sizeof(info), "churnd_rules_info{hash=\"%s\"} 1",
             ruleset_hash(d->rules));
    has_line(s, info);
    free(s);
    world_close(w);
}

/* churnd_timers_pending follows the timer index as deadlines come and go,
 * and a partition's count is read back from the store on assignment. */
static void test_pending_timers_follow_the_index(void **state) {
    (void)state;
    world_t *w = world_open("tests/data/daemon-timers", "state-timers");
    daemon_t *d = &w->d;
    churn_err_t err = {0};
    feed(w, "crm.events", 2000,
         "{\"id\":\"a1\",\"type\":\"meeting.postponed\",\"client_id\":\"A\","
         "\"ts\":\"2026-03-01T10:00:00Z\"}");
    feed(w, "crm.events", 2000,
         "{\"id\":\"b1\",\"type\":\"meeting.postponed\",\"client_id\":\"B\","
         "\"ts\":\"2026-03-01T10:00:00Z\"}");
    char *s = render(d);
    has_line(s, "churnd_timers_pending 2");
    free(s);
    feed(w, "crm.events", 2000, /* A's for: no longer runs */
         "{\"id\":\"a2\",\"type\":\"meeting.held\",\"client_id\":\"A\","
         "\"ts\":\"2026-03-01T10:10:00Z\"}");
    assert_int_equal(processor_commit(d->proc, NULL, 0, &err), 0);
    s = render(d);
    has_line(s, "churnd_timers_pending 1");
    free(s);
    /* another processor over the same state: 0 until it counts */
    processor_t *p2 = processor_new(d->store, 10, &d->engine_opts);
    assert_non_null(p2);
    processor_t *p1 = d->proc;
    d->proc = p2;
    s = render(d);
    has_line(s, "churnd_timers_pending 0");
    free(s);
    assert_int_equal(processor_count_partition(p2, 0, &err), 0);
    assert_int_equal(processor_count_partition(p2, 7, &err), 0); /* empty */
    s = render(d);
    has_line(s, "churnd_timers_pending 1");
    free(s);
    processor_drop_partition(p2, 0); /* revoked */
    s = render(d);
    has_line(s, "churnd_timers_pending 0");
    free(s);
    processor_free(p2);
    d->proc = p1;
    world_close(w);
}

/* churnd_clients and churnd_expectations are exact: kept as states change,
 * stored with the states, read back by the next processor; a directory
 * without the stored counts is counted once. */
static void test_clients_and_expectations_are_exact(void **state) {
    (void)state;
    world_t *w = world_open("rules", "state-counts");
    daemon_t *d = &w->d;
    churn_err_t err = {0};
    assert_int_equal(processor_count_partition(d->proc, 0, &err), 0);
    char *s = render(d);
    has_line(s, "churnd_clients 0");
    has_line(s, "churnd_expectations{state=\"open\"} 0");
    free(s);
    /* Two complaints for A, one for B (complaint_reply: 24h for high). */
    feed(w, "helpdesk.events", 2000,
         "{\"id\":\"t1\",\"type\":\"ticket.opened\",\"client_id\":\"A\",\"ts\":"
         "\"2026-03-01T10:00:00Z\",\"data\":{\"ticket_id\":\"T1\",\"category\":"
         "\"complaint\",\"priority\":\"high\"}}");
    feed(w, "helpdesk.events", 2000,
         "{\"id\":\"t2\",\"type\":\"ticket.opened\",\"client_id\":\"A\",\"ts\":"
         "\"2026-03-01T11:00:00Z\",\"data\":{\"ticket_id\":\"T2\",\"category\":"
         "\"complaint\",\"priority\":\"high\"}}");
    feed(w, "helpdesk.events", 2000,
         "{\"id\":\"t3\",\"type\":\"ticket.opened\",\"client_id\":\"B\",\"ts\":"
         "\"2026-03-01T12:00:00Z\",\"data\":{\"ticket_id\":\"T3\",\"category\":"
         "\"complaint\",\"priority\":\"high\"}}");
    /* An event no rule or ledger keeps makes no state. */
    feed(w, "crm.events", 2000,
         "{\"id\":\"x1\",\"type\":\"no.such.type\",\"client_id\":\"C\",\"ts\":"
         "\"2026-03-01T12:00:00Z\"}");
    s = render(d);
    has_line(s, "churnd_clients 2");
    has_line(s, "churnd_expectations{state=\"open\"} 3");
    has_line(s, "churnd_expectations{state=\"overdue\"} 0");
    free(s);
    /* A's T1 is answered; the watermark passes A's T2 deadline. */
    feed(w, "helpdesk.events", 2000,
         "{\"id\":\"r1\",\"type\":\"ticket.replied\",\"client_id\":\"A\",\"ts\":"
         "\"2026-03-01T13:00:00Z\",\"data\":{\"ticket_id\":\"T1\",\"by\":\"agent\"}}");
    assert_int_equal(processor_commit(d->proc, NULL, 0, &err), 0); /* timers are read from the store */
    engine_out_t out;
    engine_out_init(&out);
    size_t fired = 0;
    int64_t upto = 0;
    assert_int_equal(time_parse_rfc3339("2026-03-02T11:30:00Z", 20, &upto), 0);
    /* As the pipeline does: a round, then its commit, until none is due. */
    int more;
    do {
        more = processor_fire_timers(d->proc, 0, upto, 0, &out, &fired, &err);
        assert_true(more >= 0);
        assert_int_equal(processor_commit(d->proc, NULL, 0, &err), 0);
    } while (more > 0);
    assert_true(out.n_alerts >= 1); /* complaint_unanswered for A's T2 */
    engine_out_free(&out);
    s = render(d);
    has_line(s, "churnd_expectations{state=\"open\"} 1");
    has_line(s, "churnd_expectations{state=\"overdue\"} 1");
    free(s);
    assert_int_equal(processor_commit(d->proc, NULL, 0, &err), 0);

    /* Another processor over the same directory reads the stored counts. */
    processor_t *p2 = processor_new(d->store, 10, &d->engine_opts);
    assert_non_null(p2);
    processor_set_rules(p2, d->rules);
    processor_t *p1 = d->proc;
    d->proc = p2;
    s = render(d);
    has_line(s, "churnd_clients 0"); /* not counting before the assignment */
    free(s);
    assert_int_equal(processor_count_partition(p2, 0, &err), 0);
    s = render(d);
    has_line(s, "churnd_clients 2");
    has_line(s, "churnd_expectations{state=\"open\"} 1");
    has_line(s, "churnd_expectations{state=\"overdue\"} 1");
    free(s);
    processor_drop_partition(p2, 0); /* revoked */
    s = render(d);
    has_line(s, "churnd_clients 0");
    free(s);

    processor_free(p2);
    d->proc = p1;
    world_close(w);

    /* A directory written before the counts existed (a processor that never
     * counted writes no record): counted once by decoding every state,
     * and the record is written with the next commit. */
    w = world_open("rules", "state-legacy");
    d = &w->d;
    feed(w, "helpdesk.events", 2000,
         "{\"id\":\"t1\",\"type\":\"ticket.opened\",\"client_id\":\"A\",\"ts\":"
         "\"2026-03-01T10:00:00Z\",\"data\":{\"ticket_id\":\"T1\",\"category\":"
         "\"complaint\",\"priority\":\"high\"}}");
    feed(w, "crm.events", 2000,
         "{\"id\":\"o1\",\"type\":\"order.placed\",\"client_id\":\"B\",\"ts\":"
         "\"2026-03-01T10:00:00Z\",\"data\":{\"amount\":5}}");
    assert_int_equal(processor_commit(d->proc, NULL, 0, &err), 0);
    store_counts_t c;
    assert_int_equal(store_get_counts(d->store, 0, &c, &err), CHURN_ENOTFOUND);
    p2 = processor_new(d->store, 10, &d->engine_opts);
    assert_non_null(p2);
    processor_set_rules(p2, d->rules);
    assert_int_equal(processor_count_partition(p2, 0, &err), 0);
    processor_stats_t ps;
    processor_get_stats(p2, &ps);
    assert_int_equal(ps.clients, 2);
    /* A's complaint, and the aftercare B's first order opened */
    assert_int_equal(ps.open_expectations, 2);
    assert_int_equal(processor_commit(p2, NULL, 0, &err), 0);
    assert_int_equal(store_get_counts(d->store, 0, &c, &err), 0);
    assert_int_equal(c.clients, 2);
    assert_int_equal(c.open_expectations, 2);
    assert_int_equal(c.overdue_expectations, 0);
    processor_free(p2);
    world_close(w);
}

static void test_held_event_times_are_kept_by_origin(void **state) {
    (void)state;
    daemon_t d;
    memset(&d, 0, sizeof(d));
    config_t cfg;
    churn_err_t err = {0};
    assert_int_equal(config_init(&cfg, &err), 0);
    d.cfg = &cfg;
    /* without metrics_init nothing is kept, and nothing breaks */
    metrics_note_arrival(&d, "crm.events", 0, 5, 111);
    assert_int_equal(metrics_take_arrival(&d, "crm.events", 0, 5), -1);
    assert_int_equal(metrics_init(&d), 0);
    metrics_note_arrival(&d, "crm.events", 0, 5, 111);
    metrics_note_arrival(&d, "crm.events", 1, 5, 222);
    metrics_note_arrival(&d, "helpdesk.events", 0, 5, 333);
    metrics_note_arrival(&d, "not.an.input", 0, 5, 444);
    assert_int_equal(metrics_take_arrival(&d, "helpdesk.events", 0, 5), 333);
    assert_int_equal(metrics_take_arrival(&d, "crm.events", 1, 5), 222);
    assert_int_equal(metrics_take_arrival(&d, "crm.events", 0, 5), 111);
    /* taken once */
    assert_int_equal(metrics_take_arrival(&d, "crm.events", 0, 5), -1);
    assert_int_equal(metrics_take_arrival(&d, "not.an.input", 0, 5), -1);
    assert_int_equal(metrics_take_arrival(&d, "crm.events", 0, 6), -1);
    /* a full table forgets (some of) the oldest, never answers wrongly */
    for (int64_t off = 0; off < 40000; off++)
        metrics_note_arrival(&d, "crm.events", 2, off, 1000 + off);
    int known = 0;
    for (int64_t off = 0; off < 40000; off++) {
        int64_t ms = metrics_take_arrival(&d, "crm.events", 2, off);
        if (ms >= 0) {
            assert_int_equal(ms, 1000 + off);
            known++;
        }
    }
    assert_true(known > 1000 && known <= 16384);
    metrics_free(&d);
    config_free(&cfg);
}

int main(void) {
    if (th_tmpdir(tmp, sizeof(tmp)) != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_starting_daemon_renders_valid_text),
        cmocka_unit_test(test_figures_of_a_working_daemon),
        cmocka_unit_test(test_pending_timers_follow_the_index),
        cmocka_unit_test(test_clients_and_expectations_are_exact),
        cmocka_unit_test(test_held_event_times_are_kept_by_origin),
    };
    int rc = cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
    th_rmtree(tmp);
    return rc;
}
