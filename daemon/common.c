/*
 * common.c - error values, the growable buffer and the record reader.
 * Pure: no I/O. Encodings here are part of on-disk formats, so their byte
 * layout must not change without a format version bump in the caller.
 */
#include "churnd/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int churn_err_setv(churn_err_t *err, int code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        err->file[0] = '\0';
        err->line = 0;
        err->col = 0;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return code;
}

int churn_err_set(churn_err_t *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    churn_err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int churn_err_at(churn_err_t *err, int code, const char *file, int line,
                 int col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    churn_err_setv(err, code, fmt, ap);
    va_end(ap);
    if (err) {
        snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
        err->line = line;
        err->col = col;
    }
    return code;
}

const char *churn_err_str(const churn_err_t *err, char *buf, size_t size) {
    if (!err || size == 0) return "";
    if (err->file[0] && err->line > 0)
        snprintf(buf, size, "%s:%d:%d: %s", err->file, err->line, err->col,
                 err->msg);
    else if (err->file[0])
        snprintf(buf, size, "%s: %s", err->file, err->msg);
    else
        snprintf(buf, size, "%s", err->msg);
    return buf;
}

void buf_init(buf_t *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_free(buf_t *b) {
    free(b->data);
    buf_init(b);
}

void buf_reset(buf_t *b) { b->len = 0; }

int buf_reserve(buf_t *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->len) return CHURN_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return CHURN_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

void *churn_grow(void *v, size_t n, size_t *cap, size_t elem, size_t first) {
    if (n < *cap) return v;
    size_t c = *cap ? *cap : first ? first : 1;
    if (*cap) {
        if (c > SIZE_MAX / 2) return NULL;
        c *= 2;
    }
    if (elem == 0 || c > SIZE_MAX / elem) return NULL;
    void *p = realloc(v, c * elem);
    if (p) *cap = c;
    return p;
}

int buf_append(buf_t *b, const void *p, size_t n) {
    if (n == 0) return 0;
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_putc(buf_t *b, uint8_t c) { return buf_append(b, &c, 1); }

int buf_printf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) return CHURN_EINVAL;
    if ((size_t)n < sizeof(tmp)) return buf_append(b, tmp, (size_t)n);
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int buf_put_u32be(buf_t *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    return buf_append(b, x, 4);
}

int buf_put_u64be(buf_t *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (56 - 8 * i));
    return buf_append(b, x, 8);
}

int buf_put_varint(buf_t *b, uint64_t v) {
    uint8_t x[10];
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        if (v) c |= 0x80;
        x[n++] = c;
    } while (v);
    return buf_append(b, x, n);
}

int buf_put_svarint(buf_t *b, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    return buf_put_varint(b, z);
}

int buf_put_bytes(buf_t *b, const void *p, size_t n) {
    int rc = buf_put_varint(b, n);
    return rc ? rc : buf_append(b, p, n);
}

int buf_put_json_str(buf_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    int rc = buf_putc(b, '"');
    for (size_t i = 0; !rc && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': rc = buf_append(b, "\\\"", 2); break;
        case '\\': rc = buf_append(b, "\\\\", 2); break;
        case '\n': rc = buf_append(b, "\\n", 2); break;
        case '\r': rc = buf_append(b, "\\r", 2); break;
        case '\t': rc = buf_append(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                rc = buf_append(b, u, 6);
            } else {
                rc = buf_putc(b, c);
            }
        }
    }
    return rc ? rc : buf_putc(b, '"');
}

void reader_init(reader_t *r, const void *data, size_t len) {
    r->p = data;
    r->end = len ? r->p + len : r->p; /* no arithmetic on a NULL pointer */
}

int reader_u8(reader_t *r, uint8_t *v) {
    if (r->p >= r->end) return CHURN_ECORRUPT;
    *v = *r->p++;
    return 0;
}

int reader_u32be(reader_t *r, uint32_t *v) {
    if (reader_left(r) < 4) return CHURN_ECORRUPT;
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 |
         (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    return 0;
}

int reader_u64be(reader_t *r, uint64_t *v) {
    if (reader_left(r) < 8) return CHURN_ECORRUPT;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = x << 8 | r->p[i];
    *v = x;
    r->p += 8;
    return 0;
}

int reader_varint(reader_t *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return CHURN_ECORRUPT;
        uint8_t c = *r->p++;
        if (shift == 63 && (c & 0x7e)) return CHURN_ECORRUPT;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return CHURN_ECORRUPT;
}

int reader_svarint(reader_t *r, int64_t *v) {
    uint64_t z;
    int rc = reader_varint(r, &z);
    if (rc) return rc;
    *v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return 0;
}

int reader_raw(reader_t *r, size_t n, const uint8_t **p) {
    if (reader_left(r) < n) return CHURN_ECORRUPT;
    *p = r->p;
    r->p += n;
    return 0;
}

int reader_bytes(reader_t *r, const uint8_t **p, size_t *n) {
    uint64_t len;
    int rc = reader_varint(r, &len);
    if (rc) return rc;
    if (len > reader_left(r)) return CHURN_ECORRUPT;
    *n = (size_t)len;
    return reader_raw(r, (size_t)len, p);
}

uint64_t churn_hash64(const void *p, size_t n, uint64_t seed) {
    const uint8_t *s = p;
    uint64_t h = seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
