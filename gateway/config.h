/*
 * config: the gateway's configuration, loaded from one JSON file.
 *
 * A loaded config is immutable and owned by whoever called config_load(); every
 * path in it is already resolved against the config file's directory, and every
 * key file it names is already read into the keyring. Loading checks everything it
 * can and reports every problem it finds, each as "FILE: $.json.path: reason".
 */
#ifndef JOBGATE_CONFIG_H
#define JOBGATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "envelope.h"
#include "schema.h"

#define CONFIG_MAX_TIERS 64

struct config_listener {
    char *host; /* NULL when the listener is disabled */
    uint16_t port;
};

struct config_tls_listener {
    struct config_listener address;
    char *certificate_file;
    char *key_file;
};

struct config_tier {
    char *name;
    /* Bit i set: a scope for this tier also grants tier i. Always includes itself. */
    uint64_t grants;
    long seal_to; /* index into config.envelope.sealing_keys, or -1 */
};

/* A job class and the schema its arguments must pass. */
struct config_class {
    char *name;
    char *schema_file; /* resolved path */
    struct schema *schema;
};

/*
 * A GCRA budget (generic cell rate algorithm): on average per_second events a
 * second, and up to burst of them at once. per_second 0 means no limit.
 */
struct config_rate {
    double per_second;
    uint64_t burst;
};

/* A tenant's limits. The entry named "*" covers every tenant not named. */
struct config_tenant {
    char *name;
    struct config_rate jobs; /* jobs enqueued, counted across every replica (in Redis) */
    size_t max_body_bytes;   /* defaults to limits.max_body_bytes */
};

struct config_queue {
    char *name;
    size_t tier;    /* index into config.tiers */
    char **classes; /* each one of config.classes */
    size_t class_count;
    char **tenants; /* empty when any_tenant is set */
    size_t tenant_count;
    int any_tenant;        /* "tenants": ["*"] */
    size_t max_body_bytes; /* never above config.limits.max_body_bytes */
    /* The queue's own "seal_to", else its tier's: a sealing key index, or -1. */
    long seal_to;
    uint64_t max_depth; /* jobs the Redis list may hold before 503 queue-full; 0: no cap */
};

struct config_limits {
    size_t max_body_bytes;   /* the default for queues and tenants, and their ceiling */
    size_t http_body_cap;    /* the largest any queue and tenant allow: the HTTP layer's cap */
    size_t max_job_bytes;    /* one job's envelope, sealed values included, before signing */
    size_t max_batch_jobs;   /* jobs in one batch request */
    size_t max_header_bytes; /* request header names and values, all together */
    /* HTTP/2 streams a connection may reset before they are answered. */
    struct config_rate connection_resets;
    /* Tokens from one client address that may fail verification. */
    struct config_rate address_failed_tokens;
    uint64_t request_timeout_ms; /* HTTP/1.1 request timeout */
    uint64_t idle_timeout_ms;    /* HTTP/2 idle timeout */
    uint64_t handshake_timeout_ms;
};

struct config_redis {
    char *host;
    uint16_t port;
    char *username; /* NULL: default user */
    char *password; /* read from password_file; NULL when not configured */
    char *namespace_;
    uint64_t connect_timeout_ms;
    uint64_t command_timeout_ms;
    uint64_t reconnect_min_ms;
    uint64_t reconnect_max_ms;
    size_t max_in_flight; /* per event loop */
};

/* A verification key as the config names it; its material is in the keyring. */
struct config_key {
    char *kid;
    char *alg;
    char *file; /* resolved path */
};

struct config_auth {
    char *issuer;
    char *audience;
    int64_t leeway_seconds;
    char *tenant_claim;
    size_t token_cache_entries; /* per event loop */
    struct config_key *keys;
    size_t key_count;
    struct auth_keyring *keyring;
};

/* A workers' X25519 public key that secrets are sealed to. */
struct config_sealing_key {
    char *kid;
    unsigned char public_key[KEYFILE_KEY_BYTES];
};

/* How jobs are signed and sealed (workers/ENVELOPE.md). */
struct config_envelope {
    struct envelope_signer signer; /* the key read from signing_key.file, wiped when freed */
    int64_t expires_after_seconds; /* a job's exp is its iat plus this */
    uint64_t seal_epoch_ms;        /* how long one ephemeral sealing key lives */
    size_t jobs_per_signature;     /* the most jobs one signature covers */
    struct config_sealing_key *sealing_keys;
    size_t sealing_key_count;
};

struct config_idempotency {
    uint64_t window_seconds; /* how long an Idempotency-Key's first answer is kept */
};

struct config {
    _Atomic unsigned references; /* see config_retain */
    char *path;
    unsigned threads;
    struct config_listener cleartext;
    struct config_tls_listener tls;
    struct config_limits limits;
    struct config_redis redis;
    struct config_auth auth;
    struct config_envelope envelope;
    struct config_tier *tiers;
    size_t tier_count;
    struct config_class *classes;
    size_t class_count;
    struct config_queue *queues;
    size_t queue_count;
    /* Named tenants, then always a last entry "*" (unlimited unless the file sets one). */
    struct config_tenant *tenants;
    size_t tenant_count;
    struct config_idempotency idempotency;
};

/*
 * A callback that receives one problem found while loading, already formatted as
 * "FILE: $.json.path: reason". Loading goes on after a problem so that every one
 * is reported.
 */
typedef void (*config_report_fn)(void *data, const char *message);

/*
 * Loads and checks the config at path. Returns a config owned by the caller (free it
 * with config_free), or NULL after reporting at least one problem through report.
 */
struct config *config_load(const char *path, config_report_fn report, void *report_data);

void config_free(struct config *config);

/*
 * A loaded config starts with one reference, its loader's. Every event loop holds one
 * on the config it serves, and every request one on the config it started under, so a
 * reload can swap configs while requests are in flight; the last release frees it.
 */
void config_retain(const struct config *config);
void config_release(const struct config *config);

/*
 * Whether next may replace current while serving: threads, listeners, HTTP limits and
 * Redis settings are fixed at start, so a change to any of them needs a restart.
 * Returns 1, or 0 with *reason naming the section that changed.
 */
int config_reloadable(const struct config *current, const struct config *next, const char **reason);

/* The class with this name, or NULL. name need not be NUL-terminated. */
const struct config_class *config_find_class(const struct config *config, const char *name,
                                             size_t len);

/* The tenant's own entry, else the "*" entry; never NULL. */
const struct config_tenant *config_find_tenant(const struct config *config, const char *name);

/* The queue with this name, or NULL. name need not be NUL-terminated. */
const struct config_queue *config_find_queue(const struct config *config, const char *name,
                                             size_t len);

#endif
