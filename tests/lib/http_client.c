/*
 * http_client.c - see http_client.h.
 */
#include "http_client.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

void th_http_resp_free(th_http_resp_t *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
    r->status = -1;
}

const char *th_http_header(const th_http_resp_t *r, const char *name) {
    static char val[1024];
    size_t nl = strlen(name);
    const char *p = r->head ? strstr(r->head, "\r\n") : NULL;
    while (p && p[2]) {
        p += 2;
        const char *eol = strstr(p, "\r\n");
        if (!eol) break;
        if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            size_t vl = (size_t)(eol - v);
            if (vl >= sizeof(val)) vl = sizeof(val) - 1;
            memcpy(val, v, vl);
            val[vl] = '\0';
            return val;
        }
        p = eol;
    }
    return NULL;
}

int th_http_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Wait until fd is readable (or writable); 1 ready, 0 timeout. */
static int wait_fd(int fd, short ev, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - th_now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = ev};
        int rc = poll(&p, 1, (int)left);
        if (rc > 0) return 1;
        if (rc < 0 && errno != EINTR) return 0;
    }
}

int th_http_send(int fd, const void *p, size_t n, int timeout_ms) {
    int64_t deadline = th_now_ms() + timeout_ms;
    const char *s = p;
    while (n > 0) {
        if (!wait_fd(fd, POLLOUT, deadline)) return -1;
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read at least one more byte into *buf; 1 got some, 0 end of file or
 * error, -1 timeout. */
static int read_more(int fd, char **buf, size_t *len, size_t *cap,
                     int64_t deadline) {
    if (*cap - *len < 4097) {
        *cap = *cap * 2 + 8192;
        char *b = realloc(*buf, *cap);
        if (!b) return 0;
        *buf = b;
    }
    for (;;) {
        if (!wait_fd(fd, POLLIN, deadline)) return -1;
        ssize_t n = recv(fd, *buf + *len, *cap - *len - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) return 0;
        *len += (size_t)n;
        (*buf)[*len] = '\0';
        return 1;
    }
}

/* Bytes read past the end of one response (the next answers of
 * pipelined requests) wait here for the next th_http_read on that fd. */
static char *carry;
static size_t carry_len;
static int carry_fd = -1;

int th_http_read(int fd, th_http_resp_t *r, int head_only, int timeout_ms) {
    memset(r, 0, sizeof(*r));
    r->status = -1;
    int64_t deadline = th_now_ms() + timeout_ms;
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    if (!buf) return -1;
    buf[0] = '\0';
    if (carry && carry_fd == fd && carry_len < cap) {
        memcpy(buf, carry, carry_len);
        len = carry_len;
        buf[len] = '\0';
    }
    free(carry);
    carry = NULL;
    carry_len = 0;
    char *end;
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        if (read_more(fd, &buf, &len, &cap, deadline) != 1) {
            free(buf);
            return -1;
        }
    }
    size_t head_len = (size_t)(end - buf) + 2;
    r->head = malloc(head_len + 1);
    memcpy(r->head, buf, head_len);
    r->head[head_len] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) r->status = -1;
    const char *cl = th_http_header(r, "Content-Length");
    size_t want = head_only || !cl ? 0 : (size_t)strtoull(cl, NULL, 10);
    size_t body_at = head_len + 2;
    while (len - body_at < want) {
        if (read_more(fd, &buf, &len, &cap, deadline) != 1) {
            free(buf);
            th_http_resp_free(r);
            return -1;
        }
    }
    r->body = malloc(want + 1);
    memcpy(r->body, buf + body_at, want);
    r->body[want] = '\0';
    r->body_len = want;
    if (len > body_at + want) {
        carry_len = len - body_at - want;
        carry = malloc(carry_len + 1);
        memcpy(carry, buf + body_at + want, carry_len);
        carry_fd = fd;
    }
    free(buf);
    return 0;
}

int th_http_wait_closed(int fd, int timeout_ms) {
    int64_t deadline = th_now_ms() + timeout_ms;
    char tmp[4096];
    for (;;) {
        if (!wait_fd(fd, POLLIN, deadline)) return 0;
        ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n == 0) return 1;
        if (n < 0 && errno != EAGAIN && errno != EINTR) return 1;
    }
}

int th_http_raw(int port, const void *req, size_t n, th_http_resp_t *r,
                int timeout_ms) {
    memset(r, 0, sizeof(*r));
    r->status = -1;
    int fd = th_http_connect(port);
    if (fd < 0) return -1;
    /* Even a send the server cut short (a 413 before the whole body)
     * may have its answer waiting: read it either way. */
    (void)th_http_send(fd, req, n, timeout_ms);
    int head_only = n >= 5 && !memcmp(req, "HEAD ", 5);
    int rd = th_http_read(fd, r, head_only, timeout_ms);
    close(fd);
    return rd;
}

int th_http_request(int port, const char *method, const char *target,
                    const char *body, th_http_resp_t *r, int timeout_ms) {
    size_t bl = body ? strlen(body) : 0;
    size_t cap = strlen(method) + strlen(target) + bl + 200;
    char *req = malloc(cap);
    if (!req) return -1;
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     method, target, bl, body ? body : "");
    int rc = th_http_raw(port, req, (size_t)n, r, timeout_ms);
    free(req);
    return rc;
}

int th_env_http_port(const th_env_t *e, int timeout_ms) {
    static const char needle[] = "component=http msg=listening ";
    if (th_log_wait_from(e->log, e->log_from, needle, timeout_ms) != 0) return -1;
    char *s = th_read_file(e->log);
    if (!s) return -1;
    int port = -1;
    const char *line = strlen(s) >= (size_t)e->log_from ? strstr(s + e->log_from, needle) : NULL;
    const char *p = line ? strstr(line, " port=") : NULL;
    if (p) port = atoi(p + 6);
    free(s);
    return port > 0 ? port : -1;
}

double th_prom_sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') return atof(p + n + 1);
    return -1;
}

double th_env_metric(const th_env_t *e, const char *series, int timeout_ms) {
    int port = th_env_http_port(e, timeout_ms);
    if (port < 0) return -1;
    th_http_resp_t r = {0};
    double v = -1;
    if (th_http_request(port, "GET", "/metrics", NULL, &r, timeout_ms) == 0 &&
        r.status == 200)
        v = th_prom_sample(r.body, series);
    th_http_resp_free(&r);
    return v;
}

double th_env_wait_metric(const th_env_t *e, const char *series, double min,
                          int timeout_ms) {
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        /* Each scrape gets what is left of the time. */
        int64_t left = deadline - th_now_ms();
        double v = th_env_metric(e, series, left > 1 ? (int)left : 1);
        if (v >= min || th_now_ms() >= deadline) return v;
        th_pause_ms(20);
    }
}
