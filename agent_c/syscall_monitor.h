/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The SYSCALL monitor's run: load syscall.bpf.c, drain it until stopped. */
#ifndef XPU_SYSCALL_MONITOR_H
#define XPU_SYSCALL_MONITOR_H

#include <signal.h>
#include "agent_env.h"
#include "syscall_names.h"

/* Runs until *exiting or the target exits; returns the agent's exit code. */
int syscall_main(const struct agent_env *env, volatile sig_atomic_t *exiting);

#endif
