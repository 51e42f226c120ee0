/*
 * text: a bounded string builder; see text.h.
 */
#include "text.h"

#include <string.h>

void text_init(struct text *text, char *buffer, size_t capacity)
{
    text->base = buffer;
    text->len = 0;
    text->capacity = capacity;
    text->overflowed = capacity == 0;
}

void text_append(struct text *text, const char *bytes, size_t len)
{
    if (text->overflowed)
        return;
    if (len >= text->capacity - text->len) {
        text->overflowed = 1;
        return;
    }
    memcpy(text->base + text->len, bytes, len);
    text->len += len;
}

void text_append_str(struct text *text, const char *str)
{
    text_append(text, str, strlen(str));
}

void text_append_uint(struct text *text, uint64_t value)
{
    char digits[20];
    size_t count = 0;

    do {
        digits[sizeof(digits) - 1 - count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    text_append(text, digits + sizeof(digits) - count, count);
}

void text_append_int(struct text *text, int64_t value)
{
    if (value < 0) {
        text_append(text, "-", 1);
        text_append_uint(text, (uint64_t)0 - (uint64_t)value);
    } else {
        text_append_uint(text, (uint64_t)value);
    }
}

void text_append_json_string(struct text *text, const char *bytes, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    static const char short_escapes[0x20] = {
        ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
    size_t start = 0;

    text_append(text, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        text_append(text, bytes + start, i - start);
        start = i + 1;
        if (c < 0x20 && short_escapes[c] == 0) {
            char escaped[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
            text_append(text, escaped, 6);
        } else {
            char escaped[2] = {'\\', c < 0x20 ? short_escapes[c] : (char)c};
            text_append(text, escaped, 2);
        }
    }
    text_append(text, bytes + start, len - start);
    text_append(text, "\"", 1);
}

void text_append_base64url(struct text *text, const unsigned char *bytes, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t encoded_len = len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1), out;
    char *base;

    if (text->overflowed || encoded_len >= text->capacity - text->len) {
        text->overflowed = 1;
        return;
    }
    base = text->base + text->len;
    out = 0;
    for (size_t i = 0; i + 2 < len; i += 3) {
        uint32_t group = (uint32_t)bytes[i] << 16 | (uint32_t)bytes[i + 1] << 8 | bytes[i + 2];
        base[out++] = alphabet[group >> 18];
        base[out++] = alphabet[group >> 12 & 0x3f];
        base[out++] = alphabet[group >> 6 & 0x3f];
        base[out++] = alphabet[group & 0x3f];
    }
    if (len % 3 != 0) {
        size_t at = len - len % 3;
        uint32_t group =
            (uint32_t)bytes[at] << 16 | (len % 3 == 2 ? (uint32_t)bytes[at + 1] << 8 : 0);
        base[out++] = alphabet[group >> 18];
        base[out++] = alphabet[group >> 12 & 0x3f];
        if (len % 3 == 2)
            base[out++] = alphabet[group >> 6 & 0x3f];
    }
    text->len += out;
}

const char *text_finish(struct text *text)
{
    if (text->overflowed)
        return NULL;
    text->base[text->len] = '\0';
    return text->base;
}
