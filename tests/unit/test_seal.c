/*
 * Unit tests for seal: what is sealed opens with the workers' secret key in the same
 * context and in no other; each epoch has one ephemeral key and never repeats a nonce;
 * an epoch ends on time, when sealer_expire wipes it, or when its slot's workers' key
 * changes; and unusable slots and keys are refused.
 *
 * now_ms values are made up: the sealer takes whatever monotonic time it is given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "seal.h"

#define EPOCH_MS 1000
#define PLAIN "tok_visa_4242"
#define PLAIN_LEN (sizeof(PLAIN) - 1)
#define AD "{\"class\":\"SendInvoice\",\"field\":\"/0/card_token\",\"id\":\"1\",\"queue\":\"q\"}"
#define AD_LEN (sizeof(AD) - 1)

/* A workers' X25519 key pair. */
struct workers {
    unsigned char public_key[SEAL_KEY_BYTES];
    unsigned char secret_key[SEAL_KEY_BYTES];
};

/* One sealed value, as sealer_seal writes it. */
struct sealed {
    unsigned char epk[SEAL_KEY_BYTES];
    unsigned char nonce[SEAL_NONCE_BYTES];
    unsigned char bytes[PLAIN_LEN + SEAL_TAG_BYTES];
};

static struct workers new_workers(void)
{
    struct workers workers;

    crypto_box_keypair(workers.public_key, workers.secret_key);
    return workers;
}

static int seal_at(struct sealer *sealer, size_t slot, const unsigned char *recipient,
                   uint64_t now_ms, struct sealed *sealed)
{
    return sealer_seal(sealer, slot, recipient, now_ms, (const unsigned char *)AD, AD_LEN,
                       (const unsigned char *)PLAIN, PLAIN_LEN, sealed->epk, sealed->nonce,
                       sealed->bytes);
}

static void must_seal(struct sealer *sealer, size_t slot, const unsigned char *recipient,
                      uint64_t now_ms, struct sealed *sealed)
{
    assert_int_equal(seal_at(sealer, slot, recipient, now_ms, sealed), 0);
}

/* Whether sealed opens with secret_key in the context ad, giving PLAIN. */
static int opens_with(const struct sealed *sealed, const unsigned char *secret_key, const char *ad,
                      size_t ad_len)
{
    unsigned char plain[PLAIN_LEN];

    if (seal_open(secret_key, sealed->epk, sealed->nonce, sealed->bytes, sizeof(sealed->bytes),
                  (const unsigned char *)ad, ad_len, plain) != 0)
        return 0;
    assert_memory_equal(plain, PLAIN, PLAIN_LEN);
    return 1;
}

static int opens(const struct sealed *sealed, const struct workers *workers)
{
    return opens_with(sealed, workers->secret_key, AD, AD_LEN);
}

static void test_sealed_value_opens(void **state)
{
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);
    struct sealed sealed;

    (void)state;
    assert_non_null(sealer);
    must_seal(sealer, 0, workers.public_key, 0, &sealed);
    assert_true(opens(&sealed, &workers));
    /* The plaintext is nowhere in what is written. */
    assert_null(memmem(sealed.bytes, sizeof(sealed.bytes), PLAIN, PLAIN_LEN));
    sealer_free(sealer);
}

static void test_empty_and_binary_values(void **state)
{
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);
    unsigned char epk[SEAL_KEY_BYTES], nonce[SEAL_NONCE_BYTES];
    unsigned char plain[256], sealed[256 + SEAL_TAG_BYTES], opened[256];

    (void)state;
    for (size_t i = 0; i < sizeof(plain); i++)
        plain[i] = (unsigned char)i;
    assert_int_equal(
        sealer_seal(sealer, 0, workers.public_key, 0, NULL, 0, plain, 0, epk, nonce, sealed), 0);
    assert_int_equal(
        seal_open(workers.secret_key, epk, nonce, sealed, SEAL_TAG_BYTES, NULL, 0, opened), 0);

    assert_int_equal(sealer_seal(sealer, 0, workers.public_key, 0, NULL, 0, plain, sizeof(plain),
                                 epk, nonce, sealed),
                     0);
    assert_int_equal(
        seal_open(workers.secret_key, epk, nonce, sealed, sizeof(sealed), NULL, 0, opened), 0);
    assert_memory_equal(opened, plain, sizeof(plain));
    /* Shorter than a tag: nothing to open. */
    assert_int_equal(
        seal_open(workers.secret_key, epk, nonce, sealed, SEAL_TAG_BYTES - 1, NULL, 0, opened), -1);
    sealer_free(sealer);
}

static void test_other_context_does_not_open(void **state)
{
    static const char other_field[] =
        "{\"class\":\"SendInvoice\",\"field\":\"/0/cvv\",\"id\":\"1\",\"queue\":\"q\"}";
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);
    struct sealed sealed;

    (void)state;
    must_seal(sealer, 0, workers.public_key, 0, &sealed);
    assert_false(opens_with(&sealed, workers.secret_key, other_field, sizeof(other_field) - 1));
    assert_false(opens_with(&sealed, workers.secret_key, AD, AD_LEN - 1));
    assert_false(opens_with(&sealed, workers.secret_key, "", 0));
    assert_true(opens(&sealed, &workers));
    sealer_free(sealer);
}

static void test_other_workers_key_does_not_open(void **state)
{
    struct workers workers = new_workers(), others = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);
    unsigned char zero[SEAL_KEY_BYTES] = {0};
    struct sealed sealed;

    (void)state;
    must_seal(sealer, 0, workers.public_key, 0, &sealed);
    assert_false(opens(&sealed, &others));
    /* The public key is no secret key either. */
    assert_false(opens_with(&sealed, workers.public_key, AD, AD_LEN));
    assert_false(opens_with(&sealed, zero, AD, AD_LEN));
    sealer_free(sealer);
}

/* Every byte of the ciphertext, the tag, the nonce and the epk is covered. */
static void test_any_flipped_byte_does_not_open(void **state)
{
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);
    struct sealed sealed, tampered;

    (void)state;
    must_seal(sealer, 0, workers.public_key, 0, &sealed);
    for (size_t i = 0; i < sizeof(sealed.bytes); i++) {
        tampered = sealed;
        tampered.bytes[i] ^= 0x01;
        if (opens(&tampered, &workers))
            fail_msg("opened with %s byte %zu flipped", i < PLAIN_LEN ? "ciphertext" : "tag", i);
    }
    for (size_t i = 0; i < sizeof(sealed.nonce); i++) {
        tampered = sealed;
        tampered.nonce[i] ^= 0x80;
        if (opens(&tampered, &workers))
            fail_msg("opened with nonce byte %zu flipped", i);
    }
    for (size_t i = 0; i < sizeof(sealed.epk); i++) {
        tampered = sealed;
        tampered.epk[i] ^= 0x01;
        if (opens(&tampered, &workers))
            fail_msg("opened with epk byte %zu flipped", i);
    }
    /* An all-zero epk is a low-order point: refused before any decryption. */
    tampered = sealed;
    memset(tampered.epk, 0, sizeof(tampered.epk));
    assert_false(opens(&tampered, &workers));
    assert_true(opens(&sealed, &workers));
    sealer_free(sealer);
}

static uint64_t nonce_counter(const unsigned char nonce[SEAL_NONCE_BYTES])
{
    uint64_t counter = 0;

    for (size_t i = 0; i < 8; i++)
        counter |= (uint64_t)nonce[SEAL_NONCE_BYTES - 8 + i] << (8 * i);
    return counter;
}

static void test_epoch_keeps_its_key_and_counts_nonces(void **state)
{
    enum { VALUES = 300 };
    static struct sealed sealed[VALUES];
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);

    (void)state;
    for (size_t i = 0; i < VALUES; i++)
        must_seal(sealer, 0, workers.public_key, 5000 + i * (EPOCH_MS - 1) / VALUES, &sealed[i]);

    for (size_t i = 0; i < VALUES; i++) {
        assert_memory_equal(sealed[i].epk, sealed[0].epk, SEAL_KEY_BYTES);
        /* A random prefix for the epoch, then a little-endian counter from 0. */
        assert_memory_equal(sealed[i].nonce, sealed[0].nonce, SEAL_NONCE_BYTES - 8);
        assert_int_equal(nonce_counter(sealed[i].nonce), i);
        for (size_t j = 0; j < i; j++)
            assert_memory_not_equal(sealed[i].nonce, sealed[j].nonce, SEAL_NONCE_BYTES);
        assert_true(opens(&sealed[i], &workers));
    }
    /* Same plaintext, same key, new nonce: the ciphertexts differ. */
    assert_memory_not_equal(sealed[0].bytes, sealed[1].bytes, sizeof(sealed[0].bytes));
    sealer_free(sealer);
}

static void test_epoch_ends_on_time(void **state)
{
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);
    struct sealed first, last, next, after;

    (void)state;
    must_seal(sealer, 0, workers.public_key, 5000, &first);
    must_seal(sealer, 0, workers.public_key, 5000 + EPOCH_MS - 1, &last);
    assert_memory_equal(last.epk, first.epk, SEAL_KEY_BYTES);

    /* now_ms >= start + epoch_ms: a new ephemeral key, a new nonce prefix, the count reset. */
    must_seal(sealer, 0, workers.public_key, 5000 + EPOCH_MS, &next);
    assert_memory_not_equal(next.epk, first.epk, SEAL_KEY_BYTES);
    assert_memory_not_equal(next.nonce, first.nonce, SEAL_NONCE_BYTES - 8);
    assert_int_equal(nonce_counter(next.nonce), 0);
    assert_true(opens(&first, &workers));
    assert_true(opens(&next, &workers));

    /* The new epoch is counted from when it started, not from when the last one ended. */
    must_seal(sealer, 0, workers.public_key, 5000 + 2 * EPOCH_MS - 1, &after);
    assert_memory_equal(after.epk, next.epk, SEAL_KEY_BYTES);
    must_seal(sealer, 0, workers.public_key, 5000 + 3 * EPOCH_MS + 500, &after);
    assert_memory_not_equal(after.epk, next.epk, SEAL_KEY_BYTES);
    sealer_free(sealer);
}

static void test_expire_wipes_ended_epochs(void **state)
{
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(2, EPOCH_MS);
    struct sealed first, again, slot1, slot1_again;

    (void)state;
    must_seal(sealer, 0, workers.public_key, 0, &first);
    must_seal(sealer, 1, workers.public_key, 600, &slot1);
    assert_memory_not_equal(slot1.epk, first.epk, SEAL_KEY_BYTES);

    /* Not yet ended: kept. */
    sealer_expire(sealer, EPOCH_MS - 1);
    must_seal(sealer, 0, workers.public_key, 500, &again);
    assert_memory_equal(again.epk, first.epk, SEAL_KEY_BYTES);
    assert_int_equal(nonce_counter(again.nonce), 1);

    /*
     * Slot 0's epoch has ended, slot 1's has not. Sealing at an earlier time than that
     * shows the wipe itself: a live epoch would still be used then.
     */
    sealer_expire(sealer, EPOCH_MS);
    must_seal(sealer, 0, workers.public_key, 500, &again);
    assert_memory_not_equal(again.epk, first.epk, SEAL_KEY_BYTES);
    assert_int_equal(nonce_counter(again.nonce), 0);
    must_seal(sealer, 1, workers.public_key, 700, &slot1_again);
    assert_memory_equal(slot1_again.epk, slot1.epk, SEAL_KEY_BYTES);
    assert_int_equal(nonce_counter(slot1_again.nonce), 1);

    /* What was sealed before still opens with the workers' key, and only with it. */
    assert_true(opens(&first, &workers));
    assert_true(opens(&again, &workers));

    /* Expiring with nothing live, or again at the same time, changes nothing. */
    sealer_expire(sealer, EPOCH_MS);
    sealer_expire(sealer, 0);
    sealer_free(sealer);
}

static void test_slots_are_independent(void **state)
{
    struct workers workers = new_workers(), others = new_workers();
    struct sealer *sealer = sealer_new(2, EPOCH_MS);
    struct sealed first, second, again;

    (void)state;
    must_seal(sealer, 0, workers.public_key, 0, &first);
    must_seal(sealer, 1, others.public_key, 0, &second);
    assert_memory_not_equal(first.epk, second.epk, SEAL_KEY_BYTES);
    assert_true(opens(&first, &workers));
    assert_true(opens(&second, &others));
    assert_false(opens(&second, &workers));

    must_seal(sealer, 0, workers.public_key, 1, &again);
    assert_memory_equal(again.epk, first.epk, SEAL_KEY_BYTES);
    sealer_free(sealer);
}

static void test_new_recipient_starts_a_new_epoch(void **state)
{
    struct workers workers = new_workers(), rotated = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);
    struct sealed first, second, third;

    (void)state;
    must_seal(sealer, 0, workers.public_key, 0, &first);
    must_seal(sealer, 0, rotated.public_key, 1, &second);
    assert_memory_not_equal(second.epk, first.epk, SEAL_KEY_BYTES);
    assert_int_equal(nonce_counter(second.nonce), 0);
    assert_true(opens(&second, &rotated));
    assert_false(opens(&second, &workers));

    /* Going back is a change too: the old epoch is not resumed. */
    must_seal(sealer, 0, workers.public_key, 2, &third);
    assert_memory_not_equal(third.epk, first.epk, SEAL_KEY_BYTES);
    assert_memory_not_equal(third.epk, second.epk, SEAL_KEY_BYTES);
    assert_true(opens(&third, &workers));
    sealer_free(sealer);
}

static void test_slot_out_of_range(void **state)
{
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(2, EPOCH_MS);
    struct sealer *empty = sealer_new(0, EPOCH_MS);
    struct sealed sealed;

    (void)state;
    assert_non_null(empty);
    assert_int_equal(seal_at(sealer, 2, workers.public_key, 0, &sealed), -1);
    assert_int_equal(seal_at(sealer, SIZE_MAX, workers.public_key, 0, &sealed), -1);
    assert_int_equal(seal_at(empty, 0, workers.public_key, 0, &sealed), -1);
    sealer_expire(empty, 0);
    must_seal(sealer, 1, workers.public_key, 0, &sealed);
    sealer_free(sealer);
    sealer_free(empty);
}

static void test_low_order_recipient_is_refused(void **state)
{
    /* Points of small order on Curve25519, given as u-coordinates (little-endian). */
    static const unsigned char low_order[][SEAL_KEY_BYTES] = {
        {0},
        {1},
        {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
         0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
         0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
        {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    };
    struct workers workers = new_workers();
    struct sealer *sealer = sealer_new(1, EPOCH_MS);
    unsigned char key[SEAL_KEY_BYTES];
    struct sealed sealed, before, after;

    (void)state;
    must_seal(sealer, 0, workers.public_key, 0, &before);
    for (size_t i = 0; i < sizeof(low_order) / sizeof(low_order[0]); i++) {
        if (seal_at(sealer, 0, low_order[i], 0, &sealed) != -1)
            fail_msg("low-order point %zu was sealed to", i);
        assert_int_equal(seal_derive_key(workers.secret_key, low_order[i], low_order[i],
                                         workers.public_key, key),
                         -1);
    }
    /* The slot is usable again afterwards, with an epoch of its own. */
    must_seal(sealer, 0, workers.public_key, 0, &after);
    assert_memory_not_equal(after.epk, before.epk, SEAL_KEY_BYTES);
    assert_true(opens(&after, &workers));
    sealer_free(sealer);
}

/* Both ends derive the same key, as ENVELOPE.md's "Sealed values" says they do. */
static void test_derived_key_is_the_same_on_both_sides(void **state)
{
    struct workers workers = new_workers(), ephemeral = new_workers(), others = new_workers();
    unsigned char sealing[SEAL_KEY_BYTES], opening[SEAL_KEY_BYTES], other[SEAL_KEY_BYTES];
    unsigned char shared[crypto_scalarmult_BYTES], expected[SEAL_KEY_BYTES];
    unsigned char message[15 + 2 * SEAL_KEY_BYTES];

    (void)state;
    assert_int_equal(seal_derive_key(ephemeral.secret_key, workers.public_key, ephemeral.public_key,
                                     workers.public_key, sealing),
                     0);
    assert_int_equal(seal_derive_key(workers.secret_key, ephemeral.public_key, ephemeral.public_key,
                                     workers.public_key, opening),
                     0);
    assert_memory_equal(sealing, opening, SEAL_KEY_BYTES);

    /* key = BLAKE2b-256(message = "jobgate-seal-v1" || epk || rpk, key = shared). */
    assert_int_equal(crypto_scalarmult(shared, workers.secret_key, ephemeral.public_key), 0);
    memcpy(message, "jobgate-seal-v1", 15);
    memcpy(message + 15, ephemeral.public_key, SEAL_KEY_BYTES);
    memcpy(message + 15 + SEAL_KEY_BYTES, workers.public_key, SEAL_KEY_BYTES);
    assert_int_equal(crypto_generichash(expected, sizeof(expected), message, sizeof(message),
                                        shared, sizeof(shared)),
                     0);
    assert_memory_equal(opening, expected, SEAL_KEY_BYTES);

    /* The recipient is bound in: the same shared secret for another rpk is another key. */
    assert_int_equal(seal_derive_key(workers.secret_key, ephemeral.public_key, ephemeral.public_key,
                                     others.public_key, other),
                     0);
    assert_memory_not_equal(other, opening, SEAL_KEY_BYTES);
}

static void test_free_null(void **state)
{
    (void)state;
    sealer_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sealed_value_opens),
        cmocka_unit_test(test_empty_and_binary_values),
        cmocka_unit_test(test_other_context_does_not_open),
        cmocka_unit_test(test_other_workers_key_does_not_open),
        cmocka_unit_test(test_any_flipped_byte_does_not_open),
        cmocka_unit_test(test_epoch_keeps_its_key_and_counts_nonces),
        cmocka_unit_test(test_epoch_ends_on_time),
        cmocka_unit_test(test_expire_wipes_ended_epochs),
        cmocka_unit_test(test_slots_are_independent),
        cmocka_unit_test(test_new_recipient_starts_a_new_epoch),
        cmocka_unit_test(test_slot_out_of_range),
        cmocka_unit_test(test_low_order_recipient_is_refused),
        cmocka_unit_test(test_derived_key_is_the_same_on_both_sides),
        cmocka_unit_test(test_free_null),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
