/*
 * harness.c - see harness.h. Test support code: it may sleep briefly
 * between checks of a condition, always under a deadline.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "churnd/broker.h"

int64_t th_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_pause_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *bootstrap,
                              const char *group) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int ok = rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                               sizeof(errstr)) == RD_KAFKA_CONF_OK;
    if (ok && group)
        ok = rd_kafka_conf_set(conf, "group.id", group, errstr,
                               sizeof(errstr)) == RD_KAFKA_CONF_OK;
    if (ok && type == RD_KAFKA_CONSUMER)
        ok = rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                               sizeof(errstr)) == RD_KAFKA_CONF_OK;
    if (ok && type == RD_KAFKA_PRODUCER)
        ok = rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                               sizeof(errstr)) == RD_KAFKA_CONF_OK &&
             rd_kafka_conf_set(conf, "linger.ms", "5", errstr,
                               sizeof(errstr)) == RD_KAFKA_CONF_OK;
    if (ok)
        ok = rd_kafka_conf_set(conf, "log_level", "3", errstr,
                               sizeof(errstr)) == RD_KAFKA_CONF_OK;
    if (!ok) {
        fprintf(stderr, "harness: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "harness: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int th_broker_start(th_broker_t *b) {
    memset(b, 0, sizeof(*b));
    snprintf(b->prefix, sizeof(b->prefix), "t%ld-%lld-", (long)getpid(),
             (long long)(th_now_ms() % 100000000));
    const char *ext = getenv("CHURND_TEST_BOOTSTRAP");
    if (ext && *ext) {
        snprintf(b->bootstrap, sizeof(b->bootstrap), "%s", ext);
        return 0;
    }
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!b->rk) return -1;
    b->mock = rd_kafka_mock_cluster_new(b->rk, 1);
    if (!b->mock) return -1;
    snprintf(b->bootstrap, sizeof(b->bootstrap), "%s",
             rd_kafka_mock_cluster_bootstraps(b->mock));
    churn_err_t err = {0};
    if (broker_mock_nodelay(b->bootstrap, &err) < 0) {
        fprintf(stderr, "harness: %s\n", err.msg);
        return -1;
    }
    return 0;
}

void th_broker_stop(th_broker_t *b) {
    if (b->mock) rd_kafka_mock_cluster_destroy(b->mock);
    if (b->rk) rd_kafka_destroy(b->rk);
    b->mock = NULL;
    b->rk = NULL;
}

int th_broker_set_up(th_broker_t *b, int up) {
    if (!b->mock) return -1;
    rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(b->mock, 1)
                               : rd_kafka_mock_broker_set_down(b->mock, 1);
    return e ? -1 : 0;
}

static int create_topic_admin(const char *bootstrap, const char *topic,
                              int partitions) {
    char errstr[512];
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, bootstrap, NULL);
    if (!rk) return -1;
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof(errstr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -1;
    if (ev) {
        const rd_kafka_CreateTopics_result_t *res =
            rd_kafka_event_CreateTopics_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
        if (tr && n == 1 &&
            (rd_kafka_topic_result_error(tr[0]) == 0 ||
             rd_kafka_topic_result_error(tr[0]) ==
                 RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS))
            rc = 0;
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_destroy(rk);
    return rc;
}

int th_topic_create(th_broker_t *b, const char *name, int partitions,
                    char *full, size_t fsize) {
    snprintf(full, fsize, "%s%s", b->prefix, name);
    if (b->mock)
        return rd_kafka_mock_topic_create(b->mock, full, partitions, 1) ? -1 : 0;
    return create_topic_admin(b->bootstrap, full, partitions);
}

rd_kafka_t *th_producer_new(const char *bootstrap) {
    return new_client(RD_KAFKA_PRODUCER, bootstrap, NULL);
}

int th_produce(rd_kafka_t *p, const char *topic, const char *key,
               const void *val, size_t len) {
    for (int tries = 0; tries < 1000; tries++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_KEY((void *)key, key ? strlen(key) : 0),
            RD_KAFKA_V_VALUE((void *)val, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (!e) {
            rd_kafka_poll(p, 0);
            return 0;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "harness: produce: %s\n", rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(p, 10);
    }
    return -1;
}

int th_flush(rd_kafka_t *p, int timeout_ms) {
    return rd_kafka_flush(p, timeout_ms) ? -1 : 0;
}

void th_msgs_free(th_msgs_t *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].key);
        free(m->v[i].value);
        free(m->v[i].headers);
    }
    free(m->v);
    memset(m, 0, sizeof(*m));
}

static char *dup_n(const void *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void msgs_push(th_msgs_t *out, const rd_kafka_message_t *m) {
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 64;
        out->v = realloc(out->v, out->cap * sizeof(*out->v));
        if (!out->v) abort();
    }
    th_msg_t *t = &out->v[out->n++];
    t->key = dup_n(m->key, m->key_len);
    t->value = dup_n(m->payload, m->len);
    t->value_len = m->len;
    t->partition = m->partition;
    t->offset = m->offset;
    size_t cap = 1, len = 0;
    char *h = calloc(1, 1);
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == 0 && hdrs) {
        const char *name;
        const void *v;
        size_t vl;
        for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &v, &vl); i++) {
            size_t need = len + strlen(name) + vl + 3;
            if (need > cap) {
                cap = need * 2;
                h = realloc(h, cap);
                if (!h) abort();
            }
            len += (size_t)sprintf(h + len, "%s=", name);
            memcpy(h + len, v, vl);
            len += vl;
            h[len++] = '\n';
            h[len] = '\0';
        }
    }
    t->headers = h;
}

const char *th_header(const th_msg_t *m, const char *name) {
    static char val[1024];
    size_t nl = strlen(name);
    for (const char *p = m->headers; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (!eol) break;
        if ((size_t)(eol - p) > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t vl = (size_t)(eol - p) - nl - 1;
            if (vl >= sizeof(val)) vl = sizeof(val) - 1;
            memcpy(val, p + nl + 1, vl);
            val[vl] = '\0';
            return val;
        }
        p = eol + 1;
    }
    return NULL;
}

static int topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms) {
    int64_t deadline = th_now_ms() + timeout_ms;
    while (th_now_ms() < deadline) {
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        int n = -1;
        if (rd_kafka_metadata(rk, 0, t, &md, 5000) == 0) {
            if (md->topic_cnt == 1 && md->topics[0].err == 0)
                n = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(t);
        if (n > 0) return n;
        th_pause_ms(50);
    }
    return -1;
}

int th_consume_to_end(const char *bootstrap, const char *topic,
                      int timeout_ms, th_msgs_t *out) {
    int64_t deadline = th_now_ms() + timeout_ms;
    char group[64];
    snprintf(group, sizeof(group), "th-reader-%ld", (long)getpid());
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, bootstrap, group);
    if (!rk) return -1;
    int rc = -1;
    int np = topic_partitions(rk, topic, timeout_ms);
    if (np <= 0) goto done;
    int64_t *hi = calloc((size_t)np, sizeof(int64_t));
    int64_t *pos = calloc((size_t)np, sizeof(int64_t));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    int remaining = 0;
    for (int i = 0; i < np; i++) {
        int64_t lo = 0;
        if (rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi[i], 10000)) {
            free(hi);
            free(pos);
            rd_kafka_topic_partition_list_destroy(l);
            goto done;
        }
        pos[i] = lo;
        if (hi[i] > lo) remaining++;
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = lo;
    }
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    while (remaining > 0 && th_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (!m->err && m->partition >= 0 && m->partition < np &&
            m->offset < hi[m->partition]) {
            msgs_push(out, m);
            pos[m->partition] = m->offset + 1;
            if (pos[m->partition] >= hi[m->partition]) remaining--;
        }
        rd_kafka_message_destroy(m);
    }
    if (remaining == 0) rc = 0;
    free(hi);
    free(pos);
    rd_kafka_assign(rk, NULL);
done:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

int64_t th_group_lag_with(rd_kafka_t *rk, const char *const *topics,
                        size_t n_topics) {
    int64_t lag = 0;
    for (size_t t = 0; t < n_topics; t++) {
        int np = topic_partitions(rk, topics[t], 5000);
        if (np <= 0) return -1;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
        for (int i = 0; i < np; i++)
            rd_kafka_topic_partition_list_add(l, topics[t], i);
        if (rd_kafka_committed(rk, l, 5000)) {
            rd_kafka_topic_partition_list_destroy(l);
            return -1;
        }
        for (int i = 0; i < np; i++) {
            int64_t lo = 0, hi = 0;
            if (rd_kafka_query_watermark_offsets(rk, topics[t], i, &lo, &hi, 5000)) {
                rd_kafka_topic_partition_list_destroy(l);
                return -1;
            }
            int64_t c = l->elems[i].offset;
            if (c < 0) c = lo;
            if (hi > c) lag += hi - c;
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    return lag;
}

int64_t th_topics_end(const char *bootstrap, const char *const *topics,
                      size_t n_topics) {
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, bootstrap, NULL);
    if (!rk) return -1;
    int64_t sum = 0;
    for (size_t t = 0; t < n_topics && sum >= 0; t++) {
        int np = topic_partitions(rk, topics[t], 5000);
        if (np <= 0) sum = -1;
        for (int i = 0; sum >= 0 && i < np; i++) {
            int64_t lo = 0, hi = 0;
            if (rd_kafka_query_watermark_offsets(rk, topics[t], i, &lo, &hi, 5000))
                sum = -1;
            else
                sum += hi;
        }
    }
    rd_kafka_destroy(rk);
    return sum;
}

rd_kafka_t *th_group_client(const char *bootstrap, const char *group) {
    return new_client(RD_KAFKA_CONSUMER, bootstrap, group);
}

int64_t th_group_lag(const char *bootstrap, const char *group,
                     const char *const *topics, size_t n_topics) {
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, bootstrap, group);
    if (!rk) return -1;
    int64_t lag = th_group_lag_with(rk, topics, n_topics);
    rd_kafka_destroy(rk);
    return lag;
}

int th_wait_caught_up(const char *bootstrap, const char *group,
                      const char *const *topics, size_t n_topics,
                      int timeout_ms) {
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, bootstrap, group);
    if (!rk) return -1;
    int64_t deadline = th_now_ms() + timeout_ms;
    int rc = -1;
    while (th_now_ms() < deadline) {
        if (th_group_lag_with(rk, topics, n_topics) == 0) {
            rc = 0;
            break;
        }
        th_pause_ms(50);
    }
    rd_kafka_destroy(rk);
    return rc;
}

extern char **environ;

static int env_names_match(const char *a, const char *b) {
    size_t la = strcspn(a, "="), lb = strcspn(b, "=");
    return la == lb && !strncmp(a, b, la);
}

/* The child's environment: ours without the names env changes, then the
 * entries of env that set something. Built before fork, because the test
 * process has librdkafka threads and the child may only do
 * async-signal-safe work until exec. *pid_slot is where the child writes
 * its pid (an entry whose value is TH_ENV_CHILD_PID), or NULL. */
static char **child_environ(const char *const *env, char **pid_slot,
                            size_t *pid_cap) {
    size_t n_ours = 0, n_env = 0;
    while (environ[n_ours]) n_ours++;
    while (env && env[n_env]) n_env++;
    char **v = calloc(n_ours + n_env + 1, sizeof(char *));
    if (!v) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_ours; i++) {
        int changed = 0;
        for (size_t j = 0; j < n_env && !changed; j++)
            changed = env_names_match(environ[i], env[j]);
        if (!changed) v[k++] = environ[i];
    }
    *pid_slot = NULL;
    for (size_t j = 0; j < n_env; j++) {
        const char *eq = strchr(env[j], '=');
        if (!eq) continue; /* an unset */
        if (!strcmp(eq + 1, TH_ENV_CHILD_PID)) {
            size_t name = (size_t)(eq - env[j]) + 1;
            *pid_cap = name + 24;
            char *s = calloc(1, *pid_cap);
            if (!s) abort();
            memcpy(s, env[j], name);
            *pid_slot = s;
            v[k++] = s;
        } else {
            v[k++] = (char *)env[j];
        }
    }
    v[k] = NULL;
    return v;
}

/* Append the decimal pid after "NAME=" without anything that may allocate
 * (we are between fork and exec). */
static void write_pid(char *slot, size_t cap, pid_t pid) {
    char digits[24];
    int n = 0;
    unsigned long v = (unsigned long)pid;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < (int)sizeof(digits));
    size_t at = strlen(slot);
    while (n > 0 && at + 1 < cap) slot[at++] = digits[--n];
    slot[at] = '\0';
}

void th_gen_path(char *out, size_t n) {
    const char *g = getenv("CHURND_TEST_GEN");
    const char *kt = getenv("CHURND_KT");
    if (g && *g)
        snprintf(out, n, "%s", g);
    else if (kt && *kt && strrchr(kt, '/'))
        snprintf(out, n, "%.*s/gen", (int)(strrchr(kt, '/') - kt), kt);
    else
        snprintf(out, n, "build/tests/gen");
}

int th_daemon_start(th_proc_t *p, const char *cfg_path, const char *log_path) {
    return th_daemon_start_env(p, cfg_path, log_path, NULL);
}

int th_daemon_start_env(th_proc_t *p, const char *cfg_path,
                        const char *log_path, const char *const *env) {
    const char *bin = getenv("CHURND_BIN");
    if (!bin) bin = "build/churnd";
    snprintf(p->log_path, sizeof(p->log_path), "%s", log_path);
    char *pid_slot = NULL;
    size_t pid_cap = 0;
    char **envp = environ;
    if (env && !(envp = child_environ(env, &pid_slot, &pid_cap))) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        if (envp != environ) free(envp);
        free(pid_slot);
        return -1;
    }
    if (pid == 0) {
        if (pid_slot) write_pid(pid_slot, pid_cap, getpid());
        /* A failed assertion skips the test's teardown: the daemon must
         * not outlive the test process that started it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0) _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        char *const argv[] = {"churnd", "run", "-c", (char *)cfg_path, NULL};
        execve(bin, argv, envp);
        _exit(127);
    }
    if (envp != environ) free(envp);
    free(pid_slot);
    p->pid = pid;
    return 0;
}

int th_proc_signal(th_proc_t *p, int sig) {
    return p->pid > 0 ? kill(p->pid, sig) : -1;
}

int th_proc_wait(th_proc_t *p, int timeout_ms) {
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            if (WIFEXITED(st)) return WEXITSTATUS(st);
            if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
            return -1;
        }
        if (r < 0) return -1;
        if (th_now_ms() >= deadline) return -1;
        th_pause_ms(20);
    }
}

char *th_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    size_t n;
    while (s && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2048) {
            cap *= 2;
            s = realloc(s, cap);
        }
    }
    fclose(f);
    if (s) s[len] = '\0';
    return s;
}

int th_file_count(const char *path, const char *needle) {
    char *s = th_read_file(path);
    if (!s) return 0;
    int n = 0;
    size_t nl = strlen(needle);
    for (const char *p = s; (p = strstr(p, needle)); p += nl) n++;
    free(s);
    return n;
}

int th_log_wait(const char *log_path, const char *needle, int timeout_ms) {
    int64_t deadline = th_now_ms() + timeout_ms;
    while (th_now_ms() < deadline) {
        if (th_file_count(log_path, needle) > 0) return 0;
        th_pause_ms(20);
    }
    return -1;
}

long th_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

int th_log_wait_from(const char *log_path, long from, const char *needle,
                     int timeout_ms) {
    int64_t deadline = th_now_ms() + timeout_ms;
    while (th_now_ms() < deadline) {
        char *s = th_read_file(log_path);
        long n = s ? (long)strlen(s) : 0;
        int found = s && n >= from && strstr(s + from, needle) != NULL;
        free(s);
        if (found) return 0;
        th_pause_ms(20);
    }
    return -1;
}

int th_tmpdir(char *path, size_t n) {
    const char *base = getenv("TMPDIR");
    snprintf(path, n, "%s/churnd-test-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(path) ? 0 : -1;
}

int th_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    if (fclose(f) != 0) rc = -1;
    return rc;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void th_rmtree(const char *path) {
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int th_run(char *const argv[], const char *out_path, int timeout_ms) {
    return th_run_io(argv, NULL, out_path, NULL, timeout_ms);
}

int th_run_io(char *const argv[], const char *in_path, const char *out_path,
              const char *err_path, int timeout_ms) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = err_path ? open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644)
                           : dup(out);
        if (in < 0 || out < 0 || err < 0) _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        if (in > 2) close(in);
        if (out > 2) close(out);
        if (err > 2) close(err);
        execv(argv[0], argv);
        _exit(127);
    }
    th_proc_t p = {.pid = pid};
    int rc = th_proc_wait(&p, timeout_ms);
    if (rc < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return rc;
}
