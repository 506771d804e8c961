/*
 * One disk, many shards (Seastar's io_group): what the shards' queues of one disk share, in
 * memory mapped by every shard process. Mechanism only; iosched decides what to do with it.
 *
 * Per disk (a slot claimed by its device id):
 *  - the token bucket as two free-running counters (Seastar's "rovers"): head = tokens ever
 *    made available, tail = tokens ever taken. Tokens now = head - tail, negative while in
 *    deficit. Taking is one atomic add on tail; replenishing is done by whichever shard first
 *    moves the last-replenished time forward (compare-and-swap), and adds to head no more than
 *    what keeps head - tail within the bucket's limit.
 *  - each shard's in-disk cost, written by that shard only (a plain store on its own cache
 *    line), summed by the reader: the in-disk bound holds for all shards together.
 *  - io classes by name (a 64-bit hash): each class's consumption divided by its shares, summed
 *    over the shards (atomic add), and until when some shard has it backlogged. iosched uses
 *    them to keep shares in aggregate.
 * Costs are disk-seconds, kept as integer picoseconds so that every update is one atomic
 * integer operation; the counters wrap, and only differences are used.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>

#include "ioengine_native.h"

#define PS 1e12

struct ie_group_line {
    uint64_t v;
    char pad[56];
};

struct ie_group_class {
    uint64_t name;  /* hash of the class name, 0: free */
    uint64_t acc;   /* consumption / shares, picoseconds per share (wraps) */
    int64_t busy_ns;  /* some shard had it backlogged at this time */
    char pad[40];
};

struct ie_group_disk {
    struct ie_group_line dev;     /* 0: free, else device id + 1 */
    struct ie_group_line head;
    struct ie_group_line tail;
    struct ie_group_line last_ns;
    struct ie_group_line in_disk[IE_GROUP_MAX_SHARDS];
    struct ie_group_class classes[IE_GROUP_MAX_CLASSES];
};

uint64_t ie_group_disk_bytes(void)
{
    return sizeof(struct ie_group_disk);
}

void *ie_group_disk(void *base, int nslots, uint64_t dev)
{
    struct ie_group_disk *d = base;
    uint64_t want = dev + 1;
    for (int i = 0; i < nslots; i++) {
        uint64_t cur = __atomic_load_n(&d[i].dev.v, __ATOMIC_ACQUIRE);
        if (cur == 0) {
            uint64_t zero = 0;
            if (__atomic_compare_exchange_n(&d[i].dev.v, &zero, want, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return &d[i];
            cur = zero;  /* another shard claimed it meanwhile: for which disk? */
        }
        if (cur == want)
            return &d[i];
    }
    return NULL;
}

static int64_t to_ps(double seconds)
{
    return (int64_t)llround(seconds * PS);
}

double ie_group_sync(void *disk, int shard, int nshards, int64_t now_ns, double rate, double limit,
                     double mine, double *others)
{
    struct ie_group_disk *d = disk;
    int64_t last = (int64_t)__atomic_load_n(&d->last_ns.v, __ATOMIC_ACQUIRE);
    if (now_ns > last &&
        __atomic_compare_exchange_n(&d->last_ns.v, (uint64_t *)&last, (uint64_t)now_ns, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        /* this shard moved the clock: it adds what accumulated since, up to the limit */
        int64_t add = (int64_t)((double)(now_ns - last) * 1000.0 * rate);
        int64_t lim = to_ps(limit);
        uint64_t h = __atomic_load_n(&d->head.v, __ATOMIC_ACQUIRE);
        for (;;) {
            int64_t have = (int64_t)(h - __atomic_load_n(&d->tail.v, __ATOMIC_ACQUIRE));
            int64_t room = lim - have;
            if (room <= 0)
                break;
            int64_t a = add < room ? add : room;
            if (__atomic_compare_exchange_n(&d->head.v, &h, h + (uint64_t)a, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                break;
        }
    }
    __atomic_store_n(&d->in_disk[shard].v, (uint64_t)to_ps(mine), __ATOMIC_RELEASE);
    int64_t sum = 0;
    for (int i = 0; i < nshards; i++)
        if (i != shard)
            sum += (int64_t)__atomic_load_n(&d->in_disk[i].v, __ATOMIC_ACQUIRE);
    *others = (double)sum / PS;
    uint64_t head = __atomic_load_n(&d->head.v, __ATOMIC_ACQUIRE);
    uint64_t tail = __atomic_load_n(&d->tail.v, __ATOMIC_ACQUIRE);
    return (double)(int64_t)(head - tail) / PS;
}

void ie_group_publish(void *disk, int shard, double mine)
{
    struct ie_group_disk *d = disk;
    __atomic_store_n(&d->in_disk[shard].v, (uint64_t)to_ps(mine), __ATOMIC_RELEASE);
}

double ie_group_tokens(void *disk)
{
    struct ie_group_disk *d = disk;
    uint64_t head = __atomic_load_n(&d->head.v, __ATOMIC_ACQUIRE);
    uint64_t tail = __atomic_load_n(&d->tail.v, __ATOMIC_ACQUIRE);
    return (double)(int64_t)(head - tail) / PS;
}

void ie_group_consume(void *disk, double cost)
{
    struct ie_group_disk *d = disk;
    __atomic_fetch_add(&d->tail.v, (uint64_t)to_ps(cost), __ATOMIC_ACQ_REL);
}

void ie_group_fill(void *disk, double tokens, int64_t now_ns)
{
    /* a new group's bucket starts full (as a single shard's does) */
    struct ie_group_disk *d = disk;
    uint64_t zero = 0;
    if (__atomic_compare_exchange_n(&d->last_ns.v, &zero, (uint64_t)now_ns, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        __atomic_fetch_add(&d->head.v, (uint64_t)to_ps(tokens), __ATOMIC_ACQ_REL);
}

int ie_group_class(void *disk, uint64_t name)
{
    struct ie_group_disk *d = disk;
    for (int i = 0; i < IE_GROUP_MAX_CLASSES; i++) {
        uint64_t cur = __atomic_load_n(&d->classes[i].name, __ATOMIC_ACQUIRE);
        if (cur == 0) {
            uint64_t zero = 0;
            if (__atomic_compare_exchange_n(&d->classes[i].name, &zero, name, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return i;
            cur = zero;
        }
        if (cur == name)
            return i;
    }
    return -1;
}

double ie_group_charge(void *disk, int cls, double per_share)
{
    struct ie_group_disk *d = disk;
    uint64_t v = __atomic_add_fetch(&d->classes[cls].acc, (uint64_t)to_ps(per_share), __ATOMIC_ACQ_REL);
    return (double)v / PS;
}

void ie_group_mark(void *disk, int cls, int64_t now_ns)
{
    /* now_ns: the class has requests waiting on this shard since then; 0: no longer */
    struct ie_group_disk *d = disk;
    __atomic_store_n(&d->classes[cls].busy_ns, now_ns, __ATOMIC_RELEASE);
}

double ie_group_lead(void *disk, int cls, int64_t now_ns, int64_t window_ns, double floor_lag, int *waiting)
{
    /* How far the class's accumulator is ahead of the least one among the other classes that
     * have requests waiting (marked within the window, on any shard); <= 0 if it is not ahead,
     * 0 if none waits. No class banks more than floor_lag of credit: one further behind the
     * most served (this class included) counts as floor_lag behind, and this class raises
     * itself to floor_lag behind the most served waiting one (the fair queue's forgiveness,
     * across shards).
     * waiting: how many other classes wait. */
    struct ie_group_disk *d = disk;
    struct ie_group_class *me = &d->classes[cls];
    uint64_t mine = __atomic_load_n(&me->acc, __ATOMIC_ACQUIRE);
    int64_t least = 0, most = 0;
    int n = 0;
    for (int i = 0; i < IE_GROUP_MAX_CLASSES; i++) {
        if (__atomic_load_n(&d->classes[i].name, __ATOMIC_ACQUIRE) == 0)
            break;
        if (i == cls)
            continue;
        int64_t busy = (int64_t)__atomic_load_n(&d->classes[i].busy_ns, __ATOMIC_ACQUIRE);
        if (busy == 0 || now_ns - busy > window_ns)
            continue;
        int64_t rel = (int64_t)(__atomic_load_n(&d->classes[i].acc, __ATOMIC_ACQUIRE) - mine);
        if (n == 0 || rel < least)
            least = rel;
        if (n == 0 || rel > most)
            most = rel;
        n++;
    }
    *waiting = n;
    if (n == 0)
        return 0.0;
    if (most < 0)
        most = 0;  /* the most served, this class included */
    int64_t fl = to_ps(floor_lag);
    if (most > fl) {
        /* we are more than floor_lag behind the most-served: forgive the rest (never lower it) */
        uint64_t want = mine + (uint64_t)(most - fl);
        uint64_t cur = mine;
        while ((int64_t)(want - cur) > 0 &&
               !__atomic_compare_exchange_n(&me->acc, &cur, want, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            ;
        int64_t shift = (int64_t)(want - mine);
        least -= shift;
        most -= shift;
    }
    if (most - least > fl)
        least = most - fl;
    return (double)(-least) / PS;
}
