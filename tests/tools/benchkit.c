/*
 * benchkit - the Kafka side of scripts/bench.sh's daemon, latency, memory
 * and recovery rows. The broker lives in its own process so that a topic
 * can be filled before churnd starts and so that churnd's own numbers
 * (CPU, RSS) do not include the broker's.
 *
 *   benchkit broker -p PARTITIONS TOPIC...
 *       start a librdkafka mock cluster on loopback, create the topics,
 *       print "bootstrap=HOST:PORT" and serve until SIGTERM or SIGINT
 *   benchkit fill -b BOOTSTRAP -t TOPIC FILE
 *       produce every line of FILE keyed by its client_id, wait for every
 *       acknowledgement, then check that the topic holds all of them from
 *       offset 0 (the mock cluster drops the oldest messages of a partition
 *       past about 5 MiB or 100,000 messages: a dropped one fails here)
 *   benchkit latency -b BOOTSTRAP -t TOPIC -a ALERTS_TOPIC [-r RATE]
 *                    [-d SECS] [-w WARMUP_SECS] [-e EVERY]
 *       produce RATE events/s (20000) for SECS (20) with event time = now;
 *       one client in EVERY events (50) gets two meeting.postponed, the
 *       second of which makes meetings_postponed fire at once. Prints
 *       percentiles of produce -> alert arrival for the second
 *       postponements produced after the warm-up (3 s).
 *   benchkit await-alert -b BOOTSTRAP -a ALERTS_TOPIC -i EVENT_ID [-T SECS]
 *       exit 0 once an alert triggered by EVENT_ID is on the topic
 *
 * Exit status: 0 done, 1 bad usage, 2 a Kafka or I/O failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "churnd/broker.h"

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_us(int64_t us) {
    if (us <= 0) return;
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A client with the given properties ("key", "value", ..., NULL); NULL
 * and a message on stderr when librdkafka refuses one. */
static rd_kafka_t *client_new(rd_kafka_type_t type, const char *bootstrap, ...) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int ok = rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                               sizeof(errstr)) == RD_KAFKA_CONF_OK &&
             rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) ==
                 RD_KAFKA_CONF_OK;
    va_list ap;
    va_start(ap, bootstrap);
    const char *k;
    while (ok && (k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        ok = rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) ==
             RD_KAFKA_CONF_OK;
    }
    va_end(ap);
    rd_kafka_t *rk = NULL;
    if (ok) rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "benchkit: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* ---- broker ------------------------------------------------------------ */

static int cmd_broker(int argc, char **argv) {
    int parts = 4;
    int c;
    while ((c = getopt(argc, argv, "p:")) != -1) {
        if (c != 'p') return 1;
        parts = atoi(optarg);
    }
    if (parts < 1 || optind >= argc) {
        fputs("usage: benchkit broker -p PARTITIONS TOPIC...\n", stderr);
        return 1;
    }
    /* Block the stop signals before any librdkafka thread exists, so that
     * only sigwait below ever sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "benchkit: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        fputs("benchkit: cannot create the mock cluster\n", stderr);
        rd_kafka_destroy(rk);
        return 2;
    }
    int rc = 0;
    for (int i = optind; i < argc && rc == 0; i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, argv[i], parts, 1);
        if (e) {
            fprintf(stderr, "benchkit: topic %s: %s\n", argv[i], rd_kafka_err2str(e));
            rc = 2;
        }
    }
    churn_err_t err = {0};
    if (rc == 0 && broker_mock_nodelay(rd_kafka_mock_cluster_bootstraps(mc), &err) < 0) {
        fprintf(stderr, "benchkit: %s\n", err.msg);
        rc = 2;
    }
    if (rc == 0) {
        printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
        fflush(stdout);
        int sig;
        sigwait(&stop, &sig);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- fill -------------------------------------------------------------- */

/* The client id of a gen line: the value of its "client_id" member, found
 * textually (gen writes it flat, without spaces). */
static const char *client_of(const char *line, size_t *len) {
    static const char tag[] = "\"client_id\":\"";
    const char *p = strstr(line, tag);
    if (!p) return NULL;
    p += sizeof(tag) - 1;
    const char *q = strchr(p, '"');
    if (!q) return NULL;
    *len = (size_t)(q - p);
    return p;
}

/* Produce one message, waiting out a full local queue. */
static int produce(rd_kafka_t *rk, rd_kafka_topic_t *t, const char *key,
                   size_t klen, const char *val, size_t vlen) {
    for (;;) {
        if (rd_kafka_produce(t, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                             (void *)val, vlen, key, klen, NULL) == 0)
            return 0;
        if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "benchkit: produce: %s\n",
                    rd_kafka_err2str(rd_kafka_last_error()));
            return -1;
        }
        rd_kafka_poll(rk, 10);
    }
}

/* Sum of the topic's high watermarks, and whether any partition starts
 * past offset 0; -1 on error. */
static int64_t topic_span(rd_kafka_t *rk, const char *topic, int *trimmed) {
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (!t) return -1;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e || md->topic_cnt != 1) {
        if (!e) rd_kafka_metadata_destroy(md);
        return -1;
    }
    int64_t sum = 0;
    *trimmed = 0;
    const rd_kafka_metadata_topic_t *mt = &md->topics[0];
    for (int i = 0; i < mt->partition_cnt && sum >= 0; i++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, mt->partitions[i].id,
                                             &lo, &hi, 10000)) {
            sum = -1;
            break;
        }
        if (lo > 0) *trimmed = 1;
        sum += hi;
    }
    rd_kafka_metadata_destroy(md);
    return sum;
}

static int cmd_fill(int argc, char **argv) {
    const char *bs = NULL, *topic = NULL;
    int c;
    while ((c = getopt(argc, argv, "b:t:")) != -1) {
        switch (c) {
        case 'b': bs = optarg; break;
        case 't': topic = optarg; break;
        default: return 1;
        }
    }
    if (!bs || !topic || optind + 1 != argc) {
        fputs("usage: benchkit fill -b BOOTSTRAP -t TOPIC FILE\n", stderr);
        return 1;
    }
    FILE *f = fopen(argv[optind], "r");
    if (!f) {
        fprintf(stderr, "benchkit: %s: %s\n", argv[optind], strerror(errno));
        return 2;
    }
    rd_kafka_t *rk = client_new(RD_KAFKA_PRODUCER, bs, "linger.ms", "20",
                                "batch.num.messages", "10000",
                                "queue.buffering.max.messages", "500000", NULL);
    if (!rk) {
        fclose(f);
        return 2;
    }
    /* No delivery callback: a message that failed is missing from the
     * topic, which the count after the flush catches. */
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    char *line = NULL; /* owned, grown by getline */
    size_t cap = 0;
    ssize_t len;
    long n = 0;
    int rc = 0;
    int64_t t0 = mono_us();
    while (rc == 0 && (len = getline(&line, &cap, f)) != -1) {
        size_t vlen = (size_t)len;
        if (vlen && line[vlen - 1] == '\n') vlen--;
        if (!vlen) continue;
        size_t klen = 0;
        const char *key = client_of(line, &klen);
        if (produce(rk, t, key, key ? klen : 0, line, vlen) != 0) rc = 2;
        n++;
        if ((n & 1023) == 0) rd_kafka_poll(rk, 0);
    }
    free(line);
    fclose(f);
    if (rc == 0 && rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fputs("benchkit: flush timed out\n", stderr);
        rc = 2;
    }
    double secs = (double)(mono_us() - t0) / 1e6;
    rd_kafka_topic_destroy(t);
    int trimmed = 0;
    int64_t held = rc == 0 ? topic_span(rk, topic, &trimmed) : -1;
    if (rc == 0 && (held < n || trimmed)) {
        fprintf(stderr,
                "benchkit: %s holds %" PRId64 " of %ld messages%s: use more "
                "partitions\n",
                topic, held, n, trimmed ? " (the broker trimmed a partition)" : "");
        rc = 2;
    }
    if (rc == 0) printf("produced %ld seconds %.3f\n", n, secs);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- alerts ------------------------------------------------------------ */

/* The trigger event id of an alert, copied into id (size n); the rule
 * into rule. 0, or -1 when the message is not such an alert. */
static int alert_trigger(const void *val, size_t len, char *id, size_t n,
                         char *rule, size_t rn) {
    cJSON *a = cJSON_ParseWithLength(val, len);
    if (!a) return -1;
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(a, "trigger");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(tr, "event_id");
    const cJSON *ru = cJSON_GetObjectItemCaseSensitive(a, "rule");
    int rc = -1;
    if (cJSON_IsString(ev) && cJSON_IsString(ru)) {
        snprintf(id, n, "%s", ev->valuestring);
        snprintf(rule, rn, "%s", ru->valuestring);
        rc = 0;
    }
    cJSON_Delete(a);
    return rc;
}

/* A reader of every partition of the alerts topic from its beginning.
 * Assigned, not subscribed: a group join waits out the broker's initial
 * rebalance delay (3 s on the mock), which would count in the latencies
 * and in the recovery row's time to the alert. */
static rd_kafka_t *alert_reader(const char *bs, const char *topic) {
    rd_kafka_t *rk = client_new(RD_KAFKA_CONSUMER, bs, "group.id", "benchkit",
                                "enable.auto.commit", "false",
                                "fetch.wait.max.ms", "1", NULL);
    if (!rk) return NULL;
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = t ? rd_kafka_metadata(rk, 0, t, &md, 10000)
                              : rd_kafka_last_error();
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    if (!e && (md->topic_cnt != 1 || md->topics[0].err))
        e = md->topic_cnt == 1 ? md->topics[0].err
                               : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    if (!e) {
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(l, topic,
                                              md->topics[0].partitions[i].id)
                ->offset = RD_KAFKA_OFFSET_BEGINNING;
        e = rd_kafka_assign(rk, l);
    }
    if (md) rd_kafka_metadata_destroy(md);
    if (t) rd_kafka_topic_destroy(t);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        fprintf(stderr, "benchkit: assign %s: %s\n", topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

static int cmd_await_alert(int argc, char **argv) {
    const char *bs = NULL, *topic = NULL, *want = NULL;
    int timeout_s = 60;
    int c;
    while ((c = getopt(argc, argv, "b:a:i:T:")) != -1) {
        switch (c) {
        case 'b': bs = optarg; break;
        case 'a': topic = optarg; break;
        case 'i': want = optarg; break;
        case 'T': timeout_s = atoi(optarg); break;
        default: return 1;
        }
    }
    if (!bs || !topic || !want) {
        fputs("usage: benchkit await-alert -b BOOTSTRAP -a TOPIC -i EVENT_ID [-T SECS]\n",
              stderr);
        return 1;
    }
    rd_kafka_t *rk = alert_reader(bs, topic);
    if (!rk) return 2;
    int64_t deadline = mono_us() + (int64_t)timeout_s * 1000000;
    int rc = 2;
    while (rc != 0 && mono_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        char id[256], rule[128];
        if (!m->err && alert_trigger(m->payload, m->len, id, sizeof(id), rule,
                                     sizeof(rule)) == 0 &&
            strcmp(id, want) == 0)
            rc = 0;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (rc) fprintf(stderr, "benchkit: no alert for %s within %ds\n", want, timeout_s);
    return rc;
}

/* ---- latency ----------------------------------------------------------- */

typedef struct lat_run {
    const char *bs, *alerts;
    char nonce[32];          /* client ids and event ids start with it */
    int64_t *sent_us;        /* owned; by trigger number, 0 = not measured */
    int64_t *got_us;         /* owned; by trigger number, 0 = no alert yet */
    int64_t *sent_ms;        /* owned; the trigger's wall-clock time (its ts) */
    int64_t *made_ms;        /* owned; the alert's CreateTime (set by churnd) */
    long n_triggers;
    atomic_int stop;
    atomic_long n_matched;
    long n_other;            /* alerts of this run not from a trigger */
} lat_run_t;

/* The alert reader: stamps each trigger's first meetings_postponed alert
 * with its arrival time. */
static void *lat_reader(void *arg) {
    lat_run_t *r = arg;
    rd_kafka_t *rk = alert_reader(r->bs, r->alerts);
    if (!rk) {
        atomic_store(&r->stop, 2);
        return NULL;
    }
    size_t nl = strlen(r->nonce);
    while (atomic_load(&r->stop) == 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (!m) continue;
        int64_t now = mono_us();
        char id[256], rule[128];
        if (!m->err && alert_trigger(m->payload, m->len, id, sizeof(id), rule,
                                     sizeof(rule)) == 0 &&
            strncmp(id, r->nonce, nl) == 0) {
            long k = -1;
            if (id[nl] == 't' && strcmp(rule, "meetings_postponed") == 0)
                k = strtol(id + nl + 1, NULL, 10);
            if (k >= 0 && k < r->n_triggers && r->got_us[k] == 0) {
                rd_kafka_timestamp_type_t tt;
                r->got_us[k] = now;
                r->made_ms[k] = rd_kafka_message_timestamp(m, &tt);
                atomic_fetch_add(&r->n_matched, 1);
            } else {
                r->n_other++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct(const int64_t *v, long n, double p) {
    long i = (long)(p * (double)n + 0.999999) - 1;
    if (i < 0) i = 0;
    if (i >= n) i = n - 1;
    return (double)v[i] / 1000.0;
}

static int cmd_latency(int argc, char **argv) {
    lat_run_t r = {0};
    const char *topic = NULL;
    long rate = 20000, every = 50;
    /* The background cycles through its 50,000 clients in 2.5 s at 20,000
     * events/s: until then most events create a state. */
    double secs = 20, warmup = 3;
    int c;
    while ((c = getopt(argc, argv, "b:t:a:r:d:w:e:")) != -1) {
        switch (c) {
        case 'b': r.bs = optarg; break;
        case 't': topic = optarg; break;
        case 'a': r.alerts = optarg; break;
        case 'r': rate = atol(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'e': every = atol(optarg); break;
        default: return 1;
        }
    }
    if (!r.bs || !topic || !r.alerts || rate < 1 || secs <= warmup || every < 2) {
        fputs("usage: benchkit latency -b BOOTSTRAP -t TOPIC -a ALERTS [-r RATE] "
              "[-d SECS] [-w WARMUP] [-e EVERY]\n",
              stderr);
        return 1;
    }
    long n_events = (long)((double)rate * secs);
    r.n_triggers = n_events / every + 1;
    r.sent_us = calloc((size_t)r.n_triggers, sizeof(*r.sent_us));
    r.got_us = calloc((size_t)r.n_triggers, sizeof(*r.got_us));
    r.sent_ms = calloc((size_t)r.n_triggers, sizeof(*r.sent_ms));
    r.made_ms = calloc((size_t)r.n_triggers, sizeof(*r.made_ms));
    snprintf(r.nonce, sizeof(r.nonce), "L%ld%" PRId64 "-", (long)getpid(),
             wall_ms() % 100000);
    rd_kafka_t *rk = client_new(RD_KAFKA_PRODUCER, r.bs, "linger.ms", "1",
                                "queue.buffering.max.messages", "1000000", NULL);
    if (!r.sent_us || !r.got_us || !r.sent_ms || !r.made_ms || !rk) {
        free(r.sent_us);
        free(r.got_us);
        free(r.sent_ms);
        free(r.made_ms);
        if (rk) rd_kafka_destroy(rk);
        return 2;
    }
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    pthread_t reader;
    if (pthread_create(&reader, NULL, lat_reader, &r) != 0) {
        rd_kafka_topic_destroy(t);
        rd_kafka_destroy(rk);
        free(r.sent_us);
        free(r.got_us);
        free(r.sent_ms);
        free(r.made_ms);
        return 2;
    }
    sleep_us(1000000); /* let the reader join before the first alert */
    int rc = 0;
    int64_t t0 = mono_us(), late_us = 0;
    long half = every / 2;
    int64_t first_ts = 0, ts_of_second = 0;
    char val[512], key[64];
    for (long i = 0; i < n_events && rc == 0; i++) {
        int64_t due = t0 + (int64_t)((double)i * 1e6 / (double)rate);
        int64_t now = mono_us();
        if (due > now) {
            rd_kafka_poll(rk, 0);
            sleep_us(due - now);
        } else if (now - due > late_us) {
            late_us = now - due;
        }
        long k = i / every, slot = i % every;
        int vlen;
        if (slot == 0 || slot == half) {
            /* The trigger client's first and second postponement. */
            snprintf(key, sizeof(key), "%sc%ld", r.nonce, k);
            /* The second strictly after the first: events of one
             * millisecond are ordered by content, not arrival (SPEC 4),
             * and the alert would name the first as its trigger. */
            int64_t ts = wall_ms();
            if (slot == 0)
                first_ts = ts;
            else if (ts <= first_ts)
                ts = first_ts + 1;
            if (slot == half) ts_of_second = ts;
            if (slot == 0)
                vlen = snprintf(val, sizeof(val),
                                "{\"id\":\"%sf%ld\",\"type\":\"meeting.postponed\","
                                "\"client_id\":\"%s\",\"ts\":%" PRId64
                                ",\"data\":{\"meeting_id\":\"M-%ld-1\"}}",
                                r.nonce, k, key, ts, k);
            else
                vlen = snprintf(val, sizeof(val),
                                "{\"id\":\"%st%ld\",\"type\":\"meeting.postponed\","
                                "\"client_id\":\"%s\",\"ts\":%" PRId64
                                ",\"data\":{\"meeting_id\":\"M-%ld-2\"}}",
                                r.nonce, k, key, ts, k);
        } else {
            /* Background: a quiet contact with one of 50,000 clients. */
            snprintf(key, sizeof(key), "%sb%ld", r.nonce, (i * 7919) % 50000);
            vlen = snprintf(val, sizeof(val),
                            "{\"id\":\"%se%ld\",\"type\":\"email.sent\","
                            "\"client_id\":\"%s\",\"ts\":%" PRId64
                            ",\"data\":{\"contact_role\":\"user\"}}",
                            r.nonce, i, key, wall_ms());
        }
        int64_t sent = mono_us();
        if (produce(rk, t, key, strlen(key), val, (size_t)vlen) != 0) rc = 2;
        if (slot == half && (double)(sent - t0) >= warmup * 1e6) {
            r.sent_us[k] = sent;
            r.sent_ms[k] = ts_of_second;
        }
    }
    double took = (double)(mono_us() - t0) / 1e6;
    if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) rc = 2;
    long n_measured = 0, n_seconds = 0;
    for (long k = 0; k < r.n_triggers; k++) n_measured += r.sent_us[k] != 0;
    for (long i = 0; i < n_events; i++) n_seconds += i % every == half;
    /* Wait for the stragglers: until every second postponement has its
     * alert or nothing new came for 5 s. Only the reader touches got_us
     * until it is joined; the count is how the two threads talk. */
    long seen = -1;
    int64_t quiet_since = mono_us();
    while (atomic_load(&r.stop) == 0 && mono_us() - quiet_since < 5000000) {
        long m = atomic_load(&r.n_matched);
        if (m >= n_seconds) break;
        if (m != seen) {
            seen = m;
            quiet_since = mono_us();
        }
        sleep_us(50000);
    }
    if (atomic_load(&r.stop) == 2) rc = 2;
    atomic_store(&r.stop, 1);
    pthread_join(reader, NULL);
    int64_t *lat = calloc((size_t)n_measured + 1, sizeof(*lat));
    long n_lat = 0;
    for (long k = 0; lat && k < r.n_triggers; k++)
        if (r.sent_us[k] && r.got_us[k]) lat[n_lat++] = r.got_us[k] - r.sent_us[k];
    if (!lat) rc = 2;
    if (getenv("BENCHKIT_LATENCY_DUMP")) {
        /* Per trigger: send time (s from start), latency (ms), and the part
         * of it up to the alert's CreateTime, which churnd's producer sets
         * (ms, wall clocks of one machine), so the rest is the broker's and
         * this reader's. The start on CLOCK_MONOTONIC, to line up with
         * perf -k CLOCK_MONOTONIC. */
        fprintf(stderr, "# t0_monotonic_s %.6f\n", (double)t0 / 1e6);
        for (long k = 0; k < r.n_triggers; k++)
            if (r.sent_us[k] && r.got_us[k])
                fprintf(stderr, "%.3f %.2f %" PRId64 "\n",
                        (double)(r.sent_us[k] - t0) / 1e6,
                        (double)(r.got_us[k] - r.sent_us[k]) / 1000.0,
                        r.made_ms[k] - r.sent_ms[k]);
    }
    if (rc == 0) {
        qsort(lat, (size_t)n_lat, sizeof(*lat), cmp_i64);
        printf("events %ld seconds %.3f rate %.0f max_behind_ms %.1f measured %ld "
               "alerts %ld missing %ld other_alerts %ld",
               n_events, took, (double)n_events / took, (double)late_us / 1000.0,
               n_measured, n_lat, n_measured - n_lat, r.n_other);
        if (n_lat)
            printf(" p50_ms %.2f p99_ms %.2f p999_ms %.2f max_ms %.2f\n",
                   pct(lat, n_lat, 0.50), pct(lat, n_lat, 0.99),
                   pct(lat, n_lat, 0.999), (double)lat[n_lat - 1] / 1000.0);
        else
            printf("\n");
        if (n_lat < n_measured) rc = 2;
    }
    free(lat);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk);
    free(r.sent_us);
    free(r.got_us);
    free(r.sent_ms);
    free(r.made_ms);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: benchkit broker|fill|latency|await-alert ...\n", stderr);
        return 1;
    }
    const char *cmd = argv[1];
    argv++;
    argc--;
    optind = 1;
    if (!strcmp(cmd, "broker")) return cmd_broker(argc, argv);
    if (!strcmp(cmd, "fill")) return cmd_fill(argc, argv);
    if (!strcmp(cmd, "latency")) return cmd_latency(argc, argv);
    if (!strcmp(cmd, "await-alert")) return cmd_await_alert(argc, argv);
    fprintf(stderr, "benchkit: unknown command %s\n", cmd);
    return 1;
}
