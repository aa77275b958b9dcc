// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "pystack_agent.h"

#define FRAME_OWNED_BY_GENERATOR 1

/*
 * Each offset name (as manager/python/offsets.py has them), where it goes, and which
 * CPython layouts need it: 3.10 (frame objects: f_lasti an index, no native thread id)
 * or 3.11+ (interpreter frames). NEW_FRAME: 3.11+ reach the current frame either
 * through tstate_current_frame (3.13+) or through the _PyCFrame (3.11-3.12).
 */
enum { OLD = 1, NEW = 2, BOTH = 3, NEW_FRAME = 4 };

struct offset_name {
	const char *name;
	size_t walk, code;	/* offsetof + 1 into struct py_offsets / py_code_offsets; 0: not */
	int needed;
};

#define W(f, n) { #f, offsetof(struct py_offsets, f) + 1, 0, n }
#define C(f, n) { #f, 0, offsetof(struct py_code_offsets, f) + 1, n }
#define B(f, n) \
	{ #f, offsetof(struct py_offsets, f) + 1, offsetof(struct py_code_offsets, f) + 1, n }
static const struct offset_name names[] = {
	W(runtime_interp_head, BOTH), W(interp_next, BOTH), W(interp_threads_head, BOTH),
	W(tstate_next, BOTH), W(tstate_native_tid, NEW), W(tstate_thread_id, OLD),
	W(tstate_current_frame, OLD | NEW_FRAME), W(tstate_cframe, NEW_FRAME),
	W(cframe_current_frame, NEW_FRAME), W(frame_code, BOTH), W(frame_previous, BOTH),
	W(frame_owner, NEW), W(frame_instr, NEW),
	{ "frame_lasti", offsetof(struct py_offsets, frame_instr) + 1, 0, OLD },
	C(code_firstlineno, BOTH), C(code_filename, BOTH), B(code_qualname, BOTH),
	C(code_linetable, BOTH), C(code_firsttraceable, NEW), C(code_adaptive, NEW),
	C(bytes_size, BOTH), C(bytes_data, BOTH), C(str_length, BOTH), B(str_state, BOTH),
	B(str_ascii_data, BOTH), C(str_compact_data, BOTH),
};

static int check_layout(__u64 seen, struct py_offsets *walk, struct py_code_offsets *code,
			char *err, size_t errlen)
{
	size_t n = sizeof(names) / sizeof(names[0]), i;
	bool old = false, cur = false, cframe = 0;
	int layout;

	for (i = 0; i < n; i++)
		if (seen & 1ULL << i && !strcmp(names[i].name, "frame_lasti"))
			old = true;
	layout = old ? OLD : NEW;
	code->lasti_index = old;
	for (i = 0; i < n; i++) {
		if (!strcmp(names[i].name, "tstate_current_frame"))
			cur = seen & 1ULL << i;
		else if (!strcmp(names[i].name, "tstate_cframe"))
			cframe = seen & 1ULL << i;
		if (!(names[i].needed & layout) || seen & 1ULL << i)
			continue;
		snprintf(err, errlen, "offset %s missing", names[i].name);
		return -1;
	}
	if (!old && !cur && !cframe) {
		snprintf(err, errlen, "give tstate_current_frame, or tstate_cframe and "
			 "cframe_current_frame");
		return -1;
	}
	if (old)
		walk->frame_owner = walk->frame_code;	/* none: read, never used */
	return 0;
}

int py_parse_offsets(const char *list, struct py_offsets *walk, struct py_code_offsets *code,
		     char *err, size_t errlen)
{
	size_t n = sizeof(names) / sizeof(names[0]), i;
	const char *p = list, *end, *eq;
	__u64 seen = 0;
	__u32 lo, hi;

	memset(walk, 0, sizeof(*walk));
	memset(code, 0, sizeof(*code));
	for (; *p; p = *end ? end + 1 : end) {
		char *stop;
		long v;

		end = strchrnul(p, ',');
		eq = memchr(p, '=', end - p);
		for (i = 0; eq && i < n; i++)
			if (strlen(names[i].name) == (size_t)(eq - p) &&
			    !memcmp(names[i].name, p, eq - p))
				break;
		if (!eq || i == n) {
			snprintf(err, errlen, "unknown offset '%.*s'", (int)(end - p), p);
			return -1;
		}
		v = strtol(eq + 1, &stop, 10);
		if (stop != end || stop == eq + 1 || v < 0 || v > 65535) {
			snprintf(err, errlen, "offset %s: '%.*s' is not 0-65535", names[i].name,
				 (int)(end - eq - 1), eq + 1);
			return -1;
		}
		if (names[i].walk)
			*(__u32 *)((char *)walk + names[i].walk - 1) = v;
		if (names[i].code)
			*(__u32 *)((char *)code + names[i].code - 1) = v;
		seen |= 1ULL << i;
	}
	if (check_layout(seen, walk, code, err, errlen))
		return -1;
	/* the span read per frame: from the lowest field to past the highest */
	lo = walk->frame_owner;
	hi = walk->frame_owner + 1;
	for (int k = 0; k < 3; k++) {
		__u32 at = (__u32[]){ walk->frame_code, walk->frame_previous, walk->frame_instr }[k];

		lo = at < lo ? at : lo;
		hi = at + 8 > hi ? at + 8 : hi;
	}
	if (hi - lo > PY_FRAME_SPAN) {
		snprintf(err, errlen, "frame offsets span more than %d bytes", PY_FRAME_SPAN);
		return -1;
	}
	walk->span_start = lo;
	walk->span_len = hi - lo;
	return 0;
}

int py_resolver_init(struct py_resolver *r, int map_fd, const struct py_code_offsets *o,
		     const char *proc_root, __u16 monitor_type, const char *monitor_id,
		     const char *machine_id)
{
	memset(r, 0, sizeof(*r));
	r->map_fd = map_fd;
	r->proc_root = proc_root;
	r->mem_fd = -1;
	r->o = *o;
	r->sent_cap = 1024;
	r->sent = calloc(r->sent_cap, sizeof(*r->sent));
	if (!r->sent)
		return -ENOMEM;
	int ret = batcher_init(&r->batch, monitor_type, sizeof(struct xpu_py_frame), 256,
			       monitor_id, machine_id);

	r->batch.not_events = true;	/* the stats and drop counts are about events */
	return ret;
}

void py_resolver_free(struct py_resolver *r)
{
	if (r->mem_fd >= 0)
		close(r->mem_fd);
	free(r->sent);
	r->sent = NULL;
	batcher_free(&r->batch);
}

static bool sent_has(struct py_resolver *r, __u64 id, bool add)
{
	size_t mask = r->sent_cap - 1, i;

	if (add && (r->sent_n + 1) * 2 > r->sent_cap) {
		__u64 *old = r->sent;
		size_t cap = r->sent_cap;

		r->sent = calloc(cap * 2, sizeof(*r->sent));
		if (!r->sent) {
			r->sent = old;
			return false;	/* sent again later: the backend keeps one */
		}
		r->sent_cap = cap * 2;
		r->sent_n = 0;
		for (i = 0; i < cap; i++)
			if (old[i])
				sent_has(r, old[i], true);
		free(old);
		mask = r->sent_cap - 1;
	}
	for (i = (id * 0x9e3779b97f4a7c15ULL) >> 20 & mask; r->sent[i]; i = (i + 1) & mask)
		if (r->sent[i] == id)
			return true;
	if (add) {
		r->sent[i] = id;
		r->sent_n++;
	}
	return false;
}

static int mem_of(struct py_resolver *r, pid_t pid)
{
	char path[256];

	if (r->mem_pid == pid && r->mem_fd >= 0)
		return r->mem_fd;
	if (r->mem_fd >= 0)
		close(r->mem_fd);
	snprintf(path, sizeof(path), "%s/%d/mem", r->proc_root, pid);
	r->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
	r->mem_pid = pid;
	return r->mem_fd;
}

static bool rd(int fd, __u64 addr, void *buf, size_t n)
{
	return fd >= 0 && pread(fd, buf, n, (off_t)addr) == (ssize_t)n;
}

static __u64 rd64(int fd, __u64 addr, bool *ok)
{
	__u64 v = 0;

	*ok = *ok && rd(fd, addr, &v, sizeof(v));
	return v;
}

/* Appends code point c as UTF-8; false when it does not fit. */
static bool put_utf8(char *out, size_t cap, size_t *len, __u32 c)
{
	char b[4];
	size_t n;

	if (c < 0x80)
		b[0] = c, n = 1;
	else if (c < 0x800)
		b[0] = 0xc0 | c >> 6, b[1] = 0x80 | (c & 63), n = 2;
	else if (c < 0x10000)
		b[0] = 0xe0 | c >> 12, b[1] = 0x80 | (c >> 6 & 63), b[2] = 0x80 | (c & 63), n = 3;
	else
		b[0] = 0xf0 | c >> 18, b[1] = 0x80 | (c >> 12 & 63), b[2] = 0x80 | (c >> 6 & 63),
		b[3] = 0x80 | (c & 63), n = 4;
	if (*len + n >= cap)
		return false;
	memcpy(out + *len, b, n);
	*len += n;
	return true;
}

/* A str object as UTF-8 into out (cap bytes with the NUL); sets *flags on truncation. */
static bool read_str(struct py_resolver *r, int fd, __u64 addr, char *out, size_t cap,
		     __u32 *flags)
{
	unsigned char raw[1024];
	__u32 state = 0, kind, c;
	__u64 length;
	size_t len = 0, n, i;
	bool ok = true;

	out[0] = 0;
	length = rd64(fd, addr + r->o.str_length, &ok);
	ok = ok && rd(fd, addr + r->o.str_state, &state, sizeof(state));
	kind = state >> 2 & 7;
	if (!ok || !(state >> 5 & 1) || (kind != 1 && kind != 2 && kind != 4))
		return false;
	n = length * kind < sizeof(raw) ? length * kind : sizeof(raw) / kind * kind;
	if (!rd(fd, addr + (state >> 6 & 1 ? r->o.str_ascii_data : r->o.str_compact_data), raw, n))
		return false;
	for (i = 0; i < n; i += kind) {
		c = kind == 1 ? raw[i] : kind == 2 ? raw[i] | raw[i + 1] << 8 :
		    raw[i] | raw[i + 1] << 8 | raw[i + 2] << 16 | (__u32)raw[i + 3] << 24;
		if (!put_utf8(out, cap, &len, c))
			break;
	}
	out[len] = 0;
	if (i < length * kind)
		*flags |= XPU_PY_TRUNCATED;
	return true;
}

/* The line of code unit `unit` from a location table (CPython's Objects/locations.md). */
static int table_line(const unsigned char *t, size_t size, int line, __u64 unit)
{
	size_t i = 0;
	__u64 at = 0;

	while (i < size) {
		unsigned char first = t[i++];
		int code = first >> 3 & 15, len = (first & 7) + 1, this = line, fields = 0;
		__u64 v = 0;

		if (code == 15) {
			this = -1;
		} else if (code == 14 || code == 13) {
			fields = code == 14 ? 4 : 1;	/* line delta (signed), then 3 more */
		} else if (code >= 10) {
			line += code - 10;
			this = line;
			i += 2;
		} else {
			i += 1;
		}
		for (int f = 0; f < fields && i < size; f++) {
			int shift = 0;
			unsigned char b;

			v = 0;
			do {
				b = t[i++];
				v |= (__u64)(b & 63) << shift;
				shift += 6;
			} while (b & 64 && i < size);
			if (f == 0) {
				line += v & 1 ? -(int)(v >> 1) : (int)(v >> 1);
				this = line;
			}
		}
		if (at <= unit && unit < at + len)
			return this;
		at += len;
	}
	return -1;
}

/* The line at byte addr from a 3.10 line table (Objects/lnotab_notes.txt): (start delta,
 * line delta) byte pairs, a line delta of -128 meaning none. */
static int table_line_310(const unsigned char *t, size_t size, int line, __u64 addr)
{
	__u64 end = 0;
	int current = -1;

	for (size_t i = 0; i + 1 < size && end <= addr; i += 2) {
		signed char delta = (signed char)t[i + 1];

		end += t[i];
		if (delta == -128) {
			current = -1;
		} else {
			line += delta;
			current = line;
		}
	}
	return end > addr ? current : -1;
}

/* Fills f for one frame; false for an incomplete frame (pushed, not started: skipped). */
static bool resolve_frame(struct py_resolver *r, int fd, __u64 code, __u64 instr,
			  struct xpu_py_frame *f)
{
	unsigned char table[4096];
	__u64 obj, size, unit;
	__s32 first = 0, traceable = 0;
	bool ok = true;

	/*
	 * Not started: its first instruction not reached (3.10: f_lasti -1; 3.11+:
	 * the instruction pointer before the code), as a function's frame is at its
	 * first RESUME or at _PyEval_EvalFrameDefault's entry (the PYTHON monitor's
	 * calls): the line of its def.
	 */
	bool fresh = r->o.lasti_index ? (__s32)instr < 0 : instr < code + r->o.code_adaptive;

	if (r->o.lasti_index) {	/* 3.10: f_lasti, an instruction index */
		unit = (__u32)instr;
	} else {
		unit = (instr - code - r->o.code_adaptive) / 2;
		ok = rd(fd, code + r->o.code_firsttraceable, &traceable, sizeof(traceable));
	}
	ok = ok && rd(fd, code + r->o.code_firstlineno, &first, sizeof(first));
	if (ok && !fresh && unit < (__u64)traceable)
		return false;	/* pushed, its prologue not run: not a frame of the stack yet */
	ok = ok && read_str(r, fd, rd64(fd, code + r->o.code_qualname, &ok), f->function,
			    sizeof(f->function), &f->flags);
	ok = ok && read_str(r, fd, rd64(fd, code + r->o.code_filename, &ok), f->file,
			    sizeof(f->file), &f->flags);
	obj = rd64(fd, code + r->o.code_linetable, &ok);
	size = rd64(fd, obj + r->o.bytes_size, &ok);
	if (size > sizeof(table))
		size = sizeof(table);	/* lines past it read as none */
	ok = ok && rd(fd, obj + r->o.bytes_data, table, size);
	f->line = !ok ? -1 : fresh ? first
		  : r->o.lasti_index ? table_line_310(table, size, first, unit * 2)
		  : table_line(table, size, first, unit);
	if (!ok)
		f->flags |= XPU_PY_UNREADABLE;
	return true;
}

static int send_batch(struct py_resolver *r, struct batcher *events, struct sink *sink)
{
	int ret;

	r->batch.hdr.seq = events->hdr.seq;	/* one sequence for both kinds of batch */
	ret = batcher_flush(&r->batch, sink, 0, 0, XPU_BATCH_STACKS);
	events->hdr.seq = r->batch.hdr.seq;
	return ret;
}

int py_resolver_flush(struct py_resolver *r, struct batcher *events, struct sink *sink)
{
	struct xpu_py_frame frames[PY_MAX_FRAMES];
	__u64 key, next, *prev = NULL;
	struct py_stack st;
	int ret;

	while (!bpf_map_get_next_key(r->map_fd, prev, &next)) {
		key = next;
		prev = &key;
		if (sent_has(r, key, false) || bpf_map_lookup_elem(r->map_fd, &key, &st))
			continue;
		int fd = mem_of(r, st.tgid), n = 0;

		for (__u32 d = 0; d < st.nframes && d < PY_MAX_FRAMES; d++) {
			struct xpu_py_frame *f = &frames[n];

			memset(f, 0, sizeof(*f));
			if ((r->o.lasti_index || st.owner[d] < PY_OWNED_BY_CSTACK) &&
			    resolve_frame(r, fd, st.code[d], st.instr[d], f))
				n++;
		}
		for (int d = 0; d < n; d++) {
			struct xpu_py_frame *f = batcher_slot(&r->batch);

			if (!f) {
				ret = send_batch(r, events, sink);
				if (ret)
					return ret;
				f = batcher_slot(&r->batch);
			}
			*f = frames[d];
			f->stack_id = key;
			f->pid = st.tgid;
			f->depth = d;
			f->nframes = n;
		}
		sent_has(r, key, true);
		r->stacks++;
		r->frames += n;
	}
	return send_batch(r, events, sink);
}

void py_resolver_print_stats(const struct py_resolver *r, __u64 unsaved)
{
	printf("{\"py_stacks\": {\"sent\": %llu, \"frames\": %llu, \"unsaved_events\": %llu}}\n",
	       r->stacks, r->frames, unsaved);
	fflush(stdout);
	if (unsaved)
		fprintf(stderr, "xputrace-agent: %llu events name a Python stack the stack table "
			"had no room for\n", unsaved);
}
