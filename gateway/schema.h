/*
 * schema: JSON Schema (draft 2020-12) for job arguments, compiled once at load and
 * validated many times, fail-closed.
 *
 * Owns the compiled form of one schema document: a private copy of the document, a
 * graph of compiled subschemas in which each $ref is a pointer to its target, and the
 * compiled regular expressions. A compiled schema is immutable, so one may be shared by
 * any number of threads; per-thread matching scratch is kept in thread-local storage.
 *
 * What a schema may say (anything else is a load error, never ignored):
 *   type, enum, const, properties, required, additionalProperties, patternProperties,
 *   propertyNames, items, prefixItems, contains, minContains, maxContains, minItems,
 *   maxItems, uniqueItems, minLength, maxLength, pattern, minimum, maximum,
 *   exclusiveMinimum, exclusiveMaximum, multipleOf, minProperties, maxProperties,
 *   dependentRequired, dependentSchemas, allOf, anyOf, oneOf, not, if, then, else,
 *   $ref, $defs, format, boolean schemas;
 *   the annotations title, description, default, examples, deprecated, readOnly,
 *   writeOnly and $comment; $schema (the 2020-12 URI) and $id, both at the root only;
 *   and two jobgate keywords:
 *     "secret": true            the string this subschema validates is secret and is
 *                               sealed before it reaches Redis; the same subschema must
 *                               say "type": "string" (or ["string", "null"]).
 *     "x-jobgate-big-integers": true
 *                               an integer this subschema validates may exceed the
 *                               max_integer limit below (up to what JSON parsing keeps,
 *                               ±(2^63 - 1)).
 *   A secret or big-integer mark counts only where the subschema passes: a mark inside
 *   a failing anyOf/oneOf branch, a failing "if", a "contains" that did not match or a
 *   "not" grants nothing.
 *
 * Unsupported, and refused at load with "unsupported feature: NAME" in the message:
 * "remote $ref" (any $ref that is not "#" plus a JSON Pointer, or the root $id plus
 * one), "$id-based resolution" ($id below the root), "$anchor", "$dynamicRef",
 * "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor", "unevaluatedItems",
 * "unevaluatedProperties" and "$vocabulary".
 *
 * Semantics jobgate chose where the specification leaves room:
 *   - format is an assertion, for date-time, date, email, uuid, uri, ipv4 and ipv6
 *     (see schema_format_check); any other format name is a load error.
 *   - pattern and patternProperties use ECMA-262 regular expressions as with the "u"
 *     flag (see schema_regex_compile), each compiled once at load. A match that runs
 *     out of its budget is a validation failure, never a pass.
 *   - multipleOf is exact in decimal: a real is taken as the shortest decimal that
 *     reads back as the same double, so 0.0075 is a multiple of 0.0001.
 *   - equality (enum, const, uniqueItems) is JSON equality: 1 equals 1.0, false is
 *     not 0, member order does not matter.
 *   - lengths count Unicode code points.
 */
#ifndef JOBGATE_SCHEMA_H
#define JOBGATE_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Bytes for an error's instance pointer, including the NUL. */
#define SCHEMA_MAX_POINTER 256

/* Bytes for the pointer handed to a schema_secret_fn, including the NUL. */
#define SCHEMA_MAX_SECRET_POINTER 4096

/* Containers may nest at most this deep whatever the limits say. */
#define SCHEMA_DEPTH_CEILING 128

/* Schema files larger than this are refused by schema_load_file. */
#define SCHEMA_MAX_FILE_BYTES ((size_t)1024 * 1024)

/*
 * Checks applied to every instance before the schema, whatever it says; a value over
 * a limit is a failure at its pointer, named by the keyword in brackets, and the
 * schema is then not evaluated at all (so its cost stays bounded too). The one
 * exception: when the schema says "x-jobgate-big-integers" somewhere, integers past
 * max_integer are judged after it, by whether a passing subschema allowed each.
 */
struct schema_limits {
    size_t max_depth;          /* [maxDepth] nesting of arrays and objects; 32 */
    size_t max_string_length;  /* [maxStringLength] code points, values and names; 65536 */
    size_t max_array_items;    /* [maxArrayItems] 10000 */
    size_t max_object_members; /* [maxObjectMembers] 1000 */
    json_int_t max_integer;    /* [maxInteger] magnitude of integers written without a
                                  fraction or exponent; 2^53 - 1, what a double holds
                                  exactly, unless "x-jobgate-big-integers" allows more
                                  (reals are doubles in every consumer already) */
    size_t max_evaluations;    /* [maxEvaluations] subschema evaluations; 1000000 */
};

extern const struct schema_limits schema_default_limits;

struct schema;

/* Receives one load problem as "FILE: /pointer/in/schema: reason" ("/" is the root). */
typedef void (*schema_report_fn)(void *data, const char *message);

/*
 * Compiles document, a draft 2020-12 schema; file names its source in messages.
 * limits may be NULL for schema_default_limits; max_depth above SCHEMA_DEPTH_CEILING
 * counts as the ceiling. Every problem is reported (report may be NULL), then NULL is
 * returned. The schema keeps its own copy of what it needs from document.
 */
struct schema *schema_compile(const json_t *document, const char *file,
                              const struct schema_limits *limits, schema_report_fn report,
                              void *report_data);

/*
 * Reads a schema file as strict JSON (duplicate member names refused, at most
 * SCHEMA_MAX_FILE_BYTES) and compiles it. Problems are reported as by schema_compile,
 * read and parse errors included.
 */
struct schema *schema_load_file(const char *path, const struct schema_limits *limits,
                                schema_report_fn report, void *report_data);

void schema_free(struct schema *schema);

/*
 * Limitation: member names of the instance appear in pointers (they are where, not
 * what); a producer that puts secrets in member names sees them echoed.
 */
struct schema_error {
    char pointer[SCHEMA_MAX_POINTER]; /* RFC 6901 pointer into the instance, "" the root */
    bool pointer_truncated;           /* the pointer was cut after a whole segment */
    const char *keyword;              /* the failing keyword or limit; static */
    const char *message;              /* fixed text, never the instance's data; static */
};

/*
 * Validates instance against schema, limits first. Records up to max_errors failures
 * in errors (which may be NULL when max_errors is 0) and returns how many there were:
 * 0 means valid. Failures inside anyOf, oneOf, not, if, contains and propertyNames are
 * reported once, as the failure of that keyword. Allocates nothing in the common case
 * (a thread's first pattern match sets up its matching scratch once); uniqueItems over
 * more than 32 items, propertyNames and integers past max_integer do.
 */
size_t schema_validate(const struct schema *schema, const json_t *instance,
                       struct schema_error *errors, size_t max_errors);

/* Whether any subschema of schema says "secret": true. */
bool schema_has_secrets(const struct schema *schema);

/* One secret string found by schema_each_secret, and where it sits. */
struct schema_secret {
    const char *pointer; /* RFC 6901, from the instance's root */
    json_t *value;       /* the string */
    json_t *parent;      /* the array or object holding it; NULL for the root itself */
    const char *key;     /* its member name, when parent is an object */
    size_t key_len;
    size_t index; /* its position, when parent is an array */
};

/*
 * Called for each secret string, in document order. It may change the string in place or
 * replace it in its parent (schema_secret_replace), nothing else. Returns 0 to go on;
 * anything else stops the enumeration and is returned.
 */
typedef int (*schema_secret_fn)(void *data, const struct schema_secret *secret);

/*
 * Puts replacement where secret was, taking its reference: it is released even when
 * this fails. Returns 0, or -1 (out of memory, or secret is the root itself).
 */
int schema_secret_replace(const struct schema_secret *secret, json_t *replacement);

/* What schema_each_secret returns when memory ran out. */
#define SCHEMA_SECRETS_NO_MEMORY (-2)

/*
 * Calls fn for every string in instance that a passing "secret": true subschema
 * validates, each once. Returns 0 when done, fn's value when it stopped early,
 * SCHEMA_SECRETS_NO_MEMORY when memory ran out, and -1 without calling fn when
 * instance does not validate or a secret's pointer does not fit
 * SCHEMA_MAX_SECRET_POINTER. A schema without secrets returns 0 at once without
 * looking at instance.
 */
int schema_each_secret(const struct schema *schema, json_t *instance, schema_secret_fn fn,
                       void *data);

/*
 * Formats (schema_format.c), exposed for the unit tests and for callers that check a
 * single value.
 */
enum schema_format {
    SCHEMA_FORMAT_NONE = 0,
    SCHEMA_FORMAT_DATE_TIME, /* RFC 3339 date-time: T and Z in either case, an offset
                                required, second 60 only at 23:59:60 UTC */
    SCHEMA_FORMAT_DATE,      /* RFC 3339 full-date, with the real calendar */
    SCHEMA_FORMAT_EMAIL,     /* RFC 5321 Mailbox: dot-atom or quoted local part, a host
                                name or an address literal; ASCII only */
    SCHEMA_FORMAT_UUID,      /* RFC 9562 text form, any version, either case */
    SCHEMA_FORMAT_URI,       /* RFC 3986 URI: a scheme is required; ASCII only */
    SCHEMA_FORMAT_IPV4,      /* dotted quad, no leading zeros */
    SCHEMA_FORMAT_IPV6,      /* RFC 4291 text form, may end in IPv4; no zone id */
};

/* The format called name (len bytes), or SCHEMA_FORMAT_NONE when jobgate has none. */
enum schema_format schema_format_named(const char *name, size_t len);

/* Whether text (len bytes of UTF-8) is a valid instance of format. */
bool schema_format_check(enum schema_format format, const char *text, size_t len);

/*
 * Regular expressions (schema_regex.c): ECMA-262 with the "u" flag, run by PCRE2.
 * The pattern is rewritten so that "." excludes exactly ECMA's line terminators, "\s"
 * is ECMA's white space, "\v" is the vertical tab, "[" inside a class is literal and
 * long general category names (\p{Letter}) work; \d, \w and \b stay ASCII as in ECMA.
 * Constructs ECMA does not have (possessive quantifiers, atomic groups, inline flags,
 * backtracking verbs, \A \z \Q \K and the like) and "\S" inside a class are refused.
 */
struct schema_regex;

enum schema_match {
    SCHEMA_MATCH_NO = 0,
    SCHEMA_MATCH_YES,
    SCHEMA_MATCH_ERROR, /* out of budget or memory: the caller must fail closed */
};

/*
 * Compiles pattern (len bytes of UTF-8). On failure returns NULL and writes the reason
 * (a NUL-terminated sentence, cut to fit) to reason.
 */
struct schema_regex *schema_regex_compile(const char *pattern, size_t len, char *reason,
                                          size_t reason_size);

/* Searches text (len bytes of valid UTF-8) for the pattern, unanchored. Thread-safe. */
enum schema_match schema_regex_match(const struct schema_regex *regex, const char *text,
                                     size_t len);

void schema_regex_free(struct schema_regex *regex);

#endif
