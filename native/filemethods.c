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
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

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

static PyMethodDef filemethods_functions[] = {
    {"file_methods", (PyCFunction)(void (*)(void))mod_file_methods, METH_FASTCALL,
     "file_methods(cls, read, write, read_slow, write_slow, op_read, op_write) -> (dma_read, dma_write):\n"
     "File's per-request methods in C, standing for the Python methods read and write"},
    {NULL}};

int filemethods_module_init(PyObject *m) { return PyModule_AddFunctions(m, filemethods_functions); }
