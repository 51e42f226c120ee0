/*
 * seal: epoch keys and per-value AEAD; see seal.h.
 */
#include "seal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_LABEL "jobgate-seal-v1"
#define NONCE_PREFIX_BYTES (SEAL_NONCE_BYTES - 8)

/* One workers' key's current epoch. */
struct epoch {
    int live;
    uint64_t ends_ms;
    unsigned char recipient[SEAL_KEY_BYTES];
    unsigned char epk[SEAL_KEY_BYTES];
    unsigned char key[SEAL_KEY_BYTES];
    unsigned char nonce_prefix[NONCE_PREFIX_BYTES];
    uint64_t counter;
};

struct sealer {
    uint64_t epoch_ms;
    size_t slots;
    struct epoch *epochs; /* sodium_allocarray: guarded, locked, wiped when freed */
};

struct sealer *sealer_new(size_t slots, uint64_t epoch_ms)
{
    struct sealer *sealer = calloc(1, sizeof(*sealer));

    if (sealer == NULL)
        return NULL;
    sealer->epoch_ms = epoch_ms;
    sealer->slots = slots;
    sealer->epochs = sodium_allocarray(slots > 0 ? slots : 1, sizeof(*sealer->epochs));
    if (sealer->epochs == NULL) {
        free(sealer);
        return NULL;
    }
    sodium_memzero(sealer->epochs, (slots > 0 ? slots : 1) * sizeof(*sealer->epochs));
    return sealer;
}

void sealer_free(struct sealer *sealer)
{
    if (sealer == NULL)
        return;
    sodium_free(sealer->epochs);
    free(sealer);
}

int seal_derive_key(const unsigned char own_secret[SEAL_KEY_BYTES],
                    const unsigned char their_public[SEAL_KEY_BYTES],
                    const unsigned char epk[SEAL_KEY_BYTES],
                    const unsigned char recipient[SEAL_KEY_BYTES],
                    unsigned char key[SEAL_KEY_BYTES])
{
    unsigned char shared[crypto_scalarmult_BYTES];
    unsigned char message[sizeof(SEAL_LABEL) - 1 + 2 * SEAL_KEY_BYTES];
    int result = -1;

    /* libsodium refuses a shared secret of all zeros, which a low-order point gives. */
    if (crypto_scalarmult(shared, own_secret, their_public) == 0) {
        memcpy(message, SEAL_LABEL, sizeof(SEAL_LABEL) - 1);
        memcpy(message + sizeof(SEAL_LABEL) - 1, epk, SEAL_KEY_BYTES);
        memcpy(message + sizeof(SEAL_LABEL) - 1 + SEAL_KEY_BYTES, recipient, SEAL_KEY_BYTES);
        result = crypto_generichash(key, SEAL_KEY_BYTES, message, sizeof(message), shared,
                                    sizeof(shared));
    }
    sodium_memzero(shared, sizeof(shared));
    return result;
}

/* Starts a new epoch in slot for recipient; the ephemeral secret never outlives this. */
static int start_epoch(const struct sealer *sealer, struct epoch *epoch,
                       const unsigned char recipient[SEAL_KEY_BYTES], uint64_t now_ms)
{
    unsigned char esk[crypto_scalarmult_SCALARBYTES];
    int result;

    randombytes_buf(esk, sizeof(esk));
    crypto_scalarmult_base(epoch->epk, esk);
    memcpy(epoch->recipient, recipient, SEAL_KEY_BYTES);
    result = seal_derive_key(esk, recipient, epoch->epk, recipient, epoch->key);
    sodium_memzero(esk, sizeof(esk));
    if (result != 0) {
        sodium_memzero(epoch, sizeof(*epoch));
        return -1;
    }
    randombytes_buf(epoch->nonce_prefix, sizeof(epoch->nonce_prefix));
    epoch->counter = 0;
    epoch->ends_ms = now_ms + sealer->epoch_ms;
    epoch->live = 1;
    return 0;
}

int sealer_seal(struct sealer *sealer, size_t slot, const unsigned char recipient[SEAL_KEY_BYTES],
                uint64_t now_ms, const unsigned char *ad, size_t ad_len, const unsigned char *plain,
                size_t len, unsigned char epk[SEAL_KEY_BYTES],
                unsigned char nonce[SEAL_NONCE_BYTES], unsigned char *sealed)
{
    struct epoch *epoch;

    if (slot >= sealer->slots)
        return -1;
    epoch = &sealer->epochs[slot];
    if ((!epoch->live || now_ms >= epoch->ends_ms ||
         sodium_memcmp(epoch->recipient, recipient, SEAL_KEY_BYTES) != 0) &&
        start_epoch(sealer, epoch, recipient, now_ms) != 0)
        return -1;

    /* Within an epoch, nonces never repeat: a random prefix, then a counter. */
    memcpy(nonce, epoch->nonce_prefix, NONCE_PREFIX_BYTES);
    for (size_t i = 0; i < 8; i++)
        nonce[NONCE_PREFIX_BYTES + i] = (unsigned char)(epoch->counter >> (8 * i));
    epoch->counter++;
    memcpy(epk, epoch->epk, SEAL_KEY_BYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(sealed, NULL, plain, len, ad, ad_len, NULL, nonce,
                                               epoch->key);
    return 0;
}

void sealer_expire(struct sealer *sealer, uint64_t now_ms)
{
    for (size_t i = 0; i < sealer->slots; i++) {
        struct epoch *epoch = &sealer->epochs[i];
        if (epoch->live && now_ms >= epoch->ends_ms)
            sodium_memzero(epoch, sizeof(*epoch));
    }
}

int seal_open(const unsigned char secret[SEAL_KEY_BYTES], const unsigned char epk[SEAL_KEY_BYTES],
              const unsigned char nonce[SEAL_NONCE_BYTES], const unsigned char *sealed,
              size_t sealed_len, const unsigned char *ad, size_t ad_len, unsigned char *plain)
{
    unsigned char recipient[SEAL_KEY_BYTES];
    unsigned char key[SEAL_KEY_BYTES];
    int result = -1;

    if (sealed_len < SEAL_TAG_BYTES)
        return -1;
    crypto_scalarmult_base(recipient, secret);
    if (seal_derive_key(secret, epk, epk, recipient, key) == 0)
        result = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, sealed, sealed_len,
                                                            ad, ad_len, nonce, key);
    sodium_memzero(key, sizeof(key));
    return result == 0 ? 0 : -1;
}
