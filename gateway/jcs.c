/*
 * jcs: RFC 8785 canonical JSON for signatures; see jcs.h.
 */
#include "jcs.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "serialize.h"

/* Objects of up to this many members are sorted on the stack; larger ones on the heap. */
#define STACK_MEMBERS 32
#define INSERTION_SORT_MAX 16

struct member {
    const char *name;
    size_t name_len;
    const json_t *value;
};

static enum jcs_status append_value(struct text *out, const json_t *value, unsigned flags,
                                    size_t depth);

/*
 * Decodes the UTF-8 sequence at *at into *code_point and steps past it. Returns -1,
 * leaving *at alone, for anything RFC 3629 forbids: a stray or truncated sequence, an
 * overlong form, a surrogate, a code point past U+10FFFF.
 */
static int utf8_next(const char *text, size_t len, size_t *at, uint32_t *code_point)
{
    const unsigned char *bytes = (const unsigned char *)text + *at;
    size_t available = len - *at, count;
    uint32_t value, minimum;

    if (bytes[0] < 0x80) {
        *code_point = bytes[0];
        *at += 1;
        return 0;
    }
    if ((bytes[0] & 0xe0) == 0xc0) {
        count = 2;
        value = bytes[0] & 0x1f;
        minimum = 0x80;
    } else if ((bytes[0] & 0xf0) == 0xe0) {
        count = 3;
        value = bytes[0] & 0x0f;
        minimum = 0x800;
    } else if ((bytes[0] & 0xf8) == 0xf0) {
        count = 4;
        value = bytes[0] & 0x07;
        minimum = 0x10000;
    } else {
        return -1;
    }
    if (count > available)
        return -1;
    for (size_t i = 1; i < count; i++) {
        if ((bytes[i] & 0xc0) != 0x80)
            return -1;
        value = value << 6 | (bytes[i] & 0x3f);
    }
    if (value < minimum || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff))
        return -1;

    *code_point = value;
    *at += count;
    return 0;
}

static int utf8_valid(const char *text, size_t len)
{
    const unsigned char *bytes = (const unsigned char *)text;
    uint32_t code_point;

    for (size_t at = 0; at < len;) {
        /* Most names and values are ASCII, which needs no decoding. */
        if (bytes[at] < 0x80) {
            at++;
            continue;
        }
        if (utf8_next(text, len, &at, &code_point) != 0)
            return 0;
    }
    return 1;
}

/*
 * Where a code point falls when names are compared as UTF-16 code units, as RFC 8785
 * sorts them. Two different code points are told apart by their first unit, unless both
 * lie above U+FFFF, where unit order is code point order. So those above U+FFFF, whose
 * first unit is a surrogate (0xd800-0xdbff), rank after U+D7FF but before U+E000-U+FFFF,
 * unlike in code point order or UTF-8 byte order.
 */
static uint32_t utf16_rank(uint32_t code_point)
{
    if (code_point < 0xd800)
        return code_point;
    if (code_point > 0xffff)
        return code_point - 0x10000 + 0xd800;
    return code_point - 0xe000 + 0xd800 + 0x100000;
}

/*
 * The order of members: by name, as UTF-16 code units; a name sorts after its prefixes.
 * Where the names first differ in an ASCII byte, that byte decides, as it does in
 * UTF-16; otherwise they are compared code point by code point.
 */
static int compare_members(const struct member *a, const struct member *b)
{
    size_t at_a = 0, at_b = 0, common = a->name_len < b->name_len ? a->name_len : b->name_len;
    uint32_t code_point_a, code_point_b;

    while (at_a < common && a->name[at_a] == b->name[at_a])
        at_a++;
    if (at_a == common)
        return (a->name_len > common) - (b->name_len > common);
    if ((unsigned char)a->name[at_a] < 0x80 && (unsigned char)b->name[at_a] < 0x80)
        return (unsigned char)a->name[at_a] < (unsigned char)b->name[at_a] ? -1 : 1;

    /* Back to the start of the code point the names differ in. */
    while (at_a > 0 && ((unsigned char)a->name[at_a] & 0xc0) == 0x80)
        at_a--;
    at_b = at_a;
    while (at_a < a->name_len && at_b < b->name_len) {
        /* Names were found valid before sorting, so this only guards the loop. */
        if (utf8_next(a->name, a->name_len, &at_a, &code_point_a) != 0 ||
            utf8_next(b->name, b->name_len, &at_b, &code_point_b) != 0)
            return 0;
        if (code_point_a != code_point_b)
            return utf16_rank(code_point_a) < utf16_rank(code_point_b) ? -1 : 1;
    }
    return (at_a < a->name_len) - (at_b < b->name_len);
}

static int compare_for_qsort(const void *a, const void *b)
{
    return compare_members(a, b);
}

/*
 * Sorts members by name. Most objects are small, where an insertion sort beats qsort;
 * large ones, which a producer may make as large as the limits allow, go to qsort.
 */
static void sort_members(struct member *members, size_t count)
{
    if (count > INSERTION_SORT_MAX) {
        qsort(members, count, sizeof(*members), compare_for_qsort);
        return;
    }
    for (size_t i = 1; i < count; i++) {
        struct member moving = members[i];
        size_t j = i;
        while (j > 0 && compare_members(&members[j - 1], &moving) > 0) {
            members[j] = members[j - 1];
            j--;
        }
        members[j] = moving;
    }
}

static enum jcs_status append_string(struct text *out, const char *text, size_t len)
{
    if (!utf8_valid(text, len))
        return JCS_STRING;

    /*
     * text escapes what RFC 8785 3.2.2.2 escapes and nothing else: the two-letter forms
     * \b \t \n \f \r \" \\, \u00xx in lowercase for the other controls; '/', DEL and
     * everything past ASCII go through as they are.
     */
    text_append_json_string(out, text, len);
    return JCS_OK;
}

static enum jcs_status append_integer(struct text *out, json_int_t value, unsigned flags)
{
    if ((flags & JCS_EXACT_INTEGERS) == 0 && (value > JCS_MAX_INTEGER || value < -JCS_MAX_INTEGER))
        return JCS_NUMBER;

    /* Up to 2^53 the digits are what Number::toString writes for the same double. */
    text_append_int(out, value);
    return JCS_OK;
}

static enum jcs_status append_real(struct text *out, double value)
{
    if (!isfinite(value))
        return JCS_NUMBER;

    serialize_real(out, value, SERIALIZE_ECMA);
    return JCS_OK;
}

/* Writes an object's members sorted by name; depth counts the object itself. */
static enum jcs_status append_object(struct text *out, const json_t *object, unsigned flags,
                                     size_t depth)
{
    struct member stack_members[STACK_MEMBERS];
    struct member *members = stack_members;
    size_t count = json_object_size(object), gathered = 0;
    enum jcs_status status = JCS_OK;
    const char *name;
    size_t name_len;
    json_t *value;

    /* The list is as long as the object, which is already in memory: bounded by it. */
    if (count > STACK_MEMBERS) {
        if (count > SIZE_MAX / sizeof(*members))
            return JCS_NO_MEMORY;
        members = malloc(count * sizeof(*members));
        if (members == NULL)
            return JCS_NO_MEMORY;
    }

    json_object_keylen_foreach((json_t *)object, name, name_len, value)
    {
        if (gathered == count)
            break;
        if (!utf8_valid(name, name_len)) {
            status = JCS_STRING;
            goto out;
        }
        members[gathered++] = (struct member){name, name_len, value};
    }
    sort_members(members, gathered);

    text_append(out, "{", 1);
    for (size_t i = 0; i < gathered && status == JCS_OK; i++) {
        if (i > 0)
            text_append(out, ",", 1);
        text_append_json_string(out, members[i].name, members[i].name_len);
        text_append(out, ":", 1);
        status = append_value(out, members[i].value, flags, depth);
    }
    text_append(out, "}", 1);

out:
    if (members != stack_members)
        free(members);
    return status;
}

/* Writes an array's elements in their order; depth counts the array itself. */
static enum jcs_status append_array(struct text *out, const json_t *array, unsigned flags,
                                    size_t depth)
{
    size_t index;
    const json_t *element;
    enum jcs_status status;

    text_append(out, "[", 1);
    json_array_foreach(array, index, element)
    {
        if (index > 0)
            text_append(out, ",", 1);
        status = append_value(out, element, flags, depth);
        if (status != JCS_OK)
            return status;
    }
    text_append(out, "]", 1);
    return JCS_OK;
}

/* Writes value, which sits inside depth arrays and objects. */
static enum jcs_status append_value(struct text *out, const json_t *value, unsigned flags,
                                    size_t depth)
{
    /* Nothing more can be written, so there is no point sorting what is left. */
    if (out->overflowed)
        return JCS_OVERFLOW;

    switch (json_typeof(value)) {
    case JSON_OBJECT:
        if (depth >= JCS_MAX_DEPTH)
            return JCS_TOO_DEEP;
        return append_object(out, value, flags, depth + 1);
    case JSON_ARRAY:
        if (depth >= JCS_MAX_DEPTH)
            return JCS_TOO_DEEP;
        return append_array(out, value, flags, depth + 1);
    case JSON_STRING:
        return append_string(out, json_string_value(value), json_string_length(value));
    case JSON_INTEGER:
        return append_integer(out, json_integer_value(value), flags);
    case JSON_REAL:
        return append_real(out, json_real_value(value));
    case JSON_TRUE:
        text_append(out, "true", 4);
        break;
    case JSON_FALSE:
        text_append(out, "false", 5);
        break;
    case JSON_NULL:
        text_append(out, "null", 4);
        break;
    }
    return JCS_OK;
}

enum jcs_status jcs_append(struct text *out, const json_t *value, unsigned flags)
{
    size_t start = out->len;
    enum jcs_status status = append_value(out, value, flags, 0);

    if (status == JCS_OK && out->overflowed)
        status = JCS_OVERFLOW;
    if (status != JCS_OK)
        out->len = start;
    return status;
}
