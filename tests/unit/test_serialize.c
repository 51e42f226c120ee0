/*
 * Unit tests for serialize: shortest round-trip reals in both layouts, and the
 * escapes strings get.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "serialize.h"

static const char *real_text(double value, enum serialize_mode mode, char *buffer, size_t size)
{
    struct text out;

    text_init(&out, buffer, size);
    serialize_real(&out, value, mode);
    return text_finish(&out);
}

static void assert_real(double value, const char *payload, const char *ecma)
{
    char buffer[64];

    assert_string_equal(real_text(value, SERIALIZE_PAYLOAD, buffer, sizeof(buffer)), payload);
    assert_string_equal(real_text(value, SERIALIZE_ECMA, buffer, sizeof(buffer)), ecma);
}

static void test_reals_are_shortest_round_trip(void **state)
{
    (void)state;
    assert_real(19.99, "19.99", "19.99");
    assert_real(0.1, "0.1", "0.1");
    assert_real(3.14159, "3.14159", "3.14159");
    assert_real(333333333.33333329, "333333333.3333333", "333333333.3333333");
    assert_real(4.50, "4.5", "4.5");
    assert_real(-2.5, "-2.5", "-2.5");
    assert_real(5e-324, "5e-324", "5e-324");
    assert_real(1.7976931348623157e308, "1.7976931348623157e+308", "1.7976931348623157e+308");
    /* Below a power of two the nearest decimal may not read back, but the next one up does. */
    assert_real(0x1p-1017, "7.120236347223045e-307", "7.120236347223045e-307");
}

static void test_reals_follow_ecmascript_layout(void **state)
{
    (void)state;
    assert_real(1e3, "1000.0", "1000");
    assert_real(0.0, "0.0", "0");
    assert_real(-0.0, "0.0", "0");
    assert_real(1e20, "100000000000000000000.0", "100000000000000000000");
    assert_real(1e21, "1e+21", "1e+21");
    assert_real(1E30, "1e+30", "1e+30");
    assert_real(2e-3, "0.002", "0.002");
    assert_real(1e-6, "0.000001", "0.000001");
    assert_real(1e-7, "1e-7", "1e-7");
    assert_real(1.5e-7, "1.5e-7", "1.5e-7");
    assert_real(0.000000000000000000000000001, "1e-27", "1e-27");
    assert_real(123456789012345680000.0, "123456789012345680000.0", "123456789012345680000");
}

static void test_values_keep_order_and_escape_strings(void **state)
{
    char buffer[256];
    struct text out;
    json_error_t error;
    json_t *value =
        json_loads("{\"z\":[1,2.5,true,false,null],\"a\":\"\\u00e9\\n\\u000f\\\"\\\\/\"}",
                   JSON_REJECT_DUPLICATES, &error);

    (void)state;
    assert_non_null(value);
    text_init(&out, buffer, sizeof(buffer));
    serialize_json(&out, value, SERIALIZE_PAYLOAD);
    assert_string_equal(text_finish(&out),
                        "{\"z\":[1,2.5,true,false,null],\"a\":\"\xc3\xa9\\n\\u000f\\\"\\\\/\"}");
    json_decref(value);
}

static void test_overflow_is_reported(void **state)
{
    char buffer[8];
    struct text out;
    json_t *value = json_pack("[s]", "longer than eight bytes");

    (void)state;
    text_init(&out, buffer, sizeof(buffer));
    serialize_json(&out, value, SERIALIZE_PAYLOAD);
    assert_null(text_finish(&out));
    json_decref(value);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reals_are_shortest_round_trip),
        cmocka_unit_test(test_reals_follow_ecmascript_layout),
        cmocka_unit_test(test_values_keep_order_and_escape_strings),
        cmocka_unit_test(test_overflow_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
