/*
 * Unit tests for keyfile: base64url without padding, strict in what it reads; key ids;
 * key files written and read back; and loading a directory of them, which takes only
 * NAME + suffix with a valid NAME and names the file that spoils the load.
 *
 * Files live in a directory made by mkdtemp under /tmp for each test and removed after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyfile.h"

/* The base64url of a 32-byte key: 43 characters. */
#define KEY_TEXT_LEN 43

struct fixture {
    char directory[64];
};

static int setup(void **state)
{
    struct fixture *fixture = calloc(1, sizeof(*fixture));

    assert_non_null(fixture);
    snprintf(fixture->directory, sizeof(fixture->directory), "/tmp/jobgate-keyfile-XXXXXX");
    assert_non_null(mkdtemp(fixture->directory));
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

    assert_int_equal(nftw(fixture->directory, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(fixture);
    return 0;
}

/* The path of name inside the fixture's directory. */
static void path_of(const struct fixture *fixture, const char *name, char *out, size_t size)
{
    int written = snprintf(out, size, "%s/%s", fixture->directory, name);

    assert_true(written > 0 && (size_t)written < size);
}

static void write_bytes(const struct fixture *fixture, const char *name, const void *content,
                        size_t len)
{
    char path[256];
    FILE *file;

    path_of(fixture, name, path, sizeof(path));
    file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(content, 1, len, file), len);
    assert_int_equal(fclose(file), 0);
}

static void write_string(const struct fixture *fixture, const char *name, const char *content)
{
    write_bytes(fixture, name, content, strlen(content));
}

/* bytes in base64url, written to out (which must hold the text and its NUL). */
static const char *encode(const unsigned char *bytes, size_t len, char *out, size_t size)
{
    struct text text;
    const char *encoded;

    text_init(&text, out, size);
    keyfile_append_base64url(&text, bytes, len);
    encoded = text_finish(&text);
    assert_non_null(encoded);
    return encoded;
}

/* A key's file content: its base64url and then ending (such as "\n"). */
static void key_line(const unsigned char key[KEYFILE_KEY_BYTES], const char *ending, char *out,
                     size_t size)
{
    char encoded[64];

    assert_true((size_t)snprintf(out, size, "%s%s",
                                 encode(key, KEYFILE_KEY_BYTES, encoded, sizeof(encoded)),
                                 ending) < size);
}

static int decodes(const char *text, size_t out_len)
{
    unsigned char out[64];

    assert_true(out_len <= sizeof(out));
    return keyfile_decode(text, strlen(text), out, out_len) == 0;
}

static void test_base64url_known_values(void **state)
{
    static const struct {
        const char *bytes;
        const char *encoded;
    } cases[] = {
        {"", ""},
        {"f", "Zg"},
        {"fo", "Zm8"},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg"},
        {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"},
        /* The two characters where base64url differs from base64 ("+/8="). */
        {"\xfb\xff", "-_8"},
    };
    char encoded[32];
    unsigned char decoded[32];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].bytes);
        assert_string_equal(
            encode((const unsigned char *)cases[i].bytes, len, encoded, sizeof(encoded)),
            cases[i].encoded);
        assert_int_equal(keyfile_decode(cases[i].encoded, strlen(cases[i].encoded), decoded, len),
                         0);
        assert_memory_equal(decoded, cases[i].bytes, len);
    }
}

static void test_base64url_round_trip(void **state)
{
    unsigned char bytes[100], decoded[100];
    char encoded[160];

    (void)state;
    for (size_t len = 0; len <= sizeof(bytes); len++) {
        randombytes_buf(bytes, len);
        encode(bytes, len, encoded, sizeof(encoded));
        assert_int_equal(strlen(encoded), (4 * len + 2) / 3);
        assert_null(strchr(encoded, '='));
        assert_null(strchr(encoded, '+'));
        assert_null(strchr(encoded, '/'));
        memset(decoded, 0xa5, sizeof(decoded));
        assert_int_equal(keyfile_decode(encoded, strlen(encoded), decoded, len), 0);
        assert_memory_equal(decoded, bytes, len);
    }
}

static void test_base64url_is_strict(void **state)
{
    (void)state;
    assert_true(decodes("Zm8", 2));
    /* Padding, even where base64 would want it. */
    assert_false(decodes("Zm8=", 2));
    assert_false(decodes("Zg==", 1));
    /* base64's own characters. */
    assert_true(decodes("-_8", 2));
    assert_false(decodes("+_8", 2));
    assert_false(decodes("-/8", 2));
    /* Not exactly the length asked for. */
    assert_false(decodes("Zm9v", 2));
    assert_false(decodes("Zm9v", 4));
    assert_false(decodes("Zm8", 3));
    assert_false(decodes("Zm8", 1));
    /* A length no encoding has. */
    assert_false(decodes("Z", 1));
    assert_false(decodes("Zm9vY", 4));
    /* Bits past the last byte must be zero: "Zm9" is "fo" with a stray bit. */
    assert_false(decodes("Zm9", 2));
    assert_false(decodes("Zh", 1));
    /* Whitespace and other bytes anywhere. */
    assert_false(decodes("Zm 8", 2));
    assert_false(decodes(" Zm8", 2));
    assert_false(decodes("Zm8\n", 2));
    assert_false(decodes("Zm.8", 2));
    assert_false(decodes("Z\xc3\xa9", 2));

    /* The length given is what counts, not a NUL inside it. */
    unsigned char out[2];
    assert_int_equal(keyfile_decode("Zm8\0", 4, out, 2), -1);
    assert_int_equal(keyfile_decode("Zm8xx", 3, out, 2), 0);
}

static void test_base64url_append_respects_the_buffer(void **state)
{
    static const unsigned char bytes[] = {'f', 'o'};
    char buffer[8];
    struct text text;

    (void)state;
    /* "Zm8" and its NUL need four bytes. */
    text_init(&text, buffer, 3);
    keyfile_append_base64url(&text, bytes, sizeof(bytes));
    assert_true(text.overflowed);
    assert_int_equal(text.len, 0);
    assert_null(text_finish(&text));

    text_init(&text, buffer, 4);
    keyfile_append_base64url(&text, bytes, sizeof(bytes));
    assert_string_equal(text_finish(&text), "Zm8");

    /* Appends after another append, and stops at the first that does not fit. */
    text_init(&text, buffer, sizeof(buffer));
    text_append_str(&text, "k=");
    keyfile_append_base64url(&text, bytes, sizeof(bytes));
    assert_string_equal(text_finish(&text), "k=Zm8");
    keyfile_append_base64url(&text, bytes, sizeof(bytes));
    assert_null(text_finish(&text));
}

/* The encoder for public values writes what the constant-time one writes, byte for byte. */
static void test_public_base64url_agrees(void **state)
{
    unsigned char bytes[100];
    char fast[160], constant_time[160];
    struct text a, b;

    (void)state;
    randombytes_buf(bytes, sizeof(bytes));
    bytes[0] = 0xff;
    bytes[1] = 0xfb;
    for (size_t len = 0; len <= sizeof(bytes); len++) {
        text_init(&a, fast, sizeof(fast));
        text_init(&b, constant_time, sizeof(constant_time));
        text_append_base64url(&a, bytes, len);
        keyfile_append_base64url(&b, bytes, len);
        assert_string_equal(text_finish(&a), text_finish(&b));
    }

    /* "Zm8" and its NUL need four bytes; a later append that does not fit marks it. */
    text_init(&a, fast, 3);
    text_append_base64url(&a, (const unsigned char *)"fo", 2);
    assert_null(text_finish(&a));
    text_init(&a, fast, 4);
    text_append_base64url(&a, (const unsigned char *)"fo", 2);
    assert_string_equal(text_finish(&a), "Zm8");
    text_append_base64url(&a, (const unsigned char *)"f", 1);
    assert_null(text_finish(&a));
}

static void test_kid_validation(void **state)
{
    char kid[KEYFILE_MAX_KID + 2];

    (void)state;
    memset(kid, 'a', sizeof(kid));
    kid[sizeof(kid) - 1] = '\0';
    assert_true(keyfile_kid_valid(kid, KEYFILE_MAX_KID));
    assert_false(keyfile_kid_valid(kid, KEYFILE_MAX_KID + 1));
    assert_true(keyfile_kid_valid("a", 1));
    assert_false(keyfile_kid_valid("", 0));
    assert_true(keyfile_kid_valid("sign-2026_12-ABC-xyz-09", 23));
    assert_true(keyfile_kid_valid("-", 1));
    assert_true(keyfile_kid_valid("_", 1));
    assert_false(keyfile_kid_valid("sign.2026", 9));
    assert_false(keyfile_kid_valid(".", 1));
    assert_false(keyfile_kid_valid("..", 2));
    assert_false(keyfile_kid_valid("a/b", 3));
    assert_false(keyfile_kid_valid("a b", 3));
    assert_false(keyfile_kid_valid("a+b", 3));
    assert_false(keyfile_kid_valid("caf\xc3\xa9", 5));
    assert_false(keyfile_kid_valid("a\0b", 3));
    /* Only len bytes are looked at. */
    assert_true(keyfile_kid_valid("ab.c", 2));
    assert_false(keyfile_kid_valid("ab.c", 3));
}

static void test_write_then_read(void **state)
{
    struct fixture *fixture = *state;
    unsigned char key[KEYFILE_KEY_BYTES], other[KEYFILE_KEY_BYTES], read_back[KEYFILE_KEY_BYTES];
    char path[256], expected[64], content[64];
    const char *reason = NULL;
    struct stat status;
    FILE *file;
    size_t len;

    randombytes_buf(key, sizeof(key));
    randombytes_buf(other, sizeof(other));
    path_of(fixture, "workers.seal.key", path, sizeof(path));
    assert_int_equal(keyfile_write(path, key, 0600), 0);

    assert_int_equal(stat(path, &status), 0);
    assert_true(S_ISREG(status.st_mode));
    assert_int_equal(status.st_mode & 07777, 0600);

    /* One line: the base64url and a newline. */
    file = fopen(path, "rb");
    assert_non_null(file);
    len = fread(content, 1, sizeof(content) - 1, file);
    assert_int_equal(fclose(file), 0);
    content[len] = '\0';
    key_line(key, "\n", expected, sizeof(expected));
    assert_int_equal(len, KEY_TEXT_LEN + 1);
    assert_string_equal(content, expected);

    assert_int_equal(keyfile_read(path, read_back, &reason), 0);
    assert_memory_equal(read_back, key, sizeof(key));

    /* An existing file is never replaced, nor removed by the failed attempt. */
    assert_int_equal(keyfile_write(path, other, 0600), -1);
    assert_int_equal(keyfile_read(path, read_back, &reason), 0);
    assert_memory_equal(read_back, key, sizeof(key));
    assert_int_equal(stat(path, &status), 0);
    assert_int_equal(status.st_mode & 07777, 0600);

    /* Nor is a directory, or a file in a directory that does not exist. */
    assert_int_equal(keyfile_write(fixture->directory, other, 0600), -1);
    path_of(fixture, "missing/workers.seal.key", path, sizeof(path));
    assert_int_equal(keyfile_write(path, other, 0600), -1);
}

static void expect_unreadable(const struct fixture *fixture, const char *name,
                              const char *expected_reason)
{
    unsigned char key[KEYFILE_KEY_BYTES];
    char path[256];
    const char *reason = NULL;

    path_of(fixture, name, path, sizeof(path));
    if (keyfile_read(path, key, &reason) != -1)
        fail_msg("%s was read as a key", name);
    assert_non_null(reason);
    if (strcmp(reason, expected_reason) != 0)
        fail_msg("%s: \"%s\", expected \"%s\"", name, reason, expected_reason);
}

static void test_read_refuses_what_is_not_one_key(void **state)
{
    static const char not_a_key[] = "not a 32-byte key in base64url (one line, no padding)";
    struct fixture *fixture = *state;
    unsigned char key[KEYFILE_KEY_BYTES + 1], read_back[KEYFILE_KEY_BYTES];
    char line[128], path[256];
    const char *reason;
    char large[200];

    randombytes_buf(key, sizeof(key));
    expect_unreadable(fixture, "missing.seal.key", strerror(ENOENT));

    path_of(fixture, "directory.seal.key", path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    expect_unreadable(fixture, "directory.seal.key", "not a regular file");

    /* A FIFO named by mistake is refused at once rather than waited on. */
    path_of(fixture, "fifo.seal.key", path, sizeof(path));
    assert_int_equal(mkfifo(path, 0600), 0);
    expect_unreadable(fixture, "fifo.seal.key", "not a regular file");

    key_line(key, "\n", line, sizeof(line));
    assert_true((size_t)snprintf(large, sizeof(large), "%s%s", line, line) < sizeof(large));
    write_string(fixture, "two-lines.seal.key", large);
    expect_unreadable(fixture, "two-lines.seal.key", not_a_key);

    /* 31 and 33 bytes: one character short and one group long. */
    write_string(fixture, "short.seal.key", encode(key, 31, line, sizeof(line)));
    expect_unreadable(fixture, "short.seal.key", not_a_key);
    write_string(fixture, "long.seal.key", encode(key, 33, line, sizeof(line)));
    expect_unreadable(fixture, "long.seal.key", not_a_key);

    key_line(key, "=\n", line, sizeof(line));
    write_string(fixture, "padded.seal.key", line);
    expect_unreadable(fixture, "padded.seal.key", not_a_key);
    key_line(key, "\n\n", line, sizeof(line));
    write_string(fixture, "blank-line.seal.key", line);
    expect_unreadable(fixture, "blank-line.seal.key", not_a_key);
    write_bytes(fixture, "binary.seal.key", key, KEYFILE_KEY_BYTES);
    expect_unreadable(fixture, "binary.seal.key", not_a_key);
    write_string(fixture, "empty.seal.key", "");
    expect_unreadable(fixture, "empty.seal.key", not_a_key);
    memset(large, 'A', sizeof(large));
    write_bytes(fixture, "large.seal.key", large, sizeof(large));
    expect_unreadable(fixture, "large.seal.key", "too long for a key file");

    /* The line may end in LF, CRLF or nothing at all. */
    static const char *const endings[] = {"", "\n", "\r\n"};
    for (size_t i = 0; i < sizeof(endings) / sizeof(endings[0]); i++) {
        key_line(key, endings[i], line, sizeof(line));
        write_string(fixture, "good.seal.key", line);
        path_of(fixture, "good.seal.key", path, sizeof(path));
        reason = NULL;
        assert_int_equal(keyfile_read(path, read_back, &reason), 0);
        assert_memory_equal(read_back, key, KEYFILE_KEY_BYTES);
    }
}

/* Writes a key file holding key (one line, as keyfile_write does). */
static void write_key(const struct fixture *fixture, const char *name,
                      const unsigned char key[KEYFILE_KEY_BYTES])
{
    char path[256];

    path_of(fixture, name, path, sizeof(path));
    assert_int_equal(keyfile_write(path, key, 0600), 0);
}

static void test_load_directory_takes_only_its_own_files(void **state)
{
    struct fixture *fixture = *state;
    unsigned char keys[4][KEYFILE_KEY_BYTES];
    struct keyfile_key *loaded = NULL;
    char bad_name[64], path[256];
    const char *reason = NULL;
    long count;

    for (size_t i = 0; i < 4; i++)
        randombytes_buf(keys[i], KEYFILE_KEY_BYTES);
    write_key(fixture, "workers-b.seal.key", keys[1]);
    write_key(fixture, "workers-a.seal.key", keys[0]);
    write_key(fixture, "Workers_C.seal.key", keys[2]);
    /* None of these is NAME.seal.key with a valid NAME. */
    write_key(fixture, "workers-a.seal.pub", keys[3]);
    write_key(fixture, "workers-a.sign.key", keys[3]);
    write_key(fixture, "bad.name.seal.key", keys[3]);
    write_key(fixture, ".seal.key", keys[3]);
    write_key(fixture, "workers-a.seal.key.bak", keys[3]);
    write_key(fixture, "workers-a.seal.keyx", keys[3]);
    write_string(fixture, "README", "not a key\n");
    path_of(fixture, "sub.dir", path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);

    count = keyfile_load_directory(fixture->directory, KEYFILE_SEAL_SECRET, &loaded, bad_name,
                                   sizeof(bad_name), &reason);
    assert_int_equal(count, 3);
    assert_non_null(loaded);
    assert_string_equal(bad_name, "");
    /* Sorted by kid, byte by byte: upper case first. */
    assert_string_equal(loaded[0].kid, "Workers_C");
    assert_memory_equal(loaded[0].key, keys[2], KEYFILE_KEY_BYTES);
    assert_string_equal(loaded[1].kid, "workers-a");
    assert_memory_equal(loaded[1].key, keys[0], KEYFILE_KEY_BYTES);
    assert_string_equal(loaded[2].kid, "workers-b");
    assert_memory_equal(loaded[2].key, keys[1], KEYFILE_KEY_BYTES);
    free(loaded);

    loaded = NULL;
    count = keyfile_load_directory(fixture->directory, KEYFILE_SIGN_SECRET, &loaded, bad_name,
                                   sizeof(bad_name), &reason);
    assert_int_equal(count, 1);
    assert_string_equal(loaded[0].kid, "workers-a");
    assert_memory_equal(loaded[0].key, keys[3], KEYFILE_KEY_BYTES);
    free(loaded);

    /* A suffix nothing has: no keys, and no error. */
    count = keyfile_load_directory(fixture->directory, KEYFILE_SIGN_PUBLIC, &loaded, bad_name,
                                   sizeof(bad_name), &reason);
    assert_int_equal(count, 0);
    free(loaded);
}

static void test_load_directory_kid_length(void **state)
{
    struct fixture *fixture = *state;
    unsigned char key[KEYFILE_KEY_BYTES];
    char name[KEYFILE_MAX_KID + 32];
    struct keyfile_key *loaded = NULL;
    char bad_name[128];
    const char *reason = NULL;
    long count;

    randombytes_buf(key, sizeof(key));
    memset(name, 'k', KEYFILE_MAX_KID);
    memcpy(name + KEYFILE_MAX_KID, KEYFILE_SIGN_PUBLIC, sizeof(KEYFILE_SIGN_PUBLIC));
    write_key(fixture, name, key);
    /* 65 characters: not a kid, so not one of the keys. */
    memset(name, 'l', KEYFILE_MAX_KID + 1);
    memcpy(name + KEYFILE_MAX_KID + 1, KEYFILE_SIGN_PUBLIC, sizeof(KEYFILE_SIGN_PUBLIC));
    write_key(fixture, name, key);

    count = keyfile_load_directory(fixture->directory, KEYFILE_SIGN_PUBLIC, &loaded, bad_name,
                                   sizeof(bad_name), &reason);
    assert_int_equal(count, 1);
    assert_int_equal(strlen(loaded[0].kid), KEYFILE_MAX_KID);
    assert_int_equal(loaded[0].kid[0], 'k');
    assert_memory_equal(loaded[0].key, key, KEYFILE_KEY_BYTES);
    free(loaded);
}

static void test_load_directory_names_the_bad_file(void **state)
{
    struct fixture *fixture = *state;
    unsigned char key[KEYFILE_KEY_BYTES];
    struct keyfile_key *loaded = NULL;
    char bad_name[64], short_name[8], path[256];
    const char *reason = NULL;
    long count;

    randombytes_buf(key, sizeof(key));
    write_key(fixture, "good.seal.pub", key);
    write_string(fixture, "broken.seal.pub", "not base64url!\n");

    count = keyfile_load_directory(fixture->directory, KEYFILE_SEAL_PUBLIC, &loaded, bad_name,
                                   sizeof(bad_name), &reason);
    assert_int_equal(count, -1);
    assert_string_equal(bad_name, "broken.seal.pub");
    assert_string_equal(reason, "not a 32-byte key in base64url (one line, no padding)");

    /* A name too long for the caller's buffer is cut, never overrun. */
    memset(short_name, 'X', sizeof(short_name));
    count = keyfile_load_directory(fixture->directory, KEYFILE_SEAL_PUBLIC, &loaded, short_name,
                                   sizeof(short_name), &reason);
    assert_int_equal(count, -1);
    assert_string_equal(short_name, "broken.");

    /* A directory with a key's name is that name's fault too. */
    path_of(fixture, "broken.seal.pub", path, sizeof(path));
    assert_int_equal(remove(path), 0);
    path_of(fixture, "dir.seal.pub", path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    count = keyfile_load_directory(fixture->directory, KEYFILE_SEAL_PUBLIC, &loaded, bad_name,
                                   sizeof(bad_name), &reason);
    assert_int_equal(count, -1);
    assert_string_equal(bad_name, "dir.seal.pub");
    assert_string_equal(reason, "not a regular file");
}

static void test_load_missing_directory(void **state)
{
    struct fixture *fixture = *state;
    struct keyfile_key *loaded = NULL;
    char bad_name[64], path[256];
    const char *reason = NULL;

    path_of(fixture, "missing", path, sizeof(path));
    memset(bad_name, 'X', sizeof(bad_name));
    assert_int_equal(keyfile_load_directory(path, KEYFILE_SEAL_SECRET, &loaded, bad_name,
                                            sizeof(bad_name), &reason),
                     -1);
    assert_string_equal(bad_name, "");
    assert_string_equal(reason, strerror(ENOENT));
    assert_null(loaded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64url_known_values),
        cmocka_unit_test(test_base64url_round_trip),
        cmocka_unit_test(test_base64url_is_strict),
        cmocka_unit_test(test_base64url_append_respects_the_buffer),
        cmocka_unit_test(test_public_base64url_agrees),
        cmocka_unit_test(test_kid_validation),
        cmocka_unit_test_setup_teardown(test_write_then_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_refuses_what_is_not_one_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_directory_takes_only_its_own_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_load_directory_kid_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_directory_names_the_bad_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_missing_directory, setup, teardown),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
