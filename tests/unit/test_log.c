/*
 * test_log.c - the log line formats byte for byte (logfmt and JSON, with
 * their quoting and escaping), level filtering, the per-message rate limit
 * driven through a fake clock (no sleeping), and whole lines under
 * concurrent writers. stderr is redirected to a temporary file or a pipe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "churnd/common.h"
#include "churnd/log.h"
#include "../../daemon/log_internal.h"

/* 2026-11-25T08:00:00.123Z */
#define T0 INT64_C(1795593600123)

static int64_t g_now = T0;
static int64_t fake_clock(void) { return g_now; }

static int g_saved = -1;
static FILE *g_capture;

static void capture_begin(void) {
    fflush(stderr);
    g_capture = tmpfile();
    assert_non_null(g_capture);
    g_saved = dup(STDERR_FILENO);
    assert_true(g_saved >= 0);
    assert_true(dup2(fileno(g_capture), STDERR_FILENO) >= 0);
}

/* Restore stderr and return what was written (caller frees). */
static char *capture_end(void) {
    assert_true(dup2(g_saved, STDERR_FILENO) >= 0);
    close(g_saved);
    int fd = fileno(g_capture);
    off_t n = lseek(fd, 0, SEEK_END);
    assert_true(n >= 0);
    char *s = calloc((size_t)n + 1, 1);
    assert_non_null(s);
    assert_int_equal(pread(fd, s, (size_t)n, 0), (ssize_t)n);
    fclose(g_capture);
    return s;
}

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* Every test starts from the module's defaults and a fixed clock. */
static int setup(void **state) {
    (void)state;
    g_now = T0;
    log_set_clock(fake_clock);
    log_setup(LOG_INFO, LOG_FMT_LOGFMT);
    log_set_rate_limit(20);
    log_reset_rate_limit();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    log_set_clock(NULL);
    return 0;
}

static void test_defaults_are_info_logfmt_and_20_per_second(void **state) {
    (void)state;
    /* Runs first, before anything called log_setup or the setters. */
    log_set_clock(fake_clock);
    assert_false(log_enabled(LOG_DEBUG));
    assert_true(log_enabled(LOG_INFO));
    capture_begin();
    for (int i = 0; i < 25; i++) LOG0(LOG_INFO, "t", "flood");
    LOG0(LOG_DEBUG, "t", "hidden");
    char *out = capture_end();
    assert_int_equal(count(out, "\n"), 20);
    assert_int_equal(count(out, "ts=2026-11-25T08:00:00.123Z level=info "
                                "component=t msg=flood\n"), 20);
    free(out);
    log_set_clock(NULL);
}

static void test_logfmt_line_exactly(void **state) {
    (void)state;
    capture_begin();
    LOG(LOG_INFO, "kafka", "partition assigned", LF_STR("topic", "crm.events"),
        LF_INT("partition", 3));
    LOG0(LOG_WARN, "daemon", "started");
    LOG(LOG_ERROR, "x", "types", LF_INT("neg", -42), LF_DBL("d", 0.1),
        LF_DBL("big", 1e21), LF_DBL("third", 1.0 / 3), LF_BOOL("yes", 5),
        LF_BOOL("no", 0), LF_DBL("nan", NAN), LF_DBL("inf", -INFINITY));
    char *out = capture_end();
    assert_string_equal(out,
        "ts=2026-11-25T08:00:00.123Z level=info component=kafka "
        "msg=\"partition assigned\" topic=crm.events partition=3\n"
        "ts=2026-11-25T08:00:00.123Z level=warn component=daemon msg=started\n"
        "ts=2026-11-25T08:00:00.123Z level=error component=x msg=types neg=-42 "
        "d=0.1 big=1e+21 third=0.33333333333333331 yes=true no=false nan=NaN "
        "inf=-Inf\n");
    free(out);
}

static void test_logfmt_quotes_and_escapes(void **state) {
    (void)state;
    capture_begin();
    LOG(LOG_INFO, "c", "m", LF_STR("space", "a b"), LF_STR("eq", "a=b"),
        LF_STR("quote", "say \"hi\""), LF_STR("bs", "C:\\dir"),
        LF_STR("nl", "line1\nline2\r\tx"), LF_STR("ctl", "\x01\x7f"),
        LF_STR("empty", ""), LF_STR("null", NULL), LF_STR("utf8", "Müller"),
        LF_STR("bad", "a\xff" "b"), LF_STR("bad key!", "v"), LF_STR("", "k"));
    char *out = capture_end();
    assert_string_equal(out,
        "ts=2026-11-25T08:00:00.123Z level=info component=c msg=m "
        "space=\"a b\" eq=\"a=b\" quote=\"say \\\"hi\\\"\" bs=\"C:\\\\dir\" "
        "nl=\"line1\\nline2\\r\\tx\" ctl=\"\\u0001\\u007f\" empty=\"\" null=\"\" "
        "utf8=Müller bad=a\xef\xbf\xbd" "b bad_key_=v _=k\n");
    free(out);
    /* The message and component are quoted by the same rule. */
    capture_begin();
    LOG0(LOG_INFO, "my comp", "it said \"no\"\n");
    out = capture_end();
    assert_string_equal(out, "ts=2026-11-25T08:00:00.123Z level=info "
                             "component=\"my comp\" msg=\"it said \\\"no\\\"\\n\"\n");
    free(out);
}

static void test_json_line_exactly_and_valid(void **state) {
    (void)state;
    log_setup(LOG_INFO, LOG_FMT_JSON);
    capture_begin();
    LOG(LOG_INFO, "kafka", "partition assigned", LF_STR("topic", "crm.events"),
        LF_INT("partition", 3));
    LOG(LOG_WARN, "x", "esc \"q\" \\ \n", LF_STR("s", "tab\there\x01"),
        LF_DBL("d", 2.5), LF_DBL("nan", NAN), LF_BOOL("b", 1), LF_STR("n", NULL),
        LF_STR("bad", "\xc3\x28"), LF_STR("u", "日本"));
    char *out = capture_end();
    assert_string_equal(out,
        "{\"ts\":\"2026-11-25T08:00:00.123Z\",\"level\":\"info\",\"component\":"
        "\"kafka\",\"msg\":\"partition assigned\",\"topic\":\"crm.events\","
        "\"partition\":3}\n"
        "{\"ts\":\"2026-11-25T08:00:00.123Z\",\"level\":\"warn\",\"component\":"
        "\"x\",\"msg\":\"esc \\\"q\\\" \\\\ \\n\",\"s\":\"tab\\there\\u0001\","
        "\"d\":2.5,\"nan\":null,\"b\":true,\"n\":\"\",\"bad\":\"\xef\xbf\xbd(\","
        "\"u\":\"日本\"}\n");
    /* Each line is a JSON object that reads back to what was logged. */
    char *nl = strchr(out, '\n');
    *nl = '\0';
    cJSON *j = cJSON_Parse(nl + 1);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring, "esc \"q\" \\ \n");
    assert_string_equal(cJSON_GetObjectItem(j, "s")->valuestring, "tab\there\x01");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "nan")));
    cJSON_Delete(j);
    j = cJSON_Parse(out);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "partition")->valueint, 3);
    cJSON_Delete(j);
    free(out);
}

static void test_levels_filter(void **state) {
    (void)state;
    log_setup(LOG_WARN, LOG_FMT_LOGFMT);
    assert_false(log_enabled(LOG_DEBUG));
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_FATAL));
    capture_begin();
    LOG0(LOG_DEBUG, "c", "d");
    LOG0(LOG_INFO, "c", "i");
    log_emit(LOG_INFO, "c", "direct", NULL, 0); /* filtered without the macro too */
    LOG0(LOG_WARN, "c", "w");
    LOG0(LOG_ERROR, "c", "e");
    LOG0(LOG_FATAL, "c", "f");
    char *out = capture_end();
    assert_string_equal(out,
        "ts=2026-11-25T08:00:00.123Z level=warn component=c msg=w\n"
        "ts=2026-11-25T08:00:00.123Z level=error component=c msg=e\n"
        "ts=2026-11-25T08:00:00.123Z level=fatal component=c msg=f\n");
    free(out);
    log_setup(LOG_DEBUG, LOG_FMT_LOGFMT);
    capture_begin();
    LOG0(LOG_DEBUG, "c", "d");
    out = capture_end();
    assert_string_equal(out, "ts=2026-11-25T08:00:00.123Z level=debug component=c msg=d\n");
    free(out);
}

static void test_level_parse(void **state) {
    (void)state;
    log_level_t l = LOG_FATAL;
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_level_parse("INFO", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("warning", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_level_parse("fatal", &l), 0);
    assert_int_equal(l, LOG_FATAL);
    assert_true(log_level_parse("verbose", &l) < 0);
    assert_true(log_level_parse("", &l) < 0);
    assert_true(log_level_parse(NULL, &l) < 0);
    assert_int_equal(l, LOG_FATAL);
}

static void test_rate_limit_per_key_with_suppressed_count(void **state) {
    (void)state;
    log_set_rate_limit(3);
    capture_begin();
    for (int i = 0; i < 5; i++) LOG(LOG_WARN, "events", "bad event", LF_INT("i", i));
    /* Another message, and the same message from another component, have
     * budgets of their own. */
    LOG0(LOG_WARN, "events", "other");
    LOG0(LOG_WARN, "kafka", "bad event");
    g_now += 333; /* 333 ms at 3/s is 0.999 of a line: still nothing */
    LOG(LOG_WARN, "events", "bad event", LF_INT("i", 5));
    g_now += 1; /* one whole line earned */
    LOG(LOG_WARN, "events", "bad event", LF_INT("i", 6));
    LOG(LOG_WARN, "events", "bad event", LF_INT("i", 7));
    g_now += 10000; /* a long pause refills the bucket, but only to the burst */
    for (int i = 8; i < 13; i++) LOG(LOG_WARN, "events", "bad event", LF_INT("i", i));
    g_now += 1000;
    LOG(LOG_WARN, "events", "bad event", LF_INT("i", 13));
    LOG(LOG_WARN, "events", "bad event", LF_INT("i", 14));
    char *out = capture_end();
    assert_string_equal(out,
        "ts=2026-11-25T08:00:00.123Z level=warn component=events msg=\"bad event\" i=0\n"
        "ts=2026-11-25T08:00:00.123Z level=warn component=events msg=\"bad event\" i=1\n"
        "ts=2026-11-25T08:00:00.123Z level=warn component=events msg=\"bad event\" i=2\n"
        "ts=2026-11-25T08:00:00.123Z level=warn component=events msg=other\n"
        "ts=2026-11-25T08:00:00.123Z level=warn component=kafka msg=\"bad event\"\n"
        "ts=2026-11-25T08:00:00.457Z level=warn component=events msg=\"bad event\" i=6 suppressed=3\n"
        "ts=2026-11-25T08:00:10.457Z level=warn component=events msg=\"bad event\" i=8 suppressed=1\n"
        "ts=2026-11-25T08:00:10.457Z level=warn component=events msg=\"bad event\" i=9\n"
        "ts=2026-11-25T08:00:10.457Z level=warn component=events msg=\"bad event\" i=10\n"
        "ts=2026-11-25T08:00:11.457Z level=warn component=events msg=\"bad event\" i=13 suppressed=2\n"
        "ts=2026-11-25T08:00:11.457Z level=warn component=events msg=\"bad event\" i=14\n");
    free(out);
}

static void test_rate_limit_keys_on_text_not_pointer(void **state) {
    (void)state;
    /* librdkafka hands every message over in one reused buffer. */
    log_set_rate_limit(1);
    char buf[32];
    capture_begin();
    snprintf(buf, sizeof(buf), "broker down");
    LOG0(LOG_WARN, "librdkafka", buf);
    snprintf(buf, sizeof(buf), "broker up");
    LOG0(LOG_WARN, "librdkafka", buf);
    snprintf(buf, sizeof(buf), "broker down");
    LOG0(LOG_WARN, "librdkafka", buf);
    char *out = capture_end();
    assert_int_equal(count(out, "msg=\"broker down\""), 1);
    assert_int_equal(count(out, "msg=\"broker up\""), 1);
    free(out);
}

static void test_fatal_is_never_dropped_and_zero_disables(void **state) {
    (void)state;
    log_set_rate_limit(1);
    capture_begin();
    for (int i = 0; i < 3; i++) LOG0(LOG_FATAL, "daemon", "boom");
    char *out = capture_end();
    assert_int_equal(count(out, "level=fatal"), 3);
    free(out);
    log_set_rate_limit(0);
    capture_begin();
    for (int i = 0; i < 100; i++) LOG0(LOG_INFO, "c", "many");
    out = capture_end();
    assert_int_equal(count(out, "msg=many\n"), 100);
    assert_int_equal(count(out, "suppressed"), 0);
    free(out);
}

static void test_json_suppressed_is_a_number(void **state) {
    (void)state;
    log_setup(LOG_INFO, LOG_FMT_JSON);
    log_set_rate_limit(1);
    capture_begin();
    LOG0(LOG_INFO, "c", "m");
    LOG0(LOG_INFO, "c", "m");
    g_now += 1000;
    LOG(LOG_INFO, "c", "m", LF_INT("k", 1));
    char *out = capture_end();
    assert_string_equal(out,
        "{\"ts\":\"2026-11-25T08:00:00.123Z\",\"level\":\"info\",\"component\":\"c\","
        "\"msg\":\"m\"}\n"
        "{\"ts\":\"2026-11-25T08:00:01.123Z\",\"level\":\"info\",\"component\":\"c\","
        "\"msg\":\"m\",\"k\":1,\"suppressed\":1}\n");
    free(out);
}

/* A flood that stops is summed up once it has been quiet for a second,
 * even if its message never comes again; one that goes on carries the
 * count on its next line instead, as before. */
static void test_stopped_flood_is_summed_up(void **state) {
    (void)state;
    log_set_rate_limit(3);
    capture_begin();
    for (int i = 0; i < 10; i++)
        LOG(LOG_WARN, "events", "invalid event sent to the dead-letter topic",
            LF_STR("reason", "not_json"), LF_INT("offset", i));
    LOG0(LOG_INFO, "daemon", "quiet key"); /* nothing suppressed: no summary */
    log_flush_suppressed(); /* not quiet for a second yet */
    g_now += 999;
    log_flush_suppressed();
    g_now += 1;
    log_flush_suppressed();
    log_flush_suppressed(); /* said once */
    g_now += 5000;
    log_flush_suppressed();
    char *out = capture_end();
    assert_string_equal(out,
        "ts=2026-11-25T08:00:00.123Z level=warn component=events msg=\"invalid event sent to the dead-letter topic\" reason=not_json offset=0\n"
        "ts=2026-11-25T08:00:00.123Z level=warn component=events msg=\"invalid event sent to the dead-letter topic\" reason=not_json offset=1\n"
        "ts=2026-11-25T08:00:00.123Z level=warn component=events msg=\"invalid event sent to the dead-letter topic\" reason=not_json offset=2\n"
        "ts=2026-11-25T08:00:00.123Z level=info component=daemon msg=\"quiet key\"\n"
        "ts=2026-11-25T08:00:01.123Z level=warn component=events msg=\"repeated lines suppressed\" message=\"invalid event sent to the dead-letter topic\" suppressed=7\n");
    free(out);
    /* the next line of that message starts afresh: no suppressed= left */
    capture_begin();
    LOG(LOG_WARN, "events", "invalid event sent to the dead-letter topic",
        LF_INT("offset", 10));
    out = capture_end();
    assert_int_equal(count(out, "suppressed"), 0);
    free(out);
}

static void test_summary_respects_the_level_filter(void **state) {
    (void)state;
    log_set_rate_limit(1);
    capture_begin();
    LOG0(LOG_INFO, "c", "chatty");
    LOG0(LOG_INFO, "c", "chatty");
    log_setup(LOG_WARN, LOG_FMT_LOGFMT);
    g_now += 2000;
    log_flush_suppressed();
    char *out = capture_end();
    assert_int_equal(count(out, "suppressed"), 0);
    free(out);
}

static void test_secrets_are_redacted_in_every_format(void **state) {
    (void)state;
    log_add_secret("hunter2");
    log_add_secret("p\"a\\ss");
    log_add_secret(""); /* ignored */
    log_add_secret("principalClaimName=sub scope=verysecretscope");
    capture_begin();
    LOG(LOG_ERROR, "kafka", "bad password hunter2 given",
        LF_STR("error", "auth with 'hunter2' and p\"a\\ss failed"),
        LF_INT("n", 2), LF_STR("plain", "nothing here"), LF_STR("none", NULL));
    LOG(LOG_WARN, "consumer", "kafka error",
        LF_STR("reason", "Unrecognized sasl.oauthbearer.config beginning at: "
                         "scope=verysecretscope"));
    log_setup(LOG_INFO, LOG_FMT_JSON);
    LOG(LOG_ERROR, "kafka", "x", LF_STR("error", "p\"a\\ss hunter2hunter2"));
    char *out = capture_end();
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "a\\\\ss")); /* escaped in either format */
    assert_null(strstr(out, "verysecretscope"));
    assert_non_null(strstr(out,
        "level=error component=kafka msg=\"bad password <redacted> given\" "
        "error=\"auth with '<redacted>' and <redacted> failed\" n=2 "
        "plain=\"nothing here\" none=\"\"\n"));
    assert_non_null(strstr(out, "beginning at: scope=<redacted>\""));
    assert_non_null(strstr(out,
        "\"error\":\"<redacted> <redacted><redacted>\"}\n"));
    free(out);
    log_reset_secrets();
    capture_begin();
    LOG0(LOG_INFO, "c", "hunter2");
    out = capture_end();
    assert_non_null(strstr(out, "\"msg\":\"hunter2\""));
    free(out);
}

/* ---- whole lines under concurrent writers --------------------------- */

#define N_THREADS 4
#define N_LINES 300

typedef struct {
    int fd;
    buf_t got;
} reader_ctx_t;

static void *reader(void *p) {
    reader_ctx_t *r = p;
    char tmp[4096];
    ssize_t n;
    while ((n = read(r->fd, tmp, sizeof(tmp))) > 0)
        if (buf_append(&r->got, tmp, (size_t)n) != 0) break;
    return NULL;
}

static void *writer(void *p) {
    int id = (int)(intptr_t)p;
    char pad[600];
    memset(pad, 'a' + id, sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < N_LINES; i++)
        LOG(LOG_INFO, "thread", "line", LF_INT("id", id), LF_INT("i", i),
            LF_STR("pad", pad));
    return NULL;
}

static void test_concurrent_lines_never_interleave(void **state) {
    (void)state;
    log_set_rate_limit(0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    reader_ctx_t r = {.fd = fds[0]};
    buf_init(&r.got);
    pthread_t rt, wt[N_THREADS];
    assert_int_equal(pthread_create(&rt, NULL, reader, &r), 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    close(fds[1]);
    for (intptr_t i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&wt[i], NULL, writer, (void *)i), 0);
    for (int i = 0; i < N_THREADS; i++) pthread_join(wt[i], NULL);
    assert_true(dup2(saved, STDERR_FILENO) >= 0); /* closes the last write end */
    close(saved);
    pthread_join(rt, NULL);
    close(fds[0]);
    assert_int_equal(buf_putc(&r.got, '\0'), 0);
    size_t lines = 0;
    char *s = (char *)r.got.data;
    for (char *line = s, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        int id = -1, i = -1, off = 0;
        if (sscanf(line, "ts=2026-11-25T08:00:00.123Z level=info component=thread "
                         "msg=line id=%d i=%d pad=%n", &id, &i, &off) != 2 ||
            id < 0 || id >= N_THREADS || strlen(line + off) != 599 ||
            strspn(line + off, (char[]){(char)('a' + id), 0}) != 599)
            fail_msg("torn line: %.120s", line);
        lines++;
    }
    assert_int_equal(lines, N_THREADS * N_LINES);
    buf_free(&r.got);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        /* First: it checks the state nothing has configured yet. */
        cmocka_unit_test(test_defaults_are_info_logfmt_and_20_per_second),
        cmocka_unit_test_setup_teardown(test_logfmt_line_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logfmt_quotes_and_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_line_exactly_and_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_per_key_with_suppressed_count,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_keys_on_text_not_pointer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_is_never_dropped_and_zero_disables,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_suppressed_is_a_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_flood_is_summed_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_summary_respects_the_level_filter,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_are_redacted_in_every_format,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lines_never_interleave, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
