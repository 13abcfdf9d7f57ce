/*
 * test_cli.c - the command line's failure paths, run as a user would:
 * a clear message and the documented exit code, never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../lib/harness.h"

static const char *bin;
static char tmp[256];
static char out[512];

static int run(char *const argv[]) { return th_run(argv, out, 60000); }

static int out_has(const char *needle) {
    char *s = th_read_file(out);
    int found = s && strstr(s, needle) != NULL;
    if (!found) fprintf(stderr, "output was:\n%s\n(wanted: %s)\n", s ? s : "", needle);
    free(s);
    return found;
}

static void test_check_accepts_the_bundled_rules(void **state) {
    (void)state;
    char *argv[] = {(char *)bin, "check", "rules", NULL};
    assert_int_equal(run(argv), 0);
    assert_true(out_has("rules: ok, "));
}

static void test_check_lists_every_error_with_position(void **state) {
    (void)state;
    char dir[512], f[600];
    snprintf(dir, sizeof(dir), "%s/badrules", tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(f, sizeof(f), "%s/a.yaml", dir);
    assert_int_equal(th_write_file(f,
        "rules:\n"
        "  one:\n"
        "    on: survey.nps\n"
        "    whne: data.score < 3\n"
        "  two:\n"
        "    on: survey.nps\n"
        "    when: data.score <\n"), 0);
    char *argv[] = {(char *)bin, "check", dir, NULL};
    assert_int_equal(run(argv), 1);
    assert_true(out_has("a.yaml:4:"));
    assert_true(out_has("a.yaml:7:"));
    assert_true(out_has("2 errors"));
}

static void test_run_refuses_invalid_rules(void **state) {
    (void)state;
    char dir[512], f[600], set[700];
    snprintf(dir, sizeof(dir), "%s/badrules2", tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(f, sizeof(f), "%s/a.yaml", dir);
    assert_int_equal(th_write_file(f, "rulez: {}\n"), 0);
    snprintf(set, sizeof(set), "rules.dir=%s", dir);
    char *argv[] = {(char *)bin, "run", "--set", set, "--set",
                    "kafka.bootstrap.servers=127.0.0.1:1", NULL};
    assert_int_equal(run(argv), 1);
    assert_true(out_has("a.yaml:1:1"));
    assert_true(out_has("rules directory is invalid"));
}

static void test_run_refuses_an_unusable_state_directory(void **state) {
    (void)state;
    char file[512], set[700];
    snprintf(file, sizeof(file), "%s/plainfile", tmp);
    assert_int_equal(th_write_file(file, "not a directory\n"), 0);
    snprintf(set, sizeof(set), "state.dir=%s/state", file);
    char *argv[] = {(char *)bin, "run", "--set", set, "--set",
                    "kafka.bootstrap.servers=127.0.0.1:1", NULL};
    assert_int_equal(run(argv), 2);
    assert_true(out_has("cannot open the state directory"));
}

static void test_run_refuses_a_bad_config(void **state) {
    (void)state;
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "%s/bad.yaml", tmp);
    assert_int_equal(th_write_file(cfg, "batch:\n  max_evnts: 10\n"), 0);
    char *argv[] = {(char *)bin, "run", "-c", cfg, NULL};
    assert_int_equal(run(argv), 1);
    assert_true(out_has("bad.yaml:2:3"));
    assert_true(out_has("max_events"));
    char *argv2[] = {(char *)bin, "run", "--set", "batch.max_events=lots", NULL};
    assert_int_equal(run(argv2), 1);
    assert_true(out_has("batch.max_events"));
    char *argv3[] = {(char *)bin, "frobnicate", NULL};
    assert_int_equal(run(argv3), 1);
    assert_true(out_has("unknown command"));
}

static void test_sasl_password_is_never_logged(void **state) {
    (void)state;
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "%s/secret.yaml", tmp);
    assert_int_equal(th_write_file(cfg,
        "kafka:\n"
        "  bootstrap.servers: \"127.0.0.1:1\"\n"
        "  sasl.password: \"hunter2-very-secret\"\n"
        "  nonsense.property: \"x\"\n"), 0);
    char set[700];
    snprintf(set, sizeof(set), "state.dir=%s/secret-state", tmp);
    char *argv[] = {(char *)bin, "run", "-c", cfg, "--set", set, NULL};
    assert_int_equal(run(argv), 1); /* librdkafka rejects the unknown property */
    assert_true(out_has("nonsense.property"));
    char *s = th_read_file(out);
    assert_null(strstr(s, "hunter2"));
    free(s);
}

/* librdkafka quotes the piece of sasl.oauthbearer.config it rejects in
 * its error (seen on 2.0): that piece of the secret is redacted too. The
 * daemon keeps running (the broker may accept a token later), so it is
 * stopped once the error was logged. */
static void test_a_secret_quoted_by_librdkafka_is_redacted(void **state) {
    (void)state;
    char cfg[512], log[512];
    snprintf(cfg, sizeof(cfg), "%s/oauth.yaml", tmp);
    snprintf(log, sizeof(log), "%s/oauth.log", tmp);
    char text[2048];
    snprintf(text, sizeof(text),
             "kafka:\n"
             "  bootstrap.servers: \"127.0.0.1:1\"\n"
             "  security.protocol: SASL_PLAINTEXT\n"
             "  sasl.mechanisms: OAUTHBEARER\n"
             "  enable.sasl.oauthbearer.unsecure.jwt: \"true\"\n"
             "  sasl.oauthbearer.config: \"principal=admin bogus=tops3cr3tvalue\"\n"
             "state:\n  dir: \"%s/oauth-state\"\n"
             "rules:\n  dir: rules\n"
             "http:\n  listen: \"127.0.0.1:0\"\n", tmp);
    assert_int_equal(th_write_file(cfg, text), 0);
    th_proc_t p;
    assert_int_equal(th_daemon_start(&p, cfg, log), 0);
    int seen = th_log_wait(log, "sasl.oauthbearer.config", 20000);
    th_proc_signal(&p, SIGTERM);
    int rc = th_proc_wait(&p, 20000);
    char *s = th_read_file(log);
    if (seen != 0 || rc != 0) fprintf(stderr, "daemon log:\n%s\n", s ? s : "");
    assert_int_equal(seen, 0);
    assert_int_equal(rc, 0);
    assert_null(strstr(s, "tops3cr3tvalue"));
    assert_non_null(strstr(s, "bogus=<redacted>"));
    free(s);
}

/* The config installed by systemd/ stays loadable: it gets as far as the
 * state directory (pointed somewhere unusable here). */
static void test_installed_config_is_valid(void **state) {
    (void)state;
    char set[700];
    snprintf(set, sizeof(set), "state.dir=%s/plainfile/state", tmp);
    char *argv[] = {(char *)bin, "run", "-c", "systemd/churnd.yaml", "--set", set,
                    "--set", "rules.dir=rules", NULL};
    assert_int_equal(run(argv), 2);
    assert_true(out_has("cannot open the state directory"));
}

int main(void) {
    bin = getenv("CHURND_BIN");
    if (!bin) bin = "build/churnd";
    if (th_tmpdir(tmp, sizeof(tmp)) != 0) return 1;
    snprintf(out, sizeof(out), "%s/out.txt", tmp);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_accepts_the_bundled_rules),
        cmocka_unit_test(test_check_lists_every_error_with_position),
        cmocka_unit_test(test_run_refuses_invalid_rules),
        cmocka_unit_test(test_run_refuses_an_unusable_state_directory),
        cmocka_unit_test(test_run_refuses_a_bad_config),
        cmocka_unit_test(test_sasl_password_is_never_logged),
        cmocka_unit_test(test_a_secret_quoted_by_librdkafka_is_redacted),
        cmocka_unit_test(test_installed_config_is_valid),
    };
    int rc = cmocka_run_group_tests_name("cli", tests, NULL, NULL);
    th_rmtree(tmp);
    return rc;
}
