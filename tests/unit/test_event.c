/*
 * test_event.c - the input envelope: every rejection reason, the order the
 * checks run in, configurable paths and type map, and the (ptr, len)
 * contract. Every payload is copied into a heap block of exactly len bytes
 * and freed right after event_parse, so an over-read shows under ASan or
 * valgrind and a pointer into the input buffer would dangle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/common.h"
#include "churnd/event.h"
#include "churnd/timeutil.h"

typedef struct fx {
    event_config_t cfg;
    event_t ev;
    char detail[256];
} fx_t;

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    if (!f || event_config_init(&f->cfg) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    event_clear(&f->ev);
    event_config_free(&f->cfg);
    free(f);
    return 0;
}

/* Parse n bytes of p from an exact-size heap copy. */
static event_reason_t parse_n(fx_t *f, const char *p, size_t n) {
    event_clear(&f->ev);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, p, n);
    memset(f->detail, 'x', sizeof(f->detail) - 1);
    f->detail[sizeof(f->detail) - 1] = '\0';
    event_reason_t r =
        event_parse(&f->cfg, copy, n, &f->ev, f->detail, sizeof(f->detail));
    free(copy);
    if (r != EVENT_OK) assert_null(f->ev.root);
    return r;
}

static event_reason_t parse(fx_t *f, const char *json) {
    return parse_n(f, json, strlen(json));
}

/* Assert the reason, with the detail in the failure message. */
#define assert_reason(f, json, want)                                          \
    do {                                                                      \
        event_reason_t r_ = parse((f), (json));                               \
        if (r_ != (want))                                                     \
            fail_msg("%s: got %s (%s), want %s", (json),                      \
                     event_reason_name(r_), (f)->detail,                      \
                     event_reason_name(want));                                \
    } while (0)

#define ENV(rest) "{\"client_id\":\"C1\",\"type\":\"t\",\"ts\":0" rest "}"

static void test_reason_names(void **state) {
    (void)state;
    static const char *const want[EVENT__N] = {
        "ok", "too_large", "not_utf8", "not_json", "too_deep", "not_object",
        "no_client", "no_type", "no_time", "bad_time", "bad_id"};
    assert_int_equal(EVENT__N, 11);
    for (int i = 0; i < EVENT__N; i++)
        assert_string_equal(event_reason_name((event_reason_t)i), want[i]);
    assert_string_equal(event_reason_name(EVENT__N), "unknown");
    assert_string_equal(event_reason_name((event_reason_t)-1), "unknown");
}

static void test_config(void **state) {
    fx_t *f = *state;
    event_config_t *c = &f->cfg;
    assert_string_equal(c->id_path, "id");
    assert_string_equal(c->client_path, "client_id");
    assert_string_equal(c->type_path, "type");
    assert_string_equal(c->ts_path, "ts");
    assert_int_equal(c->max_bytes, 1024 * 1024);
    assert_int_equal(c->max_depth, 32);
    assert_int_equal(c->n_type_map, 0);

    assert_int_equal(event_config_set_path(&c->client_path, "account.id"), 0);
    assert_string_equal(c->client_path, "account.id");
    assert_int_equal(event_config_set_path(&c->client_path, ""), CHURN_EINVAL);
    assert_int_equal(event_config_set_path(&c->client_path, ".a"), CHURN_EINVAL);
    assert_int_equal(event_config_set_path(&c->client_path, "a."), CHURN_EINVAL);
    assert_int_equal(event_config_set_path(&c->client_path, "a..b"),
                     CHURN_EINVAL);
    assert_int_equal(event_config_set_path(&c->client_path, NULL), CHURN_EINVAL);
    assert_string_equal(c->client_path, "account.id"); /* kept on error */

    assert_int_equal(event_config_add_type(c, "OrderCreated", "order.placed"), 0);
    assert_int_equal(event_config_add_type(c, "OrderCreated", "x"), CHURN_EINVAL);
    assert_int_equal(event_config_add_type(c, "", "x"), CHURN_EINVAL);
    assert_int_equal(event_config_add_type(c, "x", ""), CHURN_EINVAL);
    assert_int_equal(c->n_type_map, 1);
    assert_string_equal(c->type_map[0].from, "OrderCreated");
    assert_string_equal(c->type_map[0].to, "order.placed");

    event_config_free(c);
    assert_null(c->client_path);
    assert_null(c->type_map);
    assert_int_equal(c->n_type_map, 0);
    event_config_free(c); /* twice is harmless */
    assert_int_equal(event_config_init(c), 0);
}

static void test_default_envelope(void **state) {
    fx_t *f = *state;
    assert_reason(f,
                  "{\"id\": \"evt-000123\", \"type\": \"order.placed\", "
                  "\"client_id\": \"ACME-001\",\n \"ts\": "
                  "\"2026-03-01T10:00:00Z\", \"data\": {\"order_id\": \"O-77\", "
                  "\"amount\": 1200.0}}",
                  EVENT_OK);
    assert_string_equal(f->detail, "");
    assert_string_equal(f->ev.id, "evt-000123");
    assert_int_equal(f->ev.id_len, 10);
    assert_string_equal(f->ev.client_id, "ACME-001");
    assert_int_equal(f->ev.client_len, 8);
    assert_string_equal(f->ev.type, "order.placed");
    assert_int_equal(f->ev.ts_ms, INT64_C(1772359200000));
    const cJSON *amount = event_path(f->ev.root, "data.amount");
    assert_non_null(amount);
    assert_true(cJSON_IsNumber(amount));
    assert_true(amount->valuedouble == 1200.0);
    assert_string_equal(event_path(f->ev.root, "data.order_id")->valuestring,
                        "O-77");
}

static void test_caller_fields_untouched(void **state) {
    fx_t *f = *state;
    f->ev.topic = "crm.events";
    f->ev.partition = 3;
    f->ev.offset = 77;
    assert_reason(f, ENV(""), EVENT_OK);
    assert_string_equal(f->ev.topic, "crm.events");
    assert_int_equal(f->ev.partition, 3);
    assert_int_equal(f->ev.offset, 77);
    assert_null(f->ev.id);
    assert_int_equal(f->ev.id_len, 0);
}

static void test_integer_client_and_id(void **state) {
    fx_t *f = *state;
    assert_reason(f, "{\"client_id\":42,\"type\":\"t\",\"ts\":0,\"id\":123}",
                  EVENT_OK);
    assert_string_equal(f->ev.client_id, "42");
    assert_int_equal(f->ev.client_len, 2);
    assert_ptr_equal(f->ev.client_id, f->ev.client_buf);
    assert_string_equal(f->ev.id, "123");
    assert_int_equal(f->ev.id_len, 3);
    assert_ptr_equal(f->ev.id, f->ev.id_buf);

    assert_reason(f, "{\"client_id\":-7,\"type\":\"t\",\"ts\":0,\"id\":-0}",
                  EVENT_OK);
    assert_string_equal(f->ev.client_id, "-7");
    assert_string_equal(f->ev.id, "0");
    assert_reason(f, "{\"client_id\":1e3,\"type\":\"t\",\"ts\":0}", EVENT_OK);
    assert_string_equal(f->ev.client_id, "1000");
    /* Largest integer a double holds exactly (and alone). */
    assert_reason(f,
                  "{\"client_id\":9007199254740991,\"type\":\"t\",\"ts\":0,"
                  "\"id\":-9007199254740991}",
                  EVENT_OK);
    assert_string_equal(f->ev.client_id, "9007199254740991");
    assert_int_equal(f->ev.client_len, 16);
    assert_string_equal(f->ev.id, "-9007199254740991");
    /* 2^53 could be 2^53+1 rounded: two clients must not merge. */
    assert_reason(f, "{\"client_id\":9007199254740992,\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    assert_reason(f, "{\"client_id\":9007199254740993,\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    assert_reason(f, "{\"client_id\":12345678901234567890,\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    assert_reason(f, ENV(",\"id\":9007199254740992"), EVENT_BAD_ID);
}

static void test_no_client(void **state) {
    fx_t *f = *state;
    assert_reason(f, "{\"type\":\"t\",\"ts\":0}", EVENT_NO_CLIENT);
    assert_string_equal(f->detail, "field \"client_id\" is missing");
    assert_reason(f, "{\"client_id\":null,\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    assert_string_equal(f->detail, "field \"client_id\" is null");
    assert_reason(f, "{\"client_id\":\"\",\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    assert_string_equal(f->detail, "field \"client_id\" is empty");
    assert_reason(f, "{\"client_id\":1.5,\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    assert_string_equal(f->detail,
                        "field \"client_id\": 1.5 is not a string or integer");
    assert_reason(f, "{\"client_id\":true,\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    assert_string_equal(f->detail,
                        "field \"client_id\": true is not a string or integer");
    assert_reason(f, "{\"client_id\":{\"id\":1},\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    assert_string_equal(
        f->detail, "field \"client_id\": an object is not a string or integer");
    assert_reason(f, "{\"client_id\":[\"a\"],\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
    /* Keys are case-sensitive. */
    assert_reason(f, "{\"Client_Id\":\"C\",\"type\":\"t\",\"ts\":0}",
                  EVENT_NO_CLIENT);
}

static void test_client_length_limit(void **state) {
    fx_t *f = *state;
    char json[1024], id[EVENT_CLIENT_MAX + 1];
    memset(id, 'a', sizeof(id));
    id[EVENT_CLIENT_MAX - 1] = '\0'; /* 255 bytes: the longest accepted */
    snprintf(json, sizeof(json), "{\"client_id\":\"%s\",\"type\":\"t\",\"ts\":0}",
             id);
    assert_reason(f, json, EVENT_OK);
    assert_int_equal(f->ev.client_len, EVENT_CLIENT_MAX - 1);
    id[EVENT_CLIENT_MAX - 1] = 'a';
    id[EVENT_CLIENT_MAX] = '\0'; /* 256 bytes */
    snprintf(json, sizeof(json), "{\"client_id\":\"%s\",\"type\":\"t\",\"ts\":0}",
             id);
    assert_reason(f, json, EVENT_NO_CLIENT);
    /* The value is quoted cut to 60 bytes, marked as cut. */
    assert_string_equal(f->detail,
                        "field \"client_id\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                        "aaaaaaaaaaaaaaaaaaaaaaaaaa...\" is longer than 255 "
                        "bytes");
}

static void test_no_type_and_type_map(void **state) {
    fx_t *f = *state;
    assert_reason(f, "{\"client_id\":\"C\",\"ts\":0}", EVENT_NO_TYPE);
    assert_string_equal(f->detail, "field \"type\" is missing");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"\",\"ts\":0}",
                  EVENT_NO_TYPE);
    assert_string_equal(f->detail, "field \"type\" is empty");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":7,\"ts\":0}", EVENT_NO_TYPE);
    assert_string_equal(f->detail, "field \"type\": 7 is not a string");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":null,\"ts\":0}",
                  EVENT_NO_TYPE);

    assert_int_equal(
        event_config_add_type(&f->cfg, "OrderCreated", "order.placed"), 0);
    assert_int_equal(
        event_config_add_type(&f->cfg, "TicketOpened", "ticket.opened"), 0);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"OrderCreated\",\"ts\":0}",
                  EVENT_OK);
    assert_string_equal(f->ev.type, "order.placed");
    assert_ptr_equal(f->ev.type, f->cfg.type_map[0].to);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"TicketOpened\",\"ts\":0}",
                  EVENT_OK);
    assert_string_equal(f->ev.type, "ticket.opened");
    /* Exact match only: no case folding, no prefix, no trimming. */
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"orderCreated\",\"ts\":0}",
                  EVENT_OK);
    assert_string_equal(f->ev.type, "orderCreated");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"OrderCreated \",\"ts\":0}",
                  EVENT_OK);
    assert_string_equal(f->ev.type, "OrderCreated ");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"Order\",\"ts\":0}",
                  EVENT_OK);
    assert_string_equal(f->ev.type, "Order");
    /* Unmapped types pass through. */
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"order.placed\",\"ts\":0}",
                  EVENT_OK);
    assert_string_equal(f->ev.type, "order.placed");
}

static void test_custom_paths(void **state) {
    fx_t *f = *state;
    assert_int_equal(event_config_set_path(&f->cfg.client_path, "account.id"), 0);
    assert_int_equal(event_config_set_path(&f->cfg.type_path, "meta.kind"), 0);
    assert_int_equal(event_config_set_path(&f->cfg.ts_path, "meta.at"), 0);
    assert_int_equal(event_config_set_path(&f->cfg.id_path, "meta.uid"), 0);
    assert_reason(f,
                  "{\"account\":{\"id\":\"ACME-001\",\"name\":\"Acme\"},"
                  "\"meta\":{\"kind\":\"order.placed\",\"at\":"
                  "\"2026-03-01T12:00:00+02:00\",\"uid\":\"u-1\"}}",
                  EVENT_OK);
    assert_string_equal(f->ev.client_id, "ACME-001");
    assert_string_equal(f->ev.type, "order.placed");
    assert_int_equal(f->ev.ts_ms, INT64_C(1772359200000));
    assert_string_equal(f->ev.id, "u-1");

    /* The default names no longer count. */
    assert_reason(f, ENV(""), EVENT_NO_CLIENT);
    assert_string_equal(f->detail, "field \"account.id\" is missing");
    /* Arrays are not traversed. */
    assert_reason(f,
                  "{\"account\":[{\"id\":\"A\"}],\"meta\":{\"kind\":\"t\","
                  "\"at\":0}}",
                  EVENT_NO_CLIENT);
    /* An intermediate that is a string is not an object. */
    assert_reason(f, "{\"account\":\"id\",\"meta\":{\"kind\":\"t\",\"at\":0}}",
                  EVENT_NO_CLIENT);
    assert_reason(f,
                  "{\"account\":{\"id\":\"A\"},\"meta\":{\"kind\":\"t\","
                  "\"at\":\"soon\"}}",
                  EVENT_BAD_TIME);
    assert_string_equal(f->detail,
                        "field \"meta.at\": \"soon\" is not RFC 3339 or epoch ms");
    assert_reason(f,
                  "{\"account\":{\"id\":\"A\"},\"meta\":{\"kind\":\"t\","
                  "\"at\":0,\"uid\":false}}",
                  EVENT_BAD_ID);
    assert_string_equal(f->detail,
                        "field \"meta.uid\": false is not a string or integer");
}

static void test_time_field(void **state) {
    fx_t *f = *state;
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":1772359200000}",
                  EVENT_OK);
    assert_int_equal(f->ev.ts_ms, INT64_C(1772359200000));
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":-1}", EVENT_OK);
    assert_int_equal(f->ev.ts_ms, -1);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":1.7723592e12}",
                  EVENT_OK);
    assert_int_equal(f->ev.ts_ms, INT64_C(1772359200000));
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":253402300799999}",
                  EVENT_OK);
    assert_int_equal(f->ev.ts_ms, TIME_MAX_MS);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":-62167219200000}",
                  EVENT_OK);
    assert_int_equal(f->ev.ts_ms, TIME_MIN_MS);
    assert_reason(f,
                  "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":"
                  "\"2026-03-01T10:00:00.123456+02:00\"}",
                  EVENT_OK);
    assert_int_equal(f->ev.ts_ms, INT64_C(1772352000123));
    assert_reason(f,
                  "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":"
                  "\"1969-12-31t23:59:59.5z\"}",
                  EVENT_OK);
    assert_int_equal(f->ev.ts_ms, -500);

    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\"}", EVENT_NO_TIME);
    assert_string_equal(f->detail, "field \"ts\" is missing");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":null}",
                  EVENT_NO_TIME);
    assert_string_equal(f->detail, "field \"ts\" is null");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":\"yesterday\"}",
                  EVENT_BAD_TIME);
    assert_string_equal(f->detail,
                        "field \"ts\": \"yesterday\" is not RFC 3339 or epoch ms");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":1.5}",
                  EVENT_BAD_TIME);
    assert_string_equal(f->detail,
                        "field \"ts\": 1.5 is not an integer of epoch ms");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":253402300800000}",
                  EVENT_BAD_TIME);
    assert_string_equal(f->detail,
                        "field \"ts\": 253402300800000 is outside years "
                        "0000-9999 in epoch ms");
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":-62167219200001}",
                  EVENT_BAD_TIME);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":1e300}",
                  EVENT_BAD_TIME);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":1e999}",
                  EVENT_BAD_TIME);
    /* Epoch ms as a string is neither form. */
    assert_reason(f,
                  "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":\"1772359200000\"}",
                  EVENT_BAD_TIME);
    assert_reason(f,
                  "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":"
                  "\"2026-02-30T10:00:00Z\"}",
                  EVENT_BAD_TIME);
    assert_reason(f,
                  "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":"
                  "\"2026-03-01T10:00:00\"}",
                  EVENT_BAD_TIME);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":true}",
                  EVENT_BAD_TIME);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":{}}",
                  EVENT_BAD_TIME);
    assert_string_equal(f->detail,
                        "field \"ts\": an object is not RFC 3339 or epoch ms");
}

static void test_id_field(void **state) {
    fx_t *f = *state;
    char json[1024], id[EVENT_ID_MAX + 1];
    assert_reason(f, ENV(",\"id\":null"), EVENT_OK);
    assert_null(f->ev.id);
    assert_int_equal(f->ev.id_len, 0);
    assert_reason(f, ENV(",\"id\":\"\""), EVENT_BAD_ID);
    assert_string_equal(f->detail, "field \"id\" is empty");
    assert_reason(f, ENV(",\"id\":1.25"), EVENT_BAD_ID);
    assert_string_equal(f->detail, "field \"id\": 1.25 is not a string or integer");
    assert_reason(f, ENV(",\"id\":true"), EVENT_BAD_ID);
    assert_reason(f, ENV(",\"id\":[1]"), EVENT_BAD_ID);
    assert_string_equal(f->detail,
                        "field \"id\": an array is not a string or integer");
    assert_reason(f, ENV(",\"id\":{\"a\":1}"), EVENT_BAD_ID);

    memset(id, 'i', sizeof(id));
    id[EVENT_ID_MAX - 1] = '\0';
    snprintf(json, sizeof(json), ENV(",\"id\":\"%s\""), id);
    assert_reason(f, json, EVENT_OK);
    assert_int_equal(f->ev.id_len, EVENT_ID_MAX - 1);
    id[EVENT_ID_MAX - 1] = 'i';
    id[EVENT_ID_MAX] = '\0';
    snprintf(json, sizeof(json), ENV(",\"id\":\"%s\""), id);
    assert_reason(f, json, EVENT_BAD_ID);
}

static void test_not_nul_terminated(void **state) {
    fx_t *f = *state;
    const char *json = ENV(",\"id\":\"e1\"");
    size_t n = strlen(json);
    /* The byte after len is garbage that would break the parse if read. */
    char *buf = malloc(n + 16);
    assert_non_null(buf);
    memcpy(buf, json, n);
    memcpy(buf + n, "garbage\"}]]", 11);
    event_clear(&f->ev);
    assert_int_equal(event_parse(&f->cfg, buf, n, &f->ev, f->detail,
                                 sizeof(f->detail)),
                     EVENT_OK);
    memset(buf, 0, n + 16); /* the event must not borrow the input */
    free(buf);
    assert_string_equal(f->ev.client_id, "C1");
    assert_string_equal(f->ev.id, "e1");
    assert_string_equal(f->ev.type, "t");

    /* The same bytes cut short are not JSON, whatever follows. */
    assert_int_equal(parse_n(f, json, n - 1), EVENT_NOT_JSON);
    assert_int_equal(parse_n(f, "{\"client_id\":\"C1\"}", 15), EVENT_NOT_JSON);
    assert_int_equal(parse_n(f, "{\"client_id\":\"C1\\\"}", 18),
                     EVENT_NOT_JSON);
    assert_int_equal(parse_n(f, "{\"client_id\":\"C1\\\"}", 17),
                     EVENT_NOT_JSON);
    assert_int_equal(parse_n(f, "{\"type\":nullx", 12), EVENT_NOT_JSON);
    assert_int_equal(parse_n(f, "{\"type\":tru", 11), EVENT_NOT_JSON);
    assert_int_equal(parse_n(f, "{\"ts\":123", 9), EVENT_NOT_JSON);
}

/* An envelope whose "d" holds levels-1 nested arrays or objects, so the
 * whole message nests exactly levels deep (the root object is level 1). */
static char *nested(int levels, int objects) {
    const char *head = "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":0,\"d\":";
    size_t hn = strlen(head), inner = (size_t)(levels - 1);
    char *s = malloc(hn + 6 * inner + 4);
    assert_non_null(s);
    memcpy(s, head, hn);
    size_t o = hn;
    for (size_t i = 0; i < inner; i++) {
        s[o++] = objects ? '{' : '[';
        if (objects && i + 1 < inner) { /* {"k":{"k":{}}} */
            memcpy(s + o, "\"k\":", 4);
            o += 4;
        }
    }
    if (inner == 0) s[o++] = '0';
    for (size_t i = 0; i < inner; i++) s[o++] = objects ? '}' : ']';
    s[o++] = '}';
    s[o] = '\0';
    return s;
}

static void test_max_depth(void **state) {
    fx_t *f = *state;
    char *s = nested(32, 0);
    assert_reason(f, s, EVENT_OK);
    free(s);
    s = nested(33, 0);
    assert_reason(f, s, EVENT_TOO_DEEP);
    /* 39 bytes of head, then the 32nd '[' is level 33. */
    assert_string_equal(f->detail, "nesting deeper than 32 at byte 70");
    free(s);
    s = nested(32, 1);
    assert_reason(f, s, EVENT_OK);
    /* Level 32 is the empty object at the end of "d" and 30 "k"s. */
    char path[128] = "d";
    for (int i = 0; i < 30; i++) strcat(path, ".k");
    const cJSON *last = event_path(f->ev.root, path);
    assert_non_null(last);
    assert_true(cJSON_IsObject(last));
    assert_null(last->child);
    free(s);
    s = nested(33, 1);
    assert_reason(f, s, EVENT_TOO_DEEP);
    free(s);

    f->cfg.max_depth = 2;
    assert_reason(f, ENV(",\"data\":{\"a\":1}"), EVENT_OK);
    assert_reason(f, ENV(",\"data\":{\"a\":[1]}"), EVENT_TOO_DEEP);
    /* Brackets inside strings, escaped quotes included, do not count. */
    assert_reason(f, ENV(",\"data\":{\"a\":\"[[{{\\\"[[[\"}"), EVENT_OK);
    assert_reason(f, ENV(",\"x\\\"[[\":{}"), EVENT_OK);
    f->cfg.max_depth = 1;
    assert_reason(f, ENV(""), EVENT_OK);
    assert_reason(f, ENV(",\"data\":{}"), EVENT_TOO_DEEP);

    /* Far beyond cJSON's own limit: rejected by the pre-scan, no recursion. */
    f->cfg.max_depth = 32;
    size_t n = 200000;
    char *deep = malloc(n + 1);
    assert_non_null(deep);
    memset(deep, '[', n);
    deep[n] = '\0';
    assert_reason(f, deep, EVENT_TOO_DEEP);
    free(deep);
}

static void test_max_bytes(void **state) {
    fx_t *f = *state;
    const char *json = ENV("");
    size_t n = strlen(json);
    f->cfg.max_bytes = n;
    assert_reason(f, json, EVENT_OK);
    f->cfg.max_bytes = n - 1;
    assert_reason(f, json, EVENT_TOO_LARGE);
    char want[128];
    snprintf(want, sizeof(want), "message is %zu bytes, over the limit of %zu",
             n, n - 1);
    assert_string_equal(f->detail, want);
    /* Size is checked first: not even UTF-8 is looked at. */
    assert_reason(f, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
                     "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
                     "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
                     "\xff\xff\xff\xff\xff\xff",
                  EVENT_TOO_LARGE);
}

static void test_utf8(void **state) {
    fx_t *f = *state;
    /* Two-, three- and four-byte characters are fine. */
    assert_reason(f,
                  "{\"client_id\":\"Caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80\","
                  "\"type\":\"t\",\"ts\":0}",
                  EVENT_OK);
    assert_string_equal(f->ev.client_id,
                        "Caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80");
    assert_reason(f, ENV(",\"x\":\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf\""),
                  EVENT_OK);

    static const char *const bad[] = {
        "\x80",             /* lone continuation */
        "\xbf",
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong 3-byte */
        "\xe0\x9f\xbf",
        "\xf0\x80\x80\xaf", /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf",
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xed\xbf\xbf",     /* surrogate U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\xc3",             /* truncated */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3\x28",         /* bad continuation */
        "\xe2\x28\xa1",
        "\xf0\x9f\x28\x80",
    };
    char json[128];
    for (size_t i = 0; i < CHURN_ARRAY_LEN(bad); i++) {
        snprintf(json, sizeof(json), "{\"client_id\":\"%s\",\"type\":\"t\",\"ts\":0}",
                 bad[i]);
        assert_reason(f, json, EVENT_NOT_UTF8);
        char want[64];
        snprintf(want, sizeof(want), "invalid UTF-8 at byte 14 (0x%02x)",
                 (unsigned char)bad[i][0]);
        assert_string_equal(f->detail, want);
    }
    /* A truncated sequence at the very end of the message. */
    assert_int_equal(parse_n(f, "{}\xe2\x82", 4), EVENT_NOT_UTF8);
    assert_string_equal(f->detail, "invalid UTF-8 at byte 2 (0xe2)");
}

static void test_not_json(void **state) {
    fx_t *f = *state;
    event_clear(&f->ev);
    assert_int_equal(event_parse(&f->cfg, NULL, 0, &f->ev, f->detail,
                                 sizeof(f->detail)),
                     EVENT_NOT_JSON);
    assert_string_equal(f->detail, "empty message");
    assert_int_equal(parse_n(f, "", 0), EVENT_NOT_JSON);
    assert_reason(f, " ", EVENT_NOT_JSON);
    assert_reason(f, "{", EVENT_NOT_JSON);
    assert_reason(f, "{\"client_id\":}", EVENT_NOT_JSON);
    assert_reason(f, "{'client_id':'C'}", EVENT_NOT_JSON);
    assert_reason(f, "{\"a\":1,}", EVENT_NOT_JSON);
    assert_reason(f, "{\"a\":\"\\q\"}", EVENT_NOT_JSON);
    assert_reason(f, "{\"a\":\"\\ud800\"}", EVENT_NOT_JSON); /* lone surrogate */
    assert_reason(f, "nul", EVENT_NOT_JSON);
    /* Trailing data after the object. */
    assert_reason(f, ENV("") " x", EVENT_NOT_JSON);
    assert_reason(f, ENV("") "{}", EVENT_NOT_JSON);
    assert_reason(f, ENV("") ",", EVENT_NOT_JSON);
    assert_int_equal(parse_n(f, ENV("") "\0", sizeof(ENV(""))), EVENT_NOT_JSON);
    assert_string_equal(f->detail, "not JSON: a control character outside a "
                                   "string at byte 36");
    assert_reason(f, "{}}", EVENT_NOT_JSON);
    assert_string_equal(f->detail, "not JSON: trailing data at byte 2");
    /* Whitespace around the object and a leading BOM are fine. */
    assert_reason(f, " \r\n\t" ENV("") " \r\n\t", EVENT_OK);
    assert_reason(f, "\xef\xbb\xbf" ENV(""), EVENT_OK);
    assert_reason(f, "\xef\xbb\xbf", EVENT_NOT_JSON);
    /* What cJSON would accept or mangle. */
    assert_reason(f, ENV(",\"x\":\"a\tb\""), EVENT_NOT_JSON);
    assert_string_equal(f->detail,
                        "not JSON: a raw control character in a string at byte 42");
    assert_reason(f, "\x01" ENV(""), EVENT_NOT_JSON);
    assert_reason(f, ENV(",\"x\":\x0b" "1"), EVENT_NOT_JSON);
    assert_reason(f, "{\"client_id\":\"A\\u0000B\",\"type\":\"t\",\"ts\":0}",
                  EVENT_NOT_JSON);
    assert_string_equal(f->detail, "not JSON: a \\u0000 escape (NUL is not "
                                   "supported in strings) at byte 15");
    /* An escaped backslash before "u0000" is just text. */
    assert_reason(f, "{\"client_id\":\"A\\\\u0000B\",\"type\":\"t\",\"ts\":0}",
                  EVENT_OK);
    assert_string_equal(f->ev.client_id, "A\\u0000B");
    assert_reason(f, ENV(",\"x\":\"\\u00e9\\n\\u0001\""), EVENT_OK);
}

static void test_not_object(void **state) {
    fx_t *f = *state;
    assert_reason(f, "[]", EVENT_NOT_OBJECT);
    assert_string_equal(f->detail, "top-level value is an array, not an object");
    assert_reason(f, "[" ENV("") "]", EVENT_NOT_OBJECT);
    assert_reason(f, "\"client_id\"", EVENT_NOT_OBJECT);
    assert_string_equal(f->detail, "top-level value is a string, not an object");
    assert_reason(f, "42", EVENT_NOT_OBJECT);
    assert_reason(f, "null", EVENT_NOT_OBJECT);
    assert_string_equal(f->detail, "top-level value is null, not an object");
    assert_reason(f, "true", EVENT_NOT_OBJECT);
    assert_reason(f, "{}", EVENT_NO_CLIENT);
}

/* Each pair has two faults; the earlier check must win. */
static void test_check_order(void **state) {
    fx_t *f = *state;
    f->cfg.max_depth = 3;
    f->cfg.max_bytes = 64;
    assert_reason(f, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                     "[[[[[[[[[\xff",
                  EVENT_TOO_LARGE);
    assert_reason(f, "[[[[\xff", EVENT_NOT_UTF8);
    assert_reason(f, "[[[[ not json", EVENT_TOO_DEEP);
    assert_reason(f, "[[[[\"\\u0000\"", EVENT_TOO_DEEP);
    assert_reason(f, "[1,\"\\u0000\"", EVENT_NOT_JSON);
    assert_reason(f, "[1]", EVENT_NOT_OBJECT);
    assert_reason(f, "{\"type\":5}", EVENT_NO_CLIENT);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":5}", EVENT_NO_TYPE);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"id\":[]}",
                  EVENT_NO_TIME);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":\"x\",\"id\":[]}",
                  EVENT_BAD_TIME);
    assert_reason(f, "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":1,\"id\":[]}",
                  EVENT_BAD_ID);
}

static void test_detail_buffers(void **state) {
    fx_t *f = *state;
    const char *json = "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":\"yesterday\"}";
    event_clear(&f->ev);
    assert_int_equal(event_parse(&f->cfg, json, strlen(json), &f->ev, NULL, 0),
                     EVENT_BAD_TIME);
    char small[9];
    memset(small, 'x', sizeof(small));
    assert_int_equal(event_parse(&f->cfg, json, strlen(json), &f->ev, small, 8),
                     EVENT_BAD_TIME);
    assert_string_equal(small, "field \"");
    assert_int_equal(small[8], 'x');
    assert_null(f->ev.root);

    /* Values are escaped and cut on a character boundary. */
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"client_id\":\"C\",\"type\":\"t\",\"ts\":\"%s\"}",
             "ab\\\"c\\n\\\\ "
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_reason(f, buf, EVENT_BAD_TIME);
    /* 7 ASCII bytes + 26 two-byte chars = 59; the 27th would end at 61. */
    assert_string_equal(
        f->detail,
        "field \"ts\": \"ab\\\"c\\x0a\\\\ "
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9...\" is not RFC 3339 or epoch ms");
}

static void test_event_path(void **state) {
    (void)state;
    const char *json =
        "{\"a\":{\"b\":{\"c\":3},\"B\":2,\"arr\":[{\"x\":1}],\"\":{\"e\":5}},"
        "\"a.b\":7,\"ab\":8,\"abc\":9}";
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    assert_int_equal(event_path(root, "a.b.c")->valueint, 3);
    assert_int_equal(event_path(root, "a.B")->valueint, 2);
    assert_true(cJSON_IsObject(event_path(root, "a.b")));
    assert_int_equal(event_path(root, "ab")->valueint, 8);
    assert_int_equal(event_path(root, "abc")->valueint, 9);
    assert_null(event_path(root, "a.b.c.d"));   /* through a number */
    assert_null(event_path(root, "a.arr.0"));   /* no array indexes */
    assert_null(event_path(root, "a.arr.0.x"));
    assert_true(cJSON_IsArray(event_path(root, "a.arr")));
    assert_null(event_path(root, "A.b"));       /* case-sensitive */
    assert_null(event_path(root, "a.b.C"));
    assert_null(event_path(root, "a.x"));
    assert_null(event_path(root, "a."));
    assert_null(event_path(root, ".a"));
    assert_null(event_path(root, "a..e"));
    assert_null(event_path(root, ""));
    assert_null(event_path(root, NULL));
    assert_null(event_path(NULL, "a"));

    const char *s1[] = {"a", "b", "c"};
    assert_int_equal(event_path_segs(root, s1, 3)->valueint, 3);
    assert_true(cJSON_IsObject(event_path_segs(root, s1, 2)));
    assert_ptr_equal(event_path_segs(root, s1, 0), root);
    const char *s2[] = {"a", "arr", "0"};
    assert_null(event_path_segs(root, s2, 3));
    const char *s3[] = {"A", "b"};
    assert_null(event_path_segs(root, s3, 2));
    /* A segment may contain a dot: the key "a.b" is reachable this way. */
    const char *s4[] = {"a.b"};
    assert_int_equal(event_path_segs(root, s4, 1)->valueint, 7);
    const char *s5[] = {"a", ""};
    assert_int_equal(event_path_segs(root, s5, 1)->type, cJSON_Object);
    assert_true(cJSON_IsObject(event_path_segs(root, s5, 2)));
    assert_null(event_path_segs(NULL, s1, 1));
    assert_null(event_path_segs(root, NULL, 1));
    cJSON_Delete(root);
}

static void test_clear(void **state) {
    fx_t *f = *state;
    assert_reason(f, ENV(""), EVENT_OK);
    assert_non_null(f->ev.root);
    event_clear(&f->ev);
    assert_null(f->ev.root);
    assert_null(f->ev.client_id);
    assert_null(f->ev.type);
    event_clear(&f->ev);
    event_clear(NULL);
}

/* Every tree fits the one block its parse sized for it, whatever the shape
 * (the densest ones, in nodes or in strings per byte, included), and other
 * cJSON use, here a tree built, printed and deleted between two parses,
 * still goes to malloc and free (ASan and valgrind see a leak otherwise). */
static void test_arena_fits(void **state) {
    fx_t *f = *state;
    static const char *const shapes[] = {
        ENV(""),
        ENV(",\"d\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]"),
        ENV(",\"d\":[[],[],[],[],[],[],[[[[[[]]]]]],{},{},{}]"),
        ENV(",\"d\":[\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\"]"),
        ENV(",\"d\":{\"\":1,\"a\":\"\\u00e9\\n\\\"\",\"b\":true,\"c\":null}"),
        ENV(",\"d\":{\"x\":{\"y\":{\"z\":[1.5e300,-0,\"\\ud83d\\ude00\"]}}}"),
        "\xEF\xBB\xBF" ENV(",\"e\" : [ 1 , 2 ] "),
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        assert_reason(f, shapes[i], EVENT_OK);
        assert_int_equal(event_arena_blocks(&f->ev), 1);
        cJSON *j = cJSON_CreateObject();
        assert_non_null(cJSON_AddStringToObject(j, "k", "v"));
        char *text = cJSON_PrintUnformatted(j);
        assert_string_equal(text, "{\"k\":\"v\"}");
        cJSON_free(text);
        cJSON_Delete(j);
    }
    /* The dense array: every element is there. */
    assert_reason(f, shapes[1], EVENT_OK);
    assert_int_equal(cJSON_GetArraySize(event_path(f->ev.root, "d")), 24);
    event_clear(&f->ev);
    assert_int_equal(event_arena_blocks(&f->ev), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test_setup_teardown(test_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caller_fields_untouched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_integer_client_and_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_length_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_type_and_type_map, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_custom_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_nul_terminated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_max_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detail_buffers, setup, teardown),
        cmocka_unit_test(test_event_path),
        cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena_fits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
