/*
 * kt - a small Kafka toolkit for the demo and for people poking at a
 * running churnd, built on tests/lib/harness.c:
 *
 *   kt wait-caught-up -b BOOTSTRAP -g GROUP -t TOPIC[,TOPIC...] [-T SECS]
 *       exit 0 once the group's committed offsets reach the topics' ends
 *       (churnd commits them after state and alerts are safe)
 *   kt alerts -b BOOTSTRAP -t TOPIC [-T SECS]
 *       print every alert on the topic as one readable line
 *
 * kcat covers producing and raw consuming; these two need librdkafka's
 * committed-offset API or JSON formatting that kcat has not.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../lib/harness.h"

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int print_alerts(const char *bs, const char *topic, int timeout_s) {
    th_msgs_t m = {0};
    if (th_consume_to_end(bs, topic, timeout_s * 1000, &m) != 0) {
        fprintf(stderr, "kt: could not read %s to its end\n", topic);
        th_msgs_free(&m);
        return 1;
    }
    for (size_t i = 0; i < m.n; i++) {
        cJSON *a = cJSON_Parse(m.v[i].value);
        if (!a) {
            printf("(not JSON) %s\n", m.v[i].value);
            continue;
        }
        const cJSON *risk = cJSON_GetObjectItemCaseSensitive(a, "risk");
        char status[16];
        snprintf(status, sizeof(status), "%s", jstr(a, "status"));
        for (char *p = status; *p; p++)
            if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
        printf("%-8s %-8s %-22s %-10s at %-24s %s (risk %g)\n", status,
               jstr(a, "severity"), jstr(a, "rule"), jstr(a, "client_id"),
               jstr(a, "at"), jstr(a, "summary"),
               cJSON_IsNumber(risk) ? risk->valuedouble : 0.0);
        cJSON_Delete(a);
    }
    printf("%zu alert%s on %s\n", m.n, m.n == 1 ? "" : "s", topic);
    th_msgs_free(&m);
    return 0;
}

static int wait_caught_up(const char *bs, const char *group, char *topics,
                          int timeout_s) {
    const char *list[64];
    size_t n = 0;
    for (char *t = strtok(topics, ","); t && n < 64; t = strtok(NULL, ","))
        list[n++] = t;
    if (th_wait_caught_up(bs, group, list, n, timeout_s * 1000) != 0) {
        fprintf(stderr, "kt: group %s did not catch up within %ds\n", group,
                timeout_s);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: kt wait-caught-up|alerts -b BOOTSTRAP ...\n");
        return 2;
    }
    const char *cmd = argv[1];
    const char *bs = NULL, *group = NULL;
    char *topics = NULL;
    int timeout_s = 60;
    int c;
    optind = 2;
    while ((c = getopt(argc, argv, "b:g:t:T:")) != -1) {
        switch (c) {
        case 'b': bs = optarg; break;
        case 'g': group = optarg; break;
        case 't': topics = optarg; break;
        case 'T': timeout_s = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!bs || !topics) {
        fprintf(stderr, "kt: -b and -t are required\n");
        return 2;
    }
    if (!strcmp(cmd, "alerts")) return print_alerts(bs, topics, timeout_s);
    if (!strcmp(cmd, "wait-caught-up")) {
        if (!group) {
            fprintf(stderr, "kt: -g is required\n");
            return 2;
        }
        return wait_caught_up(bs, group, topics, timeout_s);
    }
    fprintf(stderr, "kt: unknown command %s\n", cmd);
    return 2;
}
