/* trace_export's C extensions: numpy arrays (any buffer) as columns of integers. */
#ifndef XPUTRACE_COLUMNS_H
#define XPUTRACE_COLUMNS_H

#include <Python.h>
#include <stdio.h>
#include <string.h>

/* A numpy array (or any buffer) of n integers of itemsize bytes, C-contiguous. */
struct column {
	Py_buffer view;
	Py_ssize_t n;
	int held;
};

static inline int column_get(struct column *c, PyObject *obj, Py_ssize_t itemsize, const char *what,
		      int writable)
{
	int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
	c->held = 0;
	if (PyObject_GetBuffer(obj, &c->view, flags) < 0) {
		PyErr_Format(PyExc_TypeError, "%s: not a contiguous%s array", what,
			     writable ? " writable" : "");
		return -1;
	}
	c->held = 1;
	const char *format = c->view.format ? c->view.format : "B";
	if (!strchr("bBhHiIlLqQ", format[strlen(format) - 1])) {
		PyErr_Format(PyExc_TypeError, "%s: items of format '%s', not integers", what, format);
		return -1;
	}
	if (c->view.itemsize != itemsize) {
		PyErr_Format(PyExc_TypeError, "%s: items of %zd bytes, not %zd", what,
			     c->view.itemsize, itemsize);
		return -1;
	}
	c->n = c->view.len / itemsize;
	return 0;
}

/* column_get on item i of a tuple, named "name[i]" in errors. */
static inline int column_item(struct column *c, PyObject *tuple, Py_ssize_t i,
			      Py_ssize_t itemsize, const char *name, int writable)
{
	char what[64];
	snprintf(what, sizeof(what), "%s[%zd]", name, i);
	return column_get(c, PyTuple_GET_ITEM(tuple, i), itemsize, what, writable);
}

static inline void column_release(struct column *c)
{
	if (c->held)
		PyBuffer_Release(&c->view);
	c->held = 0;
}

#endif
