/*
 * rules_load.c - reading a rules directory into one validated rule set
 * (SPEC section 2). The only file I/O of the pure core.
 *
 * Every *.yaml / *.yml file (hidden files skipped) is parsed with libyaml's
 * document API, in byte order of file names, keeping each node's
 * line:column. Then, in order: vars (their types), segments, features,
 * rules -- names are collected from all files before any expression is
 * compiled, so a rule may use a feature or firing("rule") defined in a
 * later file. Errors do not stop the load: each is recorded with
 * file:line:column and the set is rejected at the end if there was any, so
 * `churnd check` shows everything at once (capped at RULES_MAX_ERRORS).
 *
 * Robustness: files are size-bounded, mappings are bounded, the walk only
 * descends where the schema expects structure (an alias bomb is never
 * expanded), and every expression goes through expr.c's bounded compiler.
 *
 * Must not: read a clock, keep file handles or YAML documents after
 * returning.
 */
#include "churnd/rules.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "churnd/timeutil.h"

/* ---- Error lists ------------------------------------------------------- */

void churn_errs_init(churn_errs_t *e) {
    e->v = NULL;
    e->n = 0;
    e->cap = 0;
}

void churn_errs_free(churn_errs_t *e) {
    free(e->v);
    churn_errs_init(e);
}

int churn_errs_push(churn_errs_t *e, const churn_err_t *err) {
    churn_err_t *v = churn_grow(e->v, e->n, &e->cap, sizeof(*v), 8);
    if (!v) return CHURN_ENOMEM;
    e->v = v;
    e->v[e->n++] = *err;
    return 0;
}

/* ---- Loader state ------------------------------------------------------- */

#define MAX_MAP_PAIRS 4096
#define MAX_DEFS 4096

typedef struct file {
    char *path;      /* owned by the rule set (rs->files) */
    char *text;      /* owned until the end of the load */
    size_t len;
    yaml_document_t doc;
    int has_doc;
} file_t;

/* One named definition found in a file, compiled later. */
typedef struct entry {
    const char *name; /* borrowed from the YAML document */
    yaml_node_t *val;
    file_t *f;
    yaml_mark_t mark; /* of the name */
} entry_t;

typedef struct entries {
    entry_t *v;
    size_t n, cap;
} entries_t;

typedef struct loader {
    churn_errs_t *errs;
    size_t n_errs;
    int oom;
    ruleset_t *rs;
    file_t *files;
    size_t n_files;
    entries_t vars, feats, rules;
    entry_t segments; /* val NULL when none */
    entry_t risk;     /* val NULL when none */
    expr_scope_t scope;
    const char **feature_names;
    uint8_t *feature_kinds;
    uint8_t *feature_has_value;
} loader_t;

static void push_err(loader_t *L, const churn_err_t *e) {
    if (L->n_errs >= RULES_MAX_ERRORS) {
        if (L->n_errs == RULES_MAX_ERRORS) {
            churn_err_t more;
            churn_err_set(&more, CHURN_EINVAL,
                          "too many errors; stopping after %d",
                          RULES_MAX_ERRORS);
            if (churn_errs_push(L->errs, &more)) L->oom = 1;
        }
        L->n_errs++;
        return;
    }
    L->n_errs++;
    if (churn_errs_push(L->errs, e)) L->oom = 1;
}

__attribute__((format(printf, 4, 5)))
static void lerr(loader_t *L, const file_t *f, yaml_mark_t m, const char *fmt,
                 ...) {
    churn_err_t e;
    va_list ap;
    va_start(ap, fmt);
    churn_err_setv(&e, CHURN_EINVAL, fmt, ap);
    va_end(ap);
    snprintf(e.file, sizeof(e.file), "%s", f ? f->path : "");
    e.line = f ? (int)m.line + 1 : 0;
    e.col = f ? (int)m.column + 1 : 0;
    push_err(L, &e);
}

/* ---- YAML helpers ------------------------------------------------------- */

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value
                                            : NULL;
}

static size_t scalar_len(const yaml_node_t *n) {
    return n->data.scalar.length;
}

static int is_plain(const yaml_node_t *n) {
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static yaml_node_t *node(file_t *f, int id) {
    return yaml_document_get_node(&f->doc, id);
}

/* A YAML null: empty plain scalar, "~" or "null". */
static int is_null_node(const yaml_node_t *n) {
    const char *s = scalar(n);
    return s && is_plain(n) &&
           (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
            !strcmp(s, "NULL"));
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

/* Check a mapping's keys: scalars, known, not repeated. Returns the
 * number of problems found (each reported). */
static int check_keys(loader_t *L, file_t *f, yaml_node_t *map,
                      const char *const *allowed, size_t n_allowed,
                      const char *what) {
    int bad = 0;
    yaml_node_pair_t *b = map->data.mapping.pairs.start;
    yaml_node_pair_t *e = map->data.mapping.pairs.top;
    if (e - b > MAX_MAP_PAIRS) {
        lerr(L, f, map->start_mark, "%s has more than %d entries", what,
             MAX_MAP_PAIRS);
        return 1;
    }
    for (yaml_node_pair_t *p = b; p < e; p++) {
        yaml_node_t *k = node(f, p->key);
        const char *ks = scalar(k);
        if (!ks) {
            lerr(L, f, k ? k->start_mark : map->start_mark,
                 "%s: keys must be plain names, not %s", what, node_kind(k));
            bad++;
            continue;
        }
        for (yaml_node_pair_t *q = b; q < p; q++) {
            const char *qs = scalar(node(f, q->key));
            if (qs && strcmp(qs, ks) == 0) {
                lerr(L, f, k->start_mark,
                     "duplicate key '%s' in %s (first at line %zu)", ks, what,
                     node(f, q->key)->start_mark.line + 1);
                bad++;
                break;
            }
        }
        if (!allowed) continue;
        size_t i;
        for (i = 0; i < n_allowed && strcmp(allowed[i], ks) != 0; i++)
            ;
        if (i < n_allowed) continue;
        const char *sug = expr_suggest(ks, strlen(ks), allowed, n_allowed);
        char list[256] = "";
        size_t ll = 0;
        for (size_t j = 0; j < n_allowed && ll < sizeof(list); j++)
            ll += (size_t)snprintf(list + ll, sizeof(list) - ll, "%s%s",
                                   j ? ", " : "", allowed[j]);
        if (sug)
            lerr(L, f, k->start_mark,
                 "unknown key '%s' in %s (did you mean '%s'?)", ks, what, sug);
        else
            lerr(L, f, k->start_mark, "unknown key '%s' in %s; expected %s", ks,
                 what, list);
        bad++;
    }
    return bad;
}

/* The value of key in a mapping (first occurrence), or NULL. */
static yaml_node_t *get(file_t *f, yaml_node_t *map, const char *key) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        const char *ks = scalar(node(f, p->key));
        if (ks && strcmp(ks, key) == 0) return node(f, p->value);
    }
    return NULL;
}

static int valid_name(const char *s, size_t len, int allow_dash) {
    if (len == 0 || len > RULES_MAX_NAME) return 0;
    if (!isalpha((unsigned char)s[0]) && s[0] != '_') return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && !(allow_dash && c == '-')) return 0;
    }
    return 1;
}

static const char *const reserved[] = {
    "now", "risk", "and", "or", "not", "in", "true", "false", "null",
    "data", "event", "client", "expectation",
};

static int is_reserved(const char *s) {
    for (size_t i = 0; i < CHURN_ARRAY_LEN(reserved); i++)
        if (strcmp(reserved[i], s) == 0) return 1;
    return 0;
}

/* ---- Expression error positions ----------------------------------------- */

/* The length in bytes of the line break at f->text[i], 0 when none. Lines
 * must be split as libyaml splits them, or the marks it gives would point
 * elsewhere: CR LF, CR and LF, and NEL, LS and PS in UTF-8. */
static size_t break_len(const file_t *f, size_t i) {
    const unsigned char *t = (const unsigned char *)f->text;
    size_t n = f->len;
    if (t[i] == '\n') return 1;
    if (t[i] == '\r') return i + 1 < n && t[i + 1] == '\n' ? 2 : 1;
    if (t[i] == 0xc2 && i + 1 < n && t[i + 1] == 0x85) return 2;
    if (t[i] == 0xe2 && i + 2 < n && t[i + 1] == 0x80 &&
        (t[i + 2] == 0xa8 || t[i + 2] == 0xa9))
        return 3;
    return 0;
}

/* Where the text starts: libyaml skips a UTF-8 byte order mark without
 * counting it in columns. */
static size_t text_start(const file_t *f) {
    return f->len >= 3 && memcmp(f->text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
}

/* Byte offset in f->text of a libyaml mark (line/column count characters). */
static size_t mark_offset(const file_t *f, yaml_mark_t m) {
    size_t i = text_start(f), line = 0;
    while (i < f->len && line < m.line) {
        size_t b = break_len(f, i);
        if (b) line++;
        i += b ? b : 1;
    }
    for (size_t col = 0; i < f->len && col < m.column && !break_len(f, i); col++) {
        i++;
        while (i < f->len && ((unsigned char)f->text[i] & 0xc0) == 0x80) i++;
    }
    return i;
}

/* Where in the file is byte `off` of scalar n's value? The value of a
 * quoted, folded or literal scalar differs from its source text (quotes,
 * escapes, indentation, folded newlines), so walk both together: every
 * non-space character of the value appears, in order, in the source. */
static void value_pos(const file_t *f, const yaml_node_t *n, size_t off,
                      int *line, int *col) {
    const char *v = (const char *)n->data.scalar.value;
    size_t vlen = n->data.scalar.length;
    size_t r = mark_offset(f, n->start_mark);
    size_t end = mark_offset(f, n->end_mark);
    if (end > f->len) end = f->len;
    size_t last = r;
    for (size_t i = 0; i <= off && i < vlen; i++) {
        if (isspace((unsigned char)v[i])) continue;
        size_t j = r;
        while (j < end && f->text[j] != v[i]) j++;
        if (j >= end) break; /* lost the trail: keep the last match */
        last = j;
        r = j + 1;
    }
    if (off >= vlen && vlen) last = r; /* "end of expression": just after */
    size_t ln = 0, ls = text_start(f), c = 0;
    for (size_t i = ls; i < last && i < f->len;) {
        size_t b = break_len(f, i);
        i += b ? b : 1;
        if (b) {
            ln++;
            ls = i;
        }
    }
    for (size_t i = ls; i < last; i++)
        if (((unsigned char)f->text[i] & 0xc0) != 0x80) c++;
    *line = (int)ln + 1;
    *col = (int)c + 1;
}

static void expr_error(loader_t *L, file_t *f, const yaml_node_t *n,
                       const char *where, const churn_err_t *ce, size_t off) {
    if (ce->code == CHURN_ENOMEM) {
        L->oom = 1;
        return;
    }
    churn_err_t e;
    int line, col;
    value_pos(f, n, off, &line, &col);
    churn_err_at(&e, CHURN_EINVAL, f->path, line, col, "%s: %s", where, ce->msg);
    push_err(L, &e);
}

/* ---- Type lists --------------------------------------------------------- */

static int valid_type_pattern(const char *s) {
    if (!*s) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != '*' &&
            c != ':')
            return 0;
    }
    return 1;
}

static int ts_add(type_set_t *ts, const char *s) {
    char **v = realloc(ts->v, (ts->n + 1) * sizeof(char *));
    if (!v) return CHURN_ENOMEM;
    ts->v = v;
    if (!(ts->v[ts->n] = strdup(s))) return CHURN_ENOMEM;
    ts->n++;
    return 0;
}

/* A scalar or a list of event type patterns. For rules' on:, the triggers
 * that are not event types are recognised and reported as not supported
 * yet. Returns 0 when valid. */
static int parse_trigger(loader_t *L, file_t *f, yaml_node_t *x, const char *s,
                         rule_def_t *r, const char *what);

static int parse_types(loader_t *L, file_t *f, yaml_node_t *n, type_set_t *ts,
                       const char *what, rule_def_t *r) {
    int is_trigger = r != NULL;
    yaml_node_item_t *b = NULL, *e = NULL;
    yaml_node_item_t one;
    if (n->type == YAML_SCALAR_NODE) {
        one = (yaml_node_item_t)(n - f->doc.nodes.start + 1);
        b = &one;
        e = b + 1;
    } else if (n->type == YAML_SEQUENCE_NODE) {
        b = n->data.sequence.items.start;
        e = n->data.sequence.items.top;
        if (b == e) {
            lerr(L, f, n->start_mark, "%s: empty list of event types", what);
            return -1;
        }
        if (e - b > MAX_MAP_PAIRS) {
            lerr(L, f, n->start_mark, "%s: too many event types", what);
            return -1;
        }
    } else {
        lerr(L, f, n->start_mark,
             "%s: expected an event type or a list of them, found %s", what,
             node_kind(n));
        return -1;
    }
    int bad = 0;
    for (yaml_node_item_t *it = b; it < e; it++) {
        yaml_node_t *x = node(f, *it);
        const char *s = scalar(x);
        if (!s) {
            lerr(L, f, x ? x->start_mark : n->start_mark,
                 "%s: expected an event type, found %s", what, node_kind(x));
            bad++;
            continue;
        }
        if (is_trigger &&
            ((strncmp(s, "every", 5) == 0 && (s[5] == ' ' || s[5] == '\0')) ||
             strncmp(s, "expired", 7) == 0 || strcmp(s, "alerts") == 0)) {
            if (parse_trigger(L, f, x, s, r, what)) bad++;
            continue;
        }
        if (!valid_type_pattern(s)) {
            lerr(L, f, x->start_mark,
                 "%s: '%s' is not an event type (letters, digits, . _ - and "
                 "* globs, e.g. meeting.*)",
                 what, s);
            bad++;
            continue;
        }
        int dup = 0;
        for (size_t i = 0; i < ts->n; i++) dup |= strcmp(ts->v[i], s) == 0;
        if (dup) continue;
        if (ts_add(ts, s)) {
            L->oom = 1;
            return -1;
        }
    }
    return bad ? -1 : 0;
}

/* The triggers that are not event types: every <duration>, expired(f),
 * alerts. Returns 0 when valid. */
static int parse_trigger(loader_t *L, file_t *f, yaml_node_t *x, const char *s,
                         rule_def_t *r, const char *what) {
    if (strncmp(s, "every", 5) == 0) {
        const char *d = s + 5;
        while (*d == ' ') d++;
        int64_t ms;
        if (!*d || duration_parse(d, strlen(d), &ms) != 0) {
            lerr(L, f, x->start_mark,
                 "%s: 'every' needs a duration, e.g. 'every 1d', found '%s'", what, s);
            return -1;
        }
        if (ms < 60000) {
            lerr(L, f, x->start_mark,
                 "%s: 'every %s' is too frequent (at least every 1m)", what, d);
            return -1;
        }
        if (r->every_ms) {
            lerr(L, f, x->start_mark, "%s: one 'every' schedule per rule", what);
            return -1;
        }
        r->every_ms = ms;
        return 0;
    }
    if (strcmp(s, "alerts") == 0) {
        r->on_alerts = 1;
        return 0;
    }
    /* expired(<expect feature>) */
    size_t n = strlen(s);
    if (strncmp(s, "expired(", 8) != 0 || n < 10 || s[n - 1] != ')') {
        lerr(L, f, x->start_mark,
             "%s: '%s' is not a trigger; write expired(<expect feature>)", what, s);
        return -1;
    }
    const char *name = s + 8;
    size_t len = n - 9;
    for (size_t i = 0; i < L->feats.n; i++) {
        if (strlen(L->feats.v[i].name) != len || memcmp(L->feats.v[i].name, name, len))
            continue;
        if (L->rs->features[i].kind != FEAT_EXPECT) {
            lerr(L, f, x->start_mark,
                 "%s: expired() needs an expect feature; '%.*s' is a %s", what,
                 (int)len, name, feature_kind_name(L->rs->features[i].kind));
            return -1;
        }
        if (r->expired_feat >= 0) {
            lerr(L, f, x->start_mark, "%s: one expired() trigger per rule", what);
            return -1;
        }
        r->expired_feat = (int32_t)i;
        return 0;
    }
    const char *sug = expr_suggest(name, len, L->feature_names, L->feats.n);
    lerr(L, f, x->start_mark, "%s: unknown feature '%.*s' in expired()%s%s%s", what,
         (int)len, name, sug ? " (did you mean '" : "", sug ? sug : "",
         sug ? "'?)" : "");
    return -1;
}

/* ---- Scalars ------------------------------------------------------------ */

/* Type a var's YAML scalar: plain true/false, numbers and durations are
 * typed; anything quoted, and any other plain text, is a string. */
static int scalar_value(const yaml_node_t *n, expr_val_t *v) {
    const char *s = scalar(n);
    size_t len = scalar_len(n);
    if (is_plain(n)) {
        if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
            v->type = EXPR_T_BOOL;
            v->u.b = s[0] == 't';
            return 0;
        }
        char *end;
        errno = 0;
        double x = strtod(s, &end);
        if (len && end == s + len && isfinite(x) && !isspace((unsigned char)s[0])) {
            v->type = EXPR_T_NUM;
            v->u.num = x;
            return 0;
        }
        int64_t ms;
        if (len && duration_parse(s, len, &ms) == 0) {
            v->type = EXPR_T_DUR;
            v->u.num = (double)ms;
            return 0;
        }
    }
    v->type = EXPR_T_STR;
    v->u.s.p = s;
    v->u.s.len = len;
    return 0;
}

static int parse_duration_node(loader_t *L, file_t *f, yaml_node_t *n,
                               const char *what, int64_t *ms) {
    const char *s = scalar(n);
    if (!s || duration_parse(s, scalar_len(n), ms) != 0) {
        lerr(L, f, n->start_mark,
             "%s: expected a duration such as 90s, 15m, 48h, 30d or 2w, found "
             "'%s'",
             what, s ? s : node_kind(n));
        return -1;
    }
    return 0;
}

/* ---- Pass 1: files into entries ----------------------------------------- */

static int entries_push(loader_t *L, entries_t *es, const char *name,
                        yaml_node_t *val, file_t *f, yaml_mark_t m) {
    entry_t *v = churn_grow(es->v, es->n, &es->cap, sizeof(*v), 16);
    if (!v) {
        L->oom = 1;
        return CHURN_ENOMEM;
    }
    es->v = v;
    es->v[es->n].name = name;
    es->v[es->n].val = val;
    es->v[es->n].f = f;
    es->v[es->n].mark = m;
    es->n++;
    return 0;
}

static const entry_t *entries_find(const entries_t *es, const char *name) {
    for (size_t i = 0; i < es->n; i++)
        if (strcmp(es->v[i].name, name) == 0) return &es->v[i];
    return NULL;
}

static void collect(loader_t *L, file_t *f, yaml_node_t *map, entries_t *es,
                    const char *what, int allow_dash) {
    if (map->type != YAML_MAPPING_NODE) {
        /* An empty "features:" is null: fine. */
        if (is_null_node(map)) return;
        lerr(L, f, map->start_mark, "%ss: expected a mapping of names, found %s",
             what, node_kind(map));
        return;
    }
    char title[32];
    snprintf(title, sizeof(title), "%ss", what);
    check_keys(L, f, map, NULL, 0, title);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(f, p->key);
        const char *name = scalar(k);
        if (!name) continue; /* reported by check_keys */
        int dupkey = 0;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const char *qs = scalar(node(f, q->key));
            dupkey |= qs && strcmp(qs, name) == 0;
        }
        if (dupkey) continue;
        if (!valid_name(name, scalar_len(k), allow_dash)) {
            lerr(L, f, k->start_mark,
                 "%s name '%s' must start with a letter and contain only "
                 "letters, digits and _%s (at most %d)",
                 what, name, allow_dash ? " or -" : "", RULES_MAX_NAME);
            continue;
        }
        if (!allow_dash && is_reserved(name)) {
            lerr(L, f, k->start_mark, "'%s' is a reserved word; choose another %s name",
                 name, what);
            continue;
        }
        const entry_t *prev = entries_find(es, name);
        if (prev) {
            lerr(L, f, k->start_mark, "%s '%s' is already defined at %s:%zu:%zu",
                 what, name, prev->f->path, prev->mark.line + 1,
                 prev->mark.column + 1);
            continue;
        }
        if (es->n >= MAX_DEFS) {
            lerr(L, f, k->start_mark, "more than %d %ss", MAX_DEFS, what);
            return;
        }
        entries_push(L, es, name, node(f, p->value), f, k->start_mark);
    }
}

static void load_file(loader_t *L, file_t *f) {
    FILE *fp = fopen(f->path, "rb");
    if (!fp) {
        churn_err_t e;
        churn_err_at(&e, CHURN_EINVAL, f->path, 0, 0, "cannot open: %s",
                     strerror(errno));
        push_err(L, &e);
        return;
    }
    /* Grow the buffer with what is read rather than taking the limit up
     * front: a rules file is a few KiB, and every file's text is held
     * until the load ends. One byte past the limit tells "too large". */
    size_t cap = 0;
    f->len = 0;
    for (;;) {
        if (f->len == cap) {
            if (cap > RULES_MAX_FILE_BYTES) break;
            size_t nc = cap ? cap * 2 : 16384;
            if (nc > RULES_MAX_FILE_BYTES + 1) nc = RULES_MAX_FILE_BYTES + 1;
            char *t = realloc(f->text, nc + 1);
            if (!t) {
                fclose(fp);
                L->oom = 1;
                return;
            }
            f->text = t;
            cap = nc;
        }
        size_t got = fread(f->text + f->len, 1, cap - f->len, fp);
        f->len += got;
        if (got == 0) break;
    }
    int rerr = ferror(fp);
    fclose(fp);
    if (rerr || f->len > RULES_MAX_FILE_BYTES) {
        churn_err_t e;
        churn_err_at(&e, CHURN_EINVAL, f->path, 0, 0,
                     rerr ? "cannot read the file" : "file larger than %u bytes",
                     RULES_MAX_FILE_BYTES);
        push_err(L, &e);
        f->len = 0;
        return;
    }
    f->text[f->len] = '\0';

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        L->oom = 1;
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)f->text, f->len);
    if (!yaml_parser_load(&parser, &f->doc)) {
        yaml_mark_t m = parser.problem_mark;
        if (parser.context)
            lerr(L, f, m, "YAML syntax error: %s %s", parser.problem,
                 parser.context);
        else
            lerr(L, f, m, "YAML syntax error: %s",
                 parser.problem ? parser.problem : "cannot parse");
        yaml_parser_delete(&parser);
        return;
    }
    f->has_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&f->doc);
    if (root) {
        /* A second document would be silently ignored: refuse it. */
        yaml_document_t extra;
        if (!yaml_parser_load(&parser, &extra)) {
            lerr(L, f, parser.problem_mark, "YAML syntax error: %s",
                 parser.problem ? parser.problem : "cannot parse");
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&extra);
            if (r2)
                lerr(L, f, r2->start_mark,
                     "a rules file holds one YAML document; found a second");
            yaml_document_delete(&extra);
        }
    }
    yaml_parser_delete(&parser);
    if (!root) return; /* empty file: nothing defined */
    if (root->type != YAML_MAPPING_NODE) {
        if (is_null_node(root)) return;
        lerr(L, f, root->start_mark,
             "expected a mapping with vars, segments, features and rules, "
             "found %s",
             node_kind(root));
        return;
    }
    static const char *const top[] = {"vars", "segments", "features", "rules", "risk"};
    check_keys(L, f, root, top, CHURN_ARRAY_LEN(top), "the top level");
    yaml_node_t *n;
    if ((n = get(f, root, "vars"))) collect(L, f, n, &L->vars, "var", 0);
    if ((n = get(f, root, "features"))) collect(L, f, n, &L->feats, "feature", 0);
    if ((n = get(f, root, "rules"))) collect(L, f, n, &L->rules, "rule", 1);
    if ((n = get(f, root, "risk")) && !is_null_node(n)) {
        if (L->risk.val) {
            lerr(L, f, n->start_mark,
                 "risk: already defined at %s:%zu:%zu (one risk: per rule set)",
                 L->risk.f->path, L->risk.val->start_mark.line + 1,
                 L->risk.val->start_mark.column + 1);
        } else {
            L->risk.val = n;
            L->risk.f = f;
            L->risk.mark = n->start_mark;
        }
    }
    if ((n = get(f, root, "segments")) && !is_null_node(n)) {
        if (L->segments.val) {
            lerr(L, f, n->start_mark,
                 "segments: already defined at %s:%zu:%zu (one segments: per "
                 "rule set)",
                 L->segments.f->path, L->segments.val->start_mark.line + 1,
                 L->segments.val->start_mark.column + 1);
        } else {
            L->segments.val = n;
            L->segments.f = f;
            L->segments.mark = n->start_mark;
        }
    }
}

/* ---- Pass 2: vars and segments ------------------------------------------ */

static int keep_str(loader_t *L, expr_val_t *v) {
    ruleset_t *rs = L->rs;
    if (v->type != EXPR_T_STR) return 0;
    char **a = realloc(rs->var_strs, (rs->n_var_strs + 1) * sizeof(char *));
    if (!a) return L->oom = 1, CHURN_ENOMEM;
    rs->var_strs = a;
    char *s = malloc(v->u.s.len + 1);
    if (!s) return L->oom = 1, CHURN_ENOMEM;
    memcpy(s, v->u.s.p, v->u.s.len);
    s[v->u.s.len] = '\0';
    rs->var_strs[rs->n_var_strs++] = s;
    v->u.s.p = s;
    return 0;
}

static void build_vars(loader_t *L) {
    ruleset_t *rs = L->rs;
    size_t n = L->vars.n;
    rs->var_names = calloc(n ? n : 1, sizeof(char *));
    rs->var_types = calloc(n ? n : 1, 1);
    rs->var_tables = calloc(n ? n : 1, sizeof(expr_val_t));
    if (!rs->var_names || !rs->var_types || !rs->var_tables) {
        L->oom = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        entry_t *en = &L->vars.v[i];
        if (!(rs->var_names[i] = strdup(en->name))) {
            L->oom = 1;
            return;
        }
        rs->n_vars = i + 1;
        expr_val_t v;
        v.type = EXPR_T_NULL;
        if (!scalar(en->val) || (scalar_len(en->val) == 0 && is_plain(en->val))) {
            lerr(L, en->f, en->val->start_mark,
                 "var '%s': expected a number, duration, string or bool, found "
                 "%s",
                 en->name, scalar(en->val) ? "nothing" : node_kind(en->val));
        } else {
            scalar_value(en->val, &v);
            if (keep_str(L, &v)) return;
        }
        rs->var_types[i] = v.type == EXPR_T_NULL ? EXPR_T_ANY : v.type;
        rs->var_tables[i] = v;
    }
}

static void build_segments(loader_t *L) {
    ruleset_t *rs = L->rs;
    entry_t *sg = &L->segments;
    if (!sg->val) return;
    file_t *f = sg->f;
    yaml_node_t *m = sg->val;
    if (m->type != YAML_MAPPING_NODE) {
        lerr(L, f, m->start_mark,
             "segments: expected attribute: and overrides:, found %s",
             node_kind(m));
        return;
    }
    static const char *const keys[] = {"attribute", "overrides"};
    check_keys(L, f, m, keys, 2, "segments");
    yaml_node_t *attr = get(f, m, "attribute");
    yaml_node_t *ov = get(f, m, "overrides");
    if (!attr || !scalar(attr) || !valid_name(scalar(attr), scalar_len(attr), 0)) {
        lerr(L, f, attr ? attr->start_mark : m->start_mark,
             "segments: attribute: must name a field of client.updated events "
             "(e.g. tier)");
        return;
    }
    if (!(rs->segment_attr = strdup(scalar(attr)))) {
        L->oom = 1;
        return;
    }
    if (!ov) return;
    if (ov->type != YAML_MAPPING_NODE) {
        lerr(L, f, ov->start_mark,
             "segments.overrides: expected segment: {var: value}, found %s",
             node_kind(ov));
        return;
    }
    if (check_keys(L, f, ov, NULL, 0, "segments.overrides")) return;
    size_t n_seg = (size_t)(ov->data.mapping.pairs.top - ov->data.mapping.pairs.start);
    size_t nv = rs->n_vars;
    rs->segment_names = calloc(n_seg ? n_seg : 1, sizeof(char *));
    expr_val_t *tables = realloc(rs->var_tables, (1 + n_seg) * (nv ? nv : 1) *
                                                     sizeof(expr_val_t));
    if (!rs->segment_names || !tables) {
        if (tables) rs->var_tables = tables;
        L->oom = 1;
        return;
    }
    rs->var_tables = tables;
    for (size_t s = 0; s < n_seg; s++) {
        yaml_node_pair_t *p = &ov->data.mapping.pairs.start[s];
        if (!(rs->segment_names[s] = strdup(scalar(node(f, p->key))))) {
            L->oom = 1;
            return;
        }
        rs->n_segments = s + 1;
        expr_val_t *tab = rs->var_tables + (1 + s) * nv;
        if (nv) memcpy(tab, rs->var_tables, nv * sizeof(expr_val_t));
        yaml_node_t *o = node(f, p->value);
        if (!o || o->type != YAML_MAPPING_NODE) {
            lerr(L, f, o ? o->start_mark : ov->start_mark,
                 "segment '%s': expected {var: value}, found %s",
                 rs->segment_names[s], node_kind(o));
            continue;
        }
        char what[160];
        snprintf(what, sizeof(what), "segment '%s'", rs->segment_names[s]);
        check_keys(L, f, o, (const char *const *)rs->var_names, nv, what);
        for (yaml_node_pair_t *q = o->data.mapping.pairs.start;
             q < o->data.mapping.pairs.top; q++) {
            const char *vn = scalar(node(f, q->key));
            yaml_node_t *vv = node(f, q->value);
            size_t i;
            for (i = 0; vn && i < nv && strcmp(rs->var_names[i], vn) != 0; i++)
                ;
            if (!vn || i == nv) continue; /* reported by check_keys */
            if (!scalar(vv)) {
                lerr(L, f, vv->start_mark, "override of $%s: expected a value, found %s",
                     vn, node_kind(vv));
                continue;
            }
            expr_val_t v;
            scalar_value(vv, &v);
            if (v.type != rs->var_types[i]) {
                lerr(L, f, vv->start_mark,
                     "override of $%s in segment '%s' is a %s but the var is a %s",
                     vn, rs->segment_names[s], expr_type_name(v.type),
                     expr_type_name(rs->var_types[i]));
                continue;
            }
            if (keep_str(L, &v)) return;
            tab[i] = v;
        }
    }
}

/* ---- Pass 3: features --------------------------------------------------- */

static const struct kind_keys {
    const char *key; /* the key that selects the kind */
    feature_kind_t kind;
    const char *const keys[8];
} kinds[] = {
    {"series", FEAT_SERIES, {"series", "on", "bucket", "retain", "where"}},
    {"streak", FEAT_STREAK, {"streak", "reset_on", "where"}},
    {"expect", FEAT_EXPECT, {"after", "where", "expect", "expect_where", "match",
                             "within", "max_open", "once"}},
    {"last", FEAT_LAST, {"last", "where", "value", "history"}},
    {"latest", FEAT_LATEST, {"latest", "on", "where"}},
};

static size_t n_keys(const char *const *k) {
    size_t n = 0;
    while (n < 8 && k[n]) n++;
    return n;
}

static int valid_path(const char *s) {
    /* dotted names: data.tier, account.owner.id */
    if (!*s || *s == '.') return 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.') {
            if (p[1] == '.' || p[1] == '\0') return 0;
        } else if (!isalnum(c) && c != '_' && c != '-') {
            return 0;
        }
    }
    return 1;
}

static expr_t *compile_at(loader_t *L, file_t *f, yaml_node_t *n,
                          const expr_scope_t *sc, const char *where) {
    const char *s = scalar(n);
    if (!s) {
        lerr(L, f, n->start_mark, "%s: expected an expression, found %s", where,
             node_kind(n));
        return NULL;
    }
    expr_t *e = NULL;
    churn_err_t ce;
    size_t off = 0;
    if (expr_compile(s, scalar_len(n), sc, &e, &ce, &off) != 0) {
        expr_error(L, f, n, where, &ce, off);
        return NULL;
    }
    return e;
}

static void build_series(loader_t *L, file_t *f, yaml_node_t *m, yaml_node_t *sel,
                         feature_def_t *d, const char *what, const entry_t *en) {
    char sub[200];
    yaml_node_t *n;
    const char *p = scalar(sel);
    char *end = NULL;
    double c = p ? strtod(p, &end) : NAN;
    if (p && *p && end && !*end && isfinite(c)) {
        d->has_const = 1; /* series: 1 counts events */
        d->const_val = c;
    } else if (!p || !valid_path(p)) {
        lerr(L, f, sel->start_mark,
             "%s series: expected a numeric field such as data.amount, or a "
             "number (1 counts events)",
             what);
    } else if (feature_def_set_path(d, p)) {
        L->oom = 1;
    }
    if (!(n = get(f, m, "on"))) {
        lerr(L, f, en->mark, "%s: series needs on: <event types>", what);
    } else {
        snprintf(sub, sizeof(sub), "%s on", what);
        parse_types(L, f, n, &d->on, sub, NULL);
    }
    yaml_node_t *bn = get(f, m, "bucket"), *rn = get(f, m, "retain");
    if (!bn || !rn) {
        lerr(L, f, en->mark, "%s: series needs bucket: and retain: durations (e.g. "
             "bucket: 1d, retain: 120d)", what);
        return;
    }
    snprintf(sub, sizeof(sub), "%s bucket", what);
    if (parse_duration_node(L, f, bn, sub, &d->bucket_ms)) return;
    snprintf(sub, sizeof(sub), "%s retain", what);
    if (parse_duration_node(L, f, rn, sub, &d->retain_ms)) return;
    if (d->bucket_ms < 1000) {
        lerr(L, f, bn->start_mark, "%s: bucket: must be at least 1s", what);
        return;
    }
    if (d->retain_ms < d->bucket_ms || d->retain_ms % d->bucket_ms) {
        lerr(L, f, rn->start_mark,
             "%s: retain: must be a whole number of buckets (a multiple of bucket:)",
             what);
        return;
    }
    if (d->retain_ms / d->bucket_ms > SERIES_MAX_BUCKETS) {
        lerr(L, f, rn->start_mark,
             "%s: retain / bucket is %lld buckets per client; at most %d (use "
             "larger buckets)",
             what, (long long)(d->retain_ms / d->bucket_ms), SERIES_MAX_BUCKETS);
        return;
    }
    d->max_buckets = (uint32_t)(d->retain_ms / d->bucket_ms);
}

static expr_t *compile_at(loader_t *L, file_t *f, yaml_node_t *n,
                          const expr_scope_t *sc, const char *where);

static expr_t *compile_cond(loader_t *L, file_t *f, yaml_node_t *n,
                            const expr_scope_t *sc, const char *where) {
    expr_t *e = compile_at(L, f, n, sc, where);
    if (e && expr_result_type(e) != EXPR_T_BOOL && expr_result_type(e) != EXPR_T_ANY)
        lerr(L, f, n->start_mark, "%s: must be a condition (bool), not %s", where,
             expr_type_name(expr_result_type(e)));
    return e;
}

/* A duration, or a $var holding one (its base value: features are shared
 * by every segment, so segment overrides do not apply here). */
static int parse_dur_or_var(loader_t *L, file_t *f, yaml_node_t *n,
                            const char *what, int64_t *ms) {
    const char *s = scalar(n);
    if (!s || s[0] != '$') return parse_duration_node(L, f, n, what, ms);
    const ruleset_t *rs = L->rs;
    for (size_t i = 0; i < rs->n_vars; i++) {
        if (strcmp(rs->var_names[i], s + 1) != 0) continue;
        if (rs->var_types[i] != EXPR_T_DUR) {
            lerr(L, f, n->start_mark, "%s: $%s is a %s, not a duration", what, s + 1,
                 expr_type_name(rs->var_types[i]));
            return -1;
        }
        *ms = (int64_t)rs->var_tables[i].u.num;
        return 0;
    }
    lerr(L, f, n->start_mark, "%s: unknown var '%s' (define it under vars:)", what, s);
    return -1;
}

static void build_expect(loader_t *L, file_t *f, yaml_node_t *m, feature_def_t *d,
                         const char *what, const entry_t *en,
                         const expr_scope_t *sc) {
    char sub[200];
    yaml_node_t *n;
    if (!(n = get(f, m, "after"))) {
        lerr(L, f, en->mark, "%s: expect needs after: <event types that open it>", what);
    } else {
        snprintf(sub, sizeof(sub), "%s after", what);
        parse_types(L, f, n, &d->on, sub, NULL);
    }
    if (!(n = get(f, m, "expect"))) {
        lerr(L, f, en->mark, "%s: expect needs expect: <event types awaited>", what);
    } else {
        snprintf(sub, sizeof(sub), "%s expect", what);
        parse_types(L, f, n, &d->reset_on, sub, NULL);
        for (size_t i = 0; i < d->reset_on.n; i++)
            for (size_t j = 0; j < d->on.n; j++)
                if (strcmp(d->reset_on.v[i], d->on.v[j]) == 0)
                    lerr(L, f, n->start_mark,
                         "%s: '%s' both opens and answers the expectation", what,
                         d->on.v[j]);
    }
    if ((n = get(f, m, "expect_where"))) {
        snprintf(sub, sizeof(sub), "%s expect_where", what);
        d->expect_where = compile_cond(L, f, n, sc, sub);
    }
    if ((n = get(f, m, "match"))) {
        const char *p = scalar(n);
        if (!p || !valid_path(p))
            lerr(L, f, n->start_mark,
                 "%s match: expected a field path such as data.ticket_id", what);
        else if (feature_def_set_path(d, p))
            L->oom = 1;
    }
    d->max_open = EXPECT_DEFAULT_MAX_OPEN;
    if ((n = get(f, m, "max_open"))) {
        const char *p = scalar(n);
        char *end = NULL;
        long v = p ? strtol(p, &end, 10) : -1;
        if (!p || !*p || *end || v < 1 || v > EXPECT_MAX_OPEN)
            lerr(L, f, n->start_mark, "%s max_open: expected a count from 1 to %d",
                 what, EXPECT_MAX_OPEN);
        else
            d->max_open = (uint32_t)v;
    }
    if ((n = get(f, m, "once"))) {
        const char *p = scalar(n);
        if (p && is_plain(n) && (!strcmp(p, "true") || !strcmp(p, "false")))
            d->once = p[0] == 't';
        else
            lerr(L, f, n->start_mark, "%s once: must be true or false", what);
    }
    if (!(n = get(f, m, "within"))) {
        lerr(L, f, en->mark, "%s: expect needs within: <duration>", what);
        return;
    }
    snprintf(sub, sizeof(sub), "%s within", what);
    if (n->type == YAML_SCALAR_NODE) {
        int64_t ms;
        if (parse_dur_or_var(L, f, n, sub, &ms)) return;
        if (!(d->within = calloc(1, sizeof(within_case_t)))) {
            L->oom = 1;
            return;
        }
        d->within[0].within_ms = ms;
        d->n_within = 1;
        return;
    }
    /* A list of {when: <condition on the after: event>, within: <d>}; the
     * first that holds wins; the last has no when: (the default). */
    if (n->type != YAML_SEQUENCE_NODE) {
        lerr(L, f, n->start_mark,
             "%s: expected a duration or a list of {when:, within:} ending "
             "with a default {within:}, found %s",
             sub, node_kind(n));
        return;
    }
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt == 0 || cnt > EXPECT_MAX_CASES) {
        lerr(L, f, n->start_mark, "%s: between 1 and %d cases", sub, EXPECT_MAX_CASES);
        return;
    }
    if (!(d->within = calloc(cnt, sizeof(within_case_t)))) {
        L->oom = 1;
        return;
    }
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *c = node(f, n->data.sequence.items.start[i]);
        static const char *const ck[] = {"when", "within"};
        if (!c || c->type != YAML_MAPPING_NODE) {
            lerr(L, f, c ? c->start_mark : n->start_mark,
                 "%s: each case is {when: <condition>, within: <duration>}", sub);
            continue;
        }
        check_keys(L, f, c, ck, 2, sub);
        yaml_node_t *w = get(f, c, "when"), *dn = get(f, c, "within");
        within_case_t *wc = &d->within[d->n_within++];
        if (!dn) {
            lerr(L, f, c->start_mark, "%s: a case needs within: <duration>", sub);
        } else {
            parse_dur_or_var(L, f, dn, sub, &wc->within_ms);
        }
        if (w) {
            wc->when = compile_cond(L, f, w, sc, sub);
            if (i == cnt - 1)
                lerr(L, f, c->start_mark,
                     "%s: the last case is the default: give it no when:", sub);
        } else if (i != cnt - 1) {
            lerr(L, f, c->start_mark,
                 "%s: only the last case may omit when: (it is the default)", sub);
        }
    }
}

static void build_feature(loader_t *L, size_t idx, const expr_scope_t *where_sc) {
    entry_t *en = &L->feats.v[idx];
    feature_def_t *d = &L->rs->features[idx];
    file_t *f = en->f;
    yaml_node_t *m = en->val;
    d->file = f->path;
    d->line = (int)en->mark.line + 1;
    d->col = (int)en->mark.column + 1;
    char what[160];
    snprintf(what, sizeof(what), "feature '%s'", en->name);
    if (m->type != YAML_MAPPING_NODE) {
        lerr(L, f, m->start_mark,
             "%s: expected a mapping such as {streak: meeting.postponed}, found %s",
             what, node_kind(m));
        return;
    }
    const struct kind_keys *kk = NULL;
    yaml_node_t *sel = NULL;
    for (size_t i = 0; i < CHURN_ARRAY_LEN(kinds); i++) {
        yaml_node_t *x = get(f, m, kinds[i].key);
        if (kinds[i].kind == FEAT_EXPECT && !x) x = get(f, m, "after");
        if (!x) continue;
        if (kk) {
            lerr(L, f, x->start_mark, "%s: has both %s: and %s: (choose one kind)",
                 what, kk->key, kinds[i].key);
            return;
        }
        kk = &kinds[i];
        sel = x;
    }
    if (!kk) {
        /* Suggest a kind if a key is a typo of one. */
        static const char *const kind_words[] = {"series", "streak", "expect",
                                                 "last", "latest", "after"};
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start;
             p < m->data.mapping.pairs.top; p++) {
            const char *ks = scalar(node(f, p->key));
            const char *sug = ks ? expr_suggest(ks, strlen(ks), kind_words, 6) : NULL;
            if (sug) {
                lerr(L, f, node(f, p->key)->start_mark,
                     "%s: unknown key '%s' (did you mean '%s'?)", what, ks, sug);
                return;
            }
        }
        lerr(L, f, en->mark,
             "%s: needs one of series:, streak:, expect:, last:, latest:", what);
        return;
    }
    d->kind = kk->kind;
    check_keys(L, f, m, kk->keys, n_keys(kk->keys), what);
    yaml_node_t *n;
    char sub[200];
    switch (kk->kind) {
    case FEAT_SERIES: build_series(L, f, m, sel, d, what, en); break;
    case FEAT_EXPECT: build_expect(L, f, m, d, what, en, where_sc); break;
    case FEAT_STREAK:
        snprintf(sub, sizeof(sub), "%s streak", what);
        parse_types(L, f, sel, &d->on, sub, NULL);
        if ((n = get(f, m, "reset_on"))) {
            snprintf(sub, sizeof(sub), "%s reset_on", what);
            parse_types(L, f, n, &d->reset_on, sub, NULL);
            for (size_t i = 0; i < d->reset_on.n; i++)
                for (size_t j = 0; j < d->on.n; j++)
                    if (strcmp(d->reset_on.v[i], d->on.v[j]) == 0)
                        lerr(L, f, n->start_mark,
                             "%s: '%s' both counts and resets the streak", what,
                             d->on.v[j]);
        }
        break;
    case FEAT_LAST:
        snprintf(sub, sizeof(sub), "%s last", what);
        parse_types(L, f, sel, &d->on, sub, NULL);
        if ((n = get(f, m, "value"))) {
            const char *p = scalar(n);
            if (!p || !valid_path(p))
                lerr(L, f, n->start_mark, "%s value: expected a field path such "
                     "as data.amount", what);
            else if (feature_def_set_path(d, p))
                L->oom = 1;
        }
        if ((n = get(f, m, "history"))) {
            const char *h = scalar(n);
            char *end = NULL;
            long v = h ? strtol(h, &end, 10) : -1;
            if (!h || !*h || *end || v < 3 || v > LAST_MAX_HISTORY)
                lerr(L, f, n->start_mark,
                     "%s history: expected a count of event times to keep, from 3 "
                     "to %d",
                     what, LAST_MAX_HISTORY);
            else
                d->history = (uint32_t)v;
        }
        break;
    case FEAT_LATEST: {
        const char *p = scalar(sel);
        if (!p || !valid_path(p))
            lerr(L, f, sel->start_mark,
                 "%s latest: expected a field path such as data.tier", what);
        else if (feature_def_set_path(d, p))
            L->oom = 1;
        if (!(n = get(f, m, "on"))) {
            lerr(L, f, en->mark,
                 "%s: latest needs on: <event types that carry the field>", what);
        } else {
            snprintf(sub, sizeof(sub), "%s on", what);
            parse_types(L, f, n, &d->on, sub, NULL);
        }
        break;
    }
    default:
        break;
    }
    if ((n = get(f, m, "where"))) {
        snprintf(sub, sizeof(sub), "%s where", what);
        d->where = compile_at(L, f, n, where_sc, sub);
        if (d->where && expr_result_type(d->where) != EXPR_T_BOOL &&
            expr_result_type(d->where) != EXPR_T_ANY) {
            lerr(L, f, n->start_mark, "%s: where: must be a condition (bool), not %s",
                 what, expr_type_name(expr_result_type(d->where)));
        }
    }
}

/* ---- Pass 4: rules ------------------------------------------------------ */

static const char *const rule_keys[] = {
    "on", "when", "severity", "weight", "for", "repeat", "resolve",
    "labels", "summary", "description",
};

static expr_tmpl_t *tmpl_at(loader_t *L, file_t *f, yaml_node_t *n,
                            const expr_scope_t *sc, const char *where) {
    const char *s = scalar(n);
    if (!s) {
        lerr(L, f, n->start_mark, "%s: expected text, found %s", where,
             node_kind(n));
        return NULL;
    }
    expr_tmpl_t *t = NULL;
    churn_err_t ce;
    size_t off = 0;
    if (expr_tmpl_compile(s, scalar_len(n), sc, &t, &ce, &off) != 0) {
        expr_error(L, f, n, where, &ce, off);
        return NULL;
    }
    return t;
}

static int add_sites(rule_def_t *r, const expr_t *e) {
    if (!e) return 0;
    for (size_t i = 0; i < expr_n_sites(e); i++) {
        const char *key = expr_site_key(e, i);
        int dup = 0;
        for (size_t j = 0; j < r->n_sites; j++) dup |= strcmp(r->sites[j].key, key) == 0;
        if (dup) continue;
        rule_site_t *v = realloc(r->sites, (r->n_sites + 1) * sizeof(*v));
        if (!v) return CHURN_ENOMEM;
        r->sites = v;
        r->sites[r->n_sites].e = e;
        r->sites[r->n_sites].i = i;
        r->sites[r->n_sites].key = key;
        r->n_sites++;
    }
    return 0;
}

static void build_rule(loader_t *L, size_t idx, const expr_scope_t *sc) {
    entry_t *en = &L->rules.v[idx];
    rule_def_t *r = &L->rs->rules[idx];
    file_t *f = en->f;
    yaml_node_t *m = en->val;
    r->file = f->path;
    r->line = (int)en->mark.line + 1;
    r->col = (int)en->mark.column + 1;
    r->severity = "warning";
    r->resolve = 1;
    r->expired_feat = -1;
    char what[160], sub[200];
    snprintf(what, sizeof(what), "rule '%s'", en->name);
    if (m->type != YAML_MAPPING_NODE) {
        lerr(L, f, m->start_mark, "%s: expected a mapping with on: and when:, found %s",
             what, node_kind(m));
        return;
    }
    check_keys(L, f, m, rule_keys, CHURN_ARRAY_LEN(rule_keys), what);
    yaml_node_t *n;
    if (!(n = get(f, m, "on"))) {
        lerr(L, f, en->mark,
             "%s: needs on: (the event types that trigger its evaluation)", what);
    } else {
        snprintf(sub, sizeof(sub), "%s on", what);
        parse_types(L, f, n, &r->on, sub, r);
        if (r->expired_feat >= 0 && (r->on.n || r->every_ms || r->on_alerts))
            lerr(L, f, n->start_mark,
                 "%s: a rule triggered by expired() has no other trigger (it is "
                 "evaluated once per expired expectation)",
                 what);
    }
    /* expectation.* is in scope of expired() rules only. */
    expr_scope_t rsc = *sc;
    if (r->expired_feat >= 0) rsc.allow |= EXPR_ALLOW_EXPECTATION;
    sc = &rsc;
    if ((n = get(f, m, "when"))) {
        snprintf(sub, sizeof(sub), "%s when", what);
        r->when = compile_at(L, f, n, sc, sub);
        if (r->when && expr_result_type(r->when) != EXPR_T_BOOL &&
            expr_result_type(r->when) != EXPR_T_ANY)
            lerr(L, f, n->start_mark, "%s: when: must be a condition (bool), not %s",
                 what, expr_type_name(expr_result_type(r->when)));
    }
    if ((n = get(f, m, "severity"))) {
        static const char *const sev[] = {"info", "warning", "critical"};
        const char *s = scalar(n);
        size_t i;
        for (i = 0; s && i < 3 && strcmp(sev[i], s) != 0; i++)
            ;
        if (!s || i == 3) {
            const char *sug = s ? expr_suggest(s, strlen(s), sev, 3) : NULL;
            lerr(L, f, n->start_mark,
                 "%s: severity must be info, warning or critical%s%s%s", what,
                 sug ? " (did you mean '" : "", sug ? sug : "", sug ? "'?)" : "");
        } else {
            r->severity = sev[i];
        }
    }
    if ((n = get(f, m, "weight"))) {
        const char *s = scalar(n);
        char *end = NULL;
        double w = s ? strtod(s, &end) : NAN;
        if (!s || !*s || *end || !isfinite(w) || w < 0 || w > 100)
            lerr(L, f, n->start_mark, "%s: weight must be a number from 0 to 100",
                 what);
        else
            r->weight = w;
    }
    if ((n = get(f, m, "for"))) {
        int64_t ms;
        snprintf(sub, sizeof(sub), "%s for", what);
        if (parse_duration_node(L, f, n, sub, &ms) == 0) r->for_ms = ms;
        if (r->for_ms > 0 && r->expired_feat >= 0)
            lerr(L, f, n->start_mark,
                 "%s: for: does not apply to expired() rules (the expectation's "
                 "within: is the delay)",
                 what);
    }
    if ((n = get(f, m, "repeat"))) {
        int64_t ms;
        snprintf(sub, sizeof(sub), "%s repeat", what);
        if (parse_duration_node(L, f, n, sub, &ms) == 0) {
            if (ms < 60000)
                lerr(L, f, n->start_mark, "%s: repeat: must be at least 1m", what);
            else
                r->repeat_ms = ms;
        }
    }
    if ((n = get(f, m, "resolve"))) {
        const char *s = scalar(n);
        if (s && is_plain(n) && (!strcmp(s, "true") || !strcmp(s, "false")))
            r->resolve = s[0] == 't';
        else
            lerr(L, f, n->start_mark, "%s: resolve must be true or false", what);
    }
    if ((n = get(f, m, "summary"))) {
        snprintf(sub, sizeof(sub), "%s summary", what);
        r->summary = tmpl_at(L, f, n, sc, sub);
    }
    if ((n = get(f, m, "labels"))) {
        if (n->type != YAML_MAPPING_NODE) {
            lerr(L, f, n->start_mark, "%s: labels: expected name: text pairs, found %s",
                 what, node_kind(n));
        } else if (check_keys(L, f, n, NULL, 0, "labels") == 0) {
            size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
            r->labels = calloc(cnt ? cnt : 1, sizeof(rule_label_t));
            if (!r->labels) {
                L->oom = 1;
                return;
            }
            for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
                 p < n->data.mapping.pairs.top; p++) {
                yaml_node_t *k = node(f, p->key);
                const char *ln = scalar(k);
                if (!valid_name(ln, scalar_len(k), 1)) {
                    lerr(L, f, k->start_mark, "%s: label name '%s' must be a plain name",
                         what, ln);
                    continue;
                }
                snprintf(sub, sizeof(sub), "%s label '%s'", what, ln);
                expr_tmpl_t *t = tmpl_at(L, f, node(f, p->value), sc, sub);
                if (!t) continue;
                rule_label_t *lb = &r->labels[r->n_labels++];
                lb->tmpl = t;
                if (!(lb->name = strdup(ln))) L->oom = 1;
            }
        }
    }
    if ((n = get(f, m, "description")) && !scalar(n))
        lerr(L, f, n->start_mark, "%s: description: expected text", what);
    /* Values reported with the alert: from when:, then summary, labels. */
    int rc = add_sites(r, r->when);
    for (size_t i = 0; !rc && r->summary && i < expr_tmpl_n_exprs(r->summary); i++)
        rc = add_sites(r, expr_tmpl_expr(r->summary, i));
    for (size_t l = 0; !rc && l < r->n_labels; l++)
        for (size_t i = 0; !rc && i < expr_tmpl_n_exprs(r->labels[l].tmpl); i++)
            rc = add_sites(r, expr_tmpl_expr(r->labels[l].tmpl, i));
    if (rc) L->oom = 1;
}

/* ---- Definitions and the set ------------------------------------------- */

void rule_def_free(rule_def_t *r) {
    free(r->name);
    type_set_free(&r->on);
    expr_free(r->when);
    for (size_t i = 0; i < r->n_labels; i++) {
        free(r->labels[i].name);
        expr_tmpl_free(r->labels[i].tmpl);
    }
    free(r->labels);
    expr_tmpl_free(r->summary);
    free(r->sites);
    memset(r, 0, sizeof(*r));
}

int rule_def_canon(const rule_def_t *r, buf_t *out) {
    /* What decides when the rule holds; not how its alerts read. */
    int rc = buf_printf(out, "rule|%s|on:", r->name);
    for (size_t i = 0; i < r->on.n && !rc; i++)
        rc = buf_printf(out, "%s%s", i ? "," : "", r->on.v[i]);
    if (!rc && r->when) {
        rc = buf_printf(out, "|when:");
        if (!rc) rc = expr_canon(r->when, out);
    }
    if (!rc) rc = buf_printf(out, "|for:%lld", (long long)r->for_ms);
    /* Triggers beyond event types: only when present, so the ids of rules
     * written before them do not change. */
    if (!rc && r->every_ms) rc = buf_printf(out, "|every:%lld", (long long)r->every_ms);
    if (!rc && r->on_alerts) rc = buf_printf(out, "|alerts");
    if (!rc && r->expired_feat >= 0) rc = buf_printf(out, "|expired:%d", (int)r->expired_feat);
    return rc;
}

void ruleset_free(ruleset_t *rs) {
    if (!rs) return;
    for (size_t i = 0; i < rs->n_features; i++) feature_def_free(&rs->features[i]);
    free(rs->features);
    for (size_t i = 0; i < rs->n_rules; i++) rule_def_free(&rs->rules[i]);
    free(rs->rules);
    for (size_t i = 0; i < rs->n_vars; i++) free(rs->var_names[i]);
    free(rs->var_names);
    free(rs->var_types);
    free(rs->var_tables);
    for (size_t i = 0; i < rs->n_var_strs; i++) free(rs->var_strs[i]);
    free(rs->var_strs);
    free(rs->segment_attr);
    for (size_t i = 0; i < rs->n_segments; i++) free(rs->segment_names[i]);
    free(rs->segment_names);
    for (size_t i = 0; i < rs->n_files; i++) free(rs->files[i]);
    free(rs->files);
    for (size_t i = 0; i < rs->n_types; i++) {
        free(rs->types[i].name);
        free(rs->types[i].feat);
    }
    free(rs->types);
    free(rs->reads);
    free(rs);
}

size_t ruleset_n_rules(const ruleset_t *rs) { return rs->n_rules; }
/* Without the hidden segment feature: what the operator declared. */
size_t ruleset_n_features(const ruleset_t *rs) {
    return rs->n_features - (rs->segment_attr && rs->n_features ? 1 : 0);
}
const char *ruleset_rule_name(const ruleset_t *rs, size_t i) {
    return i < rs->n_rules ? rs->rules[i].name : NULL;
}
const char *ruleset_hash(const ruleset_t *rs) { return rs->hash_hex; }
uint64_t ruleset_hash64(const ruleset_t *rs) { return rs->hash; }
const char *ruleset_summary(const ruleset_t *rs) { return rs->summary; }

static int type_info_cmp(const void *key, const void *elem) {
    return strcmp(key, ((const type_info_t *)elem)->name);
}

const type_info_t *ruleset_type_of(const ruleset_t *rs, const char *type) {
    if (!rs || !type || !rs->n_types) return NULL;
    return bsearch(type, rs->types, rs->n_types, sizeof(type_info_t), type_info_cmp);
}

int ruleset_uses_type(const ruleset_t *rs, const char *type) {
    if (!rs || !type) return 0;
    const type_info_t *ti = ruleset_type_of(rs, type);
    if (ti) return ti->used;
    for (size_t i = 0; i < rs->n_features; i++)
        if (feature_wants_type(&rs->features[i], type)) return 1;
    for (size_t i = 0; i < rs->n_rules; i++)
        if (type_set_match(&rs->rules[i].on, type)) return 1;
    return 0;
}

const expr_val_t *ruleset_vars_for(const ruleset_t *rs, const char *segment) {
    if (segment)
        for (size_t s = 0; s < rs->n_segments; s++)
            if (strcmp(rs->segment_names[s], segment) == 0)
                return rs->var_tables + (1 + s) * rs->n_vars;
    return rs->var_tables;
}

/* The hidden feature that tracks a client's segment attribute. Its name is
 * not an identifier, so no expression can name it. */
#define SEGMENT_FEATURE_PREFIX "segment:"

static int add_segment_feature(loader_t *L) {
    ruleset_t *rs = L->rs;
    if (!rs->segment_attr) return 0;
    feature_def_t *d = &rs->features[rs->n_features];
    memset(d, 0, sizeof(*d));
    char path[RULES_MAX_NAME + 8];
    snprintf(path, sizeof(path), "data.%s", rs->segment_attr);
    size_t nl = strlen(SEGMENT_FEATURE_PREFIX) + strlen(rs->segment_attr) + 1;
    d->name = malloc(nl);
    if (!d->name || feature_def_set_path(d, path) || ts_add(&d->on, "client.updated")) {
        feature_def_free(d);
        return L->oom = 1, CHURN_ENOMEM;
    }
    snprintf(d->name, nl, "%s%s", SEGMENT_FEATURE_PREFIX, rs->segment_attr);
    d->kind = FEAT_LATEST;
    d->file = L->segments.f->path;
    d->line = (int)L->segments.mark.line + 1;
    d->col = (int)L->segments.mark.column + 1;
    rs->n_features++;
    return 0;
}

static int hash_var(buf_t *b, const ruleset_t *rs, const expr_val_t *v, size_t i) {
    int rc = buf_printf(b, "var|%s|%s|", rs->var_names[i], expr_type_name(v->type));
    if (!rc) rc = expr_val_json(v, b);
    if (!rc && v->type == EXPR_T_NUM) rc = buf_printf(b, "|%.17g", v->u.num);
    return rc ? rc : buf_putc(b, '\n');
}

static int finish(loader_t *L) {
    ruleset_t *rs = L->rs;
    buf_t b, all;
    buf_init(&b);
    buf_init(&all);
    int rc = 0;
    for (size_t i = 0; i < rs->n_vars && !rc; i++)
        rc = hash_var(&all, rs, &rs->var_tables[i], i);
    for (size_t s = 0; s < rs->n_segments && !rc; s++) {
        rc = buf_printf(&all, "segment|%s|%s\n", rs->segment_attr, rs->segment_names[s]);
        for (size_t i = 0; i < rs->n_vars && !rc; i++)
            rc = hash_var(&all, rs, &rs->var_tables[(1 + s) * rs->n_vars + i], i);
    }
    for (size_t i = 0; i < rs->n_features && !rc; i++) {
        buf_reset(&b);
        rc = feature_def_canon(&rs->features[i], &b);
        if (rc) break;
        rs->features[i].id = churn_hash64(b.data, b.len, CHURN_HASH_SEED);
        rc = buf_append(&all, b.data, b.len);
        if (!rc) rc = buf_putc(&all, '\n');
    }
    for (size_t i = 0; i < rs->n_rules && !rc; i++) {
        rule_def_t *r = &rs->rules[i];
        buf_reset(&b);
        rc = rule_def_canon(r, &b);
        if (rc) break;
        r->id = churn_hash64(b.data, b.len, CHURN_HASH_SEED);
        rc = buf_append(&all, b.data, b.len);
        if (!rc)
            rc = buf_printf(&all, "|%s|%.17g|%d|%lld|%s", r->severity, r->weight,
                            r->resolve, (long long)r->repeat_ms,
                            r->summary ? expr_tmpl_source(r->summary) : "");
        for (size_t l = 0; l < r->n_labels && !rc; l++)
            rc = buf_printf(&all, "|%s=%s", r->labels[l].name,
                            expr_tmpl_source(r->labels[l].tmpl));
        if (!rc) rc = buf_putc(&all, '\n');
    }
    if (!rc && (rs->risk_half_life_ms || rs->risk_cap != 100))
        rc = buf_printf(&all, "risk|%lld|%.17g\n", (long long)rs->risk_half_life_ms,
                        rs->risk_cap);
    if (!rc) {
        rs->hash = churn_hash64(all.data, all.len, CHURN_HASH_SEED);
        snprintf(rs->hash_hex, sizeof(rs->hash_hex), "%016llx",
                 (unsigned long long)rs->hash);
    }
    buf_free(&b);
    buf_free(&all);
    if (rc) L->oom = 1;
    return rc;
}

static int has_yaml_ext(const char *name) {
    size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* List the rules files of dir into rs->files, sorted by name. */
static int list_files(loader_t *L, const char *dir) {
    ruleset_t *rs = L->rs;
    DIR *d = opendir(dir);
    if (!d) {
        churn_err_t e;
        churn_err_at(&e, CHURN_EINVAL, dir, 0, 0,
                     "cannot open the rules directory: %s", strerror(errno));
        push_err(L, &e);
        return CHURN_EINVAL;
    }
    struct dirent *de;
    size_t cap = 0;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !has_yaml_ext(de->d_name)) continue;
        size_t pl = strlen(dir) + strlen(de->d_name) + 2;
        char *path = malloc(pl);
        if (!path) {
            rc = CHURN_ENOMEM;
            break;
        }
        snprintf(path, pl, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            free(path);
            continue;
        }
        if (rs->n_files >= RULES_MAX_FILES) {
            free(path);
            churn_err_t e;
            churn_err_at(&e, CHURN_EINVAL, dir, 0, 0,
                         "more than %d rules files", RULES_MAX_FILES);
            push_err(L, &e);
            rc = CHURN_EINVAL;
            break;
        }
        if (rs->n_files == cap) {
            cap = cap ? cap * 2 : 8;
            char **v = realloc(rs->files, cap * sizeof(char *));
            if (!v) {
                free(path);
                rc = CHURN_ENOMEM;
                break;
            }
            rs->files = v;
        }
        rs->files[rs->n_files++] = path;
    }
    closedir(d);
    if (rc == CHURN_ENOMEM) L->oom = 1;
    if (rs->n_files)
        qsort(rs->files, rs->n_files, sizeof(char *), cmp_str);
    return rc;
}

static void loader_free(loader_t *L) {
    for (size_t i = 0; i < L->n_files; i++) {
        if (L->files[i].has_doc) yaml_document_delete(&L->files[i].doc);
        free(L->files[i].text);
    }
    free(L->files);
    free(L->vars.v);
    free(L->feats.v);
    free(L->rules.v);
    free(L->feature_names);
    free(L->feature_kinds);
    free(L->feature_has_value);
}

static void build_risk(loader_t *L) {
    ruleset_t *rs = L->rs;
    rs->risk_cap = 100;
    entry_t *en = &L->risk;
    if (!en->val) return;
    file_t *f = en->f;
    yaml_node_t *m = en->val, *n;
    if (m->type != YAML_MAPPING_NODE) {
        lerr(L, f, m->start_mark, "risk: expected {half_life: 14d, cap: 100}, found %s",
             node_kind(m));
        return;
    }
    static const char *const keys[] = {"half_life", "cap"};
    check_keys(L, f, m, keys, 2, "risk");
    if ((n = get(f, m, "half_life"))) {
        const char *s = scalar(n);
        if (s && is_plain(n) && (!strcmp(s, "none") || !strcmp(s, "0")))
            rs->risk_half_life_ms = 0;
        else
            parse_duration_node(L, f, n, "risk half_life", &rs->risk_half_life_ms);
    }
    if ((n = get(f, m, "cap"))) {
        const char *s = scalar(n);
        char *end = NULL;
        double c = s ? strtod(s, &end) : NAN;
        if (!s || !*s || *end || !isfinite(c) || c <= 0 || c > 1e6)
            lerr(L, f, n->start_mark, "risk cap: expected a positive number");
        else
            rs->risk_cap = c;
    }
}

static void build(loader_t *L) {
    ruleset_t *rs = L->rs;
    build_risk(L);
    build_vars(L);
    if (L->oom) return;
    build_segments(L);
    if (L->oom) return;
    /* Features: one slot more for the hidden segment feature. */
    size_t nf = L->feats.n;
    rs->features = calloc(nf + 1, sizeof(feature_def_t));
    rs->rules = calloc(L->rules.n ? L->rules.n : 1, sizeof(rule_def_t));
    L->feature_names = calloc(nf + 1, sizeof(char *));
    L->feature_kinds = calloc(nf + 1, 1);
    L->feature_has_value = calloc(nf + 1, 1);
    if (!rs->features || !rs->rules || !L->feature_names || !L->feature_kinds ||
        !L->feature_has_value) {
        L->oom = 1;
        return;
    }
    for (size_t i = 0; i < nf; i++) {
        if (!(rs->features[i].name = strdup(L->feats.v[i].name))) {
            L->oom = 1;
            return;
        }
        rs->n_features = i + 1;
    }
    for (size_t i = 0; i < L->rules.n; i++) {
        if (!(rs->rules[i].name = strdup(L->rules.v[i].name))) {
            L->oom = 1;
            return;
        }
        rs->n_rules = i + 1;
    }
    expr_scope_t sc;
    memset(&sc, 0, sizeof(sc));
    sc.var_names = (const char *const *)rs->var_names;
    sc.var_types = rs->var_types;
    sc.n_vars = rs->n_vars;
    /* where: sees vars and the event only; it knows the feature names just
     * to say why they cannot be used there. */
    for (size_t i = 0; i < nf; i++) L->feature_names[i] = rs->features[i].name;
    sc.feature_names = L->feature_names;
    sc.feature_kinds = L->feature_kinds;
    sc.n_features = nf;
    for (size_t i = 0; i < nf && !L->oom; i++) build_feature(L, i, &sc);
    if (L->oom) return;
    uint8_t *has_hist = calloc(nf + 1, 1);
    if (!has_hist) {
        L->oom = 1;
        return;
    }
    for (size_t i = 0; i < nf; i++) {
        L->feature_kinds[i] = (uint8_t)rs->features[i].kind;
        L->feature_has_value[i] = rs->features[i].n_segs > 0;
        has_hist[i] = rs->features[i].history > 0;
    }
    sc.feature_has_history = has_hist;
    sc.feature_names = L->feature_names;
    sc.feature_kinds = L->feature_kinds;
    sc.feature_has_value = L->feature_has_value;
    sc.n_features = nf;
    const char **rule_names = calloc(rs->n_rules ? rs->n_rules : 1, sizeof(char *));
    if (!rule_names) {
        free(has_hist);
        L->oom = 1;
        return;
    }
    for (size_t i = 0; i < rs->n_rules; i++) rule_names[i] = rs->rules[i].name;
    sc.rule_names = rule_names;
    sc.n_rules = rs->n_rules;
    sc.allow = EXPR_ALLOW_FEATURES | EXPR_ALLOW_RULES;
    for (size_t i = 0; i < rs->n_rules && !L->oom; i++) build_rule(L, i, &sc);
    free(rule_names);
    free(has_hist);
    if (!L->oom) add_segment_feature(L);
}

/* ---- The type table (ruleset_type_of) ---------------------------------- */

static int type_name_cmp(const void *a, const void *b) {
    return strcmp(((const type_info_t *)a)->name, ((const type_info_t *)b)->name);
}

/* Add the literal names of ts not in the table yet. */
static int collect_types(ruleset_t *rs, const type_set_t *ts, size_t *cap) {
    for (size_t i = 0; i < ts->n; i++) {
        const char *name = ts->v[i];
        if (strchr(name, '*')) continue;
        int known = 0;
        for (size_t k = 0; k < rs->n_types && !known; k++)
            known = strcmp(rs->types[k].name, name) == 0;
        if (known) continue;
        type_info_t *v = churn_grow(rs->types, rs->n_types, cap, sizeof(*v), 16);
        if (!v) return CHURN_ENOMEM;
        rs->types = v;
        type_info_t *t = &rs->types[rs->n_types];
        memset(t, 0, sizeof(*t));
        if (!(t->name = strdup(name))) return CHURN_ENOMEM;
        rs->n_types++;
    }
    return 0;
}

/* Every type the lists name literally, with every list's answer for it,
 * globs included: the same answers ruleset_uses_type, feature_type_match
 * and type_set_match give. Types only globs match are not in the table. */
static void build_type_table(loader_t *L) {
    ruleset_t *rs = L->rs;
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; i < rs->n_features && !rc; i++) {
        rc = collect_types(rs, &rs->features[i].on, &cap);
        if (!rc) rc = collect_types(rs, &rs->features[i].reset_on, &cap);
    }
    for (size_t i = 0; i < rs->n_rules && !rc; i++)
        rc = collect_types(rs, &rs->rules[i].on, &cap);
    for (size_t k = 0; k < rs->n_types && !rc; k++) {
        type_info_t *t = &rs->types[k];
        size_t n = rs->n_features + rs->n_rules;
        if (!(t->feat = calloc(n ? n : 1, 1))) {
            rc = CHURN_ENOMEM;
            break;
        }
        t->rule_on = t->feat + rs->n_features;
        for (size_t i = 0; i < rs->n_features; i++) {
            t->feat[i] = (uint8_t)feature_type_match(&rs->features[i], t->name);
            if (t->feat[i]) t->used = 1;
        }
        for (size_t i = 0; i < rs->n_rules; i++) {
            t->rule_on[i] = (uint8_t)type_set_match(&rs->rules[i].on, t->name);
            if (t->rule_on[i]) t->used = 1;
        }
    }
    if (rc) {
        L->oom = 1;
        return;
    }
    if (rs->n_types) qsort(rs->types, rs->n_types, sizeof(type_info_t), type_name_cmp);
}

/* Which features each rule's `when` depends on (ruleset.reads). Without
 * the table the engine takes every change for a change of every rule's
 * inputs, so a failed allocation costs only speed. */
static void build_reads(ruleset_t *rs) {
    size_t nf = rs->n_features;
    if (!nf || !rs->n_rules || !(rs->reads = calloc(rs->n_rules, nf))) return;
    for (size_t i = 0; i < rs->n_rules; i++) {
        uint8_t *row = rs->reads + i * nf;
        if (rs->rules[i].when) expr_mark_features(rs->rules[i].when, row, nf);
        if (rs->segment_attr) row[nf - 1] = 1;
    }
}

/* Errors found in different passes, in file:line:column order (stable;
 * the "too many errors" note without a file stays last). Insertion sort:
 * at most RULES_MAX_ERRORS + 1 entries. */
static int err_before(const churn_err_t *a, const churn_err_t *b) {
    if (!a->file[0] || !b->file[0]) return a->file[0] && !b->file[0];
    int c = strcmp(a->file, b->file);
    if (c) return c < 0;
    if (a->line != b->line) return a->line < b->line;
    return a->col < b->col;
}

static void sort_errs(churn_errs_t *e, size_t from) {
    for (size_t i = from + 1; i < e->n; i++) {
        churn_err_t x = e->v[i];
        size_t j = i;
        while (j > from && err_before(&x, &e->v[j - 1])) {
            e->v[j] = e->v[j - 1];
            j--;
        }
        e->v[j] = x;
    }
}

int ruleset_load_dir(const char *dir, ruleset_t **out, churn_errs_t *errs) {
    *out = NULL;
    loader_t L;
    memset(&L, 0, sizeof(L));
    L.errs = errs;
    size_t first_err = errs->n;
    L.rs = calloc(1, sizeof(ruleset_t));
    if (!L.rs) return CHURN_ENOMEM;
    int rc = list_files(&L, dir);
    if (rc == 0 && !L.oom) {
        L.files = calloc(L.rs->n_files ? L.rs->n_files : 1, sizeof(file_t));
        if (!L.files) L.oom = 1;
        for (size_t i = 0; L.files && i < L.rs->n_files && !L.oom; i++) {
            L.files[i].path = L.rs->files[i];
            L.n_files = i + 1;
            load_file(&L, &L.files[i]);
        }
    }
    if (rc == 0 && !L.oom) build(&L);
    if (rc == 0 && !L.oom && L.n_errs == 0) finish(&L);
    if (rc == 0 && !L.oom && L.n_errs == 0) build_type_table(&L);
    if (rc == 0 && !L.oom && L.n_errs == 0) build_reads(L.rs);
    loader_free(&L);
    sort_errs(errs, first_err);
    if (L.oom) {
        ruleset_free(L.rs);
        return CHURN_ENOMEM;
    }
    if (rc != 0 || L.n_errs > 0) {
        ruleset_free(L.rs);
        return CHURN_EINVAL;
    }
    ruleset_t *rs = L.rs;
    size_t user_feats = rs->n_features - (rs->segment_attr ? 1 : 0);
    if (rs->n_rules == 0)
        snprintf(rs->summary, sizeof(rs->summary),
                 "no rules: %zu file%s, %zu feature%s (nothing will alert)",
                 rs->n_files, rs->n_files == 1 ? "" : "s", user_feats,
                 user_feats == 1 ? "" : "s");
    else
        snprintf(rs->summary, sizeof(rs->summary),
                 "%zu rule%s, %zu feature%s, %zu var%s in %zu file%s",
                 rs->n_rules, rs->n_rules == 1 ? "" : "s", user_feats,
                 user_feats == 1 ? "" : "s", rs->n_vars,
                 rs->n_vars == 1 ? "" : "s", rs->n_files,
                 rs->n_files == 1 ? "" : "s");
    *out = rs;
    return 0;
}
