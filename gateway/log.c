/*
 * log: JSON lines on standard error; see log.h.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "text.h"

#define LOG_LINE_MAX 2048
/* A buffer holds whole lines only; PIPE_BUF-sized writes keep a pipe's lines apart. */
#define LOG_BUFFER_BYTES 4096

struct log_buffer {
    size_t len;
    char data[LOG_BUFFER_BYTES];
};

static __thread struct log_buffer *thread_buffer;

static enum log_level minimum_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    minimum_level = level;
}

static void begin_line(struct text *line, enum log_level level, const char *event)
{
    struct timeval now;
    struct tm utc;
    char stamp[32], fraction[4] = {'.'};
    size_t stamp_len;
    int milliseconds;

    gettimeofday(&now, NULL);
    gmtime_r(&now.tv_sec, &utc);
    stamp_len = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);

    text_append_str(line, "{\"time\":\"");
    text_append(line, stamp, stamp_len);
    milliseconds = (int)(now.tv_usec / 1000);
    fraction[1] = (char)('0' + milliseconds / 100);
    fraction[2] = (char)('0' + milliseconds / 10 % 10);
    fraction[3] = (char)('0' + milliseconds % 10);
    text_append(line, fraction, sizeof(fraction));
    text_append_str(line, "Z\",\"level\":\"");
    text_append_str(line, level_names[level]);
    text_append_str(line, "\",\"event\":");
    text_append_json_string(line, event, strlen(event));
}

static void write_out(const char *bytes, size_t len)
{
    if (write(STDERR_FILENO, bytes, len) < 0) {
        /* Nowhere left to report a failure to log. */
    }
}

void log_flush(void)
{
    struct log_buffer *buffer = thread_buffer;

    if (buffer == NULL || buffer->len == 0)
        return;
    write_out(buffer->data, buffer->len);
    buffer->len = 0;
}

int log_buffer_start(void)
{
    if (thread_buffer == NULL)
        thread_buffer = calloc(1, sizeof(*thread_buffer));
    return thread_buffer != NULL ? 0 : -1;
}

void log_buffer_stop(void)
{
    log_flush();
    free(thread_buffer);
    thread_buffer = NULL;
}

static void end_line(struct text *line)
{
    struct log_buffer *buffer = thread_buffer;

    text_append(line, "}\n", 2);
    if (line->overflowed)
        return;
    if (buffer == NULL || line->len > LOG_BUFFER_BYTES) {
        write_out(line->base, line->len);
        return;
    }
    if (line->len > LOG_BUFFER_BYTES - buffer->len)
        log_flush();
    memcpy(buffer->data + buffer->len, line->base, line->len);
    buffer->len += line->len;
}

void log_message(enum log_level level, const char *event, const char *format, ...)
{
    char buffer[LOG_LINE_MAX], message[LOG_LINE_MAX / 2];
    struct text line;
    va_list args;
    int len;

    if (level < minimum_level)
        return;

    va_start(args, format);
    len = vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(message))
        len = sizeof(message) - 1;

    text_init(&line, buffer, sizeof(buffer));
    begin_line(&line, level, event);
    text_append_str(&line, ",\"message\":");
    text_append_json_string(&line, message, (size_t)len);
    end_line(&line);
}

static void append_field(struct text *line, const char *name, const char *value, size_t len)
{
    if (value == NULL)
        return;
    text_append_str(line, ",\"");
    text_append_str(line, name);
    text_append_str(line, "\":");
    text_append_json_string(line, value, len);
}

void log_request(const struct log_request *entry)
{
    char buffer[LOG_LINE_MAX];
    struct text line;

    if (LOG_INFO < minimum_level)
        return;

    text_init(&line, buffer, sizeof(buffer));
    begin_line(&line, entry->status < 500 ? LOG_INFO : LOG_WARN, "request");
    append_field(&line, "method", entry->method, entry->method ? strlen(entry->method) : 0);
    append_field(&line, "path", entry->path, entry->path_len);
    append_field(&line, "protocol", entry->protocol, entry->protocol ? strlen(entry->protocol) : 0);
    append_field(&line, "tenant", entry->tenant, entry->tenant ? strlen(entry->tenant) : 0);
    append_field(&line, "subject", entry->subject, entry->subject ? strlen(entry->subject) : 0);
    append_field(&line, "queue", entry->queue, entry->queue_len);
    append_field(&line, "class", entry->class_name, entry->class_len);
    append_field(&line, "job_id", entry->job_id, entry->job_id ? strlen(entry->job_id) : 0);
    if (entry->jobs > 0) {
        text_append_str(&line, ",\"jobs\":");
        text_append_uint(&line, entry->jobs);
    }
    if (entry->replayed)
        text_append_str(&line, ",\"replayed\":true");
    text_append_str(&line, ",\"status\":");
    text_append_uint(&line, (uint64_t)entry->status);
    append_field(&line, "problem", entry->problem, entry->problem ? strlen(entry->problem) : 0);
    text_append_str(&line, ",\"bytes\":");
    text_append_uint(&line, entry->bytes);
    text_append_str(&line, ",\"latency_us\":");
    text_append_uint(&line, entry->latency_us);
    end_line(&line);
}
