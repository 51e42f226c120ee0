/*
 * keyfile: key files and base64url; see keyfile.h.
 */
#include "keyfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A key file is one line of 43 characters; anything much longer is the wrong file. */
#define KEYFILE_MAX_BYTES 128
#define BASE64URL_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

int keyfile_kid_valid(const char *kid, size_t len)
{
    if (len == 0 || len > KEYFILE_MAX_KID)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = kid[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

void keyfile_append_base64url(struct text *out, const unsigned char *bytes, size_t len)
{
    size_t encoded_len = sodium_base64_encoded_len(len, BASE64URL_VARIANT);

    /* The encoder writes a NUL too, which the next append overwrites. */
    if (out->overflowed || out->capacity - out->len < encoded_len) {
        out->overflowed = 1;
        return;
    }
    sodium_bin2base64(out->base + out->len, encoded_len, bytes, len, BASE64URL_VARIANT);
    out->len += encoded_len - 1;
}

int keyfile_decode(const char *text, size_t len, unsigned char *out, size_t out_len)
{
    size_t decoded_len;
    const char *end;

    if (sodium_base642bin(out, out_len, text, len, NULL, &decoded_len, &end, BASE64URL_VARIANT) !=
            0 ||
        end != text + len || decoded_len != out_len)
        return -1;
    return 0;
}

int keyfile_read(const char *path, unsigned char key[KEYFILE_KEY_BYTES], const char **reason)
{
    char content[KEYFILE_MAX_BYTES + 1];
    size_t filled = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat status;
    int result = -1;

    if (fd < 0) {
        *reason = strerror(errno);
        return -1;
    }
    if (fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
        *reason = "not a regular file";
        close(fd);
        return -1;
    }
    while (filled <= KEYFILE_MAX_BYTES) {
        ssize_t got = read(fd, content + filled, sizeof(content) - filled);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        filled += (size_t)got;
    }
    close(fd);

    /* One line: the key, then at most one line ending. */
    if (filled > 0 && content[filled - 1] == '\n')
        filled--;
    if (filled > 0 && content[filled - 1] == '\r')
        filled--;
    if (filled > KEYFILE_MAX_BYTES)
        *reason = "too long for a key file";
    else if (keyfile_decode(content, filled, key, KEYFILE_KEY_BYTES) != 0)
        *reason = "not a 32-byte key in base64url (one line, no padding)";
    else
        result = 0;
    sodium_memzero(content, sizeof(content));
    return result;
}

int keyfile_write(const char *path, const unsigned char key[KEYFILE_KEY_BYTES], mode_t mode)
{
    char line[KEYFILE_MAX_BYTES];
    struct text text;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    int result = -1;

    if (fd < 0)
        return -1;
    text_init(&text, line, sizeof(line));
    keyfile_append_base64url(&text, key, KEYFILE_KEY_BYTES);
    text_append(&text, "\n", 1);
    if (text_finish(&text) != NULL && write(fd, line, text.len) == (ssize_t)text.len)
        result = 0;
    sodium_memzero(line, sizeof(line));
    if (close(fd) != 0)
        result = -1;
    if (result != 0)
        unlink(path);
    return result;
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(((const struct keyfile_key *)a)->kid, ((const struct keyfile_key *)b)->kid);
}

/* The key id of a directory entry named KID + suffix, or 0 when it is not one. */
static size_t kid_of(const char *name, const char *suffix)
{
    size_t name_len = strlen(name), suffix_len = strlen(suffix);

    if (name_len <= suffix_len || strcmp(name + name_len - suffix_len, suffix) != 0 ||
        !keyfile_kid_valid(name, name_len - suffix_len))
        return 0;
    return name_len - suffix_len;
}

long keyfile_load_directory(const char *directory, const char *suffix, struct keyfile_key **keys,
                            char *bad_name, size_t bad_name_size, const char **reason)
{
    DIR *dir = opendir(directory);
    struct keyfile_key *found = NULL;
    size_t count = 0, capacity = 0;
    struct dirent *entry;

    bad_name[0] = '\0';
    if (dir == NULL) {
        *reason = strerror(errno);
        return -1;
    }
    while ((entry = readdir(dir)) != NULL) {
        size_t kid_len = kid_of(entry->d_name, suffix);
        char path[4096];
        struct text path_text;

        if (kid_len == 0)
            continue;
        if (count == capacity) {
            size_t grown = capacity == 0 ? 8 : capacity * 2;
            struct keyfile_key *larger = realloc(found, grown * sizeof(*found));
            if (larger == NULL) {
                *reason = "out of memory";
                goto fail;
            }
            found = larger;
            capacity = grown;
        }
        text_init(&path_text, path, sizeof(path));
        text_append_str(&path_text, directory);
        text_append_str(&path_text, "/");
        text_append_str(&path_text, entry->d_name);
        memcpy(found[count].kid, entry->d_name, kid_len);
        found[count].kid[kid_len] = '\0';
        if (text_finish(&path_text) == NULL) {
            *reason = "path too long";
            goto fail_named;
        }
        if (keyfile_read(path, found[count].key, reason) != 0)
            goto fail_named;
        count++;
    }
    closedir(dir);
    if (count > 1)
        qsort(found, count, sizeof(*found), compare_keys);
    *keys = found;
    return (long)count;

fail_named:
    if (bad_name_size > 0)
        snprintf(bad_name, bad_name_size, "%s", entry->d_name);
fail:
    closedir(dir);
    if (found != NULL)
        sodium_memzero(found, capacity * sizeof(*found));
    free(found);
    return -1;
}
