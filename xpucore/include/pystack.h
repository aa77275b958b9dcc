/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Python call-site attribution: what the BPF stack walker (pystack.bpf.h)
 * reads a target's CPython with, and what it leaves for the agent. Offsets
 * come from manager/python/target.py (generated per CPython version) through
 * the agent's --py-offsets; they are read-only data, constants to the
 * verifier.
 */
#ifndef XPU_PYSTACK_H
#define XPU_PYSTACK_H

#include "xpu_abi.h"

enum py_const {
	PY_MAX_FRAMES = 32,		/* innermost frames kept per stack */
	PY_MAX_INTERPRETERS = 4,
	PY_MAX_THREADS = 64,		/* thread states looked at per interpreter */
	PY_FRAME_SPAN = 80,		/* bytes read per frame, from span_start */
	/*
	 * 3.12+: owners from here on are frames without code (3.12-3.13: the C
	 * stack's entry frame; 3.14: the interpreter's (3) and the C stack's (4))
	 */
	PY_OWNED_BY_CSTACK = 3,
	/* 3.14: f_executable is a _PyStackRef, its low bits a tag: the pointer is this masked */
	PY_TAG_BITS = 3,
};

/* Byte offsets into one CPython version's structures (names as manager/python/offsets.py). */
struct py_offsets {
	__u32 runtime_interp_head;	/* _PyRuntimeState.interpreters.head */
	__u32 interp_next;		/* PyInterpreterState.next */
	__u32 interp_threads_head;	/* PyInterpreterState.threads.head */
	__u32 tstate_next;		/* PyThreadState.next */
	__u32 tstate_native_tid;	/* PyThreadState.native_thread_id (3.11+), else 0 */
	__u32 tstate_thread_id;		/* 3.10: PyThreadState.thread_id, pthread_self() */
	__u32 tstate_current_frame;	/* 3.13+: PyThreadState.current_frame (3.10: frame) */
	__u32 tstate_cframe;		/* 3.11-3.12: PyThreadState.cframe */
	__u32 cframe_current_frame;	/* 3.11-3.12: _PyCFrame.current_frame */
	__u32 frame_code;		/* _PyInterpreterFrame.f_code (3.13: f_executable) */
	__u32 frame_previous;		/* (3.10: PyFrameObject.f_back) */
	__u32 frame_instr;		/* prev_instr (3.13: instr_ptr; 3.10: f_lasti, an index) */
	__u32 frame_owner;
	__u32 span_start;		/* the lowest of the four frame offsets */
	__u32 span_len;			/* bytes from span_start to past the highest field */
	/* for matching a code object's name (the PYTHON monitor's --py-functions) */
	__u32 code_qualname;		/* PyCodeObject.co_qualname (3.10: co_name) */
	__u32 str_state;		/* PyASCIIObject.state */
	__u32 str_ascii_data;		/* where a compact ASCII string's characters start */
};

/* One captured stack (BPF map py_stacks, keyed by its hash): innermost first. */
struct py_stack {
	__u32 tgid;
	__u32 nframes;
	__u64 code[PY_MAX_FRAMES];	/* PyCodeObject * */
	__u64 instr[PY_MAX_FRAMES];	/* the frame's instruction pointer */
	__u8 owner[PY_MAX_FRAMES];			/* _frameowner: the agent skips PY_OWNED_BY_CSTACK and above */
};

#endif /* XPU_PYSTACK_H */
