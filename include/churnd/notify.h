/*
 * notify.h - telling a service manager how the daemon is doing, through
 * systemd's notification protocol (sd_notify(3)): READY=1 once start-up is
 * over and the loop turns, WATCHDOG=1 from a loop timer while the loop
 * keeps turning, RELOADING=1 ... READY=1 around a rules reload, STOPPING=1
 * when the drain (or a fatal stop) begins, each with a human STATUS= line.
 *
 * Everything here is a no-op when NOTIFY_SOCKET is not set (a terminal, a
 * container, the tests), so callers never ask whether systemd is there.
 * A failed send is logged, never fatal: the daemon's work does not depend
 * on its supervisor hearing about it. Only this module sees libsystemd;
 * the header keeps it out of everyone else's includes.
 */
#ifndef CHURND_NOTIFY_H
#define CHURND_NOTIFY_H

#include <stdint.h>

#include <uv.h>

#define NOTIFY_STATUS_MAX 256

typedef struct notify {
    uv_timer_t timer;       /* first turn: READY=1; then WATCHDOG=1 */
    int timer_init;         /* timer initialised: notify_close closes it */
    int enabled;            /* NOTIFY_SOCKET was set at notify_init */
    uint64_t watchdog_usec; /* WATCHDOG_USEC meant for us; 0: no watchdog */
    int ready_sent;         /* READY=1 went out (or was skipped: stopping) */
    int stopping;           /* STOPPING=1 went out: no more READY=1 */
    int failing;            /* the last send failed (logged once) */
    uint64_t last_ping_ns;  /* uv_hrtime of the last WATCHDOG=1 */
    uint64_t n_sent;        /* messages the manager accepted */
    uint64_t n_failed;      /* sends that failed */
    char status[NOTIFY_STATUS_MAX]; /* STATUS= sent with READY=1 */
} notify_t;

/* Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment
 * (n caller-allocated, loop borrowed). Nothing is sent yet. Returns 0, or
 * a negative libuv error when the timer cannot be set up; a malformed
 * WATCHDOG_USEC is logged and treated as no watchdog. */
int notify_init(notify_t *n, uv_loop_t *loop);

/* Start-up is over: on the loop's next turn send READY=1 with status
 * (copied), then, when the watchdog is on, WATCHDOG=1 every half of
 * WATCHDOG_USEC for as long as the loop runs. */
void notify_start(notify_t *n, const char *status);

/* A reload begins (RELOADING=1); notify_reloaded ends it (READY=1 with
 * the outcome as status). Both are skipped before the first READY=1 and
 * after STOPPING=1. */
void notify_reloading(notify_t *n);
void notify_reloaded(notify_t *n, const char *status);

/* The loop is held by a long task that is making progress (a rules
 * reload re-indexing every client): WATCHDOG=1 when the watchdog is on,
 * READY=1 went out, and half the interval has passed since the last ping.
 * Cheap enough to call every few milliseconds. */
void notify_busy(notify_t *n);

/* The daemon is going away (a drain or a fatal stop): STOPPING=1 with
 * status, once. The watchdog keeps pinging while the loop still turns. */
void notify_stopping(notify_t *n, const char *status);

/* Close the timer (its memory is n's, so nothing to free). Idempotent;
 * safe after a notify_init that failed or never ran (n zeroed). */
void notify_close(notify_t *n);

#endif
