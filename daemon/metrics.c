/*
 * metrics.c - the daemon's figures in the Prometheus text exposition
 * format (version 0.0.4), rendered on demand for GET /metrics from what
 * the daemon counts as it goes. docs/metrics.md lists every family.
 *
 * What the hot path pays: counters in daemon_stats_t, a string compare
 * against the (few) configured input topics per message, one slot write
 * per held event, two monotonic clock readings and a histogram bucket
 * search per applied event. Nothing there allocates; the per-rule alert
 * table grows only when a (rule, severity) pair is first seen, which the
 * rule set bounds.
 *
 * Rendering runs on the loop thread and never blocks: consumer lag comes
 * from librdkafka's cached watermarks and positions, RocksDB figures from
 * its in-memory properties, process figures from /proc and getrusage.
 * Every part is optional, so a daemon still starting (no consumer, store
 * or rules yet) renders what it has.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "churnd/event.h"
#include "churnd/prom.h"
#include "internal.h"

/* ---- what the pipeline notes ------------------------------------------- */

/* Held events' Kafka times, direct-mapped by origin: a newer event that
 * lands in an occupied slot evicts the older (whose alerts then go
 * untimed), so the table stays a fixed 384 KiB however much is held. */
#define ARRIVAL_SLOTS 16384

typedef struct arrival {
    int64_t offset;
    int64_t kafka_ms;
    int32_t partition;
    int32_t topic; /* input topic index + 1; 0: empty */
} arrival_t;

struct metrics_arrivals {
    arrival_t v[ARRIVAL_SLOTS];
};

static int topic_index(const daemon_t *d, const char *topic) {
    if (!d->cfg || !topic) return -1;
    for (size_t i = 0; i < d->cfg->n_input_topics; i++)
        if (!strcmp(d->cfg->input_topics[i], topic)) return (int)i;
    return -1;
}

int metrics_init(daemon_t *d) {
    daemon_stats_t *s = &d->stats;
    if (!s->start_ms) s->start_ms = daemon_wall_ms();
    s->alert_origin_ms = -1;
    int rc = 0;
    if (!s->h_batch.bounds)
        rc |= prom_hist_init(&s->h_batch, prom_buckets_latency,
                             prom_n_buckets_latency);
    if (!s->h_eval.bounds)
        rc |= prom_hist_init(&s->h_eval, prom_buckets_fast, prom_n_buckets_fast);
    if (!s->h_timers.bounds)
        rc |= prom_hist_init(&s->h_timers, prom_buckets_latency,
                             prom_n_buckets_latency);
    if (!s->h_alert.bounds)
        rc |= prom_hist_init(&s->h_alert, prom_buckets_latency,
                             prom_n_buckets_latency);
    if (rc) return CHURN_EINVAL; /* the bucket tables are wrong */
    if (!s->n_consumed_topic && d->cfg && d->cfg->n_input_topics) {
        s->n_consumed_topic = calloc(d->cfg->n_input_topics, sizeof(uint64_t));
        if (!s->n_consumed_topic) return CHURN_ENOMEM;
    }
    if (!s->arrivals) {
        s->arrivals = calloc(1, sizeof(*s->arrivals));
        if (!s->arrivals) return CHURN_ENOMEM;
    }
    return 0;
}

void metrics_free(daemon_t *d) {
    daemon_stats_t *s = &d->stats;
    free(s->n_consumed_topic);
    s->n_consumed_topic = NULL;
    for (size_t i = 0; i < s->n_alert_tally; i++) {
        free(s->alert_tally[i].rule);
        free(s->alert_tally[i].severity);
    }
    free(s->alert_tally);
    s->alert_tally = NULL;
    s->n_alert_tally = s->cap_alert_tally = 0;
    free(s->arrivals);
    s->arrivals = NULL;
}

void metrics_note_consumed(daemon_t *d, const char *topic) {
    int i = d->stats.n_consumed_topic ? topic_index(d, topic) : -1;
    if (i >= 0) d->stats.n_consumed_topic[i]++;
}

static int str_eq(const char *a, const char *b) {
    return !strcmp(a ? a : "", b ? b : "");
}

void metrics_note_alert(daemon_t *d, const alert_t *a) {
    daemon_stats_t *s = &d->stats;
    alert_tally_t *t = NULL;
    for (size_t i = 0; i < s->n_alert_tally && !t; i++)
        if (str_eq(s->alert_tally[i].rule, a->rule) &&
            str_eq(s->alert_tally[i].severity, a->severity))
            t = &s->alert_tally[i];
    if (!t) {
        if (s->n_alert_tally == s->cap_alert_tally) {
            size_t cap = s->cap_alert_tally ? s->cap_alert_tally * 2 : 16;
            alert_tally_t *v = realloc(s->alert_tally, cap * sizeof(*v));
            if (!v) return; /* only the labelled figure misses it */
            s->alert_tally = v;
            s->cap_alert_tally = cap;
        }
        char *rule = strdup(a->rule ? a->rule : "");
        char *sev = strdup(a->severity ? a->severity : "");
        if (!rule || !sev) {
            free(rule);
            free(sev);
            return;
        }
        t = &s->alert_tally[s->n_alert_tally++];
        *t = (alert_tally_t){.rule = rule, .severity = sev};
    }
    if (a->status == ALERT_RESOLVED)
        t->n_resolved++;
    else if (a->repeat > 0)
        t->n_repeat++;
    else
        t->n_firing++;
}

static arrival_t *arrival_slot(daemon_t *d, int topic, int32_t partition,
                               int64_t offset) {
    uint64_t k[2] = {(uint64_t)offset,
                     ((uint64_t)(uint32_t)topic << 32) | (uint32_t)partition};
    return &d->stats.arrivals->v[churn_hash64(k, sizeof(k), 0) % ARRIVAL_SLOTS];
}

void metrics_note_arrival(daemon_t *d, const char *topic, int32_t partition,
                          int64_t offset, int64_t kafka_ms) {
    int t = d->stats.arrivals ? topic_index(d, topic) : -1;
    if (t < 0) return;
    *arrival_slot(d, t, partition, offset) =
        (arrival_t){offset, kafka_ms, partition, t + 1};
}

int64_t metrics_take_arrival(daemon_t *d, const char *topic,
                             int32_t partition, int64_t offset) {
    int t = d->stats.arrivals ? topic_index(d, topic) : -1;
    if (t < 0) return -1;
    arrival_t *a = arrival_slot(d, t, partition, offset);
    if (a->topic != t + 1 || a->partition != partition || a->offset != offset)
        return -1;
    a->topic = 0;
    return a->kafka_ms;
}

int64_t metrics_msg_time_ms(const rd_kafka_message_t *m, int64_t now_ms) {
    rd_kafka_timestamp_type_t type;
    int64_t ts = rd_kafka_message_timestamp(m, &type);
    return ts > 0 && ts <= now_ms ? ts : now_ms;
}

double metrics_seconds(uint64_t from_ns, uint64_t to_ns) {
    return to_ns > from_ns ? (double)(to_ns - from_ns) / 1e9 : 0.0;
}

/* ---- rendering ----------------------------------------------------------- */

static int sample_u64(buf_t *b, const char *name, uint64_t v) {
    return buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static int sample_dbl(buf_t *b, const char *name, double v) {
    int rc = buf_printf(b, "%s ", name);
    if (!rc) rc = prom_double(b, v);
    if (!rc) rc = buf_putc(b, '\n');
    return rc;
}

static int counter(buf_t *b, const char *name, const char *help, uint64_t v) {
    int rc = prom_family(b, name, "counter", help);
    return rc ? rc : sample_u64(b, name, v);
}

static int gauge(buf_t *b, const char *name, const char *help, double v) {
    int rc = prom_family(b, name, "gauge", help);
    return rc ? rc : sample_dbl(b, name, v);
}

/* name{topic="...",partition="N"} v */
static int part_sample(buf_t *b, const char *name, const char *topic,
                       int32_t partition, double v) {
    int rc = buf_printf(b, "%s{", name);
    if (!rc) rc = prom_label(b, "topic", topic);
    if (!rc) rc = buf_printf(b, ",partition=\"%" PRId32 "\"} ", partition);
    if (!rc) rc = prom_double(b, v);
    if (!rc) rc = buf_putc(b, '\n');
    return rc;
}

static int render_events(daemon_t *d, buf_t *b) {
    const daemon_stats_t *s = &d->stats;
    int rc = prom_family(b, "churnd_events_consumed_total", "counter",
                         "Messages taken from the input topics, by topic.");
    uint64_t known = 0;
    size_t n_topics = d->cfg && s->n_consumed_topic ? d->cfg->n_input_topics : 0;
    for (size_t i = 0; !rc && i < n_topics; i++) {
        known += s->n_consumed_topic[i];
        rc = buf_printf(b, "churnd_events_consumed_total{");
        if (!rc) rc = prom_label(b, "topic", d->cfg->input_topics[i]);
        if (!rc) rc = buf_printf(b, "} %" PRIu64 "\n", s->n_consumed_topic[i]);
    }
    /* Messages of a topic the configuration does not name (a regex
     * subscription), or all of them when the per-topic table is missing. */
    if (!rc && (s->n_consumed > known || !s->n_consumed_topic))
        rc = buf_printf(b, "churnd_events_consumed_total{topic=\"\"} %" PRIu64 "\n",
                        s->n_consumed - known);
    if (!rc)
        rc = prom_family(b, "churnd_events_invalid_total", "counter",
                         "Messages sent to the dead-letter topic, by reason.");
    for (int r = 1; !rc && r < EVENT__N; r++) {
        rc = buf_printf(b, "churnd_events_invalid_total{");
        if (!rc) rc = prom_label(b, "reason", event_reason_name((event_reason_t)r));
        if (!rc) rc = buf_printf(b, "} %" PRIu64 "\n", s->n_invalid[r]);
    }
    if (!rc)
        rc = counter(b, "churnd_events_duplicate_total",
                     "Events whose id the client had already seen within "
                     "event.dedup_window: counted once, applied once.",
                     s->n_duplicate);
    if (!rc)
        rc = counter(b, "churnd_events_ignored_total",
                     "Valid events of a type no feature or rule uses: kept "
                     "out of state.", s->n_ignored);
    if (!rc)
        rc = counter(b, "churnd_events_held_total",
                     "Valid events put in the reorder buffer until the "
                     "watermark passes their time.", s->n_held);
    if (!rc)
        rc = counter(b, "churnd_events_released_total",
                     "Held events applied once the watermark passed them.",
                     s->n_released);
    if (!rc)
        rc = counter(b, "churnd_events_late_total",
                     "Events behind the released watermark, applied on "
                     "arrival.", s->n_late);
    if (!rc)
        rc = counter(b, "churnd_events_applied_total",
                     "Events applied to client state (released or late).",
                     s->n_applied);
    if (!rc)
        rc = counter(b, "churnd_deadletters_total",
                     "Dead letters produced (original bytes, reason in "
                     "headers).", s->n_deadletters);
    return rc;
}

static int tally_line(buf_t *b, const alert_tally_t *t, const char *status,
                      uint64_t v) {
    int rc = buf_printf(b, "churnd_alerts_total{");
    if (!rc) rc = prom_label(b, "rule", t->rule);
    if (!rc) rc = buf_putc(b, ',');
    if (!rc) rc = prom_label(b, "severity", t->severity);
    if (!rc) rc = buf_printf(b, ",status=\"%s\"} %" PRIu64 "\n", status, v);
    return rc;
}

static int render_alerts(daemon_t *d, buf_t *b) {
    const daemon_stats_t *s = &d->stats;
    int rc = prom_family(b, "churnd_alerts_total", "counter",
                         "Alerts published, by rule, severity and status "
                         "(firing, resolved, or repeat: a reminder of a "
                         "firing alert).");
    for (size_t i = 0; !rc && i < s->n_alert_tally; i++) {
        const alert_tally_t *t = &s->alert_tally[i];
        rc = tally_line(b, t, "firing", t->n_firing);
        if (!rc) rc = tally_line(b, t, "resolved", t->n_resolved);
        if (!rc) rc = tally_line(b, t, "repeat", t->n_repeat);
    }
    if (!rc)
        rc = counter(b, "churnd_produce_retries_total",
                     "Deliveries to Kafka that failed and were queued to be "
                     "sent again.", s->n_produce_retries);
    if (!rc)
        rc = gauge(b, "churnd_produce_in_flight",
                   "Alerts and dead letters produced and not yet "
                   "acknowledged.", (double)d->inflight);
    if (!rc)
        rc = counter(b, "churnd_batches_total",
                     "Micro-batches committed to RocksDB (event, release and "
                     "timer batches).", s->n_batches);
    if (!rc)
        rc = counter(b, "churnd_timer_batches_total",
                     "Batches of held-event releases or timer firings.",
                     s->n_timer_batches);
    if (!rc)
        rc = counter(b, "churnd_timers_fired_total",
                     "Clients woken by a due deadline (expectation, for: or "
                     "every: schedule).", s->n_timers_fired);
    return rc;
}

static int render_hists(daemon_t *d, buf_t *b) {
    const daemon_stats_t *s = &d->stats;
    static const struct {
        const char *name, *help;
        size_t off;
    } h[] = {
        {"churnd_batch_duration_seconds",
         "From a batch's first message (or a timer round's start) to its "
         "RocksDB commit, alerts acknowledged in between.",
         offsetof(daemon_stats_t, h_batch)},
        {"churnd_rule_eval_seconds",
         "Time in the processor (state lookup, rule engine, timer index) per "
         "applied event.", offsetof(daemon_stats_t, h_eval)},
        {"churnd_timer_round_seconds",
         "Time in the processor per round of due timers (up to 1000 "
         "clients).", offsetof(daemon_stats_t, h_timers)},
        {"churnd_event_to_alert_seconds",
         "From the Kafka timestamp of the event behind an alert to the "
         "alert's delivery acknowledgement (event-triggered alerts only).",
         offsetof(daemon_stats_t, h_alert)},
    };
    int rc = 0;
    for (size_t i = 0; !rc && i < CHURN_ARRAY_LEN(h); i++) {
        const prom_hist_t *hist =
            (const prom_hist_t *)((const char *)s + h[i].off);
        rc = prom_family(b, h[i].name, "histogram", h[i].help);
        if (!rc) rc = prom_hist_render(hist, b, h[i].name, NULL);
    }
    return rc;
}

/* Lag = high watermark - next offset to read, from librdkafka's cached
 * figures (a fetch response updates them): no broker round trip. */
static int render_lag(daemon_t *d, buf_t *b) {
    int n = d->assigned ? d->assigned->cnt : 0;
    int rc = gauge(b, "churnd_partitions_assigned",
                   "Input partitions assigned to this member.", n);
    if (!rc)
        rc = prom_family(b, "churnd_consumer_lag", "gauge",
                         "Messages of the partition not yet consumed: high "
                         "watermark minus position (cached figures).");
    if (rc || !d->consumer || n == 0) return rc;
    rd_kafka_topic_partition_list_t *pos =
        rd_kafka_topic_partition_list_copy(d->assigned);
    if (!pos) return CHURN_ENOMEM;
    if (rd_kafka_position(d->consumer, pos) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; !rc && i < pos->cnt; i++) {
            const rd_kafka_topic_partition_t *p = &pos->elems[i];
            int64_t lo = -1, hi = -1;
            if (rd_kafka_get_watermark_offsets(d->consumer, p->topic,
                                               p->partition, &lo, &hi) ||
                hi < 0)
                continue;
            int64_t next = p->offset >= 0 ? p->offset : d->assigned->elems[i].offset;
            if (next < 0) /* a logical start: nothing consumed yet */
                next = next == RD_KAFKA_OFFSET_END ? hi : lo;
            if (next < 0) continue;
            rc = part_sample(b, "churnd_consumer_lag", p->topic, p->partition,
                             (double)(hi > next ? hi - next : 0));
        }
    }
    rd_kafka_topic_partition_list_destroy(pos);
    return rc;
}

static int render_time(daemon_t *d, buf_t *b) {
    const watermark_t *w = &d->wm;
    int rc = prom_family(b, "churnd_watermark_seconds", "gauge",
                         "Event time the daemon has reached (slowest non-idle "
                         "partition minus time.allowed_lateness), seconds "
                         "since the epoch.");
    if (!rc && w->value != WM_NONE)
        rc = sample_dbl(b, "churnd_watermark_seconds", (double)w->value / 1000.0);
    if (!rc)
        rc = prom_family(b, "churnd_stream_time_seconds", "gauge",
                         "Largest event time seen on the partition, seconds "
                         "since the epoch.");
    for (size_t i = 0; !rc && i < w->n; i++)
        if (w->v[i].stream_ms != WM_NONE)
            rc = part_sample(b, "churnd_stream_time_seconds", w->v[i].topic,
                             w->v[i].partition, (double)w->v[i].stream_ms / 1000.0);
    if (!rc)
        rc = prom_family(b, "churnd_partition_idle", "gauge",
                         "1 when the partition is caught up and silent for "
                         "time.idle_timeout, so it no longer holds the "
                         "watermark back.");
    int64_t now = daemon_wall_ms();
    for (size_t i = 0; !rc && i < w->n; i++)
        rc = part_sample(b, "churnd_partition_idle", w->v[i].topic,
                         w->v[i].partition, wm_is_idle(w, &w->v[i], now));
    return rc;
}

static int render_state(daemon_t *d, buf_t *b) {
    int rc = 0;
    if (d->store) {
        store_stats_t st;
        store_get_stats(d->store, &st);
        static const struct {
            const char *name, *help;
            size_t off;
        } g[] = {
            {"churnd_state_keys", "RocksDB's estimate of the keys in the state "
             "directory: client states, timer-index entries, offsets and held "
             "events together (rocksdb.estimate-num-keys).",
             offsetof(store_stats_t, estimate_keys)},
            {"churnd_rocksdb_memtable_bytes", "Memory of RocksDB's memtables "
             "(rocksdb.cur-size-all-mem-tables).",
             offsetof(store_stats_t, memtable_bytes)},
            {"churnd_rocksdb_block_cache_bytes", "Memory used by the block "
             "cache (state.block_cache).",
             offsetof(store_stats_t, block_cache_bytes)},
            {"churnd_rocksdb_live_sst_bytes", "Size of the SST files of the "
             "current version (rocksdb.live-sst-files-size).",
             offsetof(store_stats_t, live_sst_bytes)},
            {"churnd_rocksdb_sst_bytes", "Size of every SST file, obsolete "
             "ones not yet deleted included (rocksdb.total-sst-files-size).",
             offsetof(store_stats_t, total_sst_bytes)},
            {"churnd_rocksdb_delayed_write_rate_bytes_per_second", "Rate RocksDB slows "
             "writes to, bytes per second; 0 when not slowed "
             "(rocksdb.actual-delayed-write-rate).",
             offsetof(store_stats_t, delayed_write_rate)},
            {"churnd_rocksdb_write_stopped", "1 when RocksDB stopped writes "
             "until compaction catches up (rocksdb.is-write-stopped).",
             offsetof(store_stats_t, write_stopped)},
            {"churnd_rocksdb_pending_compaction_bytes", "Bytes compaction "
             "estimates it must rewrite "
             "(rocksdb.estimate-pending-compaction-bytes).",
             offsetof(store_stats_t, pending_compaction_bytes)},
            {"churnd_rocksdb_background_errors", "Background flush or "
             "compaction errors since the state was opened.",
             offsetof(store_stats_t, background_errors)},
        };
        for (size_t i = 0; !rc && i < CHURN_ARRAY_LEN(g); i++)
            rc = gauge(b, g[i].name, g[i].help,
                       (double)*(const uint64_t *)((const char *)&st + g[i].off));
    }
    if (!rc && d->proc) {
        processor_stats_t ps;
        processor_get_stats(d->proc, &ps);
        rc = gauge(b, "churnd_cache_clients",
                   "Client states kept decoded in memory.",
                   (double)ps.cached_clients);
        if (!rc)
            rc = gauge(b, "churnd_cache_capacity_clients",
                       "Client states the cache keeps between batches "
                       "(state.cache_clients).", (double)ps.cache_capacity);
        if (!rc)
            rc = gauge(b, "churnd_cache_bytes",
                       "Memory of the cache's own structures, the states "
                       "not included.", (double)ps.cache_bytes);
        if (!rc)
            rc = gauge(b, "churnd_cache_state_bytes",
                       "Memory of the cached client states as weighed against "
                       "state.cache_memory (64 bytes of index each included).",
                       (double)ps.cache_state_bytes);
        if (!rc)
            rc = gauge(b, "churnd_cache_capacity_bytes",
                       "Memory the cached states may take between batches "
                       "(state.cache_memory; 0: no bound).",
                       (double)ps.cache_max_bytes);
        if (!rc)
            rc = counter(b, "churnd_cache_hits_total",
                         "Client states found in the cache.", ps.cache_hits);
        if (!rc)
            rc = counter(b, "churnd_cache_misses_total",
                         "Client states read from RocksDB or created.",
                         ps.cache_misses);
        if (!rc)
            rc = gauge(b, "churnd_timers_pending",
                       "Clients with a pending deadline (expectation, for: or "
                       "every:) in the timer index of the assigned "
                       "partitions.", (double)ps.pending_timers);
        if (!rc)
            rc = gauge(b, "churnd_clients",
                       "Client states in the assigned partitions (exact: kept "
                       "with the states and stored with them).",
                       (double)ps.clients);
        if (!rc)
            rc = prom_family(b, "churnd_expectations", "gauge",
                             "Expectations (expect: features) of the assigned "
                             "partitions' clients still awaiting their event: "
                             "before the deadline (open) or past it (overdue).");
        if (!rc)
            rc = buf_printf(b, "churnd_expectations{state=\"open\"} %" PRIu64 "\n"
                               "churnd_expectations{state=\"overdue\"} %" PRIu64 "\n",
                            ps.open_expectations, ps.overdue_expectations);
        if (!rc)
            rc = counter(b, "churnd_clients_new_total",
                         "Clients with no stored state, seen for the first "
                         "time by this state directory.", ps.new_clients);
    }
    return rc;
}

static int render_rules(daemon_t *d, buf_t *b) {
    const daemon_stats_t *s = &d->stats;
    int rc = gauge(b, "churnd_rules_loaded", "Rules of the running rule set.",
                   d->rules ? (double)ruleset_n_rules(d->rules) : 0);
    if (!rc)
        rc = prom_family(b, "churnd_rules_info", "gauge",
                         "The running rule set's hash (1 while it runs).");
    if (!rc && d->rules) {
        rc = buf_printf(b, "churnd_rules_info{");
        if (!rc) rc = prom_label(b, "hash", ruleset_hash(d->rules));
        if (!rc) rc = buf_printf(b, "} 1\n");
    }
    if (!rc)
        rc = prom_family(b, "churnd_rules_reloads_total", "counter",
                         "Rule reloads (SIGHUP), by result: ok, or failed "
                         "(the previous set kept running).");
    if (!rc)
        rc = buf_printf(b,
                        "churnd_rules_reloads_total{result=\"ok\"} %" PRIu64 "\n"
                        "churnd_rules_reloads_total{result=\"failed\"} %" PRIu64 "\n",
                        s->n_reloads_ok, s->n_reloads_failed);
    if (!rc)
        rc = gauge(b, "churnd_rules_last_reload_successful",
                   "1 when the last load or reload of the rules succeeded.",
                   s->reload_ok_ms > 0 && !s->reload_failed);
    if (!rc)
        rc = prom_family(b, "churnd_rules_last_reload_success_timestamp_seconds",
                         "gauge", "When the running rule set was loaded, "
                         "seconds since the epoch.");
    if (!rc && s->reload_ok_ms > 0)
        rc = sample_dbl(b, "churnd_rules_last_reload_success_timestamp_seconds",
                        (double)s->reload_ok_ms / 1000.0);
    return rc;
}

/* ---- the process (Linux) ------------------------------------------------- */

/* Field 22 of /proc/self/stat (start time in clock ticks since boot) plus
 * /proc/stat's btime; 0 when either cannot be read. */
static double process_start_seconds(void) {
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return 0;
    unsigned long long ticks = 0;
    char *save = NULL;
    int field = 2;
    for (char *t = strtok_r(p + 1, " ", &save); t; t = strtok_r(NULL, " ", &save))
        if (++field == 22) {
            ticks = strtoull(t, NULL, 10);
            break;
        }
    unsigned long long btime = 0;
    f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[256];
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %llu", &btime) == 1) break;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (!btime || !ticks || hz <= 0) return 0;
    return (double)btime + (double)ticks / (double)hz;
}

static int render_process(daemon_t *d, buf_t *b) {
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    int rc = prom_family(b, "process_cpu_seconds_total", "counter",
                         "User and system CPU time spent, in seconds.");
    if (!rc) rc = sample_dbl(b, "process_cpu_seconds_total", cpu);
    unsigned long long vsize = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &vsize, &resident) != 2) vsize = resident = 0;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    if (page < 0) page = 0;
    if (!rc)
        rc = gauge(b, "process_virtual_memory_bytes", "Virtual memory size in "
                   "bytes.", (double)vsize * (double)page);
    if (!rc)
        rc = gauge(b, "process_resident_memory_bytes", "Resident memory size "
                   "in bytes.", (double)resident * (double)page);
    long fds = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        for (struct dirent *e; (e = readdir(dir)) != NULL;)
            if (e->d_name[0] != '.') fds++;
        closedir(dir);
        fds--; /* the directory's own descriptor */
    }
    if (!rc)
        rc = gauge(b, "process_open_fds", "Number of open file descriptors.",
                   (double)(fds > 0 ? fds : 0));
    struct rlimit rl;
    double maxfds = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        maxfds = rl.rlim_cur == RLIM_INFINITY ? 0 : (double)rl.rlim_cur;
    if (!rc)
        rc = gauge(b, "process_max_fds", "Maximum number of open file "
                   "descriptors.", maxfds);
    double start = process_start_seconds();
    if (start <= 0) start = (double)d->stats.start_ms / 1000.0;
    if (!rc)
        rc = gauge(b, "process_start_time_seconds", "Start time of the "
                   "process since the epoch, in seconds.", start);
    return rc;
}

int metrics_render(daemon_t *d, buf_t *out) {
    int rc = prom_family(out, "churnd_build_info", "gauge",
                         "The running churnd's version (always 1).");
    if (!rc) rc = buf_printf(out, "churnd_build_info{");
    if (!rc) rc = prom_label(out, "version", CHURND_VERSION);
    if (!rc) rc = buf_putc(out, ',');
    if (!rc) rc = prom_label(out, "librdkafka", rd_kafka_version_str());
    if (!rc) rc = buf_printf(out, "} 1\n");
    if (!rc) rc = render_events(d, out);
    if (!rc) rc = render_alerts(d, out);
    if (!rc) rc = render_hists(d, out);
    if (!rc) rc = render_lag(d, out);
    if (!rc) rc = render_time(d, out);
    if (!rc) rc = render_state(d, out);
    if (!rc) rc = render_rules(d, out);
    if (!rc) rc = render_process(d, out);
    return rc ? CHURN_ENOMEM : 0;
}
