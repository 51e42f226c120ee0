/*
 * Unit tests for job: strict parsing of one job and of a batch of jobs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "job.h"

#define PARSE(literal, job, detail) job_parse(literal, sizeof(literal) - 1, job, detail)
#define PARSE_BATCH(literal, jobs, detail)                                                         \
    job_parse_batch(literal, sizeof(literal) - 1, jobs, detail)

static void test_single_job(void **state)
{
    struct job job;
    const char *detail;

    (void)state;
    assert_int_equal(PARSE("{\"class\":\"SendInvoice\",\"args\":[1,\"a\"]}", &job, &detail),
                     JOB_OK);
    assert_int_equal(job.class_len, 11);
    assert_memory_equal(job.class_name, "SendInvoice", 11);
    assert_int_equal(json_array_size(job.args), 2);
    job_release(&job);
}

static void test_single_job_refusals(void **state)
{
    struct job job;
    const char *detail;

    (void)state;
    assert_int_equal(PARSE("{\"class\":\"A\",\"args\":[],\"class\":\"B\"}", &job, &detail),
                     JOB_MALFORMED_JSON);
    assert_string_equal(detail, "duplicate object key");
    assert_int_equal(PARSE("[]", &job, &detail), JOB_INVALID);
    assert_int_equal(PARSE("{\"class\":\"A\",\"args\":{}}", &job, &detail), JOB_INVALID);
    assert_string_equal(detail, "\"args\" must be an array");
    assert_int_equal(PARSE("{\"class\":1,\"args\":[]}", &job, &detail), JOB_INVALID);
    assert_int_equal(PARSE("{\"class\":\"A\",\"args\":[],\"queue\":\"q\"}", &job, &detail),
                     JOB_INVALID);
    assert_null(job.root);
    assert_int_equal(job_parse("", 0, &job, &detail), JOB_INVALID);
    assert_string_equal(detail, "request body is empty");
}

static void test_batch(void **state)
{
    const char *detail;
    json_t *jobs;
    struct job job;

    (void)state;
    assert_int_equal(
        PARSE_BATCH("{\"jobs\":[{\"class\":\"A\",\"args\":[]},{\"class\":\"B\"}]}", &jobs, &detail),
        JOB_OK);
    assert_int_equal(json_array_size(jobs), 2);
    /* Items are checked one by one, after the batch's own shape. */
    assert_int_equal(job_read(json_array_get(jobs, 0), 10, &job, &detail), JOB_OK);
    assert_memory_equal(job.class_name, "A", 1);
    job_release(&job);
    assert_int_equal(job_read(json_array_get(jobs, 1), 10, &job, &detail), JOB_INVALID);
    assert_string_equal(detail, "\"args\" must be an array");
    assert_null(job.root);
    json_decref(jobs);
}

static void test_batch_refusals(void **state)
{
    const char *detail;
    json_t *jobs;

    (void)state;
    assert_int_equal(PARSE_BATCH("{\"jobs\":[]}", &jobs, &detail), JOB_INVALID);
    assert_string_equal(detail, "a batch holds at least one job");
    assert_null(jobs);
    assert_int_equal(PARSE_BATCH("{\"jobs\":{}}", &jobs, &detail), JOB_INVALID);
    assert_int_equal(PARSE_BATCH("{\"jobs\":[],\"extra\":1}", &jobs, &detail), JOB_INVALID);
    assert_int_equal(PARSE_BATCH("[{\"class\":\"A\",\"args\":[]}]", &jobs, &detail), JOB_INVALID);
    assert_int_equal(PARSE_BATCH("{\"jobs\":[1,]}", &jobs, &detail), JOB_MALFORMED_JSON);
    assert_int_equal(PARSE_BATCH("{\"jobs\":[],\"jobs\":[]}", &jobs, &detail), JOB_MALFORMED_JSON);
    assert_null(jobs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_job),
        cmocka_unit_test(test_single_job_refusals),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
