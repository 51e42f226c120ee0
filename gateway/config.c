/*
 * config: loads and checks the gateway's one JSON config file.
 *
 * Owns the loaded struct config and everything it points to: strings, tiers, queues,
 * the Redis password read from its file and the keyring built from the key files.
 * Loading never stops at the first problem; each one is reported with the file and
 * the JSON path it concerns, and any problem makes config_load() return NULL, so a
 * config that loads means exactly what it says. Secret values read from files never
 * appear in a message.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "keyfile.h"
#include "policy.h"

#define MIB ((json_int_t)1024 * 1024)

/* Key files and the Redis password file are small; anything larger is a mistake. */
#define SECRET_FILE_MAX_BYTES ((size_t)64 * 1024)

/* A config of a few hundred queues is tens of KiB; a larger file is a wrong file. */
#define CONFIG_FILE_MAX_BYTES ((size_t)1024 * 1024)

/* No timeout in the config has a reason to be longer than an hour. */
#define TIMEOUT_MAX_MS ((json_int_t)60 * 60 * 1000)

#define MAX_THREADS 64
#define MAX_IN_FLIGHT 1000000
#define MAX_TOKEN_CACHE_ENTRIES 1048576
#define MAX_LEEWAY_SECONDS 300
#define MAX_NAMESPACE_BYTES 64
#define MAX_HOST_NAME_BYTES 253
#define MAX_HOST_LABEL_BYTES 63
#define MAX_REDIS_USERNAME_BYTES 128
#define MAX_KID_BYTES 256

/* Names and values quoted in messages are cut to this many bytes. */
#define QUOTE_MAX_INPUT 64
/* Quotes, at most four bytes per escaped input byte, "..." and the NUL. */
#define QUOTE_BUFFER_BYTES (2 + 4 * QUOTE_MAX_INPUT + 3 + 1)

#define JSON_PATH_MAX_BYTES 512
#define REASON_MAX_BYTES 768
#define MESSAGE_MAX_BYTES 2048

#define DEFAULT_MAX_BODY_BYTES MIB
#define DEFAULT_MAX_JOB_BYTES MIB
#define DEFAULT_MAX_BATCH_JOBS 500
#define MAX_BATCH_JOBS 10000
#define DEFAULT_MAX_HEADER_BYTES 8192
/* Above this a rate or a burst is no limit at all, and more likely a typo. */
#define MAX_RATE 1000000000
/* A Redis list of 2^40 jobs would need terabytes: any cap above it is a mistake. */
#define MAX_QUEUE_DEPTH ((json_int_t)1 << 40)
#define DEFAULT_IDEMPOTENCY_WINDOW_SECONDS ((json_int_t)24 * 60 * 60)
#define MAX_IDEMPOTENCY_WINDOW_SECONDS ((json_int_t)30 * 24 * 60 * 60)
#define DEFAULT_EXPIRES_AFTER_SECONDS ((json_int_t)7 * 24 * 60 * 60)
#define MAX_EXPIRES_AFTER_SECONDS ((json_int_t)90 * 24 * 60 * 60)
#define DEFAULT_SEAL_EPOCH_SECONDS 30
#define DEFAULT_JOBS_PER_SIGNATURE 16
#define MAX_SEAL_EPOCH_SECONDS 60
#define DEFAULT_REDIS_HOST "127.0.0.1"
#define DEFAULT_REDIS_NAMESPACE "resque"
#define DEFAULT_TENANT_CLAIM "tenant"
#define ANY_TENANT "*"

/* State of one config_load() call: where problems go and where in the JSON it is. */
struct loader {
    const char *file;
    /* Length of the file's directory prefix, trailing '/' included; 0 when it has none. */
    size_t directory_len;
    config_report_fn report;
    void *report_data;
    size_t problems;
    /* The JSON path of the value being checked, grown and cut back as loading descends. */
    char path[JSON_PATH_MAX_BYTES];
    size_t path_len;
    /* Whether limits.max_body_bytes is usable as the cap for the queues' own limits. */
    int body_limit_valid;
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_printable_ascii(char c)
{
    return c >= 0x20 && c < 0x7f;
}

/*
 * Writes text as a double-quoted string fit for a message and a terminal: printable
 * ASCII as it is, every other byte escaped, and no more than QUOTE_MAX_INPUT bytes of
 * it, followed by "..." when cut. out must hold QUOTE_BUFFER_BYTES. Returns out.
 */
static const char *quote(char out[QUOTE_BUFFER_BYTES], const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t shown = len > QUOTE_MAX_INPUT ? QUOTE_MAX_INPUT : len;
    size_t at = 0;

    out[at++] = '"';
    for (size_t i = 0; i < shown; i++) {
        unsigned char byte = (unsigned char)text[i];
        if (byte == '"' || byte == '\\') {
            out[at++] = '\\';
            out[at++] = (char)byte;
        } else if (is_printable_ascii((char)byte)) {
            out[at++] = (char)byte;
        } else {
            out[at++] = '\\';
            out[at++] = 'x';
            out[at++] = hex[byte >> 4];
            out[at++] = hex[byte & 0xf];
        }
    }
    out[at++] = '"';
    if (shown < len) {
        memcpy(out + at, "...", 3);
        at += 3;
    }
    out[at] = '\0';
    return out;
}

static void path_append(struct loader *loader, const char *text, size_t len)
{
    size_t room = sizeof loader->path - 1 - loader->path_len;
    if (len > room)
        len = room;
    memcpy(loader->path + loader->path_len, text, len);
    loader->path_len += len;
    loader->path[loader->path_len] = '\0';
}

static void path_pop(struct loader *loader, size_t mark)
{
    loader->path_len = mark;
    loader->path[mark] = '\0';
}

/* Keys made only of these read unambiguously after a dot; any other is bracketed. */
static int is_plain_key(const char *key, size_t len)
{
    if (len == 0 || len > QUOTE_MAX_INPUT)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(key[i]) && key[i] != '_' && key[i] != '-')
            return 0;
    }
    return 1;
}

/* Descends into an object member; returns the mark that path_pop() goes back to. */
static size_t path_push_key(struct loader *loader, const char *key)
{
    size_t mark = loader->path_len;
    size_t len = strlen(key);

    if (is_plain_key(key, len)) {
        path_append(loader, ".", 1);
        path_append(loader, key, len);
    } else {
        char quoted[QUOTE_BUFFER_BYTES];
        quote(quoted, key, len);
        path_append(loader, "[", 1);
        path_append(loader, quoted, strlen(quoted));
        path_append(loader, "]", 1);
    }
    return mark;
}

static size_t path_push_index(struct loader *loader, size_t index)
{
    size_t mark = loader->path_len;
    char text[32];
    int len = snprintf(text, sizeof text, "[%zu]", index);

    if (len > 0)
        path_append(loader, text, (size_t)len);
    return mark;
}

static void report_message(struct loader *loader, const char *message)
{
    loader->problems++;
    if (loader->report != NULL)
        loader->report(loader->report_data, message);
}

__attribute__((format(printf, 2, 0))) static void problem_va(struct loader *loader,
                                                             const char *format, va_list args)
{
    char reason[REASON_MAX_BYTES];
    char message[MESSAGE_MAX_BYTES];

    vsnprintf(reason, sizeof reason, format, args);
    snprintf(message, sizeof message, "%s: %s: %s", loader->file, loader->path, reason);
    report_message(loader, message);
}

/* Reports a problem with the value at the current path. */
__attribute__((format(printf, 2, 3))) static void problem(struct loader *loader, const char *format,
                                                          ...)
{
    va_list args;
    va_start(args, format);
    problem_va(loader, format, args);
    va_end(args);
}

/* Reports a problem with the member key of the value at the current path. */
__attribute__((format(printf, 3, 4))) static void problem_at(struct loader *loader, const char *key,
                                                             const char *format, ...)
{
    size_t mark = path_push_key(loader, key);
    va_list args;
    va_start(args, format);
    problem_va(loader, format, args);
    va_end(args);
    path_pop(loader, mark);
}

static const char *type_name(json_type type)
{
    switch (type) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction or an exponent";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown JSON value";
}

/* Checks the type of the value at the current path; reports and returns 0 when wrong. */
static int expect_type(struct loader *loader, const json_t *value, json_type type)
{
    if (json_typeof(value) == type)
        return 1;
    problem(loader, "must be %s, not %s", type_name(type), type_name(json_typeof(value)));
    return 0;
}

/*
 * The member key of object when it has the wanted type. Returns NULL after reporting
 * when it has another type or is missing but required, and NULL quietly when it is
 * missing and optional.
 */
static json_t *member(struct loader *loader, const json_t *object, const char *key, json_type type,
                      int required)
{
    json_t *value = json_object_get(object, key);

    if (value == NULL) {
        if (required)
            problem_at(loader, key, "is required");
        return NULL;
    }
    size_t mark = path_push_key(loader, key);
    int right_type = expect_type(loader, value, type);
    path_pop(loader, mark);
    return right_type ? value : NULL;
}

/* Reports every member of object whose key is not in allowed (a NULL-terminated list). */
static void check_keys(struct loader *loader, json_t *object, const char *const allowed[])
{
    for (void *iter = json_object_iter(object); iter != NULL;
         iter = json_object_iter_next(object, iter)) {
        const char *key = json_object_iter_key(iter);
        size_t i = 0;
        while (allowed[i] != NULL && strcmp(allowed[i], key) != 0)
            i++;
        if (allowed[i] == NULL)
            problem_at(loader, key, "unknown key");
    }
}

/*
 * Reads an optional integer member within [min, max]. Returns 1 and sets *out when it
 * is present and valid, 0 when it is absent, -1 after reporting a problem.
 */
static int read_integer(struct loader *loader, const json_t *object, const char *key,
                        json_int_t min, json_int_t max, json_int_t *out)
{
    if (json_object_get(object, key) == NULL)
        return 0;
    json_t *value = member(loader, object, key, JSON_INTEGER, 0);
    if (value == NULL)
        return -1;

    json_int_t number = json_integer_value(value);
    if (number < min || number > max) {
        problem_at(loader, key, "must be from %lld to %lld, not %lld", (long long)min,
                   (long long)max, (long long)number);
        return -1;
    }
    *out = number;
    return 1;
}

static void read_u64(struct loader *loader, const json_t *object, const char *key, json_int_t min,
                     json_int_t max, uint64_t *out)
{
    json_int_t number;
    if (read_integer(loader, object, key, min, max, &number) == 1)
        *out = (uint64_t)number;
}

static void read_size(struct loader *loader, const json_t *object, const char *key, json_int_t min,
                      json_int_t max, size_t *out)
{
    json_int_t number;
    if (read_integer(loader, object, key, min, max, &number) == 1)
        *out = (size_t)number;
}

/*
 * Reads an optional number member, integer or not, within [0, MAX_RATE]. Returns 1 and
 * sets *out when it is present and valid, 0 when it is absent, -1 after reporting.
 */
static int read_rate_number(struct loader *loader, const json_t *object, const char *key,
                            double *out)
{
    const json_t *value = json_object_get(object, key);
    if (value == NULL)
        return 0;
    if (!json_is_number(value)) {
        problem_at(loader, key, "must be a number, not %s", type_name(json_typeof(value)));
        return -1;
    }

    double number = json_number_value(value);
    if (number < 0 || number > MAX_RATE) {
        if (json_is_integer(value))
            problem_at(loader, key, "must be from 0 to %d, not %lld", MAX_RATE,
                       (long long)json_integer_value(value));
        else
            problem_at(loader, key, "must be from 0 to %d, not %.15g", MAX_RATE, number);
        return -1;
    }
    *out = number;
    return 1;
}

/* One second's worth of a rate, at least 1: the burst when none is given. */
static uint64_t one_second_of(double per_second)
{
    /* ceil() without libm: per_second is at most MAX_RATE, so the cast cannot overflow. */
    uint64_t whole = (uint64_t)per_second;
    if ((double)whole < per_second)
        whole++;
    return whole > 0 ? whole : 1;
}

/*
 * Reads a rate from the members per_second_key (a number from 0, no limit, to MAX_RATE)
 * and "burst" (an integer from 1 to MAX_RATE) of object. A burst left out is one
 * second's worth of the rate given; what the object leaves out entirely keeps *rate's
 * defaults.
 */
static void read_rate_members(struct loader *loader, const json_t *object,
                              const char *per_second_key, struct config_rate *rate)
{
    double per_second;
    if (read_rate_number(loader, object, per_second_key, &per_second) == 1) {
        rate->per_second = per_second;
        rate->burst = one_second_of(per_second);
    }
    read_u64(loader, object, "burst", 1, MAX_RATE, &rate->burst);
}

/* Reads the optional rate object {"per_second", "burst"} at member key into *rate. */
static void read_rate(struct loader *loader, const json_t *object, const char *key,
                      struct config_rate *rate)
{
    static const char *const keys[] = {"per_second", "burst", NULL};

    json_t *rate_object = member(loader, object, key, JSON_OBJECT, 0);
    if (rate_object == NULL)
        return;
    size_t mark = path_push_key(loader, key);
    check_keys(loader, rate_object, keys);
    read_rate_members(loader, rate_object, "per_second", rate);
    path_pop(loader, mark);
}

/*
 * Reads a non-empty string member. Returns the string, owned by the JSON document, or
 * NULL (after reporting, unless it is optional and absent).
 */
static const char *read_string(struct loader *loader, const json_t *object, const char *key,
                               int required)
{
    json_t *value = member(loader, object, key, JSON_STRING, required);
    if (value == NULL)
        return NULL;
    if (json_string_length(value) == 0) {
        problem_at(loader, key, "must not be empty");
        return NULL;
    }
    return json_string_value(value);
}

/* A malloc'd copy of text, or NULL after reporting at the current path. */
static char *copy_string(struct loader *loader, const char *text, size_t len)
{
    char *copy = strndup(text, len);
    if (copy == NULL)
        problem(loader, "out of memory");
    return copy;
}

/* Like read_string(), but a malloc'd copy; *out is left alone when there is nothing. */
static void read_string_copy(struct loader *loader, const json_t *object, const char *key,
                             int required, char **out)
{
    const char *text = read_string(loader, object, key, required);
    if (text != NULL)
        *out = copy_string(loader, text, strlen(text));
}

/* A path from the config resolved against the config file's directory, malloc'd. */
static char *resolve_path(const struct loader *loader, const char *path)
{
    size_t prefix_len = path[0] == '/' ? 0 : loader->directory_len;
    size_t path_len = strlen(path);
    char *resolved = malloc(prefix_len + path_len + 1);

    if (resolved == NULL)
        return NULL;
    memcpy(resolved, loader->file, prefix_len);
    memcpy(resolved + prefix_len, path, path_len + 1);
    return resolved;
}

/*
 * Reads a file path member and resolves it. Returns the malloc'd resolved path, or NULL
 * after reporting (or quietly when optional and absent).
 */
static char *read_file_path(struct loader *loader, const json_t *object, const char *key,
                            int required)
{
    const char *path = read_string(loader, object, key, required);
    if (path == NULL)
        return NULL;
    char *resolved = resolve_path(loader, path);
    if (resolved == NULL)
        problem_at(loader, key, "out of memory");
    return resolved;
}

/*
 * Reads a whole regular file of at most max bytes into a malloc'd buffer with a NUL
 * after the last byte. Returns 0, or -1 with *reason set to a static string (an
 * errno's text or a fixed one). The caller wipes and frees the buffer.
 */
static int read_small_file(const char *path, size_t max, unsigned char **out, size_t *out_len,
                           const char **reason)
{
    /* O_NONBLOCK so that a FIFO named by mistake fails below instead of hanging here. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *reason = strerror(errno);
        return -1;
    }

    struct stat status;
    if (fstat(fd, &status) != 0) {
        *reason = strerror(errno);
        close(fd);
        return -1;
    }
    if (!S_ISREG(status.st_mode)) {
        *reason = "not a regular file";
        close(fd);
        return -1;
    }
    if (status.st_size < 0 || (unsigned long long)status.st_size > max) {
        *reason = "file too large";
        close(fd);
        return -1;
    }

    size_t size = (size_t)status.st_size;
    unsigned char *buffer = malloc(size + 1);
    if (buffer == NULL) {
        *reason = "out of memory";
        close(fd);
        return -1;
    }

    /* A file that shrinks while read is taken as it was at its end. */
    size_t filled = 0;
    while (filled < size) {
        ssize_t got = read(fd, buffer + filled, size - filled);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *reason = strerror(errno);
            explicit_bzero(buffer, filled);
            free(buffer);
            close(fd);
            return -1;
        }
        if (got == 0)
            break;
        filled += (size_t)got;
    }
    close(fd);
    buffer[filled] = '\0';
    *out = buffer;
    *out_len = filled;
    return 0;
}

static void wipe_and_free(void *buffer, size_t len)
{
    if (buffer == NULL)
        return;
    explicit_bzero(buffer, len);
    free(buffer);
}

/* Reports, at member key, when the resolved path cannot be opened for reading. */
/* Whether path can be opened for reading; reports the problem at key when not. */
static int check_readable(struct loader *loader, const char *key, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        problem_at(loader, key, "cannot read %s: %s", path, strerror(errno));
        return 0;
    }
    close(fd);
    return 1;
}

/* Whether host (not NUL-terminated) is an address of family, AF_INET or AF_INET6. */
static int valid_ip_address(int family, const char *host, size_t len)
{
    char text[INET6_ADDRSTRLEN];
    unsigned char address[sizeof(struct in6_addr)];

    if (len >= sizeof text)
        return 0;
    memcpy(text, host, len);
    text[len] = '\0';
    return inet_pton(family, text, address) == 1;
}

/*
 * A DNS name: dot-separated labels of letters, digits and inner hyphens, each at most
 * 63 bytes. The last label may not be all digits, so a mistyped IPv4 address such as
 * "10.0.0.300" is not taken for a name.
 */
static int valid_host_name(const char *name, size_t len)
{
    if (len == 0 || len > MAX_HOST_NAME_BYTES)
        return 0;

    size_t label_len = 0;
    int label_numeric = 1;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c == '.') {
            if (label_len == 0 || name[i - 1] == '-')
                return 0;
            label_len = 0;
            label_numeric = 1;
            continue;
        }
        if (!is_alnum(c) && c != '-')
            return 0;
        if (c == '-' && label_len == 0)
            return 0;
        if (!is_digit(c))
            label_numeric = 0;
        if (++label_len > MAX_HOST_LABEL_BYTES)
            return 0;
    }
    return label_len > 0 && name[len - 1] != '-' && !label_numeric;
}

/* Port digits, not NUL-terminated: 1 to 65535. Returns 0 when invalid. */
static uint16_t parse_port(const char *text, size_t len)
{
    if (len == 0 || len > 5)
        return 0;
    unsigned long port = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(text[i]))
            return 0;
        port = port * 10 + (unsigned long)(text[i] - '0');
    }
    return port <= 65535 ? (uint16_t)port : 0;
}

/*
 * Parses the "HOST:PORT" string member key into listener: host an IPv4 address, an
 * IPv6 address in brackets or a name; port 1 to 65535. The host is stored without
 * brackets, as getaddrinfo() takes it.
 */
static void read_address(struct loader *loader, const json_t *object, const char *key,
                         struct config_listener *listener)
{
    const char *text = read_string(loader, object, key, 1);
    if (text == NULL)
        return;

    size_t mark = path_push_key(loader, key);
    const char *host = text;
    size_t host_len;
    const char *port_text;
    int host_valid;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':') {
            problem(loader, "must be HOST:PORT, with an IPv6 host in brackets");
            path_pop(loader, mark);
            return;
        }
        host = text + 1;
        host_len = (size_t)(close - host);
        port_text = close + 2;
        host_valid = valid_ip_address(AF_INET6, host, host_len);
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL) {
            problem(loader, "must be HOST:PORT, with an IPv6 host in brackets");
            path_pop(loader, mark);
            return;
        }
        host_len = (size_t)(colon - text);
        port_text = colon + 1;
        host_valid = valid_ip_address(AF_INET, host, host_len) || valid_host_name(host, host_len);
    }

    uint16_t port = parse_port(port_text, strlen(port_text));
    if (!host_valid) {
        char quoted[QUOTE_BUFFER_BYTES];
        problem(loader, "%s is not an IP address or a host name", quote(quoted, host, host_len));
    }
    if (port == 0)
        problem(loader, "port must be from 1 to 65535");
    path_pop(loader, mark);

    if (host_valid && port != 0) {
        listener->host = copy_string(loader, host, host_len);
        listener->port = port;
    }
}

static unsigned default_threads(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        return 1;
    return online > MAX_THREADS ? MAX_THREADS : (unsigned)online;
}

static void set_defaults(struct config *config)
{
    config->threads = default_threads();

    config->limits.max_body_bytes = (size_t)DEFAULT_MAX_BODY_BYTES;
    config->limits.max_job_bytes = (size_t)DEFAULT_MAX_JOB_BYTES;
    config->limits.max_batch_jobs = DEFAULT_MAX_BATCH_JOBS;
    config->limits.max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
    config->limits.connection_resets = (struct config_rate){.per_second = 10, .burst = 100};
    config->limits.address_failed_tokens = (struct config_rate){.per_second = 10, .burst = 50};
    config->limits.request_timeout_ms = 10000;
    config->limits.idle_timeout_ms = 30000;
    config->limits.handshake_timeout_ms = 5000;

    config->redis.port = 6379;
    config->redis.connect_timeout_ms = 1000;
    config->redis.command_timeout_ms = 1000;
    config->redis.reconnect_min_ms = 50;
    config->redis.reconnect_max_ms = 2000;
    config->redis.max_in_flight = 10000;

    config->auth.leeway_seconds = 30;
    config->auth.token_cache_entries = 4096;

    config->idempotency.window_seconds = DEFAULT_IDEMPOTENCY_WINDOW_SECONDS;
}

/* The string defaults are filled in last, only where the config named nothing. */
static void set_string_default(struct loader *loader, char **field, const char *value)
{
    if (*field == NULL)
        *field = copy_string(loader, value, strlen(value));
}

static void load_threads(struct loader *loader, const json_t *root, struct config *config)
{
    json_int_t threads;
    if (read_integer(loader, root, "threads", 1, MAX_THREADS, &threads) == 1)
        config->threads = (unsigned)threads;
}

static void load_limits(struct loader *loader, const json_t *root, struct config *config)
{
    static const char *const keys[] = {"max_body_bytes",        "max_job_bytes",
                                       "max_batch_jobs",        "max_header_bytes",
                                       "request_timeout_ms",    "idle_timeout_ms",
                                       "handshake_timeout_ms",  "connection_resets",
                                       "address_failed_tokens", NULL};
    struct config_limits *limits = &config->limits;

    loader->body_limit_valid = 1;
    json_t *object = member(loader, root, "limits", JSON_OBJECT, 0);
    if (object == NULL) {
        loader->body_limit_valid = json_object_get(root, "limits") == NULL;
        return;
    }

    size_t mark = path_push_key(loader, "limits");
    check_keys(loader, object, keys);
    json_int_t body;
    int body_read = read_integer(loader, object, "max_body_bytes", 1, 64 * MIB, &body);
    if (body_read == 1)
        limits->max_body_bytes = (size_t)body;
    loader->body_limit_valid = body_read >= 0;
    read_size(loader, object, "max_job_bytes", 256, 64 * MIB, &limits->max_job_bytes);
    read_size(loader, object, "max_batch_jobs", 1, MAX_BATCH_JOBS, &limits->max_batch_jobs);
    read_size(loader, object, "max_header_bytes", 1024, 65536, &limits->max_header_bytes);
    read_u64(loader, object, "request_timeout_ms", 1, TIMEOUT_MAX_MS, &limits->request_timeout_ms);
    read_u64(loader, object, "idle_timeout_ms", 1, TIMEOUT_MAX_MS, &limits->idle_timeout_ms);
    read_u64(loader, object, "handshake_timeout_ms", 1, TIMEOUT_MAX_MS,
             &limits->handshake_timeout_ms);
    read_rate(loader, object, "connection_resets", &limits->connection_resets);
    read_rate(loader, object, "address_failed_tokens", &limits->address_failed_tokens);
    path_pop(loader, mark);
}

static void load_tls_listener(struct loader *loader, const json_t *listen, struct config *config)
{
    static const char *const keys[] = {"address", "certificate_file", "key_file", NULL};
    struct config_tls_listener *tls = &config->tls;

    json_t *object = member(loader, listen, "tls", JSON_OBJECT, 0);
    if (object == NULL)
        return;

    size_t mark = path_push_key(loader, "tls");
    check_keys(loader, object, keys);
    read_address(loader, object, "address", &tls->address);
    tls->certificate_file = read_file_path(loader, object, "certificate_file", 1);
    if (tls->certificate_file != NULL)
        check_readable(loader, "certificate_file", tls->certificate_file);
    tls->key_file = read_file_path(loader, object, "key_file", 1);
    if (tls->key_file != NULL)
        check_readable(loader, "key_file", tls->key_file);
    path_pop(loader, mark);
}

static void load_listen(struct loader *loader, const json_t *root, struct config *config)
{
    static const char *const keys[] = {"cleartext", "tls", NULL};

    json_t *object = member(loader, root, "listen", JSON_OBJECT, 1);
    if (object == NULL)
        return;

    size_t mark = path_push_key(loader, "listen");
    check_keys(loader, object, keys);
    if (json_object_get(object, "cleartext") == NULL && json_object_get(object, "tls") == NULL)
        problem(loader, "needs cleartext, tls or both");
    if (json_object_get(object, "cleartext") != NULL)
        read_address(loader, object, "cleartext", &config->cleartext);
    load_tls_listener(loader, object, config);
    path_pop(loader, mark);
}

static int valid_namespace(const char *name, size_t len)
{
    if (len == 0 || len > MAX_NAMESPACE_BYTES)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!is_alnum(c) && c != '_' && c != ':' && c != '.' && c != '-')
            return 0;
    }
    return 1;
}

/* Redis ACL user names may not hold spaces; control bytes would garble the logs. */
static int valid_redis_username(const char *name, size_t len)
{
    if (len == 0 || len > MAX_REDIS_USERNAME_BYTES)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_printable_ascii(name[i]) || name[i] == ' ')
            return 0;
    }
    return 1;
}

/*
 * Reads password_file into redis->password. One trailing newline ("\n" or "\r\n") is
 * dropped, as editors and `echo` add one; anything else in the file is the password.
 */
static void load_redis_password(struct loader *loader, const json_t *object,
                                struct config_redis *redis)
{
    char *path = read_file_path(loader, object, "password_file", 0);
    if (path == NULL)
        return;

    unsigned char *content = NULL;
    size_t content_len = 0;
    const char *reason;
    if (read_small_file(path, SECRET_FILE_MAX_BYTES, &content, &content_len, &reason) != 0) {
        problem_at(loader, "password_file", "cannot read %s: %s", path, reason);
        free(path);
        return;
    }
    free(path);

    size_t password_len = content_len;
    if (password_len > 0 && content[password_len - 1] == '\n')
        password_len--;
    if (password_len > 0 && content[password_len - 1] == '\r')
        password_len--;

    if (password_len == 0)
        problem_at(loader, "password_file", "the password file is empty");
    else if (memchr(content, '\0', password_len) != NULL)
        problem_at(loader, "password_file", "the password contains a NUL byte");
    else
        redis->password = copy_string(loader, (char *)content, password_len);
    wipe_and_free(content, content_len);
}

static void load_redis(struct loader *loader, const json_t *root, struct config *config)
{
    static const char *const keys[] = {"host",
                                       "port",
                                       "username",
                                       "password_file",
                                       "namespace",
                                       "connect_timeout_ms",
                                       "command_timeout_ms",
                                       "reconnect_min_ms",
                                       "reconnect_max_ms",
                                       "max_in_flight",
                                       NULL};
    struct config_redis *redis = &config->redis;
    char quoted[QUOTE_BUFFER_BYTES];

    json_t *object = member(loader, root, "redis", JSON_OBJECT, 0);
    if (object == NULL)
        return;

    size_t mark = path_push_key(loader, "redis");
    check_keys(loader, object, keys);

    const char *host = read_string(loader, object, "host", 0);
    if (host != NULL) {
        size_t len = strlen(host);
        if (valid_ip_address(AF_INET, host, len) || valid_ip_address(AF_INET6, host, len) ||
            valid_host_name(host, len))
            redis->host = copy_string(loader, host, len);
        else
            problem_at(loader, "host", "%s is not an IP address or a host name",
                       quote(quoted, host, len));
    }

    json_int_t port;
    if (read_integer(loader, object, "port", 1, 65535, &port) == 1)
        redis->port = (uint16_t)port;

    const char *username = read_string(loader, object, "username", 0);
    if (username != NULL) {
        size_t len = strlen(username);
        if (valid_redis_username(username, len))
            redis->username = copy_string(loader, username, len);
        else
            problem_at(loader, "username",
                       "%s is not a valid user name (1 to 128 printable ASCII bytes, no spaces)",
                       quote(quoted, username, len));
        if (json_object_get(object, "password_file") == NULL)
            problem_at(loader, "username", "a user name needs a password_file too");
    }

    load_redis_password(loader, object, redis);

    const char *namespace_ = read_string(loader, object, "namespace", 0);
    if (namespace_ != NULL) {
        size_t len = strlen(namespace_);
        if (valid_namespace(namespace_, len))
            redis->namespace_ = copy_string(loader, namespace_, len);
        else
            problem_at(loader, "namespace",
                       "%s is not a valid namespace (1 to 64 of A-Z, a-z, 0-9, _, :, . and -)",
                       quote(quoted, namespace_, len));
    }

    read_u64(loader, object, "connect_timeout_ms", 1, TIMEOUT_MAX_MS, &redis->connect_timeout_ms);
    read_u64(loader, object, "command_timeout_ms", 1, TIMEOUT_MAX_MS, &redis->command_timeout_ms);
    read_u64(loader, object, "reconnect_min_ms", 1, TIMEOUT_MAX_MS, &redis->reconnect_min_ms);
    read_u64(loader, object, "reconnect_max_ms", 1, TIMEOUT_MAX_MS, &redis->reconnect_max_ms);
    if (redis->reconnect_max_ms < redis->reconnect_min_ms)
        problem_at(loader, "reconnect_max_ms", "must not be below reconnect_min_ms (%llu)",
                   (unsigned long long)redis->reconnect_min_ms);
    read_size(loader, object, "max_in_flight", 1, MAX_IN_FLIGHT, &redis->max_in_flight);
    path_pop(loader, mark);
}

/* Whether an earlier element of keys has this kid; sets *earlier to its index. */
static int kid_seen(const json_t *keys, size_t before, const char *kid, size_t *earlier)
{
    for (size_t i = 0; i < before; i++) {
        const json_t *other = json_object_get(json_array_get(keys, i), "kid");
        if (json_is_string(other) && strcmp(json_string_value(other), kid) == 0) {
            *earlier = i;
            return 1;
        }
    }
    return 0;
}

/* Reads the key file at the resolved path for member "file"; returns -1 after reporting. */
static int read_key_file(struct loader *loader, const char *path, unsigned char **material,
                         size_t *material_len)
{
    const char *reason;
    int result = read_small_file(path, SECRET_FILE_MAX_BYTES, material, material_len, &reason);
    if (result != 0)
        problem_at(loader, "file", "cannot read %s: %s", path, reason);
    else if (*material_len == 0)
        problem_at(loader, "file", "%s is empty", path);
    return result == 0 && *material_len > 0 ? 0 : -1;
}

/*
 * Checks one {kid, alg, file} entry at the current path, adds its key to the keyring
 * and describes it in *key. The resolved file path is kept, not the material: the
 * keyring holds that.
 */
static void load_key(struct loader *loader, const json_t *keys, size_t index,
                     struct auth_keyring *keyring, struct config_key *key)
{
    static const char *const entry_keys[] = {"kid", "alg", "file", NULL};
    const json_t *entry = json_array_get(keys, index);

    if (!expect_type(loader, entry, JSON_OBJECT))
        return;
    check_keys(loader, (json_t *)entry, entry_keys);

    int usable = 1;
    const char *kid = read_string(loader, entry, "kid", 1);
    size_t earlier;
    if (kid != NULL && strlen(kid) > MAX_KID_BYTES) {
        problem_at(loader, "kid", "must be at most %d bytes", MAX_KID_BYTES);
        usable = 0;
    } else if (kid != NULL && kid_seen(keys, index, kid, &earlier)) {
        char quoted[QUOTE_BUFFER_BYTES];
        problem_at(loader, "kid", "duplicate kid %s (also at $.auth.keys[%zu])",
                   quote(quoted, kid, strlen(kid)), earlier);
        usable = 0;
    }
    const char *alg = read_string(loader, entry, "alg", 1);
    if (alg != NULL && !auth_alg_supported(alg)) {
        char quoted[QUOTE_BUFFER_BYTES];
        problem_at(loader, "alg", "unsupported alg %s (use HS256, HS384, HS512, RS256 or ES256)",
                   quote(quoted, alg, strlen(alg)));
        usable = 0;
    }
    if (kid != NULL)
        key->kid = copy_string(loader, kid, strlen(kid));
    if (alg != NULL)
        key->alg = copy_string(loader, alg, strlen(alg));

    unsigned char *material = NULL;
    size_t material_len = 0;
    key->file = read_file_path(loader, entry, "file", 1);
    if (key->file == NULL || read_key_file(loader, key->file, &material, &material_len) != 0)
        usable = 0;

    if (usable && kid != NULL && alg != NULL && keyring != NULL) {
        const char *reason = "rejected";
        if (auth_keyring_add(keyring, kid, alg, material, material_len, &reason) != 0)
            problem(loader, "%s", reason);
    }
    wipe_and_free(material, material_len);
}

static void load_keys(struct loader *loader, const json_t *auth, struct config *config)
{
    json_t *keys = member(loader, auth, "keys", JSON_ARRAY, 1);
    if (keys == NULL)
        return;

    size_t mark = path_push_key(loader, "keys");
    size_t count = json_array_size(keys);
    if (count == 0)
        problem(loader, "must list at least one key");
    config->auth.keys = calloc(count > 0 ? count : 1, sizeof *config->auth.keys);
    if (config->auth.keys == NULL) {
        problem(loader, "out of memory");
        path_pop(loader, mark);
        return;
    }
    config->auth.key_count = count;
    for (size_t i = 0; i < count; i++) {
        size_t entry_mark = path_push_index(loader, i);
        load_key(loader, keys, i, config->auth.keyring, &config->auth.keys[i]);
        path_pop(loader, entry_mark);
    }
    path_pop(loader, mark);
}

static void load_auth(struct loader *loader, const json_t *root, struct config *config)
{
    static const char *const keys[] = {
        "issuer", "audience", "leeway_seconds", "tenant_claim", "token_cache_entries",
        "keys",   NULL};
    struct config_auth *auth = &config->auth;

    json_t *object = member(loader, root, "auth", JSON_OBJECT, 1);
    if (object == NULL)
        return;

    size_t mark = path_push_key(loader, "auth");
    check_keys(loader, object, keys);
    read_string_copy(loader, object, "issuer", 1, &auth->issuer);
    read_string_copy(loader, object, "audience", 1, &auth->audience);
    json_int_t leeway;
    if (read_integer(loader, object, "leeway_seconds", 0, MAX_LEEWAY_SECONDS, &leeway) == 1)
        auth->leeway_seconds = leeway;
    read_string_copy(loader, object, "tenant_claim", 0, &auth->tenant_claim);
    read_size(loader, object, "token_cache_entries", 0, MAX_TOKEN_CACHE_ENTRIES,
              &auth->token_cache_entries);

    auth->keyring = auth_keyring_new();
    if (auth->keyring == NULL)
        problem(loader, "out of memory");
    load_keys(loader, object, config);
    path_pop(loader, mark);
}

/*
 * How to load one of the config's maps of names to objects ($.classes, $.queues,
 * $.tenants): the element type's size, the name check and its explanation, and the
 * loader of one member, called for every member that is an object.
 */
struct named_objects {
    const char *key;
    size_t element_size;
    int (*name_valid)(const char *name, size_t len);
    const char *invalid_name;
    const char *empty; /* the problem when the map is empty, or NULL when it may be */
    int optional;      /* the map may be left out */
    size_t spare;      /* zeroed elements allocated after the map's, for the caller to add */
    void (*load)(struct loader *loader, struct config *config, void *element, const char *name,
                 const json_t *object);
};

/* Loads the map kind->key of root into a new array at *elements; returns its length. */
static size_t load_named_objects(struct loader *loader, const json_t *root,
                                 const struct named_objects *kind, struct config *config,
                                 void **elements)
{
    json_t *object = member(loader, root, kind->key, JSON_OBJECT, !kind->optional);
    size_t loaded = 0;

    *elements = NULL;
    if (object == NULL)
        return 0;
    size_t mark = path_push_key(loader, kind->key);
    size_t count = json_object_size(object);
    if (count == 0 && kind->empty != NULL)
        problem(loader, "%s", kind->empty);
    char *array = calloc(count + kind->spare > 0 ? count + kind->spare : 1, kind->element_size);
    if (array == NULL) {
        problem(loader, "out of memory");
        path_pop(loader, mark);
        return 0;
    }
    for (void *iter = json_object_iter(object); iter != NULL;
         iter = json_object_iter_next(object, iter)) {
        const char *name = json_object_iter_key(iter);
        const json_t *member_object = json_object_iter_value(iter);
        size_t member_mark = path_push_key(loader, name);
        if (!kind->name_valid(name, strlen(name)))
            problem(loader, "%s", kind->invalid_name);
        if (expect_type(loader, member_object, JSON_OBJECT))
            kind->load(loader, config, array + loaded++ * kind->element_size, name, member_object);
        path_pop(loader, member_mark);
    }
    path_pop(loader, mark);
    *elements = array;
    return loaded;
}

/* Reads the key file named by object's "file" member into key. Returns 0, or -1. */
static int read_envelope_key(struct loader *loader, const json_t *object,
                             unsigned char key[KEYFILE_KEY_BYTES])
{
    char *path = read_file_path(loader, object, "file", 1);
    const char *reason;
    int result = -1;

    if (path == NULL)
        return -1;
    if (keyfile_read(path, key, &reason) != 0)
        problem_at(loader, "file", "cannot read %s: %s", path, reason);
    else
        result = 0;
    free(path);
    return result;
}

static int kid_name_valid(const char *kid, size_t len)
{
    return keyfile_kid_valid(kid, len);
}

/*
 * A key file named by keygen for one kid and configured under another would sign every
 * job under a kid whose public key workers hold for a different key: all would be
 * refused. A file named NAME.sign.key must be configured with kid NAME.
 */
static void check_signing_key_name(struct loader *loader, const char *kid, const char *file)
{
    size_t suffix = sizeof(KEYFILE_SIGN_SECRET) - 1, len;
    const char *base;

    if (kid == NULL || file == NULL)
        return;
    base = strrchr(file, '/') != NULL ? strrchr(file, '/') + 1 : file;
    len = strlen(base);
    if (len > suffix && strcmp(base + len - suffix, KEYFILE_SIGN_SECRET) == 0 &&
        (len - suffix != strlen(kid) || strncmp(base, kid, len - suffix) != 0))
        problem_at(loader, "file", "is named for kid \"%.*s\", not \"%s\"", (int)(len - suffix),
                   base, kid);
}

static void load_signing_key(struct loader *loader, const json_t *envelope_object,
                             struct config *config)
{
    static const char *const keys[] = {"kid", "file", NULL};
    struct envelope_signer *signer = &config->envelope.signer;
    unsigned char seed[KEYFILE_KEY_BYTES], public_key[crypto_sign_PUBLICKEYBYTES];

    json_t *object = member(loader, envelope_object, "signing_key", JSON_OBJECT, 1);
    if (object == NULL)
        return;
    size_t mark = path_push_key(loader, "signing_key");
    check_keys(loader, object, keys);
    const char *kid = read_string(loader, object, "kid", 1);
    if (kid != NULL && !keyfile_kid_valid(kid, strlen(kid)))
        problem_at(loader, "kid", "invalid key id (1 to 64 of A-Z, a-z, 0-9, _ and -)");
    else if (kid != NULL)
        memcpy(signer->kid, kid, strlen(kid) + 1);
    if (read_envelope_key(loader, object, seed) == 0) {
        crypto_sign_seed_keypair(public_key, signer->secret_key, seed);
        check_signing_key_name(loader, signer->kid[0] != '\0' ? signer->kid : NULL,
                               json_string_value(json_object_get(object, "file")));
    }
    sodium_memzero(seed, sizeof(seed));
    path_pop(loader, mark);
}

static void load_sealing_key(struct loader *loader, struct config *config, void *element,
                             const char *name, const json_t *object)
{
    static const char *const keys[] = {"file", NULL};
    struct config_sealing_key *key = element;
    unsigned char scalar[crypto_scalarmult_SCALARBYTES], shared[crypto_scalarmult_BYTES];

    (void)config;
    key->kid = copy_string(loader, name, strlen(name));
    check_keys(loader, (json_t *)object, keys);
    if (read_envelope_key(loader, object, key->public_key) != 0)
        return;
    /* A low-order point would make every shared secret zero: nothing could be sealed. */
    randombytes_buf(scalar, sizeof(scalar));
    if (crypto_scalarmult(shared, scalar, key->public_key) != 0)
        problem_at(loader, "file", "is not a usable X25519 public key");
    sodium_memzero(scalar, sizeof(scalar));
    sodium_memzero(shared, sizeof(shared));
}

/* How jobs are signed, how long they live, and the workers' keys secrets are sealed to. */
static void load_envelope(struct loader *loader, const json_t *root, struct config *config)
{
    static const char *const keys[] = {"signing_key",        "expires_after_seconds",
                                       "seal_epoch_seconds", "jobs_per_signature",
                                       "sealing_keys",       NULL};
    static const struct named_objects sealing_keys = {
        .key = "sealing_keys",
        .element_size = sizeof(struct config_sealing_key),
        .name_valid = kid_name_valid,
        .invalid_name = "invalid key id (1 to 64 of A-Z, a-z, 0-9, _ and -)",
        .load = load_sealing_key,
        .optional = 1,
    };
    struct config_envelope *envelope = &config->envelope;
    json_int_t number;
    void *elements;

    envelope->expires_after_seconds = DEFAULT_EXPIRES_AFTER_SECONDS;
    envelope->seal_epoch_ms = (uint64_t)DEFAULT_SEAL_EPOCH_SECONDS * 1000;
    envelope->jobs_per_signature = DEFAULT_JOBS_PER_SIGNATURE;
    json_t *object = member(loader, root, "envelope", JSON_OBJECT, 1);
    if (object == NULL)
        return;

    size_t mark = path_push_key(loader, "envelope");
    check_keys(loader, object, keys);
    load_signing_key(loader, object, config);
    if (read_integer(loader, object, "expires_after_seconds", 60, MAX_EXPIRES_AFTER_SECONDS,
                     &number) == 1)
        envelope->expires_after_seconds = number;
    if (read_integer(loader, object, "seal_epoch_seconds", 1, MAX_SEAL_EPOCH_SECONDS, &number) == 1)
        envelope->seal_epoch_ms = (uint64_t)number * 1000;
    if (read_integer(loader, object, "jobs_per_signature", 1, ENVELOPE_MAX_JOBS_PER_SIGNATURE,
                     &number) == 1)
        envelope->jobs_per_signature = (size_t)number;
    envelope->sealing_key_count =
        load_named_objects(loader, object, &sealing_keys, config, &elements);
    envelope->sealing_keys = elements;
    path_pop(loader, mark);
}

/* The index of the sealing key named by object's "seal_to", -1 when absent or unknown. */
static long read_seal_to(struct loader *loader, const json_t *object, const struct config *config)
{
    const char *name = read_string(loader, object, "seal_to", 0);
    char quoted[QUOTE_BUFFER_BYTES];

    if (name == NULL)
        return -1;
    for (size_t i = 0; i < config->envelope.sealing_key_count; i++) {
        const char *kid = config->envelope.sealing_keys[i].kid;
        /* A key whose name could not be copied was reported already. */
        if (kid != NULL && strcmp(kid, name) == 0)
            return (long)i;
    }
    problem_at(loader, "seal_to", "unknown sealing key %s: add it to $.envelope.sealing_keys",
               quote(quoted, name, strlen(name)));
    return -1;
}

/* The index of the tier with this name, or -1. */
static long find_tier(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->tier_count; i++) {
        if (strcmp(config->tiers[i].name, name) == 0)
            return (long)i;
    }
    return -1;
}

/*
 * Reads the "includes" of tier index into its grants, which at this point hold only
 * the tiers it names directly.
 */
static void load_tier_includes(struct loader *loader, const json_t *tier_object,
                               struct config *config, size_t index)
{
    static const char *const keys[] = {"includes", "seal_to", NULL};
    char quoted[QUOTE_BUFFER_BYTES];

    check_keys(loader, (json_t *)tier_object, keys);
    config->tiers[index].seal_to = read_seal_to(loader, tier_object, config);
    json_t *includes = member(loader, tier_object, "includes", JSON_ARRAY, 0);
    if (includes == NULL)
        return;

    size_t mark = path_push_key(loader, "includes");
    for (size_t i = 0; i < json_array_size(includes); i++) {
        const json_t *item = json_array_get(includes, i);
        size_t item_mark = path_push_index(loader, i);
        if (expect_type(loader, item, JSON_STRING)) {
            const char *name = json_string_value(item);
            long included = find_tier(config, name);
            if (included < 0)
                problem(loader, "unknown tier %s", quote(quoted, name, strlen(name)));
            else if (config->tiers[index].grants & ((uint64_t)1 << included))
                problem(loader, "duplicate tier %s", quote(quoted, name, strlen(name)));
            else
                config->tiers[index].grants |= (uint64_t)1 << included;
        }
        path_pop(loader, item_mark);
    }
    path_pop(loader, mark);
}

/* Turns each tier's directly included tiers into everything it grants, itself included. */
static void close_tier_grants(struct config *config)
{
    for (size_t i = 0; i < config->tier_count; i++)
        config->tiers[i].grants |= (uint64_t)1 << i;

    int changed;
    do {
        changed = 0;
        for (size_t i = 0; i < config->tier_count; i++) {
            uint64_t grants = config->tiers[i].grants;
            for (size_t j = 0; j < config->tier_count; j++) {
                if (grants & ((uint64_t)1 << j))
                    grants |= config->tiers[j].grants;
            }
            if (grants != config->tiers[i].grants) {
                config->tiers[i].grants = grants;
                changed = 1;
            }
        }
    } while (changed);
}

static void load_tiers(struct loader *loader, const json_t *root, struct config *config)
{
    json_t *object = member(loader, root, "tiers", JSON_OBJECT, 1);
    if (object == NULL)
        return;

    size_t mark = path_push_key(loader, "tiers");
    size_t count = json_object_size(object);
    if (count == 0)
        problem(loader, "must name at least one tier");
    if (count > CONFIG_MAX_TIERS) {
        problem(loader, "names %zu tiers; at most %d are allowed", count, CONFIG_MAX_TIERS);
        count = CONFIG_MAX_TIERS;
    }
    config->tiers = calloc(count > 0 ? count : 1, sizeof *config->tiers);
    if (config->tiers == NULL) {
        problem(loader, "out of memory");
        path_pop(loader, mark);
        return;
    }

    /* Every name first, so that includes may name a tier defined further down. A tier
     * with a bad name is kept, so that its queues are not also reported as unknown. */
    void *iter = json_object_iter(object);
    for (; iter != NULL && config->tier_count < count; iter = json_object_iter_next(object, iter)) {
        const char *name = json_object_iter_key(iter);
        size_t name_mark = path_push_key(loader, name);
        if (!policy_tier_name_valid(name, strlen(name)))
            problem(loader, "invalid tier name (1 to 64 of a-z, 0-9, _ and -, starting with a "
                            "letter)");
        expect_type(loader, json_object_iter_value(iter), JSON_OBJECT);
        path_pop(loader, name_mark);

        char *copy = copy_string(loader, name, strlen(name));
        if (copy != NULL) {
            config->tiers[config->tier_count].seal_to = -1;
            config->tiers[config->tier_count++].name = copy;
        }
    }

    for (size_t i = 0; i < config->tier_count; i++) {
        const json_t *tier_object = json_object_get(object, config->tiers[i].name);
        if (!json_is_object(tier_object))
            continue;
        size_t tier_mark = path_push_key(loader, config->tiers[i].name);
        load_tier_includes(loader, tier_object, config, i);
        path_pop(loader, tier_mark);
    }
    close_tier_grants(config);
    path_pop(loader, mark);
}

/* Whether the string elements before index of array include text. */
static int string_seen(const json_t *array, size_t index, const char *text)
{
    for (size_t i = 0; i < index; i++) {
        const json_t *other = json_array_get(array, i);
        if (json_is_string(other) && strcmp(json_string_value(other), text) == 0)
            return 1;
    }
    return 0;
}

/*
 * Reads the member key, a non-empty array of distinct strings, into a malloc'd array of
 * copies. Each string is checked by valid(); what describes the rule for a message.
 * Returns the number read; *out is NULL when there is nothing to read.
 */
static size_t read_name_list(struct loader *loader, const json_t *object, const char *key,
                             int (*valid)(const char *, size_t), const char *what, char ***out)
{
    char quoted[QUOTE_BUFFER_BYTES];
    json_t *array = member(loader, object, key, JSON_ARRAY, 1);
    *out = NULL;
    if (array == NULL)
        return 0;

    size_t mark = path_push_key(loader, key);
    size_t total = json_array_size(array);
    if (total == 0)
        problem(loader, "must not be empty");
    char **names = calloc(total > 0 ? total : 1, sizeof *names);
    if (names == NULL) {
        problem(loader, "out of memory");
        path_pop(loader, mark);
        return 0;
    }

    size_t count = 0;
    for (size_t i = 0; i < total; i++) {
        const json_t *item = json_array_get(array, i);
        size_t item_mark = path_push_index(loader, i);
        if (expect_type(loader, item, JSON_STRING)) {
            const char *name = json_string_value(item);
            size_t len = json_string_length(item);
            if (!valid(name, len))
                problem(loader, "%s is not %s", quote(quoted, name, len), what);
            else if (string_seen(array, i, name))
                problem(loader, "duplicate %s", quote(quoted, name, len));
            else if ((names[count] = strndup(name, len)) == NULL)
                problem(loader, "out of memory");
            else
                count++;
        }
        path_pop(loader, item_mark);
    }
    path_pop(loader, mark);
    *out = names;
    return count;
}

/* Tenant names come from tokens and are compared exactly; "*" is checked separately. */
static int valid_tenant(const char *name, size_t len)
{
    if (len == 0 || len > AUTH_MAX_TENANT_BYTES)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return 0;
    }
    return 1;
}

static void load_queue_tenants(struct loader *loader, const json_t *object,
                               struct config_queue *queue)
{
    const json_t *tenants = json_object_get(object, "tenants");

    /* "*" alone means any tenant; mixed with names it would be ambiguous. */
    if (json_is_array(tenants) && json_array_size(tenants) == 1 &&
        json_is_string(json_array_get(tenants, 0)) &&
        strcmp(json_string_value(json_array_get(tenants, 0)), ANY_TENANT) == 0) {
        queue->any_tenant = 1;
        return;
    }
    for (size_t i = 0; json_is_array(tenants) && i < json_array_size(tenants); i++) {
        const json_t *item = json_array_get(tenants, i);
        if (json_is_string(item) && strcmp(json_string_value(item), ANY_TENANT) == 0) {
            size_t mark = path_push_key(loader, "tenants");
            size_t item_mark = path_push_index(loader, i);
            problem(loader, "\"*\" (any tenant) must be the only entry");
            path_pop(loader, item_mark);
            path_pop(loader, mark);
        }
    }
    queue->tenant_count =
        read_name_list(loader, object, "tenants", valid_tenant,
                       "a tenant (1 to 128 bytes, no control characters)", &queue->tenants);
}

/* A queue's or a tenant's own "max_body_bytes": the global limit is its default and ceiling. */
static void read_body_limit(struct loader *loader, const json_t *object,
                            const struct config *config, size_t *out)
{
    json_int_t body;
    *out = config->limits.max_body_bytes;
    if (read_integer(loader, object, "max_body_bytes", 1, 64 * MIB, &body) != 1)
        return;
    if (loader->body_limit_valid && (size_t)body > config->limits.max_body_bytes)
        problem_at(loader, "max_body_bytes", "%lld is above $.limits.max_body_bytes (%zu)",
                   (long long)body, config->limits.max_body_bytes);
    else
        *out = (size_t)body;
}

static void load_queue(struct loader *loader, const json_t *object, struct config *config,
                       struct config_queue *queue)
{
    static const char *const keys[] = {"tier",      "classes", "tenants", "max_body_bytes",
                                       "max_depth", "seal_to", NULL};

    check_keys(loader, (json_t *)object, keys);
    queue->seal_to = read_seal_to(loader, object, config);
    const char *tier = read_string(loader, object, "tier", 1);
    if (tier != NULL) {
        long index = find_tier(config, tier);
        char quoted[QUOTE_BUFFER_BYTES];
        if (index < 0)
            problem_at(loader, "tier", "unknown tier %s", quote(quoted, tier, strlen(tier)));
        else
            queue->tier = (size_t)index;
        if (index >= 0 && queue->seal_to < 0)
            queue->seal_to = config->tiers[index].seal_to;
    }
    queue->class_count = read_name_list(
        loader, object, "classes", policy_class_name_valid,
        "a class name (a Ruby constant path such as Billing::SendInvoice, at most 128 bytes)",
        &queue->classes);
    load_queue_tenants(loader, object, queue);
    read_body_limit(loader, object, config, &queue->max_body_bytes);
    read_u64(loader, object, "max_depth", 0, MAX_QUEUE_DEPTH, &queue->max_depth);
}

/* Passes on a schema's own load problems, already "FILE: /pointer: reason". */
static void report_schema_problem(void *data, const char *message)
{
    report_message(data, message);
}

static void load_class(struct loader *loader, struct config *config, void *element,
                       const char *name, const json_t *object)
{
    static const char *const keys[] = {"schema", NULL};
    struct config_class *class_ = element;

    (void)config;
    class_->name = copy_string(loader, name, strlen(name));
    check_keys(loader, (json_t *)object, keys);
    class_->schema_file = read_file_path(loader, object, "schema", 1);
    if (class_->schema_file != NULL && check_readable(loader, "schema", class_->schema_file))
        class_->schema = schema_load_file(class_->schema_file, NULL, report_schema_problem, loader);
}

/* Every class a queue may accept, each with its compiled schema. */
static void load_classes(struct loader *loader, const json_t *root, struct config *config)
{
    static const struct named_objects classes = {
        .key = "classes",
        .element_size = sizeof(struct config_class),
        .name_valid = policy_class_name_valid,
        .invalid_name = "invalid class name (a Ruby constant path such as Billing::SendInvoice, "
                        "at most 128 bytes)",
        .load = load_class,
    };
    void *elements;

    config->class_count = load_named_objects(loader, root, &classes, config, &elements);
    config->classes = elements;
}

/*
 * A class a queue names must be one of $.classes, so that it has a schema; one with
 * secret fields needs a workers' key to seal them to.
 */
static void check_queue_classes(struct loader *loader, const struct config *config,
                                const struct config_queue *queue)
{
    char quoted[QUOTE_BUFFER_BYTES];

    for (size_t i = 0; i < queue->class_count; i++) {
        const char *name = queue->classes[i];
        const struct config_class *class_ = config_find_class(config, name, strlen(name));
        if (class_ == NULL)
            problem(loader, "class %s has no schema: add it to $.classes",
                    quote(quoted, name, strlen(name)));
        else if (class_->schema != NULL && schema_has_secrets(class_->schema) && queue->seal_to < 0)
            problem(loader,
                    "class %s has secret fields, but neither the queue nor its tier names a "
                    "key to seal them to (\"seal_to\")",
                    quote(quoted, name, strlen(name)));
    }
}

static void load_queue_member(struct loader *loader, struct config *config, void *element,
                              const char *name, const json_t *object)
{
    struct config_queue *queue = element;

    queue->name = copy_string(loader, name, strlen(name));
    load_queue(loader, object, config, queue);
    size_t classes_mark = path_push_key(loader, "classes");
    check_queue_classes(loader, config, queue);
    path_pop(loader, classes_mark);
}

static void load_queues(struct loader *loader, const json_t *root, struct config *config)
{
    static const struct named_objects queues = {
        .key = "queues",
        .element_size = sizeof(struct config_queue),
        .name_valid = policy_queue_name_valid,
        .invalid_name = "invalid queue name (1 to 64 of a-z, 0-9, _ and -, starting with a "
                        "letter or a digit)",
        .empty = "must name at least one queue",
        .load = load_queue_member,
    };
    void *elements;

    config->queue_count = load_named_objects(loader, root, &queues, config, &elements);
    config->queues = elements;
}

static void load_tenant(struct loader *loader, struct config *config, void *element,
                        const char *name, const json_t *object)
{
    static const char *const keys[] = {"jobs_per_second", "burst", "max_body_bytes", NULL};
    struct config_tenant *tenant = element;

    tenant->name = copy_string(loader, name, strlen(name));
    tenant->jobs = (struct config_rate){.per_second = 0, .burst = 1};
    check_keys(loader, (json_t *)object, keys);
    read_rate_members(loader, object, "jobs_per_second", &tenant->jobs);
    read_body_limit(loader, object, config, &tenant->max_body_bytes);
}

/* Whether stored (NUL-terminated, or NULL when its copy failed) is the len bytes at name. */
static int same_name(const char *stored, const char *name, size_t len)
{
    return stored != NULL && strlen(stored) == len && memcmp(stored, name, len) == 0;
}

/*
 * The tenants the file names, then always the entry "*" for every other tenant: the
 * file's own, moved to the end, or else one with no job rate and the global body limit.
 */
static void load_tenants(struct loader *loader, const json_t *root, struct config *config)
{
    static const struct named_objects tenants = {
        .key = "tenants",
        .element_size = sizeof(struct config_tenant),
        .name_valid = valid_tenant,
        .invalid_name = "invalid tenant name (1 to 128 bytes, no control characters)",
        .optional = 1,
        .spare = 1,
        .load = load_tenant,
    };
    void *elements;

    config->tenant_count = load_named_objects(loader, root, &tenants, config, &elements);
    config->tenants = elements;
    if (config->tenants == NULL)
        config->tenants = calloc(1, sizeof *config->tenants);
    if (config->tenants == NULL) {
        problem(loader, "out of memory");
        return;
    }

    struct config_tenant *list = config->tenants;
    size_t count = config->tenant_count;
    for (size_t i = 0; i < count; i++) {
        if (same_name(list[i].name, ANY_TENANT, 1)) {
            struct config_tenant any = list[i];
            memmove(&list[i], &list[i + 1], (count - i - 1) * sizeof *list);
            list[count - 1] = any;
            return;
        }
    }
    list[count] = (struct config_tenant){
        .name = copy_string(loader, ANY_TENANT, 1),
        .jobs = {.per_second = 0, .burst = 1},
        .max_body_bytes = config->limits.max_body_bytes,
    };
    config->tenant_count = count + 1;
}

static void load_idempotency(struct loader *loader, const json_t *root, struct config *config)
{
    static const char *const keys[] = {"window_seconds", NULL};

    json_t *object = member(loader, root, "idempotency", JSON_OBJECT, 0);
    if (object == NULL)
        return;
    size_t mark = path_push_key(loader, "idempotency");
    check_keys(loader, object, keys);
    read_u64(loader, object, "window_seconds", 60, MAX_IDEMPOTENCY_WINDOW_SECONDS,
             &config->idempotency.window_seconds);
    path_pop(loader, mark);
}

/* The HTTP layer refuses bodies above the largest that any queue or tenant allows. */
static void set_http_body_cap(struct config *config)
{
    size_t cap = 0;

    for (size_t i = 0; i < config->queue_count; i++) {
        if (config->queues[i].max_body_bytes > cap)
            cap = config->queues[i].max_body_bytes;
    }
    for (size_t i = 0; i < config->tenant_count; i++) {
        if (config->tenants[i].max_body_bytes > cap)
            cap = config->tenants[i].max_body_bytes;
    }
    config->limits.http_body_cap = cap;
}

static void set_string_defaults(struct loader *loader, struct config *config)
{
    set_string_default(loader, &config->redis.host, DEFAULT_REDIS_HOST);
    set_string_default(loader, &config->redis.namespace_, DEFAULT_REDIS_NAMESPACE);
    set_string_default(loader, &config->auth.tenant_claim, DEFAULT_TENANT_CLAIM);
}

static void load_root(struct loader *loader, json_t *root, struct config *config)
{
    static const char *const keys[] = {"threads", "listen",   "limits",      "redis",
                                       "auth",    "envelope", "tiers",       "classes",
                                       "queues",  "tenants",  "idempotency", NULL};

    if (!expect_type(loader, root, JSON_OBJECT))
        return;
    check_keys(loader, root, keys);

    /* Limits come before the queues and tenants, whose own body limits may not exceed the
     * global one; sealing keys, tiers and classes come before the tiers and queues that
     * name them. */
    load_threads(loader, root, config);
    load_limits(loader, root, config);
    load_listen(loader, root, config);
    load_redis(loader, root, config);
    load_auth(loader, root, config);
    load_envelope(loader, root, config);
    load_tiers(loader, root, config);
    load_classes(loader, root, config);
    load_queues(loader, root, config);
    load_tenants(loader, root, config);
    load_idempotency(loader, root, config);
    set_http_body_cap(config);
    set_string_defaults(loader, config);
}

/*
 * Reads and parses the file; returns NULL after reporting where it failed. The file is
 * read whole, with a cap, rather than through stdio, so that no failure goes unseen:
 * stdio quietly falls back to unbuffered reads when it cannot allocate.
 */
static json_t *parse_file(struct loader *loader)
{
    unsigned char *text;
    size_t text_len;
    const char *reason;
    if (read_small_file(loader->file, CONFIG_FILE_MAX_BYTES, &text, &text_len, &reason) != 0) {
        char message[MESSAGE_MAX_BYTES];
        snprintf(message, sizeof message, "%s: cannot read: %s", loader->file, reason);
        report_message(loader, message);
        return NULL;
    }

    /* Limitation: jansson 2.14's parser does not survive a failed allocation (an assert
     * in its lexer, a double free in its object parser), so memory exhaustion during a
     * reload can end the process rather than be reported. */
    json_error_t error;
    json_t *root = json_loadb((const char *)text, text_len, JSON_REJECT_DUPLICATES, &error);
    free(text);
    if (root == NULL) {
        char message[MESSAGE_MAX_BYTES];
        snprintf(message, sizeof message, "%s: line %d, column %d: %s", loader->file, error.line,
                 error.column, error.text);
        report_message(loader, message);
    }
    return root;
}

struct config *config_load(const char *path, config_report_fn report, void *report_data)
{
    struct loader loader = {
        .file = path,
        .report = report,
        .report_data = report_data,
        .path = "$",
        .path_len = 1,
        .body_limit_valid = 1,
    };
    const char *slash = strrchr(path, '/');
    loader.directory_len = slash != NULL ? (size_t)(slash - path) + 1 : 0;

    struct config *config = calloc(1, sizeof *config);
    if (config == NULL) {
        problem(&loader, "out of memory");
        return NULL;
    }
    set_defaults(config);
    config->references = 1;
    config->path = strdup(path);
    if (config->path == NULL)
        problem(&loader, "out of memory");

    json_t *root = parse_file(&loader);
    if (root != NULL) {
        load_root(&loader, root, config);
        json_decref(root);
    }

    if (loader.problems > 0) {
        config_free(config);
        return NULL;
    }
    return config;
}

static void free_strings(char **strings, size_t count)
{
    if (strings == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free(strings[i]);
    free(strings);
}

void config_free(struct config *config)
{
    if (config == NULL)
        return;

    free(config->path);
    free(config->cleartext.host);
    free(config->tls.address.host);
    free(config->tls.certificate_file);
    free(config->tls.key_file);

    free(config->redis.host);
    free(config->redis.username);
    if (config->redis.password != NULL)
        wipe_and_free(config->redis.password, strlen(config->redis.password));
    free(config->redis.namespace_);

    free(config->auth.issuer);
    free(config->auth.audience);
    free(config->auth.tenant_claim);
    for (size_t i = 0; i < config->auth.key_count; i++) {
        free(config->auth.keys[i].kid);
        free(config->auth.keys[i].alg);
        free(config->auth.keys[i].file);
    }
    free(config->auth.keys);
    auth_keyring_free(config->auth.keyring);

    sodium_memzero(&config->envelope.signer, sizeof(config->envelope.signer));
    for (size_t i = 0; i < config->envelope.sealing_key_count; i++)
        free(config->envelope.sealing_keys[i].kid);
    free(config->envelope.sealing_keys);

    for (size_t i = 0; i < config->tier_count; i++)
        free(config->tiers[i].name);
    free(config->tiers);

    for (size_t i = 0; i < config->class_count; i++) {
        free(config->classes[i].name);
        free(config->classes[i].schema_file);
        schema_free(config->classes[i].schema);
    }
    free(config->classes);

    for (size_t i = 0; i < config->queue_count; i++) {
        struct config_queue *queue = &config->queues[i];
        free(queue->name);
        free_strings(queue->classes, queue->class_count);
        free_strings(queue->tenants, queue->tenant_count);
    }
    free(config->queues);

    for (size_t i = 0; i < config->tenant_count; i++)
        free(config->tenants[i].name);
    free(config->tenants);
    free(config);
}

/* A linear search: a config names few queues, and a short memcmp per queue is cheap. */
const struct config_queue *config_find_queue(const struct config *config, const char *name,
                                             size_t len)
{
    if (config == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < config->queue_count; i++) {
        if (same_name(config->queues[i].name, name, len))
            return &config->queues[i];
    }
    return NULL;
}

const struct config_class *config_find_class(const struct config *config, const char *name,
                                             size_t len)
{
    if (config == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < config->class_count; i++) {
        if (same_name(config->classes[i].name, name, len))
            return &config->classes[i];
    }
    return NULL;
}

/* The last entry is "*", which every name not found before it falls back to. */
const struct config_tenant *config_find_tenant(const struct config *config, const char *name)
{
    if (config == NULL || config->tenant_count == 0)
        return NULL;
    size_t named = config->tenant_count - 1;
    size_t len = name != NULL ? strlen(name) : 0;
    for (size_t i = 0; name != NULL && i < named; i++) {
        if (same_name(config->tenants[i].name, name, len))
            return &config->tenants[i];
    }
    return &config->tenants[named];
}

void config_retain(const struct config *config)
{
    /* The count is the one member a shared config changes, and it is atomic. */
    atomic_fetch_add(&((struct config *)config)->references, 1);
}

void config_release(const struct config *config)
{
    if (config != NULL && atomic_fetch_sub(&((struct config *)config)->references, 1) == 1)
        config_free((struct config *)config);
}

static int same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int same_listener(const struct config_listener *a, const struct config_listener *b)
{
    return same_text(a->host, b->host) && a->port == b->port;
}

static int same_rate(const struct config_rate *a, const struct config_rate *b)
{
    return a->per_second == b->per_second && a->burst == b->burst;
}

/*
 * Limits need a restart, all but the HTTP body cap, which follows the queues and tenants
 * that a reload may change: the HTTP layer keeps the cap it started with, so a reload may
 * lower the cap but never raise it.
 */
static int limits_reloadable(const struct config_limits *a, const struct config_limits *b)
{
    return a->max_body_bytes == b->max_body_bytes && b->http_body_cap <= a->http_body_cap &&
           a->max_job_bytes == b->max_job_bytes && a->max_batch_jobs == b->max_batch_jobs &&
           a->max_header_bytes == b->max_header_bytes &&
           same_rate(&a->connection_resets, &b->connection_resets) &&
           same_rate(&a->address_failed_tokens, &b->address_failed_tokens) &&
           a->request_timeout_ms == b->request_timeout_ms &&
           a->idle_timeout_ms == b->idle_timeout_ms &&
           a->handshake_timeout_ms == b->handshake_timeout_ms;
}

int config_reloadable(const struct config *current, const struct config *next, const char **reason)
{
    const struct config_redis *a = &current->redis, *b = &next->redis;

    *reason = NULL;
    if (current->threads != next->threads)
        *reason = "threads";
    else if (!same_listener(&current->cleartext, &next->cleartext) ||
             !same_listener(&current->tls.address, &next->tls.address) ||
             !same_text(current->tls.certificate_file, next->tls.certificate_file) ||
             !same_text(current->tls.key_file, next->tls.key_file))
        *reason = "listen";
    else if (!limits_reloadable(&current->limits, &next->limits))
        *reason = "limits";
    else if (!same_text(a->host, b->host) || a->port != b->port ||
             !same_text(a->username, b->username) || !same_text(a->password, b->password) ||
             !same_text(a->namespace_, b->namespace_) ||
             a->connect_timeout_ms != b->connect_timeout_ms ||
             a->command_timeout_ms != b->command_timeout_ms ||
             a->reconnect_min_ms != b->reconnect_min_ms ||
             a->reconnect_max_ms != b->reconnect_max_ms || a->max_in_flight != b->max_in_flight)
        *reason = "redis";
    return *reason == NULL;
}
