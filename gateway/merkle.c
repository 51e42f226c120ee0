/*
 * merkle: RFC 9162 Merkle trees over SHA-256; see merkle.h.
 */
#include "merkle.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char leaf_prefix = 0x00, node_prefix = 0x01;

struct merkle_hasher {
    EVP_MD *sha256;
    EVP_MD_CTX *context;
};

struct merkle_hasher *merkle_hasher_new(void)
{
    struct merkle_hasher *hasher = calloc(1, sizeof(*hasher));

    if (hasher == NULL)
        return NULL;
    hasher->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    hasher->context = EVP_MD_CTX_new();
    if (hasher->sha256 == NULL || hasher->context == NULL) {
        merkle_hasher_free(hasher);
        return NULL;
    }
    return hasher;
}

void merkle_hasher_free(struct merkle_hasher *hasher)
{
    if (hasher == NULL)
        return;
    EVP_MD_CTX_free(hasher->context);
    EVP_MD_free(hasher->sha256);
    free(hasher);
}

/* SHA-256 of prefix || first || second (second may be NULL); 0 or -1. */
static int hash_parts(struct merkle_hasher *hasher, const unsigned char *prefix, const void *first,
                      size_t first_len, const void *second, size_t second_len,
                      unsigned char hash[MERKLE_HASH_BYTES])
{
    EVP_MD_CTX *context = hasher->context;

    if (EVP_DigestInit_ex(context, hasher->sha256, NULL) != 1 ||
        EVP_DigestUpdate(context, prefix, 1) != 1 ||
        EVP_DigestUpdate(context, first, first_len) != 1 ||
        (second != NULL && EVP_DigestUpdate(context, second, second_len) != 1) ||
        EVP_DigestFinal_ex(context, hash, NULL) != 1)
        return -1;
    return 0;
}

int merkle_hash_leaf(struct merkle_hasher *hasher, const void *data, size_t len,
                     unsigned char hash[MERKLE_HASH_BYTES])
{
    return hash_parts(hasher, &leaf_prefix, data, len, NULL, 0, hash);
}

/* The interior node over left and right; hash may be either of them. */
static int hash_node(struct merkle_hasher *hasher, const unsigned char left[MERKLE_HASH_BYTES],
                     const unsigned char right[MERKLE_HASH_BYTES],
                     unsigned char hash[MERKLE_HASH_BYTES])
{
    return hash_parts(hasher, &node_prefix, left, MERKLE_HASH_BYTES, right, MERKLE_HASH_BYTES,
                      hash);
}

static void extend_paths(struct merkle_tree *tree, size_t from, size_t to,
                         const unsigned char sibling[MERKLE_HASH_BYTES])
{
    for (size_t leaf = from; leaf < to; leaf++)
        memcpy(tree->paths[leaf][tree->path_lengths[leaf]++], sibling, MERKLE_HASH_BYTES);
}

/*
 * Hashes the subtree of leaves [from, from + count) into hash, adding to each of its
 * leaves' paths the sibling it meets at every level on the way up. Paths grow from
 * the leaf upward because the recursion finishes the deeper levels first.
 */
static int build_subtree(struct merkle_hasher *hasher, struct merkle_tree *tree,
                         const unsigned char *const *leaves, size_t from, size_t count,
                         unsigned char hash[MERKLE_HASH_BYTES])
{
    unsigned char left[MERKLE_HASH_BYTES], right[MERKLE_HASH_BYTES];
    size_t split = 1;

    if (count == 1) {
        memcpy(hash, leaves[from], MERKLE_HASH_BYTES);
        return 0;
    }
    while (split * 2 < count)
        split *= 2;
    if (build_subtree(hasher, tree, leaves, from, split, left) != 0 ||
        build_subtree(hasher, tree, leaves, from + split, count - split, right) != 0)
        return -1;
    extend_paths(tree, from, from + split, right);
    extend_paths(tree, from + split, from + count, left);
    return hash_node(hasher, left, right, hash);
}

int merkle_build(struct merkle_hasher *hasher, struct merkle_tree *tree,
                 const unsigned char *const *leaves, size_t count)
{
    if (count == 0 || count > MERKLE_MAX_LEAVES)
        return -1;
    tree->size = count;
    memset(tree->path_lengths, 0, count);
    return build_subtree(hasher, tree, leaves, 0, count, tree->root);
}

int merkle_root_from_path(struct merkle_hasher *hasher, const unsigned char leaf[MERKLE_HASH_BYTES],
                          uint64_t index, uint64_t size,
                          const unsigned char (*path)[MERKLE_HASH_BYTES], size_t path_len,
                          unsigned char root[MERKLE_HASH_BYTES])
{
    uint64_t position = index, last = size - 1;
    unsigned char hash[MERKLE_HASH_BYTES];
    int failed = 0;

    if (index >= size)
        return MERKLE_NO_ROOT;
    memcpy(hash, leaf, MERKLE_HASH_BYTES);
    for (size_t i = 0; i < path_len && !failed; i++) {
        if (last == 0)
            return MERKLE_NO_ROOT;
        if ((position & 1) != 0 || position == last) {
            failed = hash_node(hasher, path[i], hash, hash);
            /* On the tree's right edge a node may have no sibling: it moves up as it is. */
            while ((position & 1) == 0 && position != 0) {
                position >>= 1;
                last >>= 1;
            }
        } else {
            failed = hash_node(hasher, hash, path[i], hash);
        }
        position >>= 1;
        last >>= 1;
    }
    if (failed)
        return -1;
    if (last != 0)
        return MERKLE_NO_ROOT;
    memcpy(root, hash, MERKLE_HASH_BYTES);
    return 0;
}
