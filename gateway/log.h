/*
 * log: one JSON line per event on standard error.
 *
 * Lines are levelled and written with a single write(2), so lines from several
 * threads never interleave. Nothing here ever receives job arguments, tokens or
 * secrets: callers pass only names, ids and numbers.
 */
#ifndef JOBGATE_LOG_H
#define JOBGATE_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* The audit line written once per request. Strings may be NULL when not known. */
struct log_request {
    const char *method;
    const char *path;
    size_t path_len;
    const char *protocol;
    const char *tenant;
    const char *subject;
    const char *queue;
    size_t queue_len;
    const char *class_name;
    size_t class_len;
    const char *job_id;
    int status;
    const char *problem; /* problem type for rejections */
    size_t bytes;        /* request body size */
    uint64_t latency_us;
};

/* Lines below this level are dropped. */
void log_set_level(enum log_level level);

void log_message(enum log_level level, const char *event, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

void log_request(const struct log_request *entry);

#endif
