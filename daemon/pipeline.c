/*
 * pipeline.c - one micro-batch from consumed messages to a RocksDB commit.
 *
 * pipeline_process() evaluates every message of the batch in order: parse
 * (bad input becomes a dead letter carrying the original bytes and, in
 * headers, where it came from and why), find the client's state (hot cache,
 * then RocksDB), run the engine, produce the alerts. Nothing is written to
 * RocksDB yet. pipeline_commit() runs once every produced message is
 * acknowledged and writes the dirty client states, timer-index changes and
 * the next offsets in one WriteBatch. The cache never evicts a dirty state,
 * so what it holds is always "RocksDB plus the batch in flight".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/log.h"
#include "internal.h"

static void free_state(void *p) { cstate_free(p); }

int pipeline_init(daemon_t *d, churn_err_t *err) {
    d->cache = cache_new((size_t)d->cfg->cache_clients, free_state);
    d->wb = store_batch_new();
    if (!d->cache || !d->wb)
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    engine_out_init(&d->out);
    buf_init(&d->enc);
    d->batch_offsets = rd_kafka_topic_partition_list_new(16);
    d->retry_backoff_ms = 0;
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
    if (d->cache) cache_free(d->cache);
    d->cache = NULL;
    if (d->wb) store_batch_free(d->wb);
    d->wb = NULL;
    engine_out_free(&d->out);
    buf_free(&d->enc);
    if (d->batch_offsets) rd_kafka_topic_partition_list_destroy(d->batch_offsets);
    d->batch_offsets = NULL;
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
    if (!d->cache) return;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (!part_still_assigned(d, p, parts))
            cache_drop_partition(d->cache, (uint32_t)p);
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

static void dead_letter(daemon_t *d, const rd_kafka_message_t *m,
                        event_reason_t why, const char *detail) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    d->stats.n_invalid[why]++;
    LOG(LOG_WARN, "events", "invalid event sent to the dead-letter topic",
        LF_STR("reason", event_reason_name(why)), LF_STR("detail", detail),
        LF_STR("topic", topic), LF_INT("partition", m->partition),
        LF_INT("offset", m->offset));
    char num[32];
    rd_kafka_headers_t *h = NULL;
    rd_kafka_headers_t *orig = NULL;
    /* Keep the original headers, then add where and why. */
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(6);
    rd_kafka_header_add(h, "churnd.reason", -1, event_reason_name(why), -1);
    rd_kafka_header_add(h, "churnd.detail", -1, detail, -1);
    rd_kafka_header_add(h, "churnd.topic", -1, topic, -1);
    snprintf(num, sizeof(num), "%" PRId32, m->partition);
    rd_kafka_header_add(h, "churnd.partition", -1, num, -1);
    snprintf(num, sizeof(num), "%" PRId64, m->offset);
    rd_kafka_header_add(h, "churnd.offset", -1, num, -1);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    if (ts >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, ts);
        rd_kafka_header_add(h, "churnd.timestamp", -1, num, -1);
    }
    kout_produce(d, d->cfg->deadletter_topic, m->key, m->key_len, m->payload,
                 m->len, h);
}

/* The client's state: hot cache, else RocksDB, else a new one. */
static cstate_t *client_state(daemon_t *d, uint32_t part, const event_t *ev) {
    cstate_t *st = cache_get(d->cache, part, ev->client_id, ev->client_len);
    if (st) return st;
    churn_err_t err = {0};
    int rc = store_get_client(d->store, part, ev->client_id, ev->client_len,
                              &d->enc, &err);
    if (rc == 0) {
        rc = cstate_decode(d->enc.data, d->enc.len, ev->client_id,
                           ev->client_len, &st, &err);
        if (rc != 0) {
            /* Refusing to guess: a record we cannot read stops the daemon
             * rather than being silently replaced by an empty state. */
            char what[CHURN_ERR_MSG_MAX + 128];
            snprintf(what, sizeof(what),
                     "client %s: stored state cannot be decoded: %s",
                     ev->client_id, err.msg);
            daemon_fatal(d, EXIT_STATE, "state", what);
            return NULL;
        }
    } else if (rc == CHURN_ENOTFOUND) {
        st = cstate_new(ev->client_id, ev->client_len);
    } else {
        daemon_fatal(d, EXIT_STATE, "state", err.msg);
        return NULL;
    }
    if (!st || cache_put(d->cache, part, ev->client_id, ev->client_len, st)) {
        if (st) cstate_free(st);
        daemon_fatal(d, EXIT_STATE, "state", "out of memory");
        return NULL;
    }
    return st;
}

/* Keep the timer index entry of this client at its earliest deadline. */
static void reindex_wake(daemon_t *d, uint32_t part, cstate_t *st,
                         const event_t *ev) {
    int64_t next = cstate_next_wake(st, d->rules);
    int64_t old = cstate_indexed_wake(st);
    if (next == old) return;
    if (old != INT64_MAX)
        store_batch_del_timer(d->wb, part, old, ev->client_id, ev->client_len);
    if (next != INT64_MAX)
        store_batch_put_timer(d->wb, part, next, ev->client_id, ev->client_len);
    cstate_set_indexed_wake(st, next);
}

static void publish_alerts(daemon_t *d, const char *client, size_t client_len) {
    int64_t now = daemon_wall_ms();
    for (size_t i = 0; i < d->out.n_alerts; i++) {
        const alert_t *a = &d->out.alerts[i];
        buf_reset(&d->enc);
        if (alert_format_json(a, now, &d->enc) != 0) {
            daemon_fatal(d, EXIT_KAFKA, "alerts", "out of memory");
            return;
        }
        d->stats.n_alerts++;
        LOG(LOG_INFO, "alerts", "alert",
            LF_STR("rule", a->rule), LF_STR("client", a->client_id),
            LF_STR("status", a->status == ALERT_FIRING ? "firing" : "resolved"),
            LF_STR("alert_id", a->alert_id));
        kout_produce(d, d->cfg->alerts_topic, client, client_len, d->enc.data,
                     d->enc.len, NULL);
    }
    engine_out_reset(&d->out);
}

static void process_one(daemon_t *d, const rd_kafka_message_t *m) {
    char detail[256];
    event_t ev;
    d->stats.n_consumed++;
    note_offset(d, m);
    event_reason_t why = event_parse(&d->cfg->event, m->payload, m->len, &ev,
                                     detail, sizeof(detail));
    if (why != EVENT_OK) {
        dead_letter(d, m, why, detail);
        return;
    }
    ev.topic = rd_kafka_topic_name(m->rkt);
    ev.partition = m->partition;
    ev.offset = m->offset;
    if (!ruleset_uses_type(d->rules, ev.type)) {
        d->stats.n_ignored++;
        event_clear(&ev);
        return;
    }
    uint32_t part = (uint32_t)m->partition;
    cstate_t *st = client_state(d, part, &ev);
    if (!st) {
        event_clear(&ev);
        return;
    }
    int rc = engine_on_event(d->rules, &d->engine_opts, st, &ev, &d->out);
    if (rc < 0) {
        event_clear(&ev);
        daemon_fatal(d, EXIT_STATE, "engine", "out of memory");
        return;
    }
    if (rc == ENGINE_DUPLICATE) {
        d->stats.n_duplicate++;
    } else if (rc == ENGINE_IGNORED) {
        d->stats.n_ignored++;
    } else {
        d->stats.n_applied++;
        cache_mark_dirty(d->cache, part, ev.client_id, ev.client_len);
        reindex_wake(d, part, st, &ev);
    }
    publish_alerts(d, ev.client_id, ev.client_len);
    event_clear(&ev);
}

void pipeline_process(daemon_t *d) {
    if (d->phase != PHASE_COLLECTING || d->close_scheduled) return;
    if (d->batch_timer_armed) {
        uv_timer_stop(&d->batch_timer);
        d->batch_timer_armed = 0;
    }
    d->phase = PHASE_AWAITING;
    for (size_t i = 0; i < d->n_msgs && !d->close_scheduled; i++)
        process_one(d, d->msgs[i].msg);
    drop_msgs(d);
    if (d->close_scheduled) return;
    /* Serve delivery reports that are already there, then commit if
     * nothing is left in flight (a batch with no alerts commits now). */
    while (rd_kafka_poll(d->producer, 0) > 0) {
    }
    if (d->inflight == 0 && !d->close_scheduled) pipeline_commit(d);
}

static int put_dirty(void *arg, uint32_t part, const char *client,
                     size_t client_len, void *val) {
    daemon_t *d = arg;
    buf_reset(&d->enc);
    int rc = cstate_encode(val, &d->enc);
    if (rc) return rc;
    store_batch_put_client(d->wb, part, client, client_len, d->enc.data,
                           d->enc.len);
    return 0;
}

void pipeline_commit(daemon_t *d) {
    if (d->phase != PHASE_AWAITING || d->close_scheduled) return;
    int rc = cache_each_dirty(d->cache, put_dirty, d);
    if (rc) {
        daemon_fatal(d, EXIT_STATE, "state", "cannot encode a client state");
        return;
    }
    rd_kafka_topic_partition_list_t *offs = d->batch_offsets;
    for (int i = 0; i < offs->cnt; i++)
        store_batch_put_offset(d->wb, offs->elems[i].topic,
                               offs->elems[i].partition, offs->elems[i].offset);
    churn_err_t err = {0};
    if (store_batch_count(d->wb) > 0 && store_commit(d->store, d->wb, &err)) {
        char what[CHURN_ERR_MSG_MAX + 64];
        snprintf(what, sizeof(what), "cannot write the state directory: %s",
                 err.msg);
        daemon_fatal(d, EXIT_STATE, "state", what);
        return;
    }
    store_batch_clear(d->wb);
    cache_clear_dirty(d->cache);
    cache_evict(d->cache);
    d->stats.n_batches++;
    if (offs->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_commit(d->consumer, offs, 1);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            LOG(LOG_WARN, "consumer", "group offset commit refused",
                LF_STR("error", rd_kafka_err2str(e)));
    }
    rd_kafka_topic_partition_list_destroy(offs);
    d->batch_offsets = rd_kafka_topic_partition_list_new(16);
    d->phase = PHASE_COLLECTING;
    if (d->rules_next) { /* a reload that waited for this batch */
        ruleset_free(d->rules);
        d->rules = d->rules_next;
        d->rules_next = NULL;
    }
    if (d->stopping)
        daemon_close(d);
    else
        kin_pump(d);
}
