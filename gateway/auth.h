/*
 * auth: JWT bearer authentication.
 *
 * The keyring holds one verification key per kid, each pinned to exactly one
 * algorithm (HS256/384/512, RS256, ES256). Asymmetric keys are parsed once, when they
 * are added. A token is accepted only when its header names a known kid, its alg
 * equals that key's alg, its signature verifies, and its claims pass the checks in
 * auth_verify(). libjwt is used only to mint tokens, never to decide whether one is
 * valid: the gateway reads tokens itself, pins the algorithm and checks exp/nbf/iat.
 *
 * Verified tokens are remembered in a bounded per-thread cache until they expire, so
 * a repeated token costs a hash and a lookup, not a signature check.
 */
#ifndef JOBGATE_AUTH_H
#define JOBGATE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_MAX_TOKEN_BYTES 8192
#define AUTH_MAX_TENANT_BYTES 128
#define AUTH_MAX_SUBJECT_BYTES 256
#define AUTH_MAX_SCOPES_BYTES 1024

enum auth_status {
    AUTH_OK = 0,
    AUTH_MISSING,      /* no Authorization header, or not "Bearer <token>" */
    AUTH_MALFORMED,    /* not three base64url parts, or bad JSON in them */
    AUTH_UNKNOWN_KID,  /* no kid, or no key with that kid */
    AUTH_ALG_MISMATCH, /* alg is none, unknown, or differs from the key's */
    AUTH_BAD_SIGNATURE,
    AUTH_EXPIRED,       /* exp is missing, or in the past beyond the leeway */
    AUTH_NOT_YET_VALID, /* nbf or iat in the future beyond the leeway */
    AUTH_BAD_ISSUER,
    AUTH_BAD_AUDIENCE,
    AUTH_BAD_CLAIMS, /* tenant, subject or scopes missing or invalid; non-integer times */
    AUTH_NOT_CACHED, /* auth_verify_cached only: the cache holds no verdict on the token */
};

/* Who a verified token speaks for. Plain values, safe to copy. */
struct principal {
    char tenant[AUTH_MAX_TENANT_BYTES + 1];
    char subject[AUTH_MAX_SUBJECT_BYTES + 1];
    /* Granted scopes, each followed by one space, from "scope" or "scp". */
    char scopes[AUTH_MAX_SCOPES_BYTES + 1];
    int64_t expires_at;
};

struct auth_keyring;

struct auth_settings {
    const char *issuer;
    const char *audience;
    int64_t leeway_seconds;
    const char *tenant_claim;
    const struct auth_keyring *keyring;
};

struct auth_cache;

struct auth_keyring *auth_keyring_new(void);
void auth_keyring_free(struct auth_keyring *keyring);

/*
 * Adds a verification key. alg is the JWA name ("HS256", "RS256", "ES256", ...). For
 * HMAC algorithms material is the raw secret (at least 32 bytes); otherwise it is a
 * PEM public key of the matching type. Returns 0, or -1 with *reason set to a static
 * string.
 */
int auth_keyring_add(struct auth_keyring *keyring, const char *kid, const char *alg,
                     const unsigned char *material, size_t len, const char **reason);

/* Whether alg names an algorithm the keyring supports. */
int auth_alg_supported(const char *alg);

/* Returns the alg of the key with this kid, or NULL. */
const char *auth_keyring_alg(const struct auth_keyring *keyring, const char *kid);

/* A cache of up to entries verified tokens; returns NULL when out of memory. */
struct auth_cache *auth_cache_new(size_t entries);
void auth_cache_free(struct auth_cache *cache);

/* Lookups answered from the cache and lookups that were not, for metrics and tests. */
struct auth_cache_stats {
    uint64_t hits;
    uint64_t misses;
};

/* Copies the cache's counters into *stats; all zero when cache is NULL. */
void auth_cache_read_stats(const struct auth_cache *cache, struct auth_cache_stats *stats);

/*
 * Verifies a bearer token (the part after "Bearer ") at time now (Unix seconds) and
 * fills *principal; on any other status than AUTH_OK *principal is all zero. The cache
 * may be NULL; a cache must only ever be used by one thread.
 */
enum auth_status auth_verify(const struct auth_settings *settings, struct auth_cache *cache,
                             const char *token, size_t len, int64_t now,
                             struct principal *principal);

/*
 * As auth_verify, answering only from the cache: a token it holds no verdict on is
 * AUTH_NOT_CACHED, and its signature is not checked. For callers that may not spend a
 * signature check on this request.
 */
enum auth_status auth_verify_cached(const struct auth_settings *settings, struct auth_cache *cache,
                                    const char *token, size_t len, int64_t now,
                                    struct principal *principal);

/* A short, fixed description of a status, fit for a problem's detail. */
const char *auth_status_reason(enum auth_status status);

/* Whether the principal holds this exact scope. */
int auth_has_scope(const struct principal *principal, const char *scope, size_t len);

/*
 * Mints a token signed with key material (an HMAC secret or a PEM private key) for
 * alg and kid, with the given claims JSON object text merged in. Returns a malloc'd
 * string, or NULL with *reason set.
 */
char *auth_mint(const char *alg, const char *kid, const unsigned char *material, size_t len,
                const char *claims_json, const char **reason);

#endif
