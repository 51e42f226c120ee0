/*
 * envelope: the signed, sealed Resque payload and its checks; see envelope.h and
 * workers/ENVELOPE.md, which this file follows member for member.
 */
#include "envelope.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jcs.h"
#include "serialize.h"
#include "text.h"

#define SIGNATURE_BYTES crypto_sign_BYTES
/* A sealed value's members besides its ciphertext, in base64url, and their names. */
#define SEALED_OVERHEAD 256

void envelope_new_job_id(char id[ENVELOPE_JOB_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char bytes[16];
    struct timespec now;
    uint64_t unix_ms;
    size_t out = 0;

    clock_gettime(CLOCK_REALTIME, &now);
    unix_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;

    /* 48 bits of milliseconds, version 7, 74 random bits, variant 10. */
    randombytes_buf(bytes + 6, sizeof(bytes) - 6);
    for (int i = 0; i < 6; i++)
        bytes[i] = (unsigned char)(unix_ms >> (40 - 8 * i));
    bytes[6] = (unsigned char)(0x70 | (bytes[6] & 0x0f));
    bytes[8] = (unsigned char)(0x80 | (bytes[8] & 0x3f));

    for (size_t i = 0; i < sizeof(bytes); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            id[out++] = '-';
        id[out++] = hex[bytes[i] >> 4];
        id[out++] = hex[bytes[i] & 0xf];
    }
    id[out] = '\0';
}

/*
 * The associated data that ties a sealed value to its place: the canonical form of
 * {"class", "field", "id", "queue"}. Member names are already in RFC 8785's order and
 * text escapes strings exactly as jcs does.
 */
static void append_seal_context(struct text *out, const char *class_name, size_t class_len,
                                const char *pointer, const char *id, const char *queue)
{
    text_append_str(out, "{\"class\":");
    text_append_json_string(out, class_name, class_len);
    text_append_str(out, ",\"field\":");
    text_append_json_string(out, pointer, strlen(pointer));
    text_append_str(out, ",\"id\":");
    text_append_json_string(out, id, strlen(id));
    text_append_str(out, ",\"queue\":");
    text_append_json_string(out, queue, strlen(queue));
    text_append_str(out, "}");
}

/* An AD buffer: every string may grow six-fold when escaped. */
#define SEAL_CONTEXT_BYTES (6 * (SCHEMA_MAX_SECRET_POINTER + 2 * 256) + 64)

/* A JSON string of bytes in base64url, or NULL when out of memory. */
static json_t *base64url_string(const unsigned char *bytes, size_t len)
{
    size_t capacity = sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *buffer = malloc(capacity);
    struct text text;
    json_t *string = NULL;

    if (buffer == NULL)
        return NULL;
    text_init(&text, buffer, capacity);
    keyfile_append_base64url(&text, bytes, len);
    if (text_finish(&text) != NULL)
        string = json_stringn_nocheck(buffer, text.len);
    free(buffer);
    return string;
}

struct sealing {
    const struct job *job;
    const struct envelope_request *request;
    json_t *pointers;
    char *context; /* SEAL_CONTEXT_BYTES */
};

/* Replaces one secret string with its sealed value and records its pointer. */
static int seal_one(void *data, const struct schema_secret *secret)
{
    struct sealing *sealing = data;
    const struct envelope_recipient *recipient = sealing->request->recipient;
    const char *plain = json_string_value(secret->value);
    size_t plain_len = json_string_length(secret->value);
    unsigned char epk[SEAL_KEY_BYTES], nonce[SEAL_NONCE_BYTES];
    unsigned char *sealed = malloc(plain_len + SEAL_TAG_BYTES);
    struct text context;
    json_t *value = NULL;
    int result = ENVELOPE_NO_MEMORY;

    if (sealed == NULL)
        return ENVELOPE_NO_MEMORY;
    text_init(&context, sealing->context, SEAL_CONTEXT_BYTES);
    append_seal_context(&context, sealing->job->class_name, sealing->job->class_len,
                        secret->pointer, sealing->request->id, sealing->request->queue);
    if (text_finish(&context) == NULL ||
        sealer_seal(recipient->sealer, recipient->slot, recipient->public_key, recipient->now_ms,
                    (const unsigned char *)context.base, context.len, (const unsigned char *)plain,
                    plain_len, epk, nonce, sealed) != 0) {
        result = ENVELOPE_NOT_SEALED;
        goto out;
    }
    value = json_pack("{s:s, s:o*, s:o*, s:o*}", "kid", recipient->kid, "epk",
                      base64url_string(epk, sizeof(epk)), "nonce",
                      base64url_string(nonce, sizeof(nonce)), "ct",
                      base64url_string(sealed, plain_len + SEAL_TAG_BYTES));
    if (value == NULL || json_object_size(value) != 4 ||
        json_array_append_new(sealing->pointers, json_string(secret->pointer)) != 0)
        goto out;
    /* The replacement is the parent's now, or already released if that failed. */
    result = schema_secret_replace(secret, value) == 0 ? 0 : ENVELOPE_NO_MEMORY;
    value = NULL;
out:
    json_decref(value);
    sodium_memzero(sealed, plain_len + SEAL_TAG_BYTES);
    free(sealed);
    return result;
}

/* Seals every secret in job's args; fills pointers with where they were. */
static enum envelope_status seal_secrets(struct job *job, const struct envelope_request *request,
                                         json_t *pointers)
{
    struct sealing sealing = {job, request, pointers, NULL};
    int result;

    if (request->schema == NULL || !schema_has_secrets(request->schema))
        return ENVELOPE_OK;
    if (request->recipient == NULL)
        return ENVELOPE_NOT_SEALED;
    sealing.context = malloc(SEAL_CONTEXT_BYTES);
    if (sealing.context == NULL)
        return ENVELOPE_NO_MEMORY;
    result = schema_each_secret(request->schema, job->args, seal_one, &sealing);
    free(sealing.context);
    if (result == SCHEMA_SECRETS_NO_MEMORY)
        return ENVELOPE_NO_MEMORY;
    if (result == -1)
        return ENVELOPE_NOT_SEALED;
    return (enum envelope_status)result;
}

/*
 * Writes what builder writes into a buffer of first_capacity bytes, growing it until
 * it fits or passes ENVELOPE_MAX_BYTES. Returns the malloc'd text or NULL.
 */
static char *write_growing(size_t first_capacity, int (*builder)(struct text *, void *), void *data,
                           size_t *len, enum envelope_status *status)
{
    for (size_t capacity = first_capacity; capacity <= ENVELOPE_MAX_BYTES; capacity *= 4) {
        char *buffer = malloc(capacity);
        struct text text;

        if (buffer == NULL) {
            *status = ENVELOPE_NO_MEMORY;
            return NULL;
        }
        text_init(&text, buffer, capacity);
        if (builder(&text, data) != 0) {
            free(buffer);
            *status = ENVELOPE_NO_MEMORY;
            return NULL;
        }
        if (text_finish(&text) != NULL) {
            *len = text.len;
            return buffer;
        }
        free(buffer);
    }
    *status = ENVELOPE_TOO_BIG;
    return NULL;
}

static int write_canonical(struct text *out, void *envelope)
{
    enum jcs_status status = jcs_append(out, envelope, JCS_EXACT_INTEGERS);
    return status == JCS_OK || status == JCS_OVERFLOW ? 0 : -1;
}

int envelope_sign(json_t *envelope, const struct envelope_signer *signer)
{
    unsigned char signature[SIGNATURE_BYTES];
    enum envelope_status status;
    size_t len;
    char *canonical;

    if (json_object_set_new(envelope, "kid", json_string(signer->kid)) != 0)
        return -1;
    json_object_del(envelope, "sig");
    canonical = write_growing(4096, write_canonical, envelope, &len, &status);
    if (canonical == NULL)
        return -1;
    crypto_sign_detached(signature, NULL, (const unsigned char *)canonical, len,
                         signer->secret_key);
    free(canonical);
    return json_object_set_new(envelope, "sig", base64url_string(signature, sizeof(signature)));
}

struct payload {
    const char *class_name;
    size_t class_len;
    const json_t *envelope;
};

static int write_payload(struct text *out, void *data)
{
    const struct payload *payload = data;

    /* Resque's own key order: class, then args. */
    text_append_str(out, "{\"class\":");
    text_append_json_string(out, payload->class_name, payload->class_len);
    text_append_str(out, ",\"args\":[");
    serialize_json(out, payload->envelope, SERIALIZE_PAYLOAD);
    text_append_str(out, "]}");
    return 0;
}

char *envelope_payload(const char *class_name, size_t class_len, const json_t *envelope,
                       size_t size_hint, size_t *len, enum envelope_status *status)
{
    struct payload payload = {class_name, class_len, envelope};

    *status = ENVELOPE_OK;
    return write_growing(size_hint, write_payload, &payload, len, status);
}

char *envelope_build(struct job *job, const struct envelope_request *request, size_t *len,
                     enum envelope_status *status)
{
    json_t *pointers = json_array();
    json_t *envelope = NULL;
    char *text = NULL;
    size_t sealed_count;

    *status = ENVELOPE_NO_MEMORY;
    if (pointers == NULL)
        return NULL;
    *status = seal_secrets(job, request, pointers);
    if (*status != ENVELOPE_OK) {
        json_decref(pointers);
        return NULL;
    }
    sealed_count = json_array_size(pointers);
    /* Insertion order is the order a person reading resque-web wants. */
    envelope = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s%, s:I, s:I, s:O, s:o}", "jobgate",
                         ENVELOPE_VERSION, "id", request->id, "tenant", request->tenant, "sub",
                         request->subject, "queue", request->queue, "class", job->class_name,
                         job->class_len, "iat", (json_int_t)request->issued_at, "exp",
                         (json_int_t)request->expires_at, "args", job->args, "sealed", pointers);
    *status = ENVELOPE_NO_MEMORY;
    if (envelope != NULL && envelope_sign(envelope, request->signer) == 0) {
        /* Reals may print longer than written ("1e20"); sealed values grow by a third. */
        size_t capacity = 2 * job->source_len + sealed_count * SEALED_OVERHEAD + 1024;
        text = envelope_payload(job->class_name, job->class_len, envelope, capacity, len, status);
    }
    json_decref(envelope);
    return text;
}

/* Checking a job, in ENVELOPE.md's order. */

const char *envelope_refusal_name(enum envelope_refusal refusal)
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
    return names[refusal];
}

static const struct keyfile_key *find_key(const struct keyfile_key *keys, size_t count,
                                          const char *kid)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(keys[i].kid, kid) == 0)
            return &keys[i];
    return NULL;
}

/*
 * The value at pointer (RFC 6901) inside root, or NULL. Array indexes are decimal
 * without leading zeros; "~0" and "~1" stand for "~" and "/".
 */
static json_t *resolve_pointer(json_t *root, const char *pointer, json_t **parent, char *key,
                               size_t key_size, size_t *index)
{
    json_t *value = root;
    const char *at = pointer;

    if (*at == '\0')
        return NULL; /* the args array itself is never a secret */
    while (*at == '/') {
        struct text segment;
        const char *end = at + 1;

        text_init(&segment, key, key_size);
        for (; *end != '\0' && *end != '/'; end++) {
            if (*end == '~' && (end[1] == '0' || end[1] == '1')) {
                text_append(&segment, end[1] == '0' ? "~" : "/", 1);
                end++;
            } else if (*end == '~') {
                return NULL;
            } else {
                text_append(&segment, end, 1);
            }
        }
        if (text_finish(&segment) == NULL)
            return NULL;
        *parent = value;
        if (json_is_object(value)) {
            value = json_object_getn(value, segment.base, segment.len);
        } else if (json_is_array(value)) {
            size_t position = 0;
            if (segment.len == 0 || segment.len > 9 || (segment.base[0] == '0' && segment.len > 1))
                return NULL;
            for (size_t i = 0; i < segment.len; i++) {
                if (segment.base[i] < '0' || segment.base[i] > '9')
                    return NULL;
                position = position * 10 + (size_t)(segment.base[i] - '0');
            }
            *index = position;
            value = json_array_get(value, position);
        } else {
            return NULL;
        }
        if (value == NULL)
            return NULL;
        at = end;
    }
    return *at == '\0' ? value : NULL;
}

/* Whether object has exactly the members named, each of the type given. */
static int has_exactly(const json_t *object, const char *const names[], const json_type types[],
                       size_t count)
{
    if (!json_is_object(object) || json_object_size(object) != count)
        return 0;
    for (size_t i = 0; i < count; i++) {
        const json_t *member = json_object_get(object, names[i]);
        if (member == NULL || json_typeof(member) != types[i])
            return 0;
    }
    return 1;
}

static const char *string_of(const json_t *object, const char *name)
{
    return json_string_value(json_object_get(object, name));
}

/* The envelope's members, and whether each is well formed. */
static enum envelope_refusal check_shape(const json_t *envelope, const char **detail)
{
    static const char *const names[] = {"jobgate", "id",  "tenant", "sub",    "queue", "class",
                                        "iat",     "exp", "args",   "sealed", "kid",   "sig"};
    static const json_type types[] = {JSON_INTEGER, JSON_STRING, JSON_STRING,  JSON_STRING,
                                      JSON_STRING,  JSON_STRING, JSON_INTEGER, JSON_INTEGER,
                                      JSON_ARRAY,   JSON_ARRAY,  JSON_STRING,  JSON_STRING};
    unsigned char signature[SIGNATURE_BYTES];
    const char *sig = string_of(envelope, "sig");
    const json_t *sealed = json_object_get(envelope, "sealed");

    if (json_integer_value(json_object_get(envelope, "jobgate")) != ENVELOPE_VERSION) {
        *detail = "the envelope's version is not 1";
        return ENVELOPE_UNSUPPORTED_VERSION;
    }
    if (!has_exactly(envelope, names, types, sizeof(names) / sizeof(names[0]))) {
        *detail = "a member of the envelope is missing, extra or of the wrong type";
        return ENVELOPE_MALFORMED;
    }
    if (keyfile_decode(sig, strlen(sig), signature, sizeof(signature)) != 0) {
        *detail = "sig is not 64 bytes of base64url";
        return ENVELOPE_MALFORMED;
    }
    for (size_t i = 0; i < json_array_size(sealed); i++) {
        json_t *parent;
        char key[SCHEMA_MAX_SECRET_POINTER];
        size_t index;
        const json_t *pointer = json_array_get(sealed, i);
        if (!json_is_string(pointer) ||
            resolve_pointer(json_object_get(envelope, "args"), json_string_value(pointer), &parent,
                            key, sizeof(key), &index) == NULL) {
            *detail = "an entry of sealed is not a pointer to a value in args";
            return ENVELOPE_MALFORMED;
        }
    }
    return ENVELOPE_VALID;
}

static enum envelope_refusal
check_signature(const json_t *envelope, const struct envelope_keyring *keys, const char **detail)
{
    const struct keyfile_key *key =
        find_key(keys->signing, keys->signing_count, string_of(envelope, "kid"));
    unsigned char signature[SIGNATURE_BYTES];
    const char *sig = string_of(envelope, "sig");
    enum envelope_status status;
    json_t *signed_part;
    char *canonical = NULL;
    size_t len;
    int verified;

    if (key == NULL) {
        *detail = "no public key with the envelope's kid is configured";
        return ENVELOPE_UNKNOWN_KEY;
    }
    keyfile_decode(sig, strlen(sig), signature, sizeof(signature));
    signed_part = json_copy((json_t *)envelope);
    if (signed_part != NULL && json_object_del(signed_part, "sig") == 0)
        canonical = write_growing(4096, write_canonical, signed_part, &len, &status);
    json_decref(signed_part);
    if (canonical == NULL) {
        /* jobgate signs only what has a canonical form, so this cannot be its job. */
        *detail = "the envelope has no canonical form";
        return ENVELOPE_BAD_SIGNATURE;
    }
    verified = crypto_sign_verify_detached(signature, (const unsigned char *)canonical, len,
                                           key->key) == 0;
    free(canonical);
    if (!verified) {
        *detail = "the signature does not verify";
        return ENVELOPE_BAD_SIGNATURE;
    }
    return ENVELOPE_VALID;
}

/* Opens the sealed value at pointer inside args (a copy the caller owns). */
static enum envelope_refusal open_one(json_t *args, const json_t *envelope, const char *pointer,
                                      const struct envelope_keyring *keys, const char **detail)
{
    static const char *const names[] = {"kid", "epk", "nonce", "ct"};
    static const json_type types[] = {JSON_STRING, JSON_STRING, JSON_STRING, JSON_STRING};
    unsigned char epk[SEAL_KEY_BYTES], nonce[SEAL_NONCE_BYTES];
    char key_name[SCHEMA_MAX_SECRET_POINTER];
    enum envelope_refusal refusal = ENVELOPE_UNSEAL_FAILED;
    const struct keyfile_key *key;
    json_t *parent = NULL, *value, *opened = NULL;
    unsigned char *sealed = NULL, *plain = NULL;
    char *context = NULL;
    size_t index = 0, ct_len, sealed_len;
    const char *ct;
    struct text ad;

    *detail = "a sealed value is malformed";
    value = resolve_pointer(args, pointer, &parent, key_name, sizeof(key_name), &index);
    if (!has_exactly(value, names, types, 4))
        return ENVELOPE_UNSEAL_FAILED;
    key = find_key(keys->sealing, keys->sealing_count, string_of(value, "kid"));
    if (key == NULL)
        return ENVELOPE_UNSEAL_FAILED;
    ct = string_of(value, "ct");
    ct_len = strlen(ct);
    sealed_len = ct_len * 3 / 4;
    if (sealed_len < SEAL_TAG_BYTES ||
        keyfile_decode(string_of(value, "epk"), strlen(string_of(value, "epk")), epk,
                       sizeof(epk)) != 0 ||
        keyfile_decode(string_of(value, "nonce"), strlen(string_of(value, "nonce")), nonce,
                       sizeof(nonce)) != 0 ||
        (sealed = malloc(sealed_len)) == NULL || (plain = malloc(sealed_len)) == NULL ||
        (context = malloc(SEAL_CONTEXT_BYTES)) == NULL ||
        keyfile_decode(ct, ct_len, sealed, sealed_len) != 0)
        goto out;

    text_init(&ad, context, SEAL_CONTEXT_BYTES);
    append_seal_context(&ad, string_of(envelope, "class"), strlen(string_of(envelope, "class")),
                        pointer, string_of(envelope, "id"), string_of(envelope, "queue"));
    *detail = "a sealed value does not open in this job's context";
    if (text_finish(&ad) == NULL || seal_open(key->key, epk, nonce, sealed, sealed_len,
                                              (const unsigned char *)ad.base, ad.len, plain) != 0)
        goto out;
    opened = json_stringn((const char *)plain, sealed_len - SEAL_TAG_BYTES);
    *detail = "a sealed value does not hold UTF-8 text";
    if (opened == NULL)
        goto out;
    if (json_is_object(parent) ? json_object_setn_new(parent, key_name, strlen(key_name), opened)
                               : json_array_set_new(parent, index, opened))
        goto out;
    refusal = ENVELOPE_VALID;
out:
    if (plain != NULL)
        sodium_memzero(plain, sealed_len);
    free(plain);
    free(sealed);
    free(context);
    return refusal;
}

/* The job the worker runs: the envelope's facts and the opened arguments. */
static enum envelope_refusal open_args(const json_t *envelope, const struct envelope_keyring *keys,
                                       json_t **opened, const char **detail)
{
    const json_t *sealed = json_object_get(envelope, "sealed");
    json_t *args = json_deep_copy(json_object_get(envelope, "args"));
    enum envelope_refusal refusal = ENVELOPE_VALID;

    *detail = "out of memory";
    if (args == NULL)
        return ENVELOPE_UNSEAL_FAILED;
    /* Every key first, so a missing key is named as such even beside a damaged value. */
    for (size_t i = 0; i < json_array_size(sealed); i++) {
        json_t *parent;
        char key_name[SCHEMA_MAX_SECRET_POINTER];
        size_t index;
        const char *kid =
            string_of(resolve_pointer(args, json_string_value(json_array_get(sealed, i)), &parent,
                                      key_name, sizeof(key_name), &index),
                      "kid");
        if (kid != NULL && find_key(keys->sealing, keys->sealing_count, kid) == NULL) {
            json_decref(args);
            *detail = "a sealed value names a workers' key this worker does not hold";
            return ENVELOPE_UNKNOWN_SEAL_KEY;
        }
    }
    for (size_t i = 0; i < json_array_size(sealed) && refusal == ENVELOPE_VALID; i++)
        refusal =
            open_one(args, envelope, json_string_value(json_array_get(sealed, i)), keys, detail);
    if (refusal != ENVELOPE_VALID) {
        json_decref(args);
        return refusal;
    }
    *opened = json_pack(
        "{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:o}", "id", json_object_get(envelope, "id"),
        "tenant", json_object_get(envelope, "tenant"), "sub", json_object_get(envelope, "sub"),
        "queue", json_object_get(envelope, "queue"), "class", json_object_get(envelope, "class"),
        "iat", json_object_get(envelope, "iat"), "exp", json_object_get(envelope, "exp"), "kid",
        json_object_get(envelope, "kid"), "args", args);
    if (*opened == NULL) {
        *detail = "out of memory";
        return ENVELOPE_UNSEAL_FAILED;
    }
    return ENVELOPE_VALID;
}

enum envelope_refusal envelope_open(const json_t *payload, const struct envelope_keyring *keys,
                                    const struct envelope_expect *expect, json_t **opened,
                                    const char **detail)
{
    const json_t *args = json_object_get(payload, "args");
    const json_t *envelope = json_array_get(args, 0);
    enum envelope_refusal refusal;

    *opened = NULL;
    if (json_array_size(args) != 1 || !json_is_object(envelope) ||
        json_object_get(envelope, "jobgate") == NULL) {
        *detail = "args is not one envelope: the job was not written by jobgate";
        return ENVELOPE_UNSIGNED;
    }
    if ((refusal = check_shape(envelope, detail)) != ENVELOPE_VALID ||
        (refusal = check_signature(envelope, keys, detail)) != ENVELOPE_VALID)
        return refusal;

    const char *class_name = string_of(envelope, "class");
    if (!json_is_string(json_object_get(payload, "class")) ||
        strcmp(string_of(payload, "class"), class_name) != 0 ||
        (expect->class_name != NULL && strcmp(expect->class_name, class_name) != 0)) {
        *detail = "the job's class is not the one the envelope names";
        return ENVELOPE_WRONG_CLASS;
    }
    if (expect->queue != NULL && strcmp(expect->queue, string_of(envelope, "queue")) != 0) {
        *detail = "the job was taken from a queue other than the one the envelope names";
        return ENVELOPE_WRONG_QUEUE;
    }
    /* exp is whatever was signed: compared so that nothing can overflow. */
    if (expect->now - expect->leeway_seconds >
        json_integer_value(json_object_get(envelope, "exp"))) {
        *detail = "the job's expiry has passed";
        return ENVELOPE_EXPIRED;
    }
    return open_args(envelope, keys, opened, detail);
}
