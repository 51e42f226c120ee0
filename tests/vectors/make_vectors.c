/*
 * make_vectors: writes tests/vectors/envelope-v1.json, the cases every worker kit must
 * judge alike (workers/ENVELOPE.md). Jobs are built by the gateway's own envelope code;
 * each tampered case changes one thing a worker must notice. Cases that a forger could
 * not make are re-signed with the signing key, so that only the check they are about
 * can refuse them.
 *
 *   make_vectors > tests/vectors/envelope-v1.json
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "job.h"
#include "schema.h"
#include "seal.h"

/* Every case's job was written at ISSUED_AT and is checked an hour later. */
#define ISSUED_AT 1796320800
#define CHECKED_AT (ISSUED_AT + 3600)
#define LIFETIME (7 * 24 * 3600)

static const char invoice_schema[] =
    "{\"type\": \"array\", \"prefixItems\": [{\"type\": \"object\", \"properties\": {"
    " \"card_token\": {\"type\": \"string\", \"secret\": true},"
    " \"cards\": {\"type\": \"array\", \"items\": {\"type\": \"string\", \"secret\": true}},"
    " \"numbers\": {\"items\": {\"x-jobgate-big-integers\": true}}}}],"
    " \"items\": {\"x-jobgate-big-integers\": true}}";

static const char plain_schema[] = "{\"type\": \"array\"}";

struct keys {
    struct envelope_signer current, previous, retired;
    unsigned char current_public[32], previous_public[32];
    unsigned char workers_secret[32], workers_public[32];
    unsigned char other_secret[32], other_public[32];
};

static struct keys keys;
static struct sealer *sealer;

static void fail(const char *what)
{
    fprintf(stderr, "make_vectors: %s\n", what);
    exit(1);
}

static void make_signer(struct envelope_signer *signer, const char *kid, unsigned char *public_key)
{
    unsigned char ignored[32];

    snprintf(signer->kid, sizeof(signer->kid), "%s", kid);
    crypto_sign_keypair(public_key != NULL ? public_key : ignored, signer->secret_key);
}

static json_t *b64(const unsigned char *bytes)
{
    char buffer[64];
    struct text text;

    text_init(&text, buffer, sizeof(buffer));
    keyfile_append_base64url(&text, bytes, 32);
    return json_string(text_finish(&text));
}

static struct schema *compile(const char *source)
{
    json_t *document = json_loads(source, 0, NULL);
    struct schema *schema = schema_compile(document, "vectors", NULL, NULL, NULL);

    json_decref(document);
    if (schema == NULL)
        fail("schema does not compile");
    return schema;
}

/* What a job is made of before the gateway builds it. */
struct spec {
    const char *id;
    const char *queue;
    const char *class_name;
    const char *body; /* the producer's request body */
    const char *schema;
    const struct envelope_signer *signer;
    const unsigned char *seal_to; /* the workers' public key */
    const char *seal_kid;
    int64_t issued_at;
};

/* The request the gateway would make for spec, with its schema compiled into *schema. */
static struct envelope_request request_for(const struct spec *spec, struct schema **schema,
                                           struct envelope_recipient *recipient)
{
    struct envelope_request request;

    *schema = compile(spec->schema);
    *recipient = (struct envelope_recipient){
        .kid = spec->seal_kid != NULL ? spec->seal_kid : "workers",
        .public_key = spec->seal_to != NULL ? spec->seal_to : keys.workers_public,
        .sealer = sealer,
        .slot = spec->seal_to == keys.other_public ? 1 : 0,
        .now_ms = 1000,
    };
    request = (struct envelope_request){
        .id = spec->id,
        .tenant = "acme",
        .subject = "billing-service",
        .queue = spec->queue,
        .issued_at = spec->issued_at != 0 ? spec->issued_at : ISSUED_AT,
        .schema = *schema,
        .recipient = recipient,
        .signer = spec->signer != NULL ? spec->signer : &keys.current,
    };
    request.expires_at = request.issued_at + LIFETIME;
    return request;
}

static void parse_spec(const struct spec *spec, struct job *job)
{
    const char *detail;

    if (job_parse(spec->body, strlen(spec->body), job, &detail) != JOB_OK)
        fail(detail);
    if (strcmp(job->class_name, spec->class_name) != 0)
        fail("class differs from the body's");
}

/*
 * The payloads of count jobs signed together, as the gateway signs the jobs of one loop
 * turn, parsed back: payloads[i] is spec[i]'s.
 */
static void build_batch(const struct spec *specs, size_t count, json_t **payloads)
{
    struct envelope_draft drafts[8];
    const struct envelope_draft *signed_drafts[8];
    struct envelope_batch *batch = envelope_batch_new();

    if (batch == NULL || count > 8)
        fail("batch");
    for (size_t i = 0; i < count; i++) {
        struct envelope_recipient recipient;
        struct schema *schema;
        struct envelope_request request = request_for(&specs[i], &schema, &recipient);
        struct job job;

        parse_spec(&specs[i], &job);
        if (envelope_draft(&drafts[i], &job, &request) != ENVELOPE_OK)
            fail(specs[i].id);
        signed_drafts[i] = &drafts[i];
        job_release(&job);
        schema_free(schema);
    }
    if (envelope_batch_sign(batch, signed_drafts, count,
                            specs[0].signer != NULL ? specs[0].signer : &keys.current) != 0)
        fail("cannot sign a batch");
    for (size_t i = 0; i < count; i++) {
        size_t len;
        char *payload = envelope_batch_payload(batch, i, &drafts[i], specs[i].class_name,
                                               strlen(specs[i].class_name), &len);
        if (payload == NULL)
            fail("cannot write a payload");
        payloads[i] = json_loadb(payload, len, 0, NULL);
        free(payload);
        envelope_draft_release(&drafts[i]);
    }
    envelope_batch_free(batch);
}

/* The envelope of a job built and signed alone, parsed back from its payload. */
static json_t *build(const struct spec *spec)
{
    json_t *payload;

    build_batch(spec, 1, &payload);
    return payload;
}

static json_t *cases;

static json_t *envelope_of(json_t *payload)
{
    return json_array_get(json_object_get(payload, "args"), 0);
}

/* Adds a case from a payload object, written out as the gateway writes payloads. */
static json_t *add_case(const char *name, json_t *payload, const char *queue,
                        const char *class_name)
{
    const char *payload_class = json_string_value(json_object_get(payload, "class"));
    json_t *envelope = envelope_of(payload);
    enum envelope_status status;
    json_t *entry;
    size_t len;
    char *text;

    if (json_is_object(envelope) && json_array_size(json_object_get(payload, "args")) == 1)
        text =
            envelope_payload(payload_class, strlen(payload_class), envelope, 4096, &len, &status);
    else
        text = json_dumps(payload, JSON_COMPACT);
    if (text == NULL)
        fail("cannot write a payload");
    entry = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "queue", queue, "class", class_name,
                      "payload", text);
    free(text);
    json_array_append_new(cases, entry);
    json_decref(payload);
    return entry;
}

static void expect_ok(json_t *entry, const char *args)
{
    const char *payload = json_string_value(json_object_get(entry, "payload"));
    json_t *envelope = envelope_of(json_loads(payload, 0, NULL));

    json_object_set_new(entry, "ok", json_true());
    json_object_set(entry, "id", json_object_get(envelope, "id"));
    json_object_set(entry, "tenant", json_object_get(envelope, "tenant"));
    json_object_set(entry, "sub", json_object_get(envelope, "sub"));
    json_object_set_new(entry, "args", json_loads(args, JSON_DECODE_ANY, NULL));
    json_decref(json_loads(payload, 0, NULL));
}

static void expect_refused(json_t *entry, const char *reason)
{
    json_object_set_new(entry, "ok", json_false());
    json_object_set_new(entry, "reason", json_string(reason));
}

static void resign(json_t *payload, const struct envelope_signer *signer)
{
    if (envelope_sign(envelope_of(payload), signer) != 0)
        fail("cannot sign");
}

#define INVOICE_ARGS                                                                               \
    "[{\"invoice_id\":\"inv-1042\",\"amount\":19.99,\"card_token\":\"tok_visa_4242\","             \
    "\"note\":\"na\\u00efve \\u2603 \\\"quoted\\\" back\\\\slash /path \\u0007 tab\\tnew\\n\","    \
    "\"numbers\":[1,0.0,1e21,5e-7,1.5e300,0.1,-42,9007199254740991],"                              \
    "\"\\u20ac\":1,\"\\r\":2,\"1\":3,\"\\ud83d\\ude00\":4,\"\\u00f6\":5,\"\\ufb33\":6}]"

static const char *invoice_body(void)
{
    return "{\"class\":\"SendInvoice\",\"args\":" INVOICE_ARGS "}";
}

static struct spec invoice(const char *id)
{
    return (struct spec){.id = id,
                         .queue = "invoices",
                         .class_name = "SendInvoice",
                         .body = invoice_body(),
                         .schema = invoice_schema};
}

static void valid_cases(void)
{
    struct spec spec = invoice("01a23d8c-0000-7000-8000-000000000001");
    json_t *entry = add_case("valid: a secret sealed, numbers and names to canonicalize",
                             build(&spec), "invoices", "SendInvoice");
    expect_ok(entry, INVOICE_ARGS);

    spec = (struct spec){.id = "01a23d8c-0000-7000-8000-000000000002",
                         .queue = "mailers",
                         .class_name = "SendWelcomeEmail",
                         .body = "{\"class\":\"SendWelcomeEmail\",\"args\":[{\"user_id\":42},"
                                 "\"en\",true,null,[]]}",
                         .schema = plain_schema};
    entry = add_case("valid: no secrets, several arguments", build(&spec), "mailers",
                     "SendWelcomeEmail");
    expect_ok(entry, "[{\"user_id\":42},\"en\",true,null,[]]");

    spec = invoice("01a23d8c-0000-7000-8000-000000000003");
    spec.body = "{\"class\":\"SendInvoice\",\"args\":[{\"cards\":[\"tok_a\",\"\",\"tok_\\u00e9\"],"
                "\"card_token\":\"tok_b\"},\"second\"]}";
    entry = add_case("valid: secrets in an array and an empty secret", build(&spec), "invoices",
                     "SendInvoice");
    expect_ok(entry, "[{\"cards\":[\"tok_a\",\"\",\"tok_\\u00e9\"],\"card_token\":\"tok_b\"},"
                     "\"second\"]");

    spec = invoice("01a23d8c-0000-7000-8000-000000000004");
    spec.signer = &keys.previous;
    entry = add_case("valid: signed by the previous key, still configured", build(&spec),
                     "invoices", "SendInvoice");
    expect_ok(entry, INVOICE_ARGS);

    spec = invoice("01a23d8c-0000-7000-8000-000000000005");
    spec.body = "{\"class\":\"SendInvoice\",\"args\":[{\"card_token\":\"tok_c\"},"
                "9007199254740993,-1234567890123456789]}";
    entry = add_case("valid: integers beyond 2^53 that the schema allows", build(&spec), "invoices",
                     "SendInvoice");
    expect_ok(entry, "[{\"card_token\":\"tok_c\"},9007199254740993,-1234567890123456789]");
    /* JSON.parse rounds these, so a JavaScript worker cannot verify the job. */
    json_object_set_new(entry, "javascript_reason", json_string("bad-signature"));
}

static json_t *invoice_payload(const char *id)
{
    struct spec spec = invoice(id);
    return build(&spec);
}

static void set_string(json_t *object, const char *key, const char *value)
{
    json_object_set_new(object, key, json_string(value));
}

static void refused_cases(void)
{
    json_t *payload, *other, *entry, *envelope, *first;

    entry = add_case(
        "unsigned: a job written straight into Redis",
        json_loads("{\"class\":\"SendInvoice\",\"args\":[{\"invoice_id\":\"x\"}]}", 0, NULL),
        "invoices", "SendInvoice");
    expect_refused(entry, "unsigned");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000010");
    json_array_append_new(json_object_get(payload, "args"), json_string("extra"));
    entry = add_case("unsigned: a second argument beside the envelope", payload, "invoices",
                     "SendInvoice");
    expect_refused(entry, "unsigned");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000011");
    json_object_set_new(envelope_of(payload), "jobgate", json_integer(2));
    resign(payload, &keys.current);
    entry = add_case("unsupported-version: version 2", payload, "invoices", "SendInvoice");
    expect_refused(entry, "unsupported-version");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000012");
    json_object_set_new(envelope_of(payload), "priority", json_integer(1));
    resign(payload, &keys.current);
    entry = add_case("malformed: an extra member", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000013");
    json_object_del(envelope_of(payload), "exp");
    resign(payload, &keys.current);
    entry = add_case("malformed: no exp", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000014");
    set_string(envelope_of(payload), "sig", "not+base64url/");
    entry = add_case("malformed: sig is not base64url", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000015");
    json_array_append_new(json_object_get(envelope_of(payload), "sealed"),
                          json_string("/0/no_such_field"));
    resign(payload, &keys.current);
    entry = add_case("malformed: a sealed pointer to nothing", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000016");
    resign(payload, &keys.retired);
    entry = add_case("unknown-key: signed by a key no worker holds", payload, "invoices",
                     "SendInvoice");
    expect_refused(entry, "unknown-key");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000017");
    first = json_array_get(json_object_get(envelope_of(payload), "args"), 0);
    set_string(first, "invoice_id", "inv-1043");
    entry = add_case("bad-signature: one byte of the arguments changed", payload, "invoices",
                     "SendInvoice");
    expect_refused(entry, "bad-signature");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000018");
    first = json_array_get(json_object_get(envelope_of(payload), "args"), 0);
    json_object_set_new(first, "amount", json_real(19.98));
    entry = add_case("bad-signature: a number changed", payload, "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000019");
    set_string(payload, "class", "RefundInvoice");
    set_string(envelope_of(payload), "class", "RefundInvoice");
    entry = add_case("bad-signature: the class changed", payload, "invoices", "RefundInvoice");
    expect_refused(entry, "bad-signature");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000020");
    set_string(envelope_of(payload), "queue", "mailers");
    entry = add_case("bad-signature: the queue changed", payload, "mailers", "SendInvoice");
    expect_refused(entry, "bad-signature");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000021");
    json_object_set_new(envelope_of(payload), "exp", json_integer(ISSUED_AT + 2 * LIFETIME));
    entry = add_case("bad-signature: the expiry pushed back", payload, "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000022");
    first = json_array_get(json_object_get(envelope_of(payload), "args"), 0);
    envelope = json_object_get(first, "card_token");
    set_string(envelope, "ct", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    entry = add_case("bad-signature: a sealed value replaced", payload, "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000023");
    set_string(payload, "class", "RefundInvoice");
    entry = add_case("wrong-class: the payload's class is not the envelope's", payload, "invoices",
                     "RefundInvoice");
    expect_refused(entry, "wrong-class");

    entry = add_case("wrong-class: run as another class",
                     invoice_payload("01a23d8c-0000-7000-8000-000000000024"), "invoices",
                     "RefundInvoice");
    expect_refused(entry, "wrong-class");

    entry =
        add_case("wrong-queue: taken from another queue",
                 invoice_payload("01a23d8c-0000-7000-8000-000000000025"), "mailers", "SendInvoice");
    expect_refused(entry, "wrong-queue");

    struct spec spec = invoice("01a23d8c-0000-7000-8000-000000000026");
    spec.issued_at = CHECKED_AT - LIFETIME - 1;
    entry = add_case("expired: past exp", build(&spec), "invoices", "SendInvoice");
    expect_refused(entry, "expired");

    spec = invoice("01a23d8c-0000-7000-8000-000000000027");
    spec.seal_to = keys.other_public;
    spec.seal_kid = "workers-elsewhere";
    entry = add_case("unknown-seal-key: sealed to another team's workers", build(&spec), "invoices",
                     "SendInvoice");
    expect_refused(entry, "unknown-seal-key");

    /* Re-signed: only the sealing context can refuse these. */
    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000028");
    other = invoice_payload("01a23d8c-0000-7000-8000-000000000029");
    first = json_array_get(json_object_get(envelope_of(payload), "args"), 0);
    json_object_set(first, "card_token",
                    json_object_get(json_array_get(json_object_get(envelope_of(other), "args"), 0),
                                    "card_token"));
    json_decref(other);
    resign(payload, &keys.current);
    entry = add_case("unseal-failed: a sealed value moved from another job", payload, "invoices",
                     "SendInvoice");
    expect_refused(entry, "unseal-failed");

    spec = invoice("01a23d8c-0000-7000-8000-000000000030");
    spec.body = "{\"class\":\"SendInvoice\",\"args\":[{\"cards\":[\"tok_a\",\"tok_b\"]}]}";
    payload = build(&spec);
    json_t *cards =
        json_object_get(json_array_get(json_object_get(envelope_of(payload), "args"), 0), "cards");
    json_t *card = json_incref(json_array_get(cards, 0));
    json_array_set(cards, 0, json_array_get(cards, 1));
    json_array_set_new(cards, 1, card);
    resign(payload, &keys.current);
    entry = add_case("unseal-failed: two sealed values swapped between fields", payload, "invoices",
                     "SendInvoice");
    expect_refused(entry, "unseal-failed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000031");
    set_string(envelope_of(payload), "queue", "mailers");
    resign(payload, &keys.current);
    entry = add_case("unseal-failed: moved to another queue", payload, "mailers", "SendInvoice");
    expect_refused(entry, "unseal-failed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000032");
    set_string(payload, "class", "RefundInvoice");
    set_string(envelope_of(payload), "class", "RefundInvoice");
    resign(payload, &keys.current);
    entry = add_case("unseal-failed: moved to another class", payload, "invoices", "RefundInvoice");
    expect_refused(entry, "unseal-failed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000033");
    first = json_array_get(json_object_get(envelope_of(payload), "args"), 0);
    envelope = json_object_get(first, "card_token");
    char ct[256];
    snprintf(ct, sizeof(ct), "%s", json_string_value(json_object_get(envelope, "ct")));
    ct[0] = ct[0] == 'A' ? 'B' : 'A';
    set_string(envelope, "ct", ct);
    resign(payload, &keys.current);
    entry =
        add_case("unseal-failed: a ciphertext byte flipped", payload, "invoices", "SendInvoice");
    expect_refused(entry, "unseal-failed");
}

static json_t *proof_of(json_t *payload)
{
    return json_object_get(envelope_of(payload), "proof");
}

static json_t *path_of(json_t *payload)
{
    return json_object_get(proof_of(payload), "path");
}

/* Five invoices signed together; the tree of five has a leaf with no sibling. */
#define BATCH_SIZE 5

static void batch_of_five(json_t **payloads, const char *first_id)
{
    struct spec specs[BATCH_SIZE];
    char ids[BATCH_SIZE][40];

    for (size_t i = 0; i < BATCH_SIZE; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%.34s%02zu", first_id, i);
        specs[i] = invoice(ids[i]);
    }
    build_batch(specs, BATCH_SIZE, payloads);
}

static void release_all(json_t **payloads, size_t count)
{
    for (size_t i = 0; i < count; i++)
        json_decref(payloads[i]);
}

static void batch_cases(void)
{
    json_t *payloads[BATCH_SIZE], *entry, *payload, *hash;
    char flipped[64];

    batch_of_five(payloads, "01a23d8c-0000-7000-8000-0000000001");
    static const char *const names[BATCH_SIZE] = {
        "valid: the first of five jobs under one signature",
        "valid: the second of five jobs under one signature",
        "valid: the third of five jobs under one signature",
        "valid: the fourth of five jobs under one signature",
        "valid: the last of five jobs under one signature, a leaf with no sibling",
    };
    for (size_t i = 0; i < BATCH_SIZE; i++) {
        entry = add_case(names[i], json_incref(payloads[i]), "invoices", "SendInvoice");
        expect_ok(entry, INVOICE_ARGS);
    }
    release_all(payloads, BATCH_SIZE);

    batch_of_five(payloads, "01a23d8c-0000-7000-8000-0000000002");
    hash = json_array_get(path_of(payloads[1]), 1);
    snprintf(flipped, sizeof(flipped), "%s", json_string_value(hash));
    flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
    json_string_set(hash, flipped);
    entry = add_case("bad-signature: a hash in the proof's path changed", json_incref(payloads[1]),
                     "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    json_object_set_new(proof_of(payloads[2]), "index", json_integer(3));
    entry = add_case("bad-signature: the proof's index changed", json_incref(payloads[2]),
                     "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    json_object_set_new(proof_of(payloads[4]), "size", json_integer(6));
    entry = add_case("bad-signature: the proof's size changed, so the path is too short",
                     json_incref(payloads[4]), "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    json_array_remove(path_of(payloads[0]), 2);
    entry = add_case("bad-signature: the proof's path lacks a hash", json_incref(payloads[0]),
                     "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    json_array_append(path_of(payloads[3]), json_array_get(path_of(payloads[3]), 0));
    entry = add_case("bad-signature: the proof's path has a hash too many",
                     json_incref(payloads[3]), "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");
    release_all(payloads, BATCH_SIZE);

    batch_of_five(payloads, "01a23d8c-0000-7000-8000-0000000003");
    json_object_set(envelope_of(payloads[0]), "proof", proof_of(payloads[1]));
    entry = add_case("bad-signature: the proof of another job under the same signature",
                     json_incref(payloads[0]), "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    json_object_set_new(json_array_get(json_object_get(envelope_of(payloads[2]), "args"), 0),
                        "invoice_id", json_string("inv-1043"));
    entry = add_case("bad-signature: arguments changed in a job signed with others",
                     json_incref(payloads[2]), "invoices", "SendInvoice");
    expect_refused(entry, "bad-signature");

    payload = payloads[3];
    json_object_set_new(proof_of(payload), "index", json_integer(BATCH_SIZE));
    entry = add_case("malformed: the proof's index is not below its size", json_incref(payload),
                     "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = payloads[4];
    hash = json_array_get(path_of(payload), 0);
    snprintf(flipped, sizeof(flipped), "%.42s", json_string_value(hash));
    json_string_set(hash, flipped);
    entry = add_case("malformed: a hash in the proof's path is 31 bytes", json_incref(payload),
                     "invoices", "SendInvoice");
    expect_refused(entry, "malformed");
    release_all(payloads, BATCH_SIZE);

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000040");
    json_object_del(envelope_of(payload), "proof");
    entry = add_case("malformed: no proof", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000041");
    json_object_set_new(proof_of(payload), "root", json_string("AAAA"));
    entry = add_case("malformed: a proof with an extra member", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000042");
    json_object_set_new(proof_of(payload), "size", json_integer(0));
    entry = add_case("malformed: a proof of size 0", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000043");
    json_object_set_new(proof_of(payload), "size", json_integer(65537));
    entry =
        add_case("malformed: a proof of more than 65536 jobs", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000044");
    for (int i = 0; i < 17; i++)
        json_array_append_new(path_of(payload),
                              json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    entry = add_case("malformed: a path of 17 hashes", payload, "invoices", "SendInvoice");
    expect_refused(entry, "malformed");

    payload = invoice_payload("01a23d8c-0000-7000-8000-000000000045");
    json_object_set_new(proof_of(payload), "index", json_real(0.5));
    entry = add_case("malformed: a proof's index that is not an integer", payload, "invoices",
                     "SendInvoice");
    expect_refused(entry, "malformed");
}

int main(void)
{
    json_t *document;

    if (sodium_init() < 0)
        fail("libsodium");
    json_object_seed(1);
    make_signer(&keys.current, "sign-current", keys.current_public);
    make_signer(&keys.previous, "sign-previous", keys.previous_public);
    make_signer(&keys.retired, "sign-retired", NULL);
    crypto_box_keypair(keys.workers_public, keys.workers_secret);
    crypto_box_keypair(keys.other_public, keys.other_secret);
    sealer = sealer_new(2, 60000);
    cases = json_array();

    valid_cases();
    refused_cases();
    batch_cases();

    document = json_pack("{s:i, s:s, s:I, s:{s:o, s:o}, s:{s:o}, s:o}", "envelope", 1, "note",
                         "made by tests/vectors/make_vectors.c; see workers/ENVELOPE.md", "now",
                         (json_int_t)CHECKED_AT, "signing_keys", "sign-current",
                         b64(keys.current_public), "sign-previous", b64(keys.previous_public),
                         "sealing_keys", "workers", b64(keys.workers_secret), "cases", cases);
    if (document == NULL || json_dumpf(document, stdout, JSON_INDENT(2)) != 0)
        fail("cannot write the vectors");
    putchar('\n');
    json_decref(document);
    sealer_free(sealer);
    return 0;
}
