/*
 * gateway: the request handler. Routes each request and walks an enqueue through
 * the pipeline of SPEC section 2, one call per step.
 *
 * A worker is the state of one event loop: its HTTP context, its Redis store, its token
 * cache, its sealing epochs and the jobs waiting to be signed. Nothing in it is shared
 * between threads.
 */
#ifndef JOBGATE_GATEWAY_H
#define JOBGATE_GATEWAY_H

#include <h2o.h>

#include "auth.h"
#include "config.h"
#include "envelope.h"
#include "ratelimit.h"
#include "seal.h"
#include "store.h"

/* Budgets every event loop of the process shares. */
struct gateway_shared {
    struct rate_table *tenant_jobs;   /* each tenant's local bucket of jobs */
    struct rate_table *failed_tokens; /* each client address's bucket of failed tokens */
};

struct worker {
    h2o_context_t http; /* first, so a request's context leads back to its worker */
    struct gateway_shared *shared;
    const struct config *config;
    struct auth_settings auth_settings;
    struct auth_cache *auth_cache;
    struct store *store;
    struct sealer *sealer;        /* this loop's sealing epochs, one slot per sealing key */
    uv_timer_t seal_timer;        /* wipes each epoch when it ends */
    h2o_linklist_t unsigned_jobs; /* enqueues drafted in this loop turn, oldest first */
    size_t unsigned_count;        /* their jobs not signed yet */
    uv_check_t sign_check;        /* signs them together once the turn's I/O is done */
    struct envelope_batch *batch; /* the tree and signature being written out */
    int signing;                  /* set while batch is in use, which nothing may re-enter */
    struct rate_table *connection_resets; /* each HTTP/2 connection's bucket of resets */
    uv_prepare_t log_flush;               /* writes the turn's log lines before the loop waits */
    int draining; /* SIGTERM: /readyz answers 503 while requests in flight finish */
};

/* Makes the shared budgets. Returns 0, or -1 when out of memory (nothing is held). */
int gateway_shared_init(struct gateway_shared *shared);
void gateway_shared_dispose(struct gateway_shared *shared);

/*
 * Prepares worker for config on loop, holding a reference to config and using shared,
 * which outlives it. Returns 0, or -1 when out of memory. The worker's store keeps
 * config's Redis settings, which the caller keeps alive until gateway_worker_dispose.
 */
int gateway_worker_init(struct worker *worker, const struct config *config, uv_loop_t *loop,
                        struct gateway_shared *shared);

/*
 * Serves new requests under config (a reload): takes a reference to it and drops the
 * one on the config before. Requests already running finish under the old one. The
 * sealing epochs start afresh. Returns 0, or -1 when out of memory (nothing changed).
 */
int gateway_worker_use_config(struct worker *worker, const struct config *config);

/* Frees what gateway_worker_init made; the HTTP context is the transport's. */
void gateway_worker_dispose(struct worker *worker);

/* The h2o handler for every path. */
int gateway_on_request(h2o_handler_t *handler, h2o_req_t *req);

#endif
