/*
 * kafka_out.c - publishing alerts and dead letters. An idempotent producer
 * (acks=all) whose delivery reports arrive on the loop through the main
 * queue's io-event pipe. Every produced message counts as "in flight" until
 * acknowledged; the batch that caused it commits only when nothing is in
 * flight (pipeline_commit). A failed delivery is never dropped: it is kept
 * and produced again after a back-off, and the batch waits for it, which
 * is how losing the broker pauses consumption rather than losing alerts.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/log.h"
#include "internal.h"

#define RETRY_BACKOFF_MS 250
#define RETRY_BACKOFF_MAX_MS 5000

struct pending_msg {
    pending_msg_t *next;
    char *topic;
    void *key;
    size_t key_len;
    void *val;
    size_t val_len;
    rd_kafka_headers_t *hdrs; /* owned, NULL when none */
    int64_t origin_ms;        /* kout_produce_timed's, -1 none */
};

static void pending_free(pending_msg_t *p) {
    if (!p) return;
    free(p->topic);
    free(p->key);
    free(p->val);
    if (p->hdrs) rd_kafka_headers_destroy(p->hdrs);
    free(p);
}

static pending_msg_t *pending_new(const char *topic, const void *key,
                                  size_t key_len, const void *val,
                                  size_t val_len,
                                  const rd_kafka_headers_t *hdrs,
                                  int64_t origin_ms) {
    pending_msg_t *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->origin_ms = origin_ms;
    p->topic = strdup(topic);
    p->key = key_len ? malloc(key_len) : NULL;
    p->val = val_len ? malloc(val_len) : NULL;
    if (!p->topic || (key_len && !p->key) || (val_len && !p->val)) {
        pending_free(p);
        return NULL;
    }
    if (key_len) memcpy(p->key, key, key_len);
    if (val_len) memcpy(p->val, val, val_len);
    p->key_len = key_len;
    p->val_len = val_len;
    p->hdrs = hdrs ? rd_kafka_headers_copy(hdrs) : NULL;
    return p;
}

/* One attempt. Returns 0 when librdkafka took the message (hdrs consumed),
 * 1 when it should be retried later (hdrs still ours), <0 fatal. */
static int produce_once(daemon_t *d, const char *topic, const void *key,
                        size_t key_len, const void *val, size_t val_len,
                        rd_kafka_headers_t *hdrs, int64_t origin_ms) {
    /* The origin rides along as the message's opaque, back to dr_msg_cb. */
    rd_kafka_resp_err_t e = rd_kafka_producev(
        d->producer, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_KEY((void *)key, key_len),
        RD_KAFKA_V_VALUE((void *)val, val_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE((void *)(intptr_t)origin_ms), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    if (e == RD_KAFKA_RESP_ERR__FATAL) return -1;
    LOG(LOG_WARN, "producer", "produce refused; will retry",
        LF_STR("topic", topic), LF_STR("error", rd_kafka_err2str(e)));
    return 1;
}

static void on_retry_timer(uv_timer_t *t);

static void arm_retry(daemon_t *d) {
    if (!uv_is_active((uv_handle_t *)&d->retry_timer) && !d->closed)
        uv_timer_start(&d->retry_timer, on_retry_timer,
                       d->retry_backoff_ms ? d->retry_backoff_ms : RETRY_BACKOFF_MS, 0);
}

static void on_retry_timer(uv_timer_t *t) {
    daemon_t *d = t->data;
    pending_msg_t *list = d->retry_head;
    d->retry_head = NULL;
    int failed = 0;
    while (list) {
        pending_msg_t *p = list;
        list = p->next;
        p->next = NULL;
        if (d->close_scheduled) { /* fatal: drop, it replays on restart */
            pending_free(p);
            continue;
        }
        rd_kafka_headers_t *h = p->hdrs;
        int rc = produce_once(d, p->topic, p->key, p->key_len, p->val,
                              p->val_len, h, p->origin_ms);
        if (rc == 0) {
            p->hdrs = NULL; /* librdkafka owns them now */
            pending_free(p);
        } else if (rc < 0) {
            pending_free(p);
            daemon_fatal(d, EXIT_KAFKA, "producer",
                         "the idempotent producer hit a fatal error");
        } else {
            p->next = d->retry_head;
            d->retry_head = p;
            failed = 1;
        }
    }
    if (failed) {
        /* 0 until a first delivery succeeds: start from the base step, or
         * the back-off never grows (a missing topic was retried every
         * 250 ms forever). */
        uint64_t cur = d->retry_backoff_ms ? d->retry_backoff_ms : RETRY_BACKOFF_MS;
        d->retry_backoff_ms = cur * 2 > RETRY_BACKOFF_MAX_MS ? RETRY_BACKOFF_MAX_MS
                                                             : cur * 2;
    }
    if (d->retry_head) arm_retry(d);
}

int kout_produce(daemon_t *d, const char *topic, const void *key,
                 size_t key_len, const void *val, size_t val_len,
                 rd_kafka_headers_t *hdrs) {
    return kout_produce_timed(d, topic, key, key_len, val, val_len, hdrs, -1);
}

int kout_produce_timed(daemon_t *d, const char *topic, const void *key,
                       size_t key_len, const void *val, size_t val_len,
                       rd_kafka_headers_t *hdrs, int64_t origin_ms) {
    d->inflight++;
    int rc = produce_once(d, topic, key, key_len, val, val_len, hdrs,
                          origin_ms);
    if (rc == 0) return 0;
    if (rc < 0) {
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        daemon_fatal(d, EXIT_KAFKA, "producer",
                     "the idempotent producer hit a fatal error");
        return CHURN_EKAFKA;
    }
    pending_msg_t *p = pending_new(topic, key, key_len, val, val_len, NULL,
                                   origin_ms);
    if (!p) {
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        daemon_fatal(d, EXIT_KAFKA, "producer", "out of memory");
        return CHURN_ENOMEM;
    }
    p->hdrs = hdrs; /* still ours: producev refused it */
    p->next = d->retry_head;
    d->retry_head = p;
    arm_retry(d);
    return 0;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                      void *opaque) {
    (void)rk;
    daemon_t *d = opaque;
    int64_t origin_ms = (int64_t)(intptr_t)m->_private;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (d->inflight > 0) d->inflight--;
        d->retry_backoff_ms = RETRY_BACKOFF_MS;
        if (origin_ms > 0) {
            int64_t ms = daemon_wall_ms() - origin_ms;
            prom_hist_observe(&d->stats.h_alert, ms > 0 ? ms / 1000.0 : 0.0);
        }
        return;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    d->stats.n_produce_retries++;
    LOG(LOG_WARN, "producer", "delivery failed; the batch waits and it is sent again",
        LF_STR("topic", topic), LF_INT("partition", m->partition),
        LF_STR("error", rd_kafka_err2str(m->err)));
    if (d->close_scheduled) return;
    rd_kafka_headers_t *h = NULL;
    (void)rd_kafka_message_headers(m, &h);
    pending_msg_t *p = pending_new(topic, m->key, m->key_len, m->payload,
                                   m->len, h, origin_ms);
    if (!p) {
        daemon_fatal(d, EXIT_KAFKA, "producer", "out of memory");
        return;
    }
    p->next = d->retry_head;
    d->retry_head = p;
    arm_retry(d);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
    daemon_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        LOG(LOG_ERROR, "producer", "fatal error", LF_STR("error", buf));
        daemon_fatal(d, EXIT_KAFKA, "producer",
                     "the idempotent producer hit a fatal error");
        return;
    }
    LOG(LOG_WARN, "producer", "kafka error",
        LF_STR("error", rd_kafka_err2str((rd_kafka_resp_err_t)err)),
        LF_STR("reason", reason));
}

static void on_producer_readable(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    daemon_t *d = h->data;
    kqueue_watch_drain(&d->out_watch);
    if (d->closed) return;
    while (rd_kafka_poll(d->producer, 0) > 0) {
    }
    if (d->phase == PHASE_AWAITING && d->inflight == 0 && !d->close_scheduled)
        pipeline_commit(d);
}

int kout_start(daemon_t *d, churn_err_t *err) {
    rd_kafka_conf_t *conf = kafka_conf_from_config(d->cfg, KAFKA_PRODUCER, err);
    if (!conf) return CHURN_EINVAL;
    /* The delivery guarantee rests on these: not overridable. */
    static const char *const forced[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
    };
    for (size_t i = 0; i < CHURN_ARRAY_LEN(forced); i++) {
        const char *user = config_get_kafka(d->cfg, forced[i][0]);
        if (user && strcmp(user, forced[i][1]) != 0)
            LOG(LOG_WARN, "producer", "overriding a kafka property churnd relies on",
                LF_STR("property", forced[i][0]), LF_STR("set", user),
                LF_STR("used", forced[i][1]));
        if (kafka_conf_set(conf, forced[i][0], forced[i][1], err)) {
            rd_kafka_conf_destroy(conf);
            return CHURN_EINVAL;
        }
    }
    if (!config_get_kafka(d->cfg, "linger.ms") &&
        kafka_conf_set(conf, "linger.ms", "2", err)) {
        rd_kafka_conf_destroy(conf);
        return CHURN_EINVAL;
    }
    if (kafka_conf_set(conf, "client.id", "churnd-producer", err)) {
        rd_kafka_conf_destroy(conf);
        return CHURN_EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, d);
    char errstr[512];
    d->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!d->producer) {
        rd_kafka_conf_destroy(conf);
        return churn_err_set(err, CHURN_EINVAL, "producer: %s", errstr);
    }
    if (rd_kafka_set_log_queue(d->producer, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR)
        LOG0(LOG_WARN, "producer", "cannot route librdkafka logs to the loop");
    return kqueue_watch_start(d, &d->out_watch,
                              rd_kafka_queue_get_main(d->producer),
                              on_producer_readable, err);
}

void kout_destroy(daemon_t *d, int flush_ms) {
    if (!d->producer) return;
    if (flush_ms > 0) {
        rd_kafka_resp_err_t e = rd_kafka_flush(d->producer, flush_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            LOG(LOG_WARN, "producer", "not every message was flushed",
                LF_STR("error", rd_kafka_err2str(e)));
    } else {
        rd_kafka_purge(d->producer,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    }
    /* Serve what is left (delivery reports of purged messages) so the
     * handle can be destroyed without callbacks into a closing daemon. */
    d->close_scheduled = 1;
    rd_kafka_poll(d->producer, 0);
    kqueue_watch_stop(&d->out_watch);
    rd_kafka_destroy(d->producer);
    d->producer = NULL;
    while (d->retry_head) {
        pending_msg_t *p = d->retry_head;
        d->retry_head = p->next;
        pending_free(p);
    }
}
