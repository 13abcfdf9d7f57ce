/*
 * broker.h - making librdkafka's mock cluster behave like a Kafka broker
 * where it matters to timing. The mock is the embedded broker of `churnd
 * run --embedded-broker`, of the tests and of the bench (broker.c).
 */
#ifndef CHURND_BROKER_H
#define CHURND_BROKER_H

#include "churnd/common.h"

/* Turn Nagle's algorithm off on the listening sockets of this process
 * that serve bootstraps ("host:port[,host:port...]", as
 * rd_kafka_mock_cluster_bootstraps gives it), and so on every connection
 * they accept later. Returns how many listeners it set, or a negative
 * CHURN_E* with err set when it found none. */
int broker_mock_nodelay(const char *bootstraps, churn_err_t *err);

#endif
