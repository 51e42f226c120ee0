/*
 * ratelimit: budgets kept as GCRA buckets (the generic cell rate algorithm), and a bounded
 * table of buckets keyed by tenant, address prefix or connection.
 *
 * A bucket's whole state is its theoretical arrival time (tat): the instant, in
 * microseconds of the caller's monotonic clock, at which the bucket is full again. Any
 * tat at or before now, 0 included, is a full bucket. The arithmetic saturates instead
 * of wrapping, so it is exact while now + tolerance fits in 64 bits and never lets a
 * huge request or rate through by overflow.
 *
 * Nothing here reads a clock or keeps global state; callers pass now_us.
 */
#ifndef JOBGATE_RATELIMIT_H
#define JOBGATE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

/* A budget: one event per interval_us on average, up to burst at once. */
struct gcra {
    uint64_t interval_us;  /* 0: unlimited */
    uint64_t tolerance_us; /* interval_us * burst */
    uint64_t burst;
};

/*
 * A budget of per_second events a second on average, burst at once. per_second 0 (or
 * anything not above 0, NaN included) is unlimited. The interval is 1e6 / per_second
 * rounded to the nearest microsecond, at least 1, so rates above a million a second
 * count as a million. burst 0 counts as 1, and burst is capped so that the tolerance
 * fits in 64 bits.
 */
void gcra_init(struct gcra *gcra, double per_second, uint64_t burst);

/*
 * Takes n events at now_us from the bucket whose state is *tat. When the budget allows
 * them (max(tat, now) + n * interval - now <= tolerance), advances *tat, sets
 * *retry_after_us to 0 and returns 1. Otherwise leaves *tat, sets *retry_after_us to the
 * microseconds until the same n would be allowed (UINT64_MAX when never: n > burst) and
 * returns 0. An unlimited budget allows everything and leaves *tat as it is.
 * retry_after_us may be NULL.
 */
int gcra_take(const struct gcra *gcra, uint64_t *tat, uint64_t now_us, uint64_t n,
              uint64_t *retry_after_us);

/*
 * Puts n events taken from the bucket whose state is *tat back, for events that were
 * taken and then did not happen. Giving back more than was taken leaves a full bucket.
 */
void gcra_give_back(const struct gcra *gcra, uint64_t *tat, uint64_t n);

/* How many events the bucket allows at now_us (UINT64_MAX for an unlimited budget). */
uint64_t gcra_remaining(const struct gcra *gcra, uint64_t tat, uint64_t now_us);

/* Microseconds from now_us until the bucket is full again; 0 when it is full. */
uint64_t gcra_reset_us(uint64_t tat, uint64_t now_us);

/*
 * A bounded map from keys (any bytes, any length) to bucket states.
 *
 * It stores, instead of a key, a 16-byte SipHash digest of it under a random key drawn
 * for each table, so keys of any length cost the same memory, two keys share a bucket
 * only with negligible chance, and clients cannot choose keys that collide. Slots are
 * open-addressed in a power of two at least the capacity asked for (and at least 8); a
 * key lives within 8 slots of where its digest points. To add a key when those 8 are
 * taken, the table reuses the one whose bucket is full soonest: forgetting a full
 * bucket changes nothing, and a key whose bucket is forgotten early only gets a fresh
 * full bucket. Memory stays fixed however many keys come.
 *
 * Limitation: when more keys are busy at once than the table has room for, some of them
 * are forgotten before their buckets refill and so get more than their budget; size the
 * capacity to several times the keys expected to be busy within one reset period.
 */
struct rate_table;

/*
 * A table of at least capacity slots. With shared 1 it may be used from several threads
 * at once (a mutex guards it); with shared 0, from one thread at a time. Call after
 * sodium_init(). Returns NULL when out of memory or when capacity is too large.
 */
struct rate_table *rate_table_new(size_t capacity, int shared);

/* Frees table (NULL is fine). */
void rate_table_free(struct rate_table *table);

/*
 * gcra_take() on key's bucket, where a key not in the table has a full bucket. Sets
 * *remaining and *reset_us as gcra_remaining() and gcra_reset_us() give them for the
 * bucket afterwards. Returns 1 when taken, 0 when not. A key is added only when a take
 * changes its bucket, so refusals and unlimited budgets leave the table as it was.
 * Each out pointer may be NULL.
 */
int rate_table_take(struct rate_table *table, const void *key, size_t key_len,
                    const struct gcra *gcra, uint64_t now_us, uint64_t n, uint64_t *retry_after_us,
                    uint64_t *remaining, uint64_t *reset_us);

/* gcra_give_back() on key's bucket; a key not in the table has a full bucket already. */
void rate_table_give_back(struct rate_table *table, const void *key, size_t key_len,
                          const struct gcra *gcra, uint64_t n);

/*
 * Whether rate_table_take() would take n now, and its *retry_after_us if not, without
 * taking anything or adding key. retry_after_us may be NULL.
 */
int rate_table_would_allow(struct rate_table *table, const void *key, size_t key_len,
                           const struct gcra *gcra, uint64_t now_us, uint64_t n,
                           uint64_t *retry_after_us);

#endif
