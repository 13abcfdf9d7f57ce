/*
 * ledger.h - a client's commercial history, kept in its state record beside
 * the rule sections so that `churnd report` can compute churn economics from
 * state alone: what the client bought, day by day; its contract signings and
 * cancellations (with the reason given); and the alerts that fired for it.
 *
 * Unlike features, the ledger does not depend on the rule set: a reload
 * never drops it, and the report works whatever rules ran. It is bounded
 * (two years of sales days, the last contract events and firings) so a
 * client's record stays small however long it lives.
 *
 * The event types it reads are the catalog's (SPEC section 1) after the
 * type map: order.placed and order.cancelled (data.amount), contract.signed
 * and contract.cancelled (data.value, data.reason).
 *
 * Pure: no I/O, no clock.
 */
#ifndef CHURND_LEDGER_H
#define CHURND_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "churnd/common.h"
#include "churnd/event.h"

#define LEDGER_DAY_MS 86400000LL
/* Sales days older than this before the newest one recorded are dropped. */
#define LEDGER_RETAIN_DAYS 731
#define LEDGER_MAX_CONTRACTS 16 /* the newest contract events kept */
#define LEDGER_MAX_FIRINGS 64   /* the newest alert firings kept */
#define LEDGER_MAX_RULE 128     /* longest rule name recorded */

/* Why a contract was cancelled: data.reason on contract.cancelled. The
 * first three are objective (the client could not have been kept); the
 * others preventable. Persisted by number: append only. */
typedef enum ledger_reason {
    LEDGER_REASON_NONE = 0, /* not given */
    LEDGER_REASON_MOVED = 1,
    LEDGER_REASON_CLOSED = 2,
    LEDGER_REASON_ACQUIRED = 3,
    LEDGER_REASON_PRICE = 4,
    LEDGER_REASON_QUALITY = 5,
    LEDGER_REASON_SERVICE = 6,
    LEDGER_REASON_OTHER = 7, /* also any reason not in this list */
    LEDGER_N_REASONS = 8,
} ledger_reason_t;

const char *ledger_reason_name(ledger_reason_t r);
int ledger_reason_objective(ledger_reason_t r);

/* One calendar day (UTC) with commercial activity. */
typedef struct ledger_day {
    int64_t day;     /* days since the epoch */
    double amount;   /* orders placed minus orders cancelled that day */
    uint32_t orders; /* orders placed that day */
    uint32_t signs;  /* contracts signed that day */
} ledger_day_t;

typedef enum ledger_contract_kind {
    LEDGER_SIGNED = 1,
    LEDGER_CANCELLED = 2,
} ledger_contract_kind_t;

typedef struct ledger_contract {
    int64_t ts_ms;
    double value;    /* data.value; 0 when absent */
    uint8_t kind;    /* ledger_contract_kind_t */
    uint8_t reason;  /* ledger_reason_t; cancellations only */
} ledger_contract_t;

typedef struct ledger_firing {
    int64_t ts_ms;   /* the firing's event time (its alert id's time) */
    char *rule;      /* owned, NUL-terminated */
} ledger_firing_t;

typedef struct ledger {
    int64_t first_ms; /* first order or signing ever seen (INT64_MAX: none);
                         kept when its day is dropped from days */
    ledger_day_t *days; /* ascending by day, unique */
    uint32_t n_days, cap_days;
    ledger_contract_t *contracts; /* ascending by time */
    uint32_t n_contracts, cap_contracts;
    ledger_firing_t *firings; /* ascending by time */
    uint32_t n_firings, cap_firings;
} ledger_t;

void ledger_init(ledger_t *l);
void ledger_clear(ledger_t *l); /* frees everything; l is then empty */
int ledger_is_empty(const ledger_t *l);
/* Heap bytes the ledger owns (its arrays and rule names). */
size_t ledger_heap_bytes(const ledger_t *l);

/* Does the ledger read events of this type? */
int ledger_wants_type(const char *type);
/* Record one event of a type ledger_wants_type() accepts (others are left
 * alone). Events may come out of time order. 0 or CHURN_ENOMEM (the ledger
 * is then as it was). */
int ledger_on_event(ledger_t *l, const event_t *ev);
/* Record that rule fired for this client at ts_ms (a new firing, not a
 * repeat or a resolution). 0 or CHURN_ENOMEM. */
int ledger_on_firing(ledger_t *l, const char *rule, int64_t ts_ms);

/* Encoding (inside the state record; see cstate.c). decode expects l
 * empty; on error l is left empty. Returns 0, CHURN_ECORRUPT or
 * CHURN_ENOMEM. */
int ledger_encode(const ledger_t *l, buf_t *out);
int ledger_decode(reader_t *r, ledger_t *l);

/* {"first_activity", "sales": {"days", "orders", "amount", "last_order"},
 * "contracts": [...], "alerts_fired": [{"rule", "at"}]} appended to out. */
int ledger_format_json(const ledger_t *l, buf_t *out);

#endif
