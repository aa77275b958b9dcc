/* trace_export._speedups: the trace writer's per-event loops.
 *
 * encode(): the TracePackets of a trace's markers, in the order given.
 *
 * The Python side (trace_export.perfetto) decides what a trace holds: markers as columns
 * (a slice's begin or end, an instant on a queue, a counter point), their order, and how a
 * call's begin is annotated (a plan per event type: debug annotation key, value field and
 * value column). This module only writes bytes, one pass to size the packets and one to
 * fill them: a million calls (2.3 million packets, 120 MB) in about 0.15 s, where numpy
 * took 1.1 s (bench/trace_write.py).
 *
 * Each marker becomes one Trace.packet {timestamp (delta on its sequence's incremental
 * clock), trusted_packet_sequence_id, track_event {type, ...}}. Packets of one layout
 * (marker kind; for a call's begin also its event type, whether it is incomplete and
 * whether it starts a flow) have the same size: each varint is padded (with continuation
 * bits, as protobuf allows) to the widest value of its field among those packets, which
 * deflate compresses better than varints of varying size (trace_export.perfetto).
 *
 * distinct(): the distinct values of an int64 column, as a hash table finds them (numpy's
 * unique sorts, or hashes without an inverse, at ~20 ns a value: the writer asks for a dozen
 * per chunk).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "_columns.h"

enum { BEGIN = 1, END = 2, INSTANT = 3, COUNTER = 4 };
enum { L_END, L_INSTANT, L_COUNTER, L_FRAME, L_CALLS }; /* packet layouts; calls: 4 per type */
enum { F_DELTA, F_SEQ, F_NAME, F_TRACK, F_VALUE, F_COUNT }; /* padded fields of a layout */

/* field tags (perfetto/trace/trace_packet.proto, track_event/track_event.proto,
 * track_event/debug_annotation.proto) */
#define T_PACKET 0x0a          /* Trace.packet, bytes */
#define T_TIMESTAMP 0x40       /* TracePacket.timestamp (8), varint */
#define T_SEQ 0x50             /* TracePacket.trusted_packet_sequence_id (10) */
#define T_TRACK_EVENT 0x5a     /* TracePacket.track_event (11), bytes */
#define T_TYPE 0x48            /* TrackEvent.type (9) */
#define T_NAME_IID 0x50        /* TrackEvent.name_iid (10) */
#define T_TRACK_UUID 0x58      /* TrackEvent.track_uuid (11) */
#define T_ANNOTATION 0x22      /* TrackEvent.debug_annotations (4), bytes */
#define T_ANN_NAME_IID 0x08    /* DebugAnnotation.name_iid (1) */
static const uint8_t T_FLOW[] = {0xf9, 0x02};        /* TrackEvent.flow_ids (47), fixed64 */
static const uint8_t T_END_FLOW[] = {0x81, 0x03};    /* terminating_flow_ids (48), fixed64 */
static const uint8_t T_COUNTER_VALUE[] = {0xf0, 0x01}; /* counter_value (30), varint */

static int varint_len(uint64_t v)
{
	return (70 - __builtin_clzll(v | 1)) / 7; /* bits / 7, rounded up */
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

#define SLACK 16 /* bytes a piece may be written past its end (stores of 8 and 16 bytes) */

/* v in exactly width bytes (width >= varint_len(v)); up to 8 of them as one 8-byte store
 * whose bytes past width are zero (v has no more 7-bit groups), overwritten next. */
static uint8_t *put_padded(uint8_t *p, uint64_t v, int width)
{
	static const uint64_t more[9] = {0, 0, 0x80, 0x8080, 0x808080, 0x80808080,
					 0x8080808080, 0x808080808080, 0x80808080808080};
	if (width <= 8) {
#define GROUP(k) (((v >> (7 * (k))) & 0x7f) << (8 * (k)))
		uint64_t x = GROUP(0) | GROUP(1) | GROUP(2) | GROUP(3) | GROUP(4) | GROUP(5) |
			     GROUP(6) | GROUP(7);
#undef GROUP
		x |= more[width];
		memcpy(p, &x, 8); /* little-endian: x86-64, aarch64 */
		return p + width;
	}
	for (int k = 0; k < width - 1; k++) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)(v & 0x7f);
	return p;
}

static uint8_t *put_fixed64(uint8_t *p, uint64_t v)
{
	for (int k = 0; k < 8; k++)
		*p++ = (uint8_t)(v >> (8 * k));
	return p;
}

/* A value tag of a DebugAnnotation: uint_value (3), pointer_value (7), string_value_iid (17).
 * Returns its length; the bytes go to out. */
static int value_tag(int field, uint8_t out[2])
{
	uint32_t key = (uint32_t)field << 3;
	if (key < 0x80) {
		out[0] = (uint8_t)key;
		return 1;
	}
	out[0] = (uint8_t)(key | 0x80);
	out[1] = (uint8_t)(key >> 7);
	return 2;
}

/* Everything encode() reads, named as in perfetto.py. */
struct input {
	struct column order, t, kind, seq, name, flow, value, ref, track, clock;
	struct column row_type, row_flags, plan_start, plan_key, plan_field, plan_col;
	struct column *cols;
	Py_ssize_t ncols;
	uint64_t incomplete_key;
	Py_ssize_t piece;
};

#define COLUMNS(in)                                                                          \
	&(in)->order, &(in)->t, &(in)->kind, &(in)->seq, &(in)->name, &(in)->flow, &(in)->value, \
		&(in)->ref, &(in)->track, &(in)->clock, &(in)->row_type, &(in)->row_flags,       \
		&(in)->plan_start, &(in)->plan_key, &(in)->plan_field, &(in)->plan_col

static void input_release(struct input *in)
{
	struct column *all[] = {COLUMNS(in)};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		column_release(all[i]);
	for (Py_ssize_t j = 0; j < in->ncols && in->cols; j++)
		column_release(&in->cols[j]);
	PyMem_Free(in->cols);
	in->cols = NULL;
}

#define AT(col, type, i) (((const type *)(col).view.buf)[i])

/* A debug annotation of a plan entry: its bytes before the value, the value's width and
 * column. */
struct annotation {
	uint8_t head[24];
	int head_len, w;
	const uint64_t *col;
};

/* A layout's field widths and packet size. */
struct layout {
	uint8_t w[F_COUNT];
	int body;  /* TrackEvent bytes */
	int inner; /* TracePacket bytes */
	int size;  /* the whole Trace.packet, tag and length included */
};

struct encoder {
	struct input *in;
	Py_ssize_t nplan, ntypes, nrows;
	struct layout *layouts; /* L_CALLS + 4 * ntypes */
	uint8_t *col_w;         /* per value column: its widest value's varint */
	struct annotation *anns; /* per plan entry, once the widths are known */
	struct annotation incomplete;
	int64_t *delta;         /* per marker written */
	int32_t *lay;           /* per marker written: its layout */
	int64_t *clock;         /* the sequences' clocks, copied back to clock once written */
	Py_ssize_t begins, flows, counters; /* packets of each, for the writer's stats */
	PyObject *error_type;   /* set by fail() */
	char error[160];
};

static int call_layout(int type, int incomplete, int flow)
{
	return L_CALLS + (type * 2 + incomplete) * 2 + flow;
}

static void widen(uint8_t *w, uint64_t v)
{
	int n = varint_len(v);
	if (n > *w)
		*w = (uint8_t)n;
}

/* Records why the markers cannot be encoded (without the GIL: raised once it is held). */
static int fail(struct encoder *e, PyObject *type, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->error, sizeof(e->error), fmt, ap);
	va_end(ap);
	e->error_type = type;
	return -1;
}

/* Pass 1: deltas on each sequence's clock (the clock moves on), layouts, widths. */
static int measure(struct encoder *e)
{
	struct input *in = e->in;
	Py_ssize_t k = in->order.n, nseq = in->clock.n;
	int64_t *clock = e->clock;
	/* an annotation's value is padded to its column's widest value (of every row: a call
	 * of another type may widen it, which costs a byte that deflate takes back) */
	for (Py_ssize_t j = 0; j < in->ncols; j++) {
		const uint64_t *col = in->cols[j].view.buf;
		uint64_t most = 0;
		for (Py_ssize_t r = 0; r < in->cols[j].n; r++)
			most = col[r] > most ? col[r] : most;
		e->col_w[j] = (uint8_t)varint_len(most);
	}
	for (Py_ssize_t i = 0; i < k; i++) {
		int64_t m = AT(in->order, int64_t, i);
		if (m < 0 || m >= in->t.n)
			return fail(e, PyExc_IndexError, "order[%zd]: no marker %lld", i, (long long)m);
		int64_t s = AT(in->seq, int64_t, m), t = AT(in->t, int64_t, m);
		if (s <= 0 || s >= nseq)
			return fail(e, PyExc_ValueError, "seq of marker %lld: no sequence %lld",
				     (long long)m, (long long)s);
		if (t < clock[s])
			return fail(e, PyExc_ValueError,
				     "t of marker %lld: %lld precedes sequence %lld's clock %lld",
				     (long long)m, (long long)t, (long long)s, (long long)clock[s]);
		e->delta[i] = t - clock[s];
		clock[s] = t;
		int kind = AT(in->kind, uint8_t, m), l;
		int64_t r = AT(in->ref, int64_t, m);
		if (kind == END)
			l = L_END;
		else if (kind == INSTANT)
			l = L_INSTANT;
		else if (kind == COUNTER)
			l = L_COUNTER;
		else if (kind == BEGIN && r < 0)
			l = L_FRAME;
		else if (kind == BEGIN) {
			if (r >= e->nrows)
				return fail(e, PyExc_IndexError, "ref of marker %lld: no row %lld",
					     (long long)m, (long long)r);
			int type = AT(in->row_type, int32_t, r);
			if (type < 0 || type >= e->ntypes)
				return fail(e, PyExc_ValueError, "row_type[%lld]: no plan for %d",
					     (long long)r, type);
			l = call_layout(type, AT(in->row_flags, uint32_t, r) & 1,
					AT(in->flow, uint64_t, m) != 0);
		} else
			return fail(e, PyExc_ValueError, "kind of marker %lld: %d", (long long)m, kind);
		e->lay[i] = l;
		e->begins += kind == BEGIN;
		e->flows += kind == BEGIN && AT(in->flow, uint64_t, m) != 0;
		e->counters += kind == COUNTER;
		struct layout *L = &e->layouts[l];
		widen(&L->w[F_DELTA], (uint64_t)e->delta[i]);
		widen(&L->w[F_SEQ], (uint64_t)s);
		if (kind == BEGIN || kind == INSTANT)
			widen(&L->w[F_NAME], (uint64_t)AT(in->name, int64_t, m));
		if (kind == INSTANT)
			widen(&L->w[F_TRACK], AT(in->track, uint64_t, m));
		if (kind == COUNTER) {
			int64_t v = AT(in->value, int64_t, m);
			widen(&L->w[F_VALUE], v > 0 ? (uint64_t)v : 0);
		}
	}
	return 0;
}

/* An annotation's bytes before its value: tag, length, name_iid, value tag. */
static void prepare(struct annotation *a, uint64_t key, int field, int w, const uint64_t *col)
{
	uint8_t tag[2], *p = a->head;
	int tlen = value_tag(field, tag);
	*p++ = T_ANNOTATION;
	p = put_varint(p, (uint64_t)(1 + varint_len(key) + tlen + w));
	*p++ = T_ANN_NAME_IID;
	p = put_varint(p, key);
	memcpy(p, tag, (size_t)tlen);
	a->head_len = (int)(p + tlen - a->head);
	a->w = w;
	a->col = col;
}

static void size_layout(struct encoder *e, int l)
{
	struct input *in = e->in;
	struct layout *L = &e->layouts[l];
	int body = 2; /* type */
	if (l == L_INSTANT)
		body += 1 + L->w[F_NAME] + 1 + L->w[F_TRACK] + 2 + 8;
	else if (l == L_COUNTER)
		body += 2 + L->w[F_VALUE];
	else if (l == L_FRAME)
		body += 1 + L->w[F_NAME];
	else if (l >= L_CALLS) {
		int c = l - L_CALLS, type = c / 4, incomplete = (c / 2) & 1, flow = c & 1;
		body += 1 + L->w[F_NAME] + (flow ? 2 + 8 : 0);
		for (int32_t p = AT(in->plan_start, int32_t, type);
		     p < AT(in->plan_start, int32_t, type + 1); p++)
			body += e->anns[p].head_len + e->anns[p].w;
		if (incomplete)
			body += e->incomplete.head_len + e->incomplete.w;
	}
	int inner = 1 + L->w[F_DELTA] + 1 + L->w[F_SEQ] + 1 + varint_len((uint64_t)body) + body;
	L->body = body;
	L->inner = inner;
	L->size = 1 + varint_len((uint64_t)inner) + inner;
}

static uint8_t *put_annotation(uint8_t *p, const struct annotation *a, int64_t row)
{
	memcpy(p, a->head, 16); /* head_len <= 16 */
	return put_padded(p + a->head_len, a->col ? a->col[row] : 1, a->w);
}

/* Pass 2: the packets. */
static uint8_t *put_packet(struct encoder *e, uint8_t *p, Py_ssize_t i)
{
	struct input *in = e->in;
	int64_t m = AT(in->order, int64_t, i);
	int l = e->lay[i], kind = AT(in->kind, uint8_t, m);
	struct layout *L = &e->layouts[l];
	*p++ = T_PACKET;
	p = put_varint(p, (uint64_t)L->inner);
	*p++ = T_TIMESTAMP;
	p = put_padded(p, (uint64_t)e->delta[i], L->w[F_DELTA]);
	*p++ = T_SEQ;
	p = put_padded(p, (uint64_t)AT(in->seq, int64_t, m), L->w[F_SEQ]);
	*p++ = T_TRACK_EVENT;
	p = put_varint(p, (uint64_t)L->body);
	*p++ = T_TYPE;
	*p++ = (uint8_t)kind;
	if (kind == BEGIN || kind == INSTANT) {
		*p++ = T_NAME_IID;
		p = put_padded(p, (uint64_t)AT(in->name, int64_t, m), L->w[F_NAME]);
	}
	if (l == L_INSTANT) {
		*p++ = T_TRACK_UUID;
		p = put_padded(p, AT(in->track, uint64_t, m), L->w[F_TRACK]);
		memcpy(p, T_END_FLOW, 2);
		p = put_fixed64(p + 2, AT(in->flow, uint64_t, m));
	} else if (l == L_COUNTER) {
		int64_t v = AT(in->value, int64_t, m);
		memcpy(p, T_COUNTER_VALUE, 2);
		p = put_padded(p + 2, v > 0 ? (uint64_t)v : 0, L->w[F_VALUE]);
	} else if (l >= L_CALLS) {
		int64_t r = AT(in->ref, int64_t, m);
		int type = AT(in->row_type, int32_t, r);
		uint64_t flow = AT(in->flow, uint64_t, m);
		if (flow) {
			memcpy(p, T_FLOW, 2);
			p = put_fixed64(p + 2, flow);
		}
		if ((r & 7) == 0) /* calls come in row order: fetch the values 4 lines ahead */
			for (Py_ssize_t j = 0; j < in->ncols; j++)
				__builtin_prefetch((const uint64_t *)in->cols[j].view.buf + r + 32);
		for (int32_t q = AT(in->plan_start, int32_t, type);
		     q < AT(in->plan_start, int32_t, type + 1); q++)
			p = put_annotation(p, &e->anns[q], r);
		if (AT(in->row_flags, uint32_t, r) & 1)
			p = put_annotation(p, &e->incomplete, r);
	}
	return p;
}

/* The packets, as bytes objects of about in->piece bytes each (whole packets). */
static PyObject *pieces(struct encoder *e, Py_ssize_t piece)
{
	Py_ssize_t k = e->in->order.n, start = 0;
	PyObject *list = PyList_New(0);
	while (list && start < k) {
		Py_ssize_t end = start, size = 0;
		while (end < k && (end == start || size + e->layouts[e->lay[end]].size <= piece))
			size += e->layouts[e->lay[end++]].size;
		PyObject *b = PyBytes_FromStringAndSize(NULL, size + SLACK);
		if (!b) {
			Py_CLEAR(list);
			break;
		}
		uint8_t *p = (uint8_t *)PyBytes_AS_STRING(b), *stop = p + size;
		Py_BEGIN_ALLOW_THREADS
		for (Py_ssize_t i = start; i < end; i++)
			p = put_packet(e, p, i);
		Py_END_ALLOW_THREADS
		if (p != stop) {
			Py_DECREF(b);
			Py_CLEAR(list);
			PyErr_SetString(PyExc_SystemError, "encode: packets not of their computed size");
			break;
		}
		if (_PyBytes_Resize(&b, size) < 0 || PyList_Append(list, b) < 0) {
			Py_XDECREF(b);
			Py_CLEAR(list);
			break;
		}
		Py_DECREF(b);
		start = end;
	}
	return list;
}

static int parse(struct input *in, PyObject *args)
{
	PyObject *o[16], *cols;
	unsigned long long incomplete_key;
	Py_ssize_t piece;
	memset(in, 0, sizeof(*in));
	if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOOOKn:encode", &o[0], &o[1], &o[2], &o[3],
			      &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12],
			      &o[13], &o[14], &o[15], &cols, &incomplete_key, &piece))
		return -1;
	if (piece < 1) {
		PyErr_Format(PyExc_ValueError, "piece: %zd bytes", piece);
		return -1;
	}
	in->piece = piece;
	static const char *names[] = {"order", "t", "kind", "seq", "name", "flow", "value",
				      "ref", "track", "clock", "row_type", "row_flags",
				      "plan_start", "plan_key", "plan_field", "plan_col"};
	static const Py_ssize_t sizes[] = {8, 8, 1, 8, 8, 8, 8, 8, 8, 8, 4, 4, 4, 4, 1, 4};
	struct column *all[] = {COLUMNS(in)};
	for (int i = 0; i < 16; i++)
		if (column_get(all[i], o[i], sizes[i], names[i], i == 9) < 0)
			return -1;
	in->incomplete_key = incomplete_key;
	Py_ssize_t n = in->t.n;
	struct column *same[] = {&in->kind, &in->seq, &in->name, &in->flow, &in->value, &in->ref,
				 &in->track};
	for (int i = 0; i < 7; i++)
		if (same[i]->n != n) {
			PyErr_Format(PyExc_ValueError, "%s: %zd markers, t has %zd", names[i + 2],
				     same[i]->n, n);
			return -1;
		}
	if (!PyTuple_Check(cols)) {
		PyErr_SetString(PyExc_TypeError, "cols: not a tuple");
		return -1;
	}
	in->ncols = PyTuple_GET_SIZE(cols);
	in->cols = PyMem_Calloc((size_t)in->ncols + 1, sizeof(struct column));
	if (!in->cols) {
		PyErr_NoMemory();
		return -1;
	}
	for (Py_ssize_t j = 0; j < in->ncols; j++) {
		if (column_item(&in->cols[j], cols, j, 8, "cols", 0) < 0)
			return -1;
		if (in->cols[j].n != in->row_type.n) {
			PyErr_Format(PyExc_ValueError, "cols[%zd]: %zd rows, row_type has %zd", j,
				     in->cols[j].n, in->row_type.n);
			return -1;
		}
	}
	Py_ssize_t nplan = in->plan_key.n;
	if (in->plan_field.n != nplan || in->plan_col.n != nplan || in->plan_start.n < 1 ||
	    in->row_flags.n != in->row_type.n) {
		PyErr_SetString(PyExc_ValueError,
				"plan_key, plan_field, plan_col: not of one length, or plan_start "
				"empty, or row_flags and row_type of different lengths");
		return -1;
	}
	for (Py_ssize_t q = 0; q < in->plan_start.n; q++) {
		int32_t s = AT(in->plan_start, int32_t, q);
		if (s < 0 || s > nplan || (q && s < AT(in->plan_start, int32_t, q - 1))) {
			PyErr_Format(PyExc_ValueError, "plan_start[%zd]: %d out of order", q, s);
			return -1;
		}
	}
	for (Py_ssize_t q = 0; q < nplan; q++) {
		int32_t c = AT(in->plan_col, int32_t, q);
		int f = AT(in->plan_field, uint8_t, q);
		if (c < 0 || c >= in->ncols || (f != 3 && f != 7 && f != 17)) {
			PyErr_Format(PyExc_ValueError, "plan entry %zd: column %d, field %d", q, c, f);
			return -1;
		}
	}
	return 0;
}

static PyObject *encode(PyObject *self, PyObject *args)
{
	(void)self;
	struct input in;
	struct encoder e = {.in = &in};
	PyObject *out = NULL;
	if (parse(&in, args) < 0)
		goto cleanup;
	e.nplan = in.plan_key.n;
	e.ntypes = in.plan_start.n - 1;
	e.nrows = in.row_type.n;
	Py_ssize_t k = in.order.n, nlay = L_CALLS + 4 * e.ntypes;
	e.layouts = PyMem_Calloc((size_t)nlay, sizeof(struct layout));
	e.col_w = PyMem_Calloc((size_t)in.ncols + 1, 1);
	e.anns = PyMem_Calloc((size_t)e.nplan + 1, sizeof(struct annotation));
	e.delta = PyMem_Malloc(((size_t)k + 1) * sizeof(int64_t));
	e.lay = PyMem_Malloc(((size_t)k + 1) * sizeof(int32_t));
	e.clock = PyMem_Malloc(((size_t)in.clock.n + 1) * sizeof(int64_t));
	if (!e.layouts || !e.col_w || !e.anns || !e.delta || !e.lay || !e.clock) {
		PyErr_NoMemory();
		goto cleanup;
	}
	memcpy(e.clock, in.clock.view.buf, (size_t)in.clock.view.len);
	int failed;
	Py_BEGIN_ALLOW_THREADS
	failed = measure(&e);
	Py_END_ALLOW_THREADS
	if (failed) {
		PyErr_SetString(e.error_type, e.error);
		goto cleanup;
	}
	for (Py_ssize_t q = 0; q < e.nplan; q++)
		prepare(&e.anns[q], AT(in.plan_key, uint32_t, q), AT(in.plan_field, uint8_t, q),
			e.col_w[AT(in.plan_col, int32_t, q)],
			in.cols[AT(in.plan_col, int32_t, q)].view.buf);
	prepare(&e.incomplete, in.incomplete_key, 3, 1, NULL);
	for (Py_ssize_t l = 0; l < nlay; l++)
		size_layout(&e, (int)l);
	PyObject *list = pieces(&e, in.piece);
	if (list) {
		memcpy(in.clock.view.buf, e.clock, (size_t)in.clock.view.len);
		out = Py_BuildValue("(Nnnn)", list, e.begins, e.flows, e.counters);
	}
cleanup:
	PyMem_Free(e.layouts);
	PyMem_Free(e.col_w);
	PyMem_Free(e.anns);
	PyMem_Free(e.delta);
	PyMem_Free(e.lay);
	PyMem_Free(e.clock);
	input_release(&in);
	return out;
}

/* Fibonacci hashing: the top bits of the value times 2^64 / golden ratio. */
static size_t slot_of(int64_t v, int bits)
{
	return (size_t)(((uint64_t)v * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* distinct(x, inv, first) -> u: x's distinct values in the order they first appear;
 * inv[i] = the index of x[i] among them, first[j] = where the j-th first appears. */
static PyObject *distinct(PyObject *self, PyObject *args)
{
	(void)self;
	PyObject *ox, *oinv, *ofirst, *out = NULL;
	struct column x = {0}, inv = {0}, first = {0};
	int64_t *slot = NULL; /* hash table: index + 1 of a value's first appearance; 0 empty */
	if (!PyArg_ParseTuple(args, "OOO:distinct", &ox, &oinv, &ofirst) ||
	    column_get(&x, ox, 8, "x", 0) < 0 || column_get(&inv, oinv, 8, "inv", 1) < 0 ||
	    column_get(&first, ofirst, 8, "first", 1) < 0)
		goto cleanup;
	if (inv.n < x.n || first.n < x.n) {
		PyErr_Format(PyExc_ValueError, "inv, first: fewer than the %zd values of x", x.n);
		goto cleanup;
	}
	const int64_t *v = x.view.buf;
	int64_t *in = inv.view.buf, *fi = first.view.buf, u = 0;
	int bits = 6;
	size_t cap = (size_t)1 << bits, mask = cap - 1;
	slot = PyMem_Calloc(cap, sizeof(int64_t));
	if (!slot) {
		PyErr_NoMemory();
		goto cleanup;
	}
	for (Py_ssize_t i = 0; i < x.n; i++) {
		size_t h = slot_of(v[i], bits);
		while (slot[h] && v[slot[h] - 1] != v[i])
			h = (h + 1) & mask;
		if (slot[h]) {
			in[i] = in[slot[h] - 1];
			continue;
		}
		slot[h] = i + 1;
		in[i] = u;
		fi[u++] = i;
		if ((size_t)u * 2 > cap) { /* grow: rehash the first appearances */
			PyMem_Free(slot);
			bits += 2;
			cap = (size_t)1 << bits;
			mask = cap - 1;
			slot = PyMem_Calloc(cap, sizeof(int64_t));
			if (!slot) {
				PyErr_NoMemory();
				goto cleanup;
			}
			for (int64_t j = 0; j < u; j++) {
				size_t g = slot_of(v[fi[j]], bits);
				while (slot[g])
					g = (g + 1) & mask;
				slot[g] = fi[j] + 1;
			}
		}
	}
	out = PyLong_FromLongLong(u);
cleanup:
	PyMem_Free(slot);
	column_release(&x);
	column_release(&inv);
	column_release(&first);
	return out;
}

static PyMethodDef methods[] = {
	{"distinct", distinct, METH_VARARGS,
	 "distinct(x, inv, first) -> u\n\n"
	 "The u distinct values of x (int64) in the order they first appear: inv[i] (int64) is\n"
	 "the index of x[i] among them, first[j] where the j-th first appears."},
	{"encode", encode, METH_VARARGS,
	 "encode(order, t, kind, seq, name, flow, value, ref, track, clock, row_type, row_flags,\n"
	 "       plan_start, plan_key, plan_field, plan_col, cols, incomplete_key, piece)\n"
	 "       -> (pieces, begins, flows, counter_points)\n\n"
	 "The Trace.packet of each marker order names, in that order, as bytes of about piece\n"
	 "bytes each (whole packets), and how many of them are begins, begins with a flow and\n"
	 "counter points; clock[seq] (each sequence's incremental clock) moves to each\n"
	 "packet's time."},
	{0},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_speedups",
	.m_doc = "The trace writer's per-event loops (trace_export.perfetto).",
	.m_size = -1,
	.m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
	return PyModule_Create(&module);
}
