/* Timer: a callable that calls a user function and notes how long the call took.

   Metrics time every call of every user function (issue 3: every message, not a
   sample). In Python that costs two clock reads, two int objects, a subtraction
   and an append, about 130-200 ns an event; here it is one C call with the clock
   read straight into an int64 buffer, about 45-85 ns. The worker bins the buffer
   into the latency histogram about once a second (Timer.take).

   wallaroo_nb/engine/timing.py has the same Timer in Python for machines that
   cannot build this file; tests/unit/test_timing.py checks that both agree. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fn;
    long long *buf;      /* durations (ns) since the last take() */
    Py_ssize_t len, cap;
} Timer;

static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* vDSO on Linux: no system call */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int note(Timer *self, long long d) {
    if (self->len == self->cap) {
        Py_ssize_t cap = self->cap ? self->cap * 2 : 4096;
        long long *b = PyMem_Realloc(self->buf, (size_t)cap * sizeof(long long));
        if (b == NULL) {
            return -1;
        }
        self->buf = b;
        self->cap = cap;
    }
    self->buf[self->len++] = d < 0 ? 0 : d;
    return 0;
}

/* Calls that raise are timed too; the exception passes through unchanged. */
static PyObject *Timer_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames) {
    Timer *self = (Timer *)op;
    PyObject *fn = self->fn;
    if (fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Timer was cleared");
        return NULL;
    }
    Py_INCREF(fn);  /* the call may replace self->fn */
    long long t0 = now_ns();
    PyObject *r = PyObject_Vectorcall(fn, args, nargsf, kwnames);
    long long d = now_ns() - t0;
    Py_DECREF(fn);
    if (note(self, d) < 0 && r != NULL) {
        Py_DECREF(r);
        return PyErr_NoMemory();
    }
    return r;
}

static PyObject *Timer_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *fn;
    static char *kwlist[] = {"fn", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Timer", kwlist, &fn)) {
        return NULL;
    }
    if (!PyCallable_Check(fn)) {
        return PyErr_Format(PyExc_TypeError, "Timer needs a callable, got %.100s",
                            Py_TYPE(fn)->tp_name);
    }
    Timer *self = (Timer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(fn);
    self->fn = fn;
    self->vectorcall = Timer_vectorcall;
    return (PyObject *)self;
}

static int Timer_traverse(Timer *self, visitproc visit, void *arg) {
    Py_VISIT(self->fn);
    return 0;
}

static int Timer_clear(Timer *self) {
    Py_CLEAR(self->fn);
    return 0;
}

static void Timer_dealloc(Timer *self) {
    PyObject_GC_UnTrack(self);
    Timer_clear(self);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Timer_take(Timer *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyBytes_FromStringAndSize((const char *)self->buf,
                                              self->len * (Py_ssize_t)sizeof(long long));
    if (out != NULL) {
        self->len = 0;
    }
    return out;
}

static PyObject *Timer_get_fn(Timer *self, void *Py_UNUSED(closure)) {
    if (self->fn == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(self->fn);
    return self->fn;
}

static int Timer_set_fn(Timer *self, PyObject *value, void *Py_UNUSED(closure)) {
    if (value == NULL || !PyCallable_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "Timer.fn must be a callable");
        return -1;
    }
    Py_INCREF(value);
    Py_SETREF(self->fn, value);
    return 0;
}

static PyObject *Timer_get_pending(Timer *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(self->len);
}

static PyMethodDef Timer_methods[] = {
    {"take", (PyCFunction)Timer_take, METH_NOARGS,
     "The durations (ns) noted since the last take, as native int64 bytes; then none."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Timer_getset[] = {
    {"fn", (getter)Timer_get_fn, (setter)Timer_set_fn, "The function timed (replaceable).", NULL},
    {"pending", (getter)Timer_get_pending, NULL, "How many durations take() would return.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TimerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wallaroo_nb.engine._timer.Timer",
    .tp_doc = "Timer(fn): calls fn with the same arguments and notes each call's duration.",
    .tp_basicsize = sizeof(Timer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Timer_new,
    .tp_dealloc = (destructor)Timer_dealloc,
    .tp_traverse = (traverseproc)Timer_traverse,
    .tp_clear = (inquiry)Timer_clear,
    .tp_vectorcall_offset = offsetof(Timer, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = Timer_methods,
    .tp_getset = Timer_getset,
};

static struct PyModuleDef timer_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "wallaroo_nb.engine._timer",
    .m_doc = "Per-call timing of user functions, in C (see wallaroo_nb/engine/timing.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__timer(void) {
    if (PyType_Ready(&TimerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&timer_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&TimerType);
    if (PyModule_AddObject(m, "Timer", (PyObject *)&TimerType) < 0) {
        Py_DECREF(&TimerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
