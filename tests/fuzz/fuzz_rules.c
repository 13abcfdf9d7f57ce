/*
 * fuzz_rules.c - libFuzzer target for the rules loader (daemon/rules_load.c)
 * and, through the rule sets it accepts, the engine that runs them.
 *
 * The input is the text of one rules file. The loader only reads
 * directories, so the input is written to rules.yaml in a private
 * directory made once per process (a write and a read per run are cheap
 * next to parsing) rather than adding an in-memory path to the daemon.
 *
 * The loader must return either a rule set and no errors, or no set and
 * at least one error, each naming the file with a line and column inside
 * it (SPEC section 2: file:line:column). An accepted set is then driven
 * like the daemon would: a short stream of catalog events for one client,
 * event time moved on so every timer fires, and the client state encoded,
 * decoded and encoded again. Alerts and the state's JSON must be valid
 * JSON, the state must round-trip byte for byte, and nothing may be left
 * due once time has passed it. "No rules file can hang or crash the
 * daemon" is what this target holds the code to.
 *
 * Run by scripts/fuzz.sh (seeds: tests/fuzz/corpus/rules).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "churnd/common.h"
#include "churnd/engine.h"
#include "churnd/event.h"
#include "churnd/rules.h" /* RULES_MAX_ERRORS */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- The private directory -------------------------------------------------- */

static char dir[512];
static char path[600];

static void remove_dir(void) {
    unlink(path);
    rmdir(dir);
}

static void make_dir(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/churnd-fuzz-rules-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz_rules: mkdtemp");
        abort();
    }
    snprintf(path, sizeof(path), "%s/rules.yaml", dir);
    atexit(remove_dir);
}

static void write_input(const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz_rules: writing the rules file");
        abort();
    }
}

/* ---- Events ----------------------------------------------------------------- */

/* One client's story over a few weeks, touching every type the default
 * pack reads and the fields its features and rules look at. */
static const char *const event_json[] = {
    "{\"id\":\"e1\",\"type\":\"client.updated\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-01T00:00:00Z\",\"data\":{\"tier\":\"enterprise\","
    "\"segment\":\"smb\",\"owner\":\"ann\"}}",
    "{\"id\":\"e2\",\"type\":\"order.placed\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"order_id\":\"O-1\",\"amount\":1200.5}}",
    "{\"id\":\"e3\",\"type\":\"meeting.postponed\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-02T10:00:00Z\",\"data\":{\"meeting_id\":\"M-1\"}}",
    "{\"id\":\"e4\",\"type\":\"ticket.opened\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-02T11:00:00Z\",\"data\":{\"ticket_id\":\"T-9\","
    "\"category\":\"complaint\",\"priority\":\"high\"}}",
    "{\"id\":\"e5\",\"type\":\"meeting.cancelled\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-03T10:00:00Z\",\"data\":{\"meeting_id\":\"M-2\"}}",
    "{\"id\":\"e6\",\"type\":\"survey.nps\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-04T10:00:00Z\",\"data\":{\"score\":4}}",
    "{\"id\":\"e6\",\"type\":\"survey.nps\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-04T10:00:00Z\",\"data\":{\"score\":4}}", /* duplicate */
    "{\"id\":\"e7\",\"type\":\"ticket.replied\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-05T10:00:00Z\",\"data\":{\"ticket_id\":\"T-9\",\"by\":\"agent\"}}",
    "{\"id\":\"e8\",\"type\":\"meeting.held\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-06T10:00:00Z\",\"data\":{\"meeting_id\":\"M-3\","
    "\"attendee_roles\":[\"engineer\",\"decision_maker\"]}}",
    "{\"id\":\"e9\",\"type\":\"ticket.opened\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-07T10:00:00Z\",\"data\":{\"ticket_id\":17,"
    "\"category\":\"defect\",\"priority\":\"normal\"}}",
    "{\"id\":\"e10\",\"type\":\"order.placed\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-08T10:00:00Z\",\"data\":{\"order_id\":\"O-2\",\"amount\":\"12\"}}",
    "{\"id\":\"e11\",\"type\":\"survey.csat\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-09T10:00:00Z\",\"data\":{\"score\":5}}",
    "{\"type\":\"email.received\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-10T10:00:00Z\",\"data\":{\"contact_role\":\"decision_maker\"}}",
    "{\"id\":\"e13\",\"type\":\"contract.cancelled\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-03-11T10:00:00Z\",\"data\":{\"value\":5000,\"reason\":\"price\"}}",
    "{\"id\":\"e14\",\"type\":\"order.placed\",\"client_id\":\"ACME-001\","
    "\"ts\":\"2026-02-20T10:00:00Z\",\"data\":{\"amount\":-7}}", /* late */
    /* The ends of event time: far before the epoch, then the last year. */
    "{\"id\":\"e15\",\"type\":\"ticket.opened\",\"client_id\":\"ACME-001\","
    "\"ts\":\"1000-01-01T00:00:00Z\",\"data\":{\"ticket_id\":\"T-old\","
    "\"category\":\"complaint\",\"priority\":\"low\"}}",
    "{\"id\":\"e16\",\"type\":\"survey.nps\",\"client_id\":\"ACME-001\","
    "\"ts\":\"9999-12-01T00:00:00Z\",\"data\":{\"score\":10}}",
};
enum { N_EVENTS = sizeof(event_json) / sizeof(event_json[0]) };

static event_config_t ev_cfg;
static event_t events[N_EVENTS];

static void init_events(void) {
    if (event_config_init(&ev_cfg) != 0) abort();
    for (size_t i = 0; i < N_EVENTS; i++) {
        char detail[128];
        if (event_parse(&ev_cfg, event_json[i], strlen(event_json[i]), &events[i],
                        detail, sizeof(detail)) != EVENT_OK)
            abort();
    }
}

/* ---- Checks ----------------------------------------------------------------- */

static void check_json(buf_t *b) {
    if (buf_putc(b, '\0') != 0) abort();
    cJSON *j = cJSON_ParseWithOpts((const char *)b->data, NULL, 1);
    if (!j) {
        fprintf(stderr, "fuzz_rules: invalid JSON: %s\n", (const char *)b->data);
        abort();
    }
    cJSON_Delete(j);
}

static void check_alerts(engine_out_t *out, buf_t *b) {
    for (size_t i = 0; i < out->n_alerts; i++) {
        const alert_t *a = &out->alerts[i];
        if (!a->alert_id || !a->rule || !a->client_id || !a->summary) abort();
        buf_reset(b);
        if (alert_format_json(a, 0, b) != 0) abort();
        check_json(b);
    }
    engine_out_reset(out);
}

/* The length in characters of each line of the input, lines split as YAML
 * (and libyaml, whose marks the errors carry) splits them: at CR LF, CR,
 * LF, NEL, LS and PS. Returns the number of lines (at least 1). */
static size_t line_lengths(const uint8_t *p, size_t n, size_t *len, size_t cap) {
    size_t lines = 0, cur = 0;
    for (size_t i = 0; i < n;) {
        size_t brk = 0;
        if (p[i] == '\r') brk = i + 1 < n && p[i + 1] == '\n' ? 2 : 1;
        else if (p[i] == '\n') brk = 1;
        else if (p[i] == 0xc2 && i + 1 < n && p[i + 1] == 0x85) brk = 2;
        else if (p[i] == 0xe2 && i + 2 < n && p[i + 1] == 0x80 &&
                 (p[i + 2] == 0xa8 || p[i + 2] == 0xa9))
            brk = 3;
        if (brk) {
            if (lines < cap) len[lines] = cur;
            lines++;
            cur = 0;
            i += brk;
            continue;
        }
        if ((p[i] & 0xc0) != 0x80) cur++;
        i++;
    }
    if (lines < cap) len[lines] = cur;
    return lines + 1;
}

static void check_errors(const churn_errs_t *errs, const uint8_t *data,
                         size_t size) {
    static size_t len[1 << 16];
    size_t lines = line_lengths(data, size, len, CHURN_ARRAY_LEN(len));
    for (size_t i = 0; i < errs->n; i++) {
        const churn_err_t *e = &errs->v[i];
        if (!e->msg[0]) abort();
        /* The one error about the list itself ("too many errors") is the
         * last and names no file. */
        if (!e->file[0] && i == errs->n - 1 && i >= RULES_MAX_ERRORS) continue;
        /* The place must exist: a line of the file, a column within it or
         * just past its end. libyaml ends a file that lacks a final line
         * break with one, so the end of input may be the line after the
         * last, column 1. */
        int ok = strcmp(e->file, path) == 0 && e->line >= 1 && e->col >= 1;
        if (ok && (size_t)e->line == lines + 1)
            ok = e->col == 1;
        else if (ok)
            ok = (size_t)e->line <= lines &&
                 ((size_t)e->line > CHURN_ARRAY_LEN(len) ||
                  (size_t)e->col <= len[e->line - 1] + 1);
        if (!ok) {
            fprintf(stderr, "fuzz_rules: error at no place of the file (%zu lines): "
                    "%s:%d:%d: %s\n", lines, e->file, e->line, e->col, e->msg);
            abort();
        }
    }
}

#define DAY_MS 86400000LL

static void run_engine(const ruleset_t *rs) {
    engine_opts_t opts = {7 * DAY_MS, 64, 0, 1}; /* with the ledger */
    engine_out_t out;
    engine_out_init(&out);
    buf_t b, enc, enc2;
    buf_init(&b);
    buf_init(&enc);
    buf_init(&enc2);
    cstate_t *st = cstate_new("ACME-001", 8);
    if (!st) abort();
    int64_t last = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        int rc = engine_on_event(rs, &opts, st, &events[i], &out);
        if (rc < 0) abort();
        if (events[i].ts_ms > last) last = events[i].ts_ms;
        check_alerts(&out, &b);
    }
    /* The watermark passes everything the client is waiting for within a
     * month; then nothing at or before that time is left due. */
    int64_t now = last + 30 * DAY_MS;
    if (engine_on_time(rs, &opts, st, now, &out) != 0) abort();
    check_alerts(&out, &b);
    int64_t wake = cstate_next_wake(st, rs);
    if (wake <= now) {
        fprintf(stderr, "fuzz_rules: next wake %lld is not after %lld\n",
                (long long)wake, (long long)now);
        abort();
    }
    /* The record round-trips exactly. */
    if (cstate_encode(st, &enc) != 0) abort();
    cstate_t *back = NULL;
    churn_err_t err;
    if (cstate_decode(enc.data, enc.len, "ACME-001", 8, &back, &err) != 0) {
        fprintf(stderr, "fuzz_rules: own record does not decode: %s\n", err.msg);
        abort();
    }
    if (cstate_encode(back, &enc2) != 0) abort();
    if (enc.len != enc2.len || memcmp(enc.data, enc2.data, enc.len) != 0) abort();
    /* A decoded state goes on where the first left off. */
    if (engine_on_time(rs, &opts, back, now + DAY_MS, &out) != 0) abort();
    check_alerts(&out, &b);
    buf_reset(&b);
    if (cstate_format_json(back, rs, &b) != 0) abort();
    check_json(&b);
    cstate_free(back);
    cstate_free(st);
    buf_free(&b);
    buf_free(&enc);
    buf_free(&enc2);
    engine_out_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        make_dir();
        init_events();
        ready = 1;
    }
    write_input(data, size);
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = (ruleset_t *)&errs; /* must be overwritten */
    int rc = ruleset_load_dir(dir, &rs, &errs);
    if (rc == 0) {
        if (!rs || errs.n != 0) abort();
        if (!ruleset_summary(rs)[0] || strlen(ruleset_hash(rs)) != 16) abort();
        for (size_t i = 0; i < ruleset_n_rules(rs); i++)
            if (!ruleset_rule_name(rs, i)) abort();
        run_engine(rs);
        ruleset_free(rs);
    } else {
        if (rc != CHURN_EINVAL || rs || errs.n == 0) abort();
        check_errors(&errs, data, size);
    }
    churn_errs_free(&errs);
    return 0;
}
