/*
 * watermark.c - see watermark.h. A handful of partitions per instance, so
 * a linear array is the simplest structure that is also fast enough.
 */
#include "churnd/watermark.h"

#include <stdlib.h>
#include <string.h>

#include "churnd/common.h"

void wm_init(watermark_t *w, int64_t lateness_ms, int64_t idle_timeout_ms) {
    memset(w, 0, sizeof(*w));
    w->lateness_ms = lateness_ms;
    w->idle_timeout_ms = idle_timeout_ms;
    w->value = WM_NONE;
}

void wm_free(watermark_t *w) {
    for (size_t i = 0; i < w->n; i++) free(w->v[i].topic);
    free(w->v);
    w->v = NULL;
    w->n = w->cap = 0;
}

static wm_part_t *find(const watermark_t *w, const char *topic, int32_t part) {
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i].partition == part && !strcmp(w->v[i].topic, topic))
            return &w->v[i];
    return NULL;
}

int wm_assign(watermark_t *w, const char *topic, int32_t partition,
              int64_t wall_ms) {
    wm_part_t *p = find(w, topic, partition);
    if (!p) {
        if (w->n == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 16;
            wm_part_t *v = realloc(w->v, cap * sizeof(*v));
            if (!v) return CHURN_ENOMEM;
            w->v = v;
            w->cap = cap;
        }
        char *t = strdup(topic);
        if (!t) return CHURN_ENOMEM;
        p = &w->v[w->n++];
        p->topic = t;
        p->partition = partition;
    }
    p->stream_ms = WM_NONE;
    p->last_wall_ms = wall_ms;
    p->caught_up = 0;
    return 0;
}

void wm_revoke(watermark_t *w, const char *topic, int32_t partition) {
    wm_part_t *p = find(w, topic, partition);
    if (!p) return;
    free(p->topic);
    *p = w->v[--w->n];
}

void wm_observe(watermark_t *w, const char *topic, int32_t partition,
                int64_t ts_ms, int64_t wall_ms) {
    wm_part_t *p = find(w, topic, partition);
    if (!p) return;
    if (p->stream_ms == WM_NONE || ts_ms > p->stream_ms) p->stream_ms = ts_ms;
    p->last_wall_ms = wall_ms;
}

void wm_set_caught_up(watermark_t *w, const char *topic, int32_t partition,
                      int caught_up) {
    wm_part_t *p = find(w, topic, partition);
    if (p) p->caught_up = caught_up;
}

int wm_is_idle(const watermark_t *w, const wm_part_t *p, int64_t wall_ms) {
    return p->caught_up && wall_ms - p->last_wall_ms >= w->idle_timeout_ms;
}

static int64_t minus(int64_t t, int64_t d) {
    return t < INT64_MIN + d ? INT64_MIN : t - d;
}

int64_t wm_compute(watermark_t *w, int64_t wall_ms) {
    int64_t low = INT64_MAX;
    size_t active = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wm_part_t *p = &w->v[i];
        if (wm_is_idle(w, p, wall_ms)) continue;
        active++;
        if (p->stream_ms < low) low = p->stream_ms;
    }
    int64_t cand;
    if (w->n == 0)
        cand = WM_NONE;             /* nothing assigned: time stands still */
    else if (active == 0)
        cand = minus(wall_ms, w->lateness_ms);
    else if (low == WM_NONE)
        cand = WM_NONE;             /* an active partition has no time yet */
    else
        cand = minus(low, w->lateness_ms);
    if (cand != WM_NONE && (w->value == WM_NONE || cand > w->value))
        w->value = cand;
    return w->value;
}
