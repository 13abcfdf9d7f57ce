/*
 * broker.c - `churnd run --embedded-broker`: librdkafka's mock cluster,
 * started in this process, listening on loopback and speaking the real
 * Kafka protocol over TCP, so churnd, kcat and the tests have a broker on a
 * machine with none. It is a development and demo aid: it keeps only about
 * 5 MiB or 100,000 messages per partition and nothing survives the process.
 */
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "churnd/log.h"
#include "internal.h"

int broker_start(daemon_t *d, churn_err_t *err) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The mock cluster needs a client handle to hang from; it is not used
     * for anything else. */
    if (rd_kafka_conf_set(conf, "client.id", "churnd-embedded-broker", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return churn_err_set(err, CHURN_EKAFKA, "%s", errstr);
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return churn_err_set(err, CHURN_EKAFKA, "%s", errstr);
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        rd_kafka_destroy(rk);
        return churn_err_set(err, CHURN_EKAFKA, "cannot create the mock cluster");
    }
    d->mock = mc;
    d->mock_rk = rk;
    const config_t *cfg = d->cfg;
    int parts = (int)cfg->embedded_partitions;
    for (size_t i = 0; i < cfg->n_input_topics; i++)
        rd_kafka_mock_topic_create(mc, cfg->input_topics[i], parts, 1);
    rd_kafka_mock_topic_create(mc, cfg->alerts_topic, parts, 1);
    rd_kafka_mock_topic_create(mc, cfg->deadletter_topic, parts, 1);
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
    if (config_set_kafka(d->cfg, "bootstrap.servers", bs) != 0)
        return churn_err_set(err, CHURN_ENOMEM, "out of memory");
    /* The one line on stdout a script or a person looks for. */
    printf("bootstrap=%s\n", bs);
    fflush(stdout);
    LOG(LOG_INFO, "broker", "embedded broker listening", LF_STR("bootstrap", bs),
        LF_INT("partitions", parts));
    return 0;
}

void broker_stop(daemon_t *d) {
    if (d->mock) rd_kafka_mock_cluster_destroy(d->mock);
    if (d->mock_rk) rd_kafka_destroy(d->mock_rk);
    d->mock = NULL;
    d->mock_rk = NULL;
}
