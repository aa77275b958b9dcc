/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The Python stack of the calling thread, read from the interpreter's memory
 * (no USDT: CPython 3.11+ fires none without a tracer). The thread's
 * PyThreadState is found by walking _PyRuntime's interpreters and their
 * threads for native_thread_id == tid, then cached per tid (and re-checked on
 * every use, since thread states are freed and reused). Frames are read one
 * span each; a stack is stored once in py_stacks under a 64-bit hash of its
 * (code, instruction) pairs, and events carry the hash. Include once, from a
 * probe that sets py_runtime (0: attribution off, compiled out at load).
 */
#ifndef XPU_PYSTACK_BPF_H
#define XPU_PYSTACK_BPF_H

#include <bpf/bpf_core_read.h>
#include "pystack.h"
#include "maps.bpf.h"

const volatile __u64 py_runtime = 0;		/* &_PyRuntime in the target */
const volatile struct py_offsets py = {};
__u64 py_unsaved = 0;	/* events naming a stack py_stacks had no room for */

TID_LRU(py_tstates, 16384, __u64);		/* PyThreadState * */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);		/* distinct stacks; more are counted, not kept */
	__type(key, __u64);
	__type(value, struct py_stack);
} py_stacks SEC(".maps");

PERCPU_ONE(py_scratch, struct py_stack);

static __always_inline __u64 py_read(__u64 addr)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return v;
}

/* What identifies the thread in its PyThreadState: the native id, or (3.10) the fs base. */
static __always_inline __u64 py_thread_key(__u32 tid)
{
	if (py.tstate_thread_id)
		return BPF_CORE_READ(bpf_get_current_task_btf(), thread.fsbase);
	return tid;
}

static __always_inline __u64 py_thread_state(__u32 tid)
{
	__u64 *cached = bpf_map_lookup_elem(&py_tstates, &tid), ts, interp;
	__u32 at = py.tstate_thread_id ? py.tstate_thread_id : py.tstate_native_tid;
	__u64 key = py_thread_key(tid);

	if (cached && *cached && py_read(*cached + at) == key)
		return *cached;
	interp = py_read(py_runtime + py.runtime_interp_head);
	for (int i = 0; i < PY_MAX_INTERPRETERS && interp; i++) {
		ts = py_read(interp + py.interp_threads_head);
		for (int j = 0; j < PY_MAX_THREADS && ts; j++) {
			if (py_read(ts + at) == key) {
				bpf_map_update_elem(&py_tstates, &tid, &ts, BPF_ANY);
				return ts;
			}
			ts = py_read(ts + py.tstate_next);
		}
		interp = py_read(interp + py.interp_next);
	}
	return 0;
}

#define PY_SPAN_U64(buf, off) (*(__u64 *)((buf) + ((off) - py.span_start)))

/* A frame's code object (3.14's tagged reference untagged). */
static __always_inline __u64 py_frame_code(__u64 frame)
{
	return py_read(frame + py.frame_code) & ~(__u64)PY_TAG_BITS;
}

/* The thread's current frame (0: none, or not a Python thread). */
static __always_inline __u64 py_current_frame(__u32 tid)
{
	__u64 ts = py_thread_state(tid);

	if (!ts)
		return 0;
	if (py.tstate_current_frame)
		return py_read(ts + py.tstate_current_frame);
	return py_read(py_read(ts + py.tstate_cframe) + py.cframe_current_frame);
}

/* The stack from frame outwards: its hash (0: no Python frames). */
static __always_inline __u64 py_capture_from(__u32 tgid, __u64 frame)
{
	__u64 hash = 0xcbf29ce484222325ULL;
	__u8 span[PY_FRAME_SPAN];
	struct py_stack *st;
	__u32 zero = 0, n = 0;

	st = bpf_map_lookup_elem(&py_scratch, &zero);
	if (!st)
		return 0;
	for (int i = 0; i < PY_MAX_FRAMES && frame; i++) {
		/* only the span: a frame near the end of its stack chunk has no more mapped */
		if (bpf_probe_read_user(span, py.span_len, (void *)(frame + py.span_start)))
			break;
		__u64 code = PY_SPAN_U64(span, py.frame_code) & ~(__u64)PY_TAG_BITS;
		__u64 instr = PY_SPAN_U64(span, py.frame_instr);
		__u8 owner = span[py.frame_owner - py.span_start];

		frame = PY_SPAN_U64(span, py.frame_previous);
		if (n >= PY_MAX_FRAMES)
			break;
		/* The agent skips frames owned by the C stack (3.12+): no branch here, which
		 * would multiply the paths the verifier walks through the loop. */
		st->code[n] = code;
		st->instr[n] = instr;
		st->owner[n] = owner;
		hash = (hash ^ code) * 0x100000001b3ULL;
		hash = (hash ^ instr) * 0x100000001b3ULL;
		n++;
	}
	if (!n)
		return 0;
	st->tgid = tgid;
	st->nframes = n;
	hash |= 1;	/* never 0 */
	if (bpf_map_update_elem(&py_stacks, &hash, st, BPF_NOEXIST) == -7)	/* -E2BIG */
		__sync_fetch_and_add(&py_unsaved, 1);	/* the table is full: the agent reports it */
	return hash;
}

/* The calling thread's stack: its hash (0: no Python frames, or not a Python thread). */
static __always_inline __u64 py_capture(__u32 tgid, __u32 tid)
{
	__u64 frame;

	if (!py_runtime)
		return 0;
	frame = py_current_frame(tid);
	return frame ? py_capture_from(tgid, frame) : 0;
}

#endif /* XPU_PYSTACK_BPF_H */
