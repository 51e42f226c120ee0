/*
 * log: one JSON line per event on standard error.
 *
 * Lines are levelled and written whole with a single write(2), so lines from several
 * threads never interleave. A thread that serves requests may buffer its lines and
 * write them in one go once per loop turn (log_buffer_start, log_flush), which spares a
 * system call per request. Nothing here ever receives job arguments, tokens or secrets:
 * callers pass only names, ids and numbers.
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
    size_t jobs;  /* a batch's job count; 0 for a single job */
    int replayed; /* answered from an earlier request with the same Idempotency-Key */
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

/*
 * From now on this thread's lines wait in a buffer until log_flush, or until the buffer
 * is full. Returns 0, or -1 when out of memory (lines are then written at once).
 */
int log_buffer_start(void);

/* Writes what this thread's buffer holds. */
void log_flush(void);

/* Flushes and frees this thread's buffer; lines are written at once again. */
void log_buffer_stop(void);

#endif
