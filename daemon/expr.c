/*
 * expr.c - compiler and evaluator of the rules' expression language (the
 * grammar and the typing rules are in expr.h).
 *
 * Compile: a hand-written lexer and a precedence-climbing parser build a
 * typed tree in flat arrays (nodes, child indexes, a string pool), checking
 * types as each node is made, so an error points at the operator or name
 * that caused it. Names are resolved against the caller's scope at once:
 * `$var` to a var index (the value comes from the evaluation's var table,
 * which is how segment overrides are selected per client), features to an
 * index and a function, fields to precomputed path segments.
 *
 * Evaluate: a recursive walk over the tree. Recursion is bounded by the
 * tree depth (at most EXPR_MAX_DEPTH, checked at compile), the only
 * iteration is over a list literal or an array field of the event, and no
 * value owns memory, so evaluation never allocates and cannot fail.
 *
 * Must not: do I/O, read a clock, or allocate during evaluation.
 */
#include "churnd/expr.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/timeutil.h"

/* ---- Tree --------------------------------------------------------------- */

enum op {
    OP_NULL = 1,
    OP_BOOL,
    OP_NUM,
    OP_STR,
    OP_DUR,
    OP_VAR,      /* idx = var index, name = pool offset */
    OP_FIELD,    /* idx = first segment, len = number of segments */
    OP_EV_TYPE,
    OP_EV_ID,
    OP_CLIENT_ID,
    OP_NOW,
    OP_RISK,
    OP_NEG,
    OP_NOT,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_MOD,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,       /* kids: needle, haystack (OP_LIST or an array value) */
    OP_LIST,     /* kids: elements */
    OP_AND,      /* kids: 2..n operands */
    OP_OR,
    OP_FEAT,     /* idx = feature, fn = expr_fn_t, kids = extra args */
    OP_FIRING,   /* idx = rule */
    OP_EXP_KEY,  /* expectation.key */
    OP_EXP_OPENED, /* expectation.opened_at */
};

typedef struct node {
    uint8_t op;
    uint8_t type;   /* static expr_type_t */
    uint8_t fn;     /* OP_FEAT */
    uint8_t depth;  /* height of the subtree, leaves 1 */
    uint16_t n_kids;
    uint32_t kids;  /* first index into e->kids */
    uint32_t off;   /* source span [off, end) */
    uint32_t end;
    uint32_t idx;
    uint32_t len;
    uint32_t name;  /* pool offset of a NUL-terminated name (VAR, FEAT, FIRING) */
    double num;     /* NUM, DUR; BOOL as 0/1; STR: pool offset in idx */
} node_t;

typedef struct site {
    uint32_t node;
    char *key; /* owned */
} site_t;

struct expr {
    char *src; /* owned copy, NUL-terminated */
    size_t src_len;
    node_t *nodes;
    uint32_t n_nodes;
    uint32_t *kids;
    uint32_t n_kids;
    char *pool;
    size_t pool_len;
    const char **segs; /* pointers into pool */
    uint32_t n_segs;
    uint32_t *seg_offs; /* during compile */
    uint32_t root;
    int uses_event;
    site_t *sites;
    size_t n_sites;
};

const char *expr_type_name(expr_type_t t) {
    switch (t) {
    case EXPR_T_NULL: return "null";
    case EXPR_T_BOOL: return "bool";
    case EXPR_T_NUM: return "number";
    case EXPR_T_STR: return "string";
    case EXPR_T_DUR: return "duration";
    case EXPR_T_TIME: return "time";
    case EXPR_T_ARRAY: return "array";
    case EXPR_T_ANY: return "any";
    case EXPR_T_LIST: return "list";
    }
    return "?";
}

const char *feature_kind_name(feature_kind_t k) {
    switch (k) {
    case FEAT_SERIES: return "series";
    case FEAT_STREAK: return "streak";
    case FEAT_EXPECT: return "expect";
    case FEAT_LAST: return "last";
    case FEAT_LATEST: return "latest";
    }
    return "?";
}

/* ---- Helpers shared with the loader ------------------------------------- */

size_t expr_edit_distance(const char *a, size_t na, const char *b, size_t nb,
                          size_t max) {
    /* Two rows of the classic table; names longer than 64 are never close
     * enough to matter. */
    if (na > 64 || nb > 64) return max + 1;
    if ((na > nb ? na - nb : nb - na) > max) return max + 1;
    size_t prev[65], cur[65];
    for (size_t j = 0; j <= nb; j++) prev[j] = j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = i;
        size_t best = cur[0];
        for (size_t j = 1; j <= nb; j++) {
            size_t c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c) c = prev[j] + 1;
            if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
            cur[j] = c;
            if (c < best) best = c;
        }
        if (best > max) return max + 1;
        memcpy(prev, cur, (nb + 1) * sizeof(size_t));
    }
    return prev[nb] > max ? max + 1 : prev[nb];
}

const char *expr_suggest(const char *name, size_t len,
                         const char *const *names, size_t n) {
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < n; i++) {
        if (!names[i]) continue;
        size_t d = expr_edit_distance(name, len, names[i], strlen(names[i]), 2);
        if (d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    return best;
}

int expr_glob_match(const char *pat, const char *s) {
    /* Iterative '*' matching with one backtrack point: linear enough for
     * type names, no recursion. */
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == *s) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*') pat++;
    return *pat == '\0';
}

/* ---- Lexer -------------------------------------------------------------- */

enum tok {
    T_EOF,
    T_NUM,
    T_DUR,
    T_STR,
    T_IDENT,
    T_VAR,
    T_LP,
    T_RP,
    T_LB,
    T_RB,
    T_COMMA,
    T_PLUS,
    T_MINUS,
    T_STAR,
    T_SLASH,
    T_PCT,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_AND,
    T_OR,
    T_NOT,
    T_IN,
    T_TRUE,
    T_FALSE,
    T_NULL,
};

typedef struct token {
    int kind;
    size_t off, len; /* source span */
    double num;      /* NUM, DUR (ms) */
    uint32_t str;    /* STR: pool offset of the decoded text */
    uint32_t str_len;
} token_t;

typedef struct parser {
    const char *s;
    size_t n;
    size_t pos;
    token_t tok;
    const expr_scope_t *sc;
    expr_t *e;
    size_t node_cap, kids_cap, pool_cap, seg_cap;
    int depth;
    int failed;
    churn_err_t *err;
    size_t err_off;
} parser_t;

__attribute__((format(printf, 3, 4)))
static long perr(parser_t *p, size_t off, const char *fmt, ...) {
    if (!p->failed) {
        p->failed = 1;
        va_list ap;
        va_start(ap, fmt);
        churn_err_setv(p->err, CHURN_EINVAL, fmt, ap);
        va_end(ap);
        if (p->err) p->err->col = (int)off + 1;
        p->err_off = off;
    }
    return -1;
}

static long oom(parser_t *p) {
    if (!p->failed) {
        p->failed = 1;
        churn_err_set(p->err, CHURN_ENOMEM, "out of memory compiling expression");
        p->err_off = 0;
    }
    return -1;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*arr, c * elem);
    if (!q) return -1;
    *arr = q;
    *cap = c;
    return 0;
}

/* Append bytes (plus a NUL) to the pool; returns the offset or -1. */
static long pool_add(parser_t *p, const char *s, size_t n) {
    expr_t *e = p->e;
    if (grow((void **)&e->pool, &p->pool_cap, e->pool_len + n + 1, 1))
        return oom(p);
    size_t off = e->pool_len;
    if (n) memcpy(e->pool + off, s, n);
    e->pool[off + n] = '\0';
    e->pool_len += n + 1;
    return (long)off;
}

static int is_ident_start(int c) { return isalpha(c) || c == '_'; }
static int is_ident_char(int c) { return isalnum(c) || c == '_'; }

static int lex_number(parser_t *p, size_t start) {
    const char *s = p->s;
    size_t i = start, n = p->n;
    while (i < n && isdigit((unsigned char)s[i])) i++;
    int frac = 0;
    if (i + 1 < n && s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
        frac = 1;
        i++;
        while (i < n && isdigit((unsigned char)s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        if (j < n && isdigit((unsigned char)s[j])) {
            frac = 1;
            i = j;
            while (i < n && isdigit((unsigned char)s[i])) i++;
        }
    }
    if (i < n && isalpha((unsigned char)s[i])) {
        /* A duration: digits and units, possibly several ("1h30m"). */
        size_t j = i;
        while (j < n && is_ident_char((unsigned char)s[j])) j++;
        if (frac)
            return (int)perr(p, start,
                             "durations take whole numbers: write 90m, not "
                             "1.5h ('%.*s')",
                             (int)(j - start), s + start);
        int64_t ms;
        if (duration_parse(s + start, j - start, &ms) != 0)
            return (int)perr(p, start,
                             "bad duration '%.*s' (units ms s m h d w, e.g. "
                             "90s 15m 48h 30d 2w)",
                             (int)(j - start), s + start);
        p->tok.kind = T_DUR;
        p->tok.num = (double)ms;
        p->tok.len = j - start;
        return 0;
    }
    char tmp[64];
    if (i - start >= sizeof(tmp))
        return (int)perr(p, start, "number too long");
    memcpy(tmp, s + start, i - start);
    tmp[i - start] = '\0';
    p->tok.kind = T_NUM;
    p->tok.num = strtod(tmp, NULL);
    if (!isfinite(p->tok.num))
        return (int)perr(p, start, "number out of range '%s'", tmp);
    p->tok.len = i - start;
    return 0;
}

static int lex_string(parser_t *p, size_t start) {
    const char *s = p->s;
    char q = s[start];
    char buf[EXPR_MAX_STR];
    size_t blen = 0;
    size_t i = start + 1;
    for (;;) {
        if (i >= p->n)
            return (int)perr(p, start, "unterminated string (missing %c)", q);
        char c = s[i++];
        if (c == q) break;
        if (c == '\\') {
            if (i >= p->n)
                return (int)perr(p, start, "unterminated string (missing %c)", q);
            char x = s[i++];
            switch (x) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case '\\': case '"': case '\'': c = x; break;
            default:
                return (int)perr(p, i - 2, "unknown escape '\\%c' in string", x);
            }
        }
        if (blen >= sizeof(buf))
            return (int)perr(p, start, "string literal longer than %d bytes",
                             EXPR_MAX_STR);
        buf[blen++] = c;
    }
    long off = pool_add(p, buf, blen);
    if (off < 0) return -1;
    p->tok.kind = T_STR;
    p->tok.str = (uint32_t)off;
    p->tok.str_len = (uint32_t)blen;
    p->tok.len = i - start;
    return 0;
}

static const struct {
    const char *word;
    int kind;
} keywords[] = {
    {"and", T_AND},   {"or", T_OR},     {"not", T_NOT}, {"in", T_IN},
    {"true", T_TRUE}, {"false", T_FALSE}, {"null", T_NULL},
};

/* Read the next token into p->tok. Returns 0 or -1 (error set). */
static int next(parser_t *p) {
    const char *s = p->s;
    while (p->pos < p->n && isspace((unsigned char)s[p->pos])) p->pos++;
    size_t st = p->pos;
    p->tok.off = st;
    p->tok.len = 1;
    if (st >= p->n) {
        p->tok.kind = T_EOF;
        p->tok.len = 0;
        return 0;
    }
    int c = (unsigned char)s[st];
    int c2 = st + 1 < p->n ? (unsigned char)s[st + 1] : 0;
    int rc = 0;
    if (isdigit(c)) {
        rc = lex_number(p, st);
    } else if (c == '"' || c == '\'') {
        rc = lex_string(p, st);
    } else if (c == '$') {
        size_t i = st + 1;
        if (i >= p->n || !is_ident_start((unsigned char)s[i]))
            return (int)perr(p, st, "'$' must be followed by a var name");
        while (i < p->n && is_ident_char((unsigned char)s[i])) i++;
        p->tok.kind = T_VAR;
        p->tok.len = i - st;
    } else if (is_ident_start(c)) {
        size_t i = st;
        for (;;) {
            while (i < p->n && is_ident_char((unsigned char)s[i])) i++;
            if (i + 1 < p->n && s[i] == '.' &&
                is_ident_char((unsigned char)s[i + 1]))
                i++;
            else
                break;
        }
        p->tok.kind = T_IDENT;
        p->tok.len = i - st;
        for (size_t k = 0; k < CHURN_ARRAY_LEN(keywords); k++)
            if (strlen(keywords[k].word) == i - st &&
                memcmp(keywords[k].word, s + st, i - st) == 0)
                p->tok.kind = keywords[k].kind;
    } else {
        switch (c) {
        case '(': p->tok.kind = T_LP; break;
        case ')': p->tok.kind = T_RP; break;
        case '[': p->tok.kind = T_LB; break;
        case ']': p->tok.kind = T_RB; break;
        case ',': p->tok.kind = T_COMMA; break;
        case '+': p->tok.kind = T_PLUS; break;
        case '-': p->tok.kind = T_MINUS; break;
        case '*': p->tok.kind = T_STAR; break;
        case '/': p->tok.kind = T_SLASH; break;
        case '%': p->tok.kind = T_PCT; break;
        case '<':
            p->tok.kind = c2 == '=' ? T_LE : T_LT;
            p->tok.len = c2 == '=' ? 2 : 1;
            break;
        case '>':
            p->tok.kind = c2 == '=' ? T_GE : T_GT;
            p->tok.len = c2 == '=' ? 2 : 1;
            break;
        case '=':
            if (c2 != '=') return (int)perr(p, st, "use == to compare, not =");
            p->tok.kind = T_EQ;
            p->tok.len = 2;
            break;
        case '!':
            if (c2 != '=') return (int)perr(p, st, "use 'not', not '!'");
            p->tok.kind = T_NE;
            p->tok.len = 2;
            break;
        case '&':
            return (int)perr(p, st, "use 'and', not '&&'");
        case '|':
            return (int)perr(p, st, "use 'or', not '||'");
        default:
            if (c >= 0x20 && c < 0x7f)
                return (int)perr(p, st, "unexpected character '%c'", c);
            return (int)perr(p, st, "unexpected byte 0x%02x", c);
        }
    }
    if (rc) return -1;
    p->pos = st + p->tok.len;
    return 0;
}

static const char *tok_desc(const parser_t *p, char *buf, size_t size) {
    if (p->tok.kind == T_EOF) return "the end of the expression";
    snprintf(buf, size, "'%.*s'", (int)(p->tok.len > 40 ? 40 : p->tok.len),
             p->s + p->tok.off);
    return buf;
}

/* ---- Node construction and typing --------------------------------------- */

static long add_node(parser_t *p, const node_t *nd, const uint32_t *kids,
                     size_t n_kids) {
    expr_t *e = p->e;
    if (e->n_nodes >= EXPR_MAX_NODES)
        return perr(p, nd->off,
                    "expression too large (more than %d nodes)", EXPR_MAX_NODES);
    if (grow((void **)&e->nodes, &p->node_cap, e->n_nodes + 1, sizeof(node_t)) ||
        grow((void **)&e->kids, &p->kids_cap, e->n_kids + n_kids,
             sizeof(uint32_t)))
        return oom(p);
    node_t x = *nd;
    unsigned depth = 0;
    for (size_t i = 0; i < n_kids; i++) {
        unsigned d = e->nodes[kids[i]].depth;
        if (d > depth) depth = d;
    }
    if (depth + 1 > EXPR_MAX_DEPTH)
        return perr(p, nd->off,
                    "expression nested too deeply (more than %d levels)",
                    EXPR_MAX_DEPTH);
    x.depth = (uint8_t)(depth + 1);
    x.kids = e->n_kids;
    x.n_kids = (uint16_t)n_kids;
    if (n_kids) memcpy(e->kids + e->n_kids, kids, n_kids * sizeof(uint32_t));
    e->n_kids += (uint32_t)n_kids;
    e->nodes[e->n_nodes] = x;
    return (long)e->n_nodes++;
}

static node_t mk(int op, int type, size_t off, size_t end) {
    node_t n;
    memset(&n, 0, sizeof(n));
    n.op = (uint8_t)op;
    n.type = (uint8_t)type;
    n.off = (uint32_t)off;
    n.end = (uint32_t)end;
    return n;
}

static const char *op_text(int op) {
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    case OP_MOD: return "%";
    case OP_EQ: return "==";
    case OP_NE: return "!=";
    case OP_LT: return "<";
    case OP_LE: return "<=";
    case OP_GT: return ">";
    case OP_GE: return ">=";
    case OP_IN: return "in";
    case OP_AND: return "and";
    case OP_OR: return "or";
    case OP_NOT: return "not";
    case OP_NEG: return "-";
    }
    return "?";
}

/* The arithmetic table on concrete types; -1 when not allowed. Shared by
 * the checker and the evaluator so they cannot disagree. */
static int arith_result(int op, int a, int b) {
    switch (op) {
    case OP_ADD:
        if (a == EXPR_T_NUM && b == EXPR_T_NUM) return EXPR_T_NUM;
        if (a == EXPR_T_DUR && b == EXPR_T_DUR) return EXPR_T_DUR;
        if (a == EXPR_T_TIME && b == EXPR_T_DUR) return EXPR_T_TIME;
        if (a == EXPR_T_DUR && b == EXPR_T_TIME) return EXPR_T_TIME;
        return -1;
    case OP_SUB:
        if (a == EXPR_T_NUM && b == EXPR_T_NUM) return EXPR_T_NUM;
        if (a == EXPR_T_DUR && b == EXPR_T_DUR) return EXPR_T_DUR;
        if (a == EXPR_T_TIME && b == EXPR_T_DUR) return EXPR_T_TIME;
        if (a == EXPR_T_TIME && b == EXPR_T_TIME) return EXPR_T_DUR;
        return -1;
    case OP_MUL:
        if (a == EXPR_T_NUM && b == EXPR_T_NUM) return EXPR_T_NUM;
        if (a == EXPR_T_DUR && b == EXPR_T_NUM) return EXPR_T_DUR;
        if (a == EXPR_T_NUM && b == EXPR_T_DUR) return EXPR_T_DUR;
        return -1;
    case OP_DIV:
        if (a == EXPR_T_NUM && b == EXPR_T_NUM) return EXPR_T_NUM;
        if (a == EXPR_T_DUR && b == EXPR_T_NUM) return EXPR_T_DUR;
        if (a == EXPR_T_DUR && b == EXPR_T_DUR) return EXPR_T_NUM;
        return -1;
    case OP_MOD:
        if (a == EXPR_T_NUM && b == EXPR_T_NUM) return EXPR_T_NUM;
        if (a == EXPR_T_DUR && b == EXPR_T_DUR) return EXPR_T_DUR;
        return -1;
    }
    return -1;
}

static const int concrete[] = {EXPR_T_BOOL, EXPR_T_NUM, EXPR_T_STR,
                               EXPR_T_DUR, EXPR_T_TIME};

/* Static result of a op b, with "any" standing for every concrete type:
 * a unique possible result is kept, several give "any", none is an error
 * (-1). */
static int arith_static(int op, int a, int b) {
    int res = -1;
    for (size_t i = 0; i < CHURN_ARRAY_LEN(concrete); i++) {
        int ta = a == EXPR_T_ANY ? concrete[i] : a;
        if (a != EXPR_T_ANY && i > 0) break;
        for (size_t j = 0; j < CHURN_ARRAY_LEN(concrete); j++) {
            int tb = b == EXPR_T_ANY ? concrete[j] : b;
            if (b != EXPR_T_ANY && j > 0) break;
            int r = arith_result(op, ta, tb);
            if (r < 0) continue;
            if (res < 0) res = r;
            else if (res != r) res = EXPR_T_ANY;
        }
    }
    return res;
}

static long check_not_list(parser_t *p, long k, const char *where) {
    if (k < 0) return -1;
    const node_t *n = &p->e->nodes[k];
    if (n->type == EXPR_T_LIST)
        return perr(p, n->off, "a list [...] can only follow 'in', not %s",
                    where);
    return k;
}

static long mk_arith(parser_t *p, int op, long a, long b, size_t opoff) {
    const node_t *na = &p->e->nodes[a], *nb = &p->e->nodes[b];
    if (check_not_list(p, a, "an arithmetic operand") < 0 ||
        check_not_list(p, b, "an arithmetic operand") < 0)
        return -1;
    if (na->type == EXPR_T_NULL || nb->type == EXPR_T_NULL)
        return perr(p, opoff, "arithmetic with null is always null");
    int r = arith_static(op, na->type, nb->type);
    if (r < 0) {
        const char *hint = "";
        if ((na->type == EXPR_T_DUR && nb->type == EXPR_T_NUM) ||
            (na->type == EXPR_T_NUM && nb->type == EXPR_T_DUR))
            hint = op == OP_ADD || op == OP_SUB
                       ? " (write the number as a duration, e.g. 30d)"
                       : "";
        return perr(p, opoff, "cannot apply '%s' to %s and %s%s", op_text(op),
                    expr_type_name(na->type), expr_type_name(nb->type), hint);
    }
    node_t nd = mk(op, r, na->off, nb->end);
    uint32_t k[2] = {(uint32_t)a, (uint32_t)b};
    return add_node(p, &nd, k, 2);
}

static int comparable(int op, int a, int b) {
    if (a == EXPR_T_ANY || b == EXPR_T_ANY) return 1;
    if (a != b) return 0;
    if (a == EXPR_T_BOOL) return op == OP_EQ || op == OP_NE;
    return a == EXPR_T_NUM || a == EXPR_T_DUR || a == EXPR_T_TIME ||
           a == EXPR_T_STR;
}

static long mk_cmp(parser_t *p, int op, long a, long b, size_t opoff) {
    const node_t *na = &p->e->nodes[a], *nb = &p->e->nodes[b];
    if (check_not_list(p, a, "the left of a comparison") < 0) return -1;
    if (na->type == EXPR_T_NULL || nb->type == EXPR_T_NULL)
        return perr(p, opoff,
                    "comparison with null is always false (a missing value "
                    "compares false with everything; use seen(feature))");
    if (op == OP_IN) {
        if (nb->type == EXPR_T_LIST) {
            for (uint16_t i = 0; i < nb->n_kids; i++) {
                const node_t *el = &p->e->nodes[p->e->kids[nb->kids + i]];
                if (!comparable(OP_EQ, na->type, el->type))
                    return perr(p, el->off,
                                "list element is %s but the value tested is %s",
                                expr_type_name(el->type),
                                expr_type_name(na->type));
            }
        } else if (nb->type != EXPR_T_ANY) {
            return perr(p, nb->off,
                        "'in' needs a list [..] or an array field on its "
                        "right, not %s",
                        expr_type_name(nb->type));
        }
    } else {
        if (check_not_list(p, b, "the right of a comparison") < 0) return -1;
        if (!comparable(op, na->type, nb->type)) {
            const char *hint = "";
            if ((na->type == EXPR_T_DUR && nb->type == EXPR_T_NUM) ||
                (na->type == EXPR_T_NUM && nb->type == EXPR_T_DUR))
                hint = " (write the number as a duration, e.g. 30d)";
            if (na->type == nb->type && na->type == EXPR_T_BOOL)
                hint = " (booleans are only compared with == and !=)";
            return perr(p, opoff, "cannot compare %s with %s using '%s'%s",
                        expr_type_name(na->type), expr_type_name(nb->type),
                        op_text(op), hint);
        }
    }
    node_t nd = mk(op, EXPR_T_BOOL, na->off, nb->end);
    uint32_t k[2] = {(uint32_t)a, (uint32_t)b};
    return add_node(p, &nd, k, 2);
}

static long need_bool(parser_t *p, long k, const char *op) {
    if (k < 0) return -1;
    const node_t *n = &p->e->nodes[k];
    if (n->type != EXPR_T_BOOL && n->type != EXPR_T_ANY)
        return perr(p, n->off, "'%s' needs a bool operand, not %s", op,
                    expr_type_name(n->type));
    return k;
}

/* ---- Parser ------------------------------------------------------------- */

enum { PREC_OR = 1, PREC_AND, PREC_NOT, PREC_CMP, PREC_ADD, PREC_MUL, PREC_UNARY };

static int binop(int kind, int *prec) {
    switch (kind) {
    case T_OR: *prec = PREC_OR; return OP_OR;
    case T_AND: *prec = PREC_AND; return OP_AND;
    case T_EQ: *prec = PREC_CMP; return OP_EQ;
    case T_NE: *prec = PREC_CMP; return OP_NE;
    case T_LT: *prec = PREC_CMP; return OP_LT;
    case T_LE: *prec = PREC_CMP; return OP_LE;
    case T_GT: *prec = PREC_CMP; return OP_GT;
    case T_GE: *prec = PREC_CMP; return OP_GE;
    case T_IN: *prec = PREC_CMP; return OP_IN;
    case T_PLUS: *prec = PREC_ADD; return OP_ADD;
    case T_MINUS: *prec = PREC_ADD; return OP_SUB;
    case T_STAR: *prec = PREC_MUL; return OP_MUL;
    case T_SLASH: *prec = PREC_MUL; return OP_DIV;
    case T_PCT: *prec = PREC_MUL; return OP_MOD;
    }
    return -1;
}

static long parse_expr(parser_t *p, int min_prec);

static const struct fn_info {
    const char *name;
    expr_fn_t fn;
    unsigned kinds; /* bit per feature_kind_t */
    int min_args, max_args; /* besides the feature */
    int type;
} functions[] = {
    {"sum", EXPR_FN_SUM, 1u << FEAT_SERIES, 1, 2, EXPR_T_NUM},
    {"count", EXPR_FN_COUNT, 1u << FEAT_SERIES, 1, 2, EXPR_T_NUM},
    {"avg", EXPR_FN_AVG, 1u << FEAT_SERIES, 1, 2, EXPR_T_NUM},
    {"min", EXPR_FN_MIN, 1u << FEAT_SERIES, 1, 2, EXPR_T_NUM},
    {"max", EXPR_FN_MAX, 1u << FEAT_SERIES, 1, 2, EXPR_T_NUM},
    {"since", EXPR_FN_SINCE,
     1u << FEAT_LAST | 1u << FEAT_LATEST | 1u << FEAT_STREAK, 0, 0, EXPR_T_DUR},
    {"seen", EXPR_FN_SEEN,
     1u << FEAT_SERIES | 1u << FEAT_STREAK | 1u << FEAT_EXPECT |
         1u << FEAT_LAST | 1u << FEAT_LATEST,
     0, 0, EXPR_T_BOOL},
    {"value", EXPR_FN_VALUE, 1u << FEAT_LATEST | 1u << FEAT_LAST, 0, 0,
     EXPR_T_ANY},
    {"open", EXPR_FN_OPEN, 1u << FEAT_EXPECT, 0, 0, EXPR_T_NUM},
    {"overdue", EXPR_FN_OVERDUE, 1u << FEAT_EXPECT, 0, 0, EXPR_T_NUM},
    {"median_gap", EXPR_FN_MEDIAN_GAP, 1u << FEAT_LAST, 0, 0, EXPR_T_DUR},
};

static const char *const function_names[] = {
    "sum", "count", "avg", "min", "max", "since", "seen",
    "value", "open", "overdue", "median_gap", "firing", NULL,
};

static const char *fn_name(int fn) {
    for (size_t i = 0; i < CHURN_ARRAY_LEN(functions); i++)
        if ((int)functions[i].fn == fn) return functions[i].name;
    return "?";
}

static long lookup_feature(parser_t *p, size_t off, size_t len) {
    const expr_scope_t *sc = p->sc;
    for (size_t i = 0; i < sc->n_features; i++)
        if (strlen(sc->feature_names[i]) == len &&
            memcmp(sc->feature_names[i], p->s + off, len) == 0)
            return (long)i;
    return -1;
}

static long unknown_name(parser_t *p, size_t off, size_t len,
                         const char *what, const char *const *names,
                         size_t n) {
    const char *sug = expr_suggest(p->s + off, len, names, n);
    if (sug)
        return perr(p, off, "unknown %s '%.*s' (did you mean '%s'?)", what,
                    (int)len, p->s + off, sug);
    return perr(p, off, "unknown %s '%.*s'", what, (int)len, p->s + off);
}

static long parse_call(parser_t *p, size_t name_off, size_t name_len) {
    const char *name = p->s + name_off;
    /* p->tok is '(' */
    if (name_len == 6 && memcmp(name, "firing", 6) == 0) {
        if (!(p->sc->allow & EXPR_ALLOW_RULES))
            return perr(p, name_off, "firing() cannot be used here");
        if (next(p)) return -1;
        if (p->tok.kind != T_STR)
            return perr(p, p->tok.off,
                        "firing() takes a rule name in quotes: firing(\"rule\")");
        const char *rn = p->e->pool + p->tok.str;
        size_t rlen = p->tok.str_len;
        long idx = -1;
        for (size_t i = 0; i < p->sc->n_rules; i++)
            if (strlen(p->sc->rule_names[i]) == rlen &&
                memcmp(p->sc->rule_names[i], rn, rlen) == 0)
                idx = (long)i;
        if (idx < 0) {
            const char *sug =
                expr_suggest(rn, rlen, p->sc->rule_names, p->sc->n_rules);
            return perr(p, p->tok.off + 1, "unknown rule '%.*s'%s%s%s",
                        (int)rlen, rn, sug ? " (did you mean '" : "",
                        sug ? sug : "", sug ? "'?)" : "");
        }
        uint32_t str = p->tok.str;
        if (next(p)) return -1;
        if (p->tok.kind != T_RP)
            return perr(p, p->tok.off, "firing() takes one argument");
        node_t nd = mk(OP_FIRING, EXPR_T_BOOL, name_off, p->tok.off + 1);
        nd.idx = (uint32_t)idx;
        nd.name = str;
        if (next(p)) return -1;
        return add_node(p, &nd, NULL, 0);
    }
    const struct fn_info *fi = NULL;
    for (size_t i = 0; i < CHURN_ARRAY_LEN(functions); i++)
        if (strlen(functions[i].name) == name_len &&
            memcmp(functions[i].name, name, name_len) == 0)
            fi = &functions[i];
    if (!fi)
        return unknown_name(p, name_off, name_len, "function", function_names,
                            CHURN_ARRAY_LEN(function_names) - 1);
    if (!(p->sc->allow & EXPR_ALLOW_FEATURES))
        return perr(p, name_off,
                    "%s() reads a feature; features cannot be used here "
                    "(a feature's where: sees only the event)",
                    fi->name);
    if (next(p)) return -1;
    if (p->tok.kind != T_IDENT)
        return perr(p, p->tok.off, "%s() takes a feature name first",
                    fi->name);
    size_t foff = p->tok.off, flen = p->tok.len;
    long feat = lookup_feature(p, foff, flen);
    if (feat < 0)
        return unknown_name(p, foff, flen, "feature", p->sc->feature_names,
                            p->sc->n_features);
    int kind = p->sc->feature_kinds[feat];
    if (!(fi->kinds & (1u << kind))) {
        char want[96] = "";
        size_t wl = 0;
        for (int k = FEAT_SERIES; k <= FEAT_LATEST; k++)
            if (fi->kinds & (1u << k))
                wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "%s%s",
                                       wl ? " or " : "",
                                       feature_kind_name((feature_kind_t)k));
        return perr(p, foff, "%s() needs a %s feature; '%.*s' is a %s",
                    fi->name, want, (int)flen, p->s + foff,
                    feature_kind_name((feature_kind_t)kind));
    }
    if (fi->fn == EXPR_FN_VALUE && kind == FEAT_LAST &&
        !(p->sc->feature_has_value && p->sc->feature_has_value[feat]))
        return perr(p, foff,
                    "'%.*s' keeps only a time; give it value: data.<field> to "
                    "use value()",
                    (int)flen, p->s + foff);
    if (fi->fn == EXPR_FN_MEDIAN_GAP &&
        !(p->sc->feature_has_history && p->sc->feature_has_history[feat]))
        return perr(p, foff,
                    "'%.*s' keeps only its last time; give it history: <n> "
                    "(at least 3) to use median_gap()",
                    (int)flen, p->s + foff);
    if (next(p)) return -1;
    uint32_t args[EXPR_MAX_ARGS];
    int n_args = 0;
    while (p->tok.kind == T_COMMA) {
        if (next(p)) return -1;
        if (n_args >= fi->max_args)
            return perr(p, p->tok.off, "%s() takes at most %d argument%s",
                        fi->name, fi->max_args + 1, fi->max_args ? "s" : "");
        long a = check_not_list(p, parse_expr(p, PREC_OR), "an argument");
        if (a < 0) return -1;
        const node_t *na = &p->e->nodes[a];
        if (na->type != EXPR_T_DUR && na->type != EXPR_T_ANY)
            return perr(p, na->off,
                        "%s() range and offset are durations (e.g. 30d), not %s",
                        fi->name, expr_type_name(na->type));
        args[n_args++] = (uint32_t)a;
    }
    if (p->tok.kind != T_RP) {
        char b[64];
        return perr(p, p->tok.off, "expected ',' or ')' in %s(), found %s",
                    fi->name, tok_desc(p, b, sizeof(b)));
    }
    if (n_args < fi->min_args)
        return perr(p, p->tok.off, "%s() needs a range: %s(%.*s, 30d)",
                    fi->name, fi->name, (int)flen, p->s + foff);
    long nm = pool_add(p, p->s + foff, flen);
    if (nm < 0) return -1;
    node_t nd = mk(OP_FEAT, fi->type, name_off, p->tok.off + 1);
    nd.idx = (uint32_t)feat;
    nd.fn = (uint8_t)fi->fn;
    nd.name = (uint32_t)nm;
    if (next(p)) return -1;
    return add_node(p, &nd, args, (size_t)n_args);
}

static long add_field(parser_t *p, size_t off, size_t len, size_t skip) {
    /* Split the dotted path after `skip` bytes ("event.") into segments. */
    expr_t *e = p->e;
    const char *s = p->s + off + skip;
    size_t n = len - skip;
    node_t nd = mk(OP_FIELD, EXPR_T_ANY, off, off + len);
    nd.idx = e->n_segs;
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && s[j] != '.') j++;
        long so = pool_add(p, s + i, j - i);
        if (so < 0) return -1;
        if (grow((void **)&e->seg_offs, &p->seg_cap, e->n_segs + 1,
                 sizeof(uint32_t)))
            return oom(p);
        e->seg_offs[e->n_segs++] = (uint32_t)so;
        nd.len++;
        i = j + 1;
    }
    e->uses_event = 1;
    return add_node(p, &nd, NULL, 0);
}

static long parse_name(parser_t *p) {
    size_t off = p->tok.off, len = p->tok.len;
    const char *s = p->s + off;
    if (next(p)) return -1;
    if (p->tok.kind == T_LP) return parse_call(p, off, len);
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(s, lit, len) == 0)
#define PREFIX(lit) (len > sizeof(lit) - 1 && memcmp(s, lit, sizeof(lit) - 1) == 0)
    if (IS("now")) {
        node_t nd = mk(OP_NOW, EXPR_T_TIME, off, off + len);
        return add_node(p, &nd, NULL, 0);
    }
    if (IS("risk")) {
        if (!(p->sc->allow & EXPR_ALLOW_RULES))
            return perr(p, off, "risk cannot be used here");
        node_t nd = mk(OP_RISK, EXPR_T_NUM, off, off + len);
        return add_node(p, &nd, NULL, 0);
    }
    if (IS("event.type") || IS("event.id") || IS("client.id")) {
        int op = IS("event.type") ? OP_EV_TYPE
                 : IS("event.id") ? OP_EV_ID
                                  : OP_CLIENT_ID;
        if (op != OP_CLIENT_ID) p->e->uses_event = 1;
        node_t nd = mk(op, EXPR_T_STR, off, off + len);
        return add_node(p, &nd, NULL, 0);
    }
    if (PREFIX("data.")) return add_field(p, off, len, 0);
    if (PREFIX("event.")) return add_field(p, off, len, 6);
    if (IS("expectation.key") || IS("expectation.opened_at")) {
        if (!(p->sc->allow & EXPR_ALLOW_EXPECTATION))
            return perr(p, off,
                        "'%.*s' is only defined in rules triggered by "
                        "expired(<expect feature>)",
                        (int)len, s);
        int key = IS("expectation.key");
        node_t nd = mk(key ? OP_EXP_KEY : OP_EXP_OPENED,
                       key ? EXPR_T_STR : EXPR_T_TIME, off, off + len);
        return add_node(p, &nd, NULL, 0);
    }
    if (PREFIX("expectation."))
        return perr(p, off,
                    "unknown name '%.*s' (expectation.key or "
                    "expectation.opened_at)",
                    (int)len, s);
    if (PREFIX("client."))
        return perr(p, off, "unknown client attribute '%.*s' (only client.id)",
                    (int)len, s);
    if (memchr(s, '.', len))
        return perr(p, off,
                    "unknown name '%.*s': event fields start with 'data.' or "
                    "'event.'",
                    (int)len, s);
    if (IS("data") || IS("event"))
        return perr(p, off, "'%.*s' needs a field: %.*s.<name>", (int)len, s,
                    (int)len, s);
#undef IS
#undef PREFIX
    long feat = lookup_feature(p, off, len);
    if (feat >= 0) {
        if (!(p->sc->allow & EXPR_ALLOW_FEATURES))
            return perr(p, off,
                        "features cannot be used here (a feature's where: "
                        "sees only the event)");
        int kind = p->sc->feature_kinds[feat];
        if (kind != FEAT_STREAK) {
            const char *use = kind == FEAT_SERIES  ? "sum(%s, 30d)"
                              : kind == FEAT_EXPECT ? "open(%s)"
                              : kind == FEAT_LAST   ? "since(%s)"
                                                    : "value(%s)";
            char hint[160];
            char nm[100];
            snprintf(nm, sizeof(nm), "%.*s", (int)(len > 90 ? 90 : len), s);
            snprintf(hint, sizeof(hint), use, nm);
            return perr(p, off, "'%s' is a %s feature; use a function such as %s",
                        nm, feature_kind_name((feature_kind_t)kind), hint);
        }
        long nm = pool_add(p, s, len);
        if (nm < 0) return -1;
        node_t nd = mk(OP_FEAT, EXPR_T_NUM, off, off + len);
        nd.idx = (uint32_t)feat;
        nd.fn = EXPR_FN_STREAK;
        nd.name = (uint32_t)nm;
        return add_node(p, &nd, NULL, 0);
    }
    for (size_t i = 0; i < p->sc->n_vars; i++)
        if (strlen(p->sc->var_names[i]) == len &&
            memcmp(p->sc->var_names[i], s, len) == 0)
            return perr(p, off, "unknown name '%.*s' (the var is written $%.*s)",
                        (int)len, s, (int)len, s);
    if (!(p->sc->allow & EXPR_ALLOW_FEATURES))
        return perr(p, off,
                    "unknown name '%.*s' (event fields start with 'data.')",
                    (int)len, s);
    /* Suggest among features, then the fixed names. */
    const char *sug = expr_suggest(s, len, p->sc->feature_names,
                                   p->sc->n_features);
    if (!sug) {
        static const char *const fixed[] = {"now", "risk"};
        sug = expr_suggest(s, len, fixed, 2);
    }
    if (sug)
        return perr(p, off, "unknown feature or name '%.*s' (did you mean '%s'?)",
                    (int)len, s, sug);
    return perr(p, off, "unknown feature or name '%.*s'", (int)len, s);
}

static long parse_list(parser_t *p) {
    size_t off = p->tok.off;
    uint32_t kids[EXPR_MAX_LIST];
    size_t n = 0;
    if (next(p)) return -1;
    if (p->tok.kind != T_RB) {
        for (;;) {
            if (n >= EXPR_MAX_LIST)
                return perr(p, p->tok.off, "list longer than %d elements",
                            EXPR_MAX_LIST);
            long k = check_not_list(p, parse_expr(p, PREC_OR), "a list element");
            if (k < 0) return -1;
            kids[n++] = (uint32_t)k;
            if (p->tok.kind == T_COMMA) {
                if (next(p)) return -1;
                continue;
            }
            if (p->tok.kind == T_RB) break;
            char b[64];
            return perr(p, p->tok.off, "expected ',' or ']' in list, found %s",
                        tok_desc(p, b, sizeof(b)));
        }
    }
    node_t nd = mk(OP_LIST, EXPR_T_LIST, off, p->tok.off + 1);
    if (next(p)) return -1;
    return add_node(p, &nd, kids, n);
}

static long parse_primary(parser_t *p) {
    token_t t = p->tok;
    node_t nd;
    switch (t.kind) {
    case T_NUM:
    case T_DUR:
        nd = mk(t.kind == T_NUM ? OP_NUM : OP_DUR,
                t.kind == T_NUM ? EXPR_T_NUM : EXPR_T_DUR, t.off, t.off + t.len);
        nd.num = t.num;
        if (next(p)) return -1;
        return add_node(p, &nd, NULL, 0);
    case T_STR:
        nd = mk(OP_STR, EXPR_T_STR, t.off, t.off + t.len);
        nd.idx = t.str;
        nd.len = t.str_len;
        if (next(p)) return -1;
        return add_node(p, &nd, NULL, 0);
    case T_TRUE:
    case T_FALSE:
        nd = mk(OP_BOOL, EXPR_T_BOOL, t.off, t.off + t.len);
        nd.num = t.kind == T_TRUE;
        if (next(p)) return -1;
        return add_node(p, &nd, NULL, 0);
    case T_NULL:
        nd = mk(OP_NULL, EXPR_T_NULL, t.off, t.off + t.len);
        if (next(p)) return -1;
        return add_node(p, &nd, NULL, 0);
    case T_VAR: {
        const char *name = p->s + t.off + 1;
        size_t len = t.len - 1;
        for (size_t i = 0; i < p->sc->n_vars; i++) {
            if (strlen(p->sc->var_names[i]) != len ||
                memcmp(p->sc->var_names[i], name, len) != 0)
                continue;
            long nm = pool_add(p, name, len);
            if (nm < 0) return -1;
            nd = mk(OP_VAR, p->sc->var_types[i], t.off, t.off + t.len);
            nd.idx = (uint32_t)i;
            nd.name = (uint32_t)nm;
            if (next(p)) return -1;
            return add_node(p, &nd, NULL, 0);
        }
        const char *sug = expr_suggest(name, len, p->sc->var_names, p->sc->n_vars);
        if (sug)
            return perr(p, t.off, "unknown var '$%.*s' (did you mean '$%s'?)",
                        (int)len, name, sug);
        return perr(p, t.off, "unknown var '$%.*s' (define it under vars:)",
                    (int)len, name);
    }
    case T_IDENT:
        return parse_name(p);
    case T_LB:
        return parse_list(p);
    case T_LP: {
        if (next(p)) return -1;
        long k = parse_expr(p, PREC_OR);
        if (k < 0) return -1;
        if (p->tok.kind != T_RP) {
            char b[64];
            return perr(p, p->tok.off, "expected ')' (opened at column %zu), found %s",
                        t.off + 1, tok_desc(p, b, sizeof(b)));
        }
        /* Widen the span over the parentheses, for value-site keys. */
        p->e->nodes[k].off = (uint32_t)t.off;
        p->e->nodes[k].end = (uint32_t)(p->tok.off + 1);
        if (next(p)) return -1;
        return k;
    }
    default: {
        char b[64];
        return perr(p, t.off, "expected a value, found %s", tok_desc(p, b, sizeof(b)));
    }
    }
}

static long parse_prefix(parser_t *p) {
    size_t off = p->tok.off;
    if (p->tok.kind == T_NOT) {
        if (next(p)) return -1;
        long k = need_bool(p, parse_expr(p, PREC_NOT), "not");
        if (k < 0) return -1;
        node_t nd = mk(OP_NOT, EXPR_T_BOOL, off, p->e->nodes[k].end);
        uint32_t kid = (uint32_t)k;
        return add_node(p, &nd, &kid, 1);
    }
    if (p->tok.kind == T_MINUS) {
        if (next(p)) return -1;
        long k = check_not_list(p, parse_expr(p, PREC_UNARY), "'-'");
        if (k < 0) return -1;
        const node_t *n = &p->e->nodes[k];
        int t = n->type;
        if (t != EXPR_T_NUM && t != EXPR_T_DUR && t != EXPR_T_ANY)
            return perr(p, off, "cannot negate %s", expr_type_name(t));
        if (n->op == OP_NUM || n->op == OP_DUR) { /* fold -3 into a literal */
            p->e->nodes[k].num = -n->num;
            p->e->nodes[k].off = (uint32_t)off;
            return k;
        }
        node_t nd = mk(OP_NEG, t, off, n->end);
        uint32_t kid = (uint32_t)k;
        return add_node(p, &nd, &kid, 1);
    }
    return parse_primary(p);
}

/* Precedence climbing: parse operators binding at least as tightly as
 * min_prec. and/or chains become one n-ary node, so a long disjunction
 * costs one level of depth, not one per term. */
static long parse_expr(parser_t *p, int min_prec) {
    /* The parser recurses a little more than the tree is deep (a
     * parenthesis costs a call); bound it so 10k '(' cannot overflow the
     * stack. The tree's own depth is checked in add_node. */
    if (++p->depth > 2 * EXPR_MAX_DEPTH + 8)
        return perr(p, p->tok.off,
                    "expression nested too deeply (more than %d levels)",
                    EXPR_MAX_DEPTH);
    long left = parse_prefix(p);
    while (left >= 0) {
        int prec;
        int op = binop(p->tok.kind, &prec);
        if (op < 0 || prec < min_prec) break;
        size_t opoff = p->tok.off;
        if (op == OP_AND || op == OP_OR) {
            uint32_t *kids = NULL;
            size_t n = 0, cap = 0;
            if (need_bool(p, left, op_text(op)) < 0) { left = -1; break; }
            if (grow((void **)&kids, &cap, 1, sizeof(uint32_t))) { left = oom(p); break; }
            kids[n++] = (uint32_t)left;
            int tk = p->tok.kind;
            while (p->tok.kind == tk) {
                if (next(p)) { n = 0; break; }
                long r = need_bool(p, parse_expr(p, prec + 1), op_text(op));
                if (r < 0) { n = 0; break; }
                if (grow((void **)&kids, &cap, n + 1, sizeof(uint32_t))) {
                    oom(p);
                    n = 0;
                    break;
                }
                kids[n++] = (uint32_t)r;
            }
            if (n == 0) {
                free(kids);
                left = -1;
                break;
            }
            if (n > UINT16_MAX) {
                free(kids);
                left = perr(p, opoff, "too many operands");
                break;
            }
            node_t nd = mk(op, EXPR_T_BOOL, p->e->nodes[kids[0]].off,
                           p->e->nodes[kids[n - 1]].end);
            left = add_node(p, &nd, kids, n);
            free(kids);
            continue;
        }
        if (next(p)) { left = -1; break; }
        long right = parse_expr(p, prec + 1);
        if (right < 0) { left = -1; break; }
        if (prec == PREC_CMP) {
            left = mk_cmp(p, op, left, right, opoff);
            int p2;
            int op2 = binop(p->tok.kind, &p2);
            if (left >= 0 && op2 >= 0 && p2 == PREC_CMP)
                left = perr(p, p->tok.off,
                            "comparisons do not chain: write 'a < b and b < c'");
        } else {
            left = mk_arith(p, op, left, right, opoff);
        }
    }
    p->depth--;
    return left;
}

/* ---- Compile ------------------------------------------------------------ */

static int collect_sites(expr_t *e, uint32_t i) {
    const node_t *n = &e->nodes[i];
    int site = n->op == OP_FEAT || n->op == OP_RISK ||
               (n->op == OP_FIELD && n->len > 0 &&
                strcmp(e->pool + e->seg_offs[n->idx], "data") == 0);
    if (site) {
        /* Key: the source text with whitespace runs collapsed. */
        size_t len = n->end - n->off;
        char *key = malloc(len + 1);
        if (!key) return CHURN_ENOMEM;
        size_t k = 0;
        int sp = 0;
        for (size_t j = n->off; j < n->end; j++) {
            if (isspace((unsigned char)e->src[j])) {
                sp = 1;
                continue;
            }
            if (sp && k) key[k++] = ' ';
            sp = 0;
            key[k++] = e->src[j];
        }
        key[k] = '\0';
        for (size_t j = 0; j < e->n_sites; j++)
            if (strcmp(e->sites[j].key, key) == 0) {
                free(key);
                key = NULL;
                break;
            }
        if (key) {
            site_t *ns = realloc(e->sites, (e->n_sites + 1) * sizeof(site_t));
            if (!ns) {
                free(key);
                return CHURN_ENOMEM;
            }
            e->sites = ns;
            e->sites[e->n_sites].node = i;
            e->sites[e->n_sites].key = key;
            e->n_sites++;
        }
    }
    for (uint16_t j = 0; j < n->n_kids; j++) {
        int rc = collect_sites(e, e->kids[n->kids + j]);
        if (rc) return rc;
    }
    return 0;
}

int expr_compile(const char *src, size_t len, const expr_scope_t *sc,
                 expr_t **out, churn_err_t *err, size_t *err_off) {
    static const expr_scope_t empty;
    size_t dummy_off;
    if (!err_off) err_off = &dummy_off;
    *out = NULL;
    *err_off = 0;
    if (!sc) sc = &empty;
    if (len > EXPR_MAX_SRC) {
        churn_err_set(err, CHURN_EINVAL, "expression longer than %d bytes",
                      EXPR_MAX_SRC);
        if (err) err->col = 1;
        return CHURN_EINVAL;
    }
    expr_t *e = calloc(1, sizeof(*e));
    if (!e) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    e->src = malloc(len + 1);
    if (!e->src) {
        free(e);
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    memcpy(e->src, src, len);
    e->src[len] = '\0';
    e->src_len = len;
    parser_t p;
    memset(&p, 0, sizeof(p));
    p.s = e->src;
    p.n = len;
    p.sc = sc;
    p.e = e;
    p.err = err;
    long root = -1;
    if (memchr(src, '\0', len)) {
        perr(&p, (size_t)((const char *)memchr(src, '\0', len) - src),
             "NUL byte in expression");
    } else if (next(&p) == 0) {
        if (p.tok.kind == T_EOF) {
            perr(&p, 0, "empty expression");
        } else {
            root = check_not_list(&p, parse_expr(&p, PREC_OR), "an expression");
            if (root >= 0 && p.tok.kind != T_EOF) {
                char b[64];
                root = perr(&p, p.tok.off, "unexpected %s after the expression",
                            tok_desc(&p, b, sizeof(b)));
            }
        }
    }
    if (root < 0 || p.failed) {
        int code = err ? err->code : CHURN_EINVAL;
        if (code == 0) code = CHURN_EINVAL;
        *err_off = p.err_off;
        expr_free(e);
        return code;
    }
    e->root = (uint32_t)root;
    /* The pool is final: turn segment offsets into pointers. */
    if (e->n_segs) {
        e->segs = malloc(e->n_segs * sizeof(char *));
        if (!e->segs) {
            expr_free(e);
            return churn_err_set(err, CHURN_ENOMEM, "out of memory");
        }
        for (uint32_t i = 0; i < e->n_segs; i++)
            e->segs[i] = e->pool + e->seg_offs[i];
    }
    if (collect_sites(e, e->root)) {
        expr_free(e);
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    *out = e;
    return 0;
}

void expr_free(expr_t *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n_sites; i++) free(e->sites[i].key);
    free(e->sites);
    free(e->src);
    free(e->nodes);
    free(e->kids);
    free(e->pool);
    free(e->segs);
    free(e->seg_offs);
    free(e);
}

expr_type_t expr_result_type(const expr_t *e) {
    return (expr_type_t)e->nodes[e->root].type;
}

const char *expr_source(const expr_t *e) { return e->src; }
int expr_uses_event(const expr_t *e) { return e->uses_event; }

void expr_mark_features(const expr_t *e, uint8_t *reads, size_t n) {
    for (uint32_t i = 0; i < e->n_nodes; i++)
        if (e->nodes[i].op == OP_FEAT && e->nodes[i].idx < n) reads[e->nodes[i].idx] = 1;
}
size_t expr_n_sites(const expr_t *e) { return e->n_sites; }
const char *expr_site_key(const expr_t *e, size_t i) { return e->sites[i].key; }

/* ---- Canonical text ----------------------------------------------------- */

static int canon(const expr_t *e, uint32_t i, buf_t *b) {
    const node_t *n = &e->nodes[i];
    const uint32_t *k = n->n_kids ? e->kids + n->kids : NULL;
    int rc = 0;
    switch (n->op) {
    case OP_NULL: return buf_printf(b, "null");
    case OP_BOOL: return buf_printf(b, n->num ? "true" : "false");
    case OP_NUM: return buf_printf(b, "%.17g", n->num);
    case OP_DUR: return buf_printf(b, "%.0fms", n->num);
    case OP_STR: return buf_put_json_str(b, e->pool + n->idx, n->len);
    case OP_VAR: return buf_printf(b, "$%s", e->pool + n->name);
    case OP_FIELD:
        for (uint32_t j = 0; j < n->len && !rc; j++)
            rc = buf_printf(b, "%s%s", j ? "." : "field:", e->segs[n->idx + j]);
        return rc;
    case OP_EV_TYPE: return buf_printf(b, "event.type");
    case OP_EV_ID: return buf_printf(b, "event.id");
    case OP_CLIENT_ID: return buf_printf(b, "client.id");
    case OP_NOW: return buf_printf(b, "now");
    case OP_RISK: return buf_printf(b, "risk");
    case OP_EXP_KEY: return buf_printf(b, "expectation.key");
    case OP_EXP_OPENED: return buf_printf(b, "expectation.opened_at");
    case OP_FIRING:
        rc = buf_printf(b, "firing(");
        if (!rc) rc = buf_put_json_str(b, e->pool + n->name, strlen(e->pool + n->name));
        return rc ? rc : buf_printf(b, ")");
    case OP_FEAT:
        if (n->fn == EXPR_FN_STREAK) return buf_printf(b, "%s", e->pool + n->name);
        rc = buf_printf(b, "%s(%s", fn_name(n->fn), e->pool + n->name);
        for (uint16_t j = 0; j < n->n_kids && !rc; j++) {
            rc = buf_printf(b, ",");
            if (!rc) rc = canon(e, k[j], b);
        }
        return rc ? rc : buf_printf(b, ")");
    case OP_NEG:
    case OP_NOT:
        rc = buf_printf(b, "(%s ", op_text(n->op));
        if (!rc) rc = canon(e, k[0], b);
        return rc ? rc : buf_printf(b, ")");
    case OP_LIST:
        rc = buf_printf(b, "[");
        for (uint16_t j = 0; j < n->n_kids && !rc; j++) {
            if (j) rc = buf_printf(b, ",");
            if (!rc) rc = canon(e, k[j], b);
        }
        return rc ? rc : buf_printf(b, "]");
    default:
        rc = buf_printf(b, "(");
        for (uint16_t j = 0; j < n->n_kids && !rc; j++) {
            if (j) rc = buf_printf(b, " %s ", op_text(n->op));
            if (!rc) rc = canon(e, k[j], b);
        }
        return rc ? rc : buf_printf(b, ")");
    }
}

int expr_canon(const expr_t *e, buf_t *out) { return canon(e, e->root, out); }

/* ---- Evaluation --------------------------------------------------------- */

static void set_null(expr_val_t *v) {
    v->type = EXPR_T_NULL;
    v->u.num = 0;
}

static void set_bool(expr_val_t *v, int b) {
    v->type = EXPR_T_BOOL;
    v->u.b = b != 0;
}

static void set_num(expr_val_t *v, int type, double x) {
    if (isnan(x)) {
        set_null(v);
        return;
    }
    v->type = (uint8_t)type;
    v->u.num = x;
}

static void json_val(const cJSON *j, expr_val_t *v) {
    if (!j) set_null(v);
    else if (cJSON_IsNumber(j)) set_num(v, EXPR_T_NUM, j->valuedouble);
    else if (cJSON_IsString(j) && j->valuestring) {
        v->type = EXPR_T_STR;
        v->u.s.p = j->valuestring;
        v->u.s.len = strlen(j->valuestring);
    } else if (cJSON_IsBool(j)) set_bool(v, cJSON_IsTrue(j));
    else if (cJSON_IsArray(j)) {
        v->type = EXPR_T_ARRAY;
        v->u.arr = j;
    } else set_null(v); /* null and objects */
}

static int val_eq(const expr_val_t *a, const expr_val_t *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case EXPR_T_NUM:
    case EXPR_T_DUR:
    case EXPR_T_TIME: return a->u.num == b->u.num;
    case EXPR_T_BOOL: return a->u.b == b->u.b;
    case EXPR_T_STR:
        return a->u.s.len == b->u.s.len &&
               memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    }
    return 0; /* null, arrays */
}

/* <0, 0, >0, or 2 for "not comparable" (any comparison then false). */
static int val_order(const expr_val_t *a, const expr_val_t *b) {
    if (a->type != b->type) return 2;
    switch (a->type) {
    case EXPR_T_NUM:
    case EXPR_T_DUR:
    case EXPR_T_TIME:
        if (a->u.num < b->u.num) return -1;
        if (a->u.num > b->u.num) return 1;
        return a->u.num == b->u.num ? 0 : 2;
    case EXPR_T_STR: {
        size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
        int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        if (c) return c < 0 ? -1 : 1;
        return a->u.s.len < b->u.s.len ? -1 : a->u.s.len > b->u.s.len;
    }
    }
    return 2;
}

/* ---- Trends (expr_eval_bool_until) ---------------------------------------
 *
 * With a trend pointer, eval also says how its value moves with the time
 * of evaluation (expr_trend_t): affine pieces, cut short wherever the
 * model ends. Every rule below may answer "unknown beyond now" (until =
 * now + 1) but never claims a value that a later evaluation would not
 * find: look_ahead skips the evaluations it covers. */

static const expr_trend_t TR_FIXED = {0, INT64_MAX};

static int64_t tr_min(int64_t a, int64_t b) { return a < b ? a : b; }

static expr_trend_t tr_unknown(const expr_ctx_t *cx) {
    expr_trend_t t = {0, cx->now_ms == INT64_MAX ? INT64_MAX : cx->now_ms + 1};
    return t;
}

/* A crossing further than this (ms, about 126,000 years) is placed here:
 * still before it, and within int64 arithmetic. */
#define TR_FAR 4e15

/* The earliest time after now at which d + slope * (t - now) may reach
 * or cross 0, where the comparison's answer may change. It is placed a
 * millisecond and a part in 10^9 early, so that rounding in the
 * evaluations it stands for cannot get there first. */
static int64_t tr_crossing(const expr_ctx_t *cx, double d, double slope) {
    if (slope == 0 || !isfinite(d) || !isfinite(slope)) return INT64_MAX;
    if ((d > 0 && slope > 0) || (d < 0 && slope < 0)) return INT64_MAX; /* away */
    double q = fabs(d) / fabs(slope); /* ms to the crossing */
    if (!(q < TR_FAR)) q = TR_FAR;
    int64_t ahead = (int64_t)(q * (1 - 1e-9)) - 1;
    if (ahead < 1) return tr_unknown(cx).until;
    return cx->now_ms > INT64_MAX - ahead ? INT64_MAX : cx->now_ms + ahead;
}

static void eval(const expr_t *e, uint32_t i, const expr_ctx_t *cx,
                 expr_val_t *out, expr_trend_t *tr);

static int truthy(const expr_t *e, uint32_t i, const expr_ctx_t *cx,
                  expr_trend_t *tr) {
    expr_val_t v;
    eval(e, i, cx, &v, tr);
    if (tr) tr->slope = 0;
    return v.type == EXPR_T_BOOL && v.u.b;
}

/* The trend of a + b, a - b, a * b, a / b or a % b, whose result r (of
 * static type rt, -1 for a type mismatch) is already computed. */
static expr_trend_t tr_arith(const expr_ctx_t *cx, int op, int rt,
                             const expr_val_t *a, const expr_trend_t *ta,
                             const expr_val_t *b, const expr_trend_t *tb,
                             const expr_val_t *r) {
    expr_trend_t t = {0, tr_min(ta->until, tb->until)};
    if (ta->slope == 0 && tb->slope == 0) return t;
    /* Operands keep their types until their trends end, so a mismatch
     * stays one. Other nulls (x / 0, NaN) and infinities of moving
     * operands are not followed. */
    if (rt < 0) return t;
    if (r->type == EXPR_T_NULL || !isfinite(r->u.num)) return tr_unknown(cx);
    switch (op) {
    case OP_ADD:
    case OP_SUB:
        t.slope = op == OP_ADD ? ta->slope + tb->slope : ta->slope - tb->slope;
        /* Two moving values that cancel (since(a) - since(b)) would be
         * claimed fixed while rounding still moves them: not followed. */
        if (t.slope == 0) return tr_unknown(cx);
        break;
    case OP_MUL:
        if (ta->slope != 0 && tb->slope != 0) return tr_unknown(cx);
        t.slope = ta->slope != 0 ? ta->slope * b->u.num : tb->slope * a->u.num;
        break;
    case OP_DIV:
        if (tb->slope != 0) return tr_unknown(cx);
        t.slope = ta->slope / b->u.num; /* b != 0: r is not null */
        break;
    default: return tr_unknown(cx);
    }
    if (!isfinite(t.slope)) return tr_unknown(cx);
    return t;
}

static void eval(const expr_t *e, uint32_t i, const expr_ctx_t *cx,
                 expr_val_t *out, expr_trend_t *tr) {
    const node_t *n = &e->nodes[i];
    const uint32_t *k = n->n_kids ? e->kids + n->kids : NULL;
    expr_val_t a, b;
    expr_trend_t ta, tb;
    expr_trend_t *pa = tr ? &ta : NULL, *pb = tr ? &tb : NULL;
    if (tr) *tr = TR_FIXED;
    switch (n->op) {
    case OP_NULL: set_null(out); return;
    case OP_BOOL: set_bool(out, n->num != 0); return;
    case OP_NUM: set_num(out, EXPR_T_NUM, n->num); return;
    case OP_DUR: set_num(out, EXPR_T_DUR, n->num); return;
    case OP_STR:
        out->type = EXPR_T_STR;
        out->u.s.p = e->pool + n->idx;
        out->u.s.len = n->len;
        return;
    case OP_VAR:
        if (cx->vars) *out = cx->vars[n->idx];
        else set_null(out);
        return;
    case OP_FIELD:
        if (!cx->ev || !cx->ev->root) set_null(out);
        else json_val(event_path_segs(cx->ev->root, e->segs + n->idx, n->len), out);
        return;
    case OP_EV_TYPE:
    case OP_EV_ID: {
        const char *s = NULL;
        size_t len = 0;
        if (cx->ev && n->op == OP_EV_TYPE && cx->ev->type) {
            s = cx->ev->type;
            len = strlen(s);
        } else if (cx->ev && n->op == OP_EV_ID && cx->ev->id) {
            s = cx->ev->id;
            len = cx->ev->id_len;
        }
        if (!s) {
            set_null(out);
            return;
        }
        out->type = EXPR_T_STR;
        out->u.s.p = s;
        out->u.s.len = len;
        return;
    }
    case OP_CLIENT_ID:
        if (!cx->client_id) {
            set_null(out);
            return;
        }
        out->type = EXPR_T_STR;
        out->u.s.p = cx->client_id;
        out->u.s.len = cx->client_len;
        return;
    case OP_NOW:
        set_num(out, EXPR_T_TIME, (double)cx->now_ms);
        if (tr) tr->slope = 1;
        return;
    case OP_EXP_KEY:
        if (!cx->exp_key) {
            set_null(out);
            return;
        }
        out->type = EXPR_T_STR;
        out->u.s.p = cx->exp_key;
        out->u.s.len = cx->exp_key_len;
        return;
    case OP_EXP_OPENED:
        if (!cx->exp_key || cx->exp_opened_ms == INT64_MIN) set_null(out);
        else set_num(out, EXPR_T_TIME, (double)cx->exp_opened_ms);
        return;
    case OP_RISK:
        if (tr) *cx->trend = tr_unknown(cx);
        set_num(out, EXPR_T_NUM,
                cx->host && cx->host->risk ? cx->host->risk(cx) : 0.0);
        if (tr && cx->host && cx->host->risk) *tr = *cx->trend;
        return;
    case OP_FIRING:
        set_bool(out, cx->host && cx->host->firing ? cx->host->firing(cx, n->idx) : 0);
        return;
    case OP_FEAT: {
        expr_val_t args[EXPR_MAX_ARGS];
        int64_t args_until = INT64_MAX;
        int args_move = 0;
        for (uint16_t j = 0; j < n->n_kids; j++) {
            eval(e, k[j], cx, &args[j], pa);
            if (tr) {
                args_until = tr_min(args_until, ta.until);
                args_move |= ta.slope != 0;
            }
        }
        set_null(out);
        if (!cx->host || !cx->host->feature) return;
        if (tr) *cx->trend = tr_unknown(cx);
        cx->host->feature(cx, n->idx, (expr_fn_t)n->fn, args, n->n_kids, out);
        if (tr) {
            /* The host's trend assumes its arguments stay put. */
            *tr = args_move ? tr_unknown(cx) : *cx->trend;
            tr->until = tr_min(tr->until, args_until);
            /* Only finite numbers move; an infinity stays one. */
            if ((out->type != EXPR_T_NUM && out->type != EXPR_T_DUR &&
                 out->type != EXPR_T_TIME) || !isfinite(out->u.num))
                tr->slope = 0;
        }
        return;
    }
    case OP_NEG:
        eval(e, k[0], cx, &a, tr);
        if (a.type == EXPR_T_NUM || a.type == EXPR_T_DUR)
            set_num(out, a.type, -a.u.num);
        else
            set_null(out);
        if (tr) tr->slope = out->type == EXPR_T_NULL ? 0 : -tr->slope;
        return;
    case OP_NOT: set_bool(out, !truthy(e, k[0], cx, tr)); return;
    case OP_AND:
    case OP_OR: {
        /* The answer stays while the operand that decided it stays (the
         * first false one of an and, the first true one of an or), or,
         * when none did, while all of them stay. */
        int stop = n->op == OP_OR;
        for (uint16_t j = 0; j < n->n_kids; j++) {
            int v = truthy(e, k[j], cx, pa);
            if (v == stop) {
                set_bool(out, stop);
                if (tr) tr->until = ta.until;
                return;
            }
            if (tr) tr->until = tr_min(tr->until, ta.until);
        }
        set_bool(out, !stop);
        return;
    }
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_MOD: {
        eval(e, k[0], cx, &a, pa);
        eval(e, k[1], cx, &b, pb);
        int t = arith_result(n->op, a.type, b.type);
        double x = a.u.num, y = b.u.num, r = 0;
        if (t < 0) {
            set_null(out);
        } else {
            switch (n->op) {
            case OP_ADD: r = x + y; break;
            case OP_SUB: r = x - y; break;
            case OP_MUL: r = x * y; break;
            case OP_DIV: r = y == 0 ? NAN : x / y; break;
            default: r = y == 0 ? NAN : fmod(x, y); break;
            }
            set_num(out, t, r); /* NaN (x / 0, x % 0, inf - inf): null */
        }
        if (tr) *tr = tr_arith(cx, n->op, t, &a, &ta, &b, &tb, out);
        return;
    }
    case OP_EQ:
    case OP_NE: {
        eval(e, k[0], cx, &a, pa);
        eval(e, k[1], cx, &b, pb);
        if (a.type == EXPR_T_NULL || b.type == EXPR_T_NULL || a.type != b.type ||
            a.type == EXPR_T_ARRAY) {
            set_bool(out, 0);
        } else {
            int eq = val_eq(&a, &b);
            set_bool(out, n->op == OP_EQ ? eq : !eq);
        }
        if (tr) {
            tr->until = tr_min(ta.until, tb.until);
            if (ta.slope != 0 || tb.slope != 0) *tr = tr_unknown(cx);
        }
        return;
    }
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: {
        eval(e, k[0], cx, &a, pa);
        eval(e, k[1], cx, &b, pb);
        int c = val_order(&a, &b);
        int r = c == 2 ? 0
              : n->op == OP_LT ? c < 0 : n->op == OP_LE ? c <= 0
              : n->op == OP_GT ? c > 0 : c >= 0;
        set_bool(out, r);
        if (tr) {
            /* Comparable numbers moving apart or together: the answer can
             * only change where their difference reaches 0. */
            tr->until = tr_min(ta.until, tb.until);
            if (c != 2 && a.type != EXPR_T_STR)
                tr->until = tr_min(tr->until, tr_crossing(cx, a.u.num - b.u.num,
                                                          ta.slope - tb.slope));
        }
        return;
    }
    case OP_IN: {
        eval(e, k[0], cx, &a, pa);
        set_bool(out, 0);
        if (tr && ta.slope != 0) *tr = tr_unknown(cx);
        else if (tr) tr->until = ta.until;
        if (a.type == EXPR_T_NULL || a.type == EXPR_T_ARRAY) return;
        const node_t *h = &e->nodes[k[1]];
        if (h->op == OP_LIST) { /* literals: fixed */
            for (uint16_t j = 0; j < h->n_kids; j++) {
                eval(e, e->kids[h->kids + j], cx, &b, NULL);
                if (val_eq(&a, &b)) {
                    set_bool(out, 1);
                    return;
                }
            }
            return;
        }
        eval(e, k[1], cx, &b, pb);
        if (tr) tr->until = tr_min(tr->until, tb.until);
        if (b.type != EXPR_T_ARRAY) return;
        const cJSON *el;
        cJSON_ArrayForEach(el, b.u.arr) {
            expr_val_t x;
            json_val(el, &x);
            if (val_eq(&a, &x)) {
                set_bool(out, 1);
                return;
            }
        }
        return;
    }
    case OP_LIST:
    default:
        set_null(out);
        return;
    }
}

void expr_eval(const expr_t *e, const expr_ctx_t *cx, expr_val_t *out) {
    eval(e, e->root, cx, out, NULL);
}

int expr_eval_bool(const expr_t *e, const expr_ctx_t *cx) {
    return truthy(e, e->root, cx, NULL);
}

int expr_eval_bool_until(const expr_t *e, const expr_ctx_t *cx, int64_t *until) {
    expr_ctx_t c = *cx;
    expr_trend_t host_tr, tr;
    c.trend = &host_tr;
    int v = truthy(e, e->root, &c, &tr);
    *until = tr.until > cx->now_ms ? tr.until
             : cx->now_ms == INT64_MAX ? INT64_MAX : cx->now_ms + 1;
    return v;
}

void expr_eval_site(const expr_t *e, size_t i, const expr_ctx_t *cx,
                    expr_val_t *out) {
    eval(e, e->sites[i].node, cx, out, NULL);
}

/* ---- Formatting --------------------------------------------------------- */

size_t expr_num_format(double x, char *buf, size_t size) {
    int n;
    if (isnan(x)) n = snprintf(buf, size, "n/a");
    else if (isinf(x)) n = snprintf(buf, size, x > 0 ? "inf" : "-inf");
    else if (x == 0) n = snprintf(buf, size, "0");
    else if (x == trunc(x) && fabs(x) < 1e15) n = snprintf(buf, size, "%.0f", x);
    else if (fabs(x) >= 1e15) n = snprintf(buf, size, "%.3g", x);
    else {
        n = fabs(x) >= 1 ? snprintf(buf, size, "%.2f", x)
                         : snprintf(buf, size, "%.3g", x);
        /* Drop trailing zeros of a fixed fraction ("2.50" -> "2.5"). */
        if (n > 0 && (size_t)n < size && strchr(buf, '.') && !strchr(buf, 'e')) {
            while (n > 0 && buf[n - 1] == '0') buf[--n] = '\0';
            if (n > 0 && buf[n - 1] == '.') buf[--n] = '\0';
        }
    }
    if (n < 0) n = 0;
    return (size_t)n < size ? (size_t)n : (size ? size - 1 : 0);
}

static int fmt_duration(double ms, buf_t *out) {
    if (isinf(ms)) return buf_printf(out, ms > 0 ? "inf" : "-inf");
    char tmp[64];
    double r = round(ms);
    if (fabs(r) > 9e15) return buf_printf(out, "%.3gms", r);
    int64_t v = (int64_t)r;
    size_t n = 0;
    if (v < 0) {
        tmp[0] = '-';
        n = 1 + duration_format(-v, tmp + 1, sizeof(tmp) - 1);
    } else {
        n = duration_format(v, tmp, sizeof(tmp));
    }
    return buf_append(out, tmp, n);
}

int expr_val_format(const expr_val_t *v, buf_t *out) {
    char tmp[64];
    switch (v->type) {
    case EXPR_T_BOOL: return buf_printf(out, v->u.b ? "true" : "false");
    case EXPR_T_NUM: return buf_append(out, tmp, expr_num_format(v->u.num, tmp, sizeof(tmp)));
    case EXPR_T_STR: return buf_append(out, v->u.s.p, v->u.s.len);
    case EXPR_T_DUR: return fmt_duration(v->u.num, out);
    case EXPR_T_TIME:
        if (!isfinite(v->u.num) || fabs(v->u.num) > 2.5e14) return buf_printf(out, "n/a");
        return buf_append(out, tmp,
                          time_format_rfc3339((int64_t)v->u.num, tmp, sizeof(tmp)));
    case EXPR_T_ARRAY: return buf_printf(out, "[...]");
    }
    return buf_printf(out, "n/a");
}

int expr_val_json(const expr_val_t *v, buf_t *out) {
    char tmp[64];
    switch (v->type) {
    case EXPR_T_BOOL: return buf_printf(out, v->u.b ? "true" : "false");
    case EXPR_T_NUM: {
        double x = v->u.num;
        if (!isfinite(x)) return buf_printf(out, "null");
        if (x == trunc(x) && fabs(x) < 1e15) return buf_printf(out, "%.0f", x == 0 ? 0.0 : x);
        /* Shortest of %.15g / %.17g that reads back exactly. */
        snprintf(tmp, sizeof(tmp), "%.15g", x);
        if (strtod(tmp, NULL) != x) snprintf(tmp, sizeof(tmp), "%.17g", x);
        return buf_printf(out, "%s", tmp);
    }
    case EXPR_T_STR: return buf_put_json_str(out, v->u.s.p, v->u.s.len);
    case EXPR_T_DUR:
    case EXPR_T_TIME: {
        buf_t t;
        buf_init(&t);
        int rc = expr_val_format(v, &t);
        if (!rc) rc = buf_put_json_str(out, (const char *)t.data, t.len);
        buf_free(&t);
        return rc;
    }
    }
    return buf_printf(out, "null");
}

/* ---- Templates ---------------------------------------------------------- */

typedef struct tseg {
    size_t off, len; /* literal text in src, when e is NULL */
    expr_t *e;
} tseg_t;

struct expr_tmpl {
    char *src;
    tseg_t *segs;
    size_t n_segs;
    size_t n_exprs;
};

void expr_tmpl_free(expr_tmpl_t *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_segs; i++) expr_free(t->segs[i].e);
    free(t->segs);
    free(t->src);
    free(t);
}

static int tmpl_push(expr_tmpl_t *t, size_t off, size_t len, expr_t *e) {
    tseg_t *ns = realloc(t->segs, (t->n_segs + 1) * sizeof(tseg_t));
    if (!ns) return CHURN_ENOMEM;
    t->segs = ns;
    t->segs[t->n_segs].off = off;
    t->segs[t->n_segs].len = len;
    t->segs[t->n_segs].e = e;
    t->n_segs++;
    if (e) t->n_exprs++;
    return 0;
}

int expr_tmpl_compile(const char *src, size_t len, const expr_scope_t *sc,
                      expr_tmpl_t **out, churn_err_t *err, size_t *err_off) {
    size_t dummy;
    if (!err_off) err_off = &dummy;
    *err_off = 0;
    *out = NULL;
    expr_tmpl_t *t = calloc(1, sizeof(*t));
    if (!t || !(t->src = malloc(len + 1))) {
        free(t);
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    }
    memcpy(t->src, src, len);
    t->src[len] = '\0';
    size_t i = 0, lit = 0;
    while (i < len) {
        if (!(src[i] == '{' && i + 1 < len && src[i + 1] == '{')) {
            i++;
            continue;
        }
        size_t open = i;
        /* Find the closing braces outside string literals. */
        size_t j = i + 2;
        char q = 0;
        while (j < len) {
            char c = src[j];
            if (q) {
                if (c == '\\') j++;
                else if (c == q) q = 0;
            } else if (c == '"' || c == '\'') {
                q = c;
            } else if (c == '}' && j + 1 < len && src[j + 1] == '}') {
                break;
            }
            j++;
        }
        if (j >= len) {
            expr_tmpl_free(t);
            *err_off = open;
            churn_err_set(err, CHURN_EINVAL, "'{{' without a closing '}}'");
            if (err) err->col = (int)open + 1;
            return CHURN_EINVAL;
        }
        if (open > lit && tmpl_push(t, lit, open - lit, NULL)) goto nomem;
        expr_t *e = NULL;
        size_t eoff = 0;
        int rc = expr_compile(src + open + 2, j - open - 2, sc, &e, err, &eoff);
        if (rc) {
            expr_tmpl_free(t);
            *err_off = open + 2 + eoff;
            if (err) err->col = (int)*err_off + 1;
            return rc;
        }
        if (tmpl_push(t, 0, 0, e)) {
            expr_free(e);
            goto nomem;
        }
        i = lit = j + 2;
    }
    if (len > lit && tmpl_push(t, lit, len - lit, NULL)) goto nomem;
    *out = t;
    return 0;
nomem:
    expr_tmpl_free(t);
    return churn_err_set(err, CHURN_ENOMEM, "out of memory");
}

int expr_tmpl_render(const expr_tmpl_t *t, const expr_ctx_t *cx, buf_t *out) {
    int rc = 0;
    for (size_t i = 0; i < t->n_segs && !rc; i++) {
        const tseg_t *s = &t->segs[i];
        if (!s->e) {
            rc = buf_append(out, t->src + s->off, s->len);
        } else {
            expr_val_t v;
            expr_eval(s->e, cx, &v);
            rc = expr_val_format(&v, out);
        }
    }
    return rc;
}

size_t expr_tmpl_n_exprs(const expr_tmpl_t *t) { return t->n_exprs; }

const expr_t *expr_tmpl_expr(const expr_tmpl_t *t, size_t i) {
    for (size_t j = 0; j < t->n_segs; j++) {
        if (!t->segs[j].e) continue;
        if (i == 0) return t->segs[j].e;
        i--;
    }
    return NULL;
}

const char *expr_tmpl_source(const expr_tmpl_t *t) { return t->src; }
