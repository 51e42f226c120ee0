/*
 * Unit tests for auth: keyring rules, token verification with every supported algorithm,
 * the attacks the keyring pinning exists for (alg "none", HMAC keyed with an RSA public
 * key), claim checks, the verified-token cache and minting. Keys are generated afresh
 * by OpenSSL for each run; no private key is committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sodium.h>

#include "auth.h"

#define ISSUER "https://issuer.test"
#define AUDIENCE "jobgate"
#define NOW ((int64_t)1700000000)
#define LEEWAY ((int64_t)30)
#define HOUR ((int64_t)3600)
#define MAX_KEPT 512

struct pem_pair {
    char *private_pem;
    char *public_pem;
};

static struct {
    EVP_PKEY *rsa;
    EVP_PKEY *ec;
    struct pem_pair rsa_pem;
    struct pem_pair ec_pem;
    struct pem_pair small_rsa_pem;
    struct pem_pair p384_pem;
    unsigned char secret256[32];
    unsigned char secret384[48];
    unsigned char secret512[64];
    struct auth_keyring *keyring;
} keys;

static struct auth_settings settings = {
    .issuer = ISSUER,
    .audience = AUDIENCE,
    .leeway_seconds = LEEWAY,
    .tenant_claim = "tenant",
};

/* Allocations a test makes are kept here and freed after it, pass or fail. */
static void *kept[MAX_KEPT];
static size_t kept_count;

static void *keep(void *allocation)
{
    assert_non_null(allocation);
    assert_true(kept_count < MAX_KEPT);
    kept[kept_count++] = allocation;
    return allocation;
}

static int free_kept(void **state)
{
    (void)state;
    while (kept_count > 0)
        free(kept[--kept_count]);
    return 0;
}

static char *format(const char *pattern, ...) __attribute__((format(printf, 1, 2)));

static char *format(const char *pattern, ...)
{
    va_list arguments;
    va_start(arguments, pattern);
    int len = vsnprintf(NULL, 0, pattern, arguments);
    va_end(arguments);
    assert_true(len >= 0);

    char *text = keep(malloc((size_t)len + 1));
    va_start(arguments, pattern);
    vsnprintf(text, (size_t)len + 1, pattern, arguments);
    va_end(arguments);
    return text;
}

static char *pem_of(EVP_PKEY *key, int private_part)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    int written = private_part ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                               : PEM_write_bio_PUBKEY(bio, key);
    assert_int_equal(written, 1);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    char *pem = malloc((size_t)len + 1);
    assert_non_null(pem);
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
    BIO_free(bio);
    return pem;
}

static struct pem_pair pems_of(EVP_PKEY *key)
{
    struct pem_pair pair = {pem_of(key, 1), pem_of(key, 0)};
    return pair;
}

static void free_pems(struct pem_pair *pair)
{
    free(pair->private_pem);
    free(pair->public_pem);
}

static void add_key(struct auth_keyring *keyring, const char *kid, const char *alg,
                    const void *material, size_t len)
{
    const char *reason = NULL;
    int added = auth_keyring_add(keyring, kid, alg, material, len, &reason);
    if (added != 0)
        fail_msg("adding %s: %s", kid, reason);
}

static int generate_keys(void **state)
{
    (void)state;
    keys.rsa = EVP_RSA_gen(2048);
    keys.ec = EVP_EC_gen("P-256");
    EVP_PKEY *small_rsa = EVP_RSA_gen(1024);
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    if (keys.rsa == NULL || keys.ec == NULL || small_rsa == NULL || p384 == NULL)
        return -1;
    keys.rsa_pem = pems_of(keys.rsa);
    keys.ec_pem = pems_of(keys.ec);
    keys.small_rsa_pem = pems_of(small_rsa);
    keys.p384_pem = pems_of(p384);
    EVP_PKEY_free(small_rsa);
    EVP_PKEY_free(p384);

    randombytes_buf(keys.secret256, sizeof keys.secret256);
    randombytes_buf(keys.secret384, sizeof keys.secret384);
    randombytes_buf(keys.secret512, sizeof keys.secret512);

    keys.keyring = auth_keyring_new();
    if (keys.keyring == NULL)
        return -1;
    add_key(keys.keyring, "hs256", "HS256", keys.secret256, sizeof keys.secret256);
    add_key(keys.keyring, "hs384", "HS384", keys.secret384, sizeof keys.secret384);
    add_key(keys.keyring, "hs512", "HS512", keys.secret512, sizeof keys.secret512);
    add_key(keys.keyring, "rs256", "RS256", keys.rsa_pem.public_pem,
            strlen(keys.rsa_pem.public_pem));
    add_key(keys.keyring, "es256", "ES256", keys.ec_pem.public_pem, strlen(keys.ec_pem.public_pem));
    settings.keyring = keys.keyring;
    return 0;
}

static int free_keys(void **state)
{
    (void)state;
    auth_keyring_free(keys.keyring);
    EVP_PKEY_free(keys.rsa);
    EVP_PKEY_free(keys.ec);
    free_pems(&keys.rsa_pem);
    free_pems(&keys.ec_pem);
    free_pems(&keys.small_rsa_pem);
    free_pems(&keys.p384_pem);
    return 0;
}

/* Standard claims that pass every check, with extra members appended. */
static const char *claims_with(int64_t exp, const char *extra)
{
    return format("{\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"sub\":\"user-1\","
                  "\"tenant\":\"acme\"%s}",
                  ISSUER, AUDIENCE, (long long)exp, extra);
}

static const char *valid_claims(void)
{
    return claims_with(NOW + HOUR, ",\"scope\":\"tier:bulk queue:mailers\"");
}

static const char *mint_as(const char *alg, const char *kid, const char *claims)
{
    const void *material = keys.secret256;
    size_t len = sizeof keys.secret256;
    if (strcmp(alg, "HS384") == 0) {
        material = keys.secret384;
        len = sizeof keys.secret384;
    } else if (strcmp(alg, "HS512") == 0) {
        material = keys.secret512;
        len = sizeof keys.secret512;
    } else if (strcmp(alg, "RS256") == 0) {
        material = keys.rsa_pem.private_pem;
        len = strlen(keys.rsa_pem.private_pem);
    } else if (strcmp(alg, "ES256") == 0) {
        material = keys.ec_pem.private_pem;
        len = strlen(keys.ec_pem.private_pem);
    }
    const char *reason = NULL;
    char *token = auth_mint(alg, kid, material, len, claims, &reason);
    if (token == NULL)
        fail_msg("minting %s: %s", alg, reason);
    return keep(token);
}

static const char *mint_hs256(const char *claims)
{
    return mint_as("HS256", "hs256", claims);
}

static char *base64url(const void *bytes, size_t len)
{
    size_t size = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *text = keep(malloc(size));
    sodium_bin2base64(text, size, bytes, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return text;
}

/* Builds "header.payload.signature" around any header and payload text, HS256-signed. */
static const char *craft_hs256(const char *header_json, const char *payload_json)
{
    const char *signing_input = format("%s.%s", base64url(header_json, strlen(header_json)),
                                       base64url(payload_json, strlen(payload_json)));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), keys.secret256, sizeof keys.secret256,
                         (const unsigned char *)signing_input, strlen(signing_input), mac,
                         &mac_len));
    return format("%s.%s", signing_input, base64url(mac, mac_len));
}

static enum auth_status verify_at(const char *token, int64_t now, struct principal *principal)
{
    return auth_verify(&settings, NULL, token, strlen(token), now, principal);
}

static enum auth_status verify(const char *token)
{
    struct principal principal;
    return verify_at(token, NOW, &principal);
}

/* Changes one character in the middle of the signature, keeping the base64url valid. */
static const char *flip_signature_byte(const char *token)
{
    char *copy = keep(strdup(token));
    char *signature = strrchr(copy, '.') + 1;
    assert_true(strlen(signature) > 4);
    signature[2] = signature[2] == 'A' ? 'B' : 'A';
    return copy;
}

static void assert_principal(const struct principal *principal, const char *scopes)
{
    assert_string_equal(principal->tenant, "acme");
    assert_string_equal(principal->subject, "user-1");
    assert_string_equal(principal->scopes, scopes);
    assert_int_equal(principal->expires_at, NOW + HOUR);
}

static void test_keyring_accepts_each_algorithm(void **state)
{
    (void)state;
    assert_string_equal(auth_keyring_alg(keys.keyring, "hs256"), "HS256");
    assert_string_equal(auth_keyring_alg(keys.keyring, "hs384"), "HS384");
    assert_string_equal(auth_keyring_alg(keys.keyring, "hs512"), "HS512");
    assert_string_equal(auth_keyring_alg(keys.keyring, "rs256"), "RS256");
    assert_string_equal(auth_keyring_alg(keys.keyring, "es256"), "ES256");
    assert_null(auth_keyring_alg(keys.keyring, "nobody"));
    assert_null(auth_keyring_alg(keys.keyring, "hs25"));
}

static void assert_key_refused(const char *alg, const void *material, size_t len,
                               const char *expected_reason)
{
    struct auth_keyring *keyring = auth_keyring_new();
    assert_non_null(keyring);
    const char *reason = NULL;
    assert_int_equal(auth_keyring_add(keyring, "k", alg, material, len, &reason), -1);
    assert_non_null(reason);
    assert_string_equal(reason, expected_reason);
    assert_null(auth_keyring_alg(keyring, "k"));
    auth_keyring_free(keyring);
}

static void test_keyring_refuses_wrong_keys(void **state)
{
    (void)state;
    const char *rsa = keys.rsa_pem.public_pem;
    const char *ec = keys.ec_pem.public_pem;
    static const char short_secret[] =
        "HMAC secret is shorter than its hash (32, 48 or 64 bytes for HS256/384/512)";
    assert_key_refused("HS256", keys.secret256, 31, short_secret);
    assert_key_refused("HS384", keys.secret384, 47, short_secret);
    assert_key_refused("HS512", keys.secret512, 63, short_secret);
    assert_key_refused("none", keys.secret256, 32,
                       "unsupported alg (use HS256, HS384, HS512, RS256 or ES256)");
    assert_key_refused("RS384", rsa, strlen(rsa),
                       "unsupported alg (use HS256, HS384, HS512, RS256 or ES256)");
    assert_key_refused("RS256", ec, strlen(ec), "RS256 needs an RSA public key");
    assert_key_refused("ES256", rsa, strlen(rsa), "ES256 needs an EC P-256 public key");
    assert_key_refused("ES256", keys.p384_pem.public_pem, strlen(keys.p384_pem.public_pem),
                       "ES256 needs an EC P-256 public key");
    assert_key_refused("RS256", keys.small_rsa_pem.public_pem,
                       strlen(keys.small_rsa_pem.public_pem), "RSA key is shorter than 2048 bits");
    assert_key_refused("RS256", keys.rsa_pem.private_pem, strlen(keys.rsa_pem.private_pem),
                       "PEM block is not a PUBLIC KEY");
    assert_key_refused("RS256", "hello", 5, "not a PEM file");
    assert_key_refused("ES256", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                       strlen("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
                       "cannot parse PEM public key");
}

static void test_keyring_refuses_duplicate_kid(void **state)
{
    (void)state;
    struct auth_keyring *keyring = auth_keyring_new();
    assert_non_null(keyring);
    const char *reason = NULL;
    assert_int_equal(auth_keyring_add(keyring, "k", "HS256", keys.secret256, 32, &reason), 0);
    assert_int_equal(auth_keyring_add(keyring, "k", "HS512", keys.secret512, 64, &reason), -1);
    assert_string_equal(reason, "duplicate kid");
    assert_string_equal(auth_keyring_alg(keyring, "k"), "HS256");
    assert_int_equal(auth_keyring_add(keyring, "", "HS256", keys.secret256, 32, &reason), -1);
    auth_keyring_free(keyring);
}

static void test_accepts_hmac_tokens(void **state)
{
    (void)state;
    const char *algs[] = {"HS256", "HS384", "HS512"};
    const char *kids[] = {"hs256", "hs384", "hs512"};
    for (size_t i = 0; i < 3; i++) {
        struct principal principal;
        const char *token = mint_as(algs[i], kids[i], valid_claims());
        assert_int_equal(verify_at(token, NOW, &principal), AUTH_OK);
        assert_principal(&principal, "tier:bulk queue:mailers ");
    }
}

static void test_accepts_rs256_with_scp_array(void **state)
{
    (void)state;
    struct principal principal;
    const char *claims = claims_with(NOW + HOUR, ",\"scp\":[\"tier:critical\",\"queue:x\"]");
    const char *token = mint_as("RS256", "rs256", claims);
    assert_int_equal(verify_at(token, NOW, &principal), AUTH_OK);
    assert_principal(&principal, "tier:critical queue:x ");
}

static void test_accepts_es256(void **state)
{
    (void)state;
    struct principal principal;
    const char *token = mint_as("ES256", "es256", valid_claims());
    assert_int_equal(verify_at(token, NOW, &principal), AUTH_OK);
    assert_principal(&principal, "tier:bulk queue:mailers ");
}

static void test_refuses_alg_none(void **state)
{
    (void)state;
    const char *payload = valid_claims();
    const char *encoded = base64url(payload, strlen(payload));
    const char *with_kid = "{\"alg\":\"none\",\"kid\":\"hs256\",\"typ\":\"JWT\"}";
    const char *without_kid = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    const char *unsigned_token = format("%s.%s.", base64url(with_kid, strlen(with_kid)), encoded);
    const char *anonymous_token =
        format("%s.%s.", base64url(without_kid, strlen(without_kid)), encoded);

    assert_int_equal(verify(unsigned_token), AUTH_ALG_MISMATCH);
    assert_int_equal(verify(anonymous_token), AUTH_ALG_MISMATCH);
    /* Signed, but alg spelled in a way the key is not pinned to. */
    assert_int_equal(verify(craft_hs256("{\"alg\":\"hs256\",\"kid\":\"hs256\"}", payload)),
                     AUTH_ALG_MISMATCH);
}

/* The classic confusion: HMAC keyed with the RSA public key, which anyone can read. */
static void test_refuses_hmac_keyed_with_rsa_public_key(void **state)
{
    (void)state;
    const char *public_pem = keys.rsa_pem.public_pem;
    const char *reason = NULL;
    char *forged = auth_mint("HS256", "rs256", (const unsigned char *)public_pem,
                             strlen(public_pem), valid_claims(), &reason);
    assert_non_null(forged);
    keep(forged);
    assert_int_equal(verify(forged), AUTH_ALG_MISMATCH);
}

static void test_refuses_other_algorithm_for_key(void **state)
{
    (void)state;
    /* An honest HS512 token presented under the HS256 key's kid. */
    const char *reason = NULL;
    char *token =
        auth_mint("HS512", "hs256", keys.secret512, sizeof keys.secret512, valid_claims(), &reason);
    assert_non_null(token);
    keep(token);
    assert_int_equal(verify(token), AUTH_ALG_MISMATCH);
}

static void test_refuses_unknown_or_missing_kid(void **state)
{
    (void)state;
    const char *payload = valid_claims();
    assert_int_equal(verify(mint_as("HS256", "stranger", payload)), AUTH_UNKNOWN_KID);
    assert_int_equal(verify(craft_hs256("{\"alg\":\"HS256\"}", payload)), AUTH_UNKNOWN_KID);
    assert_int_equal(verify(craft_hs256("{\"alg\":\"HS256\",\"kid\":7}", payload)),
                     AUTH_UNKNOWN_KID);
    /* The crafting itself is sound: the same header with the kid verifies. */
    assert_int_equal(verify(craft_hs256("{\"alg\":\"HS256\",\"kid\":\"hs256\"}", payload)),
                     AUTH_OK);
}

static void test_refuses_bad_signatures(void **state)
{
    (void)state;
    const char *algs[] = {"HS256", "HS384", "HS512", "RS256", "ES256"};
    const char *kids[] = {"hs256", "hs384", "hs512", "rs256", "es256"};
    for (size_t i = 0; i < 5; i++) {
        const char *token = mint_as(algs[i], kids[i], valid_claims());
        assert_int_equal(verify(token), AUTH_OK);
        assert_int_equal(verify(flip_signature_byte(token)), AUTH_BAD_SIGNATURE);
    }

    /* A signature moved onto other claims. */
    const char *token = mint_hs256(valid_claims());
    const char *other = mint_hs256(claims_with(NOW + HOUR, ",\"scope\":\"tier:critical\""));
    const char *spliced =
        format("%.*s%s", (int)(strrchr(other, '.') - other), other, strrchr(token, '.'));
    assert_int_equal(verify(spliced), AUTH_BAD_SIGNATURE);

    /* The same token with its signature removed, or cut to its first half. */
    const char *bare = format("%.*s", (int)(strrchr(token, '.') - token + 1), token);
    assert_int_equal(verify(bare), AUTH_BAD_SIGNATURE);
    unsigned char mac[32];
    size_t mac_len = 0;
    const char *signature = strrchr(token, '.') + 1;
    assert_int_equal(sodium_base642bin(mac, sizeof mac, signature, strlen(signature), NULL,
                                       &mac_len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_int_equal(mac_len, sizeof mac);
    assert_int_equal(verify(format("%s%s", bare, base64url(mac, mac_len / 2))), AUTH_BAD_SIGNATURE);
    assert_int_equal(verify(format("%s%s", bare, base64url(mac, mac_len))), AUTH_OK);
}

/* ES256 signatures must be JWA's raw R||S; OpenSSL's DER form is refused. */
static void test_refuses_der_ecdsa_signature(void **state)
{
    (void)state;
    const char *header = "{\"alg\":\"ES256\",\"kid\":\"es256\"}";
    const char *payload = valid_claims();
    const char *input =
        format("%s.%s", base64url(header, strlen(header)), base64url(payload, strlen(payload)));
    unsigned char der[128];
    size_t der_len = sizeof der;
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    assert_non_null(context);
    assert_int_equal(EVP_DigestSignInit(context, NULL, EVP_sha256(), NULL, keys.ec), 1);
    assert_int_equal(
        EVP_DigestSign(context, der, &der_len, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(context);
    assert_int_equal(verify(format("%s.%s", input, base64url(der, der_len))), AUTH_BAD_SIGNATURE);
}

static void test_expiry(void **state)
{
    (void)state;
    const char *token = mint_hs256(valid_claims());
    assert_int_equal(verify_at(token, NOW + HOUR + LEEWAY, &(struct principal){0}), AUTH_OK);
    assert_int_equal(verify_at(token, NOW + HOUR + LEEWAY + 1, &(struct principal){0}),
                     AUTH_EXPIRED);

    /* Expired a moment ago, but inside the leeway. */
    assert_int_equal(verify(mint_hs256(claims_with(NOW - LEEWAY, ""))), AUTH_OK);
    assert_int_equal(verify(mint_hs256(claims_with(NOW - LEEWAY - 1, ""))), AUTH_EXPIRED);
}

static void test_exp_required_and_integer(void **state)
{
    (void)state;
    const char *no_exp = format("{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"user-1\","
                                "\"tenant\":\"acme\"}",
                                ISSUER, AUDIENCE);
    assert_int_equal(verify(mint_hs256(no_exp)), AUTH_EXPIRED);

    const char *text_exp = format("{\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":\"%lld\","
                                  "\"sub\":\"user-1\",\"tenant\":\"acme\"}",
                                  ISSUER, AUDIENCE, (long long)(NOW + HOUR));
    assert_int_equal(verify(mint_hs256(text_exp)), AUTH_BAD_CLAIMS);

    const char *real_exp = format("{\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld.5,"
                                  "\"sub\":\"user-1\",\"tenant\":\"acme\"}",
                                  ISSUER, AUDIENCE, (long long)(NOW + HOUR));
    assert_int_equal(verify(mint_hs256(real_exp)), AUTH_BAD_CLAIMS);

    const char *huge_exp = format("{\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,"
                                  "\"sub\":\"user-1\",\"tenant\":\"acme\"}",
                                  ISSUER, AUDIENCE, (long long)INT64_MAX);
    assert_int_equal(verify(mint_hs256(huge_exp)), AUTH_OK);
}

static void test_not_before_and_issued_at(void **state)
{
    (void)state;
    const char *nbf_future = format(",\"nbf\":%lld", (long long)(NOW + LEEWAY + 1));
    const char *nbf_in_leeway = format(",\"nbf\":%lld", (long long)(NOW + LEEWAY));
    const char *iat_future = format(",\"iat\":%lld", (long long)(NOW + LEEWAY + 1));
    const char *iat_past = format(",\"iat\":%lld", (long long)(NOW - 60));
    assert_int_equal(verify(mint_hs256(claims_with(NOW + HOUR, nbf_future))), AUTH_NOT_YET_VALID);
    assert_int_equal(verify(mint_hs256(claims_with(NOW + HOUR, nbf_in_leeway))), AUTH_OK);
    assert_int_equal(verify(mint_hs256(claims_with(NOW + HOUR, iat_future))), AUTH_NOT_YET_VALID);
    assert_int_equal(verify(mint_hs256(claims_with(NOW + HOUR, iat_past))), AUTH_OK);
    assert_int_equal(verify(mint_hs256(claims_with(NOW + HOUR, ",\"nbf\":\"soon\""))),
                     AUTH_BAD_CLAIMS);
    assert_int_equal(verify(mint_hs256(claims_with(NOW + HOUR, ",\"iat\":null"))), AUTH_BAD_CLAIMS);
}

static const char *claims_from(const char *issuer_member, const char *audience_member)
{
    return format("{%s%s\"exp\":%lld,\"sub\":\"user-1\",\"tenant\":\"acme\"}", issuer_member,
                  audience_member, (long long)(NOW + HOUR));
}

static void test_issuer(void **state)
{
    (void)state;
    const char *audience = "\"aud\":\"" AUDIENCE "\",";
    assert_int_equal(verify(mint_hs256(claims_from("\"iss\":\"" ISSUER "\",", audience))), AUTH_OK);
    assert_int_equal(verify(mint_hs256(claims_from("\"iss\":\"https://evil.test\",", audience))),
                     AUTH_BAD_ISSUER);
    assert_int_equal(verify(mint_hs256(claims_from("", audience))), AUTH_BAD_ISSUER);
    assert_int_equal(verify(mint_hs256(claims_from("\"iss\":[\"" ISSUER "\"],", audience))),
                     AUTH_BAD_ISSUER);
}

static void test_audience(void **state)
{
    (void)state;
    const char *issuer = "\"iss\":\"" ISSUER "\",";
    struct {
        const char *member;
        enum auth_status expected;
    } cases[] = {
        {"\"aud\":\"" AUDIENCE "\",", AUTH_OK},
        {"\"aud\":[\"other\",\"" AUDIENCE "\"],", AUTH_OK},
        {"\"aud\":\"other\",", AUTH_BAD_AUDIENCE},
        {"\"aud\":[\"other\",\"jobgatex\"],", AUTH_BAD_AUDIENCE},
        {"\"aud\":[],", AUTH_BAD_AUDIENCE},
        {"\"aud\":[\"" AUDIENCE "\",7],", AUTH_BAD_AUDIENCE},
        {"\"aud\":{\"" AUDIENCE "\":1},", AUTH_BAD_AUDIENCE},
        {"", AUTH_BAD_AUDIENCE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *token = mint_hs256(claims_from(issuer, cases[i].member));
        if (verify(token) != cases[i].expected)
            fail_msg("aud member %s", cases[i].member);
    }
}

static const char *claims_naming(const char *tenant_member, const char *subject_member)
{
    return format("{\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld%s%s}", ISSUER, AUDIENCE,
                  (long long)(NOW + HOUR), tenant_member, subject_member);
}

static void test_tenant_claim(void **state)
{
    (void)state;
    const char *subject = ",\"sub\":\"user-1\"";
    char long_tenant[AUTH_MAX_TENANT_BYTES + 2];
    memset(long_tenant, 't', sizeof long_tenant - 1);
    long_tenant[sizeof long_tenant - 1] = '\0';

    struct principal principal;
    const char *longest = format(",\"tenant\":\"%.*s\"", AUTH_MAX_TENANT_BYTES, long_tenant);
    assert_int_equal(verify_at(mint_hs256(claims_naming(longest, subject)), NOW, &principal),
                     AUTH_OK);
    assert_int_equal(strlen(principal.tenant), AUTH_MAX_TENANT_BYTES);

    const char *refused[] = {
        "",
        format(",\"tenant\":\"%s\"", long_tenant),
        ",\"tenant\":\"\"",
        ",\"tenant\":\"ac me\"",
        ",\"tenant\":\"ac\\\"me\"",
        ",\"tenant\":\"ac'me\"",
        ",\"tenant\":\"acm\\u00e9\"",
        ",\"tenant\":42",
        ",\"org\":\"acme\"",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (verify(mint_hs256(claims_naming(refused[i], subject))) != AUTH_BAD_CLAIMS)
            fail_msg("tenant member %s", refused[i]);
    }

    /* The claim's name comes from the settings. */
    settings.tenant_claim = "org";
    enum auth_status status = verify(mint_hs256(claims_naming(",\"org\":\"acme\"", subject)));
    settings.tenant_claim = "tenant";
    assert_int_equal(status, AUTH_OK);
}

static void test_subject_claim(void **state)
{
    (void)state;
    const char *tenant = ",\"tenant\":\"acme\"";
    char long_subject[AUTH_MAX_SUBJECT_BYTES + 2];
    memset(long_subject, 's', sizeof long_subject - 1);
    long_subject[sizeof long_subject - 1] = '\0';

    struct principal principal;
    const char *longest = format(",\"sub\":\"%.*s\"", AUTH_MAX_SUBJECT_BYTES, long_subject);
    assert_int_equal(verify_at(mint_hs256(claims_naming(tenant, longest)), NOW, &principal),
                     AUTH_OK);
    assert_int_equal(strlen(principal.subject), AUTH_MAX_SUBJECT_BYTES);
    assert_int_equal(
        verify_at(mint_hs256(claims_naming(tenant, ",\"sub\":\"J\\u00fcrgen\"")), NOW, &principal),
        AUTH_OK);
    assert_string_equal(principal.subject, "J\xc3\xbcrgen");

    const char *refused[] = {
        "",
        format(",\"sub\":\"%s\"", long_subject),
        ",\"sub\":\"\"",
        ",\"sub\":\"user\\n{\\\"level\\\":\\\"error\\\"}\"",
        ",\"sub\":\"user\\u007f\"",
        ",\"sub\":\"user\\u0085\"",
        ",\"sub\":17",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (verify(mint_hs256(claims_naming(tenant, refused[i]))) != AUTH_BAD_CLAIMS)
            fail_msg("sub member %s", refused[i]);
    }
}

static void test_scopes(void **state)
{
    (void)state;
    struct principal principal;
    const char *spaced = claims_with(NOW + HOUR, ",\"scope\":\"  a   b \"");
    assert_int_equal(verify_at(mint_hs256(spaced), NOW, &principal), AUTH_OK);
    assert_string_equal(principal.scopes, "a b ");

    assert_int_equal(verify_at(mint_hs256(claims_with(NOW + HOUR, "")), NOW, &principal), AUTH_OK);
    assert_string_equal(principal.scopes, "");

    char scope[AUTH_MAX_SCOPES_BYTES + 1];
    memset(scope, 'x', sizeof scope - 1);
    scope[sizeof scope - 1] = '\0';
    const char *fits = format(",\"scp\":[\"%.*s\"]", AUTH_MAX_SCOPES_BYTES - 1, scope);
    assert_int_equal(verify_at(mint_hs256(claims_with(NOW + HOUR, fits)), NOW, &principal),
                     AUTH_OK);
    assert_int_equal(strlen(principal.scopes), AUTH_MAX_SCOPES_BYTES);

    const char *refused[] = {
        format(",\"scp\":[\"%s\"]", scope),
        format(",\"scope\":\"%.*s y\"", AUTH_MAX_SCOPES_BYTES - 2, scope),
        ",\"scope\":\"a\",\"scp\":[\"b\"]",
        ",\"scope\":[\"a\"]",
        ",\"scp\":\"a b\"",
        ",\"scp\":[\"tier:bulk tier:critical\"]",
        ",\"scp\":[\"a\",1]",
        ",\"scp\":[\"\"]",
        ",\"scope\":\"a\\tb\"",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (verify(mint_hs256(claims_with(NOW + HOUR, refused[i]))) != AUTH_BAD_CLAIMS)
            fail_msg("scope member %.60s", refused[i]);
    }
}

static void test_token_size_limit(void **state)
{
    (void)state;
    static char pad[AUTH_MAX_TOKEN_BYTES];
    static char claims[2 * AUTH_MAX_TOKEN_BYTES];
    memset(pad, 'p', sizeof pad - 1);

    /* Grow a valid token until it crosses the limit; the last one under it must pass. */
    char *previous = NULL;
    char *token = NULL;
    for (int pad_len = 5000; token == NULL || strlen(token) <= AUTH_MAX_TOKEN_BYTES; pad_len++) {
        free(previous);
        previous = token;
        snprintf(claims, sizeof claims,
                 "{\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,"
                 "\"sub\":\"u\",\"tenant\":\"acme\",\"pad\":\"%.*s\"}",
                 ISSUER, AUDIENCE, (long long)(NOW + HOUR), pad_len, pad);
        token = auth_mint("HS256", "hs256", keys.secret256, sizeof keys.secret256, claims, NULL);
        assert_non_null(token);
    }
    keep(token);
    assert_non_null(previous);
    keep(previous);
    assert_true(strlen(previous) <= AUTH_MAX_TOKEN_BYTES);
    assert_int_equal(verify(previous), AUTH_OK);
    assert_int_equal(verify(token), AUTH_MALFORMED);
}

static void test_refuses_garbage(void **state)
{
    (void)state;
    const char *token = mint_hs256(valid_claims());
    const char *garbage[] = {
        "",
        "abc",
        "abc.def",
        "...",
        "!!!.???.###",
        format("%s.", token),
        format("%s.xyz", token),
        format("%s==", token),
        format("%s\n", token),
        format(" %s", token),
        format("%s.%s", "eyJhbGciOiJIUzI1NiJ9", "e30"),
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        if (verify(garbage[i]) != AUTH_MALFORMED)
            fail_msg("garbage %zu: %.40s", i, garbage[i]);
    }

    /* 32 bytes leave 2 spare bits in the last character; they must be zero. */
    char *noncanonical = keep(strdup(token));
    char *last = noncanonical + strlen(noncanonical) - 1;
    *last = *last == 'A' ? 'B' : (char)(*last + 1);
    assert_int_equal(verify(noncanonical), AUTH_MALFORMED);

    /* Characters of standard base64, or padding, inside a part. */
    const char *foreign = "+/=";
    for (size_t i = 0; i < 3; i++) {
        char *copy = keep(strdup(token));
        strrchr(copy, '.')[3] = foreign[i];
        assert_int_equal(verify(copy), AUTH_MALFORMED);
    }

    /* A lone sixth of a byte at the end of a part. */
    const char *header = "{\"alg\":\"HS256\", \"kid\":\"hs256\"}";
    const char *crafted = craft_hs256(header, valid_claims());
    assert_int_equal(verify(crafted), AUTH_OK);
    size_t header_len = (size_t)(strchr(crafted, '.') - crafted);
    assert_int_equal(header_len % 4, 0);
    assert_int_equal(verify(format("%.*sA%s", (int)header_len, crafted, crafted + header_len)),
                     AUTH_MALFORMED);

    struct principal principal;
    assert_int_equal(auth_verify(&settings, NULL, token, 0, NOW, &principal), AUTH_MALFORMED);
    assert_int_equal(auth_verify(&settings, NULL, NULL, 10, NOW, &principal), AUTH_MALFORMED);
    /* A length that stops short of the signature's end. */
    assert_int_not_equal(auth_verify(&settings, NULL, token, strlen(token) - 3, NOW, &principal),
                         AUTH_OK);
}

static void test_refuses_bad_json(void **state)
{
    (void)state;
    const char *header = "{\"alg\":\"HS256\",\"kid\":\"hs256\"}";
    const char *claims = valid_claims();
    const char *cases[][2] = {
        {"not json", claims},
        {"[\"HS256\"]", claims},
        {"{\"alg\":\"HS256\",\"kid\":\"hs256\",\"kid\":\"hs384\"}", claims},
        {"{\"alg\":\"HS256\",\"kid\":\"hs256\",\"crit\":[\"exp\"]}", claims},
        {header, "not json"},
        {header, "[1,2]"},
        {header, "{\"exp\":1,\"exp\":2}"},
        /* NUL could make "hs256\0x" pass for "hs256" in C string code; jansson refuses it. */
        {"{\"alg\":\"HS256\",\"kid\":\"hs256\\u0000x\"}", claims},
        {header, claims_from("\"iss\":\"" ISSUER "\\u0000x\",", "\"aud\":\"" AUDIENCE "\",")},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (verify(craft_hs256(cases[i][0], cases[i][1])) != AUTH_MALFORMED)
            fail_msg("json case %zu", i);
    }
    assert_int_equal(verify(craft_hs256(header, claims)), AUTH_OK);
}

static void test_failure_clears_principal(void **state)
{
    (void)state;
    struct principal principal;
    memset(&principal, 'x', sizeof principal);
    const char *late_scope = claims_with(NOW + HOUR, ",\"scp\":[\"a\",2]");
    assert_int_equal(verify_at(mint_hs256(late_scope), NOW, &principal), AUTH_BAD_CLAIMS);
    assert_string_equal(principal.tenant, "");
    assert_string_equal(principal.subject, "");
    assert_string_equal(principal.scopes, "");
    assert_int_equal(principal.expires_at, 0);
}

static struct auth_cache_stats stats_of(const struct auth_cache *cache)
{
    struct auth_cache_stats stats;
    auth_cache_read_stats(cache, &stats);
    return stats;
}

static enum auth_status verify_cached(const struct auth_settings *with, struct auth_cache *cache,
                                      const char *token, int64_t now, struct principal *principal)
{
    return auth_verify(with, cache, token, strlen(token), now, principal);
}

static void test_cache_serves_until_expiry(void **state)
{
    (void)state;
    struct auth_cache *cache = auth_cache_new(64);
    assert_non_null(cache);
    const char *token = mint_as("ES256", "es256", valid_claims());
    struct principal principal;

    assert_int_equal(verify_cached(&settings, cache, token, NOW, &principal), AUTH_OK);
    assert_int_equal(stats_of(cache).misses, 1);
    assert_int_equal(stats_of(cache).hits, 0);

    memset(&principal, 0, sizeof principal);
    assert_int_equal(verify_cached(&settings, cache, token, NOW, &principal), AUTH_OK);
    assert_int_equal(stats_of(cache).hits, 1);
    assert_principal(&principal, "tier:bulk queue:mailers ");

    /* The cached verdict lapses exactly when a fresh one would. */
    assert_int_equal(verify_cached(&settings, cache, token, NOW + HOUR + LEEWAY, &principal),
                     AUTH_OK);
    assert_int_equal(stats_of(cache).hits, 2);
    assert_int_equal(verify_cached(&settings, cache, token, NOW + HOUR + LEEWAY + 1, &principal),
                     AUTH_EXPIRED);
    assert_int_equal(stats_of(cache).hits, 3);
    assert_string_equal(principal.tenant, "");

    /* The lapsed entry is gone; a verification at an earlier time starts afresh. */
    assert_int_equal(verify_cached(&settings, cache, token, NOW, &principal), AUTH_OK);
    assert_int_equal(stats_of(cache).misses, 2);
    auth_cache_free(cache);
}

static void test_cache_rechecks_not_before(void **state)
{
    (void)state;
    struct auth_cache *cache = auth_cache_new(64);
    assert_non_null(cache);
    const char *token =
        mint_hs256(claims_with(NOW + HOUR, format(",\"nbf\":%lld", (long long)NOW)));
    struct principal principal;

    assert_int_equal(verify_cached(&settings, cache, token, NOW, &principal), AUTH_OK);
    assert_int_equal(verify_cached(&settings, cache, token, NOW - LEEWAY - 1, &principal),
                     AUTH_NOT_YET_VALID);
    assert_int_equal(stats_of(cache).hits, 1);
    assert_int_equal(verify_at(token, NOW - LEEWAY - 1, &principal), AUTH_NOT_YET_VALID);
    auth_cache_free(cache);
}

static void test_cache_misses_under_other_keyring(void **state)
{
    (void)state;
    struct auth_cache *cache = auth_cache_new(64);
    assert_non_null(cache);
    const char *token = mint_hs256(valid_claims());
    struct principal principal;
    assert_int_equal(verify_cached(&settings, cache, token, NOW, &principal), AUTH_OK);

    /* A reloaded keyring with the same key: a fresh verification, not a hit. */
    struct auth_keyring *reloaded = auth_keyring_new();
    assert_non_null(reloaded);
    add_key(reloaded, "hs256", "HS256", keys.secret256, sizeof keys.secret256);
    struct auth_settings reloaded_settings = settings;
    reloaded_settings.keyring = reloaded;
    assert_int_equal(verify_cached(&reloaded_settings, cache, token, NOW, &principal), AUTH_OK);
    assert_int_equal(stats_of(cache).hits, 0);
    assert_int_equal(stats_of(cache).misses, 2);
    auth_keyring_free(reloaded);

    /*
     * A reload that drops the key must refuse the token, even when malloc hands the new
     * keyring the freed one's address.
     */
    struct auth_keyring *emptied = auth_keyring_new();
    assert_non_null(emptied);
    reloaded_settings.keyring = emptied;
    assert_int_equal(verify_cached(&reloaded_settings, cache, token, NOW, &principal),
                     AUTH_UNKNOWN_KID);
    assert_int_equal(stats_of(cache).hits, 0);
    auth_keyring_free(emptied);
    auth_cache_free(cache);
}

static void test_cache_misses_under_other_claim_settings(void **state)
{
    (void)state;
    struct auth_cache *cache = auth_cache_new(64);
    assert_non_null(cache);
    const char *token = mint_hs256(valid_claims());
    struct principal principal;
    assert_int_equal(verify_cached(&settings, cache, token, NOW, &principal), AUTH_OK);

    struct auth_settings other = settings;
    other.issuer = "https://other.test";
    assert_int_equal(verify_cached(&other, cache, token, NOW, &principal), AUTH_BAD_ISSUER);
    other = settings;
    other.audience = "other";
    assert_int_equal(verify_cached(&other, cache, token, NOW, &principal), AUTH_BAD_AUDIENCE);
    assert_int_equal(stats_of(cache).hits, 0);
    auth_cache_free(cache);
}

static void test_cache_keeps_no_failures(void **state)
{
    (void)state;
    struct auth_cache *cache = auth_cache_new(64);
    assert_non_null(cache);
    const char *forged = flip_signature_byte(mint_hs256(valid_claims()));
    struct principal principal;
    for (int i = 0; i < 3; i++)
        assert_int_equal(verify_cached(&settings, cache, forged, NOW, &principal),
                         AUTH_BAD_SIGNATURE);
    assert_int_equal(stats_of(cache).hits, 0);
    assert_int_equal(stats_of(cache).misses, 3);
    auth_cache_free(cache);
}

static void test_cache_is_bounded(void **state)
{
    (void)state;
    const char *first = mint_hs256(claims_with(NOW + HOUR, ",\"scope\":\"a\""));
    const char *second = mint_hs256(claims_with(NOW + HOUR, ",\"scope\":\"b\""));
    struct principal principal;

    /* One slot: each token evicts the other. */
    struct auth_cache *cache = auth_cache_new(1);
    assert_non_null(cache);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(verify_cached(&settings, cache, first, NOW, &principal), AUTH_OK);
        assert_string_equal(principal.scopes, "a ");
        assert_int_equal(verify_cached(&settings, cache, second, NOW, &principal), AUTH_OK);
        assert_string_equal(principal.scopes, "b ");
    }
    assert_int_equal(stats_of(cache).hits, 0);
    assert_int_equal(verify_cached(&settings, cache, second, NOW, &principal), AUTH_OK);
    assert_int_equal(stats_of(cache).hits, 1);
    auth_cache_free(cache);

    /* No slots: verification still works and nothing is remembered. */
    cache = auth_cache_new(0);
    assert_non_null(cache);
    assert_int_equal(verify_cached(&settings, cache, first, NOW, &principal), AUTH_OK);
    assert_int_equal(verify_cached(&settings, cache, first, NOW, &principal), AUTH_OK);
    assert_int_equal(stats_of(cache).hits, 0);
    auth_cache_free(cache);

    struct auth_cache_stats stats = stats_of(NULL);
    assert_int_equal(stats.hits + stats.misses, 0);
}

static void test_has_scope_exact_match(void **state)
{
    (void)state;
    struct principal principal;
    assert_int_equal(verify_at(mint_hs256(valid_claims()), NOW, &principal), AUTH_OK);
    struct {
        const char *scope;
        int held;
    } cases[] = {
        {"tier:bulk", 1},
        {"queue:mailers", 1},
        {"tier:bul", 0},
        {"ier:bulk", 0},
        {"tier:bulk ", 0},
        {"tier:bulkx", 0},
        {"queue:mailer", 0},
        {"tier:bulk queue:mailers", 0},
        {"", 0},
        {"tier:critical", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *scope = cases[i].scope;
        if (auth_has_scope(&principal, scope, strlen(scope)) != cases[i].held)
            fail_msg("scope \"%s\"", scope);
    }
    /* Length, not NUL, bounds the scope asked about. */
    assert_int_equal(auth_has_scope(&principal, "tier:bulkhead", 9), 1);
    assert_int_equal(auth_has_scope(&principal, "tier:bulkhead", 8), 0);
}

static void test_mint_round_trip(void **state)
{
    (void)state;
    const char *algs[] = {"HS256", "HS384", "HS512", "RS256", "ES256"};
    const char *kids[] = {"hs256", "hs384", "hs512", "rs256", "es256"};
    for (size_t i = 0; i < 5; i++) {
        const char *token = mint_as(algs[i], kids[i], valid_claims());
        struct principal principal;
        assert_int_equal(verify_at(token, NOW, &principal), AUTH_OK);
        assert_principal(&principal, "tier:bulk queue:mailers ");

        /* The header carries alg, typ and kid. */
        const char *dot = strchr(token, '.');
        unsigned char header[256];
        size_t header_len = 0;
        assert_int_equal(sodium_base642bin(header, sizeof header - 1, token, (size_t)(dot - token),
                                           NULL, &header_len, NULL,
                                           sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                         0);
        header[header_len] = '\0';
        assert_non_null(strstr((char *)header, format("\"alg\":\"%s\"", algs[i])));
        assert_non_null(strstr((char *)header, "\"typ\":\"JWT\""));
        assert_non_null(strstr((char *)header, format("\"kid\":\"%s\"", kids[i])));
    }
}

static void test_mint_refuses_bad_input(void **state)
{
    (void)state;
    const char *reason = NULL;
    const unsigned char *secret = keys.secret256;
    const char *claims = valid_claims();
    assert_null(auth_mint("none", "k", secret, 32, claims, &reason));
    assert_non_null(reason);
    assert_null(auth_mint("HS256", "k", secret, 31, claims, &reason));
    assert_null(auth_mint("HS256", "", secret, 32, claims, &reason));
    assert_null(auth_mint("HS256", "k", secret, 32, "[1]", &reason));
    assert_null(auth_mint("HS256", "k", secret, 32, "{\"exp\":", &reason));
    const char *public_pem = keys.rsa_pem.public_pem;
    reason = NULL;
    assert_null(auth_mint("RS256", "k", (const unsigned char *)public_pem, strlen(public_pem),
                          claims, &reason));
    assert_non_null(reason);
}

static void test_status_reasons(void **state)
{
    (void)state;
    const char *seen[AUTH_BAD_CLAIMS + 1];
    for (int status = AUTH_OK; status <= AUTH_BAD_CLAIMS; status++) {
        const char *reason = auth_status_reason((enum auth_status)status);
        assert_non_null(reason);
        assert_true(strlen(reason) > 0 && strlen(reason) < 64);
        for (int earlier = AUTH_OK; earlier < status; earlier++)
            assert_string_not_equal(seen[earlier], reason);
        seen[status] = reason;
    }
    assert_string_equal(auth_status_reason(AUTH_EXPIRED), "token expired");
    assert_non_null(auth_status_reason((enum auth_status)99));
}

#define TEST(name) cmocka_unit_test_teardown(name, free_kept)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_keyring_accepts_each_algorithm),
        TEST(test_keyring_refuses_wrong_keys),
        TEST(test_keyring_refuses_duplicate_kid),
        TEST(test_accepts_hmac_tokens),
        TEST(test_accepts_rs256_with_scp_array),
        TEST(test_accepts_es256),
        TEST(test_refuses_alg_none),
        TEST(test_refuses_hmac_keyed_with_rsa_public_key),
        TEST(test_refuses_other_algorithm_for_key),
        TEST(test_refuses_unknown_or_missing_kid),
        TEST(test_refuses_bad_signatures),
        TEST(test_refuses_der_ecdsa_signature),
        TEST(test_expiry),
        TEST(test_exp_required_and_integer),
        TEST(test_not_before_and_issued_at),
        TEST(test_issuer),
        TEST(test_audience),
        TEST(test_tenant_claim),
        TEST(test_subject_claim),
        TEST(test_scopes),
        TEST(test_token_size_limit),
        TEST(test_refuses_garbage),
        TEST(test_refuses_bad_json),
        TEST(test_failure_clears_principal),
        TEST(test_cache_serves_until_expiry),
        TEST(test_cache_rechecks_not_before),
        TEST(test_cache_misses_under_other_keyring),
        TEST(test_cache_misses_under_other_claim_settings),
        TEST(test_cache_keeps_no_failures),
        TEST(test_cache_is_bounded),
        TEST(test_has_scope_exact_match),
        TEST(test_mint_round_trip),
        TEST(test_mint_refuses_bad_input),
        TEST(test_status_reasons),
    };
    return cmocka_run_group_tests(tests, generate_keys, free_keys);
}
