/*
 * timeutil.c - event time and durations as text: RFC 3339 timestamps and
 * the "90s"/"1h30m"/"30d" durations of rules and config.
 *
 * Pure: never reads a clock, never allocates, never touches global state.
 * Inputs are (ptr, len) slices and are never read past len.
 *
 * Times are int64 ms since the epoch in the proleptic Gregorian calendar.
 * Parsing accepts only what RFC 3339 can write (years 0000-9999, after the
 * offset is applied), so every parsed time formats back to a 4-digit year
 * and round-trips. Formatting accepts any int64 and falls back to ISO 8601
 * expanded years ("+10000-01-01...", "-0001-12-31...") outside that range
 * rather than printing something that looks valid but is not.
 */
#include "churnd/timeutil.h"

#include <stdio.h>
#include <string.h>

#include "churnd/common.h"

#define MS_PER_S INT64_C(1000)
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)
#define MS_PER_D (24 * MS_PER_H)
#define MS_PER_W (7 * MS_PER_D)

/* Howard Hinnant's days_from_civil: exact for the proleptic Gregorian
 * calendar, no tables, no loops. Valid for |y| well beyond any int64 ms. */
int64_t time_days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                               /* [0, 399] */
    int64_t mp = m > 2 ? (int64_t)m - 3 : (int64_t)m + 9;      /* [0, 11] */
    int64_t doy = (153 * mp + 2) / 5 + (int64_t)d - 1;         /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;       /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

/* The inverse (civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100); /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                    /* [0, 11] */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m) {
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30,
                                          31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* n decimal digits at s (caller checked the length). -1 if one is not. */
static int fixed_digits(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int time_parse_rfc3339(const char *s, size_t n, int64_t *ts_ms) {
    /* "YYYY-MM-DDTHH:MM:SS" is 19 bytes; at least a 'Z' must follow. */
    if (!s || n < 20) return CHURN_EINVAL;
    int y = fixed_digits(s, 4), mo = fixed_digits(s + 5, 2),
        d = fixed_digits(s + 8, 2), h = fixed_digits(s + 11, 2),
        mi = fixed_digits(s + 14, 2), sec = fixed_digits(s + 17, 2);
    if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || sec < 0)
        return CHURN_EINVAL;
    if (s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':')
        return CHURN_EINVAL;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return CHURN_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 ||
        (unsigned)d > days_in_month(y, (unsigned)mo))
        return CHURN_EINVAL;
    /* A leap second (60) cannot be represented in ms since the epoch
     * without smearing; we reject it rather than silently move it. */
    if (h > 23 || mi > 59 || sec > 59) return CHURN_EINVAL;

    size_t i = 19;
    int64_t frac_ms = 0;
    if (s[i] == '.') {
        i++;
        size_t start = i;
        for (; i < n && is_digit(s[i]); i++) {
            if (i - start < 3) frac_ms = frac_ms * 10 + (s[i] - '0');
        }
        if (i == start) return CHURN_EINVAL;
        for (size_t k = i - start; k < 3; k++) frac_ms *= 10;
    }
    if (i >= n) return CHURN_EINVAL;

    int64_t off_s = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        if (n - i < 6 || s[i + 3] != ':') return CHURN_EINVAL;
        int oh = fixed_digits(s + i + 1, 2), om = fixed_digits(s + i + 4, 2);
        if (oh < 0 || om < 0 || oh > 23 || om > 59) return CHURN_EINVAL;
        off_s = (int64_t)oh * 3600 + om * 60;
        if (s[i] == '-') off_s = -off_s;
        i += 6;
    } else {
        return CHURN_EINVAL;
    }
    if (i != n) return CHURN_EINVAL;

    int64_t days = time_days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + (int64_t)h * 3600 + mi * 60 + sec - off_s;
    int64_t ms = secs * MS_PER_S + frac_ms;
    /* "0000-01-01T00:00:00+01:00" is a year -1 instant: not writable. */
    if (ms < TIME_MIN_MS || ms > TIME_MAX_MS) return CHURN_EINVAL;
    *ts_ms = ms;
    return 0;
}

size_t time_format_rfc3339(int64_t ts_ms, char *buf, size_t size) {
    /* Floor division: -1 ms is 1969-12-31T23:59:59.999Z, not 1970-...-.001 */
    int64_t days = ts_ms / MS_PER_D, rem = ts_ms % MS_PER_D;
    if (rem < 0) {
        rem += MS_PER_D;
        days -= 1;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    unsigned ms = (unsigned)(rem % 1000), secs = (unsigned)(rem / 1000);
    unsigned hh = secs / 3600, mi = secs / 60 % 60, ss = secs % 60;

    char tmp[TIME_RFC3339_MAX + 16];
    int len;
    if (y >= 0 && y <= 9999)
        len = snprintf(tmp, sizeof(tmp), "%04d", (int)y);
    else if (y > 9999)
        len = snprintf(tmp, sizeof(tmp), "+%lld", (long long)y);
    else /* y < 0, and |y| < 3e8 for any int64 ms: no overflow */
        len = snprintf(tmp, sizeof(tmp), "-%04lld", -(long long)y);
    len += snprintf(tmp + len, sizeof(tmp) - (size_t)len,
                    "-%02u-%02uT%02u:%02u:%02u", m, d, hh, mi, ss);
    if (ms)
        len += snprintf(tmp + len, sizeof(tmp) - (size_t)len, ".%03u", ms);
    tmp[len++] = 'Z';
    tmp[len] = '\0';

    if (!buf || (size_t)len >= size) {
        if (buf && size) buf[0] = '\0';
        return 0;
    }
    memcpy(buf, tmp, (size_t)len + 1);
    return (size_t)len;
}

/* Units in the only order they may appear, largest first, as in
 * Prometheus ("1h30m" yes, "30m1h" and "1h1h" no). */
static const struct {
    const char *name;
    size_t len;
    int64_t ms;
} units[] = {
    {"w", 1, MS_PER_W}, {"d", 1, MS_PER_D}, {"h", 1, MS_PER_H},
    {"m", 1, MS_PER_M}, {"s", 1, MS_PER_S}, {"ms", 2, 1},
};

int duration_parse(const char *s, size_t n, int64_t *ms) {
    if (!s || n == 0) return CHURN_EINVAL;
    if (n == 1 && s[0] == '0') {
        *ms = 0;
        return 0;
    }
    size_t i = 0, next_unit = 0;
    int64_t total = 0;
    while (i < n) {
        if (!is_digit(s[i])) return CHURN_EINVAL;
        int64_t v = 0;
        for (; i < n && is_digit(s[i]); i++) {
            int dgt = s[i] - '0';
            if (v > (INT64_MAX - dgt) / 10) return CHURN_EINVAL;
            v = v * 10 + dgt;
        }
        if (i >= n) return CHURN_EINVAL; /* a bare number needs a unit */
        size_t u;
        if (s[i] == 'm' && i + 1 < n && s[i + 1] == 's')
            u = 5;
        else {
            for (u = 0; u < 5 && s[i] != units[u].name[0]; u++)
                ;
            if (u == 5) return CHURN_EINVAL;
        }
        if (u < next_unit) return CHURN_EINVAL;
        next_unit = u + 1;
        i += units[u].len;
        if (v > INT64_MAX / units[u].ms) return CHURN_EINVAL;
        v *= units[u].ms;
        if (total > INT64_MAX - v) return CHURN_EINVAL;
        total += v;
    }
    *ms = total;
    return 0;
}

/* Greedy largest-unit-first, as Prometheus prints, with one exception:
 * weeks only when the day count is whole weeks. Rules speak of 30d and
 * 90d; "4w2d" would be exact but nobody writes it. */
size_t duration_format(int64_t ms, char *buf, size_t size) {
    char tmp[64];
    size_t len = 0;
    if (ms == 0) {
        memcpy(tmp, "0s", 3);
        len = 2;
    } else {
        /* Via uint64 so that INT64_MIN has a magnitude. */
        uint64_t v = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
        if (ms < 0) tmp[len++] = '-';
        uint64_t days = v / (uint64_t)MS_PER_D;
        v %= (uint64_t)MS_PER_D;
        if (days) {
            int wk = days % 7 == 0;
            len += (size_t)snprintf(tmp + len, sizeof(tmp) - len, "%llu%c",
                                    (unsigned long long)(wk ? days / 7 : days),
                                    wk ? 'w' : 'd');
        }
        for (size_t u = 2; u < CHURN_ARRAY_LEN(units) && v; u++) {
            uint64_t q = v / (uint64_t)units[u].ms;
            v %= (uint64_t)units[u].ms;
            if (q)
                len += (size_t)snprintf(tmp + len, sizeof(tmp) - len, "%llu%s",
                                        (unsigned long long)q, units[u].name);
        }
    }
    if (!buf || len >= size) {
        if (buf && size) buf[0] = '\0';
        return 0;
    }
    memcpy(buf, tmp, len + 1);
    return len;
}
