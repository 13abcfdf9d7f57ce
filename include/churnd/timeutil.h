/*
 * timeutil.h - event-time parsing and formatting. Pure: never reads a clock.
 * All times are int64 milliseconds since the Unix epoch (UTC).
 */
#ifndef CHURND_TIMEUTIL_H
#define CHURND_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* The instants RFC 3339 can write: 0000-01-01T00:00:00Z ..
 * 9999-12-31T23:59:59.999Z. Parsed times (RFC 3339 or epoch ms in events)
 * outside this range are rejected. */
#define TIME_MIN_MS (-INT64_C(62167219200000))
#define TIME_MAX_MS INT64_C(253402300799999)

/* RFC 3339: "2026-03-01T10:00:00Z", "2026-03-01T10:00:00.123+02:00",
 * lower-case t/z and a space instead of T accepted; fractions beyond ms are
 * truncated. Returns 0, or CHURN_EINVAL for anything else (including
 * out-of-range fields such as month 13 or Feb 30, second 60, offsets beyond
 * 23:59, and instants outside TIME_MIN_MS..TIME_MAX_MS once the offset is
 * applied). s need not be NUL-terminated. */
int time_parse_rfc3339(const char *s, size_t n, int64_t *ts_ms);

/* "2026-03-01T10:00:00Z", or with ".123" when ts_ms has a millisecond part.
 * Needs 32 bytes; returns the length written (excluding the NUL), or 0 with
 * buf = "" when size is too small. Outside TIME_MIN_MS..TIME_MAX_MS the year
 * is written ISO 8601 expanded ("+10000-...", "-0001-..."). */
#define TIME_RFC3339_MAX 32
size_t time_format_rfc3339(int64_t ts_ms, char *buf, size_t size);

/* Durations as written in rules and config: an integer followed by a unit
 * ms, s, m, h, d or w ("90s", "15m", "48h", "30d", "2w"), or a sequence of
 * them ("1h30m"); "0" and "0s" are zero. Returns CHURN_EINVAL otherwise,
 * including units out of order or repeated ("30m1h", "1h1h": as Prometheus),
 * signs, spaces, and totals beyond INT64_MAX ms. */
int duration_parse(const char *s, size_t n, int64_t *ms);
/* Shortest exact form: 172800000 -> "2d", 5400000 -> "1h30m", 0 -> "0s".
 * Largest unit first; weeks only when the days are whole weeks (14d -> "2w",
 * 30d -> "30d"); negative durations get a leading '-'. Returns the length,
 * or 0 with buf = "" when size is too small (DURATION_FORMAT_MAX always
 * suffices). */
#define DURATION_FORMAT_MAX 40
size_t duration_format(int64_t ms, char *buf, size_t size);

/* Days since epoch <-> civil date, exposed for the report and tests.
 * Proleptic Gregorian; m 1-12 and d 1-31 are not validated. */
int64_t time_days_from_civil(int64_t y, unsigned m, unsigned d);

#endif
