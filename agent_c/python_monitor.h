/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The PYTHON monitor's run: sample a process's Python stacks (python.bpf.c). */
#ifndef XPU_PYTHON_MONITOR_H
#define XPU_PYTHON_MONITOR_H

#include <signal.h>
#include "agent_env.h"

/* Runs until *exiting or the target exits; returns the agent's exit code. */
int python_main(const struct agent_env *env, volatile sig_atomic_t *exiting);

#endif
