/*
 * Unit tests for schema: each keyword family, the limits applied before the schema,
 * error pointers and messages (which must never carry the instance's data), secret
 * enumeration, load errors with their pointers, the formats and the regex dialect.
 * The official test suite runs separately (tests/schema_suite.c); these tests cover
 * what it does not: jobgate's own rules and choices.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schema.h"

#define MAX_PROBLEMS 16
#define MAX_ERRORS 16
#define CANARY "CANARY-7f3a-do-not-echo"

struct problems {
    size_t count;
    char text[MAX_PROBLEMS][512];
};

static void collect_problem(void *data, const char *message)
{
    struct problems *problems = data;
    if (problems->count < MAX_PROBLEMS)
        snprintf(problems->text[problems->count], sizeof problems->text[0], "%s", message);
    problems->count++;
}

static bool has_problem(const struct problems *problems, const char *wanted)
{
    for (size_t i = 0; i < problems->count && i < MAX_PROBLEMS; i++) {
        if (strcmp(problems->text[i], wanted) == 0)
            return true;
    }
    for (size_t i = 0; i < problems->count && i < MAX_PROBLEMS; i++)
        print_message("problem: %s\n", problems->text[i]);
    print_message("wanted:  %s\n", wanted);
    return false;
}

static json_t *parse(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &error);
    if (value == NULL)
        fail_msg("test JSON does not parse: %s: %s", error.text, text);
    return value;
}

static struct schema *compile_with(const char *text, const struct schema_limits *limits,
                                   struct problems *problems)
{
    json_t *document = parse(text);
    struct schema *schema =
        schema_compile(document, "test.json", limits, collect_problem, problems);
    json_decref(document);
    return schema;
}

/* Compiles text, which must be a valid schema. */
static struct schema *compile(const char *text)
{
    struct problems problems = {0};
    struct schema *schema = compile_with(text, NULL, &problems);
    if (schema == NULL)
        fail_msg("schema refused (%zu problems), first: %s", problems.count, problems.text[0]);
    return schema;
}

/* Compiles text, which must be refused; returns the problems. */
static struct problems refuse(const char *text)
{
    struct problems problems = {0};
    struct schema *schema = compile_with(text, NULL, &problems);
    if (schema != NULL) {
        schema_free(schema);
        fail_msg("schema accepted: %s", text);
    }
    assert_true(problems.count > 0);
    return problems;
}

static size_t check(const struct schema *schema, const char *instance, struct schema_error *errors,
                    size_t max_errors)
{
    json_t *value = parse(instance);
    size_t failures = schema_validate(schema, value, errors, max_errors);
    json_decref(value);
    return failures;
}

static void assert_valid(const struct schema *schema, const char *instance)
{
    struct schema_error errors[MAX_ERRORS];
    size_t failures = check(schema, instance, errors, MAX_ERRORS);
    for (size_t i = 0; i < failures && i < MAX_ERRORS; i++)
        print_message("'%s' %s: %s\n", errors[i].pointer, errors[i].keyword, errors[i].message);
    if (failures != 0)
        fail_msg("expected valid: %s", instance);
}

/* The instance must fail, with one of its failures at pointer for keyword. */
static void assert_fails(const struct schema *schema, const char *instance, const char *pointer,
                         const char *keyword)
{
    struct schema_error errors[MAX_ERRORS];
    size_t failures = check(schema, instance, errors, MAX_ERRORS);
    for (size_t i = 0; i < failures && i < MAX_ERRORS; i++) {
        if (strcmp(errors[i].pointer, pointer) == 0 && strcmp(errors[i].keyword, keyword) == 0)
            return;
    }
    for (size_t i = 0; i < failures && i < MAX_ERRORS; i++)
        print_message("'%s' %s: %s\n", errors[i].pointer, errors[i].keyword, errors[i].message);
    fail_msg("expected a %s failure at '%s' for %s (%zu failures)", keyword, pointer, instance,
             failures);
}

static void assert_invalid(const struct schema *schema, const char *instance)
{
    if (check(schema, instance, NULL, 0) == 0)
        fail_msg("expected invalid: %s", instance);
}

static void test_types_and_json_numbers(void **state)
{
    struct schema *integer = compile("{\"type\": \"integer\"}");
    assert_valid(integer, "1");
    assert_valid(integer, "1.0");
    assert_valid(integer, "-0.0");
    assert_invalid(integer, "1.5");
    assert_invalid(integer, "\"1\"");
    assert_invalid(integer, "true");
    schema_free(integer);

    struct schema *several = compile("{\"type\": [\"string\", \"null\"]}");
    assert_valid(several, "null");
    assert_valid(several, "\"x\"");
    assert_fails(several, "0", "", "type");
    schema_free(several);

    struct schema *boolean_true = compile("true");
    struct schema *boolean_false = compile("false");
    assert_valid(boolean_true, "{\"anything\": [1, 2]}");
    assert_fails(boolean_false, "null", "", "false");
    schema_free(boolean_true);
    schema_free(boolean_false);
    (void)state;
}

static void test_numeric_bounds_are_exact(void **state)
{
    /* 2^53 + 1 has no double; comparing through doubles would call it equal to 2^53. */
    struct schema *bounds = compile("{\"maximum\": 9007199254740992, \"minimum\": -5,"
                                    " \"exclusiveMaximum\": 9007199254740993,"
                                    " \"x-jobgate-big-integers\": true}");
    assert_valid(bounds, "9007199254740992");
    assert_fails(bounds, "9007199254740993", "", "maximum");
    assert_valid(bounds, "9007199254740992.0");
    assert_valid(bounds, "-5.0");
    assert_fails(bounds, "-5.000001", "", "minimum");
    assert_valid(bounds, "\"strings are not numbers\"");
    schema_free(bounds);

    struct schema *exclusive = compile("{\"exclusiveMinimum\": 0.5, \"exclusiveMaximum\": 2}");
    assert_fails(exclusive, "0.5", "", "exclusiveMinimum");
    assert_valid(exclusive, "1");
    assert_fails(exclusive, "2.0", "", "exclusiveMaximum");
    schema_free(exclusive);
    (void)state;
}

static void test_multiple_of_is_decimal(void **state)
{
    struct schema *cents = compile("{\"multipleOf\": 0.01}");
    assert_valid(cents, "19.99");
    assert_valid(cents, "0.07");
    assert_valid(cents, "1000000");
    assert_fails(cents, "19.999", "", "multipleOf");
    schema_free(cents);

    struct schema *small = compile("{\"multipleOf\": 0.0001}");
    assert_valid(small, "0.0075");
    assert_invalid(small, "0.00751");
    schema_free(small);

    struct schema *seven = compile("{\"multipleOf\": 7}");
    assert_valid(seven, "-49");
    assert_valid(seven, "49.0");
    assert_invalid(seven, "50");
    assert_invalid(seven, "3.5");
    schema_free(seven);

    struct schema *huge = compile("{\"multipleOf\": 0.123456789}");
    assert_invalid(huge, "1e308");
    schema_free(huge);

    struct problems problems = refuse("{\"multipleOf\": 0}");
    assert_true(has_problem(&problems, "test.json: /multipleOf: must be a number greater than 0"));
    (void)state;
}

static void test_equality_is_json_equality(void **state)
{
    struct schema *one = compile("{\"enum\": [1, \"a\", {\"x\": [1, {\"y\": null}]}]}");
    assert_valid(one, "1.0");
    assert_valid(one, "{\"x\": [1.0, {\"y\": null}]}");
    assert_fails(one, "true", "", "enum");
    assert_invalid(one, "{\"x\": [1, {\"y\": false}]}");
    schema_free(one);

    struct schema *constant = compile("{\"const\": {\"a\": 1, \"b\": [false]}}");
    assert_valid(constant, "{\"b\": [false], \"a\": 1}");
    assert_fails(constant, "{\"a\": 1, \"b\": [0]}", "", "const");
    schema_free(constant);
    (void)state;
}

static void test_string_lengths_count_code_points(void **state)
{
    struct schema *length = compile("{\"minLength\": 2, \"maxLength\": 3}");
    assert_valid(length, "\"h\\u00e9\"");                     /* 2 code points, 3 bytes */
    assert_valid(length, "\"\\ud83d\\udca9\\ud83d\\udca9\""); /* 2 code points, 8 bytes */
    assert_fails(length, "\"\\ud83d\\udca9\"", "", "minLength");
    assert_fails(length, "\"\\u00e9\\u00e9\\u00e9\\u00e9\"", "", "maxLength");
    assert_valid(length, "42");
    schema_free(length);
    (void)state;
}

static void test_pattern_is_ecma(void **state)
{
    /* \d is ASCII as in ECMA: an Arabic-Indic three is not a digit. */
    struct schema *digits = compile("{\"pattern\": \"^\\\\d+$\"}");
    assert_valid(digits, "\"123\"");
    assert_fails(digits, "\"\\u0663\"", "", "pattern");
    /* $ is the very end: no trailing newline slips through. */
    assert_invalid(digits, "\"123\\n\"");
    schema_free(digits);

    struct schema *dot = compile("{\"pattern\": \"^a.c$\"}");
    assert_valid(dot, "\"abc\"");
    assert_invalid(dot, "\"a\\nc\"");
    assert_invalid(dot, "\"a\\rc\"");
    assert_invalid(dot, "\"a\\u2028c\"");
    schema_free(dot);

    struct schema *unanchored = compile("{\"pattern\": \"b+\"}");
    assert_valid(unanchored, "\"abbbc\"");
    schema_free(unanchored);

    struct schema *space = compile("{\"pattern\": \"^\\\\s$\"}");
    assert_valid(space, "\"\\u00a0\"");
    assert_valid(space, "\"\\ufeff\"");
    assert_invalid(space, "\"x\"");
    schema_free(space);

    struct schema *letters = compile("{\"pattern\": \"^\\\\p{Letter}+$\"}");
    assert_valid(letters, "\"\\u03c0x\"");
    assert_invalid(letters, "\"1\"");
    schema_free(letters);

    struct schema *escapes = compile("{\"pattern\": \"^\\\\u00e1[\\\\b]\\\\v$\"}");
    assert_valid(escapes, "\"\\u00e1\\b\\u000b\"");
    schema_free(escapes);
    (void)state;
}

static void test_long_subjects_match(void **state)
{
    /* A group repeated over a whole maximal string needs a deep JIT stack, not a pass
     * and not a budget failure. */
    struct schema *alternating = compile("{\"pattern\": \"^(a|b)+$\"}");
    size_t len = 65536;
    char *text = malloc(len + 1);
    assert_non_null(text);
    for (size_t i = 0; i < len; i++)
        text[i] = "ab"[i % 2];
    json_t *value = json_stringn(text, len);
    assert_int_equal(schema_validate(alternating, value, NULL, 0), 0);
    json_decref(value);
    text[len - 1] = 'c';
    value = json_stringn(text, len);
    assert_int_equal(schema_validate(alternating, value, NULL, 0), 1);
    json_decref(value);
    free(text);
    schema_free(alternating);
    (void)state;
}

static void test_patterns_refused_at_load(void **state)
{
    struct problems problems = refuse("{\"properties\": {\"code\": {\"pattern\": \"(\"}}}");
    assert_true(
        strncmp(problems.text[0], "test.json: /properties/code/pattern: invalid regular", 52) == 0);

    static const char *const not_ecma[] = {
        "{\"pattern\": \"a++\"}",       "{\"pattern\": \"(?i)a\"}",
        "{\"pattern\": \"\\\\Qa\"}",    "{\"pattern\": \"(?>a)\"}",
        "{\"pattern\": \"\\\\Aa\"}",    "{\"pattern\": \"[\\\\S]\"}",
        "{\"pattern\": \"(*ACCEPT)\"}", "{\"patternProperties\": {\"a{2}+\": true}}",
    };
    for (size_t i = 0; i < sizeof not_ecma / sizeof not_ecma[0]; i++) {
        problems = refuse(not_ecma[i]);
        assert_int_equal(problems.count, 1);
    }
    (void)state;
}

static void test_catastrophic_pattern_fails_closed(void **state)
{
    char instance[64];
    memset(instance, 'a', sizeof instance);
    instance[0] = '"';
    instance[sizeof instance - 3] = 'b';
    instance[sizeof instance - 2] = '"';
    instance[sizeof instance - 1] = '\0';

    struct schema *plain = compile("{\"pattern\": \"^(a+)+$\"}");
    assert_fails(plain, instance, "", "pattern");
    schema_free(plain);

    /* Out of budget is a failure even where a failure would otherwise be a pass. */
    struct schema *negated = compile("{\"not\": {\"pattern\": \"^(a+)+$\"}}");
    assert_fails(negated, instance, "", "pattern");
    schema_free(negated);

    struct schema *alternatives = compile("{\"anyOf\": [{\"pattern\": \"^(a+)+$\"}, true]}");
    assert_invalid(alternatives, instance);
    schema_free(alternatives);

    struct schema *names = compile("{\"patternProperties\": {\"^(a+)+$\": true}}");
    char object[96], member[64];
    snprintf(object, sizeof object, "{%s: 1}", instance);
    snprintf(member, sizeof member, "/%.*s", (int)strlen(instance) - 2, instance + 1);
    assert_fails(names, object, member, "patternProperties");
    schema_free(names);
    (void)state;
}

struct format_case {
    const char *text;
    bool valid;
};

static void check_format(enum schema_format format, const struct format_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        bool verdict = schema_format_check(format, cases[i].text, strlen(cases[i].text));
        if (verdict != cases[i].valid)
            fail_msg("format %d: \"%s\" should be %s", (int)format, cases[i].text,
                     cases[i].valid ? "valid" : "invalid");
    }
}

#define CHECK_FORMAT(format, cases) check_format(format, cases, sizeof cases / sizeof cases[0])

static void test_format_dates(void **state)
{
    static const struct format_case dates[] = {
        {"1963-06-19", true},  {"2020-02-29", true},   {"2000-02-29", true},
        {"0400-02-29", true},  {"2021-02-29", false},  {"1900-02-29", false},
        {"2100-02-29", false}, {"2020-04-31", false},  {"2020-12-31", true},
        {"2020-13-01", false}, {"2020-00-10", false},  {"2020-01-00", false},
        {"2020-1-01", false},  {"20200101", false},    {"2020-01-01T00:00:00Z", false},
        {"", false},           {" 2020-01-01", false}, {"2020-01-0\xd9\xa3", false},
    };
    static const struct format_case date_times[] = {
        {"1963-06-19T08:30:06.283185Z", true},
        {"1963-06-19t08:30:06z", true},
        {"1937-01-01T12:00:27.87+00:20", true},
        {"1998-12-31T23:59:60Z", true},
        {"1998-12-31T15:59:60.123-08:00", true},
        {"1998-12-31T23:59:61Z", false},
        {"1998-12-31T23:58:60Z", false},
        {"1998-12-31T22:59:60Z", false},
        {"1990-02-31T15:59:59.123-08:00", false},
        {"1990-12-31T15:59:59-24:00", false},
        {"1990-12-31T10:00:00+10:60", false},
        {"1963-06-19T08:30:06.28123+01:00Z", false},
        {"1990-12-31T24:00:00Z", false},
        {"1963-06-19T08:30:06", false},
        {"1963-06-19T08:30:06.Z", false},
        {"1963-06-19 08:30:06Z", false},
        {"2013-350T01:01:01", false},
    };
    CHECK_FORMAT(SCHEMA_FORMAT_DATE, dates);
    CHECK_FORMAT(SCHEMA_FORMAT_DATE_TIME, date_times);
    (void)state;
}

static void test_format_email(void **state)
{
    static const struct format_case emails[] = {
        {"joe.bloggs@example.com", true},
        {"te~st@example.com", true},
        {"\"joe bloggs\"@example.com", true},
        {"\"joe@bloggs\"@example.com", true},
        {"\"\\\"\"@iana.org", true},
        {"\"\"@iana.org", true},
        {"joe.bloggs@[127.0.0.1]", true},
        {"joe.bloggs@[IPv6:::1]", true},
        {"a@[ipv6:::1]", true},
        {"test@255.255.255.255", true},
        {"test@io", true},
        {"2962", false},
        {".test@example.com", false},
        {"test.@example.com", false},
        {"te..st@example.com", false},
        {"joe.bloggs@invalid=domain.com", false},
        {"joe.bloggs@[127.0.0.300]", false},
        {"a@b@c.org", false},
        {"@example.com", false},
        {"joe@", false},
        {"joe bloggs@example.com", false},
        {"a\xc3\xa9@iana.org", false},
        {"a@\xc3\xa9.org", false},
        {"\"test\\\xc2\xa9\"@iana.org", false},
        {"test@iana.org\n", false},
        {"test@-iana.org", false},
        {"test@iana-.com", false},
        {"test@iana.org.", false},
        {"test@[RFC-5322-domain-literal]", false},
        {"test@a[255.255.255.255]", false},
        {"test(comment)@iana.org", false},
        {"\"test\"test@iana.org", false},
    };
    CHECK_FORMAT(SCHEMA_FORMAT_EMAIL, emails);
    (void)state;
}

static void test_format_uuid_and_addresses(void **state)
{
    static const struct format_case uuids[] = {
        {"2EB8AA08-AA98-11EA-B4AA-73B441D16380", true},
        {"2eb8aa08-aa98-11ea-b4aa-73b441d16380", true},
        {"00000000-0000-0000-0000-000000000000", true},
        {"99c17cbb-656f-f64a-940f-1a4568f03487", true},
        {"2eb8aa08-aa98-11ea-b4aa-73b441d1638", false},
        {"2eb8aa08aa9811eab4aa73b441d16380", false},
        {"2eb8aa08-aa98-11ea-b4ga-73b441d16380", false},
        {"urn:uuid:2eb8aa08-aa98-11ea-b4aa-73b441d16380", false},
    };
    static const struct format_case ipv4s[] = {
        {"192.168.0.1", true},
        {"0.0.0.0", true},
        {"255.255.255.255", true},
        {"127.0.0.0.1", false},
        {"256.256.256.256", false},
        {"127.0", false},
        {"0x7f000001", false},
        {"087.10.0.1", false},
        {"01.2.3.4", false},
        {"192.168.0.1\n", false},
        {"1\xd9\xa3.0.0.1", false},
        {"192.168..1", false},
        {"", false},
    };
    static const struct format_case ipv6s[] = {
        {"::1", true},
        {"::", true},
        {"d6::", true},
        {"1:d6::42", true},
        {"1:2:3:4:5:6:7:8", true},
        {"::ffff:192.168.0.1", true},
        {"1:2::192.168.0.1", true},
        {"1000:1000:1000:1000:1000:1000:255.255.255.255", true},
        {"12345::", false},
        {"1:1:1:1:1:1:1:1:1", false},
        {"::laptop", false},
        {":2:3:4:5:6:7:8", false},
        {"1:2:3:4:5:6:7:", false},
        {"1::d6::42", false},
        {"1:2:3:4:5:::8", false},
        {"1:2:3:4:5:6:7", false},
        {"127.0.0.1", false},
        {"1::2:192.168.256.1", false},
        {"fe80::a%eth1", false},
        {"fe80::/64", false},
        {"100:100:100:100:100:100:100:255.255.255.255", false},
        {" ::1", false},
    };
    CHECK_FORMAT(SCHEMA_FORMAT_UUID, uuids);
    CHECK_FORMAT(SCHEMA_FORMAT_IPV4, ipv4s);
    CHECK_FORMAT(SCHEMA_FORMAT_IPV6, ipv6s);
    (void)state;
}

static void test_format_uri(void **state)
{
    static const struct format_case uris[] = {
        {"http://foo.bar/?baz=qux#quux", true},
        {"http://foo.com/blah_(wikipedia)_blah#cite-1", true},
        {"http://foo.bar/?q=Test%20URL-encoded%20stuff", true},
        {"http://-.~_!$&'()*+,;=:%40:80%2f::::::@example.com", true},
        {"ldap://[2001:db8::7]/c=GB?objectClass?one", true},
        {"mailto:John.Doe@example.com", true},
        {"urn:oasis:names:specification:docbook:dtd:xml:4.1.2", true},
        {"tel:+1-816-555-1212", true},
        {"http://a.com:", true},
        {"http://:80", true},
        {"http://[v1.fe80::a+en1]/", true},
        {"//foo.bar/?baz=qux#quux", false},
        {"/abc", false},
        {"abc", false},
        {"\\\\WINDOWS\\fileshare", false},
        {"http:// shouldfail.com", false},
        {"bar,baz:foo", false},
        {"https://[@example.org/test.txt", false},
        {"https://example.org/foobar\xc2\xae.txt", false},
        {"https://example.org/foo bar.txt", false},
        {"https://example.org/foobar<>.txt", false},
        {"http://example.com/%6G", false},
        {"http://example.com/%", false},
        {"1http://example.com", false},
        {"http://example.com:abc/path", false},
        {"http://a.com::", false},
        {"http://a#b#c", false},
    };
    CHECK_FORMAT(SCHEMA_FORMAT_URI, uris);

    struct schema *schema = compile("{\"properties\": {\"when\": {\"format\": \"date\"}}}");
    assert_fails(schema, "{\"when\": \"2021-02-29\"}", "/when", "format");
    assert_valid(schema, "{\"when\": 20210229}");
    schema_free(schema);
    (void)state;
}

static void test_arrays(void **state)
{
    struct schema *tuple = compile("{\"prefixItems\": [{\"type\": \"string\"}, {\"type\": "
                                   "\"integer\"}], \"items\": false, \"minItems\": 1}");
    assert_valid(tuple, "[\"a\", 1]");
    assert_fails(tuple, "[\"a\", \"b\"]", "/1", "type");
    assert_fails(tuple, "[\"a\", 1, null]", "/2", "items");
    assert_fails(tuple, "[]", "", "minItems");
    schema_free(tuple);

    struct schema *contains = compile("{\"contains\": {\"const\": 1}, \"minContains\": 2, "
                                      "\"maxContains\": 3}");
    assert_fails(contains, "[1, 2]", "", "minContains");
    assert_valid(contains, "[1, 1.0, 2]");
    assert_fails(contains, "[1, 1, 1, 1]", "", "maxContains");
    schema_free(contains);

    struct schema *unique = compile("{\"uniqueItems\": true}");
    assert_valid(unique, "[1, true, \"1\", [1], {\"a\": 1}]");
    assert_fails(unique, "[{\"a\": 1, \"b\": 2}, {\"b\": 2, \"a\": 1.0}]", "", "uniqueItems");
    /* Past 32 items the check sorts by hash: 1 and 1.0 must still collide. */
    char big[1024];
    size_t len = 0;
    len += (size_t)snprintf(big + len, sizeof big - len, "[");
    for (int i = 0; i < 40; i++)
        len += (size_t)snprintf(big + len, sizeof big - len, "%d, ", i + 2);
    snprintf(big + len, sizeof big - len, "{\"k\": [1]}, {\"k\": [1.0]}]");
    assert_fails(unique, big, "", "uniqueItems");
    snprintf(big + len, sizeof big - len, "{\"k\": [1]}, {\"k\": [true]}]");
    assert_valid(unique, big);
    schema_free(unique);
    (void)state;
}

static void test_objects(void **state)
{
    struct schema *object = compile(
        "{\"type\": \"object\", \"required\": [\"name\", \"kind\"],"
        " \"properties\": {\"name\": {\"type\": \"string\"}, \"kind\": {\"enum\": [\"a\", \"b\"]}},"
        " \"patternProperties\": {\"^x-\": {\"type\": \"integer\"}},"
        " \"additionalProperties\": false, \"propertyNames\": {\"maxLength\": 8},"
        " \"dependentRequired\": {\"x-start\": [\"x-end\"]},"
        " \"dependentSchemas\": {\"x-end\": {\"required\": [\"x-start\"]}},"
        " \"maxProperties\": 4}");
    assert_valid(object, "{\"name\": \"n\", \"kind\": \"a\"}");
    assert_valid(object, "{\"name\": \"n\", \"kind\": \"a\", \"x-start\": 1, \"x-end\": 2}");
    assert_fails(object, "{\"name\": \"n\"}", "/kind", "required");
    assert_fails(object, "{\"name\": \"n\", \"kind\": \"a\", \"other\": 1}", "/other",
                 "additionalProperties");
    assert_fails(object, "{\"name\": \"n\", \"kind\": \"a\", \"x-a\": \"s\"}", "/x-a", "type");
    assert_fails(object, "{\"name\": \"n\", \"kind\": \"a\", \"x-start\": 1}", "/x-end",
                 "dependentRequired");
    assert_fails(object, "{\"name\": \"n\", \"kind\": \"a\", \"x-end\": 1}", "/x-start",
                 "required");
    assert_fails(object, "{\"name\": \"n\", \"kind\": \"a\", \"x-longname\": 1}", "/x-longname",
                 "propertyNames");
    assert_fails(object, "[]", "", "type");
    schema_free(object);

    struct schema *sizes = compile("{\"minProperties\": 1, \"maxProperties\": 1.0}");
    assert_fails(sizes, "{}", "", "minProperties");
    assert_fails(sizes, "{\"a\": 1, \"b\": 2}", "", "maxProperties");
    schema_free(sizes);
    (void)state;
}

static void test_combinators(void **state)
{
    struct schema *any = compile("{\"anyOf\": [{\"type\": \"string\"}, {\"minimum\": 10}]}");
    assert_valid(any, "\"s\"");
    assert_valid(any, "11");
    assert_fails(any, "1", "", "anyOf");
    schema_free(any);

    struct schema *one = compile("{\"oneOf\": [{\"multipleOf\": 2}, {\"multipleOf\": 3}]}");
    assert_valid(one, "4");
    assert_fails(one, "6", "", "oneOf");
    assert_fails(one, "7", "", "oneOf");
    schema_free(one);

    struct schema *negated = compile("{\"not\": {\"type\": \"null\"}}");
    assert_valid(negated, "0");
    assert_fails(negated, "null", "", "not");
    schema_free(negated);

    struct schema *conditional = compile("{\"if\": {\"properties\": {\"kind\": {\"const\": "
                                         "\"card\"}}}, \"then\": {\"required\": [\"card\"]}, "
                                         "\"else\": {\"required\": [\"iban\"]}}");
    assert_valid(conditional, "{\"kind\": \"card\", \"card\": 1}");
    assert_fails(conditional, "{\"kind\": \"card\"}", "/card", "required");
    assert_fails(conditional, "{\"kind\": \"bank\"}", "/iban", "required");
    schema_free(conditional);

    struct schema *all = compile("{\"allOf\": [{\"minLength\": 2}, {\"maxLength\": 3}]}");
    assert_valid(all, "\"abc\"");
    assert_fails(all, "\"abcd\"", "", "maxLength");
    schema_free(all);
    (void)state;
}

static void test_refs(void **state)
{
    struct schema *escaped =
        compile("{\"$defs\": {\"a/b\": {\"type\": \"integer\"}, \"c~d\": {\"type\": \"string\"},"
                " \"e%f\": {\"type\": \"null\"}},"
                " \"properties\": {\"x\": {\"$ref\": \"#/$defs/a~1b\"}, \"y\": {\"$ref\": "
                "\"#/$defs/c~0d\"}, \"z\": {\"$ref\": \"#/$defs/e%25f\"}}}");
    assert_valid(escaped, "{\"x\": 1, \"y\": \"s\", \"z\": null}");
    assert_fails(escaped, "{\"x\": \"s\"}", "/x", "type");
    assert_fails(escaped, "{\"z\": 1}", "/z", "type");
    schema_free(escaped);

    /* A tree: recursion through $ref compiles once and follows the instance's depth. */
    struct schema *tree =
        compile("{\"$id\": \"urn:example:tree\", \"type\": \"object\", \"required\": "
                "[\"value\"], \"properties\": {\"value\": {\"type\": \"integer\"}, "
                "\"children\": {\"type\": \"array\", \"items\": {\"$ref\": \"#\"}}, "
                "\"same\": {\"$ref\": \"urn:example:tree\"}}}");
    assert_valid(tree, "{\"value\": 1, \"children\": [{\"value\": 2, \"children\": "
                       "[{\"value\": 3}]}], \"same\": {\"value\": 4}}");
    assert_fails(tree,
                 "{\"value\": 1, \"children\": [{\"value\": 2, \"children\": "
                 "[{\"value\": \"three\"}]}]}",
                 "/children/0/children/0/value", "type");
    schema_free(tree);

    struct schema *inside = compile("{\"$defs\": {\"pair\": {\"prefixItems\": [{\"type\": "
                                    "\"integer\"}, {\"$ref\": \"#/$defs/pair/prefixItems/0\"}]}},"
                                    " \"$ref\": \"#/$defs/pair\"}");
    assert_valid(inside, "[1, 2]");
    assert_fails(inside, "[1, \"2\"]", "/1", "type");
    schema_free(inside);
    (void)state;
}

static void test_ref_problems_at_load(void **state)
{
    struct problems problems = refuse("{\"properties\": {\"a\": {\"$ref\": \"#/$defs/missing\"}}}");
    assert_true(has_problem(
        &problems, "test.json: /properties/a/$ref: $ref points to nothing in this document"));

    problems = refuse("{\"$ref\": \"#\"}");
    assert_true(has_problem(&problems, "test.json: /: this subschema applies itself to the same "
                                       "value (through $ref) without end"));

    problems = refuse("{\"$defs\": {\"a\": {\"allOf\": [{\"$ref\": \"#/$defs/b\"}]}, "
                      "\"b\": {\"anyOf\": [{\"$ref\": \"#/$defs/a\"}]}}, \"$ref\": \"#/$defs/a\"}");
    assert_int_equal(problems.count, 1);

    problems = refuse("{\"$ref\": \"other.json#/$defs/a\"}");
    assert_true(has_problem(&problems, "test.json: /$ref: unsupported feature: remote $ref (only "
                                       "\"#\" and a JSON Pointer, or the root $id, are resolved)"));

    problems = refuse("{\"$ref\": \"#name\"}");
    assert_true(has_problem(
        &problems,
        "test.json: /$ref: unsupported feature: $anchor (a $ref to a plain-name fragment)"));

    problems = refuse("{\"$ref\": \"#/$defs/a%zz\"}");
    assert_true(has_problem(&problems, "test.json: /$ref: $ref has a malformed %-escape"));
    (void)state;
}

static void test_load_problems_name_pointers(void **state)
{
    struct problems problems =
        refuse("{\"type\": \"object\", \"properties\": {"
               " \"name\": {\"type\": \"string\", \"minLenght\": 1},"
               " \"code\": {\"pattern\": \"[a-\"},"
               " \"when\": {\"format\": \"time\"},"
               " \"count\": {\"minimum\": \"1\", \"maxItems\": -1, \"type\": \"strin\"},"
               " \"a/b\": {\"required\": \"x\", \"enum\": {}},"
               " \"token\": {\"secret\": true},"
               " \"deep\": {\"$id\": \"urn:x\", \"unevaluatedProperties\": false}"
               "}}");
    assert_true(has_problem(&problems, "test.json: /properties/name/minLenght: unknown keyword"));
    assert_true(has_problem(
        &problems, "test.json: /properties/when/format: unknown format: jobgate asserts date-time, "
                   "date, email, uuid, uri, ipv4 and ipv6"));
    assert_true(has_problem(&problems, "test.json: /properties/count/minimum: must be a number"));
    assert_true(has_problem(
        &problems, "test.json: /properties/count/maxItems: must be a non-negative integer"));
    assert_true(has_problem(&problems, "test.json: /properties/a~1b/required: must be an array of "
                                       "distinct strings"));
    assert_true(has_problem(&problems, "test.json: /properties/a~1b/enum: must be an array"));
    assert_true(has_problem(&problems, "test.json: /properties/token: \"secret\": true needs "
                                       "\"type\": \"string\" (or [\"string\", \"null\"]) in the "
                                       "same schema"));
    assert_true(has_problem(&problems, "test.json: /properties/deep/$id: unsupported feature: "
                                       "$id-based resolution ($id below the root)"));
    assert_true(has_problem(&problems, "test.json: /properties/deep/unevaluatedProperties: "
                                       "unsupported feature: unevaluatedProperties"));
    /* All of them, not just the first. */
    assert_int_equal(problems.count, 11);

    problems = refuse("{\"$schema\": \"http://json-schema.org/draft-07/schema#\"}");
    assert_int_equal(problems.count, 1);
    problems = refuse("{\"properties\": {\"a\": {\"$schema\": \""
                      "https://json-schema.org/"
                      "draft/2020-12/schema\"}}}");
    assert_true(has_problem(
        &problems, "test.json: /properties/a/$schema: $schema is allowed at the root only"));
    problems = refuse("{\"allOf\": []}");
    assert_true(has_problem(&problems, "test.json: /allOf: must be a non-empty array of schemas"));
    problems = refuse("[]");
    assert_true(has_problem(&problems, "test.json: /: a schema must be an object or a boolean"));

    struct schema *annotated = compile(
        "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"$id\": \"urn:a\","
        " \"title\": \"t\", \"description\": \"d\", \"$comment\": \"c\", \"default\": 1,"
        " \"examples\": [1], \"deprecated\": false, \"readOnly\": true, \"writeOnly\": false}");
    assert_valid(annotated, "1");
    schema_free(annotated);
    (void)state;
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/jobgate-schema-XXXXXX";
    int descriptor = mkstemp(path);
    assert_true(descriptor >= 0);
    static const char duplicated[] = "{\"type\": \"object\", \"type\": \"string\"}";
    assert_int_equal(write(descriptor, duplicated, sizeof duplicated - 1),
                     (ssize_t)(sizeof duplicated - 1));
    close(descriptor);

    struct problems problems = {0};
    assert_null(schema_load_file(path, NULL, collect_problem, &problems));
    assert_int_equal(problems.count, 1);
    assert_true(strncmp(problems.text[0], path, strlen(path)) == 0);
    assert_non_null(strstr(problems.text[0], "duplicate"));

    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs("{\"properties\": {\"a\": {\"type\": \"integer\"}}}", file);
    fclose(file);
    struct schema *schema = schema_load_file(path, NULL, collect_problem, &problems);
    assert_non_null(schema);
    assert_valid(schema, "{\"a\": 1}");
    schema_free(schema);
    unlink(path);

    problems.count = 0;
    assert_null(schema_load_file(path, NULL, collect_problem, &problems));
    assert_int_equal(problems.count, 1);
    assert_non_null(strstr(problems.text[0], "cannot open"));
    (void)state;
}

/* A JSON text of depth containers nested: [[[...]]] */
static char *nested_arrays(size_t depth)
{
    char *text = malloc(2 * depth + 1);
    assert_non_null(text);
    memset(text, '[', depth);
    memset(text + depth, ']', depth);
    text[2 * depth] = '\0';
    return text;
}

static void test_limits(void **state)
{
    struct schema *anything = compile("true");

    char *text = nested_arrays(32);
    assert_valid(anything, text);
    free(text);
    text = nested_arrays(33);
    char pointer[2 * 32 + 1];
    for (int i = 0; i < 32; i++)
        memcpy(pointer + 2 * i, "/0", 2);
    pointer[2 * 32] = '\0';
    assert_fails(anything, text, pointer, "maxDepth");
    free(text);

    size_t len = 65536;
    text = malloc(len * 2 + 16);
    assert_non_null(text);
    /* 65536 code points of two bytes each: over the limit in bytes, not in code points. */
    memcpy(text, "{\"s\": \"", 7);
    for (size_t i = 0; i < len; i++)
        memcpy(text + 7 + 2 * i, "\xc3\xa9", 2);
    memcpy(text + 7 + 2 * len, "\"}", 3);
    assert_valid(anything, text);
    memcpy(text + 7 + 2 * len, "x\"}", 4);
    assert_fails(anything, text, "/s", "maxStringLength");
    free(text);

    json_t *array = json_array();
    for (int i = 0; i < 10000; i++)
        json_array_append_new(array, json_integer(i));
    assert_int_equal(schema_validate(anything, array, NULL, 0), 0);
    json_array_append_new(array, json_integer(0));
    struct schema_error errors[4];
    assert_int_equal(schema_validate(anything, array, errors, 4), 1);
    assert_string_equal(errors[0].keyword, "maxArrayItems");
    json_decref(array);

    json_t *object = json_object();
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        json_object_set_new(object, key, json_null());
    }
    assert_int_equal(schema_validate(anything, object, NULL, 0), 0);
    json_object_set_new(object, "one-more", json_null());
    assert_int_equal(schema_validate(anything, object, errors, 4), 1);
    assert_string_equal(errors[0].keyword, "maxObjectMembers");
    json_decref(object);

    assert_valid(anything, "[9007199254740991, -9007199254740991]");
    assert_fails(anything, "[1, {\"n\": 9007199254740992}]", "/1/n", "maxInteger");
    assert_fails(anything, "-9007199254740992", "", "maxInteger");
    /* Every double past 2^53 is a whole number, maybe not the one written: limited too. */
    assert_fails(anything, "9007199254740993.0", "", "maxInteger");
    assert_fails(anything, "[0.5, 1e300]", "/1", "maxInteger");
    assert_valid(anything, "[9007199254740991.0, 0.1, -2.5e-300]");
    schema_free(anything);

    /* A limit failure stops before the schema: only the limit is reported. */
    struct schema *strict = compile("{\"type\": \"string\"}");
    assert_int_equal(check(strict, "{\"n\": 9007199254740992}", errors, 4), 1);
    assert_string_equal(errors[0].keyword, "maxInteger");
    schema_free(strict);
    (void)state;
}

static void test_limits_are_configurable(void **state)
{
    struct schema_limits limits = schema_default_limits;
    limits.max_depth = 2;
    limits.max_string_length = 3;
    limits.max_array_items = 2;
    limits.max_object_members = 1;
    limits.max_integer = 100;
    struct problems problems = {0};
    struct schema *schema = compile_with("true", &limits, &problems);
    assert_non_null(schema);
    assert_valid(schema, "[[\"abc\", 100]]");
    assert_fails(schema, "[[[]]]", "/0/0", "maxDepth");
    assert_fails(schema, "[\"abcd\"]", "/0", "maxStringLength");
    assert_fails(schema, "{\"abcd\": 1}", "/abcd", "maxStringLength");
    assert_fails(schema, "[1, 2, 3]", "", "maxArrayItems");
    assert_fails(schema, "{\"a\": 1, \"b\": 2}", "", "maxObjectMembers");
    assert_fails(schema, "-101", "", "maxInteger");
    schema_free(schema);

    limits = schema_default_limits;
    limits.max_evaluations = 5;
    problems.count = 0;
    schema = compile_with("{\"items\": {\"type\": \"integer\"}}", &limits, &problems);
    assert_non_null(schema);
    assert_valid(schema, "[1, 2, 3]");
    assert_fails(schema, "[1, 2, 3, 4, 5, 6]", "/4", "maxEvaluations");
    schema_free(schema);
    (void)state;
}

static void test_big_integers_where_the_schema_allows(void **state)
{
    struct schema *schema = compile(
        "{\"properties\": {\"id\": {\"type\": \"integer\", \"x-jobgate-big-integers\": true},"
        " \"count\": {\"type\": \"integer\"},"
        " \"either\": {\"anyOf\": [{\"type\": \"string\", \"x-jobgate-big-integers\": true},"
        " {\"type\": \"integer\"}]}}}");
    assert_valid(schema, "{\"id\": 9223372036854775807, \"count\": 1}");
    assert_valid(schema, "{\"id\": 1e20}");
    assert_fails(schema, "{\"id\": 1, \"count\": 9007199254740992}", "/count", "maxInteger");
    /* An allowance inside a branch that failed allows nothing. */
    assert_fails(schema, "{\"either\": 9007199254740992}", "/either", "maxInteger");
    /* Schema failures and integer failures are both reported. */
    struct schema_error errors[4];
    assert_int_equal(check(schema, "{\"id\": \"x\", \"count\": 9007199254740992}", errors, 4), 2);
    schema_free(schema);
    (void)state;
}

static void test_error_pointers(void **state)
{
    struct schema *schema = compile(
        "{\"type\": \"object\", \"properties\": {\"args\": {\"type\": \"array\", \"items\": "
        "{\"type\": \"object\", \"required\": [\"name\"], \"properties\": {"
        "\"email\": {\"type\": \"string\", \"format\": \"email\"}, \"name\": {}}}}, "
        "\"a/b~c\": {\"type\": \"null\"}}}");
    assert_fails(schema, "{\"args\": [{\"email\": \"nope\", \"name\": 1}]}", "/args/0/email",
                 "format");
    assert_fails(schema, "{\"args\": [{\"name\": 1}, {\"email\": \"a@b.c\"}]}", "/args/1/name",
                 "required");
    assert_fails(schema, "{\"a/b~c\": 1}", "/a~1b~0c", "type");

    /* The total counts every failure; only max_errors are recorded. */
    struct schema_error errors[2];
    size_t failures =
        check(schema, "{\"args\": [{\"email\": 1}, {\"email\": 2}, {\"email\": 3}]}", errors, 2);
    assert_int_equal(failures, 6);
    assert_string_equal(errors[0].pointer, "/args/0/email");
    assert_string_equal(errors[1].pointer, "/args/0/name");
    schema_free(schema);

    /* A pointer too long for the buffer is cut after a whole segment, and says so. */
    struct schema *anything = compile("{\"additionalProperties\": false}");
    char long_key[600];
    memset(long_key, 'k', sizeof long_key);
    long_key[sizeof long_key - 1] = '\0';
    json_t *instance = json_pack("{s:i}", long_key, 1);
    struct schema_error error;
    assert_int_equal(schema_validate(anything, instance, &error, 1), 1);
    assert_true(error.pointer_truncated);
    assert_string_equal(error.pointer, "");
    json_decref(instance);
    schema_free(anything);
    (void)state;
}

static void test_messages_never_carry_values(void **state)
{
    struct schema *schema = compile(
        "{\"type\": \"object\", \"properties\": {"
        " \"a\": {\"pattern\": \"^x$\"}, \"b\": {\"enum\": [\"x\"]}, \"c\": {\"const\": \"x\"},"
        " \"d\": {\"format\": \"email\"}, \"e\": {\"maxLength\": 3}, \"f\": {\"type\": "
        "\"integer\"},"
        " \"g\": {\"not\": {\"type\": \"string\"}}, \"h\": {\"anyOf\": [{\"type\": \"null\"}]},"
        " \"i\": {\"format\": \"uri\"}, \"j\": {\"format\": \"date-time\"},"
        " \"k\": {\"items\": {\"const\": 1}}, \"l\": {\"uniqueItems\": true}},"
        " \"additionalProperties\": {\"type\": \"integer\"}}");
    static const char instance[] =
        "{\"a\": \"" CANARY "\", \"b\": \"" CANARY "\", \"c\": \"" CANARY "\", \"d\": \"" CANARY
        "\", \"e\": \"" CANARY "\", \"f\": \"" CANARY "\", \"g\": \"" CANARY "\", \"h\": \"" CANARY
        "\", \"i\": \"" CANARY "\", \"j\": \"" CANARY "\", \"k\": [\"" CANARY
        "\"], \"l\": [\"" CANARY "\", \"" CANARY "\"], \"z\": \"" CANARY "\"}";
    struct schema_error errors[MAX_ERRORS];
    size_t failures = check(schema, instance, errors, MAX_ERRORS);
    assert_int_equal(failures, 13);
    for (size_t i = 0; i < failures; i++) {
        assert_null(strstr(errors[i].message, "CANARY"));
        assert_null(strstr(errors[i].keyword, "CANARY"));
        assert_null(strstr(errors[i].pointer, "CANARY"));
    }
    schema_free(schema);
    (void)state;
}

struct found_secrets {
    size_t count;
    char pointers[8][64];
    int stop_after;
};

static int collect_secret(void *data, const struct schema_secret *secret)
{
    struct found_secrets *found = data;
    assert_true(json_is_string(secret->value));
    if (found->count < 8)
        snprintf(found->pointers[found->count], sizeof found->pointers[0], "%s", secret->pointer);
    found->count++;
    /* Sealing replaces the value in its parent; enumeration must survive that. */
    assert_int_equal(schema_secret_replace(secret, json_pack("{s:b}", "sealed", 1)), 0);
    return found->stop_after != 0 && (int)found->count == found->stop_after ? 7 : 0;
}

static void test_secret_enumeration(void **state)
{
    struct schema *schema = compile(
        "{\"$defs\": {\"token\": {\"type\": \"string\", \"secret\": true}},"
        " \"type\": \"array\", \"prefixItems\": [{\"type\": \"object\", \"properties\": {"
        "  \"card\": {\"$ref\": \"#/$defs/token\"},"
        "  \"pins\": {\"items\": {\"type\": [\"string\", \"null\"], \"secret\": true}},"
        "  \"a/b\": {\"allOf\": [{\"$ref\": \"#/$defs/token\"}, {\"$ref\": \"#/$defs/token\"}]},"
        "  \"either\": {\"anyOf\": [{\"type\": \"string\", \"secret\": true, \"pattern\": "
        "\"^tok_\"}, {\"type\": \"string\"}]},"
        "  \"plain\": {\"type\": \"string\"}}}]}");
    assert_true(schema_has_secrets(schema));

    json_t *instance = parse("[{\"plain\": \"p\", \"card\": \"4242\", \"pins\": [\"1\", null, "
                             "\"2\"], \"a/b\": \"x\", \"either\": \"abc\"}]");
    struct found_secrets found = {0};
    assert_int_equal(schema_each_secret(schema, instance, collect_secret, &found), 0);
    assert_int_equal(found.count, 4);
    assert_string_equal(found.pointers[0], "/0/card");
    assert_string_equal(found.pointers[1], "/0/pins/0");
    assert_string_equal(found.pointers[2], "/0/pins/2");
    assert_string_equal(found.pointers[3], "/0/a~1b");
    json_t *first = json_array_get(instance, 0);
    assert_true(json_is_true(json_object_get(json_object_get(first, "card"), "sealed")));
    assert_true(
        json_is_true(json_object_get(json_array_get(json_object_get(first, "pins"), 2), "sealed")));
    assert_string_equal(json_string_value(json_object_get(first, "plain")), "p");
    json_decref(instance);

    /* The anyOf branch that marks a secret counts only where it passes. */
    instance = parse("[{\"either\": \"tok_123\"}]");
    found = (struct found_secrets){0};
    assert_int_equal(schema_each_secret(schema, instance, collect_secret, &found), 0);
    assert_int_equal(found.count, 1);
    assert_string_equal(found.pointers[0], "/0/either");
    json_decref(instance);

    /* An invalid instance is refused before any callback. */
    instance = parse("[{\"card\": 1}]");
    found = (struct found_secrets){0};
    assert_int_equal(schema_each_secret(schema, instance, collect_secret, &found), -1);
    assert_int_equal(found.count, 0);
    json_decref(instance);

    /* The callback can stop the enumeration. */
    instance = parse("[{\"card\": \"1\", \"pins\": [\"2\", \"3\"]}]");
    found = (struct found_secrets){.stop_after = 2};
    assert_int_equal(schema_each_secret(schema, instance, collect_secret, &found), 7);
    assert_int_equal(found.count, 2);
    json_decref(instance);
    schema_free(schema);

    /* A secret whose pointer would not fit is refused, not passed over. */
    struct schema *deep = compile("{\"additionalProperties\": {\"type\": \"string\", "
                                  "\"secret\": true}}");
    char long_key[SCHEMA_MAX_SECRET_POINTER + 8];
    memset(long_key, 'k', sizeof long_key);
    long_key[sizeof long_key - 1] = '\0';
    instance = json_pack("{s:s}", long_key, "secret");
    found = (struct found_secrets){0};
    assert_int_equal(schema_each_secret(deep, instance, collect_secret, &found), -1);
    assert_int_equal(found.count, 0);
    json_decref(instance);
    schema_free(deep);

    struct schema *plain = compile("{\"type\": \"string\"}");
    assert_false(schema_has_secrets(plain));
    instance = parse("\"x\"");
    assert_int_equal(schema_each_secret(plain, instance, collect_secret, &found), 0);
    json_decref(instance);
    schema_free(plain);
    (void)state;
}

static void test_schema_outlives_its_document(void **state)
{
    json_t *document = parse("{\"enum\": [\"a\", \"b\"], \"properties\": {\"x\": {\"const\": 1}}}");
    struct schema *schema = schema_compile(document, "test.json", NULL, NULL, NULL);
    assert_non_null(schema);
    json_object_clear(document);
    json_decref(document);
    assert_valid(schema, "\"a\"");
    assert_invalid(schema, "\"c\"");
    schema_free(schema);
    schema_free(NULL);
    (void)state;
}

struct worker {
    const struct schema *schema;
    size_t wrong;
};

static void *validate_many(void *argument)
{
    struct worker *worker = argument;
    json_t *good = json_string("INV-2024-000042");
    json_t *bad = json_string("INV-24");
    for (int i = 0; i < 2000; i++) {
        worker->wrong += schema_validate(worker->schema, good, NULL, 0) != 0;
        worker->wrong += schema_validate(worker->schema, bad, NULL, 0) != 1;
    }
    json_decref(good);
    json_decref(bad);
    return NULL;
}

static void test_threads_share_a_schema(void **state)
{
    struct schema *schema = compile("{\"pattern\": \"^INV-[0-9]{4}-[0-9]{6}$\"}");
    struct worker workers[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        workers[i] = (struct worker){.schema = schema};
        assert_int_equal(pthread_create(&threads[i], NULL, validate_many, &workers[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(workers[i].wrong, 0);
    }
    schema_free(schema);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_and_json_numbers),
        cmocka_unit_test(test_numeric_bounds_are_exact),
        cmocka_unit_test(test_multiple_of_is_decimal),
        cmocka_unit_test(test_equality_is_json_equality),
        cmocka_unit_test(test_string_lengths_count_code_points),
        cmocka_unit_test(test_pattern_is_ecma),
        cmocka_unit_test(test_long_subjects_match),
        cmocka_unit_test(test_patterns_refused_at_load),
        cmocka_unit_test(test_catastrophic_pattern_fails_closed),
        cmocka_unit_test(test_format_dates),
        cmocka_unit_test(test_format_email),
        cmocka_unit_test(test_format_uuid_and_addresses),
        cmocka_unit_test(test_format_uri),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_combinators),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_ref_problems_at_load),
        cmocka_unit_test(test_load_problems_name_pointers),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_limits_are_configurable),
        cmocka_unit_test(test_big_integers_where_the_schema_allows),
        cmocka_unit_test(test_error_pointers),
        cmocka_unit_test(test_messages_never_carry_values),
        cmocka_unit_test(test_secret_enumeration),
        cmocka_unit_test(test_schema_outlives_its_document),
        cmocka_unit_test(test_threads_share_a_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
