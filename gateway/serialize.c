/*
 * serialize: compact JSON with shortest round-trip reals; see serialize.h.
 */
#include "serialize.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REAL_MAX_DIGITS 17

/* Whether value is a normal power of two: its fraction bits are all zero. */
static int is_power_of_two(double value)
{
    uint64_t bits;

    memcpy(&bits, &value, sizeof(bits));
    return (bits & 0x000fffffffffffffu) == 0 && (bits & 0x7ff0000000000000u) != 0;
}

/*
 * Turns scientific ("D.DDDe+XX" or "De+XX", positive) into the next decimal up with
 * as many digits, carrying into the exponent when every digit was 9.
 */
static void next_decimal_up(char *scientific, size_t size)
{
    char *exponent = strchr(scientific, 'e');
    char *digit = exponent;

    while (digit > scientific) {
        digit--;
        if (*digit == '.')
            continue;
        if (*digit != '9') {
            (*digit)++;
            return;
        }
        *digit = '0';
    }
    scientific[0] = '1';
    snprintf(exponent, size - (size_t)(exponent - scientific), "e%+ld",
             strtol(exponent + 1, NULL, 10) + 1);
}

/*
 * Finds the fewest significant digits that read back as value: fills digits (no dot,
 * no sign) and returns their count k, with *point set so that value = 0.DIGITS x 10^point.
 */
static int shortest_digits(double value, char digits[REAL_MAX_DIGITS + 1], int *point)
{
    char scientific[40];
    int count = 0;

    /* At most 17 significant digits are ever needed to name a double exactly. */
    for (int precision = 1; precision <= REAL_MAX_DIGITS; precision++) {
        snprintf(scientific, sizeof(scientific), "%.*e", precision - 1, value);
        double nearest = strtod(scientific, NULL);
        if (nearest == value)
            break;

        /*
         * Below a power of two the doubles are twice as dense, so the range that reads
         * back as value reaches only half as far down as up: the nearest decimal can
         * miss below while the next one up still reads back. ECMA-262 wants that one:
         * 2^-1017 is 7.120236347223045e-307 (7.120236347223044e-307 is another double).
         */
        if (is_power_of_two(value) && nearest < value) {
            next_decimal_up(scientific, sizeof(scientific));
            if (strtod(scientific, NULL) == value)
                break;
        }
    }
    /* scientific is "D.DDDDe+XX" (or "De+XX"), value positive. */
    for (const char *c = scientific; *c != 'e'; c++) {
        if (*c != '.')
            digits[count++] = *c;
    }
    while (count > 1 && digits[count - 1] == '0')
        count--;
    digits[count] = '\0';
    *point = (int)strtol(strchr(scientific, 'e') + 1, NULL, 10) + 1;
    return count;
}

static void append_zeros(struct text *out, int count)
{
    for (int i = 0; i < count; i++)
        text_append(out, "0", 1);
}

void serialize_real(struct text *out, double value, enum serialize_mode mode)
{
    char digits[REAL_MAX_DIGITS + 1];
    int k, n;

    if (value == 0) {
        text_append_str(out, mode == SERIALIZE_PAYLOAD ? "0.0" : "0");
        return;
    }
    if (value < 0) {
        text_append(out, "-", 1);
        value = -value;
    }
    k = shortest_digits(value, digits, &n);

    /* ECMA-262 Number::toString, which RFC 8785 adopts. */
    if (k <= n && n <= 21) {
        text_append(out, digits, (size_t)k);
        append_zeros(out, n - k);
        if (mode == SERIALIZE_PAYLOAD)
            text_append(out, ".0", 2);
    } else if (0 < n && n <= 21) {
        text_append(out, digits, (size_t)n);
        text_append(out, ".", 1);
        text_append(out, digits + n, (size_t)(k - n));
    } else if (-6 < n && n <= 0) {
        text_append(out, "0.", 2);
        append_zeros(out, -n);
        text_append(out, digits, (size_t)k);
    } else {
        text_append(out, digits, 1);
        if (k > 1) {
            text_append(out, ".", 1);
            text_append(out, digits + 1, (size_t)(k - 1));
        }
        text_append(out, n - 1 < 0 ? "e-" : "e+", 2);
        text_append_uint(out, (uint64_t)(n - 1 < 0 ? 1 - n : n - 1));
    }
}

static void serialize_object(struct text *out, const json_t *object, enum serialize_mode mode)
{
    const char *key;
    const json_t *member;
    int first = 1;

    text_append(out, "{", 1);
    json_object_foreach((json_t *)object, key, member)
    {
        if (!first)
            text_append(out, ",", 1);
        first = 0;
        text_append_json_string(out, key, strlen(key));
        text_append(out, ":", 1);
        serialize_json(out, member, mode);
    }
    text_append(out, "}", 1);
}

static void serialize_array(struct text *out, const json_t *array, enum serialize_mode mode)
{
    size_t index;
    const json_t *element;

    text_append(out, "[", 1);
    json_array_foreach(array, index, element)
    {
        if (index > 0)
            text_append(out, ",", 1);
        serialize_json(out, element, mode);
    }
    text_append(out, "]", 1);
}

void serialize_json(struct text *out, const json_t *value, enum serialize_mode mode)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        serialize_object(out, value, mode);
        break;
    case JSON_ARRAY:
        serialize_array(out, value, mode);
        break;
    case JSON_STRING:
        text_append_json_string(out, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        text_append_int(out, json_integer_value(value));
        break;
    case JSON_REAL:
        serialize_real(out, json_real_value(value), mode);
        break;
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
}
