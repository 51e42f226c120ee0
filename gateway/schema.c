/*
 * schema: compiles JSON Schema documents and validates job arguments against them; see
 * schema.h for what a schema may say and what jobgate decided where the specification
 * leaves room.
 *
 * Owns each compiled schema: a private copy of its document (const and enum values
 * point into it), the compiled subschemas (nodes) in one arena, and the compiled
 * regular expressions. Compiling turns every subschema into a node, every $ref into a
 * pointer to the target's node, and refuses whatever it does not understand. Validation
 * walks nodes and instance together, reads the schema only, and fails closed: anything
 * it cannot decide (a regex out of budget, memory, the evaluation budget) is a failure
 * that no enclosing "not" or "anyOf" can turn into a pass.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"
#include "text.h"

#define DRAFT_2020_12 "https://json-schema.org/draft/2020-12/schema"

/* Real schemas compile to a few KiB; anything near this is a mistake. */
#define MAX_COMPILED_BYTES ((size_t)16 * 1024 * 1024)
#define ARENA_CHUNK_BYTES ((size_t)16 * 1024)
#define MAX_NODES 100000
#define MAX_REGEXES 10000

/* Subschemas nested in the document, and applied to one value one inside the other. */
#define MAX_SCHEMA_NESTING 64
#define MAX_IN_PLACE_CHAIN 128

/*
 * Nested evaluations during one validation. Instance depth and the in-place chain are
 * both bounded already; this keeps the C stack bounded even for their product.
 */
#define MAX_RECURSION 512

/* uniqueItems compares every pair up to this many items and sorts by hash above. */
#define UNIQUE_PAIRWISE_MAX 32

/* Values a single validation may mark secret or big. */
#define MAX_MARKS 65536

#define LOCATION_MAX_BYTES 512
#define MESSAGE_MAX_BYTES 1024
#define REASON_MAX_BYTES 320

/* 2^63 as a double: every double at or past it lies outside json_int_t. */
#define TWO_TO_THE_63 9223372036854775808.0

__extension__ typedef unsigned __int128 uint128;

const struct schema_limits schema_default_limits = {
    .max_depth = 32,
    .max_string_length = 65536,
    .max_array_items = 10000,
    .max_object_members = 1000,
    .max_integer = ((json_int_t)1 << 53) - 1,
    .max_evaluations = 1000000,
};

enum type_bit {
    TYPE_NULL = 1 << 0,
    TYPE_BOOLEAN = 1 << 1,
    TYPE_OBJECT = 1 << 2,
    TYPE_ARRAY = 1 << 3,
    TYPE_NUMBER = 1 << 4,
    TYPE_STRING = 1 << 5,
    TYPE_INTEGER = 1 << 6,
};

/* Which groups of keywords a node has, so validation skips the others with one test. */
enum keyword_group {
    GROUP_NUMBER = 1 << 0,
    GROUP_STRING = 1 << 1,
    GROUP_ARRAY = 1 << 2,
    GROUP_OBJECT = 1 << 3,
    GROUP_MEMBERS = 1 << 4,  /* properties, patternProperties, additional..., propertyNames */
    GROUP_IN_PLACE = 1 << 5, /* $ref, allOf, anyOf, oneOf, not, if, dependentSchemas */
};

struct name {
    const char *text;
    size_t len;
};

struct node;

struct node_list {
    struct node **items;
    size_t count;
};

struct named_node {
    struct name name;
    struct node *node;
    bool required; /* properties: the name is also in "required" */
};

struct pattern_node {
    const struct schema_regex *regex;
    struct node *node;
};

struct dependency {
    struct name name;
    struct name *required;
    size_t required_count;
};

/* |value| = mantissa * 10^exponent */
struct decimal {
    uint64_t mantissa;
    int exponent;
};

/* One compiled subschema. Absent bounds are 0 for minimums and SIZE_MAX for maximums. */
struct node {
    const char *location; /* its pointer in the document, for load messages */
    bool is_false;
    bool secret;
    bool big_integers;
    bool unique_items;
    bool has_min_contains;
    unsigned char types; /* enum type_bit; 0 when "type" is absent */
    unsigned char groups;
    unsigned char visit; /* cycle check state while compiling */
    enum schema_format format;

    struct node *ref;
    struct node_list all_of, any_of, one_of;
    struct node *not_schema, *if_schema, *then_schema, *else_schema;
    struct named_node *dependent_schemas;
    size_t dependent_schema_count;

    const json_t *const_value;
    const json_t *enum_values;

    const json_t *minimum, *maximum, *exclusive_minimum, *exclusive_maximum, *multiple_of;
    struct decimal multiple_of_decimal;

    size_t min_length, max_length;
    const struct schema_regex *pattern;

    struct node_list prefix_items;
    struct node *items, *contains;
    size_t min_items, max_items, min_contains, max_contains;

    struct named_node *properties; /* sorted by name */
    size_t property_count;
    struct pattern_node *pattern_properties;
    size_t pattern_property_count;
    struct node *additional_properties, *property_names;
    struct name *required;
    size_t required_count;
    struct dependency *dependent_required;
    size_t dependent_required_count;
    size_t min_properties, max_properties;
};

struct chunk {
    struct chunk *next;
    size_t used;
    size_t size;
    max_align_t data[];
};

struct schema {
    json_t *document;
    struct node *root;
    struct schema_limits limits;
    struct chunk *chunks;
    size_t compiled_bytes;
    struct schema_regex **regexes;
    size_t regex_count;
    size_t regex_capacity;
    bool has_secrets;
    bool has_big_integers;
};

/* ---- Arena ---------------------------------------------------------------------- */

/* Zeroed memory that lives as long as the schema; NULL past MAX_COMPILED_BYTES. */
static void *arena_alloc(struct schema *schema, size_t size)
{
    size_t align = alignof(max_align_t);
    size = (size + align - 1) / align * align;
    struct chunk *chunk = schema->chunks;
    if (chunk == NULL || chunk->size - chunk->used < size) {
        size_t chunk_size = size > ARENA_CHUNK_BYTES ? size : ARENA_CHUNK_BYTES;
        if (chunk_size > MAX_COMPILED_BYTES - schema->compiled_bytes)
            return NULL;
        chunk = calloc(1, sizeof *chunk + chunk_size);
        if (chunk == NULL)
            return NULL;
        chunk->size = chunk_size;
        chunk->next = schema->chunks;
        schema->chunks = chunk;
        schema->compiled_bytes += chunk_size;
    }
    void *memory = (unsigned char *)chunk->data + chunk->used;
    chunk->used += size;
    return memory;
}

/* ---- Numbers -------------------------------------------------------------------- */

static int compare_integer_real(json_int_t integer, double real)
{
    if (real >= TWO_TO_THE_63)
        return -1;
    if (real < -TWO_TO_THE_63)
        return 1;
    /* Truncation is exact here, and so is the fraction left over. */
    json_int_t whole = (json_int_t)real;
    if (integer != whole)
        return integer < whole ? -1 : 1;
    double fraction = real - (double)whole;
    return fraction > 0 ? -1 : fraction < 0 ? 1 : 0;
}

/* Exact comparison of two JSON numbers, integer or real. */
static int compare_numbers(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (json_is_real(a) && json_is_real(b)) {
        double x = json_real_value(a), y = json_real_value(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (json_is_integer(a))
        return compare_integer_real(json_integer_value(a), json_real_value(b));
    return -compare_integer_real(json_integer_value(b), json_real_value(a));
}

/* Whether a real has no fractional part (every double past 2^53 has none). */
static bool real_is_integral(double real)
{
    if (real >= TWO_TO_THE_63 || real <= -TWO_TO_THE_63)
        return true;
    return (double)(json_int_t)real == real;
}

static uint64_t magnitude(json_int_t value)
{
    return value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
}

static void decimal_normalize(struct decimal *decimal)
{
    while (decimal->mantissa != 0 && decimal->mantissa % 10 == 0) {
        decimal->mantissa /= 10;
        decimal->exponent++;
    }
    if (decimal->mantissa == 0)
        decimal->exponent = 0;
}

/*
 * The shortest decimal that reads back as real, which is the number the JSON text
 * most likely said: 0.0075 is 75e-4, not the binary fraction nearest to it.
 */
static struct decimal decimal_of_real(double real)
{
    struct decimal decimal = {0, 0};
    char text[40];
    if (real < 0)
        real = -real;
    if (real == 0)
        return decimal;
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*e", precision - 1, real);
        if (strtod(text, NULL) == real)
            break;
    }
    int digits = 0;
    const char *at = text;
    for (; *at != '\0' && *at != 'e'; at++) {
        /* Whatever the locale's decimal point is, it is the one non-digit here. */
        if (*at >= '0' && *at <= '9') {
            decimal.mantissa = decimal.mantissa * 10 + (uint64_t)(*at - '0');
            digits++;
        }
    }
    long exponent = *at == 'e' ? strtol(at + 1, NULL, 10) : 0;
    decimal.exponent = (int)exponent - (digits - 1);
    decimal_normalize(&decimal);
    return decimal;
}

static struct decimal decimal_of_number(const json_t *number)
{
    if (json_is_real(number))
        return decimal_of_real(json_real_value(number));
    struct decimal decimal = {magnitude(json_integer_value(number)), 0};
    decimal_normalize(&decimal);
    return decimal;
}

/* Whether value is an integer multiple of divisor (divisor > 0), exactly in decimal. */
static bool decimal_is_multiple(struct decimal value, struct decimal divisor)
{
    if (value.mantissa == 0)
        return true;
    if (value.exponent >= divisor.exponent) {
        /* value = m * 10^k * 10^e(divisor): a multiple when m * 10^k = 0 mod divisor. */
        uint64_t remainder = value.mantissa % divisor.mantissa;
        for (int k = value.exponent - divisor.exponent; k > 0 && remainder != 0; k--)
            remainder = (uint64_t)(((uint128)remainder * 10) % divisor.mantissa);
        return remainder == 0;
    }
    int shift = divisor.exponent - value.exponent;
    /* 10^20 exceeds every 64-bit mantissa, so the divisor would exceed the value. */
    if (shift >= 20)
        return false;
    uint128 scaled = divisor.mantissa;
    for (int i = 0; i < shift; i++)
        scaled *= 10;
    return value.mantissa % scaled == 0;
}

static bool is_multiple(const json_t *value, const struct node *node)
{
    if (json_is_integer(value) && json_is_integer(node->multiple_of))
        return json_integer_value(value) % json_integer_value(node->multiple_of) == 0;
    return decimal_is_multiple(decimal_of_number(value), node->multiple_of_decimal);
}

/* ---- JSON equality and hashing -------------------------------------------------- */

/* JSON equality: numbers by value (1 == 1.0), objects regardless of member order. */
static bool json_values_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return compare_numbers(a, b) == 0;
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (!json_values_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        }
        return true;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *key;
        size_t key_len;
        json_t *member;
        json_object_keylen_foreach((json_t *)a, key, key_len, member)
        {
            const json_t *other = json_object_getn(b, key, key_len);
            if (other == NULL || !json_values_equal(member, other))
                return false;
        }
        return true;
    }
    default:
        return true;
    }
}

static uint64_t mix(uint64_t hash)
{
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    return hash;
}

static uint64_t hash_bytes(const char *bytes, size_t len)
{
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (unsigned char)bytes[i]) * 0x100000001b3ULL;
    return hash;
}

/* A hash under which values equal by json_values_equal hash alike. */
static uint64_t value_hash(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_INTEGER:
        return mix((uint64_t)json_integer_value(value));
    case JSON_REAL: {
        double real = json_real_value(value);
        if (real_is_integral(real) && real < TWO_TO_THE_63 && real >= -TWO_TO_THE_63)
            return mix((uint64_t)(json_int_t)real);
        uint64_t bits;
        memcpy(&bits, &real, sizeof bits);
        return mix(bits);
    }
    case JSON_STRING:
        return mix(hash_bytes(json_string_value(value), json_string_length(value)) ^ 1);
    case JSON_ARRAY: {
        uint64_t hash = 2;
        for (size_t i = 0; i < json_array_size(value); i++)
            hash = mix(hash * 31 + value_hash(json_array_get(value, i)));
        return hash;
    }
    case JSON_OBJECT: {
        /* A sum, so member order does not matter. */
        uint64_t hash = 3;
        const char *key;
        size_t key_len;
        json_t *member;
        json_object_keylen_foreach((json_t *)value, key, key_len, member)
        {
            hash += mix(hash_bytes(key, key_len) * 31 + value_hash(member));
        }
        return mix(hash);
    }
    case JSON_TRUE:
        return 5;
    case JSON_FALSE:
        return 6;
    default:
        return 7;
    }
}

struct hashed_item {
    uint64_t hash;
    size_t index;
};

static int compare_hashed_items(const void *a, const void *b)
{
    const struct hashed_item *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash ? 1 : 0;
}

/* 1 when all items differ, 0 when two are equal, -1 when memory ran out. */
static int items_unique(const json_t *array)
{
    size_t count = json_array_size(array);
    if (count <= UNIQUE_PAIRWISE_MAX) {
        for (size_t i = 0; i < count; i++) {
            for (size_t j = i + 1; j < count; j++) {
                if (json_values_equal(json_array_get(array, i), json_array_get(array, j)))
                    return 0;
            }
        }
        return 1;
    }

    struct hashed_item *items = malloc(count * sizeof *items);
    if (items == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        items[i].hash = value_hash(json_array_get(array, i));
        items[i].index = i;
    }
    qsort(items, count, sizeof *items, compare_hashed_items);
    int unique = 1;
    for (size_t start = 0; start < count && unique; start++) {
        for (size_t other = start + 1; other < count && items[other].hash == items[start].hash;
             other++) {
            if (json_values_equal(json_array_get(array, items[start].index),
                                  json_array_get(array, items[other].index))) {
                unique = 0;
                break;
            }
        }
    }
    free(items);
    return unique;
}

/* ---- Compiling ------------------------------------------------------------------ */

struct pending_ref {
    struct node *node;
    const json_t *target; /* the $ref string */
    const char *location;
};

struct map_entry {
    const json_t *value;
    struct node *node;
};

struct compiler {
    struct schema *schema;
    const char *file;
    schema_report_fn report;
    void *report_data;
    size_t problems;
    bool out_of_memory;
    const json_t *root_id;
    size_t embedded_ids; /* $id below the root, which jobgate refuses */

    char location_buffer[LOCATION_MAX_BYTES];
    struct text location;
    bool location_truncated;
    size_t nesting;

    struct node *true_node;
    struct node *false_node;

    /* Which node each compiled subschema became, keyed by the json_t in the document. */
    struct map_entry *map;
    size_t map_capacity;
    struct node **nodes;
    size_t node_count;
    size_t node_capacity;

    struct pending_ref *refs;
    size_t ref_count;
    size_t ref_capacity;
};

struct location_mark {
    size_t len;
    bool truncated;
};

static void report_problem(struct compiler *compiler, const char *location, bool truncated,
                           const char *reason)
{
    char buffer[MESSAGE_MAX_BYTES];
    struct text message;
    compiler->problems++;
    if (compiler->report == NULL)
        return;
    text_init(&message, buffer, sizeof buffer);
    text_append_str(&message, compiler->file);
    text_append_str(&message, ": ");
    text_append_str(&message, location[0] != '\0' ? location : "/");
    if (truncated)
        text_append_str(&message, "/...");
    text_append_str(&message, ": ");
    text_append_str(&message, reason);
    if (text_finish(&message) == NULL) {
        /* The reason is last and least needed; the file and pointer fit. */
        buffer[sizeof buffer - 1] = '\0';
    }
    compiler->report(compiler->report_data, buffer);
}

/* Reports a problem at the current location. */
static void problem(struct compiler *compiler, const char *reason)
{
    compiler->location_buffer[compiler->location.len] = '\0';
    report_problem(compiler, compiler->location_buffer, compiler->location_truncated, reason);
}

static void out_of_memory(struct compiler *compiler)
{
    if (!compiler->out_of_memory)
        problem(compiler, "out of memory, or the schema compiles to more than 16 MiB");
    compiler->out_of_memory = true;
}

/* Appends "/" and segment with ~ and / escaped (RFC 6901). */
static void append_pointer_segment(struct text *text, const char *segment, size_t len)
{
    size_t start = 0;
    text_append(text, "/", 1);
    for (size_t i = 0; i < len; i++) {
        if (segment[i] != '~' && segment[i] != '/')
            continue;
        text_append(text, segment + start, i - start);
        text_append(text, segment[i] == '~' ? "~0" : "~1", 2);
        start = i + 1;
    }
    text_append(text, segment + start, len - start);
}

static void append_pointer_index(struct text *text, size_t index)
{
    text_append(text, "/", 1);
    text_append_uint(text, index);
}

static struct location_mark location_push(struct compiler *compiler, const char *segment,
                                          size_t len)
{
    struct location_mark mark = {compiler->location.len, compiler->location_truncated};
    if (compiler->location_truncated)
        return mark;
    append_pointer_segment(&compiler->location, segment, len);
    if (compiler->location.overflowed) {
        /* Cut at the last whole segment; the message marks the cut. */
        compiler->location.len = mark.len;
        compiler->location.overflowed = 0;
        compiler->location_truncated = true;
    }
    return mark;
}

static struct location_mark location_push_index(struct compiler *compiler, size_t index)
{
    char digits[24];
    struct text text;
    text_init(&text, digits, sizeof digits);
    text_append_uint(&text, index);
    return location_push(compiler, digits, text.len);
}

static void location_pop(struct compiler *compiler, struct location_mark mark)
{
    compiler->location.len = mark.len;
    compiler->location_truncated = mark.truncated;
}

static void location_set(struct compiler *compiler, const char *location)
{
    compiler->location.len = 0;
    compiler->location.overflowed = 0;
    compiler->location_truncated = false;
    text_append_str(&compiler->location, location);
}

/* A lasting copy of the current location, its cut (if any) marked with "/...". */
static const char *location_copy(struct compiler *compiler)
{
    size_t len = compiler->location.len;
    char *copy = arena_alloc(compiler->schema, len + sizeof "/...");
    if (copy == NULL) {
        out_of_memory(compiler);
        return NULL;
    }
    memcpy(copy, compiler->location_buffer, len);
    memcpy(copy + len, compiler->location_truncated ? "/..." : "",
           compiler->location_truncated ? 5 : 1);
    return copy;
}

static size_t map_slot(const struct compiler *compiler, const json_t *value)
{
    uint64_t hash = mix((uint64_t)(uintptr_t)value);
    size_t slot = (size_t)hash & (compiler->map_capacity - 1);
    while (compiler->map[slot].value != NULL && compiler->map[slot].value != value)
        slot = (slot + 1) & (compiler->map_capacity - 1);
    return slot;
}

static struct node *map_get(const struct compiler *compiler, const json_t *value)
{
    if (compiler->map_capacity == 0)
        return NULL;
    return compiler->map[map_slot(compiler, value)].node;
}

static bool map_grow(struct compiler *compiler)
{
    size_t capacity = compiler->map_capacity == 0 ? 64 : compiler->map_capacity * 2;
    struct map_entry *old = compiler->map;
    size_t old_capacity = compiler->map_capacity;
    compiler->map = calloc(capacity, sizeof *compiler->map);
    if (compiler->map == NULL) {
        compiler->map = old;
        return false;
    }
    compiler->map_capacity = capacity;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].value != NULL)
            compiler->map[map_slot(compiler, old[i].value)] = old[i];
    }
    free(old);
    return true;
}

/* A new node for the subschema value, remembered so refs to value find it. */
static struct node *new_node(struct compiler *compiler, const json_t *value)
{
    if (compiler->node_count >= MAX_NODES) {
        problem(compiler, "the schema has more than 100000 subschemas");
        return NULL;
    }
    if (compiler->node_count == compiler->node_capacity) {
        size_t capacity = compiler->node_capacity == 0 ? 64 : compiler->node_capacity * 2;
        struct node **nodes = realloc(compiler->nodes, capacity * sizeof *nodes);
        if (nodes == NULL) {
            out_of_memory(compiler);
            return NULL;
        }
        compiler->nodes = nodes;
        compiler->node_capacity = capacity;
    }
    /* At most half full, so probing stays short. */
    if ((compiler->node_count + 1) * 2 > compiler->map_capacity && !map_grow(compiler)) {
        out_of_memory(compiler);
        return NULL;
    }

    struct node *node = arena_alloc(compiler->schema, sizeof *node);
    if (node == NULL) {
        out_of_memory(compiler);
        return NULL;
    }
    node->max_length = node->max_items = node->max_properties = node->max_contains = SIZE_MAX;
    node->min_contains = 1;
    node->location = location_copy(compiler);
    if (node->location == NULL)
        return NULL;
    compiler->nodes[compiler->node_count++] = node;
    size_t slot = map_slot(compiler, value);
    compiler->map[slot].value = value;
    compiler->map[slot].node = node;
    return node;
}

static struct node *compile_subschema(struct compiler *compiler, const json_t *value);

enum keyword_id {
    KEYWORD_ANNOTATION_STRING,
    KEYWORD_ANNOTATION_BOOLEAN,
    KEYWORD_ANNOTATION_ANY,
    KEYWORD_EXAMPLES,
    KEYWORD_SCHEMA,
    KEYWORD_ID,
    KEYWORD_DEFS,
    KEYWORD_REF,
    KEYWORD_UNSUPPORTED,
    KEYWORD_ALL_OF,
    KEYWORD_ANY_OF,
    KEYWORD_ONE_OF,
    KEYWORD_NOT,
    KEYWORD_IF,
    KEYWORD_THEN,
    KEYWORD_ELSE,
    KEYWORD_DEPENDENT_SCHEMAS,
    KEYWORD_PREFIX_ITEMS,
    KEYWORD_ITEMS,
    KEYWORD_CONTAINS,
    KEYWORD_PROPERTIES,
    KEYWORD_PATTERN_PROPERTIES,
    KEYWORD_ADDITIONAL_PROPERTIES,
    KEYWORD_PROPERTY_NAMES,
    KEYWORD_TYPE,
    KEYWORD_ENUM,
    KEYWORD_CONST,
    KEYWORD_MULTIPLE_OF,
    KEYWORD_MINIMUM,
    KEYWORD_MAXIMUM,
    KEYWORD_EXCLUSIVE_MINIMUM,
    KEYWORD_EXCLUSIVE_MAXIMUM,
    KEYWORD_MIN_LENGTH,
    KEYWORD_MAX_LENGTH,
    KEYWORD_PATTERN,
    KEYWORD_FORMAT,
    KEYWORD_MIN_ITEMS,
    KEYWORD_MAX_ITEMS,
    KEYWORD_UNIQUE_ITEMS,
    KEYWORD_MIN_CONTAINS,
    KEYWORD_MAX_CONTAINS,
    KEYWORD_MIN_PROPERTIES,
    KEYWORD_MAX_PROPERTIES,
    KEYWORD_REQUIRED,
    KEYWORD_DEPENDENT_REQUIRED,
    KEYWORD_SECRET,
    KEYWORD_BIG_INTEGERS,
};

struct keyword {
    const char *name;
    enum keyword_id id;
};

static const struct keyword keywords[] = {
    {"title", KEYWORD_ANNOTATION_STRING},
    {"description", KEYWORD_ANNOTATION_STRING},
    {"$comment", KEYWORD_ANNOTATION_STRING},
    {"deprecated", KEYWORD_ANNOTATION_BOOLEAN},
    {"readOnly", KEYWORD_ANNOTATION_BOOLEAN},
    {"writeOnly", KEYWORD_ANNOTATION_BOOLEAN},
    {"default", KEYWORD_ANNOTATION_ANY},
    {"examples", KEYWORD_EXAMPLES},
    {"$schema", KEYWORD_SCHEMA},
    {"$id", KEYWORD_ID},
    {"$defs", KEYWORD_DEFS},
    {"$ref", KEYWORD_REF},
    {"$anchor", KEYWORD_UNSUPPORTED},
    {"$dynamicRef", KEYWORD_UNSUPPORTED},
    {"$dynamicAnchor", KEYWORD_UNSUPPORTED},
    {"$recursiveRef", KEYWORD_UNSUPPORTED},
    {"$recursiveAnchor", KEYWORD_UNSUPPORTED},
    {"$vocabulary", KEYWORD_UNSUPPORTED},
    {"unevaluatedItems", KEYWORD_UNSUPPORTED},
    {"unevaluatedProperties", KEYWORD_UNSUPPORTED},
    {"allOf", KEYWORD_ALL_OF},
    {"anyOf", KEYWORD_ANY_OF},
    {"oneOf", KEYWORD_ONE_OF},
    {"not", KEYWORD_NOT},
    {"if", KEYWORD_IF},
    {"then", KEYWORD_THEN},
    {"else", KEYWORD_ELSE},
    {"dependentSchemas", KEYWORD_DEPENDENT_SCHEMAS},
    {"prefixItems", KEYWORD_PREFIX_ITEMS},
    {"items", KEYWORD_ITEMS},
    {"contains", KEYWORD_CONTAINS},
    {"properties", KEYWORD_PROPERTIES},
    {"patternProperties", KEYWORD_PATTERN_PROPERTIES},
    {"additionalProperties", KEYWORD_ADDITIONAL_PROPERTIES},
    {"propertyNames", KEYWORD_PROPERTY_NAMES},
    {"type", KEYWORD_TYPE},
    {"enum", KEYWORD_ENUM},
    {"const", KEYWORD_CONST},
    {"multipleOf", KEYWORD_MULTIPLE_OF},
    {"minimum", KEYWORD_MINIMUM},
    {"maximum", KEYWORD_MAXIMUM},
    {"exclusiveMinimum", KEYWORD_EXCLUSIVE_MINIMUM},
    {"exclusiveMaximum", KEYWORD_EXCLUSIVE_MAXIMUM},
    {"minLength", KEYWORD_MIN_LENGTH},
    {"maxLength", KEYWORD_MAX_LENGTH},
    {"pattern", KEYWORD_PATTERN},
    {"format", KEYWORD_FORMAT},
    {"minItems", KEYWORD_MIN_ITEMS},
    {"maxItems", KEYWORD_MAX_ITEMS},
    {"uniqueItems", KEYWORD_UNIQUE_ITEMS},
    {"minContains", KEYWORD_MIN_CONTAINS},
    {"maxContains", KEYWORD_MAX_CONTAINS},
    {"minProperties", KEYWORD_MIN_PROPERTIES},
    {"maxProperties", KEYWORD_MAX_PROPERTIES},
    {"required", KEYWORD_REQUIRED},
    {"dependentRequired", KEYWORD_DEPENDENT_REQUIRED},
    {"secret", KEYWORD_SECRET},
    {"x-jobgate-big-integers", KEYWORD_BIG_INTEGERS},
};

static const struct keyword *find_keyword(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++) {
        if (strlen(keywords[i].name) == len && memcmp(keywords[i].name, name, len) == 0)
            return &keywords[i];
    }
    return NULL;
}

/* A non-negative integer, given as 2 or 2.0. */
static bool read_count(struct compiler *compiler, const json_t *value, size_t *count)
{
    if (json_is_integer(value) && json_integer_value(value) >= 0) {
        *count = (size_t)json_integer_value(value);
        return true;
    }
    if (json_is_real(value) && json_real_value(value) >= 0 &&
        json_real_value(value) < 9007199254740992.0 && real_is_integral(json_real_value(value))) {
        *count = (size_t)json_real_value(value);
        return true;
    }
    problem(compiler, "must be a non-negative integer");
    return false;
}

static void compile_list(struct compiler *compiler, const json_t *value, struct node_list *list)
{
    if (!json_is_array(value) || json_array_size(value) == 0) {
        problem(compiler, "must be a non-empty array of schemas");
        return;
    }
    list->items = arena_alloc(compiler->schema, json_array_size(value) * sizeof *list->items);
    if (list->items == NULL) {
        out_of_memory(compiler);
        return;
    }
    for (size_t i = 0; i < json_array_size(value); i++) {
        struct location_mark mark = location_push_index(compiler, i);
        list->items[i] = compile_subschema(compiler, json_array_get(value, i));
        location_pop(compiler, mark);
    }
    list->count = json_array_size(value);
}

/*
 * Room in the schema's arena for one entry_size entry per member of value, which must
 * be an object (expected says of what). Returns NULL after reporting a problem.
 */
static void *member_entries(struct compiler *compiler, const json_t *value, size_t entry_size,
                            const char *expected)
{
    if (!json_is_object(value)) {
        problem(compiler, expected);
        return NULL;
    }
    void *entries = arena_alloc(compiler->schema, (json_object_size(value) + 1) * entry_size);
    if (entries == NULL)
        out_of_memory(compiler);
    return entries;
}

/* An object whose members are schemas: properties, $defs, dependentSchemas. */
static struct named_node *compile_schema_map(struct compiler *compiler, const json_t *value,
                                             size_t *count)
{
    struct named_node *entries = member_entries(compiler, value, sizeof *entries,
                                                "must be an object whose members are schemas");
    if (entries == NULL)
        return NULL;
    const char *key;
    size_t key_len;
    json_t *member;
    size_t filled = 0;
    json_object_keylen_foreach((json_t *)value, key, key_len, member)
    {
        struct location_mark mark = location_push(compiler, key, key_len);
        entries[filled].name.text = key;
        entries[filled].name.len = key_len;
        entries[filled].node = compile_subschema(compiler, member);
        filled++;
        location_pop(compiler, mark);
    }
    *count = filled;
    return entries;
}

/* Length first: most comparisons of member names end there, without memcmp. */
static int compare_names(const struct name *a, const struct name *b)
{
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(a->text, b->text, a->len);
}

static int compare_named_nodes(const void *a, const void *b)
{
    return compare_names(&((const struct named_node *)a)->name,
                         &((const struct named_node *)b)->name);
}

/* An array of distinct strings: required and dependentRequired's members. */
static struct name *compile_names(struct compiler *compiler, const json_t *value, size_t *count)
{
    if (!json_is_array(value)) {
        problem(compiler, "must be an array of distinct strings");
        return NULL;
    }
    size_t size = json_array_size(value);
    struct name *names = arena_alloc(compiler->schema, (size + 1) * sizeof *names);
    if (names == NULL) {
        out_of_memory(compiler);
        return NULL;
    }
    for (size_t i = 0; i < size; i++) {
        const json_t *item = json_array_get(value, i);
        if (!json_is_string(item)) {
            problem(compiler, "must be an array of distinct strings");
            return NULL;
        }
        names[i].text = json_string_value(item);
        names[i].len = json_string_length(item);
        for (size_t j = 0; j < i; j++) {
            if (compare_names(&names[i], &names[j]) == 0) {
                problem(compiler, "must be an array of distinct strings");
                return NULL;
            }
        }
    }
    *count = size;
    return names;
}

static struct schema_regex *compile_regex(struct compiler *compiler, const char *pattern,
                                          size_t len)
{
    char reason[REASON_MAX_BYTES];
    struct schema *schema = compiler->schema;
    if (schema->regex_count == MAX_REGEXES) {
        problem(compiler, "the schema has more than 10000 patterns");
        return NULL;
    }
    if (schema->regex_count == schema->regex_capacity) {
        size_t capacity = schema->regex_capacity == 0 ? 8 : schema->regex_capacity * 2;
        struct schema_regex **regexes = realloc(schema->regexes, capacity * sizeof *regexes);
        if (regexes == NULL) {
            out_of_memory(compiler);
            return NULL;
        }
        schema->regexes = regexes;
        schema->regex_capacity = capacity;
    }
    struct schema_regex *regex = schema_regex_compile(pattern, len, reason, sizeof reason);
    if (regex == NULL) {
        problem(compiler, reason);
        return NULL;
    }
    schema->regexes[schema->regex_count++] = regex;
    return regex;
}

static void compile_pattern_properties(struct compiler *compiler, struct node *node,
                                       const json_t *value)
{
    node->pattern_properties = member_entries(compiler, value, sizeof *node->pattern_properties,
                                              "must be an object whose members are schemas");
    if (node->pattern_properties == NULL)
        return;
    const char *key;
    size_t key_len;
    json_t *member;
    json_object_keylen_foreach((json_t *)value, key, key_len, member)
    {
        struct location_mark mark = location_push(compiler, key, key_len);
        struct pattern_node *entry = &node->pattern_properties[node->pattern_property_count++];
        entry->regex = compile_regex(compiler, key, key_len);
        entry->node = compile_subschema(compiler, member);
        location_pop(compiler, mark);
    }
}

static void compile_dependent_required(struct compiler *compiler, struct node *node,
                                       const json_t *value)
{
    node->dependent_required =
        member_entries(compiler, value, sizeof *node->dependent_required,
                       "must be an object whose members are arrays of distinct strings");
    if (node->dependent_required == NULL)
        return;
    const char *key;
    size_t key_len;
    json_t *member;
    json_object_keylen_foreach((json_t *)value, key, key_len, member)
    {
        struct location_mark mark = location_push(compiler, key, key_len);
        struct dependency *dependency = &node->dependent_required[node->dependent_required_count];
        dependency->name.text = key;
        dependency->name.len = key_len;
        dependency->required = compile_names(compiler, member, &dependency->required_count);
        if (dependency->required != NULL)
            node->dependent_required_count++;
        location_pop(compiler, mark);
    }
}

static unsigned char type_named(const char *name)
{
    static const struct {
        const char *name;
        unsigned char bit;
    } types[] = {
        {"null", TYPE_NULL},       {"boolean", TYPE_BOOLEAN}, {"object", TYPE_OBJECT},
        {"array", TYPE_ARRAY},     {"number", TYPE_NUMBER},   {"string", TYPE_STRING},
        {"integer", TYPE_INTEGER},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(types[i].name, name) == 0)
            return types[i].bit;
    }
    return 0;
}

static void compile_type(struct compiler *compiler, struct node *node, const json_t *value)
{
    static const char reason[] = "must be a type name or a non-empty array of distinct type "
                                 "names (null, boolean, object, array, number, string, integer)";
    if (json_is_string(value)) {
        node->types = type_named(json_string_value(value));
        if (node->types == 0 || strlen(json_string_value(value)) != json_string_length(value))
            problem(compiler, reason);
        return;
    }
    if (!json_is_array(value) || json_array_size(value) == 0) {
        problem(compiler, reason);
        return;
    }
    for (size_t i = 0; i < json_array_size(value); i++) {
        const json_t *item = json_array_get(value, i);
        unsigned char bit = json_is_string(item) ? type_named(json_string_value(item)) : 0;
        if (bit == 0 || (node->types & bit) != 0 ||
            strlen(json_string_value(item)) != json_string_length(item)) {
            problem(compiler, reason);
            return;
        }
        node->types |= bit;
    }
}

static void compile_number(struct compiler *compiler, const json_t *value, const json_t **field)
{
    if (!json_is_number(value)) {
        problem(compiler, "must be a number");
        return;
    }
    *field = value;
}

static void compile_count(struct compiler *compiler, const json_t *value, size_t *field)
{
    size_t count;
    if (read_count(compiler, value, &count))
        *field = count;
}

static void compile_boolean(struct compiler *compiler, const json_t *value, bool *field)
{
    if (!json_is_boolean(value)) {
        problem(compiler, "must be true or false");
        return;
    }
    *field = json_is_true(value);
}

static void compile_unsupported(struct compiler *compiler, const char *name)
{
    char buffer[REASON_MAX_BYTES];
    struct text reason;
    text_init(&reason, buffer, sizeof buffer);
    text_append_str(&reason, "unsupported feature: ");
    text_append_str(&reason, name);
    problem(compiler, text_finish(&reason) != NULL ? buffer : "unsupported feature");
}

static void compile_schema_uri(struct compiler *compiler, const json_t *value, bool at_root)
{
    if (!at_root) {
        problem(compiler, "$schema is allowed at the root only");
        return;
    }
    const char *uri = json_is_string(value) ? json_string_value(value) : "";
    if (strcmp(uri, DRAFT_2020_12) != 0 && strcmp(uri, DRAFT_2020_12 "#") != 0)
        problem(compiler, "must be \"" DRAFT_2020_12 "\": jobgate reads draft 2020-12 only");
}

static void compile_id(struct compiler *compiler, const json_t *value, bool at_root)
{
    if (!at_root) {
        compiler->embedded_ids++;
        compile_unsupported(compiler, "$id-based resolution ($id below the root)");
        return;
    }
    if (!json_is_string(value)) {
        problem(compiler, "must be a string");
        return;
    }
    compiler->root_id = value;
}

static void compile_ref(struct compiler *compiler, struct node *node, const json_t *value)
{
    if (!json_is_string(value)) {
        problem(compiler, "must be a string");
        return;
    }
    if (compiler->ref_count == compiler->ref_capacity) {
        size_t capacity = compiler->ref_capacity == 0 ? 16 : compiler->ref_capacity * 2;
        struct pending_ref *refs = realloc(compiler->refs, capacity * sizeof *refs);
        if (refs == NULL) {
            out_of_memory(compiler);
            return;
        }
        compiler->refs = refs;
        compiler->ref_capacity = capacity;
    }
    const char *location = location_copy(compiler);
    if (location == NULL)
        return;
    compiler->refs[compiler->ref_count++] =
        (struct pending_ref){.node = node, .target = value, .location = location};
}

static void compile_keyword(struct compiler *compiler, struct node *node,
                            const struct keyword *keyword, const json_t *value, bool at_root)
{
    switch (keyword->id) {
    case KEYWORD_ANNOTATION_STRING:
        if (!json_is_string(value))
            problem(compiler, "must be a string");
        return;
    case KEYWORD_ANNOTATION_BOOLEAN:
        if (!json_is_boolean(value))
            problem(compiler, "must be true or false");
        return;
    case KEYWORD_ANNOTATION_ANY:
        return;
    case KEYWORD_EXAMPLES:
        if (!json_is_array(value))
            problem(compiler, "must be an array");
        return;
    case KEYWORD_SCHEMA:
        compile_schema_uri(compiler, value, at_root);
        return;
    case KEYWORD_ID:
        compile_id(compiler, value, at_root);
        return;
    case KEYWORD_DEFS: {
        size_t count;
        compile_schema_map(compiler, value, &count);
        return;
    }
    case KEYWORD_REF:
        compile_ref(compiler, node, value);
        return;
    case KEYWORD_UNSUPPORTED:
        compile_unsupported(compiler, keyword->name);
        return;
    case KEYWORD_ALL_OF:
        compile_list(compiler, value, &node->all_of);
        return;
    case KEYWORD_ANY_OF:
        compile_list(compiler, value, &node->any_of);
        return;
    case KEYWORD_ONE_OF:
        compile_list(compiler, value, &node->one_of);
        return;
    case KEYWORD_NOT:
        node->not_schema = compile_subschema(compiler, value);
        return;
    case KEYWORD_IF:
        node->if_schema = compile_subschema(compiler, value);
        return;
    case KEYWORD_THEN:
        node->then_schema = compile_subschema(compiler, value);
        return;
    case KEYWORD_ELSE:
        node->else_schema = compile_subschema(compiler, value);
        return;
    case KEYWORD_DEPENDENT_SCHEMAS:
        node->dependent_schemas =
            compile_schema_map(compiler, value, &node->dependent_schema_count);
        return;
    case KEYWORD_PREFIX_ITEMS:
        compile_list(compiler, value, &node->prefix_items);
        return;
    case KEYWORD_ITEMS:
        node->items = compile_subschema(compiler, value);
        return;
    case KEYWORD_CONTAINS:
        node->contains = compile_subschema(compiler, value);
        return;
    case KEYWORD_PROPERTIES:
        node->properties = compile_schema_map(compiler, value, &node->property_count);
        if (node->properties != NULL)
            qsort(node->properties, node->property_count, sizeof *node->properties,
                  compare_named_nodes);
        return;
    case KEYWORD_PATTERN_PROPERTIES:
        compile_pattern_properties(compiler, node, value);
        return;
    case KEYWORD_ADDITIONAL_PROPERTIES:
        node->additional_properties = compile_subschema(compiler, value);
        return;
    case KEYWORD_PROPERTY_NAMES:
        node->property_names = compile_subschema(compiler, value);
        return;
    case KEYWORD_TYPE:
        compile_type(compiler, node, value);
        return;
    case KEYWORD_ENUM:
        if (!json_is_array(value))
            problem(compiler, "must be an array");
        else
            node->enum_values = value;
        return;
    case KEYWORD_CONST:
        node->const_value = value;
        return;
    case KEYWORD_MULTIPLE_OF:
        if (!json_is_number(value) || json_number_value(value) <= 0) {
            problem(compiler, "must be a number greater than 0");
            return;
        }
        node->multiple_of = value;
        node->multiple_of_decimal = decimal_of_number(value);
        return;
    case KEYWORD_MINIMUM:
        compile_number(compiler, value, &node->minimum);
        return;
    case KEYWORD_MAXIMUM:
        compile_number(compiler, value, &node->maximum);
        return;
    case KEYWORD_EXCLUSIVE_MINIMUM:
        compile_number(compiler, value, &node->exclusive_minimum);
        return;
    case KEYWORD_EXCLUSIVE_MAXIMUM:
        compile_number(compiler, value, &node->exclusive_maximum);
        return;
    case KEYWORD_MIN_LENGTH:
        compile_count(compiler, value, &node->min_length);
        return;
    case KEYWORD_MAX_LENGTH:
        compile_count(compiler, value, &node->max_length);
        return;
    case KEYWORD_PATTERN:
        if (!json_is_string(value))
            problem(compiler, "must be a string");
        else
            node->pattern =
                compile_regex(compiler, json_string_value(value), json_string_length(value));
        return;
    case KEYWORD_FORMAT:
        node->format = json_is_string(value) ? schema_format_named(json_string_value(value),
                                                                   json_string_length(value))
                                             : SCHEMA_FORMAT_NONE;
        if (node->format == SCHEMA_FORMAT_NONE)
            problem(compiler, "unknown format: jobgate asserts date-time, date, email, uuid, "
                              "uri, ipv4 and ipv6");
        return;
    case KEYWORD_MIN_ITEMS:
        compile_count(compiler, value, &node->min_items);
        return;
    case KEYWORD_MAX_ITEMS:
        compile_count(compiler, value, &node->max_items);
        return;
    case KEYWORD_UNIQUE_ITEMS:
        compile_boolean(compiler, value, &node->unique_items);
        return;
    case KEYWORD_MIN_CONTAINS:
        compile_count(compiler, value, &node->min_contains);
        node->has_min_contains = true;
        return;
    case KEYWORD_MAX_CONTAINS:
        compile_count(compiler, value, &node->max_contains);
        return;
    case KEYWORD_MIN_PROPERTIES:
        compile_count(compiler, value, &node->min_properties);
        return;
    case KEYWORD_MAX_PROPERTIES:
        compile_count(compiler, value, &node->max_properties);
        return;
    case KEYWORD_REQUIRED:
        node->required = compile_names(compiler, value, &node->required_count);
        return;
    case KEYWORD_DEPENDENT_REQUIRED:
        compile_dependent_required(compiler, node, value);
        return;
    case KEYWORD_SECRET:
        compile_boolean(compiler, value, &node->secret);
        return;
    case KEYWORD_BIG_INTEGERS:
        compile_boolean(compiler, value, &node->big_integers);
        return;
    }
}

static struct node *compile_subschema(struct compiler *compiler, const json_t *value)
{
    if (json_is_true(value))
        return compiler->true_node;
    if (json_is_false(value))
        return compiler->false_node;
    if (!json_is_object(value)) {
        problem(compiler, "a schema must be an object or a boolean");
        return compiler->false_node;
    }
    struct node *node = map_get(compiler, value);
    if (node != NULL)
        return node;
    if (compiler->nesting >= MAX_SCHEMA_NESTING) {
        problem(compiler, "subschemas nest more than 64 deep");
        return compiler->false_node;
    }
    node = new_node(compiler, value);
    if (node == NULL)
        return compiler->false_node;

    bool at_root = value == compiler->schema->document;
    const char *key;
    size_t key_len;
    json_t *member;
    compiler->nesting++;
    json_object_keylen_foreach((json_t *)value, key, key_len, member)
    {
        struct location_mark mark = location_push(compiler, key, key_len);
        const struct keyword *keyword = find_keyword(key, key_len);
        if (keyword == NULL)
            problem(compiler, "unknown keyword");
        else
            compile_keyword(compiler, node, keyword, member, at_root);
        location_pop(compiler, mark);
    }
    compiler->nesting--;

    unsigned char string_types = TYPE_STRING | TYPE_NULL;
    if (node->secret && ((node->types & TYPE_STRING) == 0 || (node->types & ~string_types) != 0))
        problem(compiler, "\"secret\": true needs \"type\": \"string\" (or [\"string\", "
                          "\"null\"]) in the same schema");
    return node;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Percent-decodes fragment into decoded (at least len bytes); returns the decoded
 * length, or SIZE_MAX when a %-escape is malformed.
 */
static size_t percent_decode(const char *fragment, size_t len, char *decoded)
{
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        if (fragment[i] != '%') {
            decoded[out++] = fragment[i];
            continue;
        }
        int high = i + 2 < len ? hex_value(fragment[i + 1]) : -1;
        int low = high >= 0 ? hex_value(fragment[i + 2]) : -1;
        if (low < 0)
            return SIZE_MAX;
        decoded[out++] = (char)(high * 16 + low);
        i += 2;
    }
    return out;
}

/* Follows one unescaped pointer token from value; NULL when there is no such member. */
static const json_t *follow_token(const json_t *value, const char *token, size_t len)
{
    if (json_is_object(value))
        return json_object_getn(value, token, len);
    if (!json_is_array(value) || len == 0 || (len > 1 && token[0] == '0'))
        return NULL;
    size_t index = 0;
    for (size_t i = 0; i < len; i++) {
        if (token[i] < '0' || token[i] > '9' || index > SIZE_MAX / 10 - 1)
            return NULL;
        index = index * 10 + (size_t)(token[i] - '0');
    }
    return json_array_get(value, index);
}

/* Resolves a decoded JSON Pointer against document; reports and returns NULL on failure. */
static const json_t *resolve_pointer(struct compiler *compiler, char *pointer, size_t len)
{
    const json_t *value = compiler->schema->document;
    size_t at = 0;
    while (at < len) {
        /* pointer[at] is '/': the token runs to the next '/'. */
        size_t start = ++at, token_len = 0;
        while (at < len && pointer[at] != '/') {
            char c = pointer[at++];
            if (c == '~') {
                char next = at < len ? pointer[at++] : '\0';
                if (next != '0' && next != '1') {
                    problem(compiler, "$ref is not a valid JSON Pointer (~ must be ~0 or ~1)");
                    return NULL;
                }
                c = next == '0' ? '~' : '/';
            }
            pointer[start + token_len++] = c;
        }
        value = follow_token(value, pointer + start, token_len);
        if (value == NULL) {
            problem(compiler, "$ref points to nothing in this document");
            return NULL;
        }
    }
    return value;
}

/* Whether base (len bytes) names the document itself through its root $id. */
static bool is_root_id(const struct compiler *compiler, const char *base, size_t len)
{
    if (compiler->root_id == NULL)
        return false;
    const char *id = json_string_value(compiler->root_id);
    size_t id_len = json_string_length(compiler->root_id);
    if (id_len > 0 && id[id_len - 1] == '#')
        id_len--;
    return id_len == len && memcmp(id, base, len) == 0;
}

/* The subschema a $ref names, or NULL (reported) when jobgate cannot resolve it. */
static const json_t *resolve_reference(struct compiler *compiler, const json_t *reference)
{
    const char *text = json_string_value(reference);
    size_t len = json_string_length(reference);
    const char *hash = memchr(text, '#', len);
    size_t base_len = hash != NULL ? (size_t)(hash - text) : len;
    if (base_len > 0 && !is_root_id(compiler, text, base_len)) {
        compile_unsupported(compiler, "remote $ref (only \"#\" and a JSON Pointer, or the root "
                                      "$id, are resolved)");
        return NULL;
    }
    const char *fragment = hash != NULL ? hash + 1 : text + len;
    size_t fragment_len = (size_t)(text + len - fragment);
    if (fragment_len == 0)
        return compiler->schema->document;
    if (fragment[0] != '/') {
        compile_unsupported(compiler, "$anchor (a $ref to a plain-name fragment)");
        return NULL;
    }

    char *pointer = malloc(fragment_len);
    if (pointer == NULL) {
        out_of_memory(compiler);
        return NULL;
    }
    const json_t *target = NULL;
    size_t pointer_len = percent_decode(fragment, fragment_len, pointer);
    if (pointer_len == SIZE_MAX)
        problem(compiler, "$ref has a malformed %-escape");
    else
        target = resolve_pointer(compiler, pointer, pointer_len);
    free(pointer);
    return target;
}

/*
 * Points every $ref at its target's node. A target that is not itself a subschema
 * location (say "#/$defs/a/properties") is compiled as a schema where it stands; that
 * may add refs, which this loop then resolves too.
 */
static void resolve_refs(struct compiler *compiler)
{
    /* Below an embedded $id, "#/..." means that resource, not this document: resolving
     * against the root would quietly pick the wrong subschema. The $id is reported. */
    if (compiler->embedded_ids > 0)
        return;
    for (size_t i = 0; i < compiler->ref_count; i++) {
        struct pending_ref ref = compiler->refs[i];
        location_set(compiler, ref.location);
        const json_t *target = resolve_reference(compiler, ref.target);
        if (target == NULL)
            continue;
        struct node *node = json_is_object(target) ? map_get(compiler, target) : NULL;
        if (node == NULL) {
            /* Named by the $ref, which is where the reader will look. */
            compiler->nesting = 0;
            node = compile_subschema(compiler, target);
        }
        ref.node->ref = node;
    }
}

enum visit_state { UNVISITED = 0, VISITING, VISITED };

/*
 * Finds a chain of subschemas applied to the same value ($ref, allOf, anyOf, oneOf,
 * not, if, then, else, dependentSchemas) that comes back to where it started, which
 * would never end, or that is longer than MAX_IN_PLACE_CHAIN. Reports the first one.
 */
static bool in_place_cycle(struct compiler *compiler, struct node *node, size_t chain)
{
    if (node->visit == VISITED)
        return false;
    if (node->visit == VISITING || chain > MAX_IN_PLACE_CHAIN) {
        report_problem(compiler, node->location, false,
                       node->visit == VISITING
                           ? "this subschema applies itself to the same value (through $ref) "
                             "without end"
                           : "more than 128 subschemas apply to the same value one inside "
                             "another");
        return true;
    }
    node->visit = VISITING;
    struct node *single[] = {node->ref, node->not_schema, node->if_schema, node->then_schema,
                             node->else_schema};
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++) {
        if (single[i] != NULL && in_place_cycle(compiler, single[i], chain + 1))
            return true;
    }
    const struct node_list *lists[] = {&node->all_of, &node->any_of, &node->one_of};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        for (size_t j = 0; j < lists[i]->count; j++) {
            if (in_place_cycle(compiler, lists[i]->items[j], chain + 1))
                return true;
        }
    }
    for (size_t i = 0; i < node->dependent_schema_count; i++) {
        if (in_place_cycle(compiler, node->dependent_schemas[i].node, chain + 1))
            return true;
    }
    node->visit = VISITED;
    return false;
}

static void mark_required_properties(struct node *node)
{
    for (size_t i = 0; i < node->required_count; i++) {
        for (size_t j = 0; j < node->property_count; j++) {
            if (compare_names(&node->required[i], &node->properties[j].name) == 0) {
                node->properties[j].required = true;
            }
        }
    }
}

static void finish_node(struct schema *schema, struct node *node)
{
    unsigned char groups = 0;
    mark_required_properties(node);
    if (node->minimum || node->maximum || node->exclusive_minimum || node->exclusive_maximum ||
        node->multiple_of)
        groups |= GROUP_NUMBER;
    if (node->min_length > 0 || node->max_length != SIZE_MAX || node->pattern ||
        node->format != SCHEMA_FORMAT_NONE)
        groups |= GROUP_STRING;
    if (node->min_items > 0 || node->max_items != SIZE_MAX || node->unique_items ||
        node->prefix_items.count > 0 || node->items || node->contains)
        groups |= GROUP_ARRAY;
    if (node->property_count > 0 || node->pattern_property_count > 0 ||
        node->additional_properties || node->property_names)
        groups |= GROUP_MEMBERS | GROUP_OBJECT;
    if (node->min_properties > 0 || node->max_properties != SIZE_MAX || node->required_count > 0 ||
        node->dependent_required_count > 0)
        groups |= GROUP_OBJECT;
    if (node->ref || node->all_of.count || node->any_of.count || node->one_of.count ||
        node->not_schema || node->if_schema || node->dependent_schema_count)
        groups |= GROUP_IN_PLACE;
    node->groups = groups;
    schema->has_secrets = schema->has_secrets || node->secret;
    schema->has_big_integers = schema->has_big_integers || node->big_integers;
}

static void free_compiler(struct compiler *compiler)
{
    free(compiler->map);
    free(compiler->nodes);
    free(compiler->refs);
}

struct schema *schema_compile(const json_t *document, const char *file,
                              const struct schema_limits *limits, schema_report_fn report,
                              void *report_data)
{
    struct compiler compiler = {
        .file = file != NULL ? file : "schema",
        .report = report,
        .report_data = report_data,
    };
    text_init(&compiler.location, compiler.location_buffer, sizeof compiler.location_buffer);

    struct schema *schema = calloc(1, sizeof *schema);
    if (schema == NULL) {
        report_problem(&compiler, "", false, "out of memory");
        return NULL;
    }
    compiler.schema = schema;
    schema->limits = limits != NULL ? *limits : schema_default_limits;
    if (schema->limits.max_depth > SCHEMA_DEPTH_CEILING)
        schema->limits.max_depth = SCHEMA_DEPTH_CEILING;
    if (schema->limits.max_integer < 0)
        schema->limits.max_integer = 0;

    /* A private copy, so the caller may change or free document afterwards. */
    schema->document = document != NULL ? json_deep_copy(document) : NULL;
    compiler.true_node = arena_alloc(schema, sizeof *compiler.true_node);
    compiler.false_node = arena_alloc(schema, sizeof *compiler.false_node);
    if (schema->document == NULL || compiler.true_node == NULL || compiler.false_node == NULL) {
        report_problem(&compiler, "", false, document ? "out of memory" : "no document");
        schema_free(schema);
        return NULL;
    }
    compiler.true_node->location = compiler.false_node->location = "";
    compiler.true_node->max_length = compiler.true_node->max_items = SIZE_MAX;
    compiler.true_node->max_properties = SIZE_MAX;
    compiler.false_node->is_false = true;

    schema->root = compile_subschema(&compiler, schema->document);
    resolve_refs(&compiler);
    for (size_t i = 0; i < compiler.node_count && compiler.problems == 0; i++)
        in_place_cycle(&compiler, compiler.nodes[i], 0);
    for (size_t i = 0; i < compiler.node_count; i++)
        finish_node(schema, compiler.nodes[i]);
    free_compiler(&compiler);

    if (compiler.problems > 0) {
        schema_free(schema);
        return NULL;
    }
    return schema;
}

static void report_file_problem(schema_report_fn report, void *report_data, const char *path,
                                const char *first, const char *second)
{
    char buffer[MESSAGE_MAX_BYTES];
    struct text message;
    if (report == NULL)
        return;
    text_init(&message, buffer, sizeof buffer);
    text_append_str(&message, path);
    text_append_str(&message, ": ");
    text_append_str(&message, first);
    text_append_str(&message, second);
    if (text_finish(&message) == NULL)
        buffer[sizeof buffer - 1] = '\0';
    report(report_data, buffer);
}

struct schema *schema_load_file(const char *path, const struct schema_limits *limits,
                                schema_report_fn report, void *report_data)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        report_file_problem(report, report_data, path, "cannot open: ", strerror(errno));
        return NULL;
    }
    char *buffer = malloc(SCHEMA_MAX_FILE_BYTES + 1);
    if (buffer == NULL) {
        fclose(file);
        report_file_problem(report, report_data, path, "out of memory", "");
        return NULL;
    }
    size_t len = fread(buffer, 1, SCHEMA_MAX_FILE_BYTES + 1, file);
    bool read_failed = ferror(file) != 0;
    fclose(file);
    if (read_failed || len > SCHEMA_MAX_FILE_BYTES) {
        report_file_problem(report, report_data, path,
                            read_failed ? "cannot read the file" : "larger than 1 MiB", "");
        free(buffer);
        return NULL;
    }

    json_error_t error;
    /* A schema may be a boolean: true accepts everything, false nothing. */
    json_t *document = json_loadb(buffer, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    free(buffer);
    if (document == NULL) {
        char where[64];
        struct text position;
        text_init(&position, where, sizeof where);
        text_append_str(&position, "line ");
        text_append_int(&position, error.line);
        text_append_str(&position, " column ");
        text_append_int(&position, error.column);
        text_append_str(&position, ": ");
        report_file_problem(report, report_data, path, text_finish(&position) != NULL ? where : "",
                            error.text);
        return NULL;
    }
    struct schema *schema = schema_compile(document, path, limits, report, report_data);
    json_decref(document);
    return schema;
}

void schema_free(struct schema *schema)
{
    if (schema == NULL)
        return;
    for (size_t i = 0; i < schema->regex_count; i++)
        schema_regex_free(schema->regexes[i]);
    free(schema->regexes);
    while (schema->chunks != NULL) {
        struct chunk *next = schema->chunks->next;
        free(schema->chunks);
        schema->chunks = next;
    }
    json_decref(schema->document);
    free(schema);
}

bool schema_has_secrets(const struct schema *schema)
{
    return schema->has_secrets;
}

/* ---- Validating ----------------------------------------------------------------- */

struct segment {
    const char *key; /* NULL for an array index */
    size_t len_or_index;
};

enum mark_kind { MARK_SECRET, MARK_BIG_INTEGER };

/* A value that a passing subschema marked secret, or allowed to be a big integer. */
struct mark {
    const json_t *value;
    enum mark_kind kind;
};

struct validation {
    const struct schema *schema;
    const struct schema_limits *limits;
    struct schema_error *errors;
    size_t max_errors;
    size_t failures;
    /* Above 0 inside a subschema whose failures are its keyword's business (anyOf...):
     * nothing is recorded and evaluation stops at the first failure. */
    unsigned silent;
    /* Something could not be decided; the instance fails whatever encloses it. */
    bool aborted;
    bool out_of_memory; /* what aborted it was a failed allocation */

    bool collect_secrets;
    bool collect_big_integers;
    bool every_branch; /* collecting: evaluate every anyOf branch and contains item */
    struct mark *marks;
    size_t mark_count;
    size_t mark_capacity;
    size_t big_integers; /* integers past max_integer, found by the limits pass */

    size_t evaluations;
    size_t recursion;
    struct segment *segments; /* the instance pointer, one segment per level */
    size_t depth;
};

/*
 * Whether value is a whole number past max_integer. A real counts too: every double
 * beyond 2^53 is a whole number, and not necessarily the one the producer wrote
 * (9007199254740993.0 reads as ...992), so "1e20" passes only where big integers may.
 */
static bool is_big_integer(const struct validation *validation, const json_t *value)
{
    json_int_t limit = validation->limits->max_integer;

    if (json_is_integer(value)) {
        json_int_t integer = json_integer_value(value);
        return integer > limit || integer < -limit;
    }
    if (json_is_real(value)) {
        double real = json_real_value(value);
        return real > (double)limit || real < -(double)limit;
    }
    return false;
}

static void render_pointer(const struct validation *validation, struct schema_error *error)
{
    struct text pointer;
    size_t whole = 0;
    text_init(&pointer, error->pointer, sizeof error->pointer);
    error->pointer_truncated = false;
    for (size_t i = 0; i < validation->depth; i++) {
        const struct segment *segment = &validation->segments[i];
        if (segment->key != NULL)
            append_pointer_segment(&pointer, segment->key, segment->len_or_index);
        else
            append_pointer_index(&pointer, segment->len_or_index);
        if (pointer.overflowed) {
            error->pointer_truncated = true;
            break;
        }
        whole = pointer.len;
    }
    error->pointer[whole] = '\0';
}

static void record(struct validation *validation, const char *keyword, const char *message)
{
    if (validation->failures < validation->max_errors) {
        struct schema_error *error = &validation->errors[validation->failures];
        render_pointer(validation, error);
        error->keyword = keyword;
        error->message = message;
    }
    validation->failures++;
}

static void report(struct validation *validation, const char *keyword, const char *message)
{
    if (validation->silent == 0)
        record(validation, keyword, message);
}

/* Something could not be decided: recorded even when silent, and the instance fails. */
static void abort_validation(struct validation *validation, const char *keyword,
                             const char *message)
{
    if (validation->aborted)
        return;
    validation->aborted = true;
    record(validation, keyword, message);
}

/* Whether to go on after a check: a failure ends a silent or aborted evaluation. */
static bool go_on(const struct validation *validation, bool *valid, bool passed)
{
    if (!passed)
        *valid = false;
    return !validation->aborted && (passed || validation->silent == 0);
}

static void push_key(struct validation *validation, const char *key, size_t len)
{
    validation->segments[validation->depth].key = key;
    validation->segments[validation->depth].len_or_index = len;
    validation->depth++;
}

static void push_index(struct validation *validation, size_t index)
{
    validation->segments[validation->depth].key = NULL;
    validation->segments[validation->depth].len_or_index = index;
    validation->depth++;
}

static void pop(struct validation *validation)
{
    validation->depth--;
}

static size_t code_points(const char *text, size_t len)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += ((unsigned char)text[i] & 0xC0) != 0x80;
    return count;
}

static bool length_within(const char *text, size_t len, size_t limit)
{
    return len <= limit || code_points(text, len) <= limit;
}

/*
 * The limits pass: sizes and depth before any schema work, so that the schema's cost
 * is bounded by the limits. Integers past max_integer are only counted here; whether
 * they are allowed depends on the schema.
 */
static void check_limits(struct validation *validation, const json_t *value, size_t depth)
{
    const struct schema_limits *limits = validation->limits;
    switch (json_typeof(value)) {
    case JSON_STRING:
        if (!length_within(json_string_value(value), json_string_length(value),
                           limits->max_string_length))
            report(validation, "maxStringLength", "is a string longer than jobgate accepts");
        return;
    case JSON_INTEGER:
    case JSON_REAL:
        validation->big_integers += is_big_integer(validation, value);
        return;
    case JSON_ARRAY:
        if (depth >= limits->max_depth) {
            report(validation, "maxDepth", "nests arrays and objects deeper than jobgate accepts");
            return;
        }
        if (json_array_size(value) > limits->max_array_items) {
            report(validation, "maxArrayItems", "is an array longer than jobgate accepts");
            return;
        }
        for (size_t i = 0; i < json_array_size(value); i++) {
            push_index(validation, i);
            check_limits(validation, json_array_get(value, i), depth + 1);
            pop(validation);
        }
        return;
    case JSON_OBJECT: {
        if (depth >= limits->max_depth) {
            report(validation, "maxDepth", "nests arrays and objects deeper than jobgate accepts");
            return;
        }
        if (json_object_size(value) > limits->max_object_members) {
            report(validation, "maxObjectMembers", "is an object larger than jobgate accepts");
            return;
        }
        const char *key;
        size_t key_len;
        json_t *member;
        json_object_keylen_foreach((json_t *)value, key, key_len, member)
        {
            push_key(validation, key, key_len);
            if (!length_within(key, key_len, limits->max_string_length))
                report(validation, "maxStringLength", "has a name longer than jobgate accepts");
            check_limits(validation, member, depth + 1);
            pop(validation);
        }
        return;
    }
    default:
        return;
    }
}

static int compare_marks(const void *a, const void *b)
{
    const struct mark *x = a, *y = b;
    uintptr_t p = (uintptr_t)x->value, q = (uintptr_t)y->value;
    if (p != q)
        return p < q ? -1 : 1;
    return (int)x->kind - (int)y->kind;
}

/* Whether value carries a mark of kind; the marks must be sorted. */
static bool is_marked(const struct validation *validation, const json_t *value, enum mark_kind kind)
{
    struct mark key = {value, kind};
    return validation->mark_count > 0 && bsearch(&key, validation->marks, validation->mark_count,
                                                 sizeof key, compare_marks) != NULL;
}

static void add_mark(struct validation *validation, const json_t *value, enum mark_kind kind)
{
    if (validation->mark_count == validation->mark_capacity) {
        size_t capacity = validation->mark_capacity == 0 ? 16 : validation->mark_capacity * 2;
        struct mark *marks =
            capacity <= MAX_MARKS ? realloc(validation->marks, capacity * sizeof *marks) : NULL;
        if (marks == NULL) {
            validation->out_of_memory = capacity <= MAX_MARKS;
            abort_validation(validation, kind == MARK_SECRET ? "secret" : "maxInteger",
                             "has more marked values than jobgate can track");
            return;
        }
        validation->marks = marks;
        validation->mark_capacity = capacity;
    }
    validation->marks[validation->mark_count++] = (struct mark){value, kind};
}

/* After a subschema passed on instance: what it marks, if anything is collected. */
static void add_marks(struct validation *validation, const struct node *node,
                      const json_t *instance)
{
    if (node->secret && validation->collect_secrets && json_is_string(instance))
        add_mark(validation, instance, MARK_SECRET);
    if (node->big_integers && validation->collect_big_integers &&
        is_big_integer(validation, instance))
        add_mark(validation, instance, MARK_BIG_INTEGER);
}

static bool type_matches(unsigned char types, const json_t *instance)
{
    switch (json_typeof(instance)) {
    case JSON_OBJECT:
        return types & TYPE_OBJECT;
    case JSON_ARRAY:
        return types & TYPE_ARRAY;
    case JSON_STRING:
        return types & TYPE_STRING;
    case JSON_INTEGER:
        return types & (TYPE_INTEGER | TYPE_NUMBER);
    case JSON_REAL:
        return (types & TYPE_NUMBER) ||
               ((types & TYPE_INTEGER) && real_is_integral(json_real_value(instance)));
    case JSON_TRUE:
    case JSON_FALSE:
        return types & TYPE_BOOLEAN;
    case JSON_NULL:
        return types & TYPE_NULL;
    }
    return false;
}

static bool validate_node(struct validation *validation, const struct node *node,
                          const json_t *instance);

/* Applies a subschema that a keyword names; false reads as that keyword's failure. */
static bool validate_applied(struct validation *validation, const struct node *node,
                             const json_t *instance, const char *keyword)
{
    if (node->is_false) {
        report(validation, keyword, "is not allowed here by the schema");
        return false;
    }
    return validate_node(validation, node, instance);
}

/* Evaluates a subschema whose failures are its keyword's to report; keeps its marks
 * only when it passed. */
static bool validate_silently(struct validation *validation, const struct node *node,
                              const json_t *instance)
{
    size_t marks = validation->mark_count;
    validation->silent++;
    bool passed = validate_node(validation, node, instance);
    validation->silent--;
    if (!passed)
        validation->mark_count = marks;
    return passed;
}

static const char *const format_messages[] = {
    [SCHEMA_FORMAT_NONE] = "does not have the required format",
    [SCHEMA_FORMAT_DATE_TIME] = "is not a valid RFC 3339 date-time",
    [SCHEMA_FORMAT_DATE] = "is not a valid RFC 3339 date",
    [SCHEMA_FORMAT_EMAIL] = "is not a valid email address",
    [SCHEMA_FORMAT_UUID] = "is not a valid UUID",
    [SCHEMA_FORMAT_URI] = "is not a valid absolute URI",
    [SCHEMA_FORMAT_IPV4] = "is not a valid IPv4 address",
    [SCHEMA_FORMAT_IPV6] = "is not a valid IPv6 address",
};

static bool validate_string(struct validation *validation, const struct node *node,
                            const json_t *instance)
{
    const char *text = json_string_value(instance);
    size_t len = json_string_length(instance);
    bool valid = true;

    /* A code point takes one to four bytes, so the byte length often settles it. */
    bool length_settled = len <= node->max_length && len / 4 >= node->min_length;
    if (!length_settled) {
        size_t count = code_points(text, len);
        if (count < node->min_length)
            report(validation, "minLength", "is shorter than the schema allows");
        if (!go_on(validation, &valid, count >= node->min_length))
            return false;
        if (count > node->max_length)
            report(validation, "maxLength", "is longer than the schema allows");
        if (!go_on(validation, &valid, count <= node->max_length))
            return false;
    }
    if (node->pattern != NULL) {
        enum schema_match match = schema_regex_match(node->pattern, text, len);
        if (match == SCHEMA_MATCH_ERROR) {
            abort_validation(validation, "pattern", "could not be matched within budget");
            return false;
        }
        if (match == SCHEMA_MATCH_NO)
            report(validation, "pattern", "does not match the required pattern");
        if (!go_on(validation, &valid, match == SCHEMA_MATCH_YES))
            return false;
    }
    if (node->format != SCHEMA_FORMAT_NONE) {
        bool passed = schema_format_check(node->format, text, len);
        if (!passed)
            report(validation, "format", format_messages[node->format]);
        go_on(validation, &valid, passed);
    }
    return valid;
}

static bool validate_number(struct validation *validation, const struct node *node,
                            const json_t *instance)
{
    bool valid = true;
    if (node->minimum != NULL) {
        bool passed = compare_numbers(instance, node->minimum) >= 0;
        if (!passed)
            report(validation, "minimum", "is less than the minimum");
        if (!go_on(validation, &valid, passed))
            return false;
    }
    if (node->maximum != NULL) {
        bool passed = compare_numbers(instance, node->maximum) <= 0;
        if (!passed)
            report(validation, "maximum", "is greater than the maximum");
        if (!go_on(validation, &valid, passed))
            return false;
    }
    if (node->exclusive_minimum != NULL) {
        bool passed = compare_numbers(instance, node->exclusive_minimum) > 0;
        if (!passed)
            report(validation, "exclusiveMinimum", "is not greater than the exclusive minimum");
        if (!go_on(validation, &valid, passed))
            return false;
    }
    if (node->exclusive_maximum != NULL) {
        bool passed = compare_numbers(instance, node->exclusive_maximum) < 0;
        if (!passed)
            report(validation, "exclusiveMaximum", "is not less than the exclusive maximum");
        if (!go_on(validation, &valid, passed))
            return false;
    }
    if (node->multiple_of != NULL) {
        bool passed = is_multiple(instance, node);
        if (!passed)
            report(validation, "multipleOf", "is not a multiple of multipleOf");
        go_on(validation, &valid, passed);
    }
    return valid;
}

static bool validate_contains(struct validation *validation, const struct node *node,
                              const json_t *array)
{
    size_t matches = 0;
    for (size_t i = 0; i < json_array_size(array); i++) {
        push_index(validation, i);
        matches += validate_silently(validation, node->contains, json_array_get(array, i));
        pop(validation);
        if (validation->aborted)
            return false;
        /* Once the answer is known, the rest only matters for collecting marks. */
        if (!validation->every_branch &&
            (matches > node->max_contains ||
             (matches >= node->min_contains && node->max_contains == SIZE_MAX)))
            break;
    }
    if (matches < node->min_contains) {
        report(validation, node->has_min_contains ? "minContains" : "contains",
               "has too few items that match contains");
        return false;
    }
    if (matches > node->max_contains) {
        report(validation, "maxContains", "has too many items that match contains");
        return false;
    }
    return true;
}

static bool validate_array(struct validation *validation, const struct node *node,
                           const json_t *instance)
{
    size_t size = json_array_size(instance);
    bool valid = true;

    if (size < node->min_items)
        report(validation, "minItems", "has fewer items than the schema allows");
    if (!go_on(validation, &valid, size >= node->min_items))
        return false;
    if (size > node->max_items)
        report(validation, "maxItems", "has more items than the schema allows");
    if (!go_on(validation, &valid, size <= node->max_items))
        return false;
    if (node->unique_items) {
        int unique = items_unique(instance);
        if (unique < 0) {
            abort_validation(validation, "uniqueItems", "could not be checked: out of memory");
            return false;
        }
        if (!unique)
            report(validation, "uniqueItems", "has items that are equal");
        if (!go_on(validation, &valid, unique))
            return false;
    }

    for (size_t i = 0; i < size; i++) {
        bool prefixed = i < node->prefix_items.count;
        const struct node *item_schema = prefixed ? node->prefix_items.items[i] : node->items;
        if (item_schema == NULL)
            break;
        push_index(validation, i);
        bool passed = validate_applied(validation, item_schema, json_array_get(instance, i),
                                       prefixed ? "prefixItems" : "items");
        pop(validation);
        if (!go_on(validation, &valid, passed))
            return false;
    }

    if (node->contains != NULL)
        go_on(validation, &valid, validate_contains(validation, node, instance));
    return valid;
}

static const struct named_node *find_property(const struct node *node, const char *key, size_t len)
{
    struct name wanted = {key, len};
    size_t low = 0, high = node->property_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = compare_names(&wanted, &node->properties[middle].name);
        if (order == 0)
            return &node->properties[middle];
        if (order < 0)
            high = middle;
        else
            low = middle + 1;
    }
    return NULL;
}

static bool validate_property_name(struct validation *validation, const struct node *node,
                                   const char *key, size_t key_len)
{
    json_t *name = json_stringn(key, key_len);
    if (name == NULL) {
        abort_validation(validation, "propertyNames", "could not be checked: out of memory");
        return false;
    }
    /* The name is a temporary: nothing may stay marked on it. */
    size_t marks = validation->mark_count;
    bool passed = validate_silently(validation, node->property_names, name);
    validation->mark_count = marks;
    json_decref(name);
    if (!passed)
        report(validation, "propertyNames", "is a member name the schema does not allow");
    return passed;
}

/* properties, patternProperties, additionalProperties and propertyNames for one member. */
static bool validate_member(struct validation *validation, const struct node *node, const char *key,
                            size_t key_len, const json_t *member, size_t *required_seen)
{
    bool valid = true, matched = false;
    const struct named_node *property = find_property(node, key, key_len);
    if (property != NULL) {
        matched = true;
        *required_seen += property->required;
        if (!go_on(validation, &valid,
                   validate_applied(validation, property->node, member, "properties")))
            return false;
    }
    for (size_t i = 0; i < node->pattern_property_count; i++) {
        const struct pattern_node *pattern = &node->pattern_properties[i];
        enum schema_match match = schema_regex_match(pattern->regex, key, key_len);
        if (match == SCHEMA_MATCH_ERROR) {
            abort_validation(validation, "patternProperties", "could not be matched within budget");
            return false;
        }
        if (match == SCHEMA_MATCH_NO)
            continue;
        matched = true;
        if (!go_on(validation, &valid,
                   validate_applied(validation, pattern->node, member, "patternProperties")))
            return false;
    }
    if (!matched && node->additional_properties != NULL) {
        if (!go_on(validation, &valid,
                   validate_applied(validation, node->additional_properties, member,
                                    "additionalProperties")))
            return false;
    }
    if (node->property_names != NULL)
        go_on(validation, &valid, validate_property_name(validation, node, key, key_len));
    return valid;
}

static bool validate_object(struct validation *validation, const struct node *node,
                            const json_t *instance)
{
    size_t size = json_object_size(instance);
    bool valid = true;

    if (size < node->min_properties)
        report(validation, "minProperties", "has fewer members than the schema allows");
    if (!go_on(validation, &valid, size >= node->min_properties))
        return false;
    if (size > node->max_properties)
        report(validation, "maxProperties", "has more members than the schema allows");
    if (!go_on(validation, &valid, size <= node->max_properties))
        return false;

    for (size_t i = 0; i < node->dependent_required_count; i++) {
        const struct dependency *dependency = &node->dependent_required[i];
        if (json_object_getn(instance, dependency->name.text, dependency->name.len) == NULL)
            continue;
        for (size_t j = 0; j < dependency->required_count; j++) {
            const struct name *name = &dependency->required[j];
            bool present = json_object_getn(instance, name->text, name->len) != NULL;
            if (!present) {
                push_key(validation, name->text, name->len);
                report(validation, "dependentRequired",
                       "is required by another member but missing");
                pop(validation);
            }
            if (!go_on(validation, &valid, present))
                return false;
        }
    }

    /* Required names that are properties are counted as the members go by, so a
     * complete object costs no lookups. */
    size_t required_seen = 0;
    if (node->groups & GROUP_MEMBERS) {
        const char *key;
        size_t key_len;
        json_t *member;
        json_object_keylen_foreach((json_t *)instance, key, key_len, member)
        {
            push_key(validation, key, key_len);
            bool passed = validate_member(validation, node, key, key_len, member, &required_seen);
            pop(validation);
            if (!go_on(validation, &valid, passed))
                return false;
        }
    }
    if (required_seen == node->required_count)
        return valid;
    for (size_t i = 0; i < node->required_count; i++) {
        const struct name *name = &node->required[i];
        bool present = json_object_getn(instance, name->text, name->len) != NULL;
        if (!present) {
            push_key(validation, name->text, name->len);
            report(validation, "required", "is required but missing");
            pop(validation);
        }
        if (!go_on(validation, &valid, present))
            return false;
    }
    return valid;
}

static bool validate_any_of(struct validation *validation, const struct node *node,
                            const json_t *instance)
{
    size_t passed = 0;
    for (size_t i = 0; i < node->any_of.count; i++) {
        passed += validate_silently(validation, node->any_of.items[i], instance);
        if (validation->aborted)
            return false;
        if (passed > 0 && !validation->every_branch)
            break;
    }
    if (passed == 0)
        report(validation, "anyOf", "matches none of the schemas in anyOf");
    return passed > 0;
}

static bool validate_one_of(struct validation *validation, const struct node *node,
                            const json_t *instance)
{
    size_t passed = 0;
    for (size_t i = 0; i < node->one_of.count; i++) {
        passed += validate_silently(validation, node->one_of.items[i], instance);
        if (validation->aborted)
            return false;
        if (passed > 1 && !validation->every_branch)
            break;
    }
    if (passed != 1)
        report(validation, "oneOf",
               passed == 0 ? "matches none of the schemas in oneOf"
                           : "matches more than one of the schemas in oneOf");
    return passed == 1;
}

static bool validate_not(struct validation *validation, const struct node *node,
                         const json_t *instance)
{
    size_t marks = validation->mark_count;
    bool matched = validate_silently(validation, node->not_schema, instance);
    /* What the schema inside "not" marks describes what the value is not. */
    validation->mark_count = marks;
    if (validation->aborted)
        return false;
    if (matched)
        report(validation, "not", "matches the schema in not");
    return !matched;
}

static bool validate_conditional(struct validation *validation, const struct node *node,
                                 const json_t *instance)
{
    bool condition = validate_silently(validation, node->if_schema, instance);
    if (validation->aborted)
        return false;
    if (condition && node->then_schema != NULL)
        return validate_applied(validation, node->then_schema, instance, "then");
    if (!condition && node->else_schema != NULL)
        return validate_applied(validation, node->else_schema, instance, "else");
    return true;
}

/* The keywords that apply other subschemas to this same value. */
static bool validate_in_place(struct validation *validation, const struct node *node,
                              const json_t *instance)
{
    bool valid = true;
    if (node->ref != NULL &&
        !go_on(validation, &valid, validate_applied(validation, node->ref, instance, "$ref")))
        return false;
    for (size_t i = 0; i < node->all_of.count; i++) {
        if (!go_on(validation, &valid,
                   validate_applied(validation, node->all_of.items[i], instance, "allOf")))
            return false;
    }
    if (node->any_of.count > 0 &&
        !go_on(validation, &valid, validate_any_of(validation, node, instance)))
        return false;
    if (node->one_of.count > 0 &&
        !go_on(validation, &valid, validate_one_of(validation, node, instance)))
        return false;
    if (node->not_schema != NULL &&
        !go_on(validation, &valid, validate_not(validation, node, instance)))
        return false;
    if (node->if_schema != NULL &&
        !go_on(validation, &valid, validate_conditional(validation, node, instance)))
        return false;
    for (size_t i = 0; i < node->dependent_schema_count && json_is_object(instance); i++) {
        const struct named_node *dependent = &node->dependent_schemas[i];
        if (json_object_getn(instance, dependent->name.text, dependent->name.len) == NULL)
            continue;
        if (!go_on(validation, &valid,
                   validate_applied(validation, dependent->node, instance, "dependentSchemas")))
            return false;
    }
    return valid;
}

static bool in_enum(const json_t *values, const json_t *instance)
{
    for (size_t i = 0; i < json_array_size(values); i++) {
        if (json_values_equal(json_array_get(values, i), instance))
            return true;
    }
    return false;
}

static bool validate_keywords(struct validation *validation, const struct node *node,
                              const json_t *instance)
{
    bool valid = true;
    if (node->types != 0) {
        bool passed = type_matches(node->types, instance);
        if (!passed)
            report(validation, "type", "has a type the schema does not allow");
        if (!go_on(validation, &valid, passed))
            return false;
    }
    if (node->const_value != NULL) {
        bool passed = json_values_equal(node->const_value, instance);
        if (!passed)
            report(validation, "const", "is not the value the schema requires");
        if (!go_on(validation, &valid, passed))
            return false;
    }
    if (node->enum_values != NULL) {
        bool passed = in_enum(node->enum_values, instance);
        if (!passed)
            report(validation, "enum", "is not one of the values the schema allows");
        if (!go_on(validation, &valid, passed))
            return false;
    }

    bool passed = true;
    switch (json_typeof(instance)) {
    case JSON_STRING:
        if (node->groups & GROUP_STRING)
            passed = validate_string(validation, node, instance);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        if (node->groups & GROUP_NUMBER)
            passed = validate_number(validation, node, instance);
        break;
    case JSON_ARRAY:
        if (node->groups & GROUP_ARRAY)
            passed = validate_array(validation, node, instance);
        break;
    case JSON_OBJECT:
        if (node->groups & GROUP_OBJECT)
            passed = validate_object(validation, node, instance);
        break;
    default:
        break;
    }
    if (!go_on(validation, &valid, passed))
        return false;

    if (node->groups & GROUP_IN_PLACE)
        go_on(validation, &valid, validate_in_place(validation, node, instance));
    return valid;
}

static bool validate_node(struct validation *validation, const struct node *node,
                          const json_t *instance)
{
    if (validation->aborted)
        return false;
    if (node->is_false) {
        report(validation, "false", "is not allowed: the schema is false");
        return false;
    }
    if (++validation->evaluations > validation->limits->max_evaluations) {
        abort_validation(validation, "maxEvaluations",
                         "needs more schema evaluations than jobgate allows");
        return false;
    }
    if (validation->recursion >= MAX_RECURSION) {
        abort_validation(validation, "maxDepth",
                         "needs deeper schema evaluation than jobgate allows");
        return false;
    }

    validation->recursion++;
    bool valid = validate_keywords(validation, node, instance);
    validation->recursion--;
    if (valid && !validation->aborted)
        add_marks(validation, node, instance);
    return valid && !validation->aborted;
}

/* After the schema: every integer past max_integer that no passing subschema allowed. */
static void report_big_integers(struct validation *validation, const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_INTEGER:
    case JSON_REAL:
        if (is_big_integer(validation, value) && !is_marked(validation, value, MARK_BIG_INTEGER))
            record(validation, "maxInteger", "is an integer beyond the range jobgate accepts");
        return;
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(value); i++) {
            push_index(validation, i);
            report_big_integers(validation, json_array_get(value, i));
            pop(validation);
        }
        return;
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *member;
        json_object_keylen_foreach((json_t *)value, key, key_len, member)
        {
            push_key(validation, key, key_len);
            report_big_integers(validation, member);
            pop(validation);
        }
        return;
    }
    default:
        return;
    }
}

static size_t run_validation(struct validation *validation, const json_t *instance)
{
    const struct schema *schema = validation->schema;
    if (instance == NULL) {
        record(validation, "type", "is missing");
        return validation->failures;
    }

    check_limits(validation, instance, 0);
    if (validation->failures > 0)
        return validation->failures;
    if (validation->big_integers > 0 && !schema->has_big_integers) {
        report_big_integers(validation, instance);
        return validation->failures;
    }
    if (validation->big_integers > 0) {
        validation->collect_big_integers = true;
        validation->every_branch = true;
    }

    bool valid = validate_applied(validation, schema->root, instance, "false");
    if (!valid && validation->failures == 0)
        record(validation, "schema", "does not match the schema");

    if (validation->mark_count > 0)
        qsort(validation->marks, validation->mark_count, sizeof *validation->marks, compare_marks);
    if (validation->big_integers > 0 && !validation->aborted)
        report_big_integers(validation, instance);
    return validation->failures;
}

size_t schema_validate(const struct schema *schema, const json_t *instance,
                       struct schema_error *errors, size_t max_errors)
{
    /* Kept apart from the struct so that it is not zeroed on every call. */
    struct segment segments[SCHEMA_DEPTH_CEILING + 2];
    struct validation validation = {
        .schema = schema,
        .limits = &schema->limits,
        .errors = errors,
        .max_errors = errors != NULL ? max_errors : 0,
        .segments = segments,
    };
    size_t failures = run_validation(&validation, instance);
    free(validation.marks);
    return failures;
}

struct secret_walk {
    const struct validation *validation;
    schema_secret_fn fn;
    void *data;
    struct text pointer;
    bool unnamed; /* the pointer did not fit */
};

/* Where the value being walked sits: its parent and its name or index there. */
struct secret_place {
    json_t *parent;
    const char *key;
    size_t key_len;
    size_t index;
};

static int walk_secrets(struct secret_walk *walk, json_t *value, const struct secret_place *place);

static int walk_child(struct secret_walk *walk, json_t *parent, json_t *child, const char *key,
                      size_t key_len, size_t index)
{
    struct secret_place place = {parent, key, key_len, index};
    size_t saved_len = walk->pointer.len;
    bool saved_unnamed = walk->unnamed;
    if (key != NULL)
        append_pointer_segment(&walk->pointer, key, key_len);
    else
        append_pointer_index(&walk->pointer, index);
    walk->unnamed = walk->unnamed || walk->pointer.overflowed;
    int result = walk_secrets(walk, child, &place);
    walk->pointer.len = saved_len;
    walk->pointer.overflowed = saved_unnamed;
    walk->unnamed = saved_unnamed;
    return result;
}

static int walk_secrets(struct secret_walk *walk, json_t *value, const struct secret_place *place)
{
    switch (json_typeof(value)) {
    case JSON_STRING: {
        if (!is_marked(walk->validation, value, MARK_SECRET))
            return 0;
        if (walk->unnamed)
            return -1;
        struct schema_secret secret = {
            .pointer = text_finish(&walk->pointer),
            .value = value,
            .parent = place->parent,
            .key = place->key,
            .key_len = place->key_len,
            .index = place->index,
        };
        return walk->fn(walk->data, &secret);
    }
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(value); i++) {
            int result = walk_child(walk, value, json_array_get(value, i), NULL, 0, i);
            if (result != 0)
                return result;
        }
        return 0;
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *member;
        json_object_keylen_foreach(value, key, key_len, member)
        {
            int result = walk_child(walk, value, member, key, key_len, 0);
            if (result != 0)
                return result;
        }
        return 0;
    }
    default:
        return 0;
    }
}

int schema_secret_replace(const struct schema_secret *secret, json_t *replacement)
{
    /* Replacing a member keeps its place in the object, so a walk over it goes on. */
    if (json_is_object(secret->parent))
        return json_object_setn_new_nocheck(secret->parent, secret->key, secret->key_len,
                                            replacement);
    if (json_is_array(secret->parent))
        return json_array_set_new(secret->parent, secret->index, replacement);
    json_decref(replacement);
    return -1;
}

int schema_each_secret(const struct schema *schema, json_t *instance, schema_secret_fn fn,
                       void *data)
{
    if (!schema->has_secrets)
        return 0;
    struct segment segments[SCHEMA_DEPTH_CEILING + 2];
    struct validation validation = {
        .schema = schema,
        .limits = &schema->limits,
        .segments = segments,
        .collect_secrets = true,
        .every_branch = true,
    };
    int result = -1;
    if (run_validation(&validation, instance) == 0) {
        char pointer[SCHEMA_MAX_SECRET_POINTER];
        struct secret_walk walk = {.validation = &validation, .fn = fn, .data = data};
        struct secret_place root = {0};
        text_init(&walk.pointer, pointer, sizeof pointer);
        result = walk_secrets(&walk, instance, &root);
    }
    free(validation.marks);
    return validation.out_of_memory ? SCHEMA_SECRETS_NO_MEMORY : result;
}
