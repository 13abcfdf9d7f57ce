/*
 * event.h - the input envelope: turning one Kafka message's bytes into an
 * event_t, or into a precise reason why not (which sends the message to the
 * dead-letter topic). Pure: no I/O, no clock, no Kafka.
 *
 * Field paths are dotted ("client_id", "account.id"); the type map renames
 * upstream type names to churnd's catalog ("OrderCreated" -> "order.placed").
 */
#ifndef CHURND_EVENT_H
#define CHURND_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "churnd/common.h"

/* Why a message was rejected. The names (event_reason_name) are stable:
 * they appear in dead letters and metric labels. */
typedef enum event_reason {
    EVENT_OK = 0,
    EVENT_TOO_LARGE,   /* over event.max_bytes */
    EVENT_NOT_UTF8,    /* invalid UTF-8 */
    EVENT_NOT_JSON,    /* cJSON could not parse it, trailing garbage, empty,
                        * raw control characters, or a \u0000 escape */
    EVENT_TOO_DEEP,    /* nesting deeper than event.max_depth */
    EVENT_NOT_OBJECT,  /* valid JSON but not an object */
    EVENT_NO_CLIENT,   /* client path missing, null, empty, not a string or
                        * integer (|n| < 2^53), or over EVENT_CLIENT_MAX-1 bytes */
    EVENT_NO_TYPE,     /* type path missing, empty or not a string */
    EVENT_NO_TIME,     /* time path missing or null */
    EVENT_BAD_TIME,    /* time present but not RFC 3339 or integer epoch ms,
                        * or outside TIME_MIN_MS..TIME_MAX_MS (years 0-9999) */
    EVENT_BAD_ID,      /* id present but not a string or integer, empty, or
                        * over EVENT_ID_MAX-1 bytes (a null id is absent) */
    EVENT__N
} event_reason_t;

const char *event_reason_name(event_reason_t r);

typedef struct event_type_map_entry {
    char *from; /* owned */
    char *to;   /* owned */
} event_type_map_entry_t;

/* Parsed once from config; read-only afterwards. Paths are owned strings. */
typedef struct event_config {
    char *id_path;     /* default "id" */
    char *client_path; /* default "client_id" */
    char *type_path;   /* default "type" */
    char *ts_path;     /* default "ts" */
    event_type_map_entry_t *type_map;
    size_t n_type_map;
    size_t max_bytes;  /* default 1 MiB */
    int max_depth;     /* default 32: objects/arrays nested deeper are rejected */
} event_config_t;

/* Set defaults (all strings allocated). event_config_free releases them. */
int event_config_init(event_config_t *cfg);
void event_config_free(event_config_t *cfg);
/* Replace one path (copying s). CHURN_EINVAL for "", ".a", "a." or "a..b"
 * (the slot is kept). */
int event_config_set_path(char **slot, const char *s);
/* CHURN_EINVAL for an empty name or a from already mapped. */
int event_config_add_type(event_config_t *cfg, const char *from, const char *to);

#define EVENT_CLIENT_MAX 256
#define EVENT_ID_MAX 256

struct event_arena;

typedef struct event {
    cJSON *root;          /* the whole parsed message, inside arena */
    struct event_arena *arena; /* owned: the memory root lives in */
    const char *id;       /* borrowed from root or id_buf; NULL when absent */
    size_t id_len;
    const char *client_id;/* borrowed from root or client_buf; NUL-terminated */
    size_t client_len;
    const char *type;     /* after the type map; borrowed (root or config) */
    int64_t ts_ms;        /* event time */
    char client_buf[32];  /* integer client ids are formatted here */
    char id_buf[32];      /* integer event ids are formatted here */
    /* Where it came from; filled by the caller (Kafka adapter or replay). */
    const char *topic;    /* borrowed */
    int32_t partition;
    int64_t offset;
} event_t;

/* Parse len bytes (not necessarily NUL-terminated; buf may be NULL when len
 * is 0). On success returns EVENT_OK and ev owns a cJSON tree (release with
 * event_clear); nothing in ev points into buf. The tree lives in an arena of
 * its own: read it, but never add to it or cJSON_Delete any part of it. On
 * failure returns the reason, ev holds nothing to release, and detail (if
 * given)
 * says what exactly was wrong in a short sentence for the dead letter,
 * e.g. "field \"ts\": \"yesterday\" is not RFC 3339 or epoch ms".
 * Checks run in this order, the first failure wins: size, UTF-8, nesting
 * depth (a pre-scan, before cJSON recurses), JSON, object, client, type,
 * time, id. The parsed fields of ev are
 * overwritten (an earlier event must have been cleared); topic, partition
 * and offset are left as the caller set them. A leading UTF-8 BOM is
 * skipped. */
event_reason_t event_parse(const event_config_t *cfg, const char *buf,
                           size_t len, event_t *ev, char *detail,
                           size_t detail_size);
void event_clear(event_t *ev);
/* How many blocks ev's arena took: 1 for any parsed event (the parse sizes
 * it from a bound), 0 for none. More would mean the bound is wrong; tests
 * and the fuzz target check it. */
size_t event_arena_blocks(const event_t *ev);
/* Move a parsed event to dst (its pointers into its own buffers follow);
 * src then holds nothing to release. */
void event_move(event_t *dst, event_t *src);

/* Look up a dotted path from the root ("data.amount"), through objects only
 * and case-sensitively. NULL when missing, when a segment is empty, or when
 * an intermediate is not an object (no array indexes: "items.0" is NULL). */
const cJSON *event_path(const cJSON *root, const char *path);
/* Same with a precomputed path split into segments (for compiled rules).
 * n_segs 0 returns root. */
const cJSON *event_path_segs(const cJSON *root, const char *const *segs,
                             size_t n_segs);

#endif
