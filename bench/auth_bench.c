/*
 * auth_bench: microseconds per auth_verify for HS256, RS256 and ES256, cold (no cache,
 * so every call checks the signature) and warm (the token already in the cache).
 * Keys are generated at start. `make bench` builds and runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"

#define NOW ((int64_t)1700000000)

static double now_microseconds(void)
{
    struct timespec clock;
    clock_gettime(CLOCK_MONOTONIC, &clock);
    return (double)clock.tv_sec * 1e6 + (double)clock.tv_nsec / 1e3;
}

/* PEM text of a key's private or public half; the caller frees it. */
static char *pem_of(EVP_PKEY *key, int private_part)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return NULL;
    int written = private_part ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                               : PEM_write_bio_PUBKEY(bio, key);
    char *data = NULL;
    long len = written == 1 ? BIO_get_mem_data(bio, &data) : -1;
    char *pem = len > 0 ? malloc((size_t)len + 1) : NULL;
    if (pem != NULL) {
        memcpy(pem, data, (size_t)len);
        pem[len] = '\0';
    }
    BIO_free(bio);
    return pem;
}

static int measure(const char *label, const struct auth_settings *settings,
                   struct auth_cache *cache, const char *token, int iterations)
{
    struct principal principal;
    size_t len = strlen(token);
    /* One call first, so the warm run measures hits only. */
    if (auth_verify(settings, cache, token, len, NOW, &principal) != AUTH_OK) {
        fprintf(stderr, "%s: token refused\n", label);
        return -1;
    }
    double start = now_microseconds();
    for (int i = 0; i < iterations; i++) {
        if (auth_verify(settings, cache, token, len, NOW, &principal) != AUTH_OK) {
            fprintf(stderr, "%s: token refused\n", label);
            return -1;
        }
    }
    double elapsed = now_microseconds() - start;
    printf("%-14s %9.2f us/verify  (%d runs)\n", label, elapsed / iterations, iterations);
    return 0;
}

static char *mint(const char *alg, const char *kid, const void *material, size_t len)
{
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"https://issuer.test\",\"aud\":\"jobgate\",\"exp\":%lld,"
             "\"iat\":%lld,\"sub\":\"service-account-42\",\"tenant\":\"acme\","
             "\"scope\":\"tier:bulk tier:standard queue:mailers\"}",
             (long long)(NOW + 3600), (long long)NOW);
    const char *reason = NULL;
    char *token = auth_mint(alg, kid, material, len, claims, &reason);
    if (token == NULL)
        fprintf(stderr, "minting %s: %s\n", alg, reason);
    return token;
}

int main(void)
{
    static const unsigned char secret[32] = "an HS256 secret of 32 bytes ....";
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    char *rsa_private = rsa ? pem_of(rsa, 1) : NULL;
    char *rsa_public = rsa ? pem_of(rsa, 0) : NULL;
    char *ec_private = ec ? pem_of(ec, 1) : NULL;
    char *ec_public = ec ? pem_of(ec, 0) : NULL;
    struct auth_keyring *keyring = auth_keyring_new();
    struct auth_cache *cache = auth_cache_new(4096);
    const char *reason = NULL;
    int status = 1;
    if (rsa_private == NULL || rsa_public == NULL || ec_private == NULL || ec_public == NULL ||
        keyring == NULL || cache == NULL ||
        auth_keyring_add(keyring, "hs", "HS256", secret, sizeof secret, &reason) != 0 ||
        auth_keyring_add(keyring, "rs", "RS256", (const unsigned char *)rsa_public,
                         strlen(rsa_public), &reason) != 0 ||
        auth_keyring_add(keyring, "es", "ES256", (const unsigned char *)ec_public,
                         strlen(ec_public), &reason) != 0) {
        fprintf(stderr, "setup failed: %s\n", reason ? reason : "out of memory");
        goto out;
    }

    struct auth_settings settings = {
        .issuer = "https://issuer.test",
        .audience = "jobgate",
        .leeway_seconds = 30,
        .tenant_claim = "tenant",
        .keyring = keyring,
    };
    char *hs = mint("HS256", "hs", secret, sizeof secret);
    char *rs = mint("RS256", "rs", rsa_private, strlen(rsa_private));
    char *es = mint("ES256", "es", ec_private, strlen(ec_private));
    if (hs != NULL && rs != NULL && es != NULL &&
        measure("HS256 cold", &settings, NULL, hs, 200000) == 0 &&
        measure("HS256 warm", &settings, cache, hs, 1000000) == 0 &&
        measure("RS256 cold", &settings, NULL, rs, 20000) == 0 &&
        measure("RS256 warm", &settings, cache, rs, 1000000) == 0 &&
        measure("ES256 cold", &settings, NULL, es, 20000) == 0 &&
        measure("ES256 warm", &settings, cache, es, 1000000) == 0)
        status = 0;
    free(hs);
    free(rs);
    free(es);

out:
    auth_cache_free(cache);
    auth_keyring_free(keyring);
    free(rsa_private);
    free(rsa_public);
    free(ec_private);
    free(ec_public);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    return status;
}
