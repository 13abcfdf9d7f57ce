/*
 * test_broker.c - the embedded broker (librdkafka's mock cluster) set up
 * like a Kafka broker where it matters to timing: its connections run
 * without Nagle's algorithm (broker_mock_nodelay). The mock lives in this
 * process, so the test looks at the socket it accepted directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../lib/harness.h"
#include "churnd/broker.h"

#define WAIT_MS 10000

/* The port of "host:port". */
static int port_of(const char *bootstrap) {
    const char *colon = strrchr(bootstrap, ':');
    assert_non_null(colon);
    return atoi(colon + 1);
}

/* A connected TCP socket of this process other than skip_fd whose local
 * port is port (the broker's side of a connection); -1 when none. */
static int accepted_socket(int port, int skip_fd) {
    DIR *dir = opendir("/proc/self/fd");
    assert_non_null(dir);
    int found = -1;
    struct dirent *de;
    while (found < 0 && (de = readdir(dir)) != NULL) {
        int fd = atoi(de->d_name);
        struct stat st;
        if (fd == skip_fd || fd == dirfd(dir) || fstat(fd, &st) != 0 ||
            !S_ISSOCK(st.st_mode))
            continue;
        int listening = 1;
        socklen_t len = sizeof(listening);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
            listening)
            continue;
        struct sockaddr_in sa;
        len = sizeof(sa);
        if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
            sa.sin_family == AF_INET && ntohs(sa.sin_port) == port)
            found = fd;
    }
    closedir(dir);
    return found;
}

static void test_the_embedded_broker_answers_without_nagle(void **state) {
    (void)state;
    const char *ext = getenv("CHURND_TEST_BOOTSTRAP");
    if (ext && *ext) skip(); /* a real broker: not in this process */
    th_broker_t b;
    assert_int_equal(th_broker_start(&b), 0);
    int port = port_of(b.bootstrap);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    /* The mock's thread accepts in its own time. */
    int fd = -1;
    int64_t deadline = th_now_ms() + WAIT_MS;
    while ((fd = accepted_socket(port, c)) < 0 && th_now_ms() < deadline)
        th_pause_ms(10);
    if (fd < 0) fail_msg("the broker did not accept the connection within %d ms", WAIT_MS);
    int nodelay = 0;
    socklen_t len = sizeof(nodelay);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    if (!nodelay) fail_msg("the broker's connection runs with Nagle's algorithm");
    close(c);
    th_broker_stop(&b);
}

static void test_nodelay_says_when_it_finds_no_listener(void **state) {
    (void)state;
    churn_err_t err = {0};
    assert_true(broker_mock_nodelay("localhost", &err) < 0);
    assert_non_null(strstr(err.msg, "no port in bootstrap list 'localhost'"));
    /* A port nothing in this process listens on. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
    char bs[64];
    snprintf(bs, sizeof(bs), "127.0.0.1:%d", ntohs(sa.sin_port));
    memset(&err, 0, sizeof(err));
    assert_true(broker_mock_nodelay(bs, &err) < 0); /* bound, not listening */
    assert_non_null(strstr(err.msg, "no listening socket of this process serves"));
    assert_int_equal(listen(s, 1), 0);
    memset(&err, 0, sizeof(err));
    assert_int_equal(broker_mock_nodelay(bs, &err), 1);
    int nodelay = 0;
    len = sizeof(nodelay);
    assert_int_equal(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    assert_true(nodelay);
    close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_embedded_broker_answers_without_nagle),
        cmocka_unit_test(test_nodelay_says_when_it_finds_no_listener),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
