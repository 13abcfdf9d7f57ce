/*
 * test_expr.c - the expression language: precedence, types, null rules,
 * durations, `in`, functions over features through a fake host, error
 * messages with their columns, limits, templates and number formatting.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/expr.h"
#include "churnd/event.h"

/* ---- Fixture: a scope with vars and features, a fake host -------------- */

static const char *const var_names[] = {"threshold", "window", "tier_name", "on"};
static const uint8_t var_types[] = {EXPR_T_NUM, EXPR_T_DUR, EXPR_T_STR, EXPR_T_BOOL};
static const char *const feat_names[] = {"postponements", "order_value",
                                         "dm_contact", "tier", "reply"};
static const uint8_t feat_kinds[] = {FEAT_STREAK, FEAT_SERIES, FEAT_LAST,
                                     FEAT_LATEST, FEAT_EXPECT};
static const uint8_t feat_has_value[] = {0, 0, 0, 1, 0};
static const char *const rule_names[] = {"order_decline", "detractor"};

static expr_scope_t scope(void) {
    expr_scope_t sc;
    memset(&sc, 0, sizeof(sc));
    sc.var_names = var_names;
    sc.var_types = var_types;
    sc.n_vars = 4;
    sc.feature_names = feat_names;
    sc.feature_kinds = feat_kinds;
    sc.feature_has_value = feat_has_value;
    sc.n_features = 5;
    sc.rule_names = rule_names;
    sc.n_rules = 2;
    sc.allow = EXPR_ALLOW_FEATURES | EXPR_ALLOW_RULES;
    return sc;
}

static expr_val_t vars[4];
static int n_queries;
static double streak_value = 3;

static void fake_feature(const expr_ctx_t *cx, uint32_t feat, expr_fn_t fn,
                         const expr_val_t *args, size_t n_args, expr_val_t *out) {
    (void)cx;
    n_queries++;
    out->type = EXPR_T_NULL;
    if (feat == 0 && fn == EXPR_FN_STREAK) {
        out->type = EXPR_T_NUM;
        out->u.num = streak_value;
    } else if (feat == 1 && fn == EXPR_FN_SUM) {
        /* sum over the range in days, plus 1000 * the offset in days */
        out->type = EXPR_T_NUM;
        out->u.num = args[0].u.num / 86400000.0 +
                     (n_args > 1 ? 1000 * args[1].u.num / 86400000.0 : 0);
    } else if (feat == 2 && fn == EXPR_FN_SINCE) {
        out->type = EXPR_T_DUR;
        out->u.num = 36 * 3600000.0;
    } else if (feat == 3 && fn == EXPR_FN_VALUE) {
        out->type = EXPR_T_STR;
        out->u.s.p = "gold";
        out->u.s.len = 4;
    }
}

static int fake_firing(const expr_ctx_t *cx, uint32_t rule) {
    (void)cx;
    return rule == 1;
}

static double fake_risk(const expr_ctx_t *cx) {
    (void)cx;
    return 45;
}

static const expr_host_t host = {fake_feature, fake_firing, fake_risk};

static event_config_t cfg;
static event_t ev;

static int setup(void **state) {
    (void)state;
    vars[0].type = EXPR_T_NUM;
    vars[0].u.num = 500;
    vars[1].type = EXPR_T_DUR;
    vars[1].u.num = 30 * 86400000.0;
    vars[2].type = EXPR_T_STR;
    vars[2].u.s.p = "enterprise";
    vars[2].u.s.len = 10;
    vars[3].type = EXPR_T_BOOL;
    vars[3].u.b = 1;
    assert_int_equal(event_config_init(&cfg), 0);
    const char *js =
        "{\"id\":\"e1\",\"type\":\"meeting.held\",\"client_id\":\"ACME-001\","
        "\"ts\":\"2026-03-01T10:00:00Z\",\"data\":{\"amount\":1200.5,"
        "\"score\":6,\"tier\":\"gold\",\"flag\":true,\"s\":\"3\","
        "\"attendee_roles\":[\"engineer\",\"decision_maker\"],"
        "\"nested\":{\"x\":{\"y\":42}},\"nul\":null}}";
    char detail[128];
    assert_int_equal(event_parse(&cfg, js, strlen(js), &ev, detail, sizeof(detail)),
                     EVENT_OK);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    event_clear(&ev);
    event_config_free(&cfg);
    return 0;
}

static void ctx(expr_ctx_t *cx) {
    memset(cx, 0, sizeof(*cx));
    cx->ev = &ev;
    cx->client_id = "ACME-001";
    cx->client_len = 8;
    cx->now_ms = ev.ts_ms;
    cx->vars = vars;
    cx->host = &host;
}

/* The expression, which must compile in the fixture's scope. */
static expr_t *compiled(const char *src) {
    expr_scope_t sc = scope();
    expr_t *e = NULL;
    churn_err_t err;
    size_t off;
    int rc = expr_compile(src, strlen(src), &sc, &e, &err, &off);
    if (rc) fail_msg("'%.60s' did not compile: %s (col %d)", src, err.msg, err.col);
    return e;
}

/* Compile and evaluate; the expression must compile. */
static expr_val_t run(const char *src) {
    expr_t *e = compiled(src);
    expr_ctx_t cx;
    ctx(&cx);
    expr_val_t v;
    expr_eval(e, &cx, &v);
    /* Strings point into e or the event: copy what tests look at. */
    static char sbuf[256];
    if (v.type == EXPR_T_STR) {
        snprintf(sbuf, sizeof(sbuf), "%.*s", (int)v.u.s.len, v.u.s.p);
        v.u.s.p = sbuf;
    }
    expr_free(e);
    return v;
}

static int truth(const char *src) {
    expr_val_t v = run(src);
    if (v.type != EXPR_T_BOOL) fail_msg("'%s' is not a bool (type %s)", src,
                                        expr_type_name(v.type));
    return v.u.b;
}

static double num(const char *src) {
    expr_val_t v = run(src);
    if (v.type != EXPR_T_NUM && v.type != EXPR_T_DUR)
        fail_msg("'%s' is %s, not a number", src, expr_type_name(v.type));
    return v.u.num;
}

static void is_null(const char *src) {
    expr_val_t v = run(src);
    if (v.type != EXPR_T_NULL) fail_msg("'%s' is %s, not null", src,
                                        expr_type_name(v.type));
}

/* The compile error of src: message must contain `want`, at column col. */
static void compile_error(const char *src, const char *want, int col) {
    expr_scope_t sc = scope();
    expr_t *e = NULL;
    churn_err_t err;
    size_t off = 99999;
    int rc = expr_compile(src, strlen(src), &sc, &e, &err, &off);
    if (rc == 0) {
        expr_free(e);
        fail_msg("'%.60s' compiled; expected error '%s'", src, want);
    }
    assert_int_equal(rc, CHURN_EINVAL);
    assert_null(e);
    if (!strstr(err.msg, want))
        fail_msg("'%.60s': error '%s' does not contain '%s'", src, err.msg, want);
    if (col && err.col != col)
        fail_msg("'%.60s': error '%s' at column %d, expected %d", src, err.msg,
                 err.col, col);
    assert_int_equal((int)off + 1, err.col);
}

/* ---- Tests -------------------------------------------------------------- */

static void test_precedence(void **state) {
    (void)state;
    assert_true(num("1 + 2 * 3") == 7);
    assert_true(num("(1 + 2) * 3") == 9);
    assert_true(num("10 - 4 - 3") == 3);
    assert_true(num("2 * 3 % 4") == 2);
    assert_true(num("-2 * 3") == -6);
    assert_true(num("- (2 + 3)") == -5);
    assert_true(num("8 / 2 / 2") == 2);
    assert_true(truth("1 + 2 * 3 == 7"));
    assert_true(truth("not 1 > 2"));
    assert_true(truth("true or false and false"));
    assert_false(truth("(true or false) and false"));
    assert_true(truth("not true or true"));
    assert_false(truth("not (true or true)"));
    assert_true(truth("1 < 2 and 2 < 3 or false"));
    assert_true(truth("not not true"));
}

static void test_literals_and_vars(void **state) {
    (void)state;
    assert_true(num("1.5e3") == 1500);
    assert_true(truth("$threshold == 500"));
    assert_true(truth("$window == 30d"));
    assert_true(truth("$tier_name == \"enterprise\""));
    assert_true(truth("$on"));
    assert_true(truth("'single' == \"single\""));
    assert_true(truth("\"a\\\"b\" != 'a\\'b'"));
    assert_true(truth("\"abc\" < \"abd\""));
    assert_true(truth("\"ab\" < \"abc\""));
}

static void test_durations(void **state) {
    (void)state;
    assert_true(truth("48h == 2d"));
    assert_true(truth("1h30m == 90m"));
    assert_true(truth("30d - 7d > 3w"));
    assert_true(num("1d / 1h") == 24);
    assert_true(truth("2 * 1h == 120m"));
    assert_true(truth("1h * 2 == 2h"));
    assert_true(truth("1d / 4 == 6h"));
    assert_true(truth("25h % 1d == 1h"));
    assert_true(truth("-1h < 0s"));
    assert_true(truth("now - 1d < now"));
    assert_true(truth("now - (now - 2d) == 48h"));
    assert_true(truth("since(dm_contact) > 1d and since(dm_contact) < 2d"));
    assert_true(num("since(dm_contact) / 1h") == 36);
}

static void test_fields(void **state) {
    (void)state;
    assert_true(truth("data.amount > 1200"));
    assert_true(num("data.amount * 2") == 2401);
    assert_true(truth("data.nested.x.y == 42"));
    assert_true(truth("data.flag"));
    assert_true(truth("event.type == \"meeting.held\""));
    assert_true(truth("event.id == \"e1\""));
    assert_true(truth("client.id == \"ACME-001\""));
    assert_true(truth("event.data.tier == \"gold\"")); /* envelope path */
    assert_true(truth("data.tier == value(tier)"));
}

static void test_nulls(void **state) {
    (void)state;
    /* Every comparison with null is false, != included. */
    assert_false(truth("data.missing > 3"));
    assert_false(truth("data.missing < 3"));
    assert_false(truth("data.missing == 3"));
    assert_false(truth("data.missing != 3"));
    assert_false(truth("data.nul != \"a\""));
    assert_true(truth("not (data.missing > 3)"));
    is_null("data.missing");
    assert_true(truth("not data.missing"));
    assert_true(truth("not (data.missing and true)"));
    is_null("data.missing + 1");
    is_null("1 / 0");
    is_null("5 % 0");
    is_null("1h / 0");
    is_null("-data.missing");
    is_null("data.tier * 2");       /* string at run time */
    is_null("data.nul");
    /* Different run-time types never compare. */
    assert_false(truth("data.s == 3"));
    assert_false(truth("data.s != 3"));
    assert_false(truth("data.flag == 1"));
    /* Non-bool operands of and/or are false. */
    assert_false(truth("data.amount and true"));
    assert_true(truth("data.amount or true"));
}

static void test_in(void **state) {
    (void)state;
    assert_true(truth("\"decision_maker\" in data.attendee_roles"));
    assert_false(truth("\"ceo\" in data.attendee_roles"));
    assert_false(truth("\"ceo\" in data.missing"));
    assert_false(truth("data.missing in [\"a\"]"));
    assert_true(truth("data.tier in [\"silver\", \"gold\"]"));
    assert_true(truth("data.score in [5, 6, 7]"));
    assert_false(truth("data.score in []"));
    assert_true(truth("2d in [1d, 48h]"));
    assert_true(truth("not \"x\" in [\"a\", \"b\"]"));
    assert_true(truth("$tier_name in [\"smb\", $tier_name]"));
    assert_true(truth("\"decision_maker\" in data.attendee_roles or "
                      "data.contact_role == \"decision_maker\""));
}

static void test_functions(void **state) {
    (void)state;
    streak_value = 3;
    assert_true(truth("postponements >= 2"));
    assert_true(num("postponements + 1") == 4);
    assert_true(num("sum(order_value, 30d)") == 30);
    assert_true(num("sum(order_value, 90d, 30d)") == 30090);
    assert_true(num("sum(order_value, $window)") == 30);
    assert_true(truth("firing(\"detractor\")"));
    assert_false(truth("firing(\"order_decline\")"));
    assert_true(num("risk") == 45);
    assert_true(truth("value(tier) == \"gold\""));
    is_null("open(reply)");
    is_null("count(order_value, 1d)");
}

static void test_short_circuit(void **state) {
    (void)state;
    n_queries = 0;
    assert_false(truth("false and postponements > 1"));
    assert_int_equal(n_queries, 0);
    assert_true(truth("true or postponements > 1"));
    assert_int_equal(n_queries, 0);
    assert_true(truth("postponements > 1 and postponements < 10"));
    assert_int_equal(n_queries, 2);
}

static void test_type_errors(void **state) {
    (void)state;
    compile_error("since(dm_contact) > 30", "cannot compare duration with number", 19);
    compile_error("since(dm_contact) > 30",
                  "write the number as a duration, e.g. 30d", 0);
    compile_error("\"a\" + 1", "cannot apply '+' to string and number", 5);
    compile_error("1d + 1", "cannot apply '+' to duration and number", 4);
    compile_error("now + 1", "cannot apply '+' to time and number", 5);
    compile_error("1 and true", "'and' needs a bool operand, not number", 1);
    compile_error("true or 2", "'or' needs a bool operand, not number", 9);
    compile_error("not 3", "'not' needs a bool operand, not number", 5);
    compile_error("true < false", "cannot compare bool with bool using '<'", 6);
    compile_error("data.x == null", "comparison with null is always false", 8);
    compile_error("null + 1", "arithmetic with null is always null", 6);
    compile_error("1 < 2 < 3", "comparisons do not chain", 7);
    compile_error("[1, 2]", "a list [...] can only follow 'in'", 1);
    compile_error("[1] == 1", "a list [...] can only follow 'in'", 1);
    compile_error("1 in [\"a\"]", "list element is string but the value tested is number", 7);
    compile_error("1 in 2", "'in' needs a list [..] or an array field", 6);
    compile_error("-\"a\"", "cannot negate string", 1);
    compile_error("sum(order_value, 30)", "range and offset are durations", 18);
}

static void test_name_errors(void **state) {
    (void)state;
    compile_error("postponments >= 2",
                  "unknown feature or name 'postponments' (did you mean "
                  "'postponements'?)", 1);
    compile_error("summ(order_value, 30d) > 1",
                  "unknown function 'summ' (did you mean 'sum'?)", 1);
    compile_error("sum(order_vale, 30d) > 1",
                  "unknown feature 'order_vale' (did you mean 'order_value'?)", 5);
    compile_error("$thresold > 1", "unknown var '$thresold' (did you mean '$threshold'?)", 1);
    compile_error("$nothing_like_it > 1", "unknown var '$nothing_like_it' (define it under vars:)", 1);
    compile_error("threshold > 1", "the var is written $threshold", 1);
    compile_error("sum(postponements, 30d) > 1",
                  "sum() needs a series feature; 'postponements' is a streak", 5);
    compile_error("order_value > 1",
                  "'order_value' is a series feature; use a function such as "
                  "sum(order_value, 30d)", 1);
    compile_error("value(dm_contact) == 1", "keeps only a time", 7);
    compile_error("sum(order_value) > 1", "sum() needs a range", 16);
    compile_error("since(dm_contact, 1d) > 1h", "since() takes at most 1 argument", 19);
    compile_error("firing(\"order_declin\")",
                  "unknown rule 'order_declin' (did you mean 'order_decline'?)", 9);
    compile_error("firing(order_decline)", "firing() takes a rule name in quotes", 8);
    compile_error("expectation.key == \"x\"", "only defined in rules triggered by expired", 1);
    compile_error("client.tier == \"x\"", "unknown client attribute", 1);
    compile_error("foo.bar == 1", "event fields start with 'data.' or 'event.'", 1);
    compile_error("data == 1", "'data' needs a field", 1);
}

static void test_syntax_errors(void **state) {
    (void)state;
    compile_error("", "empty expression", 1);
    compile_error("   ", "empty expression", 1);
    compile_error("1 +", "expected a value, found the end of the expression", 4);
    compile_error("(1 + 2", "expected ')' (opened at column 1)", 7);
    compile_error("1 2", "unexpected '2' after the expression", 3);
    compile_error("a && b", "use 'and', not '&&'", 3);
    compile_error("true || false", "use 'or', not '||'", 6);
    compile_error("!true", "use 'not', not '!'", 1);
    compile_error("data.x = 1", "use == to compare, not =", 8);
    compile_error("\"abc", "unterminated string", 1);
    compile_error("\"a\\qb\" == \"x\"", "unknown escape '\\q'", 3);
    compile_error("3x > 1s", "bad duration '3x'", 1);
    compile_error("1.5h > 1s", "durations take whole numbers", 1);
    compile_error("data.x # 1", "unexpected character '#'", 8);
    compile_error("$ > 1", "'$' must be followed by a var name", 1);
    compile_error("sum(order_value, 30d", "expected ',' or ')' in sum()", 21);
    compile_error("data.x in [1, 2", "expected ',' or ']' in list", 16);
}

static void test_error_column_in_template(void **state) {
    (void)state;
    expr_scope_t sc = scope();
    expr_tmpl_t *t = NULL;
    churn_err_t err;
    size_t off = 0;
    const char *src = "Orders {{ sum(order_value, 30d) }} vs {{ sum(nope, 1d) }}";
    assert_int_equal(expr_tmpl_compile(src, strlen(src), &sc, &t, &err, &off),
                     CHURN_EINVAL);
    assert_non_null(strstr(err.msg, "unknown feature 'nope'"));
    assert_int_equal(off, (size_t)(strstr(src, "nope") - src));
    assert_int_equal(err.col, (int)off + 1);
    const char *open = "Count {{ postponements ";
    assert_int_equal(expr_tmpl_compile(open, strlen(open), &sc, &t, &err, &off),
                     CHURN_EINVAL);
    assert_non_null(strstr(err.msg, "'{{' without a closing '}}'"));
    assert_int_equal(err.col, 7);
}

static void test_limits(void **state) {
    (void)state;
    /* 10k nested parentheses: rejected cleanly, no stack overflow. (A
     * balanced 10k-deep one is over the 16 KiB source bound; 10k opening
     * parentheses is the same recursion, and 8k balanced fits the bound.) */
    size_t n = 10000;
    char *s = malloc(2 * n + 2);
    memset(s, '(', n);
    s[n] = '1';
    s[n + 1] = '\0';
    compile_error(s, "nested too deeply", 0);
    memset(s, '(', 8000);
    s[8000] = '1';
    memset(s + 8001, ')', 8000);
    s[16001] = '\0';
    compile_error(s, "nested too deeply", 0);
    for (size_t i = 0; i < 2499; i++) memcpy(s + 4 * i, "not ", 4);
    memcpy(s + 4 * 2499, "true", 5); /* 2499 nested `not`s */
    compile_error(s, "nested too deeply", 0);
    /* 10k prefix operators. */
    for (size_t i = 0; i < n; i++) s[i] = '-';
    s[n] = '1';
    s[n + 1] = '\0';
    compile_error(s, "nested too deeply", 0);
    free(s);
    /* The depth limit itself: 63 parentheses fine, 70 not. */
    char buf[512];
    size_t k = 0;
    for (int i = 0; i < 62; i++) buf[k++] = '(';
    buf[k++] = '1';
    for (int i = 0; i < 62; i++) buf[k++] = ')';
    buf[k] = '\0';
    assert_true(num(buf) == 1);
    k = 0;
    for (int i = 0; i < 70; i++) k += (size_t)sprintf(buf + k, "-(");
    buf[k++] = '1';
    for (int i = 0; i < 70; i++) buf[k++] = ')';
    buf[k] = '\0';
    compile_error(buf, "nested too deeply (more than 64 levels)", 0);
    /* A long arithmetic chain is a deep tree. */
    char *chain = malloc(4 * 200 + 8);
    k = 0;
    chain[k++] = '1';
    for (int i = 0; i < 200; i++) k += (size_t)sprintf(chain + k, " + 1");
    chain[k] = '\0';
    compile_error(chain, "nested too deeply", 0);
    free(chain);
    /* A long disjunction is one n-ary node: fine until the node limit. */
    char *ors = malloc(12 * 5000 + 8);
    k = 0;
    k += (size_t)sprintf(ors + k, "false");
    for (int i = 0; i < 1500; i++) k += (size_t)sprintf(ors + k, " or false");
    ors[k] = '\0';
    assert_false(truth(ors));
    k = 0;
    k += (size_t)sprintf(ors + k, "false");
    for (int i = 0; i < 4200; i++) k += (size_t)sprintf(ors + k, " or 1>2");
    ors[k] = '\0';
    compile_error(ors, "", 0); /* too large (source or nodes) */
    free(ors);
    /* Node limit proper: 4100 list elements is over the list bound first. */
    char *big = malloc(EXPR_MAX_SRC + 100);
    memset(big, ' ', EXPR_MAX_SRC + 10);
    big[0] = '1';
    big[EXPR_MAX_SRC + 10] = '\0';
    compile_error(big, "longer than 16384 bytes", 0);
    free(big);
    char lstr[EXPR_MAX_STR + 16];
    lstr[0] = '"';
    memset(lstr + 1, 'x', EXPR_MAX_STR + 1);
    lstr[EXPR_MAX_STR + 2] = '"';
    lstr[EXPR_MAX_STR + 3] = '\0';
    compile_error(lstr, "string literal longer than 1024 bytes", 1);
    char list[4 * 300 + 16];
    k = 0;
    k += (size_t)sprintf(list, "1 in [");
    for (int i = 0; i < 300; i++) k += (size_t)sprintf(list + k, "%s1", i ? "," : "");
    sprintf(list + k, "]");
    compile_error(list, "list longer than 256 elements", 0);
}

static void test_node_limit(void **state) {
    (void)state;
    /* 2100 `a or (b and c)` terms = many nodes, shallow tree. */
    size_t cap = 20 * 1500 + 16;
    char *s = malloc(cap);
    size_t k = (size_t)sprintf(s, "true");
    for (int i = 0; i < 1400; i++) k += (size_t)sprintf(s + k, " or 1>2");
    s[k] = '\0';
    compile_error(s, "expression too large (more than 4096 nodes)", 0);
    free(s);
}

static void test_canon_and_sites(void **state) {
    (void)state;
    expr_scope_t sc = scope();
    expr_t *a = NULL, *b = NULL;
    churn_err_t err;
    const char *s1 = "postponements>=$threshold and  data.score <= 6";
    const char *s2 = "(postponements >= $threshold)\n and data.score<=6";
    assert_int_equal(expr_compile(s1, strlen(s1), &sc, &a, &err, NULL), 0);
    assert_int_equal(expr_compile(s2, strlen(s2), &sc, &b, &err, NULL), 0);
    buf_t ca, cb;
    buf_init(&ca);
    buf_init(&cb);
    assert_int_equal(expr_canon(a, &ca), 0);
    assert_int_equal(expr_canon(b, &cb), 0);
    assert_int_equal(ca.len, cb.len);
    assert_memory_equal(ca.data, cb.data, ca.len);
    assert_true(expr_uses_event(a));
    assert_int_equal(expr_n_sites(a), 2);
    assert_string_equal(expr_site_key(a, 0), "postponements");
    assert_string_equal(expr_site_key(a, 1), "data.score");
    buf_free(&ca);
    buf_free(&cb);
    expr_free(a);
    expr_free(b);
    const char *s3 = "sum( order_value,\n 30d ) > risk and postponements > 1 or postponements > 2";
    assert_int_equal(expr_compile(s3, strlen(s3), &sc, &a, &err, NULL), 0);
    assert_int_equal(expr_n_sites(a), 3);
    assert_string_equal(expr_site_key(a, 0), "sum( order_value, 30d )");
    assert_string_equal(expr_site_key(a, 1), "risk");
    assert_string_equal(expr_site_key(a, 2), "postponements");
    assert_false(expr_uses_event(a));
    expr_free(a);
}

static void test_where_scope(void **state) {
    (void)state;
    expr_scope_t sc = scope();
    sc.allow = 0; /* a feature's where: */
    expr_t *e = NULL;
    churn_err_t err;
    const char *s = "postponements > 1";
    assert_int_equal(expr_compile(s, strlen(s), &sc, &e, &err, NULL), CHURN_EINVAL);
    assert_non_null(strstr(err.msg, "features cannot be used here"));
    s = "risk > 1";
    assert_int_equal(expr_compile(s, strlen(s), &sc, &e, &err, NULL), CHURN_EINVAL);
    s = "firing(\"detractor\")";
    assert_int_equal(expr_compile(s, strlen(s), &sc, &e, &err, NULL), CHURN_EINVAL);
    s = "data.category == \"complaint\" and $on";
    assert_int_equal(expr_compile(s, strlen(s), &sc, &e, &err, NULL), 0);
    expr_free(e);
}

static const char *fmt(double x) {
    static char b[64];
    expr_num_format(x, b, sizeof(b));
    return b;
}

static void test_number_format(void **state) {
    (void)state;
    assert_string_equal(fmt(1200), "1200");
    assert_string_equal(fmt(0.6), "0.6");
    assert_string_equal(fmt(100.0 / 3), "33.33");
    assert_string_equal(fmt(2.5), "2.5");
    assert_string_equal(fmt(2.0 / 3), "0.667");
    assert_string_equal(fmt(-3), "-3");
    assert_string_equal(fmt(0), "0");
    assert_string_equal(fmt(-0.0), "0");
    assert_string_equal(fmt(1.999), "2");
    assert_string_equal(fmt(0.125), "0.125");
    assert_string_equal(fmt(0.00123456), "0.00123");
    assert_string_equal(fmt(1234567.891), "1234567.89");
    assert_string_equal(fmt(1e20), "1e+20");
}

static void render(const char *src, const char *want) {
    expr_scope_t sc = scope();
    expr_tmpl_t *t = NULL;
    churn_err_t err;
    if (expr_tmpl_compile(src, strlen(src), &sc, &t, &err, NULL))
        fail_msg("template '%s': %s", src, err.msg);
    expr_ctx_t cx;
    ctx(&cx);
    buf_t b;
    buf_init(&b);
    assert_int_equal(expr_tmpl_render(t, &cx, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_string_equal((const char *)b.data, want);
    buf_free(&b);
    expr_tmpl_free(t);
}

static void test_templates(void **state) {
    (void)state;
    render("no braces", "no braces");
    render("", "");
    render("{{ 1200 }}", "1200");
    render("30-day orders {{ data.amount }} vs {{ 100 / 3 }}, ratio {{ 0.6 }}",
           "30-day orders 1200.5 vs 33.33, ratio 0.6");
    render("silent for {{ since(dm_contact) }} ({{ 48h }})", "silent for 1d12h (2d)");
    render("{{ 'a}}b' }}|{{ \"{{\" }}", "a}}b|{{");
    render("missing: {{ data.missing }}", "missing: n/a");
    render("{{ data.tier }} {{ data.flag }} {{ now }}", "gold true 2026-03-01T10:00:00Z");
    render("{{ 2w }} {{ 90m }} {{ -1h }}", "2w 1h30m -1h");
    render("single { brace }", "single { brace }");
}

static void test_value_json(void **state) {
    (void)state;
    buf_t b;
    buf_init(&b);
    expr_val_t v;
    v.type = EXPR_T_NUM;
    v.u.num = 0.1;
    assert_int_equal(expr_val_json(&v, &b), 0);
    v.u.num = 40;
    assert_int_equal(buf_putc(&b, ' '), 0);
    assert_int_equal(expr_val_json(&v, &b), 0);
    v.type = EXPR_T_DUR;
    v.u.num = 172800000;
    assert_int_equal(buf_putc(&b, ' '), 0);
    assert_int_equal(expr_val_json(&v, &b), 0);
    v.type = EXPR_T_STR;
    v.u.s.p = "a\"b";
    v.u.s.len = 3;
    assert_int_equal(buf_putc(&b, ' '), 0);
    assert_int_equal(expr_val_json(&v, &b), 0);
    v.type = EXPR_T_NULL;
    assert_int_equal(buf_putc(&b, ' '), 0);
    assert_int_equal(expr_val_json(&v, &b), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_string_equal((const char *)b.data, "0.1 40 \"2d\" \"a\\\"b\" null");
    buf_free(&b);
}

static void test_glob_and_suggest(void **state) {
    (void)state;
    assert_true(expr_glob_match("meeting.*", "meeting.held"));
    assert_true(expr_glob_match("meeting.*", "meeting."));
    assert_false(expr_glob_match("meeting.*", "meetings.held"));
    assert_false(expr_glob_match("meeting.held", "meeting.held2"));
    assert_true(expr_glob_match("*", "anything.at.all"));
    assert_true(expr_glob_match("*.held", "meeting.held"));
    assert_true(expr_glob_match("t*.o*d", "ticket.opened"));
    assert_false(expr_glob_match("t*.o*d", "ticket.opens"));
    assert_int_equal(expr_edit_distance("when", 4, "whn", 3, 2), 1);
    assert_int_equal(expr_edit_distance("features", 8, "featurs", 7, 2), 1);
    assert_int_equal(expr_edit_distance("abc", 3, "xyz", 3, 2), 3);
    static const char *const names[] = {"reset_on", "streak", "where"};
    assert_string_equal(expr_suggest("rest_on", 7, names, 3), "reset_on");
    assert_null(expr_suggest("totally", 7, names, 3));
}

static void test_no_host(void **state) {
    (void)state;
    /* Without a host (e.g. a tool evaluating alone), features are null. */
    expr_scope_t sc = scope();
    expr_t *e = NULL;
    churn_err_t err;
    const char *s = "postponements >= 0";
    assert_int_equal(expr_compile(s, strlen(s), &sc, &e, &err, NULL), 0);
    expr_ctx_t cx;
    memset(&cx, 0, sizeof(cx));
    assert_false(expr_eval_bool(e, &cx));
    expr_free(e);
}

/* ---- expr_eval_bool_until: a host whose answers move with the time ----
 *
 * dm_contact was last seen at T0, so since() grows one ms per ms;
 * order_value's sum and count are the whole weeks since T0 (a staircase);
 * reply's one expectation falls due at DUE; postponements is fixed. These
 * report their trends; value(tier) and risk (decaying) do not. */

#define DAY 86400000LL
static const int64_t T0 = 1769904000000;  /* 2026-02-01T00:00:00Z */
static const int64_t DUE = 1772542800000; /* 2026-03-03T13:00:00Z */

static void moving_feature(const expr_ctx_t *cx, uint32_t feat, expr_fn_t fn,
                           const expr_val_t *args, size_t n_args, expr_val_t *out) {
    (void)args, (void)n_args;
    int64_t now = cx->now_ms;
    expr_trend_t tr = {0, INT64_MAX};
    out->type = EXPR_T_NULL;
    if (feat == 0 && fn == EXPR_FN_STREAK) {
        out->type = EXPR_T_NUM;
        out->u.num = 3;
    } else if (feat == 1 && (fn == EXPR_FN_SUM || fn == EXPR_FN_COUNT)) {
        int64_t weeks = now < T0 ? 0 : (now - T0) / (7 * DAY);
        out->type = EXPR_T_NUM;
        out->u.num = (double)weeks;
        tr.until = T0 + (weeks + 1) * 7 * DAY;
    } else if (feat == 2 && fn == EXPR_FN_SINCE) {
        out->type = EXPR_T_DUR;
        out->u.num = (double)(now - T0);
        tr.slope = 1;
    } else if (feat == 2 && fn == EXPR_FN_SEEN) {
        out->type = EXPR_T_BOOL;
        out->u.b = 1;
    } else if (feat == 3 && fn == EXPR_FN_VALUE) {
        out->type = EXPR_T_STR;
        out->u.s.p = "gold";
        out->u.s.len = 4;
        return; /* says nothing about its trend */
    } else if (feat == 4 && (fn == EXPR_FN_OPEN || fn == EXPR_FN_OVERDUE)) {
        out->type = EXPR_T_NUM;
        out->u.num = (now < DUE) == (fn == EXPR_FN_OPEN);
        if (now < DUE) tr.until = DUE;
    }
    if (cx->trend) *cx->trend = tr;
}

static double moving_risk(const expr_ctx_t *cx) {
    return 45 * exp2(-(double)(cx->now_ms - T0) / (30.0 * DAY));
}

static const expr_host_t moving_host = {moving_feature, fake_firing, moving_risk};

/* The answer at now, and the time it claims to hold until; then the
 * claim is checked: the same answer at every hour before it (up to a
 * year), and just before it. */
static int64_t until_of(const char *src, int *answer) {
    expr_t *e = compiled(src);
    expr_ctx_t cx;
    ctx(&cx);
    cx.ev = NULL; /* a tick: no event */
    cx.host = &moving_host;
    int64_t now = cx.now_ms, until = 0;
    int v = expr_eval_bool_until(e, &cx, &until);
    assert_int_equal(v, expr_eval_bool(e, &cx));
    assert_true(until > now);
    int64_t end = until - now > 366 * DAY ? now + 366 * DAY : until;
    for (int64_t t = now; t < end; t += 3600000) {
        cx.now_ms = t;
        if (expr_eval_bool(e, &cx) != v)
            fail_msg("'%s' claimed until %lld changed at %lld", src,
                     (long long)until, (long long)t);
    }
    cx.now_ms = end - 1;
    assert_int_equal(expr_eval_bool(e, &cx), v);
    expr_free(e);
    *answer = v;
    return until;
}

/* The claim ends at most ms before t, and not after it. */
static void assert_until_near(int64_t until, int64_t t, int64_t ms) {
    if (until > t || until < t - ms)
        fail_msg("until %lld, expected within %lld ms before %lld",
                 (long long)until, (long long)ms, (long long)t);
}

static void test_eval_until(void **state) {
    (void)state;
    int v;
    int64_t now = ev.ts_ms; /* 2026-03-01T10:00:00Z, 28d10h after T0 */
    const int64_t X30 = T0 + 30 * DAY;

    /* A value moving towards a fixed bound: until the crossing, which the
     * value then really crosses. */
    assert_until_near(until_of("since(dm_contact) > 30d", &v), X30, 2);
    assert_false(v);
    assert_until_near(until_of("since(dm_contact) / 1d > 30", &v), X30, 3);
    assert_until_near(until_of("2 * since(dm_contact) - 1d >= 59d", &v), X30, 2);
    assert_until_near(until_of("30d >= since(dm_contact)", &v), X30, 2);
    assert_true(v);
    assert_until_near(until_of("-since(dm_contact) > -30d", &v), X30, 2);
    assert_until_near(until_of("since(dm_contact) < $window", &v), X30, 2);
    /* A crossing beyond any calendar is still a bound, not "never". */
    int64_t far = until_of("since(dm_contact) / 1d > 1e12", &v);
    assert_true(far > now + 1000000000000000LL && far < INT64_MAX);
    /* Moving away from the bound: for good. */
    assert_int_equal(until_of("since(dm_contact) > 20d", &v), INT64_MAX);
    assert_true(v);
    assert_int_equal(until_of("since(dm_contact) < 20d", &v), INT64_MAX);
    assert_false(v);
    /* A staircase: until its next step; a deadline: until it passes. */
    int64_t week5 = T0 + 5 * 7 * DAY;
    assert_int_equal(until_of("sum(order_value, 30d) >= 5", &v), week5);
    assert_false(v);
    assert_int_equal(until_of("count(order_value, 30d) + 1 < 5", &v), week5);
    assert_int_equal(until_of("open(reply) > 0", &v), DUE);
    assert_true(v);
    assert_int_equal(until_of("overdue(reply) == 0", &v), DUE);
    /* Fixed answers, and the operand that decides an and / or. */
    assert_int_equal(until_of("postponements >= 2 and 1 < 2", &v), INT64_MAX);
    assert_int_equal(until_of("postponements >= 5 and since(dm_contact) > 30d", &v),
                     INT64_MAX);
    assert_false(v);
    assert_until_near(until_of("since(dm_contact) > 30d and postponements >= 5", &v),
                      X30, 2);
    assert_until_near(until_of("postponements >= 2 and since(dm_contact) > 30d", &v),
                      X30, 2);
    assert_int_equal(until_of("postponements >= 2 or since(dm_contact) > 30d", &v),
                     INT64_MAX);
    assert_true(v);
    assert_int_equal(until_of("not (open(reply) > 0 and postponements > 9)", &v),
                     INT64_MAX);
    assert_int_equal(until_of("not (open(reply) > 0)", &v), DUE);
    assert_int_equal(until_of("seen(dm_contact) or postponements > 9", &v), INT64_MAX);
    assert_int_equal(until_of("firing(\"detractor\")", &v), INT64_MAX);
    assert_int_equal(until_of("now - 1d < now", &v), INT64_MAX);
    assert_true(v);
    /* What is not followed: unknown beyond now. */
    assert_int_equal(until_of("since(dm_contact) / 1d * (since(dm_contact) / 1d) > 900", &v),
                     now + 1);
    assert_int_equal(until_of("since(dm_contact) == 30d", &v), now + 1);
    assert_int_equal(until_of("since(dm_contact) - since(dm_contact) < 1d", &v), now + 1);
    assert_int_equal(until_of("value(tier) == \"gold\"", &v), now + 1);
    assert_int_equal(until_of("risk > 10", &v), now + 1);
    assert_int_equal(until_of("100 / (since(dm_contact) / 1d) > 3", &v), now + 1);
    assert_int_equal(until_of("since(dm_contact) > now - now + 30d", &v), now + 1);
    /* Two moving sides of a comparison: their difference moves. */
    assert_until_near(until_of("since(dm_contact) / 2 + 15d > since(dm_contact)", &v),
                      X30, 2);
    assert_true(v);
    assert_int_equal(until_of("since(dm_contact) > since(dm_contact) / 2 + 14d", &v),
                     INT64_MAX);
    assert_until_near(until_of("since(dm_contact) + 0 * since(dm_contact) > 30d", &v),
                      X30, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_literals_and_vars),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_in),
        cmocka_unit_test(test_functions),
        cmocka_unit_test(test_short_circuit),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_name_errors),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_error_column_in_template),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_canon_and_sites),
        cmocka_unit_test(test_where_scope),
        cmocka_unit_test(test_number_format),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_value_json),
        cmocka_unit_test(test_glob_and_suggest),
        cmocka_unit_test(test_no_host),
        cmocka_unit_test(test_eval_until),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
