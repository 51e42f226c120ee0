/*
 * store: one Redis connection per event loop; see store.h.
 *
 * It owns the hiredis context, the list of commands waiting for an answer (oldest
 * first, since Redis answers in order), the watchdog timer that enforces deadlines,
 * and the reconnect timer.
 */
#include "store.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <h2o/linklist.h>
#include <h2o/memory.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "text.h"

#define STORE_KEY_MAX 256
#define STORE_SHA_LEN 40
#define REPORT_EVERY 30

/*
 * The Resque write: what Resque.push does, in one atomic step.
 * KEYS[1] = <ns>:queues, KEYS[2] = <ns>:queue:<queue>; ARGV[1] = queue, ARGV[2] = payload.
 */
static const char enqueue_script[] = "redis.call('SADD', KEYS[1], ARGV[1])\n"
                                     "return redis.call('RPUSH', KEYS[2], ARGV[2])\n";

enum connection_state { STATE_DOWN, STATE_CONNECTING, STATE_READY };

struct store {
    uv_loop_t *loop;
    const struct config_redis *redis;
    redisAsyncContext *context;
    enum connection_state state;
    uint64_t connect_deadline;
    uint64_t backoff_ms;
    uv_timer_t watchdog;
    uv_timer_t reconnect;
    h2o_linklist_t pending; /* struct store_op, oldest first */
    size_t writes_in_flight;
    char script_sha[STORE_SHA_LEN + 1];
    char queues_key[STORE_KEY_MAX];
    int closing;
    int open_timers;   /* the store is freed once both timers have closed */
    unsigned failures; /* connection attempts failed since the last success */
    char error_text[128];
};

struct store_op {
    h2o_linklist_t link;
    struct store *store;
    uint64_t sent_at;
    int is_write;
    void (*on_reply)(struct store_op *op, redisReply *reply);
    store_done_fn done; /* NULL once the requester is gone */
    void *data;
};

static void connect_now(struct store *store);

static void on_reconnect_timer(uv_timer_t *timer)
{
    connect_now(timer->data);
}

static void schedule_reconnect(struct store *store)
{
    uint64_t delay;

    store->context = NULL;
    store->state = STATE_DOWN;
    if (store->closing || uv_is_active((uv_handle_t *)&store->reconnect))
        return;

    /* Full jitter keeps replicas that lost Redis together from reconnecting together. */
    delay = store->backoff_ms / 2 + randombytes_uniform((uint32_t)(store->backoff_ms / 2 + 1));
    store->backoff_ms *= 2;
    if (store->backoff_ms > store->redis->reconnect_max_ms)
        store->backoff_ms = store->redis->reconnect_max_ms;
    uv_timer_start(&store->reconnect, on_reconnect_timer, delay, 0);
}

/*
 * Logs a failed connection attempt. While Redis stays away, only the first failure and
 * every REPORT_EVERY-th after it are logged, so an outage does not flood the log.
 */
static void report_connect_failure(struct store *store, const char *why)
{
    store->failures++;
    if (store->failures == 1 || store->failures % REPORT_EVERY == 0)
        log_message(LOG_WARN, "redis", "cannot reach Redis at %s:%u: %s (%u failed attempts)",
                    store->redis->host, (unsigned)store->redis->port, why, store->failures);
}

static void drop_connection(struct store *store, const char *why)
{
    redisAsyncContext *context = store->context;

    if (context == NULL)
        return;
    if (store->state == STATE_READY)
        log_message(LOG_WARN, "redis", "dropping connection to %s:%u: %s", store->redis->host,
                    (unsigned)store->redis->port, why);
    else
        report_connect_failure(store, why);
    /*
     * Freeing answers every pending command with a NULL reply. hiredis calls
     * on_disconnect only for a context that had connected, so forget it here too.
     */
    redisAsyncFree(context);
    schedule_reconnect(store);
}

static void on_command_reply(redisAsyncContext *context, void *reply, void *privdata)
{
    struct store_op *op = privdata;
    struct store *store = op->store;

    (void)context;
    h2o_linklist_unlink(&op->link);
    if (op->is_write)
        store->writes_in_flight--;
    op->on_reply(op, reply);
    free(op);
}

static struct store_op *send_command(struct store *store, int argc, const char **argv,
                                     const size_t *argv_len,
                                     void (*on_reply)(struct store_op *, redisReply *))
{
    struct store_op *op = calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    op->store = store;
    op->sent_at = uv_now(store->loop);
    op->on_reply = on_reply;
    if (redisAsyncCommandArgv(store->context, on_command_reply, op, argc, argv, argv_len) !=
        REDIS_OK) {
        free(op);
        return NULL;
    }
    h2o_linklist_insert(&store->pending, &op->link);
    return op;
}

static void on_script_loaded(struct store_op *op, redisReply *reply)
{
    struct store *store = op->store;

    if (reply == NULL)
        return;
    if (reply->type != REDIS_REPLY_STRING || reply->len != STORE_SHA_LEN) {
        log_message(LOG_ERROR, "redis", "SCRIPT LOAD failed: %s",
                    reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        drop_connection(store, "cannot load the enqueue script");
        return;
    }
    memcpy(store->script_sha, reply->str, STORE_SHA_LEN);
    store->script_sha[STORE_SHA_LEN] = '\0';
    if (store->state != STATE_READY)
        log_message(LOG_INFO, "redis", "ready on %s:%u (%u failed attempts before)",
                    store->redis->host, (unsigned)store->redis->port, store->failures);
    store->state = STATE_READY;
    store->failures = 0;
    store->backoff_ms = store->redis->reconnect_min_ms;
}

static void on_auth_reply(struct store_op *op, redisReply *reply)
{
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        log_message(LOG_ERROR, "redis", "AUTH refused: %s", reply->str);
        drop_connection(op->store, "authentication refused");
    }
}

static void load_script(struct store *store)
{
    const char *argv[] = {"SCRIPT", "LOAD", enqueue_script};
    size_t argv_len[] = {6, 4, sizeof(enqueue_script) - 1};

    if (send_command(store, 3, argv, argv_len, on_script_loaded) == NULL)
        drop_connection(store, "out of memory");
}

static void on_connect(const redisAsyncContext *context, int status)
{
    struct store *store = context->data;

    if (status != REDIS_OK) {
        report_connect_failure(store, context->errstr);
        /* hiredis frees the context after a failed connect. */
        schedule_reconnect(store);
    }
}

static void on_disconnect(const redisAsyncContext *context, int status)
{
    struct store *store = context->data;

    if (status != REDIS_OK && !store->closing)
        log_message(LOG_WARN, "redis", "connection lost: %s", context->errstr);
    schedule_reconnect(store);
}

/*
 * Opens a connection and queues the login and the script load behind it; commands
 * are answered in order, so nothing is accepted before both have succeeded.
 */
static void connect_now(struct store *store)
{
    redisAsyncContext *context = redisAsyncConnect(store->redis->host, store->redis->port);

    if (context == NULL || context->err) {
        report_connect_failure(store, context ? context->errstr : "out of memory");
        if (context != NULL)
            redisAsyncFree(context);
        schedule_reconnect(store);
        return;
    }
    context->data = store;
    if (redisLibuvAttach(context, store->loop) != REDIS_OK) {
        /*
         * The adapter installs its callbacks before it can fail (for instance when libuv
         * still watches a just-closed descriptor with the same number); with no event
         * data behind them they must not run.
         */
        report_connect_failure(store, "cannot watch the socket");
        memset(&context->ev, 0, sizeof(context->ev));
        redisAsyncFree(context);
        schedule_reconnect(store);
        return;
    }
    redisAsyncSetConnectCallback(context, on_connect);
    redisAsyncSetDisconnectCallback(context, on_disconnect);
    store->context = context;
    store->state = STATE_CONNECTING;
    store->connect_deadline = uv_now(store->loop) + store->redis->connect_timeout_ms;

    if (store->redis->password != NULL) {
        const char *argv[3] = {"AUTH"};
        size_t argv_len[3] = {4};
        int argc = 1;
        if (store->redis->username != NULL) {
            argv[argc] = store->redis->username;
            argv_len[argc++] = strlen(store->redis->username);
        }
        argv[argc] = store->redis->password;
        argv_len[argc++] = strlen(store->redis->password);
        if (send_command(store, argc, argv, argv_len, on_auth_reply) == NULL) {
            drop_connection(store, "out of memory");
            return;
        }
    }
    load_script(store);
}

/*
 * Why a connection is still not up at its deadline. The libuv adapter drops socket
 * errors, so a refused connection would otherwise look like a silent timeout.
 */
static const char *pending_connect_error(struct store *store)
{
    int error = 0;
    socklen_t len = sizeof(error);

    if (getsockopt(store->context->c.fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error != 0)
        return strerror_r(error, store->error_text, sizeof(store->error_text));
    return "no answer within connect_timeout_ms";
}

/* Enforces the connect and command deadlines. */
static void on_watchdog(uv_timer_t *timer)
{
    struct store *store = timer->data;
    uint64_t now = uv_now(store->loop);

    if (store->state == STATE_CONNECTING && now > store->connect_deadline) {
        drop_connection(store, pending_connect_error(store));
        return;
    }
    if (!h2o_linklist_is_empty(&store->pending)) {
        struct store_op *oldest =
            H2O_STRUCT_FROM_MEMBER(struct store_op, link, store->pending.next);
        if (now - oldest->sent_at > store->redis->command_timeout_ms)
            drop_connection(store, "command timed out");
    }
}

struct store *store_new(uv_loop_t *loop, const struct config_redis *redis)
{
    struct store *store = calloc(1, sizeof(*store));
    struct text key;
    uint64_t tick;

    if (store == NULL)
        return NULL;
    store->loop = loop;
    store->redis = redis;
    store->backoff_ms = redis->reconnect_min_ms;
    h2o_linklist_init_anchor(&store->pending);
    text_init(&key, store->queues_key, sizeof(store->queues_key));
    text_append_str(&key, redis->namespace_);
    text_append_str(&key, ":queues");
    text_finish(&key);

    uv_timer_init(loop, &store->watchdog);
    uv_timer_init(loop, &store->reconnect);
    store->watchdog.data = store;
    store->reconnect.data = store;
    store->open_timers = 2;
    tick = redis->command_timeout_ms / 4;
    if (tick < 5)
        tick = 5;
    uv_timer_start(&store->watchdog, on_watchdog, tick, tick);
    connect_now(store);
    return store;
}

static void free_when_closed(uv_handle_t *handle)
{
    struct store *store = handle->data;

    if (--store->open_timers == 0)
        free(store);
}

void store_free(struct store *store)
{
    if (store == NULL)
        return;
    store->closing = 1;
    if (store->context != NULL)
        redisAsyncFree(store->context);
    uv_close((uv_handle_t *)&store->watchdog, free_when_closed);
    uv_close((uv_handle_t *)&store->reconnect, free_when_closed);
}

int store_ready(const struct store *store)
{
    return store->state == STATE_READY;
}

size_t store_writes_in_flight(const struct store *store)
{
    return store->writes_in_flight;
}

static void on_enqueued(struct store_op *op, redisReply *reply)
{
    enum store_status status = STORE_OK;

    if (reply == NULL) {
        status = STORE_UNAVAILABLE;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        status = STORE_FAILED;
        log_message(LOG_ERROR, "redis", "enqueue script failed: %.200s", reply->str);
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* Redis lost its script cache (restart or SCRIPT FLUSH): load it again. */
            status = STORE_UNAVAILABLE;
            load_script(op->store);
        }
    } else if (reply->type != REDIS_REPLY_INTEGER) {
        status = STORE_FAILED;
    }
    if (op->done != NULL)
        op->done(op->data, status);
}

struct store_op *store_enqueue(struct store *store, const char *queue, size_t queue_len,
                               const char *payload, size_t payload_len, store_done_fn done,
                               void *data, enum store_status *status)
{
    char queue_key[STORE_KEY_MAX];
    struct text key;
    struct store_op *op;

    if (store->state != STATE_READY) {
        *status = STORE_UNAVAILABLE;
        return NULL;
    }
    if (store->writes_in_flight >= store->redis->max_in_flight) {
        *status = STORE_BUSY;
        return NULL;
    }

    text_init(&key, queue_key, sizeof(queue_key));
    text_append_str(&key, store->redis->namespace_);
    text_append_str(&key, ":queue:");
    text_append(&key, queue, queue_len);
    if (text_finish(&key) == NULL) {
        *status = STORE_FAILED;
        return NULL;
    }

    const char *argv[] = {"EVALSHA", store->script_sha, "2", store->queues_key, queue_key, queue,
                          payload};
    size_t argv_len[] = {7,       STORE_SHA_LEN, 1,          strlen(store->queues_key),
                         key.len, queue_len,     payload_len};
    op = send_command(store, 7, argv, argv_len, on_enqueued);
    if (op == NULL) {
        *status = STORE_UNAVAILABLE;
        return NULL;
    }
    op->is_write = 1;
    op->done = done;
    op->data = data;
    store->writes_in_flight++;
    return op;
}

void store_op_cancel(struct store_op *op)
{
    op->done = NULL;
}
