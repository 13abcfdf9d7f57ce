/*
 * loop.c - the daemon's lifecycle on one libuv loop: start-up in a fixed
 * order (embedded broker, rules, state, producer, consumer), signals
 * through uv_signal (SIGTERM/SIGINT drain, SIGHUP reloads rules), the wiring
 * of librdkafka queues into the loop, and the two ways out: a drain that
 * commits what it holds, or a fatal stop that commits nothing.
 *
 * Why io-event pipes and not rd_kafka_poll on a timer: librdkafka writes a
 * byte to the pipe when an op lands on an empty queue, so the loop sleeps
 * until there is work and wakes within microseconds when there is. Because
 * the byte is only written on the empty->non-empty edge, whoever stops
 * serving a queue early (a full batch) must come back to it without waiting
 * for a new wake-up: pipeline_commit() calls kin_pump() for that reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "churnd/log.h"
#include "internal.h"

/* `every` ticks the daemon looks ahead after each wake-up of a client
 * (engine_opts.lookahead_ticks), as replay does (REPLAY_LOOKAHEAD_TICKS):
 * a client whose daily ticks change nothing is woken about yearly, or at
 * the first tick that changes something. The look-ahead steps over the
 * ticks whose answer is known to stay, so a year costs a few evaluations
 * per rule (at most 32). What makes it exact in a daemon, whose rule set
 * and memory do not last, is processor_set_live (pipeline_init). */
#define DAEMON_LOOKAHEAD_TICKS 366

int64_t daemon_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                  const char *buf) {
    log_level_t lvl = level <= 3 ? LOG_ERROR : level <= 4 ? LOG_WARN
                      : level <= 6 ? LOG_INFO : LOG_DEBUG;
    LOG(lvl, "librdkafka", buf, LF_STR("client", rd_kafka_name(rk)),
        LF_STR("facility", fac));
}

int kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v,
                   churn_err_t *err) {
    char errstr[512];
    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        return churn_err_set(err, CHURN_EINVAL, "kafka.%s: %s", k, errstr);
    return 0;
}

/* Which client a librdkafka property is for, as librdkafka's own property
 * table says (rd_kafka_conf_properties_show, the text of its
 * CONFIGURATION.md): 'C' consumer, 'P' producer, '*' both; '*' too for a
 * name the table lacks, which rd_kafka_conf_set then judges. */
static char prop_scope(const char *table, const char *key) {
    size_t klen = strlen(key);
    for (const char *line = table; line && *line;) {
        const char *eol = strchr(line, '\n');
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            const char *bar = memchr(line, '|', eol ? (size_t)(eol - line) : strlen(line));
            if (!bar) return '*';
            const char *c = bar + 1;
            while (*c == ' ') c++;
            if ((*c == 'C' || *c == 'P') && c[1] == ' ') return *c;
            return '*';
        }
        line = eol ? eol + 1 : NULL;
    }
    return '*';
}

rd_kafka_conf_t *kafka_conf_from_config(const config_t *cfg, char role,
                                        churn_err_t *err) {
    /* A property of the other client is left out: librdkafka would ignore
     * it there anyway, with a CONFWARN line at every start. */
    char *table = NULL;
    size_t table_len = 0;
    FILE *f = open_memstream(&table, &table_len);
    if (!f) {
        churn_err_set(err, CHURN_ENOMEM, "out of memory");
        return NULL;
    }
    rd_kafka_conf_properties_show(f);
    if (fclose(f) != 0) {
        free(table);
        churn_err_set(err, CHURN_ENOMEM, "out of memory");
        return NULL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; i < cfg->n_kafka; i++) {
        /* No log line may carry a secret, whoever wrote it: librdkafka's
         * own errors and logs included. */
        if (config_is_secret(cfg->kafka[i].key)) log_add_secret(cfg->kafka[i].val);
        char scope = prop_scope(table, cfg->kafka[i].key);
        if (scope != '*' && scope != role) continue;
        if (kafka_conf_set(conf, cfg->kafka[i].key, cfg->kafka[i].val, err)) {
            rd_kafka_conf_destroy(conf);
            free(table);
            return NULL;
        }
    }
    free(table);
    /* librdkafka's own log lines go through our logger, served on the
     * loop (log.queue) rather than from its internal threads. */
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    if (kafka_conf_set(conf, "log.queue", "true", err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}

int kqueue_watch_start(daemon_t *d, kqueue_watch_t *w, rd_kafka_queue_t *q,
                       uv_poll_cb cb, churn_err_t *err) {
    if (pipe(w->fds) != 0)
        return churn_err_set(err, CHURN_EIO, "pipe: %s", strerror(errno));
    set_nonblock(w->fds[0]);
    set_nonblock(w->fds[1]);
    w->queue = q;
    rd_kafka_queue_io_event_enable(q, w->fds[1], "1", 1);
    int rc = uv_poll_init(d->loop, &w->poll, w->fds[0]);
    if (rc == 0) rc = uv_poll_start(&w->poll, UV_READABLE, cb);
    if (rc != 0)
        return churn_err_set(err, CHURN_EIO, "uv_poll: %s", uv_strerror(rc));
    w->poll.data = d;
    w->poll_active = 1;
    return 0;
}

void kqueue_watch_drain(kqueue_watch_t *w) {
    char tmp[256];
    while (read(w->fds[0], tmp, sizeof(tmp)) > 0) {
    }
}

static void close_noop(uv_handle_t *h) { (void)h; }

static void close_handle(uv_handle_t *h) {
    if (h->loop && !uv_is_closing(h)) uv_close(h, close_noop);
}

void kqueue_watch_stop(kqueue_watch_t *w) {
    if (w->queue) {
        rd_kafka_queue_io_event_enable(w->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(w->queue);
        w->queue = NULL;
    }
    if (w->poll_active) {
        close_handle((uv_handle_t *)&w->poll);
        w->poll_active = 0;
    }
}

static void close_fds(kqueue_watch_t *w) {
    for (int i = 0; i < 2; i++) {
        if (w->fds[i] >= 0) close(w->fds[i]);
        w->fds[i] = -1;
    }
}

static void stop_handles(daemon_t *d) {
    close_handle((uv_handle_t *)&d->sig_term);
    close_handle((uv_handle_t *)&d->sig_int);
    close_handle((uv_handle_t *)&d->sig_hup);
    close_handle((uv_handle_t *)&d->batch_timer);
    close_handle((uv_handle_t *)&d->retry_timer);
    close_handle((uv_handle_t *)&d->shutdown_timer);
    close_handle((uv_handle_t *)&d->close_timer);
    close_handle((uv_handle_t *)&d->pump_timer);
    close_handle((uv_handle_t *)&d->wm_timer);
    notify_close(&d->notify);
}

static void print_summary(daemon_t *d) {
    uint64_t invalid = 0;
    for (int i = 1; i < EVENT__N; i++) invalid += d->stats.n_invalid[i];
    LOG(LOG_INFO, "daemon", "stopped", LF_INT("consumed", d->stats.n_consumed),
        LF_INT("timers_fired", d->stats.n_timers_fired),
        LF_INT("applied", d->stats.n_applied),
        LF_INT("duplicates", d->stats.n_duplicate),
        LF_INT("ignored", d->stats.n_ignored), LF_INT("invalid", invalid),
        LF_INT("held", d->stats.n_held), LF_INT("late", d->stats.n_late),
        LF_INT("alerts", d->stats.n_alerts),
        LF_INT("batches", d->stats.n_batches),
        LF_INT("exit_code", d->exit_code));
}

static void release_all(daemon_t *d, int clean) {
    if (d->closed) return;
    d->closed = 1;
    stop_handles(d);
    http_stop(d);
    /* A clean close leaves the group (revoking through the rebalance
     * callback) and flushes the producer; a fatal one does neither. */
    kin_destroy(d, clean);
    kout_destroy(d, clean ? 5000 : 0);
    kqueue_watch_stop(&d->in_watch);
    kqueue_watch_stop(&d->out_watch);
    close_fds(&d->in_watch);
    close_fds(&d->out_watch);
    pipeline_free(d);
    if (d->store) store_close(d->store);
    d->store = NULL;
    if (d->rules) ruleset_free(d->rules);
    if (d->rules_next) ruleset_free(d->rules_next);
    d->rules = d->rules_next = NULL;
    churn_errs_free(&d->reload_errs);
    broker_stop(d);
    print_summary(d);
}

static void on_close_timer(uv_timer_t *t) {
    daemon_t *d = t->data;
    release_all(d, d->close_clean);
}

/* Closing destroys the Kafka handles, which must never happen inside one
 * of their own callbacks: it runs from a zero-delay timer instead. */
static void schedule_close(daemon_t *d, int clean) {
    if (d->close_scheduled) return;
    d->close_scheduled = 1;
    d->close_clean = clean;
    uv_timer_start(&d->close_timer, on_close_timer, 0, 0);
}

void daemon_close(daemon_t *d) {
    LOG0(LOG_INFO, "daemon", "drained: leaving the group and closing state");
    schedule_close(d, 1);
}

void daemon_fatal(daemon_t *d, int code, const char *component,
                  const char *what) {
    if (d->close_scheduled && d->exit_code) return;
    LOG(LOG_FATAL, component, what, LF_INT("exit_code", code),
        LF_STR("hint", "nothing uncommitted was kept; it replays on restart"));
    char status[NOTIFY_STATUS_MAX];
    snprintf(status, sizeof(status), "stopping on a fatal error (exit %d): %s",
             code, what);
    notify_stopping(&d->notify, status);
    d->exit_code = code;
    d->close_scheduled = 0; /* a fatal error overrides a clean close */
    schedule_close(d, 0);
}

static void on_shutdown_timeout(uv_timer_t *t) {
    daemon_t *d = t->data;
    daemon_fatal(d, EXIT_DRAIN, "daemon",
                 "shutdown.timeout passed before the batch in hand was "
                 "acknowledged and committed");
}

static void begin_drain(daemon_t *d, const char *why) {
    if (d->stopping || d->close_scheduled) return;
    d->stopping = 1;
    d->drain_deadline_ms = daemon_wall_ms() + d->cfg->shutdown_timeout_ms;
    LOG(LOG_INFO, "daemon", "draining", LF_STR("signal", why),
        LF_INT("batch_events", d->n_msgs), LF_INT("in_flight", d->inflight));
    char status[NOTIFY_STATUS_MAX];
    snprintf(status, sizeof(status),
             "draining after %s: committing the batch in hand, then leaving the group",
             why);
    notify_stopping(&d->notify, status);
    uv_timer_start(&d->shutdown_timer, on_shutdown_timeout,
                   (uint64_t)d->cfg->shutdown_timeout_ms, 0);
    if (d->phase == PHASE_COLLECTING) {
        if (d->n_msgs > 0)
            pipeline_process(d); /* commits now or once acknowledged */
        else
            daemon_close(d);
    }
    /* AWAITING: pipeline_commit() sees `stopping` and closes. */
}

static void log_rule_errors(const churn_errs_t *errs) {
    char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
    for (size_t i = 0; i < errs->n; i++)
        LOG(LOG_ERROR, "rules", "invalid rules file",
            LF_STR("error", churn_err_str(&errs->v[i], line, sizeof(line))));
}

/* The STATUS= line systemctl status shows while the daemon runs. */
static void running_status(const daemon_t *d, const char *note, char *out,
                           size_t n) {
    snprintf(out, n, "running: %zu rules (hash %s) from %s%s%s",
             d->rules ? ruleset_n_rules(d->rules) : (size_t)0,
             d->rules ? ruleset_hash(d->rules) : "-", d->cfg->rules_dir,
             note ? "; " : "", note ? note : "");
}

int daemon_reload_rules(daemon_t *d) {
    char status[NOTIFY_STATUS_MAX];
    notify_reloading(&d->notify);
    churn_errs_free(&d->reload_errs);
    churn_errs_init(&d->reload_errs);
    d->reload_at_ms = daemon_wall_ms();
    ruleset_t *rs = NULL;
    int rc = ruleset_load_dir(d->cfg->rules_dir, &rs, &d->reload_errs);
    if (rc != 0) {
        log_rule_errors(&d->reload_errs);
        LOG(LOG_ERROR, "rules", "reload rejected; the previous rule set keeps running",
            LF_STR("result", "failed"), LF_STR("dir", d->cfg->rules_dir),
            LF_INT("errors", d->reload_errs.n),
            LF_STR("hash", d->rules ? ruleset_hash(d->rules) : ""));
        d->stats.n_reloads_failed++;
        d->stats.reload_failed = 1;
        char note[64];
        snprintf(note, sizeof(note), "last reload rejected (%zu errors)",
                 d->reload_errs.n);
        running_status(d, note, status, sizeof(status));
        notify_reloaded(&d->notify, status);
        return CHURN_EINVAL;
    }
    d->stats.n_reloads_ok++;
    d->stats.reload_failed = 0;
    d->stats.reload_ok_ms = daemon_wall_ms();
    LOG(LOG_INFO, "rules", "reloaded", LF_STR("result", "ok"),
        LF_STR("dir", d->cfg->rules_dir),
        LF_INT("rules", ruleset_n_rules(rs)), LF_STR("hash", ruleset_hash(rs)));
    /* A batch being acknowledged was evaluated under the old set; it
     * commits first, then the new set takes over (pipeline_commit). */
    if (d->rules_next) ruleset_free(d->rules_next);
    if (d->phase == PHASE_AWAITING) {
        d->rules_next = rs;
        d->rules_next_loaded_ms = d->reload_at_ms;
        char note[160];
        snprintf(note, sizeof(note),
                 "reloaded set (hash %s) takes over when the batch in hand commits",
                 ruleset_hash(rs));
        running_status(d, note, status, sizeof(status));
        notify_reloaded(&d->notify, status);
        return 1;
    }
    if (pipeline_settle_rules(d) < 0) {
        ruleset_free(rs);
        return CHURN_EIO;
    }
    ruleset_free(d->rules);
    d->rules = rs;
    d->rules_next = NULL;
    d->rules_loaded_ms = d->reload_at_ms;
    pipeline_set_rules(d);
    running_status(d, NULL, status, sizeof(status));
    notify_reloaded(&d->notify, status);
    return 0;
}

static void on_signal(uv_signal_t *s, int signum) {
    daemon_t *d = s->data;
    if (signum == SIGHUP)
        (void)daemon_reload_rules(d); /* the outcome is logged */
    else
        begin_drain(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int start_signal(daemon_t *d, uv_signal_t *s, int signum) {
    int rc = uv_signal_init(d->loop, s);
    if (rc == 0) rc = uv_signal_start(s, on_signal, signum);
    s->data = d;
    return rc;
}

static int load_rules_at_start(daemon_t *d) {
    churn_errs_t errs;
    churn_errs_init(&errs);
    int rc = ruleset_load_dir(d->cfg->rules_dir, &d->rules, &errs);
    if (rc != 0) {
        log_rule_errors(&errs);
        LOG(LOG_FATAL, "rules", "cannot start: the rules directory is invalid",
            LF_STR("dir", d->cfg->rules_dir), LF_INT("errors", errs.n));
    } else {
        d->rules_loaded_ms = daemon_wall_ms();
        d->stats.reload_ok_ms = d->rules_loaded_ms;
        LOG(LOG_INFO, "rules", "loaded", LF_STR("dir", d->cfg->rules_dir),
            LF_INT("rules", ruleset_n_rules(d->rules)),
            LF_INT("features", ruleset_n_features(d->rules)),
            LF_STR("hash", ruleset_hash(d->rules)));
    }
    churn_errs_free(&errs);
    return rc;
}

int daemon_run(config_t *cfg, int embedded_broker) {
    uv_loop_t loop;
    daemon_t d;
    memset(&d, 0, sizeof(d));
    d.in_watch.fds[0] = d.in_watch.fds[1] = -1;
    d.out_watch.fds[0] = d.out_watch.fds[1] = -1;
    d.cfg = cfg;
    d.loop = &loop;
    d.engine_opts.dedup_window_ms = cfg->dedup_window_ms;
    d.engine_opts.dedup_max_ids = (unsigned)cfg->dedup_max_ids;
    d.engine_opts.ledger = cfg->state_ledger;
    d.engine_opts.lookahead_ticks = DAEMON_LOOKAHEAD_TICKS;
    if (metrics_init(&d) != 0) {
        LOG0(LOG_FATAL, "daemon", "out of memory");
        metrics_free(&d);
        return EXIT_USAGE;
    }
    if (uv_loop_init(&loop) != 0) {
        LOG0(LOG_FATAL, "daemon", "cannot create the event loop");
        metrics_free(&d);
        return EXIT_USAGE;
    }
    /* Notifications are a courtesy to the supervisor: without the timer,
     * READY=1 and the watchdog are off, the daemon still runs. */
    int nrc = notify_init(&d.notify, &loop);
    if (nrc != 0)
        LOG(LOG_WARN, "notify", "no readiness or watchdog notifications",
            LF_STR("error", uv_strerror(nrc)));
    uv_timer_init(&loop, &d.batch_timer);
    uv_timer_init(&loop, &d.retry_timer);
    uv_timer_init(&loop, &d.shutdown_timer);
    uv_timer_init(&loop, &d.close_timer);
    uv_timer_init(&loop, &d.pump_timer);
    uv_timer_init(&loop, &d.wm_timer);
    d.wm_timer.data = &d;
    d.pump_timer.data = &d;
    d.batch_timer.data = d.retry_timer.data = d.shutdown_timer.data = &d;
    d.close_timer.data = &d;

    churn_err_t err = {0};
    int code = EXIT_OK;
    /* Signals first: a SIGTERM during start-up (opening a large state
     * directory can take a while) must become a drain on the loop's first
     * turn, not the default action that kills the process. */
    if (start_signal(&d, &d.sig_term, SIGTERM) ||
        start_signal(&d, &d.sig_int, SIGINT) ||
        start_signal(&d, &d.sig_hup, SIGHUP)) {
        LOG0(LOG_FATAL, "daemon", "cannot install signal handlers");
        code = EXIT_USAGE;
    } else if (http_start(&d, &err) != 0) {
        /* Before everything else, so /healthz answers as soon as the loop
         * runs and /readyz says what start-up is still waiting for. */
        LOG(LOG_FATAL, "http", "cannot listen", LF_STR("listen", cfg->http_listen),
            LF_STR("error", err.msg));
        code = EXIT_USAGE;
    } else if (embedded_broker && broker_start(&d, &err) != 0) {
        LOG(LOG_FATAL, "broker", "cannot start the embedded broker",
            LF_STR("error", err.msg));
        code = EXIT_KAFKA;
    } else if (load_rules_at_start(&d) != 0) {
        code = EXIT_USAGE;
    } else {
        store_opts_t so = {
            .dir = cfg->state_dir,
            .mode = STORE_READ_WRITE,
            .block_cache_bytes = (size_t)cfg->block_cache_bytes,
            .sync = cfg->state_sync,
        };
        if (store_open(&so, &d.store, &err) != 0) {
            LOG(LOG_FATAL, "state", "cannot open the state directory",
                LF_STR("dir", cfg->state_dir), LF_STR("error", err.msg));
            code = EXIT_STATE;
        } else if (pipeline_init(&d, &err) != 0) {
            LOG(LOG_FATAL, "daemon", "cannot start", LF_STR("error", err.msg));
            code = EXIT_USAGE;
        } else if (kout_start(&d, &err) != 0 || kin_start(&d, &err) != 0) {
            LOG(LOG_FATAL, "kafka", "cannot start Kafka clients",
                LF_STR("error", err.msg));
            code = err.code == CHURN_EINVAL ? EXIT_USAGE : EXIT_KAFKA;
        }
    }
    if (code != EXIT_OK) {
        d.exit_code = code;
        release_all(&d, 0);
    } else {
        LOG(LOG_INFO, "daemon", "started", LF_STR("group", cfg->group_id),
            LF_STR("state", cfg->state_dir),
            LF_STR("alerts_topic", cfg->alerts_topic),
            LF_STR("deadletter_topic", cfg->deadletter_topic));
        /* Rules loaded, state open, Kafka clients made: READY=1 goes out
         * on the loop's first turn. */
        char status[NOTIFY_STATUS_MAX];
        running_status(&d, NULL, status, sizeof(status));
        notify_start(&d.notify, status);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!d.closed) { /* the loop ran dry without a close: should not happen */
        d.exit_code = d.exit_code ? d.exit_code : EXIT_KAFKA;
        release_all(&d, 0);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&loop) != 0)
        LOG0(LOG_WARN, "daemon", "event loop closed with handles still open");
    metrics_free(&d);
    return d.exit_code;
}
