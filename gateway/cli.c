/*
 * cli: line reading for the subcommands, and keygen and verify; see cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "envelope.h"
#include "job.h"
#include "keyfile.h"
#include "serialize.h"
#include "text.h"

#define MAX_LEEWAY_SECONDS 3600

ssize_t cli_read_line(FILE *input, char **line, size_t *capacity, int *too_long)
{
    size_t len = 0;
    int c;

    *too_long = 0;
    while ((c = getc(input)) != EOF && c != '\n') {
        if (len == CLI_LINE_MAX) {
            *too_long = 1;
            continue;
        }
        if (len + 1 >= *capacity) {
            size_t grown = *capacity == 0 ? 4096 : *capacity * 2;
            char *bigger = realloc(*line, grown);
            if (bigger == NULL)
                return -1;
            *line = bigger;
            *capacity = grown;
        }
        (*line)[len++] = (char)c;
    }
    if (c == EOF && len == 0 && !*too_long)
        return -1;
    return (ssize_t)len;
}

/* DIR/KID + suffix into path; returns 0, or -1 when it does not fit. */
static int key_path(char *path, size_t size, const char *dir, const char *kid, const char *suffix)
{
    struct text text;

    text_init(&text, path, size);
    text_append_str(&text, dir);
    text_append_str(&text, "/");
    text_append_str(&text, kid);
    text_append_str(&text, suffix);
    return text_finish(&text) != NULL ? 0 : -1;
}

/* Writes one secret and one public key file; on failure neither is left behind. */
static int write_pair(const char *dir, const char *kid, const char *secret_suffix,
                      const char *public_suffix, const unsigned char secret[KEYFILE_KEY_BYTES],
                      const unsigned char public_key[KEYFILE_KEY_BYTES])
{
    char secret_path[PATH_MAX], public_path[PATH_MAX];

    if (key_path(secret_path, sizeof(secret_path), dir, kid, secret_suffix) != 0 ||
        key_path(public_path, sizeof(public_path), dir, kid, public_suffix) != 0) {
        fprintf(stderr, "jobgate: keygen: path too long\n");
        return 1;
    }
    if (keyfile_write(secret_path, secret, 0600) != 0) {
        fprintf(stderr, "jobgate: keygen: cannot create %s: %s\n", secret_path, strerror(errno));
        return 1;
    }
    if (keyfile_write(public_path, public_key, 0644) != 0) {
        fprintf(stderr, "jobgate: keygen: cannot create %s: %s\n", public_path, strerror(errno));
        remove(secret_path);
        return 1;
    }
    printf("%s\n%s\n", secret_path, public_path);
    return 0;
}

/*
 * Makes a signing (Ed25519) or sealing (X25519) key pair as two key files in a
 * directory. Never overwrites a file.
 */
int command_keygen(int argc, char **argv)
{
    static const struct option options[] = {{"kind", required_argument, NULL, 'k'},
                                            {"kid", required_argument, NULL, 'i'},
                                            {"dir", required_argument, NULL, 'd'},
                                            {NULL, 0, NULL, 0}};
    const char *kind = NULL, *kid = NULL, *dir = ".";
    unsigned char secret[crypto_sign_SECRETKEYBYTES], public_key[KEYFILE_KEY_BYTES];
    int option, status;

    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (option == 'k')
            kind = optarg;
        else if (option == 'i')
            kid = optarg;
        else if (option == 'd')
            dir = optarg;
        else
            return 2;
    }
    if (kind == NULL || kid == NULL || (strcmp(kind, "sign") != 0 && strcmp(kind, "seal") != 0)) {
        fprintf(stderr, "jobgate: keygen needs --kind sign|seal and --kid NAME\n");
        return 2;
    }
    if (!keyfile_kid_valid(kid, strlen(kid))) {
        fprintf(stderr, "jobgate: keygen: --kid must be 1 to 64 of A-Z, a-z, 0-9, _ and -\n");
        return 2;
    }

    /* The directory is made if it is missing, private since it will hold a secret key. */
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "jobgate: keygen: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }

    if (strcmp(kind, "sign") == 0) {
        /* libsodium's Ed25519 secret key is the 32-byte seed followed by the public key. */
        crypto_sign_keypair(public_key, secret);
        status = write_pair(dir, kid, KEYFILE_SIGN_SECRET, KEYFILE_SIGN_PUBLIC, secret, public_key);
    } else {
        crypto_box_keypair(public_key, secret);
        status = write_pair(dir, kid, KEYFILE_SEAL_SECRET, KEYFILE_SEAL_PUBLIC, secret, public_key);
    }
    sodium_memzero(secret, sizeof(secret));
    return status;
}

/* The keys a worker holds, loaded from one directory. */
static int load_keyring(const char *dir, struct envelope_keyring *keyring,
                        struct keyfile_key **signing, struct keyfile_key **sealing)
{
    const char *reason;
    char bad_name[256];
    long count;

    *signing = *sealing = NULL;
    count = keyfile_load_directory(dir, KEYFILE_SIGN_PUBLIC, signing, bad_name, sizeof(bad_name),
                                   &reason);
    if (count >= 0) {
        keyring->signing = *signing;
        keyring->signing_count = (size_t)count;
        count = keyfile_load_directory(dir, KEYFILE_SEAL_SECRET, sealing, bad_name,
                                       sizeof(bad_name), &reason);
        keyring->sealing = *sealing;
        keyring->sealing_count = count > 0 ? (size_t)count : 0;
    }
    if (count < 0) {
        fprintf(stderr, "jobgate: verify: %s%s%s: %s\n", dir, bad_name[0] ? "/" : "", bad_name,
                reason);
        return -1;
    }
    if (keyring->signing_count == 0) {
        fprintf(stderr, "jobgate: verify: no *%s file in %s\n", KEYFILE_SIGN_PUBLIC, dir);
        return -1;
    }
    return 0;
}

/* Prints "N: valid JOB" or "N: refused: REASON: DETAIL"; returns 0 when valid. */
static int print_opened(const struct envelope_keyring *keyring,
                        const struct envelope_expect *expect, size_t line_number, const char *line,
                        size_t len)
{
    json_error_t error;
    json_t *payload = json_loadb(line, len, JSON_REJECT_DUPLICATES, &error);
    enum envelope_refusal refusal;
    const char *detail;
    json_t *opened;
    char *text;

    if (payload == NULL) {
        printf("%zu: refused: %s: not a JSON object: %s\n", line_number,
               envelope_refusal_name(ENVELOPE_MALFORMED), job_json_error(&error));
        return 1;
    }
    refusal = envelope_open(payload, keyring, expect, &opened, &detail);
    json_decref(payload);
    if (refusal != ENVELOPE_VALID) {
        printf("%zu: refused: %s: %s\n", line_number, envelope_refusal_name(refusal), detail);
        return 1;
    }
    text = json_dumps(opened, JSON_COMPACT);
    json_decref(opened);
    if (text == NULL) {
        printf("%zu: refused: %s: out of memory\n", line_number,
               envelope_refusal_name(ENVELOPE_MALFORMED));
        return 1;
    }
    printf("%zu: valid %s\n", line_number, text);
    sodium_memzero(text, strlen(text));
    free(text);
    return 0;
}

/* Reads an integer option; returns 0, or -1 when it is not one within [min, max]. */
static int integer_option(const char *text, long long min, long long max, int64_t *out)
{
    char *end;
    long long value;

    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

/*
 * Checks payloads read from standard input, one per line as Redis holds them, as a
 * worker kit would, and prints each one's verdict with the opened job. Exits 1 if any
 * is refused, 2 on a usage or key problem.
 */
int command_verify(int argc, char **argv)
{
    static const struct option options[] = {
        {"keys", required_argument, NULL, 'k'},   {"queue", required_argument, NULL, 'q'},
        {"class", required_argument, NULL, 'c'},  {"now", required_argument, NULL, 'n'},
        {"leeway", required_argument, NULL, 'l'}, {NULL, 0, NULL, 0}};
    struct envelope_expect expect = {.now = (int64_t)time(NULL)};
    struct envelope_keyring keyring = {0};
    struct keyfile_key *signing, *sealing;
    const char *dir = NULL;
    char *line = NULL;
    size_t capacity = 0, line_number = 0;
    int option, failed = 0, too_long;
    ssize_t len;

    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        int bad = 0;
        if (option == 'k')
            dir = optarg;
        else if (option == 'q')
            expect.queue = optarg;
        else if (option == 'c')
            expect.class_name = optarg;
        else if (option == 'n')
            bad = integer_option(optarg, 0, INT32_MAX * 4LL, &expect.now);
        else if (option == 'l')
            bad = integer_option(optarg, 0, MAX_LEEWAY_SECONDS, &expect.leeway_seconds);
        else
            return 2;
        if (bad) {
            fprintf(stderr, "jobgate: verify: bad number '%s'\n", optarg);
            return 2;
        }
    }
    if (dir == NULL) {
        fprintf(stderr, "jobgate: verify needs --keys DIR (its *.sign.pub and *.seal.key)\n");
        return 2;
    }
    if (load_keyring(dir, &keyring, &signing, &sealing) != 0)
        return 2;

    while ((len = cli_read_line(stdin, &line, &capacity, &too_long)) >= 0) {
        line_number++;
        if (too_long) {
            printf("%zu: refused: %s: over %d bytes\n", line_number,
                   envelope_refusal_name(ENVELOPE_MALFORMED), CLI_LINE_MAX);
            failed = 1;
            continue;
        }
        while (len > 0 && line[len - 1] == '\r')
            len--;
        if (len > 0)
            failed |= print_opened(&keyring, &expect, line_number, line, (size_t)len);
    }
    if (line != NULL)
        sodium_memzero(line, capacity);
    free(line);
    if (sealing != NULL)
        sodium_memzero(sealing, keyring.sealing_count * sizeof(*sealing));
    free(signing);
    free(sealing);
    return failed;
}
