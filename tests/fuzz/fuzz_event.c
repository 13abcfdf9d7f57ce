/*
 * fuzz_event.c - libFuzzer target for event_parse, the first code every
 * Kafka message reaches. Arbitrary bytes go in with the default config;
 * libFuzzer hands over an exact-size heap copy, so ASan reports any read
 * past len. Besides "no crash, no leak", it checks what callers rely on:
 * a known reason, a NUL-terminated detail, and on success a client, type
 * and id that are as long as they say and within their limits, and a
 * tree that fits the arena sized for it.
 *
 * Built and run by scripts/fuzz.sh (`make fuzz`, and briefly in `make
 * check`): scripts/fuzz.sh SECONDS event. Seeds: tests/fuzz/corpus/event.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "churnd/event.h"
#include "churnd/timeutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    event_config_t cfg;
    if (event_config_init(&cfg) != 0) return 0;
    event_t ev;
    memset(&ev, 0, sizeof(ev));
    char detail[256];
    event_reason_t r = event_parse(&cfg, (const char *)data, size, &ev, detail,
                                   sizeof(detail));
    if ((unsigned)r >= EVENT__N) abort();
    if (strlen(detail) >= sizeof(detail)) abort();
    if (r == EVENT_OK) {
        if (!ev.root || !ev.client_id || !ev.type || !ev.type[0]) abort();
        /* The arena's size bound holds for any message. */
        if (event_arena_blocks(&ev) != 1) abort();
        if (ev.client_len == 0 || ev.client_len >= EVENT_CLIENT_MAX ||
            strlen(ev.client_id) != ev.client_len)
            abort();
        if (ev.id && (ev.id_len == 0 || ev.id_len >= EVENT_ID_MAX ||
                      strlen(ev.id) != ev.id_len))
            abort();
        if (ev.ts_ms < TIME_MIN_MS || ev.ts_ms > TIME_MAX_MS) abort();
        /* Every accepted time must survive format -> parse. */
        char buf[TIME_RFC3339_MAX];
        size_t n = time_format_rfc3339(ev.ts_ms, buf, sizeof(buf));
        int64_t back;
        if (n == 0 || time_parse_rfc3339(buf, n, &back) != 0 ||
            back != ev.ts_ms)
            abort();
        (void)event_path(ev.root, "data.amount");
    } else {
        if (ev.root || detail[0] == '\0') abort();
    }
    event_clear(&ev);
    event_config_free(&cfg);
    return 0;
}
