/*
 * Unit tests for merkle: roots and inclusion paths against the RFC 6962 reference test
 * data of the Certificate Transparency project (the same tree as RFC 9162's), every
 * leaf's path of every tree up to 70 leaves leads back to its root, and the
 * verification of RFC 9162 2.1.3.2 refuses a path that does not fit its index and size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merkle.h"

static struct merkle_hasher *hasher;
static struct merkle_tree tree;

/* The eight leaves of the reference data. */
static const struct {
    const char *bytes;
    size_t len;
} reference_leaves[] = {
    {"", 0},
    {"\x00", 1},
    {"\x10", 1},
    {"\x20\x21", 2},
    {"\x30\x31", 2},
    {"\x40\x41\x42\x43", 4},
    {"\x50\x51\x52\x53\x54\x55\x56\x57", 8},
    {"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f", 16},
};

/* The roots of the trees of the first 1 to 8 reference leaves. */
static const char *const reference_roots[] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static void hex_decode(const char *hex, unsigned char out[MERKLE_HASH_BYTES])
{
    assert_int_equal(strlen(hex), 2 * MERKLE_HASH_BYTES);
    for (size_t i = 0; i < MERKLE_HASH_BYTES; i++) {
        unsigned value;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &value), 1);
        out[i] = (unsigned char)value;
    }
}

static void assert_hash_is(const unsigned char hash[MERKLE_HASH_BYTES], const char *hex)
{
    unsigned char expected[MERKLE_HASH_BYTES];

    hex_decode(hex, expected);
    assert_memory_equal(hash, expected, MERKLE_HASH_BYTES);
}

static unsigned char leaf_hashes[MERKLE_MAX_LEAVES][MERKLE_HASH_BYTES];
static const unsigned char *leaf_pointers[MERKLE_MAX_LEAVES];

/* Hashes count leaves: the reference leaves first, then leaves of one byte each. */
static void hash_leaves(size_t count)
{
    for (size_t i = 0; i < count; i++) {
        unsigned char byte = (unsigned char)i;
        if (i < sizeof(reference_leaves) / sizeof(reference_leaves[0]))
            assert_int_equal(merkle_hash_leaf(hasher, reference_leaves[i].bytes,
                                              reference_leaves[i].len, leaf_hashes[i]),
                             0);
        else
            assert_int_equal(merkle_hash_leaf(hasher, &byte, 1, leaf_hashes[i]), 0);
        leaf_pointers[i] = leaf_hashes[i];
    }
}

static int setup(void **state)
{
    (void)state;
    hasher = merkle_hasher_new();
    return hasher == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    merkle_hasher_free(hasher);
    return 0;
}

static void test_reference_roots(void **state)
{
    (void)state;
    hash_leaves(8);
    for (size_t size = 1; size <= 8; size++) {
        assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, size), 0);
        assert_int_equal(tree.size, size);
        assert_hash_is(tree.root, reference_roots[size - 1]);
    }
}

static void test_reference_paths(void **state)
{
    static const struct {
        size_t index, size;
        const char *path[3];
    } cases[] = {
        {0,
         8,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {5,
         8,
         {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
        {2, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
        {1,
         5,
         {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    };

    (void)state;
    hash_leaves(8);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t length = 0;
        assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, cases[c].size), 0);
        while (length < 3 && cases[c].path[length] != NULL)
            length++;
        assert_int_equal(tree.path_lengths[cases[c].index], length);
        for (size_t i = 0; i < length; i++)
            assert_hash_is(tree.paths[cases[c].index][i], cases[c].path[i]);
    }
}

static int root_of(size_t index, size_t size, size_t path_len, unsigned char root[32])
{
    return merkle_root_from_path(hasher, leaf_hashes[index], index, size,
                                 (const unsigned char(*)[MERKLE_HASH_BYTES])tree.paths[index],
                                 path_len, root);
}

/* Every leaf's own path leads back to the root, in trees of every size up to 70. */
static void test_every_path_leads_to_the_root(void **state)
{
    unsigned char root[MERKLE_HASH_BYTES];

    (void)state;
    hash_leaves(70);
    for (size_t size = 1; size <= 70; size++) {
        assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, size), 0);
        for (size_t index = 0; index < size; index++) {
            assert_true(tree.path_lengths[index] <= MERKLE_MAX_PATH);
            assert_int_equal(root_of(index, size, tree.path_lengths[index], root), 0);
            assert_memory_equal(root, tree.root, MERKLE_HASH_BYTES);
        }
    }
}

/* The largest tree builds, and its paths are as long as the limit says. */
static void test_largest_tree(void **state)
{
    unsigned char root[MERKLE_HASH_BYTES];

    (void)state;
    hash_leaves(MERKLE_MAX_LEAVES);
    assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, MERKLE_MAX_LEAVES), 0);
    assert_int_equal(tree.path_lengths[MERKLE_MAX_LEAVES - 1], MERKLE_MAX_PATH);
    assert_int_equal(root_of(MERKLE_MAX_LEAVES - 1, MERKLE_MAX_LEAVES, MERKLE_MAX_PATH, root), 0);
    assert_memory_equal(root, tree.root, MERKLE_HASH_BYTES);

    assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, 0), -1);
    assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, MERKLE_MAX_LEAVES + 1), -1);
}

/* A lone leaf is its own root, with an empty path. */
static void test_tree_of_one(void **state)
{
    unsigned char root[MERKLE_HASH_BYTES];

    (void)state;
    hash_leaves(1);
    assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, 1), 0);
    assert_int_equal(tree.path_lengths[0], 0);
    assert_memory_equal(tree.root, leaf_hashes[0], MERKLE_HASH_BYTES);
    assert_int_equal(root_of(0, 1, 0, root), 0);
    assert_memory_equal(root, leaf_hashes[0], MERKLE_HASH_BYTES);
}

/*
 * A path one hash short or one too long, an index at or past the size, or a size the
 * path does not fit, gives no root; a path for another index gives another root.
 */
static void test_paths_that_do_not_fit(void **state)
{
    unsigned char root[MERKLE_HASH_BYTES];

    (void)state;
    hash_leaves(5);
    assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, 5), 0);
    assert_int_equal(tree.path_lengths[1], 3);
    assert_int_equal(tree.path_lengths[4], 1);

    assert_int_equal(root_of(1, 5, 2, root), MERKLE_NO_ROOT);
    memcpy(tree.paths[1][3], tree.paths[1][0], MERKLE_HASH_BYTES);
    assert_int_equal(root_of(1, 5, 4, root), MERKLE_NO_ROOT);
    assert_int_equal(root_of(1, 1, 3, root), MERKLE_NO_ROOT);
    assert_int_equal(merkle_root_from_path(hasher, leaf_hashes[4], 5, 5,
                                           (const unsigned char(*)[MERKLE_HASH_BYTES])tree.paths[4],
                                           1, root),
                     MERKLE_NO_ROOT);
    /* The last leaf of five needs one hash; as leaf 4 of six it would need two. */
    assert_int_equal(merkle_root_from_path(hasher, leaf_hashes[4], 4, 6,
                                           (const unsigned char(*)[MERKLE_HASH_BYTES])tree.paths[4],
                                           1, root),
                     MERKLE_NO_ROOT);
    /* Leaf 1's path read as leaf 0's joins the hashes the other way round. */
    assert_int_equal(merkle_root_from_path(hasher, leaf_hashes[1], 0, 5,
                                           (const unsigned char(*)[MERKLE_HASH_BYTES])tree.paths[1],
                                           3, root),
                     0);
    assert_memory_not_equal(root, tree.root, MERKLE_HASH_BYTES);
}

/* Leaves and nodes are told apart: a node's two children, as one leaf, hash otherwise. */
static void test_leaves_and_nodes_differ(void **state)
{
    unsigned char joined[2 * MERKLE_HASH_BYTES], as_leaf[MERKLE_HASH_BYTES];

    (void)state;
    hash_leaves(2);
    assert_int_equal(merkle_build(hasher, &tree, leaf_pointers, 2), 0);
    memcpy(joined, leaf_hashes[0], MERKLE_HASH_BYTES);
    memcpy(joined + MERKLE_HASH_BYTES, leaf_hashes[1], MERKLE_HASH_BYTES);
    assert_int_equal(merkle_hash_leaf(hasher, joined, sizeof(joined), as_leaf), 0);
    assert_memory_not_equal(as_leaf, tree.root, MERKLE_HASH_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_roots),
        cmocka_unit_test(test_reference_paths),
        cmocka_unit_test(test_every_path_leads_to_the_root),
        cmocka_unit_test(test_largest_tree),
        cmocka_unit_test(test_tree_of_one),
        cmocka_unit_test(test_paths_that_do_not_fit),
        cmocka_unit_test(test_leaves_and_nodes_differ),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
