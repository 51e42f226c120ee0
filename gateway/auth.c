/*
 * auth: verifies JWT bearer tokens and mints them for tools and tests.
 *
 * Owns the keyring (one key per kid, pinned to one algorithm, asymmetric keys parsed once
 * into an EVP_PKEY and HMAC secrets keyed once into an EVP_MAC_CTX that each verification
 * duplicates) and the per-thread cache of verified tokens. A keyring is immutable once the
 * config that built it is loaded, so any number of threads may verify against it at once;
 * a cache belongs to one thread.
 *
 * Tokens are taken apart here (strict base64url, then jansson), not by libjwt:
 * libjwt 1.10 accepts unsigned tokens and algorithm confusion and never checks exp, and
 * reading the token ourselves keeps every decision about validity in this file. libjwt is
 * only used by auth_mint(), where it signs correctly.
 */
#include "auth.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

/* A config names a handful of keys; the bound keeps a broken one from growing without end. */
#define MAX_KEYS 256
#define MAX_KID_BYTES 256
#define MAX_PEM_BYTES 65536
#define MIN_RSA_BITS 2048
/* JWA ES256 signatures are R and S, each a 32-byte big-endian integer, concatenated. */
#define ES256_COORDINATE_BYTES 32
#define CACHE_WAYS 4
#define CACHE_HASH_BYTES 32

enum key_kind {
    KEY_HMAC,
    KEY_RSA_PKCS1,
    KEY_ECDSA_P256,
};

struct algorithm {
    const char *name;
    enum key_kind kind;
    const char *digest;
    jwt_alg_t jwt_alg;
    size_t min_secret_bytes; /* HMAC only: RFC 7518 section 3.2, the hash's size */
};

static const struct algorithm algorithms[] = {
    {"HS256", KEY_HMAC, "SHA256", JWT_ALG_HS256, 32},
    {"HS384", KEY_HMAC, "SHA384", JWT_ALG_HS384, 48},
    {"HS512", KEY_HMAC, "SHA512", JWT_ALG_HS512, 64},
    {"RS256", KEY_RSA_PKCS1, "SHA256", JWT_ALG_RS256, 0},
    {"ES256", KEY_ECDSA_P256, "SHA256", JWT_ALG_ES256, 0},
};

struct auth_key {
    char *kid;
    size_t kid_len;
    const struct algorithm *algorithm;
    /* Keyed once; verification duplicates it, so the shared copy is never written. */
    EVP_MAC_CTX *hmac_template;
    EVP_PKEY *public_key;
};

struct auth_keyring {
    struct auth_key *keys;
    size_t count;
    size_t capacity;
    /*
     * Unique for the life of the process. Cache entries remember it rather than the
     * keyring's address, which malloc may hand to the next keyring after a reload.
     */
    uint64_t generation;
};

struct cache_entry {
    unsigned char token_hash[CACHE_HASH_BYTES];
    uint64_t keyring_generation; /* 0: the slot is empty */
    uint64_t inserted;           /* insertion order, for eviction */
    int64_t not_before;          /* the later of nbf and iat, INT64_MIN when neither */
    struct principal principal;
};

struct auth_cache {
    struct cache_entry *entries;
    size_t set_count;
    size_t ways;
    uint64_t insertions;
    struct auth_cache_stats stats;
    /* A random key makes slot choice unpredictable, so nobody can aim tokens at one set. */
    unsigned char hash_key[crypto_generichash_KEYBYTES];
};

struct token_parts {
    const char *header;
    size_t header_len;
    const char *payload;
    size_t payload_len;
    const char *signature;
    size_t signature_len;
    size_t signing_input_len; /* "header.payload", from the start of the token */
};

static _Atomic uint64_t next_keyring_generation = 1;

static const struct algorithm *find_algorithm(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof algorithms / sizeof algorithms[0]; i++) {
        if (strlen(algorithms[i].name) == len && memcmp(algorithms[i].name, name, len) == 0)
            return &algorithms[i];
    }
    return NULL;
}

int auth_alg_supported(const char *alg)
{
    return find_algorithm(alg, strlen(alg)) != NULL;
}

static const struct auth_key *find_key(const struct auth_keyring *keyring, const char *kid,
                                       size_t len)
{
    for (size_t i = 0; i < keyring->count; i++) {
        const struct auth_key *key = &keyring->keys[i];
        if (key->kid_len == len && memcmp(key->kid, kid, len) == 0)
            return key;
    }
    return NULL;
}

static void free_key(struct auth_key *key)
{
    free(key->kid);
    EVP_MAC_CTX_free(key->hmac_template);
    EVP_PKEY_free(key->public_key);
}

struct auth_keyring *auth_keyring_new(void)
{
    struct auth_keyring *keyring = calloc(1, sizeof *keyring);
    if (keyring == NULL)
        return NULL;
    keyring->generation = atomic_fetch_add(&next_keyring_generation, 1);
    return keyring;
}

void auth_keyring_free(struct auth_keyring *keyring)
{
    if (keyring == NULL)
        return;
    for (size_t i = 0; i < keyring->count; i++)
        free_key(&keyring->keys[i]);
    free(keyring->keys);
    free(keyring);
}

static int load_hmac_secret(struct auth_key *key, const unsigned char *material, size_t len,
                            const char **reason)
{
    if (len < key->algorithm->min_secret_bytes) {
        *reason = "HMAC secret is shorter than its hash (32, 48 or 64 bytes for HS256/384/512)";
        return -1;
    }

    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        *reason = "HMAC is not available";
        return -1;
    }
    key->hmac_template = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (key->hmac_template == NULL) {
        *reason = "out of memory";
        return -1;
    }

    /* OSSL_PARAM wants a writable string even though it only reads it. */
    char digest[16];
    snprintf(digest, sizeof digest, "%s", key->algorithm->digest);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_init(key->hmac_template, material, len, params) != 1) {
        *reason = "cannot key HMAC";
        return -1;
    }
    return 0;
}

/* Reads one PEM "PUBLIC KEY" (SubjectPublicKeyInfo) block and nothing else. */
static EVP_PKEY *read_public_key_pem(const unsigned char *material, size_t len, const char **reason)
{
    if (len > MAX_PEM_BYTES) {
        *reason = "PEM key file is too large";
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(material, (int)len);
    if (bio == NULL) {
        *reason = "out of memory";
        return NULL;
    }

    char *name = NULL;
    char *header = NULL;
    unsigned char *der = NULL;
    long der_len = 0;
    EVP_PKEY *public_key = NULL;
    if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1) {
        *reason = "not a PEM file";
    } else if (strcmp(name, PEM_STRING_PUBLIC) != 0) {
        /* A private key or a certificate here is a mistake worth stopping for. */
        *reason = "PEM block is not a PUBLIC KEY";
    } else {
        const unsigned char *cursor = der;
        public_key = d2i_PUBKEY(NULL, &cursor, der_len);
        if (public_key == NULL || cursor != der + der_len) {
            EVP_PKEY_free(public_key);
            public_key = NULL;
            *reason = "cannot parse PEM public key";
        }
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    return public_key;
}

static int check_public_key_type(const EVP_PKEY *public_key, enum key_kind kind,
                                 const char **reason)
{
    if (kind == KEY_RSA_PKCS1) {
        /* "RSA-PSS" keys are a different type and are refused here on purpose. */
        if (!EVP_PKEY_is_a(public_key, "RSA")) {
            *reason = "RS256 needs an RSA public key";
            return -1;
        }
        if (EVP_PKEY_get_bits(public_key) < MIN_RSA_BITS) {
            *reason = "RSA key is shorter than 2048 bits";
            return -1;
        }
        return 0;
    }

    char group[64];
    size_t group_len = 0;
    if (!EVP_PKEY_is_a(public_key, "EC") ||
        EVP_PKEY_get_group_name(public_key, group, sizeof group, &group_len) != 1 ||
        OBJ_sn2nid(group) != NID_X9_62_prime256v1) {
        *reason = "ES256 needs an EC P-256 public key";
        return -1;
    }
    return 0;
}

static int load_public_key(struct auth_key *key, const unsigned char *material, size_t len,
                           const char **reason)
{
    key->public_key = read_public_key_pem(material, len, reason);
    if (key->public_key == NULL)
        return -1;
    return check_public_key_type(key->public_key, key->algorithm->kind, reason);
}

int auth_keyring_add(struct auth_keyring *keyring, const char *kid, const char *alg,
                     const unsigned char *material, size_t len, const char **reason)
{
    const char *ignored;
    if (reason == NULL)
        reason = &ignored;
    if (keyring == NULL || kid == NULL || alg == NULL || material == NULL) {
        *reason = "missing key argument";
        return -1;
    }

    size_t kid_len = strlen(kid);
    if (kid_len == 0 || kid_len > MAX_KID_BYTES) {
        *reason = "kid must be 1 to 256 bytes";
        return -1;
    }
    const struct algorithm *algorithm = find_algorithm(alg, strlen(alg));
    if (algorithm == NULL) {
        *reason = "unsupported alg (use HS256, HS384, HS512, RS256 or ES256)";
        return -1;
    }
    if (find_key(keyring, kid, kid_len) != NULL) {
        *reason = "duplicate kid";
        return -1;
    }
    if (keyring->count == MAX_KEYS) {
        *reason = "too many keys";
        return -1;
    }

    if (keyring->count == keyring->capacity) {
        size_t capacity = keyring->capacity == 0 ? 4 : keyring->capacity * 2;
        struct auth_key *keys = realloc(keyring->keys, capacity * sizeof *keys);
        if (keys == NULL) {
            *reason = "out of memory";
            return -1;
        }
        keyring->keys = keys;
        keyring->capacity = capacity;
    }

    struct auth_key key = {.kid_len = kid_len, .algorithm = algorithm};
    int loaded = algorithm->kind == KEY_HMAC ? load_hmac_secret(&key, material, len, reason)
                                             : load_public_key(&key, material, len, reason);
    if (loaded == 0) {
        key.kid = strdup(kid);
        if (key.kid == NULL) {
            *reason = "out of memory";
            loaded = -1;
        }
    }
    if (loaded != 0) {
        free_key(&key);
        /* Leave no parse errors behind for the next OpenSSL user on this thread. */
        ERR_clear_error();
        return -1;
    }
    keyring->keys[keyring->count++] = key;
    return 0;
}

const char *auth_keyring_alg(const struct auth_keyring *keyring, const char *kid)
{
    if (keyring == NULL || kid == NULL)
        return NULL;
    const struct auth_key *key = find_key(keyring, kid, strlen(kid));
    return key == NULL ? NULL : key->algorithm->name;
}

struct auth_cache *auth_cache_new(size_t entries)
{
    /* sodium_init picks the fast BLAKE2b code; it is safe to call from any thread. */
    if (sodium_init() < 0)
        return NULL;
    struct auth_cache *cache = calloc(1, sizeof *cache);
    if (cache == NULL)
        return NULL;

    cache->ways = entries < CACHE_WAYS ? entries : CACHE_WAYS;
    cache->set_count = cache->ways == 0 ? 0 : entries / cache->ways;
    if (cache->set_count > 0) {
        cache->entries = calloc(cache->set_count * cache->ways, sizeof *cache->entries);
        if (cache->entries == NULL) {
            free(cache);
            return NULL;
        }
    }
    randombytes_buf(cache->hash_key, sizeof cache->hash_key);
    return cache;
}

void auth_cache_free(struct auth_cache *cache)
{
    if (cache == NULL)
        return;
    /* Entries hold who a bearer is; wipe them rather than hand them back to malloc. */
    if (cache->entries != NULL)
        sodium_memzero(cache->entries, cache->set_count * cache->ways * sizeof *cache->entries);
    free(cache->entries);
    sodium_memzero(cache->hash_key, sizeof cache->hash_key);
    free(cache);
}

void auth_cache_read_stats(const struct auth_cache *cache, struct auth_cache_stats *stats)
{
    if (cache == NULL) {
        memset(stats, 0, sizeof *stats);
        return;
    }
    *stats = cache->stats;
}

/* Hashes a length-prefixed field, so that no two different inputs hash the same bytes. */
static void hash_field(crypto_generichash_state *state, const char *bytes, size_t len)
{
    unsigned char prefix[9];
    prefix[0] = bytes != NULL;
    for (size_t i = 0; i < 8; i++)
        prefix[1 + i] = (unsigned char)((uint64_t)len >> (8 * i));
    crypto_generichash_update(state, prefix, sizeof prefix);
    if (bytes != NULL)
        crypto_generichash_update(state, (const unsigned char *)bytes, len);
}

static size_t length_or_zero(const char *text)
{
    return text == NULL ? 0 : strlen(text);
}

/*
 * The cache key covers the claim checks' settings as well as the token, so a verdict
 * reached under one issuer or audience is never served under another. Leeway is not
 * part of it because every hit applies the current leeway again.
 */
static void hash_request(const struct auth_cache *cache, const struct auth_settings *settings,
                         const char *token, size_t len, unsigned char hash[CACHE_HASH_BYTES])
{
    crypto_generichash_state state;
    crypto_generichash_init(&state, cache->hash_key, sizeof cache->hash_key, CACHE_HASH_BYTES);
    hash_field(&state, token, len);
    hash_field(&state, settings->issuer, length_or_zero(settings->issuer));
    hash_field(&state, settings->audience, length_or_zero(settings->audience));
    hash_field(&state, settings->tenant_claim, length_or_zero(settings->tenant_claim));
    crypto_generichash_final(&state, hash, CACHE_HASH_BYTES);
}

static struct cache_entry *cache_set(const struct auth_cache *cache,
                                     const unsigned char hash[CACHE_HASH_BYTES])
{
    uint64_t bits;
    memcpy(&bits, hash, sizeof bits);
    return &cache->entries[(bits % cache->set_count) * cache->ways];
}

static struct cache_entry *cache_find(const struct auth_cache *cache,
                                      const unsigned char hash[CACHE_HASH_BYTES],
                                      uint64_t keyring_generation)
{
    struct cache_entry *set = cache_set(cache, hash);
    for (size_t i = 0; i < cache->ways; i++) {
        if (set[i].keyring_generation == keyring_generation &&
            memcmp(set[i].token_hash, hash, CACHE_HASH_BYTES) == 0)
            return &set[i];
    }
    return NULL;
}

/* Whether time lies beyond reference + leeway, without overflowing near INT64_MAX. */
static int beyond_leeway(int64_t time, int64_t reference, int64_t leeway)
{
    if (reference > INT64_MAX - leeway)
        return 0;
    return time > reference + leeway;
}

static int entry_expired(const struct cache_entry *entry, int64_t now, int64_t leeway)
{
    return beyond_leeway(now, entry->principal.expires_at, leeway);
}

/* Takes an empty slot, else one whose token has expired, else the oldest. */
static void cache_insert(struct auth_cache *cache, const unsigned char hash[CACHE_HASH_BYTES],
                         uint64_t keyring_generation, int64_t not_before,
                         const struct principal *principal, int64_t now, int64_t leeway)
{
    struct cache_entry *set = cache_set(cache, hash);
    struct cache_entry *victim = &set[0];
    for (size_t i = 0; i < cache->ways; i++) {
        struct cache_entry *entry = &set[i];
        if (entry->keyring_generation == 0 || entry_expired(entry, now, leeway)) {
            victim = entry;
            break;
        }
        if (entry->inserted < victim->inserted)
            victim = entry;
    }
    memcpy(victim->token_hash, hash, CACHE_HASH_BYTES);
    victim->keyring_generation = keyring_generation;
    victim->inserted = ++cache->insertions;
    victim->not_before = not_before;
    victim->principal = *principal;
}

/* A hit goes through the same time checks, in the same order, as a fresh verification. */
static enum auth_status serve_cached(struct cache_entry *entry, int64_t now, int64_t leeway,
                                     struct principal *principal)
{
    if (entry_expired(entry, now, leeway)) {
        sodium_memzero(entry, sizeof *entry);
        return AUTH_EXPIRED;
    }
    if (entry->not_before != INT64_MIN && beyond_leeway(entry->not_before, now, leeway))
        return AUTH_NOT_YET_VALID;
    *principal = entry->principal;
    return AUTH_OK;
}

static int split_token(const char *token, size_t len, struct token_parts *parts)
{
    const char *first_dot = memchr(token, '.', len);
    if (first_dot == NULL)
        return -1;
    const char *payload = first_dot + 1;
    const char *second_dot = memchr(payload, '.', len - (size_t)(payload - token));
    if (second_dot == NULL)
        return -1;

    parts->header = token;
    parts->header_len = (size_t)(first_dot - token);
    parts->payload = payload;
    parts->payload_len = (size_t)(second_dot - payload);
    parts->signature = second_dot + 1;
    parts->signature_len = len - (size_t)(parts->signature - token);
    parts->signing_input_len = (size_t)(second_dot - token);
    return 0;
}

/*
 * Decodes strict base64url without padding into the shared buffer at *cursor. libsodium
 * refuses any other character and nonzero leftover bits, so one decoded value has
 * exactly one encoding.
 */
static int decode_part(const char *text, size_t len, unsigned char **cursor, size_t *room,
                       unsigned char **decoded, size_t *decoded_len)
{
    const char *end;

    if (sodium_base642bin(*cursor, *room, text, len, NULL, decoded_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != text + len)
        return -1;
    *decoded = *cursor;
    *cursor += *decoded_len;
    *room -= *decoded_len;
    return 0;
}

static int json_string_is(const json_t *value, const char *expected)
{
    if (!json_is_string(value) || expected == NULL)
        return 0;
    size_t len = strlen(expected);
    /* By length: jansson refuses "\u0000" today, but this check must not rest on that. */
    return json_string_length(value) == len && memcmp(json_string_value(value), expected, len) == 0;
}

/* Finds the key the header asks for and checks that the header's alg is that key's. */
static enum auth_status check_header(const struct auth_keyring *keyring, const unsigned char *text,
                                     size_t len, const struct auth_key **key_out)
{
    json_t *header = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(header)) {
        json_decref(header);
        return AUTH_MALFORMED;
    }

    enum auth_status status = AUTH_OK;
    const json_t *alg = json_object_get(header, "alg");
    const json_t *kid = json_object_get(header, "kid");
    const struct algorithm *algorithm = NULL;
    const struct auth_key *key = NULL;
    if (json_is_string(alg))
        algorithm = find_algorithm(json_string_value(alg), json_string_length(alg));
    if (json_is_string(kid))
        key = find_key(keyring, json_string_value(kid), json_string_length(kid));

    /* "crit" names extensions the token insists on; we implement none (RFC 7515 4.1.11). */
    if (json_object_get(header, "crit") != NULL)
        status = AUTH_MALFORMED;
    else if (algorithm == NULL)
        status = AUTH_ALG_MISMATCH;
    else if (key == NULL)
        status = AUTH_UNKNOWN_KID;
    else if (key->algorithm != algorithm)
        status = AUTH_ALG_MISMATCH;
    json_decref(header);
    *key_out = key;
    return status;
}

static int hmac_matches(const struct auth_key *key, const char *input, size_t input_len,
                        const unsigned char *signature, size_t signature_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC_CTX *context = EVP_MAC_CTX_dup(key->hmac_template);
    int computed = context != NULL &&
                   EVP_MAC_update(context, (const unsigned char *)input, input_len) == 1 &&
                   EVP_MAC_final(context, mac, &mac_len, sizeof mac) == 1;
    EVP_MAC_CTX_free(context);
    int matches =
        computed && mac_len == signature_len && CRYPTO_memcmp(mac, signature, mac_len) == 0;
    /* The MAC of an attacker's input is a valid signature for it; do not leave it about. */
    OPENSSL_cleanse(mac, sizeof mac);
    return matches;
}

/* Converts a JWA R||S signature to the DER ECDSA-Sig-Value OpenSSL verifies. */
static int ecdsa_signature_to_der(const unsigned char *raw, unsigned char *der, size_t room,
                                  size_t *der_len)
{
    ECDSA_SIG *signature = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, ES256_COORDINATE_BYTES, NULL);
    BIGNUM *s = BN_bin2bn(raw + ES256_COORDINATE_BYTES, ES256_COORDINATE_BYTES, NULL);
    if (signature == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(signature, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(signature);
        return -1;
    }

    int result = -1;
    int length = i2d_ECDSA_SIG(signature, NULL);
    if (length > 0 && (size_t)length <= room) {
        unsigned char *cursor = der;
        if (i2d_ECDSA_SIG(signature, &cursor) == length) {
            *der_len = (size_t)length;
            result = 0;
        }
    }
    ECDSA_SIG_free(signature); /* also frees r and s */
    return result;
}

static int public_key_verifies(const struct auth_key *key, const char *input, size_t input_len,
                               const unsigned char *signature, size_t signature_len)
{
    unsigned char der[2 * ES256_COORDINATE_BYTES + 16];
    if (key->algorithm->kind == KEY_ECDSA_P256) {
        /* Anything but exactly R||S, DER included, is refused as JWA requires. */
        if (signature_len != 2 * ES256_COORDINATE_BYTES ||
            ecdsa_signature_to_der(signature, der, sizeof der, &signature_len) != 0)
            return 0;
        signature = der;
    }

    int verified = 0;
    EVP_PKEY_CTX *key_context = NULL;
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (context != NULL &&
        EVP_DigestVerifyInit_ex(context, &key_context, key->algorithm->digest, NULL, NULL,
                                key->public_key, NULL) == 1 &&
        (key->algorithm->kind != KEY_RSA_PKCS1 ||
         EVP_PKEY_CTX_set_rsa_padding(key_context, RSA_PKCS1_PADDING) == 1)) {
        verified = EVP_DigestVerify(context, signature, signature_len, (const unsigned char *)input,
                                    input_len) == 1;
    }
    EVP_MD_CTX_free(context);
    return verified;
}

/*
 * Limitation: running out of memory while checking a signature reads as a bad signature,
 * since the status enum has no code for an internal failure; the client sees a 401.
 */
static enum auth_status check_signature(const struct auth_key *key, const char *input,
                                        size_t input_len, const unsigned char *signature,
                                        size_t signature_len)
{
    int verified = key->algorithm->kind == KEY_HMAC
                       ? hmac_matches(key, input, input_len, signature, signature_len)
                       : public_key_verifies(key, input, input_len, signature, signature_len);
    if (!verified) {
        /* A failed check queues OpenSSL errors; the TLS code on this thread reads that queue. */
        ERR_clear_error();
        return AUTH_BAD_SIGNATURE;
    }
    return AUTH_OK;
}

/* Reads a NumericDate claim: 0 when absent, 1 when present, -1 when not an integer. */
static int read_time_claim(const json_t *claims, const char *name, int64_t *value)
{
    const json_t *claim = json_object_get(claims, name);
    if (claim == NULL)
        return 0;
    if (!json_is_integer(claim))
        return -1;
    *value = json_integer_value(claim);
    return 1;
}

static enum auth_status check_times(const json_t *claims, int64_t now, int64_t leeway,
                                    int64_t *expires_at, int64_t *not_before)
{
    int64_t nbf = 0;
    int64_t iat = 0;
    int has_exp = read_time_claim(claims, "exp", expires_at);
    int has_nbf = read_time_claim(claims, "nbf", &nbf);
    int has_iat = read_time_claim(claims, "iat", &iat);
    if (has_exp < 0 || has_nbf < 0 || has_iat < 0)
        return AUTH_BAD_CLAIMS;
    if (has_exp == 0 || beyond_leeway(now, *expires_at, leeway))
        return AUTH_EXPIRED;

    *not_before = INT64_MIN;
    if (has_nbf)
        *not_before = nbf;
    if (has_iat && iat > *not_before)
        *not_before = iat;
    if (*not_before != INT64_MIN && beyond_leeway(*not_before, now, leeway))
        return AUTH_NOT_YET_VALID;
    return AUTH_OK;
}

static enum auth_status check_audience(const json_t *aud, const char *audience)
{
    if (json_is_string(aud))
        return json_string_is(aud, audience) ? AUTH_OK : AUTH_BAD_AUDIENCE;
    if (!json_is_array(aud))
        return AUTH_BAD_AUDIENCE;

    size_t index;
    const json_t *value;
    int found = 0;
    json_array_foreach(aud, index, value)
    {
        if (!json_is_string(value))
            return AUTH_BAD_AUDIENCE;
        found |= json_string_is(value, audience);
    }
    return found ? AUTH_OK : AUTH_BAD_AUDIENCE;
}

/* Tenants reach Redis keys, logs and dashboards, so only plain visible ASCII passes. */
static int copy_tenant(const json_t *claim, struct principal *principal)
{
    if (!json_is_string(claim))
        return -1;
    const char *tenant = json_string_value(claim);
    size_t len = json_string_length(claim);
    if (len == 0 || len > AUTH_MAX_TENANT_BYTES)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tenant[i];
        if (c <= ' ' || c > '~' || c == '"' || c == '\'')
            return -1;
    }
    memcpy(principal->tenant, tenant, len);
    principal->tenant[len] = '\0';
    return 0;
}

/* Subjects may be any UTF-8 but control characters, which could forge log lines. */
static int copy_subject(const json_t *claim, struct principal *principal)
{
    if (!json_is_string(claim))
        return -1;
    const unsigned char *subject = (const unsigned char *)json_string_value(claim);
    size_t len = json_string_length(claim);
    if (len == 0 || len > AUTH_MAX_SUBJECT_BYTES)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (subject[i] < ' ' || subject[i] == 0x7f)
            return -1;
        /* U+0080..U+009F, the C1 controls, are 0xC2 0x80..0x9F in UTF-8. */
        if (subject[i] == 0xc2 && i + 1 < len && subject[i + 1] <= 0x9f)
            return -1;
    }
    memcpy(principal->subject, subject, len);
    principal->subject[len] = '\0';
    return 0;
}

/*
 * Appends one scope and its terminating space. A scope is RFC 6749's scope-token: no
 * spaces (they would split it into two grants), no quotes, backslashes or controls.
 */
static int append_scope(struct principal *principal, size_t *used, const char *scope, size_t len)
{
    if (len == 0 || len + 1 > AUTH_MAX_SCOPES_BYTES - *used)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)scope[i];
        if (c <= ' ' || c > '~' || c == '"' || c == '\\')
            return -1;
    }
    memcpy(principal->scopes + *used, scope, len);
    principal->scopes[*used + len] = ' ';
    *used += len + 1;
    principal->scopes[*used] = '\0';
    return 0;
}

static int collect_scope_string(const json_t *scope, struct principal *principal)
{
    if (!json_is_string(scope))
        return -1;
    const char *text = json_string_value(scope);
    size_t len = json_string_length(scope);
    size_t used = 0;
    size_t start = 0;
    while (start < len) {
        const char *space = memchr(text + start, ' ', len - start);
        size_t end = space == NULL ? len : (size_t)(space - text);
        if (end > start && append_scope(principal, &used, text + start, end - start) != 0)
            return -1;
        start = end + 1;
    }
    return 0;
}

static int collect_scope_array(const json_t *scp, struct principal *principal)
{
    if (!json_is_array(scp))
        return -1;
    size_t used = 0;
    size_t index;
    const json_t *value;
    json_array_foreach(scp, index, value)
    {
        if (!json_is_string(value) ||
            append_scope(principal, &used, json_string_value(value), json_string_length(value)))
            return -1;
    }
    return 0;
}

static enum auth_status collect_scopes(const json_t *claims, struct principal *principal)
{
    const json_t *scope = json_object_get(claims, "scope");
    const json_t *scp = json_object_get(claims, "scp");
    int collected = 0;
    /* Both at once is ambiguous about what was granted; refuse rather than guess. */
    if (scope != NULL && scp != NULL)
        collected = -1;
    else if (scope != NULL)
        collected = collect_scope_string(scope, principal);
    else if (scp != NULL)
        collected = collect_scope_array(scp, principal);
    return collected == 0 ? AUTH_OK : AUTH_BAD_CLAIMS;
}

static enum auth_status check_claims(const struct auth_settings *settings, const json_t *claims,
                                     int64_t now, int64_t leeway, struct principal *principal,
                                     int64_t *not_before)
{
    enum auth_status status = check_times(claims, now, leeway, &principal->expires_at, not_before);
    if (status != AUTH_OK)
        return status;
    if (!json_string_is(json_object_get(claims, "iss"), settings->issuer))
        return AUTH_BAD_ISSUER;
    status = check_audience(json_object_get(claims, "aud"), settings->audience);
    if (status != AUTH_OK)
        return status;

    if (settings->tenant_claim == NULL ||
        copy_tenant(json_object_get(claims, settings->tenant_claim), principal) != 0 ||
        copy_subject(json_object_get(claims, "sub"), principal) != 0)
        return AUTH_BAD_CLAIMS;
    return collect_scopes(claims, principal);
}

/* The whole check, without the cache. */
static enum auth_status verify_token(const struct auth_settings *settings, const char *token,
                                     size_t len, int64_t now, int64_t leeway,
                                     struct principal *principal, int64_t *not_before)
{
    struct token_parts parts;
    if (split_token(token, len, &parts) != 0)
        return AUTH_MALFORMED;

    /* Decoded parts are shorter than the token, so one buffer holds all three. */
    unsigned char decoded[AUTH_MAX_TOKEN_BYTES];
    unsigned char *cursor = decoded;
    size_t room = sizeof decoded;
    unsigned char *header, *payload, *signature;
    size_t header_len, payload_len, signature_len;
    if (decode_part(parts.header, parts.header_len, &cursor, &room, &header, &header_len) ||
        decode_part(parts.payload, parts.payload_len, &cursor, &room, &payload, &payload_len) ||
        decode_part(parts.signature, parts.signature_len, &cursor, &room, &signature,
                    &signature_len))
        return AUTH_MALFORMED;

    const struct auth_key *key = NULL;
    enum auth_status status = check_header(settings->keyring, header, header_len, &key);
    if (status != AUTH_OK)
        return status;
    /* The signature comes before the claims: unsigned data gets no further parsing. */
    status = check_signature(key, token, parts.signing_input_len, signature, signature_len);
    if (status != AUTH_OK)
        return status;

    json_t *claims = json_loadb((const char *)payload, payload_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(claims))
        status = AUTH_MALFORMED;
    else
        status = check_claims(settings, claims, now, leeway, principal, not_before);
    json_decref(claims);
    return status;
}

/* auth_verify, which checks a token the cache does not hold only when may_check is set. */
static enum auth_status verify(const struct auth_settings *settings, struct auth_cache *cache,
                               const char *token, size_t len, int64_t now,
                               struct principal *principal, int may_check)
{
    memset(principal, 0, sizeof *principal);
    if (token == NULL || len == 0 || len > AUTH_MAX_TOKEN_BYTES)
        return AUTH_MALFORMED;
    if (settings == NULL || settings->keyring == NULL)
        return AUTH_UNKNOWN_KID;
    int64_t leeway = settings->leeway_seconds > 0 ? settings->leeway_seconds : 0;
    uint64_t generation = settings->keyring->generation;

    int use_cache = cache != NULL && cache->set_count > 0;
    unsigned char hash[CACHE_HASH_BYTES];
    if (use_cache) {
        hash_request(cache, settings, token, len, hash);
        struct cache_entry *entry = cache_find(cache, hash, generation);
        if (entry != NULL) {
            cache->stats.hits++;
            return serve_cached(entry, now, leeway, principal);
        }
        cache->stats.misses++;
    }
    if (!may_check)
        return AUTH_NOT_CACHED;

    int64_t not_before = INT64_MIN;
    enum auth_status status =
        verify_token(settings, token, len, now, leeway, principal, &not_before);
    if (status != AUTH_OK) {
        /* A half-filled principal must not look like a verdict. */
        memset(principal, 0, sizeof *principal);
        return status;
    }
    if (use_cache)
        cache_insert(cache, hash, generation, not_before, principal, now, leeway);
    return AUTH_OK;
}

enum auth_status auth_verify(const struct auth_settings *settings, struct auth_cache *cache,
                             const char *token, size_t len, int64_t now,
                             struct principal *principal)
{
    return verify(settings, cache, token, len, now, principal, 1);
}

enum auth_status auth_verify_cached(const struct auth_settings *settings, struct auth_cache *cache,
                                    const char *token, size_t len, int64_t now,
                                    struct principal *principal)
{
    return verify(settings, cache, token, len, now, principal, 0);
}

const char *auth_status_reason(enum auth_status status)
{
    switch (status) {
    case AUTH_OK:
        return "token accepted";
    case AUTH_MISSING:
        return "missing bearer token";
    case AUTH_MALFORMED:
        return "malformed token";
    case AUTH_UNKNOWN_KID:
        return "unknown signing key";
    case AUTH_ALG_MISMATCH:
        return "token algorithm not allowed for its key";
    case AUTH_BAD_SIGNATURE:
        return "bad token signature";
    case AUTH_EXPIRED:
        return "token expired";
    case AUTH_NOT_YET_VALID:
        return "token not yet valid";
    case AUTH_BAD_ISSUER:
        return "token issuer not accepted";
    case AUTH_BAD_AUDIENCE:
        return "token audience not accepted";
    case AUTH_BAD_CLAIMS:
        return "token claims invalid";
    case AUTH_NOT_CACHED:
        return "token not checked";
    }
    return "authentication failed";
}

int auth_has_scope(const struct principal *principal, const char *scope, size_t len)
{
    if (principal == NULL || scope == NULL || len == 0)
        return 0;
    /* Bounded by the array, so a principal built by hand without a NUL is still safe. */
    const char *cursor = principal->scopes;
    const char *end = cursor + strnlen(cursor, sizeof principal->scopes);
    const char *space;
    while ((space = memchr(cursor, ' ', (size_t)(end - cursor))) != NULL) {
        if ((size_t)(space - cursor) == len && memcmp(cursor, scope, len) == 0)
            return 1;
        cursor = space + 1;
    }
    return 0;
}

char *auth_mint(const char *alg, const char *kid, const unsigned char *material, size_t len,
                const char *claims_json, const char **reason)
{
    const char *ignored;
    if (reason == NULL)
        reason = &ignored;
    const struct algorithm *algorithm = alg == NULL ? NULL : find_algorithm(alg, strlen(alg));
    if (algorithm == NULL) {
        *reason = "unsupported alg (use HS256, HS384, HS512, RS256 or ES256)";
        return NULL;
    }
    if (kid == NULL || kid[0] == '\0' || claims_json == NULL || material == NULL || len == 0 ||
        len > INT_MAX) {
        *reason = "missing kid, claims or key material";
        return NULL;
    }
    /* Minting a token that auth_verify would refuse helps nobody. */
    if (algorithm->kind == KEY_HMAC && len < algorithm->min_secret_bytes) {
        *reason = "HMAC secret is shorter than its hash (32, 48 or 64 bytes for HS256/384/512)";
        return NULL;
    }

    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0) {
        *reason = "out of memory";
        return NULL;
    }
    char *token = NULL;
    if (jwt_add_grants_json(jwt, claims_json) != 0)
        *reason = "claims are not a JSON object";
    else if (jwt_add_header(jwt, "kid", kid) != 0 ||
             jwt_set_alg(jwt, algorithm->jwt_alg, material, (int)len) != 0)
        *reason = "cannot set up the token";
    else if ((token = jwt_encode_str(jwt)) == NULL)
        *reason = "cannot sign (is the key a PEM private key of the right type?)";
    jwt_free(jwt);
    if (token == NULL)
        ERR_clear_error();
    return token;
}
