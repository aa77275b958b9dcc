// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "exit_codes.h"
#include "monitor_loop.h"
#include "proc_helpers.h"

__u64 monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void flush(struct monitor_loop *l, __u32 flags)
{
	l->drain->missed_entries = prog_recursion_misses(l->obj, l->entry_prefix);
	if (l->py && py_resolver_flush(l->py, &l->drain->batch, l->sink) && !l->drain->err)
		l->drain->err = -EIO;
	drain_flush(l->drain, flags);
}

int monitor_loop_run(struct monitor_loop *l)
{
	const struct agent_env *env = l->env;
	__u64 last_flush = monotonic_ns(), now;
	int n, ret = AGENT_OK;

	while (!*l->exiting && !l->drain->err) {
		n = drain_poll(l->drain, env->poll_ms);
		if (n < 0) {
			fprintf(stderr, "xputrace-agent: failed to poll ring buffer: %s\n",
				strerror(-n));
			return AGENT_RUNTIME_ERROR;
		}
		sink_service(l->sink);
		now = monotonic_ns();
		if (now - last_flush < (__u64)env->flush_ms * 1000000)
			continue;
		flush(l, 0);
		last_flush = monotonic_ns();
		if (env->target_pid && !proc_alive(env->proc_root, env->target_pid)) {
			fprintf(stderr, "xputrace-agent: target %d exited\n", env->target_pid);
			break;
		}
	}
	if (l->drain->err) {
		fprintf(stderr, "xputrace-agent: failed to send batch: %s\n",
			strerror(-l->drain->err));
		ret = AGENT_RUNTIME_ERROR;
	}
	return ret;
}

int monitor_loop_finish(struct monitor_loop *l, int ret, __u64 incomplete)
{
	__u64 unacked;

	flush(l, XPU_BATCH_FINAL);
	if (l->drain->err && ret == AGENT_OK)
		ret = AGENT_RUNTIME_ERROR;
	unacked = sink_finish(l->sink);
	drain_print_stats(l->drain, l->sink, unacked, incomplete, 0);
	return ret;
}
