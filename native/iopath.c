/*
 * ioengine._iopath.IoPath: the per-request path of one reactor, in C.
 *
 * Mechanism only (the reactor in Python keeps every decision): a staging array of 5-word
 * records (op|fd<<8|flags<<40, addr, len, pos, user_data) that the backend hands to the kernel,
 * and a table of in-flight requests, one named struct per request, that holds what must live
 * until the kernel's completion (the future, the buffer pin) and resolves the futures of a
 * batch of completions straight from C. The error text is made in Python (error_factory); the
 * numbers are checked here only as far as "fits in its word", and a request that does not fit
 * leaves no trace (the caller then asks Python which number was wrong).
 *
 * A request whose on_done is a WriteBooks (a File's per-write books, SizeTracker's C base) is
 * counted at its completion here, without the request tuple or a Python call.
 *
 * read_many() stages a batch of reads with one future for all: each read has its own slot
 * (its own buffer export, released at its own completion), and the slots share the future and a
 * ReadBatch (the results and a countdown) that the batch's last completion resolves.
 *
 * User data: a request's slot index + 1. Records whose user data has IE_UNIT_FLAG set are the
 * disk scheduler's dispatched units (parts of a queued request): complete() hands those back
 * to Python, which resolves their request with finish() when the last part is done.
 */
#include "iofuture.h"
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <stddef.h>
#include <time.h>

#define REC_WORDS 5
#define IE_UNIT_FLAG ((uint64_t)1 << 62)

typedef struct {
    PyObject *fut;      /* NULL: the slot is free */
    PyObject *pin;      /* keeps the buffer (and its export) alive until the completion */
    PyObject *opname;
    PyObject *owner;    /* the File (or a path) the request belongs to */
    PyObject *on_done;  /* called with (request tuple, result) at the completion, or NULL */
    PyObject *grant;    /* the iosched DirectGrant it was dispatched under, or NULL */
    PyObject *cls;      /* the io class state it was counted in (io()), or NULL */
    int64_t pos;
    int64_t nbytes;     /* what error messages quote; -1 for ops without a byte count */
    uint32_t next_free;
    int has_view;       /* io(): the buffer is pinned by ``view`` (an export), ``pin`` is NULL */
    Py_buffer view;
    PyObject *batch;    /* read_many(): the ReadBatch this request is part of, or NULL; ``fut``
                           is then the batch's one future, shared by all its requests */
    Py_ssize_t batch_idx;  /* the request's place in the batch's results */
} ie_request;

/* ReadBatch: the state of one read_many() batch, referenced by each of its in-flight slots.
   Its one future (the slots' ``fut``) resolves when ``remaining`` reaches 0: to ``results``,
   or with ``error`` when a request failed. Cleared once resolved (the future holds the list). */
typedef struct {
    PyObject_HEAD
    PyObject *results;      /* list of the bytes read per request, in the batch's order */
    PyObject *error;        /* the exception (error_factory's) of the failed request that comes
                               first in the batch's order (as the general path's gather), or NULL */
    Py_ssize_t error_idx;   /* that request's place in the batch */
    Py_ssize_t remaining;   /* requests of the batch not yet completed */
} ReadBatchObject;

static int ReadBatch_traverse(ReadBatchObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->results);
    Py_VISIT(self->error);
    return 0;
}

static int ReadBatch_clear(ReadBatchObject *self)
{
    Py_CLEAR(self->results);
    Py_CLEAR(self->error);
    return 0;
}

static void ReadBatch_dealloc(ReadBatchObject *self)
{
    PyObject_GC_UnTrack(self);
    ReadBatch_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ReadBatch_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ioengine._iopath.ReadBatch",
    .tp_basicsize = sizeof(ReadBatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The results and countdown of one IoPath.read_many() batch (internal).",
    .tp_dealloc = (destructor)ReadBatch_dealloc,
    .tp_traverse = (traverseproc)ReadBatch_traverse,
    .tp_clear = (inquiry)ReadBatch_clear,
};

typedef struct {
    PyObject_HEAD
    PyObject *future_factory;  /* () -> a future of the reactor's loop */
    PyObject *future_type;     /* with future_kwargs: the same call without the partial's frame */
    PyObject *future_kwargs;
    PyObject *iofuture_loop;   /* the factory makes IoFutures of this loop: made here, resolved here */
    ie_wakeups held;           /* IoFuture callbacks of resolved requests, run by deliver() */
    PyObject *error_factory;   /* (request tuple, errno) -> exception */
    PyObject *grant_reaped;    /* (grant, completions) -> None */
    ie_request *slots;
    uint32_t nslots;
    uint32_t free_head;        /* index + 1 of the first free slot; 0 = none */
    Py_ssize_t inflight;
    uint64_t *recs;
    Py_ssize_t nrec;           /* staged records */
    Py_ssize_t caprec;
    Py_ssize_t exports;        /* memoryviews of the records alive: no realloc meanwhile */
    Py_ssize_t view_n;         /* records the current export shows */
    Py_ssize_t in_kernel;
    Py_ssize_t capacity;       /* io() leaves the request to Python when staged + in_kernel reach it */
    Py_ssize_t flush_at;       /* staged records that ask for a submission now */
    unsigned long thread;      /* the loop's thread: submit() stages only there */
    uint64_t alone_bytes;      /* a request this large asks for a submission now */
    int submit_now;
    /* The reactor's state submit() reads (Python keeps it current; see reactor.py): */
    int closed;
    int flush_scheduled;       /* a loop callback will hand the batch over this turn */
    int delivering;            /* deliver() is running the woken tasks: what they issue is fed */
    Py_ssize_t sched_waiting;  /* units waiting in the disk queues: everything queues behind them */
    int share_direct;          /* ... except, under share_in_disk, a class with its grant open and
                                  nothing queued (the queue's open_grant decided it may go) */
    PyObject *grant;           /* the open direct grant, or NULL */
    /* The open grant's books as C numbers while C takes requests under it (grant_take_open):
       loaded from the grant at the first take, written back (and dropped) before Python can
       see the grant (the ``grant`` getter and setter, a completion callback). */
    int g_loaded;
    int g_dirty;
    double g_budget;           /* its budget, unscaled disk-seconds */
    long long g_taken;         /* requests taken since the load (added to grant.n on write-back) */
    uint64_t g_len;            /* one-entry cost cache, as the grant's last_length/direction/cost */
    long g_dir;
    double g_cost;
    PyObject *g_class;         /* grant.io_class (it never changes): plain_route's test per request */
    /* Requests counted in a class's ``ops``/``bytes`` lists as C numbers, added to the lists
       at the next submission (or completion batch, or sync_counters()): a Python list item
       read, added and stored twice per request cost more than the rest of io(). One class at
       a time; another class's request publishes the first's. */
    PyObject *cnt_class;
    uint64_t cnt_ops[2], cnt_bytes[2];
    uint64_t cnt_fed;          /* ... of them issued while delivering (the class's ``fed``) */
    PyObject *call_soon;       /* loop.call_soon */
    PyObject *flush_cb;        /* the reactor's per-turn flush */
    PyObject *submit_inline;   /* the reactor's mid-turn submission */
    /* The io_uring submission in C (set_ring): the ring, the native submit-and-reap (called
       through a pointer: it lives in the cffi module), the completions' buffers. With a ring
       set, a mid-turn submission (submit_now) does not call submit_inline: it hands the batch
       to the kernel here and keeps what completed in ``deferred`` for the reactor's flush. */
    void *ring;
    int (*ring_submit)(void *ring, const uint64_t *recs, int n, int *accepted, uint64_t *ud, int32_t *res,
                       int max, int efd);
    /* The ring's reaps in C (set_reap): the idle poller's (ie_uring_poll) and the one after
       the eventfd woke the loop (ie_uring_reap_woken), through pointers as ring_submit. */
    int (*ring_poll)(void *ring, int efd, uint64_t *ud, int32_t *res, int max);
    int (*ring_reap_woken)(void *ring, int efd, uint64_t *ud, int32_t *res, int max);
    int ring_efd;
    int ring_max;
    uint64_t *ring_ud;
    int32_t *ring_res;
    PyObject *deferred;        /* list of (uds, results) collected by mid-turn submissions */
    PyObject *fail_staged;     /* (errno) -> None: the staged batch fails as a whole */
    PyObject *kick;            /* () -> None after a submission left I/O in the kernel, or NULL */
    PyObject *io_class_var;    /* the ContextVar of ``with io_class:`` */
    /* The completion rate the idle poller decides by: requests completed in the current ~1 ms
       window and when it began; gap_ns the expected time between completions (an EWMA). */
    Py_ssize_t rate_n;
    long long rate_t0;
    double gap_ns;
    Py_ssize_t flushes;        /* loop turns' flushes so far (the reactor's grants compare them) */
    /* turn(): the reactor's general completion and submission, for what the turn hands back */
    PyObject *turn_complete;   /* (uds, results) -> None */
    PyObject *turn_submit;     /* () -> None */
    PyObject *turn_waiters;    /* a tuple of the reactor's lists that must be empty for a plain turn */
    /* The grants' books while the turn runs with a grant open (a throttling disk queue): the
       reactor's settle after a submission (Reactor._settle_after_submit), called when the
       books are due (see the turn); the reactor's list of grants with unbooked completions. */
    PyObject *turn_settle;     /* () -> None */
    PyObject *turn_reaped;     /* the reactor's list (grants), or NULL */
    long long settled_ns;      /* when the reactor last settled the grants (CLOCK_MONOTONIC) */
    long long settle_ns;       /* how stale it lets them get while I/O flows (reactor.SETTLE_NS) */
    int g_shared;              /* the open grant's queue is shared with other shards: settled each turn */
} IoPathObject;

static PyObject *str_pending, *str_charge, *str_shares;
static PyObject *str_set_result, *str_set_exception, *str_done, *str_last_length, *str_last_direction, *str_last_cost,
    *str_budget, *str_n, *str_cost_of, *str_io_class, *str_ops, *str_bytes, *str_fed, *int_one, *str_limited, *str_throttling,
    *str_nr_queued, *str_queue, *str_shared;

/* The first error of a batch, kept while the rest is delivered (PyErr_Fetch: Python 3.11). */
typedef struct {
    PyObject *type, *value, *tb;
} saved_error;

static void keep_error(saved_error *e)
{
    if (!PyErr_Occurred())
        return;
    if (e->type) {
        PyErr_Clear();
        return;
    }
    PyErr_Fetch(&e->type, &e->value, &e->tb);
}

static PyObject *raise_kept(saved_error *e)
{
    PyErr_Restore(e->type, e->value, e->tb);
    e->type = e->value = e->tb = NULL;
    return NULL;
}

/* -- slots ------------------------------------------------------------------------------ */

static inline PyObject *new_future(IoPathObject *self)
{
    if (self->iofuture_loop)
        return iofuture_new(self->iofuture_loop);
    if (self->future_type)
        return PyObject_VectorcallDict(self->future_type, NULL, 0, self->future_kwargs);
    return PyObject_CallNoArgs(self->future_factory);
}

static int grow_slots(IoPathObject *self)
{
    uint32_t n = self->nslots ? self->nslots * 2 : 256;
    ie_request *s = PyMem_Realloc(self->slots, (size_t)n * sizeof(ie_request));
    if (!s) {
        PyErr_NoMemory();
        return -1;
    }
    memset(s + self->nslots, 0, (size_t)(n - self->nslots) * sizeof(ie_request));
    /* new slots onto the free list, lowest index first */
    for (uint32_t i = n; i > self->nslots; i--) {
        s[i - 1].next_free = self->free_head;
        self->free_head = i;
    }
    self->slots = s;
    self->nslots = n;
    return 0;
}

/* A new in-flight request; returns its user data, 0 on error (a Python exception is set). */
static uint64_t take_slot(IoPathObject *self, PyObject *pin, PyObject *opname, PyObject *owner, PyObject *on_done,
                          PyObject *grant, int64_t pos, int64_t nbytes, PyObject **fut_out)
{
    PyObject *fut = new_future(self);
    if (!fut)
        return 0;
    /* only now: making the future may run Python code (a GC pass) that stages requests too */
    if (!self->free_head && grow_slots(self) < 0) {
        Py_DECREF(fut);
        return 0;
    }
    uint32_t idx = self->free_head - 1;
    ie_request *r = &self->slots[idx];
    self->free_head = r->next_free;
    r->fut = fut;
    Py_XINCREF(pin);
    r->pin = pin;
    Py_INCREF(opname);
    r->opname = opname;
    Py_INCREF(owner);
    r->owner = owner;
    r->on_done = on_done == Py_None ? NULL : Py_NewRef(on_done);
    r->grant = grant == Py_None ? NULL : Py_NewRef(grant);
    r->pos = pos;
    r->nbytes = nbytes;
    self->inflight++;
    *fut_out = fut;
    return (uint64_t)idx + 1;
}

static void clear_slot(IoPathObject *self, uint32_t idx)
{
    ie_request *r = &self->slots[idx];
    PyObject *fut = r->fut, *pin = r->pin, *opname = r->opname, *owner = r->owner, *on_done = r->on_done,
             *grant = r->grant, *cls = r->cls, *batch = r->batch;
    if (r->has_view)
        PyBuffer_Release(&r->view);  /* the export ends only now: the kernel is done with it */
    memset(r, 0, sizeof(*r));
    r->next_free = self->free_head;
    self->free_head = idx + 1;
    self->inflight--;
    /* decrefs last: a finaliser may run Python code that stages a new request */
    Py_XDECREF(fut);
    Py_XDECREF(pin);
    Py_XDECREF(opname);
    Py_XDECREF(owner);
    Py_XDECREF(on_done);
    Py_XDECREF(grant);
    Py_XDECREF(cls);
    Py_XDECREF(batch);
}

static PyObject *request_tuple(ie_request *r)
{
    PyObject *pin = r->pin ? r->pin : (r->has_view && r->view.obj ? r->view.obj : Py_None);
    return Py_BuildValue("(OOOOLLOO)", r->fut, pin, r->opname, r->owner, (long long)r->pos,
                         (long long)r->nbytes, r->on_done ? r->on_done : Py_None, r->grant ? r->grant : Py_None);
}

/* -- staging ---------------------------------------------------------------------------- */

static int reserve_rec(IoPathObject *self)
{
    if (self->nrec < self->caprec)
        return 0;
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "IoPath: records are exported; cannot grow the staging array");
        return -1;
    }
    Py_ssize_t n = self->caprec ? self->caprec * 2 : 256;
    uint64_t *p = PyMem_Realloc(self->recs, (size_t)n * REC_WORDS * sizeof(uint64_t));
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    self->recs = p;
    self->caprec = n;
    return 0;
}

static inline void put_rec(IoPathObject *self, uint64_t w0, uint64_t addr, uint64_t len, uint64_t pos, uint64_t ud)
{
    uint64_t *q = self->recs + self->nrec * REC_WORDS;
    q[0] = w0;
    q[1] = addr;
    q[2] = len;
    q[3] = pos;
    q[4] = ud;
    self->nrec++;
}

/* An int in [0, limit) (limit 0: the whole uint64 range); -1 when it is not (no exception set). */
static inline int get_u64(PyObject *o, uint64_t limit, uint64_t *out)
{
    if (!PyLong_CheckExact(o) && !(PyLong_Check(o) && !PyBool_Check(o)))
        return -1;
    uint64_t v = PyLong_AsUnsignedLongLong(o);
    if (v == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (limit && v >= limit)
        return -1;
    *out = v;
    return 0;
}

/* rw(op, fd, addr, length, pos, pin, opname, owner, on_done, grant) -> future, or None when a
   number does not fit its word (nothing is staged or registered then). ``op`` may carry the
   record's flags (the request's ioprio) from bit 40, where word 0 keeps them. */
static PyObject *IoPath_rw(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "rw() takes 10 arguments");
        return NULL;
    }
    uint64_t op, fd, addr, len, pos;
    if (get_u64(args[0], 0, &op) || (op & 0xffffffff00u) || get_u64(args[1], (uint64_t)1 << 32, &fd)
        || get_u64(args[2], 0, &addr) || get_u64(args[3], (uint64_t)1 << 32, &len)
        || get_u64(args[4], (uint64_t)1 << 63, &pos))
        Py_RETURN_NONE;
    PyObject *fut;
    uint64_t ud = take_slot(self, args[5], args[6], args[7], args[8], args[9], (int64_t)pos, (int64_t)len, &fut);
    if (!ud)
        return NULL;
    if (reserve_rec(self) < 0) {  /* after the future: see take_slot */
        PyObject *f = Py_NewRef(fut);
        clear_slot(self, (uint32_t)(ud - 1));
        Py_DECREF(f);
        return NULL;
    }
    put_rec(self, op | (fd << 8), addr, len, pos, ud);
    if (len >= self->alone_bytes || self->nrec >= self->flush_at)
        self->submit_now = 1;
    return Py_NewRef(fut);
}

/* DirectGrant.take's arithmetic (iosched/io_queue.py is the reference; a test compares the
   two on one sequence): 1 taken, 0 it does not fit (queue it), -1 error. ``cls``: the class
   state whose ops/bytes count the request, or NULL. */
static int add_to_list_item(PyObject *owner, PyObject *name, long idx, uint64_t v)
{
    PyObject *lst = PyObject_GetAttr(owner, name);
    if (!lst)
        return -1;
    int rc = -1;
    if (PyList_Check(lst) && idx >= 0 && idx < PyList_GET_SIZE(lst)) {
        PyObject *inc = PyLong_FromUnsignedLongLong(v);
        PyObject *sum = inc ? PyNumber_Add(PyList_GET_ITEM(lst, idx), inc) : NULL;
        Py_XDECREF(inc);
        if (sum)
            rc = PyList_SetItem(lst, idx, sum);
    } else {
        PyErr_SetString(PyExc_TypeError, "class counters must be lists");
    }
    Py_DECREF(lst);
    return rc;
}

/* Add the counts kept in C to their class's lists. 0, or -1 with an exception. */
static int counts_publish(IoPathObject *self)
{
    PyObject *cls = self->cnt_class;
    if (!cls)
        return 0;
    self->cnt_class = NULL;
    int rc = 0;
    for (long d = 0; d < 2 && rc == 0; d++) {
        if (self->cnt_ops[d] && (add_to_list_item(cls, str_ops, d, self->cnt_ops[d]) < 0
                                 || add_to_list_item(cls, str_bytes, d, self->cnt_bytes[d]) < 0))
            rc = -1;
    }
    if (rc == 0 && self->cnt_fed && add_to_list_item(cls, str_fed, 0, self->cnt_fed) < 0)
        rc = -1;
    self->cnt_ops[0] = self->cnt_ops[1] = self->cnt_bytes[0] = self->cnt_bytes[1] = 0;
    self->cnt_fed = 0;
    Py_DECREF(cls);
    return rc;
}

/* Count ``ops`` requests of ``bytes`` in ``cls`` (direction 0 read, 1 write). */
static int count_in_class(IoPathObject *self, PyObject *cls, long direction, uint64_t ops, uint64_t bytes)
{
    if (direction < 0 || direction > 1)
        return add_to_list_item(cls, str_ops, direction, ops) < 0 || add_to_list_item(cls, str_bytes, direction, bytes) < 0
               || (self->delivering && add_to_list_item(cls, str_fed, 0, ops) < 0) ? -1 : 0;
    if (cls != self->cnt_class) {
        if (counts_publish(self) < 0)
            return -1;
        Py_INCREF(cls);
        self->cnt_class = cls;
    }
    self->cnt_ops[direction] += ops;
    self->cnt_bytes[direction] += bytes;
    if (self->delivering)
        self->cnt_fed += ops;
    return 0;
}

static int grant_take(PyObject *grant, long direction, uint64_t length, PyObject *cls)
{
    double c;
    PyObject *ll = PyObject_GetAttr(grant, str_last_length);
    PyObject *ld = ll ? PyObject_GetAttr(grant, str_last_direction) : NULL;
    if (!ld) {
        Py_XDECREF(ll);
        return -1;
    }
    int same = PyLong_Check(ll) && PyLong_Check(ld) && PyLong_AsUnsignedLongLong(ll) == length
               && PyLong_AsLong(ld) == direction;
    PyErr_Clear();
    Py_DECREF(ll);
    Py_DECREF(ld);
    PyObject *co = same ? PyObject_GetAttr(grant, str_last_cost)
                        : PyObject_CallMethod(grant, "cost_of", "lK", direction, (unsigned long long)length);
    if (!co)
        return -1;
    c = PyFloat_AsDouble(co);
    Py_DECREF(co);
    if (c == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *bo = PyObject_GetAttr(grant, str_budget);
    if (!bo)
        return -1;
    double budget = PyFloat_AsDouble(bo);
    Py_DECREF(bo);
    if (budget == -1.0 && PyErr_Occurred())
        return -1;
    if (c > budget)
        return 0;
    PyObject *nb = PyFloat_FromDouble(budget - c);
    if (!nb || PyObject_SetAttr(grant, str_budget, nb) < 0) {
        Py_XDECREF(nb);
        return -1;
    }
    Py_DECREF(nb);
    PyObject *n = PyObject_GetAttr(grant, str_n);
    if (!n)
        return -1;
    PyObject *n1 = PyNumber_Add(n, int_one);
    Py_DECREF(n);
    if (!n1 || PyObject_SetAttr(grant, str_n, n1) < 0) {
        Py_XDECREF(n1);
        return -1;
    }
    Py_DECREF(n1);
    if (cls && (add_to_list_item(cls, str_ops, direction, 1) < 0 || add_to_list_item(cls, str_bytes, direction, length) < 0))
        return -1;
    return 1;
}

/* Write the open grant's C books back into it and drop them: Python is about to see the grant
   (it may read or change its budget, or book it). 0, or -1 with an exception. */
static int grant_store(IoPathObject *self)
{
    if (counts_publish(self) < 0)  /* the class's counts are books of the same requests */
        return -1;
    if (!self->g_loaded)
        return 0;
    self->g_loaded = 0;
    if (!self->g_dirty || !self->grant)
        return 0;
    self->g_dirty = 0;
    PyObject *g = self->grant;
    PyObject *nb = PyFloat_FromDouble(self->g_budget);
    if (!nb || PyObject_SetAttr(g, str_budget, nb) < 0) {
        Py_XDECREF(nb);
        return -1;
    }
    Py_DECREF(nb);
    PyObject *n = PyObject_GetAttr(g, str_n);
    if (!n)
        return -1;
    PyObject *k = PyLong_FromLongLong(self->g_taken);
    PyObject *n1 = k ? PyNumber_Add(n, k) : NULL;
    Py_DECREF(n);
    Py_XDECREF(k);
    if (!n1 || PyObject_SetAttr(g, str_n, n1) < 0) {
        Py_XDECREF(n1);
        return -1;
    }
    Py_DECREF(n1);
    return 0;
}

/* Load the open grant's budget and cost cache into C (once, until the next store). */
static int grant_load(IoPathObject *self)
{
    PyObject *g = self->grant;
    PyObject *bo = PyObject_GetAttr(g, str_budget);
    if (!bo)
        return -1;
    double budget = PyFloat_AsDouble(bo);
    Py_DECREF(bo);
    if (budget == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *ll = PyObject_GetAttr(g, str_last_length);
    PyObject *ld = ll ? PyObject_GetAttr(g, str_last_direction) : NULL;
    PyObject *lc = ld ? PyObject_GetAttr(g, str_last_cost) : NULL;
    int ok = lc && PyLong_Check(ll) && PyLong_Check(ld) && PyFloat_Check(lc);
    if (ok) {
        self->g_len = PyLong_AsUnsignedLongLong(ll);
        self->g_dir = PyLong_AsLong(ld);
        self->g_cost = PyFloat_AsDouble(lc);
        if (PyErr_Occurred())
            ok = 0;
    }
    Py_XDECREF(ll);
    Py_XDECREF(ld);
    Py_XDECREF(lc);
    if (!ok) {
        if (PyErr_Occurred() && !lc)
            return -1;
        PyErr_Clear();
        self->g_len = UINT64_MAX;  /* nothing cached: the first take asks cost_of */
        self->g_dir = -1;
    }
    self->g_budget = budget;
    self->g_taken = 0;
    self->g_dirty = 0;
    self->g_loaded = 1;
    return 0;
}

/* DirectGrant.take for the open grant (self->grant), on the C copy of its books: what
   grant_take does, without an attribute lookup per request. 1 taken, 0 no room, -1 error. */
static int grant_take_open(IoPathObject *self, long direction, uint64_t length)
{
    if (!self->g_loaded && grant_load(self) < 0)
        return -1;
    double c;
    if (length == self->g_len && direction == self->g_dir) {
        c = self->g_cost;
    } else {
        PyObject *co = PyObject_CallMethod(self->grant, "cost_of", "lK", direction, (unsigned long long)length);
        if (!co)
            return -1;
        c = PyFloat_AsDouble(co);
        Py_DECREF(co);
        if (c == -1.0 && PyErr_Occurred())
            return -1;
        self->g_len = length;  /* cost_of cached it in the grant (and its queue) too */
        self->g_dir = direction;
        self->g_cost = c;
    }
    if (c > self->g_budget)
        return 0;
    self->g_budget -= c;
    self->g_taken++;
    self->g_dirty = 1;
    return 1;
}

/* grant_take(grant) -- module function: DirectGrant.take(direction, length) done by C. */
static PyObject *mod_grant_take(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "grant_take(grant, direction, length)");
        return NULL;
    }
    long d = PyLong_AsLong(args[1]);
    unsigned long long len = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *cls = PyObject_GetAttr(args[0], str_io_class);
    if (!cls)
        return NULL;
    int t = grant_take(args[0], d, len, cls);
    Py_DECREF(cls);
    if (t < 0)
        return NULL;
    return PyBool_FromLong(t);
}

static int books_check(PyObject *on_done);
static void books_staged(PyObject *books, long long end);

/* io(op, fd, buf, pos, disk_mask, mem_mask, opname, owner, on_done, cls, grant): the whole
   per-request path of one dma_read/dma_write that may go straight to the kernel: pin the
   buffer (an export, held until the completion), check the position, length and address
   against the masks, take the request's cost from the direct grant (if any), count it in
   its class (if any), register it and stage its record. Returns the future; None when any
   of that is not plain (then nothing happened and Python takes the request, and says what
   is wrong); False when the grant has no room left (queue it). */
static PyObject *IoPath_io(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "io() takes 11 arguments");
        return NULL;
    }
    /* A write counted in its File's books (on_done a WriteBooks) goes only when they say it
       may go at once; they count it in below, as it is staged. */
    int books = books_check(args[8]);
    if (books < 0)
        Py_RETURN_NONE;
    uint64_t op, fd, pos, dmask, mmask;
    if (get_u64(args[0], 2, &op) || get_u64(args[1], (uint64_t)1 << 32, &fd) || get_u64(args[3], (uint64_t)1 << 63, &pos)
        || get_u64(args[4], 0, &dmask) || get_u64(args[5], 0, &mmask))
        Py_RETURN_NONE;
    if (self->nrec + self->in_kernel >= self->capacity)
        Py_RETURN_NONE;
    /* Everything that may run Python code (the buffer export, the grant's cost, the class's
       counters, the future) comes before the slot and the record are taken, so a request
       staged meanwhile (a GC pass, a property) cannot take them from under us. */
    Py_buffer view;
    /* reads need a writable buffer; a write's may be read-only */
    if (PyObject_GetBuffer(args[2], &view, op == 0 ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    uint64_t addr = (uint64_t)(uintptr_t)view.buf, len = (uint64_t)view.len;
    if (((pos | len) & dmask) || (addr & mmask) || len >= ((uint64_t)1 << 32)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    PyObject *cls = args[9] == Py_None ? NULL : args[9], *grant = args[10];
    if (grant != Py_None) {
        int t = grant == self->grant ? grant_take_open(self, (long)op, len) : grant_take(grant, (long)op, len, NULL);
        if (t <= 0) {
            PyBuffer_Release(&view);
            if (t < 0)
                return NULL;
            Py_RETURN_FALSE;
        }
    }
    if (cls && count_in_class(self, cls, (long)op, 1, len) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    PyObject *fut = new_future(self);
    if (!fut) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (reserve_rec(self) < 0 || (!self->free_head && grow_slots(self) < 0)) {
        PyBuffer_Release(&view);
        Py_DECREF(fut);
        return NULL;
    }
    uint32_t idx = self->free_head - 1;
    ie_request *r = &self->slots[idx];
    self->free_head = r->next_free;
    r->view = view;  /* the export moves into the slot: released at the completion */
    r->has_view = 1;
    r->fut = fut;
    r->pin = NULL;
    r->opname = Py_NewRef(args[6]);
    r->owner = Py_NewRef(args[7]);
    r->on_done = args[8] == Py_None ? NULL : Py_NewRef(args[8]);
    r->grant = grant == Py_None ? NULL : Py_NewRef(grant);
    r->cls = cls ? Py_NewRef(cls) : NULL;
    r->pos = (int64_t)pos;
    r->nbytes = (int64_t)len;
    self->inflight++;
    put_rec(self, op | (fd << 8), addr, len, pos, (uint64_t)idx + 1);
    if (len >= self->alone_bytes || self->nrec >= self->flush_at)
        self->submit_now = 1;
    if (books)
        books_staged(args[8], (long long)(pos + len));
    return Py_NewRef(fut);
}

/* submit(op, fd, buf, pos, disk_mask, mem_mask, opname, owner, on_done, queue, states, io_class):
   Reactor.submit_buffer: the reactor's decision for the plain case, then io(). The request
   goes straight to the kernel only when nothing waits in the disk queues, its class has a
   state in ``states`` and no limits, and (a throttling queue) the open grant is its class's;
   anything else returns None and Python takes it (opening a grant, queueing, or saying what
   is wrong). */
/* The reactor's decision for the plain case (submit() and read_many()): 1 when the request
   may go straight to the kernel, with *st the class state it counts in (borrowed from
   ``states``, or Py_None without a queue) and *grant the open direct grant it takes its cost
   from (borrowed from self, or Py_None); 0 when Python must take it; -1 on error. */
static inline int plain_route(IoPathObject *self, PyObject *queue, PyObject *states, PyObject *io_class,
                              PyObject **st_out, PyObject **grant_out)
{
    PyObject *st = Py_None, *grant = Py_None, *cls_key = NULL;
    if (queue != Py_None) {
        if (!PyDict_Check(states))
            return 0;
        if (io_class == Py_None) {
            if (PyContextVar_Get(self->io_class_var, Py_None, &cls_key) < 0)
                return -1;
        } else {
            cls_key = Py_NewRef(io_class);
        }
        st = PyDict_GetItemWithError(states, cls_key); /* borrowed */
        Py_DECREF(cls_key);
        if (!st)
            return PyErr_Occurred() ? -1 : 0;
        PyObject *lim = PyObject_GetAttr(st, str_limited);
        if (!lim)
            return -1;
        int limited = PyObject_IsTrue(lim);
        Py_DECREF(lim);
        if (limited)
            return limited < 0 ? -1 : 0;
        PyObject *thr = PyObject_GetAttr(queue, str_throttling);
        if (!thr)
            return -1;
        int throttling = PyObject_IsTrue(thr);
        Py_DECREF(thr);
        if (throttling < 0)
            return -1;
        if (self->sched_waiting && !throttling)
            return 0;
        if (throttling) {
            if (!self->grant)
                return 0;
            if (self->g_class != st)
                return 0;
            if (self->sched_waiting) {
                /* share_direct: others wait; this class goes on under its grant only while it has
                   nothing queued itself (its own requests keep their order) */
                PyObject *nq = PyObject_GetAttr(st, str_nr_queued);
                if (!nq)
                    return -1;
                int queued = PyObject_IsTrue(nq);
                Py_DECREF(nq);
                if (queued)
                    return queued < 0 ? -1 : 0;
            }
            grant = self->grant;
        }
    }
    *st_out = st;
    *grant_out = grant;
    return 1;
}

/* The ``got`` completions in ring_ud / ring_res as two new lists (uds, results); -1 with an
   exception (out of memory with completions in hand: they cannot be delivered, and their
   buffers are the kernel's no more; fail loudly rather than lose track quietly). */
static int ring_lists(IoPathObject *self, int got, PyObject **uds, PyObject **res)
{
    PyObject *u = PyList_New(got), *r = PyList_New(got);
    if (!u || !r)
        goto fail;
    for (int i = 0; i < got; i++) {
        PyObject *a = PyLong_FromUnsignedLongLong(self->ring_ud[i]);
        if (!a)
            goto fail;
        PyList_SET_ITEM(u, i, a);
        PyObject *b = PyLong_FromLong(self->ring_res[i]);
        if (!b)
            goto fail;
        PyList_SET_ITEM(r, i, b);
    }
    *uds = u;
    *res = r;
    return 0;
fail:
    Py_XDECREF(u);
    Py_XDECREF(r);
    return -1;
}

/* The reactor's submission of the staged batch through the ring (set_ring): as many records
   as the kernel has room for, then what completed meanwhile in ring_ud / ring_res (*got_out of
   them). 1 when done; 0 when Python must submit (no ring set, a batch exported, or units
   waiting in the disk queues unless ``decided``: the reactor has run their dispatch, or left
   it to the turn's flush); -1 with an exception; when the kernel refused the enter, -2 with
   the errno in *err and nothing consumed (the caller fails the batch). */
static int ring_flush_raw(IoPathObject *self, int *got_out, int *err, int decided)
{
    *got_out = 0;
    if (counts_publish(self) < 0)
        return -1;
    if (!self->ring || (self->sched_waiting && !decided) || self->exports)
        return 0;
    Py_ssize_t n = self->capacity - self->in_kernel;  /* the rest waits for completions */
    if (n > self->nrec)
        n = self->nrec;
    if (n < 0)
        n = 0;
    int accepted = 0;
    self->submit_now = 0;
    int got = self->ring_submit(self->ring, n ? self->recs : NULL, (int)n, &accepted, self->ring_ud, self->ring_res,
                                self->ring_max, self->ring_efd);
    if (got < 0) {
        *err = -got;
        return -2;
    }
    if (n && accepted > 0) {
        memmove(self->recs, self->recs + (Py_ssize_t)accepted * REC_WORDS,
                (size_t)(self->nrec - accepted) * REC_WORDS * sizeof(uint64_t));
        self->nrec -= accepted;
        self->in_kernel += accepted;
    }
    *got_out = got;
    return 1;
}

/* ring_flush_raw, with what completed as two new lists in *uds and *res (both NULL when
   nothing did). */
static int ring_flush(IoPathObject *self, PyObject **uds, PyObject **res, int *err, int decided)
{
    int got;
    *uds = *res = NULL;
    int rc = ring_flush_raw(self, &got, err, decided);
    if (rc != 1 || got == 0)
        return rc;
    return ring_lists(self, got, uds, res) < 0 ? -1 : 1;
}

/* The mid-turn submission (the batch is full or a request is large), in C when a ring is set:
   completions it collects wait in ``deferred`` for the reactor's flush (already scheduled or
   scheduled by the caller), so a task never resumes under another task's submission. */
static int submit_mid_turn(IoPathObject *self)
{
    PyObject *uds, *res;
    int err = 0;
    /* Units waiting in the disk queues while a class goes on under its grant (share_direct):
       their dispatch waits for the turn's flush (Reactor._submit_now), which would skip it
       here anyway unless due; the Python submission for every few of the granted class's
       requests cost it ~a third of its reads next to a throttled class
       (`scripts/compaction.py`). */
    int rc = ring_flush(self, &uds, &res, &err, self->share_direct && self->grant);
    if (rc == 0) {
        PyObject *r = PyObject_CallNoArgs(self->submit_inline);
        if (!r)
            return -1;
        Py_DECREF(r);
        return 0;
    }
    if (rc == -1)
        return -1;
    if (rc == -2) {
        PyObject *r = PyObject_CallFunction(self->fail_staged, "i", err);
        if (!r)
            return -1;
        Py_DECREF(r);
        return 0;
    }
    if (uds) {
        PyObject *pair = PyTuple_Pack(2, uds, res);
        Py_DECREF(uds);
        Py_DECREF(res);
        if (!pair || PyList_Append(self->deferred, pair) < 0) {
            Py_XDECREF(pair);
            return -1;
        }
        Py_DECREF(pair);
    }
    if (self->kick && self->in_kernel) {
        PyObject *r = PyObject_CallNoArgs(self->kick);
        if (!r)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* After a request (or a batch) was staged: submit mid-turn when it asks for it, and make sure
   the reactor's flush runs this turn. 0, or -1 with an exception (what is staged stays so). */
static int after_stage(IoPathObject *self)
{
    if (self->submit_now && submit_mid_turn(self) < 0)
        return -1;
    if (!self->flush_scheduled) {
        PyObject *h = PyObject_CallOneArg(self->call_soon, self->flush_cb);
        if (!h)
            return -1;
        Py_DECREF(h);
        self->flush_scheduled = 1;
    }
    return 0;
}

/* submit(op, fd, buf, pos, disk_mask, mem_mask, opname, owner, on_done, queue, states, io_class):
   Reactor.submit_buffer: the reactor's decision for the plain case, then io(). The request
   goes straight to the kernel only when nothing waits in the disk queues, its class has a
   state in ``states`` and no limits, and (a throttling queue) the open grant is its class's;
   anything else returns None and Python takes it (opening a grant, queueing, or saying what
   is wrong). */
static PyObject *IoPath_submit(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "submit() takes 12 arguments");
        return NULL;
    }
    /* another thread (a coroutine made for run_coroutine_threadsafe) is staged by the loop's */
    if (self->closed || (self->sched_waiting && !self->share_direct) || !self->call_soon || !self->io_class_var
        || PyThread_get_thread_ident() != self->thread)
        Py_RETURN_NONE;
    PyObject *st, *grant;
    int route = plain_route(self, args[9], args[10], args[11], &st, &grant);
    if (route <= 0) {
        if (route < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *io_args[11] = {args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8], st, grant};
    /* st is borrowed from ``states`` and grant from self: io() may run Python code (the grant's
       cost), so hold them for its duration */
    Py_INCREF(st);
    Py_INCREF(grant);
    PyObject *fut = IoPath_io(self, io_args, 11);
    Py_DECREF(st);
    Py_DECREF(grant);
    if (!fut || fut == Py_None || fut == Py_False) {
        if (fut == Py_False) {
            Py_DECREF(fut);
            Py_RETURN_NONE;
        }
        return fut;
    }
    if (after_stage(self) < 0) {  /* the request is staged and registered: the flush still runs */
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* submit_awaitable(...): submit(), but what comes back for a staged request is what awaits its
   future (IoFutureIter, a coroutine): File.dma_read / dma_write return it, so a task or an await
   takes it with no coroutine frame of their own (asyncio.wait, which refuses coroutines, takes
   read_future's future itself). */
static PyObject *IoPath_submit_awaitable(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *fut = IoPath_submit(self, args, nargs);
    if (!fut || !IoFuture_CheckExact(fut))
        return fut;
    PyObject *it = iofuture_awaiter(fut);
    Py_DECREF(fut);
    return it;
}

static void release_views(Py_buffer *views, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        PyBuffer_Release(&views[i]);
}

/* read_many(fd, requests, disk_mask, mem_mask, opname, owner, queue, states, io_class) ->
   future, or None: File.dma_read_many's per-request path. ``requests`` is a tuple of
   (pos, buf) pairs. Every request is checked (and its buffer exported) first; then all are
   registered, each in its own slot holding its own export until its own completion, with ONE
   future shared by the batch and a ReadBatch that counts them down (resolve() fills it in).
   None -- nothing staged, nothing registered -- when any request is not plain (a number that
   does not fit, a misaligned position, length or address, a read-only buffer), when the
   reactor's decision is not plain (see submit(); a throttling queue always is not), or when
   the batch does not fit in the ring's free room: Python then takes the whole batch. */
static PyObject *IoPath_read_many(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "read_many() takes 9 arguments");
        return NULL;
    }
    if (self->closed || self->sched_waiting || !self->call_soon || !self->io_class_var)
        Py_RETURN_NONE;
    uint64_t fd, dmask, mmask;
    PyObject *reqs = args[1];
    if (get_u64(args[0], (uint64_t)1 << 32, &fd) || get_u64(args[2], 0, &dmask) || get_u64(args[3], 0, &mmask)
        || !PyTuple_CheckExact(reqs))
        Py_RETURN_NONE;
    Py_ssize_t n = PyTuple_GET_SIZE(reqs);
    if (n == 0 || self->nrec + self->in_kernel + n > self->capacity)
        Py_RETURN_NONE;
    PyObject *st, *grant;
    int route = plain_route(self, args[6], args[7], args[8], &st, &grant);
    if (route <= 0 || grant != Py_None) {
        if (route < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    /* Everything that may run Python code (the exports, the class's counters, the future and
       the batch) comes before the slots and the records are taken; st is borrowed: hold it. */
    Py_INCREF(st);
    Py_buffer *views = PyMem_Calloc((size_t)n, sizeof(Py_buffer));
    uint64_t *poss = PyMem_Malloc((size_t)n * sizeof(uint64_t));
    PyObject *fut = NULL, *ret = Py_None;
    ReadBatchObject *batch = NULL;
    Py_ssize_t got = 0;
    uint64_t total = 0;
    if (!views || !poss) {
        PyErr_NoMemory();
        ret = NULL;
        goto out;
    }
    for (; got < n; got++) {
        PyObject *item = PyTuple_GET_ITEM(reqs, got);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2
            || get_u64(PyTuple_GET_ITEM(item, 0), (uint64_t)1 << 63, &poss[got]))
            goto out;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 1), &views[got], PyBUF_WRITABLE) < 0) {
            PyErr_Clear();
            goto out;
        }
        uint64_t addr = (uint64_t)(uintptr_t)views[got].buf, len = (uint64_t)views[got].len;
        if (((poss[got] | len) & dmask) || (addr & mmask) || len >= ((uint64_t)1 << 32)) {
            got++;  /* its export is released below */
            goto out;
        }
        total += len;
    }
    ret = NULL;
    if (st != Py_None && count_in_class(self, st, 0, (uint64_t)n, total) < 0)
        goto out;
    fut = new_future(self);
    if (!fut)
        goto out;
    batch = PyObject_GC_New(ReadBatchObject, &ReadBatch_Type);
    if (!batch)
        goto out;
    batch->error = NULL;
    batch->error_idx = n;
    batch->remaining = n;
    batch->results = PyList_New(n);  /* its items are set before the list is seen: see resolve() */
    PyObject_GC_Track(batch);
    if (!batch->results)
        goto out;
    for (Py_ssize_t i = 0; i < n; i++)
        PyList_SET_ITEM(batch->results, i, Py_NewRef(Py_None));
    /* room for n records and n slots: no Python code runs from here to the last record */
    while (self->caprec - self->nrec < n) {
        Py_ssize_t keep = self->nrec;
        self->nrec = self->caprec;  /* reserve_rec grows when full */
        int rc = reserve_rec(self);
        self->nrec = keep;
        if (rc < 0)
            goto out;
    }
    while ((Py_ssize_t)self->nslots - self->inflight < n)
        if (grow_slots(self) < 0)
            goto out;
    int alone = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t idx = self->free_head - 1;
        ie_request *r = &self->slots[idx];
        self->free_head = r->next_free;
        r->view = views[i];  /* the export moves into the slot: released at its completion */
        r->has_view = 1;
        r->fut = Py_NewRef(fut);
        r->pin = NULL;
        r->opname = Py_NewRef(args[4]);
        r->owner = Py_NewRef(args[5]);
        r->on_done = NULL;
        r->grant = NULL;
        r->cls = st != Py_None ? Py_NewRef(st) : NULL;
        r->batch = Py_NewRef((PyObject *)batch);
        r->batch_idx = i;
        r->pos = (int64_t)poss[i];
        r->nbytes = (int64_t)views[i].len;
        self->inflight++;
        if ((uint64_t)views[i].len >= self->alone_bytes)
            alone = 1;
        put_rec(self, (uint64_t)0 /* OP_READ */ | (fd << 8), (uint64_t)(uintptr_t)views[i].buf, (uint64_t)views[i].len,
                poss[i], (uint64_t)idx + 1);
    }
    got = 0;  /* the exports are the slots' now */
    if (alone || self->nrec >= self->flush_at)
        self->submit_now = 1;
    if (after_stage(self) < 0)
        goto out;  /* the batch is staged and registered: the flush still runs */
    ret = Py_NewRef(fut);
out:
    release_views(views, got);
    PyMem_Free(views);
    PyMem_Free(poss);
    Py_XDECREF((PyObject *)batch);
    Py_XDECREF(fut);
    Py_DECREF(st);
    if (ret == Py_None)
        Py_RETURN_NONE;
    return ret;
}

/* register(pos, nbytes, pin, opname, owner, on_done, grant) -> (future, user_data): an
   in-flight request whose records are staged separately (stage()) or prepared elsewhere. */
static PyObject *IoPath_register(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "register() takes 7 arguments");
        return NULL;
    }
    long long pos = PyLong_AsLongLong(args[0]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    long long nbytes = PyLong_AsLongLong(args[1]);
    if (nbytes == -1 && PyErr_Occurred())
        return NULL;
    PyObject *fut;
    uint64_t ud = take_slot(self, args[2], args[3], args[4], args[5], args[6], pos, nbytes, &fut);
    if (!ud)
        return NULL;
    return Py_BuildValue("(OK)", fut, (unsigned long long)ud);  /* the slot keeps its own reference */
}

/* stage(word0, addr, length, pos, user_data) -> True, or False when a number does not fit. */
static PyObject *IoPath_stage(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "stage() takes 5 arguments");
        return NULL;
    }
    uint64_t w0, addr, len, pos, ud;
    if (get_u64(args[0], 0, &w0) || get_u64(args[1], 0, &addr) || get_u64(args[2], (uint64_t)1 << 32, &len)
        || get_u64(args[3], (uint64_t)1 << 63, &pos) || get_u64(args[4], 0, &ud))
        Py_RETURN_FALSE;
    if (reserve_rec(self) < 0)
        return NULL;
    put_rec(self, w0, addr, len, pos, ud);
    Py_RETURN_TRUE;
}

/* -- a File's write books --------------------------------------------------------------- */

/* WriteBooks: the counters a File keeps per write (ioengine/file.py: SizeTracker, a subclass,
   keeps the rest in Python). A request whose on_done is a WriteBooks is counted here at its
   completion, without the request tuple and without a Python call (the reference semantics
   are write_done's, below; a test compares the two on one sequence). */
typedef struct {
    PyObject_HEAD
    long long writes;       /* writes in flight */
    long long pending_end;  /* the furthest end among them (0 when none) */
    long long known;        /* the size at open, grown by completed writes, set by truncate */
    long long logical;      /* sloppy_size: the furthest byte written; -1 otherwise */
    PyObject *idle;         /* a future resolved when ``writes`` drops to 0, or NULL/None */
    char straight;          /* writes may go to the kernel at once (no size barrier, no sloppy
                               growth): io() counts them in (writes, pending_end) as it stages them */
} WriteBooksObject;

static PyTypeObject WriteBooks_Type;
#define WriteBooks_Check(o) PyObject_TypeCheck((o), &WriteBooks_Type)

/* 1: ``on_done`` is a WriteBooks whose writes may go at once; 0: not a WriteBooks; -1: a
   WriteBooks that says wait (a size barrier, sloppy growth: Python takes the write). */
static int books_check(PyObject *on_done)
{
    if (on_done == Py_None || !WriteBooks_Check(on_done))
        return 0;
    return ((WriteBooksObject *)on_done)->straight ? 1 : -1;
}

/* A write ending at ``end`` was staged: one more in flight, the furthest end grown. */
static void books_staged(PyObject *books, long long end)
{
    WriteBooksObject *b = (WriteBooksObject *)books;
    b->writes++;
    if (end > b->pending_end)
        b->pending_end = end;
}

/* A write at ``pos`` completed with ``res`` (< 0: failed, or never issued). 0, or -1 with an
   exception set (then nothing changed, unless the idle future's own calls failed). */
static int books_done(WriteBooksObject *b, long long pos, long long res)
{
    if (res > 0) {
        long long end;
        if (__builtin_add_overflow(pos, res, &end)) {
            PyErr_SetString(PyExc_OverflowError, "write_done: position + result does not fit in 64 bits");
            return -1;
        }
        if (end > b->known) {
            b->known = end;
            if (b->logical >= 0)
                b->logical = end;
        }
    }
    if (--b->writes != 0)
        return 0;
    b->pending_end = 0;
    if (!b->idle || b->idle == Py_None)
        return 0;
    /* asyncio's way: set_result only when not done (it may be done or cancelled already). The
       future's callbacks go through its loop's call_soon: the awaiting task resumes later. */
    PyObject *w = Py_NewRef(b->idle);
    PyObject *d = PyObject_CallMethodNoArgs(w, str_done);
    int rc = d ? 0 : -1;
    if (d == Py_False) {
        PyObject *o = PyObject_CallMethodOneArg(w, str_set_result, Py_None);
        if (!o)
            rc = -1;
        Py_XDECREF(o);
    }
    Py_XDECREF(d);
    Py_DECREF(w);
    return rc;
}

static PyObject *books_call(WriteBooksObject *self, PyObject *req, PyObject *resobj)
{
    long long res = PyLong_AsLongLong(resobj);
    if (res == -1 && PyErr_Occurred())
        return NULL;
    PyObject *p = PySequence_GetItem(req, 4);  /* as Python's req[4]: read whatever the result */
    if (!p)
        return NULL;
    long long pos = 0;
    if (res > 0) {
        pos = PyLong_AsLongLong(p);
        if (pos == -1 && PyErr_Occurred()) {
            Py_DECREF(p);
            return NULL;
        }
    }
    Py_DECREF(p);
    if (books_done(self, pos, res) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *WriteBooks_write_done(WriteBooksObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write_done(req, res) takes 2 arguments");
        return NULL;
    }
    return books_call(self, args[0], args[1]);
}

static PyObject *WriteBooks_tp_call(WriteBooksObject *self, PyObject *args, PyObject *kwds)
{
    if ((kwds && PyDict_GET_SIZE(kwds)) || PyTuple_GET_SIZE(args) != 2) {
        PyErr_SetString(PyExc_TypeError, "WriteBooks(req, res) takes 2 positional arguments");
        return NULL;
    }
    return books_call(self, PyTuple_GET_ITEM(args, 0), PyTuple_GET_ITEM(args, 1));
}

static int WriteBooks_init(WriteBooksObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"known", "logical", NULL};
    long long known = 0, logical = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|LL", kwlist, &known, &logical))
        return -1;
    self->writes = 0;
    self->pending_end = 0;
    self->known = known;
    self->logical = logical;
    self->straight = 0;
    Py_CLEAR(self->idle);
    return 0;
}

static PyObject *WriteBooks_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    WriteBooksObject *self = (WriteBooksObject *)type->tp_alloc(type, 0);
    if (self)
        self->logical = -1;
    return (PyObject *)self;
}

static int WriteBooks_traverse(WriteBooksObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->idle);
    return 0;
}

static int WriteBooks_clear(WriteBooksObject *self)
{
    Py_CLEAR(self->idle);
    return 0;
}

static void WriteBooks_dealloc(WriteBooksObject *self)
{
    PyObject_GC_UnTrack(self);
    WriteBooks_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef WriteBooks_methods[] = {
    {"write_done", (PyCFunction)(void (*)(void))WriteBooks_write_done, METH_FASTCALL,
     "write_done(req, res): the completion of a write (req[4] its position), even if the writer was\n"
     "cancelled; res < 0: failed, or never issued. Grows known (and logical when >= 0) to the\n"
     "write's end, counts the write out, and when none is left in flight zeroes pending_end\n"
     "and resolves idle (unless it is done already)."},
    {NULL}};

static PyMemberDef WriteBooks_members[] = {
    {"writes", T_LONGLONG, offsetof(WriteBooksObject, writes), 0, "writes in flight"},
    {"pending_end", T_LONGLONG, offsetof(WriteBooksObject, pending_end), 0,
     "the furthest end among the writes in flight (0 when none)"},
    {"known", T_LONGLONG, offsetof(WriteBooksObject, known), 0,
     "the size at open, grown by completed writes, set by truncate"},
    {"logical", T_LONGLONG, offsetof(WriteBooksObject, logical), 0,
     "sloppy_size: the furthest byte written (-1 without sloppy_size)"},
    {"idle", T_OBJECT, offsetof(WriteBooksObject, idle), 0,
     "a future resolved when the last write in flight lands, or None"},
    {"straight", T_BOOL, offsetof(WriteBooksObject, straight), 0,
     "writes may go to the kernel at once (no size barrier, no sloppy growth): a write staged by\n"
     "IoPath.submit/io with these books as on_done is counted in (writes, pending_end) there;\n"
     "False: submit/io return None for such a write (the File's Python path waits first)"},
    {NULL}};

static PyTypeObject WriteBooks_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ioengine._iopath.WriteBooks",
    .tp_basicsize = sizeof(WriteBooksObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A File's per-write books (writes in flight, their furthest end, the known and logical\n"
              "sizes, the idle future), counted by C at each completion when passed as on_done.",
    .tp_new = WriteBooks_new,
    .tp_init = (initproc)WriteBooks_init,
    .tp_call = (ternaryfunc)WriteBooks_tp_call,
    .tp_dealloc = (destructor)WriteBooks_dealloc,
    .tp_traverse = (traverseproc)WriteBooks_traverse,
    .tp_clear = (inquiry)WriteBooks_clear,
    .tp_methods = WriteBooks_methods,
    .tp_members = WriteBooks_members,
};

/* -- completion ------------------------------------------------------------------------- */

static int flush_grant(IoPathObject *self, PyObject **grant, Py_ssize_t *count)
{
    int rc = 0;
    if (*grant) {
        if (*grant == self->grant && grant_store(self) < 0) {
            Py_CLEAR(*grant);
            *count = 0;
            return -1;
        }
        PyObject *r = PyObject_CallFunction(self->grant_reaped, "On", *grant, *count);
        if (!r)
            rc = -1;
        Py_XDECREF(r);
        Py_CLEAR(*grant);
    }
    *count = 0;
    return rc;
}

/* Resolve ``fut`` with ``value`` or (``value`` NULL) ``exc``, unless it is done (cancelled):
   an IoFuture's callbacks are held for deliver(), another future's go through its loop. */
static void settle_future(IoPathObject *self, PyObject *fut, PyObject *value, PyObject *exc, saved_error *first_err)
{
    if (IoFuture_CheckExact(fut)) {
        if (iofuture_finish(fut, value, value ? NULL : exc, &self->held) < 0)
            keep_error(first_err);
        return;
    }
    PyObject *d = PyObject_CallMethodNoArgs(fut, str_done);
    if (d == Py_False) {
        PyObject *o = value ? PyObject_CallMethodOneArg(fut, str_set_result, value)
                            : PyObject_CallMethodOneArg(fut, str_set_exception, exc);
        if (!o)
            keep_error(first_err);
        Py_XDECREF(o);
    } else if (!d) {
        keep_error(first_err);
    }
    Py_XDECREF(d);
}

/* One request of a read_many() batch completed with ``res``: its result goes to its place in
   the batch's list (a failure: the batch's error is made from it, unless a request earlier in
   the batch failed too), its slot (and its export) goes now, and the last request of the batch
   resolves the batch's future: to the list, or with that error. A batch whose future is done (cancelled) is counted down
   all the same, its results dropped: no exception is left for anyone to retrieve. */
static void resolve_batch(IoPathObject *self, uint32_t idx, long long res, PyObject *fut, saved_error *first_err)
{
    ie_request *r = &self->slots[idx];
    ReadBatchObject *b = (ReadBatchObject *)Py_NewRef(r->batch);
    Py_ssize_t i = r->batch_idx;
    int live = IoFuture_CheckExact(fut) ? !iofuture_done(fut) : 1;
    /* the error raised is that of the earliest failed request in the batch's order, whatever
       order the kernel completes them in (threads: any): the same as the general path */
    PyObject *req = (res < 0 && live && (!b->error || i < b->error_idx)) ? request_tuple(r) : NULL;
    clear_slot(self, idx);  /* the pin goes only now that the kernel is done with the buffer */
    if (res >= 0) {
        if (b->results) {
            PyObject *v = PyLong_FromLongLong(res);
            if (!v || PyList_SetItem(b->results, i, v) < 0)
                keep_error(first_err);
        }
    } else if (req) {
        PyObject *e = PyObject_CallFunction(self->error_factory, "OL", req, -res);
        if (!e) {  /* the error's text failed: the batch fails all the same */
            keep_error(first_err);
            e = PyObject_CallFunction(PyExc_OSError, "Ls", -res, "dma_read");
            if (!e)
                keep_error(first_err);
        }
        if (e) {
            Py_XSETREF(b->error, e);
            b->error_idx = i;
        }
    }
    Py_XDECREF(req);
    if (--b->remaining == 0) {
        if (b->error || b->results)
            settle_future(self, fut, b->error ? NULL : b->results, b->error, first_err);
        ReadBatch_clear(b);
    }
    Py_DECREF(b);
}

/* Resolve request ``idx`` with ``res``; a Python error from a callback is returned to the
   caller in *first_err (the first one only) so the rest of the batch is still delivered. */
static void resolve(IoPathObject *self, uint32_t idx, long long res, PyObject **grant, Py_ssize_t *gcount,
                    saved_error *first_err)
{
    ie_request *r = &self->slots[idx];
    if (r->grant) {
        if (*grant != r->grant) {
            if (flush_grant(self, grant, gcount) < 0)
                keep_error(first_err);
            *grant = Py_NewRef(r->grant);
        }
        (*gcount)++;
    }
    PyObject *fut = Py_NewRef(r->fut);
    if (r->batch) {
        resolve_batch(self, idx, res, fut, first_err);
        Py_DECREF(fut);
        return;
    }
    PyObject *req = NULL, *on_done = NULL;
    WriteBooksObject *books = NULL;  /* a write's books: counted here, no tuple, no call */
    long long pos = r->pos;
    if (r->on_done) {
        if (WriteBooks_Check(r->on_done))
            books = (WriteBooksObject *)Py_NewRef(r->on_done);
        else
            on_done = Py_NewRef(r->on_done);
    }
    if (on_done || res < 0)
        req = request_tuple(r);
    clear_slot(self, idx);  /* the pin goes only now that the kernel is done with the buffer */
    if (books) {  /* before the future: the awaiting task resumes with the books updated */
        if (books_done(books, pos, res) < 0)
            keep_error(first_err);
        Py_DECREF(books);
    } else if (on_done && req) {
        PyObject *o = PyObject_CallFunction(on_done, "OL", req, res);
        if (!o)
            keep_error(first_err);
        Py_XDECREF(o);
    }
    Py_XDECREF(on_done);
    if (IoFuture_CheckExact(fut)) {
        /* its callbacks are held, run by deliver() once the reactor's books are done */
        if (!iofuture_done(fut)) {
            PyObject *v = res >= 0 ? PyLong_FromLongLong(res)
                                   : (req ? PyObject_CallFunction(self->error_factory, "OL", req, -res) : NULL);
            if (!v || iofuture_finish(fut, res >= 0 ? v : NULL, res >= 0 ? NULL : v, &self->held) < 0)
                keep_error(first_err);
            Py_XDECREF(v);
        }
        Py_XDECREF(req);
        Py_DECREF(fut);
        return;
    }
    PyObject *d = PyObject_CallMethodNoArgs(fut, str_done);
    if (d == Py_False) {
        PyObject *o;
        if (res >= 0) {
            PyObject *v = PyLong_FromLongLong(res);
            o = v ? PyObject_CallMethodOneArg(fut, str_set_result, v) : NULL;
            Py_XDECREF(v);
        } else {
            PyObject *e = req ? PyObject_CallFunction(self->error_factory, "OL", req, -res) : NULL;
            o = e ? PyObject_CallMethodOneArg(fut, str_set_exception, e) : NULL;
            Py_XDECREF(e);
        }
        if (!o)
            keep_error(first_err);
        Py_XDECREF(o);
    } else if (!d) {
        keep_error(first_err);
    }
    Py_XDECREF(d);
    Py_XDECREF(req);
    Py_DECREF(fut);
}

static int slot_of(IoPathObject *self, uint64_t ud, uint32_t *idx)
{
    if (ud == 0 || ud > self->nslots || !self->slots[ud - 1].fut)
        return -1;
    *idx = (uint32_t)(ud - 1);
    return 0;
}

/* CLOCK_MONOTONIC in ns: time.monotonic_ns(). */
static inline long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ``n`` requests completed: the completion rate's books (see rate_n), over ~1 ms windows. */
static void note_rate(IoPathObject *self, Py_ssize_t n)
{
    long long now = mono_ns();
    self->rate_n += n;
    if (now - self->rate_t0 >= 1000000) {
        if (self->rate_n)
            self->gap_ns = (3.0 * self->gap_ns + (double)(now - self->rate_t0) / (double)self->rate_n) * 0.25;
        self->rate_t0 = now;
        self->rate_n = 0;
    }
}

/* complete(uds, results) -> list of (ud, result) of scheduler units, or None. Both are lists
   of ints (the backend's batch); every request among them is resolved. */
static PyObject *IoPath_complete(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0]) || !PyList_Check(args[1])
        || PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_TypeError, "complete() takes two lists of the same length");
        return NULL;
    }
    PyObject *uds = args[0], *results = args[1];
    Py_ssize_t n = PyList_GET_SIZE(uds);
    if (counts_publish(self) < 0)  /* before any callback can look at them */
        return NULL;
    note_rate(self, n);
    self->in_kernel -= n;
    PyObject *units = NULL, *grant = NULL;
    saved_error first_err = {NULL, NULL, NULL};
    Py_ssize_t gcount = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t ud = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(uds, i));
        long long res = PyLong_AsLongLong(PyList_GET_ITEM(results, i));
        if (PyErr_Occurred()) {
            keep_error(&first_err);
            continue;
        }
        if (ud & IE_UNIT_FLAG) {
            if (!units && !(units = PyList_New(0)))
                goto fail;
            PyObject *t = Py_BuildValue("(KL)", (unsigned long long)ud, res);
            if (!t || PyList_Append(units, t) < 0) {
                Py_XDECREF(t);
                goto fail;
            }
            Py_DECREF(t);
            continue;
        }
        uint32_t idx;
        if (slot_of(self, ud, &idx) < 0)
            continue;  /* not ours (cannot happen: every staged record is registered first) */
        resolve(self, idx, res, &grant, &gcount, &first_err);
    }
    if (flush_grant(self, &grant, &gcount) < 0)
        keep_error(&first_err);
    if (first_err.type) {
        Py_XDECREF(units);
        return raise_kept(&first_err);
    }
    if (!units)
        Py_RETURN_NONE;
    return units;
fail:
    Py_XDECREF(units);
    Py_XDECREF(grant);
    Py_XDECREF(first_err.type);
    Py_XDECREF(first_err.value);
    Py_XDECREF(first_err.tb);
    return NULL;
}

/* finish(ud, result): resolve one request (a queued one whose last part completed, or one
   whose record never reached the kernel). */
static PyObject *IoPath_finish(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "finish() takes 2 arguments");
        return NULL;
    }
    uint64_t ud = PyLong_AsUnsignedLongLong(args[0]);
    long long res = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    uint32_t idx;
    if (slot_of(self, ud, &idx) < 0) {
        PyErr_Format(PyExc_KeyError, "no request in flight with user data %llu", (unsigned long long)ud);
        return NULL;
    }
    PyObject *grant = NULL;
    saved_error first_err = {NULL, NULL, NULL};
    Py_ssize_t gcount = 0;
    resolve(self, idx, res, &grant, &gcount, &first_err);
    if (flush_grant(self, &grant, &gcount) < 0)
        keep_error(&first_err);
    if (first_err.type)
        return raise_kept(&first_err);
    Py_RETURN_NONE;
}

/* deliver(): run the callbacks (the tasks' wake-ups) of the IoFutures that complete() and
   finish() resolved, now if no task is running, else through call_soon. The reactor calls it
   once its books of the batch are done: a woken task may submit, complete or close at once. */
static PyObject *IoPath_deliver(IoPathObject *self, PyObject *unused)
{
    int was = self->delivering;
    self->delivering = 1;
    int rc = iofuture_deliver(&self->held);
    self->delivering = was;
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* discard(ud): forget a request that never reached the kernel (its queueing or preparation
   failed); its future is cancelled, so nothing reports an exception nobody retrieved. */
static PyObject *IoPath_discard(IoPathObject *self, PyObject *arg)
{
    uint64_t ud = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    uint32_t idx;
    if (slot_of(self, ud, &idx) < 0)
        Py_RETURN_NONE;
    PyObject *fut = Py_NewRef(self->slots[idx].fut);
    clear_slot(self, idx);
    PyObject *o = PyObject_CallMethod(fut, "cancel", NULL);
    Py_DECREF(fut);
    if (!o)
        return NULL;
    Py_DECREF(o);
    Py_RETURN_NONE;
}

/* -- the batch the backend takes -------------------------------------------------------- */

static int IoPath_getbuffer(IoPathObject *self, Py_buffer *view, int flags)
{
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "IoPath records are read-only");
        return -1;
    }
    Py_ssize_t n = self->view_n;
    int rc = PyBuffer_FillInfo(view, (PyObject *)self, self->recs ? (void *)self->recs : (void *)"",
                               n * (Py_ssize_t)sizeof(uint64_t), 1, flags); /* view_n counts words */
    if (rc < 0)
        return -1;
    if (flags & PyBUF_FORMAT)
        view->format = "Q";
    view->itemsize = sizeof(uint64_t);
    if (flags & PyBUF_ND) {
        view->ndim = 1;
        view->shape = &self->view_n;
        view->strides = (flags & PyBUF_STRIDES) ? &view->itemsize : NULL;
    }
    self->exports++;
    return 0;
}

static void IoPath_releasebuffer(IoPathObject *self, Py_buffer *view)
{
    self->exports--;
}

/* batch(n) -> memoryview of the first n staged records (n words x 5), for the backend. */
static PyObject *IoPath_batch(IoPathObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || n > self->nrec)
        n = self->nrec;
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "IoPath: a batch is already out");
        return NULL;
    }
    /* the shape is in words */
    self->view_n = n * REC_WORDS;
    self->submit_now = 0;
    return PyMemoryView_FromObject((PyObject *)self);
}

/* consume(n): the first n staged records went to the kernel. */
static PyObject *IoPath_consume(IoPathObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || n > self->nrec) {
        PyErr_Format(PyExc_ValueError, "consume(%zd) with %zd records staged", n, self->nrec);
        return NULL;
    }
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "IoPath: release the batch before consume()");
        return NULL;
    }
    if (counts_publish(self) < 0)
        return NULL;
    memmove(self->recs, self->recs + n * REC_WORDS, (size_t)(self->nrec - n) * REC_WORDS * sizeof(uint64_t));
    self->nrec -= n;
    self->in_kernel += n;
    Py_RETURN_NONE;
}

/* take_staged() -> list of the staged records' user data, dropping them (a batch the kernel
   refused as a whole: the caller completes them with the error). */
static PyObject *IoPath_take_staged(IoPathObject *self, PyObject *unused)
{
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "IoPath: release the batch first");
        return NULL;
    }
    PyObject *out = PyList_New(self->nrec);
    if (!out)
        return NULL;
    for (Py_ssize_t i = 0; i < self->nrec; i++) {
        PyObject *u = PyLong_FromUnsignedLongLong(self->recs[i * REC_WORDS + 4]);
        if (!u) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, u);
    }
    self->in_kernel += self->nrec;  /* complete() takes them off again */
    self->nrec = 0;
    return out;
}

static PyObject *IoPath_add_in_kernel(IoPathObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    self->in_kernel += n;
    Py_RETURN_NONE;
}

/* set_ring(ring, submit, efd, max, deferred, fail_staged, kick): submit mid-turn through the
   ring at address ``ring`` with the native ie_uring_submit_reap at address ``submit``, reaping
   at most ``max`` completions per call into ``deferred`` (a list); ``fail_staged(errno)`` when
   the kernel refuses the enter; ``kick()`` (or None) after a submission left I/O in the kernel.
   set_ring(0) goes back to submit_inline (a backend without a ring, or the ring is closing). */
static PyObject *IoPath_set_ring(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1) {
        unsigned long long a = PyLong_AsUnsignedLongLong(args[0]);
        if (a == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        if (a != 0) {
            PyErr_SetString(PyExc_TypeError, "set_ring(ring, submit, efd, max, deferred, fail_staged, kick), or set_ring(0)");
            return NULL;
        }
        self->ring = NULL;
        self->ring_submit = NULL;
        self->ring_poll = self->ring_reap_woken = NULL;
        Py_CLEAR(self->deferred);
        Py_CLEAR(self->fail_staged);
        Py_CLEAR(self->kick);
        Py_RETURN_NONE;
    }
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "set_ring(ring, submit, efd, max, deferred, fail_staged, kick), or set_ring(0)");
        return NULL;
    }
    unsigned long long ring = PyLong_AsUnsignedLongLong(args[0]);
    unsigned long long fn = ring == (unsigned long long)-1 ? 0 : PyLong_AsUnsignedLongLong(args[1]);
    long efd = PyLong_AsLong(args[2]);
    long max = PyLong_AsLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (!ring || !fn || efd < 0 || efd > INT32_MAX || max < 1 || max > (1 << 20) || !PyList_CheckExact(args[4])
        || !PyCallable_Check(args[5]) || (args[6] != Py_None && !PyCallable_Check(args[6]))) {
        PyErr_SetString(PyExc_ValueError, "set_ring: ring and submit addresses, efd >= 0, 1 <= max <= 2**20, "
                                          "a list, a callable, a callable or None");
        return NULL;
    }
    uint64_t *ud = PyMem_Realloc(self->ring_ud, (size_t)max * sizeof(uint64_t));
    if (!ud)
        return PyErr_NoMemory();
    self->ring_ud = ud;
    int32_t *res = PyMem_Realloc(self->ring_res, (size_t)max * sizeof(int32_t));
    if (!res)
        return PyErr_NoMemory();
    self->ring_res = res;
    self->ring = (void *)(uintptr_t)ring;
    self->ring_submit = (int (*)(void *, const uint64_t *, int, int *, uint64_t *, int32_t *, int, int))(uintptr_t)fn;
    self->ring_efd = (int)efd;
    self->ring_max = (int)max;
    Py_XSETREF(self->deferred, Py_NewRef(args[4]));
    Py_XSETREF(self->fail_staged, Py_NewRef(args[5]));
    Py_XSETREF(self->kick, args[6] == Py_None ? NULL : Py_NewRef(args[6]));
    Py_RETURN_NONE;
}

/* flush_ring() -> (uds, results), or None when Python must submit (see ring_flush): the
   reactor's per-turn submission through the ring set by set_ring. A refused enter raises
   OSError with nothing consumed. */
static PyObject *IoPath_flush_ring(IoPathObject *self, PyObject *unused)
{
    PyObject *uds, *res;
    int err = 0;
    int rc = ring_flush(self, &uds, &res, &err, 1);  /* the reactor dispatched first */
    if (rc == 0)
        Py_RETURN_NONE;
    if (rc == -1)
        return NULL;
    if (rc == -2) {
        PyObject *e = Py_BuildValue("(is)", err, "io_uring_enter failed");
        if (e) {
            PyErr_SetObject(PyExc_OSError, e);
            Py_DECREF(e);
        }
        return NULL;
    }
    if (!uds) {
        uds = PyList_New(0);
        res = uds ? PyList_New(0) : NULL;
        if (!res) {
            Py_XDECREF(uds);
            return NULL;
        }
    }
    PyObject *out = PyTuple_Pack(2, uds, res);
    Py_DECREF(uds);
    Py_DECREF(res);
    return out;
}

/* set_reap(poll, reap_woken): the addresses of the native ie_uring_poll and ie_uring_reap_woken
   for the ring set by set_ring (it must be set), so the reactor's reaps take one C call and no
   cffi; set_reap(0, 0) or set_ring(0) forgets them. */
static PyObject *IoPath_set_reap(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_reap(poll, reap_woken)");
        return NULL;
    }
    unsigned long long poll = PyLong_AsUnsignedLongLong(args[0]);
    unsigned long long woken = poll == (unsigned long long)-1 ? 0 : PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if ((poll == 0) != (woken == 0) || (poll && !self->ring)) {
        PyErr_SetString(PyExc_ValueError, "set_reap: both addresses or neither, and a ring set by set_ring");
        return NULL;
    }
    self->ring_poll = (int (*)(void *, int, uint64_t *, int32_t *, int))(uintptr_t)poll;
    self->ring_reap_woken = (int (*)(void *, int, uint64_t *, int32_t *, int))(uintptr_t)woken;
    Py_RETURN_NONE;
}

/* Reap the ring (set_reap) into ring_ud/ring_res: after the eventfd woke the loop (``woken``)
   or what it has now; the count, or -1 with OSError. */
static int reap_into(IoPathObject *self, int woken)
{
    int got = (woken ? self->ring_reap_woken : self->ring_poll)(self->ring, self->ring_efd, self->ring_ud,
                                                                 self->ring_res, self->ring_max);
    if (got < 0) {
        PyObject *e = Py_BuildValue("(is)", -got, "io_uring_enter(GETEVENTS) failed");
        if (e) {
            PyErr_SetObject(PyExc_OSError, e);
            Py_DECREF(e);
        }
        return -1;
    }
    return got;
}

static PyObject *ring_reap(IoPathObject *self, int woken)
{
    PyObject *uds, *res;
    int got = self->ring && self->ring_poll ? reap_into(self, woken) : 0;
    if (got < 0)
        return NULL;
    if (ring_lists(self, got, &uds, &res) < 0)
        return NULL;
    PyObject *out = PyTuple_Pack(2, uds, res);
    Py_DECREF(uds);
    Py_DECREF(res);
    return out;
}

/* poll_ring() -> (uds, results): what the ring has now (the idle poller's reap, as
   UringBackend.poll); reap_woken_ring(): the same after the eventfd woke the loop (as
   UringBackend.reap). Both ([], []) without set_reap. */
static PyObject *IoPath_poll_ring(IoPathObject *self, PyObject *unused)
{
    return ring_reap(self, 0);
}

static PyObject *IoPath_reap_woken_ring(IoPathObject *self, PyObject *unused)
{
    return ring_reap(self, 1);
}

/* -- the loop turn ------------------------------------------------------------------------ */

static int call_kept(PyObject *fn, PyObject *a, PyObject *b, saved_error *first_err)
{
    PyObject *r = a ? PyObject_CallFunctionObjArgs(fn, a, b, NULL) : PyObject_CallNoArgs(fn);
    if (!r) {
        keep_error(first_err);
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static void schedule_flush_kept(IoPathObject *self, saved_error *first_err)
{
    if (self->flush_scheduled)
        return;
    PyObject *h = PyObject_CallOneArg(self->call_soon, self->flush_cb);
    if (!h) {
        keep_error(first_err);
        return;
    }
    Py_DECREF(h);
    self->flush_scheduled = 1;
}

/* Whether a batch of ``n`` completions (their user data in ``uds``) can be completed by the
   turn itself: the reactor open, nothing exported, no units waiting in the disk queues (but
   with share_direct: the units' own completions are not in it, and the turn's submission
   goes to the reactor, which dispatches them), the reactor's waiter lists empty (set_turn),
   nothing held back in ``wq`` (the reactor's iosched.WakeupQueue, or None), and every
   completion a request of ours, all of one class
   (counted in it, or taken under the open grant): then *cls (borrowed; NULL for no class) and
   *shares (a new reference when there is a class and a queue, else NULL). Grants' completions
   are booked as the general path books them (resolve: grant_reaped). 1, 0, or -1 with an
   exception. */
static int plain_batch(IoPathObject *self, PyObject *wq, const uint64_t *uds, Py_ssize_t n, PyObject **cls,
                       PyObject **shares)
{
    *cls = NULL;
    *shares = NULL;
    if (self->closed || self->exports || (self->sched_waiting && !self->share_direct))
        return 0;
    if (self->turn_waiters)
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->turn_waiters); i++)
            if (PyList_GET_SIZE(PyTuple_GET_ITEM(self->turn_waiters, i)))
                return 0;
    PyObject *last_grant = NULL, *last_class = NULL;  /* (borrowed: the requests hold them) */
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t idx;
        if ((uds[i] & IE_UNIT_FLAG) || slot_of(self, uds[i], &idx) < 0)
            return 0;
        ie_request *r = &self->slots[idx];
        PyObject *c = r->cls;
        if (!c && r->grant) {  /* staged by Python (submit_rw): its class is its grant's */
            if (r->grant == self->grant)
                c = self->g_class;
            else if (r->grant == last_grant)
                c = last_class;
            else {  /* an earlier grant's (settled since): the request holds it, it holds its class */
                if (!(c = PyObject_GetAttr(r->grant, str_io_class)))
                    return -1;
                Py_DECREF(c);
                last_grant = r->grant;
                last_class = c;
            }
        }
        if (i > 0 && c != *cls)
            return 0;
        *cls = c;
    }
    if (wq == Py_None)
        return 1;
    PyObject *pending = PyObject_GetAttr(wq, str_pending);
    int busy = pending ? PyObject_IsTrue(pending) : -1;
    Py_XDECREF(pending);
    if (busy)
        return busy < 0 ? -1 : 0;
    if (n && *cls && !(*shares = PyObject_GetAttr(*cls, str_shares)))
        return -1;
    return 1;
}

/* Complete a plain batch (plain_batch said so; ``shares`` consumed): the books the reactor's
   general path keeps (the class charged its wake-ups in ``wq``, the completion rate, the
   requests out of the kernel), every request resolved; their tasks wait for a delivery. */
static void complete_batch(IoPathObject *self, PyObject *wq, const uint64_t *uds, const int32_t *res, Py_ssize_t n,
                           PyObject *cls, PyObject *shares, saved_error *first_err)
{
    if (shares) {  /* the wake-ups go at once: booked as the general path books them */
        PyObject *k = PyLong_FromSsize_t(n);
        PyObject *r = k ? PyObject_CallMethodObjArgs(wq, str_charge, cls, shares, k, NULL) : NULL;
        Py_XDECREF(k);
        Py_DECREF(shares);
        if (!r)
            keep_error(first_err);
        Py_XDECREF(r);
    }
    if (!n)
        return;
    if (counts_publish(self) < 0)
        keep_error(first_err);
    note_rate(self, n);
    self->in_kernel -= n;
    PyObject *grant = NULL;
    Py_ssize_t gcount = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t idx;
        if (slot_of(self, uds[i], &idx) == 0)  /* (plain_batch found each) */
            resolve(self, idx, res[i], &grant, &gcount, first_err);
    }
    if (flush_grant(self, &grant, &gcount) < 0)
        keep_error(first_err);
}

/* A batch's completions out of the ring's scratch arrays (and before them, ``ndef`` from the
   deferred lists), into ``b``: a completion callback run while they are resolved may submit
   mid-turn, whose reap reuses the scratch arrays. 0, or -1 with an exception. */
typedef struct {
    uint64_t ud_local[64];
    int32_t res_local[64];
    uint64_t *uds;
    int32_t *res;
    Py_ssize_t n;
} batch_copy;

static int copy_batch(IoPathObject *self, batch_copy *b, PyObject *deferred, Py_ssize_t ndef, int got)
{
    Py_ssize_t n = ndef + got;
    b->uds = b->ud_local;
    b->res = b->res_local;
    b->n = n;
    if (n > 64) {
        b->uds = PyMem_Malloc((size_t)n * (sizeof(uint64_t) + sizeof(int32_t)));
        if (!b->uds) {
            PyErr_NoMemory();
            return -1;
        }
        b->res = (int32_t *)(b->uds + n);
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t p = 0; ndef && p < PyList_GET_SIZE(deferred); p++) {
        PyObject *pair = PyList_GET_ITEM(deferred, p);
        PyObject *u = PyTuple_GET_ITEM(pair, 0), *r = PyTuple_GET_ITEM(pair, 1);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(u); i++, k++) {
            b->uds[k] = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(u, i));
            b->res[k] = (int32_t)PyLong_AsLong(PyList_GET_ITEM(r, i));
        }
    }
    if (PyErr_Occurred())
        return -1;
    if (got) {
        memcpy(b->uds + k, self->ring_ud, (size_t)got * sizeof(uint64_t));
        memcpy(b->res + k, self->ring_res, (size_t)got * sizeof(int32_t));
    }
    return 0;
}

static void free_batch(batch_copy *b)
{
    if (b->uds != b->ud_local)
        PyMem_Free(b->uds);
    b->uds = b->ud_local;
}

/* How many completions the mid-turn submissions collected (``deferred``, the reactor's list of
   (uds, results) pairs of lists of ints); -1 when it holds anything else (the general path
   takes it). */
static Py_ssize_t deferred_count(PyObject *deferred)
{
    Py_ssize_t n = 0;
    for (Py_ssize_t p = 0; p < PyList_GET_SIZE(deferred); p++) {
        PyObject *pair = PyList_GET_ITEM(deferred, p);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyList_Check(PyTuple_GET_ITEM(pair, 0))
            || !PyList_Check(PyTuple_GET_ITEM(pair, 1))
            || PyList_GET_SIZE(PyTuple_GET_ITEM(pair, 0)) != PyList_GET_SIZE(PyTuple_GET_ITEM(pair, 1)))
            return -1;
        n += PyList_GET_SIZE(PyTuple_GET_ITEM(pair, 0));
    }
    return n;
}

/* IoPath_turn after the reap (``deferred``: the reactor's list, held for the turn). */
static PyObject *turn_rest(IoPathObject *self, long reap, PyObject *wq, int here, int got, PyObject *deferred)
{
    Py_ssize_t ndef = deferred_count(deferred);
    int plain = ndef >= 0;
    batch_copy b;
    PyObject *cls = NULL, *shares = NULL;
    if (plain) {
        if (copy_batch(self, &b, deferred, ndef, got) < 0)
            return NULL;  /* (the batch is lost only when memory is) */
        plain = plain_batch(self, wq, b.uds, b.n, &cls, &shares);
        if (plain < 0) {
            free_batch(&b);
            return NULL;  /* (what was reaped is lost only if the wakeups queue is broken) */
        }
        if (!plain)
            free_batch(&b);
    }
    if (!plain) {
        PyObject *uds, *res;
        if (ring_lists(self, got, &uds, &res) < 0)
            return NULL;
        PyObject *out = PyTuple_Pack(2, uds, res);
        Py_DECREF(uds);
        Py_DECREF(res);
        return out;
    }
    if (ndef && PyList_SetSlice(deferred, 0, PyList_GET_SIZE(deferred), NULL) < 0) {
        Py_XDECREF(shares);
        free_batch(&b);
        return NULL;
    }
    saved_error first_err = {NULL, NULL, NULL};
    int scheduled = self->flush_scheduled;
    if (here) {
        self->flush_scheduled = 1;  /* what the woken tasks stage goes out below, not in another flush */
        self->flushes++;
    }
    Py_ssize_t completed = b.n;
    complete_batch(self, wq, b.uds, b.res, b.n, cls, shares, &first_err);
    free_batch(&b);
    if (!here) {  /* the turn's flush delivers them, at its place in the loop's ready queue */
        self->flush_scheduled = scheduled;
        if (completed)
            schedule_flush_kept(self, &first_err);
        if (first_err.type)
            return raise_kept(&first_err);
        return PyLong_FromLong(got);
    }
    int was = self->delivering;
    self->delivering = 1;
    if (iofuture_deliver(&self->held) < 0)
        keep_error(&first_err);
    self->delivering = was;
    self->flush_scheduled = 0;
    if (!self->closed) {
        int found = 0, err = 0;
        /* a woken task may have queued units: then Python dispatches and submits (and settles);
           a grant on a disk shared with other shards is settled by Python every turn */
        int rc = self->sched_waiting || (self->grant && self->g_shared) ? 0 : ring_flush_raw(self, &found, &err, 0);
        if (rc == 0)
            call_kept(self->turn_submit, NULL, NULL, &first_err);
        else if (rc == -1)
            keep_error(&first_err);
        else if (rc == -2) {
            PyObject *e = PyLong_FromLong(err);
            if (e)
                call_kept(self->fail_staged, e, NULL, &first_err);
            else
                keep_error(&first_err);
            Py_XDECREF(e);
        } else {
            if (found) {
                /* what the submission found completed: its tasks resume in the next turn's flush */
                int p = copy_batch(self, &b, NULL, 0, found);
                if (p == 0) {
                    p = plain_batch(self, wq, b.uds, b.n, &cls, &shares);
                    if (p > 0) {
                        complete_batch(self, wq, b.uds, b.res, b.n, cls, shares, &first_err);
                        schedule_flush_kept(self, &first_err);
                    }
                    free_batch(&b);
                }
                if (p < 0) {  /* the general path takes them (ring_ud / ring_res are untouched) */
                    keep_error(&first_err);
                    p = 0;
                }
                if (p == 0) {
                    PyObject *uds, *res;
                    if (ring_lists(self, found, &uds, &res) < 0)
                        keep_error(&first_err);
                    else {
                        call_kept(self->turn_complete, uds, res, &first_err);
                        Py_DECREF(uds);
                        Py_DECREF(res);
                    }
                }
            } else if (self->nrec)
                schedule_flush_kept(self, &first_err);  /* the kernel is full: again next turn */
            if (self->kick && self->in_kernel)
                call_kept(self->kick, NULL, NULL, &first_err);
            /* the grants' books, as Reactor._submit_now settles them after its submission: when
               the reactor goes quiet, else at most every settle_ns while I/O flows */
            if (self->turn_settle && (self->grant || (self->turn_reaped && PyList_GET_SIZE(self->turn_reaped)))
                && (!self->in_kernel || mono_ns() - self->settled_ns >= self->settle_ns))
                call_kept(self->turn_settle, NULL, NULL, &first_err);
        }
        /* a woken task's inline submission collected these (the ring may be gone meanwhile: a
           woken task can change the backend, and the general submission above took over) */
        if (PyList_GET_SIZE(deferred))
            schedule_flush_kept(self, &first_err);
    }
    if (first_err.type)
        return raise_kept(&first_err);
    return PyLong_FromLong(got);
}

/* turn(reap, wakeups) -> int, or (uds, results) for the reactor's general path.

   The reactor's loop turn in one call while it is plain: reap (reap 1: what the ring has now,
   as poll_ring; 2: after the eventfd woke the loop, as reap_woken_ring; 0: nothing, the turn's
   flush), complete (with what the mid-turn submissions collected), deliver (the woken tasks run
   and stage), submit; or (reap 3: asyncio's selector) reap as 1 and complete, and make sure the
   flush that delivers runs this turn (as 1 and 2 do when a flush is queued already). Plain: a
   batch plain_batch accepts (with ``wakeups``, the reactor's iosched.WakeupQueue or None).
   Then the books are the general path's (the class charged its wake-ups in ``wakeups``, the
   completion rate, the flush counted); what the submission finds completed is completed here
   too when plain (delivered by the next turn's flush), else handed to the reactor's complete
   (set_turn); a submission Python must make goes to its submit_now; the count reaped is
   returned. Otherwise nothing is done but the reap, whose completions are returned as two
   lists for the general path (the deferred ones stay for it). */
static PyObject *IoPath_turn(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "turn(reap, wakeups)");
        return NULL;
    }
    long reap = PyLong_AsLong(args[0]);
    if (reap == -1 && PyErr_Occurred())
        return NULL;
    PyObject *wq = args[1];
    if (reap < 0 || reap > 3 || !self->ring || !self->turn_complete || (reap && !self->ring_poll)) {
        PyErr_SetString(PyExc_ValueError, "turn: reap 0, 1, 2 or 3, with set_ring, set_turn (and set_reap to reap)");
        return NULL;
    }
    /* deliver and submit in this call, or leave them to the flush (asyncio's selector; or a
       flush is queued already, which delivers these too) */
    int here = reap == 0 || (reap != 3 && !self->flush_scheduled);
    int got = reap ? reap_into(self, reap == 2) : 0;
    if (got < 0)
        return NULL;
    /* A poll that found nothing has nothing to complete or deliver (held wake-ups and deferred
       completions always have a flush queued): no submission either, so a spin round stays a
       look at memory, and the caller may take "0" as "nothing was scheduled" (asyncio's
       selector goes on waiting then; a callback queued under it would wait with it). */
    if (reap == 1 && got == 0)
        return PyLong_FromLong(0);
    /* The reactor's deferred list, held for the turn: a woken task may take the ring away
       (set_ring(0), e.g. a fault injector put in), which drops IoPath's reference, while the
       general submission it then makes still collects into the list. */
    PyObject *deferred = Py_NewRef(self->deferred);
    PyObject *out = turn_rest(self, reap, wq, here, got, deferred);
    Py_DECREF(deferred);
    return out;
}

/* complete_plain(uds, results, wakeups) -> bool: the completions the reactor's own submission
   found (Reactor._submit_now), completed here when the batch is plain (plain_batch, with
   ``wakeups`` the reactor's iosched.WakeupQueue or None), as the turn completes what its
   submission finds: their tasks resume in the next flush (made sure of). False, with nothing
   done, when it is not: the general path (Reactor._complete) takes it. */
static PyObject *IoPath_complete_plain(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_Check(args[0]) || !PyList_Check(args[1])
        || PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_TypeError, "complete_plain(uds, results, wakeups): two lists of one length");
        return NULL;
    }
    PyObject *wq = args[2];
    Py_ssize_t n = PyList_GET_SIZE(args[0]);
    PyObject *pair = PyTuple_Pack(2, args[0], args[1]);
    PyObject *one = pair ? PyList_New(1) : NULL;
    if (!one) {
        Py_XDECREF(pair);
        return NULL;
    }
    PyList_SET_ITEM(one, 0, pair);
    batch_copy b;
    int rc = copy_batch(self, &b, one, n, 0);
    Py_DECREF(one);
    if (rc < 0)
        return NULL;
    PyObject *cls = NULL, *shares = NULL;
    int p = plain_batch(self, wq, b.uds, b.n, &cls, &shares);
    if (p <= 0) {
        free_batch(&b);
        if (p < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    saved_error first_err = {NULL, NULL, NULL};
    complete_batch(self, wq, b.uds, b.res, b.n, cls, shares, &first_err);
    free_batch(&b);
    schedule_flush_kept(self, &first_err);
    if (first_err.type)
        return raise_kept(&first_err);
    Py_RETURN_TRUE;
}

/* set_turn(complete, submit_now, waiters, settle, reaped): the reactor's general completion
   and submission, which turn() hands what is not plain; a tuple of its lists that must be
   empty for a turn to be plain (waiters woken by a completion); the settle of the grants'
   books after a submission and the list of grants whose completions are not booked yet (the
   turn calls settle when they are due: see turn_rest); set_turn(None, None, (), None, None)
   turns turn() off. */
static PyObject *IoPath_set_turn(IoPathObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || (args[0] == Py_None) != (args[1] == Py_None)
        || (args[0] != Py_None && (!PyCallable_Check(args[0]) || !PyCallable_Check(args[1])))
        || !PyTuple_Check(args[2]) || (args[3] != Py_None && !PyCallable_Check(args[3]))
        || (args[4] != Py_None && !PyList_Check(args[4]))) {
        PyErr_SetString(PyExc_TypeError, "set_turn(complete, submit_now, waiters, settle, reaped): two callables, "
                                         "or None, None; a tuple of lists; a callable or None; a list or None");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[2]); i++)
        if (!PyList_Check(PyTuple_GET_ITEM(args[2], i))) {
            PyErr_SetString(PyExc_TypeError, "set_turn: waiters must be a tuple of lists");
            return NULL;
        }
    Py_XSETREF(self->turn_complete, args[0] == Py_None ? NULL : Py_NewRef(args[0]));
    Py_XSETREF(self->turn_submit, args[1] == Py_None ? NULL : Py_NewRef(args[1]));
    Py_XSETREF(self->turn_waiters, Py_NewRef(args[2]));
    Py_XSETREF(self->turn_settle, args[3] == Py_None ? NULL : Py_NewRef(args[3]));
    Py_XSETREF(self->turn_reaped, args[4] == Py_None ? NULL : Py_NewRef(args[4]));
    Py_RETURN_NONE;
}

/* -- queries and shutdown --------------------------------------------------------------- */

static PyObject *IoPath_owns(IoPathObject *self, PyObject *owner)
{
    for (uint32_t i = 0; i < self->nslots; i++)
        if (self->slots[i].fut && self->slots[i].owner == owner)
            Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* request(ud) -> the request tuple (future, pin, opname, owner, pos, nbytes, on_done, grant). */
static PyObject *IoPath_request(IoPathObject *self, PyObject *arg)
{
    uint64_t ud = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    uint32_t idx;
    if (slot_of(self, ud, &idx) < 0) {
        PyErr_Format(PyExc_KeyError, "no request in flight with user data %llu", (unsigned long long)ud);
        return NULL;
    }
    return request_tuple(&self->slots[idx]);
}

/* drop_all(): forget every request (the kernel is done with all of them: shutdown). */
/* classes(uds) -> the io class state every request of the batch runs in when they share one
   (None when none has a class), else a list of it per user data. A request's class is the
   state it was counted in (io()), else its grant's; None for a scheduler unit or a request
   without a class. The reactor shares wake-ups between classes by it (iosched.WakeupQueue);
   a batch of one class, the common case, costs no list. */
static PyObject *slot_class(IoPathObject *self, PyObject *item, int *err)
{
    uint64_t ud = PyLong_AsUnsignedLongLong(item);
    if (ud == (uint64_t)-1 && PyErr_Occurred()) {
        *err = 1;
        return NULL;
    }
    uint32_t idx;
    if ((ud & IE_UNIT_FLAG) || slot_of(self, ud, &idx) < 0)
        return Py_NewRef(Py_None);
    ie_request *r = &self->slots[idx];
    if (r->cls)
        return Py_NewRef(r->cls);
    if (r->grant) {
        PyObject *c = PyObject_GetAttr(r->grant, str_io_class);
        if (!c)
            *err = 1;
        return c;
    }
    return Py_NewRef(Py_None);
}

static PyObject *IoPath_classes(IoPathObject *self, PyObject *uds)
{
    if (!PyList_Check(uds)) {
        PyErr_SetString(PyExc_TypeError, "classes() takes a list of user data");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(uds);
    int err = 0;
    if (n == 0)
        return Py_NewRef(Py_None);
    PyObject *first = slot_class(self, PyList_GET_ITEM(uds, 0), &err);
    if (err)
        return NULL;
    Py_ssize_t i = 1;
    PyObject *c = NULL;
    for (; i < n; i++) {
        c = slot_class(self, PyList_GET_ITEM(uds, i), &err);
        if (err) {
            Py_DECREF(first);
            return NULL;
        }
        if (c != first)
            break;
        Py_DECREF(c);
        c = NULL;
    }
    if (i == n)
        return first;
    PyObject *out = PyList_New(n);
    if (!out) {
        Py_DECREF(first);
        Py_DECREF(c);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < i; k++)
        PyList_SET_ITEM(out, k, Py_NewRef(first));
    Py_DECREF(first);
    PyList_SET_ITEM(out, i, c);  /* steals */
    for (Py_ssize_t k = i + 1; k < n; k++) {
        PyObject *o = slot_class(self, PyList_GET_ITEM(uds, k), &err);
        if (err) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, o);
    }
    return out;
}

static PyObject *IoPath_drop_all(IoPathObject *self, PyObject *unused)
{
    for (uint32_t i = 0; i < self->nslots; i++)
        if (self->slots[i].fut)
            clear_slot(self, i);
    self->nrec = 0;
    self->in_kernel = 0;
    Py_RETURN_NONE;
}

static PyObject *IoPath_get_inflight(IoPathObject *self, void *c) { return PyLong_FromSsize_t(self->inflight); }
static PyObject *IoPath_get_staged(IoPathObject *self, void *c) { return PyLong_FromSsize_t(self->nrec); }
static PyObject *IoPath_get_in_kernel(IoPathObject *self, void *c) { return PyLong_FromSsize_t(self->in_kernel); }
static PyObject *IoPath_get_flag(IoPathObject *self, void *c)
{
    return PyBool_FromLong(*(int *)((char *)self + (Py_ssize_t)c));
}
static int IoPath_set_flag(IoPathObject *self, PyObject *v, void *c)
{
    int t = v ? PyObject_IsTrue(v) : 0;
    if (t < 0)
        return -1;
    *(int *)((char *)self + (Py_ssize_t)c) = t;
    return 0;
}
static PyObject *IoPath_get_sched_waiting(IoPathObject *self, void *c) { return PyLong_FromSsize_t(self->sched_waiting); }
static int IoPath_set_sched_waiting(IoPathObject *self, PyObject *v, void *c)
{
    Py_ssize_t n = v ? PyLong_AsSsize_t(v) : 0;
    if (n == -1 && PyErr_Occurred())
        return -1;
    self->sched_waiting = n;
    return 0;
}
static PyObject *IoPath_get_grant(IoPathObject *self, void *c)
{
    if (grant_store(self) < 0)  /* the caller may read or change its books */
        return NULL;
    return Py_NewRef(self->grant ? self->grant : Py_None);
}
static int IoPath_set_grant(IoPathObject *self, PyObject *v, void *c)
{
    if (grant_store(self) < 0)
        return -1;
    PyObject *cls = NULL;
    int shared = 0;
    if (v && v != Py_None) {
        if (!(cls = PyObject_GetAttr(v, str_io_class)))
            return -1;
        PyObject *q = PyObject_GetAttr(v, str_queue);
        PyObject *sh = q ? PyObject_GetAttr(q, str_shared) : NULL;
        Py_XDECREF(q);
        shared = sh ? PyObject_IsTrue(sh) : -1;
        Py_XDECREF(sh);
        if (shared < 0) {
            Py_DECREF(cls);
            return -1;
        }
    }
    Py_XSETREF(self->grant, (v && v != Py_None) ? Py_NewRef(v) : NULL);
    Py_XSETREF(self->g_class, cls);
    self->g_shared = shared;
    return 0;
}
static PyObject *IoPath_get_submit_now(IoPathObject *self, void *c) { return PyBool_FromLong(self->submit_now); }
static PyObject *IoPath_get_outstanding(IoPathObject *self, void *c)
{
    return PyLong_FromSsize_t(self->nrec + self->in_kernel);
}

/* -- type ------------------------------------------------------------------------------- */

static int IoPath_init(IoPathObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"future_factory", "error_factory", "grant_reaped", "capacity", "flush_at", "alone_bytes",
                             "call_soon", "flush", "submit_inline", "io_class_var", NULL};
    PyObject *ff, *ef, *gr, *cs = NULL, *fl = NULL, *si = NULL, *cv = NULL;
    Py_ssize_t capacity = 256, flush_at = 8;
    unsigned long long alone = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|nnKOOOO", kwlist, &ff, &ef, &gr, &capacity, &flush_at, &alone,
                                     &cs, &fl, &si, &cv))
        return -1;
    if (cv && !PyContextVar_CheckExact(cv)) {
        PyErr_SetString(PyExc_TypeError, "io_class_var must be a contextvars.ContextVar");
        return -1;
    }
    Py_XSETREF(self->call_soon, Py_XNewRef(cs));
    Py_XSETREF(self->flush_cb, Py_XNewRef(fl));
    Py_XSETREF(self->submit_inline, Py_XNewRef(si));
    Py_XSETREF(self->io_class_var, Py_XNewRef(cv));
    self->capacity = capacity;
    self->flush_at = flush_at;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    self->rate_t0 = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    self->thread = PyThread_get_thread_ident();
    self->alone_bytes = alone;
    Py_XSETREF(self->future_factory, Py_NewRef(ff));
    /* functools.partial(Future, loop=loop): call Future with the keywords straight away */
    Py_CLEAR(self->future_type);
    Py_CLEAR(self->future_kwargs);
    PyObject *func = PyObject_GetAttrString(ff, "func");
    PyObject *pargs = func ? PyObject_GetAttrString(ff, "args") : NULL;
    PyObject *pkw = pargs ? PyObject_GetAttrString(ff, "keywords") : NULL;
    Py_CLEAR(self->iofuture_loop);
    if (pkw && PyTuple_Check(pargs) && PyTuple_GET_SIZE(pargs) == 0 && PyDict_Check(pkw)) {
        self->future_type = Py_NewRef(func);
        self->future_kwargs = Py_NewRef(pkw);
        /* partial(IoFuture, loop=loop): made in C without a call */
        PyObject *loop = PyDict_GetItemString(pkw, "loop");
        if (func == (PyObject *)&IoFuture_Type && PyDict_GET_SIZE(pkw) == 1 && loop && loop != Py_None)
            self->iofuture_loop = Py_NewRef(loop);
    }
    PyErr_Clear();
    Py_XDECREF(func);
    Py_XDECREF(pargs);
    Py_XDECREF(pkw);
    Py_XSETREF(self->error_factory, Py_NewRef(ef));
    Py_XSETREF(self->grant_reaped, Py_NewRef(gr));
    return 0;
}

static int IoPath_traverse(IoPathObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->future_factory);
    Py_VISIT(self->error_factory);
    Py_VISIT(self->grant_reaped);
    Py_VISIT(self->future_type);
    Py_VISIT(self->future_kwargs);
    Py_VISIT(self->iofuture_loop);
    Py_VISIT(self->cnt_class);
    int held = iofuture_traverse_held(&self->held, visit, arg);
    if (held)
        return held;
    Py_VISIT(self->grant);
    Py_VISIT(self->g_class);
    Py_VISIT(self->call_soon);
    Py_VISIT(self->flush_cb);
    Py_VISIT(self->submit_inline);
    Py_VISIT(self->io_class_var);
    Py_VISIT(self->deferred);
    Py_VISIT(self->fail_staged);
    Py_VISIT(self->kick);
    Py_VISIT(self->turn_complete);
    Py_VISIT(self->turn_submit);
    Py_VISIT(self->turn_waiters);
    Py_VISIT(self->turn_settle);
    Py_VISIT(self->turn_reaped);
    for (uint32_t i = 0; i < self->nslots; i++) {
        ie_request *r = &self->slots[i];
        if (r->fut) {
            Py_VISIT(r->fut);
            Py_VISIT(r->pin);
            Py_VISIT(r->opname);
            Py_VISIT(r->owner);
            Py_VISIT(r->on_done);
            Py_VISIT(r->grant);
            Py_VISIT(r->batch);
            if (r->has_view)
                Py_VISIT(r->view.obj);
        }
    }
    return 0;
}

static int IoPath_clear(IoPathObject *self)
{
    /* Only reached when the reactor itself is garbage: its ring is gone by then. */
    for (uint32_t i = 0; i < self->nslots; i++)
        if (self->slots[i].fut)
            clear_slot(self, i);
    Py_CLEAR(self->future_factory);
    Py_CLEAR(self->error_factory);
    Py_CLEAR(self->grant_reaped);
    Py_CLEAR(self->future_type);
    Py_CLEAR(self->future_kwargs);
    Py_CLEAR(self->iofuture_loop);
    iofuture_clear_held(&self->held);
    self->g_loaded = 0;
    Py_CLEAR(self->grant);
    Py_CLEAR(self->g_class);
    Py_CLEAR(self->cnt_class);
    Py_CLEAR(self->call_soon);
    Py_CLEAR(self->flush_cb);
    Py_CLEAR(self->submit_inline);
    Py_CLEAR(self->io_class_var);
    self->ring = NULL;
    self->ring_poll = self->ring_reap_woken = NULL;
    Py_CLEAR(self->deferred);
    Py_CLEAR(self->fail_staged);
    Py_CLEAR(self->kick);
    Py_CLEAR(self->turn_complete);
    Py_CLEAR(self->turn_submit);
    Py_CLEAR(self->turn_waiters);
    Py_CLEAR(self->turn_settle);
    Py_CLEAR(self->turn_reaped);
    return 0;
}

static void IoPath_dealloc(IoPathObject *self)
{
    PyObject_GC_UnTrack(self);
    IoPath_clear(self);
    PyMem_Free(self->slots);
    PyMem_Free(self->recs);
    PyMem_Free(self->ring_ud);
    PyMem_Free(self->ring_res);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* sync_counters() -- add the request counts kept in C to their class's lists now. */
static PyObject *IoPath_sync_counters(IoPathObject *self, PyObject *unused)
{
    if (counts_publish(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef IoPath_methods[] = {
    {"sync_counters", (PyCFunction)IoPath_sync_counters, METH_NOARGS,
     "add the requests counted in C to their io class's ops/bytes lists (done at every submission)"},
    {"rw", (PyCFunction)(void (*)(void))IoPath_rw, METH_FASTCALL,
     "rw(op, fd, addr, length, pos, pin, opname, owner, on_done, grant) -> future, or None if a number does not fit"},
    {"submit", (PyCFunction)(void (*)(void))IoPath_submit, METH_FASTCALL,
     "submit(op, fd, buf, pos, disk_mask, mem_mask, opname, owner, on_done, queue, states, io_class) -> future or None"},
    {"submit_awaitable", (PyCFunction)(void (*)(void))IoPath_submit_awaitable, METH_FASTCALL,
     "submit_awaitable(same as submit) -> what awaits the future (a coroutine), or None"},
    {"io", (PyCFunction)(void (*)(void))IoPath_io, METH_FASTCALL,
     "io(op, fd, buf, pos, disk_mask, mem_mask, opname, owner, on_done, cls, grant) -> future, None or False"},
    {"read_many", (PyCFunction)(void (*)(void))IoPath_read_many, METH_FASTCALL,
     "read_many(fd, requests, disk_mask, mem_mask, opname, owner, queue, states, io_class) -> one future of\n"
     "the list of results, or None when the batch is not plain (nothing staged then)"},
    {"register", (PyCFunction)(void (*)(void))IoPath_register, METH_FASTCALL,
     "register(pos, nbytes, pin, opname, owner, on_done, grant) -> (future, user_data)"},
    {"stage", (PyCFunction)(void (*)(void))IoPath_stage, METH_FASTCALL,
     "stage(word0, addr, length, pos, user_data) -> True, or False if a number does not fit"},
    {"complete", (PyCFunction)(void (*)(void))IoPath_complete, METH_FASTCALL,
     "complete(uds, results) -> the scheduler units among them as [(ud, result)], or None"},
    {"finish", (PyCFunction)(void (*)(void))IoPath_finish, METH_FASTCALL, "finish(ud, result): resolve one request"},
    {"deliver", (PyCFunction)IoPath_deliver, METH_NOARGS,
     "run the held wake-ups of the IoFutures complete() and finish() resolved"},
    {"discard", (PyCFunction)IoPath_discard, METH_O, "discard(ud): forget a request that never reached the kernel"},
    {"batch", (PyCFunction)IoPath_batch, METH_O, "batch(n) -> memoryview of the first n staged records"},
    {"consume", (PyCFunction)IoPath_consume, METH_O, "consume(n): the first n staged records went to the kernel"},
    {"take_staged", (PyCFunction)IoPath_take_staged, METH_NOARGS, "drop the staged records, return their user data"},
    {"add_in_kernel", (PyCFunction)IoPath_add_in_kernel, METH_O, "count requests prepared in the ring directly"},
    {"owns", (PyCFunction)IoPath_owns, METH_O, "owns(owner) -> True if a request of owner is in flight"},
    {"request", (PyCFunction)IoPath_request, METH_O, "request(ud) -> the request tuple"},
    {"classes", (PyCFunction)IoPath_classes, METH_O,
     "classes(uds) -> the io class state the batch's requests share (or None), else a list of each one's"},
    {"drop_all", (PyCFunction)IoPath_drop_all, METH_NOARGS, "forget every request (shutdown)"},
    {"set_ring", (PyCFunction)(void (*)(void))IoPath_set_ring, METH_FASTCALL,
     "set_ring(ring, submit, efd, max, deferred, fail_staged, kick): submit through the ring in C; set_ring(0): stop"},
    {"set_reap", (PyCFunction)(void (*)(void))IoPath_set_reap, METH_FASTCALL,
     "set_reap(poll, reap_woken): the ring's reaps in C (addresses of ie_uring_poll, ie_uring_reap_woken)"},
    {"poll_ring", (PyCFunction)IoPath_poll_ring, METH_NOARGS, "poll_ring() -> (uds, results): the ring's completions now"},
    {"reap_woken_ring", (PyCFunction)IoPath_reap_woken_ring, METH_NOARGS,
     "reap_woken_ring() -> (uds, results): the ring's completions after the eventfd woke the loop"},
    {"complete_plain", (PyCFunction)(void (*)(void))IoPath_complete_plain, METH_FASTCALL,
     "complete_plain(uds, results, wakeups) -> bool: a plain batch the reactor's submission found, completed\n"
     "here (its tasks resume in the next flush); False, nothing done, when it is not plain"},
    {"turn", (PyCFunction)(void (*)(void))IoPath_turn, METH_FASTCALL,
     "turn(reap, wakeups) -> completions handled, or (uds, results) for the general path: reap, complete, deliver, submit"},
    {"set_turn", (PyCFunction)(void (*)(void))IoPath_set_turn, METH_FASTCALL,
     "set_turn(complete, submit_now, waiters, settle, reaped): where turn() hands what it does not do itself,\n"
     "the lists it must find empty, the grants' settle and the list of grants with unbooked completions;\n"
     "set_turn(None, None, (), None, None): off"},
    {"flush_ring", (PyCFunction)IoPath_flush_ring, METH_NOARGS,
     "flush_ring() -> (uds, results) of a submission through the ring, or None if Python must submit"},
    {NULL}};

static PyGetSetDef IoPath_getset[] = {
    {"inflight", (getter)IoPath_get_inflight, NULL, "requests registered and not yet completed", NULL},
    {"staged", (getter)IoPath_get_staged, NULL, "records staged, not yet handed to the kernel", NULL},
    {"in_kernel", (getter)IoPath_get_in_kernel, NULL, "records handed to the kernel, not yet completed", NULL},
    {"outstanding", (getter)IoPath_get_outstanding, NULL, "staged + in_kernel", NULL},
    {"submit_now", (getter)IoPath_get_submit_now, NULL, "a request staged since the last batch asks for a submission now", NULL},
    {"closed", (getter)IoPath_get_flag, (setter)IoPath_set_flag, "the reactor is closed: submit() takes nothing",
     (void *)offsetof(IoPathObject, closed)},
    {"flush_scheduled", (getter)IoPath_get_flag, (setter)IoPath_set_flag, "a flush callback is scheduled",
     (void *)offsetof(IoPathObject, flush_scheduled)},
    {"sched_waiting", (getter)IoPath_get_sched_waiting, (setter)IoPath_set_sched_waiting,
     "units waiting in the disk queues", NULL},
    {"grant", (getter)IoPath_get_grant, (setter)IoPath_set_grant, "the open direct grant, or None", NULL},
    {"delivering", (getter)IoPath_get_flag, NULL,
     "deliver() is running the woken tasks: a request issued now follows a completion (a class's fed)",
     (void *)offsetof(IoPathObject, delivering)},
    {"share_direct", (getter)IoPath_get_flag, (setter)IoPath_set_flag,
     "while units wait, a class with its grant open and nothing queued still goes straight (share_in_disk)",
     (void *)offsetof(IoPathObject, share_direct)},
    {NULL}};

static PyMemberDef IoPath_members[] = {
    {"gap_ns", T_DOUBLE, offsetof(IoPathObject, gap_ns), 0,
     "expected time between completions, ns (an EWMA over ~1 ms windows of complete() and turn())"},
    {"flushes", T_PYSSIZET, offsetof(IoPathObject, flushes), 0, "loop turns' flushes so far"},
    {"settled_ns", T_LONGLONG, offsetof(IoPathObject, settled_ns), 0,
     "when the reactor last settled its grants' books (time.monotonic_ns())"},
    {"settle_ns", T_LONGLONG, offsetof(IoPathObject, settle_ns), 0,
     "how long the turn lets the grants' books go unsettled while I/O flows (ns)"},
    {NULL}};

static PyBufferProcs IoPath_as_buffer = {(getbufferproc)IoPath_getbuffer, (releasebufferproc)IoPath_releasebuffer};

static PyTypeObject IoPath_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ioengine._iopath.IoPath",
    .tp_basicsize = sizeof(IoPathObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The per-request path of one reactor: staging records and the in-flight table.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)IoPath_init,
    .tp_dealloc = (destructor)IoPath_dealloc,
    .tp_traverse = (traverseproc)IoPath_traverse,
    .tp_clear = (inquiry)IoPath_clear,
    .tp_methods = IoPath_methods,
    .tp_getset = IoPath_getset,
    .tp_members = IoPath_members,
    .tp_as_buffer = &IoPath_as_buffer,
};

static PyMethodDef module_methods[] = {
    {"grant_take", (PyCFunction)(void (*)(void))mod_grant_take, METH_FASTCALL,
     "grant_take(grant, direction, length) -> bool: DirectGrant.take, done by C"},
    {NULL}};

static struct PyModuleDef iopath_module = {PyModuleDef_HEAD_INIT, "ioengine._iopath",
                                           "The reactor's per-request path in C.", -1, module_methods};

int smpmsg_module_init(PyObject *m);  /* native/smpmsg.c */
int filemethods_module_init(PyObject *m);  /* native/filemethods.c */

PyMODINIT_FUNC PyInit__iopath(void)
{
    str_pending = PyUnicode_InternFromString("pending");
    str_charge = PyUnicode_InternFromString("charge");
    str_shares = PyUnicode_InternFromString("shares");
    if (!str_pending || !str_charge || !str_shares)
        return NULL;
    str_set_result = PyUnicode_InternFromString("set_result");
    str_set_exception = PyUnicode_InternFromString("set_exception");
    str_done = PyUnicode_InternFromString("done");
    str_last_length = PyUnicode_InternFromString("last_length");
    str_last_direction = PyUnicode_InternFromString("last_direction");
    str_last_cost = PyUnicode_InternFromString("last_cost");
    str_budget = PyUnicode_InternFromString("budget");
    str_n = PyUnicode_InternFromString("n");
    str_cost_of = PyUnicode_InternFromString("cost_of");
    str_io_class = PyUnicode_InternFromString("io_class");
    str_ops = PyUnicode_InternFromString("ops");
    str_bytes = PyUnicode_InternFromString("bytes");
    str_fed = PyUnicode_InternFromString("fed");
    int_one = PyLong_FromLong(1);
    str_limited = PyUnicode_InternFromString("limited");
    str_throttling = PyUnicode_InternFromString("throttling");
    str_nr_queued = PyUnicode_InternFromString("nr_queued");
    str_queue = PyUnicode_InternFromString("queue");
    str_shared = PyUnicode_InternFromString("shared");
    if (!str_set_result || !str_set_exception || !str_done || PyType_Ready(&IoPath_Type) < 0
        || PyType_Ready(&WriteBooks_Type) < 0 || PyType_Ready(&ReadBatch_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&iopath_module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "IoPath", (PyObject *)&IoPath_Type) < 0
        || PyModule_AddObjectRef(m, "WriteBooks", (PyObject *)&WriteBooks_Type) < 0 || iofuture_module_init(m) < 0
        || smpmsg_module_init(m) < 0 || filemethods_module_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *uf = PyLong_FromUnsignedLongLong(IE_UNIT_FLAG);
    if (!uf || PyModule_AddObject(m, "UNIT_FLAG", uf) < 0) {
        Py_XDECREF(uf);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
