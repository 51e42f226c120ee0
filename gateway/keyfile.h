/*
 * keyfile: the envelope's key files and the base64url text they and the envelope use.
 *
 * A key file holds one 32-byte key as one line of base64url without padding (RFC 4648
 * section 5): an Ed25519 seed or public key, or an X25519 secret or public key. Its
 * name says which: NAME.sign.key, NAME.sign.pub, NAME.seal.key, NAME.seal.pub, where
 * NAME is the key id (workers/ENVELOPE.md).
 */
#ifndef JOBGATE_KEYFILE_H
#define JOBGATE_KEYFILE_H

#include <stddef.h>
#include <sys/types.h>

#include "text.h"

#define KEYFILE_KEY_BYTES 32
#define KEYFILE_MAX_KID 64

/* The four kinds of key file, named by their suffix. */
#define KEYFILE_SIGN_SECRET ".sign.key"
#define KEYFILE_SIGN_PUBLIC ".sign.pub"
#define KEYFILE_SEAL_SECRET ".seal.key"
#define KEYFILE_SEAL_PUBLIC ".seal.pub"

/* One key and its id. */
struct keyfile_key {
    char kid[KEYFILE_MAX_KID + 1];
    unsigned char key[KEYFILE_KEY_BYTES];
};

/* Whether kid is 1 to 64 of A-Z a-z 0-9 _ -. */
int keyfile_kid_valid(const char *kid, size_t len);

/* Appends bytes as base64url without padding. */
void keyfile_append_base64url(struct text *out, const unsigned char *bytes, size_t len);

/*
 * Decodes base64url without padding that must come to exactly out_len bytes; anything
 * else (padding, other characters, stray bits) is refused. Returns 0, or -1.
 */
int keyfile_decode(const char *text, size_t len, unsigned char *out, size_t out_len);

/*
 * Reads the key file at path into key. Returns 0, or -1 with *reason set to a fixed
 * phrase or an errno's text; the file's contents never appear in it.
 */
int keyfile_read(const char *path, unsigned char key[KEYFILE_KEY_BYTES], const char **reason);

/* Creates path (never over an existing file) holding key, with mode. Returns 0, or -1. */
int keyfile_write(const char *path, const unsigned char key[KEYFILE_KEY_BYTES], mode_t mode);

/*
 * Loads every file in directory whose name is a valid kid followed by suffix into a
 * malloc'd array at *keys, sorted by kid. Returns how many, or -1 with *reason set
 * (and the failing file's name in bad_name when it is one file's fault).
 */
long keyfile_load_directory(const char *directory, const char *suffix, struct keyfile_key **keys,
                            char *bad_name, size_t bad_name_size, const char **reason);

#endif
