/*
 * test_http.c - churnd's HTTP endpoints over real sockets: /healthz,
 * /readyz (503 while no partition is assigned, 200 once they are),
 * /rules and POST /-/reload (hash as `churnd check` computes it, changed
 * by a valid reload, kept by a broken one), /clients/{id} (percent-encoded
 * ids, 404, 400), errors (404, 405, garbage, header and body limits),
 * slow connections that must not block anyone and are closed after
 * http.request_timeout, the connection cap, /readyz naming a batch stalled
 * on Produce errors (and a reload meanwhile answered 202, taking over
 * once the batch commits), and /metrics accepted by `promtool check
 * metrics`.
 *
 * One daemon serves every test (started in the group setup, drained in the
 * group teardown, which checks its exit status), so the file stays fast.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <cmocka.h>

#include "../lib/harness.h"
#include "../lib/http_client.h"

#define WAIT_MS 60000
#define API_PRODUCE 0 /* Kafka protocol ApiKey of Produce requests */
#define REQ_MS 10000
#define SLOW_CONNS 200
#define MAX_CONNS 250

static char repo[1024];
static th_env_t env;
static char rules_dir[512];
static int port = -1;

static int copy_file(const char *from, const char *to) {
    char *s = th_read_file(from);
    if (!s) return -1;
    int rc = th_write_file(to, s);
    free(s);
    return rc;
}

static void dump_and_fail(const char *what) {
    th_env_dump_log(&env);
    fail_msg("%s", what);
}

/* GET (or another method) on a fresh connection; fails the test when no
 * response came. */
static void req(const char *method, const char *target, const char *body,
                th_http_resp_t *r) {
    if (th_http_request(port, method, target, body, r, REQ_MS) != 0) {
        th_env_dump_log(&env);
        fail_msg("%s %s: no response", method, target);
    }
}

static cJSON *json_of(const th_http_resp_t *r) {
    cJSON *o = cJSON_Parse(r->body);
    if (!o) fail_msg("not JSON: %s", r->body);
    return o;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* `churnd check DIR`'s hash: the rule set's hash computed apart from the
 * daemon. */
static void check_hash(const char *dir, char *out, size_t n) {
    char path[600];
    snprintf(path, sizeof(path), "%s/check.out", env.dir);
    const char *bin = getenv("CHURND_BIN");
    char *argv[] = {(char *)(bin ? bin : "build/churnd"), "check", (char *)dir, NULL};
    assert_int_equal(th_run(argv, path, 30000), 0);
    char *s = th_read_file(path);
    assert_non_null(s);
    const char *h = strstr(s, "hash ");
    assert_non_null(h);
    snprintf(out, n, "%.*s", (int)strcspn(h + 5, " \n"), h + 5);
    free(s);
}

static int ready_status(void) {
    th_http_resp_t r;
    if (th_http_request(port, "GET", "/readyz", NULL, &r, REQ_MS) != 0) return -1;
    int st = r.status;
    th_http_resp_free(&r);
    return st;
}

/* ---- setup: the daemon starts with its broker down ------------------- */

static int setup(void **state) {
    (void)state;
    if (th_tmpdir(rules_dir, sizeof(rules_dir)) != 0) return -1;
    char from[1400], to[1400];
    snprintf(from, sizeof(from), "%s/rules/detractor.yaml", repo);
    snprintf(to, sizeof(to), "%s/detractor.yaml", rules_dir);
    if (copy_file(from, to) != 0) return -1;
    static const char extra[] =
        "http:\n"
        "  listen: \"127.0.0.1:0\"\n"
        "  request_timeout: 2s\n"
        "  max_connections: 250\n"
        "  stall_timeout: 1s\n";
    if (th_env_setup(&env, 2, rules_dir, NULL, extra) != 0) return -1;
    /* No broker: the daemon cannot join its group, so /readyz must say
     * that no partition is assigned, while /healthz answers. */
    if (th_broker_set_up(&env.broker, 0) != 0) return -1;
    if (th_env_start_daemon(&env) != 0) return -1;
    port = th_env_http_port(&env, WAIT_MS);
    if (port < 0) {
        th_env_dump_log(&env);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    int rc = th_env_stop_daemon(&env, 30000);
    if (rc != 0) {
        fprintf(stderr, "churnd exited with %d\n", rc);
        th_env_dump_log(&env);
    }
    th_env_teardown(&env);
    th_rmtree(rules_dir);
    return rc == 0 ? 0 : -1;
}

/* ---- the tests --------------------------------------------------------- */

static void test_healthz_and_readyz(void **state) {
    (void)state;
    th_http_resp_t r;
    req("GET", "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    th_http_resp_free(&r);

    req("GET", "/readyz", NULL, &r);
    assert_int_equal(r.status, 503);
    cJSON *o = json_of(&r);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "ready")));
    const cJSON *failed = cJSON_GetObjectItem(o, "failed");
    assert_int_equal(cJSON_GetArraySize(failed), 1);
    assert_string_equal(cJSON_GetArrayItem(failed, 0)->valuestring, "partitions");
    const cJSON *checks = cJSON_GetObjectItem(o, "checks");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(checks, "rules"), "ok")));
    assert_true(cJSON_IsFalse(
        cJSON_GetObjectItem(cJSON_GetObjectItem(checks, "partitions"), "ok")));
    cJSON_Delete(o);
    th_http_resp_free(&r);

    /* The broker is back: the group assigns partitions, /readyz turns 200. */
    assert_int_equal(th_broker_set_up(&env.broker, 1), 0);
    int64_t deadline = th_now_ms() + WAIT_MS;
    int st;
    while ((st = ready_status()) != 200 && th_now_ms() < deadline) th_pause_ms(100);
    if (st != 200) dump_and_fail("/readyz never answered 200");
    req("HEAD", "/readyz", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_non_null(th_http_header(&r, "Content-Length"));
    assert_true(atoi(th_http_header(&r, "Content-Length")) > 0);
    th_http_resp_free(&r);
}

static void test_rules_and_reload(void **state) {
    (void)state;
    char want[64], path[700];
    check_hash(rules_dir, want, sizeof(want));
    th_http_resp_t r;
    req("GET", "/rules", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_http_header(&r, "Content-Type"), "application/json");
    cJSON *o = json_of(&r);
    assert_string_equal(jstr(o, "hash"), want);
    assert_string_equal(jstr(o, "dir"), rules_dir);
    assert_non_null(jstr(o, "loaded_at"));
    const cJSON *names = cJSON_GetObjectItem(o, "rules");
    assert_int_equal(cJSON_GetArraySize(names), 1);
    assert_string_equal(cJSON_GetArrayItem(names, 0)->valuestring, "detractor");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "last_reload")));
    cJSON_Delete(o);
    th_http_resp_free(&r);

    /* a valid change: 200, the new hash runs */
    char from[1400];
    snprintf(from, sizeof(from), "%s/rules/meetings_postponed.yaml", repo);
    snprintf(path, sizeof(path), "%s/meetings_postponed.yaml", rules_dir);
    assert_int_equal(copy_file(from, path), 0);
    char want2[64];
    check_hash(rules_dir, want2, sizeof(want2));
    assert_string_not_equal(want, want2);
    req("POST", "/-/reload", NULL, &r);
    if (r.status != 200) fail_msg("reload: %d %s", r.status, r.body);
    o = json_of(&r);
    assert_string_equal(jstr(o, "status"), "ok");
    assert_string_equal(jstr(o, "hash"), want2);
    cJSON_Delete(o);
    th_http_resp_free(&r);
    req("GET", "/rules", NULL, &r);
    o = json_of(&r);
    assert_string_equal(jstr(o, "hash"), want2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "rules")), 2);
    const cJSON *reloads = cJSON_GetObjectItem(o, "reloads");
    assert_int_equal(cJSON_GetObjectItem(reloads, "ok")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(reloads, "failed")->valueint, 0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "last_reload"), "ok")));
    cJSON_Delete(o);
    th_http_resp_free(&r);

    /* a broken file: rejected with its position, the old hash is kept */
    snprintf(path, sizeof(path), "%s/zz-broken.yaml", rules_dir);
    assert_int_equal(th_write_file(path, "rules:\n  oops:\n    on: survey.nps\n"
                                         "    when: 'score >>> 3'\n"), 0);
    req("POST", "/-/reload", NULL, &r);
    assert_int_equal(r.status, 500);
    o = json_of(&r);
    assert_string_equal(jstr(o, "status"), "failed");
    assert_string_equal(jstr(o, "hash"), want2);
    const cJSON *errs = cJSON_GetObjectItem(o, "errors");
    assert_true(cJSON_GetArraySize(errs) >= 1);
    assert_non_null(strstr(cJSON_GetArrayItem(errs, 0)->valuestring, "zz-broken.yaml:4:"));
    cJSON_Delete(o);
    th_http_resp_free(&r);
    req("GET", "/rules", NULL, &r);
    o = json_of(&r);
    assert_string_equal(jstr(o, "hash"), want2);
    reloads = cJSON_GetObjectItem(o, "reloads");
    assert_int_equal(cJSON_GetObjectItem(reloads, "ok")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(reloads, "failed")->valueint, 1);
    const cJSON *last = cJSON_GetObjectItem(o, "last_reload");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(last, "ok")));
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(last, "errors")) >= 1);
    cJSON_Delete(o);
    th_http_resp_free(&r);
    assert_int_equal(unlink(path), 0);

    /* the reload endpoint takes POST only */
    req("GET", "/-/reload", NULL, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(th_http_header(&r, "Allow"), "POST");
    th_http_resp_free(&r);
}

static void send_nps(const char *client, const char *id, int score, const char *ts) {
    char json[512];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s\",\"type\":\"survey.nps\",\"client_id\":\"%s\","
             "\"ts\":\"%s\",\"data\":{\"score\":%d}}", id, client, ts, score);
    assert_int_equal(th_env_send(&env, env.helpdesk, client, json), 0);
}

static void test_client_state(void **state) {
    (void)state;
    /* an id that needs percent-encoding: a slash, a space, a non-ASCII
     * letter */
    const char *client = "ACME/1 \xc3\xbc";
    const char *enc = "/clients/ACME%2F1%20%C3%bc";
    send_nps(client, "h1", 9, "2026-06-01T10:00:00Z");
    send_nps(client, "h2", 3, "2026-06-02T10:00:00Z");
    if (th_env_wait_caught_up(&env, WAIT_MS) != 0) dump_and_fail("not caught up");
    th_http_resp_t r;
    req("GET", enc, NULL, &r);
    if (r.status != 200) fail_msg("%s: %d %s", enc, r.status, r.body);
    cJSON *o = json_of(&r);
    assert_string_equal(jstr(o, "client_id"), client);
    const cJSON *nps = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "features"), "nps_score");
    assert_non_null(nps);
    assert_string_equal(jstr(nps, "kind"), "latest");
    const cJSON *det = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "rules"), "detractor");
    assert_string_equal(jstr(det, "status"), "firing");
    assert_non_null(strstr(jstr(det, "alert_id"), "detractor/ACME/1"));
    assert_true(cJSON_GetObjectItem(o, "risk")->valuedouble > 0);
    assert_int_equal(cJSON_GetObjectItem(o, "recent_event_ids")->valueint, 2);
    cJSON_Delete(o);
    th_http_resp_free(&r);

    req("GET", "/clients/NOBODY", NULL, &r);
    assert_int_equal(r.status, 404);
    o = json_of(&r);
    assert_string_equal(jstr(o, "client_id"), "NOBODY");
    cJSON_Delete(o);
    th_http_resp_free(&r);

    static const char *const bad[] = {"/clients/%G1", "/clients/A%4", "/clients/%00x",
                                      "/clients/%ff%fe", "/clients/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        req("GET", bad[i], NULL, &r);
        if (r.status != 400) fail_msg("%s: %d, want 400", bad[i], r.status);
        th_http_resp_free(&r);
    }
}

/* Raw bytes in, the status out (status or alt), and the connection closed
 * after it. */
static void expect_raw2(const char *what, const void *bytes, size_t n, int status,
                        int alt) {
    int fd = th_http_connect(port);
    assert_true(fd >= 0);
    (void)th_http_send(fd, bytes, n, REQ_MS);
    th_http_resp_t r;
    if (th_http_read(fd, &r, 0, REQ_MS) != 0) fail_msg("%s: no response", what);
    if (r.status != status && r.status != alt)
        fail_msg("%s: status %d, want %d", what, r.status, status);
    const char *conn = th_http_header(&r, "Connection");
    assert_non_null(conn);
    assert_string_equal(conn, "close");
    if (!th_http_wait_closed(fd, REQ_MS)) fail_msg("%s: connection left open", what);
    th_http_resp_free(&r);
    close(fd);
}

static void expect_raw(const char *what, const void *bytes, size_t n, int status) {
    expect_raw2(what, bytes, n, status, status);
}

static void test_errors_and_limits(void **state) {
    (void)state;
    th_http_resp_t r;
    req("GET", "/nowhere", NULL, &r);
    assert_int_equal(r.status, 404);
    th_http_resp_free(&r);
    req("DELETE", "/rules", NULL, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(th_http_header(&r, "Allow"), "GET, HEAD");
    th_http_resp_free(&r);
    req("HEAD", "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_http_header(&r, "Content-Length"), "3");
    th_http_resp_free(&r);
    req("GET", "/metrics?x=1", NULL, &r); /* a query does not change the route */
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);

    static const char garbage[] = "\x01\x02\xff garbage \r\n\r\n";
    expect_raw("garbage", garbage, sizeof(garbage) - 1, 400);
    static const char bad_line[] = "GET\r\n\r\n";
    expect_raw("bad request line", bad_line, sizeof(bad_line) - 1, 400);
    static const char bad_version[] = "GET /healthz HTTP/9\r\n\r\n";
    expect_raw("bad version", bad_version, sizeof(bad_version) - 1, 400);

    /* 16 KiB of headers */
    size_t big = 16 * 1024;
    char *huge = malloc(big + 200);
    int n = snprintf(huge, big + 200, "GET /healthz HTTP/1.1\r\nX-Big: ");
    memset(huge + n, 'a', big);
    memcpy(huge + n + big, "\r\n\r\n", 4);
    expect_raw("huge header", huge, (size_t)n + big + 4, 431);
    /* a 16 KiB request target */
    n = snprintf(huge, big + 200, "GET /");
    memset(huge + n, 'a', big);
    memcpy(huge + n + big, " HTTP/1.1\r\n\r\n", 13);
    expect_raw2("huge target", huge, (size_t)n + big + 13, 414, 431);
    free(huge);

    /* a 100 KB body, announced and sent */
    size_t body = 100 * 1000;
    char *post = malloc(body + 200);
    n = snprintf(post, 200, "POST /-/reload HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", body);
    memset(post + n, 'b', body);
    expect_raw("huge body", post, (size_t)n + body, 413);
    /* a chunked body past 4 KiB */
    n = snprintf(post, 200, "POST /-/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        n += snprintf(post + n, 20, "800\r\n");
        memset(post + n, 'c', 0x800);
        n += 0x800;
        n += snprintf(post + n, 4, "\r\n");
    }
    n += snprintf(post + n, 10, "0\r\n\r\n");
    expect_raw("chunked body", post, (size_t)n, 413);
    free(post);

    /* three pipelined requests: three answers, in order, one connection */
    static const char pipelined[] =
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd = th_http_connect(port);
    assert_true(fd >= 0);
    assert_int_equal(th_http_send(fd, pipelined, sizeof(pipelined) - 1, REQ_MS), 0);
    assert_int_equal(th_http_read(fd, &r, 0, REQ_MS), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_http_header(&r, "Connection"), "keep-alive");
    th_http_resp_free(&r);
    assert_int_equal(th_http_read(fd, &r, 0, REQ_MS), 0);
    assert_int_equal(r.status, 404);
    th_http_resp_free(&r);
    assert_int_equal(th_http_read(fd, &r, 1, REQ_MS), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_http_header(&r, "Connection"), "close");
    th_http_resp_free(&r);
    assert_true(th_http_wait_closed(fd, REQ_MS));
    close(fd);

    /* HTTP/1.0 without keep-alive: answered, then closed */
    static const char old[] = "GET /healthz HTTP/1.0\r\n\r\n";
    expect_raw("HTTP/1.0", old, sizeof(old) - 1, 200);

    /* random bytes, half of them after a plausible "GET /", on 100
     * connections at once: each is answered and closed, or closed at the
     * request timeout, and the server stays up */
    enum { N_JUNK = 100 };
    int junk_fd[N_JUNK];
    unsigned seed = 12345;
    char junk[512];
    for (int i = 0; i < N_JUNK; i++) {
        size_t len = 1 + (size_t)(seed % sizeof(junk));
        for (size_t j = 0; j < len; j++) {
            seed = seed * 1103515245u + 12345u;
            junk[j] = (char)(seed >> 16);
        }
        if (i % 2) memcpy(junk, "GET /", len < 5 ? len : 5);
        junk_fd[i] = th_http_connect(port);
        assert_true(junk_fd[i] >= 0);
        (void)th_http_send(junk_fd[i], junk, len, REQ_MS);
    }
    for (int i = 0; i < N_JUNK; i++) {
        if (!th_http_wait_closed(junk_fd[i], REQ_MS)) fail_msg("junk %d: left open", i);
        close(junk_fd[i]);
    }
    req("GET", "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
}

/* How many of fds answer 503 within timeout_ms; the others (accepted,
 * silent until their request timeout) are left alone. */
static int count_rejected(const int *fds, int n, int want, int timeout_ms) {
    int rejected = 0, done[128] = {0};
    int64_t deadline = th_now_ms() + timeout_ms;
    assert_true(n <= 128);
    while (rejected < want && th_now_ms() < deadline) {
        struct pollfd p[128];
        for (int i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = done[i] ? -1 : fds[i], .events = POLLIN};
        if (poll(p, (nfds_t)n, 100) <= 0) continue;
        for (int i = 0; i < n; i++) {
            if (done[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            done[i] = 1;
            th_http_resp_t x;
            if (th_http_read(fds[i], &x, 0, 1000) == 0) {
                if (x.status == 503) rejected++;
                th_http_resp_free(&x);
            }
        }
    }
    return rejected;
}

static void test_slow_connections(void **state) {
    (void)state;
    enum { EXTRA = 60 };
    int slow[SLOW_CONNS + EXTRA];
    int64_t t_open = th_now_ms();
    for (int i = 0; i < SLOW_CONNS; i++) {
        slow[i] = th_http_connect(port);
        assert_true(slow[i] >= 0);
        assert_int_equal(th_http_send(slow[i], "GET /heal", 9, REQ_MS), 0);
    }
    /* an event while they stall: processed below */
    send_nps("SLOW-1", "s1", 2, "2026-06-03T10:00:00Z");
    /* a fresh connection is answered at once */
    int64_t t0 = th_now_ms();
    th_http_resp_t r;
    req("GET", "/healthz", NULL, &r);
    int64_t took = th_now_ms() - t0;
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    fprintf(stderr, "/healthz beside %d stalled connections: %lld ms\n", SLOW_CONNS,
            (long long)took);
    assert_true(took < 1000);

    /* over http.max_connections: answered 503 and closed */
    for (int i = SLOW_CONNS; i < SLOW_CONNS + EXTRA; i++) {
        slow[i] = th_http_connect(port);
        assert_true(slow[i] >= 0);
    }
    int want = SLOW_CONNS + EXTRA - MAX_CONNS;
    int rejected = count_rejected(slow + SLOW_CONNS, EXTRA, want, 3000);
    fprintf(stderr, "connections over the cap of %d answered 503: %d (%lld ms after "
            "the first stalled one)\n", MAX_CONNS, rejected,
            (long long)(th_now_ms() - t_open));
    assert_true(rejected >= want);

    /* the daemon went on processing meanwhile */
    if (th_env_wait_caught_up(&env, WAIT_MS) != 0) dump_and_fail("not caught up");
    /* every stalled connection is closed after the request timeout */
    for (int i = 0; i < SLOW_CONNS + EXTRA; i++) {
        if (!th_http_wait_closed(slow[i], 10000)) fail_msg("slow connection %d left open", i);
        close(slow[i]);
    }
    fprintf(stderr, "stalled connections all closed %lld ms after the first opened\n",
            (long long)(th_now_ms() - t_open));
    /* only now: while the stalled ones hold every slot up to
     * http.max_connections, a new connection is (rightly) answered 503 */
    req("GET", "/clients/SLOW-1", NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
    req("GET", "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    th_http_resp_free(&r);
}

/* /readyz fails "progress" while a batch waits longer than
 * http.stall_timeout (1 s here) for its alert to be acknowledged, and
 * recovers once it is. */
static void test_readyz_reports_a_stalled_batch(void **state) {
    (void)state;
    /* Stopped, so the event is on the broker before Produce starts
     * failing (the errors hit every producer of the cluster). */
    assert_int_equal(th_proc_signal(&env.daemon, SIGSTOP), 0);
    send_nps("STALL-1", "st1", 1, "2026-06-04T10:00:00Z");
    assert_int_equal(th_flush(env.producer, REQ_MS), 0);
    static rd_kafka_resp_err_t errs[4000];
    for (size_t i = 0; i < 4000; i++)
        errs[i] = i % 2 ? RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS
                        : RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    rd_kafka_mock_push_request_errors_array(env.broker.mock, API_PRODUCE, 4000,
                                            errs);
    assert_int_equal(th_proc_signal(&env.daemon, SIGCONT), 0);

    int64_t deadline = th_now_ms() + WAIT_MS;
    th_http_resp_t r;
    int stalled = 0;
    while (!stalled && th_now_ms() < deadline) {
        req("GET", "/readyz", NULL, &r);
        if (r.status == 503) {
            cJSON *o = json_of(&r);
            const cJSON *f = cJSON_GetObjectItem(o, "failed");
            stalled = cJSON_GetArraySize(f) == 1 &&
                      !strcmp(cJSON_GetArrayItem(f, 0)->valuestring, "progress");
            if (stalled) fprintf(stderr, "stalled: %s", r.body);
            cJSON_Delete(o);
        }
        th_http_resp_free(&r);
        if (!stalled) th_pause_ms(100);
    }
    if (!stalled) {
        rd_kafka_mock_clear_request_errors(env.broker.mock, API_PRODUCE);
        dump_and_fail("/readyz never reported the stalled batch");
    }
    /* a reload now is valid but waits for that batch: 202, pending */
    req("POST", "/-/reload", NULL, &r);
    if (r.status != 202) fail_msg("reload while awaiting: %d %s", r.status, r.body);
    cJSON *o = json_of(&r);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "active")));
    cJSON_Delete(o);
    th_http_resp_free(&r);
    req("GET", "/rules", NULL, &r);
    o = json_of(&r);
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(o, "pending")));
    cJSON_Delete(o);
    th_http_resp_free(&r);

    rd_kafka_mock_clear_request_errors(env.broker.mock, API_PRODUCE);
    int st;
    deadline = th_now_ms() + WAIT_MS;
    while ((st = ready_status()) != 200 && th_now_ms() < deadline) th_pause_ms(100);
    if (st != 200) dump_and_fail("/readyz did not recover after the acknowledgement");
    if (th_env_wait_caught_up(&env, WAIT_MS) != 0) dump_and_fail("not caught up");
    /* the batch committed: the pending set took over */
    req("GET", "/rules", NULL, &r);
    o = json_of(&r);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "pending")));
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "reloads"), "ok")->valueint, 2);
    cJSON_Delete(o);
    th_http_resp_free(&r);
}

static void test_metrics_pass_promtool(void **state) {
    (void)state;
    th_http_resp_t r;
    req("GET", "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_http_header(&r, "Content-Type"),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "churnd_events_consumed_total"));
    char in[600], out[600];
    snprintf(in, sizeof(in), "%s/metrics.txt", env.dir);
    snprintf(out, sizeof(out), "%s/promtool.out", env.dir);
    assert_int_equal(th_write_file(in, r.body), 0);
    th_http_resp_free(&r);
    char *argv[] = {"/usr/bin/promtool", "check", "metrics", NULL};
    int rc = th_run_io(argv, in, out, NULL, 30000);
    if (rc != 0) {
        char *s = th_read_file(out);
        char *m = th_read_file(in);
        fprintf(stderr, "promtool exited with %d:\n%s\n--- metrics:\n%s\n", rc,
                s ? s : "", m ? m : "");
        free(s);
        free(m);
        fail_msg("promtool check metrics failed");
    }
}

int main(void) {
    if (!getcwd(repo, sizeof(repo))) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_and_readyz),
        cmocka_unit_test(test_rules_and_reload),
        cmocka_unit_test(test_client_state),
        cmocka_unit_test(test_errors_and_limits),
        cmocka_unit_test(test_slow_connections),
        cmocka_unit_test(test_readyz_reports_a_stalled_batch),
        cmocka_unit_test(test_metrics_pass_promtool),
    };
    return cmocka_run_group_tests_name("integration_http", tests, setup, teardown);
}
