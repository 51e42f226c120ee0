/*
 * envelope: the Resque payload and job ids; see envelope.h.
 */
#include "envelope.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serialize.h"
#include "text.h"

void envelope_new_job_id(char id[ENVELOPE_JOB_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char bytes[16];
    struct timespec now;
    uint64_t unix_ms;
    size_t out = 0;

    clock_gettime(CLOCK_REALTIME, &now);
    unix_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;

    /* 48 bits of milliseconds, version 7, 74 random bits, variant 10. */
    randombytes_buf(bytes + 6, sizeof(bytes) - 6);
    for (int i = 0; i < 6; i++)
        bytes[i] = (unsigned char)(unix_ms >> (40 - 8 * i));
    bytes[6] = (unsigned char)(0x70 | (bytes[6] & 0x0f));
    bytes[8] = (unsigned char)(0x80 | (bytes[8] & 0x3f));

    for (size_t i = 0; i < sizeof(bytes); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            id[out++] = '-';
        id[out++] = hex[bytes[i] >> 4];
        id[out++] = hex[bytes[i] & 0xf];
    }
    id[out] = '\0';
}

char *envelope_build(const struct job *job, size_t *len)
{
    /* Reals may print longer than the producer wrote them ("1e20"), so grow if needed. */
    for (size_t capacity = 2 * job->source_len + 256; capacity <= ENVELOPE_MAX_BYTES;
         capacity *= 4) {
        char *buffer = malloc(capacity);
        struct text payload;

        if (buffer == NULL)
            return NULL;
        text_init(&payload, buffer, capacity);
        /* Resque's own key order: class, then args. */
        text_append_str(&payload, "{\"class\":");
        text_append_json_string(&payload, job->class_name, job->class_len);
        text_append_str(&payload, ",\"args\":");
        serialize_json(&payload, job->args, SERIALIZE_PAYLOAD);
        text_append_str(&payload, "}");
        if (text_finish(&payload) != NULL) {
            *len = payload.len;
            return buffer;
        }
        free(buffer);
    }
    return NULL;
}
