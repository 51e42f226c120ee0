/*
 * merkle: the Merkle tree of RFC 9162 section 2.1 (Certificate Transparency) over
 * SHA-256, with which one Ed25519 signature covers a batch of envelopes
 * (workers/ENVELOPE.md, "The signature").
 *
 * A leaf hashes as SHA-256(0x00 || data) and an interior node as
 * SHA-256(0x01 || left || right); a tree of n leaves splits into a left subtree of the
 * largest power of two below n and a right subtree of the rest.
 *
 * Hashing goes through a merkle_hasher, which holds OpenSSL's SHA-256 and a digest
 * context for reuse, so that no hash allocates; it belongs to one thread.
 */
#ifndef JOBGATE_MERKLE_H
#define JOBGATE_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_BYTES 32
/* The most leaves merkle_build takes, and so the longest path it writes. */
#define MERKLE_MAX_LEAVES 256
#define MERKLE_MAX_PATH 8

struct merkle_hasher;

/* A built tree: its root and the inclusion path of every leaf, nearest hash first. */
struct merkle_tree {
    size_t size;
    unsigned char root[MERKLE_HASH_BYTES];
    unsigned char path_lengths[MERKLE_MAX_LEAVES];
    unsigned char paths[MERKLE_MAX_LEAVES][MERKLE_MAX_PATH][MERKLE_HASH_BYTES];
};

/* A hasher, or NULL when out of memory. */
struct merkle_hasher *merkle_hasher_new(void);

void merkle_hasher_free(struct merkle_hasher *hasher);

/* The leaf hash of data. Returns 0, or -1 when OpenSSL fails (out of memory). */
int merkle_hash_leaf(struct merkle_hasher *hasher, const void *data, size_t len,
                     unsigned char hash[MERKLE_HASH_BYTES]);

/*
 * Builds the tree of the count leaf hashes in leaves (RFC 9162 2.1.1) with every leaf's
 * inclusion path (2.1.3.1). Returns 0, or -1 when count is 0 or above MERKLE_MAX_LEAVES,
 * or OpenSSL fails.
 */
int merkle_build(struct merkle_hasher *hasher, struct merkle_tree *tree,
                 const unsigned char *const *leaves, size_t count);

/*
 * The root that path (path_len hashes, nearest first) leads to from leaf, the leaf at
 * index of a tree of size leaves, computed as RFC 9162 2.1.3.2 verifies an inclusion
 * proof. Returns 0; MERKLE_NO_ROOT when index is not below size or the path's length
 * does not fit them; -1 when OpenSSL fails.
 */
#define MERKLE_NO_ROOT 1
int merkle_root_from_path(struct merkle_hasher *hasher, const unsigned char leaf[MERKLE_HASH_BYTES],
                          uint64_t index, uint64_t size,
                          const unsigned char (*path)[MERKLE_HASH_BYTES], size_t path_len,
                          unsigned char root[MERKLE_HASH_BYTES]);

#endif
