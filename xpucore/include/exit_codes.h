/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Exit codes of xputrace-agent. The manager maps them to the control
 * channel's error codes (seeds/003, part 2); the names are printed as the
 * first word of the one-line reason on stderr.
 */
#ifndef XPU_EXIT_CODES_H
#define XPU_EXIT_CODES_H

enum agent_exit {
	AGENT_OK = 0,
	AGENT_RUNTIME_ERROR = 1,	/* failed after it was running */
	AGENT_INVALID_CONFIG = 2,	/* bad flag value, library without the symbols, not ELF */
	AGENT_TARGET_NOT_FOUND = 3,	/* no such pid or file, or no CUDA library in the pid */
	AGENT_PERMISSION_DENIED = 4,	/* not allowed to read the target or load BPF */
	AGENT_START_FAILED = 5,		/* anything else that stops it from starting */
	AGENT_WINDOW_CLOSED = 6,	/* ran to the end of its step window (--window): done */
};

const char *agent_exit_name(int code);
/* Prints "xputrace-agent: <NAME>: <message>" on stderr and returns code. */
int agent_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit code for an errno met while starting. */
int agent_exit_for_errno(int err);

#endif
