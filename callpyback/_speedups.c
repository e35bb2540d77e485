/* callpyback._speedups: the compiled twin of the call engine's success path.
 *
 * The pure-Python engine (callpyback/_engine.py) is complete and stays the reference: this
 * module runs the *success path* of the plans it can represent (callpyback/_cengine.py decides
 * which, and describes them to it as a Plan), and hands everything else to Python:
 *
 *   - a call that does not bind to the function's signature, or a function whose defaults were
 *     reassigned, is run by the Python wrapper itself (it raises the same TypeError, at the same
 *     place, before any observer ran);
 *   - an exception raised by the function goes to a Python continuation (_cengine.failed) that
 *     runs the engine's failure step for that attempt, then tells us what to do;
 *   - a PRE_EXECUTION observer raising KeyboardInterrupt/SystemExit goes to another one.
 *
 * What one call does here is, step by step, what _engine._Writer's template does for the same
 * plan: the same observers in the same order, with the same injected values, isolated the same
 * way, guarded against observing themselves through the same per-thread list, with the same
 * deferral near the recursion limit.  The difference is that no Python frame of ours runs.
 *
 * Two entry points:
 *   - ObservedFunction (decorator mode): a vectorcall object that stands for the Python wrapper
 *     (its "twin"), forwarding every attribute to it, so that it introspects as that function;
 *   - in place (the import hook): the function object keeps its identity and its (Python
 *     engine) code; its vectorcall pointer is set to ours, and the plan is the last constant of
 *     its code.  Where the interpreter honours the pointer (3.9, 3.10, 3.12+; on 3.11 only calls
 *     made from C), calls come here; anything else runs the Python engine's code, which does
 *     the same thing more slowly.
 *
 * Also here: Recorder, the C accumulator behind MetricsObserver's and TimingObserver's
 * per-function bindings, and ThreadActive, the per-thread list of running observers that both
 * engines use as their re-entrancy guard.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <frameobject.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <time.h>
#endif

#define ABI_VERSION 1 /* _cengine checks it: a stale build is not used */

#if PY_VERSION_HEX < 0x03090000
#error "callpyback._speedups needs CPython 3.9 or newer"
#endif

#if defined(_MSC_VER)
#define CPB_TLS __declspec(thread)
#else
#define CPB_TLS _Thread_local
#endif

#ifndef Py_NewRef
static inline PyObject *cpb_newref(PyObject *o) { Py_INCREF(o); return o; }
#define Py_NewRef(o) cpb_newref((PyObject *)(o))
#endif
#ifndef Py_XNewRef
static inline PyObject *cpb_xnewref(PyObject *o) { Py_XINCREF(o); return o; }
#define Py_XNewRef(o) cpb_xnewref((PyObject *)(o))
#endif

/* --- exceptions, across versions ---------------------------------------------------------- */

/* Take the raised exception (normalized), leaving none set. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise ``exc`` again, untouched (its own traceback); steals the reference. */
static void
restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, tb);
#endif
}

/* The exception being handled (as in an ``except`` block), and setting it. */
static PyObject *
get_handled(void)
{
#if PY_VERSION_HEX >= 0x030B0000
    return PyErr_GetHandledException();
#else
    PyObject *type, *value, *tb;
    PyErr_GetExcInfo(&type, &value, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void
set_handled(PyObject *exc) /* borrowed; NULL or None: nothing is being handled */
{
#if PY_VERSION_HEX >= 0x030B0000
    PyErr_SetHandledException(exc == Py_None ? NULL : exc);
#else
    if (exc == NULL || exc == Py_None) {
        PyErr_SetExcInfo(NULL, NULL, NULL);
    }
    else {
        PyErr_SetExcInfo(Py_NewRef(Py_TYPE(exc)), Py_NewRef(exc), PyException_GetTraceback(exc));
    }
#endif
}

/* Raise ``exc`` as ``raise exc`` would inside ``except handled:`` (context chained), with
 * ``cause`` as ``raise exc from cause`` if not NULL.  Borrowed references. */
static void
raise_in(PyObject *exc, PyObject *handled, PyObject *cause)
{
    PyObject *saved = get_handled();
    if (handled != NULL)
        set_handled(handled);
    if (cause != NULL)
        PyException_SetCause(exc, Py_NewRef(cause)); /* also sets __suppress_context__ */
    if (PyExceptionInstance_Check(exc)) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    }
    else {
        PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
    }
    if (handled != NULL) {
        PyObject *raised = take_exception();
        set_handled(saved);
        restore_exception(raised);
    }
    Py_XDECREF(saved);
}

/* --- interned names and the engine's objects ---------------------------------------------- */

static PyObject *s_a, *s__state, *s__attempt, *s__time, *s__value, *s__start, *s_arguments,
    *s_metadata, *s_timestamp, *s_local_variables, *s_signature, *s_function, *s_target,
    *s_success, *s_qualname, *s_failures, *s_count, *s_sum, *s_min, *s_max, *s__zero,
    *s__buckets, *s_active_key;

/* Set by configure() from _cengine (the engine's own objects, so both engines share them). */
static PyObject *g_AANY;        /* list: non-empty while an async dispatch awaits an observer */
static PyObject *g_ACV;         /* ContextVar of the registrations async dispatch runs */
static PyObject *g_DEFERRED;    /* [stack]: what could not run near the recursion limit */
static PyObject *g_drain;       /* _engine._drain */
static PyObject *g_obs_failed;  /* _engine._obs_failed(reg, exc) */
static PyObject *g_obs_base;    /* _engine._obs_base(reg, exc, pending) */
static PyObject *g_late_notify; /* _engine._late_notify(reg, call, args) */
static PyObject *g_late_failure;/* _engine._late_failure(p, c, info, args, kwargs, t0, n, e) */
static PyObject *g_new_context; /* _context.new_context */
static PyObject *g_result_type; /* _context.ExecutionResult */
static PyObject *g_NC;          /* _engine.NEEDS_CONTEXT */
static PyObject *g_failed;      /* _cengine.failed: the failure step of one attempt */
static PyObject *g_pre_failed;  /* _cengine.pre_interrupted */
static PyObject *g_S_EXEC;      /* ExecutionState.EXECUTING */
static PyObject *g_perf_counter;/* time.perf_counter: read in C when a time source uses it */
static Py_ssize_t g_res_value = -1, g_res_time = -1; /* ExecutionResult slot offsets */
static Py_ssize_t g_reg_failures = -1;               /* Registration.failures slot offset */
static PyTypeObject *g_reg_type;                     /* Registration */
static int g_configured;

static vectorcallfunc g_default_vectorcall; /* what a plain Python function's pointer is */

static PyObject *g_zero_int, *g_one_int, *g_zero_float;

/* --- the clock ------------------------------------------------------------------------------ */

/* time.perf_counter() read in C, bit for bit what the builtin returns (checked at import). */
static int g_fast_clock_ok;

static int
fast_clock(double *out)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_PerfCounterRaw(&t) < 0)
        return -1;
    *out = PyTime_AsSecondsDouble(t);
    return 0;
#elif defined(__linux__)
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    /* as _PyTime_AsSecondsDouble */
    if (ns % 1000000000 == 0)
        *out = (double)(ns / 1000000000);
    else
        *out = (double)ns / 1e9;
    return 0;
#else
    (void)out;
    PyErr_SetString(PyExc_RuntimeError, "no fast clock on this platform");
    return -1;
#endif
}

/* ======================================================================================== */
/* ThreadActive: the per-thread registry of observers being notified (the re-entrancy guard) */
/* ======================================================================================== */

/* Each thread's registry (an Active) lives in its thread-state dict (so it dies with the
 * thread); a C thread-local caches it, keyed by the thread state's unique id.  ``_engine._TL`` is replaced
 * by this object, so ``_TL.a`` is the same dict for both engines. */

/* Active: one thread's registry, a tiny identity set with the dict operations the Python
 * engine's templates use (``r in act``, ``act[r] = None``, ``del act[r]``, ``bool(act)``).
 * Rarely more than one or two entries: a scan by identity is cheaper than a dict, whose
 * insert/delete cycle also reallocates its keys every few calls.  Registrations compare by
 * identity (no ``__eq__``), so the semantics are the dict's. */
typedef struct {
    PyObject_HEAD
    PyObject **items;
    Py_ssize_t n, cap;
} Active;

static void
Active_dealloc(Active *self)
{
    for (Py_ssize_t i = 0; i < self->n; i++)
        Py_DECREF(self->items[i]);
    PyMem_Free(self->items);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline Py_ssize_t
active_index(Active *a, PyObject *key)
{
    for (Py_ssize_t i = a->n - 1; i >= 0; i--)
        if (a->items[i] == key)
            return i;
    return -1;
}

static int
active_add(Active *a, PyObject *key)
{
    if (active_index(a, key) >= 0)
        return 0;
    if (a->n == a->cap) {
        Py_ssize_t cap = a->cap ? a->cap * 2 : 8;
        PyObject **items = PyMem_Realloc(a->items, (size_t)cap * sizeof(PyObject *));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        a->items = items;
        a->cap = cap;
    }
    a->items[a->n++] = Py_NewRef(key);
    return 0;
}

/* 0: removed, 1: not there */
static int
active_remove(Active *a, PyObject *key)
{
    Py_ssize_t i = active_index(a, key);
    if (i < 0)
        return 1;
    PyObject *item = a->items[i];
    a->n--;
    if (i < a->n)
        memmove(&a->items[i], &a->items[i + 1], (size_t)(a->n - i) * sizeof(PyObject *));
    Py_DECREF(item);
    return 0;
}

static Py_ssize_t
Active_len(Active *self)
{
    return self->n;
}

static int
Active_contains(Active *self, PyObject *key)
{
    return active_index(self, key) >= 0;
}

static PyObject *
Active_getitem(Active *self, PyObject *key)
{
    if (active_index(self, key) < 0) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
Active_setitem(Active *self, PyObject *key, PyObject *value)
{
    if (value != NULL)
        return active_add(self, key);
    if (active_remove(self, key)) {
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    return 0;
}

static PyObject *
Active_keys(Active *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(self->n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->n; i++)
        PyList_SET_ITEM(out, i, Py_NewRef(self->items[i]));
    return out;
}

static PyObject *
Active_clear(Active *self, PyObject *Py_UNUSED(ignored))
{
    while (self->n) {
        PyObject *item = self->items[--self->n];
        Py_DECREF(item);
    }
    Py_RETURN_NONE;
}

static PyMappingMethods Active_mapping = {
    .mp_length = (lenfunc)Active_len,
    .mp_subscript = (binaryfunc)Active_getitem,
    .mp_ass_subscript = (objobjargproc)Active_setitem,
};

static PySequenceMethods Active_sequence = {
    .sq_length = (lenfunc)Active_len,
    .sq_contains = (objobjproc)Active_contains,
};

static PyMethodDef Active_methods[] = {
    {"keys", (PyCFunction)Active_keys, METH_NOARGS, "The registrations being notified."},
    {"clear", (PyCFunction)Active_clear, METH_NOARGS, "Forget them all (a fork's child)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ActiveType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callpyback._speedups.Active",
    .tp_doc = "One thread's registrations being notified (the re-entrancy guard).",
    .tp_basicsize = sizeof(Active),
    .tp_dealloc = (destructor)Active_dealloc,
    .tp_as_mapping = &Active_mapping,
    .tp_as_sequence = &Active_sequence,
    .tp_methods = Active_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

typedef struct {
    PyObject_HEAD
    PyObject *list;
    uint64_t id;
} Holder;

static CPB_TLS uint64_t tl_id;
static CPB_TLS PyObject *tl_list; /* borrowed: owned by the Holder in the thread-state dict */

static void
Holder_dealloc(Holder *self)
{
    /* The thread state's dict is being cleared: forget the cached pointer if it was ours. */
    if (tl_id == self->id && tl_list == self->list) {
        tl_list = NULL;
        tl_id = 0;
    }
    Py_XDECREF(self->list);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject HolderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callpyback._speedups._Holder",
    .tp_basicsize = sizeof(Holder),
    .tp_dealloc = (destructor)Holder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* Borrowed reference to this thread's list (NULL with an exception set on failure). */
static PyObject *
active_list(void)
{
    PyThreadState *ts = PyThreadState_Get();
    uint64_t id = PyThreadState_GetID(ts);
    if (id == tl_id && tl_list != NULL)
        return tl_list;
    PyObject *dict = PyThreadState_GetDict();
    if (dict == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "callpyback: no thread state dict");
        return NULL;
    }
    PyObject *holder = PyDict_GetItemWithError(dict, s_active_key);
    if (holder == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Holder *h = PyObject_New(Holder, &HolderType);
        if (h == NULL)
            return NULL;
        h->id = id;
        h->list = (PyObject *)PyObject_New(Active, &ActiveType);
        if (h->list != NULL) {
            ((Active *)h->list)->items = NULL;
            ((Active *)h->list)->n = ((Active *)h->list)->cap = 0;
        }
        if (h->list == NULL) {
            Py_DECREF(h);
            return NULL;
        }
        if (PyDict_SetItem(dict, s_active_key, (PyObject *)h) < 0) {
            Py_DECREF(h);
            return NULL;
        }
        holder = (PyObject *)h;
        Py_DECREF(h); /* the dict holds it */
    }
    if (!Py_IS_TYPE(holder, &HolderType)) {
        PyErr_SetString(PyExc_RuntimeError, "callpyback: thread-state entry replaced");
        return NULL;
    }
    ((Holder *)holder)->id = id;
    tl_id = id;
    tl_list = ((Holder *)holder)->list;
    return tl_list;
}

typedef struct {
    PyObject_HEAD
} ThreadActive;

static PyObject *
ThreadActive_getattro(PyObject *self, PyObject *name)
{
    if (PyUnicode_Check(name) && PyUnicode_Compare(name, s_a) == 0) {
        PyObject *list = active_list();
        return list ? Py_NewRef(list) : NULL;
    }
    return PyObject_GenericGetAttr(self, name);
}

static PyTypeObject ThreadActiveType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callpyback._speedups.ThreadActive",
    .tp_doc = "Per-thread state of the re-entrancy guard: ``.a`` is this thread's registry of the "
              "registrations being notified.",
    .tp_basicsize = sizeof(ThreadActive),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_getattro = ThreadActive_getattro,
    .tp_new = PyType_GenericNew,
};

/* ======================================================================================== */
/* Recorder: a per-function accumulator for MetricsObserver / TimingObserver                 */
/* ======================================================================================== */

/* Counters, the in-flight count and histogram buckets, updated in C under the GIL (so exact
 * under threads), folded into the observer's Histogram when it is read.  The bucket of a value
 * is Histogram.add's: floor(log(v) / log(gamma)), zero below 1 ns, clamped at 1e7 s. */

typedef struct {
    int32_t key;
    uint64_t count;
} Bucket;

typedef struct {
    PyObject_HEAD
    double inv;          /* 1 / log(gamma) */
    double threshold;    /* done(t) escalates at or above it (if has_threshold) */
    int has_threshold;
    PyObject *escalate;  /* what done() returns then (NEEDS_CONTEXT) */
    /* live state */
    Py_ssize_t in_flight, max_in_flight;
    /* since the last fold */
    uint64_t events, calls, retries;
    uint64_t tallies[5]; /* success, failure, recovered, cancelled, interrupted */
    uint64_t count, zero;
    double sum, min, max;
    Bucket *table;
    Py_ssize_t size, used; /* open addressing, size a power of 2 (0: none yet) */
} Recorder;

#define EMPTY_KEY INT32_MIN

static int
table_grow(Recorder *r)
{
    Py_ssize_t size = r->size ? r->size * 2 : 16;
    Bucket *table = PyMem_Malloc((size_t)size * sizeof(Bucket));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        table[i].key = EMPTY_KEY;
        table[i].count = 0;
    }
    for (Py_ssize_t i = 0; i < r->size; i++) {
        if (r->table[i].key == EMPTY_KEY)
            continue;
        size_t j = ((uint32_t)r->table[i].key * 2654435761u) & (size - 1);
        while (table[j].key != EMPTY_KEY)
            j = (j + 1) & (size - 1);
        table[j] = r->table[i];
    }
    PyMem_Free(r->table);
    r->table = table;
    r->size = size;
    return 0;
}

static int
table_add(Recorder *r, int32_t key, uint64_t n)
{
    if (r->size == 0 || (r->used + 1) * 2 > r->size) {
        if (table_grow(r) < 0)
            return -1;
    }
    size_t mask = (size_t)r->size - 1;
    size_t j = ((uint32_t)key * 2654435761u) & mask;
    while (r->table[j].key != EMPTY_KEY && r->table[j].key != key)
        j = (j + 1) & mask;
    if (r->table[j].key == EMPTY_KEY) {
        r->table[j].key = key;
        r->used++;
    }
    r->table[j].count += n;
    return 0;
}

#define HIST_MIN 1e-9
#define HIST_MAX 1e7

static int
rec_value(Recorder *r, double v)
{
    r->count++;
    if (v != v) { /* NaN (a broken time source): counted, in no bucket and in no sum */
        r->zero++;
        return 0;
    }
    r->sum += v;
    if (v < r->min)
        r->min = v;
    if (v > r->max)
        r->max = v;
    if (v < HIST_MIN) {
        r->zero++;
        return 0;
    }
    if (v > HIST_MAX)
        v = HIST_MAX;
    double k = floor(log(v) * r->inv);
    return table_add(r, (int32_t)k, 1);
}

static inline void
rec_start(Recorder *r)
{
    r->events++;
    r->in_flight++;
    if (r->in_flight > r->max_in_flight)
        r->max_in_flight = r->in_flight;
}

static inline void
rec_ended(Recorder *r)
{
    r->events++;
    r->calls++;
    if (r->in_flight > 0) /* a call that started before the observer was attached */
        r->in_flight--;
}

/* done(t): a first-attempt success; returns a borrowed result (None or escalate). */
static PyObject *
rec_done(Recorder *r, double t)
{
    if (r->has_threshold && t >= r->threshold)
        return r->escalate; /* update(context) records it, and reports the slow call */
    rec_ended(r);
    r->tallies[0]++;
    if (rec_value(r, t) < 0)
        return NULL;
    return Py_None;
}

static void
rec_reset(Recorder *r)
{
    r->events = r->calls = r->retries = 0;
    memset(r->tallies, 0, sizeof(r->tallies));
    r->count = r->zero = 0;
    r->sum = 0.0;
    r->min = Py_HUGE_VAL;
    r->max = -Py_HUGE_VAL;
    for (Py_ssize_t i = 0; i < r->size; i++) {
        r->table[i].key = EMPTY_KEY;
        r->table[i].count = 0;
    }
    r->used = 0;
}

static int
Recorder_init(Recorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"inv_log_gamma", "threshold", "escalate", NULL};
    double inv;
    PyObject *threshold = Py_None, *escalate = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "d|OO:Recorder", kwlist, &inv, &threshold,
                                     &escalate))
        return -1;
    self->inv = inv;
    if (threshold != Py_None) {
        self->threshold = PyFloat_AsDouble(threshold);
        if (self->threshold == -1.0 && PyErr_Occurred())
            return -1;
        self->has_threshold = 1;
    }
    else {
        self->has_threshold = 0;
    }
    Py_XSETREF(self->escalate, Py_NewRef(escalate));
    self->in_flight = self->max_in_flight = 0;
    rec_reset(self);
    return 0;
}

static void
Recorder_dealloc(Recorder *self)
{
    Py_XDECREF(self->escalate);
    PyMem_Free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Recorder_start(Recorder *self, PyObject *unused)
{
    rec_start(self);
    Py_RETURN_NONE;
}

static PyObject *
Recorder_done(Recorder *self, PyObject *arg)
{
    double t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *res = rec_done(self, t);
    return res ? Py_NewRef(res) : NULL;
}

/* end(code, t, attempt): any other ending (failure, recovery, retries, cancellation,
 * interruption, or a success after a retry); t may be None (no duration). */
static PyObject *
Recorder_end(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "end(code, execution_time, attempt)");
        return NULL;
    }
    long code = PyLong_AsLong(args[0]);
    if (code == -1 && PyErr_Occurred())
        return NULL;
    if (code < 0 || code > 4) {
        PyErr_SetString(PyExc_ValueError, "outcome code must be 0..4");
        return NULL;
    }
    long attempt = PyLong_AsLong(args[2]);
    if (attempt == -1 && PyErr_Occurred())
        return NULL;
    double t = 0.0;
    int timed = args[1] != Py_None;
    if (timed) {
        t = PyFloat_AsDouble(args[1]);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
    }
    rec_ended(self);
    self->tallies[code]++;
    if (attempt > 1)
        self->retries += (uint64_t)(attempt - 1);
    if (timed && rec_value(self, t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Recorder_add(Recorder *self, PyObject *arg)
{
    double t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred())
        return NULL;
    self->events++;
    if (rec_value(self, t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* fold_into(histogram): add what was recorded since the last fold to ``histogram`` (a
 * callpyback._histogram.Histogram) and return (events, calls, tallies, retries), or None if
 * nothing happened; then start afresh.  The histogram is only touched once every value is
 * computed, so a failure (out of memory) leaves both as they were. */
static PyObject *
Recorder_fold_into(Recorder *self, PyObject *hist)
{
    if (self->events == 0)
        Py_RETURN_NONE;
    PyObject *out = NULL, *buckets = NULL, *count = NULL, *sum = NULL, *zero = NULL,
             *mn = NULL, *mx = NULL, *delta = NULL;
    PyObject *pending = PyList_New(0); /* (key, new count) pairs */
    if (pending == NULL)
        return NULL;
    if (self->count) {
        buckets = PyObject_GetAttr(hist, s__buckets);
        if (buckets == NULL || !PyDict_Check(buckets)) {
            if (buckets != NULL)
                PyErr_SetString(PyExc_TypeError, "Histogram._buckets is not a dict");
            goto done;
        }
        for (Py_ssize_t i = 0; i < self->size; i++) {
            if (self->table[i].key == EMPTY_KEY)
                continue;
            PyObject *key = PyLong_FromLong(self->table[i].key);
            if (key == NULL)
                goto done;
            PyObject *old = PyDict_GetItemWithError(buckets, key);
            if (old == NULL && PyErr_Occurred()) {
                Py_DECREF(key);
                goto done;
            }
            PyObject *add = PyLong_FromUnsignedLongLong(self->table[i].count);
            PyObject *now = add && old ? PyNumber_Add(old, add) : Py_XNewRef(add);
            Py_XDECREF(add);
            if (now == NULL) {
                Py_DECREF(key);
                goto done;
            }
            PyObject *pair = PyTuple_Pack(2, key, now);
            Py_DECREF(key);
            Py_DECREF(now);
            if (pair == NULL || PyList_Append(pending, pair) < 0) {
                Py_XDECREF(pair);
                goto done;
            }
            Py_DECREF(pair);
        }
        PyObject *c0 = PyObject_GetAttr(hist, s_count);
        PyObject *s0 = c0 ? PyObject_GetAttr(hist, s_sum) : NULL;
        PyObject *z0 = s0 ? PyObject_GetAttr(hist, s__zero) : NULL;
        PyObject *n0 = z0 ? PyObject_GetAttr(hist, s_min) : NULL;
        PyObject *x0 = n0 ? PyObject_GetAttr(hist, s_max) : NULL;
        if (x0 != NULL) {
            delta = PyLong_FromUnsignedLongLong(self->count);
            count = delta ? PyNumber_Add(c0, delta) : NULL;
            Py_XDECREF(delta);
            delta = PyFloat_FromDouble(self->sum);
            sum = delta ? PyNumber_Add(s0, delta) : NULL;
            Py_XDECREF(delta);
            delta = PyLong_FromUnsignedLongLong(self->zero);
            zero = delta ? PyNumber_Add(z0, delta) : NULL;
            Py_CLEAR(delta);
            double lo = PyFloat_AsDouble(n0), hi = PyFloat_AsDouble(x0);
            if (!PyErr_Occurred()) {
                mn = PyFloat_FromDouble(self->min < lo ? self->min : lo);
                mx = PyFloat_FromDouble(self->max > hi ? self->max : hi);
            }
        }
        Py_XDECREF(c0);
        Py_XDECREF(s0);
        Py_XDECREF(z0);
        Py_XDECREF(n0);
        Py_XDECREF(x0);
        if (count == NULL || sum == NULL || zero == NULL || mn == NULL || mx == NULL)
            goto done;
    }
    out = Py_BuildValue("(KK(KKKKK)K)", (unsigned long long)self->events,
                        (unsigned long long)self->calls, (unsigned long long)self->tallies[0],
                        (unsigned long long)self->tallies[1],
                        (unsigned long long)self->tallies[2],
                        (unsigned long long)self->tallies[3],
                        (unsigned long long)self->tallies[4],
                        (unsigned long long)self->retries);
    if (out == NULL)
        goto done;
    if (self->count) {
        /* From here on: stores of objects already built. */
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pending); i++) {
            PyObject *pair = PyList_GET_ITEM(pending, i);
            if (PyDict_SetItem(buckets, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1)) < 0)
                goto fail;
        }
        if (PyObject_SetAttr(hist, s_count, count) < 0 || PyObject_SetAttr(hist, s_sum, sum) < 0 ||
            PyObject_SetAttr(hist, s__zero, zero) < 0 || PyObject_SetAttr(hist, s_min, mn) < 0 ||
            PyObject_SetAttr(hist, s_max, mx) < 0)
            goto fail;
    }
    rec_reset(self);
    goto done;
fail:
    Py_CLEAR(out);
done:
    Py_XDECREF(pending);
    Py_XDECREF(buckets);
    Py_XDECREF(count);
    Py_XDECREF(sum);
    Py_XDECREF(zero);
    Py_XDECREF(mn);
    Py_XDECREF(mx);
    return out;
}

static PyObject *
Recorder_get_in_flight(Recorder *self, void *c)
{
    return PyLong_FromSsize_t(self->in_flight);
}

static PyObject *
Recorder_get_max_in_flight(Recorder *self, void *c)
{
    return PyLong_FromSsize_t(self->max_in_flight);
}

static int
Recorder_set_max_in_flight(Recorder *self, PyObject *value, void *c)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete max_in_flight");
        return -1;
    }
    Py_ssize_t v = PyLong_AsSsize_t(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    self->max_in_flight = v;
    return 0;
}

static PyObject *
Recorder_get_events(Recorder *self, void *c)
{
    return PyLong_FromUnsignedLongLong(self->events);
}

static PyMethodDef Recorder_methods[] = {
    {"start", (PyCFunction)Recorder_start, METH_NOARGS, "A call started."},
    {"done", (PyCFunction)Recorder_done, METH_O,
     "A first-attempt success took t seconds (returns the escalation at the threshold)."},
    {"end", (PyCFunction)(void (*)(void))Recorder_end, METH_FASTCALL,
     "end(code, t, attempt): any other ending."},
    {"add", (PyCFunction)Recorder_add, METH_O, "A duration, for the histogram only."},
    {"fold_into", (PyCFunction)Recorder_fold_into, METH_O,
     "Fold what was recorded into a Histogram; returns the counters (or None)."},
    {NULL}};

static PyGetSetDef Recorder_getset[] = {
    {"in_flight", (getter)Recorder_get_in_flight, NULL, "Calls running now.", NULL},
    {"max_in_flight", (getter)Recorder_get_max_in_flight, (setter)Recorder_set_max_in_flight,
     "The most calls running at once.", NULL},
    {"events", (getter)Recorder_get_events, NULL, "Events since the last fold.", NULL},
    {NULL}};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callpyback._speedups.Recorder",
    .tp_doc = "Per-function counters and histogram buckets, updated in C (see metrics.py).",
    .tp_basicsize = sizeof(Recorder),
    .tp_dealloc = (destructor)Recorder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = Recorder_methods,
    .tp_getset = Recorder_getset,
    .tp_init = (initproc)Recorder_init,
    .tp_new = PyType_GenericNew,
};

/* ======================================================================================== */
/* Plan: one pipeline's success path for one function                                       */
/* ======================================================================================== */

/* Injectable sources, in the order _cengine.SOURCES names them. */
enum {
    SRC_CONTEXT, SRC_ARGUMENTS, SRC_METADATA, SRC_TIMESTAMP, SRC_LOCALS, SRC_SIGNATURE,
    SRC_FUNCTION, SRC_INFO, SRC_TARGET, SRC_ARGS, SRC_KWARGS, SRC_EXCEPTION, SRC_STATE,
    SRC_RESULT, SRC_TIME, SRC_VALUE, SRC_ATTEMPT, SRC_OUTCOME, SRC_COUNT
};

enum { PH_PRE = 0, PH_OK = 1, PH_DONE = 2 };

/* What a step does (see _Writer.one). */
enum {
    K_CALL,  /* a direct callback: fn(*injected) (escalating to update(context) on NC) */
    K_CTX,   /* fn(context): an observer's update, or a callback without a signature */
    K_START, /* a binding's start() */
    K_DONE,  /* a binding's done(t) (+ escalation, + batch flush) */
    K_BG     /* a background observer: submit_call((reg, info, state, args, kwargs, ...)) */
};

#define MAX_INJECT 32

typedef struct {
    int n, npos;
    unsigned char src[MAX_INJECT];
    PyObject *kwnames; /* tuple or NULL */
} Inject;

typedef struct {
    int kind;
    int guard, escalates, has_gate, gate_ctx; /* gate_ctx: the gate takes the context */
    int needs_ctx; /* built before the observer's try block (its failure escapes the call) */
    PyObject *reg, *fn, *update, *gate, *pending, *flush, *state;
    Py_ssize_t batch;
    Inject inj, gate_inj;
    Recorder *rec; /* K_START/K_DONE on a Recorder's own method: called directly */
    PyObject *append_to; /* K_DONE whose done is list.append: appended directly */
} Step;

typedef struct {
    int generic; /* the Python wrapper is (*args, **kwargs) */
    int argcount, posonly, kwonly, varargs, varkw;
    PyObject *names; /* tuple: co_varnames[:argcount + kwonly] */
} Shape;

typedef struct {
    PyObject_HEAD
    PyObject *f;        /* what runs the function (the original; in place, its private copy) */
    PyObject *defaults_from; /* the function whose defaults a call binds with (exact shapes) */
    PyObject *info;     /* FunctionInfo */
    PyObject *pipeline; /* Pipeline (for the continuations) */
    PyObject *ts;       /* the time source */
    PyObject *mono;     /* its monotonic() (NULL: not timed) */
    PyObject *submit;   /* _background.submit_call (or NULL) */
    PyObject *states[3];
    int timed, fast_clock, guarded, wants_result, sees_failures, observers, precheck, empty;
    int inplace;
    int needs_ctx_pre; /* unused; reserved */
    Shape shape;
    Step *steps[3];
    int nsteps[3];
} Plan;

static PyTypeObject PlanType;

static void
clear_step(Step *s)
{
    Py_CLEAR(s->reg);
    Py_CLEAR(s->fn);
    Py_CLEAR(s->update);
    Py_CLEAR(s->gate);
    Py_CLEAR(s->pending);
    Py_CLEAR(s->flush);
    Py_CLEAR(s->state);
    Py_CLEAR(s->inj.kwnames);
    Py_CLEAR(s->gate_inj.kwnames);
    Py_CLEAR(s->rec);
    Py_CLEAR(s->append_to);
}

static int
Plan_traverse(Plan *self, visitproc visit, void *arg)
{
    Py_VISIT(self->f);
    Py_VISIT(self->defaults_from);
    Py_VISIT(self->info);
    Py_VISIT(self->pipeline);
    Py_VISIT(self->ts);
    Py_VISIT(self->mono);
    Py_VISIT(self->submit);
    for (int p = 0; p < 3; p++) {
        Py_VISIT(self->states[p]);
        for (int i = 0; i < self->nsteps[p]; i++) {
            Step *s = &self->steps[p][i];
            Py_VISIT(s->reg);
            Py_VISIT(s->fn);
            Py_VISIT(s->update);
            Py_VISIT(s->gate);
            Py_VISIT(s->pending);
            Py_VISIT(s->flush);
            Py_VISIT(s->state);
            Py_VISIT(s->rec);
            Py_VISIT(s->append_to);
        }
    }
    Py_VISIT(self->shape.names);
    return 0;
}

static int
Plan_clear(Plan *self)
{
    Py_CLEAR(self->f);
    Py_CLEAR(self->defaults_from);
    Py_CLEAR(self->info);
    Py_CLEAR(self->pipeline);
    Py_CLEAR(self->ts);
    Py_CLEAR(self->mono);
    Py_CLEAR(self->submit);
    for (int p = 0; p < 3; p++) {
        Py_CLEAR(self->states[p]);
        for (int i = 0; i < self->nsteps[p]; i++)
            clear_step(&self->steps[p][i]);
    }
    Py_CLEAR(self->shape.names);
    return 0;
}

static void
Plan_dealloc(Plan *self)
{
    PyObject_GC_UnTrack(self);
    Plan_clear(self);
    for (int p = 0; p < 3; p++) {
        PyMem_Free(self->steps[p]);
        self->steps[p] = NULL;
        self->nsteps[p] = 0;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
parse_inject(PyObject *spec, Inject *inj, const char *what)
{
    /* spec: (codes tuple, npos, kwnames tuple or None) */
    PyObject *codes, *kwnames;
    int npos;
    if (!PyArg_ParseTuple(spec, "O!iO", &PyTuple_Type, &codes, &npos, &kwnames))
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(codes);
    if (n > MAX_INJECT || npos < 0 || npos > n) {
        PyErr_Format(PyExc_ValueError, "%s: bad injection", what);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long c = PyLong_AsLong(PyTuple_GET_ITEM(codes, i));
        if (c < 0 || c >= SRC_COUNT) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "%s: bad source code", what);
            return -1;
        }
        inj->src[i] = (unsigned char)c;
    }
    inj->n = (int)n;
    inj->npos = npos;
    if (kwnames != Py_None) {
        if (!PyTuple_Check(kwnames) || PyTuple_GET_SIZE(kwnames) != n - npos) {
            PyErr_Format(PyExc_ValueError, "%s: keyword names do not match", what);
            return -1;
        }
        inj->kwnames = Py_NewRef(kwnames);
    }
    else if (n != npos) {
        PyErr_Format(PyExc_ValueError, "%s: keyword names missing", what);
        return -1;
    }
    return 0;
}

static int
recorder_method(PyObject *fn, PyCFunction which, Recorder **out)
{
    if (PyCFunction_Check(fn) && PyCFunction_GET_FUNCTION(fn) == which) {
        PyObject *self = PyCFunction_GET_SELF(fn);
        if (self != NULL && Py_IS_TYPE(self, &RecorderType)) {
            *out = (Recorder *)Py_NewRef(self);
            return 1;
        }
    }
    return 0;
}

static int
parse_step(PyObject *spec, Step *s)
{
    /* (kind, reg, fn, update, guard, escalates, gate, gate_inject or None, inject or None,
     *  pending, batch, flush, needs_context) */
    int kind, guard, escalates, needs_ctx;
    PyObject *reg, *fn, *update, *gate, *gate_inj, *inj, *pending, *flush;
    Py_ssize_t batch;
    if (!PyArg_ParseTuple(spec, "iOOOppOOOOnOp", &kind, &reg, &fn, &update, &guard, &escalates,
                          &gate, &gate_inj, &inj, &pending, &batch, &flush, &needs_ctx))
        return -1;
    if (kind < K_CALL || kind > K_BG) {
        PyErr_SetString(PyExc_ValueError, "bad step kind");
        return -1;
    }
    s->kind = kind;
    s->guard = guard;
    s->escalates = escalates;
    s->needs_ctx = needs_ctx;
    s->reg = Py_NewRef(reg);
    s->fn = Py_NewRef(fn);
    s->update = Py_NewRef(update);
    if (gate != Py_None) {
        s->has_gate = 1;
        s->gate = Py_NewRef(gate);
        if (gate_inj == Py_None)
            s->gate_ctx = 1;
        else if (parse_inject(gate_inj, &s->gate_inj, "gate") < 0)
            return -1;
    }
    if (inj != Py_None && parse_inject(inj, &s->inj, "observer") < 0)
        return -1;
    if (pending != Py_None) {
        if (!PyList_Check(pending) || batch <= 0) {
            PyErr_SetString(PyExc_ValueError, "a batching binding needs a list and a size");
            return -1;
        }
        s->pending = Py_NewRef(pending);
        s->batch = batch;
        s->flush = Py_NewRef(flush);
    }
    if (kind == K_START)
        recorder_method(fn, (PyCFunction)Recorder_start, &s->rec);
    else if (kind == K_DONE && !recorder_method(fn, (PyCFunction)Recorder_done, &s->rec)) {
        /* list.append (the pure FunctionStats' done): append in C, no call */
        if (PyCFunction_Check(fn) && PyCFunction_GET_SELF(fn) != NULL &&
            PyList_CheckExact(PyCFunction_GET_SELF(fn))) {
            PyObject *name = PyObject_GetAttrString(fn, "__name__");
            if (name == NULL)
                return -1;
            int is_append = PyUnicode_Check(name) &&
                            PyUnicode_CompareWithASCIIString(name, "append") == 0;
            Py_DECREF(name);
            if (is_append)
                s->append_to = Py_NewRef(PyCFunction_GET_SELF(fn));
        }
    }
    return 0;
}

static PyObject *
Plan_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"f", "info", "pipeline", "time_source", "monotonic", "submit",
                             "states", "shape", "pre", "ok", "done", "wants_result",
                             "sees_failures", "inplace", "defaults_from", NULL};
    PyObject *defaults_from = Py_None;
    PyObject *f, *info, *pipeline, *ts, *mono, *submit, *states, *shape, *phases[3];
    int wants_result, sees_failures, inplace;
    if (!g_configured) {
        PyErr_SetString(PyExc_RuntimeError, "callpyback._speedups is not configured");
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOO!OO!O!O!ppp|O:Plan", kwlist, &f, &info,
                                     &pipeline, &ts, &mono, &submit, &PyTuple_Type, &states,
                                     &shape, &PyTuple_Type, &phases[0], &PyTuple_Type,
                                     &phases[1], &PyTuple_Type, &phases[2], &wants_result,
                                     &sees_failures, &inplace, &defaults_from))
        return NULL;
    if (PyTuple_GET_SIZE(states) != 3) {
        PyErr_SetString(PyExc_ValueError, "states: (PRE_EXECUTION, POST_SUCCESS, COMPLETED)");
        return NULL;
    }
    Plan *self = (Plan *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->f = Py_NewRef(f);
    self->info = Py_NewRef(info);
    self->pipeline = Py_NewRef(pipeline);
    self->ts = Py_NewRef(ts);
    self->timed = mono != Py_None;
    self->mono = self->timed ? Py_NewRef(mono) : NULL;
    self->fast_clock = self->timed && g_fast_clock_ok && mono == g_perf_counter;
    self->submit = submit != Py_None ? Py_NewRef(submit) : NULL;
    for (int p = 0; p < 3; p++)
        self->states[p] = Py_NewRef(PyTuple_GET_ITEM(states, p));
    self->wants_result = wants_result;
    self->sees_failures = sees_failures;
    self->inplace = inplace;
    if (shape == Py_None) {
        self->shape.generic = 1;
    }
    else {
        PyObject *names;
        if (!PyArg_ParseTuple(shape, "iiippO!", &self->shape.argcount, &self->shape.posonly,
                              &self->shape.kwonly, &self->shape.varargs, &self->shape.varkw,
                              &PyTuple_Type, &names))
            goto fail;
        if (PyTuple_GET_SIZE(names) != self->shape.argcount + self->shape.kwonly) {
            PyErr_SetString(PyExc_ValueError, "shape: names do not match the counts");
            goto fail;
        }
        self->shape.names = Py_NewRef(names);
        if (defaults_from == Py_None)
            defaults_from = f;
        if (!PyFunction_Check(defaults_from)) {
            PyErr_SetString(PyExc_TypeError, "an exact shape needs a plain function's defaults");
            goto fail;
        }
        self->defaults_from = Py_NewRef(defaults_from);
    }
    int any = 0;
    for (int p = 0; p < 3; p++) {
        Py_ssize_t n = PyTuple_GET_SIZE(phases[p]);
        if (n) {
            self->steps[p] = PyMem_Calloc((size_t)n, sizeof(Step));
            if (self->steps[p] == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            self->nsteps[p] = (int)i + 1; /* so that clear() sees what was filled */
            if (parse_step(PyTuple_GET_ITEM(phases[p], i), &self->steps[p][i]) < 0)
                goto fail;
            Step *s = &self->steps[p][i];
            s->state = Py_NewRef(self->states[p]);
            if (s->guard)
                self->guarded = 1;
            if (s->kind == K_BG && self->submit == NULL) {
                PyErr_SetString(PyExc_ValueError, "a background step needs submit");
                goto fail;
            }
        }
        any |= n > 0;
    }
    self->observers = any;
    /* A call that would not bind must not reach an observer: check it where one could see it
     * (PRE_EXECUTION, or a failure); elsewhere the function raises the same TypeError. */
    self->precheck = !self->shape.generic && (self->nsteps[PH_PRE] > 0 || sees_failures);
    self->empty = !any && !sees_failures;
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static PyObject *
Plan_repr(Plan *self)
{
    return PyUnicode_FromFormat("<callpyback._speedups.Plan pre=%d ok=%d done=%d%s%s>",
                                self->nsteps[0], self->nsteps[1], self->nsteps[2],
                                self->timed ? (self->fast_clock ? " timed(fast)" : " timed") : "",
                                self->sees_failures ? " sees-failures" : "");
}

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callpyback._speedups.Plan",
    .tp_doc = "A pipeline's success path for one function, as the C engine runs it.",
    .tp_basicsize = sizeof(Plan),
    .tp_dealloc = (destructor)Plan_dealloc,
    .tp_repr = (reprfunc)Plan_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Plan_traverse,
    .tp_clear = (inquiry)Plan_clear,
    .tp_new = Plan_new,
};

/* --- binding the caller's arguments to the signature ------------------------------------------ */

static Py_ssize_t
find_name(PyObject *names, Py_ssize_t lo, Py_ssize_t hi, PyObject *key)
{
    for (Py_ssize_t i = lo; i < hi; i++)
        if (PyTuple_GET_ITEM(names, i) == key)
            return i;
    for (Py_ssize_t i = lo; i < hi; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (PyUnicode_Check(key) && PyUnicode_Compare(name, key) == 0)
            return i;
    }
    if (PyErr_Occurred())
        PyErr_Clear();
    return -1;
}

static PyObject *
kwdefault(PyObject *kwdefaults, PyObject *name)
{
    if (kwdefaults == NULL || !PyDict_Check(kwdefaults))
        return NULL;
    PyObject *v = PyDict_GetItemWithError(kwdefaults, name);
    if (v == NULL && PyErr_Occurred())
        PyErr_Clear();
    return v;
}

#define MAX_PARAMS 64

/* Whether CPython would bind this call to the shape without a TypeError: 1 yes, 0 no (or not
 * sure: the Python wrapper takes the call).  ``where`` gets, per parameter, 1 + the index of
 * the keyword giving it (0: positional or default). */
static int
shape_binds(Shape *sh, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
            PyObject *defaults, PyObject *kwdefaults, Py_ssize_t *where)
{
    Py_ssize_t ac = sh->argcount, total = sh->argcount + sh->kwonly;
    Py_ssize_t ndefaults = defaults != NULL ? PyTuple_GET_SIZE(defaults) : 0;
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    if (total > MAX_PARAMS)
        return 0;
    if (nargs > ac && !sh->varargs)
        return 0;
    for (Py_ssize_t i = 0; i < total; i++)
        where[i] = 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        Py_ssize_t i = find_name(sh->names, sh->posonly, total, key);
        if (i >= 0) {
            if (i < nargs || where[i])
                return 0; /* given twice */
            where[i] = j + 1;
        }
        else if (!sh->varkw) {
            return 0; /* unexpected (or positional-only passed by keyword) */
        }
    }
    for (Py_ssize_t i = nargs; i < ac; i++)
        if (!where[i] && i < ac - ndefaults)
            return 0; /* missing */
    for (Py_ssize_t i = ac; i < total; i++)
        if (!where[i] && kwdefault(kwdefaults, PyTuple_GET_ITEM(sh->names, i)) == NULL)
            return 0; /* missing keyword-only */
    return 1;
}

/* The call as the engine's observers see it: ``args`` (the positional parameters, defaults
 * applied, then *args) and ``kwargs`` (keyword-only parameters, then **kwargs). */
static int
shape_bind(Shape *sh, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           PyObject *defaults, PyObject *kwdefaults, PyObject **args_out, PyObject **kwargs_out)
{
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    *args_out = *kwargs_out = NULL;
    if (sh->generic) {
        *args_out = PyTuple_New(nargs);
        if (*args_out == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < nargs; i++)
            PyTuple_SET_ITEM(*args_out, i, Py_NewRef(args[i]));
        *kwargs_out = PyDict_New();
        if (*kwargs_out == NULL)
            goto fail;
        for (Py_ssize_t j = 0; j < nkw; j++)
            if (PyDict_SetItem(*kwargs_out, PyTuple_GET_ITEM(kwnames, j), args[nargs + j]) < 0)
                goto fail;
        return 0;
    }
    Py_ssize_t where[MAX_PARAMS];
    if (shape_binds(sh, args, nargs, kwnames, defaults, kwdefaults, where) != 1) {
        PyErr_SetString(PyExc_SystemError, "callpyback: binding a call that does not bind");
        return -1;
    }
    Py_ssize_t ac = sh->argcount, total = sh->argcount + sh->kwonly;
    Py_ssize_t extra = nargs > ac ? nargs - ac : 0;
    Py_ssize_t ndefaults = defaults != NULL ? PyTuple_GET_SIZE(defaults) : 0;
    *args_out = PyTuple_New(ac + extra);
    if (*args_out == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < ac; i++) {
        PyObject *v;
        if (i < nargs)
            v = args[i];
        else if (where[i])
            v = args[nargs + where[i] - 1];
        else
            v = PyTuple_GET_ITEM(defaults, i - (ac - ndefaults));
        PyTuple_SET_ITEM(*args_out, i, Py_NewRef(v));
    }
    for (Py_ssize_t i = 0; i < extra; i++)
        PyTuple_SET_ITEM(*args_out, ac + i, Py_NewRef(args[ac + i]));
    *kwargs_out = PyDict_New();
    if (*kwargs_out == NULL)
        goto fail;
    for (Py_ssize_t i = ac; i < total; i++) {
        PyObject *name = PyTuple_GET_ITEM(sh->names, i);
        PyObject *v = where[i] ? args[nargs + where[i] - 1] : kwdefault(kwdefaults, name);
        if (v == NULL || PyDict_SetItem(*kwargs_out, name, v) < 0)
            goto fail;
    }
    if (sh->varkw) {
        for (Py_ssize_t j = 0; j < nkw; j++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, j);
            Py_ssize_t i = find_name(sh->names, sh->posonly, total, key);
            if (i >= 0)
                continue; /* bound to a named parameter */
            if (PyDict_SetItem(*kwargs_out, key, args[nargs + j]) < 0)
                goto fail;
        }
    }
    return 0;
fail:
    Py_CLEAR(*args_out);
    Py_CLEAR(*kwargs_out);
    return -1;
}

/* ======================================================================================== */
/* One call                                                                                  */
/* ======================================================================================== */

typedef struct {
    Plan *plan;
    PyObject *owner; /* whose defaults the call binds with (the twin, or the function itself) */
    PyObject *const *args;
    Py_ssize_t nargs;
    PyObject *kwnames;
    PyObject *act;      /* this thread's list (borrowed) */
    PyObject *args_t;   /* the observers' args tuple (lazy) */
    PyObject *kwargs_d; /* their kwargs dict (lazy; each consumer gets a copy) */
    PyObject *ctx;      /* the context, once something needs it */
    PyObject *pending;  /* a KeyboardInterrupt/SystemExit an observer raised */
    PyObject *v;        /* the value (borrowed from the call's own reference) */
    PyObject *result;   /* ExecutionResult (lazy) */
    double t0d, td;     /* start, duration as doubles (when the clock gives floats) */
    PyObject *t0, *t;   /* ... as objects (lazy, or the clock's own objects) */
    int phase;
} Call;

static PyObject *
call_t0(Call *c)
{
    if (c->t0 == NULL)
        c->t0 = PyFloat_FromDouble(c->t0d);
    return c->t0;
}

static PyObject *
call_t(Call *c)
{
    if (c->t == NULL)
        c->t = PyFloat_FromDouble(c->td);
    return c->t;
}

static int
call_bind(Call *c)
{
    if (c->args_t != NULL)
        return 0;
    PyObject *defaults = NULL, *kwdefaults = NULL;
    if (!c->plan->shape.generic) {
        PyFunctionObject *fo = (PyFunctionObject *)c->plan->defaults_from;
        defaults = fo->func_defaults;
        kwdefaults = fo->func_kwdefaults;
    }
    return shape_bind(&c->plan->shape, c->args, c->nargs, c->kwnames, defaults, kwdefaults,
                      &c->args_t, &c->kwargs_d);
}

static PyObject * /* new reference */
call_kwargs(Call *c)
{
    if (call_bind(c) < 0)
        return NULL;
    return PyDict_Copy(c->kwargs_d);
}

static int
set_attr_checked(PyObject *o, PyObject *name, PyObject *v)
{
    return v == NULL ? -1 : PyObject_SetAttr(o, name, v);
}

/* Read the clock: 0 with *d (and maybe *obj) set; -1 with an exception. */
static int
read_clock(Plan *p, double *d, PyObject **obj)
{
    if (p->fast_clock) {
        *obj = NULL;
        return fast_clock(d);
    }
    PyObject *now = PyObject_CallNoArgs(p->mono);
    if (now == NULL)
        return -1;
    if (PyFloat_CheckExact(now)) {
        *d = PyFloat_AS_DOUBLE(now);
        *obj = now;
        return 0;
    }
    *d = NAN; /* a clock of its own kind: arithmetic on the objects */
    *obj = now;
    return 0;
}

/* The context, built here with what this point of the call knows (_Writer.ensure_ctx). */
static int
ensure_ctx(Call *c)
{
    if (c->ctx != NULL)
        return 0;
    Plan *p = c->plan;
    if (call_bind(c) < 0)
        return -1;
    PyObject *kwargs = PyDict_Copy(c->kwargs_d);
    if (kwargs == NULL)
        return -1;
    PyObject *start;
    if (c->phase == PH_PRE) {
        if (p->timed) {
            double d;
            PyObject *obj;
            if (read_clock(p, &d, &obj) < 0) {
                Py_DECREF(kwargs);
                return -1;
            }
            start = obj != NULL ? obj : PyFloat_FromDouble(d);
        }
        else {
            start = Py_NewRef(g_zero_float);
        }
    }
    else {
        start = Py_XNewRef(call_t0(c));
    }
    if (start == NULL) {
        Py_DECREF(kwargs);
        return -1;
    }
    PyObject *argv[] = {p->info, c->args_t, kwargs, p->ts, start};
    PyObject *ctx = PyObject_Vectorcall(g_new_context, argv, 5, NULL);
    Py_DECREF(kwargs);
    Py_DECREF(start);
    if (ctx == NULL)
        return -1;
    if (c->phase == PH_PRE) {
        if (PyObject_SetAttr(ctx, s__state, p->states[PH_PRE]) < 0)
            goto fail;
    }
    else {
        if (PyObject_SetAttr(ctx, s__attempt, g_one_int) < 0 ||
            set_attr_checked(ctx, s__time, call_t(c)) < 0 ||
            PyObject_SetAttr(ctx, s__value, c->v) < 0 ||
            PyObject_SetAttr(ctx, s__state, p->states[c->phase]) < 0)
            goto fail;
    }
    c->ctx = ctx;
    return 0;
fail:
    Py_DECREF(ctx);
    return -1;
}

static PyObject *
new_result(Call *c)
{
    PyTypeObject *type = (PyTypeObject *)g_result_type;
    PyObject *r = type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    PyObject *t = call_t(c);
    if (t == NULL) {
        Py_DECREF(r);
        return NULL;
    }
    PyObject **slot = (PyObject **)((char *)r + g_res_value);
    *slot = Py_NewRef(c->v);
    slot = (PyObject **)((char *)r + g_res_time);
    *slot = Py_NewRef(t);
    return r;
}

/* One injected value (new reference).  ``ensure``: build the context if a source needs it (a
 * callback's arguments); a gate reads whatever exists (None), as the template does. */
static PyObject *
inject_value(Call *c, int src, int ensure)
{
    Plan *p = c->plan;
    int pre = c->phase == PH_PRE;
    switch (src) {
    case SRC_CONTEXT:
    case SRC_ARGUMENTS:
    case SRC_METADATA:
    case SRC_TIMESTAMP:
    case SRC_LOCALS: {
        if (ensure && ensure_ctx(c) < 0)
            return NULL;
        PyObject *ctx = c->ctx != NULL ? c->ctx : Py_None;
        switch (src) {
        case SRC_CONTEXT:
            return Py_NewRef(ctx);
        case SRC_ARGUMENTS:
            return PyObject_GetAttr(ctx, s_arguments);
        case SRC_METADATA:
            return PyObject_GetAttr(ctx, s_metadata);
        case SRC_TIMESTAMP:
            return PyObject_GetAttr(ctx, s_timestamp);
        default:
            return PyObject_GetAttr(ctx, s_local_variables);
        }
    }
    case SRC_SIGNATURE:
        return PyObject_GetAttr(p->info, s_signature);
    case SRC_FUNCTION:
        return PyObject_GetAttr(p->info, s_function);
    case SRC_INFO:
        return Py_NewRef(p->info);
    case SRC_TARGET:
        return PyObject_GetAttr(p->info, s_target);
    case SRC_ARGS:
        if (call_bind(c) < 0)
            return NULL;
        return Py_NewRef(c->args_t);
    case SRC_KWARGS:
        return call_kwargs(c);
    case SRC_EXCEPTION:
        Py_RETURN_NONE;
    case SRC_STATE:
        return Py_NewRef(p->states[c->phase]);
    case SRC_ATTEMPT:
        return Py_NewRef(pre ? g_zero_int : g_one_int);
    default:
        break;
    }
    if (pre)
        Py_RETURN_NONE;
    switch (src) {
    case SRC_RESULT:
        if (c->result == NULL)
            c->result = new_result(c);
        return Py_XNewRef(c->result);
    case SRC_TIME:
        return Py_XNewRef(call_t(c));
    case SRC_VALUE:
        return Py_NewRef(c->v);
    default: /* SRC_OUTCOME */
        return Py_NewRef(s_success);
    }
}

/* Call ``fn`` with ``inj``'s values; ``values`` (MAX_INJECT) receives them (new references,
 * for the caller to release) so a deferred notification can be built from them. */
static PyObject *
call_injected(Call *c, PyObject *fn, Inject *inj, int ensure, PyObject **values, int *nvalues)
{
    PyObject *stack[MAX_INJECT + 1];
    *nvalues = 0;
    for (int i = 0; i < inj->n; i++) {
        PyObject *v = inject_value(c, inj->src[i], ensure);
        if (v == NULL)
            return NULL;
        values[i] = v;
        stack[i + 1] = v;
        *nvalues = i + 1;
    }
    return PyObject_Vectorcall(fn, stack + 1, (size_t)inj->npos | PY_VECTORCALL_ARGUMENTS_OFFSET,
                               inj->kwnames);
}

static void
release(PyObject **values, int n)
{
    for (int i = 0; i < n; i++)
        Py_DECREF(values[i]);
}

/* _DEFERRED[0] = ((fn, args), _DEFERRED[0]); steals ``args`` (may be NULL: an error is set). */
static int
defer(PyObject *fn, PyObject *args)
{
    if (args == NULL)
        return -1;
    PyObject *item = PyTuple_Pack(2, fn, args);
    Py_DECREF(args);
    if (item == NULL)
        return -1;
    PyObject *node = PyTuple_Pack(2, item, PyList_GET_ITEM(g_DEFERRED, 0));
    Py_DECREF(item);
    if (node == NULL)
        return -1;
    return PyList_SetItem(g_DEFERRED, 0, node); /* steals node */
}

/* An observer raised (the exception is set): isolate it as _Writer.isolate does.
 * ``late_fn``/``late_args`` (borrowed, may be NULL): how to run it again later if it never
 * started for lack of stack.  Returns 0 (isolated) or -1 (an exception escapes the call). */
static int
isolate(Call *c, Step *s, PyObject *late_fn, PyObject *late_args)
{
    PyObject *exc = take_exception();
    if (exc == NULL)
        return 0;
    int rc = 0;
    if (late_fn != NULL && late_args != NULL &&
        PyErr_GivenExceptionMatches(exc, PyExc_RecursionError)) {
        PyObject *tb = PyException_GetTraceback(exc);
        if (tb == NULL) /* it never started: run it later, from a shallower frame */
            rc = defer(g_late_notify, PyTuple_Pack(3, s->reg, late_fn, late_args));
        else
            rc = defer(g_obs_failed, PyTuple_Pack(2, s->reg, exc));
        Py_XDECREF(tb);
    }
    else if (PyErr_GivenExceptionMatches(exc, PyExc_Exception)) {
        PyObject *saved = get_handled();
        set_handled(exc);
        PyObject *argv[] = {s->reg, exc};
        PyObject *r = PyObject_Vectorcall(g_obs_failed, argv, 2, NULL);
        set_handled(saved);
        Py_XDECREF(saved);
        if (r != NULL) {
            Py_DECREF(r);
        }
        else {
            PyObject *err = take_exception();
            if (err != NULL && PyErr_GivenExceptionMatches(err, PyExc_Exception)) {
                Py_DECREF(err); /* no stack even to report it: later */
                rc = defer(g_obs_failed, PyTuple_Pack(2, s->reg, exc));
            }
            else if (err != NULL) {
                restore_exception(err);
                rc = -1;
            }
        }
    }
    else {
        PyObject *argv[] = {s->reg, exc, c->pending ? c->pending : Py_None};
        PyObject *r = PyObject_Vectorcall(g_obs_base, argv, 3, NULL);
        if (r == NULL) {
            rc = -1;
        }
        else if (r == Py_None) {
            Py_DECREF(r);
        }
        else {
            Py_XSETREF(c->pending, r);
        }
    }
    Py_DECREF(exc);
    return rc;
}

static inline PyObject **
reg_failures_slot(PyObject *reg)
{
    if (g_reg_failures >= 0 && Py_TYPE(reg) == g_reg_type)
        return (PyObject **)((char *)reg + g_reg_failures);
    return NULL;
}

/* ``if reg.failures: reg.failures = 0`` */
static int
reset_failures(PyObject *reg)
{
    PyObject **slot = reg_failures_slot(reg);
    if (slot != NULL) {
        PyObject *v = *slot;
        if (v == NULL || v == g_zero_int)
            return 0;
        int truth = PyObject_IsTrue(v);
        if (truth <= 0)
            return truth;
        Py_SETREF(*slot, Py_NewRef(g_zero_int));
        return 0;
    }
    PyObject *v = PyObject_GetAttr(reg, s_failures);
    if (v == NULL)
        return -1;
    int truth = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (truth <= 0)
        return truth;
    return PyObject_SetAttr(reg, s_failures, g_zero_int);
}

/* Whether ``reg`` is being notified on this thread (or by an awaiting async dispatch). */
static int
is_active(Call *c, PyObject *reg)
{
    if (active_index((Active *)c->act, reg) >= 0)
        return 1;
    int in;
    if (PyList_GET_SIZE(g_AANY)) {
        PyObject *regs;
        if (PyContextVar_Get(g_ACV, NULL, &regs) < 0)
            return -1;
        in = regs != NULL ? PySequence_Contains(regs, reg) : 0;
        Py_XDECREF(regs);
        return in;
    }
    return 0;
}

/* act[reg] = None / del act[reg], on the registry the Python engine's templates use too */
static int
push_active(Call *c, PyObject *reg)
{
    return active_add((Active *)c->act, reg);
}

static int
pop_active(Call *c, PyObject *reg)
{
    active_remove((Active *)c->act, reg); /* not there: someone cleared it (a fork's child) */
    return 0;
}

/* The escalation of a fast notification: ``reg.update(context)`` (inside the same try). */
static PyObject *
escalate(Call *c, Step *s)
{
    if (ensure_ctx(c) < 0)
        return NULL;
    return PyObject_CallOneArg(s->update, c->ctx);
}

/* One observer of one phase, as _Writer.one emits it.  0: done (isolated); -1: an exception
 * escapes the call (a gate's, or a BaseException from the isolation itself). */
static int
run_step(Call *c, Step *s)
{
    PyObject *values[MAX_INJECT];
    int nvalues = 0;
    if (s->has_gate) {
        PyObject *g;
        if (s->gate_ctx) {
            if (ensure_ctx(c) < 0)
                return -1;
            g = PyObject_CallOneArg(s->gate, c->ctx);
        }
        else {
            g = call_injected(c, s->gate, &s->gate_inj, 0, values, &nvalues);
            release(values, nvalues);
            nvalues = 0;
        }
        if (g == NULL)
            return -1;
        int truth = PyObject_IsTrue(g);
        Py_DECREF(g);
        if (truth < 0)
            return -1;
        if (!truth)
            return 0;
    }
    if (s->guard) {
        int active = is_active(c, s->reg);
        if (active < 0)
            return -1;
        if (active)
            return 0;
    }
    PyObject *res = NULL;
    PyObject *late_fn = NULL, *late_args = NULL;
    int rc = 0;
    if (s->kind == K_BG) {
        Plan *p = c->plan;
        PyObject *t0;
        if (call_bind(c) < 0)
            return -1;
        PyObject *kwargs = PyDict_Copy(c->kwargs_d);
        if (kwargs == NULL)
            return -1;
        PyObject *item;
        if (c->phase == PH_PRE) {
            if (p->timed) {
                double d;
                if (read_clock(p, &d, &t0) < 0) {
                    Py_DECREF(kwargs);
                    goto bg_failed;
                }
                if (t0 == NULL)
                    t0 = PyFloat_FromDouble(d);
            }
            else {
                t0 = Py_NewRef(g_zero_float);
            }
            item = t0 ? PyTuple_Pack(9, s->reg, p->info, s->state, c->args_t, kwargs, Py_None,
                                     Py_None, g_zero_int, t0)
                      : NULL;
            Py_XDECREF(t0);
        }
        else {
            PyObject *t = call_t(c), *start = call_t0(c);
            item = t && start ? PyTuple_Pack(9, s->reg, p->info, s->state, c->args_t, kwargs,
                                             c->v, t, g_one_int, start)
                              : NULL;
        }
        Py_DECREF(kwargs);
        if (item == NULL)
            goto bg_failed;
        res = PyObject_CallOneArg(p->submit, item);
        Py_DECREF(item);
    bg_failed:
        if (res == NULL)
            rc = isolate(c, s, NULL, NULL);
        else if (reset_failures(s->reg) < 0)
            rc = -1;
        Py_XDECREF(res);
        return rc;
    }
    if (s->guard && push_active(c, s->reg) < 0)
        return -1;
    if ((s->kind == K_CTX || (s->kind == K_CALL && s->needs_ctx)) && ensure_ctx(c) < 0) {
        rc = -1; /* as the template: the context is built before the observer's try block */
        goto out;
    }
    switch (s->kind) {
    case K_START:
        late_fn = s->fn;
        if (s->rec != NULL) {
            rec_start(s->rec);
            res = Py_NewRef(Py_None);
        }
        else {
            res = PyObject_CallNoArgs(s->fn);
        }
        break;
    case K_DONE: {
        late_fn = s->fn;
        PyObject *t = NULL;
        if (s->rec != NULL && !isnan(c->td) && c->t == NULL) {
            res = Py_XNewRef(rec_done(s->rec, c->td));
        }
        else {
            t = call_t(c);
            if (t == NULL)
                break;
            if (s->append_to != NULL) {
                res = PyList_Append(s->append_to, t) < 0 ? NULL : Py_NewRef(Py_None);
            }
            else {
                res = PyObject_CallOneArg(s->fn, t);
            }
        }
        if (res != NULL && s->escalates && res == g_NC) {
            Py_SETREF(res, escalate(c, s));
        }
        if (res != NULL && s->pending != NULL && PyList_GET_SIZE(s->pending) % s->batch == 0) {
            Py_SETREF(res, PyObject_CallNoArgs(s->flush));
        }
        if (res == NULL) {
            /* the late call gets the duration, as the template's (done, (t,)) */
            t = call_t(c);
            late_args = t ? PyTuple_Pack(1, t) : NULL;
            if (late_args == NULL)
                late_fn = NULL;
        }
        break;
    }
    case K_CTX:
        late_fn = s->fn;
        res = PyObject_CallOneArg(s->fn, c->ctx);
        if (res == NULL)
            late_args = PyTuple_Pack(1, c->ctx);
        break;
    default: /* K_CALL */
        late_fn = s->fn;
        res = call_injected(c, s->fn, &s->inj, 1, values, &nvalues);
        if (res != NULL && s->escalates && res == g_NC)
            Py_SETREF(res, escalate(c, s));
        if (res == NULL && nvalues == s->inj.n) {
            late_args = PyTuple_New(nvalues);
            if (late_args != NULL)
                for (int i = 0; i < nvalues; i++)
                    PyTuple_SET_ITEM(late_args, i, Py_NewRef(values[i]));
        }
        else if (res == NULL) {
            late_fn = NULL; /* its arguments could not even be computed: its failure */
        }
        break;
    }
    if (res == NULL) {
        if (late_fn != NULL && late_args == NULL && s->kind == K_START)
            late_args = PyTuple_New(0);
        if (late_fn != NULL && late_args == NULL)
            late_fn = NULL;
        /* an error building late_args replaced the observer's: it is isolated all the same */
        rc = isolate(c, s, late_fn, late_args);
    }
    else {
        Py_DECREF(res);
        if (reset_failures(s->reg) < 0)
            rc = -1;
    }
    Py_XDECREF(late_args);
    release(values, nvalues);
out:
    if (s->guard) {
        if (rc < 0) {
            PyObject *err = take_exception();
            pop_active(c, s->reg);
            restore_exception(err);
        }
        else if (pop_active(c, s->reg) < 0) {
            rc = -1;
        }
    }
    return rc;
}

static int
run_phase(Call *c, int phase)
{
    Plan *p = c->plan;
    c->phase = phase;
    for (int i = 0; i < p->nsteps[phase]; i++)
        if (run_step(c, &p->steps[phase][i]) < 0)
            return -1;
    return 0;
}

/* ``if _DEFERRED[0] is not None: try: _drain() except Exception: pass`` */
static int
drain(void)
{
    if (PyList_GET_ITEM(g_DEFERRED, 0) == Py_None)
        return 0;
    PyObject *r = PyObject_CallNoArgs(g_drain);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* The function raised: the failure step of this attempt, in Python (_cengine.failed). */
static PyObject *
failure(Call *c)
{
    Plan *p = c->plan;
    PyObject *exc = take_exception();
    if (!p->sees_failures || exc == NULL) {
        restore_exception(exc); /* nobody to tell and nothing to decide */
        return NULL;
    }
    if (call_bind(c) < 0 || call_t0(c) == NULL) {
        Py_DECREF(exc); /* cannot even describe the call: this error replaces it */
        return NULL;
    }
    PyObject *kwargs = PyDict_Copy(c->kwargs_d);
    if (kwargs == NULL) {
        Py_DECREF(exc);
        return NULL;
    }
    PyObject *argv[] = {p->pipeline, p->info, c->args_t, kwargs, c->t0,
                        c->ctx ? c->ctx : Py_None, exc};
    /* The step runs as if inside ``except BaseException as e:`` (sys.exc_info() is e). */
    PyObject *saved = get_handled();
    set_handled(exc);
    PyObject *action = PyObject_Vectorcall(g_failed, argv, 7, NULL);
    set_handled(saved);
    Py_XDECREF(saved);
    if (action == NULL) {
        PyObject *err = take_exception();
        if (err == NULL || !PyErr_GivenExceptionMatches(err, PyExc_Exception)) {
            Py_DECREF(kwargs);
            Py_DECREF(exc);
            restore_exception(err); /* as the template: only Exception is caught there */
            return NULL;
        }
        PyObject *tb = PyException_GetTraceback(err);
        PyTracebackObject *first = (PyTracebackObject *)tb;
#ifdef CPB_DEBUG
        fprintf(stderr, "failure: step raised %s, tb=%p next=%p\n", Py_TYPE(err)->tp_name, (void*)tb, tb ? (void*)first->tb_next : NULL);
        if (tb) { PyTracebackObject *x = first; while (x) { fprintf(stderr, "   %s\n", PyUnicode_AsUTF8(PyFrame_GetCode(x->tb_frame)->co_name)); x = x->tb_next; } }
#endif
        if (tb == NULL || first->tb_next == NULL) {
            /* no stack for the step: it all runs later; the exception stands */
            PyObject *kw2 = PyDict_Copy(c->kwargs_d);
            if (kw2 != NULL)
                defer(g_late_failure,
                      PyTuple_Pack(8, p->pipeline, c->ctx ? c->ctx : Py_None, p->info,
                                   c->args_t, kw2, c->t0, g_one_int, exc));
            Py_XDECREF(kw2);
            if (PyErr_Occurred())
                PyErr_Clear();
        }
        Py_XDECREF(tb);
        Py_DECREF(err);
        Py_DECREF(kwargs);
        restore_exception(exc);
        return NULL;
    }
    Py_DECREF(kwargs);
    if (action == Py_None) {
        Py_DECREF(action);
        restore_exception(exc);
        return NULL;
    }
    /* (1, value): recovered; (2, exc): raise exc from e; (3, exc): raise exc */
    PyObject *out = NULL;
    long code = PyTuple_Check(action) && PyTuple_GET_SIZE(action) == 2
                    ? PyLong_AsLong(PyTuple_GET_ITEM(action, 0))
                    : -1;
    if (code == 1) {
        out = Py_NewRef(PyTuple_GET_ITEM(action, 1));
    }
    else if (code == 2 || code == 3) {
        raise_in(PyTuple_GET_ITEM(action, 1), exc, code == 2 ? exc : NULL);
    }
    else {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "callpyback: bad failure action");
    }
    Py_DECREF(action);
    Py_DECREF(exc);
    return out;
}

/* A PRE_EXECUTION observer raised KeyboardInterrupt/SystemExit: the call is interrupted. */
static PyObject *
pre_interrupted(Call *c)
{
    Plan *p = c->plan;
    if (call_bind(c) < 0)
        return NULL;
    PyObject *kwargs = PyDict_Copy(c->kwargs_d);
    if (kwargs == NULL)
        return NULL;
    PyObject *argv[] = {p->pipeline, p->info, c->args_t, kwargs, c->ctx ? c->ctx : Py_None,
                        c->pending};
    PyObject *r = PyObject_Vectorcall(g_pre_failed, argv, 6, NULL);
    Py_DECREF(kwargs);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    raise_in(c->pending, NULL, NULL);
    return NULL;
}

static void
call_cleanup(Call *c)
{
    Py_XDECREF(c->args_t);
    Py_XDECREF(c->kwargs_d);
    Py_XDECREF(c->ctx);
    Py_XDECREF(c->pending);
    Py_XDECREF(c->result);
    Py_XDECREF(c->t0);
    Py_XDECREF(c->t);
}

static PyObject *
run_call(Call *c, size_t nargsf)
{
    Plan *p = c->plan;
    if (p->guarded) {
        c->act = active_list();
        if (c->act == NULL)
            return NULL;
    }
    if (p->nsteps[PH_PRE]) {
        if (run_phase(c, PH_PRE) < 0)
            return NULL;
        if (c->pending != NULL)
            return pre_interrupted(c);
    }
    if (p->timed) {
        PyObject *obj;
        if (read_clock(p, &c->t0d, &obj) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                return NULL;
            PyErr_Clear();
            c->t0d = 0.0;
        }
        else {
            c->t0 = obj;
        }
    }
    if (c->ctx != NULL) {
        if (set_attr_checked(c->ctx, s__start, call_t0(c)) < 0 ||
            PyObject_SetAttr(c->ctx, s__state, g_S_EXEC) < 0 ||
            PyObject_SetAttr(c->ctx, s__attempt, g_one_int) < 0)
            return NULL;
    }
    PyObject *v = PyObject_Vectorcall(p->f, c->args, nargsf, c->kwnames);
    if (v == NULL)
        return failure(c);
    c->v = v;
    if (p->timed) {
        PyObject *obj;
        double now;
        if (read_clock(p, &now, &obj) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                goto fail;
            PyErr_Clear(); /* no stack even for the clock */
            c->td = 0.0;
        }
        else if (obj == NULL || (PyFloat_CheckExact(obj) && c->t0 != NULL &&
                                 PyFloat_CheckExact(c->t0))) {
            c->td = now - c->t0d;
            Py_XDECREF(obj);
            if (c->td < 0.0)
                c->td = 0.0; /* a clock that went backwards: never a negative time */
        }
        else {
            /* a clock of its own kind: ``mono() - t0`` on its objects, as Python does */
            PyObject *start = call_t0(c);
            PyObject *t = start ? PyNumber_Subtract(obj, start) : NULL;
            Py_DECREF(obj);
            if (t == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_Exception))
                    goto fail;
                PyErr_Clear();
                c->td = 0.0;
            }
            else {
                int neg = PyObject_RichCompareBool(t, g_zero_float, Py_LT);
                if (neg < 0) {
                    Py_DECREF(t);
                    goto fail;
                }
                if (neg) {
                    Py_DECREF(t);
                    c->td = 0.0;
                }
                else {
                    c->t = t;
                    c->td = PyFloat_Check(t) ? PyFloat_AS_DOUBLE(t) : NAN;
                }
            }
        }
    }
    else {
        c->td = 0.0;
    }
    if (c->ctx != NULL) {
        if (set_attr_checked(c->ctx, s__time, call_t(c)) < 0 ||
            PyObject_SetAttr(c->ctx, s__value, v) < 0)
            goto fail;
    }
    if (p->wants_result) {
        c->result = new_result(c);
        if (c->result == NULL)
            goto fail;
    }
    if (c->ctx != NULL && PyObject_SetAttr(c->ctx, s__state, p->states[PH_OK]) < 0)
        goto fail;
    if (p->nsteps[PH_OK] && run_phase(c, PH_OK) < 0)
        goto fail;
    if (c->ctx != NULL && PyObject_SetAttr(c->ctx, s__state, p->states[PH_DONE]) < 0)
        goto fail;
    if (p->nsteps[PH_DONE] && run_phase(c, PH_DONE) < 0)
        goto fail;
    if (p->observers) {
        if (drain() < 0)
            goto fail;
        if (c->pending != NULL) {
            raise_in(c->pending, NULL, NULL);
            goto fail;
        }
    }
    return v;
fail:
    Py_DECREF(v);
    return NULL;
}

/* Run one call through ``plan``; ``owner`` holds the defaults the call binds with; ``delegate``
 * runs the call entirely in Python (the twin wrapper, or the function's own code). */
static PyObject *
plan_call(Plan *plan, PyObject *owner, PyObject *delegate, PyObject *const *args, size_t nargsf,
          PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (!plan->shape.generic) {
        PyFunctionObject *ow = (PyFunctionObject *)owner;
        PyFunctionObject *fo = (PyFunctionObject *)plan->defaults_from;
        PyObject *kd_o = ow->func_kwdefaults, *kd_f = fo->func_kwdefaults;
        int kd_same = kd_o == kd_f ||
                      ((kd_o == NULL || (PyDict_Check(kd_o) && PyDict_GET_SIZE(kd_o) == 0)) &&
                       (kd_f == NULL || (PyDict_Check(kd_f) && PyDict_GET_SIZE(kd_f) == 0)));
        if (ow->func_defaults != fo->func_defaults || !kd_same)
            goto python; /* defaults reassigned: the Python wrapper binds with its own */
        if (plan->precheck) {
            Py_ssize_t where[MAX_PARAMS];
            if (shape_binds(&plan->shape, args, nargs, kwnames, fo->func_defaults,
                            fo->func_kwdefaults, where) != 1)
                goto python; /* it raises the TypeError, before anything is notified */
        }
    }
    if (plan->empty)
        return PyObject_Vectorcall(plan->f, args, nargsf, kwnames);
    Call c;
    memset(&c, 0, sizeof(c));
    c.plan = plan;
    c.owner = owner;
    c.args = args;
    c.nargs = nargs;
    c.kwnames = kwnames != NULL && PyTuple_GET_SIZE(kwnames) ? kwnames : NULL;
    Py_INCREF(plan); /* a pipeline change may drop it while this call runs */
    PyObject *res = run_call(&c, nargsf);
    call_cleanup(&c);
    Py_DECREF(plan);
    return res;
python:
    if (plan->inplace)
        return g_default_vectorcall(delegate, args, nargsf, kwnames);
    return PyObject_Vectorcall(delegate, args, nargsf, kwnames);
}

/* ======================================================================================== */
/* ObservedFunction: decorator mode                                                          */
/* ======================================================================================== */

typedef struct {
    PyObject_HEAD
    PyObject *twin; /* the Python engine's wrapper: attributes, and every call Plan cannot take */
    PyObject *plan; /* Plan, or NULL (the twin takes every call) */
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
} Observed;

static PyObject *
Observed_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Observed *o = (Observed *)self;
    Plan *plan = (Plan *)o->plan;
    if (plan == NULL)
        return PyObject_Vectorcall(o->twin, args, nargsf, kwnames);
    return plan_call(plan, o->twin, o->twin, args, nargsf, kwnames);
}

static int
Observed_traverse(Observed *self, visitproc visit, void *arg)
{
    Py_VISIT(self->twin);
    Py_VISIT(self->plan);
    return 0;
}

static int
Observed_clear(Observed *self)
{
    Py_CLEAR(self->twin);
    Py_CLEAR(self->plan);
    return 0;
}

static void
Observed_dealloc(Observed *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    Observed_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Observed_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *twin, *plan = Py_None;
    static char *kwlist[] = {"twin", "plan", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|O:ObservedFunction", kwlist,
                                     &PyFunction_Type, &twin, &plan))
        return NULL;
    if (plan != Py_None && !Py_IS_TYPE(plan, &PlanType)) {
        PyErr_SetString(PyExc_TypeError, "plan must be a Plan or None");
        return NULL;
    }
    Observed *self = (Observed *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->twin = Py_NewRef(twin);
    self->plan = plan == Py_None ? NULL : Py_NewRef(plan);
    self->vectorcall = Observed_vectorcall;
    return (PyObject *)self;
}

static PyObject *
Observed_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

/* Attributes are the twin's (a plain function's: __name__, __code__, __defaults__, __dict__,
 * __wrapped__...), except what this type itself defines (__call__, __get__, __reduce__...);
 * ``__class__`` is FunctionType, so isinstance() and inspect see a function. */
static PyObject *
Observed_getattro(PyObject *self, PyObject *name)
{
    Observed *o = (Observed *)self;
    if (PyUnicode_Check(name)) {
        if (PyUnicode_CompareWithASCIIString(name, "__class__") == 0)
            return Py_NewRef((PyObject *)&PyFunction_Type);
        if (PyUnicode_CompareWithASCIIString(name, "__doc__") != 0 &&
            PyUnicode_CompareWithASCIIString(name, "__module__") != 0 &&
            _PyType_Lookup(Py_TYPE(self), name) != NULL)
            return PyObject_GenericGetAttr(self, name);
    }
    return PyObject_GetAttr(o->twin, name);
}

static int
Observed_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    Observed *o = (Observed *)self;
    return PyObject_SetAttr(o->twin, name, value);
}

static PyObject *
Observed_repr(PyObject *self)
{
    Observed *o = (Observed *)self;
    PyObject *qualname = PyObject_GetAttr(o->twin, s_qualname);
    if (qualname == NULL)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("<function %S at %p>", qualname, self);
    Py_DECREF(qualname);
    return r;
}

static PyObject *
Observed_reduce(PyObject *self, PyObject *unused)
{
    /* pickled by reference, like the function it stands for */
    return PyObject_GetAttr(self, s_qualname);
}

static PyMethodDef Observed_methods[] = {
    {"__reduce__", (PyCFunction)Observed_reduce, METH_NOARGS, NULL},
    {NULL}};

static PyTypeObject ObservedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callpyback._speedups.ObservedFunction",
    .tp_doc = "An observed function (the C engine's decorator-mode wrapper).",
    .tp_basicsize = sizeof(Observed),
    .tp_dealloc = (destructor)Observed_dealloc,
    .tp_vectorcall_offset = offsetof(Observed, vectorcall),
    .tp_repr = Observed_repr,
    .tp_call = PyVectorcall_Call,
    .tp_getattro = Observed_getattro,
    .tp_setattro = Observed_setattro,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_traverse = (traverseproc)Observed_traverse,
    .tp_clear = (inquiry)Observed_clear,
    .tp_weaklistoffset = offsetof(Observed, weakreflist),
    .tp_methods = Observed_methods,
    .tp_descr_get = Observed_descr_get,
    .tp_new = Observed_new,
};

/* ======================================================================================== */
/* In place: the function's own vectorcall                                                   */
/* ======================================================================================== */

static PyObject *
inplace_vectorcall(PyObject *func, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyFunctionObject *fo = (PyFunctionObject *)func;
    PyObject *consts = ((PyCodeObject *)fo->func_code)->co_consts;
    Py_ssize_t n = PyTuple_GET_SIZE(consts);
    if (n && Py_IS_TYPE(PyTuple_GET_ITEM(consts, n - 1), &PlanType)) {
        Plan *plan = (Plan *)PyTuple_GET_ITEM(consts, n - 1);
        return plan_call(plan, func, func, args, nargsf, kwnames);
    }
    /* Not ours any more (uninstrumented): the plain pointer back, and the plain call. */
#if PY_VERSION_HEX >= 0x030C0000
    PyFunction_SetVectorcall(fo, g_default_vectorcall);
#else
    fo->vectorcall = g_default_vectorcall;
#endif
    return g_default_vectorcall(func, args, nargsf, kwnames);
}

/* ======================================================================================== */
/* Module functions                                                                          */
/* ======================================================================================== */

static Py_ssize_t
slot_offset(PyObject *type, const char *name)
{
    PyObject *d = PyObject_GetAttrString(type, name);
    if (d == NULL)
        return -2;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY))
            off = m->offset;
    }
    Py_DECREF(d);
    return off;
}

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"AANY", "ACV", "DEFERRED", "drain", "obs_failed", "obs_base",
                             "late_notify", "late_failure", "new_context", "ExecutionResult",
                             "NEEDS_CONTEXT", "failed", "pre_failed", "EXECUTING",
                             "perf_counter", "Registration", NULL};
    PyObject *o[16];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO!OOOOOOO!OOOOOO!:configure", kwlist,
                                     &PyList_Type, &o[0], &o[1], &PyList_Type, &o[2], &o[3],
                                     &o[4], &o[5], &o[6], &o[7], &o[8], &PyType_Type, &o[9],
                                     &o[10], &o[11], &o[12], &o[13], &o[14], &PyType_Type,
                                     &o[15]))
        return NULL;
    if (PyList_GET_SIZE(o[2]) != 1) {
        PyErr_SetString(PyExc_ValueError, "DEFERRED must be a one-item list");
        return NULL;
    }
    Py_ssize_t value = slot_offset(o[9], "value"), time = slot_offset(o[9], "execution_time");
    Py_ssize_t failures = slot_offset(o[15], "failures");
    if (value == -2 || time == -2 || failures == -2)
        return NULL;
    if (value < 0 || time < 0) {
        PyErr_SetString(PyExc_TypeError, "ExecutionResult needs value/execution_time slots");
        return NULL;
    }
    PyObject **targets[] = {&g_AANY, &g_ACV, &g_DEFERRED, &g_drain, &g_obs_failed, &g_obs_base,
                            &g_late_notify, &g_late_failure, &g_new_context, &g_result_type,
                            &g_NC, &g_failed, &g_pre_failed, &g_S_EXEC, &g_perf_counter,
                            (PyObject **)&g_reg_type};
    for (int i = 0; i < 16; i++)
        Py_XSETREF(*targets[i], Py_NewRef(o[i]));
    g_res_value = value;
    g_res_time = time;
    g_reg_failures = failures;
    /* the fast clock must be perf_counter, bit for bit: check it brackets the builtin's */
    g_fast_clock_ok = 0;
#if PY_VERSION_HEX >= 0x030D0000 || defined(__linux__)
    {
        int ok = 1;
        for (int i = 0; i < 3 && ok; i++) {
            PyObject *a = PyObject_CallNoArgs(g_perf_counter);
            double mine;
            int rc = fast_clock(&mine);
            PyObject *b = PyObject_CallNoArgs(g_perf_counter);
            if (a == NULL || b == NULL || rc < 0) {
                Py_XDECREF(a);
                Py_XDECREF(b);
                PyErr_Clear();
                ok = 0;
                break;
            }
            ok = PyFloat_Check(a) && PyFloat_Check(b) && PyFloat_AS_DOUBLE(a) <= mine &&
                 mine <= PyFloat_AS_DOUBLE(b);
            Py_DECREF(a);
            Py_DECREF(b);
        }
        g_fast_clock_ok = ok;
    }
#endif
    g_configured = 1;
    return PyBool_FromLong(g_fast_clock_ok);
}

static PyObject *
twin_of(PyObject *module, PyObject *obj)
{
    if (!Py_IS_TYPE(obj, &ObservedType)) {
        PyErr_SetString(PyExc_TypeError, "not an ObservedFunction");
        return NULL;
    }
    return Py_NewRef(((Observed *)obj)->twin);
}

static PyObject *
plan_of(PyObject *module, PyObject *obj)
{
    if (Py_IS_TYPE(obj, &ObservedType)) {
        PyObject *plan = ((Observed *)obj)->plan;
        return Py_NewRef(plan ? plan : Py_None);
    }
    if (PyFunction_Check(obj)) {
        PyFunctionObject *fo = (PyFunctionObject *)obj;
        PyObject *consts = ((PyCodeObject *)fo->func_code)->co_consts;
        Py_ssize_t n = PyTuple_GET_SIZE(consts);
        if (fo->vectorcall == inplace_vectorcall && n &&
            Py_IS_TYPE(PyTuple_GET_ITEM(consts, n - 1), &PlanType))
            return Py_NewRef(PyTuple_GET_ITEM(consts, n - 1));
    }
    Py_RETURN_NONE;
}

static PyObject *
set_plan(PyObject *module, PyObject *args)
{
    PyObject *obj, *plan;
    if (!PyArg_ParseTuple(args, "O!O:set_plan", &ObservedType, &obj, &plan))
        return NULL;
    if (plan != Py_None && !Py_IS_TYPE(plan, &PlanType)) {
        PyErr_SetString(PyExc_TypeError, "plan must be a Plan or None");
        return NULL;
    }
    Py_XSETREF(((Observed *)obj)->plan, plan == Py_None ? NULL : Py_NewRef(plan));
    Py_RETURN_NONE;
}

static PyObject *
patch(PyObject *module, PyObject *func)
{
    if (!PyFunction_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "patch() needs a plain function");
        return NULL;
    }
    PyFunctionObject *fo = (PyFunctionObject *)func;
    if (fo->vectorcall != g_default_vectorcall && fo->vectorcall != inplace_vectorcall)
        Py_RETURN_FALSE; /* someone else's pointer: leave it (the Python code still observes) */
#if PY_VERSION_HEX >= 0x030C0000
    PyFunction_SetVectorcall(fo, inplace_vectorcall);
#else
    fo->vectorcall = inplace_vectorcall;
#endif
    Py_RETURN_TRUE;
}

static PyObject *
unpatch(PyObject *module, PyObject *func)
{
    if (!PyFunction_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "unpatch() needs a plain function");
        return NULL;
    }
    PyFunctionObject *fo = (PyFunctionObject *)func;
    if (fo->vectorcall != inplace_vectorcall)
        Py_RETURN_FALSE;
#if PY_VERSION_HEX >= 0x030C0000
    PyFunction_SetVectorcall(fo, g_default_vectorcall);
#else
    fo->vectorcall = g_default_vectorcall;
#endif
    Py_RETURN_TRUE;
}

static PyObject *
is_patched(PyObject *module, PyObject *func)
{
    return PyBool_FromLong(PyFunction_Check(func) &&
                           ((PyFunctionObject *)func)->vectorcall == inplace_vectorcall);
}

static PyObject *
fast_perf_counter(PyObject *module, PyObject *unused)
{
    double d;
    if (fast_clock(&d) < 0)
        return NULL;
    return PyFloat_FromDouble(d);
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "Hand the engine's shared objects to the C engine (once, from callpyback._cengine)."},
    {"twin_of", twin_of, METH_O, "The Python wrapper an ObservedFunction stands for."},
    {"plan_of", plan_of, METH_O, "The Plan a wrapper (or patched function) runs, or None."},
    {"set_plan", set_plan, METH_VARARGS, "Point an ObservedFunction at a new Plan (or None)."},
    {"patch", patch, METH_O, "Route a function instrumented in place through the C engine."},
    {"unpatch", unpatch, METH_O, "Give a function its plain vectorcall back."},
    {"is_patched", is_patched, METH_O, "Whether calls of this function reach the C engine."},
    {"fast_perf_counter", fast_perf_counter, METH_NOARGS, "perf_counter(), as read in C."},
    {NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "callpyback._speedups",
    "The compiled twin of callpyback's call engine (see callpyback/_speedups.c).", -1,
    module_methods};

#define INTERN(var, text)                                                                      \
    do {                                                                                       \
        var = PyUnicode_InternFromString(text);                                                \
        if (var == NULL)                                                                       \
            return NULL;                                                                       \
    } while (0)

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_a, "a");
    INTERN(s__state, "_state");
    INTERN(s__attempt, "_attempt");
    INTERN(s__time, "_time");
    INTERN(s__value, "_value");
    INTERN(s__start, "_start");
    INTERN(s_arguments, "arguments");
    INTERN(s_metadata, "metadata");
    INTERN(s_timestamp, "timestamp");
    INTERN(s_local_variables, "local_variables");
    INTERN(s_signature, "signature");
    INTERN(s_function, "function");
    INTERN(s_target, "target");
    INTERN(s_success, "success");
    INTERN(s_qualname, "__qualname__");
    INTERN(s_failures, "failures");
    INTERN(s_count, "count");
    INTERN(s_sum, "sum");
    INTERN(s_min, "min");
    INTERN(s_max, "max");
    INTERN(s__zero, "_zero");
    INTERN(s__buckets, "_buckets");
    INTERN(s_active_key, "callpyback._speedups.active");
    g_zero_int = PyLong_FromLong(0);
    g_one_int = PyLong_FromLong(1);
    g_zero_float = PyFloat_FromDouble(0.0);
    if (!g_zero_int || !g_one_int || !g_zero_float)
        return NULL;
    /* the pointer every plain Python function has (read from a fresh one) */
    {
        PyObject *code = Py_CompileString("lambda: None", "<callpyback>", Py_eval_input);
        if (code == NULL)
            return NULL;
        PyObject *globals = PyDict_New();
        PyObject *fn = globals ? PyEval_EvalCode(code, globals, globals) : NULL;
        Py_DECREF(code);
        Py_XDECREF(globals);
        if (fn == NULL)
            return NULL;
        if (!PyFunction_Check(fn)) {
            Py_DECREF(fn);
            PyErr_SetString(PyExc_SystemError, "callpyback: no plain function to read");
            return NULL;
        }
        g_default_vectorcall = ((PyFunctionObject *)fn)->vectorcall;
        Py_DECREF(fn);
    }
    if (PyType_Ready(&ActiveType) < 0 || PyType_Ready(&HolderType) < 0 || PyType_Ready(&ThreadActiveType) < 0 ||
        PyType_Ready(&RecorderType) < 0 || PyType_Ready(&PlanType) < 0 ||
        PyType_Ready(&ObservedType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    PyObject *sources = Py_BuildValue("(ssssssssssssssssss)", "context", "arguments",
                                      "metadata", "timestamp", "local_variables",
                                      "function_signature", "function", "function_info",
                                      "target", "args", "kwargs", "exception", "state",
                                      "result", "execution_time", "value", "attempt",
                                      "outcome");
    if (sources == NULL || PyModule_AddObject(m, "SOURCES", sources) < 0)
        goto fail;
    if (PyModule_AddIntConstant(m, "ABI", ABI_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "K_CALL", K_CALL) < 0 ||
        PyModule_AddIntConstant(m, "K_CTX", K_CTX) < 0 ||
        PyModule_AddIntConstant(m, "K_START", K_START) < 0 ||
        PyModule_AddIntConstant(m, "K_DONE", K_DONE) < 0 ||
        PyModule_AddIntConstant(m, "K_BG", K_BG) < 0)
        goto fail;
    PyTypeObject *types[] = {&ThreadActiveType, &RecorderType, &PlanType, &ObservedType};
    const char *names[] = {"ThreadActive", "Recorder", "Plan", "ObservedFunction"};
    for (int i = 0; i < 4; i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            goto fail;
        }
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
