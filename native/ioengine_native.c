/*
 * ioengine's thin C core: io_uring and linux-aio rings driven in batches, statx, statfs.
 * No policy lives here: no retries, no scheduling, no error text. Every function returns
 * 0 / a count, or -errno; Python turns that into exceptions.
 *
 * A batch record is five uint64 words (see IE_REC_WORDS), read by rec_decode() only:
 *   w0 = op | fd << 8 | flags << 40      w1 = buffer address (or iovec array address)
 *   w2 = length (or iovec count)         w3 = file offset
 *   w4 = user_data handed back on completion
 * flags: for IE_OP_FSYNC 1 = fdatasync; for reads and writes the request's ioprio (0: none).
 * (ioengine/_iopath, native/iopath.c, writes them.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <liburing.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ioengine_native.h"

#ifndef IOCB_FLAG_IOPRIO  /* linux/aio_abi.h's; libaio.h does not name it */
#define IOCB_FLAG_IOPRIO (1 << 1)
#endif

/* One record, decoded: every backend reads records through this one function. */
struct ie_rec {
    unsigned op;      /* enum ie_op */
    int fd;
    unsigned flags;   /* IE_OP_FSYNC: 1 = fdatasync; reads and writes: the kernel's ioprio (0: none) */
    void *addr;       /* buffer, or the iovec array of READV/WRITEV */
    uint32_t len;     /* bytes, or the iovec count */
    uint64_t off;
    uint64_t ud;
};

static inline struct ie_rec rec_decode(const uint64_t *w)
{
    struct ie_rec r;
    r.op = (unsigned)(w[0] & 0xff);
    r.fd = (int)(uint32_t)((w[0] >> 8) & 0xffffffffu);
    r.flags = (unsigned)(w[0] >> 40);
    r.addr = (void *)(uintptr_t)w[1];
    r.len = (uint32_t)(w[2] & 0xffffffffu);
    r.off = w[3];
    r.ud = w[4];
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* io_uring                                                                                    */

struct ie_uring {
    struct io_uring ring;
    unsigned setup_flags;
    int defer_taskrun;
    int has_ftruncate;  /* IORING_OP_FTRUNCATE (Linux 6.9) is there */
};

/* Newer than the liburing headers this may build with (2.3): the kernel's number. */
#define IE_IORING_OP_FTRUNCATE 55

int ie_uring_create(unsigned entries, unsigned flags_mask, struct ie_uring **out, unsigned *flags_used)
{
    /* Best first: single issuer + deferred task work (completions run only when we ask, in a
     * batch); then cooperative task work (no IPI per completion); then plain. */
    static const unsigned attempts[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_SUBMIT_ALL,
        0,
    };
    struct ie_uring *r = calloc(1, sizeof(*r));
    int ret = -EINVAL;
    if (!r)
        return -ENOMEM;
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
        unsigned f = attempts[i] & flags_mask;
        if (i > 0 && f == (attempts[i - 1] & flags_mask))
            continue;
        ret = io_uring_queue_init(entries, &r->ring, f);
        if (ret == 0) {
            r->setup_flags = f;
            r->defer_taskrun = !!(f & IORING_SETUP_DEFER_TASKRUN);
            struct io_uring_probe *probe = io_uring_get_probe_ring(&r->ring);
            if (probe) {
                r->has_ftruncate = probe->last_op >= IE_IORING_OP_FTRUNCATE
                                   && io_uring_opcode_supported(probe, IE_IORING_OP_FTRUNCATE);
                io_uring_free_probe(probe);
            }
            *out = r;
            *flags_used = f;
            return 0;
        }
        /* Only an unknown flag is worth retrying with fewer flags; ENOSYS/EPERM/ENOMEM are final. */
        if (ret != -EINVAL)
            break;
    }
    free(r);
    return ret;
}

void ie_uring_destroy(struct ie_uring *r)
{
    io_uring_queue_exit(&r->ring);
    free(r);
}

int ie_uring_register_eventfd(struct ie_uring *r, int efd)
{
    return io_uring_register_eventfd(&r->ring, efd);
}

static struct io_uring_sqe *get_sqe(struct ie_uring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        /* SQ full: push what is queued to the kernel to make room. */
        io_uring_submit(&r->ring);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

int ie_uring_prep_batch(struct ie_uring *r, const uint64_t *recs, int n)
{
    for (int i = 0; i < n; i++) {
        struct ie_rec q = rec_decode(recs + (size_t)i * IE_REC_WORDS);
        struct io_uring_sqe *sqe = get_sqe(r);
        if (!sqe)
            return i;
        switch (q.op) {
        case IE_OP_READ:
            io_uring_prep_read(sqe, q.fd, q.addr, q.len, q.off);
            break;
        case IE_OP_WRITE:
            io_uring_prep_write(sqe, q.fd, q.addr, q.len, q.off);
            break;
        case IE_OP_READV:
            io_uring_prep_readv(sqe, q.fd, (const struct iovec *)q.addr, q.len, q.off);
            break;
        case IE_OP_WRITEV:
            io_uring_prep_writev(sqe, q.fd, (const struct iovec *)q.addr, q.len, q.off);
            break;
        case IE_OP_FSYNC:
            io_uring_prep_fsync(sqe, q.fd, q.flags ? IORING_FSYNC_DATASYNC : 0);
            break;
        default:
            return -EINVAL;
        }
        if (q.op != IE_OP_FSYNC)
            sqe->ioprio = (uint16_t)q.flags;  /* the prep helpers zero it: 0 is "none" */
        io_uring_sqe_set_data64(sqe, q.ud);
    }
    return n;
}

int ie_uring_prep_openat(struct ie_uring *r, int dfd, const char *path, int flags, unsigned mode, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_openat(sqe, dfd, path, flags, mode);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_prep_close(struct ie_uring *r, int fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_prep_statx(struct ie_uring *r, int dfd, const char *path, int flags, unsigned mask,
                        struct statx *buf, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_statx(sqe, dfd, path, flags, mask, buf);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_prep_renameat(struct ie_uring *r, int olddfd, const char *oldpath, int newdfd,
                           const char *newpath, unsigned flags, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_renameat(sqe, olddfd, oldpath, newdfd, newpath, flags);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_prep_unlinkat(struct ie_uring *r, int dfd, const char *path, int flags, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_unlinkat(sqe, dfd, path, flags);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_prep_mkdirat(struct ie_uring *r, int dfd, const char *path, unsigned mode, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_mkdirat(sqe, dfd, path, mode);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_prep_linkat(struct ie_uring *r, int olddfd, const char *oldpath, int newdfd,
                         const char *newpath, int flags, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_linkat(sqe, olddfd, oldpath, newdfd, newpath, flags);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_prep_fallocate(struct ie_uring *r, int fd, int mode, uint64_t off, uint64_t len, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_fallocate(sqe, fd, mode, off, len);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_has_ftruncate(struct ie_uring *r)
{
    return r->has_ftruncate;
}

int ie_uring_prep_ftruncate(struct ie_uring *r, int fd, uint64_t len, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_rw(IE_IORING_OP_FTRUNCATE, sqe, fd, NULL, 0, len);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int ie_uring_submit(struct ie_uring *r)
{
    /* With deferred task work, completions are posted only when we enter the kernel asking for
     * events; doing both in one syscall keeps it to one enter per reactor turn. */
    if (r->defer_taskrun)
        return io_uring_submit_and_get_events(&r->ring);
    return io_uring_submit(&r->ring);
}

static int get_events(struct ie_uring *r)
{
    int ret = io_uring_get_events(&r->ring);
    return ret < 0 && ret != -EAGAIN && ret != -EINTR && ret != -EBUSY ? ret : 0;
}

/* Whether an enter asking for events could post completions the CQ does not show yet: an
 * overflow, or deferred task work. With IORING_SETUP_TASKRUN_FLAG the kernel marks the ring
 * (IORING_SQ_TASKRUN) when it queues such work, so a look at memory answers; the idle
 * poller's spin then costs no system call per round while nothing has completed. */
static int events_pending(struct ie_uring *r)
{
    if (io_uring_cq_has_overflow(&r->ring))
        return 1;
    if (!r->defer_taskrun)
        return 0;
    if (!(r->setup_flags & IORING_SETUP_TASKRUN_FLAG))
        return 1;
    return !!(IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

int ie_uring_reap(struct ie_uring *r, uint64_t *ud, int32_t *res, int max, int get_events_too)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    if (get_events_too && events_pending(r)) {
        int ret = get_events(r);
        if (ret < 0)
            return ret;
    }
    io_uring_for_each_cqe(&r->ring, head, cqe)
    {
        if ((int)n == max)
            break;
        ud[n] = cqe->user_data;
        res[n] = cqe->res;
        n++;
    }
    io_uring_cq_advance(&r->ring, n);
    return (int)n;
}

int ie_uring_reap_woken(struct ie_uring *r, int efd, uint64_t *ud, int32_t *res, int max)
{
    /* After the eventfd woke us. With deferred task work the kernel signals the eventfd twice
     * per batch: when the work is queued, and again when running it posts the completions.
     * Draining before running it leaves the second signal for a spurious wake-up (an extra
     * eventfd read and io_uring_enter per batch); draining after could swallow the signal of
     * work queued meanwhile, unless the ring says so (IORING_SQ_TASKRUN, set before that
     * signal): then it is run too. Without the flag, the safe order. */
    if (r->defer_taskrun && (r->setup_flags & IORING_SETUP_TASKRUN_FLAG)) {
        int ret = get_events(r);
        if (ret < 0)
            return ret;
        ie_eventfd_drain(efd);
        if (IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_TASKRUN) {
            ret = get_events(r);
            if (ret < 0)
                return ret;
        }
        return ie_uring_reap(r, ud, res, max, 0);
    }
    ie_eventfd_drain(efd);
    return ie_uring_reap(r, ud, res, max, 1);
}

int ie_uring_poll(struct ie_uring *r, int efd, uint64_t *ud, int32_t *res, int max)
{
    /* Idle polling's reap (the spin, and a sleep that ended on the eventfd): what completed
     * (deferred task work run first), then the eventfd drained so the loop does not wake for
     * it again. Work that came between the reap and the drain had its signal swallowed, so it
     * is reaped after the drain: with deferred task work, only if the ring says some is
     * queued (IORING_SQ_TASKRUN, when the ring has that flag); without, the CQ is only read. */
    int got = ie_uring_reap(r, ud, res, max, 1);
    if (got <= 0 || got >= max)
        return got;  /* a full batch leaves the eventfd set: the rest wakes the loop */
    ie_eventfd_drain(efd);
    if (events_pending(r)) {
        int ret = get_events(r);
        if (ret < 0)
            return got;
    }
    int more = ie_uring_reap(r, ud + got, res + got, max - got, 0);
    return more > 0 ? got + more : got;
}

int ie_uring_wait(struct ie_uring *r, unsigned min_complete)
{
    struct io_uring_cqe *cqe;
    io_uring_submit(&r->ring);
    return io_uring_wait_cqe_nr(&r->ring, &cqe, min_complete);
}

/* ------------------------------------------------------------------------------------------ */
/* linux-aio                                                                                   */

/* The iocbs are kept, not allocated per request: a free list refilled by the completions,
 * grown a slab at a time when a batch finds it empty (at most as many as were ever in flight
 * at once), all freed with the context. */
#define IE_AIO_SLAB 64
#define IE_AIO_EVENTS 128  /* io_events read per io_getevents call (on the stack) */

struct ie_iocb {
    struct iocb cb;  /* first: the kernel hands back &cb (io_event.obj) */
    struct ie_iocb *next;
};

struct ie_aio_slab {
    struct ie_aio_slab *next;
    struct ie_iocb cbs[IE_AIO_SLAB];
};

struct ie_aio {
    io_context_t ctx;
    int efd;
    unsigned nr;
    struct ie_iocb *free;
    struct ie_aio_slab *slabs;
};

int ie_aio_create(unsigned nr, int efd, struct ie_aio **out)
{
    struct ie_aio *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    int ret = io_setup(nr, &a->ctx);
    if (ret < 0) {
        free(a);
        return ret;
    }
    a->efd = efd;
    a->nr = nr;
    *out = a;
    return 0;
}

void ie_aio_destroy(struct ie_aio *a)
{
    io_destroy(a->ctx);  /* waits for the requests still in flight: their iocbs are free after */
    for (struct ie_aio_slab *s = a->slabs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    free(a);
}

static struct ie_iocb *aio_get(struct ie_aio *a)
{
    if (!a->free) {
        struct ie_aio_slab *s = malloc(sizeof(*s));
        if (!s)
            return NULL;
        s->next = a->slabs;
        a->slabs = s;
        for (int i = 0; i < IE_AIO_SLAB; i++) {
            s->cbs[i].next = a->free;
            a->free = &s->cbs[i];
        }
    }
    struct ie_iocb *c = a->free;
    a->free = c->next;
    return c;
}

static void aio_put(struct ie_aio *a, struct iocb *cb)
{
    struct ie_iocb *c = (struct ie_iocb *)cb;
    c->next = a->free;
    a->free = c;
}

int ie_aio_submit_batch(struct ie_aio *a, const uint64_t *recs, int n)
{
    struct iocb *ptrs[64];
    int done = 0;
    while (done < n) {
        int chunk = n - done < 64 ? n - done : 64;
        for (int i = 0; i < chunk; i++) {
            struct ie_rec q = rec_decode(recs + (size_t)(done + i) * IE_REC_WORDS);
            struct ie_iocb *c = aio_get(a);
            if (!c) {
                for (int j = 0; j < i; j++)
                    aio_put(a, ptrs[j]);
                return done ? done : -ENOMEM;
            }
            struct iocb *cb = &c->cb;
            switch (q.op) {
            case IE_OP_READ:
                io_prep_pread(cb, q.fd, q.addr, q.len, (long long)q.off);
                break;
            case IE_OP_WRITE:
                io_prep_pwrite(cb, q.fd, q.addr, q.len, (long long)q.off);
                break;
            case IE_OP_READV:
                io_prep_preadv(cb, q.fd, (const struct iovec *)q.addr, (int)q.len, (long long)q.off);
                break;
            case IE_OP_WRITEV:
                io_prep_pwritev(cb, q.fd, (const struct iovec *)q.addr, (int)q.len, (long long)q.off);
                break;
            default:
                aio_put(a, cb);
                for (int j = 0; j < i; j++)
                    aio_put(a, ptrs[j]);
                return done ? done : -EINVAL;
            }
            cb->data = (void *)(uintptr_t)q.ud;
            if (q.flags) {  /* a per-request priority (Linux 5.0+) */
                cb->aio_reqprio = (short)(uint16_t)q.flags;
                cb->u.c.flags |= IOCB_FLAG_IOPRIO;
            }
            if (a->efd >= 0)
                io_set_eventfd(cb, a->efd);
            ptrs[i] = cb;
        }
        int ret = io_submit(a->ctx, chunk, ptrs);
        int accepted = ret > 0 ? ret : 0;
        for (int j = accepted; j < chunk; j++)
            aio_put(a, ptrs[j]);
        done += accepted;
        if (ret < 0)
            return done ? done : ret;
        if (accepted < chunk)
            break;
    }
    return done;
}

/* Up to ``max`` completions into ud/res, waiting until at least ``min_nr`` have come (0: none,
 * what is ready); read IE_AIO_EVENTS at a time, so ``max`` may be any size. */
static int aio_get_events(struct ie_aio *a, int min_nr, uint64_t *ud, int32_t *res, int max)
{
    struct io_event evs[IE_AIO_EVENTS];
    struct timespec zero = {0, 0};
    int total = 0;
    while (total < max) {
        int want = max - total < IE_AIO_EVENTS ? max - total : IE_AIO_EVENTS;
        int need = min_nr - total;
        if (need < 0)
            need = 0;
        if (need > want)
            need = want;
        int got = io_getevents(a->ctx, need, want, evs, need ? NULL : &zero);
        if (got < 0)
            return total ? total : got;
        for (int i = 0; i < got; i++) {
            ud[total + i] = (uint64_t)(uintptr_t)evs[i].data;
            res[total + i] = (int32_t)(long)evs[i].res;
            aio_put(a, evs[i].obj);
        }
        total += got;
        if (got < want && total >= min_nr)
            break;
    }
    return total;
}

int ie_aio_reap(struct ie_aio *a, uint64_t *ud, int32_t *res, int max)
{
    return aio_get_events(a, 0, ud, res, max);
}

int ie_aio_wait(struct ie_aio *a, int min_nr, uint64_t *ud, int32_t *res, int max)
{
    return aio_get_events(a, min_nr < max ? min_nr : max, ud, res, max);
}

/* ------------------------------------------------------------------------------------------ */
/* eventfd, statx, statfs, aligned memory                                                      */

int ie_eventfd_create(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int ie_eventfd_drain(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    return n < 0 ? -errno : 0;
}

/* The loop's wait with a nanosecond timeout: epoll_wait takes milliseconds, so a timer due in
 * 200 us slept a whole millisecond. Returns how many descriptors are ready (at most one is
 * reported: the caller collects them with its own zero-timeout select; asyncio registers them
 * level-triggered, so none is lost), or -errno (-ENOSYS before Linux 5.11). */
int ie_epoll_wait_ns(int epfd, int64_t timeout_ns)
{
#ifdef SYS_epoll_pwait2
    struct epoll_event ev;
    struct timespec ts;
    if (timeout_ns < 0)
        timeout_ns = 0;
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    long n = syscall(SYS_epoll_pwait2, epfd, &ev, 1, &ts, NULL, 0);
    return n < 0 ? -errno : (int)n;
#else
    (void)epfd;
    (void)timeout_ns;
    return -ENOSYS;
#endif
}

/* The calling thread's timer slack (ns), set to ``ns`` when it is > 0; returns the previous
 * value (or -errno). The kernel stretches a sleep by the slack (50 us by default) to batch
 * wake-ups; the reactor's precise waits want ~1 us. */
long ie_timer_slack_ns(long ns)
{
    int old = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    if (old < 0)
        return -errno;
    if (ns > 0 && prctl(PR_SET_TIMERSLACK, (unsigned long)ns, 0, 0, 0) < 0)
        return -errno;
    return old;
}

void ie_statx_convert(const struct statx *s, struct ie_stat *o)
{
    o->mask = s->stx_mask;
    o->blksize = s->stx_blksize;
    o->nlink = s->stx_nlink;
    o->uid = s->stx_uid;
    o->gid = s->stx_gid;
    o->mode = s->stx_mode;
    o->ino = s->stx_ino;
    o->size = s->stx_size;
    o->blocks = s->stx_blocks;
    o->atime_sec = s->stx_atime.tv_sec;
    o->atime_nsec = s->stx_atime.tv_nsec;
    o->mtime_sec = s->stx_mtime.tv_sec;
    o->mtime_nsec = s->stx_mtime.tv_nsec;
    o->ctime_sec = s->stx_ctime.tv_sec;
    o->ctime_nsec = s->stx_ctime.tv_nsec;
    o->btime_sec = s->stx_btime.tv_sec;
    o->btime_nsec = s->stx_btime.tv_nsec;
    o->rdev_major = s->stx_rdev_major;
    o->rdev_minor = s->stx_rdev_minor;
    o->dev_major = s->stx_dev_major;
    o->dev_minor = s->stx_dev_minor;
#ifdef STATX_DIOALIGN
    o->dio_mem_align = (s->stx_mask & STATX_DIOALIGN) ? s->stx_dio_mem_align : 0;
    o->dio_offset_align = (s->stx_mask & STATX_DIOALIGN) ? s->stx_dio_offset_align : 0;
#else
    o->dio_mem_align = 0;
    o->dio_offset_align = 0;
#endif
}

struct statx *ie_statx_buf_new(void)
{
    return calloc(1, sizeof(struct statx));
}

void ie_statx_buf_free(struct statx *s)
{
    free(s);
}

int ie_statx(int dfd, const char *path, int flags, unsigned mask, struct ie_stat *out)
{
    struct statx s;
    if (statx(dfd, path, flags, mask, &s) < 0)
        return -errno;
    ie_statx_convert(&s, out);
    return 0;
}

int ie_fstatfs(int fd, struct ie_statfs *out)
{
    struct statfs s;
    if (fstatfs(fd, &s) < 0)
        return -errno;
    out->type = (uint64_t)s.f_type;
    out->bsize = (uint64_t)s.f_bsize;
    out->blocks = (uint64_t)s.f_blocks;
    out->bfree = (uint64_t)s.f_bfree;
    out->bavail = (uint64_t)s.f_bavail;
    return 0;
}

unsigned ie_statx_dioalign_flag(void)
{
#ifdef STATX_DIOALIGN
    return STATX_DIOALIGN;
#else
    return 0x2000;
#endif
}

int ie_uring_flush(struct ie_uring *r, const uint64_t *recs, int n, int *accepted, uint64_t *ud,
                   int32_t *res, int max)
{
    /* One reactor turn in one call: stage the batch, one enter to submit (and run deferred
     * completions), then copy out whatever completed. */
    int prepped = n ? ie_uring_prep_batch(r, recs, n) : 0;
    if (prepped < 0)
        return prepped;
    *accepted = prepped;
    int ret = ie_uring_submit(r);
    if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -EINTR)
        return ret;
    return ie_uring_reap(r, ud, res, max, 0);
}

int ie_uring_submit_reap(struct ie_uring *r, const uint64_t *recs, int n, int *accepted, uint64_t *ud,
                         int32_t *res, int max, int efd)
{
    /* ie_uring_flush, then: completions posted by this enter signalled the eventfd too, so drain
     * it (or the loop wakes once more for nothing) and reap what was queued meanwhile (its own
     * signal, if later, stays). The reactor's submission, from Python (UringBackend.flush) and
     * from C (IoPath's mid-turn submission, which calls it through a pointer). */
    int got = ie_uring_flush(r, recs, n, accepted, ud, res, max);
    if (got > 0 && got < max) {
        ie_eventfd_drain(efd);
        int more = ie_uring_reap(r, ud + got, res + got, max - got, 1);
        if (more > 0)
            got += more;
    }
    return got;
}

int ie_eventfd_signal(int fd)
{
    uint64_t one = 1;
    return write(fd, &one, sizeof(one)) < 0 ? -errno : 0;
}

/* The worker thread's own I/O priority (ioprio_set applies to the calling thread), as last set:
   a request's priority costs a system call only when it differs from the one before. */
static __thread unsigned thread_ioprio;

int64_t ie_rw_sync(const uint64_t *rec)
{
    /* The thread-pool backend's worker: one blocking call (cffi drops the GIL around it). */
    struct ie_rec q = rec_decode(rec);
    off_t off = (off_t)q.off;
    ssize_t ret;
    if (q.op != IE_OP_FSYNC && q.flags != thread_ioprio) {
        /* IOPRIO_WHO_PROCESS (1), who 0: this thread */
        if (syscall(SYS_ioprio_set, 1, 0, (int)q.flags) < 0)
            return -errno;
        thread_ioprio = q.flags;
    }
    switch (q.op) {
    case IE_OP_READ:
        ret = pread(q.fd, q.addr, q.len, off);
        break;
    case IE_OP_WRITE:
        ret = pwrite(q.fd, q.addr, q.len, off);
        break;
    case IE_OP_READV:
        ret = preadv(q.fd, (const struct iovec *)q.addr, (int)q.len, off);
        break;
    case IE_OP_WRITEV:
        ret = pwritev(q.fd, (const struct iovec *)q.addr, (int)q.len, off);
        break;
    case IE_OP_FSYNC:
        ret = q.flags ? fdatasync(q.fd) : fsync(q.fd);
        break;
    default:
        return -EINVAL;
    }
    return ret < 0 ? -errno : ret;
}

/* One read or write made at the call (preadv2 / pwritev2 with ``flags``, e.g. RWF_NOWAIT): the
   page cache's fast path for buffered files (ioengine/pagecache.py). n or -errno. */
int64_t ie_rw_now(int fd, int write, uint64_t addr, uint64_t len, int64_t off, int flags)
{
    struct iovec iov = {(void *)(uintptr_t)addr, (size_t)len};
    ssize_t ret = write ? pwritev2(fd, &iov, 1, (off_t)off, flags) : preadv2(fd, &iov, 1, (off_t)off, flags);
    return ret < 0 ? -errno : ret;
}

/* Deterministic pseudo-random bytes (splitmix64) for benchmark data: fio fills write buffers
   with random data at a few ns per byte; Python's random.Random(seed).randbytes() took ~25 us
   for 4 KiB, more than the write it fills. ``zeros`` bytes of every ``chunk`` (from its start)
   are 0 instead, the compressible part of fio's buffer_compress_percentage; chunk 0: none. */
static inline uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ie_fill_random(uint64_t addr, uint64_t len, uint64_t seed, uint64_t chunk, uint64_t zeros)
{
    unsigned char *p = (unsigned char *)(uintptr_t)addr;
    uint64_t s = seed;
    uint64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = splitmix64(&s);
        memcpy(p + i, &v, 8);
    }
    if (i < len) {
        uint64_t v = splitmix64(&s);
        memcpy(p + i, &v, len - i);
    }
    if (chunk && zeros)
        for (uint64_t c = 0; c < len; c += chunk)
            memset(p + c, 0, zeros < len - c ? zeros : len - c);
}

/* fio's small_content_scramble (scramble_buffers, on by default): in every 512-byte sector of a
   write's buffer, the sector's file offset at one of its first eight 8-byte words' cache lines
   (chosen by the time and offset) and the time at the end of its first cache line, so that no
   two writes carry the same bytes (no dedupe shortcut) at the cost of three stores per sector.
   ``ns``: the time of the write, in nanoseconds. */
void ie_scramble(uint64_t addr, uint64_t len, uint64_t offset, uint64_t ns)
{
    unsigned char *p = (unsigned char *)(uintptr_t)addr;
    uint64_t sec = ns / 1000000000u, nsec = ns % 1000000000u;
    unsigned line = (unsigned)((nsec ^ offset) & 7);
    for (uint64_t i = 0; i + 512 <= len; i += 512, offset += 512) {
        memcpy(p + i + ((uint64_t)line << 6), &offset, 8);
        memcpy(p + i + 48, &sec, 8);
        memcpy(p + i + 56, &nsec, 8);
    }
}

int ie_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
    return fallocate(fd, mode, (off_t)off, (off_t)len) < 0 ? -errno : 0;
}
