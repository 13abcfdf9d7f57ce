/*
 * daemon.h - the running daemon: one context owned by main, one libuv loop
 * that owns everything. librdkafka's queues wake the loop through io-event
 * pipes watched by uv_poll, so consumed messages, delivery reports,
 * rebalances and errors all arrive as loop callbacks: no busy polling and
 * no sleeping thread.
 *
 * Processing is in micro-batches, one in flight at a time:
 *   COLLECTING  messages are taken from the consumer queue until it is
 *               empty (then batch.max_wait more, 0 by default) or
 *               batch.max_events are in hand;
 *   AWAITING    the batch was evaluated, its alerts and dead letters are
 *               produced; consumption pauses until every one is acknowledged;
 *   (commit)    one RocksDB WriteBatch holds the batch's client states,
 *               timer-index changes and next offsets; then the offsets are
 *               committed to the group for lag tools, and collecting resumes.
 * A crash anywhere before the WriteBatch replays the batch from the stored
 * offsets against the stored state, so every event counts exactly once and
 * every alert is published at least once with the same alert_id.
 */
#ifndef CHURND_DAEMON_H
#define CHURND_DAEMON_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "churnd/cache.h"
#include "churnd/config.h"
#include "churnd/engine.h"
#include "churnd/notify.h"
#include "churnd/processor.h"
#include "churnd/prom.h"
#include "churnd/store.h"
#include "churnd/watermark.h"

typedef enum batch_phase {
    PHASE_COLLECTING = 0,
    PHASE_AWAITING = 1,
} batch_phase_t;

/* A librdkafka queue wired into the loop. */
typedef struct kqueue_watch {
    rd_kafka_queue_t *queue;
    int fds[2];       /* pipe: librdkafka writes [1], we watch [0] */
    uv_poll_t poll;
    int poll_active;
} kqueue_watch_t;

/* Alerts published for one (rule, severity): names copied, since a reload
 * frees the rule set they came from. */
typedef struct alert_tally {
    char *rule;
    char *severity;
    uint64_t n_firing, n_resolved, n_repeat;
} alert_tally_t;

typedef struct metrics_arrivals metrics_arrivals_t;

/* Counters, exported as metrics (metrics.c) and printed on exit. */
typedef struct daemon_stats {
    uint64_t n_consumed;
    uint64_t n_invalid[EVENT__N];
    uint64_t n_duplicate;
    uint64_t n_ignored;
    uint64_t n_applied;
    uint64_t n_alerts;
    uint64_t n_batches;
    uint64_t n_produce_retries;
    uint64_t n_reloads_ok;
    uint64_t n_reloads_failed;
    uint64_t n_timer_batches;
    uint64_t n_timers_fired;
    uint64_t n_held;        /* reorder buffer: held back on arrival */
    uint64_t n_released;    /* ... and applied once the watermark passed */
    uint64_t n_late;        /* arrived behind the released watermark */
    /* The rest is owned by metrics.c (metrics_init / metrics_free). */
    uint64_t n_deadletters; /* dead letters produced */
    uint64_t *n_consumed_topic; /* per cfg->input_topics entry, or NULL */
    alert_tally_t *alert_tally;
    size_t n_alert_tally, cap_alert_tally;
    int64_t start_ms;       /* wall clock when the daemon started */
    int64_t reload_ok_ms;   /* wall clock of the last successful (re)load */
    int reload_failed;      /* the last reload was rejected */
    uint64_t batch_start_ns;/* uv_hrtime() the batch in hand began; 0 none */
    int64_t alert_origin_ms;/* when the event behind the alerts being
                               published entered Kafka; -1 unknown */
    prom_hist_t h_batch;    /* collect -> commit, seconds */
    prom_hist_t h_eval;     /* processor_event per event, seconds */
    prom_hist_t h_timers;   /* one timer round of processor_fire_timers */
    prom_hist_t h_alert;    /* event in Kafka -> alert acknowledged */
    metrics_arrivals_t *arrivals; /* held events' Kafka times, by origin */
} daemon_stats_t;

/* One consumed message kept until its batch is evaluated. */
typedef struct batch_msg {
    rd_kafka_message_t *msg;
} batch_msg_t;

/* A produced message not yet acknowledged, kept so a failed delivery can
 * be retried: nothing is committed past an unacknowledged alert. */
typedef struct pending_msg pending_msg_t;

typedef struct daemon {
    config_t *cfg;          /* borrowed from main */
    uv_loop_t *loop;        /* borrowed from main */
    int exit_code;          /* what main returns */

    /* Kafka */
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    kqueue_watch_t in_watch;
    kqueue_watch_t out_watch;
    rd_kafka_topic_partition_list_t *assigned;
    /* Offsets stored in RocksDB whose commit to the group failed: retried
     * from the watermark tick until the group has them (kin_retry_group),
     * or until a later batch or a revocation supersedes them. */
    rd_kafka_topic_partition_list_t *group_retry;
    uint64_t group_retry_ms; /* loop time of the last retry */
    void *mock;             /* rd_kafka_mock_cluster_t when embedded */
    rd_kafka_t *mock_rk;

    /* rules and state */
    ruleset_t *rules;
    ruleset_t *rules_next;  /* a reload waiting for the batch to commit */
    int64_t rules_loaded_ms;      /* wall clock: when rules was read */
    int64_t rules_next_loaded_ms; /* ... and rules_next */
    int64_t reload_at_ms;   /* wall clock of the last reload attempt, 0: none */
    churn_errs_t reload_errs; /* why it was rejected (empty: it was not) */
    engine_opts_t engine_opts;
    store_t *store;
    processor_t *proc;      /* states, engine, timer index, commits */
    engine_out_t out;
    buf_t enc;              /* reused alert encoding buffer */

    /* event time (SPEC section 4) */
    watermark_t wm;
    uv_timer_t wm_timer;    /* idle partitions and wall-clock advance */
    uint64_t log_flushed_ms; /* loop time of the last suppressed-lines summary */
    int64_t last_fired_wm;  /* timers fired up to here */
    int timers_more;        /* the last timer batch was cut short */
    int64_t released_wm;    /* held events applied up to here */
    int release_more;       /* the last release batch was cut short */
    int held_at_edge;       /* an event held at exactly released_wm */
    int64_t settled_position; /* consumer position last logged "settled" */

    /* the batch */
    batch_phase_t phase;
    batch_msg_t *msgs;
    size_t n_msgs;
    size_t cap_msgs;
    rd_kafka_topic_partition_list_t *batch_offsets; /* next offsets */
    uint64_t inflight;      /* produced, not yet acknowledged */
    pending_msg_t *retry_head; /* failed deliveries waiting to be resent */
    uv_timer_t batch_timer;
    uv_timer_t retry_timer;
    uint64_t retry_backoff_ms;
    int batch_timer_armed;
    uv_timer_t pump_timer;  /* resumes pumping on the next loop turn */
    int in_pump;
    /* A timer batch just ran: look for waiting events before the next one,
     * so that a burst of due timers (every client's daily tick) does not
     * hold new events back until it is over. */
    int events_turn;
    /* Clients or held events a timer batch may take: 0 for the smallest
     * size; doubled while the timer batches find no event waiting after
     * them (pipeline_timers_alone), back to 0 when an event comes. */
    size_t timer_batch;
    /* Events evaluated since the last commit (0 in a timer batch); an
     * event batch's wait for acknowledgements may take more events into
     * the same commit (pipeline_may_continue). */
    size_t unit_events;
    rd_kafka_topic_partition_list_t *rebalance_parts; /* deferred rebalance */
    rd_kafka_resp_err_t rebalance_err;

    /* lifecycle */
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_signal_t sig_hup;
    uv_timer_t shutdown_timer;
    uv_timer_t close_timer; /* closing is deferred out of librdkafka callbacks */
    int stopping;           /* drain requested */
    int64_t drain_deadline_ms; /* wall clock: the drain must be over by then */
    int close_scheduled;    /* no more processing: closing is under way */
    int close_clean;        /* leave the group and flush (drain), or not (fatal) */
    int closed;
    notify_t notify;        /* READY/WATCHDOG/STOPPING to systemd (notify.c) */
    uint64_t walk_logged_ns; /* a re-index walk's last progress line */

    struct http_server *http; /* /metrics, /healthz, ... (http.c) */

    daemon_stats_t stats;
} daemon_t;

/* Run the daemon until SIGTERM/SIGINT (exit code 0) or a fatal error
 * (non-zero). embedded_broker: start librdkafka's mock cluster in-process
 * first and point the daemon at it. */
int daemon_run(config_t *cfg, int embedded_broker);

/* The embedded broker (broker.c): a mock cluster on loopback with the
 * configured topics created. Prints "bootstrap=<addr>" on stdout. */
int broker_start(daemon_t *d, churn_err_t *err);
void broker_stop(daemon_t *d);

#endif
