# Cython declarations for csrc/ring.h (the C ring buffer under the event log).
from libc.stdint cimport uint64_t

cdef extern from "ring.h" nogil:
    ctypedef struct ls_counter:
        pass

    ctypedef struct ls_cursor:
        uint64_t pos
        uint64_t lag
        size_t slot

    ctypedef struct ls_ring:
        void **items
        size_t mask
        size_t maxlen
        uint64_t last_seq
        uint64_t head
        uint64_t tail
        size_t ncursors

    enum:
        LS_OK
        LS_NOT_STORED
        LS_EMPTY
        LS_LAG
        LS_NOMEM

    size_t LS_DETACHED

    void ls_counter_init(ls_counter *c)
    uint64_t ls_counter_next(ls_counter *c)
    uint64_t ls_counter_value(ls_counter *c)

    void ls_ring_init(ls_ring *r, size_t maxlen, ls_counter *counter)
    void ls_ring_destroy(ls_ring *r)
    size_t ls_ring_len(const ls_ring *r)
    int ls_ring_push(ls_ring *r, void *item, uint64_t *seq, void **evicted)
    int ls_ring_cursor_open(ls_ring *r, ls_cursor *c)
    void ls_ring_cursor_close(ls_ring *r, ls_cursor *c)
    int ls_ring_reclaim_one(ls_ring *r, void **item)
    int ls_ring_take_oldest(ls_ring *r, void **item)
    int ls_ring_next(ls_ring *r, ls_cursor *c, void **item, uint64_t *seq,
                     int *reclaimed)
    int ls_ring_peek(const ls_ring *r, const ls_cursor *c, uint64_t *seq)
    size_t ls_ring_pending(const ls_ring *r, const ls_cursor *c)
