/* trace_export._rows: rows of the events table to columns (trace_export.events.from_rows).
 *
 * json_uints(): the unsigned integer arguments in each row's event_data, JSON text as the
 * ingest writes it ({"func":139887353538176,"grid":[8,1,1],"stream":94372253250240}),
 * straight into uint64 columns. json.loads made a dict and ints of every row first: 2.2 us
 * a row, three times what the trace writer then spends on it. Whatever this parser does
 * not read as such (an escape in a key, a negative or fractional number, true, a nested
 * object, text that is not JSON) marks the row for trace_export.events to read with
 * json.loads, so every row reads the same either way.
 *
 * str_codes(): a string column as codes into a table of its distinct values.
 *
 * copy_rows(): rows of COPY ... TO STDOUT (FORMAT binary) of the events columns
 * trace_export.events.ROW_COLUMNS names, straight into columns (backend.repo.events.
 * copy_events): no Python object per row or per value, where psycopg's cursor made eleven.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_columns.h"

struct keys {
	Py_ssize_t n;
	const char **name; /* UTF-8, owned by the key str objects */
	Py_ssize_t *len;
	const uint8_t *dims; /* 1: an integer; 3: an array of three (a dim3) */
	const int32_t *first; /* its first output column */
};

struct json {
	const char *p, *end;
};

static void ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int eat(struct json *j, char c)
{
	ws(j);
	if (j->p < j->end && *j->p == c) {
		j->p++;
		return 1;
	}
	return 0;
}

/* A string without escapes: its bytes. 0 when it is not one. */
static int json_string(struct json *j, const char **s, Py_ssize_t *n)
{
	if (!eat(j, '"'))
		return 0;
	const char *q = memchr(j->p, '"', (size_t)(j->end - j->p));
	if (!q || memchr(j->p, '\\', (size_t)(q - j->p)))
		return 0;
	*s = j->p;
	*n = q - j->p;
	j->p = q + 1;
	return 1;
}

/* An unsigned integer below 2^64, as JSON writes it (no leading zeros, no fraction or
 * exponent). 0 when the value is anything else. */
static int json_uint(struct json *j, uint64_t *v)
{
	ws(j);
	const char *p = j->p;
	if (p >= j->end || *p < '0' || *p > '9' || (*p == '0' && p + 1 < j->end && p[1] >= '0' &&
						    p[1] <= '9'))
		return 0;
	uint64_t x = 0;
	for (; p < j->end && *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return 0;
		x = x * 10 + d;
	}
	if (p < j->end && (*p == '.' || *p == 'e' || *p == 'E'))
		return 0;
	j->p = p;
	*v = x;
	return 1;
}

/* The index of key s among keys (-1: not wanted); hint: where the last one was. */
static Py_ssize_t find(const struct keys *k, const char *s, Py_ssize_t n, Py_ssize_t hint)
{
	for (Py_ssize_t t = 0; t < k->n; t++) {
		Py_ssize_t i = (hint + 1 + t) % k->n;
		if (k->len[i] == n && !memcmp(k->name[i], s, (size_t)n))
			return i;
	}
	return -1;
}

/* Skips a value this parser reads (an unsigned integer, an array of them, a string);
 * 0 for any other. */
static int skip(struct json *j)
{
	uint64_t v;
	const char *s;
	Py_ssize_t n;
	ws(j);
	if (j->p < j->end && *j->p == '"')
		return json_string(j, &s, &n);
	if (eat(j, '[')) {
		if (eat(j, ']'))
			return 1;
		do {
			if (!json_uint(j, &v))
				return 0;
		} while (eat(j, ','));
		return eat(j, ']');
	}
	return json_uint(j, &v);
}

/* One row's object into out[.][row]; allowed: the keys its event type takes. */
static int row(struct json *j, const struct keys *k, const uint8_t *allowed, uint64_t **out,
	       Py_ssize_t r)
{
	Py_ssize_t hint = -1;
	if (!eat(j, '{'))
		return 0;
	if (eat(j, '}'))
		goto done;
	do {
		const char *s;
		Py_ssize_t n;
		if (!json_string(j, &s, &n) || !eat(j, ':'))
			return 0;
		Py_ssize_t i = find(k, s, n, hint);
		if (i < 0 || !allowed[i]) {
			if (!skip(j))
				return 0;
			continue;
		}
		hint = i;
		int32_t c = k->first[i];
		if (k->dims[i] == 1) {
			if (!json_uint(j, &out[c][r]))
				return 0;
			continue;
		}
		if (!eat(j, '['))
			return 0;
		for (int d = 0; d < k->dims[i]; d++)
			if ((d && !eat(j, ',')) || !json_uint(j, &out[c + d][r]))
				return 0;
		if (!eat(j, ']'))
			return 0;
	} while (eat(j, ','));
	if (!eat(j, '}'))
		return 0;
done:
	ws(j);
	return j->p == j->end;
}

/* json_uints(texts, keys, dims, first, row_type, allowed, out, fallback) -> rows fallen back */
static PyObject *json_uints(PyObject *self, PyObject *args)
{
	(void)self;
	PyObject *texts, *okeys, *odims, *ofirst, *otype, *oallowed, *oout, *ofallback;
	struct column dims = {0}, first = {0}, type = {0}, allowed = {0}, fallback = {0};
	struct column *out = NULL;
	struct keys k = {0};
	uint64_t **cols = NULL;
	PyObject *result = NULL;
	Py_buffer buf = {0};
	struct column spans = {0};
	if (!PyArg_ParseTuple(args, "OO!OOOOO!O:json_uints", &texts, &PyTuple_Type, &okeys, &odims,
			      &ofirst, &otype, &oallowed, &PyTuple_Type, &oout, &ofallback))
		return NULL;
	Py_ssize_t n, nout = PyTuple_GET_SIZE(oout);
	if (PyList_Check(texts)) {
		n = PyList_GET_SIZE(texts);
	} else if (PyTuple_Check(texts) && PyTuple_GET_SIZE(texts) == 2) {
		if (PyObject_GetBuffer(PyTuple_GET_ITEM(texts, 0), &buf, PyBUF_SIMPLE) < 0 ||
		    column_get(&spans, PyTuple_GET_ITEM(texts, 1), 8, "texts[1]", 0) < 0)
			goto cleanup;
		n = spans.n / 2;
		const int64_t *sp = spans.view.buf;
		for (Py_ssize_t r = 0; r < n; r++)
			if (sp[2 * r] < 0 || sp[2 * r + 1] < 0 || sp[2 * r] + sp[2 * r + 1] > buf.len) {
				PyErr_Format(PyExc_ValueError, "texts[1]: span %zd out of the buffer", r);
				goto cleanup;
			}
	} else {
		PyErr_SetString(PyExc_TypeError, "texts: a list of str, or (buffer, spans)");
		return NULL;
	}
	k.n = PyTuple_GET_SIZE(okeys);
	if (column_get(&dims, odims, 1, "dims", 0) < 0 || column_get(&first, ofirst, 4, "first", 0) < 0 ||
	    column_get(&type, otype, 4, "row_type", 0) < 0 ||
	    column_get(&allowed, oallowed, 1, "allowed", 0) < 0 ||
	    column_get(&fallback, ofallback, 1, "fallback", 1) < 0)
		goto cleanup;
	if (dims.n != k.n || first.n != k.n || type.n != n || fallback.n != n ||
	    (k.n && allowed.n % k.n)) {
		PyErr_SetString(PyExc_ValueError, "json_uints: dims, first: one per key; row_type, "
						  "fallback: one per text; allowed: types x keys");
		goto cleanup;
	}
	Py_ssize_t ntypes = k.n ? allowed.n / k.n : 0;
	k.name = PyMem_Calloc((size_t)k.n + 1, sizeof(char *));
	k.len = PyMem_Calloc((size_t)k.n + 1, sizeof(Py_ssize_t));
	out = PyMem_Calloc((size_t)nout + 1, sizeof(struct column));
	cols = PyMem_Calloc((size_t)nout + 1, sizeof(uint64_t *));
	if (!k.name || !k.len || !out || !cols) {
		PyErr_NoMemory();
		goto cleanup;
	}
	k.dims = dims.view.buf;
	k.first = first.view.buf;
	for (Py_ssize_t i = 0; i < k.n; i++) {
		PyObject *key = PyTuple_GET_ITEM(okeys, i);
		if (!PyUnicode_Check(key) || !(k.name[i] = PyUnicode_AsUTF8AndSize(key, &k.len[i]))) {
			PyErr_Format(PyExc_TypeError, "keys[%zd]: not a str", i);
			goto cleanup;
		}
		if ((k.dims[i] != 1 && k.dims[i] != 3) || k.first[i] < 0 ||
		    k.first[i] + k.dims[i] > nout) {
			PyErr_Format(PyExc_ValueError, "keys[%zd]: %d columns from %d, of %zd", i,
				     k.dims[i], k.first[i], nout);
			goto cleanup;
		}
	}
	for (Py_ssize_t c = 0; c < nout; c++) {
		if (column_item(&out[c], oout, c, 8, "out", 1) < 0)
			goto cleanup;
		if (out[c].n != n) {
			PyErr_Format(PyExc_ValueError, "out[%zd]: %zd rows, not %zd", c, out[c].n, n);
			goto cleanup;
		}
		cols[c] = out[c].view.buf;
	}
	const int32_t *types = type.view.buf;
	const uint8_t *ok_for = allowed.view.buf;
	uint8_t *fell = fallback.view.buf;
	Py_ssize_t fallen = 0;
	for (Py_ssize_t r = 0; r < n; r++) {
		Py_ssize_t len = 0;
		const char *s;
		if (buf.obj) {
			const int64_t *sp = (const int64_t *)spans.view.buf + 2 * r;
			s = (const char *)buf.buf + sp[0];
			len = sp[1];
		} else {
			PyObject *t = PyList_GET_ITEM(texts, r);
			s = PyUnicode_Check(t) ? PyUnicode_AsUTF8AndSize(t, &len) : NULL;
			if (!s)
				PyErr_Clear(); /* not text (or not UTF-8): json.loads says what it is */
		}
		int32_t ty = types[r];
		struct json j = {s, s ? s + len : NULL};
		if (!s || ty < 0 || ty >= ntypes || !row(&j, &k, ok_for + (size_t)ty * k.n, cols, r)) {
			for (Py_ssize_t c = 0; c < nout; c++)
				cols[c][r] = 0; /* what the row held so far: read again whole */
			fell[r] = 1;
			fallen++;
		}
	}
	result = PyLong_FromSsize_t(fallen);
cleanup:
	if (buf.obj)
		PyBuffer_Release(&buf);
	column_release(&spans);
	column_release(&dims);
	column_release(&first);
	column_release(&type);
	column_release(&allowed);
	column_release(&fallback);
	for (Py_ssize_t c = 0; out && c < nout; c++)
		column_release(&out[c]);
	PyMem_Free(out);
	PyMem_Free(cols);
	PyMem_Free(k.name);
	PyMem_Free(k.len);
	return result;
}

/* The code of value in table (a dict of value: code), added with the next code if new. */
static int code_of(PyObject *table, PyObject *value, int32_t *code)
{
	PyObject *c = PyDict_GetItemWithError(table, value);
	if (c) {
		Py_INCREF(c);
	} else if (!PyErr_Occurred()) {
		c = PyLong_FromSsize_t(PyDict_GET_SIZE(table));
		if (c && PyDict_SetItem(table, value, c) < 0)
			Py_CLEAR(c);
	}
	if (!c)
		return -1;
	long v = PyLong_AsLong(c);
	Py_DECREF(c);
	if (v == -1 && PyErr_Occurred())
		return -1;
	*code = (int32_t)v;
	return 0;
}

/* str_codes(values, table, codes): codes[i] = table[values[i]], new values added to table
 * (a dict) with the next code. */
static PyObject *str_codes(PyObject *self, PyObject *args)
{
	(void)self;
	PyObject *values, *table, *ocodes;
	struct column codes = {0};
	if (!PyArg_ParseTuple(args, "OO!O:str_codes", &values, &PyDict_Type, &table, &ocodes))
		return NULL;
	PyObject *seq = PySequence_Fast(values, "values: not a sequence");
	if (!seq || column_get(&codes, ocodes, 4, "codes", 1) < 0)
		goto fail;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	if (codes.n != n) {
		PyErr_Format(PyExc_ValueError, "codes: %zd, not one per value (%zd)", codes.n, n);
		goto fail;
	}
	int32_t *out = codes.view.buf;
	PyObject **items = PySequence_Fast_ITEMS(seq);
	for (Py_ssize_t i = 0; i < n; i++)
		if (code_of(table, items[i], &out[i]) < 0)
			goto fail;
	column_release(&codes);
	Py_DECREF(seq);
	Py_RETURN_NONE;
fail:
	column_release(&codes);
	Py_XDECREF(seq);
	return NULL;
}

/* Strings of one column met in this call: their bytes (in the COPY buffer) and code. */
#define RECENT 64
struct recent {
	const char *s[RECENT];
	int32_t len[RECENT], code[RECENT];
};

static uint32_t hash_bytes(const char *s, int32_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (int32_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

/* The code of a string column's value: from the recent ones, or the table (a dict). */
static int text_code(struct recent *rc, PyObject *table, const char *s, int32_t n, int32_t *code)
{
	uint32_t h = hash_bytes(s, n) % RECENT;
	if (rc->s[h] && rc->len[h] == n && !memcmp(rc->s[h], s, (size_t)n)) {
		*code = rc->code[h];
		return 0;
	}
	PyObject *str = PyUnicode_DecodeUTF8(s, n, "strict");
	int failed = !str || code_of(table, str, code) < 0;
	Py_XDECREF(str);
	if (failed)
		return -1;
	rc->s[h] = s;
	rc->len[h] = n;
	rc->code[h] = *code;
	return 0;
}

static int64_t be(const uint8_t *p, int32_t n)
{
	uint64_t v = 0;
	for (int32_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	if (n < 8 && (v >> (8 * n - 1)) & 1) /* sign-extend int2 and int4 */
		v |= ~(uint64_t)0 << (8 * n);
	return (int64_t)v;
}

enum { COPY_INTS = 6, COPY_TEXTS = 3, COPY_FIELDS = COPY_INTS + COPY_TEXTS + 1 };

/* copy_rows(data, n, ints, tables, codes, spans) -> None */
static PyObject *copy_rows(PyObject *self, PyObject *args)
{
	(void)self;
	PyObject *odata, *oints, *otables, *ocodes, *ospans, *result = NULL;
	Py_ssize_t n;
	Py_buffer data = {0};
	struct column ints[COPY_INTS] = {0}, codes[COPY_TEXTS] = {0}, spans = {0};
	struct recent *recent = NULL;
	if (!PyArg_ParseTuple(args, "OnO!O!O!O:copy_rows", &odata, &n, &PyTuple_Type, &oints,
			      &PyTuple_Type, &otables, &PyTuple_Type, &ocodes, &ospans))
		return NULL;
	if (PyTuple_GET_SIZE(oints) != COPY_INTS || PyTuple_GET_SIZE(otables) != COPY_TEXTS ||
	    PyTuple_GET_SIZE(ocodes) != COPY_TEXTS) {
		PyErr_SetString(PyExc_ValueError, "copy_rows: 6 int columns, 3 tables, 3 code columns");
		return NULL;
	}
	if (PyObject_GetBuffer(odata, &data, PyBUF_SIMPLE) < 0)
		return NULL;
	for (int i = 0; i < COPY_INTS; i++)
		if (column_item(&ints[i], oints, i, 8, "ints", 1) < 0)
			goto cleanup;
	for (int i = 0; i < COPY_TEXTS; i++) {
		if (!PyDict_Check(PyTuple_GET_ITEM(otables, i))) {
			PyErr_Format(PyExc_TypeError, "tables[%d]: not a dict", i);
			goto cleanup;
		}
		if (column_item(&codes[i], ocodes, i, 4, "codes", 1) < 0)
			goto cleanup;
	}
	if (column_get(&spans, ospans, 8, "spans", 1) < 0)
		goto cleanup;
	for (int i = 0; i < COPY_INTS; i++)
		if (ints[i].n < n || (i < COPY_TEXTS && codes[i].n < n) || spans.n < 2 * n) {
			PyErr_Format(PyExc_ValueError, "copy_rows: columns of fewer than %zd rows", n);
			goto cleanup;
		}
	recent = PyMem_Calloc(COPY_TEXTS, sizeof(struct recent));
	if (!recent) {
		PyErr_NoMemory();
		goto cleanup;
	}
	const uint8_t *p = data.buf, *end = p + data.len;
	int64_t *sp = spans.view.buf;
	for (Py_ssize_t r = 0; r < n; r++) {
		if (end - p < 2 || be(p, 2) != COPY_FIELDS) {
			PyErr_Format(PyExc_ValueError, "row %zd: not a tuple of %d fields", r,
				     COPY_FIELDS);
			goto cleanup;
		}
		p += 2;
		for (int f = 0; f < COPY_FIELDS; f++) {
			int32_t len = end - p >= 4 ? (int32_t)be(p, 4) : -2;
			if (len < 0 || end - p - 4 < len ||
			    (f < COPY_INTS && len != 8 && len != 4 && len != 2)) {
				PyErr_Format(PyExc_ValueError, "row %zd, field %d: %s", r, f,
					     len == -1 ? "NULL" : "not of its type's size");
				goto cleanup;
			}
			p += 4;
			if (f < COPY_INTS) {
				((int64_t *)ints[f].view.buf)[r] = be(p, len);
			} else if (f < COPY_INTS + COPY_TEXTS) {
				int t = f - COPY_INTS;
				if (text_code(&recent[t], PyTuple_GET_ITEM(otables, t), (const char *)p, len,
					      (int32_t *)codes[t].view.buf + r) < 0)
					goto cleanup;
			} else {
				sp[2 * r] = p - (const uint8_t *)data.buf;
				sp[2 * r + 1] = len;
			}
			p += len;
		}
	}
	if (p != end) {
		PyErr_Format(PyExc_ValueError, "copy_rows: %zd bytes after row %zd", end - p, n);
		goto cleanup;
	}
	result = Py_NewRef(Py_None);
cleanup:
	PyMem_Free(recent);
	for (int i = 0; i < COPY_INTS; i++)
		column_release(&ints[i]);
	for (int i = 0; i < COPY_TEXTS; i++)
		column_release(&codes[i]);
	column_release(&spans);
	PyBuffer_Release(&data);
	return result;
}

static PyMethodDef methods[] = {
	{"copy_rows", copy_rows, METH_VARARGS,
	 "copy_rows(data, n, ints, tables, codes, spans) -> None\n\n"
	 "The n tuples of data (COPY binary, header and trailer left out) of the columns ts,\n"
	 "duration_ns, pid, tid, ret, flags (into ints, int64), event_type, comm, machine_id\n"
	 "(codes into tables, dicts of str: int) and event_data (spans: offset and length in\n"
	 "data of each row's JSON)."},
	{"json_uints", json_uints, METH_VARARGS,
	 "json_uints(texts, keys, dims, first, row_type, allowed, out, fallback) -> int\n\n"
	 "Reads keys[k] of each JSON object texts[r] (a list of str) into out[first[k]][r]\n"
	 "(dims[k] == 3: an array of three, into out[first[k]..+2]) when allowed[row_type[r],\n"
	 "k]; rows it cannot read get fallback[r] = 1 and zeros. Returns how many."},
	{"str_codes", str_codes, METH_VARARGS,
	 "str_codes(values, table, codes) -> None\n\n"
	 "codes[i] (int32) = table[values[i]]; values not in table (a dict) are added with\n"
	 "the next code, len(table)."},
	{0},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_rows",
	.m_doc = "Rows of the events table to columns (trace_export.events).",
	.m_size = -1,
	.m_methods = methods,
};

PyMODINIT_FUNC PyInit__rows(void)
{
	return PyModule_Create(&module);
}
