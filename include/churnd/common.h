/*
 * common.h - small types every churnd module shares: the error value that
 * carries a human sentence (and, for rules files, file:line:column), and a
 * growable byte buffer used for encoding and formatting without per-call
 * allocation once warmed up.
 *
 * Conventions (see ../shared/STYLE.md): functions return 0 or a negative
 * CHURN_E* code; where a person must read the reason they also fill a
 * caller-provided churn_err_t. Times are int64 ms since the epoch (ts_ms),
 * durations int64 ms.
 */
#ifndef CHURND_COMMON_H
#define CHURND_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

enum {
    CHURN_OK = 0,
    CHURN_EINVAL = -1,   /* bad input: the message says what and where */
    CHURN_ENOMEM = -2,
    CHURN_EIO = -3,      /* storage or file I/O failed */
    CHURN_ECORRUPT = -4, /* an on-disk record we do not understand */
    CHURN_EKAFKA = -5,
    CHURN_ENOTFOUND = -6,
    CHURN_ELIMIT = -7,   /* a configured or built-in bound was exceeded */
};

#define CHURN_ERR_MSG_MAX 512
#define CHURN_ERR_FILE_MAX 256

typedef struct churn_err {
    int code;
    char file[CHURN_ERR_FILE_MAX]; /* empty when not about a file */
    int line;                      /* 1-based; 0 when unknown */
    int col;                       /* 1-based; 0 when unknown */
    char msg[CHURN_ERR_MSG_MAX];
} churn_err_t;

/* Fill err (may be NULL) and return code. */
int churn_err_set(churn_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int churn_err_setv(churn_err_t *err, int code, const char *fmt, va_list ap);
/* Same, with a position in a file (rules, config). */
int churn_err_at(churn_err_t *err, int code, const char *file, int line,
                 int col, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* "file:line:col: msg" or just "msg"; returns buf. */
const char *churn_err_str(const churn_err_t *err, char *buf, size_t size);

/* Growable byte buffer. buf_init/buf_free own the memory; buf_reset keeps
 * the capacity so a hot path can reuse one buffer for every record. */
typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} buf_t;

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_putc(buf_t *b, uint8_t c);
int buf_printf(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Fixed-width big-endian and LEB128 varint encoders used by on-disk formats. */
int buf_put_u32be(buf_t *b, uint32_t v);
int buf_put_u64be(buf_t *b, uint64_t v);
int buf_put_varint(buf_t *b, uint64_t v);
int buf_put_svarint(buf_t *b, int64_t v); /* zigzag */
int buf_put_bytes(buf_t *b, const void *p, size_t n); /* varint len + bytes */
/* Append a JSON string literal (quoted, escaped) for s[0..n). */
int buf_put_json_str(buf_t *b, const char *s, size_t n);

/* A bounds-checked reader over an encoded record. Every get returns 0 or
 * CHURN_ECORRUPT when the record ends early or a varint is malformed. */
typedef struct reader {
    const uint8_t *p;
    const uint8_t *end;
} reader_t;

void reader_init(reader_t *r, const void *data, size_t len);
int reader_u8(reader_t *r, uint8_t *v);
int reader_u32be(reader_t *r, uint32_t *v);
int reader_u64be(reader_t *r, uint64_t *v);
int reader_varint(reader_t *r, uint64_t *v);
int reader_svarint(reader_t *r, int64_t *v);
/* Borrow n bytes, or a varint-length-prefixed byte string. */
int reader_raw(reader_t *r, size_t n, const uint8_t **p);
int reader_bytes(reader_t *r, const uint8_t **p, size_t *n);
static inline size_t reader_left(const reader_t *r) {
    return (size_t)(r->end - r->p);
}

/* 64-bit FNV-1a, for stable ids of names and definitions (persisted: never
 * change the function). */
uint64_t churn_hash64(const void *p, size_t n, uint64_t seed);
#define CHURN_HASH_SEED 0xcbf29ce484222325ULL

#define CHURN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Room for one more element in array v of *cap elements of elem bytes, n
 * of them in use: v itself while n < *cap, else v reallocated to twice the
 * capacity (first when it has none) and *cap updated. NULL when out of
 * memory; v and *cap are then unchanged. */
void *churn_grow(void *v, size_t n, size_t *cap, size_t elem, size_t first);

/* What a malloc of n bytes costs on the heap, as glibc lays it out: a
 * chunk header and 16-byte alignment, 32 bytes at least; 0 for nothing.
 * For memory accounting (the cache's byte budget), not exact for every
 * allocator. */
static inline size_t churn_heap_cost(size_t n) {
    if (!n) return 0;
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

#endif
