/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The PYTHON monitor's exact calls of named functions (--py-functions,
 * --py-hooks; python.h): the names, where the hooks go, attaching them.
 */
#ifndef XPU_PYTHON_CALLS_H
#define XPU_PYTHON_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include "agent_env.h"
#include "python.h"

struct bpf_link;
struct python_bpf;

enum { PY_MAX_HOOKS = 8 };

struct py_calls {
	int nfuncs;
	char func[PY_MAX_FUNCS][PY_FUNC_NAME_LEN];
	bool eval;		/* 3.10: _PyEval_EvalFrameDefault at entry[0], its return */
	int nentry, nexit;
	unsigned long entry[PY_MAX_HOOKS], exit[PY_MAX_HOOKS];	/* file offsets */
};

/* A step window (--window FUNCTION:SKIP:COUNT; window.h). */
struct py_window {
	char func[PY_FUNC_NAME_LEN];
	unsigned long long skip, count;
};

/* Parses --window; -1 with the reason in err. */
int py_window_parse(const char *arg, struct py_window *w, char *err, size_t errlen);
/* Gates the probe on the window and makes its hooks count the window's calls (before load). */
void py_window_configure(struct python_bpf *skel, const struct py_window *w);

/* Parses --py-functions (NULL: none, the hooks only count a window's calls) and --py-hooks;
 * -1 with the reason in err. */
int py_calls_parse(const char *functions, const char *hooks, struct py_calls *c, char *err,
		   size_t errlen);
/* The same, for the option checks. */
int py_calls_check(const char *functions, const char *hooks, char *err, size_t errlen);
/* Sets the probe's names before load. */
void py_calls_configure(struct python_bpf *skel, const struct py_calls *c);
/*
 * Attaches the hooks to env's --py-binary in the target. Fills links (up to
 * 2 * PY_MAX_HOOKS); returns how many, or minus an exit code with err set.
 */
int py_calls_attach(struct python_bpf *skel, const struct agent_env *env,
		    const struct py_calls *c, struct bpf_link **links, char *err, size_t errlen);
/* One JSON line: Python calls trapped (the cost), named, lost. */
void py_calls_print_stats(const struct python_bpf *skel);

#endif
