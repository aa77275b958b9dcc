/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The SYSCALL tracer: syscall.bpf.c loaded and attached once, serving up to
 * SYSCALL_SLOTS monitors that come and go while it runs. Each monitor is a
 * slot: its filters are entries of the programs' maps, its events reach it
 * through the ring buffer records' slot masks, and it has its own batches,
 * sink, sequence numbers and drop counters, exactly as a monitor of its own
 * agent would. A standalone SYSCALL agent is this tracer with one monitor.
 */
#ifndef XPU_SYSCALL_HUB_H
#define XPU_SYSCALL_HUB_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include <linux/types.h>
#include "agent_env.h"

struct syscall_hub;

/* How a monitor ended (hub_report's input). */
struct hub_end {
	const char *monitor_id;
	int code;			/* AGENT_OK, or AGENT_RUNTIME_ERROR */
	const char *reason;
	__u64 events, batches, kernel_drops, inflight_drops, send_drops, resent_batches;
	__u64 sent;			/* events handed to the sink (delivered or not) */
	__u64 incomplete;
};

/* Called once per monitor when its last batch is delivered (or given up on). */
typedef void (*hub_report_fn)(void *ctx, const struct hub_end *end);

/*
 * Loads and attaches the programs with env's ring, in-flight and wake-up
 * sizes. Returns 0 or an agent exit code (the reason printed on stderr).
 */
int hub_open(struct syscall_hub **out, const struct agent_env *env, hub_report_fn report,
	     void *ctx);
/*
 * Starts a monitor given as an agent command line (env; it keeps env's
 * strings, and takes line, which they point into, to free at the end).
 * Returns 0, with the number of syscalls it records in *nsyscalls and its
 * slot in *slot, or an agent exit code with the reason in err.
 */
int hub_add(struct syscall_hub *h, const struct agent_env *env, char *line, int *nsyscalls,
	    int *slot, char *err, size_t errlen);
/* Ends a monitor: its calls in progress as incomplete, its final batch. -ENOENT: none such. */
int hub_remove(struct syscall_hub *h, const char *monitor_id, const char *reason);
/* Never traces this process, nor what it forks, by task name. */
int hub_exclude(struct syscall_hub *h, pid_t pid);
/*
 * Waits up to timeout_ms for events (or for fd, when >= 0, to be readable),
 * takes them, flushes what is due and ends monitors whose target exited.
 * Returns 1 when fd is readable, 0, or -errno.
 */
int hub_poll(struct syscall_hub *h, int timeout_ms, int fd);
/* Monitors running, and monitors whose last batches are still on their way. */
int hub_monitors(struct syscall_hub *h, int *finishing);
/* Detaches, ends every monitor, waits for their last batches. */
void hub_shutdown(struct syscall_hub *h, const char *reason);
void hub_free(struct syscall_hub *h);

/* The running tracer of --hub: commands on stdin, one reply line each on stdout. */
int hub_main(const struct agent_env *env, volatile sig_atomic_t *exiting);

#endif
