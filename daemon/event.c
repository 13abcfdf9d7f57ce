/*
 * event.c - the input envelope: one Kafka message's bytes into an event_t,
 * or the precise reason why not (the message then goes to the dead-letter
 * topic with that reason and the detail sentence).
 *
 * Pure: no I/O, no clock, no globals of our own. The payload is a (ptr, len)
 * slice from librdkafka, never NUL-terminated and possibly NULL when empty;
 * nothing here reads past len. cJSON 1.7's ParseWithLengthOpts honours the
 * length, so no scratch copy is made; trailing bytes are checked here through
 * the end pointer it returns (its own require_null_terminated would demand a
 * NUL inside len, which a Kafka payload does not have).
 *
 * The checks run cheapest and most dangerous first: size, UTF-8, nesting
 * depth (a linear pre-scan, so cJSON never recurses on hostile input), then
 * the parse and the envelope fields. The pre-scan also rejects what cJSON
 * would accept or silently mangle: raw control characters (JSON forbids them
 * in strings and cJSON's whitespace skipper swallows them between tokens)
 * and "\u0000" escapes (cJSON cuts the string there, so "A\u0000B" would
 * become client "A").
 *
 * Allocation: each message's cJSON tree lives in one arena of its own
 * (struct event_arena below), sized from the pre-scan's counts, so a parse costs
 * one malloc and event_clear one free instead of one of each per node and
 * string. In a daemon holding a large state the node-by-node allocations
 * were the slowest part of parsing: malloc searched a fragmented heap for
 * each of them. cJSON takes its allocator only through process-wide hooks,
 * so the hooks are installed once (pthread_once) and send an allocation to
 * the arena only while this thread is inside event_parse; everywhere else,
 * and on every other thread, they are plain malloc and free.
 */
#include "churnd/event.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/timeutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define EVENT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVENT_ASAN 1
#endif
#endif
#ifdef EVENT_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* How much of an offending value the detail sentence quotes. */
#define DETAIL_VALUE_MAX 60

static const char *const reason_names[EVENT__N] = {
    [EVENT_OK] = "ok",
    [EVENT_TOO_LARGE] = "too_large",
    [EVENT_NOT_UTF8] = "not_utf8",
    [EVENT_NOT_JSON] = "not_json",
    [EVENT_TOO_DEEP] = "too_deep",
    [EVENT_NOT_OBJECT] = "not_object",
    [EVENT_NO_CLIENT] = "no_client",
    [EVENT_NO_TYPE] = "no_type",
    [EVENT_NO_TIME] = "no_time",
    [EVENT_BAD_TIME] = "bad_time",
    [EVENT_BAD_ID] = "bad_id",
};

const char *event_reason_name(event_reason_t r) {
    if ((unsigned)r >= EVENT__N) return "unknown";
    return reason_names[r];
}

/* ---- config --------------------------------------------------------- */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* A path is one or more non-empty segments separated by single dots. */
static int path_valid(const char *s) {
    if (!s || !*s || *s == '.') return 0;
    for (const char *p = s; *p; p++)
        if (*p == '.' && (p[1] == '.' || p[1] == '\0')) return 0;
    return 1;
}

int event_config_init(event_config_t *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_bytes = 1024 * 1024;
    cfg->max_depth = 32;
    cfg->id_path = dup_str("id");
    cfg->client_path = dup_str("client_id");
    cfg->type_path = dup_str("type");
    cfg->ts_path = dup_str("ts");
    if (!cfg->id_path || !cfg->client_path || !cfg->type_path ||
        !cfg->ts_path) {
        event_config_free(cfg);
        return CHURN_ENOMEM;
    }
    return 0;
}

void event_config_free(event_config_t *cfg) {
    if (!cfg) return;
    free(cfg->id_path);
    free(cfg->client_path);
    free(cfg->type_path);
    free(cfg->ts_path);
    for (size_t i = 0; i < cfg->n_type_map; i++) {
        free(cfg->type_map[i].from);
        free(cfg->type_map[i].to);
    }
    free(cfg->type_map);
    memset(cfg, 0, sizeof(*cfg));
}

int event_config_set_path(char **slot, const char *s) {
    if (!path_valid(s)) return CHURN_EINVAL;
    char *p = dup_str(s);
    if (!p) return CHURN_ENOMEM;
    free(*slot);
    *slot = p;
    return 0;
}

int event_config_add_type(event_config_t *cfg, const char *from,
                          const char *to) {
    if (!from || !*from || !to || !*to) return CHURN_EINVAL;
    /* The same upstream name mapped twice is a config mistake, not a
     * last-one-wins override. */
    for (size_t i = 0; i < cfg->n_type_map; i++)
        if (strcmp(cfg->type_map[i].from, from) == 0) return CHURN_EINVAL;
    if (cfg->n_type_map >= SIZE_MAX / sizeof(*cfg->type_map) - 1)
        return CHURN_ENOMEM;
    event_type_map_entry_t *v =
        realloc(cfg->type_map, (cfg->n_type_map + 1) * sizeof(*v));
    if (!v) return CHURN_ENOMEM;
    cfg->type_map = v;
    char *f = dup_str(from), *t = dup_str(to);
    if (!f || !t) {
        free(f);
        free(t);
        return CHURN_ENOMEM;
    }
    v[cfg->n_type_map].from = f;
    v[cfg->n_type_map].to = t;
    cfg->n_type_map++;
    return 0;
}

/* ---- paths ---------------------------------------------------------- */

/* Walks the dotted path without copying segments: a segment matches a key
 * of the same length and bytes, first match wins, exactly as
 * cJSON_GetObjectItemCaseSensitive (used by event_path_segs) does. */
const cJSON *event_path(const cJSON *root, const char *path) {
    if (!root || !path || !*path) return NULL;
    const cJSON *cur = root;
    const char *seg = path;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        if (n == 0 || !cJSON_IsObject(cur)) return NULL;
        const cJSON *found = NULL;
        for (const cJSON *c = cur->child; c; c = c->next) {
            if (c->string && strncmp(c->string, seg, n) == 0 &&
                c->string[n] == '\0') {
                found = c;
                break;
            }
        }
        if (!found) return NULL;
        cur = found;
        if (!dot) return cur;
        seg = dot + 1;
    }
}

const cJSON *event_path_segs(const cJSON *root, const char *const *segs,
                             size_t n_segs) {
    if (!root || (n_segs && !segs)) return NULL;
    const cJSON *cur = root;
    for (size_t i = 0; i < n_segs; i++) {
        if (!segs[i] || !cJSON_IsObject(cur)) return NULL;
        cur = cJSON_GetObjectItemCaseSensitive(cur, segs[i]);
        if (!cur) return NULL;
    }
    return cur;
}

/* ---- details -------------------------------------------------------- */

static void detail_fmt(char *detail, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void detail_fmt(char *detail, size_t size, const char *fmt, ...) {
    if (!detail || size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, size, fmt, ap);
    va_end(ap);
}

/* A short, printable rendering of an offending value: strings quoted,
 * escaped and cut at DETAIL_VALUE_MAX bytes on a UTF-8 boundary; numbers
 * in their shortest exact form; containers by kind (never printed: the dead
 * letter carries the original bytes anyway). */
static void value_text(const cJSON *v, char *out, size_t size) {
    if (cJSON_IsString(v) && v->valuestring) {
        const unsigned char *s = (const unsigned char *)v->valuestring;
        size_t n = strlen(v->valuestring), cut = n;
        if (cut > DETAIL_VALUE_MAX) {
            cut = DETAIL_VALUE_MAX;
            while (cut > 0 && (s[cut] & 0xC0) == 0x80) cut--;
        }
        size_t o = 0;
        out[o++] = '"';
        for (size_t i = 0; i < cut && o + 8 < size; i++) {
            unsigned char c = s[i];
            if (c == '"' || c == '\\') {
                out[o++] = '\\';
                out[o++] = (char)c;
            } else if (c < 0x20 || c == 0x7f) {
                o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
            } else {
                out[o++] = (char)c;
            }
        }
        if (cut < n && o + 4 < size) {
            memcpy(out + o, "...", 3);
            o += 3;
        }
        out[o++] = '"';
        out[o] = '\0';
    } else if (cJSON_IsNumber(v)) {
        /* Shortest of %.15g and %.17g that reads back the same double. */
        snprintf(out, size, "%.15g", v->valuedouble);
        if (strtod(out, NULL) != v->valuedouble)
            snprintf(out, size, "%.17g", v->valuedouble);
    } else if (cJSON_IsBool(v)) {
        snprintf(out, size, "%s", cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNull(v)) {
        snprintf(out, size, "null");
    } else if (cJSON_IsArray(v)) {
        snprintf(out, size, "an array");
    } else if (cJSON_IsObject(v)) {
        snprintf(out, size, "an object");
    } else {
        snprintf(out, size, "a value");
    }
}

/* Room for a quoted DETAIL_VALUE_MAX bytes, each possibly escaped. */
#define VALUE_TEXT_MAX (DETAIL_VALUE_MAX * 4 + 16)

/* ---- checks before parsing ------------------------------------------ */

/* Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or n. */
static size_t utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* Most messages are ASCII: eight bytes at a time while they are. */
        uint64_t w;
        while (n - i >= sizeof(w) &&
               (memcpy(&w, s + i, sizeof(w)), (w & 0x8080808080808080ULL) == 0))
            i += sizeof(w);
        if (i == n) break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the 2nd byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            else if (c == 0xED) hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        } else {
            return i; /* continuation byte, C0/C1 overlong, F5..FF */
        }
        if (n - i <= need) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += need + 1;
    }
    return n;
}

typedef struct scan {
    size_t deep_at;    /* where nesting first exceeded max_depth, or SIZE_MAX */
    size_t bad_at;     /* first byte cJSON would mishandle, or SIZE_MAX */
    const char *bad_why;
    size_t n_seps;     /* , : [ { outside strings: each may start a value */
    size_t n_strings;  /* strings (keys and values) */
} scan_t;

/* One linear pass tracking string state: nesting depth of [ and { outside
 * strings (an upper bound on how deep cJSON will recurse), raw control
 * characters, and \u0000 escapes. Stops at the first depth violation. */
static void prescan(const unsigned char *s, size_t n, int max_depth,
                    scan_t *out) {
    out->deep_at = SIZE_MAX;
    out->bad_at = SIZE_MAX;
    out->bad_why = NULL;
    out->n_seps = 0;
    out->n_strings = 0;
    long depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (in_str) {
            if (c == '"') {
                in_str = 0;
            } else if (c == '\\') {
                if (n - i >= 6 && s[i + 1] == 'u' &&
                    memcmp(s + i + 2, "0000", 4) == 0 &&
                    out->bad_at == SIZE_MAX) {
                    out->bad_at = i;
                    out->bad_why =
                        "a \\u0000 escape (NUL is not supported in strings)";
                }
                i++; /* the escaped byte never ends the string */
            } else if (c < 0x20 && out->bad_at == SIZE_MAX) {
                out->bad_at = i;
                out->bad_why = "a raw control character in a string";
            }
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            out->n_strings++;
            break;
        case ',':
        case ':':
            out->n_seps++;
            break;
        case '[':
        case '{':
            out->n_seps++;
            if (++depth > max_depth) {
                out->deep_at = i;
                return;
            }
            break;
        case ']':
        case '}':
            if (depth > 0) depth--;
            break;
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            break;
        default:
            if (c < 0x20 && out->bad_at == SIZE_MAX) {
                out->bad_at = i;
                out->bad_why = "a control character outside a string";
            }
        }
    }
}

/* ---- the parse arena -------------------------------------------------- */

/* A block of the arena a message's tree is allocated in; more than one only
 * if the first block's bound was short. */
struct event_arena {
    struct event_arena *next;
    size_t used, cap;
    max_align_t data[];
};

#define ARENA_ALIGN alignof(max_align_t)

/* The arena of the parse running on this thread, or NULL outside
 * event_parse: the one piece of state the cJSON hooks need, set and cleared
 * around a single cJSON call. */
static _Thread_local struct event_arena **parse_arena;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static struct event_arena *arena_block(size_t cap) {
    struct event_arena *b = malloc(offsetof(struct event_arena, data) + cap);
    if (!b) return NULL;
    b->next = NULL;
    b->used = 0;
    b->cap = cap;
#ifdef EVENT_ASAN
    /* Poisoned until handed out, so a read past a node or a string is
     * still caught. */
    ASAN_POISON_MEMORY_REGION(b->data, cap);
#endif
    return b;
}

static void arena_free(struct event_arena *a) {
    while (a) {
        struct event_arena *next = a->next;
        free(a);
        a = next;
    }
}

static void *json_alloc(size_t n) {
    struct event_arena **head = parse_arena;
    if (!head) return malloc(n);
    size_t need = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (need < n) return NULL;
    struct event_arena *b = *head;
    if (b->cap - b->used < need) {
        struct event_arena *nb = arena_block(b->cap > need ? b->cap : need);
        if (!nb) return NULL;
        nb->next = b;
        *head = b = nb;
    }
    void *p = (unsigned char *)b->data + b->used;
    b->used += need;
#ifdef EVENT_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
    return p;
}

/* Inside a parse only cJSON's own failure path frees, and all it frees is
 * in the arena, which goes as a whole. */
static void json_free(void *p) {
    if (!parse_arena) free(p);
}

static void hooks_install(void) {
    cJSON_Hooks h = {json_alloc, json_free};
    cJSON_InitHooks(&h);
}

/* An upper bound on what cJSON allocates for a message of len bytes: a node
 * per value (each value but the root follows one of the separators counted,
 * and takes at least two bytes with its separator), and per string at most
 * its raw length plus two bytes, each allocation rounded up to the
 * alignment. */
static size_t arena_bound(size_t len, const scan_t *sc) {
    size_t node = (sizeof(cJSON) + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    size_t nodes = 1 + (sc->n_seps < len / 2 ? sc->n_seps : len / 2);
    return nodes * node + len + sc->n_strings * (2 + ARENA_ALIGN) + 64;
}

static int json_ws(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "not an object";
}

/* ---- envelope fields ------------------------------------------------ */

/* cJSON keeps numbers as doubles: an integer is one with no fraction and
 * strictly within +-2^53. 2^53 itself is excluded because 2^53+1 rounds to
 * it: two different client ids must not become one. NaN fails both. */
static int exact_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d > -9007199254740992.0 && d < 9007199254740992.0)) return 0;
    int64_t i = (int64_t)d;
    if ((double)i != d) return 0;
    *out = i;
    return 1;
}

static void reset_parsed(event_t *ev) {
    ev->root = NULL;
    ev->arena = NULL;
    ev->id = NULL;
    ev->id_len = 0;
    ev->client_id = NULL;
    ev->client_len = 0;
    ev->type = NULL;
    ev->ts_ms = 0;
    ev->client_buf[0] = '\0';
    ev->id_buf[0] = '\0';
}

static event_reason_t read_client(const event_config_t *cfg, event_t *ev,
                                  char *detail, size_t dsize) {
    const char *path = cfg->client_path;
    const cJSON *v = event_path(ev->root, path);
    char vt[VALUE_TEXT_MAX];
    int64_t i;
    if (!v) {
        detail_fmt(detail, dsize, "field \"%s\" is missing", path);
        return EVENT_NO_CLIENT;
    }
    if (cJSON_IsString(v) && v->valuestring) {
        size_t n = strlen(v->valuestring);
        if (n == 0) {
            detail_fmt(detail, dsize, "field \"%s\" is empty", path);
            return EVENT_NO_CLIENT;
        }
        if (n > EVENT_CLIENT_MAX - 1) {
            value_text(v, vt, sizeof(vt));
            detail_fmt(detail, dsize,
                       "field \"%s\": %s is longer than %d bytes", path, vt,
                       EVENT_CLIENT_MAX - 1);
            return EVENT_NO_CLIENT;
        }
        ev->client_id = v->valuestring;
        ev->client_len = n;
        return EVENT_OK;
    }
    if (exact_int(v, &i)) {
        int n = snprintf(ev->client_buf, sizeof(ev->client_buf), "%" PRId64, i);
        ev->client_id = ev->client_buf;
        ev->client_len = (size_t)n;
        return EVENT_OK;
    }
    if (cJSON_IsNull(v)) {
        detail_fmt(detail, dsize, "field \"%s\" is null", path);
        return EVENT_NO_CLIENT;
    }
    value_text(v, vt, sizeof(vt));
    detail_fmt(detail, dsize, "field \"%s\": %s is not a string or integer",
               path, vt);
    return EVENT_NO_CLIENT;
}

static event_reason_t read_type(const event_config_t *cfg, event_t *ev,
                                char *detail, size_t dsize) {
    const char *path = cfg->type_path;
    const cJSON *v = event_path(ev->root, path);
    char vt[VALUE_TEXT_MAX];
    if (!v) {
        detail_fmt(detail, dsize, "field \"%s\" is missing", path);
        return EVENT_NO_TYPE;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        value_text(v, vt, sizeof(vt));
        detail_fmt(detail, dsize, "field \"%s\": %s is not a string", path, vt);
        return EVENT_NO_TYPE;
    }
    if (v->valuestring[0] == '\0') {
        detail_fmt(detail, dsize, "field \"%s\" is empty", path);
        return EVENT_NO_TYPE;
    }
    ev->type = v->valuestring;
    for (size_t k = 0; k < cfg->n_type_map; k++) {
        if (strcmp(cfg->type_map[k].from, ev->type) == 0) {
            ev->type = cfg->type_map[k].to;
            break;
        }
    }
    return EVENT_OK;
}

static event_reason_t read_time(const event_config_t *cfg, event_t *ev,
                                char *detail, size_t dsize) {
    const char *path = cfg->ts_path;
    const cJSON *v = event_path(ev->root, path);
    char vt[VALUE_TEXT_MAX];
    int64_t ms;
    if (!v || cJSON_IsNull(v)) {
        detail_fmt(detail, dsize, "field \"%s\" is %s", path,
                   v ? "null" : "missing");
        return EVENT_NO_TIME;
    }
    if (cJSON_IsString(v) && v->valuestring) {
        if (time_parse_rfc3339(v->valuestring, strlen(v->valuestring),
                               &ms) == 0) {
            ev->ts_ms = ms;
            return EVENT_OK;
        }
    } else if (cJSON_IsNumber(v)) {
        int whole = exact_int(v, &ms);
        if (whole && ms >= TIME_MIN_MS && ms <= TIME_MAX_MS) {
            ev->ts_ms = ms;
            return EVENT_OK;
        }
        value_text(v, vt, sizeof(vt));
        /* A fraction below 2^53 is a unit mistake (seconds as a float?);
         * anything else is a whole number of ms out of range. */
        if (!whole && v->valuedouble > -9007199254740992.0 &&
            v->valuedouble < 9007199254740992.0) {
            detail_fmt(detail, dsize,
                       "field \"%s\": %s is not an integer of epoch ms", path,
                       vt);
            return EVENT_BAD_TIME;
        }
        detail_fmt(detail, dsize,
                   "field \"%s\": %s is outside years 0000-9999 in epoch ms",
                   path, vt);
        return EVENT_BAD_TIME;
    }
    value_text(v, vt, sizeof(vt));
    detail_fmt(detail, dsize, "field \"%s\": %s is not RFC 3339 or epoch ms",
               path, vt);
    return EVENT_BAD_TIME;
}

/* The id is optional: absent or null means "no id" (the event cannot be
 * deduplicated, but it is not lost). Present, it must identify something. */
static event_reason_t read_id(const event_config_t *cfg, event_t *ev,
                              char *detail, size_t dsize) {
    const char *path = cfg->id_path;
    const cJSON *v = event_path(ev->root, path);
    char vt[VALUE_TEXT_MAX];
    int64_t i;
    if (!v || cJSON_IsNull(v)) return EVENT_OK;
    if (cJSON_IsString(v) && v->valuestring) {
        size_t n = strlen(v->valuestring);
        if (n == 0) {
            detail_fmt(detail, dsize, "field \"%s\" is empty", path);
            return EVENT_BAD_ID;
        }
        if (n > EVENT_ID_MAX - 1) {
            value_text(v, vt, sizeof(vt));
            detail_fmt(detail, dsize,
                       "field \"%s\": %s is longer than %d bytes", path, vt,
                       EVENT_ID_MAX - 1);
            return EVENT_BAD_ID;
        }
        ev->id = v->valuestring;
        ev->id_len = n;
        return EVENT_OK;
    }
    if (exact_int(v, &i)) {
        int n = snprintf(ev->id_buf, sizeof(ev->id_buf), "%" PRId64, i);
        ev->id = ev->id_buf;
        ev->id_len = (size_t)n;
        return EVENT_OK;
    }
    value_text(v, vt, sizeof(vt));
    detail_fmt(detail, dsize, "field \"%s\": %s is not a string or integer",
               path, vt);
    return EVENT_BAD_ID;
}

/* ---- event_parse ---------------------------------------------------- */

event_reason_t event_parse(const event_config_t *cfg, const char *buf,
                           size_t len, event_t *ev, char *detail,
                           size_t detail_size) {
    const unsigned char *s = (const unsigned char *)buf;
    reset_parsed(ev);
    if (detail && detail_size) detail[0] = '\0'; /* no vsnprintf per event */

    if (len > cfg->max_bytes) {
        detail_fmt(detail, detail_size,
                   "message is %zu bytes, over the limit of %zu", len,
                   cfg->max_bytes);
        return EVENT_TOO_LARGE;
    }
    if (!s || len == 0) {
        detail_fmt(detail, detail_size, "empty message");
        return EVENT_NOT_JSON;
    }
    size_t bad = utf8_check(s, len);
    if (bad < len) {
        detail_fmt(detail, detail_size, "invalid UTF-8 at byte %zu (0x%02x)",
                   bad, s[bad]);
        return EVENT_NOT_UTF8;
    }

    /* RFC 8259 lets a parser ignore a byte order mark; some producers
     * (.NET, Windows tools) write one. */
    size_t start = 0;
    if (len >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) start = 3;

    scan_t sc;
    prescan(s + start, len - start, cfg->max_depth, &sc);
    if (sc.deep_at != SIZE_MAX) {
        detail_fmt(detail, detail_size, "nesting deeper than %d at byte %zu",
                   cfg->max_depth, start + sc.deep_at);
        return EVENT_TOO_DEEP;
    }
    if (sc.bad_at != SIZE_MAX) {
        detail_fmt(detail, detail_size, "not JSON: %s at byte %zu",
                   sc.bad_why, start + sc.bad_at);
        return EVENT_NOT_JSON;
    }

    struct event_arena *arena = arena_block(arena_bound(len - start, &sc));
    if (!arena) {
        detail_fmt(detail, detail_size, "not JSON: no memory to parse it");
        return EVENT_NOT_JSON;
    }
    (void)pthread_once(&hooks_once, hooks_install);
    const char *end = NULL;
    parse_arena = &arena;
    cJSON *root =
        cJSON_ParseWithLengthOpts(buf + start, len - start, &end, 0);
    parse_arena = NULL;
    if (!root) {
        arena_free(arena);
        /* cJSON does not tell a syntax error from a failed allocation;
         * under memory pressure a valid message would land here too. */
        size_t at = end ? (size_t)(end - buf) : start;
        detail_fmt(detail, detail_size, "not JSON: syntax error at byte %zu",
                   at);
        return EVENT_NOT_JSON;
    }
    for (size_t i = (size_t)(end - buf); i < len; i++) {
        if (!json_ws(s[i])) {
            arena_free(arena);
            detail_fmt(detail, detail_size,
                       "not JSON: trailing data at byte %zu", i);
            return EVENT_NOT_JSON;
        }
    }
    if (!cJSON_IsObject(root)) {
        detail_fmt(detail, detail_size, "top-level value is %s, not an object",
                   json_kind(root));
        arena_free(arena);
        return EVENT_NOT_OBJECT;
    }

    ev->root = root;
    ev->arena = arena;
    event_reason_t r = read_client(cfg, ev, detail, detail_size);
    if (r == EVENT_OK) r = read_type(cfg, ev, detail, detail_size);
    if (r == EVENT_OK) r = read_time(cfg, ev, detail, detail_size);
    if (r == EVENT_OK) r = read_id(cfg, ev, detail, detail_size);
    if (r != EVENT_OK) {
        arena_free(arena);
        reset_parsed(ev);
    }
    return r;
}

void event_clear(event_t *ev) {
    if (!ev) return;
    arena_free(ev->arena);
    reset_parsed(ev);
}

size_t event_arena_blocks(const event_t *ev) {
    size_t n = 0;
    for (const struct event_arena *a = ev->arena; a; a = a->next) n++;
    return n;
}

void event_move(event_t *dst, event_t *src) {
    *dst = *src;
    if (src->client_id == src->client_buf) dst->client_id = dst->client_buf;
    if (src->id == src->id_buf) dst->id = dst->id_buf;
    src->root = NULL;
    reset_parsed(src);
}
