/*
 * gen - a deterministic synthetic stream of CRM and helpdesk events, for
 * benchmarks and for tests that need more than a hand-written file:
 *
 *   gen [--seed N] [--clients N] [--events N] [--start RFC3339] [--days N]
 *       [--disorder DURATION] [--out-crm FILE --out-helpdesk FILE]
 *
 * It writes exactly --events JSON lines in the SPEC section 1 envelope
 * ({"id","type","client_id","ts","data"}), sorted by ts, on stdout, or split
 * by source into the two files. The same seed and options give the same
 * bytes: every random choice comes from a seeded xoshiro256** (one stream
 * for the global choices and one per client), never from the clock.
 *
 * What is in the stream:
 *
 * - Background clients ("c-0001234") with a skewed amount of activity: each
 *   gets one event, and the rest is shared out Zipf-like (weight rank^-0.9),
 *   so a few clients are very busy and most are quiet. Each one lives a
 *   coherent, healthy life: orders on a steady rhythm up to the end of the
 *   window (small amounts when the rhythm is slower than weekly, so the
 *   order rules have nothing to say), an outbound email after the first
 *   purchase, meetings one after another with at most one postponement,
 *   tickets answered well within a day with at most two defects in any 30
 *   days, feedback answered within 3 days, good survey scores, and decision
 *   makers contacted at least every 24 days by those busy enough to have
 *   them. The default rules should stay silent about them.
 * - Story clients, about 4% of the clients and at most a tenth of the
 *   events: "hit-<rule>-0000042" clients whose events make <rule> fire,
 *   and "miss-<rule>-0000043" clients whose events come close without
 *   making it fire (see the story_* functions). So a consumer of the alerts
 *   can check both: every hit client gets its rule's alert, no miss client
 *   does. A story may make another rule fire as well (the churn_risk miss
 *   clients have two smaller alerts, for instance).
 *
 * --disorder D replaces the sorted order by a bounded shuffle: each event is
 * emitted at ts + a uniform delay in [0, D], so an event never comes after
 * one whose ts is more than D later than its own.
 *
 * Exit status: 0 done, 1 bad usage, 2 out of memory or an output error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/timeutil.h"

#define SEC_MS  INT64_C(1000)
#define HOUR_MS (3600 * SEC_MS)
#define DAY_MS  (24 * HOUR_MS)

/* ---- event types ----------------------------------------------------------- */

enum {
    T_ORDER_PLACED, T_ORDER_CANCELLED,
    T_MEETING_SCHEDULED, T_MEETING_POSTPONED, T_MEETING_CANCELLED, T_MEETING_HELD,
    T_EMAIL_RECEIVED, T_EMAIL_SENT, T_CALL_LOGGED,
    T_TICKET_OPENED, T_TICKET_REPLIED, T_TICKET_RESOLVED,
    T_FEEDBACK_RECEIVED, T_FEEDBACK_ANSWERED,
    T_SURVEY_NPS, T_SURVEY_CSAT,
    T_OWNER_CHANGED, T_CLIENT_UPDATED,
    T_CONTRACT_SIGNED, T_CONTRACT_CANCELLED,
    T__COUNT
};

/* helpdesk: which of the two --out files a type goes to (as the demo data
 * splits them: tickets, feedback and surveys come from the helpdesk). */
static const struct {
    const char *name;
    bool helpdesk;
} TYPES[T__COUNT] = {
    [T_ORDER_PLACED] = {"order.placed", false},
    [T_ORDER_CANCELLED] = {"order.cancelled", false},
    [T_MEETING_SCHEDULED] = {"meeting.scheduled", false},
    [T_MEETING_POSTPONED] = {"meeting.postponed", false},
    [T_MEETING_CANCELLED] = {"meeting.cancelled", false},
    [T_MEETING_HELD] = {"meeting.held", false},
    [T_EMAIL_RECEIVED] = {"email.received", false},
    [T_EMAIL_SENT] = {"email.sent", false},
    [T_CALL_LOGGED] = {"call.logged", false},
    [T_TICKET_OPENED] = {"ticket.opened", true},
    [T_TICKET_REPLIED] = {"ticket.replied", true},
    [T_TICKET_RESOLVED] = {"ticket.resolved", true},
    [T_FEEDBACK_RECEIVED] = {"feedback.received", true},
    [T_FEEDBACK_ANSWERED] = {"feedback.answered", true},
    [T_SURVEY_NPS] = {"survey.nps", true},
    [T_SURVEY_CSAT] = {"survey.csat", true},
    [T_OWNER_CHANGED] = {"account.owner_changed", false},
    [T_CLIENT_UPDATED] = {"client.updated", false},
    [T_CONTRACT_SIGNED] = {"contract.signed", false},
    [T_CONTRACT_CANCELLED] = {"contract.cancelled", false},
};

/* Small enumerations carried in ev_t.a / ev_t.b. */
enum { ROLE_USER, ROLE_BUYER, ROLE_FINANCE, ROLE_DM };
static const char *const ROLES[] = {"user", "buyer", "finance", "decision_maker"};
/* meeting.held attendees: a bit per ROLES entry */
#define ATT(role) (1u << (role))

enum { CAT_QUESTION, CAT_COMPLAINT, CAT_DEFECT, CAT_FEEDBACK };
static const char *const CATEGORIES[] = {"question", "complaint", "defect", "feedback"};
enum { PRIO_HIGH, PRIO_NORMAL, PRIO_LOW };
static const char *const PRIORITIES[] = {"high", "normal", "low"};
enum { BY_AGENT, BY_CLIENT };
static const char *const BYS[] = {"agent", "client"};
enum { OUT_ACCEPTED, OUT_REJECTED, OUT_FIXED };
static const char *const OUTCOMES[] = {"accepted", "rejected", "fixed"};
enum { REASON_MOVED, REASON_CLOSED, REASON_ACQUIRED, REASON_PRICE, REASON_QUALITY,
       REASON_SERVICE, REASON_OTHER };
static const char *const REASONS[] = {"moved", "closed", "acquired", "price",
                                      "quality", "service", "other"};
static const char *const TIERS[] = {"enterprise", "mid_market", "smb"};
static const char *const SEGMENTS[] = {"retail", "manufacturing", "services", "public"};
/* client.updated: which fields are present (ev_t.a) */
#define UPD_TIER 1u
#define UPD_SEGMENT 2u
#define UPD_OWNER 4u

/* One event, compact: the data fields are rebuilt from these when printed.
 * ref: order/meeting/ticket/feedback number, or the old owner; num: an
 * amount or contract value in cents, a survey score, or the new owner. */
typedef struct ev {
    int64_t ts_ms;
    uint32_t seq;    /* generation order: ties on ts keep it */
    uint32_t client;
    uint32_t ref;
    int32_t num;
    uint8_t type;
    uint8_t a, b;
} ev_t;

/* ---- random numbers (xoshiro256**, seeded through splitmix64) ------------- */

typedef struct rng {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * UINT64_C(0xD1B54A32D192ED03));
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* [0, 1) */
static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* [0, n); the modulo bias is far below anything a test could see. */
static uint64_t rng_below(rng_t *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

/* [lo, hi), or lo when the range is empty */
static int64_t rng_range(rng_t *r, int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    return lo + (int64_t)rng_below(r, (uint64_t)(hi - lo));
}

static bool rng_chance(rng_t *r, double p) { return rng_unit(r) < p; }

/* ---- options and the generator's state ------------------------------------- */

typedef struct opts {
    uint64_t seed;
    uint32_t n_clients;
    uint32_t n_events;
    int64_t start_ms;
    uint32_t days;
    int64_t disorder_ms;
    const char *out_crm;     /* both NULL: stdout */
    const char *out_helpdesk;
} opts_t;

typedef struct gen {
    int64_t t0_ms, t1_ms;    /* every event is in [t0, t1) */
    ev_t *ev;                /* owned; capacity n_events */
    uint32_t n_ev, cap_ev;
    bool full;               /* an event was dropped for lack of room */
    uint32_t next_order, next_meeting, next_ticket, next_feedback;
    unsigned id_width;       /* digits in client ids */
    uint32_t n_story;        /* clients 0..n_story-1 tell stories */
    uint8_t *story_kind;     /* owned; per story client: index into STORIES * 2 + miss */
    /* scratch reused from one background client to the next (owned) */
    int64_t *times;
    size_t times_cap;
    uint8_t *kinds;
    size_t kinds_cap;
    struct tk { int64_t ts_ms; uint8_t size; } *tickets;
    size_t tickets_cap;
} gen_t;

static void add(gen_t *g, uint32_t client, int64_t ts_ms, int type, unsigned a,
                unsigned b, uint32_t ref, int32_t num) {
    if (g->n_ev >= g->cap_ev) {
        g->full = true;
        return;
    }
    /* whole seconds, inside the window */
    ts_ms -= ((ts_ms % SEC_MS) + SEC_MS) % SEC_MS;
    if (ts_ms < g->t0_ms) ts_ms = g->t0_ms;
    if (ts_ms > g->t1_ms - SEC_MS) ts_ms = g->t1_ms - SEC_MS;
    ev_t *e = &g->ev[g->n_ev];
    e->ts_ms = ts_ms;
    e->seq = g->n_ev++;
    e->client = client;
    e->ref = ref;
    e->num = num;
    e->type = (uint8_t)type;
    e->a = (uint8_t)a;
    e->b = (uint8_t)b;
}

/* Shorthands for the events stories and lives are made of. */
static void add_order(gen_t *g, uint32_t c, int64_t ts, int32_t cents) {
    add(g, c, ts, T_ORDER_PLACED, 0, 0, g->next_order++, cents < 100 ? 100 : cents);
}
static void add_contact(gen_t *g, uint32_t c, int64_t ts, int type, int role) {
    add(g, c, ts, type, (unsigned)role, 0, 0, 0);
}
static void add_meeting(gen_t *g, uint32_t c, int64_t ts, int type, uint32_t id,
                        unsigned attendees) {
    add(g, c, ts, type, attendees, 0, id, 0);
}
static void add_ticket(gen_t *g, uint32_t c, int64_t ts, uint32_t id, int cat,
                       int prio) {
    add(g, c, ts, T_TICKET_OPENED, (unsigned)cat, (unsigned)prio, id, 0);
}
static void add_reply(gen_t *g, uint32_t c, int64_t ts, uint32_t id, int by) {
    add(g, c, ts, T_TICKET_REPLIED, (unsigned)by, 0, id, 0);
}
static void add_resolved(gen_t *g, uint32_t c, int64_t ts, uint32_t id, int outcome) {
    add(g, c, ts, T_TICKET_RESOLVED, (unsigned)outcome, 0, id, 0);
}
static void add_feedback(gen_t *g, uint32_t c, int64_t ts, int type, uint32_t id) {
    add(g, c, ts, type, 0, 0, id, 0);
}
static void add_survey(gen_t *g, uint32_t c, int64_t ts, int type, int score) {
    add(g, c, ts, type, 0, 0, 0, score);
}
static void add_contract(gen_t *g, uint32_t c, int64_t ts, int type, int32_t cents,
                         int reason) {
    add(g, c, ts, type, (unsigned)reason, 0, 0, cents);
}
static void add_owner_change(gen_t *g, uint32_t c, int64_t ts, uint32_t from,
                             uint32_t to) {
    add(g, c, ts, T_OWNER_CHANGED, 0, 0, from, (int32_t)to);
}

/* A time on a working day hour (08:00-18:00 UTC, 85% of the time) in
 * [lo, hi). */
static int64_t biz_time(rng_t *r, int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    int64_t t = rng_range(r, lo, hi);
    if (rng_chance(r, 0.85)) {
        int64_t day = t - (((t % DAY_MS) + DAY_MS) % DAY_MS);
        int64_t u = day + 8 * HOUR_MS + rng_range(r, 0, 10 * HOUR_MS);
        if (u >= lo && u < hi) t = u;
    }
    return t;
}

/* ---- stories ---------------------------------------------------------------- */

/* A story's first event: a working hour on a day chosen so that `span` fits
 * before the end of the window; -1 when the window is too short. */
static int64_t story_start(gen_t *g, rng_t *r, int64_t span_ms) {
    int64_t room = g->t1_ms - g->t0_ms - span_ms - 2 * DAY_MS;
    if (room < 0) return -1;
    int64_t day = g->t0_ms + (rng_range(r, 0, room / DAY_MS + 1)) * DAY_MS;
    return day + 8 * HOUR_MS + rng_range(r, 0, 8 * HOUR_MS);
}

static int32_t cents(rng_t *r, double amount, double spread) {
    double f = 1.0 + spread * (2.0 * rng_unit(r) - 1.0);
    return (int32_t)(amount * f * 100.0);
}

/* Orders every 7 days up to the end of the window: 1000 a week for 13
 * weeks, then 300 (hit: the last 30 days fall under 60% of the monthly
 * baseline, at about week 16) or 800 (miss: at worst 4 x 760 in 30 days
 * against 0.6 x 13 x 1050 / 3 = 2730). An email after the first order
 * keeps no_aftercare out of it. */
static int story_order_decline(gen_t *g, rng_t *r, uint32_t c, unsigned v, bool hit) {
    (void)v;
    int64_t t = story_start(g, r, 130 * DAY_MS);
    if (t < 0) return -1;
    add_contact(g, c, t + DAY_MS, T_EMAIL_SENT, ROLE_BUYER);
    for (int64_t k = 0;; k++) {
        int64_t ts = t + k * 7 * DAY_MS + rng_range(r, 0, 6 * HOUR_MS);
        if (ts >= g->t1_ms) break;
        double amount = k < 13 ? 1000.0 : hit ? 300.0 : 800.0;
        add_order(g, c, ts, cents(r, amount, 0.05));
    }
    return 0;
}

/* Orders of about 40 every 10 days up to the end of the window (the 90-day
 * baseline stays under 500, so order_decline has nothing to say). Hit: a
 * 30-day silence after the fifth order (fires past 20 days). Miss: one gap
 * of 17 days, under twice the median gap of at least 9.75 days. */
static int story_order_gap(gen_t *g, rng_t *r, uint32_t c, unsigned v, bool hit) {
    (void)v;
    int64_t t = story_start(g, r, 90 * DAY_MS);
    if (t < 0) return -1;
    add_contact(g, c, t + DAY_MS, T_EMAIL_SENT, ROLE_USER);
    for (int64_t k = 0;; k++) {
        int64_t extra = hit ? (k >= 5 ? 20 * DAY_MS : 0) : (k >= 4 ? 7 * DAY_MS : 0);
        int64_t ts = t + k * 10 * DAY_MS + extra + rng_range(r, 0, 6 * HOUR_MS);
        if (ts >= g->t1_ms) break;
        add_order(g, c, ts, cents(r, 40.0, 0.1));
    }
    return 0;
}

/* Hit: two postponements/cancellations in a row, then a held meeting that
 * resolves. Miss: each slip is followed by a held meeting. */
static int story_meetings_postponed(gen_t *g, rng_t *r, uint32_t c, unsigned v,
                                    bool hit) {
    int64_t t = story_start(g, r, 22 * DAY_MS);
    if (t < 0) return -1;
    unsigned att = ATT(ROLE_BUYER) | ATT(ROLE_USER);
    uint32_t m1 = g->next_meeting++, m2 = g->next_meeting++, m3 = g->next_meeting++;
    if (hit) {
        int first = v % 3 == 2 ? T_MEETING_CANCELLED : T_MEETING_POSTPONED;
        int second = v % 3 == 0 ? T_MEETING_POSTPONED : T_MEETING_CANCELLED;
        add_meeting(g, c, t, T_MEETING_SCHEDULED, m1, 0);
        add_meeting(g, c, t + 3 * DAY_MS, first, m1, 0);
        uint32_t m = m1;
        if (first == T_MEETING_CANCELLED) {
            m = m2;
            add_meeting(g, c, t + 4 * DAY_MS, T_MEETING_SCHEDULED, m2, 0);
        }
        add_meeting(g, c, t + 8 * DAY_MS, second, m, 0);
        add_meeting(g, c, t + 12 * DAY_MS, T_MEETING_SCHEDULED, m3, 0);
        add_meeting(g, c, t + 18 * DAY_MS, T_MEETING_HELD, m3, att);
    } else {
        add_meeting(g, c, t, T_MEETING_SCHEDULED, m1, 0);
        add_meeting(g, c, t + 3 * DAY_MS, T_MEETING_POSTPONED, m1, 0);
        add_meeting(g, c, t + 7 * DAY_MS, T_MEETING_HELD, m1, att);
        add_meeting(g, c, t + 10 * DAY_MS, T_MEETING_SCHEDULED, m2, 0);
        add_meeting(g, c, t + 13 * DAY_MS, T_MEETING_CANCELLED, m2, 0);
        add_meeting(g, c, t + 14 * DAY_MS, T_MEETING_SCHEDULED, m3, 0);
        add_meeting(g, c, t + 20 * DAY_MS, T_MEETING_HELD, m3, att);
    }
    return 0;
}

/* Hit: a decision maker in a meeting (or an email), then only users for
 * over 30 days: fires at a daily check and stays firing. Miss: placed at
 * the end of the window, decision-maker contacts 28 days apart and the last
 * one less than 26 days before the end. */
static int story_decision_maker_silent(gen_t *g, rng_t *r, uint32_t c, unsigned v,
                                       bool hit) {
    if (hit) {
        int64_t t = story_start(g, r, 40 * DAY_MS);
        if (t < 0) return -1;
        if (v % 2 == 0) {
            uint32_t m = g->next_meeting++;
            add_meeting(g, c, t, T_MEETING_SCHEDULED, m, 0);
            add_meeting(g, c, t + 2 * DAY_MS, T_MEETING_HELD, m,
                        ATT(ROLE_DM) | ATT(ROLE_BUYER));
        } else {
            add_contact(g, c, t + 2 * DAY_MS, T_EMAIL_RECEIVED, ROLE_DM);
        }
        add_contact(g, c, t + 10 * DAY_MS, T_EMAIL_RECEIVED, ROLE_USER);
        add_contact(g, c, t + 25 * DAY_MS, T_CALL_LOGGED, ROLE_USER);
        return 0;
    }
    if (g->t1_ms - g->t0_ms < 56 * DAY_MS) return -1;
    int64_t day = g->t1_ms - 53 * DAY_MS + rng_range(r, 0, 20) * DAY_MS;
    int64_t t = day - (((day % DAY_MS) + DAY_MS) % DAY_MS) + 9 * HOUR_MS;
    uint32_t m = g->next_meeting++;
    add_meeting(g, c, t - 2 * DAY_MS, T_MEETING_SCHEDULED, m, 0);
    add_meeting(g, c, t, T_MEETING_HELD, m, ATT(ROLE_DM) | ATT(ROLE_USER));
    add_contact(g, c, t + 12 * DAY_MS, T_EMAIL_RECEIVED, ROLE_USER);
    add_contact(g, c, t + 28 * DAY_MS, v % 2 ? T_CALL_LOGGED : T_EMAIL_SENT, ROLE_DM);
    return 0;
}

/* Hit: a high-priority complaint answered by an agent after 30h, a normal
 * one after 80h, or one never answered. Miss: answered at 23h / 70h, or
 * resolved without a reply within the day; plus a question nobody answers
 * (not a complaint). */
static int story_complaint_unanswered(gen_t *g, rng_t *r, uint32_t c, unsigned v,
                                      bool hit) {
    int64_t t = story_start(g, r, 6 * DAY_MS);
    if (t < 0) return -1;
    uint32_t id = g->next_ticket++;
    switch (v % 3) {
    case 0:
        add_ticket(g, c, t, id, CAT_COMPLAINT, PRIO_HIGH);
        add_reply(g, c, t + 3 * HOUR_MS, id, BY_CLIENT);
        add_reply(g, c, t + (hit ? 30 : 23) * HOUR_MS, id, BY_AGENT);
        add_resolved(g, c, t + 3 * DAY_MS, id, OUT_ACCEPTED);
        break;
    case 1:
        add_ticket(g, c, t, id, CAT_COMPLAINT, PRIO_NORMAL);
        add_reply(g, c, t + (hit ? 80 : 70) * HOUR_MS, id, BY_AGENT);
        add_resolved(g, c, t + 5 * DAY_MS, id, OUT_ACCEPTED);
        break;
    default:
        add_ticket(g, c, t, id, CAT_COMPLAINT, hit ? PRIO_LOW : PRIO_HIGH);
        if (!hit) add_resolved(g, c, t + 20 * HOUR_MS, id, OUT_ACCEPTED);
        break;
    }
    if (!hit) add_ticket(g, c, t + HOUR_MS, g->next_ticket++, CAT_QUESTION, PRIO_NORMAL);
    return 0;
}

/* Hit: a complaint resolved as rejected, then a question resolved as
 * accepted (which resolves the alert). Miss: the complaint is accepted and
 * a defect is fixed. */
static int story_complaint_rejected(gen_t *g, rng_t *r, uint32_t c, unsigned v,
                                    bool hit) {
    (void)v;
    int64_t t = story_start(g, r, 23 * DAY_MS);
    if (t < 0) return -1;
    uint32_t id = g->next_ticket++;
    add_ticket(g, c, t, id, CAT_COMPLAINT, PRIO_NORMAL);
    add_reply(g, c, t + 4 * HOUR_MS, id, BY_AGENT);
    add_resolved(g, c, t + 3 * DAY_MS, id, hit ? OUT_REJECTED : OUT_ACCEPTED);
    uint32_t id2 = g->next_ticket++;
    int64_t t2 = t + (hit ? 20 : 10) * DAY_MS;
    add_ticket(g, c, t2, id2, hit ? CAT_QUESTION : CAT_DEFECT, PRIO_NORMAL);
    add_reply(g, c, t2 + 2 * HOUR_MS, id2, BY_AGENT);
    add_resolved(g, c, t2 + DAY_MS, id2, hit ? OUT_ACCEPTED : OUT_FIXED);
    return 0;
}

/* Hit: feedback answered after 6 days, or never. Miss: answered after 4
 * days 20 hours, and another the next day. */
static int story_feedback_ignored(gen_t *g, rng_t *r, uint32_t c, unsigned v, bool hit) {
    int64_t t = story_start(g, r, 7 * DAY_MS);
    if (t < 0) return -1;
    uint32_t id = g->next_feedback++;
    add_feedback(g, c, t, T_FEEDBACK_RECEIVED, id);
    if (hit) {
        if (v % 2 == 0) add_feedback(g, c, t + 6 * DAY_MS, T_FEEDBACK_ANSWERED, id);
    } else {
        add_feedback(g, c, t + 4 * DAY_MS + 20 * HOUR_MS, T_FEEDBACK_ANSWERED, id);
        uint32_t id2 = g->next_feedback++;
        add_feedback(g, c, t + 2 * HOUR_MS, T_FEEDBACK_RECEIVED, id2);
        add_feedback(g, c, t + DAY_MS, T_FEEDBACK_ANSWERED, id2);
    }
    return 0;
}

/* Hit: a first contract (or small order), only an inbound email in 14 days,
 * the first call (or held meeting) on day 15-16 resolves. Miss: an email
 * sent on day 13, or a meeting held on day 10. */
static int story_no_aftercare(gen_t *g, rng_t *r, uint32_t c, unsigned v, bool hit) {
    int64_t t = story_start(g, r, 17 * DAY_MS);
    if (t < 0) return -1;
    bool contract = v % 2 == 0;
    if (contract)
        add_contract(g, c, t, T_CONTRACT_SIGNED, cents(r, 24000.0, 0.5), 0);
    else
        add_order(g, c, t, cents(r, 200.0, 0.2));
    if (hit) {
        add_contact(g, c, t + 5 * DAY_MS, T_EMAIL_RECEIVED, ROLE_USER);
        if (contract) {
            add_contact(g, c, t + 16 * DAY_MS, T_CALL_LOGGED, ROLE_USER);
        } else {
            uint32_t m = g->next_meeting++;
            add_meeting(g, c, t + 3 * DAY_MS, T_MEETING_SCHEDULED, m, 0);
            add_meeting(g, c, t + 15 * DAY_MS, T_MEETING_HELD, m, ATT(ROLE_BUYER));
        }
    } else if (contract) {
        add_contact(g, c, t + 13 * DAY_MS + 20 * HOUR_MS, T_EMAIL_SENT, ROLE_USER);
    } else {
        uint32_t m = g->next_meeting++;
        add_meeting(g, c, t + 2 * DAY_MS, T_MEETING_SCHEDULED, m, 0);
        add_meeting(g, c, t + 10 * DAY_MS, T_MEETING_HELD, m, ATT(ROLE_BUYER));
    }
    return 0;
}

static void defect(gen_t *g, uint32_t c, int64_t t, int cat) {
    uint32_t id = g->next_ticket++;
    add_ticket(g, c, t, id, cat, PRIO_NORMAL);
    add_reply(g, c, t + 3 * HOUR_MS, id, BY_AGENT);
    add_resolved(g, c, t + 2 * DAY_MS, id, cat == CAT_DEFECT ? OUT_FIXED : OUT_ACCEPTED);
}

/* Hit: defects on days 0, 8 and 17. Miss: on days 0, 17 and 34 (never 3
 * in 30 days), plus a question on day 20. */
static int story_repeated_defects(gen_t *g, rng_t *r, uint32_t c, unsigned v, bool hit) {
    (void)v;
    int64_t t = story_start(g, r, 37 * DAY_MS);
    if (t < 0) return -1;
    if (hit) {
        defect(g, c, t, CAT_DEFECT);
        defect(g, c, t + 8 * DAY_MS, CAT_DEFECT);
        defect(g, c, t + 17 * DAY_MS, CAT_DEFECT);
    } else {
        defect(g, c, t, CAT_DEFECT);
        defect(g, c, t + 17 * DAY_MS, CAT_DEFECT);
        defect(g, c, t + 20 * DAY_MS, CAT_QUESTION);
        defect(g, c, t + 34 * DAY_MS, CAT_DEFECT);
    }
    return 0;
}

/* Hit: NPS 4 then 9 (resolves), CSAT 2 then 4, or NPS 0 alone. Miss: the
 * best scores that still count as unhappy plus one: NPS 7 or 8, CSAT 3. */
static int story_detractor(gen_t *g, rng_t *r, uint32_t c, unsigned v, bool hit) {
    int64_t t = story_start(g, r, 21 * DAY_MS);
    if (t < 0) return -1;
    if (!hit) {
        add_survey(g, c, t, T_SURVEY_NPS, v % 2 ? 8 : 7);
        add_survey(g, c, t + 10 * DAY_MS, T_SURVEY_CSAT, 3);
        return 0;
    }
    switch (v % 3) {
    case 0:
        add_survey(g, c, t, T_SURVEY_NPS, 4);
        add_survey(g, c, t + 20 * DAY_MS, T_SURVEY_NPS, 9);
        break;
    case 1:
        add_survey(g, c, t, T_SURVEY_CSAT, 2);
        add_survey(g, c, t + 15 * DAY_MS, T_SURVEY_CSAT, 4);
        break;
    default:
        add_survey(g, c, t, T_SURVEY_NPS, 0);
        break;
    }
    return 0;
}

/* Hit: a new owner, a meeting scheduled, postponed once and held on day 25
 * (fires on day 21, resolves on 25). Miss: held on day 20. */
static int story_owner_changed(gen_t *g, rng_t *r, uint32_t c, unsigned v, bool hit) {
    (void)v;
    int64_t t = story_start(g, r, 26 * DAY_MS);
    if (t < 0) return -1;
    uint32_t from = (uint32_t)rng_below(r, 200), to = from + 1 + (uint32_t)rng_below(r, 50);
    uint32_t m = g->next_meeting++;
    unsigned att = ATT(ROLE_BUYER) | ATT(ROLE_USER);
    add_owner_change(g, c, t, from, to);
    if (hit) {
        add_meeting(g, c, t + 5 * DAY_MS, T_MEETING_SCHEDULED, m, 0);
        add_meeting(g, c, t + 15 * DAY_MS, T_MEETING_POSTPONED, m, 0);
        add_meeting(g, c, t + 25 * DAY_MS, T_MEETING_HELD, m, att);
    } else {
        add_meeting(g, c, t + 3 * DAY_MS, T_MEETING_SCHEDULED, m, 0);
        add_meeting(g, c, t + 20 * DAY_MS, T_MEETING_HELD, m, att);
    }
    return 0;
}

/* Hit: a detractor (30) and an unanswered complaint (40) within days: risk
 * about 68-69; the client then cancels its contract. Miss: an unanswered
 * complaint and ignored feedback (40 + 15, decayed: about 51), or a
 * detractor and two postponed meetings (30 + 20, decayed: about 47). */
static int story_churn_risk(gen_t *g, rng_t *r, uint32_t c, unsigned v, bool hit) {
    int64_t t = story_start(g, r, 21 * DAY_MS);
    if (t < 0) return -1;
    if (hit) {
        bool nps = v % 2 == 0;
        if (nps)
            add_survey(g, c, t, T_SURVEY_NPS, 3);
        else
            add_survey(g, c, t, T_SURVEY_CSAT, 2);
        add_ticket(g, c, t + (nps ? 1 : 2) * HOUR_MS, g->next_ticket++, CAT_COMPLAINT,
                   nps ? PRIO_HIGH : PRIO_NORMAL);
        add_contract(g, c, t + (nps ? 20 : 15) * DAY_MS, T_CONTRACT_CANCELLED,
                     cents(r, 30000.0, 0.5), nps ? REASON_PRICE : REASON_QUALITY);
        return 0;
    }
    if (v % 2 == 0) {
        add_ticket(g, c, t, g->next_ticket++, CAT_COMPLAINT, PRIO_HIGH);
        add_feedback(g, c, t + HOUR_MS, T_FEEDBACK_RECEIVED, g->next_feedback++);
    } else {
        uint32_t m = g->next_meeting++;
        add_survey(g, c, t, T_SURVEY_NPS, 6);
        add_meeting(g, c, t + DAY_MS, T_MEETING_SCHEDULED, m, 0);
        add_meeting(g, c, t + 3 * DAY_MS, T_MEETING_POSTPONED, m, 0);
        add_meeting(g, c, t + 5 * DAY_MS, T_MEETING_CANCELLED, m, 0);
    }
    return 0;
}

typedef int (*story_fn)(gen_t *g, rng_t *r, uint32_t client, unsigned variant, bool hit);

/* One entry per default rule (SPEC section 3), in its table's order. */
static const struct {
    const char *rule;
    story_fn fn;
} STORIES[] = {
    {"order_decline", story_order_decline},
    {"order_gap", story_order_gap},
    {"meetings_postponed", story_meetings_postponed},
    {"decision_maker_silent", story_decision_maker_silent},
    {"complaint_unanswered", story_complaint_unanswered},
    {"complaint_rejected", story_complaint_rejected},
    {"feedback_ignored", story_feedback_ignored},
    {"no_aftercare", story_no_aftercare},
    {"repeated_defects", story_repeated_defects},
    {"detractor", story_detractor},
    {"owner_changed", story_owner_changed},
    {"churn_risk", story_churn_risk},
};
#define N_STORIES (sizeof(STORIES) / sizeof(STORIES[0]))

/* Story clients take the first client numbers: hits of every rule first,
 * then misses, then the next variants, until 4% of the clients or a tenth
 * of the events are used (a story that would cross that line is taken
 * back, and so is one the window is too short for). */
static int tell_stories(gen_t *g, const opts_t *o) {
    uint32_t want = o->n_clients / 25;
    uint32_t max_events = o->n_events / 10;
    g->story_kind = malloc(want ? want : 1);
    if (!g->story_kind) {
        fputs("gen: out of memory\n", stderr);
        return -1;
    }
    uint32_t c = 0;
    for (uint32_t i = 0; c < want && i < 4 * want; i++) {
        unsigned k = i % N_STORIES;
        bool hit = (i / N_STORIES) % 2 == 0;
        unsigned variant = i / (2 * N_STORIES);
        uint32_t before = g->n_ev;
        rng_t r;
        rng_seed(&r, o->seed, UINT64_C(1) << 40 | c);
        int rc = STORIES[k].fn(g, &r, c, variant, hit);
        if (rc != 0 || g->full || g->n_ev > max_events) {
            g->n_ev = before;
            g->full = false;
            if (rc != 0) continue; /* does not fit this window; try the next */
            break;
        }
        g->story_kind[c++] = (uint8_t)(k * 2 + (hit ? 0 : 1));
    }
    g->n_story = c;
    return 0;
}

/* ---- background clients ------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * size);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

enum { BK_ORDER, BK_ORDER_CANCEL, BK_CONTRACT, BK_CONTACT, BK_MEETING, BK_OWNER,
       BK_TICKET, BK_FEEDBACK, BK_SURVEY, BK_UPDATE, BK__COUNT };
/* Relative chances of each kind of thread when a client's events are drawn;
 * with the thread sizes (meetings 2-4, tickets 2-5) this gives about 19%
 * orders, 31% emails and calls, 13% meeting events, 24% ticket events, 4%
 * feedback and 6% surveys. The first three are for buyers only. */
static const unsigned BK_WEIGHT[BK__COUNT] = {
    [BK_ORDER] = 200, [BK_ORDER_CANCEL] = 4, [BK_CONTRACT] = 5, [BK_CONTACT] = 330,
    [BK_MEETING] = 55, [BK_OWNER] = 2, [BK_TICKET] = 75, [BK_FEEDBACK] = 20,
    [BK_SURVEY] = 60, [BK_UPDATE] = 20,
};

static int compare_tk(const void *a, const void *b) {
    const struct tk *x = a, *y = b;
    return (x->ts_ms > y->ts_ms) - (x->ts_ms < y->ts_ms);
}

static int64_t day_of(int64_t ts) { return (ts - (((ts % DAY_MS) + DAY_MS) % DAY_MS)) / DAY_MS; }

/* A healthy client's n events (see the file comment for what healthy
 * means, and why each constraint is there). */
static int live(gen_t *g, rng_t *r, uint32_t c, uint32_t n) {
    int64_t from = g->t0_ms;
    if (rng_chance(r, 0.2)) /* a client that arrives during the window */
        from += (int64_t)(rng_unit(r) * 0.7 * (double)(g->t1_ms - g->t0_ms));
    int64_t span = g->t1_ms - from;
    bool buyer = n >= 3 && rng_chance(r, 0.75);
    unsigned tier = rng_chance(r, 0.1) ? 0 : rng_chance(r, 0.33) ? 1 : 2;
    unsigned segment = (unsigned)rng_below(r, 4);
    uint32_t owner = (uint32_t)rng_below(r, 200);

    /* 1. Draw what the n events are: kinds of threads and their sizes. */
    uint32_t k[BK__COUNT] = {0};
    uint32_t n_meet = 0, n_tick = 0;
    if (grow((void **)&g->kinds, &g->kinds_cap, n, 1) != 0 ||
        grow((void **)&g->tickets, &g->tickets_cap, n, sizeof(*g->tickets)) != 0)
        return -1;
    unsigned total = 0;
    for (int i = 0; i < BK__COUNT; i++)
        if (buyer || (i != BK_ORDER && i != BK_ORDER_CANCEL && i != BK_CONTRACT))
            total += BK_WEIGHT[i];
    uint32_t rem = n - (buyer ? 1 : 0); /* one email after the first purchase */
    while (rem > 0) {
        unsigned x = (unsigned)rng_below(r, total);
        int kind = 0;
        for (; kind < BK__COUNT; kind++) {
            if (!buyer && (kind == BK_ORDER || kind == BK_ORDER_CANCEL ||
                           kind == BK_CONTRACT))
                continue;
            if (x < BK_WEIGHT[kind]) break;
            x -= BK_WEIGHT[kind];
        }
        uint32_t size = 1;
        if (kind == BK_MEETING) {
            double u = rng_unit(r);
            size = u < 0.6 ? 2 : u < 0.9 ? 3 : 4;
        } else if (kind == BK_TICKET) {
            size = 2 + (uint32_t)rng_below(r, 4);
        } else if (kind == BK_FEEDBACK) {
            size = 2;
        } else if (kind == BK_OWNER) {
            size = 3;
        }
        if (size > rem) {
            if ((kind == BK_MEETING || kind == BK_TICKET) && rem >= 2)
                size = rem;
            else
                kind = BK_CONTACT, size = 1;
        }
        if (kind == BK_MEETING || kind == BK_OWNER)
            g->kinds[n_meet++] = (uint8_t)(kind == BK_OWNER ? 0 : size);
        else if (kind == BK_TICKET)
            g->tickets[n_tick++].size = (uint8_t)size;
        else
            k[kind]++;
        rem -= size;
    }
    if (k[BK_ORDER] == 0) { /* nothing to cancel */
        k[BK_CONTACT] += k[BK_ORDER_CANCEL];
        k[BK_ORDER_CANCEL] = 0;
    }

    /* 2. Orders on a steady rhythm up to the end of the window: the k-th in
     * the first tenth of its period, so gaps stay within 0.9-1.1 periods.
     * Weekly or faster buyers keep the 30-day value above 80% of the
     * monthly baseline; slower ones buy too little for a baseline of 500. */
    int64_t first_buy = INT64_MAX;
    if (k[BK_ORDER]) {
        if (grow((void **)&g->times, &g->times_cap, k[BK_ORDER], sizeof(int64_t)) != 0)
            return -1;
        int64_t period = span / k[BK_ORDER];
        if (period < SEC_MS) period = SEC_MS;
        double amount;
        if (period <= 7 * DAY_MS) {
            double weekly = 150.0 * exp(rng_unit(r) * log(200.0)); /* 150-30000 */
            amount = weekly * (double)period / (double)(7 * DAY_MS);
        } else {
            double most = 450.0 / (90.0 * (double)DAY_MS / (0.9 * (double)period) + 1.0);
            amount = most * (0.5 + 0.5 * rng_unit(r));
        }
        for (uint32_t i = 0; i < k[BK_ORDER]; i++) {
            int64_t ts = from + (int64_t)i * period + rng_range(r, 0, period / 10 + 1);
            g->times[i] = ts;
            add_order(g, c, ts, cents(r, amount, 0.05));
        }
        first_buy = g->times[0];
        for (uint32_t i = 0; i < k[BK_ORDER_CANCEL]; i++) {
            uint32_t j = (uint32_t)rng_below(r, k[BK_ORDER]);
            add(g, c, g->times[j] + rng_range(r, HOUR_MS, 2 * DAY_MS), T_ORDER_CANCELLED,
                0, 0, g->next_order - k[BK_ORDER] + j, cents(r, amount, 0.05));
        }
    }
    for (uint32_t i = 0; i < k[BK_CONTRACT]; i++) {
        int64_t ts = biz_time(r, from, g->t1_ms);
        if (ts < first_buy) first_buy = ts;
        add_contract(g, c, ts, T_CONTRACT_SIGNED, cents(r, 20000.0, 0.9), 0);
    }
    if (buyer) {
        int64_t ts = first_buy == INT64_MAX
                         ? biz_time(r, from, g->t1_ms)
                         : first_buy + rng_range(r, 2 * HOUR_MS, 10 * DAY_MS);
        add_contact(g, c, ts, T_EMAIL_SENT, ROLE_BUYER);
    }

    /* 3. Emails and calls. A client with enough of them talks to a decision
     * maker on a cadence (gaps under 24 days, the last within 12 days of
     * the end) so decision_maker_silent stays quiet; the others never
     * involve one. */
    uint32_t n_dm = (uint32_t)((span + 15 * DAY_MS - 1) / (15 * DAY_MS)) + 1;
    bool dm = k[BK_CONTACT] >= n_dm + 2;
    static const int CONTACT_TYPES[] = {T_EMAIL_RECEIVED, T_EMAIL_SENT, T_CALL_LOGGED};
    for (uint32_t i = 0; i < k[BK_CONTACT]; i++) {
        double u = rng_unit(r);
        int type = CONTACT_TYPES[u < 0.45 ? 0 : u < 0.8 ? 1 : 2];
        if (dm && i < n_dm) {
            int64_t slot = span / n_dm;
            int64_t ts = from + (int64_t)i * slot +
                         (int64_t)((0.2 + 0.6 * rng_unit(r)) * (double)slot);
            add_contact(g, c, ts, type, ROLE_DM);
        } else {
            double v = rng_unit(r);
            add_contact(g, c, biz_time(r, from, g->t1_ms), type,
                        v < 0.6 ? ROLE_USER : v < 0.9 ? ROLE_BUYER : ROLE_FINANCE);
        }
    }

    /* 4. Meetings one after another, each in its own slot of the window, so
     * a postponement is always followed by a held meeting before the next
     * one slips; an owner change is followed by a meeting within 12 days. */
    if (n_meet) {
        int64_t slot = span / n_meet;
        int64_t room = slot < 20 * DAY_MS ? slot : 20 * DAY_MS;
        for (uint32_t i = 0; i < n_meet; i++) {
            int64_t s0 = from + (int64_t)i * slot + rng_range(r, 0, slot / 10 + 1);
#define AT(lo, hi) (s0 + (int64_t)(((lo) + ((hi) - (lo)) * rng_unit(r)) * (double)room))
            unsigned att = dm && rng_chance(r, 0.5) ? ATT(ROLE_DM) | ATT(ROLE_BUYER)
                           : rng_chance(r, 0.5)     ? ATT(ROLE_BUYER) | ATT(ROLE_USER)
                                                    : ATT(ROLE_USER);
            uint32_t m = g->next_meeting++;
            switch (g->kinds[i]) {
            case 0: { /* owner change, then a meeting with the new owner */
                uint32_t to = owner + 1 + (uint32_t)rng_below(r, 50);
                add_owner_change(g, c, s0, owner, to);
                owner = to;
                add_meeting(g, c, AT(0.05, 0.2), T_MEETING_SCHEDULED, m, 0);
                add_meeting(g, c, AT(0.3, 0.6), T_MEETING_HELD, m, att);
                break;
            }
            case 2:
                add_meeting(g, c, s0, T_MEETING_SCHEDULED, m, 0);
                add_meeting(g, c, AT(0.3, 0.8), T_MEETING_HELD, m, att);
                break;
            case 3:
                add_meeting(g, c, s0, T_MEETING_SCHEDULED, m, 0);
                add_meeting(g, c, AT(0.2, 0.4), T_MEETING_POSTPONED, m, 0);
                add_meeting(g, c, AT(0.5, 0.85), T_MEETING_HELD, m, att);
                break;
            default: { /* cancelled, scheduled anew, held */
                uint32_t m2 = g->next_meeting++;
                add_meeting(g, c, s0, T_MEETING_SCHEDULED, m, 0);
                add_meeting(g, c, AT(0.2, 0.35), T_MEETING_CANCELLED, m, 0);
                add_meeting(g, c, AT(0.4, 0.5), T_MEETING_SCHEDULED, m2, 0);
                add_meeting(g, c, AT(0.6, 0.85), T_MEETING_HELD, m2, att);
                break;
            }
            }
#undef AT
        }
    }

    /* 5. Tickets: opened, an agent's reply within 20 hours, maybe a client's
     * answer and another reply, maybe a resolution within 5 days. Sorted by
     * opening time so that at most two defects fall in any 30 days (the
     * third becomes a question). Short windows compress the thread. */
    double squeeze = span < 10 * DAY_MS ? (double)span / (double)(10 * DAY_MS) : 1.0;
    int64_t tail = (int64_t)(9.0 * (double)DAY_MS * squeeze);
    for (uint32_t i = 0; i < n_tick; i++) g->tickets[i].ts_ms = biz_time(r, from, g->t1_ms - tail);
    qsort(g->tickets, n_tick, sizeof(*g->tickets), compare_tk);
    int64_t defect_days[2] = {INT64_MIN / 2, INT64_MIN / 2}; /* the last two */
    for (uint32_t i = 0; i < n_tick; i++) {
#define LATER(lo, hi) ((int64_t)(((double)(lo) + (double)((hi) - (lo)) * rng_unit(r)) * squeeze))
        int64_t t = g->tickets[i].ts_ms;
        double u = rng_unit(r);
        int cat = u < 0.45 ? CAT_QUESTION : u < 0.65 ? CAT_COMPLAINT
                : u < 0.85 ? CAT_DEFECT : CAT_FEEDBACK;
        if (cat == CAT_DEFECT) {
            if (day_of(t) - defect_days[0] < 31) {
                cat = CAT_QUESTION;
            } else {
                defect_days[0] = defect_days[1];
                defect_days[1] = day_of(t);
            }
        }
        double p = rng_unit(r);
        int prio = p < 0.2 ? PRIO_HIGH : p < 0.8 ? PRIO_NORMAL : PRIO_LOW;
        uint32_t id = g->next_ticket++;
        unsigned size = g->tickets[i].size;
        add_ticket(g, c, t, id, cat, prio);
        t += LATER(HOUR_MS / 2, 20 * HOUR_MS);
        add_reply(g, c, t, id, BY_AGENT);
        if (size >= 4) {
            t += LATER(HOUR_MS, 2 * DAY_MS);
            add_reply(g, c, t, id, BY_CLIENT);
        }
        if (size >= 5) {
            t += LATER(HOUR_MS / 2, 20 * HOUR_MS);
            add_reply(g, c, t, id, BY_AGENT);
        }
        if (size >= 3) {
            t += LATER(12 * HOUR_MS, 5 * DAY_MS);
            add_resolved(g, c, t, id, cat == CAT_DEFECT ? OUT_FIXED : OUT_ACCEPTED);
        }
#undef LATER
    }

    /* 6. Feedback answered within 3 days, good surveys, profile updates. */
    for (uint32_t i = 0; i < k[BK_FEEDBACK]; i++) {
        int64_t t = biz_time(r, from, g->t1_ms - (int64_t)(4.0 * (double)DAY_MS * squeeze));
        uint32_t id = g->next_feedback++;
        add_feedback(g, c, t, T_FEEDBACK_RECEIVED, id);
        add_feedback(g, c, t + (int64_t)((double)rng_range(r, 2 * HOUR_MS, 3 * DAY_MS) * squeeze),
                     T_FEEDBACK_ANSWERED, id);
    }
    for (uint32_t i = 0; i < k[BK_SURVEY]; i++) {
        int64_t t = biz_time(r, from, g->t1_ms);
        if (rng_chance(r, 0.5))
            add_survey(g, c, t, T_SURVEY_NPS, rng_chance(r, 0.6) ? 9 + (int)rng_below(r, 2)
                                                              : 7 + (int)rng_below(r, 2));
        else
            add_survey(g, c, t, T_SURVEY_CSAT, rng_chance(r, 0.8) ? 4 + (int)rng_below(r, 2) : 3);
    }
    for (uint32_t i = 0; i < k[BK_UPDATE]; i++) {
        unsigned mask = 1 + (unsigned)rng_below(r, 7);
        add(g, c, biz_time(r, from, g->t1_ms), T_CLIENT_UPDATED, mask, tier | segment << 4,
            0, (int32_t)owner);
    }
    return 0;
}

/* Every background client gets one event when there are enough, and the
 * rest of the events are shared by weight rank^-0.9 (ranks are a seeded
 * shuffle of the clients), rounded down, the remainder going one each to
 * the top ranks. */
static int background(gen_t *g, const opts_t *o) {
    uint32_t first = g->n_story, n_bg = o->n_clients - g->n_story;
    uint64_t budget = o->n_events - g->n_ev;
    if (budget == 0) return 0;
    uint32_t *perm = malloc((size_t)n_bg * sizeof(*perm));
    uint32_t *count = calloc(n_bg, sizeof(*count)); /* by client */
    if (!perm || !count) {
        fputs("gen: out of memory\n", stderr);
        free(perm);
        free(count);
        return -1;
    }
    rng_t r;
    rng_seed(&r, o->seed, UINT64_C(2) << 40);
    for (uint32_t i = 0; i < n_bg; i++) perm[i] = i;
    for (uint32_t i = n_bg - 1; i > 0; i--) {
        uint32_t j = (uint32_t)rng_below(&r, (uint64_t)i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    uint64_t base = budget >= n_bg ? 1 : 0, rest = budget - base * n_bg;
    double total = 0.0;
    for (uint32_t k = 0; k < n_bg; k++) total += pow((double)k + 1.0, -0.9);
    uint64_t sum = 0;
    for (uint32_t k = 0; k < n_bg; k++) {
        uint64_t n = base + (uint64_t)((double)rest * pow((double)k + 1.0, -0.9) / total);
        if (sum + n > budget) n = budget - sum; /* rounding never overshoots */
        count[perm[k]] = (uint32_t)n;
        sum += n;
    }
    for (uint32_t k = 0; sum < budget; k = (k + 1) % n_bg, sum++) count[perm[k]]++;
    int rc = 0;
    for (uint32_t i = 0; i < n_bg && rc == 0; i++) {
        if (!count[i]) continue;
        rng_seed(&r, o->seed, first + i);
        rc = live(g, &r, first + i, count[i]);
    }
    free(perm);
    free(count);
    if (rc != 0) fputs("gen: out of memory\n", stderr);
    if (rc == 0 && (g->full || g->n_ev != o->n_events)) {
        fprintf(stderr, "gen: internal error: %" PRIu32 " events made, %" PRIu32 " asked\n",
                g->n_ev, o->n_events);
        return -1;
    }
    return rc;
}

/* ---- output ---------------------------------------------------------------- */

static int compare_ev(const void *a, const void *b) {
    const ev_t *x = a, *y = b;
    if (x->ts_ms != y->ts_ms) return x->ts_ms < y->ts_ms ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

typedef struct arrival {
    int64_t at_ms;
    uint32_t idx; /* position in ts order */
} arrival_t;

static int compare_arrival(const void *a, const void *b) {
    const arrival_t *x = a, *y = b;
    if (x->at_ms != y->at_ms) return x->at_ms < y->at_ms ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static void print_money(FILE *f, int32_t cents) {
    fprintf(f, "%" PRId32 ".%02" PRId32, cents / 100, cents % 100);
}

static void print_event(FILE *f, const gen_t *g, const ev_t *e, uint32_t idx) {
    char ts[TIME_RFC3339_MAX];
    time_format_rfc3339(e->ts_ms, ts, sizeof(ts));
    fprintf(f, "{\"id\":\"e-%08" PRIu32 "\",\"type\":\"%s\",\"client_id\":\"", idx + 1,
            TYPES[e->type].name);
    if (e->client < g->n_story) {
        unsigned k = g->story_kind[e->client];
        fprintf(f, "%s-%s-", k % 2 ? "miss" : "hit", STORIES[k / 2].rule);
    } else {
        fputs("c-", f);
    }
    fprintf(f, "%0*" PRIu32 "\",\"ts\":\"%s\",\"data\":{", (int)g->id_width, e->client, ts);
    switch (e->type) {
    case T_ORDER_PLACED:
    case T_ORDER_CANCELLED:
        fprintf(f, "\"order_id\":\"O-%" PRIu32 "\",\"amount\":", e->ref);
        print_money(f, e->num);
        break;
    case T_MEETING_HELD: {
        fprintf(f, "\"meeting_id\":\"M-%" PRIu32 "\",\"attendee_roles\":[", e->ref);
        const char *sep = "";
        for (unsigned i = 0; i < sizeof(ROLES) / sizeof(ROLES[0]); i++) {
            unsigned bit = ATT(ROLE_DM - i); /* decision makers first */
            if (e->a & bit) {
                fprintf(f, "%s\"%s\"", sep, ROLES[ROLE_DM - i]);
                sep = ",";
            }
        }
        fputc(']', f);
        break;
    }
    case T_MEETING_SCHEDULED:
    case T_MEETING_POSTPONED:
    case T_MEETING_CANCELLED:
        fprintf(f, "\"meeting_id\":\"M-%" PRIu32 "\"", e->ref);
        break;
    case T_EMAIL_RECEIVED:
    case T_EMAIL_SENT:
    case T_CALL_LOGGED:
        fprintf(f, "\"contact_role\":\"%s\"", ROLES[e->a]);
        break;
    case T_TICKET_OPENED:
        fprintf(f, "\"ticket_id\":\"T-%" PRIu32 "\",\"category\":\"%s\",\"priority\":\"%s\"",
                e->ref, CATEGORIES[e->a], PRIORITIES[e->b]);
        break;
    case T_TICKET_REPLIED:
        fprintf(f, "\"ticket_id\":\"T-%" PRIu32 "\",\"by\":\"%s\"", e->ref, BYS[e->a]);
        break;
    case T_TICKET_RESOLVED:
        fprintf(f, "\"ticket_id\":\"T-%" PRIu32 "\",\"outcome\":\"%s\"", e->ref,
                OUTCOMES[e->a]);
        break;
    case T_FEEDBACK_RECEIVED:
    case T_FEEDBACK_ANSWERED:
        fprintf(f, "\"feedback_id\":\"F-%" PRIu32 "\"", e->ref);
        break;
    case T_SURVEY_NPS:
    case T_SURVEY_CSAT:
        fprintf(f, "\"score\":%" PRId32, e->num);
        break;
    case T_OWNER_CHANGED:
        fprintf(f, "\"from\":\"owner-%" PRIu32 "\",\"to\":\"owner-%" PRId32 "\"", e->ref,
                e->num);
        break;
    case T_CLIENT_UPDATED: {
        const char *sep = "";
        if (e->a & UPD_TIER) {
            fprintf(f, "\"tier\":\"%s\"", TIERS[e->b & 15]);
            sep = ",";
        }
        if (e->a & UPD_SEGMENT) {
            fprintf(f, "%s\"segment\":\"%s\"", sep, SEGMENTS[e->b >> 4]);
            sep = ",";
        }
        if (e->a & UPD_OWNER) fprintf(f, "%s\"owner\":\"owner-%" PRId32 "\"", sep, e->num);
        break;
    }
    case T_CONTRACT_SIGNED:
        fputs("\"value\":", f);
        print_money(f, e->num);
        break;
    case T_CONTRACT_CANCELLED:
        fputs("\"value\":", f);
        print_money(f, e->num);
        fprintf(f, ",\"reason\":\"%s\"", REASONS[e->a]);
        break;
    default:
        break;
    }
    fputs("}}\n", f);
}

/* Writes the events (sorted by ts) to one stream or, split by source, to
 * two; with a disorder, in the arrival order ts + [0, disorder]. */
static int write_all(gen_t *g, const opts_t *o) {
    arrival_t *order = NULL;
    if (o->disorder_ms > 0 && g->n_ev > 0) {
        order = malloc((size_t)g->n_ev * sizeof(*order));
        if (!order) return -1;
        rng_t r;
        rng_seed(&r, o->seed, UINT64_C(3) << 40);
        for (uint32_t i = 0; i < g->n_ev; i++) {
            order[i].at_ms = g->ev[i].ts_ms + rng_range(&r, 0, o->disorder_ms + 1);
            order[i].idx = i;
        }
        qsort(order, g->n_ev, sizeof(*order), compare_arrival);
    }
    FILE *out[2] = {stdout, stdout};
    static char bufs[2][1 << 20];
    const char *names[2] = {"stdout", "stdout"};
    if (o->out_crm) {
        names[0] = o->out_crm;
        names[1] = o->out_helpdesk;
        for (int i = 0; i < 2; i++) {
            out[i] = fopen(names[i], "w");
            if (!out[i]) {
                fprintf(stderr, "gen: %s: %s\n", names[i], strerror(errno));
                if (i == 1) fclose(out[0]);
                free(order);
                return -1;
            }
        }
    }
    setvbuf(out[0], bufs[0], _IOFBF, sizeof(bufs[0]));
    if (out[1] != out[0]) setvbuf(out[1], bufs[1], _IOFBF, sizeof(bufs[1]));
    for (uint32_t i = 0; i < g->n_ev; i++) {
        uint32_t idx = order ? order[i].idx : i;
        const ev_t *e = &g->ev[idx];
        print_event(out[TYPES[e->type].helpdesk ? 1 : 0], g, e, idx);
    }
    free(order);
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (i == 1 && out[1] == out[0]) break;
        bool bad = fflush(out[i]) != 0 || ferror(out[i]);
        if (out[i] != stdout && fclose(out[i]) != 0) bad = true;
        if (bad) {
            fprintf(stderr, "gen: writing %s: %s\n", names[i], strerror(errno));
            rc = -1;
        }
    }
    return rc;
}

/* ---- command line ----------------------------------------------------------- */

static const char USAGE[] =
    "usage: gen [--seed N] [--clients N] [--events N] [--start RFC3339] [--days N]\n"
    "           [--disorder DURATION] [--out-crm FILE --out-helpdesk FILE]\n"
    "\n"
    "Writes a deterministic synthetic stream of CRM and helpdesk events (one\n"
    "JSON object per line, sorted by ts) on stdout.\n"
    "\n"
    "  --seed N           random seed (default 1); same options, same bytes\n"
    "  --clients N        clients (default 100000); about 4% tell a story that\n"
    "                     fires a default rule (hit-<rule>-N) or narrowly does\n"
    "                     not (miss-<rule>-N); the others (c-N) stay healthy\n"
    "  --events N         exactly N events (default 1000000)\n"
    "  --start TS         first instant of the window (default 2026-01-01T00:00:00Z)\n"
    "  --days N           length of the window in days (default 180)\n"
    "  --disorder D       emit each event at ts + a random delay in [0, D] instead\n"
    "                     of sorted (90s, 5m, 1h; default 0: sorted)\n"
    "  --out-crm FILE     write CRM events (orders, meetings, emails, calls,\n"
    "  --out-helpdesk FILE  accounts, contracts) and helpdesk events (tickets,\n"
    "                     feedback, surveys) to two files instead of stdout\n";

static int usage_error(const char *fmt, const char *arg) {
    fputs("gen: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n", stderr);
    fputs(USAGE, stderr);
    return 1;
}

/* A decimal integer in [lo, hi], nothing else. */
static int parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, opts_t *o) {
    static const struct option LONG[] = {
        {"seed", required_argument, NULL, 's'},
        {"clients", required_argument, NULL, 'c'},
        {"events", required_argument, NULL, 'e'},
        {"start", required_argument, NULL, 't'},
        {"days", required_argument, NULL, 'd'},
        {"disorder", required_argument, NULL, 'x'},
        {"out-crm", required_argument, NULL, 'C'},
        {"out-helpdesk", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (opts_t){.seed = 1, .n_clients = 100000, .n_events = 1000000, .days = 180};
    if (time_parse_rfc3339("2026-01-01T00:00:00Z", 20, &o->start_ms) != 0) return 1;
    opterr = 0;
    int ch;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, ":h", LONG, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (parse_uint(optarg, 0, UINT64_MAX, &v)) return usage_error("bad --seed %s", optarg);
            o->seed = v;
            break;
        case 'c':
            if (parse_uint(optarg, 1, 100000000, &v))
                return usage_error("bad --clients %s (1..100000000)", optarg);
            o->n_clients = (uint32_t)v;
            break;
        case 'e':
            if (parse_uint(optarg, 0, 1000000000, &v))
                return usage_error("bad --events %s (0..1000000000)", optarg);
            o->n_events = (uint32_t)v;
            break;
        case 't':
            if (time_parse_rfc3339(optarg, strlen(optarg), &o->start_ms) != 0)
                return usage_error("bad --start %s (RFC 3339, e.g. 2026-01-01T00:00:00Z)",
                                   optarg);
            break;
        case 'd':
            if (parse_uint(optarg, 1, 36500, &v))
                return usage_error("bad --days %s (1..36500)", optarg);
            o->days = (uint32_t)v;
            break;
        case 'x':
            if (duration_parse(optarg, strlen(optarg), &o->disorder_ms) != 0 ||
                o->disorder_ms > 365 * DAY_MS)
                return usage_error("bad --disorder %s (a duration such as 90s, 5m, 1h)",
                                   optarg);
            break;
        case 'C':
            o->out_crm = optarg;
            break;
        case 'H':
            o->out_helpdesk = optarg;
            break;
        case 'h':
            fputs(USAGE, stdout);
            return -1;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument %s", argv[optind]);
    if (!o->out_crm != !o->out_helpdesk)
        return usage_error("%s", "--out-crm and --out-helpdesk go together");
    if (o->start_ms + (int64_t)o->days * DAY_MS > TIME_MAX_MS)
        return usage_error("%s", "--start plus --days is past the year 9999");
    return 0;
}

int main(int argc, char **argv) {
    opts_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc < 0 ? 0 : rc;

    gen_t g = {0};
    g.t0_ms = o.start_ms;
    g.t1_ms = o.start_ms + (int64_t)o.days * DAY_MS;
    g.cap_ev = o.n_events;
    g.id_width = 7;
    for (uint32_t n = o.n_clients - 1; n >= 10000000; n /= 10) g.id_width++;
    g.ev = malloc((size_t)(o.n_events ? o.n_events : 1) * sizeof(*g.ev));
    rc = 2;
    if (!g.ev) {
        fputs("gen: out of memory\n", stderr);
        goto done;
    }
    if (tell_stories(&g, &o) != 0 || background(&g, &o) != 0) goto done;
    qsort(g.ev, g.n_ev, sizeof(*g.ev), compare_ev);
    if (write_all(&g, &o) == 0) rc = 0;
done:
    free(g.ev);
    free(g.story_kind);
    free(g.times);
    free(g.kinds);
    free(g.tickets);
    return rc;
}
