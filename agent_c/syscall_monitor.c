// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The SYSCALL monitor's two runs, both on the one tracer of syscall_hub.c:
 *
 * - standalone (an agent per monitor, as the other types run): the tracer
 *   with the one monitor of the command line; the same ready and stats lines,
 *   exit codes and SIGTERM handling as every agent.
 * - --hub: the machine's one tracer, monitors added and removed on stdin while
 *   it runs, so every SYSCALL monitor shares one pair of programs. One tab-
 *   separated command a line, a JSON line answers each:
 *
 *     add<TAB>--monitor-id<TAB>ID<TAB>...  (an agent's flags, checked alike)
 *       {"monitor_id": ID, "ready": true, "pid": P, "slot": N, "syscalls": N, ...}
 *       {"monitor_id": ID, "error": "INVALID_CONFIG", "exit_code": 2, "message": ...}
 *     remove<TAB>ID
 *       {"monitor_id": ID, "stopped": true, "exit_code": 0, "reason": ..., "stats": {...}}
 *       (also unasked, when its target exits or its output fails)
 *     exclude<TAB>PID   never trace PID (nor what it forks) by task name
 *       {"excluded": PID}
 *
 *   It starts with {"hub": true, "ready": true, "pid": P, "slots": 64}; EOF on
 *   stdin or SIGTERM ends every monitor (stopped lines) and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "exit_codes.h"
#include "proc_helpers.h"
#include "syscall.h"
#include "syscall_hub.h"
#include "syscall_monitor.h"

#define LINE_MAX_BYTES (64 * 1024)
#define MAX_ARGS 64

/* s as a JSON string body (the agent's messages are ASCII; anything else is escaped). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = *s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c > 0x7e)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void print_stats(const struct hub_end *e)
{
	printf("{\"events\": %llu, \"batches\": %llu, \"sent\": %llu, \"kernel_drops\": %llu, "
	       "\"inflight_drops\": %llu, \"send_drops\": %llu, \"resent_batches\": %llu, "
	       "\"incomplete\": %llu, \"taken_from_threads\": 0}",
	       e->events, e->batches, e->sent, e->kernel_drops, e->inflight_drops, e->send_drops,
	       e->resent_batches, e->incomplete);
}

static void summary(const char *who, const struct hub_end *e)
{
	fprintf(stderr, "xputrace-agent: %sstopped: %llu events delivered in %llu batches, drops: "
		"%llu ring buffer, %llu in-flight map, %llu send; %llu incomplete\n", who,
		e->events, e->batches, e->kernel_drops, e->inflight_drops, e->send_drops,
		e->incomplete);
}

/* -- standalone */

struct standalone {
	int code;
	bool ended;
};

static void standalone_report(void *ctx, const struct hub_end *e)
{
	struct standalone *s = ctx;

	printf("{\"stats\": ");
	print_stats(e);
	printf("}\n");
	fflush(stdout);
	summary("", e);
	s->code = e->code;
	s->ended = true;
}

int syscall_main(const struct agent_env *env, volatile sig_atomic_t *exiting)
{
	struct standalone st = {};
	struct syscall_hub *h;
	char err[512];
	int ret, n, slot, finishing;

	if (env->target_pid && !proc_alive(env->proc_root, env->target_pid))
		return agent_fail(AGENT_TARGET_NOT_FOUND, "process %d not found", env->target_pid);
	ret = hub_open(&h, env, standalone_report, &st);
	if (ret)
		return ret;
	ret = hub_add(h, env, NULL, &n, &slot, err, sizeof(err));
	if (ret) {
		hub_free(h);
		return agent_fail(ret, "%s", err);
	}
	printf("{\"ready\": true, \"pid\": %d, \"probes\": 2, \"syscalls\": %d, "
	       "\"libraries\": []}\n", getpid(), n);
	fflush(stdout);
	while (!*exiting && hub_monitors(h, &finishing)) {
		ret = hub_poll(h, env->poll_ms, -1);
		if (ret < 0) {
			fprintf(stderr, "xputrace-agent: failed to poll ring buffer: %s\n",
				strerror(-ret));
			st.code = AGENT_RUNTIME_ERROR;
			break;
		}
	}
	hub_shutdown(h, "stopped");
	hub_free(h);
	return st.code;
}

/* -- hub */

static void hub_report(void *ctx, const struct hub_end *e)
{
	char who[80];

	printf("{\"monitor_id\": ");
	json_str(stdout, e->monitor_id);
	printf(", \"stopped\": true, \"exit_code\": %d, \"reason\": ", e->code);
	json_str(stdout, e->reason);
	printf(", \"stats\": ");
	print_stats(e);
	printf("}\n");
	fflush(stdout);
	snprintf(who, sizeof(who), "monitor %s: ", e->monitor_id);
	summary(who, e);
}

static void reply_error(const char *id, int code, const char *message)
{
	printf("{\"monitor_id\": ");
	json_str(stdout, id ? id : "");
	printf(", \"error\": \"%s\", \"exit_code\": %d, \"message\": ", agent_exit_name(code), code);
	json_str(stdout, message);
	printf("}\n");
	fflush(stdout);
	fprintf(stderr, "xputrace-agent: monitor %s: %s: %s\n", id ? id : "?",
		agent_exit_name(code), message);
}

/* The value of --monitor-id among args, for a reply that cannot parse the rest. */
static const char *arg_monitor_id(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--monitor-id"))
			return argv[i + 1];
	return NULL;
}

static void cmd_add(struct syscall_hub *h, const char *line)
{
	char *copy = strdup(line), *argv[MAX_ARGS + 1], *p, err[512], id[XPU_MONITOR_ID_LEN];
	struct agent_env env;
	int argc = 0, ret, n, slot;

	if (!copy) {
		reply_error(NULL, AGENT_START_FAILED, "out of memory");
		return;
	}
	argv[argc++] = "xputrace-agent";
	for (p = copy; p && argc < MAX_ARGS; ) {
		argv[argc++] = p;
		p = strchr(p, '\t');
		if (p)
			*p++ = '\0';
	}
	argv[argc] = NULL;
	if (p) {
		reply_error(arg_monitor_id(argc, argv), AGENT_INVALID_CONFIG, "too many arguments");
		free(copy);
		return;
	}
	ret = agent_parse_monitor(argc, argv, &env, err, sizeof(err));
	if (!ret && (strcmp(env.monitor_type, "SYSCALL") || env.hub)) {
		snprintf(err, sizeof(err), "the SYSCALL tracer takes SYSCALL monitors only");
		ret = AGENT_INVALID_CONFIG;
	}
	if (ret) {
		reply_error(arg_monitor_id(argc, argv), ret, err);
		free(copy);
		return;
	}
	snprintf(id, sizeof(id), "%s", env.monitor_id);
	ret = hub_add(h, &env, copy, &n, &slot, err, sizeof(err));	/* takes copy */
	if (ret) {
		reply_error(id, ret, err);
		return;
	}
	printf("{\"monitor_id\": ");
	json_str(stdout, id);
	printf(", \"ready\": true, \"pid\": %d, \"slot\": %d, \"probes\": 2, \"syscalls\": %d, "
	       "\"libraries\": []}\n", getpid(), slot, n);
	fflush(stdout);
}

static void command(struct syscall_hub *h, char *line)
{
	char *arg = strchr(line, '\t');
	char *end;
	long pid;

	if (arg)
		*arg++ = '\0';
	if (!strcmp(line, "add") && arg) {
		cmd_add(h, arg);
	} else if (!strcmp(line, "remove") && arg) {
		if (hub_remove(h, arg, "stopped on request") == -ENOENT)
			reply_error(arg, AGENT_INVALID_CONFIG, "no such monitor");
	} else if (!strcmp(line, "exclude") && arg) {
		errno = 0;
		pid = strtol(arg, &end, 10);
		if (errno || *end || pid <= 0 || pid > INT_MAX || hub_exclude(h, pid)) {
			printf("{\"excluded\": 0, \"error\": \"INVALID_CONFIG\", \"message\": ");
			json_str(stdout, "not a pid, or the exclusion map is full");
			printf("}\n");
		} else {
			printf("{\"excluded\": %ld}\n", pid);
		}
		fflush(stdout);
	} else if (line[0]) {
		fprintf(stderr, "xputrace-agent: unknown command '%.40s'\n", line);
	}
}

/* Takes whole lines from stdin; false at EOF. */
static bool read_commands(struct syscall_hub *h, char *buf, size_t *len)
{
	ssize_t n = read(STDIN_FILENO, buf + *len, LINE_MAX_BYTES - *len);
	char *nl, *start = buf;

	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0)
		return false;
	*len += n;
	while ((nl = memchr(start, '\n', buf + *len - start))) {
		*nl = '\0';
		command(h, start);
		start = nl + 1;
	}
	*len -= start - buf;
	memmove(buf, start, *len);
	if (*len == LINE_MAX_BYTES) {	/* a line longer than any command: drop it */
		fprintf(stderr, "xputrace-agent: command line too long, ignored\n");
		*len = 0;
	}
	return true;
}

int hub_main(const struct agent_env *env, volatile sig_atomic_t *exiting)
{
	struct syscall_hub *h;
	char *buf = malloc(LINE_MAX_BYTES);
	size_t len = 0;
	bool open_in = true;
	int ret;

	if (!buf)
		return agent_fail(AGENT_START_FAILED, "out of memory");
	ret = hub_open(&h, env, hub_report, NULL);
	if (ret) {
		free(buf);
		return ret;
	}
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	printf("{\"hub\": true, \"ready\": true, \"pid\": %d, \"slots\": %d}\n", getpid(),
	       SYSCALL_SLOTS);
	fflush(stdout);
	while (!*exiting && open_in) {
		ret = hub_poll(h, env->poll_ms, STDIN_FILENO);
		if (ret < 0) {
			fprintf(stderr, "xputrace-agent: failed to poll ring buffer: %s\n",
				strerror(-ret));
			break;
		}
		if (ret == 1)
			open_in = read_commands(h, buf, &len);
	}
	hub_shutdown(h, open_in ? "the SYSCALL tracer stopped" : "the manager closed the pipe");
	hub_free(h);
	free(buf);
	return ret < 0 ? AGENT_RUNTIME_ERROR : AGENT_OK;
}
