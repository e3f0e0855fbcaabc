/*
 * ring.h: the ring buffer under langstream's event log.
 *
 * Plain C11, no Python.h.  The ring stores opaque `void *` items, each with
 * the uint64 sequence number it was stamped with, and tracks the read
 * position of every open cursor.  It never interprets the items: whenever an
 * item leaves the ring (evicted, reclaimed, or taken at teardown) its pointer
 * is handed back to the caller, who releases it *after* the call returned,
 * i.e. when the ring is in a consistent state again.  This is what lets the
 * Cython layer store Python object references and DECREF them safely (a
 * DECREF can run arbitrary Python code, which may re-enter the log).
 *
 * Indices are absolute (uint64, never wrap in practice): `head` is the index
 * of the oldest retained item, `tail` the index the next push gets; slot of
 * index i is `i & mask`.  Capacity is a power of two and grows by doubling;
 * a bounded ring (maxlen > 0) never retains more than maxlen items.
 *
 * Retained items are exactly the items not yet read by the slowest open
 * cursor: a slot is reclaimed as soon as every open cursor has passed it.
 * With no open cursor nothing is stored (lazy subscribe), but a push still
 * consumes a sequence number.
 *
 * Ownership:
 *   - ls_counter is owned by the caller.  A ring keeps a plain pointer to its
 *     counter; the caller must keep the counter alive for as long as any ring
 *     built on it (the Cython EventLog holds a reference to its SeqCounter).
 *   - ls_cursor is owned by the caller (the Cython Cursor embeds it); the
 *     ring only keeps a pointer to it between ls_ring_cursor_open() and
 *     ls_ring_cursor_close().  A ring must outlive its open cursors.
 *
 * Thread safety: ls_counter_next() is atomic and may be called from any
 * thread, concurrently, also through several rings sharing one counter.
 * Everything else must be serialized by the caller (the Cython layer relies
 * on the GIL: no ring call releases it or calls back into Python).
 */
#ifndef LANGSTREAM_RING_H
#define LANGSTREAM_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- sequence counter ------------------------------------------------- */

typedef struct ls_counter {
    _Atomic uint64_t value; /* last number handed out; 0 initially */
} ls_counter;

void ls_counter_init(ls_counter *c);
/* Atomically hand out the next number: 1, 2, 3 ... */
uint64_t ls_counter_next(ls_counter *c);
/* The last number handed out (0 before the first ls_counter_next). */
uint64_t ls_counter_value(ls_counter *c);

/* ---- cursor ------------------------------------------------------------ */

typedef struct ls_cursor {
    uint64_t pos;   /* absolute index of the next item to read */
    uint64_t lag;   /* items evicted before this cursor read them */
    size_t slot;    /* index in ring->cursors, or LS_DETACHED */
} ls_cursor;

#define LS_DETACHED ((size_t)-1)

/* ---- ring -------------------------------------------------------------- */

typedef struct ls_ring {
    void **items;         /* cap slots */
    uint64_t *seqs;       /* cap sequence numbers, parallel to items */
    size_t cap;           /* power of two, or 0 before the first store */
    size_t mask;          /* cap - 1 */
    uint64_t head;        /* absolute index of the oldest retained item */
    uint64_t tail;        /* absolute index of the next stored item */
    size_t maxlen;        /* 0 = unbounded */
    uint64_t last_seq;    /* sequence number of the most recent push */
    ls_counter *counter;  /* not owned */
    ls_cursor **cursors;  /* open cursors (not owned) */
    size_t ncursors;
    size_t cursors_cap;
} ls_ring;

/* Return codes. */
enum {
    LS_OK = 0,          /* push: stored; next: an item was returned */
    LS_NOT_STORED = 1,  /* push: no open cursor, item not stored */
    LS_EMPTY = 2,       /* next: nothing unread */
    LS_LAG = 3,         /* next: cursor->lag > 0 (read and reset it) */
    LS_NOMEM = -1       /* allocation failed; nothing changed */
};

/* Initialize an empty ring (no allocation yet).  maxlen 0 = unbounded. */
void ls_ring_init(ls_ring *r, size_t maxlen, ls_counter *counter);

/* Free the ring's own memory.  Retained items are NOT released: take them
 * first with ls_ring_take_oldest().  Open cursors are detached. */
void ls_ring_destroy(ls_ring *r);

/* Number of retained items. */
static inline size_t ls_ring_len(const ls_ring *r) {
    return (size_t)(r->tail - r->head);
}

/* Stamp `item` with the next number of the ring's counter (*seq) and store
 * it.  Returns LS_OK (stored), LS_NOT_STORED (no open cursor; the number is
 * still consumed) or LS_NOMEM (nothing changed, no number consumed).
 * *evicted is set to the item evicted to make room (bounded ring full), or
 * NULL; the caller owns the evicted item.  Every open cursor that had not
 * read the evicted item gets its lag incremented and moves past it. */
int ls_ring_push(ls_ring *r, void *item, uint64_t *seq, void **evicted);

/* Register cursor `c`, positioned at the next push.  LS_OK or LS_NOMEM. */
int ls_ring_cursor_open(ls_ring *r, ls_cursor *c);

/* Unregister cursor `c` (no-op if it is not open).  Items only it still
 * needed become reclaimable: collect them with ls_ring_reclaim_one(). */
void ls_ring_cursor_close(ls_ring *r, ls_cursor *c);

/* Pop the oldest retained item if no open cursor still needs it.  Returns 1
 * and sets *item (now owned by the caller), or 0.  Safe to interleave with
 * any other ring call between two invocations. */
int ls_ring_reclaim_one(ls_ring *r, void **item);

/* Pop the oldest retained item unconditionally (teardown).  Returns 1 and
 * sets *item (owned by the caller), or 0 when the ring is empty.  Open
 * cursors positioned on it move past it (without lag). */
int ls_ring_take_oldest(ls_ring *r, void **item);

/* Read the next item for cursor `c`.
 *   LS_LAG:   c->lag > 0; nothing read (the caller reports and resets it,
 *             then reads again: the cursor is on the oldest retained item).
 *   LS_EMPTY: nothing unread.
 *   LS_OK:    *item and *seq are set.  If the ring dropped its slot because
 *             every open cursor has now read it, *reclaimed is 1 and the
 *             ring's ownership of *item passes to the caller; else 0 and the
 *             ring still owns it. */
int ls_ring_next(ls_ring *r, ls_cursor *c, void **item, uint64_t *seq,
                 int *reclaimed);

/* Sequence number of the next unread item of `c`: 1 and *seq, or 0. */
static inline int ls_ring_peek(const ls_ring *r, const ls_cursor *c,
                               uint64_t *seq) {
    if (c->slot == LS_DETACHED || c->pos >= r->tail || c->pos < r->head)
        return 0;
    *seq = r->seqs[c->pos & r->mask];
    return 1;
}

/* Number of unread items retained for cursor `c`. */
static inline size_t ls_ring_pending(const ls_ring *r, const ls_cursor *c) {
    if (c->slot == LS_DETACHED || c->pos >= r->tail)
        return 0;
    return (size_t)(r->tail - (c->pos < r->head ? r->head : c->pos));
}

#ifdef __cplusplus
}
#endif

#endif /* LANGSTREAM_RING_H */
