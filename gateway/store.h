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
#include <uv.h>

#include "config.h"

enum store_status {
    STORE_OK = 0,
    STORE_UNAVAILABLE, /* not connected, connection lost, or the command timed out */
    STORE_BUSY,        /* too many writes in flight on this loop */
    STORE_FAILED,      /* Redis answered with an error */
};

struct store;
struct store_op;

/* Called once per accepted write, on the store's loop. */
typedef void (*store_done_fn)(void *data, enum store_status status);

/* A store for loop; it starts connecting at once. Returns NULL when out of memory. */
struct store *store_new(uv_loop_t *loop, const struct config_redis *redis);

/* Closes the connection, failing pending writes, and frees the store. */
void store_free(struct store *store);

/* Whether the connection is up and the script loaded. */
int store_ready(const struct store *store);

/* How many writes are waiting for Redis's answer. */
size_t store_writes_in_flight(const struct store *store);

/*
 * Writes payload to the queue the way Resque does (SADD <ns>:queues, RPUSH
 * <ns>:queue:<queue>) in one script call. On success returns an op whose done will be
 * called exactly once; otherwise returns NULL and sets *status. The store copies
 * queue and payload before returning.
 */
struct store_op *store_enqueue(struct store *store, const char *queue, size_t queue_len,
                               const char *payload, size_t payload_len, store_done_fn done,
                               void *data, enum store_status *status);

/* Forgets the requester of op: done will not be called. The write itself goes on. */
void store_op_cancel(struct store_op *op);

#endif
