/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A library-call monitor's run (CUDA, ACL): find the libraries, plan what to
 * hook, load and attach the probe, drain it until stopped.
 */
#ifndef XPU_CALL_MONITOR_H
#define XPU_CALL_MONITOR_H

#include <signal.h>
#include "agent_env.h"
#include "call_probe.h"

/* Runs until *exiting or the target exits; returns the agent's exit code. */
int call_main(const struct agent_env *env, volatile sig_atomic_t *exiting,
	      const struct call_probe *probe);

#endif
