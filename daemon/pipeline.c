/*
 * pipeline.c - micro-batches from consumed messages to a RocksDB commit,
 * around the Kafka-free processor (processor.c, shared with replay).
 *
 * pipeline_process() evaluates every message of the batch in order: parse
 * (bad input becomes a dead letter carrying the original bytes and, in
 * headers, where it came from and why), the processor applies the event,
 * alerts are produced. Nothing is written to RocksDB yet. pipeline_commit()
 * runs once every produced message is acknowledged and writes the batch's
 * states, timer-index changes and next offsets in one WriteBatch. While a
 * batch waits for its acknowledgements, the events that arrive are
 * evaluated into it (pipeline_may_continue, up to batch.max_events):
 * their alerts go out at once instead of after the batch's broker round
 * trip and commit, and they commit with the batch or not at all.
 * Rebalances served meanwhile wait for the commit (kafka_in.c).
 *
 * After each commit the watermark is recomputed; when it passed deadlines
 * in the timer index, a timer batch fires them (in deadline order, a
 * bounded number of clients at a time) and goes through the same
 * produce -> acknowledge -> commit cycle, with the offsets of whatever
 * events it took while it waited.
 *
 * Event time, not arrival, decides what rules see (SPEC sections 1, 4): a
 * valid event is not applied on arrival but held in the reorder buffer
 * (processor_hold). When the watermark (slowest non-idle partition minus
 * time.allowed_lateness) advances, the held events it passed are applied
 * in event-time order, before any timer of that watermark fires, so a
 * client's crm and helpdesk events meet in time order: at the end of the
 * event batch that moved it (the events it held itself then never reach
 * the store), and by release batches of their own when the watermark
 * moves between event batches. What stays held is committed with the
 * batch's offsets. An event that arrives behind what
 * was already released is late: it is applied at once (counted, logged,
 * never dropped).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/log.h"
#include "internal.h"

/* A timer batch's size: TIMER_BATCH_CLIENTS while events flow, so that
 * they wait at most one such batch; up to TIMER_BATCH_MAX while only
 * timers have work (a settling backlog, every client's daily tick on a
 * quiet stream), where each batch's fixed costs, a commit and a wait for
 * the broker's acknowledgements, are better shared by more clients. A
 * batch's changed states stay in memory until its commit, about 4 KiB a
 * client with their writes: settling 1,000,000 clients peaked at 200.9
 * MiB with batches of 1,000, 216.8 with up to 4,000, 226.4 with 8,000 and
 * 259.0 with 16,000 (the memory row's target is 256 MiB). */
#define TIMER_BATCH_CLIENTS 1000
#define TIMER_BATCH_MAX 8000
/* The watermark tick: it notices partitions that went idle (so that the
 * watermark may pass their silence) and the wall clock's progress when
 * all are idle. A quarter of time.idle_timeout keeps the delay it adds to
 * an idle transition small next to the timeout itself: with 200 ms, a new
 * event on an otherwise quiet topic was released up to a second late. */
#define WM_TICK_MAX_MS 1000
#define WM_TICK_MIN_MS 10
#define LOG_FLUSH_MS 1000

static uint64_t wm_tick_ms(int64_t idle_timeout_ms) {
    int64_t t = idle_timeout_ms / 4;
    if (t < WM_TICK_MIN_MS) t = WM_TICK_MIN_MS;
    if (t > WM_TICK_MAX_MS) t = WM_TICK_MAX_MS;
    return (uint64_t)t;
}

static void on_wm_timer(uv_timer_t *t);
static long release_passed(daemon_t *d, int64_t w, size_t limit);

/* A walk over every client of a partition (a reload, a start under other
 * rules) holds the loop: the watchdog timer cannot fire meanwhile, so the
 * walk pings for it, and says how far it is every few seconds. */
#define WALK_LOG_EVERY_NS (5 * 1000000000ull)
static void on_walk_progress(void *arg, uint32_t part, size_t done, size_t n) {
    daemon_t *d = arg;
    notify_busy(&d->notify);
    uint64_t now = uv_hrtime();
    if (done == 0) d->walk_logged_ns = now; /* a walk's first call */
    if (now - d->walk_logged_ns < WALK_LOG_EVERY_NS) return;
    d->walk_logged_ns = now;
    LOG(LOG_INFO, "state", "re-indexing the clients' timers",
        LF_INT("partition", part), LF_INT("done", done), LF_INT("clients", n));
}

int pipeline_init(daemon_t *d, churn_err_t *err) {
    d->proc = processor_new(d->store, (size_t)d->cfg->cache_clients,
                            &d->engine_opts);
    if (!d->proc) return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    processor_set_cache_memory(d->proc, (size_t)d->cfg->cache_memory_bytes);
    if (d->engine_opts.lookahead_ticks) processor_set_live(d->proc);
    processor_set_progress(d->proc, on_walk_progress, d);
    processor_set_rules(d->proc, d->rules);
    engine_out_init(&d->out);
    buf_init(&d->enc);
    d->batch_offsets = rd_kafka_topic_partition_list_new(16);
    wm_init(&d->wm, d->cfg->allowed_lateness_ms, d->cfg->idle_timeout_ms);
    d->last_fired_wm = WM_NONE;
    d->released_wm = WM_NONE;
    d->settled_position = -1;
    uint64_t tick = wm_tick_ms(d->cfg->idle_timeout_ms);
    uv_timer_start(&d->wm_timer, on_wm_timer, tick, tick);
    return 0;
}

static void drop_msgs(daemon_t *d) {
    for (size_t i = 0; i < d->n_msgs; i++)
        rd_kafka_message_destroy(d->msgs[i].msg);
    d->n_msgs = 0;
}

void pipeline_free(daemon_t *d) {
    drop_msgs(d);
    free(d->msgs);
    d->msgs = NULL;
    d->cap_msgs = 0;
    processor_free(d->proc);
    d->proc = NULL;
    engine_out_free(&d->out);
    buf_free(&d->enc);
    if (d->batch_offsets) rd_kafka_topic_partition_list_destroy(d->batch_offsets);
    d->batch_offsets = NULL;
    wm_free(&d->wm);
}

void pipeline_set_rules(daemon_t *d) {
    if (d->proc) processor_set_rules(d->proc, d->rules);
}

int pipeline_settle_rules(daemon_t *d) {
    if (!d->proc || !d->assigned) return 0;
    for (int i = 0; i < d->assigned->cnt; i++) {
        int32_t part = d->assigned->elems[i].partition;
        int seen = 0; /* co-partitioned topics share a state partition */
        for (int j = 0; j < i && !seen; j++)
            seen = d->assigned->elems[j].partition == part;
        if (seen) continue;
        churn_err_t err = {0};
        if (processor_settle_partition(d->proc, (uint32_t)part, &err) < 0) {
            daemon_fatal(d, EXIT_STATE, "state", err.msg);
            return -1;
        }
    }
    return 0;
}

/* Is any topic's partition with this number still assigned? State is
 * keyed by partition number, shared by the co-partitioned input topics. */
static int part_still_assigned(daemon_t *d, int32_t part,
                               const rd_kafka_topic_partition_list_t *going) {
    if (!d->assigned) return 0;
    for (int i = 0; i < d->assigned->cnt; i++) {
        const rd_kafka_topic_partition_t *a = &d->assigned->elems[i];
        if (a->partition != part) continue;
        if (!rd_kafka_topic_partition_list_find(going, a->topic, a->partition))
            return 1;
    }
    return 0;
}

void pipeline_assign(daemon_t *d, const rd_kafka_topic_partition_list_t *parts) {
    int64_t now = daemon_wall_ms();
    for (int i = 0; i < parts->cnt; i++) {
        if (wm_assign(&d->wm, parts->elems[i].topic, parts->elems[i].partition, now))
            daemon_fatal(d, EXIT_STATE, "daemon", "out of memory");
        /* for churnd_timers_pending: one scan of the partition's keys */
        churn_err_t err = {0};
        if (d->proc &&
            (processor_count_partition(d->proc, (uint32_t)parts->elems[i].partition,
                                       &err) < 0 ||
             processor_resume_partition(d->proc, (uint32_t)parts->elems[i].partition,
                                        &err) < 0))
            daemon_fatal(d, EXIT_STATE, "state", err.msg);
    }
}

void pipeline_revoke(daemon_t *d, const rd_kafka_topic_partition_list_t *parts) {
    /* Only called while collecting: nothing of these partitions is dirty. */
    size_t w = 0;
    for (size_t i = 0; i < d->n_msgs; i++) {
        rd_kafka_message_t *m = d->msgs[i].msg;
        if (rd_kafka_topic_partition_list_find(
                parts, rd_kafka_topic_name(m->rkt), m->partition))
            rd_kafka_message_destroy(m);
        else
            d->msgs[w++].msg = m;
    }
    d->n_msgs = w;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        wm_revoke(&d->wm, parts->elems[i].topic, p);
        if (d->proc && !part_still_assigned(d, p, parts))
            processor_drop_partition(d->proc, (uint32_t)p);
    }
}

static void note_offset(daemon_t *d, const rd_kafka_message_t *m) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(
        d->batch_offsets, topic, m->partition);
    if (!tp)
        tp = rd_kafka_topic_partition_list_add(d->batch_offsets, topic,
                                               m->partition);
    if (m->offset + 1 > tp->offset || tp->offset < 0) tp->offset = m->offset + 1;
}

/* o: the message as it arrived (its bytes, key and origin); msg: the
 * Kafka message for its headers and timestamp, NULL for a held event
 * (they were not kept). */
static void dead_letter(daemon_t *d, const held_event_t *o,
                        const rd_kafka_message_t *msg, event_reason_t why,
                        const char *detail) {
    d->stats.n_invalid[why]++;
    LOG(LOG_WARN, "events", "invalid event sent to the dead-letter topic",
        LF_STR("reason", event_reason_name(why)), LF_STR("detail", detail),
        LF_STR("topic", o->topic), LF_INT("partition", o->partition),
        LF_INT("offset", o->offset));
    char num[32];
    rd_kafka_headers_t *h = NULL;
    rd_kafka_headers_t *orig = NULL;
    /* Keep the original headers, then add where and why. */
    if (msg &&
        rd_kafka_message_headers(msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(6);
    rd_kafka_header_add(h, "churnd.reason", -1, event_reason_name(why), -1);
    rd_kafka_header_add(h, "churnd.detail", -1, detail, -1);
    rd_kafka_header_add(h, "churnd.topic", -1, o->topic, -1);
    snprintf(num, sizeof(num), "%" PRId32, o->partition);
    rd_kafka_header_add(h, "churnd.partition", -1, num, -1);
    snprintf(num, sizeof(num), "%" PRId64, o->offset);
    rd_kafka_header_add(h, "churnd.offset", -1, num, -1);
    if (msg) {
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(msg, &tstype);
        if (ts >= 0) {
            snprintf(num, sizeof(num), "%" PRId64, ts);
            rd_kafka_header_add(h, "churnd.timestamp", -1, num, -1);
        }
    }
    d->stats.n_deadletters++;
    kout_produce(d, d->cfg->deadletter_topic, o->key, o->key_len, o->payload,
                 o->len, h);
}

static void publish_alerts(daemon_t *d) {
    int64_t now = daemon_wall_ms();
    for (size_t i = 0; i < d->out.n_alerts && !d->close_scheduled; i++) {
        const alert_t *a = &d->out.alerts[i];
        buf_reset(&d->enc);
        if (alert_format_json(a, now, &d->enc) != 0) {
            daemon_fatal(d, EXIT_KAFKA, "alerts", "out of memory");
            break;
        }
        d->stats.n_alerts++;
        metrics_note_alert(d, a);
        LOG(LOG_INFO, "alerts", "alert", LF_STR("rule", a->rule),
            LF_STR("client", a->client_id),
            LF_STR("status", a->status == ALERT_FIRING ? "firing" : "resolved"),
            LF_STR("severity", a->severity), LF_INT("repeat", a->repeat),
            LF_STR("alert_id", a->alert_id));
        kout_produce_timed(d, d->cfg->alerts_topic, a->client_id,
                           strlen(a->client_id), d->enc.data, d->enc.len,
                           NULL, d->stats.alert_origin_ms);
    }
    engine_out_reset(&d->out);
}

/* Apply one parsed event of state partition part; 0 or -1 (fatal, the
 * daemon is closing). */
static int apply_event(daemon_t *d, uint32_t part, const event_t *ev) {
    churn_err_t err = {0};
    uint64_t t0 = uv_hrtime();
    int rc = processor_event(d->proc, part, ev, &d->out, &err);
    prom_hist_observe(&d->stats.h_eval, metrics_seconds(t0, uv_hrtime()));
    if (rc < 0) {
        daemon_fatal(d, EXIT_STATE, "state", err.msg);
        return -1;
    }
    if (rc == ENGINE_DUPLICATE)
        d->stats.n_duplicate++;
    else if (rc == ENGINE_IGNORED)
        d->stats.n_ignored++;
    else
        d->stats.n_applied++;
    publish_alerts(d);
    return 0;
}

static void process_one(daemon_t *d, const rd_kafka_message_t *m) {
    char detail[256];
    event_t ev;
    d->stats.n_consumed++;
    metrics_note_consumed(d, rd_kafka_topic_name(m->rkt));
    note_offset(d, m);
    held_event_t h = {rd_kafka_topic_name(m->rkt), m->partition, m->offset,
                      m->key, m->key_len, m->payload, m->len, 0};
    event_reason_t why = event_parse(&d->cfg->event, m->payload, m->len, &ev,
                                     detail, sizeof(detail));
    if (why != EVENT_OK) {
        dead_letter(d, &h, m, why, detail);
        return;
    }
    ev.topic = h.topic;
    ev.partition = m->partition;
    ev.offset = m->offset;
    wm_observe(&d->wm, ev.topic, m->partition, ev.ts_ms, daemon_wall_ms());
    /* Behind what was released is late; at its very edge is not (events
     * of one second often share a time). */
    if (ev.ts_ms >= d->released_wm) {
        if (ev.ts_ms == d->released_wm) d->held_at_edge = 1;
        h.ts_ms = ev.ts_ms;
        churn_err_t err = {0};
        int rc = processor_hold(d->proc, (uint32_t)m->partition, &h, &ev, &err);
        event_clear(&ev);
        if (rc < 0)
            daemon_fatal(d, EXIT_STATE, "state", err.msg);
        else if (rc == ENGINE_IGNORED)
            d->stats.n_ignored++;
        else {
            d->stats.n_held++;
            metrics_note_arrival(d, h.topic, m->partition, m->offset,
                                 metrics_msg_time_ms(m, daemon_wall_ms()));
        }
        return;
    }
    d->stats.n_late++;
    LOG(LOG_WARN, "events", "late event applied on arrival: its time is "
        "behind the released watermark (raise time.allowed_lateness?)",
        LF_STR("client", ev.client_id), LF_STR("topic", h.topic),
        LF_INT("partition", m->partition), LF_INT("offset", m->offset),
        LF_INT("ts", ev.ts_ms), LF_INT("watermark", d->released_wm));
    d->stats.alert_origin_ms = metrics_msg_time_ms(m, daemon_wall_ms());
    apply_event(d, (uint32_t)m->partition, &ev);
    d->stats.alert_origin_ms = -1;
    event_clear(&ev);
}

/* processor_release's callback: apply a held event, parsing it again
 * unless this batch held it. */
static int release_one(void *arg, uint32_t part, const held_event_t *h,
                       event_t *parsed) {
    daemon_t *d = arg;
    char detail[256];
    event_t ev;
    event_reason_t why = EVENT_OK;
    if (parsed) /* held by this batch: parsed already */
        event_move(&ev, parsed);
    else
        why = event_parse(&d->cfg->event, h->payload, h->len, &ev, detail,
                          sizeof(detail));
    if (why != EVENT_OK) {
        /* Valid when it arrived: only a changed envelope config can do
         * this. Its original headers were not kept. */
        dead_letter(d, h, NULL, why, detail);
        return 0;
    }
    ev.topic = h->topic;
    ev.partition = h->partition;
    ev.offset = h->offset;
    d->stats.n_released++;
    d->stats.alert_origin_ms =
        metrics_take_arrival(d, h->topic, h->partition, h->offset);
    int rc = apply_event(d, part, &ev);
    d->stats.alert_origin_ms = -1;
    event_clear(&ev);
    return rc < 0 ? CHURN_EINVAL : 0;
}

/* The batch is evaluated and produced: commit when nothing is in flight. */
static void settle(daemon_t *d) {
    if (d->close_scheduled) return;
    while (rd_kafka_poll(d->producer, 0) > 0) {
    }
    if (d->inflight == 0 && !d->close_scheduled) pipeline_commit(d);
}

/* May the batch awaiting acknowledgements take more events? Yes, up to
 * batch.max_events, whether it began with events, released held events
 * or fired timers: what arrives meanwhile is evaluated at once and its
 * alerts go out, instead of waiting for a round trip it has no part in
 * (an acknowledgement the broker was slow to give stopped consumption for
 * its whole length, and the watermark then held every partition's events
 * behind it). Events taken into a timer or release batch come after what
 * the batch has done, as they would in a batch of their own. Not when
 * something waits for the commit: a drain, a reload, a rebalance. */
int pipeline_may_continue(const daemon_t *d) {
    return d->phase == PHASE_AWAITING && !d->close_scheduled &&
           !d->stopping && !d->rules_next && !d->rebalance_parts &&
           d->unit_events < (size_t)d->cfg->batch_max_events;
}

void pipeline_process(daemon_t *d) {
    if (d->close_scheduled) return;
    if (d->phase != PHASE_COLLECTING && !pipeline_may_continue(d)) return;
    if (d->batch_timer_armed) {
        uv_timer_stop(&d->batch_timer);
        d->batch_timer_armed = 0;
    }
    d->phase = PHASE_AWAITING;
    d->events_turn = 0; /* the timers' turn next */
    size_t n = d->n_msgs;
    d->unit_events += n;
    for (size_t i = 0; i < n && !d->close_scheduled; i++)
        process_one(d, d->msgs[i].msg);
    drop_msgs(d);
    /* What this batch lets the watermark pass is applied in it: one
     * commit and one wait for acknowledgements per event, not two, and
     * the events released here never reach the store's buffer. As many
     * as the batch brought, at least: with fewer, a live stream that
     * brought a larger batch once (a hiccup) would release less than
     * arrives per batch and fall further behind. */
    if (!d->close_scheduled && d->assigned)
        release_passed(d, wm_compute(&d->wm, daemon_wall_ms()),
                       n > TIMER_BATCH_CLIENTS ? n : TIMER_BATCH_CLIENTS);
    settle(d);
}

/* The i-th assigned partition number, or -1 when an earlier element of
 * the assignment has the same number (co-partitioned topics share state
 * partitions: visit each once). */
static int32_t nth_state_part(const daemon_t *d, int i) {
    int32_t part = d->assigned->elems[i].partition;
    for (int j = 0; j < i; j++)
        if (d->assigned->elems[j].partition == part) return -1;
    return part;
}

/* Release the held events the watermark w passed, at most limit.
 * Returns how many; -1 when fatal. */
static long release_held(daemon_t *d, int64_t w, size_t limit) {
    size_t released = 0;
    int more = 0;
    for (int i = 0; i < d->assigned->cnt && released < limit; i++) {
        int32_t part = nth_state_part(d, i);
        if (part < 0) continue;
        size_t n = 0;
        churn_err_t err = {0};
        int rc = processor_release(d->proc, (uint32_t)part, w, limit - released,
                                   release_one, d, &n, &err);
        if (rc < 0) {
            if (!d->close_scheduled) daemon_fatal(d, EXIT_STATE, "state", err.msg);
            return -1;
        }
        if (rc == 1) more = 1;
        released += n;
    }
    d->release_more = more;
    if (!more) d->released_wm = w;
    return (long)released;
}

/* Release, into the batch at hand, the held events the watermark w
 * passed, at most limit. Returns how many; -1 when fatal. */
static long release_passed(daemon_t *d, int64_t w, size_t limit) {
    if (w == WM_NONE || !(w > d->released_wm || d->release_more || d->held_at_edge))
        return 0;
    d->held_at_edge = 0;
    /* Release up to where the previous, cut-short round aimed at least;
     * never move released_wm backwards. */
    if (w < d->released_wm) w = d->released_wm;
    return release_held(d, w, limit);
}

static size_t timer_limit(const daemon_t *d) {
    return d->timer_batch > TIMER_BATCH_CLIENTS ? d->timer_batch : TIMER_BATCH_CLIENTS;
}

void pipeline_timers_alone(daemon_t *d) {
    size_t n = 2 * timer_limit(d);
    d->timer_batch = n < TIMER_BATCH_MAX ? n : TIMER_BATCH_MAX;
}

/* Fire what the watermark has passed, as a batch of its own, between
 * event batches (kin_pump calls this at every batch boundary): first the
 * held events it passed, then, once none is left, its timers. Returns 1
 * when such a batch was started (and maybe committed already). */
int pipeline_fire_timers(daemon_t *d) {
    if (d->phase != PHASE_COLLECTING || d->close_scheduled || d->stopping ||
        !d->assigned || d->n_msgs > 0)
        return 0;
    int64_t w = wm_compute(&d->wm, daemon_wall_ms());
    if (w == WM_NONE) return 0;
    uint64_t t0 = uv_hrtime();
    d->phase = PHASE_AWAITING;
    /* Rounds of their own take TIMER_BATCH_CLIENTS: rounds of
     * batch.max_events (5,000) made a 1,000,000-event backlog take 19-21 s
     * to lag 0 instead of 11-14 s, their alerts waiting longer for the
     * broker's acknowledgements (4-5 s over the run instead of 1-3 s). */
    size_t limit = timer_limit(d);
    long n = release_passed(d, w, limit);
    if (n < 0) return 1;
    if (n > 0) {
        d->stats.batch_start_ns = t0;
        d->stats.n_timer_batches++;
        LOG(LOG_DEBUG, "timers", "released held events", LF_INT("events", n),
            LF_INT("watermark", w));
        settle(d);
        return 1;
    }
    d->phase = PHASE_COLLECTING;
    /* Timers never run ahead of the events still held. */
    if (w > d->released_wm) w = d->released_wm;
    if (w == WM_NONE || (w <= d->last_fired_wm && !d->timers_more)) return 0;
    size_t fired = 0;
    int more = 0;
    for (int i = 0; i < d->assigned->cnt && fired < limit; i++) {
        int32_t part = nth_state_part(d, i);
        if (part < 0) continue;
        size_t n = 0;
        churn_err_t err = {0};
        int rc = processor_fire_timers(d->proc, (uint32_t)part, w,
                                       limit - fired, &d->out,
                                       &n, &err);
        if (rc < 0) {
            daemon_fatal(d, EXIT_STATE, "state", err.msg);
            return 1;
        }
        if (rc == 1) more = 1;
        fired += n;
    }
    d->timers_more = more;
    if (fired == 0) {
        d->last_fired_wm = w;
        /* With look-ahead the watermark may pass ticks that wake no one;
         * how far it got is written at once all the same, as the states
         * of those ticks would have been without look-ahead. */
        if (!processor_fired_pending(d->proc)) return 0;
        d->phase = PHASE_AWAITING;
        settle(d);
        return 1;
    }
    d->stats.batch_start_ns = t0;
    prom_hist_observe(&d->stats.h_timers, metrics_seconds(t0, uv_hrtime()));
    d->stats.n_timer_batches++;
    d->stats.n_timers_fired += fired;
    LOG(LOG_DEBUG, "timers", "fired", LF_INT("clients", fired),
        LF_INT("watermark", w));
    d->phase = PHASE_AWAITING;
    publish_alerts(d);
    settle(d);
    return 1;
}

/* The next offset to read of the i-th assigned partition: the consumer's
 * position, or, before anything was consumed since the assignment (the
 * position is unknown then), the offset consumption started from; < 0
 * when that is a logical one (beginning or end of the log). Without the
 * fallback, a daemon restarted with nothing new to read never saw its
 * partitions caught up, so held events and timers waited for new input. */
static int64_t next_offset(const daemon_t *d,
                           const rd_kafka_topic_partition_list_t *pos, int i) {
    if (pos->elems[i].offset >= 0) return pos->elems[i].offset;
    return d->assigned->elems[i].offset;
}

/* Which assigned partitions have nothing left to read (for idleness). */
static void update_caught_up(daemon_t *d) {
    if (!d->assigned || !d->consumer) return;
    rd_kafka_topic_partition_list_t *pos =
        rd_kafka_topic_partition_list_copy(d->assigned);
    if (rd_kafka_position(d->consumer, pos) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < pos->cnt; i++) {
            int64_t lo = 0, hi = 0;
            const rd_kafka_topic_partition_t *p = &pos->elems[i];
            if (rd_kafka_get_watermark_offsets(d->consumer, p->topic,
                                               p->partition, &lo, &hi))
                continue;
            int64_t next = next_offset(d, pos, i);
            /* Before the first fetch response the cached offsets are
             * RD_KAFKA_OFFSET_INVALID: unknown is not caught up (else a
             * backlog would count as idle and the watermark would jump to
             * the wall clock, making the whole backlog late). */
            int caught = hi < 0 || lo < 0 ? 0
                         : next >= 0 ? next >= hi : hi <= lo;
            wm_set_caught_up(&d->wm, p->topic, p->partition, caught);
        }
    }
    rd_kafka_topic_partition_list_destroy(pos);
}

/* Sum of the consumer's positions over the assigned partitions, when
 * every one is caught up; -1 otherwise. */
static int64_t caught_up_position(daemon_t *d) {
    int64_t sum = 0;
    for (size_t i = 0; i < d->wm.n; i++)
        if (!d->wm.v[i].caught_up) return -1;
    rd_kafka_topic_partition_list_t *pos =
        rd_kafka_topic_partition_list_copy(d->assigned);
    if (rd_kafka_position(d->consumer, pos) != RD_KAFKA_RESP_ERR_NO_ERROR)
        sum = -1;
    for (int i = 0; sum >= 0 && i < pos->cnt; i++) {
        int64_t next = next_offset(d, pos, i);
        if (next >= 0) sum += next;
    }
    rd_kafka_topic_partition_list_destroy(pos);
    return sum;
}

/* Say once when everything consumed so far has been applied and every
 * timer the watermark passed has fired: nothing more happens until an
 * event arrives or time moves. Tests and the demo wait for this line
 * rather than for consumer lag alone (lag is 0 while events are held). */
static void note_settled(daemon_t *d) {
    if (d->phase != PHASE_COLLECTING || d->n_msgs > 0 || d->inflight > 0 ||
        d->close_scheduled || !d->assigned || d->release_more ||
        d->timers_more)
        return;
    int64_t w = d->wm.value;
    if (w == WM_NONE || w > d->released_wm || w > d->last_fired_wm) return;
    int64_t position = caught_up_position(d);
    if (position < 0 || position == d->settled_position) return;
    for (int i = 0; i < d->assigned->cnt; i++) {
        int32_t part = nth_state_part(d, i);
        if (part < 0) continue;
        int held = 0;
        churn_err_t err = {0};
        if (processor_has_held(d->proc, (uint32_t)part, &held, &err) != 0) {
            daemon_fatal(d, EXIT_STATE, "state", err.msg);
            return;
        }
        if (held) return;
    }
    d->settled_position = position;
    LOG(LOG_INFO, "daemon", "settled", LF_INT("position", position),
        LF_INT("watermark", w), LF_INT("applied", d->stats.n_applied),
        LF_INT("alerts", d->stats.n_alerts));
}

static void on_wm_timer(uv_timer_t *t) {
    daemon_t *d = t->data;
    uint64_t now = uv_now(t->loop);
    if (now - d->log_flushed_ms >= LOG_FLUSH_MS) {
        d->log_flushed_ms = now;
        log_flush_suppressed(); /* sum up floods that stopped */
    }
    if (!d->close_scheduled) kin_retry_group(d);
    if (d->phase != PHASE_COLLECTING || d->n_msgs > 0 || d->close_scheduled)
        return;
    update_caught_up(d);
    kin_pump(d); /* fires what the watermark passed, then consumes */
    note_settled(d);
}

void pipeline_commit(daemon_t *d) {
    if (d->phase != PHASE_AWAITING || d->close_scheduled) return;
    rd_kafka_topic_partition_list_t *offs = d->batch_offsets;
    processor_offset_t stack[64] = {{0}};
    processor_offset_t *po = offs->cnt <= 64 ? stack
                             : malloc((size_t)offs->cnt * sizeof(*po));
    if (!po) {
        daemon_fatal(d, EXIT_STATE, "state", "out of memory");
        return;
    }
    for (int i = 0; i < offs->cnt; i++)
        po[i] = (processor_offset_t){offs->elems[i].topic,
                                     offs->elems[i].partition,
                                     offs->elems[i].offset};
    churn_err_t err = {0};
    int rc = processor_commit(d->proc, po, (size_t)offs->cnt, &err);
    if (po != stack) free(po);
    if (rc) {
        daemon_fatal(d, EXIT_STATE, "state", err.msg); /* names dir and cause */
        return;
    }
    d->stats.n_batches++;
    if (d->stats.batch_start_ns) {
        prom_hist_observe(&d->stats.h_batch,
                          metrics_seconds(d->stats.batch_start_ns, uv_hrtime()));
        d->stats.batch_start_ns = 0;
    }
    if (offs->cnt > 0) {
        kin_group_superseded(d, offs);
        rd_kafka_resp_err_t e = rd_kafka_commit(d->consumer, offs, 1);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            LOG(LOG_WARN, "consumer", "group offset commit refused",
                LF_STR("error", rd_kafka_err2str(e)),
                LF_INT("partitions", offs->cnt));
        rd_kafka_topic_partition_list_destroy(offs);
        d->batch_offsets = rd_kafka_topic_partition_list_new(16);
    }
    d->phase = PHASE_COLLECTING;
    d->unit_events = 0;
    if (d->rules_next) { /* a reload that waited for this batch */
        if (pipeline_settle_rules(d) < 0) return;
        ruleset_free(d->rules);
        d->rules = d->rules_next;
        d->rules_next = NULL;
        d->rules_loaded_ms = d->rules_next_loaded_ms;
        pipeline_set_rules(d);
    }
    kin_rebalance_deferred(d);
    if (d->stopping) {
        /* events taken while acknowledgements were awaited go too */
        if (d->n_msgs > 0) pipeline_process(d);
        else daemon_close(d);
        return;
    }
    kin_pump(d); /* no-op when called from inside kin_pump's loop */
}
