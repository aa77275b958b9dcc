// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include "exit_codes.h"

const char *agent_exit_name(int code)
{
	switch (code) {
	case AGENT_OK: return "OK";
	case AGENT_INVALID_CONFIG: return "INVALID_CONFIG";
	case AGENT_TARGET_NOT_FOUND: return "TARGET_NOT_FOUND";
	case AGENT_PERMISSION_DENIED: return "PERMISSION_DENIED";
	case AGENT_START_FAILED: return "AGENT_START_FAILED";
	case AGENT_WINDOW_CLOSED: return "WINDOW_CLOSED";
	default: return "RUNTIME_ERROR";
	}
}

int agent_fail(int code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "xputrace-agent: %s: ", agent_exit_name(code));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int agent_exit_for_errno(int err)
{
	switch (err) {
	case ENOENT:
	case ESRCH:
		return AGENT_TARGET_NOT_FOUND;
	case EACCES:
	case EPERM:
		return AGENT_PERMISSION_DENIED;
	default:
		return AGENT_START_FAILED;
	}
}
