/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The step window (--window FUNCTION:SKIP:COUNT): a monitor keeps events only
 * from the start of call SKIP+1 of a named Python function to the end of call
 * SKIP+COUNT, the calls counted in the target process from the probe's start,
 * on every thread. The gate is one map entry (BPF map "window", struct
 * window_gate) that every probe of the monitor checks before it records
 * anything (bpf/window.bpf.h); the Python call hooks (python.bpf.c) count the
 * calls and move it from SHUT to OPEN to CLOSED, never back. The agent sees
 * CLOSED, drains what was recorded and exits AGENT_WINDOW_CLOSED.
 *
 * A probe event is in the window when it starts there: a library call or
 * system call entered while the window is open is kept whole, even if it
 * returns after it closed; a Python call is kept when it started in the window.
 */
#ifndef XPU_WINDOW_H
#define XPU_WINDOW_H

#include "xpu_abi.h"

enum window_state {
	WINDOW_SHUT = 0,	/* fewer than SKIP+1 calls have started */
	WINDOW_OPEN = 1,	/* from the start of call SKIP+1 */
	WINDOW_CLOSED = 2,	/* from the end of call SKIP+COUNT: the agent ends */
};

struct window_gate {
	__u32 state;		/* enum window_state */
	__u32 reserved;
	__u64 calls;		/* calls of the function started since the probe's start */
	__u64 opened_ns;	/* CLOCK_MONOTONIC at the transitions; 0: not yet */
	__u64 closed_ns;
};

#endif /* XPU_WINDOW_H */
