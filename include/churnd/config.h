/*
 * config.h - churnd's configuration: one YAML file, environment overrides,
 * defaults such that a bare `churnd run --embedded-broker` works.
 *
 * Every option is one row of the table in config.c (name, type, default,
 * bounds, description); parsing, environment overrides (CHURND_<NAME> with
 * dots as underscores, e.g. CHURND_BATCH_MAX_EVENTS), validation, `churnd
 * config --help` and the README's options table all come from that table.
 *
 * The `kafka:` section is passed through to librdkafka untouched (any
 * property, SASL/TLS included); CHURND_KAFKA_<PROP> overrides it with
 * underscores read as dots (CHURND_KAFKA_BOOTSTRAP_SERVERS) and "__" as a
 * literal underscore (CHURND_KAFKA_LOG__LEVEL -> log_level).
 *
 * Any other CHURND_* variable that is not an option is an error (a typo
 * must not be silently ignored), except the test harness's own:
 * CHURND_BIN, CHURND_KT and CHURND_TEST_* (CHURND_TEST_BOOTSTRAP, ...).
 */
#ifndef CHURND_CONFIG_H
#define CHURND_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/common.h"
#include "churnd/event.h"
#include "churnd/log.h"

typedef struct config_kv {
    char *key; /* owned */
    char *val; /* owned */
} config_kv_t;

typedef struct config {
    /* kafka: librdkafka properties, in file order, env overrides applied */
    config_kv_t *kafka;
    size_t n_kafka;

    /* input */
    char **input_topics;           /* input.topics */
    size_t n_input_topics;
    char *group_id;                /* input.group_id */

    /* output */
    char *alerts_topic;            /* output.alerts_topic */
    char *deadletter_topic;        /* output.deadletter_topic */

    /* rules, state */
    char *rules_dir;               /* rules.dir */
    char *state_dir;               /* state.dir */
    int64_t cache_clients;         /* state.cache_clients */
    int64_t cache_memory_bytes;    /* state.cache_memory (size) */
    int64_t block_cache_bytes;     /* state.block_cache (size: "64MiB") */
    int state_sync;                /* state.sync */
    int state_ledger;              /* state.ledger */

    /* micro-batches */
    int64_t batch_max_events;      /* batch.max_events */
    int64_t batch_max_ms;          /* batch.max_wait (duration) */

    /* events */
    event_config_t event;          /* event.id_path, client_path, type_path,
                                      ts_path, type_map, max_bytes, max_depth */
    int64_t dedup_window_ms;       /* event.dedup_window */
    int64_t dedup_max_ids;         /* event.dedup_max_ids */

    /* time (SPEC section 4) */
    int64_t allowed_lateness_ms;   /* time.allowed_lateness */
    int64_t idle_timeout_ms;       /* time.idle_timeout */

    /* process */
    int64_t shutdown_timeout_ms;   /* shutdown.timeout */
    char *http_listen;             /* http.listen, "127.0.0.1:9464" */
    int64_t http_timeout_ms;       /* http.request_timeout */
    int64_t http_max_conns;        /* http.max_connections */
    int64_t http_stall_ms;         /* http.stall_timeout (/readyz) */
    log_level_t log_level;         /* log.level */
    log_format_t log_format;       /* log.format */

    /* embedded broker (--embedded-broker) */
    int64_t embedded_partitions;   /* embedded.partitions */
} config_t;

/* Defaults for every option. */
int config_init(config_t *c, churn_err_t *err);
void config_free(config_t *c);

/* Load a YAML file over the defaults (path NULL: defaults only), then apply
 * the environment (envp: NULL-terminated "K=V" strings, usually environ).
 * Unknown keys are errors, with "did you mean" where a close name exists;
 * errors carry file:line:column. */
int config_load(config_t *c, const char *path, char *const *envp,
                churn_err_t *err);

/* Set one option by its dotted name from a string ("batch.max_events",
 * "5000"); used by the environment, `--set k=v` and tests. */
int config_set(config_t *c, const char *name, const char *value,
               churn_err_t *err);

/* Set or replace a librdkafka property. */
int config_set_kafka(config_t *c, const char *key, const char *val);
const char *config_get_kafka(const config_t *c, const char *key);

/* Does this librdkafka/config key hold a secret (password, secret, key
 * material)? Such values are never printed. */
int config_is_secret(const char *key);

/* Print the options table: as text for --help, or as a Markdown table. */
int config_print_help(buf_t *out, int markdown);

/* Checks across options (an output topic that is also an input topic).
 * config_load runs it last; run it again after config_set (--set). */
int config_validate(const config_t *c, churn_err_t *err);

/* The effective configuration as YAML that config_load reads back, with
 * secret kafka values (config_is_secret) written as "<redacted>". */
int config_dump(buf_t *out, const config_t *c);

/* The options table by index (0 .. config_n_options()-1), for tests and
 * tools; the "kafka" row stands for the whole kafka: section. */
size_t config_n_options(void);
const char *config_option_name(size_t i);

#endif
