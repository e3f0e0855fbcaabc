/*
 * ring.c: see ring.h for the contract.
 */
#include "ring.h"

#include <stdlib.h>
#include <string.h>

#define LS_MIN_CAP 8

/* ---- sequence counter ------------------------------------------------- */

void ls_counter_init(ls_counter *c) {
    atomic_init(&c->value, 0);
}

uint64_t ls_counter_next(ls_counter *c) {
    return atomic_fetch_add_explicit(&c->value, 1, memory_order_relaxed) + 1;
}

uint64_t ls_counter_value(ls_counter *c) {
    return atomic_load_explicit(&c->value, memory_order_relaxed);
}

/* ---- ring -------------------------------------------------------------- */

void ls_ring_init(ls_ring *r, size_t maxlen, ls_counter *counter) {
    memset(r, 0, sizeof(*r));
    r->maxlen = maxlen;
    r->counter = counter;
}

void ls_ring_destroy(ls_ring *r) {
    size_t i;
    for (i = 0; i < r->ncursors; i++)
        r->cursors[i]->slot = LS_DETACHED;
    free(r->items);
    free(r->seqs);
    free(r->cursors);
    r->items = NULL;
    r->seqs = NULL;
    r->cursors = NULL;
    r->cap = r->mask = 0;
    r->ncursors = r->cursors_cap = 0;
    r->head = r->tail;
}

/* Double the capacity (or allocate the first slots), keeping every retained
 * item at index & new_mask. */
static int ring_grow(ls_ring *r) {
    size_t new_cap = r->cap ? r->cap * 2 : LS_MIN_CAP;
    size_t new_mask, i, n;
    void **items;
    uint64_t *seqs;
    if (new_cap < r->cap || new_cap > SIZE_MAX / sizeof(uint64_t))
        return LS_NOMEM;
    items = (void **)malloc(new_cap * sizeof(void *));
    seqs = (uint64_t *)malloc(new_cap * sizeof(uint64_t));
    if (items == NULL || seqs == NULL) {
        free(items);
        free(seqs);
        return LS_NOMEM;
    }
    new_mask = new_cap - 1;
    n = ls_ring_len(r);
    for (i = 0; i < n; i++) {
        uint64_t abs = r->head + i;
        items[abs & new_mask] = r->items[abs & r->mask];
        seqs[abs & new_mask] = r->seqs[abs & r->mask];
    }
    free(r->items);
    free(r->seqs);
    r->items = items;
    r->seqs = seqs;
    r->cap = new_cap;
    r->mask = new_mask;
    return LS_OK;
}

int ls_ring_push(ls_ring *r, void *item, uint64_t *seq, void **evicted) {
    uint64_t s, slot;
    *evicted = NULL;
    if (r->ncursors == 0) {
        s = ls_counter_next(r->counter);
        r->last_seq = s;
        *seq = s;
        return LS_NOT_STORED;
    }
    if (r->maxlen != 0 && ls_ring_len(r) >= r->maxlen) {
        /* Full bounded ring: evict the oldest; it always has a free slot. */
        size_t i;
        uint64_t head;
        *evicted = r->items[r->head & r->mask];
        head = ++r->head;
        for (i = 0; i < r->ncursors; i++) {
            ls_cursor *c = r->cursors[i];
            if (c->pos < head) {
                c->pos = head;
                c->lag++;
            }
        }
    } else if (ls_ring_len(r) == r->cap) {
        if (ring_grow(r) != LS_OK)
            return LS_NOMEM;
    }
    s = ls_counter_next(r->counter);
    r->last_seq = s;
    slot = r->tail & r->mask;
    r->items[slot] = item;
    r->seqs[slot] = s;
    r->tail++;
    *seq = s;
    return LS_OK;
}

int ls_ring_cursor_open(ls_ring *r, ls_cursor *c) {
    if (r->ncursors == r->cursors_cap) {
        size_t new_cap = r->cursors_cap ? r->cursors_cap * 2 : 4;
        ls_cursor **cs;
        if (new_cap > SIZE_MAX / sizeof(ls_cursor *))
            return LS_NOMEM;
        cs = (ls_cursor **)realloc(r->cursors, new_cap * sizeof(ls_cursor *));
        if (cs == NULL)
            return LS_NOMEM;
        r->cursors = cs;
        r->cursors_cap = new_cap;
    }
    c->pos = r->tail;
    c->lag = 0;
    c->slot = r->ncursors;
    r->cursors[r->ncursors++] = c;
    return LS_OK;
}

void ls_ring_cursor_close(ls_ring *r, ls_cursor *c) {
    size_t i = c->slot;
    ls_cursor *last;
    if (i == LS_DETACHED || i >= r->ncursors || r->cursors[i] != c)
        return;
    last = r->cursors[--r->ncursors];
    r->cursors[i] = last;
    last->slot = i;
    c->slot = LS_DETACHED;
}

/* Smallest read position among open cursors (tail when there is none). */
static uint64_t ring_min_pos(const ls_ring *r) {
    uint64_t m = r->tail;
    size_t i;
    for (i = 0; i < r->ncursors; i++)
        if (r->cursors[i]->pos < m)
            m = r->cursors[i]->pos;
    return m;
}

int ls_ring_reclaim_one(ls_ring *r, void **item) {
    if (r->head == r->tail || ring_min_pos(r) <= r->head)
        return 0;
    *item = r->items[r->head & r->mask];
    r->head++;
    return 1;
}

int ls_ring_take_oldest(ls_ring *r, void **item) {
    size_t i;
    if (r->head == r->tail)
        return 0;
    *item = r->items[r->head & r->mask];
    r->head++;
    for (i = 0; i < r->ncursors; i++)
        if (r->cursors[i]->pos < r->head)
            r->cursors[i]->pos = r->head;
    return 1;
}

int ls_ring_next(ls_ring *r, ls_cursor *c, void **item, uint64_t *seq,
                 int *reclaimed) {
    uint64_t pos = c->pos, slot;
    if (c->lag)
        return LS_LAG;
    if (pos >= r->tail || c->slot == LS_DETACHED)
        return LS_EMPTY;
    slot = pos & r->mask;
    *item = r->items[slot];
    *seq = r->seqs[slot];
    c->pos = pos + 1;
    /* Reading the oldest retained item may free its slot: only this cursor
     * moved, by one, so at most that one slot becomes reclaimable. */
    if (pos == r->head && (r->ncursors == 1 || ring_min_pos(r) > pos)) {
        r->head = pos + 1;
        *reclaimed = 1;
    } else {
        *reclaimed = 0;
    }
    return LS_OK;
}
