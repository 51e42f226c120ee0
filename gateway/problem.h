/*
 * problem: every error answer, as RFC 9457 application/problem+json.
 *
 * Each kind of problem has one stable type URI, status and title. The detail is a
 * fixed sentence chosen by the caller, never text copied from the request, so no
 * error can echo a job argument or a secret back.
 */
#ifndef JOBGATE_PROBLEM_H
#define JOBGATE_PROBLEM_H

#include <h2o.h>

enum problem_kind {
    PROBLEM_NOT_FOUND,               /* 404: no such route */
    PROBLEM_METHOD_NOT_ALLOWED,      /* 405 */
    PROBLEM_MISSING_TOKEN,           /* 401: no bearer credentials at all */
    PROBLEM_INVALID_TOKEN,           /* 401 */
    PROBLEM_INSUFFICIENT_SCOPE,      /* 403 */
    PROBLEM_UNKNOWN_QUEUE,           /* 404 */
    PROBLEM_PAYLOAD_TOO_LARGE,       /* 413 */
    PROBLEM_JOB_TOO_LARGE,           /* 413: one job's envelope over limits.max_job_bytes */
    PROBLEM_TOO_MANY_JOBS,           /* 413: a batch over its limit or the tenant's burst */
    PROBLEM_HEADERS_TOO_LARGE,       /* 431 */
    PROBLEM_UNSUPPORTED_MEDIA_TYPE,  /* 415 */
    PROBLEM_MALFORMED_JSON,          /* 400: not strict JSON */
    PROBLEM_INVALID_JOB,             /* 400: JSON, but not a job object */
    PROBLEM_UNKNOWN_CLASS,           /* 422 */
    PROBLEM_INVALID_ARGUMENTS,       /* 422: args fail the class's schema */
    PROBLEM_INVALID_BATCH,           /* 422: some jobs of a batch failed; none was written */
    PROBLEM_INVALID_IDEMPOTENCY_KEY, /* 400 */
    PROBLEM_IDEMPOTENCY_KEY_REUSED,  /* 422: the key came before with another request */
    PROBLEM_RATE_LIMITED,            /* 429: the tenant's job rate */
    PROBLEM_TOO_MANY_FAILED_TOKENS,  /* 429: this address sent too many bad tokens */
    PROBLEM_TOO_MANY_RESETS,         /* 429: this HTTP/2 connection reset too many streams */
    PROBLEM_QUEUE_FULL,              /* 503: the queue is at its max_depth */
    PROBLEM_REDIS_UNAVAILABLE,       /* 503 */
    PROBLEM_OVERLOADED,              /* 503: too many writes in flight */
    PROBLEM_DRAINING,                /* 503: shutting down (readyz) */
    PROBLEM_INTERNAL,                /* 500: the job could not be sealed or signed */
    PROBLEM_KIND_COUNT
};

/* The stable type URI of a kind, e.g. "urn:jobgate:problem:invalid-token". */
const char *problem_type(enum problem_kind kind);

/* The HTTP status of a kind. */
int problem_status(enum problem_kind kind);

/*
 * Sends the problem as the whole response to req, with the headers its kind calls
 * for (WWW-Authenticate, a fixed Retry-After; the caller adds Allow, and Retry-After where
 * it depends on the request). detail must be a fixed or
 * gateway-made string; it is copied into the request's pool.
 */
void problem_send(h2o_req_t *req, enum problem_kind kind, const char *detail);

/*
 * As problem_send, with members (NULL, or extension members as JSON text without the
 * braces, such as "errors":[...]) added to the problem object. members is copied.
 */
void problem_send_extended(h2o_req_t *req, enum problem_kind kind, const char *detail,
                           const char *members);

/*
 * Sends body (copied into the request's pool) with status and content type, and a
 * content-length, which h2o_send_inline does not set.
 */
void respond(h2o_req_t *req, int status, const char *reason, const char *content_type,
             const char *body, size_t len);

#endif
