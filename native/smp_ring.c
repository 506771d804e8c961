/*
 * Cross-shard message rings: single-producer / single-consumer byte rings in memory shared by
 * the shard processes, and the "going to sleep" flag a consumer raises before it blocks.
 *
 * Mechanism only: the bytes are opaque here (Python frames and pickles them), a full ring is
 * reported, not waited on, and who reads which ring is decided in Python.
 *
 * A ring is a header of two cache lines (consumer's head, producer's tail: free-running byte
 * positions, so tail - head is what is queued) followed by ``cap`` data bytes, cap a power of
 * two. The producer writes the bytes, then publishes them with a release store of tail; the
 * consumer reads them after an acquire load of tail and gives the room back with a release
 * store of head. Each side writes only its own index.
 *
 * Wake-up: a consumer about to sleep stores its flag = 1, then (full fence) looks at its rings
 * once more; a producer stores tail, then (full fence) looks at the flag. With both fences at
 * least one of them sees the other's store, so a message is never left behind a sleeper. The
 * producer that takes the flag (exchange to 0) writes the consumer's eventfd: one write per
 * sleep, however many producers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "ioengine_native.h"

struct ie_spsc {
    uint64_t head;          /* consumer position */
    char pad0[56];
    uint64_t tail;          /* producer position */
    char pad1[56];
    unsigned char data[];
};

_Static_assert(sizeof(struct ie_spsc) == IE_SPSC_HEADER, "ring header is two cache lines");

static void signal_efd(int efd)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(efd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is saturated, the consumer is woken anyway. */
}

int ie_spsc_push(void *ring, uint64_t cap, const void *src, uint64_t len, uint32_t *sleeping, int efd)
{
    struct ie_spsc *r = ring;
    if (len > cap)
        return -EMSGSIZE;
    uint64_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    uint64_t tail = r->tail; /* only we write it */
    if (cap - (tail - head) < len)
        return -ENOSPC;
    uint64_t off = tail & (cap - 1);
    uint64_t first = cap - off < len ? cap - off : len;
    memcpy(r->data + off, src, first);
    memcpy(r->data, (const unsigned char *)src + first, len - first);
    __atomic_store_n(&r->tail, tail + len, __ATOMIC_RELEASE);
    if (sleeping == NULL)
        return 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(sleeping, __ATOMIC_RELAXED) && __atomic_exchange_n(sleeping, 0, __ATOMIC_ACQ_REL)) {
        signal_efd(efd);
        return 1;
    }
    return 0;
}

int64_t ie_spsc_pop(void *ring, uint64_t cap, void *dst)
{
    struct ie_spsc *r = ring;
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    uint64_t head = r->head; /* only we write it */
    uint64_t len = tail - head;
    if (len == 0)
        return 0;
    uint64_t off = head & (cap - 1);
    uint64_t first = cap - off < len ? cap - off : len;
    memcpy(dst, r->data + off, first);
    memcpy((unsigned char *)dst + first, r->data, len - first);
    __atomic_store_n(&r->head, tail, __ATOMIC_RELEASE);
    return (int64_t)len;
}

uint64_t ie_spsc_queued(void *ring)
{
    struct ie_spsc *r = ring;
    return __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) - __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
}

int ie_shard_sleep(uint32_t *sleeping, void *const *rings, int n)
{
    __atomic_store_n(sleeping, 1, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (int i = 0; i < n; i++) {
        struct ie_spsc *r = rings[i];
        if (__atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) != r->head) {
            __atomic_store_n(sleeping, 0, __ATOMIC_RELEASE);
            return 1;
        }
    }
    return 0;
}

void ie_shard_awake(uint32_t *sleeping)
{
    __atomic_store_n(sleeping, 0, __ATOMIC_RELEASE);
}
