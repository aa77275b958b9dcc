// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The PYTHON monitor: a CPU clock per CPU (perf_event, --sample-hz) runs
 * python.bpf.c, which keeps the samples of the target's threads with their
 * Python stacks; the stacks are resolved and sent once each (pystack_agent.c).
 * One event per CPU rather than per thread, so threads the target starts later
 * are sampled too; a thread off the CPU is not sampled (on-CPU profile).
 * With a step window (--window), the function's calls are counted by the same
 * call hooks as --py-functions', and every event waits for the window.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "exit_codes.h"
#include "monitor_loop.h"
#include "monitor_start.h"
#include "proc_helpers.h"
#include "pystack.h"	/* before the skeleton: its rodata holds struct py_offsets */
#include "python.h"
#include "python.skel.h"
#include "python_monitor.h"
#include "python_calls.h"
#include "window_gate.h"

#define MAX_CPUS 1024

static int open_clock(int cpu, long hz)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.freq = 1,
		.sample_freq = hz,
	};

	return syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
}

/* gc__start and gc__done, where the interpreter has them: false (and why) otherwise. */
static bool attach_gc(struct python_bpf *skel, const struct agent_env *env)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%d/root%s", env->proc_root, env->target_pid,
		 env->py_binary);
	skel->links.gc_start = bpf_program__attach_usdt(skel->progs.gc_start, env->target_pid,
							path, "python", "gc__start", NULL);
	if (skel->links.gc_start)
		skel->links.gc_done = bpf_program__attach_usdt(skel->progs.gc_done,
							       env->target_pid, path, "python",
							       "gc__done", NULL);
	if (skel->links.gc_done)
		return true;
	fprintf(stderr, "xputrace-agent: no garbage collection events: %s has no gc__start and "
		"gc__done USDT probes (%s)\n", env->py_binary, strerror(errno));
	bpf_link__destroy(skel->links.gc_start);
	skel->links.gc_start = NULL;
	return false;
}

int python_main(const struct agent_env *env, volatile sig_atomic_t *exiting)
{
	struct bpf_link *links[MAX_CPUS] = {}, *hooks[2 * PY_MAX_HOOKS] = {};
	struct py_calls calls = {};
	int nhooks = 0;
	int fds[MAX_CPUS], ncpu = libbpf_num_possible_cpus(), nlinks = 0, ret, i;
	struct py_code_offsets code;
	struct python_bpf *skel;
	struct py_resolver py = {};
	struct monitor_loop loop = {
		.env = env, .exiting = exiting, .entry_prefix = "sample", .py = &py,
	};
	char err[512];
	bool gc;

	for (i = 0; i < MAX_CPUS; i++)
		fds[i] = -1;
	if (!proc_alive(env->proc_root, env->target_pid))
		return agent_fail(AGENT_TARGET_NOT_FOUND, "process %d not found", env->target_pid);
	if (ncpu <= 0 || ncpu > MAX_CPUS)
		return agent_fail(AGENT_START_FAILED, "cannot count the CPUs");
	skel = python_bpf__open();
	if (!skel)
		return monitor_open_failed(errno);
	loop.obj = skel->obj;
	py_parse_offsets(env->py_offsets, (struct py_offsets *)&skel->rodata->py, &code, err,
			 sizeof(err));	/* checked when the flags were parsed */
	skel->rodata->py_runtime = env->py_runtime;
	skel->rodata->targ_tgid = env->target_pid;
	skel->rodata->period_ns = 1000000000ULL / env->sample_hz;
	if (env->py_hooks) {
		/* checked when the flags were parsed */
		py_calls_parse(env->py_functions, env->py_hooks, &calls, err, sizeof(err));
		py_calls_configure(skel, &calls);
	}
	if (env->window) {
		struct py_window w;

		py_window_parse(env->window, &w, err, sizeof(err));
		py_window_configure(skel, &w);	/* the window's function joins the hooks */
	}
	ret = monitor_load(skel->skeleton, env);
	if (ret)
		goto cleanup;
	if (py_resolver_init(&py, bpf_map__fd(skel->maps.py_stacks), &code, env->proc_root,
			     XPU_MONITOR_PYTHON, env->monitor_id, env->machine_id)) {
		ret = agent_fail(AGENT_START_FAILED, "out of memory");
		goto cleanup;
	}
	ret = monitor_loop_open(&loop, XPU_MONITOR_PYTHON, sizeof(struct python_event));
	if (ret)
		goto cleanup;
	if (env->window)
		loop.window_fd = window_gate_fd(skel->obj);
	for (i = 0; i < ncpu; i++) {
		fds[i] = open_clock(i, env->sample_hz);
		if (fds[i] < 0) {
			if (errno == ENODEV)
				continue;	/* a CPU that is not online */
			ret = agent_fail(errno == EACCES || errno == EPERM ? AGENT_PERMISSION_DENIED
					 : AGENT_START_FAILED, "perf_event_open on CPU %d: %s", i,
					 strerror(errno));
			goto cleanup;
		}
		links[i] = bpf_program__attach_perf_event(skel->progs.sample, fds[i]);
		if (!links[i]) {
			ret = agent_fail(AGENT_START_FAILED, "attaching the sampler on CPU %d: %s", i,
					 strerror(errno));
			goto cleanup;
		}
		nlinks++;
	}
	gc = env->py_binary && attach_gc(skel, env);
	if (env->py_hooks) {
		nhooks = py_calls_attach(skel, env, &calls, hooks, err, sizeof(err));
		if (nhooks < 0) {
			ret = agent_fail(-nhooks, "%s", err);
			goto cleanup;
		}
	}
	printf("{\"ready\": true, \"pid\": %d, \"probes\": %d, \"sample_hz\": %ld, "
	       "\"gc\": %s, \"call_hooks\": %d, \"libraries\": []}\n", getpid(),
	       nlinks + 2 * gc + nhooks, env->sample_hz, gc ? "true" : "false", nhooks);
	fflush(stdout);

	ret = monitor_loop_run(&loop);
	for (i = 0; i < ncpu; i++) {
		bpf_link__destroy(links[i]);
		links[i] = NULL;
	}
	for (i = 0; i < nhooks; i++) {
		bpf_link__destroy(hooks[i]);
		hooks[i] = NULL;
	}
	python_bpf__detach(skel);	/* the gc probes */
	drain_consume(&loop.drain);
	ret = monitor_loop_finish(&loop, ret);
	py_resolver_print_stats(&py, skel->bss->py_unsaved);
	if (env->py_hooks)
		py_calls_print_stats(skel);

cleanup:
	for (i = 0; i < 2 * PY_MAX_HOOKS; i++)
		bpf_link__destroy(hooks[i]);
	for (i = 0; i < ncpu && i < MAX_CPUS; i++) {
		bpf_link__destroy(links[i]);
		if (fds[i] >= 0)
			close(fds[i]);
	}
	py_resolver_free(&py);
	monitor_loop_close(&loop);
	python_bpf__destroy(skel);
	return ret;
}
