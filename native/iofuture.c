/*
 * ioengine._iopath.IoFuture: the future of one reactor request, in C.
 *
 * It speaks the protocol asyncio's tasks accept from a future that is not asyncio's own
 * (``_asyncio_future_blocking``, ``get_loop``, ``add_done_callback(fn, context=)``,
 * ``result``, ``cancel``, …), so ``await`` on it works from any task, with gather, wait_for,
 * wait, shield, on asyncio's loops and uvloop alike. What it adds: IoPath resolves a batch of
 * completions with the callbacks held back (iofuture_finish with ``held``) and runs them
 * straight from C afterwards (iofuture_deliver): the awaiting task resumes without a
 * call_soon, a Handle and a turn of the ready queue. Anything else (cancel(), set_result()
 * from Python, a callback added to a done future) schedules with call_soon, as asyncio does.
 */
#include "iofuture.h"
#include <stddef.h>

enum { FUT_PENDING, FUT_CANCELLED, FUT_FINISHED };

typedef struct {
    PyObject_HEAD
    PyObject *loop;
    PyObject *result;
    PyObject *exception;
    PyObject *exc_tb;      /* the exception's traceback when it was set (raised with it, like asyncio) */
    PyObject *cancel_msg;  /* NULL: no message */
    PyObject *fn0, *ctx0;  /* the first callback (usually the only one: the task's wake-up) */
    PyObject *callbacks;   /* the ones after it, a list of (fn, context); NULL when fn0 is */
    PyObject *weakrefs;
    char state;
    char blocking;         /* _asyncio_future_blocking */
    char log_tb;           /* an exception nobody has retrieved yet */
} IoFutureObject;

typedef struct {
    PyObject_HEAD
    IoFutureObject *fut;   /* NULL once it returned */
    int yielded;
} IoFutureIterObject;

static PyTypeObject IoFutureIter_Type;

static PyObject *InvalidStateError, *CancelledError, *get_running_loop, *current_tasks, *current_task_fn;
static PyObject *str_call_soon, *str_call_exception_handler, *str_context, *kw_context;

static const char *const state_names[] = {"PENDING", "CANCELLED", "FINISHED"};

/* The raised exception as one object (PyErr_GetRaisedException is 3.12's; this is 3.11). */
static PyObject *take_exception(void)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v && tb)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
}

static void restore_exception(PyObject *v)
{
    if (v)
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(v)), v, PyException_GetTraceback(v));
}

/* -- scheduling ------------------------------------------------------------------------- */

static int call_soon(PyObject *loop, PyObject *fn, PyObject *arg, PyObject *ctx)
{
    if (!loop) {  /* only after the garbage collector cleared it */
        PyErr_SetString(PyExc_RuntimeError, "IoFuture object is not initialized");
        return -1;
    }
    PyObject *args[4] = {loop, fn, arg, ctx};
    PyObject *h = PyObject_VectorcallMethod(str_call_soon, args, 3, ctx ? kw_context : NULL);
    if (!h)
        return -1;
    Py_DECREF(h);
    return 0;
}

/* Hand every callback to call_soon (asyncio's way); stops at the first that fails. */
static int schedule_callbacks(IoFutureObject *f)
{
    PyObject *fn0 = f->fn0, *ctx0 = f->ctx0, *cbs = f->callbacks;
    f->fn0 = f->ctx0 = f->callbacks = NULL;
    int rc = 0;
    if (fn0) {
        rc = call_soon(f->loop, fn0, (PyObject *)f, ctx0);
        Py_DECREF(fn0);
        Py_DECREF(ctx0);
    }
    if (cbs) {
        for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(cbs); i++) {
            PyObject *t = PyList_GET_ITEM(cbs, i);
            rc = call_soon(f->loop, PyTuple_GET_ITEM(t, 0), (PyObject *)f, PyTuple_GET_ITEM(t, 1));
        }
        Py_DECREF(cbs);
    }
    return rc;
}

static int hold(ie_wakeups *held, IoFutureObject *f, PyObject *fn, PyObject *ctx)
{
    if (held->n == held->cap) {
        Py_ssize_t n = held->cap ? held->cap * 2 : 64;
        ie_wakeup *w = PyMem_Realloc(held->w, (size_t)n * sizeof(ie_wakeup));
        if (!w) {
            PyErr_NoMemory();
            return -1;
        }
        held->w = w;
        held->cap = n;
    }
    ie_wakeup *w = &held->w[held->n++];
    w->fut = Py_NewRef((PyObject *)f);
    w->fn = fn;  /* both references move here */
    w->ctx = ctx;
    return 0;
}

/* The callbacks move to ``held`` in order; one that cannot (no memory) is scheduled instead. */
static int hold_callbacks(IoFutureObject *f, ie_wakeups *held)
{
    PyObject *fn0 = f->fn0, *ctx0 = f->ctx0, *cbs = f->callbacks;
    f->fn0 = f->ctx0 = f->callbacks = NULL;
    int rc = 0;
    if (fn0 && hold(held, f, fn0, ctx0) < 0) {
        PyErr_Clear();
        rc = call_soon(f->loop, fn0, (PyObject *)f, ctx0);
        Py_DECREF(fn0);
        Py_DECREF(ctx0);
    }
    if (cbs) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cbs); i++) {
            PyObject *t = PyList_GET_ITEM(cbs, i), *fn = PyTuple_GET_ITEM(t, 0), *ctx = PyTuple_GET_ITEM(t, 1);
            if (hold(held, f, Py_NewRef(fn), Py_NewRef(ctx)) < 0) {
                Py_DECREF(fn);
                Py_DECREF(ctx);
                PyErr_Clear();
                if (call_soon(f->loop, fn, (PyObject *)f, ctx) < 0)
                    rc = -1;
            }
        }
        Py_DECREF(cbs);
    }
    return rc;
}

/* -- the C side (iofuture.h) ------------------------------------------------------------ */

PyObject *iofuture_new(PyObject *loop)
{
    IoFutureObject *f = PyObject_GC_New(IoFutureObject, &IoFuture_Type);
    if (!f)
        return NULL;
    f->loop = Py_NewRef(loop);
    f->result = f->exception = f->exc_tb = f->cancel_msg = NULL;
    f->fn0 = f->ctx0 = f->callbacks = f->weakrefs = NULL;
    f->state = FUT_PENDING;
    f->blocking = 0;
    f->log_tb = 0;
    PyObject_GC_Track(f);
    return (PyObject *)f;
}

int iofuture_done(PyObject *fut) { return ((IoFutureObject *)fut)->state != FUT_PENDING; }

int iofuture_finish(PyObject *fut, PyObject *result, PyObject *exc, ie_wakeups *held)
{
    IoFutureObject *f = (IoFutureObject *)fut;
    if (f->state != FUT_PENDING)
        return 0;
    if (result) {
        f->result = Py_NewRef(result);
    } else {
        f->exception = Py_NewRef(exc);
        f->exc_tb = PyException_GetTraceback(exc);
        f->log_tb = 1;
    }
    f->state = FUT_FINISHED;
    return held ? hold_callbacks(f, held) : schedule_callbacks(f);
}

static int task_running(PyObject *loop)
{
    if (current_tasks) {
        PyObject *t = PyDict_GetItemWithError(current_tasks, loop);
        return t ? 1 : (PyErr_Occurred() ? -1 : 0);
    }
    PyObject *t = PyObject_CallOneArg(current_task_fn, loop);
    if (!t)
        return -1;
    int r = t != Py_None;
    Py_DECREF(t);
    return r;
}

/* A callback raised: tell the loop's exception handler, as asyncio's Handle does. */
static void report_callback_error(IoFutureObject *f, PyObject *fn)
{
    PyObject *exc = take_exception();
    if (!exc)
        return;
    PyObject *msg = PyUnicode_FromFormat("Exception in callback %R(%R)", fn, (PyObject *)f);
    PyObject *ctx = msg ? Py_BuildValue("{sOsOsO}", "message", msg, "exception", exc, "future", (PyObject *)f) : NULL;
    PyObject *r = ctx && f->loop ? PyObject_CallMethodOneArg(f->loop, str_call_exception_handler, ctx) : NULL;
    if (!r) {
        if (!PyErr_Occurred())
            restore_exception(Py_NewRef(exc));
        PyErr_WriteUnraisable((PyObject *)f);
    }
    Py_XDECREF(r);
    Py_XDECREF(ctx);
    Py_XDECREF(msg);
    Py_DECREF(exc);
}

static void run_one(ie_wakeup *w, PyObject **fatal)
{
    IoFutureObject *f = (IoFutureObject *)w->fut;
    if (PyContext_Enter(w->ctx) < 0) {  /* already entered (someone passed their own): the loop runs it */
        PyErr_Clear();
        if (call_soon(f->loop, w->fn, w->fut, w->ctx) < 0)
            report_callback_error(f, w->fn);
        return;
    }
    PyObject *r = PyObject_CallOneArg(w->fn, w->fut);
    PyObject *exc = r ? NULL : take_exception();
    Py_XDECREF(r);
    if (PyContext_Exit(w->ctx) < 0)
        PyErr_WriteUnraisable(w->fn);
    if (!exc)
        return;
    if (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit)
        || PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt)) {
        *fatal = exc;  /* like the loop: it propagates; the rest of the batch is scheduled */
        return;
    }
    restore_exception(exc);
    report_callback_error(f, w->fn);
}

int iofuture_deliver(ie_wakeups *held)
{
    if (!held->n)
        return 0;
    /* Callbacks may complete more I/O (and hold more wake-ups): they go to a fresh array. */
    ie_wakeup *w = held->w;
    Py_ssize_t n = held->n, cap = held->cap;
    held->w = NULL;
    held->n = held->cap = 0;
    /* A task's step cannot start inside another's (asyncio's enter_task refuses): when one is
       running (a completion reaped from inside a task), the loop runs the callbacks later. */
    PyObject *loop = ((IoFutureObject *)w[0].fut)->loop;
    int direct = loop ? task_running(loop) : 1;
    if (direct < 0)
        PyErr_Clear();
    direct = direct == 0;
    PyObject *fatal = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (direct && !fatal) {
            run_one(&w[i], &fatal);
        } else if (call_soon(((IoFutureObject *)w[i].fut)->loop, w[i].fn, w[i].fut, w[i].ctx) < 0) {
            report_callback_error((IoFutureObject *)w[i].fut, w[i].fn);
        }
        Py_DECREF(w[i].fut);
        Py_DECREF(w[i].fn);
        Py_DECREF(w[i].ctx);
    }
    if (!held->w) {  /* keep the array for the next batch */
        held->w = w;
        held->cap = cap;
    } else {
        PyMem_Free(w);
    }
    if (fatal) {
        restore_exception(fatal);
        return -1;
    }
    return 0;
}

int iofuture_traverse_held(ie_wakeups *held, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < held->n; i++) {
        Py_VISIT(held->w[i].fut);
        Py_VISIT(held->w[i].fn);
        Py_VISIT(held->w[i].ctx);
    }
    return 0;
}

void iofuture_clear_held(ie_wakeups *held)
{
    ie_wakeup *w = held->w;
    Py_ssize_t n = held->n;
    held->w = NULL;
    held->n = held->cap = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(w[i].fut);
        Py_DECREF(w[i].fn);
        Py_DECREF(w[i].ctx);
    }
    PyMem_Free(w);
}

/* -- the Python side: asyncio's future protocol ----------------------------------------- */

static PyObject *IoFuture_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", NULL};
    PyObject *loop = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O:IoFuture", kwlist, &loop))
        return NULL;
    if (loop == Py_None) {
        loop = PyObject_CallNoArgs(get_running_loop);
        if (!loop)
            return NULL;
    } else {
        Py_INCREF(loop);
    }
    PyObject *f = iofuture_new(loop);
    Py_DECREF(loop);
    return f;
}

static PyObject *make_cancelled_error(IoFutureObject *f)
{
    return f->cancel_msg ? PyObject_CallOneArg(CancelledError, f->cancel_msg) : PyObject_CallNoArgs(CancelledError);
}

static PyObject *raise_cancelled(IoFutureObject *f)
{
    PyObject *e = make_cancelled_error(f);
    if (e) {
        PyErr_SetObject(CancelledError, e);
        Py_DECREF(e);
    }
    return NULL;
}

/* result(), as a new reference, or NULL with the exception raised. */
static PyObject *future_result(IoFutureObject *f)
{
    if (f->state == FUT_CANCELLED)
        return raise_cancelled(f);
    if (f->state != FUT_FINISHED) {
        PyErr_SetString(InvalidStateError, "Result is not set.");
        return NULL;
    }
    f->log_tb = 0;
    if (f->exception) {
        /* raised with the traceback it had when set, as asyncio does */
        PyException_SetTraceback(f->exception, f->exc_tb ? f->exc_tb : Py_None);
        PyErr_SetObject((PyObject *)Py_TYPE(f->exception), f->exception);
        return NULL;
    }
    return Py_NewRef(f->result);
}

static PyObject *IoFuture_result(IoFutureObject *f, PyObject *unused) { return future_result(f); }

static PyObject *IoFuture_exception(IoFutureObject *f, PyObject *unused)
{
    if (f->state == FUT_CANCELLED)
        return raise_cancelled(f);
    if (f->state != FUT_FINISHED) {
        PyErr_SetString(InvalidStateError, "Exception is not set.");
        return NULL;
    }
    f->log_tb = 0;
    return Py_NewRef(f->exception ? f->exception : Py_None);
}

static PyObject *IoFuture_done(IoFutureObject *f, PyObject *unused) { return PyBool_FromLong(f->state != FUT_PENDING); }

static PyObject *IoFuture_cancelled(IoFutureObject *f, PyObject *unused)
{
    return PyBool_FromLong(f->state == FUT_CANCELLED);
}

static PyObject *IoFuture_get_loop(IoFutureObject *f, PyObject *unused)
{
    if (!f->loop)
        PyErr_SetString(PyExc_RuntimeError, "IoFuture object is not initialized");
    return Py_XNewRef(f->loop);
}

static PyObject *IoFuture_make_cancelled_error(IoFutureObject *f, PyObject *unused) { return make_cancelled_error(f); }

static PyObject *IoFuture_set_result(IoFutureObject *f, PyObject *value)
{
    if (f->state != FUT_PENDING)
        return PyErr_Format(InvalidStateError, "%s: %R", state_names[(int)f->state], (PyObject *)f);
    if (iofuture_finish((PyObject *)f, value, NULL, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *IoFuture_set_exception(IoFutureObject *f, PyObject *exc)
{
    if (f->state != FUT_PENDING)
        return PyErr_Format(InvalidStateError, "%s: %R", state_names[(int)f->state], (PyObject *)f);
    PyObject *e = PyExceptionClass_Check(exc) ? PyObject_CallNoArgs(exc) : Py_NewRef(exc);
    if (!e)
        return NULL;
    if (!PyExceptionInstance_Check(e)) {
        Py_DECREF(e);
        PyErr_SetString(PyExc_TypeError, "invalid exception object");
        return NULL;
    }
    if (Py_IS_TYPE(e, (PyTypeObject *)PyExc_StopIteration)) {
        Py_DECREF(e);
        PyErr_SetString(PyExc_TypeError, "StopIteration interacts badly with generators and cannot be raised into a Future");
        return NULL;
    }
    int rc = iofuture_finish((PyObject *)f, NULL, e, NULL);
    Py_DECREF(e);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* add_done_callback(fn, *, context=None) */
static PyObject *IoFuture_add_done_callback(IoFutureObject *f, PyObject *const *args, Py_ssize_t nargsf,
                                            PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    /* asyncio's tasks pass context= with the interned name: compared by identity first */
    if (nargs != 1 || nkw > 1
        || (nkw == 1 && PyTuple_GET_ITEM(kwnames, 0) != str_context
            && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "context") != 0)) {
        PyErr_SetString(PyExc_TypeError, "add_done_callback(fn, *, context=None)");
        return NULL;
    }
    PyObject *fn = args[0], *ctx = nkw ? args[1] : Py_None;
    if (ctx != Py_None && !PyContext_CheckExact(ctx)) {
        PyErr_SetString(PyExc_TypeError, "add_done_callback: context must be a contextvars.Context");
        return NULL;
    }
    if (f->state != FUT_PENDING) {
        if (call_soon(f->loop, fn, (PyObject *)f, ctx == Py_None ? NULL : ctx) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    ctx = ctx == Py_None ? PyContext_CopyCurrent() : Py_NewRef(ctx);
    if (!ctx)
        return NULL;
    if (!f->fn0) {
        f->fn0 = Py_NewRef(fn);
        f->ctx0 = ctx;
        Py_RETURN_NONE;
    }
    PyObject *t = PyTuple_Pack(2, fn, ctx);
    Py_DECREF(ctx);
    if (!t)
        return NULL;
    if (!f->callbacks && !(f->callbacks = PyList_New(0))) {
        Py_DECREF(t);
        return NULL;
    }
    int rc = PyList_Append(f->callbacks, t);
    Py_DECREF(t);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* remove_done_callback(fn) -> how many were removed (compared with ==, as asyncio does) */
static PyObject *IoFuture_remove_done_callback(IoFutureObject *f, PyObject *fn)
{
    Py_ssize_t removed = 0;
    /* the comparisons may run Python code that changes the callbacks: hold what is compared */
    PyObject *cbs = f->callbacks ? Py_NewRef(f->callbacks) : NULL;
    PyObject *keep = PyList_New(0);
    if (!keep)
        goto fail;
    if (f->fn0) {
        PyObject *fn0 = Py_NewRef(f->fn0), *ctx0 = Py_NewRef(f->ctx0);
        int eq = PyObject_RichCompareBool(fn0, fn, Py_EQ);
        PyObject *t = eq == 0 ? PyTuple_Pack(2, fn0, ctx0) : NULL;
        Py_DECREF(fn0);
        Py_DECREF(ctx0);
        if (eq < 0 || (eq == 0 && (!t || PyList_Append(keep, t) < 0))) {
            Py_XDECREF(t);
            goto fail;
        }
        Py_XDECREF(t);
        removed += eq;
    }
    for (Py_ssize_t i = 0; cbs && i < PyList_GET_SIZE(cbs); i++) {
        PyObject *t = Py_NewRef(PyList_GET_ITEM(cbs, i));
        int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(t, 0), fn, Py_EQ);
        int rc = eq == 0 ? PyList_Append(keep, t) : 0;
        Py_DECREF(t);
        if (eq < 0 || rc < 0)
            goto fail;
        removed += eq;
    }
    Py_XDECREF(cbs);
    if (removed && f->state == FUT_PENDING) {
        PyObject *fn0 = f->fn0, *ctx0 = f->ctx0, *old = f->callbacks;
        f->fn0 = f->ctx0 = f->callbacks = NULL;
        Py_ssize_t n = PyList_GET_SIZE(keep);
        if (n) {
            PyObject *t = PyList_GET_ITEM(keep, 0);
            f->fn0 = Py_NewRef(PyTuple_GET_ITEM(t, 0));
            f->ctx0 = Py_NewRef(PyTuple_GET_ITEM(t, 1));
        }
        if (n > 1) {
            f->callbacks = PyList_GetSlice(keep, 1, n);
            if (!f->callbacks) {  /* no memory: keep the first only rather than lose track */
                PyErr_Clear();
                removed = -1;
            }
        }
        Py_XDECREF(fn0);
        Py_XDECREF(ctx0);
        Py_XDECREF(old);
        if (removed < 0) {
            Py_DECREF(keep);
            return PyErr_NoMemory();
        }
    }
    Py_DECREF(keep);
    return PyLong_FromSsize_t(removed);
fail:
    Py_XDECREF(cbs);
    Py_XDECREF(keep);
    return NULL;
}

/* cancel(msg=None) */
static PyObject *IoFuture_cancel(IoFutureObject *f, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 || (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "msg") != 0)) {
        PyErr_SetString(PyExc_TypeError, "cancel(msg=None)");
        return NULL;
    }
    PyObject *msg = nargs + nkw ? args[0] : Py_None;
    f->log_tb = 0;
    if (f->state != FUT_PENDING)
        Py_RETURN_FALSE;
    f->state = FUT_CANCELLED;
    f->cancel_msg = msg == Py_None ? NULL : Py_NewRef(msg);
    if (schedule_callbacks(f) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

static PyObject *IoFuture_await(IoFutureObject *f)
{
    IoFutureIterObject *it = PyObject_GC_New(IoFutureIterObject, &IoFutureIter_Type);
    if (!it)
        return NULL;
    it->fut = (IoFutureObject *)Py_NewRef((PyObject *)f);
    it->yielded = 0;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

PyObject *iofuture_awaiter(PyObject *fut) { return IoFuture_await((IoFutureObject *)fut); }

static PyObject *IoFuture_repr(IoFutureObject *f)
{
    if (f->state == FUT_PENDING)
        return PyUnicode_FromString("<IoFuture pending>");
    if (f->state == FUT_CANCELLED)
        return PyUnicode_FromString("<IoFuture cancelled>");
    int r = Py_ReprEnter((PyObject *)f);
    if (r != 0)
        return r > 0 ? PyUnicode_FromString("<IoFuture ...>") : NULL;
    PyObject *s = f->exception ? PyUnicode_FromFormat("<IoFuture finished exception=%R>", f->exception)
                               : PyUnicode_FromFormat("<IoFuture finished result=%R>", f->result);
    Py_ReprLeave((PyObject *)f);
    return s;
}

/* An exception nobody retrieved: the loop's exception handler hears of it, as with asyncio. */
static void IoFuture_finalize(IoFutureObject *f)
{
    if (!f->log_tb || !f->exception || !f->loop)
        return;
    f->log_tb = 0;
    PyObject *saved = take_exception();
    PyObject *ctx = Py_BuildValue("{sssOsO}", "message", "IoFuture exception was never retrieved", "exception",
                                  f->exception, "future", (PyObject *)f);
    PyObject *r = ctx ? PyObject_CallMethodOneArg(f->loop, str_call_exception_handler, ctx) : NULL;
    if (!r)
        PyErr_WriteUnraisable((PyObject *)f);
    Py_XDECREF(r);
    Py_XDECREF(ctx);
    restore_exception(saved);
}

static int IoFuture_traverse(IoFutureObject *f, visitproc visit, void *arg)
{
    Py_VISIT(f->loop);
    Py_VISIT(f->result);
    Py_VISIT(f->exception);
    Py_VISIT(f->exc_tb);
    Py_VISIT(f->cancel_msg);
    Py_VISIT(f->fn0);
    Py_VISIT(f->ctx0);
    Py_VISIT(f->callbacks);
    return 0;
}

static int IoFuture_clear(IoFutureObject *f)
{
    Py_CLEAR(f->loop);
    Py_CLEAR(f->result);
    Py_CLEAR(f->exception);
    Py_CLEAR(f->exc_tb);
    Py_CLEAR(f->cancel_msg);
    Py_CLEAR(f->fn0);
    Py_CLEAR(f->ctx0);
    Py_CLEAR(f->callbacks);
    return 0;
}

static void IoFuture_dealloc(IoFutureObject *f)
{
    if (f->log_tb && PyObject_CallFinalizerFromDealloc((PyObject *)f) < 0)
        return;  /* resurrected by the exception handler */
    PyObject_GC_UnTrack(f);
    if (f->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)f);
    IoFuture_clear(f);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyObject *get_blocking(IoFutureObject *f, void *c) { return PyBool_FromLong(f->blocking); }
static int set_blocking(IoFutureObject *f, PyObject *v, void *c)
{
    int t = v ? PyObject_IsTrue(v) : 0;
    if (t < 0)
        return -1;
    f->blocking = (char)t;
    return 0;
}
static PyObject *get_log_tb(IoFutureObject *f, void *c) { return PyBool_FromLong(f->log_tb); }
static int set_log_tb(IoFutureObject *f, PyObject *v, void *c)
{
    int t = v ? PyObject_IsTrue(v) : 0;
    if (t < 0)
        return -1;
    if (t) {
        PyErr_SetString(PyExc_ValueError, "_log_traceback can only be set to False");
        return -1;
    }
    f->log_tb = 0;
    return 0;
}
static PyObject *get_cancel_msg(IoFutureObject *f, void *c) { return Py_NewRef(f->cancel_msg ? f->cancel_msg : Py_None); }
static int set_cancel_msg(IoFutureObject *f, PyObject *v, void *c)
{
    Py_XSETREF(f->cancel_msg, v && v != Py_None ? Py_NewRef(v) : NULL);
    return 0;
}
static PyObject *get_state(IoFutureObject *f, void *c) { return PyUnicode_FromString(state_names[(int)f->state]); }
static PyObject *get_loop_attr(IoFutureObject *f, void *c) { return Py_NewRef(f->loop ? f->loop : Py_None); }

static PyMethodDef IoFuture_methods[] = {
    {"result", (PyCFunction)IoFuture_result, METH_NOARGS, "The result; raises the exception, or CancelledError."},
    {"exception", (PyCFunction)IoFuture_exception, METH_NOARGS, "The exception set, or None."},
    {"done", (PyCFunction)IoFuture_done, METH_NOARGS, "True once resolved or cancelled."},
    {"cancelled", (PyCFunction)IoFuture_cancelled, METH_NOARGS, "True if cancelled."},
    {"get_loop", (PyCFunction)IoFuture_get_loop, METH_NOARGS, "The loop the future belongs to."},
    {"set_result", (PyCFunction)IoFuture_set_result, METH_O, "Resolve with a result (callbacks via call_soon)."},
    {"set_exception", (PyCFunction)IoFuture_set_exception, METH_O, "Resolve with an exception (callbacks via call_soon)."},
    {"add_done_callback", (PyCFunction)(void (*)(void))IoFuture_add_done_callback, METH_FASTCALL | METH_KEYWORDS,
     "add_done_callback(fn, *, context=None): fn(future) once done, in context."},
    {"remove_done_callback", (PyCFunction)IoFuture_remove_done_callback, METH_O,
     "remove_done_callback(fn) -> the number of callbacks removed"},
    {"cancel", (PyCFunction)(void (*)(void))IoFuture_cancel, METH_FASTCALL | METH_KEYWORDS,
     "cancel(msg=None) -> False if already done; the I/O itself still completes (its buffer stays pinned)."},
    {"_make_cancelled_error", (PyCFunction)IoFuture_make_cancelled_error, METH_NOARGS,
     "The CancelledError to raise (asyncio.gather asks futures for it)."},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, "IoFuture[int] in annotations"},
    {NULL}};

static PyGetSetDef IoFuture_getset[] = {
    {"_asyncio_future_blocking", (getter)get_blocking, (setter)set_blocking,
     "asyncio's marker of a future (its tasks set and clear it)", NULL},
    {"_log_traceback", (getter)get_log_tb, (setter)set_log_tb, "an exception not yet retrieved", NULL},
    {"_cancel_message", (getter)get_cancel_msg, (setter)set_cancel_msg, "cancel()'s message", NULL},
    {"_state", (getter)get_state, NULL, "PENDING, CANCELLED or FINISHED", NULL},
    {"_loop", (getter)get_loop_attr, NULL, "the loop", NULL},
    {NULL}};

static PyAsyncMethods IoFuture_as_async = {.am_await = (unaryfunc)IoFuture_await};

PyTypeObject IoFuture_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ioengine._iopath.IoFuture",
    .tp_basicsize = sizeof(IoFutureObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "IoFuture(*, loop=None): the future of a reactor request, asyncio-compatible. A completion\n"
              "batch resumes its awaiting task directly (no call_soon) when no task is running.",
    .tp_new = IoFuture_tp_new,
    .tp_dealloc = (destructor)IoFuture_dealloc,
    .tp_finalize = (destructor)IoFuture_finalize,
    .tp_traverse = (traverseproc)IoFuture_traverse,
    .tp_clear = (inquiry)IoFuture_clear,
    .tp_repr = (reprfunc)IoFuture_repr,
    .tp_iter = (getiterfunc)IoFuture_await,
    .tp_as_async = &IoFuture_as_async,
    .tp_methods = IoFuture_methods,
    .tp_getset = IoFuture_getset,
    .tp_weaklistoffset = offsetof(IoFutureObject, weakrefs),
};

/* -- await: yields the future once while it is pending, then returns its result --------- */

static PySendResult IoFutureIter_send(IoFutureIterObject *it, PyObject *arg, PyObject **result)
{
    IoFutureObject *f = it->fut;
    if (!f) {
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    if (f->state == FUT_PENDING) {
        if (!it->yielded) {
            it->yielded = 1;
            f->blocking = 1;  /* tells the task this is a future to wait on, not a bare yield */
            *result = Py_NewRef((PyObject *)f);
            return PYGEN_NEXT;
        }
        PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
        *result = NULL;
        return PYGEN_ERROR;
    }
    it->fut = NULL;
    *result = future_result(f);
    Py_DECREF(f);
    return *result ? PYGEN_RETURN : PYGEN_ERROR;
}

static PyObject *IoFutureIter_next(IoFutureIterObject *it)
{
    PyObject *r;
    PySendResult s = IoFutureIter_send(it, Py_None, &r);
    if (s != PYGEN_RETURN)
        return r;
    if (r != Py_None) {  /* a return value travels in StopIteration */
        PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, r);
        if (e) {
            PyErr_SetObject(PyExc_StopIteration, e);
            Py_DECREF(e);
        }
    }
    Py_DECREF(r);
    return NULL;
}

static PyObject *IoFutureIter_send_method(IoFutureIterObject *it, PyObject *unused) { return IoFutureIter_next(it); }

/* What awaits a request can be thrown into or closed: by its task (cancelled before its first
   step), or by a coroutine awaiting it (throw() and close() reach the awaited iterator). The
   future, if still pending, is cancelled first (its result is then wanted by nobody, and a
   failure the kernel reports later must not be logged as never retrieved), and a failure it
   already holds is taken as seen. The I/O itself goes on, its buffer pinned until the
   kernel's completion. */
static int cancel_pending(IoFutureIterObject *it)
{
    IoFutureObject *f = it->fut;
    if (!f)
        return 0;
    if (f->state != FUT_PENDING) {
        f->log_tb = 0;  /* failed already (an inline completion): abandoned all the same */
        return 0;
    }
    f->state = FUT_CANCELLED;
    return schedule_callbacks(f);
}

/* throw(exc) or the old throw(type[, value[, tb]]) */
static PyObject *IoFutureIter_throw(IoFutureIterObject *it, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw(exc) takes an exception");
        return NULL;
    }
    PyObject *typ = args[0], *val = nargs > 1 ? args[1] : Py_None, *tb = nargs > 2 ? args[2] : Py_None, *exc;
    if (PyExceptionInstance_Check(typ)) {
        exc = Py_NewRef(typ);
    } else if (PyExceptionClass_Check(typ)) {
        exc = val == Py_None ? PyObject_CallNoArgs(typ) : PyObject_CallOneArg(typ, val);
        if (!exc)
            return NULL;
    } else {
        PyErr_SetString(PyExc_TypeError, "exceptions must be classes or instances deriving from BaseException");
        return NULL;
    }
    if (cancel_pending(it) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    Py_CLEAR(it->fut);
    if (tb != Py_None)
        PyException_SetTraceback(exc, tb);
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *IoFutureIter_close(IoFutureIterObject *it, PyObject *unused)
{
    if (cancel_pending(it) < 0)
        return NULL;
    Py_CLEAR(it->fut);
    Py_RETURN_NONE;
}

static int IoFutureIter_traverse(IoFutureIterObject *it, visitproc visit, void *arg)
{
    Py_VISIT(it->fut);
    return 0;
}

static int IoFutureIter_clear(IoFutureIterObject *it)
{
    Py_CLEAR(it->fut);
    return 0;
}

static void IoFutureIter_dealloc(IoFutureIterObject *it)
{
    PyObject_GC_UnTrack(it);
    Py_CLEAR(it->fut);
    PyObject_GC_Del(it);
}

static PyMethodDef IoFutureIter_methods[] = {
    {"send", (PyCFunction)IoFutureIter_send_method, METH_O, "send(value): the value is ignored, as asyncio's is"},
    {"throw", (PyCFunction)(void (*)(void))IoFutureIter_throw, METH_FASTCALL,
     "throw(exc): raises it, cancelling the future first if still pending (the I/O goes on)"},
    {"close", (PyCFunction)IoFutureIter_close, METH_NOARGS, "cancels the future if still pending (the I/O goes on)"},
    {NULL}};

static PyObject *IoFutureIter_await(PyObject *it) { return Py_NewRef(it); }

static PyAsyncMethods IoFutureIter_as_async = {.am_await = IoFutureIter_await, .am_send = (sendfunc)IoFutureIter_send};

static PyTypeObject IoFutureIter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ioengine._iopath.IoFutureIter",
    .tp_doc = "What awaits an IoFuture: the future's __await__, and what File.dma_read returns when the\n"
              "read went at once; a coroutine (registered as one by ioengine.file), so tasks run it.",
    .tp_basicsize = sizeof(IoFutureIterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)IoFutureIter_dealloc,
    .tp_traverse = (traverseproc)IoFutureIter_traverse,
    .tp_clear = (inquiry)IoFutureIter_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)IoFutureIter_next,
    .tp_as_async = &IoFutureIter_as_async,
    .tp_methods = IoFutureIter_methods,
};

/* -- module ------------------------------------------------------------------------------ */

/* -- Wakeups: a batch of held callbacks, for Python code that resolves many futures at once
   (the cross-shard transport's answers): resolve them, then run every callback in one go. */

typedef struct {
    PyObject_HEAD
    ie_wakeups held;
} WakeupsObject;

static PyObject *Wakeups_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if ((args && PyTuple_GET_SIZE(args)) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Wakeups() takes no arguments");
        return NULL;
    }
    WakeupsObject *w = (WakeupsObject *)type->tp_alloc(type, 0);
    return (PyObject *)w;  /* held zeroed by tp_alloc */
}

static int Wakeups_traverse(WakeupsObject *w, visitproc visit, void *arg)
{
    return iofuture_traverse_held(&w->held, visit, arg);
}

static int Wakeups_clear(WakeupsObject *w)
{
    iofuture_clear_held(&w->held);
    return 0;
}

static void Wakeups_dealloc(WakeupsObject *w)
{
    PyObject_GC_UnTrack(w);
    iofuture_clear_held(&w->held);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyTypeObject Wakeups_Type;

ie_wakeups *iofuture_held_of(PyObject *w)
{
    if (!Py_IS_TYPE(w, &Wakeups_Type)) {
        PyErr_Format(PyExc_TypeError, "expected a Wakeups, got %.80s", Py_TYPE(w)->tp_name);
        return NULL;
    }
    return &((WakeupsObject *)w)->held;
}

static int check_pending_iofuture(PyObject *fut, const char *what)
{
    if (!IoFuture_CheckExact(fut)) {
        PyErr_Format(PyExc_TypeError, "Wakeups.%s: expected an IoFuture, got %.80s", what, Py_TYPE(fut)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *Wakeups_set_result(WakeupsObject *w, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_result(future, value) takes 2 arguments");
        return NULL;
    }
    if (check_pending_iofuture(args[0], "set_result") < 0 || iofuture_finish(args[0], args[1], NULL, &w->held) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Wakeups_set_exception(WakeupsObject *w, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_exception(future, exception) takes 2 arguments");
        return NULL;
    }
    if (check_pending_iofuture(args[0], "set_exception") < 0)
        return NULL;
    if (!PyExceptionInstance_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "Wakeups.set_exception: expected an exception instance, got %.80s",
                     Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    if (iofuture_finish(args[0], NULL, args[1], &w->held) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Wakeups_deliver(WakeupsObject *w, PyObject *unused)
{
    if (iofuture_deliver(&w->held) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Wakeups_len(WakeupsObject *w, void *c) { return PyLong_FromSsize_t(w->held.n); }

static PyMethodDef Wakeups_methods[] = {
    {"set_result", (PyCFunction)(void (*)(void))Wakeups_set_result, METH_FASTCALL,
     "set_result(future, value): resolve a pending IoFuture (a done one is left alone), its callbacks held"},
    {"set_exception", (PyCFunction)(void (*)(void))Wakeups_set_exception, METH_FASTCALL,
     "set_exception(future, exception): the same with an exception"},
    {"deliver", (PyCFunction)Wakeups_deliver, METH_NOARGS,
     "run the held callbacks now (call_soon instead while a task is running)"},
    {NULL}};

static PyGetSetDef Wakeups_getset[] = {
    {"held", (getter)Wakeups_len, NULL, "callbacks held, not yet run", NULL},
    {NULL}};

static PyTypeObject Wakeups_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ioengine._iopath.Wakeups",
    .tp_basicsize = sizeof(WakeupsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Wakeups(): resolve IoFutures with their callbacks held, then run them all (deliver()).",
    .tp_new = Wakeups_new,
    .tp_dealloc = (destructor)Wakeups_dealloc,
    .tp_traverse = (traverseproc)Wakeups_traverse,
    .tp_clear = (inquiry)Wakeups_clear,
    .tp_methods = Wakeups_methods,
    .tp_getset = Wakeups_getset,
};

int iofuture_module_init(PyObject *m)
{
    if (PyType_Ready(&IoFuture_Type) < 0 || PyType_Ready(&IoFutureIter_Type) < 0 || PyType_Ready(&Wakeups_Type) < 0)
        return -1;
    if (PyModule_AddObjectRef(m, "Wakeups", (PyObject *)&Wakeups_Type) < 0
        || PyModule_AddObjectRef(m, "IoFutureIter", (PyObject *)&IoFutureIter_Type) < 0)
        return -1;
    str_call_soon = PyUnicode_InternFromString("call_soon");
    str_call_exception_handler = PyUnicode_InternFromString("call_exception_handler");
    str_context = PyUnicode_InternFromString("context");
    kw_context = str_context ? PyTuple_Pack(1, str_context) : NULL;
    if (!str_call_soon || !str_call_exception_handler || !kw_context)
        return -1;
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (!asyncio)
        return -1;
    InvalidStateError = PyObject_GetAttrString(asyncio, "InvalidStateError");
    CancelledError = InvalidStateError ? PyObject_GetAttrString(asyncio, "CancelledError") : NULL;
    get_running_loop = CancelledError ? PyObject_GetAttrString(asyncio, "get_running_loop") : NULL;
    current_task_fn = get_running_loop ? PyObject_GetAttrString(asyncio, "current_task") : NULL;
    if (!current_task_fn) {
        Py_DECREF(asyncio);
        return -1;
    }
    /* the dict asyncio's enter_task books the running task in (one lookup instead of a call);
       where there is none (another Python), current_task() answers */
    PyObject *tasks = PyObject_GetAttrString(asyncio, "tasks");
    PyObject *ct = tasks ? PyObject_GetAttrString(tasks, "_current_tasks") : NULL;
    PyErr_Clear();
    if (ct && PyDict_CheckExact(ct))
        current_tasks = Py_NewRef(ct);
    Py_XDECREF(ct);
    Py_XDECREF(tasks);
    Py_DECREF(asyncio);
    return PyModule_AddObjectRef(m, "IoFuture", (PyObject *)&IoFuture_Type);
}
