/*
 * ioengine._dmabuf.DmaBuffer: aligned memory exposed through the buffer protocol.
 *
 * Python 3.11 has no way to give a Python class the buffer protocol (PEP 688 came in 3.12),
 * so this one type lives in C. It does no I/O. Memory is freed only when it is released *and*
 * no export (memoryview, in-flight I/O pin, trimmed child) remains: release() while the kernel
 * still owns the memory defers the free to the last export's end, it never frees early.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    PyObject_HEAD
    char *ptr;            /* start of the visible bytes */
    Py_ssize_t len;       /* visible length */
    void *base;           /* what to free() or munmap(); NULL for a view of a parent */
    size_t map_len;       /* > 0: base is a private mapping of this length (huge-page buffers) */
    PyObject *parent;     /* for trimmed views: keeps the parent's export */
    Py_buffer parent_view;
    Py_ssize_t exports;
    Py_ssize_t alignment;
    int released;         /* release() was called */
    int freed;            /* memory is gone */
    PyObject *weakrefs;
} DmaBufferObject;

static PyTypeObject DmaBuffer_Type;

static void dmabuf_free_memory(DmaBufferObject *self)
{
    if (self->freed)
        return;
    self->freed = 1;
    if (self->base) {
        if (self->map_len)
            munmap(self->base, self->map_len);
        else
            free(self->base);
        self->base = NULL;
    }
    if (self->parent) {
        PyBuffer_Release(&self->parent_view);
        Py_CLEAR(self->parent);
    }
    self->ptr = NULL;
}

#define IE_HUGE_PAGE ((size_t)2 << 20)

static PyObject *dmabuf_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "alignment", NULL};
    Py_ssize_t size, alignment = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|n", kwlist, &size, &alignment))
        return NULL;
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "DmaBuffer size must be >= 0, got %zd", size);
        return NULL;
    }
    if (alignment < (Py_ssize_t)sizeof(void *) || (alignment & (alignment - 1)) != 0) {
        PyErr_Format(PyExc_ValueError,
                     "DmaBuffer alignment must be a power of two >= %zu, got %zd",
                     sizeof(void *), alignment);
        return NULL;
    }
    void *mem = NULL;
    /* Round the allocation up so a read of a whole block at the end never overruns. */
    size_t alloc = (size_t)((size + alignment - 1) / alignment * alignment);
    if (alloc == 0)
        alloc = (size_t)alignment;
    /* Large buffers start on a huge-page boundary and ask for transparent huge pages before
       the first touch: physically contiguous memory goes to the device as a few segments
       instead of one per 4 KiB page (measured on virtio: 128 KiB sequential reads ~2x faster).
       They get a fresh mapping of their own, never malloc's: once a 2 MiB block has been freed,
       glibc raises its mmap threshold and serves the next ones from the heap, whose pages were
       already touched as 4 KiB pages and stay so, madvise or not: iotune --repeat 3 read
       ~2.2 GB/s in its first pass and ~0.8 in the next ones (docs/benchmarks.md, 2026-12 iotune). */
    size_t align = (size_t)alignment;
    size_t map_len = 0;
    if (alloc >= IE_HUGE_PAGE && align < IE_HUGE_PAGE)
        align = IE_HUGE_PAGE;
    if (alloc >= IE_HUGE_PAGE) {
        alloc = (alloc + IE_HUGE_PAGE - 1) / IE_HUGE_PAGE * IE_HUGE_PAGE;
        size_t span = alloc + align;
        char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
            return PyErr_NoMemory();
        char *start = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
        if (start > raw)
            munmap(raw, (size_t)(start - raw));
        if (raw + span > start + alloc)
            munmap(start + alloc, (size_t)(raw + span - (start + alloc)));
        mem = start;
        map_len = alloc;
#ifdef MADV_HUGEPAGE
        (void)madvise(mem, alloc, MADV_HUGEPAGE); /* advisory: without THP, plain pages */
#endif
        memset(mem, 0, alloc); /* already zero: this faults the (huge) pages in now, not in an I/O */
    } else {
        if (posix_memalign(&mem, align, alloc) != 0)
            return PyErr_NoMemory();
        /* Fresh memory is zeroed so a careless write never leaks old heap bytes to disk. */
        memset(mem, 0, alloc);
    }
    DmaBufferObject *self = (DmaBufferObject *)type->tp_alloc(type, 0);
    if (!self) {
        if (map_len)
            munmap(mem, map_len);
        else
            free(mem);
        return NULL;
    }
    self->ptr = mem;
    self->base = mem;
    self->map_len = map_len;
    self->len = size;
    self->alignment = alignment;
    return (PyObject *)self;
}

static void dmabuf_dealloc(DmaBufferObject *self)
{
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    dmabuf_free_memory(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int dmabuf_getbuffer(DmaBufferObject *self, Py_buffer *view, int flags)
{
    if (self->released) {
        PyErr_SetString(PyExc_ValueError, "DmaBuffer has been released");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->ptr, self->len, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void dmabuf_releasebuffer(DmaBufferObject *self, Py_buffer *view)
{
    self->exports--;
    if (self->exports == 0 && self->released)
        dmabuf_free_memory(self);
}

static PyBufferProcs dmabuf_as_buffer = {
    (getbufferproc)dmabuf_getbuffer,
    (releasebufferproc)dmabuf_releasebuffer,
};

static Py_ssize_t dmabuf_length(DmaBufferObject *self)
{
    return self->released ? 0 : self->len;
}

static PyObject *dmabuf_subscript(DmaBufferObject *self, PyObject *key)
{
    /* Slices are zero-copy memoryviews; an index gives the byte value. */
    PyObject *mv = PyMemoryView_FromObject((PyObject *)self);
    if (!mv)
        return NULL;
    PyObject *res = PyObject_GetItem(mv, key);
    Py_DECREF(mv);
    return res;
}

static int dmabuf_ass_subscript(DmaBufferObject *self, PyObject *key, PyObject *value)
{
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "cannot delete DmaBuffer bytes");
        return -1;
    }
    PyObject *mv = PyMemoryView_FromObject((PyObject *)self);
    if (!mv)
        return -1;
    int res = PyObject_SetItem(mv, key, value);
    Py_DECREF(mv);
    return res;
}

static PyMappingMethods dmabuf_as_mapping = {
    (lenfunc)dmabuf_length,
    (binaryfunc)dmabuf_subscript,
    (objobjargproc)dmabuf_ass_subscript,
};

static PySequenceMethods dmabuf_as_sequence = {
    .sq_length = (lenfunc)dmabuf_length,
};

static PyObject *dmabuf_release(DmaBufferObject *self, PyObject *unused)
{
    if (!self->released) {
        self->released = 1;
        if (self->exports == 0)
            dmabuf_free_memory(self);
    }
    Py_RETURN_NONE;
}

static PyObject *dmabuf_trim(DmaBufferObject *self, PyObject *args, PyObject *kwds)
{
    /* trim(offset, length, cls=None) -> a buffer sharing this memory (zero-copy), of the same
     * type as this one or of cls (a DmaBuffer subtype). */
    static char *kwlist[] = {"offset", "length", "cls", NULL};
    Py_ssize_t off, len;
    PyObject *cls = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nn|O", kwlist, &off, &len, &cls))
        return NULL;
    if (cls != Py_None && (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &DmaBuffer_Type))) {
        PyErr_SetString(PyExc_TypeError, "trim(): cls must be a DmaBuffer subtype");
        return NULL;
    }
    if (self->released) {
        PyErr_SetString(PyExc_ValueError, "DmaBuffer has been released");
        return NULL;
    }
    if (off < 0 || len < 0 || off > self->len || len > self->len - off) {
        PyErr_Format(PyExc_ValueError, "trim(%zd, %zd) is outside a DmaBuffer of %zd bytes", off, len,
                     self->len);
        return NULL;
    }
    PyTypeObject *type = cls == Py_None ? Py_TYPE(self) : (PyTypeObject *)cls;
    DmaBufferObject *child = (DmaBufferObject *)type->tp_alloc(type, 0);
    if (!child)
        return NULL;
    if (PyObject_GetBuffer((PyObject *)self, &child->parent_view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(child);
        return NULL;
    }
    Py_INCREF(self);
    child->parent = (PyObject *)self;
    child->ptr = self->ptr + off;
    child->len = len;
    child->alignment = self->alignment;
    /* The child is aligned only as far as its offset allows. */
    while (child->alignment > 1 && (((uintptr_t)child->ptr) & (uintptr_t)(child->alignment - 1)))
        child->alignment >>= 1;
    return (PyObject *)child;
}

static PyObject *dmabuf_copy_in(DmaBufferObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* copy_in(offset, src, start, count): copy src[start:start+count] (any contiguous bytes-like
     * object) to self[offset:offset+count]. The bytes are copied, nothing is kept. One call and
     * no memoryview slices: the output stream copies every byte it is given through here.
     * Plain stores on purpose: non-temporal ones made each copy cheaper (~6 us per cold 128 KiB
     * against up to ~23-40 us) but the device's reads of the buffer slower; the output stream
     * went from ~1.0x to ~0.95x fio with them (three alternating pairs). */
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "copy_in() takes 4 arguments (offset, src, start, count), got %zd", nargs);
        return NULL;
    }
    Py_ssize_t off = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t start = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t count = PyNumber_AsSsize_t(args[3], PyExc_OverflowError);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (self->released) {
        PyErr_SetString(PyExc_ValueError, "DmaBuffer has been released");
        return NULL;
    }
    Py_buffer src;
    if (PyObject_GetBuffer(args[1], &src, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    PyObject *res = NULL;
    if (off < 0 || count < 0 || off > self->len || count > self->len - off)
        PyErr_Format(PyExc_ValueError, "copy_in(%zd, ..., %zd bytes) is outside a DmaBuffer of %zd bytes", off, count,
                     self->len);
    else if (start < 0 || start > src.len || count > src.len - start)
        PyErr_Format(PyExc_ValueError, "copy_in(): source range [%zd, %zd) is outside a source of %zd bytes", start,
                     start + count, src.len);
    else {
        memcpy(self->ptr + off, (const char *)src.buf + start, (size_t)count);
        res = Py_None;
        Py_INCREF(res);
    }
    PyBuffer_Release(&src);
    return res;
}

static PyObject *dmabuf_get_address(DmaBufferObject *self, void *closure)
{
    if (self->released) {
        PyErr_SetString(PyExc_ValueError, "DmaBuffer has been released");
        return NULL;
    }
    return PyLong_FromVoidPtr(self->ptr);
}

static PyObject *dmabuf_get_alignment(DmaBufferObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->alignment);
}

static PyObject *dmabuf_get_released(DmaBufferObject *self, void *closure)
{
    return PyBool_FromLong(self->released);
}

static PyObject *dmabuf_get_exports(DmaBufferObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->exports);
}

static PyObject *dmabuf_get_freed(DmaBufferObject *self, void *closure)
{
    return PyBool_FromLong(self->freed);
}

static PyObject *dmabuf_get_parent(DmaBufferObject *self, void *closure)
{
    PyObject *p = self->parent ? self->parent : Py_None;
    Py_INCREF(p);
    return p;
}

static PyObject *dmabuf_repr(DmaBufferObject *self)
{
    return PyUnicode_FromFormat("<%s %zd bytes at %p align %zd%s>", Py_TYPE(self)->tp_name, self->len,
                                self->ptr, self->alignment, self->released ? " released" : "");
}

static PyMethodDef dmabuf_methods[] = {
    {"release", (PyCFunction)dmabuf_release, METH_NOARGS,
     "Give the memory back. If views or in-flight I/O still hold it, it is freed when they end."},
    {"trim", (PyCFunction)(void (*)(void))dmabuf_trim, METH_VARARGS | METH_KEYWORDS,
     "trim(offset, length, cls=None) -> a DmaBuffer sharing this memory."},
    {"copy_in", (PyCFunction)(void (*)(void))dmabuf_copy_in, METH_FASTCALL,
     "copy_in(offset, src, start, count): copy src[start:start+count] into this buffer at offset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef dmabuf_getset[] = {
    {"address", (getter)dmabuf_get_address, NULL, "Address of the first byte.", NULL},
    {"alignment", (getter)dmabuf_get_alignment, NULL, "Alignment of the first byte.", NULL},
    {"released", (getter)dmabuf_get_released, NULL, "True once release() was called.", NULL},
    {"exports", (getter)dmabuf_get_exports, NULL, "Live buffer exports (views, in-flight I/O).", NULL},
    {"parent", (getter)dmabuf_get_parent, NULL, "The buffer this one was trimmed from, or None.", NULL},
    {"freed", (getter)dmabuf_get_freed, NULL, "True once the memory itself is gone.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DmaBuffer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ioengine._dmabuf.DmaBuffer",
    .tp_basicsize = sizeof(DmaBufferObject),
    .tp_dealloc = (destructor)dmabuf_dealloc,
    .tp_repr = (reprfunc)dmabuf_repr,
    .tp_as_sequence = &dmabuf_as_sequence,
    .tp_as_mapping = &dmabuf_as_mapping,
    .tp_as_buffer = &dmabuf_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Aligned memory for O_DIRECT I/O, usable wherever a bytes-like object is.",
    .tp_weaklistoffset = offsetof(DmaBufferObject, weakrefs),
    .tp_methods = dmabuf_methods,
    .tp_getset = dmabuf_getset,
    .tp_new = dmabuf_new,
};

static struct PyModuleDef dmabuf_module = {
    PyModuleDef_HEAD_INIT, "ioengine._dmabuf", "Aligned DMA buffers.", -1, NULL,
};

PyMODINIT_FUNC PyInit__dmabuf(void)
{
    if (PyType_Ready(&DmaBuffer_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&dmabuf_module);
    if (!m)
        return NULL;
    Py_INCREF(&DmaBuffer_Type);
    if (PyModule_AddObject(m, "DmaBuffer", (PyObject *)&DmaBuffer_Type) < 0) {
        Py_DECREF(&DmaBuffer_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
