/*
 * envelope: the payload written to Redis for one job, and the job's id.
 *
 * The payload is what Resque itself writes, {"class": ..., "args": [...]}, so stock
 * Resque and node-resque workers run it; the producer's arguments go into "args"
 * unchanged.
 */
#ifndef JOBGATE_ENVELOPE_H
#define JOBGATE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"

#define ENVELOPE_JOB_ID_LEN 36
#define ENVELOPE_MAX_BYTES ((size_t)1 << 30)

/* Fills id with a new UUIDv7 (time-ordered, RFC 9562) and a terminating NUL. */
void envelope_new_job_id(char id[ENVELOPE_JOB_ID_LEN + 1]);

/*
 * Returns the Resque payload for job as a malloc'd string and sets *len, or NULL
 * when out of memory. The caller frees it. Reals are written in their shortest exact
 * form (serialize.h), so 19.99 stays 19.99.
 */
char *envelope_build(const struct job *job, size_t *len);

#endif
