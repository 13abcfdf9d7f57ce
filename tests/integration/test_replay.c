/*
 * test_replay.c - `churnd replay` and `churnd test` run as a user runs
 * them: the built binary ($CHURND_BIN, default build/churnd) on the
 * fixtures under tests/data/replay-* and tests/data/ruletest-*, checking
 * stdout, stderr and the exit status. No broker: both commands are
 * Kafka-free and read no clock, so their output is exact.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../lib/harness.h"

static const char *bin;
static char tmp[256];
static char out_path[512], err_path[512];

/* Run the binary with stdout and stderr in separate files (the alerts are
 * stdout alone) and stdin from in_path (NULL: /dev/null). Returns the exit
 * status, 128+signal, or -1 (spawn failure or 60 s timeout). */
static int run_io(char *const argv[], const char *in_path) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0) _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int64_t deadline = th_now_ms() + 60000;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st)) return WEXITSTATUS(st);
            return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
        }
        if (r < 0 && errno != EINTR) return -1;
        if (th_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        th_pause_ms(5);
    }
}

#define RUN(in, ...)                                                   \
    ({                                                                 \
        char *argv_[] = {(char *)bin, __VA_ARGS__, NULL};              \
        run_io(argv_, in);                                             \
    })

static int file_has(const char *path, const char *needle) {
    char *s = th_read_file(path);
    int found = s && strstr(s, needle) != NULL;
    if (!found)
        fprintf(stderr, "%s was:\n%s\n(wanted: %s)\n", path, s ? s : "", needle);
    free(s);
    return found;
}

static void dump(void) {
    char *o = th_read_file(out_path), *e = th_read_file(err_path);
    fprintf(stderr, "--- stdout:\n%s--- stderr:\n%s---\n", o ? o : "", e ? e : "");
    free(o);
    free(e);
}

/* The lines of a file, sorted, as one string: alerts compared as a set. */
static int cmp_line(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *sorted_lines(const char *path, size_t *n_lines) {
    char *s = th_read_file(path);
    if (!s) return NULL;
    size_t n = 0, cap = 64;
    char **v = malloc(cap * sizeof(*v));
    for (char *save = NULL, *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (n == cap) v = realloc(v, (cap *= 2) * sizeof(*v));
        v[n++] = l;
    }
    qsort(v, n, sizeof(*v), cmp_line);
    size_t len = 1;
    for (size_t i = 0; i < n; i++) len += strlen(v[i]) + 1;
    char *r = malloc(len), *p = r;
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s\n", v[i]);
    *p = '\0';
    free(v);
    free(s);
    *n_lines = n;
    return r;
}

static size_t count_lines(const char *path) {
    char *s = th_read_file(path);
    size_t n = 0;
    for (char *p = s; p && *p; p++) n += *p == '\n';
    free(s);
    return n;
}

/* ---- churnd replay ---------------------------------------------------------- */

static void test_replay_prints_the_exact_alerts(void **state) {
    (void)state;
    int rc = RUN(NULL, "replay", "-r", "rules", "tests/data/replay-basic/events.jsonl");
    if (rc != 0) dump();
    assert_int_equal(rc, 0);
    char *got = th_read_file(out_path);
    char *want = th_read_file("tests/data/replay-basic/expected.jsonl");
    assert_non_null(got);
    assert_non_null(want);
    if (strcmp(got, want) != 0) dump();
    assert_string_equal(got, want);
    free(got);
    free(want);
    assert_true(file_has(err_path, "10 events read: 5 applied, 1 duplicates, 1 ignored, "
                                   "3 invalid; 4 alerts"));
}

static void test_replay_reports_invalid_lines_and_goes_on(void **state) {
    (void)state;
    /* The same file on stdin: invalid lines are listed with their numbers
     * (blank line 6 is skipped, not counted) and the run still succeeds. */
    int rc = RUN("tests/data/replay-basic/events.jsonl", "replay", "-r", "rules", "-");
    assert_int_equal(rc, 0);
    assert_true(file_has(err_path, "line 5: not_json:"));
    assert_true(file_has(err_path, "line 10: no_time: field \"ts\" is missing"));
    assert_true(file_has(err_path, "line 11: no_client:"));
    assert_int_equal(count_lines(out_path), 4);
}

static void test_replay_lists_at_most_twenty_invalid_lines(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/bad.jsonl", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 25; i++) fprintf(f, "{not json %d\n", i);
    fclose(f);
    assert_int_equal(RUN(NULL, "replay", "-r", "rules", path), 0);
    assert_true(file_has(err_path, "25 invalid"));
    assert_true(file_has(err_path, "line 20: not_json"));
    assert_int_equal(th_file_count(err_path, "line 21:"), 0);
    assert_true(file_has(err_path, "... and 5 more invalid lines"));
}

/* A replay's exit status must be 0; its alerts, one per line, sorted. */
static char *sorted_output(int rc, size_t *n) {
    if (rc != 0) dump();
    assert_int_equal(rc, 0);
    char *got = sorted_lines(out_path, n);
    assert_non_null(got);
    return got;
}

static void test_replay_output_does_not_depend_on_chunk_size(void **state) {
    (void)state;
    const char *chunks[] = {"1", "7", "1000"};
    char *first = NULL;
    size_t n_first = 0;
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        int rc = RUN(NULL, "replay", "-r", "rules", "--chunk", (char *)chunks[i], "--until",
                     "2026-04-01T00:00:00Z", "tests/data/replay-chunks/events.jsonl");
        size_t n = 0;
        char *got = sorted_output(rc, &n);
        if (!first) {
            first = got;
            n_first = n;
            /* Timers (expectations, every 1d, for) and events both fire. */
            assert_true(n > 50);
            assert_true(file_has(out_path, "\"trigger\": {\"timer\": true}"));
            assert_true(file_has(out_path, "\"trigger\": {\"event_id\""));
            continue;
        }
        assert_int_equal(n, n_first);
        assert_string_equal(got, first);
        free(got);
    }
    free(first);
}

/* Replay writes a state back only when its cache evicts it: a cache of one
 * state, evicting at every commit, must print what the default prints. */
static void test_replay_output_does_not_depend_on_cache_size(void **state) {
    (void)state;
    const char *sizes[] = {NULL, "1", "3"};
    char *first = NULL;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int rc = sizes[i]
            ? RUN(NULL, "replay", "-r", "rules", "--chunk", "5", "--cache-clients",
                  (char *)sizes[i], "--until", "2026-04-01T00:00:00Z",
                  "tests/data/replay-chunks/events.jsonl")
            : RUN(NULL, "replay", "-r", "rules", "--chunk", "5", "--until",
                  "2026-04-01T00:00:00Z", "tests/data/replay-chunks/events.jsonl");
        size_t n = 0;
        char *got = sorted_output(rc, &n);
        if (!first) {
            assert_true(n > 50);
            first = got;
            continue;
        }
        assert_string_equal(got, first);
        free(got);
    }
    free(first);
    const char *bad[] = {"0", "-1", "ten", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(RUN(NULL, "replay", "-r", "rules", "--cache-clients",
                             (char *)bad[i], "tests/data/replay-for/events.jsonl"), 1);
        assert_true(file_has(err_path, "--cache-clients"));
    }
}

/* A stream shuffled within the lateness gives the sorted stream's alerts,
 * whatever the chunk size; without lateness it does not (so the check
 * can fail). */
static void test_replay_shuffled_within_lateness_gives_the_sorted_alerts(void **state) {
    (void)state;
    const char *until = "2026-04-01T00:00:00Z";
    int rc = RUN(NULL, "replay", "-r", "rules", "--until", (char *)until,
                 "tests/data/replay-lateness/sorted.jsonl");
    if (rc != 0) dump();
    assert_int_equal(rc, 0);
    size_t n_want = 0;
    char *want = sorted_lines(out_path, &n_want);
    assert_non_null(want);
    assert_true(n_want > 50);
    const char *chunks[] = {"1", "7", "1000"};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        rc = RUN(NULL, "replay", "-r", "rules", "--lateness", "2d", "--chunk",
                 (char *)chunks[i], "--until", (char *)until,
                 "tests/data/replay-lateness/shuffled.jsonl");
        if (rc != 0) dump();
        assert_int_equal(rc, 0);
        assert_true(file_has(err_path, "159 held and applied in event-time order, 0 late"));
        size_t n = 0;
        char *got = sorted_lines(out_path, &n);
        assert_non_null(got);
        if (strcmp(got, want) != 0) dump();
        assert_string_equal(got, want);
        free(got);
    }
    /* The sorted stream through the buffer: the same again. */
    rc = RUN(NULL, "replay", "-r", "rules", "--lateness", "2d", "--until", (char *)until,
             "tests/data/replay-lateness/sorted.jsonl");
    assert_int_equal(rc, 0);
    size_t n = 0;
    char *got = sorted_lines(out_path, &n);
    assert_string_equal(got, want);
    free(got);
    /* Without lateness, a watermark moved after every line leaves the
     * shuffled events behind it: they are late, and the shuffle shows. */
    rc = RUN(NULL, "replay", "-r", "rules", "--chunk", "1", "--until", (char *)until,
             "tests/data/replay-lateness/shuffled.jsonl");
    assert_int_equal(rc, 0);
    got = sorted_lines(out_path, &n);
    assert_non_null(got);
    assert_true(strcmp(got, want) != 0);
    free(got);
    free(want);
}

static void test_replay_until_fires_a_for_timer(void **state) {
    (void)state;
    /* Without --until the watermark stops at the last event (10:30): the
     * rule is pending, nothing fires. */
    assert_int_equal(RUN(NULL, "replay", "-r", "tests/data/replay-for/rules",
                         "tests/data/replay-for/events.jsonl"), 0);
    assert_int_equal(count_lines(out_path), 0);
    /* Up to 11:00: A's hour has passed (B's, at 11:30, not yet). */
    assert_int_equal(RUN(NULL, "replay", "-r", "tests/data/replay-for/rules", "--until",
                         "2026-03-01T11:00:00Z", "tests/data/replay-for/events.jsonl"), 0);
    assert_int_equal(count_lines(out_path), 1);
    assert_true(file_has(out_path, "{\"alert_id\": \"slow_meeting/A/2026-03-01T11:00:00Z\", "
                                   "\"rule\": \"slow_meeting\", \"status\": \"firing\""));
    assert_true(file_has(out_path, "\"trigger\": {\"timer\": true}"));
    /* No emitted_at: the output is reproducible. */
    assert_int_equal(th_file_count(out_path, "emitted_at"), 0);
    /* --lateness holds the watermark back from the events, --until not. */
    assert_int_equal(RUN(NULL, "replay", "-r", "tests/data/replay-for/rules", "--lateness",
                         "1h", "--until", "2026-03-01T11:30:00Z",
                         "tests/data/replay-for/events.jsonl"), 0);
    assert_int_equal(count_lines(out_path), 2);
}

static void test_replay_state_is_reused(void **state) {
    (void)state;
    char dir[512], empty[512];
    snprintf(dir, sizeof(dir), "%s/state", tmp);
    snprintf(empty, sizeof(empty), "%s/empty.jsonl", tmp);
    assert_int_equal(th_write_file(empty, ""), 0);
    assert_int_equal(RUN(NULL, "replay", "-r", "tests/data/replay-for/rules", "--state", dir,
                         "tests/data/replay-for/events.jsonl"), 0);
    assert_int_equal(count_lines(out_path), 0);
    /* A second run over nothing continues from the stored state: both
     * pending rules fire once event time passes their deadlines. */
    assert_int_equal(RUN(NULL, "replay", "-r", "tests/data/replay-for/rules", "--state", dir,
                         "--until", "2026-03-01T12:00:00Z", empty), 0);
    assert_int_equal(count_lines(out_path), 2);
    assert_true(file_has(out_path, "slow_meeting/A/2026-03-01T11:00:00Z"));
    assert_true(file_has(out_path, "slow_meeting/B/2026-03-01T11:30:00Z"));
    /* ... and they fired once: a third run has nothing left to fire. */
    assert_int_equal(RUN(NULL, "replay", "-r", "tests/data/replay-for/rules", "--state", dir,
                         "--until", "2026-03-02T00:00:00Z", empty), 0);
    assert_int_equal(count_lines(out_path), 0);
    /* The same events again are duplicates for their clients. */
    assert_int_equal(RUN(NULL, "replay", "-r", "tests/data/replay-for/rules", "--state", dir,
                         "tests/data/replay-for/events.jsonl"), 0);
    assert_true(file_has(err_path, "0 applied, 2 duplicates"));
    th_rmtree(dir);
}

static void test_replay_exit_codes(void **state) {
    (void)state;
    char bad[512], f[600], plain[512];
    /* A bad rules directory: 1, with the error's position. */
    snprintf(bad, sizeof(bad), "%s/badrules", tmp);
    assert_int_equal(mkdir(bad, 0755), 0);
    snprintf(f, sizeof(f), "%s/a.yaml", bad);
    assert_int_equal(th_write_file(f, "rulez: {}\n"), 0);
    assert_int_equal(RUN(NULL, "replay", "-r", bad, "tests/data/replay-for/events.jsonl"), 1);
    assert_true(file_has(err_path, "a.yaml:1:1"));
    /* An unreadable events file: 1. */
    assert_int_equal(RUN(NULL, "replay", "-r", "rules", "/nonexistent/events.jsonl"), 1);
    assert_true(file_has(err_path, "/nonexistent/events.jsonl"));
    /* A state directory that cannot be one: 2. */
    snprintf(plain, sizeof(plain), "%s/plainfile", tmp);
    assert_int_equal(th_write_file(plain, "x\n"), 0);
    assert_int_equal(RUN(NULL, "replay", "-r", "rules", "--state", plain,
                         "tests/data/replay-for/events.jsonl"), 2);
    assert_true(file_has(err_path, "state"));
    /* Usage errors: 1. */
    assert_int_equal(RUN(NULL, "replay", "tests/data/replay-for/events.jsonl"), 1);
    assert_int_equal(RUN(NULL, "replay", "-r", "rules", "--until", "soon", "-"), 1);
}

static void test_replay_reads_the_daemon_config(void **state) {
    (void)state;
    /* -c maps a differently shaped envelope exactly as the daemon would,
     * and takes its allowed lateness. */
    char cfg[512], ev[512];
    snprintf(cfg, sizeof(cfg), "%s/churnd.yaml", tmp);
    snprintf(ev, sizeof(ev), "%s/crm.jsonl", tmp);
    assert_int_equal(th_write_file(cfg,
        "event:\n"
        "  client_path: account.id\n"
        "  type_map: {SurveyAnswered: survey.nps}\n"
        "time:\n"
        "  allowed_lateness: 1h\n"), 0);
    assert_int_equal(th_write_file(ev,
        "{\"id\":\"x1\",\"type\":\"SurveyAnswered\",\"account\":{\"id\":\"Z\"},"
        "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"score\":1}}\n"), 0);
    int rc = RUN(NULL, "replay", "-r", "rules", "-c", cfg, ev);
    if (rc != 0) dump();
    assert_int_equal(rc, 0);
    assert_true(file_has(out_path, "\"alert_id\": \"detractor/Z/2026-03-01T10:00:00Z\""));
    assert_true(file_has(err_path, "watermark 2026-03-01T09:00:00Z"));
}

/* ---- churnd test ------------------------------------------------------------- */

static void test_ruletest_passes(void **state) {
    (void)state;
    int rc = RUN(NULL, "test", "tests/data/ruletest-basic/pass.yaml",
                 "tests/data/ruletest-basic/for.yaml");
    if (rc != 0) dump();
    assert_int_equal(rc, 0);
    assert_true(file_has(out_path, "ok   fires on the second postponement, resolves on a held meeting\n"));
    assert_true(file_has(out_path, "ok   pending until the hour has passed\n"));
    assert_true(file_has(out_path, "6 passed, 0 failed\n"));
}

/* A rule test's lateness: reorders what arrives shuffled within it. */
static void test_ruletest_lateness_reorders(void **state) {
    (void)state;
    int rc = RUN(NULL, "test", "tests/data/ruletest-lateness/shuffled.yaml",
                 "tests/data/ruletest-lateness/arrival.yaml");
    if (rc != 0) dump();
    assert_int_equal(rc, 0);
    assert_true(file_has(out_path, "6 passed, 0 failed\n"));
}

static void test_ruletest_failure_prints_the_diff(void **state) {
    (void)state;
    assert_int_equal(RUN(NULL, "test", "tests/data/ruletest-basic/fail.yaml"), 1);
    assert_true(file_has(out_path, "ok   a detractor fires\n"));
    assert_true(file_has(out_path, "FAIL wrong time on purpose\n"));
    assert_true(file_has(out_path, "fail.yaml:10"));
    assert_true(file_has(out_path,
        "    missing (expected, not produced):\n"
        "      - {rule: detractor, client: A, status: firing, at: \"2026-03-01T11:00:00Z\"}\n"
        "    unexpected (produced, not expected):\n"
        "      - {rule: detractor, client: A, status: firing, at: \"2026-03-01T10:00:00Z\"}\n"));
    assert_true(file_has(out_path, "1 passed, 1 failed\n"));
}

static void test_ruletest_invalid_file(void **state) {
    (void)state;
    assert_int_equal(RUN(NULL, "test", "tests/data/ruletest-basic/invalid.yaml"), 1);
    assert_true(file_has(err_path, "invalid.yaml:9:5: unknown key 'alert' in a test "
                                   "(did you mean 'alerts'?)"));
    assert_true(file_has(err_path, "invalid.yaml:8:12: until: 'yesterday'"));
    assert_true(file_has(err_path, "invalid.yaml:7:9: this event would be a dead letter "
                                   "(no_client)"));
    assert_int_equal(th_file_count(out_path, "ok   "), 0);
    /* A YAML syntax error and a missing file are invalid too. */
    char f[512];
    snprintf(f, sizeof(f), "%s/syntax.yaml", tmp);
    assert_int_equal(th_write_file(f, "rules: ..\ntests:\n  - name: a: b\n"), 0);
    assert_int_equal(RUN(NULL, "test", f), 1);
    assert_true(file_has(err_path, "syntax.yaml:3:"));
    assert_int_equal(RUN(NULL, "test", "/nonexistent/t.yaml"), 1);
    assert_true(file_has(err_path, "/nonexistent/t.yaml"));
}

static void test_ruletest_one_bad_file_fails_the_run(void **state) {
    (void)state;
    assert_int_equal(RUN(NULL, "test", "tests/data/ruletest-basic/pass.yaml",
                         "tests/data/ruletest-basic/invalid.yaml"), 1);
    assert_true(file_has(out_path, "3 passed, 0 failed\n"));
}

static int setup(void **state) {
    (void)state;
    bin = getenv("CHURND_BIN");
    if (!bin) bin = "build/churnd";
    if (th_tmpdir(tmp, sizeof(tmp)) != 0) return -1;
    snprintf(out_path, sizeof(out_path), "%s/out", tmp);
    snprintf(err_path, sizeof(err_path), "%s/err", tmp);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_rmtree(tmp);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_prints_the_exact_alerts),
        cmocka_unit_test(test_replay_reports_invalid_lines_and_goes_on),
        cmocka_unit_test(test_replay_lists_at_most_twenty_invalid_lines),
        cmocka_unit_test(test_replay_output_does_not_depend_on_chunk_size),
        cmocka_unit_test(test_replay_output_does_not_depend_on_cache_size),
        cmocka_unit_test(test_replay_shuffled_within_lateness_gives_the_sorted_alerts),
        cmocka_unit_test(test_replay_until_fires_a_for_timer),
        cmocka_unit_test(test_replay_state_is_reused),
        cmocka_unit_test(test_replay_exit_codes),
        cmocka_unit_test(test_replay_reads_the_daemon_config),
        cmocka_unit_test(test_ruletest_passes),
        cmocka_unit_test(test_ruletest_lateness_reorders),
        cmocka_unit_test(test_ruletest_failure_prints_the_diff),
        cmocka_unit_test(test_ruletest_invalid_file),
        cmocka_unit_test(test_ruletest_one_bad_file_fails_the_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
