/*
 * gateway: routing and the enqueue pipeline; see gateway.h.
 *
 * An enqueue owns one struct enqueue, allocated in the request's pool. Every step
 * either passes or answers the request with a problem and stops. Steps 1 to 9 and the
 * envelope's draft run in the handler; the drafts of one loop turn are then signed
 * together (one signature over their Merkle tree, workers/ENVELOPE.md) when the turn's
 * I/O is done, or as soon as a batch is full, and only then written. Redis's answer
 * comes back in on_stored().
 */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "envelope.h"
#include "job.h"
#include "log.h"
#include "policy.h"
#include "problem.h"
#include "text.h"

#define QUEUES_PREFIX "/v1/queues/"
#define JOBS_SUFFIX "/jobs"
#define ACCEPTED_MAX_BYTES 512
/* How often ended sealing epochs are wiped; epochs last whole seconds. */
#define SEAL_TIMER_MS 250
/* A rejected job lists at most this many failures, and how many there were in all. */
#define SCHEMA_ERRORS_SHOWN 16
/* A pointer may grow six-fold when escaped for JSON (\u00XX); messages are short. */
#define SCHEMA_ERROR_BYTES (6 * (SCHEMA_MAX_POINTER + sizeof("/args")) + 256)

struct enqueue {
    struct worker *worker;
    const struct config *config; /* the one it started under, held until it is disposed */
    h2o_req_t *req;
    uint64_t started_ns;
    h2o_iovec_t queue_name;
    const struct config_queue *queue;
    struct principal principal;
    int authenticated;
    h2o_iovec_t class_name;
    const struct config_class *class_; /* set once the class is known to be allowed */
    char job_id[ENVELOPE_JOB_ID_LEN + 1];
    struct envelope_draft draft;  /* its text is set from drafting until written */
    h2o_linklist_t unsigned_link; /* in worker->unsigned_jobs while waiting to be signed */
    size_t batch_index;           /* its leaf in the batch being written out */
    struct store_op *op;          /* set while Redis has the write */
};

static struct worker *worker_of(h2o_req_t *req)
{
    return (struct worker *)req->conn->ctx;
}

static const char *protocol_of(h2o_req_t *req)
{
    int tls = req->scheme == &H2O_URL_SCHEME_HTTPS;

    if (req->version >= 0x200)
        return tls ? "h2" : "h2c";
    return tls ? "http/1.1+tls" : "http/1.1";
}

static void log_enqueue(struct enqueue *enqueue, int status, const char *problem)
{
    h2o_req_t *req = enqueue->req;
    struct log_request entry = {
        .method = "POST",
        .path = req->path_normalized.base,
        .path_len = req->path_normalized.len,
        .protocol = protocol_of(req),
        .tenant = enqueue->authenticated ? enqueue->principal.tenant : NULL,
        .subject = enqueue->authenticated ? enqueue->principal.subject : NULL,
        .queue = enqueue->queue != NULL ? enqueue->queue->name : NULL,
        .queue_len = enqueue->queue != NULL ? strlen(enqueue->queue->name) : 0,
        .class_name = enqueue->class_name.base,
        .class_len = enqueue->class_name.len,
        .job_id = enqueue->job_id[0] != '\0' ? enqueue->job_id : NULL,
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
    log_enqueue(enqueue, problem_status(kind), problem_type(kind));
    problem_send_extended(enqueue->req, kind, detail, members);
    return -1;
}

static int reject(struct enqueue *enqueue, enum problem_kind kind, const char *detail)
{
    return reject_with(enqueue, kind, detail, NULL);
}

/* Step 3: the bearer token. */
static int authenticate(struct enqueue *enqueue)
{
    static const char scheme[] = "Bearer ";
    struct worker *worker = enqueue->worker;
    h2o_req_t *req = enqueue->req;
    ssize_t index = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    enum auth_status status = AUTH_MISSING;

    if (index >= 0) {
        h2o_iovec_t value = req->headers.entries[index].value;
        if (value.len > sizeof(scheme) - 1 &&
            strncasecmp(value.base, scheme, sizeof(scheme) - 1) == 0)
            status = auth_verify(&worker->auth_settings, worker->auth_cache,
                                 value.base + sizeof(scheme) - 1, value.len - (sizeof(scheme) - 1),
                                 (int64_t)time(NULL), &enqueue->principal);
    }
    if (status == AUTH_MISSING)
        return reject(enqueue, PROBLEM_MISSING_TOKEN, "send Authorization: Bearer <token>");
    if (status != AUTH_OK)
        return reject(enqueue, PROBLEM_INVALID_TOKEN, auth_status_reason(status));
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
        return 0;
    case POLICY_TENANT_FORBIDDEN:
        return reject(enqueue, PROBLEM_INSUFFICIENT_SCOPE, "tenant may not use this queue");
    default:
        return reject(enqueue, PROBLEM_INSUFFICIENT_SCOPE,
                      "no scope grants this queue or its tier");
    }
}

/* Whether a Content-Type value is application/json, charset UTF-8 if one is named. */
static int is_json_media_type(h2o_iovec_t value)
{
    static const char json[] = "application/json";
    size_t len = sizeof(json) - 1;
    const char *rest, *end = value.base + value.len;

    if (value.len < len || strncasecmp(value.base, json, len) != 0)
        return 0;
    for (rest = value.base + len; rest < end && (*rest == ' ' || *rest == '\t'); rest++)
        ;
    if (rest == end)
        return 1;
    if (*rest != ';')
        return 0;
    for (rest++; rest < end && (*rest == ' ' || *rest == '\t'); rest++)
        ;
    return (size_t)(end - rest) == 13 && strncasecmp(rest, "charset=utf-8", 13) == 0;
}

/* Step 5: the body's size and media type. */
static int check_body(struct enqueue *enqueue)
{
    h2o_req_t *req = enqueue->req;
    ssize_t index;

    if (req->entity.len > enqueue->queue->max_body_bytes)
        return reject(enqueue, PROBLEM_PAYLOAD_TOO_LARGE,
                      "request body exceeds this queue's limit");
    index = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (index < 0 || !is_json_media_type(req->headers.entries[index].value))
        return reject(enqueue, PROBLEM_UNSUPPORTED_MEDIA_TYPE, NULL);
    return 0;
}

/* Step 7, and the class check of step 4 that needs the parsed body. */
static int parse_job(struct enqueue *enqueue, struct job *job)
{
    h2o_req_t *req = enqueue->req;
    const char *detail;

    switch (job_parse(req->entity.base, req->entity.len, job, &detail)) {
    case JOB_OK:
        break;
    case JOB_MALFORMED_JSON:
        return reject(enqueue, PROBLEM_MALFORMED_JSON, detail);
    default:
        return reject(enqueue, PROBLEM_INVALID_JOB, detail);
    }

    if (policy_class_name_valid(job->class_name, job->class_len))
        enqueue->class_name = h2o_strdup(&req->pool, job->class_name, job->class_len);
    if (policy_class_allowed(enqueue->queue, job->class_name, job->class_len) != POLICY_OK) {
        job_release(job);
        return reject(enqueue, PROBLEM_UNKNOWN_CLASS, "class not allowed on this queue");
    }
    return 0;
}

/*
 * Renders failures as the problem's "errors" member, each pointer taken from the
 * request body's root (so under /args). Messages are schema's fixed texts: no value
 * from the job ever reaches the answer.
 */
static const char *schema_errors_member(h2o_req_t *req, const struct schema_error *errors,
                                        size_t shown, size_t total)
{
    size_t capacity = 64 + shown * SCHEMA_ERROR_BYTES;
    struct text members;

    text_init(&members, h2o_mem_alloc_pool(&req->pool, capacity), capacity);
    text_append_str(&members, "\"error_count\":");
    text_append_uint(&members, total);
    text_append_str(&members, ",\"errors\":[");
    for (size_t i = 0; i < shown; i++) {
        char pointer[SCHEMA_MAX_POINTER + sizeof("/args")];
        struct text path;

        text_init(&path, pointer, sizeof(pointer));
        text_append_str(&path, "/args");
        text_append_str(&path, errors[i].pointer);
        text_finish(&path);
        text_append_str(&members, i == 0 ? "{\"pointer\":" : ",{\"pointer\":");
        text_append_json_string(&members, pointer, path.len);
        text_append_str(&members, ",\"keyword\":");
        text_append_json_string(&members, errors[i].keyword, strlen(errors[i].keyword));
        text_append_str(&members, ",\"message\":");
        text_append_json_string(&members, errors[i].message, strlen(errors[i].message));
        text_append_str(&members, "}");
    }
    text_append_str(&members, "]");
    return text_finish(&members);
}

/* Step 8: the arguments against their class's schema, fail-closed. */
static int validate_args(struct enqueue *enqueue, struct job *job)
{
    const struct config_class *class_ =
        config_find_class(enqueue->config, job->class_name, job->class_len);
    struct schema_error errors[SCHEMA_ERRORS_SHOWN];

    enqueue->class_ = class_;
    size_t total = schema_validate(class_->schema, job->args, errors, SCHEMA_ERRORS_SHOWN);
    size_t shown = total < SCHEMA_ERRORS_SHOWN ? total : SCHEMA_ERRORS_SHOWN;

    if (total == 0)
        return 0;
    job_release(job);
    return reject_with(enqueue, PROBLEM_INVALID_ARGUMENTS,
                       "see errors: each names the failing value by JSON Pointer",
                       schema_errors_member(enqueue->req, errors, shown, total));
}

static void respond_accepted(struct enqueue *enqueue)
{
    char buffer[ACCEPTED_MAX_BYTES];
    struct text body;
    const char *json;

    text_init(&body, buffer, sizeof(buffer));
    text_append_str(&body, "{\"id\":\"");
    text_append_str(&body, enqueue->job_id);
    text_append_str(&body, "\",\"queue\":");
    text_append_json_string(&body, enqueue->queue->name, strlen(enqueue->queue->name));
    text_append_str(&body, ",\"class\":");
    text_append_json_string(&body, enqueue->class_name.base, enqueue->class_name.len);
    text_append_str(&body, "}");
    json = text_finish(&body);

    log_enqueue(enqueue, 202, NULL);
    respond(enqueue->req, 202, "Accepted", "application/json", json, body.len);
}

/* Step 12, or the problem that replaces it: Redis has answered the write. */
static void on_stored(void *data, enum store_status status)
{
    struct enqueue *enqueue = data;

    enqueue->op = NULL;
    switch (status) {
    case STORE_OK:
        respond_accepted(enqueue);
        break;
    case STORE_BUSY:
        reject(enqueue, PROBLEM_OVERLOADED, "too many writes in flight; retry shortly");
        break;
    default:
        reject(enqueue, PROBLEM_REDIS_UNAVAILABLE, "the job was not confirmed as written");
        break;
    }
}

/* Steps 9 and 10, first half: seal the secrets and draft the envelope. */
static int draft_envelope(struct enqueue *enqueue, struct job *job)
{
    const struct config *config = enqueue->config;
    const struct config_queue *queue = enqueue->queue;
    struct worker *worker = enqueue->worker;
    struct envelope_recipient recipient;
    struct envelope_request request = {
        .id = enqueue->job_id,
        .tenant = enqueue->principal.tenant,
        .subject = enqueue->principal.subject,
        .queue = queue->name,
        .issued_at = (int64_t)time(NULL),
        .schema = enqueue->class_->schema,
        .signer = &config->envelope.signer,
    };
    enum envelope_status status;

    envelope_new_job_id(enqueue->job_id);
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
    status = envelope_draft(&enqueue->draft, job, &request);
    job_release(job);
    if (status == ENVELOPE_NO_MEMORY)
        return reject(enqueue, PROBLEM_OVERLOADED, "out of memory; retry shortly");
    if (status != ENVELOPE_OK)
        return reject(enqueue, PROBLEM_INTERNAL, "nothing was written");
    return 0;
}

/* Step 11: hand the signed payload to Redis. */
static void store_job(struct enqueue *enqueue, const char *payload, size_t len)
{
    enum store_status status;

    enqueue->op =
        store_enqueue(enqueue->worker->store, enqueue->queue->name, strlen(enqueue->queue->name),
                      payload, len, on_stored, enqueue, &status);
    if (enqueue->op == NULL)
        on_stored(enqueue, status);
}

/* Takes enqueue off the list of jobs waiting to be signed and drops its draft. */
static void forget_unsigned(struct enqueue *enqueue)
{
    h2o_linklist_unlink(&enqueue->unsigned_link);
    enqueue->worker->unsigned_count--;
    envelope_draft_release(&enqueue->draft);
}

/*
 * Steps 10 and 11 for the oldest jobs waiting: as many as one signature may cover, all
 * drafted under one config (so with one signing key), signed together and written.
 * They move to a list of their own first: answering one job may dispose of others,
 * which then take themselves off it.
 */
static void sign_waiting(struct worker *worker)
{
    const struct envelope_draft *drafts[MERKLE_MAX_LEAVES];
    const struct config *config = NULL;
    size_t count = 0, limit = MERKLE_MAX_LEAVES;
    h2o_linklist_t batch;
    int signed_ok;

    h2o_linklist_init_anchor(&batch);
    while (!h2o_linklist_is_empty(&worker->unsigned_jobs) && count < limit) {
        struct enqueue *enqueue =
            H2O_STRUCT_FROM_MEMBER(struct enqueue, unsigned_link, worker->unsigned_jobs.next);
        if (config == NULL) {
            config = enqueue->config;
            limit = config->envelope.jobs_per_signature;
        } else if (enqueue->config != config) {
            break;
        }
        h2o_linklist_unlink(&enqueue->unsigned_link);
        h2o_linklist_insert(&batch, &enqueue->unsigned_link);
        enqueue->batch_index = count;
        drafts[count++] = &enqueue->draft;
    }
    if (count == 0)
        return;
    worker->signing = 1;
    signed_ok = envelope_batch_sign(worker->batch, drafts, count, &config->envelope.signer) == 0;

    while (!h2o_linklist_is_empty(&batch)) {
        struct enqueue *enqueue = H2O_STRUCT_FROM_MEMBER(struct enqueue, unsigned_link, batch.next);
        size_t len = 0;
        char *payload =
            signed_ok
                ? envelope_batch_payload(worker->batch, enqueue->batch_index, &enqueue->draft,
                                         enqueue->class_name.base, enqueue->class_name.len, &len)
                : NULL;
        forget_unsigned(enqueue);
        if (payload == NULL) {
            reject(enqueue, signed_ok ? PROBLEM_OVERLOADED : PROBLEM_INTERNAL,
                   signed_ok ? "out of memory; retry shortly" : "nothing was written");
            continue;
        }
        store_job(enqueue, payload, len);
        free(payload);
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

/* Puts a drafted job in line to be signed; a full batch is signed at once. */
static void queue_for_signing(struct enqueue *enqueue)
{
    struct worker *worker = enqueue->worker;

    h2o_linklist_insert(&worker->unsigned_jobs, &enqueue->unsigned_link);
    worker->unsigned_count++;
    /* A job that comes in while a batch is written out waits for the check. */
    if (worker->unsigned_count >= enqueue->config->envelope.jobs_per_signature && !worker->signing)
        sign_waiting(worker);
    if (!h2o_linklist_is_empty(&worker->unsigned_jobs))
        uv_check_start(&worker->sign_check, on_sign_check);
}

/* The request is gone (answered, or reset by the client): Redis's answer is not wanted. */
static void on_enqueue_disposed(void *data)
{
    struct enqueue *enqueue = data;

    if (h2o_linklist_is_linked(&enqueue->unsigned_link))
        forget_unsigned(enqueue);
    if (enqueue->op != NULL)
        store_op_cancel(enqueue->op);
    config_release(enqueue->config);
}

static void enqueue_job(h2o_req_t *req, h2o_iovec_t queue_name)
{
    struct enqueue *enqueue =
        h2o_mem_alloc_shared(&req->pool, sizeof(*enqueue), on_enqueue_disposed);
    struct job job;

    memset(enqueue, 0, sizeof(*enqueue));
    enqueue->worker = worker_of(req);
    enqueue->config = enqueue->worker->config;
    config_retain(enqueue->config);
    enqueue->req = req;
    enqueue->started_ns = uv_hrtime();
    enqueue->queue_name = queue_name;

    if (authenticate(enqueue) != 0 || authorize(enqueue) != 0 || check_body(enqueue) != 0 ||
        parse_job(enqueue, &job) != 0 || validate_args(enqueue, &job) != 0 ||
        draft_envelope(enqueue, &job) != 0)
        return;
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
 * Matches "/v1/queues/{queue}/jobs" and sets *queue_name. The name is checked
 * against the config later, after authentication, so that an unauthenticated
 * caller cannot learn which queues exist.
 */
static int match_jobs_path(h2o_iovec_t path, h2o_iovec_t *queue_name)
{
    size_t prefix = sizeof(QUEUES_PREFIX) - 1, suffix = sizeof(JOBS_SUFFIX) - 1;

    if (path.len <= prefix + suffix || memcmp(path.base, QUEUES_PREFIX, prefix) != 0 ||
        memcmp(path.base + path.len - suffix, JOBS_SUFFIX, suffix) != 0)
        return 0;
    *queue_name = h2o_iovec_init(path.base + prefix, path.len - prefix - suffix);
    return memchr(queue_name->base, '/', queue_name->len) == NULL;
}

int gateway_on_request(h2o_handler_t *handler, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized, queue_name;

    (void)handler;
    if (match_jobs_path(path, &queue_name)) {
        if (!is_method(req, "POST"))
            method_not_allowed(req, "POST");
        else
            enqueue_job(req, queue_name);
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

int gateway_worker_init(struct worker *worker, const struct config *config, uv_loop_t *loop)
{
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
    if ((worker->batch = envelope_batch_new()) == NULL)
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
    sealer_free(worker->sealer);
    worker->sealer = NULL;
    auth_cache_free(worker->auth_cache);
    config_release(worker->config);
    worker->store = NULL;
    worker->auth_cache = NULL;
    worker->config = NULL;
}
