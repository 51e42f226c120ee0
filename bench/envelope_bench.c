/*
 * envelope_bench: what signing and sealing cost per job. Times, in microseconds per
 * call: an Ed25519 signature alone, sealing one field alone, the canonical form of a
 * typical envelope; then, per job, what the gateway does after validation (seal the
 * secrets, draft the canonical envelope, sign, write the payload) for a job with no,
 * one and four secret fields, signed alone and sixteen to a signature; and a worker's
 * envelope_open. Build with `make $(BUILD)/envelope_bench`.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "jcs.h"
#include "job.h"
#include "schema.h"
#include "seal.h"

#define ITERATIONS 100000

static const char schema_text[] =
    "{\"type\": \"array\", \"prefixItems\": [{\"type\": \"object\", \"properties\": {"
    " \"t1\": {\"type\": \"string\", \"secret\": true},"
    " \"t2\": {\"type\": \"string\", \"secret\": true},"
    " \"t3\": {\"type\": \"string\", \"secret\": true},"
    " \"t4\": {\"type\": \"string\", \"secret\": true}}}]}";

/* A password reset job, as bench/run.sh sends, with 0, 1 and 4 of its strings secret. */
static const char *const bodies[] = {
    "{\"class\":\"SendPasswordReset\",\"args\":[{\"user_id\":42,\"email\":\"ada@example.com\","
    "\"token\":\"rst_5f2b8c1e9a7d4036b1e8c2f49d0a6e73\",\"expires_at\":\"2026-12-03T21:00:00Z\"}]}",
    "{\"class\":\"SendPasswordReset\",\"args\":[{\"user_id\":42,\"email\":\"ada@example.com\","
    "\"t1\":\"rst_5f2b8c1e9a7d4036b1e8c2f49d0a6e73\",\"expires_at\":\"2026-12-03T21:00:00Z\"}]}",
    "{\"class\":\"SendPasswordReset\",\"args\":[{\"user_id\":42,\"email\":\"ada@example.com\","
    "\"t1\":\"rst_5f2b8c1e9a7d4036b1e8c2f49d0a6e73\",\"t2\":\"tok_visa_4242424242\","
    "\"t3\":\"pin_1234\",\"t4\":\"otp_987654\",\"expires_at\":\"2026-12-03T21:00:00Z\"}]}",
};

static struct envelope_signer signer;
static unsigned char signer_public[32], workers_public[32], workers_secret[32];
static struct sealer *sealer;
static struct schema *schema;
static struct envelope_batch *batch;

static double now_us(void)
{
    struct timespec clock;
    clock_gettime(CLOCK_MONOTONIC, &clock);
    return (double)clock.tv_sec * 1e6 + (double)clock.tv_nsec / 1e3;
}

static struct envelope_request request_for(struct envelope_recipient *recipient)
{
    *recipient = (struct envelope_recipient){"workers", workers_public, sealer, 0, 1000};
    return (struct envelope_request){
        .id = "01a23d8c-0000-7000-8000-000000000001",
        .tenant = "acme",
        .subject = "billing-service",
        .queue = "mailers",
        .issued_at = 1796320800,
        .expires_at = 1796925600,
        .schema = schema,
        .recipient = recipient,
        .signer = &signer,
    };
}

/*
 * Microseconds per job to parse body, seal, draft, sign per_signature jobs at a time and
 * write each payload, as the gateway does; *len is a payload's size.
 */
static double pipeline_us(const char *body, size_t per_signature, size_t *len)
{
    struct envelope_draft drafts[16];
    const struct envelope_draft *signing[16];
    struct envelope_recipient recipient;
    struct envelope_request request = request_for(&recipient);
    double start = now_us();

    for (int round = 0; round < ITERATIONS / (int)per_signature; round++) {
        for (size_t i = 0; i < per_signature; i++) {
            const char *detail;
            struct job job;
            if (job_parse(body, strlen(body), &job, &detail) != JOB_OK ||
                envelope_draft(&drafts[i], &job, &request) != ENVELOPE_OK)
                exit(1);
            job_release(&job);
            signing[i] = &drafts[i];
        }
        if (envelope_batch_sign(batch, signing, per_signature, &signer) != 0)
            exit(1);
        for (size_t i = 0; i < per_signature; i++) {
            free(envelope_batch_payload(batch, i, &drafts[i], "SendPasswordReset", 17, len));
            envelope_draft_release(&drafts[i]);
        }
    }
    return (now_us() - start) / (double)(ITERATIONS / (int)per_signature * (int)per_signature);
}

/* A payload of body signed alone, for the worker's side. */
static char *build(const char *body, size_t *len)
{
    struct envelope_recipient recipient;
    struct envelope_request request = request_for(&recipient);
    enum envelope_status status;
    const char *detail;
    struct job job;
    char *payload;

    if (job_parse(body, strlen(body), &job, &detail) != JOB_OK)
        return NULL;
    payload = envelope_build(&job, &request, len, &status);
    job_release(&job);
    return payload;
}

/* Microseconds per job_parse of body, to subtract from the build timings. */
static double parse_us(const char *body)
{
    double start = now_us();
    for (int i = 0; i < ITERATIONS; i++) {
        struct job job;
        const char *detail;
        job_parse(body, strlen(body), &job, &detail);
        job_release(&job);
    }
    return (now_us() - start) / ITERATIONS;
}

int main(void)
{
    static const char *const labels[] = {"no secret", "1 secret", "4 secrets"};
    unsigned char signature[64], sealed[64], epk[32], nonce[24];
    const char message[] = "a typical envelope of about five hundred bytes, padded out ......."
                           "................................................................";
    char *payload;
    size_t len;
    double start;

    if (sodium_init() < 0)
        return 1;
    json_t *document = json_loads(schema_text, 0, NULL);
    schema = schema_compile(document, "bench", NULL, NULL, NULL);
    json_decref(document);
    snprintf(signer.kid, sizeof(signer.kid), "bench");
    crypto_sign_keypair(signer_public, signer.secret_key);
    crypto_box_keypair(workers_public, workers_secret);
    sealer = sealer_new(1, 60000);
    batch = envelope_batch_new();
    if (schema == NULL || sealer == NULL || batch == NULL)
        return 1;

    start = now_us();
    for (int i = 0; i < ITERATIONS; i++)
        crypto_sign_detached(signature, NULL, (const unsigned char *)message, 500,
                             signer.secret_key);
    printf("ed25519 sign, 500 bytes       %6.2f us\n", (now_us() - start) / ITERATIONS);

    start = now_us();
    for (int i = 0; i < ITERATIONS; i++)
        sealer_seal(sealer, 0, workers_public, 1000, (const unsigned char *)message, 120,
                    (const unsigned char *)"rst_5f2b8c1e9a7d4036b1e8c2f49d0a6e73", 36, epk, nonce,
                    sealed);
    printf("seal one field (epoch key)    %6.2f us\n", (now_us() - start) / ITERATIONS);

    start = now_us();
    for (int i = 0; i < ITERATIONS / 10; i++)
        crypto_box_seal(sealed, (const unsigned char *)"rst_5f2b8c1e9a7d4036b1e8c2f49d0a6e73", 36,
                        workers_public);
    printf("  for comparison, a sealed box %6.2f us\n", (now_us() - start) / (ITERATIONS / 10));

    payload = build(bodies[1], &len);
    json_t *parsed = json_loadb(payload, len, 0, NULL);
    json_t *envelope = json_array_get(json_object_get(parsed, "args"), 0);
    char buffer[4096];
    struct text text;
    start = now_us();
    for (int i = 0; i < ITERATIONS; i++) {
        text_init(&text, buffer, sizeof(buffer));
        jcs_append(&text, envelope, JCS_EXACT_INTEGERS);
    }
    printf("canonical form of an envelope %6.2f us (%zu bytes)\n", (now_us() - start) / ITERATIONS,
           text.len);

    for (size_t per_signature = 1; per_signature <= 16; per_signature += 15) {
        for (size_t b = 0; b < 3; b++) {
            double parse = parse_us(bodies[b]);
            double total = pipeline_us(bodies[b], per_signature, &len);
            printf("seal, draft, sign, write: %-9s %2zu per signature %6.2f us per job "
                   "(payload %zu bytes)\n",
                   labels[b], per_signature, total - parse, len);
        }
    }

    struct keyfile_key signing = {"bench", {0}}, sealing = {"workers", {0}};
    memcpy(signing.key, signer_public, 32);
    memcpy(sealing.key, workers_secret, 32);
    struct envelope_keyring keyring = {&signing, 1, &sealing, 1};
    struct envelope_expect expect = {"SendPasswordReset", "mailers", 1796320800, 0};
    const char *detail;
    start = now_us();
    for (int i = 0; i < ITERATIONS; i++) {
        json_t *opened;
        if (envelope_open(parsed, &keyring, &expect, &opened, &detail) != ENVELOPE_VALID)
            return 1;
        json_decref(opened);
    }
    printf("envelope_open, 1 secret       %6.2f us per job (a worker's check)\n",
           (now_us() - start) / ITERATIONS);

    json_decref(parsed);
    free(payload);
    sealer_free(sealer);
    schema_free(schema);
    envelope_batch_free(batch);
    return 0;
}
