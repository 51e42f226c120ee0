/*
 * Unit tests for ratelimit: the GCRA arithmetic at its boundaries and extremes, and the
 * keyed table's memory bound, eviction and locking.
 *
 * Every test passes its own clock, so times are exact and nothing sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "failing_allocator.h"
#include "ratelimit.h"

/* An arbitrary monotonic instant, far enough from 0 to step back from. */
#define T0 1000000000u
#define SECOND 1000000u

static struct gcra budget(double per_second, uint64_t burst)
{
    struct gcra gcra;
    gcra_init(&gcra, per_second, burst);
    return gcra;
}

static int take(struct rate_table *table, const char *key, const struct gcra *gcra, uint64_t now_us,
                uint64_t n)
{
    return rate_table_take(table, key, strlen(key), gcra, now_us, n, NULL, NULL, NULL);
}

static int would_allow(struct rate_table *table, const char *key, const struct gcra *gcra,
                       uint64_t now_us, uint64_t n)
{
    return rate_table_would_allow(table, key, strlen(key), gcra, now_us, n, NULL);
}

static void test_init(void **state)
{
    struct gcra gcra;

    (void)state;
    gcra = budget(10, 5);
    assert_int_equal(gcra.interval_us, 100000);
    assert_int_equal(gcra.tolerance_us, 500000);
    assert_int_equal(gcra.burst, 5);

    /* Rounded to the nearest microsecond. */
    assert_int_equal(budget(3, 1).interval_us, 333333);
    assert_int_equal(budget(6, 1).interval_us, 166667);
    assert_int_equal(budget(0.5, 1).interval_us, 2000000);
    assert_int_equal(budget(1e6, 1).interval_us, 1);
    assert_int_equal(budget(3e6, 1).interval_us, 1);
    assert_int_equal(budget(INFINITY, 1).interval_us, 1);

    /* Slower than one event in 2^64 microseconds. */
    gcra = budget(1e-20, 7);
    assert_int_equal(gcra.interval_us, UINT64_MAX);
    assert_int_equal(gcra.burst, 1);
    assert_int_equal(gcra.tolerance_us, UINT64_MAX);

    /* burst 0 is one at a time. */
    gcra = budget(10, 0);
    assert_int_equal(gcra.burst, 1);
    assert_int_equal(gcra.tolerance_us, 100000);

    assert_int_equal(budget(0, 5).interval_us, 0);
    assert_int_equal(budget(-1, 5).interval_us, 0);
    assert_int_equal(budget(NAN, 5).interval_us, 0);
}

/* A full bucket gives burst at once, then one per interval, each exactly on time. */
static void test_burst_then_steady_rate(void **state)
{
    struct gcra gcra = budget(10, 5);
    uint64_t tat = 0, retry;

    (void)state;
    for (int i = 0; i < 5; i++) {
        assert_true(gcra_take(&gcra, &tat, T0, 1, &retry));
        assert_int_equal(retry, 0);
    }
    assert_false(gcra_take(&gcra, &tat, T0, 1, &retry));
    assert_int_equal(retry, 100000);
    assert_int_equal(tat, T0 + 500000);

    for (uint64_t k = 1; k <= 100; k++) {
        uint64_t due = T0 + k * 100000;
        assert_false(gcra_take(&gcra, &tat, due - 1, 1, &retry));
        assert_int_equal(retry, 1);
        assert_true(gcra_take(&gcra, &tat, due, 1, &retry));
        assert_false(gcra_take(&gcra, &tat, due, 1, &retry));
        assert_int_equal(retry, 100000);
    }
}

/* When n is refused, it is refused one microsecond before retry_after and allowed at it. */
static void test_retry_after_is_exact(void **state)
{
    struct gcra gcra = budget(7, 9);

    (void)state;
    for (uint64_t drained = 0; drained <= 9; drained++) {
        for (uint64_t n = 1; n <= 9; n++) {
            for (uint64_t waited = 0; waited < 3 * gcra.interval_us; waited += 37813) {
                uint64_t tat = 0, retry, copy;

                if (drained > 0)
                    assert_true(gcra_take(&gcra, &tat, T0, drained, NULL));
                uint64_t now = T0 + waited;
                if (gcra_take(&gcra, &tat, now, n, &retry))
                    continue;
                assert_true(retry > 0);
                assert_true(retry <= n * gcra.interval_us);
                copy = tat;
                uint64_t again;
                assert_false(gcra_take(&gcra, &copy, now + retry - 1, n, &again));
                assert_int_equal(again, 1);
                assert_int_equal(copy, tat);
                assert_true(gcra_take(&gcra, &copy, now + retry, n, &again));
                assert_int_equal(again, 0);
            }
        }
    }
}

static void test_more_than_burst_never(void **state)
{
    struct gcra gcra = budget(10, 5);
    uint64_t tat = 0, retry;

    (void)state;
    assert_false(gcra_take(&gcra, &tat, T0, 6, &retry));
    assert_int_equal(retry, UINT64_MAX);
    assert_int_equal(tat, 0);
    assert_false(gcra_take(&gcra, &tat, UINT64_MAX, 6, &retry));
    assert_int_equal(retry, UINT64_MAX);
    assert_false(gcra_take(&gcra, &tat, T0, UINT64_MAX, &retry));
    assert_int_equal(retry, UINT64_MAX);
    assert_int_equal(tat, 0);

    assert_true(gcra_take(&gcra, &tat, T0, 5, &retry));
    assert_int_equal(tat, T0 + 500000);

    /* Still never, however drained: not a wait that would in fact be too short. */
    assert_false(gcra_take(&gcra, &tat, T0, 6, &retry));
    assert_int_equal(retry, UINT64_MAX);

    /* A hand-made budget whose tolerance is larger than interval * burst keeps to burst. */
    struct gcra loose = {.interval_us = 1000, .tolerance_us = UINT64_MAX, .burst = 3};
    tat = 0;
    assert_false(gcra_take(&loose, &tat, T0, 4, &retry));
    assert_int_equal(retry, UINT64_MAX);
    assert_false(gcra_take(&loose, &tat, T0, UINT64_MAX / 2, &retry));
    assert_int_equal(retry, UINT64_MAX);
    assert_true(gcra_take(&loose, &tat, T0, 3, &retry));
    assert_int_equal(gcra_remaining(&loose, tat, T0), 3);
    assert_int_equal(gcra_remaining(&loose, 0, T0), 3);

    /* Where n * interval passes 2^64, the cost is all there is, not what wraps around. */
    struct gcra wide = {.interval_us = 1ull << 32, .tolerance_us = UINT64_MAX, .burst = UINT64_MAX};
    tat = 0;
    assert_true(gcra_take(&wide, &tat, 0, (1ull << 32) + 1, &retry));
    assert_int_equal(tat, UINT64_MAX);
    assert_false(gcra_take(&wide, &tat, 0, 1, &retry));
}

static void test_unlimited(void **state)
{
    struct gcra gcra = budget(0, 5);
    uint64_t tat = 0, retry = 12345;

    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_true(gcra_take(&gcra, &tat, T0, 1000, &retry));
    assert_true(gcra_take(&gcra, &tat, 0, UINT64_MAX, &retry));
    assert_int_equal(retry, 0);
    assert_int_equal(tat, 0);
    assert_int_equal(gcra_remaining(&gcra, tat, T0), UINT64_MAX);
    assert_int_equal(gcra_reset_us(tat, T0), 0);
}

static void test_remaining_and_reset(void **state)
{
    struct gcra gcra = budget(10, 5);
    uint64_t tat = 0;

    (void)state;
    assert_int_equal(gcra_remaining(&gcra, 0, T0), 5);
    assert_int_equal(gcra_reset_us(0, T0), 0);

    assert_true(gcra_take(&gcra, &tat, T0, 2, NULL));
    assert_int_equal(gcra_remaining(&gcra, tat, T0), 3);
    assert_int_equal(gcra_reset_us(tat, T0), 200000);

    /* Half an interval back is not yet a whole event. */
    assert_int_equal(gcra_remaining(&gcra, tat, T0 + 50000), 3);
    assert_int_equal(gcra_reset_us(tat, T0 + 50000), 150000);
    assert_int_equal(gcra_remaining(&gcra, tat, T0 + 100000), 4);
    assert_int_equal(gcra_remaining(&gcra, tat, T0 + 199999), 4);
    assert_int_equal(gcra_remaining(&gcra, tat, T0 + 200000), 5);
    assert_int_equal(gcra_reset_us(tat, T0 + 200000), 0);
    assert_int_equal(gcra_remaining(&gcra, tat, UINT64_MAX), 5);

    /* A bucket further behind than the tolerance (the clock stepped back): nothing. */
    assert_int_equal(gcra_remaining(&gcra, T0 + 600000, T0), 0);

    /* remaining is what a take allows: that many, and not one more. */
    tat = 0;
    for (uint64_t now = T0; now < T0 + 2 * SECOND; now += 27183) {
        uint64_t left = gcra_remaining(&gcra, tat, now), copy = tat;
        assert_false(gcra_take(&gcra, &copy, now, left + 1, NULL));
        if (left > 0)
            assert_true(gcra_take(&gcra, &copy, now, left, NULL));
        assert_int_equal(gcra_remaining(&gcra, copy, now), 0);
        if ((now / 27183) % 3 == 0)
            tat = copy;
    }
}

static void test_give_back(void **state)
{
    struct gcra gcra = budget(10, 5);
    uint64_t tat = 0;

    (void)state;
    /* What was taken comes back whole, whenever it is given back. */
    assert_true(gcra_take(&gcra, &tat, T0, 3, NULL));
    assert_true(gcra_take(&gcra, &tat, T0, 2, NULL));
    assert_false(gcra_take(&gcra, &tat, T0, 1, NULL));
    gcra_give_back(&gcra, &tat, 2);
    assert_int_equal(gcra_remaining(&gcra, tat, T0), 2);
    assert_int_equal(gcra_remaining(&gcra, tat, T0 + 100000), 3);

    /* Giving back more than the bucket lacks leaves it full, not fuller. */
    gcra_give_back(&gcra, &tat, 100);
    assert_true(tat <= T0);
    assert_int_equal(gcra_remaining(&gcra, tat, T0), 5);
    assert_false(gcra_take(&gcra, &tat, T0, 6, NULL));
    tat = 5;
    gcra_give_back(&gcra, &tat, 1);
    assert_int_equal(tat, 0);

    /* An unlimited budget has nothing to give back. */
    struct gcra unlimited = budget(0, 5);
    tat = 77;
    gcra_give_back(&unlimited, &tat, 3);
    assert_int_equal(tat, 77);
}

static void test_table_give_back(void **state)
{
    struct rate_table *table = rate_table_new(64, 0);
    struct gcra gcra = budget(10, 2);
    uint64_t remaining;

    (void)state;
    assert_non_null(table);
    assert_true(take(table, "acme", &gcra, T0, 2));
    assert_false(take(table, "acme", &gcra, T0, 1));
    rate_table_give_back(table, "acme", 4, &gcra, 1);
    assert_true(rate_table_take(table, "acme", 4, &gcra, T0, 1, NULL, &remaining, NULL));
    assert_int_equal(remaining, 0);

    /* A bucket given back to full stays in its slot, and the key keeps its own budget. */
    rate_table_give_back(table, "acme", 4, &gcra, 50);
    assert_true(take(table, "acme", &gcra, T0, 2));
    assert_false(take(table, "acme", &gcra, T0, 1));

    /* A key the table does not hold is already full: nothing is added. */
    rate_table_give_back(table, "globex", 6, &gcra, 1);
    assert_true(take(table, "globex", &gcra, T0, 2));
    assert_false(take(table, "globex", &gcra, T0, 1));
    rate_table_free(table);
}

/* Whoever takes as soon as allowed gets burst + elapsed / interval events. */
static uint64_t greedy_total(const struct gcra *gcra, uint64_t duration_us, uint64_t step_us)
{
    uint64_t tat = 0, total = 0;

    for (uint64_t now = T0; now <= T0 + duration_us; now += step_us) {
        while (gcra_take(gcra, &tat, now, 1, NULL))
            total++;
    }
    return total;
}

static void test_fractional_rate(void **state)
{
    struct gcra half = budget(0.5, 1);
    uint64_t tat = 0, retry;

    (void)state;
    assert_true(gcra_take(&half, &tat, T0, 1, &retry));
    assert_false(gcra_take(&half, &tat, T0 + 1999999, 1, &retry));
    assert_int_equal(retry, 1);
    assert_true(gcra_take(&half, &tat, T0 + 2000000, 1, &retry));
    assert_int_equal(greedy_total(&half, 60 * SECOND, 1000), 1 + 30);

    struct gcra two_and_a_half = budget(2.5, 3);
    assert_int_equal(two_and_a_half.interval_us, 400000);
    assert_int_equal(greedy_total(&two_and_a_half, 10 * SECOND, 1000), 3 + 25);
    assert_int_equal(greedy_total(&two_and_a_half, 10 * SECOND, 1), 3 + 25);
}

static void test_saturation(void **state)
{
    struct gcra glacial = budget(1e-30, 1);
    uint64_t tat = 0, retry;

    (void)state;
    assert_true(gcra_take(&glacial, &tat, 0, 1, &retry));
    assert_int_equal(tat, UINT64_MAX);
    assert_false(gcra_take(&glacial, &tat, 1000, 1, &retry));
    assert_int_equal(retry, UINT64_MAX - 1000);
    assert_int_equal(gcra_remaining(&glacial, tat, 1000), 0);
    assert_int_equal(gcra_reset_us(tat, 1000), UINT64_MAX - 1000);

    /* Near the end of the clock, tat stops at UINT64_MAX instead of wrapping to the past. */
    struct gcra gcra = budget(10, 5);
    tat = 0;
    assert_true(gcra_take(&gcra, &tat, UINT64_MAX - 10, 1, &retry));
    assert_int_equal(tat, UINT64_MAX);
    assert_true(gcra_take(&gcra, &tat, UINT64_MAX - 10, 1, &retry));
    assert_int_equal(tat, UINT64_MAX);
    assert_int_equal(gcra_reset_us(tat, UINT64_MAX - 10), 10);

    /* The largest burst that fits: tolerance stays within 64 bits and n * interval too. */
    struct gcra huge = budget(1, UINT64_MAX);
    assert_int_equal(huge.burst, UINT64_MAX / 1000000);
    assert_int_equal(huge.tolerance_us, huge.burst * 1000000);
    tat = 0;
    assert_false(gcra_take(&huge, &tat, 0, huge.burst + 1, &retry));
    assert_int_equal(retry, UINT64_MAX);
    assert_true(gcra_take(&huge, &tat, 0, huge.burst, &retry));
    assert_int_equal(tat, huge.tolerance_us);
    assert_false(gcra_take(&huge, &tat, 0, 1, &retry));
    assert_int_equal(retry, 1000000);

    struct gcra fast = budget(1e6, UINT64_MAX);
    assert_int_equal(fast.tolerance_us, UINT64_MAX);
    tat = 0;
    assert_true(gcra_take(&fast, &tat, 0, UINT64_MAX, &retry));
    assert_int_equal(tat, UINT64_MAX);
    assert_false(gcra_take(&fast, &tat, 0, 1, &retry));
    assert_int_equal(retry, 1);
}

static void test_table_keys(void **state)
{
    struct rate_table *table = rate_table_new(4096, 0);
    struct gcra gcra = budget(10, 2);
    uint64_t retry, remaining, reset;
    char long_key[1000];

    (void)state;
    assert_non_null(table);

    /* A new key starts full, and reports its bucket after the take. */
    assert_true(rate_table_take(table, "acme", 4, &gcra, T0, 1, &retry, &remaining, &reset));
    assert_int_equal(retry, 0);
    assert_int_equal(remaining, 1);
    assert_int_equal(reset, 100000);
    assert_true(rate_table_take(table, "acme", 4, &gcra, T0, 1, &retry, &remaining, &reset));
    assert_int_equal(remaining, 0);
    assert_int_equal(reset, 200000);
    assert_false(rate_table_take(table, "acme", 4, &gcra, T0, 1, &retry, &remaining, &reset));
    assert_int_equal(retry, 100000);
    assert_int_equal(remaining, 0);
    assert_int_equal(reset, 200000);
    assert_true(rate_table_take(table, "acme", 4, &gcra, T0 + 100000, 1, NULL, NULL, NULL));

    /* Keys are bytes and their length: prefixes, NULs and the empty key are their own. */
    assert_true(take(table, "acm", &gcra, T0, 2));
    assert_true(take(table, "acmeacme", &gcra, T0, 2));
    assert_true(rate_table_take(table, "acme\0", 5, &gcra, T0, 2, NULL, NULL, NULL));
    assert_true(rate_table_take(table, "acme\0x", 6, &gcra, T0, 2, NULL, NULL, NULL));
    assert_true(rate_table_take(table, "", 0, &gcra, T0, 2, NULL, NULL, NULL));
    assert_false(rate_table_take(table, "", 0, &gcra, T0, 1, NULL, NULL, NULL));
    assert_false(take(table, "acm", &gcra, T0, 1));

    /* A key of any length, and not cut short: one that differs at its end is another. */
    memset(long_key, 'k', sizeof(long_key));
    assert_true(rate_table_take(table, long_key, sizeof(long_key), &gcra, T0, 2, NULL, NULL, NULL));
    assert_false(
        rate_table_take(table, long_key, sizeof(long_key), &gcra, T0, 1, NULL, NULL, NULL));
    assert_true(rate_table_take(table, long_key, 128, &gcra, T0, 2, NULL, NULL, NULL));
    long_key[sizeof(long_key) - 1] = 'x';
    assert_true(rate_table_take(table, long_key, sizeof(long_key), &gcra, T0, 2, NULL, NULL, NULL));

    /* would_allow: a missing key is full; n beyond burst is never. */
    assert_true(rate_table_would_allow(table, "initech", 7, &gcra, T0, 2, &retry));
    assert_int_equal(retry, 0);
    assert_false(rate_table_would_allow(table, "initech", 7, &gcra, T0, 3, &retry));
    assert_int_equal(retry, UINT64_MAX);
    assert_false(rate_table_would_allow(table, "acm", 3, &gcra, T0 + 50000, 1, &retry));
    assert_int_equal(retry, 50000);
    assert_true(rate_table_would_allow(table, "acm", 3, &gcra, T0 + 100000, 1, NULL));
    assert_false(rate_table_would_allow(table, "acm", 3, &gcra, T0 + 100000, 2, NULL));
    /* ... and takes nothing. */
    assert_true(take(table, "acm", &gcra, T0 + 100000, 1));
    assert_false(take(table, "acm", &gcra, T0 + 100000, 1));

    /* An unlimited budget on a drained key allows, and reports no limit. */
    struct gcra unlimited = budget(0, 2);
    assert_true(rate_table_take(table, "acm", 3, &unlimited, T0, 100, &retry, &remaining, &reset));
    assert_int_equal(remaining, UINT64_MAX);
    assert_int_equal(reset, 0);
    assert_false(take(table, "acm", &gcra, T0 + 100000, 1));

    rate_table_free(table);
}

/* Fills the eight slots of a table of capacity 8 with keys k1..k8, where kK took K of 10. */
static struct rate_table *eight_drained_keys(const struct gcra *gcra)
{
    struct rate_table *table = rate_table_new(8, 0);
    char key[32];

    assert_non_null(table);
    for (int k = 1; k <= 8; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        assert_true(take(table, key, gcra, T0, (uint64_t)k));
    }
    return table;
}

static void test_eviction_prefers_fullest(void **state)
{
    struct gcra gcra = budget(10, 10);
    struct rate_table *table = eight_drained_keys(&gcra);
    char key[32];

    (void)state;
    /* A ninth key takes the slot of k1, whose bucket is the fullest: k1 starts over. */
    assert_true(take(table, "new", &gcra, T0, 1));
    assert_true(would_allow(table, "k1", &gcra, T0, 10));
    for (int k = 2; k <= 8; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        assert_true(would_allow(table, key, &gcra, T0, (uint64_t)(10 - k)));
        assert_false(would_allow(table, key, &gcra, T0, (uint64_t)(10 - k + 1)));
    }
    assert_false(would_allow(table, "new", &gcra, T0, 10));
    assert_true(would_allow(table, "new", &gcra, T0, 9));
    rate_table_free(table);

    /* A bucket that is full again goes first, even before a less drained busy one. */
    table = rate_table_new(8, 0);
    assert_non_null(table);
    assert_true(take(table, "old", &gcra, T0, 10));
    for (int k = 1; k <= 7; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        assert_true(take(table, key, &gcra, T0 + SECOND, 1));
    }
    assert_true(take(table, "new", &gcra, T0 + SECOND, 1));
    for (int k = 1; k <= 7; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        assert_false(would_allow(table, key, &gcra, T0 + SECOND, 10));
    }
    assert_false(would_allow(table, "new", &gcra, T0 + SECOND, 10));
    rate_table_free(table);
}

/* Refusals, unlimited budgets and would_allow add no key, so they evict nothing. */
static void test_refusals_evict_nothing(void **state)
{
    struct gcra gcra = budget(10, 10), unlimited = budget(0, 10);
    struct rate_table *table = eight_drained_keys(&gcra);
    char key[32];

    (void)state;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "other%d", i);
        assert_false(take(table, key, &gcra, T0, 11));
        assert_true(take(table, key, &unlimited, T0, 11));
        assert_true(would_allow(table, key, &gcra, T0, 1));
        assert_true(take(table, key, &gcra, T0, 0));
    }
    for (int k = 1; k <= 8; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        assert_false(would_allow(table, key, &gcra, T0, (uint64_t)(10 - k + 1)));
    }
    rate_table_free(table);
}

/*
 * A stream of 100000 connection ids through 4096 slots, each taking its whole burst of 2
 * at one a second as it arrives, one every 0.1 s: the last 20 are busy at any time, and
 * the table must still know each of them. (Their slots are drawn at random; 20 keys
 * crowding the reach of a 21st is far too unlikely to make this test flaky.)
 */
static void test_many_keys_stay_bounded(void **state)
{
    struct gcra gcra = budget(1, 2);
    struct rate_table *table = rate_table_new(4096, 0);
    const uint64_t step = 100000;

    (void)state;
    assert_non_null(table);
    for (uint64_t id = 0; id < 100000; id++) {
        uint64_t now = T0 + id * step;

        assert_true(rate_table_take(table, &id, sizeof(id), &gcra, now, 2, NULL, NULL, NULL));
        if (id % 1000 != 999)
            continue;
        for (uint64_t back = 1; back < 20; back++) {
            uint64_t older = id - back, retry;
            int refilled_one = back * step >= SECOND;

            assert_int_equal(
                rate_table_would_allow(table, &older, sizeof(older), &gcra, now, 1, &retry),
                refilled_one);
            assert_false(rate_table_would_allow(table, &older, sizeof(older), &gcra, now, 2, NULL));
            if (!refilled_one)
                assert_int_equal(retry, SECOND - back * step);
        }
    }
    rate_table_free(table);
}

struct taker {
    pthread_t thread;
    pthread_barrier_t *start;
    struct rate_table *table;
    const struct gcra *gcra;
    uint64_t now;
    uint64_t taken;
};

#define ATTEMPTS 100000

static void *take_repeatedly(void *argument)
{
    struct taker *taker = argument;

    pthread_barrier_wait(taker->start);
    for (uint32_t i = 0; i < ATTEMPTS; i++) {
        taker->taken += (uint64_t)rate_table_take(taker->table, "tenant", 6, taker->gcra,
                                                  taker->now, 1, NULL, NULL, NULL);
        /* Other keys in between, so the threads also race to add and evict. */
        if (i % 16 == 0)
            rate_table_take(taker->table, &i, sizeof(i), taker->gcra, taker->now, 1, NULL, NULL,
                            NULL);
    }
    return NULL;
}

/* Both threads start together and try ATTEMPTS takes each; returns how many were taken. */
static uint64_t take_from_two_threads(struct rate_table *table, const struct gcra *gcra,
                                      uint64_t now)
{
    struct taker takers[2];
    pthread_barrier_t start;

    assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
    for (int i = 0; i < 2; i++) {
        takers[i] = (struct taker){.start = &start, .table = table, .gcra = gcra, .now = now};
        assert_int_equal(pthread_create(&takers[i].thread, NULL, take_repeatedly, &takers[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(takers[i].thread, NULL), 0);
    pthread_barrier_destroy(&start);
    return takers[0].taken + takers[1].taken;
}

/*
 * With a burst the two threads cannot exhaust alone, they contend over the whole run;
 * the mutex must keep every take of the one key counted, on a clock that stands still.
 */
static void test_shared_table_from_two_threads(void **state)
{
    struct gcra gcra = budget(1000, 3 * ATTEMPTS / 2);
    struct rate_table *table = rate_table_new(1 << 16, 1);

    (void)state;
    assert_non_null(table);
    assert_int_equal(take_from_two_threads(table, &gcra, T0), 3 * ATTEMPTS / 2);
    assert_int_equal(take_from_two_threads(table, &gcra, T0), 0);
    assert_int_equal(take_from_two_threads(table, &gcra, T0 + 10 * SECOND), 10000);
    assert_int_equal(take_from_two_threads(table, &gcra, T0 + 1000 * SECOND), 3 * ATTEMPTS / 2);
    rate_table_free(table);
}

static void test_table_sizes(void **state)
{
    struct gcra gcra = budget(10, 1);
    struct rate_table *table;

    (void)state;
    /* Capacity 0 still has its eight slots. */
    table = rate_table_new(0, 0);
    assert_non_null(table);
    assert_true(take(table, "a", &gcra, T0, 1));
    assert_false(take(table, "a", &gcra, T0, 1));
    rate_table_free(table);

    assert_null(rate_table_new(SIZE_MAX, 0));
    assert_null(rate_table_new(SIZE_MAX / 2 + 2, 1));
    rate_table_free(NULL);
}

/* Each allocation rate_table_new makes fails in turn: it returns NULL and leaks nothing. */
static void test_allocation_failure(void **state)
{
#ifdef SANITIZED
    (void)state;
    skip();
#else
    struct rate_table *table;

    (void)state;
    if (!allocator_can_fail())
        skip();

    for (failing_allocation = 0;; failing_allocation++) {
        allocations_made = 0;
        tracked_count = 0;
        allocator_armed = 1;
        table = rate_table_new(100, 1);
        allocator_armed = 0;
        if (table != NULL)
            break;
        assert_int_equal(tracked_count, 0);
    }
    assert_int_equal(failing_allocation, 2);
    rate_table_free(table);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_burst_then_steady_rate),
        cmocka_unit_test(test_retry_after_is_exact),
        cmocka_unit_test(test_more_than_burst_never),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_remaining_and_reset),
        cmocka_unit_test(test_give_back),
        cmocka_unit_test(test_table_give_back),
        cmocka_unit_test(test_fractional_rate),
        cmocka_unit_test(test_saturation),
        cmocka_unit_test(test_table_keys),
        cmocka_unit_test(test_eviction_prefers_fullest),
        cmocka_unit_test(test_refusals_evict_nothing),
        cmocka_unit_test(test_many_keys_stay_bounded),
        cmocka_unit_test(test_shared_table_from_two_threads),
        cmocka_unit_test(test_table_sizes),
        cmocka_unit_test(test_allocation_failure),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
