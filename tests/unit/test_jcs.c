/*
 * Unit tests for jcs: the RFC 8785 reference vectors byte for byte, then the rules one
 * at a time (name order by UTF-16 code units, string escapes, ECMAScript numbers, the
 * integers refused past 2^53), and every way a call can fail leaving nothing behind.
 *
 * The vectors are read at run time from ../shared/jcs-vectors beside the repository,
 * or from $JOBGATE_SHARED/jcs-vectors when that is set (as scripts/test.sh allows).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jcs.h"

#define DECODE_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
#define VECTOR_MAX_BYTES 65536

#include "failing_allocator.h"

/* Writes the path of relative inside the shared directory to out. */
static void shared_path(char *out, size_t size, const char *relative)
{
    const char *shared = getenv("JOBGATE_SHARED");
    const char *suffix = "tests/unit/test_jcs.c";
    const char *file = __FILE__;
    size_t file_len = strlen(file);
    size_t prefix_len = file_len - strlen(suffix);
    int written;

    if (shared != NULL && shared[0] != '\0') {
        written = snprintf(out, size, "%s/%s", shared, relative);
    } else {
        assert_true(file_len >= strlen(suffix) && strcmp(file + prefix_len, suffix) == 0);
        written = snprintf(out, size, "%.*s../shared/%s", (int)prefix_len, file, relative);
    }
    assert_true(written > 0 && (size_t)written < size);
}

/* Reads a whole file into buffer (at most size - 1 bytes); returns its length. */
static size_t read_file(const char *path, char *buffer, size_t size)
{
    FILE *file = fopen(path, "rb");
    size_t len;

    if (file == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    len = fread(buffer, 1, size, file);
    assert_int_equal(ferror(file), 0);
    assert_int_equal(fclose(file), 0);
    if (len >= size)
        fail_msg("%s is larger than the %zu bytes a vector may have", path, size - 1);
    return len;
}

static json_t *parse(const char *json)
{
    json_error_t error;
    json_t *value = json_loads(json, DECODE_FLAGS, &error);

    if (value == NULL)
        fail_msg("cannot parse %s: %s", json, error.text);
    return value;
}

static void assert_value_canonical(const json_t *value, const char *expected)
{
    char buffer[32768];
    struct text out;

    text_init(&out, buffer, sizeof(buffer));
    assert_int_equal(jcs_append(&out, value, 0), JCS_OK);
    assert_string_equal(text_finish(&out), expected);
}

static void assert_canonical(const char *json, const char *expected)
{
    json_t *value = parse(json);

    assert_value_canonical(value, expected);
    json_decref(value);
}

/* A refused value must leave the builder as it found it: nothing partial to sign. */
static void assert_value_refused(const json_t *value, enum jcs_status expected)
{
    char buffer[4096];
    struct text out;

    text_init(&out, buffer, sizeof(buffer));
    text_append_str(&out, "before");
    assert_int_equal(jcs_append(&out, value, 0), expected);
    assert_string_equal(text_finish(&out), "before");
}

static void assert_refused(const char *json, enum jcs_status expected)
{
    json_t *value = parse(json);

    assert_value_refused(value, expected);
    json_decref(value);
}

/* Each file in input/ canonicalizes to the bytes of its namesake in output/. */
static void test_reference_vectors(void **state)
{
    static char expected[VECTOR_MAX_BYTES], actual[VECTOR_MAX_BYTES];
    char directory[512], input[1024], output[1024];
    struct dirent *entry;
    size_t vectors = 0;
    DIR *inputs;

    (void)state;
    shared_path(directory, sizeof(directory), "jcs-vectors/input");
    inputs = opendir(directory);
    if (inputs == NULL)
        fail_msg("cannot open %s: %s", directory, strerror(errno));
    while ((entry = readdir(inputs)) != NULL) {
        size_t name_len = strlen(entry->d_name);
        if (name_len < 5 || strcmp(entry->d_name + name_len - 5, ".json") != 0)
            continue;
        assert_true((size_t)snprintf(input, sizeof(input), "%s/%s", directory, entry->d_name) <
                    sizeof(input));
        shared_path(output, sizeof(output), "jcs-vectors/output/");
        assert_true(strlen(output) + name_len < sizeof(output));
        memcpy(output + strlen(output), entry->d_name, name_len + 1);

        json_error_t error;
        json_t *value = json_load_file(input, DECODE_FLAGS, &error);
        if (value == NULL)
            fail_msg("cannot parse %s: %s", input, error.text);
        size_t expected_len = read_file(output, expected, sizeof(expected));
        struct text out;
        text_init(&out, actual, sizeof(actual));
        assert_int_equal(jcs_append(&out, value, 0), JCS_OK);
        if (out.len != expected_len || memcmp(actual, expected, expected_len) != 0)
            fail_msg("%s: got %.*s", entry->d_name, (int)out.len, actual);
        json_decref(value);
        vectors++;
    }
    closedir(inputs);
    assert_true(vectors >= 6);
}

/*
 * RFC 8785 sorts names as UTF-16 code units. A character past U+FFFF is a surrogate
 * pair (0xd800-0xdfff), so it sorts before U+E000-U+FFFF, where code point order and
 * UTF-8 byte order (0xf0... against 0xee...) put it after.
 */
static void test_names_sort_as_utf16_code_units(void **state)
{
    (void)state;
    assert_canonical("{\"\\ue000\":1,\"\\ud83d\\ude00\":2}",
                     "{\"\xf0\x9f\x98\x80\":2,\"\xee\x80\x80\":1}");
    assert_canonical("{\"\\uffff\":1,\"\\ue000\":2,\"\\ud83d\\ude00\":3,\"\\ud800\\udc00\":4,"
                     "\"\\ud7ff\":5,\"z\":6,\"\":7,\"\\udbff\\udfff\":8,\"\\ud83d\\ude00a\":9,"
                     "\"\\ud83d\\ude01\":10,\"\\ud83d\\udc00\":11}",
                     "{\"\":7,\"z\":6,\"\xed\x9f\xbf\":5,\"\xf0\x90\x80\x80\":4,"
                     "\"\xf0\x9f\x90\x80\":11,\"\xf0\x9f\x98\x80\":3,\"\xf0\x9f\x98\x80"
                     "a\":9,\"\xf0\x9f\x98\x81\":10,\"\xf4\x8f\xbf\xbf\":8,\"\xee\x80\x80\":2,"
                     "\"\xef\xbf\xbf\":1}");
    /* Plain code unit order: no locale, no case folding, a prefix first. */
    assert_canonical("{\"b\":1,\"ab\":2,\"aa\":3,\"a\":4,\"B\":5,\"\\u00e9\":6,\"e\":7}",
                     "{\"B\":5,\"a\":4,\"aa\":3,\"ab\":2,\"b\":1,\"e\":7,\"\xc3\xa9\":6}");
}

/* Names are counted, not NUL-terminated: jansson lets a program build one with a NUL. */
static void test_names_may_hold_nul(void **state)
{
    json_t *object = json_object();

    (void)state;
    assert_int_equal(json_object_setn_new(object, "a\0b", 3, json_integer(1)), 0);
    assert_int_equal(json_object_set_new(object, "a", json_integer(2)), 0);
    assert_int_equal(json_object_setn_new(object, "\0", 1, json_integer(3)), 0);
    assert_value_canonical(object, "{\"\\u0000\":3,\"a\":2,\"a\\u0000b\":1}");
    json_decref(object);
}

/* Past 32 members the list is sorted on the heap; the order must not change with it. */
static void test_large_objects_sort_the_same(void **state)
{
    static const size_t sizes[] = {0, 1, 31, 32, 33, 100, 1000};
    static char expected[32768];

    (void)state;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        json_t *object = json_object();
        struct text want;
        char name[24];

        /* Inserted backwards, so jansson's insertion order is the reverse of the answer. */
        for (size_t i = sizes[s]; i-- > 0;) {
            snprintf(name, sizeof(name), "m%04zu", i);
            assert_int_equal(json_object_set_new(object, name, json_integer((json_int_t)i)), 0);
        }
        text_init(&want, expected, sizeof(expected));
        text_append(&want, "{", 1);
        for (size_t i = 0; i < sizes[s]; i++) {
            snprintf(name, sizeof(name), "m%04zu", i);
            text_append_str(&want, i > 0 ? ",\"" : "\"");
            text_append_str(&want, name);
            text_append_str(&want, "\":");
            text_append_uint(&want, i);
        }
        text_append(&want, "}", 1);
        assert_value_canonical(object, text_finish(&want));
        json_decref(object);
    }
}

/*
 * RFC 8785 3.2.2.2: the short escapes where JSON has them, lowercase \u00xx for the other
 * controls, and nothing else escaped: not '/', not DEL, not anything past ASCII.
 */
static void test_strings_escape_only_what_json_requires(void **state)
{
    static const char raw[] = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
                              "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"
                              "\"\\/\x7f"
                              "\xc2\x80\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 A";
    json_t *value = json_stringn(raw, sizeof(raw) - 1);

    (void)state;
    assert_non_null(value);
    assert_value_canonical(
        value, "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f"
               "\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
               "\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\\"\\\\/\x7f"
               "\xc2\x80\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 A\"");
    json_decref(value);

    /* Names get the same escapes; "\/" and "\u0041" in the input are just '/' and 'A'. */
    assert_canonical("{\"\\t\\/\\u0041\\u001F\":\"\\u00e9\"}", "{\"\\t/A\\u001f\":\"\xc3\xa9\"}");
}

/* Numbers as ECMAScript's Number::toString writes the double (checked against node). */
static void test_numbers_follow_ecmascript(void **state)
{
    (void)state;
    assert_canonical("[-0.0,-0,0.0,1e21,1E21,9.999999999999999e20,1e-7,0.000001,1e20,4.50,"
                     "56.0,2e-3,1E30,5e-324,-1.5e-7,333333333.33333329,1.7976931348623157e308]",
                     "[0,0,0,1e+21,1e+21,999999999999999900000,1e-7,0.000001,"
                     "100000000000000000000,4.5,56,0.002,1e+30,5e-324,-1.5e-7,333333333.3333333,"
                     "1.7976931348623157e+308]");
    /* 2^-1017, a power of two: the shortest digits lie above it, not at the nearest. */
    assert_canonical("7.120236347223045e-307", "7.120236347223045e-307");
    /* Integers up to 2^53 are exact doubles and keep their digits. */
    assert_canonical("[9007199254740992,-9007199254740992,9007199254740991,123,-123,0]",
                     "[9007199254740992,-9007199254740992,9007199254740991,123,-123,0]");
    /* A real past 2^53 is a double already, written as JavaScript writes 2^60. */
    assert_canonical("1152921504606846976.0", "1152921504606847000");
}

/*
 * The documented choice: an integer beyond +-2^53 is refused, not rounded to a double
 * (2^60 is a double, but 2^60 + 1 would be signed as the same bytes).
 */
static void test_integers_beyond_2_53_are_refused(void **state)
{
    json_t *value;

    (void)state;
    assert_refused("9007199254740993", JCS_NUMBER);
    assert_refused("-9007199254740993", JCS_NUMBER);
    assert_refused("1152921504606846976", JCS_NUMBER);
    assert_refused("1152921504606846977", JCS_NUMBER);
    assert_refused("[1,{\"a\":\"x\",\"b\":1152921504606846976}]", JCS_NUMBER);
    value = json_integer(INT64_MIN);
    assert_value_refused(value, JCS_NUMBER);
    json_decref(value);
}

/* JCS_EXACT_INTEGERS, for schemas that allow big integers: their digits, nothing rounded. */
static void test_exact_integers_keep_their_digits(void **state)
{
    json_t *value = parse("[9007199254740993,{\"b\":-1152921504606846977,\"a\":1.5}]");
    json_t *smallest = json_integer(INT64_MIN);
    char buffer[256];
    struct text out;

    (void)state;
    text_init(&out, buffer, sizeof(buffer));
    assert_int_equal(jcs_append(&out, value, JCS_EXACT_INTEGERS), JCS_OK);
    text_append_str(&out, " ");
    assert_int_equal(jcs_append(&out, smallest, JCS_EXACT_INTEGERS), JCS_OK);
    assert_string_equal(text_finish(&out),
                        "[9007199254740993,{\"a\":1.5,\"b\":-1152921504606846977}] "
                        "-9223372036854775808");
    json_decref(value);
    json_decref(smallest);
}

/* jansson cannot hold NaN or an infinity, so JCS_NUMBER for a real stays a backstop. */
static void test_non_finite_reals_cannot_be_built(void **state)
{
    json_t *value = json_real(1.5);

    (void)state;
    assert_null(json_real(NAN));
    assert_null(json_real(INFINITY));
    assert_int_equal(json_real_set(value, -INFINITY), -1);
    assert_value_canonical(value, "1.5");
    json_decref(value);
}

static void test_nesting_and_literals(void **state)
{
    (void)state;
    assert_canonical(
        "{\"b\":[[],{},[{}],{\"d\":null,\"c\":[true,false]}],\"a\":{\"y\":{\"x\":\"\"}}}",
        "{\"a\":{\"y\":{\"x\":\"\"}},\"b\":[[],{},[{}],{\"c\":[true,false],\"d\":null}]}");
    assert_canonical(" [ 1 , [ 2 , [ 3 ] ] , { } ] ", "[1,[2,[3]],{}]");
    assert_canonical("\"x\"", "\"x\"");
    assert_canonical("5", "5");
    assert_canonical("true", "true");
    assert_canonical("false", "false");
    assert_canonical("null", "null");
}

/* Builds arrays (or objects under "k") nested depth deep around an empty one. */
static json_t *nested(size_t depth, int objects)
{
    json_t *value = objects ? json_object() : json_array();

    for (size_t i = 1; i < depth; i++) {
        json_t *outer = objects ? json_object() : json_array();
        if (objects)
            assert_int_equal(json_object_set_new(outer, "k", value), 0);
        else
            assert_int_equal(json_array_append_new(outer, value), 0);
        value = outer;
    }
    return value;
}

static void test_depth_is_bounded(void **state)
{
    char buffer[4096];
    struct text out;

    (void)state;
    for (int objects = 0; objects <= 1; objects++) {
        json_t *deepest = nested(JCS_MAX_DEPTH, objects);
        json_t *too_deep = nested(JCS_MAX_DEPTH + 1, objects);

        text_init(&out, buffer, sizeof(buffer));
        assert_int_equal(jcs_append(&out, deepest, 0), JCS_OK);
        assert_int_equal(out.len, objects ? 6 * JCS_MAX_DEPTH - 4 : 2 * JCS_MAX_DEPTH);
        assert_value_refused(too_deep, JCS_TOO_DEEP);
        json_decref(deepest);
        json_decref(too_deep);
    }
}

/* Strings made without jansson's checks are refused: the bytes signed must be Unicode. */
static void test_invalid_utf8_is_refused(void **state)
{
    static const char *const invalid[] = {
        "\xff",
        "\x80",
        "a\xc3",
        "\xc0\x80",
        "\xe0\x80\x80",
        "\xed\xa0\x80",
        "\xf4\x90\x80\x80",
        "\xf8\x88\x80",
        "\xe2\x82\x41",
        "\xf0\x9f\x98",
    };
    json_t *value;

    (void)state;
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        value = json_stringn_nocheck(invalid[i], strlen(invalid[i]));
        assert_value_refused(value, JCS_STRING);
        json_decref(value);

        value = json_object();
        assert_int_equal(json_object_set_new_nocheck(value, invalid[i], json_null()), 0);
        assert_value_refused(value, JCS_STRING);
        json_decref(value);
    }

    value = json_stringn_nocheck("\xf4\x8f\xbf\xbf\xef\xbf\xbf", 7);
    assert_value_canonical(value, "\"\xf4\x8f\xbf\xbf\xef\xbf\xbf\"");
    json_decref(value);
}

/* Every buffer too small by even one byte fails, and keeps nothing. */
static void test_overflow_is_reported(void **state)
{
    static const char canonical[] =
        "{\"\":\"empty\",\"1\":{\"\\n\":56,\"f\":{\"F\":5,\"f\":\"hi\"}}}";
    json_t *value = parse("{\"1\":{\"f\":{\"f\":\"hi\",\"F\":5},\"\\n\":56.0},\"\":\"empty\"}");
    char buffer[sizeof(canonical)];
    struct text out;

    (void)state;
    for (size_t capacity = 0; capacity < sizeof(canonical); capacity++) {
        text_init(&out, buffer, capacity);
        assert_int_equal(jcs_append(&out, value, 0), JCS_OVERFLOW);
        assert_int_equal(out.len, 0);
        assert_null(text_finish(&out));
    }
    text_init(&out, buffer, sizeof(canonical));
    assert_int_equal(jcs_append(&out, value, 0), JCS_OK);
    assert_string_equal(text_finish(&out), canonical);
    json_decref(value);
}

/*
 * Each allocation jcs makes (a member list per object past 32 members) fails in turn:
 * the call reports it, leaves nothing in the builder and frees what it had taken.
 */
static void test_allocation_failure(void **state)
{
#ifdef SANITIZED
    (void)state;
    skip();
#else
    json_t *inner, *outer;
    char name[16], buffer[4096];
    struct text out;
    enum jcs_status status;

    (void)state;
    if (!allocator_can_fail())
        skip();

    inner = json_object();
    outer = json_object();

    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "n%02d", 39 - i);
        assert_int_equal(json_object_set_new(inner, name, json_integer(i)), 0);
    }
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "o%02d", 39 - i);
        assert_int_equal(json_object_set(outer, name, i == 20 ? inner : json_null()), 0);
    }

    for (failing_allocation = 0;; failing_allocation++) {
        text_init(&out, buffer, sizeof(buffer));
        text_append_str(&out, "before");
        allocations_made = 0;
        tracked_count = 0;
        allocator_armed = 1;
        status = jcs_append(&out, outer, 0);
        allocator_armed = 0;
        assert_int_equal(tracked_count, 0);
        if (status == JCS_OK)
            break;
        assert_int_equal(status, JCS_NO_MEMORY);
        assert_string_equal(text_finish(&out), "before");
    }
    assert_int_equal(failing_allocation, 2);
    json_decref(inner);
    json_decref(outer);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_names_sort_as_utf16_code_units),
        cmocka_unit_test(test_names_may_hold_nul),
        cmocka_unit_test(test_large_objects_sort_the_same),
        cmocka_unit_test(test_strings_escape_only_what_json_requires),
        cmocka_unit_test(test_numbers_follow_ecmascript),
        cmocka_unit_test(test_integers_beyond_2_53_are_refused),
        cmocka_unit_test(test_exact_integers_keep_their_digits),
        cmocka_unit_test(test_non_finite_reals_cannot_be_built),
        cmocka_unit_test(test_nesting_and_literals),
        cmocka_unit_test(test_depth_is_bounded),
        cmocka_unit_test(test_invalid_utf8_is_refused),
        cmocka_unit_test(test_overflow_is_reported),
        cmocka_unit_test(test_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
