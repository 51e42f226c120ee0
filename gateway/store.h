/*
 * store: the one Redis connection of an event loop, and the Resque write.
 *
 * Each event loop owns one store. It connects with hiredis on that loop, logs in,
 * loads the enqueue script, and reconnects with capped exponential backoff whenever
 * the connection fails. Every command has a deadline: hiredis 0.14 has no timeouts
 * of its own, so a watchdog drops a connection whose oldest command is overdue, which
 * fails every command still waiting on it. A job is reported written only after Redis
 * answered the script, so a caller never acknowledges a write Redis did not confirm.
 */
#ifndef JOBGATE_STORE_H
#define JOBGATE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

enum store_status {
    STORE_OK = 0,
    STORE_UNAVAILABLE,  /* not connected, connection lost, or the command timed out */
    STORE_BUSY,         /* too many writes in flight on this loop */
    STORE_FAILED,       /* Redis answered with an error */
    STORE_RATE_LIMITED, /* the tenant's rate allows too few jobs now */
    STORE_QUEUE_FULL,   /* the queue would pass its max depth */
    STORE_REPLAYED,     /* the idempotency key's first answer, nothing written */
    STORE_KEY_REUSED,   /* the idempotency key came with another request */
    STORE_NO_ANSWER,    /* a write of no jobs: no answer is kept for the key */
};

/* One atomic write of one or more jobs to a queue, with every check made in Redis. */
struct store_write {
    const char *queue;
    size_t queue_len;
    const char *const *payloads;
    const size_t *payload_lens;
    size_t count;
    const char *tenant;        /* names the tenant's rate key */
    uint64_t rate_interval_us; /* 0: no rate */
    uint64_t rate_burst;
    uint64_t max_depth;         /* 0: no cap */
    const char *idempotency_id; /* STORE_DIGEST_HEX hex digits naming the key, or NULL */
    const char *fingerprint;    /* STORE_DIGEST_HEX hex digits of the request */
    const char *answer;         /* kept for replays */
    size_t answer_len;
    uint64_t idempotency_window_seconds;
};

#define STORE_DIGEST_HEX 64

struct store_result {
    enum store_status status;
    uint64_t rate_remaining; /* jobs the tenant may still send at once (when rated) */
    uint64_t rate_reset_us;  /* until the tenant's bucket is full again */
    uint64_t retry_after_us; /* STORE_RATE_LIMITED: until the jobs would be allowed */
    const char *answer;      /* STORE_REPLAYED: the first answer, valid during the call */
    size_t answer_len;
};

struct store;
struct store_op;

/* Called once per accepted write, on the store's loop. */
typedef void (*store_done_fn)(void *data, const struct store_result *result);

/* A store for loop; it starts connecting at once. Returns NULL when out of memory. */
struct store *store_new(uv_loop_t *loop, const struct config_redis *redis);

/* Closes the connection, failing pending writes, and frees the store. */
void store_free(struct store *store);

/* Whether the connection is up and the script loaded. */
int store_ready(const struct store *store);

/* How many writes are waiting for Redis's answer. */
size_t store_writes_in_flight(const struct store *store);

/*
 * Sends write to Redis as one script call: the idempotency check, the depth check, the
 * rate check, then the jobs as Resque writes them (SADD <ns>:queues, RPUSH
 * <ns>:queue:<queue>). A write of no jobs only looks up its idempotency key, writing
 * nothing: STORE_REPLAYED, STORE_KEY_REUSED or STORE_NO_ANSWER. On success returns an op
 * whose done will be called exactly once; otherwise returns NULL and sets *status. The
 * store copies what write points to.
 */
struct store_op *store_write(struct store *store, const struct store_write *write,
                             store_done_fn done, void *data, enum store_status *status);

/* Forgets the requester of op: done will not be called. The command itself goes on. */
void store_op_cancel(struct store_op *op);

#endif
