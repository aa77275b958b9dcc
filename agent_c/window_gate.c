// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "exit_codes.h"
#include "pystack.h"	/* before the skeleton: its rodata holds struct py_offsets */
#include "python.skel.h"
#include "pystack_agent.h"
#include "window_gate.h"

/* Opens and configures the hooks; the caller loads them. 0 or an exit code, reported. */
static int configure(struct window_hooks *w, const struct agent_env *env,
		     struct bpf_object *monitor, struct py_calls *calls)
{
	struct bpf_map *gate = bpf_object__find_map_by_name(monitor, "window");
	struct python_bpf *skel;
	struct py_code_offsets code;
	struct py_window win;
	char err[256];
	int ret;

	/* the flags were checked when they were parsed */
	if (py_window_parse(env->window, &win, err, sizeof(err)) ||
	    py_calls_parse(NULL, env->py_hooks, calls, err, sizeof(err)))
		return agent_fail(AGENT_INVALID_CONFIG, "%s", err);
	if (!gate)
		return agent_fail(AGENT_START_FAILED, "the BPF object has no map 'window'");
	skel = w->skel = python_bpf__open();
	if (!skel)
		return agent_fail(AGENT_START_FAILED, "failed to open the window's Python hooks: %s",
				  strerror(errno));
	py_parse_offsets(env->py_offsets, (struct py_offsets *)&skel->rodata->py, &code, err,
			 sizeof(err));
	skel->rodata->py_runtime = env->py_runtime;
	skel->rodata->targ_tgid = env->target_pid;
	py_calls_configure(skel, calls);
	py_window_configure(skel, &win);
	/* only the call hooks run: nothing sampled, no stack kept, no event sent */
	bpf_program__set_autoload(skel->progs.sample, false);
	bpf_program__set_autoload(skel->progs.gc_start, false);
	bpf_program__set_autoload(skel->progs.gc_done, false);
	bpf_map__set_max_entries(skel->maps.events, sysconf(_SC_PAGESIZE));
	bpf_map__set_max_entries(skel->maps.py_stacks, 1);
	ret = bpf_map__reuse_fd(skel->maps.window, bpf_map__fd(gate));
	if (ret)
		return agent_fail(AGENT_START_FAILED, "failed to share the window's gate: %s",
				  strerror(-ret));
	return AGENT_OK;
}

int window_hooks_start(struct window_hooks *w, const struct agent_env *env,
		       struct bpf_object *monitor)
{
	struct py_calls calls;
	char err[512];
	int ret;

	ret = configure(w, env, monitor, &calls);
	if (ret)
		return ret;
	ret = python_bpf__load(w->skel);
	if (ret)
		return agent_fail(ret == -EPERM ? AGENT_PERMISSION_DENIED : AGENT_START_FAILED,
				  "failed to load the window's Python hooks: %s%s", strerror(-ret),
				  ret == -EACCES ? " (verifier)" : "");
	w->nlinks = py_calls_attach(w->skel, env, &calls, w->links, err, sizeof(err));
	if (w->nlinks < 0) {
		ret = -w->nlinks;
		w->nlinks = 0;
		return agent_fail(ret, "%s", err);
	}
	return AGENT_OK;
}

void window_hooks_detach(struct window_hooks *w)
{
	for (int i = 0; i < 2 * PY_MAX_HOOKS; i++) {
		bpf_link__destroy(w->links[i]);
		w->links[i] = NULL;
	}
	w->nlinks = 0;
}

void window_hooks_free(struct window_hooks *w)
{
	window_hooks_detach(w);
	python_bpf__destroy(w->skel);
	w->skel = NULL;
}

int window_gate_fd(struct bpf_object *obj)
{
	return bpf_map__fd(bpf_object__find_map_by_name(obj, "window"));
}

static bool read_gate(int fd, struct window_gate *g)
{
	__u32 zero = 0;

	return !bpf_map_lookup_elem(fd, &zero, g);
}

bool window_closed(int fd)
{
	struct window_gate g;

	return read_gate(fd, &g) && g.state == WINDOW_CLOSED;
}

void window_print_stats(int fd)
{
	static const char *const names[] = { "shut", "open", "closed" };
	struct window_gate g = {};

	read_gate(fd, &g);
	printf("{\"window\": {\"calls\": %llu, \"state\": \"%s\", \"opened_ns\": %llu, "
	       "\"closed_ns\": %llu}}\n", (unsigned long long)g.calls,
	       g.state < 3 ? names[g.state] : "?", (unsigned long long)g.opened_ns,
	       (unsigned long long)g.closed_ns);
	fflush(stdout);
}
