/*
 * schema_bench: microseconds per schema_validate for a typical job's arguments, a
 * 10-member object with patterns, formats, bounded integers, an enum, a nested object
 * and an array; also an invalid instance (errors recorded) and secret enumeration.
 * Build with `make $(BUILD)/schema_bench`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>

#include "schema.h"

#define ITERATIONS 1000000

static const char schema_text[] =
    "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\","
    " \"type\": \"object\","
    " \"required\": [\"id\", \"email\", \"amount\", \"currency\", \"customer\", \"items\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {"
    "  \"id\": {\"type\": \"string\", \"format\": \"uuid\"},"
    "  \"email\": {\"type\": \"string\", \"format\": \"email\", \"maxLength\": 254},"
    "  \"amount\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 100000000},"
    "  \"currency\": {\"enum\": [\"EUR\", \"USD\", \"GBP\", \"JPY\"]},"
    "  \"reference\": {\"type\": \"string\", \"pattern\": \"^INV-[0-9]{4}-[0-9]{6}$\"},"
    "  \"created_at\": {\"type\": \"string\", \"format\": \"date-time\"},"
    "  \"quantity\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 1000},"
    "  \"card_token\": {\"type\": \"string\", \"secret\": true, \"minLength\": 8},"
    "  \"customer\": {\"type\": \"object\", \"required\": [\"name\", \"country\"],"
    "   \"additionalProperties\": false, \"properties\": {"
    "    \"name\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 200},"
    "    \"country\": {\"type\": \"string\", \"pattern\": \"^[A-Z]{2}$\"}}},"
    "  \"items\": {\"type\": \"array\", \"minItems\": 1, \"maxItems\": 100,"
    "   \"items\": {\"type\": \"string\", \"maxLength\": 64}}}}";

static const char valid_text[] =
    "{\"id\": \"2eb8aa08-aa98-11ea-b4aa-73b441d16380\", \"email\": \"billing@example.com\","
    " \"amount\": 1999, \"currency\": \"EUR\", \"reference\": \"INV-2024-000042\","
    " \"created_at\": \"2024-03-01T12:30:00Z\", \"quantity\": 3,"
    " \"card_token\": \"tok_4242424242\","
    " \"customer\": {\"name\": \"Acme GmbH\", \"country\": \"DE\"},"
    " \"items\": [\"sku-1\", \"sku-2\", \"sku-3\"]}";

static const char invalid_text[] =
    "{\"id\": \"not-a-uuid\", \"email\": \"billing@@example.com\","
    " \"amount\": 0, \"currency\": \"XXX\", \"reference\": \"INV-24\","
    " \"created_at\": \"2024-02-30T12:30:00Z\", \"quantity\": 3000,"
    " \"card_token\": \"tok\","
    " \"customer\": {\"name\": \"\", \"country\": \"de\"},"
    " \"items\": []}";

static double now_microseconds(void)
{
    struct timespec clock;
    clock_gettime(CLOCK_MONOTONIC, &clock);
    return (double)clock.tv_sec * 1e6 + (double)clock.tv_nsec / 1e3;
}

static void report(void *data, const char *message)
{
    (void)data;
    fprintf(stderr, "%s\n", message);
}

static int count_secret(void *data, const struct schema_secret *secret)
{
    (void)secret;
    (*(size_t *)data)++;
    return 0;
}

static json_t *parse(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, JSON_REJECT_DUPLICATES, &error);
    if (value == NULL)
        fprintf(stderr, "bench JSON: %s\n", error.text);
    return value;
}

static int measure_validate(const char *label, const struct schema *schema, const json_t *instance,
                            size_t expected_failures)
{
    struct schema_error errors[16];
    if (schema_validate(schema, instance, errors, 16) != expected_failures) {
        fprintf(stderr, "%s: unexpected verdict\n", label);
        return -1;
    }
    double start = now_microseconds();
    for (int i = 0; i < ITERATIONS; i++) {
        if (schema_validate(schema, instance, errors, 16) != expected_failures)
            return -1;
    }
    double elapsed = now_microseconds() - start;
    printf("%-22s %7.3f us/validation  (%d runs)\n", label, elapsed / ITERATIONS, ITERATIONS);
    return 0;
}

static int measure_secrets(const struct schema *schema, json_t *instance)
{
    size_t secrets = 0;
    if (schema_each_secret(schema, instance, count_secret, &secrets) != 0 || secrets != 1) {
        fprintf(stderr, "secrets: unexpected result\n");
        return -1;
    }
    double start = now_microseconds();
    for (int i = 0; i < ITERATIONS; i++) {
        if (schema_each_secret(schema, instance, count_secret, &secrets) != 0)
            return -1;
    }
    double elapsed = now_microseconds() - start;
    printf("%-22s %7.3f us/enumeration  (%d runs)\n", "each secret", elapsed / ITERATIONS,
           ITERATIONS);
    return 0;
}

int main(void)
{
    json_t *document = parse(schema_text);
    json_t *valid = parse(valid_text);
    json_t *invalid = parse(invalid_text);
    struct schema *schema =
        document != NULL ? schema_compile(document, "bench", NULL, report, NULL) : NULL;
    int status = 1;
    if (schema != NULL && valid != NULL && invalid != NULL &&
        measure_validate("valid, 10 members", schema, valid, 0) == 0 &&
        measure_validate("invalid, 11 failures", schema, invalid, 11) == 0 &&
        measure_secrets(schema, valid) == 0)
        status = 0;
    schema_free(schema);
    json_decref(document);
    json_decref(valid);
    json_decref(invalid);
    return status;
}
