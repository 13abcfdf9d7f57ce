/*
 * harness.h - what integration tests and the demo share: a broker on
 * loopback (librdkafka's mock cluster in the test process, or a real Kafka
 * when CHURND_TEST_BOOTSTRAP is set), churnd started as a separate process,
 * producing and consuming over the real protocol, and waiting on
 * conditions with deadlines (never bare sleeps).
 */
#ifndef CHURND_TEST_HARNESS_H
#define CHURND_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>

int64_t th_now_ms(void);
/* Sleep a little between two checks of a condition (the only sleep tests
 * use, always inside a deadline loop). */
void th_pause_ms(int ms);

/* ---- broker ---- */
typedef struct th_broker {
    void *mock;       /* rd_kafka_mock_cluster_t, NULL with a real Kafka */
    rd_kafka_t *rk;   /* handle hosting the mock cluster */
    char bootstrap[512];
    char prefix[64];  /* unique per run: topic and group names start with it */
} th_broker_t;

int th_broker_start(th_broker_t *b);
void th_broker_stop(th_broker_t *b);
/* Create a topic named "<prefix><name>" into full (size fsize). */
int th_topic_create(th_broker_t *b, const char *name, int partitions,
                    char *full, size_t fsize);
/* Take mock broker 1 down or up (mock cluster only; -1 otherwise). */
int th_broker_set_up(th_broker_t *b, int up);

/* ---- Kafka clients ---- */
rd_kafka_t *th_producer_new(const char *bootstrap);
/* Produce one message (copied); key may be NULL. 0 or -1. */
int th_produce(rd_kafka_t *p, const char *topic, const char *key,
               const void *val, size_t len);
/* Wait for every produced message to be acknowledged. */
int th_flush(rd_kafka_t *p, int timeout_ms);

typedef struct th_msg {
    char *key;     /* NUL-terminated copies */
    char *value;
    size_t value_len;
    char *headers; /* "k=v\n" lines */
    int32_t partition;
    int64_t offset;
} th_msg_t;

typedef struct th_msgs {
    th_msg_t *v;
    size_t n;
    size_t cap;
} th_msgs_t;

void th_msgs_free(th_msgs_t *m);
/* Read topic from the beginning to its end (all partitions), as of now.
 * Returns 0 or -1 when the end was not reached within timeout_ms. */
int th_consume_to_end(const char *bootstrap, const char *topic,
                      int timeout_ms, th_msgs_t *out);
/* Value of header `name` of a consumed message, or NULL (static buffer). */
const char *th_header(const th_msg_t *m, const char *name);

/* Sum over the topics' partitions of (high watermark - group's committed
 * offset); -1 on error. */
int64_t th_group_lag(const char *bootstrap, const char *group,
                     const char *const *topics, size_t n_topics);
/* A client for repeated lag queries of one group (no group join), and
 * the lag through it; destroy with rd_kafka_destroy. */
rd_kafka_t *th_group_client(const char *bootstrap, const char *group);
int64_t th_group_lag_with(rd_kafka_t *rk, const char *const *topics,
                          size_t n_topics);
/* Wait until the group's lag over the topics is 0. Call it after the
 * producer was flushed, so the high watermarks include what was sent. */
int th_wait_caught_up(const char *bootstrap, const char *group,
                      const char *const *topics, size_t n_topics,
                      int timeout_ms);

/* ---- churnd processes ---- */
typedef struct th_proc {
    pid_t pid;
    char log_path[512];
} th_proc_t;

/* Start `$CHURND_BIN run -c cfg` (argv extra may be NULL) with stdout and
 * stderr appended to log_path. */
int th_daemon_start(th_proc_t *p, const char *cfg_path, const char *log_path);
/* The same with the child's environment changed: env is a NULL-terminated
 * list (or NULL) of "NAME=VALUE" to set and "NAME" to unset. The value
 * TH_ENV_CHILD_PID is replaced by the child's own pid, as systemd sets
 * WATCHDOG_PID to the service's main process. */
#define TH_ENV_CHILD_PID "{child-pid}"
int th_daemon_start_env(th_proc_t *p, const char *cfg_path,
                        const char *log_path, const char *const *env);
int th_proc_signal(th_proc_t *p, int sig);
/* Wait for exit; returns the exit status (0-255), 128+signal when killed,
 * -1 on timeout. */
int th_proc_wait(th_proc_t *p, int timeout_ms);
/* Wait until the process log contains needle; 0 or -1. */
int th_log_wait(const char *log_path, const char *needle, int timeout_ms);
/* The same, looking only past the first `from` bytes of the log. */
int th_log_wait_from(const char *log_path, long from, const char *needle,
                     int timeout_ms);
/* Size of a file in bytes (0 when it does not exist). */
long th_file_size(const char *path);
/* Sum of the high watermarks of every partition of the topics; -1 on
 * error. */
int64_t th_topics_end(const char *bootstrap, const char *const *topics,
                      size_t n_topics);
/* Count occurrences of needle in a file. */
int th_file_count(const char *path, const char *needle);

/* ---- files ---- */
/* mkdtemp under $TMPDIR; path buffer of size n. */
int th_tmpdir(char *path, size_t n);
int th_write_file(const char *path, const char *text);
/* rm -rf */
void th_rmtree(const char *path);

#endif

/* ---- one test's world: topics, group, state dir, config file ---- */
typedef struct th_env {
    th_broker_t broker;
    char crm[128], helpdesk[128], alerts[128], dlq[128], group[128];
    char dir[256];      /* temporary directory, removed by teardown */
    char cfg[512], log[512], state[512];
    rd_kafka_t *producer;
    th_proc_t daemon;
    long log_from;      /* where the running daemon's own log starts */
    int n_inputs;       /* input topics the daemon consumes: crm[, helpdesk] */
} th_env_t;

/* Start a broker, create the four topics (partitions each), write a
 * config using rules_dir; extra_yaml is appended verbatim (top-level
 * sections the base config does not have, or NULL). */
int th_env_setup(th_env_t *e, int partitions, const char *rules_dir,
                 const char *batch_yaml, const char *extra_yaml);
/* The same, with churnd consuming only the first n_inputs of crm and
 * helpdesk (1: crm alone; th_env_setup is 2). A topic it is assigned but
 * never receives an event on holds its watermark back, so a test that
 * feeds one topic must not subscribe to the other. */
int th_env_setup_inputs(th_env_t *e, int partitions, const char *rules_dir,
                        const char *batch_yaml, const char *extra_yaml,
                        int n_inputs);
void th_env_teardown(th_env_t *e);
int th_env_start_daemon(th_env_t *e);
/* The same with the environment changed as th_daemon_start_env does. */
int th_env_start_daemon_env(th_env_t *e, const char *const *env);
/* Stop with SIGTERM and return the exit status (-1 on timeout). */
int th_env_stop_daemon(th_env_t *e, int timeout_ms);
/* Start the daemon, wait until it settled, then take the leader of the
 * alerts topic's partition 0 away: no alert is acknowledged until
 * th_env_alerts_leader(e, 1). 1 on a real broker, whose leaders are not
 * the test's to move (nothing started: skip), 0 when done, -1 on error. */
int th_env_start_leaderless(th_env_t *e, int timeout_ms);
/* Give the alerts partition its leader back (up) or take it away. */
int th_env_alerts_leader(th_env_t *e, int up);
/* Produce one event JSON to the topic, keyed by key. */
int th_env_send(th_env_t *e, const char *topic, const char *key,
                const char *json);
/* Produce every non-blank line of a JSON-lines file to the topic, keyed by
 * the line's client_id (none when it has none); the number of lines sent,
 * or -1. */
int th_env_send_file(th_env_t *e, const char *topic, const char *path);
/* Wait until the daemon has consumed everything produced so far AND
 * settled: every event applied (none left in its reorder buffer) and
 * every timer the watermark passed fired. It logs "settled" with its
 * consumer position then; lag alone is 0 while events are still held. */
int th_env_wait_caught_up(th_env_t *e, int timeout_ms);
/* Only the consumer lag (events may still be held). */
int th_env_wait_consumed(th_env_t *e, int timeout_ms);
/* Dump the daemon log to stderr (on failure). */
void th_env_dump_log(const th_env_t *e);

/* ---- alerts as tests see them ---- */
typedef struct th_alert {
    char rule[64], client[128], status[16], at[40], alert_id[256], key[128];
} th_alert_t;

/* Parse alert JSON (0 or -1). */
int th_alert_parse(const th_msg_t *m, th_alert_t *a);
/* Count alerts matching rule/client/status/at (NULL matches anything). */
size_t th_alerts_count(const th_alert_t *v, size_t n, const char *rule,
                       const char *client, const char *status, const char *at);

/* Run argv (argv[0] a path) to completion with stdin from /dev/null and
 * stdout+stderr into out_path; returns its exit status, 128+signal, or -1
 * on timeout. */
int th_run(char *const argv[], const char *out_path, int timeout_ms);
/* The same with stdin from in_path (NULL: /dev/null) and stdout and
 * stderr into separate files (err_path NULL: with stdout). */
int th_run_io(char *const argv[], const char *in_path, const char *out_path,
              const char *err_path, int timeout_ms);
/* The stream generator: CHURND_TEST_GEN, or gen beside kt
 * (scripts/run-tests.sh passes CHURND_KT=BUILD/tests/kt), or
 * build/tests/gen. */
void th_gen_path(char *out, size_t n);
/* The whole content of a file (malloc'd, NUL-terminated) or NULL. */
char *th_read_file(const char *path);
/* Read the env's alerts topic to its end and count the alerts matching
 * rule/client/status/at (NULL matches anything); (size_t)-1 on error. */
size_t th_env_count_alerts(th_env_t *e, const char *rule, const char *client,
                           const char *status, const char *at);
