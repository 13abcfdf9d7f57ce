/*
 * config.c - every churnd option is one row of opts[] below: dotted name,
 * type, default (as text), bounds, where it lands in config_t, and a
 * one-line description. Defaults, the YAML file, the CHURND_* environment,
 * `--set`, validation, `churnd config` (text and Markdown) and config_dump
 * all read that one table, as Redis's config.c and Fluent Bit's config maps
 * do; adding an option is adding a row.
 *
 * Defaults are text parsed by the same code as the file and the
 * environment, so what `churnd config` prints is by construction what runs.
 *
 * This file owns parsing and validation only: it opens the config file and
 * reads the environment array it is given, nothing else (no logging, no
 * Kafka: the kafka: section is kept as text for librdkafka to judge).
 */
#include "churnd/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "churnd/timeutil.h"

/* ---- the options table ---------------------------------------------- */

typedef enum opt_kind {
    OPT_STRING,   /* char *, checked by opt_t.check */
    OPT_LIST,     /* char ** + size_t count; YAML list or "a,b" */
    OPT_INT,      /* integer within min..max */
    OPT_SIZE,     /* bytes: "64MiB", "512KiB", "1048576" */
    OPT_DURATION, /* int64 ms: duration_parse ("10ms", "5m", "1h30m") */
    OPT_BOOL,     /* int 0/1 */
    OPT_ENUM,     /* one of opt_t.names; stored as the name's value */
    OPT_MAP,      /* event_type_map_entry_t * + size_t count */
    OPT_KAFKA,    /* the free librdkafka section (one row, name "kafka") */
} opt_kind_t;

/* What a string (or each list element) must look like. */
typedef enum opt_check {
    CHK_NONEMPTY, /* any non-empty text */
    CHK_TOPIC,    /* a legal Kafka topic name */
    CHK_PATH,     /* a dotted JSON path: "client_id", "account.id" */
    CHK_ADDR,     /* HOST:PORT */
} opt_check_t;

typedef struct opt_enum {
    const char *name;
    int value;
} opt_enum_t;

typedef struct opt {
    const char *name;  /* dotted; the YAML nesting and the env name */
    opt_kind_t kind;
    opt_check_t check; /* OPT_STRING, OPT_LIST */
    const char *def;   /* default, in the syntax of the environment */
    int64_t min, max;  /* OPT_INT, OPT_SIZE, OPT_DURATION (ms) */
    size_t off;        /* offsetof(config_t, field) */
    size_t off_n;      /* OPT_LIST, OPT_MAP: offsetof the count */
    size_t size;       /* sizeof the numeric field: 4 or 8 */
    const opt_enum_t *names; /* OPT_ENUM, NULL-terminated */
    const char *desc;
} opt_t;

/* _Generic makes a row fail to compile when the field's type is not the
 * one the row's kind stores, so the table cannot write a size_t into an
 * int. */
#define OFF_AS(T, f) _Generic(((config_t *)0)->f, T: offsetof(config_t, f))

#define O_STR(nm, chk, f, def, desc) \
    {nm, OPT_STRING, chk, def, 0, 0, OFF_AS(char *, f), 0, 0, NULL, desc}
#define O_LIST(nm, chk, f, nf, def, desc)                                    \
    {nm, OPT_LIST, chk, def, 0, 0, OFF_AS(char **, f), OFF_AS(size_t, nf), \
     0, NULL, desc}
#define O_NUM(nm, kind, T, f, def, lo, hi, desc) \
    {nm, kind, CHK_NONEMPTY, def, lo, hi, OFF_AS(T, f), 0, sizeof(T), NULL, desc}
#define O_BOOL(nm, f, def, desc) \
    {nm, OPT_BOOL, CHK_NONEMPTY, def, 0, 1, OFF_AS(int, f), 0, sizeof(int), NULL, desc}
#define O_ENUM(nm, T, f, names, def, desc) \
    {nm, OPT_ENUM, CHK_NONEMPTY, def, 0, 0, OFF_AS(T, f), 0, sizeof(T), names, desc}
#define O_MAP(nm, f, nf, def, desc)                                    \
    {nm, OPT_MAP, CHK_NONEMPTY, def, 0, 0,                             \
     OFF_AS(event_type_map_entry_t *, f), OFF_AS(size_t, nf), 0, NULL, desc}

#define KiB INT64_C(1024)
#define MiB (KiB * 1024)
#define SEC INT64_C(1000)

static const opt_enum_t log_levels[] = {
    {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN},
    {"error", LOG_ERROR}, {NULL, 0},
};
static const opt_enum_t log_formats[] = {
    {"logfmt", LOG_FMT_LOGFMT}, {"json", LOG_FMT_JSON}, {NULL, 0},
};

static const opt_t opts[] = {
    /* One property "key=value": the kafka row's default. */
    {"kafka", OPT_KAFKA, CHK_NONEMPTY, "bootstrap.servers=localhost:9092", 0, 0,
     OFF_AS(config_kv_t *, kafka), OFF_AS(size_t, n_kafka), 0, NULL,
     "librdkafka properties for the consumer and the producer (any property, "
     "SASL/TLS included); values are passed as text"},

    O_LIST("input.topics", CHK_TOPIC, input_topics, n_input_topics,
           "crm.events,helpdesk.events",
           "Topics events are consumed from (co-partitioned, keyed by client id)"),
    O_STR("input.group_id", CHK_NONEMPTY, group_id, "churnd",
          "Kafka consumer group"),

    O_STR("output.alerts_topic", CHK_TOPIC, alerts_topic, "churn.alerts",
          "Topic alerts are published to"),
    O_STR("output.deadletter_topic", CHK_TOPIC, deadletter_topic,
          "churn.deadletter",
          "Topic invalid events are published to, with the reason in headers"),

    O_STR("rules.dir", CHK_NONEMPTY, rules_dir, "./rules",
          "Directory of rules files, reloaded on SIGHUP"),

    O_STR("state.dir", CHK_NONEMPTY, state_dir, "./state",
          "RocksDB directory holding client state, timers and offsets"),
    O_NUM("state.cache_clients", OPT_INT, int64_t, cache_clients, "1000000", 0,
          INT64_MAX, "Client states kept decoded in memory at most (0: none)"),
    O_NUM("state.cache_memory", OPT_SIZE, int64_t, cache_memory_bytes, "48MiB",
          0, INT64_MAX,
          "Memory the decoded client states kept in memory may take, 64 bytes "
          "of index each included (0: only state.cache_clients bounds them)"),
    O_NUM("state.block_cache", OPT_SIZE, int64_t, block_cache_bytes, "32MiB",
          0, INT64_MAX, "RocksDB block cache"),
    O_BOOL("state.sync", state_sync, "false",
           "fsync each committed batch: survives power loss, not only a crash"),
    O_BOOL("state.ledger", state_ledger, "true",
           "Keep each client's orders, contract events and alert firings for "
           "churnd report"),

    O_NUM("batch.max_events", OPT_INT, int64_t, batch_max_events, "5000", 1,
          1000000, "Most events evaluated and committed as one micro-batch"),
    O_NUM("batch.max_wait", OPT_DURATION, int64_t, batch_max_ms, "0s", 0,
          10 * SEC,
          "How long a micro-batch waits for more events once none are "
          "waiting (0: it goes at once with what has arrived)"),

    O_STR("event.id_path", CHK_PATH, event.id_path, "id",
          "JSON path of the event id (dotted: meta.id)"),
    O_STR("event.client_path", CHK_PATH, event.client_path, "client_id",
          "JSON path of the client id (dotted: account.id)"),
    O_STR("event.type_path", CHK_PATH, event.type_path, "type",
          "JSON path of the event type"),
    O_STR("event.ts_path", CHK_PATH, event.ts_path, "ts",
          "JSON path of the event time (RFC 3339 or epoch ms)"),
    O_MAP("event.type_map", event.type_map, event.n_type_map, "",
          "Upstream type names renamed to churnd's (OrderCreated: order.placed)"),
    O_NUM("event.max_bytes", OPT_SIZE, size_t, event.max_bytes, "1MiB", 64,
          64 * MiB, "Larger messages go to the dead-letter topic"),
    O_NUM("event.max_depth", OPT_INT, int, event.max_depth, "32", 1, 1000,
          "Messages nested deeper go to the dead-letter topic"),
    O_NUM("event.dedup_window", OPT_DURATION, int64_t, dedup_window_ms, "24h",
          0, INT64_MAX,
          "An event id seen again for its client within this window counts once"),
    O_NUM("event.dedup_max_ids", OPT_INT, int64_t, dedup_max_ids, "64", 0,
          4096, "Event ids remembered per client for deduplication (0: off)"),

    O_NUM("time.allowed_lateness", OPT_DURATION, int64_t, allowed_lateness_ms,
          "0s", 0, INT64_MAX,
          "How far the watermark trails the slowest partition's stream time: "
          "how late an event may arrive and still be applied in time order"),
    O_NUM("time.idle_timeout", OPT_DURATION, int64_t, idle_timeout_ms, "30s",
          0, INT64_MAX,
          "A caught-up partition silent this long stops holding the watermark"),

    O_NUM("shutdown.timeout", OPT_DURATION, int64_t, shutdown_timeout_ms,
          "30s", 0, INT64_MAX,
          "Longest a SIGTERM drain may take before exiting with code 4"),
    O_STR("http.listen", CHK_ADDR, http_listen, "127.0.0.1:9464",
          "HOST:PORT of /metrics, /healthz, /readyz, /clients, /rules"),
    O_NUM("http.request_timeout", OPT_DURATION, int64_t, http_timeout_ms,
          "10s", 100, 3600 * SEC,
          "An HTTP connection that has not sent a whole request this long after "
          "connecting or after its last response is closed"),
    O_NUM("http.max_connections", OPT_INT, int64_t, http_max_conns, "256", 1,
          65536, "Open HTTP connections at most; more are answered 503 and closed"),
    O_NUM("http.stall_timeout", OPT_DURATION, int64_t, http_stall_ms, "30s",
          0, INT64_MAX,
          "/readyz fails while a batch has waited this long for its alerts to be "
          "acknowledged (0: never)"),
    O_ENUM("log.level", log_level_t, log_level, log_levels, "info",
           "Least severe log level written to stderr"),
    O_ENUM("log.format", log_format_t, log_format, log_formats, "logfmt",
           "Log line format on stderr"),

    O_NUM("embedded.partitions", OPT_INT, int64_t, embedded_partitions, "4",
          1, 256, "Partitions per topic of the --embedded-broker"),
};

#define N_OPTS CHURN_ARRAY_LEN(opts)

/* CHURND_* variables that are not options: the test harness's own. A
 * variable with this prefix or name is ignored; any other unknown CHURND_*
 * variable is an error, because a typo there would otherwise be silently
 * ignored in production. */
static const char *const env_allow_prefix[] = {"CHURND_TEST_"};
static const char *const env_allow[] = {"CHURND_BIN", "CHURND_KT"};

#define NAME_MAX_LEN 256

/* ---- small helpers -------------------------------------------------- */

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *dup_s(const char *s) { return dup_n(s, strlen(s)); }

static void *field(config_t *c, size_t off) { return (char *)c + off; }
static const void *cfield(const config_t *c, size_t off) {
    return (const char *)c + off;
}

static void store_num(config_t *c, const opt_t *o, int64_t v) {
    if (o->size == sizeof(int32_t)) {
        int32_t x = (int32_t)v;
        memcpy(field(c, o->off), &x, sizeof(x));
    } else {
        memcpy(field(c, o->off), &v, sizeof(v));
    }
}

static int64_t load_num(const config_t *c, const opt_t *o) {
    if (o->size == sizeof(int32_t)) {
        int32_t x;
        memcpy(&x, cfield(c, o->off), sizeof(x));
        return x;
    }
    int64_t v;
    memcpy(&v, cfield(c, o->off), sizeof(v));
    return v;
}

static const opt_t *opt_find(const char *name) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].kind != OPT_KAFKA && !strcmp(opts[i].name, name))
            return &opts[i];
    return NULL;
}

/* A section is a proper prefix of some option's name ("batch", "event"). */
static int is_section(const char *name) {
    size_t n = strlen(name);
    if (!strcmp(name, "kafka")) return 1;
    for (size_t i = 0; i < N_OPTS; i++)
        if (!strncmp(opts[i].name, name, n) && opts[i].name[n] == '.') return 1;
    return 0;
}

/* CHURND_ + the name upper-cased, anything not alphanumeric as '_'. */
static void env_name(const char *name, char *out, size_t size) {
    size_t j = (size_t)snprintf(out, size, "CHURND_");
    for (const char *p = name; *p && j + 1 < size; p++)
        out[j++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p)
                                              : '_';
    out[j < size ? j : size - 1] = '\0';
}

/* Levenshtein distance, capped: names are short, and past the cap the
 * answer no longer matters ("did you mean" wants <= 2). */
static size_t edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na >= NAME_MAX_LEN || nb >= NAME_MAX_LEN) return SIZE_MAX;
    size_t prev[NAME_MAX_LEN + 1], cur[NAME_MAX_LEN + 1];
    for (size_t j = 0; j <= nb; j++) prev[j] = j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (nb + 1) * sizeof(size_t));
    }
    return prev[nb];
}

/* The closest known name within distance 2, or (for a YAML key) an
 * option whose last segment is exactly the key (a missing section:
 * "max_events" -> "batch.max_events"). Returns "" when none. */
static void suggest(const char *name, int env, char *out, size_t size) {
    size_t best = 3;
    char cand[NAME_MAX_LEN];
    out[0] = '\0';
    for (size_t i = 0; i < N_OPTS + 1; i++) {
        /* Candidates: every option, and for YAML every section too. */
        const char *nm = i < N_OPTS ? opts[i].name : NULL;
        if (i < N_OPTS && opts[i].kind == OPT_KAFKA) continue;
        if (env) {
            if (!nm) continue;
            env_name(nm, cand, sizeof(cand));
        } else if (nm) {
            snprintf(cand, sizeof(cand), "%s", nm);
        } else {
            snprintf(cand, sizeof(cand), "kafka");
        }
        size_t d = edit_distance(name, cand);
        if (d < best) {
            best = d;
            snprintf(out, size, "%s", cand);
        }
        /* Sections: every dotted prefix of the option's name. */
        if (!env && nm) {
            for (const char *dot = strchr(nm, '.'); dot; dot = strchr(dot + 1, '.')) {
                snprintf(cand, sizeof(cand), "%.*s", (int)(dot - nm), nm);
                d = edit_distance(name, cand);
                if (d < best) {
                    best = d;
                    snprintf(out, size, "%s", cand);
                }
            }
        }
    }
    if (out[0] || env) return;
    const char *leaf = strrchr(name, '.');
    leaf = leaf ? leaf + 1 : name;
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *ol = strrchr(opts[i].name, '.');
        if (ol && !strcmp(ol + 1, leaf) && strcmp(opts[i].name, name)) {
            snprintf(out, size, "%s", opts[i].name);
            return;
        }
    }
}

/* A value quoted for an error message, escaped and shortened. */
static const char *quoted(const char *s, char *out, size_t size) {
    size_t j = 0, max = size > 8 ? size - 8 : 0;
    out[j++] = '"';
    for (const char *p = s; *p && j < max; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            out[j++] = '\\';
            out[j++] = (char)ch;
        } else if (ch == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else if (ch < 0x20 || ch == 0x7f) {
            out[j++] = '?';
        } else {
            out[j++] = (char)ch;
        }
        if (p[1] && j >= max) {
            memcpy(out + j, "...", 3);
            j += 3;
        }
    }
    out[j++] = '"';
    out[j] = '\0';
    return out;
}

static int ieq(const char *a, const char *b) { return !strcasecmp(a, b); }

/* ---- value syntaxes --------------------------------------------------- */

static int parse_i64(const char *s, int64_t *out) {
    const char *p = s;
    int neg = 0;
    if (*p == '-' || *p == '+') neg = *p++ == '-';
    if (!isdigit((unsigned char)*p)) return CHURN_EINVAL;
    int64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10) return CHURN_EINVAL;
        v = v * 10 + d;
    }
    if (*p) return CHURN_EINVAL;
    *out = neg ? -v : v;
    return 0;
}

static const struct {
    const char *unit;
    int64_t mult;
} size_units[] = {
    {"B", 1}, {"KiB", KiB}, {"MiB", MiB}, {"GiB", MiB * 1024},
    {"TiB", MiB * 1024 * 1024},
};

/* Bytes with an optional binary unit. "MB" and "k" are refused rather
 * than guessed: Redis reads "1mb" as 2^20 and others as 10^6, and an
 * operator should not have to know which convention this is. */
static int parse_size(const char *s, int64_t *out) {
    const char *p = s;
    if (!isdigit((unsigned char)*p)) return CHURN_EINVAL;
    int64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10) return CHURN_EINVAL;
        v = v * 10 + d;
    }
    if (*p == ' ') p++;
    if (!*p) {
        *out = v;
        return 0;
    }
    for (size_t i = 0; i < CHURN_ARRAY_LEN(size_units); i++) {
        if (ieq(p, size_units[i].unit)) {
            if (v > INT64_MAX / size_units[i].mult) return CHURN_EINVAL;
            *out = v * size_units[i].mult;
            return 0;
        }
    }
    return CHURN_EINVAL;
}

/* The largest binary unit that divides v exactly: 67108864 -> "64MiB". */
static void format_size(int64_t v, char *out, size_t size) {
    size_t u = CHURN_ARRAY_LEN(size_units) - 1;
    while (u > 0 && (v == 0 || v % size_units[u].mult != 0)) u--;
    snprintf(out, size, "%" PRId64 "%s", v / size_units[u].mult,
             size_units[u].unit);
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < CHURN_ARRAY_LEN(yes); i++) {
        if (ieq(s, yes[i])) return *out = 1, 0;
        if (ieq(s, no[i])) return *out = 0, 0;
    }
    return CHURN_EINVAL;
}

/* Kafka topic names: [a-zA-Z0-9._-], 1..249 characters. */
static int topic_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 249 || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return 0;
    return 1;
}

/* The rule of event.c: non-empty segments separated by single dots. */
static int path_valid(const char *s) {
    if (!*s || *s == '.') return 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.' && (p[1] == '.' || p[1] == '\0')) return 0;
        if ((unsigned char)*p <= ' ') return 0;
    }
    return 1;
}

/* HOST:PORT, HOST possibly a bracketed IPv6 address, PORT 0..65535. */
static int addr_valid(const char *s) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1]) return 0;
    if (s[0] == '[' && colon[-1] != ']') return 0;
    int64_t port;
    if (parse_i64(colon + 1, &port) || port < 0 || port > 65535 ||
        colon[1] == '-' || colon[1] == '+')
        return 0;
    for (const char *p = s; p < colon; p++)
        if ((unsigned char)*p <= ' ') return 0;
    return 1;
}

static int check_text(opt_check_t chk, const char *s) {
    switch (chk) {
    case CHK_NONEMPTY: return *s != '\0';
    case CHK_TOPIC: return topic_valid(s);
    case CHK_PATH: return path_valid(s);
    case CHK_ADDR: return addr_valid(s);
    }
    return 0;
}

/* What a value of this option must be, for error messages. */
static void expected(const opt_t *o, char *out, size_t size) {
    char lo[DURATION_FORMAT_MAX], hi[DURATION_FORMAT_MAX];
    switch (o->kind) {
    case OPT_STRING:
        switch (o->check) {
        case CHK_NONEMPTY: snprintf(out, size, "a non-empty string"); return;
        case CHK_TOPIC:
            snprintf(out, size, "a Kafka topic name (letters, digits, '.', '_', "
                                "'-'; at most 249)");
            return;
        case CHK_PATH:
            snprintf(out, size, "a dotted JSON path such as client_id or account.id");
            return;
        case CHK_ADDR:
            snprintf(out, size, "HOST:PORT such as 127.0.0.1:9464");
            return;
        }
        return;
    case OPT_LIST:
        snprintf(out, size, "%s",
                 o->check == CHK_TOPIC
                     ? "a non-empty list of distinct Kafka topic names"
                     : "a non-empty list of distinct non-empty strings");
        return;
    case OPT_INT:
        if (o->max == INT64_MAX && o->min == 0)
            snprintf(out, size, "a non-negative integer");
        else if (o->max == INT64_MAX)
            snprintf(out, size, "an integer from %" PRId64 " up", o->min);
        else
            snprintf(out, size, "an integer from %" PRId64 " to %" PRId64,
                     o->min, o->max);
        return;
    case OPT_SIZE:
        format_size(o->min, lo, sizeof(lo));
        format_size(o->max, hi, sizeof(hi));
        if (o->max == INT64_MAX)
            snprintf(out, size, "a size such as 512KiB, 64MiB or a number of bytes");
        else
            snprintf(out, size, "a size from %s to %s (such as 512KiB, 64MiB or "
                                "a number of bytes)", lo, hi);
        return;
    case OPT_DURATION:
        duration_format(o->min, lo, sizeof(lo));
        duration_format(o->max, hi, sizeof(hi));
        if (o->max == INT64_MAX)
            snprintf(out, size, "a duration such as 10ms, 30s, 5m or 24h");
        else
            snprintf(out, size, "a duration from %s to %s (such as 10ms, 30s, 5m)",
                     lo, hi);
        return;
    case OPT_BOOL: snprintf(out, size, "true or false"); return;
    case OPT_ENUM: {
        size_t j = (size_t)snprintf(out, size, "one of");
        for (const opt_enum_t *e = o->names; e->name && j < size; e++)
            j += (size_t)snprintf(out + j, size - j, "%s %s",
                                  e == o->names ? "" : ",", e->name);
        return;
    }
    case OPT_MAP:
        snprintf(out, size, "a mapping of upstream type names to churnd type "
                            "names (OrderCreated: order.placed)");
        return;
    case OPT_KAFKA:
        snprintf(out, size, "a mapping of librdkafka properties to values");
        return;
    }
}

static int bad_value(const opt_t *o, const char *got, churn_err_t *err) {
    char exp[256], q[96];
    expected(o, exp, sizeof(exp));
    return churn_err_set(err, CHURN_EINVAL, "%s: expected %s, got %s", o->name,
                         exp, quoted(got, q, sizeof(q)));
}

/* ---- setting one option ------------------------------------------------ */

static void free_list(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void free_map(event_type_map_entry_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].from);
        free(v[i].to);
    }
    free(v);
}

/* Replace a list option with items[0..n) (copied), after checking each. */
static int set_list(config_t *c, const opt_t *o, const char *const *items,
                    size_t n, const char *got, churn_err_t *err) {
    if (n == 0) return bad_value(o, got, err);
    for (size_t i = 0; i < n; i++) {
        if (!check_text(o->check, items[i])) return bad_value(o, items[i], err);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(items[i], items[j]))
                return churn_err_set(err, CHURN_EINVAL, "%s: \"%s\" is listed twice",
                                     o->name, items[i]);
    }
    char **v = calloc(n, sizeof(char *));
    if (!v) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] = dup_s(items[i]))) {
            free_list(v, i);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
    }
    char ***slot = field(c, o->off);
    size_t *n_slot = field(c, o->off_n);
    free_list(*slot, *n_slot);
    *slot = v;
    *n_slot = n;
    return 0;
}

/* Replace the map with pairs from[i] -> to[i]. */
static int set_map(config_t *c, const opt_t *o, const char *const *from,
                   const char *const *to, size_t n, churn_err_t *err) {
    for (size_t i = 0; i < n; i++) {
        if (!*from[i] || !*to[i]) {
            char got[NAME_MAX_LEN * 2 + 4];
            snprintf(got, sizeof(got), "%s: %s", from[i], to[i]);
            return bad_value(o, got, err);
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(from[i], from[j]))
                return churn_err_set(err, CHURN_EINVAL, "%s: \"%s\" is mapped twice",
                                     o->name, from[i]);
    }
    event_type_map_entry_t *v = n ? calloc(n, sizeof(*v)) : NULL;
    if (n && !v) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        v[i].from = dup_s(from[i]);
        v[i].to = dup_s(to[i]);
        if (!v[i].from || !v[i].to) {
            free_map(v, i + 1);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
    }
    event_type_map_entry_t **slot = field(c, o->off);
    size_t *n_slot = field(c, o->off_n);
    free_map(*slot, *n_slot);
    *slot = v;
    *n_slot = n;
    return 0;
}

/* Split s at commas into trimmed pieces (in place in a copy the caller
 * frees). Returns the count, or -1 when out of memory. "" gives 0. */
static long split_commas(const char *s, char **copy, char ***pieces) {
    *copy = dup_s(s);
    *pieces = NULL;
    if (!*copy) return -1;
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    char **v = calloc(n, sizeof(char *));
    if (!v) {
        free(*copy);
        *copy = NULL;
        return -1;
    }
    size_t k = 0;
    char *p = *copy;
    for (;;) {
        char *end = strchr(p, ',');
        if (end) *end = '\0';
        while (*p == ' ' || *p == '\t') p++;
        char *t = p + strlen(p);
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) *--t = '\0';
        v[k++] = p;
        if (!end) break;
        p = end + 1;
    }
    if (k == 1 && !*v[0]) k = 0;
    *pieces = v;
    return (long)k;
}

/* Set o from text in the environment's syntax (also the defaults' and
 * --set's): lists "a,b", maps "From=to,From2=to2". */
static int opt_set_text(config_t *c, const opt_t *o, const char *s,
                        churn_err_t *err) {
    int64_t v;
    int b;
    switch (o->kind) {
    case OPT_STRING: {
        if (!check_text(o->check, s)) return bad_value(o, s, err);
        char *p = dup_s(s);
        if (!p) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        char **slot = field(c, o->off);
        free(*slot);
        *slot = p;
        return 0;
    }
    case OPT_INT:
        if (parse_i64(s, &v) || v < o->min || v > o->max)
            return bad_value(o, s, err);
        store_num(c, o, v);
        return 0;
    case OPT_SIZE:
        if (parse_size(s, &v) || v < o->min || v > o->max)
            return bad_value(o, s, err);
        store_num(c, o, v);
        return 0;
    case OPT_DURATION:
        if (duration_parse(s, strlen(s), &v) || v < o->min || v > o->max)
            return bad_value(o, s, err);
        store_num(c, o, v);
        return 0;
    case OPT_BOOL:
        if (parse_bool(s, &b)) return bad_value(o, s, err);
        store_num(c, o, b);
        return 0;
    case OPT_ENUM:
        for (const opt_enum_t *e = o->names; e->name; e++) {
            if (ieq(s, e->name)) {
                store_num(c, o, e->value);
                return 0;
            }
        }
        return bad_value(o, s, err);
    case OPT_LIST:
    case OPT_MAP: {
        char *copy, **pieces;
        long n = split_commas(s, &copy, &pieces);
        if (n < 0) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        int rc;
        if (o->kind == OPT_LIST) {
            rc = set_list(c, o, (const char *const *)pieces, (size_t)n, s, err);
        } else {
            /* "From=to": the pieces become the keys, values point past '='. */
            const char **to = calloc((size_t)n + 1, sizeof(char *));
            rc = to ? 0 : churn_err_set(err, CHURN_ENOMEM, "out of memory");
            for (long i = 0; !rc && i < n; i++) {
                char *eq = strchr(pieces[i], '=');
                if (!eq) {
                    rc = bad_value(o, pieces[i], err);
                    break;
                }
                *eq = '\0';
                to[i] = eq + 1;
            }
            if (!rc)
                rc = set_map(c, o, (const char *const *)pieces, to, (size_t)n, err);
            free(to);
        }
        free(pieces);
        free(copy);
        return rc;
    }
    case OPT_KAFKA: {
        const char *eq = strchr(s, '=');
        if (!eq || eq == s) return bad_value(o, s, err);
        char *k = dup_n(s, (size_t)(eq - s));
        int rc = k ? config_set_kafka(c, k, eq + 1) : CHURN_ENOMEM;
        free(k);
        return rc ? churn_err_set(err, rc, "out of memory") : 0;
    }
    }
    return churn_err_set(err, CHURN_EINVAL, "%s: unsupported option kind", o->name);
}

/* ---- public: init, free, set ------------------------------------------- */

int config_init(config_t *c, churn_err_t *err) {
    memset(c, 0, sizeof(*c));
    /* event_config_init first, so that fields of event_config_t the table
     * does not list still get event.c's defaults. */
    if (event_config_init(&c->event) != 0)
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    for (size_t i = 0; i < N_OPTS; i++) {
        int rc = opt_set_text(c, &opts[i], opts[i].def, err);
        if (rc) {
            config_free(c);
            return rc;
        }
    }
    return 0;
}

void config_free(config_t *c) {
    if (!c) return;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_t *o = &opts[i];
        void *slot = field(c, o->off);
        size_t *n_slot = o->off_n ? field(c, o->off_n) : NULL;
        switch (o->kind) {
        case OPT_STRING: free(*(char **)slot); break;
        case OPT_LIST: free_list(*(char ***)slot, *n_slot); break;
        case OPT_MAP: free_map(*(event_type_map_entry_t **)slot, *n_slot); break;
        case OPT_KAFKA:
            for (size_t j = 0; j < *n_slot; j++) {
                free((*(config_kv_t **)slot)[j].key);
                free((*(config_kv_t **)slot)[j].val);
            }
            free(*(config_kv_t **)slot);
            break;
        default: continue; /* numbers own nothing */
        }
        *(void **)slot = NULL;
        if (n_slot) *n_slot = 0;
    }
    /* Whatever event_config_t holds beyond the table (nothing today). */
    event_config_free(&c->event);
    memset(c, 0, sizeof(*c));
}

int config_set_kafka(config_t *c, const char *key, const char *val) {
    if (!key || !*key || !val) return CHURN_EINVAL;
    char *v = dup_s(val);
    if (!v) return CHURN_ENOMEM;
    for (size_t i = 0; i < c->n_kafka; i++) {
        if (!strcmp(c->kafka[i].key, key)) {
            free(c->kafka[i].val);
            c->kafka[i].val = v;
            return 0;
        }
    }
    char *k = dup_s(key);
    config_kv_t *kv = realloc(c->kafka, (c->n_kafka + 1) * sizeof(*kv));
    if (!k || !kv) {
        free(k);
        free(v);
        if (kv) c->kafka = kv;
        return CHURN_ENOMEM;
    }
    c->kafka = kv;
    kv[c->n_kafka].key = k;
    kv[c->n_kafka].val = v;
    c->n_kafka++;
    return 0;
}

const char *config_get_kafka(const config_t *c, const char *key) {
    for (size_t i = 0; i < c->n_kafka; i++)
        if (!strcmp(c->kafka[i].key, key)) return c->kafka[i].val;
    return NULL;
}

static int unknown_option(const char *name, churn_err_t *err) {
    char sug[NAME_MAX_LEN];
    suggest(name, 0, sug, sizeof(sug));
    if (sug[0])
        return churn_err_set(err, CHURN_EINVAL,
                             "unknown option '%s'; did you mean '%s'?", name, sug);
    return churn_err_set(err, CHURN_EINVAL,
                         "unknown option '%s' (`churnd config` lists them all)",
                         name);
}

int config_set(config_t *c, const char *name, const char *value,
               churn_err_t *err) {
    if (!strncmp(name, "kafka.", 6) && name[6]) {
        int rc = config_set_kafka(c, name + 6, value);
        return rc ? churn_err_set(err, rc, "out of memory") : 0;
    }
    const opt_t *o = opt_find(name);
    if (!o) return unknown_option(name, err);
    return opt_set_text(c, o, value, err);
}

/* ---- the YAML file ---------------------------------------------------- */

typedef struct seen {
    char *name;
    int line, col;
} seen_t;

typedef struct load_ctx {
    config_t *c;
    const char *file;
    yaml_document_t *doc;
    seen_t *seen;
    size_t n_seen;
    churn_err_t *err;
} load_ctx_t;

static int at(load_ctx_t *x, yaml_mark_t m, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int at(load_ctx_t *x, yaml_mark_t m, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    churn_err_setv(x->err, code, fmt, ap);
    va_end(ap);
    if (x->err) {
        snprintf(x->err->file, sizeof(x->err->file), "%s", x->file);
        x->err->line = (int)m.line + 1;
        x->err->col = (int)m.column + 1;
    }
    return code;
}

/* The error already in x->err, placed at m. */
static int place(load_ctx_t *x, yaml_mark_t m, int code) {
    if (x->err) {
        snprintf(x->err->file, sizeof(x->err->file), "%s", x->file);
        x->err->line = (int)m.line + 1;
        x->err->col = (int)m.column + 1;
    }
    return code;
}

/* An option (or kafka property) may be given once in a file, whichever
 * way it is spelled (nested or "batch.max_events:" flat). */
static int mark_seen(load_ctx_t *x, const char *name, yaml_mark_t m) {
    for (size_t i = 0; i < x->n_seen; i++)
        if (!strcmp(x->seen[i].name, name))
            return at(x, m, CHURN_EINVAL, "%s is set twice (first at line %d, "
                      "column %d)", name, x->seen[i].line, x->seen[i].col);
    seen_t *v = realloc(x->seen, (x->n_seen + 1) * sizeof(*v));
    if (!v) return churn_err_set(x->err, CHURN_ENOMEM, "out of memory");
    x->seen = v;
    if (!(v[x->n_seen].name = dup_s(name)))
        return churn_err_set(x->err, CHURN_ENOMEM, "out of memory");
    v[x->n_seen].line = (int)m.line + 1;
    v[x->n_seen].col = (int)m.column + 1;
    x->n_seen++;
    return 0;
}

static int is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE) return 0;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *node_kind(const yaml_node_t *n) {
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    return is_null(n) ? "nothing (null)" : "a scalar";
}

/* The text of a scalar node, refusing embedded NULs and nulls. */
static int scalar_text(load_ctx_t *x, const yaml_node_t *n, const char *what,
                       const char *exp, const char **out) {
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return at(x, n->start_mark, CHURN_EINVAL, "%s: expected %s, got %s",
                  what, exp, node_kind(n));
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length)
        return at(x, n->start_mark, CHURN_EINVAL, "%s: contains a NUL byte", what);
    *out = s;
    return 0;
}

static yaml_node_t *node(load_ctx_t *x, int id) {
    return yaml_document_get_node(x->doc, id);
}

/* A list option from a YAML sequence (or a scalar "a, b"). */
static int load_list(load_ctx_t *x, const opt_t *o, yaml_node_t *n) {
    char exp[256];
    expected(o, exp, sizeof(exp));
    if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
        const char *s;
        int rc = scalar_text(x, n, o->name, exp, &s);
        if (!rc) rc = opt_set_text(x->c, o, s, x->err);
        return rc ? place(x, n->start_mark, rc) : 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return at(x, n->start_mark, CHURN_EINVAL, "%s: expected %s, got %s",
                  o->name, exp, node_kind(n));
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    const char **items = calloc(cnt + 1, sizeof(char *));
    if (!items) return churn_err_set(x->err, CHURN_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; !rc && i < cnt; i++) {
        yaml_node_t *it = node(x, n->data.sequence.items.start[i]);
        rc = scalar_text(x, it, o->name, exp, &items[i]);
        if (!rc && !check_text(o->check, items[i]))
            rc = place(x, it->start_mark, bad_value(o, items[i], x->err));
    }
    if (!rc) {
        rc = set_list(x->c, o, items, cnt, "[]", x->err);
        if (rc) place(x, n->start_mark, rc);
    }
    free(items);
    return rc;
}

static int check_dup_keys(load_ctx_t *x, yaml_node_t *map);

/* event.type_map from a YAML mapping (or a scalar "A=b, C=d"). */
static int load_map(load_ctx_t *x, const opt_t *o, yaml_node_t *n) {
    char exp[256];
    expected(o, exp, sizeof(exp));
    if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
        const char *s;
        int rc = scalar_text(x, n, o->name, exp, &s);
        if (!rc) rc = opt_set_text(x->c, o, s, x->err);
        return rc ? place(x, n->start_mark, rc) : 0;
    }
    if (n->type != YAML_MAPPING_NODE)
        return at(x, n->start_mark, CHURN_EINVAL, "%s: expected %s, got %s",
                  o->name, exp, node_kind(n));
    int rc = check_dup_keys(x, n);
    if (rc) return rc;
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    const char **from = calloc(cnt + 1, sizeof(char *));
    const char **to = calloc(cnt + 1, sizeof(char *));
    if (!from || !to) rc = churn_err_set(x->err, CHURN_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < cnt; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
        rc = scalar_text(x, k, o->name, exp, &from[i]);
        if (!rc) rc = scalar_text(x, v, o->name, exp, &to[i]);
        if (!rc && (!*from[i] || !*to[i]))
            rc = at(x, k->start_mark, CHURN_EINVAL, "%s: expected %s, got an "
                    "empty name", o->name, exp);
    }
    if (!rc) {
        rc = set_map(x->c, o, from, to, cnt, x->err);
        if (rc) place(x, n->start_mark, rc);
    }
    free(from);
    free(to);
    return rc;
}

/* A librdkafka property value: any scalar as its text; a list of scalars
 * joined with commas (librdkafka's list syntax: bootstrap.servers). */
static int load_kafka_prop(load_ctx_t *x, const char *key, yaml_mark_t km,
                           yaml_node_t *v) {
    char name[NAME_MAX_LEN + 8];
    snprintf(name, sizeof(name), "kafka.%s", key);
    int rc = mark_seen(x, name, km);
    if (rc) return rc;
    const char *exp = "a value (librdkafka properties are flat: "
                      "\"sasl.mechanisms: PLAIN\")";
    if (v->type == YAML_SEQUENCE_NODE) {
        buf_t b;
        buf_init(&b);
        for (yaml_node_item_t *it = v->data.sequence.items.start;
             !rc && it < v->data.sequence.items.top; it++) {
            const char *s;
            rc = scalar_text(x, node(x, *it), name, exp, &s);
            if (!rc && it != v->data.sequence.items.start) rc = buf_putc(&b, ',');
            if (!rc) rc = buf_append(&b, s, strlen(s));
        }
        if (!rc) rc = buf_putc(&b, '\0');
        if (!rc) rc = config_set_kafka(x->c, key, (const char *)b.data);
        buf_free(&b);
        if (rc == CHURN_ENOMEM) churn_err_set(x->err, rc, "out of memory");
        return rc;
    }
    const char *s;
    rc = scalar_text(x, v, name, exp, &s);
    if (!rc) rc = config_set_kafka(x->c, key, s);
    if (rc == CHURN_ENOMEM) churn_err_set(x->err, rc, "out of memory");
    return rc;
}

static int load_kafka(load_ctx_t *x, yaml_node_t *n) {
    if (n->type != YAML_MAPPING_NODE)
        return at(x, n->start_mark, CHURN_EINVAL,
                  "kafka: expected a mapping of librdkafka properties, got %s",
                  node_kind(n));
    int dup = check_dup_keys(x, n);
    if (dup) return dup;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(x, p->key);
        const char *key;
        int rc = scalar_text(x, k, "kafka", "a property name", &key);
        if (!rc && (!*key || strlen(key) >= NAME_MAX_LEN))
            rc = at(x, k->start_mark, CHURN_EINVAL, "kafka: bad property name");
        if (!rc) rc = load_kafka_prop(x, key, k->start_mark, node(x, p->value));
        if (rc) return rc;
    }
    return 0;
}

static int load_option(load_ctx_t *x, const opt_t *o, yaml_node_t *v) {
    if (o->kind == OPT_LIST) return load_list(x, o, v);
    if (o->kind == OPT_MAP) return load_map(x, o, v);
    char exp[256];
    expected(o, exp, sizeof(exp));
    const char *s;
    int rc = scalar_text(x, v, o->name, exp, &s);
    if (!rc) rc = opt_set_text(x->c, o, s, x->err);
    return rc ? place(x, v->start_mark, rc) : 0;
}

/* Two equal keys in one mapping (YAML says keys are unique; libyaml does
 * not check). */
static int check_dup_keys(load_ctx_t *x, yaml_node_t *map) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(x, p->key);
        if (k->type != YAML_SCALAR_NODE) continue;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = node(x, q->key);
            if (k2->type == YAML_SCALAR_NODE &&
                k2->data.scalar.length == k->data.scalar.length &&
                !memcmp(k2->data.scalar.value, k->data.scalar.value,
                        k->data.scalar.length))
                return at(x, k->start_mark, CHURN_EINVAL,
                          "duplicate key '%s' (first at line %d, column %d)",
                          (const char *)k->data.scalar.value,
                          (int)k2->start_mark.line + 1,
                          (int)k2->start_mark.column + 1);
        }
    }
    return 0;
}

/* A mapping whose keys extend prefix ("" at the top). Keys may be one
 * segment (nested) or several ("batch.max_events:" at the top). */
static int load_mapping(load_ctx_t *x, yaml_node_t *map, const char *prefix) {
    int rc = check_dup_keys(x, map);
    if (rc) return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
        const char *key;
        rc = scalar_text(x, k, *prefix ? prefix : "configuration",
                         "an option name", &key);
        if (rc) return rc;
        char full[NAME_MAX_LEN];
        int n = snprintf(full, sizeof(full), "%s%s%s", prefix, *prefix ? "." : "",
                         key);
        if (n < 0 || (size_t)n >= sizeof(full) || !*key)
            return at(x, k->start_mark, CHURN_EINVAL, "unknown option '%.64s...'",
                      full);
        const opt_t *o = opt_find(full);
        if (!strcmp(full, "kafka")) {
            rc = load_kafka(x, v);
        } else if (!strncmp(full, "kafka.", 6)) {
            rc = load_kafka_prop(x, full + 6, k->start_mark, v);
        } else if (o) {
            rc = mark_seen(x, full, k->start_mark);
            if (!rc) rc = load_option(x, o, v);
        } else if (is_section(full)) {
            if (v->type != YAML_MAPPING_NODE)
                return at(x, v->start_mark, CHURN_EINVAL,
                          "%s: expected a mapping of %s.* options, got %s", full,
                          full, node_kind(v));
            rc = load_mapping(x, v, full);
        } else {
            rc = place(x, k->start_mark, unknown_option(full, x->err));
        }
        if (rc) return rc;
    }
    return 0;
}

static int load_file(config_t *c, const char *path, churn_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return churn_err_at(err, CHURN_EIO, path, 0, 0, "cannot open: %s",
                            strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    load_ctx_t x = {.c = c, .file = path, .doc = &doc, .err = err};
    int rc = 0;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = at(&x, parser.problem_mark, CHURN_EINVAL, "YAML: %s%s%s",
                parser.problem ? parser.problem : "syntax error",
                parser.context ? " " : "", parser.context ? parser.context : "");
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root && root->type == YAML_MAPPING_NODE)
            rc = load_mapping(&x, root, "");
        else if (root && !is_null(root))
            rc = at(&x, root->start_mark, CHURN_EINVAL,
                    "expected a mapping of options at the top, got %s",
                    node_kind(root));
        yaml_document_delete(&doc);
        /* A second document would be silently ignored: refuse it. */
        if (!rc) {
            if (!yaml_parser_load(&parser, &doc)) {
                rc = at(&x, parser.problem_mark, CHURN_EINVAL, "YAML: %s",
                        parser.problem ? parser.problem : "syntax error");
            } else {
                yaml_node_t *r2 = yaml_document_get_root_node(&doc);
                if (r2)
                    rc = at(&x, r2->start_mark, CHURN_EINVAL,
                            "a config file holds one YAML document; this is a second");
                yaml_document_delete(&doc);
            }
        }
    }
    for (size_t i = 0; i < x.n_seen; i++) free(x.seen[i].name);
    free(x.seen);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

/* ---- the environment --------------------------------------------------- */

/* CHURND_KAFKA_SASL_PASSWORD -> sasl.password; "__" stands for a literal
 * '_' (CHURND_KAFKA_LOG__LEVEL -> log_level), since a few librdkafka
 * properties have one. */
static void kafka_env_key(const char *s, size_t n, char *out, size_t size) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < size; i++) {
        if (s[i] == '_' && i + 1 < n && s[i + 1] == '_') {
            out[j++] = '_';
            i++;
        } else if (s[i] == '_') {
            out[j++] = '.';
        } else {
            out[j++] = (char)tolower((unsigned char)s[i]);
        }
    }
    out[j] = '\0';
}

static int env_allowed(const char *name) {
    for (size_t i = 0; i < CHURN_ARRAY_LEN(env_allow); i++)
        if (!strcmp(name, env_allow[i])) return 1;
    for (size_t i = 0; i < CHURN_ARRAY_LEN(env_allow_prefix); i++)
        if (!strncmp(name, env_allow_prefix[i], strlen(env_allow_prefix[i])))
            return 1;
    return 0;
}

static int apply_env(config_t *c, char *const *envp, churn_err_t *err) {
    static const char kpre[] = "CHURND_KAFKA_";
    for (char *const *e = envp; e && *e; e++) {
        const char *s = *e, *eq = strchr(s, '=');
        if (strncmp(s, "CHURND_", 7) || !eq) continue;
        size_t n = (size_t)(eq - s);
        char name[NAME_MAX_LEN];
        if (n >= sizeof(name))
            return churn_err_set(err, CHURN_EINVAL,
                                 "environment: %.40s...: name too long", s);
        memcpy(name, s, n);
        name[n] = '\0';
        if (n > sizeof(kpre) - 1 && !strncmp(name, kpre, sizeof(kpre) - 1)) {
            char key[NAME_MAX_LEN];
            kafka_env_key(name + sizeof(kpre) - 1, n - (sizeof(kpre) - 1), key,
                          sizeof(key));
            int rc = config_set_kafka(c, key, eq + 1);
            if (rc) return churn_err_set(err, rc, "out of memory");
            continue;
        }
        const opt_t *o = NULL;
        char en[NAME_MAX_LEN];
        for (size_t i = 0; i < N_OPTS && !o; i++) {
            if (opts[i].kind == OPT_KAFKA) continue;
            env_name(opts[i].name, en, sizeof(en));
            if (!strcmp(en, name)) o = &opts[i];
        }
        if (o) {
            int rc = opt_set_text(c, o, eq + 1, err);
            if (rc) {
                if (!err) return rc;
                char msg[CHURN_ERR_MSG_MAX];
                memcpy(msg, err->msg, sizeof(msg));
                return churn_err_set(err, rc, "environment %s: %s", name, msg);
            }
            continue;
        }
        if (env_allowed(name)) continue;
        char sug[NAME_MAX_LEN];
        suggest(name, 1, sug, sizeof(sug));
        /* CHURND_KAFAK_BOOTSTRAP_SERVERS: a misspelt kafka prefix. */
        const char *us = strchr(name + 7, '_');
        if (!sug[0] && us && us - (name + 7) < 16) {
            char head[16];
            snprintf(head, sizeof(head), "%.*s", (int)(us - (name + 7)), name + 7);
            if (edit_distance(head, "KAFKA") <= 2)
                snprintf(sug, sizeof(sug), "CHURND_KAFKA_%.200s", us + 1);
        }
        if (sug[0])
            return churn_err_set(err, CHURN_EINVAL,
                                 "environment %s: not a churnd option; did you "
                                 "mean %s?", name, sug);
        return churn_err_set(err, CHURN_EINVAL,
                             "environment %s: not a churnd option (options are "
                             "CHURND_<NAME>, librdkafka properties "
                             "CHURND_KAFKA_<PROPERTY>; `churnd config` lists them)",
                             name);
    }
    return 0;
}

/* ---- load and validate ------------------------------------------------- */

int config_validate(const config_t *c, churn_err_t *err) {
    const char *outs[] = {c->alerts_topic, c->deadletter_topic};
    const char *names[] = {"output.alerts_topic", "output.deadletter_topic"};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < c->n_input_topics; i++)
            if (outs[k] && !strcmp(outs[k], c->input_topics[i]))
                return churn_err_set(err, CHURN_EINVAL,
                                     "%s \"%s\" is also in input.topics: churnd "
                                     "would consume what it publishes",
                                     names[k], outs[k]);
    return 0;
}

int config_load(config_t *c, const char *path, char *const *envp,
                churn_err_t *err) {
    int rc = path ? load_file(c, path, err) : 0;
    if (!rc) rc = apply_env(c, envp, err);
    if (!rc) rc = config_validate(c, err);
    return rc;
}

/* ---- secrets ------------------------------------------------------------ */

int config_is_secret(const char *key) {
    if (!key) return 0;
    char k[NAME_MAX_LEN];
    size_t n = 0;
    for (; key[n] && n + 1 < sizeof(k); n++)
        k[n] = (char)tolower((unsigned char)key[n]);
    k[n] = '\0';
    static const char *const words[] = {"password", "passwd", "secret", "token",
                                        "credential", "private",
                                        "sasl.oauthbearer.config"};
    for (size_t i = 0; i < CHURN_ARRAY_LEN(words); i++)
        if (strstr(k, words[i])) return 1;
    /* Key material: a segment "key" (ssl.key.pem, ssl.key.location is
     * only a path but costs nothing to hide) or "_key" / "keystore" ones. */
    for (const char *p = k; (p = strstr(p, "key")) != NULL; p += 3) {
        int start = p == k || p[-1] == '.' || p[-1] == '_';
        int end = !p[3] || p[3] == '.' || p[3] == '_';
        if (start && end) return 1;
    }
    return 0;
}

/* ---- help, Markdown and dump ------------------------------------------- */

static void type_text(const opt_t *o, char *out, size_t size) {
    char lo[DURATION_FORMAT_MAX], hi[DURATION_FORMAT_MAX];
    switch (o->kind) {
    case OPT_STRING:
        snprintf(out, size, "%s",
                 o->check == CHK_TOPIC  ? "topic"
                 : o->check == CHK_PATH ? "JSON path"
                 : o->check == CHK_ADDR ? "host:port"
                                        : "string");
        return;
    case OPT_LIST:
        snprintf(out, size, "%s", o->check == CHK_TOPIC ? "list of topics"
                                                        : "list of strings");
        return;
    case OPT_INT:
        if (o->max == INT64_MAX)
            snprintf(out, size, "integer >= %" PRId64, o->min);
        else
            snprintf(out, size, "integer %" PRId64 "..%" PRId64, o->min, o->max);
        return;
    case OPT_SIZE:
        format_size(o->min, lo, sizeof(lo));
        format_size(o->max, hi, sizeof(hi));
        if (o->max == INT64_MAX)
            snprintf(out, size, "size");
        else
            snprintf(out, size, "size %s..%s", lo, hi);
        return;
    case OPT_DURATION:
        duration_format(o->min, lo, sizeof(lo));
        duration_format(o->max, hi, sizeof(hi));
        if (o->max == INT64_MAX && o->min == 0)
            snprintf(out, size, "duration");
        else if (o->max == INT64_MAX)
            snprintf(out, size, "duration >= %s", lo);
        else
            snprintf(out, size, "duration %s..%s", lo, hi);
        return;
    case OPT_BOOL: snprintf(out, size, "bool"); return;
    case OPT_ENUM: {
        size_t j = 0;
        out[0] = '\0';
        for (const opt_enum_t *e = o->names; e->name && j < size; e++)
            j += (size_t)snprintf(out + j, size - j, "%s%s",
                                  e == o->names ? "" : ", ", e->name);
        return;
    }
    case OPT_MAP: snprintf(out, size, "map"); return;
    case OPT_KAFKA: snprintf(out, size, "map"); return;
    }
}

static void default_text(const opt_t *o, char *out, size_t size) {
    if (o->kind == OPT_MAP && !*o->def)
        snprintf(out, size, "{}");
    else if (o->kind == OPT_KAFKA) {
        const char *eq = strchr(o->def, '=');
        snprintf(out, size, "%.*s: %s", (int)(eq - o->def), o->def, eq + 1);
    } else
        snprintf(out, size, "%s", o->def);
}

static void display_name(const opt_t *o, char *name, size_t nsize, char *env,
                         size_t esize) {
    if (o->kind == OPT_KAFKA) {
        snprintf(name, nsize, "kafka.<property>");
        snprintf(env, esize, "CHURND_KAFKA_<PROPERTY>");
    } else {
        snprintf(name, nsize, "%s", o->name);
        env_name(o->name, env, esize);
    }
}

/* Markdown cell text: '|' would end the cell. */
static int md_cell(buf_t *b, const char *s, int code) {
    int rc = code ? buf_putc(b, '`') : 0;
    for (const char *p = s; !rc && *p; p++)
        rc = *p == '|' ? buf_append(b, "\\|", 2) : buf_putc(b, (uint8_t)*p);
    if (!rc && code) rc = buf_putc(b, '`');
    return rc;
}

int config_print_help(buf_t *out, int markdown) {
    char name[NAME_MAX_LEN], env[NAME_MAX_LEN], type[128], def[128];
    int rc = 0;
    if (markdown) {
        rc = buf_printf(out, "| option | env | type | default | description |\n"
                             "| --- | --- | --- | --- | --- |\n");
    } else {
        rc = buf_printf(out,
            "churnd configuration. The YAML file nests by the dots\n"
            "(batch: {max_events: 100} sets batch.max_events); the environment\n"
            "variable shown overrides the file (lists comma-separated, maps\n"
            "From=to,...); --set NAME=VALUE overrides both.\n");
    }
    for (size_t i = 0; !rc && i < N_OPTS; i++) {
        const opt_t *o = &opts[i];
        display_name(o, name, sizeof(name), env, sizeof(env));
        type_text(o, type, sizeof(type));
        default_text(o, def, sizeof(def));
        if (markdown) {
            rc = buf_append(out, "| ", 2);
            if (!rc) rc = md_cell(out, name, 1);
            if (!rc) rc = buf_append(out, " | ", 3);
            if (!rc) rc = md_cell(out, env, 1);
            if (!rc) rc = buf_append(out, " | ", 3);
            if (!rc) rc = md_cell(out, type, 0);
            if (!rc) rc = buf_append(out, " | ", 3);
            if (!rc) rc = md_cell(out, def, 1);
            if (!rc) rc = buf_append(out, " | ", 3);
            if (!rc) rc = md_cell(out, o->desc, 0);
            if (!rc) rc = buf_append(out, " |\n", 3);
        } else {
            rc = buf_printf(out, "\n%s = %s\n    %s; env %s\n    %s\n", name, def,
                            type, env, o->desc);
        }
    }
    return rc;
}

/* A YAML double-quoted scalar: JSON's string escapes are valid in it. */
static int put_yaml_str(buf_t *b, const char *s) {
    return buf_put_json_str(b, s, strlen(s));
}

int config_dump(buf_t *out, const config_t *c) {
    int rc = buf_printf(out, "kafka:\n");
    for (size_t i = 0; !rc && i < c->n_kafka; i++) {
        const char *k = c->kafka[i].key;
        int plain = 1;
        for (const char *p = k; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
                plain = 0;
        rc = buf_append(out, "  ", 2);
        if (!rc) rc = plain ? buf_append(out, k, strlen(k)) : put_yaml_str(out, k);
        if (!rc) rc = buf_append(out, ": ", 2);
        if (!rc)
            rc = put_yaml_str(out, config_is_secret(c->kafka[i].key)
                                       ? "<redacted>"
                                       : c->kafka[i].val);
        if (!rc) rc = buf_putc(out, '\n');
    }
    char section[NAME_MAX_LEN] = "";
    for (size_t i = 0; !rc && i < N_OPTS; i++) {
        const opt_t *o = &opts[i];
        if (o->kind == OPT_KAFKA) continue;
        const char *dot = strrchr(o->name, '.');
        size_t sl = (size_t)(dot - o->name);
        if (strlen(section) != sl || strncmp(section, o->name, sl)) {
            snprintf(section, sizeof(section), "%.*s", (int)sl, o->name);
            rc = buf_printf(out, "%s:\n", section);
        }
        if (!rc) rc = buf_printf(out, "  %s: ", dot + 1);
        char tmp[DURATION_FORMAT_MAX];
        int64_t v = o->kind == OPT_INT || o->kind == OPT_SIZE ||
                            o->kind == OPT_DURATION || o->kind == OPT_BOOL ||
                            o->kind == OPT_ENUM
                        ? load_num(c, o)
                        : 0;
        switch (o->kind) {
        case OPT_STRING:
            if (!rc) rc = put_yaml_str(out, *(char *const *)cfield(c, o->off));
            break;
        case OPT_LIST: {
            char *const *l = *(char **const *)cfield(c, o->off);
            size_t n = *(const size_t *)cfield(c, o->off_n);
            if (!rc) rc = buf_putc(out, '[');
            for (size_t j = 0; !rc && j < n; j++) {
                if (j) rc = buf_append(out, ", ", 2);
                if (!rc) rc = put_yaml_str(out, l[j]);
            }
            if (!rc) rc = buf_putc(out, ']');
            break;
        }
        case OPT_MAP: {
            const event_type_map_entry_t *m =
                *(event_type_map_entry_t *const *)cfield(c, o->off);
            size_t n = *(const size_t *)cfield(c, o->off_n);
            if (!rc) rc = buf_putc(out, '{');
            for (size_t j = 0; !rc && j < n; j++) {
                if (j) rc = buf_append(out, ", ", 2);
                if (!rc) rc = put_yaml_str(out, m[j].from);
                if (!rc) rc = buf_append(out, ": ", 2);
                if (!rc) rc = put_yaml_str(out, m[j].to);
            }
            if (!rc) rc = buf_putc(out, '}');
            break;
        }
        case OPT_INT:
            if (!rc) rc = buf_printf(out, "%" PRId64, v);
            break;
        case OPT_SIZE:
            format_size(v, tmp, sizeof(tmp));
            if (!rc) rc = buf_printf(out, "%s", tmp);
            break;
        case OPT_DURATION:
            duration_format(v, tmp, sizeof(tmp));
            if (!rc) rc = buf_printf(out, "%s", tmp);
            break;
        case OPT_BOOL:
            if (!rc) rc = buf_printf(out, "%s", v ? "true" : "false");
            break;
        case OPT_ENUM: {
            const char *nm = "?";
            for (const opt_enum_t *e = o->names; e->name; e++)
                if (e->value == v) nm = e->name;
            if (!rc) rc = buf_printf(out, "%s", nm);
            break;
        }
        case OPT_KAFKA: break;
        }
        if (!rc) rc = buf_putc(out, '\n');
    }
    return rc;
}

/* ---- introspection for tests and tools --------------------------------- */

size_t config_n_options(void) { return N_OPTS; }

const char *config_option_name(size_t i) {
    return i < N_OPTS ? opts[i].name : NULL;
}
