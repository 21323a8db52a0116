/* A bounded cache of the object allocator's freed arenas, for the length of an ingest.
 *
 * CPython's small-object allocator (pymalloc) takes its memory from the OS in arenas of
 * ARENA_SIZE bytes (1 MiB on 64-bit 3.11) and gives an arena back (munmap) as soon as the
 * last object in it is freed. An ingest batch makes and drops a few hundred thousand
 * small bytes objects (digests, keys, sealed records), so every batch empties and
 * unmaps tens of arenas and maps them again for the next: each of their pages then costs
 * a page fault and the kernel's zeroing (issue 17: ~130k faults, ~1 s of CPU per 1M-row
 * load on the machine of docs/BENCHMARKS.md).
 *
 * retain(cap) installs an arena allocator that keeps up to cap freed arenas and hands
 * them out again before it asks the previous allocator for new ones; release() gives the
 * kept arenas back to that allocator and puts it back. Calls nest (an ingest inside an
 * ingest's process): only the outermost release restores. Every arena still comes from
 * the previous allocator and goes back to it, whichever allocator is installed when it
 * is freed, so installing and removing this one while objects are alive is safe.
 *
 * All of it runs with the GIL held (pymalloc's own rule): no locks.
 *
 * What a kept arena holds: the bytes of objects freed in it, as any arena pymalloc keeps
 * in use does, until it is reused or released (the ingest's end). Nothing leaves the
 * process.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_KEPT 4096

static PyObjectArenaAllocator previous;
static struct {
    void *ptr;
    size_t size;
} kept[MAX_KEPT];
static Py_ssize_t n_kept = 0, cap = 0, depth = 0;
static int installed = 0;  /* this allocator is in the chain (perhaps under another) */
static unsigned long long reused = 0, fresh = 0;

static void *keeping_alloc(void *ctx, size_t size) {
    (void)ctx;
    for (Py_ssize_t i = n_kept - 1; i >= 0; i--) {
        if (kept[i].size == size) {
            void *p = kept[i].ptr;
            kept[i] = kept[--n_kept];
            reused++;
            return p;
        }
    }
    fresh++;
    return previous.alloc(previous.ctx, size);
}

static void keeping_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    if (n_kept < cap) {
        kept[n_kept].ptr = ptr;
        kept[n_kept].size = size;
        n_kept++;
        return;
    }
    previous.free(previous.ctx, ptr, size);
}

static void give_back(void) {
    while (n_kept > 0) {
        n_kept--;
        previous.free(previous.ctx, kept[n_kept].ptr, kept[n_kept].size);
    }
}

/* retain(cap) -> None: keep up to cap freed arenas (the largest cap of nested calls). */
static PyObject *retain(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t want;
    if (!PyArg_ParseTuple(args, "n", &want)) return NULL;
    if (want < 0 || want > MAX_KEPT) {
        PyErr_Format(PyExc_ValueError, "cap must be 0..%d arenas", MAX_KEPT);
        return NULL;
    }
    if (!installed) {
        PyObject_GetArenaAllocator(&previous);
        PyObjectArenaAllocator mine = {NULL, keeping_alloc, keeping_free};
        PyObject_SetArenaAllocator(&mine);
        installed = 1;
    }
    if (depth == 0) cap = 0;
    depth++;
    if (want > cap) cap = want;
    Py_RETURN_NONE;
}

/* release() -> None: undo one retain(); the outermost gives the kept arenas back and puts
 * the previous allocator back (unless another was installed over this one since: then
 * this one stays, keeping nothing, and passes every call through). */
static PyObject *release(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    if (depth == 0) {
        PyErr_SetString(PyExc_RuntimeError, "release() without retain()");
        return NULL;
    }
    if (--depth > 0) Py_RETURN_NONE;
    cap = 0;
    give_back();
    PyObjectArenaAllocator now;
    PyObject_GetArenaAllocator(&now);
    if (now.alloc == keeping_alloc && now.free == keeping_free) {
        PyObject_SetArenaAllocator(&previous);
        installed = 0;
    }
    Py_RETURN_NONE;
}

/* stats() -> (installed, depth, cap, kept, reused, fresh) */
static PyObject *stats(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return Py_BuildValue("(innnKK)", installed, depth, cap, n_kept, reused, fresh);
}

static PyMethodDef methods[] = {
    {"retain", retain, METH_VARARGS, "Keep up to cap freed object arenas for reuse."},
    {"release", release, METH_NOARGS, "Undo one retain(); the last gives the arenas back."},
    {"stats", stats, METH_NOARGS, "(installed, depth, cap, kept, reused, fresh)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_arenas",
    "A bounded cache of pymalloc's freed arenas (private to vault.arenas).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__arenas(void) { return PyModule_Create(&module); }
