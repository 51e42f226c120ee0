/*
 * seal: secret values sealed to the workers' X25519 key, with a fresh ephemeral key per
 * short epoch and XChaCha20-Poly1305 per value (workers/ENVELOPE.md, "Sealed values").
 *
 * A sealer belongs to one event loop. It keeps, per workers' key, the current epoch's
 * derived key and nonce state in memory that libsodium guards and locks, and
 * sealer_expire() wipes each epoch when it ends, so afterwards nothing here opens what
 * was sealed in it. The ephemeral secret itself is wiped as soon as the key is derived.
 */
#ifndef JOBGATE_SEAL_H
#define JOBGATE_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_BYTES 32
#define SEAL_NONCE_BYTES 24
#define SEAL_TAG_BYTES 16

struct sealer;

/* A sealer with one slot per workers' key; epoch_ms is 1000 to 60000. NULL: no memory. */
struct sealer *sealer_new(size_t slots, uint64_t epoch_ms);

/* Wipes and frees sealer (NULL is fine). */
void sealer_free(struct sealer *sealer);

/*
 * Seals plain to the workers' public key recipient, kept in slot, at now_ms (a
 * monotonic clock in milliseconds). Writes the epoch's public key to epk, the value's
 * nonce to nonce and len + SEAL_TAG_BYTES bytes to sealed. Returns 0, or -1 when the
 * slot is out of range or the key is unusable (a low-order point).
 */
int sealer_seal(struct sealer *sealer, size_t slot, const unsigned char recipient[SEAL_KEY_BYTES],
                uint64_t now_ms, const unsigned char *ad, size_t ad_len, const unsigned char *plain,
                size_t len, unsigned char epk[SEAL_KEY_BYTES],
                unsigned char nonce[SEAL_NONCE_BYTES], unsigned char *sealed);

/* Wipes every epoch that has ended by now_ms. */
void sealer_expire(struct sealer *sealer, uint64_t now_ms);

/*
 * The key a value sealed with the ephemeral key epk to the workers' key pair
 * (secret, recipient) is sealed under. The sealing side passes its ephemeral secret
 * and the workers' public key; the opening side passes the workers' secret and epk:
 * X25519 gives both the same shared secret. Returns 0, or -1 for a low-order point.
 */
int seal_derive_key(const unsigned char own_secret[SEAL_KEY_BYTES],
                    const unsigned char their_public[SEAL_KEY_BYTES],
                    const unsigned char epk[SEAL_KEY_BYTES],
                    const unsigned char recipient[SEAL_KEY_BYTES],
                    unsigned char key[SEAL_KEY_BYTES]);

/*
 * Opens sealed (sealed_len bytes, tag included) with the workers' secret key into plain,
 * which has room for sealed_len - SEAL_TAG_BYTES bytes. Returns 0, or -1 when it does
 * not open: another key, another context (ad), or tampered bytes.
 */
int seal_open(const unsigned char secret[SEAL_KEY_BYTES], const unsigned char epk[SEAL_KEY_BYTES],
              const unsigned char nonce[SEAL_NONCE_BYTES], const unsigned char *sealed,
              size_t sealed_len, const unsigned char *ad, size_t ad_len, unsigned char *plain);

#endif
