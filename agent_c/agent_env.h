/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The agent's options, as parsed from its command line (agent.c). */
#ifndef XPU_AGENT_ENV_H
#define XPU_AGENT_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct agent_env {
	const char *monitor_id;
	const char *monitor_type;
	const char *machine_id;
	pid_t target_pid;
	const char *target_library;
	const char *target_comm;
	const char *endpoint;
	const char *output;
	const char *curve_keyfile;
	const char *proc_root;
	long ringbuf_kb;
	long max_threads;
	long wakeup_kb;
	long batch_events;
	long flush_ms;
	long poll_ms;
	long send_hwm;
	long linger_ms;
	long resend_ms;
	const char *attach_mode;
	const char *syscalls;		/* SYSCALL: comma-separated names, NULL for all */
	unsigned long long py_runtime;	/* CUDA: &_PyRuntime in the target, 0: no attribution */
	const char *py_offsets;		/* CUDA: name=value,... (manager/python/offsets.py) */
	long sample_hz;			/* PYTHON: samples per second per CPU */
	const char *py_binary;		/* PYTHON: the ELF with _PyRuntime (its gc USDT probes) */
	const char *py_functions;	/* PYTHON: qualified names whose calls to trace, a,b,... */
	const char *py_hooks;		/* PYTHON: where those calls start and return (MODE:E:X) */
	const char *window;		/* the step window, FUNCTION:SKIP:COUNT (window.h) */
	bool no_py_stacks;		/* CUDA, ACL: --py-runtime for the window only */
	bool hub;			/* SYSCALL: the machine's shared tracer (syscall_hub.h) */
	bool verbose;
};

/*
 * A monitor's command line (argv[0] is a name) parsed as the agent's own,
 * with the same checks: 0, or AGENT_INVALID_CONFIG with the reason in err.
 */
int agent_parse_monitor(int argc, char **argv, struct agent_env *out, char *err, size_t errlen);

#endif
