/*
 * envelope: the payload written to Redis for one job, signed and with its secrets
 * sealed, and the checks a worker makes before it runs one (workers/ENVELOPE.md).
 *
 * The payload is what Resque itself writes, {"class": ..., "args": [...]}, so stock
 * Resque and node-resque workers run it; its args hold one element, the version 1
 * envelope, which carries the producer's arguments.
 */
#ifndef JOBGATE_ENVELOPE_H
#define JOBGATE_ENVELOPE_H

#include <jansson.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "keyfile.h"
#include "merkle.h"
#include "schema.h"
#include "seal.h"

#define ENVELOPE_VERSION 1
#define ENVELOPE_JOB_ID_LEN 36
#define ENVELOPE_MAX_BYTES ((size_t)1 << 30)
/* The most jobs one signature may cover (envelope.jobs_per_signature). */
#define ENVELOPE_MAX_JOBS_PER_SIGNATURE 256
/* What an Ed25519 signature takes in base64url without padding. */
#define ENVELOPE_SIGNATURE_TEXT 86
/* The message signed for a batch is this label, then the root of its tree. */
#define ENVELOPE_TREE_LABEL "jobgate-tree-v1"

/* The key jobgate signs with. */
struct envelope_signer {
    char kid[KEYFILE_MAX_KID + 1];
    unsigned char secret_key[crypto_sign_SECRETKEYBYTES];
};

/* The workers' key a job's secrets are sealed to, and the sealer slot of its epoch. */
struct envelope_recipient {
    const char *kid;
    const unsigned char *public_key;
    struct sealer *sealer;
    size_t slot;
    uint64_t now_ms; /* monotonic, for the epoch */
};

/* Everything the envelope says besides the job itself. */
struct envelope_request {
    const char *id;
    const char *tenant;
    const char *subject;
    const char *queue;
    int64_t issued_at;                          /* Unix seconds */
    int64_t expires_at;                         /* Unix seconds */
    const struct schema *schema;                /* says which strings are secret */
    const struct envelope_recipient *recipient; /* NULL when the schema has no secrets */
    const struct envelope_signer *signer;
};

enum envelope_status {
    ENVELOPE_OK = 0,
    ENVELOPE_NO_MEMORY,
    ENVELOPE_NOT_SEALED,    /* a secret could not be sealed: no recipient, or a bad key */
    ENVELOPE_TOO_BIG,       /* the payload would pass ENVELOPE_MAX_BYTES */
    ENVELOPE_NOT_CANONICAL, /* the arguments have no RFC 8785 form (jobgate never parses such) */
};

/* Fills id with a new UUIDv7 (time-ordered, RFC 9562) and a terminating NUL. */
void envelope_new_job_id(char id[ENVELOPE_JOB_ID_LEN + 1]);

/*
 * A job's envelope, sealed but not yet signed: its RFC 8785 canonical form without
 * "proof" and "sig". Since members are sorted by name, those two go in at proof_at
 * (after "kid") and sig_at (after "sealed"), and the stored envelope is canonical too.
 */
struct envelope_draft {
    char *text; /* malloc'd */
    size_t len;
    size_t proof_at;
    size_t sig_at;
};

/*
 * Seals the secrets in job's args in place and writes the draft of its envelope.
 * Returns ENVELOPE_OK, and the caller releases the draft; or another status, and
 * nothing is owned.
 */
enum envelope_status envelope_draft(struct envelope_draft *draft, struct job *job,
                                    const struct envelope_request *request);

void envelope_draft_release(struct envelope_draft *draft);

/*
 * Drafts signed together: one Ed25519 signature over the root of their Merkle tree. A
 * batch is scratch space for one thread, reused from one signature to the next.
 */
struct envelope_batch;

/* A batch, or NULL when out of memory. */
struct envelope_batch *envelope_batch_new(void);

void envelope_batch_free(struct envelope_batch *batch);

/*
 * Signs the count drafts (1 to MERKLE_MAX_LEAVES, all with signer's kid) as one batch.
 * Returns 0, or -1 when count is out of range or OpenSSL fails for want of memory.
 */
int envelope_batch_sign(struct envelope_batch *batch, const struct envelope_draft *const *drafts,
                        size_t count, const struct envelope_signer *signer);

/*
 * The Resque payload {"class": class_name, "args": [envelope]} of draft, the index-th of
 * the signed batch, as a malloc'd string of *len bytes; NULL when out of memory.
 */
char *envelope_batch_payload(const struct envelope_batch *batch, size_t index,
                             const struct envelope_draft *draft, const char *class_name,
                             size_t class_len, size_t *len);

/*
 * Seals, drafts and signs job alone, as envelope_draft and envelope_batch_sign do, and
 * returns its payload as a malloc'd string, setting *len; or NULL with *status set.
 */
char *envelope_build(struct job *job, const struct envelope_request *request, size_t *len,
                     enum envelope_status *status);

/*
 * The Resque payload {"class": class_name, "args": [envelope]} of any envelope object,
 * written in canonical form, as a malloc'd string of *len bytes, starting from a buffer
 * of size_hint bytes; or NULL with *status set.
 */
char *envelope_payload(const char *class_name, size_t class_len, const json_t *envelope,
                       size_t size_hint, size_t *len, enum envelope_status *status);

/*
 * Signs envelope (an object) alone with signer: sets "kid", then "proof" and "sig" over
 * the canonical form of the rest. Returns 0, or -1 when out of memory or the envelope
 * has no canonical form.
 */
int envelope_sign(json_t *envelope, const struct envelope_signer *signer);

/* Why a worker refuses a job; the names are ENVELOPE.md's reasons. */
enum envelope_refusal {
    ENVELOPE_VALID = 0,
    ENVELOPE_UNSIGNED,
    ENVELOPE_UNSUPPORTED_VERSION,
    ENVELOPE_MALFORMED,
    ENVELOPE_UNKNOWN_KEY,
    ENVELOPE_BAD_SIGNATURE,
    ENVELOPE_WRONG_CLASS,
    ENVELOPE_WRONG_QUEUE,
    ENVELOPE_EXPIRED,
    ENVELOPE_UNKNOWN_SEAL_KEY,
    ENVELOPE_UNSEAL_FAILED,
};

/* ENVELOPE.md's word for refusal ("bad-signature"). */
const char *envelope_refusal_name(enum envelope_refusal refusal);

/* What a worker holds: signers' public keys, and the workers' own sealing secrets. */
struct envelope_keyring {
    const struct keyfile_key *signing;
    size_t signing_count;
    const struct keyfile_key *sealing;
    size_t sealing_count;
};

/* What the worker knows about the job it is about to run. */
struct envelope_expect {
    const char *class_name; /* the class it runs the job as, or NULL */
    const char *queue;      /* the queue it took the job from, or NULL */
    int64_t now;            /* Unix seconds */
    int64_t leeway_seconds;
};

/*
 * Checks payload (a parsed Resque job) as ENVELOPE.md says, in its order. On
 * ENVELOPE_VALID, *opened is a new object with the envelope's id, tenant, sub, queue,
 * class, iat, exp and kid, and args with every sealed value opened; the caller releases
 * it. Otherwise *detail says what failed, in a fixed phrase that quotes nothing.
 */
enum envelope_refusal envelope_open(const json_t *payload, const struct envelope_keyring *keys,
                                    const struct envelope_expect *expect, json_t **opened,
                                    const char **detail);

#endif
