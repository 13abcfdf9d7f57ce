/*
 * log.c - the one writer of stderr (an adapter: it reads the clock). Each
 * line is formatted whole in memory and handed to one write(2), so lines
 * from different places (the loop, librdkafka's callbacks) never
 * interleave mid-line, which stdio's buffering would not promise.
 *
 * logfmt (default):
 *   ts=2026-11-25T08:00:00.123Z level=info component=kafka msg="partition assigned" topic=crm.events partition=3
 * JSON:
 *   {"ts":"2026-11-25T08:00:00.123Z","level":"info","component":"kafka","msg":"partition assigned","topic":"crm.events","partition":3}
 *
 * Invalid UTF-8 is written as U+FFFD so that every line stays valid JSON
 * (and logfmt readers are not fed broken characters).
 *
 * Rate limit: a token bucket per message key (component + message text),
 * refilled at `burst` lines per second up to `burst`. Text rather than
 * pointer, so that librdkafka's messages, which all arrive in one buffer,
 * are limited one message at a time. A line over budget is dropped and
 * counted; the key's next line that gets through carries suppressed=N.
 * Fatal lines are never dropped.
 *
 * The state below is process-wide on purpose (STYLE rule 7 has one
 * exception): stderr is one per process, and every module must be able to
 * log without threading a logger through pure code that never logs.
 */
#include "churnd/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "churnd/common.h"
#include "log_internal.h"

#define RL_SLOTS 1024 /* message keys tracked at once (direct-mapped) */
#define RL_UNIT 1000  /* one line in milli-tokens: exact integer refill */

typedef struct rl_slot {
    uint64_t key;        /* 0: empty */
    int64_t last_ms;     /* when tokens were last refilled */
    int64_t tokens;      /* milli-tokens, 0 .. burst * RL_UNIT */
    uint64_t suppressed; /* lines dropped since the last one emitted */
    /* What was dropped, copied on the first drop (truncated), for the
     * summary line log_flush_suppressed writes once the flood is over. */
    int level;
    char component[32];
    char msg[128];
} rl_slot_t;

/* Secret values (log_add_secret) never written: replaced in the message
 * and string fields of every line. Owned copies, kept for the process's
 * life. */
#define SECRETS_MAX 32

static atomic_int g_min_level = LOG_INFO;
static atomic_int g_format = LOG_FMT_LOGFMT;
static atomic_uint g_burst = 20;
static _Atomic(log_clock_fn) g_clock; /* NULL: the real clocks */

static pthread_mutex_t g_rl_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_slot_t g_rl[RL_SLOTS];

static pthread_mutex_t g_sec_mu = PTHREAD_MUTEX_INITIALIZER;
static char *g_secrets[SECRETS_MAX];
static atomic_int g_n_secrets;

static const char REDACTED[] = "<redacted>";

static const char *const level_names[] = {"debug", "info", "warn", "error",
                                          "fatal"};

/* ---- setup ------------------------------------------------------------- */

void log_setup(log_level_t min_level, log_format_t fmt) {
    atomic_store(&g_min_level, (int)min_level);
    atomic_store(&g_format, (int)fmt);
}

int log_level_parse(const char *s, log_level_t *out) {
    if (!s) return CHURN_EINVAL;
    for (size_t i = 0; i < CHURN_ARRAY_LEN(level_names); i++) {
        if (!strcasecmp(s, level_names[i])) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    if (!strcasecmp(s, "warning")) {
        *out = LOG_WARN;
        return 0;
    }
    return CHURN_EINVAL;
}

int log_enabled(log_level_t lvl) {
    return (int)lvl >= atomic_load_explicit(&g_min_level, memory_order_relaxed);
}

void log_set_rate_limit(unsigned burst_per_sec) {
    atomic_store(&g_burst, burst_per_sec);
}

void log_set_clock(log_clock_fn fn) { atomic_store(&g_clock, fn); }

void log_reset_rate_limit(void) {
    pthread_mutex_lock(&g_rl_mu);
    memset(g_rl, 0, sizeof(g_rl));
    pthread_mutex_unlock(&g_rl_mu);
}

/* ---- clocks ------------------------------------------------------------ */

static int64_t clock_ms(clockid_t id) {
    log_clock_fn fn = atomic_load(&g_clock);
    if (fn) return fn();
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 2026-11-25T08:00:00.123Z: always with milliseconds, so lines align. */
static int put_ts(buf_t *b, int64_t ms) {
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return buf_printf(b, "%" PRId64, ms);
    return buf_printf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                      tm.tm_min, tm.tm_sec, (int)frac);
}

/* ---- rate limit -------------------------------------------------------- */

static uint64_t msg_key(const char *component, const char *msg) {
    uint64_t h = churn_hash64(component, strlen(component), CHURN_HASH_SEED);
    h = churn_hash64("", 1, h); /* "ab"+"c" and "a"+"bc" differ */
    h = churn_hash64(msg, strlen(msg), h);
    return h ? h : 1;
}

/* 1: emit (with *suppressed lines dropped before it), 0: drop. */
static int rl_admit(uint64_t key, log_level_t lvl, const char *component,
                    const char *msg, uint64_t *suppressed) {
    *suppressed = 0;
    unsigned burst = atomic_load(&g_burst);
    if (burst == 0) return 1;
    int64_t full = (int64_t)burst * RL_UNIT;
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    int ok;
    pthread_mutex_lock(&g_rl_mu);
    rl_slot_t *s = &g_rl[key % RL_SLOTS];
    if (s->key != key) {
        /* A new key, or another key's slot: the evicted key's suppressed
         * count is lost, which only costs the "suppressed=N" of a key that
         * went quiet while 1023 others were logging. */
        s->key = key;
        s->last_ms = now;
        s->tokens = full;
        s->suppressed = 0;
    } else if (now > s->last_ms) {
        int64_t elapsed = now - s->last_ms;
        s->tokens = elapsed >= 1000 ? full : s->tokens + elapsed * (int64_t)burst;
        if (s->tokens > full) s->tokens = full;
        s->last_ms = now;
    } else if (now < s->last_ms) {
        s->last_ms = now; /* a clock that went back: refill from here */
    }
    if (s->tokens >= RL_UNIT) {
        s->tokens -= RL_UNIT;
        *suppressed = s->suppressed;
        s->suppressed = 0;
        ok = 1;
    } else {
        if (s->suppressed++ == 0) {
            s->level = (int)lvl;
            snprintf(s->component, sizeof(s->component), "%s", component);
            snprintf(s->msg, sizeof(s->msg), "%s", msg);
        }
        ok = 0;
    }
    pthread_mutex_unlock(&g_rl_mu);
    return ok;
}

/* ---- formatting -------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when invalid
 * (overlongs, surrogates and code points past U+10FFFF included). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

static const char REPLACEMENT[] = "\xef\xbf\xbd"; /* U+FFFD */

static int utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* A JSON string literal; invalid UTF-8 becomes U+FFFD first (rare). */
static int put_json(buf_t *b, const char *s) {
    size_t n = strlen(s);
    if (utf8_valid(s, n)) return buf_put_json_str(b, s, n);
    buf_t clean;
    buf_init(&clean);
    int rc = 0;
    for (size_t i = 0; !rc && i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        rc = k ? buf_append(&clean, s + i, k) : buf_append(&clean, REPLACEMENT, 3);
        i += k ? k : 1;
    }
    if (!rc) rc = buf_put_json_str(b, (const char *)clean.data, clean.len);
    buf_free(&clean);
    return rc;
}

/* A logfmt value: bare when it can be, else quoted with \" \\ \n \r \t
 * and \u00XX escapes. Empty values are written "" so that they are seen. */
static int put_logfmt(buf_t *b, const char *s) {
    size_t n = strlen(s);
    int quote = n == 0;
    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7f) quote = 1;
    }
    if (!quote && utf8_valid(s, n)) return buf_append(b, s, n);
    static const char hex[] = "0123456789abcdef";
    int rc = quote ? buf_putc(b, '"') : 0;
    for (size_t i = 0; !rc && i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) {
            rc = buf_append(b, REPLACEMENT, 3);
            i++;
            continue;
        }
        if (k > 1) {
            rc = buf_append(b, s + i, k);
        } else if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = buf_append(b, e, 2);
        } else if (c == '\n') {
            rc = buf_append(b, "\\n", 2);
        } else if (c == '\r') {
            rc = buf_append(b, "\\r", 2);
        } else if (c == '\t') {
            rc = buf_append(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, u, 6);
        } else {
            rc = buf_putc(b, c);
        }
        i += k;
    }
    return rc || !quote ? rc : buf_putc(b, '"');
}

/* Field keys come from code; anything unexpected is made safe, not
 * trusted: [A-Za-z0-9_.-], others as '_'. */
static int put_key(buf_t *b, const char *k, int json) {
    if (json) return put_json(b, k);
    if (!*k) return buf_putc(b, '_');
    int rc = 0;
    for (const char *p = k; !rc && *p; p++) {
        unsigned char c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        rc = buf_putc(b, ok ? c : '_');
    }
    return rc;
}

/* Shortest text that reads back as the same double. */
static int put_double(buf_t *b, double d, int json) {
    if (isnan(d)) return buf_printf(b, "%s", json ? "null" : "NaN");
    if (isinf(d)) return buf_printf(b, "%s", json ? "null" : d > 0 ? "+Inf" : "-Inf");
    char tmp[40];
    snprintf(tmp, sizeof(tmp), "%.15g", d);
    if (strtod(tmp, NULL) != d) snprintf(tmp, sizeof(tmp), "%.17g", d);
    return buf_printf(b, "%s", tmp);
}

static int put_pair_start(buf_t *b, const char *key, int json) {
    int rc = buf_putc(b, json ? ',' : ' ');
    if (!rc) rc = put_key(b, key, json);
    if (!rc) rc = buf_putc(b, json ? ':' : '=');
    return rc;
}

static int put_str(buf_t *b, const char *s, int json) {
    return json ? put_json(b, s ? s : "") : put_logfmt(b, s ? s : "");
}

static int format_line(buf_t *b, int json, int64_t ts_ms, log_level_t lvl,
                       const char *component, const char *msg,
                       const log_field_t *fields, size_t n_fields,
                       uint64_t suppressed) {
    int rc = buf_append(b, json ? "{\"ts\":\"" : "ts=", json ? 7 : 3);
    if (!rc) rc = put_ts(b, ts_ms);
    if (!rc && json) rc = buf_putc(b, '"');
    if (!rc) rc = put_pair_start(b, "level", json);
    if (!rc) rc = put_str(b, level_names[lvl], json);
    if (!rc) rc = put_pair_start(b, "component", json);
    if (!rc) rc = put_str(b, component, json);
    if (!rc) rc = put_pair_start(b, "msg", json);
    if (!rc) rc = put_str(b, msg, json);
    for (size_t i = 0; !rc && i < n_fields; i++) {
        const log_field_t *f = &fields[i];
        rc = put_pair_start(b, f->key ? f->key : "", json);
        if (rc) break;
        switch (f->type) {
        case LF_T_STR: rc = put_str(b, f->s, json); break;
        case LF_T_INT: rc = buf_printf(b, "%" PRId64, f->i); break;
        case LF_T_DBL: rc = put_double(b, f->d, json); break;
        case LF_T_BOOL: rc = buf_printf(b, "%s", f->i ? "true" : "false"); break;
        default: rc = put_str(b, "?", json); break;
        }
    }
    if (!rc && suppressed) {
        rc = put_pair_start(b, "suppressed", json);
        if (!rc) rc = buf_printf(b, "%" PRIu64, suppressed);
    }
    if (!rc && json) rc = buf_putc(b, '}');
    if (!rc) rc = buf_putc(b, '\n');
    return rc;
}

/* One write(2) per line; only an interrupted or partial write (a full
 * pipe, a signal) takes another call for the rest. */
static void write_line(const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return; /* stderr is gone: nowhere left to say so */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* ---- secrets ------------------------------------------------------------ */

static void add_secret(const char *value);

/* The whole value, and each piece of a structured one ("k1=v1 k2=v2",
 * "a,b": sasl.oauthbearer.config, for one): librdkafka's errors quote
 * the piece they reject, not the whole. Pieces under 4 bytes are left
 * alone, lest every "id" of every line be hidden. */
void log_add_secret(const char *value) {
    if (!value || !*value) return;
    add_secret(value);
    const char *p = value;
    while (*p) {
        size_t n = strcspn(p, " \t\n,;");
        if (n > 0) {
            const char *eq = memchr(p, '=', n);
            const char *v = eq ? eq + 1 : p;
            size_t vn = n - (size_t)(v - p);
            char piece[1024];
            if (vn >= 4 && vn < sizeof(piece)) {
                memcpy(piece, v, vn);
                piece[vn] = '\0';
                add_secret(piece);
            }
        }
        p += n;
        while (*p && strchr(" \t\n,;", *p)) p++;
    }
}

static void add_secret(const char *value) {
    pthread_mutex_lock(&g_sec_mu);
    int n = atomic_load(&g_n_secrets), known = 0;
    for (int i = 0; i < n && !known; i++) known = !strcmp(g_secrets[i], value);
    if (!known && n < SECRETS_MAX) {
        g_secrets[n] = strdup(value);
        if (g_secrets[n]) atomic_store(&g_n_secrets, n + 1);
    }
    pthread_mutex_unlock(&g_sec_mu);
}

void log_reset_secrets(void) {
    pthread_mutex_lock(&g_sec_mu);
    int n = atomic_load(&g_n_secrets);
    for (int i = 0; i < n; i++) {
        free(g_secrets[i]);
        g_secrets[i] = NULL;
    }
    atomic_store(&g_n_secrets, 0);
    pthread_mutex_unlock(&g_sec_mu);
}

/* Does s hold a secret? Called with g_sec_mu held. */
static int has_secret(const char *s, int n) {
    for (int i = 0; s && i < n; i++)
        if (strstr(s, g_secrets[i])) return 1;
    return 0;
}

/* s with every secret replaced, into out (NUL-terminated); the longest
 * secret wins where two start at one place. g_sec_mu held. */
static int scrub(const char *s, int n, buf_t *out) {
    int rc = 0;
    for (const char *p = s; !rc && *p;) {
        size_t best = 0;
        for (int i = 0; i < n; i++) {
            size_t k = strlen(g_secrets[i]);
            if (k > best && !strncmp(p, g_secrets[i], k)) best = k;
        }
        if (best) {
            rc = buf_append(out, REDACTED, sizeof(REDACTED) - 1);
            p += best;
        } else {
            rc = buf_putc(out, (uint8_t)*p++);
        }
    }
    return rc ? rc : buf_putc(out, '\0');
}

/* ---- emitting ------------------------------------------------------------ */

static void emit(log_level_t lvl, const char *component, const char *msg,
                 const log_field_t *fields, size_t n_fields,
                 uint64_t suppressed) {
    /* A fresh buffer per line: lines are events of note, not per-event
     * traffic, and a local buffer keeps log_emit safe from any thread. */
    buf_t b;
    buf_init(&b);
    int json = atomic_load(&g_format) == LOG_FMT_JSON;
    if (buf_reserve(&b, 256) == 0 &&
        format_line(&b, json, clock_ms(CLOCK_REALTIME), lvl, component, msg,
                    fields, n_fields, suppressed) == 0)
        write_line(b.data, b.len);
    buf_free(&b);
}

/* emit, with the secrets taken out of the message and string fields
 * first (before escaping, so a secret is found whatever the format). */
static void emit_scrubbed(log_level_t lvl, const char *component,
                          const char *msg, const log_field_t *fields,
                          size_t n_fields, uint64_t suppressed) {
    int n = atomic_load(&g_n_secrets);
    if (n == 0) {
        emit(lvl, component, msg, fields, n_fields, suppressed);
        return;
    }
    pthread_mutex_lock(&g_sec_mu);
    int dirty = has_secret(msg, n) || has_secret(component, n);
    for (size_t i = 0; !dirty && i < n_fields; i++)
        dirty = fields[i].type == LF_T_STR && has_secret(fields[i].s, n);
    if (!dirty) {
        pthread_mutex_unlock(&g_sec_mu);
        emit(lvl, component, msg, fields, n_fields, suppressed);
        return;
    }
    /* Rare: a copy of everything that needs it. */
    log_field_t *f = calloc(n_fields ? n_fields : 1, sizeof(*f));
    buf_t *texts = calloc(n_fields + 2, sizeof(*texts));
    int rc = f && texts ? 0 : CHURN_ENOMEM;
    for (size_t i = 0; !rc && i < n_fields + 2; i++) {
        const char *s = i == 0 ? msg : i == 1 ? component : fields[i - 2].s;
        buf_init(&texts[i]);
        if (i >= 2) f[i - 2] = fields[i - 2];
        if (i >= 2 && fields[i - 2].type != LF_T_STR) continue;
        if (!s || !has_secret(s, n)) continue;
        rc = scrub(s, n, &texts[i]);
        if (rc) break;
        if (i == 0) msg = (const char *)texts[i].data;
        else if (i == 1) component = (const char *)texts[i].data;
        else f[i - 2].s = (const char *)texts[i].data;
    }
    pthread_mutex_unlock(&g_sec_mu);
    if (!rc) emit(lvl, component, msg, f, n_fields, suppressed);
    /* out of memory: the line is lost rather than written with a secret */
    for (size_t i = 0; texts && i < n_fields + 2; i++) buf_free(&texts[i]);
    free(texts);
    free(f);
}

void log_emit(log_level_t lvl, const char *component, const char *msg,
              const log_field_t *fields, size_t n_fields) {
    if ((int)lvl < LOG_DEBUG) lvl = LOG_DEBUG;
    if ((int)lvl > LOG_FATAL) lvl = LOG_FATAL;
    if (!log_enabled(lvl)) return;
    if (!component) component = "";
    if (!msg) msg = "";
    uint64_t suppressed = 0;
    if (lvl != LOG_FATAL &&
        !rl_admit(msg_key(component, msg), lvl, component, msg, &suppressed))
        return;
    emit_scrubbed(lvl, component, msg, fields, n_fields, suppressed);
}

/* A summary for every message key with lines dropped and none tried for a
 * second: without it, the count of a flood that stopped would only show
 * on that message's next line, maybe never. Not rate-limited itself (one
 * line per flooding key per quiet second at most). */
void log_flush_suppressed(void) {
    if (atomic_load(&g_burst) == 0) return;
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    for (size_t i = 0; i < RL_SLOTS; i++) {
        rl_slot_t copy;
        pthread_mutex_lock(&g_rl_mu);
        rl_slot_t *s = &g_rl[i];
        int due = s->key && s->suppressed > 0 && now - s->last_ms >= 1000;
        if (due) {
            copy = *s;
            s->suppressed = 0;
        }
        pthread_mutex_unlock(&g_rl_mu);
        if (!due || !log_enabled((log_level_t)copy.level)) continue;
        log_field_t f = LF_STR("message", copy.msg);
        emit_scrubbed((log_level_t)copy.level, copy.component,
                      "repeated lines suppressed", &f, 1, copy.suppressed);
    }
}
