/*
 * internal.h - functions shared by the runtime's own files (loop.c,
 * kafka_in.c, kafka_out.c, pipeline.c, broker.c). Not part of any public
 * header: the pure core never sees these.
 */
#ifndef CHURND_INTERNAL_H
#define CHURND_INTERNAL_H

#include "churnd/daemon.h"

/* The version `churnd version` prints and churnd_build_info carries
 * (a build may set it with -DCHURND_VERSION=...). */
#ifndef CHURND_VERSION
#define CHURND_VERSION "0.1.0"
#endif

/* Exit codes of `churnd run`. */
enum {
    EXIT_OK = 0,
    EXIT_USAGE = 1,    /* bad command line, config or rules */
    EXIT_STATE = 2,    /* RocksDB could not be opened or written */
    EXIT_KAFKA = 3,    /* a fatal Kafka error */
    EXIT_DRAIN = 4,    /* shutdown.timeout passed before the drain finished */
};

/* loop.c */
int kqueue_watch_start(daemon_t *d, kqueue_watch_t *w, rd_kafka_queue_t *q,
                       uv_poll_cb cb, churn_err_t *err);
void kqueue_watch_drain(kqueue_watch_t *w);
void kqueue_watch_stop(kqueue_watch_t *w);
/* Stop at once without committing anything: what is uncommitted replays on
 * the next start, so nothing is lost; the process exits with code. */
void daemon_fatal(daemon_t *d, int code, const char *component,
                  const char *what);
/* The batch committed and draining was requested: leave the group, flush,
 * close RocksDB and let the loop end. */
void daemon_close(daemon_t *d);
int64_t daemon_wall_ms(void);
/* Reload rules.dir (SIGHUP and POST /-/reload). 0: the new set runs now;
 * 1: it is valid and takes over once the batch being acknowledged commits;
 * CHURN_EINVAL: rejected, the old set keeps running and d->reload_errs
 * holds every error. */
int daemon_reload_rules(daemon_t *d);
/* librdkafka log lines into our log module. */
void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                  const char *buf);
/* Build an rd_kafka_conf_t from config's kafka: section for the client of
 * role KAFKA_CONSUMER or KAFKA_PRODUCER: the properties librdkafka knows
 * to be the other client's only are left out. */
#define KAFKA_CONSUMER 'C'
#define KAFKA_PRODUCER 'P'
rd_kafka_conf_t *kafka_conf_from_config(const config_t *cfg, char role,
                                        churn_err_t *err);
int kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v,
                   churn_err_t *err);

/* kafka_in.c */
int kin_start(daemon_t *d, churn_err_t *err);
/* Take messages from the consumer queue while collecting, and while an
 * event batch awaiting acknowledgements may take more. */
void kin_pump(daemon_t *d);
/* Apply the rebalance that waited for a batch to commit, if any. */
void kin_rebalance_deferred(daemon_t *d);
/* A batch commits offs to the group: earlier failed offsets of the same
 * partitions are superseded. */
void kin_group_superseded(daemon_t *d, const rd_kafka_topic_partition_list_t *offs);
/* Commit again the offsets whose commit to the group failed, at most once
 * a second (called from the watermark tick). */
void kin_retry_group(daemon_t *d);
void kin_destroy(daemon_t *d, int leave_group);

/* kafka_out.c */
int kout_start(daemon_t *d, churn_err_t *err);
/* Produce a copy of value to topic; counts as in flight until acked. */
int kout_produce(daemon_t *d, const char *topic, const void *key,
                 size_t key_len, const void *val, size_t val_len,
                 rd_kafka_headers_t *hdrs);
/* The same for an alert whose triggering event entered Kafka at origin_ms
 * (wall clock; < 0 unknown): its acknowledgement is timed from there. */
int kout_produce_timed(daemon_t *d, const char *topic, const void *key,
                       size_t key_len, const void *val, size_t val_len,
                       rd_kafka_headers_t *hdrs, int64_t origin_ms);
void kout_destroy(daemon_t *d, int flush_ms);

/* pipeline.c */
int pipeline_init(daemon_t *d, churn_err_t *err);
void pipeline_free(daemon_t *d);
/* Evaluate the batch in hand (COLLECTING -> AWAITING or commit). */
void pipeline_process(daemon_t *d);
/* 1 while the batch awaiting acknowledgements may take more events. */
int pipeline_may_continue(const daemon_t *d);
/* Fire timers the watermark passed (at a batch boundary); 1 if a timer
 * batch was started. */
int pipeline_fire_timers(daemon_t *d);
/* A timer batch found no event waiting after it: let the next one be
 * larger (daemon_t.timer_batch). */
void pipeline_timers_alone(daemon_t *d);
/* Every produced message of the batch is acknowledged: write the batch. */
void pipeline_commit(daemon_t *d);
/* Partitions were assigned: track their event time. */
void pipeline_assign(daemon_t *d, const rd_kafka_topic_partition_list_t *parts);
/* The rule set changed (d->rules): evaluate with it from now on. */
void pipeline_set_rules(daemon_t *d);
/* Before d->rules is replaced: with look-ahead, index every client of the
 * assigned partitions where it would be without (processor_settle_partition),
 * so that none sleeps past a tick the new set needs. 0, or -1 when fatal
 * (daemon_fatal was called). */
int pipeline_settle_rules(daemon_t *d);
/* Partitions were revoked: forget their uncommitted messages and cache. */
void pipeline_revoke(daemon_t *d,
                     const rd_kafka_topic_partition_list_t *parts);

/* http.c: the HTTP listener on http.listen (routes in http.c's header
 * comment). http_start logs the bound address; http_stop closes the
 * listener and every connection (memory freed in the close callbacks). */
int http_start(daemon_t *d, churn_err_t *err);
void http_stop(daemon_t *d);

/* metrics.c: the Prometheus text exposition of the daemon's figures,
 * appended to out. 0 or CHURN_ENOMEM. Safe on a daemon still starting
 * (no consumer, store or rules yet) and on one where metrics_init failed
 * or was never called. */
int metrics_render(daemon_t *d, buf_t *out);
/* Allocate what the labelled figures need (d->cfg set): 0 or
 * CHURN_ENOMEM. metrics_free releases it; both are idempotent. */
int metrics_init(daemon_t *d);
void metrics_free(daemon_t *d);
/* Count one consumed message of topic (an input topic). */
void metrics_note_consumed(daemon_t *d, const char *topic);
/* Count one published alert by rule, severity and status. */
void metrics_note_alert(daemon_t *d, const alert_t *a);
/* Remember when a held event entered Kafka (wall ms), keyed by where it
 * came from, so the alerts it causes on release can be timed; take it
 * back (and forget it) on release: -1 when not known (evicted by a newer
 * one in its slot, or held before a restart). */
void metrics_note_arrival(daemon_t *d, const char *topic, int32_t partition,
                          int64_t offset, int64_t kafka_ms);
int64_t metrics_take_arrival(daemon_t *d, const char *topic,
                             int32_t partition, int64_t offset);
/* When a consumed message entered Kafka (its timestamp), or now when it
 * has none or one ahead of our clock. */
int64_t metrics_msg_time_ms(const rd_kafka_message_t *m, int64_t now_ms);
/* Seconds between two uv_hrtime() readings. */
double metrics_seconds(uint64_t from_ns, uint64_t to_ns);

#endif
