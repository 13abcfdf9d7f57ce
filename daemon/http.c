/*
 * http.c - churnd's HTTP endpoints on the daemon's own libuv loop:
 *
 *   GET  /metrics        Prometheus text format 0.0.4 (metrics_render)
 *   GET  /healthz        200 "ok": the loop answered, so it is alive
 *   GET  /readyz         200 or 503, JSON naming every readiness check
 *   GET  /rules          the running rule set: names, hash, source, reloads
 *   GET  /clients/{id}   one client's committed state (cstate_format_json)
 *   POST /-/reload       reload rules.dir, as SIGHUP does, and say how it went
 * HEAD is answered for every GET route.
 *
 * Requests are parsed by libhttp-parser, never by hand. Everything is
 * answered from the loop, synchronously, so a handler sees the daemon
 * between two callbacks and never half-way through a batch.
 *
 * Limits, because the port may be reachable by more than its scraper:
 * request line and headers 8 KiB (431), body 4 KiB (413), anything the
 * parser rejects 400; each of these answers and closes. A connection must
 * deliver a whole request within http.request_timeout of connecting or of
 * its previous response, however slowly it trickles bytes, or it is
 * closed (slow-loris). At most http.max_connections are open; the next
 * ones are answered 503 and closed. Keep-alive follows HTTP/1.0 and 1.1
 * rules (http_should_keep_alive); pipelined requests are answered one at a
 * time, in order: reading pauses while a response is written, so a client
 * that does not read its responses holds one response's memory, no more.
 * A response that ends the connection is followed by a lingering close
 * (shutdown, then what the client still sends is read and dropped), so
 * the kernel does not reset the connection before the client read it.
 *
 * Ownership: the server struct and each connection are heap objects whose
 * memory is released only in their handles' close callbacks (libuv's
 * rule); the server goes once its last handle has closed.
 */
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <http_parser.h>

#include "churnd/log.h"
#include "churnd/timeutil.h"
#include "internal.h"

#define HTTP_HEAD_MAX (8 * 1024) /* request line and headers */
#define HTTP_BODY_MAX (4 * 1024)
#define HTTP_RBUF 8192
#define HTTP_LINGER_MS 2000      /* a closing connection's last reads */
#define HTTP_BACKLOG 511
#define HTTP_KEEP_OUT_CAP (256 * 1024) /* larger response buffers are freed */

typedef enum conn_state {
    C_READ,    /* parsing a request */
    C_BUSY,    /* a response is being written; reading paused */
    C_DISCARD, /* the last response: what arrives now is dropped */
    C_CLOSING, /* uv_close was called */
} conn_state_t;

typedef struct http_conn http_conn_t;

typedef struct http_server {
    daemon_t *d;             /* borrowed; NULL once stopping */
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t tick;         /* deadlines and the stall sample */
    int listener_open, tick_open;
    http_parser_settings settings;
    http_conn_t *conns;      /* every open connection, doubly linked */
    size_t n_conns;
    size_t n_handles;        /* open handles: the server goes at 0 */
    int stopping;
    uint64_t timeout_ms;     /* http.request_timeout */
    size_t max_conns;        /* http.max_connections */
    buf_t body;              /* scratch: the response body being built */
    /* /readyz's progress check: since when (loop time) has the daemon
     * been awaiting acknowledgements without a commit? */
    int awaiting;
    uint64_t awaiting_since;
    uint64_t seen_batches;
} http_server_t;

struct http_conn {
    uv_tcp_t tcp;
    http_server_t *srv;
    http_conn_t *prev, *next;
    http_parser parser;
    conn_state_t state;
    int reading;
    int keep_alive;          /* after the response in hand */
    int status;              /* set by a callback that rejects the request */
    int is_head;
    int writing;             /* a uv_write is in flight */
    int eof;                 /* the client finished sending */
    uint64_t deadline;       /* loop time: closed when passed */
    char url[HTTP_HEAD_MAX + 1];
    size_t url_len;
    size_t body_len;
    buf_t out;               /* the response being written */
    uv_write_t wr;
    uv_shutdown_t shut;
    char rbuf[HTTP_RBUF];
    char pending[HTTP_RBUF]; /* bytes read past a complete request */
    size_t n_pending;
};

/* ---- lifecycle -------------------------------------------------------- */

static void server_release(http_server_t *srv) {
    if (srv->n_handles > 0) srv->n_handles--;
    if (srv->stopping && srv->n_handles == 0) {
        buf_free(&srv->body);
        free(srv);
    }
}

static void on_server_handle_closed(uv_handle_t *h) { server_release(h->data); }

static void on_conn_closed(uv_handle_t *h) {
    http_conn_t *c = h->data;
    http_server_t *srv = c->srv;
    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    buf_free(&c->out);
    free(c);
    server_release(srv);
}

static void conn_close(http_conn_t *c) {
    if (c->state == C_CLOSING) return;
    c->state = C_CLOSING;
    /* The slot is free now, not at the close callback: the peer sees
     * the socket closed at once, and a connection it opens next may be
     * accepted in this same loop turn, before closing handles are
     * reaped. */
    c->srv->n_conns--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)suggested;
    http_conn_t *c = h->data;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void set_reading(http_conn_t *c, int on) {
    if (c->state == C_CLOSING || c->reading == on) return;
    int rc = on ? uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)
                : uv_read_stop((uv_stream_t *)&c->tcp);
    if (rc != 0) {
        conn_close(c);
        return;
    }
    c->reading = on;
}

/* ---- responses -------------------------------------------------------- */

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_JSON "application/json"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"

static void on_written(uv_write_t *req, int status);

/* Send one response; extra is more header lines ("Allow: GET\r\n") or
 * NULL. After it the connection is kept (keep_alive) or closed. */
static void respond(http_conn_t *c, int status, const char *ctype,
                    const void *body, size_t len, const char *extra) {
    if (c->state == C_CLOSING) return;
    buf_reset(&c->out);
    int rc = buf_printf(&c->out,
                        "HTTP/1.1 %d %s\r\n"
                        "Content-Type: %s\r\n"
                        "Content-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n"
                        "Connection: %s\r\n"
                        "%s\r\n",
                        status, reason(status), ctype, len,
                        c->keep_alive ? "keep-alive" : "close",
                        extra ? extra : "");
    if (!rc && !c->is_head && len) rc = buf_append(&c->out, body, len);
    if (rc) {
        conn_close(c);
        return;
    }
    /* A closing response lets reading go on (into the void) so the
     * client's remaining bytes do not turn the close into a reset. */
    c->state = c->keep_alive ? C_BUSY : C_DISCARD;
    uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        conn_close(c);
    else
        c->writing = 1;
}

static void respond_buf(http_conn_t *c, int status, const char *ctype,
                        const buf_t *b, const char *extra) {
    respond(c, status, ctype, b->data, b->len, extra);
}

/* {"error": msg} and close: for requests that could not be parsed. */
static void fail(http_conn_t *c, int status, const char *msg) {
    http_server_t *srv = c->srv;
    c->keep_alive = 0;
    buf_reset(&srv->body);
    int rc = buf_printf(&srv->body, "{\"error\": ");
    if (!rc) rc = buf_put_json_str(&srv->body, msg, strlen(msg));
    if (!rc) rc = buf_printf(&srv->body, "}\n");
    if (rc) {
        conn_close(c);
        return;
    }
    LOG(LOG_DEBUG, "http", "request rejected", LF_INT("status", status),
        LF_STR("error", msg));
    respond_buf(c, status, CT_JSON, &srv->body, NULL);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    http_conn_t *c = req->data;
    if (c->state == C_CLOSING) return;
    if (status < 0) conn_close(c);
    /* else: wait for the client's end of file (or the deadline) */
}

static void feed(http_conn_t *c, const char *data, size_t len);

static void on_written(uv_write_t *req, int status) {
    http_conn_t *c = req->data;
    if (c->state == C_CLOSING) return;
    http_server_t *srv = c->srv;
    c->writing = 0;
    c->is_head = 0;
    if (status < 0 || srv->stopping || c->eof) {
        conn_close(c); /* after an end of file: the response went out first */
        return;
    }
    if (c->out.cap > HTTP_KEEP_OUT_CAP) buf_free(&c->out);
    else buf_reset(&c->out);
    uint64_t now = uv_now(srv->loop);
    if (!c->keep_alive) {
        c->state = C_DISCARD;
        c->deadline = now + (srv->timeout_ms < HTTP_LINGER_MS ? srv->timeout_ms
                                                              : HTTP_LINGER_MS);
        c->shut.data = c;
        if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
            conn_close(c);
            return;
        }
        set_reading(c, 1);
        return;
    }
    /* Keep-alive: the next request has a full timeout of its own. */
    c->state = C_READ;
    c->deadline = now + srv->timeout_ms;
    http_parser_pause(&c->parser, 0);
    if (c->n_pending > 0) {
        size_t n = c->n_pending;
        c->n_pending = 0;
        feed(c, c->pending, n);
    }
    if (c->state == C_READ || c->state == C_DISCARD) set_reading(c, 1);
}

/* ---- JSON helpers ----------------------------------------------------- */

static int jstr(buf_t *b, const char *s) {
    return s ? buf_put_json_str(b, s, strlen(s)) : buf_printf(b, "null");
}

static int jtime(buf_t *b, int64_t ms) {
    if (ms <= 0) return buf_printf(b, "null");
    char t[TIME_RFC3339_MAX];
    time_format_rfc3339(ms, t, sizeof(t));
    return buf_printf(b, "\"%s\"", t);
}

/* ---- /readyz ---------------------------------------------------------- */

/* Called on every tick and before /readyz answers: notes when the daemon
 * started awaiting acknowledgements without committing since. */
static void sample_progress(http_server_t *srv) {
    daemon_t *d = srv->d;
    if (!d) return;
    uint64_t now = uv_now(srv->loop);
    if (d->phase != PHASE_AWAITING) {
        srv->awaiting = 0;
    } else if (!srv->awaiting || d->stats.n_batches != srv->seen_batches) {
        srv->awaiting = 1;
        srv->awaiting_since = now;
    }
    srv->seen_batches = d->stats.n_batches;
}

typedef struct ready_check {
    const char *name;
    int ok;
    char detail[200];
} ready_check_t;

/* Ready: rules loaded, state open, partitions assigned, batches still
 * committing (none has awaited its acknowledgements for longer than
 * http.stall_timeout), and not draining. The body names every check, so
 * a 503 says what is missing. */
static void route_readyz(http_conn_t *c) {
    http_server_t *srv = c->srv;
    daemon_t *d = srv->d;
    ready_check_t v[5];
    memset(v, 0, sizeof(v));
    sample_progress(srv);

    v[0].name = "rules";
    v[0].ok = d->rules != NULL;
    if (v[0].ok)
        snprintf(v[0].detail, sizeof(v[0].detail), "%zu rules, hash %s",
                 ruleset_n_rules(d->rules), ruleset_hash(d->rules));
    else
        snprintf(v[0].detail, sizeof(v[0].detail), "no rule set loaded yet");

    v[1].name = "state";
    v[1].ok = d->store != NULL;
    snprintf(v[1].detail, sizeof(v[1].detail), "%s",
             v[1].ok ? "the state directory is open"
                     : "the state directory is not open");

    int n_parts = d->assigned ? d->assigned->cnt : 0;
    v[2].name = "partitions";
    v[2].ok = n_parts > 0;
    if (v[2].ok)
        snprintf(v[2].detail, sizeof(v[2].detail),
                 "%d topic partitions assigned", n_parts);
    else
        snprintf(v[2].detail, sizeof(v[2].detail),
                 "no partitions assigned yet (joining the consumer group)");

    uint64_t waited = srv->awaiting ? uv_now(srv->loop) - srv->awaiting_since : 0;
    int64_t limit = d->cfg->http_stall_ms;
    v[3].name = "progress";
    v[3].ok = !(srv->awaiting && limit > 0 && waited >= (uint64_t)limit);
    if (srv->awaiting)
        snprintf(v[3].detail, sizeof(v[3].detail),
                 "a batch has waited %" PRIu64 " ms for %" PRIu64
                 " acknowledgements (http.stall_timeout: %" PRId64 " ms)",
                 waited, d->inflight, limit);
    else
        snprintf(v[3].detail, sizeof(v[3].detail),
                 "no batch is waiting for acknowledgements");

    v[4].name = "running";
    v[4].ok = !d->stopping && !d->close_scheduled;
    snprintf(v[4].detail, sizeof(v[4].detail), "%s",
             v[4].ok ? "not draining" : "draining: shutting down");

    int ready = 1;
    for (size_t i = 0; i < CHURN_ARRAY_LEN(v); i++) ready &= v[i].ok;
    buf_t *b = &srv->body;
    buf_reset(b);
    int rc = buf_printf(b, "{\"ready\": %s, \"failed\": [", ready ? "true" : "false");
    int n_failed = 0;
    for (size_t i = 0; !rc && i < CHURN_ARRAY_LEN(v); i++) {
        if (v[i].ok) continue;
        rc = buf_printf(b, "%s", n_failed++ ? ", " : "");
        if (!rc) rc = jstr(b, v[i].name);
    }
    if (!rc) rc = buf_printf(b, "], \"checks\": {");
    for (size_t i = 0; !rc && i < CHURN_ARRAY_LEN(v); i++) {
        rc = buf_printf(b, "%s\"%s\": {\"ok\": %s, \"detail\": ", i ? ", " : "",
                        v[i].name, v[i].ok ? "true" : "false");
        if (!rc) rc = jstr(b, v[i].detail);
        if (!rc) rc = buf_putc(b, '}');
    }
    if (!rc) rc = buf_printf(b, "}}\n");
    if (rc) {
        fail(c, 500, "out of memory");
        return;
    }
    respond_buf(c, ready ? 200 : 503, CT_JSON, b, NULL);
}

/* ---- /rules ----------------------------------------------------------- */

static void route_rules(http_conn_t *c) {
    http_server_t *srv = c->srv;
    daemon_t *d = srv->d;
    buf_t *b = &srv->body;
    buf_reset(b);
    const ruleset_t *rs = d->rules;
    int rc = buf_printf(b, "{\"dir\": ");
    if (!rc) rc = jstr(b, d->cfg->rules_dir);
    if (!rc) rc = buf_printf(b, ", \"hash\": ");
    if (!rc) rc = jstr(b, rs ? ruleset_hash(rs) : NULL);
    if (!rc) rc = buf_printf(b, ", \"summary\": ");
    if (!rc) rc = jstr(b, rs ? ruleset_summary(rs) : NULL);
    if (!rc) rc = buf_printf(b, ", \"loaded_at\": ");
    if (!rc) rc = jtime(b, rs ? d->rules_loaded_ms : 0);
    if (!rc)
        rc = buf_printf(b, ", \"n_rules\": %zu, \"n_features\": %zu, \"rules\": [",
                        rs ? ruleset_n_rules(rs) : 0,
                        rs ? ruleset_n_features(rs) : 0);
    for (size_t i = 0; rs && !rc && i < ruleset_n_rules(rs); i++) {
        rc = buf_printf(b, "%s", i ? ", " : "");
        if (!rc) rc = jstr(b, ruleset_rule_name(rs, i));
    }
    if (!rc)
        rc = buf_printf(b, "], \"reloads\": {\"ok\": %" PRIu64 ", \"failed\": %" PRIu64
                           "}, \"last_reload\": ",
                        d->stats.n_reloads_ok, d->stats.n_reloads_failed);
    if (!rc && d->reload_at_ms == 0) {
        rc = buf_printf(b, "null");
    } else if (!rc) {
        rc = buf_printf(b, "{\"at\": ");
        if (!rc) rc = jtime(b, d->reload_at_ms);
        if (!rc)
            rc = buf_printf(b, ", \"ok\": %s, \"errors\": [",
                            d->reload_errs.n ? "false" : "true");
        char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
        for (size_t i = 0; !rc && i < d->reload_errs.n; i++) {
            rc = buf_printf(b, "%s", i ? ", " : "");
            if (!rc)
                rc = jstr(b, churn_err_str(&d->reload_errs.v[i], line, sizeof(line)));
        }
        if (!rc) rc = buf_printf(b, "]}");
    }
    if (!rc) rc = buf_printf(b, ", \"pending\": ");
    if (!rc && !d->rules_next) {
        rc = buf_printf(b, "null");
    } else if (!rc) {
        rc = buf_printf(b, "{\"hash\": ");
        if (!rc) rc = jstr(b, ruleset_hash(d->rules_next));
        if (!rc) rc = buf_printf(b, ", \"loaded_at\": ");
        if (!rc) rc = jtime(b, d->rules_next_loaded_ms);
        if (!rc) rc = buf_putc(b, '}');
    }
    if (!rc) rc = buf_printf(b, "}\n");
    if (rc) {
        fail(c, 500, "out of memory");
        return;
    }
    respond_buf(c, 200, CT_JSON, b, NULL);
}

/* ---- POST /-/reload --------------------------------------------------- */

/* The reload itself is synchronous (the same path as SIGHUP), so the
 * answer is its outcome: 200 when the new set runs, 202 when it is valid
 * and takes over once the batch being acknowledged commits, 500 with every
 * error when it was rejected (as Prometheus's /-/reload answers a bad
 * config), 503 while draining. */
static void route_reload(http_conn_t *c) {
    http_server_t *srv = c->srv;
    daemon_t *d = srv->d;
    buf_t *b = &srv->body;
    if (d->stopping || d->close_scheduled) {
        fail(c, 503, "draining: rules are not reloaded any more");
        return;
    }
    int r = daemon_reload_rules(d);
    buf_reset(b);
    int rc, status;
    if (r >= 0) {
        const ruleset_t *rs = r == 1 ? d->rules_next : d->rules;
        status = r == 1 ? 202 : 200;
        rc = buf_printf(b, "{\"status\": \"ok\", \"active\": %s, \"hash\": ",
                        r == 1 ? "false" : "true");
        if (!rc) rc = jstr(b, ruleset_hash(rs));
        if (!rc) rc = buf_printf(b, ", \"n_rules\": %zu, \"detail\": ",
                                 ruleset_n_rules(rs));
        if (!rc)
            rc = jstr(b, r == 1 ? "valid; takes over when the batch being "
                                  "acknowledged commits"
                                : "the new rule set is running");
        if (!rc) rc = buf_printf(b, "}\n");
    } else {
        status = 500;
        rc = buf_printf(b, "{\"status\": \"failed\", \"hash\": ");
        if (!rc) rc = jstr(b, d->rules ? ruleset_hash(d->rules) : NULL);
        if (!rc)
            rc = buf_printf(b, ", \"detail\": \"rejected; the previous rule set "
                               "keeps running\", \"errors\": [");
        char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
        for (size_t i = 0; !rc && i < d->reload_errs.n; i++) {
            rc = buf_printf(b, "%s", i ? ", " : "");
            if (!rc)
                rc = jstr(b, churn_err_str(&d->reload_errs.v[i], line, sizeof(line)));
        }
        if (!rc) rc = buf_printf(b, "]}\n");
    }
    if (rc) {
        fail(c, 500, "out of memory");
        return;
    }
    respond_buf(c, status, CT_JSON, b, NULL);
}

/* ---- /clients/{id} ---------------------------------------------------- */

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decoding of a path segment ('+' is a plus in a path). out holds
 * at least n bytes. -1 on a malformed escape or an encoded NUL. */
static int url_decode(const char *s, size_t n, char *out, size_t *out_n) {
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[j++] = s[i];
            continue;
        }
        if (i + 2 >= n) return -1;
        int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
        out[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    *out_n = j;
    return 0;
}

/* Well-formed UTF-8 (client ids are: events that are not never reach
 * state), without overlongs or surrogates. */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; }
        else return 0;
        if (i + k >= n) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int client_error(http_conn_t *c, int status, const char *msg,
                        const char *id, size_t id_len) {
    buf_t *b = &c->srv->body;
    buf_reset(b);
    int rc = buf_printf(b, "{\"error\": ");
    if (!rc) rc = jstr(b, msg);
    if (!rc && id) {
        rc = buf_printf(b, ", \"client_id\": ");
        if (!rc) rc = buf_put_json_str(b, id, id_len);
    }
    if (!rc) rc = buf_printf(b, "}\n");
    if (rc) return rc;
    respond_buf(c, status, CT_JSON, b, NULL);
    return 0;
}

/* The client's committed record: state is keyed by (input partition,
 * client), so each assigned partition number is tried (co-partitioned
 * topics share one). What a batch being evaluated has changed shows once
 * it commits. */
static void route_client(http_conn_t *c, const char *enc, size_t enc_len) {
    http_server_t *srv = c->srv;
    daemon_t *d = srv->d;
    char id[HTTP_HEAD_MAX + 1];
    size_t id_len = 0;
    if (url_decode(enc, enc_len, id, &id_len) != 0) {
        if (client_error(c, 400, "malformed percent-escape in the client id",
                         NULL, 0))
            fail(c, 500, "out of memory");
        return;
    }
    int rc = 0;
    if (id_len == 0)
        rc = client_error(c, 400, "empty client id", NULL, 0);
    else if (!utf8_valid((const unsigned char *)id, id_len))
        rc = client_error(c, 400, "the client id is not UTF-8", NULL, 0);
    else if (!d->store || !d->assigned || d->assigned->cnt == 0)
        rc = client_error(c, 503, "no partitions assigned yet: client state "
                                  "is not served", id, id_len);
    else
        rc = 1;
    if (rc != 1) {
        if (rc) fail(c, 500, "out of memory");
        return;
    }
    buf_t val;
    buf_init(&val);
    churn_err_t err = {0};
    int found = 0, failed = 0;
    for (int i = 0; i < d->assigned->cnt && !found && !failed; i++) {
        int32_t part = d->assigned->elems[i].partition;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = d->assigned->elems[j].partition == part;
        if (seen || part < 0) continue;
        int r = store_get_client(d->store, (uint32_t)part, id, id_len, &val, &err);
        if (r == 0) found = 1;
        else if (r != CHURN_ENOTFOUND) failed = 1;
    }
    cstate_t *st = NULL;
    if (found && cstate_decode(val.data, val.len, id, id_len, &st, &err) != 0)
        failed = 1;
    buf_free(&val);
    if (failed) {
        LOG(LOG_ERROR, "http", "reading a client's state failed",
            LF_STR("error", err.msg));
        if (client_error(c, 500, err.msg, id, id_len)) fail(c, 500, "out of memory");
        cstate_free(st);
        return;
    }
    if (!found) {
        if (client_error(c, 404, "unknown client", id, id_len))
            fail(c, 500, "out of memory");
        return;
    }
    buf_t *b = &srv->body;
    buf_reset(b);
    rc = cstate_format_json(st, d->rules, b);
    if (!rc) rc = buf_putc(b, '\n');
    cstate_free(st);
    if (rc) {
        fail(c, 500, "out of memory");
        return;
    }
    respond_buf(c, 200, CT_JSON, b, NULL);
}

/* ---- routing ---------------------------------------------------------- */

static void route_metrics(http_conn_t *c) {
    buf_t *b = &c->srv->body;
    buf_reset(b);
    if (metrics_render(c->srv->d, b) != 0) {
        fail(c, 500, "out of memory");
        return;
    }
    respond_buf(c, 200, CT_PROM, b, NULL);
}

static void route_healthz(http_conn_t *c) {
    respond(c, 200, CT_TEXT, "ok\n", 3, NULL);
}

static void handle_request(http_conn_t *c) {
    http_server_t *srv = c->srv;
    int method = c->parser.method;
    c->keep_alive = http_should_keep_alive(&c->parser) && !c->parser.upgrade &&
                    !srv->stopping;
    c->is_head = method == HTTP_HEAD;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url, c->url_len, method == HTTP_CONNECT, &u) ||
        !(u.field_set & (1 << UF_PATH))) {
        fail(c, 400, "malformed request target");
        return;
    }
    const char *path = c->url + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    int is_get = method == HTTP_GET || method == HTTP_HEAD;
    static const char prefix[] = "/clients/";
    size_t pre = sizeof(prefix) - 1;
    LOG(LOG_DEBUG, "http", "request", LF_STR("method", http_method_str(method)),
        LF_STR("target", c->url));

#define IS(p) (plen == sizeof(p) - 1 && !memcmp(path, p, plen))
    if (IS("/-/reload")) {
        if (method != HTTP_POST) {
            buf_t *b = &srv->body;
            buf_reset(b);
            if (buf_printf(b, "{\"error\": \"method not allowed: use POST\"}\n")) {
                fail(c, 500, "out of memory");
                return;
            }
            respond_buf(c, 405, CT_JSON, b, "Allow: POST\r\n");
            return;
        }
        route_reload(c);
        return;
    }
    int known = IS("/metrics") || IS("/healthz") || IS("/readyz") ||
                IS("/rules") || (plen > pre && !memcmp(path, prefix, pre)) ||
                (plen == pre && !memcmp(path, prefix, pre));
#undef IS
    if (!known) {
        if (client_error(c, 404, "no such endpoint", NULL, 0))
            fail(c, 500, "out of memory");
        return;
    }
    if (!is_get) {
        buf_t *b = &srv->body;
        buf_reset(b);
        if (buf_printf(b, "{\"error\": \"method not allowed: use GET or HEAD\"}\n")) {
            fail(c, 500, "out of memory");
            return;
        }
        respond_buf(c, 405, CT_JSON, b, "Allow: GET, HEAD\r\n");
        return;
    }
    if (plen == 8 && !memcmp(path, "/metrics", 8)) route_metrics(c);
    else if (plen == 8 && !memcmp(path, "/healthz", 8)) route_healthz(c);
    else if (plen == 7 && !memcmp(path, "/readyz", 7)) route_readyz(c);
    else if (plen == 6 && !memcmp(path, "/rules", 6)) route_rules(c);
    else route_client(c, path + pre, plen - pre);
}

/* ---- parsing ---------------------------------------------------------- */

static int on_message_begin(http_parser *p) {
    http_conn_t *c = p->data;
    c->url_len = 0;
    c->body_len = 0;
    c->status = 0;
    c->is_head = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    http_conn_t *c = p->data;
    if (len > HTTP_HEAD_MAX - c->url_len) {
        c->status = 414;
        return -1;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p) {
    http_conn_t *c = p->data;
    /* content_length is ULLONG_MAX when the request has none */
    if (p->content_length != ULLONG_MAX && p->content_length > HTTP_BODY_MAX) {
        c->status = 413;
        return -1; /* 1 and 2 mean "no body" to the parser: not those */
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    (void)at;
    http_conn_t *c = p->data;
    c->body_len += len;
    if (c->body_len > HTTP_BODY_MAX) { /* chunked bodies end up here */
        c->status = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p) {
    /* One request at a time: the parser stops right after it, the rest
     * waits in pending until its response is written. */
    http_parser_pause(p, 1);
    return 0;
}

static void feed(http_conn_t *c, const char *data, size_t len) {
    size_t n = http_parser_execute(&c->parser, &c->srv->settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        if (n > len) n = len;
        memmove(c->pending, data + n, len - n);
        c->n_pending = len - n;
        set_reading(c, 0);
        if (c->state == C_CLOSING) return;
        c->state = C_BUSY;
        handle_request(c);
        return;
    }
    if (e == HPE_OK) return; /* wants more */
    switch (c->status ? c->status : e == HPE_HEADER_OVERFLOW ? 431 : 400) {
    case 413: fail(c, 413, "request body larger than 4 KiB"); break;
    case 414: fail(c, 414, "request target larger than 8 KiB"); break;
    case 431: fail(c, 431, "request line and headers larger than 8 KiB"); break;
    default: fail(c, 400, http_errno_description(e)); break;
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    (void)b;
    http_conn_t *c = s->data;
    if (c->state == C_CLOSING) return;
    if (n < 0) { /* end of file or reset */
        if (c->writing) { /* a half-closed client still reads its answer */
            c->eof = 1;
            c->keep_alive = 0;
            set_reading(c, 0);
            return;
        }
        conn_close(c);
        return;
    }
    if (n == 0 || c->state != C_READ) return; /* C_DISCARD drops it */
    feed(c, c->rbuf, (size_t)n);
}

/* ---- accepting -------------------------------------------------------- */

static void on_rejected_closed(uv_handle_t *h) { free(h); }

/* Over http.max_connections: accept (else libuv stops accepting) and
 * answer 503 right away, best effort, then close. */
static void reject(http_server_t *srv) {
    uv_tcp_t *t = malloc(sizeof(*t));
    if (!t) {
        LOG0(LOG_ERROR, "http", "out of memory accepting a connection");
        return;
    }
    uv_tcp_init(srv->loop, t);
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)t) == 0) {
        static const char body[] = "{\"error\": \"too many open HTTP connections\"}\n";
        char msg[256];
        int n = snprintf(msg, sizeof(msg),
                         "HTTP/1.1 503 Service Unavailable\r\n"
                         "Content-Type: " CT_JSON "\r\n"
                         "Content-Length: %zu\r\n"
                         "Connection: close\r\n\r\n%s",
                         sizeof(body) - 1, body);
        uv_buf_t b = uv_buf_init(msg, (unsigned)n);
        (void)uv_try_write((uv_stream_t *)t, &b, 1);
    }
    LOG(LOG_WARN, "http", "connection refused: http.max_connections reached",
        LF_INT("max_connections", srv->max_conns));
    uv_close((uv_handle_t *)t, on_rejected_closed);
}

static void on_connection(uv_stream_t *l, int status) {
    http_server_t *srv = l->data;
    if (status < 0) {
        LOG(LOG_WARN, "http", "accept failed", LF_STR("error", uv_strerror(status)));
        return;
    }
    if (srv->stopping) return;
    http_conn_t *c = NULL;
    if (srv->n_conns >= srv->max_conns || !(c = calloc(1, sizeof(*c)))) {
        reject(srv);
        return;
    }
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    srv->n_handles++;
    srv->n_conns++;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    buf_init(&c->out);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = C_READ;
    c->deadline = uv_now(srv->loop) + srv->timeout_ms;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    set_reading(c, 1);
}

static void on_tick(uv_timer_t *t) {
    http_server_t *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    size_t n_closed = 0;
    for (http_conn_t *c = srv->conns; c; c = c->next) {
        if (c->state == C_CLOSING || now < c->deadline) continue;
        if (c->state == C_READ) n_closed++;
        conn_close(c);
    }
    if (n_closed)
        LOG(LOG_DEBUG, "http", "closed connections that sent no whole request in time",
            LF_INT("connections", n_closed),
            LF_INT("timeout_ms", srv->timeout_ms));
    sample_progress(srv);
}

/* ---- start and stop --------------------------------------------------- */

/* HOST:PORT (HOST a name, an IPv4 address or a bracketed IPv6 one; the
 * config table checked the shape) into a socket address. */
static int resolve(const char *listen, struct sockaddr_storage *ss,
                   churn_err_t *err) {
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen)
        return churn_err_set(err, CHURN_EINVAL, "http.listen: expected HOST:PORT");
    char host[256];
    size_t hl = (size_t)(colon - listen);
    const char *h = listen;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return churn_err_set(err, CHURN_EINVAL, "http.listen: host name too long");
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || !res)
        return churn_err_set(err, CHURN_EINVAL, "http.listen %s: %s", listen,
                             rc ? gai_strerror(rc) : "no address");
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void format_addr(const struct sockaddr_storage *ss, char *out,
                        size_t size, int *port) {
    char ip[64] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        *port = ntohs(a->sin6_port);
        snprintf(out, size, "[%s]:%d", ip, *port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        *port = ntohs(a->sin_port);
        snprintf(out, size, "%s:%d", ip, *port);
    }
}

int http_start(daemon_t *d, churn_err_t *err) {
    http_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    d->http = srv;
    srv->d = d;
    srv->loop = d->loop;
    srv->timeout_ms = (uint64_t)d->cfg->http_timeout_ms;
    srv->max_conns = (size_t)d->cfg->http_max_conns;
    buf_init(&srv->body);
    srv->settings.on_message_begin = on_message_begin;
    srv->settings.on_url = on_url;
    srv->settings.on_headers_complete = on_headers_complete;
    srv->settings.on_body = on_body;
    srv->settings.on_message_complete = on_message_complete;
    /* The parser's own bound on request line plus headers (process-wide
     * in libhttp-parser; churnd parses nothing else with it). */
    http_parser_set_max_header_size(HTTP_HEAD_MAX);

    uv_tcp_init(d->loop, &srv->listener);
    srv->listener.data = srv;
    srv->listener_open = 1;
    srv->n_handles++;
    uv_timer_init(d->loop, &srv->tick);
    srv->tick.data = srv;
    srv->tick_open = 1;
    srv->n_handles++;

    struct sockaddr_storage ss;
    int rc = resolve(d->cfg->http_listen, &ss, err);
    if (rc) return rc;
    int urc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (urc == 0)
        urc = uv_listen((uv_stream_t *)&srv->listener, HTTP_BACKLOG, on_connection);
    if (urc != 0)
        return churn_err_set(err, CHURN_EIO, "%s: %s", d->cfg->http_listen,
                             uv_strerror(urc));
    int len = (int)sizeof(ss);
    char addr[96] = "?";
    int port = 0;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) == 0)
        format_addr(&ss, addr, sizeof(addr), &port);
    uint64_t tick = srv->timeout_ms / 4;
    if (tick < 50) tick = 50;
    if (tick > 1000) tick = 1000;
    uv_timer_start(&srv->tick, on_tick, tick, tick);
    LOG(LOG_INFO, "http", "listening", LF_STR("address", addr), LF_INT("port", port),
        LF_INT("max_connections", srv->max_conns),
        LF_INT("request_timeout_ms", srv->timeout_ms));
    return 0;
}

void http_stop(daemon_t *d) {
    http_server_t *srv = d->http;
    if (!srv) return;
    d->http = NULL;
    srv->d = NULL;
    srv->stopping = 1;
    size_t n = srv->n_handles;
    if (srv->listener_open)
        uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    if (srv->tick_open)
        uv_close((uv_handle_t *)&srv->tick, on_server_handle_closed);
    for (http_conn_t *c = srv->conns; c; c = c->next) conn_close(c);
    if (n == 0) { /* nothing was opened */
        buf_free(&srv->body);
        free(srv);
    }
}
