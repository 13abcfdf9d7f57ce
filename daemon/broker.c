/*
 * broker.c - `churnd run --embedded-broker`: librdkafka's mock cluster,
 * started in this process, listening on loopback and speaking the real
 * Kafka protocol over TCP, so churnd, kcat and the tests have a broker on a
 * machine with none. It is a development and demo aid: it keeps only about
 * 5 MiB or 100,000 messages per partition and nothing survives the process.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "churnd/broker.h"
#include "churnd/log.h"
#include "internal.h"

#define MAX_PORTS 16

/* The ports of bootstraps, at most max; how many. */
static size_t bootstrap_ports(const char *bootstraps, int *ports, size_t max) {
    size_t n = 0;
    const char *p = bootstraps;
    while (p && *p && n < max) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *colon = NULL;
        for (const char *q = p; q < end; q++)
            if (*q == ':') colon = q;
        if (colon) {
            char *stop;
            long port = strtol(colon + 1, &stop, 10);
            if (stop == end && port > 0 && port < 65536) ports[n++] = (int)port;
        }
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

/* The local TCP port fd listens on, or -1 when it is no listening TCP
 * socket. */
static int listening_port(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return -1;
    int v = 0;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0 || !v) return -1;
    len = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) != 0 || v != IPPROTO_TCP)
        return -1;
    struct sockaddr_storage sa;
    len = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0) return -1;
    if (sa.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return -1;
}

/* Kafka brokers set TCP_NODELAY on the connections they accept;
 * librdkafka's mock cluster (2.0.2) does not, and has no hook on its
 * sockets. With Nagle on, when it answers two pipelined requests back to
 * back (a producer sends one ProduceRequest per partition), the second
 * answer waits for the client's delayed ACK: produce round trips of 41-44
 * ms where the others take under 3 ms, stalls in the bench's latency
 * row. Linux gives an accepted socket its listener's TCP_NODELAY, so the
 * listener is found among this process's descriptors and set once. */
int broker_mock_nodelay(const char *bootstraps, churn_err_t *err) {
    int ports[MAX_PORTS];
    size_t n_ports = bootstrap_ports(bootstraps, ports, MAX_PORTS);
    if (n_ports == 0)
        return churn_err_set(err, CHURN_EINVAL, "no port in bootstrap list '%s'",
                             bootstraps ? bootstraps : "");
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return churn_err_set(err, CHURN_EIO, "cannot list /proc/self/fd: %s",
                             strerror(errno));
    int found = 0, set = 0, set_errno = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end || end == de->d_name || fd == dirfd(dir)) continue;
        int port = listening_port((int)fd);
        for (size_t i = 0; port > 0 && i < n_ports; i++) {
            if (ports[i] != port) continue;
            int one = 1;
            found++;
            if (setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
                set++;
            else
                set_errno = errno;
            break;
        }
    }
    closedir(dir);
    if (found == 0)
        return churn_err_set(err, CHURN_EIO,
                             "no listening socket of this process serves '%s'",
                             bootstraps);
    if (set == 0)
        return churn_err_set(err, CHURN_EIO, "cannot set TCP_NODELAY on the "
                             "listener of '%s': %s", bootstraps, strerror(set_errno));
    return set;
}

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
    churn_err_t nerr = {0};
    if (broker_mock_nodelay(bs, &nerr) < 0) /* slower, still correct */
        LOG(LOG_WARN, "broker", "Nagle's algorithm stays on", LF_STR("error", nerr.msg));
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
