/*
 * serialize: compact JSON text for values jobgate writes to Redis.
 *
 * jansson prints reals with 17 significant digits, so 19.99 would reach Redis as
 * 19.989999999999998. This writer prints every real in the shortest form that reads
 * back as the same double, and keeps a real a real (1e3 is written 1000.0, so Ruby
 * still sees a Float). Strings are written as UTF-8 with only the escapes JSON
 * requires; object members keep their order.
 */
#ifndef JOBGATE_SERIALIZE_H
#define JOBGATE_SERIALIZE_H

#include <jansson.h>

#include "text.h"

enum serialize_mode {
    /* For Redis: a real stays a real, so 1e3 is written 1000.0 and Ruby still sees a Float. */
    SERIALIZE_PAYLOAD,
    /* Reals exactly in ECMA-262's form, as RFC 8785 asks, so 1e3 is written 1000. */
    SERIALIZE_ECMA,
};

/* Appends value to out; out is marked overflowed when it does not fit. */
void serialize_json(struct text *out, const json_t *value, enum serialize_mode mode);

/* Appends the shortest decimal form of a finite double that reads back exactly. */
void serialize_real(struct text *out, double value, enum serialize_mode mode);

#endif
