/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * PYTHON probe: sampled Python stacks of a process. The probe runs on a
 * per-CPU clock (perf_event, --sample-hz) and, when it interrupts a thread of
 * the target, records that thread's Python stack (pystack.bpf.h); each sample
 * stands for one period of CPU time (its duration). The stacks themselves go
 * out once each in XPU_BATCH_STACKS batches, as for CUDA attribution. Where
 * the interpreter has the gc__start/gc__done USDT probes (Debian's builds do,
 * pyenv's do not), each garbage collection is an event too, with the stack
 * that triggered it.
 *
 * Exact calls of the functions named by --py-functions (qualified names): a
 * uprobe where every Python function starts running (3.11+: the eval loop's
 * RESUME handlers; 3.10: _PyEval_EvalFrameDefault) and where frames return
 * (3.11+: the RETURN_VALUE/RETURN_CONST handlers; 3.10: its return), placed
 * by manager/python/hooks.py. Each call of a named function is an event from
 * its start to its return, with the stack it was called from (innermost: the
 * function). Every Python call of the process traps into the probe, named or
 * not: the agent reports how many (the cost) when it stops. A generator or
 * coroutine is one call from its first start: to its return (3.11+), or to its
 * first yield (3.10, whose frames leave the eval loop at each yield).
 *
 * The same hooks count the calls of a step window's function (--window,
 * window.h), for this monitor or, loaded on their own, for a CUDA or ACL one.
 */
#ifndef XPU_PYTHON_H
#define XPU_PYTHON_H

#include "xpu_abi.h"

enum python_arg_class {
	PYTHON_ARGS_SAMPLE = 0,	/* py_stack */
	PYTHON_ARGS_GC = 1,	/* generation, collected */
	PYTHON_ARGS_CALL = 2,	/* py_stack */
};

enum python_fn {
	PYTHON_FN_sample = 0x000,	/* the thread was on a CPU, running its stack */
	PYTHON_FN_gc = 0x100,		/* a collection: USDT gc__start to gc__done */
	/*
	 * a call of a function named by --py-functions, start to return; left by
	 * an exception instead: XPU_EV_INCOMPLETE (3.11+: found when a later call
	 * or a caller's return shows its frame gone, its duration up to then)
	 */
	PYTHON_FN_call = 0x200,
};

enum python_call_const {
	PY_MAX_FUNCS = 8,		/* names --py-functions takes */
	PY_FUNC_NAME_LEN = 64,		/* bytes per name, its NUL included */
	PY_MAX_OPEN = 16,		/* calls of named functions open per thread */
};

/* A named function's call in progress: PYTHON probe map py_open, per thread. */
struct py_open_call {
	__u64 code;		/* PyCodeObject * */
	__u64 ts_ns;
	__u64 py_stack;
	/*
	 * 3.10: the stack pointer at _PyEval_EvalFrameDefault's entry, which its
	 * return pairs with; 3.11+: the frame, where the thread's data stack holds
	 * it (0 for a generator's): frames there come and go last in, first out,
	 * so an open call whose frame lies at or above a new call's was left by an
	 * exception, which passes no RETURN
	 */
	__u64 key;
	__u64 window_call;	/* its number, when its end may close the step window (window.h) */
	__u32 emit;		/* 1: an event at its end (named by --py-functions, started in the
				 * window); 0: kept only for the window's count */
	__u32 reserved;
};

struct py_open_calls {
	__u32 depth;
	__u32 reserved;
	struct py_open_call call[PY_MAX_OPEN];
};

struct python_event {
	struct xpu_event_hdr h;
	__u64 py_stack;		/* py_stacks key; 0: the thread ran no Python code then */
	__u32 generation;	/* gc: the generation collected */
	__u32 reserved;
	__u64 collected;	/* gc: objects collected (h.ret is the same, as gc__done gives) */
};

#endif /* XPU_PYTHON_H */
