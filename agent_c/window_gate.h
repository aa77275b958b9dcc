/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The step window (--window; window.h) of a CUDA or ACL monitor: the PYTHON
 * probe's call hooks (python.bpf.c), loaded on their own with no function of
 * their own named and nothing sampled, count the window's calls into the gate
 * map the monitor's probe checks (the probe's map "window", shared before
 * load). One implementation of "a call of a Python function" serves the
 * PYTHON monitor's --py-functions and every window. And what every windowed
 * monitor's loop asks of the gate.
 */
#ifndef XPU_WINDOW_GATE_H
#define XPU_WINDOW_GATE_H

#include <stdbool.h>
#include "agent_env.h"
#include "python_calls.h"
#include "window.h"

struct bpf_object;

struct window_hooks {
	struct python_bpf *skel;
	struct bpf_link *links[2 * PY_MAX_HOOKS];
	int nlinks;
};

/*
 * Once the monitor's BPF object (gated, with its map "window") is loaded and
 * attached: loads the hooks, sharing that map, and attaches them to env's
 * --py-binary in the target. Returns AGENT_OK or the exit code, reported.
 */
int window_hooks_start(struct window_hooks *w, const struct agent_env *env,
		       struct bpf_object *monitor);
/* Detaches the hooks (the window's count stops); safe to repeat. */
void window_hooks_detach(struct window_hooks *w);
void window_hooks_free(struct window_hooks *w);

/* The gate map of obj (its "window"), for struct monitor_loop's window_fd. */
int window_gate_fd(struct bpf_object *obj);
/* Whether the window has closed (the gate of map fd). */
bool window_closed(int fd);
/* One JSON line: the calls counted, the state, when it opened and closed. */
void window_print_stats(int fd);

#endif
