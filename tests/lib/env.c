/*
 * env.c - one integration test's world (see harness.h): unique topics and
 * group on the broker, a temporary state directory and config file, and
 * churnd as a child process.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "harness.h"

int th_env_setup(th_env_t *e, int partitions, const char *rules_dir,
                 const char *batch_yaml, const char *extra_yaml) {
    return th_env_setup_inputs(e, partitions, rules_dir, batch_yaml,
                               extra_yaml, 2);
}

int th_env_setup_inputs(th_env_t *e, int partitions, const char *rules_dir,
                        const char *batch_yaml, const char *extra_yaml,
                        int n_inputs) {
    memset(e, 0, sizeof(*e));
    e->n_inputs = n_inputs == 1 ? 1 : 2;
    if (th_broker_start(&e->broker) != 0) return -1;
    if (th_topic_create(&e->broker, "crm", partitions, e->crm, sizeof(e->crm)) ||
        th_topic_create(&e->broker, "helpdesk", partitions, e->helpdesk,
                        sizeof(e->helpdesk)) ||
        th_topic_create(&e->broker, "alerts", partitions, e->alerts,
                        sizeof(e->alerts)) ||
        th_topic_create(&e->broker, "dlq", partitions, e->dlq, sizeof(e->dlq)))
        return -1;
    snprintf(e->group, sizeof(e->group), "%sgroup", e->broker.prefix);
    if (th_tmpdir(e->dir, sizeof(e->dir)) != 0) return -1;
    snprintf(e->cfg, sizeof(e->cfg), "%s/churnd.yaml", e->dir);
    snprintf(e->log, sizeof(e->log), "%s/churnd.log", e->dir);
    snprintf(e->state, sizeof(e->state), "%s/state", e->dir);
    char inputs[300];
    if (n_inputs == 1)
        snprintf(inputs, sizeof(inputs), "\"%s\"", e->crm);
    else
        snprintf(inputs, sizeof(inputs), "\"%s\", \"%s\"", e->crm, e->helpdesk);
    char text[8192];
    snprintf(text, sizeof(text),
             "# written by the integration test harness\n"
             "kafka:\n"
             "  bootstrap.servers: \"%s\"\n"
             "  session.timeout.ms: \"6000\"\n"
             "  heartbeat.interval.ms: \"500\"\n"
             "  topic.metadata.refresh.interval.ms: \"2000\"\n"
             "input:\n"
             "  topics: [%s]\n"
             "  group_id: \"%s\"\n"
             "output:\n"
             "  alerts_topic: \"%s\"\n"
             "  deadletter_topic: \"%s\"\n"
             "rules:\n"
             "  dir: \"%s\"\n"
             "state:\n"
             "  dir: \"%s\"\n"
             "batch:\n"
             "%s"
             "shutdown:\n"
             "  timeout: 20s\n"
             "%s%s%s",
             e->broker.bootstrap, inputs, e->group, e->alerts,
             e->dlq, rules_dir, e->state,
             batch_yaml ? batch_yaml : "  max_events: 200\n  max_wait: 5ms\n",
             /* Partitions a test leaves quiet stop holding the watermark
              * (and the held events) back after a second, not 30. */
             extra_yaml && strstr(extra_yaml, "time:") ? ""
                                                        : "time:\n  idle_timeout: 1s\n",
             /* Tests run daemons side by side: each HTTP listener takes
              * a free port (the daemon logs which one). */
             extra_yaml && strstr(extra_yaml, "http:") ? ""
                                                        : "http:\n  listen: \"127.0.0.1:0\"\n",
             extra_yaml ? extra_yaml : "");
    if (th_write_file(e->cfg, text) != 0) return -1;
    e->producer = th_producer_new(e->broker.bootstrap);
    return e->producer ? 0 : -1;
}

void th_env_dump_log(const th_env_t *e) {
    FILE *f = fopen(e->log, "r");
    if (!f) return;
    char line[4096];
    fprintf(stderr, "---- churnd log (%s) ----\n", e->log);
    while (fgets(line, sizeof(line), f)) fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

void th_env_teardown(th_env_t *e) {
    if (e->daemon.pid > 0) {
        th_proc_signal(&e->daemon, SIGKILL);
        th_proc_wait(&e->daemon, 10000);
    }
    if (e->producer) {
        th_flush(e->producer, 10000);
        rd_kafka_destroy(e->producer);
    }
    th_broker_stop(&e->broker);
    if (e->dir[0] && !getenv("CHURND_TEST_KEEP")) th_rmtree(e->dir);
}

int th_env_start_daemon(th_env_t *e) {
    return th_env_start_daemon_env(e, NULL);
}

int th_env_start_daemon_env(th_env_t *e, const char *const *env) {
    e->log_from = th_file_size(e->log);
    return th_daemon_start_env(&e->daemon, e->cfg, e->log, env);
}

int th_env_stop_daemon(th_env_t *e, int timeout_ms) {
    if (th_proc_signal(&e->daemon, SIGTERM) != 0) return -1;
    return th_proc_wait(&e->daemon, timeout_ms);
}

int th_env_alerts_leader(th_env_t *e, int up) {
    if (!e->broker.mock) return -1;
    return rd_kafka_mock_partition_set_leader(e->broker.mock, e->alerts, 0,
                                              up ? 1 : -1) ? -1 : 0;
}

int th_env_start_leaderless(th_env_t *e, int timeout_ms) {
    if (!e->broker.mock) return 1;
    if (th_env_start_daemon(e) != 0 ||
        th_log_wait_from(e->log, e->log_from, "msg=settled", timeout_ms) != 0)
        return -1;
    return th_env_alerts_leader(e, 0);
}

int th_env_send(th_env_t *e, const char *topic, const char *key,
                const char *json) {
    return th_produce(e->producer, topic, key, json, strlen(json));
}

int th_env_wait_consumed(th_env_t *e, int timeout_ms) {
    if (th_flush(e->producer, timeout_ms) != 0) return -1;
    const char *topics[2] = {e->crm, e->helpdesk};
    return th_wait_caught_up(e->broker.bootstrap, e->group, topics,
                             e->n_inputs ? (size_t)e->n_inputs : 2, timeout_ms);
}

int th_env_wait_caught_up(th_env_t *e, int timeout_ms) {
    int64_t deadline = th_now_ms() + timeout_ms;
    if (th_env_wait_consumed(e, timeout_ms) != 0) return -1;
    const char *topics[2] = {e->crm, e->helpdesk};
    int64_t end = th_topics_end(e->broker.bootstrap, topics,
                                e->n_inputs ? (size_t)e->n_inputs : 2);
    if (end < 0) return -1;
    char needle[96];
    snprintf(needle, sizeof(needle), "msg=settled position=%lld ", (long long)end);
    int64_t left = deadline - th_now_ms();
    return th_log_wait_from(e->log, e->log_from, needle, left > 0 ? (int)left : 1);
}

static void copy_str(char *dst, size_t n, const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    snprintf(dst, n, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

int th_alert_parse(const th_msg_t *m, th_alert_t *a) {
    memset(a, 0, sizeof(*a));
    cJSON *o = cJSON_Parse(m->value);
    if (!o) return -1;
    copy_str(a->rule, sizeof(a->rule), o, "rule");
    copy_str(a->client, sizeof(a->client), o, "client_id");
    copy_str(a->status, sizeof(a->status), o, "status");
    copy_str(a->at, sizeof(a->at), o, "at");
    copy_str(a->alert_id, sizeof(a->alert_id), o, "alert_id");
    snprintf(a->key, sizeof(a->key), "%s", m->key ? m->key : "");
    cJSON_Delete(o);
    return a->rule[0] && a->client[0] && a->alert_id[0] ? 0 : -1;
}

size_t th_alerts_count(const th_alert_t *v, size_t n, const char *rule,
                       const char *client, const char *status, const char *at) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (rule && strcmp(v[i].rule, rule)) continue;
        if (client && strcmp(v[i].client, client)) continue;
        if (status && strcmp(v[i].status, status)) continue;
        if (at && strcmp(v[i].at, at)) continue;
        c++;
    }
    return c;
}

size_t th_env_count_alerts(th_env_t *e, const char *rule, const char *client,
                           const char *status, const char *at) {
    th_msgs_t raw = {0};
    if (th_consume_to_end(e->broker.bootstrap, e->alerts, 60000, &raw) != 0) {
        th_msgs_free(&raw);
        return (size_t)-1;
    }
    th_alert_t *v = calloc(raw.n + 1, sizeof(*v));
    size_t n = (size_t)-1;
    if (v) {
        size_t ok = 0;
        for (size_t i = 0; i < raw.n; i++)
            if (th_alert_parse(&raw.v[i], &v[ok]) == 0) ok++;
        n = ok == raw.n ? th_alerts_count(v, ok, rule, client, status, at)
                        : (size_t)-1;
        free(v);
    }
    th_msgs_free(&raw);
    return n;
}

int th_env_send_file(th_env_t *e, const char *topic, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len) continue;
        char key[256] = "";
        cJSON *o = cJSON_Parse(line);
        const cJSON *c = o ? cJSON_GetObjectItemCaseSensitive(o, "client_id") : NULL;
        if (cJSON_IsString(c)) snprintf(key, sizeof(key), "%s", c->valuestring);
        cJSON_Delete(o);
        if (th_env_send(e, topic, key[0] ? key : NULL, line) != 0) {
            fclose(f);
            return -1;
        }
        n++;
    }
    fclose(f);
    return n;
}
