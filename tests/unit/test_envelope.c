/*
 * Unit tests for envelope: a job built as the gateway builds it opens, with its original
 * arguments, in the C worker kit (envelope_open); the payload is what Resque writes and
 * holds no secret in the clear; every refusal of workers/ENVELOPE.md is reached by one
 * small change to a good job; and a build that runs out of memory says so and frees
 * what it took.
 *
 * As in tests/vectors/make_vectors.c, a change a forger could not sign is re-signed with
 * the signing key, so that only the check it is about can refuse it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <malloc.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "jcs.h"
#include "job.h"
#include "schema.h"
#include "seal.h"

#include "failing_allocator.h"

#define ISSUED_AT ((int64_t)1796320800)
#define LIFETIME ((int64_t)7 * 24 * 3600)
#define CHECKED_AT (ISSUED_AT + 3600)
#define JOB_ID "01a23d8c-0000-7000-8000-000000000001"
#define WORKERS_KID "workers-2026"

/*
 * card_token, every entry of cards and "a/b~c" (a name a pointer must escape) are secret;
 * integers past 2^53 are allowed.
 */
static const char secret_schema_source[] =
    "{\"type\": \"array\", \"prefixItems\": [{\"type\": \"object\", \"properties\": {"
    " \"card_token\": {\"type\": \"string\", \"secret\": true},"
    " \"cards\": {\"type\": \"array\", \"items\": {\"type\": \"string\", \"secret\": true}},"
    " \"a/b~c\": {\"type\": \"string\", \"secret\": true},"
    " \"numbers\": {\"items\": {\"x-jobgate-big-integers\": true}}}}],"
    " \"items\": {\"x-jobgate-big-integers\": true}}";

static const char plain_schema_source[] = "{\"type\": \"array\"}";

/* Secrets all start with "tok_SECRET" so that a search of the payload finds any of them. */
#define INVOICE_ARGS                                                                               \
    "[{\"invoice_id\":\"inv-1042\",\"amount\":19.99,\"card_token\":\"tok_SECRET_card\","           \
    "\"cards\":[\"tok_SECRET_a\",\"\",\"tok_SECRET_\\u00e9\"],\"note\":\"na\\u00efve \\\"q\\\"\"," \
    "\"a/b~c\":\"tok_SECRET_escaped\"},\"second\",7,null]"
#define INVOICE_BODY "{\"class\":\"SendInvoice\",\"args\":" INVOICE_ARGS "}"

static struct {
    struct envelope_signer current, previous, retired;
    struct keyfile_key signing[2];  /* the public keys of current and previous */
    struct keyfile_key sealing[1];  /* the workers' secret key */
    struct keyfile_key impostor[1]; /* another secret key under the workers' kid */
    unsigned char workers_public[SEAL_KEY_BYTES];
    struct sealer *sealer;
    struct schema *secret_schema, *plain_schema;
    struct envelope_batch *batch; /* as a gateway worker keeps one */
} keys;

static const struct envelope_keyring keyring = {keys.signing, 2, keys.sealing, 1};

static void make_signer(struct envelope_signer *signer, const char *kid,
                        struct keyfile_key *public_key)
{
    unsigned char ignored[crypto_sign_PUBLICKEYBYTES];

    assert_true((size_t)snprintf(signer->kid, sizeof(signer->kid), "%s", kid) <
                sizeof(signer->kid));
    crypto_sign_keypair(public_key != NULL ? public_key->key : ignored, signer->secret_key);
    if (public_key != NULL)
        memcpy(public_key->kid, signer->kid, sizeof(public_key->kid));
}

static struct schema *compile(const char *source)
{
    json_error_t error;
    json_t *document = json_loads(source, JSON_REJECT_DUPLICATES, &error);
    struct schema *schema;

    if (document == NULL)
        fail_msg("test schema does not parse: %s", error.text);
    schema = schema_compile(document, "test", NULL, NULL, NULL);
    json_decref(document);
    assert_non_null(schema);
    return schema;
}

static int group_setup(void **state)
{
    unsigned char other_public[SEAL_KEY_BYTES];

    (void)state;
    if (sodium_init() < 0)
        return -1;
    make_signer(&keys.current, "sign-current", &keys.signing[0]);
    make_signer(&keys.previous, "sign-previous", &keys.signing[1]);
    make_signer(&keys.retired, "sign-retired", NULL);
    crypto_box_keypair(keys.workers_public, keys.sealing[0].key);
    snprintf(keys.sealing[0].kid, sizeof(keys.sealing[0].kid), "%s", WORKERS_KID);
    crypto_box_keypair(other_public, keys.impostor[0].key);
    snprintf(keys.impostor[0].kid, sizeof(keys.impostor[0].kid), "%s", WORKERS_KID);
    keys.sealer = sealer_new(2, 30000);
    keys.secret_schema = compile(secret_schema_source);
    keys.plain_schema = compile(plain_schema_source);
    keys.batch = envelope_batch_new();
    return keys.sealer != NULL && keys.batch != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    sealer_free(keys.sealer);
    schema_free(keys.secret_schema);
    schema_free(keys.plain_schema);
    envelope_batch_free(keys.batch);
    return 0;
}

/* What one test builds; members left zero take the invoice job's values. */
struct spec {
    const char *id;
    const char *body;
    const struct schema *schema;
    const char *queue;
    int64_t expires_at;
    const unsigned char *seal_to; /* the workers' public key */
    size_t slot;
    int no_recipient;
};

static struct envelope_recipient recipient_of(const struct spec *spec)
{
    return (struct envelope_recipient){
        .kid = WORKERS_KID,
        .public_key = spec->seal_to != NULL ? spec->seal_to : keys.workers_public,
        .sealer = keys.sealer,
        .slot = spec->slot,
        .now_ms = 1000,
    };
}

static struct envelope_request request_of(const struct spec *spec,
                                          const struct envelope_recipient *recipient)
{
    return (struct envelope_request){
        .id = spec->id != NULL ? spec->id : JOB_ID,
        .tenant = "acme",
        .subject = "billing-service",
        .queue = spec->queue != NULL ? spec->queue : "invoices",
        .issued_at = ISSUED_AT,
        .expires_at = spec->expires_at != 0 ? spec->expires_at : ISSUED_AT + LIFETIME,
        .schema = spec->schema != NULL ? spec->schema : keys.secret_schema,
        .recipient = spec->no_recipient ? NULL : recipient,
        .signer = &keys.current,
    };
}

static void parse_job(const char *body, struct job *job)
{
    const char *detail = NULL;

    if (job_parse(body, strlen(body), job, &detail) != JOB_OK)
        fail_msg("test body does not parse: %s", detail);
}

/* The payload text of spec's job, or NULL with *status set. */
static char *build_text(const struct spec *spec, size_t *len, enum envelope_status *status)
{
    struct envelope_recipient recipient = recipient_of(spec);
    struct envelope_request request = request_of(spec, &recipient);
    struct job job;
    char *text;

    parse_job(spec->body != NULL ? spec->body : INVOICE_BODY, &job);
    text = envelope_build(&job, &request, len, status);
    job_release(&job);
    return text;
}

static json_t *parse_payload(const char *text, size_t len)
{
    json_error_t error;
    json_t *payload = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);

    if (payload == NULL)
        fail_msg("the payload does not parse: %s", error.text);
    return payload;
}

/* spec's job, built and parsed back as a worker reads it. */
static json_t *build(const struct spec *spec)
{
    enum envelope_status status = ENVELOPE_OK;
    size_t len = 0;
    char *text = build_text(spec, &len, &status);
    json_t *payload;

    if (text == NULL)
        fail_msg("envelope_build failed with status %d", (int)status);
    assert_int_equal(strlen(text), len);
    payload = parse_payload(text, len);
    free(text);
    return payload;
}

static json_t *invoice(void)
{
    const struct spec spec = {0};

    return build(&spec);
}

static json_t *envelope_of(const json_t *payload)
{
    return json_array_get(json_object_get(payload, "args"), 0);
}

static json_t *first_arg(const json_t *payload)
{
    return json_array_get(json_object_get(envelope_of(payload), "args"), 0);
}

static json_t *parse(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &error);

    if (value == NULL)
        fail_msg("test JSON does not parse: %s: %s", error.text, text);
    return value;
}

static void resign(json_t *payload, const struct envelope_signer *signer)
{
    assert_int_equal(envelope_sign(envelope_of(payload), signer), 0);
}

static void set_string(json_t *object, const char *key, const char *value)
{
    assert_int_equal(json_object_set_new(object, key, json_string(value)), 0);
}

static void set_json(json_t *object, const char *key, const char *value)
{
    assert_int_equal(json_object_set_new(object, key, parse(value)), 0);
}

static const struct envelope_expect invoice_expect = {
    .class_name = "SendInvoice",
    .queue = "invoices",
    .now = CHECKED_AT,
};

/* Opens payload with keys and expect; on a refusal, checks what comes with it. */
static enum envelope_refusal open_with(const json_t *payload,
                                       const struct envelope_keyring *worker_keys,
                                       const struct envelope_expect *expect, json_t **opened)
{
    const char *detail = NULL;
    enum envelope_refusal refusal;

    *opened = (json_t *)payload; /* must be replaced */
    refusal = envelope_open(payload, worker_keys, expect, opened, &detail);
    if (refusal != ENVELOPE_VALID) {
        assert_null(*opened);
        assert_non_null(detail);
        assert_true(strlen(detail) > 0);
        assert_null(strstr(detail, "SECRET"));
    } else {
        assert_non_null(*opened);
    }
    return refusal;
}

/* Checks that payload (which this takes) is refused for reason expected. */
static void assert_refused_as(json_t *payload, const struct envelope_keyring *worker_keys,
                              const struct envelope_expect *expect, enum envelope_refusal expected,
                              const char *what)
{
    json_t *opened;
    enum envelope_refusal refusal = open_with(payload, worker_keys, expect, &opened);

    if (refusal != expected)
        fail_msg("%s: %s, expected %s", what, envelope_refusal_name(refusal),
                 envelope_refusal_name(expected));
    json_decref(opened);
    json_decref(payload);
}

static void assert_refused(json_t *payload, enum envelope_refusal expected, const char *what)
{
    assert_refused_as(payload, &keyring, &invoice_expect, expected, what);
}

/* The one detail payload (which this takes) is refused with. */
static void assert_detail(json_t *payload, const struct envelope_expect *expect,
                          enum envelope_refusal expected, const char *expected_detail)
{
    const char *detail = NULL;
    json_t *opened = NULL;

    assert_int_equal(envelope_open(payload, &keyring, expect, &opened, &detail), expected);
    assert_string_equal(detail, expected_detail);
    json_decref(payload);
}

static json_t *assert_opens(const json_t *payload, const struct envelope_expect *expect)
{
    json_t *opened;
    enum envelope_refusal refusal = open_with(payload, &keyring, expect, &opened);

    if (refusal != ENVELOPE_VALID)
        fail_msg("refused as %s", envelope_refusal_name(refusal));
    return opened;
}

static void assert_json_equal(const json_t *actual, const char *expected_text)
{
    json_t *expected = parse(expected_text);

    if (!json_equal(actual, expected)) {
        char *dumped = json_dumps(actual, JSON_COMPACT | JSON_ENCODE_ANY);
        fail_msg("got %s, expected %s", dumped != NULL ? dumped : "?", expected_text);
    }
    json_decref(expected);
}

static void test_built_job_opens_with_its_arguments(void **state)
{
    json_t *payload = invoice();
    json_t *opened = assert_opens(payload, &invoice_expect);

    (void)state;
    assert_int_equal(json_object_size(opened), 9);
    assert_string_equal(json_string_value(json_object_get(opened, "id")), JOB_ID);
    assert_string_equal(json_string_value(json_object_get(opened, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(opened, "sub")), "billing-service");
    assert_string_equal(json_string_value(json_object_get(opened, "queue")), "invoices");
    assert_string_equal(json_string_value(json_object_get(opened, "class")), "SendInvoice");
    assert_int_equal(json_integer_value(json_object_get(opened, "iat")), ISSUED_AT);
    assert_int_equal(json_integer_value(json_object_get(opened, "exp")), ISSUED_AT + LIFETIME);
    assert_string_equal(json_string_value(json_object_get(opened, "kid")), "sign-current");
    assert_json_equal(json_object_get(opened, "args"), INVOICE_ARGS);
    json_decref(opened);

    /* The opened job is a copy: the payload still holds the sealed values. */
    assert_true(json_is_object(json_object_get(first_arg(payload), "card_token")));
    json_decref(payload);
}

static void test_envelope_members(void **state)
{
    static const char *const members[] = {"jobgate", "id",    "tenant", "sub",  "queue",
                                          "class",   "iat",   "exp",    "args", "sealed",
                                          "kid",     "proof", "sig"};
    json_t *payload = invoice();
    json_t *envelope = envelope_of(payload);
    unsigned char signature[crypto_sign_BYTES];
    const char *sig;

    (void)state;
    assert_int_equal(json_object_size(envelope), sizeof(members) / sizeof(members[0]));
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
        assert_non_null(json_object_get(envelope, members[i]));
    assert_int_equal(json_integer_value(json_object_get(envelope, "jobgate")), 1);
    assert_true(json_is_integer(json_object_get(envelope, "jobgate")));
    assert_string_equal(json_string_value(json_object_get(envelope, "id")), JOB_ID);
    assert_string_equal(json_string_value(json_object_get(envelope, "kid")), "sign-current");
    sig = json_string_value(json_object_get(envelope, "sig"));
    assert_int_equal(keyfile_decode(sig, strlen(sig), signature, sizeof(signature)), 0);
    /* Signed alone: a tree of one. */
    assert_json_equal(json_object_get(envelope, "proof"), "{\"index\":0,\"path\":[],\"size\":1}");

    /* Every secret, in document order, escaped as RFC 6901 says. */
    assert_json_equal(json_object_get(envelope, "sealed"),
                      "[\"/0/card_token\",\"/0/cards/0\",\"/0/cards/1\",\"/0/cards/2\","
                      "\"/0/a~1b~0c\"]");
    json_decref(payload);
}

/* A sealed value is {kid, epk, nonce, ct}, its parts of the right lengths. */
static void assert_sealed_value(const json_t *value, size_t plain_len, unsigned char *epk,
                                unsigned char *nonce)
{
    unsigned char ct[256];
    const char *text;

    assert_true(json_is_object(value));
    assert_int_equal(json_object_size(value), 4);
    assert_string_equal(json_string_value(json_object_get(value, "kid")), WORKERS_KID);
    text = json_string_value(json_object_get(value, "epk"));
    assert_int_equal(keyfile_decode(text, strlen(text), epk, SEAL_KEY_BYTES), 0);
    text = json_string_value(json_object_get(value, "nonce"));
    assert_int_equal(keyfile_decode(text, strlen(text), nonce, SEAL_NONCE_BYTES), 0);
    text = json_string_value(json_object_get(value, "ct"));
    assert_true(plain_len + SEAL_TAG_BYTES <= sizeof(ct));
    assert_int_equal(keyfile_decode(text, strlen(text), ct, plain_len + SEAL_TAG_BYTES), 0);
}

static void test_sealed_values(void **state)
{
    json_t *payload = invoice();
    json_t *first = first_arg(payload);
    json_t *cards = json_object_get(first, "cards");
    unsigned char epk[4][SEAL_KEY_BYTES], nonce[4][SEAL_NONCE_BYTES];

    (void)state;
    assert_sealed_value(json_object_get(first, "card_token"), strlen("tok_SECRET_card"), epk[0],
                        nonce[0]);
    assert_sealed_value(json_array_get(cards, 0), strlen("tok_SECRET_a"), epk[1], nonce[1]);
    assert_sealed_value(json_array_get(cards, 1), 0, epk[2], nonce[2]);
    assert_sealed_value(json_array_get(cards, 2), strlen("tok_SECRET_\xc3\xa9"), epk[3], nonce[3]);
    /* One epoch: one ephemeral key, a new nonce for each value. */
    for (size_t i = 1; i < 4; i++) {
        assert_memory_equal(epk[i], epk[0], SEAL_KEY_BYTES);
        for (size_t j = 0; j < i; j++)
            assert_memory_not_equal(nonce[i], nonce[j], SEAL_NONCE_BYTES);
    }
    /* What is not secret is left as written. */
    assert_string_equal(json_string_value(json_object_get(first, "invoice_id")), "inv-1042");
    assert_string_equal(json_string_value(json_object_get(first, "note")), "na\xc3\xafve \"q\"");
    json_decref(payload);
}

static void test_payload_is_a_resque_job(void **state)
{
    static const char prefix[] = "{\"class\":\"SendInvoice\",\"args\":[{";
    const struct spec spec = {0};
    enum envelope_status status;
    size_t len;
    char *text = build_text(&spec, &len, &status);
    json_t *payload;

    (void)state;
    assert_non_null(text);
    /* Resque's own key order, class then args, and exactly one argument. */
    assert_true(len > sizeof(prefix));
    assert_memory_equal(text, prefix, sizeof(prefix) - 1);
    assert_memory_equal(text + len - 3, "}]}", 3);
    payload = parse_payload(text, len);
    assert_int_equal(json_object_size(payload), 2);
    assert_int_equal(json_array_size(json_object_get(payload, "args")), 1);
    assert_true(json_is_object(envelope_of(payload)));
    json_decref(payload);

    /* No secret appears in the clear, whole or in part. */
    assert_null(memmem(text, len, "SECRET", 6));
    assert_null(memmem(text, len, "tok_", 4));
    /* A real keeps the digits it was written with. */
    assert_non_null(memmem(text, len, "\"amount\":19.99,", 15));
    free(text);
}

static void test_class_without_secrets(void **state)
{
    const struct spec spec = {
        .body = "{\"class\":\"SendWelcomeEmail\",\"args\":[{\"user_id\":42},\"en\",true,null,[]]}",
        .schema = keys.plain_schema,
        .queue = "mailers",
        .no_recipient = 1,
    };
    const struct envelope_expect expect = {"SendWelcomeEmail", "mailers", CHECKED_AT, 0};
    enum envelope_status status;
    size_t len;
    char *text = build_text(&spec, &len, &status);
    json_t *payload, *opened;

    (void)state;
    assert_non_null(text);
    assert_non_null(memmem(text, len, "\"sealed\":[]", 11));
    payload = parse_payload(text, len);
    free(text);
    assert_json_equal(json_object_get(envelope_of(payload), "sealed"), "[]");
    opened = assert_opens(payload, &expect);
    assert_json_equal(json_object_get(opened, "args"), "[{\"user_id\":42},\"en\",true,null,[]]");
    json_decref(opened);
    json_decref(payload);
}

static void test_secret_fields_left_out(void **state)
{
    const struct spec spec = {.body =
                                  "{\"class\":\"SendInvoice\",\"args\":[{\"invoice_id\":\"x\"}]}"};
    json_t *payload = build(&spec);
    json_t *opened;

    (void)state;
    assert_json_equal(json_object_get(envelope_of(payload), "sealed"), "[]");
    opened = assert_opens(payload, &invoice_expect);
    assert_json_equal(json_object_get(opened, "args"), "[{\"invoice_id\":\"x\"}]");
    json_decref(opened);
    json_decref(payload);
}

static void expect_not_sealed(const struct spec *spec, const char *what)
{
    enum envelope_status status = ENVELOPE_OK;
    size_t len;
    char *text = build_text(spec, &len, &status);

    if (text != NULL) {
        free(text);
        fail_msg("%s: built", what);
    }
    if (status != ENVELOPE_NOT_SEALED)
        fail_msg("%s: status %d", what, (int)status);
}

static void test_secrets_that_cannot_be_sealed(void **state)
{
    static const unsigned char low_order[SEAL_KEY_BYTES] = {0};
    struct spec spec = {.no_recipient = 1};

    (void)state;
    expect_not_sealed(&spec, "no recipient");
    spec = (struct spec){.seal_to = low_order};
    expect_not_sealed(&spec, "a low-order workers' key");
    spec = (struct spec){.slot = 2};
    expect_not_sealed(&spec, "a slot the sealer does not have");
    /* The gateway validates first; a job its schema refuses has no secrets to find. */
    spec = (struct spec){.body = "{\"class\":\"SendInvoice\",\"args\":[{\"card_token\":5}]}"};
    expect_not_sealed(&spec, "args the schema refuses");
}

static void test_big_integers_sign_exactly(void **state)
{
#define BIG_ARGS                                                                                   \
    "[{\"card_token\":\"tok_SECRET_c\",\"numbers\":[9007199254740993]},9007199254740993,"          \
    "-1234567890123456789,9223372036854775807,-9223372036854775807,9007199254740992]"
    const struct spec spec = {.body = "{\"class\":\"SendInvoice\",\"args\":" BIG_ARGS "}"};
    enum envelope_status status;
    size_t len;
    char *text = build_text(&spec, &len, &status);
    json_t *payload, *opened, *args;

    (void)state;
    assert_non_null(text);
    assert_non_null(memmem(text, len, ",9007199254740993,-1234567890123456789,", 39));
    assert_non_null(memmem(text, len, "9223372036854775807", 19));
    payload = parse_payload(text, len);
    free(text);
    opened = assert_opens(payload, &invoice_expect);
    args = json_object_get(opened, "args");
    assert_json_equal(args, BIG_ARGS);
    assert_int_equal(json_integer_value(json_array_get(args, 1)), 9007199254740993LL);
    assert_int_equal(json_integer_value(json_array_get(args, 3)), INT64_MAX);
    json_decref(opened);

    /* One more or one less, as a double would round it, no longer verifies. */
    json_array_set_new(json_object_get(envelope_of(payload), "args"), 1,
                       json_integer(9007199254740992LL));
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "a big integer rounded");
#undef BIG_ARGS
}

static void test_unsigned(void **state)
{
    json_t *payload;

    (void)state;
    assert_refused(parse("{\"class\":\"SendInvoice\",\"args\":[{\"invoice_id\":\"x\"}]}"),
                   ENVELOPE_UNSIGNED, "a job written straight into Redis");
    assert_refused(parse("{\"class\":\"SendInvoice\",\"args\":[]}"), ENVELOPE_UNSIGNED,
                   "no arguments");
    assert_refused(parse("{\"class\":\"SendInvoice\"}"), ENVELOPE_UNSIGNED, "no args");
    assert_refused(parse("{\"class\":\"SendInvoice\",\"args\":[\"jobgate\"]}"), ENVELOPE_UNSIGNED,
                   "a string argument");
    assert_refused(parse("[]"), ENVELOPE_UNSIGNED, "not an object");

    payload = invoice();
    json_array_append_new(json_object_get(payload, "args"), json_string("extra"));
    assert_refused(payload, ENVELOPE_UNSIGNED, "a second argument beside the envelope");

    payload = invoice();
    assert_int_equal(json_array_insert_new(json_object_get(payload, "args"), 0, json_null()), 0);
    assert_refused(payload, ENVELOPE_UNSIGNED, "an argument before the envelope");

    payload = invoice();
    json_object_set(payload, "args", envelope_of(payload));
    assert_refused(payload, ENVELOPE_UNSIGNED, "the envelope not in an array");

    /* Decided on the payload alone: a valid signature does not make up for it. */
    payload = invoice();
    json_object_del(envelope_of(payload), "jobgate");
    resign(payload, &keys.current);
    assert_refused(payload, ENVELOPE_UNSIGNED, "no jobgate member");
}

static void test_unsupported_version(void **state)
{
    static const char *const versions[] = {"2", "0", "-1", "\"1\"", "1.0", "true", "null"};

    (void)state;
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        json_t *payload = invoice();
        set_json(envelope_of(payload), "jobgate", versions[i]);
        resign(payload, &keys.current);
        assert_refused(payload, ENVELOPE_UNSUPPORTED_VERSION, versions[i]);
    }
}

/* The invoice job with member set to value (JSON text) and re-signed. */
static json_t *invoice_with(const char *member, const char *value)
{
    json_t *payload = invoice();

    if (value == NULL)
        json_object_del(envelope_of(payload), member);
    else
        set_json(envelope_of(payload), member, value);
    resign(payload, &keys.current);
    return payload;
}

static void test_malformed(void **state)
{
    static const struct {
        const char *member;
        const char *value;
    } changes[] = {
        {"priority", "1"},
        {"exp", NULL},
        {"iat", NULL},
        {"id", NULL},
        {"tenant", NULL},
        {"sub", NULL},
        {"queue", NULL},
        {"class", NULL},
        {"args", NULL},
        {"sealed", NULL},
        {"iat", "\"1796320800\""},
        {"exp", "1796925600.0"},
        {"id", "1"},
        {"tenant", "null"},
        {"args", "{}"},
        {"sealed", "\"/0/card_token\""},
        /* sealed entries that are not pointers to a value in args */
        {"sealed", "[\"/0/card_token\", \"/0/no_such_field\"]"},
        {"sealed", "[\"/0/card_token\", 5]"},
        {"sealed", "[\"\"]"},
        {"sealed", "[\"0/card_token\"]"},
        {"sealed", "[\"/00/card_token\"]"},
        {"sealed", "[\"/-/card_token\"]"},
        {"sealed", "[\"/0/cards/-\"]"},
        {"sealed", "[\"/0/cards/01\"]"},
        {"sealed", "[\"/0/cards/3\"]"},
        {"sealed", "[\"/0/a~1b~2c\"]"},
        {"sealed", "[\"/0/a~1b~\"]"},
        {"sealed", "[\"/0/card_token/kid\", \"/0/card_token/x\"]"},
        {"sealed", "[\"/4\"]"},
    };
    json_t *payload;
    char what[128];

    (void)state;
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        snprintf(what, sizeof(what), "%s set to %s", changes[i].member,
                 changes[i].value != NULL ? changes[i].value : "nothing");
        assert_refused(invoice_with(changes[i].member, changes[i].value), ENVELOPE_MALFORMED, what);
    }

    payload = invoice();
    set_string(envelope_of(payload), "sig", "not+base64url/");
    assert_refused(payload, ENVELOPE_MALFORMED, "sig not base64url");

    payload = invoice();
    set_string(envelope_of(payload), "sig", "AAAA");
    assert_refused(payload, ENVELOPE_MALFORMED, "sig of 3 bytes");

    payload = invoice();
    json_object_del(envelope_of(payload), "sig");
    assert_refused(payload, ENVELOPE_MALFORMED, "no sig");

    payload = invoice();
    set_json(envelope_of(payload), "kid", "7");
    assert_refused(payload, ENVELOPE_MALFORMED, "kid not a string");

    /* A signature of 63 bytes, then padded as base64 would. */
    unsigned char bytes[crypto_sign_BYTES] = {0};
    char text[128];
    struct text out;
    for (int padded = 0; padded < 2; padded++) {
        text_init(&out, text, sizeof(text));
        keyfile_append_base64url(&out, bytes, padded ? crypto_sign_BYTES : crypto_sign_BYTES - 1);
        if (padded)
            text_append_str(&out, "==");
        payload = invoice();
        set_string(envelope_of(payload), "sig", text_finish(&out));
        assert_refused(payload, ENVELOPE_MALFORMED, padded ? "sig padded" : "sig of 63 bytes");
    }
}

static void test_unknown_key(void **state)
{
    json_t *payload = invoice();

    (void)state;
    resign(payload, &keys.retired);
    assert_refused(payload, ENVELOPE_UNKNOWN_KEY, "signed by a key no worker holds");

    /* Before the signature: a kid nobody holds is named as such, not as a bad signature. */
    payload = invoice();
    set_string(envelope_of(payload), "kid", "sign-unheard-of");
    assert_refused(payload, ENVELOPE_UNKNOWN_KEY, "kid changed");

    const struct envelope_keyring no_signers = {NULL, 0, keys.sealing, 1};
    assert_refused_as(invoice(), &no_signers, &invoice_expect, ENVELOPE_UNKNOWN_KEY,
                      "no signing keys at all");
}

static void test_bad_signature(void **state)
{
    json_t *payload, *other;
    unsigned char zero[crypto_sign_BYTES] = {0};
    char text[128];
    struct text out;

    (void)state;
    payload = invoice();
    set_string(first_arg(payload), "invoice_id", "inv-1043");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "an argument changed");

    payload = invoice();
    set_json(first_arg(payload), "amount", "19.98");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "a number changed");

    payload = invoice();
    set_json(first_arg(payload), "extra", "1");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "an argument added");

    payload = invoice();
    set_string(payload, "class", "RefundInvoice");
    set_string(envelope_of(payload), "class", "RefundInvoice");
    assert_refused_as(payload, &keyring,
                      &(struct envelope_expect){"RefundInvoice", "invoices", CHECKED_AT, 0},
                      ENVELOPE_BAD_SIGNATURE, "the class changed");

    payload = invoice();
    set_string(envelope_of(payload), "queue", "mailers");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "the queue changed");

    static const char *const members[] = {"id", "tenant", "sub"};
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        payload = invoice();
        set_string(envelope_of(payload), members[i], "other");
        assert_refused(payload, ENVELOPE_BAD_SIGNATURE, members[i]);
    }

    payload = invoice();
    set_json(envelope_of(payload), "exp", "1797530400");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "the expiry pushed back");

    payload = invoice();
    set_json(envelope_of(payload), "iat", "1796320801");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "iat changed");

    payload = invoice();
    set_json(envelope_of(payload), "sealed", "[\"/0/card_token\"]");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "sealed shortened");

    payload = invoice();
    set_string(json_object_get(first_arg(payload), "card_token"), "ct",
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "a sealed value replaced");

    /* A known key that did not sign it. */
    payload = invoice();
    set_string(envelope_of(payload), "kid", "sign-previous");
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "kid of another configured key");

    payload = invoice();
    text_init(&out, text, sizeof(text));
    keyfile_append_base64url(&out, zero, sizeof(zero));
    set_string(envelope_of(payload), "sig", text_finish(&out));
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "a signature of zeros");

    /* Another job's signature by the same key. */
    payload = invoice();
    other = invoice();
    json_object_set(envelope_of(payload), "sig", json_object_get(envelope_of(other), "sig"));
    json_decref(other);
    assert_refused(payload, ENVELOPE_BAD_SIGNATURE, "another job's signature");
}

/* jobgate signs only what has a canonical form, so what has none is not its job. */
static void test_no_canonical_form_is_bad_signature(void **state)
{
    json_t *payload = invoice();
    json_t *nested = json_array();

    (void)state;
    json_object_set_new(first_arg(payload), "note", json_stringn_nocheck("\xff\xfe", 2));
    assert_detail(payload, &invoice_expect, ENVELOPE_BAD_SIGNATURE,
                  "the envelope has no canonical form");

    /* envelope_sign refuses it in the first place. */
    payload = invoice();
    json_object_set_new(first_arg(payload), "note", json_stringn_nocheck("\xed\xa0\x80", 3));
    assert_int_equal(envelope_sign(envelope_of(payload), &keys.current), -1);
    json_decref(payload);

    /* Nested past what the canonical form allows. */
    payload = invoice();
    json_t *inner = nested;
    for (int i = 0; i < JCS_MAX_DEPTH; i++) {
        json_t *deeper = json_array();
        assert_int_equal(json_array_append_new(inner, deeper), 0);
        inner = deeper;
    }
    json_object_set_new(first_arg(payload), "deep", nested);
    assert_detail(payload, &invoice_expect, ENVELOPE_BAD_SIGNATURE,
                  "the envelope has no canonical form");
}

static void test_wrong_class(void **state)
{
    json_t *payload;

    (void)state;
    payload = invoice();
    set_string(payload, "class", "RefundInvoice");
    assert_refused(payload, ENVELOPE_WRONG_CLASS, "the payload's class is not the envelope's");

    assert_refused_as(invoice(), &keyring,
                      &(struct envelope_expect){"RefundInvoice", "invoices", CHECKED_AT, 0},
                      ENVELOPE_WRONG_CLASS, "run as another class");

    /* A prefix is another class. */
    assert_refused_as(invoice(), &keyring,
                      &(struct envelope_expect){"SendInvoic", "invoices", CHECKED_AT, 0},
                      ENVELOPE_WRONG_CLASS, "run as a prefix of the class");

    payload = invoice();
    set_json(payload, "class", "7");
    assert_refused(payload, ENVELOPE_WRONG_CLASS, "the payload's class not a string");

    payload = invoice();
    json_object_del(payload, "class");
    assert_refused(payload, ENVELOPE_WRONG_CLASS, "no class in the payload");

    /* Checked before the queue and the expiry. */
    payload = invoice();
    set_string(payload, "class", "RefundInvoice");
    assert_refused_as(
        payload, &keyring,
        &(struct envelope_expect){"SendInvoice", "mailers", ISSUED_AT + LIFETIME + 1, 0},
        ENVELOPE_WRONG_CLASS, "wrong class, queue and time");
}

static void test_wrong_queue(void **state)
{
    (void)state;
    assert_refused_as(invoice(), &keyring,
                      &(struct envelope_expect){"SendInvoice", "mailers", CHECKED_AT, 0},
                      ENVELOPE_WRONG_QUEUE, "taken from another queue");
    assert_refused_as(invoice(), &keyring,
                      &(struct envelope_expect){"SendInvoice", "invoice", CHECKED_AT, 0},
                      ENVELOPE_WRONG_QUEUE, "a prefix of the queue");
    /* Checked before the expiry. */
    assert_refused_as(
        invoice(), &keyring,
        &(struct envelope_expect){"SendInvoice", "mailers", ISSUED_AT + LIFETIME + 1, 0},
        ENVELOPE_WRONG_QUEUE, "wrong queue and time");
}

static void test_expected_class_and_queue_may_be_left_out(void **state)
{
    const struct envelope_expect anything = {NULL, NULL, CHECKED_AT, 0};
    json_t *payload = invoice();
    json_t *opened = assert_opens(payload, &anything);

    (void)state;
    assert_json_equal(json_object_get(opened, "args"), INVOICE_ARGS);
    json_decref(opened);
    json_decref(payload);

    /* The payload's own class is always checked. */
    payload = invoice();
    set_string(payload, "class", "RefundInvoice");
    assert_refused_as(payload, &keyring, &anything, ENVELOPE_WRONG_CLASS, "payload class");

    /* The expiry too. */
    assert_refused_as(invoice(), &keyring,
                      &(struct envelope_expect){NULL, NULL, ISSUED_AT + LIFETIME + 1, 0},
                      ENVELOPE_EXPIRED, "expired");
}

static enum envelope_refusal open_at(int64_t now, int64_t leeway)
{
    const struct envelope_expect expect = {"SendInvoice", "invoices", now, leeway};
    json_t *payload = invoice();
    json_t *opened;
    enum envelope_refusal refusal = open_with(payload, &keyring, &expect, &opened);

    json_decref(opened);
    json_decref(payload);
    return refusal;
}

static void test_expiry_and_leeway(void **state)
{
    const int64_t exp = ISSUED_AT + LIFETIME;

    (void)state;
    /* The job still runs during the second exp. */
    assert_int_equal(open_at(exp, 0), ENVELOPE_VALID);
    assert_int_equal(open_at(exp + 1, 0), ENVELOPE_EXPIRED);
    assert_int_equal(open_at(exp + 1, 1), ENVELOPE_VALID);
    assert_int_equal(open_at(exp + 2, 1), ENVELOPE_EXPIRED);
    assert_int_equal(open_at(exp + 300, 300), ENVELOPE_VALID);
    assert_int_equal(open_at(exp + 301, 300), ENVELOPE_EXPIRED);
    /* iat is not compared with the clock. */
    assert_int_equal(open_at(0, 0), ENVELOPE_VALID);

    const struct spec spec = {.expires_at = ISSUED_AT};
    assert_refused_as(build(&spec), &keyring, &invoice_expect, ENVELOPE_EXPIRED, "exp == iat");

    /* Whatever exp was signed, the comparison cannot overflow (UBSan would abort). */
    json_t *payload = invoice();
    json_t *opened;
    json_object_set_new(envelope_of(payload), "exp", json_integer(INT64_MAX));
    resign(payload, &keys.current);
    const struct envelope_expect far = {"SendInvoice", "invoices", CHECKED_AT, 300};
    assert_int_equal(open_with(payload, &keyring, &far, &opened), ENVELOPE_VALID);
    json_decref(opened);
    json_decref(payload);
}

static void test_unknown_seal_key(void **state)
{
    const struct envelope_keyring no_sealing = {keys.signing, 2, NULL, 0};
    json_t *payload, *cards;

    (void)state;
    assert_refused_as(invoice(), &no_sealing, &invoice_expect, ENVELOPE_UNKNOWN_SEAL_KEY,
                      "a worker without sealing keys");

    payload = invoice();
    set_string(json_array_get(json_object_get(first_arg(payload), "cards"), 2), "kid",
               "workers-elsewhere");
    resign(payload, &keys.current);
    assert_refused(payload, ENVELOPE_UNKNOWN_SEAL_KEY, "sealed to another team's workers");

    /* Every key is looked up first: the last value's unknown key wins over the first's
     * damage. */
    payload = invoice();
    set_string(json_object_get(first_arg(payload), "card_token"), "ct", "AAAA");
    cards = json_object_get(first_arg(payload), "cards");
    set_string(json_array_get(cards, 2), "kid", "workers-elsewhere");
    resign(payload, &keys.current);
    assert_refused(payload, ENVELOPE_UNKNOWN_SEAL_KEY, "an unknown key beside a damaged value");

    /* A job without secrets needs no sealing key. */
    const struct spec spec = {
        .body = "{\"class\":\"SendInvoice\",\"args\":[{\"invoice_id\":\"x\"}]}",
    };
    payload = build(&spec);
    json_t *opened;
    assert_int_equal(open_with(payload, &no_sealing, &invoice_expect, &opened), ENVELOPE_VALID);
    json_decref(opened);
    json_decref(payload);
}

/* The invoice job with its card_token's member set to value (JSON text), re-signed. */
static json_t *invoice_with_sealed(const char *member, const char *value)
{
    json_t *payload = invoice();
    json_t *sealed = json_object_get(first_arg(payload), "card_token");

    if (value == NULL)
        json_object_del(sealed, member);
    else
        set_json(sealed, member, value);
    resign(payload, &keys.current);
    return payload;
}

static void test_unseal_failed(void **state)
{
    static const struct {
        const char *member;
        const char *value;
    } changes[] = {
        {"nonce", NULL},
        {"ct", NULL},
        {"epk", NULL},
        {"kid", NULL},
        {"extra", "1"},
        {"kid", "5"},
        {"ct", "\"AAAA\""},
        {"ct", "\"\""},
        {"ct", "\"not+base64url\""},
        {"epk", "\"AAAA\""},
        {"epk", "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""},
        {"nonce", "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""},
        {"nonce", "7"},
    };
    json_t *payload, *other, *cards, *card;
    char what[128], ct[256];

    (void)state;
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        snprintf(what, sizeof(what), "sealed %s set to %s", changes[i].member,
                 changes[i].value != NULL ? changes[i].value : "nothing");
        assert_refused(invoice_with_sealed(changes[i].member, changes[i].value),
                       ENVELOPE_UNSEAL_FAILED, what);
    }

    payload = invoice();
    set_string(first_arg(payload), "card_token", "tok_not_sealed");
    resign(payload, &keys.current);
    assert_refused(payload, ENVELOPE_UNSEAL_FAILED, "a sealed value that is a plain string");

    payload = invoice();
    json_t *sealed = json_object_get(first_arg(payload), "card_token");
    snprintf(ct, sizeof(ct), "%s", json_string_value(json_object_get(sealed, "ct")));
    ct[0] = ct[0] == 'A' ? 'B' : 'A';
    set_string(sealed, "ct", ct);
    resign(payload, &keys.current);
    assert_refused(payload, ENVELOPE_UNSEAL_FAILED, "a ciphertext byte flipped");

    /* Moved from another job of the same queue and class. */
    payload = invoice();
    other = build(&(struct spec){.id = "01a23d8c-0000-7000-8000-000000000002"});
    json_object_set(first_arg(payload), "card_token",
                    json_object_get(first_arg(other), "card_token"));
    json_decref(other);
    resign(payload, &keys.current);
    assert_refused(payload, ENVELOPE_UNSEAL_FAILED, "a sealed value from another job");

    payload = invoice();
    set_string(envelope_of(payload), "id", "01a23d8c-0000-7000-8000-000000000002");
    resign(payload, &keys.current);
    assert_refused(payload, ENVELOPE_UNSEAL_FAILED, "the job's id changed");

    payload = invoice();
    cards = json_object_get(first_arg(payload), "cards");
    card = json_incref(json_array_get(cards, 0));
    json_array_set(cards, 0, json_array_get(cards, 2));
    json_array_set_new(cards, 2, card);
    resign(payload, &keys.current);
    assert_refused(payload, ENVELOPE_UNSEAL_FAILED, "two sealed values swapped");

    payload = invoice();
    set_string(envelope_of(payload), "queue", "mailers");
    resign(payload, &keys.current);
    assert_refused_as(payload, &keyring,
                      &(struct envelope_expect){"SendInvoice", "mailers", CHECKED_AT, 0},
                      ENVELOPE_UNSEAL_FAILED, "moved to another queue");

    payload = invoice();
    set_string(payload, "class", "RefundInvoice");
    set_string(envelope_of(payload), "class", "RefundInvoice");
    resign(payload, &keys.current);
    assert_refused_as(payload, &keyring,
                      &(struct envelope_expect){"RefundInvoice", "invoices", CHECKED_AT, 0},
                      ENVELOPE_UNSEAL_FAILED, "moved to another class");

    /* The workers' kid, but another secret key under it. */
    const struct envelope_keyring impostor = {keys.signing, 2, keys.impostor, 1};
    assert_refused_as(invoice(), &impostor, &invoice_expect, ENVELOPE_UNSEAL_FAILED,
                      "another secret key under the same kid");
}

/*
 * Seals plain as workers/ENVELOPE.md says, with the associated data built here from
 * its formula, and puts it at the invoice's card_token, re-signed.
 */
static json_t *invoice_sealing(const char *plain, size_t plain_len)
{
    json_t *payload = invoice();
    json_t *envelope = envelope_of(payload);
    json_t *context = json_pack("{s:O, s:s, s:O, s:O}", "class", json_object_get(envelope, "class"),
                                "field", "/0/card_token", "id", json_object_get(envelope, "id"),
                                "queue", json_object_get(envelope, "queue"));
    unsigned char epk[SEAL_KEY_BYTES], nonce[SEAL_NONCE_BYTES], sealed[64 + SEAL_TAG_BYTES];
    char ad_buffer[512], encoded[3][128];
    struct text ad, out;

    assert_non_null(context);
    assert_true(plain_len <= 64);
    text_init(&ad, ad_buffer, sizeof(ad_buffer));
    assert_int_equal(jcs_append(&ad, context, 0), JCS_OK);
    assert_non_null(text_finish(&ad));
    json_decref(context);
    assert_int_equal(sealer_seal(keys.sealer, 0, keys.workers_public, 1000,
                                 (const unsigned char *)ad.base, ad.len,
                                 (const unsigned char *)plain, plain_len, epk, nonce, sealed),
                     0);

    const unsigned char *parts[] = {epk, nonce, sealed};
    const size_t lengths[] = {sizeof(epk), sizeof(nonce), plain_len + SEAL_TAG_BYTES};
    for (size_t i = 0; i < 3; i++) {
        text_init(&out, encoded[i], sizeof(encoded[i]));
        keyfile_append_base64url(&out, parts[i], lengths[i]);
        assert_non_null(text_finish(&out));
    }
    assert_int_equal(
        json_object_set_new(first_arg(payload), "card_token",
                            json_pack("{s:s, s:s, s:s, s:s}", "kid", WORKERS_KID, "epk", encoded[0],
                                      "nonce", encoded[1], "ct", encoded[2])),
        0);
    resign(payload, &keys.current);
    return payload;
}

static void test_sealed_by_the_documented_recipe(void **state)
{
    json_t *payload = invoice_sealing("tok_\xe2\x98\x83", 7);
    json_t *opened = assert_opens(payload, &invoice_expect);

    (void)state;
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(opened, "args"), 0), "card_token")),
                        "tok_\xe2\x98\x83");
    json_decref(opened);
    json_decref(payload);

    /* A plaintext that is not UTF-8 opens, but is no string: refused. */
    assert_detail(invoice_sealing("tok_\xff", 5), &invoice_expect, ENVELOPE_UNSEAL_FAILED,
                  "a sealed value does not hold UTF-8 text");
}

static void test_refusal_names(void **state)
{
    static const char *const names[] = {
        [ENVELOPE_VALID] = "valid",
        [ENVELOPE_UNSIGNED] = "unsigned",
        [ENVELOPE_UNSUPPORTED_VERSION] = "unsupported-version",
        [ENVELOPE_MALFORMED] = "malformed",
        [ENVELOPE_UNKNOWN_KEY] = "unknown-key",
        [ENVELOPE_BAD_SIGNATURE] = "bad-signature",
        [ENVELOPE_WRONG_CLASS] = "wrong-class",
        [ENVELOPE_WRONG_QUEUE] = "wrong-queue",
        [ENVELOPE_EXPIRED] = "expired",
        [ENVELOPE_UNKNOWN_SEAL_KEY] = "unknown-seal-key",
        [ENVELOPE_UNSEAL_FAILED] = "unseal-failed",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(envelope_refusal_name((enum envelope_refusal)i), names[i]);
}

/* Ed25519 verification of signature over the tree label and root. */
static int verify_root(const unsigned char root[32], const unsigned char *signature,
                       const unsigned char *public_key)
{
    unsigned char message[sizeof(ENVELOPE_TREE_LABEL) - 1 + 32];

    memcpy(message, ENVELOPE_TREE_LABEL, sizeof(ENVELOPE_TREE_LABEL) - 1);
    memcpy(message + sizeof(ENVELOPE_TREE_LABEL) - 1, root, 32);
    return crypto_sign_verify_detached(signature, message, sizeof(message), public_key);
}

/* SHA-256(0x00 || text): a leaf as RFC 9162 hashes it, computed here independently. */
static void leaf_hash(const char *text, unsigned char hash[32])
{
    crypto_hash_sha256_state state;
    const unsigned char prefix = 0x00;

    crypto_hash_sha256_init(&state);
    crypto_hash_sha256_update(&state, &prefix, 1);
    crypto_hash_sha256_update(&state, (const unsigned char *)text, strlen(text));
    crypto_hash_sha256_final(&state, hash);
}

static void test_sign_replaces_kid_proof_and_sig(void **state)
{
    json_t *envelope = parse("{\"a\":1,\"kid\":\"old\",\"proof\":{},\"sig\":\"old\"}");
    unsigned char signature[crypto_sign_BYTES], leaf[32];
    const char *sig;

    (void)state;
    assert_int_equal(envelope_sign(envelope, &keys.previous), 0);
    assert_int_equal(json_object_size(envelope), 4);
    assert_string_equal(json_string_value(json_object_get(envelope, "kid")), "sign-previous");
    assert_json_equal(json_object_get(envelope, "proof"), "{\"index\":0,\"path\":[],\"size\":1}");
    sig = json_string_value(json_object_get(envelope, "sig"));
    assert_int_equal(keyfile_decode(sig, strlen(sig), signature, sizeof(signature)), 0);

    /* A tree of one: the root is the leaf of the RFC 8785 form without proof and sig. */
    leaf_hash("{\"a\":1,\"kid\":\"sign-previous\"}", leaf);
    assert_int_equal(verify_root(leaf, signature, keys.signing[1].key), 0);
    json_decref(envelope);
}

static void test_payload_writer(void **state)
{
    json_t *envelope = parse("{\"b\":[1,2.5,\"x\"],\"a\":null}");
    enum envelope_status status = ENVELOPE_TOO_BIG;
    size_t len = 0;
    char *text;

    (void)state;
    /* A hint of one byte grows to fit; the envelope is written in canonical form. */
    text = envelope_payload("Mail::Send\"It\"", 14, envelope, 1, &len, &status);
    assert_non_null(text);
    assert_int_equal(status, ENVELOPE_OK);
    assert_string_equal(text, "{\"class\":\"Mail::Send\\\"It\\\"\",\"args\":[{\"a\":null,"
                              "\"b\":[1,2.5,\"x\"]}]}");
    assert_int_equal(len, strlen(text));
    free(text);

    /* The class is taken by its length. */
    text = envelope_payload("SendInvoiceXYZ", 11, envelope, 4096, &len, &status);
    assert_non_null(text);
    assert_string_equal(text, "{\"class\":\"SendInvoice\",\"args\":[{\"a\":null,"
                              "\"b\":[1,2.5,\"x\"]}]}");
    free(text);
    json_decref(envelope);
}

/* The envelope jobgate stores is its own canonical form, proof and sig included. */
static void test_stored_envelope_is_canonical(void **state)
{
    const struct spec spec = {0};
    enum envelope_status status;
    size_t len;
    char *text = build_text(&spec, &len, &status);
    json_t *payload = parse_payload(text, len);
    char canonical[8192];
    struct text out;
    const char *inside = text + strlen("{\"class\":\"SendInvoice\",\"args\":[");

    (void)state;
    text_init(&out, canonical, sizeof(canonical));
    assert_int_equal(jcs_append(&out, envelope_of(payload), JCS_EXACT_INTEGERS), JCS_OK);
    assert_int_equal(len, (size_t)(inside - text) + out.len + 2);
    assert_memory_equal(inside, out.base, out.len);
    json_decref(payload);
    free(text);
}

/* Drafts of count invoices with ids ending in 0, 1, ... signed as one batch; parsed back. */
static void build_batch(size_t count, json_t **payloads)
{
    struct envelope_draft drafts[8];
    const struct envelope_draft *signed_drafts[8];
    char ids[8][ENVELOPE_JOB_ID_LEN + 1];

    assert_true(count <= 8);
    for (size_t i = 0; i < count; i++) {
        struct spec spec = {0};
        struct envelope_recipient recipient;
        struct envelope_request request;
        struct job job;

        snprintf(ids[i], sizeof(ids[i]), "01a23d8c-0000-7000-8000-00000000010%c", (char)('0' + i));
        spec.id = ids[i];
        recipient = recipient_of(&spec);
        request = request_of(&spec, &recipient);
        parse_job(INVOICE_BODY, &job);
        assert_int_equal(envelope_draft(&drafts[i], &job, &request), ENVELOPE_OK);
        job_release(&job);
        signed_drafts[i] = &drafts[i];
    }
    assert_int_equal(envelope_batch_sign(keys.batch, signed_drafts, count, &keys.current), 0);
    for (size_t i = 0; i < count; i++) {
        size_t len;
        char *text = envelope_batch_payload(keys.batch, i, &drafts[i], "SendInvoice", 11, &len);
        assert_non_null(text);
        payloads[i] = parse_payload(text, len);
        free(text);
        envelope_draft_release(&drafts[i]);
    }
}

/*
 * Jobs signed together share one signature, and each opens on its own with its own
 * proof; with another job's proof, or its own index or size changed, none does.
 */
static void test_jobs_signed_together(void **state)
{
    json_t *payloads[7];
    const char *sig;

    (void)state;
    build_batch(7, payloads);
    sig = json_string_value(json_object_get(envelope_of(payloads[0]), "sig"));
    for (size_t i = 0; i < 7; i++) {
        json_t *envelope = envelope_of(payloads[i]);
        json_t *proof = json_object_get(envelope, "proof");
        assert_string_equal(json_string_value(json_object_get(envelope, "sig")), sig);
        assert_int_equal(json_integer_value(json_object_get(proof, "index")), (json_int_t)i);
        assert_int_equal(json_integer_value(json_object_get(proof, "size")), 7);
        /* Seven leaves: the last has no sibling at the bottom level. */
        assert_int_equal(json_array_size(json_object_get(proof, "path")), i == 6 ? 2 : 3);
        json_decref(assert_opens(payloads[i], &invoice_expect));
    }

    json_object_set(envelope_of(payloads[0]), "proof",
                    json_object_get(envelope_of(payloads[1]), "proof"));
    assert_detail(payloads[0], &invoice_expect, ENVELOPE_BAD_SIGNATURE,
                  "the signature does not verify");
    json_object_set_new(json_object_get(envelope_of(payloads[2]), "proof"), "index",
                        json_integer(3));
    assert_refused(payloads[2], ENVELOPE_BAD_SIGNATURE, "another index");
    json_object_set_new(json_object_get(envelope_of(payloads[6]), "proof"), "size",
                        json_integer(8));
    assert_detail(payloads[6], &invoice_expect, ENVELOPE_BAD_SIGNATURE,
                  "the proof's path does not fit its index and size");
    json_array_remove(json_object_get(json_object_get(envelope_of(payloads[3]), "proof"), "path"),
                      0);
    assert_refused(payloads[3], ENVELOPE_BAD_SIGNATURE, "a hash short");
    for (size_t i = 4; i < 6; i++)
        json_decref(payloads[i]);
    json_decref(payloads[1]);
}

/* A batch takes 1 to MERKLE_MAX_LEAVES drafts. */
static void test_batch_sizes(void **state)
{
    const struct envelope_draft *drafts[MERKLE_MAX_LEAVES + 1];
    struct envelope_draft draft = {"{}", 2, 1, 1};

    (void)state;
    for (size_t i = 0; i <= MERKLE_MAX_LEAVES; i++)
        drafts[i] = &draft;
    assert_int_equal(envelope_batch_sign(keys.batch, drafts, 0, &keys.current), -1);
    assert_int_equal(envelope_batch_sign(keys.batch, drafts, MERKLE_MAX_LEAVES + 1, &keys.current),
                     -1);
    assert_int_equal(envelope_batch_sign(keys.batch, drafts, MERKLE_MAX_LEAVES, &keys.current), 0);
}

static void test_job_ids_are_uuid_v7(void **state)
{
    char previous[ENVELOPE_JOB_ID_LEN + 1] = "";
    char id[ENVELOPE_JOB_ID_LEN + 1];

    (void)state;
    for (int i = 0; i < 100; i++) {
        memset(id, 'x', sizeof(id));
        envelope_new_job_id(id);
        assert_int_equal(strlen(id), ENVELOPE_JOB_ID_LEN);
        for (size_t j = 0; j < ENVELOPE_JOB_ID_LEN; j++) {
            if (j == 8 || j == 13 || j == 18 || j == 23)
                assert_int_equal(id[j], '-');
            else
                assert_non_null(strchr("0123456789abcdef", id[j]));
        }
        assert_int_equal(id[14], '7');
        assert_non_null(strchr("89ab", id[19]));
        assert_string_not_equal(id, previous);
        /* Time-ordered: the millisecond prefix never goes back. */
        assert_true(memcmp(id, previous, 13) >= 0);
        memcpy(previous, id, sizeof(id));
    }
}

#ifndef SANITIZED
/*
 * jansson's blocks while the allocator is armed: counted, so that a leak shows, and
 * kept poisoned rather than freed until the run ends, so that a write to one after it
 * was freed (a second json_decref) shows too.
 */
#define QUARANTINE_MAX 4096
#define POISON 0xa5

static long jansson_blocks;
static void *quarantine[QUARANTINE_MAX];
static size_t quarantine_count;
static int quarantine_overflowed;

static void *counted_malloc(size_t size)
{
    void *block;

    if (allocation_fails())
        return NULL;
    resolve_allocator();
    block = next_malloc(size);
    if (block != NULL)
        jansson_blocks++;
    return block;
}

static void counted_free(void *block)
{
    if (block == NULL)
        return;
    jansson_blocks--;
    if (allocator_armed && quarantine_count < QUARANTINE_MAX) {
        memset(block, POISON, malloc_usable_size(block));
        quarantine[quarantine_count++] = block;
        return;
    }
    quarantine_overflowed |= allocator_armed;
    next_free(block);
}

/* Frees the quarantined blocks; returns how many were written to after being freed. */
static size_t release_quarantine(void)
{
    size_t written = 0;

    for (size_t i = 0; i < quarantine_count; i++) {
        const unsigned char *byte = quarantine[i];
        size_t size = malloc_usable_size(quarantine[i]);
        for (size_t j = 0; j < size; j++) {
            if (byte[j] != POISON) {
                written++;
                break;
            }
        }
        next_free(quarantine[i]);
    }
    quarantine_count = 0;
    return written;
}

/*
 * Drafts, signs and writes job as a gateway worker does, with a batch made beforehand;
 * returns the payload or NULL with *status set.
 */
static char *build_as_the_gateway(struct job *job, const struct envelope_request *request,
                                  size_t *len, enum envelope_status *status)
{
    struct envelope_draft draft;
    const struct envelope_draft *drafts[1] = {&draft};
    char *text = NULL;

    *status = envelope_draft(&draft, job, request);
    if (*status != ENVELOPE_OK)
        return NULL;
    *status = ENVELOPE_NO_MEMORY;
    if (envelope_batch_sign(keys.batch, drafts, 1, request->signer) == 0)
        text = envelope_batch_payload(keys.batch, 0, &draft, job->class_name, job->class_len, len);
    if (text != NULL)
        *status = ENVELOPE_OK;
    envelope_draft_release(&draft);
    return text;
}

/*
 * Fails allocation number failing of one build of body. Returns how many allocations
 * the build made; checks that a failed build says ENVELOPE_NO_MEMORY, that a build
 * that succeeds opens, and that either way nothing is leaked or used after being freed.
 */
static long build_failing(const char *body, long failing, enum envelope_status *status)
{
    const struct spec spec = {0};
    struct envelope_recipient recipient = recipient_of(&spec);
    struct envelope_request request = request_of(&spec, &recipient);
    long blocks_before = jansson_blocks;
    struct job job;
    size_t len;
    char *text;
    long made;

    parse_job(body, &job);
    *status = ENVELOPE_OK;
    allocations_made = 0;
    failing_allocation = failing;
    tracked_count = 0;
    allocator_armed = 1;
    text = build_as_the_gateway(&job, &request, &len, status);
    allocator_armed = 0;
    made = allocations_made;
    job_release(&job);

    if (text != NULL) {
        json_t *payload = parse_payload(text, len);
        json_t *opened = assert_opens(payload, &invoice_expect);
        json_decref(opened);
        json_decref(payload);
        free(text);
    }
    size_t written = release_quarantine();
    if (written != 0)
        fail_msg("allocation %ld failed, and %zu freed blocks were written to", failing, written);
    assert_false(quarantine_overflowed);
    assert_false(tracking_overflowed);
    if (tracked_count != 0)
        fail_msg("allocation %ld failed, and %zu blocks were not freed", failing, tracked_count);
    if (jansson_blocks != blocks_before)
        fail_msg("allocation %ld failed, and %ld JSON blocks were not freed", failing,
                 jansson_blocks - blocks_before);
    if (text == NULL && *status == ENVELOPE_OK)
        fail_msg("allocation %ld failed, and nothing says so", failing);
    return made;
}

/*
 * Fails each allocation of a build of body in turn, until a build has none fail. With
 * no_memory_only, a failed build must say ENVELOPE_NO_MEMORY and nothing else.
 */
static void fail_every_allocation(const char *body, int no_memory_only)
{
    enum envelope_status status;
    long failing;

    for (failing = 0; build_failing(body, failing, &status) > failing; failing++) {
        if (no_memory_only && status != ENVELOPE_NO_MEMORY)
            fail_msg("allocation %ld failed, and the status is %d, not ENVELOPE_NO_MEMORY", failing,
                     (int)status);
    }
    /* The last run had every allocation succeed. */
    assert_int_equal(status, ENVELOPE_OK);
    assert_true(failing > 10);
}

/* Whether the failing allocator stands between the code and malloc (not under valgrind). */
static int allocator_in_use(void)
{
    void *(*volatile allocate)(size_t) = malloc;
    void *probe;

    failing_allocation = 0;
    allocations_made = 0;
    allocator_armed = 1;
    probe = allocate(1);
    allocator_armed = 0;
    free(probe);
    return probe == NULL;
}
#endif

/*
 * Each allocation a build makes, its own and jansson's, fails in turn, and what
 * was taken is given back exactly once. The second body's object has eight members:
 * replacing one of them makes jansson grow its table, an allocation of its own inside
 * the replacement, which then releases the replacement itself.
 */
static void test_allocation_failure_frees_everything(void **state)
{
#ifdef SANITIZED
    (void)state;
    skip();
#else
    (void)state;
    if (!allocator_in_use())
        skip();
    json_set_alloc_funcs(counted_malloc, counted_free);
    fail_every_allocation(INVOICE_BODY, 0);
    fail_every_allocation("{\"class\":\"SendInvoice\",\"args\":[{\"card_token\":\"tok_SECRET\","
                          "\"m1\":1,\"m2\":2,\"m3\":3,\"m4\":4,\"m5\":5,\"m6\":6,\"m7\":7}]}",
                          0);
    json_set_alloc_funcs(malloc, free);
#endif
}

/* Running out of memory is ENVELOPE_NO_MEMORY wherever it happens: the gateway answers
 * "retry shortly" for it and an internal error for anything else. */
static void test_allocation_failure_is_no_memory(void **state)
{
#ifdef SANITIZED
    (void)state;
    skip();
#else
    (void)state;
    if (!allocator_in_use())
        skip();
    json_set_alloc_funcs(counted_malloc, counted_free);
    fail_every_allocation(INVOICE_BODY, 1);
    json_set_alloc_funcs(malloc, free);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_built_job_opens_with_its_arguments),
        cmocka_unit_test(test_envelope_members),
        cmocka_unit_test(test_sealed_values),
        cmocka_unit_test(test_payload_is_a_resque_job),
        cmocka_unit_test(test_class_without_secrets),
        cmocka_unit_test(test_secret_fields_left_out),
        cmocka_unit_test(test_secrets_that_cannot_be_sealed),
        cmocka_unit_test(test_big_integers_sign_exactly),
        cmocka_unit_test(test_unsigned),
        cmocka_unit_test(test_unsupported_version),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_no_canonical_form_is_bad_signature),
        cmocka_unit_test(test_wrong_class),
        cmocka_unit_test(test_wrong_queue),
        cmocka_unit_test(test_expected_class_and_queue_may_be_left_out),
        cmocka_unit_test(test_expiry_and_leeway),
        cmocka_unit_test(test_unknown_seal_key),
        cmocka_unit_test(test_unseal_failed),
        cmocka_unit_test(test_sealed_by_the_documented_recipe),
        cmocka_unit_test(test_refusal_names),
        cmocka_unit_test(test_sign_replaces_kid_proof_and_sig),
        cmocka_unit_test(test_payload_writer),
        cmocka_unit_test(test_stored_envelope_is_canonical),
        cmocka_unit_test(test_jobs_signed_together),
        cmocka_unit_test(test_batch_sizes),
        cmocka_unit_test(test_job_ids_are_uuid_v7),
        cmocka_unit_test(test_allocation_failure_frees_everything),
        cmocka_unit_test(test_allocation_failure_is_no_memory),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
