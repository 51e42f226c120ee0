/*
 * Unit tests for config: a config that loads means what it says, and every problem in
 * one that does not is reported with the file and the JSON path it concerns.
 *
 * Each test works in its own temporary directory, holding the config file and the key
 * files it names. Configs are built from a valid base document that a test changes in
 * one place, so each test shows the one thing it is about.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define MAX_MESSAGES 64
#define HMAC_SECRET_BYTES 32

#include "failing_allocator.h"

#ifndef SANITIZED
/* jansson's own allocations, which are never failed: see the test for why. */
static void *jansson_malloc(size_t size)
{
    resolve_allocator();
    return next_malloc(size);
}

static void jansson_free(void *block)
{
    if (block != NULL)
        next_free(block);
}
#endif

/*
 * A temporary directory with a valid key file at keys/hs.key, the envelope's signing
 * seed at keys/sign-1.sign.key and two workers' public keys at keys/workers.seal.pub and
 * keys/others.seal.pub.
 */
struct fixture {
    char directory[64];
    char config_path[256];
    char *messages[MAX_MESSAGES];
    size_t message_count;
    unsigned char signing_seed[KEYFILE_KEY_BYTES];
    unsigned char workers_public[KEYFILE_KEY_BYTES];
    unsigned char others_public[KEYFILE_KEY_BYTES];
};

static const char base_config[] =
    "{"
    "  \"threads\": 2,"
    "  \"listen\": {\"cleartext\": \"127.0.0.1:8080\"},"
    "  \"limits\": {\"max_body_bytes\": 1048576},"
    "  \"redis\": {\"host\": \"127.0.0.1\", \"port\": 6379},"
    "  \"auth\": {"
    "    \"issuer\": \"https://auth.example.test\","
    "    \"audience\": \"jobgate\","
    "    \"keys\": [{\"kid\": \"one\", \"alg\": \"HS256\", \"file\": \"keys/hs.key\"}]"
    "  },"
    "  \"envelope\": {"
    "    \"signing_key\": {\"kid\": \"sign-1\", \"file\": \"keys/sign-1.sign.key\"},"
    "    \"sealing_keys\": {"
    "      \"workers\": {\"file\": \"keys/workers.seal.pub\"},"
    "      \"others\": {\"file\": \"keys/others.seal.pub\"}"
    "    }"
    "  },"
    "  \"tiers\": {"
    "    \"critical\": {\"includes\": []},"
    "    \"standard\": {\"includes\": [\"bulk\"]},"
    "    \"bulk\": {}"
    "  },"
    "  \"classes\": {"
    "    \"SendInvoice\": {\"schema\": \"schemas/args.json\"},"
    "    \"SendWelcomeEmail\": {\"schema\": \"schemas/args.json\"},"
    "    \"Mail::SendPasswordReset\": {\"schema\": \"schemas/args.json\"},"
    "    \"BuildReport\": {\"schema\": \"schemas/args.json\"}"
    "  },"
    "  \"queues\": {"
    "    \"invoices\": {\"tier\": \"critical\", \"classes\": [\"SendInvoice\"],"
    "                   \"tenants\": [\"acme\"]},"
    "    \"mailers\": {\"tier\": \"standard\","
    "                  \"classes\": [\"SendWelcomeEmail\", \"Mail::SendPasswordReset\"],"
    "                  \"tenants\": [\"*\"]},"
    "    \"reports\": {\"tier\": \"bulk\", \"classes\": [\"BuildReport\"],"
    "                  \"tenants\": [\"acme\", \"globex\"], \"max_body_bytes\": 65536}"
    "  }"
    "}";

static void capture(void *data, const char *message)
{
    struct fixture *fixture = data;
    assert_true(fixture->message_count < MAX_MESSAGES);

    /* The test's own copy of a message is not one of the allocations under test. */
#ifndef SANITIZED
    int armed = allocator_armed;
    allocator_armed = 0;
#endif
    fixture->messages[fixture->message_count] = strdup(message);
#ifndef SANITIZED
    allocator_armed = armed;
#endif
    assert_non_null(fixture->messages[fixture->message_count]);
    fixture->message_count++;
}

static void write_file(const struct fixture *fixture, const char *relative, const void *content,
                       size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fixture->directory, relative);

    /* Creates the directories below the fixture's, such as run/keys/. */
    for (char *slash = path + strlen(fixture->directory) + 1; (slash = strchr(slash, '/'));
         slash++) {
        *slash = '\0';
        assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
        *slash = '/';
    }

    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(content, 1, len, file), len);
    assert_int_equal(fclose(file), 0);
}

static void write_text(const struct fixture *fixture, const char *relative, const char *text)
{
    write_file(fixture, relative, text, strlen(text));
}

static void write_secret(const struct fixture *fixture, const char *relative)
{
    unsigned char secret[HMAC_SECRET_BYTES];
    assert_int_equal(getrandom(secret, sizeof secret, 0), (ssize_t)sizeof secret);
    write_file(fixture, relative, secret, sizeof secret);
}

/* Writes an envelope key file: the key in base64url on one line, as jobgate keygen does. */
static void write_key(const struct fixture *fixture, const char *relative,
                      const unsigned char key[KEYFILE_KEY_BYTES])
{
    char line[64];
    struct text text;
    text_init(&text, line, sizeof line);
    keyfile_append_base64url(&text, key, KEYFILE_KEY_BYTES);
    text_append_str(&text, "\n");
    assert_non_null(text_finish(&text));
    write_text(fixture, relative, line);
}

/* A fresh workers' key pair, of which the public half is written to relative. */
static void write_sealing_key(const struct fixture *fixture, const char *relative,
                              unsigned char public_key[KEYFILE_KEY_BYTES])
{
    unsigned char secret_key[crypto_box_SECRETKEYBYTES];
    crypto_box_keypair(public_key, secret_key);
    write_key(fixture, relative, public_key);
}

static int setup(void **state)
{
    struct fixture *fixture = calloc(1, sizeof *fixture);
    assert_non_null(fixture);
    snprintf(fixture->directory, sizeof fixture->directory, "/tmp/jobgate-config-XXXXXX");
    assert_non_null(mkdtemp(fixture->directory));
    snprintf(fixture->config_path, sizeof fixture->config_path, "%s/config.json",
             fixture->directory);
    write_secret(fixture, "keys/hs.key");
    randombytes_buf(fixture->signing_seed, sizeof fixture->signing_seed);
    write_key(fixture, "keys/sign-1.sign.key", fixture->signing_seed);
    write_sealing_key(fixture, "keys/workers.seal.pub", fixture->workers_public);
    write_sealing_key(fixture, "keys/others.seal.pub", fixture->others_public);
    write_text(fixture, "schemas/args.json", "{\"type\": \"array\"}");
    *state = fixture;
    return 0;
}

static int remove_entry(const char *path, const struct stat *status, int type, struct FTW *ftw)
{
    (void)status;
    (void)type;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *fixture = *state;
    for (size_t i = 0; i < fixture->message_count; i++)
        free(fixture->messages[i]);
    assert_int_equal(nftw(fixture->directory, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(fixture);
    return 0;
}

static json_t *base_document(void)
{
    json_error_t error;
    json_t *root = json_loads(base_config, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL)
        fail_msg("base config: line %d: %s", error.line, error.text);
    return root;
}

/* The object at a dotted path such as "queues.invoices" in root; "" is root itself. */
static json_t *object_at(json_t *root, const char *dotted)
{
    json_t *object = root;
    const char *at = dotted;
    while (*at != '\0') {
        const char *dot = strchr(at, '.');
        size_t len = dot != NULL ? (size_t)(dot - at) : strlen(at);
        char key[128];
        assert_true(len < sizeof key);
        memcpy(key, at, len);
        key[len] = '\0';
        object = json_object_get(object, key);
        assert_non_null(object);
        at += len;
        if (*at == '.')
            at++;
    }
    return object;
}

/* Sets member key of the object at dotted to value (a JSON text), or removes it (NULL). */
static void set_member(json_t *root, const char *dotted, const char *key, const char *value)
{
    json_t *object = object_at(root, dotted);
    if (value == NULL) {
        assert_int_equal(json_object_del(object, key), 0);
        return;
    }
    json_error_t error;
    json_t *parsed = json_loads(value, JSON_DECODE_ANY, &error);
    if (parsed == NULL)
        fail_msg("test value %s: %s", value, error.text);
    assert_int_equal(json_object_set_new(object, key, parsed), 0);
}

static void write_document(const struct fixture *fixture, json_t *root)
{
    assert_int_equal(json_dump_file(root, fixture->config_path, JSON_INDENT(2)), 0);
    json_decref(root);
}

static struct config *load(struct fixture *fixture)
{
    return config_load(fixture->config_path, capture, fixture);
}

/* Loads a config that must not load, and checks that it reported at least one problem. */
static void load_fails(struct fixture *fixture)
{
    struct config *config = load(fixture);
    assert_null(config);
    assert_true(fixture->message_count > 0);
}

/* Whether exactly "CONFIG_PATH: expected" was reported. */
static int reported(const struct fixture *fixture, const char *expected)
{
    char message[1024];
    snprintf(message, sizeof message, "%s: %s", fixture->config_path, expected);
    for (size_t i = 0; i < fixture->message_count; i++) {
        if (strcmp(fixture->messages[i], message) == 0)
            return 1;
    }
    return 0;
}

/* Forgets the problems reported so far, before a test's next case. */
static void clear_messages(struct fixture *fixture)
{
    for (size_t i = 0; i < fixture->message_count; i++)
        free(fixture->messages[i]);
    fixture->message_count = 0;
}

static void print_messages(const struct fixture *fixture)
{
    for (size_t i = 0; i < fixture->message_count; i++)
        print_message("reported: %s\n", fixture->messages[i]);
}

static void assert_reported(const struct fixture *fixture, const char *expected)
{
    if (!reported(fixture, expected)) {
        print_messages(fixture);
        fail_msg("not reported: %s", expected);
    }
}

/* The one problem reported is expected, and nothing else. */
static void assert_only_problem(const struct fixture *fixture, const char *expected)
{
    assert_reported(fixture, expected);
    if (fixture->message_count != 1) {
        print_messages(fixture);
        fail_msg("%zu problems reported, expected 1", fixture->message_count);
    }
}

/* Writes the base config with one member changed, loads it and expects one problem. */
static void expect_problem(struct fixture *fixture, const char *dotted, const char *key,
                           const char *value, const char *expected)
{
    json_t *root = base_document();
    set_member(root, dotted, key, value);
    write_document(fixture, root);
    load_fails(fixture);
    assert_only_problem(fixture, expected);
}

/* Writes root, loads it and expects it to load without a problem. */
static struct config *load_document(struct fixture *fixture, json_t *root)
{
    write_document(fixture, root);
    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    assert_int_equal(fixture->message_count, 0);
    return config;
}

static void assert_rate(const struct config_rate *rate, double per_second, uint64_t burst)
{
    if (rate->per_second != per_second || rate->burst != burst)
        fail_msg("rate {%g, %llu}, expected {%g, %llu}", rate->per_second,
                 (unsigned long long)rate->burst, per_second, (unsigned long long)burst);
}

static void test_base_config_loads(void **state)
{
    struct fixture *fixture = *state;
    write_document(fixture, base_document());

    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    assert_int_equal(fixture->message_count, 0);

    assert_string_equal(config->path, fixture->config_path);
    assert_int_equal(config->threads, 2);
    assert_string_equal(config->cleartext.host, "127.0.0.1");
    assert_int_equal(config->cleartext.port, 8080);
    assert_null(config->tls.address.host);
    assert_null(config->tls.certificate_file);
    assert_non_null(config->auth.keyring);
    assert_string_equal(config->auth.issuer, "https://auth.example.test");
    assert_string_equal(config->auth.audience, "jobgate");

    assert_int_equal(config->tier_count, 3);
    assert_int_equal(config->queue_count, 3);

    const struct config_queue *invoices = config_find_queue(config, "invoices", 8);
    assert_non_null(invoices);
    assert_string_equal(config->tiers[invoices->tier].name, "critical");
    assert_int_equal(invoices->class_count, 1);
    assert_string_equal(invoices->classes[0], "SendInvoice");
    assert_int_equal(invoices->tenant_count, 1);
    assert_string_equal(invoices->tenants[0], "acme");
    assert_false(invoices->any_tenant);
    assert_int_equal(invoices->max_body_bytes, 1048576);

    const struct config_queue *mailers = config_find_queue(config, "mailers", 7);
    assert_non_null(mailers);
    assert_true(mailers->any_tenant);
    assert_int_equal(mailers->tenant_count, 0);
    assert_int_equal(mailers->class_count, 2);
    assert_string_equal(mailers->classes[1], "Mail::SendPasswordReset");

    const struct config_queue *reports = config_find_queue(config, "reports", 7);
    assert_non_null(reports);
    assert_int_equal(reports->max_body_bytes, 65536);
    assert_int_equal(reports->tenant_count, 2);
    assert_string_equal(reports->tenants[1], "globex");

    config_free(config);
}

static void test_find_queue_takes_a_length(void **state)
{
    struct fixture *fixture = *state;
    write_document(fixture, base_document());
    struct config *config = load(fixture);
    assert_non_null(config);

    /* The name arrives as a slice of the request path, not a C string. */
    const char *request_path = "/v1/queues/invoices/jobs";
    const struct config_queue *queue = config_find_queue(config, request_path + 11, 8);
    assert_non_null(queue);
    assert_string_equal(queue->name, "invoices");

    assert_null(config_find_queue(config, "invoice", 7));
    assert_null(config_find_queue(config, "invoicesx", 9));
    assert_null(config_find_queue(config, "invoices\0", 9));
    assert_null(config_find_queue(config, "", 0));
    assert_null(config_find_queue(config, "unknown", 7));
    config_free(config);
}

static void test_defaults(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "threads", NULL);
    set_member(root, "", "limits", NULL);
    set_member(root, "", "redis", NULL);
    write_document(fixture, root);

    struct config *config = load(fixture);
    assert_non_null(config);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(config->threads, online > 64 ? 64 : online);
    assert_int_equal(config->limits.max_body_bytes, 1024 * 1024);
    assert_int_equal(config->limits.request_timeout_ms, 10000);
    assert_int_equal(config->limits.idle_timeout_ms, 30000);
    assert_int_equal(config->limits.handshake_timeout_ms, 5000);
    assert_string_equal(config->redis.host, "127.0.0.1");
    assert_int_equal(config->redis.port, 6379);
    assert_null(config->redis.username);
    assert_null(config->redis.password);
    assert_string_equal(config->redis.namespace_, "resque");
    assert_int_equal(config->redis.connect_timeout_ms, 1000);
    assert_int_equal(config->redis.command_timeout_ms, 1000);
    assert_int_equal(config->redis.reconnect_min_ms, 50);
    assert_int_equal(config->redis.reconnect_max_ms, 2000);
    assert_int_equal(config->redis.max_in_flight, 10000);
    assert_int_equal(config->auth.leeway_seconds, 30);
    assert_string_equal(config->auth.tenant_claim, "tenant");
    assert_int_equal(config->auth.token_cache_entries, 4096);
    /* A queue without its own limit takes the global one. */
    assert_int_equal(config_find_queue(config, "invoices", 8)->max_body_bytes, 1024 * 1024);

    assert_int_equal(config->limits.max_job_bytes, 1024 * 1024);
    assert_int_equal(config->limits.max_batch_jobs, 500);
    assert_int_equal(config->limits.max_header_bytes, 8192);
    assert_rate(&config->limits.connection_resets, 10, 100);
    assert_rate(&config->limits.address_failed_tokens, 10, 50);
    assert_int_equal(config->limits.http_body_cap, 1024 * 1024);
    assert_int_equal(config->idempotency.window_seconds, 86400);
    assert_int_equal(config_find_queue(config, "invoices", 8)->max_depth, 0);
    /* No tenants: only "*", with no job rate and the global body limit. */
    assert_int_equal(config->tenant_count, 1);
    assert_string_equal(config->tenants[0].name, "*");
    assert_rate(&config->tenants[0].jobs, 0, 1);
    assert_int_equal(config->tenants[0].max_body_bytes, 1024 * 1024);
    config_free(config);
}

static void test_every_setting_is_read(void **state)
{
    struct fixture *fixture = *state;
    write_text(fixture, "secrets/redis.txt", "hunter2-redis\n");
    json_t *root = base_document();
    set_member(root, "", "threads", "7");
    set_member(root, "listen", "cleartext", "\"[::1]:9090\"");
    set_member(root, "", "limits",
               "{\"max_body_bytes\": 2097152, \"request_timeout_ms\": 11,"
               " \"idle_timeout_ms\": 12, \"handshake_timeout_ms\": 13,"
               " \"max_job_bytes\": 4096, \"max_batch_jobs\": 7, \"max_header_bytes\": 2048,"
               " \"connection_resets\": {\"per_second\": 0.5, \"burst\": 3},"
               " \"address_failed_tokens\": {\"per_second\": 0, \"burst\": 9}}");
    set_member(root, "", "idempotency", "{\"window_seconds\": 600}");
    set_member(root, "queues.mailers", "max_depth", "250");
    set_member(root, "", "redis",
               "{\"host\": \"redis.internal\", \"port\": 6380, \"username\": \"jobgate\","
               " \"password_file\": \"secrets/redis.txt\", \"namespace\": \"resque:prod.v2\","
               " \"connect_timeout_ms\": 21, \"command_timeout_ms\": 22,"
               " \"reconnect_min_ms\": 23, \"reconnect_max_ms\": 23, \"max_in_flight\": 25}");
    set_member(root, "auth", "leeway_seconds", "0");
    set_member(root, "auth", "tenant_claim", "\"org\"");
    set_member(root, "auth", "token_cache_entries", "0");
    write_document(fixture, root);

    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    assert_int_equal(config->threads, 7);
    assert_string_equal(config->cleartext.host, "::1");
    assert_int_equal(config->cleartext.port, 9090);
    assert_int_equal(config->limits.max_body_bytes, 2097152);
    assert_int_equal(config->limits.request_timeout_ms, 11);
    assert_int_equal(config->limits.idle_timeout_ms, 12);
    assert_int_equal(config->limits.handshake_timeout_ms, 13);
    assert_int_equal(config->limits.max_job_bytes, 4096);
    assert_int_equal(config->limits.max_batch_jobs, 7);
    assert_int_equal(config->limits.max_header_bytes, 2048);
    assert_rate(&config->limits.connection_resets, 0.5, 3);
    assert_rate(&config->limits.address_failed_tokens, 0, 9);
    assert_int_equal(config->idempotency.window_seconds, 600);
    assert_int_equal(config_find_queue(config, "mailers", 7)->max_depth, 250);
    assert_int_equal(config_find_queue(config, "invoices", 8)->max_depth, 0);
    assert_string_equal(config->redis.host, "redis.internal");
    assert_int_equal(config->redis.port, 6380);
    assert_string_equal(config->redis.username, "jobgate");
    assert_string_equal(config->redis.password, "hunter2-redis");
    assert_string_equal(config->redis.namespace_, "resque:prod.v2");
    assert_int_equal(config->redis.connect_timeout_ms, 21);
    assert_int_equal(config->redis.command_timeout_ms, 22);
    assert_int_equal(config->redis.reconnect_min_ms, 23);
    assert_int_equal(config->redis.reconnect_max_ms, 23);
    assert_int_equal(config->redis.max_in_flight, 25);
    assert_int_equal(config->auth.leeway_seconds, 0);
    assert_string_equal(config->auth.tenant_claim, "org");
    assert_int_equal(config->auth.token_cache_entries, 0);
    config_free(config);
}

static void test_listen_addresses(void **state)
{
    struct fixture *fixture = *state;
    static const struct {
        const char *address;
        const char *host;
        uint16_t port;
    } valid[] = {
        {"\"localhost:1\"", "localhost", 1},
        {"\"0.0.0.0:65535\"", "0.0.0.0", 65535},
        {"\"[::]:80\"", "::", 80},
        {"\"gateway-1.example.test:8080\"", "gateway-1.example.test", 8080},
    };

    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        json_t *root = base_document();
        set_member(root, "listen", "cleartext", valid[i].address);
        write_document(fixture, root);
        struct config *config = load(fixture);
        print_messages(fixture);
        assert_non_null(config);
        assert_string_equal(config->cleartext.host, valid[i].host);
        assert_int_equal(config->cleartext.port, valid[i].port);
        config_free(config);
    }
}

static void test_bad_listen_addresses(void **state)
{
    struct fixture *fixture = *state;
    static const struct {
        const char *address;
        const char *expected;
    } invalid[] = {
        {"\"127.0.0.1\"", "must be HOST:PORT, with an IPv6 host in brackets"},
        {"\"::1:8080\"", "must be HOST:PORT, with an IPv6 host in brackets"},
        {"\"[::1]8080\"", "must be HOST:PORT, with an IPv6 host in brackets"},
        {"\"127.0.0.1:0\"", "port must be from 1 to 65535"},
        {"\"127.0.0.1:65536\"", "port must be from 1 to 65535"},
        {"\"127.0.0.1:+80\"", "port must be from 1 to 65535"},
        {"\"127.0.0.1:\"", "port must be from 1 to 65535"},
        {"\":8080\"", "\"\" is not an IP address or a host name"},
        {"\"10.0.0.300:80\"", "\"10.0.0.300\" is not an IP address or a host name"},
        {"\"bad_host:80\"", "\"bad_host\" is not an IP address or a host name"},
        {"\"[1.2.3.4]:80\"", "\"1.2.3.4\" is not an IP address or a host name"},
        {"\"-host:80\"", "\"-host\" is not an IP address or a host name"},
    };

    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        char expected[256];
        snprintf(expected, sizeof expected, "$.listen.cleartext: %s", invalid[i].expected);
        expect_problem(fixture, "listen", "cleartext", invalid[i].address, expected);
        for (size_t m = 0; m < fixture->message_count; m++)
            free(fixture->messages[m]);
        fixture->message_count = 0;
    }
}

static void test_listen_needs_a_listener(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "", "listen", "{}", "$.listen: needs cleartext, tls or both");
}

static void test_relative_paths_resolve_against_the_config_directory(void **state)
{
    struct fixture *fixture = *state;

    /* The config sits in conf/; everything it names is one level up, as in example.json. */
    snprintf(fixture->config_path, sizeof fixture->config_path, "%s/conf/config.json",
             fixture->directory);
    write_text(fixture, "tls/cert.pem", "not parsed by config\n");
    write_text(fixture, "tls/key.pem", "not parsed by config\n");
    write_text(fixture, "secrets/redis.txt", "pass\n");
    json_t *root = base_document();
    set_member(root, "listen", "tls",
               "{\"address\": \"127.0.0.1:8443\", \"certificate_file\": \"../tls/cert.pem\","
               " \"key_file\": \"../tls/key.pem\"}");
    set_member(root, "redis", "password_file", "\"../secrets/redis.txt\"");
    json_t *key = json_array_get(object_at(root, "auth.keys"), 0);
    assert_int_equal(json_object_set_new(key, "file", json_string("../keys/hs.key")), 0);
    set_member(root, "envelope.signing_key", "file", "\"../keys/sign-1.sign.key\"");
    set_member(root, "envelope.sealing_keys.workers", "file", "\"../keys/workers.seal.pub\"");
    set_member(root, "envelope.sealing_keys.others", "file", "\"../keys/others.seal.pub\"");
    const char *class_name;
    json_t *class_object;
    json_object_foreach(object_at(root, "classes"), class_name, class_object)
    {
        assert_int_equal(
            json_object_set_new(class_object, "schema", json_string("../schemas/args.json")), 0);
    }

    /* An absolute path is taken as it is. */
    char absolute[512];
    snprintf(absolute, sizeof absolute, "%s/keys/hs.key", fixture->directory);
    json_t *second = json_pack("{s:s, s:s, s:s}", "kid", "two", "alg", "HS256", "file", absolute);
    assert_int_equal(json_array_append_new(object_at(root, "auth.keys"), second), 0);

    write_text(fixture, "conf/config.json", "");
    write_document(fixture, root);

    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);

    char expected[512];
    snprintf(expected, sizeof expected, "%s/conf/../tls/cert.pem", fixture->directory);
    assert_string_equal(config->tls.certificate_file, expected);
    snprintf(expected, sizeof expected, "%s/conf/../tls/key.pem", fixture->directory);
    assert_string_equal(config->tls.key_file, expected);
    assert_string_equal(config->tls.address.host, "127.0.0.1");
    assert_int_equal(config->tls.address.port, 8443);
    assert_string_equal(config->redis.password, "pass");

    /* Keys are described in config order, with their files resolved. */
    assert_int_equal(config->auth.key_count, 2);
    assert_string_equal(config->auth.keys[0].kid, "one");
    assert_string_equal(config->auth.keys[0].alg, "HS256");
    snprintf(expected, sizeof expected, "%s/conf/../keys/hs.key", fixture->directory);
    assert_string_equal(config->auth.keys[0].file, expected);
    assert_string_equal(config->auth.keys[1].kid, "two");
    assert_string_equal(config->auth.keys[1].file, absolute);
    config_free(config);
}

static void test_missing_key_file(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    json_t *key = json_array_get(object_at(root, "auth.keys"), 0);
    assert_int_equal(json_object_set_new(key, "file", json_string("keys/missing.key")), 0);
    write_document(fixture, root);

    load_fails(fixture);
    char expected[512];
    snprintf(expected, sizeof expected,
             "$.auth.keys[0].file: cannot read %s/keys/missing.key: No such file or directory",
             fixture->directory);
    assert_only_problem(fixture, expected);
}

static void test_missing_tls_files(void **state)
{
    struct fixture *fixture = *state;
    write_text(fixture, "tls/cert.pem", "certificate\n");
    json_t *root = base_document();
    set_member(root, "listen", "tls",
               "{\"address\": \"127.0.0.1:8443\", \"certificate_file\": \"tls/cert.pem\","
               " \"key_file\": \"tls/nothing.pem\"}");
    write_document(fixture, root);

    load_fails(fixture);
    char expected[512];
    snprintf(expected, sizeof expected,
             "$.listen.tls.key_file: cannot read %s/tls/nothing.pem: No such file or directory",
             fixture->directory);
    assert_only_problem(fixture, expected);
}

static void test_key_file_must_be_a_small_regular_file(void **state)
{
    struct fixture *fixture = *state;
    static unsigned char large[64 * 1024 + 1];
    write_file(fixture, "keys/large.key", large, sizeof large);
    write_text(fixture, "keys/empty.key", "");
    json_t *root = base_document();
    json_t *keys = object_at(root, "auth.keys");
    assert_int_equal(json_array_append_new(keys, json_pack("{s:s, s:s, s:s}", "kid", "large", "alg",
                                                           "HS256", "file", "keys/large.key")),
                     0);
    assert_int_equal(json_array_append_new(keys, json_pack("{s:s, s:s, s:s}", "kid", "empty", "alg",
                                                           "HS256", "file", "keys/empty.key")),
                     0);
    assert_int_equal(json_array_append_new(keys, json_pack("{s:s, s:s, s:s}", "kid", "dir", "alg",
                                                           "HS256", "file", "keys")),
                     0);
    write_document(fixture, root);

    load_fails(fixture);
    char expected[512];
    snprintf(expected, sizeof expected,
             "$.auth.keys[1].file: cannot read %s/keys/large.key: file too large",
             fixture->directory);
    assert_reported(fixture, expected);
    snprintf(expected, sizeof expected, "$.auth.keys[2].file: %s/keys/empty.key is empty",
             fixture->directory);
    assert_reported(fixture, expected);
    snprintf(expected, sizeof expected,
             "$.auth.keys[3].file: cannot read %s/keys: not a regular file", fixture->directory);
    assert_reported(fixture, expected);
    assert_int_equal(fixture->message_count, 3);
}

static void test_a_queue_class_needs_a_schema(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "classes", "BuildReport", NULL);
    write_document(fixture, root);

    load_fails(fixture);
    assert_only_problem(fixture, "$.queues.reports.classes: class \"BuildReport\" has no schema: "
                                 "add it to $.classes");
}

static void test_schema_problems_name_the_schema_file_and_pointer(void **state)
{
    struct fixture *fixture = *state;
    write_text(fixture, "schemas/typo.json",
               "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"maxLenght\": 3}}");
    json_t *root = base_document();
    set_member(root, "classes.BuildReport", "schema", "\"schemas/typo.json\"");
    set_member(root, "classes.SendInvoice", "schema", "\"schemas/missing.json\"");
    write_document(fixture, root);

    load_fails(fixture);
    int typo_reported = 0, missing_reported = 0;
    for (size_t i = 0; i < fixture->message_count; i++) {
        const char *message = fixture->messages[i];
        if (strstr(message, "schemas/typo.json: /items") != NULL && strstr(message, "maxLenght"))
            typo_reported = 1;
        if (strstr(message, "schemas/missing.json") != NULL)
            missing_reported = 1;
    }
    if (!typo_reported || !missing_reported) {
        print_messages(fixture);
        fail_msg("schema problems not reported with their file and pointer");
    }
}

static void test_unknown_alg_is_reported_without_its_key_file(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    json_t *key = json_array_get(object_at(root, "auth.keys"), 0);
    assert_int_equal(json_object_set_new(key, "alg", json_string("none")), 0);
    assert_int_equal(json_object_set_new(key, "file", json_string("keys/missing.key")), 0);
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.auth.keys[0].alg: unsupported alg \"none\" (use HS256, HS384, "
                             "HS512, RS256 or ES256)");
    assert_int_equal(fixture->message_count, 2);
}

static void test_keyring_rejection_is_reported_at_the_key(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    json_t *key = json_array_get(object_at(root, "auth.keys"), 0);
    /* A supported alg whose key file does not fit it: an HMAC secret is no RSA key. */
    assert_int_equal(json_object_set_new(key, "alg", json_string("RS256")), 0);
    write_document(fixture, root);

    load_fails(fixture);
    /* The reason is auth's to word; only where it is reported is config's business. */
    assert_int_equal(fixture->message_count, 1);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s: $.auth.keys[0]: ", fixture->config_path);
    assert_memory_equal(fixture->messages[0], prefix, strlen(prefix));
    assert_true(strlen(fixture->messages[0]) > strlen(prefix));
}

static void test_duplicate_kid(void **state)
{
    struct fixture *fixture = *state;
    write_secret(fixture, "keys/other.key");
    json_t *root = base_document();
    json_t *second =
        json_pack("{s:s, s:s, s:s}", "kid", "one", "alg", "HS256", "file", "keys/other.key");
    assert_int_equal(json_array_append_new(object_at(root, "auth.keys"), second), 0);
    write_document(fixture, root);

    load_fails(fixture);
    assert_only_problem(fixture, "$.auth.keys[1].kid: duplicate kid \"one\" (also at "
                                 "$.auth.keys[0])");
}

static void test_keys_must_not_be_empty(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "auth", "keys", "[]", "$.auth.keys: must list at least one key");
}

static void test_key_entry_must_be_an_object(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "auth", "keys", "[\"keys/hs.key\"]",
                   "$.auth.keys[0]: must be an object, not a string");
}

static void test_redis_password_file(void **state)
{
    struct fixture *fixture = *state;
    static const struct {
        const char *content;
        size_t len;
        const char *password;
    } cases[] = {
        {"plain", 5, "plain"},
        {"one newline\n", 12, "one newline"},
        {"crlf\r\n", 6, "crlf"},
        {"two newlines\n\n", 14, "two newlines\n"},
        {" spaces kept \n", 14, " spaces kept "},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(fixture, "secrets/redis.txt", cases[i].content, cases[i].len);
        json_t *root = base_document();
        set_member(root, "redis", "password_file", "\"secrets/redis.txt\"");
        write_document(fixture, root);
        struct config *config = load(fixture);
        print_messages(fixture);
        assert_non_null(config);
        assert_string_equal(config->redis.password, cases[i].password);
        config_free(config);
    }
}

static void test_redis_password_is_never_echoed(void **state)
{
    struct fixture *fixture = *state;
    write_file(fixture, "secrets/redis.txt", "s3cr3t\0tail\n", 12);
    write_text(fixture, "secrets/empty.txt", "\n");
    json_t *root = base_document();
    set_member(root, "redis", "password_file", "\"secrets/redis.txt\"");
    write_document(fixture, root);

    load_fails(fixture);
    assert_only_problem(fixture, "$.redis.password_file: the password contains a NUL byte");
    assert_null(strstr(fixture->messages[0], "s3cr3t"));

    free(fixture->messages[0]);
    fixture->message_count = 0;
    root = base_document();
    set_member(root, "redis", "password_file", "\"secrets/empty.txt\"");
    write_document(fixture, root);
    load_fails(fixture);
    assert_only_problem(fixture, "$.redis.password_file: the password file is empty");
}

static void test_redis_username_needs_a_password(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "redis", "username", "\"jobgate\"",
                   "$.redis.username: a user name needs a password_file too");
}

static void test_unknown_keys(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "thread", "2");
    set_member(root, "limits", "max_body", "10");
    set_member(root, "queues.invoices", "priority", "1");
    set_member(root, "tiers.bulk", "include", "[]");
    set_member(root, "", "we\"ird key", "1");
    json_t *key = json_array_get(object_at(root, "auth.keys"), 0);
    assert_int_equal(json_object_set_new(key, "use", json_string("sig")), 0);
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.thread: unknown key");
    assert_reported(fixture, "$.limits.max_body: unknown key");
    assert_reported(fixture, "$.queues.invoices.priority: unknown key");
    assert_reported(fixture, "$.tiers.bulk.include: unknown key");
    assert_reported(fixture, "$.auth.keys[0].use: unknown key");
    assert_reported(fixture, "$[\"we\\\"ird key\"]: unknown key");
    assert_int_equal(fixture->message_count, 6);
}

static void test_wrong_types(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "threads", "\"2\"");
    set_member(root, "limits", "max_body_bytes", "1.5");
    set_member(root, "redis", "port", "true");
    set_member(root, "redis", "host", "null");
    set_member(root, "auth", "issuer", "[\"x\"]");
    set_member(root, "queues.invoices", "classes", "\"SendInvoice\"");
    set_member(root, "queues.mailers", "tenants", "[7]");
    set_member(root, "tiers", "bulk", "[]");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.threads: must be an integer, not a string");
    assert_reported(fixture, "$.limits.max_body_bytes: must be an integer, not a number with a "
                             "fraction or an exponent");
    assert_reported(fixture, "$.redis.port: must be an integer, not a boolean");
    assert_reported(fixture, "$.redis.host: must be a string, not null");
    assert_reported(fixture, "$.auth.issuer: must be a string, not an array");
    assert_reported(fixture, "$.queues.invoices.classes: must be an array, not a string");
    assert_reported(fixture, "$.queues.mailers.tenants[0]: must be a string, not an integer");
    assert_reported(fixture, "$.tiers.bulk: must be an object, not an array");
    assert_int_equal(fixture->message_count, 8);
}

static void test_root_must_be_an_object(void **state)
{
    struct fixture *fixture = *state;
    write_text(fixture, "config.json", "[1, 2]");
    load_fails(fixture);
    assert_only_problem(fixture, "$: must be an object, not an array");
}

static void test_required_members(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "listen", NULL);
    set_member(root, "auth", "issuer", NULL);
    set_member(root, "auth", "audience", "\"\"");
    set_member(root, "queues.invoices", "tier", NULL);
    set_member(root, "queues.invoices", "tenants", NULL);
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.listen: is required");
    assert_reported(fixture, "$.auth.issuer: is required");
    assert_reported(fixture, "$.auth.audience: must not be empty");
    assert_reported(fixture, "$.queues.invoices.tier: is required");
    assert_reported(fixture, "$.queues.invoices.tenants: is required");
    assert_int_equal(fixture->message_count, 5);
}

static void test_out_of_range(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "threads", "0");
    set_member(root, "limits", "max_body_bytes", "67108865");
    set_member(root, "redis", "port", "65536");
    set_member(root, "redis", "reconnect_min_ms", "100");
    set_member(root, "redis", "reconnect_max_ms", "99");
    set_member(root, "redis", "namespace", "\"resque queue\"");
    set_member(root, "auth", "leeway_seconds", "301");
    set_member(root, "auth", "token_cache_entries", "-1");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.threads: must be from 1 to 64, not 0");
    assert_reported(fixture, "$.limits.max_body_bytes: must be from 1 to 67108864, not 67108865");
    assert_reported(fixture, "$.redis.port: must be from 1 to 65535, not 65536");
    assert_reported(fixture, "$.redis.reconnect_max_ms: must not be below reconnect_min_ms (100)");
    assert_reported(fixture, "$.redis.namespace: \"resque queue\" is not a valid namespace (1 to "
                             "64 of A-Z, a-z, 0-9, _, :, . and -)");
    assert_reported(fixture, "$.auth.leeway_seconds: must be from 0 to 300, not 301");
    assert_reported(fixture, "$.auth.token_cache_entries: must be from 0 to 1048576, not -1");
    /* A broken global limit is not also blamed on the queue that sets its own. */
    assert_int_equal(fixture->message_count, 7);
}

static void test_unknown_tier(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "queues.invoices", "tier", "\"critcal\"",
                   "$.queues.invoices.tier: unknown tier \"critcal\"");
}

static void test_unknown_include(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "tiers.standard", "includes", "[\"bulk\", \"bluk\"]",
                   "$.tiers.standard.includes[1]: unknown tier \"bluk\"");
}

static void test_duplicate_include(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "tiers.standard", "includes", "[\"bulk\", \"bulk\"]",
                   "$.tiers.standard.includes[1]: duplicate tier \"bulk\"");
}

static void test_bad_tier_name(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "tiers", "Bulk", "{}");
    set_member(root, "tiers", "9lives", "{}");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.tiers.Bulk: invalid tier name (1 to 64 of a-z, 0-9, _ and -, "
                             "starting with a letter)");
    assert_reported(fixture, "$.tiers.9lives: invalid tier name (1 to 64 of a-z, 0-9, _ and -, "
                             "starting with a letter)");
    assert_int_equal(fixture->message_count, 2);
}

static void test_tiers_are_required_and_bounded(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    json_t *tiers = object_at(root, "tiers");
    for (int i = 0; i < CONFIG_MAX_TIERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "extra%d", i);
        assert_int_equal(json_object_set_new(tiers, name, json_object()), 0);
    }
    write_document(fixture, root);
    load_fails(fixture);
    assert_only_problem(fixture, "$.tiers: names 67 tiers; at most 64 are allowed");

    free(fixture->messages[0]);
    fixture->message_count = 0;
    root = base_document();
    set_member(root, "", "tiers", "{}");
    set_member(root, "", "queues", "{}");
    write_document(fixture, root);
    load_fails(fixture);
    assert_reported(fixture, "$.tiers: must name at least one tier");
    assert_reported(fixture, "$.queues: must name at least one queue");
    assert_int_equal(fixture->message_count, 2);
}

static void test_bad_queue_names(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    json_t *queues = object_at(root, "queues");
    json_t *invoices = json_object_get(queues, "invoices");
    assert_int_equal(json_object_set(queues, "Invoices", invoices), 0);
    assert_int_equal(json_object_set(queues, "bad queue", invoices), 0);
    assert_int_equal(json_object_set(queues, "_hidden", invoices), 0);
    assert_int_equal(json_object_set(queues, "caf\xc3\xa9", invoices), 0);
    write_document(fixture, root);

    load_fails(fixture);
    static const char rule[] =
        "invalid queue name (1 to 64 of a-z, 0-9, _ and -, starting with a letter or a digit)";
    char expected[256];
    snprintf(expected, sizeof expected, "$.queues.Invoices: %s", rule);
    assert_reported(fixture, expected);
    snprintf(expected, sizeof expected, "$.queues[\"bad queue\"]: %s", rule);
    assert_reported(fixture, expected);
    snprintf(expected, sizeof expected, "$.queues._hidden: %s", rule);
    assert_reported(fixture, expected);
    /* Bytes outside printable ASCII are escaped, so a message cannot play tricks on a terminal. */
    snprintf(expected, sizeof expected, "$.queues[\"caf\\xc3\\xa9\"]: %s", rule);
    assert_reported(fixture, expected);
    assert_int_equal(fixture->message_count, 4);
}

static void test_bad_class_names(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "queues.mailers", "classes",
               "[\"SendWelcomeEmail\", \"sendInvoice\", \"Mail::\", \"SendWelcomeEmail\"]");
    write_document(fixture, root);

    load_fails(fixture);
    static const char rule[] =
        "is not a class name (a Ruby constant path such as Billing::SendInvoice, at most 128 "
        "bytes)";
    char expected[256];
    snprintf(expected, sizeof expected, "$.queues.mailers.classes[1]: \"sendInvoice\" %s", rule);
    assert_reported(fixture, expected);
    snprintf(expected, sizeof expected, "$.queues.mailers.classes[2]: \"Mail::\" %s", rule);
    assert_reported(fixture, expected);
    assert_reported(fixture, "$.queues.mailers.classes[3]: duplicate \"SendWelcomeEmail\"");
    assert_int_equal(fixture->message_count, 3);
}

static void test_empty_classes_and_tenants(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "queues.invoices", "classes", "[]");
    set_member(root, "queues.invoices", "tenants", "[]");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.queues.invoices.classes: must not be empty");
    assert_reported(fixture, "$.queues.invoices.tenants: must not be empty");
    assert_int_equal(fixture->message_count, 2);
}

static void test_any_tenant_must_stand_alone(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "queues.invoices", "tenants", "[\"acme\", \"*\"]");
    set_member(root, "queues.reports", "tenants", "[\"acme\", \"\", \"acme\"]");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.queues.invoices.tenants[1]: \"*\" (any tenant) must be the only "
                             "entry");
    assert_reported(fixture, "$.queues.reports.tenants[1]: \"\" is not a tenant (1 to 128 bytes, "
                             "no control characters)");
    assert_reported(fixture, "$.queues.reports.tenants[2]: duplicate \"acme\"");
    assert_int_equal(fixture->message_count, 3);
}

/* keygen names a signing key's file for its kid; configured under another, it is refused. */
static void test_signing_key_named_for_another_kid(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "envelope", "signing_key",
                   "{\"kid\": \"sign-2\", \"file\": \"keys/sign-1.sign.key\"}",
                   "$.envelope.signing_key.file: is named for kid \"sign-1\", not \"sign-2\"");
}

static void test_queue_body_limit_above_global(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "queues.reports", "max_body_bytes", "1048577",
                   "$.queues.reports.max_body_bytes: 1048577 is above $.limits.max_body_bytes "
                   "(1048576)");
}

/* A burst left out is one second's worth of the rate given; with neither, the defaults. */
static void test_rate_burst_defaults(void **state)
{
    struct fixture *fixture = *state;
    static const struct {
        const char *rate;
        struct config_rate resets, tokens;
    } cases[] = {
        {"{}", {10, 100}, {10, 50}},
        {"{\"per_second\": 20}", {20, 20}, {20, 20}},
        {"{\"per_second\": 2.5}", {2.5, 3}, {2.5, 3}},
        {"{\"per_second\": 0.001}", {0.001, 1}, {0.001, 1}},
        {"{\"per_second\": 0}", {0, 1}, {0, 1}},
        {"{\"burst\": 7}", {10, 7}, {10, 7}},
        {"{\"per_second\": 1000000000, \"burst\": 1000000000}",
         {1e9, 1000000000},
         {1e9, 1000000000}},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *root = base_document();
        set_member(root, "limits", "connection_resets", cases[i].rate);
        set_member(root, "limits", "address_failed_tokens", cases[i].rate);
        struct config *config = load_document(fixture, root);
        assert_rate(&config->limits.connection_resets, cases[i].resets.per_second,
                    cases[i].resets.burst);
        assert_rate(&config->limits.address_failed_tokens, cases[i].tokens.per_second,
                    cases[i].tokens.burst);
        config_free(config);
    }
}

/* A tenant's rate follows the same rule, but has no rate unless it sets one. */
static void test_tenant_burst_defaults(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "tenants",
               "{\"a\": {}, \"b\": {\"jobs_per_second\": 2.5}, \"c\": {\"burst\": 9},"
               " \"d\": {\"jobs_per_second\": 0}, \"e\": {\"jobs_per_second\": 40, \"burst\": 5}}");
    struct config *config = load_document(fixture, root);

    assert_rate(&config_find_tenant(config, "a")->jobs, 0, 1);
    assert_rate(&config_find_tenant(config, "b")->jobs, 2.5, 3);
    assert_rate(&config_find_tenant(config, "c")->jobs, 0, 9);
    assert_rate(&config_find_tenant(config, "d")->jobs, 0, 1);
    assert_rate(&config_find_tenant(config, "e")->jobs, 40, 5);
    config_free(config);
}

static void test_limits_bounds_are_allowed(void **state)
{
    struct fixture *fixture = *state;
    static const char *const limits[] = {
        "{\"max_job_bytes\": 256, \"max_batch_jobs\": 1, \"max_header_bytes\": 1024}",
        "{\"max_job_bytes\": 67108864, \"max_batch_jobs\": 10000, \"max_header_bytes\": 65536}",
    };

    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        json_t *root = base_document();
        set_member(root, "", "limits", limits[i]);
        set_member(root, "", "idempotency",
                   i == 0 ? "{\"window_seconds\": 60}" : "{\"window_seconds\": 2592000}");
        set_member(root, "queues.invoices", "max_depth", i == 0 ? "0" : "1099511627776");
        struct config *config = load_document(fixture, root);
        assert_int_equal(config->limits.max_job_bytes, i == 0 ? 256 : 64 * 1024 * 1024);
        assert_int_equal(config->limits.max_batch_jobs, i == 0 ? 1 : 10000);
        assert_int_equal(config->limits.max_header_bytes, i == 0 ? 1024 : 65536);
        assert_int_equal(config->idempotency.window_seconds, i == 0 ? 60 : 2592000);
        assert_int_equal(config_find_queue(config, "invoices", 8)->max_depth,
                         i == 0 ? 0 : (uint64_t)1 << 40);
        config_free(config);
    }
}

static void test_limits_out_of_range(void **state)
{
    struct fixture *fixture = *state;
    static const struct {
        const char *dotted;
        const char *key;
        const char *low;
        const char *high;
        const char *range;
    } cases[] = {
        {"limits", "max_job_bytes", "255", "67108865", "256 to 67108864"},
        {"limits", "max_batch_jobs", "0", "10001", "1 to 10000"},
        {"limits", "max_header_bytes", "1023", "65537", "1024 to 65536"},
        {"limits.connection_resets", "per_second", "-1", "1000000001", "0 to 1000000000"},
        {"limits.connection_resets", "burst", "0", "1000000001", "1 to 1000000000"},
        {"limits.address_failed_tokens", "per_second", "-1", "1000000001", "0 to 1000000000"},
        {"limits.address_failed_tokens", "burst", "0", "1000000001", "1 to 1000000000"},
        {"idempotency", "window_seconds", "59", "2592001", "60 to 2592000"},
        {"queues.mailers", "max_depth", "-1", "1099511627777", "0 to 1099511627776"},
        {"tenants.acme", "jobs_per_second", "-1", "1000000001", "0 to 1000000000"},
        {"tenants.acme", "burst", "0", "1000000001", "1 to 1000000000"},
        {"tenants.acme", "max_body_bytes", "0", "67108865", "1 to 67108864"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int high = 0; high <= 1; high++) {
            const char *value = high ? cases[i].high : cases[i].low;
            json_t *root = base_document();
            set_member(root, "limits", "connection_resets", "{}");
            set_member(root, "limits", "address_failed_tokens", "{}");
            set_member(root, "", "idempotency", "{}");
            set_member(root, "", "tenants", "{\"acme\": {}}");
            /* The global body limit at its most, so that only the range is at fault. */
            set_member(root, "limits", "max_body_bytes", "67108864");
            set_member(root, cases[i].dotted, cases[i].key, value);
            write_document(fixture, root);
            char expected[256];
            snprintf(expected, sizeof expected, "$.%s.%s: must be from %s, not %s", cases[i].dotted,
                     cases[i].key, cases[i].range, value);
            load_fails(fixture);
            assert_only_problem(fixture, expected);
            clear_messages(fixture);
        }
    }
}

/* A rate need not be an integer, and one out of range is shown as it was written. */
static void test_rate_out_of_range_fractions(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "limits", "connection_resets", "{\"per_second\": -0.5}");
    set_member(root, "limits", "address_failed_tokens", "{\"per_second\": 1e10}");
    set_member(root, "", "tenants", "{\"*\": {\"jobs_per_second\": 1000000000.5}}");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(
        fixture, "$.limits.connection_resets.per_second: must be from 0 to 1000000000, not -0.5");
    assert_reported(fixture, "$.limits.address_failed_tokens.per_second: must be from 0 to "
                             "1000000000, not 10000000000");
    assert_reported(fixture, "$.tenants[\"*\"].jobs_per_second: must be from 0 to 1000000000, "
                             "not 1000000000.5");
    assert_int_equal(fixture->message_count, 3);
}

static void test_limits_wrong_types(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "limits", "max_job_bytes", "\"1048576\"");
    set_member(root, "limits", "max_batch_jobs", "500.0");
    set_member(root, "limits", "max_header_bytes", "null");
    set_member(root, "limits", "connection_resets", "10");
    set_member(root, "limits", "address_failed_tokens", "{\"per_second\": \"10\", \"burst\": 1.5}");
    set_member(root, "", "idempotency", "86400");
    set_member(root, "queues.mailers", "max_depth", "\"1000\"");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.limits.max_job_bytes: must be an integer, not a string");
    assert_reported(fixture, "$.limits.max_batch_jobs: must be an integer, not a number with a "
                             "fraction or an exponent");
    assert_reported(fixture, "$.limits.max_header_bytes: must be an integer, not null");
    assert_reported(fixture, "$.limits.connection_resets: must be an object, not an integer");
    assert_reported(fixture,
                    "$.limits.address_failed_tokens.per_second: must be a number, not a string");
    assert_reported(fixture, "$.limits.address_failed_tokens.burst: must be an integer, not a "
                             "number with a fraction or an exponent");
    assert_reported(fixture, "$.idempotency: must be an object, not an integer");
    assert_reported(fixture, "$.queues.mailers.max_depth: must be an integer, not a string");
    assert_int_equal(fixture->message_count, 8);
}

static void test_tenants_wrong_types(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "tenants", "[\"acme\"]");
    write_document(fixture, root);
    load_fails(fixture);
    assert_only_problem(fixture, "$.tenants: must be an object, not an array");
    clear_messages(fixture);

    root = base_document();
    set_member(root, "", "tenants",
               "{\"acme\": 100, \"*\": {\"jobs_per_second\": true, \"burst\": \"2\","
               " \"max_body_bytes\": 1.5}}");
    write_document(fixture, root);
    load_fails(fixture);
    assert_reported(fixture, "$.tenants.acme: must be an object, not an integer");
    assert_reported(fixture, "$.tenants[\"*\"].jobs_per_second: must be a number, not a boolean");
    assert_reported(fixture, "$.tenants[\"*\"].burst: must be an integer, not a string");
    assert_reported(fixture, "$.tenants[\"*\"].max_body_bytes: must be an integer, not a number "
                             "with a fraction or an exponent");
    assert_int_equal(fixture->message_count, 4);
}

static void test_new_unknown_keys(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "limits", "connection_resets", "{\"rate\": 1}");
    set_member(root, "limits", "max_jobs", "1");
    set_member(root, "", "idempotency", "{\"window\": 60}");
    /* A tenant's rate is spelled jobs_per_second, not per_second. */
    set_member(root, "", "tenants", "{\"acme\": {\"per_second\": 5}, \"*\": {\"depth\": 1}}");
    set_member(root, "queues.reports", "depth", "1");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.limits.connection_resets.rate: unknown key");
    assert_reported(fixture, "$.limits.max_jobs: unknown key");
    assert_reported(fixture, "$.idempotency.window: unknown key");
    assert_reported(fixture, "$.tenants.acme.per_second: unknown key");
    assert_reported(fixture, "$.tenants[\"*\"].depth: unknown key");
    assert_reported(fixture, "$.queues.reports.depth: unknown key");
    assert_int_equal(fixture->message_count, 6);
}

static void test_bad_tenant_names(void **state)
{
    struct fixture *fixture = *state;
    char too_long[130], longest[129];
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    memset(longest, 'b', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    json_t *root = base_document();
    json_t *tenants = json_object();
    assert_int_equal(json_object_set_new(tenants, "", json_object()), 0);
    assert_int_equal(json_object_set_new(tenants, "a\tb", json_object()), 0);
    assert_int_equal(json_object_set_new(tenants, too_long, json_object()), 0);
    assert_int_equal(json_object_set_new(tenants, longest, json_object()), 0);
    assert_int_equal(json_object_set_new(root, "tenants", tenants), 0);
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.tenants[\"\"]: invalid tenant name (1 to 128 bytes, no control "
                             "characters)");
    assert_reported(fixture, "$.tenants[\"a\\x09b\"]: invalid tenant name (1 to 128 bytes, no "
                             "control characters)");
    /* The path shows a long name cut to its first 64 bytes. */
    char expected[256];
    snprintf(expected, sizeof expected,
             "$.tenants[\"%.64s\"...]: invalid tenant name (1 to 128 bytes, no control "
             "characters)",
             too_long);
    assert_reported(fixture, expected);
    assert_int_equal(fixture->message_count, 3);
}

static void test_tenants_are_read(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "limits", "max_body_bytes", "2097152");
    /* "*" in the middle: it is stored last, after the named tenants in the file's order. */
    set_member(
        root, "", "tenants",
        "{\"acme\": {\"jobs_per_second\": 5000, \"burst\": 10000, \"max_body_bytes\": 262144},"
        " \"*\": {\"jobs_per_second\": 1000, \"burst\": 2000},"
        " \"globex corp\": {\"jobs_per_second\": 0.5}}");
    struct config *config = load_document(fixture, root);

    assert_int_equal(config->tenant_count, 3);
    assert_string_equal(config->tenants[0].name, "acme");
    assert_rate(&config->tenants[0].jobs, 5000, 10000);
    assert_int_equal(config->tenants[0].max_body_bytes, 262144);
    assert_string_equal(config->tenants[1].name, "globex corp");
    assert_rate(&config->tenants[1].jobs, 0.5, 1);
    assert_int_equal(config->tenants[1].max_body_bytes, 2097152);
    assert_string_equal(config->tenants[2].name, "*");
    assert_rate(&config->tenants[2].jobs, 1000, 2000);
    assert_int_equal(config->tenants[2].max_body_bytes, 2097152);
    config_free(config);
}

static void test_any_tenant_is_added_when_missing(void **state)
{
    struct fixture *fixture = *state;
    static const char *const tenants[] = {
        "{}",
        "{\"acme\": {\"jobs_per_second\": 5, \"max_body_bytes\": 1000}}",
    };

    for (size_t i = 0; i < sizeof tenants / sizeof tenants[0]; i++) {
        json_t *root = base_document();
        set_member(root, "limits", "max_body_bytes", "3000000");
        set_member(root, "", "tenants", tenants[i]);
        struct config *config = load_document(fixture, root);
        assert_int_equal(config->tenant_count, i + 1);
        const struct config_tenant *any = &config->tenants[i];
        assert_string_equal(any->name, "*");
        assert_rate(&any->jobs, 0, 1);
        assert_int_equal(any->max_body_bytes, 3000000);
        config_free(config);
    }
}

static void test_find_tenant(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "tenants",
               "{\"acme\": {\"jobs_per_second\": 1}, \"acme-eu\": {\"jobs_per_second\": 2},"
               " \"*\": {\"jobs_per_second\": 3}}");
    struct config *config = load_document(fixture, root);

    assert_string_equal(config_find_tenant(config, "acme")->name, "acme");
    assert_string_equal(config_find_tenant(config, "acme-eu")->name, "acme-eu");
    static const char *const others[] = {"acm", "acme-e", "acmex", "ACME", "", "*", "globex"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        const struct config_tenant *tenant = config_find_tenant(config, others[i]);
        assert_non_null(tenant);
        assert_string_equal(tenant->name, "*");
        assert_rate(&tenant->jobs, 3, 3);
    }
    assert_string_equal(config_find_tenant(config, NULL)->name, "*");
    config_free(config);

    /* Without a "*" of the file's, the tenants not named find the one added. */
    root = base_document();
    set_member(root, "", "tenants", "{\"acme\": {\"jobs_per_second\": 1}}");
    config = load_document(fixture, root);
    assert_rate(&config_find_tenant(config, "acme")->jobs, 1, 1);
    assert_string_equal(config_find_tenant(config, "globex")->name, "*");
    assert_rate(&config_find_tenant(config, "globex")->jobs, 0, 1);
    config_free(config);
}

static void test_tenant_body_limit_above_global(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "", "tenants", "{\"*\": {\"max_body_bytes\": 1048577}}",
                   "$.tenants[\"*\"].max_body_bytes: 1048577 is above $.limits.max_body_bytes "
                   "(1048576)");
}

/* The HTTP layer's cap is the largest body any queue or tenant, "*" included, allows. */
static void test_http_body_cap(void **state)
{
    struct fixture *fixture = *state;
    static const struct {
        const char *tenants;
        size_t cap;
    } cases[] = {
        /* The "*" added takes the global limit. */
        {NULL, 4194304},
        {"{\"acme\": {\"max_body_bytes\": 100}}", 4194304},
        /* A queue's limit above every tenant's. */
        {"{\"*\": {\"max_body_bytes\": 1000}}", 65536},
        {"{\"acme\": {\"max_body_bytes\": 300000}, \"*\": {\"max_body_bytes\": 1000}}", 300000},
        {"{\"acme\": {}, \"*\": {\"max_body_bytes\": 1000}}", 4194304},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *root = base_document();
        set_member(root, "limits", "max_body_bytes", "4194304");
        set_member(root, "queues.invoices", "max_body_bytes", "1000");
        set_member(root, "queues.mailers", "max_body_bytes", "65536");
        if (cases[i].tenants != NULL)
            set_member(root, "", "tenants", cases[i].tenants);
        struct config *config = load_document(fixture, root);
        assert_int_equal(config->limits.max_body_bytes, 4194304);
        assert_int_equal(config->limits.http_body_cap, cases[i].cap);
        config_free(config);
    }
}

/*
 * Loads the base config with tenants, an idempotency window and queue body limits of at
 * most 100000 bytes, and then one member changed (removed when value is NULL).
 */
static struct config *load_changed(struct fixture *fixture, const char *dotted, const char *key,
                                   const char *value)
{
    json_t *root = base_document();
    set_member(root, "", "tenants",
               "{\"acme\": {\"jobs_per_second\": 100, \"max_body_bytes\": 50000},"
               " \"*\": {\"max_body_bytes\": 1000}}");
    set_member(root, "", "idempotency", "{\"window_seconds\": 3600}");
    set_member(root, "queues.invoices", "max_body_bytes", "100000");
    set_member(root, "queues.mailers", "max_body_bytes", "65536");
    if (dotted != NULL)
        set_member(root, dotted, key, value);
    return load_document(fixture, root);
}

static void test_reloadable(void **state)
{
    struct fixture *fixture = *state;
    static const struct {
        const char *dotted;
        const char *key;
        const char *value;
        const char *reason; /* NULL: reloadable */
    } cases[] = {
        {NULL, NULL, NULL, NULL},
        {"", "tenants", NULL, "limits"}, /* the "*" added allows the global body limit */
        {"", "tenants", "{\"*\": {\"max_body_bytes\": 1000}}", NULL},
        {"tenants", "acme", "{\"jobs_per_second\": 1, \"burst\": 1, \"max_body_bytes\": 10}", NULL},
        {"tenants", "globex", "{\"jobs_per_second\": 7, \"max_body_bytes\": 5000}", NULL},
        {"tenants", "globex", "{\"jobs_per_second\": 7}", "limits"},
        {"", "idempotency", NULL, NULL},
        {"idempotency", "window_seconds", "60", NULL},
        {"queues.mailers", "max_depth", "1000", NULL},
        /* The body cap may come down, or stay, but not go up. */
        {"queues.invoices", "max_body_bytes", "90000", NULL},
        {"queues.invoices", "max_body_bytes", "65536", NULL},
        {"queues.invoices", "max_body_bytes", "100001", "limits"},
        {"tenants", "acme", "{\"max_body_bytes\": 100001}", "limits"},
        {"tenants", "acme", "{\"max_body_bytes\": 100000}", NULL},
        {"limits", "max_body_bytes", "1048577", "limits"},
        {"limits", "max_job_bytes", "1048577", "limits"},
        {"limits", "max_batch_jobs", "499", "limits"},
        {"limits", "max_header_bytes", "8193", "limits"},
        {"limits", "connection_resets", "{\"per_second\": 10.5, \"burst\": 100}", "limits"},
        {"limits", "connection_resets", "{\"per_second\": 10, \"burst\": 101}", "limits"},
        {"limits", "connection_resets", "{\"per_second\": 10, \"burst\": 100}", NULL},
        {"limits", "address_failed_tokens", "{\"per_second\": 11, \"burst\": 50}", "limits"},
        {"limits", "address_failed_tokens", "{\"per_second\": 10, \"burst\": 49}", "limits"},
        {"limits", "address_failed_tokens", "{\"per_second\": 10, \"burst\": 50}", NULL},
        {"limits", "request_timeout_ms", "10001", "limits"},
        {"", "threads", "3", "threads"},
    };
    struct config *current = load_changed(fixture, NULL, NULL, NULL);
    assert_int_equal(current->limits.http_body_cap, 100000);

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config *next = load_changed(fixture, cases[i].dotted, cases[i].key, cases[i].value);
        const char *reason = "unset";
        int reloadable = config_reloadable(current, next, &reason);
        if (cases[i].reason == NULL) {
            if (!reloadable)
                fail_msg("case %zu (%s): refused for %s", i, cases[i].key, reason);
            assert_null(reason);
        } else {
            if (reloadable)
                fail_msg("case %zu (%s): reloadable", i, cases[i].key);
            assert_string_equal(reason, cases[i].reason);
        }
        config_free(next);
    }
    config_free(current);
}

static void test_duplicate_json_keys(void **state)
{
    struct fixture *fixture = *state;
    write_text(fixture, "config.json",
               "{\n"
               "  \"threads\": 2,\n"
               "  \"threads\": 3\n"
               "}\n");

    load_fails(fixture);
    assert_int_equal(fixture->message_count, 1);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s: line 3, column ", fixture->config_path);
    assert_memory_equal(fixture->messages[0], prefix, strlen(prefix));
    assert_non_null(strstr(fixture->messages[0], "duplicate object key"));
}

static void test_syntax_error_has_line_and_column(void **state)
{
    struct fixture *fixture = *state;
    write_text(fixture, "config.json", "{\n  \"threads\": 2,\n  \"listen\": {,}\n}\n");

    load_fails(fixture);
    assert_int_equal(fixture->message_count, 1);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s: line 3, column 14: ", fixture->config_path);
    assert_memory_equal(fixture->messages[0], prefix, strlen(prefix));
}

static void test_missing_config_file(void **state)
{
    struct fixture *fixture = *state;
    load_fails(fixture);
    char expected[512];
    snprintf(expected, sizeof expected, "%s: cannot read: No such file or directory",
             fixture->config_path);
    assert_int_equal(fixture->message_count, 1);
    assert_string_equal(fixture->messages[0], expected);
}

static void test_every_problem_is_reported_in_one_run(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "threads", "65");
    set_member(root, "listen", "cleartext", "\"127.0.0.1:99999\"");
    set_member(root, "queues.invoices", "tier", "\"critcal\"");
    set_member(root, "queues.mailers", "classes", "[\"send_welcome\"]");
    set_member(root, "tiers.standard", "includes", "[\"bluk\"]");
    set_member(root, "queues.reports", "max_body_bytes", "2000000");
    json_t *key = json_array_get(object_at(root, "auth.keys"), 0);
    assert_int_equal(json_object_set_new(key, "file", json_string("keys/none.key")), 0);
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.threads: must be from 1 to 64, not 65");
    assert_reported(fixture, "$.listen.cleartext: port must be from 1 to 65535");
    assert_reported(fixture, "$.queues.invoices.tier: unknown tier \"critcal\"");
    assert_reported(fixture, "$.queues.mailers.classes[0]: \"send_welcome\" is not a class name "
                             "(a Ruby constant path such as Billing::SendInvoice, at most 128 "
                             "bytes)");
    assert_reported(fixture, "$.tiers.standard.includes[0]: unknown tier \"bluk\"");
    assert_reported(fixture, "$.queues.reports.max_body_bytes: 2000000 is above "
                             "$.limits.max_body_bytes (1048576)");
    char expected[512];
    snprintf(expected, sizeof expected,
             "$.auth.keys[0].file: cannot read %s/keys/none.key: No such file or directory",
             fixture->directory);
    assert_reported(fixture, expected);
    assert_int_equal(fixture->message_count, 7);
}

static size_t tier_index(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->tier_count; i++) {
        if (strcmp(config->tiers[i].name, name) == 0)
            return i;
    }
    fail_msg("no tier %s", name);
    return 0;
}

static int tier_grants(const struct config *config, const char *tier, const char *granted)
{
    uint64_t bit = (uint64_t)1 << tier_index(config, granted);
    return (config->tiers[tier_index(config, tier)].grants & bit) != 0;
}

static long sealing_key_index(const struct config *config, const char *kid)
{
    for (size_t i = 0; i < config->envelope.sealing_key_count; i++) {
        if (strcmp(config->envelope.sealing_keys[i].kid, kid) == 0)
            return (long)i;
    }
    fail_msg("no sealing key %s", kid);
    return -1;
}

static void test_envelope_section_loads(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "tiers.critical", "seal_to", "\"workers\"");
    write_document(fixture, root);

    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    const struct config_envelope *envelope = &config->envelope;
    assert_string_equal(envelope->signer.kid, "sign-1");
    /* The file holds the Ed25519 seed; the signer holds the key pair made from it. */
    unsigned char public_key[crypto_sign_PUBLICKEYBYTES];
    unsigned char secret_key[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(public_key, secret_key, fixture->signing_seed);
    assert_memory_equal(envelope->signer.secret_key, secret_key, sizeof secret_key);
    /* Defaults: a week to live, 30-second epochs, 16 jobs to a signature. */
    assert_int_equal(envelope->expires_after_seconds, 604800);
    assert_int_equal(envelope->seal_epoch_ms, 30000);
    assert_int_equal(envelope->jobs_per_signature, 16);

    assert_int_equal(envelope->sealing_key_count, 2);
    long workers = sealing_key_index(config, "workers");
    long others = sealing_key_index(config, "others");
    assert_memory_equal(envelope->sealing_keys[workers].public_key, fixture->workers_public,
                        KEYFILE_KEY_BYTES);
    assert_memory_equal(envelope->sealing_keys[others].public_key, fixture->others_public,
                        KEYFILE_KEY_BYTES);

    /* A tier's seal_to is its queues' unless they name their own; none is -1. */
    assert_int_equal(config->tiers[tier_index(config, "critical")].seal_to, workers);
    assert_int_equal(config->tiers[tier_index(config, "standard")].seal_to, -1);
    assert_int_equal(config_find_queue(config, "invoices", 8)->seal_to, workers);
    assert_int_equal(config_find_queue(config, "mailers", 7)->seal_to, -1);
    assert_int_equal(config_find_queue(config, "reports", 7)->seal_to, -1);
    config_free(config);
}

static void test_envelope_settings_are_read(void **state)
{
    struct fixture *fixture = *state;
    static const struct {
        const char *expires;
        const char *epoch;
        const char *per_signature;
        int64_t expires_after_seconds;
        uint64_t seal_epoch_ms;
        size_t jobs_per_signature;
    } cases[] = {
        {"60", "1", "1", 60, 1000, 1},
        {"7776000", "60", "256", 7776000, 60000, 256},
        {"86400", "30", "32", 86400, 30000, 32},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *root = base_document();
        set_member(root, "envelope", "expires_after_seconds", cases[i].expires);
        set_member(root, "envelope", "seal_epoch_seconds", cases[i].epoch);
        set_member(root, "envelope", "jobs_per_signature", cases[i].per_signature);
        write_document(fixture, root);
        struct config *config = load(fixture);
        print_messages(fixture);
        assert_non_null(config);
        assert_int_equal(config->envelope.expires_after_seconds, cases[i].expires_after_seconds);
        assert_int_equal(config->envelope.seal_epoch_ms, cases[i].seal_epoch_ms);
        assert_int_equal(config->envelope.jobs_per_signature, cases[i].jobs_per_signature);
        config_free(config);
    }
}

static void test_envelope_is_required(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "", "envelope", NULL, "$.envelope: is required");
    clear_messages(fixture);
    expect_problem(fixture, "", "envelope", "[]", "$.envelope: must be an object, not an array");
    clear_messages(fixture);
    expect_problem(fixture, "envelope", "signing_key", NULL, "$.envelope.signing_key: is required");
    clear_messages(fixture);
    expect_problem(fixture, "envelope.signing_key", "file", NULL,
                   "$.envelope.signing_key.file: is required");
    clear_messages(fixture);
    expect_problem(fixture, "envelope", "signer", "{}", "$.envelope.signer: unknown key");
    clear_messages(fixture);
    expect_problem(fixture, "envelope.sealing_keys.workers", "public_key", "\"x\"",
                   "$.envelope.sealing_keys.workers.public_key: unknown key");
}

static void test_sealing_keys_are_optional(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "envelope", "sealing_keys", NULL);
    write_document(fixture, root);

    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    assert_int_equal(config->envelope.sealing_key_count, 0);
    assert_int_equal(config_find_queue(config, "invoices", 8)->seal_to, -1);
    config_free(config);
}

static void test_bad_kids(void **state)
{
    static const char rule[] = "invalid key id (1 to 64 of A-Z, a-z, 0-9, _ and -)";
    struct fixture *fixture = *state;
    char expected[256];
    /* A kid of 65 characters, and one of 64, each quoted as JSON. */
    char too_long[KEYFILE_MAX_KID + 4], longest[KEYFILE_MAX_KID + 3];
    memset(too_long, 'k', sizeof too_long);
    too_long[0] = too_long[sizeof too_long - 2] = '"';
    too_long[sizeof too_long - 1] = '\0';
    memcpy(longest, too_long, sizeof longest - 2);
    longest[sizeof longest - 2] = '"';
    longest[sizeof longest - 1] = '\0';

    snprintf(expected, sizeof expected, "$.envelope.signing_key.kid: %s", rule);
    expect_problem(fixture, "envelope.signing_key", "kid", "\"sign.1\"", expected);
    clear_messages(fixture);
    expect_problem(fixture, "envelope.signing_key", "kid", too_long, expected);
    clear_messages(fixture);
    expect_problem(fixture, "envelope.signing_key", "kid", "\"\"",
                   "$.envelope.signing_key.kid: must not be empty");
    clear_messages(fixture);

    /* 64 characters is the most a kid may have; its key file is named for it. */
    char file[KEYFILE_MAX_KID + 32], file_json[KEYFILE_MAX_KID + 34];
    snprintf(file, sizeof file, "keys/%.*s.sign.key", KEYFILE_MAX_KID, longest + 1);
    snprintf(file_json, sizeof file_json, "\"%s\"", file);
    write_key(fixture, file, fixture->signing_seed);
    json_t *root = base_document();
    set_member(root, "envelope.signing_key", "kid", longest);
    set_member(root, "envelope.signing_key", "file", file_json);
    write_document(fixture, root);
    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    assert_int_equal(strlen(config->envelope.signer.kid), KEYFILE_MAX_KID);
    config_free(config);

    root = base_document();
    set_member(root, "envelope.sealing_keys", "bad key", "{\"file\": \"keys/workers.seal.pub\"}");
    set_member(root, "envelope.sealing_keys", "dotted.kid",
               "{\"file\": \"keys/workers.seal.pub\"}");
    write_document(fixture, root);
    load_fails(fixture);
    snprintf(expected, sizeof expected, "$.envelope.sealing_keys[\"bad key\"]: %s", rule);
    assert_reported(fixture, expected);
    snprintf(expected, sizeof expected, "$.envelope.sealing_keys[\"dotted.kid\"]: %s", rule);
    assert_reported(fixture, expected);
    assert_int_equal(fixture->message_count, 2);
}

static void test_unreadable_envelope_key_files(void **state)
{
    static const char not_a_key[] = "not a 32-byte key in base64url (one line, no padding)";
    struct fixture *fixture = *state;
    unsigned char short_key[KEYFILE_KEY_BYTES] = {0};
    char line[64], expected[512];
    struct text text;
    text_init(&text, line, sizeof line);
    keyfile_append_base64url(&text, short_key, KEYFILE_KEY_BYTES - 1);
    assert_non_null(text_finish(&text));
    write_text(fixture, "keys/short.sign.key", line);
    write_secret(fixture, "keys/binary.seal.pub");

    json_t *root = base_document();
    set_member(root, "envelope.signing_key", "file", "\"keys/missing.sign.key\"");
    write_document(fixture, root);
    load_fails(fixture);
    snprintf(expected, sizeof expected,
             "$.envelope.signing_key.file: cannot read %s/keys/missing.sign.key: No such file or "
             "directory",
             fixture->directory);
    assert_only_problem(fixture, expected);
    clear_messages(fixture);

    root = base_document();
    set_member(root, "envelope.signing_key", "file", "\"keys/short.sign.key\"");
    set_member(root, "envelope.sealing_keys.workers", "file", "\"keys/binary.seal.pub\"");
    set_member(root, "envelope.sealing_keys.others", "file", "\"keys\"");
    write_document(fixture, root);
    load_fails(fixture);
    snprintf(expected, sizeof expected,
             "$.envelope.signing_key.file: cannot read %s/keys/short.sign.key: %s",
             fixture->directory, not_a_key);
    assert_reported(fixture, expected);
    snprintf(expected, sizeof expected,
             "$.envelope.sealing_keys.workers.file: cannot read %s/keys/binary.seal.pub: %s",
             fixture->directory, not_a_key);
    assert_reported(fixture, expected);
    snprintf(expected, sizeof expected,
             "$.envelope.sealing_keys.others.file: cannot read %s/keys: not a regular file",
             fixture->directory);
    assert_reported(fixture, expected);
    assert_int_equal(fixture->message_count, 3);
}

static void test_envelope_out_of_range(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "envelope", "seal_epoch_seconds", "61");
    set_member(root, "envelope", "expires_after_seconds", "59");
    set_member(root, "envelope", "jobs_per_signature", "257");
    write_document(fixture, root);
    load_fails(fixture);
    assert_reported(fixture, "$.envelope.seal_epoch_seconds: must be from 1 to 60, not 61");
    assert_reported(fixture,
                    "$.envelope.expires_after_seconds: must be from 60 to 7776000, not 59");
    assert_reported(fixture, "$.envelope.jobs_per_signature: must be from 1 to 256, not 257");
    assert_int_equal(fixture->message_count, 3);
    clear_messages(fixture);

    root = base_document();
    set_member(root, "envelope", "seal_epoch_seconds", "0");
    set_member(root, "envelope", "expires_after_seconds", "7776001");
    set_member(root, "envelope", "jobs_per_signature", "0");
    write_document(fixture, root);
    load_fails(fixture);
    assert_reported(fixture, "$.envelope.seal_epoch_seconds: must be from 1 to 60, not 0");
    assert_reported(fixture,
                    "$.envelope.expires_after_seconds: must be from 60 to 7776000, not 7776001");
    assert_reported(fixture, "$.envelope.jobs_per_signature: must be from 1 to 256, not 0");
    assert_int_equal(fixture->message_count, 3);
    clear_messages(fixture);

    expect_problem(fixture, "envelope", "seal_epoch_seconds", "0.5",
                   "$.envelope.seal_epoch_seconds: must be an integer, not a number with a "
                   "fraction or an exponent");
}

static void test_unknown_seal_to(void **state)
{
    struct fixture *fixture = *state;
    expect_problem(fixture, "tiers.bulk", "seal_to", "\"nobody\"",
                   "$.tiers.bulk.seal_to: unknown sealing key \"nobody\": add it to "
                   "$.envelope.sealing_keys");
    clear_messages(fixture);
    expect_problem(fixture, "queues.reports", "seal_to", "\"Workers\"",
                   "$.queues.reports.seal_to: unknown sealing key \"Workers\": add it to "
                   "$.envelope.sealing_keys");
    clear_messages(fixture);
    expect_problem(fixture, "queues.reports", "seal_to", "7",
                   "$.queues.reports.seal_to: must be a string, not an integer");
    clear_messages(fixture);
    expect_problem(fixture, "tiers.bulk", "seal_to", "\"\"",
                   "$.tiers.bulk.seal_to: must not be empty");
}

static void test_secret_class_needs_seal_to(void **state)
{
    struct fixture *fixture = *state;
    write_text(fixture, "schemas/secret.json",
               "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"secret\": true}}");
    json_t *root = base_document();
    set_member(root, "classes.BuildReport", "schema", "\"schemas/secret.json\"");
    set_member(root, "classes.SendWelcomeEmail", "schema", "\"schemas/secret.json\"");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.queues.reports.classes: class \"BuildReport\" has secret fields, "
                             "but neither the queue nor its tier names a key to seal them to "
                             "(\"seal_to\")");
    assert_reported(fixture, "$.queues.mailers.classes: class \"SendWelcomeEmail\" has secret "
                             "fields, but neither the queue nor its tier names a key to seal them "
                             "to (\"seal_to\")");
    assert_int_equal(fixture->message_count, 2);
    clear_messages(fixture);

    /* A seal_to on the queue or on its tier is enough. */
    root = base_document();
    set_member(root, "classes.BuildReport", "schema", "\"schemas/secret.json\"");
    set_member(root, "classes.SendWelcomeEmail", "schema", "\"schemas/secret.json\"");
    set_member(root, "queues.reports", "seal_to", "\"others\"");
    set_member(root, "tiers.standard", "seal_to", "\"workers\"");
    write_document(fixture, root);
    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    assert_int_equal(config_find_queue(config, "reports", 7)->seal_to,
                     sealing_key_index(config, "others"));
    assert_int_equal(config_find_queue(config, "mailers", 7)->seal_to,
                     sealing_key_index(config, "workers"));
    config_free(config);
}

/* A seal_to that names no key is reported as unknown, not also as missing. */
static void test_secret_class_with_unknown_seal_to(void **state)
{
    struct fixture *fixture = *state;
    write_text(fixture, "schemas/secret.json",
               "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"secret\": true}}");
    json_t *root = base_document();
    set_member(root, "classes.BuildReport", "schema", "\"schemas/secret.json\"");
    set_member(root, "queues.reports", "seal_to", "\"nobody\"");
    write_document(fixture, root);

    load_fails(fixture);
    assert_reported(fixture, "$.queues.reports.seal_to: unknown sealing key \"nobody\": add it "
                             "to $.envelope.sealing_keys");
}

static void test_low_order_sealing_key(void **state)
{
    struct fixture *fixture = *state;
    unsigned char low_order[KEYFILE_KEY_BYTES] = {0};
    write_key(fixture, "keys/zero.seal.pub", low_order);
    low_order[0] = 1;
    write_key(fixture, "keys/one.seal.pub", low_order);

    json_t *root = base_document();
    set_member(root, "envelope.sealing_keys.workers", "file", "\"keys/zero.seal.pub\"");
    set_member(root, "envelope.sealing_keys.others", "file", "\"keys/one.seal.pub\"");
    write_document(fixture, root);
    load_fails(fixture);
    assert_reported(fixture,
                    "$.envelope.sealing_keys.workers.file: is not a usable X25519 public key");
    assert_reported(fixture,
                    "$.envelope.sealing_keys.others.file: is not a usable X25519 public key");
    assert_int_equal(fixture->message_count, 2);
}

static void test_queue_seal_to_overrides_its_tier(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "tiers.critical", "seal_to", "\"workers\"");
    set_member(root, "tiers.bulk", "seal_to", "\"workers\"");
    set_member(root, "queues.invoices", "seal_to", "\"others\"");
    set_member(root, "queues.mailers", "seal_to", "\"others\"");
    write_document(fixture, root);

    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    long workers = sealing_key_index(config, "workers");
    long others = sealing_key_index(config, "others");
    assert_int_equal(config->tiers[tier_index(config, "critical")].seal_to, workers);
    /* The queue's own wins over its tier's, */
    assert_int_equal(config_find_queue(config, "invoices", 8)->seal_to, others);
    /* a queue whose tier has none keeps its own, */
    assert_int_equal(config_find_queue(config, "mailers", 7)->seal_to, others);
    /* and one without its own takes its tier's. */
    assert_int_equal(config_find_queue(config, "reports", 7)->seal_to, workers);
    config_free(config);
}

static void test_grants_are_the_closure_of_includes(void **state)
{
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "", "tiers",
               "{\"critical\": {\"includes\": [\"standard\"]},"
               " \"standard\": {\"includes\": [\"bulk\"]},"
               " \"bulk\": {},"
               " \"ping\": {\"includes\": [\"pong\"]},"
               " \"pong\": {\"includes\": [\"ping\", \"pong\"]},"
               " \"chain0\": {\"includes\": [\"chain2\"]},"
               " \"chain1\": {\"includes\": [\"chain3\"]},"
               " \"chain2\": {\"includes\": [\"chain1\"]},"
               " \"chain3\": {}}");
    write_document(fixture, root);

    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);

    /* Transitive: critical reaches bulk through standard. */
    assert_true(tier_grants(config, "critical", "critical"));
    assert_true(tier_grants(config, "critical", "standard"));
    assert_true(tier_grants(config, "critical", "bulk"));
    assert_true(tier_grants(config, "standard", "bulk"));
    /* Nothing is implied upward. */
    assert_false(tier_grants(config, "standard", "critical"));
    assert_false(tier_grants(config, "bulk", "standard"));
    assert_int_equal(config->tiers[tier_index(config, "bulk")].grants,
                     (uint64_t)1 << tier_index(config, "bulk"));
    /* A cycle makes the two tiers equivalent and reaches nothing else. */
    assert_true(tier_grants(config, "ping", "pong"));
    assert_true(tier_grants(config, "pong", "ping"));
    assert_false(tier_grants(config, "ping", "bulk"));
    /* A chain whose links point back and forth in declaration order still closes. */
    assert_true(tier_grants(config, "chain0", "chain3"));
    assert_true(tier_grants(config, "chain0", "chain1"));
    assert_false(tier_grants(config, "chain3", "chain0"));
    config_free(config);
}

/*
 * config/example.json in the source tree, found from this file's own path, which is
 * relative to the repository when the build runs there, as the Makefile's does.
 */
/* The path of a file of the source tree, such as "config/example.json". */
static void source_path(char *out, size_t size, const char *relative)
{
    const char *suffix = "tests/unit/test_config.c";
    const char *file = __FILE__;
    size_t file_len = strlen(file);
    size_t prefix_len = file_len - strlen(suffix);
    assert_true(file_len >= strlen(suffix) && strcmp(file + prefix_len, suffix) == 0);
    snprintf(out, size, "%.*s%s", (int)prefix_len, file, relative);
}

/* Copies a file of the source tree into the fixture's directory, at the same path. */
static void copy_source_file(const struct fixture *fixture, const char *relative)
{
    char source[512], text[16384];
    source_path(source, sizeof source, relative);
    FILE *file = fopen(source, "rb");
    if (file == NULL)
        fail_msg("cannot open %s", source);
    size_t len = fread(text, 1, sizeof text, file);
    assert_true(len > 0 && len < sizeof text);
    assert_int_equal(fclose(file), 0);
    write_file(fixture, relative, text, len);
}

/*
 * The shipped example must load once the files it names exist. It names them relative
 * to its own directory (../run/...), so the layout is rebuilt in the temporary directory.
 */
static void test_example_config_loads(void **state)
{
    struct fixture *fixture = *state;
    static const char *const sources[] = {
        "config/example.json",           "schemas/SendInvoice.json",
        "schemas/SendWelcomeEmail.json", "schemas/SendPasswordReset.json",
        "schemas/BuildReport.json",
    };

    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++)
        copy_source_file(fixture, sources[i]);
    write_secret(fixture, "run/keys/dev-hs256.key");
    write_key(fixture, "run/keys/dev-sign.sign.key", fixture->signing_seed);
    write_key(fixture, "run/keys/dev-workers.seal.pub", fixture->workers_public);
    write_text(fixture, "run/tls/cert.pem", "certificate\n");
    write_text(fixture, "run/tls/key.pem", "key\n");
    snprintf(fixture->config_path, sizeof fixture->config_path, "%s/config/example.json",
             fixture->directory);

    struct config *config = load(fixture);
    print_messages(fixture);
    assert_non_null(config);
    assert_int_equal(fixture->message_count, 0);
    assert_non_null(config_find_queue(config, "invoices", 8));
    assert_non_null(config->tls.address.host);
    const struct config_class *invoice = config_find_class(config, "SendInvoice", 11);
    assert_non_null(invoice);
    assert_true(schema_has_secrets(invoice->schema));
    assert_string_equal(config->envelope.signer.kid, "dev-sign");
    assert_int_equal(config->envelope.sealing_key_count, 1);
    assert_string_equal(config->envelope.sealing_keys[0].kid, "dev-workers");
    assert_int_equal(config_find_queue(config, "invoices", 8)->seal_to, 0);
    assert_int_equal(config_find_queue(config, "mailers", 7)->max_depth, 1000000);
    assert_int_equal(config_find_queue(config, "invoices", 8)->max_depth, 0);
    assert_int_equal(config->tenant_count, 1);
    const struct config_tenant *acme = config_find_tenant(config, "acme");
    assert_string_equal(acme->name, "*");
    assert_rate(&acme->jobs, 2000, 4000);
    assert_int_equal(acme->max_body_bytes, 1048576);
    assert_int_equal(config->limits.http_body_cap, 1048576);
    config_free(config);
}

#ifndef SANITIZED
static void assert_same_string(const char *expected, const char *actual)
{
    if (expected == NULL)
        assert_null(actual);
    else
        assert_string_equal(expected, actual);
}

static void assert_same_strings(char **expected, char **actual, size_t count)
{
    for (size_t i = 0; i < count; i++)
        assert_same_string(expected[i], actual[i]);
}

/* Every part of two configs that config_load allocates is there and the same. */
static void assert_same_config(const struct config *expected, const struct config *actual)
{
    assert_same_string(expected->path, actual->path);
    assert_same_string(expected->cleartext.host, actual->cleartext.host);
    assert_same_string(expected->tls.address.host, actual->tls.address.host);
    assert_same_string(expected->tls.certificate_file, actual->tls.certificate_file);
    assert_same_string(expected->tls.key_file, actual->tls.key_file);
    assert_same_string(expected->redis.host, actual->redis.host);
    assert_same_string(expected->redis.username, actual->redis.username);
    assert_same_string(expected->redis.password, actual->redis.password);
    assert_same_string(expected->redis.namespace_, actual->redis.namespace_);
    assert_same_string(expected->auth.issuer, actual->auth.issuer);
    assert_same_string(expected->auth.audience, actual->auth.audience);
    assert_same_string(expected->auth.tenant_claim, actual->auth.tenant_claim);
    assert_non_null(actual->auth.keyring);

    const struct config_envelope *envelope = &expected->envelope;
    assert_string_equal(envelope->signer.kid, actual->envelope.signer.kid);
    assert_memory_equal(envelope->signer.secret_key, actual->envelope.signer.secret_key,
                        sizeof envelope->signer.secret_key);
    assert_int_equal(envelope->expires_after_seconds, actual->envelope.expires_after_seconds);
    assert_int_equal(envelope->seal_epoch_ms, actual->envelope.seal_epoch_ms);
    assert_int_equal(envelope->sealing_key_count, actual->envelope.sealing_key_count);
    for (size_t i = 0; i < envelope->sealing_key_count; i++) {
        assert_same_string(envelope->sealing_keys[i].kid, actual->envelope.sealing_keys[i].kid);
        assert_memory_equal(envelope->sealing_keys[i].public_key,
                            actual->envelope.sealing_keys[i].public_key, KEYFILE_KEY_BYTES);
    }

    assert_int_equal(expected->auth.key_count, actual->auth.key_count);
    for (size_t i = 0; i < expected->auth.key_count; i++) {
        assert_same_string(expected->auth.keys[i].kid, actual->auth.keys[i].kid);
        assert_same_string(expected->auth.keys[i].alg, actual->auth.keys[i].alg);
        assert_same_string(expected->auth.keys[i].file, actual->auth.keys[i].file);
    }
    assert_int_equal(expected->tier_count, actual->tier_count);
    for (size_t i = 0; i < expected->tier_count; i++) {
        assert_same_string(expected->tiers[i].name, actual->tiers[i].name);
        assert_int_equal(expected->tiers[i].grants, actual->tiers[i].grants);
        assert_int_equal(expected->tiers[i].seal_to, actual->tiers[i].seal_to);
    }
    assert_int_equal(expected->queue_count, actual->queue_count);
    for (size_t i = 0; i < expected->queue_count; i++) {
        const struct config_queue *want = &expected->queues[i], *got = &actual->queues[i];
        assert_same_string(want->name, got->name);
        assert_int_equal(want->tier, got->tier);
        assert_int_equal(want->class_count, got->class_count);
        assert_same_strings(want->classes, got->classes, want->class_count);
        assert_int_equal(want->tenant_count, got->tenant_count);
        assert_same_strings(want->tenants, got->tenants, want->tenant_count);
        assert_int_equal(want->any_tenant, got->any_tenant);
        assert_int_equal(want->max_body_bytes, got->max_body_bytes);
        assert_int_equal(want->seal_to, got->seal_to);
        assert_int_equal(want->max_depth, got->max_depth);
    }
    assert_int_equal(expected->tenant_count, actual->tenant_count);
    for (size_t i = 0; i < expected->tenant_count; i++) {
        const struct config_tenant *want = &expected->tenants[i], *got = &actual->tenants[i];
        assert_same_string(want->name, got->name);
        assert_rate(&got->jobs, want->jobs.per_second, want->jobs.burst);
        assert_int_equal(want->max_body_bytes, got->max_body_bytes);
    }
    assert_int_equal(expected->limits.http_body_cap, actual->limits.http_body_cap);
    assert_int_equal(expected->idempotency.window_seconds, actual->idempotency.window_seconds);
}

#endif

#ifndef SANITIZED
/*
 * Fails each allocation config_load makes of the config already written, one per run,
 * until a run makes none fail. A run with a failure must either report it and return
 * NULL, or return a config with nothing missing (libraries below it, such as OpenSSL
 * under the keyring, may recover from a failed allocation of their own); and it must
 * free whatever it allocated.
 *
 * jansson's allocations are left out: jansson 2.14's parser does not survive a failed
 * allocation (an assert in its string lexer, a double free when an object member cannot
 * be stored), which is its limitation, not one config can work around.
 */
static void fail_every_allocation(struct fixture *fixture)
{
    struct config *reference = load(fixture);
    print_messages(fixture);
    assert_non_null(reference);
    json_set_alloc_funcs(jansson_malloc, jansson_free);

    for (long failing = 0;; failing++) {
        allocations_made = 0;
        failing_allocation = failing;
        tracked_count = 0;
        allocator_armed = 1;
        struct config *config = load(fixture);
        allocator_armed = 0;

        if (allocations_made == 0) {
            /* Something (valgrind) stands between this allocator and the code. */
            config_free(config);
            config_free(reference);
            json_set_alloc_funcs(malloc, free);
            skip();
        }
        if (allocations_made <= failing) {
            /* Every allocation has had its turn to fail, and this run had none fail. */
            print_messages(fixture);
            assert_non_null(config);
            assert_same_config(reference, config);
            config_free(config);
            assert_true(failing > 20);
            assert_int_equal(tracked_count, 0);
            break;
        }
        if (config != NULL) {
            /* Only a failure below config_load that was recovered from gets here. */
            assert_int_equal(fixture->message_count, 0);
            assert_same_config(reference, config);
            config_free(config);
        } else if (fixture->message_count == 0) {
            fail_msg("allocation %ld failed, yet config_load reported nothing", failing);
        }
        assert_false(tracking_overflowed);
        if (tracked_count != 0)
            fail_msg("allocation %ld failed, and %zu blocks were not freed", failing,
                     tracked_count);
        clear_messages(fixture);
    }
    json_set_alloc_funcs(malloc, free);
    config_free(reference);
}
#endif

static void test_every_allocation_failure_is_reported(void **state)
{
#ifdef SANITIZED
    (void)state;
    skip();
#else
    struct fixture *fixture = *state;
    write_text(fixture, "secrets/redis.txt", "password\n");
    write_text(fixture, "tls/cert.pem", "certificate\n");
    write_text(fixture, "tls/key.pem", "key\n");
    json_t *root = base_document();
    set_member(root, "redis", "username", "\"jobgate\"");
    set_member(root, "redis", "password_file", "\"secrets/redis.txt\"");
    set_member(root, "listen", "tls",
               "{\"address\": \"127.0.0.1:8443\", \"certificate_file\": \"tls/cert.pem\","
               " \"key_file\": \"tls/key.pem\"}");
    set_member(root, "", "tenants",
               "{\"*\": {\"jobs_per_second\": 10}, \"acme\": {\"max_body_bytes\": 1000}}");
    write_document(fixture, root);
    fail_every_allocation(fixture);
#endif
}

/* The same with every envelope setting used: sealing keys named by tiers and queues. */
static void test_every_envelope_allocation_failure_is_reported(void **state)
{
#ifdef SANITIZED
    (void)state;
    skip();
#else
    struct fixture *fixture = *state;
    json_t *root = base_document();
    set_member(root, "envelope", "expires_after_seconds", "3600");
    set_member(root, "envelope", "seal_epoch_seconds", "5");
    set_member(root, "tiers.critical", "seal_to", "\"workers\"");
    set_member(root, "queues.reports", "seal_to", "\"others\"");
    write_document(fixture, root);
    fail_every_allocation(fixture);
#endif
}

static void test_free_null(void **state)
{
    (void)state;
    config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_base_config_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_queue_takes_a_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_setting_is_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_listen_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_needs_a_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths_resolve_against_the_config_directory,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_key_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_tls_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file_must_be_a_small_regular_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_alg_is_reported_without_its_key_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_queue_class_needs_a_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_problems_name_the_schema_file_and_pointer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyring_rejection_is_reported_at_the_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_kid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_must_not_be_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_entry_must_be_an_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_password_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_password_is_never_echoed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_username_needs_a_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_must_be_an_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_required_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_tier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_include, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_include, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tier_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiers_are_required_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_queue_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_class_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_classes_and_tenants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_any_tenant_must_stand_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signing_key_named_for_another_kid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_body_limit_above_global, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_burst_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_burst_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_bounds_are_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_out_of_range_fractions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenants_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_unknown_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tenant_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenants_are_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_any_tenant_is_added_when_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_body_limit_above_global, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_body_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reloadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_json_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error_has_line_and_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_config_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_problem_is_reported_in_one_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grants_are_the_closure_of_includes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_section_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_settings_are_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_is_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealing_keys_are_optional, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_kids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_envelope_key_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_seal_to, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_class_needs_seal_to, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_class_with_unknown_seal_to, setup, teardown),
        cmocka_unit_test_setup_teardown(test_low_order_sealing_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_seal_to_overrides_its_tier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_example_config_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_allocation_failure_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_envelope_allocation_failure_is_reported, setup,
                                        teardown),
        cmocka_unit_test(test_free_null),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
