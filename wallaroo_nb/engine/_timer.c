/* Timer: a callable that calls a user function and bins how long the call took.

   Metrics time every call of every user function (issue 3: every message, not a
   sample). In Python that costs two clock reads, two int objects, a subtraction
   and an append, then binning, about 250 ns an event; here it is one C call, two
   clock reads and a bin increment, under 100 ns. The bins are the log-linear ones
   of wallaroo_nb/metrics/histogram.py (same constants, checked by the tests), and
   take() returns histogram.to_wire's form, which the worker sends about once a
   second.

   wallaroo_nb/engine/timing.py has the same Timer in Python for machines that
   cannot build this file; tests/unit/test_timing.py checks that both agree. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

#define SUB_BITS 3
#define EXACT (1 << (SUB_BITS + 1))  /* values below this have a bin each */
#define N_BINS 320                   /* as in histogram.py: up to 2**42 ns */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fn;
    /* since the last take(); sum cannot overflow: the calls run one after another,
       so it is at most the wall time since the last take */
    long long count, min, max, sum;
    long long bins[N_BINS];
} Timer;

static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* vDSO on Linux: no system call, ~17 ns */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int bin_of(long long v) {
    if (v < EXACT) {
        return v > 0 ? (int)v : 0;
    }
    int shift = (64 - __builtin_clzll((unsigned long long)v)) - (SUB_BITS + 1);
    long long b = ((long long)shift << SUB_BITS) + (v >> shift);
    return b < N_BINS ? (int)b : N_BINS - 1;
}

static inline void note(Timer *self, long long d) {
    if (d < 0) {
        d = 0;
    }
    self->bins[bin_of(d)]++;
    if (self->count == 0) {
        self->min = self->max = d;
    } else if (d < self->min) {
        self->min = d;
    } else if (d > self->max) {
        self->max = d;
    }
    self->count++;
    self->sum += d;
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
    note(self, d);
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
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* {"n", "min", "max", "sum", "bins": [bin, count, ...]}: histogram.to_wire's form. */
static PyObject *Timer_take(Timer *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *bins = PyList_New(0);
    if (bins == NULL) {
        return NULL;
    }
    for (int b = 0; b < N_BINS; b++) {
        if (self->bins[b] == 0) {
            continue;
        }
        PyObject *pb = PyLong_FromLong(b), *pc = PyLong_FromLongLong(self->bins[b]);
        int bad = pb == NULL || pc == NULL || PyList_Append(bins, pb) < 0
                  || PyList_Append(bins, pc) < 0;
        Py_XDECREF(pb);
        Py_XDECREF(pc);
        if (bad) {
            Py_DECREF(bins);
            return NULL;
        }
    }
    PyObject *out = Py_BuildValue("{s:L,s:L,s:L,s:L,s:N}", "n", self->count, "min", self->min,
                                  "max", self->max, "sum", self->sum, "bins", bins);
    if (out != NULL) {
        memset(self->bins, 0, sizeof self->bins);
        self->count = self->min = self->max = self->sum = 0;
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
    return PyLong_FromLongLong(self->count);
}

static PyObject *timer_bin_of(PyObject *Py_UNUSED(module), PyObject *arg) {
    long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromLong(bin_of(v));
}

static PyMethodDef module_methods[] = {
    {"bin_of", timer_bin_of, METH_O, "The bin a duration (ns) goes to (as histogram.bin_of)."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Timer_methods[] = {
    {"take", (PyCFunction)Timer_take, METH_NOARGS,
     "The calls timed since the last take, in histogram.to_wire's form; then none."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Timer_getset[] = {
    {"fn", (getter)Timer_get_fn, (setter)Timer_set_fn, "The function timed (replaceable).", NULL},
    {"pending", (getter)Timer_get_pending, NULL, "How many calls take() would report.", NULL},
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
    .m_methods = module_methods,
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
    if (PyModule_AddIntConstant(m, "N_BINS", N_BINS) < 0
        || PyModule_AddIntConstant(m, "SUB_BITS", SUB_BITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
