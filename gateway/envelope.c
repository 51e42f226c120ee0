/*
 * envelope: the signed, sealed Resque payload and its checks; see envelope.h and
 * workers/ENVELOPE.md, which this file follows member for member.
 */
#include "envelope.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jcs.h"
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
    char stack_buffer[256];
    size_t capacity = sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *buffer = capacity <= sizeof(stack_buffer) ? stack_buffer : malloc(capacity);
    struct text text;
    json_t *string = NULL;

    if (buffer == NULL)
        return NULL;
    text_init(&text, buffer, capacity);
    text_append_base64url(&text, bytes, len);
    if (text_finish(&text) != NULL)
        string = json_stringn_nocheck(buffer, text.len);
    if (buffer != stack_buffer)
        free(buffer);
    return string;
}

/* Sets object's member name to value, taking value's reference even when it fails. */
static int set_member(json_t *object, const char *name, json_t *value)
{
    return value == NULL ? -1 : json_object_set_new_nocheck(object, name, value);
}

/* The sealed value that stands for a secret: {"kid", "epk", "nonce", "ct"}; or NULL. */
static json_t *sealed_value(const char *kid, const unsigned char epk[SEAL_KEY_BYTES],
                            const unsigned char nonce[SEAL_NONCE_BYTES],
                            const unsigned char *sealed, size_t sealed_len)
{
    json_t *value = json_object();

    if (value == NULL || set_member(value, "kid", json_string(kid)) != 0 ||
        set_member(value, "epk", base64url_string(epk, SEAL_KEY_BYTES)) != 0 ||
        set_member(value, "nonce", base64url_string(nonce, SEAL_NONCE_BYTES)) != 0 ||
        set_member(value, "ct", base64url_string(sealed, sealed_len)) != 0) {
        json_decref(value);
        return NULL;
    }
    return value;
}

struct sealing {
    const struct job *job;
    const struct envelope_request *request;
    json_t *pointers;
};

/* Most secrets are short, and so are their contexts: these fit on the stack. */
#define SHORT_SECRET_BYTES 256
#define SHORT_CONTEXT_BYTES 1024

/* Replaces one secret string with its sealed value and records its pointer. */
static int seal_one(void *data, const struct schema_secret *secret)
{
    struct sealing *sealing = data;
    const struct envelope_recipient *recipient = sealing->request->recipient;
    const char *plain = json_string_value(secret->value);
    size_t plain_len = json_string_length(secret->value);
    unsigned char epk[SEAL_KEY_BYTES], nonce[SEAL_NONCE_BYTES];
    unsigned char short_sealed[SHORT_SECRET_BYTES + SEAL_TAG_BYTES];
    char short_context[SHORT_CONTEXT_BYTES];
    unsigned char *sealed = short_sealed;
    char *context_buffer = short_context;
    size_t context_capacity = sizeof(short_context);
    struct text context;
    json_t *value = NULL;
    int result = ENVELOPE_NO_MEMORY;

    if (plain_len > SHORT_SECRET_BYTES && (sealed = malloc(plain_len + SEAL_TAG_BYTES)) == NULL)
        return ENVELOPE_NO_MEMORY;
    text_init(&context, context_buffer, context_capacity);
    append_seal_context(&context, sealing->job->class_name, sealing->job->class_len,
                        secret->pointer, sealing->request->id, sealing->request->queue);
    if (context.overflowed) {
        context_buffer = malloc(SEAL_CONTEXT_BYTES);
        if (context_buffer == NULL)
            goto out;
        text_init(&context, context_buffer, SEAL_CONTEXT_BYTES);
        append_seal_context(&context, sealing->job->class_name, sealing->job->class_len,
                            secret->pointer, sealing->request->id, sealing->request->queue);
    }
    if (text_finish(&context) == NULL ||
        sealer_seal(recipient->sealer, recipient->slot, recipient->public_key, recipient->now_ms,
                    (const unsigned char *)context.base, context.len, (const unsigned char *)plain,
                    plain_len, epk, nonce, sealed) != 0) {
        result = ENVELOPE_NOT_SEALED;
        goto out;
    }
    value = sealed_value(recipient->kid, epk, nonce, sealed, plain_len + SEAL_TAG_BYTES);
    if (value == NULL ||
        json_array_append_new(sealing->pointers, json_string(secret->pointer)) != 0)
        goto out;
    /* The replacement is the parent's now, or already released if that failed. */
    result = schema_secret_replace(secret, value) == 0 ? 0 : ENVELOPE_NO_MEMORY;
    value = NULL;
out:
    json_decref(value);
    sodium_memzero(sealed, plain_len + SEAL_TAG_BYTES);
    if (sealed != short_sealed)
        free(sealed);
    if (context_buffer != short_context)
        free(context_buffer);
    return result;
}

/* Seals every secret in job's args; fills pointers with where they were. */
static enum envelope_status seal_secrets(struct job *job, const struct envelope_request *request,
                                         json_t *pointers)
{
    struct sealing sealing = {job, request, pointers};
    int result;

    if (request->schema == NULL || !schema_has_secrets(request->schema))
        return ENVELOPE_OK;
    if (request->recipient == NULL)
        return ENVELOPE_NOT_SEALED;
    result = schema_each_secret(request->schema, job->args, seal_one, &sealing);
    if (result == SCHEMA_SECRETS_NO_MEMORY)
        return ENVELOPE_NO_MEMORY;
    if (result == -1)
        return ENVELOPE_NOT_SEALED;
    return (enum envelope_status)result;
}

/*
 * Writes what builder writes into a buffer of first_capacity bytes, growing it until
 * it fits or passes ENVELOPE_MAX_BYTES. builder returns an envelope_status. Returns
 * the malloc'd text or NULL with *status set.
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
        *status = builder(&text, data);
        if (*status != ENVELOPE_OK) {
            free(buffer);
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

/* Appends the canonical form of value; an overflow is left for write_growing to see. */
static int append_canonical(struct text *out, const json_t *value)
{
    enum jcs_status status = jcs_append(out, value, JCS_EXACT_INTEGERS);

    if (status == JCS_NO_MEMORY)
        return ENVELOPE_NO_MEMORY;
    return status == JCS_OK || status == JCS_OVERFLOW ? ENVELOPE_OK : ENVELOPE_NOT_CANONICAL;
}

static void append_member(struct text *out, const char *name, const char *value, size_t len)
{
    text_append_str(out, name);
    text_append_json_string(out, value, len);
}

struct draft_writer {
    const struct job *job;
    const struct envelope_request *request;
    const json_t *pointers;
    size_t proof_at, sig_at;
};

/*
 * Writes the envelope's canonical form without proof and sig. The members are written
 * in RFC 8785's order by hand; text escapes strings as jcs does.
 */
static int write_draft(struct text *out, void *data)
{
    struct draft_writer *writer = data;
    const struct envelope_request *request = writer->request;
    int status;

    text_append_str(out, "{\"args\":");
    if ((status = append_canonical(out, writer->job->args)) != ENVELOPE_OK)
        return status;
    append_member(out, ",\"class\":", writer->job->class_name, writer->job->class_len);
    text_append_str(out, ",\"exp\":");
    text_append_int(out, request->expires_at);
    text_append_str(out, ",\"iat\":");
    text_append_int(out, request->issued_at);
    append_member(out, ",\"id\":", request->id, strlen(request->id));
    text_append_str(out, ",\"jobgate\":1");
    append_member(out, ",\"kid\":", request->signer->kid, strlen(request->signer->kid));
    writer->proof_at = out->len;
    append_member(out, ",\"queue\":", request->queue, strlen(request->queue));
    text_append_str(out, ",\"sealed\":");
    if ((status = append_canonical(out, writer->pointers)) != ENVELOPE_OK)
        return status;
    writer->sig_at = out->len;
    append_member(out, ",\"sub\":", request->subject, strlen(request->subject));
    append_member(out, ",\"tenant\":", request->tenant, strlen(request->tenant));
    text_append_str(out, "}");
    return ENVELOPE_OK;
}

enum envelope_status envelope_draft(struct envelope_draft *draft, struct job *job,
                                    const struct envelope_request *request)
{
    json_t *pointers = json_array();
    struct draft_writer writer = {job, request, pointers, 0, 0};
    enum envelope_status status;
    size_t sealed_count;

    if (pointers == NULL)
        return ENVELOPE_NO_MEMORY;
    status = seal_secrets(job, request, pointers);
    sealed_count = json_array_size(pointers);
    if (status == ENVELOPE_OK) {
        /* Reals may print longer than written ("1e20"); sealed values grow by a third. */
        size_t capacity = 2 * job->source_len + sealed_count * SEALED_OVERHEAD + 1024;
        draft->text = write_growing(capacity, write_draft, &writer, &draft->len, &status);
    }
    json_decref(pointers);
    if (status != ENVELOPE_OK)
        return status;
    draft->proof_at = writer.proof_at;
    draft->sig_at = writer.sig_at;
    return ENVELOPE_OK;
}

void envelope_draft_release(struct envelope_draft *draft)
{
    free(draft->text);
    draft->text = NULL;
}

/* Signs a tree's root: the signature, in base64url, goes to signature. */
static void sign_root(const unsigned char root[MERKLE_HASH_BYTES],
                      const struct envelope_signer *signer,
                      char signature[ENVELOPE_SIGNATURE_TEXT + 1])
{
    unsigned char message[sizeof(ENVELOPE_TREE_LABEL) - 1 + MERKLE_HASH_BYTES];
    unsigned char bytes[SIGNATURE_BYTES];
    struct text text;

    memcpy(message, ENVELOPE_TREE_LABEL, sizeof(ENVELOPE_TREE_LABEL) - 1);
    memcpy(message + sizeof(ENVELOPE_TREE_LABEL) - 1, root, MERKLE_HASH_BYTES);
    crypto_sign_detached(bytes, NULL, message, sizeof(message), signer->secret_key);
    text_init(&text, signature, ENVELOPE_SIGNATURE_TEXT + 1);
    text_append_base64url(&text, bytes, sizeof(bytes));
    text_finish(&text);
}

struct envelope_batch {
    struct merkle_hasher *hasher;
    struct merkle_tree tree;
    unsigned char leaves[MERKLE_MAX_LEAVES][MERKLE_HASH_BYTES];
    char signature[ENVELOPE_SIGNATURE_TEXT + 1]; /* base64url */
};

struct envelope_batch *envelope_batch_new(void)
{
    struct envelope_batch *batch = malloc(sizeof(*batch));

    if (batch == NULL)
        return NULL;
    batch->hasher = merkle_hasher_new();
    if (batch->hasher == NULL) {
        free(batch);
        return NULL;
    }
    return batch;
}

void envelope_batch_free(struct envelope_batch *batch)
{
    if (batch == NULL)
        return;
    merkle_hasher_free(batch->hasher);
    free(batch);
}

int envelope_batch_sign(struct envelope_batch *batch, const struct envelope_draft *const *drafts,
                        size_t count, const struct envelope_signer *signer)
{
    const unsigned char *leaves[MERKLE_MAX_LEAVES];

    if (count == 0 || count > MERKLE_MAX_LEAVES)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (merkle_hash_leaf(batch->hasher, drafts[i]->text, drafts[i]->len, batch->leaves[i]) != 0)
            return -1;
        leaves[i] = batch->leaves[i];
    }
    if (merkle_build(batch->hasher, &batch->tree, leaves, count) != 0)
        return -1;
    sign_root(batch->tree.root, signer, batch->signature);
    return 0;
}

/* A proof member as written: {"index","path","size"} with every hash 43 characters. */
#define PROOF_TEXT_BYTES (64 + MERKLE_MAX_PATH * 46)

static void append_proof(struct text *out, const struct merkle_tree *tree, size_t index)
{
    text_append_str(out, ",\"proof\":{\"index\":");
    text_append_uint(out, index);
    text_append_str(out, ",\"path\":[");
    for (size_t i = 0; i < tree->path_lengths[index]; i++) {
        text_append_str(out, i == 0 ? "\"" : ",\"");
        text_append_base64url(out, tree->paths[index][i], MERKLE_HASH_BYTES);
        text_append_str(out, "\"");
    }
    text_append_str(out, "],\"size\":");
    text_append_uint(out, tree->size);
    text_append_str(out, "}");
}

char *envelope_batch_payload(const struct envelope_batch *batch, size_t index,
                             const struct envelope_draft *draft, const char *class_name,
                             size_t class_len, size_t *len)
{
    size_t capacity = 6 * class_len + draft->len + PROOF_TEXT_BYTES + ENVELOPE_SIGNATURE_TEXT + 64;
    char *buffer = malloc(capacity);
    struct text out;

    if (buffer == NULL)
        return NULL;
    /* Resque's own key order, class then args; the envelope is canonical. */
    text_init(&out, buffer, capacity);
    append_member(&out, "{\"class\":", class_name, class_len);
    text_append_str(&out, ",\"args\":[");
    text_append(&out, draft->text, draft->proof_at);
    append_proof(&out, &batch->tree, index);
    text_append(&out, draft->text + draft->proof_at, draft->sig_at - draft->proof_at);
    text_append_str(&out, ",\"sig\":\"");
    text_append_str(&out, batch->signature);
    text_append_str(&out, "\"");
    text_append(&out, draft->text + draft->sig_at, draft->len - draft->sig_at);
    text_append_str(&out, "]}");
    if (text_finish(&out) == NULL) {
        free(buffer);
        return NULL;
    }
    *len = out.len;
    return buffer;
}

char *envelope_build(struct job *job, const struct envelope_request *request, size_t *len,
                     enum envelope_status *status)
{
    struct envelope_draft draft;
    const struct envelope_draft *drafts[1] = {&draft};
    struct envelope_batch *batch;
    char *payload = NULL;

    *status = envelope_draft(&draft, job, request);
    if (*status != ENVELOPE_OK)
        return NULL;
    *status = ENVELOPE_NO_MEMORY;
    batch = envelope_batch_new();
    if (batch != NULL && envelope_batch_sign(batch, drafts, 1, request->signer) == 0)
        payload = envelope_batch_payload(batch, 0, &draft, job->class_name, job->class_len, len);
    if (payload != NULL)
        *status = ENVELOPE_OK;
    envelope_batch_free(batch);
    envelope_draft_release(&draft);
    return payload;
}

/* The canonical form of envelope without proof and sig. */
static int write_signed_part(struct text *out, void *envelope)
{
    json_t *signed_part = json_copy(envelope);
    int status = ENVELOPE_NO_MEMORY;

    if (signed_part != NULL) {
        json_object_del(signed_part, "proof");
        json_object_del(signed_part, "sig");
        status = append_canonical(out, signed_part);
    }
    json_decref(signed_part);
    return status;
}

/*
 * The leaf hash of envelope. Returns ENVELOPE_OK, ENVELOPE_NOT_CANONICAL, or
 * ENVELOPE_NO_MEMORY.
 */
static enum envelope_status leaf_of(const json_t *envelope, struct merkle_hasher *hasher,
                                    unsigned char leaf[MERKLE_HASH_BYTES])
{
    enum envelope_status status;
    size_t len;
    char *text = write_growing(4096, write_signed_part, (void *)envelope, &len, &status);

    if (text == NULL)
        return status;
    status = merkle_hash_leaf(hasher, text, len, leaf) == 0 ? ENVELOPE_OK : ENVELOPE_NO_MEMORY;
    free(text);
    return status;
}

int envelope_sign(json_t *envelope, const struct envelope_signer *signer)
{
    unsigned char leaf[MERKLE_HASH_BYTES];
    char signature[ENVELOPE_SIGNATURE_TEXT + 1];
    struct merkle_hasher *hasher = merkle_hasher_new();
    enum envelope_status status = ENVELOPE_NO_MEMORY;

    if (hasher != NULL && json_object_set_new(envelope, "kid", json_string(signer->kid)) == 0)
        status = leaf_of(envelope, hasher, leaf);
    merkle_hasher_free(hasher);
    if (status != ENVELOPE_OK)
        return -1;
    /* A tree of one: the root is the leaf. */
    sign_root(leaf, signer, signature);
    if (set_member(envelope, "proof",
                   json_pack("{s:i, s:[], s:i}", "index", 0, "path", "size", 1)) != 0 ||
        set_member(envelope, "sig", json_string(signature)) != 0)
        return -1;
    return 0;
}

struct payload {
    const char *class_name;
    size_t class_len;
    const json_t *envelope;
};

static int write_payload(struct text *out, void *data)
{
    const struct payload *payload = data;
    int status;

    append_member(out, "{\"class\":", payload->class_name, payload->class_len);
    text_append_str(out, ",\"args\":[");
    if ((status = append_canonical(out, payload->envelope)) != ENVELOPE_OK)
        return status;
    text_append_str(out, "]}");
    return ENVELOPE_OK;
}

char *envelope_payload(const char *class_name, size_t class_len, const json_t *envelope,
                       size_t size_hint, size_t *len, enum envelope_status *status)
{
    struct payload payload = {class_name, class_len, envelope};

    return write_growing(size_hint, write_payload, &payload, len, status);
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

/* The most leaves and path hashes a proof may name (workers/ENVELOPE.md). */
#define PROOF_MAX_SIZE 65536
#define PROOF_MAX_PATH 16

/*
 * Decodes a well-formed proof's path into path; returns its length, or -1 when the
 * proof is not {"index", "path", "size"} as ENVELOPE.md describes.
 */
static int decode_proof(const json_t *proof, unsigned char (*path)[MERKLE_HASH_BYTES],
                        uint64_t *index, uint64_t *size)
{
    static const char *const names[] = {"index", "path", "size"};
    static const json_type types[] = {JSON_INTEGER, JSON_ARRAY, JSON_INTEGER};
    const json_t *hashes = json_object_get(proof, "path");
    json_int_t leaf, leaves;

    if (!has_exactly(proof, names, types, 3) || json_array_size(hashes) > PROOF_MAX_PATH)
        return -1;
    leaf = json_integer_value(json_object_get(proof, "index"));
    leaves = json_integer_value(json_object_get(proof, "size"));
    if (leaves < 1 || leaves > PROOF_MAX_SIZE || leaf < 0 || leaf >= leaves)
        return -1;
    for (size_t i = 0; i < json_array_size(hashes); i++) {
        const json_t *hash = json_array_get(hashes, i);
        if (!json_is_string(hash) ||
            keyfile_decode(json_string_value(hash), json_string_length(hash), path[i],
                           MERKLE_HASH_BYTES) != 0)
            return -1;
    }
    *index = (uint64_t)leaf;
    *size = (uint64_t)leaves;
    return (int)json_array_size(hashes);
}

/* The envelope's members, and whether each is well formed. */
static enum envelope_refusal check_shape(const json_t *envelope, const char **detail)
{
    static const char *const names[] = {"jobgate", "id",   "tenant", "sub", "queue", "class", "iat",
                                        "exp",     "args", "sealed", "kid", "proof", "sig"};
    static const json_type types[] = {
        JSON_INTEGER, JSON_STRING, JSON_STRING, JSON_STRING, JSON_STRING, JSON_STRING, JSON_INTEGER,
        JSON_INTEGER, JSON_ARRAY,  JSON_ARRAY,  JSON_STRING, JSON_OBJECT, JSON_STRING};
    unsigned char signature[SIGNATURE_BYTES], path[PROOF_MAX_PATH][MERKLE_HASH_BYTES];
    const char *sig = string_of(envelope, "sig");
    const json_t *sealed = json_object_get(envelope, "sealed");
    uint64_t index, size;

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
    if (decode_proof(json_object_get(envelope, "proof"), path, &index, &size) < 0) {
        *detail = "proof is not an index, a size and a path of 32-byte hashes";
        return ENVELOPE_MALFORMED;
    }
    for (size_t i = 0; i < json_array_size(sealed); i++) {
        json_t *parent;
        char key[SCHEMA_MAX_SECRET_POINTER];
        size_t position;
        const json_t *pointer = json_array_get(sealed, i);
        if (!json_is_string(pointer) ||
            resolve_pointer(json_object_get(envelope, "args"), json_string_value(pointer), &parent,
                            key, sizeof(key), &position) == NULL) {
            *detail = "an entry of sealed is not a pointer to a value in args";
            return ENVELOPE_MALFORMED;
        }
    }
    return ENVELOPE_VALID;
}

/* The proof leads from the envelope's leaf to a root, and kid's signature covers it. */
static enum envelope_refusal
check_signature(const json_t *envelope, const struct envelope_keyring *keys, const char **detail)
{
    const struct keyfile_key *key =
        find_key(keys->signing, keys->signing_count, string_of(envelope, "kid"));
    unsigned char path[PROOF_MAX_PATH][MERKLE_HASH_BYTES], leaf[MERKLE_HASH_BYTES];
    unsigned char message[sizeof(ENVELOPE_TREE_LABEL) - 1 + MERKLE_HASH_BYTES];
    unsigned char signature[SIGNATURE_BYTES];
    const char *sig = string_of(envelope, "sig");
    uint64_t index = 0, size = 0;
    struct merkle_hasher *hasher;
    enum envelope_status status;
    int path_len, found;

    if (key == NULL) {
        *detail = "no public key with the envelope's kid is configured";
        return ENVELOPE_UNKNOWN_KEY;
    }
    keyfile_decode(sig, strlen(sig), signature, sizeof(signature));
    path_len = decode_proof(json_object_get(envelope, "proof"), path, &index, &size);
    memcpy(message, ENVELOPE_TREE_LABEL, sizeof(ENVELOPE_TREE_LABEL) - 1);

    hasher = merkle_hasher_new();
    status = hasher != NULL ? leaf_of(envelope, hasher, leaf) : ENVELOPE_NO_MEMORY;
    found = status != ENVELOPE_OK
                ? -1
                : merkle_root_from_path(
                      hasher, leaf, index, size, (const unsigned char(*)[MERKLE_HASH_BYTES])path,
                      (size_t)path_len, message + sizeof(ENVELOPE_TREE_LABEL) - 1);
    merkle_hasher_free(hasher);
    if (status == ENVELOPE_NOT_CANONICAL) {
        /* jobgate signs only what has a canonical form, so this cannot be its job. */
        *detail = "the envelope has no canonical form";
        return ENVELOPE_BAD_SIGNATURE;
    }
    if (found < 0) {
        *detail = "out of memory";
        return ENVELOPE_BAD_SIGNATURE;
    }
    if (found == MERKLE_NO_ROOT) {
        *detail = "the proof's path does not fit its index and size";
        return ENVELOPE_BAD_SIGNATURE;
    }
    if (crypto_sign_verify_detached(signature, message, sizeof(message), key->key) != 0) {
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
