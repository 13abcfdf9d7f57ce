/*
 * ruletest.c - `churnd test FILE...`: rule unit tests in the spirit of
 * `promtool test rules`. A test file names a rules directory (relative to
 * the file) and a list of cases; each case is a list of events, an
 * optional `until:` time, and exactly the alerts expected:
 *
 *   rules: ..
 *   lateness: 0s            # optional, default 0s
 *   tests:
 *     - name: fires on the second postponement
 *       events:
 *         - {id: e1, type: meeting.postponed, client_id: A,
 *            ts: "2026-03-01T10:00:00Z", data: {meeting_id: M1}}
 *       until: "2026-03-10T00:00:00Z"
 *       alerts:
 *         - {rule: meetings_postponed, client: A, status: firing,
 *            at: "2026-03-02T10:00:00Z"}
 *
 * Every case runs the daemon's processor (through the replay driver,
 * cli.h) on a fresh state directory: events in file order on one
 * partition, timers fired after each event up to the watermark (largest
 * event time - lateness), then up to `until:`. Expected and produced
 * alerts are compared as multisets of (rule, client, status, at); a
 * failure prints what is missing and what is unexpected, in the file's own
 * flow syntax so a line can be pasted back.
 *
 * The whole file is validated before any case runs (unknown keys, bad
 * times, events the daemon would dead-letter, an invalid rules directory):
 * an invalid file runs nothing and is reported with file:line:column.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "churnd/cli.h"
#include "churnd/config.h"
#include "churnd/expr.h"
#include "churnd/timeutil.h"

#define TEST_MAX_FILE_BYTES (16u << 20)
#define TEST_MAX_DEPTH 64      /* nesting of an event's YAML */
#define TEST_MAX_ERRORS 50

typedef struct want {
    char *rule, *client;
    alert_status_t status;
    int64_t at_ms;
    int matched;
} want_t;

typedef struct got {
    char *rule, *client;
    alert_status_t status;
    int64_t at_ms;
    unsigned repeat;
    int matched;
} got_t;

typedef struct tcase {
    char *name;
    int line;
    event_t *events;
    size_t n_events;
    int64_t until_ms;      /* REPLAY_NONE when absent */
    want_t *want;
    size_t n_want;
} tcase_t;

typedef struct tfile {
    const char *path;
    yaml_document_t doc;
    int has_doc;
    char *rules_dir;       /* resolved against the file's directory */
    int rules_line, rules_col;
    int64_t lateness_ms;
    tcase_t *cases;
    size_t n_cases;
    churn_errs_t errs;
    int n_errs;
    int oom;
    const event_config_t *ecfg;
} tfile_t;

/* ---- errors and YAML helpers ------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static void terr(tfile_t *f, const yaml_node_t *n, const char *fmt, ...) {
    if (++f->n_errs > TEST_MAX_ERRORS) return;
    churn_err_t e;
    va_list ap;
    va_start(ap, fmt);
    churn_err_setv(&e, CHURN_EINVAL, fmt, ap);
    va_end(ap);
    snprintf(e.file, sizeof(e.file), "%s", f->path);
    e.line = n ? (int)n->start_mark.line + 1 : 0;
    e.col = n ? (int)n->start_mark.column + 1 : 0;
    if (churn_errs_push(&f->errs, &e)) f->oom = 1;
}

static yaml_node_t *node(tfile_t *f, int id) {
    return yaml_document_get_node(&f->doc, id);
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int is_plain(const yaml_node_t *n) {
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static const char *node_kind(const yaml_node_t *n) {
    if (!n) return "nothing";
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

/* What a plain (unquoted) scalar means, as YAML 1.2's core schema reads
 * it. Quoted scalars are always strings. */
typedef enum plain_kind { PLAIN_STR, PLAIN_NULL, PLAIN_TRUE, PLAIN_FALSE, PLAIN_NUM } plain_kind_t;

static int is_one_of(const char *s, const char *const *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, v[i])) return 1;
    return 0;
}

static plain_kind_t plain_kind(const char *s) {
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    static const char *const trues[] = {"true", "True", "TRUE"};
    static const char *const falses[] = {"false", "False", "FALSE"};
    if (is_one_of(s, nulls, CHURN_ARRAY_LEN(nulls))) return PLAIN_NULL;
    if (is_one_of(s, trues, CHURN_ARRAY_LEN(trues))) return PLAIN_TRUE;
    if (is_one_of(s, falses, CHURN_ARRAY_LEN(falses))) return PLAIN_FALSE;
    /* [-+]? ( \.[0-9]+ | [0-9]+ (\.[0-9]*)? ) ([eE][-+]?[0-9]+)? */
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    size_t int_digits = 0, frac_digits = 0;
    while (*p >= '0' && *p <= '9') p++, int_digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, frac_digits++;
    }
    if (int_digits == 0 && frac_digits == 0) return PLAIN_STR;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (!(*p >= '0' && *p <= '9')) return PLAIN_STR;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p ? PLAIN_STR : PLAIN_NUM;
}

static int is_null(const yaml_node_t *n) {
    const char *s = scalar(n);
    return s && is_plain(n) && plain_kind(s) == PLAIN_NULL;
}

/* Check a mapping's keys: scalars, known, not repeated. Returns the number
 * of problems (each reported). */
static int check_keys(tfile_t *f, yaml_node_t *map, const char *const *allowed,
                      size_t n_allowed, const char *what) {
    int bad = 0;
    yaml_node_pair_t *b = map->data.mapping.pairs.start;
    yaml_node_pair_t *e = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = b; p < e; p++) {
        yaml_node_t *k = node(f, p->key);
        const char *ks = scalar(k);
        if (!ks) {
            terr(f, k ? k : map, "%s: keys must be names, not %s", what, node_kind(k));
            bad++;
            continue;
        }
        for (yaml_node_pair_t *q = b; q < p; q++) {
            const char *qs = scalar(node(f, q->key));
            if (qs && !strcmp(qs, ks)) {
                terr(f, k, "duplicate key '%s' in %s (first at line %zu)", ks, what,
                     node(f, q->key)->start_mark.line + 1);
                bad++;
                break;
            }
        }
        if (!allowed || is_one_of(ks, allowed, n_allowed)) continue;
        const char *sug = expr_suggest(ks, strlen(ks), allowed, n_allowed);
        char list[256] = "";
        size_t ll = 0;
        for (size_t j = 0; j < n_allowed && ll < sizeof(list); j++)
            ll += (size_t)snprintf(list + ll, sizeof(list) - ll, "%s%s", j ? ", " : "",
                                   allowed[j]);
        if (sug)
            terr(f, k, "unknown key '%s' in %s (did you mean '%s'?)", ks, what, sug);
        else
            terr(f, k, "unknown key '%s' in %s; expected %s", ks, what, list);
        bad++;
    }
    return bad;
}

static yaml_node_t *get(tfile_t *f, yaml_node_t *map, const char *key) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        const char *ks = scalar(node(f, p->key));
        if (ks && !strcmp(ks, key)) return node(f, p->value);
    }
    return NULL;
}

/* A non-empty string scalar, or NULL with an error. */
static const char *want_text(tfile_t *f, yaml_node_t *n, const char *what) {
    const char *s = scalar(n);
    if (!s || !*s || (is_plain(n) && plain_kind(s) == PLAIN_NULL)) {
        terr(f, n, "%s must be a non-empty text, not %s", what,
             s ? "empty" : node_kind(n));
        return NULL;
    }
    return s;
}

static int want_time(tfile_t *f, yaml_node_t *n, const char *what, int64_t *ts_ms) {
    const char *s = want_text(f, n, what);
    if (!s) return -1;
    if (replay_parse_time(s, ts_ms) != 0) {
        terr(f, n, "%s: '%s' is not an RFC 3339 time (\"2026-03-01T10:00:00Z\") "
                   "or epoch milliseconds", what, s);
        return -1;
    }
    return 0;
}

/* ---- events: YAML to JSON to event_t ---------------------------------------- */

/* Build the JSON the daemon would receive from an event's YAML: plain
 * numbers, booleans and nulls keep their type, every other scalar (quoted
 * or not) is a string. */
static cJSON *to_json(tfile_t *f, yaml_node_t *n, int depth) {
    if (!n) return NULL;
    if (depth > TEST_MAX_DEPTH) {
        terr(f, n, "event nested deeper than %d levels", TEST_MAX_DEPTH);
        return NULL;
    }
    cJSON *j = NULL;
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        const char *s = scalar(n);
        plain_kind_t k = is_plain(n) ? plain_kind(s) : PLAIN_STR;
        switch (k) {
        case PLAIN_NULL: j = cJSON_CreateNull(); break;
        case PLAIN_TRUE: j = cJSON_CreateTrue(); break;
        case PLAIN_FALSE: j = cJSON_CreateFalse(); break;
        case PLAIN_NUM: j = cJSON_CreateNumber(strtod(s, NULL)); break;
        case PLAIN_STR: j = cJSON_CreateString(s); break;
        }
        break;
    }
    case YAML_SEQUENCE_NODE:
        j = cJSON_CreateArray();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             j && it < n->data.sequence.items.top; it++) {
            cJSON *c = to_json(f, node(f, *it), depth + 1);
            if (!c) {
                cJSON_Delete(j);
                return NULL;
            }
            cJSON_AddItemToArray(j, c);
        }
        break;
    case YAML_MAPPING_NODE:
        if (check_keys(f, n, NULL, 0, "an event")) return NULL;
        j = cJSON_CreateObject();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
             j && p < n->data.mapping.pairs.top; p++) {
            cJSON *c = to_json(f, node(f, p->value), depth + 1);
            if (!c) {
                cJSON_Delete(j);
                return NULL;
            }
            cJSON_AddItemToObject(j, scalar(node(f, p->key)), c);
        }
        break;
    default:
        terr(f, n, "empty node in an event");
        return NULL;
    }
    if (!j) f->oom = 1;
    return j;
}

static int parse_event(tfile_t *f, yaml_node_t *n, event_t *ev) {
    if (n->type != YAML_MAPPING_NODE) {
        terr(f, n, "an event must be a mapping such as {id: e1, type: survey.nps, "
                   "client_id: A, ts: \"2026-03-01T10:00:00Z\", data: {score: 3}}, "
                   "not %s", node_kind(n));
        return -1;
    }
    cJSON *j = to_json(f, n, 0);
    if (!j) return -1;
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) {
        f->oom = 1;
        return -1;
    }
    char detail[256] = "";
    memset(ev, 0, sizeof(*ev));
    event_reason_t why = event_parse(f->ecfg, text, strlen(text), ev, detail, sizeof(detail));
    free(text);
    if (why != EVENT_OK) {
        terr(f, n, "this event would be a dead letter (%s): %s", event_reason_name(why),
             detail);
        return -1;
    }
    ev->topic = f->path;
    ev->partition = 0;
    return 0;
}

/* ---- the file ---------------------------------------------------------------- */

static int parse_alert(tfile_t *f, yaml_node_t *n, want_t *w) {
    static const char *const keys[] = {"rule", "client", "status", "at"};
    if (n->type != YAML_MAPPING_NODE) {
        terr(f, n, "an expected alert must be a mapping {rule, client, status, at}, "
                   "not %s", node_kind(n));
        return -1;
    }
    int bad = check_keys(f, n, keys, CHURN_ARRAY_LEN(keys), "an expected alert");
    for (size_t i = 0; i < CHURN_ARRAY_LEN(keys); i++)
        if (!get(f, n, keys[i])) {
            terr(f, n, "expected alert without '%s'", keys[i]);
            bad++;
        }
    if (bad) return -1;
    const char *rule = want_text(f, get(f, n, "rule"), "rule");
    const char *client = want_text(f, get(f, n, "client"), "client");
    const char *status = want_text(f, get(f, n, "status"), "status");
    if (!rule || !client || !status) return -1;
    if (!strcmp(status, "firing")) {
        w->status = ALERT_FIRING;
    } else if (!strcmp(status, "resolved")) {
        w->status = ALERT_RESOLVED;
    } else {
        terr(f, get(f, n, "status"), "status '%s': expected firing or resolved", status);
        return -1;
    }
    if (want_time(f, get(f, n, "at"), "at", &w->at_ms)) return -1;
    w->rule = strdup(rule);
    w->client = strdup(client);
    if (!w->rule || !w->client) f->oom = 1;
    return 0;
}

static void parse_case(tfile_t *f, yaml_node_t *n, tcase_t *tc) {
    static const char *const keys[] = {"name", "events", "until", "alerts"};
    tc->line = (int)n->start_mark.line + 1;
    tc->until_ms = REPLAY_NONE;
    if (n->type != YAML_MAPPING_NODE) {
        terr(f, n, "a test must be a mapping {name, events, until, alerts}, not %s",
             node_kind(n));
        return;
    }
    check_keys(f, n, keys, CHURN_ARRAY_LEN(keys), "a test");
    yaml_node_t *name = get(f, n, "name");
    if (!name) {
        terr(f, n, "test without a name");
    } else {
        const char *s = want_text(f, name, "name");
        if (s && !(tc->name = strdup(s))) f->oom = 1;
    }
    yaml_node_t *until = get(f, n, "until");
    if (until && !is_null(until)) want_time(f, until, "until", &tc->until_ms);

    yaml_node_t *evs = get(f, n, "events");
    if (evs && !is_null(evs)) {
        if (evs->type != YAML_SEQUENCE_NODE) {
            terr(f, evs, "events must be a list, not %s", node_kind(evs));
        } else {
            size_t cnt = (size_t)(evs->data.sequence.items.top - evs->data.sequence.items.start);
            tc->events = calloc(cnt ? cnt : 1, sizeof(*tc->events));
            if (!tc->events) {
                f->oom = 1;
                return;
            }
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *e = node(f, evs->data.sequence.items.start[i]);
                if (parse_event(f, e, &tc->events[tc->n_events]) == 0) {
                    tc->events[tc->n_events].offset = (int64_t)e->start_mark.line + 1;
                    tc->n_events++;
                }
            }
        }
    }
    yaml_node_t *als = get(f, n, "alerts");
    if (als && !is_null(als)) {
        if (als->type != YAML_SEQUENCE_NODE) {
            terr(f, als, "alerts must be a list (or [] for none), not %s", node_kind(als));
        } else {
            size_t cnt = (size_t)(als->data.sequence.items.top - als->data.sequence.items.start);
            tc->want = calloc(cnt ? cnt : 1, sizeof(*tc->want));
            if (!tc->want) {
                f->oom = 1;
                return;
            }
            for (size_t i = 0; i < cnt; i++)
                if (parse_alert(f, node(f, als->data.sequence.items.start[i]),
                                &tc->want[tc->n_want]) == 0)
                    tc->n_want++;
        }
    }
}

static char *read_all(const char *path, size_t *len, churn_err_t *err) {
    FILE *in = fopen(path, "rb");
    if (!in) {
        churn_err_at(err, CHURN_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    buf_t b;
    buf_init(&b);
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof(chunk), in)) > 0) {
        rc = buf_append(&b, chunk, n);
        if (b.len > TEST_MAX_FILE_BYTES) rc = CHURN_ELIMIT;
    }
    int bad = ferror(in);
    fclose(in);
    if (rc || bad || buf_putc(&b, '\0')) {
        churn_err_at(err, CHURN_EIO, path, 0, 0, "%s",
                     bad ? "cannot read the file"
                     : rc == CHURN_ELIMIT ? "file larger than 16 MiB" : "out of memory");
        buf_free(&b);
        return NULL;
    }
    *len = b.len - 1;
    return (char *)b.data; /* handed over: the caller frees it */
}

/* The rules directory, relative to the test file's directory. */
static char *resolve_dir(const char *file, const char *dir) {
    const char *slash = strrchr(file, '/');
    if (dir[0] == '/' || !slash) return strdup(dir);
    size_t n = (size_t)(slash - file) + 1 + strlen(dir) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%.*s/%s", (int)(slash - file), file, dir);
    return s;
}

/* Parse and validate the whole file. 0, or -1 with f->errs filled. */
static int tfile_load(tfile_t *f) {
    static const char *const keys[] = {"rules", "lateness", "tests"};
    churn_err_t e = {0};
    size_t len = 0;
    char *text = read_all(f->path, &len, &e);
    if (!text) {
        f->n_errs++;
        if (churn_errs_push(&f->errs, &e)) f->oom = 1;
        return -1;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        f->oom = 1;
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &f->doc)) {
        yaml_node_t at = {.start_mark = parser.problem_mark};
        terr(f, &at, "YAML syntax error: %s%s%s",
             parser.problem ? parser.problem : "cannot parse",
             parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        free(text);
        return -1;
    }
    yaml_parser_delete(&parser);
    free(text);
    f->has_doc = 1;

    yaml_node_t *root = yaml_document_get_root_node(&f->doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        yaml_node_t top = {0};
        terr(f, root ? root : &top, "a test file is a mapping with rules: and tests:, "
                                    "not %s", node_kind(root));
        return -1;
    }
    check_keys(f, root, keys, CHURN_ARRAY_LEN(keys), "the test file");
    yaml_node_t *rules = get(f, root, "rules");
    if (!rules) {
        terr(f, root, "missing 'rules': the rules directory, relative to this file");
    } else {
        const char *s = want_text(f, rules, "rules");
        if (s && !(f->rules_dir = resolve_dir(f->path, s))) f->oom = 1;
        f->rules_line = (int)rules->start_mark.line + 1;
        f->rules_col = (int)rules->start_mark.column + 1;
    }
    yaml_node_t *late = get(f, root, "lateness");
    if (late && !is_null(late)) {
        const char *s = want_text(f, late, "lateness");
        if (s && duration_parse(s, strlen(s), &f->lateness_ms) != 0)
            terr(f, late, "lateness '%s' is not a duration such as 0s, 5m or 1h", s);
    }
    yaml_node_t *tests = get(f, root, "tests");
    if (!tests) {
        terr(f, root, "missing 'tests': the list of test cases");
    } else if (tests->type != YAML_SEQUENCE_NODE) {
        terr(f, tests, "tests must be a list, not %s", node_kind(tests));
    } else {
        size_t cnt = (size_t)(tests->data.sequence.items.top - tests->data.sequence.items.start);
        if (cnt == 0) terr(f, tests, "no test cases");
        f->cases = calloc(cnt ? cnt : 1, sizeof(*f->cases));
        if (!f->cases) {
            f->oom = 1;
            return -1;
        }
        for (size_t i = 0; i < cnt && !f->oom; i++) {
            f->n_cases++;
            parse_case(f, node(f, tests->data.sequence.items.start[i]), &f->cases[i]);
        }
    }
    if (f->oom) {
        churn_err_t m;
        churn_err_set(&m, CHURN_ENOMEM, "out of memory");
        f->n_errs++;
        churn_errs_push(&f->errs, &m);
    }
    return f->n_errs ? -1 : 0;
}

static void tfile_free(tfile_t *f) {
    for (size_t i = 0; i < f->n_cases; i++) {
        tcase_t *tc = &f->cases[i];
        for (size_t j = 0; j < tc->n_events; j++) event_clear(&tc->events[j]);
        for (size_t j = 0; j < tc->n_want; j++) {
            free(tc->want[j].rule);
            free(tc->want[j].client);
        }
        free(tc->events);
        free(tc->want);
        free(tc->name);
    }
    free(f->cases);
    free(f->rules_dir);
    if (f->has_doc) yaml_document_delete(&f->doc);
    churn_errs_free(&f->errs);
}

/* ---- running a case ---------------------------------------------------------- */

typedef struct got_list {
    got_t *v;
    size_t n, cap;
} got_list_t;

static void got_free(got_list_t *g) {
    for (size_t i = 0; i < g->n; i++) {
        free(g->v[i].rule);
        free(g->v[i].client);
    }
    free(g->v);
}

/* Move the driver's alerts into g. */
static int take_alerts(replay_t *r, got_list_t *g) {
    for (size_t i = 0; i < r->out.n_alerts; i++) {
        const alert_t *a = &r->out.alerts[i];
        if (g->n == g->cap) {
            size_t cap = g->cap ? g->cap * 2 : 16;
            got_t *v = realloc(g->v, cap * sizeof(*v));
            if (!v) return CHURN_ENOMEM;
            g->v = v;
            g->cap = cap;
        }
        got_t *x = &g->v[g->n];
        *x = (got_t){.rule = strdup(a->rule), .client = strdup(a->client_id),
                     .status = a->status, .at_ms = a->at_ms, .repeat = a->repeat};
        g->n++;
        if (!x->rule || !x->client) return CHURN_ENOMEM;
    }
    engine_out_reset(&r->out);
    return 0;
}

typedef struct run_ctx {
    const ruleset_t *rs;
    const engine_opts_t *opts;
    size_t cache_clients;
    int64_t lateness_ms;
    const char *state_base; /* a temporary directory: one subdirectory per case */
    unsigned seq;
} run_ctx_t;

/* Run one case on a fresh state directory. 0 or a negative code with err. */
static int run_case(run_ctx_t *c, const tcase_t *tc, got_list_t *g, churn_err_t *err) {
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/case-%u", c->state_base, c->seq++);
    store_opts_t so = {.dir = dir, .mode = STORE_READ_WRITE};
    store_t *store = NULL;
    int rc = store_open(&so, &store, err);
    if (rc) return rc;
    replay_t r;
    rc = replay_init(&r, store, c->rs, c->cache_clients, c->opts, c->lateness_ms);
    if (rc) churn_err_set(err, rc, "out of memory");
    /* Tests are small: fire timers after every event, as a daemon whose
     * batches hold one event each would. */
    for (size_t i = 0; !rc && i < tc->n_events; i++) {
        rc = replay_event(&r, &tc->events[i], err);
        if (rc >= 0) rc = replay_settle(&r, REPLAY_NONE, err);
        if (rc >= 0) rc = take_alerts(&r, g);
    }
    if (!rc) rc = replay_finish(&r, tc->until_ms, err);
    if (!rc) rc = take_alerts(&r, g);
    if (rc == CHURN_ENOMEM) churn_err_set(err, rc, "out of memory");
    replay_close(&r);
    store_close(store);
    replay_rmtree(dir);
    return rc < 0 ? rc : 0;
}

/* ---- comparing and printing --------------------------------------------------- */

static const char *status_name(alert_status_t s) {
    return s == ALERT_RESOLVED ? "resolved" : "firing";
}

/* A value as it can be pasted back into the file: quoted when a plain
 * scalar would read differently or not parse. */
static void put_scalar(FILE *out, const char *s) {
    int plain = *s && plain_kind(s) == PLAIN_STR;
    for (const char *p = s; plain && *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || strchr("_-./@", *p)))
            plain = 0;
    if (plain) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

static void put_alert(FILE *out, const char *rule, const char *client,
                      alert_status_t status, int64_t at_ms, unsigned repeat) {
    char at[TIME_RFC3339_MAX];
    time_format_rfc3339(at_ms, at, sizeof(at));
    fputs("      - {rule: ", out);
    put_scalar(out, rule);
    fputs(", client: ", out);
    put_scalar(out, client);
    fprintf(out, ", status: %s, at: \"%s\"}", status_name(status), at);
    if (repeat) fprintf(out, "  # repeat %u", repeat);
    fputc('\n', out);
}

static int same(const want_t *w, const got_t *g) {
    return w->status == g->status && w->at_ms == g->at_ms && !strcmp(w->rule, g->rule) &&
           !strcmp(w->client, g->client);
}

/* Multiset comparison; prints the diff. Returns 1 when equal. */
static int compare(FILE *out, tcase_t *tc, got_list_t *g) {
    size_t missing = 0, unexpected = g->n;
    for (size_t i = 0; i < tc->n_want; i++) {
        want_t *w = &tc->want[i];
        w->matched = 0;
        for (size_t j = 0; j < g->n && !w->matched; j++)
            if (!g->v[j].matched && same(w, &g->v[j])) {
                g->v[j].matched = 1;
                w->matched = 1;
                unexpected--;
            }
        if (!w->matched) missing++;
    }
    if (!missing && !unexpected) return 1;
    if (missing) {
        fprintf(out, "    missing (expected, not produced):\n");
        for (size_t i = 0; i < tc->n_want; i++)
            if (!tc->want[i].matched)
                put_alert(out, tc->want[i].rule, tc->want[i].client, tc->want[i].status,
                          tc->want[i].at_ms, 0);
    }
    if (unexpected) {
        fprintf(out, "    unexpected (produced, not expected):\n");
        for (size_t j = 0; j < g->n; j++)
            if (!g->v[j].matched)
                put_alert(out, g->v[j].rule, g->v[j].client, g->v[j].status,
                          g->v[j].at_ms, g->v[j].repeat);
    }
    fprintf(out, "    got, in order:\n");
    if (g->n == 0) fprintf(out, "      (no alerts)\n");
    for (size_t j = 0; j < g->n; j++)
        put_alert(out, g->v[j].rule, g->v[j].client, g->v[j].status, g->v[j].at_ms,
                  g->v[j].repeat);
    return 0;
}

/* In file order, whatever order the checks found them in. */
static void sort_errs(churn_errs_t *errs) {
    for (size_t i = 1; i < errs->n; i++) {
        churn_err_t e = errs->v[i];
        size_t j = i;
        for (; j > 0 && (errs->v[j - 1].line > e.line ||
                         (errs->v[j - 1].line == e.line && errs->v[j - 1].col > e.col));
             j--)
            errs->v[j] = errs->v[j - 1];
        errs->v[j] = e;
    }
}

static void print_errs(const churn_errs_t *errs) {
    char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", churn_err_str(&errs->v[i], line, sizeof(line)));
}

/* ---- churnd test ---------------------------------------------------------------- */

typedef struct totals {
    unsigned passed, failed, invalid_files;
} totals_t;

static void test_file(const char *path, const config_t *cfg, const char *state_base,
                      unsigned *seq, totals_t *t) {
    tfile_t f = {.path = path, .ecfg = &cfg->event};
    churn_errs_init(&f.errs);
    ruleset_t *rs = NULL;
    int ok = tfile_load(&f) == 0;
    if (ok) {
        churn_errs_t rerrs;
        churn_errs_init(&rerrs);
        if (ruleset_load_dir(f.rules_dir, &rs, &rerrs) != 0) {
            churn_err_t e;
            churn_err_at(&e, CHURN_EINVAL, path, f.rules_line, f.rules_col,
                         "rules directory %s is invalid (%zu error%s below)", f.rules_dir,
                         rerrs.n, rerrs.n == 1 ? "" : "s");
            char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
            fprintf(stderr, "%s\n", churn_err_str(&e, line, sizeof(line)));
            print_errs(&rerrs);
            ok = 0;
        }
        churn_errs_free(&rerrs);
    } else {
        sort_errs(&f.errs);
        print_errs(&f.errs);
        if (f.n_errs > TEST_MAX_ERRORS)
            fprintf(stderr, "%s: %d more errors not shown\n", path,
                    f.n_errs - TEST_MAX_ERRORS);
    }
    if (!ok) {
        fprintf(stderr, "%s: invalid test file, no test run\n", path);
        t->invalid_files++;
        tfile_free(&f);
        return;
    }

    engine_opts_t eopts = {.dedup_window_ms = cfg->dedup_window_ms,
                           .dedup_max_ids = (unsigned)cfg->dedup_max_ids,
                           .ledger = cfg->state_ledger};
    run_ctx_t rc = {.rs = rs, .opts = &eopts, .cache_clients = (size_t)cfg->cache_clients,
                    .lateness_ms = f.lateness_ms, .state_base = state_base, .seq = *seq};
    for (size_t i = 0; i < f.n_cases; i++) {
        tcase_t *tc = &f.cases[i];
        got_list_t g = {0};
        churn_err_t err = {0};
        if (run_case(&rc, tc, &g, &err) != 0) {
            char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
            printf("FAIL %s\n    %s:%d: cannot run: %s\n", tc->name, path, tc->line,
                   churn_err_str(&err, line, sizeof(line)));
            t->failed++;
        } else {
            /* Decide first, print the header, then the diff under it. */
            char *diff = NULL;
            size_t diff_len = 0;
            FILE *mem = open_memstream(&diff, &diff_len);
            int pass = mem ? compare(mem, tc, &g) : 0;
            if (mem) fclose(mem);
            if (pass) {
                printf("ok   %s\n", tc->name);
                t->passed++;
            } else {
                printf("FAIL %s\n    at %s:%d\n%s", tc->name, path, tc->line,
                       diff ? diff : "    (out of memory)\n");
                t->failed++;
            }
            free(diff);
        }
        got_free(&g);
    }
    *seq = rc.seq;
    ruleset_free(rs);
    tfile_free(&f);
}

int cmd_test(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: churnd test TEST_FILE...\n");
        return argc < 2 ? 1 : 0;
    }
    char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
    churn_err_t err = {0};
    config_t cfg; /* the daemon's defaults: envelope paths, dedup, cache */
    if (config_init(&cfg, &err) != 0) {
        fprintf(stderr, "churnd test: %s\n", churn_err_str(&err, line, sizeof(line)));
        config_free(&cfg);
        return 1;
    }
    char base[512];
    if (replay_mkdtemp("churnd-test", base, sizeof(base), &err) != 0) {
        fprintf(stderr, "churnd test: %s\n", churn_err_str(&err, line, sizeof(line)));
        config_free(&cfg);
        return 1;
    }
    totals_t t = {0};
    unsigned seq = 0;
    for (int i = 1; i < argc; i++) {
        test_file(argv[i], &cfg, base, &seq, &t);
        fflush(stdout);
    }
    replay_rmtree(base);
    config_free(&cfg);
    printf("%u passed, %u failed\n", t.passed, t.failed);
    if (t.invalid_files)
        fprintf(stderr, "%u invalid test file%s\n", t.invalid_files,
                t.invalid_files == 1 ? "" : "s");
    return t.passed + t.failed == 0 || t.failed || t.invalid_files ? 1 : 0;
}
