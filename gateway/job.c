/*
 * job: strict parsing of a submitted job; see job.h.
 */
#include "job.h"

#include <string.h>

const char *job_json_error(const json_error_t *error)
{
    switch (json_error_code(error)) {
    case json_error_duplicate_key:
        return "duplicate object key";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return "NUL character in a string";
    case json_error_numeric_overflow:
        return "number out of range";
    case json_error_stack_overflow:
        return "nesting too deep";
    case json_error_premature_end_of_input:
        return "unexpected end of input";
    case json_error_end_of_input_expected:
        return "data after the JSON value";
    default:
        return "invalid JSON syntax";
    }
}

/* Parses body as any JSON value, so that a scalar body is told apart from broken JSON. */
static json_t *parse_strict(const char *body, size_t len, const char **detail)
{
    json_error_t error;
    json_t *root;

    if (body == NULL || len == 0) {
        *detail = "request body is empty";
        return NULL;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    if (root == NULL)
        *detail = job_json_error(&error);
    return root;
}

enum job_status job_read(json_t *value, size_t source_len, struct job *job, const char **detail)
{
    json_t *class_value;
    const char *key;
    json_t *member;

    memset(job, 0, sizeof(*job));
    *detail = NULL;
    if (!json_is_object(value)) {
        *detail = "a job is a JSON object with \"class\" and \"args\"";
        return JOB_INVALID;
    }
    json_object_foreach(value, key, member)
    {
        if (strcmp(key, "class") != 0 && strcmp(key, "args") != 0)
            *detail = "a job has only the members \"class\" and \"args\"";
    }
    class_value = json_object_get(value, "class");
    if (!json_is_string(class_value))
        *detail = "\"class\" must be a string";
    else if (!json_is_array(json_object_get(value, "args")))
        *detail = "\"args\" must be an array";
    if (*detail != NULL)
        return JOB_INVALID;

    job->root = json_incref(value);
    job->args = json_object_get(value, "args");
    job->class_name = json_string_value(class_value);
    job->class_len = json_string_length(class_value);
    job->source_len = source_len;
    return JOB_OK;
}

enum job_status job_parse(const char *body, size_t len, struct job *job, const char **detail)
{
    json_t *root = parse_strict(body, len, detail);
    enum job_status status;

    memset(job, 0, sizeof(*job));
    if (root == NULL)
        return len == 0 ? JOB_INVALID : JOB_MALFORMED_JSON;
    status = job_read(root, len, job, detail);
    json_decref(root);
    return status;
}

enum job_status job_parse_batch(const char *body, size_t len, json_t **jobs, const char **detail)
{
    json_t *root = parse_strict(body, len, detail);
    json_t *array;

    *jobs = NULL;
    if (root == NULL)
        return len == 0 ? JOB_INVALID : JOB_MALFORMED_JSON;
    array = json_object_get(root, "jobs");
    if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_array(array))
        *detail = "a batch is a JSON object with one member, \"jobs\", an array of jobs";
    else if (json_array_size(array) == 0)
        *detail = "a batch holds at least one job";
    else
        *jobs = json_incref(array);
    json_decref(root);
    return *jobs != NULL ? JOB_OK : JOB_INVALID;
}

void job_release(struct job *job)
{
    json_decref(job->root);
    memset(job, 0, sizeof(*job));
}
