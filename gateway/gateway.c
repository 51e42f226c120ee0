/*
 * gateway: routing and the enqueue pipeline; see gateway.h.
 *
 * An enqueue (one job, or a batch of them) owns one struct enqueue, allocated in the
 * request's pool. Every step either passes or answers the request with a problem and
 * stops. Steps 1 to 9 and the envelopes' drafts run in the handler; the drafts of one
 * loop turn are then signed together (one signature over their Merkle tree,
 * workers/ENVELOPE.md) when the turn's I/O is done, or as soon as a tree is full, and
 * only then written, each request in one Redis script call that also checks the
 * tenant's rate, the queue's depth and the idempotency key. Redis's answer comes back
 * in on_stored().
 */
#include "gateway.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "envelope.h"
#include "job.h"
#include "log.h"
#include "policy.h"
#include "problem.h"
#include "text.h"

#define QUEUES_PREFIX "/v1/queues/"
#define JOBS_SUFFIX "/jobs"
#define BATCH_SUFFIX "/jobs:batch"
#define ACCEPTED_JOB_BYTES (ENVELOPE_JOB_ID_LEN + 6 * POLICY_MAX_CLASS_NAME + 64)
/* How often ended sealing epochs are wiped; epochs last whole seconds. */
#define SEAL_TIMER_MS 250
/* A rejected job lists at most this many failures, and how many there were in all. */
#define SCHEMA_ERRORS_SHOWN 16
/* A rejected batch lists at most this many of its failing jobs, each with fewer errors. */
#define BATCH_ITEMS_SHOWN 16
#define BATCH_ITEM_ERRORS_SHOWN 4
/* A pointer may grow six-fold when escaped for JSON (\u00XX); messages are short. */
#define SCHEMA_ERROR_BYTES (6 * (SCHEMA_MAX_POINTER + sizeof("/jobs/10000/args")) + 256)
#define IDEMPOTENCY_KEY_MAX 255
#define RATE_HEADER_BYTES 96

/* One job of a request: a single enqueue has one, a batch up to limits.max_batch_jobs. */
struct job_slot {
    h2o_iovec_t class_name;
    char id[ENVELOPE_JOB_ID_LEN + 1];
    struct envelope_draft draft; /* its text is set from drafting until signed */
    char *payload;               /* malloc'd once signed, until written */
    size_t payload_len;
};

struct enqueue {
    struct worker *worker;
    const struct config *config; /* the one it started under, held until it is disposed */
    h2o_req_t *req;
    uint64_t started_ns;
    int is_batch;
    h2o_iovec_t queue_name;
    const struct config_queue *queue;
    const struct config_tenant *tenant;
    struct gcra rate; /* the tenant's job rate */
    struct principal principal;
    int authenticated;
    int keyed; /* an Idempotency-Key came with it */
    char idempotency_id[STORE_DIGEST_HEX + 1];
    char fingerprint[STORE_DIGEST_HEX + 1];
    struct job_slot *jobs;
    size_t job_count;
    size_t drafted;      /* jobs[0..drafted) hold drafts or payloads */
    size_t signed_count; /* jobs[0..signed_count) hold payloads */
    int sign_failed;
    const char *answer; /* the 202 body, kept in Redis for replays */
    size_t answer_len;
    h2o_linklist_t unsigned_link; /* in worker->unsigned_jobs while waiting to be signed */
    struct store_op *op;          /* set while Redis has the write */
    uint64_t admitted;            /* jobs taken from the tenant's bucket in this process */
    struct {                      /* why the bucket here refused, while Redis is asked */
        uint64_t retry_after_us, remaining, reset_us;
    } refusal;
    struct { /* the job a single replay answers with, for its audit line */
        char id[ENVELOPE_JOB_ID_LEN + 1];
        h2o_iovec_t class_name;
    } replayed;
    int answered;
};

static struct worker *worker_of(h2o_req_t *req)
{
    return (struct worker *)req->conn->ctx;
}

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

static const char *protocol_of(h2o_req_t *req)
{
    int tls = req->scheme == &H2O_URL_SCHEME_HTTPS;

    if (req->version >= 0x200)
        return tls ? "h2" : "h2c";
    return tls ? "http/1.1+tls" : "http/1.1";
}

static void log_enqueue(struct enqueue *enqueue, int status, const char *problem, int replayed)
{
    h2o_req_t *req = enqueue->req;
    h2o_iovec_t class_name = {NULL, 0};
    const char *job_id = "";

    if (replayed) {
        class_name = enqueue->replayed.class_name;
        job_id = enqueue->replayed.id;
    } else if (!enqueue->is_batch && enqueue->job_count == 1) {
        class_name = enqueue->jobs[0].class_name;
        job_id = enqueue->jobs[0].id;
    }
    struct log_request entry = {
        .method = "POST",
        .path = req->path_normalized.base,
        .path_len = req->path_normalized.len,
        .protocol = protocol_of(req),
        .tenant = enqueue->authenticated ? enqueue->principal.tenant : NULL,
        .subject = enqueue->authenticated ? enqueue->principal.subject : NULL,
        .queue = enqueue->queue != NULL ? enqueue->queue->name : NULL,
        .queue_len = enqueue->queue != NULL ? strlen(enqueue->queue->name) : 0,
        .class_name = class_name.base,
        .class_len = class_name.len,
        /* Only an accepted job has an id worth naming: the one answered. */
        .job_id = status == 202 && job_id[0] != '\0' ? job_id : NULL,
        .jobs = enqueue->is_batch ? enqueue->job_count : 0,
        .replayed = replayed,
        .status = status,
        .problem = problem,
        .bytes = req->entity.len,
        .latency_us = (uv_hrtime() - enqueue->started_ns) / 1000,
    };
    log_request(&entry);
}

/*
 * Answers the enqueue with a problem, with extension members when members is not
 * NULL, and writes its audit line. Always returns -1.
 */
static int reject_with(struct enqueue *enqueue, enum problem_kind kind, const char *detail,
                       const char *members)
{
    enqueue->answered = 1;
    log_enqueue(enqueue, problem_status(kind), problem_type(kind), 0);
    problem_send_extended(enqueue->req, kind, detail, members);
    return -1;
}

static int reject(struct enqueue *enqueue, enum problem_kind kind, const char *detail)
{
    return reject_with(enqueue, kind, detail, NULL);
}

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value, size_t len)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL,
                   h2o_strdup(&req->pool, value, len).base, len);
}

static void add_named_header(h2o_req_t *req, const char *name, const char *value, size_t len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL,
                          h2o_strdup(&req->pool, value, len).base, len);
}

/* Whole seconds, rounded up, at least 1: for Retry-After. */
static uint64_t seconds_after(uint64_t us)
{
    uint64_t seconds = (us + 999999) / 1000000;
    return seconds > 0 ? seconds : 1;
}

static void add_retry_after(h2o_req_t *req, uint64_t us)
{
    char value[24];
    int len = snprintf(value, sizeof(value), "%" PRIu64, seconds_after(us));

    add_header(req, H2O_TOKEN_RETRY_AFTER, value, (size_t)len);
}

/*
 * RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers): the tenant's
 * bucket as a quota of burst jobs per the time it takes to refill, and what is left.
 */
static void add_rate_headers(struct enqueue *enqueue, uint64_t remaining, uint64_t reset_us)
{
    const struct gcra *rate = &enqueue->rate;
    uint64_t window = (rate->tolerance_us + 999999) / 1000000;
    char value[RATE_HEADER_BYTES];
    int len;

    if (rate->interval_us == 0)
        return;
    len = snprintf(value, sizeof(value), "\"tenant\";q=%" PRIu64 ";w=%" PRIu64, rate->burst,
                   window > 0 ? window : 1);
    add_named_header(enqueue->req, "ratelimit-policy", value, (size_t)len);
    len = snprintf(value, sizeof(value), "\"tenant\";r=%" PRIu64 ";t=%" PRIu64, remaining,
                   (reset_us + 999999) / 1000000);
    add_named_header(enqueue->req, "ratelimit", value, (size_t)len);
}

static int reject_rate_limited(struct enqueue *enqueue, uint64_t retry_after_us, uint64_t remaining,
                               uint64_t reset_us)
{
    add_retry_after(enqueue->req, retry_after_us);
    add_rate_headers(enqueue, remaining, reset_us);
    return reject(enqueue, PROBLEM_RATE_LIMITED, "retry after the time given in Retry-After");
}

/*
 * The client's address as a budget key: an IPv4 address, or an IPv6 /64, where one
 * host usually holds the whole prefix. Returns its length, or 0 when unknown.
 */
static size_t address_key(h2o_req_t *req, unsigned char key[8])
{
    struct sockaddr_storage address;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&address);

    if (len == 0)
        return 0;
    if (address.ss_family == AF_INET) {
        memcpy(key, &((struct sockaddr_in *)&address)->sin_addr, 4);
        return 4;
    }
    if (address.ss_family == AF_INET6) {
        memcpy(key, &((struct sockaddr_in6 *)&address)->sin6_addr, 8);
        return 8;
    }
    return 0;
}

/*
 * Step 3: the bearer token. Checking a signature is the costliest thing a caller
 * without credentials can make jobgate do, so an address that sent too many tokens
 * that failed gets only cached verdicts until its budget refills.
 */
static int authenticate(struct enqueue *enqueue)
{
    static const char scheme[] = "Bearer ";
    struct worker *worker = enqueue->worker;
    h2o_req_t *req = enqueue->req;
    ssize_t index = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    enum auth_status status = AUTH_MISSING;
    struct gcra budget;
    unsigned char address[8];
    size_t address_len = address_key(req, address);
    uint64_t now = now_us(), retry_after = 0;

    gcra_init(&budget, enqueue->config->limits.address_failed_tokens.per_second,
              enqueue->config->limits.address_failed_tokens.burst);
    if (index >= 0) {
        h2o_iovec_t value = req->headers.entries[index].value;
        if (value.len > sizeof(scheme) - 1 &&
            strncasecmp(value.base, scheme, sizeof(scheme) - 1) == 0) {
            const char *token = value.base + sizeof(scheme) - 1;
            size_t len = value.len - (sizeof(scheme) - 1);
            int may_check = address_len == 0 ||
                            rate_table_would_allow(worker->shared->failed_tokens, address,
                                                   address_len, &budget, now, 1, &retry_after);
            status = may_check
                         ? auth_verify(&worker->auth_settings, worker->auth_cache, token, len,
                                       (int64_t)time(NULL), &enqueue->principal)
                         : auth_verify_cached(&worker->auth_settings, worker->auth_cache, token,
                                              len, (int64_t)time(NULL), &enqueue->principal);
        }
    }
    if (status == AUTH_MISSING)
        return reject(enqueue, PROBLEM_MISSING_TOKEN, "send Authorization: Bearer <token>");
    if (status == AUTH_NOT_CACHED) {
        add_retry_after(req, retry_after);
        return reject(enqueue, PROBLEM_TOO_MANY_FAILED_TOKENS,
                      "this address sent too many invalid tokens; retry later");
    }
    if (status != AUTH_OK) {
        if (address_len > 0)
            rate_table_take(worker->shared->failed_tokens, address, address_len, &budget, now, 1,
                            NULL, NULL, NULL);
        return reject(enqueue, PROBLEM_INVALID_TOKEN, auth_status_reason(status));
    }
    enqueue->authenticated = 1;
    return 0;
}

/* Step 4: the queue exists, and the token and tenant may use it. */
static int authorize(struct enqueue *enqueue)
{
    const struct config *config = enqueue->config;

    enqueue->queue = config_find_queue(config, enqueue->queue_name.base, enqueue->queue_name.len);
    if (enqueue->queue == NULL)
        return reject(enqueue, PROBLEM_UNKNOWN_QUEUE, "no queue by that name");

    switch (policy_authorize(config, enqueue->queue, &enqueue->principal)) {
    case POLICY_OK:
        break;
    case POLICY_TENANT_FORBIDDEN:
        return reject(enqueue, PROBLEM_INSUFFICIENT_SCOPE, "tenant may not use this queue");
    default:
        return reject(enqueue, PROBLEM_INSUFFICIENT_SCOPE,
                      "no scope grants this queue or its tier");
    }
    enqueue->tenant = config_find_tenant(config, enqueue->principal.tenant);
    gcra_init(&enqueue->rate, enqueue->tenant->jobs.per_second, enqueue->tenant->jobs.burst);
    return 0;
}

/* Skips optional whitespace (RFC 9110 OWS). */
static const char *skip_ows(const char *at, const char *end)
{
    while (at < end && (*at == ' ' || *at == '\t'))
        at++;
    return at;
}

/*
 * Whether a Content-Type is JSON: application/json in any case, with no parameter but
 * charset=utf-8, its value a token or a quoted string (RFC 9110 section 8.3.1).
 */
static int is_json_media_type(h2o_iovec_t value)
{
    static const char json[] = "application/json", charset[] = "charset=", utf8[] = "utf-8";
    const char *at = value.base + sizeof(json) - 1, *end = value.base + value.len;

    if (value.len < sizeof(json) - 1 || strncasecmp(value.base, json, sizeof(json) - 1) != 0)
        return 0;
    for (;;) {
        at = skip_ows(at, end);
        if (at == end)
            return 1;
        if (*at != ';')
            return 0;
        at = skip_ows(at + 1, end);
        if (at == end || *at == ';')
            continue; /* an empty parameter */
        if ((size_t)(end - at) < sizeof(charset) - 1 ||
            strncasecmp(at, charset, sizeof(charset) - 1) != 0)
            return 0;
        at += sizeof(charset) - 1;
        int quoted = at < end && *at == '"';
        at += quoted;
        if ((size_t)(end - at) < sizeof(utf8) - 1 || strncasecmp(at, utf8, sizeof(utf8) - 1) != 0)
            return 0;
        at += sizeof(utf8) - 1;
        if (quoted && (at == end || *at++ != '"'))
            return 0;
    }
}

static void hex_digest(char hex[STORE_DIGEST_HEX + 1], crypto_hash_sha256_state *state)
{
    unsigned char digest[crypto_hash_sha256_BYTES];

    crypto_hash_sha256_final(state, digest);
    sodium_bin2hex(hex, STORE_DIGEST_HEX + 1, digest, sizeof(digest));
}

/*
 * The Idempotency-Key header, if any: 1 to 255 visible ASCII characters, or the same as
 * an RFC 8941 string in quotes. The key is named in Redis by a digest of the tenant and
 * key; the request by a digest of its route and body. Returns -1 after rejecting.
 */
static int read_idempotency_key(struct enqueue *enqueue)
{
    h2o_req_t *req = enqueue->req;
    ssize_t index = h2o_find_header_by_str(&req->headers, H2O_STRLIT("idempotency-key"), -1);
    crypto_hash_sha256_state state;
    h2o_iovec_t key;

    if (index < 0)
        return 0;
    key = req->headers.entries[index].value;
    if (key.len >= 2 && key.base[0] == '"' && key.base[key.len - 1] == '"')
        key = h2o_iovec_init(key.base + 1, key.len - 2);
    int valid = key.len >= 1 && key.len <= IDEMPOTENCY_KEY_MAX &&
                h2o_find_header_by_str(&req->headers, H2O_STRLIT("idempotency-key"), index) < 0;
    for (size_t i = 0; valid && i < key.len; i++)
        valid = key.base[i] > 0x20 && key.base[i] < 0x7f && key.base[i] != '"';
    if (!valid)
        return reject(enqueue, PROBLEM_INVALID_IDEMPOTENCY_KEY, NULL);

    crypto_hash_sha256_init(&state);
    crypto_hash_sha256_update(&state, (const unsigned char *)enqueue->principal.tenant,
                              strlen(enqueue->principal.tenant) + 1);
    crypto_hash_sha256_update(&state, (const unsigned char *)key.base, key.len);
    hex_digest(enqueue->idempotency_id, &state);

    crypto_hash_sha256_init(&state);
    crypto_hash_sha256_update(&state, (const unsigned char *)(enqueue->is_batch ? "batch" : "job"),
                              enqueue->is_batch ? 6 : 4);
    crypto_hash_sha256_update(&state, (const unsigned char *)enqueue->queue->name,
                              strlen(enqueue->queue->name) + 1);
    crypto_hash_sha256_update(&state, (const unsigned char *)req->entity.base, req->entity.len);
    hex_digest(enqueue->fingerprint, &state);
    enqueue->keyed = 1;
    return 0;
}

/* Step 5: header and body sizes, the media type and the idempotency key. */
static int check_request(struct enqueue *enqueue)
{
    h2o_req_t *req = enqueue->req;
    size_t header_bytes = 0, body_limit = enqueue->queue->max_body_bytes;
    ssize_t index;

    for (size_t i = 0; i < req->headers.size; i++)
        header_bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
    if (header_bytes > enqueue->config->limits.max_header_bytes)
        return reject(enqueue, PROBLEM_HEADERS_TOO_LARGE,
                      "header names and values together exceed limits.max_header_bytes");
    if (enqueue->tenant->max_body_bytes < body_limit)
        body_limit = enqueue->tenant->max_body_bytes;
    if (req->entity.len > body_limit)
        return reject(enqueue, PROBLEM_PAYLOAD_TOO_LARGE,
                      "request body exceeds this queue's or tenant's limit");
    index = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (index < 0 || !is_json_media_type(req->headers.entries[index].value) ||
        h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, index) >= 0)
        return reject(enqueue, PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                      "send one Content-Type: application/json");
    return read_idempotency_key(enqueue);
}

static void respond_accepted(struct enqueue *enqueue, const char *answer, size_t len, int replayed)
{
    enqueue->answered = 1;
    if (replayed)
        add_named_header(enqueue->req, "idempotent-replayed", H2O_STRLIT("true"));
    log_enqueue(enqueue, 202, NULL, replayed);
    respond(enqueue->req, 202, "Accepted", "application/json", answer, len);
}

/*
 * Answers with the first answer of the request an Idempotency-Key came with. The audit
 * line names that request's job, not the one drafted for this one.
 */
static void respond_replayed(struct enqueue *enqueue, const char *answer, size_t len,
                             uint64_t remaining, uint64_t reset_us)
{
    if (!enqueue->is_batch) {
        json_t *first = json_loadb(answer, len, 0, NULL);
        const char *id = json_string_value(json_object_get(first, "id"));
        const char *class_name = json_string_value(json_object_get(first, "class"));

        if (id != NULL && strlen(id) == ENVELOPE_JOB_ID_LEN)
            memcpy(enqueue->replayed.id, id, ENVELOPE_JOB_ID_LEN + 1);
        if (class_name != NULL)
            enqueue->replayed.class_name =
                h2o_strdup(&enqueue->req->pool, class_name, strlen(class_name));
        json_decref(first);
    }
    add_rate_headers(enqueue, remaining, reset_us);
    respond_accepted(enqueue, answer, len, 1);
}

static void reject_key_reused(struct enqueue *enqueue)
{
    reject(enqueue, PROBLEM_IDEMPOTENCY_KEY_REUSED,
           "send a new Idempotency-Key with a different request");
}

/*
 * Gives the jobs the request took from the tenant's bucket in this process back, when
 * Redis wrote none of them (a replay, a full queue, its own rate, or no answer) or the
 * bucket refused the rest of a batch: the bucket refuses only what Redis would.
 */
static void give_back_locally(struct enqueue *enqueue)
{
    rate_table_give_back(enqueue->worker->shared->tenant_jobs, enqueue->principal.tenant,
                         strlen(enqueue->principal.tenant), &enqueue->rate, enqueue->admitted);
    enqueue->admitted = 0;
}

/*
 * The request's write as Redis checks it: with count payloads, or with none to look up
 * its idempotency key only.
 */
static struct store_write describe_write(const struct enqueue *enqueue, const char **payloads,
                                         const size_t *payload_lens, size_t count)
{
    return (struct store_write){
        .queue = enqueue->queue->name,
        .queue_len = strlen(enqueue->queue->name),
        .payloads = payloads,
        .payload_lens = payload_lens,
        .count = count,
        .tenant = enqueue->principal.tenant,
        .rate_interval_us = enqueue->rate.interval_us,
        .rate_burst = enqueue->rate.burst,
        .max_depth = enqueue->queue->max_depth,
        .idempotency_id = enqueue->keyed ? enqueue->idempotency_id : NULL,
        .fingerprint = enqueue->fingerprint,
        .answer = enqueue->answer != NULL ? enqueue->answer : "",
        .answer_len = enqueue->answer_len,
        .idempotency_window_seconds = enqueue->config->idempotency.window_seconds,
    };
}

static void on_replay_found(void *data, const struct store_result *result)
{
    struct enqueue *enqueue = data;

    enqueue->op = NULL;
    if (result->status == STORE_REPLAYED)
        respond_replayed(enqueue, result->answer, result->answer_len, result->rate_remaining,
                         result->rate_reset_us);
    else if (result->status == STORE_KEY_REUSED)
        reject_key_reused(enqueue);
    else
        reject_rate_limited(enqueue, enqueue->refusal.retry_after_us, enqueue->refusal.remaining,
                            enqueue->refusal.reset_us);
}

/*
 * Step 6, and its second half for a batch: takes count jobs from the tenant's bucket in
 * this process, which sheds a flood before it costs parsing or a Redis call. Each
 * replica's bucket has the tenant's whole rate; Redis holds the limit they share.
 *
 * A refused request with an Idempotency-Key may repeat one already written, and is owed
 * that one's answer whatever the rate: Redis is asked for the answer kept for the key,
 * and only without one is the request refused. Returns -1 when refused or asking.
 */
static int admit_locally(struct enqueue *enqueue, uint64_t count)
{
    uint64_t retry_after, remaining, reset;
    enum store_status status;

    if (rate_table_take(enqueue->worker->shared->tenant_jobs, enqueue->principal.tenant,
                        strlen(enqueue->principal.tenant), &enqueue->rate, now_us(), count,
                        &retry_after, &remaining, &reset)) {
        enqueue->admitted += count;
        return 0;
    }
    give_back_locally(enqueue);
    if (enqueue->keyed) {
        struct store_write lookup = describe_write(enqueue, NULL, NULL, 0);

        enqueue->refusal.retry_after_us = retry_after;
        enqueue->refusal.remaining = remaining;
        enqueue->refusal.reset_us = reset;
        enqueue->op =
            store_write(enqueue->worker->store, &lookup, on_replay_found, enqueue, &status);
        if (enqueue->op != NULL)
            return -1;
    }
    return reject_rate_limited(enqueue, retry_after, remaining, reset);
}

/*
 * Renders failures as "errors" members, each pointer prefixed (with "/args", or
 * "/jobs/N/args" in a batch). Messages are schema's fixed texts: no value from the job
 * ever reaches the answer.
 */
static void append_schema_errors(struct text *out, const char *prefix,
                                 const struct schema_error *errors, size_t shown, size_t total)
{
    text_append_str(out, "\"error_count\":");
    text_append_uint(out, total);
    text_append_str(out, ",\"errors\":[");
    for (size_t i = 0; i < shown; i++) {
        char pointer[SCHEMA_MAX_POINTER + sizeof("/jobs/10000/args")];
        struct text path;

        text_init(&path, pointer, sizeof(pointer));
        text_append_str(&path, prefix);
        text_append_str(&path, errors[i].pointer);
        text_finish(&path);
        text_append_str(out, i == 0 ? "{\"pointer\":" : ",{\"pointer\":");
        text_append_json_string(out, pointer, path.len);
        text_append_str(out, ",\"keyword\":");
        text_append_json_string(out, errors[i].keyword, strlen(errors[i].keyword));
        text_append_str(out, ",\"message\":");
        text_append_json_string(out, errors[i].message, strlen(errors[i].message));
        text_append_str(out, "}");
    }
    text_append_str(out, "]");
}

/* Why one job cannot be taken: a problem kind, its detail and schema failures. */
struct job_failure {
    enum problem_kind kind;
    const char *detail;
    struct schema_error errors[SCHEMA_ERRORS_SHOWN];
    size_t error_count;
};

/*
 * Steps 7 (the job's shape and class) and 8 (its arguments against the class's schema)
 * for one job. Returns 0, or -1 with *failure set.
 */
static int check_job(struct enqueue *enqueue, struct job_slot *slot, const struct job *job,
                     struct job_failure *failure, size_t errors_wanted)
{
    const struct config_class *class_;

    if (policy_class_name_valid(job->class_name, job->class_len))
        slot->class_name = h2o_strdup(&enqueue->req->pool, job->class_name, job->class_len);
    if (policy_class_allowed(enqueue->queue, job->class_name, job->class_len) != POLICY_OK) {
        failure->kind = PROBLEM_UNKNOWN_CLASS;
        failure->detail = "class not allowed on this queue";
        return -1;
    }
    class_ = config_find_class(enqueue->config, job->class_name, job->class_len);
    failure->error_count =
        schema_validate(class_->schema, job->args, failure->errors, errors_wanted);
    if (failure->error_count == 0)
        return 0;
    failure->kind = PROBLEM_INVALID_ARGUMENTS;
    failure->detail = "see errors: each names the failing value by JSON Pointer";
    return -1;
}

/*
 * Steps 9 and 10, first half: seal the job's secrets and draft its envelope. Returns 0,
 * or -1 with *failure set; job is released either way.
 */
static int draft_job(struct enqueue *enqueue, struct job_slot *slot, struct job *job,
                     struct job_failure *failure)
{
    const struct config *config = enqueue->config;
    const struct config_queue *queue = enqueue->queue;
    struct worker *worker = enqueue->worker;
    struct envelope_recipient recipient;
    struct envelope_request request = {
        .id = slot->id,
        .tenant = enqueue->principal.tenant,
        .subject = enqueue->principal.subject,
        .queue = queue->name,
        .issued_at = (int64_t)time(NULL),
        .schema = config_find_class(config, job->class_name, job->class_len)->schema,
        .signer = &config->envelope.signer,
    };
    enum envelope_status status;

    envelope_new_job_id(slot->id);
    request.expires_at = request.issued_at + config->envelope.expires_after_seconds;
    if (queue->seal_to >= 0) {
        const struct config_sealing_key *key = &config->envelope.sealing_keys[queue->seal_to];
        recipient = (struct envelope_recipient){
            .kid = key->kid,
            .public_key = key->public_key,
            .sealer = worker->sealer,
            .slot = (size_t)queue->seal_to,
            .now_ms = uv_now(worker->http.loop),
        };
        request.recipient = &recipient;
    }
    status = envelope_draft(&slot->draft, job, &request);
    job_release(job);
    failure->error_count = 0;
    if (status == ENVELOPE_OK && slot->draft.len <= config->limits.max_job_bytes)
        return 0;
    if (status == ENVELOPE_OK) {
        envelope_draft_release(&slot->draft);
        failure->kind = PROBLEM_JOB_TOO_LARGE;
        failure->detail = "the job's envelope exceeds limits.max_job_bytes";
    } else if (status == ENVELOPE_NO_MEMORY) {
        failure->kind = PROBLEM_OVERLOADED;
        failure->detail = "out of memory; retry shortly";
    } else if (status == ENVELOPE_TOO_BIG) {
        failure->kind = PROBLEM_JOB_TOO_LARGE;
        failure->detail = "the job's envelope is too large";
    } else {
        failure->kind = PROBLEM_INTERNAL;
        failure->detail = "nothing was written";
    }
    return -1;
}

static int reject_job(struct enqueue *enqueue, const struct job_failure *failure)
{
    size_t shown, capacity;
    struct text members;

    if (failure->kind != PROBLEM_INVALID_ARGUMENTS)
        return reject(enqueue, failure->kind, failure->detail);
    shown = failure->error_count < SCHEMA_ERRORS_SHOWN ? failure->error_count : SCHEMA_ERRORS_SHOWN;
    capacity = 64 + shown * SCHEMA_ERROR_BYTES;
    text_init(&members, h2o_mem_alloc_pool(&enqueue->req->pool, capacity), capacity);
    append_schema_errors(&members, "/args", failure->errors, shown, failure->error_count);
    return reject_with(enqueue, PROBLEM_INVALID_ARGUMENTS, failure->detail, text_finish(&members));
}

/* Step 7 for the whole body: answers a body that is not strict JSON or not a job (batch). */
static int check_parsed(struct enqueue *enqueue, enum job_status status, const char *detail)
{
    switch (status) {
    case JOB_OK:
        return 0;
    case JOB_MALFORMED_JSON:
        return reject(enqueue, PROBLEM_MALFORMED_JSON, detail);
    default:
        return reject(enqueue, PROBLEM_INVALID_JOB, detail);
    }
}

/* Steps 7 to 10 for a single job. */
static int read_single(struct enqueue *enqueue)
{
    struct job_failure failure;
    struct job job;
    const char *detail;

    enqueue->job_count = 1;
    enqueue->jobs = h2o_mem_alloc_pool(&enqueue->req->pool, sizeof(*enqueue->jobs));
    memset(enqueue->jobs, 0, sizeof(*enqueue->jobs));
    enum job_status status =
        job_parse(enqueue->req->entity.base, enqueue->req->entity.len, &job, &detail);

    if (check_parsed(enqueue, status, detail) != 0)
        return -1;
    if (check_job(enqueue, &enqueue->jobs[0], &job, &failure, SCHEMA_ERRORS_SHOWN) != 0) {
        job_release(&job);
        return reject_job(enqueue, &failure);
    }
    if (draft_job(enqueue, &enqueue->jobs[0], &job, &failure) != 0)
        return reject_job(enqueue, &failure);
    enqueue->drafted = 1;
    return 0;
}

/* One failing job of a batch, as an element of the problem's "items". */
static void append_batch_item(struct text *out, size_t index, const struct job_failure *failure)
{
    char prefix[sizeof("/jobs/18446744073709551615/args")];
    size_t shown = failure->error_count < BATCH_ITEM_ERRORS_SHOWN ? failure->error_count
                                                                  : BATCH_ITEM_ERRORS_SHOWN;

    text_append_str(out, "{\"index\":");
    text_append_uint(out, index);
    text_append_str(out, ",\"type\":");
    text_append_json_string(out, problem_type(failure->kind), strlen(problem_type(failure->kind)));
    text_append_str(out, ",\"detail\":");
    text_append_json_string(out, failure->detail, strlen(failure->detail));
    if (failure->kind == PROBLEM_INVALID_ARGUMENTS) {
        snprintf(prefix, sizeof(prefix), "/jobs/%zu/args", index);
        text_append_str(out, ",");
        append_schema_errors(out, prefix, failure->errors, shown, failure->error_count);
    }
    text_append_str(out, "}");
}

/*
 * Steps 7 to 10 for a batch: every job is checked, and the answer lists the first
 * failing ones; only when all pass are they sealed and drafted.
 */
static int read_batch(struct enqueue *enqueue)
{
    const struct config *config = enqueue->config;
    h2o_req_t *req = enqueue->req;
    size_t capacity = 64 + BATCH_ITEMS_SHOWN * (BATCH_ITEM_ERRORS_SHOWN * SCHEMA_ERROR_BYTES + 512);
    struct job_failure failure;
    struct text items;
    size_t failed = 0, count;
    const char *detail;
    json_t *array;

    enum job_status status = job_parse_batch(req->entity.base, req->entity.len, &array, &detail);

    if (check_parsed(enqueue, status, detail) != 0)
        return -1;
    count = json_array_size(array);
    if (count > config->limits.max_batch_jobs ||
        (enqueue->rate.interval_us != 0 && count > enqueue->rate.burst)) {
        json_decref(array);
        return reject(enqueue, PROBLEM_TOO_MANY_JOBS,
                      count > config->limits.max_batch_jobs
                          ? "more jobs than limits.max_batch_jobs"
                          : "more jobs than the tenant's burst; split the batch");
    }
    if (count > 1 && admit_locally(enqueue, count - 1) != 0) {
        json_decref(array);
        return -1;
    }

    enqueue->job_count = count;
    enqueue->jobs = h2o_mem_alloc_pool(&req->pool, count * sizeof(*enqueue->jobs));
    memset(enqueue->jobs, 0, count * sizeof(*enqueue->jobs));
    text_init(&items, h2o_mem_alloc_pool(&req->pool, capacity), capacity);
    for (size_t i = 0; i < count; i++) {
        struct job job;
        int ok =
            job_read(json_array_get(array, i), req->entity.len / count, &job, &detail) == JOB_OK;
        if (!ok) {
            failure = (struct job_failure){.kind = PROBLEM_INVALID_JOB, .detail = detail};
        } else {
            ok =
                check_job(enqueue, &enqueue->jobs[i], &job, &failure, BATCH_ITEM_ERRORS_SHOWN) == 0;
            job_release(&job);
        }
        if (!ok && failed++ < BATCH_ITEMS_SHOWN) {
            text_append_str(&items, failed == 1 ? "" : ",");
            append_batch_item(&items, i, &failure);
        }
    }
    for (size_t i = 0; failed == 0 && i < count; i++) {
        struct job job;
        job_read(json_array_get(array, i), req->entity.len / count, &job, &detail);
        if (draft_job(enqueue, &enqueue->jobs[i], &job, &failure) != 0) {
            if (failure.kind != PROBLEM_JOB_TOO_LARGE) {
                json_decref(array);
                return reject(enqueue, failure.kind, failure.detail);
            }
            if (failed++ < BATCH_ITEMS_SHOWN) {
                text_append_str(&items, failed == 1 ? "" : ",");
                append_batch_item(&items, i, &failure);
            }
            continue;
        }
        enqueue->drafted = i + 1;
    }
    json_decref(array);
    if (failed == 0)
        return 0;

    size_t members_capacity = items.len + 64;
    struct text members;
    text_init(&members, h2o_mem_alloc_pool(&req->pool, members_capacity), members_capacity);
    text_append_str(&members, "\"item_error_count\":");
    text_append_uint(&members, failed);
    text_append_str(&members, ",\"items\":[");
    text_append(&members, text_finish(&items), items.len);
    text_append_str(&members, "]");
    return reject_with(enqueue, PROBLEM_INVALID_BATCH, "see items: each names a failing job",
                       text_finish(&members));
}

/* The 202 body, known before the write so that Redis can keep it for replays. */
static void make_answer(struct enqueue *enqueue)
{
    const char *queue = enqueue->queue->name;
    size_t capacity = 64 + 6 * strlen(queue) + enqueue->job_count * ACCEPTED_JOB_BYTES;
    struct text body;

    text_init(&body, h2o_mem_alloc_pool(&enqueue->req->pool, capacity), capacity);
    if (!enqueue->is_batch) {
        const struct job_slot *job = &enqueue->jobs[0];
        text_append_str(&body, "{\"id\":\"");
        text_append_str(&body, job->id);
        text_append_str(&body, "\",\"queue\":");
        text_append_json_string(&body, queue, strlen(queue));
        text_append_str(&body, ",\"class\":");
        text_append_json_string(&body, job->class_name.base, job->class_name.len);
        text_append_str(&body, "}");
    } else {
        text_append_str(&body, "{\"queue\":");
        text_append_json_string(&body, queue, strlen(queue));
        text_append_str(&body, ",\"jobs\":[");
        for (size_t i = 0; i < enqueue->job_count; i++) {
            const struct job_slot *job = &enqueue->jobs[i];
            text_append_str(&body, i == 0 ? "{\"id\":\"" : ",{\"id\":\"");
            text_append_str(&body, job->id);
            text_append_str(&body, "\",\"class\":");
            text_append_json_string(&body, job->class_name.base, job->class_name.len);
            text_append_str(&body, "}");
        }
        text_append_str(&body, "]}");
    }
    enqueue->answer = text_finish(&body);
    enqueue->answer_len = body.len;
}

/* Step 12, or the problem that replaces it: Redis has answered the write. */
static void on_stored(void *data, const struct store_result *result)
{
    struct enqueue *enqueue = data;

    enqueue->op = NULL;
    if (result->status != STORE_OK)
        give_back_locally(enqueue);
    switch (result->status) {
    case STORE_OK:
        add_rate_headers(enqueue, result->rate_remaining, result->rate_reset_us);
        respond_accepted(enqueue, enqueue->answer, enqueue->answer_len, 0);
        break;
    case STORE_REPLAYED:
        respond_replayed(enqueue, result->answer, result->answer_len, result->rate_remaining,
                         result->rate_reset_us);
        break;
    case STORE_KEY_REUSED:
        reject_key_reused(enqueue);
        break;
    case STORE_RATE_LIMITED:
        reject_rate_limited(enqueue, result->retry_after_us, result->rate_remaining,
                            result->rate_reset_us);
        break;
    case STORE_QUEUE_FULL:
        reject(enqueue, PROBLEM_QUEUE_FULL, "the queue is at its max_depth; retry later");
        break;
    case STORE_BUSY:
        reject(enqueue, PROBLEM_OVERLOADED, "too many writes in flight; retry shortly");
        break;
    default:
        reject(enqueue, PROBLEM_REDIS_UNAVAILABLE, "the job was not confirmed as written");
        break;
    }
}

/* Frees what the enqueue's jobs still hold: drafts not signed, payloads not written. */
static void release_jobs(struct enqueue *enqueue)
{
    for (size_t i = 0; i < enqueue->drafted; i++) {
        struct job_slot *job = &enqueue->jobs[i];
        if (i >= enqueue->signed_count)
            envelope_draft_release(&job->draft);
        free(job->payload);
        job->payload = NULL;
    }
    enqueue->drafted = 0;
    enqueue->signed_count = 0;
}

/* Step 11: hand the signed payloads to Redis, with every check Redis makes. */
static void write_jobs(struct enqueue *enqueue)
{
    const char *payloads[1] = {enqueue->jobs[0].payload};
    size_t lens[1] = {enqueue->jobs[0].payload_len};
    const char **all_payloads = payloads;
    size_t *all_lens = lens;
    enum store_status status = STORE_UNAVAILABLE;

    if (enqueue->job_count > 1) {
        all_payloads =
            h2o_mem_alloc_pool(&enqueue->req->pool, enqueue->job_count * sizeof(*all_payloads));
        all_lens = h2o_mem_alloc_pool(&enqueue->req->pool, enqueue->job_count * sizeof(*all_lens));
        for (size_t i = 0; i < enqueue->job_count; i++) {
            all_payloads[i] = enqueue->jobs[i].payload;
            all_lens[i] = enqueue->jobs[i].payload_len;
        }
    }
    struct store_write write = describe_write(enqueue, all_payloads, all_lens, enqueue->job_count);
    enqueue->op = store_write(enqueue->worker->store, &write, on_stored, enqueue, &status);
    release_jobs(enqueue);
    if (enqueue->op == NULL) {
        struct store_result result = {.status = status};
        on_stored(enqueue, &result);
    }
}

/* Takes enqueue off the list of requests waiting to be signed. */
static void forget_unsigned(struct enqueue *enqueue)
{
    h2o_linklist_unlink(&enqueue->unsigned_link);
    enqueue->worker->unsigned_count -= enqueue->job_count - enqueue->signed_count;
}

/* A job of a request waiting to be signed, as a leaf of the tree being signed. */
struct leaf {
    struct enqueue *enqueue;
    size_t index;
};

/*
 * Steps 10 and 11 for the oldest jobs waiting: as many as one signature may cover, all
 * drafted under one config (so with one signing key), signed together. A request all
 * of whose jobs are signed is written; a batch may span several signatures. Finished
 * requests move to a list of their own first: answering one may dispose of others,
 * which then take themselves off it.
 */
static void sign_waiting(struct worker *worker)
{
    const struct envelope_draft *drafts[ENVELOPE_MAX_JOBS_PER_SIGNATURE];
    struct leaf leaves[ENVELOPE_MAX_JOBS_PER_SIGNATURE];
    const struct config *config = NULL;
    size_t count = 0, limit = ENVELOPE_MAX_JOBS_PER_SIGNATURE;
    h2o_linklist_t finished, *node;
    int signed_ok;

    h2o_linklist_init_anchor(&finished);
    for (node = worker->unsigned_jobs.next; node != &worker->unsigned_jobs && count < limit;
         node = node->next) {
        struct enqueue *enqueue = H2O_STRUCT_FROM_MEMBER(struct enqueue, unsigned_link, node);
        if (config == NULL) {
            config = enqueue->config;
            limit = config->envelope.jobs_per_signature;
        } else if (enqueue->config != config) {
            break;
        }
        for (size_t i = enqueue->signed_count; i < enqueue->job_count && count < limit; i++) {
            leaves[count] = (struct leaf){enqueue, i};
            drafts[count++] = &enqueue->jobs[i].draft;
        }
    }
    if (count == 0)
        return;
    worker->signing = 1;
    signed_ok = envelope_batch_sign(worker->batch, drafts, count, &config->envelope.signer) == 0;

    for (size_t i = 0; i < count; i++) {
        struct enqueue *enqueue = leaves[i].enqueue;
        struct job_slot *job = &enqueue->jobs[leaves[i].index];
        if (signed_ok)
            job->payload =
                envelope_batch_payload(worker->batch, i, &job->draft, job->class_name.base,
                                       job->class_name.len, &job->payload_len);
        envelope_draft_release(&job->draft);
        enqueue->signed_count++;
        worker->unsigned_count--;
        enqueue->sign_failed |= job->payload == NULL;
        /* A request's leaves are side by side; after its last one it may be done. */
        if ((i + 1 == count || leaves[i + 1].enqueue != enqueue) &&
            (enqueue->signed_count == enqueue->job_count || enqueue->sign_failed)) {
            forget_unsigned(enqueue);
            h2o_linklist_insert(&finished, &enqueue->unsigned_link);
        }
    }

    while (!h2o_linklist_is_empty(&finished)) {
        struct enqueue *enqueue =
            H2O_STRUCT_FROM_MEMBER(struct enqueue, unsigned_link, finished.next);
        h2o_linklist_unlink(&enqueue->unsigned_link);
        if (!enqueue->sign_failed) {
            write_jobs(enqueue);
        } else {
            release_jobs(enqueue);
            reject(enqueue, PROBLEM_INTERNAL, "nothing was written");
        }
    }
    worker->signing = 0;
}

/* The loop turn's I/O is done: sign and write every job drafted in it. */
static void on_sign_check(uv_check_t *check)
{
    struct worker *worker = check->data;

    while (!h2o_linklist_is_empty(&worker->unsigned_jobs))
        sign_waiting(worker);
    uv_check_stop(check);
}

/* Puts a drafted request in line to be signed; a full tree is signed at once. */
static void queue_for_signing(struct enqueue *enqueue)
{
    struct worker *worker = enqueue->worker;

    h2o_linklist_insert(&worker->unsigned_jobs, &enqueue->unsigned_link);
    worker->unsigned_count += enqueue->job_count;
    /* A job that comes in while a tree is written out waits for the check. */
    while (worker->unsigned_count >= enqueue->config->envelope.jobs_per_signature &&
           !worker->signing && !h2o_linklist_is_empty(&worker->unsigned_jobs))
        sign_waiting(worker);
    if (!h2o_linklist_is_empty(&worker->unsigned_jobs))
        uv_check_start(&worker->sign_check, on_sign_check);
}

static void connection_budget(const struct worker *worker, struct gcra *budget)
{
    const struct config_rate *resets = &worker->config->limits.connection_resets;

    gcra_init(budget, resets->per_second, resets->burst);
}

/*
 * Shuts an HTTP/2 connection down: h2o reads the end of the stream and closes it the
 * usual way. (h2o 2.2.5 has no call that sends GOAWAY from outside, and the header with
 * its connection internals needs one Debian does not install.)
 */
static void shut_down(h2o_conn_t *conn)
{
    h2o_socket_t *sock =
        conn->callbacks->get_socket != NULL ? conn->callbacks->get_socket(conn) : NULL;

    if (sock != NULL && shutdown(h2o_socket_get_fd(sock), SHUT_RDWR) == 0)
        log_message(LOG_WARN, "transport",
                    "shut down an HTTP/2 connection that reset too many streams");
}

/*
 * A client reset a stream whose request jobgate had taken and not answered yet. Done
 * fast, that is the HTTP/2 rapid reset attack: each reset stream costs the pipeline's
 * work while the client holds no stream open, so the limit on concurrent streams never
 * bites. Past its budget the connection is shut down.
 */
static void count_reset(struct worker *worker, h2o_conn_t *conn)
{
    struct gcra budget;

    connection_budget(worker, &budget);
    if (!rate_table_take(worker->connection_resets, &conn->id, sizeof(conn->id), &budget, now_us(),
                         1, NULL, NULL, NULL))
        shut_down(conn);
}

/*
 * Whether the request's connection spent its budget of resets. Its requests still read
 * from h2o's buffer get an answer and no work, and the connection is shut down (again:
 * the first shutdown may have come while h2o was still reading).
 */
static int connection_over_budget(struct worker *worker, h2o_req_t *req)
{
    struct gcra budget;

    if (req->version < 0x200)
        return 0;
    connection_budget(worker, &budget);
    if (rate_table_would_allow(worker->connection_resets, &req->conn->id, sizeof(req->conn->id),
                               &budget, now_us(), 1, NULL))
        return 0;
    shut_down(req->conn);
    return 1;
}

/* The request is gone (answered, or reset by the client): Redis's answer is not wanted. */
static void on_enqueue_disposed(void *data)
{
    struct enqueue *enqueue = data;

    if (h2o_linklist_is_linked(&enqueue->unsigned_link))
        forget_unsigned(enqueue);
    release_jobs(enqueue);
    if (enqueue->op != NULL)
        store_op_cancel(enqueue->op);
    if (!enqueue->answered && enqueue->req->version >= 0x200)
        count_reset(enqueue->worker, enqueue->req->conn);
    config_release(enqueue->config);
}

static void enqueue_request(h2o_req_t *req, h2o_iovec_t queue_name, int is_batch)
{
    struct enqueue *enqueue =
        h2o_mem_alloc_shared(&req->pool, sizeof(*enqueue), on_enqueue_disposed);

    memset(enqueue, 0, sizeof(*enqueue));
    enqueue->worker = worker_of(req);
    enqueue->config = enqueue->worker->config;
    config_retain(enqueue->config);
    enqueue->req = req;
    enqueue->started_ns = uv_hrtime();
    enqueue->is_batch = is_batch;
    enqueue->queue_name = queue_name;

    if (connection_over_budget(enqueue->worker, req)) {
        reject(enqueue, PROBLEM_TOO_MANY_RESETS, "this connection reset too many streams");
        return;
    }
    if (authenticate(enqueue) != 0 || authorize(enqueue) != 0 || check_request(enqueue) != 0 ||
        admit_locally(enqueue, 1) != 0 ||
        (is_batch ? read_batch(enqueue) : read_single(enqueue)) != 0)
        return;
    make_answer(enqueue);
    queue_for_signing(enqueue);
}

static void respond_json(h2o_req_t *req, int status, const char *reason, const char *json)
{
    respond(req, status, reason, "application/json", json, strlen(json));
}

static void method_not_allowed(h2o_req_t *req, const char *allow)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    problem_send(req, PROBLEM_METHOD_NOT_ALLOWED, NULL);
}

static int is_method(h2o_req_t *req, const char *method)
{
    return h2o_memis(req->method.base, req->method.len, method, strlen(method));
}

static int path_is(h2o_iovec_t path, const char *expected)
{
    return h2o_memis(path.base, path.len, expected, strlen(expected));
}

/*
 * Matches "/v1/queues/{queue}" followed by suffix and sets *queue_name. The name is
 * checked against the config later, after authentication, so that an unauthenticated
 * caller cannot learn which queues exist.
 */
static int match_queue_path(h2o_iovec_t path, const char *suffix, h2o_iovec_t *queue_name)
{
    size_t prefix_len = sizeof(QUEUES_PREFIX) - 1, suffix_len = strlen(suffix);

    if (path.len <= prefix_len + suffix_len || memcmp(path.base, QUEUES_PREFIX, prefix_len) != 0 ||
        memcmp(path.base + path.len - suffix_len, suffix, suffix_len) != 0)
        return 0;
    *queue_name = h2o_iovec_init(path.base + prefix_len, path.len - prefix_len - suffix_len);
    return memchr(queue_name->base, '/', queue_name->len) == NULL;
}

int gateway_on_request(h2o_handler_t *handler, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized, queue_name;
    int is_batch = 0;

    (void)handler;
    if (match_queue_path(path, JOBS_SUFFIX, &queue_name) ||
        (is_batch = match_queue_path(path, BATCH_SUFFIX, &queue_name))) {
        if (!is_method(req, "POST"))
            method_not_allowed(req, "POST");
        else
            enqueue_request(req, queue_name, is_batch);
    } else if (path_is(path, "/healthz")) {
        if (!is_method(req, "GET") && !is_method(req, "HEAD"))
            method_not_allowed(req, "GET, HEAD");
        else
            respond_json(req, 200, "OK", "{\"status\":\"ok\"}");
    } else if (path_is(path, "/readyz")) {
        if (!is_method(req, "GET") && !is_method(req, "HEAD"))
            method_not_allowed(req, "GET, HEAD");
        else if (worker_of(req)->draining)
            problem_send(req, PROBLEM_DRAINING, NULL);
        else if (!store_ready(worker_of(req)->store))
            problem_send(req, PROBLEM_REDIS_UNAVAILABLE, "not connected to Redis");
        else
            respond_json(req, 200, "OK", "{\"status\":\"ready\"}");
    } else {
        problem_send(req, PROBLEM_NOT_FOUND, NULL);
    }
    return 0;
}

static void on_log_flush(uv_prepare_t *prepare)
{
    (void)prepare;
    log_flush();
}

/* Ends every sealing epoch that is over, so its key is gone even when no job comes. */
static void on_seal_timer(uv_timer_t *timer)
{
    struct worker *worker = timer->data;

    sealer_expire(worker->sealer, uv_now(timer->loop));
}

int gateway_worker_use_config(struct worker *worker, const struct config *config)
{
    /* New keys may sit in other slots: every epoch starts afresh. */
    struct sealer *sealer =
        sealer_new(config->envelope.sealing_key_count, config->envelope.seal_epoch_ms);

    if (sealer == NULL)
        return -1;
    sealer_free(worker->sealer);
    worker->sealer = sealer;
    config_retain(config);
    config_release(worker->config);
    worker->config = config;
    /* Verdicts cached under the old keys are told apart by the keyring's generation. */
    worker->auth_settings = (struct auth_settings){
        .issuer = config->auth.issuer,
        .audience = config->auth.audience,
        .leeway_seconds = config->auth.leeway_seconds,
        .tenant_claim = config->auth.tenant_claim,
        .keyring = config->auth.keyring,
    };
    return 0;
}

/* Budgets of HTTP/2 connections on one loop: one bucket of resets per connection. */
#define CONNECTION_BUCKETS 4096
/* Budgets every loop shares: tenants' local buckets, and addresses' failed tokens. */
#define TENANT_BUCKETS 4096
#define ADDRESS_BUCKETS 65536

int gateway_shared_init(struct gateway_shared *shared)
{
    shared->tenant_jobs = rate_table_new(TENANT_BUCKETS, 1);
    shared->failed_tokens = rate_table_new(ADDRESS_BUCKETS, 1);
    if (shared->tenant_jobs != NULL && shared->failed_tokens != NULL)
        return 0;
    gateway_shared_dispose(shared);
    return -1;
}

void gateway_shared_dispose(struct gateway_shared *shared)
{
    rate_table_free(shared->tenant_jobs);
    rate_table_free(shared->failed_tokens);
    shared->tenant_jobs = NULL;
    shared->failed_tokens = NULL;
}

int gateway_worker_init(struct worker *worker, const struct config *config, uv_loop_t *loop,
                        struct gateway_shared *shared)
{
    worker->shared = shared;
    worker->connection_resets = NULL;
    worker->config = NULL;
    worker->sealer = NULL;
    worker->auth_cache = NULL;
    worker->store = NULL;
    worker->batch = NULL;
    if (gateway_worker_use_config(worker, config) != 0)
        return -1;
    uv_timer_init(loop, &worker->seal_timer);
    worker->seal_timer.data = worker;
    uv_timer_start(&worker->seal_timer, on_seal_timer, SEAL_TIMER_MS, SEAL_TIMER_MS);
    h2o_linklist_init_anchor(&worker->unsigned_jobs);
    worker->unsigned_count = 0;
    worker->signing = 0;
    uv_check_init(loop, &worker->sign_check);
    worker->sign_check.data = worker;
    if ((worker->batch = envelope_batch_new()) == NULL ||
        (worker->connection_resets = rate_table_new(CONNECTION_BUCKETS, 0)) == NULL)
        return -1;
    uv_prepare_init(loop, &worker->log_flush);
    uv_prepare_start(&worker->log_flush, on_log_flush);
    if (config->auth.token_cache_entries > 0 &&
        (worker->auth_cache = auth_cache_new(config->auth.token_cache_entries)) == NULL)
        return -1;
    /* Redis settings cannot change on reload, so the store keeps the first config's. */
    worker->store = store_new(loop, &config->redis);
    return worker->store != NULL ? 0 : -1;
}

void gateway_worker_dispose(struct worker *worker)
{
    store_free(worker->store);
    uv_close((uv_handle_t *)&worker->seal_timer, NULL);
    uv_close((uv_handle_t *)&worker->sign_check, NULL);
    uv_close((uv_handle_t *)&worker->log_flush, NULL);
    envelope_batch_free(worker->batch);
    worker->batch = NULL;
    rate_table_free(worker->connection_resets);
    worker->connection_resets = NULL;
    sealer_free(worker->sealer);
    worker->sealer = NULL;
    auth_cache_free(worker->auth_cache);
    config_release(worker->config);
    worker->store = NULL;
    worker->auth_cache = NULL;
    worker->config = NULL;
}
