/*
 * test_rules_load.c - loading a rules directory: file selection and order,
 * every error message with its file:line:column, collecting all errors,
 * duplicate names across files, definition ids and the set's hash.
 *
 * Multi-file layouts are fixture directories under tests/data/rules-*;
 * single-file error cases write a temporary directory, so each message
 * sits next to the YAML that causes it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "churnd/engine.h"
#include "churnd/rules.h"

static const char *data_dir(void) {
    const char *d = getenv("CHURND_TEST_DATA");
    return d ? d : "tests/data";
}

static char tmpdir[256];

/* A directory with one file "rules.yaml" holding text. */
static const char *one_file(const char *text) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/churnd-rules-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char path[512];
    snprintf(path, sizeof(path), "%s/rules.yaml", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    return tmpdir;
}

static void rm_dir(const char *dir) {
    char path[512];
    snprintf(path, sizeof(path), "%s/rules.yaml", dir);
    unlink(path);
    rmdir(dir);
}

/* Load text; it must fail, and the errors, formatted "line:col: msg"
 * (file name left out) one per line, must equal want. */
static void expect_errors(const char *text, const char *want) {
    const char *dir = one_file(text);
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = (ruleset_t *)1;
    int rc = ruleset_load_dir(dir, &rs, &errs);
    char got[8192] = "";
    size_t n = 0;
    for (size_t i = 0; i < errs.n; i++) {
        const churn_err_t *e = &errs.v[i];
        if (e->file[0]) {
            const char *base = strrchr(e->file, '/');
            assert_string_equal(base ? base + 1 : e->file, "rules.yaml");
        }
        n += (size_t)snprintf(got + n, sizeof(got) - n, "%d:%d: %s\n", e->line,
                              e->col, e->msg);
    }
    churn_errs_free(&errs);
    rm_dir(dir);
    if (rc == 0) ruleset_free(rs);
    assert_int_equal(rc, CHURN_EINVAL);
    assert_null(rc ? NULL : rs);
    assert_string_equal(got, want);
}

static ruleset_t *load_ok(const char *dir) {
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    int rc = ruleset_load_dir(dir, &rs, &errs);
    char line[1024];
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", churn_err_str(&errs.v[i], line, sizeof(line)));
    assert_int_equal(errs.n, 0);
    churn_errs_free(&errs);
    assert_int_equal(rc, 0);
    assert_non_null(rs);
    return rs;
}

static ruleset_t *load_text(const char *text) {
    const char *dir = one_file(text);
    ruleset_t *rs = load_ok(dir);
    rm_dir(dir);
    return rs;
}

/* ---- Directories -------------------------------------------------------- */

static void test_empty_dir_is_valid(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/rules-empty", data_dir());
    ruleset_t *rs = load_ok(dir);
    assert_int_equal(ruleset_n_rules(rs), 0);
    assert_int_equal(ruleset_n_features(rs), 0);
    assert_string_equal(ruleset_summary(rs),
                        "no rules: 0 files, 0 features (nothing will alert)");
    assert_int_equal(strlen(ruleset_hash(rs)), 16);
    assert_false(ruleset_uses_type(rs, "order.placed"));
    ruleset_free(rs);
    /* Files with only comments, or features without rules, are valid too. */
    rs = load_text("# nothing yet\n");
    assert_int_equal(ruleset_n_rules(rs), 0);
    ruleset_free(rs);
    rs = load_text("vars:\nfeatures: ~\nrules: null\n");
    assert_int_equal(ruleset_n_rules(rs), 0);
    ruleset_free(rs);
    rs = load_text("features:\n  p:\n    streak: meeting.postponed\n");
    assert_string_equal(ruleset_summary(rs),
                        "no rules: 1 file, 1 feature (nothing will alert)");
    ruleset_free(rs);
}

static void test_missing_dir(void **state) {
    (void)state;
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    assert_int_equal(ruleset_load_dir("/nonexistent/churnd-rules", &rs, &errs),
                     CHURN_EINVAL);
    assert_null(rs);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.v[0].file, "/nonexistent/churnd-rules");
    assert_non_null(strstr(errs.v[0].msg, "cannot open the rules directory"));
    churn_errs_free(&errs);
}

static void test_name_order_and_selection(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/rules-order", data_dir());
    ruleset_t *rs = load_ok(dir); /* .editor-swap.yaml and notes.txt skipped */
    assert_int_equal(ruleset_n_rules(rs), 2);
    assert_string_equal(ruleset_rule_name(rs, 0), "alpha"); /* a_first.yml */
    assert_string_equal(ruleset_rule_name(rs, 1), "beta");
    assert_null(ruleset_rule_name(rs, 2));
    assert_int_equal(ruleset_n_features(rs), 1);
    assert_int_equal(rs->n_files, 2);
    assert_true(ruleset_uses_type(rs, "meeting.held"));      /* beta: meeting.* */
    assert_true(ruleset_uses_type(rs, "meeting.postponed"));
    assert_false(ruleset_uses_type(rs, "order.placed"));
    assert_string_equal(ruleset_summary(rs), "2 rules, 1 feature, 1 var in 2 files");
    ruleset_free(rs);
}

static void test_duplicates_across_files(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/rules-dup", data_dir());
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    assert_int_equal(ruleset_load_dir(dir, &rs, &errs), CHURN_EINVAL);
    assert_int_equal(errs.n, 2);
    char want[2048], line[2048];
    snprintf(want, sizeof(want),
             "%s/b.yaml:4:3: feature 'postponements' is already defined at "
             "%s/a.yaml:2:3",
             dir, dir);
    assert_string_equal(churn_err_str(&errs.v[0], line, sizeof(line)), want);
    snprintf(want, sizeof(want),
             "%s/b.yaml:7:3: rule 'meetings_postponed' is already defined at "
             "%s/a.yaml:5:3",
             dir, dir);
    assert_string_equal(churn_err_str(&errs.v[1], line, sizeof(line)), want);
    churn_errs_free(&errs);
}

/* ---- Error messages ----------------------------------------------------- */

/* A file is read into a buffer grown as it is read (not one of the
 * largest allowed size per file): a file longer than the first chunk is
 * read whole, and one byte past the limit is refused. */
static void test_file_size(void **state) {
    (void)state;
    size_t pad = 40000;
    char *text = malloc(RULES_MAX_FILE_BYTES + 2);
    assert_non_null(text);
    memset(text, '#', pad);
    strcpy(text + pad, "\nrules:\n  r:\n    on: x\n");
    ruleset_t *rs = load_text(text);
    assert_int_equal(ruleset_n_rules(rs), 1);
    ruleset_free(rs);
    memset(text, '#', RULES_MAX_FILE_BYTES);
    strcpy(text + RULES_MAX_FILE_BYTES, "\n");
    char want[128];
    snprintf(want, sizeof(want), "0:0: file larger than %u bytes\n",
             RULES_MAX_FILE_BYTES);
    expect_errors(text, want);
    free(text);
}

static void test_yaml_syntax(void **state) {
    (void)state;
    expect_errors("rules:\n  bad: [\n",
                  "3:1: YAML syntax error: did not find expected node content "
                  "while parsing a flow node\n");
    expect_errors("rules:\n  a:\n    on: x\n   when: y\n",
                  "4:4: YAML syntax error: did not find expected key while "
                  "parsing a block mapping\n");
    expect_errors("- 1\n- 2\n",
                  "1:1: expected a mapping with vars, segments, features and "
                  "rules, found a list\n");
    expect_errors("rules: {}\n---\nrules: {}\n",
                  "3:1: a rules file holds one YAML document; found a second\n");
}

static void test_unknown_keys(void **state) {
    (void)state;
    expect_errors("featurs:\n  x: 1\nrulez: {}\nother: 1\n",
                  "1:1: unknown key 'featurs' in the top level (did you mean "
                  "'features'?)\n"
                  "3:1: unknown key 'rulez' in the top level (did you mean "
                  "'rules'?)\n"
                  "4:1: unknown key 'other' in the top level; expected vars, "
                  "segments, features, rules, risk\n");
    expect_errors("features:\n  p:\n    streak: meeting.postponed\n"
                  "    reset_onn: meeting.held\n    colour: red\n",
                  "4:5: unknown key 'reset_onn' in feature 'p' (did you mean "
                  "'reset_on'?)\n"
                  "5:5: unknown key 'colour' in feature 'p'; expected streak, "
                  "reset_on, where\n");
    expect_errors("rules:\n  r:\n    on: a\n    whn: true\n    sumary: x\n",
                  "4:5: unknown key 'whn' in rule 'r' (did you mean 'when'?)\n"
                  "5:5: unknown key 'sumary' in rule 'r' (did you mean "
                  "'summary'?)\n");
    expect_errors("features:\n  p:\n    straek: meeting.postponed\n",
                  "3:5: feature 'p': unknown key 'straek' (did you mean "
                  "'streak'?)\n");
    expect_errors("features:\n  p:\n    count: meeting.postponed\n",
                  "2:3: feature 'p': needs one of series:, streak:, expect:, "
                  "last:, latest:\n");
    expect_errors("rules:\n  r:\n    on: a\n    on: b\n",
                  "4:5: duplicate key 'on' in rule 'r' (first at line 3)\n");
    expect_errors("features:\n  p:\n    streak: a\n  p:\n    streak: b\n",
                  "4:3: duplicate key 'p' in features (first at line 2)\n");
}

static void test_names(void **state) {
    (void)state;
    expect_errors("features:\n  now:\n    streak: a\n  2nd:\n    streak: a\n",
                  "2:3: 'now' is a reserved word; choose another feature name\n"
                  "4:3: feature name '2nd' must start with a letter and contain "
                  "only letters, digits and _ (at most 128)\n");
    expect_errors("rules:\n  a/b:\n    on: x\n",
                  "2:3: rule name 'a/b' must start with a letter and contain "
                  "only letters, digits and _ or - (at most 128)\n");
}

static void test_values(void **state) {
    (void)state;
    expect_errors("rules:\n  r:\n    on: a\n    for: 5x\n    severity: critcal\n"
                  "    weight: 200\n    resolve: maybe\n",
                  "4:10: rule 'r' for: expected a duration such as 90s, 15m, "
                  "48h, 30d or 2w, found '5x'\n"
                  "5:15: rule 'r': severity must be info, warning or critical "
                  "(did you mean 'critical'?)\n"
                  "6:13: rule 'r': weight must be a number from 0 to 100\n"
                  "7:14: rule 'r': resolve must be true or false\n");
    expect_errors("rules:\n  r:\n    when: true\n",
                  "2:3: rule 'r': needs on: (the event types that trigger its "
                  "evaluation)\n");
    expect_errors("rules:\n  r:\n    on: [a, 'ticket opened', [x]]\n",
                  "3:13: rule 'r' on: 'ticket opened' is not an event type "
                  "(letters, digits, . _ - and * globs, e.g. meeting.*)\n"
                  "3:30: rule 'r' on: expected an event type, found a list\n");
    expect_errors("vars:\n  a: [1]\n  b:\n",
                  "2:6: var 'a': expected a number, duration, string or bool, "
                  "found a list\n"
                  "3:5: var 'b': expected a number, duration, string or bool, "
                  "found nothing\n");
    expect_errors("features:\n  p:\n    streak: [a, b]\n    reset_on: b\n",
                  "4:15: feature 'p': 'b' both counts and resets the streak\n");
    expect_errors("features:\n  t:\n    latest: data..tier\n",
                  "2:3: feature 't': latest needs on: <event types that carry "
                  "the field>\n"
                  "3:13: feature 't' latest: expected a field path such as "
                  "data.tier\n");
}

static void test_new_kinds_errors(void **state) {
    (void)state;
    /* series: bucket/retain required, whole buckets, bounded. */
    expect_errors("features:\n  o:\n    series: data.amount\n    on: order.placed\n",
                  "2:3: feature 'o': series needs bucket: and retain: durations "
                  "(e.g. bucket: 1d, retain: 120d)\n");
    expect_errors("features:\n  o:\n    series: data.amount\n    on: order.placed\n"
                  "    bucket: 1d\n    retain: 36h\n",
                  "6:13: feature 'o': retain: must be a whole number of buckets "
                  "(a multiple of bucket:)\n");
    expect_errors("features:\n  o:\n    series: data.amount\n    on: order.placed\n"
                  "    bucket: 1m\n    retain: 30d\n",
                  "6:13: feature 'o': retain / bucket is 43200 buckets per client; "
                  "at most 4096 (use larger buckets)\n");
    expect_errors("features:\n  o:\n    series: data..x\n    on: a\n"
                  "    bucket: 1d\n    retain: 2d\n",
                  "3:13: feature 'o' series: expected a numeric field such as "
                  "data.amount, or a number (1 counts events)\n");
    /* expect: within required; cases end with a default; no overlap. */
    expect_errors("features:\n  c:\n    after: ticket.opened\n    expect: ticket.opened\n",
                  "2:3: feature 'c': expect needs within: <duration>\n"
                  "4:13: feature 'c': 'ticket.opened' both opens and answers the "
                  "expectation\n");
    expect_errors("features:\n  c:\n    after: a\n    expect: b\n    within:\n"
                  "      - {within: 1d}\n      - {when: 'data.x == 1', within: 2d}\n",
                  "6:9: feature 'c' within: only the last case may omit when: (it "
                  "is the default)\n"
                  "7:9: feature 'c' within: the last case is the default: give it "
                  "no when:\n");
    expect_errors("features:\n  c:\n    after: a\n    expect: b\n    within: 1d\n"
                  "    max_open: 0\n",
                  "6:15: feature 'c' max_open: expected a count from 1 to 10000\n");
    /* last history bounds; median_gap needs it. */
    expect_errors("features:\n  t:\n    last: a\n    history: 2\n",
                  "4:14: feature 't' history: expected a count of event times to "
                  "keep, from 3 to 64\n");
    expect_errors("features:\n  t:\n    last: a\nrules:\n  r:\n    on: a\n"
                  "    when: since(t) > median_gap(t)\n",
                  "7:33: rule 'r' when: 't' keeps only its last time; give it "
                  "history: <n> (at least 3) to use median_gap()\n");
    /* Triggers. */
    expect_errors("features:\n  t:\n    last: a\nrules:\n  r:\n"
                  "    on: [order.placed, every 10s, expired(t), expired(nope)]\n"
                  "    repeat: 10s\n",
                  "6:24: rule 'r' on: 'every 10s' is too frequent (at least every "
                  "1m)\n"
                  "6:35: rule 'r' on: expired() needs an expect feature; 't' is a "
                  "last\n"
                  "6:47: rule 'r' on: unknown feature 'nope' in expired()\n"
                  "7:13: rule 'r': repeat: must be at least 1m\n");
    expect_errors("features:\n  c:\n    after: a\n    expect: b\n    within: 1d\n"
                  "rules:\n  r:\n    on: [expired(c), a]\n    for: 1h\n",
                  "8:9: rule 'r': a rule triggered by expired() has no other trigger "
                  "(it is evaluated once per expired expectation)\n"
                  "9:10: rule 'r': for: does not apply to expired() rules (the "
                  "expectation's within: is the delay)\n");
    expect_errors("rules:\n  r:\n    on: a\n    when: expectation.key == \"x\"\n",
                  "4:11: rule 'r' when: 'expectation.key' is only defined in rules "
                  "triggered by expired(<expect feature>)\n");
    /* risk: once per set, known keys. */
    expect_errors("risk: {half_life: soon, cap: -1}\n",
                  "1:19: risk half_life: expected a duration such as 90s, 15m, 48h, "
                  "30d or 2w, found 'soon'\n"
                  "1:30: risk cap: expected a positive number\n");
}

static void test_expression_errors(void **state) {
    (void)state;
    /* Positions inside plain, quoted and folded scalars. */
    expect_errors("features:\n  postponements:\n    streak: meeting.postponed\n"
                  "rules:\n  r:\n    on: x\n    when: postponments >= 2\n",
                  "7:11: rule 'r' when: unknown feature or name 'postponments' "
                  "(did you mean 'postponements'?)\n");
    expect_errors("vars:\n  window: 30d\nfeatures:\n  p:\n    streak: a\n"
                  "rules:\n  r:\n    on: x\n    when: 'p > $window'\n",
                  "9:14: rule 'r' when: cannot compare number with duration "
                  "using '>' (write the number as a duration, e.g. 30d)\n");
    expect_errors("features:\n  p:\n    streak: a\nrules:\n  r:\n    on: x\n"
                  "    when: >\n      p >= 2 and\n      summ(p, 1d) > 3\n",
                  "9:7: rule 'r' when: unknown function 'summ' (did you mean "
                  "'sum'?)\n");
    expect_errors("rules:\n  r:\n    on: x\n    when: |\n      data.a > 1 and\n"
                  "        data.b == null\n",
                  "6:16: rule 'r' when: comparison with null is always false "
                  "(a missing value compares false with everything; use "
                  "seen(feature))\n");
    expect_errors("rules:\n  r:\n    on: x\n    when: \"data.x \\\"a\\\" \"\n",
                  "4:20: rule 'r' when: unexpected '\"a\"' after the "
                  "expression\n");
    expect_errors("rules:\n  r:\n    on: x\n    when: 1 +\n",
                  "4:14: rule 'r' when: expected a value, found the end of "
                  "the expression\n");
    expect_errors("rules:\n  r:\n    on: x\n    when: 3\n",
                  "4:11: rule 'r': when: must be a condition (bool), not "
                  "number\n");
    expect_errors("rules:\n  r:\n    on: x\n    when: firing(\"q\")\n"
                  "    summary: \"n={{ summ(1) }}\"\n"
                  "    labels: {team: \"{{ $nope }}\"}\n",
                  "4:19: rule 'r' when: unknown rule 'q' (did you mean 'r'?)\n"
                  "5:20: rule 'r' summary: unknown function 'summ' (did you "
                  "mean 'sum'?)\n"
                  "6:24: rule 'r' label 'team': unknown var '$nope' (define it "
                  "under vars:)\n");
    /* where: sees only the event. */
    expect_errors("features:\n  p:\n    streak: a\n  q:\n    streak: b\n"
                  "    where: p > 1\n",
                  "6:12: feature 'q' where: features cannot be used here (a "
                  "feature's where: sees only the event)\n");
}

/* Expression errors are placed by walking the file's text from libyaml's
 * marks, so both must split lines alike: libyaml breaks lines at CR LF,
 * a lone CR, LF, NEL, LS and PS, and does not count a byte order mark in
 * columns. Found by tests/fuzz/fuzz_rules.c (a CR-only file put the error
 * at 1:37, past the end of line 1). */
static void test_expression_error_line_breaks(void **state) {
    (void)state;
    const char *want = "4:14: rule 'r' when: expected a value, found the end of "
                       "the expression\n";
    expect_errors("rules:\r  r:\r    on: x\r    when: 1 +\r", want);
    expect_errors("rules:\r\n  r:\r\n    on: x\r\n    when: 1 +\r\n", want);
    expect_errors("rules:\xc2\x85  r:\xe2\x80\xa8    on: x\xe2\x80\xa9"
                  "    when: 1 +\n",
                  want);
    /* After a BOM, the expression error and libyaml's own agree. */
    expect_errors("\xef\xbb\xbfrules: {r: {on: x, when: \"1 + \", y: 1}}\n",
                  "1:30: rule 'r' when: expected a value, found the end of "
                  "the expression\n"
                  "1:34: unknown key 'y' in rule 'r' (did you mean 'on'?)\n");
}

static void test_segments_errors(void **state) {
    (void)state;
    expect_errors("vars:\n  ratio: 0.6\n  window: 30d\nsegments:\n"
                  "  attribute: tier\n  overrides:\n"
                  "    enterprise: {ratoi: 0.8, window: 0.5}\n",
                  "7:18: unknown key 'ratoi' in segment 'enterprise' (did you "
                  "mean 'ratio'?)\n"
                  "7:38: override of $window in segment 'enterprise' is a "
                  "number but the var is a duration\n");
    expect_errors("segments:\n  attribute: [x]\n",
                  "2:14: segments: attribute: must name a field of "
                  "client.updated events (e.g. tier)\n");
}

static void test_all_errors_collected(void **state) {
    (void)state;
    /* 150 broken rules: the list stops at the cap, with a note. */
    size_t cap = 150 * 64 + 16;
    char *text = malloc(cap);
    size_t n = (size_t)snprintf(text, cap, "rules:\n");
    for (int i = 0; i < 150; i++)
        n += (size_t)snprintf(text + n, cap - n, "  r%d:\n    on: x\n    weight: -1\n", i);
    const char *dir = one_file(text);
    free(text);
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    assert_int_equal(ruleset_load_dir(dir, &rs, &errs), CHURN_EINVAL);
    rm_dir(dir);
    assert_int_equal(errs.n, RULES_MAX_ERRORS + 1);
    assert_int_equal(errs.v[0].line, 4);
    assert_string_equal(errs.v[RULES_MAX_ERRORS].msg,
                        "too many errors; stopping after 100");
    churn_errs_free(&errs);
}

static void test_alias_bomb(void **state) {
    (void)state;
    /* A "billion laughs" document: the loader never expands it. */
    const char *bomb =
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
        "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
        "rules:\n  r:\n    on: *h\n";
    const char *dir = one_file(bomb);
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    assert_int_equal(ruleset_load_dir(dir, &rs, &errs), CHURN_EINVAL);
    rm_dir(dir);
    assert_true(errs.n >= 8 && errs.n <= RULES_MAX_ERRORS + 1);
    churn_errs_free(&errs);
}

/* ---- Ids and hashes ----------------------------------------------------- */

static const char *base_text =
    "vars:\n  n: 2\n"
    "features:\n"
    "  postponements:\n    streak: [meeting.postponed, meeting.cancelled]\n"
    "    reset_on: meeting.held\n"
    "  nps:\n    latest: data.score\n    on: survey.nps\n"
    "rules:\n"
    "  mp:\n    on: meeting.*\n    when: postponements >= $n\n"
    "    summary: \"{{ postponements }} in a row\"\n"
    "  det:\n    on: survey.nps\n    when: value(nps) <= 6\n";

static void test_ids_stable(void **state) {
    (void)state;
    ruleset_t *a = load_text(base_text);
    /* Same definitions, reformatted: same ids, same set hash. */
    ruleset_t *b = load_text(
        "# reformatted\nvars: {n: 2}\n"
        "features:\n"
        "  postponements: {streak: [meeting.postponed, meeting.cancelled], "
        "reset_on: [meeting.held]}\n"
        "  nps: {latest: data.score, on: [survey.nps]}\n"
        "rules:\n"
        "  mp:\n    on: [meeting.*]\n    when: (postponements>=$n)\n"
        "    summary: \"{{ postponements }} in a row\"\n"
        "  det: {on: survey.nps, when: 'value( nps ) <= 6'}\n");
    assert_int_equal(a->n_features, 2);
    for (size_t i = 0; i < 2; i++) assert_true(a->features[i].id == b->features[i].id);
    for (size_t i = 0; i < 2; i++) assert_true(a->rules[i].id == b->rules[i].id);
    assert_string_equal(ruleset_hash(a), ruleset_hash(b));
    assert_true(a->features[0].id != a->features[1].id);
    /* A changed definition changes its own id only. */
    ruleset_t *c = load_text(
        "vars:\n  n: 2\n"
        "features:\n"
        "  postponements:\n    streak: [meeting.postponed]\n"
        "    reset_on: meeting.held\n"
        "  nps:\n    latest: data.score\n    on: survey.nps\n"
        "rules:\n"
        "  mp:\n    on: meeting.*\n    when: postponements >= $n\n"
        "    severity: critical\n"
        "  det:\n    on: survey.nps\n    when: value(nps) <= 5\n");
    assert_true(a->features[0].id != c->features[0].id);
    assert_true(a->features[1].id == c->features[1].id);
    assert_true(a->rules[0].id == c->rules[0].id); /* severity: presentation */
    assert_true(a->rules[1].id != c->rules[1].id); /* when changed */
    assert_string_not_equal(ruleset_hash(a), ruleset_hash(c));
    /* A var's value is part of the set's hash but not of the ids. */
    ruleset_t *d = load_text(
        "vars:\n  n: 3\n"
        "features:\n"
        "  postponements:\n    streak: [meeting.postponed, meeting.cancelled]\n"
        "    reset_on: meeting.held\n"
        "  nps:\n    latest: data.score\n    on: survey.nps\n"
        "rules:\n"
        "  mp:\n    on: meeting.*\n    when: postponements >= $n\n"
        "    summary: \"{{ postponements }} in a row\"\n"
        "  det:\n    on: survey.nps\n    when: value(nps) <= 6\n");
    assert_true(a->rules[0].id == d->rules[0].id);
    assert_string_not_equal(ruleset_hash(a), ruleset_hash(d));
    ruleset_free(a);
    ruleset_free(b);
    ruleset_free(c);
    ruleset_free(d);
}

static void test_loaded_structure(void **state) {
    (void)state;
    ruleset_t *rs = load_text(base_text);
    const rule_def_t *mp = &rs->rules[0];
    assert_string_equal(mp->name, "mp");
    assert_string_equal(mp->severity, "warning"); /* default */
    assert_int_equal(mp->resolve, 1);             /* default */
    assert_int_equal(mp->for_ms, 0);
    assert_int_equal(mp->line, 11);
    assert_int_equal(mp->col, 3);
    assert_int_equal(mp->n_sites, 1);
    assert_string_equal(mp->sites[0].key, "postponements");
    const feature_def_t *p = &rs->features[0];
    assert_int_equal(p->kind, FEAT_STREAK);
    assert_int_equal(p->on.n, 2);
    assert_int_equal(p->reset_on.n, 1);
    assert_true(ruleset_uses_type(rs, "meeting.cancelled"));
    assert_true(ruleset_uses_type(rs, "survey.nps"));
    assert_false(ruleset_uses_type(rs, "survey.csat"));
    assert_false(ruleset_uses_type(rs, NULL));
    assert_int_equal(rs->var_types[0], EXPR_T_NUM);
    ruleset_free(rs);
}

/* The type table answers for each type it holds what the lists
 * themselves answer (globs included), and holds every type a list names
 * literally and no other. */
static void check_type_table(const ruleset_t *rs, const char *const *types) {
    for (size_t k = 0; types[k]; k++) {
        const char *type = types[k];
        const type_info_t *ti = ruleset_type_of(rs, type);
        int literal = 0;
        for (size_t i = 0; i < rs->n_features; i++)
            for (int l = 0; l < 2; l++) {
                const type_set_t *ts = l ? &rs->features[i].reset_on : &rs->features[i].on;
                for (size_t j = 0; j < ts->n; j++) literal |= strcmp(ts->v[j], type) == 0;
            }
        for (size_t i = 0; i < rs->n_rules; i++)
            for (size_t j = 0; j < rs->rules[i].on.n; j++)
                literal |= strcmp(rs->rules[i].on.v[j], type) == 0;
        if (!literal) {
            if (ti) fail_msg("%s is in the table, no list names it", type);
            continue;
        }
        if (!ti) fail_msg("%s is named by a list, not in the table", type);
        assert_string_equal(ti->name, type);
        int used = 0;
        for (size_t i = 0; i < rs->n_features; i++) {
            assert_int_equal(ti->feat[i], feature_type_match(&rs->features[i], type));
            used |= ti->feat[i] != 0;
        }
        for (size_t i = 0; i < rs->n_rules; i++) {
            assert_int_equal(ti->rule_on[i], type_set_match(&rs->rules[i].on, type));
            used |= ti->rule_on[i] != 0;
        }
        assert_int_equal(ti->used, used);
    }
}

static void test_type_table(void **state) {
    (void)state;
    static const char *const types[] = {
        "order.placed",  "meeting.held",   "meeting.postponed", "meeting.cancelled",
        "ticket.opened", "ticket.replied", "ticket.resolved",   "survey.nps",
        "survey.csat",   "email.sent",     "email.received",    "call.logged",
        "client.updated", "contract.renewed", "unknown.type",   "x",
        "", NULL,
    };
    ruleset_t *rs = load_text(
        "features:\n"
        "  touches:\n    streak: [\"meeting.*\", call.logged]\n    reset_on: [order.placed]\n"
        "  contact:\n    last: [\"email.*\", meeting.held]\n"
        "  replies:\n    expect: ticket.replied\n    after: ticket.opened\n    within: 1d\n"
        "rules:\n"
        "  busy:\n    on: [\"*\"]\n    when: touches >= 3\n"
        "  quiet:\n    on: [meeting.held, every 1d]\n    when: since(contact) > 30d\n");
    assert_true(rs->n_types >= 5);
    for (size_t i = 1; i < rs->n_types; i++)
        assert_true(strcmp(rs->types[i - 1].name, rs->types[i].name) < 0);
    check_type_table(rs, types);
    /* Only a glob names email.sent: not in the table, used all the same. */
    assert_null(ruleset_type_of(rs, "email.sent"));
    assert_true(ruleset_uses_type(rs, "email.sent"));
    assert_non_null(ruleset_type_of(rs, "meeting.held"));
    ruleset_free(rs);
    /* The default pack. */
    rs = load_ok("rules");
    assert_true(rs->n_types > 5);
    check_type_table(rs, types);
    ruleset_free(rs);
}

static void test_var_types(void **state) {
    (void)state;
    ruleset_t *rs = load_text("vars:\n  a: 1.5\n  b: 48h\n  c: gold\n  d: \"12\"\n"
                              "  e: true\n  f: '30d'\n");
    static const uint8_t want[] = {EXPR_T_NUM, EXPR_T_DUR, EXPR_T_STR,
                                   EXPR_T_STR, EXPR_T_BOOL, EXPR_T_STR};
    assert_int_equal(rs->n_vars, 6);
    for (size_t i = 0; i < 6; i++) assert_int_equal(rs->var_types[i], want[i]);
    assert_true(rs->var_tables[1].u.num == 48 * 3600000.0);
    ruleset_free(rs);
}

static void test_segments(void **state) {
    (void)state;
    ruleset_t *rs = load_text("vars:\n  ratio: 0.6\n  name: base\n"
                              "segments:\n  attribute: tier\n  overrides:\n"
                              "    enterprise: {ratio: 0.8}\n    smb: {name: small}\n"
                              "rules:\n  r:\n    on: x\n    when: $ratio > 0.7\n");
    assert_int_equal(rs->n_segments, 2);
    assert_int_equal(ruleset_n_features(rs), 0);  /* the hidden one is not counted */
    assert_int_equal(rs->n_features, 1);
    assert_true(ruleset_uses_type(rs, "client.updated"));
    assert_true(ruleset_vars_for(rs, NULL)[0].u.num == 0.6);
    assert_true(ruleset_vars_for(rs, "enterprise")[0].u.num == 0.8);
    assert_true(ruleset_vars_for(rs, "unknown")[0].u.num == 0.6);
    const expr_val_t *smb = ruleset_vars_for(rs, "smb");
    assert_true(smb[0].u.num == 0.6);
    assert_int_equal(smb[1].u.s.len, 5);
    assert_memory_equal(smb[1].u.s.p, "small", 5);
    ruleset_free(rs);
}

static void test_default_pack_loads(void **state) {
    (void)state;
    ruleset_t *rs = load_ok("rules");
    assert_true(ruleset_n_rules(rs) >= 2);
    int found = 0;
    for (size_t i = 0; i < ruleset_n_rules(rs); i++)
        found += !strcmp(ruleset_rule_name(rs, i), "meetings_postponed") ||
                 !strcmp(ruleset_rule_name(rs, i), "detractor");
    assert_int_equal(found, 2);
    ruleset_free(rs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_dir_is_valid),
        cmocka_unit_test(test_missing_dir),
        cmocka_unit_test(test_name_order_and_selection),
        cmocka_unit_test(test_duplicates_across_files),
        cmocka_unit_test(test_file_size),
        cmocka_unit_test(test_yaml_syntax),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_new_kinds_errors),
        cmocka_unit_test(test_expression_errors),
        cmocka_unit_test(test_expression_error_line_breaks),
        cmocka_unit_test(test_segments_errors),
        cmocka_unit_test(test_all_errors_collected),
        cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_ids_stable),
        cmocka_unit_test(test_loaded_structure),
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_var_types),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_default_pack_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
