/*
 * inspect.c - the commands that read a state directory without changing
 * it, safely beside a running daemon: `churnd state CLIENT` (one client's
 * features, open expectations, rules, risk and history) and `churnd report`
 * (the churn report of report.h over every client).
 *
 * Both open the directory as a RocksDB secondary (store.h): it sees what
 * the daemon has committed when it opens, takes no lock, and writes only to
 * its own temporary directory. They read the daemon's config file (-c) for
 * state.dir and rules.dir, as the daemon would, and take --state / -r over
 * it.
 *
 * Exit codes: 0 shown, 1 bad command line or config, 2 the state directory
 * could not be read, 3 (state) no such client.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "churnd/cli.h"
#include "churnd/config.h"
#include "churnd/ledger.h"
#include "churnd/report.h"
#include "churnd/rules.h"
#include "churnd/timeutil.h"

extern char **environ;

enum { INSPECT_OK = 0, INSPECT_USAGE = 1, INSPECT_STATE = 2, INSPECT_NOT_FOUND = 3 };

#define ERR_LINE (CHURN_ERR_MSG_MAX + CHURN_ERR_FILE_MAX + 32)

typedef struct inspect_args {
    const char *config;
    const char *state_dir;
    const char *rules_dir;
    int json;
} inspect_args_t;

/* The config as the daemon would read it (file, then CHURND_* variables),
 * so `churnd state` finds the directory the daemon writes. */
static int load_config(const char *cmd, const inspect_args_t *a, config_t *cfg) {
    churn_err_t err = {0};
    char line[ERR_LINE];
    int rc = config_init(cfg, &err);
    if (!rc) rc = config_load(cfg, a->config, environ, &err);
    if (!rc) rc = config_validate(cfg, &err);
    if (rc) {
        fprintf(stderr, "churnd %s: config: %s\n", cmd, churn_err_str(&err, line, sizeof(line)));
        config_free(cfg);
    }
    return rc;
}

static int open_store(const char *cmd, const char *dir, store_t **s) {
    churn_err_t err = {0};
    char line[ERR_LINE];
    store_opts_t o = {.dir = dir, .mode = STORE_SECONDARY};
    if (store_open(&o, s, &err) != 0) {
        fprintf(stderr, "churnd %s: %s\n", cmd, churn_err_str(&err, line, sizeof(line)));
        return -1;
    }
    return 0;
}

/* ---- churnd state ---- */

static void state_usage(FILE *f) {
    fprintf(f, "usage: churnd state [-c FILE] [--state DIR] [-r RULES_DIR] [--json] CLIENT\n"
               "  show one client's committed state: features, open expectations,\n"
               "  rules, risk and history; safe while the daemon runs\n");
}

static void print_time_field(const cJSON *o, const char *name, const char *label) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsString(v)) printf("  %s %s", label, v->valuestring);
}

/* The JSON of cstate_format_json, for a person. */
static int print_state_text(const char *json, uint32_t part) {
    cJSON *root = cJSON_Parse(json);
    if (!root) return -1;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "client_id");
    const cJSON *risk = cJSON_GetObjectItemCaseSensitive(root, "risk");
    const cJSON *wake = cJSON_GetObjectItemCaseSensitive(root, "next_wake");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "recent_event_ids");
    printf("client %s (partition %u)\n", cJSON_IsString(id) ? id->valuestring : "?", part);
    printf("risk %g   next wake %s   recent event ids %d\n",
           cJSON_IsNumber(risk) ? risk->valuedouble : 0,
           cJSON_IsString(wake) ? wake->valuestring : "none",
           cJSON_IsNumber(ids) ? ids->valueint : 0);

    const cJSON *feats = cJSON_GetObjectItemCaseSensitive(root, "features");
    const cJSON *f;
    printf("\nfeatures\n");
    cJSON_ArrayForEach(f, feats) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(f, "kind");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(f, "state");
        char *s = st ? cJSON_PrintUnformatted(st) : NULL;
        printf("  %-24s %-7s %s\n", f->string, cJSON_IsString(kind) ? kind->valuestring : "",
               s ? s : "");
        free(s);
    }

    printf("\nopen expectations\n");
    int any = 0;
    cJSON_ArrayForEach(f, feats) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(f, "state");
        const cJSON *aw = cJSON_GetObjectItemCaseSensitive(st, "awaiting");
        const cJSON *x;
        cJSON_ArrayForEach(x, aw) {
            const cJSON *key = cJSON_GetObjectItemCaseSensitive(x, "key");
            const cJSON *exp = cJSON_GetObjectItemCaseSensitive(x, "expired");
            printf("  %-24s key %s", f->string, cJSON_IsString(key) ? key->valuestring : "?");
            print_time_field(x, "opened_at", "opened");
            print_time_field(x, "deadline", "due");
            printf("%s\n", cJSON_IsTrue(exp) ? "  (expired)" : "");
            any = 1;
        }
    }
    if (!any) printf("  none\n");

    printf("\nrules\n");
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(root, "rules");
    cJSON_ArrayForEach(f, rules) {
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(f, "status");
        printf("  %-24s %-8s", f->string, cJSON_IsString(status) ? status->valuestring : "?");
        print_time_field(f, "since", "since");
        print_time_field(f, "fired_at", "fired");
        print_time_field(f, "alert_id", "alert");
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(f, "incidents")) {
            const cJSON *key = cJSON_GetObjectItemCaseSensitive(x, "key");
            printf("\n  %-24s   key %s", "", cJSON_IsString(key) ? key->valuestring : "?");
            print_time_field(x, "fired_at", "fired");
        }
        printf("\n");
    }

    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "history");
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(h, "first_activity");
    const cJSON *sales = cJSON_GetObjectItemCaseSensitive(h, "sales");
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(sales, "last_order_day");
    const cJSON *orders = cJSON_GetObjectItemCaseSensitive(sales, "orders");
    const cJSON *amount = cJSON_GetObjectItemCaseSensitive(sales, "amount");
    printf("\nhistory\n  first order or contract %s; %d orders, %.2f in sales; last order %s\n",
           cJSON_IsString(first) ? first->valuestring : "none",
           cJSON_IsNumber(orders) ? orders->valueint : 0,
           cJSON_IsNumber(amount) ? amount->valuedouble : 0,
           cJSON_IsString(last) ? last->valuestring : "none");
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(h, "contracts")) {
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(f, "event");
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(f, "value");
        const cJSON *why = cJSON_GetObjectItemCaseSensitive(f, "reason");
        printf("  contract %s", cJSON_IsString(ev) ? ev->valuestring : "?");
        print_time_field(f, "at", "at");
        printf(", value %.2f%s%s\n", cJSON_IsNumber(val) ? val->valuedouble : 0,
               cJSON_IsString(why) ? ", reason " : "", cJSON_IsString(why) ? why->valuestring : "");
    }
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(h, "alerts_fired")) {
        const cJSON *rule = cJSON_GetObjectItemCaseSensitive(f, "rule");
        printf("  alert fired: %-24s", cJSON_IsString(rule) ? rule->valuestring : "?");
        print_time_field(f, "at", "at");
        printf("\n");
    }
    cJSON_Delete(root);
    return 0;
}

int cmd_state(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, 's'},
        {"rules", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    inspect_args_t a = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': a.config = optarg; break;
        case 's': a.state_dir = optarg; break;
        case 'r': a.rules_dir = optarg; break;
        case 'j': a.json = 1; break;
        case 'h': state_usage(stdout); return INSPECT_OK;
        default: state_usage(stderr); return INSPECT_USAGE;
        }
    }
    if (optind != argc - 1 || !argv[optind][0]) {
        fprintf(stderr, "churnd state: expected one client id\n");
        state_usage(stderr);
        return INSPECT_USAGE;
    }
    const char *client = argv[optind];
    config_t cfg;
    if (load_config("state", &a, &cfg)) return INSPECT_USAGE;
    const char *dir = a.state_dir ? a.state_dir : cfg.state_dir;
    const char *rules_dir = a.rules_dir ? a.rules_dir : cfg.rules_dir;

    /* Without a valid rule set the state still shows, less readably: say
     * why, and go on. */
    churn_errs_t errs;
    churn_errs_init(&errs);
    ruleset_t *rs = NULL;
    char line[ERR_LINE];
    if (ruleset_load_dir(rules_dir, &rs, &errs) != 0) {
        fprintf(stderr, "churnd state: rules %s not loaded (%zu error%s; features and "
                        "rules are shown without names):\n", rules_dir, errs.n,
                errs.n == 1 ? "" : "s");
        for (size_t i = 0; i < errs.n && i < 5; i++)
            fprintf(stderr, "  %s\n", churn_err_str(&errs.v[i], line, sizeof(line)));
    }
    churn_errs_free(&errs);

    int rc = INSPECT_OK;
    store_t *s = NULL;
    buf_t val, out;
    buf_init(&val);
    buf_init(&out);
    churn_err_t err = {0};
    cstate_t *st = NULL;
    uint32_t part = 0;
    if (open_store("state", dir, &s)) {
        rc = INSPECT_STATE;
        goto done;
    }
    int frc = store_find_client(s, client, strlen(client), &part, &val, &err);
    if (frc == CHURN_ENOTFOUND) {
        fprintf(stderr, "churnd state: client %s has no state in %s\n", client, dir);
        rc = INSPECT_NOT_FOUND;
        goto done;
    }
    if (frc == 0)
        frc = cstate_decode(val.data, val.len, client, strlen(client), &st, &err);
    if (frc == 0 && cstate_format_json(st, rs, &out) != 0)
        frc = churn_err_set(&err, CHURN_ENOMEM, "out of memory");
    if (frc != 0) {
        fprintf(stderr, "churnd state: %s: %s\n", client, churn_err_str(&err, line, sizeof(line)));
        rc = INSPECT_STATE;
        goto done;
    }
    if (buf_putc(&out, '\0') != 0) {
        rc = INSPECT_STATE;
        goto done;
    }
    if (a.json) printf("%s\n", (const char *)out.data);
    else if (print_state_text((const char *)out.data, part) != 0) rc = INSPECT_STATE;
done:
    cstate_free(st);
    buf_free(&val);
    buf_free(&out);
    store_close(s);
    ruleset_free(rs);
    config_free(&cfg);
    if (fflush(stdout) != 0) return INSPECT_STATE;
    return rc;
}

/* ---- churnd report ---- */

static void report_usage(FILE *f) {
    fprintf(f, "usage: churnd report --from DATE --to DATE [--margin M] [--lapse D]\n"
               "                     [--horizon D] [-c FILE] [--state DIR] [--json]\n"
               "  the period's churn economics and the symptoms before each loss,\n"
               "  from the state directory; safe while the daemon runs.\n"
               "  DATE: 2026-03-01, RFC 3339 or epoch ms; M: 0.3 or 30%%;\n"
               "  --lapse (default 90d): no order this long is a loss;\n"
               "  --horizon (default 90d): how far symptoms are looked for\n");
}

/* "2026-03-01" (midnight UTC), RFC 3339, or epoch ms. */
static int parse_date(const char *s, int64_t *ts_ms) {
    unsigned y, m, d;
    char tail;
    if (strlen(s) == 10 && sscanf(s, "%4u-%2u-%2u%c", &y, &m, &d, &tail) == 3) {
        if (m < 1 || m > 12 || d < 1 || d > 31) return CHURN_EINVAL;
        *ts_ms = time_days_from_civil(y, m, d) * LEDGER_DAY_MS;
        return 0;
    }
    return replay_parse_time(s, ts_ms);
}

static int parse_margin(const char *s, double *m) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s) return CHURN_EINVAL;
    if (*end == '%' && end[1] == '\0') v /= 100;
    else if (*end) return CHURN_EINVAL;
    if (!(v >= 0 && v <= 1)) return CHURN_EINVAL;
    *m = v;
    return 0;
}

typedef struct report_scan {
    report_t *rep;       /* NULL in the first pass */
    int64_t data_end_ms; /* first pass: the newest time seen */
    uint64_t n_clients, n_bad;
    char first_bad[CHURN_ERR_MSG_MAX + 80];
} report_scan_t;

/* The newest time a client's state knows of: its events, its ledger, and
 * the `every` ticks done for it (which follow the watermark, so a client
 * that went quiet still tells how far time has come). */
static int64_t newest_of(const cstate_t *st) {
    int64_t t = st->dd_max_ts;
    for (size_t i = 0; i < st->n_rules; i++)
        if (st->rules[i].tick_ms > t) t = st->rules[i].tick_ms;
    const ledger_t *l = &st->ledger;
    if (l->n_days && l->days[l->n_days - 1].day * LEDGER_DAY_MS > t)
        t = l->days[l->n_days - 1].day * LEDGER_DAY_MS;
    if (l->n_contracts && l->contracts[l->n_contracts - 1].ts_ms > t)
        t = l->contracts[l->n_contracts - 1].ts_ms;
    if (l->n_firings && l->firings[l->n_firings - 1].ts_ms > t)
        t = l->firings[l->n_firings - 1].ts_ms;
    return t;
}

static int report_each(void *arg, uint32_t part, const char *client, size_t len,
                       const void *val, size_t val_len) {
    (void)part;
    report_scan_t *sc = arg;
    cstate_t *st = NULL;
    churn_err_t err = {0};
    int rc = cstate_decode(val, val_len, client, len, &st, &err);
    if (rc == CHURN_ENOMEM) return rc;
    if (rc) {
        /* One unreadable record must not hide the rest: count it and say
         * so at the end. */
        if (!sc->n_bad++)
            snprintf(sc->first_bad, sizeof(sc->first_bad), "%.*s: %s",
                     (int)(len > 64 ? 64 : len), client, err.msg);
        return 0;
    }
    if (!sc->rep) {
        int64_t t = newest_of(st);
        if (t > sc->data_end_ms) sc->data_end_ms = t;
        sc->n_clients++;
    } else {
        rc = report_add_client(sc->rep, st->client_id, st->client_len, &st->ledger,
                               sc->data_end_ms);
    }
    cstate_free(st);
    return rc;
}

int cmd_report(int argc, char **argv) {
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},
        {"margin", required_argument, NULL, 'm'},
        {"lapse", required_argument, NULL, 'l'},
        {"horizon", required_argument, NULL, 'H'},
        {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    inspect_args_t a = {0};
    report_opts_t ro = {.from_ms = INT64_MIN, .to_ms = INT64_MIN,
                        .lapse_ms = 90 * LEDGER_DAY_MS, .horizon_ms = 90 * LEDGER_DAY_MS,
                        .margin = -1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'f': bad = parse_date(optarg, &ro.from_ms); break;
        case 't': bad = parse_date(optarg, &ro.to_ms); break;
        case 'm': bad = parse_margin(optarg, &ro.margin); break;
        case 'l':
            bad = duration_parse(optarg, strlen(optarg), &ro.lapse_ms) || ro.lapse_ms <= 0;
            break;
        case 'H':
            bad = duration_parse(optarg, strlen(optarg), &ro.horizon_ms) || ro.horizon_ms <= 0;
            break;
        case 'c': a.config = optarg; break;
        case 's': a.state_dir = optarg; break;
        case 'j': a.json = 1; break;
        case 'h': report_usage(stdout); return INSPECT_OK;
        default: report_usage(stderr); return INSPECT_USAGE;
        }
        if (bad) {
            const char *what = c == 'm'   ? "a margin between 0 and 1, or 0% to 100%"
                               : c == 'f' || c == 't' ? "a date (2026-03-01), RFC 3339 or epoch ms"
                                                      : "a positive duration such as 90d";
            fprintf(stderr, "churnd report: --%s %s: expected %s\n",
                    c == 'f' ? "from" : c == 't' ? "to" : c == 'm' ? "margin"
                    : c == 'l' ? "lapse" : "horizon", optarg, what);
            return INSPECT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "churnd report: unexpected argument '%s'\n", argv[optind]);
        return INSPECT_USAGE;
    }
    if (ro.from_ms == INT64_MIN || ro.to_ms == INT64_MIN) {
        fprintf(stderr, "churnd report: --from and --to are required\n");
        report_usage(stderr);
        return INSPECT_USAGE;
    }
    if (ro.to_ms <= ro.from_ms) {
        fprintf(stderr, "churnd report: --to must come after --from\n");
        return INSPECT_USAGE;
    }
    config_t cfg;
    if (load_config("report", &a, &cfg)) return INSPECT_USAGE;
    const char *dir = a.state_dir ? a.state_dir : cfg.state_dir;

    int rc = INSPECT_OK;
    store_t *s = NULL;
    buf_t out;
    buf_init(&out);
    churn_err_t err = {0};
    char line[ERR_LINE];
    report_scan_t sc = {.data_end_ms = INT64_MIN};
    if (open_store("report", dir, &s)) {
        rc = INSPECT_STATE;
        goto done;
    }
    /* Two passes: the end of the data (when a lapse has happened) must be
     * known before any client is judged. */
    int src = store_scan_clients(s, UINT32_MAX, report_each, &sc, &err);
    if (!src && !(sc.rep = report_new(&ro))) src = churn_err_set(&err, CHURN_ENOMEM, "out of memory");
    if (!src) {
        sc.n_bad = 0;
        src = store_scan_clients(s, UINT32_MAX, report_each, &sc, &err);
    }
    if (src == CHURN_ENOMEM) churn_err_set(&err, CHURN_ENOMEM, "out of memory");
    if (!src && (a.json ? report_format_json(sc.rep, &out) : report_format_text(sc.rep, &out)))
        src = churn_err_set(&err, CHURN_ENOMEM, "out of memory");
    if (src) {
        fprintf(stderr, "churnd report: %s\n", churn_err_str(&err, line, sizeof(line)));
        rc = INSPECT_STATE;
        goto done;
    }
    fwrite(out.data, 1, out.len, stdout);
    fprintf(stderr, "churnd report: %llu clients read from %s\n",
            (unsigned long long)sc.n_clients, dir);
    if (sc.n_bad) {
        fprintf(stderr, "churnd report: %llu client records could not be read and are "
                        "left out (first: %s)\n", (unsigned long long)sc.n_bad, sc.first_bad);
        rc = INSPECT_STATE;
    }
done:
    report_free(sc.rep);
    buf_free(&out);
    store_close(s);
    config_free(&cfg);
    if (fflush(stdout) != 0) return INSPECT_STATE;
    return rc;
}
