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
 */
#ifndef XPU_PYTHON_H
#define XPU_PYTHON_H

#include "xpu_abi.h"

enum python_arg_class {
	PYTHON_ARGS_SAMPLE = 0,	/* py_stack */
	PYTHON_ARGS_GC = 1,	/* generation, collected */
};

enum python_fn {
	PYTHON_FN_sample = 0x000,	/* the thread was on a CPU, running its stack */
	PYTHON_FN_gc = 0x100,		/* a collection: USDT gc__start to gc__done */
};

struct python_event {
	struct xpu_event_hdr h;
	__u64 py_stack;		/* py_stacks key; 0: the thread ran no Python code then */
	__u32 generation;	/* gc: the generation collected */
	__u32 reserved;
	__u64 collected;	/* gc: objects collected (h.ret is the same, as gc__done gives) */
};

#endif /* XPU_PYTHON_H */
