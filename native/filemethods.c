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

/* -- a buffered file's read from the page cache, at the call ------------------------------
 *
 * ioengine/pagecache.py's CachedSubmit.try_read, for dma_read without its Python frames: the
 * same tests (the reactor's budget for the turn, a DmaBuffer, a plain position, the file not
 * backing off), the same preadv2 with RWF_NOWAIT, the same books, and a miss handed to the
 * Python object's _missed. A served read returns the awaiter of a done IoFuture, as the ring's
 * path returns a pending one's. The buffer is pinned by an export across the call (the GIL is
 * dropped around it). try_read stays the reference, and the path for File.read_future. */

enum { CS_CACHE, CS_SKIP, CS_MISS_RUN, CS_NATIVE, CS_SUBMIT, N_CS };
static const char *const cs_names[N_CS] = {"_cache", "_skip", "_miss_run", "_native", "_submit"};
enum { PC_ENABLED, PC_REQUESTS, PC_BYTES, PC_READS, PC_REFILL_DUE, PC_LOOP, N_PC };
static const char *const pc_names[N_PC] = {"enabled", "requests_left", "bytes_left", "reads", "_refill_due", "_loop"};

static struct {
    PyTypeObject *cs_cls, *pc_cls, *buf_cls;
    Py_ssize_t cs_off[N_CS], pc_off[N_PC];
    PyObject *missed, *refill, *call_soon; /* method names */
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

/* 1: served, *out the awaitable; 0: not tried or a miss (the caller goes on to the ring);
   -1: an exception. */
static int cached_read(PyObject *cs, PyObject *fd_obj, PyObject *buf, PyObject *pos_obj, PyObject **out)
{
    const Py_ssize_t *co = cache_binding.cs_off, *po = cache_binding.pc_off;
    PyObject *cache = *slot_at(cs, co[CS_CACHE]), *skip = *slot_at(cs, co[CS_SKIP]);
    if (!cache || !Py_IS_TYPE(cache, cache_binding.pc_cls)
        || !skip || !PyList_CheckExact(skip) || PyList_GET_SIZE(skip) != 2
        || *slot_at(cache, po[PC_ENABLED]) != Py_True || !PyObject_TypeCheck(buf, cache_binding.buf_cls)
        || !PyLong_CheckExact(pos_obj) || !PyLong_CheckExact(fd_obj))
        return 0;
    PyObject *req = *slot_at(cache, po[PC_REQUESTS]), *left = *slot_at(cache, po[PC_BYTES]);
    if (!req || !left || !PyLong_CheckExact(req) || !PyLong_CheckExact(left))
        return 0;
    int overflow;
    long long pos = PyLong_AsLongLongAndOverflow(pos_obj, &overflow);
    if (overflow || pos < 0 || pos >= cache_binding.pos_max || PyLong_AsLongLong(req) <= 0
        || PyLong_AsLongLong(left) <= 0)
        return PyErr_Occurred() ? -1 : 0;
    long long skipped = PyLong_AsLongLong(PyList_GET_ITEM(skip, 0));
    if (skipped == -1 && PyErr_Occurred())
        return -1;
    if (skipped) { /* backing off after misses: this one takes the ring */
        PyObject *v = PyLong_FromLongLong(skipped - 1);
        return v ? (PyList_SetItem(skip, 0, v), 0) : -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) { /* released: the ring's path says so */
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t n = view.len;
    if (!n) {
        PyBuffer_Release(&view);
        return 0;
    }
    int fd = (int)PyLong_AsLong(fd_obj);
    struct iovec iov = {view.buf, (size_t)n};
    ssize_t res;
    Py_BEGIN_ALLOW_THREADS
    res = preadv2(fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
    if (res < 0)
        res = -errno;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (res != n) { /* EAGAIN, a short read or an error: counted, backed off, the ring decides */
        PyObject *code = PyLong_FromSsize_t(res);
        PyObject *r = code ? PyObject_CallMethodObjArgs(cs, cache_binding.missed, cache, binding.zero, code, NULL)
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
        PyList_SetItem(miss_run, 0, binding.zero);
    }
    if (add_to_slot(cache, po[PC_READS], 1) < 0 || add_to_slot(cache, po[PC_REQUESTS], -1) < 0
        || add_to_slot(cache, po[PC_BYTES], -(long long)n) < 0)
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
    if (!w && cache_binding.cs_cls && Py_IS_TYPE(submit, cache_binding.cs_cls)
        && *slot_at(submit, cache_binding.cs_off[CS_NATIVE]) == Py_True) {
        PyObject *served = NULL;
        Py_INCREF(submit);
        int got = cached_read(submit, v[S_FD], args[1], args[0], &served);
        /* not served: the ring, as CachedSubmit would send it (not CachedSubmit itself, which
           would count this read's try, or its backing off, a second time) */
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

/* page_cache_reads(CachedSubmit, PageCache, DmaBuffer, pos_max): dma_read on a buffered File
   whose submit_request is a CachedSubmit (ioengine.pagecache) tries the page cache in C. */
static PyObject *mod_page_cache_reads(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])
        || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "page_cache_reads(CachedSubmit, PageCache, DmaBuffer, pos_max)");
        return NULL;
    }
    if (cache_binding.cs_cls) {
        PyErr_SetString(PyExc_RuntimeError, "page_cache_reads: bound already");
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
                PyErr_Format(PyExc_TypeError, "page_cache_reads: %s.%s is not an object slot", sets[k].cls->tp_name,
                             sets[k].names[i]);
                return NULL;
            }
            sets[k].off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        }
    long long pos_max = PyLong_AsLongLong(args[3]);
    if (pos_max == -1 && PyErr_Occurred())
        return NULL;
    PyObject *missed = PyUnicode_InternFromString("_missed"), *refill = PyUnicode_InternFromString("_refill"),
             *call_soon = PyUnicode_InternFromString("call_soon");
    if (!missed || !refill || !call_soon) {
        Py_XDECREF(missed);
        Py_XDECREF(refill);
        Py_XDECREF(call_soon);
        return NULL;
    }
    cache_binding.missed = missed;
    cache_binding.refill = refill;
    cache_binding.call_soon = call_soon;
    cache_binding.pos_max = pos_max;
    cache_binding.pc_cls = (PyTypeObject *)Py_NewRef(args[1]);
    cache_binding.buf_cls = (PyTypeObject *)Py_NewRef(args[2]);
    cache_binding.cs_cls = (PyTypeObject *)Py_NewRef(args[0]); /* last: request() tests it */
    Py_RETURN_NONE;
}

static PyMethodDef filemethods_functions[] = {
    {"page_cache_reads", (PyCFunction)(void (*)(void))mod_page_cache_reads, METH_FASTCALL,
     "page_cache_reads(CachedSubmit, PageCache, DmaBuffer, pos_max): buffered dma_reads try the page cache in C"},
    {"file_methods", (PyCFunction)(void (*)(void))mod_file_methods, METH_FASTCALL,
     "file_methods(cls, read, write, read_slow, write_slow, op_read, op_write) -> (dma_read, dma_write):\n"
     "File's per-request methods in C, standing for the Python methods read and write"},
    {NULL}};

int filemethods_module_init(PyObject *m) { return PyModule_AddFunctions(m, filemethods_functions); }
