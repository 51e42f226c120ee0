/*
 * text: a bounded string builder over a caller-owned buffer.
 *
 * Appends never write past the buffer; once something does not fit, the builder is
 * marked overflowed and later appends do nothing, so callers check once at the end.
 */
#ifndef JOBGATE_TEXT_H
#define JOBGATE_TEXT_H

#include <stddef.h>
#include <stdint.h>

struct text {
    char *base;
    size_t len;
    size_t capacity; /* bytes available, including room for a terminating NUL */
    int overflowed;
};

void text_init(struct text *text, char *buffer, size_t capacity);
void text_append(struct text *text, const char *bytes, size_t len);
void text_append_str(struct text *text, const char *str);
void text_append_uint(struct text *text, uint64_t value);
void text_append_int(struct text *text, int64_t value);

/* Appends bytes as a quoted JSON string, escaping quotes, backslashes and controls. */
void text_append_json_string(struct text *text, const char *bytes, size_t len);

/*
 * Appends bytes in base64url without padding (RFC 4648 section 5). It takes time that
 * depends on the bytes, so it is for public values (signatures, hashes, ciphertexts);
 * key material goes through keyfile's constant-time encoder.
 */
void text_append_base64url(struct text *text, const unsigned char *bytes, size_t len);

/* Returns the NUL-terminated text, or NULL when it overflowed. */
const char *text_finish(struct text *text);

#endif
