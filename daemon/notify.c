/*
 * notify.c - systemd's notification protocol for Type=notify (see
 * notify.h). It owns one libuv timer and nothing else; it must not decide
 * anything about the daemon's life: a supervisor that cannot be told is
 * logged about, never a reason to stop.
 *
 * Why the watchdog pings from a loop timer and not from a thread: the
 * point of WatchdogSec= is to catch a daemon that is alive but stuck. Every
 * piece of churnd's work (batches, commits, HTTP) runs on this one loop, so
 * a ping that only goes out when the loop turns means "the loop is not
 * stuck". A thread would keep pinging over a wedged loop. We do not stop
 * pinging when Kafka is unreachable or a batch waits for acknowledgements:
 * a restart cures neither, /readyz reports them.
 *
 * Why READY=1 goes out from the timer's first expiry and not straight from
 * daemon_run: then it proves the loop actually runs, which is what start-up
 * promised (rules loaded, state open, Kafka clients created).
 */
#include "churnd/notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "churnd/log.h"

/* Send one notification; log the first failure of a run of failures, and
 * the recovery, so a broken socket cannot flood the log at watchdog pace. */
static void send_state(notify_t *n, const char *state) {
    if (!n->enabled) return;
    int rc = sd_notify(0, state);
    if (rc > 0) {
        n->n_sent++;
        if (n->failing)
            LOG(LOG_INFO, "notify", "the service manager hears us again",
                LF_INT("failed", n->n_failed));
        n->failing = 0;
        return;
    }
    /* 0 would mean NOTIFY_SOCKET vanished from the environment: nothing
     * was sent, which the manager sees as a failure too. */
    n->n_failed++;
    if (!n->failing) {
        const char *first = state;
        size_t len = strcspn(state, "\n");
        char what[64];
        snprintf(what, sizeof(what), "%.*s", (int)(len < 63 ? len : 63), first);
        LOG(LOG_WARN, "notify", "cannot notify the service manager",
            LF_STR("message", what),
            LF_STR("error", rc < 0 ? strerror(-rc) : "NOTIFY_SOCKET is unset"));
    }
    n->failing = 1;
}

/* "KEY=1\nSTATUS=text": a newline in text would start a new assignment,
 * so it is replaced by a space. */
static void send_with_status(notify_t *n, const char *head, const char *status) {
    char msg[NOTIFY_STATUS_MAX + 96];
    int len = snprintf(msg, sizeof(msg), "%s\nSTATUS=", head);
    if (len < 0 || (size_t)len >= sizeof(msg)) return;
    for (const char *p = status ? status : ""; *p && (size_t)len < sizeof(msg) - 1; p++)
        msg[len++] = *p == '\n' ? ' ' : *p;
    msg[len] = '\0';
    send_state(n, msg);
}

static void on_timer(uv_timer_t *t) {
    notify_t *n = t->data;
    if (!n->ready_sent) {
        n->ready_sent = 1;
        /* Stopped before the first turn: READY=1 would contradict it. */
        if (n->stopping) return;
        send_with_status(n, "READY=1", n->status);
        if (n->watchdog_usec > 0)
            LOG(LOG_INFO, "notify", "watchdog on",
                LF_INT("interval_ms", n->watchdog_usec / 1000),
                LF_INT("ping_ms", uv_timer_get_repeat(t)));
        return;
    }
    send_state(n, "WATCHDOG=1");
    n->last_ping_ns = uv_hrtime();
}

void notify_busy(notify_t *n) {
    if (!n->enabled || !n->watchdog_usec || !n->ready_sent) return;
    uint64_t now = uv_hrtime();
    if (now - n->last_ping_ns < n->watchdog_usec * 500u) return;
    send_state(n, "WATCHDOG=1");
    n->last_ping_ns = now;
}

int notify_init(notify_t *n, uv_loop_t *loop) {
    memset(n, 0, sizeof(*n));
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock) return 0; /* no supervisor listening: stay silent */
    n->enabled = 1;
    uint64_t usec = 0;
    /* Positive when WATCHDOG_USEC is set and WATCHDOG_PID is unset or ours
     * (a WATCHDOG_PID naming another process was meant for it). */
    int rc = sd_watchdog_enabled(0, &usec);
    if (rc < 0)
        LOG(LOG_WARN, "notify", "ignoring a malformed watchdog setting",
            LF_STR("WATCHDOG_USEC", getenv("WATCHDOG_USEC")),
            LF_STR("error", strerror(-rc)));
    else if (rc > 0)
        n->watchdog_usec = usec;
    int uv = uv_timer_init(loop, &n->timer);
    if (uv != 0) return uv;
    n->timer.data = n;
    n->timer_init = 1;
    return 0;
}

void notify_start(notify_t *n, const char *status) {
    if (!n->enabled || !n->timer_init) return;
    snprintf(n->status, sizeof(n->status), "%s", status ? status : "");
    /* Half the interval, as sd_watchdog_enabled(3) advises, so a ping late
     * by one slow loop turn is still in time. At least 1 ms: a repeat of 0
     * would make the timer one-shot. */
    uint64_t repeat_ms = 0;
    if (n->watchdog_usec > 0) {
        repeat_ms = n->watchdog_usec / 2000;
        if (repeat_ms == 0) repeat_ms = 1;
    }
    int rc = uv_timer_start(&n->timer, on_timer, 0, repeat_ms);
    if (rc != 0) /* cannot happen on an initialised timer; say so if it does */
        LOG(LOG_WARN, "notify", "cannot start the notification timer",
            LF_STR("error", uv_strerror(rc)));
}

/* Reload messages only make sense between READY=1 and STOPPING=1 (a
 * SIGHUP during the drain still reloads, but the manager already saw us
 * stopping and READY=1 would tell it otherwise). */
void notify_reloading(notify_t *n) {
    if (!n->ready_sent || n->stopping) return;
    /* MONOTONIC_USEC lets a manager that wants it (Type=notify-reload)
     * match this RELOADING=1 with the reload it asked for; older ones
     * ignore it. */
    struct timespec ts;
    char msg[96];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    send_state(n, msg);
}

void notify_reloaded(notify_t *n, const char *status) {
    if (!n->ready_sent || n->stopping) {
        snprintf(n->status, sizeof(n->status), "%s", status ? status : "");
        return;
    }
    send_with_status(n, "READY=1", status);
}

void notify_stopping(notify_t *n, const char *status) {
    if (n->stopping) return;
    n->stopping = 1;
    send_with_status(n, "STOPPING=1", status);
}

static void on_close(uv_handle_t *h) { (void)h; }

void notify_close(notify_t *n) {
    if (!n->timer_init) return;
    n->timer_init = 0;
    if (!uv_is_closing((uv_handle_t *)&n->timer))
        uv_close((uv_handle_t *)&n->timer, on_close);
}
