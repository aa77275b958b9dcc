/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * PYTHON probe: sampled Python stacks of a process. The probe runs on a
 * per-CPU clock (perf_event, --sample-hz) and, when it interrupts a thread of
 * the target, records that thread's Python stack (pystack.bpf.h); each sample
 * stands for one period of CPU time (its duration). The stacks themselves go
 * out once each in XPU_BATCH_STACKS batches, as for CUDA attribution.
 */
#ifndef XPU_PYTHON_H
#define XPU_PYTHON_H

#include "xpu_abi.h"

enum python_arg_class {
	PYTHON_ARGS_SAMPLE = 0,
};

enum python_fn {
	PYTHON_FN_sample = 0x000,	/* the thread was on a CPU, running its stack */
};

struct python_event {
	struct xpu_event_hdr h;
	__u64 py_stack;		/* py_stacks key; 0: the thread ran no Python code then */
};

#endif /* XPU_PYTHON_H */
