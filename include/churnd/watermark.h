/*
 * watermark.h - event time for the daemon (SPEC section 4). Pure: the
 * caller passes wall-clock readings in, so tests drive it exactly.
 *
 * Each assigned input partition's stream time is the largest event time
 * seen on it. The watermark is the smallest stream time over the assigned
 * partitions that are not idle, minus the allowed lateness. A partition is
 * idle once it is caught up (nothing left to read) and has had no new
 * event for idle_timeout; an idle partition stops holding the watermark
 * back. When every partition is idle, the watermark follows the wall
 * clock (minus the lateness). The watermark never goes backwards.
 */
#ifndef CHURND_WATERMARK_H
#define CHURND_WATERMARK_H

#include <stddef.h>
#include <stdint.h>

#define WM_NONE INT64_MIN

typedef struct wm_part {
    char *topic;           /* owned */
    int32_t partition;
    int64_t stream_ms;     /* WM_NONE until an event is seen */
    int64_t last_wall_ms;  /* when it last saw an event, or was assigned */
    int caught_up;
} wm_part_t;

typedef struct watermark {
    wm_part_t *v;
    size_t n, cap;
    int64_t lateness_ms;
    int64_t idle_timeout_ms;
    int64_t value;         /* last computed, WM_NONE at first */
} watermark_t;

void wm_init(watermark_t *w, int64_t lateness_ms, int64_t idle_timeout_ms);
void wm_free(watermark_t *w);
/* Track a newly assigned partition (stream time restarts unknown). */
int wm_assign(watermark_t *w, const char *topic, int32_t partition,
              int64_t wall_ms);
void wm_revoke(watermark_t *w, const char *topic, int32_t partition);
/* An event of this partition with event time ts_ms arrived at wall_ms. */
void wm_observe(watermark_t *w, const char *topic, int32_t partition,
                int64_t ts_ms, int64_t wall_ms);
void wm_set_caught_up(watermark_t *w, const char *topic, int32_t partition,
                      int caught_up);
/* Recompute at wall_ms; returns the (non-decreasing) watermark. */
int64_t wm_compute(watermark_t *w, int64_t wall_ms);
/* Is this partition currently idle (at wall_ms)? */
int wm_is_idle(const watermark_t *w, const wm_part_t *p, int64_t wall_ms);

#endif
