/*
 * kafka_in.c - the consumer group member. Offsets are managed by churnd,
 * not by the group: on assignment each partition starts right after the
 * offset stored in RocksDB with the state it produced (or per
 * auto.offset.reset when this state directory has never seen it). Offsets
 * are committed to the group only after RocksDB, for lag tools.
 *
 * Rebalances, errors and messages are served only while collecting a
 * batch: a batch being acknowledged never sees its partitions move under
 * it. Revoked partitions lose their unevaluated messages (they were never
 * stored, so the next owner reads them again) and their cached clients.
 */
#include <stdlib.h>
#include <string.h>

#include "churnd/log.h"
#include "internal.h"

static int64_t start_offset_for_new(const config_t *cfg) {
    const char *r = config_get_kafka(cfg, "auto.offset.reset");
    if (r && (!strcmp(r, "latest") || !strcmp(r, "largest") ||
              !strcmp(r, "end")))
        return RD_KAFKA_OFFSET_END;
    return RD_KAFKA_OFFSET_BEGINNING;
}

static void on_assign(daemon_t *d, rd_kafka_topic_partition_list_t *parts) {
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t next = 0;
        churn_err_t err = {0};
        int rc = store_get_offset(d->store, p->topic, p->partition, &next, &err);
        if (rc == 0) {
            p->offset = next;
        } else if (rc == CHURN_ENOTFOUND) {
            p->offset = start_offset_for_new(d->cfg);
        } else {
            daemon_fatal(d, EXIT_STATE, "state", err.msg);
            return;
        }
        LOG(LOG_INFO, "consumer", "partition assigned", LF_STR("topic", p->topic),
            LF_INT("partition", p->partition),
            LF_STR("from", rc == 0 ? "stored offset" : "auto.offset.reset"),
            LF_INT("offset", rc == 0 ? next : p->offset));
        /* Where consumption starts: until a first message is consumed,
         * the consumer's position is unknown, and this is what says
         * whether the partition is caught up (pipeline.c). */
        rd_kafka_topic_partition_list_add(d->assigned, p->topic, p->partition)
            ->offset = p->offset;
    }
}

/* Tell the group where churnd's state resumes each partition it has an
 * offset for: a batch commits only the partitions it read from, so without
 * this a new group (or one whose last commit was lost between RocksDB and
 * the broker) would show lag on quiet partitions until they get a message,
 * and lag tools would say churnd is behind when it is not. Asynchronous: a
 * failure only leaves the group's figure as it was, and is logged. */
static void commit_stored(rd_kafka_t *rk,
                          const rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].offset >= 0)
            rd_kafka_topic_partition_list_add(l, parts->elems[i].topic,
                                              parts->elems[i].partition)
                ->offset = parts->elems[i].offset;
    if (l->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 1);
        if (e)
            LOG(LOG_WARN, "consumer", "group offset commit refused",
                LF_STR("error", rd_kafka_err2str(e)), LF_INT("partitions", l->cnt));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* How often a failed group offset commit is tried again. */
#define GROUP_RETRY_MS 1000

static void list_remove(rd_kafka_topic_partition_list_t *l, const char *topic,
                        int32_t partition) {
    (void)rd_kafka_topic_partition_list_del(l, topic, partition);
}

/* "crm.events[0,1],helpdesk.events[0]" (truncated with "..."): which
 * partitions one rebalance moved, for its log line. */
static void parts_text(const rd_kafka_topic_partition_list_t *l, char *out,
                       size_t size) {
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < l->cnt && n < size; i++) {
        const char *t = l->elems[i].topic;
        int same = i > 0 && !strcmp(l->elems[i - 1].topic, t);
        int r = same ? snprintf(out + n, size - n, ",%d", (int)l->elems[i].partition)
                     : snprintf(out + n, size - n, "%s%s[%d", i ? "]," : "", t,
                                (int)l->elems[i].partition);
        if (r < 0) break;
        n += (size_t)r;
    }
    if (n < size && l->cnt) n += (size_t)snprintf(out + n, size - n, "]");
    if (n >= size && size > 4) memcpy(out + size - 4, "...", 4);
}

static void rebalance_apply(daemon_t *d, rd_kafka_t *rk,
                            rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts) {
    int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    char moved[512];
    parts_text(parts, moved, sizeof(moved));
    LOG(LOG_INFO, "consumer", "rebalance",
        LF_STR("event", err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assign"
                                                                   : "revoke"),
        LF_STR("protocol", rd_kafka_rebalance_protocol(rk)),
        LF_INT("count", parts->cnt), LF_STR("partitions", moved),
        LF_INT("assigned_before", d->assigned ? d->assigned->cnt : 0));
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(d, parts);
        pipeline_assign(d, parts);
        if (coop)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            re = rd_kafka_assign(rk, parts);
        if (!e && !re) commit_stored(rk, parts);
    } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            LOG(LOG_WARN, "consumer", "rebalance error",
                LF_STR("error", rd_kafka_err2str(err)));
        pipeline_revoke(d, parts);
        for (int i = 0; i < parts->cnt; i++) {
            LOG(LOG_INFO, "consumer", "partition revoked",
                LF_STR("topic", parts->elems[i].topic),
                LF_INT("partition", parts->elems[i].partition));
            list_remove(d->assigned, parts->elems[i].topic,
                        parts->elems[i].partition);
            /* A failed group commit is the next owner's to make now. */
            list_remove(d->group_retry, parts->elems[i].topic,
                        parts->elems[i].partition);
        }
        if (coop)
            e = rd_kafka_incremental_unassign(rk, parts);
        else
            re = rd_kafka_assign(rk, NULL);
    }
    if (e) {
        LOG(LOG_ERROR, "consumer", "assignment failed",
            LF_STR("error", rd_kafka_error_string(e)), LF_STR("partitions", moved));
        rd_kafka_error_destroy(e);
    } else if (re) {
        LOG(LOG_ERROR, "consumer", "assignment failed",
            LF_STR("error", rd_kafka_err2str(re)), LF_STR("partitions", moved));
    }
}

/* A rebalance served while a batch awaits its acknowledgements (the
 * batch may take more events meanwhile, pipeline_may_continue) waits for
 * that batch's commit: the partitions it touched are not given up with
 * uncommitted state, and new ones join at a batch boundary. librdkafka
 * lets the (un)assign come after the callback, within the session. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    daemon_t *d = opaque;
    if (d->phase == PHASE_AWAITING && !d->close_scheduled && !d->closed &&
        !d->rebalance_parts) {
        d->rebalance_parts = rd_kafka_topic_partition_list_copy(parts);
        d->rebalance_err = err;
        LOG(LOG_INFO, "consumer", "rebalance waits for the batch in hand to commit",
            LF_INT("in_flight", d->inflight));
        return;
    }
    rebalance_apply(d, rk, err, parts);
}

void kin_rebalance_deferred(daemon_t *d) {
    rd_kafka_topic_partition_list_t *parts = d->rebalance_parts;
    if (!parts) return;
    d->rebalance_parts = NULL;
    if (d->consumer) rebalance_apply(d, d->consumer, d->rebalance_err, parts);
    rd_kafka_topic_partition_list_destroy(parts);
}

static void consumer_error_cb(rd_kafka_t *rk, int err, const char *reason,
                              void *opaque) {
    daemon_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        LOG(LOG_ERROR, "consumer", "fatal error", LF_STR("error", buf));
        daemon_fatal(d, EXIT_KAFKA, "consumer", "the consumer hit a fatal error");
        return;
    }
    /* Transport errors while the broker is away are expected: librdkafka
     * reconnects by itself and consumption resumes. */
    LOG(LOG_WARN, "consumer", "kafka error",
        LF_STR("error", rd_kafka_err2str((rd_kafka_resp_err_t)err)),
        LF_STR("reason", reason));
}

/* The group's offsets only mirror RocksDB's, for lag tools; a commit that
 * failed (the coordinator was away, say) is kept and retried, or the group
 * would show lag on a quiet partition until its next event. */
static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets,
                             void *opaque) {
    (void)rk;
    daemon_t *d = opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        LOG(LOG_WARN, "consumer",
            "group offset commit failed (state and offsets are safe in RocksDB)",
            LF_STR("error", rd_kafka_err2str(err)));
    if (!offsets || !d->group_retry) return;
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &offsets->elems[i];
        rd_kafka_resp_err_t e = p->err ? p->err : err;
        if (p->offset < 0 || e == RD_KAFKA_RESP_ERR__NO_OFFSET) continue;
        rd_kafka_topic_partition_t *r = rd_kafka_topic_partition_list_find(
            d->group_retry, p->topic, p->partition);
        if (!e) { /* the group has it: an older failure is moot */
            if (r && r->offset <= p->offset)
                list_remove(d->group_retry, p->topic, p->partition);
            continue;
        }
        /* Only partitions churnd still owns; the newest offset wins. */
        if (!rd_kafka_topic_partition_list_find(d->assigned, p->topic,
                                                p->partition))
            continue;
        if (!r)
            r = rd_kafka_topic_partition_list_add(d->group_retry, p->topic,
                                                  p->partition);
        else if (r->offset >= p->offset)
            continue;
        r->offset = p->offset;
    }
}

void kin_group_superseded(daemon_t *d,
                          const rd_kafka_topic_partition_list_t *offs) {
    for (int i = 0; i < offs->cnt; i++)
        list_remove(d->group_retry, offs->elems[i].topic,
                    offs->elems[i].partition);
}

void kin_retry_group(daemon_t *d) {
    if (!d->consumer || d->group_retry->cnt == 0) return;
    uint64_t now = uv_now(d->loop);
    if (d->group_retry_ms && now - d->group_retry_ms < GROUP_RETRY_MS) return;
    d->group_retry_ms = now;
    /* The callback says how it went; the list stays until it succeeds. */
    rd_kafka_resp_err_t e = rd_kafka_commit(d->consumer, d->group_retry, 1);
    if (e)
        LOG(LOG_WARN, "consumer", "group offset commit refused",
            LF_STR("error", rd_kafka_err2str(e)),
            LF_INT("partitions", d->group_retry->cnt));
}

static void on_batch_timer(uv_timer_t *t) {
    daemon_t *d = t->data;
    d->batch_timer_armed = 0;
    if ((d->phase == PHASE_COLLECTING || pipeline_may_continue(d)) &&
        d->n_msgs > 0 && !d->close_scheduled)
        pipeline_process(d);
}

static int push_msg(daemon_t *d, rd_kafka_message_t *m) {
    batch_msg_t *v = churn_grow(d->msgs, d->n_msgs, &d->cap_msgs, sizeof(*v), 256);
    if (!v) return CHURN_ENOMEM;
    d->msgs = v;
    d->msgs[d->n_msgs++].msg = m;
    return 0;
}

static void on_pump_timer(uv_timer_t *t) { kin_pump(t->data); }

/* How long kin_pump yields after a few batches. Not 0: libuv (1.44) runs a
 * timer re-armed with 0 ms from its own callback again in the same timers
 * phase, so as long as there was work the loop never reached its poll
 * phase, and signals, HTTP and delivery reports starved. */
#define PUMP_YIELD_MS 1

/* Take messages while collecting; evaluate each full batch. Batches that
 * commit at once (nothing to acknowledge) continue in this loop rather than
 * recursing through pipeline_commit(); after a few of them the loop yields
 * so signals and delivery reports are served between batches. */
void kin_pump(daemon_t *d) {
    if (d->in_pump || d->close_scheduled || d->closed) return;
    d->in_pump = 1;
    int batches = 0;
    while ((d->phase == PHASE_COLLECTING || pipeline_may_continue(d)) &&
           !d->close_scheduled) {
        size_t max = (size_t)d->cfg->batch_max_events;
        if (d->phase != PHASE_COLLECTING) max -= d->unit_events;
        /* Timer batches and event batches take turns while both have work:
         * after a timer batch the queue is looked at first. Per client the
         * order is kept either way: an event first fires the client's own
         * deadlines up to its time (engine_on_event). */
        if (d->n_msgs == 0 && !d->events_turn && pipeline_fire_timers(d)) {
            d->events_turn = 1;
            if (++batches > 4) {
                uv_timer_start(&d->pump_timer, on_pump_timer, PUMP_YIELD_MS, 0);
                break;
            }
            continue;
        }
        if (d->n_msgs >= max) {
            if (++batches > 4) {
                uv_timer_start(&d->pump_timer, on_pump_timer, PUMP_YIELD_MS, 0);
                break;
            }
            pipeline_process(d);
            continue;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->consumer, 0);
        if (!m) {
            /* Queue empty: a batch in hand goes now when not waiting for
             * more (batch.max_wait 0, or draining). */
            if (d->n_msgs > 0 && (d->cfg->batch_max_ms == 0 || d->stopping)) {
                pipeline_process(d);
                continue;
            }
            if (d->n_msgs == 0 && d->events_turn) {
                d->events_turn = 0; /* no event waits: the timers go on */
                pipeline_timers_alone(d);
                continue;
            }
            break;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                LOG(LOG_WARN, "consumer", "consume error",
                    LF_STR("topic", m->rkt ? rd_kafka_topic_name(m->rkt) : ""),
                    LF_INT("partition", m->partition),
                    LF_INT("offset", m->offset),
                    LF_STR("error", rd_kafka_message_errstr(m)));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (push_msg(d, m) != 0) {
            rd_kafka_message_destroy(m);
            daemon_fatal(d, EXIT_KAFKA, "consumer", "out of memory");
            break;
        }
        d->timer_batch = 0; /* events flow: small timer batches again */
        if (!d->stats.batch_start_ns) d->stats.batch_start_ns = uv_hrtime();
        if (d->n_msgs == 1 && !d->batch_timer_armed) {
            d->batch_timer_armed = 1;
            uv_timer_start(&d->batch_timer, on_batch_timer,
                           (uint64_t)d->cfg->batch_max_ms, 0);
        }
    }
    d->in_pump = 0;
}

static void on_consumer_readable(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    daemon_t *d = h->data;
    kqueue_watch_drain(&d->in_watch);
    kin_pump(d);
}

int kin_start(daemon_t *d, churn_err_t *err) {
    const config_t *cfg = d->cfg;
    rd_kafka_conf_t *conf = kafka_conf_from_config(cfg, KAFKA_CONSUMER, err);
    if (!conf) return CHURN_EINVAL;
    /* churnd owns offsets; these are not overridable. */
    static const char *const forced[][2] = {
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "false"},
    };
    int rc = kafka_conf_set(conf, "group.id", cfg->group_id, err);
    for (size_t i = 0; !rc && i < CHURN_ARRAY_LEN(forced); i++)
        rc = kafka_conf_set(conf, forced[i][0], forced[i][1], err);
    if (!rc && !config_get_kafka(cfg, "partition.assignment.strategy"))
        rc = kafka_conf_set(conf, "partition.assignment.strategy",
                            "cooperative-sticky", err);
    if (!rc && !config_get_kafka(cfg, "client.id"))
        rc = kafka_conf_set(conf, "client.id", "churnd", err);
    /* librdkafka's mock broker answers a fetch that finds nothing only
     * after the whole fetch.wait.max.ms (500 ms by default), even when
     * data arrives meanwhile; a real broker answers as soon as there is
     * some. On the embedded broker a caught-up consumer would thus see
     * each new event up to half a second late. */
    if (!rc && d->mock && !config_get_kafka(cfg, "fetch.wait.max.ms"))
        rc = kafka_conf_set(conf, "fetch.wait.max.ms", "10", err);
    /* librdkafka stops prefetching once the consumer queue holds
     * queued.min.messages (100,000) messages, across all partitions. On a
     * backlog churnd empties that in about a second; whenever the fetches
     * fell behind, the queue ran dry, timer batches took the turn, and the
     * backlog was read interleaved with releases and timers: lag 0 of the
     * daemon bench row took 17-25 s in those runs instead of 8-11 s. The
     * queue stays bounded by queued.max.messages.kbytes (64 MiB). */
    if (!rc && !config_get_kafka(cfg, "queued.min.messages"))
        rc = kafka_conf_set(conf, "queued.min.messages", "1000000", err);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
    rd_kafka_conf_set_opaque(conf, d);
    char errstr[512];
    d->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!d->consumer) {
        rd_kafka_conf_destroy(conf);
        return churn_err_set(err, CHURN_EINVAL, "consumer: %s", errstr);
    }
    d->assigned = rd_kafka_topic_partition_list_new(16);
    d->group_retry = rd_kafka_topic_partition_list_new(8);
    /* Logs, errors and rebalances all arrive on the consumer queue. */
    if (rd_kafka_set_log_queue(d->consumer, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR)
        LOG0(LOG_WARN, "consumer", "cannot route librdkafka logs to the loop");
    rd_kafka_poll_set_consumer(d->consumer);
    rc = kqueue_watch_start(d, &d->in_watch,
                            rd_kafka_queue_get_consumer(d->consumer),
                            on_consumer_readable, err);
    if (rc) return rc;
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new((int)cfg->n_input_topics);
    for (size_t i = 0; i < cfg->n_input_topics; i++)
        rd_kafka_topic_partition_list_add(topics, cfg->input_topics[i],
                                          RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(d->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e)
        return churn_err_set(err, CHURN_EKAFKA, "subscribe: %s",
                             rd_kafka_err2str(e));
    /* Anything already queued before the watch was armed. */
    kin_pump(d);
    return 0;
}

/* Leave the group without blocking for longer than timeout_ms: the close
 * runs in librdkafka's background and its rebalance callbacks are served
 * here until it is done or the time is up (a broker that is gone must not
 * make a drain hang). Returns 0 when closed cleanly. */
static int close_bounded(daemon_t *d, int64_t timeout_ms) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(d->consumer);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(d->consumer, q);
    int rc = 0;
    if (e) {
        LOG(LOG_WARN, "consumer", "leaving the group failed",
            LF_STR("error", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
        rc = -1;
    } else {
        int64_t deadline = daemon_wall_ms() + timeout_ms;
        while (!rd_kafka_consumer_closed(d->consumer)) {
            if (daemon_wall_ms() >= deadline) {
                LOG(LOG_WARN, "consumer",
                    "leaving the group timed out; the broker will expire the member",
                    LF_INT("timeout_ms", timeout_ms));
                rc = -1;
                break;
            }
            /* Messages fetched before the close reach this queue too
             * (the consumer's queue is forwarded to it): taken and
             * dropped here, as the next owner of their partitions reads
             * them again from the committed offsets. A poll that only
             * serves callbacks cannot take them: librdkafka aborts on an
             * event it has no callback for (seen on SIGTERM while events
             * flowed, under valgrind). */
            rd_kafka_message_t *m = rd_kafka_consume_queue(q, 100);
            if (m) rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    return rc;
}

void kin_destroy(daemon_t *d, int leave_group) {
    /* librdkafka waits for a deferred (un)assign before it can revoke
     * for the close */
    kin_rebalance_deferred(d);
    if (!d->consumer) return;
    kqueue_watch_stop(&d->in_watch);
    int closed = 0;
    if (leave_group) {
        /* what is left of shutdown.timeout, at least a second */
        int64_t t = d->drain_deadline_ms - daemon_wall_ms();
        if (!d->stopping || t < 1000) t = 1000;
        closed = close_bounded(d, t) == 0;
    }
    if (closed)
        rd_kafka_destroy(d->consumer);
    else
        rd_kafka_destroy_flags(d->consumer,
                               RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    d->consumer = NULL;
    if (d->assigned) rd_kafka_topic_partition_list_destroy(d->assigned);
    d->assigned = NULL;
    if (d->group_retry) rd_kafka_topic_partition_list_destroy(d->group_retry);
    d->group_retry = NULL;
}
