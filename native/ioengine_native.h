/* Declarations shared by ioengine_native.c and the cffi build (native/build_native.py). */
#ifndef IOENGINE_NATIVE_H
#define IOENGINE_NATIVE_H
#include <stddef.h>
#include <stdint.h>

#define IE_REC_WORDS 5

enum ie_op { IE_OP_READ = 0, IE_OP_WRITE = 1, IE_OP_READV = 2, IE_OP_WRITEV = 3, IE_OP_FSYNC = 4 };

struct ie_stat {
    uint32_t mask, blksize, nlink, uid, gid, mode;
    uint64_t ino, size, blocks;
    int64_t atime_sec, mtime_sec, ctime_sec, btime_sec;
    uint32_t atime_nsec, mtime_nsec, ctime_nsec, btime_nsec;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint32_t dio_mem_align, dio_offset_align;
};

struct ie_statfs {
    uint64_t type, bsize, blocks, bfree, bavail;
};

struct ie_uring;
struct ie_aio;
struct statx;

int ie_uring_create(unsigned entries, unsigned flags_mask, struct ie_uring **out, unsigned *flags_used);
void ie_uring_destroy(struct ie_uring *r);
int ie_uring_register_eventfd(struct ie_uring *r, int efd);
int ie_uring_prep_batch(struct ie_uring *r, const uint64_t *recs, int n);
int ie_uring_prep_openat(struct ie_uring *r, int dfd, const char *path, int flags, unsigned mode, uint64_t ud);
int ie_uring_prep_close(struct ie_uring *r, int fd, uint64_t ud);
int ie_uring_prep_statx(struct ie_uring *r, int dfd, const char *path, int flags, unsigned mask,
                        struct statx *buf, uint64_t ud);
int ie_uring_prep_renameat(struct ie_uring *r, int olddfd, const char *oldpath, int newdfd,
                           const char *newpath, unsigned flags, uint64_t ud);
int ie_uring_prep_unlinkat(struct ie_uring *r, int dfd, const char *path, int flags, uint64_t ud);
int ie_uring_prep_mkdirat(struct ie_uring *r, int dfd, const char *path, unsigned mode, uint64_t ud);
int ie_uring_prep_linkat(struct ie_uring *r, int olddfd, const char *oldpath, int newdfd,
                         const char *newpath, int flags, uint64_t ud);
int ie_uring_prep_fallocate(struct ie_uring *r, int fd, int mode, uint64_t off, uint64_t len, uint64_t ud);
int ie_uring_has_ftruncate(struct ie_uring *r);
int ie_uring_prep_ftruncate(struct ie_uring *r, int fd, uint64_t len, uint64_t ud);
int ie_uring_submit(struct ie_uring *r);
int ie_uring_reap(struct ie_uring *r, uint64_t *ud, int32_t *res, int max, int get_events_too);
int ie_uring_poll(struct ie_uring *r, int efd, uint64_t *ud, int32_t *res, int max);
int ie_uring_reap_woken(struct ie_uring *r, int efd, uint64_t *ud, int32_t *res, int max);
int ie_uring_flush(struct ie_uring *r, const uint64_t *recs, int n, int *accepted, uint64_t *ud,
                   int32_t *res, int max);
int ie_uring_submit_reap(struct ie_uring *r, const uint64_t *recs, int n, int *accepted, uint64_t *ud,
                         int32_t *res, int max, int efd);
int ie_uring_wait(struct ie_uring *r, unsigned min_complete);

int ie_aio_create(unsigned nr, int efd, struct ie_aio **out);
void ie_aio_destroy(struct ie_aio *a);
int ie_aio_submit_batch(struct ie_aio *a, const uint64_t *recs, int n);
int ie_aio_reap(struct ie_aio *a, uint64_t *ud, int32_t *res, int max);
int ie_aio_wait(struct ie_aio *a, int min_nr, uint64_t *ud, int32_t *res, int max);

int ie_eventfd_create(void);
int ie_eventfd_drain(int fd);
int ie_eventfd_signal(int fd);
int64_t ie_rw_sync(const uint64_t *rec);
int64_t ie_rw_now(int fd, int write, uint64_t addr, uint64_t len, int64_t off, int flags);
int ie_fallocate(int fd, int mode, uint64_t off, uint64_t len);
void ie_fill_random(uint64_t addr, uint64_t len, uint64_t seed, uint64_t chunk, uint64_t zeros);
void ie_scramble(uint64_t addr, uint64_t len, uint64_t offset, uint64_t ns);
/* verify_hdr.c: fio-style verify headers (ioengine.bench.verifier) */
#define IE_VSUM_AT 32
#define IE_VSUM_LEN 64
#define IE_VDATA_AT 96
#define IE_VBAD_MAGIC 1
#define IE_VBAD_OFFSET 2
#define IE_VBAD_NUMBERIO 3
#define IE_VBAD_SUM 4
void ie_verify_fill(uint64_t addr, uint64_t n, uint64_t interval, uint64_t pos, uint64_t seq, uint32_t writer);
int64_t ie_verify_check(uint64_t addr, uint64_t n, uint64_t interval, uint64_t pos, int64_t seq, int64_t writer,
                        int zero_sum);
void ie_fill_pattern(uint64_t addr, uint64_t n, uint64_t pattern, uint64_t plen);
int64_t ie_check_pattern(uint64_t addr, uint64_t n, uint64_t pattern, uint64_t plen);
int ie_epoll_wait_ns(int epfd, int64_t timeout_ns);
long ie_timer_slack_ns(long ns);
struct statx *ie_statx_buf_new(void);
void ie_statx_buf_free(struct statx *s);
void ie_statx_convert(const struct statx *s, struct ie_stat *o);
int ie_statx(int dfd, const char *path, int flags, unsigned mask, struct ie_stat *out);
int ie_fstatfs(int fd, struct ie_statfs *out);
unsigned ie_statx_dioalign_flag(void);

/* smp_ring.c: cross-shard SPSC byte rings in shared memory (see there). */
#define IE_SPSC_HEADER 128
int ie_spsc_push(void *ring, uint64_t cap, const void *src, uint64_t len, uint32_t *sleeping, int efd);
int64_t ie_spsc_pop(void *ring, uint64_t cap, void *dst);
uint64_t ie_spsc_queued(void *ring);
int ie_shard_sleep(uint32_t *sleeping, void *const *rings, int n);
void ie_shard_awake(uint32_t *sleeping);
/* io_group.c: one disk's token bucket, in-disk cost and io class accumulators shared by the
 * shards (see there). */
#define IE_GROUP_MAX_SHARDS 64
#define IE_GROUP_MAX_CLASSES 32
uint64_t ie_group_disk_bytes(void);
void *ie_group_disk(void *base, int nslots, uint64_t dev);
double ie_group_sync(void *disk, int shard, int nshards, int64_t now_ns, double rate, double limit,
                     double mine, double *others);
void ie_group_publish(void *disk, int shard, double mine);
double ie_group_tokens(void *disk);
void ie_group_consume(void *disk, double cost);
void ie_group_fill(void *disk, double tokens, int64_t now_ns);
int ie_group_class(void *disk, uint64_t name);
double ie_group_charge(void *disk, int cls, double per_share);
void ie_group_mark(void *disk, int cls, int64_t now_ns);
double ie_group_lead(void *disk, int cls, int64_t now_ns, int64_t window_ns, double floor_lag, int *waiting);
#endif
