/*
 * main: the jobgate command and its subcommands.
 *
 *   jobgate serve --config FILE
 *   jobgate check-config --config FILE
 *   jobgate token --config FILE --scope "tier:x queue:y" [--kid KID] [--key FILE]
 *                 [--tenant T] [--subject S] [--ttl SECONDS]
 *   jobgate validate --schema FILE < values, one JSON value per line
 *   jobgate keygen --kind sign|seal --kid NAME [--dir DIR]
 *   jobgate verify --keys DIR [--queue Q] [--class C] [--now UNIX] [--leeway S] < payloads
 *   jobgate version | help
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "cli.h"
#include "config.h"
#include "job.h"
#include "log.h"
#include "schema.h"
#include "transport.h"

#define KEY_FILE_MAX (64 * 1024)
#define MAX_TOKEN_TTL (7 * 24 * 3600)
#define VALIDATE_ERRORS_SHOWN 16

static const char usage[] =
    "usage: jobgate COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  serve --config FILE           serve until SIGTERM or SIGINT, then drain\n"
    "  check-config --config FILE    report every problem in a config, or print ok\n"
    "  token --config FILE --scope \"tier:NAME queue:NAME\" [--kid KID]\n"
    "        [--key PRIVATE_KEY_FILE] [--tenant TENANT] [--subject SUBJECT] [--ttl SECONDS]\n"
    "                                mint a test token signed with a key of the config\n"
    "  validate --schema FILE        check JSON values, one per line on standard input,\n"
    "                                against a schema: one verdict per line\n"
    "  keygen --kind sign|seal --kid NAME [--dir DIR]\n"
    "                                make a signing (Ed25519) or sealing (X25519) key pair:\n"
    "                                DIR/NAME.KIND.key (mode 0600) and DIR/NAME.KIND.pub\n"
    "  verify --keys DIR [--queue Q] [--class C] [--now UNIX] [--leeway SECONDS]\n"
    "                                check Resque payloads, one per line on standard input,\n"
    "                                as a worker would: \"N: valid JOB\" with the secrets\n"
    "                                opened, or \"N: refused: REASON: DETAIL\"\n"
    "  version                       print the version\n"
    "  help                          print this text\n"
    "\n"
    "token: --kid defaults to the config's first key; HMAC keys sign with the config's own\n"
    "key file, RS256 and ES256 keys need their private key in --key. --tenant defaults\n"
    "to acme, --subject to developer, --ttl to 3600.\n";

/* Whether a subcommand's only argument asks for help. */
static int asks_for_help(int argc, char **argv)
{
    return argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
}

static void print_problem(void *data, const char *message)
{
    (void)data;
    fprintf(stderr, "%s\n", message);
}

static struct config *load_config(const char *path)
{
    if (path == NULL) {
        fprintf(stderr, "jobgate: --config FILE is required\n");
        return NULL;
    }
    return config_load(path, print_problem, NULL);
}

/* Parses the only option serve and check-config take. */
static const char *config_option(int argc, char **argv)
{
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int option;

    while ((option = getopt_long(argc, argv, "c:", options, NULL)) != -1) {
        if (option != 'c')
            return NULL;
        path = optarg;
    }
    return path;
}

static int command_serve(int argc, char **argv)
{
    struct config *config = load_config(config_option(argc, argv));
    int status;

    if (config == NULL)
        return 2;
    status = transport_serve(config);
    config_release(config);
    return status;
}

static int command_check_config(int argc, char **argv)
{
    const char *path = config_option(argc, argv);
    struct config *config = load_config(path);

    if (config == NULL)
        return 1;
    printf("%s: ok: queues %zu, tiers %zu, keys %zu\n", path, config->queue_count,
           config->tier_count, config->auth.key_count);
    config_free(config);
    return 0;
}

/* Reads a whole key file of at most KEY_FILE_MAX bytes into a malloc'd buffer. */
static unsigned char *read_key_file(const char *path, size_t *len)
{
    FILE *file = fopen(path, "rb");
    unsigned char *buffer;

    if (file == NULL) {
        fprintf(stderr, "jobgate: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    buffer = malloc(KEY_FILE_MAX);
    *len = buffer != NULL ? fread(buffer, 1, KEY_FILE_MAX, file) : 0;
    if (buffer != NULL && (ferror(file) || !feof(file))) {
        fprintf(stderr, "jobgate: cannot read %s: unreadable or over %d bytes\n", path,
                KEY_FILE_MAX);
        free(buffer);
        buffer = NULL;
    }
    fclose(file);
    return buffer;
}

struct token_request {
    const char *config_path;
    const char *kid;
    const char *key_path;
    const char *tenant;
    const char *subject;
    const char *scope;
    long ttl;
};

static int parse_token_options(int argc, char **argv, struct token_request *request)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},  {"kid", required_argument, NULL, 'k'},
        {"key", required_argument, NULL, 'K'},     {"tenant", required_argument, NULL, 't'},
        {"subject", required_argument, NULL, 's'}, {"scope", required_argument, NULL, 'S'},
        {"ttl", required_argument, NULL, 'T'},     {NULL, 0, NULL, 0}};
    int option;
    char *end;

    *request = (struct token_request){.tenant = "acme", .subject = "developer", .ttl = 3600};
    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (option) {
        case 'c':
            request->config_path = optarg;
            break;
        case 'k':
            request->kid = optarg;
            break;
        case 'K':
            request->key_path = optarg;
            break;
        case 't':
            request->tenant = optarg;
            break;
        case 's':
            request->subject = optarg;
            break;
        case 'S':
            request->scope = optarg;
            break;
        case 'T':
            errno = 0;
            request->ttl = strtol(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || request->ttl < 1 || request->ttl > MAX_TOKEN_TTL) {
                fprintf(stderr, "jobgate: --ttl takes 1 to %d seconds\n", MAX_TOKEN_TTL);
                return -1;
            }
            break;
        default:
            return -1;
        }
    }
    if (request->scope == NULL) {
        fprintf(stderr, "jobgate: token needs --scope, e.g. --scope \"tier:standard\"\n");
        return -1;
    }
    return 0;
}

static char *token_claims(const struct config *config, const struct token_request *request)
{
    time_t now = time(NULL);
    json_t *claims = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "iss", config->auth.issuer,
                               "aud", config->auth.audience, "sub", request->subject,
                               config->auth.tenant_claim, request->tenant, "scope", request->scope,
                               "iat", (json_int_t)now, "exp", (json_int_t)(now + request->ttl));
    char *text = claims != NULL ? json_dumps(claims, JSON_COMPACT) : NULL;

    json_decref(claims);
    return text;
}

static const struct config_key *find_key(const struct config *config, const char *kid)
{
    for (size_t i = 0; i < config->auth.key_count; i++) {
        if (kid == NULL || strcmp(config->auth.keys[i].kid, kid) == 0)
            return &config->auth.keys[i];
    }
    return NULL;
}

/* Signs with the config's own key file for HMAC keys, or with --key for the others. */
static int command_token(int argc, char **argv)
{
    struct token_request request;
    const struct config_key *key;
    struct config *config;
    unsigned char *material = NULL;
    char *claims = NULL, *token = NULL;
    const char *reason = "out of memory";
    size_t len;
    int status = 1;

    if (parse_token_options(argc, argv, &request) != 0 ||
        (config = load_config(request.config_path)) == NULL)
        return 2;
    key = find_key(config, request.kid);
    if (key == NULL) {
        fprintf(stderr, "jobgate: no key with kid %s in %s\n", request.kid, config->path);
    } else if (strncmp(key->alg, "HS", 2) != 0 && request.key_path == NULL) {
        fprintf(stderr, "jobgate: kid %s is %s: give its private key with --key FILE\n", key->kid,
                key->alg);
    } else if (strncmp(key->alg, "HS", 2) == 0 && request.key_path != NULL) {
        fprintf(stderr, "jobgate: kid %s is %s: it signs with the config's key file, not --key\n",
                key->kid, key->alg);
    } else if ((material = read_key_file(request.key_path ? request.key_path : key->file, &len)) !=
               NULL) {
        claims = token_claims(config, &request);
        token = claims ? auth_mint(key->alg, key->kid, material, len, claims, &reason) : NULL;
        if (token == NULL) {
            fprintf(stderr, "jobgate: cannot mint a token: %s\n", reason);
        } else {
            printf("%s\n", token);
            status = 0;
        }
    }
    if (material != NULL)
        sodium_memzero(material, KEY_FILE_MAX);
    free(material);
    free(claims);
    free(token);
    config_free(config);
    return status;
}

/* Prints one line's verdict: "N: valid", or "N: invalid: POINTER KEYWORD: MESSAGE; ...". */
static int print_verdict(const struct schema *schema, size_t line_number, const char *line,
                         size_t len)
{
    struct schema_error errors[VALIDATE_ERRORS_SHOWN];
    json_error_t error;
    json_t *value = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    size_t total;

    if (value == NULL) {
        printf("%zu: not JSON: %s at column %d\n", line_number, job_json_error(&error),
               error.column);
        return 1;
    }
    total = schema_validate(schema, value, errors, VALIDATE_ERRORS_SHOWN);
    json_decref(value);
    if (total == 0) {
        printf("%zu: valid\n", line_number);
        return 0;
    }
    printf("%zu: invalid:", line_number);
    for (size_t i = 0; i < total && i < VALIDATE_ERRORS_SHOWN; i++)
        printf("%s %s %s: %s", i == 0 ? "" : ";", errors[i].pointer[0] ? errors[i].pointer : "/",
               errors[i].keyword, errors[i].message);
    if (total > VALIDATE_ERRORS_SHOWN)
        printf("; and %zu more", total - VALIDATE_ERRORS_SHOWN);
    printf("\n");
    return 1;
}

/*
 * Checks JSON values read from standard input, one per line (blank lines skipped),
 * against a schema, so producers can test their payloads in their own CI. Exits 1 if
 * any value is invalid or not JSON, 2 if the schema does not load.
 */
static int command_validate(int argc, char **argv)
{
    static const struct option options[] = {{"schema", required_argument, NULL, 's'},
                                            {NULL, 0, NULL, 0}};
    const char *path = NULL;
    struct schema *schema;
    char *line = NULL;
    size_t capacity = 0, line_number = 0;
    ssize_t len;
    int option, failed = 0, too_long;

    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (option != 's')
            return 2;
        path = optarg;
    }
    if (path == NULL) {
        fprintf(stderr, "jobgate: validate needs --schema FILE\n");
        return 2;
    }
    if ((schema = schema_load_file(path, NULL, print_problem, NULL)) == NULL)
        return 2;

    while ((len = cli_read_line(stdin, &line, &capacity, &too_long)) >= 0) {
        line_number++;
        if (too_long) {
            printf("%zu: too long: over %d bytes\n", line_number, CLI_LINE_MAX);
            failed = 1;
            continue;
        }
        while (len > 0 && line[len - 1] == '\r')
            len--;
        if (len == 0)
            continue;
        failed |= print_verdict(schema, line_number, line, (size_t)len);
    }
    free(line);
    schema_free(schema);
    return failed;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {
        {"serve", command_serve},   {"check-config", command_check_config},
        {"token", command_token},   {"validate", command_validate},
        {"keygen", command_keygen}, {"verify", command_verify},
    };
    const char *command = argc > 1 ? argv[1] : NULL;

    if (command == NULL) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 ||
        strcmp(command, "-h") == 0 || asks_for_help(argc - 1, argv + 1)) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0) {
        printf("jobgate %s\n", JOBGATE_VERSION);
        return 0;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "jobgate: libsodium failed to initialise\n");
        return 1;
    }
    json_object_seed(0);

    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(command, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "jobgate: unknown command '%s'\n\n%s", command, usage);
    return 2;
}
