/*
 * test_timeutil.c - RFC 3339 and duration parsing/formatting. Expected
 * values are literals computed independently (Python's datetime), so a
 * wrong calendar or offset sign fails here rather than agreeing with itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "churnd/common.h"
#include "churnd/timeutil.h"

/* Parse a C string literal; returns rc and stores into *ms. */
static int parse(const char *s, int64_t *ms) {
    *ms = INT64_C(-424242);
    return time_parse_rfc3339(s, strlen(s), ms);
}

static void assert_time(const char *s, int64_t want) {
    int64_t ms;
    int rc = parse(s, &ms);
    if (rc != 0) fail_msg("rejected valid time \"%s\"", s);
    if (ms != want)
        fail_msg("\"%s\": got %lld, want %lld", s, (long long)ms,
                 (long long)want);
}

static void assert_bad_time(const char *s) {
    int64_t ms;
    int rc = parse(s, &ms);
    if (rc != CHURN_EINVAL) fail_msg("accepted invalid time \"%s\"", s);
    assert_int_equal(ms, INT64_C(-424242)); /* untouched on error */
}

static void test_days_from_civil(void **state) {
    (void)state;
    assert_int_equal(time_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(time_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(time_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(time_days_from_civil(1, 1, 1), -719162);
    assert_int_equal(time_days_from_civil(0, 1, 1), -719528);
    assert_int_equal(time_days_from_civil(9999, 12, 31), 2932896);
}

static void test_parse_basic(void **state) {
    (void)state;
    assert_time("1970-01-01T00:00:00Z", 0);
    assert_time("2026-03-01T10:00:00Z", INT64_C(1772359200000));
    assert_time("2026-03-01t10:00:00z", INT64_C(1772359200000));
    assert_time("2026-03-01 10:00:00Z", INT64_C(1772359200000));
    assert_time("1969-12-31T23:59:59Z", -1000);
    assert_time("1969-12-31T23:59:59.999Z", -1);
    assert_time("1900-01-01T00:00:00Z", INT64_C(-2208988800000));
}

static void test_parse_fraction(void **state) {
    (void)state;
    assert_time("1970-01-01T00:00:00.1Z", 100);
    assert_time("1970-01-01T00:00:00.12Z", 120);
    assert_time("1970-01-01T00:00:00.123Z", 123);
    assert_time("1970-01-01T00:00:00.000Z", 0);
    /* Truncated, not rounded, whatever the length. */
    assert_time("1970-01-01T00:00:00.9999Z", 999);
    assert_time("1970-01-01T00:00:00.123456789123456789123456789Z", 123);
    assert_bad_time("1970-01-01T00:00:00.Z");
    assert_bad_time("1970-01-01T00:00:00.");
    assert_bad_time("1970-01-01T00:00:00,5Z");
    assert_bad_time("1970-01-01T00:00:00.1a2Z");
}

static void test_parse_offsets(void **state) {
    (void)state;
    assert_time("2026-03-01T10:00:00.123+02:00", INT64_C(1772352000123));
    assert_time("2026-03-01T12:00:00+02:00", INT64_C(1772359200000));
    assert_time("2026-03-01T04:30:00-05:30", INT64_C(1772359200000));
    assert_time("2024-02-29T23:59:59.999-05:30", INT64_C(1709270999999));
    assert_time("1970-01-01T00:00:00+00:00", 0);
    assert_time("1970-01-01T00:00:00-00:00", 0);
    assert_time("1970-01-01T23:59:00+23:59", 0);
    assert_time("1969-12-31T00:01:00-23:59", 0);
    assert_bad_time("1970-01-01T00:00:00+24:00");
    assert_bad_time("1970-01-01T00:00:00+00:60");
    assert_bad_time("1970-01-01T00:00:00+0200");
    assert_bad_time("1970-01-01T00:00:00+02");
    assert_bad_time("1970-01-01T00:00:00+02:0");
    assert_bad_time("1970-01-01T00:00:00+02:000");
    assert_bad_time("1970-01-01T00:00:00 +02:00");
    assert_bad_time("1970-01-01T00:00:00Z+02:00");
}

static void test_parse_calendar(void **state) {
    (void)state;
    assert_time("2024-02-29T00:00:00Z", INT64_C(1709164800000));
    assert_time("2000-02-29T00:00:00Z", INT64_C(951782400000));
    assert_bad_time("2023-02-29T00:00:00Z");
    assert_bad_time("1900-02-29T00:00:00Z");
    assert_bad_time("2026-02-30T00:00:00Z");
    assert_bad_time("2026-04-31T00:00:00Z");
    assert_time("2026-12-31T00:00:00Z", INT64_C(1798675200000));
    assert_bad_time("2026-00-10T00:00:00Z");
    assert_bad_time("2026-13-10T00:00:00Z");
    assert_bad_time("2026-01-00T00:00:00Z");
    assert_bad_time("2026-01-32T00:00:00Z");
    assert_time("2026-01-01T23:59:59Z", INT64_C(1767311999000));
    assert_bad_time("2026-01-01T24:00:00Z");
    assert_bad_time("2026-01-01T00:60:00Z");
    assert_bad_time("2026-01-01T00:00:60Z"); /* leap seconds rejected */
    assert_bad_time("2026-01-01T00:00:61Z");
}

static void test_parse_malformed(void **state) {
    (void)state;
    int64_t ms = 7;
    assert_int_equal(time_parse_rfc3339(NULL, 0, &ms), CHURN_EINVAL);
    assert_int_equal(time_parse_rfc3339("", 0, &ms), CHURN_EINVAL);
    assert_int_equal(ms, 7);
    assert_bad_time("2026-03-01T10:00:00");   /* no offset */
    assert_bad_time("2026-03-01");
    assert_bad_time("2026-03-01T10:00Z");     /* no seconds */
    assert_bad_time("2026-3-01T10:00:00Z");
    assert_bad_time("26-03-01T10:00:00Z");
    assert_bad_time("+2026-03-01T10:00:00Z");
    assert_bad_time("2026/03/01T10:00:00Z");
    assert_bad_time("2026-03-01X10:00:00Z");
    assert_bad_time("2026-03-01T10-00-00Z");
    assert_bad_time("2026-03-01T10:00:00ZZ");
    assert_bad_time("2026-03-01T10:00:00Z ");
    assert_bad_time(" 2026-03-01T10:00:00Z");
    assert_bad_time("2026-03-01T1a:00:00Z");
    assert_bad_time("yesterday");
    assert_bad_time("1772359200000");
}

static void test_parse_range(void **state) {
    (void)state;
    assert_time("0000-01-01T00:00:00Z", TIME_MIN_MS);
    assert_time("9999-12-31T23:59:59.999Z", TIME_MAX_MS);
    assert_time("9999-12-31T23:59:59.999999Z", TIME_MAX_MS);
    assert_int_equal(TIME_MIN_MS, INT64_C(-62167219200000));
    assert_int_equal(TIME_MAX_MS, INT64_C(253402300799999));
    /* The offset would move them outside what RFC 3339 can write. */
    assert_bad_time("0000-01-01T00:00:00+00:01");
    assert_bad_time("9999-12-31T23:59:59-00:01");
    assert_time("0000-01-01T00:01:00+00:01", TIME_MIN_MS);
}

/* The slice ends where n says, whatever follows in memory. */
static void test_parse_not_nul_terminated(void **state) {
    (void)state;
    const char buf[] = "2026-03-01T10:00:00Z99999";
    int64_t ms = 0;
    assert_int_equal(time_parse_rfc3339(buf, 20, &ms), 0);
    assert_int_equal(ms, INT64_C(1772359200000));
    assert_int_equal(time_parse_rfc3339(buf, 19, &ms), CHURN_EINVAL);
    assert_int_equal(time_parse_rfc3339(buf, 21, &ms), CHURN_EINVAL);
    const char frac[] = "2026-03-01T10:00:00.5Z";
    assert_int_equal(time_parse_rfc3339(frac, 21, &ms), CHURN_EINVAL);
    const char off[] = "2026-03-01T12:00:00+02:00";
    assert_int_equal(time_parse_rfc3339(off, 24, &ms), CHURN_EINVAL);
    assert_int_equal(time_parse_rfc3339(off, 25, &ms), 0);
    assert_int_equal(ms, INT64_C(1772359200000));
}

static void assert_format(int64_t ms, const char *want) {
    char buf[TIME_RFC3339_MAX];
    memset(buf, 'x', sizeof(buf));
    size_t n = time_format_rfc3339(ms, buf, sizeof(buf));
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_format(void **state) {
    (void)state;
    assert_format(0, "1970-01-01T00:00:00Z");
    assert_format(1, "1970-01-01T00:00:00.001Z");
    assert_format(INT64_C(1772359200000), "2026-03-01T10:00:00Z");
    assert_format(INT64_C(1772352000123), "2026-03-01T08:00:00.123Z");
    assert_format(-1, "1969-12-31T23:59:59.999Z");
    assert_format(-1000, "1969-12-31T23:59:59Z");
    assert_format(-1001, "1969-12-31T23:59:58.999Z");
    assert_format(INT64_C(-86400000), "1969-12-31T00:00:00Z");
    assert_format(INT64_C(-86400001), "1969-12-30T23:59:59.999Z");
    assert_format(INT64_C(-2208988800000), "1900-01-01T00:00:00Z");
    assert_format(INT64_C(951782400000), "2000-02-29T00:00:00Z");
    assert_format(TIME_MIN_MS, "0000-01-01T00:00:00Z");
    assert_format(TIME_MAX_MS, "9999-12-31T23:59:59.999Z");
    /* Outside RFC 3339: ISO 8601 expanded years, never a fake 4-digit one. */
    assert_format(TIME_MAX_MS + 1, "+10000-01-01T00:00:00Z");
    assert_format(TIME_MIN_MS - 1, "-0001-12-31T23:59:59.999Z");
}

static void test_format_extremes_and_small_buffers(void **state) {
    (void)state;
    char buf[TIME_RFC3339_MAX];
    size_t n = time_format_rfc3339(INT64_MAX, buf, sizeof(buf));
    assert_true(n > 0 && n < sizeof(buf));
    assert_int_equal(buf[0], '+');
    assert_int_equal(buf[n - 1], 'Z');
    n = time_format_rfc3339(INT64_MIN, buf, sizeof(buf));
    assert_true(n > 0 && n < sizeof(buf));
    assert_int_equal(buf[0], '-');
    assert_int_equal(buf[n - 1], 'Z');

    /* "1970-01-01T00:00:00Z" is 20 bytes: needs 21. */
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(time_format_rfc3339(0, buf, 20), 0);
    assert_string_equal(buf, "");
    assert_int_equal(time_format_rfc3339(0, buf, 21), 20);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    assert_int_equal(time_format_rfc3339(0, NULL, 0), 0);
}

/* Deterministic pseudo-random instants over the whole valid range, both
 * sides of the epoch, each with and without a millisecond part. */
static void test_format_parse_round_trip(void **state) {
    (void)state;
    const int64_t fixed[] = {0, 1, -1, 999, -999, 1000, -1000, TIME_MIN_MS,
                             TIME_MAX_MS, TIME_MIN_MS + 1, TIME_MAX_MS - 1,
                             INT64_C(951868799999), INT64_C(-62135596800000)};
    char buf[TIME_RFC3339_MAX];
    int64_t back;
    for (size_t i = 0; i < CHURN_ARRAY_LEN(fixed); i++) {
        size_t n = time_format_rfc3339(fixed[i], buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(time_parse_rfc3339(buf, n, &back), 0);
        assert_int_equal(back, fixed[i]);
    }
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    const uint64_t span = (uint64_t)(TIME_MAX_MS - TIME_MIN_MS) + 1;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int64_t ms = TIME_MIN_MS + (int64_t)((x >> 11) % span);
        if (i & 1) ms -= ms % 1000; /* whole seconds too */
        if (ms < TIME_MIN_MS) ms += 1000;
        size_t n = time_format_rfc3339(ms, buf, sizeof(buf));
        assert_true(n >= 20);
        assert_int_equal(time_parse_rfc3339(buf, n, &back), 0);
        if (back != ms)
            fail_msg("%lld -> %s -> %lld", (long long)ms, buf,
                     (long long)back);
    }
}

static int64_t dur(const char *s) {
    int64_t ms = INT64_C(-424242);
    int rc = duration_parse(s, strlen(s), &ms);
    if (rc != 0) fail_msg("rejected valid duration \"%s\"", s);
    return ms;
}

static void assert_bad_dur(const char *s) {
    int64_t ms = INT64_C(-424242);
    if (duration_parse(s, strlen(s), &ms) != CHURN_EINVAL)
        fail_msg("accepted invalid duration \"%s\"", s);
    assert_int_equal(ms, INT64_C(-424242));
}

static void test_duration_parse(void **state) {
    (void)state;
    assert_int_equal(dur("0"), 0);
    assert_int_equal(dur("0s"), 0);
    assert_int_equal(dur("0ms"), 0);
    assert_int_equal(dur("1ms"), 1);
    assert_int_equal(dur("1500ms"), 1500);
    assert_int_equal(dur("90s"), 90000);
    assert_int_equal(dur("15m"), 900000);
    assert_int_equal(dur("48h"), INT64_C(172800000));
    assert_int_equal(dur("30d"), INT64_C(2592000000));
    assert_int_equal(dur("2w"), INT64_C(1209600000));
    assert_int_equal(dur("1h30m"), 5400000);
    assert_int_equal(dur("1s500ms"), 1500);
    assert_int_equal(dur("1m1ms"), 60001);
    assert_int_equal(dur("1w2d3h4m5s6ms"), INT64_C(788645006));
    assert_int_equal(dur("007s"), 7000);
}

static void test_duration_parse_errors(void **state) {
    (void)state;
    int64_t ms = 3;
    assert_int_equal(duration_parse(NULL, 0, &ms), CHURN_EINVAL);
    assert_int_equal(duration_parse("1s", 0, &ms), CHURN_EINVAL);
    assert_int_equal(ms, 3);
    assert_bad_dur("");
    assert_bad_dur("5");
    assert_bad_dur("00");
    assert_bad_dur("s");
    assert_bad_dur("ms");
    assert_bad_dur("1x");
    assert_bad_dur("1y");
    assert_bad_dur("1S");
    assert_bad_dur("1H");
    assert_bad_dur("-1s");
    assert_bad_dur("+1s");
    assert_bad_dur(" 1s");
    assert_bad_dur("1s ");
    assert_bad_dur("1 s");
    assert_bad_dur("1.5h");
    assert_bad_dur("1h1h");     /* repeated */
    assert_bad_dur("30m1h");    /* out of order */
    assert_bad_dur("1ms1s");
    assert_bad_dur("1s1m");
    assert_bad_dur("1hm");
    assert_bad_dur("1h30");     /* trailing number without unit */
    assert_bad_dur("1mss");
    assert_bad_dur("1h 30m");
}

static void test_duration_overflow(void **state) {
    (void)state;
    assert_int_equal(dur("9223372036854775807ms"), INT64_MAX);
    assert_bad_dur("9223372036854775808ms");
    assert_bad_dur("99999999999999999999999999ms");
    assert_int_equal(dur("15250284452w"), INT64_C(9223372036569600000));
    assert_bad_dur("15250284453w");
    assert_int_equal(dur("106751991167d"), INT64_C(9223372036828800000));
    assert_bad_dur("106751991168d");
    /* Each term fits, the sum does not. */
    assert_int_equal(dur("15250284452w3d"), INT64_C(9223372036828800000));
    assert_bad_dur("15250284452w4d");
    assert_bad_dur("106751991167d7h12m55s808ms");
    assert_int_equal(dur("106751991167d7h12m55s807ms"), INT64_MAX);
}

static void test_duration_not_nul_terminated(void **state) {
    (void)state;
    int64_t ms = 0;
    assert_int_equal(duration_parse("90sXYZ", 3, &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(duration_parse("1h30m", 2, &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(duration_parse("1ms", 2, &ms), 0); /* "1m" */
    assert_int_equal(ms, 60000);
    assert_int_equal(duration_parse("15m", 2, &ms), CHURN_EINVAL);
}

static void assert_dur_format(int64_t ms, const char *want) {
    char buf[DURATION_FORMAT_MAX];
    memset(buf, 'x', sizeof(buf));
    size_t n = duration_format(ms, buf, sizeof(buf));
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_duration_format(void **state) {
    (void)state;
    assert_dur_format(0, "0s");
    assert_dur_format(1, "1ms");
    assert_dur_format(1500, "1s500ms");
    assert_dur_format(90000, "1m30s");
    assert_dur_format(900000, "15m");
    assert_dur_format(5400000, "1h30m");
    assert_dur_format(INT64_C(172800000), "2d");
    assert_dur_format(INT64_C(604800000), "1w");
    assert_dur_format(INT64_C(1209600000), "2w");
    assert_dur_format(INT64_C(2592000000), "30d");      /* not 4w2d */
    assert_dur_format(INT64_C(7776000000), "90d");
    assert_dur_format(INT64_C(1213200000), "2w1h");
    assert_dur_format(INT64_C(788645006), "9d3h4m5s6ms");
    assert_dur_format(-5400000, "-1h30m");
    assert_dur_format(INT64_MAX, "106751991167d7h12m55s807ms");
    assert_dur_format(INT64_MIN, "-106751991167d7h12m55s808ms");
}

static void test_duration_format_small_buffer(void **state) {
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(duration_format(5400000, buf, 5), 0); /* "1h30m" */
    assert_string_equal(buf, "");
    assert_int_equal(duration_format(5400000, buf, 6), 5);
    assert_string_equal(buf, "1h30m");
    assert_int_equal(duration_format(1, NULL, 0), 0);
}

static void test_duration_round_trip(void **state) {
    (void)state;
    const int64_t fixed[] = {0, 1, 999, 1000, 59999, 3600000, 5400000,
                             INT64_C(86400000), INT64_C(604800000),
                             INT64_C(2592000000), INT64_C(34560000000),
                             INT64_MAX};
    char buf[DURATION_FORMAT_MAX];
    int64_t back;
    for (size_t i = 0; i < CHURN_ARRAY_LEN(fixed); i++) {
        size_t n = duration_format(fixed[i], buf, sizeof(buf));
        assert_int_equal(duration_parse(buf, n, &back), 0);
        assert_int_equal(back, fixed[i]);
    }
    uint64_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int64_t ms = (int64_t)(x >> (1 + (i % 40)));
        size_t n = duration_format(ms, buf, sizeof(buf));
        assert_true(n > 0);
        if (duration_parse(buf, n, &back) != 0 || back != ms)
            fail_msg("%lld -> %s", (long long)ms, buf);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_from_civil),
        cmocka_unit_test(test_parse_basic),
        cmocka_unit_test(test_parse_fraction),
        cmocka_unit_test(test_parse_offsets),
        cmocka_unit_test(test_parse_calendar),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_range),
        cmocka_unit_test(test_parse_not_nul_terminated),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_extremes_and_small_buffers),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_duration_parse_errors),
        cmocka_unit_test(test_duration_overflow),
        cmocka_unit_test(test_duration_not_nul_terminated),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_duration_format_small_buffer),
        cmocka_unit_test(test_duration_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
