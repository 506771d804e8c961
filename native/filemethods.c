/*
 * File.dma_read and File.dma_write as C methods (ioengine._iopath.file_methods).
 *
 * A 4 KiB request's own Python in File was one frame: read eight of the File's slots, call
 * Reactor.submit_request with twelve arguments, return what it gave. `scripts/icount.sh` counts
 * that frame at about an eighth of a read's instructions. These methods do the same from C: the
 * slots are read at the offsets their member descriptors give (looked up once, when the class is
 * bound), and submit_request (whatever callable the File holds: tests may wrap the reactor's) is
 * called with the same arguments. Keywords and a closed file go to the Python method, called as
 * it was: it stays the reference. A request that cannot go at once gets what the Python method
 * returns for it (its coroutine for that case), without trying the C path a second time.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <sys/uio.h>

#include "iofuture.h"

enum { S_CLOSED, S_FD, S_READ_MASK, S_WRITE_MASK, S_MEM_MASK, S_QUEUE, S_QSTATES, S_SIZE, S_SUBMIT, N_SLOTS };
static const char *const slot_names[N_SLOTS] = {"_closed", "_fd", "_read_mask", "_write_mask", "_mem_mask",
                                                "_queue", "_qstates", "_size", "_submit_request"};

typedef struct {
    PyTypeObject *cls;           /* the File class these offsets are of */
    Py_ssize_t off[N_SLOTS];
    PyObject *fallback[2];       /* the Python methods: read, write */
    PyObject *slow[2];           /* their coroutines for what cannot go at once: _dma_read, _dma_write */
    PyObject *zero;
    PyObject *op[2], *opname[2]; /* OP_READ / OP_WRITE, "dma_read" / "dma_write" */
} file_binding;

static file_binding binding;

static inline PyObject *slot(PyObject *self, int i) { return *(PyObject **)((char *)self + binding.off[i]); }

/* The Python method with the call's own arguments. */
static PyObject *fall_back(int w, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, n = nargs + nkw;
    PyObject *small[8], **stack = small;
    if (n + 1 > 8) {
        stack = PyMem_Malloc((size_t)(n + 1) * sizeof(PyObject *));
        if (!stack)
            return PyErr_NoMemory();
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < n; i++)
        stack[i + 1] = args[i];
    PyObject *r = PyObject_Vectorcall(binding.fallback[w], stack, (size_t)nargs + 1, kwnames);
    if (stack != small)
        PyMem_Free(stack);
    return r;
}

/* -- a buffered file's request from the page cache, at the call --------------------------
 *
 * ioengine/pagecache.py's CachedSubmit, for dma_read and dma_write without its Python frames:
 * the same tests (the reactor's budget for the turn, a DmaBuffer, a plain position, the file not
 * backing off; for writes, a file whose writes may be made here and whose size books are
 * straight), the same preadv2 / pwritev2 (RWF_NOWAIT, or a blocking write where the file asks
 * for them and the filesystem refuses RWF_NOWAIT), the same books, and a miss handed to the
 * Python object's _missed. A served request returns the awaiter of a done IoFuture, as the
 * ring's path returns a pending one's. The buffer is pinned by an export across the call (the
 * GIL is dropped around it). CachedSubmit's Python methods stay the reference (and try_read is
 * File.read_future's path). */

enum { CS_CACHE, CS_SKIP, CS_MISS_RUN, CS_NATIVE, CS_SUBMIT, CS_WRITE_FLAGS, CS_BLOCKING, CS_BOOKS, N_CS };
static const char *const cs_names[N_CS] = {"_cache", "_skip", "_miss_run", "_native", "_submit", "_write_flags",
                                           "_blocking", "_books"};
enum { PC_ENABLED, PC_REQUESTS, PC_BYTES, PC_READS, PC_WRITES, PC_REFILL_DUE, PC_LOOP, N_PC };
static const char *const pc_names[N_PC] = {"enabled", "requests_left", "bytes_left", "reads", "writes",
                                           "_refill_due", "_loop"};

static struct {
    PyTypeObject *cs_cls, *pc_cls, *buf_cls;
    Py_ssize_t cs_off[N_CS], pc_off[N_PC];
    PyObject *missed, *refill, *call_soon, *straight, *known, *one; /* names; the int 1 */
    long long pos_max;
} cache_binding;

static inline PyObject **slot_at(PyObject *o, Py_ssize_t off) { return (PyObject **)((char *)o + off); }

/* Set an object slot to a new reference (``v`` NULL: an exception is set, -1). */
static inline int set_slot(PyObject *o, Py_ssize_t off, PyObject *v)
{
    if (!v)
        return -1;
    Py_XSETREF(*slot_at(o, off), v);
    return 0;
}

/* ``*slot += delta`` for an int slot. */
static int add_to_slot(PyObject *o, Py_ssize_t off, long long delta)
{
    PyObject *cur = *slot_at(o, off);
    if (!cur) {
        PyErr_SetString(PyExc_AttributeError, "page cache: a counter is not set");
        return -1;
    }
    long long v = PyLong_AsLongLong(cur);
    if (v == -1 && PyErr_Occurred())
        return -1;
    return set_slot(o, off, PyLong_FromLongLong(v + delta));
}

/* An int slot's value, or ``dflt`` when it is not an exact int. */
static inline long long int_slot(PyObject *o, Py_ssize_t off, long long dflt)
{
    PyObject *v = *slot_at(o, off);
    if (!v || !PyLong_CheckExact(v))
        return dflt;
    long long r = PyLong_AsLongLong(v);
    if (r == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return dflt;
    }
    return r;
}

static ssize_t rw_now(int w, int fd, void *addr, Py_ssize_t n, long long pos, int flags)
{
    struct iovec iov = {addr, (size_t)n};
    ssize_t res;
    Py_BEGIN_ALLOW_THREADS
    res = w ? pwritev2(fd, &iov, 1, (off_t)pos, flags) : preadv2(fd, &iov, 1, (off_t)pos, flags);
    if (res < 0)
        res = -errno;
    Py_END_ALLOW_THREADS
    return res;
}

/* A write's size books after it (as a completed write's): the known size grows to its end. */
static int grow_known(PyObject *books, long long end)
{
    PyObject *k = PyObject_GetAttr(books, cache_binding.known);
    if (!k)
        return -1;
    long long known = PyLong_AsLongLong(k);
    Py_DECREF(k);
    if (known == -1 && PyErr_Occurred())
        return -1;
    if (end <= known)
        return 0;
    PyObject *e = PyLong_FromLongLong(end);
    int rc = e ? PyObject_SetAttr(books, cache_binding.known, e) : -1;
    Py_XDECREF(e);
    return rc;
}

/* 1: served, *out the awaitable; 0: not tried or a miss (the caller goes on to the ring);
   -1: an exception. ``w``: 0 read, 1 write. */
static int cached_rw(int w, PyObject *cs, PyObject *fd_obj, PyObject *buf, PyObject *pos_obj, PyObject **out)
{
    const Py_ssize_t *co = cache_binding.cs_off, *po = cache_binding.pc_off;
    PyObject *cache = *slot_at(cs, co[CS_CACHE]), *skip = *slot_at(cs, co[CS_SKIP]);
    if (!cache || !Py_IS_TYPE(cache, cache_binding.pc_cls) || !skip || !PyList_CheckExact(skip)
        || PyList_GET_SIZE(skip) != 2 || *slot_at(cache, po[PC_ENABLED]) != Py_True
        || !PyObject_TypeCheck(buf, cache_binding.buf_cls) || !PyLong_CheckExact(pos_obj)
        || !PyLong_CheckExact(fd_obj))
        return 0;
    long long flags = RWF_NOWAIT;
    PyObject *books = NULL;
    if (w) { /* CachedSubmit.__call__'s tests of a write */
        flags = int_slot(cs, co[CS_WRITE_FLAGS], -1);
        books = *slot_at(cs, co[CS_BOOKS]);
        if (flags < 0 || !books)
            return 0;
        PyObject *st = PyObject_GetAttr(books, cache_binding.straight);
        if (!st)
            return -1;
        int straight = PyObject_IsTrue(st);
        Py_DECREF(st);
        if (straight <= 0)
            return straight;
    }
    int overflow;
    long long pos = PyLong_AsLongLongAndOverflow(pos_obj, &overflow);
    if (overflow || pos < 0 || pos >= cache_binding.pos_max || int_slot(cache, po[PC_REQUESTS], 0) <= 0
        || int_slot(cache, po[PC_BYTES], 0) <= 0)
        return PyErr_Occurred() ? -1 : 0;
    long long skipped = PyLong_AsLongLong(PyList_GET_ITEM(skip, w));
    if (skipped == -1 && PyErr_Occurred())
        return -1;
    if (skipped) { /* backing off after misses: this one takes the ring */
        PyObject *v = PyLong_FromLongLong(skipped - 1);
        return v ? (PyList_SetItem(skip, w, v), 0) : -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, w ? PyBUF_SIMPLE : PyBUF_WRITABLE) < 0) { /* released: the ring says so */
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t n = view.len;
    if (!n) {
        PyBuffer_Release(&view);
        return 0;
    }
    int fd = (int)PyLong_AsLong(fd_obj);
    ssize_t res = rw_now(w, fd, view.buf, n, pos, (int)flags);
    if (w && res == -EOPNOTSUPP && flags) {
        /* the filesystem cannot take a buffered write without blocking (ext4): made here as a
           synchronous write if the file asks, else its writes take the ring from now on */
        int blocking = *slot_at(cs, co[CS_BLOCKING]) == Py_True;
        if (set_slot(cs, co[CS_WRITE_FLAGS], PyLong_FromLong(blocking ? 0 : -1)) < 0) {
            PyBuffer_Release(&view);
            return -1;
        }
        if (!blocking) {
            PyBuffer_Release(&view);
            return 0;
        }
        res = rw_now(w, fd, view.buf, n, pos, 0);
    }
    PyBuffer_Release(&view);
    if (res != n) { /* EAGAIN, a short read or an error: counted, backed off, the ring decides */
        PyObject *code = PyLong_FromSsize_t(res);
        PyObject *r = code ? PyObject_CallMethodObjArgs(cs, cache_binding.missed, cache,
                                                        w ? cache_binding.one : binding.zero, code, NULL)
                           : NULL;
        Py_XDECREF(code);
        if (!r)
            return -1;
        Py_DECREF(r);
        return 0;
    }
    PyObject *miss_run = *slot_at(cs, co[CS_MISS_RUN]);
    if (miss_run && PyList_CheckExact(miss_run) && PyList_GET_SIZE(miss_run) == 2) {
        Py_INCREF(binding.zero);
        PyList_SetItem(miss_run, w, binding.zero);
    }
    if ((w && grow_known(books, pos + n) < 0) || add_to_slot(cache, po[w ? PC_WRITES : PC_READS], 1) < 0
        || add_to_slot(cache, po[PC_REQUESTS], -1) < 0 || add_to_slot(cache, po[PC_BYTES], -(long long)n) < 0)
        return -1;
    PyObject *loop = *slot_at(cache, po[PC_LOOP]);
    if (*slot_at(cache, po[PC_REFILL_DUE]) != Py_True) { /* PageCache.take: the budget is per turn */
        if (set_slot(cache, po[PC_REFILL_DUE], Py_NewRef(Py_True)) < 0)
            return -1;
        PyObject *refill = PyObject_GetAttr(cache, cache_binding.refill);
        PyObject *h = refill ? PyObject_CallMethodOneArg(loop, cache_binding.call_soon, refill) : NULL;
        Py_XDECREF(refill);
        if (!h)
            return -1;
        Py_DECREF(h);
    }
    PyObject *fut = iofuture_new(loop), *got = fut ? PyLong_FromSsize_t(n) : NULL;
    if (!got || iofuture_finish(fut, got, NULL, NULL) < 0) {
        Py_XDECREF(got);
        Py_XDECREF(fut);
        return -1;
    }
    Py_DECREF(got);
    *out = iofuture_awaiter(fut);
    Py_DECREF(fut);
    return *out ? 1 : -1;
}

/* dma_read(pos, buf, io_class=None) / dma_write(...) without keywords: the request staged by
   submit_request when it may go at once, else the Python method. */
static PyObject *request(int w, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames || nargs < 2 || nargs > 3 || !PyObject_TypeCheck(self, binding.cls))
        return fall_back(w, self, args, nargs, kwnames);
    PyObject *closed = slot(self, S_CLOSED), *submit = slot(self, S_SUBMIT);
    PyObject *v[N_SLOTS];
    for (int i = 0; i < N_SLOTS; i++)
        if (!(v[i] = slot(self, i)))  /* not set yet: the Python method says what is wrong */
            return fall_back(w, self, args, nargs, kwnames);
    if (closed != Py_False || submit == Py_None)
        return fall_back(w, self, args, nargs, kwnames);
    if (cache_binding.cs_cls && Py_IS_TYPE(submit, cache_binding.cs_cls)
        && *slot_at(submit, cache_binding.cs_off[CS_NATIVE]) == Py_True) {
        PyObject *served = NULL;
        Py_INCREF(submit);
        int got = cached_rw(w, submit, v[S_FD], args[1], args[0], &served);
        /* not served: the ring, as CachedSubmit would send it (not CachedSubmit itself, which
           would count this request's try, or its backing off, a second time) */
        PyObject *ring = got ? NULL : *slot_at(submit, cache_binding.cs_off[CS_SUBMIT]);
        Py_DECREF(submit);
        if (got)
            return got > 0 ? served : NULL;
        if (!ring)
            return fall_back(w, self, args, nargs, kwnames);
        submit = ring;
    }
    PyObject *call[12] = {binding.op[w], v[S_FD], args[1], args[0], v[w ? S_WRITE_MASK : S_READ_MASK], v[S_MEM_MASK],
                          binding.opname[w], self, w ? v[S_SIZE] : Py_None, v[S_QUEUE], v[S_QSTATES],
                          nargs > 2 ? args[2] : Py_None};
    /* the File's own references hold these for the call, but a callable it runs may rebind a
       slot (close from a wrapper): hold what is passed */
    for (int i = 0; i < 12; i++)
        Py_INCREF(call[i]);
    Py_INCREF(submit);
    PyObject *r = PyObject_Vectorcall(submit, call, 12, NULL);
    Py_DECREF(submit);
    for (int i = 0; i < 12; i++)
        Py_DECREF(call[i]);
    if (r != Py_None)
        return r;
    Py_DECREF(r);
    /* not plain: the Python method's own coroutine for that case, without its second try */
    PyObject *slow_args[5] = {self, args[0], args[1], nargs > 2 ? args[2] : Py_None, binding.zero};
    return PyObject_Vectorcall(binding.slow[w], slow_args, 5, NULL);
}

static PyObject *file_dma_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return request(0, self, args, nargs, kwnames);
}

static PyObject *file_dma_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return request(1, self, args, nargs, kwnames);
}

/* Their docs are the Python methods' (set when bound), after a text signature for inspect. */
static PyMethodDef read_def = {"dma_read", (PyCFunction)(void (*)(void))file_dma_read, METH_FASTCALL | METH_KEYWORDS,
                               NULL};
static PyMethodDef write_def = {"dma_write", (PyCFunction)(void (*)(void))file_dma_write,
                                METH_FASTCALL | METH_KEYWORDS, NULL};

/* "name($self, ...)\n--\n\n" + the Python method's cleaned doc + where the C lives: kept for the
   life of the process (the descriptor points at it). NULL with an exception. */
static const char *doc_of(const char *name, PyObject *method, const char *python_name)
{
    PyObject *inspect = PyImport_ImportModule("inspect");
    PyObject *doc = inspect ? PyObject_CallMethod(inspect, "getdoc", "O", method) : NULL;
    Py_XDECREF(inspect);
    if (!doc)
        return NULL;
    PyObject *text = doc == Py_None ? PyUnicode_FromString("") : Py_NewRef(doc);
    Py_DECREF(doc);
    if (!text)
        return NULL;
    PyObject *full = PyUnicode_FromFormat("%s($self, pos, buf, io_class=None, *, ioprio=0)\n--\n\n%S\n\n"
                                          "(In C: native/filemethods.c. The Python method it stands for, and "
                                          "calls for keywords or a closed file, is File.%s.)",
                                          name, text, python_name);
    Py_DECREF(text);
    if (!full)
        return NULL;
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(full, &n);
    char *kept = u ? PyMem_RawMalloc((size_t)n + 1) : NULL;
    if (kept)
        memcpy(kept, u, (size_t)n + 1);
    else if (u)
        PyErr_NoMemory();
    Py_DECREF(full);
    return kept;
}

/* file_methods(cls, read, write, read_slow, write_slow, op_read, op_write) -> (dma_read, dma_write):
   method descriptors of ``cls`` (once per process) standing for the Python methods ``read`` and
   ``write``; ``read_slow(self, pos, buf, io_class, ioprio)`` / ``write_slow`` are what those
   return for a request that cannot go at once. */
static PyObject *mod_file_methods(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyType_Check(args[0]) || !PyCallable_Check(args[1]) || !PyCallable_Check(args[2])
        || !PyCallable_Check(args[3]) || !PyCallable_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "file_methods(cls, read, write, read_slow, write_slow, op_read, op_write)");
        return NULL;
    }
    if (binding.cls) {
        PyErr_SetString(PyExc_RuntimeError, "file_methods: File's methods are bound already");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    file_binding b = {0};
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *d = PyDict_GetItemString(cls->tp_dict, slot_names[i]); /* borrowed */
        if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "file_methods: %s.%s is not an object slot", cls->tp_name, slot_names[i]);
            return NULL;
        }
        b.off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    if (!(read_def.ml_doc = doc_of("dma_read", args[1], "_py_dma_read"))
        || !(write_def.ml_doc = doc_of("dma_write", args[2], "_py_dma_write")))
        return NULL;
    PyObject *rd = PyDescr_NewMethod(cls, &read_def);
    PyObject *wd = rd ? PyDescr_NewMethod(cls, &write_def) : NULL;
    PyObject *names[2] = {PyUnicode_InternFromString("dma_read"), PyUnicode_InternFromString("dma_write")};
    if (!wd || !names[0] || !names[1]) {
        Py_XDECREF(rd);
        Py_XDECREF(wd);
        Py_XDECREF(names[0]);
        Py_XDECREF(names[1]);
        return NULL;
    }
    b.cls = (PyTypeObject *)Py_NewRef(cls);
    b.fallback[0] = Py_NewRef(args[1]);
    b.fallback[1] = Py_NewRef(args[2]);
    b.slow[0] = Py_NewRef(args[3]);
    b.slow[1] = Py_NewRef(args[4]);
    b.op[0] = Py_NewRef(args[5]);
    b.op[1] = Py_NewRef(args[6]);
    b.zero = PyLong_FromLong(0);
    b.opname[0] = names[0];
    b.opname[1] = names[1];
    binding = b;
    PyObject *r = PyTuple_Pack(2, rd, wd);
    Py_DECREF(rd);
    Py_DECREF(wd);
    return r;
}

/* page_cache_requests(CachedSubmit, PageCache, DmaBuffer, pos_max): dma_read and dma_write on a
   buffered File whose submit_request is a CachedSubmit (ioengine.pagecache) try the page cache in C. */
static PyObject *mod_page_cache_requests(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])
        || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "page_cache_requests(CachedSubmit, PageCache, DmaBuffer, pos_max)");
        return NULL;
    }
    if (cache_binding.cs_cls) {
        PyErr_SetString(PyExc_RuntimeError, "page_cache_requests: bound already");
        return NULL;
    }
    struct { PyTypeObject *cls; const char *const *names; int n; Py_ssize_t *off; } sets[2] = {
        {(PyTypeObject *)args[0], cs_names, N_CS, cache_binding.cs_off},
        {(PyTypeObject *)args[1], pc_names, N_PC, cache_binding.pc_off}};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < sets[k].n; i++) {
            PyObject *d = PyDict_GetItemString(sets[k].cls->tp_dict, sets[k].names[i]); /* borrowed */
            if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type)
                || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
                PyErr_Format(PyExc_TypeError, "page_cache_requests: %s.%s is not an object slot", sets[k].cls->tp_name,
                             sets[k].names[i]);
                return NULL;
            }
            sets[k].off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        }
    long long pos_max = PyLong_AsLongLong(args[3]);
    if (pos_max == -1 && PyErr_Occurred())
        return NULL;
    PyObject *names[5] = {PyUnicode_InternFromString("_missed"), PyUnicode_InternFromString("_refill"),
                          PyUnicode_InternFromString("call_soon"), PyUnicode_InternFromString("straight"),
                          PyUnicode_InternFromString("known")};
    PyObject *one = PyLong_FromLong(1);
    if (!names[0] || !names[1] || !names[2] || !names[3] || !names[4] || !one) {
        for (int i = 0; i < 5; i++)
            Py_XDECREF(names[i]);
        Py_XDECREF(one);
        return NULL;
    }
    cache_binding.missed = names[0];
    cache_binding.refill = names[1];
    cache_binding.call_soon = names[2];
    cache_binding.straight = names[3];
    cache_binding.known = names[4];
    cache_binding.one = one;
    cache_binding.pos_max = pos_max;
    cache_binding.pc_cls = (PyTypeObject *)Py_NewRef(args[1]);
    cache_binding.buf_cls = (PyTypeObject *)Py_NewRef(args[2]);
    cache_binding.cs_cls = (PyTypeObject *)Py_NewRef(args[0]); /* last: request() tests it */
    Py_RETURN_NONE;
}

static PyMethodDef filemethods_functions[] = {
    {"page_cache_requests", (PyCFunction)(void (*)(void))mod_page_cache_requests, METH_FASTCALL,
     "page_cache_requests(CachedSubmit, PageCache, DmaBuffer, pos_max): buffered dma_read/dma_write try the page cache in C"},
    {"file_methods", (PyCFunction)(void (*)(void))mod_file_methods, METH_FASTCALL,
     "file_methods(cls, read, write, read_slow, write_slow, op_read, op_write) -> (dma_read, dma_write):\n"
     "File's per-request methods in C, standing for the Python methods read and write"},
    {NULL}};

int filemethods_module_init(PyObject *m) { return PyModule_AddFunctions(m, filemethods_functions); }
