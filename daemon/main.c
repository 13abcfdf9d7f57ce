/*
 * main.c - the command line: parse options into a config, then hand over
 * to one command. Only main decides how the process exits.
 *
 *   churnd run [-c FILE] [--embedded-broker] [--set NAME=VALUE]...
 *   churnd check RULES_DIR
 *   churnd test TEST_FILE...
 *   churnd replay -r RULES_DIR [--until TS] [--state DIR] [--lateness D] EVENTS|-
 *   churnd state [-c FILE] [--state DIR] [-r RULES_DIR] [--json] CLIENT
 *   churnd report --from D --to D [--margin M] [--lapse D] [--horizon D] [--json]
 *   churnd config [--markdown]
 *   churnd version
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "churnd/cli.h"
#include "churnd/config.h"
#include "churnd/engine.h"
#include "churnd/log.h"
#include "internal.h"

#ifndef CHURND_VERSION
#define CHURND_VERSION "0.1.0"
#endif

extern char **environ;

static void usage(FILE *f) {
    fprintf(f,
            "usage: churnd <command> [options]\n"
            "\n"
            "commands:\n"
            "  run [-c FILE] [--embedded-broker] [--set NAME=VALUE]...\n"
            "        run the daemon (config file, then CHURND_* environment,\n"
            "        then --set); --embedded-broker starts an in-process\n"
            "        Kafka-protocol broker on loopback and prints its address\n"
            "  check RULES_DIR\n"
            "        validate a rules directory; every error is listed\n"
            "  test TEST_FILE...\n"
            "        run rule unit tests: events in, the exact alerts expected\n"
            "  replay -r RULES_DIR [--until TS] [--state DIR] [--lateness D]\n"
            "         [--chunk N] [-c FILE] EVENTS.jsonl|-\n"
            "        evaluate rules over a file of JSON events in event time,\n"
            "        without Kafka; prints the alerts as JSON lines\n"
            "  state [-c FILE] [--state DIR] [-r RULES_DIR] [--json] CLIENT\n"
            "        one client's features, open expectations, rules, risk and\n"
            "        history, read from the state directory (safe while running)\n"
            "  report --from DATE --to DATE [--margin M] [--lapse D] [--horizon D]\n"
            "         [-c FILE] [--state DIR] [--json]\n"
            "        the period's churn economics and the symptoms before each\n"
            "        loss, read from the state directory\n"
            "  config [--markdown]\n"
            "        list every configuration option with its default\n"
            "  version\n"
            "\n"
            "exit codes of run: 0 drained after SIGTERM/SIGINT, 1 bad config or\n"
            "rules, 2 state directory error, 3 fatal Kafka error, 4 drain timed out\n");
}

static int cmd_run(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"embedded-broker", no_argument, NULL, 'E'},
        {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* A reload request (systemd's ExecReload, an operator) that comes
     * before the loop has its SIGHUP handler would kill the process: there
     * are no rules to reload yet, so ignore it until then (uv_signal_start
     * replaces this disposition). */
    signal(SIGHUP, SIG_IGN);
    const char *path = NULL;
    int embedded = 0;
    int c;
    /* --set values are applied after the file and environment. */
    char **sets = calloc((size_t)argc + 1, sizeof(char *));
    size_t n_sets = 0;
    if (!sets) return EXIT_USAGE;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'E': embedded = 1; break;
        case 's': sets[n_sets++] = optarg; break;
        case 'h': usage(stdout); free(sets); return 0;
        default: usage(stderr); free(sets); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "churnd run: unexpected argument '%s'\n", argv[optind]);
        free(sets);
        return EXIT_USAGE;
    }
    config_t cfg;
    churn_err_t err = {0};
    char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
    int rc = config_init(&cfg, &err);
    if (rc == 0) rc = config_load(&cfg, path, environ, &err);
    for (size_t i = 0; rc == 0 && i < n_sets; i++) {
        char *eq = strchr(sets[i], '=');
        if (!eq) {
            rc = churn_err_set(&err, CHURN_EINVAL,
                               "--set %s: expected NAME=VALUE", sets[i]);
            break;
        }
        *eq = '\0';
        if (!strncmp(sets[i], "kafka.", 6))
            rc = config_set_kafka(&cfg, sets[i] + 6, eq + 1);
        else
            rc = config_set(&cfg, sets[i], eq + 1, &err);
        *eq = '=';
    }
    free(sets);
    if (rc == 0) rc = config_validate(&cfg, &err); /* --set may break it */
    if (rc != 0) {
        fprintf(stderr, "churnd: config: %s\n", churn_err_str(&err, line, sizeof(line)));
        config_free(&cfg);
        return EXIT_USAGE;
    }
    log_setup(cfg.log_level, cfg.log_format);
    rc = daemon_run(&cfg, embedded);
    config_free(&cfg);
    return rc;
}

static int cmd_check(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: churnd check RULES_DIR\n");
        return EXIT_USAGE;
    }
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    int rc = ruleset_load_dir(argv[1], &rs, &errs);
    if (rc != 0) {
        char line[CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32];
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", churn_err_str(&errs.v[i], line, sizeof(line)));
        fprintf(stderr, "%s: %zu error%s\n", argv[1], errs.n,
                errs.n == 1 ? "" : "s");
        churn_errs_free(&errs);
        return EXIT_USAGE;
    }
    printf("%s: ok, %zu rules, %zu features, hash %s\n", argv[1],
           ruleset_n_rules(rs), ruleset_n_features(rs), ruleset_hash(rs));
    ruleset_free(rs);
    churn_errs_free(&errs);
    return 0;
}

static int cmd_config(int argc, char **argv) {
    int md = argc > 1 && !strcmp(argv[1], "--markdown");
    buf_t b;
    buf_init(&b);
    if (config_print_help(&b, md) != 0) {
        buf_free(&b);
        return EXIT_USAGE;
    }
    fwrite(b.data, 1, b.len, stdout);
    buf_free(&b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "test")) return cmd_test(argc - 1, argv + 1);
    if (!strcmp(cmd, "replay")) return cmd_replay(argc - 1, argv + 1);
    if (!strcmp(cmd, "state")) return cmd_state(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "config")) return cmd_config(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("churnd %s (librdkafka %s)\n", CHURND_VERSION, rd_kafka_version_str());
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "churnd: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
