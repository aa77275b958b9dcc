/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The run every monitor that drains one probe's ring buffer shares (CUDA,
 * ACL, PYTHON): open the sink and the drain, drain the ring buffer into
 * batches, flush every --flush-ms (the monitor's own on_flush first, then the
 * stacks not sent yet), stop on a signal, when the target exits or when the
 * step window closes (AGENT_WINDOW_CLOSED); then the
 * final batch and the statistics. The SYSCALL tracer serves many monitors
 * from one ring buffer, each flushed on its own clock (syscall_hub.c).
 */
#ifndef XPU_MONITOR_LOOP_H
#define XPU_MONITOR_LOOP_H

#include <signal.h>
#include "agent_env.h"
#include "drain_helpers.h"
#include "pystack_agent.h"

struct monitor_loop {
	const struct agent_env *env;
	volatile sig_atomic_t *exiting;
	struct sink *sink;
	struct drain drain;
	struct bpf_object *obj;
	const char *entry_prefix;	/* programs whose recursion misses are lost events */
	struct py_resolver *py;		/* NULL: no Python stacks */
	/* Optional: at every flush, before the batch goes (now: CLOCK_MONOTONIC). */
	void (*on_flush)(void *ctx, __u64 now);
	void *ctx;
	int window_fd;			/* > 0: the step window's gate map; stop when it closes */
	/* For the statistics line: calls still in flight at stop, calls taken from threads. */
	__u64 incomplete;
	__u64 taken;
};

__u64 monotonic_ns(void);
/*
 * Opens the sink of env's --output or --backend-zmq-endpoint and the drain of
 * obj's "events" ring buffer (its "drops" counters) into it. Returns AGENT_OK
 * or the exit code, reported.
 */
int monitor_loop_open(struct monitor_loop *l, __u16 monitor_type, __u16 event_size);
/* Runs until stopped; AGENT_OK, AGENT_WINDOW_CLOSED or AGENT_RUNTIME_ERROR. */
int monitor_loop_run(struct monitor_loop *l);
/*
 * Once the probe is detached and the ring buffer consumed (and what else the
 * monitor takes, incomplete of them): stacks, the final batch, the stats line.
 */
int monitor_loop_finish(struct monitor_loop *l, int ret);
/* Frees the drain and closes the sink (whatever of them was opened). */
void monitor_loop_close(struct monitor_loop *l);

#endif
