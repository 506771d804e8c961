/*
 * ioengine._iopath.IoFuture: the reactor's request future, in C (native/iofuture.c).
 *
 * What native/iopath.c needs of it: make one, resolve it from a completion batch with its
 * callbacks held back (not scheduled with call_soon), and run the held callbacks once the
 * batch's bookkeeping is done.
 */
#ifndef IOENGINE_IOFUTURE_H
#define IOENGINE_IOFUTURE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* One callback of a resolved future, not yet run: fn(fut) in context ctx (all owned). */
typedef struct {
    PyObject *fut, *fn, *ctx;
} ie_wakeup;

/* The callbacks a completion batch held back, in the order they would have been scheduled. */
typedef struct {
    ie_wakeup *w;
    Py_ssize_t n, cap;
} ie_wakeups;

extern PyTypeObject IoFuture_Type;
#define IoFuture_CheckExact(o) Py_IS_TYPE((o), &IoFuture_Type)

/* A pending IoFuture of ``loop``. */
PyObject *iofuture_new(PyObject *loop);
/* What awaits ``fut`` (an IoFuture): its __await__, a coroutine that tasks run (IoFutureIter). */
PyObject *iofuture_awaiter(PyObject *fut);
/* 1 when ``fut`` (an IoFuture) is done. */
int iofuture_done(PyObject *fut);
/* Resolve a pending IoFuture with ``result`` or, when NULL, the exception ``exc``. Its
   callbacks go to ``held`` (run later by iofuture_deliver), or with ``held`` NULL are
   scheduled with the loop's call_soon. A future already done is left alone (returns 0). */
int iofuture_finish(PyObject *fut, PyObject *result, PyObject *exc, ie_wakeups *held);
/* Run the held callbacks now when no task is running on their loop, else schedule them with
   call_soon. A callback's exception goes to the loop's exception handler; only SystemExit and
   KeyboardInterrupt come back (-1), after the rest were scheduled. ``held`` ends empty. */
int iofuture_deliver(ie_wakeups *held);
/* The held callbacks of a ``Wakeups`` object (NULL with TypeError for anything else). */
ie_wakeups *iofuture_held_of(PyObject *w);
int iofuture_traverse_held(ie_wakeups *held, visitproc visit, void *arg);
void iofuture_clear_held(ie_wakeups *held);
/* Type ready, added to ``m``, asyncio's names looked up. */
int iofuture_module_init(PyObject *m);

#endif
