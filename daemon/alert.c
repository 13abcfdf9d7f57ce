/*
 * alert.c - an alert's owned fields and its JSON text on the alerts topic
 * (SPEC section 5). Pure.
 *
 * The text is one line, fields in the order of SPEC section 5, separated
 * by ", " and ": " exactly as the example there; no trailing newline (a
 * JSON-lines writer adds it):
 *
 *   {"alert_id": "...", "rule": "...", "status": "firing",
 *    "severity": "...", "client_id": "...", "at": "...", "summary": "...",
 *    "labels": {...}, "values": {...}, "risk": 40,
 *    "trigger": {"event_id": "..."} | {"timer": true},
 *    "repeat": n,                  <- only on repeat notifications (n >= 1)
 *    "emitted_at": "..."}          <- only when emitted_at_ms >= 0
 *
 * labels_json and values_json are inserted as they are (the engine builds
 * them in the same style).
 */
#include "churnd/rules.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/timeutil.h"

void alert_clear(alert_t *a) {
    free(a->alert_id);
    free(a->client_id);
    free(a->summary);
    free(a->labels_json);
    free(a->values_json);
    free(a->trigger_event_id);
    memset(a, 0, sizeof(*a));
}

int alert_id_format(buf_t *b, const char *rule, const char *client,
                    size_t client_len, const char *key, size_t key_len,
                    int64_t fired_at_ms) {
    char t[TIME_RFC3339_MAX];
    time_format_rfc3339(fired_at_ms, t, sizeof(t));
    int rc = buf_printf(b, "%s/", rule);
    if (!rc) rc = buf_append(b, client, client_len);
    if (!rc && key && key_len) {
        rc = buf_putc(b, '/');
        if (!rc) rc = buf_append(b, key, key_len);
    }
    return rc ? rc : buf_printf(b, "/%s", t);
}

static int put_key(buf_t *b, const char *key, int first) {
    int rc = first ? buf_putc(b, '{') : buf_append(b, ", ", 2);
    if (!rc) rc = buf_put_json_str(b, key, strlen(key));
    return rc ? rc : buf_append(b, ": ", 2);
}

static int put_str(buf_t *b, const char *key, const char *s) {
    int rc = put_key(b, key, 0);
    return rc ? rc : buf_put_json_str(b, s ? s : "", s ? strlen(s) : 0);
}

static int put_time(buf_t *b, const char *key, int64_t ts_ms) {
    char t[TIME_RFC3339_MAX];
    time_format_rfc3339(ts_ms, t, sizeof(t));
    return put_str(b, key, t);
}

static int put_raw(buf_t *b, const char *key, const char *json) {
    int rc = put_key(b, key, 0);
    if (!json || !*json) json = "{}";
    return rc ? rc : buf_append(b, json, strlen(json));
}

int alert_format_json(const alert_t *a, int64_t emitted_at_ms, buf_t *out) {
    int rc = put_key(out, "alert_id", 1);
    if (!rc) rc = buf_put_json_str(out, a->alert_id, strlen(a->alert_id));
    if (!rc) rc = put_str(out, "rule", a->rule);
    if (!rc) rc = put_str(out, "status",
                          a->status == ALERT_RESOLVED ? "resolved" : "firing");
    if (!rc) rc = put_str(out, "severity", a->severity);
    if (!rc) rc = put_str(out, "client_id", a->client_id);
    if (!rc) rc = put_time(out, "at", a->at_ms);
    if (!rc) rc = put_str(out, "summary", a->summary);
    if (!rc) rc = put_raw(out, "labels", a->labels_json);
    if (!rc) rc = put_raw(out, "values", a->values_json);
    if (!rc) {
        expr_val_t v;
        v.type = EXPR_T_NUM;
        v.u.num = a->risk;
        rc = put_key(out, "risk", 0);
        if (!rc) rc = expr_val_json(&v, out);
    }
    if (!rc) rc = put_key(out, "trigger", 0);
    if (!rc) {
        if (a->trigger_event_id) {
            rc = buf_printf(out, "{\"event_id\": ");
            if (!rc) rc = buf_put_json_str(out, a->trigger_event_id,
                                           strlen(a->trigger_event_id));
            if (!rc) rc = buf_putc(out, '}');
        } else {
            rc = buf_printf(out, "{\"timer\": true}");
        }
    }
    if (!rc && a->repeat) rc = put_key(out, "repeat", 0);
    if (!rc && a->repeat) rc = buf_printf(out, "%u", a->repeat);
    if (!rc && emitted_at_ms >= 0) rc = put_time(out, "emitted_at", emitted_at_ms);
    return rc ? rc : buf_putc(out, '}');
}
