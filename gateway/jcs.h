/*
 * jcs: the canonical bytes of a JSON value, as RFC 8785 (JSON Canonicalization Scheme)
 * defines them, which the envelope's Ed25519 signature covers.
 *
 * It owns nothing past a call: the bytes go to the caller's text builder, and the only
 * memory it takes is the member list of an object too big to sort on the stack, freed
 * before the call returns.
 *
 * Numbers: RFC 8785 reads every number as an IEEE 754 double and writes it as ECMA-262
 * Number::toString does. A real is written so (jansson holds no NaN or infinity). An
 * integer within +-2^53 is exactly a double, written as its digits. An integer beyond
 * is refused rather than rounded to the nearest double, as a JavaScript implementation
 * would: a signature over the rounded value would also verify for every other integer
 * that rounds the same way, and a Ruby worker sees those integers exactly. RFC 8785
 * leaves such numbers to travel as strings; JCS_EXACT_INTEGERS writes their digits
 * instead, for jobs whose schema allows big integers (workers/ENVELOPE.md).
 */
#ifndef JOBGATE_JCS_H
#define JOBGATE_JCS_H

#include <jansson.h>

#include "text.h"

/* The largest integer magnitude accepted: 2^53, beyond which doubles skip integers. */
#define JCS_MAX_INTEGER ((json_int_t)1 << 53)

/*
 * Arrays and objects nested deeper are refused, so that a value built in memory (which
 * jansson does not bound, and which may even contain itself) cannot exhaust the stack.
 */
#define JCS_MAX_DEPTH 128

/* Every failure is negative. */
enum jcs_status {
    JCS_OK = 0,
    JCS_OVERFLOW = -1,  /* out had no room left; it is marked overflowed */
    JCS_NUMBER = -2,    /* an integer beyond +-2^53, or a real that is not finite */
    JCS_STRING = -3,    /* a string or member name that is not valid UTF-8 */
    JCS_TOO_DEEP = -4,  /* arrays and objects nested deeper than JCS_MAX_DEPTH */
    JCS_NO_MEMORY = -5, /* no memory to sort an object of more than 32 members */
};

/* Flags for jcs_append. */
#define JCS_EXACT_INTEGERS 1u /* write integers beyond +-2^53 as their digits */

/*
 * Appends the canonical form of value (not NULL) to out. On failure out's length is put
 * back where it was, so nothing partial is left to sign; an overflowed builder stays so.
 */
enum jcs_status jcs_append(struct text *out, const json_t *value, unsigned flags);

#endif
