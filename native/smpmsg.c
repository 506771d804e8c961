/*
 * ioengine._iopath.MessageDispatch: the receiving side of a cross-shard ring
 * (ioengine/smp/_transport.py) for the two messages every call makes, in C.
 *
 * A ring's bytes are messages: a 16-byte header (payload length u32, kind u32 with the function
 * id above its low byte, request id u64; little-endian, as struct "<IIQ") and a pickle. Two kinds
 * are handled here:
 *
 *  - OK, an answer: the caller's IoFuture (``pending[rid]``) is resolved with the unpickled
 *    value, its wake-up held in the transport's Wakeups (run together after the batch);
 *  - CALL (and CALL_KW), a call of a function already sent (``fns[id]``): it runs,
 *    and a result of a type known to pickle plainly is pickled and appended to the sender's
 *    outbox, header and all.
 *
 * Everything else goes to Python, message by message, in order: other kinds (``slow``), a
 * result that is awaitable or of a new type (``result``), an exception raised by the call or by
 * its arguments' unpickling (``fail``), a full outbox (``flush``). So Python keeps every rule
 * and message; C only skips the interpreter on the common path (`ioengine-bench smp`).
 *
 * The sending side's ring writes (``push``: every dirty outbox, once a loop turn) and the
 * receiving side's ring reads (``pop``) are here too, on native/smp_ring.c's functions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "iofuture.h"

enum { K_CALL = 0, K_OK = 1, K_CALL_KW = 4 };
#define HDR_BYTES 16

typedef struct {
    PyObject_HEAD
    PyObject *loop;      /* the calls' IoFutures belong to it */
    PyObject *wakeups;   /* Wakeups: the answers' held callbacks */
    PyObject *plain;     /* set of result types answered at once */
    PyObject *loads, *dumps, *proto;
    PyObject *slow;      /* (src, kind, rid, payload) -> None: any other message */
    PyObject *result;    /* (src, rid, value) -> None: a result C does not send itself */
    PyObject *fail;      /* (src, rid, fn, exc) -> None: the call (or its arguments) raised */
    PyObject *flush;     /* (src, outbox) -> None: the outbox reached batch_bytes */
    Py_ssize_t max_payload, batch_bytes;
} DispatchObject;

static int Dispatch_init(DispatchObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"loop", "wakeups", "plain", "loads", "dumps", "proto", "slow", "result", "fail", "flush",
                         "max_payload", "batch_bytes", NULL};
    PyObject *loop, *wakeups, *plain, *loads, *dumps, *proto, *slow, *result, *fail, *flush;
    Py_ssize_t max_payload, batch_bytes;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOOnn", kw, &loop, &wakeups, &plain, &loads, &dumps, &proto, &slow,
                                     &result, &fail, &flush, &max_payload, &batch_bytes))
        return -1;
    if (!iofuture_held_of(wakeups))
        return -1;
    if (!PySet_Check(plain)) {
        PyErr_SetString(PyExc_TypeError, "MessageDispatch: plain must be a set of types");
        return -1;
    }
    Py_XSETREF(self->loop, Py_NewRef(loop));
    Py_XSETREF(self->wakeups, Py_NewRef(wakeups));
    Py_XSETREF(self->plain, Py_NewRef(plain));
    Py_XSETREF(self->loads, Py_NewRef(loads));
    Py_XSETREF(self->dumps, Py_NewRef(dumps));
    Py_XSETREF(self->proto, Py_NewRef(proto));
    Py_XSETREF(self->slow, Py_NewRef(slow));
    Py_XSETREF(self->result, Py_NewRef(result));
    Py_XSETREF(self->fail, Py_NewRef(fail));
    Py_XSETREF(self->flush, Py_NewRef(flush));
    self->max_payload = max_payload;
    self->batch_bytes = batch_bytes;
    return 0;
}

static int Dispatch_traverse(DispatchObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loop);
    Py_VISIT(self->wakeups);
    Py_VISIT(self->plain);
    Py_VISIT(self->loads);
    Py_VISIT(self->dumps);
    Py_VISIT(self->proto);
    Py_VISIT(self->slow);
    Py_VISIT(self->result);
    Py_VISIT(self->fail);
    Py_VISIT(self->flush);
    return 0;
}

static int Dispatch_clear(DispatchObject *self)
{
    Py_CLEAR(self->loop);
    Py_CLEAR(self->wakeups);
    Py_CLEAR(self->plain);
    Py_CLEAR(self->loads);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->proto);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->result);
    Py_CLEAR(self->fail);
    Py_CLEAR(self->flush);
    return 0;
}

static void Dispatch_dealloc(DispatchObject *self)
{
    PyObject_GC_UnTrack(self);
    Dispatch_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Call ``cb(args...)``; 0, or -1 with its exception. */
static int call_back(PyObject *cb, PyObject *const *argv, size_t n)
{
    PyObject *r = PyObject_Vectorcall(cb, argv, n, NULL);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The exception being raised, normalized, its traceback attached; it goes to ``fail`` unless it
   is not an Exception (KeyboardInterrupt, SystemExit, ...: those propagate, as in Python). */
static int hand_error(DispatchObject *self, PyObject *src, PyObject *rid, PyObject *fn)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb && v)
        PyException_SetTraceback(v, tb);
    PyObject *argv[4] = {src, rid, fn, v ? v : Py_None};
    int rc = call_back(self->fail, argv, 4);
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    return rc;
}

/* Append header + data to the outbox bytearray. */
static int append(PyObject *ob, uint32_t kind, uint64_t rid, const char *data, Py_ssize_t len)
{
    Py_ssize_t old = PyByteArray_GET_SIZE(ob);
    if (PyByteArray_Resize(ob, old + HDR_BYTES + len) < 0)
        return -1;
    char *p = PyByteArray_AS_STRING(ob) + old;
    uint32_t ln = (uint32_t)len;
    memcpy(p, &ln, 4);
    memcpy(p + 4, &kind, 4);
    memcpy(p + 8, &rid, 8);
    memcpy(p + HDR_BYTES, data, (size_t)len);
    return 0;
}

static int run_call(DispatchObject *self, PyObject *fns, PyObject *outbox, PyObject *src, uint32_t kind,
                    uint64_t rid_v, PyObject *rid, PyObject *payload)
{
    PyObject *fid = PyLong_FromUnsignedLong(kind >> 8);
    if (!fid)
        return -1;
    PyObject *fn = PyDict_GetItemWithError(fns, fid);  /* borrowed */
    Py_DECREF(fid);
    if (!fn) {
        if (PyErr_Occurred())
            return -1;
        PyObject *k = PyLong_FromUnsignedLong(kind);
        if (!k)
            return -1;
        PyObject *argv[4] = {src, k, rid, payload};
        int rc = call_back(self->slow, argv, 4);
        Py_DECREF(k);
        return rc;
    }
    Py_INCREF(fn);  /* the call may redefine it */
    int rc = -1;
    PyObject *args = PyObject_CallOneArg(self->loads, payload), *kw = NULL, *res = NULL, *data = NULL;
    if (args && (kind & 0xFF) == K_CALL_KW) {  /* (args, kwargs) */
        if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) != 2 || !PyDict_Check(PyTuple_GET_ITEM(args, 1))) {
            PyErr_SetString(PyExc_TypeError, "a keyword call's payload must be (args, kwargs)");
            Py_CLEAR(args);
        } else {
            kw = Py_NewRef(PyTuple_GET_ITEM(args, 1));
            Py_SETREF(args, Py_NewRef(PyTuple_GET_ITEM(args, 0)));
        }
    }
    if (args && !PyTuple_CheckExact(args))
        Py_SETREF(args, PySequence_Tuple(args));
    if (args)
        res = PyObject_Call(fn, args, kw);
    if (!res) {
        rc = hand_error(self, src, rid, fn);
        goto out;
    }
    int plain = PySet_Contains(self->plain, (PyObject *)Py_TYPE(res));
    if (plain < 0)
        goto out;
    if (plain) {
        PyObject *argv[2] = {res, self->proto};
        data = PyObject_Vectorcall(self->dumps, argv, 2, NULL);
        if (!data) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                goto out;
            PyErr_Clear();  /* Python says why (its answer() names the type) */
        }
    }
    if (data && PyBytes_CheckExact(data) && PyBytes_GET_SIZE(data) <= self->max_payload) {
        if (append(outbox, K_OK, rid_v, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) < 0)
            goto out;
        if (PyByteArray_GET_SIZE(outbox) >= self->batch_bytes) {
            PyObject *argv[2] = {src, outbox};
            if (call_back(self->flush, argv, 2) < 0)
                goto out;
        }
        rc = 0;
        goto out;
    }
    PyObject *argv[3] = {src, rid, res};
    rc = call_back(self->result, argv, 3);
out:
    Py_XDECREF(data);
    Py_XDECREF(res);
    Py_XDECREF(kw);
    Py_XDECREF(args);
    Py_DECREF(fn);
    return rc;
}

static int run_answer(DispatchObject *self, PyObject *pending, ie_wakeups *held, PyObject *src, PyObject *rid,
                      PyObject *payload)
{
    PyObject *fut = PyDict_GetItemWithError(pending, rid);  /* borrowed */
    if (!fut)
        return PyErr_Occurred() ? -1 : 0;  /* the caller was cancelled */
    if (!IoFuture_CheckExact(fut) || iofuture_done(fut)) {
        return PyDict_DelItem(pending, rid);
    }
    PyObject *value = PyObject_CallOneArg(self->loads, payload);
    if (!value) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        PyErr_Clear();  /* Python unpickles it again and tells the caller why it fails */
        PyObject *k = PyLong_FromLong(K_OK);
        if (!k)
            return -1;
        PyObject *argv[4] = {src, k, rid, payload};
        int rc = call_back(self->slow, argv, 4);
        Py_DECREF(k);
        return rc;
    }
    Py_INCREF(fut);
    int rc = PyDict_DelItem(pending, rid);
    if (rc == 0)
        rc = iofuture_finish(fut, value, NULL, held);
    Py_DECREF(fut);
    Py_DECREF(value);
    return rc;
}

/* run(buffer, n, src, pending, fns, outbox): handle the n bytes of messages at the buffer's
   start, from shard ``src``. */
static PyObject *Dispatch_run(DispatchObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyDict_CheckExact(args[3]) || !PyDict_CheckExact(args[4]) || !PyByteArray_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError, "run(buffer, n, src, pending: dict, fns: dict, outbox: bytearray)");
        return NULL;
    }
    if (!self->wakeups) {
        PyErr_SetString(PyExc_RuntimeError, "MessageDispatch not initialised");
        return NULL;
    }
    ie_wakeups *held = iofuture_held_of(self->wakeups);
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (!held || (n == -1 && PyErr_Occurred()))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (n < 0 || n > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "run(): n is outside the buffer");
        return NULL;
    }
    PyObject *src = args[2], *pending = args[3], *fns = args[4], *outbox = args[5];
    const char *base = view.buf;
    Py_ssize_t p = 0;
    int rc = 0;
    while (rc == 0 && p + HDR_BYTES <= n) {
        uint32_t ln, kind;
        uint64_t rid_v;
        memcpy(&ln, base + p, 4);
        memcpy(&kind, base + p + 4, 4);
        memcpy(&rid_v, base + p + 8, 8);
        p += HDR_BYTES;
        if ((Py_ssize_t)ln > n - p) {
            PyErr_Format(PyExc_RuntimeError, "cross-shard ring from shard %S: a message of %u bytes runs past the "
                         "%zd bytes read", src, ln, n);
            rc = -1;
            break;
        }
        PyObject *payload = PyMemoryView_FromMemory((char *)base + p, ln, PyBUF_READ);
        PyObject *rid = payload ? PyLong_FromUnsignedLongLong(rid_v) : NULL;
        p += ln;
        if (!rid) {
            Py_XDECREF(payload);
            rc = -1;
            break;
        }
        uint32_t k = kind & 0xFF;
        if (k == K_CALL || k == K_CALL_KW) {
            rc = run_call(self, fns, outbox, src, kind, rid_v, rid, payload);
        } else if (k == K_OK) {
            rc = run_answer(self, pending, held, src, rid, payload);
        } else {
            PyObject *kobj = PyLong_FromUnsignedLong(kind);
            if (!kobj) {
                rc = -1;
            } else {
                PyObject *argv[4] = {src, kobj, rid, payload};
                rc = call_back(self->slow, argv, 4);
                Py_DECREF(kobj);
            }
        }
        Py_DECREF(payload);  /* a view of the transport's buffer, as Python's slices were: nothing keeps it */
        Py_DECREF(rid);
    }
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* call(kind, rid, args, pending, outbox, dest) -> IoFuture: the sending side of a call of a
   function ``dest`` already has (kind = CALL | id << 8 with the positional arguments as ``args``,
   or CALL_KW | id << 8 with ``(args, kwargs)``): pickled into
   the outbox with its header, its future in ``pending`` under ``rid``. None when the pickle is
   larger than a message may be (nothing done: Python says so); a pickling error is raised. */
static PyObject *Dispatch_call(DispatchObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyDict_CheckExact(args[3]) || !PyByteArray_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "call(kind, rid, args, pending: dict, outbox: bytearray, dest)");
        return NULL;
    }
    if (!self->loop) {
        PyErr_SetString(PyExc_RuntimeError, "MessageDispatch not initialised");
        return NULL;
    }
    unsigned long kind = PyLong_AsUnsignedLong(args[0]);
    unsigned long long rid = PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *argv[2] = {args[2], self->proto};
    PyObject *data = PyObject_Vectorcall(self->dumps, argv, 2, NULL);
    if (!data)
        return NULL;
    if (!PyBytes_CheckExact(data) || PyBytes_GET_SIZE(data) > self->max_payload) {
        Py_DECREF(data);
        Py_RETURN_NONE;
    }
    PyObject *fut = iofuture_new(self->loop);
    if (!fut || PyDict_SetItem(args[3], args[1], fut) < 0) {
        Py_XDECREF(fut);
        Py_DECREF(data);
        return NULL;
    }
    int rc = append(args[4], (uint32_t)kind, rid, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    Py_DECREF(data);
    if (rc < 0) {
        /* not in the outbox: the call is not sent, forget its future */
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        if (PyDict_DelItem(args[3], args[1]) < 0)
            PyErr_Clear();
        PyErr_Restore(t, v, tb);
        Py_DECREF(fut);
        return NULL;
    }
    if (PyByteArray_GET_SIZE(args[4]) >= self->batch_bytes) {
        PyObject *fargv[2] = {args[5], args[4]};
        if (call_back(self->flush, fargv, 2) < 0) {  /* the message stays queued for the turn's flush */
            Py_DECREF(fut);
            return NULL;
        }
    }
    return fut;
}

int ie_spsc_push(void *ring, uint64_t cap, const void *src, uint64_t len, uint32_t *sleeping, int efd);

/* push(dirty, outboxes, rings, flags, efds, cap) -> list: the sending side's flush. Each
   destination listed in ``dirty`` (an index into the other lists) has its outbox written whole
   into its ring (native/smp_ring.c: the consumer's eventfd written if it sleeps) and emptied.
   ``rings`` and ``flags`` hold addresses (ints), ``efds`` descriptors. The destinations whose ring
   had not the room for the whole outbox come back, in order: Python writes the whole messages
   that fit (Transport._push_part). One call per loop turn instead of one cffi call, a buffer
   export and a slice deletion per destination (`ioengine-bench smp`). */
static PyObject *Dispatch_push(DispatchObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1]) || !PyList_CheckExact(args[2])
        || !PyList_CheckExact(args[3]) || !PyList_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "push(dirty: list, outboxes: list, rings: list, flags: list, efds: list, cap)");
        return NULL;
    }
    unsigned long long cap = PyLong_AsUnsignedLongLong(args[5]);
    if (cap == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *left = PyList_New(0);
    if (!left)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(args[0]);
    for (Py_ssize_t i = 0; i < n && i < PyList_GET_SIZE(args[0]); i++) {
        PyObject *dobj = PyList_GET_ITEM(args[0], i);
        Py_ssize_t d = PyLong_AsSsize_t(dobj);
        if (d == -1 && PyErr_Occurred())
            goto fail;
        if (d < 0 || d >= PyList_GET_SIZE(args[1]) || d >= PyList_GET_SIZE(args[2]) || d >= PyList_GET_SIZE(args[3])
            || d >= PyList_GET_SIZE(args[4])) {
            PyErr_Format(PyExc_IndexError, "push: no ring to shard %zd", d);
            goto fail;
        }
        PyObject *ob = PyList_GET_ITEM(args[1], d);
        if (!PyByteArray_CheckExact(ob)) {
            PyErr_SetString(PyExc_TypeError, "push: an outbox is a bytearray");
            goto fail;
        }
        Py_ssize_t len = PyByteArray_GET_SIZE(ob);
        if (!len)
            continue;  /* written early, or listed twice */
        void *ring = PyLong_AsVoidPtr(PyList_GET_ITEM(args[2], d));
        void *flag = PyLong_AsVoidPtr(PyList_GET_ITEM(args[3], d));
        long efd = PyLong_AsLong(PyList_GET_ITEM(args[4], d));
        if (PyErr_Occurred())
            goto fail;
        if (!ring) {
            PyErr_Format(PyExc_ValueError, "push: no ring to shard %zd", d);
            goto fail;
        }
        int rc = ie_spsc_push(ring, (uint64_t)cap, PyByteArray_AS_STRING(ob), (uint64_t)len, (uint32_t *)flag, (int)efd);
        if (rc >= 0) {
            if (PyByteArray_Resize(ob, 0) < 0)
                goto fail;
        } else if (PyList_Append(left, dobj) < 0) {
            goto fail;
        }
    }
    return left;
fail:
    Py_DECREF(left);
    return NULL;
}

int64_t ie_spsc_pop(void *ring, uint64_t cap, void *dst);

/* pop(ring, cap, buffer) -> int: ie_spsc_pop (native/smp_ring.c) on addresses: what the ring
   held, moved into the buffer; its byte count (0: empty). The receiving side's poll, called
   on every turn of a spin: a C method costs less than the cffi call it replaces. */
static PyObject *Dispatch_pop(DispatchObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pop(ring, cap, buffer)");
        return NULL;
    }
    void *ring = PyLong_AsVoidPtr(args[0]);
    unsigned long long cap = PyLong_AsUnsignedLongLong(args[1]);
    void *buf = PyLong_AsVoidPtr(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (!ring || !buf) {
        PyErr_SetString(PyExc_ValueError, "pop: no ring or no buffer");
        return NULL;
    }
    return PyLong_FromLongLong(ie_spsc_pop(ring, (uint64_t)cap, buf));
}

static PyMethodDef Dispatch_methods[] = {
    {"pop", (PyCFunction)(void (*)(void))Dispatch_pop, METH_FASTCALL,
     "pop(ring, cap, buffer) -> int: move what the ring at that address holds into the buffer"},
    {"push", (PyCFunction)(void (*)(void))Dispatch_push, METH_FASTCALL,
     "push(dirty, outboxes, rings, flags, efds, cap) -> list: write each dirty outbox into its ring; "
     "the destinations whose ring was too full come back"},
    {"call", (PyCFunction)(void (*)(void))Dispatch_call, METH_FASTCALL,
     "call(kind, rid, args, pending, outbox, dest) -> IoFuture, or None when too large to send"},
    {"run", (PyCFunction)(void (*)(void))Dispatch_run, METH_FASTCALL,
     "run(buffer, n, src, pending, fns, outbox): handle the messages in buffer[:n] from shard src"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject MessageDispatch_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ioengine._iopath.MessageDispatch",
    .tp_basicsize = sizeof(DispatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "MessageDispatch(wakeups, plain, loads, dumps, proto, slow, result, fail, flush, max_payload, "
              "batch_bytes): a cross-shard ring's answers and plain calls handled in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Dispatch_init,
    .tp_dealloc = (destructor)Dispatch_dealloc,
    .tp_traverse = (traverseproc)Dispatch_traverse,
    .tp_clear = (inquiry)Dispatch_clear,
    .tp_methods = Dispatch_methods,
};

int smpmsg_module_init(PyObject *m)
{
    if (PyType_Ready(&MessageDispatch_Type) < 0)
        return -1;
    return PyModule_AddObjectRef(m, "MessageDispatch", (PyObject *)&MessageDispatch_Type);
}
