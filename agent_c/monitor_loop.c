// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <bpf/libbpf.h>
#include "exit_codes.h"
#include "monitor_loop.h"
#include "monitor_start.h"
#include "proc_helpers.h"
#include "window_gate.h"

__u64 monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int map_fd(struct monitor_loop *l, const char *name)
{
	return bpf_map__fd(bpf_object__find_map_by_name(l->obj, name));
}

int monitor_loop_open(struct monitor_loop *l, __u16 monitor_type, __u16 event_size)
{
	const struct agent_env *env = l->env;
	struct sink_opts so = monitor_sink_opts(env);
	char err[PATH_MAX + 256];
	int ret;

	ret = sink_open(&l->sink, &so, err, sizeof(err));
	if (ret)
		return agent_fail(ret, "%s", err);
	ret = drain_init(&l->drain, map_fd(l, "events"), map_fd(l, "drops"), l->sink,
			 monitor_type, event_size, env->batch_events, env->monitor_id,
			 env->machine_id);
	if (ret)
		return agent_fail(AGENT_START_FAILED, "failed to create ring buffer: %s",
				  strerror(-ret));
	return AGENT_OK;
}

static void flush(struct monitor_loop *l, __u32 flags)
{
	l->drain.missed_entries = prog_recursion_misses(l->obj, l->entry_prefix);
	if (l->py && py_resolver_flush(l->py, &l->drain.batch, l->sink) && !l->drain.err)
		l->drain.err = -EIO;
	drain_flush(&l->drain, flags);
}

int monitor_loop_run(struct monitor_loop *l)
{
	const struct agent_env *env = l->env;
	__u64 last_flush = monotonic_ns(), now;
	int n, ret = AGENT_OK;

	while (!*l->exiting && !l->drain.err) {
		n = drain_poll(&l->drain, env->poll_ms);
		if (n < 0) {
			fprintf(stderr, "xputrace-agent: failed to poll ring buffer: %s\n",
				strerror(-n));
			ret = AGENT_RUNTIME_ERROR;
			break;
		}
		sink_service(l->sink);
		if (l->window_fd > 0 && window_closed(l->window_fd)) {
			ret = AGENT_WINDOW_CLOSED;
			break;
		}
		now = monotonic_ns();
		if (now - last_flush < (__u64)env->flush_ms * 1000000)
			continue;
		if (l->on_flush)
			l->on_flush(l->ctx, now);
		flush(l, 0);
		last_flush = monotonic_ns();
		if (env->target_pid && !proc_alive(env->proc_root, env->target_pid)) {
			fprintf(stderr, "xputrace-agent: target %d exited\n", env->target_pid);
			break;
		}
	}
	if (l->drain.err) {
		fprintf(stderr, "xputrace-agent: failed to send batch: %s\n",
			strerror(-l->drain.err));
		ret = AGENT_RUNTIME_ERROR;
	}
	return ret;
}

int monitor_loop_finish(struct monitor_loop *l, int ret)
{
	__u64 unacked;

	flush(l, XPU_BATCH_FINAL);
	if (l->drain.err && (ret == AGENT_OK || ret == AGENT_WINDOW_CLOSED))
		ret = AGENT_RUNTIME_ERROR;
	unacked = sink_finish(l->sink);
	if (l->window_fd > 0)
		window_print_stats(l->window_fd);	/* before stats: the last line read */
	drain_print_stats(&l->drain, l->sink, unacked, l->incomplete, l->taken);
	if (ret == AGENT_WINDOW_CLOSED)
		fprintf(stderr, "xputrace-agent: its window closed: %s\n", l->env->window);
	return ret;
}

void monitor_loop_close(struct monitor_loop *l)
{
	drain_free(&l->drain);
	sink_close(l->sink);
	l->sink = NULL;
}
