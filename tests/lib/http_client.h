/*
 * http_client.h - a small HTTP/1.1 client over plain sockets for the
 * integration tests: well-formed requests, raw bytes (to feed churnd's
 * server what a browser never would), and a reader of one response at a
 * time. Every call is bounded by a deadline; nothing here sleeps blindly.
 */
#ifndef CHURND_TEST_HTTP_CLIENT_H
#define CHURND_TEST_HTTP_CLIENT_H

#include <stddef.h>

/* harness.h (whose env part sits outside its include guard) is included
 * by the tests themselves; only the env type is needed here. */
struct th_env;

typedef struct th_http_resp {
    int status;      /* -1 when no status line came */
    char *head;      /* status line and headers (malloc'd, NUL-terminated) */
    char *body;      /* malloc'd, NUL-terminated */
    size_t body_len;
} th_http_resp_t;

void th_http_resp_free(th_http_resp_t *r);
/* Value of a response header (case-insensitive name), or NULL; static
 * buffer. */
const char *th_http_header(const th_http_resp_t *r, const char *name);

/* A connection to 127.0.0.1:port (blocking socket), or -1. */
int th_http_connect(int port);
/* Write all n bytes within timeout_ms: 0 or -1. */
int th_http_send(int fd, const void *p, size_t n, int timeout_ms);
/* Read one response (its body by Content-Length; none when head_only, as
 * for HEAD). 0, or -1 when the connection ended or time ran out first. */
int th_http_read(int fd, th_http_resp_t *r, int head_only, int timeout_ms);
/* Did the server close fd within timeout_ms (end of file or reset)?
 * Bytes that arrive meanwhile are dropped. 1 closed, 0 still open. */
int th_http_wait_closed(int fd, int timeout_ms);

/* One request on a fresh connection ("Connection: close"); body may be
 * NULL. 0 or -1. */
int th_http_request(int port, const char *method, const char *target,
                    const char *body, th_http_resp_t *r, int timeout_ms);
/* Raw bytes on a fresh connection, then one response. 0 or -1. */
int th_http_raw(int port, const void *req, size_t n, th_http_resp_t *r,
                int timeout_ms);

/* The port the env's daemon logged ("component=http msg=listening ...
 * port=N"), waiting for the line; -1 on timeout. */
int th_env_http_port(const struct th_env *e, int timeout_ms);

/* The value of one sample ("name" or "name{labels}", exactly as exposed)
 * of a Prometheus text scrape, or -1 when it has none. */
double th_prom_sample(const char *text, const char *series);
/* The same from the env's daemon's /metrics, or -1 (no port, no answer or
 * no such sample within timeout_ms). */
double th_env_metric(const struct th_env *e, const char *series, int timeout_ms);
/* Scrape until series reaches at least min, for up to timeout_ms; the last
 * value read (below min, or -1, when the time ran out). */
double th_env_wait_metric(const struct th_env *e, const char *series, double min,
                          int timeout_ms);

#endif
