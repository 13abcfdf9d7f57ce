/*
 * log_internal.h - test hooks of log.c. Not part of the public log.h: the
 * daemon never calls these; tests use them to drive the clock instead of
 * sleeping, and to start each case from a clean rate-limit state.
 */
#ifndef CHURND_LOG_INTERNAL_H
#define CHURND_LOG_INTERNAL_H

#include <stdint.h>

/* Milliseconds since the epoch. Installed, it is both the wall clock the
 * ts= field shows and the clock the rate limit counts on; NULL restores
 * CLOCK_REALTIME and CLOCK_MONOTONIC. */
typedef int64_t (*log_clock_fn)(void);
void log_set_clock(log_clock_fn fn);

/* Forget every message key's budget and suppressed count. */
void log_reset_rate_limit(void);

/* Forget the secrets of log_add_secret. */
void log_reset_secrets(void);

#endif
