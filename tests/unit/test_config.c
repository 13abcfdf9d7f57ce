/*
 * test_config.c - the options table and everything read from it: the
 * defaults, the YAML file (nesting, positions, "did you mean", type and
 * duplicate errors), the CHURND_* environment, --set, secrets, the help
 * and Markdown output (and docs/config.md kept equal to it), and a dump
 * that loads back to the same configuration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "churnd/config.h"

static char g_path[256];

/* Write text to a fresh temporary YAML file; its path is in g_path. */
static const char *yaml_file(const char *text) {
    snprintf(g_path, sizeof(g_path), "/tmp/churnd-test-config-XXXXXX");
    int fd = mkstemp(g_path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return g_path;
}

/* Load text as a config file over the defaults, with envp; returns the
 * code and leaves c initialised (caller frees). */
static int load(config_t *c, const char *text, char *const *envp,
                churn_err_t *err) {
    assert_int_equal(config_init(c, err), 0);
    const char *path = text ? yaml_file(text) : NULL;
    int rc = config_load(c, path, envp, err);
    if (path) unlink(path);
    return rc;
}

/* "file:line:col: msg" without the temporary file's name. */
static const char *where(const churn_err_t *err, char *buf, size_t size) {
    snprintf(buf, size, "%d:%d: %s", err->line, err->col, err->msg);
    return buf;
}

static void expect_error(const char *text, char *const *envp, const char *want) {
    config_t c;
    churn_err_t err = {0};
    char buf[1024];
    int rc = load(&c, text, envp, &err);
    config_free(&c);
    if (rc == 0 || strcmp(where(&err, buf, sizeof(buf)), want) != 0)
        fail_msg("config:\n%s\nwanted: %s\ngot (%d): %s", text ? text : "(none)",
                 want, rc, buf);
}

static void test_defaults_are_the_documented_ones(void **state) {
    (void)state;
    config_t c;
    churn_err_t err = {0};
    assert_int_equal(config_init(&c, &err), 0);
    assert_int_equal(c.n_kafka, 1);
    assert_string_equal(config_get_kafka(&c, "bootstrap.servers"), "localhost:9092");
    assert_null(config_get_kafka(&c, "sasl.password"));
    assert_int_equal(c.n_input_topics, 2);
    assert_string_equal(c.input_topics[0], "crm.events");
    assert_string_equal(c.input_topics[1], "helpdesk.events");
    assert_string_equal(c.group_id, "churnd");
    assert_string_equal(c.alerts_topic, "churn.alerts");
    assert_string_equal(c.deadletter_topic, "churn.deadletter");
    assert_string_equal(c.rules_dir, "./rules");
    assert_string_equal(c.state_dir, "./state");
    assert_int_equal(c.cache_clients, 1000000);
    assert_int_equal(c.cache_memory_bytes, 48 * 1024 * 1024);
    assert_int_equal(c.block_cache_bytes, 32 * 1024 * 1024);
    assert_int_equal(c.state_sync, 0);
    assert_int_equal(c.state_ledger, 1);
    assert_int_equal(c.batch_max_events, 5000);
    assert_int_equal(c.batch_max_ms, 0);
    assert_string_equal(c.event.id_path, "id");
    assert_string_equal(c.event.client_path, "client_id");
    assert_string_equal(c.event.type_path, "type");
    assert_string_equal(c.event.ts_path, "ts");
    assert_int_equal(c.event.n_type_map, 0);
    assert_int_equal(c.event.max_bytes, 1024 * 1024);
    assert_int_equal(c.event.max_depth, 32);
    assert_int_equal(c.dedup_window_ms, 24 * 3600 * 1000);
    assert_int_equal(c.dedup_max_ids, 64);
    assert_int_equal(c.allowed_lateness_ms, 0);
    assert_int_equal(c.idle_timeout_ms, 30000);
    assert_int_equal(c.shutdown_timeout_ms, 30000);
    assert_string_equal(c.http_listen, "127.0.0.1:9464");
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.log_format, LOG_FMT_LOGFMT);
    assert_int_equal(c.embedded_partitions, 4);
    /* No file and an empty environment: still the defaults. */
    assert_int_equal(config_load(&c, NULL, NULL, &err), 0);
    assert_int_equal(c.batch_max_events, 5000);
    config_free(&c);
    config_free(&c); /* idempotent after the first: all zeroed */
}

static void test_nested_file_sets_every_kind(void **state) {
    (void)state;
    config_t c;
    churn_err_t err = {0};
    int rc = load(&c,
        "# a full file\n"
        "kafka:\n"
        "  bootstrap.servers: \"k1:9092,k2:9092\"\n"
        "  session.timeout.ms: 6000\n"
        "  enable.partition.eof: false\n"
        "  sasl.password: 'hunter2'\n"
        "  ssl.ca.location: [a, b]\n"
        "input:\n"
        "  topics: [a.events, b-events, c_events]\n"
        "  group_id: grp\n"
        "output: {alerts_topic: alerts, deadletter_topic: dlq}\n"
        "rules: {dir: /etc/churnd/rules}\n"
        "state:\n"
        "  dir: /var/lib/churnd\n"
        "  cache_clients: 0\n"
        "  cache_memory: 4MiB\n"
        "  block_cache: 512KiB\n"
        "  sync: true\n"
        "batch:\n"
        "  max_events: 100\n"
        "  max_wait: 250ms\n"
        "event:\n"
        "  id_path: meta.id\n"
        "  client_path: account.id\n"
        "  type_path: kind\n"
        "  ts_path: meta.at\n"
        "  type_map:\n"
        "    OrderCreated: order.placed\n"
        "    TicketOpened: ticket.opened\n"
        "  max_bytes: 2048\n"
        "  max_depth: 8\n"
        "  dedup_window: 1h30m\n"
        "  dedup_max_ids: 4096\n"
        "time: {allowed_lateness: 0, idle_timeout: 2m}\n"
        "shutdown: {timeout: 5s}\n"
        "http: {listen: \"[::1]:9000\"}\n"
        "log: {level: debug, format: json}\n"
        "embedded: {partitions: 256}\n",
        NULL, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.n_kafka, 5);
    assert_string_equal(c.kafka[0].key, "bootstrap.servers"); /* replaced in place */
    assert_string_equal(c.kafka[0].val, "k1:9092,k2:9092");
    assert_string_equal(config_get_kafka(&c, "session.timeout.ms"), "6000");
    assert_string_equal(config_get_kafka(&c, "enable.partition.eof"), "false");
    assert_string_equal(config_get_kafka(&c, "sasl.password"), "hunter2");
    assert_string_equal(config_get_kafka(&c, "ssl.ca.location"), "a,b");
    assert_int_equal(c.n_input_topics, 3);
    assert_string_equal(c.input_topics[2], "c_events");
    assert_string_equal(c.group_id, "grp");
    assert_string_equal(c.alerts_topic, "alerts");
    assert_string_equal(c.deadletter_topic, "dlq");
    assert_string_equal(c.rules_dir, "/etc/churnd/rules");
    assert_string_equal(c.state_dir, "/var/lib/churnd");
    assert_int_equal(c.cache_clients, 0);
    assert_int_equal(c.cache_memory_bytes, 4 * 1024 * 1024);
    assert_int_equal(c.block_cache_bytes, 512 * 1024);
    assert_int_equal(c.state_sync, 1);
    assert_int_equal(c.batch_max_events, 100);
    assert_int_equal(c.batch_max_ms, 250);
    assert_string_equal(c.event.id_path, "meta.id");
    assert_string_equal(c.event.client_path, "account.id");
    assert_string_equal(c.event.type_path, "kind");
    assert_string_equal(c.event.ts_path, "meta.at");
    assert_int_equal(c.event.n_type_map, 2);
    assert_string_equal(c.event.type_map[0].from, "OrderCreated");
    assert_string_equal(c.event.type_map[0].to, "order.placed");
    assert_string_equal(c.event.type_map[1].from, "TicketOpened");
    assert_int_equal(c.event.max_bytes, 2048);
    assert_int_equal(c.event.max_depth, 8);
    assert_int_equal(c.dedup_window_ms, 90 * 60 * 1000);
    assert_int_equal(c.dedup_max_ids, 4096);
    assert_int_equal(c.allowed_lateness_ms, 0);
    assert_int_equal(c.idle_timeout_ms, 120000);
    assert_int_equal(c.shutdown_timeout_ms, 5000);
    assert_string_equal(c.http_listen, "[::1]:9000");
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.log_format, LOG_FMT_JSON);
    assert_int_equal(c.embedded_partitions, 256);
    config_free(&c);
}

static void test_flat_dotted_keys_and_scalar_lists(void **state) {
    (void)state;
    config_t c;
    churn_err_t err = {0};
    int rc = load(&c,
        "batch.max_events: 7\n"
        "kafka.bootstrap.servers: b:1\n"
        "event: {type_map.x: 1}\n"  /* not an option: type_map is a whole map */
        , NULL, &err);
    assert_int_not_equal(rc, 0);
    assert_string_equal(err.msg, "unknown option 'event.type_map.x'; did you "
                                 "mean 'event.type_map'?");
    config_free(&c);

    rc = load(&c,
        "batch.max_events: 7\n"
        "kafka.bootstrap.servers: b:1\n"
        "input: {topics: \"x, y\"}\n"
        "event: {type_map: \"A=a.b, B=b.c\"}\n", NULL, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.batch_max_events, 7);
    assert_string_equal(config_get_kafka(&c, "bootstrap.servers"), "b:1");
    assert_int_equal(c.n_input_topics, 2);
    assert_string_equal(c.input_topics[1], "y");
    assert_int_equal(c.event.n_type_map, 2);
    assert_string_equal(c.event.type_map[1].to, "b.c");
    config_free(&c);
}

static void test_unknown_keys_say_where_and_what_was_meant(void **state) {
    (void)state;
    expect_error("batch:\n  max_evnts: 10\n", NULL,
                 "2:3: unknown option 'batch.max_evnts'; did you mean "
                 "'batch.max_events'?");
    expect_error("bacth:\n  max_events: 10\n", NULL,
                 "1:1: unknown option 'bacth'; did you mean 'batch'?");
    expect_error("max_events: 10\n", NULL,
                 "1:1: unknown option 'max_events'; did you mean "
                 "'batch.max_events'?");
    expect_error("kafak:\n  bootstrap.servers: x\n", NULL,
                 "1:1: unknown option 'kafak'; did you mean 'kafka'?");
    expect_error("log:\n  level: info\n  colour: true\n", NULL,
                 "3:3: unknown option 'log.colour' (`churnd config` lists them all)");
    /* The file name is in the error too. */
    config_t c;
    churn_err_t err = {0};
    assert_int_not_equal(load(&c, "nope: 1\n", NULL, &err), 0);
    assert_true(strncmp(err.file, "/tmp/churnd-test-config-", 24) == 0);
    char line[1024];
    assert_non_null(strstr(churn_err_str(&err, line, sizeof(line)), ":1:1: unknown"));
    config_free(&c);
}

static void test_type_errors_say_what_was_expected(void **state) {
    (void)state;
    expect_error("batch:\n  max_events: lots\n", NULL,
                 "2:15: batch.max_events: expected an integer from 1 to 1000000, "
                 "got \"lots\"");
    expect_error("batch: {max_events: 0}\n", NULL,
                 "1:21: batch.max_events: expected an integer from 1 to 1000000, "
                 "got \"0\"");
    expect_error("batch: {max_events: 1000001}\n", NULL,
                 "1:21: batch.max_events: expected an integer from 1 to 1000000, "
                 "got \"1000001\"");
    expect_error("batch: {max_events: 99999999999999999999999}\n", NULL,
                 "1:21: batch.max_events: expected an integer from 1 to 1000000, "
                 "got \"99999999999999999999999\"");
    expect_error("batch: {max_events: 5e3}\n", NULL,
                 "1:21: batch.max_events: expected an integer from 1 to 1000000, "
                 "got \"5e3\"");
    expect_error("batch: {max_events: [1]}\n", NULL,
                 "1:21: batch.max_events: expected an integer from 1 to 1000000, "
                 "got a list");
    expect_error("batch: {max_events: }\n", NULL,
                 "1:21: batch.max_events: expected an integer from 1 to 1000000, "
                 "got nothing (null)");
    expect_error("batch: {max_wait: 11s}\n", NULL,
                 "1:19: batch.max_wait: expected a duration from 0s to 10s (such "
                 "as 10ms, 30s, 5m), got \"11s\"");
    expect_error("time: {idle_timeout: 30}\n", NULL,
                 "1:22: time.idle_timeout: expected a duration such as 10ms, 30s, "
                 "5m or 24h, got \"30\"");
    expect_error("state: {block_cache: 64MB}\n", NULL,
                 "1:22: state.block_cache: expected a size such as 512KiB, 64MiB "
                 "or a number of bytes, got \"64MB\"");
    expect_error("event: {max_bytes: 63}\n", NULL,
                 "1:20: event.max_bytes: expected a size from 64B to 64MiB (such "
                 "as 512KiB, 64MiB or a number of bytes), got \"63\"");
    expect_error("event: {max_bytes: 65MiB}\n", NULL,
                 "1:20: event.max_bytes: expected a size from 64B to 64MiB (such "
                 "as 512KiB, 64MiB or a number of bytes), got \"65MiB\"");
    expect_error("state: {sync: maybe}\n", NULL,
                 "1:15: state.sync: expected true or false, got \"maybe\"");
    expect_error("log: {level: verbose}\n", NULL,
                 "1:14: log.level: expected one of debug, info, warn, error, got "
                 "\"verbose\"");
    expect_error("log: {format: text}\n", NULL,
                 "1:15: log.format: expected one of logfmt, json, got \"text\"");
    expect_error("input: {topics: []}\n", NULL,
                 "1:17: input.topics: expected a non-empty list of distinct Kafka "
                 "topic names, got \"[]\"");
    expect_error("input:\n  topics:\n    - ok\n    - \"not ok\"\n", NULL,
                 "4:7: input.topics: expected a non-empty list of distinct Kafka "
                 "topic names, got \"not ok\"");
    expect_error("input: {topics: [a, {b: c}]}\n", NULL,
                 "1:21: input.topics: expected a non-empty list of distinct Kafka "
                 "topic names, got a mapping");
    expect_error("input: {topics: [a, a]}\n", NULL,
                 "1:17: input.topics: \"a\" is listed twice");
    expect_error("output: {alerts_topic: \"churn alerts\"}\n", NULL,
                 "1:24: output.alerts_topic: expected a Kafka topic name (letters, "
                 "digits, '.', '_', '-'; at most 249), got \"churn alerts\"");
    expect_error("event: {client_path: \"account..id\"}\n", NULL,
                 "1:22: event.client_path: expected a dotted JSON path such as "
                 "client_id or account.id, got \"account..id\"");
    expect_error("http: {listen: 9464}\n", NULL,
                 "1:16: http.listen: expected HOST:PORT such as 127.0.0.1:9464, "
                 "got \"9464\"");
    expect_error("http: {listen: \"localhost:70000\"}\n", NULL,
                 "1:16: http.listen: expected HOST:PORT such as 127.0.0.1:9464, "
                 "got \"localhost:70000\"");
    expect_error("state: {dir: \"\"}\n", NULL,
                 "1:14: state.dir: expected a non-empty string, got \"\"");
    expect_error("event: {type_map: [a]}\n", NULL,
                 "1:19: event.type_map: expected a mapping of upstream type names "
                 "to churnd type names (OrderCreated: order.placed), got a list");
    expect_error("batch: 5\n", NULL,
                 "1:8: batch: expected a mapping of batch.* options, got a scalar");
    expect_error("kafka: [a]\n", NULL,
                 "1:8: kafka: expected a mapping of librdkafka properties, got a list");
    expect_error("kafka:\n  bootstrap:\n    servers: x\n", NULL,
                 "3:5: kafka.bootstrap: expected a value (librdkafka properties "
                 "are flat: \"sasl.mechanisms: PLAIN\"), got a mapping");
    expect_error("kafka: {sasl.password: }\n", NULL,
                 "1:24: kafka.sasl.password: expected a value (librdkafka "
                 "properties are flat: \"sasl.mechanisms: PLAIN\"), got nothing (null)");
    expect_error("state: {dir: \"a\\0b\"}\n", NULL,
                 "1:14: state.dir: contains a NUL byte");
    /* The message the CLI shows carries the option's name. */
    config_t c;
    churn_err_t err = {0};
    assert_int_equal(config_init(&c, &err), 0);
    assert_int_equal(config_set(&c, "batch.max_events", "lots", &err), CHURN_EINVAL);
    assert_string_equal(err.msg, "batch.max_events: expected an integer from 1 to "
                                 "1000000, got \"lots\"");
    assert_int_equal(err.line, 0);
    config_free(&c);
}

static void test_duplicate_keys_are_errors(void **state) {
    (void)state;
    expect_error("batch:\n  max_events: 1\n  max_events: 2\n", NULL,
                 "3:3: duplicate key 'max_events' (first at line 2, column 3)");
    expect_error("batch: {max_events: 1}\nbatch: {max_wait: 1s}\n", NULL,
                 "2:1: duplicate key 'batch' (first at line 1, column 1)");
    expect_error("batch: {max_events: 1}\nbatch.max_events: 2\n", NULL,
                 "2:1: batch.max_events is set twice (first at line 1, column 9)");
    expect_error("kafka:\n  acks: all\n  acks: 1\n", NULL,
                 "3:3: duplicate key 'acks' (first at line 2, column 3)");
    expect_error("kafka: {acks: all}\nkafka.acks: 1\n", NULL,
                 "2:1: kafka.acks is set twice (first at line 1, column 9)");
    expect_error("event:\n  type_map: {A: a, A: b}\n", NULL,
                 "2:20: duplicate key 'A' (first at line 2, column 14)");
}

static void test_yaml_level_errors(void **state) {
    (void)state;
    config_t c;
    churn_err_t err = {0};
    expect_error("batch: {max_events: 1\n", NULL,
                 "2:1: YAML: did not find expected ',' or '}' while parsing a flow mapping");
    expect_error("- a\n- b\n", NULL,
                 "1:1: expected a mapping of options at the top, got a list");
    expect_error("batch: {max_events: 1}\n---\nbatch: {max_events: 2}\n", NULL,
                 "3:1: a config file holds one YAML document; this is a second");
    expect_error("a: &x 1\nbatch: {max_events: *y}\n", NULL,
                 "2:21: YAML: found undefined alias");
    /* Aliases that resolve are fine. */
    assert_int_equal(load(&c, "input: {group_id: &g grp}\noutput: {alerts_topic: *g}\n",
                          NULL, &err), 0);
    assert_string_equal(c.alerts_topic, "grp");
    config_free(&c);
    /* An empty file, or only a comment: the defaults. */
    assert_int_equal(load(&c, "", NULL, &err), 0);
    assert_int_equal(c.batch_max_events, 5000);
    config_free(&c);
    assert_int_equal(load(&c, "# nothing\n", NULL, &err), 0);
    config_free(&c);
    /* A file that is not there. */
    assert_int_equal(config_init(&c, &err), 0);
    assert_int_equal(config_load(&c, "/nonexistent/churnd.yaml", NULL, &err),
                     CHURN_EIO);
    assert_string_equal(err.file, "/nonexistent/churnd.yaml");
    assert_string_equal(err.msg, "cannot open: No such file or directory");
    config_free(&c);
}

static void test_environment_overrides_the_file(void **state) {
    (void)state;
    config_t c;
    churn_err_t err = {0};
    char *env[] = {
        "HOME=/root",
        "CHURND_BATCH_MAX_EVENTS=1000",
        "CHURND_STATE_DIR=/data/state",
        "CHURND_INPUT_TOPICS=x.events, y.events ,z",
        "CHURND_EVENT_TYPE_MAP=OrderCreated=order.placed,Gone=client.gone",
        "CHURND_KAFKA_BOOTSTRAP_SERVERS=broker:9093",
        "CHURND_KAFKA_SASL_PASSWORD=s3cret",
        "CHURND_KAFKA_LOG__LEVEL=3",
        "CHURND_LOG_LEVEL=WARN",
        "CHURND_STATE_SYNC=yes",
        "CHURND_BIN=/usr/bin/churnd",
        "CHURND_KT=/usr/bin/kt",
        "CHURND_TEST_BOOTSTRAP=127.0.0.1:1",
        "CHURND_TEST_KEEP=1",
        "NOT_CHURND_X=1",
        NULL,
    };
    int rc = load(&c,
        "batch: {max_events: 5}\n"
        "event: {type_map: {Old: new.type}}\n"
        "kafka: {bootstrap.servers: file:9092, acks: all}\n", env, &err);
    if (rc) fail_msg("%s", err.msg);
    assert_int_equal(c.batch_max_events, 1000);
    assert_string_equal(c.state_dir, "/data/state");
    assert_int_equal(c.n_input_topics, 3);
    assert_string_equal(c.input_topics[0], "x.events");
    assert_string_equal(c.input_topics[1], "y.events");
    assert_string_equal(c.input_topics[2], "z");
    /* A map from the environment replaces the file's whole map. */
    assert_int_equal(c.event.n_type_map, 2);
    assert_string_equal(c.event.type_map[0].from, "OrderCreated");
    assert_string_equal(c.event.type_map[1].to, "client.gone");
    assert_string_equal(config_get_kafka(&c, "bootstrap.servers"), "broker:9093");
    assert_string_equal(config_get_kafka(&c, "acks"), "all");
    assert_string_equal(config_get_kafka(&c, "sasl.password"), "s3cret");
    assert_string_equal(config_get_kafka(&c, "log_level"), "3");
    assert_int_equal(c.log_level, LOG_WARN);
    assert_int_equal(c.state_sync, 1);
    config_free(&c);
}

static void test_environment_errors(void **state) {
    (void)state;
    char *typo[] = {"CHURND_BATCH_MAX_EVENT=5", NULL};
    expect_error(NULL, typo,
                 "0:0: environment CHURND_BATCH_MAX_EVENT: not a churnd option; "
                 "did you mean CHURND_BATCH_MAX_EVENTS?");
    char *kafak[] = {"CHURND_KAFAK_BOOTSTRAP_SERVERS=x", NULL};
    expect_error(NULL, kafak,
                 "0:0: environment CHURND_KAFAK_BOOTSTRAP_SERVERS: not a churnd "
                 "option; did you mean CHURND_KAFKA_BOOTSTRAP_SERVERS?");
    char *far[] = {"CHURND_FROBNICATE=1", NULL};
    expect_error(NULL, far,
                 "0:0: environment CHURND_FROBNICATE: not a churnd option (options "
                 "are CHURND_<NAME>, librdkafka properties CHURND_KAFKA_<PROPERTY>; "
                 "`churnd config` lists them)");
    char *bad[] = {"CHURND_BATCH_MAX_EVENTS=lots", NULL};
    expect_error(NULL, bad,
                 "0:0: environment CHURND_BATCH_MAX_EVENTS: batch.max_events: "
                 "expected an integer from 1 to 1000000, got \"lots\"");
    char *empty[] = {"CHURND_INPUT_TOPICS=", NULL};
    expect_error(NULL, empty,
                 "0:0: environment CHURND_INPUT_TOPICS: input.topics: expected a "
                 "non-empty list of distinct Kafka topic names, got \"\"");
    char *badmap[] = {"CHURND_EVENT_TYPE_MAP=A", NULL};
    expect_error(NULL, badmap,
                 "0:0: environment CHURND_EVENT_TYPE_MAP: event.type_map: expected a "
                 "mapping of upstream type names to churnd type names "
                 "(OrderCreated: order.placed), got \"A\"");
    char *dupmap[] = {"CHURND_EVENT_TYPE_MAP=A=b,A=c", NULL};
    expect_error(NULL, dupmap,
                 "0:0: environment CHURND_EVENT_TYPE_MAP: event.type_map: \"A\" is "
                 "mapped twice");
    /* The empty map is written as nothing. */
    config_t c;
    churn_err_t err = {0};
    char *clear[] = {"CHURND_EVENT_TYPE_MAP=", NULL};
    assert_int_equal(load(&c, "event: {type_map: {A: b}}\n", clear, &err), 0);
    assert_int_equal(c.event.n_type_map, 0);
    assert_null(c.event.type_map);
    config_free(&c);
}

/* Every option can be set from its environment variable. The list here
 * must name every row of the table, so a new option needs a line. */
static void test_every_option_has_a_working_env_variable(void **state) {
    (void)state;
    static const struct {
        const char *name, *env;
    } rows[] = {
        {"kafka", "CHURND_KAFKA_CLIENT_ID=me"},
        {"input.topics", "CHURND_INPUT_TOPICS=t1"},
        {"input.group_id", "CHURND_INPUT_GROUP_ID=g"},
        {"output.alerts_topic", "CHURND_OUTPUT_ALERTS_TOPIC=al"},
        {"output.deadletter_topic", "CHURND_OUTPUT_DEADLETTER_TOPIC=dl"},
        {"rules.dir", "CHURND_RULES_DIR=r"},
        {"state.dir", "CHURND_STATE_DIR=s"},
        {"state.cache_clients", "CHURND_STATE_CACHE_CLIENTS=7"},
        {"state.cache_memory", "CHURND_STATE_CACHE_MEMORY=1MiB"},
        {"state.block_cache", "CHURND_STATE_BLOCK_CACHE=1GiB"},
        {"state.sync", "CHURND_STATE_SYNC=on"},
        {"state.ledger", "CHURND_STATE_LEDGER=off"},
        {"batch.max_events", "CHURND_BATCH_MAX_EVENTS=1000000"},
        {"batch.max_wait", "CHURND_BATCH_MAX_WAIT=10s"},
        {"event.id_path", "CHURND_EVENT_ID_PATH=a.b"},
        {"event.client_path", "CHURND_EVENT_CLIENT_PATH=c.d"},
        {"event.type_path", "CHURND_EVENT_TYPE_PATH=e"},
        {"event.ts_path", "CHURND_EVENT_TS_PATH=f"},
        {"event.type_map", "CHURND_EVENT_TYPE_MAP=X=y"},
        {"event.max_bytes", "CHURND_EVENT_MAX_BYTES=64MiB"},
        {"event.max_depth", "CHURND_EVENT_MAX_DEPTH=1000"},
        {"event.dedup_window", "CHURND_EVENT_DEDUP_WINDOW=2w"},
        {"event.dedup_max_ids", "CHURND_EVENT_DEDUP_MAX_IDS=0"},
        {"time.allowed_lateness", "CHURND_TIME_ALLOWED_LATENESS=1s"},
        {"time.idle_timeout", "CHURND_TIME_IDLE_TIMEOUT=1m"},
        {"shutdown.timeout", "CHURND_SHUTDOWN_TIMEOUT=1h"},
        {"http.listen", "CHURND_HTTP_LISTEN=0.0.0.0:80"},
        {"http.request_timeout", "CHURND_HTTP_REQUEST_TIMEOUT=1s"},
        {"http.max_connections", "CHURND_HTTP_MAX_CONNECTIONS=3"},
        {"http.stall_timeout", "CHURND_HTTP_STALL_TIMEOUT=0s"},
        {"log.level", "CHURND_LOG_LEVEL=error"},
        {"log.format", "CHURND_LOG_FORMAT=json"},
        {"embedded.partitions", "CHURND_EMBEDDED_PARTITIONS=1"},
    };
    assert_int_equal(config_n_options(), CHURN_ARRAY_LEN(rows));
    char *env[CHURN_ARRAY_LEN(rows) + 1];
    for (size_t i = 0; i < CHURN_ARRAY_LEN(rows); i++) {
        assert_string_equal(config_option_name(i), rows[i].name);
        env[i] = (char *)rows[i].env;
    }
    env[CHURN_ARRAY_LEN(rows)] = NULL;
    assert_null(config_option_name(CHURN_ARRAY_LEN(rows)));
    config_t c;
    churn_err_t err = {0};
    int rc = load(&c, NULL, env, &err);
    if (rc) fail_msg("%s", err.msg);
    assert_string_equal(config_get_kafka(&c, "client.id"), "me");
    assert_string_equal(c.input_topics[0], "t1");
    assert_string_equal(c.group_id, "g");
    assert_string_equal(c.alerts_topic, "al");
    assert_string_equal(c.deadletter_topic, "dl");
    assert_string_equal(c.rules_dir, "r");
    assert_string_equal(c.state_dir, "s");
    assert_int_equal(c.cache_clients, 7);
    assert_int_equal(c.block_cache_bytes, INT64_C(1) << 30);
    assert_int_equal(c.state_sync, 1);
    assert_int_equal(c.state_ledger, 0);
    assert_int_equal(c.batch_max_events, 1000000);
    assert_int_equal(c.batch_max_ms, 10000);
    assert_string_equal(c.event.id_path, "a.b");
    assert_string_equal(c.event.client_path, "c.d");
    assert_string_equal(c.event.type_path, "e");
    assert_string_equal(c.event.ts_path, "f");
    assert_string_equal(c.event.type_map[0].to, "y");
    assert_int_equal(c.event.max_bytes, 64 << 20);
    assert_int_equal(c.event.max_depth, 1000);
    assert_int_equal(c.dedup_window_ms, INT64_C(14) * 86400 * 1000);
    assert_int_equal(c.dedup_max_ids, 0);
    assert_int_equal(c.allowed_lateness_ms, 1000);
    assert_int_equal(c.idle_timeout_ms, 60000);
    assert_int_equal(c.shutdown_timeout_ms, 3600000);
    assert_string_equal(c.http_listen, "0.0.0.0:80");
    assert_int_equal(c.http_timeout_ms, 1000);
    assert_int_equal(c.http_max_conns, 3);
    assert_int_equal(c.http_stall_ms, 0);
    assert_int_equal(c.log_level, LOG_ERROR);
    assert_int_equal(c.log_format, LOG_FMT_JSON);
    assert_int_equal(c.embedded_partitions, 1);
    config_free(&c);
}

static void test_config_set_and_kafka(void **state) {
    (void)state;
    config_t c;
    churn_err_t err = {0};
    assert_int_equal(config_init(&c, &err), 0);
    assert_int_equal(config_set(&c, "state.block_cache", "1 MiB", &err), 0);
    assert_int_equal(c.block_cache_bytes, 1 << 20);
    assert_int_equal(config_set(&c, "state.block_cache", "4096", &err), 0);
    assert_int_equal(c.block_cache_bytes, 4096);
    assert_int_equal(config_set(&c, "state.block_cache", "2kib", &err), 0);
    assert_int_equal(c.block_cache_bytes, 2048);
    assert_int_equal(config_set(&c, "batch.max_wait", "0", &err), 0);
    assert_int_equal(c.batch_max_ms, 0);
    assert_int_equal(config_set(&c, "kafka.acks", "all", &err), 0);
    assert_string_equal(config_get_kafka(&c, "acks"), "all");
    assert_int_equal(config_set(&c, "kafka.acks", "1", &err), 0);
    assert_string_equal(config_get_kafka(&c, "acks"), "1");
    assert_int_equal(c.n_kafka, 2);
    assert_int_equal(config_set_kafka(&c, "", "x"), CHURN_EINVAL);
    assert_int_equal(config_set(&c, "batch.max_evnts", "1", &err), CHURN_EINVAL);
    assert_string_equal(err.msg, "unknown option 'batch.max_evnts'; did you mean "
                                 "'batch.max_events'?");
    assert_int_equal(config_set(&c, "kafka", "x", &err), CHURN_EINVAL);
    /* A failed set leaves the old value. */
    assert_int_equal(config_set(&c, "input.topics", "a,,b", &err), CHURN_EINVAL);
    assert_int_equal(c.n_input_topics, 2);
    assert_string_equal(c.input_topics[0], "crm.events");
    config_free(&c);
}

static void test_output_topic_must_not_be_an_input(void **state) {
    (void)state;
    expect_error("input: {topics: [a, b]}\noutput: {alerts_topic: b}\n", NULL,
                 "0:0: output.alerts_topic \"b\" is also in input.topics: churnd "
                 "would consume what it publishes");
    char *env[] = {"CHURND_OUTPUT_DEADLETTER_TOPIC=crm.events", NULL};
    expect_error(NULL, env,
                 "0:0: output.deadletter_topic \"crm.events\" is also in "
                 "input.topics: churnd would consume what it publishes");
}

static void test_secrets(void **state) {
    (void)state;
    static const char *const secret[] = {
        "sasl.password", "ssl.key.password", "ssl.keystore.password",
        "ssl.key.pem", "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config",
        "kafka.sasl.password", "SASL.PASSWORD", "api_token", "ssl_key",
        "ssl.key.location", "private.key",
    };
    static const char *const plain[] = {
        "bootstrap.servers", "sasl.username", "sasl.mechanisms", "security.protocol",
        "ssl.ca.location", "ssl.certificate.location", "keyed", "monkey.business",
        "client.id", "", "ssl.keystore.location",
    };
    for (size_t i = 0; i < CHURN_ARRAY_LEN(secret); i++)
        if (!config_is_secret(secret[i])) fail_msg("%s should be secret", secret[i]);
    for (size_t i = 0; i < CHURN_ARRAY_LEN(plain); i++)
        if (config_is_secret(plain[i])) fail_msg("%s should not be secret", plain[i]);
    assert_false(config_is_secret(NULL));
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    buf_t b;
    buf_init(&b);
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        assert_int_equal(buf_append(&b, tmp, n), 0);
    fclose(f);
    assert_int_equal(buf_putc(&b, '\0'), 0);
    return (char *)b.data;
}

static void test_dump_loads_back_and_hides_secrets(void **state) {
    (void)state;
    config_t a, b;
    churn_err_t err = {0};
    const char *text =
        "kafka: {acks: all, client.id: \"a \\\"quoted\\\" id\", \"odd: key#\": 1}\n"
        "input: {topics: [x, y]}\n"
        "event:\n"
        "  type_map: {\"Order Created\": order.placed, B: \"b\\\\c\"}\n"
        "  dedup_window: 1h30m\n"
        "  max_bytes: 1000\n"
        "state: {block_cache: 3GiB, sync: true}\n"
        "log: {level: error, format: json}\n";
    assert_int_equal(load(&a, text, NULL, &err), 0);
    buf_t d1, d2;
    buf_init(&d1);
    buf_init(&d2);
    assert_int_equal(config_dump(&d1, &a), 0);
    assert_int_equal(buf_putc(&d1, '\0'), 0);
    int rc = load(&b, (const char *)d1.data, NULL, &err);
    if (rc) fail_msg("%s at %d:%d in\n%s", err.msg, err.line, err.col, d1.data);
    assert_int_equal(config_dump(&d2, &b), 0);
    assert_int_equal(buf_putc(&d2, '\0'), 0);
    assert_string_equal(d1.data, d2.data);
    assert_string_equal(b.event.type_map[0].from, "Order Created");
    assert_string_equal(b.event.type_map[1].to, "b\\c");
    assert_string_equal(config_get_kafka(&b, "client.id"), "a \"quoted\" id");
    assert_string_equal(config_get_kafka(&b, "odd: key#"), "1");
    assert_non_null(strstr((char *)d1.data, "  dedup_window: 1h30m\n"));
    assert_non_null(strstr((char *)d1.data, "  block_cache: 3GiB\n"));
    assert_non_null(strstr((char *)d1.data, "  max_bytes: 1000B\n"));
    config_free(&b);

    assert_int_equal(config_set_kafka(&a, "sasl.password", "hunter2"), 0);
    buf_reset(&d1);
    assert_int_equal(config_dump(&d1, &a), 0);
    assert_int_equal(buf_putc(&d1, '\0'), 0);
    assert_null(strstr((char *)d1.data, "hunter2"));
    assert_non_null(strstr((char *)d1.data, "  sasl.password: \"<redacted>\"\n"));
    buf_free(&d1);
    buf_free(&d2);
    config_free(&a);
}

static void test_help_lists_every_option(void **state) {
    (void)state;
    buf_t t, m;
    buf_init(&t);
    buf_init(&m);
    assert_int_equal(config_print_help(&t, 0), 0);
    assert_int_equal(config_print_help(&m, 1), 0);
    assert_int_equal(buf_putc(&t, '\0'), 0);
    assert_int_equal(buf_putc(&m, '\0'), 0);
    const char *text = (const char *)t.data, *md = (const char *)m.data;
    assert_non_null(strstr(text, "\nbatch.max_events = 5000\n"
                                 "    integer 1..1000000; env CHURND_BATCH_MAX_EVENTS\n"
                                 "    Most events evaluated and committed as one "
                                 "micro-batch\n"));
    assert_non_null(strstr(text, "\nevent.max_bytes = 1MiB\n    size 64B..64MiB;"));
    assert_non_null(strstr(text, "\nlog.level = info\n    debug, info, warn, error;"));
    assert_non_null(strstr(text, "\nkafka.<property> = bootstrap.servers: "
                                 "localhost:9092\n"));
    assert_true(strncmp(md, "| option | env | type | default | description |\n"
                            "| --- | --- | --- | --- | --- |\n", 70) == 0);
    assert_non_null(strstr(md, "\n| `batch.max_wait` | `CHURND_BATCH_MAX_WAIT` | "
                               "duration 0s..10s | `0s` | How long a micro-batch "
                               "waits for more events once none are waiting (0: "
                               "it goes at once with what has arrived) |\n"));
    assert_non_null(strstr(md, "\n| `input.topics` | `CHURND_INPUT_TOPICS` | list "
                               "of topics | `crm.events,helpdesk.events` |"));
    /* One row per option, and names and env names are unique. */
    size_t rows = 0;
    for (const char *p = md; (p = strchr(p, '\n')) != NULL; p++) rows++;
    assert_int_equal(rows, config_n_options() + 2);
    for (size_t i = 0; i < config_n_options(); i++) {
        const char *n = config_option_name(i);
        char want[300];
        snprintf(want, sizeof(want), "| `%s%s` |", n,
                 strcmp(n, "kafka") ? "" : ".<property>");
        if (!strstr(md, want)) fail_msg("%s missing from the Markdown", n);
        for (size_t j = 0; j < i; j++) assert_string_not_equal(n, config_option_name(j));
        /* No option may shadow librdkafka's CHURND_KAFKA_ namespace. */
        assert_true(strncmp(n, "kafka.", 6) != 0);
        /* Env names are unique as well: '.' and '_' both map to '_'. */
        for (size_t j = 0; j < i; j++) {
            char a[128], b[128];
            size_t k;
            const char *o = config_option_name(j);
            for (k = 0; n[k] && k < 127; k++) a[k] = n[k] == '.' ? '_' : n[k];
            a[k] = '\0';
            for (k = 0; o[k] && k < 127; k++) b[k] = o[k] == '.' ? '_' : o[k];
            b[k] = '\0';
            assert_string_not_equal(a, b);
        }
    }
    buf_free(&t);
    buf_free(&m);
}

/* docs/config.md holds the Markdown table between markers; it must be
 * exactly what the table prints. CHURND_TEST_UPDATE_DOCS=1 rewrites it. */
static void test_docs_match_the_table(void **state) {
    (void)state;
    char path[512];
    const char *src = __FILE__, *cut = strstr(src, "tests/unit/test_config.c");
    assert_non_null(cut);
    snprintf(path, sizeof(path), "%.*sdocs/config.md", (int)(cut - src), src);
    char *doc = read_all(path);
    if (!doc) fail_msg("cannot read %s (run from the repository root)", path);
    static const char begin[] = "<!-- options:begin -->\n", end[] = "<!-- options:end -->";
    char *b = strstr(doc, begin), *e = b ? strstr(b, end) : NULL;
    if (!b || !e) fail_msg("%s lacks the options markers", path);
    b += strlen(begin);
    buf_t m;
    buf_init(&m);
    assert_int_equal(config_print_help(&m, 1), 0);
    int same = (size_t)(e - b) == m.len && !memcmp(b, m.data, m.len);
    if (!same && getenv("CHURND_TEST_UPDATE_DOCS")) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fwrite(doc, 1, (size_t)(b - doc), f);
        fwrite(m.data, 1, m.len, f);
        fputs(e, f);
        assert_int_equal(fclose(f), 0);
        same = 1;
    }
    buf_free(&m);
    free(doc);
    if (!same)
        fail_msg("docs/config.md's options table differs from the config table; "
                 "rerun with CHURND_TEST_UPDATE_DOCS=1 to rewrite it");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_the_documented_ones),
        cmocka_unit_test(test_nested_file_sets_every_kind),
        cmocka_unit_test(test_flat_dotted_keys_and_scalar_lists),
        cmocka_unit_test(test_unknown_keys_say_where_and_what_was_meant),
        cmocka_unit_test(test_type_errors_say_what_was_expected),
        cmocka_unit_test(test_duplicate_keys_are_errors),
        cmocka_unit_test(test_yaml_level_errors),
        cmocka_unit_test(test_environment_overrides_the_file),
        cmocka_unit_test(test_environment_errors),
        cmocka_unit_test(test_every_option_has_a_working_env_variable),
        cmocka_unit_test(test_config_set_and_kafka),
        cmocka_unit_test(test_output_topic_must_not_be_an_input),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_dump_loads_back_and_hides_secrets),
        cmocka_unit_test(test_help_lists_every_option),
        cmocka_unit_test(test_docs_match_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
