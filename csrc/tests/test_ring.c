/*
 * test_ring.c: tests for csrc/ring.c.
 *
 *   gcc -std=c11 -g -pthread -fsanitize=address,undefined -fno-omit-frame-pointer \
 *       -Icsrc csrc/ring.c csrc/tests/test_ring.c -o /tmp/test_ring && /tmp/test_ring
 *
 * The last line printed is "N passed, M failed"; the exit code is nonzero
 * if anything failed.
 */
#include "ring.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

static int passed = 0, failed = 0;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (cond) {                                                         \
            passed++;                                                       \
        } else {                                                            \
            failed++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                   \
    } while (0)

#define ITEM(n) ((void *)(uintptr_t)(n))
#define NUM(p) ((uintptr_t)(p))

/* Read one item; returns the ls_ring_next code. */
static int read1(ls_ring *r, ls_cursor *c, uintptr_t *v, uint64_t *s,
                 int *rec) {
    void *item = NULL;
    int code = ls_ring_next(r, c, &item, s, rec);
    if (code == LS_OK)
        *v = NUM(item);
    return code;
}

static void test_counter(void) {
    ls_counter c;
    uint64_t i;
    ls_counter_init(&c);
    CHECK(ls_counter_value(&c) == 0);
    for (i = 1; i <= 5; i++)
        CHECK(ls_counter_next(&c) == i);
    CHECK(ls_counter_value(&c) == 5);
}

static void test_lazy_subscribe(void) {
    ls_counter k;
    ls_ring r;
    ls_cursor c;
    uint64_t seq;
    void *ev;
    uintptr_t v;
    int rec;
    ls_counter_init(&k);
    ls_ring_init(&r, 0, &k);
    CHECK(ls_ring_push(&r, ITEM(1), &seq, &ev) == LS_NOT_STORED);
    CHECK(seq == 1 && ev == NULL && r.last_seq == 1);
    CHECK(ls_ring_len(&r) == 0);
    CHECK(ls_ring_cursor_open(&r, &c) == LS_OK);
    CHECK(read1(&r, &c, &v, &seq, &rec) == LS_EMPTY);
    CHECK(ls_ring_push(&r, ITEM(2), &seq, &ev) == LS_OK);
    CHECK(seq == 2 && ls_ring_len(&r) == 1 && ls_ring_pending(&r, &c) == 1);
    CHECK(ls_ring_peek(&r, &c, &seq) == 1 && seq == 2);
    CHECK(read1(&r, &c, &v, &seq, &rec) == LS_OK);
    CHECK(v == 2 && seq == 2 && rec == 1);
    CHECK(ls_ring_len(&r) == 0 && ls_ring_peek(&r, &c, &seq) == 0);
    ls_ring_cursor_close(&r, &c);
    CHECK(c.slot == LS_DETACHED && r.ncursors == 0);
    ls_ring_cursor_close(&r, &c); /* idempotent */
    CHECK(r.ncursors == 0);
    ls_ring_destroy(&r);
}

static void test_growth_and_wrap(void) {
    ls_counter k;
    ls_ring r;
    ls_cursor c;
    uint64_t seq, i, expect = 1;
    void *ev;
    uintptr_t v;
    int rec, ok = 1;
    ls_counter_init(&k);
    ls_ring_init(&r, 0, &k);
    ls_ring_cursor_open(&r, &c);
    /* growth: 1000 items unread */
    for (i = 1; i <= 1000; i++)
        ok &= ls_ring_push(&r, ITEM(i), &seq, &ev) == LS_OK && seq == i;
    CHECK(ok);
    CHECK(ls_ring_len(&r) == 1000 && r.cap == 1024);
    for (i = 1; i <= 1000; i++) {
        ok &= read1(&r, &c, &v, &seq, &rec) == LS_OK;
        ok &= v == i && seq == i && rec == 1;
    }
    CHECK(ok);
    CHECK(ls_ring_len(&r) == 0);
    /* wrap-around in a small ring: keep 5 unread while pushing 10000 */
    ls_ring_destroy(&r);
    ls_counter_init(&k);
    ls_ring_init(&r, 0, &k);
    ls_ring_cursor_open(&r, &c);
    for (i = 1; i <= 10000; i++) {
        ok &= ls_ring_push(&r, ITEM(i), &seq, &ev) == LS_OK;
        if (i > 5) {
            ok &= read1(&r, &c, &v, &seq, &rec) == LS_OK;
            ok &= v == expect && seq == expect;
            expect++;
        }
    }
    CHECK(ok);
    CHECK(r.cap == 8 && ls_ring_len(&r) == 5 && r.head == 9995);
    /* growth while wrapped keeps the order */
    for (i = 10001; i <= 10020; i++)
        ok &= ls_ring_push(&r, ITEM(i), &seq, &ev) == LS_OK;
    CHECK(ok && r.cap == 32);
    while (read1(&r, &c, &v, &seq, &rec) == LS_OK) {
        ok &= v == expect && seq == expect;
        expect++;
    }
    CHECK(ok && expect == 10021);
    ls_ring_cursor_close(&r, &c);
    ls_ring_destroy(&r);
}

static void test_reclaim_several_cursors(void) {
    ls_counter k;
    ls_ring r;
    ls_cursor a, b, c;
    uint64_t seq;
    void *ev, *item;
    uintptr_t v;
    int rec;
    ls_counter_init(&k);
    ls_ring_init(&r, 0, &k);
    ls_ring_cursor_open(&r, &a);
    ls_ring_push(&r, ITEM(1), &seq, &ev);
    ls_ring_cursor_open(&r, &b);
    ls_ring_push(&r, ITEM(2), &seq, &ev);
    ls_ring_push(&r, ITEM(3), &seq, &ev);
    CHECK(r.ncursors == 2 && ls_ring_len(&r) == 3);
    CHECK(ls_ring_pending(&r, &a) == 3 && ls_ring_pending(&r, &b) == 2);
    CHECK(read1(&r, &b, &v, &seq, &rec) == LS_OK && v == 2 && rec == 0);
    CHECK(read1(&r, &a, &v, &seq, &rec) == LS_OK && v == 1 && rec == 1);
    CHECK(ls_ring_len(&r) == 2);
    CHECK(read1(&r, &a, &v, &seq, &rec) == LS_OK && v == 2 && rec == 1);
    CHECK(read1(&r, &a, &v, &seq, &rec) == LS_OK && v == 3 && rec == 0);
    CHECK(ls_ring_len(&r) == 1);
    CHECK(read1(&r, &b, &v, &seq, &rec) == LS_OK && v == 3 && rec == 1);
    CHECK(ls_ring_len(&r) == 0);
    /* closing the slowest cursor makes its items reclaimable */
    ls_ring_cursor_open(&r, &c);
    ls_ring_push(&r, ITEM(4), &seq, &ev);
    ls_ring_push(&r, ITEM(5), &seq, &ev);
    CHECK(read1(&r, &a, &v, &seq, &rec) == LS_OK && v == 4 && rec == 0);
    CHECK(read1(&r, &a, &v, &seq, &rec) == LS_OK && v == 5 && rec == 0);
    CHECK(read1(&r, &c, &v, &seq, &rec) == LS_OK && v == 4 && rec == 0);
    CHECK(ls_ring_reclaim_one(&r, &item) == 0);
    ls_ring_cursor_close(&r, &b); /* b had not read 4 and 5 */
    CHECK(r.ncursors == 2);
    CHECK(ls_ring_reclaim_one(&r, &item) == 1 && NUM(item) == 4);
    CHECK(ls_ring_reclaim_one(&r, &item) == 0); /* c has not read 5 */
    ls_ring_cursor_close(&r, &c);
    CHECK(ls_ring_reclaim_one(&r, &item) == 1 && NUM(item) == 5);
    CHECK(ls_ring_reclaim_one(&r, &item) == 0 && ls_ring_len(&r) == 0);
    /* teardown hands back everything */
    ls_ring_push(&r, ITEM(6), &seq, &ev);
    ls_ring_push(&r, ITEM(7), &seq, &ev);
    CHECK(ls_ring_take_oldest(&r, &item) == 1 && NUM(item) == 6);
    CHECK(ls_ring_take_oldest(&r, &item) == 1 && NUM(item) == 7);
    CHECK(ls_ring_take_oldest(&r, &item) == 0);
    CHECK(ls_ring_pending(&r, &a) == 0);
    ls_ring_destroy(&r);
    CHECK(a.slot == LS_DETACHED);
}

static void test_eviction_and_lag(void) {
    ls_counter k;
    ls_ring r;
    ls_cursor fast, slow;
    uint64_t seq, i;
    void *ev;
    uintptr_t v;
    int rec, ok = 1, nev = 0;
    ls_counter_init(&k);
    ls_ring_init(&r, 3, &k);
    ls_ring_cursor_open(&r, &slow);
    for (i = 1; i <= 8; i++) {
        ok &= ls_ring_push(&r, ITEM(i), &seq, &ev) == LS_OK && seq == i;
        ok &= ls_ring_len(&r) <= 3;
        if (ev != NULL) {
            ok &= NUM(ev) == (uintptr_t)nev + 1;
            nev++;
        }
    }
    CHECK(ok && nev == 5);
    CHECK(slow.lag == 5 && ls_ring_pending(&r, &slow) == 3);
    CHECK(ls_ring_peek(&r, &slow, &seq) == 1 && seq == 6);
    CHECK(read1(&r, &slow, &v, &seq, &rec) == LS_LAG);
    slow.lag = 0; /* the caller reports and resets */
    CHECK(read1(&r, &slow, &v, &seq, &rec) == LS_OK && v == 6 && seq == 6);
    /* only cursors that missed the evicted item lag */
    ls_ring_cursor_open(&r, &fast);
    for (i = 9; i <= 12; i++) {
        ls_ring_push(&r, ITEM(i), &seq, &ev);
        ok &= read1(&r, &fast, &v, &seq, &rec) == LS_OK && v == i;
    }
    CHECK(ok);
    CHECK(fast.lag == 0 && slow.lag == 3);
    CHECK(ls_ring_len(&r) == 3);
    CHECK(read1(&r, &slow, &v, &seq, &rec) == LS_LAG);
    slow.lag = 0;
    CHECK(read1(&r, &slow, &v, &seq, &rec) == LS_OK && v == 10 && rec == 1);
    ls_ring_cursor_close(&r, &fast);
    ls_ring_cursor_close(&r, &slow);
    while (ls_ring_take_oldest(&r, &ev))
        ;
    ls_ring_destroy(&r);
    /* maxlen 1 */
    ls_counter_init(&k);
    ls_ring_init(&r, 1, &k);
    ls_ring_cursor_open(&r, &slow);
    ls_ring_push(&r, ITEM(1), &seq, &ev);
    CHECK(ev == NULL);
    ls_ring_push(&r, ITEM(2), &seq, &ev);
    CHECK(NUM(ev) == 1 && slow.lag == 1 && ls_ring_len(&r) == 1);
    slow.lag = 0;
    CHECK(read1(&r, &slow, &v, &seq, &rec) == LS_OK && v == 2 && rec == 1);
    ls_ring_cursor_close(&r, &slow);
    ls_ring_destroy(&r);
}

static void test_shared_counter(void) {
    ls_counter k;
    ls_ring a, b;
    ls_cursor ca, cb;
    uint64_t seq;
    void *ev;
    uintptr_t v;
    int rec;
    ls_counter_init(&k);
    ls_ring_init(&a, 0, &k);
    ls_ring_init(&b, 0, &k);
    ls_ring_cursor_open(&a, &ca);
    ls_ring_cursor_open(&b, &cb);
    ls_ring_push(&a, ITEM(1), &seq, &ev);
    CHECK(seq == 1);
    ls_ring_push(&b, ITEM(2), &seq, &ev);
    CHECK(seq == 2);
    ls_ring_push(&a, ITEM(3), &seq, &ev);
    CHECK(seq == 3);
    CHECK(ls_counter_value(&k) == 3 && a.last_seq == 3 && b.last_seq == 2);
    CHECK(read1(&a, &ca, &v, &seq, &rec) == LS_OK && v == 1 && seq == 1);
    CHECK(ls_ring_peek(&a, &ca, &seq) == 1 && seq == 3);
    CHECK(read1(&b, &cb, &v, &seq, &rec) == LS_OK && v == 2 && seq == 2);
    ls_ring_cursor_close(&a, &ca);
    ls_ring_cursor_close(&b, &cb);
    while (ls_ring_take_oldest(&a, &ev))
        ;
    ls_ring_destroy(&a);
    ls_ring_destroy(&b);
}

/* ---- the counter shared by several threads ----------------------------- */

#define NTHREADS 4
#define PER_THREAD 100000

static ls_counter shared_counter;

static int counter_worker(void *arg) {
    uint64_t *out = (uint64_t *)arg;
    size_t i;
    for (i = 0; i < PER_THREAD; i++)
        out[i] = ls_counter_next(&shared_counter);
    return 0;
}

static void test_counter_threads(void) {
    thrd_t th[NTHREADS];
    uint64_t *out = (uint64_t *)malloc(sizeof(uint64_t) * NTHREADS * PER_THREAD);
    unsigned char *seen = (unsigned char *)calloc(NTHREADS * PER_THREAD + 1, 1);
    int t, ok = 1, started = 0;
    size_t i;
    ls_counter_init(&shared_counter);
    for (t = 0; t < NTHREADS; t++)
        if (thrd_create(&th[t], counter_worker, out + (size_t)t * PER_THREAD) ==
            thrd_success)
            started++;
    CHECK(started == NTHREADS);
    for (t = 0; t < started; t++)
        thrd_join(th[t], NULL);
    for (t = 0; t < started; t++)
        for (i = 0; i < PER_THREAD; i++) {
            uint64_t v = out[(size_t)t * PER_THREAD + i];
            if (v < 1 || v > NTHREADS * PER_THREAD || seen[v]) {
                ok = 0;
                continue;
            }
            seen[v] = 1;
            /* each thread sees its own numbers increasing */
            if (i > 0 && v <= out[(size_t)t * PER_THREAD + i - 1])
                ok = 0;
        }
    CHECK(ok);
    CHECK(ls_counter_value(&shared_counter) == (uint64_t)NTHREADS * PER_THREAD);
    free(out);
    free(seen);
}

/* ---- random operations against a naive model -------------------------- */

#define MAXC 6
#define MAXITEMS 200000

/* The model: every open cursor keeps its own queue of unread item ids. */
typedef struct {
    int open;
    uintptr_t q[4096];
    size_t qh, qt; /* queue [qh, qt) of item ids (indices mod 4096) */
    uint64_t lag;
} mcursor;

static uint64_t mseq[MAXITEMS + 1];   /* item id -> seq */
static int mrefs[MAXITEMS + 1];       /* item id -> queues holding it */
static int mowned[MAXITEMS + 1];      /* item id -> ring holds it */

static size_t qlen(const mcursor *m) { return m->qt - m->qh; }

static int release_item(uintptr_t id) {
    /* the ring handed `id` back: it must have held it and nobody needs it */
    int ok = id >= 1 && id <= MAXITEMS && mowned[id] == 1 && mrefs[id] == 0;
    if (id >= 1 && id <= MAXITEMS)
        mowned[id] = 0;
    return ok;
}

static void test_random(unsigned seed, size_t maxlen, int nops) {
    ls_counter k;
    ls_ring r;
    ls_cursor cur[MAXC];
    mcursor *m = (mcursor *)calloc(MAXC, sizeof(mcursor));
    uintptr_t next_id = 1;
    uint64_t expect_seq = 0;
    int op, i, ok = 1, bad_release = 0;
    void *item;
    srand(seed);
    memset(mrefs, 0, sizeof(mrefs));
    memset(mowned, 0, sizeof(mowned));
    ls_counter_init(&k);
    ls_ring_init(&r, maxlen, &k);
    for (op = 0; op < nops && next_id < MAXITEMS; op++) {
        int kind = rand() % 100;
        int ci = rand() % MAXC;
        if (kind < 45) { /* push */
            uint64_t seq;
            void *ev;
            int any = 0, code;
            uintptr_t id = next_id++;
            size_t longest = 0;
            code = ls_ring_push(&r, ITEM(id), &seq, &ev);
            expect_seq++;
            mseq[id] = expect_seq;
            ok &= seq == expect_seq && r.last_seq == expect_seq;
            for (i = 0; i < MAXC; i++)
                if (m[i].open) {
                    any = 1;
                    m[i].q[m[i].qt++ % 4096] = id;
                    mrefs[id]++;
                    if (qlen(&m[i]) > longest)
                        longest = qlen(&m[i]);
                }
            ok &= code == (any ? LS_OK : LS_NOT_STORED);
            if (any)
                mowned[id] = 1;
            if (maxlen && longest > maxlen) {
                /* evict the globally oldest retained item */
                uintptr_t oldest = 0;
                for (i = 0; i < MAXC; i++)
                    if (m[i].open && qlen(&m[i]) == longest)
                        oldest = m[i].q[m[i].qh % 4096];
                for (i = 0; i < MAXC; i++)
                    if (m[i].open && qlen(&m[i]) == longest) {
                        ok &= m[i].q[m[i].qh % 4096] == oldest;
                        m[i].qh++;
                        m[i].lag++;
                        mrefs[oldest]--;
                    }
                ok &= ev != NULL && NUM(ev) == oldest;
                if (ev != NULL && !release_item(NUM(ev)))
                    bad_release++;
            } else {
                ok &= ev == NULL;
            }
        } else if (kind < 75) { /* read */
            uintptr_t v = 0;
            uint64_t seq = 0;
            int rec = 0, code;
            if (!m[ci].open)
                continue;
            code = read1(&r, &cur[ci], &v, &seq, &rec);
            if (m[ci].lag) {
                ok &= code == LS_LAG && cur[ci].lag == m[ci].lag;
                cur[ci].lag = 0;
                m[ci].lag = 0;
            } else if (qlen(&m[ci]) == 0) {
                ok &= code == LS_EMPTY;
            } else {
                uintptr_t id = m[ci].q[m[ci].qh++ % 4096];
                ok &= code == LS_OK && v == id && seq == mseq[id];
                mrefs[id]--;
                ok &= rec == (mrefs[id] == 0);
                if (rec && !release_item(v))
                    bad_release++;
            }
        } else if (kind < 87) { /* open */
            if (m[ci].open)
                continue;
            ok &= ls_ring_cursor_open(&r, &cur[ci]) == LS_OK;
            m[ci].open = 1;
            m[ci].qh = m[ci].qt = 0;
            m[ci].lag = 0;
        } else { /* close */
            size_t before;
            if (!m[ci].open)
                continue;
            ls_ring_cursor_close(&r, &cur[ci]);
            m[ci].open = 0;
            while (m[ci].qh < m[ci].qt)
                mrefs[m[ci].q[m[ci].qh++ % 4096]]--;
            before = ls_ring_len(&r);
            while (ls_ring_reclaim_one(&r, &item))
                if (!release_item(NUM(item)))
                    bad_release++;
            (void)before;
        }
        /* invariants after every step */
        {
            size_t longest = 0;
            for (i = 0; i < MAXC; i++)
                if (m[i].open) {
                    uint64_t s;
                    if (qlen(&m[i]) > longest)
                        longest = qlen(&m[i]);
                    ok &= ls_ring_pending(&r, &cur[i]) == qlen(&m[i]);
                    if (qlen(&m[i]))
                        ok &= ls_ring_peek(&r, &cur[i], &s) == 1 &&
                              s == mseq[m[i].q[m[i].qh % 4096]];
                    else
                        ok &= ls_ring_peek(&r, &cur[i], &s) == 0;
                }
            ok &= ls_ring_len(&r) == longest;
            ok &= maxlen == 0 || ls_ring_len(&r) <= maxlen;
        }
        if (!ok) {
            fprintf(stderr, "random(seed=%u, maxlen=%zu) diverged at op %d\n",
                    seed, maxlen, op);
            break;
        }
    }
    CHECK(ok);
    CHECK(bad_release == 0);
    CHECK(ls_counter_value(&k) == expect_seq);
    /* teardown: close everything, take the rest; every item released once */
    for (i = 0; i < MAXC; i++)
        if (m[i].open) {
            ls_ring_cursor_close(&r, &cur[i]);
            while (m[i].qh < m[i].qt)
                mrefs[m[i].q[m[i].qh++ % 4096]]--;
        }
    while (ls_ring_take_oldest(&r, &item))
        if (!release_item(NUM(item)))
            bad_release++;
    CHECK(bad_release == 0);
    {
        uintptr_t id;
        int leaked = 0;
        for (id = 1; id < next_id; id++)
            leaked += mowned[id];
        CHECK(leaked == 0);
    }
    ls_ring_destroy(&r);
    free(m);
}

int main(void) {
    unsigned seed;
    test_counter();
    test_lazy_subscribe();
    test_growth_and_wrap();
    test_reclaim_several_cursors();
    test_eviction_and_lag();
    test_shared_counter();
    test_counter_threads();
    for (seed = 1; seed <= 40; seed++) {
        test_random(seed, 0, 5000);
        test_random(seed, 1 + seed % 7, 5000);
        test_random(seed, 64, 5000);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
