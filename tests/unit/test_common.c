/*
 * test_common.c - the buffer, the varint/fixed-width encoders and the
 * bounds-checked reader that every on-disk record is built on, and the
 * array growth every list uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/common.h"

static void test_varint_round_trip_and_bytes(void **state) {
    (void)state;
    const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX,
                             (uint64_t)1 << 56, UINT64_MAX};
    buf_t b;
    buf_init(&b);
    for (size_t i = 0; i < CHURN_ARRAY_LEN(vals); i++)
        assert_int_equal(buf_put_varint(&b, vals[i]), 0);
    /* 300 is the classic example: 0xac 0x02 */
    assert_int_equal(b.data[0], 0x00);
    assert_int_equal(b.data[1], 0x01);
    assert_int_equal(b.data[2], 0x7f);
    assert_int_equal(b.data[3], 0x80);
    assert_int_equal(b.data[4], 0x01);
    assert_int_equal(b.data[5], 0xac);
    assert_int_equal(b.data[6], 0x02);
    reader_t r;
    reader_init(&r, b.data, b.len);
    for (size_t i = 0; i < CHURN_ARRAY_LEN(vals); i++) {
        uint64_t v = 0;
        assert_int_equal(reader_varint(&r, &v), 0);
        assert_true(v == vals[i]);
    }
    assert_int_equal(reader_left(&r), 0);
    uint64_t v;
    assert_int_equal(reader_varint(&r, &v), CHURN_ECORRUPT);
    buf_free(&b);
}

static void test_svarint_zigzag(void **state) {
    (void)state;
    const int64_t vals[] = {0, -1, 1, -64, 63, INT64_MIN, INT64_MAX, -1700000000000LL};
    buf_t b;
    buf_init(&b);
    for (size_t i = 0; i < CHURN_ARRAY_LEN(vals); i++)
        assert_int_equal(buf_put_svarint(&b, vals[i]), 0);
    assert_int_equal(b.data[0], 0); /* 0 -> 0 */
    assert_int_equal(b.data[1], 1); /* -1 -> 1 */
    assert_int_equal(b.data[2], 2); /* 1 -> 2 */
    reader_t r;
    reader_init(&r, b.data, b.len);
    for (size_t i = 0; i < CHURN_ARRAY_LEN(vals); i++) {
        int64_t v = 0;
        assert_int_equal(reader_svarint(&r, &v), 0);
        assert_true(v == vals[i]);
    }
    buf_free(&b);
}

static void test_reader_rejects_truncated_and_overlong(void **state) {
    (void)state;
    const uint8_t trunc[] = {0x80, 0x80};
    reader_t r;
    uint64_t v;
    reader_init(&r, trunc, sizeof(trunc));
    assert_int_equal(reader_varint(&r, &v), CHURN_ECORRUPT);
    /* eleven continuation bytes can never be a 64-bit value */
    const uint8_t longv[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0xff, 0x01};
    reader_init(&r, longv, sizeof(longv));
    assert_int_equal(reader_varint(&r, &v), CHURN_ECORRUPT);
    /* a length prefix larger than what is left */
    const uint8_t bytes[] = {0x05, 'a', 'b'};
    const uint8_t *p;
    size_t n;
    reader_init(&r, bytes, sizeof(bytes));
    assert_int_equal(reader_bytes(&r, &p, &n), CHURN_ECORRUPT);
    uint32_t u32;
    reader_init(&r, bytes, 3);
    assert_int_equal(reader_u32be(&r, &u32), CHURN_ECORRUPT);
}

static void test_fixed_width_big_endian(void **state) {
    (void)state;
    buf_t b;
    buf_init(&b);
    assert_int_equal(buf_put_u32be(&b, 0x01020304u), 0);
    assert_int_equal(buf_put_u64be(&b, 0x1112131415161718ull), 0);
    const uint8_t want[] = {1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14,
                            0x15, 0x16, 0x17, 0x18};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    reader_t r;
    reader_init(&r, b.data, b.len);
    uint32_t a;
    uint64_t c;
    assert_int_equal(reader_u32be(&r, &a), 0);
    assert_int_equal(reader_u64be(&r, &c), 0);
    assert_true(a == 0x01020304u && c == 0x1112131415161718ull);
    buf_free(&b);
}

static void test_json_string_escaping(void **state) {
    (void)state;
    buf_t b;
    buf_init(&b);
    const char s[] = "a\"b\\c\nd\x01" "e/\xc3\xa9";
    assert_int_equal(buf_put_json_str(&b, s, sizeof(s) - 1), 0);
    assert_int_equal(buf_putc(&b, 0), 0);
    assert_string_equal((char *)b.data, "\"a\\\"b\\\\c\\nd\\u0001e/\xc3\xa9\"");
    buf_free(&b);
}

static void test_printf_grows_and_reset_keeps_capacity(void **state) {
    (void)state;
    buf_t b;
    buf_init(&b);
    char big[1000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "%s-%d", big, 42), 0);
    assert_int_equal(b.len, 999 + 3);
    assert_memory_equal(b.data + 999, "-42", 3);
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    buf_free(&b);
}

static void test_error_strings(void **state) {
    (void)state;
    churn_err_t e;
    char line[1024];
    churn_err_at(&e, CHURN_EINVAL, "rules/a.yaml", 3, 7, "unknown key '%s'", "whn");
    assert_int_equal(e.code, CHURN_EINVAL);
    assert_string_equal(churn_err_str(&e, line, sizeof(line)),
                        "rules/a.yaml:3:7: unknown key 'whn'");
    assert_int_equal(churn_err_set(&e, CHURN_EIO, "disk %s", "full"), CHURN_EIO);
    assert_string_equal(churn_err_str(&e, line, sizeof(line)), "disk full");
}

/* churn_grow: the array as it is while there is room, doubled when full,
 * and on a size that cannot be allocated, NULL with the array and its
 * capacity left as they were. */
static void test_grow_doubles_only_when_full(void **state) {
    (void)state;
    size_t cap = 0, n = 0;
    int *v = NULL;
    for (int i = 0; i < 100; i++) {
        int *g = churn_grow(v, n, &cap, sizeof(*v), 8);
        assert_non_null(g);
        if (n < 8) assert_int_equal(cap, 8);
        v = g;
        v[n++] = i;
        assert_true(n <= cap && cap < 2 * n + 8);
    }
    assert_int_equal(cap, 128);
    for (int i = 0; i < 100; i++) assert_int_equal(v[i], i);
    assert_ptr_equal(churn_grow(v, 50, &cap, sizeof(*v), 8), v); /* room */
    size_t huge = SIZE_MAX / 4;
    assert_null(churn_grow(v, huge, &huge, 16, 8)); /* would overflow */
    assert_int_equal(huge, SIZE_MAX / 4);
    free(v);
}

static void test_hash_is_stable(void **state) {
    (void)state;
    /* persisted ids depend on this value never changing (FNV-1a 64) */
    assert_true(churn_hash64("", 0, CHURN_HASH_SEED) == 0xcbf29ce484222325ULL);
    assert_true(churn_hash64("a", 1, CHURN_HASH_SEED) == 0xaf63dc4c8601ec8cULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_round_trip_and_bytes),
        cmocka_unit_test(test_svarint_zigzag),
        cmocka_unit_test(test_reader_rejects_truncated_and_overlong),
        cmocka_unit_test(test_fixed_width_big_endian),
        cmocka_unit_test(test_json_string_escaping),
        cmocka_unit_test(test_printf_grows_and_reset_keeps_capacity),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_grow_doubles_only_when_full),
        cmocka_unit_test(test_hash_is_stable),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
