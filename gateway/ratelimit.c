/*
 * ratelimit: GCRA arithmetic and the keyed table of buckets; see ratelimit.h.
 */
#include "ratelimit.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* How many slots from where its digest points a key may live. */
#define RATE_TABLE_PROBES 8
#define DIGEST_BYTES crypto_shorthash_siphashx24_BYTES

/*
 * A slot whose tat is 0 is empty. A key is added only when a take leaves its bucket
 * less than full (tat > now, so tat >= 1), and its tat then only grows until another key
 * takes the slot, so a slot once used never looks empty again.
 */
struct rate_slot {
    unsigned char digest[DIGEST_BYTES];
    uint64_t tat;
};

struct rate_table {
    struct rate_slot *slots;
    size_t mask; /* slot count - 1 */
    int shared;
    pthread_mutex_t lock; /* initialised only when shared */
    unsigned char hash_key[crypto_shorthash_siphashx24_KEYBYTES];
};

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t multiply_saturating(uint64_t a, uint64_t b)
{
    return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

void gcra_init(struct gcra *gcra, double per_second, uint64_t burst)
{
    gcra->interval_us = 0;
    gcra->tolerance_us = 0;
    gcra->burst = burst > 0 ? burst : 1;
    if (!(per_second > 0))
        return;

    double interval = 1e6 / per_second;
    /* From 2^64 up, converting to uint64_t would be undefined. */
    if (interval >= 18446744073709551616.0)
        gcra->interval_us = UINT64_MAX;
    else
        gcra->interval_us = (uint64_t)(interval + 0.5);
    if (gcra->interval_us == 0)
        gcra->interval_us = 1;

    if (gcra->burst > UINT64_MAX / gcra->interval_us)
        gcra->burst = UINT64_MAX / gcra->interval_us;
    gcra->tolerance_us = gcra->interval_us * gcra->burst;
}

/*
 * Written with the debt (how far tat is ahead of now) rather than with tat itself, so
 * that the test debt + cost <= tolerance never overflows; checking n against burst as
 * well keeps a hand-made budget whose tolerance exceeds interval * burst to its burst.
 */
int gcra_take(const struct gcra *gcra, uint64_t *tat, uint64_t now_us, uint64_t n,
              uint64_t *retry_after_us)
{
    uint64_t retry = 0;
    int allowed = 1;

    if (gcra->interval_us != 0) {
        uint64_t debt = gcra_reset_us(*tat, now_us);
        uint64_t cost = multiply_saturating(n, gcra->interval_us);

        if (n > gcra->burst || cost > gcra->tolerance_us) {
            allowed = 0;
            retry = UINT64_MAX;
        } else if (debt > gcra->tolerance_us - cost) {
            allowed = 0;
            retry = debt - (gcra->tolerance_us - cost);
        } else {
            *tat = add_saturating(now_us, debt + cost);
        }
    }
    if (retry_after_us != NULL)
        *retry_after_us = retry;
    return allowed;
}

void gcra_give_back(const struct gcra *gcra, uint64_t *tat, uint64_t n)
{
    uint64_t cost = multiply_saturating(n, gcra->interval_us);

    *tat = *tat > cost ? *tat - cost : 0;
}

uint64_t gcra_remaining(const struct gcra *gcra, uint64_t tat, uint64_t now_us)
{
    if (gcra->interval_us == 0)
        return UINT64_MAX;

    uint64_t debt = gcra_reset_us(tat, now_us);
    if (debt > gcra->tolerance_us)
        return 0;
    uint64_t remaining = (gcra->tolerance_us - debt) / gcra->interval_us;
    return remaining < gcra->burst ? remaining : gcra->burst;
}

uint64_t gcra_reset_us(uint64_t tat, uint64_t now_us)
{
    return tat > now_us ? tat - now_us : 0;
}

struct rate_table *rate_table_new(size_t capacity, int shared)
{
    size_t slot_count = RATE_TABLE_PROBES;

    while (slot_count < capacity) {
        if (slot_count > SIZE_MAX / 2)
            return NULL;
        slot_count *= 2;
    }

    struct rate_table *table = calloc(1, sizeof(*table));
    if (table == NULL)
        return NULL;
    table->slots = calloc(slot_count, sizeof(*table->slots));
    if (table->slots == NULL) {
        free(table);
        return NULL;
    }
    table->shared = shared != 0;
    if (table->shared && pthread_mutex_init(&table->lock, NULL) != 0) {
        free(table->slots);
        free(table);
        return NULL;
    }
    table->mask = slot_count - 1;
    randombytes_buf(table->hash_key, sizeof(table->hash_key));
    return table;
}

void rate_table_free(struct rate_table *table)
{
    if (table == NULL)
        return;
    if (table->shared)
        pthread_mutex_destroy(&table->lock);
    sodium_memzero(table->hash_key, sizeof(table->hash_key));
    free(table->slots);
    free(table);
}

static void lock_table(struct rate_table *table)
{
    if (table->shared)
        pthread_mutex_lock(&table->lock);
}

static void unlock_table(struct rate_table *table)
{
    if (table->shared)
        pthread_mutex_unlock(&table->lock);
}

/*
 * The slot that holds digest (*found 1), or else the slot a key with that digest would
 * take (*found 0): the first empty one within reach, or, when none is, the one whose
 * bucket is full soonest. A lookup may stop at an empty slot because slots are never
 * emptied, so a key stored further on found this one taken when it was added.
 */
static struct rate_slot *find_slot(struct rate_table *table,
                                   const unsigned char digest[DIGEST_BYTES], int *found)
{
    struct rate_slot *fullest = NULL;
    uint64_t home;

    memcpy(&home, digest, sizeof(home));
    for (size_t probe = 0; probe < RATE_TABLE_PROBES; probe++) {
        struct rate_slot *slot = &table->slots[((home & table->mask) + probe) & table->mask];

        if (slot->tat == 0) {
            *found = 0;
            return slot;
        }
        if (memcmp(slot->digest, digest, DIGEST_BYTES) == 0) {
            *found = 1;
            return slot;
        }
        if (fullest == NULL || slot->tat < fullest->tat)
            fullest = slot;
    }
    *found = 0;
    return fullest;
}

int rate_table_take(struct rate_table *table, const void *key, size_t key_len,
                    const struct gcra *gcra, uint64_t now_us, uint64_t n, uint64_t *retry_after_us,
                    uint64_t *remaining, uint64_t *reset_us)
{
    unsigned char digest[DIGEST_BYTES];
    struct rate_slot *slot = NULL;
    uint64_t tat = 0;
    int found = 0;

    /* An unlimited budget keeps no state, so it needs no slot. */
    if (gcra->interval_us != 0) {
        crypto_shorthash_siphashx24(digest, key, key_len, table->hash_key);
        lock_table(table);
        slot = find_slot(table, digest, &found);
        if (found)
            tat = slot->tat;
    }

    int allowed = gcra_take(gcra, &tat, now_us, n, retry_after_us);

    if (slot != NULL) {
        if (allowed && (found || tat > now_us)) {
            memcpy(slot->digest, digest, DIGEST_BYTES);
            slot->tat = tat;
        }
        unlock_table(table);
    }
    if (remaining != NULL)
        *remaining = gcra_remaining(gcra, tat, now_us);
    if (reset_us != NULL)
        *reset_us = gcra_reset_us(tat, now_us);
    return allowed;
}

void rate_table_give_back(struct rate_table *table, const void *key, size_t key_len,
                          const struct gcra *gcra, uint64_t n)
{
    unsigned char digest[DIGEST_BYTES];
    int found;

    if (gcra->interval_us == 0)
        return;
    crypto_shorthash_siphashx24(digest, key, key_len, table->hash_key);
    lock_table(table);
    struct rate_slot *slot = find_slot(table, digest, &found);
    if (found) {
        gcra_give_back(gcra, &slot->tat, n);
        /* A tat of 0 marks an empty slot, which would cut the probe chain. */
        if (slot->tat == 0)
            slot->tat = 1;
    }
    unlock_table(table);
}

int rate_table_would_allow(struct rate_table *table, const void *key, size_t key_len,
                           const struct gcra *gcra, uint64_t now_us, uint64_t n,
                           uint64_t *retry_after_us)
{
    unsigned char digest[DIGEST_BYTES];
    uint64_t tat = 0;
    int found;

    if (gcra->interval_us != 0) {
        crypto_shorthash_siphashx24(digest, key, key_len, table->hash_key);
        lock_table(table);
        struct rate_slot *slot = find_slot(table, digest, &found);
        if (found)
            tat = slot->tat;
        unlock_table(table);
    }
    return gcra_take(gcra, &tat, now_us, n, retry_after_us);
}
