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
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "text.h"

#define STORE_KEY_MAX 256
#define STORE_SHA_LEN 40
#define REPORT_EVERY 30

/*
 * The write, in one atomic step: the idempotency check, the queue's depth, the tenant's
 * rate (GCRA over Redis's own clock, so every replica shares one limit), then what
 * Resque.push does, and last the answer kept for the idempotency key.
 *
 * KEYS: <ns>:queues, <ns>:queue:<queue>, the tenant's rate key, the idempotency key.
 * ARGV: queue, interval (us, 0: no rate), burst, max depth (0: none), fingerprint ("": no
 * key), answer, window (s), then the payloads.
 * Returns {0, remaining, reset_us}, {1, retry_after_us, remaining, reset_us} (rate),
 * {2} (queue full), {3, first answer, remaining, reset_us} (replay), {4} (key reused) or,
 * when there are no payloads to write, {5} (no answer kept for the key); remaining and
 * reset_us describe the tenant's bucket after the call (0 when not rated).
 */
static const char enqueue_script[] =
    "local n = #ARGV - 7\n"
    "local interval = tonumber(ARGV[2])\n"
    "local tolerance, now, tat = 0, 0, 0\n"
    "if interval > 0 then\n"
    "  tolerance = interval * tonumber(ARGV[3])\n"
    "  local time = redis.call('TIME')\n"
    "  now = tonumber(time[1]) * 1000000 + tonumber(time[2])\n"
    "  tat = math.max(tonumber(redis.call('GET', KEYS[3]) or 0), now)\n"
    "end\n"
    "local function left(until_full)\n"
    "  if interval == 0 then return 0, 0 end\n"
    "  return math.floor((tolerance - until_full) / interval), until_full\n"
    "end\n"
    "if ARGV[5] ~= '' then\n"
    "  local seen = redis.call('GET', KEYS[4])\n"
    "  if seen then\n"
    "    if string.sub(seen, 1, 64) ~= ARGV[5] then return {4} end\n"
    "    local remaining, reset = left(tat - now)\n"
    "    return {3, string.sub(seen, 66), remaining, reset}\n"
    "  end\n"
    "end\n"
    "if n == 0 then return {5} end\n"
    "local max_depth = tonumber(ARGV[4])\n"
    "if max_depth > 0 and redis.call('LLEN', KEYS[2]) + n > max_depth then return {2} end\n"
    "local remaining, reset = 0, 0\n"
    "if interval > 0 then\n"
    "  local next_tat = tat + n * interval\n"
    "  if next_tat - now > tolerance then\n"
    "    remaining, reset = left(tat - now)\n"
    "    return {1, next_tat - now - tolerance, remaining, reset}\n"
    "  end\n"
    "  redis.call('SET', KEYS[3], string.format('%.0f', next_tat), 'PX',\n"
    "             math.ceil((next_tat - now) / 1000))\n"
    "  remaining, reset = left(next_tat - now)\n"
    "end\n"
    "redis.call('SADD', KEYS[1], ARGV[1])\n"
    "for i = 8, #ARGV, 1000 do\n"
    "  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))\n"
    "end\n"
    "if ARGV[5] ~= '' then\n"
    "  redis.call('SET', KEYS[4], ARGV[5] .. '\\n' .. ARGV[6], 'EX', ARGV[7])\n"
    "end\n"
    "return {0, remaining, reset}\n";

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

/* The integer at index of an array reply, or 0. */
static uint64_t reply_integer(const redisReply *reply, size_t index)
{
    if (index >= reply->elements || reply->element[index]->type != REDIS_REPLY_INTEGER ||
        reply->element[index]->integer < 0)
        return 0;
    return (uint64_t)reply->element[index]->integer;
}

/* Reads the script's answer (see enqueue_script) into *result. */
static void read_write_reply(const redisReply *reply, struct store_result *result)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        result->status = STORE_FAILED;
        return;
    }
    switch (reply->element[0]->integer) {
    case 0:
        result->rate_remaining = reply_integer(reply, 1);
        result->rate_reset_us = reply_integer(reply, 2);
        break;
    case 1:
        result->status = STORE_RATE_LIMITED;
        result->retry_after_us = reply_integer(reply, 1);
        result->rate_remaining = reply_integer(reply, 2);
        result->rate_reset_us = reply_integer(reply, 3);
        break;
    case 2:
        result->status = STORE_QUEUE_FULL;
        break;
    case 3:
        if (reply->elements < 2 || reply->element[1]->type != REDIS_REPLY_STRING) {
            result->status = STORE_FAILED;
            break;
        }
        result->status = STORE_REPLAYED;
        result->answer = reply->element[1]->str;
        result->answer_len = reply->element[1]->len;
        result->rate_remaining = reply_integer(reply, 2);
        result->rate_reset_us = reply_integer(reply, 3);
        break;
    case 4:
        result->status = STORE_KEY_REUSED;
        break;
    case 5:
        result->status = STORE_NO_ANSWER;
        break;
    default:
        result->status = STORE_FAILED;
        break;
    }
}

static void on_written(struct store_op *op, redisReply *reply)
{
    struct store_result result = {.status = STORE_OK};

    if (reply == NULL) {
        result.status = STORE_UNAVAILABLE;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        result.status = STORE_FAILED;
        log_message(LOG_ERROR, "redis", "enqueue script failed: %.200s", reply->str);
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* Redis lost its script cache (restart or SCRIPT FLUSH): load it again. */
            result.status = STORE_UNAVAILABLE;
            load_script(op->store);
        }
    } else {
        read_write_reply(reply, &result);
    }
    if (op->done != NULL)
        op->done(op->data, &result);
}

/* Writes prefix, then part, into key; returns its length, or 0 when it does not fit. */
static size_t make_key(char key[STORE_KEY_MAX], const char *namespace_, const char *infix,
                       const char *part, size_t part_len)
{
    struct text text;

    text_init(&text, key, STORE_KEY_MAX);
    text_append_str(&text, namespace_);
    text_append_str(&text, infix);
    text_append(&text, part, part_len);
    return text_finish(&text) != NULL ? text.len : 0;
}

/* The script's fixed arguments before the payloads: EVALSHA, sha, 4 keys, 7 values. */
#define WRITE_FIXED_ARGS 14

struct store_op *store_write(struct store *store, const struct store_write *write,
                             store_done_fn done, void *data, enum store_status *status)
{
    char queue_key[STORE_KEY_MAX], rate_key[STORE_KEY_MAX], idempotency_key[STORE_KEY_MAX];
    char interval[24], burst[24], max_depth[24], window[24];
    size_t argc = WRITE_FIXED_ARGS + write->count;
    const char **argv;
    size_t *argv_len;
    struct store_op *op = NULL;

    *status = STORE_UNAVAILABLE;
    if (store->state != STATE_READY)
        return NULL;
    if (store->writes_in_flight >= store->redis->max_in_flight) {
        *status = STORE_BUSY;
        return NULL;
    }
    const char *id = write->idempotency_id != NULL ? write->idempotency_id : "";
    if (make_key(queue_key, store->redis->namespace_, ":queue:", write->queue, write->queue_len) ==
            0 ||
        make_key(rate_key, store->redis->namespace_, ":jobgate:rate:", write->tenant,
                 strlen(write->tenant)) == 0 ||
        make_key(idempotency_key, store->redis->namespace_, ":jobgate:idempotency:", id,
                 strlen(id)) == 0) {
        *status = STORE_FAILED;
        return NULL;
    }
    snprintf(interval, sizeof(interval), "%" PRIu64, write->rate_interval_us);
    snprintf(burst, sizeof(burst), "%" PRIu64, write->rate_burst);
    snprintf(max_depth, sizeof(max_depth), "%" PRIu64, write->max_depth);
    snprintf(window, sizeof(window), "%" PRIu64, write->idempotency_window_seconds);

    argv = malloc(argc * sizeof(*argv));
    argv_len = malloc(argc * sizeof(*argv_len));
    if (argv != NULL && argv_len != NULL) {
        int keyed = write->idempotency_id != NULL;
        const char *fixed[WRITE_FIXED_ARGS] = {"EVALSHA",
                                               store->script_sha,
                                               "4",
                                               store->queues_key,
                                               queue_key,
                                               rate_key,
                                               idempotency_key,
                                               write->queue,
                                               interval,
                                               burst,
                                               max_depth,
                                               keyed ? write->fingerprint : "",
                                               keyed ? write->answer : "",
                                               window};
        for (size_t i = 0; i < WRITE_FIXED_ARGS; i++) {
            argv[i] = fixed[i];
            argv_len[i] = i == 7    ? write->queue_len
                          : i == 12 ? (keyed ? write->answer_len : 0)
                                    : strlen(fixed[i]);
        }
        for (size_t i = 0; i < write->count; i++) {
            argv[WRITE_FIXED_ARGS + i] = write->payloads[i];
            argv_len[WRITE_FIXED_ARGS + i] = write->payload_lens[i];
        }
        op = send_command(store, (int)argc, argv, argv_len, on_written);
    }
    free(argv);
    free(argv_len);
    if (op == NULL)
        return NULL;
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
