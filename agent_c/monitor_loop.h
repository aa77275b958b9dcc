/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The running part every tracepoint- or perf-event-driven monitor shares
 * (SYSCALL, PYTHON): drain the ring buffer into batches, flush every
 * --flush-ms with the stacks not sent yet, stop on a signal or when the
 * target exits; then the final batch and the statistics.
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
	struct drain *drain;
	struct sink *sink;
	struct bpf_object *obj;
	const char *entry_prefix;	/* programs whose recursion misses are lost events */
	struct py_resolver *py;		/* NULL: no Python stacks */
};

__u64 monotonic_ns(void);
/* Runs until stopped; AGENT_OK or AGENT_RUNTIME_ERROR. */
int monitor_loop_run(struct monitor_loop *l);
/*
 * Once the probe is detached and the ring buffer consumed (and what else the
 * monitor takes, incomplete of them): stacks, the final batch, the stats line.
 */
int monitor_loop_finish(struct monitor_loop *l, int ret, __u64 incomplete);

#endif
