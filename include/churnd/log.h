/*
 * log.h - the one way churnd writes to stderr: one line per event of note,
 * logfmt by default or JSON, with level, component, message and typed
 * fields. A message key that floods (bad input) is rate-limited: past the
 * budget its lines are dropped and the next line that gets through carries
 * "suppressed=N". Configured secrets are registered with log_add_secret()
 * and replaced by <redacted> in every line.
 */
#ifndef CHURND_LOG_H
#define CHURND_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
    LOG_FATAL = 4,
} log_level_t;

typedef enum log_format { LOG_FMT_LOGFMT = 0, LOG_FMT_JSON = 1 } log_format_t;

typedef enum log_ftype { LF_T_STR, LF_T_INT, LF_T_DBL, LF_T_BOOL } log_ftype_t;

typedef struct log_field {
    const char *key;
    log_ftype_t type;
    const char *s; /* LF_T_STR; NULL prints as empty */
    int64_t i;     /* LF_T_INT, LF_T_BOOL */
    double d;      /* LF_T_DBL */
} log_field_t;

#define LF_STR(k, v) ((log_field_t){.key = (k), .type = LF_T_STR, .s = (v)})
#define LF_INT(k, v) ((log_field_t){.key = (k), .type = LF_T_INT, .i = (int64_t)(v)})
#define LF_DBL(k, v) ((log_field_t){.key = (k), .type = LF_T_DBL, .d = (double)(v)})
#define LF_BOOL(k, v) ((log_field_t){.key = (k), .type = LF_T_BOOL, .i = !!(v)})

void log_setup(log_level_t min_level, log_format_t fmt);
int log_level_parse(const char *s, log_level_t *out);
int log_enabled(log_level_t lvl);

/* Rate limit: at most burst lines per message key per second (0: off). */
void log_set_rate_limit(unsigned burst_per_sec);

void log_emit(log_level_t lvl, const char *component, const char *msg,
              const log_field_t *fields, size_t n_fields);

/* Lines of a flooding message dropped by the rate limit are counted; the
 * next line of that message that gets through carries suppressed=N. Call
 * this periodically (the daemon does, every second) so a flood that
 * stopped is summed up too, once its message was quiet for a second:
 *   level=warn component=events msg="repeated lines suppressed"
 *   message="invalid event sent to the dead-letter topic" suppressed=312 */
void log_flush_suppressed(void);

/* Never write this value: wherever it appears in a message or a string
 * field it is replaced by <redacted>. For configured secrets (sasl.password
 * and the like, see config_is_secret), so that no library error message
 * or log line can carry one. Copied; empty values are ignored. */
void log_add_secret(const char *value);

#define LOG_FIELDS_(...) ((const log_field_t[]){LF_STR("", NULL), __VA_ARGS__})
#define LOG_N_(...) (sizeof(LOG_FIELDS_(__VA_ARGS__)) / sizeof(log_field_t) - 1)
/* LOG(LOG_INFO, "kafka", "partition assigned", LF_STR("topic", t), LF_INT("partition", p)); */
#define LOG(lvl, comp, msg, ...)                                              \
    do {                                                                      \
        if (log_enabled(lvl))                                                 \
            log_emit((lvl), (comp), (msg), LOG_FIELDS_(__VA_ARGS__) + 1,      \
                     LOG_N_(__VA_ARGS__));                                    \
    } while (0)
#define LOG0(lvl, comp, msg)                                                  \
    do {                                                                      \
        if (log_enabled(lvl)) log_emit((lvl), (comp), (msg), NULL, 0);        \
    } while (0)

#endif
