/* governed_kernel.masking._panscan: the hot loops of the PAN scanner and masker, in C.
 *
 * This is an accelerator, not a second engine. ``scanner.find`` and ``Masker.apply`` (pure Python)
 * are the reference; this module must give exactly their results (tests/masking/
 * test_masking_native.py compares both on hypothesis inputs and every corpus). It handles only the
 * common, unambiguous cases itself and hands every other stage-1 run to the Python code:
 *
 * find(text, tables, slow, table, finding_cls) -> list[Finding]
 *     Stage 1 (the runs of digit/separator characters that hold four digits in a row followed by at
 *     least eight more run characters; HTML separator entities count as separators) straight on the
 *     str's UCS1/UCS2/UCS4 buffer: a word-at-a-time skip to the next four digits, then the run
 *     around them. Per run, the two inline fast paths of ``scanner._find_runs`` (one contiguous
 *     number; one natural grouped layout) when the run holds nothing but ASCII digits and layout
 *     separators and the 4-digit prefix has no finer IIN ranges; anything else (tracks, decimals,
 *     entities, overlaps, chains, non-ASCII digits...) is decided by calling
 *     ``slow(text, start, end, table, found)``, the Python code for one run, which appends to the
 *     same list.
 *     ``tables`` is ``BrandTable.native_tables()``: (bytes[10000*20] brand index + 1 per 4-digit
 *     prefix and length, bytes[10000] fine-range flags, tuple of brand names).
 *
 * mask(text, findings, mask_char, reveal) -> (str, dict, list[int]) | None
 *     The masked text built with one copy of ``text`` and in-place writes (only digits change in a
 *     PAN; tracks entirely), the counts per (kind, brand) in first-seen order, and the indices of
 *     the PAN findings with an ASCII digit within 20 characters after (reveal bin6: or before) them
 *     in the masked text (a superset of what ``Masker._mask_joined`` must look at again). None when
 *     the findings are not sorted and disjoint (the caller then uses the Python path).
 *     ``reveal``: 0 none, 1 last4, 2 bin6 (see ``text.reveal_counts``).
 *
 * Memory safety: every index is checked against the string length; strings are read with
 * PyUnicode_READ for their kind; the output is a fresh str written before anyone else sees it and
 * made canonical when masking may have lowered its widest character.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ABI_VERSION 2
#define MIN_PAN 12
#define MAX_PAN 19
#define SLOTS 10000
#define LENGTHS 20

#ifndef PANSCAN_SOURCE_HASH
#define PANSCAN_SOURCE_HASH ""
#endif

/* -- character classes ------------------------------------------------------------------------ */

static inline int is_digit(Py_UCS4 c) { return c >= '0' && c <= '9'; }
/* Any Unicode decimal digit (full-width, Arabic-Indic...): the scanner reads them as digits (digits.py). */
static inline int is_any_digit(Py_UCS4 c) { return c < 128 ? is_digit(c) : Py_UNICODE_ISDECIMAL(c); }

/* Stage-1 separator class ("s"): Latin-1 separators, '?', and every character above U+00FF
 * (``text.encode("latin-1", "replace")`` turns those into '?'). Entities are handled apart. */
static inline int is_sep_class(Py_UCS4 c)
{
    return c == ' ' || c == '\t' || c == '.' || c == '-' || c == 0xA0 || c == 0xAD || c == '?' || c > 0xFF;
}

/* Characters stripped from both ends of a run (``scanner._EDGE``). */
static inline int is_edge(Py_UCS4 c)
{
    switch (c) {
    case ' ': case '\t': case '.': case '-': case '?': case 0xA0: case 0x2007: case 0x2009:
    case 0x202F: case 0x2002: case 0x2003: case 0x2010: case 0x2011: case 0x2012: case 0x2013:
    case 0xAD: case 0x200B: case 0x200C: case 0x200D: case 0x2060: case 0xFEFF: /* invisible */
        return 1;
    default:
        return 0;
    }
}

/* Separators of the grouped-layout fast path (``scanner._LAYOUT``), besides '.'. */
static inline int is_layout_sep(Py_UCS4 c)
{
    return c == ' ' || c == '\t' || c == '-' || c == 0xA0 || c == 0x2009 || c == 0x202F;
}

static inline int is_entity_char(Py_UCS4 c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '#';
}

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
} Text;

#define RD(t, i) PyUnicode_READ((t)->kind, (t)->data, (i))

/* -- HTML separator entities (``scanner.ENTITY_RE``) ------------------------------------------ */

static const char *const ENTITY_NAMES[] = {"nbsp",  "thinsp", "ensp", "emsp",
                                           "numsp", "ndash",  "hyphen", "dash",
                                           "NonBreakingSpace", "shy", "ZeroWidthSpace", "zwnj",
                                           "zwj", "NoBreak"};
static const long ENTITY_DECIMAL[] = {160,  8201, 8194, 8195, 8199, 8239, 32,   45,   8208,
                                      8209, 8211, 173,  8203, 8204, 8205, 8288, 65279};
static const long ENTITY_HEX[] = {0xA0,   0x2009, 0x2002, 0x2003, 0x2007, 0x202F, 0x20,  0x2D,  0x2010,
                                  0x2011, 0x2012, 0x2013, 0xAD,   0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF};

/* End (exclusive) of the separator entity starting at ``i`` (text[i] == '&'), or -1.
 * ``&#0*160;``-style: zero padding of any length, then one of the listed values, then ';'. */
static Py_ssize_t entity_at(const Text *t, Py_ssize_t i)
{
    Py_ssize_t n = t->n, j = i + 1;
    if (j >= n)
        return -1;
    if (RD(t, j) == '#') {
        int hex = 0;
        j++;
        if (j < n && (RD(t, j) == 'x' || RD(t, j) == 'X')) {
            hex = 1;
            j++;
        }
        while (j < n && RD(t, j) == '0')
            j++;
        long value = 0;
        Py_ssize_t k = j;
        for (; k < n && k - j < 5; k++) {
            Py_UCS4 c = RD(t, k);
            int d;
            if (c >= '0' && c <= '9')
                d = (int)(c - '0');
            else if (hex && c >= 'a' && c <= 'f')
                d = (int)(c - 'a' + 10);
            else if (hex && c >= 'A' && c <= 'F')
                d = (int)(c - 'A' + 10);
            else
                break;
            value = value * (hex ? 16 : 10) + d;
        }
        if (k == j || k >= n || RD(t, k) != ';')
            return -1;
        /* The pattern spells each value with its own letters: hex "a0", "2d", "202f" accept
         * either case, so any case is right; a value never starts with '0' (zeros stripped). */
        const long *values = hex ? ENTITY_HEX : ENTITY_DECIMAL;
        size_t count = hex ? sizeof(ENTITY_HEX) / sizeof(long) : sizeof(ENTITY_DECIMAL) / sizeof(long);
        for (size_t v = 0; v < count; v++)
            if (values[v] == value)
                return k + 1;
        return -1;
    }
    for (size_t e = 0; e < sizeof(ENTITY_NAMES) / sizeof(ENTITY_NAMES[0]); e++) {
        const char *name = ENTITY_NAMES[e];
        size_t len = strlen(name);
        if (j + (Py_ssize_t)len >= n)
            continue;
        size_t m = 0;
        while (m < len && RD(t, j + (Py_ssize_t)m) == (Py_UCS4)(unsigned char)name[m])
            m++;
        if (m == len && RD(t, j + (Py_ssize_t)len) == ';')
            return j + (Py_ssize_t)len + 1;
    }
    return -1;
}

/* Start of the separator entity that ends at ``q`` (text[q] == ';'), or -1. Entities hold only
 * [0-9A-Za-z#] between '&' and ';'; a valid one has at most 18 characters that are not '0'. */
static Py_ssize_t entity_ending_at(const Text *t, Py_ssize_t q)
{
    Py_ssize_t k = q - 1;
    int others = 0;
    while (k >= 0) {
        Py_UCS4 c = RD(t, k);
        if (c == '&')
            return entity_at(t, k) == q + 1 ? k : -1;
        if (!is_entity_char(c))
            return -1;
        if (c != '0' && ++others > 24)
            return -1;
        k--;
    }
    return -1;
}

/* -- stage 1 -------------------------------------------------------------------------------- */

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* First index >= i where four ASCII digits follow each other, or -1. */
static Py_ssize_t next_four_ucs1(const Py_UCS1 *s, Py_ssize_t i, Py_ssize_t n)
{
    while (i + 4 <= n) {
        /* Skip eight characters at a time while none is a digit (t < 10 after the xor). */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            uint64_t x = w ^ (0x30 * ONES);
            if (((x - 10 * ONES) & ~x & HIGHS) != 0)
                break;
            i += 8;
        }
        Py_ssize_t stop = i + 8 < n ? i + 8 : n;
        for (; i < stop; i++)
            if (s[i] >= '0' && s[i] <= '9')
                break;
        if (i >= stop)
            continue;
        if (i + 4 > n)
            return -1;
        if (!is_digit(s[i + 1]))
            i += 2;
        else if (!is_digit(s[i + 2]))
            i += 3;
        else if (!is_digit(s[i + 3]))
            i += 4;
        else
            return i;
    }
    return -1;
}

#define NEXT_FOUR_WIDE(NAME, TYPE)                                                                 \
    static Py_ssize_t NAME(const TYPE *s, Py_ssize_t i, Py_ssize_t n)                              \
    {                                                                                              \
        while (i + 4 <= n) {                                                                       \
            if (!is_digit(s[i + 3]))                                                               \
                i += 4;                                                                            \
            else if (!is_digit(s[i + 2]))                                                          \
                i += 3;                                                                            \
            else if (!is_digit(s[i + 1]))                                                          \
                i += 2;                                                                            \
            else if (!is_digit(s[i]))                                                              \
                i += 1;                                                                            \
            else                                                                                   \
                return i;                                                                          \
        }                                                                                          \
        return -1;                                                                                 \
    }
NEXT_FOUR_WIDE(next_four_ucs2, Py_UCS2)
NEXT_FOUR_WIDE(next_four_ucs4, Py_UCS4)

static Py_ssize_t next_four(const Text *t, Py_ssize_t i)
{
    switch (t->kind) {
    case PyUnicode_1BYTE_KIND:
        return next_four_ucs1((const Py_UCS1 *)t->data, i, t->n);
    case PyUnicode_2BYTE_KIND:
        return next_four_ucs2((const Py_UCS2 *)t->data, i, t->n);
    default:
        return next_four_ucs4((const Py_UCS4 *)t->data, i, t->n);
    }
}

/* Start of the maximal run of digit/separator characters holding text[p], a digit that starts
 * four digits in a row with no digit right before it. */
static Py_ssize_t run_start(const Text *t, Py_ssize_t p)
{
    Py_ssize_t i = p - 1;
    /* Zero-padded numeric entities hold four digits in a row: is text[p] inside "&#0008201;"? */
    if (p >= 2 && RD(t, p - 1) == '#' && RD(t, p - 2) == '&' && entity_at(t, p - 2) > p)
        i = p - 3;
    else if (p >= 3 && (RD(t, p - 1) == 'x' || RD(t, p - 1) == 'X') && RD(t, p - 2) == '#' &&
             RD(t, p - 3) == '&' && entity_at(t, p - 3) > p)
        i = p - 4;
    while (i >= 0) {
        Py_UCS4 c = RD(t, i);
        if (is_digit(c) || is_sep_class(c)) {
            i--;
        } else if (c == ';') {
            Py_ssize_t amp = entity_ending_at(t, i);
            if (amp < 0)
                break;
            i = amp - 1;
        } else {
            break;
        }
    }
    return i + 1;
}

/* End of the run starting at ``i``; *four gets the start of its first four digits in a row
 * (digits of entities do not count), or -1. */
static Py_ssize_t run_end(const Text *t, Py_ssize_t i, Py_ssize_t *four)
{
    int row = 0;
    *four = -1;
    while (i < t->n) {
        Py_UCS4 c = RD(t, i);
        if (is_digit(c)) {
            if (++row == 4 && *four < 0)
                *four = i - 3;
            i++;
        } else if (c == '&') {
            Py_ssize_t e = entity_at(t, i);
            if (e < 0)
                break;
            row = 0;
            i = e;
        } else if (is_sep_class(c)) {
            row = 0;
            i++;
        } else {
            break;
        }
    }
    return i;
}

/* -- exact check --------------------------------------------------------------------------- */

static int luhn(const char *d, int n)
{
    int sum = 0, dbl = 0;
    for (int i = n - 1; i >= 0; i--) {
        int v = d[i] - '0';
        if (dbl) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
        dbl = !dbl;
    }
    return sum % 10 == 0;
}

typedef struct {
    const unsigned char *brand; /* SLOTS * LENGTHS: brand index + 1, 0 = no brand */
    const unsigned char *fine;  /* SLOTS: finer-than-4-digit ranges start here */
    PyObject *names;            /* tuple of str */
} Tables;

enum { SKIP = 0, FOUND = 1, SLOW = 2, FAIL = -1 };

static PyObject *PAN_KIND; /* "pan" */

static PyObject *new_finding(PyObject *cls, Py_ssize_t start, Py_ssize_t end, PyObject *brand,
                             PyObject *pan)
{
    PyObject *s = PyLong_FromSsize_t(start);
    PyObject *e = PyLong_FromSsize_t(end);
    if (s == NULL || e == NULL) {
        Py_XDECREF(s);
        Py_XDECREF(e);
        return NULL;
    }
    PyObject *items = PyTuple_Pack(5, s, e, PAN_KIND, brand, pan);
    Py_DECREF(s);
    Py_DECREF(e);
    if (items == NULL)
        return NULL;
    PyObject *args = PyTuple_Pack(1, items);
    Py_DECREF(items);
    if (args == NULL)
        return NULL;
    /* tuple.__new__(Finding, items): what the named tuple's own __new__ ends with. */
    PyObject *finding = PyTuple_Type.tp_new((PyTypeObject *)cls, args, NULL);
    Py_DECREF(args);
    return finding;
}

/* Append the finding for the PAN digits d[0:n] at [start, end) of brand ``index``: FOUND or FAIL. */
static int append_pan(PyObject *found, PyObject *cls, Py_ssize_t start, Py_ssize_t end,
                      const Tables *tb, int index, const char *d, Py_ssize_t n)
{
    PyObject *pan = PyUnicode_FromStringAndSize(d, n);
    if (pan == NULL)
        return FAIL;
    PyObject *finding = new_finding(cls, start, end, PyTuple_GET_ITEM(tb->names, index - 1), pan);
    Py_DECREF(pan);
    if (finding == NULL)
        return FAIL;
    int rc = PyList_Append(found, finding);
    Py_DECREF(finding);
    return rc < 0 ? FAIL : FOUND;
}

/* The brand of ``d`` (n digits) when no finer range starts at its prefix: index + 1, or 0.
 * Sets *fine when the prefix has finer ranges (the caller then asks Python). */
static int brand_index(const Tables *tb, const char *d, int n, int *fine)
{
    int slot = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0');
    int index = tb->brand[slot * LENGTHS + n];
    /* An index past the names (a malformed table) is a finer range: Python decides. */
    *fine = tb->fine[slot] != 0 || index > PyTuple_GET_SIZE(tb->names);
    return index;
}

/* One stage-1 run [rs, re): SKIP (nothing there), FOUND (appended), SLOW (ask Python), FAIL. */
static int fast_run(const Text *t, Py_ssize_t rs, Py_ssize_t re, const Tables *tb, PyObject *cls,
                    PyObject *found, Py_ssize_t last_end)
{
    Py_ssize_t a = rs, b = re;
    while (a < b && is_edge(RD(t, a)))
        a++;
    while (b > a && is_edge(RD(t, b - 1)))
        b--;
    Py_ssize_t len = b - a;
    if (len <= 0)
        return SLOW;
    /* Only ASCII digits and layout separators here; anything else is Python's. */
    Py_ssize_t digits = 0, dots = 0, dot_at = -1;
    for (Py_ssize_t i = a; i < b; i++) {
        Py_UCS4 c = RD(t, i);
        if (is_digit(c))
            digits++;
        else if (c == '.') {
            dots++;
            dot_at = i;
        } else if (!is_layout_sep(c))
            return SLOW;
    }
    int overlap = PyList_GET_SIZE(found) > 0 && rs < last_end;
    char d[MAX_PAN + 1];
    int fine;
    if (digits == len) {
        /* One contiguous number. */
        if (len < MIN_PAN || len > MAX_PAN)
            return SKIP;
        for (Py_ssize_t i = 0; i < len; i++)
            d[i] = (char)RD(t, a + i);
        int index = brand_index(tb, d, (int)len, &fine);
        if (fine)
            return SLOW;
        if (index == 0)
            return SKIP;
        if (overlap)
            return SLOW;
        if (b < t->n && (RD(t, b) == '^' || RD(t, b) == '='))
            return SLOW; /* track data may follow */
        if (!luhn(d, (int)len))
            return SKIP;
        return append_pan(found, cls, a, b, tb, index, d, len);
    }
    if (dots == 1) {
        /* "4111111111111111.0" / "5423.423423423423" / "0.4111111111111111": decimals. */
        if (digits != len - 1)
            return SLOW;
        Py_ssize_t head = dot_at - a;
        if ((head < MIN_PAN || head > MAX_PAN) &&
            !(head == 1 && re < t->n && (RD(t, re) == 'e' || RD(t, re) == 'E')))
            return SKIP;
        return SLOW;
    }
    /* One natural layout (``scanner._LAYOUT``): groups of 4-6, then 3-6..., maybe a last 2. */
    Py_UCS4 sep = 0;
    int groups = 0, size = 0, nd = 0, last_two = 0;
    for (Py_ssize_t i = a; i <= b; i++) {
        Py_UCS4 c = i < b ? RD(t, i) : 0;
        if (i < b && is_digit(c)) {
            if (nd >= MAX_PAN)
                return SLOW; /* too many digits for a PAN: Python decides (chains) */
            d[nd++] = (char)c;
            size++;
            continue;
        }
        /* end of a group */
        if (size == 0)
            return SLOW; /* two separators in a row */
        if (groups == 0) {
            if (size < 4 || size > 6)
                return SLOW;
        } else if (last_two) {
            return SLOW; /* a group of two can only be the last */
        } else if (size == 2) {
            last_two = 1;
        } else if (size < 3 || size > 6) {
            return SLOW;
        }
        groups++;
        size = 0;
        if (i < b) {
            if (sep == 0)
                sep = c;
            else if (c != sep)
                return SLOW;
        }
    }
    /* groups after the first: at least one of 3-6 (dots: two), then maybe one of two */
    if (groups - 1 - last_two < (sep == '.' ? 2 : 1))
        return SLOW;
    if (nd < MIN_PAN || overlap)
        return SLOW;
    int index = brand_index(tb, d, nd, &fine);
    if (fine || index == 0 || !luhn(d, nd))
        return SLOW;
    if (b < t->n && (RD(t, b) == 'e' || RD(t, b) == 'E'))
        return SLOW;
    return append_pan(found, cls, a, b, tb, index, d, nd);
}

static int ready(PyObject *text)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_READY(text);
#else
    (void)text;
    return 0;
#endif
}

/* found[-1].end, or -1 on error (exception set). */
static Py_ssize_t last_end_of(PyObject *found)
{
    Py_ssize_t size = PyList_GET_SIZE(found);
    PyObject *last = PyList_GET_ITEM(found, size - 1);
    if (!PyTuple_Check(last) || PyTuple_GET_SIZE(last) < 2) {
        PyErr_SetString(PyExc_TypeError, "findings must be Finding tuples");
        return -1;
    }
    Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(last, 1));
    if (end < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "a finding ends before the text starts");
    return end;
}

static PyObject *panscan_find(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "find(text, tables, slow, table, finding_cls)");
        return NULL;
    }
    PyObject *text = args[0], *tables = args[1], *slow = args[2], *table = args[3], *cls = args[4];
    if (!PyUnicode_Check(text) || ready(text) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "find() needs a str");
        return NULL;
    }
    if (!PyTuple_Check(tables) || PyTuple_GET_SIZE(tables) != 3 ||
        !PyBytes_Check(PyTuple_GET_ITEM(tables, 0)) ||
        PyBytes_GET_SIZE(PyTuple_GET_ITEM(tables, 0)) != SLOTS * LENGTHS ||
        !PyBytes_Check(PyTuple_GET_ITEM(tables, 1)) ||
        PyBytes_GET_SIZE(PyTuple_GET_ITEM(tables, 1)) != SLOTS || !PyTuple_Check(PyTuple_GET_ITEM(tables, 2))) {
        PyErr_SetString(PyExc_TypeError, "tables must be (bytes[200000], bytes[10000], tuple)");
        return NULL;
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "finding_cls must be a tuple subclass");
        return NULL;
    }
    Tables tb = {(const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(tables, 0)),
                 (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(tables, 1)),
                 PyTuple_GET_ITEM(tables, 2)};
    Text t = {PyUnicode_KIND(text), PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text)};
    PyObject *found = PyList_New(0);
    if (found == NULL)
        return NULL;
    Py_ssize_t last_end = -1, pos = 0;
    for (;;) {
        Py_ssize_t p = next_four(&t, pos);
        if (p < 0)
            break;
        Py_ssize_t four, rs = run_start(&t, p), re = run_end(&t, rs, &four);
        pos = re > p ? re : p + 1; /* re > p always (text[p] is in the run); belt and braces */
        if (four < 0 || four + 12 > re)
            continue;
        int rc = fast_run(&t, rs, re, &tb, cls, found, last_end);
        if (rc == FAIL)
            goto error;
        if (rc == SLOW) {
            Py_ssize_t before = PyList_GET_SIZE(found);
            PyObject *start = PyLong_FromSsize_t(rs), *end = PyLong_FromSsize_t(re);
            if (start == NULL || end == NULL) {
                Py_XDECREF(start);
                Py_XDECREF(end);
                goto error;
            }
            PyObject *call[5] = {text, start, end, table, found};
            PyObject *result = PyObject_Vectorcall(slow, call, 5, NULL);
            Py_DECREF(start);
            Py_DECREF(end);
            if (result == NULL)
                goto error;
            Py_DECREF(result);
            if (PyList_GET_SIZE(found) != before) {
                last_end = last_end_of(found);
                if (last_end < 0)
                    goto error;
            }
        } else if (rc == FOUND) {
            last_end = last_end_of(found);
            if (last_end < 0)
                goto error;
        }
    }
    return found;
error:
    Py_DECREF(found);
    return NULL;
}

/* -- masking ------------------------------------------------------------------------------- */

static void reveal_counts(int mode, Py_ssize_t length, Py_ssize_t *lead, Py_ssize_t *trail)
{
    *lead = 0;
    *trail = 0;
    if (mode == 0)
        return;
    *trail = length >= 10 ? 4 : 0;
    if (mode == 1)
        return;
    Py_ssize_t l = length - *trail - 5;
    *lead = l < 0 ? 0 : (l > 6 ? 6 : l);
}

static PyObject *panscan_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "mask(text, findings, mask_char, reveal)");
        return NULL;
    }
    PyObject *text = args[0], *findings = args[1], *mask_char = args[2];
    long mode = PyLong_AsLong(args[3]);
    if (mode == -1 && PyErr_Occurred())
        return NULL;
    if (mode < 0 || mode > 2) {
        PyErr_SetString(PyExc_ValueError, "reveal must be 0, 1 or 2");
        return NULL;
    }
    if (!PyUnicode_Check(text) || ready(text) < 0 || !PyList_Check(findings) || !PyUnicode_Check(mask_char) ||
        ready(mask_char) < 0 || PyUnicode_GET_LENGTH(mask_char) != 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "mask(str, list, one-character str, int)");
        return NULL;
    }
    Py_UCS4 mc = PyUnicode_READ_CHAR(mask_char, 0);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), count = PyList_GET_SIZE(findings);
    /* Check everything first: sorted, disjoint, inside the text, the right types. */
    Py_ssize_t previous = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *f = PyList_GET_ITEM(findings, k);
        if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) != 5)
            Py_RETURN_NONE;
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(f, 0));
        if (start == -1 && PyErr_Occurred())
            return NULL;
        Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(f, 1));
        if (end == -1 && PyErr_Occurred())
            return NULL;
        PyObject *kind = PyTuple_GET_ITEM(f, 2), *pan = PyTuple_GET_ITEM(f, 4);
        if (start < previous || end < start || end > n || !PyUnicode_Check(kind) || !PyUnicode_Check(pan))
            Py_RETURN_NONE;
        if (PyUnicode_Compare(kind, PAN_KIND) != 0 && PyErr_Occurred())
            return NULL;
        previous = end;
    }
    Py_UCS4 text_max = PyUnicode_MAX_CHAR_VALUE(text);
    PyObject *out = PyUnicode_New(n, mc > text_max ? mc : text_max);
    if (out == NULL)
        return NULL;
    if (PyUnicode_CopyCharacters(out, 0, text, 0, n) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    int okind = PyUnicode_KIND(out);
    void *odata = PyUnicode_DATA(out);
    int wrote = 0, lowered = 0; /* lowered: a character wider than the mask character was overwritten */
    PyObject *counts = PyDict_New(), *near = PyList_New(0);
    if (counts == NULL || near == NULL)
        goto error;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *f = PyList_GET_ITEM(findings, k);
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(f, 0));
        Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(f, 1));
        PyObject *kind = PyTuple_GET_ITEM(f, 2), *brand = PyTuple_GET_ITEM(f, 3), *pan = PyTuple_GET_ITEM(f, 4);
        int is_pan = PyUnicode_Compare(kind, PAN_KIND) == 0;
        if (is_pan) {
            Py_ssize_t length = PyUnicode_GET_LENGTH(pan), lead, trail;
            reveal_counts((int)mode, length, &lead, &trail);
            Py_ssize_t keep_from = length - trail, index = 0;
            for (Py_ssize_t i = start; i < end; i++) {
                Py_UCS4 c = PyUnicode_READ(okind, odata, i);
                if (c == '&') { /* an entity separator (&#32;): its digits are not the card's */
                    while (i + 1 < end && PyUnicode_READ(okind, odata, i) != ';')
                        i++;
                    continue;
                }
                if (is_any_digit(c)) {
                    if (index >= lead && index < keep_from) {
                        PyUnicode_WRITE(okind, odata, i, mc);
                        wrote = 1;
                        lowered |= c > 127 && c > mc;
                    }
                    index++;
                }
            }
        } else {
            for (Py_ssize_t i = start; i < end; i++) {
                Py_UCS4 c = PyUnicode_READ(okind, odata, i);
                lowered |= c > 127 && c > mc;
                PyUnicode_WRITE(okind, odata, i, mc);
            }
            wrote |= end > start;
        }
        PyObject *key = PyTuple_Pack(2, kind, brand);
        if (key == NULL)
            goto error;
        PyObject *old = PyDict_GetItemWithError(counts, key); /* borrowed */
        long value = 1;
        if (old == NULL && PyErr_Occurred()) {
            Py_DECREF(key);
            goto error;
        }
        if (old != NULL)
            value = PyLong_AsLong(old) + 1;
        PyObject *number = PyLong_FromLong(value);
        if (number == NULL || PyDict_SetItem(counts, key, number) < 0) {
            Py_XDECREF(number);
            Py_DECREF(key);
            goto error;
        }
        Py_DECREF(number);
        Py_DECREF(key);
    }
    /* PANs with a digit near them in the masked text (superset of Masker._mask_joined's test). */
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *f = PyList_GET_ITEM(findings, k);
        if (PyUnicode_Compare(PyTuple_GET_ITEM(f, 2), PAN_KIND) != 0 || mode == 0)
            continue;
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(f, 0));
        Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(f, 1));
        int hit = 0;
        Py_ssize_t stop = end + 20 < n ? end + 20 : n;
        for (Py_ssize_t i = end; i < stop && !hit; i++)
            hit = is_any_digit(PyUnicode_READ(okind, odata, i));
        if (mode == 2)
            for (Py_ssize_t i = start - 20 > 0 ? start - 20 : 0; i < start && !hit; i++)
                hit = is_any_digit(PyUnicode_READ(okind, odata, i));
        if (hit) {
            PyObject *index = PyLong_FromSsize_t(k);
            if (index == NULL || PyList_Append(near, index) < 0) {
                Py_XDECREF(index);
                goto error;
            }
            Py_DECREF(index);
        }
    }
    /* Keep the str canonical: its kind must fit its widest character. Masking can lower that
     * (a track or a wide digit held the only wide character) or never write the wider mask character. */
    if (lowered || (mc > text_max && !wrote)) {
        PyObject *canonical = PyUnicode_FromKindAndData(okind, odata, n);
        if (canonical == NULL)
            goto error;
        Py_DECREF(out);
        out = canonical;
    }
    PyObject *result = PyTuple_Pack(3, out, counts, near);
    Py_DECREF(out);
    Py_DECREF(counts);
    Py_DECREF(near);
    return result;
error:
    Py_DECREF(out);
    Py_XDECREF(counts);
    Py_XDECREF(near);
    return NULL;
}

/* has_wide_digit(text): whether text holds a decimal digit outside ASCII (digits.py). A one-byte
 * (Latin-1) string cannot: no character in U+0080..U+00FF is a decimal digit. The first such digits
 * are at U+0660 (Arabic-Indic). */
static PyObject *panscan_has_wide_digit(PyObject *module, PyObject *text)
{
    (void)module;
    if (!PyUnicode_Check(text) || ready(text) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "has_wide_digit(str)");
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    if (kind == PyUnicode_1BYTE_KIND)
        Py_RETURN_FALSE;
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= 0x660 && Py_UNICODE_ISDECIMAL(c))
            Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"has_wide_digit", (PyCFunction)panscan_has_wide_digit, METH_O,
     "has_wide_digit(text) -> whether text holds a non-ASCII decimal digit."},
    {"find", (PyCFunction)(void (*)(void))panscan_find, METH_FASTCALL,
     "find(text, tables, slow, table, finding_cls) -> list of findings (see module doc)."},
    {"mask", (PyCFunction)(void (*)(void))panscan_mask, METH_FASTCALL,
     "mask(text, findings, mask_char, reveal) -> (masked, counts, near) or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "governed_kernel.masking._panscan",
    "C accelerator for governed_kernel.masking.scanner.find and Masker.apply (same results).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__panscan(void)
{
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    PAN_KIND = PyUnicode_InternFromString("pan");
    if (PAN_KIND == NULL || PyModule_AddIntConstant(m, "ABI_VERSION", ABI_VERSION) < 0 ||
        PyModule_AddStringConstant(m, "SOURCE_HASH", PANSCAN_SOURCE_HASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
