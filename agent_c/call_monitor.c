// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "call_monitor.h"
#include "call_slots.h"
#include "drain_helpers.h"
#include "exit_codes.h"
#include "monitor_loop.h"
#include "monitor_start.h"
#include "pystack_agent.h"
#include "release_helpers.h"
#include "uprobe_multi_helpers.h"
#include "window_gate.h"

#define MAX_LIBS 16
#define MAX_LINKS 1024

struct agent {
	const struct agent_env *env;
	const struct call_probe *probe;
	struct call_skel cs;
	struct call_plan plan;
	struct monitor_loop loop;
	bool multi;			/* uprobe_multi links, see attach_multi_links() */
	struct bpf_link *links[MAX_LINKS];	/* otherwise one perf link per probe */
	int nlinks;
	int multi_fds[MAX_LINKS];
	int nmulti;
	struct call_slots slots;
	struct py_resolver py;		/* with --py-runtime: loop.py */
	struct window_hooks window;	/* with --window */
};

/* Each call's Python stack: --py-runtime, unless it serves only the window. */
static bool py_stacks(const struct agent_env *env)
{
	return env->py_runtime && !env->no_py_stacks;
}

static struct bpf_program *program(struct agent *a, const char *name, char *err, size_t errlen)
{
	struct bpf_program *p = bpf_object__find_program_by_name(a->cs.obj, name);

	if (!p)
		snprintf(err, errlen, "the BPF object has no program %s", name);
	return p;
}

static int attach_error(char *err, size_t errlen, int e, const char *what, const char *path)
{
	snprintf(err, errlen, "failed to attach %s in %s: %s", what, path, strerror(e));
	return -(e == EPERM || e == EACCES ? AGENT_PERMISSION_DENIED : AGENT_START_FAILED);
}

static int too_many(char *err, size_t errlen)
{
	snprintf(err, errlen, "too many probes (more than %d links); use --attach-mode multi",
		 MAX_LINKS);
	return -AGENT_START_FAILED;
}

static int attach_perf_links(struct agent *a, const char *path, pid_t pid,
			     const struct call_lib_plan *lp, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_uprobe_opts, uo);
	struct bpf_program *prog;
	int i, r;

	for (i = 0; i < lp->nsites; i++) {
		const struct call_site *site = &lp->sites[i];

		for (r = 0; r < 2; r++) {
			if (a->nlinks == MAX_LINKS)
				return too_many(err, errlen);
			prog = program(a, r ? a->cs.return_prog : site->prog, err, errlen);
			if (!prog)
				return -AGENT_START_FAILED;
			uo.bpf_cookie = site->cookie;
			uo.retprobe = r;
			a->links[a->nlinks] = bpf_program__attach_uprobe_opts(
				prog, pid ? pid : -1, path, site->offset, &uo);
			if (!a->links[a->nlinks])
				return attach_error(err, errlen, errno, site->name, path);
			a->nlinks++;
		}
	}
	return 0;
}

/* One link per entry program (all its sites), one for the return program on every site. */
static int attach_multi_links(struct agent *a, const char *path, pid_t pid,
			      const struct call_lib_plan *lp, char *err, size_t errlen)
{
	unsigned long offsets[lp->nsites];
	__u64 cookies[lp->nsites];
	bool done[lp->nsites];
	struct bpf_program *prog;
	int i, j, n, fd;

	memset(done, 0, sizeof(done));
	for (i = 0; i < lp->nsites; i++) {
		if (done[i])
			continue;
		for (n = 0, j = i; j < lp->nsites; j++) {
			if (!done[j] && !strcmp(lp->sites[j].prog, lp->sites[i].prog)) {
				offsets[n] = lp->sites[j].offset;
				cookies[n++] = lp->sites[j].cookie;
				done[j] = true;
			}
		}
		if (a->nmulti == MAX_LINKS)
			return too_many(err, errlen);
		prog = program(a, lp->sites[i].prog, err, errlen);
		if (!prog)
			return -AGENT_START_FAILED;
		fd = uprobe_multi_attach(prog, path, pid, offsets, cookies, n, false);
		if (fd < 0)
			return attach_error(err, errlen, -fd, lp->sites[i].name, path);
		a->multi_fds[a->nmulti++] = fd;
	}
	for (i = 0; i < lp->nsites; i++) {
		offsets[i] = lp->sites[i].offset;
		cookies[i] = lp->sites[i].cookie;
	}
	if (a->nmulti == MAX_LINKS)
		return too_many(err, errlen);
	prog = program(a, a->cs.return_prog, err, errlen);
	if (!prog)
		return -AGENT_START_FAILED;
	fd = uprobe_multi_attach(prog, path, pid, offsets, cookies, lp->nsites, true);
	if (fd < 0)
		return attach_error(err, errlen, -fd, "the return probes", path);
	a->multi_fds[a->nmulti++] = fd;
	return 0;
}

static void destroy_link(void *link)
{
	bpf_link__destroy(link);
}

static void close_fd(void *fd)
{
	close((int)(intptr_t)fd);
}

static void detach_all(struct agent *a)
{
	void *fds[MAX_LINKS];

	for (int i = 0; i < a->nmulti; i++)
		fds[i] = (void *)(intptr_t)a->multi_fds[i];
	release_parallel((void **)a->links, a->nlinks, destroy_link);
	release_parallel(fds, a->nmulti, close_fd);
	a->nlinks = a->nmulti = 0;
}

/* Fills libs with what to attach to; returns the count or minus an exit code. */
static int find_libraries(const struct agent_env *env, const struct call_probe *probe,
			  struct mapped_lib *libs, char *err, size_t errlen)
{
	int n;

	if (env->target_library && !env->target_pid) {
		snprintf(libs[0].path, sizeof(libs[0].path), "%s", env->target_library);
		snprintf(libs[0].target_path, sizeof(libs[0].target_path), "%s",
			 env->target_library);
		return 1;
	}
	n = proc_find_mapped_libs(env->proc_root, env->target_pid, probe->library_match, libs,
				  MAX_LIBS, err, errlen);
	if (n == 0)
		snprintf(err, errlen, "process %d has no %s library mapped", env->target_pid,
			 probe->libraries);
	if (n <= 0 || !env->target_library)
		return n ? n : -AGENT_TARGET_NOT_FOUND;
	/* --target-pid with --target-library: that file, if the process maps it */
	for (int i = 0; i < n; i++) {
		if (!strcmp(libs[i].target_path, env->target_library)) {
			libs[0] = libs[i];
			return 1;
		}
	}
	snprintf(err, errlen, "process %d does not map %s", env->target_pid, env->target_library);
	return -AGENT_TARGET_NOT_FOUND;
}

static void print_ready(const struct call_plan *plan, int probes)
{
	printf("{\"ready\": true, \"pid\": %d, \"probes\": %d, \"libraries\": [", getpid(),
	       probes);
	for (int i = 0; i < plan->nlibs; i++)
		printf("%s\"%s\"", i ? ", " : "", plan->libs[i].lib->target_path);
	printf("]}\n");
	fflush(stdout);
}

/* Opens, configures and loads the probe's BPF object. Returns AGENT_OK or the exit code. */
static int load_probe(struct agent *a, struct py_code_offsets *py_code, char *err, size_t errlen)
{
	const struct agent_env *env = a->env;
	int ret;

	ret = a->probe->open(&a->cs);
	if (ret)
		return monitor_open_failed(-ret);
	a->loop.obj = a->cs.obj;
	*a->cs.targ_tgid = env->target_pid;
	*a->cs.wakeup_bytes = monitor_wakeup_bytes(env);
	if (env->target_comm) {
		*a->cs.filter_comm = 1;
		strncpy((char *)a->cs.targ_comm, env->target_comm, XPU_COMM_LEN - 1);
	}
	a->multi = strcmp(env->attach_mode, "perf") && uprobe_multi_supported();
	if (!a->multi && !strcmp(env->attach_mode, "multi"))
		return agent_fail(AGENT_START_FAILED, "this kernel has no uprobe_multi links "
				  "(Linux 6.6+); use --attach-mode perf");
	if (a->multi) {
		struct bpf_program *prog;

		bpf_object__for_each_program(prog, a->cs.obj)
			bpf_program__set_expected_attach_type(prog,
				(enum bpf_attach_type)XPU_BPF_TRACE_UPROBE_MULTI);
	}
	bpf_map__set_max_entries(bpf_object__find_map_by_name(a->cs.obj, "inflight"),
				 env->max_threads);
	*a->cs.slot_mask = env->max_threads - 1;
	*a->cs.hold_ns = (__u64)env->flush_ms * 1000000;
	if (py_stacks(env)) {
		py_parse_offsets(env->py_offsets, (struct py_offsets *)a->cs.py, py_code, err,
				 errlen);	/* checked when the flags were parsed */
		*a->cs.py_runtime = env->py_runtime;
	}
	*a->cs.gated = !!env->window;
	if (a->probe->prepare && (ret = a->probe->prepare(&a->cs, &a->plan)))
		return agent_fail(ret, "failed to size the probe's maps");
	ret = monitor_load(a->cs.skeleton, env);
	if (ret)
		return ret;
	if (a->probe->loaded && (ret = a->probe->loaded(&a->cs, &a->plan, err, errlen)))
		return agent_fail(ret, "%s", err);
	return AGENT_OK;
}

static int map_fd(struct agent *a, const char *name)
{
	return bpf_map__fd(bpf_object__find_map_by_name(a->cs.obj, name));
}

/* Attaches, opens the sink, the drain and the slots. Returns AGENT_OK or the exit code. */
static int start(struct agent *a, struct py_code_offsets *py_code, char *err, size_t errlen)
{
	const struct agent_env *env = a->env;
	int i, probes = 0, ret;

	if (py_stacks(env)) {
		if (py_resolver_init(&a->py, map_fd(a, "py_stacks"), py_code, env->proc_root,
				     a->probe->monitor_type, env->monitor_id, env->machine_id))
			return agent_fail(AGENT_START_FAILED, "out of memory");
		a->loop.py = &a->py;
	}
	for (i = 0; i < a->plan.nlibs; i++) {
		const struct call_lib_plan *lp = &a->plan.libs[i];

		ret = a->multi ? attach_multi_links(a, lp->lib->path, env->target_pid, lp, err, errlen)
			       : attach_perf_links(a, lp->lib->path, env->target_pid, lp, err, errlen);
		if (ret)
			return agent_fail(-ret, "%s", err);
		probes += lp->nsites;
	}
	/* the window's count starts once every call it gates is seen */
	if (env->window) {
		ret = window_hooks_start(&a->window, env, a->cs.obj);
		if (ret)
			return ret;
		a->loop.window_fd = window_gate_fd(a->cs.obj);
	}
	ret = monitor_loop_open(&a->loop, a->probe->monitor_type, a->probe->slots.event_size);
	if (ret)
		return ret;
	ret = call_slots_map(&a->slots, &a->probe->slots, map_fd(a, "inflight"), env->max_threads);
	if (ret)
		return agent_fail(AGENT_START_FAILED, "failed to map per-thread slots: %s",
				  strerror(-ret));
	print_ready(&a->plan, probes);
	return AGENT_OK;
}

/*
 * At every flush, what threads have held for half the flush interval: an idle
 * thread's calls arrive within one interval, and an active thread is not raced
 * for what it flushes itself (at flush_ms) for long.
 */
static void take_idle(void *ctx, __u64 now)
{
	struct agent *a = ctx;

	a->loop.taken += call_slots_take_done(&a->slots, &a->loop.drain,
					      now - (__u64)a->env->flush_ms * 500000);
}

/* Stops new events, takes what the kernel holds, then the calls still in flight. */
static int finish(struct agent *a, int ret)
{
	window_hooks_detach(&a->window);
	detach_all(a);
	drain_consume(&a->loop.drain);
	call_slots_take_done(&a->slots, &a->loop.drain, ~0ULL);
	a->loop.incomplete = call_slots_take_incomplete(&a->slots, &a->loop.drain,
							monotonic_ns());
	ret = monitor_loop_finish(&a->loop, ret);
	if (a->loop.py)
		py_resolver_print_stats(&a->py, *a->cs.py_unsaved);
	return ret;
}

int call_main(const struct agent_env *env, volatile sig_atomic_t *exiting,
	      const struct call_probe *probe)
{
	static struct mapped_lib libs[MAX_LIBS];
	static struct agent a;
	struct py_code_offsets py_code;
	char err[PATH_MAX + 256];
	int nlibs, ret;

	a.env = env;
	a.probe = probe;
	a.loop = (struct monitor_loop){
		.env = env, .exiting = exiting, .entry_prefix = "enter_", .on_flush = take_idle,
		.ctx = &a,
	};
	nlibs = find_libraries(env, probe, libs, err, sizeof(err));
	if (nlibs < 0)
		return agent_fail(-nlibs, "%s", err);
	/* Check every library before loading anything into the kernel. */
	ret = probe->plan(libs, nlibs, &a.plan, err, sizeof(err));
	if (ret) {
		call_plan_free(&a.plan);
		return agent_fail(ret, "%s", err);
	}
	ret = load_probe(&a, &py_code, err, sizeof(err));
	if (ret == AGENT_OK)
		ret = start(&a, &py_code, err, sizeof(err));
	if (ret == AGENT_OK)
		ret = finish(&a, monitor_loop_run(&a.loop));

	window_hooks_free(&a.window);
	detach_all(&a);
	call_slots_unmap(&a.slots);
	if (a.loop.py)
		py_resolver_free(&a.py);
	monitor_loop_close(&a.loop);
	if (a.cs.skel)
		a.cs.destroy(a.cs.skel);
	call_plan_free(&a.plan);
	return ret;
}
