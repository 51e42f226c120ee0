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

enum job_status job_parse(const char *body, size_t len, struct job *job, const char **detail)
{
    json_error_t error;
    json_t *class_value;
    const char *key;
    json_t *value;

    memset(job, 0, sizeof(*job));
    if (body == NULL || len == 0) {
        *detail = "request body is empty";
        return JOB_INVALID;
    }
    /* Any JSON value parses, so that a scalar body is told apart from broken JSON. */
    job->root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    if (job->root == NULL) {
        *detail = job_json_error(&error);
        return JOB_MALFORMED_JSON;
    }

    job->source_len = len;
    *detail = NULL;
    if (!json_is_object(job->root)) {
        *detail = "a job is a JSON object with \"class\" and \"args\"";
    } else {
        json_object_foreach(job->root, key, value)
        {
            if (strcmp(key, "class") != 0 && strcmp(key, "args") != 0)
                *detail = "a job has only the members \"class\" and \"args\"";
        }
        class_value = json_object_get(job->root, "class");
        job->args = json_object_get(job->root, "args");
        if (!json_is_string(class_value))
            *detail = "\"class\" must be a string";
        else if (!json_is_array(job->args))
            *detail = "\"args\" must be an array";
        else {
            job->class_name = json_string_value(class_value);
            job->class_len = json_string_length(class_value);
        }
    }
    if (*detail != NULL) {
        job_release(job);
        return JOB_INVALID;
    }
    return JOB_OK;
}

void job_release(struct job *job)
{
    json_decref(job->root);
    memset(job, 0, sizeof(*job));
}
