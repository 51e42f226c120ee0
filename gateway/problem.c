/*
 * problem: RFC 9457 error answers; see problem.h. The table below is the one place
 * that names each kind's type URI, status and title; the README's error table describes them.
 */
#include "problem.h"

#include <string.h>

#include "text.h"

#define PROBLEM_TYPE_PREFIX "urn:jobgate:problem:"
#define PROBLEM_MAX_BYTES 1024

struct problem_info {
    const char *type;
    int status;
    const char *reason; /* HTTP/1.1 reason phrase */
    const char *title;
};

static const struct problem_info problems[PROBLEM_KIND_COUNT] = {
    [PROBLEM_NOT_FOUND] = {PROBLEM_TYPE_PREFIX "not-found", 404, "Not Found", "No such resource"},
    [PROBLEM_METHOD_NOT_ALLOWED] = {PROBLEM_TYPE_PREFIX "method-not-allowed", 405,
                                    "Method Not Allowed", "Method not allowed"},
    [PROBLEM_MISSING_TOKEN] = {PROBLEM_TYPE_PREFIX "missing-token", 401, "Unauthorized",
                               "Bearer token required"},
    [PROBLEM_INVALID_TOKEN] = {PROBLEM_TYPE_PREFIX "invalid-token", 401, "Unauthorized",
                               "Missing or invalid bearer token"},
    [PROBLEM_INSUFFICIENT_SCOPE] = {PROBLEM_TYPE_PREFIX "insufficient-scope", 403, "Forbidden",
                                    "Token does not grant this queue"},
    [PROBLEM_UNKNOWN_QUEUE] = {PROBLEM_TYPE_PREFIX "unknown-queue", 404, "Not Found",
                               "Unknown queue"},
    [PROBLEM_PAYLOAD_TOO_LARGE] = {PROBLEM_TYPE_PREFIX "payload-too-large", 413,
                                   "Payload Too Large", "Request body too large"},
    [PROBLEM_JOB_TOO_LARGE] = {PROBLEM_TYPE_PREFIX "job-too-large", 413, "Payload Too Large",
                               "Job too large"},
    [PROBLEM_TOO_MANY_JOBS] = {PROBLEM_TYPE_PREFIX "too-many-jobs", 413, "Payload Too Large",
                               "Too many jobs in one request"},
    [PROBLEM_HEADERS_TOO_LARGE] = {PROBLEM_TYPE_PREFIX "headers-too-large", 431,
                                   "Request Header Fields Too Large", "Request headers too large"},
    [PROBLEM_UNSUPPORTED_MEDIA_TYPE] = {PROBLEM_TYPE_PREFIX "unsupported-media-type", 415,
                                        "Unsupported Media Type",
                                        "Content-Type must be application/json"},
    [PROBLEM_MALFORMED_JSON] = {PROBLEM_TYPE_PREFIX "malformed-json", 400, "Bad Request",
                                "Request body is not strict JSON"},
    [PROBLEM_INVALID_JOB] = {PROBLEM_TYPE_PREFIX "invalid-job", 400, "Bad Request",
                             "Request body is not a job"},
    [PROBLEM_INVALID_ARGUMENTS] = {PROBLEM_TYPE_PREFIX "invalid-arguments", 422,
                                   "Unprocessable Content",
                                   "Job arguments do not match the class's schema"},
    [PROBLEM_UNKNOWN_CLASS] = {PROBLEM_TYPE_PREFIX "unknown-class", 422, "Unprocessable Content",
                               "Class not allowed on this queue"},
    [PROBLEM_INVALID_BATCH] = {PROBLEM_TYPE_PREFIX "invalid-batch", 422, "Unprocessable Content",
                               "Some jobs in the batch are invalid; none was written"},
    [PROBLEM_INVALID_IDEMPOTENCY_KEY] =
        {PROBLEM_TYPE_PREFIX "invalid-idempotency-key", 400, "Bad Request",
         "Idempotency-Key must be 1 to 255 visible ASCII characters"},
    [PROBLEM_IDEMPOTENCY_KEY_REUSED] = {PROBLEM_TYPE_PREFIX "idempotency-key-reused", 422,
                                        "Unprocessable Content",
                                        "Idempotency-Key already used for another request"},
    [PROBLEM_RATE_LIMITED] = {PROBLEM_TYPE_PREFIX "rate-limited", 429, "Too Many Requests",
                              "Tenant's job rate exceeded"},
    [PROBLEM_TOO_MANY_FAILED_TOKENS] = {PROBLEM_TYPE_PREFIX "too-many-failed-tokens", 429,
                                        "Too Many Requests",
                                        "Too many invalid tokens from this address"},
    [PROBLEM_TOO_MANY_RESETS] = {PROBLEM_TYPE_PREFIX "too-many-resets", 429, "Too Many Requests",
                                 "Too many streams reset on this connection"},
    [PROBLEM_QUEUE_FULL] = {PROBLEM_TYPE_PREFIX "queue-full", 503, "Service Unavailable",
                            "Queue is full"},
    [PROBLEM_REDIS_UNAVAILABLE] = {PROBLEM_TYPE_PREFIX "redis-unavailable", 503,
                                   "Service Unavailable", "Job store unavailable"},
    [PROBLEM_DRAINING] = {PROBLEM_TYPE_PREFIX "draining", 503, "Service Unavailable",
                          "Shutting down: finishing requests in flight"},
    [PROBLEM_OVERLOADED] = {PROBLEM_TYPE_PREFIX "overloaded", 503, "Service Unavailable",
                            "Too many writes in flight"},
    [PROBLEM_INTERNAL] = {PROBLEM_TYPE_PREFIX "internal", 500, "Internal Server Error",
                          "The job could not be sealed and signed"},
};

const char *problem_type(enum problem_kind kind)
{
    return problems[kind].type;
}

int problem_status(enum problem_kind kind)
{
    return problems[kind].status;
}

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, strlen(value));
}

/*
 * Headers that RFC 6750 and RFC 9110 ask for alongside some statuses. Allow depends on
 * the route, so the router adds it.
 */
static void add_kind_headers(h2o_req_t *req, enum problem_kind kind)
{
    switch (kind) {
    case PROBLEM_MISSING_TOKEN:
        /* RFC 6750 section 3.1: no error code when the request carried no credentials. */
        add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer realm=\"jobgate\"");
        break;
    case PROBLEM_INVALID_TOKEN:
        add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"");
        break;
    case PROBLEM_INSUFFICIENT_SCOPE:
        add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer error=\"insufficient_scope\"");
        break;
    case PROBLEM_REDIS_UNAVAILABLE:
    case PROBLEM_OVERLOADED:
    case PROBLEM_DRAINING:
        add_header(req, H2O_TOKEN_RETRY_AFTER, "1");
        break;
    case PROBLEM_QUEUE_FULL:
        /* Workers drain a queue at their own pace: give them a moment. */
        add_header(req, H2O_TOKEN_RETRY_AFTER, "5");
        break;
    default:
        break;
    }
}

void problem_send(h2o_req_t *req, enum problem_kind kind, const char *detail)
{
    problem_send_extended(req, kind, detail, NULL);
}

void problem_send_extended(h2o_req_t *req, enum problem_kind kind, const char *detail,
                           const char *members)
{
    const struct problem_info *info = &problems[kind];
    size_t capacity = PROBLEM_MAX_BYTES + (members != NULL ? strlen(members) : 0);
    struct text body;
    const char *json;

    text_init(&body, h2o_mem_alloc_pool(&req->pool, capacity), capacity);
    text_append_str(&body, "{\"type\":");
    text_append_json_string(&body, info->type, strlen(info->type));
    text_append_str(&body, ",\"title\":");
    text_append_json_string(&body, info->title, strlen(info->title));
    text_append_str(&body, ",\"status\":");
    text_append_uint(&body, (uint64_t)info->status);
    if (detail != NULL) {
        text_append_str(&body, ",\"detail\":");
        text_append_json_string(&body, detail, strlen(detail));
    }
    if (members != NULL) {
        text_append_str(&body, ",");
        text_append_str(&body, members);
    }
    text_append_str(&body, "}");
    json = text_finish(&body);
    if (json == NULL)
        json = "{}";

    add_kind_headers(req, kind);
    respond(req, info->status, info->reason, "application/problem+json", json, strlen(json));
}

void respond(h2o_req_t *req, int status, const char *reason, const char *content_type,
             const char *body, size_t len)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t buf = h2o_strdup(&req->pool, body, len);

    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                   strlen(content_type));
    h2o_start_response(req, &generator);
    /* h2o's HTTP/1 writer would send a HEAD answer's body as the next response's start. */
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}
