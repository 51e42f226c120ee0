/*
 * job: the job a producer submits, read from the request body with strict JSON.
 *
 * A job body is exactly {"class": "Name", "args": [...]}, and a batch body
 * {"jobs": [job, ...]}. Strict means: duplicate
 * keys, invalid UTF-8, NUL characters and trailing data are refused, and the reason
 * given never quotes the body.
 */
#ifndef JOBGATE_JOB_H
#define JOBGATE_JOB_H

#include <jansson.h>
#include <stddef.h>

enum job_status {
    JOB_OK = 0,
    JOB_MALFORMED_JSON, /* the body is not strict JSON */
    JOB_INVALID,        /* JSON, but not a job object */
};

struct job {
    json_t *root;
    const char *class_name; /* owned by root */
    size_t class_len;
    json_t *args;      /* owned by root */
    size_t source_len; /* bytes of the body it was read from */
};

/*
 * Reads one job from value, a parsed JSON value read from source_len bytes (a size
 * hint). On JOB_OK the job holds a reference to value (release it with job_release);
 * otherwise it is JOB_INVALID with *detail set, and nothing is held.
 */
enum job_status job_read(json_t *value, size_t source_len, struct job *job, const char **detail);

/*
 * Parses a batch body, {"jobs": [job, ...]} with at least one element, which are not
 * checked yet (job_read each). On JOB_OK *jobs is a new reference to the array;
 * otherwise *detail is set and nothing is owned.
 */
enum job_status job_parse_batch(const char *body, size_t len, json_t **jobs, const char **detail);

/*
 * Parses body into job. On JOB_OK the caller owns job->root (release it with
 * job_release); otherwise *detail is set to a fixed sentence and nothing is owned.
 */
enum job_status job_parse(const char *body, size_t len, struct job *job, const char **detail);

void job_release(struct job *job);

/*
 * Why jansson refused some JSON, as a fixed phrase ("duplicate object key"). jansson's
 * own messages quote the input, so they are never shown.
 */
const char *job_json_error(const json_error_t *error);

#endif
